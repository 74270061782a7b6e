//! Duplicate-delivery detection by `webhook-id` (openai-webhooks.md §3.1): OpenAI retries for up
//! to 72 h with the same id, and may send rare duplicates. Entries are fixed-size digests kept in
//! insertion order, so memory is bounded by `capacity` whatever the ids look like.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// OpenAI's retry horizon.
pub const RETENTION_SECONDS: i64 = 72 * 3600;
/// About 3 MiB at most; far above the deliveries one Dify subscription sees in 72 h.
pub const DEFAULT_CAPACITY: usize = 65_536;

type Key = [u8; 16];

pub struct ReplayGuard {
    capacity: usize,
    retention: i64,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    expiry_by_key: HashMap<Key, i64>,
    order: VecDeque<(Key, i64)>,
}

impl ReplayGuard {
    pub fn new(capacity: usize, retention: i64) -> Self {
        ReplayGuard { capacity: capacity.max(1), retention, state: Mutex::new(State::default()) }
    }

    /// Records a delivery; true the first time `(scope, webhook_id)` is seen within the retention.
    /// `scope` keeps subscriptions apart (one plugin process serves every tenant, §1.1).
    pub fn first_sighting(&self, scope: &str, webhook_id: &str, now: i64) -> bool {
        let key = digest(scope, webhook_id);
        // A poisoned lock only means another session panicked mid-update; the map is still usable.
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        while let Some(&(old, expiry)) = state.order.front() {
            if expiry > now && state.order.len() < self.capacity {
                break;
            }
            state.order.pop_front();
            if state.expiry_by_key.get(&old) == Some(&expiry) {
                state.expiry_by_key.remove(&old);
            }
        }
        if state.expiry_by_key.get(&key).is_some_and(|&expiry| expiry > now) {
            return false;
        }
        let expiry = now.saturating_add(self.retention);
        state.expiry_by_key.insert(key, expiry);
        state.order.push_back((key, expiry));
        true
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).expiry_by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_CAPACITY, RETENTION_SECONDS)
    }
}

fn digest(scope: &str, webhook_id: &str) -> Key {
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

    #[test]
    fn second_sighting_within_retention_is_a_duplicate() {
        let guard = ReplayGuard::new(10, 100);
        assert!(guard.first_sighting("sub-a", "wh_1", 1000));
        assert!(!guard.first_sighting("sub-a", "wh_1", 1099));
        assert!(guard.first_sighting("sub-b", "wh_1", 1099), "scopes are independent");
        assert!(guard.first_sighting("sub-a", "wh_1", 1100), "forgotten after the retention");
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let guard = ReplayGuard::new(100, RETENTION_SECONDS);
        for i in 0..10_000 {
            assert!(guard.first_sighting("s", &format!("wh_{i}"), 0));
        }
        assert_eq!(guard.len(), 100);
        assert!(!guard.first_sighting("s", "wh_9999", 1), "the newest ids are kept");
        assert!(guard.first_sighting("s", "wh_0", 1), "the oldest were evicted");
    }
}
