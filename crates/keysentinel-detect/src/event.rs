//! Event format v1 (docs/events.md): NDJSON, one record per line, each with a `type`.
//!
//! A line is read in one pass into a flat superset of every record's fields, borrowing its
//! strings from the line where they need no unescaping, then checked for the fields its type
//! requires. Unknown fields are accepted (the line itself is the record of them); a malformed
//! line is an error naming what is wrong, and the caller reports it with its line number and
//! goes on.

use serde::Deserialize;
use std::borrow::Cow;
use std::net::IpAddr;

/// Milliseconds since the Unix epoch (event time).
pub type Millis = i64;

#[derive(Debug, Clone, PartialEq)]
pub enum Record<'a> {
    Account {
        account_id: Cow<'a, str>,
        segment: Segment,
        /// ISO 3166-1 alpha-2, upper case.
        declared_countries: Vec<[u8; 2]>,
        declared_purpose: Option<Cow<'a, str>>,
    },
    Key {
        key_id: Cow<'a, str>,
        account_id: Cow<'a, str>,
        scopes: Vec<Cow<'a, str>>,
        ip_allowlist: Vec<ipnet::IpNet>,
        vendor_id: Option<Cow<'a, str>>,
        ts: Option<Millis>,
        /// The key policy's purpose the key was issued for (`own_bot`, `market_making`, `legacy`
        /// for keys from before purposes); v1.2, absent before. Carried for indicators that
        /// compare purpose with behaviour; nothing scores it yet.
        purpose: Option<Cow<'a, str>>,
    },
    Vendor {
        vendor_id: Cow<'a, str>,
        approved: bool,
        egress_cidrs: Vec<ipnet::IpNet>,
    },
    Relationship {
        from: Cow<'a, str>,
        to: Cow<'a, str>,
        kind: RelationshipKind,
        /// False: the relationship no longer holds (it ended, its dates passed, or they have not
        /// begun); the engine forgets it. True (the default) for every record before v1.1.
        in_effect: bool,
        /// The registry's record behind it.
        counterparty_id: Option<Cow<'a, str>>,
        /// Its documented dates (the registry judges `in_effect` by them).
        effective_from: Option<Millis>,
        effective_until: Option<Millis>,
        /// A market-making mandate's terms (only `mm_mandate` carries them).
        mandate: Option<Box<Mandate<'a>>>,
    },
    Request {
        ts: Millis,
        key_id: Cow<'a, str>,
        ip: IpAddr,
        user_agent: Option<Cow<'a, str>>,
        device_id: Option<Cow<'a, str>>,
        method: Option<Cow<'a, str>>,
        path: Option<Cow<'a, str>>,
        outcome: Code,
    },
    Order {
        ts: Millis,
        key_id: Cow<'a, str>,
        symbol: Cow<'a, str>,
        side: Side,
        action: OrderAction,
        notional: f64,
    },
    Login {
        ts: Millis,
        account_id: Cow<'a, str>,
        ip: IpAddr,
        user_agent: Option<Cow<'a, str>>,
        device_id: Option<Cow<'a, str>>,
    },
    Withdrawal {
        ts: Millis,
        key_id: Option<Cow<'a, str>>,
        account_id: Option<Cow<'a, str>>,
        asset: Cow<'a, str>,
        amount: f64,
        address: Cow<'a, str>,
    },
    Complaint {
        ts: Millis,
        account_id: Cow<'a, str>,
        text: Cow<'a, str>,
    },
    VendorIntel {
        ts: Millis,
        key_id: Option<Cow<'a, str>>,
        vendor_id: Option<Cow<'a, str>>,
        text: Cow<'a, str>,
    },
    /// Networks, countries, clients and devices confirmed as the owner's: by an analyst
    /// dismissing a case, or by the owner answering a notice.
    Confirmation {
        ts: Millis,
        account_id: Cow<'a, str>,
        key_id: Option<Cow<'a, str>>,
        by: Confirmer,
        ips: Vec<IpAddr>,
        asns: Vec<u32>,
        countries: Vec<[u8; 2]>,
        clients: Vec<Cow<'a, str>>,
        devices: Vec<Cow<'a, str>>,
        text: Option<Cow<'a, str>>,
    },
}

/// A market-making mandate's terms: for whom, in which markets, from where.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mandate<'a> {
    pub principal: Option<Principal>,
    /// A token issuer's name, for a mandate for one.
    pub issuer: Option<Cow<'a, str>>,
    pub symbols: Vec<Cow<'a, str>>,
    /// ISO 3166-1 alpha-2, upper case.
    pub countries: Vec<[u8; 2]>,
    pub ip_allowlist: Vec<ipnet::IpNet>,
}

