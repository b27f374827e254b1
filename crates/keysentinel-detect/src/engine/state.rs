//! What the engine remembers: per key, per account, per address. Every structure is bounded
//! (a fixed number of values per feature), so memory per key stays small whatever the traffic.

use super::takeover::Profile;
use crate::config::Config;
pub use crate::event::Segment;
use crate::event::{Millis, RelationshipKind};
use crate::geo::Place;
use crate::indicator::{Indicator, Stage};
use std::collections::VecDeque;
use std::net::IpAddr;

pub const MINUTE: Millis = 60_000;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;
/// Distinct values remembered per feature per key (the least seen are forgotten first).
const HISTORY: usize = 16;

/// Counts of a feature's values, keyed by a stable 64-bit value.
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub items: Vec<(u64, u32)>,
    pub total: u32,
}

impl Counts {
    pub fn get(&self, h: u64) -> u32 {
        self.items.iter().find(|(k, _)| *k == h).map_or(0, |(_, c)| *c)
    }
    pub fn add(&mut self, h: u64) {
        self.total = self.total.saturating_add(1);
        if let Some(e) = self.items.iter_mut().find(|(k, _)| *k == h) {
            e.1 += 1;
            return;
        }
        if self.items.len() == HISTORY {
            // Forget the least seen (the first of them, for determinism).
            if let Some(i) = self.items.iter().enumerate().min_by_key(|(_, (_, c))| *c).map(|(i, _)| i) {
                self.items.swap_remove(i);
            }
        }
        self.items.push((h, 1));
    }
}

/// Distinct values seen within a sliding window, each with when it was last seen. At most `N`
/// are kept (the oldest is replaced), which is more than the threshold it serves needs: the
/// count stays exact up to `N`, and the work and memory per key or address are bounded.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Recent<const N: usize = 16> {
    pub items: arrayvec::ArrayVec<(u64, Millis), N>,
}

impl<const N: usize> Recent<N> {
    /// Records `value` at `ts`; returns how many distinct values fall within `window`.
    pub fn see(&mut self, value: u64, ts: Millis, window: Millis) -> usize {
        self.items.retain(|(_, t)| ts - *t <= window);
        if let Some(e) = self.items.iter_mut().find(|(v, _)| *v == value) {
            e.1 = ts;
        } else if let Err(full) = self.items.try_push((value, ts)) {
            if let Some(oldest) = self.items.iter_mut().min_by_key(|(_, t)| *t) {
                *oldest = full.element();
            }
        }
        self.items.len()
    }

    /// When `value` was last seen, if it still is remembered.
    pub fn last_seen(&self, value: u64) -> Option<Millis> {
        self.items.iter().find(|(v, _)| *v == value).map(|(_, t)| *t)
    }

    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().map(|(v, _)| *v)
    }

    pub fn newest(&self) -> Option<Millis> {
        self.items.iter().map(|(_, t)| *t).max()
    }
}

/// A [`Recent`] for what is mostly seen with one value (an address with one account): that one
/// inline, the rest in a box only when a second value comes.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct MostlyOne {
    one: Option<(u64, Millis)>,
    more: Option<Box<Recent<6>>>,
}

impl MostlyOne {
    pub fn see(&mut self, value: u64, ts: Millis, window: Millis) -> usize {
        if let Some(more) = self.more.as_mut() {
            return more.see(value, ts, window);
        }
        match self.one {
            Some((v, _)) if v == value => {
                self.one = Some((value, ts));
                1
            }
            Some((v, t)) if ts - t <= window => {
                let mut more = Box::<Recent<6>>::default();
                more.see(v, t, window);
                let n = more.see(value, ts, window);
                (self.one, self.more) = (None, Some(more));
                n
            }
            _ => {
                self.one = Some((value, ts));
                1
            }
        }
    }

    pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries().map(|(v, _)| v)
    }

    /// The values with when each was last seen.
    pub fn entries(&self) -> impl Iterator<Item = (u64, Millis)> + '_ {
        self.one.iter().copied().chain(self.more.iter().flat_map(|m| m.items.iter().copied()))
    }

    pub fn newest(&self) -> Option<Millis> {
        self.one.map(|(_, t)| t).or_else(|| self.more.as_ref().and_then(|m| m.newest()))
    }
}

