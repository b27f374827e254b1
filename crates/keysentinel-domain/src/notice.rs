//! Notices to a key's owner: what the response did and what the owner can do, in Korean and
//! English, delivered through an outbox (at least once, retried with back-off, each delivery
//! signed). A notice says only what the owner is entitled to know: the stage, the key, what to
//! do. It never mentions reporting to authorities — tipping off is prohibited.

use crate::ids::{AccessKey, AccountId, VendorId};
use crate::response::{Action, Stage};
use crate::vendor::VendorStatus;
use crate::Timestamp;
use serde::{Deserialize, Serialize};
use time::Duration;

/// Delivery attempts before a notice is given up as failed (and an operator must act).
pub const MAX_ATTEMPTS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The key is used in a way that suggests sharing; it keeps working.
    Warning,
    /// Some of the key's rights (withdrawals, transfers, perhaps trading) are paused.
    Restricted,
    /// The key is suspended until the owner re-verifies.
    Suspended,
    /// The key is revoked for good.
    Revoked,
    /// The key's third-party tool (vendor) is no longer approved: its rights are restricted
    /// (or, under `contain`, only the owner is told).
    VendorRestricted,
    /// The key's third-party tool (vendor) is no longer approved: the key is suspended.
    VendorSuspended,
    /// The key has no IP allowlist and will lapse on a date the key policy set.
    UnrestrictedLapse,
    /// A reinstated key waits for its owner: the one-time code to claim it in the exchange's app.
    KeyClaim,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Warning => "warning",
            NoticeKind::Restricted => "restricted",
            NoticeKind::Suspended => "suspended",
            NoticeKind::Revoked => "revoked",
            NoticeKind::VendorRestricted => "vendor_restricted",
            NoticeKind::VendorSuspended => "vendor_suspended",
            NoticeKind::UnrestrictedLapse => "unrestricted_lapse",
            NoticeKind::KeyClaim => "key_claim",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    Pending,
    Delivered,
    Failed,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
        }
    }
}

/// The text of a notice in one language.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Text {
    pub subject: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Notice {
    pub notice_id: String,
    /// The case the notice is about, or `vendor:<vendor_id>` for a vendor's lapse or suspension.
    pub case_id: String,
    #[schema(value_type = String)]
    pub account_id: AccountId,
    #[schema(value_type = String)]
    pub key_id: AccessKey,
    pub kind: NoticeKind,
    /// The case's stage; none for a vendor's notice (no detection is behind it).
    pub stage: Option<Stage>,
    /// The vendor whose lapse or suspension the notice is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub vendor_id: Option<VendorId>,
    pub ko: Text,
    pub en: Text,
    /// For a `key_claim` notice: the one-time code, sealed under the master key (the outbox
    /// must deliver it, retried, so it cannot be only a hash here; the claim keeps only a hash).
    /// Opened only to deliver it; no operator view shows it opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_code: Option<String>,
    pub status: Delivery,
    pub attempts: u32,
    pub last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String)]
    pub next_attempt_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option", default)]
    #[schema(value_type = Option<String>)]
    pub delivered_at: Option<Timestamp>,
}

/// The key as shown to people: its prefix and last four characters.
fn masked(key: &AccessKey) -> String {
    let s = key.as_str();
    let tail = s.get(s.len().saturating_sub(4)..).unwrap_or("");
    format!("{}…{tail}", s.get(..8).unwrap_or(s))
}

