//! Each indicator fires on the behaviour it names and stays quiet on the honest look-alike.
//! Addresses are placed by a small table (the real data is exercised by the replay tests).

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_detect::event::{format_rfc3339_ms, parse_line};
use keysentinel_detect::geo::{Coverage, Locate, Network, Place};
use keysentinel_detect::{Config, Engine, Indicator, Level};
use std::collections::HashMap;
use std::net::IpAddr;

const T0: i64 = 1_795_824_000_000;
const MIN: i64 = 60_000;

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
        add("106.1.1.1", place("KR", 37.52, 126.92, 17858, Network::Access)); // LG U+: homes and phones
        add("59.1.1.1", place("KR", 35.18, 129.07, 9318, Network::Access)); // Busan, SK Broadband
        add("223.1.1.1", place("KR", 37.56, 126.97, 9644, Network::Mobile)); // SKT mobile
        add("113.1.1.1", place("VN", 21.03, 105.85, 45899, Network::Access)); // Hanoi
        add("126.1.1.1", place("JP", 35.68, 139.69, 4713, Network::Access)); // Tokyo
        add("185.1.1.1", place("MX", 19.43, -99.13, 60068, Network::Vpn)); // a VPN exit
        add("3.1.1.1", place("US", 39.04, -77.49, 16509, Network::Hosting));
        add("3.1.1.2", place("US", 45.84, -119.70, 16509, Network::Hosting));
        add("34.1.1.1", place("US", 41.26, -95.86, 15169, Network::Hosting));
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

/// Runs records (one `(minute, json-without-ts)` per event) and returns the indicators that
/// fired on `key` and its highest level.
fn run(records: &[String]) -> HashMap<String, (Vec<Indicator>, Option<Level>)> {
    let geo = Table::new();
    let mut engine = Engine::new(Config::default(), &geo);
    let mut out: HashMap<String, (Vec<Indicator>, Option<Level>)> = HashMap::new();
    let mut last = T0;
    for line in records {
        let rec = parse_line(line).unwrap();
        last = rec.ts().unwrap_or(last);
        engine.ingest(&rec);
        for d in engine.take_decisions() {
            let e = out.entry(d.key_id.clone()).or_default();
            e.1 = e.1.max(Some(d.level));
        }
    }
    let keys: Vec<String> = records
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["key_id"].as_str().map(str::to_owned))
        .collect();
    for k in keys {
        let fired: Vec<Indicator> = engine.indicators(&k, last).into_iter().map(|(i, _)| i).collect();
        let e = out.entry(k).or_default();
        for i in fired {
            if !e.0.contains(&i) {
                e.0.push(i);
            }
        }
    }
    out
}

fn fired(out: &HashMap<String, (Vec<Indicator>, Option<Level>)>, key: &str, ind: Indicator) -> bool {
    out.get(key).is_some_and(|(i, _)| i.contains(&ind))
}

fn registry(key: &str, account: &str) -> Vec<String> {
    vec![
        format!(r#"{{"type":"account","account_id":"{account}","segment":"retail","declared_countries":["KR"]}}"#),
        format!(
            r#"{{"type":"key","key_id":"{key}","account_id":"{account}","scopes":["read","trade"],"ip_allowlist":[]}}"#
        ),
    ]
}

fn req(min: i64, key: &str, ip: &str, ua: &str, outcome: &str) -> String {
    format!(
        r#"{{"type":"request","ts":"{}","key_id":"{key}","ip":"{ip}","user_agent":"{ua}","method":"GET","path":"/v1/accounts","outcome":"{outcome}"}}"#,
        format_rfc3339_ms(T0 + min * MIN)
    )
}

/// A learned key: 30 requests from home over two hours.
fn history(key: &str, account: &str) -> Vec<String> {
    let mut r = registry(key, account);
    r.extend((0..30).map(|i| req(i * 4, key, "211.1.1.1", "ccxt/4.5.90", "VALID")));
    r
}

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
fn concurrent_use_needs_alternation_not_a_move() {
    let mut r = history("k", "a");
    r.push(req(121, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    r.push(req(123, "k", "211.1.1.1", "ccxt/4.5.90", "VALID")); // back home two minutes later
    let out = run(&r);
    assert!(fired(&out, "k", Indicator::ConcurrentUse));
    // A trip: home, then abroad, and never back within the window.
    let mut r = history("k", "a");
    r.push(req(120 + 300, "k", "126.1.1.1", "ccxt/4.5.90", "VALID"));
    r.push(req(120 + 310, "k", "126.1.1.1", "ccxt/4.5.90", "VALID"));
    assert!(!fired(&run(&r), "k", Indicator::ConcurrentUse));
}

#[test]
fn vpn_exits_do_not_teleport_but_are_new_networks() {
    let mut r = history("k", "a");
    for i in 0..4 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "185.1.1.1" } else { "211.1.1.1" }, "ccxt/4.5.90", "VALID"));
    }
    let out = run(&r);
    assert!(!fired(&out, "k", Indicator::ImpossibleTravel));
    assert!(!fired(&out, "k", Indicator::ConcurrentUse));
    assert!(fired(&out, "k", Indicator::NewHostingNetwork));
    assert!(out["k"].1 < Some(Level::Reverify), "one VPN is not sharing: {:?}", out["k"]);
}

