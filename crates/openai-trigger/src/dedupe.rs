/*!
Duplicate-delivery detection by `webhook-id` (openai-webhooks.md §3.1): OpenAI retries for up to
72 h with the same id, and may send rare duplicates. Entries are fixed-size digests kept in
insertion order, so memory is bounded by `capacity` whatever the ids look like.

A delivery is remembered only once it fired and was answered 200: [`ReplayGuard::claim`] reserves
its id while dispatch works on it, and only [`Claim::confirm`] makes the reservation permanent; a
claim dropped unconfirmed (an error, a rejection, a crash) forgets the id, so OpenAI's retry is
processed. While a claim is pending, the same id again is [`Sighting::InProgress`]: answered with a
retryable status, never as a duplicate, so a delivery whose first attempt then fails is not lost.
*/

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// OpenAI's retry horizon.
pub const RETENTION_SECONDS: i64 = 72 * 3600;
/// About 3 MiB at most; far above the deliveries one Dify subscription sees in 72 h.
pub const DEFAULT_CAPACITY: usize = 65_536;

/// A `(scope, webhook-id)` digest.
pub type Key = [u8; 16];

/// What a delivery's id is to the guard.
#[derive(Debug)]
pub enum Sighting<'a> {
    /// Not seen: process it, then [`Claim::confirm`] once it fired and was answered 200.
    New(Claim<'a>),
    /// Already accepted within the retention: acknowledge, fire nothing.
    Duplicate,
    /// Being processed right now by another session: ask the sender to retry.
    InProgress,
}

pub struct ReplayGuard {
    capacity: usize,
    retention: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    expiry_by_key: HashMap<Key, i64>,
    order: VecDeque<(Key, i64)>,
    pending: std::collections::HashSet<Key>,
}

/// A reservation of one delivery's id; forgotten when dropped unconfirmed.
#[must_use = "an unconfirmed claim is forgotten when dropped"]
pub struct Claim<'a> {
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
    pub fn confirm(mut self) {
        self.confirmed = true;
        let mut state = self.guard.lock();
        state.pending.remove(&self.key);
        self.guard.insert(&mut state, self.key, self.now);
    }

    /// The digest this claim reserves.
    pub fn key(&self) -> Key {
        self.key
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if !self.confirmed {
            self.guard.lock().pending.remove(&self.key);
        }
    }
}

impl ReplayGuard {
    pub fn new(capacity: usize, retention: i64) -> Self {
        ReplayGuard { capacity: capacity.max(1), retention, state: Mutex::new(State::default()) }
    }

    /// What `(scope, webhook_id)` is at `now`. `scope` keeps subscriptions apart (one plugin
    /// process serves every tenant, daemon-protocol.md §1.1); it must identify the subscription.
    pub fn claim(&self, scope: &str, webhook_id: &str, now: i64) -> Sighting<'_> {
        let key = digest(scope, webhook_id);
        let mut state = self.lock();
        self.expire(&mut state, now);
        if state.expiry_by_key.get(&key).is_some_and(|&expiry| expiry > now) {
            return Sighting::Duplicate;
        }
        if !state.pending.insert(key) {
            return Sighting::InProgress;
        }
        Sighting::New(Claim { guard: self, key, now, confirmed: false })
    }

    /// Remembers `key` as accepted at `now` (a sighting learnt elsewhere, e.g. from storage).
    pub fn remember(&self, key: Key, now: i64) {
        let mut state = self.lock();
        self.insert(&mut state, key, now);
    }

    /// Accepted ids remembered now.
    pub fn len(&self) -> usize {
        self.lock().expiry_by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means another session panicked mid-update; the map is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn expire(&self, state: &mut State, now: i64) {
        while let Some(&(old, expiry)) = state.order.front() {
            if expiry > now && state.order.len() < self.capacity {
                break;
            }
            state.order.pop_front();
            if state.expiry_by_key.get(&old) == Some(&expiry) {
                state.expiry_by_key.remove(&old);
            }
        }
    }

    fn insert(&self, state: &mut State, key: Key, now: i64) {
        self.expire(state, now);
        let expiry = now.saturating_add(self.retention);
        state.expiry_by_key.insert(key, expiry);
        state.order.push_back((key, expiry));
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_CAPACITY, RETENTION_SECONDS)
    }
}

/// The digest of one delivery in one scope.
pub fn digest(scope: &str, webhook_id: &str) -> Key {
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
        assert!(guard.is_empty());
        assert!(accept(&guard, "s", "wh_1", 1), "the retry after a failed attempt is processed");
        assert!(matches!(guard.claim("s", "wh_1", 2), Sighting::Duplicate));
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let guard = ReplayGuard::new(100, RETENTION_SECONDS);
        for i in 0..10_000 {
            assert!(accept(&guard, "s", &format!("wh_{i}"), 0));
        }
        assert_eq!(guard.len(), 100);
        assert!(matches!(guard.claim("s", "wh_9999", 1), Sighting::Duplicate), "the newest ids are kept");
        assert!(accept(&guard, "s", "wh_0", 1), "the oldest were evicted");
    }
}
