//! Human-readable output; `--json` prints the API's JSON instead.

use serde_json::Value;

pub fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            if items.is_empty() {
                "-".into()
            } else {
                items.iter().map(s).collect::<Vec<_>>().join(",")
            }
        }
        other => other.to_string(),
    }
}

/// Prints rows under headers, columns padded to their widest cell.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

/// A table of a JSON array's items: one column per (header, field), each cell the field as text.
pub fn columns(list: &Value, columns: &[(&str, &str)]) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|item| columns.iter().map(|(_, field)| s(&item[*field])).collect())
        .collect();
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    table(&headers, &rows);
}

pub fn keys(list: &Value) {
    columns(
        list,
        &[
            ("ACCESS KEY", "access_key"),
            ("ACCOUNT", "account_id"),
            ("STATUS", "status"),
            ("SCOPES", "scopes"),
            ("EXPIRES", "expires_at"),
            ("ORIGIN", "origin"),
        ],
    );
}

pub fn key(k: &Value) {
    for field in [
        "access_key",
        "account_id",
        "status",
        "status_reason",
        "status_changed_by",
        "scopes",
        "ip_allowlist",
        "vendor_id",
        "purpose",
        "purpose_note",
        "terms_version",
        "origin",
        "created_at",
        "expires_at",
        "rotated_from",
        "rotated_to",
    ] {
        println!("{field:<18} {}", s(&k[field]));
    }
    println!("{:<18} {}", "algorithm", s(&k["algorithm"]["kind"]));
    let terms = &k["terms_acceptance"];
    if terms.is_object() {
        println!(
            "{:<18} {} at {} ({})",
            "terms_accepted",
            s(&terms["version"]),
            s(&terms["accepted_at"]),
            s(&terms["channel"])
        );
    }
    let approval = &k["approval"];
    if approval.is_object() {
        println!(
            "{:<18} {} (asked by {}, approved by {} at {})",
            "approval",
            s(&approval["needed"]),
            s(&approval["requested_by"]),
            s(&approval["approved_by"]),
            s(&approval["approved_at"])
        );
    }
    let by = &k["operated_by"];
    if by.is_object() {
        println!("{:<18} {} {} ({})", "operated_by", s(&by["kind"]), s(&by["name"]), s(&by["party_id"]));
    }
    if !k["unrestricted_lapse_at"].is_null() {
        println!("{:<18} {} (no IP allowlist)", "lapses_at", s(&k["unrestricted_lapse_at"]));
    }
    if let Some(grants) = k["grants"].as_array() {
        for g in grants {
            println!(
                "{:<18} {} {} (requested by {}, approved by {}, until {})",
                "grant",
                s(&g["scope"]),
                s(&g["status"]),
                s(&g["requested_by"]),
                s(&g["approved_by"]),
                s(&g["expires_at"])
            );
        }
    }
}

pub fn accounts(list: &Value) {
    columns(
        list,
        &[
            ("ACCOUNT", "account_id"),
            ("SEGMENT", "segment"),
            ("VERIFICATION", "verification"),
            ("COUNTRIES", "declared_countries"),
            ("PURPOSE", "declared_purpose"),
        ],
    );
}

pub fn account(a: &Value) {
    for field in
        ["account_id", "segment", "verification", "declared_purpose", "declared_countries", "created_at", "updated_at"]
    {
        println!("{field:<20} {}", s(&a[field]));
    }
}

pub fn operators(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|o| {
            vec![
                s(&o["operator_id"]),
                s(&o["role"]),
                if o["disabled"] == Value::Bool(true) { "disabled".into() } else { "enabled".into() },
                s(&o["description"]),
            ]
        })
        .collect();
    table(&["OPERATOR", "ROLE", "STATE", "DESCRIPTION"], &rows);
}

pub fn audit(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let actor = &e["actor"];
            let who = actor["id"].as_str().or(actor["component"].as_str()).or(actor["command"].as_str()).unwrap_or("-");
            vec![s(&e["seq"]), s(&e["ts"]), who.to_owned(), s(&e["action"]), s(&e["target"]), s(&e["reason"])]
        })
        .collect();
    table(&["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "REASON"], &rows);
}
