//! How long a restart takes to restore the engine's state (`scripts/bench-restore`): builds an
//! engine holding many keys, each with a little history (an account, the key, a few requests
//! from one or two addresses, some orders), snapshots it to a file and restores it, and prints
//! keys, snapshot size, bytes per key and the seconds each took. A benchmark, not a test.
//!
//! `cargo run --release -p keysentinel-detect --example bench-restore -- [KEYS] [FILE]`

use keysentinel_detect::event::{Code, OrderAction, Record, Segment, Side};
use keysentinel_detect::geo::{Coverage, Locate, Network, Place};
use keysentinel_detect::{Config, Engine};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

// As in the `keysentinel` binary: allocation is much of what a restore does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Places by address block: a few countries and networks, so baselines have values to count.
struct Blocks;

impl Locate for Blocks {
    fn locate(&self, ip: IpAddr) -> Place {
        let IpAddr::V4(v4) = ip else { return Place::UNKNOWN };
        let b = (u32::from(v4) >> 16) & 0xff;
        Place {
            country: Some(if b % 7 == 0 { *b"JP" } else { *b"KR" }),
            lat_lon: Some(if b % 7 == 0 { (35.68, 139.69) } else { (37.57, 126.98) }),
            accuracy_km: 20.0,
            asn: Some(64_500 + b % 40),
            range: b + 1,
            network: if b % 11 == 0 { Network::Mobile } else { Network::Access },
            plausible: true,
        }
    }
    fn coverage(&self) -> Coverage {
        Coverage { city: true, asn: true }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let keys: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1_000_000);
    let file =
        args.next().map(std::path::PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("ks-bench-restore.bin"));
    let start_ms = 1_795_824_000_000i64;
    let built = Instant::now();
    let mut engine = Engine::new(Config::default(), &Blocks);
    let mut records = 0u64;
    for i in 0..keys {
        let (account, key) = (format!("acct-{i:07}"), format!("key-{i:07}"));
        engine.ingest(&Record::Account {
            account_id: Cow::Borrowed(&account),
            segment: Segment::Retail,
            declared_countries: vec![*b"KR"],
            declared_purpose: None,
        });
        engine.ingest(&Record::Key {
            key_id: Cow::Borrowed(&key),
            account_id: Cow::Borrowed(&account),
            scopes: vec![Cow::Borrowed("read"), Cow::Borrowed("trade")],
            ip_allowlist: Vec::new(),
            vendor_id: None,
            ts: None,
            purpose: None,
        });
        // Spread over most of a day, in time order; every third key also from a second address.
        let ts = start_ms + i as i64 * 80_000_000 / keys.max(1) as i64 * 1_000;
        let home =
            IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | ((i as u32).wrapping_mul(2_654_435_761) >> 8) & 0x00ff_ffff));
        let phone = IpAddr::V4(Ipv4Addr::from(0x6440_0000 | (i as u32).wrapping_mul(40_503) & 0x003f_ffff));
        for r in 0..4 {
            let ip = if i % 3 == 0 && r == 3 { phone } else { home };
            engine.ingest(&Record::Request {
                ts: ts + r * 1_000,
                key_id: Cow::Borrowed(&key),
                ip,
                user_agent: Some(Cow::Borrowed(if r == 3 { "okhttp/4.12" } else { "ccxt/4.5.90" })),
                device_id: None,
                method: None,
                path: None,
                outcome: Code::Valid,
            });
        }
        engine.ingest(&Record::Order {
            ts: ts + 5_000,
            key_id: Cow::Borrowed(&key),
            symbol: Cow::Borrowed("BTC-KRW"),
            side: if i % 2 == 0 { Side::Buy } else { Side::Sell },
            action: OrderAction::Place,
            notional: 10_000.0 + (i % 977) as f64,
        });
        records += 7;
        engine.take_decisions();
    }
    let build_s = built.elapsed().as_secs_f64();

    let saved = Instant::now();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?);
    engine.snapshot(&mut w)?;
    let f = w.into_inner()?;
    f.sync_all()?;
    let save_s = saved.elapsed().as_secs_f64();
    let size = f.metadata()?.len();
    drop(engine);

    // The part of a restore that is only reading the file (into the page cache: it was just
    // written) and checking its checksum, apart from decoding.
    let read = Instant::now();
    let bytes = std::fs::read(&file)?;
    let sum = <sha2::Sha256 as sha2::Digest>::digest(&bytes);
    std::hint::black_box(sum);
    let read_s = read.elapsed().as_secs_f64();
    drop(bytes);

    let restored = Instant::now();
    let r = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(&file)?);
    let engine = Engine::restore(Config::default(), &Blocks, r)?;
    let restore_s = restored.elapsed().as_secs_f64();
    assert_eq!(engine.keys(), keys);
    println!(
        "keys {keys} ({records} records ingested in {build_s:.1} s); snapshot {:.1} MiB = {:.0} bytes per key; \
         save {save_s:.2} s (with fsync); restore {restore_s:.2} s (of which reading and checksumming about {read_s:.2} s)",
        size as f64 / (1 << 20) as f64,
        size as f64 / keys.max(1) as f64
    );
    std::fs::remove_file(&file)?;
    Ok(())
}
