/*!
The replay memory shared through the daemon's plugin storage (daemon-protocol.md §4.2): what makes
a retry that reaches a restarted plugin process, or another node of a daemon cluster, a duplicate.
Dify backs that storage with its database, Redis and object storage, shared by all nodes and kept
across restarts, so the plugin scales out with Dify instead of with a coordinator of its own.

# Layout: a fixed table, bounded by construction

[`BUCKETS`] keys, `dedupe/v1/000` … `dedupe/v1/3ff`. A delivery's digest (the in-process
[`crate::dedupe::digest`] of its subscription scope and `webhook-id`) picks its bucket; a bucket's
value is at most [`ENTRIES_PER_BUCKET`] entries of [`ENTRY_BYTES`] bytes:

| bytes | field |
| --- | --- |
| 0–9 | the first 10 bytes of the digest (80 bits: a false match within one bucket is ~2⁻⁷⁴) |
| 10–13 | when it was recorded, Unix seconds, big-endian |
| 14–15 | the tag of the process that recorded it (random per process) |

Writing an entry drops the bucket's entries older than 72 h (OpenAI's retry horizon) and, past
[`ENTRIES_PER_BUCKET`], its oldest. So the storage never holds more than
`1024 × 60 × 16 = 983 040` bytes in 1024 keys, under any load: the manifest asks for 1 MiB
(`resource.permission.storage.size: 1048576`). Capacity: 61 440 deliveries per 72 h spread evenly
(about 850 an hour); past that a bucket forgets its oldest entries first, and a retry of one of them
fires again unless the process's own memory still has it.

# Order, and what "recorded" means

Dispatch asks the process's memory first ([`crate::dedupe::ReplayGuard`]); only a delivery new
there reaches storage. Then, under a per-bucket lock (one writer per bucket in this process):
`get` the bucket (a missing key is an error answer; `exist` tells it from a failure) → digest present:
a duplicate → else add our entry, `set` the bucket, wait a settling delay, and `get` it again. The
entry read back decides: ours → fire; another process's → that process recorded the same delivery
at the same moment, last, and fires it, so we answer 409 and OpenAI's retry finds the entry;
missing → a concurrent writer dropped it: written again once. An id is recorded just before
dispatch answers 200 and fires, never for a rejected, unsubscribed or duplicate delivery.

The storage has no compare-and-set; the read-back makes the last writer the only one that fires,
as long as every writer's read-back comes after the other's write. The settling delay (twice this
dispatch's own `get`→`set` time, at least [`MIN_SETTLE`], within the budget) is there for that: two
processes both fire only when one's `get`→`set` takes longer than the other's delay. The in-process
test counts it with two processes; the conformance suite measures it between two daemon nodes.

# Trouble

Every storage call of one dispatch fits in [`STORAGE_BUDGET`] (200 ms). Storage slow, failing,
refused (a package without the permission, an older daemon) or absent (serverless): the delivery
fires on the process's memory alone, OpenAI never sees an error, storage is left alone for
[`PAUSE_AFTER_TROUBLE`], and one warning is logged a minute at most. A garbled bucket is treated as
empty and rewritten.
*/

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dify_plugin::{BackwardsError, Session};
use tokio::time::Instant;

use crate::dedupe::{Key, RETENTION_SECONDS};

