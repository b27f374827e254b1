//! The streaming engine: records in event-time order in, decisions out. Deterministic: the same
//! records give the same decisions, byte for byte (no wall clock, no random state, no hash-map
//! iteration in anything that reaches the output).

use crate::config::Config;
use crate::event::{Millis, OrderAction, Outcome, Record, RelationshipKind};
use crate::geo::{distance_km, Locate, Network, Place};
use crate::indicator::{combine, repeated, Indicator, Level};
// ahash, randomly seeded: fast, and keys chosen by clients (IPs, device ids) cannot be picked to
// collide. No map's iteration order reaches the output.
use ahash::AHashMap as HashMap;
use std::collections::VecDeque;
use std::net::IpAddr;

const MINUTE: Millis = 60_000;
const HOUR: Millis = 60 * MINUTE;
const DAY: Millis = 24 * HOUR;
/// Distinct values remembered per feature per key (the least seen are forgotten first).
const HISTORY: usize = 32;

/// One reason for a decision: an indicator and what it saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub indicator: Indicator,
    pub count: u32,
    pub evidence: String,
}

/// A key reached a (higher) level.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub ts: Millis,
    pub key_id: String,
    pub account_id: String,
    pub risk: f32,
    pub level: Level,
    pub reasons: Vec<Reason>,
    /// Accounts linked to this key's: through an address or device it shared lately, a
    /// documented relationship, or orders that coincided with its own.
    pub related: Vec<Related>,
    /// The key's own history when the decision was made: what the evidence departs from.
    pub baseline: Baseline,
}

/// A key's baseline: its requests, since when, its most used networks and countries with their
/// share of its requests, and how many client families it has used.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Baseline {
    pub requests: u32,
    pub since_ms: Option<Millis>,
    pub networks: Vec<(u32, f32)>,
    pub countries: Vec<(String, f32)>,
    pub clients: usize,
}

/// An account related to a decision's key, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    pub account_id: String,
    pub via: String,
}

impl Decision {
    /// The decision as one NDJSON line (fixed field order, risk to three decimals).
    pub fn to_json(&self) -> String {
        let reasons: Vec<serde_json::Value> = self
            .reasons
            .iter()
            .map(|r| serde_json::json!({ "indicator": r.indicator.as_str(), "count": r.count, "evidence": r.evidence }))
            .collect();
        let risk = (f64::from(self.risk) * 1000.0).round() / 1000.0;
        let related = if self.related.is_empty() {
            String::new()
        } else {
            let list: Vec<serde_json::Value> =
                self.related.iter().map(|r| serde_json::json!({ "account_id": r.account_id, "via": r.via })).collect();
            format!(",\"related_accounts\":{}", serde_json::Value::from(list))
        };
        let b = &self.baseline;
        let share = |x: f32| (f64::from(x) * 1000.0).round() / 1000.0;
        let baseline = serde_json::json!({
            "requests": b.requests,
            "since": b.since_ms.map(crate::event::format_rfc3339_ms),
            "networks": b.networks.iter().map(|(asn, x)| serde_json::json!({ "asn": format!("AS{asn}"), "share": share(*x) })).collect::<Vec<_>>(),
            "countries": b.countries.iter().map(|(c, x)| serde_json::json!({ "country": c, "share": share(*x) })).collect::<Vec<_>>(),
            "clients": b.clients,
        });
        format!(
            "{{\"ts\":{},\"key_id\":{},\"account_id\":{},\"risk\":{},\"level\":\"{}\",\"reasons\":{}{related},\"baseline\":{baseline}}}",
            serde_json::Value::from(crate::event::format_rfc3339_ms(self.ts)),
            serde_json::Value::from(self.key_id.as_str()),
            serde_json::Value::from(self.account_id.as_str()),
            risk,
            self.level.as_str(),
            serde_json::Value::from(reasons),
        )
    }
}

/// Counts of a feature's values, keyed by a stable 64-bit hash.
#[derive(Default)]
struct Counts {
    items: Vec<(u64, u32)>,
    total: u32,
}

impl Counts {
    fn get(&self, h: u64) -> u32 {
        self.items.iter().find(|(k, _)| *k == h).map_or(0, |(_, c)| *c)
    }
    fn add(&mut self, h: u64) {
        self.total = self.total.saturating_add(1);
        if let Some(e) = self.items.iter_mut().find(|(k, _)| *k == h) {
            e.1 += 1;
            return;
        }
        if self.items.len() == HISTORY {
            // Forget the least seen (the first of them, for determinism).
            if let Some(i) = self.items.iter().enumerate().min_by_key(|(_, (_, c))| *c).map(|(i, _)| i) {
                self.items.swap_remove(i);
            }
        }
        self.items.push((h, 1));
    }
}

/// Distinct values seen within a sliding window, each with when it was last seen. At most 16
/// are kept (the oldest is replaced), which is more than any threshold needs: the count stays
/// exact up to 16, and the work and memory per key or address are bounded.
#[derive(Default)]
struct Recent {
    items: arrayvec::ArrayVec<(u64, Millis), 16>,
}

