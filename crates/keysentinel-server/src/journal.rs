//! Detection state on disk (docs/detection.md, "State across restarts"): in
//! `DATA_DIR/detection/`, `snapshot.bin` (the engine's snapshot, then this node's part: the
//! event-id window, the decisions kept for the API and the first journal segment still needed)
//! and the journal, `journal-NNNNNNNNNN.ndjson`: every record the engine took since, as an
//! event-format v1 line with its `event_id`, in the order the engine took them.
//!
//! The engine's thread is the journal's only writer, so its order is the engine's. Lines are
//! buffered and written in groups; a group holding a producer's batch is synced before the batch
//! is acknowledged (group commit: one sync for whatever arrived together), and verify events and
//! registry records are synced with the next batch or within a second.

use keysentinel_detect::event::{format_rfc3339_ms, Record, Side};
use keysentinel_detect::{Decision, Engine};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const SNAPSHOT: &str = "snapshot.bin";
const NODE_MAGIC: &[u8; 8] = b"KSDNODE1";

/// Why the detection state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "{path}: {source}. Detection refuses to start on state it cannot trust: restore the \
         file from a backup, or start afresh with `serve --detection-reset` (the state is moved \
         aside, and the engine learns its baselines again)"
    )]
    Snapshot { path: PathBuf, source: keysentinel_detect::SnapshotError },
    #[error(
        "{path}: {what}. Detection refuses to start on state it cannot trust: restore the \
         directory from a backup, or start afresh with `serve --detection-reset`"
    )]
    Corrupt { path: PathBuf, what: String },
}

pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_owned(), source }
}

/// This node's part of a snapshot, after the engine's.
#[derive(Serialize, Deserialize, Default)]
pub struct NodeState {
    /// The first journal segment the snapshot does not cover.
    pub journal_from: u64,
    /// The event-id window: its hash key and the hashes, oldest first.
    pub id_key: [u8; 32],
    pub ids: Vec<u64>,
    /// Decisions kept for `GET /v1/decisions`, oldest first.
    pub decisions: Vec<Decision>,
}

/// Writes `engine` and `node` to `dir/snapshot.bin` whole or not at all: a temporary file,
/// synced, renamed over the old one, and the directory synced.
pub fn write_snapshot(dir: &Path, engine: &Engine<'_>, node: &NodeState) -> Result<u64, StateError> {
    let path = dir.join(SNAPSHOT);
    let tmp = dir.join(format!("{SNAPSHOT}.tmp"));
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    engine.snapshot(&mut w).map_err(|source| StateError::Snapshot { path: tmp.clone(), source })?;
    let body = postcard::to_allocvec(node)
        .map_err(|e| StateError::Corrupt { path: tmp.clone(), what: format!("cannot encode: {e}") })?;
    let sum = Sha256::new().chain_update(NODE_MAGIC).chain_update(&body).finalize();
    (|| {
        w.write_all(NODE_MAGIC)?;
        w.write_all(&(body.len() as u64).to_le_bytes())?;
        w.write_all(&body)?;
        w.write_all(&sum)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        file.metadata().map(|m| m.len())
    })()
    .map_err(io(&tmp))
    .and_then(|size| {
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(dir)?;
        Ok(size)
    })
}

/// Reads `dir/snapshot.bin`, if there is one.
pub fn read_snapshot<'g>(
    dir: &Path,
    config: keysentinel_detect::Config,
    geo: &'g dyn keysentinel_detect::geo::Locate,
) -> Result<Option<(Engine<'g>, NodeState)>, StateError> {
    let path = dir.join(SNAPSHOT);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut r = std::io::BufReader::with_capacity(1 << 20, file);
    let engine =
        Engine::restore(config, geo, &mut r).map_err(|source| StateError::Snapshot { path: path.clone(), source })?;
    let corrupt = |what: &str| StateError::Corrupt { path: path.clone(), what: what.to_owned() };
    let mut head = [0u8; 16];
    r.read_exact(&mut head).map_err(|_| corrupt("the node's part is truncated"))?;
    if &head[..8] != NODE_MAGIC {
        return Err(corrupt("the node's part has another format"));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&head[8..]);
    let len = u64::from_le_bytes(len);
    let mut body = Vec::new();
    (&mut r).take(len).read_to_end(&mut body).map_err(io(&path))?;
    let mut sum = [0u8; 32];
    if body.len() as u64 != len || r.read_exact(&mut sum).is_err() {
        return Err(corrupt("the node's part is truncated"));
    }
    if sum[..] != Sha256::new().chain_update(NODE_MAGIC).chain_update(&body).finalize()[..] {
        return Err(corrupt("the node's part is corrupt (checksum)"));
    }
    let node: NodeState = postcard::from_bytes(&body).map_err(|e| corrupt(&format!("the node's part: {e}")))?;
    Ok(Some((engine, node)))
}

pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("journal-{n:010}.ndjson"))
}

/// The journal segments in `dir`, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<u64>, StateError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_prefix("journal-").and_then(|n| n.strip_suffix(".ndjson")) {
            if let Ok(n) = n.parse::<u64>() {
                found.push(n);
            }
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The segment being appended to. Lines are buffered; `write` hands them to the file, `commit`
/// also syncs it, and `rollback` drops everything since the last commit (a failed write must
/// leave no half-acknowledged batch behind).
pub struct Journal {
    dir: PathBuf,
    pub segment: u64,
    file: File,
    buf: Vec<u8>,
    /// Bytes in the file, and bytes known to be on disk.
    written: u64,
    synced: u64,
}

impl Journal {
    /// Opens segment `n` for appending (created if missing), cut back to `keep` bytes (a torn
    /// last line is dropped).
    pub fn open(dir: &Path, n: u64, keep: Option<u64>) -> Result<Journal, StateError> {
        let path = segment_path(dir, n);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io(&path))?;
        let mut len = file.metadata().map_err(io(&path))?.len();
        if let Some(keep) = keep.filter(|k| *k < len) {
            file.set_len(keep).map_err(io(&path))?;
            len = keep;
        }
        file.sync_all().map_err(io(&path))?;
        sync_dir(dir)?;
        Ok(Journal {
            dir: dir.to_owned(),
            segment: n,
            file,
            buf: Vec::with_capacity(1 << 20),
            written: len,
            synced: len,
        })
    }

    pub fn append(&mut self, line: &str) {
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    /// Whether anything is not yet synced.
    pub fn dirty(&self) -> bool {
        !self.buf.is_empty() || self.written != self.synced
    }

    /// Hands the buffered lines to the file (no sync).
    pub fn write(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.written += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes and syncs: what was appended is on disk once this returns Ok.
    pub fn commit(&mut self) -> std::io::Result<()> {
        self.write()?;
        if self.written != self.synced {
            self.file.sync_data()?;
            self.synced = self.written;
        }
        Ok(())
    }

    /// Drops what was appended since the last commit, from the buffer and the file.
    pub fn rollback(&mut self) -> std::io::Result<()> {
        self.buf.clear();
        self.file.set_len(self.synced)?;
        self.written = self.synced;
        Ok(())
    }

    /// Commits this segment and continues in the next; returns the one closed.
    pub fn rotate(&mut self) -> Result<u64, StateError> {
        let path = segment_path(&self.dir, self.segment);
        self.commit().map_err(io(&path))?;
        let closed = self.segment;
        *self = Journal::open(&self.dir, closed + 1, None)?;
        Ok(closed)
    }
}

/// A record as an event-format v1 line (docs/events.md) with its event id: what the journal
/// keeps of records that did not come as lines (verify events, the registry's keys and
/// accounts). Parsing the line gives the record back exactly (a test checks every kind). A
/// verify's outcome is written as one code of its class, which is all the engine reads of it.
pub fn record_line(record: &Record<'_>, event_id: Option<&str>) -> String {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    };
    let country = |c: &[u8; 2]| String::from_utf8_lossy(c).into_owned();
    let nets = |n: &[ipnet::IpNet]| n.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    put("event_id", json!(event_id));
    match record {
        Record::Account { account_id, segment, declared_countries, declared_purpose } => {
            put("type", json!("account"));
            put("account_id", json!(account_id));
            put("segment", json!(segment.as_str()));
            put("declared_countries", json!(declared_countries.iter().map(country).collect::<Vec<_>>()));
            put("declared_purpose", json!(declared_purpose));
        }
        Record::Key { key_id, account_id, scopes, ip_allowlist, vendor_id, ts, purpose } => {
            put("type", json!("key"));
            put("key_id", json!(key_id));
            put("account_id", json!(account_id));
            put("scopes", json!(scopes));
            put("ip_allowlist", json!(nets(ip_allowlist)));
            put("vendor_id", json!(vendor_id));
            put("ts", json!(ts.map(format_rfc3339_ms)));
            if purpose.is_some() {
                put("purpose", json!(purpose));
            }
        }
        Record::Vendor { vendor_id, approved, egress_cidrs } => {
            put("type", json!("vendor"));
            put("vendor_id", json!(vendor_id));
            put("status", json!(if *approved { "approved" } else { "suspended" }));
            put("egress_cidrs", json!(nets(egress_cidrs)));
        }
        Record::Relationship {
            from,
            to,
            kind,
            in_effect,
            counterparty_id,
            effective_from,
            effective_until,
            mandate,
        } => {
            put("type", json!("relationship"));
            put("from", json!(from));
            put("to", json!(to));
            put("kind", json!(kind.as_str()));
            put("in_effect", json!(in_effect));
            put("counterparty_id", json!(counterparty_id));
            put("effective_from", json!(effective_from.map(format_rfc3339_ms)));
            put("effective_until", json!(effective_until.map(format_rfc3339_ms)));
            if let Some(m) = mandate {
                put("principal", json!(m.principal.map(|p| p.as_str())));
                put("issuer", json!(m.issuer));
                put("symbols", json!(m.symbols));
                put("countries", json!(m.countries.iter().map(country).collect::<Vec<_>>()));
                put("ip_allowlist", json!(nets(&m.ip_allowlist)));
            }
        }
        Record::Request { ts, key_id, ip, user_agent, device_id, method, path, outcome } => {
            put("type", json!("request"));
            put("ts", json!(format_rfc3339_ms(*ts)));
            put("key_id", json!(key_id));
            put("ip", json!(ip.to_string()));
            put("user_agent", json!(user_agent));
            put("device_id", json!(device_id));
            put("method", json!(method));
            put("path", json!(path));
            put("outcome", json!(outcome.as_str()));
        }
        Record::Order { ts, key_id, symbol, side, action, notional } => {
            put("type", json!("order"));
            put("ts", json!(format_rfc3339_ms(*ts)));
            put("key_id", json!(key_id));
            put("symbol", json!(symbol));
            put("side", json!(if *side == Side::Buy { "buy" } else { "sell" }));
            put(
                "action",
                json!(if *action == keysentinel_detect::event::OrderAction::Place { "place" } else { "cancel" }),
            );
            put("notional", json!(notional));
        }
        Record::Login { ts, account_id, ip, user_agent, device_id } => {
            put("type", json!("login"));
            put("ts", json!(format_rfc3339_ms(*ts)));
            put("account_id", json!(account_id));
            put("ip", json!(ip.to_string()));
            put("user_agent", json!(user_agent));
            put("device_id", json!(device_id));
        }
        Record::Withdrawal { ts, key_id, account_id, asset, amount, address } => {
            put("type", json!("withdrawal"));
            put("ts", json!(format_rfc3339_ms(*ts)));
            put("key_id", json!(key_id));
            put("account_id", json!(account_id));
            put("asset", json!(asset));
            put("amount", json!(amount));
            put("address", json!(address));
        }
        Record::Complaint { ts, account_id, text } => {
            put("type", json!("complaint"));
            put("ts", json!(format_rfc3339_ms(*ts)));
            put("account_id", json!(account_id));
            put("text", json!(text));
        }
        Record::VendorIntel { ts, key_id, vendor_id, text } => {
            put("type", json!("vendor_intel"));
            put("ts", json!(format_rfc3339_ms(*ts)));
            put("key_id", json!(key_id));
            put("vendor_id", json!(vendor_id));
            put("text", json!(text));
        }
        Record::Confirmation { ts, account_id, key_id, by, ips, asns, countries, clients, devices, text } => {
            put("type", json!("confirmation"));
            put("ts", json!(format_rfc3339_ms(*ts)));
            put("account_id", json!(account_id));
            put("key_id", json!(key_id));
            put("by", json!(by.as_str()));
            put("ips", json!(ips.iter().map(|i| i.to_string()).collect::<Vec<_>>()));
            put("asns", json!(asns));
            put("countries", json!(countries.iter().map(country).collect::<Vec<_>>()));
            put("clients", json!(clients));
            put("devices", json!(devices));
            put("text", json!(text));
        }
    }
    Value::Object(m).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysentinel_detect::event::parse_event;

    #[test]
    fn every_kind_of_record_round_trips_through_its_journal_line() {
        let lines = [
            r#"{"type":"account","account_id":"a","segment":"market_maker","declared_countries":["KR","SG"],"declared_purpose":"mm"}"#,
            r#"{"type":"key","key_id":"k","account_id":"a","scopes":["read","trade"],"ip_allowlist":["203.0.113.0/24","2001:db8::/32"],"vendor_id":"v","ts":"2026-11-28T00:00:00.001Z"}"#,
            r#"{"type":"key","key_id":"k2","account_id":"a","scopes":[],"ip_allowlist":[],"vendor_id":null}"#,
            r#"{"type":"vendor","vendor_id":"v","status":"suspended","egress_cidrs":["198.51.100.0/24"]}"#,
            r#"{"type":"relationship","from":"a","to":"b","kind":"broker_client"}"#,
            r#"{"type":"relationship","from":"a","to":"b","kind":"sub_account","in_effect":false,"counterparty_id":"cp-1","effective_from":"2026-11-01T00:00:00.000Z"}"#,
            r#"{"type":"relationship","from":"m","to":"m","kind":"mm_mandate","effective_from":"2026-11-01T00:00:00.000Z","effective_until":"2027-02-01T00:00:00.000Z","principal":"issuer","issuer":"Klay","symbols":["KLAY-KRW"],"countries":["KR"],"ip_allowlist":["198.51.100.0/24"]}"#,
            r#"{"type":"request","ts":"2026-11-28T05:24:57.123Z","key_id":"k","ip":"2001:db8::7","user_agent":"ccxt/4 \"q\"","device_id":"d","method":"GET","path":"/x","outcome":"IP_NOT_ALLOWED"}"#,
            r#"{"type":"request","ts":"2026-11-28T05:24:57.123Z","key_id":"k","ip":"203.0.113.7","outcome":"SUSPENDED"}"#,
            r#"{"type":"order","ts":"2026-11-28T05:24:57.123Z","key_id":"k","symbol":"BTC-KRW","side":"sell","action":"place","notional":1234.5678901234}"#,
            r#"{"type":"login","ts":"2026-11-28T05:24:57.123Z","account_id":"a","ip":"203.0.113.7","user_agent":"Mozilla/5.0","device_id":"d"}"#,
            r#"{"type":"withdrawal","ts":"2026-11-28T05:24:57.123Z","account_id":"a","asset":"BTC","amount":0.1,"address":"bc1q"}"#,
            r#"{"type":"complaint","ts":"2026-11-28T05:24:57.123Z","account_id":"a","text":"키를 공유했어요\n"}"#,
            r#"{"type":"vendor_intel","ts":"2026-11-28T05:24:57.123Z","vendor_id":"v","text":"leak"}"#,
            r#"{"type":"confirmation","ts":"2026-11-28T05:24:57.123Z","account_id":"a","key_id":"k","by":"owner","ips":["203.0.113.7"],"asns":[4766],"countries":["JP"],"clients":["ccxt"],"devices":["d"],"text":"me"}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            let event = parse_event(line).unwrap();
            let id = format!("e{i}");
            let written = record_line(&event.record, Some(&id));
            let back = parse_event(&written).unwrap();
            assert_eq!(back.record, event.record, "{written}");
            assert_eq!(back.event_id.as_deref(), Some(id.as_str()));
        }
    }
}
