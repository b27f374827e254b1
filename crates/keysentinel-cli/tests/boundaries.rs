//! The trust boundaries of a running `serve`, tried from outside: a role that may not call an
//! endpoint learns nothing from its input parser.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::blocking::Client;
use serde_json::Value;

/// Every operation of the admin API that takes a bearer token, from the served openapi.json:
/// (method, path template, request body's content type).
fn authenticated_operations(url: &str) -> Vec<(String, String, Option<String>)> {
    let doc: Value = Client::new().get(format!("{url}/openapi.json")).send().unwrap().json().unwrap();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            // forward-auth takes the gateway's token in its own header (tested with the gateways).
            if op.get("security").is_none() || path == "/v1/verify/forward-auth" {
                continue;
            }
            let content = op["requestBody"]["content"].as_object().and_then(|c| c.keys().next().cloned());
            ops.push((method.to_uppercase(), path.clone(), content));
        }
    }
    assert!(ops.len() >= 40, "the admin API lists its operations: {}", ops.len());
    ops
}

/// The operation with malformed inputs: every path parameter `x`, a query whose `limit` is not a
/// number and which carries an unknown parameter, and a body its parser refuses.
fn malformed(
    http: &Client,
    url: &str,
    method: &str,
    path: &str,
    content: &Option<String>,
) -> reqwest::blocking::RequestBuilder {
    let mut concrete = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => in_param = true,
            '}' => {
                in_param = false;
                concrete.push('x');
            }
            _ if in_param => {}
            _ => concrete.push(c),
        }
    }
    let target = format!("{url}{concrete}?limit=not-a-number&no_such_parameter=1");
    let req = http.request(method.parse().unwrap(), target);
    match content.as_deref() {
        Some("application/json") => req.header("content-type", "application/json").body("{\"malformed"),
        Some(other) => req.header("content-type", other).body(vec![0xff, 0xfe, b'\n']),
        None => req,
    }
}

#[test]
fn a_role_that_may_not_call_an_endpoint_gets_403_whatever_it_sends_and_no_token_gets_401() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = serve_with(&data, &["--no-detection"]);
    let u = server.url.clone();
    let token = |name: &str, role: &str| {
        ok_json(&data, &u, &["operators", "create", name, "--role", role])["token"].as_str().unwrap().to_owned()
    };
    let gateway = token("gw-1", "gateway");
    let auditor = token("audit-1", "auditor");
    let http = Client::new();
    // What each role may call (domain/src/operator.rs): everything else must be 403 before its
    // inputs are looked at.
    let gateway_may = |m: &str, p: &str| {
        matches!((m, p), ("POST", "/v1/verify") | ("POST", "/v1/events") | ("GET", "/v1/operators/me"))
    };
    let auditor_may = |m: &str, p: &str| {
        (m == "GET" && !matches!(p, "/v1/operators")) || (m == "POST" && p == "/v1/cases/{case_id}/evidence-pack")
    };
    let mut checked = 0;
    for (method, path, content) in authenticated_operations(&u) {
        let r = malformed(&http, &u, &method, &path, &content).send().unwrap();
        assert_eq!(r.status(), 401, "{method} {path} without a token");

        for (role, token, may) in
            [("gateway", &gateway, &gateway_may as &dyn Fn(&str, &str) -> bool), ("auditor", &auditor, &auditor_may)]
        {
            let r = malformed(&http, &u, &method, &path, &content).bearer_auth(token).send().unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().unwrap_or(Value::Null);
            if may(&method, &path) {
                assert!(
                    ![401, 403].contains(&status) && status < 500,
                    "{role} may call {method} {path}; its malformed input is judged: {status} {body}"
                );
            } else {
                assert_eq!(status, 403, "{role} may not call {method} {path}, whatever it sends: {body}");
                assert_eq!(body["error"]["code"], "forbidden", "{method} {path}: {body}");
                checked += 1;
            }
        }
    }
    assert!(checked >= 50, "refusals checked: {checked}");
}
