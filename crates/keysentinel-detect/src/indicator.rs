//! What the engine expects of each indicator: how often it shows on a shared key, and — before
//! the exchange's own population says otherwise — on an honest one (docs/detection.md, "Risk").
//! The indicators themselves, their kinds and the stages are the domain's vocabulary.

pub use keysentinel_domain::indicator::{Indicator, Kind};
pub use keysentinel_domain::Stage;

/// The expert's expectations of an indicator, the engine's model parameters.
pub trait Expected {
    /// How often it shows on a day a key is used by someone else in the way it points to (a
    /// key lent abroad, for travel; a proxy pool, for rotation): the expert's estimate, the
    /// numerator of the likelihood ratio.
    fn on_shared(self) -> f64;
    /// How often it shows on a day an honest key is used, before the population has said: the
    /// prior of the denominator, which the exchange's own keys soon outweigh.
    fn on_honest_prior(self) -> f64;
}

impl Expected for Indicator {
    fn on_shared(self) -> f64 {
        match self {
            Indicator::ConcurrentUse => 0.60,
            Indicator::AlternatingNetworks => 0.50,
            Indicator::AlternatingClients => 0.50,
            Indicator::ProbedThenUsed => 0.60,
            Indicator::ImpossibleTravel => 0.50,
            Indicator::IpRotation => 0.50,
            Indicator::NewHostingNetwork => 0.50,
            Indicator::ClientChurn => 0.30,
            Indicator::BadSignatureBurst => 0.50,
            Indicator::OutsideAllowlist => 0.50,
            Indicator::Dormant => 0.10,
            Indicator::OrderAnomaly => 0.40,
            Indicator::CoordinatedOrders => 0.60,
            Indicator::OutsideDeclared => 0.40,
            Indicator::LinkedAccounts => 0.50,
            Indicator::Unfamiliar => 0.60,
            Indicator::Complaint => 0.10,
            Indicator::VendorIntel => 0.30,
            Indicator::ActorChange => 0.60,
            Indicator::NewWithdrawalAddress => 0.50,
            Indicator::UnfamiliarClient => 0.60,
            // Someone else trading through a market maker's key trades their own markets.
            Indicator::OutsideMandate => 0.50,
            // A key bought or borrowed for trading is used to trade, whatever it was issued for;
            // a key handed to a tool runs from the tool's servers.
            Indicator::OutsidePurpose => 0.20,
        }
    }

    fn on_honest_prior(self) -> f64 {
        match self {
            Indicator::ConcurrentUse => 0.005,
            Indicator::AlternatingNetworks => 0.02,
            Indicator::AlternatingClients => 0.02,
            Indicator::ProbedThenUsed => 0.0005,
            Indicator::ImpossibleTravel => 0.005,
            Indicator::IpRotation => 0.01,
            Indicator::NewHostingNetwork => 0.02,
            Indicator::ClientChurn => 0.01,
            Indicator::BadSignatureBurst => 0.005,
            Indicator::OutsideAllowlist => 0.01,
            Indicator::Dormant => 0.01,
            Indicator::OrderAnomaly => 0.02,
            Indicator::CoordinatedOrders => 0.001,
            Indicator::OutsideDeclared => 0.02,
            Indicator::LinkedAccounts => 0.002,
            Indicator::Unfamiliar => 0.03,
            Indicator::Complaint => 0.0005,
            Indicator::VendorIntel => 0.0005,
            Indicator::ActorChange => 0.003,
            Indicator::NewWithdrawalAddress => 0.0005,
            Indicator::UnfamiliarClient => 0.03,
            // A desk quoting a market its mandate has not been amended for yet.
            Indicator::OutsideMandate => 0.01,
            // An owner pointing the wrong key at their bot; an owner who moved their bot to a
            // vendor without telling the exchange.
            Indicator::OutsidePurpose => 0.005,
        }
    }
}

/// The stage reached by `risk` under `thresholds` (monitor, warn, reverify, invalidate).
pub fn stage_of(risk: f32, thresholds: &[f32; 4]) -> Option<Stage> {
    Stage::ALL.iter().rev().zip(thresholds.iter().rev()).find(|(_, t)| risk >= **t).map(|(l, _)| *l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_expectations() {
        let t = [0.3, 0.5, 0.75, 0.9];
        assert_eq!(stage_of(0.1, &t), None);
        assert_eq!(stage_of(0.3, &t), Some(Stage::Monitor));
        assert_eq!(stage_of(0.8, &t), Some(Stage::Reverify));
        assert_eq!(stage_of(0.95, &t), Some(Stage::Invalidate));
        for ind in Indicator::ALL {
            assert!(ind.on_shared() > ind.on_honest_prior(), "{ind}");
        }
    }
}
