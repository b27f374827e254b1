//! In-process detection: the engine of `keysentinel-detect` on its own thread, fed by the
//! gateway's verify events, by the registry's keys and accounts, and by `POST /v1/events`. Its
//! decisions are kept for the API, counted in the metrics, and handed to whoever responds to
//! them.
//!
//! The engine is single-threaded by design (its state is per key, in event order), so it runs on
//! one dedicated thread behind a queue. The queue is bounded by a count of records in flight:
//! verify events are shed (and counted) when it is full, batches from producers are refused as a
//! whole with 429 so the producer retries them, and registry records always go in.

//! With a state directory (`serve`: DATA_DIR/detection) the engine's state survives restarts
//! (docs/detection.md, "State across restarts"): every record is journaled by this thread before
//! the engine takes it, a producer's batch is acknowledged only once its records are synced to
//! disk, and the state is snapshotted every so many records or minutes and at a clean stop. At
//! start the snapshot is loaded and the journal since replayed, event ids included, so a retry
//! of a batch acknowledged before a crash is recognised as a duplicate.

use crate::journal::{self, Journal, NodeState, StateError};
use keysentinel_detect::event::{parse_event, Mandate, Principal, Record, RelationshipKind, Segment};
use keysentinel_detect::geo::Locate;
use keysentinel_detect::{Config, Decision, Engine, Stage};
use keysentinel_domain::{Account, ApiKey, Counterparty, CounterpartyKind, Vendor};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Decisions kept for `GET /v1/decisions`, newest last.
const KEPT_DECISIONS: usize = 10_000;
/// Event ids remembered for idempotency: a retry within the last million events is recognised.
/// Kept as keyed 64-bit hashes (8 MiB in a snapshot): a false duplicate needs a collision among
/// a million hashes under a secret key, about one chance in 2^24.
const REMEMBERED_IDS: usize = 1_000_000;
/// Verify events and registry records are synced at least this often (batches at once).
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Messages taken together into one journal write (and one sync).
const GROUP: usize = 1024;

/// Receives every decision, on the engine's thread, in order. It must not block for long.
pub type DecisionSink = Box<dyn FnMut(&Decision) + Send>;

/// Where and how often the engine's state is kept on disk.
#[derive(Debug, Clone)]
pub struct Persistence {
    /// DATA_DIR/detection: `snapshot.bin` and the journal segments.
    pub dir: PathBuf,
    /// Snapshot after this many records journaled since the last one…
    pub snapshot_records: u64,
    /// …or this long after the last one, when anything came since.
    pub snapshot_interval: Duration,
}

pub struct Detection {
    tx: mpsc::Sender<Msg>,
    pending: Arc<AtomicUsize>,
    capacity: usize,
    shed: AtomicU64,
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

/// A batch could not be written durably (or detection stopped): nothing of it was taken or
/// remembered, so its retry is new.
#[derive(Debug, PartialEq, Eq)]
pub struct Unavailable(pub String);

/// A producer's record: its event id, the record, and the line it came as (journaled as it is).
pub struct Posted {
    pub id: Option<String>,
    pub record: Record<'static>,
    pub line: Option<String>,
}

/// The answer to a batch, once the engine's thread has written it.
pub struct Ack(tokio::sync::oneshot::Receiver<Result<Taken, Unavailable>>);

impl Ack {
    pub async fn taken(self) -> Result<Taken, Unavailable> {
        self.0.await.unwrap_or_else(|_| Err(Unavailable("detection stopped".into())))
    }

    /// The same, for threads outside the async runtime.
    pub fn wait(self) -> Result<Taken, Unavailable> {
        self.0.blocking_recv().unwrap_or_else(|_| Err(Unavailable("detection stopped".into())))
    }
}

enum Msg {
    Record(Record<'static>),
    Batch(Vec<Posted>, tokio::sync::oneshot::Sender<Result<Taken, Unavailable>>),
    /// Orders placed through these keys over the 30 days to the time (Unix ms), once what was
    /// queued before the question is taken.
    Traded(Vec<String>, i64, tokio::sync::oneshot::Sender<Vec<Option<Traded>>>),
    Stop(mpsc::Sender<Result<(), String>>),
}

/// Orders placed through a key over the last 30 days, as detection counted them.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Traded {
    pub orders: u64,
    /// The orders' notional, in the market's quote currency.
    pub notional: f64,
}

impl Detection {
    /// Starts the engine's thread, with no state kept across restarts. `sink` (if any) sees
    /// every decision after it is kept.
    pub fn start(
        config: Config,
        geo: Box<dyn Locate>,
        capacity: usize,
        sink: Option<DecisionSink>,
    ) -> std::io::Result<Arc<Self>> {
        Self::start_with(config, geo, capacity, sink, None).map_err(|e| std::io::Error::other(e.to_string()))
    }

