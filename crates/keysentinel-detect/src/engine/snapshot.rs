//! Snapshots of what the engine has learned, so that its state survives a restart
//! (docs/detection.md, "State across restarts").
//!
//! Everything the engine learned from the records is kept: every key's baseline and indicators,
//! the accounts (segments, partners, owner evidence, payees), the address map (the places looked
//! up and the link window of each address), devices and orders for the link graph, the market's
//! pace, the address ranges' statistics, the population's calibration and the day being
//! counted. A restored engine given the rest of the records decides exactly what an engine that
//! never stopped would have, byte for byte (a test cuts a stream at several points).
//!
//! The places looked up are kept rather than looked up again: the geo data may have been
//! updated in between, and an address the running engine had placed must stay where it was put,
//! or the restart would change decisions.
//!
//! File layout (integers little-endian):
//!
//! ```text
//! magic "KSDETSNP" (8) | format version u32 | fingerprint (32) | body length u64 | body | SHA-256 (32)
//! ```
//!
//! The fingerprint is SHA-256 over the configuration and the engine's vocabulary (indicators,
//! kinds, segments, levels): a snapshot made under other settings, or by a build whose
//! indicators differ, is refused rather than misread. The body is postcard, which is not
//! self-describing, so **any change to a serialised state type (state.rs, takeover.rs,
//! calibration.rs, orders.rs, owner.rs, `Address`) needs [`FORMAT_VERSION`] raised.** The trailing
//! SHA-256 covers every byte before it: a truncated or corrupt file is refused. Hash maps are
//! written as entries sorted by key (never in their randomly seeded iteration order), so the
//! same state always gives the same bytes; the key and account indexes are rebuilt, not stored.

use super::state::{AccountState, Counts, KeyState, MostlyOne};
use super::{orders, owner, Address, Engine};
use crate::config::Config;
use crate::event::{Millis, Segment};
use crate::geo::Locate;
use crate::indicator::{Indicator, Kind, Stage};
use ahash::AHashMap as HashMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::IpAddr;

/// Raised whenever the serialised layout changes (see the module's documentation).
pub const FORMAT_VERSION: u32 = 5;
const MAGIC: &[u8; 8] = b"KSDETSNP";
/// Magic, version, fingerprint, body length.
const HEADER: usize = 8 + 4 + 32 + 8;

/// Why a snapshot could not be written or was refused.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a detection snapshot (its first bytes are not the snapshot magic)")]
    NotASnapshot,
    #[error("snapshot format version {found}, but this build reads version {expected} only")]
    Version { found: u32, expected: u32 },
    #[error("the snapshot is truncated: {0}")]
    Truncated(String),
    #[error("the snapshot is corrupt: its checksum does not match its contents")]
    Corrupt,
    #[error(
        "the snapshot was made under other detection settings or indicators (fingerprint {found}, \
         these settings {expected})"
    )]
    Config { found: String, expected: String },
    #[error("the snapshot's contents do not decode: {0}")]
    Decode(String),
    #[error("the snapshot's contents are inconsistent: {0}")]
    Inconsistent(String),
    #[error("cannot encode the snapshot: {0}")]
    Encode(String),
}

/// The fingerprint of a configuration and of this build's vocabulary.
pub fn fingerprint(cfg: &Config) -> Result<[u8; 32], SnapshotError> {
    let mut h = Sha256::new();
    h.update(b"keysentinel-detect snapshot fingerprint\0");
    h.update(postcard::to_allocvec(cfg).map_err(|e| SnapshotError::Encode(e.to_string()))?);
    for name in Indicator::ALL.iter().map(|i| i.as_str()) {
        h.update(name.as_bytes());
        h.update([0]);
    }
    for name in Kind::ALL.iter().map(|k| k.as_str()) {
        h.update(name.as_bytes());
        h.update([0]);
    }
    for name in Segment::ALL.iter().map(|s| s.as_str()) {
        h.update(name.as_bytes());
        h.update([0]);
    }
    for name in Stage::ALL.iter().map(|l| l.as_str()) {
        h.update(name.as_bytes());
        h.update([0]);
    }
    Ok(h.finalize().into())
}

fn short_hex(b: &[u8]) -> String {
    b.iter().take(8).map(|x| format!("{x:02x}")).collect()
}

type Vendor = (bool, Vec<ipnet::IpNet>);
type OrderQueue = VecDeque<(Millis, usize, usize)>;