impl Mandate<'_> {
    fn into_owned(self) -> Mandate<'static> {
        Mandate {
            principal: self.principal,
            issuer: owned_opt(self.issuer),
            symbols: self.symbols.into_iter().map(owned).collect(),
            countries: self.countries,
            ip_allowlist: self.ip_allowlist,
        }
    }
}

/// For whom a market maker makes markets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    Own,
    Issuer,
    Clients,
}

impl Principal {
    pub fn as_str(self) -> &'static str {
        match self {
            Principal::Own => "own",
            Principal::Issuer => "issuer",
            Principal::Clients => "clients",
        }
    }
}

/// Who confirmed what is the owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirmer {
    Analyst,
    Owner,
}

impl Confirmer {
    pub fn as_str(self) -> &'static str {
        match self {
            Confirmer::Analyst => "analyst",
            Confirmer::Owner => "owner",
        }
    }
}

/// The exchange's customer segments (docs/events.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Segment {
    #[default]
    Retail,
    Pro,
    MarketMaker,
    Broker,
    Institution,
    Corporate,
    /// Keys whose account the engine was never told of.
    Unknown,
}

impl Segment {
    pub const COUNT: usize = 7;
    pub const ALL: [Segment; Segment::COUNT] = [
        Segment::Retail,
        Segment::Pro,
        Segment::MarketMaker,
        Segment::Broker,
        Segment::Institution,
        Segment::Corporate,
        Segment::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Retail => "retail",
            Segment::Pro => "pro",
            Segment::MarketMaker => "market_maker",
            Segment::Broker => "broker",
            Segment::Institution => "institution",
            Segment::Corporate => "corporate",
            Segment::Unknown => "unknown",
        }
    }

    /// A segment an `account` record may name (not `unknown`).
    pub fn parse(s: &str) -> Option<Segment> {
        Segment::ALL.into_iter().find(|x| x.as_str() == s && *x != Segment::Unknown)
    }

    /// Judged against a mandate rather than like retail.
    pub fn institutional(self) -> bool {
        matches!(self, Segment::MarketMaker | Segment::Broker | Segment::Institution | Segment::Corporate)
    }
}

fn owned(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}

fn owned_opt(c: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    c.map(owned)
}

