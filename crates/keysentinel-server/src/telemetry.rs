//! Prometheus metrics for the verify path, and the event pipeline that turns every verify into
//! an event without ever blocking the verify.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerifyLabels {
    code: &'static str,
    scheme: &'static str,
}

pub struct Telemetry {
    registry: Registry,
    verifies: Family<VerifyLabels, Counter>,
    latency: Histogram,
    snapshot_keys: Gauge,
    remembered_nonces: Gauge,
    queue_depth: Gauge,
    events_shed: Counter,
    detection_depth: Gauge,
    detection_shed: Counter,
    decisions: Family<LevelLabel, Counter>,
    state_mismatches: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LevelLabel {
    level: &'static str,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keysentinel");
        let verifies = Family::<VerifyLabels, Counter>::default();
        registry.register("verifies", "Verify decisions by code and signing scheme", verifies.clone());
        // 1 µs to ~0.5 s in powers of two: the verify itself is microseconds; the tail is load.
        let latency = Histogram::new(exponential_buckets(1e-6, 2.0, 20));
        registry.register("verify_duration_seconds", "Time to decide one verify, in-process", latency.clone());
        let snapshot_keys = Gauge::default();
        registry.register("snapshot_keys", "Keys in the in-memory verify snapshot", snapshot_keys.clone());
        let remembered_nonces = Gauge::default();
        registry.register(
            "remembered_nonces",
            "One-time nonces remembered for replay protection",
            remembered_nonces.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register("event_queue_depth", "Verify events waiting to be written", queue_depth.clone());
        let events_shed = Counter::default();
        registry.register("events_shed", "Verify events dropped because the queue was full", events_shed.clone());
        let detection_depth = Gauge::default();
        registry.register("detection_queue_depth", "Records waiting for the detection engine", detection_depth.clone());
        let detection_shed = Counter::default();
        registry.register(
            "detection_shed",
            "Verify events not given to detection because its queue was full",
            detection_shed.clone(),
        );
        let decisions = Family::<LevelLabel, Counter>::default();
        registry.register("detection_decisions", "Detection decisions by level", decisions.clone());
        let state_mismatches = Counter::default();
        registry.register(
            "state_mismatches",
            "State rows refused because the database file no longer held what the audit log says (alert on any)",
            state_mismatches.clone(),
        );
        Self {
            registry,
            verifies,
            latency,
            snapshot_keys,
            remembered_nonces,
            queue_depth,
            events_shed,
            detection_depth,
            detection_shed,
            decisions,
            state_mismatches,
        }
    }
}

impl Telemetry {
    /// Brings the count of refused state rows up to the store's total (read at each scrape).
    pub fn state_mismatches(&self, total: u64) {
        catch_up(&self.state_mismatches, total);
    }

    pub fn observe(&self, code: &'static str, scheme: Option<&'static str>, seconds: f64) {
        self.verifies.get_or_create(&VerifyLabels { code, scheme: scheme.unwrap_or("none") }).inc();
        self.latency.observe(seconds);
    }