impl Notice {
    /// A new notice, pending delivery now.
    pub fn new(
        notice_id: String,
        case_id: &str,
        account_id: &AccountId,
        key_id: &AccessKey,
        kind: NoticeKind,
        stage: Stage,
        now: Timestamp,
    ) -> Self {
        let key = masked(key_id);
        let (ko, en) = match kind {
            NoticeKind::Warning => (
                Text {
                    subject: format!("[경고] API 키 {key} 의 이용 방식 확인 요청"),
                    body: format!(
                        "고객님의 API 키 {key} 가 고객님 본인이 아닌 다른 사람에 의해 사용되고 있을 가능성이 있는 \
                         이용 방식이 확인되었습니다. API 키를 타인에게 제공·대여·판매하는 것은 이용약관에 따라 \
                         금지되어 있습니다. 본인의 이용이 맞다면 별도 조치는 필요하지 않으며, 그렇지 않다면 즉시 \
                         키를 폐기하고 새 키를 발급받으십시오. 문의 번호: {case_id}"
                    ),
                },
                Text {
                    subject: format!("[Warning] Please check how your API key {key} is used"),
                    body: format!(
                        "Your API key {key} has been used in a way that suggests someone other than you may be using it. \
                         Giving, lending or selling an API key to others is prohibited by the terms of use. If the use is \
                         yours, no action is needed; if not, revoke the key now and issue a new one. Reference: {case_id}"
                    ),
                },
            ),
            NoticeKind::Restricted => (
                Text {
                    subject: format!("[제한] API 키 {key} 의 일부 권한이 중지되었습니다"),
                    body: format!(
                        "고객님의 API 키 {key} 가 고객님 본인이 아닌 다른 사람에 의해 사용되고 있을 가능성이 있어, 확인이 끝날 때까지 출금·이체 등 일부 권한을 중지했습니다. 조회는 계속 가능합니다. 본인의 이용이 맞다면 고객센터를 통해 권한 복구를 신청하실 수 있습니다. 고객님의 자산은 이 조치로 이동되지 않았습니다. 문의 번호: {case_id}"
                    ),
                },
                Text {
                    subject: format!("[Restricted] Some rights of your API key {key} are paused"),
                    body: format!(
                        "Your API key {key} may be used by someone other than you, so some of its rights (withdrawals, transfers, and possibly trading) are paused while we check. Reading your account still works. If the use is yours, you can ask support to restore them. No funds were moved by this action. Reference: {case_id}"
                    ),
                },
            ),
            NoticeKind::Suspended => (
                Text {
                    subject: format!("[정지] API 키 {key} 가 일시 정지되었습니다"),
                    body: format!(
                        "고객님의 API 키 {key} 가 타인에 의한 사용이 의심되어 일시 정지되었습니다. 본인 확인(재인증) \
                         절차를 마치시면 검토 후 키 이용을 다시 신청하실 수 있습니다. 고객님의 자산은 이 조치로 \
                         이동되지 않았습니다. 문의 번호: {case_id}"
                    ),
                },
                Text {
                    subject: format!("[Suspended] Your API key {key} has been suspended"),
                    body: format!(
                        "Your API key {key} has been suspended because it appears to be used by someone other than you. \
                         Once you complete identity re-verification you can ask for access to be restored, which we will \
                         review. No funds were moved by this action. Reference: {case_id}"
                    ),
                },
            ),
            // `Notice::vendor` names the tool and says what was done, `Notice::unrestricted_lapse`
            // the date; a case never sends these, but the texts stay true if one does.
            NoticeKind::VendorRestricted
            | NoticeKind::VendorSuspended
            | NoticeKind::UnrestrictedLapse
            | NoticeKind::KeyClaim => (
                Text {
                    subject: format!("[안내] API 키 {key} 와 연결된 도구의 승인 종료"),
                    body: format!(
                        "고객님의 API 키 {key} 와 연결된 외부 도구가 더 이상 거래소의 승인된 도구가 아니어서 키의 권한이 \
                         제한되었습니다. 고객님의 자산은 이 조치로 이동되지 않았습니다. 문의 번호: {case_id}"
                    ),
                },
                Text {
                    subject: format!("[Notice] The tool linked to your API key {key} is no longer approved"),
                    body: format!(
                        "The third-party tool linked to your API key {key} is no longer approved by the exchange, so the \
                         key's rights are restricted. No funds were moved by this action. Reference: {case_id}"
                    ),
                },
            ),
            NoticeKind::Revoked => (
                Text {
                    subject: format!("[폐기] API 키 {key} 가 폐기되었습니다"),
                    body: format!(
                        "고객님의 API 키 {key} 가 타인에 의한 사용으로 판단되어 영구 폐기되었습니다. 이 키는 다시 \
                         사용할 수 없습니다. 본인 확인(재인증) 후 새 키 발급을 신청하실 수 있으며, 이 결정에 대해 \
                         이의를 제기하실 수 있습니다. 고객님의 자산은 이 조치로 이동되지 않았습니다. 문의 번호: {case_id}"
                    ),
                },
                Text {
                    subject: format!("[Revoked] Your API key {key} has been revoked"),
                    body: format!(
                        "Your API key {key} has been revoked for good because it was found to be used by someone other than \
                         you. It cannot be used again. After identity re-verification you can apply for a new key, and you \
                         may dispute this decision. No funds were moved by this action. Reference: {case_id}"
                    ),
                },
            ),
        };
        Self {
            notice_id,
            case_id: case_id.to_owned(),
            account_id: account_id.clone(),
            key_id: key_id.clone(),
            kind,
            stage: Some(stage),
            vendor_id: None,
            ko,
            en,
            sealed_code: None,
            status: Delivery::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            next_attempt_at: now,
            delivered_at: None,
        }
    }

