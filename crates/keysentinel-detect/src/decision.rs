//! What the engine decides, with its reasons, the evidence and the key's baseline: one NDJSON
//! line per decision (docs/events.md, "Decisions").

use crate::event::Millis;
use crate::indicator::{Indicator, Stage};
use std::net::IpAddr;

/// One reason for a decision: an indicator, what it saw, and what it weighed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub indicator: Indicator,
    /// Firings counted (at most one per five minutes).
    pub count: u32,
    /// Episodes: firings separated by a quiet spell.
    pub episodes: u32,
    pub evidence: String,
    /// What the requests that fired it showed, as data (the last few distinct): what an
    /// analyst looks up, and what a dismissed case confirms as the owner's.
    pub observed: Vec<Observed>,
    /// Its log-likelihood ratio (sharing against honest use) as it counted in the risk; 0 when
    /// a stronger indicator of the same kind counted instead.
    pub llr: f32,
    /// How often the exchange's keys of the segment show it (per key-day), the denominator of
    /// its likelihood ratio.
    pub population_share: f32,
}

/// A key reached a (higher) level.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    pub ts: Millis,
    pub key_id: String,
    pub account_id: String,
    pub risk: f32,
    pub level: Stage,
    pub reasons: Vec<Reason>,
    /// What the risk lost because honest keys show these kinds of evidence together more
    /// often than apart (a log-likelihood ratio, ≤ 0).
    pub correction: f32,
    /// Accounts linked to this key's: through an address or device it shared lately, a
    /// documented relationship, or orders that coincided with its own.
    pub related: Vec<Related>,
    /// The key's own history when the decision was made: what the evidence departs from.
    pub baseline: Baseline,
}

/// A key's baseline: its requests, since when, its most used networks and countries with their
/// share of its requests, and how many client families it has used.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Baseline {
    pub requests: u32,
    pub since_ms: Option<Millis>,
    pub networks: Vec<(u32, f32)>,
    pub countries: Vec<(String, f32)>,
    pub clients: usize,
}

/// One request that fired an indicator, as data rather than prose.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    pub ip: IpAddr,
    pub asn: Option<u32>,
    /// ISO 3166-1 alpha-2.
    pub country: Option<[u8; 2]>,
    /// The client family (the user agent's product name).
    pub client: Option<String>,
    pub device: Option<String>,
}

impl Observed {
    fn to_json(&self) -> serde_json::Value {
        let mut o = serde_json::Map::new();
        o.insert("ip".into(), self.ip.to_string().into());
        if let Some(asn) = self.asn {
            o.insert("asn".into(), asn.into());
        }
        if let Some(c) = self.country {
            o.insert("country".into(), String::from_utf8_lossy(&c).into_owned().into());
        }
        if let Some(c) = &self.client {
            o.insert("client".into(), c.as_str().into());
        }
        if let Some(d) = &self.device {
            o.insert("device".into(), d.as_str().into());
        }
        o.into()
    }
}

/// An account related to a decision's key, and how.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Related {
    pub account_id: String,
    pub via: String,
}

fn round3(x: f32) -> f64 {
    (f64::from(x) * 1000.0).round() / 1000.0
}

impl Decision {
    /// The decision as one NDJSON line (fixed field order, numbers to three decimals).
    pub fn to_json(&self) -> String {
        let reasons: Vec<serde_json::Value> = self
            .reasons
            .iter()
            .map(|r| {
                serde_json::json!({
                    "indicator": r.indicator.as_str(),
                    "kind": r.indicator.kind().as_str(),
                    "count": r.count,
                    "episodes": r.episodes,
                    "llr": round3(r.llr),
                    "population_share": (f64::from(r.population_share) * 1e5).round() / 1e5,
                    "evidence": r.evidence,
                    "observed": r.observed.iter().map(Observed::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let related = if self.related.is_empty() {
            String::new()
        } else {
            let list: Vec<serde_json::Value> =
                self.related.iter().map(|r| serde_json::json!({ "account_id": r.account_id, "via": r.via })).collect();
            format!(",\"related_accounts\":{}", serde_json::Value::from(list))
        };
        let b = &self.baseline;
        let baseline = serde_json::json!({
            "requests": b.requests,
            "since": b.since_ms.map(crate::event::format_rfc3339_ms),
            "networks": b.networks.iter().map(|(asn, x)| serde_json::json!({ "asn": format!("AS{asn}"), "share": round3(*x) })).collect::<Vec<_>>(),
            "countries": b.countries.iter().map(|(c, x)| serde_json::json!({ "country": c, "share": round3(*x) })).collect::<Vec<_>>(),
            "clients": b.clients,
        });
        format!(
            "{{\"ts\":{},\"key_id\":{},\"account_id\":{},\"risk\":{},\"level\":\"{}\",\"reasons\":{},\"correction\":{}{related},\"baseline\":{baseline}}}",
            serde_json::Value::from(crate::event::format_rfc3339_ms(self.ts)),
            serde_json::Value::from(self.key_id.as_str()),
            serde_json::Value::from(self.account_id.as_str()),
            round3(self.risk),
            self.level.as_str(),
            serde_json::Value::from(reasons),
            round3(self.correction),
        )
    }
}