    /// Starts the engine's thread; with `persistence`, from the state on disk (snapshot, then
    /// the journal since), refusing to start on a snapshot or journal it cannot trust.
    pub fn start_with(
        config: Config,
        geo: Box<dyn Locate>,
        capacity: usize,
        sink: Option<DecisionSink>,
        persistence: Option<Persistence>,
    ) -> Result<Arc<Self>, StateError> {
        let (this, rx) = Self::new(capacity);
        let (p, d, l) = (this.pending.clone(), this.decisions.clone(), this.by_level.clone());
        let (ready_tx, ready) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("detection".into()).spawn(move || {
            // The engine borrows the geo data, so it is made (or restored) here, on its thread.
            let mut worker = match Worker::open(config, geo.as_ref(), persistence, d, l, p, sink) {
                Ok(w) => w,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            worker.run(rx);
        });
        let dir = PathBuf::from("detection");
        spawned.map_err(journal::io(&dir))?;
        ready.recv().unwrap_or_else(|_| {
            Err(StateError::Corrupt { path: dir.clone(), what: "the detection thread stopped while starting".into() })
        })?;
        Ok(Arc::new(this))
    }

    /// The queue's front end and the receiver the engine's thread reads.
    fn new(capacity: usize) -> (Self, mpsc::Receiver<Msg>) {
        let (tx, rx) = mpsc::channel();
        let this = Self {
            tx,
            pending: Arc::new(AtomicUsize::new(0)),
            capacity: capacity.max(1),
            shed: AtomicU64::new(0),
            decisions: Arc::default(),
            by_level: Arc::default(),
        };
        (this, rx)
    }

    fn send(&self, msg: Msg) {
        // The engine thread outlives every sender; a send can fail only while shutting down.
        let _ = self.tx.send(msg);
    }

    /// A registry record (key, account): always taken, whatever the queue holds, because the
    /// engine must know every key's owner and allowlist.
    pub fn registry(&self, record: Record<'static>) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.send(Msg::Record(record));
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
        self.send(Msg::Record(record));
        true
    }

    fn reserve(&self, n: usize) -> Result<(), QueueFull> {
        self.pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| (p + n <= self.capacity).then_some(p + n))
            .map(|_| ())
            .map_err(|pending| QueueFull { pending, capacity: self.capacity })
    }

    /// A producer's batch, all or nothing: when the queue has no room for all of it, none goes
    /// in (and nothing is remembered). Otherwise the engine's thread drops the records whose
    /// `event_id` it has seen (duplicates), journals the rest and syncs them, and only then
    /// answers through the [`Ack`] and takes them; if they cannot be written it answers
    /// [`Unavailable`] and remembers nothing. Duplicates are judged on that one thread, in
    /// order, so two concurrent copies of a batch cannot both be taken.
    pub fn batch_posted(&self, events: Vec<Posted>) -> Result<Ack, QueueFull> {
        self.reserve(events.len())?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Batch(events, tx));
        Ok(Ack(rx))
    }

