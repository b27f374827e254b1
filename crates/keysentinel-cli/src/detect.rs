//! `keysentinel replay` and `keysentinel simulate`: the detection engine over recorded or
//! simulated traffic, in event time.

use crate::exit::{Exit, Failure};
use clap::Args;
use keysentinel_detect::event::{parse_line, ParseError};
use keysentinel_detect::geo::{Locate, NoGeo};
use keysentinel_detect::{Config, Engine};
use std::io::{BufRead, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// Where the open geo data lives (`scripts/geo-data` fetches it); the same for serve, replay and
/// simulate.
#[derive(Args, Clone)]
pub struct GeoArgs {
    /// Directory of the geo data (city .mmdb, ASN .csv). Default: .cache/geo when present.
    #[arg(long, env = "KEYSENTINEL_GEO_DIR")]
    pub geo_dir: Option<PathBuf>,
}

impl GeoArgs {
    /// The loaded data, or `NoGeo` with a clear note of which indicators are off.
    pub fn load(&self) -> anyhow::Result<Box<dyn Locate>> {
        let dir = match &self.geo_dir {
            Some(d) => Some(d.clone()),
            None => Some(PathBuf::from(".cache/geo")).filter(|d| d.is_dir()),
        };
        let Some(dir) = dir else {
            eprintln!(
                "geo data: none (run scripts/geo-data, or set --geo-dir / KEYSENTINEL_GEO_DIR): impossible travel, \
                 concurrent distant use, ASN rotation, hosting/VPN, declared geography and the network part of the \
                 statistical score are off"
            );
            return Ok(Box::new(NoGeo));
        };
        if !dir.is_dir() {
            return Err(
                Failure::new(Exit::Usage, format!("geo data directory {} does not exist", dir.display())).into()
            );
        }
        let geo = keysentinel_geo::GeoData::open(&dir).map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
        let c = geo.coverage();
        eprintln!(
            "geo data: {} (city: {}, ASN: {})",
            dir.display(),
            if c.city { "yes" } else { "no: travel and distance indicators off" },
            if c.asn { "yes" } else { "no: ASN rotation and hosting/VPN indicators off" }
        );
        Ok(Box::new(geo))
    }
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Event-format v1 NDJSON (docs/events.md).
    pub file: PathBuf,
    /// Where to write the decisions (NDJSON); standard output when absent.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Ground truth from `simulate --truth`: print precision, recall and time to warn.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Detection parameters (TOML, docs/detection.md); the defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// With --truth: families (comma-separated) held out from tuning, reported apart.
    #[arg(long, value_delimiter = ',')]
    pub held_out: Vec<String>,
    /// Write every firing of an indicator (NDJSON: ts, key_id, indicator, episodes, evidence),
    /// to explain decisions and tune.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Start from the engine state in this snapshot (written by --save-state, or by `serve` in
    /// DATA_DIR/detection/snapshot.bin) instead of from nothing: the records of FILE continue
    /// where the snapshot's left off. Refused if made under other settings.
    #[arg(long)]
    pub load_state: Option<PathBuf>,
    /// Write the engine's state at the end of the run to this file (docs/detection.md, "State
    /// across restarts"): replaying the first part of a file with --save-state and the rest with
    /// --load-state gives the decisions of one replay of the whole.
    #[arg(long)]
    pub save_state: Option<PathBuf>,
    /// Only parse the records (the baseline of scripts/bench-detect).
    #[arg(long, hide = true)]
    pub parse_only: bool,
    #[command(flatten)]
    pub geo: GeoArgs,
}

#[derive(Args)]
pub struct SimulateArgs {
    /// Where to write the events.
    #[arg(long)]
    pub out: PathBuf,
    /// Where to write the ground truth (shared keys, scenario, onset).
    #[arg(long)]
    pub truth: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(10..=1_000_000))]
    pub accounts: u64,
    #[arg(long, default_value_t = 48, value_parser = clap::value_parser!(u64).range(1..=24 * 365))]
    pub hours: u64,
    /// Share of accounts hit by each sharing family, 0 to 0.1.
    #[arg(long, default_value_t = 0.01, value_parser = sharing_rate)]
    pub sharing_rate: f64,
    #[command(flatten)]
    pub geo: GeoArgs,
}