impl Record<'_> {
    /// The record with its strings copied, to outlive the line it was read from.
    pub fn into_owned(self) -> Record<'static> {
        match self {
            Record::Account { account_id, segment, declared_countries, declared_purpose } => Record::Account {
                account_id: owned(account_id),
                segment,
                declared_countries,
                declared_purpose: owned_opt(declared_purpose),
            },
            Record::Key { key_id, account_id, scopes, ip_allowlist, vendor_id, ts, purpose } => Record::Key {
                key_id: owned(key_id),
                account_id: owned(account_id),
                scopes: scopes.into_iter().map(owned).collect(),
                ip_allowlist,
                vendor_id: owned_opt(vendor_id),
                ts,
                purpose: owned_opt(purpose),
            },
            Record::Vendor { vendor_id, approved, egress_cidrs } => {
                Record::Vendor { vendor_id: owned(vendor_id), approved, egress_cidrs }
            }
            Record::Relationship {
                from,
                to,
                kind,
                in_effect,
                counterparty_id,
                effective_from,
                effective_until,
                mandate,
            } => Record::Relationship {
                from: owned(from),
                to: owned(to),
                kind,
                in_effect,
                counterparty_id: owned_opt(counterparty_id),
                effective_from,
                effective_until,
                mandate: mandate.map(|m| Box::new(m.into_owned())),
            },
            Record::Request { ts, key_id, ip, user_agent, device_id, method, path, outcome } => Record::Request {
                ts,
                key_id: owned(key_id),
                ip,
                user_agent: owned_opt(user_agent),
                device_id: owned_opt(device_id),
                method: owned_opt(method),
                path: owned_opt(path),
                outcome,
            },
            Record::Order { ts, key_id, symbol, side, action, notional } => {
                Record::Order { ts, key_id: owned(key_id), symbol: owned(symbol), side, action, notional }
            }
            Record::Login { ts, account_id, ip, user_agent, device_id } => Record::Login {
                ts,
                account_id: owned(account_id),
                ip,
                user_agent: owned_opt(user_agent),
                device_id: owned_opt(device_id),
            },
            Record::Withdrawal { ts, key_id, account_id, asset, amount, address } => Record::Withdrawal {
                ts,
                key_id: owned_opt(key_id),
                account_id: owned_opt(account_id),
                asset: owned(asset),
                amount,
                address: owned(address),
            },
            Record::Complaint { ts, account_id, text } => {
                Record::Complaint { ts, account_id: owned(account_id), text: owned(text) }
            }
            Record::VendorIntel { ts, key_id, vendor_id, text } => Record::VendorIntel {
                ts,
                key_id: owned_opt(key_id),
                vendor_id: owned_opt(vendor_id),
                text: owned(text),
            },
            Record::Confirmation { ts, account_id, key_id, by, ips, asns, countries, clients, devices, text } => {
                Record::Confirmation {
                    ts,
                    account_id: owned(account_id),
                    key_id: owned_opt(key_id),
                    by,
                    ips,
                    asns,
                    countries,
                    clients: clients.into_iter().map(owned).collect(),
                    devices: devices.into_iter().map(owned).collect(),
                    text: owned_opt(text),
                }
            }
        }
    }

    /// Event time, for activity records.
    pub fn ts(&self) -> Option<Millis> {
        match self {
            Record::Request { ts, .. }
            | Record::Order { ts, .. }
            | Record::Login { ts, .. }
            | Record::Withdrawal { ts, .. }
            | Record::Complaint { ts, .. }
            | Record::VendorIntel { ts, .. }
            | Record::Confirmation { ts, .. } => Some(*ts),
            Record::Key { ts, .. } => *ts,
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RelationshipKind {
    Affiliate,
    BrokerClient,
    MmMandate,
    VendorDelegation,
    /// Added in v1.1 (last, so that snapshots written before decode as they were).
    SubAccount,
}

impl RelationshipKind {
    pub const ALL: [RelationshipKind; 5] = [
        RelationshipKind::Affiliate,
        RelationshipKind::BrokerClient,
        RelationshipKind::MmMandate,
        RelationshipKind::VendorDelegation,
        RelationshipKind::SubAccount,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RelationshipKind::Affiliate => "affiliate",
            RelationshipKind::BrokerClient => "broker_client",
            RelationshipKind::MmMandate => "mm_mandate",
            RelationshipKind::VendorDelegation => "vendor_delegation",
            RelationshipKind::SubAccount => "sub_account",
        }
    }

    pub fn parse(s: &str) -> Option<RelationshipKind> {
        RelationshipKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Buy,
    Sell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderAction {
    Place,
    Cancel,
}

/// A verify outcome as the gateway recorded it: the domain's codes, one vocabulary with the
/// verifier that decides them.
pub use keysentinel_domain::outcome::{Class, Code};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("unknown record type {0:?}")]
    UnknownType(String),
    #[error("missing field {0:?}")]
    Missing(&'static str),
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
}

/// Every field of every record type, as found on the line.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Flat<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: Option<Cow<'a, str>>,
    #[serde(borrow)]
    key_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    account_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    vendor_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    segment: Option<Cow<'a, str>>,
    #[serde(borrow)]
    declared_countries: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    declared_purpose: Option<Cow<'a, str>>,
    #[serde(borrow)]
    scopes: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    ip_allowlist: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    egress_cidrs: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    /// A relationship's `kind` (`kind` is taken by the record type here).
    #[serde(rename = "kind", borrow)]
    kind_of: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user_agent: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow)]
    outcome: Option<Cow<'a, str>>,
    #[serde(borrow)]
    symbol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    side: Option<Cow<'a, str>>,
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    notional: Option<f64>,
    #[serde(borrow)]
    asset: Option<Cow<'a, str>>,
    amount: Option<f64>,
    #[serde(borrow)]
    address: Option<Cow<'a, str>>,
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    by: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ips: Option<Vec<Cow<'a, str>>>,
    asns: Option<Vec<u32>>,
    #[serde(borrow)]
    countries: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    clients: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    devices: Option<Vec<Cow<'a, str>>>,
    in_effect: Option<bool>,
    #[serde(borrow)]
    counterparty_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    effective_from: Option<Cow<'a, str>>,
    #[serde(borrow)]
    effective_until: Option<Cow<'a, str>>,
    #[serde(borrow)]
    principal: Option<Cow<'a, str>>,
    #[serde(borrow)]
    issuer: Option<Cow<'a, str>>,
    #[serde(borrow)]
    symbols: Option<Vec<Cow<'a, str>>>,
}

fn take<'a>(v: Option<Cow<'a, str>>, field: &'static str) -> Result<Cow<'a, str>, ParseError> {
    v.ok_or(ParseError::Missing(field))
}

fn nets(v: Option<Vec<Cow<'_, str>>>, field: &'static str) -> Result<Vec<ipnet::IpNet>, ParseError> {
    v.unwrap_or_default()
        .iter()
        .map(|c| {
            c.parse::<ipnet::IpNet>()
                .or_else(|_| c.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ParseError::Invalid { field, message: format!("{c:?} is not a CIDR") })
        })
        .collect()
}