/// Where a request comes from, at the grain one person keeps: a fixed line (the address's /24
/// or /48, which a household or an office keeps for days), or a whole network when its
/// addresses say nothing of who is behind them (a mobile carrier's NAT, a VPN's exits, an
/// address range whose addresses hop from session to session).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Site {
    Line(IpAddr),
    Network(u32),
}

impl Site {
    /// A stable number for the site, for counts and windows.
    pub fn key(self) -> u64 {
        match self {
            Site::Line(IpAddr::V4(v4)) => u64::from(u32::from(v4)),
            Site::Line(IpAddr::V6(v6)) => (u128::from(v6) >> 64) as u64 | 1 << 63,
            Site::Network(asn) => u64::from(asn) | 1 << 62,
        }
    }
}

/// The address block a line belongs to: its /16 (IPv4) or /32 (IPv6). One organisation's lines
/// — a campus's buildings, an office tower's floors, an apartment complex's shared ISP — sit in
/// one block; two households chosen apart, even on one big ISP, seldom do (KT alone announces
/// hundreds of /16s). Lines of one block taking turns are one organisation's network.
pub fn block_of(site: Site) -> Site {
    match site {
        Site::Line(IpAddr::V4(v4)) => Site::Line(IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & 0xffff_0000))),
        Site::Line(IpAddr::V6(v6)) => {
            Site::Line(IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 96) - 1))))
        }
        other => other,
    }
}

/// The grain at which one address is one household's: an IPv4 address (the NAT a household's
/// devices share) or an IPv6 /64 (the one network a home's or a phone's devices number
/// themselves in, each with its own daily privacy address).
pub fn host_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
    }
}

/// The line of an address: its /24 (IPv4) or /48 (IPv6).
pub fn line_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
    }
}

/// One run of requests from one place: consecutive requests from the same place and line are
/// one entry (when it was last seen), since the indicators look at the order of places.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub ts: Millis,
    pub place: Place,
    pub site: Site,
    /// Sanctioned by the registry (allowlist, vendor egress). Whether the owner vouched for it
    /// is asked when it matters: a login since may have.
    pub sanctioned: bool,
}

/// How close in time a household's IPv4 and IPv6 requests must come to be paired as one line.
pub const TWIN_WINDOW: Millis = 2 * MINUTE;

/// A dual-stack household's IPv6 prefix and the IPv4 line it is one with.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Twin {
    pub v6: IpAddr,
    pub v4: IpAddr,
    /// When a request last came from the IPv4 address itself (the line's own `last` counts the
    /// prefix's requests too): once it is quiet, the household may have a new address.
    pub v4_seen: Millis,
}

/// A fixed line a key is used from.
#[derive(Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Line {
    pub site: Site,
    /// When first seen.
    pub since: Millis,
    /// When last seen.
    pub last: Millis,
    /// Sessions there (half an hour's quiet apart).
    pub sessions: u8,
    /// The client families used there, one bit per family hash modulo 64: a set in eight bytes,
    /// where a false "used there" (one in sixty-four per family) only spares an alternation.
    pub families: u64,
    /// The line's network operator (0 when unknown), and the client family last used there,
    /// to pair a dual-stack household's IPv4 and IPv6.
    pub operator: u32,
    pub last_family: u64,
}

fn family_bit(family: u64) -> u64 {
    1 << (family % 64)
}

/// One indicator's firings on a key.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Fired {
    pub indicator: Indicator,
    /// Firings counted (at most one per five minutes).
    pub count: u32,
    /// Episodes: firings separated by a quiet spell.
    pub episodes: u32,
    pub first: Millis,
    pub last: Millis,
    /// When the current episode began.
    pub episode_start: Millis,
    pub evidence: String,
    /// Where the suspect part came from, when from one place (the last few).
    pub sites: arrayvec::ArrayVec<Site, 3>,
    /// The requests that fired it (the last few distinct), as data.
    pub observed: Vec<crate::decision::Observed>,
}