    /// The text exposition, with the gauges read now.
    pub fn render(
        &self,
        snapshot_keys: usize,
        nonces: usize,
        events: &EventPipeline,
        detection: Option<&crate::detection::Detection>,
    ) -> String {
        if let Some(d) = detection {
            self.detection_depth.set(d.depth() as i64);
            catch_up(&self.detection_shed, d.shed());
            for (level, n) in keysentinel_detect::Stage::ALL.iter().zip(d.decisions_by_level()) {
                catch_up(&self.decisions.get_or_create(&LevelLabel { level: level.as_str() }), n);
            }
        }
        self.snapshot_keys.set(snapshot_keys as i64);
        self.remembered_nonces.set(nonces as i64);
        self.queue_depth.set(events.depth() as i64);
        catch_up(&self.events_shed, events.shed());
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

/// The OpenMetrics exposition as Prometheus text format 0.0.4: no `# EOF` or `# UNIT` lines,
/// and a counter's HELP and TYPE name its `_total` sample (OpenMetrics names the family without
/// the suffix, which 0.0.4 parsers take for an untyped metric with no samples).
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Brings a Prometheus counter up to a total kept elsewhere.
fn catch_up(counter: &Counter, total: u64) {
    let counted = counter.get();
    if total > counted {
        counter.inc_by(total - counted);
    }
}

/// One verify, as captured on the hot path: copies and reference counts only. Everything that
/// costs (formatting the time and the id, the key's strings, JSON) is done by the consumer, off
/// the request path.
#[derive(Clone)]
pub struct RequestEvent {
    pub seq: u64,
    pub ts_ms: i64,
    pub key: Option<std::sync::Arc<keysentinel_verify::snapshot::KeyEntry>>,
    pub ip: std::net::IpAddr,
    pub user_agent: Option<Box<str>>,
    pub device_id: Option<Box<str>>,
    pub method: Box<str>,
    pub path: Box<str>,
    /// The verify code.
    pub outcome: keysentinel_domain::outcome::Code,
    pub scheme: Option<&'static str>,
    pub scope: Option<keysentinel_domain::Scope>,
}

/// The event as written, an event-format v1 `request` record (docs/events.md, with issue #4):
/// `type`, `event_id` (`<node>-<sequence>`), `ts` (RFC 3339, milliseconds), `key_id`,
/// `account_id`, `ip`, `user_agent`, `device_id`, `method`, `path`, `outcome` (the verify
/// code), `scheme`, `scope`. Serialised straight into the output, without intermediate strings.
pub struct RequestRecord<'a> {
    event: &'a RequestEvent,
    node: &'a str,
}

/// RFC 3339 UTC with milliseconds, written without allocating.
struct Millis(i64);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl Serialize for RequestRecord<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Id<'a>(&'a str, u64);
        impl Serialize for Id<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&format_args!("{}-{}", self.0, self.1))
            }
        }
        struct Text<T: std::fmt::Display>(T);
        impl<T: std::fmt::Display> Serialize for Text<T> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(&self.0)
            }
        }
        let e = self.event;
        let mut m = serializer.serialize_map(Some(13))?;
        m.serialize_entry("type", "request")?;
        m.serialize_entry("event_id", &Id(self.node, e.seq))?;
        m.serialize_entry("ts", &Text(Millis(e.ts_ms)))?;
        m.serialize_entry("key_id", &e.key.as_ref().map(|k| &*k.access_key))?;
        m.serialize_entry("account_id", &e.key.as_ref().map(|k| &*k.account_id))?;
        m.serialize_entry("ip", &Text(e.ip))?;
        m.serialize_entry("user_agent", &e.user_agent)?;
        m.serialize_entry("device_id", &e.device_id)?;
        m.serialize_entry("method", &e.method)?;
        m.serialize_entry("path", &e.path)?;
        m.serialize_entry("outcome", e.outcome.as_str())?;
        m.serialize_entry("scheme", &e.scheme)?;
        m.serialize_entry("scope", &e.scope)?;
        m.end()
    }
}

impl RequestEvent {
    pub fn record<'a>(&'a self, node: &'a str) -> RequestRecord<'a> {
        RequestRecord { event: self, node }
    }
}

/// A bounded queue between verify and the event consumer. `emit` never waits: when the queue is
/// full the event is shed, counted, and reported in the metrics and (sparingly) in the log.
pub struct EventPipeline {
    tx: mpsc::Sender<RequestEvent>,
    capacity: usize,
    shed: AtomicU64,
    sequence: AtomicU64,
    node: String,
}

impl EventPipeline {
    /// A pipeline whose events go to `rx`'s consumer.
    pub fn new(capacity: usize, node: String) -> (Self, mpsc::Receiver<RequestEvent>) {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        (Self { tx, capacity, shed: AtomicU64::new(0), sequence: AtomicU64::new(0), node }, rx)
    }

    pub fn next_seq(&self) -> u64 {
        self.sequence.fetch_add(1, Ordering::Relaxed)
    }

    /// This node's name in event ids.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn emit(&self, event: RequestEvent) {
        if self.tx.try_send(event).is_err() {
            let n = self.shed.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    shed_total = n,
                    "verify event queue full: shedding events (see keysentinel_events_shed)"
                );
            }
        }
    }

    pub fn depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }

    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }
}

/// How long the writer lets events accumulate between batches. While it sleeps it is not waiting
/// on the queue, so `emit` finds no waiter to wake: verify threads make no wake-up system call,
/// and the writer wakes at most ~50 times a second however busy the gateway is (the way a Kafka
/// producer's `linger.ms` trades a little latency for batching).
const LINGER: std::time::Duration = std::time::Duration::from_millis(20);