/// ISO 3166-1 alpha-2 codes, upper-cased.
fn countries(v: Option<Vec<Cow<'_, str>>>, field: &'static str) -> Result<Vec<[u8; 2]>, ParseError> {
    v.unwrap_or_default()
        .iter()
        .map(|c| match c.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Ok([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
            }
            _ => Err(ParseError::Invalid { field, message: format!("{c:?} is not an ISO 3166-1 alpha-2 code") }),
        })
        .collect()
}

fn ip(v: Option<Cow<'_, str>>) -> Result<IpAddr, ParseError> {
    let v = take(v, "ip")?;
    v.parse().map_err(|_| ParseError::Invalid { field: "ip", message: format!("{v:?} is not an IP address") })
}

fn ts(v: Option<Cow<'_, str>>) -> Result<Millis, ParseError> {
    let v = take(v, "ts")?;
    parse_rfc3339_ms(&v)
        .ok_or_else(|| ParseError::Invalid { field: "ts", message: format!("{v:?} is not an RFC 3339 time") })
}

/// Parses one line of event format v1.
pub fn parse_line(line: &str) -> Result<Record<'_>, ParseError> {
    parse_event(line).map(|e| e.record)
}

/// A record with its optional `event_id`, by which a producer's retries are recognised.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    pub event_id: Option<Cow<'a, str>>,
    pub record: Record<'a>,
}

/// Parses one line of event format v1, keeping its `event_id`.
pub fn parse_event(line: &str) -> Result<Event<'_>, ParseError> {
    let mut flat = match scan_flat(line) {
        Some(flat) => flat,
        None => serde_flat(line)?,
    };
    let event_id = flat.event_id.take();
    Ok(Event { event_id, record: record(flat)? })
}

fn serde_flat(line: &str) -> Result<Flat<'_>, ParseError> {
    serde_json::from_str(line).map_err(|e| ParseError::Json(e.to_string()))
}

/// The fast path for the common lines — flat objects of plain scalars, as activity records
/// are — with the `flatjson` scanner. Any doubt (an array, an escape, a duplicate or mistyped
/// field) answers `None`, and serde_json, the authority, reads the line instead; a property
/// test checks the two agree whenever this answers.
fn scan_flat(line: &str) -> Option<Flat<'_>> {
    use keysentinel_flatjson::Scalar;
    let mut f = Flat::default();
    let mut seen = 0u32;
    keysentinel_flatjson::scan(line, |name, value| {
        let (bit, slot): (u32, Option<&mut Option<Cow<'_, str>>>) = match name {
            "type" => (0, Some(&mut f.kind)),
            "ts" => (1, Some(&mut f.ts)),
            "key_id" => (2, Some(&mut f.key_id)),
            "account_id" => (3, Some(&mut f.account_id)),
            "vendor_id" => (4, Some(&mut f.vendor_id)),
            "segment" => (5, Some(&mut f.segment)),
            "declared_purpose" => (6, Some(&mut f.declared_purpose)),
            "status" => (7, Some(&mut f.status)),
            "from" => (8, Some(&mut f.from)),
            "to" => (9, Some(&mut f.to)),
            "kind" => (10, Some(&mut f.kind_of)),
            "ip" => (11, Some(&mut f.ip)),
            "user_agent" => (12, Some(&mut f.user_agent)),
            "device_id" => (13, Some(&mut f.device_id)),
            "method" => (14, Some(&mut f.method)),
            "path" => (15, Some(&mut f.path)),
            "outcome" => (16, Some(&mut f.outcome)),
            "symbol" => (17, Some(&mut f.symbol)),
            "side" => (18, Some(&mut f.side)),
            "action" => (19, Some(&mut f.action)),
            "asset" => (20, Some(&mut f.asset)),
            "address" => (21, Some(&mut f.address)),
            "text" => (22, Some(&mut f.text)),
            "event_id" => (25, Some(&mut f.event_id)),
            "notional" => (23, None),
            "amount" => (24, None),
            // Arrays are outside the scanner's subset anyway; a relationship's own fields (rare
            // lines) are left to serde_json too.
            "declared_countries" | "scopes" | "ip_allowlist" | "egress_cidrs" | "ips" | "asns" | "countries"
            | "clients" | "devices" | "symbols" | "in_effect" | "counterparty_id" | "effective_from"
            | "effective_until" | "principal" | "issuer" => return false,
            "by" => (26, Some(&mut f.by)),
            "purpose" => (27, Some(&mut f.purpose)),
            _ => return true,
        };
        if seen & (1 << bit) != 0 {
            return false;
        }
        seen |= 1 << bit;
        match (slot, value) {
            (Some(_), Scalar::Null) => true,
            (Some(slot), Scalar::Str(v)) => {
                *slot = Some(Cow::Borrowed(v));
                true
            }
            (Some(_), _) => false,
            (None, value) => {
                let number = match value {
                    Scalar::Null => None,
                    Scalar::Int(n) => Some(n as f64),
                    Scalar::Num(t) => match t.parse::<f64>() {
                        Ok(v) => Some(v),
                        Err(_) => return false,
                    },
                    Scalar::Str(_) | Scalar::Bool(_) => return false,
                };
                *(if name == "notional" { &mut f.notional } else { &mut f.amount }) = number;
                true
            }
        }
    })?;
    Some(f)
}