    /// [`Detection::batch_posted`] for records that did not come as lines.
    pub fn batch(&self, events: Vec<(Option<String>, Record<'static>)>) -> Result<Ack, QueueFull> {
        self.batch_posted(events.into_iter().map(|(id, record)| Posted { id, record, line: None }).collect())
    }

    /// Orders placed through each of `keys` over the 30 days up to `at_ms` (None for a key the
    /// engine has not met), answered by the engine's thread after what was queued before.
    /// Queries are not records: they take no room in the queue.
    pub async fn traded(&self, keys: Vec<String>, at_ms: i64) -> Result<Vec<Option<Traded>>, Unavailable> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Msg::Traded(keys, at_ms, tx));
        rx.await.map_err(|_| Unavailable("detection stopped".into()))
    }

    /// Syncs the journal and writes a snapshot, then stops taking records: for a clean
    /// shutdown (the next start need not replay the journal). Waits for the engine's thread.
    pub fn shutdown(&self) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.send(Msg::Stop(tx));
        rx.recv().unwrap_or_else(|_| Err("detection had already stopped".into()))
    }

    /// The most recent decisions, newest first, optionally for one key and from a level up.
    pub fn recent(&self, key_id: Option<&str>, at_least: Option<Stage>, limit: usize) -> Vec<Decision> {
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

/// The engine's thread: the engine, the event-id window and, when state is kept, the journal.
struct Worker<'g> {
    engine: Engine<'g>,
    ids: RecentIds,
    kept: Arc<Mutex<VecDeque<Decision>>>,
    by_level: Arc<[AtomicU64; 4]>,
    pending: Arc<AtomicUsize>,
    sink: Option<DecisionSink>,
    disk: Option<Disk>,
}

struct Disk {
    cfg: Persistence,
    journal: Journal,
    last_sync: Instant,
    since_snapshot: u64,
    last_snapshot: Instant,
    /// Records the engine took that the journal does not hold (a write failed): only a snapshot
    /// makes the state on disk whole again.
    needs_snapshot: bool,
    /// No snapshot attempt before this (after a failure).
    not_before: Instant,
}

