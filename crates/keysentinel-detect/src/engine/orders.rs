//! How the key trades: order rates far above its own, and orders coinciding again and again
//! with unrelated accounts' (a ring).

use super::state::{h64, Recent, DAY, HOUR, MINUTE};
use super::Engine;
use crate::event::Millis;
use crate::indicator::Indicator;

/// (symbol hash, buy, size bucket): orders of one shape.
pub(super) type OrderShape = (u64, bool, u64);

/// The whole market's pace: orders per minute over the last hour against the long run.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Market {
    #[serde(with = "super::snapshot::array")]
    minutes: [u32; 60],
    minute: i64,
    /// Orders per minute averaged over about half a day: a decayed sum and its weight.
    long_sum: f32,
    long_weight: f32,
}

impl Default for Market {
    fn default() -> Self {
        Market { minutes: [0; 60], minute: i64::MIN, long_sum: 0.0, long_weight: 0.0 }
    }
}

impl Market {
    /// Counts an order at `ts`; returns how many times its long-run pace the market is trading
    /// (at least 1).
    fn add(&mut self, ts: Millis) -> f32 {
        let minute = ts.div_euclid(MINUTE);
        if minute != self.minute {
            let passed = if self.minute == i64::MIN { 60 } else { (minute - self.minute).clamp(0, 60) };
            for m in 1..=passed {
                let slot = (self.minute + m).rem_euclid(60) as usize;
                // A minute leaving the hour joins the long run.
                if self.minute != i64::MIN {
                    let keep = 1.0 - 1.0 / 720.0;
                    self.long_sum = self.long_sum * keep + self.minutes[slot] as f32;
                    self.long_weight = self.long_weight * keep + 1.0;
                }
                self.minutes[slot] = 0;
            }
            self.minute = minute.max(self.minute);
        }
        let slot = self.minute.rem_euclid(60) as usize;
        self.minutes[slot] += 1;
        let hour: u32 = self.minutes.iter().sum();
        // Two hours of history before the market's pace is judged.
        if self.long_weight < 120.0 || self.long_sum <= 0.0 {
            return 1.0;
        }
        (hour as f32 / 60.0 / (self.long_sum / self.long_weight)).max(1.0)
    }
}

impl Engine<'_> {
    pub(super) fn order(&mut self, k: usize, ts: Millis, symbol: &str, buy: bool, notional: f64) {
        self.keys[k].traded.get_or_insert_with(Box::default).add(ts, notional);
        self.within_mandate(k, ts, symbol);
        self.takeover_order(k, ts, symbol, notional);
        self.order_rate(k, ts);
        self.coordinated(k, ts, symbol, buy, notional);
    }

    /// Orders in the last hour far above the most the key placed in a clock hour before — once
    /// the market's own pace is allowed for: when news moves everyone, everyone trades more.
    fn order_rate(&mut self, k: usize, ts: Millis) {
        let learned = self.keys[k].learned(&self.cfg, ts);
        let institutional = self.segment(k).institutional();
        let multiple = self.cfg.order_rate_multiple;
        let market = self.market.add(ts);
        // The busiest completed clock hour (relative to the market's pace then), forgotten slowly
        // (a tenth a day). Only completed hours: a burst must not raise the bar it is held to.
        let hour = ts.div_euclid(HOUR);
        let peak = &mut self.keys[k].order_peak;
        if peak.hour != hour {
            let decay = 0.9f32.powf((hour - peak.hour) as f32 / 24.0);
            peak.peak = (peak.peak * decay).max(peak.count as f32 / peak.market.max(1.0));
            peak.previous = if hour - peak.hour == 1 { peak.count } else { 0 };
            (peak.hour, peak.count, peak.market) = (hour, 0, 1.0);
        }
        peak.count += 1;
        peak.market = peak.market.max(market);
        // The last sixty minutes: this clock hour, and the part of the last one still within
        // them (two counters rather than every order's time).
        let into = (ts - hour * HOUR) as f32 / HOUR as f32;
        let rate = peak.count as f32 + peak.previous as f32 * (1.0 - into);
        let base = peak.peak.max(6.0);
        if learned && rate > multiple * base * market && !institutional {
            let evidence = format!(
                "{rate:.0} orders in the last hour against at most {base:.0} before{}",
                if market > 1.05 { format!(" (the market {market:.1}× its pace)") } else { String::new() }
            );
            self.fire(k, ts, Indicator::OrderAnomaly, None, evidence);
        }
    }

    /// Coordinated orders: the same symbol, side and size (within 1%) from unrelated accounts
    /// within two seconds — counted only when they coincide *again* with an account from an
    /// earlier episode, since strangers' orders coincide all the time on a busy market (round
    /// sizes, one signal channel followed by thousands), and a ring's do so repeatedly.
    fn coordinated(&mut self, k: usize, ts: Millis, symbol: &str, buy: bool, notional: f64) {
        let bucket = (notional.max(1.0).ln() / 0.01).round() as u64;
        let account = self.keys[k].account_ix;
        self.orders_seen += 1;
        if self.orders_seen.is_multiple_of(65_536) {
            // Shapes with no order in the last two seconds are forgotten (most are one order's).
            self.order_links.retain(|_, e| e.back().is_some_and(|(t, _, _)| ts - t <= 2_000));
        }
        let entry = self.order_links.entry((h64(symbol.as_bytes()), buy, bucket)).or_default();
        while entry.front().is_some_and(|(t, _, _)| ts - t > 2_000) {
            entry.pop_front();
        }
        entry.push_back((ts, account, k));
        if entry.len() < 3 {
            // Fewer than three orders of this shape within two seconds: nothing coincides.
            return;
        }
        let others: Vec<(usize, usize)> = entry.iter().map(|(_, a, k)| (*a, *k)).collect();
        let mut roots: Vec<usize> = others.iter().map(|(a, _)| self.root(*a)).collect();
        roots.sort_unstable();
        roots.dedup();
        if roots.len() < 3 {
            return;
        }
        let mut ks: Vec<(usize, usize)> = others.iter().map(|(a, k)| (*k, self.root(*a))).collect();
        ks.sort_unstable();
        ks.dedup();
        for (k, own) in ks {
            let seen = self.keys[k].co_ordered.get_or_insert_with(Box::<Recent>::default);
            let mut again = 0;
            for r in roots.iter().copied().filter(|r| *r != own) {
                if seen.last_seen(r as u64).is_some_and(|t| ts - t > MINUTE && ts - t <= DAY) {
                    again += 1;
                }
                seen.see(r as u64, ts, DAY);
            }
            if again > 0 {
                let evidence = format!(
                    "{symbol} {} orders of the same size from {} unrelated accounts within 2 s, {again} of them coinciding with this key before",
                    if buy { "buy" } else { "sell" },
                    roots.len()
                );
                self.fire(k, ts, Indicator::CoordinatedOrders, None, evidence);
            }
        }
    }
}
