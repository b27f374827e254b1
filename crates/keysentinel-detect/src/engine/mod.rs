//! The streaming engine: records in event-time order in, decisions out. Deterministic: the same
//! records give the same decisions, byte for byte (no wall clock, no random state, no hash-map
//! iteration in anything that reaches the output).
//!
//! Each request is placed (where, on which network, from which site), checked against what
//! vouches for the owner (`owner`), then looked at by each family of indicators in turn —
//! `credentials`, `places`, `clients`, `familiarity`, `links`, `takeover` (and `orders` for
//! orders) — which fire with their evidence; `score` turns what fired into a stage, calibrated
//! on the population (`calibration`).

mod calibration;
mod clients;
mod credentials;
mod familiarity;
mod links;
mod mandates;
mod orders;
mod owner;
mod places;
mod purposes;
mod score;
mod snapshot;
mod state;
mod takeover;

use crate::config::Config;
use crate::decision::{Baseline, Decision};
use crate::event::{Class, Code, Millis, OrderAction, Record, RelationshipKind};
use crate::geo::{Locate, Network, Place};
use crate::indicator::{Indicator, Stage};
// ahash, randomly seeded: fast, and keys chosen by clients (IPs, device ids) cannot be picked to
// collide. No map's iteration order reaches the output.
use ahash::AHashMap as HashMap;
use state::{
    asn_key, client_family, country_key, h64, AccountState, Counts, KeyState, MostlyOne, Segment, Site, DAY, MINUTE,
};
use std::collections::VecDeque;
use std::net::IpAddr;

pub use score::Assessment;
pub use snapshot::{SnapshotError, FORMAT_VERSION};

/// What the engine knows of one client address: where it is (looked up once) and which
/// accounts it drove lately.
#[derive(serde::Serialize, serde::Deserialize)]
struct Address {
    place: Place,
    /// (The link threshold is 3 accounts, and 3 programs make an address public; most
    /// addresses are one account's.)
    accounts: MostlyOne,
}

/// Addresses remembered before the ones idle for longer than the link window are forgotten.
const ADDRESSES: usize = 1 << 20;

/// One request, placed and judged for what vouches for its owner: what every family of
/// indicators looks at.
pub(crate) struct Req<'a> {
    k: usize,
    ts: Millis,
    ip: IpAddr,
    place: Place,
    site: Site,
    ua: Option<&'a str>,
    device: Option<&'a str>,
    family: Option<u64>,
    learned: bool,
    institutional: bool,
    /// The registry sanctions the address: the key's allowlist, its approved vendor's egress.
    sanctioned: bool,
    /// The owner vouched for the site or the device: their own login, a confirmation.
    attested: bool,
}

impl Req<'_> {
    fn owner(&self) -> bool {
        self.sanctioned || self.attested
    }
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
    device_links: HashMap<String, MostlyOne>,
    /// Recent orders by (symbol, side, rounded notional): (time, account, key).
    order_links: HashMap<orders::OrderShape, VecDeque<(Millis, usize, usize)>>,
    orders_seen: u64,
    market: orders::Market,
    /// Per address range: whether its addresses stay with a household or hop.
    ranges: HashMap<u32, owner::RangeStats>,
    global_asns: Counts,
    global_countries: Counts,
    global_families: Counts,
    population: calibration::Population,
    decisions: Vec<Decision>,
    /// The latest day seen (days since the epoch).
    day: i64,
    /// Every firing, when asked for (`replay --trace`): for explaining and tuning.
    trace: Option<Vec<Firing>>,
    /// The request being looked at, for the structured evidence of what it fires.
    observing: Observing,
}

/// The request being looked at: its address, client family and device, kept in reused buffers
/// (no allocation per request; firings, which are rare, copy them out).
#[derive(Default)]
struct Observing {
    ip: Option<IpAddr>,
    client: String,
    device: String,
}

/// One firing of an indicator, as traced.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub ts: Millis,
    pub key_id: String,
    pub indicator: Indicator,
    pub episodes: u32,
    pub evidence: String,
    /// The key's risk and level once this firing was weighed.
    pub risk: f32,
    pub level: Option<Stage>,
}

