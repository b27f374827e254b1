//! Each indicator family fires on the behaviour it names and stays quiet on the honest
//! look-alike; evidence of the owner counts against suspicion; the score needs corroboration
//! for the heavy stages. Addresses are placed by a small table (the real data is exercised by
//! the replay tests).

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_detect::event::{format_rfc3339_ms, parse_line};
use keysentinel_detect::geo::{Coverage, Locate, Network, Place};
use keysentinel_detect::{Config, Engine, Indicator, Stage};
use std::collections::HashMap;
use std::net::IpAddr;

const T0: i64 = 1_795_824_000_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60;

struct Table(HashMap<IpAddr, Place>);

fn place(country: &str, lat: f32, lon: f32, asn: u32, network: Network) -> Place {
    let c = country.as_bytes();
    Place {
        country: Some([c[0], c[1]]),
        lat_lon: Some((lat, lon)),
        accuracy_km: 20.0,
        asn: Some(asn),
        range: 0,
        network,
        plausible: true,
    }
}

impl Table {
    fn new() -> Self {
        let mut t = HashMap::new();
        let mut add = |ip: &str, p: Place| t.insert(ip.parse().unwrap(), p);
        add("211.1.1.1", place("KR", 37.56, 126.97, 4766, Network::Access)); // Seoul, KT
        add("211.1.1.2", place("KR", 37.50, 127.03, 4766, Network::Access));
        add("211.1.2.1", place("KR", 37.50, 127.03, 4766, Network::Access)); // other KT households
        add("211.1.3.1", place("KR", 37.50, 127.03, 4766, Network::Access));
        for i in 0..40 {
            // KT phones: a new address, in another /24, at every attach.
            add(&format!("39.7.{i}.9"), place("KR", 37.50, 127.03, 4766, Network::Access));
        }
        // KT announces its IPv6 under AS3559: a dual-stack household's prefix, and another's.
        add("2001:e60:1:100::1", place("KR", 37.56, 126.97, 3559, Network::Access));
        add("2001:e60:2:100::1", place("KR", 37.50, 127.03, 3559, Network::Access));
        add("106.1.1.1", place("KR", 37.52, 126.92, 17858, Network::Access)); // LG U+: homes and phones
        add("2001:4430:1::1", place("KR", 37.52, 126.92, 17853, Network::Access)); // LG U+ phones' IPv6
        add("2001:2d8:1::1", place("KR", 37.52, 126.92, 3786, Network::Access)); // LG U+ homes' IPv6
        add("175.1.1.1", place("KR", 37.56, 126.97, 4766, Network::Access)); // a KT home's next address
        add("59.1.1.1", place("KR", 35.18, 129.07, 9318, Network::Access)); // Busan, SK Broadband
        add("223.1.1.1", place("KR", 37.56, 126.97, 9644, Network::Mobile)); // SKT mobile
        add("113.1.1.1", place("VN", 21.03, 105.85, 45899, Network::Access)); // Hanoi
        add("126.1.1.1", place("JP", 35.68, 139.69, 4713, Network::Access)); // Tokyo
        add("1.1.1.9", place("AU", -33.87, 151.21, 1221, Network::Access)); // Sydney, Telstra
        add("1.1.2.9", place("AU", -31.95, 115.86, 1221, Network::Access)); // Perth, the same carrier
        add("185.1.1.1", place("MX", 19.43, -99.13, 60068, Network::Vpn)); // a VPN exit
        add("3.1.1.1", place("US", 39.04, -77.49, 16509, Network::Hosting));
        add("3.1.1.2", place("US", 45.84, -119.70, 16509, Network::Hosting));
        add("34.1.1.1", place("US", 41.26, -95.86, 15169, Network::Hosting));
        add("110.1.1.1", place("KR", 37.40, 127.10, 23576, Network::Hosting)); // a Korean cloud
        let mut abroad = place("US", 40.7, -74.0, 9457, Network::Access); // a Korean office line the data places abroad
        abroad.plausible = false;
        add("61.1.1.1", abroad);
        for m in 0..=100 {
            // A hundred households, and their parents' homes in Busan.
            add(&format!("10.{m}.1.1"), place("KR", 37.5, 127.0, 4766, Network::Access));
            add(&format!("20.{m}.1.1"), place("KR", 35.18, 129.07, 9318, Network::Access));
        }
        for i in 0..12 {
            // Residential addresses, each another home.
            add(&format!("121.{i}.1.1"), place("KR", 37.4, 127.1, [4766, 9318, 17858][i % 3], Network::Access));
            for x in 0..30 {
                // Thirty proxy pools' homes.
                add(&format!("122.{x}.{i}.1"), place("KR", 37.4, 127.1, [4766, 9318, 17858][i % 3], Network::Access));
            }
        }
        Table(t)
    }
}

impl Locate for Table {
    fn locate(&self, ip: IpAddr) -> Place {
        self.0.get(&ip).copied().unwrap_or(Place::UNKNOWN)
    }
    fn coverage(&self) -> Coverage {
        Coverage { city: true, asn: true }
    }
}

/// Per key: the indicators still active at the end and the highest level reached.
type Out = HashMap<String, (Vec<Indicator>, Option<Stage>)>;

fn run(records: &[String]) -> Out {
    run_with(Config::default(), records).0
}

fn run_with(cfg: Config, records: &[String]) -> (Out, Vec<keysentinel_detect::Decision>) {
    let geo = Table::new();
    let mut engine = Engine::new(cfg, &geo);
    let mut out = Out::new();
    let mut decisions = Vec::new();
    let mut last = T0;
    for line in records {
        let rec = parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        last = rec.ts().unwrap_or(last);
        engine.ingest(&rec);
        for d in engine.take_decisions() {
            let e = out.entry(d.key_id.clone()).or_default();
            e.1 = e.1.max(Some(d.level));
            decisions.push(d);
        }
    }
    for line in records {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(k) = v["key_id"].as_str() {
            let fired: Vec<Indicator> = engine.indicators(k, last).into_iter().map(|(i, _)| i).collect();
            let e = out.entry(k.to_owned()).or_default();
            for i in fired {
                if !e.0.contains(&i) {
                    e.0.push(i);
                }
            }
        }
    }
    (out, decisions)
}

fn fired(out: &Out, key: &str, ind: Indicator) -> bool {
    out.get(key).is_some_and(|(i, _)| i.contains(&ind))
}

fn level(out: &Out, key: &str) -> Option<Stage> {
    out.get(key).and_then(|(_, l)| *l)
}

fn registry(key: &str, account: &str) -> Vec<String> {
    registry_allow(key, account, "[]")
}

fn registry_allow(key: &str, account: &str, allow: &str) -> Vec<String> {
    vec![
        format!(r#"{{"type":"account","account_id":"{account}","segment":"retail","declared_countries":["KR"]}}"#),
        format!(
            r#"{{"type":"key","key_id":"{key}","account_id":"{account}","scopes":["read","trade"],"ip_allowlist":{allow}}}"#
        ),
    ]
}

fn at(min: i64) -> String {
    format_rfc3339_ms(T0 + min * MIN)
}

fn req(min: i64, key: &str, ip: &str, ua: &str, outcome: &str) -> String {
    format!(
        r#"{{"type":"request","ts":"{}","key_id":"{key}","ip":"{ip}","user_agent":"{ua}","method":"GET","path":"/v1/accounts","outcome":"{outcome}"}}"#,
        at(min)
    )
}

fn login(min: i64, account: &str, ip: &str, device: &str) -> String {
    format!(
        r#"{{"type":"login","ts":"{}","account_id":"{account}","ip":"{ip}","user_agent":"ExchangeApp/3.14","device_id":"{device}"}}"#,
        at(min)
    )
}

fn order(min: i64, key: &str, symbol: &str, notional: f64) -> String {
    format!(
        r#"{{"type":"order","ts":"{}","key_id":"{key}","symbol":"{symbol}","side":"buy","action":"place","notional":{notional}}}"#,
        at(min)
    )
}

/// A learned key: 30 requests from home over two hours.
fn history(key: &str, account: &str) -> Vec<String> {
    let mut r = registry(key, account);
    r.extend((0..30).map(|i| req(i * 4, key, "211.1.1.1", "ccxt/4.5.90", "VALID")));
    r
}

/// A learned key that was also used from `ip` with `ua` in a session of its own: a line it has
/// used in two sessions once it returns there (a household's line is used session after
/// session; a phone's carrier-NAT address is not).
fn history_with(key: &str, account: &str, ip: &str, ua: &str) -> Vec<String> {
    let mut r = registry(key, account);
    // Two sessions at home (0–36 and 80–116 min), one at `ip` between them.
    r.extend((0..10).map(|i| req(i * 4, key, "211.1.1.1", "ccxt/4.5.90", "VALID")));
    r.push(req(50, key, ip, ua, "VALID"));
    r.extend((0..10).map(|i| req(80 + i * 4, key, "211.1.1.1", "ccxt/4.5.90", "VALID")));
    r
}

/// An exchange's quiet honest keys, each used once a day from its own home for `days` days
/// from day 0: a population for the engine to calibrate its rates on, as a deployed engine
/// has (a cold engine leans on the expert's priors, on purpose cautious).
fn quiet_population(keys: usize, days: i64) -> Vec<String> {
    let mut r = Vec::new();
    for m in 0..keys {
        r.extend(registry(&format!("p{m}"), &format!("b{m}")));
    }
    for day in 0..days {
        for m in 0..keys {
            let ip = format!("10.{}.{}.1", m / 250, m % 250);
            r.push(req(day * 24 * HOUR + (m as i64) % 600, &format!("p{m}"), &ip, "ccxt/4.5.90", "VALID"));
        }
    }
    r
}

/// Records in time order (registry records, which carry no time, first), as a feed has them.
fn in_time_order(records: Vec<String>) -> Vec<String> {
    let mut keyed: Vec<(i64, usize, String)> = records
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            (v["ts"].as_str().and_then(keysentinel_detect::event::parse_rfc3339_ms).unwrap_or(0), i, l)
        })
        .collect();
    keyed.sort_by_key(|(t, i, _)| (*t, *i));
    keyed.into_iter().map(|(_, _, l)| l).collect()
}

