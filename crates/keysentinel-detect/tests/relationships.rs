//! Documented relationships hold only while in effect: one the registry says has ended (its
//! mandate expired, an operator ended it) no longer relates its accounts, and the others still
//! do.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_detect::event::{format_rfc3339_ms, parse_line};
use keysentinel_detect::geo::{Coverage, Locate, Network, Place};
use keysentinel_detect::{Config, Engine, Indicator};
use std::net::IpAddr;

const T0: i64 = 1_795_824_000_000;

/// Every address is one cloud host in the US.
struct Cloud;

impl Locate for Cloud {
    fn locate(&self, _ip: IpAddr) -> Place {
        Place {
            country: Some(*b"US"),
            lat_lon: Some((39.04, -77.49)),
            accuracy_km: 20.0,
            asn: Some(16509),
            range: 0,
            network: Network::Hosting,
            plausible: true,
        }
    }
    fn coverage(&self) -> Coverage {
        Coverage { city: true, asn: true }
    }
}

fn relationship(from: &str, to: &str, kind: &str, in_effect: bool) -> String {
    format!(r#"{{"type":"relationship","from":"{from}","to":"{to}","kind":"{kind}","in_effect":{in_effect}}}"#)
}

/// Three accounts' keys driven from one address by one program, after `relationships`: which
/// keys show `linked_unrelated_accounts`.
fn linked(relationships: &[String]) -> Vec<String> {
    let mut lines = Vec::new();
    for m in 0..3 {
        lines.push(format!(
            r#"{{"type":"account","account_id":"a{m}","segment":"retail","declared_countries":["US"]}}"#
        ));
        lines.push(format!(r#"{{"type":"key","key_id":"k{m}","account_id":"a{m}","scopes":["read","trade"]}}"#));
    }
    lines.extend(relationships.iter().cloned());
    for m in 0..3i64 {
        lines.push(format!(
            r#"{{"type":"request","ts":"{}","key_id":"k{m}","ip":"3.1.1.1","user_agent":"Desk/1.0","outcome":"VALID"}}"#,
            format_rfc3339_ms(T0 + m * 60_000)
        ));
    }
    let geo = Cloud;
    let mut engine = Engine::new(Config::default(), &geo);
    for line in &lines {
        engine.ingest(&parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}")));
    }
    (0..3)
        .map(|m| format!("k{m}"))
        .filter(|k| engine.indicators(k, T0 + 3 * 60_000).iter().any(|(i, _)| *i == Indicator::LinkedAccounts))
        .collect()
}

#[test]
fn an_ended_relationship_stops_relating_its_accounts() {
    let documented = [relationship("a0", "a1", "broker_client", true), relationship("a0", "a2", "broker_client", true)];
    assert!(linked(&[]).contains(&"k2".to_owned()), "three unrelated accounts on one address");
    assert!(linked(&documented).is_empty(), "a broker and its clients");

    // The broker's arrangements expired: its clients are unrelated to it again, so three
    // groups share the address.
    let mut expired = documented.to_vec();
    expired.push(relationship("a0", "a1", "broker_client", false));
    expired.push(relationship("a0", "a2", "broker_client", false));
    assert!(linked(&expired).contains(&"k2".to_owned()), "{:?}", linked(&expired));

    // Ending one of two relationships leaves the other: a1 and a0 stay one group, so only two
    // groups share it.
    let mut both_kinds = documented.to_vec();
    both_kinds.push(relationship("a1", "a2", "affiliate", true));
    both_kinds.push(relationship("a0", "a2", "broker_client", false));
    assert!(linked(&both_kinds).is_empty(), "a2 is still a1's affiliate, and a1 the broker's client");

    // An end for accounts the engine never met, or of an account with itself, changes nothing.
    let mut strangers = documented.to_vec();
    strangers.push(relationship("x", "y", "affiliate", false));
    strangers.push(relationship("a0", "a0", "mm_mandate", false));
    assert!(linked(&strangers).is_empty());
}
