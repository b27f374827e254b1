//! Held-out families: honest ways of using one's own key, and ways of sharing it, that the rest
//! of the simulator does not draw. They exist for a leave-family-out test: the detection engine
//! is tuned on the other families and checked on these, which it has never seen.
//!
//! Whoever tunes the engine should not read this file. The families were written from how
//! people behave, not from what the engine looks at, and every parameter is drawn per customer
//! from wide ranges; fitting them would defeat the test.
//!
//! Like the rest of the simulator, weekends are not modelled: every day is a working day.

use crate::gen::{self, local_hour, normal, pick, Access, Gen, Hours, Trading, DAY, HOUR, MIN, SEC};
use crate::honest::person_uses;
use crate::person::{jitter, moment, Loc, Person, Whereabouts};
use crate::world::{self, client};
use crate::{Registry, Truth};
use rand::Rng;
use std::net::{IpAddr, Ipv4Addr};

/// Held-out honest families.
pub const HONEST: &[&str] = &[
    "ho_household",
    "ho_pc_bang",
    "ho_cloud_migration",
    "ho_work_vpn",
    "ho_night_shift",
    "ho_market_swing",
    "ho_campus",
    "ho_conscript",
    "ho_tethering",
    "ho_new_setup",
    "ho_copy_leader_own",
];

/// Held-out sharing families.
pub const SHARING: &[&str] = &[
    "ho_remote_desktop",
    "ho_marketplace_buyer",
    "ho_copy_followers",
    "ho_leak_careful",
    "ho_phished_resale",
    "ho_freelancer_kept",
];

/// Korean data centres (Naver Cloud, KT Cloud, KINX's IDC): where VPN providers rent their
/// Korean exits and where a bot gets a Korean address.
const KR_HOSTING: &[(u32, u32)] = &[(23576, 3), (38661, 3), (9286, 2)];

/// Runs every held-out family for a population of `accounts`: honest ones always, sharing ones
/// only when keys are shared at all (`rate` > 0, about `rate` of the accounts each).
pub fn run(g: &mut Gen<'_>, reg: &mut Registry, accounts: usize, rate: f64) -> Vec<Truth> {
    let per = |share: f64| ((accounts as f64 * share).round() as usize).max(1);
    let mut keys = Vec::new();
    for n in 0..per(1.0 / 250.0) {
        keys.extend(household(g, reg, n));
    }
    for n in 0..per(1.0 / 1000.0) {
        keys.extend(pc_bang(g, reg, n));
    }
    for n in 0..per(1.0 / 400.0) {
        keys.extend(cloud_migration(g, reg, n));
    }
    for n in 0..per(1.0 / 200.0) {
        keys.extend(work_vpn(g, reg, n));
    }
    for n in 0..per(1.0 / 200.0) {
        keys.extend(night_shift(g, reg, n));
    }
    for n in 0..per(1.0 / 500.0) {
        keys.extend(market_swing(g, reg, n));
    }
    for n in 0..per(1.0 / 1000.0) {
        keys.extend(campus(g, reg, n));
    }
    for n in 0..per(1.0 / 400.0) {
        keys.extend(conscript(g, reg, n));
    }
    for n in 0..per(1.0 / 250.0) {
        keys.extend(tethering(g, reg, n));
    }
    for n in 0..per(1.0 / 250.0) {
        keys.extend(new_setup(g, reg, n));
    }
    if rate > 0.0 {
        let shared = ((accounts as f64 * rate).round() as usize).max(1);
        for n in 0..shared {
            keys.extend(remote_desktop(g, reg, n));
        }
        for n in 0..shared {
            keys.extend(marketplace_buyer(g, reg, n));
        }
        for n in 0..shared {
            keys.extend(leak_careful(g, reg, n));
        }
        for n in 0..shared {
            keys.extend(phished_resale(g, reg, n));
        }
        for n in 0..shared {
            keys.extend(freelancer_kept(g, reg, n));
        }
        for n in 0..((accounts as f64 * rate / 8.0).round() as usize).max(1) {
            keys.extend(copy_trading(g, reg, n));
        }
    }
    keys
}

// ---------------------------------------------------------------------------------------------
// Primitives of this module: an hour-of-day profile of one's own, sessions that follow the
// market as strongly as the actor does, stretches of time, withdrawals.

/// Activity by local hour: weights whose mean over the day is 1.
#[derive(Debug, Clone, Copy)]
struct Clock([f64; 24]);

impl Clock {
    fn new(mut w: [f64; 24]) -> Clock {
        let mean = w.iter().sum::<f64>() / 24.0;
        if mean > 0.0 {
            w.iter_mut().for_each(|x| *x /= mean);
        }
        Clock(w)
    }
    fn flat() -> Clock {
        Clock([1.0; 24])
    }
    /// A person's hours as person.rs draws them.
    fn of(h: &Hours) -> Clock {
        let mut w = [0.0; 24];
        for u in 0..24 {
            let at = u * HOUR;
            w[local_hour(at) as usize] = h.at(at);
        }
        Clock::new(w)
    }
    /// Awake from local hour `from` to `to` (past midnight when above 24), each hour with its own
    /// weight; barely at all otherwise.
    fn awake(g: &mut Gen<'_>, from: i64, to: i64) -> Clock {
        let mut w = [0.02; 24];
        for h in from..to {
            w[h.rem_euclid(24) as usize] = 0.4 + g.rng.gen::<f64>() * 1.2;
        }
        Clock::new(w)
    }
    fn at(&self, ms: i64) -> f64 {
        self.0[local_hour(ms) as usize]
    }
    fn peak(&self) -> f64 {
        self.0.iter().copied().fold(0.0, f64::max)
    }
}

/// How far a market-wide move can raise anyone's activity.
const MOVE_CAP: f64 = 6.0;

/// Sessions between `from` and `to`, `per_hour` on average by `clock`, raised during market-wide
/// moves by the multiple to the power `swing` (0: a machine that does not care). `each` gets
/// every call's time, its index in the session and the market multiple at the time.
#[allow(clippy::too_many_arguments)]
fn sessions(
    g: &mut Gen<'_>,
    from: i64,
    to: i64,
    per_hour: f64,
    clock: &Clock,
    swing: f64,
    calls: (u32, u32),
    gap: (i64, i64),
    mut each: impl FnMut(&mut Gen<'_>, i64, u32, f64),
) {
    let cap = if swing > 0.0 { MOVE_CAP } else { 1.0 };
    let peak = clock.peak().max(1e-9) * cap;
    let rate = per_hour * peak;
    if rate.is_nan() || rate <= 0.0 {
        return;
    }
    let end = to.min(g.end);
    let mut t = from.max(g.start - DAY);
    loop {
        let u: f64 = g.rng.gen();
        t += ((-(1.0 - u).ln() / rate * HOUR as f64) as i64).max(SEC);
        if t >= end {
            break;
        }
        let mm = g.market_multiple(t);
        let lift = mm.powf(swing).min(cap);
        if g.rng.gen::<f64>() * peak > clock.at(t) * lift {
            continue;
        }
        let n = g.rng.gen_range(calls.0..=calls.1.max(calls.0));
        let mut at = t;
        for i in 0..n {
            each(g, at, i, mm);
            at += g.rng.gen_range(gap.0..=gap.1.max(gap.0));
        }
        t = t.max(at);
    }
}

/// Stretches of time (visits, outages, leave) starting `per_day` times a day by `clock`, each
/// between `len.0` and `len.1` long.
fn stretches(g: &mut Gen<'_>, per_day: f64, clock: &Clock, len: (i64, i64)) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    sessions(g, g.start - DAY, g.end, per_day / 24.0, clock, 0.0, (1, 1), (0, 0), |g, at, _, _| {
        let l = g.rng.gen_range(len.0..=len.1.max(len.0));
        out.push((at, at + l));
    });
    out
}

fn within(ws: &[(i64, i64)], at: i64) -> bool {
    ws.iter().any(|(a, b)| at >= *a && at < *b)
}

/// Whether local time `at` is in the daily window from `from` for `len` hours.
fn daily(at: i64, from: i64, len: i64) -> bool {
    (local_hour(at) - from).rem_euclid(24) < len
}

/// Minute of the local day.
fn local_minute(at: i64) -> i64 {
    local_hour(at) * 60 + at.rem_euclid(HOUR) / MIN
}

/// The earliest of `first` and `at`, counting only records the run keeps.
fn earliest(g: &Gen<'_>, first: Option<i64>, at: i64) -> Option<i64> {
    if at >= g.start && at < g.end {
        Some(first.map_or(at, |f| f.min(at)))
    } else {
        first
    }
}

/// A notional in won as the exchange takes it: whole thousands, at least its minimum order.
fn krw(x: f64) -> f64 {
    ((x / 1000.0).round() * 1000.0).max(5000.0)
}

/// `n` different items of `list`.
fn some_of(g: &mut Gen<'_>, list: &[&'static str], n: usize) -> Vec<&'static str> {
    let n = n.clamp(1, list.len());
    let mut out = Vec::new();
    while out.len() < n {
        let s = list[g.rng.gen_range(0..list.len())];
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn device(g: &mut Gen<'_>, kind: &str) -> String {
    format!("{kind}-{:012x}", g.rng.gen::<u64>() & 0xffff_ffff_ffff)
}

/// Another address a few numbers away, in the same /24 (a small block of static addresses).
fn near(ip: IpAddr, by: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], 1 + (o[3].wrapping_add(by)) % 254))
        }
        v6 => v6,
    }
}

fn fixed_ip(g: &mut Gen<'_>, choices: &[(u32, u32)]) -> IpAddr {
    let asn = pick(&mut g.rng, choices);
    let a = Access::fixed(g, asn);
    g.session_addr(a, 0)
}

fn server_ip(g: &mut Gen<'_>, choices: &[(u32, u32)]) -> IpAddr {
    let asn = pick(&mut g.rng, choices);
    let a = Access::server(g, asn);
    g.session_addr(a, 0)
}

/// Another version of the same program as `ua` (a reinstall picks up the latest), or `ua`.
fn other_version(g: &mut Gen<'_>, ua: &str) -> String {
    for (template, versions) in world::BOT_CLIENTS.iter().chain(world::PHONE_CLIENTS) {
        let prefix = template.split("{}").next().unwrap_or(template);
        let candidates: Vec<String> = versions.iter().map(|v| template.replacen("{}", v, 1)).collect();
        if ua.starts_with(prefix) && candidates.iter().any(|c| c == ua) {
            return candidates[g.rng.gen_range(0..candidates.len())].clone();
        }
    }
    ua.to_owned()
}

