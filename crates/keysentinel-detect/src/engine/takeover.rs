//! Takeover: when the actor behind a key changes — a key rented or sold, the owner stopping
//! and someone else trading in their place — its hours, its rates, its markets and sizes, its
//! client and its network shift together. A change-point on the key's own profile: the habits
//! of the last two hours against the key's baseline, which does not take in a window that
//! looked like a change until a day has passed (so a takeover stays visible, and a lasting
//! honest change becomes the new normal).

use super::state::{h64, HOUR, MINUTE};
use super::{Engine, Req};
use crate::event::Millis;
use crate::indicator::Indicator;

/// The window compared with the baseline.
const WINDOW: Millis = 2 * HOUR;
/// A window that looked like a change stays out of the baseline this long.
const HOLD: Millis = 24 * HOUR;
/// The baseline's half-life, applied as windows are merged into it.
const HALF_LIFE_HOURS: f32 = 7.0 * 24.0;
/// Hours of activity a baseline covers, and how old it is, before it can tell a change.
const MATURE_HOURS: f32 = 8.0;
const MATURE_AGE: Millis = 20 * HOUR;
/// A young baseline (a key used for a few hours so far) tells a change only in how the key
/// trades: its hours and rates are not known yet, and an owner who tried the API by hand and
/// then set up a bot on a server changes client, network, hours and rate at once, honestly.
const YOUNG_HOURS: f32 = 3.0;
const YOUNG_AGE: Millis = 6 * HOUR;
/// A value under this share of the baseline is rare for the key.
const RARE: f32 = 0.05;
/// A client or network under this share of the baseline is new to the key.
const NEW: f32 = 0.15;

/// Decayed counts of one feature's values (hashed), the few most weighty kept.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct Tally<const N: usize> {
    items: arrayvec::ArrayVec<(u32, f32), N>,
}

impl<const N: usize> Tally<N> {
    fn add(&mut self, v: u32, w: f32) {
        if let Some(e) = self.items.iter_mut().find(|(x, _)| *x == v) {
            e.1 += w;
        } else if let Err(full) = self.items.try_push((v, w)) {
            let (v, w) = full.element();
            if let Some(least) = self.items.iter_mut().min_by(|a, b| a.1.total_cmp(&b.1)) {
                if least.1 < w {
                    *least = (v, w);
                }
            }
        }
    }
    fn get(&self, v: u32) -> f32 {
        self.items.iter().find(|(x, _)| *x == v).map_or(0.0, |(_, w)| *w)
    }
    fn merge(&mut self, other: &Tally<N>) {
        for (v, w) in &other.items {
            self.add(*v, *w);
        }
    }
    fn scale(&mut self, f: f32) {
        self.items.iter_mut().for_each(|e| e.1 *= f);
    }
}

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
struct Habits {
    hours: [f32; 24],
    requests: f32,
    orders: f32,
    ln_size: f32,
    symbols: Tally<8>,
    families: Tally<4>,
    /// Sites the key is used from; those the registry sanctions count as one.
    sites: Tally<6>,
    /// Hours of activity this covers (for the baseline's rate).
    span_hours: f32,
}

