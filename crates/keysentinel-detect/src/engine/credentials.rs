//! Who holds the secret: bursts of bad signatures on a real key id, correct signatures from
//! outside the key's allowlist, and funds sent to a new address from a network the owner never
//! used.

use super::state::{asn_key, asn_text, h64, Site, MINUTE};
use super::{Engine, Req};
use crate::event::Millis;
use crate::indicator::Indicator;
use std::net::IpAddr;

/// How recent the key's last request must be for a withdrawal to be judged by where it came from.
const WITHDRAWAL_CONTEXT: Millis = 10 * MINUTE;

impl Engine<'_> {
    pub(super) fn bad_signature(&mut self, k: usize, ts: Millis, ip: IpAddr) {
        let w = &mut self.keys[k].bad_signatures;
        w.push_back(ts);
        while w.front().is_some_and(|t| ts - t > 5 * MINUTE) {
            w.pop_front();
        }
        if w.len() >= self.cfg.bad_signature_burst {
            let n = w.len();
            let place = self.place(ip, ts);
            let evidence =
                format!("{n} bad signatures in 5 min, latest from {ip} ({} {})", place.country_str(), asn_text(&place));
            self.fire(k, ts, Indicator::BadSignatureBurst, None, evidence);
        }
    }

    /// A correctly signed request refused for its address: someone else holds the secret —
    /// unless it is the owner's own address, one they log in from, which the allowlist merely
    /// does not list.
    pub(super) fn outside_allowlist(&mut self, r: &Req<'_>) {
        if r.attested {
            return;
        }
        let evidence = format!(
            "correctly signed from {} ({} {}), outside the key's allowlist",
            r.ip,
            r.place.country_str(),
            asn_text(&r.place)
        );
        // From a consumer line at home on the operator the owner logs in from — Korean ISPs
        // renumber homes every few days, and the owner logs in from the new line some days
        // later — the tries are one place however many lines they come from: the owner's notice
        // stands (a neighbour on that operator may hold the secret), but they never add up to
        // a suspension on their own (score.rs, `sightings` and `persistent`).
        let at = match (self.owners_operator(r.k, &r.place, r.ts), r.place.asn) {
            (true, Some(asn)) => Site::Network(crate::geo::operator(asn)),
            _ => r.site,
        };
        self.fire(r.k, r.ts, Indicator::OutsideAllowlist, Some(at), evidence);
    }

    /// A withdrawal: to an address the account never paid before, with the key last used from
    /// a place that is neither the owner's nor the key's own, it is a compromise.
    pub(super) fn withdrawal(&mut self, ts: Millis, key_id: Option<&str>, account_id: Option<&str>, address: &str) {
        let k = key_id.map(|id| self.key(id, account_id));
        let a = match (k, account_id) {
            (Some(k), _) => self.keys[k].account_ix,
            (None, Some(id)) => self.account(id),
            (None, None) => return,
        };
        let payee = h64(address.as_bytes());
        let payees = &mut self.accounts[a].payees;
        let new_payee = !payees.contains(&payee);
        if new_payee {
            if payees.len() >= 32 {
                payees.remove(0);
            }
            payees.push(payee);
        }
        let Some(k) = k else { return };
        // The record names no address: where the key was used in the minutes before is where
        // the withdrawal came from (a balance check, then the call). A key idle for longer says
        // nothing of who withdrew.
        if self.keys[k].last.is_none_or(|last| ts - last > WITHDRAWAL_CONTEXT) {
            return;
        }
        let Some(&ip) = self.keys[k].recent_ips.last() else { return };
        let place = self.place(ip, ts);
        // A dual-stack household's IPv6 prefix is its line (state.rs, `household`).
        let site = self.keys[k].household(self.site_of(&place, ip));
        let owners = self.sanctioned(k, ip) || self.attested(k, site, None, ts);
        // A fixed line is the key's own once used in sessions apart or while the key was
        // learned; sharing its ISP vouches for nothing (three ISPs serve most Korean homes). A
        // carrier's or a VPN's network, where the address changes each session, is the key's
        // own by its ASN.
        let familiar = match site {
            Site::Line(_) => self.keys[k].own_line(site, &self.cfg),
            Site::Network(_) => place.asn.is_some_and(|a| self.keys[k].asns.get(asn_key(a)) > 2),
        };
        if new_payee && !owners && !familiar && self.keys[k].learned(&self.cfg, ts) {
            let evidence = format!(
                "withdrawal to a new address with the key last used from {ip} ({} {}), a place new to it",
                place.country_str(),
                asn_text(&place)
            );
            self.observe(Some(ip), None, None);
            self.fire(k, ts, Indicator::NewWithdrawalAddress, Some(site), evidence);
            self.observing.ip = None;
        }
    }
}