    /// A notice to the owner of `key_id` that its vendor is no longer approved (`why`: lapsed or
    /// suspended), and what `action` did to the key. It speaks of the tool, never of the owner:
    /// nothing the owner did caused it.
    #[allow(clippy::too_many_arguments)]
    pub fn vendor(
        notice_id: String,
        vendor_id: &VendorId,
        legal_name: &str,
        why: VendorStatus,
        action: Action,
        account_id: &AccountId,
        key_id: &AccessKey,
        now: Timestamp,
    ) -> Self {
        let key = masked(key_id);
        let reference = format!("vendor:{vendor_id}");
        let (why_ko, why_en) = match why {
            VendorStatus::Suspended => ("승인이 중지되어", "has been suspended by the exchange"),
            _ => ("재인증 기한이 지나", "was not recertified in time"),
        };
        let (kind, done_ko, done_en) = match action {
            Action::Suspend => (
                NoticeKind::VendorSuspended,
                "키를 일시 정지했습니다. 다른 승인된 도구를 이용하시거나, 도구 없이 사용할 새 키를 발급받으십시오.",
                "so your key is suspended. Use another approved tool, or issue a new key for use without one.",
            ),
            Action::ReadOnly => (
                NoticeKind::VendorRestricted,
                "키의 거래 권한을 중지했습니다. 조회는 계속 가능합니다. 거래하시려면 새 키를 발급받으십시오.",
                "so your key can no longer trade; it can still read. Issue a new key to trade again.",
            ),
            _ => (
                NoticeKind::VendorRestricted,
                "키는 계속 작동하지만 출금·이체 권한은 부여되지 않습니다. 도구의 접근을 유지할지 검토해 주십시오.",
                "your key keeps working, without withdrawal or transfer rights. Please review whether the tool should keep access.",
            ),
        };
        let ko = Text {
            subject: format!("[안내] API 키 {key} 와 연결된 도구 {legal_name} 의 승인 종료"),
            body: format!(
                "고객님의 API 키 {key} 와 연결된 외부 도구 {legal_name} ({vendor_id}) 의 거래소 {why_ko} 더 이상 승인된 도구가 아닙니다. 이에 따라 {done_ko} 고객님의 자산은 이 조치로 이동되지 않았습니다. 문의 번호: {reference}"
            ),
        };
        let en = Text {
            subject: format!("[Notice] The tool {legal_name} linked to your API key {key} is no longer approved"),
            body: format!(
                "The third-party tool {legal_name} ({vendor_id}) linked to your API key {key} {why_en} and is no longer approved, {done_en} No funds were moved by this action. Reference: {reference}"
            ),
        };
        Self {
            notice_id,
            case_id: reference,
            account_id: account_id.clone(),
            key_id: key_id.clone(),
            kind,
            stage: None,
            vendor_id: Some(vendor_id.clone()),
            ko,
            en,
            sealed_code: None,
            status: Delivery::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            next_attempt_at: now,
            delivered_at: None,
        }
    }

