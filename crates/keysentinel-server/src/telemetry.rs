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
        Self { registry, verifies, latency, snapshot_keys, remembered_nonces, queue_depth, events_shed }
    }
}

impl Telemetry {
    pub fn observe(&self, code: &'static str, scheme: Option<&'static str>, seconds: f64) {
        self.verifies.get_or_create(&VerifyLabels { code, scheme: scheme.unwrap_or("none") }).inc();
        self.latency.observe(seconds);
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, snapshot_keys: usize, nonces: usize, events: &EventPipeline) -> String {
        self.snapshot_keys.set(snapshot_keys as i64);
        self.remembered_nonces.set(nonces as i64);
        self.queue_depth.set(events.depth() as i64);
        let shed = events.shed();
        let counted = self.events_shed.get();
        if shed > counted {
            self.events_shed.inc_by(shed - counted);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}

/// One verify, as an event-format v1 `request` record (docs/events.md, with issue #4).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Unique per node and run: `<node>-<sequence>`.
    pub event_id: String,
    /// RFC 3339 with milliseconds.
    pub ts: String,
    pub key_id: Option<String>,
    pub account_id: Option<String>,
    pub ip: String,
    pub user_agent: Option<String>,
    pub device_id: Option<String>,
    pub method: String,
    pub path: String,
    /// The verify code.
    pub outcome: &'static str,
    pub scheme: Option<&'static str>,
    pub scope: Option<keysentinel_domain::Scope>,
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

    pub fn next_id(&self) -> String {
        format!("{}-{}", self.node, self.sequence.fetch_add(1, Ordering::Relaxed))
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

/// Appends events to an NDJSON file, flushing whenever the queue runs dry.
pub fn spawn_file_writer(mut rx: mpsc::Receiver<RequestEvent>, path: PathBuf) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_blocking(move || {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let file = match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot open the events file; verify events are discarded");
                while rx.blocking_recv().is_some() {}
                return;
            }
        };
        let mut out = std::io::BufWriter::new(file);
        while let Some(event) = rx.blocking_recv() {
            let mut batch = vec![event];
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
                if batch.len() >= 4096 {
                    break;
                }
            }
            for e in &batch {
                if serde_json::to_writer(&mut out, e).is_err() || out.write_all(b"\n").is_err() {
                    tracing::error!(path = %path.display(), "cannot write verify events");
                }
            }
            let _ = out.flush();
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(p: &EventPipeline) -> RequestEvent {
        RequestEvent {
            kind: "request",
            event_id: p.next_id(),
            ts: "2026-11-28T00:00:00.000Z".into(),
            key_id: None,
            account_id: None,
            ip: "203.0.113.7".into(),
            user_agent: None,
            device_id: None,
            method: "GET".into(),
            path: "/".into(),
            outcome: "NOT_FOUND",
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
        assert_eq!(rx.try_recv().map(|e| e.event_id).ok(), Some("n1-0".to_owned()));
        let t = Telemetry::default();
        t.observe("VALID", Some("binance"), 0.000_004);
        let text = t.render(7, 3, &p);
        assert!(text.contains("keysentinel_events_shed_total 3"), "{text}");
        assert!(text.contains(r#"keysentinel_verifies_total{code="VALID",scheme="binance"} 1"#), "{text}");
        assert!(text.contains("keysentinel_snapshot_keys 7"), "{text}");
        assert!(text.contains("keysentinel_event_queue_depth 1"), "{text}");
    }
}