/// The state written: borrowed from the engine, maps as sorted entries.
#[derive(Serialize)]
struct BodyRef<'a> {
    keys: &'a [KeyState],
    accounts: &'a [AccountState],
    parent: &'a [usize],
    vendors: Vec<(&'a String, &'a Vendor)>,
    addresses: Vec<(&'a IpAddr, &'a Address)>,
    device_links: Vec<(&'a String, &'a MostlyOne)>,
    order_links: Vec<(&'a orders::OrderShape, &'a OrderQueue)>,
    orders_seen: u64,
    market: &'a orders::Market,
    ranges: Vec<(&'a u32, &'a owner::RangeStats)>,
    global_asns: &'a Counts,
    global_countries: &'a Counts,
    global_families: &'a Counts,
    population: &'a super::calibration::Population,
    day: i64,
}

/// The same, read back (field for field: postcard is positional).
#[derive(Deserialize)]
struct Body {
    keys: Vec<KeyState>,
    accounts: Vec<AccountState>,
    parent: Vec<usize>,
    vendors: Vec<(String, Vendor)>,
    addresses: Vec<(IpAddr, Address)>,
    device_links: Vec<(String, MostlyOne)>,
    order_links: Vec<(orders::OrderShape, OrderQueue)>,
    orders_seen: u64,
    market: orders::Market,
    ranges: Vec<(u32, owner::RangeStats)>,
    global_asns: Counts,
    global_countries: Counts,
    global_families: Counts,
    population: super::calibration::Population,
    day: i64,
}

fn sorted<K: Ord, V>(m: &HashMap<K, V>) -> Vec<(&K, &V)> {
    let mut v: Vec<(&K, &V)> = m.iter().collect();
    v.sort_unstable_by(|a, b| a.0.cmp(b.0));
    v
}

impl<'g> Engine<'g> {
    /// Writes everything the engine has learned to `w` (the format above). Decisions not yet
    /// taken and the trace are not state: take them first.
    pub fn snapshot(&self, mut w: impl Write) -> Result<(), SnapshotError> {
        let body = BodyRef {
            keys: &self.keys,
            accounts: &self.accounts,
            parent: &self.parent,
            vendors: sorted(&self.vendors),
            addresses: sorted(&self.addresses),
            device_links: sorted(&self.device_links),
            order_links: sorted(&self.order_links),
            orders_seen: self.orders_seen,
            market: &self.market,
            ranges: sorted(&self.ranges),
            global_asns: &self.global_asns,
            global_countries: &self.global_countries,
            global_families: &self.global_families,
            population: &self.population,
            day: self.day,
        };
        let body = postcard::to_allocvec(&body).map_err(|e| SnapshotError::Encode(e.to_string()))?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        header.extend_from_slice(&fingerprint(&self.cfg)?);
        header.extend_from_slice(&(body.len() as u64).to_le_bytes());
        let sum: [u8; 32] = Sha256::new().chain_update(&header).chain_update(&body).finalize().into();
        w.write_all(&header)?;
        w.write_all(&body)?;
        w.write_all(&sum)?;
        w.flush()?;
        Ok(())
    }

