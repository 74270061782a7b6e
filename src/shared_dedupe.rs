/*!
The replay memory shared through the daemon's plugin storage (daemon-protocol.md §4.2): what makes
a retry that reaches a restarted plugin process, or another node of a daemon cluster, a duplicate.
Dify backs that storage with its database, Redis and object storage, shared by all nodes and kept
across restarts, so the plugin scales out with Dify instead of with a coordinator of its own.

# Layout: a fixed table, bounded by construction

[`BUCKETS`] keys, `dedupe/v1/000` … `dedupe/v1/3ff`. A delivery's digest (the in-process
[`crate::dedupe::digest`] of its subscription scope and `webhook-id`) picks its bucket
([`bucket_of`]); a bucket's value is at most [`ENTRIES_PER_BUCKET`] entries of [`ENTRY_BYTES`] bytes:

| bytes | field |
| --- | --- |
| 0–9 | the first 10 bytes of the digest (80 bits: a false match within one bucket is ~2⁻⁷⁴) |
| 10–13 | when it was recorded, Unix seconds, big-endian |
| 14–15 | the tag of the process that recorded it (random per process) |

Nothing decides by the tag any more: it says, in a dump of the table, which process wrote an
entry, and it keeps the `v1` layout that processes of the previous release (which read their entry
back and compared tags) still share during a rolling upgrade.

Writing an entry drops the bucket's entries older than 72 h (OpenAI's retry horizon) and, past
[`ENTRIES_PER_BUCKET`], its oldest. So the storage never holds more than
`1024 × 60 × 16 = 983 040` bytes in 1024 keys, under any load: the manifest asks for 1 MiB
(`resource.permission.storage.size: 1048576`). Capacity: 61 440 deliveries per 72 h spread evenly
(about 850 an hour); past that a bucket forgets its oldest entries first, and a retry of one of them
fires again unless the process's own memory still has it. Keys per delivery would need deletes to
stay bounded (the storage has no expiry and no listing), so the table stays.

# Order, and what "recorded" means

Dispatch asks the process's memory first ([`crate::dedupe::ReplayGuard`]): a duplicate there is
answered at once, a copy in flight in this process gets 409, and only a delivery new to the process
reaches storage, already claimed in the process's memory. Then, under the bucket's own lock (one per
bucket, so this process never overwrites its own entries and unrelated deliveries never wait for
each other):

1. `get` the bucket. The digest is there: [`Shared::Seen`], a duplicate.
2. Else add our entry (dropping expired entries and, past 60, the oldest), and `set` the bucket:
   [`Shared::Recorded`], fire. The answer goes back as soon as the `set` is acknowledged: no read-back
   and no timed wait.

Storage round trips: a duplicate costs one (`get`), a new delivery two (`get`, `set`). A missing
key's `get` fails with the same text as any other load failure (§4.2), so the process keeps, per
bucket, whether it knows the key exists (after any successful `get` or `set` of it; the plugin never
deletes one). A failed `get` of a bucket not known to exist asks `exist` once: false → an empty
bucket, then `set`; true → another process created it meanwhile, `get` it once more. So a third
round trip is paid only by a process's first delivery into a bucket that no process has written yet
(the first deliveries after the plugin is installed: at most 1024 of them, one per bucket), and a
fourth only when another process creates that same bucket between our `get` and our `exist`. A failed
`get` of a bucket known to exist is trouble (below), and the bucket is no longer taken as known, so
one that did disappear is found out by `exist` once the pause is over.

An id is recorded just before dispatch answers 200 and fires, never for a rejected, unsubscribed or
duplicate delivery.

# What it lets through, and why that is harmless

The storage has get/set/exist/del and no compare-and-set, so two processes can both read a bucket
before either writes it. Two interleavings follow; everything else is exact (a copy whose `get`
comes after a `set` of its delivery is a duplicate, on any process, after any restart).

- **The same `webhook-id` at two processes, their `get`→`set` spans overlapping: both fire.** No
  design of one `get` and one `set` can close this: when both reads come before both writes, each
  process has seen exactly what it would have seen alone, where it must fire. (The previous design
  narrowed it with a read-back after a settling sleep of at least 25 ms on every new delivery, and
  still could not close it.) Copies sent at the same instant to two processes do both fire, most of
  the time (`it::shared_dedupe::two_processes_sharing_storage` counts them). OpenAI does not send
  copies that way. It sends a `webhook-id` again only after the previous attempt failed: a non-2xx,
  or no answer "within a few seconds", then retries "with exponential backoff" for up to 72 h (the
  schedule is unpublished; Standard Webhooks' example waits 5 s before the first retry and 5 min
  before the second; openai-webhooks.md §3.1). Our calls for one dispatch end within
  [`STORAGE_BUDGET`] (1 s), and the span that matters, from a `get`'s answer to the `set`'s
  arrival, is one round trip. So a retry meets its own first attempt in the window only if that
  attempt was held up before dispatch (in Dify's API or the daemon) for longer than OpenAI's
  timeout plus its backoff, seconds, was still dispatched after all, and reached our `get` within
  that one round trip of the retry's `get` on another process.
  (Two copies at the same process never both fire: the second meets the first's claim and gets 409.)
  OpenAI's other copies, the "rare" duplicates from its own internal issues, are not timed in its
  docs; two of them would have to overlap in the same way, on two processes.
- **Two different deliveries in one bucket, written by two processes at once: the later `set` drops
  the other's new entry.** That delivery has fired once and its process still remembers it; only its
  storage entry is gone. It matters only if the same delivery comes back (its 200 never reached
  OpenAI) to another process, or after a restart. How rare: the two writes must fall in the same
  bucket (1 in 1024) with overlapping spans, on two processes; at 10 deliveries a second and a 10 ms
  span, at most about one delivery in 10 000 loses its entry, and then exactly that delivery must be
  retried and the retry must miss the process that fired it. Mitigation, at no extra round trip: each
  process keeps its last entry per bucket and, on its next write to that bucket, puts it back if it
  is missing and still live. That covers a retry arriving after that write, which comes sooner the
  busier the table is, and only a busy table drops entries.

# Trouble

Every storage call of one dispatch fits in [`STORAGE_BUDGET`] (1 s). Storage slow, failing,
refused (a package without the permission, an older daemon) or absent (serverless): the delivery
fires on the process's memory alone, OpenAI never sees an error, storage is left alone for
[`PAUSE_AFTER_TROUBLE`], and one warning is logged a minute at most. A garbled bucket is treated as
empty and rewritten.
*/

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dify_plugin::{BackwardsError, Session};
use tokio::sync::Mutex;
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
/// A second: a storage round trip through a daemon serving 64 webhooks at once on 2 vCPUs takes up
/// to ~180 ms (`cargo xtask bench-daemon`), which is load, not trouble; OpenAI waits seconds.
pub const STORAGE_BUDGET: Duration = Duration::from_secs(1);
/// After trouble, storage is not asked for this long.
pub const PAUSE_AFTER_TROUBLE: i64 = 30;
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
    /// Storage could not be used: fire on the process's memory alone.
    Unavailable(Trouble),
}