#[test]
fn phone_and_home_alternate_honestly_two_households_do_not() {
    let mut r = history("k", "a");
    for i in 0..6 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "223.1.1.1" } else { "211.1.1.2" }, "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::AlternatingNetworks));
    let mut r = history("k", "a");
    for i in 0..6 {
        r.push(req(121 + i * 2, "k", if i % 2 == 0 { "59.1.1.1" } else { "211.1.1.2" }, "ccxt/4.5.90", "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::AlternatingNetworks));
}

#[test]
fn two_lines_of_ones_own_are_quiet_three_households_on_one_carrier_are_not() {
    // A new key, used from home and from a carrier line that may well be the owner's phone:
    // nothing to compare with yet, and two lines can be one person's.
    let mut r = registry("k", "a");
    for i in 0..8 {
        r.push(req(i * 2, "k", if i % 2 == 0 { "211.1.1.1" } else { "106.1.1.1" }, "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::AlternatingNetworks));
    // Home and office, both long part of the key's history, taking turns all day.
    let mut r = registry("k", "a");
    for i in 0..90 {
        r.push(req(i * 4, "k", if i % 3 == 0 { "106.1.1.1" } else { "211.1.1.1" }, "ccxt/4.5.90", "VALID"));
    }
    assert!(!fired(&run(&r), "k", Indicator::AlternatingNetworks));
    // Three households on the same carrier (one ASN, three lines) taking turns.
    let mut r = history("k", "a");
    for i in 0..6 {
        r.push(req(121 + i * 2, "k", ["211.1.2.1", "211.1.1.1", "211.1.3.1"][i as usize % 3], "ccxt/4.5.90", "VALID"));
    }
    assert!(fired(&run(&r), "k", Indicator::AlternatingNetworks));
}

#[test]
fn orders_coinciding_once_are_chance_again_with_the_same_accounts_a_ring() {
    let order = |min: i64, key: &str| {
        format!(
            r#"{{"type":"order","ts":"{}","key_id":"{key}","symbol":"KRW-BTC","side":"buy","action":"place","notional":1000000}}"#,
            format_rfc3339_ms(T0 + min * MIN)
        )
    };
    let episodes = |second: [&str; 3]| {
        let mut r = Vec::new();
        for m in 0..6 {
            r.extend(registry(&format!("k{m}"), &format!("a{m}")));
        }
        r.extend(["k0", "k1", "k2"].map(|k| order(10, k)));
        r.extend(second.map(|k| order(30, k)));
        run(&r)
    };
    let strangers = episodes(["k0", "k3", "k4"]);
    assert!(!fired(&strangers, "k0", Indicator::CoordinatedOrders), "different strangers each time");
    let ring = episodes(["k0", "k1", "k2"]);
    assert!(fired(&ring, "k0", Indicator::CoordinatedOrders));
    assert!(fired(&ring, "k2", Indicator::CoordinatedOrders));
}

#[test]
fn bad_signature_burst_then_use_from_the_cloud() {
    let mut r = history("k", "a");
    r.extend((0..9).map(|_| req(121, "k", "34.1.1.1", "python-requests/2.31", "BAD_SIGNATURE")));
    assert!(!fired(&run(&r), "k", Indicator::BadSignatureBurst), "nine is under the threshold");
    r.push(req(122, "k", "34.1.1.1", "python-requests/2.31", "BAD_SIGNATURE"));
    r.push(req(140, "k", "3.1.1.1", "python-requests/2.31", "VALID"));
    let out = run(&r);
    assert!(fired(&out, "k", Indicator::BadSignatureBurst));
    assert!(fired(&out, "k", Indicator::ProbedThenUsed));
    assert!(out["k"].1 >= Some(Level::Warn));
}

#[test]
fn one_address_driving_unrelated_accounts_unless_documented_or_mobile() {
    let ring = |relate: bool, ip: &str| {
        let mut r = Vec::new();
        for m in 0..3 {
            r.extend(registry(&format!("k{m}"), &format!("a{m}")));
            if relate && m > 0 {
                r.push(format!(r#"{{"type":"relationship","from":"a0","to":"a{m}","kind":"broker_client"}}"#));
            }
        }
        for m in 0..3 {
            r.push(req(m, &format!("k{m}"), ip, "Desk/1.0", "VALID"));
        }
        run(&r)
    };
    assert!(fired(&ring(false, "3.1.1.1"), "k2", Indicator::LinkedAccounts));
    assert!(!fired(&ring(true, "3.1.1.1"), "k2", Indicator::LinkedAccounts), "a broker and its clients");
    assert!(!fired(&ring(false, "223.1.1.1"), "k2", Indicator::LinkedAccounts), "a mobile carrier's NAT");
}

#[test]
fn complaints_and_vendor_intelligence() {
    let mut r = registry("k", "a");
    r.push(format!(
        r#"{{"type":"complaint","ts":"{}","account_id":"a","text":"the order screen is slow today"}}"#,
        format_rfc3339_ms(T0)
    ));
    assert!(!fired(&run(&r), "k", Indicator::Complaint), "no word of sharing");
    r.push(format!(
        r#"{{"type":"complaint","ts":"{}","account_id":"a","text":"API 키를 타인에게 대여했습니다"}}"#,
        format_rfc3339_ms(T0 + MIN)
    ));
    assert!(fired(&run(&r), "k", Indicator::Complaint));
    let mut r = registry("k", "a");
    r.push(format!(
        r#"{{"type":"vendor_intel","ts":"{}","key_id":"k","text":"key seen on a resale channel"}}"#,
        format_rfc3339_ms(T0)
    ));
    assert!(fired(&run(&r), "k", Indicator::VendorIntel));
}

#[test]
fn the_same_records_give_the_same_decisions() {
    let mut r = history("k", "a");
    r.push(req(121, "k", "113.1.1.1", "okhttp/4.12", "VALID"));
    r.push(req(123, "k", "211.1.1.1", "ccxt/4.5.90", "VALID"));
    r.push(req(125, "k", "113.1.1.1", "okhttp/4.12", "VALID"));
    let lines = |r: &[String]| {
        let geo = Table::new();
        let mut e = Engine::new(Config::default(), &geo);
        let mut out = Vec::new();
        for l in r {
            e.ingest(&parse_line(l).unwrap());
            out.extend(e.take_decisions().iter().map(|d| d.to_json()));
        }
        out
    };
    let (a, b) = (lines(&r), lines(&r));
    assert!(!a.is_empty());
    assert_eq!(a, b);
    let first: serde_json::Value = serde_json::from_str(&a[0]).unwrap();
    assert_eq!(first["key_id"], "k");
    assert!(
        first["reasons"][0]["evidence"].as_str().unwrap().contains("KR")
            || first["reasons"][0]["evidence"].as_str().unwrap().contains("VN")
    );
}

#[test]
fn decisions_name_the_accounts_linked_to_the_key() {
    let geo = Table::new();
    let mut e = Engine::new(Config::default(), &geo);
    let mut r = Vec::new();
    for m in 0..3 {
        r.extend(registry(&format!("k{m}"), &format!("a{m}")));
    }
    r.extend(registry("k9", "a9"));
    r.push(r#"{"type":"relationship","from":"a2","to":"a9","kind":"affiliate"}"#.to_owned());
    for m in 0..3 {
        r.push(req(m, &format!("k{m}"), "3.1.1.1", "Desk/1.0", "VALID"));
    }
    let mut decisions = Vec::new();
    for l in &r {
        e.ingest(&parse_line(l).unwrap());
        decisions.extend(e.take_decisions());
    }
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
    // With the baseline the evidence departs from.
    assert_eq!((d.baseline.requests, d.baseline.clients), (0, 0), "k2's first request: {:?}", d.baseline);
    let mut r = history("k", "a");
    r.push(req(125, "k", "113.1.1.1", "ccxt/4.5.90", "VALID"));
    let geo = Table::new();
    let mut e = Engine::new(Config::default(), &geo);
    let mut last = None;
    for l in &r {
        e.ingest(&parse_line(l).unwrap());
        last = e.take_decisions().pop().or(last);
    }
    let b = last.expect("impossible travel").baseline;
    assert_eq!((b.requests, b.networks.clone(), b.clients), (30, vec![(4766, 1.0)], 1), "{b:?}");
    assert_eq!(b.countries, vec![("KR".to_owned(), 1.0)]);
}
