//! How often each indicator shows on the exchange's own keys, per segment, learned online: the
//! denominator of each indicator's likelihood ratio. A pattern a quarter of the exchange's keys
//! show on a given day is weak evidence, whatever an expert expected of it.
//!
//! Counted in key-days over the last `calibration_days` days (a ring of daily buckets, so the
//! statistics follow the population as it changes): of the keys active on a day, how many
//! showed the indicator that day with at least one, two or three episodes so far.

use super::state::Segment;
use crate::indicator::{Indicator, Kind};

/// Persistence levels counted: at least 1, 2, 3, 5 and 8 episodes. Sharing persists for days;
/// most honest look-alikes (a trip, a new device) do not, and those that do (the home and the
/// office) show as often in the population.
const LEVEL_EPISODES: [u32; 5] = [1, 2, 3, 5, 8];
pub const LEVELS: usize = LEVEL_EPISODES.len();

/// The persistence level (1-based) of `episodes`.
pub fn level(episodes: u32) -> u32 {
    LEVEL_EPISODES.iter().filter(|e| **e <= episodes).count().max(1) as u32
}

/// Combinations of the kinds of evidence (a bit per kind).
const MASKS: usize = 1 << Kind::ALL.len();

#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Bucket {
    day: i64,
    active: u32,
    shown: [[u32; LEVELS]; Indicator::COUNT],
    /// Per kind of evidence, active key-days left out of that kind's rates: the key's other
    /// kinds of evidence alone made it suspect that day.
    excluded: [u32; Kind::ALL.len()],
    /// Key-days by the combination of kinds of evidence they showed.
    #[serde(with = "super::snapshot::array")]
    kinds: [u32; MASKS],
}

