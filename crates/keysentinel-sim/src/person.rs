//! An honest customer's day: where they are hour by hour (home, out, the office, abroad), the
//! devices and programs they use the key with, how they trade, and when they log in to the
//! exchange's web site or app. Sharing families reuse it for the owner of a key they share.

use crate::gen::{local_hour, normal, pick, Access, Gen, Hours, Trading, DAY, HOUR, SEC};
use crate::world::{self, client};
use rand::Rng;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loc {
    Home,
    Out,
    Office,
}

/// A trip abroad: the flight out, the stay, maybe the flight back.
#[derive(Debug, Clone, Copy)]
pub struct Trip {
    pub leave: i64,
    pub land: i64,
    pub back_leave: i64,
    pub back_land: i64,
    /// The hotel's (or the friend's) line abroad.
    pub hotel: Access,
}

/// Where the person is at `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Whereabouts {
    At(Loc),
    Flying,
    Abroad,
}

pub struct Person {
    pub account: String,
    pub home: Access,
    pub office: Option<Access>,
    /// Their phone's carrier.
    pub carrier: u32,
    pub schedule: [Loc; 24],
    pub hours: Hours,
    pub pc_client: String,
    pub phone_client: String,
    pub pc_device: String,
    pub phone_device: String,
    pub trading: Trading,
    /// Sessions per hour with the key, on average, when awake and where they use it.
    pub per_hour: f64,
    /// A commercial VPN and the share of sessions through it.
    pub vpn: Option<(Access, f64)>,
    /// The employer's remote access (a corporate VPN or security proxy) on the laptop at home,
    /// and the share of home sessions through it.
    pub work_vpn: Option<(Access, f64)>,
    /// Out and about, the laptop goes online through the phone's hotspot (the carrier's network).
    pub tethers: bool,
    /// Public Wi-Fi hotspots they pass through (subway, cafés), shared with everyone else.
    pub hotspots: Vec<IpAddr>,
    pub trip: Option<Trip>,
    pub logins_per_day: f64,
}

impl Person {
    pub fn new(g: &mut Gen<'_>, account: &str) -> Person {
        let home_asn = pick(&mut g.rng, world::KR_FIXED);
        let home = Access::line(g, home_asn);
        let carrier = pick(&mut g.rng, world::KR_MOBILE);
        // A working day, shifted by an hour or two either way; some are home all day.
        let homebody = g.rng.gen_bool(0.3);
        let shift = g.rng.gen_range(-1..=1i64);
        let mut schedule = [Loc::Home; 24];
        if !homebody {
            for (h, loc) in schedule.iter_mut().enumerate() {
                let h = h as i64 - shift;
                *loc = match h {
                    8 | 18 => Loc::Out,
                    9..=17 => Loc::Office,
                    _ => Loc::Home,
                };
            }
        }
        let bot = g.rng.gen_range(0..world::BOT_CLIENTS.len());
        let version = g.rng.gen_range(0..4);
        let pc_client = client(world::BOT_CLIENTS, bot, version);
        let phone_client = client(world::PHONE_CLIENTS, g.rng.gen_range(0..4), version);
        let dev: u64 = g.rng.gen();
        Person {
            account: account.to_owned(),
            home,
            office: None,
            carrier,
            schedule,
            hours: Hours::person(&mut g.rng),
            pc_client,
            phone_client,
            pc_device: format!("pc-{:012x}", dev & 0xffff_ffff_ffff),
            phone_device: format!("ph-{:012x}", dev >> 16),
            trading: Trading::retail(&mut g.rng),
            per_hour: (g.rng.gen_range(-1.5..1.0f64)).exp(),
            vpn: None,
            work_vpn: None,
            tethers: false,
            hotspots: Vec::new(),
            trip: None,
            logins_per_day: g.rng.gen_range(0.5..6.0),
        }
    }

