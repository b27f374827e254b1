//! In-process detection: the engine of `keysentinel-detect` on its own thread, fed by the
//! gateway's verify events, by the registry's keys and accounts, and by `POST /v1/events`. Its
//! decisions are kept for the API, counted in the metrics, and handed to whoever responds to
//! them.
//!
//! The engine is single-threaded by design (its state is per key, in event order), so it runs on
//! one dedicated thread behind a queue. The queue is bounded by a count of records in flight:
//! verify events are shed (and counted) when it is full, batches from producers are refused as a
//! whole with 429 so the producer retries them, and registry records always go in.

use keysentinel_detect::event::{Outcome, Record, Segment};
use keysentinel_detect::geo::Locate;
use keysentinel_detect::{Config, Decision, Engine, Level};
use keysentinel_domain::{Account, ApiKey};
use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

/// Decisions kept for `GET /v1/decisions`, newest last.
const KEPT_DECISIONS: usize = 10_000;
/// Event ids remembered for idempotency: a retry within the last million events is recognised.
/// Kept as keyed 64-bit hashes (about 32 MiB at most): a false duplicate needs a collision among
/// a million random-keyed hashes, about one chance in 2^24.
const REMEMBERED_IDS: usize = 1_000_000;

/// Receives every decision, on the engine's thread, in order. It must not block for long.
pub type DecisionSink = Box<dyn FnMut(&Decision) + Send>;

pub struct Detection {
    tx: mpsc::Sender<Record<'static>>,
    pending: Arc<AtomicUsize>,
    capacity: usize,
    shed: AtomicU64,
    ids: Mutex<RecentIds>,
    decisions: Arc<Mutex<VecDeque<Decision>>>,
    by_level: Arc<[AtomicU64; 4]>,
}

/// Why a batch was not taken.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull {
    pub pending: usize,
    pub capacity: usize,
}

/// What became of a batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub accepted: usize,
    pub duplicates: usize,
}

impl Detection {
    /// Starts the engine's thread. `sink` (if any) sees every decision after it is kept.
    pub fn start(
        config: Config,
        geo: Box<dyn Locate>,
        capacity: usize,
        mut sink: Option<DecisionSink>,
    ) -> std::io::Result<Arc<Self>> {
        let (this, rx) = Self::new(capacity);
        let (p, d, l) = (this.pending.clone(), this.decisions.clone(), this.by_level.clone());
        std::thread::Builder::new().name("detection".into()).spawn(move || {
            let mut engine = Engine::new(config, geo.as_ref());
            for record in rx {
                engine.ingest(&record);
                p.fetch_sub(1, Ordering::Relaxed);
                for decision in engine.take_decisions() {
                    tracing::info!(
                        key_id = %decision.key_id,
                        account_id = %decision.account_id,
                        level = decision.level.as_str(),
                        risk = decision.risk,
                        reason = decision.reasons.first().map_or("", |r| r.indicator.as_str()),
                        "suspected key sharing"
                    );
                    l[decision.level as usize].fetch_add(1, Ordering::Relaxed);
                    {
                        let mut kept = d.lock().unwrap_or_else(PoisonError::into_inner);
                        if kept.len() == KEPT_DECISIONS {
                            kept.pop_front();
                        }
                        kept.push_back(decision.clone());
                    }
                    if let Some(sink) = sink.as_mut() {
                        sink(&decision);
                    }
                }
            }
        })?;
        Ok(Arc::new(this))
    }

    /// The queue's front end and the receiver the engine's thread reads.
    fn new(capacity: usize) -> (Self, mpsc::Receiver<Record<'static>>) {
        let (tx, rx) = mpsc::channel();
        let this = Self {
            tx,
            pending: Arc::new(AtomicUsize::new(0)),
            capacity: capacity.max(1),
            shed: AtomicU64::new(0),
            ids: Mutex::new(RecentIds::default()),
            decisions: Arc::default(),
            by_level: Arc::default(),
        };
        (this, rx)
    }

    fn send(&self, record: Record<'static>) {
        // The engine thread outlives every sender; a send can fail only while shutting down.
        let _ = self.tx.send(record);
    }

