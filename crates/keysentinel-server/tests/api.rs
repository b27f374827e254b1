//! The admin API over real HTTP, on the real embedded store.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use keysentinel_audit::Actor;
use keysentinel_domain::{Clock, KeyPolicy, OperatorId, Role};
use keysentinel_registry::{Registry, SystemClock};
use keysentinel_secrets::{Keyring, MasterKey};
use keysentinel_server::{router, AppState};
use keysentinel_sqlite::SqliteStore;
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;

/// Server state whose verify events are drained by a task, as a consumer would.
fn test_state(reg: Arc<Registry>) -> AppState {
    let (events, mut rx) = keysentinel_server::telemetry::EventPipeline::new(1024, "test".into());
    tokio::spawn(async move { while rx.recv().await.is_some() {} });
    AppState::new(reg, keysentinel_verify::routes::RouteTable::default_routes().unwrap(), Default::default(), events)
        .unwrap()
}

struct Api {
    _dir: tempfile::TempDir,
    base: String,
    http: Client,
    reg: Arc<Registry>,
    store: Arc<SqliteStore>,
    admin: String,
    /// A second admin (break-glass on the node), who approves roles that need one.
    second: String,
}

async fn start() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let keyring = Arc::new(Keyring::new(MasterKey::generate(), vec![]));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, _) = SqliteStore::open(&dir.path().join("ks.db"), &keyring, clock.clone()).unwrap();
    let store = Arc::new(store);
    let reg = Arc::new(Registry::new(store.clone(), Arc::new(KeyPolicy::default_policy().unwrap()), keyring, clock));
    let admin =
        reg.bootstrap_admin(Actor::Local { command: "test".into() }, OperatorId::parse("root").unwrap()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = test_state(reg.clone());
    let app = router(Arc::new(state));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let second = reg
        .break_glass(
            Actor::Local { command: "test".into() },
            OperatorId::parse("root-2").unwrap(),
            Role::Admin,
            "test setup".into(),
        )
        .await
        .unwrap();
    Api {
        _dir: dir,
        base,
        http: Client::new(),
        reg,
        store,
        admin: admin.token.to_string(),
        second: second.token.to_string(),
    }
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn operator(&self, id: &str, role: Role) -> String {
        let (s, v) = self
            .call(Method::POST, "/v1/operators", Some(&self.admin), Some(json!({ "operator_id": id, "role": role })))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        if role.needs_second_approval() {
            let path = format!("/v1/operators/{id}/approve");
            let (s, v) =
                self.call(Method::POST, &path, Some(&self.second), Some(json!({ "reason": "second admin" }))).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        v["token"].as_str().unwrap().to_owned()
    }

    /// Creates an operator as `by` and leaves it as created: (token, response).
    async fn create_as(&self, by: &str, id: &str, role: Role) -> (String, Value) {
        let (s, v) =
            self.call(Method::POST, "/v1/operators", Some(by), Some(json!({ "operator_id": id, "role": role }))).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        (v["token"].as_str().unwrap().to_owned(), v)
    }

    async fn account(&self, id: &str, segment: &str) {
        let body = json!({ "account_id": id, "segment": segment, "verification": "verified" });
        let (s, v) = self.call(Method::POST, "/v1/accounts", Some(&self.admin), Some(body)).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let api = start().await;
    let (s, v) = api.call(Method::GET, "/v1/keys", None, None).await;
    assert_eq!((s, code(&v)), (StatusCode::UNAUTHORIZED, "unauthorized"));
    for bad in ["nonsense", "kso_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000", &api.admin[..api.admin.len() - 1]]
    {
        let (s, _) = api.call(Method::GET, "/v1/keys", Some(bad), None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}");
    }
    let resp = api.http.get(format!("{}/v1/keys", api.base)).send().await.unwrap();
    assert_eq!(resp.headers().get("www-authenticate").map(|h| h.to_str().unwrap()), Some("Bearer"));
    let (s, v) = api.call(Method::GET, "/v1/operators/me", Some(&api.admin), None).await;
    assert_eq!((s, v["role"].as_str()), (StatusCode::OK, Some("admin")));

    let analyst = api.operator("ana", Role::Analyst).await;
    let (s, _) = api
        .call(Method::POST, "/v1/operators/ana/disable", Some(&api.admin), Some(json!({ "reason": "left the team" })))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = api.call(Method::GET, "/v1/keys", Some(&analyst), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a disabled operator's token stops working at once");
    let (s, v) =
        api.call(Method::POST, "/v1/operators/root/disable", Some(&api.admin), Some(json!({ "reason": "oops" }))).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    // Names that differ only in case are one name.
    let body = json!({ "operator_id": "ROOT", "role": "analyst" });
    let (s, v) = api.call(Method::POST, "/v1/operators", Some(&api.admin), Some(body)).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("operator root already exists"), "{v}");
    // A reason of only invisible characters is no reason.
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/operators/ana/disable",
            Some(&api.admin),
            Some(json!({ "reason": "\u{200B}\u{200B}" })),
        )
        .await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("reason")), "{v}");
}