/// Distinct requests kept per fired indicator.
pub const OBSERVED: usize = 4;

/// A key's day for the population's statistics: the persistence level each indicator reached,
/// the kinds of evidence shown, whether the key was judged shared that day, and the kinds of
/// evidence whose rates it must not teach because *other* kinds made it suspect.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct KeyDay {
    pub day: i64,
    pub shown: [u8; Indicator::COUNT],
    pub kinds: u8,
    pub suspected: bool,
    /// Bit per kind: the rest of the evidence alone reached a warning that day.
    pub excluded: u8,
}

impl KeyDay {
    pub fn new(day: i64) -> KeyDay {
        KeyDay { day, shown: [0; Indicator::COUNT], kinds: 0, suspected: false, excluded: 0 }
    }
}

/// Serialised in snapshots (`snapshot.rs`), as are the other types here: a change to their
/// fields needs `snapshot::FORMAT_VERSION` raised.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct KeyState {
    pub key_id: String,
    pub account: String,
    /// Index of the account in `Engine::accounts`.
    pub account_ix: usize,
    pub allowlist: Vec<ipnet::IpNet>,
    pub vendor: Option<String>,
    pub first: Option<Millis>,
    pub last: Option<Millis>,
    pub requests: u32,
    pub asns: Counts,
    pub countries: Counts,
    pub families: Counts,
    /// Valid requests with a location, newest last, within the concurrency window.
    pub places: VecDeque<Seen>,
    /// Within the hour or day their thresholds look at (5 networks, 10 lines, 5 clients).
    pub recent_asns: Recent<6>,
    pub recent_lines: Recent<11>,
    pub recent_clients: Recent<6>,
    /// Runs of client families within the alternation window, oldest first, of the use the
    /// registry does not sanction: (last seen, family, site).
    pub recent_families: arrayvec::ArrayVec<(Millis, u64, Site), 8>,
    pub bad_signatures: VecDeque<Millis>,
    pub order_peak: OrderPeak,
    pub fired: Vec<Fired>,
    pub level: Option<Stage>,
    /// Accounts (link-graph roots) whose orders coincided with this key's, when last; only for
    /// the few keys that ever coincide.
    pub co_ordered: Option<Box<Recent>>,
    /// The last few addresses and the last device the key was used from, to find the accounts
    /// that shared them when a decision is made.
    pub recent_ips: arrayvec::ArrayVec<IpAddr, 4>,
    pub device: Option<Box<str>>,
    /// Fixed lines lately used. A household's line is used again session after session; a
    /// phone's carrier-NAT address is not.
    pub lines: arrayvec::ArrayVec<Line, 8>,
    /// Dual-stack households: IPv6 prefixes and the IPv4 lines they are one with.
    pub twins: arrayvec::ArrayVec<Twin, 2>,
    /// Per address range: the line last used there and when (for the ranges' statistics).
    pub ranges: arrayvec::ArrayVec<(u32, IpAddr, Millis), 4>,
    /// Orders placed through the key, by day (for a vendor's or a mandate's exposure); boxed,
    /// as orders are a fraction of the records and this state is touched on every request.
    pub traded: Option<Box<Traded>>,
    /// What the key showed today, for the population's statistics once the day is over.
    pub today: KeyDay,
    /// Habits, for change-points (from the end of learning).
    pub profile: Option<Box<Profile>>,
    /// What the key's purpose lets its behaviour be held against.
    pub declared: super::purposes::Declared,
}

