//! Whose address a forward-auth request is checked against.
//!
//! One rule, as nginx's `real_ip` module applies it: the client is the peer of the connection —
//! unless that peer is a configured trusted proxy (the gateway), and then the client is what
//! the one header that gateway is configured to set says. For `X-Forwarded-For` that is the
//! right-most hop that is not itself a trusted proxy: every hop to its right was appended by a
//! proxy we trust, everything to its left was written by the client and proves nothing. Never
//! the first hop, and never a header (such as a client's own `X-Real-IP`) that the gateway does
//! not set: a client can send any header it likes.

use ipnet::IpNet;
use std::net::IpAddr;

/// The trusted proxies and the header they set. No proxy is trusted by default: then every
/// header is ignored and the peer is the client.
#[derive(Debug, Clone)]
pub struct ClientAddress {
    trusted: Vec<IpNet>,
    /// Lower-case header name.
    header: String,
}

impl Default for ClientAddress {
    fn default() -> Self {
        Self { trusted: Vec::new(), header: "x-forwarded-for".into() }
    }
}

/// A trusted proxy sent no usable address.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientAddressError {
    #[error("the trusted proxy {peer} did not set {header} (the header keysentinel is configured to read the client's address from)")]
    Missing { peer: IpAddr, header: String },
    #[error("{header} from the trusted proxy {peer} holds {value:?}, which is not an IP address")]
    Invalid { peer: IpAddr, header: String, value: String },
}

impl ClientAddress {
    /// `header` is the one the trusted proxies set: `x-forwarded-for` (right-most untrusted
    /// hop) or a single-address header such as `x-real-ip`.
    pub fn new(trusted: Vec<IpNet>, header: &str) -> Self {
        Self { trusted, header: header.trim().to_ascii_lowercase() }
    }

    pub fn header(&self) -> &str {
        &self.header
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    pub fn resolve(&self, peer: IpAddr, headers: &axum::http::HeaderMap) -> Result<IpAddr, ClientAddressError> {
        // A v4 peer on a dual-stack socket shows as ::ffff:a.b.c.d; allowlists hold a.b.c.d.
        let peer = peer.to_canonical();
        if !self.is_trusted(peer) {
            return Ok(peer);
        }
        let values: Vec<&str> = headers.get_all(self.header.as_str()).iter().filter_map(|v| v.to_str().ok()).collect();
        let missing = || ClientAddressError::Missing { peer, header: self.header.clone() };
        if values.is_empty() {
            return Err(missing());
        }
        let invalid =
            |value: &str| ClientAddressError::Invalid { peer, header: self.header.clone(), value: value.into() };
        if self.header != "x-forwarded-for" {
            // A single-address header: several copies mean someone besides the gateway set one.
            let [value] = values.as_slice() else { return Err(invalid(&values.join(", "))) };
            return parse_hop(value).ok_or_else(|| invalid(value));
        }
        // Several X-Forwarded-For lines are one list, in order (RFC 7230 §3.2.2).
        let hops: Vec<&str> = values.iter().flat_map(|v| v.split(',')).map(str::trim).collect();
        let mut leftmost = None;
        for hop in hops.iter().rev() {
            let ip = parse_hop(hop).ok_or_else(|| invalid(hop))?;
            if !self.is_trusted(ip) {
                return Ok(ip);
            }
            leftmost = Some(ip);
        }
        // Every hop is a trusted proxy: the first of them is where the request came from.
        leftmost.ok_or_else(missing)
    }
}

/// An address as proxies write it: `a.b.c.d`, `a.b.c.d:port`, `v6` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip().to_canonical());
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderMap;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let rule = ClientAddress::new(vec!["10.0.0.0/8".parse().unwrap()], "x-forwarded-for");
        let spoof = headers(&[("x-forwarded-for", "198.51.100.7"), ("x-real-ip", "198.51.100.7")]);
        assert_eq!(rule.resolve(ip("203.0.113.9"), &spoof), Ok(ip("203.0.113.9")));
        assert_eq!(ClientAddress::default().resolve(ip("127.0.0.1"), &spoof), Ok(ip("127.0.0.1")), "none trusted");
        assert_eq!(rule.resolve(ip("::ffff:203.0.113.9"), &spoof), Ok(ip("203.0.113.9")), "mapped v4 peer");
    }

    #[test]
    fn behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client() {
        let rule = ClientAddress::new(vec!["10.0.0.0/8".parse().unwrap()], "X-Forwarded-For");
        let peer = ip("10.0.0.5");
        let h = headers(&[("x-forwarded-for", "198.51.100.7, 203.0.113.9"), ("x-real-ip", "198.51.100.7")]);
        assert_eq!(rule.resolve(peer, &h), Ok(ip("203.0.113.9")), "never the first hop, never X-Real-IP");
        let h = headers(&[("x-forwarded-for", "198.51.100.7"), ("x-forwarded-for", "203.0.113.9:5123, 10.0.0.7")]);
        assert_eq!(rule.resolve(peer, &h), Ok(ip("203.0.113.9")), "lines joined; trusted hops skipped; port dropped");
        let h = headers(&[("x-forwarded-for", "10.1.1.1, 10.0.0.7")]);
        assert_eq!(rule.resolve(peer, &h), Ok(ip("10.1.1.1")), "all trusted: the first");
        assert!(matches!(rule.resolve(peer, &headers(&[])), Err(ClientAddressError::Missing { .. })));
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown")]);
        assert!(matches!(rule.resolve(peer, &h), Err(ClientAddressError::Invalid { .. })), "never skip a bad hop");
    }

    #[test]
    fn a_single_address_header_is_read_only_when_configured_and_only_once() {
        let rule = ClientAddress::new(vec!["127.0.0.1/32".parse().unwrap()], "x-real-ip");
        let peer = ip("127.0.0.1");
        let h = headers(&[("x-real-ip", "203.0.113.9"), ("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(rule.resolve(peer, &h), Ok(ip("203.0.113.9")));
        let twice = headers(&[("x-real-ip", "203.0.113.9"), ("x-real-ip", "198.51.100.7")]);
        assert!(matches!(rule.resolve(peer, &twice), Err(ClientAddressError::Invalid { .. })));
        let h = headers(&[("x-real-ip", "[2001:db8::1]:443")]);
        assert_eq!(rule.resolve(peer, &h), Ok(ip("2001:db8::1")));
    }
}
