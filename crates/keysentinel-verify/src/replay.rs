//! One-time nonces, remembered for a bounded window.
//!
//! Nonces are kept as 128-bit keyed hashes of (access key, nonce) in time buckets; a bucket is
//! dropped once it is older than the window, so memory is bounded by the request rate times the
//! window. Upbit and Coinone nonces carry no time: a replay is caught only within the window,
//! which is why the window is configurable (docs/gateway.md).
//!
//! Remembering must outlive the process, or a restart re-opens every nonce of the window: the
//! cache hands each newly accepted nonce to a [`NonceLog`] before the request is allowed (the
//! server's is an append-only journal in the data directory, reloaded at start), and a nonce the
//! log cannot take is refused. The verifier sees only the [`Nonces`] trait, so a store shared by
//! several nodes can replace the local cache later without touching the verify path.

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

/// Where the verifier asks whether a nonce is fresh: the local [`NonceCache`] (with its log) or,
/// later, a store several nodes share. One call both checks and records, so a shared store can
/// make it atomic across nodes.
pub trait Nonces: Send + Sync {
    /// Records the nonce; `Ok(false)` if it was already seen within the window (a replay).
    /// `Err` when it cannot be recorded durably: the request must then be refused, since the
    /// same nonce would be accepted again after a restart.
    fn check_and_insert(&self, access_key: &str, nonce: &str, now_ms: i64) -> Result<bool, NonceLogError>;
    /// Nonces currently remembered (for metrics).
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A record of accepted nonces that survives the process.
pub trait NonceLog: Send + Sync {
    /// Makes one accepted nonce (its keyed digest, and when it was seen) durable enough that it
    /// is refused after a restart; called before the request is allowed.
    fn append(&self, digest: u128, at_ms: i64) -> Result<(), NonceLogError>;
}

#[derive(Debug, thiserror::Error)]
#[error("cannot record the nonce: {0}")]
pub struct NonceLogError(#[from] pub std::io::Error);

pub struct NonceCache {
    window_ms: i64,
    bucket_ms: i64,
    /// SipHash key, so nonce hashes cannot be steered into collisions: random per process, or
    /// the journal's own, so that digests reloaded at start match the ones computed now.
    key: [u8; 16],
    shards: Vec<Mutex<Shard>>,
    log: Option<Box<dyn NonceLog>>,
}

impl NonceCache {
    /// A cache that forgets at exit (tests, benchmarks, tools).
    pub fn new(window_ms: i64) -> Self {
        Self::with_key(window_ms, rand::random())
    }

    /// A cache whose digests are keyed with `key` (the journal's, to match reloaded digests).
    pub fn with_key(window_ms: i64, key: [u8; 16]) -> Self {
        let window_ms = window_ms.max(1000);
        Self {
            window_ms,
            bucket_ms: (window_ms / 8).max(250),
            key,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { buckets: VecDeque::new() })).collect(),
            log: None,
        }
    }

    /// Every nonce accepted from now on is appended to `log` before it counts as accepted.
    pub fn with_log(mut self, log: Box<dyn NonceLog>) -> Self {
        self.log = Some(log);
        self
    }

    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// The keyed digest a nonce is remembered (and journaled) by.
    pub fn digest(&self, access_key: &str, nonce: &str) -> u128 {
        let mut h = SipHasher13::new_with_key(&self.key);
        h.write(access_key.as_bytes());
        h.write_u8(0xff); // separator: no (key, nonce) pair can be confused with another
        h.write(nonce.as_bytes());
        h.finish128().as_u128()
    }

    /// Remembers a digest reloaded from the journal (seen at `at_ms`); no-op once outside the
    /// window at `now_ms`.
    pub fn restore(&self, digest: u128, at_ms: i64, now_ms: i64) {
        if at_ms <= now_ms - self.window_ms {
            return;
        }
        let mut shard = self.shards[(digest as usize) % SHARDS].lock();
        self.insert(&mut shard, digest, at_ms);
    }

