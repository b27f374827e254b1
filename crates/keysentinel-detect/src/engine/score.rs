//! From indicators to a stage (docs/detection.md, "Risk and levels").
//!
//! Each active indicator weighs its log-likelihood ratio: how much likelier its pattern is on a
//! shared key than on the exchange's keys at large, `ln(P(n episodes | shared) / P(n episodes |
//! population))`, the second learned from the population itself. Indicators of one kind mostly
//! stem from one fact, so within a kind only the strongest counts; kinds add up, on top of the
//! prior odds of sharing, into a posterior risk (the Freeman-style score, per kind of
//! evidence). The heavy stages need corroboration: re-verification two kinds of evidence or one
//! that persisted over several episodes, forced expiry two kinds (that honest keys do not show
//! together as often) or an unambiguous compromise.

use super::state::{Fired, KeyDay, Site, DAY, MINUTE};
use super::Engine;
use crate::decision::{Decision, Reason};
use crate::event::Millis;
use crate::indicator::{stage_of, Expected, Indicator, Kind, Stage};

/// Before the population says, how much of an honest key's chance to show an indicator carries
/// over to each further episode: honest patterns repeat too (the home and the office, every
/// day), a little less than sharing does.
const HONEST_REPEAT: f64 = 0.6;
/// Before the population says, the share of honest key-days showing one kind of evidence that
/// also show another: the owner's second device is often at a second place.
const JOINT_PRIOR: f64 = 0.3;

struct Assessed {
    risk: f32,
    level: Option<Stage>,
}

/// What the evidence on a key adds up to.
pub struct Assessment {
    pub risk: f32,
    pub level: Option<Stage>,
    pub reasons: Vec<Reason>,
    /// The correction for kinds of evidence that honest keys show together (≤ 0).
    pub correction: f32,
    /// The evidence stands on more than one fact: kinds that corroborate each other, a
    /// change-point held over a second episode, or an unambiguous compromise.
    pub corroborated: bool,
}

