//! A simulated exchange population and its API traffic, in event format v1, with the ground
//! truth of which keys are shared and from when (docs/simulator.md).
//!
//! Honest behaviour it models, because that is where false alarms come from: Korean
//! residential and mobile networks and hopping between them, trips abroad (a flight between the
//! last request at home and the first abroad), VPN users, traders' bots in one cloud region,
//! market makers in several data centres within their allowlists, brokers trading for their
//! clients from one office (a documented relationship), approved bot vendors serving many
//! customers from their registered egress ranges.
//!
//! Sharing it models: a key lent or resold abroad and used alongside its owner; a key shared by
//! a group of traders; a leaked key probed and then used from cloud hosts; affiliates driving
//! unrelated accounts' keys from one place with coordinated orders; an unregistered bot vendor
//! running many customers' keys.
//!
//! Deterministic: the same seed and parameters give the same bytes.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::net::Ipv4Addr;

/// Where the simulator finds addresses of a network (AS number).
pub trait AddressBook {
    /// IPv4 ranges (first, last) of an ASN; empty when unknown.
    fn ranges(&self, asn: u32) -> Vec<(u32, u32)>;
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
    /// Share of retail keys hit by each sharing scenario.
    pub sharing_rate: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self { seed: 1, accounts: 2_000, hours: 48, start_ms: 1_795_824_000_000, sharing_rate: 0.01 }
    }
}

/// A shared key, for the ground-truth file.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub key_id: String,
    pub scenario: &'static str,
    /// The other party's first use of the key.
    pub onset_ms: i64,
}

pub struct Output {
    /// NDJSON lines, in event-time order (registry records first).
    pub events: Vec<String>,
    pub truth: Vec<Truth>,
    /// Every key, with its segment, for per-segment figures.
    pub keys: Vec<(String, String)>,
}

const KR_ACCESS: &[u32] = &[4766, 9318, 3786];
const KR_MOBILE: &[u32] = &[9644, 17858];
/// Networks abroad: (ASN, country, hours of the flight from Seoul to the far end of that
/// country — Moscow, the US east coast — so no honest trip in the simulation is faster than a
/// real one).
const ABROAD: &[(u32, &str, i64)] = &[
    (4713, "JP", 3),
    (7922, "US", 14),
    (45899, "VN", 5),
    (4134, "CN", 4),
    (12389, "RU", 10),
    (9299, "PH", 4),
    (7470, "TH", 6),
];
const CLOUD: &[u32] = &[16509, 14061, 20473, 16276, 24940];
const VPN: &[u32] = &[9009, 60068];
const UAS: &[&str] = &[
    "ccxt/4.5.90 (+https://github.com/ccxt/ccxt) Python/3.11",
    "python-requests/2.32.3",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) TradingBot/2.1",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
    "axios/1.7.2",
    "PyUpbit/0.2.33",
];

struct Gen<'a> {
    rng: ChaCha8Rng,
    book: &'a dyn AddressBook,
    /// Ranges per ASN, looked up once.
    ranges: std::collections::HashMap<u32, Vec<(u32, u32)>>,
    events: Vec<(i64, u64, String)>,
    seq: u64,
    start: i64,
    end: i64,
}

const SEC: i64 = 1000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;

fn ts(ms: i64) -> String {
    keysentinel_detect::event::format_rfc3339_ms(ms)
}

