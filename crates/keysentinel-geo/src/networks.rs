//! Network classes from the ASN and its registered organisation (docs/detection.md,
//! "Networks"). A curated list of the large cloud, hosting, VPN and mobile ASNs, then keywords
//! in the organisation's name for the long tail of small hosts. Misclassification errs towards
//! `Access`, which only makes the hosting indicator quieter.

use keysentinel_detect::geo::Network;

/// Cloud and hosting providers.
const HOSTING: &[u32] = &[
    16509, 14618, 8987, // Amazon
    15169, 396982, 19527, // Google
    8075, 8068,  // Microsoft
    14061, // DigitalOcean
    63949, // Akamai Linode
    20473, // Vultr (Choopa)
    16276, // OVH
    24940, 213230, // Hetzner
    45102, 37963, // Alibaba
    132203, 45090, // Tencent
    31898, // Oracle
    36351, // IBM SoftLayer
    60781, 28753,  // Leaseweb
    51167,  // Contabo
    12876,  // Scaleway
    13335,  // Cloudflare
    54113,  // Fastly
    23576,  // Naver Cloud
    38661,  // KT Cloud (hosting)
    135377, // UCloud
    40021,  // Contabo US / NL hosts
];

/// Commercial VPN and proxy networks; and the corporate security proxies (SASE, secure web
/// gateways) that carry employees' traffic at work and on the laptop at home: their exits say
/// nothing of where the person is (a worker in Seoul may leave through Zscaler in Frankfurt),
/// and their names carry no keyword.
const VPN: &[u32] = &[
    9009,   // M247
    60068,  // Datacamp (CDN77)
    147049, // PacketHub
    212238, // Datacamp
    136787, // TEFINCOM (NordVPN)
    209854, // Surfshark
    39351,  // 31173 Services (Mullvad)
    22616, 53813, 53444, 62044, // Zscaler
    36692, 25605, // Cisco Umbrella (OpenDNS)
    54538, 396421, // Palo Alto Networks Prisma Access
    55256,  // Netskope
    13150, 138627, // Cato Networks
    396253, 137922, 202276, // iboss
    40934,  // Fortinet (FortiSASE)
    62654,  // Menlo Security
    44444, 13448,  // Forcepoint
    213176, // Check Point SSE
    400318, // Versa Networks
];

/// Mobile carriers, whose addresses are shared by many subscribers (carrier-grade NAT).
const MOBILE: &[u32] = &[
    9644,  // SK Telecom
    45609, // Bharti Airtel mobile
    21928, // T-Mobile US
    22394, // Verizon Wireless
    20057, // AT&T Mobility
    9605,  // NTT Docomo
    17676, // SoftBank mobile
    24445, // China Mobile (Henan)
    9808,  // China Mobile
];

/// The class of a network: its ASN's, when the lists name it, or else its organisation's name's.
pub fn classify(asn: u32, organisation: &str) -> Network {
    listed(asn).unwrap_or_else(|| named(organisation))
}

/// The class the curated lists give an ASN. A list names ASNs, not organisations: one
/// organisation often registers its fixed and mobile, or its cloud and corporate, networks
/// under one name ("Verizon Business" is Verizon Wireless's AS22394 and fixed-line AS701 alike;
/// "AT&T Enterprises" its mobile and wireline ASNs), and a fixed line taken for a carrier's NAT
/// is never placed anywhere.
pub fn listed(asn: u32) -> Option<Network> {
    if VPN.contains(&asn) {
        Some(Network::Vpn)
    } else if HOSTING.contains(&asn) {
        Some(Network::Hosting)
    } else if MOBILE.contains(&asn) {
        Some(Network::Mobile)
    } else {
        None
    }
}

/// The class keywords in an organisation's name suggest, for the long tail of small hosts.
pub fn named(organisation: &str) -> Network {
    let org = organisation.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| org.contains(w));
    if has(&["vpn", "proxy", "anonymi"]) {
        Network::Vpn
    } else if has(&[
        "hosting",
        "cloud",
        "data center",
        "datacenter",
        "data-center",
        "server",
        "vps",
        "colocation",
        "colo ",
    ]) {
        Network::Hosting
    } else if has(&["mobile", "wireless", "cellular"]) {
        Network::Mobile
    } else {
        Network::Access
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_then_keywords() {
        assert_eq!(classify(16509, "Amazon.com, Inc."), Network::Hosting);
        assert_eq!(classify(9009, "M247 Europe SRL"), Network::Vpn);
        assert_eq!(classify(9644, "SK Telecom"), Network::Mobile);
        assert_eq!(classify(64500, "Example Hosting Ltd"), Network::Hosting);
        assert_eq!(classify(64501, "Fast VPN Services"), Network::Vpn);
        assert_eq!(classify(4766, "Korea Telecom"), Network::Access);
        // A corporate security proxy's exit places nobody; its name says nothing of it.
        assert_eq!(classify(22616, "ZSCALER, INC."), Network::Vpn);
        assert_eq!(named("ZSCALER, INC."), Network::Access);
        // One organisation's name, a mobile ASN and a fixed one: the list names the ASN only.
        assert_eq!(classify(22394, "Verizon Business"), Network::Mobile);
        assert_eq!(classify(701, "Verizon Business"), Network::Access);
    }
}
