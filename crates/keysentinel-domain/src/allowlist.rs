//! IP allowlists: IPv4 and IPv6 networks in CIDR form.

use crate::error::ValidationError;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A normalised list of networks. A bare address means a single host (/32 or /128). A CIDR with
/// host bits set ("10.0.0.1/8") is refused rather than silently widened, because it is almost
/// always a mistake about which addresses the customer meant.
///
/// An IPv4-mapped IPv6 entry (`::ffff:203.0.113.7`, `::ffff:203.0.113.0/120`) is the IPv4
/// network it names and is stored in IPv4 form (`203.0.113.7/32`, `203.0.113.0/24`): that is
/// how a dual-stack socket writes an IPv4 client, and clients are matched as IPv4. An IPv6
/// network wider than the mapped range that contains it (`::/32`) is refused: it would read as
/// "every IPv4 address" and never match one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
#[schema(value_type = Vec<String>, example = json!(["203.0.113.0/24", "2001:db8::/48"]))]
pub struct IpAllowlist(Vec<IpNet>);

/// The widest network we accept: a /0 or a /8 is not an allowlist, it is the internet.
const MIN_PREFIX_V4: u8 = 16;
const MIN_PREFIX_V6: u8 = 32;
/// `::ffff:0:0/96`, where IPv4 addresses live in IPv6 (RFC 4291 §2.5.5.2).
const MAPPED_PREFIX: u8 = 96;

impl IpAllowlist {
    pub fn parse_entry(raw: &str) -> Result<IpNet, ValidationError> {
        let text = raw.trim();
        let net = if text.contains('/') {
            let net: IpNet = text.parse().map_err(|_| {
                ValidationError::new("ip_allowlist", format!("{raw:?} is not a valid CIDR (e.g. 203.0.113.0/24)"))
            })?;
            if net.network() != net.addr() {
                return Err(ValidationError::new(
                    "ip_allowlist",
                    format!("{raw:?} has host bits set; did you mean {}?", net.trunc()),
                ));
            }
            net
        } else {
            let addr: IpAddr = text
                .parse()
                .map_err(|_| ValidationError::new("ip_allowlist", format!("{raw:?} is not an IP address or CIDR")))?;
            IpNet::from(addr)
        };
        let net = ipv4_form(raw, net)?;
        let too_wide = match net {
            IpNet::V4(n) => n.prefix_len() < MIN_PREFIX_V4,
            IpNet::V6(n) => n.prefix_len() < MIN_PREFIX_V6,
        };
        if too_wide {
            return Err(ValidationError::new(
                "ip_allowlist",
                format!("{raw:?} is too wide (at most /{MIN_PREFIX_V4} for IPv4, /{MIN_PREFIX_V6} for IPv6)"),
            ));
        }
        Ok(net)
    }

    /// Parses every entry; duplicates (after normalisation) are refused.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, ValidationError> {
        let mut nets: Vec<IpNet> = Vec::with_capacity(entries.len());
        for raw in entries {
            let net = Self::parse_entry(raw.as_ref())?;
            if nets.contains(&net) {
                return Err(ValidationError::new("ip_allowlist", format!("{net} is listed twice")));
            }
            nets.push(net);
        }
        Ok(Self(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are what dual-stack sockets report for
        // IPv4 clients; treat them as the IPv4 address they carry.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }
}

/// An IPv4-mapped IPv6 network as the IPv4 network it names; other networks unchanged.
fn ipv4_form(raw: &str, net: IpNet) -> Result<IpNet, ValidationError> {
    let IpNet::V6(v6) = net else { return Ok(net) };
    let mapped_range = std::net::Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0);
    if v6.prefix_len() < MAPPED_PREFIX {
        if v6.contains(&mapped_range) {
            return Err(ValidationError::new(
                "ip_allowlist",
                format!(
                    "{raw:?} contains the IPv4-mapped range ::ffff:0:0/96 (every IPv4 address); list the IPv4 networks you mean instead"
                ),
            ));
        }
        return Ok(net);
    }
    match v6.network().to_ipv4_mapped() {
        Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - MAPPED_PREFIX)
            .map(IpNet::V4)
            .map_err(|_| ValidationError::new("ip_allowlist", format!("{raw:?} is not a valid CIDR"))),
        None => Ok(net),
    }
}