impl Gen<'_> {
    fn push(&mut self, at: i64, line: String) {
        if at >= self.start && at < self.end {
            self.seq += 1;
            self.events.push((at, self.seq, line));
        }
    }

    /// An address in one range of `asn`, chosen by `range_pick`.
    fn addr(&mut self, asn: u32, range_pick: u64) -> Ipv4Addr {
        let book = self.book;
        let pool = self.ranges.entry(asn).or_insert_with(|| {
            let ranges = book.ranges(asn);
            let ranges = if ranges.is_empty() { SyntheticAddresses.ranges(asn) } else { ranges };
            // Prefer ranges big enough to hold a household's or a server's addresses.
            let big: Vec<(u32, u32)> = ranges.iter().copied().filter(|(a, b)| b - a >= 255).collect();
            if big.is_empty() {
                ranges
            } else {
                big
            }
        });
        let (a, b) = pool[(range_pick % pool.len() as u64) as usize];
        // The same pick, the same address: a household or a server keeps its address.
        let span = u64::from((b - a).max(2) - 1);
        Ipv4Addr::from(a + 1 + ((range_pick >> 16) % span) as u32)
    }

    /// When the first of the events generated since `mark` happens: the ground truth's onset
    /// of sharing is the other party's first use of the key, since before it there is nothing
    /// any detector could see.
    fn first_since(&self, mark: usize) -> Option<i64> {
        self.events[mark..].iter().map(|(t, _, _)| *t).min()
    }

    fn request(&mut self, at: i64, key: &str, ip: Ipv4Addr, ua: &str, outcome: &str) {
        let path = if self.rng.gen_bool(0.7) { "/v1/accounts" } else { "/v1/orders/chance" };
        let line = format!(
            r#"{{"type":"request","ts":"{}","key_id":"{key}","ip":"{ip}","user_agent":"{ua}","method":"GET","path":"{path}","outcome":"{outcome}"}}"#,
            ts(at)
        );
        self.push(at, line);
    }

    fn order(&mut self, at: i64, key: &str, symbol: &str, buy: bool, notional: f64) {
        let line = format!(
            r#"{{"type":"order","ts":"{}","key_id":"{key}","symbol":"{symbol}","side":"{}","action":"place","notional":{notional:.2}}}"#,
            ts(at),
            if buy { "buy" } else { "sell" }
        );
        self.push(at, line);
    }

    /// An order on one of `symbols`, buy or sell at random, of a size in `lo..hi`.
    fn random_order(&mut self, at: i64, key: &str, symbols: &[&str], lo: f64, hi: f64) {
        let symbol = symbols[self.rng.gen_range(0..symbols.len())];
        let buy = self.rng.gen_bool(0.5);
        let n = self.rng.gen_range(lo..hi);
        self.order(at, key, symbol, buy, n);
    }

    /// Sessions of requests: `per_hour` sessions on average, each a few minutes of calls.
    fn sessions(&mut self, from: i64, to: i64, per_hour: f64, mut each: impl FnMut(&mut Self, i64)) {
        let mut t = from;
        loop {
            let gap = (-(1.0 - self.rng.gen::<f64>()).ln() / per_hour * HOUR as f64) as i64;
            t += gap.max(MIN);
            if t >= to {
                break;
            }
            let calls = self.rng.gen_range(3..15);
            let mut at = t;
            for _ in 0..calls {
                each(self, at);
                at += self.rng.gen_range(2 * SEC..40 * SEC);
            }
        }
    }
}

/// One honest actor's way of using a key.
struct Actor {
    ua: &'static str,
    asn: u32,
    range: u64,
    mobile: Option<(u32, u64)>,
}

