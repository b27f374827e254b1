//! The generator's primitives: addresses on real networks, activity over the day, sessions of
//! calls, and the records of event format v1.

use crate::AddressBook;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const SEC: i64 = 1000;
pub const MIN: i64 = 60 * SEC;
pub const HOUR: i64 = 60 * MIN;
pub const DAY: i64 = 24 * HOUR;
/// Korea's offset from UTC: activity follows the local clock.
const KST: i64 = 9 * HOUR;

/// Where one actor's requests come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Access {
    /// A fixed line (home, office): one address, renumbered by the ISP every `lease_h` hours on
    /// average (Korean broadband renumbers every few days; an office keeps its address).
    Line { asn: u32, pick: u64, lease_h: i64 },
    /// A phone on a carrier: a new address from the carrier's mobile pool at each session
    /// (carrier-grade NAT).
    Phone { asn: u32 },
    /// A server: one address.
    Server { asn: u32, pick: u64 },
    /// A commercial VPN: one of the provider's exits per session, in many countries.
    Vpn { asn: u32 },
    /// Residential proxies: a new consumer address per request.
    Proxies { asns: &'static [(u32, u32)] },
}

/// A lease longer than any run (a century).
const FOREVER_H: i64 = 24 * 365 * 100;

impl Access {
    /// A home line: renumbered every two days to two weeks.
    pub fn line(g: &mut Gen<'_>, asn: u32) -> Access {
        let lease_h = g.rng.gen_range(48..24 * 14);
        Access::Line { asn, pick: g.rng.gen(), lease_h }
    }
    /// A line that keeps its address (an office, a data centre's colocation).
    pub fn fixed(g: &mut Gen<'_>, asn: u32) -> Access {
        Access::Line { asn, pick: g.rng.gen(), lease_h: FOREVER_H }
    }
    pub fn server(g: &mut Gen<'_>, asn: u32) -> Access {
        Access::Server { asn, pick: g.rng.gen() }
    }
}

/// When an actor is active, by local hour: weights whose mean over the day is 1.
#[derive(Debug, Clone, Copy)]
pub struct Hours([f64; 24]);

impl Hours {
    fn normalised(mut w: [f64; 24]) -> Hours {
        let mean = w.iter().sum::<f64>() / 24.0;
        if mean > 0.0 {
            w.iter_mut().for_each(|x| *x /= mean);
        }
        Hours(w)
    }
    /// A machine: every hour alike.
    pub fn always() -> Hours {
        Hours([1.0; 24])
    }
    /// A person: awake from `wake` to `sleep` (local), busiest in the evening and at lunch,
    /// with their own emphasis.
    pub fn person(rng: &mut ChaCha8Rng) -> Hours {
        let wake = rng.gen_range(6..10);
        let sleep = rng.gen_range(23..27); // past midnight for night owls
        let mut w = [0.02; 24];
        for h in wake..sleep {
            w[(h % 24) as usize] = 0.6 + rng.gen::<f64>();
        }
        for h in [12, 20, 21, 22] {
            w[h] *= 1.0 + rng.gen::<f64>() * 2.0;
        }
        Hours::normalised(w)
    }
    /// Office hours on weekdays' clock (weekends are not modelled).
    pub fn office() -> Hours {
        let mut w = [0.0; 24];
        w[9..18].fill(1.0);
        w[12] = 0.4;
        Hours::normalised(w)
    }
    /// Evenings and nights at home.
    pub fn evening(rng: &mut ChaCha8Rng) -> Hours {
        let mut w = [0.02; 24];
        for h in 18..25 {
            w[h % 24] = 0.5 + rng.gen::<f64>();
        }
        w[7] = 0.3;
        w[8] = 0.3;
        Hours::normalised(w)
    }
    pub fn at(&self, ms: i64) -> f64 {
        self.0[((ms + KST).rem_euclid(DAY) / HOUR) as usize]
    }
    fn peak(&self) -> f64 {
        self.0.iter().copied().fold(0.0, f64::max)
    }
}

