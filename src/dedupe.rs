/*!
Duplicate-delivery detection by `webhook-id` (openai-webhooks.md §3.1): OpenAI retries for up to
72 h with the same id, and may send rare duplicates. The memory is a fixed table of `capacity`
slots of 12 bytes (8 bytes of the delivery's digest, its expiry in Unix seconds), in buckets of
16: a new entry takes an empty or expired slot of its bucket, else the one that expires first. So
memory is bounded by `capacity` (768 KiB at the default 65 536) whatever the ids look like, and it
is only touched as it fills.

A delivery is remembered only once it fired and was answered 200: [`ReplayGuard::claim`] reserves
its id while dispatch works on it, and only [`Claim::confirm`] makes the reservation permanent; a
claim dropped unconfirmed (an error, a rejection, a crash) forgets the id, so OpenAI's retry is
processed. While a claim is pending, the same id again is [`Sighting::InProgress`]: answered with a
retryable status, never as a duplicate, so a delivery whose first attempt then fails is not lost.
*/

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// OpenAI's retry horizon.
pub(crate) const RETENTION_SECONDS: i64 = 72 * 3600;
/// 768 KiB at most; far above the deliveries one Dify subscription sees in 72 h.
pub(crate) const DEFAULT_CAPACITY: usize = 65_536;
/// Slots per bucket.
const WAYS: usize = 16;

/// A `(scope, webhook-id)` digest.
pub(crate) type Key = [u8; 16];

/// What a delivery's id is to the guard.
#[derive(Debug)]
pub(crate) enum Sighting<'a> {
    /// Not seen: process it, then [`Claim::confirm`] once it fired and was answered 200.
    New(Claim<'a>),
    /// Already accepted within the retention: acknowledge, fire nothing.
    Duplicate,
    /// Being processed right now by another session: ask the sender to retry.
    InProgress,
}

pub(crate) struct ReplayGuard {
    retention: i64,
    state: Mutex<State>,
}

/// The digests are uniformly random: their first eight bytes are already a good hash.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

struct State {
    /// `buckets × ways` slots: the first eight bytes of a digest, 0 when empty.
    keys: Vec<u64>,
    /// When each slot's entry expires (Unix seconds; 0 = empty).
    expiries: Vec<u32>,
    buckets: usize,
    ways: usize,
    /// Claims in flight.
    pending: HashSet<u64, BuildHasherDefault<Identity>>,
}

/// A reservation of one delivery's id; forgotten when dropped unconfirmed.
#[must_use = "an unconfirmed claim is forgotten when dropped"]
pub(crate) struct Claim<'a> {
    guard: &'a ReplayGuard,
    key: Key,
    now: i64,
    confirmed: bool,
}

impl std::fmt::Debug for Claim<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim").field("confirmed", &self.confirmed).finish_non_exhaustive()
    }
}

impl Claim<'_> {
    /// The delivery fired and was answered 200: remember its id for the retention.
    pub(crate) fn confirm(mut self) {
        self.confirmed = true;
        let mut state = self.guard.lock();
        let (short, _) = split(&self.key);
        state.pending.remove(&short);
        self.guard.insert(&mut state, &self.key, self.now);
    }

    /// The digest this claim reserves.
    pub(crate) fn key(&self) -> Key {
        self.key
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.confirmed {
            let (short, _) = split(&self.key);
            self.guard.lock().pending.remove(&short);
        }
    }
}

/// The stored part of a digest (never 0: 0 marks an empty slot) and its bucket selector.
fn split(key: &Key) -> (u64, u64) {
    let short = u64::from_be_bytes([key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7]]).max(1);
    let selector = u64::from_be_bytes([key[8], key[9], key[10], key[11], key[12], key[13], key[14], key[15]]);
    (short, selector)
}

impl ReplayGuard {
    /// A guard remembering up to `capacity` ids (rounded up to whole buckets) for `retention` seconds.
    pub(crate) fn new(capacity: usize, retention: i64) -> Self {
        let ways = capacity.clamp(1, WAYS);
        let buckets = capacity.max(1).div_ceil(ways);
        // Zeroed memory: the pages are only touched as the table fills.
        let state = State {
            keys: vec![0; buckets * ways],
            expiries: vec![0; buckets * ways],
            buckets,
            ways,
            pending: HashSet::default(),
        };
        ReplayGuard { retention, state: Mutex::new(state) }
    }

