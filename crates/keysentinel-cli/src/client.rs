//! The admin-API client behind the CLI's remote commands.

use crate::exit::{Exit, Failure};
use reqwest::blocking::{Client as Http, RequestBuilder};
use reqwest::StatusCode;
use serde_json::Value;

pub struct Client {
    base: String,
    token: Option<String>,
    http: Http,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = Http::builder().timeout(std::time::Duration::from_secs(120)).build()?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), token, http })
    }

    fn send(&self, req: RequestBuilder) -> anyhow::Result<Value> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req.send().map_err(|e| {
            Failure::new(
                Exit::Unreachable,
                format!("cannot reach keysentinel at {}: {e}\n(is `keysentinel serve` running? set --server or KEYSENTINEL_URL)", self.base),
            )
        })?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        let err = &body["error"];
        let mut message = format!(
            "{} ({})",
            err["message"].as_str().unwrap_or("request failed"),
            err["code"].as_str().unwrap_or("error")
        );
        if let Some(rule) = err["rule"].as_str() {
            message = format!(
                "refused by policy rule {rule} (policy {}): {}",
                err["policy_version"].as_str().unwrap_or("?"),
                err["message"].as_str().unwrap_or_default()
            );
        }
        let exit = match status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Exit::Invalid
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Exit::Denied,
            StatusCode::NOT_FOUND => Exit::NotFound,
            StatusCode::CONFLICT => Exit::Conflict,
            StatusCode::UNPROCESSABLE_ENTITY => Exit::Policy,
            _ => Exit::Failure,
        };
        Err(Failure::new(exit, message).into())
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
    }

    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    pub fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(body))
    }

    /// POSTs `body` as `content_type` (CSV, NDJSON).
    pub fn post_text(
        &self,
        path: &str,
        query: &[(&str, String)],
        content_type: &str,
        body: String,
    ) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .query(query)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body),
        )
    }

    pub fn post_ndjson(&self, path: &str, query: &[(&str, String)], body: String) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .query(query)
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body),
        )
    }
}

/// Percent-encodes one path segment (imported access keys may hold '/', '+', '=').
pub fn seg(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