    pub fn whereabouts(&self, at: i64) -> Whereabouts {
        if let Some(t) = &self.trip {
            if (at >= t.leave && at < t.land) || (at >= t.back_leave && at < t.back_land) {
                return Whereabouts::Flying;
            }
            if at >= t.land && at < t.back_leave {
                return Whereabouts::Abroad;
            }
        }
        let loc = self.schedule[local_hour(at) as usize];
        if loc == Loc::Office && self.office.is_none() {
            Whereabouts::At(Loc::Out)
        } else {
            Whereabouts::At(loc)
        }
    }

    /// The address a session on the PC (or laptop) at `at` comes from, if the PC is there.
    pub fn pc_addr(&self, g: &mut Gen<'_>, at: i64, office_pc: bool) -> Option<IpAddr> {
        let access = match self.whereabouts(at) {
            Whereabouts::At(Loc::Home) => match self.work_vpn {
                Some((work, share)) if g.rng.gen_bool(share) => return Some(g.session_addr(work, at)),
                _ => self.home,
            },
            Whereabouts::At(Loc::Office) if office_pc => self.office?,
            Whereabouts::At(Loc::Out | Loc::Office) if self.tethers => {
                if !self.hotspots.is_empty() && g.rng.gen_bool(0.3) {
                    return Some(self.hotspots[g.rng.gen_range(0..self.hotspots.len())]);
                }
                Access::Phone { asn: self.carrier }
            }
            Whereabouts::Abroad => self.trip?.hotel,
            _ => return None,
        };
        Some(self.via_vpn(g, access, at))
    }

    /// The address of a session on the phone at `at`: home or office Wi-Fi, a hotspot, the
    /// carrier's network — at home in Korea or roaming abroad, when the carrier routes the
    /// phone's traffic home and it looks as if it never left.
    pub fn phone_addr(&self, g: &mut Gen<'_>, at: i64) -> Option<IpAddr> {
        let wifi = g.rng.gen_bool(0.6);
        let access = match self.whereabouts(at) {
            Whereabouts::Flying => return None,
            Whereabouts::At(Loc::Home) if wifi => self.home,
            Whereabouts::At(Loc::Office) if wifi => self.office?,
            Whereabouts::At(Loc::Out) if !self.hotspots.is_empty() && g.rng.gen_bool(0.3) => {
                return Some(self.hotspots[g.rng.gen_range(0..self.hotspots.len())]);
            }
            Whereabouts::Abroad if wifi => self.trip?.hotel,
            _ => Access::Phone { asn: self.carrier },
        };
        Some(self.via_vpn(g, access, at))
    }

    fn via_vpn(&self, g: &mut Gen<'_>, access: Access, at: i64) -> IpAddr {
        match self.vpn {
            Some((vpn, share)) if g.rng.gen_bool(share) => g.session_addr(vpn, at),
            _ => g.session_addr(access, at),
        }
    }

    /// Logins to the exchange's web site (PC) or app (phone), from wherever the person is.
    pub fn logins(&self, g: &mut Gen<'_>, from: i64, to: i64) {
        let hours = self.hours;
        let per_hour = self.logins_per_day / 24.0;
        let web = world::LOGIN_WEB[g.rng.gen_range(0..world::LOGIN_WEB.len())];
        let app = world::LOGIN_APP[g.rng.gen_range(0..world::LOGIN_APP.len())];
        g.sessions(from, to, per_hour, &hours, false, (1, 1), (0, 0), |g, at, _| {
            let on_pc = matches!(self.whereabouts(at), Whereabouts::At(Loc::Home | Loc::Office)) && g.rng.gen_bool(0.5);
            let (ip, ua, device) = if on_pc {
                (self.pc_addr(g, at, true), web, &self.pc_device)
            } else {
                (self.phone_addr(g, at), app, &self.phone_device)
            };
            if let Some(ip) = ip {
                g.login(at, &self.account, ip, ua, device);
            }
        });
    }

