//! Evidence of the owner: what shows that the owner is the one acting counts against
//! suspicion. The registry sanctions a key's allowlist and its approved vendor's egress; the
//! owner's own logins to the exchange's web site and app vouch for the network, country and
//! device they came from; an analyst dismissing a case, or the owner answering a notice,
//! confirms networks, countries and clients as theirs (`confirmation` records), so the same
//! honest pattern does not open a second case.

use super::state::{h64, line_of, vouch, vouched, Owner, Site, DAY, HOUR, MINUTE};
use super::Engine;
use crate::event::{Confirmer, Millis};
use crate::geo::{distance_km, operator, Network, Place};
use std::net::IpAddr;

/// A range whose addresses hop from session to session this often (hops to stays, with enough
/// of them seen) is a dynamic pool — a carrier's phones under the same ASN as its homes — and
/// its addresses say nothing of who is behind them.
const POOL_MIN_HOPS: u32 = 4;

/// What the engine has seen of an address range: how often a key's next session there came
/// from another line (a hop) or the same one (a stay).
#[derive(Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct RangeStats {
    hops: u32,
    stays: u32,
}

impl Engine<'_> {
    /// The site of an address: its line, unless its network's addresses are shared or hop.
    pub(super) fn site_of(&self, place: &Place, ip: IpAddr) -> Site {
        match (place.network, place.asn) {
            (Network::Mobile | Network::Vpn, Some(asn)) => Site::Network(asn),
            (Network::Access, Some(asn)) if self.dynamic(place.range) => Site::Network(asn),
            _ => Site::Line(line_of(ip)),
        }
    }

    fn dynamic(&self, range: u32) -> bool {
        range != 0 && self.ranges.get(&range).is_some_and(|r| r.hops >= POOL_MIN_HOPS && r.hops * 2 > r.stays * 3)
    }

    /// Learns, from key `k`'s sessions, whether `place`'s range keeps its addresses.
    pub(super) fn learn_range(&mut self, k: usize, ts: Millis, place: &Place, ip: IpAddr) {
        if place.range == 0 || place.network != Network::Access {
            return;
        }
        let line = line_of(ip);
        let st = &mut self.keys[k];
        let seen = st.ranges.iter_mut().find(|(r, _, _)| *r == place.range);
        let verdict = match seen {
            Some(e) => {
                let v = if e.1 != line && ts - e.2 <= 12 * HOUR {
                    Some(true)
                } else if e.1 == line && ts - e.2 > 30 * MINUTE {
                    Some(false)
                } else {
                    None
                };
                (e.1, e.2) = (line, ts);
                v
            }
            None => {
                if st.ranges.is_full() {
                    if let Some(i) = st.ranges.iter().enumerate().min_by_key(|(_, e)| e.2).map(|(i, _)| i) {
                        st.ranges.remove(i);
                    }
                }
                st.ranges.push((place.range, line, ts));
                None
            }
        };
        if let Some(hop) = verdict {
            let r = self.ranges.entry(place.range).or_default();
            if hop {
                r.hops = r.hops.saturating_add(1);
            } else {
                r.stays = r.stays.saturating_add(1);
            }
        }
    }

    fn attestation_window(&self) -> Millis {
        self.cfg.attestation_days * DAY
    }

    /// A login by the account's owner (as far as the exchange can tell: its own credentials,
    /// two factors): it vouches for where they are and the device they use. (A sold account's
    /// buyer logs in too: the change-point on the key's habits does not take logins as the
    /// owner's.)
    pub(super) fn login(&mut self, account_id: &str, ts: Millis, ip: IpAddr, device: Option<&str>) {
        let window = self.attestation_window();
        let a = self.account(account_id);
        let place = self.place(ip, ts);
        let site = self.site_of(&place, ip);
        let at_home = place.country.is_some_and(|c| self.accounts[a].declared.contains(&c));
        let owner = self.accounts[a].owner.get_or_insert_with(Box::<Owner>::default);
        let device = device.map(|d| h64(d.as_bytes()));
        let known_device = device.is_some_and(|d| vouched(&owner.devices, &d, ts, window));
        let known_site = vouched(&owner.sites, &site, ts, window);
        vouch(&mut owner.sites, site, ts);
        if let Some(c) = place.country {
            vouch(&mut owner.countries, c, ts);
        }
        if let Some(d) = device {
            vouch(&mut owner.devices, d, ts);
        }
        if let (Network::Access, true, Some(asn)) = (place.network, at_home, place.asn) {
            vouch(&mut owner.operators, operator(asn), ts);
        }
        if known_device && self.tunnel(a, ts, &place, site) {
            if let Some(owner) = self.accounts[a].owner.as_mut() {
                vouch(owner.tunnels.get_or_insert_with(Box::default), site, ts);
            }
        }
        if !known_site {
            self.take_back(a, site, ts);
        }
        self.owner_at(a, ts, place, site);
        // Where the owner is counts into the history of the account's keys too, as in Freeman
        // et al.'s user model: their automation from where they live is then familiar.
        for k in self.accounts[a].keys.clone() {
            let st = &mut self.keys[k];
            if let Some(asn) = place.asn {
                st.asns.add(super::state::asn_key(asn));
            }
            if let Some(c) = place.country {
                st.countries.add(super::state::country_key(c));
            }
        }
    }

    /// An analyst's or the owner's confirmation that networks, countries, clients and devices
    /// are the owner's. An analyst's (dismissing a case) also clears what the key's suspicion
    /// stood on, so it starts afresh.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn confirmation(
        &mut self,
        ts: Millis,
        account_id: &str,
        key_id: Option<&str>,
        by: Confirmer,
        ips: &[IpAddr],
        asns: &[u32],
        countries: &[[u8; 2]],
        clients: &[&str],
        devices: &[&str],
    ) {
        let a = self.account(account_id);
        let mut sites: Vec<Site> = Vec::with_capacity(ips.len());
        for ip in ips {
            let place = self.place(*ip, ts);
            sites.push(self.site_of(&place, *ip));
        }
        let owner = self.accounts[a].owner.get_or_insert_with(Box::<Owner>::default);
        let sites: Vec<Site> = sites.into_iter().chain(asns.iter().map(|a| Site::Network(*a))).collect();
        for s in &sites {
            vouch(&mut owner.sites, *s, ts);
        }
        for c in countries {
            vouch(&mut owner.countries, *c, ts);
        }
        for c in clients {
            vouch(&mut owner.clients, h64(super::state::client_family(c).as_bytes()), ts);
        }
        for d in devices {
            vouch(&mut owner.devices, h64(d.as_bytes()), ts);
        }
        for s in sites {
            self.take_back(a, s, ts);
        }
        if let (Some(key_id), Confirmer::Analyst) = (key_id, by) {
            if let Some(&k) = self.key_index.get(key_id) {
                let st = &mut self.keys[k];
                st.fired.clear();
                st.level = None;
            }
        }
    }

    /// Whether a login from a fixed line, on a device the owner used before, comes through a
    /// tunnel: one of the account's keys was used from a line at home (in the declared
    /// countries) too recently for anyone to have travelled to the login's line since. The
    /// owner cannot be in both places and it is their device: the far line is a VPN's or an
    /// employer's exit that the data does not name (a head office's own line abroad, a small
    /// provider's), not a place where someone else is. Only the far one: two lines at home in
    /// use at once are as often the owner and someone on the owner's own machine (remote
    /// desktop, a bought account's device) — which of them is the tunnel, nothing tells (tried:
    /// it cost the held-out sharing families recall).
    fn tunnel(&self, a: usize, ts: Millis, place: &Place, site: Site) -> bool {
        let (Some(here), Site::Line(_), Network::Access) = (place.lat_lon, site, place.network) else {
            return false;
        };
        let account = &self.accounts[a];
        account.keys.iter().any(|&k| {
            self.keys[k].places.iter().any(|s| {
                let home = s.place.country.is_some_and(|c| account.declared.contains(&c));
                home && s.place.lat_lon.is_some_and(|there| {
                    let apart = distance_km(here, there) - place.accuracy_km - s.place.accuracy_km;
                    let hours = (ts - s.ts).max(1) as f32 / HOUR as f32;
                    apart > self.cfg.travel_min_km && apart / hours > self.cfg.travel_max_kmh
                })
            })
        })
    }

    /// Whether `site` is a tunnel the owner's device was seen through (see [`Engine::tunnel`]).
    pub(super) fn tunnelled(&self, k: usize, site: Site, ts: Millis) -> bool {
        let Some(owner) = &self.accounts[self.keys[k].account_ix].owner else { return false };
        owner.tunnels.as_ref().is_some_and(|t| vouched(t, &site, ts, self.attestation_window()))
    }

    /// Whether `place` is a consumer line at home on an operator the owner logs in from: their
    /// household's line, maybe renumbered since their last login, or a neighbour's.
    pub(super) fn owners_operator(&self, k: usize, place: &Place, ts: Millis) -> bool {
        let declared = &self.accounts[self.keys[k].account_ix].declared;
        place.network == Network::Access
            && place.country.is_some_and(|c| declared.contains(&c))
            && place.asn.is_some_and(|a| self.owners_operator_asn(k, operator(a), ts))
    }

    /// Whether the owner logged in at home from operator `op` lately.
    pub(super) fn owners_operator_asn(&self, k: usize, op: u32, ts: Millis) -> bool {
        let Some(owner) = &self.accounts[self.keys[k].account_ix].owner else { return false };
        vouched(&owner.operators, &op, ts, self.attestation_window())
    }

    /// Whether the owner vouched for a request from `site` (or on `device`) to key `k`.
    pub(super) fn attested(&self, k: usize, site: Site, device: Option<&str>, ts: Millis) -> bool {
        let Some(owner) = &self.accounts[self.keys[k].account_ix].owner else { return false };
        let window = self.attestation_window();
        vouched(&owner.sites, &site, ts, window)
            || device.is_some_and(|d| vouched(&owner.devices, &h64(d.as_bytes()), ts, window))
    }

    /// Whether the owner was seen in (or confirmed) `country` lately.
    pub(super) fn country_attested(&self, k: usize, country: [u8; 2], ts: Millis) -> bool {
        let Some(owner) = &self.accounts[self.keys[k].account_ix].owner else { return false };
        vouched(&owner.countries, &country, ts, self.attestation_window())
    }

    /// Whether an analyst or the owner confirmed the client family as theirs.
    pub(super) fn client_attested(&self, k: usize, family: u64, ts: Millis) -> bool {
        let Some(owner) = &self.accounts[self.keys[k].account_ix].owner else { return false };
        vouched(&owner.clients, &family, ts, self.attestation_window())
    }

    /// Whether the key's registry record sanctions `ip`: its allowlist, or its approved
    /// vendor's egress.
    pub(super) fn sanctioned(&self, k: usize, ip: IpAddr) -> bool {
        let st = &self.keys[k];
        if st.allowlisted(ip) {
            return true;
        }
        match st.vendor.as_deref().and_then(|v| self.vendors.get(v)) {
            Some((true, nets)) => nets.iter().any(|n| n.contains(&ip)),
            _ => false,
        }
    }
}