impl KeyState {
    pub fn new(key_id: &str, account: &str, account_ix: usize) -> Self {
        Self {
            key_id: key_id.to_owned(),
            account: account.to_owned(),
            account_ix,
            allowlist: Vec::new(),
            vendor: None,
            first: None,
            last: None,
            requests: 0,
            asns: Counts::default(),
            countries: Counts::default(),
            families: Counts::default(),
            places: VecDeque::new(),
            recent_asns: Recent::default(),
            recent_lines: Recent::default(),
            recent_clients: Recent::default(),
            recent_families: arrayvec::ArrayVec::new(),
            bad_signatures: VecDeque::new(),
            order_peak: OrderPeak::default(),
            fired: Vec::new(),
            level: None,
            co_ordered: None,
            recent_ips: arrayvec::ArrayVec::new(),
            device: None,
            lines: arrayvec::ArrayVec::new(),
            twins: arrayvec::ArrayVec::new(),
            ranges: arrayvec::ArrayVec::new(),
            traded: None,
            today: KeyDay::new(i64::MIN),
            profile: None,
            declared: super::purposes::Declared::Unknown,
        }
    }

    pub fn learned(&self, cfg: &Config, now: Millis) -> bool {
        self.requests >= cfg.learning_requests && self.first.is_some_and(|f| now - f >= cfg.learning_minutes * MINUTE)
    }

    /// The site a request from `site` (on `asn`'s network, with client `family`) is at: a
    /// household's IPv6 prefix is its IPv4 line's site once one program used the two within
    /// [`TWIN_WINDOW`] of each other on one operator's network (a dual-stack line, or phone,
    /// sends each of a program's connections over either; a second household on the same ISP
    /// runs its own program). Learns the pairing as it goes, and follows the household when
    /// its ISP hands it another IPv4 address (dynamic addresses change on a router's restart or
    /// a lease's end; the prefix often stays): the prefix moves to the new address once the old
    /// one has gone quiet, never while both are in use.
    pub fn one_household(&mut self, site: Site, asn: Option<u32>, family: Option<u64>, ts: Millis) -> Site {
        let (Site::Line(ip), Some(asn), Some(family)) = (site, asn, family) else { return site };
        let operator = crate::geo::operator(asn);
        let partner = |v6: bool| {
            move |e: &&Line| {
                matches!(e.site, Site::Line(a) if a.is_ipv6() == v6)
                    && e.operator == operator
                    && e.last_family == family
                    && ts - e.last <= TWIN_WINDOW
            }
        };
        if ip.is_ipv4() {
            self.twins.iter_mut().filter(|t| t.v4 == ip).for_each(|t| t.v4_seen = ts);
        }
        // A prefix's twin is current while its IPv4 address is in use; once quiet, another may
        // take over.
        let quiet = |t: &Twin| ts - t.v4_seen > TWIN_WINDOW;
        let pair = if ip.is_ipv6() {
            let twin = self.twins.iter().find(|t| t.v6 == ip);
            match twin {
                Some(t) if !quiet(t) => None,
                _ => self
                    .lines
                    .iter()
                    .filter(partner(false))
                    .max_by_key(|e| e.last)
                    .map(|e| (site, e.site))
                    .filter(|(_, v4)| twin.is_none_or(|t| Site::Line(t.v4) != *v4)),
            }
        } else {
            self.lines
                .iter()
                .filter(partner(true))
                .filter(|e| match e.site {
                    Site::Line(a) => self.twins.iter().find(|t| t.v6 == a).is_none_or(|t| t.v4 != ip && quiet(t)),
                    Site::Network(_) => false,
                })
                .max_by_key(|e| e.last)
                .map(|e| (e.site, site))
        };
        let Some((Site::Line(v6), Site::Line(v4))) = pair else { return self.household(site) };
        self.twins.retain(|t| t.v6 != v6);
        if self.twins.is_full() {
            self.twins.remove(0);
        }
        self.twins.push(Twin {
            v6,
            v4,
            v4_seen: if ip.is_ipv4() {
                ts
            } else {
                self.lines.iter().find(|e| e.site == Site::Line(v4)).map_or(ts, |e| e.last)
            },
        });
        // What the window remembers of the prefix was the household's line all along.
        let (from, to) = (Site::Line(v6), Site::Line(v4));
        self.places.iter_mut().filter(|s| s.site == from).for_each(|s| s.site = to);
        self.recent_families.iter_mut().filter(|e| e.2 == from).for_each(|e| e.2 = to);
        if ip.is_ipv6() {
            Site::Line(v4)
        } else {
            site
        }
    }