    /// A trip abroad of `days` within the run, starting at least `after` into it.
    pub fn plan_trip(&mut self, g: &mut Gen<'_>, after: i64) {
        let span = g.end - g.start;
        if span < after + 12 * HOUR {
            return;
        }
        let dest = &world::ABROAD[g.rng.gen_range(0..world::ABROAD.len())];
        let leave = g.start + g.rng.gen_range(after..span - 6 * HOUR);
        // The flight and 1–4 hours in airports: nothing in between.
        let land = leave + g.rng.gen_range((dest.flight_hours + 1) * HOUR..(dest.flight_hours + 4) * HOUR);
        let stay = g.rng.gen_range(DAY..6 * DAY);
        let back_leave = land + stay;
        let back_land = back_leave + (land - leave);
        let asn = dest.networks[g.rng.gen_range(0..dest.networks.len())];
        let hotel = Access::fixed(g, asn);
        self.trip = Some(Trip { leave, land, back_leave, back_land, hotel });
    }
}

/// One program's (or one person's hand) use of a key: which calls, from where, how they trade.
pub struct Use<'p> {
    pub key: &'p str,
    pub ua: String,
    pub hours: Hours,
    pub per_hour: f64,
    pub calls: (u32, u32),
    pub gap: (i64, i64),
    pub trading: Option<Trading>,
    pub scale: f64,
    /// Every call from another address (rotating proxies), not one per session.
    pub rotate: bool,
}

impl<'p> Use<'p> {
    /// A person at a keyboard: short sessions of a few calls.
    pub fn by_hand(key: &'p str, ua: String, hours: Hours, per_hour: f64, trading: Option<Trading>) -> Self {
        Use { key, ua, hours, per_hour, calls: (2, 12), gap: (2 * SEC, 40 * SEC), trading, scale: 1.0, rotate: false }
    }
    /// A bot: long sessions of frequent calls, round the clock.
    pub fn bot(key: &'p str, ua: String, per_hour: f64, trading: Option<Trading>) -> Self {
        Use {
            key,
            ua,
            hours: Hours::always(),
            per_hour,
            calls: (5, 40),
            gap: (SEC, 20 * SEC),
            trading,
            scale: 1.0,
            rotate: false,
        }
    }

    /// Runs the use between `from` and `to`; `addr` says where each session comes from (None:
    /// no session then) and whether the gateway refused its address.
    pub fn run(
        &self,
        g: &mut Gen<'_>,
        from: i64,
        to: i64,
        mut addr: impl FnMut(&mut Gen<'_>, i64) -> Option<(IpAddr, &'static str)>,
    ) {
        let mut at_ip: Option<(IpAddr, &'static str)> = None;
        let trader = self.trading.is_some();
        g.sessions(from, to, self.per_hour, &self.hours, trader, self.calls, self.gap, |g, at, i| {
            if i == 0 || self.rotate {
                at_ip = addr(g, at);
            }
            let Some((ip, outcome)) = at_ip else { return };
            g.request(at, self.key, ip, &self.ua, outcome);
            if let (Some(t), "VALID") = (&self.trading, outcome) {
                g.trade(at + 50, self.key, t, self.scale);
            }
        });
    }
}

/// A jittered copy of a rate: people differ.
pub fn jitter(g: &mut Gen<'_>, x: f64, spread: f64) -> f64 {
    x * (spread * normal(&mut g.rng)).exp()
}

/// A time within the run between fractions `a` and `b` of it, but at least `min_after` in.
pub fn moment(g: &mut Gen<'_>, a: f64, b: f64, min_after: i64) -> i64 {
    let span = (g.end - g.start) as f64;
    let lo = (span * a) as i64;
    let hi = ((span * b) as i64).max(lo + 1);
    let lo = lo.max(min_after.min(hi - 1));
    g.start + g.rng.gen_range(lo..hi)
}