/// The simulator's addresses come from the real ASN ranges when the geo data is there.
struct Book<'a>(Option<&'a keysentinel_geo::GeoData>);

impl keysentinel_sim::AddressBook for Book<'_> {
    fn ranges(&self, asn: u32) -> Vec<(u32, u32)> {
        self.0.map(|g| g.ranges_v4(asn)).unwrap_or_default()
    }
    fn ranges_v6(&self, asn: u32) -> Vec<(u128, u128)> {
        self.0.map(|g| g.ranges_v6(asn)).unwrap_or_default()
    }
}

pub fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    if !(0.0..=0.1).contains(&args.sharing_rate) {
        return Err(Failure::new(Exit::Usage, "--sharing-rate must be between 0 and 0.1").into());
    }
    let geo_dir = args.geo.geo_dir.clone().or_else(|| Some(PathBuf::from(".cache/geo")).filter(|d| d.is_dir()));
    let geo = match &geo_dir {
        Some(d) if !d.is_dir() => {
            return Err(Failure::new(Exit::Usage, format!("geo data directory {} does not exist", d.display())).into())
        }
        Some(d) => Some(keysentinel_geo::GeoData::open(d).map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?),
        None => {
            eprintln!("geo data: none: addresses are synthetic (run scripts/geo-data for real networks)");
            None
        }
    };
    let params = keysentinel_sim::Params {
        seed: args.seed,
        accounts: args.accounts as usize,
        hours: args.hours as i64,
        sharing_rate: args.sharing_rate,
        ..Default::default()
    };
    let out = keysentinel_sim::simulate(&params, &Book(geo.as_ref()));
    let mut w = BufWriter::new(create(&args.out)?);
    for line in &out.events {
        writeln!(w, "{line}")?;
    }
    w.flush()?;
    let mut t = BufWriter::new(create(&args.truth)?);
    for k in &out.keys {
        writeln!(
            t,
            "{}",
            serde_json::json!({
                "key_id": k.key_id,
                "account_id": k.account_id,
                "segment": k.segment,
                "family": k.family,
                "shared": k.shared_key(),
                "onset": k.onset_ms.map(keysentinel_detect::event::format_rfc3339_ms),
            })
        )?;
    }
    t.flush()?;
    eprintln!(
        "simulated {} events for {} keys ({} shared) into {}; truth in {}",
        out.events.len(),
        out.keys.len(),
        out.shared().count(),
        args.out.display(),
        args.truth.display()
    );
    Ok(())
}

fn create(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot write {}: {e}", path.display())).into())
}

fn sharing_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=0.1).contains(&r) => Ok(r),
        _ => Err(format!("{s:?} is not a rate between 0 and 0.1")),
    }
}

