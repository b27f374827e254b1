//! The quality report of `replay --truth`: how detection did against the simulator's ground
//! truth, overall, for the families held out from tuning, and family by family.

use crate::exit::{Exit, Failure};
use keysentinel_detect::event::parse_rfc3339_ms;
use keysentinel_detect::Stage;
use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

struct Key {
    family: String,
    onset: Option<i64>,
}

/// Counts over a set of keys.
#[derive(Default)]
struct Tally {
    honest: usize,
    shared: usize,
    /// Shared keys that reached invalidate; honest keys that did.
    tp: usize,
    fp: usize,
    shared_warned: usize,
    honest_warned: usize,
    honest_reverify: usize,
    to_warn: Vec<i64>,
    to_invalidate: Vec<i64>,
}

impl Tally {
    fn add(&mut self, key: &Key, first: Option<&HashMap<Stage, i64>>) {
        let reached = |l: Stage| first.and_then(|m| m.iter().filter(|(lv, _)| **lv >= l).map(|(_, t)| *t).min());
        match key.onset {
            Some(onset) => {
                self.shared += 1;
                if let Some(t) = reached(Stage::Warn) {
                    self.shared_warned += 1;
                    self.to_warn.push((t - onset).max(0));
                }
                if let Some(t) = reached(Stage::Invalidate) {
                    self.tp += 1;
                    self.to_invalidate.push((t - onset).max(0));
                }
            }
            None => {
                self.honest += 1;
                self.honest_warned += usize::from(reached(Stage::Warn).is_some());
                self.honest_reverify += usize::from(reached(Stage::Reverify).is_some());
                self.fp += usize::from(reached(Stage::Invalidate).is_some());
            }
        }
    }

    fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 {
            1.0
        } else {
            self.tp as f64 / (self.tp + self.fp) as f64
        }
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.shared)
    }
}

fn ratio(n: usize, of: usize) -> f64 {
    if of == 0 {
        f64::NAN
    } else {
        n as f64 / of as f64
    }
}

fn pct(n: usize, of: usize) -> String {
    if of == 0 {
        "-".into()
    } else {
        format!("{:.2}%", 100.0 * n as f64 / of as f64)
    }
}

fn median_min(v: &mut [i64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    format!("{:.1}", v[v.len() / 2] as f64 / 60_000.0)
}

/// Prints the report for the decisions against the truth file at `path`.
pub fn report(path: &Path, decisions: &[(String, Stage, i64)], held_out: &[String]) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).map_err(|e| Failure::new(Exit::Usage, format!("{}: {e}", path.display())))?;
    let mut keys: BTreeMap<String, Key> = BTreeMap::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(&line?)
            .map_err(|e| Failure::new(Exit::Invalid, format!("{}:{}: {e}", path.display(), n + 1)))?;
        let (Some(key), Some(family)) = (v["key_id"].as_str(), v["family"].as_str()) else {
            return Err(Failure::new(
                Exit::Invalid,
                format!("{}:{}: a truth line needs key_id and family", path.display(), n + 1),
            )
            .into());
        };
        let onset = v["onset"].as_str().and_then(parse_rfc3339_ms);
        if v["shared"].as_bool() == Some(true) && onset.is_none() {
            return Err(Failure::new(
                Exit::Invalid,
                format!("{}:{}: a shared key needs its onset", path.display(), n + 1),
            )
            .into());
        }
        keys.insert(key.to_owned(), Key { family: family.to_owned(), onset });
    }
    for f in held_out {
        if !keys.values().any(|k| &k.family == f) {
            return Err(Failure::new(Exit::Usage, format!("--held-out: no key of family {f:?} in the truth")).into());
        }
    }
    let mut first: HashMap<&str, HashMap<Stage, i64>> = HashMap::new();
    for (k, level, ts) in decisions {
        first.entry(k.as_str()).or_default().entry(*level).or_insert(*ts);
    }
    let (mut all, mut out, mut tuned) = (Tally::default(), Tally::default(), Tally::default());
    let mut by: BTreeMap<(bool, &str), Tally> = BTreeMap::new();
    let mut false_invalidations = Vec::new();
    for (id, key) in &keys {
        let f = first.get(id.as_str());
        all.add(key, f);
        if held_out.contains(&key.family) {
            out.add(key, f)
        } else {
            tuned.add(key, f)
        }
        by.entry((key.onset.is_some(), key.family.as_str())).or_default().add(key, f);
        if key.onset.is_none() && f.is_some_and(|m| m.contains_key(&Stage::Invalidate)) {
            false_invalidations.push(id.as_str());
        }
    }
    println!("shared keys: {}  benign keys: {}", all.shared, all.honest);
    let summary = |name: &str, t: &mut Tally| {
        println!("{name}:");
        println!(
            "  invalidate: precision {:.4}  recall {:.4}  benign invalidated {} ({})",
            t.precision(),
            t.recall(),
            t.fp,
            pct(t.fp, t.honest)
        );
        println!(
            "  warned: {} of {} shared keys ({:.4}); median onset → first warn {} min, → invalidate {} min",
            t.shared_warned,
            t.shared,
            ratio(t.shared_warned, t.shared),
            median_min(&mut t.to_warn),
            median_min(&mut t.to_invalidate)
        );
        println!(
            "  benign keys warned {} ({}), sent to re-verification {} ({})",
            t.honest_warned,
            pct(t.honest_warned, t.honest),
            t.honest_reverify,
            pct(t.honest_reverify, t.honest)
        );
    };
    summary("all families", &mut all);
    if !held_out.is_empty() {
        summary(&format!("held out from tuning ({})", held_out.join(",")), &mut out);
        summary("tuned on", &mut tuned);
    }
    println!("by family:                     keys   warned  reverify invalidated  → warn  → invalidate (min)");
    for ((shared, family), t) in &mut by {
        let mark = if held_out.iter().any(|h| h == family) { "*" } else { " " };
        if *shared {
            println!(
                "  {mark}{family:<26} {:>5} {:>8} {:>9} {:>11}  {:>6}  {:>6}",
                t.shared,
                pct(t.shared_warned, t.shared),
                "",
                pct(t.tp, t.shared),
                median_min(&mut t.to_warn),
                median_min(&mut t.to_invalidate)
            );
        } else {
            println!(
                "  {mark}{family:<26} {:>5} {:>8} {:>9} {:>11}   (honest)",
                t.honest,
                pct(t.honest_warned, t.honest),
                pct(t.honest_reverify, t.honest),
                pct(t.fp, t.honest)
            );
        }
    }
    for k in false_invalidations.iter().take(10) {
        println!("  false invalidate: {k}");
    }
    Ok(())
}
