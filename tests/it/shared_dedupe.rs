//! The replay memory shared through the daemon's plugin storage (`src/shared_dedupe.rs`): the real
//! binary driven by `dify_plugin::host`, whose fake daemon side answers storage calls from memory,
//! slowly, wrongly or not at all. Two processes sharing one `MemoryStorage` are two daemon nodes
//! sharing one database. One test runs the plugin in this process instead, under tokio's paused
//! clock, to show that a new delivery waits for no timer.
//!
//! Nothing here reads a wall clock: round trips are counted by the storage (`MemoryStorage::recording`)
//! or by the host, and interleavings are read from the storage's record of calls.

use std::sync::Arc;
use std::time::Duration;

use dify_plugin::host::{MemoryStorage, PluginProcess, StorageCall, StorageMode, trigger};
use dify_plugin::{ServeOptions, serve};
use openai_trigger::provider::OpenAiTrigger;
use openai_trigger::shared_dedupe::delivery_digest as digest;
use openai_trigger::shared_dedupe::{
    BUCKETS, ENTRIES_PER_BUCKET, ENTRY_BYTES, MANIFEST_STORAGE_BYTES, MAX_STORED_BYTES, bucket_key, bucket_of,
};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

/// The bucket a webhook id of the test subscription is kept in.
fn bucket_of_id(id: &str) -> usize {
    bucket_of(&digest(ENDPOINT, id))
}

/// `count` webhook ids (`{prefix}{n}`) whose entries share bucket `bucket`.
fn ids_in_bucket(bucket: usize, prefix: &str, count: usize) -> Vec<String> {
    (0..).map(|n| format!("{prefix}{n}")).filter(|id| bucket_of_id(id) == bucket).take(count).collect()
}

/// Whether a stored bucket value holds an entry for webhook id `id`.
fn holds(value: &[u8], id: &str) -> bool {
    let key = digest(ENDPOINT, id);
    value.chunks_exact(ENTRY_BYTES).any(|entry| entry[..10] == key[..10])
}

/// `value` without the entry of webhook id `id`.
fn without(value: &[u8], id: &str) -> Vec<u8> {
    let key = digest(ENDPOINT, id);
    value.chunks_exact(ENTRY_BYTES).filter(|entry| entry[..10] != key[..10]).flatten().copied().collect()
}

/// The calls `storage` answered since the record held `from` of them, as `opt key`.
fn calls_since(storage: &MemoryStorage, from: usize) -> Vec<String> {
    storage.calls()[from..].iter().map(|StorageCall { opt, key }| format!("{opt} {key}")).collect()
}

/// Dispatches `id` to `plugin`: its answer, and the storage calls it made (`storage` is recording).
fn dispatch_counted(
    rt: &tokio::runtime::Runtime,
    plugin: &PluginProcess,
    storage: &MemoryStorage,
    id: &str,
) -> (Dispatched, Vec<String>) {
    let from = storage.calls().len();
    let answer = rt.block_on(dispatch(plugin, &delivery(id)));
    (answer, calls_since(storage, from))
}

#[test]
fn a_retry_after_a_restart_is_a_duplicate() {
    let rt = runtime();
    let shared = storage();
    let first = spawn(&rt, StorageMode::Memory(shared.clone()));
    let raw = delivery("wh_restart_1");
    assert!(fired(&rt.block_on(dispatch(&first, &raw))));
    assert_eq!(first.backwards_calls(), 3, "get (missing), exist (false), set");
    assert_eq!(shared.len(), 1, "one bucket written");
    rt.block_on(first.close()).unwrap();

    let second = spawn(&rt, StorageMode::Memory(shared.clone()));
    let again = rt.block_on(dispatch(&second, &raw));
    assert!(is_duplicate(&again), "the restarted process remembers through storage: {:?}", again.http.json());
    assert_eq!(second.backwards_calls(), 1, "one get");
    let third = rt.block_on(dispatch(&second, &raw));
    assert!(is_duplicate(&third));
    assert_eq!(second.backwards_calls(), 1, "learnt once, then answered from the process's memory");
    assert!(fired(&rt.block_on(dispatch(&second, &delivery("wh_restart_2")))), "a new delivery still fires");
    assert!(second.stderr().is_empty(), "no warning when storage works: {}", second.stderr());
}