impl<'g> Worker<'g> {
    fn open(
        config: Config,
        geo: &'g dyn Locate,
        persistence: Option<Persistence>,
        kept: Arc<Mutex<VecDeque<Decision>>>,
        by_level: Arc<[AtomicU64; 4]>,
        pending: Arc<AtomicUsize>,
        sink: Option<DecisionSink>,
    ) -> Result<Worker<'g>, StateError> {
        let Some(cfg) = persistence else {
            return Ok(Worker {
                engine: Engine::new(config, geo),
                ids: RecentIds::new(rand::random()),
                kept,
                by_level,
                pending,
                sink,
                disk: None,
            });
        };
        let dir = cfg.dir.clone();
        std::fs::create_dir_all(&dir).map_err(journal::io(&dir))?;
        let started = Instant::now();
        let restored = journal::read_snapshot(&dir, config.clone(), geo)?;
        let had_snapshot = restored.is_some();
        let (engine, node) = restored.unwrap_or_else(|| {
            (Engine::new(config, geo), NodeState { journal_from: 1, id_key: rand::random(), ..Default::default() })
        });
        let mut ids = RecentIds::new(node.id_key);
        for h in node.ids {
            ids.insert_hash(h);
        }
        {
            let mut k = kept.lock().unwrap_or_else(PoisonError::into_inner);
            k.extend(node.decisions);
        }
        let segments = journal::segments(&dir)?;
        if !had_snapshot && segments.first().is_some_and(|&first| first > 1) {
            return Err(StateError::Corrupt {
                path: dir.join(journal::SNAPSHOT),
                what: "missing, while the journal left starts later than the beginning".into(),
            });
        }
        // Segments the snapshot covers are left over from a removal that did not finish.
        for &n in segments.iter().filter(|&&n| n < node.journal_from) {
            let _ = std::fs::remove_file(journal::segment_path(&dir, n));
        }
        let tail: Vec<u64> = segments.into_iter().filter(|&n| n >= node.journal_from).collect();
        // The journal since the snapshot must be whole: a segment missing in the middle would
        // replay later records onto a state that never saw the ones before.
        if let Some((i, &n)) = tail.iter().enumerate().find(|&(i, &n)| n != node.journal_from + i as u64) {
            return Err(StateError::Corrupt {
                path: journal::segment_path(&dir, node.journal_from + i as u64),
                what: format!("missing, while segment {n} after it is there"),
            });
        }
        let mut worker = Worker { engine, ids, kept, by_level, pending, sink, disk: None };
        let (mut replayed, mut keep) = (0u64, None);
        for (i, &n) in tail.iter().enumerate() {
            let (lines, good) = worker.replay(&journal::segment_path(&dir, n), i + 1 == tail.len())?;
            replayed += lines;
            keep = Some(good);
        }
        let current = tail.last().copied().unwrap_or(node.journal_from);
        let journal = Journal::open(&dir, current, keep)?;
        tracing::info!(
            dir = %dir.display(),
            keys = worker.engine.keys(),
            snapshot = had_snapshot,
            journal_records = replayed,
            seconds = started.elapsed().as_secs_f64(),
            "detection state restored"
        );
        let now = Instant::now();
        worker.disk = Some(Disk {
            cfg,
            journal,
            last_sync: now,
            since_snapshot: replayed,
            last_snapshot: now,
            needs_snapshot: false,
            not_before: now,
        });
        Ok(worker)
    }

    /// Replays one journal segment into the engine (its decisions are kept for the API but not
    /// handed to the response again: they were when first made). Returns the records replayed
    /// and the length of the whole lines. Only the newest segment may end in a torn line (a
    /// crash while writing it, never acknowledged); any other damage refuses the start.
    fn replay(&mut self, path: &std::path::Path, newest: bool) -> Result<(u64, u64), StateError> {
        let file = std::fs::File::open(path).map_err(journal::io(path))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        let (mut line, mut offset, mut n) = (Vec::new(), 0u64, 0u64);
        loop {
            line.clear();
            let read = r.read_until(b'\n', &mut line).map_err(journal::io(path))?;
            if read == 0 {
                return Ok((n, offset));
            }
            if line.last() != Some(&b'\n') {
                if newest {
                    tracing::warn!(path = %path.display(), bytes = read, "dropping a torn last journal line");
                    return Ok((n, offset));
                }
                return Err(StateError::Corrupt { path: path.to_owned(), what: "a journal line is cut short".into() });
            }
            let text = std::str::from_utf8(&line[..read - 1]).map_err(|_| StateError::Corrupt {
                path: path.to_owned(),
                what: format!("the journal line at byte {offset} is not UTF-8"),
            })?;
            let event = parse_event(text).map_err(|e| StateError::Corrupt {
                path: path.to_owned(),
                what: format!("the journal line at byte {offset} does not parse: {e}"),
            })?;
            if let Some(id) = &event.event_id {
                self.ids.insert(id);
            }
            self.engine.ingest(&event.record);
            self.decide(false);
            offset += read as u64;
            n += 1;
        }
    }

    fn run(&mut self, rx: mpsc::Receiver<Msg>) {
        loop {
            let first = match rx.recv_timeout(SYNC_EVERY) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut group: Vec<Msg> = first.into_iter().collect();
            while group.len() < GROUP && !group.is_empty() {
                match rx.try_recv() {
                    Ok(m) => group.push(m),
                    Err(_) => break,
                }
            }
            if self.group(group) {
                break;
            }
            // A failure is logged and retried later; the journal keeps the state meanwhile.
            let _ = self.housekeeping(false);
        }
    }

    /// Journals, syncs (when a batch is in it), answers and ingests one group of messages;
    /// true when told to stop.
    fn group(&mut self, group: Vec<Msg>) -> bool {
        let mut work: Vec<(Record<'static>, Option<String>)> = Vec::new();
        let mut replies = Vec::new();
        let mut queries = Vec::new();
        let mut stop = None;
        // Ids taken by batches earlier in this group: their copies later in it are duplicates.
        let mut in_group: HashSet<u64> = HashSet::new();
        for msg in group {
            match msg {
                Msg::Record(record) => {
                    if let Some(d) = self.disk.as_mut() {
                        d.journal.append(&journal::record_line(&record, None));
                    }
                    work.push((record, None));
                }
                Msg::Batch(events, reply) => {
                    let (mut accepted, mut duplicates) = (0, 0);
                    for e in events {
                        let h = e.id.as_deref().map(|id| self.ids.hash(id));
                        if h.is_some_and(|h| self.ids.contains_hash(h) || !in_group.insert(h)) {
                            duplicates += 1;
                            continue;
                        }
                        if let Some(d) = self.disk.as_mut() {
                            match &e.line {
                                Some(line) => d.journal.append(line),
                                None => d.journal.append(&journal::record_line(&e.record, e.id.as_deref())),
                            }
                        }
                        accepted += 1;
                        work.push((e.record, e.id));
                    }
                    self.pending.fetch_sub(duplicates, Ordering::Relaxed);
                    replies.push((reply, Taken { accepted, duplicates }));
                }
                // Answered once this group's records are in, so a question sees what came before it.
                Msg::Traded(keys, at, reply) => queries.push((keys, at, reply)),
                Msg::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
        }
        let written = match self.disk.as_mut() {
            None => Ok(()),
            Some(d) if !replies.is_empty() => d.journal.commit().map(|()| d.last_sync = Instant::now()),
            Some(d) => d.journal.write(),
        };
        let batches_ok = match written {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "cannot write the detection journal: batches answered 503");
                if let Some(d) = self.disk.as_mut() {
                    if let Err(e) = d.journal.rollback() {
                        tracing::error!(error = %e, "cannot cut the detection journal back");
                    }
                    d.needs_snapshot = true;
                }
                false
            }
        };
        for (reply, taken) in replies {
            let _ = reply.send(if batches_ok {
                Ok(taken)
            } else {
                Err(Unavailable("the detection journal cannot be written".into()))
            });
        }
        for (record, id) in work {
            let batch = id.is_some();
            if batches_ok || !batch {
                // Verify events and registry records go in even when the journal failed (the
                // engine stays current; the snapshot that follows makes the disk whole again).
                if let Some(id) = id {
                    self.ids.insert(&id);
                }
                self.engine.ingest(&record);
                self.decide(true);
                if let Some(d) = self.disk.as_mut() {
                    d.since_snapshot += 1;
                }
            }
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        for (keys, at, reply) in queries {
            let found = keys
                .iter()
                .map(|k| self.engine.traded(k, at).map(|(orders, notional)| Traded { orders, notional }))
                .collect();
            let _ = reply.send(found);
        }
        if let Some(done) = stop {
            let _ = done.send(self.housekeeping(true));
            return true;
        }
        false
    }

    /// Syncs what waits in the journal once a second, and snapshots when due (or `now`).
    fn housekeeping(&mut self, now: bool) -> Result<(), String> {
        let Some(d) = self.disk.as_mut() else { return Ok(()) };
        if d.journal.dirty() && (now || d.last_sync.elapsed() >= SYNC_EVERY) {
            match d.journal.commit() {
                Ok(()) => d.last_sync = Instant::now(),
                Err(e) => {
                    tracing::error!(error = %e, "cannot sync the detection journal");
                    let _ = d.journal.rollback();
                    d.needs_snapshot = true;
                }
            }
        }
        let due = d.needs_snapshot
            || d.since_snapshot >= d.cfg.snapshot_records
            || (d.since_snapshot > 0 && d.last_snapshot.elapsed() >= d.cfg.snapshot_interval);
        if now || (due && Instant::now() >= d.not_before) {
            return self.snapshot().map_err(|e| e.to_string());
        }
        Ok(())
    }

    /// Snapshots the engine: the journal moves on to a new segment, the snapshot (covering
    /// every segment before it) is written whole, and only then are those segments removed.
    fn snapshot(&mut self) -> Result<(), StateError> {
        let Some(d) = self.disk.as_mut() else { return Ok(()) };
        let started = Instant::now();
        let result = d.journal.rotate().and_then(|closed| {
            let node = NodeState {
                journal_from: closed + 1,
                id_key: self.ids.key,
                ids: self.ids.order.iter().copied().collect(),
                decisions: self.kept.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned().collect(),
            };
            let size = journal::write_snapshot(&d.cfg.dir, &self.engine, &node)?;
            for n in journal::segments(&d.cfg.dir)?.into_iter().filter(|&n| n <= closed) {
                let path = journal::segment_path(&d.cfg.dir, n);
                std::fs::remove_file(&path).map_err(journal::io(&path))?;
            }
            Ok(size)
        });
        match result {
            Ok(size) => {
                tracing::info!(
                    keys = self.engine.keys(),
                    bytes = size,
                    seconds = started.elapsed().as_secs_f64(),
                    "detection state snapshotted"
                );
                (d.since_snapshot, d.needs_snapshot, d.last_snapshot) = (0, false, Instant::now());
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot snapshot the detection state; the journal keeps it");
                d.not_before = Instant::now() + Duration::from_secs(30);
                Err(e)
            }
        }
    }

    /// Keeps the engine's new decisions; `live` ones are also counted and handed to the sink.
    fn decide(&mut self, live: bool) {
        for decision in self.engine.take_decisions() {
            if live {
                tracing::info!(
                    key_id = %decision.key_id,
                    account_id = %decision.account_id,
                    level = decision.level.as_str(),
                    risk = decision.risk,
                    reason = decision.reasons.first().map_or("", |r| r.indicator.as_str()),
                    "suspected key sharing"
                );
                self.by_level[decision.level as usize].fetch_add(1, Ordering::Relaxed);
            }
            {
                let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
                if kept.len() == KEPT_DECISIONS {
                    kept.pop_front();
                }
                kept.push_back(decision.clone());
            }
            if live {
                if let Some(sink) = self.sink.as_mut() {
                    sink(&decision);
                }
            }
        }
    }
}