impl Bucket {
    fn empty(day: i64) -> Bucket {
        Bucket {
            day,
            active: 0,
            shown: [[0; LEVELS]; Indicator::COUNT],
            excluded: [0; Kind::ALL.len()],
            kinds: [0; MASKS],
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Population {
    days: usize,
    /// Per segment, a ring of daily buckets.
    segments: Vec<Vec<Bucket>>,
}

impl Population {
    pub fn new(days: usize) -> Population {
        let days = days.max(1);
        Population { days, segments: vec![vec![Bucket::empty(i64::MIN); days]; Segment::COUNT] }
    }

    fn bucket(&mut self, segment: Segment, day: i64) -> &mut Bucket {
        let slot = day.rem_euclid(self.days as i64) as usize;
        let b = &mut self.segments[segment as usize][slot];
        if b.day != day {
            *b = Bucket::empty(day);
        }
        b
    }

    /// Whether a restored population has the shape this one has (a ring of `days` buckets per
    /// segment): a snapshot is checked before its indices are trusted.
    pub fn same_shape(&self, other: &Population) -> bool {
        self.days == other.days
            && self.segments.len() == other.segments.len()
            && other.segments.iter().all(|ring| ring.len() == self.days)
    }

    /// A key of `segment` was active on `day`.
    pub fn active(&mut self, segment: Segment, day: i64) {
        self.bucket(segment, day).active += 1;
    }

    /// A key-day of `segment` is left out of the rates of `kind`: evidence of other kinds alone
    /// made the key suspect that day, so what it showed of `kind` says nothing of honest keys.
    pub fn excluded(&mut self, segment: Segment, day: i64, kind: usize) {
        if let Some(n) = self.bucket(segment, day).excluded.get_mut(kind) {
            *n += 1;
        }
    }

    /// A key of `segment` showed `ind` on `day` at persistence `level` (1-based) or more.
    pub fn shown(&mut self, segment: Segment, day: i64, ind: Indicator, level: u32) {
        let l = (level.clamp(1, LEVELS as u32) - 1) as usize;
        self.bucket(segment, day).shown[ind.index()][l] += 1;
    }

    /// A key-day of `segment` showed the kinds of evidence in `mask` (bits of [`Kind`]).
    pub fn kinds(&mut self, segment: Segment, day: i64, mask: u8) {
        self.bucket(segment, day).kinds[mask as usize % MASKS] += 1;
    }

    /// The share of `segment`'s active key-days (complete days of the window) that showed at
    /// least the kinds of evidence in `mask`, shrunk towards `prior`.
    pub fn kinds_rate(&self, segment: Segment, day: i64, mask: u8, prior: f64, prior_weight: f64) -> f64 {
        let window = day - self.days as i64;
        let (mut shown, mut active) = (0u64, 0u64);
        for b in self.segments[segment as usize].iter().filter(|b| b.day > window && b.day < day) {
            active += u64::from(b.active);
            shown += b
                .kinds
                .iter()
                .enumerate()
                .filter(|(m, _)| *m as u8 & mask == mask)
                .map(|(_, n)| u64::from(*n))
                .sum::<u64>();
        }
        (shown as f64 + prior_weight * prior) / (active as f64 + prior_weight)
    }

    /// The share of `segment`'s active key-days, over the complete days of the window before
    /// `day`, that showed `ind` at persistence `level` or more, shrunk towards `prior` by
    /// `prior_weight` key-days. Only complete days: early in a day few keys have had the time
    /// to show a pattern, and the first to show it would be judged against a population that
    /// has not shown it yet.
    pub fn rate(&self, segment: Segment, day: i64, ind: Indicator, level: u32, prior: f64, prior_weight: f64) -> f64 {
        let l = (level.clamp(1, LEVELS as u32) - 1) as usize;
        let window = day - self.days as i64;
        let (mut shown, mut active) = (0u64, 0u64);
        let kind = Kind::ALL.iter().position(|k| *k == ind.kind()).unwrap_or(0);
        for b in &self.segments[segment as usize] {
            if b.day > window && b.day < day {
                shown += u64::from(b.shown[ind.index()][l]);
                active += u64::from(b.active.saturating_sub(b.excluded[kind]));
            }
        }
        (shown as f64 + prior_weight * prior) / (active as f64 + prior_weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_the_population_and_forget_old_days() {
        let mut p = Population::new(3);
        let ind = Indicator::AlternatingNetworks;
        // No data: the prior.
        assert!((p.rate(Segment::Retail, 10, ind, 1, 0.02, 50.0) - 0.02).abs() < 1e-9);
        for _ in 0..1000 {
            p.active(Segment::Retail, 10);
        }
        for _ in 0..250 {
            p.shown(Segment::Retail, 10, ind, 1);
        }
        // The day itself is not complete yet: still the prior.
        assert!((p.rate(Segment::Retail, 10, ind, 1, 0.02, 50.0) - 0.02).abs() < 1e-9);
        let r = p.rate(Segment::Retail, 11, ind, 1, 0.02, 50.0);
        assert!((0.23..0.25).contains(&r), "a quarter of the keys: {r}");
        // Other segments and levels are apart.
        assert!((p.rate(Segment::Pro, 11, ind, 1, 0.02, 50.0) - 0.02).abs() < 1e-9);
        assert!(p.rate(Segment::Retail, 11, ind, 2, 0.01, 50.0) < 0.01);
        // Key-days whose other kinds of evidence made them suspect are not the population's:
        // left out of the rates of the kinds they showed beside it.
        for _ in 0..500 {
            p.excluded(Segment::Retail, 10, 0);
        }
        let network = Indicator::Unfamiliar;
        assert_eq!(network.kind(), Kind::ALL[0]);
        for _ in 0..100 {
            p.shown(Segment::Retail, 10, network, 1);
        }
        let r = p.rate(Segment::Retail, 11, network, 1, 0.02, 50.0);
        assert!((0.18..0.2).contains(&r), "100 of the 500 left: {r}");
        let r = p.rate(Segment::Retail, 11, ind, 1, 0.02, 50.0);
        assert!((0.23..0.25).contains(&r), "another kind's rates are unchanged: {r}");
        // Three days later the day has left the window.
        assert!((p.rate(Segment::Retail, 14, ind, 1, 0.02, 50.0) - 0.02).abs() < 1e-9);
        p.active(Segment::Retail, 13);
        assert!((p.rate(Segment::Retail, 14, ind, 1, 0.02, 50.0) - 0.02 * 50.0 / 51.0).abs() < 1e-9);
    }
}