impl Recent {
    /// Records `value` at `ts`; returns how many distinct values fall within `window`.
    fn see(&mut self, value: u64, ts: Millis, window: Millis) -> usize {
        self.items.retain(|(_, t)| ts - *t <= window);
        if let Some(e) = self.items.iter_mut().find(|(v, _)| *v == value) {
            e.1 = ts;
        } else if let Err(full) = self.items.try_push((value, ts)) {
            if let Some(oldest) = self.items.iter_mut().min_by_key(|(_, t)| *t) {
                *oldest = full.element();
            }
        }
        self.items.len()
    }

    /// When `value` was last seen, if it still is remembered.
    fn last_seen(&self, value: u64) -> Option<Millis> {
        self.items.iter().find(|(v, _)| *v == value).map(|(_, t)| *t)
    }

    fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().map(|(v, _)| *v)
    }

    fn newest(&self) -> Option<Millis> {
        self.items.iter().map(|(_, t)| *t).max()
    }
}

/// What the engine knows of one client address: where it is (looked up once) and which
/// accounts it drove lately.
struct Address {
    place: Place,
    accounts: Recent,
}

/// Addresses remembered before the ones idle for longer than the link window are forgotten.
const ADDRESSES: usize = 1 << 20;

fn line_key(line: IpAddr) -> u64 {
    match line {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64,
    }
}

/// Networks and countries are counted by their own value (not a hash), so a decision can show
/// the key's baseline in their names.
fn asn_key(asn: u32) -> u64 {
    u64::from(asn)
}

fn country_key(c: [u8; 2]) -> u64 {
    u64::from(u16::from_be_bytes(c))
}

/// FNV-1a: stable across runs and platforms, which keeps replays identical.
fn h64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The client family of a user agent: its first product token without the version
/// (`ccxt/4.5.90 (+https://…)` → `ccxt`), so that upgrades are not churn.
fn client_family(ua: &str) -> &str {
    let first = ua.split([' ', '(']).next().unwrap_or("");
    first.split('/').next().unwrap_or(first)
}

#[derive(Clone, Copy)]
struct Seen {
    ts: Millis,
    place: Place,
    /// The line: the address's /24 (IPv4) or /48 (IPv6), what one household or office keeps
    /// for hours, while two households on the same carrier differ.
    line: IpAddr,
}

fn line_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
    }
}

#[derive(Default)]
struct Fired {
    count: u32,
    last: Millis,
    evidence: String,
}

struct KeyState {
    key_id: String,
    account: String,
    /// Index of the account in `Engine::accounts`.
    account_ix: usize,
    allowlist: Vec<ipnet::IpNet>,
    vendor: Option<String>,
    first: Option<Millis>,
    last: Option<Millis>,
    requests: u32,
    asns: Counts,
    countries: Counts,
    families: Counts,
    /// Valid requests with a location, newest last, within the concurrency window.
    places: VecDeque<Seen>,
    recent_asns: Recent,
    recent_clients: Recent,
    /// Runs of client families within the concurrency window, oldest first.
    recent_families: arrayvec::ArrayVec<(Millis, u64), 16>,
    bad_signatures: VecDeque<Millis>,
    orders: VecDeque<Millis>,
    /// Orders per hour over the learning period.
    order_baseline: Option<f32>,
    fired: Vec<(Indicator, Fired)>,
    level: Option<Level>,
    /// Accounts (link-graph roots) whose orders coincided with this key's, when last; only for
    /// the few keys that ever coincide.
    co_ordered: Option<Box<Recent>>,
    /// The last few addresses and the last device the key was used from, to find the accounts
    /// that shared them when a decision is made.
    recent_ips: arrayvec::ArrayVec<IpAddr, 4>,
    device: Option<Box<str>>,
}

impl KeyState {
    fn new(key_id: &str, account: &str, account_ix: usize) -> Self {
        Self {
            key_id: key_id.to_owned(),
            account: account.to_owned(),
            account_ix,
            allowlist: Vec::new(),
            vendor: None,
            first: None,
            last: None,
            requests: 0,
            asns: Counts::default(),
            countries: Counts::default(),
            families: Counts::default(),
            places: VecDeque::new(),
            recent_asns: Recent::default(),
            recent_clients: Recent::default(),
            recent_families: arrayvec::ArrayVec::new(),
            bad_signatures: VecDeque::new(),
            orders: VecDeque::new(),
            order_baseline: None,
            fired: Vec::new(),
            level: None,
            co_ordered: None,
            recent_ips: arrayvec::ArrayVec::new(),
            device: None,
        }
    }

    fn learned(&self, cfg: &Config, now: Millis) -> bool {
        self.requests >= cfg.learning_requests && self.first.is_some_and(|f| now - f >= cfg.learning_minutes * MINUTE)
    }

    /// Whether `asn` is one of this key's own networks: a sizeable share (≥ 5 %) of a history
    /// long enough to say so.
    fn established(&self, asn: u32) -> bool {
        let n = self.asns.get(asn_key(asn));
        n >= 5 && n.saturating_mul(20) >= self.requests
    }

    fn allowlisted(&self, ip: IpAddr) -> bool {
        self.allowlist.iter().any(|n| n.contains(&ip))
    }
}

#[derive(Default)]
struct AccountState {
    id: String,
    /// Judged against a mandate rather than like retail (market makers, brokers, institutions).
    institutional: bool,
    declared: Vec<[u8; 2]>,
    keys: Vec<usize>,
    /// Documented relationships: the other account and the kind.
    partners: Vec<(usize, RelationshipKind)>,
}

