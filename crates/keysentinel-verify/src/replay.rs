//! One-time nonces, remembered for a bounded window.
//!
//! Nonces are kept as 128-bit keyed hashes of (access key, nonce) in time buckets; a bucket is
//! dropped once it is older than the window, so memory is bounded by the request rate times the
//! window. Upbit and Coinone nonces carry no time: a replay is caught only within the window,
//! which is why the window is configurable (docs/signing.md).

use parking_lot::Mutex;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

/// The set's keys are already keyed 128-bit hashes: hashing them again would only cost time.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

type Seen = HashSet<u128, BuildHasherDefault<PreHashed>>;

const SHARDS: usize = 16;

struct Shard {
    /// (bucket start ms, hashes seen in it), oldest first.
    buckets: VecDeque<(i64, Seen)>,
}

pub struct NonceCache {
    window_ms: i64,
    bucket_ms: i64,
    /// SipHash key, random per process, so nonce hashes cannot be steered into collisions.
    key: [u8; 16],
    shards: Vec<Mutex<Shard>>,
}

impl NonceCache {
    pub fn new(window_ms: i64) -> Self {
        let window_ms = window_ms.max(1000);
        Self {
            window_ms,
            bucket_ms: (window_ms / 8).max(250),
            key: rand::random(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { buckets: VecDeque::new() })).collect(),
        }
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    fn digest(&self, access_key: &str, nonce: &str) -> u128 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write(access_key.as_bytes());
        h.write_u8(0xff); // separator: no (key, nonce) pair can be confused with another
        h.write(nonce.as_bytes());
        h.finish128().as_u128()
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
            _ => {
                let mut set = Seen::default();
                set.insert(d);
                shard.buckets.push_back((start, set));
            }
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