/// A key's registry record; `withdraw` when the owner enabled withdrawals through the API.
fn key_line(reg: &mut Registry, key: &str, account: &str, allow: &[String], withdraw: bool) {
    let allow: Vec<String> = allow.iter().map(|c| format!("\"{c}\"")).collect();
    let scopes = if withdraw { r#"["read","trade","withdraw"]"# } else { r#"["read","trade"]"# };
    reg.lines.push(format!(
        r#"{{"type":"key","key_id":"{key}","account_id":"{account}","scopes":{scopes},"ip_allowlist":[{}],"vendor_id":null}}"#,
        allow.join(",")
    ));
}

/// A JSON string literal.
fn json(s: &str) -> String {
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

/// A call to a particular endpoint (balances, open orders), where it matters which.
fn call(g: &mut Gen<'_>, at: i64, key: &str, ip: IpAddr, ua: &str, path: &str, outcome: &str) {
    let line = format!(
        r#"{{"type":"request","ts":"{}","key_id":"{key}","ip":"{ip}","user_agent":{},"method":"GET","path":"{path}","outcome":"{outcome}"}}"#,
        gen::ts(at),
        json(ua)
    );
    g.push(at, line);
}

/// Maybe an order (and its cancel) for a call at `at`, with probability `p`, sized ×`scale`.
fn maybe_order(g: &mut Gen<'_>, at: i64, key: &str, t: &Trading, p: f64, scale: f64) {
    if t.symbols.is_empty() || !g.rng.gen_bool(p.clamp(0.0, 1.0)) {
        return;
    }
    let symbol = t.symbols[g.rng.gen_range(0..t.symbols.len())];
    let buy = g.rng.gen_bool(0.5);
    let notional = krw((t.size_ln_mu + t.size_ln_sigma * normal(&mut g.rng)).exp() * scale);
    g.order(at, key, symbol, buy, true, notional);
    if g.rng.gen_bool(t.cancel_share.clamp(0.0, 1.0)) {
        let later = at + g.rng.gen_range(2 * SEC..10 * MIN);
        g.order(later, key, symbol, buy, false, notional);
    }
}

/// One actor's use of a key: a person's hand or a program.
struct Act<'k> {
    key: &'k str,
    ua: String,
    clock: Clock,
    per_hour: f64,
    calls: (u32, u32),
    gap: (i64, i64),
    trading: Option<Trading>,
    scale: f64,
    /// How much more often this actor comes back when the market moves, how much more often a
    /// call then places an order, and how much bigger the orders get (exponents of the move).
    swing: f64,
    order_swing: f64,
    size_swing: f64,
}

impl<'k> Act<'k> {
    /// A person at a keyboard or on the phone: short sessions, at their own hours, more of them
    /// when the market moves.
    fn hand(key: &'k str, ua: String, clock: Clock, per_hour: f64, trading: Option<Trading>, g: &mut Gen<'_>) -> Self {
        Act {
            key,
            ua,
            clock,
            per_hour,
            calls: (1, g.rng.gen_range(3..16)),
            gap: (g.rng.gen_range(1..5) * SEC, g.rng.gen_range(15..90) * SEC),
            trading,
            scale: 1.0,
            swing: g.rng.gen_range(0.2..1.0),
            order_swing: g.rng.gen_range(0.3..1.0),
            size_swing: 0.0,
        }
    }
    /// A program: round the clock, long sessions of quick calls, indifferent to the news.
    fn program(key: &'k str, ua: String, per_hour: f64, trading: Option<Trading>, g: &mut Gen<'_>) -> Self {
        Act {
            key,
            ua,
            clock: Clock::flat(),
            per_hour,
            calls: (g.rng.gen_range(2..8), g.rng.gen_range(15..60)),
            gap: (g.rng.gen_range(200..1500), g.rng.gen_range(5..30) * SEC),
            trading,
            scale: 1.0,
            swing: 0.0,
            order_swing: g.rng.gen_range(0.0..0.6),
            size_swing: 0.0,
        }
    }

    /// Runs between `from` and `to`; `addr` places each session (None: no session then) with
    /// the gateway's verdict on its address. Returns the time of its first record in the run.
    fn run(
        &self,
        g: &mut Gen<'_>,
        from: i64,
        to: i64,
        mut addr: impl FnMut(&mut Gen<'_>, i64) -> Option<(IpAddr, &'static str)>,
    ) -> Option<i64> {
        let mut first = None;
        let mut here = None;
        sessions(g, from, to, self.per_hour, &self.clock, self.swing, self.calls, self.gap, |g, at, i, mm| {
            if i == 0 {
                here = addr(g, at);
            }
            let Some((ip, outcome)) = here else { return };
            g.request(at, self.key, ip, &self.ua, outcome);
            first = earliest(g, first, at);
            if let (Some(t), "VALID") = (&self.trading, outcome) {
                let p = t.orders_per_call * mm.powf(self.order_swing).min(MOVE_CAP);
                let scale = self.scale * mm.powf(self.size_swing);
                let at = at + g.rng.gen_range(30..600);
                maybe_order(g, at, self.key, t, p, scale);
            }
        });
        first
    }
}

/// Where a person logs in to the exchange from at `at`: its web site on the PC at home or the
/// office, its app on the phone otherwise (None: nowhere to, on a plane).
fn person_place(
    g: &mut Gen<'_>,
    p: &Person,
    web: &'static str,
    app: &'static str,
    at: i64,
) -> Option<(IpAddr, &'static str, String)> {
    let on_pc = matches!(p.whereabouts(at), Whereabouts::At(Loc::Home | Loc::Office)) && g.rng.gen_bool(0.5);
    if on_pc {
        Some((p.pc_addr(g, at, true)?, web, p.pc_device.clone()))
    } else {
        Some((p.phone_addr(g, at)?, app, p.phone_device.clone()))
    }
}

/// Logins between `from` and `to`, `per_day` by `clock`, from wherever `place` says.
#[allow(clippy::too_many_arguments)]
fn logins(
    g: &mut Gen<'_>,
    account: &str,
    per_day: f64,
    clock: &Clock,
    from: i64,
    to: i64,
    mut place: impl FnMut(&mut Gen<'_>, i64) -> Option<(IpAddr, &'static str, String)>,
) {
    sessions(g, from, to, per_day / 24.0, clock, 0.3, (1, 1), (0, 0), |g, at, _, _| {
        if let Some((ip, ua, dev)) = place(g, at) {
            g.login(at, account, ip, ua, &dev);
        }
    });
}

fn web_app(g: &mut Gen<'_>) -> (&'static str, &'static str) {
    (
        world::LOGIN_WEB[g.rng.gen_range(0..world::LOGIN_WEB.len())],
        world::LOGIN_APP[g.rng.gen_range(0..world::LOGIN_APP.len())],
    )
}

/// Coins and roughly what one is worth in won.
const ASSETS: &[(&str, f64)] = &[
    ("BTC", 1.3e8),
    ("ETH", 5.0e6),
    ("XRP", 3.0e3),
    ("USDT", 1.45e3),
    ("SOL", 3.0e5),
    ("TRX", 400.0),
    ("DOGE", 500.0),
];

/// A destination address of `asset` in its chain's own notation.
fn wallet(g: &mut Gen<'_>, asset: &str) -> String {
    const B58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    const BECH: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    const HEX: &[u8] = b"0123456789abcdef";
    let draw = |g: &mut Gen<'_>, alphabet: &[u8], n: usize| -> String {
        (0..n).map(|_| alphabet[g.rng.gen_range(0..alphabet.len())] as char).collect()
    };
    match asset {
        "BTC" => format!("bc1q{}", draw(g, BECH, 38)),
        "ETH" => format!("0x{}", draw(g, HEX, 40)),
        // Most won-market USDT leaves on Tron, some on Ethereum.
        "USDT" if g.rng.gen_bool(0.3) => format!("0x{}", draw(g, HEX, 40)),
        "USDT" | "TRX" => format!("T{}", draw(g, B58, 33)),
        "XRP" => format!("r{}", draw(g, B58, 33)),
        "DOGE" => format!("D{}", draw(g, B58, 33)),
        _ => draw(g, B58, 44),
    }
}