    /// A registry record (key, account): always taken, whatever the queue holds, because the
    /// engine must know every key's owner and allowlist.
    pub fn registry(&self, record: Record<'static>) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.send(record);
    }

    /// A verify event: taken if there is room, else shed and counted. Never waits.
    pub fn offer(&self, record: Record<'static>) -> bool {
        if self.reserve(1).is_err() {
            let n = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(shed_total = n, "detection queue full: shedding verify events");
            }
            return false;
        }
        self.send(record);
        true
    }

    fn reserve(&self, n: usize) -> Result<(), QueueFull> {
        self.pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| (p + n <= self.capacity).then_some(p + n))
            .map(|_| ())
            .map_err(|pending| QueueFull { pending, capacity: self.capacity })
    }

    /// A producer's batch, all or nothing: records whose `event_id` was seen before are
    /// counted as duplicates and not ingested again; the rest go in together, or — when the
    /// queue has no room for all of them — none do, and nothing is remembered.
    pub fn batch(&self, events: Vec<(Option<String>, Record<'static>)>) -> Result<Taken, QueueFull> {
        // Held across the check, the reservation and the sends, so that two concurrent copies
        // of one batch cannot both be taken.
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        let mut in_batch = HashSet::new();
        let mut fresh = Vec::with_capacity(events.len());
        let mut duplicates = 0;
        for (id, record) in events {
            match id {
                Some(id) if ids.contains(&id) || !in_batch.insert(id.clone()) => duplicates += 1,
                id => fresh.push((id, record)),
            }
        }
        self.reserve(fresh.len())?;
        let accepted = fresh.len();
        for (id, record) in fresh {
            if let Some(id) = id {
                ids.insert(&id);
            }
            self.send(record);
        }
        Ok(Taken { accepted, duplicates })
    }

    /// The most recent decisions, newest first, optionally for one key and from a level up.
    pub fn recent(&self, key_id: Option<&str>, at_least: Option<Level>, limit: usize) -> Vec<Decision> {
        let kept = self.decisions.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter()
            .rev()
            .filter(|d| key_id.is_none_or(|k| d.key_id == k) && at_least.is_none_or(|l| d.level >= l))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Records waiting for the engine.
    pub fn depth(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// Verify events shed because the queue was full.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// Decisions made so far, by level (monitor, warn, reverify, invalidate).
    pub fn decisions_by_level(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.by_level[i].load(Ordering::Relaxed))
    }
}

/// Event ids seen lately (as keyed hashes), forgotten oldest first.
#[derive(Default)]
struct RecentIds {
    keys: std::hash::RandomState,
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentIds {
    fn hash(&self, id: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.keys, id)
    }

    fn contains(&self, id: &str) -> bool {
        self.set.contains(&self.hash(id))
    }

    fn insert(&mut self, id: &str) {
        let h = self.hash(id);
        if self.order.len() == REMEMBERED_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        if self.set.insert(h) {
            self.order.push_back(h);
        }
    }
}

/// A key as the engine needs it: owner, allowlist, vendor.
pub fn key_record(key: &ApiKey) -> Record<'static> {
    Record::Key {
        key_id: Cow::Owned(key.access_key.as_str().to_owned()),
        account_id: Cow::Owned(key.account_id.as_str().to_owned()),
        scopes: key.scopes.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
        ip_allowlist: key.ip_allowlist.networks().to_vec(),
        vendor_id: key.vendor_id.as_ref().map(|v| Cow::Owned(v.as_str().to_owned())),
        ts: None,
    }
}

/// An account as the engine needs it: segment and declared jurisdictions.
pub fn account_record(account: &Account) -> Record<'static> {
    Record::Account {
        account_id: Cow::Owned(account.account_id.as_str().to_owned()),
        segment: Segment::parse(account.segment.as_str()).unwrap_or_default(),
        declared_countries: account
            .declared_countries
            .iter()
            .filter_map(|c| match c.as_str().as_bytes() {
                [a, b] => Some([*a, *b]),
                _ => None,
            })
            .collect(),
        declared_purpose: Some(Cow::Owned(account.declared_purpose.clone())),
    }
}

