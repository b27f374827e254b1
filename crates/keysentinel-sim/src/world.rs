//! The world the simulated customers live in: the networks they connect through (real ASNs,
//! whose real address ranges the [`AddressBook`](crate::AddressBook) supplies), the programs
//! they trade with, and the markets they trade.

/// Korea Telecom: homes, offices *and* phones under one ASN.
pub const KT: u32 = 4766;
/// SK Broadband: fixed lines only.
pub const SKB: u32 = 9318;
/// LG U+ (LG Powercomm): homes and phones under one ASN.
pub const LGU: u32 = 17858;
/// SK Telecom: mobile only.
pub const SKT: u32 = 9644;

/// Korean fixed broadband, with a rough share of households: KT, SK Broadband, LG U+, LG
/// DACOM, the cable operators (LG HelloVision, D'LIVE, HCN).
pub const KR_FIXED: &[(u32, u32)] = &[(KT, 40), (SKB, 25), (LGU, 20), (3786, 5), (17839, 4), (10036, 3), (9319, 3)];
/// Korean mobile carriers. KT and LG U+ announce their phones under the same ASN as their
/// homes, so no classification by ASN can tell a phone from a household there.
pub const KR_MOBILE: &[(u32, u32)] = &[(SKT, 45), (KT, 30), (LGU, 25)];
/// Business lines of Korean offices: the big carriers' business service, KINX, Dreamline,
/// Sejong Telecom.
pub const KR_OFFICE: &[(u32, u32)] = &[(KT, 35), (SKB, 25), (3786, 15), (9286, 10), (9457, 8), (9848, 7)];
/// A research and university network (KREONET).
pub const KR_CAMPUS: u32 = 1237;

/// Clouds where bots run, Korean regions first: AWS, Google, Azure, Naver Cloud, KT Cloud,
/// Oracle, Vultr, DigitalOcean, Hetzner, OVH, Alibaba.
pub const CLOUD: &[(u32, u32)] = &[
    (16509, 40),
    (396982, 10),
    (8075, 8),
    (23576, 8),
    (38661, 6),
    (31898, 5),
    (20473, 6),
    (14061, 6),
    (24940, 4),
    (16276, 4),
    (45102, 3),
];
/// Corporate remote access and security proxies (SASE): Zscaler, Cisco Umbrella, Palo Alto
/// Prisma Access, Netskope, Cato, iboss, Fortinet, Menlo, Forcepoint. An employee's traffic
/// leaves from the provider's exit, wherever that is, at work and on the laptop at home.
pub const CORPORATE_EDGE: &[(u32, u32)] = &[
    (22616, 25),
    (53813, 10),
    (62044, 5),
    (36692, 10),
    (54538, 10),
    (55256, 8),
    (13150, 5),
    (396253, 5),
    (40934, 5),
    (62654, 3),
    (44444, 3),
];
/// Commercial VPN providers, whose exits are in many countries.
pub const VPN: &[(u32, u32)] = &[(9009, 40), (212238, 25), (60068, 15), (136787, 10), (147049, 10)];

/// A country abroad: its consumer networks and the hours of a flight from Seoul to the far end
/// of it (so no honest trip is faster than a real one).
pub struct Abroad {
    pub country: &'static str,
    pub networks: &'static [u32],
    pub flight_hours: i64,
}

pub const ABROAD: &[Abroad] = &[
    Abroad { country: "JP", networks: &[4713, 2516, 17676], flight_hours: 3 },
    Abroad { country: "US", networks: &[7922, 701], flight_hours: 14 },
    Abroad { country: "VN", networks: &[45899, 18403, 7552], flight_hours: 5 },
    Abroad { country: "TH", networks: &[7470, 131090], flight_hours: 6 },
    Abroad { country: "PH", networks: &[9299, 10139], flight_hours: 4 },
    Abroad { country: "SG", networks: &[4773, 4657, 9506], flight_hours: 6 },
    Abroad { country: "CN", networks: &[4134], flight_hours: 4 },
    Abroad { country: "TW", networks: &[3462], flight_hours: 3 },
    Abroad { country: "AU", networks: &[1221, 4804], flight_hours: 11 },
    Abroad { country: "RU", networks: &[12389], flight_hours: 10 },
    Abroad { country: "DE", networks: &[3320], flight_hours: 13 },
];