impl<'g> Engine<'g> {
    pub fn new(cfg: Config, geo: &'g dyn Locate) -> Self {
        let population = calibration::Population::new(cfg.calibration_days);
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
            orders_seen: 0,
            market: orders::Market::default(),
            ranges: HashMap::default(),
            global_asns: Counts::default(),
            global_countries: Counts::default(),
            global_families: Counts::default(),
            population,
            decisions: Vec::new(),
            day: i64::MIN,
            trace: None,
            observing: Observing::default(),
        }
    }

    /// Keeps every firing from now on, for [`Engine::take_trace`].
    pub fn trace(&mut self) {
        self.trace.get_or_insert_with(Vec::new);
    }

    /// Firings traced since the last call.
    pub fn take_trace(&mut self) -> Vec<Firing> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Keys the engine holds state for.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Decisions made since the last call, in order.
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.decisions)
    }

    /// The indicators that fired on a key and are still active at `ts`, with their episodes
    /// (for explanation and tests; decisions carry them when a level rises).
    pub fn indicators(&self, key_id: &str, ts: Millis) -> Vec<(Indicator, u32)> {
        let ttl = self.cfg.indicator_ttl_minutes * MINUTE;
        let Some(&k) = self.key_index.get(key_id) else { return Vec::new() };
        self.keys[k]
            .fired
            .iter()
            .filter(|f| f.count > 0 && ts - f.last <= ttl)
            .map(|f| (f.indicator, f.episodes))
            .collect()
    }

    /// Orders placed through a key over the last 30 days up to `ts` (count, notional), if the
    /// engine knows the key: a vendor's or a mandate's exposure.
    pub fn traded(&self, key_id: &str, ts: Millis) -> Option<(u64, f64)> {
        self.key_index.get(key_id).map(|&k| self.keys[k].traded.as_ref().map_or((0, 0.0), |t| t.within(ts)))
    }

    /// What the evidence on a key adds up to at `ts`, if the engine knows the key.
    pub fn assessment(&self, key_id: &str, ts: Millis) -> Option<Assessment> {
        self.key_index.get(key_id).map(|&k| self.assess(k, ts))
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

    /// Forgets the documented relationship between two accounts (the registry says it no longer
    /// holds) and rebuilds the related groups from the relationships left, the larger root
    /// pointing at the smaller as unions do.
    fn end_relationship(&mut self, from: &str, to: &str) {
        let (Some(&a), Some(&b)) = (self.account_index.get(from), self.account_index.get(to)) else { return };
        if a == b {
            return;
        }
        self.accounts[a].partners.retain(|(p, _)| *p != b);
        self.accounts[b].partners.retain(|(p, _)| *p != a);
        self.parent = (0..self.accounts.len()).collect();
        for x in 0..self.accounts.len() {
            for i in 0..self.accounts[x].partners.len() {
                let y = self.accounts[x].partners[i].0;
                let (rx, ry) = (self.root(x), self.root(y));
                if rx != ry {
                    self.parent[rx.max(ry)] = rx.min(ry);
                }
            }
        }
    }

    fn root(&mut self, mut a: usize) -> usize {
        while self.parent[a] != a {
            self.parent[a] = self.parent[self.parent[a]];
            a = self.parent[a];
        }
        a
    }

    fn segment(&self, k: usize) -> Segment {
        let a = &self.accounts[self.keys[k].account_ix];
        if a.id == "unknown" {
            Segment::Unknown
        } else {
            a.segment
        }
    }

    pub fn ingest(&mut self, rec: &Record<'_>) {
        if let Some(ts) = rec.ts() {
            self.new_day(ts);
        }
        match rec {
            Record::Account { account_id, segment, declared_countries, .. } => {
                let a = self.account(account_id);
                self.accounts[a].segment = *segment;
                self.accounts[a].declared = declared_countries.clone();
            }
            Record::Key { key_id, account_id, ip_allowlist, vendor_id, purpose, .. } => {
                let k = self.key(key_id, Some(account_id));
                self.keys[k].allowlist = ip_allowlist.clone();
                self.keys[k].vendor = vendor_id.as_ref().map(|v| v.to_string());
                self.keys[k].declared = purposes::Declared::of(purpose.as_deref());
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
            // A relationship that no longer holds (ended, expired) stops relating its accounts.
            Record::Relationship { from, to, kind, in_effect: false, counterparty_id, .. } => {
                if *kind == RelationshipKind::MmMandate {
                    let a = self.account(from);
                    self.mandate_ended(a, mandates::mandate_id(counterparty_id.as_deref(), from, to));
                }
                self.end_relationship(from, to)
            }
            // Every kind of documented relationship (affiliate, broker-client, market-making
            // mandate, vendor delegation, sub-account) makes the accounts related for the link
            // graph.
            Record::Relationship { from, to, kind, counterparty_id, mandate, .. } => {
                let (a, b) = (self.account(from), self.account(to));
                if let (RelationshipKind::MmMandate, Some(terms)) = (kind, mandate.as_deref()) {
                    let symbols: Vec<&str> = terms.symbols.iter().map(|s| s.as_ref()).collect();
                    self.mandate_in_effect(a, mandates::mandate_id(counterparty_id.as_deref(), from, to), &symbols);
                }
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
                self.observe(Some(*ip), user_agent.as_deref(), device_id.as_deref());
                self.request(k, *ts, *ip, user_agent.as_deref(), device_id.as_deref(), *outcome);
                self.observing.ip = None;
            }
            Record::Login { ts, account_id, ip, device_id, .. } => {
                self.login(account_id, *ts, *ip, device_id.as_deref());
            }
            Record::Order { ts, key_id, symbol, side, action, notional } => {
                let k = self.key(key_id, None);
                if *action == OrderAction::Place {
                    self.order(k, *ts, symbol, *side == crate::event::Side::Buy, *notional);
                    self.order_beyond_purpose(k, *ts, symbol);
                }
            }
            Record::Withdrawal { ts, key_id, account_id, address, .. } => {
                self.withdrawal(*ts, key_id.as_deref(), account_id.as_deref(), address);
            }
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
                        self.fire(k, *ts, Indicator::Complaint, None, evidence.clone());
                    }
                }
            }
            Record::VendorIntel { ts, key_id, vendor_id, text } => {
                let evidence = format!("vendor intelligence: {}", text.chars().take(120).collect::<String>());
                if let Some(key_id) = key_id {
                    let k = self.key(key_id, None);
                    self.fire(k, *ts, Indicator::VendorIntel, None, evidence.clone());
                }
                if let Some(v) = vendor_id {
                    let ks: Vec<usize> =
                        (0..self.keys.len()).filter(|&k| self.keys[k].vendor.as_deref() == Some(v)).collect();
                    for k in ks {
                        self.fire(k, *ts, Indicator::VendorIntel, None, evidence.clone());
                    }
                }
            }
            Record::Confirmation { ts, account_id, key_id, by, ips, asns, countries, clients, devices, .. } => {
                let clients: Vec<&str> = clients.iter().map(|c| c.as_ref()).collect();
                let devices: Vec<&str> = devices.iter().map(|c| c.as_ref()).collect();
                self.confirmation(*ts, account_id, key_id.as_deref(), *by, ips, asns, countries, &clients, &devices);
            }
        }
    }

    fn observe(&mut self, ip: Option<IpAddr>, ua: Option<&str>, device: Option<&str>) {
        let o = &mut self.observing;
        o.ip = ip;
        o.client.clear();
        o.client.push_str(ua.map_or("", state::client_family));
        o.device.clear();
        o.device.push_str(device.unwrap_or(""));
    }

    /// The request being looked at, as evidence.
    pub(super) fn observed(&mut self, ts: Millis) -> Option<crate::decision::Observed> {
        let ip = self.observing.ip?;
        let place = self.place(ip, ts);
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Some(crate::decision::Observed {
            ip,
            asn: place.asn,
            country: place.country,
            client: text(&self.observing.client),
            device: text(&self.observing.device),
        })
    }

    fn request(&mut self, k: usize, ts: Millis, ip: IpAddr, ua: Option<&str>, device: Option<&str>, outcome: Code) {
        let segment = self.segment(k);
        self.today(k, ts);
        let class = outcome.class();
        match class {
            Some(Class::BadSignature) => return self.bad_signature(k, ts, ip),
            Some(Class::Valid | Class::IpNotAllowed) => {}
            Some(Class::Restricted) if outcome == Code::ScopeDenied => return self.beyond_scope(k, ts, ip),
            Some(Class::Stale | Class::Restricted | Class::Inactive | Class::Other) | None => return,
        }
        let place = self.place(ip, ts);
        self.learn_range(k, ts, &place, ip);
        let site = self.site_of(&place, ip);
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
        let family = ua.map(|u| h64(client_family(u).as_bytes()));
        let site = st.one_household(site, place.asn, family, ts);
        st.note_line(site, ts, family, place.asn);
        let r = Req {
            k,
            ts,
            ip,
            place,
            site,
            ua,
            device,
            family,
            learned: self.keys[k].learned(&self.cfg, ts),
            institutional: segment.institutional(),
            sanctioned: self.sanctioned(k, ip),
            attested: self.attested(k, site, device, ts),
        };
        if class == Some(Class::IpNotAllowed) {
            return self.outside_allowlist(&r);
        }
        self.dormancy(&r);
        self.places(&r);
        self.clients(&r);
        self.familiarity(&r);
        self.links(&r);
        self.run_by_a_vendor(&r);
        self.takeover(&r);
        self.learn(&r);
    }

    /// The first record of a new day puts every key's past day into the population's
    /// statistics at once, so the new day is judged against all of them.
    fn new_day(&mut self, ts: Millis) {
        let day = ts.div_euclid(DAY);
        if day <= self.day {
            return;
        }
        self.day = day;
        for k in 0..self.keys.len() {
            if self.keys[k].today.day < day {
                self.today(k, ts);
            }
        }
    }

    fn dormancy(&mut self, r: &Req<'_>) {
        if let Some(last) = self.keys[r.k].last {
            if r.ts - last > self.cfg.dormant_days * DAY {
                let days = (r.ts - last) / DAY;
                let evidence = format!("first use in {days} days, from {} ({})", r.ip, r.place.country_str());
                self.fire(r.k, r.ts, Indicator::Dormant, None, evidence);
            }
        }
    }

    /// The key's history (and the population's) takes the request in.
    fn learn(&mut self, r: &Req<'_>) {
        // The key's own history is the owner's own use: what its approved vendor or allowlisted
        // servers do is sanctioned already, and an owner looking in by hand beside them is
        // judged against the owner's habits, not against the vendor's.
        let own = !r.sanctioned && !self.suspect_site(r);
        let st = &mut self.keys[r.k];
        st.requests = st.requests.saturating_add(1);
        st.first.get_or_insert(r.ts);
        st.last = Some(r.ts);
        if let Some(asn) = r.place.asn {
            if own {
                st.asns.add(asn_key(asn));
            }
            self.global_asns.add(asn_key(asn));
        }
        if let Some(c) = r.place.country {
            if own {
                st.countries.add(country_key(c));
            }
            self.global_countries.add(country_key(c));
        }
        if let Some(f) = r.family {
            if own {
                st.families.add(f);
            }
            self.global_families.add(f);
        }
    }

    /// Whether the key stands warned on what came from `r`'s hosting or VPN network, and nothing
    /// of the owner's speaks for it: a baseline must not learn the very actor it suspects, or
    /// an intruder's server that merely keeps coming back becomes the owner's habit and the
    /// suspicion fades. Households' and offices' lines are still learned: an owner's new place
    /// is far more common there, and it is theirs until shown otherwise.
    fn suspect_site(&self, r: &Req<'_>) -> bool {
        if r.owner() || !matches!(r.place.network, Network::Hosting | Network::Vpn) {
            return false;
        }
        let st = &self.keys[r.k];
        let ttl = self.cfg.indicator_ttl_minutes * MINUTE;
        st.level >= Some(Stage::Warn)
            && st.fired.iter().any(|f| f.count > 0 && r.ts - f.last <= ttl && f.sites.contains(&r.site))
    }

    /// Where `ip` is, from the geo data the first time it is seen.
    fn place(&mut self, ip: IpAddr, ts: Millis) -> Place {
        let host = state::host_of(ip);
        if let Some(a) = self.addresses.get(&host) {
            return a.place;
        }
        if self.addresses.len() >= ADDRESSES {
            let window = self.cfg.link_window_minutes * MINUTE;
            self.addresses.retain(|_, a| a.accounts.newest().is_some_and(|t| ts - t <= window));
        }
        let place = self.geo.locate(ip);
        self.addresses.insert(host, Address { place, accounts: MostlyOne::default() });
        place
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
        self.keys[k].fired.iter().any(|f| f.indicator == ind && f.count > 0 && ts - f.last <= ttl)
    }
}

/// The level of a key, for tests of the stages.
impl Engine<'_> {
    pub fn level(&self, key_id: &str) -> Option<Stage> {
        self.key_index.get(key_id).and_then(|&k| self.keys[k].level)
    }
}
