//! Resources and shutdown of the real process (#8 §4, §6): file descriptors and threads stay flat
//! across a burst of mixed requests, and SIGTERM finishes the work in flight, flushes and exits 0.

use std::process::Command;

use serde_json::json;

use crate::support::*;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Threads:").map(|v| v.trim().parse().unwrap_or(0))))
        .unwrap_or(0)
}

/// One round of mixed requests: accepted, duplicated, refused, malformed, unknown, garbage.
fn burst(plugin: &mut Plugin, round: usize) -> Vec<String> {
    let now = unix_now();
    let mut ids = Vec::new();
    for i in 0..300 {
        let n = round * 1000 + i;
        let body = event_body("batch.completed", &format!("evt_{n}"), now, &json!({"id": "b"}));
        let data = match i % 6 {
            0 | 1 => dispatch_data(
                &RawRequest::signed(SECRET, &format!("wh_{}", n - i % 2), now, body).bytes(),
                SECRET,
                ENDPOINT,
            ),
            2 => dispatch_data(
                &RawRequest::signed(OTHER_SECRET, &format!("wh_{n}"), now, body).bytes(),
                SECRET,
                ENDPOINT,
            ),
            3 => json!({"action": "dispatch_trigger_event", "raw_http_request": "not hex"}),
            4 => json!({"action": "launch_rocket"}),
            _ => invoke_data(
                "batch_completed",
                b"",
                &json!({"event": {"type": "batch.completed", "data": {"id": "b"}}}),
                &json!({}),
            ),
        };
        let id = plugin.fresh_session();
        plugin.request(&id, &data);
        if i % 10 == 0 {
            plugin.send_line("garbage that is not JSON");
        }
        ids.push(id);
    }
    ids
}

#[test]
fn file_descriptors_and_threads_stay_flat_across_bursts() {
    let mut plugin = Plugin::start();
    let pid = plugin.pid();
    let ids = burst(&mut plugin, 0);
    plugin.wait_for_sessions(&ids);
    let (fd_base, thread_base) = (fds(pid), threads(pid));
    assert!(fd_base > 0 && thread_base > 0);
    for round in 1..5 {
        let ids = burst(&mut plugin, round);
        plugin.wait_for_sessions(&ids);
        assert_eq!(fds(pid), fd_base, "round {round}: open file descriptors");
        assert_eq!(threads(pid), thread_base, "round {round}: threads");
    }
    assert!(plugin.finish().success());
}

#[test]
fn sigterm_finishes_the_work_in_flight_flushes_and_exits_0() {
    let mut plugin = Plugin::start();
    let now = unix_now();
    let mut ids = Vec::new();
    for n in 0..2000 {
        let body = event_body("batch.completed", &format!("evt_term_{n}"), now, &json!({"id": "b"}));
        let id = plugin.fresh_session();
        plugin.request(
            &id,
            &dispatch_data(&RawRequest::signed(SECRET, &format!("wh_term_{n}"), now, body).bytes(), SECRET, ENDPOINT),
        );
        ids.push(id);
    }
    assert!(Command::new("kill").args(["-TERM", &plugin.pid().to_string()]).status().unwrap().success());
    // Everything it wrote is whole (the transcript checks every line); every session it started has
    // its result and its end; then EOF and exit 0, although stdin is still open.
    plugin.drain_to_eof();
    let status = plugin.wait_exit(WAIT);
    assert!(status.success(), "{status}");
    let answered = ids.iter().filter(|id| plugin.transcript.answered(id)).count();
    for id in &ids {
        assert_eq!(plugin.transcript.answered(id), plugin.transcript.ended(id), "{id} was answered without its end");
    }
    assert!(answered > 0, "some requests were read before the signal");
}