#[tokio::test]
async fn each_role_does_only_its_job_and_refusals_are_audited() {
    let api = start().await;
    api.account("acct", "retail").await;
    let (auditor, gateway, analyst, approver) = (
        api.operator("aud", Role::Auditor).await,
        api.operator("gw", Role::Gateway).await,
        api.operator("ana", Role::Analyst).await,
        {
            // Made by the other admin: an approver never approves what its creator requested.
            let (token, _) = api.create_as(&api.second, "appr", Role::Approver).await;
            let path = "/v1/operators/appr/approve";
            let (s, v) =
                api.call(Method::POST, path, Some(&api.admin), Some(json!({ "reason": "second admin" }))).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            token
        },
    );
    let new_key = json!({ "account_id": "acct", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read", "withdraw"],
        "ip_allowlist": ["203.0.113.0/24"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "treasury" });
    for token in [&auditor, &gateway, &analyst, &approver] {
        let (s, v) = api.call(Method::POST, "/v1/keys", Some(token), Some(new_key.clone())).await;
        assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"));
    }
    let (s, v) = api.call(Method::GET, "/v1/keys", Some(&gateway), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, _) = api.call(Method::GET, "/v1/keys", Some(&auditor), None).await;
    assert_eq!(s, StatusCode::OK);

    let (s, issued) = api.call(Method::POST, "/v1/keys", Some(&api.admin), Some(new_key)).await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    assert!(issued["secret"].as_str().unwrap().starts_with("kss_"));
    let ak = issued["key"]["access_key"].as_str().unwrap().to_owned();
    let (_, shown) = api.call(Method::GET, &format!("/v1/keys/{ak}"), Some(&auditor), None).await;
    assert!(
        shown.get("secret").is_none() && !shown.to_string().contains(issued["secret"].as_str().unwrap()),
        "the secret is never shown again"
    );

    let reason = json!({ "reason": "suspected sharing" });
    let (s, _) = api.call(Method::POST, &format!("/v1/keys/{ak}/suspend"), Some(&auditor), Some(reason.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = api.call(Method::POST, &format!("/v1/keys/{ak}/suspend"), Some(&analyst), Some(reason.clone())).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("suspended")));
    let (s, _) = api.call(Method::POST, &format!("/v1/keys/{ak}/resume"), Some(&analyst), Some(reason)).await;
    assert_eq!(s, StatusCode::OK);

    let approve = format!("/v1/keys/{ak}/grants/withdraw/approve");
    let (s, _) = api.call(Method::POST, &approve, Some(&api.admin), Some(json!({ "reason": "x" }))).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "admins request, approvers approve");
    let (s, v) =
        api.call(Method::POST, &approve, Some(&approver), Some(json!({ "reason": "verified by phone" }))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["grants"][0]["status"], "active");

    let (s, log) = api.call(Method::GET, "/v1/audit/entries?limit=1000", Some(&auditor), None).await;
    assert_eq!(s, StatusCode::OK);
    let denied: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["action"] == "access.denied").collect();
    assert!(denied.len() >= 6, "denied attempts are audited: {}", denied.len());
    assert!(denied.iter().any(|e| e["actor"]["id"] == "gw" && e["target"] == "read keys"));
    let (s, _) = api.call(Method::GET, "/v1/audit/entries", Some(&approver), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "approvers do not read the audit log");
}

