//! Where an address is, as the detection engine needs it. The engine asks a [`Locate`]; the
//! `keysentinel-geo` crate answers from real open data (GeoLite2 city, RIR/RouteViews ASNs).

use std::net::IpAddr;

/// The operator an AS number belongs to, as one of its AS numbers: ISPs announce their IPv6
/// (and their merged companies' networks) under other numbers than their IPv4 homes and phones,
/// and one customer on both is one network, not two. Korea's dual-stack ISPs: KT (IPv4 4766,
/// IPv6 3559) and LG U+ (LG Powercomm 17858, LG Telecom 17853, LG DACOM 3786).
pub fn operator(asn: u32) -> u32 {
    match asn {
        3559 => 4766,
        17853 | 3786 => 17858,
        other => other,
    }
}

/// What kind of network an address belongs to (docs/detection.md, "Networks").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// A consumer or business access network, or not known.
    Access,
    /// A mobile carrier: addresses are shared by many subscribers (carrier-grade NAT).
    Mobile,
    /// Cloud and hosting providers: where bots, proxies and resold keys run.
    Hosting,
    /// Commercial VPN and proxy networks.
    Vpn,
}

impl Network {
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Access => "access",
            Network::Mobile => "mobile",
            Network::Hosting => "hosting",
            Network::Vpn => "vpn",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Place {
    /// ISO 3166-1 alpha-2, upper case.
    pub country: Option<[u8; 2]>,
    /// Degrees.
    pub lat_lon: Option<(f32, f32)>,
    /// Radius (km) within which the address most likely is.
    pub accuracy_km: f32,
    pub asn: Option<u32>,
    /// The announced address range holding the address (0 when unknown): carriers number
    /// phones and homes from different blocks of one ASN, so the engine learns per range
    /// whether its addresses stay with a household or hop from session to session.
    pub range: u32,
    pub network: Network,
    /// False when the city database puts the address far from where its network operates
    /// (a domestic ISP's range placed abroad): such locations are data errors more often than
    /// travel, so distance indicators leave them out.
    pub plausible: bool,
}

impl Place {
    pub const UNKNOWN: Place = Place {
        country: None,
        lat_lon: None,
        accuracy_km: 0.0,
        asn: None,
        range: 0,
        network: Network::Access,
        plausible: true,
    };

    pub fn country_str(&self) -> &str {
        self.country.as_ref().and_then(|c| std::str::from_utf8(c).ok()).unwrap_or("??")
    }
}

/// Which enrichment is available: without it, the indicators that need it are off (and say so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Coverage {
    pub city: bool,
    pub asn: bool,
}

/// Where addresses are. `Send + Sync` so the data can be shared with the engine's thread.
pub trait Locate: Send + Sync {
    fn locate(&self, ip: IpAddr) -> Place;
    fn coverage(&self) -> Coverage;
}

/// No data: every address is unknown.
pub struct NoGeo;

impl Locate for NoGeo {
    fn locate(&self, _: IpAddr) -> Place {
        Place::UNKNOWN
    }
    fn coverage(&self) -> Coverage {
        Coverage::default()
    }
}

/// Great-circle distance in km.
pub fn distance_km(a: (f32, f32), b: (f32, f32)) -> f32 {
    let (la1, lo1) = (f64::from(a.0).to_radians(), f64::from(a.1).to_radians());
    let (la2, lo2) = (f64::from(b.0).to_radians(), f64::from(b.1).to_radians());
    let h = ((la2 - la1) / 2.0).sin().powi(2) + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    (2.0 * 6371.0 * h.sqrt().min(1.0).asin()) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seoul_to_busan_and_to_london() {
        let seoul = (37.5665, 126.978);
        let d = distance_km(seoul, (35.1796, 129.0756));
        assert!((320.0..335.0).contains(&d), "{d}");
        let d = distance_km(seoul, (51.5074, -0.1278));
        assert!((8800.0..8900.0).contains(&d), "{d}");
        assert_eq!(distance_km(seoul, seoul), 0.0);
    }
}