fn record(mut flat: Flat<'_>) -> Result<Record<'_>, ParseError> {
    let kind = take(flat.kind.take(), "type")?;
    Ok(match kind.as_ref() {
        "request" => Record::Request {
            ts: ts(flat.ts)?,
            key_id: take(flat.key_id, "key_id")?,
            ip: ip(flat.ip)?,
            user_agent: flat.user_agent,
            device_id: flat.device_id,
            method: flat.method,
            path: flat.path,
            outcome: {
                let code = take(flat.outcome, "outcome")?;
                Code::parse(&code).ok_or_else(|| ParseError::Invalid {
                    field: "outcome",
                    message: format!("{code:?} is not a verify code (VALID, BAD_SIGNATURE, IP_NOT_ALLOWED, …)"),
                })?
            },
        },
        "order" => Record::Order {
            ts: ts(flat.ts)?,
            key_id: take(flat.key_id, "key_id")?,
            symbol: take(flat.symbol, "symbol")?,
            side: match take(flat.side, "side")?.as_ref() {
                "buy" => Side::Buy,
                "sell" => Side::Sell,
                other => return Err(ParseError::Invalid { field: "side", message: format!("{other:?}: buy or sell") }),
            },
            action: match take(flat.action, "action")?.as_ref() {
                "place" => OrderAction::Place,
                "cancel" => OrderAction::Cancel,
                other => {
                    return Err(ParseError::Invalid { field: "action", message: format!("{other:?}: place or cancel") })
                }
            },
            notional: flat.notional.filter(|n| n.is_finite() && *n >= 0.0).ok_or(ParseError::Missing("notional"))?,
        },
        "login" => Record::Login {
            ts: ts(flat.ts)?,
            account_id: take(flat.account_id, "account_id")?,
            ip: ip(flat.ip)?,
            user_agent: flat.user_agent,
            device_id: flat.device_id,
        },
        "withdrawal" => {
            if flat.key_id.is_none() && flat.account_id.is_none() {
                return Err(ParseError::Missing("key_id or account_id"));
            }
            Record::Withdrawal {
                ts: ts(flat.ts)?,
                key_id: flat.key_id,
                account_id: flat.account_id,
                asset: take(flat.asset, "asset")?,
                amount: flat.amount.filter(|a| a.is_finite()).ok_or(ParseError::Missing("amount"))?,
                address: take(flat.address, "address")?,
            }
        }
        "complaint" => Record::Complaint {
            ts: ts(flat.ts)?,
            account_id: take(flat.account_id, "account_id")?,
            text: take(flat.text, "text")?,
        },
        "vendor_intel" => {
            if flat.key_id.is_none() && flat.vendor_id.is_none() {
                return Err(ParseError::Missing("key_id or vendor_id"));
            }
            Record::VendorIntel {
                ts: ts(flat.ts)?,
                key_id: flat.key_id,
                vendor_id: flat.vendor_id,
                text: take(flat.text, "text")?,
            }
        }
        "account" => Record::Account {
            account_id: take(flat.account_id, "account_id")?,
            segment: {
                let s = take(flat.segment, "segment")?;
                Segment::parse(&s).ok_or_else(|| ParseError::Invalid {
                    field: "segment",
                    message: format!("{s:?}: retail, pro, market_maker, broker, institution or corporate"),
                })?
            },
            declared_countries: countries(flat.declared_countries, "declared_countries")?,
            declared_purpose: flat.declared_purpose,
        },
        "confirmation" => Record::Confirmation {
            ts: ts(flat.ts)?,
            account_id: take(flat.account_id, "account_id")?,
            key_id: flat.key_id,
            by: match take(flat.by, "by")?.as_ref() {
                "analyst" => Confirmer::Analyst,
                "owner" => Confirmer::Owner,
                other => {
                    return Err(ParseError::Invalid { field: "by", message: format!("{other:?}: analyst or owner") })
                }
            },
            ips: flat
                .ips
                .unwrap_or_default()
                .iter()
                .map(|v| {
                    v.parse().map_err(|_| ParseError::Invalid {
                        field: "ips",
                        message: format!("{v:?} is not an IP address"),
                    })
                })
                .collect::<Result<_, _>>()?,
            asns: flat.asns.unwrap_or_default(),
            countries: countries(flat.countries, "countries")?,
            clients: flat.clients.unwrap_or_default(),
            devices: flat.devices.unwrap_or_default(),
            text: flat.text,
        },
        "key" => Record::Key {
            key_id: take(flat.key_id, "key_id")?,
            account_id: take(flat.account_id, "account_id")?,
            scopes: flat.scopes.unwrap_or_default(),
            ip_allowlist: nets(flat.ip_allowlist, "ip_allowlist")?,
            vendor_id: flat.vendor_id,
            ts: match flat.ts {
                Some(t) => Some(ts(Some(t))?),
                None => None,
            },
            purpose: match flat.purpose {
                Some(p) if p.is_empty() || p.len() > 40 => {
                    return Err(ParseError::Invalid { field: "purpose", message: "1 to 40 characters".into() })
                }
                p => p,
            },
        },
        "vendor" => Record::Vendor {
            vendor_id: take(flat.vendor_id, "vendor_id")?,
            // Only an approved vendor's egress is sanctioned; the registry's other statuses
            // (v1.1) all mean it is not.
            approved: match take(flat.status, "status")?.as_ref() {
                "approved" => true,
                "suspended" | "applied" | "lapsed" => false,
                other => {
                    return Err(ParseError::Invalid {
                        field: "status",
                        message: format!("{other:?}: applied, approved, suspended or lapsed"),
                    })
                }
            },
            egress_cidrs: nets(flat.egress_cidrs, "egress_cidrs")?,
        },
        "relationship" => relationship(flat)?,
        other => return Err(ParseError::UnknownType(other.to_owned())),
    })
}

fn optional_ts(v: Option<Cow<'_, str>>, field: &'static str) -> Result<Option<Millis>, ParseError> {
    v.map(|t| {
        parse_rfc3339_ms(&t)
            .ok_or_else(|| ParseError::Invalid { field, message: format!("{t:?} is not an RFC 3339 time") })
    })
    .transpose()
}

fn relationship(flat: Flat<'_>) -> Result<Record<'_>, ParseError> {
    let kind = take(flat.kind_of, "kind")?;
    let kind = RelationshipKind::parse(&kind).ok_or_else(|| ParseError::Invalid {
        field: "kind",
        message: format!(
            "unknown relationship {kind:?}: affiliate, broker_client, mm_mandate, sub_account or vendor_delegation"
        ),
    })?;
    let effective_from = optional_ts(flat.effective_from, "effective_from")?;
    let effective_until = optional_ts(flat.effective_until, "effective_until")?;
    if let (Some(f), Some(u)) = (effective_from, effective_until) {
        if u <= f {
            return Err(ParseError::Invalid {
                field: "effective_until",
                message: "must be after effective_from".into(),
            });
        }
    }
    let principal = match flat.principal.as_deref() {
        None => None,
        Some("own") => Some(Principal::Own),
        Some("issuer") => Some(Principal::Issuer),
        Some("clients") => Some(Principal::Clients),
        Some(other) => {
            return Err(ParseError::Invalid {
                field: "principal",
                message: format!("{other:?}: own, issuer or clients"),
            })
        }
    };
    let symbols = flat.symbols.unwrap_or_default();
    if let Some(bad) = symbols.iter().find(|s| s.is_empty() || s.len() > 40 || s.chars().any(char::is_whitespace)) {
        return Err(ParseError::Invalid { field: "symbols", message: format!("{bad:?} is not a market symbol") });
    }
    let mandate = Mandate {
        principal,
        issuer: flat.issuer,
        symbols,
        countries: countries(flat.countries, "countries")?,
        ip_allowlist: nets(flat.ip_allowlist, "ip_allowlist")?,
    };
    let mandate = if mandate == Mandate::default() {
        None
    } else if kind != RelationshipKind::MmMandate {
        // Terms no other kind has would be silently ignored: the line is wrong, say so.
        return Err(ParseError::Invalid {
            field: "kind",
            message: format!(
                "{}: principal, issuer, symbols, countries and ip_allowlist are a mandate's (mm_mandate) terms",
                kind.as_str()
            ),
        });
    } else {
        Some(Box::new(mandate))
    };
    Ok(Record::Relationship {
        from: take(flat.from, "from")?,
        to: take(flat.to, "to")?,
        kind,
        in_effect: flat.in_effect.unwrap_or(true),
        counterparty_id: flat.counterparty_id,
        effective_from,
        effective_until,
        mandate,
    })
}

/// RFC 3339 (`2026-11-28T05:24:57.123Z`, any fraction, `Z` or `±hh:mm`) to Unix milliseconds.
/// Hand-written: it runs once per event, where a general date-time parser costs more than the
/// rest of the record.
pub fn parse_rfc3339_ms(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let mut n = 0i64;
        for &c in b.get(r)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + i64::from(c - b'0');
        }
        Some(n)
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 86_400 + hour * 3_600 + minute * 60 + second) - offset_min * 60) * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix milliseconds as RFC 3339 with milliseconds, UTC.
pub fn format_rfc3339_ms(ms: Millis) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // civil_from_days, the inverse of days_from_civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_parse_and_unknown_fields_are_accepted() {
        let r = parse_line(r#"{"type":"request","ts":"2026-11-28T05:24:57.123Z","key_id":"k1","ip":"203.0.113.7","user_agent":"ccxt/4.5","method":"GET","path":"/v1/x","outcome":"VALID","gateway":"edge-3"}"#).unwrap();
        assert!(matches!(r, Record::Request { ts: 1_795_843_497_123, outcome: Code::Valid, .. }), "{r:?}");
        let r = parse_line(r#"{"type":"relationship","from":"a1","to":"a2","kind":"broker_client"}"#).unwrap();
        assert_eq!(
            r,
            Record::Relationship {
                from: "a1".into(),
                to: "a2".into(),
                kind: RelationshipKind::BrokerClient,
                in_effect: true,
                counterparty_id: None,
                effective_from: None,
                effective_until: None,
                mandate: None,
            }
        );
        let r = parse_line(
            r#"{"type":"vendor","vendor_id":"v","status":"approved","egress_cidrs":["198.51.100.0/24","192.0.2.1"]}"#,
        )
        .unwrap();
        assert!(matches!(r, Record::Vendor { approved: true, ref egress_cidrs, .. } if egress_cidrs.len() == 2));
    }

    #[test]
    fn relationships_carry_their_dates_state_and_a_mandates_terms() {
        let r = parse_line(
            r#"{"type":"relationship","from":"mm-1","to":"mm-1","kind":"mm_mandate","counterparty_id":"cp-1","in_effect":false,
                "effective_from":"2026-12-01T00:00:00Z","effective_until":"2027-03-01T00:00:00Z","principal":"issuer",
                "issuer":"Klaytn Foundation","symbols":["KLAY-KRW"],"countries":["KR"],"ip_allowlist":["198.51.100.0/24"],
                "document_ref":"MM-2026-07"}"#,
        )
        .unwrap();
        let Record::Relationship { in_effect, counterparty_id, effective_from, effective_until, mandate, .. } = r
        else {
            panic!("{r:?}")
        };
        assert!(!in_effect);
        assert_eq!(counterparty_id.as_deref(), Some("cp-1"));
        assert_eq!((effective_from, effective_until), (Some(1_796_083_200_000), Some(1_803_859_200_000)));
        let m = mandate.unwrap();
        assert_eq!(
            (m.principal, m.issuer.as_deref(), m.symbols.len()),
            (Some(Principal::Issuer), Some("Klaytn Foundation"), 1)
        );
        assert_eq!((m.countries, m.ip_allowlist.len()), (vec![*b"KR"], 1));
        let sub = parse_line(r#"{"type":"relationship","from":"a","to":"a-sub","kind":"sub_account"}"#).unwrap();
        assert!(matches!(sub, Record::Relationship { kind: RelationshipKind::SubAccount, in_effect: true, .. }));
        for (line, want) in [
            (
                r#"{"type":"relationship","from":"a","to":"b","kind":"affiliate","symbols":["BTC-KRW"]}"#,
                "a mandate's (mm_mandate) terms",
            ),
            (r#"{"type":"relationship","from":"a","to":"b","kind":"affiliate","in_effect":"no"}"#, "not a JSON object"),
            (
                r#"{"type":"relationship","from":"a","to":"b","kind":"mm_mandate","principal":"friends"}"#,
                "invalid principal",
            ),
            (
                r#"{"type":"relationship","from":"a","to":"b","kind":"affiliate","effective_from":"2026-12-02T00:00:00Z","effective_until":"2026-12-01T00:00:00Z"}"#,
                "invalid effective_until",
            ),
        ] {
            let e = parse_line(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
        let applied = parse_line(r#"{"type":"vendor","vendor_id":"v","status":"lapsed","egress_cidrs":[]}"#).unwrap();
        assert!(matches!(applied, Record::Vendor { approved: false, .. }));
        assert!(parse_line(r#"{"type":"vendor","vendor_id":"v","status":"trusted"}"#).is_err());
    }

    #[test]
    fn a_key_carries_its_purpose_from_v1_2_and_older_lines_still_parse() {
        let line = r#"{"type":"key","key_id":"k1","account_id":"mm-7","scopes":["read","trade"],"ip_allowlist":[],"vendor_id":null,"purpose":"market_making"}"#;
        let Record::Key { purpose, .. } = parse_line(line).unwrap() else { panic!("not a key record") };
        assert_eq!(purpose.as_deref(), Some("market_making"));
        let old =
            r#"{"type":"key","key_id":"k1","account_id":"a1","scopes":["read"],"ip_allowlist":[],"vendor_id":null}"#;
        let Record::Key { purpose, .. } = parse_line(old).unwrap() else { panic!("not a key record") };
        assert_eq!(purpose, None, "a v1.1 key record has no purpose");
        let empty = r#"{"type":"key","key_id":"k1","account_id":"a1","scopes":["read"],"purpose":""}"#;
        assert!(matches!(parse_line(empty), Err(ParseError::Invalid { field: "purpose", .. })));
    }

    #[test]
    fn malformed_records_say_what_is_wrong() {
        let cases = [
            ("not json", "not a JSON object"),
            (r#"{"type":"teleport"}"#, "unknown record type"),
            (
                r#"{"type":"request","ts":"2026-11-28T05:24:57Z","ip":"1.2.3.4","outcome":"VALID"}"#,
                "missing field \"key_id\"",
            ),
            (r#"{"type":"request","ts":"yesterday","key_id":"k","ip":"1.2.3.4","outcome":"VALID"}"#, "invalid ts"),
            (r#"{"type":"login","ts":"2026-11-28T05:24:57Z","account_id":"a","ip":"1.2.3"}"#, "invalid ip"),
            (
                r#"{"type":"order","ts":"2026-11-28T05:24:57Z","key_id":"k","symbol":"BTC","side":"long","action":"place","notional":1}"#,
                "invalid side",
            ),
        ];
        for (line, want) in cases {
            let e = parse_line(line).unwrap_err().to_string();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn rfc3339_variants() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("1970-01-01T09:00:00.5+09:00"), Some(500));
        assert_eq!(parse_rfc3339_ms("2024-02-29T12:00:00.123456Z"), Some(1_709_208_000_123));
        for bad in [
            "2024-13-01T00:00:00Z",
            "2024-02-29",
            "2024-02-29T12:00:00",
            "2024-02-29T12:00:00.Z",
            "2024-02-29T12:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn rfc3339_round_trips_and_agrees_with_the_time_crate(ms in -2_000_000_000_000i64..8_000_000_000_000) {
            let text = format_rfc3339_ms(ms);
            prop_assert_eq!(parse_rfc3339_ms(&text), Some(ms));
            let t = time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!((t.unix_timestamp_nanos() / 1_000_000) as i64, ms);
        }

        #[test]
        fn arbitrary_lines_never_panic(line in "\\PC{0,200}") {
            let _ = parse_line(&line);
        }

        /// Whenever the fast path answers, serde_json (the authority) reads the same record or
        /// the same error.
        #[test]
        fn the_fast_path_agrees_with_serde_json(members in prop::collection::vec((field(), value()), 0..9)) {
            let line = format!("{{{}}}", members.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","));
            if let Some(mut fast) = scan_flat(&line) {
                let ours = (fast.event_id.take(), record(fast));
                let theirs = serde_flat(&line).map(|mut f| (f.event_id.take(), record(f)));
                prop_assert_eq!(Ok(ours), theirs, "{}", line);
            }
        }
    }

    fn field() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "type",
            "ts",
            "key_id",
            "account_id",
            "ip",
            "user_agent",
            "device_id",
            "outcome",
            "symbol",
            "side",
            "action",
            "notional",
            "amount",
            "asset",
            "address",
            "text",
            "vendor_id",
            "status",
            "kind",
            "from",
            "to",
            "segment",
            "gateway",
            "event_id",
            "purpose",
        ])
    }

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "\"request\"",
                "\"order\"",
                "\"login\"",
                "\"withdrawal\"",
                "\"complaint\"",
                "\"vendor_intel\"",
                "\"relationship\"",
                "\"vendor\"",
                "\"2026-11-28T05:24:57.123Z\"",
                "\"203.0.113.7\"",
                "\"VALID\"",
                "\"buy\"",
                "\"place\"",
                "\"approved\"",
                "\"affiliate\"",
                "null",
                "true",
                "12",
                "-0.5",
                "1e3",
                "\"a\\\"b\"",
                "[\"KR\"]",
            ])
            .prop_map(str::to_owned),
            "[a-z0-9]{0,5}".prop_map(|s| format!("{s:?}")),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:?}")),
        ]
    }
}
