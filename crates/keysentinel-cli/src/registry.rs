//! `keysentinel vendors` and `keysentinel counterparties`: the approved-vendor registry and the
//! counterparty records, over the admin API (docs/registry.md).

use crate::client::{seg, Client};
use crate::output::{self, s};
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum VendorsCmd {
    /// Register a vendor's application.
    Apply {
        vendor_id: String,
        #[arg(long)]
        legal_name: String,
        /// An egress network (CIDR or address, at most /24 or /48); repeat for several.
        #[arg(long = "egress")]
        egress: Vec<String>,
        #[arg(long)]
        reason: String,
    },
    /// Record the vendor's questionnaire answers (JSON, or @FILE), reviewed by you.
    Attest {
        vendor_id: String,
        #[arg(long)]
        answers: String,
        /// When the vendor signed it (RFC 3339).
        #[arg(long)]
        attested_at: String,
        #[arg(long)]
        reason: String,
    },
    /// Record a due diligence (you may then not approve the vendor).
    DueDiligence {
        vendor_id: String,
        #[arg(long, value_parser = ["satisfactory", "conditional", "unsatisfactory"])]
        outcome: String,
        #[arg(long)]
        document_ref: String,
        #[arg(long, default_value = "")]
        notes: String,
        #[arg(long)]
        reason: String,
    },
    /// Approve an application (compliance; not on checks you recorded).
    Approve {
        vendor_id: String,
        /// When the approval lapses unless recertified (RFC 3339).
        #[arg(long)]
        recertification_due: String,
        #[arg(long)]
        reason: String,
    },
    /// Renew an approval on a new due diligence; the way back for a suspended or lapsed vendor.
    Recertify {
        vendor_id: String,
        #[arg(long)]
        recertification_due: String,
        /// New egress networks (repeat); unchanged when none are given.
        #[arg(long = "egress")]
        egress: Vec<String>,
        #[arg(long)]
        reason: String,
    },
    /// Suspend a vendor: its keys are restricted as the response policy says, owners notified.
    Suspend {
        vendor_id: String,
        #[arg(long)]
        reason: String,
    },
    List {
        #[arg(long, value_parser = ["applied", "approved", "suspended", "lapsed"])]
        status: Option<String>,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Show {
        vendor_id: String,
    },
    /// Its keys, their accounts and statuses, and their orders over 30 days.
    Exposure {
        vendor_id: String,
    },
    /// The owners' notices about its lapse or suspension.
    Notices {
        vendor_id: String,
    },
}

#[derive(Subcommand)]
pub enum CounterpartiesCmd {
    /// Record a counterparty: a mandate, a broker arrangement, an affiliation, sub-accounts.
    Create {
        #[arg(long, value_parser = ["mm_mandate", "broker_client", "affiliate", "sub_account", "vendor_delegation"])]
        kind: String,
        /// The market maker's, broker's, parent's or affiliate's account.
        #[arg(long)]
        account: String,
        /// A related account (client, sub-account, affiliate); repeat for several.
        #[arg(long = "related")]
        related: Vec<String>,
        /// Mandates: own, issuer or clients.
        #[arg(long, value_parser = ["own", "issuer", "clients"])]
        principal: Option<String>,
        /// Mandates for an issuer: its name.
        #[arg(long)]
        issuer: Option<String>,
        /// Mandates: comma-separated symbols (BTC-KRW,ETH-KRW).
        #[arg(long)]
        symbols: Option<String>,
        /// Mandates: comma-separated country codes it is carried out from.
        #[arg(long)]
        countries: Option<String>,
        /// Mandates: a network it is carried out from; repeat for several.
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// Broker arrangements held in one omnibus account.
        #[arg(long)]
        omnibus: bool,
        /// From when it holds (RFC 3339).
        #[arg(long)]
        from: String,
        /// Until when (RFC 3339; required for mandates).
        #[arg(long)]
        until: Option<String>,
        /// The documents or attestation behind it.
        #[arg(long)]
        document_ref: String,
        /// Its id (made up when absent).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        reason: String,
    },
    List {
        /// Either side.
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        /// Only those in effect then (RFC 3339).
        #[arg(long)]
        active_at: Option<String>,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    Show {
        counterparty_id: String,
    },
    /// Change it (a new version); absent options stay as they are.
    Update {
        counterparty_id: String,
        #[arg(long = "related")]
        related: Vec<String>,
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        symbols: Option<String>,
        #[arg(long)]
        countries: Option<String>,
        #[arg(long = "allow")]
        allow: Vec<String>,
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        document_ref: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// End it now: it no longer excuses what it documented.
    End {
        counterparty_id: String,
        #[arg(long)]
        reason: String,
    },
}

fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn print(json_out: bool, v: &Value, human: fn(&Value)) {
    if json_out {
        output::json(v)
    } else {
        human(v)
    }
}

fn vendor(v: &Value) {
    for field in
        ["vendor_id", "legal_name", "status", "status_reason", "egress_cidrs", "recertification_due", "approved_by"]
    {
        println!("{field:<20} {}", s(&v[field]));
    }
    println!("{:<20} {}", "attestation", if v["attestation"].is_null() { "-" } else { "recorded" });
    let dd = &v["due_diligence"];
    println!(
        "{:<20} {}",
        "due_diligence",
        if dd.is_null() {
            "-".into()
        } else {
            format!("{} ({}, {})", s(&dd["outcome"]), s(&dd["document_ref"]), s(&dd["recorded_by"]))
        }
    );
}

fn vendors(list: &Value) {
    output::columns(
        list,
        &[
            ("VENDOR", "vendor_id"),
            ("LEGAL NAME", "legal_name"),
            ("STATUS", "status"),
            ("RECERTIFICATION DUE", "recertification_due"),
        ],
    );
}

fn change(v: &Value) {
    vendor(&v["vendor"]);
    println!(
        "{:<20} {}{}",
        "action on keys",
        s(&v["action"]),
        if v["shadowed"] == true { " (shadow mode: not taken)" } else { "" }
    );
    output::columns(
        &v["keys"],
        &[("ACCESS KEY", "access_key"), ("ACCOUNT", "account_id"), ("CHANGE", "change"), ("NOTICE", "notice_id")],
    );
}

fn exposure(v: &Value) {
    println!(
        "{} ({}): {} keys, {} active, {} accounts; orders over 30 days: {} (notional {}){}",
        s(&v["vendor"]["vendor_id"]),
        s(&v["vendor"]["status"]),
        v["keys"].as_array().map_or(0, Vec::len),
        s(&v["active_keys"]),
        v["accounts"].as_array().map_or(0, Vec::len),
        s(&v["orders_30d"]),
        s(&v["notional_30d"]),
        if v["trading_measured"] == true { "" } else { " — detection is off on this node" }
    );
    let rows: Vec<Vec<String>> = v["keys"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|k| {
            vec![
                s(&k["access_key"]),
                s(&k["account_id"]),
                s(&k["status"]),
                s(&k["scopes"]),
                s(&k["traded_30d"]["orders"]),
                s(&k["traded_30d"]["notional"]),
            ]
        })
        .collect();
    output::table(&["ACCESS KEY", "ACCOUNT", "STATUS", "SCOPES", "ORDERS 30D", "NOTIONAL 30D"], &rows);
}

fn notices(list: &Value) {
    output::columns(
        list,
        &[
            ("NOTICE", "notice_id"),
            ("KEY", "key_id"),
            ("ACCOUNT", "account_id"),
            ("KIND", "kind"),
            ("DELIVERY", "status"),
        ],
    );
}

fn counterparty(c: &Value) {
    for field in [
        "counterparty_id",
        "kind",
        "account_id",
        "related_accounts",
        "principal",
        "issuer",
        "symbols",
        "countries",
        "ip_allowlist",
        "omnibus",
        "effective_from",
        "effective_until",
        "document_ref",
        "version",
    ] {
        println!("{field:<18} {}", s(&c[field]));
    }
    if !c["ended"].is_null() {
        println!("{:<18} {} by {}: {}", "ended", s(&c["ended"]["at"]), s(&c["ended"]["by"]), s(&c["ended"]["reason"]));
    }
}

fn counterparties(list: &Value) {
    output::columns(
        list,
        &[
            ("COUNTERPARTY", "counterparty_id"),
            ("KIND", "kind"),
            ("ACCOUNT", "account_id"),
            ("RELATED", "related_accounts"),
            ("FROM", "effective_from"),
            ("UNTIL", "effective_until"),
        ],
    );
}

pub fn vendors_cmd(c: &Client, json_out: bool, cmd: &VendorsCmd) -> anyhow::Result<()> {
    let at = |id: &str, rest: &str| format!("/v1/vendors/{}{rest}", seg(id));
    match cmd {
        VendorsCmd::Apply { vendor_id, legal_name, egress, reason } => {
            let body =
                json!({ "vendor_id": vendor_id, "legal_name": legal_name, "egress_cidrs": egress, "reason": reason });
            print(json_out, &c.post("/v1/vendors", &body)?, vendor);
        }
        VendorsCmd::Attest { vendor_id, answers, attested_at, reason } => {
            let text = crate::arg_file_or_value(answers)?;
            let answers: Value = serde_json::from_str(&text).map_err(|e| {
                crate::exit::Failure::new(crate::exit::Exit::Invalid, format!("--answers is not JSON: {e}"))
            })?;
            let body = json!({ "answers": answers, "attested_at": attested_at, "reason": reason });
            print(json_out, &c.post(&at(vendor_id, "/attestation"), &body)?, vendor);
        }
        VendorsCmd::DueDiligence { vendor_id, outcome, document_ref, notes, reason } => {
            let body = json!({ "outcome": outcome, "document_ref": document_ref, "notes": notes, "reason": reason });
            print(json_out, &c.post(&at(vendor_id, "/due-diligence"), &body)?, vendor);
        }
        VendorsCmd::Approve { vendor_id, recertification_due, reason } => {
            let body = json!({ "recertification_due": recertification_due, "reason": reason });
            print(json_out, &c.post(&at(vendor_id, "/approve"), &body)?, vendor);
        }
        VendorsCmd::Recertify { vendor_id, recertification_due, egress, reason } => {
            let mut body = json!({ "recertification_due": recertification_due, "reason": reason });
            if !egress.is_empty() {
                body["egress_cidrs"] = json!(egress);
            }
            print(json_out, &c.post(&at(vendor_id, "/recertify"), &body)?, vendor);
        }
        VendorsCmd::Suspend { vendor_id, reason } => {
            print(json_out, &c.post(&at(vendor_id, "/suspend"), &json!({ "reason": reason }))?, change);
        }
        VendorsCmd::List { status, after, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            for (k, v) in [("status", status), ("after", after)] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            print(json_out, &c.get("/v1/vendors", &q)?, vendors);
        }
        VendorsCmd::Show { vendor_id } => print(json_out, &c.get(&at(vendor_id, ""), &[])?, vendor),
        VendorsCmd::Exposure { vendor_id } => print(json_out, &c.get(&at(vendor_id, "/exposure"), &[])?, exposure),
        VendorsCmd::Notices { vendor_id } => print(json_out, &c.get(&at(vendor_id, "/notices"), &[])?, notices),
    }
    Ok(())
}

pub fn counterparties_cmd(c: &Client, json_out: bool, cmd: &CounterpartiesCmd) -> anyhow::Result<()> {
    match cmd {
        CounterpartiesCmd::Create {
            kind,
            account,
            related,
            principal,
            issuer,
            symbols,
            countries,
            allow,
            omnibus,
            from,
            until,
            document_ref,
            id,
            reason,
        } => {
            let mut body = json!({
                "kind": kind, "account_id": account, "related_accounts": related, "omnibus": omnibus,
                "effective_from": from, "effective_until": until, "document_ref": document_ref, "reason": reason,
                "counterparty_id": id, "principal": principal, "issuer": issuer, "ip_allowlist": allow,
            });
            if let Some(s) = symbols {
                body["symbols"] = json!(list(s));
            }
            if let Some(cs) = countries {
                body["countries"] = json!(list(cs));
            }
            print(json_out, &c.post("/v1/counterparties", &body)?, counterparty);
        }
        CounterpartiesCmd::List { account, kind, active_at, after, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            for (k, v) in [("account_id", account), ("kind", kind), ("active_at", active_at), ("after", after)] {
                if let Some(v) = v {
                    q.push((k, v.clone()));
                }
            }
            print(json_out, &c.get("/v1/counterparties", &q)?, counterparties);
        }
        CounterpartiesCmd::Show { counterparty_id } => {
            print(json_out, &c.get(&format!("/v1/counterparties/{}", seg(counterparty_id)), &[])?, counterparty)
        }
        CounterpartiesCmd::Update {
            counterparty_id,
            related,
            issuer,
            symbols,
            countries,
            allow,
            from,
            until,
            document_ref,
            reason,
        } => {
            let mut body = json!({ "reason": reason });
            if !related.is_empty() {
                body["related_accounts"] = json!(related);
            }
            if !allow.is_empty() {
                body["ip_allowlist"] = json!(allow);
            }
            for (field, value) in [
                ("issuer", issuer.clone().map(Value::from)),
                ("symbols", symbols.as_deref().map(|s| json!(list(s)))),
                ("countries", countries.as_deref().map(|s| json!(list(s)))),
                ("effective_from", from.clone().map(Value::from)),
                ("effective_until", until.clone().map(Value::from)),
                ("document_ref", document_ref.clone().map(Value::from)),
            ] {
                if let Some(v) = value {
                    body[field] = v;
                }
            }
            let path = format!("/v1/counterparties/{}", seg(counterparty_id));
            print(json_out, &c.patch(&path, &body)?, counterparty);
        }
        CounterpartiesCmd::End { counterparty_id, reason } => {
            let path = format!("/v1/counterparties/{}/end", seg(counterparty_id));
            print(json_out, &c.post(&path, &json!({ "reason": reason }))?, counterparty);
        }
    }
    Ok(())
}

/// `keysentinel parties`: who stands behind an account (docs/registry.md, "Who stands behind an
/// account").
#[derive(Subcommand)]
pub enum PartiesCmd {
    /// Record a beneficial owner, a representative or (corporate, broker, market maker) a
    /// person, desk or system that operates the account's keys.
    Create {
        account_id: String,
        #[arg(long, value_parser = ["beneficial_owner", "representative", "operator", "desk", "system"])]
        kind: String,
        #[arg(long)]
        name: String,
        /// The document behind the record (KYC/KYB file, power of attorney, desk mandate).
        #[arg(long)]
        document_ref: String,
        /// From when it holds (RFC 3339; default now).
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        until: Option<String>,
        /// The record's id (made up when absent).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// The account's parties, ended ones too.
    List { account_id: String },
    /// Change it (a new version); absent options stay as they are.
    Update {
        party_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        document_ref: Option<String>,
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        reason: String,
    },
    /// End it now: keys may no longer name it as their operator.
    End {
        party_id: String,
        #[arg(long)]
        reason: String,
    },
}

fn party(p: &Value) {
    for field in
        ["party_id", "account_id", "kind", "name", "document_ref", "effective_from", "effective_until", "version"]
    {
        println!("{field:<18} {}", s(&p[field]));
    }
    if !p["ended"].is_null() {
        println!("{:<18} {} by {}: {}", "ended", s(&p["ended"]["at"]), s(&p["ended"]["by"]), s(&p["ended"]["reason"]));
    }
}

fn parties(list: &Value) {
    output::columns(
        list,
        &[
            ("PARTY", "party_id"),
            ("KIND", "kind"),
            ("NAME", "name"),
            ("FROM", "effective_from"),
            ("UNTIL", "effective_until"),
            ("VERSION", "version"),
        ],
    );
}

pub fn parties_cmd(c: &Client, json_out: bool, cmd: &PartiesCmd) -> anyhow::Result<()> {
    match cmd {
        PartiesCmd::Create { account_id, kind, name, document_ref, from, until, id, reason } => {
            let body = json!({ "kind": kind, "name": name, "document_ref": document_ref, "effective_from": from,
                "effective_until": until, "party_id": id, "reason": reason });
            let path = format!("/v1/accounts/{}/parties", seg(account_id));
            print(json_out, &c.post(&path, &body)?, party);
        }
        PartiesCmd::List { account_id } => {
            print(json_out, &c.get(&format!("/v1/accounts/{}/parties", seg(account_id)), &[])?, parties)
        }
        PartiesCmd::Update { party_id, name, document_ref, until, reason } => {
            let mut body = json!({ "reason": reason });
            for (field, value) in [("name", name), ("document_ref", document_ref), ("effective_until", until)] {
                if let Some(v) = value {
                    body[field] = json!(v);
                }
            }
            print(json_out, &c.patch(&format!("/v1/parties/{}", seg(party_id)), &body)?, party);
        }
        PartiesCmd::End { party_id, reason } => {
            let path = format!("/v1/parties/{}/end", seg(party_id));
            print(json_out, &c.post(&path, &json!({ "reason": reason }))?, party);
        }
    }
    Ok(())
}

/// `keysentinel registry import`: an existing registry in one batch (docs/registry.md, "Importing
/// an existing registry").
#[derive(Subcommand)]
pub enum RegistryCmd {
    /// Import NDJSON (one object with a `type` per line) or, for a `.csv` file or with `--csv`,
    /// CSV with a header; all or nothing, every bad line named.
    Import {
        file: std::path::PathBuf,
        #[arg(long)]
        csv: bool,
        #[arg(long)]
        reason: String,
    },
}

pub fn registry_cmd(c: &Client, json_out: bool, cmd: &RegistryCmd) -> anyhow::Result<()> {
    match cmd {
        RegistryCmd::Import { file, csv, reason } => {
            let text =
                std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let csv = *csv || file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let kind = if csv { "text/csv" } else { "application/x-ndjson" };
            let report = c.post_text("/v1/registry/import", &[("reason", reason.clone())], kind, text)?;
            if json_out {
                output::json(&report);
            } else {
                println!("{} records imported (batch {})", s(&report["imported"]), s(&report["digest"]));
            }
        }
    }
    Ok(())
}
