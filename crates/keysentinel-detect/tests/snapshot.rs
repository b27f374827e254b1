//! State across restarts: an engine snapshotted and restored at any point of a stream decides
//! exactly what one that never stopped decides, and a snapshot that is truncated, corrupt, of
//! another format version or made under other settings is refused with an error.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_detect::event::parse_line;
use keysentinel_detect::geo::{Coverage, Locate, Network, Place};
use keysentinel_detect::{Config, Engine, SnapshotError, FORMAT_VERSION};
use sha2::{Digest, Sha256};
use std::net::IpAddr;

/// Places for the simulator's synthetic addresses (one /16 per ASN in 100.64.0.0/10), so that
/// the network, travel and distance indicators have something to work on without geo data.
struct FakeGeo;

impl Locate for FakeGeo {
    fn locate(&self, ip: IpAddr) -> Place {
        let IpAddr::V4(v4) = ip else { return Place::UNKNOWN };
        let n = u32::from(v4);
        let Some(j) = n.checked_sub(u32::from(std::net::Ipv4Addr::new(100, 64, 0, 0))).map(|d| d >> 16) else {
            return Place::UNKNOWN;
        };
        if j >= 64 {
            return Place::UNKNOWN;
        }
        let (country, lat_lon) = match j % 8 {
            4 => (*b"JP", (35.68, 139.69)),
            5 => (*b"US", (37.77, -122.42)),
            6 => (*b"VN", (21.03, 105.85)),
            7 => (*b"SG", (1.35, 103.82)),
            _ => (*b"KR", (37.57, 126.98)),
        };
        Place {
            country: Some(country),
            lat_lon: Some(lat_lon),
            accuracy_km: 20.0,
            asn: Some(64_500 + j),
            range: j + 1,
            network: match j % 16 {
                3 => Network::Hosting,
                5 => Network::Mobile,
                7 => Network::Vpn,
                _ => Network::Access,
            },
            plausible: true,
        }
    }
    fn coverage(&self) -> Coverage {
        Coverage { city: true, asn: true }
    }
}

const DAY_MS: i64 = 86_400_000;

/// A simulated stream that crosses a day boundary six hours in.
fn stream() -> Vec<String> {
    let params = keysentinel_sim::Params {
        seed: 5,
        accounts: 120,
        hours: 14,
        start_ms: keysentinel_sim::Params::default().start_ms - 6 * 3_600_000,
        sharing_rate: 0.03,
    };
    keysentinel_sim::simulate(&params, &keysentinel_sim::SyntheticAddresses).events
}

fn ts(line: &str) -> Option<i64> {
    parse_line(line).ok().and_then(|r| r.ts())
}

/// Replays `lines`, snapshotting and restoring (into a fresh engine) before each index in
/// `cuts`; returns the decisions as `replay` writes them.
fn replay(lines: &[String], cuts: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut engine = Engine::new(Config::default(), &FakeGeo);
    for (i, line) in lines.iter().enumerate() {
        if cuts.contains(&i) {
            let mut snap = Vec::new();
            engine.snapshot(&mut snap).unwrap();
            drop(engine);
            engine = Engine::restore(Config::default(), &FakeGeo, snap.as_slice()).unwrap();
        }
        if let Ok(rec) = parse_line(line) {
            engine.ingest(&rec);
        }
        out.extend(engine.take_decisions().iter().map(|d| d.to_json()));
    }
    out
}

/// Fails with the first decision that differs, not with both lists whole.
fn same(got: &[String], want: &[String], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        panic!(
            "{what}: {} decisions against {}; the first to differ is #{i}:\n{:?}\ninstead of\n{:?}",
            got.len(),
            want.len(),
            got.get(i),
            want.get(i)
        );
    }
}

#[test]
fn a_restart_anywhere_gives_the_decisions_of_an_uninterrupted_run() {
    let lines = stream();
    let whole = replay(&lines, &[]);
    assert!(whole.len() >= 10, "the stream must make decisions to compare: {}", whole.len());
    same(&replay(&lines, &[]), &whole, "a second replay");

    let first_day = lines.iter().find_map(|l| ts(l)).unwrap().div_euclid(DAY_MS);
    // The first record of the second day closes every key's day into the population.
    let boundary = lines.iter().position(|l| ts(l).is_some_and(|t| t.div_euclid(DAY_MS) > first_day)).unwrap();
    let n = lines.len();
    assert!(boundary > n / 10 && boundary < n * 9 / 10, "the day boundary is inside the stream");
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("before any record", vec![0]),
        ("mid first day", vec![boundary / 2]),
        ("right before the day boundary", vec![boundary]),
        ("right after the day boundary", vec![boundary + 1]),
        ("mid second day", vec![(boundary + n) / 2]),
        ("before the last record", vec![n - 1]),
        ("several restarts", vec![n / 7, boundary - 3, boundary + 2, n * 3 / 4, n - 5]),
    ];
    for (name, cuts) in cases {
        same(&replay(&lines, &cuts), &whole, &format!("restart {name} (before records {cuts:?})"));
    }
}

