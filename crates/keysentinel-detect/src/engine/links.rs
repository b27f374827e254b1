//! Links between accounts: one address or device driving keys of unrelated accounts, and the
//! accounts a decision names as related.

use super::state::{distinct, host_of, MostlyOne};
use super::{Engine, Req};
use crate::decision::Related;
use crate::event::Millis;
use crate::geo::Network;
use crate::indicator::Indicator;
use std::net::IpAddr;

/// On a consumer line, how close together the accounts' uses must come to be one operator's.
const HOUSEHOLD_WINDOW: Millis = 5 * super::state::MINUTE;

pub(super) enum LinkKey<'a> {
    Ip(IpAddr),
    Device(&'a str),
}

/// An address's entry: the account (low half) and the client family it came with (high half).
fn entry(account: usize, family: Option<u64>) -> u64 {
    (account as u64 & 0xffff_ffff) | family.map_or(0, |f| (f as u32 as u64 | 1) << 32)
}

impl Engine<'_> {
    /// One operator driving several unrelated accounts' keys from one address, with one
    /// program: what an affiliate ring or an unregistered vendor does. Not for addresses many
    /// honest users share — a mobile carrier's NAT, a VPN's exit, an approved vendor's egress
    /// — nor for customers at their own office or campus (their logins vouch for it), nor for
    /// an address where several programs are seen (a public hotspot, a café): an operator
    /// drives the accounts with one.
    pub(super) fn links(&mut self, r: &Req<'_>) {
        let account = self.keys[r.k].account_ix;
        let shared_ip = matches!(r.place.network, Network::Mobile | Network::Vpn)
            || self.approved_egress.iter().any(|n| n.contains(&r.ip))
            || matches!(r.site, super::state::Site::Network(_));
        if !shared_ip && !r.owner() {
            // A household's line: its members each trade from home, with the family PC's
            // program, within the hour of an evening; an operator on a line of their own drives
            // the accounts one after the other, within minutes.
            let within = if r.place.network == Network::Access { HOUSEHOLD_WINDOW } else { i64::MAX };
            let n = self.link(LinkKey::Ip(host_of(r.ip)), r.ts, entry(account, r.family), within);
            if n >= self.cfg.link_accounts {
                let minutes = within.min(self.cfg.link_window_minutes * super::state::MINUTE) / super::state::MINUTE;
                let evidence =
                    format!("{} drove keys of {n} unrelated accounts with one client within {minutes} min", r.ip);
                self.fire(r.k, r.ts, Indicator::LinkedAccounts, None, evidence);
            }
        }
        if let Some(d) = r.device {
            let n = self.link(LinkKey::Device(d), r.ts, entry(account, None), i64::MAX);
            if n >= self.cfg.link_accounts {
                self.fire(
                    r.k,
                    r.ts,
                    Indicator::LinkedAccounts,
                    None,
                    format!("device {d:?} drove keys of {n} unrelated accounts"),
                );
            }
        }
    }

    /// Records the entry for the address or device; returns how many unrelated accounts (one
    /// per relationship group) used it within the link window with the same client family.
    /// Accounts count only when seen there within `within` of `ts`, too.
    fn link(&mut self, key: LinkKey<'_>, ts: Millis, value: u64, within: Millis) -> usize {
        let window = self.cfg.link_window_minutes * super::state::MINUTE;
        let recent = match key {
            LinkKey::Ip(ip) => match self.addresses.get_mut(&ip) {
                Some(a) => &mut a.accounts,
                None => return 0,
            },
            LinkKey::Device(d) => {
                if !self.device_links.contains_key(d) {
                    self.device_links.insert(d.to_owned(), MostlyOne::default());
                }
                match self.device_links.get_mut(d) {
                    Some(w) => w,
                    None => return 0,
                }
            }
        };
        let n = recent.see(value, ts, window);
        if n < self.cfg.link_accounts {
            return n;
        }
        let family = value >> 32;
        // Many programs there: a public address (a hotspot, a café, an office), not one operator.
        if distinct(recent.values().map(|v| v >> 32)) >= 3 {
            return 0;
        }
        let accounts: arrayvec::ArrayVec<u64, 16> = recent
            .entries()
            .filter(|(v, t)| v >> 32 == family && ts - t <= within)
            .map(|(v, _)| v & 0xffff_ffff)
            .collect();
        let roots: arrayvec::ArrayVec<u64, 16> = accounts.into_iter().map(|a| self.root(a as usize) as u64).collect();
        distinct(roots.into_iter())
    }

    /// The accounts linked to key `k`'s (at most 20, by account id), for the case's evidence:
    /// those that drove keys from its recent addresses or device, its documented partners, and
    /// those whose orders coincided with its own.
    pub(super) fn related(&self, k: usize) -> Vec<Related> {
        let st = &self.keys[k];
        let own = st.account_ix;
        let mut found: Vec<(usize, String)> = Vec::new();
        for ip in &st.recent_ips {
            if let Some(a) = self.addresses.get(&host_of(*ip)) {
                found.extend(a.accounts.values().map(|x| ((x & 0xffff_ffff) as usize, format!("shared address {ip}"))));
            }
        }
        if let Some((d, links)) = st.device.as_deref().and_then(|d| Some((d, self.device_links.get(d)?))) {
            found.extend(links.values().map(|x| ((x & 0xffff_ffff) as usize, format!("shared device {d:?}"))));
        }
        found.extend(
            self.accounts[own]
                .partners
                .iter()
                .map(|(p, kind)| (*p, format!("documented relationship ({})", kind.as_str()))),
        );
        if let Some(co) = &st.co_ordered {
            found.extend(co.values().map(|x| (x as usize, "coordinated orders".to_owned())));
        }
        let mut related: Vec<Related> = Vec::new();
        for (a, via) in found {
            let Some(acct) = self.accounts.get(a).filter(|_| a != own) else { continue };
            if !related.iter().any(|r| r.account_id == acct.id) {
                related.push(Related { account_id: acct.id.clone(), via });
            }
        }
        related.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        related.truncate(20);
        related
    }
}