/// A withdrawal of about `won` worth of `asset` to `address`, ordered through the key or, when
/// `key` is None, through the web site or app.
#[allow(clippy::too_many_arguments)]
fn withdraw(
    g: &mut Gen<'_>,
    at: i64,
    key: Option<&str>,
    account: &str,
    asset: &str,
    price: f64,
    won: f64,
    address: &str,
) {
    let amount = won / price;
    let amount = if price > 1e5 { format!("{amount:.6}") } else { format!("{amount:.2}") };
    let who = match key {
        Some(k) => format!(r#""key_id":"{k}""#),
        None => format!(r#""account_id":"{account}""#),
    };
    let line = format!(
        r#"{{"type":"withdrawal","ts":"{}",{who},"asset":"{asset}","amount":{amount},"address":"{address}"}}"#,
        gen::ts(at)
    );
    g.push(at, line);
}

/// A customer moving coins now and then to their own wallet or another exchange: the same one
/// or two destinations each time, by app, or by script through the key when it may withdraw.
fn own_withdrawals(g: &mut Gen<'_>, account: &str, key: Option<&str>, clock: &Clock, per_day: f64) {
    let wallets: Vec<(&str, f64, String)> = (0..g.rng.gen_range(1..=2))
        .map(|_| {
            let (asset, price) = ASSETS[g.rng.gen_range(0..ASSETS.len())];
            (asset, price, wallet(g, asset))
        })
        .collect();
    let size = g.rng.gen_range(12.0..16.5);
    sessions(g, g.start, g.end, per_day / 24.0, clock, 0.5, (1, 1), (0, 0), |g, at, _, _| {
        let (asset, price, address) = &wallets[g.rng.gen_range(0..wallets.len())];
        let won = (size + 0.7 * normal(&mut g.rng)).exp();
        let via = if g.rng.gen_bool(0.5) { key } else { None };
        withdraw(g, at, via, account, asset, *price, won, address);
    });
}

/// An owner of a key about to be shared, and the ordinary way they use it themselves.
fn owner(g: &mut Gen<'_>, reg: &Registry, account: &str) -> (Person, &'static str) {
    let base = pick(
        &mut g.rng,
        &[
            ("home_only", 25),
            ("home_and_phone", 35),
            ("phone_only", 8),
            ("home_and_office", 14),
            ("commuter", 10),
            ("traveller", 8),
        ],
    );
    let mut p = Person::new(g, account);
    match base {
        "home_and_office" | "commuter" => {
            let asn = pick(&mut g.rng, world::KR_OFFICE);
            p.office = Some(Access::fixed(g, asn));
            if base == "commuter" {
                p.hotspots = reg.hotspots.clone();
            }
        }
        "traveller" => p.plan_trip(g, 2 * HOUR),
        _ => {}
    }
    (p, base)
}

/// A working day's schedule: at the office from `from` for `len` hours, on the way either side.
fn office_schedule(from: i64, len: i64) -> [Loc; 24] {
    let mut s = [Loc::Home; 24];
    for (h, loc) in s.iter_mut().enumerate() {
        let d = (h as i64 - from).rem_euclid(24);
        *loc = if d < len {
            Loc::Office
        } else if d == len || d == 23 {
            Loc::Out
        } else {
            Loc::Home
        };
    }
    s
}

fn retail_trading(g: &mut Gen<'_>) -> Trading {
    Trading::retail(&mut g.rng)
}

// ---------------------------------------------------------------------------------------------
// Honest families.

/// Two (sometimes three) adults of one household, each with their own account and key, on the
/// one home line, with the program one of them set up for both, each at their own hours.
fn household(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let home_asn = pick(&mut g.rng, world::KR_FIXED);
    let home = Access::line(g, home_asn);
    let members = if g.rng.gen_bool(0.25) { 3 } else { 2 };
    let program = g.rng.gen_range(0..world::BOT_CLIENTS.len());
    let version = g.rng.gen_range(0..3);
    // A family PC they both use, or a laptop each.
    let shared_pc = g.rng.gen_bool(0.45).then(|| device(g, "pc"));
    // A family mobile plan puts their phones on one carrier.
    let family_plan = g.rng.gen_bool(0.6).then(|| pick(&mut g.rng, world::KR_MOBILE));
    let mut out = Vec::new();
    for m in 0..members {
        let account = format!("ho-hh-{n:03}-{m}");
        let key = format!("ho-key-hh-{n:03}-{m}");
        let mut p = Person::new(g, &account);
        p.home = home;
        let v = if g.rng.gen_bool(0.7) { version } else { g.rng.gen_range(0..3) };
        p.pc_client = client(world::BOT_CLIENTS, program, v);
        if let Some(d) = &shared_pc {
            p.pc_device = d.clone();
        }
        if let Some(c) = family_plan {
            p.carrier = c;
        }
        let base = if g.rng.gen_bool(0.45) {
            let asn = pick(&mut g.rng, world::KR_OFFICE);
            p.office = Some(Access::fixed(g, asn));
            "home_and_office"
        } else if g.rng.gen_bool(0.6) {
            "home_and_phone"
        } else {
            "home_only"
        };
        let withdraws = g.rng.gen_bool(0.3);
        let by_api = withdraws && g.rng.gen_bool(0.5);
        reg.account(&account, "retail", &["KR"]);
        key_line(reg, &key, &account, &[], by_api);
        person_uses(g, &p, &key, base, g.end);
        p.logins(g, g.start, g.end);
        if withdraws {
            let clock = Clock::of(&p.hours);
            let per_day = g.rng.gen_range(0.05..0.6);
            own_withdrawals(g, &account, by_api.then_some(key.as_str()), &clock, per_day);
        }
        out.push(Truth::honest(&key, &account, "retail", "ho_household"));
    }
    out
}

/// Regulars of one PC café (PC bang): at home and on the phone as anyone, but some evenings and
/// nights at the café, on its few addresses and its identically imaged machines, among
/// strangers doing the same.
fn pc_bang(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let first = fixed_ip(g, &[(world::KT, 5), (world::SKB, 3), (world::LGU, 2)]);
    let lines: Vec<IpAddr> = (0..g.rng.gen_range(1..=4u8)).map(|i| near(first, i * 3)).collect();
    let seats = g.rng.gen_range(30..150u32);
    let cafe: u32 = g.rng.gen();
    let browser = client(world::HAND_CLIENTS, 0, g.rng.gen_range(0..2));
    // Busiest from late afternoon to the small hours.
    let mut w = [0.03; 24];
    for (h, x) in w.iter_mut().enumerate() {
        *x = match h {
            13..=17 => 0.3 + g.rng.gen::<f64>() * 0.5,
            18..=23 => 0.8 + g.rng.gen::<f64>(),
            0..=3 => 0.3 + g.rng.gen::<f64>() * 0.8,
            _ => *x,
        };
    }
    let cafe_clock = Clock::new(w);
    let mut out = Vec::new();
    for m in 0..g.rng.gen_range(3..=8) {
        let account = format!("ho-pcb-{n:03}-{m}");
        let key = format!("ho-key-pcb-{n:03}-{m}");
        let p = Person::new(g, &account);
        reg.account(&account, "retail", &["KR"]);
        key_line(reg, &key, &account, &[], false);
        let per_day = g.rng.gen_range(0.1..1.3);
        let visits = stretches(g, per_day, &cafe_clock, (HOUR, 9 * HOUR));
        let k = key.as_str();
        let clock = Clock::of(&p.hours);
        let pc = Act::hand(k, p.pc_client.clone(), clock, p.per_hour, Some(p.trading.clone()), g);
        pc.run(g, g.start, g.end, |g, at| {
            if within(&visits, at) {
                return None;
            }
            Some((p.pc_addr(g, at, false)?, "VALID"))
        });
        let mut t = p.trading.clone();
        t.orders_per_call *= g.rng.gen_range(0.3..1.0);
        let phone = Act::hand(k, p.phone_client.clone(), clock, p.per_hour * g.rng.gen_range(0.2..0.8), Some(t), g);
        let carrier = Access::Phone { asn: p.carrier };
        phone.run(g, g.start, g.end, |g, at| {
            if within(&visits, at) {
                return Some((g.session_addr(carrier, at), "VALID"));
            }
            Some((p.phone_addr(g, at)?, "VALID"))
        });
        // At the café: a browser-based tool on the seat's machine, or their own program
        // fetched anew (the café's machines forget everything at reboot).
        let ua = if g.rng.gen_bool(0.5) { browser.clone() } else { other_version(g, &p.pc_client) };
        let at_cafe = Act::hand(k, ua, Clock::flat(), jitter(g, 1.2, 0.6), Some(p.trading.clone()), g);
        at_cafe.run(g, g.start, g.end, |g, at| {
            within(&visits, at).then(|| (lines[g.rng.gen_range(0..lines.len())], "VALID"))
        });
        // Logging in at the seat they got that night.
        for &(a, _) in &visits {
            if g.rng.gen_bool(0.6) {
                let at = a + g.rng.gen_range(2 * MIN..40 * MIN);
                let seat = g.rng.gen_range(0..seats);
                let ip = lines[g.rng.gen_range(0..lines.len())];
                g.login(at, &account, ip, world::LOGIN_WEB[0], &format!("pc-{cafe:08x}{seat:04x}"));
            }
        }
        let (web, app) = web_app(g);
        logins(g, &account, p.logins_per_day, &clock, g.start, g.end, |g, at| {
            if within(&visits, at) {
                return None;
            }
            person_place(g, &p, web, app, at)
        });
        out.push(Truth::honest(&key, &account, "retail", "ho_pc_bang"));
    }
    out
}

/// A trading bot redeployed during the run: to another region of its provider or to another
/// provider, for cost, latency or an outage, with the old and the new instance overlapping or a
/// gap between them. The owner had allowed the new address in advance, or uses no allowlist.
fn cloud_migration(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-mig-{n:03}");
    let key = format!("ho-key-mig-{n:03}");
    let segment = if g.rng.gen_bool(0.7) { "pro" } else { "retail" };
    let moves = g.rng.gen_range(1..=3);
    let mut cuts: Vec<i64> = (0..moves).map(|_| moment(g, 0.1, 0.9, 2 * HOUR)).collect();
    cuts.sort_unstable();
    let program = g.rng.gen_range(0..world::BOT_CLIENTS.len());
    let releases = world::BOT_CLIENTS[program].1.len().max(1);
    let mut version = g.rng.gen_range(0..releases);
    let mut asn = pick(&mut g.rng, world::CLOUD);
    let mut sites: Vec<(IpAddr, String)> = Vec::new();
    for i in 0..=moves {
        if i > 0 {
            if g.rng.gen_bool(0.5) {
                asn = pick(&mut g.rng, world::CLOUD);
            }
            // A redeploy often ships a newer build of the bot.
            if g.rng.gen_bool(0.5) {
                version = (version + 1).min(releases - 1);
            }
        }
        let server = Access::server(g, asn);
        let ip = g.session_addr(server, 0);
        sites.push((ip, client(world::BOT_CLIENTS, program, version)));
    }
    let allow: Vec<String> = match g.rng.gen_range(0..10) {
        0..=3 => Vec::new(),
        4..=8 => sites.iter().map(|(ip, _)| format!("{ip}/32")).collect(),
        _ => sites.iter().map(|(ip, _)| gen::ip24(*ip)).collect(),
    };
    reg.account(&account, segment, &["KR"]);
    key_line(reg, &key, &account, &allow, false);
    let k = key.as_str();
    let trading = Trading::bot(&mut g.rng);
    let per_hour = jitter(g, 2.0, 0.6);
    let mut from = g.start - DAY;
    for (i, (ip, ua)) in sites.iter().enumerate() {
        let ip = *ip;
        let cut = cuts.get(i).copied().unwrap_or(g.end);
        // The old instance keeps watching (no orders) for a while after the new one takes over,
        // or stopped some time before it came up.
        let overlap = g.rng.gen_range(-2 * HOUR..3 * HOUR);
        let bot = Act::program(k, ua.clone(), per_hour, Some(trading.clone()), g);
        bot.run(g, from, cut.min(cut + overlap), |_, _| Some((ip, "VALID")));
        if overlap > 0 && cut < g.end {
            let watcher = Act::program(k, ua.clone(), per_hour, None, g);
            watcher.run(g, cut, cut + overlap, |_, _| Some((ip, "VALID")));
        }
        from = cut;
        if i + 1 < sites.len() {
            // The new instance comes up and loads its state: balances, open orders, markets.
            let (next_ip, next_ua) = &sites[i + 1];
            let mut at = cut;
            for _ in 0..g.rng.gen_range(5..40) {
                let path = ["/v1/accounts", "/v1/orders", "/v1/market/all", "/v1/orders/chance"][g.rng.gen_range(0..4)];
                call(g, at, k, *next_ip, next_ua, path, "VALID");
                at += g.rng.gen_range(100..3000);
            }
        }
    }
    let p = Person::new(g, &account);
    if allow.is_empty() && g.rng.gen_bool(0.5) {
        let hand = client(world::HAND_CLIENTS, g.rng.gen_range(0..world::HAND_CLIENTS.len()), 1);
        let clock = Clock::of(&p.hours);
        let rate = p.per_hour * g.rng.gen_range(0.1..0.5);
        Act::hand(k, hand, clock, rate, None, g)
            .run(g, g.start, g.end, |g, at| Some((p.pc_addr(g, at, false)?, "VALID")));
    }
    p.logins(g, g.start, g.end);
    if g.rng.gen_bool(0.3) {
        let clock = Clock::of(&p.hours);
        let per_day = g.rng.gen_range(0.05..0.4);
        own_withdrawals(g, &account, None, &clock, per_day);
    }
    vec![Truth::honest(&key, &account, segment, "ho_cloud_migration")]
}

/// An office worker whose work laptop is on the company's VPN in working hours — its
/// concentrator at head office, a cloud security gateway, or a VPN of their own on a rented
/// server that keeps their trading off the company network — and who trades (and logs in) from
/// that laptop at work, from home in the evening.
fn work_vpn(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-wv-{n:03}");
    let key = format!("ho-key-wv-{n:03}");
    let mut p = Person::new(g, &account);
    let begin = g.rng.gen_range(7..=10);
    let len = g.rng.gen_range(8..=11);
    let from_home = g.rng.gen_bool(0.45);
    p.schedule = if from_home { [Loc::Home; 24] } else { office_schedule(begin, len) };
    let exits: Vec<IpAddr> = match g.rng.gen_range(0..3) {
        0 => {
            let ip = fixed_ip(g, world::KR_OFFICE);
            (0..g.rng.gen_range(1..=4u8)).map(|i| near(ip, i)).collect()
        }
        1 => {
            let gateways: Vec<(u32, u32)> = world::CLOUD.iter().take(3).chain(KR_HOSTING).copied().collect();
            (0..g.rng.gen_range(3..=16)).map(|_| server_ip(g, &gateways)).collect()
        }
        _ => vec![server_ip(g, world::CLOUD)],
    };
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], false);
    let k = key.as_str();
    let clock = Clock::of(&p.hours);
    let work = |at: i64| daily(at, begin, len);
    let laptop_ua = if g.rng.gen_bool(0.5) {
        p.pc_client.clone()
    } else {
        client(world::HAND_CLIENTS, g.rng.gen_range(0..world::HAND_CLIENTS.len()), 0)
    };
    let laptop_device = device(g, "pc");
    // Trading at the desk in idle minutes, any time of the working day.
    let at_work =
        Act::hand(k, laptop_ua, Clock::flat(), p.per_hour * g.rng.gen_range(0.3..1.5), Some(p.trading.clone()), g);
    at_work.run(g, g.start, g.end, |g, at| work(at).then(|| (exits[g.rng.gen_range(0..exits.len())], "VALID")));
    let home = p.home;
    let evening = Act::hand(k, p.pc_client.clone(), clock, p.per_hour, Some(p.trading.clone()), g);
    evening.run(g, g.start, g.end, |g, at| {
        (!work(at) && p.whereabouts(at) == Whereabouts::At(Loc::Home)).then(|| (g.session_addr(home, at), "VALID"))
    });
    let mut t = p.trading.clone();
    t.orders_per_call *= 0.5;
    let phone = Act::hand(k, p.phone_client.clone(), clock, p.per_hour * g.rng.gen_range(0.2..0.8), Some(t), g);
    let carrier = Access::Phone { asn: p.carrier };
    phone.run(g, g.start, g.end, |g, at| {
        if work(at) && !from_home {
            Some((g.session_addr(carrier, at), "VALID"))
        } else {
            Some((p.phone_addr(g, at)?, "VALID"))
        }
    });
    let (web, app) = web_app(g);
    logins(g, &account, p.logins_per_day, &clock, g.start, g.end, |g, at| {
        if work(at) && g.rng.gen_bool(0.6) {
            Some((exits[g.rng.gen_range(0..exits.len())], web, laptop_device.clone()))
        } else if work(at) {
            Some((g.session_addr(carrier, at), app, p.phone_device.clone()))
        } else {
            person_place(g, &p, web, app, at)
        }
    });
    vec![Truth::honest(&key, &account, "retail", "ho_work_vpn")]
}