    /// What `(scope, webhook_id)` is at `now`. `scope` keeps subscriptions apart (one plugin
    /// process serves every tenant, daemon-protocol.md §1.1); it must identify the subscription.
    pub(crate) fn claim(&self, scope: &str, webhook_id: &str, now: i64) -> Sighting<'_> {
        let key = digest(scope, webhook_id);
        let (short, _) = split(&key);
        let mut state = self.lock();
        if Self::find(&state, &key, now).is_some() {
            return Sighting::Duplicate;
        }
        if !state.pending.insert(short) {
            return Sighting::InProgress;
        }
        Sighting::New(Claim { guard: self, key, now, confirmed: false })
    }

    /// Ids remembered and not yet expired at `now` (a scan of the table, for the tests).
    #[cfg(test)]
    fn len_at(&self, now: i64) -> usize {
        let state = self.lock();
        state.expiries.iter().filter(|&&expiry| expiry != 0 && i64::from(expiry) > now).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another session panicked mid-update; the table is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bucket(state: &State, selector: u64) -> std::ops::Range<usize> {
        let start = (selector % state.buckets as u64) as usize * state.ways;
        start..start + state.ways
    }

    /// The slot holding `key`, live at `now`.
    fn find(state: &State, key: &Key, now: i64) -> Option<usize> {
        let (short, selector) = split(key);
        Self::bucket(state, selector).find(|&slot| state.keys[slot] == short && i64::from(state.expiries[slot]) > now)
    }

    fn insert(&self, state: &mut State, key: &Key, now: i64) {
        let (short, selector) = split(key);
        let expiry = u32::try_from(now.saturating_add(self.retention)).unwrap_or(u32::MAX).max(1);
        let range = Self::bucket(state, selector);
        // The same key, else an empty or expired slot, else the one that expires first.
        let slot = range
            .clone()
            .find(|&slot| state.keys[slot] == short)
            .or_else(|| range.clone().find(|&slot| i64::from(state.expiries[slot]) <= now))
            .unwrap_or_else(|| range.clone().min_by_key(|&slot| state.expiries[slot]).unwrap_or(range.start));
        state.keys[slot] = short;
        state.expiries[slot] = expiry;
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_CAPACITY, RETENTION_SECONDS)
    }
}

/// The digest of one delivery in one scope.
pub(crate) fn digest(scope: &str, webhook_id: &str) -> Key {
    let mut hasher = Sha256::new();
    hasher.update(scope.as_bytes());
    hasher.update([0]);
    hasher.update(webhook_id.as_bytes());
    let full = hasher.finalize();
    let mut key = [0u8; 16];
    key.copy_from_slice(&full[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(guard: &ReplayGuard, scope: &str, id: &str, now: i64) -> bool {
        match guard.claim(scope, id, now) {
            Sighting::New(claim) => {
                claim.confirm();
                true
            }
            _ => false,
        }
    }

    #[test]
    fn second_sighting_within_retention_is_a_duplicate() {
        let guard = ReplayGuard::new(10, 100);
        assert!(accept(&guard, "sub-a", "wh_1", 1000));
        assert!(matches!(guard.claim("sub-a", "wh_1", 1099), Sighting::Duplicate));
        assert!(accept(&guard, "sub-b", "wh_1", 1099), "scopes are independent");
        assert!(accept(&guard, "sub-a", "wh_1", 1100), "forgotten after the retention");
    }

    #[test]
    fn an_unconfirmed_claim_is_forgotten_and_blocks_only_while_pending() {
        let guard = ReplayGuard::new(10, 100);
        let Sighting::New(claim) = guard.claim("s", "wh_1", 0) else { panic!("new") };
        assert!(matches!(guard.claim("s", "wh_1", 0), Sighting::InProgress), "a concurrent duplicate is told to retry");
        drop(claim);
        assert_eq!(guard.len_at(0), 0, "nothing was remembered");
        assert!(accept(&guard, "s", "wh_1", 1), "the retry after a failed attempt is processed");
        assert!(matches!(guard.claim("s", "wh_1", 2), Sighting::Duplicate));
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let guard = ReplayGuard::new(128, RETENTION_SECONDS);
        for i in 0..10_000 {
            assert!(accept(&guard, "s", &format!("wh_{i}"), i));
        }
        assert_eq!(guard.len_at(10_000), 128, "every slot holds one of the ids");
        let kept = (9_900..10_000)
            .filter(|i| matches!(guard.claim("s", &format!("wh_{i}"), 10_000), Sighting::Duplicate))
            .count();
        assert!(kept >= 64, "mostly the newest ids are kept: {kept} of the last 100");
        assert!(accept(&guard, "s", "wh_0", 10_001), "the oldest were evicted");
        assert_eq!(guard.state.lock().unwrap().keys.len(), 128, "the table never grows");
    }

    #[test]
    fn expired_slots_are_reused_before_live_ones() {
        let guard = ReplayGuard::new(16, 100);
        for i in 0..16 {
            assert!(accept(&guard, "s", &format!("old_{i}"), 0));
        }
        assert!(accept(&guard, "s", "fresh", 100), "all expired at 100");
        assert!(matches!(guard.claim("s", "fresh", 101), Sighting::Duplicate));
        assert_eq!(guard.len_at(101), 1);
    }
}
