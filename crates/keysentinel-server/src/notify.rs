//! The notifier: delivers queued owner notices to the exchange's notification webhook, signed,
//! at least once, retrying with back-off; every attempt is recorded (and audited) on the notice.
//!
//! Each delivery is a JSON POST with `X-Keysentinel-Signature: t=<unix seconds>,v1=<hex>`, where
//! the hex is HMAC-SHA256 under the shared secret of `"<t>.<body>"` (the scheme Stripe and
//! others use: the receiver recomputes it, compares in constant time and rejects old `t`), and
//! `X-Keysentinel-Notice: <notice id>` so that the receiver can drop a repeat.

use hmac::{Hmac, Mac};
use keysentinel_domain::Notice;
use keysentinel_registry::Registry;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

pub struct Webhook {
    pub url: String,
    pub secret: zeroize::Zeroizing<Vec<u8>>,
}

/// The signature header's value for `body` sent at `t` (Unix seconds).
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    // An HMAC key may be any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What the exchange's notification service receives. A `key_claim` notice carries the owner's
/// one-time code (`claim`), opened here for delivery only: the exchange's app shows it to the
/// owner, who types it back into the app's claim screen.
fn payload(n: &Notice, code: Option<&str>) -> serde_json::Value {
    let mut p = serde_json::json!({
        "notice_id": n.notice_id, "case_id": n.case_id, "account_id": n.account_id, "key_id": n.key_id,
        "kind": n.kind, "stage": n.stage, "created_at": n.created_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "messages": { "ko": n.ko, "en": n.en },
    });
    if let Some(code) = code {
        p["claim"] = serde_json::json!({ "key_id": n.key_id, "code": code });
    }
    p
}

/// Polls the outbox and delivers what is due, one notice at a time, in order.
pub fn spawn_notifier(registry: Arc<Registry>, webhook: Webhook) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the notification client; notices stay queued");
                return;
            }
        };
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            let reg = registry.clone();
            let due = match tokio::task::spawn_blocking(move || reg.due_notices(100)).await {
                Ok(Ok(due)) => due,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "cannot read the notice outbox");
                    continue;
                }
                Err(_) => continue,
            };
            for notice in due {
                let code = registry.notice_code(&notice);
                let body = payload(&notice, code.as_deref().map(|c| c.as_str())).to_string();
                let t = registry.now().unix_timestamp();
                let sent = http
                    .post(&webhook.url)
                    .header("content-type", "application/json")
                    .header("x-keysentinel-signature", signature(&webhook.secret, t, body.as_bytes()))
                    .header("x-keysentinel-notice", &notice.notice_id)
                    .body(body)
                    .send()
                    .await;
                let error = match sent {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("webhook answered {}", r.status())),
                    // Without the URL: it may carry credentials.
                    Err(e) => Some(format!("webhook unreachable: {}", e.without_url())),
                };
                match registry.notice_attempted(notice.notice_id.clone(), error).await {
                    Ok(n) => {
                        tracing::info!(notice_id = %n.notice_id, status = n.status.as_str(), attempts = n.attempts, "owner notice")
                    }
                    Err(e) => {
                        tracing::error!(notice_id = %notice.notice_id, error = %e, "cannot record a notice delivery")
                    }
                }
            }
        }
    })
}
