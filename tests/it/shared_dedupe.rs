//! The replay memory shared through the daemon's plugin storage (`src/shared_dedupe.rs`): the real
//! binary driven by `dify_plugin::host`, whose fake daemon side answers storage calls from memory,
//! slowly, wrongly or not at all. Two processes sharing one `MemoryStorage` are two daemon nodes
//! sharing one database.

use std::time::{Duration, Instant};

use dify_plugin::host::{MemoryStorage, PluginProcess, StorageMode, trigger};
use openai_trigger::shared_dedupe::{
    BUCKETS, ENTRIES_PER_BUCKET, ENTRY_BYTES, MANIFEST_STORAGE_BYTES, MAX_STORED_BYTES, bucket_key,
};
use serde_json::json;

use crate::support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn spawn(runtime: &tokio::runtime::Runtime, storage: StorageMode) -> PluginProcess {
    let command = tokio::process::Command::from(command(&["serve"]));
    runtime.block_on(PluginProcess::spawn(command, storage)).expect("start the plugin")
}

fn storage() -> MemoryStorage {
    MemoryStorage::with_quota(MANIFEST_STORAGE_BYTES)
}

fn delivery(id: &str) -> Vec<u8> {
    let body = event_body("batch.completed", &format!("evt_{id}"), unix_now(), &json!({"id": "batch_1"}));
    RawRequest::signed(SECRET, id, unix_now(), body).bytes()
}

async fn dispatch(plugin: &PluginProcess, raw: &[u8]) -> Dispatched {
    let data = trigger::dispatch(PROVIDER, raw, &subscription(SECRET, ENDPOINT));
    let chunk = plugin.call(data).await.expect("the session ends").expect("dispatch answers with a result");
    Dispatched::from_chunk(chunk)
}

/// Awaits every future concurrently, answers in order (tokio has no `join_all` of its own).
async fn futures_join_all<F: std::future::Future<Output = Dispatched>>(
    calls: impl Iterator<Item = F>,
) -> Vec<Dispatched> {
    let mut futures: Vec<std::pin::Pin<Box<F>>> = calls.map(Box::pin).collect();
    let mut done: Vec<Option<Dispatched>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, slot) in futures.iter_mut().zip(done.iter_mut()) {
            if slot.is_none() {
                if let std::task::Poll::Ready(value) = future.as_mut().poll(cx) {
                    *slot = Some(value);
                }
            }
        }
        if done.iter().all(Option::is_some) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    done.into_iter().flatten().collect()
}

fn fired(dispatched: &Dispatched) -> bool {
    dispatched.http.status == 200 && dispatched.events == ["batch_completed", "any_event"]
}

fn is_duplicate(dispatched: &Dispatched) -> bool {
    dispatched.events.is_empty() && dispatched.http.json() == json!({"status": "duplicate"})
}

#[test]
fn a_retry_after_a_restart_is_a_duplicate() {
    let rt = runtime();
    let shared = storage();
    let first = spawn(&rt, StorageMode::Memory(shared.clone()));
    let raw = delivery("wh_restart_1");
    assert!(fired(&rt.block_on(dispatch(&first, &raw))));
    assert!(first.backwards_calls() >= 3, "get (+exist), set, read back");
    assert_eq!(shared.len(), 1, "one bucket written");
    rt.block_on(first.close()).unwrap();

    let second = spawn(&rt, StorageMode::Memory(shared.clone()));
    let again = rt.block_on(dispatch(&second, &raw));
    assert!(is_duplicate(&again), "the restarted process remembers through storage: {:?}", again.http.json());
    let calls = second.backwards_calls();
    let third = rt.block_on(dispatch(&second, &raw));
    assert!(is_duplicate(&third));
    assert_eq!(second.backwards_calls(), calls, "learnt once, then answered from the process's memory");
    assert!(fired(&rt.block_on(dispatch(&second, &delivery("wh_restart_2")))), "a new delivery still fires");
    assert!(second.stderr().is_empty(), "no warning when storage works: {}", second.stderr());
}