pub struct Engine<'g> {
    cfg: Config,
    geo: &'g dyn Locate,
    keys: Vec<KeyState>,
    key_index: HashMap<String, usize>,
    accounts: Vec<AccountState>,
    account_index: HashMap<String, usize>,
    /// Union-find over accounts joined by documented relationships.
    parent: Vec<usize>,
    vendors: HashMap<String, (bool, Vec<ipnet::IpNet>)>,
    approved_egress: Vec<ipnet::IpNet>,
    /// One lookup per request finds both the place and the link window of an address.
    addresses: HashMap<IpAddr, Address>,
    device_links: HashMap<String, Recent>,
    /// Recent orders by (symbol, side, rounded notional): (time, account, key).
    order_links: HashMap<OrderShape, VecDeque<(Millis, usize, usize)>>,
    global_asns: Counts,
    global_countries: Counts,
    global_families: Counts,
    decisions: Vec<Decision>,
}

impl<'g> Engine<'g> {
    pub fn new(cfg: Config, geo: &'g dyn Locate) -> Self {
        Self {
            cfg,
            geo,
            keys: Vec::new(),
            key_index: HashMap::default(),
            accounts: Vec::new(),
            account_index: HashMap::default(),
            parent: Vec::new(),
            vendors: HashMap::default(),
            approved_egress: Vec::new(),
            addresses: HashMap::default(),
            device_links: HashMap::default(),
            order_links: HashMap::default(),
            global_asns: Counts::default(),
            global_countries: Counts::default(),
            global_families: Counts::default(),
            decisions: Vec::new(),
        }
    }

