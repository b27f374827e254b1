//! Declared purpose against behaviour (docs/registry.md, "Purposes"): a key issued for one use
//! and used for another is a key that changed hands, or a delegation the exchange was not told
//! of. The registry refuses what a purpose forbids at issuance and the gateway refuses its
//! scopes; what is left to see is the attempt and the place.

use super::{Engine, Req};
use crate::event::Millis;
use crate::indicator::Indicator;
use std::net::IpAddr;

/// What the engine can hold a key's behaviour against, from the purpose it was issued for.
/// Purposes an exchange defines itself, and keys from before purposes, say nothing here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Declared {
    #[default]
    Unknown,
    /// `portfolio_read_only`: for reading balances and orders, never for trading.
    ReadOnly,
    /// `own_bot`: the owner's own program on the owner's own machines, no third party.
    OwnBot,
}

impl Declared {
    pub fn of(purpose: Option<&str>) -> Self {
        match purpose {
            Some("portfolio_read_only") => Declared::ReadOnly,
            Some("own_bot") => Declared::OwnBot,
            _ => Declared::Unknown,
        }
    }
}

impl Engine<'_> {
    /// The gateway refused a request of key `k` for its scope: on a key issued for reading, an
    /// attempt to trade with it.
    pub(super) fn beyond_scope(&mut self, k: usize, ts: Millis, ip: IpAddr) {
        if self.keys[k].declared != Declared::ReadOnly {
            return;
        }
        self.observe(Some(ip), None, None);
        let evidence = format!(
            "a key issued for reading (portfolio_read_only) was used to trade from {ip}, refused for its scope"
        );
        self.fire(k, ts, Indicator::OutsidePurpose, None, evidence);
        self.observing.ip = None;
    }

    /// An order placed through a key issued for reading: the exchange let through what the
    /// purpose forbids (a scope widened since, or a gateway bypassed).
    pub(super) fn order_beyond_purpose(&mut self, k: usize, ts: Millis, symbol: &str) {
        if self.keys[k].declared != Declared::ReadOnly {
            return;
        }
        let evidence = format!("an order in {symbol} through a key issued for reading (portfolio_read_only)");
        self.fire(k, ts, Indicator::OutsidePurpose, None, evidence);
    }

    /// A key issued for the owner's own bot, used from an approved vendor's registered egress:
    /// the key was handed to a third-party tool the registry does not know it runs under.
    pub(super) fn run_by_a_vendor(&mut self, r: &Req<'_>) {
        if self.keys[r.k].declared != Declared::OwnBot || self.keys[r.k].vendor.is_some() {
            return;
        }
        let Some(vendor) = self
            .vendors
            .iter()
            .filter(|(_, (approved, _))| *approved)
            .find(|(_, (_, egress))| egress.iter().any(|n| n.contains(&r.ip)))
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        let evidence = format!(
            "a key issued for the owner's own bot (own_bot) used from {}, vendor {vendor:?}'s registered egress",
            r.ip
        );
        self.fire(r.k, r.ts, Indicator::OutsidePurpose, Some(r.site), evidence);
    }
}