/// Round trips, counted by the storage: a new delivery costs `get` + `set` once its bucket exists
/// (whoever wrote it), `get` + `exist` + `set` the first time; a duplicate one `get`; a failed `get`
/// of a bucket known to exist is trouble at once (no `exist`).
#[test]
fn a_new_delivery_costs_two_round_trips_and_a_duplicate_one() {
    let rt = runtime();
    let shared = storage().recording();
    let a = spawn(&rt, StorageMode::Memory(shared.clone()));
    let bucket = bucket_of_id("wh_trips_0");
    let key = bucket_key(bucket);
    let ids = ids_in_bucket(bucket, "wh_trips_", 4);
    let calls = |ops: &[&str], key: &str| ops.iter().map(|op| format!("{op} {key}")).collect::<Vec<_>>();

    let (answer, made) = dispatch_counted(&rt, &a, &shared, &ids[0]);
    assert!(fired(&answer));
    assert_eq!(made, calls(&["get", "exist", "set"], &key), "the first delivery into a bucket nobody wrote");
    let (answer, made) = dispatch_counted(&rt, &a, &shared, &ids[1]);
    assert!(fired(&answer));
    assert_eq!(made, calls(&["get", "set"], &key), "the bucket exists now");
    let (answer, made) = dispatch_counted(&rt, &a, &shared, &ids[0]);
    assert!(is_duplicate(&answer));
    assert_eq!(made, Vec::<String>::new(), "a copy this process fired is answered from its memory");

    let b = spawn(&rt, StorageMode::Memory(shared.clone()));
    let (answer, made) = dispatch_counted(&rt, &b, &shared, &ids[0]);
    assert!(is_duplicate(&answer), "another process: a duplicate through storage");
    assert_eq!(made, calls(&["get"], &key), "a duplicate costs one get");
    let (answer, made) = dispatch_counted(&rt, &b, &shared, &ids[2]);
    assert!(fired(&answer));
    assert_eq!(made, calls(&["get", "set"], &key));
    // A bucket another process created: two round trips from this process's first delivery on.
    let elsewhere = (0..).map(|n| format!("wh_trips_other_{n}")).find(|id| bucket_of_id(id) != bucket).unwrap();
    let other_key = bucket_key(bucket_of_id(&elsewhere));
    let (answer, made) = dispatch_counted(&rt, &a, &shared, &elsewhere);
    assert!(fired(&answer));
    assert_eq!(made, calls(&["get", "exist", "set"], &other_key));
    let next = ids_in_bucket(bucket_of_id(&elsewhere), "wh_trips_next_", 1).remove(0);
    let (answer, made) = dispatch_counted(&rt, &b, &shared, &next);
    assert!(fired(&answer));
    assert_eq!(made, calls(&["get", "set"], &other_key), "b never wrote it, but its get found it");
    for (label, node) in [("a", &a), ("b", &b)] {
        assert!(node.stderr().is_empty(), "{label}: {}", node.stderr());
    }

    // The bucket disappears behind a's back: its get fails, and a knows the key existed, so that
    // is trouble at once. The delivery still fires, on a's memory, and storage rests.
    shared.remove(&key);
    let (answer, made) = dispatch_counted(&rt, &a, &shared, &ids[3]);
    assert!(fired(&answer));
    assert_eq!(made, calls(&["get"], &key), "no exist for a bucket known to exist");
    let (answer, made) = dispatch_counted(&rt, &a, &shared, "wh_trips_during_the_pause");
    assert!(fired(&answer));
    assert_eq!(made, Vec::<String>::new(), "storage is left alone after trouble");
    let stderr = a.stderr();
    assert_eq!(stderr.matches("plugin storage unusable for deduplication").count(), 1, "{stderr}");
    assert!(stderr.contains(&format!("get {key} failed")), "{stderr}");
}