/// Keys of the table.
pub const BUCKETS: usize = 1024;
/// Entries one bucket keeps.
pub const ENTRIES_PER_BUCKET: usize = 60;
/// Bytes of one entry.
pub const ENTRY_BYTES: usize = 16;
/// The most the table ever stores: 983 040 bytes.
pub const MAX_STORED_BYTES: usize = BUCKETS * ENTRIES_PER_BUCKET * ENTRY_BYTES;
/// `resource.permission.storage.size` in the manifest (a tidy test holds them together).
pub const MANIFEST_STORAGE_BYTES: usize = 1024 * 1024;
const _: () = assert!(MAX_STORED_BYTES <= MANIFEST_STORAGE_BYTES, "the table must fit the manifest's storage size");
/// What the storage calls of one dispatch may take together.
pub const STORAGE_BUDGET: Duration = Duration::from_millis(200);
/// The least a writer waits between its `set` and its read-back.
pub const MIN_SETTLE: Duration = Duration::from_millis(25);
/// After trouble, storage is not asked for this long.
pub const PAUSE_AFTER_TROUBLE: i64 = 30;
/// Writers of the same bucket are serialised by one of this many locks (a bucket's lock is its
/// index modulo this): enough to keep unrelated deliveries apart, small enough to cost nothing.
const LOCK_STRIPES: usize = 64;
/// At most one warning per this many seconds.
const WARNING_EVERY: i64 = 60;
const KEY_PREFIX: &str = "dedupe/v1/";
const DIGEST_BYTES: usize = 10;

/// What the shared memory says about a delivery new to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shared {
    /// Recorded by this process: fire it.
    Recorded,
    /// Already recorded (by an earlier process, another node, or before a restart): a duplicate.
    Seen,
    /// Another process recorded it at the same moment and fires it: ask the sender to retry.
    Lost,
    /// Storage could not be used: fire on the process's memory alone.
    Unavailable(String),
}

/// One entry of a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    digest: [u8; DIGEST_BYTES],
    recorded_at: u32,
    tag: u16,
}

/// A bucket's entries, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Bucket {
    entries: Vec<Entry>,
}

impl Bucket {
    /// None when `bytes` is not a whole number of entries, or more than a bucket holds.
    fn parse(bytes: &[u8]) -> Option<Bucket> {
        if bytes.len() % ENTRY_BYTES != 0 || bytes.len() > ENTRIES_PER_BUCKET * ENTRY_BYTES {
            return None;
        }
        let entries = bytes
            .chunks_exact(ENTRY_BYTES)
            .map(|chunk| {
                let mut digest = [0u8; DIGEST_BYTES];
                digest.copy_from_slice(&chunk[..DIGEST_BYTES]);
                let recorded_at = u32::from_be_bytes([chunk[10], chunk[11], chunk[12], chunk[13]]);
                let tag = u16::from_be_bytes([chunk[14], chunk[15]]);
                Entry { digest, recorded_at, tag }
            })
            .collect();
        Some(Bucket { entries })
    }

    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.entries.len() * ENTRY_BYTES);
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.digest);
            bytes.extend_from_slice(&entry.recorded_at.to_be_bytes());
            bytes.extend_from_slice(&entry.tag.to_be_bytes());
        }
        bytes
    }

    /// The live entry for `digest` at `now`.
    fn find(&self, digest: &[u8; DIGEST_BYTES], now: i64) -> Option<Entry> {
        self.entries.iter().rev().find(|e| &e.digest == digest && live(e, now)).copied()
    }

    /// Adds `entry`: expired entries go, and past the capacity the oldest.
    fn add(&mut self, entry: Entry, now: i64) {
        self.entries.retain(|e| live(e, now) && e.digest != entry.digest);
        self.entries.push(entry);
        self.entries.sort_by_key(|e| e.recorded_at);
        let excess = self.entries.len().saturating_sub(ENTRIES_PER_BUCKET);
        self.entries.drain(..excess);
    }
}

fn live(entry: &Entry, now: i64) -> bool {
    i64::from(entry.recorded_at) + RETENTION_SECONDS > now
}

/// The bucket and the stored digest of a delivery's key.
fn place(key: &Key) -> (usize, [u8; DIGEST_BYTES]) {
    let mut digest = [0u8; DIGEST_BYTES];
    digest.copy_from_slice(&key[..DIGEST_BYTES]);
    let bucket = usize::from(u16::from_be_bytes([key[10], key[11]])) % BUCKETS;
    (bucket, digest)
}

/// The storage key of bucket `index`: `dedupe/v1/000` … `dedupe/v1/3ff`.
pub fn bucket_key(index: usize) -> String {
    format!("{KEY_PREFIX}{index:03x}")
}

