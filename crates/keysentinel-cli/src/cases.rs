//! `keysentinel cases`: an analyst's work on cases from the command line, over the admin API
//! (`/v1/cases`, docs/response.md) — the same calls, roles and audit entries as the API.

use crate::client::{seg, Client};
use crate::output;
use clap::Subcommand;
use serde_json::{json, Value};

#[derive(Subcommand)]
pub enum CasesCmd {
    /// Cases, newest first; with --overdue, the SLA breaches, most overdue first.
    List {
        #[arg(long, value_parser = ["open", "awaiting_decision", "closed"])]
        status: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        account: Option<String>,
        #[arg(long)]
        overdue: bool,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// One case with its evidence, history and the owner's answers.
    Show { case_id: String },
    /// The accounts linked to the case's key, each with its own cases.
    Related { case_id: String },
    /// The notices sent to the owner for the case.
    Notices { case_id: String },
    /// Take the action the policy queued for an analyst.
    Approve {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    /// Decline the queued action; the case stays open.
    Dismiss {
        case_id: String,
        #[arg(long)]
        reason: String,
    },
    Assign {
        case_id: String,
        /// The operator who works the case.
        operator: String,
        #[arg(long)]
        reason: String,
    },
    Note {
        case_id: String,
        text: String,
        #[arg(long)]
        reason: String,
    },
    /// Close the case: `false_positive` also teaches detection that what the case saw is the
    /// owner's.
    Close {
        case_id: String,
        #[arg(long, value_parser = ["confirmed_sharing", "false_positive", "owner_reverified"])]
        resolution: String,
        #[arg(long)]
        reason: String,
    },
    /// Take an action on the key now, in the case's name.
    Restrict {
        case_id: String,
        #[arg(long, value_parser = ["contain", "read_only", "suspend", "revoke"])]
        action: String,
        #[arg(long)]
        reason: String,
    },
    /// Preserve the key's logs while the hold stands.
    Hold {
        case_id: String,
        text: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift the hold (compliance).
    ReleaseHold {
        case_id: String,
        text: String,
        #[arg(long)]
        reason: String,
    },
    /// The playbook's review of the linked accounts: which were looked at, what was found.
    ReviewRelated {
        case_id: String,
        text: String,
        #[arg(long)]
        reason: String,
    },
    /// The playbook's decision on enhanced due diligence of the customer.
    DueDiligence {
        case_id: String,
        text: String,
        #[arg(long)]
        reason: String,
    },
    /// The owner disputes the decision (answered with an evidence pack).
    Dispute {
        case_id: String,
        text: String,
        #[arg(long)]
        reason: String,
    },
    /// Record the owner's answer to the case's notice, as the customer channel received it.
    Answer {
        case_id: String,
        /// The owner's words.
        text: String,
        #[arg(long, value_parser = ["app", "web", "email", "phone", "branch"])]
        channel: String,
        /// The owner says the access the case names was theirs.
        #[arg(long)]
        confirms: bool,
    },
}

pub fn run(c: &Client, json: bool, cmd: &CasesCmd) -> anyhow::Result<()> {
    let print = |v: &Value, human: fn(&Value)| if json { output::json(v) } else { human(v) };
    let path = |id: &str, rest: &str| format!("/v1/cases/{}{rest}", seg(id));
    let step = |id: &str, command: Value, reason: &str| -> anyhow::Result<()> {
        let mut body = command;
        body["reason"] = json!(reason);
        print(&c.post(&path(id, "/commands"), &body)?, case);
        Ok(())
    };
    match cmd {
        CasesCmd::List { status, key, account, overdue, limit } => {
            let mut q = vec![("limit", limit.to_string())];
            for (name, value) in [("status", status), ("key_id", key), ("account_id", account)] {
                if let Some(v) = value {
                    q.push((name, v.clone()));
                }
            }
            if *overdue {
                q.push(("overdue", "true".into()));
            }
            print(&c.get("/v1/cases", &q)?, cases);
        }
        CasesCmd::Show { case_id } => print(&c.get(&path(case_id, ""), &[])?, case),
        CasesCmd::Related { case_id } => print(&c.get(&path(case_id, "/related"), &[])?, output::json),
        CasesCmd::Notices { case_id } => print(&c.get(&path(case_id, "/notices"), &[])?, output::json),
        CasesCmd::Approve { case_id, reason } => step(case_id, json!({ "command": "approve" }), reason)?,
        CasesCmd::Dismiss { case_id, reason } => step(case_id, json!({ "command": "dismiss" }), reason)?,
        CasesCmd::Assign { case_id, operator, reason } => {
            step(case_id, json!({ "command": "assign", "operator_id": operator }), reason)?
        }
        CasesCmd::Note { case_id, text, reason } => step(case_id, json!({ "command": "note", "text": text }), reason)?,
        CasesCmd::Close { case_id, resolution, reason } => {
            step(case_id, json!({ "command": "close", "resolution": resolution }), reason)?
        }
        CasesCmd::Restrict { case_id, action, reason } => {
            step(case_id, json!({ "command": "restrict", "action": action }), reason)?
        }
        CasesCmd::Hold { case_id, text, reason } => step(case_id, json!({ "command": "hold", "text": text }), reason)?,
        CasesCmd::ReleaseHold { case_id, text, reason } => {
            step(case_id, json!({ "command": "release_hold", "text": text }), reason)?
        }
        CasesCmd::ReviewRelated { case_id, text, reason } => {
            step(case_id, json!({ "command": "review_related", "text": text }), reason)?
        }
        CasesCmd::DueDiligence { case_id, text, reason } => {
            step(case_id, json!({ "command": "due_diligence", "text": text }), reason)?
        }
        CasesCmd::Dispute { case_id, text, reason } => {
            step(case_id, json!({ "command": "dispute", "text": text }), reason)?
        }
        CasesCmd::Answer { case_id, text, channel, confirms } => {
            let body = json!({ "text": text, "channel": channel, "confirms": confirms });
            print(&c.post(&path(case_id, "/answer"), &body)?, case);
        }
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn cases(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            vec![
                text(&c["case_id"]),
                text(&c["key_id"]),
                text(&c["account_id"]),
                text(&c["stage"]),
                text(&c["status"]),
                c["pending_action"].as_str().unwrap_or("-").to_owned(),
                text(&c["assignee"]),
                text(&c["due_at"]),
            ]
        })
        .collect();
    output::table(&["CASE", "KEY", "ACCOUNT", "STAGE", "STATUS", "PENDING", "ASSIGNEE", "DUE"], &rows);
}

fn case(c: &Value) {
    for field in [
        "case_id",
        "key_id",
        "account_id",
        "segment",
        "status",
        "stage",
        "risk",
        "pending_action",
        "assignee",
        "due_at",
    ] {
        println!("{field:<16} {}", text(&c[field]));
    }
    if let Some(held) = c["held"].as_object() {
        println!("{:<16} {} until {}", "held", text(&held["stage"]), text(&held["until"]));
    }
    for s in c["suspicions"].as_array().map(|a| a.as_slice()).unwrap_or_default() {
        println!("\n{} {} (risk {})", text(&s["at"]), text(&s["stage"]), text(&s["risk"]));
        for f in s["findings"].as_array().map(|a| a.as_slice()).unwrap_or_default() {
            println!("  {:<32} {}", text(&f["indicator"]), text(&f["evidence"]));
        }
    }
    let history = c["history"].as_array().map(|a| a.as_slice()).unwrap_or_default();
    if !history.is_empty() {
        println!("\nhistory");
        for h in history {
            println!("  {} {:<16} {} {}", text(&h["at"]), text(&h["what"]), text(&h["by"]), text(&h["detail"]));
        }
    }
    for a in c["answers"].as_array().map(|a| a.as_slice()).unwrap_or_default() {
        println!("\nowner answered ({}): {}", text(&a["channel"]), text(&a["text"]));
    }
}
