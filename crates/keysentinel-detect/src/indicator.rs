//! The indicators of suspected sharing, each with its weight in the risk score.
//!
//! Risk combines the indicators active on a key as a noisy-OR, `1 − Π(1 − wᵢ)`: independent
//! pieces of evidence each close part of the remaining doubt. An indicator that fires again
//! (after a quiet spell) strengthens, since persistence separates sharing from a one-off trip.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Indicator {
    ConcurrentUse,
    AlternatingNetworks,
    AlternatingClients,
    ProbedThenUsed,
    ImpossibleTravel,
    IpRotation,
    NewHostingNetwork,
    ClientChurn,
    BadSignatureBurst,
    OutsideAllowlist,
    Dormant,
    OrderAnomaly,
    CoordinatedOrders,
    OutsideDeclared,
    LinkedAccounts,
    Unfamiliar,
    Complaint,
    VendorIntel,
}

impl Indicator {
    pub const ALL: [Indicator; 18] = [
        Indicator::ConcurrentUse,
        Indicator::AlternatingNetworks,
        Indicator::AlternatingClients,
        Indicator::ProbedThenUsed,
        Indicator::ImpossibleTravel,
        Indicator::IpRotation,
        Indicator::NewHostingNetwork,
        Indicator::ClientChurn,
        Indicator::BadSignatureBurst,
        Indicator::OutsideAllowlist,
        Indicator::Dormant,
        Indicator::OrderAnomaly,
        Indicator::CoordinatedOrders,
        Indicator::OutsideDeclared,
        Indicator::LinkedAccounts,
        Indicator::Unfamiliar,
        Indicator::Complaint,
        Indicator::VendorIntel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Indicator::ConcurrentUse => "concurrent_distant_use",
            Indicator::AlternatingNetworks => "alternating_fixed_networks",
            Indicator::AlternatingClients => "alternating_clients",
            Indicator::ProbedThenUsed => "probed_then_used",
            Indicator::ImpossibleTravel => "impossible_travel",
            Indicator::IpRotation => "ip_asn_rotation",
            Indicator::NewHostingNetwork => "new_hosting_or_vpn",
            Indicator::ClientChurn => "client_churn",
            Indicator::BadSignatureBurst => "bad_signature_burst",
            Indicator::OutsideAllowlist => "signed_outside_allowlist",
            Indicator::Dormant => "dormant_reactivation",
            Indicator::OrderAnomaly => "order_anomaly",
            Indicator::CoordinatedOrders => "coordinated_orders",
            Indicator::OutsideDeclared => "outside_declared_geography",
            Indicator::LinkedAccounts => "linked_unrelated_accounts",
            Indicator::Unfamiliar => "unfamiliar_access",
            Indicator::Complaint => "complaint",
            Indicator::VendorIntel => "vendor_intel",
        }
    }

    /// The weight of a first firing.
    pub fn weight(self) -> f32 {
        match self {
            Indicator::ConcurrentUse => 0.55,
            Indicator::AlternatingNetworks => 0.45,
            Indicator::AlternatingClients => 0.35,
            Indicator::ProbedThenUsed => 0.65,
            Indicator::ImpossibleTravel => 0.50,
            Indicator::IpRotation => 0.25,
            Indicator::NewHostingNetwork => 0.30,
            Indicator::ClientChurn => 0.25,
            Indicator::BadSignatureBurst => 0.50,
            Indicator::OutsideAllowlist => 0.45,
            Indicator::Dormant => 0.15,
            Indicator::OrderAnomaly => 0.20,
            Indicator::CoordinatedOrders => 0.45,
            Indicator::OutsideDeclared => 0.10,
            Indicator::LinkedAccounts => 0.55,
            Indicator::Unfamiliar => 0.25,
            Indicator::Complaint => 0.45,
            Indicator::VendorIntel => 0.60,
        }
    }

    /// How many firings count towards the weight (more do not add).
    pub fn max_repeats(self) -> u32 {
        match self {
            Indicator::ConcurrentUse
            | Indicator::AlternatingNetworks
            | Indicator::AlternatingClients
            | Indicator::LinkedAccounts
            | Indicator::CoordinatedOrders => 3,
            Indicator::OutsideDeclared | Indicator::Dormant => 1,
            _ => 2,
        }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four stages of the DAXA standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Monitor,
    Warn,
    Reverify,
    Invalidate,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::Monitor, Level::Warn, Level::Reverify, Level::Invalidate];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Monitor => "monitor",
            Level::Warn => "warn",
            Level::Reverify => "reverify",
            Level::Invalidate => "invalidate",
        }
    }

    /// The level reached by `risk` under `thresholds` (monitor, warn, reverify, invalidate).
    pub fn of(risk: f32, thresholds: &[f32; 4]) -> Option<Level> {
        Level::ALL.iter().rev().zip(thresholds.iter().rev()).find(|(_, t)| risk >= **t).map(|(l, _)| *l)
    }
}

/// Noisy-OR of the weights.
pub fn combine(weights: impl IntoIterator<Item = f32>) -> f32 {
    1.0 - weights.into_iter().fold(1.0, |doubt, w| doubt * (1.0 - w.clamp(0.0, 1.0)))
}

/// The weight of an indicator that fired `n` times: each firing closes the same share of the
/// remaining doubt, up to `max_repeats`.
pub fn repeated(ind: Indicator, n: u32) -> f32 {
    let n = n.min(ind.max_repeats()).max(1);
    1.0 - (1.0 - ind.weight()).powi(n as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_combination() {
        let t = [0.3, 0.5, 0.75, 0.9];
        assert_eq!(Level::of(0.1, &t), None);
        assert_eq!(Level::of(0.3, &t), Some(Level::Monitor));
        assert_eq!(Level::of(0.8, &t), Some(Level::Reverify));
        assert_eq!(Level::of(0.95, &t), Some(Level::Invalidate));
        assert!((combine([0.5, 0.5]) - 0.75).abs() < 1e-6);
        assert_eq!(combine([]), 0.0);
        assert!(repeated(Indicator::ConcurrentUse, 3) > repeated(Indicator::ConcurrentUse, 1));
        assert!((repeated(Indicator::Dormant, 5) - Indicator::Dormant.weight()).abs() < 1e-6);
    }
}
