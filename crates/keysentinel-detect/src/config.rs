//! The engine's parameters (docs/detection.md describes each). Defaults are set for real
//! exchange traffic, not for the simulator: they follow how honest users travel, roam and
//! automate (a flight is not sharing; a phone hops networks; a bot runs from one data centre).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Requests a key needs before its own history is trusted as a baseline.
    pub learning_requests: u32,
    /// And the time since its first request, in minutes.
    pub learning_minutes: i64,
    /// Impossible travel: faster than this between two places (km/h), farther apart than
    /// `travel_min_km` once both accuracy radii are subtracted.
    pub travel_max_kmh: f32,
    pub travel_min_km: f32,
    /// Concurrent use: places farther apart than this (km) used alternately within
    /// `concurrent_window_minutes` — A, B, A — which one traveller cannot do.
    pub concurrent_min_km: f32,
    pub concurrent_window_minutes: i64,
    /// Fixed lines, or programs, taking turns — X, Y, X, Y — within this window: two households
    /// (or two people) each returning while the other is in use.
    pub alternation_window_minutes: i64,
    /// IP/ASN rotation: distinct ASNs within an hour at or above this.
    pub rotation_asns_per_hour: usize,
    /// Client churn: distinct user agents or devices within a day at or above this.
    pub churn_clients_per_day: usize,
    /// Bad signatures on a valid key id within five minutes at or above this.
    pub bad_signature_burst: usize,
    /// A key silent this many days and then active.
    pub dormant_days: i64,
    /// Order rate over this multiple of the key's hourly baseline.
    pub order_rate_multiple: f32,
    /// Link graph: one IP (outside mobile networks, vendor egress and documented relationships)
    /// or device driving keys of this many unrelated accounts within `link_window_minutes`.
    pub link_accounts: usize,
    pub link_window_minutes: i64,
    /// How long an indicator keeps contributing to risk after it last fired, in minutes.
    pub indicator_ttl_minutes: i64,
    /// Statistical score (log-likelihood ratio, attacker vs the key's own history) above which
    /// an access's network (or, apart, its client) counts as unfamiliar.
    pub unfamiliar_llr: f32,
    /// Firings of an indicator separated by this much quiet are separate episodes: persistence
    /// is counted in episodes, not in requests.
    pub episode_gap_minutes: i64,
    /// How long the owner's own login (or an analyst's confirmation) vouches for the network or
    /// device it came from.
    pub attestation_days: i64,
    /// The share of keys expected to be shared before any evidence: the prior of the posterior
    /// risk.
    pub prior_sharing: f64,
    /// Population statistics (how often each indicator shows on the exchange's keys, per
    /// segment) are kept over this many days.
    pub calibration_days: usize,
    /// Weight of the expert's prior rate against the observed one, in key-days: with fewer
    /// observed key-days than this, the prior still dominates.
    pub calibration_prior_key_days: f64,
    /// How much of a shared key's chance to show an indicator carries over to each further
    /// episode (sharing persists): P(n episodes | shared) = P(1) × persistenceⁿ⁻¹.
    pub persistence: f64,
    /// No indicator weighs more than this log-likelihood ratio.
    pub max_llr: f64,
    /// A kind of evidence corroborates another once its log-likelihood ratio reaches this.
    pub corroboration_llr: f64,
    /// Episodes of one kind of evidence that count as persistence without another kind.
    pub persistent_episodes: u32,
    /// One kind of evidence sustained over this many episodes, each weighing at least
    /// `sustained_llr` (a pattern the population hardly ever shows that persistently), reaches
    /// forced expiry on its own: each episode is another sighting, not the same fact again.
    pub sustained_episodes: u32,
    pub sustained_llr: f64,
    pub thresholds: Thresholds,
}

/// Posterior risk (0–1) at which each level starts, per segment family.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub retail: [f32; 4],
    /// Market makers, brokers and institutions: judged against their mandate, and their
    /// multi-site automation is expected, so the bar to stop a key is higher (the bar to tell
    /// its owner is the same).
    pub institutional: [f32; 4],
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { retail: [0.05, 0.50, 0.80, 0.95], institutional: [0.10, 0.50, 0.90, 0.98] }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            learning_requests: 20,
            learning_minutes: 60,
            travel_max_kmh: 900.0,
            travel_min_km: 500.0,
            concurrent_min_km: 1_000.0,
            concurrent_window_minutes: 30,
            alternation_window_minutes: 180,
            rotation_asns_per_hour: 5,
            churn_clients_per_day: 5,
            bad_signature_burst: 10,
            dormant_days: 45,
            order_rate_multiple: 10.0,
            link_accounts: 3,
            link_window_minutes: 60,
            indicator_ttl_minutes: 24 * 60,
            unfamiliar_llr: 4.5,
            episode_gap_minutes: 60,
            attestation_days: 30,
            prior_sharing: 0.003,
            calibration_days: 14,
            calibration_prior_key_days: 200.0,
            persistence: 0.8,
            max_llr: 10.0,
            corroboration_llr: 1.0,
            persistent_episodes: 3,
            sustained_episodes: 5,
            sustained_llr: 6.0,
            thresholds: Thresholds::default(),
        }
    }
}