    fn insert(&self, shard: &mut Shard, d: u128, at_ms: i64) {
        let start = at_ms - at_ms.rem_euclid(self.bucket_ms);
        // Buckets stay in time order: a digest restored out of order joins the bucket of its time.
        let at = shard.buckets.iter().rposition(|(s, _)| *s <= start);
        match at.and_then(|i| shard.buckets.get_mut(i)) {
            Some((s, set)) if *s == start => {
                set.insert(d);
            }
            _ => {
                let mut set = Seen::default();
                set.insert(d);
                shard.buckets.insert(at.map_or(0, |i| i + 1), (start, set));
            }
        }
    }

    /// Records the nonce; false if it was already seen within the window (a replay).
    pub fn check_and_insert(&self, access_key: &str, nonce: &str, now_ms: i64) -> Result<bool, NonceLogError> {
        let d = self.digest(access_key, nonce);
        let shard = &self.shards[(d as usize) % SHARDS];
        let mut shard = shard.lock();
        let horizon = now_ms - self.window_ms;
        while shard.buckets.front().is_some_and(|(start, _)| start + self.bucket_ms <= horizon) {
            shard.buckets.pop_front();
        }
        if shard.buckets.iter().any(|(_, set)| set.contains(&d)) {
            return Ok(false);
        }
        // Journaled under the shard's lock, so two requests with one nonce cannot both pass
        // between the check and the record.
        if let Some(log) = &self.log {
            log.append(d, now_ms)?;
        }
        self.insert(&mut shard, d, now_ms);
        Ok(true)
    }
}

impl Nonces for NonceCache {
    fn check_and_insert(&self, access_key: &str, nonce: &str, now_ms: i64) -> Result<bool, NonceLogError> {
        NonceCache::check_and_insert(self, access_key, nonce, now_ms)
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().buckets.iter().map(|(_, b)| b.len()).sum::<usize>()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_per_key_within_the_window() {
        let c = NonceCache::new(10_000);
        let fresh = |k: &str, n: &str, t: i64| c.check_and_insert(k, n, t).unwrap();
        assert!(fresh("k1", "n1", 1_000));
        assert!(!fresh("k1", "n1", 5_000));
        assert!(fresh("k2", "n1", 5_000), "nonces are per key");
        assert!(fresh("k1", "n1", 30_000), "forgotten after the window");
        assert!(!fresh("k1", "n1", 30_001));
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let c = NonceCache::new(1_000);
        for i in 0..10_000i64 {
            assert!(c.check_and_insert("k", &i.to_string(), i).unwrap());
        }
        assert!(Nonces::len(&c) < 2_000, "{}", Nonces::len(&c));
    }

    /// A log that remembers what it was given, or refuses everything.
    struct Recorded(Mutex<Vec<(u128, i64)>>, bool);
    impl NonceLog for std::sync::Arc<Recorded> {
        fn append(&self, digest: u128, at_ms: i64) -> Result<(), NonceLogError> {
            if self.1 {
                return Err(NonceLogError(std::io::Error::other("disk full")));
            }
            self.0.lock().push((digest, at_ms));
            Ok(())
        }
    }

    #[test]
    fn restored_digests_are_replays_and_a_nonce_the_log_refuses_is_not_accepted() {
        let key = [7u8; 16];
        let log = std::sync::Arc::new(Recorded(Mutex::new(Vec::new()), false));
        let before = NonceCache::with_key(60_000, key).with_log(Box::new(log.clone()));
        assert!(before.check_and_insert("k", "n1", 10_000).unwrap());
        assert!(before.check_and_insert("k", "n2", 20_000).unwrap());
        assert!(!before.check_and_insert("k", "n2", 20_001).unwrap(), "a replay is not journaled again");
        assert_eq!(log.0.lock().len(), 2);
        // A new process with the journal's key: what it reloads is refused as a replay.
        let after = NonceCache::with_key(60_000, key);
        for (d, at) in log.0.lock().iter().rev() {
            after.restore(*d, *at, 75_000);
        }
        assert!(!after.check_and_insert("k", "n2", 76_000).unwrap(), "restored");
        assert!(after.check_and_insert("k", "n1", 76_000).unwrap(), "n1 left the window before the restore");
        // A log that cannot take the nonce: refused, and not remembered either.
        let broken =
            NonceCache::new(60_000).with_log(Box::new(std::sync::Arc::new(Recorded(Mutex::new(Vec::new()), true))));
        assert!(broken.check_and_insert("k", "n3", 1_000).is_err());
        assert_eq!(Nonces::len(&broken), 0);
    }
}