/// Under tokio's paused clock time only moves when every task waits for a timer; a sleep anywhere
/// in a dispatch (the old settling delay) would move it. Storage answers at once, in process.
#[tokio::test(start_paused = true)]
async fn a_new_delivery_is_answered_after_get_and_set_without_a_timed_wait() {
    let (mut input, plugin_in) = tokio::io::duplex(1 << 20);
    let (plugin_out, output) = tokio::io::duplex(1 << 20);
    let plugin = Arc::new(OpenAiTrigger::with_system_clock().plugin());
    let options = ServeOptions { heartbeat_interval: Duration::from_secs(24 * 3600), ..ServeOptions::default() };
    tokio::spawn(serve(BufReader::new(plugin_in), plugin_out, plugin, options, std::future::pending::<()>()));
    let mut lines = BufReader::new(output).lines();
    let storage = MemoryStorage::new().recording();
    let started = tokio::time::Instant::now();
    let rounds = 40;
    let mut ids: Vec<String> = (0..rounds).map(|n| format!("wh_paused_{n}")).collect();
    // Then each again: duplicates, answered from the process's memory.
    ids.extend(ids.clone());
    for (n, id) in ids.iter().enumerate() {
        let session = format!("paused-{n}");
        let data = trigger::dispatch(PROVIDER, &delivery(id), &subscription(SECRET, ENDPOINT));
        let line = json!({"session_id": session, "event": "request", "data": data}).to_string() + "\n";
        input.write_all(line.as_bytes()).await.unwrap();
        let from = storage.calls().len();
        let chunk = loop {
            let line = lines.next_line().await.unwrap().expect("the plugin's output is open");
            let message: Value = serde_json::from_str(&line).unwrap();
            if message["session_id"] != session.as_str() {
                continue;
            }
            match message["data"]["type"].as_str() {
                Some("invoke") => {
                    let invoke = &message["data"]["data"];
                    assert_eq!(invoke["type"], "storage");
                    let (event, text, data) = match storage.answer(&invoke["request"]) {
                        Ok(data) => ("response", "struct".to_owned(), data),
                        Err(refusal) => ("error", refusal.message, Value::Null),
                    };
                    for (event, text, data) in [(event, text, data), ("end", String::new(), Value::Null)] {
                        let answer = json!({"session_id": session, "event": "backwards_response", "data": {
                            "backwards_request_id": invoke["backwards_request_id"], "event": event,
                            "message": text, "data": data}});
                        input.write_all((answer.to_string() + "\n").as_bytes()).await.unwrap();
                    }
                }
                Some("stream") => break message["data"]["data"].clone(),
                other => panic!("{id}: unexpected {other:?}: {line}"),
            }
        };
        let answer = Dispatched::from_chunk(chunk);
        let made: Vec<String> =
            calls_since(&storage, from).into_iter().map(|c| c[..c.find(' ').unwrap()].to_owned()).collect();
        if n < rounds {
            assert!(fired(&answer), "{id}");
            assert!(made == ["get", "set"] || made == ["get", "exist", "set"], "{id}: {made:?}");
        } else {
            assert!(is_duplicate(&answer), "{id}");
            assert!(made.is_empty(), "{id}: {made:?}");
        }
        assert_eq!(tokio::time::Instant::now(), started, "{id}: the clock moved, so a dispatch waited for a timer");
    }
}

#[test]
fn two_processes_sharing_storage() {
    let rt = runtime();
    let shared = storage().recording();
    // Every bucket exists already, so each delivery costs each process one get and at most one set,
    // and the storage's record shows the interleaving of each pair.
    for index in 0..BUCKETS {
        shared.put(&bucket_key(index), &[]);
    }
    let a = spawn(&rt, StorageMode::Memory(shared.clone()));
    let b = spawn(&rt, StorageMode::Memory(shared.clone()));
    // One after the other: the second process always answers duplicate.
    for i in 0..20 {
        let id = format!("wh_pair_seq_{i}");
        let (first, second) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert!(fired(&rt.block_on(dispatch(first, &delivery(&id)))), "{i}");
        assert!(is_duplicate(&rt.block_on(dispatch(second, &delivery(&id)))), "{i}");
    }
    // At the same moment. Nothing is lost (at least one fires) and no one is told to retry. Both
    // fire exactly when both gets came before the first set: the window the module documents,
    // which OpenAI's retry timing never opens (it retries seconds after a failed attempt). Every
    // later copy, to any process, is a duplicate.
    let c = spawn(&rt, StorageMode::Memory(shared.clone()));
    let (mut both, mut one) = (0, 0);
    let rounds = 200;
    for i in 0..rounds {
        let id = format!("wh_pair_now_{i}");
        let key = bucket_key(bucket_of_id(&id));
        let from = shared.calls().len();
        let raw = delivery(&id);
        let (x, y) = rt.block_on(async { tokio::join!(dispatch(&a, &raw), dispatch(&b, &raw)) });
        let made = calls_since(&shared, from);
        let fires = usize::from(fired(&x)) + usize::from(fired(&y));
        for answer in [&x, &y] {
            assert!(
                fired(answer) || is_duplicate(answer),
                "round {i}: {} {:?}",
                answer.http.status,
                answer.http.json()
            );
        }
        let (get, set) = (format!("get {key}"), format!("set {key}"));
        match fires {
            2 => {
                both += 1;
                assert_eq!(
                    made,
                    [get.as_str(), &get, &set, &set],
                    "round {i}: both fired, so both read before a write"
                );
            }
            1 => {
                one += 1;
                assert_eq!(made, [get.as_str(), &set, &get], "round {i}: one fired, the other read after its write");
            }
            _ => panic!("round {i}: nobody fired"),
        }
        for (label, node) in [("a", &a), ("b", &b), ("c", &c)] {
            let again = rt.block_on(dispatch(node, &raw));
            assert!(is_duplicate(&again), "round {i}: the retry to {label} is a duplicate");
        }
    }
    eprintln!("two processes, {rounds} simultaneous copies: both fired {both}, one fired and one duplicate {one}");
    for (label, node) in [("a", &a), ("b", &b), ("c", &c)] {
        assert!(node.stderr().is_empty(), "{label}: no storage trouble in a race: {}", node.stderr());
    }
}