/// People whose day is the night: night-shift workers (hospitals, factories, logistics) who
/// check the market on the phone at work and trade at home after the shift; people who stay up
/// for the US session; those who run a late business and trade after closing. Their own steady
/// pattern, from the start.
fn night_shift(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-ns-{n:03}");
    let key = format!("ho-key-ns-{n:03}");
    let mut p = Person::new(g, &account);
    p.schedule = [Loc::Home; 24];
    // (when work starts, how long it lasts: zero when they stay at home) and their hours.
    let (work_from, work_len, clock) = match g.rng.gen_range(0..3) {
        0 => {
            let from = g.rng.gen_range(20..=23);
            let len = g.rng.gen_range(8..=10);
            let sleep = from + len + g.rng.gen_range(0..3);
            let sleep_len = g.rng.gen_range(6..9);
            let mut w = [0.0; 24];
            for (h, x) in w.iter_mut().enumerate() {
                let h = h as i64;
                let after_sleep = (h - sleep).rem_euclid(24);
                *x = if (h - from).rem_euclid(24) < len {
                    0.2 + g.rng.gen::<f64>() * 0.6
                } else if after_sleep < sleep_len {
                    0.02
                } else {
                    0.6 + g.rng.gen::<f64>()
                };
            }
            (from, len, Clock::new(w))
        }
        1 => {
            let up = g.rng.gen_range(11..15);
            let down = g.rng.gen_range(27..31);
            let mut c = Clock::awake(g, up, down);
            // The US open, and its first hours.
            for h in [23, 0, 1] {
                c.0[h] *= 1.5 + g.rng.gen::<f64>() * 2.5;
            }
            (0, 0, Clock::new(c.0))
        }
        _ => {
            let from = g.rng.gen_range(15..=18);
            let len = g.rng.gen_range(8..=10);
            let unwind = g.rng.gen_range(2..5);
            let mut w = [0.02; 24];
            for (h, x) in w.iter_mut().enumerate() {
                let since = (h as i64 - from).rem_euclid(24);
                *x = if since < len {
                    0.1 + g.rng.gen::<f64>() * 0.3
                } else if since < len + unwind {
                    0.8 + g.rng.gen::<f64>() * 1.2
                } else if (10..from as usize).contains(&h) {
                    0.4 + g.rng.gen::<f64>()
                } else {
                    0.02
                };
            }
            (from, len, Clock::new(w))
        }
    };
    let work = |at: i64| work_len > 0 && daily(at, work_from, work_len);
    let workplace = g.rng.gen_bool(0.4).then(|| {
        let asn = pick(&mut g.rng, world::KR_OFFICE);
        Access::fixed(g, asn)
    });
    let withdraws = g.rng.gen_bool(0.25);
    let by_api = withdraws && g.rng.gen_bool(0.4);
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], by_api);
    let k = key.as_str();
    let home = p.home;
    let carrier = Access::Phone { asn: p.carrier };
    let pc = Act::hand(k, p.pc_client.clone(), clock, p.per_hour, Some(p.trading.clone()), g);
    pc.run(g, g.start, g.end, |g, at| (!work(at)).then(|| (g.session_addr(home, at), "VALID")));
    let phone =
        Act::hand(k, p.phone_client.clone(), clock, p.per_hour * g.rng.gen_range(0.3..1.0), Some(p.trading.clone()), g);
    phone.run(g, g.start, g.end, |g, at| {
        let access = match workplace {
            Some(w) if work(at) && g.rng.gen_bool(0.5) => w,
            _ if work(at) => carrier,
            _ if g.rng.gen_bool(0.6) => home,
            _ => carrier,
        };
        Some((g.session_addr(access, at), "VALID"))
    });
    let (web, app) = web_app(g);
    logins(g, &account, p.logins_per_day, &clock, g.start, g.end, |g, at| {
        if work(at) || g.rng.gen_bool(0.5) {
            let access = if work(at) { carrier } else { home };
            Some((g.session_addr(access, at), app, p.phone_device.clone()))
        } else {
            Some((g.session_addr(home, at), web, p.pc_device.clone()))
        }
    });
    if withdraws {
        let per_day = g.rng.gen_range(0.05..0.5);
        own_withdrawals(g, &account, by_api.then_some(k), &clock, per_day);
    }
    vec![Truth::honest(&key, &account, "retail", "ho_night_shift")]
}