    /// The household line `site` is one with (itself, unless it is a known IPv6 twin).
    pub fn household(&self, site: Site) -> Site {
        match site {
            Site::Line(ip) => self.twins.iter().find(|t| t.v6 == ip).map_or(site, |t| Site::Line(t.v4)),
            other => other,
        }
    }

    /// Notes a request from `site` with client `family`; a new session there after half an
    /// hour's quiet counts.
    pub fn note_line(&mut self, site: Site, ts: Millis, family: Option<u64>, asn: Option<u32>) {
        if !matches!(site, Site::Line(_)) {
            return;
        }
        let operator = asn.map_or(0, crate::geo::operator);
        let families = family.map_or(0, family_bit);
        if let Some(e) = self.lines.iter_mut().find(|e| e.site == site) {
            if ts - e.last > 30 * MINUTE {
                e.sessions = e.sessions.saturating_add(1);
            }
            e.last = ts;
            e.families |= families;
            e.last_family = family.unwrap_or(0);
        } else if let Err(full) = self.lines.try_push(Line {
            site,
            since: ts,
            last: ts,
            sessions: 1,
            families,
            operator,
            last_family: family.unwrap_or(0),
        }) {
            if let Some(stalest) = self.lines.iter_mut().min_by_key(|e| e.last) {
                *stalest = full.element();
            }
        }
    }

    /// Whether `site` is a line the key has been used from in two sessions or more.
    pub fn stable(&self, site: Site) -> bool {
        self.lines.iter().any(|e| e.site == site && e.sessions >= 2)
    }

    /// Whether `site` is a line of the key's own: used in two sessions or more, or one the key
    /// was used from while it was learned (the owner's, by the baseline's assumption).
    pub fn own_line(&self, site: Site, cfg: &Config) -> bool {
        let learning = self.first.map(|f| f + cfg.learning_minutes * MINUTE);
        self.lines.iter().any(|e| e.site == site && (e.sessions >= 2 || learning.is_some_and(|l| e.since <= l)))
    }

    /// Whether client `family` has been used from a line of `site`'s block (organisation).
    pub fn used_with(&self, site: Site, family: u64) -> bool {
        let block = block_of(site);
        self.lines.iter().any(|e| block_of(e.site) == block && e.families & family_bit(family) != 0)
    }

    pub fn allowlisted(&self, ip: IpAddr) -> bool {
        self.allowlist.iter().any(|n| n.contains(&ip))
    }
}

/// Orders placed through a key over the last [`TRADED_DAYS`] days: a ring of daily counts
/// and notional sums (in the market's quote currency, KRW on Korean markets).
#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Traded {
    days: [(i64, u32, f64); TRADED_DAYS],
}

/// Days of orders kept per key.
pub const TRADED_DAYS: usize = 30;

impl Traded {
    pub fn add(&mut self, ts: Millis, notional: f64) {
        let day = ts.div_euclid(DAY);
        let slot = &mut self.days[day.rem_euclid(TRADED_DAYS as i64) as usize];
        if slot.0 != day {
            *slot = (day, 0, 0.0);
        }
        slot.1 = slot.1.saturating_add(1);
        if notional.is_finite() && notional > 0.0 {
            slot.2 += notional;
        }
    }

    /// Orders and their notional over the `TRADED_DAYS` days up to `ts`'s.
    pub fn within(&self, ts: Millis) -> (u64, f64) {
        let today = ts.div_euclid(DAY);
        self.days
            .iter()
            .filter(|(d, ..)| *d <= today && today - *d < TRADED_DAYS as i64)
            .fold((0, 0.0), |(n, x), (_, c, v)| (n + u64::from(*c), x + v))
    }
}

/// The most orders a key placed in a clock hour, and the hour being counted.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct OrderPeak {
    pub peak: f32,
    pub hour: i64,
    pub count: u32,
    /// The hour before's count, when it was the hour just before.
    pub previous: u32,
    /// The market's highest pace during the hour being counted.
    pub market: f32,
}

