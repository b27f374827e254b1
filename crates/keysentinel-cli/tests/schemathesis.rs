//! A bounded schemathesis pass against the real server's own openapi.json: every operation is
//! called with generated valid and invalid inputs (a fixed budget and seed), with real tokens of
//! the roles that may call it, and fails on any 5xx and on any answer the document does not
//! describe (status, content type, body schema).

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gateways::venv_bin;
use common::*;

/// Examples per operation and phase, and the seed: bounded and reproducible.
const EXAMPLES: &str = "20";
const SEED: &str = "20261207";

#[test]
fn the_running_server_answers_as_its_openapi_document_says() {
    let Some(schemathesis) = venv_bin("schemathesis") else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let second = init_two_admins(&data);
    // With detection, as a node runs by default (a node without it answers /v1/decisions and
    // /v1/events 503 `detection_disabled`, as documented).
    let server = serve(&data);
    let u = server.url.clone();
    let admin = std::fs::read_to_string(data.join("admin.token")).unwrap().trim().to_owned();
    let gateway = operator_token(&data, &u, &second, "gw-1", "gateway");
    let compliance = operator_token(&data, &u, &second, "comp-1", "compliance");
    // Forward-auth takes the gateway's token in its own header.
    let gateway_header = format!("X-Keysentinel-Token: {gateway}");
    // Something to find: an account and a key, so lookups by id can also succeed.
    ok_json(&data, &u, &["accounts", "create", "acct-1", "--segment", "retail", "--verification", "verified"]);
    create_key(&data, &u, "binance", "acct-1", "203.0.113.0/24");

    // Each role on the operations it may call: the gateway verifies and sends events, the
    // compliance officer reports, the admin does the rest.
    let passes: [(&str, &str, &[&str]); 3] = [
        ("admin", &admin, &["--exclude-tag", "gateway", "--exclude-tag", "reporting", "--exclude-path", "/v1/events"]),
        (
            "gateway",
            &gateway,
            &[
                "--include-tag",
                "gateway",
                "--include-path",
                "/v1/events",
                "--include-tag",
                "service",
                "--header",
                &gateway_header,
            ],
        ),
        ("compliance", &compliance, &["--include-tag", "reporting"]),
    ];
    for (role, token, filter) in passes {
        let report = dir.path().join(format!("{role}.junit.xml"));
        let out = std::process::Command::new(&schemathesis)
            .args(["run", &format!("{u}/openapi.json"), "--url", &u])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            .args(["--phases", "examples,coverage,fuzzing", "--max-examples", EXAMPLES, "--seed", SEED])
            .args(["--generation-database", "none", "--workers", "1", "--request-timeout", "10", "--no-color"])
            .args(["--report", "junit", "--report-junit-path"])
            .arg(&report)
            .args(filter)
            // NDJSON bodies (key imports, event batches): schemathesis_hooks.py beside this file.
            .env("PYTHONPATH", env!("CARGO_MANIFEST_DIR").to_owned() + "/tests")
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            // Its own files (`.schemathesis/`) go to the test's directory, not the source tree.
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis found answers the document does not describe ({role}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
