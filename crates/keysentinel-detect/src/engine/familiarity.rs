//! The statistical score of an access (Freeman et al., "Who Are You? A Statistical Approach to
//! Measuring User Authenticity", NDSS 2016): how much likelier its network and country, and
//! apart from them its client, are for someone else than for this key's owner. The two parts
//! are two kinds of evidence: where from, and with what.

use super::state::{asn_key, asn_text, client_family, country_key, Counts};
use super::{Engine, Req};
use crate::geo::{Network, Place};
use crate::indicator::Indicator;

impl Engine<'_> {
    pub(super) fn familiarity(&mut self, r: &Req<'_>) {
        if !r.learned || r.owner() {
            return;
        }
        let (network, client) = self.llr(r.k, &r.place, r.family);
        let threshold = self.cfg.unfamiliar_llr;
        if network > threshold {
            let evidence = format!(
                "access from {} {} is {:.0}× likelier for another user than for this key's owner",
                r.place.country_str(),
                asn_text(&r.place),
                f64::from(network).exp().min(1e9)
            );
            self.fire(r.k, r.ts, Indicator::Unfamiliar, Some(r.site), evidence);
        }
        let confirmed = r.family.is_some_and(|f| self.client_attested(r.k, f, r.ts));
        if client > threshold && !confirmed {
            let evidence = format!(
                "client {:?} is {:.0}× likelier for another user than for this key's owner",
                r.ua.map(client_family).unwrap_or("-"),
                f64::from(client).exp().min(1e9)
            );
            self.fire(r.k, r.ts, Indicator::UnfamiliarClient, Some(r.site), evidence);
        }
    }

    /// Log-likelihood ratios of this access, (network and country, client): attacker (the
    /// population at large, hosting and VPN networks weighted up) against this key's own
    /// history, smoothed up ASN → country → global (and client family → global) with a
    /// Dirichlet prior.
    pub(super) fn llr(&self, k: usize, place: &Place, family: Option<u64>) -> (f32, f32) {
        const BETA: f32 = 2.0;
        let st = &self.keys[k];
        // Each part against the requests its own tally took in (the owner's own use).
        let (n_place, n_client) = (st.countries.total as f32, st.families.total as f32);
        let global = |c: &Counts, h: u64| (c.get(h) as f32 + 1.0) / (c.total as f32 + 50.0);
        let (mut network, mut client) = (0.0, 0.0);
        if let (Some(asn), Some(country)) = (place.asn, place.country) {
            let (ah, ch) = (asn_key(asn), country_key(country));
            let p_country =
                (st.countries.get(ch) as f32 + BETA * global(&self.global_countries, ch)) / (n_place + BETA);
            let p_user = (st.asns.get(ah) as f32 + BETA * p_country) / (n_place + BETA);
            let boost = if matches!(place.network, Network::Hosting | Network::Vpn) { 3.0 } else { 1.0 };
            let p_attacker = (global(&self.global_asns, ah) * boost).min(1.0);
            network = (p_attacker / p_user).ln();
        }
        if let Some(f) = family {
            let p_user = (st.families.get(f) as f32 + BETA * global(&self.global_families, f)) / (n_client + BETA);
            client = (global(&self.global_families, f) / p_user).ln();
        }
        (network, client)
    }
}