pub fn simulate(p: &Params, book: &dyn AddressBook) -> Output {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(p.seed),
        book,
        ranges: std::collections::HashMap::new(),
        events: Vec::new(),
        seq: 0,
        start: p.start_ms,
        end: p.start_ms + p.hours * HOUR,
    };
    let (start, end) = (g.start, g.end);
    let mut registry = Vec::new();
    let mut truth = Vec::new();
    let mut keys = Vec::new();

    // An approved vendor with registered egress in one cloud range.
    let vendor_asn = 16509;
    let vendor_range = g.rng.gen::<u64>();
    let vendor_ip = g.addr(vendor_asn, vendor_range);
    let vendor_net = format!("{}.0/24", ip24(vendor_ip));
    registry.push(format!(
        r#"{{"type":"vendor","vendor_id":"vendor-approved-1","status":"approved","egress_cidrs":["{vendor_net}"]}}"#
    ));
    // Brokers' offices.
    let mut broker_offices: Vec<(String, Ipv4Addr)> = Vec::new();

    for i in 0..p.accounts {
        let account = format!("acct-{i:05}");
        let roll = g.rng.gen::<f64>();
        let segment = match roll {
            r if r < 0.84 => "retail",
            r if r < 0.94 => "pro",
            r if r < 0.95 => "market_maker",
            r if r < 0.96 => "broker",
            _ => "vendor_customer",
        };
        let declared = if segment == "market_maker" { r#"["KR","SG","JP"]"# } else { r#"["KR"]"# };
        registry.push(format!(
            r#"{{"type":"account","account_id":"{account}","segment":"{}","declared_countries":{declared},"declared_purpose":"trading"}}"#,
            if segment == "vendor_customer" { "retail" } else { segment }
        ));
        let key = format!("key-{i:05}");
        keys.push((key.clone(), segment.to_owned()));
        let ua = UAS[g.rng.gen_range(0..UAS.len())];
        match segment {
            "retail" => {
                let home = KR_ACCESS[g.rng.gen_range(0..KR_ACCESS.len())];
                let actor = Actor {
                    ua,
                    asn: home,
                    range: g.rng.gen(),
                    mobile: g.rng.gen_bool(0.4).then(|| (KR_MOBILE[g.rng.gen_range(0..KR_MOBILE.len())], g.rng.gen())),
                };
                registry.push(key_record(&key, &account, "[]", None));
                let traveller = g.rng.gen_bool(0.04);
                let vpn = g.rng.gen_bool(0.05).then(|| VPN[g.rng.gen_range(0..VPN.len())]);
                retail(&mut g, &key, &actor, traveller, vpn, start, end);
                // Sharing scenarios on some retail keys, from a random onset.
                if g.rng.gen_bool((p.sharing_rate * 3.0).clamp(0.0, 1.0)) {
                    // After six hours of honest use when the run is long enough, so the key has
                    // a baseline; within the first two thirds, so the sharing has time to show.
                    let latest = ((end - start) * 2 / 3).max(1);
                    let earliest = if latest > 6 * HOUR { 6 * HOUR } else { latest / 2 };
                    let onset = start + g.rng.gen_range(earliest..latest);
                    let scenario = match g.rng.gen_range(0..3) {
                        0 => "lent_abroad",
                        1 => "group_shared",
                        _ => "leaked_cloud",
                    };
                    let mark = g.events.len();
                    shared(&mut g, &key, scenario, onset, end);
                    let onset_ms = g.first_since(mark).unwrap_or(onset);
                    truth.push(Truth { key_id: key.clone(), scenario, onset_ms });
                }
            }
            "pro" => {
                let asn = CLOUD[g.rng.gen_range(0..CLOUD.len())];
                let range = g.rng.gen();
                let ip = g.addr(asn, range);
                registry.push(key_record(&key, &account, &format!(r#"["{}.0/24"]"#, ip24(ip)), None));
                g.sessions(start, end, 6.0, |g, at| {
                    let ip = g.addr(asn, range);
                    g.request(at, &key, ip, ua, "VALID");
                    if g.rng.gen_bool(0.3) {
                        g.random_order(at, &key, &["KRW-BTC"], 50.0, 5000.0);
                    }
                });
            }
            "market_maker" => {
                let sites: Vec<(u32, u64)> =
                    (0..3).map(|_| (CLOUD[g.rng.gen_range(0..CLOUD.len())], g.rng.gen())).collect();
                let ips: Vec<Ipv4Addr> = sites.iter().map(|(a, r)| g.addr(*a, *r)).collect();
                let allow: Vec<String> = ips.iter().map(|ip| format!("\"{}.0/24\"", ip24(*ip))).collect();
                registry.push(key_record(&key, &account, &format!("[{}]", allow.join(",")), None));
                g.sessions(start, end, 30.0, |g, at| {
                    let (asn, range) = sites[g.rng.gen_range(0..sites.len())];
                    let ip = g.addr(asn, range);
                    g.request(at, &key, ip, ua, "VALID");
                    g.random_order(at, &key, &["KRW-BTC", "KRW-ETH", "KRW-XRP"], 1000.0, 100_000.0);
                });
            }
            "broker" => {
                let pick = g.rng.gen();
                let office = g.addr(KR_ACCESS[0], pick);
                broker_offices.push((account.clone(), office));
                registry.push(key_record(&key, &account, "[]", None));
                g.sessions(start, end, 4.0, |g, at| g.request(at, &key, office, ua, "VALID"));
            }
            _ => {
                // A vendor customer: the approved vendor runs the key from its egress.
                registry.push(key_record(&key, &account, "[]", Some("vendor-approved-1")));
                g.sessions(start, end, 3.0, |g, at| {
                    let ip = g.addr(vendor_asn, vendor_range);
                    g.request(at, &key, ip, "VendorBot/3.2", "VALID");
                });
            }
        }
    }

    // Broker clients: their keys are driven from the broker's office, a documented relationship.
    let clients = (p.accounts / 100).max(3);
    for (b, (broker, office)) in broker_offices.iter().enumerate() {
        for c in 0..clients.min(5) {
            let account = format!("client-{b:03}-{c}");
            let key = format!("key-client-{b:03}-{c}");
            registry.push(format!(
                r#"{{"type":"account","account_id":"{account}","segment":"retail","declared_countries":["KR"]}}"#
            ));
            registry.push(format!(
                r#"{{"type":"relationship","from":"{broker}","to":"{account}","kind":"broker_client"}}"#
            ));
            registry.push(key_record(&key, &account, "[]", None));
            keys.push((key.clone(), "broker_client".into()));
            let office = *office;
            g.sessions(start, end, 2.0, |g, at| g.request(at, &key, office, "BrokerDesk/5.0", "VALID"));
        }
    }

    // Ring scenarios: affiliates and an unregistered vendor, over accounts of their own.
    let ring_onset = start + (end - start) / 3;
    let rings: [(&'static str, usize); 2] = [("affiliate_ring", 5), ("unregistered_vendor", 8)];
    for (scenario, size) in rings {
        let asn = if scenario == "affiliate_ring" { KR_ACCESS[1] } else { CLOUD[1] };
        let range = g.rng.gen();
        let hub = g.addr(asn, range);
        let mut ring_keys = Vec::new();
        for m in 0..size {
            let account = format!("{scenario}-{m}");
            let key = format!("key-{scenario}-{m}");
            registry.push(format!(
                r#"{{"type":"account","account_id":"{account}","segment":"retail","declared_countries":["KR"]}}"#
            ));
            registry.push(key_record(&key, &account, "[]", None));
            keys.push((key.clone(), "retail".into()));
            // Before the onset, each owner uses their own key at home.
            let actor = Actor { ua: UAS[m % UAS.len()], asn: KR_ACCESS[m % 3], range: g.rng.gen(), mobile: None };
            retail(&mut g, &key, &actor, false, None, start, ring_onset);
            ring_keys.push(key);
        }
        let mark = g.events.len();
        let ua = if scenario == "affiliate_ring" { "AffiliateTool/1.0" } else { "SignalBot/7.4" };
        let coordinated = scenario == "affiliate_ring";
        g.sessions(ring_onset, end, 12.0, |g, at| {
            let size = g.rng.gen_range(100.0..2000.0_f64).round();
            for (j, key) in ring_keys.iter().enumerate() {
                let at = at + j as i64 * 150;
                g.request(at, key, hub, ua, "VALID");
                if coordinated {
                    g.order(at + 50, key, "KRW-DOGE", true, size);
                }
            }
        });
        let onset_ms = g.first_since(mark).unwrap_or(ring_onset);
        truth.extend(ring_keys.into_iter().map(|key_id| Truth { key_id, scenario, onset_ms }));
    }

    // Registry records first, then activity in event-time order.
    g.events.sort_by_key(|(t, s, _)| (*t, *s));
    let mut events = registry;
    events.extend(g.events.into_iter().map(|(_, _, l)| l));
    truth.sort_by(|a, b| a.key_id.cmp(&b.key_id));
    Output { events, truth, keys }
}

fn ip24(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("{}.{}.{}", o[0], o[1], o[2])
}

fn key_record(key: &str, account: &str, allow: &str, vendor: Option<&str>) -> String {
    let vendor = vendor.map_or("null".to_owned(), |v| format!("\"{v}\""));
    format!(
        r#"{{"type":"key","key_id":"{key}","account_id":"{account}","scopes":["read","trade"],"ip_allowlist":{allow},"vendor_id":{vendor}}}"#
    )
}

/// An honest retail user: sessions at home, sometimes on the phone, maybe through a VPN, maybe
/// a trip abroad.
fn retail(g: &mut Gen<'_>, key: &str, a: &Actor, traveller: bool, vpn: Option<u32>, from: i64, to: i64) {
    let trip = traveller.then(|| {
        let leave = from + g.rng.gen_range(4 * HOUR..(to - from).max(5 * HOUR));
        let (asn, _, flight) = ABROAD[g.rng.gen_range(0..ABROAD.len())];
        // The flight and 1–4 hours at the airports: no requests in between.
        (leave, leave + g.rng.gen_range((flight + 1) * HOUR..(flight + 4) * HOUR), asn, g.rng.gen::<u64>())
    });
    let per_hour = g.rng.gen_range(0.3..2.0);
    g.sessions(from, to, per_hour, |g, at| {
        let ip = match trip {
            Some((leave, land, _, _)) if at >= leave && at < land => return,
            Some((_, land, asn, range)) if at >= land => g.addr(asn, range),
            _ => match (vpn, a.mobile) {
                (Some(v), _) if g.rng.gen_bool(0.3) => g.addr(v, u64::from(v)),
                (_, Some((m, r))) if g.rng.gen_bool(0.3) => g.addr(m, r),
                _ => g.addr(a.asn, a.range),
            },
        };
        g.request(at, key, ip, a.ua, "VALID");
        if g.rng.gen_bool(0.05) {
            g.random_order(at, key, &["KRW-BTC", "KRW-ETH", "KRW-SOL"], 10.0, 500.0);
        }
    });
}

/// The other party's use of a shared key, from `onset`.
fn shared(g: &mut Gen<'_>, key: &str, scenario: &str, onset: i64, end: i64) {
    match scenario {
        "lent_abroad" => {
            let (asn, _, _) = ABROAD[g.rng.gen_range(0..ABROAD.len())];
            let range = g.rng.gen();
            let ua = UAS[g.rng.gen_range(0..UAS.len())];
            g.sessions(onset, end, 3.0, |g, at| {
                let ip = g.addr(asn, range);
                g.request(at, key, ip, ua, "VALID");
                if g.rng.gen_bool(0.2) {
                    g.random_order(at, key, &["KRW-XRP"], 10.0, 500.0);
                }
            });
        }
        "group_shared" => {
            let members: Vec<(u32, u64, &str)> = (0..g.rng.gen_range(3..6))
                .map(|_| {
                    (
                        *[KR_ACCESS, KR_MOBILE].concat().choose(&mut g.rng).unwrap_or(&4766),
                        g.rng.gen(),
                        UAS[g.rng.gen_range(0..UAS.len())],
                    )
                })
                .collect();
            g.sessions(onset, end, 4.0, |g, at| {
                let (asn, range, ua) = members[g.rng.gen_range(0..members.len())];
                let ip = g.addr(asn, range);
                g.request(at, key, ip, ua, "VALID");
            });
        }
        _ => {
            // Leaked: first probed with guesses (bad signatures) from cloud hosts, then used
            // from rotating cloud addresses once the secret is known.
            let mut at = onset;
            for _ in 0..g.rng.gen_range(12..40) {
                let asn = CLOUD[g.rng.gen_range(0..CLOUD.len())];
                let pick = g.rng.gen();
                let ip = g.addr(asn, pick);
                g.request(at, key, ip, "python-requests/2.31.0", "BAD_SIGNATURE");
                at += g.rng.gen_range(2 * SEC..15 * SEC);
            }
            g.sessions(at + 10 * MIN, end, 4.0, |g, at| {
                let asn = CLOUD[g.rng.gen_range(0..CLOUD.len())];
                let pick = g.rng.gen();
                let ip = g.addr(asn, pick);
                g.request(at, key, ip, "python-requests/2.31.0", "VALID");
            });
        }
    }
}
