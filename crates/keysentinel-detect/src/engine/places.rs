//! Where the key is used from: impossible travel, concurrent use from distant places, fixed
//! lines taking turns, rotation through networks, first use from hosting or VPN networks, and
//! geography outside the declared jurisdictions.

use super::state::{asn_key, asn_text, block_of, declared_text, Seen, Site, HOUR, MINUTE};
use super::{Engine, Req};
use crate::geo::{distance_km, operator, Network};
use crate::indicator::Indicator;

impl Engine<'_> {
    pub(super) fn places(&mut self, r: &Req<'_>) {
        // Where the user physically is: only a fixed line says so. A VPN's exit or a cloud server
        // is somewhere else by design, so honest VPN users and bots do not "teleport" (those
        // networks have their own indicator); a phone's carrier places it at its gateway, and a
        // roaming phone whose carrier routes it home looks as if it never left.
        // A line at home (in the declared countries) is a place once it is the key's line (two
        // sessions, or its baseline's): a phone takes a new address at every attach, IPv6 prefixes of phones and
        // homes come from one aggregate, and abroad the carrier routes its phones home, so a
        // traveller's phone seems never to have left. A line abroad is where it is.
        let line = match r.site {
            Site::Line(_) => {
                let st = &self.keys[r.k];
                let declared = &self.accounts[st.account_ix].declared;
                st.own_line(r.site, &self.cfg)
                    || r.place.country.is_some_and(|c| !declared.is_empty() && !declared.contains(&c))
            }
            Site::Network(_) => false,
        };
        let physical =
            r.place.network == Network::Access && line && r.place.plausible && !self.tunnelled(r.k, r.site, r.ts);
        if physical {
            self.travel_and_concurrency(r);
            self.alternating_lines(r);
            let seen = Seen { ts: r.ts, place: r.place, site: r.site, sanctioned: r.sanctioned };
            self.remember(r.k, seen);
        }
        self.rotation(r);
        self.new_hosting(r);
        self.outside_declared(r);
    }

    /// A located run on key `k`, for the travel, concurrency and turn-taking windows.
    fn remember(&mut self, k: usize, seen: Seen) {
        let window = self.cfg.concurrent_window_minutes.max(self.cfg.alternation_window_minutes) * MINUTE;
        let st = &mut self.keys[k];
        match st.places.back_mut() {
            Some(last) if last.place == seen.place && last.site == seen.site => {
                last.ts = seen.ts;
                last.sanctioned |= seen.sanctioned;
            }
            _ => st.places.push_back(seen),
        }
        while st.places.front().is_some_and(|s| seen.ts - s.ts > window) || st.places.len() > 16 {
            st.places.pop_front();
        }
    }

    /// The owner seen in person: a login from a fixed line in the declared countries places
    /// them there as surely as the key's own use from that line would, so the key used from a
    /// line abroad minutes later is someone else (a key lent abroad while its owner stays home,
    /// checking on it from their phone). Logins from a carrier, a VPN or abroad place no one: a
    /// roaming phone's traffic comes home, and a traveller logs in from wherever they are.
    /// Nor does a line the key does not know as its own.
    pub(super) fn owner_at(&mut self, a: usize, ts: crate::event::Millis, place: crate::geo::Place, site: Site) {
        let at_home = place.country.is_some_and(|c| self.accounts[a].declared.contains(&c));
        let located = place.network == Network::Access && place.plausible && place.lat_lon.is_some();
        if !(matches!(site, Site::Line(_)) && at_home && located) {
            return;
        }
        for k in self.accounts[a].keys.clone() {
            // Only from the key's own line (a household's, used session after session): a
            // carrier that numbers phones and homes alike gives a roaming phone, routed home, an
            // address that looks like a line in Korea.
            let site = self.keys[k].household(site);
            if self.keys[k].own_line(site, &self.cfg) {
                self.remember(k, Seen { ts, place, site, sanctioned: false });
            }
        }
    }

    /// Whether a run was the owner's, as far as is known now: a login since may vouch for it.
    fn owners(&self, k: usize, s: &Seen, ts: crate::event::Millis) -> bool {
        s.sanctioned || self.attested(k, s.site, None, ts)
    }

    /// Whether two runs are the owner's on both sides.
    fn one_actor(&self, a: &Seen, r: &Req<'_>) -> bool {
        r.owner() && self.owners(r.k, a, r.ts)
    }

    fn travel_and_concurrency(&mut self, r: &Req<'_>) {
        let cfg = &self.cfg;
        let Some(here) = r.place.lat_lon else { return };
        let mine = r.institutional && r.sanctioned;
        // Impossible travel from the previous located request.
        if let Some(prev) = self.keys[r.k].places.back().copied() {
            if let Some(there) = prev.place.lat_lon {
                let apart = km(here, there) - r.place.accuracy_km - prev.place.accuracy_km;
                let hours = ((r.ts - prev.ts).max(1) as f32) / HOUR as f32;
                if apart > cfg.travel_min_km
                    && apart / hours > cfg.travel_max_kmh
                    && !mine
                    && !self.one_actor(&prev, r)
                    && !same_network(&prev, r)
                {
                    let evidence = format!(
                        "{} → {}: {:.0} km in {:.0} min ({:.0} km/h)",
                        prev.place.country_str(),
                        r.place.country_str(),
                        apart,
                        hours * 60.0,
                        apart / hours
                    );
                    self.fire(
                        r.k,
                        r.ts,
                        Indicator::ImpossibleTravel,
                        Some(if r.owner() { prev.site } else { r.site }),
                        evidence,
                    );
                }
            }
        }
        // Concurrent use: A, then B far away, then A again, all within the window.
        // The window's runs as one slice, without copying them (this runs on every located
        // request; the deque is rarely wrapped).
        let all: &[Seen] = self.keys[r.k].places.make_contiguous();
        let cfg = &self.cfg;
        let recent =
            all.iter().position(|s| r.ts - s.ts <= cfg.concurrent_window_minutes * MINUTE).unwrap_or(all.len());
        let places = &all[recent..];
        let far = |s: &Seen| {
            s.place.lat_lon.is_some_and(|p| {
                distance_km(p, here) - s.place.accuracy_km - r.place.accuracy_km > cfg.concurrent_min_km
            })
        };
        let Some(b) = places.iter().rposition(far) else { return };
        let near = |s: &Seen| {
            s.place.lat_lon.is_some_and(|p| distance_km(p, here) < 100.0 + s.place.accuracy_km + r.place.accuracy_km)
        };
        let other = places[b];
        if places[..b].iter().any(near) && !mine && !self.one_actor(&other, r) && !same_network(&other, r) {
            let evidence = format!(
                "used alternately from {} ({}) and {} ({}) within {} min",
                r.place.country_str(),
                asn_text(&r.place),
                other.place.country_str(),
                asn_text(&other.place),
                cfg.concurrent_window_minutes
            );
            self.fire(r.k, r.ts, Indicator::ConcurrentUse, Some(if r.owner() { other.site } else { r.site }), evidence);
        }
    }

    /// Fixed lines taking turns: line X, then Y, then X and Y again within the window — two
    /// places each returned to while the other is in use, which one person does not do. Only
    /// stable lines count, used in two sessions or more: a phone under its carrier's home ASN
    /// takes a new address at every attach (and keeps it through one session beside the home
    /// Wi-Fi). Lines the owner logged in from (or the registry sanctions) are theirs; it takes
    /// one that is not.
    fn alternating_lines(&mut self, r: &Req<'_>) {
        let Site::Line(line) = r.site else { return };
        if r.sanctioned || !self.keys[r.k].stable(r.site) {
            return;
        }
        let places = &self.keys[r.k].places;
        // The last 16 runs on fixed lines are enough to see turns being taken.
        let skip = places.len().saturating_sub(16);
        let st = &self.keys[r.k];
        // Turns are taken between blocks (one organisation's lines are one network: a
        // campus's buildings, an office tower's floors), each remembered by its latest line.
        let lines: arrayvec::ArrayVec<(Site, Site, bool), 17> = places
            .iter()
            .skip(skip)
            .filter(|s| st.stable(s.site))
            .map(|s| (block_of(s.site), s.site, self.owners(r.k, s, r.ts)))
            .chain(std::iter::once((block_of(r.site), r.site, r.owner())))
            .collect();
        // Blocks returned to after another block, and whether each is the owner's.
        let mut returning: arrayvec::ArrayVec<(Site, Site, bool), 17> = arrayvec::ArrayVec::new();
        for (i, (block, site, owner)) in lines.iter().enumerate() {
            let before = &lines[..i];
            let returned = before
                .iter()
                .rposition(|(b, ..)| b == block)
                .is_some_and(|j| before[j + 1..].iter().any(|(b, ..)| b != block));
            if returned {
                match returning.iter_mut().find(|(b, ..)| b == block) {
                    Some(e) => (e.1, e.2) = (*site, e.2 | *owner),
                    None => {
                        let _ = returning.try_push((*block, *site, *owner));
                    }
                }
            }
        }
        let here = block_of(r.site);
        let this_returned = returning.iter().any(|(b, ..)| *b == here);
        let strangers = returning.iter().filter(|(.., owner)| !owner).count();
        if !this_returned || returning.len() < 2 || strangers == 0 {
            return;
        }
        let stranger = returning.iter().rev().find(|(.., owner)| !owner).map(|(_, s, _)| *s);
        let other = returning.iter().rev().find(|(b, ..)| *b != here).map(|(_, s, _)| *s);
        let other = match other {
            Some(Site::Line(ip)) => ip.to_string(),
            _ => "another line".into(),
        };
        let evidence = format!(
            "used alternately from fixed lines {line} ({}) and {other} within {} min ({} lines in turn, {strangers} not the owner's)",
            asn_text(&r.place),
            self.cfg.concurrent_window_minutes,
            returning.len(),
        );
        self.fire(r.k, r.ts, Indicator::AlternatingNetworks, stranger, evidence);
    }

    /// Rotation: many networks (ASNs) within an hour, or many fixed lines (residential proxies
    /// hand out another home's address at every call).
    fn rotation(&mut self, r: &Req<'_>) {
        if r.institutional && r.sanctioned || r.owner() {
            return;
        }
        let cfg = &self.cfg;
        let st = &mut self.keys[r.k];
        // By operator: a dual-stack LG U+ phone is on AS17858, AS17853 and AS3786 in one hour.
        let asns = r.place.asn.map_or(0, |asn| st.recent_asns.see(u64::from(operator(asn)), r.ts, HOUR));
        let lines = match r.site {
            Site::Line(_) => st.recent_lines.see(r.site.key(), r.ts, HOUR),
            Site::Network(_) => 0,
        };
        if asns >= cfg.rotation_asns_per_hour {
            self.fire(r.k, r.ts, Indicator::IpRotation, None, format!("{asns} networks (ASNs) within an hour"));
        } else if lines >= 2 * cfg.rotation_asns_per_hour {
            let evidence = format!("{lines} fixed lines within an hour, latest {} ({})", r.ip, asn_text(&r.place));
            self.fire(r.k, r.ts, Indicator::IpRotation, None, evidence);
        }
    }

    /// First use, after learning, from a hosting or VPN network the key never used (and not
    /// its own: allowlist, vendor, the owner's login); right after a burst of bad signatures,
    /// a probed key now used.
    fn new_hosting(&mut self, r: &Req<'_>) {
        let new = r.learned
            && matches!(r.place.network, Network::Hosting | Network::Vpn)
            && r.place.asn.is_some_and(|a| self.keys[r.k].asns.get(asn_key(a)) == 0)
            && !r.owner();
        if !new {
            return;
        }
        if self.active(r.k, Indicator::BadSignatureBurst, r.ts) {
            let evidence = format!(
                "valid use from a new {} network {} after a burst of bad signatures",
                r.place.network.as_str(),
                asn_text(&r.place)
            );
            self.fire(r.k, r.ts, Indicator::ProbedThenUsed, None, evidence);
        }
        let evidence = format!(
            "first use from {} network {} ({}), {}",
            r.place.network.as_str(),
            asn_text(&r.place),
            r.place.country_str(),
            r.ip
        );
        self.fire(r.k, r.ts, Indicator::NewHostingNetwork, Some(r.site), evidence);
    }

    fn outside_declared(&mut self, r: &Req<'_>) {
        let Some(c) = r.place.country else { return };
        let declared = &self.accounts[self.keys[r.k].account_ix].declared;
        // A domestic network's address that the city data places abroad is a data error, not a
        // trip.
        if r.learned
            && r.place.plausible
            && !declared.is_empty()
            && !declared.contains(&c)
            && !r.owner()
            && !self.country_attested(r.k, c, r.ts)
        {
            let evidence = format!("used from {} (declared: {})", r.place.country_str(), declared_text(declared));
            self.fire(r.k, r.ts, Indicator::OutsideDeclared, Some(r.site), evidence);
        }
    }
}

/// Two addresses of one consumer network in one country: the city data places a carrier's
/// addresses (a phone's above all) all over the country, and one household does not hop
/// between a big country's cities in minutes — a data error, not two people.
fn same_network(a: &Seen, r: &Req<'_>) -> bool {
    a.place.asn.is_some()
        && a.place.asn.map(operator) == r.place.asn.map(operator)
        && a.place.country == r.place.country
}

/// Distance in km, with the common case — the very same coordinates — free.
fn km(a: (f32, f32), b: (f32, f32)) -> f32 {
    if a == b {
        0.0
    } else {
        distance_km(a, b)
    }
}
