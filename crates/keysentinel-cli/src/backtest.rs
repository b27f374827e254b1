//! `policy backtest`: what a new response policy would have done against the current one, on
//! recorded events — run through the very engine `serve` and `replay` run, then both policies
//! applied to each key's highest stage. Nothing is changed anywhere: it reads a file.

use crate::detect::{for_each_line, load_config, GeoArgs};
use crate::exit::{Exit, Failure};
use clap::Args;
use keysentinel_detect::event::{parse_line, Record};
use keysentinel_detect::Engine;
use keysentinel_domain::{Plan, ResponsePolicy, Segment, Stage};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct BacktestArgs {
    /// The response policy to try (TOML, docs/response.md).
    #[arg(long)]
    pub policy: PathBuf,
    /// Recorded events (event format v1, docs/events.md).
    #[arg(long)]
    pub events: PathBuf,
    /// The policy to compare against; the built-in policy when absent.
    #[arg(long)]
    pub current: Option<PathBuf>,
    /// Detection parameters (TOML, docs/detection.md); the defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub geo: GeoArgs,
}

/// A response policy file, validated, its escalation rules checked against the engine's
/// indicators (for `serve` and `policy backtest` alike).
pub(crate) fn load_policy(path: &Path) -> anyhow::Result<ResponsePolicy> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot read {}: {e}", path.display())))?;
    let invalid = |e: keysentinel_domain::response::ResponsePolicyError| {
        Failure::new(Exit::Invalid, format!("{}: {e}", path.display()))
    };
    // Escalation rules name indicators of the one vocabulary: an unknown name is refused here.
    Ok(ResponsePolicy::from_toml(&text).map_err(invalid)?)
}

/// The domain segment of an event-format segment (pro traders are judged as retail).
fn segment(s: &keysentinel_detect::event::Segment) -> Segment {
    use keysentinel_detect::event::Segment as Event;
    match s {
        Event::MarketMaker => Segment::MarketMaker,
        Event::Broker => Segment::Broker,
        Event::Corporate | Event::Institution => Segment::Corporate,
        Event::Retail | Event::Pro | Event::Unknown => Segment::Retail,
    }
}

/// What happens to the key under a plan: the action, queued for an analyst, or only recorded.
fn outcome(policy: &ResponsePolicy, plan: Plan) -> String {
    let action = plan.action.as_str();
    if plan.act {
        action.to_owned()
    } else if plan.queue {
        format!("{action} (queued)")
    } else if policy.mode == keysentinel_domain::Mode::Shadow {
        format!("{action} (shadow)")
    } else {
        action.to_owned()
    }
}

pub fn backtest(args: &BacktestArgs, as_json: bool) -> anyhow::Result<()> {
    let new = load_policy(&args.policy)?;
    let current = match &args.current {
        Some(p) => load_policy(p)?,
        None => ResponsePolicy::default(),
    };
    let config = load_config(args.config.as_deref())?;
    let geo = args.geo.load()?;
    let file = std::fs::File::open(&args.events)
        .map_err(|e| Failure::new(Exit::Usage, format!("cannot read {}: {e}", args.events.display())))?;
    let mut engine = Engine::new(config, geo.as_ref());
    let mut segments: HashMap<String, Segment> = HashMap::new();
    // Each key's highest stage, its account, and every indicator of its decisions (for the
    // policies' escalation rules).
    let mut reached: BTreeMap<String, (Stage, String, BTreeSet<keysentinel_domain::Indicator>)> = BTreeMap::new();
    let (mut n, mut bad) = (0u64, 0u64);
    for_each_line(file, |line, _| {
        n += 1;
        let text = std::str::from_utf8(line).map(str::trim_end).unwrap_or("");
        if text.is_empty() {
            return Ok(());
        }
        match parse_line(text) {
            Ok(rec) => {
                if let Record::Account { account_id, segment: s, .. } = &rec {
                    segments.insert(account_id.to_string(), segment(s));
                }
                engine.ingest(&rec);
            }
            Err(e) => {
                bad += 1;
                if bad <= 20 {
                    eprintln!("{}:{n}: skipped: {e}", args.events.display());
                }
            }
        }
        for d in engine.take_decisions() {
            let entry = reached.entry(d.key_id).or_insert((Stage::Monitor, d.account_id, BTreeSet::new()));
            entry.0 = entry.0.max(d.level);
            entry.2.extend(d.reasons.iter().map(|r| r.indicator));
        }
        Ok(())
    })?;

    // Keys per (segment, policy outcome), and the keys whose outcome differs.
    let mut tally: BTreeMap<(&'static str, String, String), (u64, u64)> = BTreeMap::new();
    let mut differences = Vec::new();
    for (key, (st, account, indicators)) in &reached {
        let seg = segments.get(account).copied().unwrap_or(Segment::Retail);
        let indicators: Vec<_> = indicators.iter().copied().collect();
        let under = |p: &ResponsePolicy| {
            let (at, _) = p.stage_for(*st, &indicators);
            let out = outcome(p, p.plan(seg, at));
            if at == *st {
                out
            } else {
                format!("{out} (escalated to {at})")
            }
        };
        let (was, will) = (under(&current), under(&new));
        tally.entry((seg.as_str(), st.as_str().to_owned(), was.clone())).or_default().0 += 1;
        tally.entry((seg.as_str(), st.as_str().to_owned(), will.clone())).or_default().1 += 1;
        if was != will {
            differences.push(json!({ "key_id": key, "account_id": account, "segment": seg.as_str(),
                "stage": st.as_str(), "current": was, "new": will }));
        }
    }
    if as_json {
        let summary: Vec<_> = tally
            .iter()
            .map(|((seg, st, out), (c, w))| json!({ "segment": seg, "stage": st, "outcome": out, "current": c, "new": w }))
            .collect();
        crate::output::json(&json!({
            "events": n, "skipped": bad, "keys_with_decisions": reached.len(),
            "current_policy": current.version, "new_policy": new.version,
            "summary": summary, "differences": differences,
        }));
        return Ok(());
    }
    println!(
        "{n} events ({bad} skipped); {} keys reached a stage. Current policy {} vs new policy {}:",
        reached.len(),
        current.version,
        new.version
    );
    let rows: Vec<Vec<String>> = tally
        .iter()
        .map(|((seg, st, out), (c, w))| vec![seg.to_string(), st.clone(), out.clone(), c.to_string(), w.to_string()])
        .collect();
    crate::output::table(&["SEGMENT", "STAGE", "OUTCOME", "KEYS NOW", "KEYS NEW"], &rows);
    println!("\n{} keys would be treated differently:", differences.len());
    let rows: Vec<Vec<String>> = differences
        .iter()
        .map(|d| {
            ["key_id", "segment", "stage", "current", "new"]
                .iter()
                .map(|f| d[*f].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .collect();
    crate::output::table(&["KEY", "SEGMENT", "STAGE", "CURRENT", "NEW"], &rows);
    Ok(())
}