/// What vouches for the owner of an account: where and on what they logged in to the exchange
/// themselves, and what an analyst (dismissing a case) or the owner (answering a notice)
/// confirmed as theirs, each with when it last did.
#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct Owner {
    pub sites: arrayvec::ArrayVec<(Site, Millis), 8>,
    pub countries: arrayvec::ArrayVec<([u8; 2], Millis), 6>,
    pub devices: arrayvec::ArrayVec<(u64, Millis), 6>,
    pub clients: arrayvec::ArrayVec<(u64, Millis), 6>,
    /// Lines the owner's own device logged in from while the key was in use at home too
    /// recently for a flight: the exits of a VPN or a corporate network the data does not name,
    /// which place nobody. Few owners have one: boxed, so the others pay a pointer.
    pub tunnels: Option<Box<arrayvec::ArrayVec<(Site, Millis), 4>>>,
    /// Consumer operators (ASNs, IPv6 ones as their IPv4 operator) the owner logged in from at
    /// home, in the declared countries: a household's line renumbered stays on its operator.
    pub operators: arrayvec::ArrayVec<(u32, Millis), 3>,
}

/// Records `value` as seen at `ts` in a small list, replacing the stalest when full.
pub fn vouch<T: PartialEq + Copy, const N: usize>(list: &mut arrayvec::ArrayVec<(T, Millis), N>, value: T, ts: Millis) {
    if let Some(e) = list.iter_mut().find(|(v, _)| *v == value) {
        e.1 = e.1.max(ts);
    } else if let Err(full) = list.try_push((value, ts)) {
        if let Some(stalest) = list.iter_mut().min_by_key(|(_, t)| *t) {
            *stalest = full.element();
        }
    }
}

/// Whether `value` was vouched for within `window` before `ts`.
pub fn vouched<T: PartialEq, const N: usize>(
    list: &arrayvec::ArrayVec<(T, Millis), N>,
    value: &T,
    ts: Millis,
    window: Millis,
) -> bool {
    list.iter().any(|(v, t)| v == value && ts - *t <= window)
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub struct AccountState {
    pub id: String,
    pub segment: Segment,
    pub declared: Vec<[u8; 2]>,
    pub keys: Vec<usize>,
    /// Documented relationships: the other account and the kind.
    pub partners: Vec<(usize, RelationshipKind)>,
    pub owner: Option<Box<Owner>>,
    /// Withdrawal addresses used before (hashes), to tell a new one.
    pub payees: Vec<u64>,
    /// The market-making mandates in effect on this account (the market maker's side).
    pub mandates: Vec<super::mandates::MandateTerms>,
}

/// FNV-1a: stable across runs and platforms, which keeps replays identical.
pub fn h64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The client family of a user agent: its first product token without the version
/// (`ccxt/4.5.90 (+https://…)` → `ccxt`), so that upgrades are not churn.
pub fn client_family(ua: &str) -> &str {
    let first = ua.split([' ', '(']).next().unwrap_or("");
    first.split('/').next().unwrap_or(first)
}

/// Networks and countries are counted by their own value (not a hash), so a decision can show
/// the key's baseline in their names; a network by its operator's number (one ISP's IPv4 and
/// IPv6 are one network to its customer).
pub fn asn_key(asn: u32) -> u64 {
    u64::from(crate::geo::operator(asn))
}

pub fn country_key(c: [u8; 2]) -> u64 {
    u64::from(u16::from_be_bytes(c))
}

/// Distinct values among `items`, counting up to 32 (enough for every threshold), without
/// allocating: this runs on every request.
pub fn distinct(items: impl Iterator<Item = u64>) -> usize {
    let mut seen = arrayvec::ArrayVec::<u64, 32>::new();
    for v in items {
        if !seen.contains(&v) && seen.try_push(v).is_err() {
            break;
        }
    }
    seen.len()
}

pub fn asn_text(p: &Place) -> String {
    p.asn.map_or_else(|| "AS?".to_owned(), |a| format!("AS{a}"))
}

pub fn declared_text(d: &[[u8; 2]]) -> String {
    d.iter().map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(",")
}