/// Two processes writing one bucket at once: the later set drops the other's new entry (the
/// second window the module documents), and the process that wrote it puts it back with its next
/// write to that bucket. The concurrent writer is played by the test: it puts back the bucket as
/// that writer read it, before the entry.
#[test]
fn an_entry_another_writer_dropped_is_put_back_by_the_next_write() {
    let rt = runtime();
    let shared = storage();
    let a = spawn(&rt, StorageMode::Memory(shared.clone()));
    let bucket = bucket_of_id("wh_drop_0");
    let key = bucket_key(bucket);
    let ids = ids_in_bucket(bucket, "wh_drop_", 4);
    assert!(fired(&rt.block_on(dispatch(&a, &delivery(&ids[0])))));

    // Dropped, and retried to a process that does not have it in memory: it fires again.
    let before = shared.value(&key).unwrap();
    assert!(fired(&rt.block_on(dispatch(&a, &delivery(&ids[1])))));
    shared.put(&key, &before);
    let b = spawn(&rt, StorageMode::Memory(shared.clone()));
    assert!(fired(&rt.block_on(dispatch(&b, &delivery(&ids[1])))), "the documented window: a fires it, then b");

    // Dropped, then a writes the bucket again: the entry is back, and the retry is a duplicate.
    assert!(fired(&rt.block_on(dispatch(&a, &delivery(&ids[2])))));
    let value = shared.value(&key).unwrap();
    assert!(holds(&value, &ids[2]));
    shared.put(&key, &without(&value, &ids[2]));
    assert!(fired(&rt.block_on(dispatch(&a, &delivery(&ids[3])))));
    let value = shared.value(&key).unwrap();
    assert!(holds(&value, &ids[2]) && holds(&value, &ids[3]), "a's next write put its dropped entry back");
    let c = spawn(&rt, StorageMode::Memory(shared.clone()));
    assert!(is_duplicate(&rt.block_on(dispatch(&c, &delivery(&ids[2])))));
    for (label, node) in [("a", &a), ("b", &b), ("c", &c)] {
        assert!(node.stderr().is_empty(), "{label}: {}", node.stderr());
    }
}

#[test]
fn storage_trouble_never_fails_a_delivery() {
    let rt = runtime();
    // Each mode, and the calls the first delivery makes before storage is left alone: a refusal or
    // failure of get, then of the exist that would tell a missing key; a garbled or missing answer.
    let cases: Vec<(&str, StorageMode, u64)> = vec![
        ("denied", StorageMode::Denied, 2),
        ("failing", StorageMode::Failing("save data failed: the object store is unreachable".into()), 2),
        ("garbled answers", StorageMode::Garbled, 1),
        ("silent", StorageMode::Silent, 1),
        ("slow", StorageMode::Slow(storage(), Duration::from_millis(1500)), 1),
    ];
    for (label, mode, first_calls) in cases {
        let plugin = spawn(&rt, mode);
        for i in 0..30 {
            let raw = delivery(&format!("wh_trouble_{label}_{i}"));
            assert!(fired(&rt.block_on(dispatch(&plugin, &raw))), "{label} {i}");
            assert_eq!(plugin.backwards_calls(), first_calls, "{label} {i}: after the first trouble, no storage call");
            assert!(
                is_duplicate(&rt.block_on(dispatch(&plugin, &raw))),
                "{label} {i}: the process's memory still works"
            );
        }
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
    // Sixteen at a time, so writers of one bucket in this process also take turns.
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