    /// An engine restored from a snapshot made under the same `cfg`. Reads exactly the
    /// snapshot's bytes, so a caller may keep more after it in the same stream. A snapshot of
    /// another format version or configuration, a truncated or corrupt one, or one whose
    /// contents do not hold together is refused with an error, never trusted.
    pub fn restore(cfg: Config, geo: &'g dyn Locate, mut r: impl Read) -> Result<Engine<'g>, SnapshotError> {
        let mut header = [0u8; HEADER];
        read_all(&mut r, &mut header, "it ends within its header")?;
        if &header[..8] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        let version = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if version != FORMAT_VERSION {
            return Err(SnapshotError::Version { found: version, expected: FORMAT_VERSION });
        }
        let mut len = [0u8; 8];
        len.copy_from_slice(&header[44..52]);
        let len = u64::from_le_bytes(len);
        // Read through `take` rather than allocating `len` at once: a corrupt length must not
        // ask for more memory than the file holds.
        let mut body = Vec::new();
        (&mut r).take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(SnapshotError::Truncated(format!("its body holds {} of {len} bytes", body.len())));
        }
        let mut sum = [0u8; 32];
        read_all(&mut r, &mut sum, "it ends before its checksum")?;
        let want: [u8; 32] = Sha256::new().chain_update(header).chain_update(&body).finalize().into();
        if sum != want {
            return Err(SnapshotError::Corrupt);
        }
        let expected = fingerprint(&cfg)?;
        if header[12..44] != expected {
            return Err(SnapshotError::Config { found: short_hex(&header[12..44]), expected: short_hex(&expected) });
        }
        let (body, rest): (Body, &[u8]) =
            postcard::take_from_bytes(&body).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError::Decode(format!("{} bytes left over after the state", rest.len())));
        }
        Engine::from_body(cfg, geo, body)
    }

    fn from_body(cfg: Config, geo: &'g dyn Locate, b: Body) -> Result<Engine<'g>, SnapshotError> {
        let bad = |what: String| Err(SnapshotError::Inconsistent(what));
        let mut engine = Engine::new(cfg, geo);
        // Every index the engine follows is checked here, so a snapshot that decodes but does not
        // hold together is an error now rather than a panic (or an endless loop in the
        // union-find) later.
        let (nk, na) = (b.keys.len(), b.accounts.len());
        if b.parent.len() != na {
            return bad(format!("{} union-find entries for {na} accounts", b.parent.len()));
        }
        // Unions point the larger root at the smaller, so every parent is at most its child:
        // that rules out cycles.
        if let Some(i) = (0..na).find(|&i| b.parent[i] > i) {
            return bad(format!("account {i}'s group points forward"));
        }
        for (k, st) in b.keys.iter().enumerate() {
            if st.account_ix >= na {
                return bad(format!("key {k} belongs to account {} of {na}", st.account_ix));
            }
        }
        for (a, acct) in b.accounts.iter().enumerate() {
            if acct.keys.iter().any(|&k| k >= nk) || acct.partners.iter().any(|(p, _)| *p >= na) {
                return bad(format!("account {a} names a key or partner that does not exist"));
            }
        }
        let link_ok = |m: &MostlyOne| m.values().all(|v| ((v & 0xffff_ffff) as usize) < na);
        if !b.addresses.iter().all(|(_, a)| link_ok(&a.accounts)) || !b.device_links.iter().all(|(_, m)| link_ok(m)) {
            return bad("a link entry names an account that does not exist".to_owned());
        }
        if !b.order_links.iter().all(|(_, q)| q.iter().all(|(_, a, k)| *a < na && *k < nk)) {
            return bad("an order link names an account or key that does not exist".to_owned());
        }
        if !engine.population.same_shape(&b.population) {
            return bad("the population's statistics have another shape".to_owned());
        }
        let mut key_index = HashMap::with_capacity(nk);
        for (k, st) in b.keys.iter().enumerate() {
            if key_index.insert(st.key_id.clone(), k).is_some() {
                return bad(format!("key {:?} appears twice", st.key_id));
            }
        }
        let mut account_index = HashMap::with_capacity(na);
        for (a, acct) in b.accounts.iter().enumerate() {
            if account_index.insert(acct.id.clone(), a).is_some() {
                return bad(format!("account {:?} appears twice", acct.id));
            }
        }
        engine.keys = b.keys;
        engine.key_index = key_index;
        engine.accounts = b.accounts;
        engine.account_index = account_index;
        engine.parent = b.parent;
        engine.vendors = b.vendors.into_iter().collect();
        // Derived from the vendors exactly as ingesting a vendor record does.
        engine.approved_egress =
            engine.vendors.values().filter(|(ok, _)| *ok).flat_map(|(_, n)| n.iter().copied()).collect::<Vec<_>>();
        engine.approved_egress.sort();
        engine.addresses = b.addresses.into_iter().collect();
        engine.device_links = b.device_links.into_iter().collect();
        engine.order_links = b.order_links.into_iter().collect();
        engine.orders_seen = b.orders_seen;
        engine.market = b.market;
        engine.ranges = b.ranges.into_iter().collect();
        engine.global_asns = b.global_asns;
        engine.global_countries = b.global_countries;
        engine.global_families = b.global_families;
        engine.population = b.population;
        engine.day = b.day;
        Ok(engine)
    }
}

fn read_all(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), SnapshotError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => SnapshotError::Truncated(what.to_owned()),
        _ => SnapshotError::Io(e),
    })
}

/// Serde for arrays longer than serde's own impls cover (32): as a sequence, its length checked.
pub(super) mod array {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(a: &[T; N], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(a.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>, const N: usize>(
        d: D,
    ) -> Result<[T; N], D::Error> {
        let v = Vec::<T>::deserialize(d)?;
        let len = v.len();
        v.try_into().map_err(|_| serde::de::Error::invalid_length(len, &"an array of the expected length"))
    }
}
