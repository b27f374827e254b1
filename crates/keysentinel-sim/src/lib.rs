//! A simulated exchange population and its API traffic, in event format v1, with the ground
//! truth of which keys are shared, by which family of sharing, and from when
//! (docs/detection.md, "Simulator").
//!
//! The population is drawn from *families*: ways honest customers really use their own keys
//! (at home and on the phone — with KT and LG U+ phones under the same ASN as their homes —,
//! at the office, through a VPN, abroad with a roaming phone, a bot in the cloud beside a
//! laptop, an approved vendor, a shared office NAT, …) and ways keys are lent, sold, leaked and
//! resold (a friend abroad or on their own home line, a group, a leak probed from the cloud or
//! watched quietly, a rental where the owner stops and someone else takes over, resale to
//! several buyers, rotating residential proxies, affiliate rings, an unregistered vendor).
//! Every parameter — rates, hours, how many networks, how long a trip, how many people share —
//! is drawn per customer from wide ranges, so a detector cannot fit one number. Customers log
//! in to the exchange's web site and app (`login` records) from wherever they are.
//!
//! Deterministic: the same seed and parameters give the same bytes.

mod gen;
mod heldout;
mod honest;
mod person;
mod sharing;
pub mod world;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::{IpAddr, Ipv4Addr};

/// Where the simulator finds addresses of a network (AS number).
pub trait AddressBook {
    /// IPv4 ranges (first, last) of an ASN; empty when unknown.
    fn ranges(&self, asn: u32) -> Vec<(u32, u32)>;
    /// IPv6 ranges (first, last) of an ASN; empty when unknown (then nobody is dual-stack).
    fn ranges_v6(&self, _asn: u32) -> Vec<(u128, u128)> {
        Vec::new()
    }
}

/// Without geo data: one synthetic /16 per ASN in 100.64.0.0/10, so the traffic keeps its
/// structure though no address can be located.
pub struct SyntheticAddresses;

impl AddressBook for SyntheticAddresses {
    fn ranges(&self, asn: u32) -> Vec<(u32, u32)> {
        let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + ((asn % 64) << 16);
        vec![(base, base + 0xffff)]
    }
}

#[derive(Debug, Clone)]
pub struct Params {
    pub seed: u64,
    pub accounts: usize,
    /// Simulated hours.
    pub hours: i64,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// Share of accounts hit by each (one-account) sharing family.
    pub sharing_rate: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { seed: 1, accounts: 2_000, hours: 48, start_ms: 1_795_824_000_000, sharing_rate: 0.01 }
    }
}

/// One key's ground truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub key_id: String,
    pub account_id: String,
    pub segment: &'static str,
    /// The family that drew it: an honest way of using one's own key, or a way of sharing it.
    pub family: &'static str,
    /// For a shared key, the other party's first use of it.
    pub onset_ms: Option<i64>,
}

impl Truth {
    fn honest(key: &str, account: &str, segment: &'static str, family: &'static str) -> Truth {
        Truth { key_id: key.to_owned(), account_id: account.to_owned(), segment, family, onset_ms: None }
    }
    fn shared(key: &str, account: &str, segment: &'static str, family: &'static str, onset: i64) -> Truth {
        Truth { key_id: key.to_owned(), account_id: account.to_owned(), segment, family, onset_ms: Some(onset) }
    }
    pub fn shared_key(&self) -> bool {
        self.onset_ms.is_some()
    }
}

pub struct Output {
    /// NDJSON lines, in event-time order (registry records first).
    pub events: Vec<String>,
    /// Every key, with its truth.
    pub keys: Vec<Truth>,
}

impl Output {
    pub fn shared(&self) -> impl Iterator<Item = &Truth> {
        self.keys.iter().filter(|t| t.shared_key())
    }
}

/// Every family the simulator draws, honest ones first.
pub fn families() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = honest::FAMILIES.iter().map(|(f, _)| *f).collect();
    all.extend(["shared_nat", "family_pc", "broker_desk"]);
    all.extend(sharing::FAMILIES.iter().copied());
    all.extend(["affiliate_ring", "unregistered_vendor"]);
    all
}

/// Families drawn only for a leave-family-out test of the detection engine (never tuned on),
/// honest ones first; the sharing ones (and the copy-trading leader's own key) only when keys are
/// shared at all.
pub fn held_out_families() -> Vec<&'static str> {
    heldout::HONEST.iter().chain(heldout::SHARING).copied().collect()
}