/// Detection settings from a TOML file, or the defaults.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).map_err(|e| Failure::new(Exit::Usage, format!("{}: {e}", p.display())))?;
            toml::from_str(&text).map_err(|e| Failure::new(Exit::Invalid, format!("{}: {e}", p.display())))?
        }
        None => Config::default(),
    })
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    let geo = args.geo.load()?;
    let file = std::fs::File::open(&args.file)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot read {}: {e}", args.file.display())))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(create(p)?)),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let mut engine = match &args.load_state {
        Some(p) => load_state(p, config, geo.as_ref())?,
        None => Engine::new(config, geo.as_ref()),
    };
    let mut trace = match &args.trace {
        Some(p) => {
            engine.trace();
            Some(BufWriter::new(create(p)?))
        }
        None => None,
    };
    let (mut n, mut bad) = (0u64, 0u64);
    let anon_before = memory_kib("RssAnon:");
    let mut decisions = Vec::new();
    let started = std::time::Instant::now();
    for_each_line(file, |line, read| {
        n += 1;
        if n % 65_536 == 0 {
            bar.set_position(read);
        }
        let parsed = match std::str::from_utf8(line) {
            Ok(text) if text.trim_end().is_empty() => return Ok(()),
            Ok(text) => parse_line(text.trim_end()),
            Err(e) => Err(ParseError::Json(format!("not UTF-8: {e}"))),
        };
        match parsed {
            Ok(rec) if args.parse_only => {
                std::hint::black_box(&rec);
            }
            Ok(rec) => engine.ingest(&rec),
            Err(e) => {
                bad += 1;
                if bad <= 20 {
                    bar.suspend(|| eprintln!("{}:{n}: skipped: {e}", args.file.display()));
                }
            }
        }
        for d in engine.take_decisions() {
            writeln!(out, "{}", d.to_json())?;
            decisions.push((d.key_id.clone(), d.level, d.ts));
        }
        if let Some(t) = trace.as_mut() {
            for f in engine.take_trace() {
                let line = serde_json::json!({
                    "ts": keysentinel_detect::event::format_rfc3339_ms(f.ts),
                    "key_id": f.key_id,
                    "indicator": f.indicator.as_str(),
                    "episodes": f.episodes,
                    "evidence": f.evidence,
                    "risk": (f64::from(f.risk) * 1000.0).round() / 1000.0,
                    "level": f.level.map(|l| l.as_str()),
                });
                writeln!(t, "{line}")?;
            }
        }
        Ok(())
    })?;
    out.flush()?;
    if let Some(t) = trace.as_mut() {
        t.flush()?;
    }
    bar.finish_and_clear();
    if let Some(p) = &args.save_state {
        save_state(p, &engine)?;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "replayed {n} lines ({bad} skipped) in {secs:.2} s ({:.0} events/s); {} keys; {} decisions{}",
        n as f64 / secs.max(1e-9),
        engine.keys(),
        decisions.len(),
        memory_kib("VmHWM:").map_or(String::new(), |peak| {
            let mut text = format!("; peak memory {:.0} MiB", peak as f64 / 1024.0);
            // What the keys cost: the anonymous memory (the engine's state; not the geo data,
            // which is mapped from its files) grown over the run, per key.
            if let (Some(before), Some(after), keys @ 1..) = (anon_before, memory_kib("RssAnon:"), engine.keys()) {
                let grown = after.saturating_sub(before);
                // Under a few MiB the allocator's reuse of what parsing freed hides the growth:
                // a figure per key would be made up.
                text += &if grown < 4 * 1024 {
                    ", engine state too small here to measure per key".to_owned()
                } else {
                    let grown = grown as f64;
                    format!(", engine state {:.0} MiB = {:.2} KiB per key", grown / 1024.0, grown / keys as f64)
                };
            }
            text
        })
    );
    if let Some(truth) = &args.truth {
        crate::quality::report(truth, &decisions, &args.held_out)?;
    }
    Ok(())
}

fn load_state<'g>(path: &Path, config: Config, geo: &'g dyn Locate) -> anyhow::Result<Engine<'g>> {
    let file = std::fs::File::open(path)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot read {}: {e}", path.display())))?;
    Engine::restore(config, geo, std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| Failure::new(Exit::Invalid, format!("{}: {e}", path.display())).into())
}

/// Writes the engine's state to `path` whole or not at all: into a temporary file beside it,
/// synced, then renamed over it.
fn save_state(path: &Path, engine: &Engine<'_>) -> anyhow::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let file = create(&tmp)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    engine.snapshot(&mut w).map_err(|e| Failure::new(Exit::Usage, format!("{}: {e}", path.display())))?;
    let file = w.into_inner().map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.error()))?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

/// Peak resident memory of this process in KiB (Linux), for the per-key figure.
/// Calls `each` with every line of `input` (without its newline) and the bytes read so far.
/// Lines are borrowed from the read buffer; only a line split across two reads is copied.
pub(crate) fn for_each_line(
    input: impl Read,
    mut each: impl FnMut(&[u8], u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut reader = std::io::BufReader::with_capacity(1 << 20, input);
    let (mut carry, mut read) = (Vec::new(), 0u64);
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return if carry.is_empty() { Ok(()) } else { each(&carry, read) };
        }
        read += buf.len() as u64;
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', buf) {
            let part = &buf[start..end];
            if carry.is_empty() {
                each(part, read)?;
            } else {
                carry.extend_from_slice(part);
                each(&carry, read)?;
                carry.clear();
            }
            start = end + 1;
        }
        carry.extend_from_slice(&buf[start..]);
        let len = buf.len();
        reader.consume(len);
    }
}

/// A memory figure of this process in KiB from /proc (Linux): `RssAnon:` the anonymous memory
/// now, `VmHWM:` the peak of all.
fn memory_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