/// A heavy trader in many markets whose activity and order sizes swell with every market move
/// (and who stays up when the market does), from the home PC, the phone and sometimes the
/// office.
fn market_swing(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-ms-{n:03}");
    let key = format!("ho-key-ms-{n:03}");
    let segment = if g.rng.gen_bool(0.3) { "pro" } else { "retail" };
    let mut p = Person::new(g, &account);
    if g.rng.gen_bool(0.3) {
        let asn = pick(&mut g.rng, world::KR_OFFICE);
        p.office = Some(Access::fixed(g, asn));
    }
    p.logins_per_day = g.rng.gen_range(3.0..15.0);
    let majors = g.rng.gen_range(3..=7);
    let smalls = g.rng.gen_range(2..=9);
    let mut symbols = some_of(g, world::MAJORS, majors);
    symbols.extend(some_of(g, world::SMALL_CAPS, smalls));
    let trading = Trading {
        symbols,
        size_ln_mu: g.rng.gen_range(13.0..16.5),
        size_ln_sigma: g.rng.gen_range(0.6..1.3),
        orders_per_call: g.rng.gen_range(0.08..0.45),
        cancel_share: g.rng.gen_range(0.1..0.5),
    };
    let mut clock = Clock::of(&p.hours);
    let nights = g.rng.gen_range(0.1..0.5);
    clock.0.iter_mut().for_each(|x| *x += nights);
    let clock = Clock::new(clock.0);
    let withdraws = g.rng.gen_bool(0.5);
    let by_api = withdraws && g.rng.gen_bool(0.5);
    reg.account(&account, segment, &["KR"]);
    key_line(reg, &key, &account, &[], by_api);
    let k = key.as_str();
    let ua = if g.rng.gen_bool(0.6) {
        p.pc_client.clone()
    } else {
        client(world::HAND_CLIENTS, g.rng.gen_range(0..world::HAND_CLIENTS.len()), 1)
    };
    let per_hour = jitter(g, 2.0, 0.5);
    let mut desk = Act::hand(k, ua, clock, per_hour, Some(trading.clone()), g);
    desk.swing = g.rng.gen_range(0.7..1.6);
    desk.order_swing = g.rng.gen_range(0.3..1.0);
    desk.size_swing = g.rng.gen_range(0.1..0.8);
    desk.calls = (2, g.rng.gen_range(10..40));
    desk.run(g, g.start, g.end, |g, at| Some((p.pc_addr(g, at, true)?, "VALID")));
    let mut mobile =
        Act::hand(k, p.phone_client.clone(), clock, per_hour * g.rng.gen_range(0.3..1.0), Some(trading), g);
    mobile.swing = desk.swing;
    mobile.size_swing = desk.size_swing * 0.5;
    mobile.run(g, g.start, g.end, |g, at| Some((p.phone_addr(g, at)?, "VALID")));
    p.logins(g, g.start, g.end);
    if withdraws {
        let per_day = g.rng.gen_range(0.1..1.0);
        own_withdrawals(g, &account, by_api.then_some(k), &clock, per_day);
    }
    vec![Truth::honest(&key, &account, segment, "ho_market_swing")]
}

/// Where a student is: in a lecture hall or the dormitory (the campus's own addresses), or on a
/// line or phone of their own.
#[derive(Debug, Clone, Copy)]
enum Spot {
    Lecture,
    Dorm,
    Line(Access),
}

/// University students: a script on the laptop, on the campus network in class and (for those
/// in the dormitory) at night, at home otherwise, on the phone in between; up late. Dormitory
/// students go home to their parents' for a stretch.
fn campus(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let asn = if g.rng.gen_bool(0.7) { world::KR_CAMPUS } else { pick(&mut g.rng, world::KR_OFFICE) };
    let lecture = {
        let a = Access::fixed(g, asn);
        let ip = g.session_addr(a, 0);
        (0..g.rng.gen_range(1..=3u8)).map(|i| near(ip, i)).collect::<Vec<_>>()
    };
    let dorm = {
        let a = Access::fixed(g, asn);
        g.session_addr(a, 0)
    };
    // Programs students start with: Python scripts, mostly.
    let scripts: Vec<usize> = (0..world::BOT_CLIENTS.len())
        .filter(|&i| {
            let t = world::BOT_CLIENTS[i].0.to_ascii_lowercase();
            ["python", "pyupbit", "pybithumb", "aiohttp"].iter().any(|w| t.contains(w))
        })
        .collect();
    let mut out = Vec::new();
    for m in 0..g.rng.gen_range(2..=6) {
        let account = format!("ho-cs-{n:03}-{m}");
        let key = format!("ho-key-cs-{n:03}-{m}");
        let mut p = Person::new(g, &account);
        p.schedule = [Loc::Home; 24];
        if !scripts.is_empty() {
            p.pc_client = client(world::BOT_CLIENTS, scripts[g.rng.gen_range(0..scripts.len())], g.rng.gen_range(0..3));
        }
        let wake = g.rng.gen_range(8..12);
        let sleep = g.rng.gen_range(24..29);
        let clock = Clock::awake(g, wake, sleep);
        // This semester's timetable: a few blocks of classes between nine and six.
        let mut classes = [false; 24];
        for _ in 0..g.rng.gen_range(1..=4) {
            let from = g.rng.gen_range(9..17usize);
            for c in classes.iter_mut().skip(from).take(g.rng.gen_range(1..=3)) {
                *c = true;
            }
        }
        let in_dorm = g.rng.gen_bool(0.4);
        let parents = if in_dorm {
            let asn = pick(&mut g.rng, world::KR_FIXED);
            let from = moment(g, 0.1, 0.8, 0);
            let len = g.rng.gen_range(DAY..3 * DAY);
            Some((Access::line(g, asn), from, from + len))
        } else {
            None
        };
        let home = p.home;
        let spot = move |at: i64| -> Spot {
            match parents {
                Some((line, a, b)) if at >= a && at < b => Spot::Line(line),
                _ if classes[local_hour(at) as usize] => Spot::Lecture,
                _ if in_dorm => Spot::Dorm,
                _ => Spot::Line(home),
            }
        };
        let addr = |g: &mut Gen<'_>, at: i64, spot: Spot| -> IpAddr {
            match spot {
                Spot::Lecture => lecture[g.rng.gen_range(0..lecture.len())],
                Spot::Dorm => dorm,
                Spot::Line(a) => g.session_addr(a, at),
            }
        };
        reg.account(&account, "retail", &["KR"]);
        key_line(reg, &key, &account, &[], false);
        let k = key.as_str();
        let trading = {
            let mut t = retail_trading(g);
            t.size_ln_mu = g.rng.gen_range(10.0..13.0);
            t
        };
        let laptop = Act::hand(k, p.pc_client.clone(), clock, p.per_hour, Some(trading.clone()), g);
        laptop.run(g, g.start, g.end, |g, at| Some((addr(g, at, spot(at)), "VALID")));
        let carrier = Access::Phone { asn: p.carrier };
        let phone =
            Act::hand(k, p.phone_client.clone(), clock, p.per_hour * g.rng.gen_range(0.2..0.8), Some(trading), g);
        phone.run(g, g.start, g.end, |g, at| {
            let s = if g.rng.gen_bool(0.5) { spot(at) } else { Spot::Line(carrier) };
            Some((addr(g, at, s), "VALID"))
        });
        let (web, app) = web_app(g);
        let laptop_device = p.pc_device.clone();
        let phone_device = p.phone_device.clone();
        logins(g, &account, p.logins_per_day, &clock, g.start, g.end, |g, at| {
            if g.rng.gen_bool(0.5) {
                Some((addr(g, at, spot(at)), web, laptop_device.clone()))
            } else {
                Some((addr(g, at, Spot::Line(carrier)), app, phone_device.clone()))
            }
        });
        out.push(Truth::honest(&key, &account, "retail", "ho_campus"));
    }
    out
}

/// A conscript doing military service: the phone only in the barracks' evening phone hours,
/// crowding the day's trading into them, nothing the rest of the day; at home on leave. Some keep
/// a bot running in the cloud meanwhile.
fn conscript(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-cj-{n:03}");
    let key = format!("ho-key-cj-{n:03}");
    let mut p = Person::new(g, &account);
    p.schedule = [Loc::Home; 24];
    let opens = g.rng.gen_range(17 * 60 + 30..=18 * 60 + 30);
    let closes = g.rng.gen_range(20 * 60 + 30..=21 * 60 + 30);
    let leave = g.rng.gen_bool(0.4).then(|| {
        let from = moment(g, 0.05, 0.8, 0);
        (from, from + g.rng.gen_range(DAY..9 * DAY))
    });
    let on_leave = |at: i64| leave.is_some_and(|(a, b)| at >= a && at < b);
    let phone_hours = move |at: i64| {
        let m = local_minute(at);
        m >= opens && m < closes
    };
    let bot = g.rng.gen_bool(0.35).then(|| (server_ip(g, world::CLOUD), g.rng.gen_bool(0.5)));
    let allow: Vec<String> = match bot {
        Some((ip, true)) => vec![format!("{ip}/32")],
        _ => Vec::new(),
    };
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &allow, false);
    let k = key.as_str();
    if let Some((ip, _)) = bot {
        let ua = client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), 2);
        let rate = jitter(g, 1.0, 0.6);
        Act::program(k, ua, rate, Some(Trading::bot(&mut g.rng)), g).run(g, g.start, g.end, |_, _| Some((ip, "VALID")));
    }
    let carrier = Access::Phone { asn: p.carrier };
    // With an allowlist for the bot, the phone app cannot use the key: the web app it is.
    if allow.is_empty() {
        let rate = g.rng.gen_range(1.0..6.0);
        let barracks = Act::hand(k, p.phone_client.clone(), Clock::flat(), rate, Some(p.trading.clone()), g);
        barracks.run(g, g.start, g.end, |g, at| {
            (phone_hours(at) && !on_leave(at)).then(|| (g.session_addr(carrier, at), "VALID"))
        });
    }
    if let Some((a, b)) = leave {
        // At home on leave; with the bot's allowlist in the way, on the exchange's own app only.
        if allow.is_empty() {
            let clock = Clock::of(&p.hours);
            let pc = Act::hand(k, other_version(g, &p.pc_client), clock, p.per_hour, Some(p.trading.clone()), g);
            pc.run(g, a, b, |g, at| Some((p.pc_addr(g, at, false)?, "VALID")));
            let phone = Act::hand(k, p.phone_client.clone(), clock, p.per_hour * 0.5, Some(p.trading.clone()), g);
            phone.run(g, a, b, |g, at| Some((p.phone_addr(g, at)?, "VALID")));
        }
        p.logins(g, a, b);
    }
    let (_, app) = web_app(g);
    // Opening the app once or twice in the phone hours.
    let rate = g.rng.gen_range(0.3..1.2);
    let device = p.phone_device.clone();
    logins(g, &account, rate * 24.0, &Clock::flat(), g.start, g.end, |g, at| {
        (phone_hours(at) && !on_leave(at)).then(|| (g.session_addr(carrier, at), app, device.clone()))
    });
    vec![Truth::honest(&key, &account, "retail", "ho_conscript")]
}