#[test]
fn two_processes_sharing_storage_fire_a_delivery_once() {
    let rt = runtime();
    let shared = storage();
    let a = spawn(&rt, StorageMode::Memory(shared.clone()));
    let b = spawn(&rt, StorageMode::Memory(shared.clone()));
    // One after the other: the second node answers duplicate.
    for i in 0..20 {
        let raw = delivery(&format!("wh_pair_seq_{i}"));
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert!(fired(&rt.block_on(dispatch(first, &raw))), "{i}");
        assert!(is_duplicate(&rt.block_on(dispatch(second, &raw))), "{i}");
    }
    // At the same moment: each delivery fires at least once (nothing is lost); a node that lost the
    // race answers 409 and OpenAI's retry to it is a duplicate. Both firing is the residual window
    // of a storage without compare-and-set; it is counted, and must stay rare.
    let mut both = 0;
    let mut retried = 0;
    let rounds = 200;
    for i in 0..rounds {
        let raw = delivery(&format!("wh_pair_now_{i}"));
        let (x, y) = rt.block_on(async { tokio::join!(dispatch(&a, &raw), dispatch(&b, &raw)) });
        let answers = [(&x, &a), (&y, &b)];
        let fires = answers.iter().filter(|(d, _)| fired(d)).count();
        assert!(fires >= 1, "round {i}: nobody fired ({} / {})", x.http.status, y.http.status);
        both += usize::from(fires == 2);
        for (answer, node) in answers {
            if fired(answer) {
                continue;
            }
            assert!(
                is_duplicate(answer) || answer.http.status == 409,
                "round {i}: {} {:?}",
                answer.http.status,
                answer.http.json()
            );
            if answer.http.status == 409 {
                retried += 1;
                assert!(is_duplicate(&rt.block_on(dispatch(node, &raw))), "round {i}: the retry is a duplicate");
            }
        }
    }
    eprintln!("two processes, {rounds} simultaneous pairs: both fired {both}, a 409 then a duplicate {retried}");
    assert!(both * 10 <= rounds, "both fired in {both} of {rounds} simultaneous pairs");
    for (label, node) in [("a", &a), ("b", &b)] {
        assert!(node.stderr().is_empty(), "{label}: no storage trouble in a race: {}", node.stderr());
    }
}

#[test]
fn storage_trouble_never_fails_a_delivery() {
    let rt = runtime();
    let cases: Vec<(&str, StorageMode)> = vec![
        ("denied", StorageMode::Denied),
        ("failing", StorageMode::Failing("save data failed: the object store is unreachable".into())),
        ("garbled answers", StorageMode::Garbled),
        ("silent", StorageMode::Silent),
        ("slow", StorageMode::Slow(storage(), Duration::from_millis(600))),
    ];
    for (label, mode) in cases {
        let plugin = spawn(&rt, mode);
        let started = Instant::now();
        for i in 0..30 {
            let raw = delivery(&format!("wh_trouble_{label}_{i}"));
            assert!(fired(&rt.block_on(dispatch(&plugin, &raw))), "{label} {i}");
            assert!(
                is_duplicate(&rt.block_on(dispatch(&plugin, &raw))),
                "{label} {i}: the process's memory still works"
            );
        }
        // The first dispatch waits out the 200 ms budget at most; then storage is left alone.
        assert!(started.elapsed() < Duration::from_secs(5), "{label}: {:?}", started.elapsed());
        let stderr = plugin.stderr();
        let warnings = stderr.lines().filter(|l| l.contains("plugin storage unusable for deduplication")).count();
        assert_eq!(warnings, 1, "{label}: one warning, not one per delivery:\n{stderr}");
        assert!(!stderr.contains(SECRET) && !stderr.contains("batch_1"), "{label}: nothing private in the warning");
    }
}

#[test]
fn a_garbled_bucket_is_rewritten() {
    let rt = runtime();
    let shared = storage();
    for index in 0..BUCKETS {
        shared.put(&bucket_key(index), b"not a bucket!");
    }
    let plugin = spawn(&rt, StorageMode::Memory(shared.clone()));
    let raw = delivery("wh_garbled_1");
    assert!(fired(&rt.block_on(dispatch(&plugin, &raw))));
    let rewritten =
        shared.keys().into_iter().filter(|k| shared.value(k).is_some_and(|v| v.len() == ENTRY_BYTES)).count();
    assert_eq!(rewritten, 1, "the delivery's bucket now holds its one entry");
    assert!(plugin.stderr().contains("are not a dedupe bucket"), "{}", plugin.stderr());
}