/// Programs that call exchange APIs, with the versions seen in the wild: the same program at
/// two versions is one client family.
pub const BOT_CLIENTS: &[(&str, &[&str])] = &[
    ("ccxt/{} (+https://github.com/ccxt/ccxt) Python/3.11.7", &["4.4.31", "4.5.12", "4.5.90"]),
    ("ccxt/{} (+https://github.com/ccxt/ccxt) Node.js/20.11.1", &["4.4.80", "4.5.40"]),
    ("python-requests/{}", &["2.28.2", "2.31.0", "2.32.3"]),
    ("PyUpbit/{}", &["0.2.31", "0.2.33"]),
    ("pybithumb/{}", &["1.0.21"]),
    ("axios/{}", &["1.6.8", "1.7.2"]),
    ("node-fetch/{} (+https://github.com/bitinn/node-fetch)", &["1.0", "2.7.0"]),
    ("Go-http-client/{}", &["1.1", "2.0"]),
    ("okhttp/{}", &["4.9.3", "4.12.0"]),
    ("Java-http-client/{}", &["17.0.9", "21.0.2"]),
    ("aiohttp/{}", &["3.9.5", "3.10.2"]),
    ("freqtrade/{}", &["2024.7", "2024.11"]),
    ("hummingbot/{}", &["2.0.1", "2.1.0"]),
];
/// What people use by hand with a key: desktop tools, spreadsheets, a terminal.
pub const HAND_CLIENTS: &[(&str, &[&str])] = &[
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{} Safari/537.36", &["130.0.0.0", "131.0.0.0"]),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{} Safari/605.1.15", &["17.6", "18.1"]),
    ("PostmanRuntime/{}", &["7.39.0", "7.42.0"]),
    ("curl/{}", &["7.88.1", "8.5.0"]),
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Excel {})", &["16.0.17928"]),
    ("TradingDesk/{} (Electron)", &["3.2.1", "3.4.0"]),
];
/// Phone apps that trade with an API key.
pub const PHONE_CLIENTS: &[(&str, &[&str])] = &[
    ("CoinPilot/{} (Android 14; SM-S918N)", &["5.1.0", "5.2.3"]),
    ("CoinPilot/{} (iOS 18.1; iPhone15,3)", &["5.1.0", "5.2.3"]),
    ("Dart/{} (dart:io)", &["3.4", "3.5"]),
    ("okhttp/{}", &["4.12.0"]),
];
/// The exchange's own web and app front ends, as login records show them.
pub const LOGIN_WEB: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
];
pub const LOGIN_APP: &[&str] =
    &["ExchangeApp/3.14.0 (Android 14)", "ExchangeApp/3.14.0 (iOS 18.1)", "ExchangeApp/3.13.2 (Android 13)"];

/// Markets: the large ones most customers trade, and small caps that a pump or a renter's
/// strategy goes for.
pub const MAJORS: &[&str] = &["KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL", "KRW-DOGE", "KRW-ADA", "KRW-USDT"];
pub const SMALL_CAPS: &[&str] = &[
    "KRW-MVL",
    "KRW-STPT",
    "KRW-MED",
    "KRW-ORBS",
    "KRW-HUNT",
    "KRW-GLM",
    "KRW-SC",
    "KRW-AERGO",
    "KRW-MLK",
    "KRW-UPP",
    "KRW-ARDR",
    "KRW-META",
];

/// A client string from one of the lists: a program and one of its versions.
pub fn client(list: &[(&'static str, &'static [&'static str])], program: usize, version: usize) -> String {
    let (template, versions) = list[program % list.len()];
    template.replacen("{}", versions[version % versions.len()], 1)
}