impl Engine<'_> {
    /// Records a firing, counts it in the population's statistics, then re-scores the key and
    /// emits a decision if its level rose.
    /// `at` is where the suspect part came from, when it came from one place: evidence of the
    /// owner there, even later, takes the firing back.
    pub(super) fn fire(&mut self, k: usize, ts: Millis, ind: Indicator, at: Option<Site>, evidence: String) {
        let ttl = self.cfg.indicator_ttl_minutes * MINUTE;
        let gap = self.cfg.episode_gap_minutes * MINUTE;
        let observed = self.observed(ts);
        let st = &mut self.keys[k];
        if st.fired.iter().all(|f| ts - f.last > ttl) {
            // Everything it rose on has expired: a new suspicion starts from nothing.
            st.level = None;
        }
        let i = match st.fired.iter().position(|f| f.indicator == ind) {
            Some(i) => i,
            None => {
                st.fired.push(Fired {
                    indicator: ind,
                    count: 0,
                    episodes: 0,
                    first: ts,
                    last: ts,
                    episode_start: ts,
                    evidence: String::new(),
                    sites: arrayvec::ArrayVec::new(),
                    observed: Vec::new(),
                });
                st.fired.len() - 1
            }
        };
        let f = &mut st.fired[i];
        if f.count > 0 && ts - f.last > ttl {
            (f.count, f.episodes, f.first) = (0, 0, ts);
            f.sites.clear();
            f.observed.clear();
        }
        if let Some(o) = observed {
            if !f.observed.iter().any(|x| x.ip == o.ip && x.client == o.client && x.device == o.device) {
                if f.observed.len() == super::state::OBSERVED {
                    f.observed.remove(0);
                }
                f.observed.push(o);
            }
        }
        if let Some(site) = at {
            if !f.sites.contains(&site) {
                if f.sites.is_full() {
                    f.sites.remove(0);
                }
                f.sites.push(site);
            }
        }
        let before = (f.count, f.episodes);
        if f.count == 0 {
            (f.count, f.episodes, f.evidence, f.episode_start) = (1, 1, evidence, ts);
        } else {
            if ts - f.last >= 5 * MINUTE {
                f.count = f.count.saturating_add(1);
                f.evidence = evidence;
            }
            // A new episode after a quiet spell, or after a long stretch of firing: what
            // persists for hours persists, whether it pauses or not.
            if ts - f.last > gap || ts - f.episode_start > 2 * gap {
                f.episodes = f.episodes.saturating_add(1);
                f.episode_start = ts;
            }
        }
        f.last = ts;
        if (f.count, f.episodes) == before {
            // The same firing going on: nothing new to weigh.
            return;
        }
        let reached = super::calibration::level(f.episodes) as u8;
        let mask = self.active_kinds(k, ts);
        let today = self.today(k, ts);
        today.shown[ind.index()] = today.shown[ind.index()].max(reached);
        today.kinds |= mask;
        let a = self.decide(k, ts);
        if let Some(trace) = self.trace.as_mut() {
            let (st, f) = (&self.keys[k], &self.keys[k].fired[i]);
            trace.push(super::Firing {
                ts,
                key_id: st.key_id.clone(),
                indicator: ind,
                episodes: f.episodes,
                evidence: f.evidence.clone(),
                risk: a.risk,
                level: a.level,
            });
        }
    }

    /// The key's record of `ts`'s day for the population's statistics; the record of an earlier
    /// day goes into them first. A key-day counts once the day is over, and only if the key was
    /// not stopped (reverify or beyond) that day: the population's rates are those of keys not
    /// shared, as far as the engine can tell, or the exchange's sharers would teach it that
    /// sharing is normal — a proxy pool's key re-verified on its rotation alone, counted, made
    /// rotation look common by the next day and let the key go back to a mere warning. A
    /// kind's rates also leave out the days the key's other kinds alone made it suspect
    /// (`suspect_without`). Not the keys merely warned: honest look-alikes left out would make
    /// their own pattern look rarer, and the next such key more suspect (the honest keys that
    /// reach re-verification are a few in a thousand, too few to bias the rates).
    pub(super) fn today(&mut self, k: usize, ts: Millis) -> &mut KeyDay {
        let day = ts.div_euclid(DAY);
        if self.keys[k].today.day != day {
            let segment = self.segment(k);
            let done = std::mem::replace(&mut self.keys[k].today, KeyDay::new(day));
            if done.day != i64::MIN && !done.suspected {
                self.population.active(segment, done.day);
                for kind in (0..Kind::ALL.len()).filter(|i| done.excluded & 1 << i != 0) {
                    self.population.excluded(segment, done.day, kind);
                }
                for ind in Indicator::ALL {
                    if done.excluded & 1 << kind_index(ind.kind()) != 0 {
                        continue;
                    }
                    for level in 1..=u32::from(done.shown[ind.index()]) {
                        self.population.shown(segment, done.day, ind, level);
                    }
                }
                if done.kinds != 0 {
                    self.population.kinds(segment, done.day, done.kinds);
                }
            }
        }
        &mut self.keys[k].today
    }

    fn active_kinds(&self, k: usize, ts: Millis) -> u8 {
        let ttl = self.cfg.indicator_ttl_minutes * MINUTE;
        self.keys[k]
            .fired
            .iter()
            .filter(|f| f.count > 0 && ts - f.last <= ttl)
            .fold(0u8, |m, f| m | 1 << kind_index(f.indicator.kind()))
    }

    /// The evidence on key `k` at `ts`.
    pub fn assess(&self, k: usize, ts: Millis) -> Assessment {
        let cfg = &self.cfg;
        let ttl = cfg.indicator_ttl_minutes * MINUTE;
        let segment = self.segment(k);
        let day = ts.div_euclid(DAY);
        let mut reasons: Vec<Reason> = Vec::new();
        let mut best = [0.0f64; Kind::ALL.len()];
        let mut best_at = [usize::MAX; Kind::ALL.len()];
        let mut best_episodes = [0u32; Kind::ALL.len()];
        let (mut persistent, mut sustained, mut unambiguous, mut composite) = (false, false, false, false);
        for f in self.keys[k].fired.iter().filter(|f| f.count > 0 && ts - f.last <= ttl) {
            let n = super::calibration::level(f.episodes);
            let prior = f.indicator.on_honest_prior() * HONEST_REPEAT.powi(n as i32 - 1);
            let share = self.population.rate(segment, day, f.indicator, n, prior, cfg.calibration_prior_key_days);
            let shared = f.indicator.on_shared() * cfg.persistence.powi(n as i32 - 1);
            let llr = (shared / share.max(1e-9)).ln().clamp(0.0, cfg.max_llr);
            let kind = kind_index(f.indicator.kind());
            if llr > best[kind] {
                (best[kind], best_at[kind], best_episodes[kind]) = (llr, reasons.len(), f.episodes);
            }
            // Refused tries from the owner's own operator at home alone stay a notice.
            let homely = f.indicator == Indicator::OutsideAllowlist
                && !f.sites.is_empty()
                && f.sites.iter().all(|s| matches!(s, Site::Network(op) if self.owners_operator_asn(k, *op, ts)));
            persistent |= f.episodes >= cfg.persistent_episodes && llr >= cfg.corroboration_llr && !homely;
            // Sustained is many sightings: from several places, or of a pattern that is not
            // one place's (a proxy pool). The same place seen again day after day is one fact
            // repeated — most often the owner's own, which the allowlist merely does not list.
            let sightings = f.sites.is_empty() || f.sites.len() >= 2;
            sustained |= f.episodes >= cfg.sustained_episodes && llr >= cfg.sustained_llr && sightings && !homely;
            unambiguous |= f.indicator.unambiguous();
            // A change-point is several facts at once, but one episode of it is one moment: an
            // owner's new office, a new phone, a week's holiday. It corroborates itself once it
            // holds over a second episode.
            composite |= f.indicator.self_corroborating() && llr >= cfg.corroboration_llr && f.episodes >= 2;
            reasons.push(Reason {
                indicator: f.indicator,
                count: f.count,
                episodes: f.episodes,
                evidence: f.evidence.clone(),
                observed: f.observed.clone(),
                llr: 0.0,
                population_share: share as f32,
            });
        }
        for (kind, at) in best_at.iter().enumerate() {
            if let Some(r) = reasons.get_mut(*at) {
                r.llr = best[kind] as f32;
            }
        }
        let correction = self.dependence(segment, day, &best);
        let prior = cfg.prior_sharing.clamp(1e-6, 0.5);
        let odds = (prior / (1.0 - prior)).ln() + best.iter().sum::<f64>() + correction;
        let risk = (1.0 / (1.0 + (-odds).exp())) as f32;
        // Two kinds corroborate each other when each weighs, and together — after what honest
        // keys showing them together takes off — they weigh more than the stronger alone.
        let strongest = best.iter().copied().fold(0.0, f64::max);
        let weighing = best.iter().filter(|l| **l >= cfg.corroboration_llr).count();
        let corroborated =
            composite || weighing >= 2 && best.iter().sum::<f64>() + correction - strongest >= cfg.corroboration_llr;
        let thresholds = if segment.institutional() { &cfg.thresholds.institutional } else { &cfg.thresholds.retail };
        // Forced expiry on two kinds of evidence needs one of them seen again: two kinds in one
        // moment are one coincidence more often than the population's rates say (strangers'
        // bots ordering on the minute, a carrier's NAT address, an owner's first trip).
        let repeated = (0..Kind::ALL.len()).any(|i| best[i] >= cfg.corroboration_llr && best_episodes[i] >= 2);
        let mut level = stage_of(risk, thresholds);
        if unambiguous {
            level = Some(Stage::Invalidate);
        } else if corroborated && !composite && !repeated && !sustained {
            level = level.map(|l| l.min(Stage::Reverify));
        } else if !corroborated {
            // One kind of evidence: a notice; persisting, a re-verification; forced expiry only
            // when it is sustained at a strength honest keys hardly ever reach.
            let cap = if sustained {
                Stage::Invalidate
            } else if persistent {
                Stage::Reverify
            } else {
                Stage::Warn
            };
            level = level.map(|l| l.min(cap));
        }
        reasons.sort_by(|a, b| b.llr.total_cmp(&a.llr).then(a.indicator.cmp(&b.indicator)));
        let risk = if unambiguous { risk.max(thresholds[3]) } else { risk };
        Assessment { risk, level, reasons, correction: correction as f32, corroborated: corroborated || unambiguous }
    }

    /// Kinds of evidence are not independent on honest keys either (an owner's second device
    /// at a second place is a new client *and* a new network): the log-ratio of how often the
    /// population shows the kinds one by one to how often it shows them together, when it
    /// shows them together more often than chance — never below the strongest kind alone.
    fn dependence(&self, segment: crate::event::Segment, day: i64, best: &[f64]) -> f64 {
        let cfg = &self.cfg;
        let mask = best.iter().enumerate().filter(|(_, l)| **l > 0.0).fold(0u8, |m, (i, _)| m | 1 << i);
        if mask.count_ones() < 2 {
            return 0.0;
        }
        let single = |i: usize| {
            let prior: f64 = Indicator::ALL
                .iter()
                .filter(|ind| kind_index(ind.kind()) == i)
                .map(|ind| ind.on_honest_prior())
                .sum::<f64>()
                .min(0.5);
            (prior, self.population.kinds_rate(segment, day, 1 << i, prior, cfg.calibration_prior_key_days))
        };
        let (mut rarest, mut apart) = (1.0f64, 1.0);
        for i in (0..Kind::ALL.len()).filter(|i| mask & 1 << i != 0) {
            let (p, r) = single(i);
            rarest = rarest.min(p);
            apart *= r;
        }
        // Before the population says, kinds are taken to go together on honest keys as often
        // as a third of the rarer one shows at all.
        let prior = JOINT_PRIOR * rarest;
        let together = self.population.kinds_rate(segment, day, mask, prior, cfg.calibration_prior_key_days);
        let strongest = best.iter().copied().fold(0.0, f64::max);
        let total: f64 = best.iter().sum();
        (apart / together.max(1e-12)).ln().min(0.0).max(strongest - total)
    }

    /// Evidence of the owner at `site` (a login, a confirmation) takes back what fired on the
    /// account's keys from there alone; their levels follow.
    pub(super) fn take_back(&mut self, a: usize, site: Site, ts: Millis) {
        for k in self.accounts[a].keys.clone() {
            let mut changed = false;
            for f in self.keys[k].fired.iter_mut().filter(|f| f.count > 0 && f.sites.contains(&site)) {
                f.sites.retain(|s| *s != site);
                if f.sites.is_empty() {
                    (f.count, f.episodes) = (0, 0);
                    changed = true;
                }
            }
            if changed {
                self.keys[k].level = self.assess(k, ts).level;
            }
        }
    }

    /// The kinds of evidence (bits) whose rates key `k`'s day must not teach: those without
    /// which the rest of its evidence still reaches a warning. A population's rates are those
    /// of honest keys; the sharers among them (an exchange's few, or a test population's many)
    /// would otherwise teach that sharing's patterns are common and weaken them for every
    /// key. An honest look-alike showing one pattern alone still counts, so its pattern does
    /// not look rarer than it is.
    fn suspect_without(&self, k: usize, a: &Assessment) -> u8 {
        let mut best = [0.0f64; Kind::ALL.len()];
        for r in &a.reasons {
            let i = kind_index(r.indicator.kind());
            best[i] = best[i].max(f64::from(r.llr));
        }
        let total: f64 = best.iter().sum::<f64>() + f64::from(a.correction);
        let prior = self.cfg.prior_sharing.clamp(1e-6, 0.5);
        let thresholds = if self.segment(k).institutional() {
            &self.cfg.thresholds.institutional
        } else {
            &self.cfg.thresholds.retail
        };
        let warn = f64::from(thresholds[1]).clamp(1e-6, 1.0 - 1e-6);
        let needed = (warn / (1.0 - warn)).ln() - (prior / (1.0 - prior)).ln();
        (0..Kind::ALL.len()).filter(|i| total - best[*i] >= needed).fold(0u8, |m, i| m | 1 << i)
    }

    /// Emits a decision when key `k`'s level rose; returns the risk and level it assessed.
    fn decide(&mut self, k: usize, ts: Millis) -> Assessed {
        let a = self.assess(k, ts);
        let assessed = Assessed { risk: a.risk, level: a.level };
        let excluded = self.suspect_without(k, &a);
        let today = self.today(k, ts);
        today.excluded |= excluded;
        if a.level >= Some(Stage::Reverify) {
            today.suspected = true;
        }
        let st = &mut self.keys[k];
        let Some(level) = a.level else { return assessed };
        if st.level.is_some_and(|l| l >= level) {
            return assessed;
        }
        st.level = Some(level);
        let (key_id, account_id) = (st.key_id.clone(), st.account.clone());
        let (related, baseline) = (self.related(k), self.baseline(k));
        self.decisions.push(Decision {
            ts,
            key_id,
            account_id,
            risk: a.risk,
            level,
            reasons: a.reasons,
            correction: a.correction,
            related,
            baseline,
        });
        assessed
    }
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}