#[test]
fn the_table_stays_within_its_size_under_any_load() {
    let rt = runtime();
    let shared = storage();
    // Every bucket full of live entries of other deliveries.
    let now = unix_now() as u32;
    for index in 0..BUCKETS {
        let mut value = Vec::new();
        for n in 0..ENTRIES_PER_BUCKET {
            value.extend_from_slice(&[
                (index % 251) as u8,
                (n % 251) as u8,
                0xEE,
                0xEE,
                0xEE,
                0xEE,
                0xEE,
                0xEE,
                0xEE,
                0xEE,
            ]);
            value.extend_from_slice(&(now - 3600).to_be_bytes());
            value.extend_from_slice(&7u16.to_be_bytes());
        }
        shared.put(&bucket_key(index), &value);
    }
    assert_eq!(shared.bytes(), MAX_STORED_BYTES);
    let plugin = spawn(&rt, StorageMode::Memory(shared.clone()));
    // Sixteen at a time (a new delivery waits out the settling delay before its read-back).
    for chunk in 0..25 {
        let ids: Vec<String> = (0..16).map(|n| format!("wh_load_{}", chunk * 16 + n)).collect();
        let answers = rt.block_on(async {
            let raws: Vec<Vec<u8>> = ids.iter().map(|id| delivery(id)).collect();
            let calls = raws.iter().map(|raw| dispatch(&plugin, raw));
            futures_join_all(calls).await
        });
        for (id, answer) in ids.iter().zip(answers) {
            assert!(fired(&answer), "{id}");
        }
    }
    assert_eq!(shared.len(), BUCKETS, "no key beyond the table");
    assert!(shared.bytes() <= MAX_STORED_BYTES, "{} bytes", shared.bytes());
    assert!(plugin.stderr().is_empty(), "the quota was never hit: {}", plugin.stderr());
    // The newest deliveries are remembered by storage, across a restart.
    rt.block_on(plugin.close()).unwrap();
    let restarted = spawn(&rt, StorageMode::Memory(shared.clone()));
    assert!(is_duplicate(&rt.block_on(dispatch(&restarted, &delivery("wh_load_399")))));
}

#[test]
fn only_deliveries_that_fire_are_recorded() {
    let rt = runtime();
    let shared = storage();
    let plugin = spawn(&rt, StorageMode::Memory(shared.clone()));
    let body = event_body("batch.completed", "evt_bad", unix_now(), &json!({"id": "batch_1"}));
    let forged = RawRequest::signed(OTHER_SECRET, "wh_forged", unix_now(), body).bytes();
    assert_eq!(rt.block_on(dispatch(&plugin, &forged)).http.status, 401);
    // An API-key subscription that did not choose this type: acknowledged, not recorded.
    let raw = delivery("wh_not_chosen");
    let mut data = trigger::dispatch(PROVIDER, &raw, &subscription(SECRET, ENDPOINT));
    data["subscription"]["properties"]["endpoint_id"] = json!("whe_1");
    data["subscription"]["properties"]["subscribed_event_types"] = json!("response.completed");
    let ignored = Dispatched::from_chunk(rt.block_on(plugin.call(data)).unwrap().unwrap());
    assert_eq!(ignored.http.json()["status"], "ignored");
    assert_eq!(plugin.backwards_calls(), 0, "no storage call for what does not fire");
    assert!(shared.is_empty());
    let manual = trigger::dispatch(PROVIDER, &raw, &subscription(SECRET, OTHER_ENDPOINT));
    let manual = Dispatched::from_chunk(rt.block_on(plugin.call(manual)).unwrap().unwrap());
    assert!(fired(&manual), "the same delivery to a manual subscription fires");
    assert_eq!(shared.len(), 1);
}

/// Storage keys are within the daemon's rules, whatever the webhook id looks like.
#[test]
fn storage_keys_follow_the_daemon_rules() {
    let rt = runtime();
    let shared = storage();
    let plugin = spawn(&rt, StorageMode::Memory(shared.clone()));
    for id in ["../../etc/passwd", "a//b", "x\\y", &"z".repeat(300), "ünïcödé"] {
        let dispatched = rt.block_on(dispatch(&plugin, &delivery(id)));
        assert!(fired(&dispatched), "{id:?}: {:?}", dispatched.http.json());
    }
    for key in shared.keys() {
        assert!(key.len() <= 256 && !key.contains("..") && !key.contains("//") && !key.contains('\\'), "{key}");
        assert!(key.starts_with("dedupe/v1/"), "{key}");
    }
    assert!(plugin.stderr().is_empty(), "{}", plugin.stderr());
}