/// Local hour (KST) of a time.
pub fn local_hour(ms: i64) -> i64 {
    (ms + KST).rem_euclid(DAY) / HOUR
}

/// How an actor trades: which markets, what size (log-normal notional, KRW), how often a call
/// places an order.
#[derive(Debug, Clone)]
pub struct Trading {
    pub symbols: Vec<&'static str>,
    pub size_ln_mu: f64,
    pub size_ln_sigma: f64,
    /// Probability that a call places an order.
    pub orders_per_call: f64,
    /// Share of placed orders cancelled soon after.
    pub cancel_share: f64,
}

impl Trading {
    /// A retail customer's: a few large markets, ₩50k–₩2m orders.
    pub fn retail(rng: &mut ChaCha8Rng) -> Trading {
        let n = rng.gen_range(1..4);
        let mut symbols = Vec::new();
        while symbols.len() < n {
            let s = crate::world::MAJORS[rng.gen_range(0..crate::world::MAJORS.len())];
            if !symbols.contains(&s) {
                symbols.push(s);
            }
        }
        Trading {
            symbols,
            size_ln_mu: rng.gen_range(11.0..14.5),
            size_ln_sigma: rng.gen_range(0.3..1.0),
            orders_per_call: rng.gen_range(0.02..0.15),
            cancel_share: rng.gen_range(0.0..0.3),
        }
    }
    /// A bot's: more orders, often cancelled and replaced.
    pub fn bot(rng: &mut ChaCha8Rng) -> Trading {
        let mut t = Trading::retail(rng);
        t.orders_per_call = rng.gen_range(0.2..0.8);
        t.cancel_share = rng.gen_range(0.3..0.9);
        t
    }
}

pub struct Gen<'a> {
    pub rng: ChaCha8Rng,
    book: &'a dyn AddressBook,
    /// Ranges per ASN, looked up once.
    ranges: HashMap<u32, Vec<(u32, u32)>>,
    /// Each carrier's mobile blocks.
    phones: HashMap<u32, Vec<(u32, u32)>>,
    events: Vec<(i64, u64, String)>,
    seq: u64,
    pub start: i64,
    pub end: i64,
    /// Market-wide moves: (from, to, multiple) during which every trader trades more.
    pub market: Vec<(i64, i64, f64)>,
    /// IPv6 ranges per ASN, looked up once.
    ranges_v6: HashMap<u32, Vec<(u128, u128)>>,
    /// Dual-stack lines and phone sessions: the IPv6 prefix beside each IPv4 address. A request
    /// goes out over either (Happy Eyeballs prefers IPv6, per connection).
    dual: HashMap<IpAddr, IpAddr>,
    /// Its own stream, so that the IPv4 world is the same draw for draw with or without IPv6.
    dual_rng: ChaCha8Rng,
}

impl<'a> Gen<'a> {
    pub fn new(rng: ChaCha8Rng, book: &'a dyn AddressBook, start: i64, end: i64) -> Self {
        let mut dual_rng = ChaCha8Rng::from_seed(rng.get_seed());
        dual_rng.set_stream(6);
        Gen {
            ranges_v6: HashMap::new(),
            dual: HashMap::new(),
            dual_rng,
            rng,
            book,
            ranges: HashMap::new(),
            phones: HashMap::new(),
            events: Vec::new(),
            seq: 0,
            start,
            end,
            market: Vec::new(),
        }
    }

    /// Activity records in event-time order (ties in the order they were generated).
    pub fn finish(mut self) -> Vec<String> {
        self.events.sort_by_key(|(t, s, _)| (*t, *s));
        self.events.into_iter().map(|(_, _, l)| l).collect()
    }

    pub fn push(&mut self, at: i64, line: String) {
        if at >= self.start && at < self.end {
            self.seq += 1;
            self.events.push((at, self.seq, line));
        }
    }