/// The registry records of the run, and what families share: the approved vendor, the public
/// hotspots.
pub(crate) struct Registry {
    lines: Vec<String>,
    vendor_id: String,
    vendor_egress: gen::Access,
    hotspots: Vec<IpAddr>,
}

impl Registry {
    fn account(&mut self, account: &str, segment: &str, declared: &[&str]) {
        let declared: Vec<String> = declared.iter().map(|c| format!("\"{c}\"")).collect();
        self.lines.push(format!(
            r#"{{"type":"account","account_id":"{account}","segment":"{segment}","declared_countries":[{}],"declared_purpose":"trading"}}"#,
            declared.join(",")
        ));
    }

    fn key(&mut self, key: &str, account: &str, allow: &[String], vendor: Option<&str>) {
        let allow: Vec<String> = allow.iter().map(|c| format!("\"{c}\"")).collect();
        let vendor = vendor.map_or("null".to_owned(), |v| format!("\"{v}\""));
        self.lines.push(format!(
            r#"{{"type":"key","key_id":"{key}","account_id":"{account}","scopes":["read","trade"],"ip_allowlist":[{}],"vendor_id":{vendor}}}"#,
            allow.join(",")
        ));
    }

    fn relationship(&mut self, from: &str, to: &str, kind: &str) {
        self.lines.push(format!(r#"{{"type":"relationship","from":"{from}","to":"{to}","kind":"{kind}"}}"#));
    }

    /// A market maker's mandate for its own account, in `symbols`.
    fn mandate(&mut self, account: &str, symbols: &[&str]) {
        let symbols: Vec<String> = symbols.iter().map(|s| format!("\"{s}\"")).collect();
        self.lines.push(format!(
            r#"{{"type":"relationship","from":"{account}","to":"{account}","kind":"mm_mandate","principal":"own","symbols":[{}]}}"#,
            symbols.join(",")
        ));
    }
}

pub fn simulate(p: &Params, book: &dyn AddressBook) -> Output {
    let start = p.start_ms;
    let mut g = gen::Gen::new(ChaCha8Rng::seed_from_u64(p.seed), book, start, start + p.hours * gen::HOUR);
    g.market_moves();
    // An approved vendor with its registered egress in one cloud range.
    let egress = gen::Access::server(&mut g, 16509);
    let egress_ip = g.session_addr(egress, 0);
    let mut reg = Registry {
        lines: Vec::new(),
        vendor_id: "vendor-approved-1".into(),
        vendor_egress: egress,
        hotspots: Vec::new(),
    };
    reg.lines.push(format!(
        r#"{{"type":"vendor","vendor_id":"vendor-approved-1","status":"approved","egress_cidrs":["{}"]}}"#,
        gen::ip24(egress_ip)
    ));
    reg.hotspots = honest::hotspots(&mut g);
    let mut keys = Vec::new();

    let rate = p.sharing_rate.clamp(0.0, 1.0);
    for i in 0..p.accounts {
        // Each account is drawn to one sharing family with probability `rate` each, else to an
        // honest family by its weight.
        let roll: f64 = g.rng.gen();
        let shared = (roll / rate.max(1e-12)) as usize;
        if rate > 0.0 && shared < sharing::FAMILIES.len() {
            keys.extend(sharing::run(&mut g, &mut reg, sharing::FAMILIES[shared], i));
        } else {
            let family = gen::pick(&mut g.rng, honest::FAMILIES);
            keys.extend(honest::run(&mut g, &mut reg, family, i));
        }
    }
    // Groups: offices and campuses behind one NAT, brokers with their clients, and rings.
    for n in 0..(p.accounts / 500).max(1) {
        keys.extend(honest::shared_nat(&mut g, &mut reg, n));
    }
    for h in 0..(p.accounts / 150).max(1) {
        keys.extend(honest::household(&mut g, &mut reg, h));
    }
    for b in 0..(p.accounts / 700).max(1) {
        keys.extend(honest::broker(&mut g, &mut reg, b));
    }
    for r in 0..(p.accounts / 2500).max(1) {
        if rate > 0.0 {
            keys.extend(sharing::ring(&mut g, &mut reg, "affiliate_ring", r));
            keys.extend(sharing::ring(&mut g, &mut reg, "unregistered_vendor", r));
        }
    }
    // Held-out families, after all the others so that those draw the same as without them.
    keys.extend(heldout::run(&mut g, &mut reg, p.accounts, rate));

    let lines = std::mem::take(&mut reg.lines);
    let activity = g.finish();
    let mut events = lines;
    events.extend(activity);
    keys.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    Output { events, keys }
}