/// Event ids seen lately, as 64-bit keyed hashes — SHA-256 of a secret key and the id, the key
/// kept with the snapshot (so that the window survives a restart, and producers cannot choose
/// ids that collide) — forgotten oldest first.
struct RecentIds {
    key: [u8; 32],
    /// SHA-256 having taken in the key.
    keyed: Sha256,
    set: HashSet<u64>,
    order: VecDeque<u64>,
}

impl RecentIds {
    fn new(key: [u8; 32]) -> Self {
        Self { key, keyed: Sha256::new().chain_update(key), set: HashSet::new(), order: VecDeque::new() }
    }

    fn hash(&self, id: &str) -> u64 {
        let out = self.keyed.clone().chain_update(id.as_bytes()).finalize();
        let mut h = [0u8; 8];
        h.copy_from_slice(&out[..8]);
        u64::from_le_bytes(h)
    }

    fn contains_hash(&self, h: u64) -> bool {
        self.set.contains(&h)
    }

    fn insert(&mut self, id: &str) {
        let h = self.hash(id);
        self.insert_hash(h);
    }

    fn insert_hash(&mut self, h: u64) {
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

/// A key as the engine needs it: owner, allowlist, vendor, and what it was issued for.
pub fn key_record(key: &ApiKey) -> Record<'static> {
    Record::Key {
        key_id: Cow::Owned(key.access_key.as_str().to_owned()),
        account_id: Cow::Owned(key.account_id.as_str().to_owned()),
        scopes: key.scopes.iter().map(|s| Cow::Borrowed(s.as_str())).collect(),
        ip_allowlist: key.ip_allowlist.networks().to_vec(),
        vendor_id: key.vendor_id.as_ref().map(|v| Cow::Owned(v.as_str().to_owned())),
        ts: None,
        purpose: Some(Cow::Owned(key.declared.purpose.as_str().to_owned())),
    }
}

/// A vendor as the engine needs it: whether its egress is sanctioned, and the egress.
pub fn vendor_record(vendor: &Vendor, approved: bool) -> Record<'static> {
    Record::Vendor {
        vendor_id: Cow::Owned(vendor.vendor_id.as_str().to_owned()),
        approved,
        egress_cidrs: vendor.egress_cidrs.networks().to_vec(),
    }
}