/// A verify, as the engine reads it; None for requests that named no known key.
pub fn request_record(event: &crate::telemetry::RequestEvent) -> Option<Record<'static>> {
    let key = event.key.as_ref()?;
    Some(Record::Request {
        ts: event.ts_ms,
        key_id: Cow::Owned(key.access_key.to_string()),
        ip: event.ip,
        user_agent: event.user_agent.as_deref().map(|u| Cow::Owned(u.to_owned())),
        device_id: event.device_id.as_deref().map(|d| Cow::Owned(d.to_owned())),
        method: Some(Cow::Owned(event.method.to_string())),
        path: Some(Cow::Owned(event.path.to_string())),
        // Every verify code has its outcome (a test checks each).
        outcome: Outcome::parse(event.outcome)?,
    })
}

/// Keeps the engine's view of keys current: every committed key change is a `key` record.
pub struct DetectionObserver(pub Arc<Detection>);

impl keysentinel_registry::KeyObserver for DetectionObserver {
    fn key_changed(&self, key: &ApiKey, _secret: Option<&[u8]>) {
        self.0.registry(key_record(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysentinel_detect::geo::NoGeo;

    fn request(i: usize) -> Record<'static> {
        Record::Request {
            ts: 1_764_300_000_000 + i as i64,
            key_id: "k1".into(),
            ip: [203, 0, 113, 7].into(),
            user_agent: None,
            device_id: None,
            method: None,
            path: None,
            outcome: Outcome::BadSignature,
        }
    }

    fn wait_for(d: &Detection, n: usize) -> Vec<Decision> {
        for _ in 0..500 {
            let got = d.recent(None, None, 100);
            if got.len() >= n && d.depth() == 0 {
                return got;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        d.recent(None, None, 100)
    }

    #[test]
    fn every_verify_code_and_segment_reaches_the_engine() {
        for code in keysentinel_verify::Code::ALL {
            assert!(Outcome::parse(code.as_str()).is_some(), "{}", code.as_str());
        }
        for segment in keysentinel_domain::Segment::ALL {
            assert!(Segment::parse(segment.as_str()).is_some(), "{segment}");
        }
    }

    #[test]
    fn batches_are_idempotent_by_event_id_and_all_or_nothing() {
        let d = Detection::start(Config::default(), Box::new(NoGeo), 30, None).unwrap();
        let batch =
            |from: usize, n: usize| (from..from + n).map(|i| (Some(format!("e{i}")), request(i))).collect::<Vec<_>>();
        assert_eq!(d.batch(batch(0, 12)).unwrap(), Taken { accepted: 12, duplicates: 0 });
        // A retry of the same batch plus two new events: only the new ones go in.
        assert_eq!(d.batch(batch(0, 14)).unwrap(), Taken { accepted: 2, duplicates: 12 });
        // Within one batch, the second copy of an id is a duplicate too.
        let twice = vec![(Some("x".to_owned()), request(0)), (Some("x".to_owned()), request(1))];
        assert_eq!(d.batch(twice).unwrap(), Taken { accepted: 1, duplicates: 1 });
        // Ten bad signatures within five minutes make a decision.
        let decisions = wait_for(&d, 1);
        assert!(decisions.iter().any(|x| x.key_id == "k1"), "{decisions:?}");
    }

    #[test]
    fn a_full_queue_refuses_batches_whole_and_sheds_verify_events() {
        // No engine thread: what goes in stays queued.
        let (d, rx) = Detection::new(5);
        for i in 0..4 {
            assert!(d.offer(request(i)));
        }
        let batch = (0..2).map(|i| (Some(format!("e{i}")), request(i))).collect::<Vec<_>>();
        assert_eq!(d.batch(batch.clone()), Err(QueueFull { pending: 4, capacity: 5 }));
        assert!(d.offer(request(4)));
        assert!(!d.offer(request(5)));
        assert_eq!((d.depth(), d.shed()), (5, 1));
        // Registry records always go in.
        d.registry(request(6));
        assert_eq!(rx.try_iter().count(), 6);
        // Nothing of the refused batch was remembered: the retry, once there is room, is new.
        d.pending.store(0, Ordering::Relaxed);
        assert_eq!(d.batch(batch).unwrap(), Taken { accepted: 2, duplicates: 0 });
    }
}
