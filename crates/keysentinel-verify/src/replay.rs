//! One-time nonces, remembered for a bounded window.
//!
//! Nonces are kept as 128-bit keyed hashes of (access key, nonce) in time buckets; a bucket is
//! dropped once it is older than the window, so memory is bounded by the request rate times the
//! window. Upbit and Coinone nonces carry no time: a replay is caught only within the window,
//! which is why the window is configurable (docs/signing.md).

use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};

const SHARDS: usize = 16;

struct Shard {
    /// (bucket start ms, hashes seen in it), oldest first.
    buckets: VecDeque<(i64, HashSet<u128>)>,
}

pub struct NonceCache {
    window_ms: i64,
    bucket_ms: i64,
    keys: (std::collections::hash_map::RandomState, std::collections::hash_map::RandomState),
    shards: Vec<Mutex<Shard>>,
}

impl NonceCache {
    pub fn new(window_ms: i64) -> Self {
        let window_ms = window_ms.max(1000);
        Self {
            window_ms,
            bucket_ms: (window_ms / 8).max(250),
            keys: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { buckets: VecDeque::new() })).collect(),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    fn digest(&self, access_key: &str, nonce: &str) -> u128 {
        let h = |state: &std::collections::hash_map::RandomState| {
            let mut hasher = state.build_hasher();
            access_key.hash(&mut hasher);
            nonce.hash(&mut hasher);
            hasher.finish()
        };
        (u128::from(h(&self.keys.0)) << 64) | u128::from(h(&self.keys.1))
    }

    /// Records the nonce; false if it was already seen within the window (a replay).
    pub fn check_and_insert(&self, access_key: &str, nonce: &str, now_ms: i64) -> bool {
        let d = self.digest(access_key, nonce);
        let shard = &self.shards[(d as usize) % SHARDS];
        let mut shard = shard.lock();
        let horizon = now_ms - self.window_ms;
        while shard.buckets.front().is_some_and(|(start, _)| start + self.bucket_ms <= horizon) {
            shard.buckets.pop_front();
        }
        if shard.buckets.iter().any(|(_, set)| set.contains(&d)) {
            return false;
        }
        let start = now_ms - now_ms.rem_euclid(self.bucket_ms);
        match shard.buckets.back_mut() {
            Some((s, set)) if *s == start => {
                set.insert(d);
            }
            _ => shard.buckets.push_back((start, HashSet::from([d]))),
        }
        true
    }

    /// Nonces currently remembered (for metrics).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().buckets.iter().map(|(_, b)| b.len()).sum::<usize>()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_per_key_within_the_window() {
        let c = NonceCache::new(10_000);
        assert!(c.check_and_insert("k1", "n1", 1_000));
        assert!(!c.check_and_insert("k1", "n1", 5_000));
        assert!(c.check_and_insert("k2", "n1", 5_000), "nonces are per key");
        assert!(c.check_and_insert("k1", "n1", 30_000), "forgotten after the window");
        assert!(!c.check_and_insert("k1", "n1", 30_001));
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let c = NonceCache::new(1_000);
        for i in 0..10_000i64 {
            assert!(c.check_and_insert("k", &i.to_string(), i));
        }
        assert!(c.len() < 2_000, "{}", c.len());
    }
}