/// A counterparty as the engine needs it: one `relationship` record per pair of accounts it
/// relates, whether it is in effect, its dates and a mandate's terms.
pub fn counterparty_records(c: &Counterparty, in_effect: bool) -> Vec<Record<'static>> {
    let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
    let kind = match c.kind {
        CounterpartyKind::MmMandate => RelationshipKind::MmMandate,
        CounterpartyKind::BrokerClient => RelationshipKind::BrokerClient,
        CounterpartyKind::Affiliate => RelationshipKind::Affiliate,
        CounterpartyKind::SubAccount => RelationshipKind::SubAccount,
        CounterpartyKind::VendorDelegation => RelationshipKind::VendorDelegation,
    };
    let mandate = (c.kind == CounterpartyKind::MmMandate).then(|| {
        Box::new(Mandate {
            principal: c.principal.map(|p| match p {
                keysentinel_domain::Principal::Own => Principal::Own,
                keysentinel_domain::Principal::Issuer => Principal::Issuer,
                keysentinel_domain::Principal::Clients => Principal::Clients,
            }),
            issuer: c.issuer.clone().map(Cow::Owned),
            symbols: c.symbols.iter().map(|s| Cow::Owned(s.as_str().to_owned())).collect(),
            countries: c
                .countries
                .iter()
                .filter_map(|x| match x.as_str().as_bytes() {
                    [a, b] => Some([*a, *b]),
                    _ => None,
                })
                .collect(),
            ip_allowlist: c.ip_allowlist.networks().to_vec(),
        })
    });
    c.pairs()
        .into_iter()
        .map(|(from, to)| Record::Relationship {
            from: Cow::Owned(from.as_str().to_owned()),
            to: Cow::Owned(to.as_str().to_owned()),
            kind,
            in_effect,
            counterparty_id: Some(Cow::Owned(c.counterparty_id.as_str().to_owned())),
            effective_from: Some(ms(c.effective_from)),
            effective_until: c.effective_until.map(ms),
            mandate: mandate.clone(),
        })
        .collect()
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
        // NONCE_UNAVAILABLE, this node's own failure, says nothing of the key's holder.
        outcome: event.outcome.class().map(|_| event.outcome)?,
    })
}

