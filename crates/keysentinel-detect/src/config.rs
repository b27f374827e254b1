//! The engine's parameters (docs/detection.md describes each). Defaults are set for real
//! exchange traffic, not for the simulator: they follow how honest users travel, roam and
//! automate (a flight is not sharing; a phone hops networks; a bot runs from one data centre).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
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
    /// an access counts as unfamiliar.
    pub unfamiliar_llr: f32,
    pub thresholds: Thresholds,
}

/// Risk (0–1) at which each level starts, per segment family.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub retail: [f32; 4],
    /// Market makers, brokers and institutions: judged against their mandate, and their
    /// multi-site automation is expected, so the bar is higher.
    pub institutional: [f32; 4],
}

impl Default for Thresholds {
    fn default() -> Self {
        Self { retail: [0.30, 0.50, 0.75, 0.90], institutional: [0.40, 0.60, 0.85, 0.95] }
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
            rotation_asns_per_hour: 5,
            churn_clients_per_day: 5,
            bad_signature_burst: 10,
            dormant_days: 45,
            order_rate_multiple: 10.0,
            link_accounts: 3,
            link_window_minutes: 60,
            indicator_ttl_minutes: 24 * 60,
            unfamiliar_llr: 6.0,
            thresholds: Thresholds::default(),
        }
    }
}