/// Someone whose laptop now and then goes online through a phone's hotspot — their own or a
/// family member's, on another carrier — when the home line is down or when they are out with
/// it (a train, a café without Wi-Fi, the parents' house).
fn tethering(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-th-{n:03}");
    let key = format!("ho-key-th-{n:03}");
    let p = Person::new(g, &account);
    let clock = Clock::of(&p.hours);
    let outages: Vec<(i64, i64)> = (0..g.rng.gen_range(0..=2))
        .map(|_| {
            let a = moment(g, 0.0, 0.95, 0);
            (a, a + g.rng.gen_range(HOUR..14 * HOUR))
        })
        .collect();
    let out_per_day = g.rng.gen_range(0.1..1.0);
    let outings = stretches(g, out_per_day, &clock, (30 * MIN, 5 * HOUR));
    let family_carrier = pick(&mut g.rng, world::KR_MOBILE);
    let whose = g.rng.gen_range(0.0..1.0);
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], false);
    let k = key.as_str();
    let own = Access::Phone { asn: p.carrier };
    let family = Access::Phone { asn: family_carrier };
    let hotspot = |g: &mut Gen<'_>, at: i64| {
        let a = if g.rng.gen_bool(whose) { own } else { family };
        g.session_addr(a, at)
    };
    let laptop = Act::hand(k, p.pc_client.clone(), clock, p.per_hour, Some(p.trading.clone()), g);
    laptop.run(g, g.start, g.end, |g, at| {
        if within(&outings, at) || (within(&outages, at) && p.whereabouts(at) == Whereabouts::At(Loc::Home)) {
            return Some((hotspot(g, at), "VALID"));
        }
        Some((p.pc_addr(g, at, false)?, "VALID"))
    });
    let phone =
        Act::hand(k, p.phone_client.clone(), clock, p.per_hour * g.rng.gen_range(0.2..0.8), Some(p.trading.clone()), g);
    phone.run(g, g.start, g.end, |g, at| {
        if within(&outages, at) {
            return Some((g.session_addr(own, at), "VALID"));
        }
        Some((p.phone_addr(g, at)?, "VALID"))
    });
    let (web, app) = web_app(g);
    logins(g, &account, p.logins_per_day, &clock, g.start, g.end, |g, at| {
        if within(&outings, at) || within(&outages, at) {
            let ip = hotspot(g, at);
            return Some((ip, web, p.pc_device.clone()));
        }
        person_place(g, &p, web, app, at)
    });
    vec![Truth::honest(&key, &account, "retail", "ho_tethering")]
}

/// A life change during the run: a new phone (and sometimes a new carrier with the number
/// ported), a move or a switch of broadband provider, a new or reinstalled PC with another
/// program — and the same person trading as before.
fn new_setup(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-nd-{n:03}");
    let key = format!("ho-key-nd-{n:03}");
    let before = Person::new(g, &account);
    let mut after = Person::new(g, &account);
    let change = moment(g, 0.2, 0.8, 4 * HOUR);
    let (mut phone, mut moved, mut pc) = (g.rng.gen_bool(0.5), g.rng.gen_bool(0.4), g.rng.gen_bool(0.35));
    if !(phone || moved || pc) {
        match g.rng.gen_range(0..3) {
            0 => phone = true,
            1 => moved = true,
            _ => pc = true,
        }
    }
    after.schedule = before.schedule;
    after.hours = before.hours;
    after.trading = before.trading.clone();
    after.per_hour = before.per_hour;
    after.logins_per_day = before.logins_per_day;
    after.office = before.office;
    after.home = if moved {
        // Switching providers for the sign-up bonus, or moving house.
        let asn = if g.rng.gen_bool(0.7) { pick(&mut g.rng, world::KR_FIXED) } else { before_asn(&before) };
        Access::line(g, asn)
    } else {
        before.home
    };
    if phone {
        after.phone_client = other_version(g, &before.phone_client);
        if g.rng.gen_bool(0.3) {
            after.phone_client = client(world::PHONE_CLIENTS, g.rng.gen_range(0..4), 1);
        }
        after.carrier = if g.rng.gen_bool(0.35) { pick(&mut g.rng, world::KR_MOBILE) } else { before.carrier };
    } else {
        after.phone_client = before.phone_client.clone();
        after.phone_device = before.phone_device.clone();
        after.carrier = before.carrier;
    }
    if pc {
        after.pc_client = if g.rng.gen_bool(0.5) {
            other_version(g, &before.pc_client)
        } else {
            client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), 2)
        };
    } else {
        after.pc_client = before.pc_client.clone();
        after.pc_device = before.pc_device.clone();
    }
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], false);
    let k = key.as_str();
    for (p, from, to) in [(&before, g.start, change), (&after, change, g.end)] {
        let clock = Clock::of(&p.hours);
        Act::hand(k, p.pc_client.clone(), clock, p.per_hour, Some(p.trading.clone()), g)
            .run(g, from, to, |g, at| Some((p.pc_addr(g, at, false)?, "VALID")));
        Act::hand(k, p.phone_client.clone(), clock, p.per_hour * 0.5, Some(p.trading.clone()), g).run(
            g,
            from,
            to,
            |g, at| Some((p.phone_addr(g, at)?, "VALID")),
        );
        p.logins(g, from, to);
    }
    vec![Truth::honest(&key, &account, "retail", "ho_new_setup")]
}

fn before_asn(p: &Person) -> u32 {
    match p.home {
        Access::Line { asn, .. } => asn,
        _ => world::KT,
    }
}

// ---------------------------------------------------------------------------------------------
// Sharing families.

/// Someone else drives the owner's own PC by remote desktop: a relative or a "trading coach"
/// (a common investment scam), while the owner is at work, asleep, or watching — the owner's
/// line, the owner's program, other markets and sizes.
fn remote_desktop(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-rd-{n:03}");
    let key = format!("ho-key-rd-{n:03}");
    let mut p = Person::new(g, &account);
    let mode = g.rng.gen_range(0..10);
    let base = if mode < 4 {
        // At work all day, the PC at home left on.
        p.schedule = office_schedule(g.rng.gen_range(8..=10), g.rng.gen_range(8..=10));
        let asn = pick(&mut g.rng, world::KR_OFFICE);
        p.office = Some(Access::fixed(g, asn));
        "home_and_phone"
    } else if g.rng.gen_bool(0.5) {
        "home_only"
    } else {
        "home_and_phone"
    };
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], false);
    let onset = moment(g, 0.2, 0.65, 8 * HOUR);
    person_uses(g, &p, &key, base, g.end);
    p.logins(g, g.start, g.end);
    let sessions_when: Vec<(i64, i64)> = if mode >= 7 {
        let mut w = [0.05; 24];
        for x in w.iter_mut().skip(19).take(4) {
            *x = 1.0;
        }
        let per_day = g.rng.gen_range(0.4..1.5);
        stretches(g, per_day, &Clock::new(w), (40 * MIN, 3 * HOUR))
    } else {
        Vec::new()
    };
    let mark = g.mark();
    let k = key.as_str();
    let ua =
        if g.rng.gen_bool(0.75) { p.pc_client.clone() } else { client(world::HAND_CLIENTS, g.rng.gen_range(0..2), 1) };
    let trading = {
        let mut t = retail_trading(g);
        if g.rng.gen_bool(0.6) {
            let k = g.rng.gen_range(1..=3);
            t.symbols = some_of(g, world::SMALL_CAPS, k);
        }
        t.size_ln_mu = g.rng.gen_range(11.5..16.0);
        t.orders_per_call = g.rng.gen_range(0.1..0.5);
        t
    };
    let home = p.home;
    let owner_away = |at: i64| match mode {
        0..=3 => matches!(p.whereabouts(at), Whereabouts::At(Loc::Office)),
        4..=6 => p.hours.at(at) < 0.15 && p.whereabouts(at) == Whereabouts::At(Loc::Home),
        _ => within(&sessions_when, at),
    };
    // The operator's first move: connecting in and looking at the balances.
    let first = {
        let mut at = onset;
        while at < g.end && !owner_away(at) {
            at += 10 * MIN;
        }
        at
    };
    if first < g.end {
        let ip = g.session_addr(home, first);
        for i in 0..g.rng.gen_range(1..5) {
            let at = first + i * g.rng.gen_range(3 * SEC..30 * SEC);
            call(g, at, k, ip, &ua, "/v1/accounts", "VALID");
        }
    }
    let operator = Act::hand(k, ua, Clock::flat(), jitter(g, 1.5, 0.5), Some(trading), g);
    operator.run(g, first, g.end, |g, at| owner_away(at).then(|| (g.session_addr(home, at), "VALID")));
    if g.rng.gen_bool(0.5) {
        // Logging in to the exchange's site on that PC as well.
        let web = world::LOGIN_WEB[0];
        let device = p.pc_device.clone();
        let per_day = g.rng.gen_range(1.0..6.0);
        logins(g, &account, per_day, &Clock::flat(), first, g.end, |g, at| {
            owner_away(at).then(|| (g.session_addr(home, at), web, device.clone()))
        });
    }
    let onset_ms = g.first_since(mark).unwrap_or(onset);
    vec![Truth::shared(&key, &account, "retail", "ho_remote_desktop", onset_ms)]
}

/// A key bought on a marketplace (a messenger channel, a forum) by one buyer in Korea, who
/// trades with it from the phone — on the carrier, in cafés — while the owner goes on using it.
fn marketplace_buyer(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-mb-{n:03}");
    let key = format!("ho-key-mb-{n:03}");
    let (p, base) = owner(g, reg, &account);
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], false);
    let onset = moment(g, 0.2, 0.7, 10 * HOUR);
    person_uses(g, &p, &key, base, g.end);
    p.logins(g, g.start, g.end);
    let mark = g.mark();
    let k = key.as_str();
    let carrier = Access::Phone { asn: pick(&mut g.rng, world::KR_MOBILE) };
    let cafes: Vec<IpAddr> = (0..g.rng.gen_range(1..=3))
        .map(|_| {
            if !reg.hotspots.is_empty() && g.rng.gen_bool(0.5) {
                reg.hotspots[g.rng.gen_range(0..reg.hotspots.len())]
            } else {
                fixed_ip(g, world::KR_FIXED)
            }
        })
        .collect();
    let cafe_share = g.rng.gen_range(0.1..0.5);
    let ua = client(world::PHONE_CLIENTS, g.rng.gen_range(0..world::PHONE_CLIENTS.len()), g.rng.gen_range(0..2));
    let hours = Hours::person(&mut g.rng);
    let clock = Clock::of(&hours);
    let trading = {
        let mut t = retail_trading(g);
        if g.rng.gen_bool(0.4) {
            t.symbols.extend(some_of(g, world::SMALL_CAPS, 2));
        }
        t
    };
    let place = |g: &mut Gen<'_>, at: i64| {
        if g.rng.gen_bool(cafe_share) {
            cafes[g.rng.gen_range(0..cafes.len())]
        } else {
            g.session_addr(carrier, at)
        }
    };
    // Trying the key as soon as it arrives.
    let ip = place(g, onset);
    call(g, onset, k, ip, &ua, "/v1/accounts", "VALID");
    let buyer = Act::hand(k, ua, clock, jitter(g, 0.8, 0.6), Some(trading), g);
    buyer.run(g, onset, g.end, |g, at| Some((place(g, at), "VALID")));
    if g.rng.gen_bool(0.3) {
        // Sold with the account's password: the buyer's app logs in too.
        let app = world::LOGIN_APP[g.rng.gen_range(0..world::LOGIN_APP.len())];
        let dev = device(g, "ph");
        let per_day = g.rng.gen_range(0.5..4.0);
        logins(g, &account, per_day, &clock, onset, g.end, |g, at| Some((place(g, at), app, dev.clone())));
    }
    let onset_ms = g.first_since(mark).unwrap_or(onset);
    vec![Truth::shared(&key, &account, "retail", "ho_marketplace_buyer", onset_ms)]
}