impl Habits {
    fn merge(&mut self, o: &Habits) {
        self.hours.iter_mut().zip(o.hours.iter()).for_each(|(a, b)| *a += b);
        self.requests += o.requests;
        self.orders += o.orders;
        self.ln_size += o.ln_size;
        self.symbols.merge(&o.symbols);
        self.families.merge(&o.families);
        self.sites.merge(&o.sites);
        self.span_hours += o.span_hours;
    }
    fn scale(&mut self, f: f32) {
        self.hours.iter_mut().for_each(|h| *h *= f);
        self.requests *= f;
        self.orders *= f;
        self.ln_size *= f;
        self.symbols.scale(f);
        self.families.scale(f);
        self.sites.scale(f);
        self.span_hours *= f;
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct Profile {
    base: Habits,
    window: Habits,
    window_start: Millis,
    /// Windows that looked like a change, kept out of the baseline, and since when (rare: boxed).
    held: Option<Box<(Habits, Millis)>>,
    flagged: bool,
    checked: Millis,
    since: Millis,
}

impl Profile {
    fn new(ts: Millis) -> Profile {
        Profile {
            base: Habits::default(),
            window: Habits::default(),
            window_start: ts,
            held: None,
            flagged: false,
            checked: ts,
            since: ts,
        }
    }

    /// Closes the window when it is over: into the baseline, or held out if it looked like a
    /// change.
    fn roll(&mut self, ts: Millis) {
        if ts - self.window_start < WINDOW {
            return;
        }
        let hours = (ts - self.window_start) as f32 / HOUR as f32;
        let mut w = std::mem::take(&mut self.window);
        w.span_hours = hours.min(WINDOW as f32 / HOUR as f32);
        self.base.scale(0.5f32.powf(hours / HALF_LIFE_HOURS));
        if self.flagged {
            let start = self.window_start;
            self.held.get_or_insert_with(|| Box::new((Habits::default(), start))).0.merge(&w);
        } else {
            self.base.merge(&w);
        }
        if self.held.as_ref().is_some_and(|h| ts - h.1 >= HOLD) {
            if let Some(held) = self.held.take() {
                self.base.merge(&held.0);
            }
        }
        self.window_start = ts;
        self.flagged = false;
    }
}

fn site_hash(key: u64) -> u32 {
    (key ^ (key >> 32)) as u32
}

impl Engine<'_> {
    /// Adds a request to the key's profile and looks for a change-point.
    pub(super) fn takeover(&mut self, r: &Req<'_>) {
        if !r.learned || r.institutional {
            return;
        }
        let hour = (r.ts.rem_euclid(24 * HOUR) / HOUR) as usize;
        // Sites the registry sanctions count as one; logins do not vouch here, since whoever
        // bought an account logs in too.
        let site = if r.sanctioned { 0 } else { site_hash(r.site.key()) | 1 };
        let p = self.keys[r.k].profile.get_or_insert_with(|| Box::new(Profile::new(r.ts)));
        p.roll(r.ts);
        let w = &mut p.window;
        w.hours[hour] += 1.0;
        w.requests += 1.0;
        if let Some(f) = r.family {
            w.families.add(f as u32, 1.0);
        }
        w.sites.add(site, 1.0);
        if let Some(evidence) = Self::changed(p, r.ts) {
            p.flagged = true;
            self.fire(r.k, r.ts, Indicator::ActorChange, None, evidence);
        }
    }

    /// Adds a placed order to the key's profile.
    pub(super) fn takeover_order(&mut self, k: usize, ts: Millis, symbol: &str, notional: f64) {
        let Some(p) = self.keys[k].profile.as_mut() else { return };
        p.roll(ts);
        let w = &mut p.window;
        w.orders += 1.0;
        w.ln_size += (notional.max(1.0)).ln() as f32;
        w.symbols.add(h64(symbol.as_bytes()) as u32, 1.0);
    }

    /// What shifted, if enough did together: two habits (hours, rate, markets, sizes) and the
    /// client or the network, four facets in all; on a young baseline, how it trades and both
    /// the client and the network.
    fn changed(p: &mut Profile, ts: Millis) -> Option<String> {
        let (b, w) = (&p.base, &p.window);
        // A baseline that has seen at least most of a day's cycle: before it, the first evening
        // at home after a day at the office would look like someone else.
        if p.flagged
            || ts - p.window_start < 30 * MINUTE
            || ts - p.checked < 10 * MINUTE
            || w.requests < 8.0
            || b.requests < 15.0
            || b.span_hours < YOUNG_HOURS
            || ts - p.since < YOUNG_AGE
        {
            return None;
        }
        let mature = b.span_hours >= MATURE_HOURS && ts - p.since >= MATURE_AGE;
        p.checked = ts;
        let share = |x: f32, of: f32| if of > 0.0 { x / of } else { 0.0 };
        let mut habits: Vec<String> = Vec::new();
        // Of which in how it trades (markets, sizes): what a young baseline can judge.
        let mut trading = 0;
        let night: f32 = (0..24).filter(|h| share(b.hours[*h], b.requests) < RARE / 2.5).map(|h| w.hours[h]).sum();
        if share(night, w.requests) >= 0.5 {
            habits.push(format!("{:.0}% of its requests at hours it was never used", 100.0 * share(night, w.requests)));
        }
        let window_hours = ((ts - p.window_start) as f32 / HOUR as f32).max(0.5);
        let (rate, base_rate) = (w.requests / window_hours, share(b.requests, b.span_hours.max(1.0)));
        if rate > 5.0 * base_rate.max(1.0) && rate >= 20.0 {
            habits.push(format!("{rate:.0} requests an hour against {base_rate:.0}"));
        }
        if w.orders >= 5.0 {
            let new_markets: f32 =
                w.symbols.items.iter().filter(|(s, _)| share(b.symbols.get(*s), b.orders) < RARE).map(|(_, n)| n).sum();
            if b.orders < 3.0 && w.orders >= 10.0 {
                habits.push(format!("{:.0} orders where it hardly traded", w.orders));
            } else if share(new_markets, w.orders) >= 0.6 {
                habits.push(format!(
                    "{:.0}% of its orders in markets it never traded",
                    100.0 * share(new_markets, w.orders)
                ));
                trading += 1;
            }
            if b.orders >= 3.0 {
                let grown = (w.ln_size / w.orders - b.ln_size / b.orders).exp();
                if grown >= 10.0 {
                    habits.push(format!("orders {grown:.0}× its usual size"));
                    trading += 1;
                }
            }
        }
        if habits.len() < 2 || !mature && trading < 2 {
            return None;
        }
        // New to it: under a seventh of the baseline (a window that straddled the change may
        // have brought some of it in already).
        let new_of = |t: &Tally<4>, base: &Tally<4>| -> f32 {
            t.items.iter().filter(|(v, _)| share(base.get(*v), b.requests) < NEW).map(|(_, n)| n).sum()
        };
        let mut who: Vec<&str> = Vec::new();
        if share(new_of(&w.families, &b.families), w.requests) >= 0.8 {
            who.push("a client new to it");
        }
        let new_sites: f32 = w
            .sites
            .items
            .iter()
            .filter(|(s, _)| *s != 0 && share(b.sites.get(*s), b.requests) < NEW)
            .map(|(_, n)| n)
            .sum();
        if share(new_sites, w.requests) >= 0.8 {
            who.push("a network new to it");
        }
        // Most of the key's habits shifting together: two of them and one of client or network
        // is an owner's new strategy from a new server, or a week abroad.
        if who.is_empty() || habits.len() + who.len() < 4 || !mature && who.len() < 2 {
            return None;
        }
        Some(format!("its actor changed: {}, {}", who.join(" and "), habits.join(", ")))
    }
}