#[tokio::test]
async fn bad_input_gets_a_precise_error_and_changes_nothing() {
    let api = start().await;
    api.account("corp", "corporate").await;
    let before = api.reg.audit_entries(0, 1000).unwrap().len();
    let t = Some(api.admin.as_str());
    let key = |over: Value| {
        let mut k = json!({ "account_id": "corp", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read"],
            "ip_allowlist": ["203.0.113.0/24"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "treasury" });
        for (f, v) in over.as_object().unwrap() {
            k[f] = v.clone();
        }
        k
    };
    let cases = [
        (key(json!({ "ip_allowlist": ["10.0.0.1/8"] })), StatusCode::BAD_REQUEST, "invalid_json", "host bits"),
        (key(json!({ "ip_allowlist": ["999.1.1.1"] })), StatusCode::BAD_REQUEST, "invalid_json", "not an IP"),
        (
            key(json!({ "scopes": ["read", "admin"] })),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "unknown variant `admin`",
        ),
        (key(json!({ "scopes": ["read", "read"] })), StatusCode::BAD_REQUEST, "invalid_input", "twice"),
        (key(json!({ "scopes": [] })), StatusCode::BAD_REQUEST, "invalid_input", "at least one scope"),
        (key(json!({ "purpose_note": "x".repeat(501) })), StatusCode::BAD_REQUEST, "invalid_input", "at most 500"),
        (key(json!({ "account_id": "nobody" })), StatusCode::NOT_FOUND, "not_found", "account nobody"),
        (key(json!({ "ip_allowlist": [] })), StatusCode::UNPROCESSABLE_ENTITY, "policy_violation", "allowlist"),
        (
            key(json!({ "vendor_id": "tool", "scopes": ["read", "withdraw"] })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "policy_violation",
            "vendor",
        ),
        (key(json!({ "terms_version": "2019-01" })), StatusCode::UNPROCESSABLE_ENTITY, "policy_violation", "terms"),
        (
            key(json!({ "algorithm": {"kind": "ed25519", "public_key": "AAAA"} })),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "32 bytes",
        ),
        (key(json!({ "surprise": 1 })), StatusCode::BAD_REQUEST, "invalid_json", "unknown field `surprise`"),
        (
            key(json!({ "algorithm": {"kind": "hmac", "secret": "my-own-secret-0123456789"} })),
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "unknown field `secret`",
        ),
        (key(json!({ "account_id": ".." })), StatusCode::BAD_REQUEST, "invalid_json", "only dots"),
        (key(json!({ "scheme": "okx" })), StatusCode::BAD_REQUEST, "invalid_json", "unknown variant `okx`"),
        (
            key(
                json!({ "scheme": "upbit", "algorithm": {"kind": "ed25519", "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="} }),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_input",
            "HMAC only",
        ),
    ];
    for (body, status, c, needle) in cases {
        let (s, v) = api.call(Method::POST, "/v1/keys", t, Some(body.clone())).await;
        assert_eq!((s, code(&v)), (status, c), "{body} -> {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{needle:?} not in {v}");
    }
    let (_, v) = api.call(Method::POST, "/v1/keys", t, Some(key(json!({ "ip_allowlist": [] })))).await;
    assert_eq!(v["error"]["rule"], "allowlist_required");

    let (s, v) =
        api.call(Method::POST, "/v1/accounts", t, Some(json!({ "account_id": "corp", "segment": "retail" }))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "conflict"));
    let (s, v) =
        api.call(Method::POST, "/v1/accounts", t, Some(json!({ "account_id": "a b", "segment": "retail" }))).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_json"));
    let (s, v) =
        api.call(Method::POST, "/v1/accounts", t, Some(json!({ "account_id": "z", "segment": "whale" }))).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_json"));
    let (s, v) = api
        .call(
            Method::POST,
            "/v1/accounts",
            t,
            Some(json!({ "account_id": "z", "segment": "retail", "declared_countries": ["Korea"] })),
        )
        .await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_json"), "{v}");
    let (s, v) = api.call(Method::GET, "/v1/keys?limit=abc", t, None).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_input"));
    let (s, v) = api.call(Method::GET, "/v1/keys/short", t, None).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_input"));
    let (s, v) = api.call(Method::GET, "/v1/nothing-here", t, None).await;
    assert_eq!((s, code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = api.call(Method::DELETE, "/v1/keys", t, None).await;
    assert_eq!((s, code(&v)), (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"));
    let resp =
        api.http.post(format!("{}/v1/accounts", api.base)).bearer_auth(&api.admin).body("{").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let resp = api
        .http
        .post(format!("{}/v1/accounts", api.base))
        .bearer_auth(&api.admin)
        .header("content-type", "application/json")
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(api.reg.audit_entries(0, 1000).unwrap().len(), before, "no refused request changed anything");

    // Illegal transitions.
    let (_, issued) = api.call(Method::POST, "/v1/keys", t, Some(key(json!({})))).await;
    let ak = issued["key"]["access_key"].as_str().unwrap().to_owned();
    let (s, _) =
        api.call(Method::POST, &format!("/v1/keys/{ak}/revoke"), t, Some(json!({ "reason": "compromised" }))).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = api.call(Method::POST, &format!("/v1/keys/{ak}/resume"), t, Some(json!({ "reason": "undo" }))).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "invalid_transition"));
    let (s, v) = api.call(Method::POST, &format!("/v1/keys/{ak}/revoke"), t, Some(json!({ "reason": "" }))).await;
    assert_eq!((s, code(&v), v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, "invalid_input", Some("reason")));
}

#[tokio::test]
async fn eleventh_key_is_refused_and_imports_report_by_line() {
    let api = start().await;
    api.account("r1", "retail").await;
    let t = Some(api.admin.as_str());
    let body = json!({ "account_id": "r1", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "portfolio_read_only" });
    for _ in 0..10 {
        let (s, v) = api.call(Method::POST, "/v1/keys", t, Some(body.clone())).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
    }
    let (s, v) = api.call(Method::POST, "/v1/keys", t, Some(body)).await;
    assert_eq!((s, v["error"]["rule"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("max_keys_per_account")));

    let ndjson = "{\"access_key\":\"ImportedKey000000000001\",\"secret\":\"0123456789abcdef0123\",\"account_id\":\"r1\",\"scheme\":\"coinone\",\"scopes\":[\"read\"],\"created_at\":\"2026-01-01T00:00:00Z\",\"expires_at\":\"2026-12-31T00:00:00Z\",\"terms_version\":\"2026-05\"}\n{broken\n";
    let resp = api
        .http
        .post(format!("{}/v1/keys/import", api.base))
        .bearer_auth(&api.admin)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let report: Value = resp.json().await.unwrap();
    assert_eq!(report["imported"], 1, "{report}");
    assert_eq!(report["errors"][0]["line"], 2);
    assert!(report["warnings"][0]["message"].as_str().unwrap().contains("max_keys_per_account"), "{report}");
}

#[tokio::test]
async fn audit_checkpoint_and_proofs_verify_offline() {
    let api = start().await;
    api.account("a1", "retail").await;
    let (s, cp) = api.call(Method::GET, "/v1/audit/checkpoint", Some(&api.admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let verifier = keysentinel_audit::LogVerifier::parse(cp["verifier_key"].as_str().unwrap()).unwrap();
    let opened = verifier.open_for(cp["origin"].as_str().unwrap(), cp["checkpoint"].as_str().unwrap()).unwrap();
    // The bootstrap admin, the break-glass second admin, the account.
    assert_eq!(opened.size, 3);
    let (s, proof) = api.call(Method::GET, "/v1/audit/entries/2/proof", Some(&api.admin), None).await;
    assert_eq!(s, StatusCode::OK);
    let proof: keysentinel_audit::proof::InclusionProof = serde_json::from_value(proof).unwrap();
    assert_eq!(proof.verify(&verifier, cp["origin"].as_str().unwrap()).unwrap().action, "account.create");
    let (s, _) = api.call(Method::GET, "/v1/audit/entries/99/proof", Some(&api.admin), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The committed `openapi.json` is what the server generates (regenerate with
/// `cargo run -p keysentinel -- openapi > openapi.json`).
#[test]
fn committed_openapi_document_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi.json")).unwrap_or_default();
    let generated = keysentinel_server::openapi_json();
    assert!(committed == generated, "openapi.json is stale: run `cargo run -p keysentinel -- openapi > openapi.json`");
}

#[tokio::test]
async fn the_openapi_document_is_valid_and_every_operation_is_served() {
    let doc = keysentinel_server::openapi_json();
    let spec = oas3::from_json(&doc).expect("a valid OpenAPI 3.1 document");
    let api = start().await;
    let mut operations = 0;
    for (path, item) in spec.paths.unwrap_or_default() {
        for (method, _) in item.methods() {
            operations += 1;
            let concrete = path
                .replace("{access_key}", "ksk_unknown000000000000000")
                .replace("{account_id}", "nobody")
                .replace("{operator_id}", "nobody")
                .replace("{vendor_id}", "nobody")
                .replace("{counterparty_id}", "nobody")
                .replace("{party_id}", "nobody")
                .replace("{scope}", "withdraw")
                .replace("{seq}", "0");
            let m = Method::from_bytes(method.as_str().as_bytes()).unwrap();
            let (s, v) = api.call(m, &concrete, Some(&api.admin), Some(json!({}))).await;
            let unrouted = code(&v) == "method_not_allowed"
                || (s == StatusCode::NOT_FOUND
                    && v["error"]["message"].as_str().unwrap_or("").contains("no such endpoint"));
            assert!(!unrouted, "{method} {path} is documented but not served: {s} {v}");
        }
    }
    assert!(operations >= 24, "{operations}");
}

fn sign_binance(secret: &str, query: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(query.as_bytes());
    format!("{query}&signature={}", hex::encode(m.finalize().into_bytes()))
}

#[tokio::test]
async fn a_revocation_is_enforced_on_the_very_next_verify() {
    let api = start().await;
    api.account("trader", "retail").await;
    let gateway = api.operator("gw-1", Role::Gateway).await;
    let body = json!({ "account_id": "trader", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read", "trade"],
        "ip_allowlist": ["203.0.113.0/24"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "treasury" });
    let (_, issued) = api.call(Method::POST, "/v1/keys", Some(&api.admin), Some(body)).await;
    let ak = issued["key"]["access_key"].as_str().unwrap().to_owned();
    let secret = issued["secret"].as_str().unwrap().to_owned();

    let verify = |ip: &'static str, path: &'static str, method: &'static str| {
        // The server's own clock, as a client synchronised with it would sign.
        let now = api.reg.now().unix_timestamp_nanos() / 1_000_000;
        let query = sign_binance(&secret, &format!("symbol=BTCUSDT&timestamp={now}"));
        // No body, said as an empty one: an absent `body` means the gateway did not forward it.
        json!({ "method": method, "path": path, "query": query, "body": "", "headers": { "X-MBX-APIKEY": ak }, "client_ip": ip })
    };
    let call = |b: Value| api.call(Method::POST, "/v1/verify", Some(&gateway), Some(b));
    let (s, v) = call(verify("203.0.113.7", "/api/v3/openOrders", "GET")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (v["allow"].as_bool(), v["code"].as_str(), v["account_id"].as_str()),
        (Some(true), Some("VALID"), Some("trader")),
        "{v}"
    );
    assert_eq!(v["required_scope"], "read");
    let (_, v) = call(verify("198.51.100.1", "/api/v3/openOrders", "GET")).await;
    assert_eq!(v["code"], "IP_NOT_ALLOWED");
    let (_, v) = call(verify("203.0.113.7", "/sapi/v1/capital/withdraw/apply", "POST")).await;
    assert_eq!(v["code"], "SCOPE_DENIED");

    let reason = json!({ "reason": "suspected sharing" });
    api.call(Method::POST, &format!("/v1/keys/{ak}/suspend"), Some(&api.admin), Some(reason.clone())).await;
    let (_, v) = call(verify("203.0.113.7", "/api/v3/openOrders", "GET")).await;
    assert_eq!((v["allow"].as_bool(), v["code"].as_str()), (Some(false), Some("SUSPENDED")));
    api.call(Method::POST, &format!("/v1/keys/{ak}/resume"), Some(&api.admin), Some(reason.clone())).await;
    let (_, v) = call(verify("203.0.113.7", "/api/v3/openOrders", "GET")).await;
    assert_eq!(v["code"], "VALID");
    api.call(Method::POST, &format!("/v1/keys/{ak}/revoke"), Some(&api.admin), Some(reason)).await;
    let (_, v) = call(verify("203.0.113.7", "/api/v3/openOrders", "GET")).await;
    assert_eq!(
        (v["allow"].as_bool(), v["code"].as_str()),
        (Some(false), Some("REVOKED")),
        "seen by the very next verify"
    );

    // Every decision is counted by code and scheme.
    let metrics = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    for line in [
        r#"keysentinel_verifies_total{code="VALID",scheme="binance"} 2"#,
        r#"keysentinel_verifies_total{code="REVOKED",scheme="binance"} 1"#,
        r#"keysentinel_verifies_total{code="IP_NOT_ALLOWED",scheme="binance"} 1"#,
        "keysentinel_snapshot_keys 1",
        "keysentinel_events_shed_total 0",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }

    // Only gateways verify; a gateway's token does nothing else.
    let (s, _) = api
        .call(Method::POST, "/v1/verify", Some(&api.admin), Some(verify("203.0.113.7", "/api/v3/openOrders", "GET")))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = api.call(Method::POST, "/v1/verify", Some(&gateway), Some(json!({ "method": "GET" }))).await;
    assert_eq!((s, code(&v)), (StatusCode::BAD_REQUEST, "invalid_json"));
}

#[tokio::test]
async fn keys_existing_at_start_are_loaded_into_the_verifier() {
    let api = start().await;
    api.account("early", "retail").await;
    let body = json!({ "account_id": "early", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "portfolio_read_only" });
    let (_, issued) = api.call(Method::POST, "/v1/keys", Some(&api.admin), Some(body)).await;
    // A second server state over the same registry loads what is already committed.
    let state = test_state(api.reg.clone());
    let ak = issued["key"]["access_key"].as_str().unwrap();
    let entry = state.verifier.keys().get(ak).expect("loaded");
    assert_eq!(&*entry.account_id, "early");
}

#[tokio::test]
async fn a_legal_hold_keeps_a_keys_events_through_retention_until_compliance_lifts_it() {
    let api = start().await;
    let (analyst, mlro) = (api.operator("ana", Role::Analyst).await, api.operator("mlro", Role::Compliance).await);
    api.account("acct-h", "retail").await;
    let new_key = json!({ "account_id": "acct-h", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read"],
        "ip_allowlist": ["203.0.113.0/24"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "treasury" });
    let (s, issued) = api.call(Method::POST, "/v1/keys", Some(&api.admin), Some(new_key)).await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let ak = issued["key"]["access_key"].as_str().unwrap().to_owned();
    let suspicion = keysentinel_domain::Suspicion {
        at: api.reg.now(),
        key_id: keysentinel_domain::AccessKey::parse(&ak).unwrap(),
        stage: keysentinel_domain::Stage::Warn,
        risk: 0.6,
        findings: vec![],
        compromise: false,
        detector: "test".into(),
        related_accounts: vec![],
        baseline: None,
    };
    let case = api.reg.respond(suspicion, Arc::new(Default::default())).await.unwrap().unwrap();
    let commands = format!("/v1/cases/{}/commands", case.case_id);
    let hold = json!({ "command": "hold", "text": "police request 2026-117", "reason": "preserve logs" });
    let (s, v) = api.call(Method::POST, &commands, Some(&analyst), Some(hold)).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // An events file from 40 days ago, with the held key and another.
    let dir = tempfile::tempdir().unwrap();
    let day = api.reg.now().date() - time::Duration::days(40);
    let old =
        keysentinel_server::telemetry::day_file(dir.path(), (day.midnight().assume_utc().unix_timestamp()) / 86_400);
    std::fs::write(&old, format!("{{\"key_id\":\"{ak}\",\"n\":1}}\n{{\"key_id\":\"ksk_other\",\"n\":2}}\n")).unwrap();
    let removed = keysentinel_server::retention::run_once(&api.reg, dir.path(), 30).await.unwrap();
    assert_eq!(removed, 1);
    assert!(!old.exists());
    let held = std::fs::read_to_string(old.with_extension("held.ndjson")).unwrap();
    assert_eq!(held, format!("{{\"key_id\":\"{ak}\",\"n\":1}}\n"), "only the held key's lines are kept");
    let entries = api.reg.audit_entries(0, 1000).unwrap();
    let purge = entries.iter().find(|e| e.action == "events.purge").unwrap();
    assert_eq!(
        (purge.details["lines_removed"].as_u64(), purge.details["lines_kept_for_holds"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(keysentinel_server::retention::run_once(&api.reg, dir.path(), 30).await.unwrap(), 0, "held: kept");

    let release = json!({ "command": "release_hold", "text": "matter closed", "reason": "legal's instruction" });
    let (s, _) = api.call(Method::POST, &commands, Some(&analyst), Some(release.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "lifting a hold is the compliance officer's call");
    let (s, v) = api.call(Method::POST, &commands, Some(&mlro), Some(release)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(keysentinel_server::retention::run_once(&api.reg, dir.path(), 30).await.unwrap(), 1);
    assert!(!old.with_extension("held.ndjson").exists());
}

#[tokio::test]
async fn one_admin_cannot_supply_the_second_pair_of_eyes() {
    let api = start().await;
    api.account("acct", "retail").await;
    let new_key = json!({ "account_id": "acct", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read"],
        "ip_allowlist": ["203.0.113.0/24"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "treasury" });
    let (s, issued) = api.call(Method::POST, "/v1/keys", Some(&api.admin), Some(new_key)).await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let ak = issued["key"]["access_key"].as_str().unwrap().to_owned();
    // The admin requests a withdraw grant...
    let grant = json!({ "scope": "withdraw", "hours": 4, "reason": "treasury sweep" });
    let (s, v) = api.call(Method::POST, &format!("/v1/keys/{ak}/grants"), Some(&api.admin), Some(grant)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // ...creates an approver: pending, and its token authenticates nothing...
    let (mine, created) = api.create_as(&api.admin, "mine", Role::Approver).await;
    assert_eq!(created["operator"]["pending_approval"], true, "{created}");
    assert!(created["operator"]["created_at"].is_string(), "RFC 3339, as openapi.json says: {created}");
    let approve_grant = format!("/v1/keys/{ak}/grants/withdraw/approve");
    let reason = json!({ "reason": "looks fine" });
    let (s, _) = api.call(Method::POST, &approve_grant, Some(&mine), Some(reason.clone())).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a pending approver approves nothing");
    // ...and cannot approve it itself.
    let (s, v) = api.call(Method::POST, "/v1/operators/mine/approve", Some(&api.admin), Some(reason.clone())).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
    // A second admin approves the approver; still it may not approve what its creator requested.
    let (s, v) = api.call(Method::POST, "/v1/operators/mine/approve", Some(&api.second), Some(reason.clone())).await;
    assert_eq!((s, v["approved_by"].as_str()), (StatusCode::OK, Some("root-2")), "{v}");
    let (s, v) = api.call(Method::POST, "/v1/operators/mine/approve", Some(&api.second), Some(reason.clone())).await;
    assert_eq!((s, code(&v)), (StatusCode::CONFLICT, "invalid_operator_state"), "once: {v}");
    let (s, v) = api.call(Method::POST, &approve_grant, Some(&mine), Some(reason.clone())).await;
    assert_eq!((s, code(&v)), (StatusCode::FORBIDDEN, "forbidden"), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("created the other"), "{v}");
    // An approver from the other admin's chain may.
    let (theirs, _) = api.create_as(&api.second, "theirs", Role::Approver).await;
    let (s, v) = api.call(Method::POST, "/v1/operators/theirs/approve", Some(&api.admin), Some(reason.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api.call(Method::POST, &approve_grant, Some(&theirs), Some(reason.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // A compliance officer made by one admin reads no reports until a second admin approves it.
    let (mlro, _) = api.create_as(&api.admin, "mlro", Role::Compliance).await;
    let (s, _) = api.call(Method::GET, "/v1/reports", Some(&mlro), None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, v) = api.call(Method::POST, "/v1/operators/mlro/approve", Some(&api.second), Some(reason.clone())).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api.call(Method::GET, "/v1/reports", Some(&mlro), None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Roles outside any four-eyes check are active at once; every step is in the log.
    let (gw, created) = api.create_as(&api.admin, "gw", Role::Gateway).await;
    assert!(created["operator"].get("pending_approval").is_none(), "{created}");
    assert!(!gw.is_empty());
    let entries = api.reg.audit_entries(0, 200).unwrap();
    let approvals = entries.iter().filter(|e| e.action == "operator.approve").count();
    assert_eq!(approvals, 3);
    assert!(entries.iter().any(|e| e.action == "operator.break_glass" && e.target == "root-2"));
}

#[tokio::test]
async fn out_of_range_grant_hours_are_a_precise_400_and_writes_go_on() {
    let api = start().await;
    api.account("acct", "retail").await;
    let huge = 2_562_047_788_015_216_i64;
    let new_key = json!({ "account_id": "acct", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read", "withdraw"],
        "ip_allowlist": ["203.0.113.0/24"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "treasury", "sensitive_grant_hours": huge });
    let (s, v) = api.call(Method::POST, "/v1/keys", Some(&api.admin), Some(new_key)).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("sensitive_grant_hours")), "{v}");
    let new_key = json!({ "account_id": "acct", "algorithm": {"kind": "hmac"}, "scheme": "binance", "scopes": ["read"],
        "ip_allowlist": ["203.0.113.0/24"], "terms_version": "2026-05", "terms_accepted_at": "2026-05-01T00:00:00Z", "terms_channel": "web", "purpose": "treasury" });
    let (s, issued) = api.call(Method::POST, "/v1/keys", Some(&api.admin), Some(new_key)).await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let ak = issued["key"]["access_key"].as_str().unwrap().to_owned();
    for hours in [huge, i64::MAX, i64::MIN, 0, -1] {
        let grant = json!({ "scope": "withdraw", "hours": hours, "reason": "treasury sweep" });
        let (s, v) = api.call(Method::POST, &format!("/v1/keys/{ak}/grants"), Some(&api.admin), Some(grant)).await;
        assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("hours")), "{hours}: {v}");
    }
    // The writer is still writing: a revocation goes through.
    let (s, v) = api
        .call(Method::POST, &format!("/v1/keys/{ak}/revoke"), Some(&api.admin), Some(json!({ "reason": "done" })))
        .await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("revoked")), "{v}");
}

#[tokio::test]
async fn health_and_readiness_fail_once_the_writer_stops() {
    let api = start().await;
    for path in ["/healthz", "/readyz"] {
        let (s, v) = api.call(Method::GET, path, None, None).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")), "{path}: {v}");
    }
    let store = api.store.clone();
    tokio::task::spawn_blocking(move || store.close()).await.unwrap();
    for path in ["/healthz", "/readyz"] {
        let (s, v) = api.call(Method::GET, path, None, None).await;
        assert_eq!((s, v["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("writer_stopped")), "{path}: {v}");
    }
}

/// An empty batch was acknowledged (202 / 200 with nothing taken), hiding a producer's loss.
#[tokio::test]
async fn an_empty_ndjson_batch_is_a_precise_400() {
    let api = start().await;
    for (path, ct) in [("/v1/events", "application/x-ndjson"), ("/v1/keys/import", "application/x-ndjson")] {
        for body in ["", "\n  \n"] {
            let resp = api
                .http
                .post(format!("{}{path}", api.base))
                .bearer_auth(&api.admin)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body:?}: {v}");
            assert!(v["error"]["message"].as_str().unwrap().contains("empty"), "{path}: {v}");
        }
    }
}

/// `/metrics` always answered OpenMetrics, which `promtool check metrics` rejects on a plain
/// scrape: now OpenMetrics only when asked for, Prometheus text 0.0.4 otherwise.
#[tokio::test]
async fn metrics_negotiate_openmetrics_by_accept() {
    let api = start().await;
    let get = |accept: Option<&'static str>| {
        let mut r = api.http.get(format!("{}/metrics", api.base));
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        r.send()
    };
    let plain = get(None).await.unwrap();
    assert_eq!(plain.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = plain.text().await.unwrap();
    assert!(!text.contains("# EOF"), "{text}");
    assert!(text.contains("# TYPE keysentinel_events_shed_total counter"), "{text}");
    assert!(text.contains("keysentinel_events_shed_total 0"), "{text}");

    let om = get(Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")).await.unwrap();
    assert!(om.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = om.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert!(text.contains("# TYPE keysentinel_events_shed counter"), "{text}");
}