impl TryFrom<Vec<String>> for IpAllowlist {
    type Error = ValidationError;
    fn try_from(entries: Vec<String>) -> Result<Self, ValidationError> {
        Self::parse(&entries)
    }
}
impl From<IpAllowlist> for Vec<String> {
    fn from(list: IpAllowlist) -> Vec<String> {
        list.0.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn accepts_cidrs_and_bare_addresses() {
        let list = IpAllowlist::parse(&["203.0.113.0/24", "198.51.100.7", "2001:db8::/48"]);
        let Ok(list) = list else { unreachable!("valid list refused: {list:?}") };
        assert!(list.contains(ip("203.0.113.200")));
        assert!(list.contains(ip("198.51.100.7")));
        assert!(!list.contains(ip("198.51.100.8")));
        assert!(list.contains(ip("2001:db8:0:ffff::1")));
        assert!(!list.contains(ip("2001:db9::1")));
        assert!(list.contains(ip("::ffff:203.0.113.9")), "IPv4-mapped addresses match their IPv4 network");
    }

    #[test]
    fn refuses_malformed_and_ambiguous_entries() {
        for bad in ["10.0.0.1/8", "300.1.1.1", "10.0.0.0/33", "abc", "", "1.2.3.4/", "0.0.0.0/0", "::/0", "10.0.0.0/8"]
        {
            assert!(IpAllowlist::parse(&[bad]).is_err(), "{bad:?} should be refused");
        }
        let err = IpAllowlist::parse(&["10.1.2.3/16"]).err().map(|e| e.message);
        assert_eq!(err.as_deref(), Some("\"10.1.2.3/16\" has host bits set; did you mean 10.1.0.0/16?"));
        assert!(IpAllowlist::parse(&["10.1.0.0/16", "10.1.0.0/16"]).is_err());
    }

    #[test]
    fn ipv4_mapped_entries_are_stored_as_the_ipv4_network_they_name() {
        let list = IpAllowlist::parse(&["::ffff:198.51.100.7", "::ffff:203.0.113.0/120", "::FFFF:192.0.0.0/112"]);
        let Ok(list) = list else { unreachable!("mapped entries refused: {list:?}") };
        let stored: Vec<String> = list.clone().into();
        assert_eq!(stored, ["198.51.100.7/32", "203.0.113.0/24", "192.0.0.0/16"]);
        // A dual-stack socket reports an IPv4 client either way; both match.
        for client in ["198.51.100.7", "::ffff:198.51.100.7", "203.0.113.99", "::ffff:203.0.113.99"] {
            assert!(list.contains(ip(client)), "{client}");
        }
        assert!(!list.contains(ip("198.51.100.8")));
        assert!(!list.contains(ip("::ffff:198.51.100.8")));
        // The rules of IPv4 entries apply to them in that form.
        let too_wide = IpAllowlist::parse(&["::ffff:0.0.0.0/96"]).err().map(|e| e.message);
        assert_eq!(too_wide.as_deref(), Some("\"::ffff:0.0.0.0/96\" is too wide (at most /16 for IPv4, /32 for IPv6)"));
        let host_bits = IpAllowlist::parse(&["::ffff:203.0.113.7/120"]).err().map(|e| e.message);
        assert!(host_bits.is_some_and(|m| m.contains("host bits set")));
        let twice = IpAllowlist::parse(&["198.51.100.7", "::ffff:198.51.100.7"]).err().map(|e| e.message);
        assert_eq!(twice.as_deref(), Some("198.51.100.7/32 is listed twice"));
        // An IPv6 network around the whole mapped range would never match an IPv4 client.
        let around = IpAllowlist::parse(&["::/32"]).err().map(|e| e.message);
        assert!(around.is_some_and(|m| m.contains("IPv4-mapped range")), "refused with the reason");
        // Other IPv6 networks are untouched.
        let v6: Vec<String> = IpAllowlist::parse(&["2001:db8::/48", "::ffff:0:0:0/96"]).unwrap_or_default().into();
        assert_eq!(v6, ["2001:db8::/48", "::ffff:0:0:0/96"], "{v6:?}");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,60}") {
            let _ = IpAllowlist::parse_entry(&s);
        }

        #[test]
        fn a_network_contains_exactly_its_addresses(a in any::<u32>(), prefix in 16u8..=32, probe in any::<u32>()) {
            let net = ipnet::Ipv4Net::new(Ipv4Addr::from(a), prefix).map(|n| n.trunc());
            let Ok(net) = net else { return Ok(()) };
            let list = IpAllowlist::parse(&[net.to_string()]);
            prop_assert!(list.is_ok());
            let list = list.unwrap_or_default();
            let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
            let inside = (probe & mask) == (u32::from(net.network()) & mask);
            prop_assert_eq!(list.contains(IpAddr::V4(Ipv4Addr::from(probe))), inside);
        }

        #[test]
        fn v6_round_trips_through_text(a in any::<u128>(), prefix in 32u8..=128) {
            let net = ipnet::Ipv6Net::new(Ipv6Addr::from(a), prefix).map(|n| n.trunc());
            let Ok(net) = net else { return Ok(()) };
            let list = IpAllowlist::parse(&[net.to_string()]);
            prop_assert!(list.is_ok());
            let back: Vec<String> = list.unwrap_or_default().into();
            prop_assert_eq!(back, vec![net.to_string()]);
        }
    }
}