/// Why storage could not be used for one delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Trouble {
    /// Storage is being left alone after earlier trouble.
    #[error("paused after trouble")]
    Paused,
    /// This process's earlier writer of the bucket held it past the budget.
    #[error("this process's writer of {} was busy past the budget", bucket_key(*bucket))]
    Busy { bucket: usize },
    /// `get` failed for a bucket known to exist, or failed again after `exist` said it does.
    #[error("get {} failed: {error}", bucket_key(*bucket))]
    Get { bucket: usize, error: BackwardsError },
    /// `get` failed, and so did the `exist` that would tell a missing key from a failure.
    #[error("get {} failed ({get}), then exist failed: {exist}", bucket_key(*bucket))]
    Exist { bucket: usize, get: BackwardsError, exist: BackwardsError },
    /// `set` failed (refused, over the quota, or no answer within the budget).
    #[error("set {} failed: {error}", bucket_key(*bucket))]
    Set { bucket: usize, error: BackwardsError },
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

    /// Whether a live entry for `digest` is there at `now`.
    fn holds(&self, digest: &[u8; DIGEST_BYTES], now: i64) -> bool {
        self.entries.iter().any(|e| &e.digest == digest && live(e, now))
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

/// The bucket a delivery's key is kept in.
pub fn bucket_of(key: &Key) -> usize {
    usize::from(u16::from_be_bytes([key[10], key[11]])) % BUCKETS
}

/// The stored part of a delivery's key.
fn stored_digest(key: &Key) -> [u8; DIGEST_BYTES] {
    let mut digest = [0u8; DIGEST_BYTES];
    digest.copy_from_slice(&key[..DIGEST_BYTES]);
    digest
}

/// The digest a delivery of `webhook_id` in subscription scope `scope` is remembered by (the
/// in-process memory's, `crate::dedupe`): an entry stores its first 10 bytes, and [`bucket_of`]
/// picks the bucket from it. Public because the stored table is a format other processes read.
pub fn delivery_digest(scope: &str, webhook_id: &str) -> [u8; 16] {
    crate::dedupe::digest(scope, webhook_id)
}

/// The storage key of bucket `index`: `dedupe/v1/000` … `dedupe/v1/3ff`.
pub fn bucket_key(index: usize) -> String {
    format!("{KEY_PREFIX}{index:03x}")
}

/// What this process knows of one bucket; behind the bucket's lock.
#[derive(Debug, Default)]
struct BucketState {
    /// The key exists in storage: this process saw a successful `get` or `set` of it (the plugin
    /// never deletes one), so a failed `get` is trouble, not a missing key.
    known: bool,
    /// The last entry this process wrote here: put back by its next write if a concurrent writer
    /// of another process dropped it.
    own: Option<Entry>,
}

/// The process's side of the shared memory: its tag, one lock and one state per bucket, its
/// trouble state.
pub struct SharedReplay {
    tag: u16,
    /// One per bucket (64 bytes each, 64 KiB in all): writers of one bucket in this process take
    /// turns, and unrelated deliveries never wait for each other.
    buckets: Box<[Mutex<BucketState>]>,
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
            buckets: (0..BUCKETS).map(|_| Mutex::new(BucketState::default())).collect(),
            paused_until: AtomicI64::new(i64::MIN),
            last_warning: AtomicI64::new(i64::MIN),
            budget,
        }
    }

    /// Whether storage is being left alone after trouble at `now`.
    pub fn is_paused(&self, now: i64) -> bool {
        now < self.paused_until.load(Ordering::Relaxed)
    }

    /// Looks `key` up in storage and, if it is not there, records it: one `get`, then one `set`
    /// for a new delivery (see the module docs). `now` (Unix seconds, the dispatch's) is what
    /// entries are recorded at and expire by; the budget runs on tokio's monotonic clock.
    pub async fn check_and_record(&self, session: &Session, key: &Key, now: i64) -> Shared {
        if self.is_paused(now) {
            return Shared::Unavailable(Trouble::Paused);
        }
        let deadline = Instant::now() + self.budget;
        let index = bucket_of(key);
        let digest = stored_digest(key);
        let Ok(mut state) = tokio::time::timeout_at(deadline, self.buckets[index].lock()).await else {
            return self.trouble(now, Trouble::Busy { bucket: index });
        };
        let mut bucket = match self.read(session, index, &mut state, deadline, now).await {
            Ok(bucket) => bucket,
            Err(trouble) => {
                // Asked again through `exist` after the pause, in case the key did disappear.
                state.known = false;
                return self.trouble(now, trouble);
            }
        };
        if bucket.holds(&digest, now) {
            return Shared::Seen;
        }
        if let Some(own) = state.own.filter(|own| live(own, now) && !bucket.holds(&own.digest, now)) {
            bucket.add(own, now);
        }
        let entry = Entry { digest, recorded_at: u32::try_from(now).unwrap_or(u32::MAX), tag: self.tag };
        bucket.add(entry, now);
        match storage(session, deadline).set(&bucket_key(index), &bucket.encode()).await {
            Ok(()) => {
                state.known = true;
                state.own = Some(entry);
                Shared::Recorded
            }
            Err(error) => self.trouble(now, Trouble::Set { bucket: index, error }),
        }
    }

    /// Bucket `index` as stored: empty when the key does not exist yet or holds garbage.
    async fn read(
        &self,
        session: &Session,
        index: usize,
        state: &mut BucketState,
        deadline: Instant,
        now: i64,
    ) -> Result<Bucket, Trouble> {
        let name = bucket_key(index);
        let bytes = match storage(session, deadline).get(&name).await {
            Ok(bytes) => bytes,
            // A missing key's get is an error answer, with the text of any load failure (§4.2):
            // for a bucket not known to exist, ask which it was.
            Err(get @ BackwardsError::Daemon(_)) if !state.known => {
                match storage(session, deadline).exist(&name).await {
                    Ok(false) => return Ok(Bucket::default()),
                    // Created by another process between our get and exist: read it now.
                    Ok(true) => storage(session, deadline)
                        .get(&name)
                        .await
                        .map_err(|error| Trouble::Get { bucket: index, error })?,
                    Err(exist) => return Err(Trouble::Exist { bucket: index, get, exist }),
                }
            }
            Err(error) => return Err(Trouble::Get { bucket: index, error }),
        };
        state.known = true;
        Ok(Bucket::parse(&bytes).unwrap_or_else(|| {
            self.warn(
                now,
                &format!("storage key {name} held {} bytes that are not a dedupe bucket; rewriting it", bytes.len()),
            );
            Bucket::default()
        }))
    }

    fn trouble(&self, now: i64, trouble: Trouble) -> Shared {
        self.paused_until.store(now.saturating_add(PAUSE_AFTER_TROUBLE), Ordering::Relaxed);
        self.warn(now, &format!(
            "plugin storage unusable for deduplication ({trouble}); using this process's memory alone for {PAUSE_AFTER_TROUBLE} s"
        ));
        Shared::Unavailable(trouble)
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
/// hasher, whose keys come from the OS, so a dump of the table tells the processes' entries apart.
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
        assert!(!bucket.holds(&[0; DIGEST_BYTES], now), "72 h old is expired");
        for n in 1..=(ENTRIES_PER_BUCKET as u8 + 5) {
            bucket.add(entry(n, now as u32 + u32::from(n)), now);
        }
        assert_eq!(bucket.entries.len(), ENTRIES_PER_BUCKET);
        assert!(!bucket.holds(&[1; DIGEST_BYTES], now), "the oldest went first");
        assert!(bucket.holds(&[65; DIGEST_BYTES], now));
        assert!(bucket.encode().len() <= ENTRIES_PER_BUCKET * ENTRY_BYTES);
        // Putting back an entry older than a full bucket's does not keep it: the oldest goes again.
        bucket.add(entry(1, now as u32 + 1), now);
        assert!(!bucket.holds(&[1; DIGEST_BYTES], now));
    }

    #[test]
    fn adding_a_digest_again_replaces_its_entry() {
        let mut bucket = Bucket::default();
        bucket.add(entry(1, 10), 10);
        bucket.add(Entry { tag: 9, ..entry(1, 11) }, 11);
        assert_eq!(bucket.entries, vec![Entry { tag: 9, ..entry(1, 11) }]);
    }

    #[test]
    fn keys_and_sizes() {
        assert_eq!(bucket_key(0), "dedupe/v1/000");
        assert_eq!(bucket_key(BUCKETS - 1), "dedupe/v1/3ff");
        assert_eq!(MAX_STORED_BYTES, 983_040);
        assert!(bucket_of(&[0xab; 16]) < BUCKETS);
        assert_eq!(bucket_of(&[0xff; 16]), BUCKETS - 1);
        assert_eq!(stored_digest(&[0xab; 16]), [0xab; DIGEST_BYTES]);
        // One lock and state per bucket stays small: 64 KiB for the 1024 of them.
        let size = std::mem::size_of::<Mutex<BucketState>>();
        assert!(BUCKETS * size <= 64 * 1024, "{size} bytes a bucket");
    }

    #[test]
    fn trouble_names_the_bucket_and_the_failure() {
        let get = BackwardsError::Daemon("load data failed, please check if the key is correct".into());
        let exist = BackwardsError::Timeout(Duration::from_millis(200));
        let trouble = Trouble::Exist { bucket: 0x2a, get, exist };
        assert_eq!(
            trouble.to_string(),
            "get dedupe/v1/02a failed (the daemon answered with an error: load data failed, please check if \
             the key is correct), then exist failed: no answer from the daemon within 200ms"
        );
    }
}