/// Keeps the engine's view of the registry current: every committed key, vendor and
/// counterparty change is a `key`, `vendor` or `relationship` record.
pub struct DetectionObserver(pub Arc<Detection>);

impl keysentinel_registry::KeyObserver for DetectionObserver {
    fn key_changed(&self, key: &ApiKey, _secret: Option<&[u8]>) {
        self.0.registry(key_record(key));
    }

    fn vendor_changed(&self, vendor: &Vendor, approved: bool) {
        self.0.registry(vendor_record(vendor, approved));
    }

    fn counterparty_changed(&self, counterparty: &Counterparty, in_effect: bool) {
        for record in counterparty_records(counterparty, in_effect) {
            self.0.registry(record);
        }
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
            outcome: keysentinel_detect::event::Code::BadSignature,
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
    fn every_segment_reaches_the_engine() {
        for segment in keysentinel_domain::Segment::ALL {
            assert!(Segment::parse(segment.as_str()).is_some(), "{segment}");
        }
    }

    #[test]
    fn batches_are_idempotent_by_event_id_and_all_or_nothing() {
        let d = Detection::start(Config::default(), Box::new(NoGeo), 30, None).unwrap();
        let batch =
            |from: usize, n: usize| (from..from + n).map(|i| (Some(format!("e{i}")), request(i))).collect::<Vec<_>>();
        assert_eq!(d.batch(batch(0, 12)).unwrap().wait(), Ok(Taken { accepted: 12, duplicates: 0 }));
        // A retry of the same batch plus two new events: only the new ones go in.
        assert_eq!(d.batch(batch(0, 14)).unwrap().wait(), Ok(Taken { accepted: 2, duplicates: 12 }));
        // Within one batch, the second copy of an id is a duplicate too.
        let twice = vec![(Some("x".to_owned()), request(0)), (Some("x".to_owned()), request(1))];
        assert_eq!(d.batch(twice).unwrap().wait(), Ok(Taken { accepted: 1, duplicates: 1 }));
        // Two copies sent together (before either is answered): only one is taken.
        let (one, two) = (d.batch(batch(100, 5)).unwrap(), d.batch(batch(100, 5)).unwrap());
        assert_eq!(
            (one.wait(), two.wait()),
            (Ok(Taken { accepted: 5, duplicates: 0 }), Ok(Taken { accepted: 0, duplicates: 5 }))
        );
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
        assert!(matches!(d.batch(batch.clone()), Err(QueueFull { pending: 4, capacity: 5 })));
        assert!(d.offer(request(4)));
        assert!(!d.offer(request(5)));
        assert_eq!((d.depth(), d.shed()), (5, 1));
        // Registry records always go in.
        d.registry(request(6));
        assert_eq!(rx.try_iter().count(), 6);
        // Once there is room the retry is taken into the queue whole.
        d.pending.store(0, Ordering::Relaxed);
        assert!(d.batch(batch).is_ok());
        assert_eq!((d.depth(), rx.try_iter().count()), (2, 1));
    }
}