/// The events file of a UTC day: `DIR/requests-YYYY-MM-DD.ndjson`. One file a day makes
/// retention a matter of whole files (`crate::retention`).
pub fn day_file(dir: &std::path::Path, day: i64) -> PathBuf {
    let date = time::OffsetDateTime::from_unix_timestamp(day * 86_400).map(|t| t.date()).unwrap_or(time::Date::MIN);
    dir.join(format!("requests-{}.ndjson", crate::retention::iso(date)))
}

/// The day files being appended to: the open one, and the day that could not be opened (not
/// retried until the next day, so a full disk logs once, not per event).
struct DayFiles {
    dir: PathBuf,
    current: Option<(i64, std::io::BufWriter<std::fs::File>)>,
    failed_day: Option<i64>,
}

impl DayFiles {
    fn write(&mut self, e: &RequestEvent, node: &str) {
        let day = e.ts_ms.div_euclid(86_400_000);
        if self.current.as_ref().is_none_or(|(d, _)| *d != day) && self.failed_day != Some(day) {
            self.flush();
            self.current = None;
            let path = day_file(&self.dir, day);
            match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
                Ok(f) => self.current = Some((day, std::io::BufWriter::with_capacity(256 * 1024, f))),
                Err(err) => {
                    self.failed_day = Some(day);
                    tracing::error!(path = %path.display(), error = %err, "cannot open the events file; verify events are not recorded");
                }
            }
        }
        if let Some((_, out)) = self.current.as_mut() {
            let ok = serde_json::to_writer(&mut *out, &e.record(node)).is_ok() && out.write_all(b"\n").is_ok();
            if !ok && self.failed_day != Some(day) {
                self.failed_day = Some(day);
                tracing::error!(dir = %self.dir.display(), "cannot write verify events");
            }
        }
    }

    fn flush(&mut self) {
        if let Some((_, out)) = self.current.as_mut() {
            let _ = out.flush();
        }
    }
}

/// Appends events to the day's NDJSON file in `dir` in batches, flushing after each batch, and
/// hands each to detection when it runs.
pub fn spawn_file_writer(
    mut rx: mpsc::Receiver<RequestEvent>,
    dir: PathBuf,
    node: String,
    detection: Option<std::sync::Arc<crate::detection::Detection>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), error = %e, "cannot create the events directory");
        }
        let mut files = DayFiles { dir, current: None, failed_day: None };
        let handle = |files: &mut DayFiles, e: &RequestEvent| {
            files.write(e, &node);
            if let (Some(d), Some(rec)) = (&detection, crate::detection::request_record(e)) {
                d.offer(rec);
            }
        };
        // Parked on the queue only when it is empty; then one batch, then linger.
        while let Some(first) = rx.blocking_recv() {
            handle(&mut files, &first);
            while let Ok(e) = rx.try_recv() {
                handle(&mut files, &e);
            }
            files.flush();
            std::thread::sleep(LINGER);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(p: &EventPipeline) -> RequestEvent {
        RequestEvent {
            seq: p.next_seq(),
            ts_ms: 1_764_300_000_123,
            key: None,
            ip: [203, 0, 113, 7].into(),
            user_agent: Some("ccxt/4.5".into()),
            device_id: None,
            method: "GET".into(),
            path: "/".into(),
            outcome: keysentinel_domain::outcome::Code::NotFound,
            scheme: None,
            scope: None,
        }
    }

    #[test]
    fn a_full_queue_sheds_and_counts_instead_of_blocking() {
        let (p, mut rx) = EventPipeline::new(2, "n1".into());
        for _ in 0..5 {
            p.emit(event(&p));
        }
        assert_eq!((p.depth(), p.shed()), (2, 3));
        let first = rx.try_recv().unwrap();
        let line = serde_json::to_value(first.record(p.node())).unwrap();
        assert_eq!(line["event_id"], "n1-0");
        assert_eq!(line["type"], "request");
        assert_eq!(line["ts"], "2025-11-28T03:20:00.123Z");
        assert_eq!((line["ip"].as_str(), line["user_agent"].as_str()), (Some("203.0.113.7"), Some("ccxt/4.5")));
        let t = Telemetry::default();
        t.observe("VALID", Some("binance"), 0.000_004);
        let text = t.render(7, 3, &p, None);
        assert!(text.contains("keysentinel_events_shed_total 3"), "{text}");
        assert!(text.contains(r#"keysentinel_verifies_total{code="VALID",scheme="binance"} 1"#), "{text}");
        assert!(text.contains("keysentinel_snapshot_keys 7"), "{text}");
        assert!(text.contains("keysentinel_event_queue_depth 1"), "{text}");
    }
}
