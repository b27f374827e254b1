//! The indicators of suspected sharing and the kind of evidence each is: one vocabulary for the
//! engine that fires them, the cases and policies that act on them and the report drafts that
//! explain them (docs/detection.md, "Indicators"). Names are matched exhaustively; nothing
//! downstream re-parses them from text.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Indicator {
    #[serde(rename = "concurrent_distant_use")]
    ConcurrentUse,
    #[serde(rename = "alternating_fixed_networks")]
    AlternatingNetworks,
    #[serde(rename = "alternating_clients")]
    AlternatingClients,
    #[serde(rename = "probed_then_used")]
    ProbedThenUsed,
    #[serde(rename = "impossible_travel")]
    ImpossibleTravel,
    #[serde(rename = "ip_asn_rotation")]
    IpRotation,
    #[serde(rename = "new_hosting_or_vpn")]
    NewHostingNetwork,
    #[serde(rename = "client_churn")]
    ClientChurn,
    #[serde(rename = "bad_signature_burst")]
    BadSignatureBurst,
    #[serde(rename = "signed_outside_allowlist")]
    OutsideAllowlist,
    #[serde(rename = "dormant_reactivation")]
    Dormant,
    #[serde(rename = "order_anomaly")]
    OrderAnomaly,
    #[serde(rename = "coordinated_orders")]
    CoordinatedOrders,
    #[serde(rename = "outside_declared_geography")]
    OutsideDeclared,
    #[serde(rename = "linked_unrelated_accounts")]
    LinkedAccounts,
    #[serde(rename = "unfamiliar_access")]
    Unfamiliar,
    #[serde(rename = "complaint")]
    Complaint,
    #[serde(rename = "vendor_intel")]
    VendorIntel,
    #[serde(rename = "actor_change")]
    ActorChange,
    #[serde(rename = "withdrawal_new_address_new_network")]
    NewWithdrawalAddress,
    #[serde(rename = "unfamiliar_client")]
    UnfamiliarClient,
    #[serde(rename = "outside_mandate")]
    OutsideMandate,
    #[serde(rename = "outside_purpose")]
    OutsidePurpose,
}

/// Independent kinds of evidence. Indicators of one kind mostly stem from one fact (a new
/// place is at once a new network, an unfamiliar access and maybe a new country), so within a
/// kind only the strongest counts; kinds add up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Where the key is used from: networks, countries and places new or rare to it.
    Network,
    /// Used from two places at once: places too far apart, or households' lines taking turns,
    /// which one person cannot be at together. Apart from where (`Network`): a traveller is
    /// somewhere new but in one place at a time; a key lent on is used from two.
    Presence,
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
    pub const ALL: [Kind; 7] =
        [Kind::Network, Kind::Presence, Kind::Client, Kind::Behaviour, Kind::Links, Kind::Credentials, Kind::Reports];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Presence => "presence",
            Kind::Client => "client",
            Kind::Behaviour => "behaviour",
            Kind::Links => "links",
            Kind::Credentials => "credentials",
            Kind::Reports => "reports",
        }
    }
}

impl Indicator {
    pub const COUNT: usize = 23;
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
        Indicator::OutsideMandate,
        Indicator::OutsidePurpose,
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
            Indicator::OutsideMandate => "outside_mandate",
            Indicator::OutsidePurpose => "outside_purpose",
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
            Indicator::ConcurrentUse | Indicator::AlternatingNetworks | Indicator::ImpossibleTravel => Kind::Presence,
            Indicator::IpRotation
            | Indicator::NewHostingNetwork
            | Indicator::OutsideDeclared
            | Indicator::Unfamiliar => Kind::Network,
            Indicator::AlternatingClients | Indicator::ClientChurn | Indicator::UnfamiliarClient => Kind::Client,
            Indicator::Dormant
            | Indicator::OrderAnomaly
            | Indicator::ActorChange
            | Indicator::CoordinatedOrders
            | Indicator::OutsideMandate
            | Indicator::OutsidePurpose => Kind::Behaviour,
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

    /// What the indicator means, in a sentence for a report's narrative.
    pub fn meaning(self) -> &'static str {
        match self {
            Indicator::ConcurrentUse => "the key was used alternately from places too far apart for one person",
            Indicator::AlternatingNetworks => "the key was used in turn from several households' or offices' lines",
            Indicator::AlternatingClients => "two different programs took turns using the key from different places",
            Indicator::ProbedThenUsed => {
                "after a burst of failed signatures the key was used from a new hosting network"
            }
            Indicator::ImpossibleTravel => "the key moved between places faster than anyone can travel",
            Indicator::IpRotation => "the key was used from many networks or homes within an hour, as proxy pools do",
            Indicator::NewHostingNetwork => "the key was used from a hosting or VPN network it had not used",
            Indicator::ClientChurn => "the key was used with many different programs within a day",
            Indicator::BadSignatureBurst => "many requests with wrong signatures named the key",
            Indicator::OutsideAllowlist => "correctly signed requests came from outside the key's permitted addresses",
            Indicator::Dormant => "the key was used again after a long silence",
            Indicator::OrderAnomaly => "the key placed orders far above its own usual rate",
            Indicator::CoordinatedOrders => "the key's orders repeatedly coincided with unrelated customers' orders",
            Indicator::OutsideDeclared => "the key was used from outside the customer's declared countries",
            Indicator::LinkedAccounts => "one address or device drove the keys of several unrelated customers",
            Indicator::Unfamiliar => "the access was far likelier for another person than for the key's owner",
            Indicator::Complaint => "a complaint on the account spoke of lending or sharing access",
            Indicator::VendorIntel => "intelligence named the key or its vendor",
            Indicator::ActorChange => {
                "the key's hours, rates, markets or sizes changed together with its client or network"
            }
            Indicator::NewWithdrawalAddress => {
                "funds were sent to a new address from a network that is not the owner's"
            }
            Indicator::UnfamiliarClient => "the program was far likelier for another person than for the key's owner",
            Indicator::OutsideMandate => {
                "the market maker's key traded markets outside every market-making mandate the account has on file"
            }
            Indicator::OutsidePurpose => {
                "the key was used against the purpose it was issued for: trading with a key for reading, or an own bot run from a vendor's servers"
            }
        }
    }
}

impl fmt::Display for Indicator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_as_text_and_as_json() {
        for (i, ind) in Indicator::ALL.iter().enumerate() {
            assert_eq!(ind.index(), i);
            assert_eq!(Indicator::parse(ind.as_str()), Some(*ind));
            let json = serde_json::to_string(ind).unwrap();
            assert_eq!(json, format!("\"{}\"", ind.as_str()));
            assert_eq!(serde_json::from_str::<Indicator>(&json).unwrap(), *ind);
        }
        assert!(serde_json::from_str::<Indicator>("\"ok\"").is_err());
        assert_eq!(Indicator::ActorChange.kind(), Kind::Behaviour);
        assert_eq!(serde_json::to_string(&Kind::Credentials).unwrap(), "\"credentials\"");
    }
}