/// A key leaked from the owner's bot configuration (a public repository, a compromised
/// machine), used slowly and carefully from Korean addresses — a VPN's Korean exits or a
/// Korean cloud host — with the owner's own program string: mostly reading balances, a few
/// orders late on. When the owner's allowlist stops it, it tries a few times and gives up.
fn leak_careful(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-lk-{n:03}");
    let key = format!("ho-key-lk-{n:03}");
    let (p, base) = owner(g, reg, &account);
    let in_cloud = g.rng.gen_bool(0.4);
    let bot_ip = if in_cloud { server_ip(g, world::CLOUD) } else { g.session_addr(p.home, g.start) };
    let allow: Vec<String> = if in_cloud && g.rng.gen_bool(0.4) { vec![format!("{bot_ip}/32")] } else { Vec::new() };
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &allow, false);
    let onset = moment(g, 0.2, 0.7, 10 * HOUR);
    let k = key.as_str();
    let ua = p.pc_client.clone();
    let bot_rate = jitter(g, 1.0, 0.7);
    let bot = Act::program(k, ua.clone(), bot_rate, Some(Trading::bot(&mut g.rng)), g);
    let home = p.home;
    bot.run(g, g.start, g.end, |g, at| Some((if in_cloud { bot_ip } else { g.session_addr(home, at) }, "VALID")));
    if allow.is_empty() {
        person_uses(g, &p, &key, base, g.end);
    }
    p.logins(g, g.start, g.end);
    let mark = g.mark();
    let exits: Vec<IpAddr> = if g.rng.gen_bool(0.6) {
        (0..g.rng.gen_range(2..=5)).map(|_| server_ip(g, KR_HOSTING)).collect()
    } else {
        let mut hosts = KR_HOSTING.to_vec();
        hosts.push((16509, 3));
        vec![server_ip(g, &hosts)]
    };
    let outcome = if allow.is_empty() { "VALID" } else { "IP_NOT_ALLOWED" };
    let clock = if g.rng.gen_bool(0.5) { Clock::of(&p.hours) } else { Clock::awake(g, 9, 25) };
    let per_hour = g.rng.gen_range(0.05..0.5);
    let watch_until = if allow.is_empty() { g.end } else { onset + g.rng.gen_range(5 * MIN..6 * HOUR) };
    let mut tries = if allow.is_empty() { u32::MAX } else { g.rng.gen_range(3..12) };
    let mut at = onset;
    call(g, at, k, exits[0], &ua, "/v1/accounts", outcome);
    while at < watch_until && tries > 0 {
        let gap = (-(1.0 - g.rng.gen::<f64>()).ln() / per_hour * HOUR as f64) as i64;
        at += gap.max(MIN);
        if at >= watch_until || g.rng.gen::<f64>() * clock.peak() > clock.at(at) {
            continue;
        }
        let ip = exits[g.rng.gen_range(0..exits.len())];
        for i in 0..g.rng.gen_range(1..=3) {
            let path = if g.rng.gen_bool(0.8) { "/v1/accounts" } else { "/v1/orders" };
            let at = at + i * g.rng.gen_range(SEC..20 * SEC);
            call(g, at, k, ip, &ua, path, outcome);
        }
        tries = tries.saturating_sub(1);
    }
    if allow.is_empty() && g.rng.gen_bool(0.6) {
        // Cashing out through a thin market: buying, with the owner's money, a small coin the
        // thief holds, at a price of their own.
        let mut at = onset + g.rng.gen_range(3 * HOUR..30 * HOUR);
        let symbol = world::SMALL_CAPS[g.rng.gen_range(0..world::SMALL_CAPS.len())];
        let size = g.rng.gen_range(13.0..17.5);
        for _ in 0..g.rng.gen_range(1..=4) {
            let ip = exits[g.rng.gen_range(0..exits.len())];
            call(g, at, k, ip, &ua, "/v1/orders/chance", "VALID");
            let notional = krw((size + 0.4 * normal(&mut g.rng)).exp());
            let placed = at + g.rng.gen_range(200..3000);
            g.order(placed, k, symbol, true, true, notional);
            at += g.rng.gen_range(30 * SEC..40 * MIN);
        }
    }
    let onset_ms = g.first_since(mark).unwrap_or(onset);
    vec![Truth::shared(&key, &account, "retail", "ho_leak_careful", onset_ms)]
}

/// An account phished (a fake exchange site, a text message): the phisher logs in from a new
/// device and network, the key is resold, and the buyer reads the balances, sells into coins
/// that travel fast and withdraws them through the key to new addresses. The owner notices
/// late, if at all.
fn phished_resale(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-ph-{n:03}");
    let key = format!("ho-key-ph-{n:03}");
    let (p, base) = owner(g, reg, &account);
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], true);
    let phish = moment(g, 0.15, 0.6, 8 * HOUR);
    person_uses(g, &p, &key, base, g.end);
    p.logins(g, g.start, g.end);
    if g.rng.gen_bool(0.3) {
        let clock = Clock::of(&p.hours);
        let per_day = g.rng.gen_range(0.05..0.5);
        own_withdrawals(g, &account, Some(&key), &clock, per_day);
    }
    let mark = g.mark();
    let k = key.as_str();
    let network = |g: &mut Gen<'_>| -> Access {
        match g.rng.gen_range(0..10) {
            0..=3 => {
                let dest = &world::ABROAD[g.rng.gen_range(0..world::ABROAD.len())];
                let asn = dest.networks[g.rng.gen_range(0..dest.networks.len())];
                Access::fixed(g, asn)
            }
            4..=6 => {
                let asn = pick(&mut g.rng, KR_HOSTING);
                Access::server(g, asn)
            }
            _ => Access::Phone { asn: pick(&mut g.rng, world::KR_MOBILE) },
        }
    };
    let phisher = network(g);
    let web = world::LOGIN_WEB[g.rng.gen_range(0..world::LOGIN_WEB.len())];
    let phisher_device = device(g, "pc");
    let mut at = phish;
    for _ in 0..g.rng.gen_range(1..=4) {
        let ip = g.session_addr(phisher, at);
        g.login(at, &account, ip, web, &phisher_device);
        at += g.rng.gen_range(MIN..45 * MIN);
    }
    // Resold: the phisher may work the key himself or hand it on.
    let buyer = if g.rng.gen_bool(0.4) { phisher } else { network(g) };
    let ua = client(world::BOT_CLIENTS, [0, 1, 2, 7][g.rng.gen_range(0..4)], g.rng.gen_range(0..3));
    let mut at = at + g.rng.gen_range(10 * MIN..10 * HOUR);
    let ip = g.session_addr(buyer, at);
    for _ in 0..g.rng.gen_range(2..10) {
        call(g, at, k, ip, &ua, "/v1/accounts", "VALID");
        at += g.rng.gen_range(SEC..2 * MIN);
    }
    // Everything sold into one coin that moves quickly and cheaply.
    let out = ["USDT", "XRP", "TRX", "BTC"][g.rng.gen_range(0..4)];
    let price = ASSETS.iter().find(|(a, _)| *a == out).map_or(1.0, |(_, p)| *p);
    let total = (g.rng.gen_range(13.0..17.5f64) + 0.5 * normal(&mut g.rng)).exp();
    let sells = g.rng.gen_range(1..=4);
    for _ in 0..sells {
        let symbol = p.trading.symbols[g.rng.gen_range(0..p.trading.symbols.len())];
        call(g, at, k, ip, &ua, "/v1/orders/chance", "VALID");
        g.order(at + 300, k, symbol, false, true, krw(total / sells as f64));
        at += g.rng.gen_range(10 * SEC..10 * MIN);
    }
    let market = format!("KRW-{out}");
    call(g, at, k, ip, &ua, "/v1/orders/chance", "VALID");
    g.order(at + 300, k, &market, true, true, krw(total));
    at += g.rng.gen_range(5 * MIN..4 * HOUR);
    let addresses: Vec<String> = (0..g.rng.gen_range(1..=2)).map(|_| wallet(g, out)).collect();
    let parts = g.rng.gen_range(1..=5);
    let mut last = at;
    for _ in 0..parts {
        let ip = g.session_addr(buyer, at);
        call(g, at, k, ip, &ua, "/v1/accounts", "VALID");
        let address = &addresses[g.rng.gen_range(0..addresses.len())];
        let share = total / parts as f64 * g.rng.gen_range(0.7..1.1);
        let when = at + g.rng.gen_range(500..5000);
        withdraw(g, when, Some(k), &account, out, price, share, address);
        last = at;
        at += g.rng.gen_range(MIN..70 * MIN);
    }
    if g.rng.gen_bool(0.5) {
        // Coming back to see what is left.
        let watcher = Act::program(k, ua.clone(), g.rng.gen_range(0.05..0.5), None, g);
        watcher.run(g, last, g.end, |g, at| Some((g.session_addr(buyer, at), "VALID")));
    }
    let onset_ms = g.first_since(mark).unwrap_or(phish);
    if g.rng.gen_bool(0.5) {
        // The owner finds the balance gone and logs in again and again.
        let (web, app) = web_app(g);
        let noticed = last + g.rng.gen_range(10 * MIN..20 * HOUR);
        for _ in 0..g.rng.gen_range(2..8) {
            let t = noticed + g.rng.gen_range(0..2 * HOUR);
            if let Some((ip, ua, dev)) = person_place(g, &p, web, app, t) {
                g.login(t, &account, ip, ua, &dev);
            }
        }
    }
    vec![Truth::shared(&key, &account, "retail", "ho_phished_resale", onset_ms)]
}