    /// How many activity records exist so far (a mark for [`Gen::first_since`]).
    pub fn mark(&self) -> usize {
        self.events.len()
    }

    /// When the first of the records generated since `mark` happens: a shared key's onset is
    /// the other party's first use of it, since before it there is nothing to detect.
    pub fn first_since(&self, mark: usize) -> Option<i64> {
        self.events[mark..].iter().map(|(t, _, _)| *t).min()
    }

    fn pool(&mut self, asn: u32) -> &[(u32, u32)] {
        let book = self.book;
        self.ranges.entry(asn).or_insert_with(|| {
            let ranges = book.ranges(asn);
            let ranges = if ranges.is_empty() { crate::SyntheticAddresses.ranges(asn) } else { ranges };
            // Ranges big enough to hold a household's or a server's addresses.
            let big: Vec<(u32, u32)> = ranges.iter().copied().filter(|(a, b)| b - a >= 255).collect();
            if big.is_empty() {
                ranges
            } else {
                big
            }
        })
    }

    /// The address of `pick` in `asn`: the same pick, the same address.
    pub fn addr(&mut self, asn: u32, pick: u64) -> IpAddr {
        let pool = self.pool(asn);
        let (a, b) = pool[(pick % pool.len() as u64) as usize];
        let span = u64::from((b - a).max(2) - 1);
        IpAddr::V4(Ipv4Addr::from(a + 1 + ((pick >> 16) % span) as u32))
    }

    /// The IPv6 prefix beside an IPv4 address of `asn` (a home's line, or a phone's attach when
    /// `phone`), if that ISP numbers its customers in IPv6: the prefix follows `seed` (the same
    /// household, the same prefix); [`Gen::device_v6`] puts each device in it.
    /// Korean ISPs announce IPv6 under other AS numbers than their IPv4: KT under 3559, LG U+
    /// under 3786 (homes) and 17853 (phones).
    fn addr_v6(&mut self, asn: u32, phone: bool, seed: u64) -> Option<IpAddr> {
        let v6_asn = match (asn, phone) {
            (crate::world::KT, _) => 3559,
            (crate::world::LGU, false) => 3786,
            (crate::world::LGU, true) => 17853,
            (crate::world::SKB | crate::world::SKT | 3786, _) => asn,
            _ => return None,
        };
        let book = self.book;
        let pool = self.ranges_v6.entry(v6_asn).or_insert_with(|| {
            // Ranges that hold customers' prefixes, not a single /48 of the ISP's own.
            book.ranges_v6(v6_asn).into_iter().filter(|(a, b)| b - a >= (1u128 << 88) - 1).collect()
        });
        if pool.is_empty() {
            return None;
        }
        let (a, b) = pool[(seed % pool.len() as u64) as usize];
        // A /56 (a home) or a /64 (a phone) inside the range.
        let bits = if phone { 64 } else { 72 };
        let prefixes = ((b - a) >> bits).max(1);
        let prefix = a + ((u128::from(seed >> 8) % prefixes) << bits);
        Some(IpAddr::V6(Ipv6Addr::from(prefix)))
    }