// ---- where the key is used from ----

#[test]
fn impossible_travel_fires_for_minutes_not_for_a_flight() {
    let mut r = history("k", "a");
    r.push(req(125, "k", "113.1.1.1", "ccxt/4.5.90", "VALID")); // Hanoi 5 minutes later
    assert!(fired(&run(&r), "k", Indicator::ImpossibleTravel));
    let mut r = history("k", "a");
    r.push(req(120 + 5 * 60, "k", "113.1.1.1", "ccxt/4.5.90", "VALID")); // after a 5-hour flight
    assert!(!fired(&run(&r), "k", Indicator::ImpossibleTravel));
}

#[test]
fn the_owner_logged_in_at_home_while_the_key_is_used_abroad() {
    // The key is used at home in the morning; that evening the owner logs in to the web site
    // from the same home line, and ten minutes later the key is used from Hanoi: not the owner.
    let mut r = history("k", "a");
    r.push(login(600, "a", "211.1.1.1", "pc-1"));
    r.push(req(610, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(fired(&run(&r), "k", Indicator::ImpossibleTravel));
    // A login from a carrier's address that is no line of the key's own — a phone abroad,
    // routed home, looks like one — places nobody.
    let mut r = history("k", "a");
    r.push(login(600, "a", "39.7.3.9", "ph-1"));
    r.push(req(610, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(!fired(&run(&r), "k", Indicator::ImpossibleTravel));
}

#[test]
fn concurrent_use_needs_alternation_not_a_move() {
    let mut r = history("k", "a");
    r.push(req(121, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    r.push(req(123, "k", "211.1.1.1", "ccxt/4.5.90", "VALID")); // back home two minutes later
    assert!(fired(&run(&r), "k", Indicator::ConcurrentUse));
    // A trip: home, then abroad, and never back within the window.
    let mut r = history("k", "a");
    r.push(req(120 + 300, "k", "126.1.1.1", "ccxt/4.5.90", "VALID"));
    r.push(req(120 + 310, "k", "126.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(!fired(&run(&r), "k", Indicator::ConcurrentUse));
}

#[test]
fn places_the_owner_logs_in_from_are_theirs() {
    // The owner at home and in a Hanoi hotel, logging in from both: their own two places.
    let mut r = history("k", "a");
    r.push(login(100, "a", "211.1.1.1", "ph-1"));
    r.push(login(118, "a", "113.1.1.1", "ph-1"));
    r.push(req(121, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    r.push(req(123, "k", "211.1.1.1", "ccxt/4.5.90", "VALID"));
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::ConcurrentUse), "{out:?}");
    assert!(!fired(&out, "k", Indicator::ImpossibleTravel));
    assert!(!fired(&out, "k", Indicator::OutsideDeclared), "the owner was seen in VN");
    // The same without the hotel login, then the login a minute after: it takes the firing back.
    let mut r = history("k", "a");
    r.push(login(100, "a", "211.1.1.1", "ph-1"));
    r.push(req(121, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    r.push(req(123, "k", "211.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(fired(&run(&r), "k", Indicator::ConcurrentUse));
    r.push(login(124, "a", "113.1.1.1", "ph-1"));
    assert!(!fired(&run(&r), "k", Indicator::ConcurrentUse), "taken back by the owner's login there");
}

#[test]
fn a_line_abroad_the_owners_own_laptop_reaches_from_home_is_a_tunnel_not_a_place() {
    // The owner's laptop (known from a login at home) logs in through a line abroad — the
    // head office's VPN, a provider the data does not name — two minutes after the key was
    // used at home; the laptop's program then uses the key through it while the phone at home
    // uses it on the home line. One person, one of the two lines a tunnel.
    let tunnel = |device: &str| {
        let mut r = history("k", "a");
        r.insert(2, login(100, "a", "39.7.1.9", "pc-1"));
        r.push(login(118, "a", "113.1.1.1", device));
        for m in [121, 125, 129] {
            r.push(req(m, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
            r.push(req(m + 2, "k", "211.1.1.1", "CoinPilot/5.2.3", "VALID"));
        }
        run(&r)
    };
    let out = tunnel("pc-1");
    assert!(!fired(&out, "k", Indicator::ConcurrentUse), "{out:?}");
    assert!(!fired(&out, "k", Indicator::ImpossibleTravel), "{out:?}");
    // The same from a device the owner never used: someone in Hanoi with the owner's password.
    let out = tunnel("pc-2");
    assert!(fired(&out, "k", Indicator::ConcurrentUse), "{out:?}");
    // The owner's laptop after a real flight is where it is: no tunnel, and a stranger's use
    // of the home line while the owner is in Hanoi is someone else's.
    let mut r = history("k", "a");
    r.insert(2, login(100, "a", "39.7.1.9", "pc-1"));
    r.push(login(120 + 5 * 60, "a", "113.1.1.1", "pc-1"));
    for m in [120 + 5 * 60 + 2, 120 + 5 * 60 + 6] {
        r.push(req(m, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
        r.push(req(m + 2, "k", "211.1.1.1", "CoinPilot/5.2.3", "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::ConcurrentUse));
}

#[test]
fn a_roaming_phone_routed_home_is_not_travel_but_a_stranger_abroad_is() {
    // Abroad after a flight: the hotel's line in Tokyo, and the phone on its KT carrier, which
    // routes it home — a new Korean address at every attach, a minute apart from the hotel.
    let mut r = history("k", "a");
    for i in 0..6 {
        let ip = if i % 2 == 0 { "126.1.1.1".to_owned() } else { format!("39.7.{i}.9") };
        r.push(req(120 + 5 * 60 + i, "k", &ip, "ccxt/4.5.90", "VALID"));
    }
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::ImpossibleTravel), "{:?}", out.get("k"));
    assert!(!fired(&out, "k", Indicator::ConcurrentUse), "{:?}", out.get("k"));
    // Someone in Hanoi five minutes after the owner at home, on the first request.
    let mut r = history("k", "a");
    r.push(req(121, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(fired(&run(&r), "k", Indicator::ImpossibleTravel));
}

#[test]
fn a_dual_stack_household_is_one_line_but_a_neighbour_on_ipv6_is_another() {
    // One program at home over IPv4 (KT, AS4766) and IPv6 (KT, AS3559) by turns, in session
    // after session: each connection over either, one household.
    let mut r = history("k", "a");
    for session in [117, 200, 300] {
        for i in 0..8 {
            let ip = if i % 2 == 0 { "2001:e60:1:100::1" } else { "211.1.1.1" };
            r.push(req(session + i, "k", ip, "ccxt/4.5.90", "VALID"));
        }
    }
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::AlternatingNetworks), "{:?}", out.get("k"));
    assert!(!fired(&out, "k", Indicator::Unfamiliar), "one ISP's IPv4 and IPv6: {:?}", out.get("k"));
    // Another household on the same ISP's IPv6, with its own program, taking turns with the
    // owner's line.
    let mut r = history_with("k", "a", "2001:e60:2:100::1", "okhttp/4.12");
    for i in 0..6 {
        let (ip, ua) = if i % 2 == 0 { ("2001:e60:2:100::1", "okhttp/4.12") } else { ("211.1.1.1", "ccxt/4.5.90") };
        r.push(req(121 + i * 2, "k", ip, ua, "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::AlternatingNetworks));
}

#[test]
fn a_dual_stack_household_given_a_new_ipv4_address_is_still_one_line() {
    // The household above; after a router restart the ISP hands it another IPv4 address in
    // another block, and its IPv6 prefix stays. Session after session the program goes on over
    // both: the prefix follows the household to its new address.
    let session = |r: &mut Vec<String>, at: i64, v4: &str| {
        for i in 0..8 {
            let ip = if i % 2 == 0 { "2001:e60:1:100::1" } else { v4 };
            r.push(req(at + i, "k", ip, "ccxt/4.5.90", "VALID"));
        }
    };
    let mut r = history("k", "a");
    for at in [117, 200] {
        session(&mut r, at, "211.1.1.1");
    }
    for at in [300, 360, 420, 480, 540] {
        session(&mut r, at, "175.1.1.1");
    }
    let (_, d) = run_with(Config::default(), &r);
    eprintln!(
        "{:?}",
        d.iter().map(|d| d.reasons.iter().map(|r| r.evidence.clone()).collect::<Vec<_>>()).collect::<Vec<_>>()
    );
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::AlternatingNetworks), "{:?}", out.get("k"));
    // While the old address is still in use, the new one is another household's: the prefix
    // stays where it was, and two lines take turns.
    let mut r = history("k", "a");
    session(&mut r, 117, "211.1.1.1");
    for at in [200, 260, 320, 380] {
        for i in 0..8 {
            let ip = ["2001:e60:1:100::1", "175.1.1.1", "211.1.1.1", "175.1.1.1"][i % 4];
            r.push(req(at + i as i64 * 3, "k", ip, "ccxt/4.5.90", "VALID"));
        }
    }
    assert!(fired(&run(&r), "k", Indicator::AlternatingNetworks));
}

#[test]
fn a_carriers_addresses_across_a_country_are_not_travel() {
    // Sydney and Perth a minute apart on one carrier: the city data, not a flight.
    let mut r = registry("k", "a");
    r.extend((0..30).map(|i| req(i * 4, "k", "1.1.1.9", "ccxt/4.5.90", "VALID")));
    r.push(req(121, "k", "1.1.2.9", "ccxt/4.5.90", "VALID"));
    r.push(req(122, "k", "1.1.1.9", "ccxt/4.5.90", "VALID"));
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::ImpossibleTravel));
    assert!(!fired(&out, "k", Indicator::ConcurrentUse));
}

#[test]
fn vpn_exits_do_not_teleport_but_are_new_networks_unless_the_owner_logs_in_through_them() {
    let mut r = history("k", "a");
    for i in 0..4 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "185.1.1.1" } else { "211.1.1.1" }, "ccxt/4.5.90", "VALID"));
    }
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::ImpossibleTravel));
    assert!(!fired(&out, "k", Indicator::ConcurrentUse));
    assert!(fired(&out, "k", Indicator::NewHostingNetwork));
    assert!(level(&out, "k") < Some(Stage::Warn), "one VPN is not sharing: {:?}", out["k"]);
    // Logging in through the same VPN: the owner's.
    let mut r = history("k", "a");
    r.push(login(110, "a", "185.1.1.1", "pc-1"));
    r.push(req(121, "k", "185.1.1.1", "ccxt/4.5.90", "VALID"));
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::NewHostingNetwork));
    assert!(!fired(&out, "k", Indicator::OutsideDeclared));
}

#[test]
fn lines_taking_turns_need_both_to_return_and_one_not_the_owners() {
    // A phone on its carrier's mobile network beside the home line: quiet.
    let mut r = history("k", "a");
    for i in 0..6 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "223.1.1.1" } else { "211.1.1.2" }, "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::AlternatingNetworks));
    // A KT phone beside a KT home: the phone takes a new address (and /24) at every attach,
    // so its lines never return: quiet.
    let mut r = history("k", "a");
    for i in 0..12 {
        let ip = if i % 2 == 0 { format!("39.7.{i}.9") } else { "211.1.1.1".to_owned() };
        r.push(req(121 + i * 2, "k", &ip, "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::AlternatingNetworks));
    // Busan and Seoul homes taking turns, each used in sessions before: both return.
    let mut r = history_with("k", "a", "59.1.1.1", "ccxt/4.5.90");
    for i in 0..6 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "59.1.1.1" } else { "211.1.1.2" }, "ccxt/4.5.90", "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::AlternatingNetworks));
    // Home and office where the owner logs in from both: theirs.
    let mut r = history_with("k", "a", "59.1.1.1", "ccxt/4.5.90");
    r.push(login(100, "a", "59.1.1.1", "pc-1"));
    r.push(login(101, "a", "211.1.1.2", "pc-1"));
    for i in 0..6 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "59.1.1.1" } else { "211.1.1.2" }, "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::AlternatingNetworks));
    // Three households on the same carrier (one ASN, three lines in three of its blocks)
    // taking turns, over two sessions.
    let turns = |lines: [&str; 3]| {
        let mut r = history("k", "a");
        for i in 0..9 {
            r.push(req(121 + i * 2, "k", lines[i as usize % 3], "ccxt/4.5.90", "VALID"));
        }
        for i in 0..9 {
            r.push(req(200 + i * 2, "k", lines[i as usize % 3], "ccxt/4.5.90", "VALID"));
        }
        run(&r)
    };
    assert!(fired(&turns(["211.9.2.1", "211.1.1.1", "211.17.3.1"]), "k", Indicator::AlternatingNetworks));
    // A campus's dormitory, library and lecture hall: three lines of one block, one network.
    assert!(!fired(&turns(["211.1.2.1", "211.1.1.1", "211.1.3.1"]), "k", Indicator::AlternatingNetworks));
}

#[test]
fn rotating_through_many_homes_is_a_proxy_pool() {
    let mut r = history("k", "a");
    for i in 0..12 {
        r.push(req(130 + i, "k", &format!("121.{i}.1.1"), "ccxt/4.5.90", "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::IpRotation));
    // Two homes in an hour are not.
    let mut r = history("k", "a");
    for i in 0..12 {
        r.push(req(130 + i, "k", &format!("121.{}.1.1", i % 2), "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::IpRotation));
    // A dual-stack phone on LG U+ and a home on KT: five AS numbers in an hour, two operators.
    let mut r = history("k", "a");
    let networks = ["106.1.1.1", "2001:4430:1::1", "2001:2d8:1::1", "211.1.1.1", "2001:e60:1:100::1"];
    for i in 0..15 {
        r.push(req(130 + i * 3, "k", networks[i as usize % 5], "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::IpRotation), "{:?}", run(&r).get("k"));
}

#[test]
fn geography_outside_the_declared_but_not_a_data_error() {
    let mut r = history("k", "a");
    r.push(req(130, "k", "126.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(fired(&run(&r), "k", Indicator::OutsideDeclared));
    let mut r = history("k", "a");
    r.push(req(130, "k", "61.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(!fired(&run(&r), "k", Indicator::OutsideDeclared), "a Korean line the city data puts abroad");
}

// ---- with what program ----

#[test]
fn two_programs_from_two_lines_take_turns_not_two_on_one_machine_or_a_phone() {
    let turns = |a: &str, b: &str| {
        let mut r = history_with("k", "a", a, "okhttp/4.12");
        for i in 0..6 {
            let (ip, ua) = if i % 2 == 0 { (a, "okhttp/4.12") } else { (b, "ccxt/4.5.90") };
            r.push(req(121 + i * 2, "k", ip, ua, "VALID"));
        }
        r
    };
    assert!(fired(&run(&turns("59.1.1.1", "211.1.1.1")), "k", Indicator::AlternatingClients));
    assert!(!fired(&run(&turns("211.1.1.1", "211.1.1.1")), "k", Indicator::AlternatingClients), "one machine");
    assert!(!fired(&run(&turns("223.1.1.1", "211.1.1.1")), "k", Indicator::AlternatingClients), "a phone");
    // The owner's bot within its allowlist beside their laptop at home, where they log in.
    let mut r = registry_allow("k", "a", r#"["3.1.1.1/32"]"#);
    r.extend((0..30).map(|i| req(i * 4, "k", "3.1.1.1", "ccxt/4.5.90", "VALID")));
    r.push(login(100, "a", "211.1.1.1", "pc-1"));
    for i in 0..6 {
        let (ip, ua) = if i % 2 == 0 { ("211.1.1.1", "PostmanRuntime/7.39") } else { ("3.1.1.1", "ccxt/4.5.90") };
        r.push(req(121 + i * 2, "k", ip, ua, "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::AlternatingClients));
}

#[test]
fn one_persons_kit_at_both_places_takes_no_turns() {
    // The owner's bot (ccxt) at home and at the office, and the phone app (okhttp) on both
    // Wi-Fis: the programs move with one person. Without either crossing, the app at the office
    // between the bot's sessions at home is a second person's program at their own place.
    let turns = |crossed: bool| {
        let office = "59.1.1.1";
        let mut r = history_with("k", "a", office, if crossed { "ccxt/4.5.90" } else { "okhttp/4.12" });
        if crossed {
            r.push(req(118, "k", "211.1.1.1", "okhttp/4.12", "VALID"));
        }
        for i in 0..6 {
            let (ip, ua) = if i % 2 == 0 { (office, "okhttp/4.12") } else { ("211.1.1.1", "ccxt/4.5.90") };
            r.push(req(121 + i * 2, "k", ip, ua, "VALID"));
        }
        run(&r)
    };
    assert!(fired(&turns(false), "k", Indicator::AlternatingClients));
    assert!(!fired(&turns(true), "k", Indicator::AlternatingClients), "{:?}", turns(true).get("k"));
}

#[test]
fn many_clients_in_a_day_churn() {
    let mut r = history("k", "a");
    for i in 0..6 {
        r.push(req(130 + i, "k", "211.1.1.1", &format!("tool{i}/1.0"), "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::ClientChurn));
    let mut r = history("k", "a");
    r.push(req(130, "k", "211.1.1.1", "okhttp/4.12", "VALID"));
    assert!(!fired(&run(&r), "k", Indicator::ClientChurn));
}

// ---- who holds the secret ----

#[test]
fn bad_signature_burst_then_use_from_the_cloud_goes_to_the_top() {
    let mut r = history("k", "a");
    r.extend((0..9).map(|_| req(121, "k", "34.1.1.1", "python-requests/2.31", "BAD_SIGNATURE")));
    assert!(!fired(&run(&r), "k", Indicator::BadSignatureBurst), "nine is under the threshold");
    r.push(req(122, "k", "34.1.1.1", "python-requests/2.31", "BAD_SIGNATURE"));
    r.push(req(140, "k", "3.1.1.1", "python-requests/2.31", "VALID"));
    let out = run(&r);
    assert!(fired(&out, "k", Indicator::BadSignatureBurst));
    assert!(fired(&out, "k", Indicator::ProbedThenUsed));
    assert_eq!(level(&out, "k"), Some(Stage::Invalidate), "unambiguous compromise");
}

#[test]
fn signed_outside_the_allowlist_unless_from_where_the_owner_logs_in() {
    let mut r = registry_allow("k", "a", r#"["3.1.1.1/32"]"#);
    r.extend((0..30).map(|i| req(i * 4, "k", "3.1.1.1", "ccxt/4.5.90", "VALID")));
    r.push(req(130, "k", "126.1.1.1", "ccxt/4.5.90", "IP_NOT_ALLOWED"));
    assert!(fired(&run(&r), "k", Indicator::OutsideAllowlist));
    let mut r = registry_allow("k", "a", r#"["3.1.1.1/32"]"#);
    r.extend((0..30).map(|i| req(i * 4, "k", "3.1.1.1", "ccxt/4.5.90", "VALID")));
    r.push(login(125, "a", "211.1.1.1", "pc-1"));
    r.push(req(130, "k", "211.1.1.1", "PostmanRuntime/7.39", "IP_NOT_ALLOWED"));
    assert!(!fired(&run(&r), "k", Indicator::OutsideAllowlist), "the owner's own home, not listed");
}

#[test]
fn the_same_place_outside_the_allowlist_day_after_day_is_one_fact_not_many() {
    // A bot on its allowlisted server; correctly signed requests refused from one home line
    // every evening for ten days (the owner's laptop, whose address the allowlist lacks), or
    // from a new home every evening (the secret in many hands). Among a population that
    // never shows it, both persist; only the second is many sightings.
    let evenings = |same_place: bool| {
        let mut r = quiet_population(4000, 11);
        r.extend(registry_allow("k", "a", r#"["3.1.1.1/32"]"#));
        for day in 0..11 {
            r.extend((0..40).map(|i| req(day * 24 * HOUR + 600 + i * 20, "k", "3.1.1.1", "ccxt/4.5.90", "VALID")));
            if day > 0 {
                let ip = if same_place { "59.1.1.7".to_owned() } else { format!("59.{day}.1.7") };
                r.push(req(day * 24 * HOUR + 1200, "k", &ip, "PostmanRuntime/7.39", "IP_NOT_ALLOWED"));
                r.push(req(day * 24 * HOUR + 1290, "k", &ip, "PostmanRuntime/7.39", "IP_NOT_ALLOWED"));
            }
        }
        run(&in_time_order(r))
    };
    let one_place = evenings(true);
    assert!(fired(&one_place, "k", Indicator::OutsideAllowlist));
    assert!(level(&one_place, "k") < Some(Stage::Invalidate), "{:?}", one_place["k"]);
    let many = evenings(false);
    assert_eq!(level(&many, "k"), Some(Stage::Invalidate), "{:?}", many["k"]);
}

#[test]
fn tries_from_the_owners_own_operator_at_home_stay_a_notice() {
    // The owner logged in at home, on KT, once; their line is renumbered every day (Korean
    // ISPs do), and each evening their laptop's requests are refused on the new line before
    // they log in from it: one household, a notice, never a suspension. The same from another
    // operator's homes, a new one each evening, is the secret in many hands.
    let evenings = |own_operator: bool| {
        let mut r = quiet_population(4000, 11);
        r.extend(registry_allow("k", "a", r#"["3.1.1.1/32"]"#));
        r.push(login(30, "a", "211.1.1.1", "pc-1"));
        for day in 0..11 {
            r.extend((0..40).map(|i| req(day * 24 * HOUR + 600 + i * 20, "k", "3.1.1.1", "ccxt/4.5.90", "VALID")));
            if day > 0 {
                let ip = if own_operator { format!("10.{}.1.1", 60 + day) } else { format!("20.{}.1.1", 60 + day) };
                r.push(req(day * 24 * HOUR + 1200, "k", &ip, "PostmanRuntime/7.39", "IP_NOT_ALLOWED"));
                r.push(req(day * 24 * HOUR + 1290, "k", &ip, "PostmanRuntime/7.39", "IP_NOT_ALLOWED"));
            }
        }
        run(&in_time_order(r))
    };
    let home = evenings(true);
    assert!(fired(&home, "k", Indicator::OutsideAllowlist));
    assert_eq!(level(&home, "k"), Some(Stage::Warn), "{:?}", home["k"]);
    let elsewhere = evenings(false);
    assert_eq!(level(&elsewhere, "k"), Some(Stage::Invalidate), "{:?}", elsewhere["k"]);
}

#[test]
fn a_withdrawal_to_a_new_address_from_a_new_network_goes_to_the_top() {
    let withdraw = |min: i64, address: &str| {
        format!(
            r#"{{"type":"withdrawal","ts":"{}","key_id":"k","asset":"BTC","amount":0.5,"address":"{address}"}}"#,
            at(min)
        )
    };
    let mut r = history("k", "a");
    r.push(withdraw(100, "bc1-own"));
    r.push(req(130, "k", "34.1.1.1", "python-requests/2.31", "VALID"));
    r.push(withdraw(131, "bc1-new"));
    let out = run(&r);
    assert!(fired(&out, "k", Indicator::NewWithdrawalAddress));
    assert_eq!(level(&out, "k"), Some(Stage::Invalidate));
    // From home, to a new address: the owner paying someone.
    let mut r = history("k", "a");
    r.push(withdraw(125, "bc1-new"));
    assert!(!fired(&run(&r), "k", Indicator::NewWithdrawalAddress));
    // From another household on the owner's own ISP: the ISP is no one's in particular.
    let mut r = history("k", "a");
    r.push(req(130, "k", "211.1.2.1", "python-requests/2.31", "VALID"));
    r.push(withdraw(131, "bc1-new"));
    assert!(fired(&run(&r), "k", Indicator::NewWithdrawalAddress));
    // Right after the owner's dual-stack home went over IPv6: the household's line, its own.
    let mut r = history("k", "a");
    for i in 0..6 {
        r.push(req(117 + i, "k", if i % 2 == 0 { "2001:e60:1:100::1" } else { "211.1.1.1" }, "ccxt/4.5.90", "VALID"));
    }
    r.push(req(124, "k", "2001:e60:1:100::1", "ccxt/4.5.90", "VALID"));
    r.push(withdraw(125, "bc1-new"));
    assert!(!fired(&run(&r), "k", Indicator::NewWithdrawalAddress));
    // Hours after the key's last use, the withdrawal's origin is unknown: no evidence either way.
    let mut r = history("k", "a");
    r.push(req(130, "k", "211.1.2.1", "python-requests/2.31", "VALID"));
    r.push(withdraw(300, "bc1-new"));
    assert!(!fired(&run(&r), "k", Indicator::NewWithdrawalAddress));
}

// ---- how it trades ----

#[test]
fn orders_coinciding_once_are_chance_again_with_the_same_accounts_a_ring() {
    let episodes = |second: [&str; 3]| {
        let mut r = Vec::new();
        for m in 0..6 {
            r.extend(registry(&format!("k{m}"), &format!("a{m}")));
        }
        r.extend(["k0", "k1", "k2"].map(|k| order(10, k, "KRW-BTC", 1e6)));
        r.extend(second.map(|k| order(30, k, "KRW-BTC", 1e6)));
        run(&r)
    };
    let strangers = episodes(["k0", "k3", "k4"]);
    assert!(!fired(&strangers, "k0", Indicator::CoordinatedOrders), "different strangers each time");
    let ring = episodes(["k0", "k1", "k2"]);
    assert!(fired(&ring, "k0", Indicator::CoordinatedOrders));
    assert!(fired(&ring, "k2", Indicator::CoordinatedOrders));
}

#[test]
fn an_order_burst_of_ones_own_but_not_when_the_whole_market_moves() {
    let burst = |market: bool| {
        let mut r = Vec::new();
        for m in 0..40 {
            r.extend(registry(&format!("k{m}"), &format!("a{m}")));
        }
        for m in 0..40 {
            let k = format!("k{m}");
            r.extend((0..30).map(|i| req(i * 4, &k, "211.1.1.1", "ccxt/4.5.90", "VALID")));
        }
        // Three hours of a quiet market: every key a few orders an hour.
        for min in (0..180).step_by(10) {
            for m in 0..40 {
                r.push(order(min, &format!("k{m}"), "KRW-BTC", 1e5));
            }
        }
        // Then k0 places an order every ten seconds for an hour; with `market`, everyone does.
        let mut burst = Vec::new();
        for s in (0..3600).step_by(10) {
            for m in 0..if market { 40 } else { 1 } {
                burst.push((180 * 60 + s, format!("k{m}")));
            }
        }
        for (s, k) in burst {
            r.push(format!(
                r#"{{"type":"order","ts":"{}","key_id":"{k}","symbol":"KRW-BTC","side":"buy","action":"place","notional":100000}}"#,
                format_rfc3339_ms(T0 + s * 1000)
            ));
        }
        run(&r)
    };
    assert!(fired(&burst(false), "k0", Indicator::OrderAnomaly));
    assert!(!fired(&burst(true), "k0", Indicator::OrderAnomaly), "the market's pace, not the key's");
}

#[test]
fn orders_placed_through_a_key_are_its_exposure_over_thirty_days() {
    let mut r = registry("k", "a");
    r.push(order(10, "k", "KRW-BTC", 1e5));
    r.push(order(20, "k", "KRW-ETH", 2.5e5));
    r.push(order(40 * 24 * HOUR, "k", "KRW-BTC", 3e5));
    let geo = Table::new();
    let mut e = Engine::new(Config::default(), &geo);
    for l in &r {
        e.ingest(&parse_line(l).unwrap());
    }
    assert_eq!(e.traded("k", T0 + 30 * MIN), Some((2, 3.5e5)));
    // Forty days on, the first two have left the window.
    assert_eq!(e.traded("k", T0 + 40 * 24 * HOUR * MIN), Some((1, 3e5)));
    assert_eq!(e.traded("nobody", T0), None);
}

#[test]
fn a_market_makers_orders_outside_its_mandates_markets_are_outside_the_mandate() {
    let mandate = |in_effect: bool| {
        format!(
            r#"{{"type":"relationship","from":"mm","to":"issuer","kind":"mm_mandate","counterparty_id":"cp-1","in_effect":{in_effect},"principal":"issuer","symbols":["BTC-KRW","KRW-ETH"]}}"#
        )
    };
    let orders = |with_mandate: bool, ended: bool, symbol: &str| {
        let mut r = vec![
            r#"{"type":"account","account_id":"mm","segment":"market_maker","declared_countries":["KR"]}"#.to_owned(),
            r#"{"type":"account","account_id":"issuer","segment":"corporate","declared_countries":["KR"]}"#.to_owned(),
            r#"{"type":"key","key_id":"k","account_id":"mm","scopes":["read","trade"],"ip_allowlist":[]}"#.to_owned(),
        ];
        if with_mandate {
            r.push(mandate(true));
        }
        if ended {
            r.push(mandate(false));
        }
        r.extend((0..5).map(|i| order(i, "k", "KRW-BTC", 1e6)));
        r.extend((0..5).map(|i| order(10 + i, "k", symbol, 1e6)));
        run(&r)
    };
    // Its mandate's markets, however the exchange spells them: quiet.
    assert!(!fired(&orders(true, false, "eth_krw"), "k", Indicator::OutsideMandate));
    // Another market: outside the mandate.
    assert!(fired(&orders(true, false, "KRW-XRP"), "k", Indicator::OutsideMandate));
    // No mandate on file, or one that ended: nothing to judge the orders against.
    assert!(!fired(&orders(false, false, "KRW-XRP"), "k", Indicator::OutsideMandate));
    assert!(!fired(&orders(true, true, "KRW-XRP"), "k", Indicator::OutsideMandate));
}

#[test]
fn a_new_actor_trading_in_the_owners_place_is_a_takeover() {
    // A day and a half of the owner (home, one program, their hours, KRW-BTC at ₩100k), then
    // someone else from a new address with another program, ten times the rate, small caps at
    // a hundred times the size, round the clock.
    // Among an exchange's keys that never change hands (a cold engine's priors are cautious).
    let takeover_for = |same_actor: bool, hours: i64| {
        let mut r = quiet_population(2000, 2);
        r.extend(registry("k", "a"));
        for day_hour in 0..36 {
            let local = (day_hour + 9) % 24;
            if (9..23).contains(&local) {
                for i in 0..6 {
                    let min = day_hour * HOUR + i * 7;
                    r.push(req(min, "k", "211.1.1.1", "ccxt/4.5.90", "VALID"));
                    if i % 3 == 0 {
                        r.push(order(min, "k", "KRW-BTC", 1e5));
                    }
                }
            }
        }
        let (ip, ua, symbol, size) = if same_actor {
            ("211.1.1.1", "ccxt/4.5.90", "KRW-MVL", 2e6)
        } else {
            ("59.1.1.1", "Go-http-client/2.0", "KRW-MVL", 1e7)
        };
        for m in 0..(hours * HOUR) {
            let min = 36 * HOUR + m;
            r.push(req(min, "k", ip, ua, "VALID"));
            if m % 2 == 0 {
                r.push(order(min, "k", symbol, size));
            }
        }
        run(&in_time_order(r))
    };
    let takeover = |same_actor: bool| takeover_for(same_actor, 10);
    let taken = takeover(false);
    assert!(fired(&taken, "k", Indicator::ActorChange));
    // The key is stopped for re-verification; forced expiry waits for a second episode or
    // another kind of evidence (a change-point alone is one moment: a new office, a holiday).
    assert_eq!(level(&taken, "k"), Some(Stage::Reverify));
    let moment = takeover_for(false, 3);
    assert!(fired(&moment, "k", Indicator::ActorChange));
    assert!(level(&moment, "k") < Some(Stage::Invalidate), "{:?}", level(&moment, "k"));
    // The owner's own new strategy — same home, same program — is not a new actor.
    assert!(!fired(&takeover(true), "k", Indicator::ActorChange));
}

#[test]
fn a_lightly_used_key_taken_over_is_a_takeover_but_an_owners_first_bot_is_not() {
    // Four hours of the owner by hand (KRW-BTC at ₩100k), then, that evening, a renter from a
    // new line with another program in a small cap at a hundred times the size — or the owner's
    // own first bot, on a cloud server with another program, in the owner's markets and sizes.
    let after = |renter: bool| {
        let mut r = registry("k", "a");
        for i in 0..48 {
            r.push(req(i * 5, "k", "211.1.1.1", "ccxt/4.5.90", "VALID"));
            if i % 6 == 0 {
                r.push(order(i * 5, "k", "KRW-BTC", 1e5));
            }
        }
        let (ip, ua, symbol, size) = if renter {
            ("59.1.1.1", "Go-http-client/2.0", "KRW-MVL", 1e7)
        } else {
            ("3.1.1.1", "Go-http-client/2.0", "KRW-BTC", 1e5)
        };
        for m in 0..(3 * HOUR) {
            let min = 20 * HOUR + m;
            r.push(req(min, "k", ip, ua, "VALID"));
            if m % 2 == 0 {
                r.push(order(min, "k", symbol, size));
            }
        }
        run(&in_time_order(r))
    };
    assert!(fired(&after(true), "k", Indicator::ActorChange), "{:?}", after(true)["k"]);
    // A young baseline does not know the key's hours and rates yet: a bot that changes only
    // those (and the client and the network) is not someone else.
    assert!(!fired(&after(false), "k", Indicator::ActorChange), "{:?}", after(false)["k"]);
}

// ---- declared purpose against behaviour ----

#[test]
fn a_key_used_against_its_purpose() {
    let keyed = |purpose: &str, vendor: &str| {
        vec![
            r#"{"type":"vendor","vendor_id":"v","status":"approved","egress_cidrs":["3.1.1.0/24"]}"#.to_owned(),
            r#"{"type":"account","account_id":"a","segment":"retail","declared_countries":["KR"]}"#.to_owned(),
            format!(
                r#"{{"type":"key","key_id":"k","account_id":"a","scopes":["read"],"ip_allowlist":[],"vendor_id":{vendor},"purpose":"{purpose}"}}"#
            ),
        ]
    };
    // A key issued for reading, used to trade: refused at the gateway, seen here.
    let trade = |purpose: &str| {
        let mut r = keyed(purpose, "null");
        r.extend((0..10).map(|i| req(i * 4, "k", "211.1.1.1", "ccxt/4.5.90", "VALID")));
        r.push(req(50, "k", "211.1.1.1", "ccxt/4.5.90", "SCOPE_DENIED"));
        run(&r)
    };
    assert!(fired(&trade("portfolio_read_only"), "k", Indicator::OutsidePurpose));
    assert!(
        !fired(&trade("own_bot"), "k", Indicator::OutsidePurpose),
        "a trading key's refusal is a scope, not a purpose"
    );
    // A key for the owner's own bot, run from an approved vendor's servers.
    let from_vendor = |purpose: &str, vendor: &str| {
        let mut r = keyed(purpose, vendor);
        r.extend((0..10).map(|i| req(i * 4, "k", "3.1.1.1", "VendorBot/3.2", "VALID")));
        run(&r)
    };
    assert!(fired(&from_vendor("own_bot", "null"), "k", Indicator::OutsidePurpose));
    assert!(!fired(&from_vendor("vendor_copy_trading", r#""v""#), "k", Indicator::OutsidePurpose), "declared");
    assert!(!fired(&from_vendor("legacy", "null"), "k", Indicator::OutsidePurpose), "no purpose to hold it to");
}

// ---- links between accounts ----

#[test]
fn one_address_driving_unrelated_accounts_with_one_program() {
    let ring = |relate: bool, ip: &str, same_program: bool| {
        let mut r = Vec::new();
        for m in 0..3 {
            r.extend(registry(&format!("k{m}"), &format!("a{m}")));
            if relate && m > 0 {
                r.push(format!(r#"{{"type":"relationship","from":"a0","to":"a{m}","kind":"broker_client"}}"#));
            }
        }
        for m in 0..3 {
            let ua = if same_program { "Desk/1.0".to_owned() } else { format!("tool{m}/1.0") };
            r.push(req(m, &format!("k{m}"), ip, &ua, "VALID"));
        }
        run(&r)
    };
    assert!(fired(&ring(false, "3.1.1.1", true), "k2", Indicator::LinkedAccounts));
    assert!(!fired(&ring(true, "3.1.1.1", true), "k2", Indicator::LinkedAccounts), "a broker and its clients");
    assert!(!fired(&ring(false, "223.1.1.1", true), "k2", Indicator::LinkedAccounts), "a mobile carrier's NAT");
    assert!(!fired(&ring(false, "211.1.1.1", false), "k2", Indicator::LinkedAccounts), "an office of colleagues");
    // Over IPv6, one machine's addresses differ in their last 64 bits (privacy addresses): one
    // /64 is one place, as one NAT address is.
    let mut r = Vec::new();
    for m in 0..3 {
        r.extend(registry(&format!("k{m}"), &format!("a{m}")));
    }
    for m in 0..3 {
        r.push(req(m, &format!("k{m}"), &format!("2001:e60:2:100::{:x}", 0x1000 + m), "Desk/1.0", "VALID"));
    }
    assert!(fired(&run(&r), "k2", Indicator::LinkedAccounts));
}

#[test]
fn a_household_on_its_own_line_is_not_an_operator_driving_accounts() {
    // Three people at home, each with their own account, trading through the family PC's one
    // program in one evening, twenty minutes apart; an operator on a home line drives three
    // accounts with one program within a minute.
    let evening = |apart: i64| {
        let mut r = Vec::new();
        for m in 0..3 {
            r.extend(registry(&format!("k{m}"), &format!("a{m}")));
        }
        for m in 0..3 {
            r.push(req(m * apart, &format!("k{m}"), "211.1.1.1", "PyUpbit/0.2.33", "VALID"));
        }
        run(&r)
    };
    assert!(!fired(&evening(20), "k2", Indicator::LinkedAccounts), "a household");
    assert!(fired(&evening(0), "k2", Indicator::LinkedAccounts), "an operator");
}

// ---- reports ----

#[test]
fn complaints_and_vendor_intelligence() {
    let mut r = registry("k", "a");
    r.push(format!(
        r#"{{"type":"complaint","ts":"{}","account_id":"a","text":"the order screen is slow today"}}"#,
        at(0)
    ));
    assert!(!fired(&run(&r), "k", Indicator::Complaint), "no word of sharing");
    r.push(format!(
        r#"{{"type":"complaint","ts":"{}","account_id":"a","text":"API 키를 타인에게 대여했습니다"}}"#,
        at(1)
    ));
    assert!(fired(&run(&r), "k", Indicator::Complaint));
    let mut r = registry("k", "a");
    r.push(format!(r#"{{"type":"vendor_intel","ts":"{}","key_id":"k","text":"key seen on a resale channel"}}"#, at(0)));
    let out = run(&r);
    assert!(fired(&out, "k", Indicator::VendorIntel));
    assert_eq!(level(&out, "k"), Some(Stage::Invalidate), "intelligence naming the key");
}

// ---- the familiarity score ----

#[test]
fn an_access_far_likelier_for_someone_else_is_unfamiliar() {
    let mut r = history("k", "a");
    r.push(req(130, "k", "126.1.1.1", "okhttp/4.12", "VALID"));
    assert!(fired(&run(&r), "k", Indicator::Unfamiliar));
    let mut r = history("k", "a");
    r.push(req(130, "k", "211.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(!fired(&run(&r), "k", Indicator::Unfamiliar));
}

// ---- the score ----

#[test]
fn one_kind_of_evidence_stops_at_warn_two_go_further() {
    // The key's risk once the records are in, the highest level it reached, and what fired.
    let judged = |records: &[String]| {
        let geo = Table::new();
        let mut e = Engine::new(Config::default(), &geo);
        let mut last = T0;
        for l in records {
            let rec = parse_line(l).unwrap();
            last = rec.ts().unwrap_or(last);
            e.ingest(&rec);
        }
        let risk = e.assessment("k", last).map_or(0.0, |a| a.risk);
        let out = run(records);
        (risk, level(&out, "k"), out)
    };
    // Abroad and home in turn, with the owner's own program: where the key is (a new country
    // and network) and that it is in two places at once.
    let abroad_and_home = |ua_abroad: &str| {
        let mut r = history_with("k", "a", "113.1.1.1", ua_abroad);
        for i in 0..10 {
            let (ip, ua) = if i % 2 == 0 { ("113.1.1.1", ua_abroad) } else { ("211.1.1.1", "ccxt/4.5.90") };
            r.push(req(121 + i * 2, "k", ip, ua, "VALID"));
        }
        judged(&r)
    };
    // A day of the owner at home, then abroad only, with the owner's own program, in one
    // place at a time (a trip): one kind.
    let trip = |ua: &str| {
        let mut r = registry("k", "a");
        r.extend((0..400).map(|i| req(i * 3, "k", "211.1.1.1", "ccxt/4.5.90", "VALID")));
        r.extend((0..10).map(|i| req(24 * HOUR + i * 2, "k", "113.1.1.1", ua, "VALID")));
        judged(&r)
    };
    let (alone, alone_level, _) = trip("ccxt/4.5.90");
    assert!(alone_level <= Some(Stage::Warn), "{alone_level:?}");
    // The same with another program abroad: place and client.
    let (two, ..) = trip("okhttp/4.12");
    assert!(two > 2.0 * alone, "{two} vs {alone}");
    // In two places at once is more than somewhere new; with another program, more again.
    let (same, _, out) = abroad_and_home("ccxt/4.5.90");
    assert!(fired(&out, "k", Indicator::ConcurrentUse) && fired(&out, "k", Indicator::OutsideDeclared));
    assert!(same > 2.0 * alone, "{same} vs {alone}");
    let (other, ..) = abroad_and_home("okhttp/4.12");
    assert!(other >= same, "{other} vs {same}");
}

#[test]
fn a_pattern_the_population_shows_often_weighs_little() {
    // Day one: in one population 60 of 100 keys take turns between two Korean homes; in the
    // other, one does. Day two: a key shows it. It weighs less where it is common.
    let weight = |common: usize| {
        // Two sessions at home, one at the parents' between them, then turns between the two.
        let day = |r: &mut Vec<String>, k: &str, m: usize, start: i64, turns: bool| {
            let (home, parents) = (format!("10.{m}.1.1"), format!("20.{m}.1.1"));
            r.extend((0..15).map(|i| req(start + i * 4, k, &home, "ccxt/4.5.90", "VALID")));
            if turns {
                r.push(req(start + 61, k, &parents, "ccxt/4.5.90", "VALID"));
            }
            r.extend((0..15).map(|i| req(start + 100 + i * 4, k, &home, "ccxt/4.5.90", "VALID")));
            if turns {
                for i in 0..6 {
                    let ip = if i % 2 == 0 { &parents } else { &home };
                    r.push(req(start + 170 + i * 2, k, ip, "ccxt/4.5.90", "VALID"));
                }
            }
        };
        let mut r = Vec::new();
        for m in 0..100 {
            r.extend(registry(&format!("k{m}"), &format!("a{m}")));
        }
        for m in 0..100 {
            day(&mut r, &format!("k{m}"), m, 0, m < common);
        }
        r.extend(registry("x", "ax"));
        day(&mut r, "x", 100, 24 * HOUR, true);
        let mut r2: Vec<(i64, String)> = r.into_iter().enumerate().map(|(i, l)| (i as i64, l)).collect();
        r2.sort_by_key(|(i, l)| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["ts"].as_str().and_then(keysentinel_detect::event::parse_rfc3339_ms).unwrap_or(0), *i)
        });
        let lines: Vec<String> = r2.into_iter().map(|(_, l)| l).collect();
        let geo = Table::new();
        let mut e = Engine::new(Config::default(), &geo);
        for l in &lines {
            e.ingest(&parse_line(l).unwrap());
        }
        let a = e.assessment("x", T0 + (24 * HOUR + 190) * MIN).unwrap();
        let r = a.reasons.iter().find(|r| r.indicator == Indicator::AlternatingNetworks).expect("it fired");
        (r.llr, r.population_share)
    };
    let (rare, rare_share) = weight(1);
    let (common, common_share) = weight(60);
    // (Shrunk towards the prior by its 200 key-days against these 100.)
    assert!(common_share > 0.15 && rare_share < 0.05, "common {common_share} rare {rare_share}");
    assert!(common < rare - 2.0, "common {common} against rare {rare}");
}

#[test]
fn a_proxy_pool_sustained_for_hours_is_stopped_on_its_own_but_not_in_its_first_hour() {
    // Days one to three: four thousand keys, none of them rotating. Day four: a key calls from
    // another home every minute — for an hour, or for twelve.
    let after = |hours: i64| {
        let mut r = quiet_population(4000, 3);
        r.extend(registry("x", "ax"));
        let day = 3 * 24 * HOUR;
        r.extend((0..30).map(|i| req(day + i * 4, "x", "211.1.1.1", "ccxt/4.5.90", "VALID")));
        for m in 0..(hours * HOUR) {
            r.push(req(day + 130 + m, "x", &format!("121.{}.1.1", m % 12), "ccxt/4.5.90", "VALID"));
        }
        let geo = Table::new();
        let mut e = Engine::new(Config::default(), &geo);
        for l in &r {
            e.ingest(&parse_line(l).unwrap());
        }
        let a = e.assessment("x", T0 + (day + 130 + hours * HOUR) * MIN).unwrap();
        let kinds: Vec<_> = a.reasons.iter().filter(|r| r.llr > 0.0).map(|r| r.indicator.kind()).collect();
        (
            a.level,
            kinds,
            format!("{:?}", a.reasons.iter().map(|r| (r.indicator, r.episodes, r.llr)).collect::<Vec<_>>()),
        )
    };
    let (sustained, kinds, why) = after(12);
    assert_eq!(sustained, Some(Stage::Invalidate), "{why}");
    assert!(kinds.iter().all(|k| *k == kinds[0]), "one kind of evidence: {why}");
    let (first_hour, _, why) = after(1);
    assert!(first_hour < Some(Stage::Invalidate), "{why}");
}

#[test]
fn a_watcher_on_a_server_is_not_learned_as_the_owners_habit() {
    // The owner uses the key from home every evening. From the second day a leaked copy is
    // watched from a cloud server in Korea with another program, a few calls every two hours, and
    // nothing else: no trading, no probing. Its server must stay a stranger's, not become a
    // habit of the key's within a few visits: it returns episode after episode until forced
    // expiry.
    let watched = |vouched: bool| {
        let mut r = quiet_population(4000, 3);
        // Vouched: the owner's own new bot, whose address they allowed (an analyst confirming
        // it on a dismissed case, or a login through it, would do the same).
        r.extend(if vouched { registry_allow("k", "a", r#"["110.1.1.1"]"#) } else { registry("k", "a") });
        for day in 0..3 {
            r.extend((0..30).map(|i| req(day * 24 * HOUR + 600 + i * 4, "k", "211.1.1.1", "ccxt/4.5.90", "VALID")));
        }
        for visit in 0..20 {
            let t = 24 * HOUR + visit * 2 * HOUR + 7;
            r.extend((0..3).map(|i| req(t + i, "k", "110.1.1.1", "python-requests/2.31.0", "VALID")));
        }
        let (out, decisions) = run_with(Config::default(), &in_time_order(r));
        let why = format!(
            "{:?}",
            decisions
                .iter()
                .filter(|d| d.key_id == "k")
                .map(|d| (d.level, d.reasons.iter().map(|r| (r.indicator, r.episodes)).collect::<Vec<_>>()))
                .collect::<Vec<_>>()
        );
        (level(&out, "k"), why)
    };
    let (stranger, why) = watched(false);
    assert_eq!(stranger, Some(Stage::Invalidate), "{why}");
    let (owners, why) = watched(true);
    assert!(owners.is_none(), "{why}");
}

#[test]
fn keys_stopped_on_one_kind_of_evidence_do_not_teach_the_population_it_is_common() {
    // Thirty keys go through proxy pools (each its own) for twelve hours a day, on days four
    // to six, among four thousand quiet ones. Stopped on their rotation alone, they must not
    // count among the exchange's ordinary keys: if they did, rotation persisting for days
    // would look common by day six, and the same pool would be worth a mere warning.
    let mut r = quiet_population(4000, 6);
    for x in 0..30 {
        r.extend(registry(&format!("x{x}"), &format!("ax{x}")));
    }
    for day in [3, 4, 5] {
        let t = day * 24 * HOUR;
        for x in 0..30 {
            r.extend((0..30).map(|i| req(t + i * 4, &format!("x{x}"), &format!("20.{x}.1.1"), "ccxt/4.5.90", "VALID")));
        }
        for m in 0..12 * HOUR {
            for x in 0..30 {
                r.push(req(t + 130 + m, &format!("x{x}"), &format!("122.{x}.{}.1", m % 12), "ccxt/4.5.90", "VALID"));
            }
        }
    }
    let geo = Table::new();
    let mut e = Engine::new(Config::default(), &geo);
    for l in in_time_order(r) {
        e.ingest(&parse_line(&l).unwrap());
    }
    let a = e.assessment("x0", T0 + (5 * 24 * HOUR + 130 + 12 * HOUR) * MIN).unwrap();
    let why = format!(
        "{:?}",
        a.reasons.iter().map(|r| (r.indicator, r.episodes, r.llr, r.population_share, &r.evidence)).collect::<Vec<_>>()
    );
    assert_eq!(a.level, Some(Stage::Invalidate), "{why}");
}

#[test]
fn an_owner_looking_in_beside_their_approved_vendor_is_judged_by_their_own_habits() {
    // The vendor's bot trades from its registered egress all morning; the owner then looks in
    // from home with a browser-like client. The key's own history is the owner's: the vendor's
    // addresses and program are not what the owner's look-in is measured against.
    let mut r = vec![
        r#"{"type":"vendor","vendor_id":"v","status":"approved","egress_cidrs":["3.1.1.0/24"]}"#.to_owned(),
        r#"{"type":"account","account_id":"a","segment":"retail","declared_countries":["KR"]}"#.to_owned(),
        r#"{"type":"key","key_id":"k","account_id":"a","scopes":["read","trade"],"ip_allowlist":[],"vendor_id":"v"}"#
            .to_owned(),
    ];
    r.extend((0..120).map(|i| req(i * 2, "k", "3.1.1.1", "VendorBot/3.2", "VALID")));
    r.extend((0..6).map(|i| req(250 + i * 3, "k", "211.1.1.1", "Mozilla/5.0", "VALID")));
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::Unfamiliar), "{:?}", out.get("k"));
    assert!(!fired(&out, "k", Indicator::UnfamiliarClient), "{:?}", out.get("k"));
    // Once the owner's own habits are known, someone else with the key abroad is unfamiliar.
    r.extend((0..40).map(|i| req(300 + i * 3, "k", "211.1.1.1", "Mozilla/5.0", "VALID")));
    r.extend((0..6).map(|i| req(900 + i * 3, "k", "126.1.1.1", "okhttp/4.12", "VALID")));
    assert!(fired(&run(&r), "k", Indicator::Unfamiliar));
}

#[test]
fn a_vendors_bot_beside_the_owner_by_hand_is_not_two_people_taking_turns() {
    // The approved vendor's bot runs all day from its egress; the owner looks in by hand from
    // home, session after session: the sanctioned bot is a program, not a second person.
    let day = |friend: bool| {
        let mut r = vec![
            r#"{"type":"vendor","vendor_id":"v","status":"approved","egress_cidrs":["3.1.1.0/24"]}"#.to_owned(),
            r#"{"type":"account","account_id":"a","segment":"retail","declared_countries":["KR"]}"#.to_owned(),
            r#"{"type":"key","key_id":"k","account_id":"a","scopes":["read","trade"],"ip_allowlist":[],"vendor_id":"v"}"#
                .to_owned(),
        ];
        for m in (0..600).step_by(2) {
            r.push(req(m, "k", "3.1.1.1", "VendorBot/3.2", "VALID"));
            // By hand from home in short sessions every 40 minutes; with a friend, the friend's
            // program from the friend's home in the sessions between.
            if m % 40 < 6 {
                r.push(req(m + 1, "k", "211.1.1.1", "Mozilla/5.0", "VALID"));
            }
            if friend && m % 40 >= 20 && m % 40 < 26 {
                r.push(req(m + 1, "k", "59.1.1.1", "okhttp/4.12", "VALID"));
            }
        }
        run(&r)
    };
    assert!(!fired(&day(false), "k", Indicator::AlternatingClients), "{:?}", day(false).get("k"));
    assert!(fired(&day(true), "k", Indicator::AlternatingClients), "{:?}", day(true).get("k"));
}

#[test]
fn an_analysts_confirmation_clears_the_key_and_teaches_its_places() {
    let mut r = history_with("k", "a", "59.1.1.1", "okhttp/4.12");
    for i in 0..6 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "59.1.1.1" } else { "211.1.1.2" }, "okhttp/4.12", "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::AlternatingNetworks));
    r.push(format!(
        r#"{{"type":"confirmation","ts":"{}","account_id":"a","key_id":"k","by":"analyst","ips":["59.1.1.1","211.1.1.2"],"clients":["okhttp/4.12"],"text":"parents' home and own"}}"#,
        at(140)
    ));
    for i in 0..6 {
        r.push(req(150 + i * 2, "k", if i % 2 == 0 { "59.1.1.1" } else { "211.1.1.2" }, "okhttp/4.12", "VALID"));
    }
    let out = run(&r);
    assert!(out["k"].0.is_empty(), "the same honest pattern opens nothing again: {:?}", out["k"]);
}

// ---- determinism and the decision's content ----

#[test]
fn the_same_records_give_the_same_decisions() {
    let mut r = history("k", "a");
    for i in 0..6 {
        let (ip, ua) = if i % 2 == 0 { ("113.1.1.1", "okhttp/4.12") } else { ("211.1.1.1", "ccxt/4.5.90") };
        r.push(req(121 + i * 2, "k", ip, ua, "VALID"));
    }
    let lines = |r: &[String]| run_with(Config::default(), r).1.iter().map(|d| d.to_json()).collect::<Vec<_>>();
    let (a, b) = (lines(&r), lines(&r));
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let first: serde_json::Value = serde_json::from_str(&a[0]).unwrap();
    assert_eq!(first["key_id"], "k");
    let reason = &first["reasons"][0];
    assert!(reason["evidence"].as_str().unwrap().contains("VN"), "{first}");
    for field in ["kind", "episodes", "llr", "population_share"] {
        assert!(!reason[field].is_null(), "{field} in {first}");
    }
}

#[test]
fn decisions_name_the_accounts_linked_to_the_key() {
    let mut r = Vec::new();
    for m in 0..3 {
        r.extend(registry(&format!("k{m}"), &format!("a{m}")));
    }
    r.extend(registry("k9", "a9"));
    r.push(r#"{"type":"relationship","from":"a2","to":"a9","kind":"affiliate"}"#.to_owned());
    for m in 0..3 {
        r.push(req(m, &format!("k{m}"), "3.1.1.1", "Desk/1.0", "VALID"));
    }
    let (_, decisions) = run_with(Config::default(), &r);
    // The third account to use the address makes the link; its decision names the other two,
    // and its documented partner.
    let d = decisions.iter().find(|d| d.key_id == "k2").expect("a decision on k2");
    let related: Vec<(&str, &str)> = d.related.iter().map(|r| (r.account_id.as_str(), r.via.as_str())).collect();
    assert_eq!(
        related,
        [
            ("a0", "shared address 3.1.1.1"),
            ("a1", "shared address 3.1.1.1"),
            ("a9", "documented relationship (affiliate)")
        ],
        "not itself, each once, by account"
    );
    assert!(d.to_json().contains("\"related_accounts\":[{"), "{}", d.to_json());
    assert_eq!((d.baseline.requests, d.baseline.clients), (0, 0), "k2's first request: {:?}", d.baseline);
    // With the baseline the evidence departs from.
    let mut r = history("k", "a");
    r.push(req(125, "k", "34.1.1.1", "python-requests/2.31", "VALID"));
    r.extend((0..10).map(|_| req(126, "k", "34.1.1.1", "python-requests/2.31", "BAD_SIGNATURE")));
    r.push(req(127, "k", "3.1.1.2", "python-requests/2.31", "VALID"));
    let (_, decisions) = run_with(Config::default(), &r);
    let b = &decisions.last().expect("a decision").baseline;
    assert_eq!((b.networks.first().map(|n| n.0), b.clients), (Some(4766), 2), "{b:?}");
    assert_eq!(b.countries.first().map(|c| c.0.as_str()), Some("KR"));
}