/// A freelance developer (hired on a freelancing market) who built the owner's bot with the
/// owner's key, tested it from their own line, handed it over — and kept the key, to check on
/// it now and then or to run a strategy of their own.
fn freelancer_kept(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let account = format!("ho-fl-{n:03}");
    let key = format!("ho-key-fl-{n:03}");
    let mut p = Person::new(g, &account);
    let program = [0, 1, 2, 3, 5, 7, 10][g.rng.gen_range(0..7)];
    let release = g.rng.gen_range(1..3);
    let ua = client(world::BOT_CLIENTS, program, release);
    let dev_ua = if g.rng.gen_bool(0.5) { client(world::BOT_CLIENTS, program, release - 1) } else { ua.clone() };
    let hired = moment(g, 0.05, 0.45, 4 * HOUR);
    let handed = hired + g.rng.gen_range(4 * HOUR..30 * HOUR);
    let in_cloud = g.rng.gen_bool(0.5);
    let bot_ip = in_cloud.then(|| server_ip(g, world::CLOUD));
    reg.account(&account, "retail", &["KR"]);
    key_line(reg, &key, &account, &[], false);
    let k = key.as_str();
    p.pc_client = client(world::HAND_CLIENTS, g.rng.gen_range(0..world::HAND_CLIENTS.len()), 0);
    person_uses(g, &p, &key, "home_and_phone", g.end);
    p.logins(g, g.start, g.end);
    let home = p.home;
    let bot = Act::program(k, ua.clone(), jitter(g, 1.5, 0.6), Some(Trading::bot(&mut g.rng)), g);
    bot.run(g, handed, g.end, |g, at| Some((bot_ip.unwrap_or_else(|| g.session_addr(home, at)), "VALID")));
    let mark = g.mark();
    let line = {
        let asn =
            if g.rng.gen_bool(0.7) { pick(&mut g.rng, world::KR_FIXED) } else { pick(&mut g.rng, world::KR_OFFICE) };
        Access::line(g, asn)
    };
    let up = g.rng.gen_range(9..14);
    let down = g.rng.gen_range(22..28);
    let dev_clock = Clock::awake(g, up, down);
    // Development: bursts of calls, test orders at the minimum, most cancelled.
    let ip = g.session_addr(line, hired);
    call(g, hired, k, ip, &dev_ua, "/v1/accounts", "VALID");
    let mut testing = Act::hand(k, dev_ua, dev_clock, g.rng.gen_range(1.0..4.0), None, g);
    testing.calls = (3, g.rng.gen_range(20..80));
    testing.gap = (200, g.rng.gen_range(2..10) * SEC);
    testing.trading = Some(Trading {
        symbols: some_of(g, world::MAJORS, 2),
        size_ln_mu: g.rng.gen_range(8.5..10.5),
        size_ln_sigma: g.rng.gen_range(0.1..0.5),
        orders_per_call: g.rng.gen_range(0.05..0.3),
        cancel_share: g.rng.gen_range(0.6..1.0),
    });
    testing.run(g, hired, handed, |g, at| Some((g.session_addr(line, at), "VALID")));
    let after = if g.rng.gen_bool(0.5) {
        let mut t = retail_trading(g);
        t.symbols = some_of(g, world::SMALL_CAPS, 2);
        Some(t)
    } else {
        None
    };
    let rate = g.rng.gen_range(0.03..0.4);
    let mut keeps = Act::hand(k, ua, dev_clock, rate, after, g);
    keeps.calls = (1, 6);
    let from = handed + g.rng.gen_range(HOUR..DAY);
    keeps.run(g, from, g.end, |g, at| Some((g.session_addr(line, at), "VALID")));
    let onset_ms = g.first_since(mark).unwrap_or(hired);
    vec![Truth::shared(&key, &account, "retail", "ho_freelancer_kept", onset_ms)]
}

/// A copy-trading "leader" who collects followers' keys (each hands theirs over on their own
/// day) and trades all of them, and the leader's own, from one cloud server with one program:
/// the same orders within moments of each other, each sized to its account.
fn copy_trading(g: &mut Gen<'_>, reg: &mut Registry, n: usize) -> Vec<Truth> {
    let ip = server_ip(g, world::CLOUD);
    let ua = client(world::BOT_CLIENTS, g.rng.gen_range(0..world::BOT_CLIENTS.len()), g.rng.gen_range(0..3));
    let followers = g.rng.gen_range(3..=12);
    // (account, key, joined, size relative to the leader's)
    let mut members: Vec<(String, String, i64, f64)> = Vec::new();
    let leader_account = format!("ho-ct-{n:03}-0");
    let leader_key = format!("ho-key-ct-{n:03}-0");
    let leader = Person::new(g, &leader_account);
    reg.account(&leader_account, "retail", &["KR"]);
    key_line(reg, &leader_key, &leader_account, &[format!("{ip}/32")], false);
    leader.logins(g, g.start, g.end);
    members.push((leader_account, leader_key, g.start - DAY, 1.0));
    for m in 1..=followers {
        let account = format!("ho-ct-{n:03}-{m}");
        let key = format!("ho-key-ct-{n:03}-{m}");
        let (p, base) = owner(g, reg, &account);
        reg.account(&account, "retail", &["KR"]);
        key_line(reg, &key, &account, &[], false);
        let joined = moment(g, 0.1, 0.8, 6 * HOUR);
        // Most stop trading by themselves once the leader trades for them; they look in.
        let until = if g.rng.gen_bool(0.6) { joined } else { g.end };
        person_uses(g, &p, &key, base, until);
        if until < g.end && g.rng.gen_bool(0.6) {
            let clock = Clock::of(&p.hours);
            let rate = p.per_hour * g.rng.gen_range(0.1..0.6);
            Act::hand(&key, p.phone_client.clone(), clock, rate, None, g)
                .run(g, joined, g.end, |g, at| Some((p.phone_addr(g, at)?, "VALID")));
        }
        p.logins(g, g.start, g.end);
        let ratio = (0.9 * normal(&mut g.rng)).exp() * g.rng.gen_range(0.05..1.5);
        members.push((account, key, joined, ratio));
    }
    let mut first: Vec<Option<i64>> = vec![None; members.len()];
    // The program reads every account it holds every few minutes, one after the other.
    let poll = g.rng.gen_range(2 * MIN..15 * MIN);
    let mut t = g.start - g.rng.gen_range(0..poll);
    while t < g.end {
        let mut at = t;
        for (j, (_, key, joined, _)) in members.iter().enumerate() {
            if at < *joined {
                continue;
            }
            g.request(at, key, ip, &ua, "VALID");
            first[j] = earliest(g, first[j], at);
            at += g.rng.gen_range(20..400);
        }
        t += poll + g.rng.gen_range(-poll / 10..=poll / 10);
    }
    // The leader's signals, placed for everyone at once.
    let symbols: Vec<&'static str> = {
        let a = g.rng.gen_range(1..=4);
        let b = g.rng.gen_range(0..=3);
        let mut s = some_of(g, world::MAJORS, a);
        if b > 0 {
            s.extend(some_of(g, world::SMALL_CAPS, b));
        }
        s
    };
    let size = g.rng.gen_range(13.0..16.5);
    let cancel_share = g.rng.gen_range(0.0..0.4);
    let per_hour = g.rng.gen_range(0.2..2.5);
    sessions(g, g.start - DAY, g.end, per_hour, &Clock::flat(), 0.5, (1, 1), (0, 0), |g, at, _, _| {
        let symbol = symbols[g.rng.gen_range(0..symbols.len())];
        let buy = g.rng.gen_bool(0.5);
        let signal = (size + 0.5 * normal(&mut g.rng)).exp();
        let cancel = g.rng.gen_bool(cancel_share);
        let mut when = at;
        for (j, (_, key, joined, ratio)) in members.iter().enumerate() {
            // Not yet following, or not enough balance left for this one.
            if when < *joined || (j > 0 && g.rng.gen_bool(0.08)) {
                continue;
            }
            g.request(when, key, ip, &ua, "VALID");
            let notional = krw(signal * ratio);
            let placed = when + g.rng.gen_range(20..150);
            g.order(placed, key, symbol, buy, true, notional);
            if cancel {
                let later = when + g.rng.gen_range(MIN..20 * MIN);
                g.order(later, key, symbol, buy, false, notional);
            }
            first[j] = earliest(g, first[j], when);
            when += g.rng.gen_range(15..700);
        }
    });
    members
        .iter()
        .zip(first)
        .enumerate()
        .map(|(j, ((account, key, joined, _), first))| {
            if j == 0 {
                Truth::honest(key, account, "retail", "ho_copy_leader_own")
            } else {
                Truth::shared(key, account, "retail", "ho_copy_followers", first.unwrap_or(*joined))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{HONEST, SHARING};
    use crate::{held_out_families, simulate, Params, SyntheticAddresses};

    fn params() -> Params {
        Params { seed: 11, accounts: 300, hours: 24, sharing_rate: 0.01, ..Default::default() }
    }

    #[test]
    fn every_held_out_family_is_drawn_with_its_truth() {
        let p = params();
        let out = simulate(&p, &SyntheticAddresses);
        let end = p.start_ms + p.hours * crate::gen::HOUR;
        assert_eq!(held_out_families().len(), HONEST.len() + SHARING.len());
        for family in held_out_families() {
            let keys: Vec<_> = out.keys.iter().filter(|t| t.family == family).collect();
            assert!(!keys.is_empty(), "{family}: no key");
            for t in keys {
                assert!(t.key_id.starts_with("ho-") && t.account_id.starts_with("ho-"), "{t:?}");
                if SHARING.contains(&family) {
                    let onset = t.onset_ms.unwrap_or_else(|| panic!("{t:?}: shared without onset"));
                    assert!(onset >= p.start_ms && onset < end, "{t:?}: onset outside the run");
                } else {
                    assert!(!t.shared_key(), "{t:?}");
                }
            }
        }
        let mut ids: Vec<&str> = out.keys.iter().map(|t| t.key_id.as_str()).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n, "key ids collide");
        // Every line is a valid v1 record.
        for line in out.events.iter().filter(|l| l.contains("\"ho-")) {
            keysentinel_detect::event::parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let a = simulate(&params(), &SyntheticAddresses);
        let b = simulate(&params(), &SyntheticAddresses);
        assert_eq!(a.events, b.events);
        assert_eq!(a.keys, b.keys);
    }
}