    /// Keys the engine holds state for.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Decisions made since the last call, in order.
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.decisions)
    }

    fn account(&mut self, id: &str) -> usize {
        if let Some(&i) = self.account_index.get(id) {
            return i;
        }
        let i = self.accounts.len();
        self.accounts.push(AccountState { id: id.to_owned(), ..AccountState::default() });
        self.parent.push(i);
        self.account_index.insert(id.to_owned(), i);
        i
    }

    fn key(&mut self, key_id: &str, account_id: Option<&str>) -> usize {
        if let Some(&i) = self.key_index.get(key_id) {
            return i;
        }
        let account_id = account_id.unwrap_or("unknown");
        let a = self.account(account_id);
        let i = self.keys.len();
        self.keys.push(KeyState::new(key_id, account_id, a));
        self.accounts[a].keys.push(i);
        self.key_index.insert(key_id.to_owned(), i);
        i
    }

    fn root(&mut self, mut a: usize) -> usize {
        while self.parent[a] != a {
            self.parent[a] = self.parent[self.parent[a]];
            a = self.parent[a];
        }
        a
    }

    fn institutional(&self, k: usize) -> bool {
        self.accounts[self.keys[k].account_ix].institutional
    }

    fn in_vendor_egress(&self, k: usize, ip: IpAddr) -> bool {
        if let Some(v) = &self.keys[k].vendor {
            if let Some((true, nets)) = self.vendors.get(v) {
                return nets.iter().any(|n| n.contains(&ip));
            }
        }
        false
    }

    pub fn ingest(&mut self, rec: &Record<'_>) {
        match rec {
            Record::Account { account_id, segment, declared_countries, .. } => {
                let a = self.account(account_id);
                self.accounts[a].institutional =
                    matches!(segment.as_ref(), "market_maker" | "broker" | "institution" | "corporate");
                self.accounts[a].declared = declared_countries
                    .iter()
                    .filter_map(|c| {
                        let b = c.as_bytes();
                        (b.len() == 2).then(|| [b[0].to_ascii_uppercase(), b[1].to_ascii_uppercase()])
                    })
                    .collect();
            }
            Record::Key { key_id, account_id, ip_allowlist, vendor_id, .. } => {
                let k = self.key(key_id, Some(account_id));
                self.keys[k].allowlist = ip_allowlist.clone();
                self.keys[k].vendor = vendor_id.as_ref().map(|v| v.to_string());
            }
            Record::Vendor { vendor_id, approved, egress_cidrs } => {
                self.vendors.insert(vendor_id.to_string(), (*approved, egress_cidrs.clone()));
                self.approved_egress = self
                    .vendors
                    .values()
                    .filter(|(ok, _)| *ok)
                    .flat_map(|(_, n)| n.iter().copied())
                    .collect::<Vec<_>>();
                self.approved_egress.sort();
            }
            // Every kind of documented relationship (affiliate, broker-client, market-making
            // mandate, vendor delegation) makes the accounts related for the link graph.
            Record::Relationship { from, to, kind } => {
                let (a, b) = (self.account(from), self.account(to));
                if a != b && !self.accounts[a].partners.iter().any(|(p, _)| *p == b) {
                    self.accounts[a].partners.push((b, *kind));
                    self.accounts[b].partners.push((a, *kind));
                }
                let (ra, rb) = (self.root(a), self.root(b));
                if ra != rb {
                    self.parent[ra.max(rb)] = ra.min(rb);
                }
            }
            Record::Request { ts, key_id, ip, user_agent, device_id, outcome, .. } => {
                let k = self.key(key_id, None);
                self.request(k, *ts, *ip, user_agent.as_deref(), device_id.as_deref(), *outcome);
            }
            Record::Login { ts, account_id, ip, .. } => {
                // A login shows where the owner is: it counts into the history of the
                // account's keys, so their automation from home is familiar.
                let a = self.account(account_id);
                let place = self.place(*ip, *ts);
                for k in self.accounts[a].keys.clone() {
                    let st = &mut self.keys[k];
                    if let Some(asn) = place.asn {
                        st.asns.add(asn_key(asn));
                    }
                    if let Some(c) = place.country {
                        st.countries.add(country_key(c));
                    }
                }
            }
            Record::Order { ts, key_id, symbol, side, action, notional } => {
                let k = self.key(key_id, None);
                if *action == OrderAction::Place {
                    self.order(k, *ts, symbol, *side == crate::event::Side::Buy, *notional);
                }
            }
            Record::Withdrawal { .. } => {}
            Record::Complaint { ts, account_id, text } => {
                let a = self.account(account_id);
                let lower = text.to_lowercase();
                let sharing =
                    ["shar", "lend", "lent", "sold", "resell", "someone else", "공유", "대여", "판매", "타인"]
                        .iter()
                        .any(|w| lower.contains(w));
                if sharing {
                    let evidence = format!("complaint: {}", text.chars().take(120).collect::<String>());
                    for k in self.accounts[a].keys.clone() {
                        self.fire(k, *ts, Indicator::Complaint, evidence.clone());
                    }
                }
            }
            Record::VendorIntel { ts, key_id, vendor_id, text } => {
                let evidence = format!("vendor intelligence: {}", text.chars().take(120).collect::<String>());
                if let Some(key_id) = key_id {
                    let k = self.key(key_id, None);
                    self.fire(k, *ts, Indicator::VendorIntel, evidence.clone());
                }
                if let Some(v) = vendor_id {
                    let ks: Vec<usize> =
                        (0..self.keys.len()).filter(|&k| self.keys[k].vendor.as_deref() == Some(v)).collect();
                    for k in ks {
                        self.fire(k, *ts, Indicator::VendorIntel, evidence.clone());
                    }
                }
            }
        }
    }

    fn request(&mut self, k: usize, ts: Millis, ip: IpAddr, ua: Option<&str>, device: Option<&str>, outcome: Outcome) {
        let cfg = self.cfg.clone();
        match outcome {
            Outcome::BadSignature => {
                let w = &mut self.keys[k].bad_signatures;
                w.push_back(ts);
                while w.front().is_some_and(|t| ts - t > 5 * MINUTE) {
                    w.pop_front();
                }
                if w.len() >= cfg.bad_signature_burst {
                    let n = w.len();
                    let place = self.place(ip, ts);
                    self.fire(
                        k,
                        ts,
                        Indicator::BadSignatureBurst,
                        format!(
                            "{n} bad signatures in 5 min, latest from {ip} ({} {})",
                            place.country_str(),
                            asn_text(&place)
                        ),
                    );
                }
                return;
            }
            Outcome::Valid | Outcome::IpNotAllowed => {}
            _ => return,
        }
        let place = self.place(ip, ts);
        // Where and on what the key was used, first: a decision made below names the accounts
        // that shared them.
        let st = &mut self.keys[k];
        if st.recent_ips.last() != Some(&ip) {
            st.recent_ips.retain(|a| *a != ip);
            if st.recent_ips.is_full() {
                st.recent_ips.remove(0);
            }
            st.recent_ips.push(ip);
        }
        if let Some(d) = device {
            if st.device.as_deref() != Some(d) {
                st.device = Some(d.into());
            }
        }
        if outcome == Outcome::IpNotAllowed {
            self.fire(
                k,
                ts,
                Indicator::OutsideAllowlist,
                format!(
                    "correctly signed from {ip} ({} {}), outside the key's allowlist",
                    place.country_str(),
                    asn_text(&place)
                ),
            );
            return;
        }
        let learned = self.keys[k].learned(&cfg, ts);
        let institutional = self.institutional(k);
        let trusted_site = self.keys[k].allowlisted(ip) || self.in_vendor_egress(k, ip);

        // Dormancy.
        if let Some(last) = self.keys[k].last {
            if ts - last > cfg.dormant_days * DAY {
                let days = (ts - last) / DAY;
                self.fire(
                    k,
                    ts,
                    Indicator::Dormant,
                    format!("first use in {days} days, from {ip} ({})", place.country_str()),
                );
            }
        }

        // Where the user physically is: only access and mobile networks say so. A VPN's exit or
        // a cloud server is somewhere else by design, so honest VPN users and bots do not
        // "teleport"; those networks have their own indicator.
        let physical = matches!(place.network, Network::Access | Network::Mobile) && place.plausible;
        if let (Some(here), true) = (place.lat_lon, physical) {
            // Impossible travel from the previous located request.
            if let Some(prev) = self.keys[k].places.back().copied() {
                if let Some(there) = prev.place.lat_lon {
                    let apart = km(here, there) - place.accuracy_km - prev.place.accuracy_km;
                    let hours = ((ts - prev.ts).max(1) as f32) / HOUR as f32;
                    if apart > cfg.travel_min_km
                        && apart / hours > cfg.travel_max_kmh
                        && !(institutional && trusted_site)
                    {
                        self.fire(
                            k,
                            ts,
                            Indicator::ImpossibleTravel,
                            format!(
                                "{} → {}: {:.0} km in {:.0} min ({:.0} km/h)",
                                prev.place.country_str(),
                                place.country_str(),
                                apart,
                                hours * 60.0,
                                apart / hours
                            ),
                        );
                    }
                }
            }
            // Concurrent use: A, then B far away, then A again, all within the window.
            let places = &self.keys[k].places;
            let far = |s: &Seen| {
                s.place.lat_lon.is_some_and(|p| {
                    distance_km(p, here) - s.place.accuracy_km - place.accuracy_km > cfg.concurrent_min_km
                })
            };
            if let Some(b) = places.iter().rposition(far) {
                let near = |s: &Seen| {
                    s.place
                        .lat_lon
                        .is_some_and(|p| distance_km(p, here) < 100.0 + s.place.accuracy_km + place.accuracy_km)
                };
                if places.iter().take(b).any(near) && !(institutional && trusted_site) {
                    let other = places[b].place;
                    self.fire(
                        k,
                        ts,
                        Indicator::ConcurrentUse,
                        format!(
                            "used alternately from {} ({}) and {} ({}) within {} min",
                            place.country_str(),
                            asn_text(&place),
                            other.country_str(),
                            asn_text(&other),
                            cfg.concurrent_window_minutes
                        ),
                    );
                }
            }
        }
        // Alternating fixed lines: line X, then Y, then X again within the window. Two lines can
        // be one person's (home and office; a carrier whose phones and homes share one ASN, which
        // no classification by ASN tells apart), so two count only once the key has a history
        // and one of them is on a network that is not its own; three or more lines taking turns
        // are several households, on one carrier or on several.
        let line = line_of(ip);
        if place.network == Network::Access {
            let st = &self.keys[k];
            let places = &st.places;
            let fixed = |s: &&Seen| s.place.network == Network::Access;
            if let Some(b) = places.iter().rposition(|s| fixed(&s) && s.line != line) {
                let other = &places[b];
                let lines =
                    1 + distinct(places.iter().filter(fixed).filter(|s| s.line != line).map(|s| line_key(s.line)));
                let own = |a: Option<u32>| a.is_some_and(|a| st.established(a));
                let stranger = learned && !(own(other.place.asn) && own(place.asn));
                if places.iter().take(b).any(|s| s.line == line) && !trusted_site && (lines >= 3 || stranger) {
                    let evidence = format!(
                        "used alternately from fixed lines {line} ({}) and {} ({}) within {} min ({lines} lines in turn{})",
                        asn_text(&place),
                        other.line,
                        asn_text(&other.place),
                        cfg.concurrent_window_minutes,
                        if lines >= 3 { "" } else { "; one of them on a network new to this key" }
                    );
                    self.fire(k, ts, Indicator::AlternatingNetworks, evidence);
                }
            }
        }
        // Alternating clients: client family X, then Y, then X again within the window — two
        // programs from two people, not one person's upgrade.
        let family_h = ua.map(|u| h64(client_family(u).as_bytes()));
        if let Some(f) = family_h {
            let window = cfg.concurrent_window_minutes * MINUTE;
            let st = &mut self.keys[k];
            // A run of requests from one client is one entry: the order of runs is what counts.
            let runs = &mut st.recent_families;
            match runs.last_mut() {
                Some(last) if last.1 == f => last.0 = ts,
                _ => {
                    if runs.is_full() {
                        runs.remove(0);
                    }
                    runs.push((ts, f));
                }
            }
            let expired = runs.iter().take_while(|(t, _)| ts - t > window).count();
            runs.drain(..expired);
            let recent = &st.recent_families;
            let last = recent.len().saturating_sub(1);
            if let Some(b) = recent.iter().take(last).rposition(|(_, g)| *g != f) {
                if recent.iter().take(b).any(|(_, g)| *g == f) && !institutional && !trusted_site {
                    self.fire(
                        k,
                        ts,
                        Indicator::AlternatingClients,
                        format!(
                            "client {:?} alternating with another client within {} min",
                            ua.map(client_family).unwrap_or("-"),
                            cfg.concurrent_window_minutes
                        ),
                    );
                }
            }
        }
        if physical {
            let window = cfg.concurrent_window_minutes * MINUTE;
            let st = &mut self.keys[k];
            // A run of requests from one place is one entry (when it was last seen): the
            // indicators look at the order of places, and most keys stay put.
            match st.places.back_mut() {
                Some(last) if last.place == place && last.line == line => last.ts = ts,
                _ => st.places.push_back(Seen { ts, place, line }),
            }
            while st.places.front().is_some_and(|s| ts - s.ts > window) || st.places.len() > 64 {
                st.places.pop_front();
            }
        }

        // ASN rotation.
        if let Some(asn) = place.asn {
            let distinct = self.keys[k].recent_asns.see(u64::from(asn), ts, HOUR);
            if distinct >= cfg.rotation_asns_per_hour && !(institutional && trusted_site) {
                self.fire(k, ts, Indicator::IpRotation, format!("{distinct} networks (ASNs) within an hour"));
            }
        }

        // First use from a hosting or VPN network the key has not used.
        let asn_h = place.asn.map(asn_key);
        if learned
            && matches!(place.network, Network::Hosting | Network::Vpn)
            && asn_h.is_some_and(|h| self.keys[k].asns.get(h) == 0)
            && !trusted_site
        {
            if self.active(k, Indicator::BadSignatureBurst, ts) {
                self.fire(
                    k,
                    ts,
                    Indicator::ProbedThenUsed,
                    format!(
                        "valid use from a new {} network {} after a burst of bad signatures",
                        place.network.as_str(),
                        asn_text(&place)
                    ),
                );
            }
            self.fire(
                k,
                ts,
                Indicator::NewHostingNetwork,
                format!(
                    "first use from {} network {} ({}), {ip}",
                    place.network.as_str(),
                    asn_text(&place),
                    place.country_str()
                ),
            );
        }

        // Client churn.
        let client = device.map(|d| h64(d.as_bytes())).or(ua.map(|u| h64(u.as_bytes())));
        if let Some(c) = client {
            let distinct = self.keys[k].recent_clients.see(c, ts, DAY);
            if distinct >= cfg.churn_clients_per_day && !institutional {
                self.fire(
                    k,
                    ts,
                    Indicator::ClientChurn,
                    format!("{distinct} distinct clients or devices within a day"),
                );
            }
        }

        // Geography outside the declared jurisdictions.
        if let (Some(c), Some(a)) = (place.country, Some(self.keys[k].account_ix)) {
            let declared = &self.accounts[a].declared;
            if learned && !declared.is_empty() && !declared.contains(&c) && !trusted_site {
                self.fire(
                    k,
                    ts,
                    Indicator::OutsideDeclared,
                    format!("used from {} (declared: {})", place.country_str(), declared_text(declared)),
                );
            }
        }

        // The statistical score: how much likelier this access is for someone else than for
        // this key's owner (Freeman et al., NDSS 2016), smoothed up ASN → country → global.
        if learned && !trusted_site {
            let llr = self.llr(k, &place, family_h);
            if llr > cfg.unfamiliar_llr {
                self.fire(
                    k,
                    ts,
                    Indicator::Unfamiliar,
                    format!(
                        "access from {} {} with client {:?} is {:.0}× likelier for another user than for this key's owner",
                        place.country_str(),
                        asn_text(&place),
                        ua.map(client_family).unwrap_or("-"),
                        f64::from(llr).exp().min(1e9)
                    ),
                );
            }
        }

        // Link graph: one IP or one device driving keys of unrelated accounts. Not for addresses
        // many honest users share: a mobile carrier's NAT, a commercial VPN's exit, an approved
        // vendor's egress.
        let account = self.keys[k].account_ix;
        let shared_ip = matches!(place.network, Network::Mobile | Network::Vpn)
            || self.approved_egress.iter().any(|n| n.contains(&ip));
        if !shared_ip && !trusted_site {
            let n = self.link(LinkKey::Ip(ip), ts, account);
            if n >= cfg.link_accounts {
                self.fire(
                    k,
                    ts,
                    Indicator::LinkedAccounts,
                    format!("{ip} drove keys of {n} unrelated accounts within {} min", cfg.link_window_minutes),
                );
            }
        }
        if let Some(d) = device {
            let n = self.link(LinkKey::Device(d), ts, account);
            if n >= cfg.link_accounts {
                self.fire(
                    k,
                    ts,
                    Indicator::LinkedAccounts,
                    format!("device {d:?} drove keys of {n} unrelated accounts"),
                );
            }
        }

        // Learn.
        let st = &mut self.keys[k];
        st.requests = st.requests.saturating_add(1);
        st.first.get_or_insert(ts);
        st.last = Some(ts);
        if let Some(h) = asn_h {
            st.asns.add(h);
            self.global_asns.add(h);
        }
        if let Some(c) = place.country {
            st.countries.add(country_key(c));
            self.global_countries.add(country_key(c));
        }
        if let Some(f) = family_h {
            st.families.add(f);
            self.global_families.add(f);
        }
    }

    /// Log-likelihood ratio of this access: attacker (the population at large, hosting and VPN
    /// networks weighted up) against this key's own history.
    fn llr(&self, k: usize, place: &Place, family: Option<u64>) -> f32 {
        const BETA: f32 = 2.0;
        let st = &self.keys[k];
        let n = st.requests.max(1) as f32;
        let global = |c: &Counts, h: u64| (c.get(h) as f32 + 1.0) / (c.total as f32 + 50.0);
        let mut llr = 0.0;
        if let (Some(asn), Some(country)) = (place.asn, place.country) {
            let (ah, ch) = (asn_key(asn), country_key(country));
            let p_country = (st.countries.get(ch) as f32 + BETA * global(&self.global_countries, ch)) / (n + BETA);
            let p_user = (st.asns.get(ah) as f32 + BETA * p_country) / (n + BETA);
            let boost = if matches!(place.network, Network::Hosting | Network::Vpn) { 3.0 } else { 1.0 };
            let p_attacker = (global(&self.global_asns, ah) * boost).min(1.0);
            llr += (p_attacker / p_user).ln();
        }
        if let Some(f) = family {
            let p_user = (st.families.get(f) as f32 + BETA * global(&self.global_families, f)) / (n + BETA);
            llr += (global(&self.global_families, f) / p_user).ln();
        }
        llr
    }

    /// Where `ip` is, from the geo data the first time it is seen.
    fn place(&mut self, ip: IpAddr, ts: Millis) -> Place {
        if let Some(a) = self.addresses.get(&ip) {
            return a.place;
        }
        if self.addresses.len() >= ADDRESSES {
            let window = self.cfg.link_window_minutes * MINUTE;
            self.addresses.retain(|_, a| a.accounts.newest().is_some_and(|t| ts - t <= window));
        }
        let place = self.geo.locate(ip);
        self.addresses.insert(ip, Address { place, accounts: Recent::default() });
        place
    }

    /// Records that `account` used the address or device; returns how many unrelated accounts
    /// (one per relationship group) used it within the link window.
    fn link(&mut self, key: LinkKey<'_>, ts: Millis, account: usize) -> usize {
        let window = self.cfg.link_window_minutes * MINUTE;
        let recent = match key {
            LinkKey::Ip(ip) => match self.addresses.get_mut(&ip) {
                Some(a) => &mut a.accounts,
                None => return 0,
            },
            LinkKey::Device(d) => {
                if !self.device_links.contains_key(d) {
                    self.device_links.insert(d.to_owned(), Recent::default());
                }
                match self.device_links.get_mut(d) {
                    Some(w) => w,
                    None => return 0,
                }
            }
        };
        let n = recent.see(account as u64, ts, window);
        if n < self.cfg.link_accounts {
            return n;
        }
        let accounts: arrayvec::ArrayVec<u64, 16> = recent.values().collect();
        let roots: arrayvec::ArrayVec<u64, 16> = accounts.into_iter().map(|a| self.root(a as usize) as u64).collect();
        distinct(roots.into_iter())
    }

    fn order(&mut self, k: usize, ts: Millis, symbol: &str, buy: bool, notional: f64) {
        let cfg = self.cfg.clone();
        let learned = self.keys[k].learned(&cfg, ts);
        let institutional = self.institutional(k);
        let st = &mut self.keys[k];
        st.orders.push_back(ts);
        while st.orders.front().is_some_and(|t| ts - t > HOUR) {
            st.orders.pop_front();
        }
        let rate = st.orders.len() as f32;
        match st.order_baseline {
            None if learned => st.order_baseline = Some(rate.max(1.0)),
            Some(base) if learned && rate > cfg.order_rate_multiple * base.max(6.0) && !institutional => {
                self.fire(
                    k,
                    ts,
                    Indicator::OrderAnomaly,
                    format!("{rate:.0} orders in the last hour against a baseline of {base:.0}"),
                );
            }
            _ => {}
        }
        // Coordinated orders: the same symbol, side and size (within 1%) from unrelated
        // accounts within two seconds.
        let bucket = (notional.max(1.0).ln() / 0.01).round() as u64;
        let account = self.keys[k].account_ix;
        let entry = self.order_links.entry((h64(symbol.as_bytes()), buy, bucket)).or_default();
        while entry.front().is_some_and(|(t, _, _)| ts - t > 2_000) {
            entry.pop_front();
        }
        entry.push_back((ts, account, k));
        let others: Vec<(usize, usize)> = entry.iter().map(|(_, a, k)| (*a, *k)).collect();
        let mut roots: Vec<usize> = others.iter().map(|(a, _)| self.root(*a)).collect();
        roots.sort_unstable();
        roots.dedup();
        if roots.len() >= 3 {
            // Strangers' orders coincide all the time on a busy market (round sizes, one signal
            // channel followed by thousands), so a coincidence counts only when it repeats with
            // an account this key coincided with in an earlier episode: that is a ring.
            let mut ks: Vec<(usize, usize)> = others.iter().map(|(a, k)| (*k, self.root(*a))).collect();
            ks.sort_unstable();
            ks.dedup();
            for (k, own) in ks {
                let seen = self.keys[k].co_ordered.get_or_insert_with(Default::default);
                let mut again = 0;
                for r in roots.iter().copied().filter(|r| *r != own) {
                    if seen.last_seen(r as u64).is_some_and(|t| ts - t > MINUTE && ts - t <= DAY) {
                        again += 1;
                    }
                    seen.see(r as u64, ts, DAY);
                }
                if again > 0 {
                    let evidence = format!(
                        "{symbol} {} orders of the same size from {} unrelated accounts within 2 s, {again} of them coinciding with this key before",
                        if buy { "buy" } else { "sell" },
                        roots.len()
                    );
                    self.fire(k, ts, Indicator::CoordinatedOrders, evidence);
                }
            }
        }
    }

    /// The accounts linked to key `k`'s (at most 20, by account id), for the case's evidence:
    /// those that drove keys from its recent addresses or device, its documented partners, and
    /// those whose orders coincided with its own.
    fn related(&self, k: usize) -> Vec<Related> {
        let st = &self.keys[k];
        let own = st.account_ix;
        let mut found: Vec<(usize, String)> = Vec::new();
        for ip in &st.recent_ips {
            if let Some(a) = self.addresses.get(ip) {
                found.extend(a.accounts.values().map(|x| (x as usize, format!("shared address {ip}"))));
            }
        }
        if let Some((d, links)) = st.device.as_deref().and_then(|d| Some((d, self.device_links.get(d)?))) {
            found.extend(links.values().map(|x| (x as usize, format!("shared device {d:?}"))));
        }
        found.extend(
            self.accounts[own]
                .partners
                .iter()
                .map(|(p, kind)| (*p, format!("documented relationship ({})", kind.as_str()))),
        );
        if let Some(co) = &st.co_ordered {
            found.extend(co.values().map(|x| (x as usize, "coordinated orders".to_owned())));
        }
        let mut related: Vec<Related> = Vec::new();
        for (a, via) in found {
            let Some(acct) = self.accounts.get(a).filter(|_| a != own) else { continue };
            if !related.iter().any(|r| r.account_id == acct.id) {
                related.push(Related { account_id: acct.id.clone(), via });
            }
        }
        related.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        related.truncate(20);
        related
    }

    fn baseline(&self, k: usize) -> Baseline {
        let st = &self.keys[k];
        fn top(c: &Counts) -> Vec<(u64, f32)> {
            let mut items = c.items.clone();
            items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            items.truncate(3);
            items.into_iter().map(|(v, n)| (v, n as f32 / c.total.max(1) as f32)).collect()
        }
        Baseline {
            requests: st.requests,
            since_ms: st.first,
            networks: top(&st.asns).into_iter().map(|(v, x)| (v as u32, x)).collect(),
            countries: top(&st.countries)
                .into_iter()
                .map(|(v, x)| (String::from_utf8_lossy(&(v as u16).to_be_bytes()).into_owned(), x))
                .collect(),
            clients: st.families.items.len(),
        }
    }

    fn active(&self, k: usize, ind: Indicator, ts: Millis) -> bool {
        let ttl = self.cfg.indicator_ttl_minutes * MINUTE;
        self.keys[k].fired.iter().any(|(i, f)| *i == ind && f.count > 0 && ts - f.last <= ttl)
    }

    /// Records a firing (at most one per indicator per five minutes counts as a repeat), then
    /// re-scores the key and emits a decision if its level rose.
    fn fire(&mut self, k: usize, ts: Millis, ind: Indicator, evidence: String) {
        let ttl = self.cfg.indicator_ttl_minutes * MINUTE;
        let st = &mut self.keys[k];
        match st.fired.iter_mut().find(|(i, _)| *i == ind) {
            Some((_, f)) => {
                if ts - f.last > ttl {
                    f.count = 0;
                }
                if f.count == 0 || ts - f.last >= 5 * MINUTE {
                    f.count += 1;
                    f.evidence = evidence;
                }
                f.last = ts;
            }
            None => st.fired.push((ind, Fired { count: 1, last: ts, evidence })),
        }
        let active: Vec<(Reason, f32)> = st
            .fired
            .iter()
            .filter(|(_, f)| ts - f.last <= ttl && f.count > 0)
            .map(|(i, f)| {
                let reason = Reason { indicator: *i, count: f.count, evidence: f.evidence.clone() };
                (reason, repeated(*i, f.count))
            })
            .collect();
        let risk = combine(active.iter().map(|(_, w)| *w));
        let thresholds =
            if self.institutional(k) { self.cfg.thresholds.institutional } else { self.cfg.thresholds.retail };
        let Some(level) = Level::of(risk, &thresholds) else { return };
        let st = &mut self.keys[k];
        if st.level.is_some_and(|l| l >= level) {
            return;
        }
        st.level = Some(level);
        let mut active = active;
        active.sort_by(|(a, wa), (b, wb)| wb.total_cmp(wa).then(a.indicator.cmp(&b.indicator)));
        let reasons: Vec<Reason> = active.into_iter().map(|(r, _)| r).collect();
        let (key_id, account_id) = (st.key_id.clone(), st.account.clone());
        let (related, baseline) = (self.related(k), self.baseline(k));
        self.decisions.push(Decision { ts, key_id, account_id, risk, level, reasons, related, baseline });
    }
}

/// (symbol hash, buy, size bucket): orders of one shape.
type OrderShape = (u64, bool, u64);

enum LinkKey<'a> {
    Ip(IpAddr),
    Device(&'a str),
}

/// Distinct values among `items`, counting up to 32 (enough for every threshold), without
/// allocating: this runs on every request.
fn distinct(items: impl Iterator<Item = u64>) -> usize {
    let mut seen = arrayvec::ArrayVec::<u64, 32>::new();
    for v in items {
        if !seen.contains(&v) && seen.try_push(v).is_err() {
            break;
        }
    }
    seen.len()
}

/// Distance in km, with the common case — the very same coordinates — free.
fn km(a: (f32, f32), b: (f32, f32)) -> f32 {
    if a == b {
        0.0
    } else {
        distance_km(a, b)
    }
}

fn asn_text(p: &Place) -> String {
    p.asn.map_or_else(|| "AS?".to_owned(), |a| format!("AS{a}"))
}

fn declared_text(d: &[[u8; 2]]) -> String {
    d.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(",")
}
