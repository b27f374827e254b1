//! With what the key is used: two programs taking turns from two places, and churn through
//! many clients or devices.

use super::state::{block_of, client_family, h64, DAY, MINUTE};
use super::{Engine, Req};
use crate::indicator::Indicator;

impl Engine<'_> {
    pub(super) fn clients(&mut self, r: &Req<'_>) {
        self.alternating_clients(r);
        self.churn(r);
    }

    /// Client family X, then Y from another place, then X again within the window: two
    /// programs of two people, not one person's upgrade. One person's bot in the cloud beside
    /// their laptop at home, or two programs on one machine, are not: the places are both the
    /// owner's, or one, or each program has been used at the other's place. Only stable fixed
    /// lines (used in two sessions or more) are places here: a phone on its carrier's network
    /// (or a VPN), or on a carrier-NAT address of the day, may be anywhere, the owner's sofa
    /// included.
    fn alternating_clients(&mut self, r: &Req<'_>) {
        let Some(f) = r.family else { return };
        // What the registry sanctions (the key's allowlisted servers, its approved vendor) is a
        // program running, not a second person: only unsanctioned use takes turns, or every
        // look-in by hand beside a vendor's bot would be two people taking turns.
        if r.sanctioned {
            return;
        }
        let window = self.cfg.alternation_window_minutes * MINUTE;
        let owner = r.owner();
        let st = &mut self.keys[r.k];
        // A run of requests from one client at one place is one entry: the order of runs is
        // what counts.
        let runs = &mut st.recent_families;
        match runs.last_mut() {
            Some(last) if last.1 == f && last.2 == r.site => last.0 = r.ts,
            _ => {
                if runs.is_full() {
                    runs.remove(0);
                }
                runs.push((r.ts, f, r.site));
            }
        }
        let expired = runs.iter().take_while(|(t, ..)| r.ts - t > window).count();
        runs.drain(..expired);
        let runs = &self.keys[r.k].recent_families;
        let last = runs.len().saturating_sub(1);
        let Some(b) = runs.iter().take(last).rposition(|(_, g, _)| *g != f) else { return };
        let (_, other, other_site) = runs[b];
        let other_owner = self.attested(r.k, other_site, None, r.ts);
        let turns = runs.iter().take(b).any(|(_, g, _)| *g == f);
        let st = &self.keys[r.k];
        let elsewhere = block_of(other_site) != block_of(r.site) && st.stable(other_site) && st.stable(r.site);
        let theirs = (other_owner && owner) || self.client_attested(r.k, other, r.ts);
        // Each client used at the other's place too is one person's kit moving with them (the
        // bot at home and at the office, the phone app on both Wi-Fis); two people taking turns
        // each keep their own program at their own place.
        let mingled = st.used_with(r.site, other) && st.used_with(other_site, f);
        if turns && elsewhere && !theirs && !mingled && !r.institutional && r.learned {
            let evidence = format!(
                "client {:?} alternating with another client from another place within {} min",
                r.ua.map(client_family).unwrap_or("-"),
                self.cfg.alternation_window_minutes
            );
            self.fire(
                r.k,
                r.ts,
                Indicator::AlternatingClients,
                Some(if owner { other_site } else { r.site }),
                evidence,
            );
        }
    }

    fn churn(&mut self, r: &Req<'_>) {
        let client = r.device.map(|d| h64(d.as_bytes())).or(r.ua.map(|u| h64(u.as_bytes())));
        let Some(c) = client else { return };
        let distinct = self.keys[r.k].recent_clients.see(c, r.ts, DAY);
        if distinct >= self.cfg.churn_clients_per_day && !r.institutional {
            self.fire(
                r.k,
                r.ts,
                Indicator::ClientChurn,
                None,
                format!("{distinct} distinct clients or devices within a day"),
            );
        }
    }
}