/// The process's side of the shared memory: its tag, its bucket locks, its trouble state.
pub struct SharedReplay {
    tag: u16,
    locks: Vec<tokio::sync::Mutex<()>>,
    paused_until: AtomicI64,
    last_warning: AtomicI64,
    budget: Duration,
}

impl Default for SharedReplay {
    fn default() -> Self {
        SharedReplay::new(STORAGE_BUDGET)
    }
}

impl SharedReplay {
    pub fn new(budget: Duration) -> Self {
        SharedReplay {
            tag: process_tag(),
            locks: (0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            paused_until: AtomicI64::new(i64::MIN),
            last_warning: AtomicI64::new(i64::MIN),
            budget,
        }
    }

    /// Whether storage is being left alone after trouble at `now`.
    pub fn is_paused(&self, now: i64) -> bool {
        now < self.paused_until.load(Ordering::Relaxed)
    }

    /// Looks `key` up in storage and, if it is not there, records it (see the module docs). `now`
    /// (Unix seconds, the dispatch's) is what entries are recorded at and expire by; the budget
    /// and the settling delay run on tokio's monotonic clock.
    pub async fn check_and_record(&self, session: &Session, key: &Key, now: i64) -> Shared {
        if self.is_paused(now) {
            return Shared::Unavailable("paused after trouble".into());
        }
        let deadline = Instant::now() + self.budget;
        let (index, digest) = place(key);
        let lock = &self.locks[index % LOCK_STRIPES];
        let Ok(_guard) = tokio::time::timeout(self.budget, lock.lock()).await else {
            return self.trouble(now, "this process's writers of one bucket were busy past the budget");
        };
        let name = bucket_key(index);
        let started = Instant::now();
        let mut bucket = match self.read(session, &name, deadline, now).await {
            Ok(bucket) => bucket,
            Err(reason) => return self.trouble(now, &reason),
        };
        if bucket.find(&digest, now).is_some() {
            return Shared::Seen;
        }
        let entry = Entry { digest, recorded_at: u32::try_from(now).unwrap_or(u32::MAX), tag: self.tag };
        // Twice at most: once, and again if a concurrent writer dropped the entry.
        for _ in 0..2 {
            bucket.add(entry, now);
            if let Err(err) = storage(session, deadline).set(&name, &bucket.encode()).await {
                return self.trouble(now, &format!("set failed: {err}"));
            }
            // Let a concurrent writer's set land before reading back, leaving time for the read.
            let settle = (started.elapsed() * 2).max(MIN_SETTLE);
            let room = deadline.saturating_duration_since(Instant::now()).saturating_sub(self.budget / 4);
            tokio::time::sleep(settle.min(room)).await;
            match self.read(session, &name, deadline, now).await {
                Ok(read_back) => match read_back.find(&digest, now) {
                    Some(found) if found.tag == self.tag => return Shared::Recorded,
                    Some(_) => return Shared::Lost,
                    None => bucket = read_back,
                },
                // Written, but not readable in time: ours as far as we can know.
                Err(_) => return Shared::Recorded,
            }
        }
        Shared::Recorded
    }

    /// The bucket under `name`: empty when the key does not exist yet or holds garbage.
    async fn read(&self, session: &Session, name: &str, deadline: Instant, now: i64) -> Result<Bucket, String> {
        match storage(session, deadline).get(name).await {
            Ok(bytes) => Ok(Bucket::parse(&bytes).unwrap_or_else(|| {
                self.warn(
                    now,
                    &format!(
                        "storage key {name} held {} bytes that are not a dedupe bucket; rewriting it",
                        bytes.len()
                    ),
                );
                Bucket::default()
            })),
            // A missing key's get is an error answer (daemon-protocol.md §4.2): ask which it was.
            Err(BackwardsError::Daemon(message)) => match storage(session, deadline).exist(name).await {
                Ok(false) => Ok(Bucket::default()),
                // Written by another process between our get and exist: read it now.
                Ok(true) => match storage(session, deadline).get(name).await {
                    Ok(bytes) => Ok(Bucket::parse(&bytes).unwrap_or_default()),
                    Err(err) => {
                        Err(format!("get failed: {err} (earlier: {})", dify_plugin::wire::truncate(&message, 200)))
                    }
                },
                Err(err) => Err(format!(
                    "get failed ({}), then exist failed: {err}",
                    dify_plugin::wire::truncate(&message, 200)
                )),
            },
            Err(err) => Err(format!("get failed: {err}")),
        }
    }

    fn trouble(&self, now: i64, reason: &str) -> Shared {
        self.paused_until.store(now.saturating_add(PAUSE_AFTER_TROUBLE), Ordering::Relaxed);
        self.warn(now, &format!(
            "plugin storage unusable for deduplication ({reason}); using this process's memory alone for {PAUSE_AFTER_TROUBLE} s"
        ));
        Shared::Unavailable(reason.to_owned())
    }

    /// One warning a minute at most (`now`: the dispatch's, Unix seconds).
    fn warn(&self, now: i64, message: &str) {
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARNING_EVERY
            && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!("{message}");
        }
    }
}