    /// A notice to the owner of `key_id`, which has no IP allowlist, that it lapses at
    /// `lapses_at` (the key policy's `unrestricted_lapse_days`), and how to keep API access: a
    /// new key with an allowlist. `case_id` is `lapse:<key>`.
    pub fn unrestricted_lapse(
        notice_id: String,
        account_id: &AccountId,
        key_id: &AccessKey,
        lapses_at: Timestamp,
        now: Timestamp,
    ) -> Self {
        let key = masked(key_id);
        let reference = format!("lapse:{key_id}");
        let date = lapses_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| lapses_at.unix_timestamp().to_string());
        let ko = Text {
            subject: format!("[안내] IP 제한이 없는 API 키 {key} 가 {date} 에 만료됩니다"),
            body: format!(
                "고객님의 API 키 {key} 에는 접속 IP 제한이 설정되어 있지 않아, 거래소 정책에 따라 {date} 에 만료됩니다. 계속 이용하시려면 IP 제한을 설정한 새 키를 발급받으십시오. 문의 번호: {reference}"
            ),
        };
        let en = Text {
            subject: format!("[Notice] Your API key {key}, which has no IP restriction, lapses on {date}"),
            body: format!(
                "Your API key {key} has no IP allowlist, so under the exchange's policy it lapses on {date}. To keep using the API, issue a new key restricted to your IP addresses. Reference: {reference}"
            ),
        };
        Self {
            notice_id,
            case_id: reference,
            account_id: account_id.clone(),
            key_id: key_id.clone(),
            kind: NoticeKind::UnrestrictedLapse,
            stage: None,
            vendor_id: None,
            ko,
            en,
            sealed_code: None,
            status: Delivery::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            next_attempt_at: now,
            delivered_at: None,
        }
    }

    /// A notice to the owner that their reinstated key `key_id` is ready to claim in the
    /// exchange's app until `expires_at`, with the one-time code (sealed: `sealed_code`; the
    /// texts name where it is, never the code itself).
    pub fn key_claim(
        notice_id: String,
        case_id: &str,
        account_id: &AccountId,
        key_id: &AccessKey,
        sealed_code: String,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Self {
        let key = masked(key_id);
        let until = expires_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| expires_at.unix_timestamp().to_string());
        let ko = Text {
            subject: format!("[안내] 새 API 키 {key} 를 앱에서 받으십시오"),
            body: format!(
                "재인증과 검토가 끝나 새 API 키 {key} 가 준비되었습니다. 거래소 앱에서 이 알림과 함께 전달된 \
                 일회용 코드로 {until} 까지 받으실 수 있습니다. 코드는 누구에게도 알려주지 마십시오. 거래소 \
                 직원도 코드를 묻지 않습니다. 문의 번호: {case_id}"
            ),
        };
        let en = Text {
            subject: format!("[Notice] Collect your new API key {key} in the app"),
            body: format!(
                "Your identity was re-verified and your new API key {key} is ready. Collect it in the exchange's \
                 app with the one-time code delivered with this notice, until {until}. Never share the code: the \
                 exchange's staff will never ask for it. Reference: {case_id}"
            ),
        };
        Self {
            notice_id,
            case_id: case_id.to_owned(),
            account_id: account_id.clone(),
            key_id: key_id.clone(),
            kind: NoticeKind::KeyClaim,
            stage: None,
            vendor_id: None,
            ko,
            en,
            sealed_code: Some(sealed_code),
            status: Delivery::Pending,
            attempts: 0,
            last_error: None,
            created_at: now,
            next_attempt_at: now,
            delivered_at: None,
        }
    }

    pub fn delivered(&mut self, now: Timestamp) {
        self.attempts += 1;
        self.status = Delivery::Delivered;
        self.delivered_at = Some(now);
        self.last_error = None;
    }

    /// A failed attempt: retried after 2^attempts seconds (at most an hour), given up after
    /// `MAX_ATTEMPTS`.
    pub fn attempt_failed(&mut self, error: &str, now: Timestamp) {
        self.attempts += 1;
        self.last_error = Some(error.chars().take(300).collect());
        if self.attempts >= MAX_ATTEMPTS {
            self.status = Delivery::Failed;
        } else {
            self.next_attempt_at = now + Duration::seconds((1i64 << self.attempts.min(12)).min(3600));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_never_mention_reporting_and_back_off_until_they_give_up() {
        let key = AccessKey::parse("ksk_NGOF1b4l7WtHWS36OfnWN06qth1bZc0cufHT").unwrap_or_else(|e| panic!("{e}"));
        let account = AccountId::parse("acct-1").unwrap_or_else(|e| panic!("{e}"));
        let now = time::OffsetDateTime::UNIX_EPOCH;
        for kind in [NoticeKind::Warning, NoticeKind::Restricted, NoticeKind::Suspended, NoticeKind::Revoked] {
            let n = Notice::new("n1".into(), "case-1", &account, &key, kind, Stage::Warn, now);
            let all = format!("{} {} {} {}", n.ko.subject, n.ko.body, n.en.subject, n.en.body);
            for word in ["report", "STR", "SAR", "FIU", "authorit", "신고", "금융정보분석원", "수사"] {
                assert!(!all.contains(word), "{kind:?} mentions {word}: {all}");
            }
            assert!(all.contains("case-1") && all.contains("ksk_NGOF…ufHT") && !all.contains(key.as_str()));
        }
        let vendor = VendorId::parse("tradebot").unwrap_or_else(|e| panic!("{e}"));
        for (why, action) in [
            (VendorStatus::Lapsed, Action::ReadOnly),
            (VendorStatus::Suspended, Action::Suspend),
            (VendorStatus::Lapsed, Action::Contain),
        ] {
            let n = Notice::vendor("n2".into(), &vendor, "Tradebot Inc.", why, action, &account, &key, now);
            let all = format!("{} {} {} {}", n.ko.subject, n.ko.body, n.en.subject, n.en.body);
            for word in ["report", "STR", "SAR", "FIU", "authorit", "신고", "금융정보분석원", "수사", "someone other"]
            {
                assert!(!all.contains(word), "{why:?} {action:?} mentions {word}: {all}");
            }
            assert!(all.contains("vendor:tradebot") && all.contains("Tradebot Inc.") && !all.contains(key.as_str()));
            assert_eq!((n.stage, n.case_id.as_str()), (None, "vendor:tradebot"));
        }
        // Every text an owner reads is prose: no run of spaces left by a wrapped source line.
        let mut texts = vec![Notice::unrestricted_lapse("n3".into(), &account, &key, now, now)];
        texts.push(Notice::key_claim("n4".into(), "case-1", &account, &key, "sealed".into(), now, now));
        for (kind, stage) in [
            (NoticeKind::Warning, Stage::Warn),
            (NoticeKind::Restricted, Stage::Reverify),
            (NoticeKind::Suspended, Stage::Reverify),
            (NoticeKind::Revoked, Stage::Invalidate),
        ] {
            texts.push(Notice::new("n1".into(), "case-1", &account, &key, kind, stage, now));
        }
        for (why, action) in [(VendorStatus::Lapsed, Action::ReadOnly), (VendorStatus::Suspended, Action::Suspend)] {
            texts.push(Notice::vendor("n2".into(), &vendor, "Tradebot Inc.", why, action, &account, &key, now));
        }
        for n in &texts {
            for t in [&n.ko.subject, &n.ko.body, &n.en.subject, &n.en.body] {
                assert!(!t.contains("  "), "{:?}: {t:?}", n.kind);
            }
        }
        let mut n = Notice::new("n1".into(), "case-1", &account, &key, NoticeKind::Warning, Stage::Warn, now);
        n.attempt_failed("503", now);
        assert_eq!((n.status, n.next_attempt_at - now), (Delivery::Pending, Duration::seconds(2)));
        for _ in 1..MAX_ATTEMPTS {
            n.attempt_failed("503", now);
        }
        assert_eq!((n.status, n.attempts), (Delivery::Failed, MAX_ATTEMPTS));
    }
}