    /// A device's address in a delegated prefix: its own interface identifier, renewed daily
    /// (privacy addresses), so the household's devices do not share one address as they share
    /// a NAT's IPv4 one.
    fn device_v6(&self, prefix: IpAddr, at: i64, key: &str, ua: &str) -> IpAddr {
        let IpAddr::V6(p) = prefix else { return prefix };
        let day = ((at - self.start) / DAY) as u64;
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ day;
        for b in key.bytes().chain(ua.bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let net = u128::from(p) & !((1u128 << 64) - 1);
        IpAddr::V6(Ipv6Addr::from(net | u128::from(h)))
    }

    /// A phone's address at attach: from the carrier's mobile pool, its few largest ranges
    /// (carriers number their phones from dedicated blocks).
    fn phone_addr(&mut self, asn: u32) -> IpAddr {
        if !self.phones.contains_key(&asn) {
            let mut blocks = self.pool(asn).to_vec();
            blocks.sort_by_key(|(a, b)| (std::cmp::Reverse(b - a), *a));
            blocks.truncate(6);
            self.phones.insert(asn, blocks);
        }
        let blocks = &self.phones[&asn];
        let (a, b) = blocks[self.rng.gen_range(0..blocks.len())];
        IpAddr::V4(Ipv4Addr::from(a + 1 + self.rng.gen_range(0..(b - a).max(2) - 1)))
    }

    /// Where `access` puts a session that starts at `at`.
    pub fn session_addr(&mut self, access: Access, at: i64) -> IpAddr {
        match access {
            Access::Line { asn, pick, lease_h } => {
                // Renumbered at lease boundaries, each line on its own phase.
                let lease = lease_h.clamp(1, FOREVER_H) * HOUR;
                let epoch = (at - self.start + (pick % 1000) as i64 * lease / 1000) / lease;
                let seed = pick ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let v4 = self.addr(asn, seed);
                // A third of the homes on the big ISPs are dual-stack: the same household,
                // its delegated prefix under the ISP's IPv6 network.
                if pick % 3 == 0 {
                    if let Some(v6) = self.addr_v6(asn, false, seed) {
                        self.dual.insert(v4, v6);
                    }
                }
                v4
            }
            Access::Server { asn, pick } => self.addr(asn, pick),
            Access::Phone { asn } => {
                let v4 = self.phone_addr(asn);
                // Most Korean phones attach with both: a carrier-NAT IPv4 address and an IPv6
                // prefix of their own.
                if self.dual_rng.gen_bool(0.7) {
                    let seed = self.dual_rng.gen();
                    if let Some(v6) = self.addr_v6(asn, true, seed) {
                        self.dual.insert(v4, v6);
                    }
                }
                v4
            }
            Access::Vpn { asn } => {
                let exit = self.rng.gen_range(0..40u64);
                self.addr(asn, exit.wrapping_mul(0x2545_f491_4f6c_dd1d))
            }
            Access::Proxies { asns } => {
                let asn = pick(&mut self.rng, asns);
                let p = self.rng.gen();
                self.addr(asn, p)
            }
        }
    }

    /// How much more everyone trades at `at` (1 outside market-wide moves).
    pub fn market_multiple(&self, at: i64) -> f64 {
        self.market.iter().filter(|(a, b, _)| at >= *a && at < *b).map(|(_, _, m)| *m).fold(1.0, f64::max)
    }

    /// Sessions of calls between `from` and `to`: `per_hour` on average, following `hours`
    /// (and market-wide moves when `trader`), each of `calls` calls `gap` apart. `each` gets
    /// every call's time and its index within the session (0 starts one).
    #[allow(clippy::too_many_arguments)]
    pub fn sessions(
        &mut self,
        from: i64,
        to: i64,
        per_hour: f64,
        hours: &Hours,
        trader: bool,
        calls: (u32, u32),
        gap: (i64, i64),
        mut each: impl FnMut(&mut Self, i64, u32),
    ) {
        let peak = hours.peak().max(1e-9) * if trader { 4.0 } else { 1.0 };
        let rate = per_hour * peak;
        if rate <= 0.0 {
            return;
        }
        let mut t = from.max(self.start - DAY);
        loop {
            let gap_ms = (-(1.0 - self.rng.gen::<f64>()).ln() / rate * HOUR as f64) as i64;
            t += gap_ms.max(SEC);
            if t >= to.min(self.end) {
                break;
            }
            let m = if trader { self.market_multiple(t) } else { 1.0 };
            if self.rng.gen::<f64>() * peak > hours.at(t) * m.min(4.0) {
                continue;
            }
            let n = self.rng.gen_range(calls.0..=calls.1.max(calls.0));
            let mut at = t;
            for i in 0..n {
                each(self, at, i);
                at += self.rng.gen_range(gap.0..=gap.1.max(gap.0));
            }
            t = t.max(at);
        }
    }

    pub fn request(&mut self, at: i64, key: &str, ip: IpAddr, ua: &str, outcome: &str) {
        // A dual-stack line or phone: each connection over IPv6 when it can, IPv4 otherwise.
        let ip = match self.dual.get(&ip) {
            Some(&v6) if self.dual_rng.gen_bool(0.7) => self.device_v6(v6, at, key, ua),
            _ => ip,
        };
        let path = match self.rng.gen_range(0..10) {
            0..=5 => "/v1/accounts",
            6..=7 => "/v1/orders/chance",
            _ => "/v1/ticker",
        };
        let line = format!(
            r#"{{"type":"request","ts":"{}","key_id":"{key}","ip":"{ip}","user_agent":{},"method":"GET","path":"{path}","outcome":"{outcome}"}}"#,
            ts(at),
            json(ua)
        );
        self.push(at, line);
    }

    pub fn order(&mut self, at: i64, key: &str, symbol: &str, buy: bool, place: bool, notional: f64) {
        let line = format!(
            r#"{{"type":"order","ts":"{}","key_id":"{key}","symbol":"{symbol}","side":"{}","action":"{}","notional":{notional:.0}}}"#,
            ts(at),
            if buy { "buy" } else { "sell" },
            if place { "place" } else { "cancel" }
        );
        self.push(at, line);
    }

    /// Maybe an order for a call at `at`, as `t` trades, sized ×`scale`.
    pub fn trade(&mut self, at: i64, key: &str, t: &Trading, scale: f64) {
        let m = self.market_multiple(at);
        if !self.rng.gen_bool((t.orders_per_call * m).clamp(0.0, 1.0)) {
            return;
        }
        let symbol = t.symbols[self.rng.gen_range(0..t.symbols.len())];
        let buy = self.rng.gen_bool(0.5);
        let n = (t.size_ln_mu + t.size_ln_sigma * normal(&mut self.rng)).exp() * scale;
        let notional = (n / 1000.0).round().max(1.0) * 1000.0;
        self.order(at, key, symbol, buy, true, notional);
        if self.rng.gen_bool(t.cancel_share.clamp(0.0, 1.0)) {
            let later = at + self.rng.gen_range(SEC..5 * MIN);
            self.order(later, key, symbol, buy, false, notional);
        }
    }

    pub fn login(&mut self, at: i64, account: &str, ip: IpAddr, ua: &str, device: &str) {
        let line = format!(
            r#"{{"type":"login","ts":"{}","account_id":"{account}","ip":"{ip}","user_agent":{},"device_id":"{device}"}}"#,
            ts(at),
            json(ua)
        );
        self.push(at, line);
    }

    /// A market-wide move now and then: news, a listing, a crash, when everyone trades at
    /// several times their usual rate for an hour or two.
    pub fn market_moves(&mut self) {
        let days = ((self.end - self.start) / DAY).max(1);
        let n = self.rng.gen_range(1..=days as u32 + 1);
        for _ in 0..n {
            let at = self.rng.gen_range(self.start..self.end);
            let len = self.rng.gen_range(30 * MIN..3 * HOUR);
            let m = self.rng.gen_range(3.0..15.0);
            self.market.push((at, at + len, m));
        }
    }
}

/// One of `choices`, by weight.
pub fn pick<T: Copy>(rng: &mut ChaCha8Rng, choices: &[(T, u32)]) -> T {
    let total: u32 = choices.iter().map(|(_, w)| *w).sum();
    let mut x = rng.gen_range(0..total.max(1));
    for (v, w) in choices {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    choices[0].0
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = 1.0 - rng.gen::<f64>();
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

pub fn ts(ms: i64) -> String {
    keysentinel_detect::event::format_rfc3339_ms(ms)
}

fn json(s: &str) -> String {
    serde_json_string(s)
}

/// A JSON string literal (the simulator's strings are plain ASCII; quotes and backslashes are
/// escaped all the same).
fn serde_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn ip24(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}