#[test]
fn the_same_state_gives_the_same_bytes() {
    let lines = stream();
    let mut engine = Engine::new(Config::default(), &FakeGeo);
    for line in &lines[..lines.len() / 2] {
        if let Ok(rec) = parse_line(line) {
            engine.ingest(&rec);
        }
    }
    let mut one = Vec::new();
    engine.snapshot(&mut one).unwrap();
    let restored = Engine::restore(Config::default(), &FakeGeo, one.as_slice()).unwrap();
    assert_eq!(restored.keys(), engine.keys());
    let mut two = Vec::new();
    restored.snapshot(&mut two).unwrap();
    // Hash maps are written sorted: nothing of their random seeds reaches the file, and nothing
    // the engine holds is lost on the way (it would show as a difference).
    assert!(one == two, "snapshot of the restored engine differs ({} and {} bytes)", one.len(), two.len());
}

/// A small snapshot with some state in it.
fn small_snapshot() -> Vec<u8> {
    let lines = stream();
    let mut engine = Engine::new(Config::default(), &FakeGeo);
    for line in &lines[..2_000.min(lines.len())] {
        if let Ok(rec) = parse_line(line) {
            engine.ingest(&rec);
        }
    }
    let mut snap = Vec::new();
    engine.snapshot(&mut snap).unwrap();
    snap
}

fn restore(bytes: &[u8]) -> Result<usize, SnapshotError> {
    Engine::restore(Config::default(), &FakeGeo, bytes).map(|e| e.keys())
}

/// Rewrites the body (and so the length and checksum) of a snapshot.
fn with_body(snap: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = snap[..44].to_vec();
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

#[test]
fn truncated_corrupt_and_foreign_snapshots_are_refused() {
    let snap = small_snapshot();
    assert!(restore(&snap).unwrap() > 0);
    let body = 52..snap.len() - 32;

    for len in [0, 7, 30, 51, 52, 60, snap.len() / 2, snap.len() - 33, snap.len() - 1] {
        let e = restore(&snap[..len]).unwrap_err();
        assert!(matches!(e, SnapshotError::Truncated(_)), "{len} bytes of {}: {e}", snap.len());
    }
    for at in [body.start, body.start + 1, (body.start + body.end) / 2, body.end - 1, snap.len() - 1] {
        let mut bad = snap.clone();
        bad[at] ^= 0x40;
        assert!(matches!(restore(&bad), Err(SnapshotError::Corrupt)), "a flipped byte at {at}");
    }
    // A flipped bit in the length is found too (as a short body, or a checksum over other bytes).
    let mut bad = snap.clone();
    bad[44] ^= 1;
    assert!(matches!(restore(&bad), Err(SnapshotError::Truncated(_) | SnapshotError::Corrupt)));

    let mut bad = snap.clone();
    bad[0] = b'X';
    assert!(matches!(restore(&bad), Err(SnapshotError::NotASnapshot)));
    assert!(matches!(
        restore(b"{\"type\":\"request\"} not a snapshot at all, but long enough to hold a header ..."),
        Err(SnapshotError::NotASnapshot)
    ));

    let mut other = snap.clone();
    other[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    match restore(&other) {
        Err(SnapshotError::Version { found, expected }) => {
            assert_eq!((found, expected), (FORMAT_VERSION + 1, FORMAT_VERSION))
        }
        r => panic!("another format version: {r:?}"),
    }

    let settings = Config { link_accounts: 4, ..Config::default() };
    let e = Engine::restore(settings, &FakeGeo, snap.as_slice()).map(|_| ()).unwrap_err();
    assert!(matches!(e, SnapshotError::Config { .. }), "{e}");
    assert!(e.to_string().contains("other detection settings"), "{e}");

    // A body that passes the checksum but does not decode (a bug, or a crafted file).
    let garbage = with_body(&snap, &[0xff; 40]);
    assert!(matches!(restore(&garbage), Err(SnapshotError::Decode(_))), "{:?}", restore(&garbage));
    let mut longer = snap[body.clone()].to_vec();
    longer.push(0);
    assert!(matches!(restore(&with_body(&snap, &longer)), Err(SnapshotError::Decode(_))));
}

#[test]
fn a_snapshot_whose_indices_do_not_hold_together_is_refused() {
    let empty = Engine::new(Config::default(), &FakeGeo);
    let mut snap = Vec::new();
    empty.snapshot(&mut snap).unwrap();
    let body = snap[52..snap.len() - 32].to_vec();
    // No keys, no accounts, no union-find entries: three empty sequences first.
    assert_eq!(&body[..3], &[0, 0, 0]);
    // One union-find entry for no account: refused, where trusting it would index out of bounds.
    let crafted = [&[0, 0, 1, 0][..], &body[3..]].concat();
    match restore(&with_body(&snap, &crafted)) {
        Err(SnapshotError::Inconsistent(why)) => assert!(why.contains("union-find"), "{why}"),
        r => panic!("an inconsistent snapshot: {r:?}"),
    }
    assert_eq!(restore(&with_body(&snap, &body)).unwrap(), 0, "the untouched body restores");
}