/// A storage handle whose calls end by `deadline`.
fn storage(session: &Session, deadline: Instant) -> dify_plugin::Storage<'_> {
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    session.storage().within(left)
}

/// A random tag for this process (never 0): a hash of the process id under std's randomly keyed
/// hasher, whose keys come from the OS, so processes that share a storage tell their entries apart.
fn process_tag() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one(std::process::id()).to_be_bytes();
    u16::from_be_bytes([random[0], random[1]]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, at: u32) -> Entry {
        Entry { digest: [n; DIGEST_BYTES], recorded_at: at, tag: 7 }
    }

    #[test]
    fn buckets_round_trip_and_refuse_garbage() {
        let bucket = Bucket { entries: vec![entry(1, 100), entry(2, 200)] };
        let bytes = bucket.encode();
        assert_eq!(bytes.len(), 2 * ENTRY_BYTES);
        assert_eq!(Bucket::parse(&bytes), Some(bucket));
        assert_eq!(Bucket::parse(&[]), Some(Bucket::default()));
        assert_eq!(Bucket::parse(&[0; 15]), None);
        assert_eq!(Bucket::parse(&vec![0; (ENTRIES_PER_BUCKET + 1) * ENTRY_BYTES]), None);
    }

    #[test]
    fn a_bucket_keeps_the_newest_live_entries_only() {
        let now = 1_000_000;
        let mut bucket = Bucket::default();
        bucket.add(entry(0, (now - RETENTION_SECONDS) as u32), now);
        assert!(bucket.find(&[0; DIGEST_BYTES], now).is_none(), "72 h old is expired");
        for n in 1..=(ENTRIES_PER_BUCKET as u8 + 5) {
            bucket.add(entry(n, now as u32 + u32::from(n)), now);
        }
        assert_eq!(bucket.entries.len(), ENTRIES_PER_BUCKET);
        assert!(bucket.find(&[1; DIGEST_BYTES], now).is_none(), "the oldest went first");
        assert!(bucket.find(&[65; DIGEST_BYTES], now).is_some());
        assert!(bucket.encode().len() <= ENTRIES_PER_BUCKET * ENTRY_BYTES);
    }

    #[test]
    fn adding_a_digest_again_replaces_its_entry() {
        let mut bucket = Bucket::default();
        bucket.add(entry(1, 10), 10);
        bucket.add(Entry { tag: 9, ..entry(1, 11) }, 11);
        assert_eq!(bucket.entries.len(), 1);
        assert_eq!(bucket.find(&[1; DIGEST_BYTES], 11).map(|e| e.tag), Some(9));
    }

    #[test]
    fn keys_and_sizes() {
        assert_eq!(bucket_key(0), "dedupe/v1/000");
        assert_eq!(bucket_key(BUCKETS - 1), "dedupe/v1/3ff");
        assert_eq!(MAX_STORED_BYTES, 983_040);
        let (index, digest) = place(&[0xab; 16]);
        assert!(index < BUCKETS);
        assert_eq!(digest, [0xab; DIGEST_BYTES]);
    }
}
