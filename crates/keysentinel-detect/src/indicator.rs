//! The indicators of suspected sharing, the kind of evidence each is, and what is expected of
//! it: how often it shows on a shared key, and — before the exchange's own population says
//! otherwise — on an honest one (docs/detection.md, "Risk").

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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
    ActorChange,
    NewWithdrawalAddress,
    UnfamiliarClient,
}

/// Independent kinds of evidence. Indicators of one kind mostly stem from one fact (a new
/// place is at once a new network, an unfamiliar access and maybe a new country), so within a
/// kind only the strongest counts; kinds add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Where the key is used from.
    Network,
    /// With what program or device.
    Client,
    /// How it trades and when: the actor's habits.
    Behaviour,
    /// Links to other accounts.
    Links,
    /// Who holds the secret: bad signatures, correct ones from outside the allowlist.
    Credentials,
    /// People saying so: complaints, vendors' intelligence.
    Reports,
}

impl Kind {
    pub const ALL: [Kind; 6] =
        [Kind::Network, Kind::Client, Kind::Behaviour, Kind::Links, Kind::Credentials, Kind::Reports];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Client => "client",
            Kind::Behaviour => "behaviour",
            Kind::Links => "links",
            Kind::Credentials => "credentials",
            Kind::Reports => "reports",
        }
    }
}

impl Indicator {
    pub const COUNT: usize = 21;
    pub const ALL: [Indicator; Indicator::COUNT] = [
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
        Indicator::ActorChange,
        Indicator::NewWithdrawalAddress,
        Indicator::UnfamiliarClient,
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
            Indicator::ActorChange => "actor_change",
            Indicator::NewWithdrawalAddress => "withdrawal_new_address_new_network",
            Indicator::UnfamiliarClient => "unfamiliar_client",
        }
    }

    pub fn parse(s: &str) -> Option<Indicator> {
        Indicator::ALL.into_iter().find(|i| i.as_str() == s)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn kind(self) -> Kind {
        match self {
            Indicator::ConcurrentUse
            | Indicator::AlternatingNetworks
            | Indicator::ImpossibleTravel
            | Indicator::IpRotation
            | Indicator::NewHostingNetwork
            | Indicator::OutsideDeclared
            | Indicator::Unfamiliar => Kind::Network,
            Indicator::AlternatingClients | Indicator::ClientChurn | Indicator::UnfamiliarClient => Kind::Client,
            Indicator::Dormant | Indicator::OrderAnomaly | Indicator::ActorChange | Indicator::CoordinatedOrders => {
                Kind::Behaviour
            }
            Indicator::LinkedAccounts => Kind::Links,
            Indicator::ProbedThenUsed
            | Indicator::BadSignatureBurst
            | Indicator::OutsideAllowlist
            | Indicator::NewWithdrawalAddress => Kind::Credentials,
            Indicator::Complaint | Indicator::VendorIntel => Kind::Reports,
        }
    }

    /// Evidence that is already several facts at once: a change-point fires only when habits
    /// *and* the client or the network changed together.
    pub fn self_corroborating(self) -> bool {
        matches!(self, Indicator::ActorChange)
    }

    /// Unambiguous compromise, which goes straight to the top stage: a key probed and then used
    /// from a new hosting network, intelligence naming it, funds sent to a new address from a
    /// network that is not the owner's.
    pub fn unambiguous(self) -> bool {
        matches!(self, Indicator::ProbedThenUsed | Indicator::VendorIntel | Indicator::NewWithdrawalAddress)
    }

    /// How often it shows on a day a key is used by someone else in the way it points to (a
    /// key lent abroad, for travel; a proxy pool, for rotation): the expert's estimate, the
    /// numerator of the likelihood ratio.
    pub fn on_shared(self) -> f64 {
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
        }
    }

    /// How often it shows on a day an honest key is used, before the population has said: the
    /// prior of the denominator, which the exchange's own keys soon outweigh.
    pub fn on_honest_prior(self) -> f64 {
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
        }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The four stages of the DAXA standard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
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

    pub fn parse(s: &str) -> Option<Level> {
        Level::ALL.into_iter().find(|l| l.as_str() == s)
    }

    /// The level reached by `risk` under `thresholds` (monitor, warn, reverify, invalidate).
    pub fn of(risk: f32, thresholds: &[f32; 4]) -> Option<Level> {
        Level::ALL.iter().rev().zip(thresholds.iter().rev()).find(|(_, t)| risk >= **t).map(|(l, _)| *l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_names_and_kinds() {
        let t = [0.3, 0.5, 0.75, 0.9];
        assert_eq!(Level::of(0.1, &t), None);
        assert_eq!(Level::of(0.3, &t), Some(Level::Monitor));
        assert_eq!(Level::of(0.8, &t), Some(Level::Reverify));
        assert_eq!(Level::of(0.95, &t), Some(Level::Invalidate));
        for (i, ind) in Indicator::ALL.iter().enumerate() {
            assert_eq!(ind.index(), i);
            assert_eq!(Indicator::parse(ind.as_str()), Some(*ind));
            assert!(ind.on_shared() > ind.on_honest_prior(), "{ind}");
        }
        assert_eq!(Indicator::ActorChange.kind(), Kind::Behaviour);
    }
}
