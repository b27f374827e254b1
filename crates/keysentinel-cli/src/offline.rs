//! Commands that work on files, not on the server: audit verification and export, proof
//! checking, master-key tools.

use crate::client::Client;
use crate::exit::{Exit, Failure};
use crate::{local, output};
use anyhow::Context;
use clap::Subcommand;
use keysentinel_audit::proof::InclusionProof;
use keysentinel_audit::LogVerifier;
use keysentinel_sqlite::{export_checkpoint, verify_file, ExportedCheckpoint, FileVerifyError, FileVerifyOptions};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Re-verify the whole log in the database file (offline; the server may be running).
    Verify {
        /// Database file (default: DATA_DIR/keysentinel.db).
        #[arg(long)]
        db: Option<PathBuf>,
        /// Pin the log's verifier key (`name+id+key`, or @FILE) instead of trusting the file's.
        #[arg(long)]
        log_key: Option<String>,
        /// An exported checkpoint the log must still contain (repeatable).
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
    },
    /// Export the newest signed checkpoint with the log's verifier key (offline), to keep elsewhere.
    Export {
        #[arg(long)]
        db: Option<PathBuf>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show audit entries (from the server).
    List {
        #[arg(long, default_value_t = 0)]
        from: u64,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Fetch an inclusion proof for one entry (from the server).
    Proof { seq: u64 },
    /// Check an inclusion proof offline against a pinned verifier key.
    VerifyProof {
        file: PathBuf,
        /// The log's verifier key (`name+id+key`, or @FILE).
        #[arg(long)]
        log_key: String,
        /// The log's origin line (as exported).
        #[arg(long)]
        origin: String,
    },
    /// Check an evidence pack offline: every audit entry's inclusion proof, the checkpoint's
    /// signature, and the body against the digest the log recorded at export.
    VerifyPack {
        file: PathBuf,
        /// Pin the log's verifier key (`name+id+key`, or @FILE); otherwise the pack's own key is
        /// used, which proves consistency, not origin.
        #[arg(long)]
        log_key: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum SecretsCmd {
    /// Print a new random master key (base64) for KEYSENTINEL_MASTER_KEY.
    NewMasterKey,
    /// Re-encrypt every stored secret under the current master key (server stopped). Load the
    /// old key with KEYSENTINEL_MASTER_KEY_PREVIOUS and the new one with KEYSENTINEL_MASTER_KEY.
    Rewrap,
}

/// A value given inline, or `@FILE` read (bounded) and trimmed.
pub fn value_or_file(v: &str) -> anyhow::Result<String> {
    match v.strip_prefix('@') {
        Some(p) => Ok(read_arg_file(p)?.trim().to_owned()),
        None => Ok(v.to_owned()),
    }
}

/// The largest `@FILE` argument read (keys, reasons, policies are far smaller).
pub const ARG_FILE_LIMIT: u64 = 1 << 20;

/// Reads an `@FILE` argument, refusing one larger than [`ARG_FILE_LIMIT`] (`@/dev/zero` would
/// otherwise never return).
pub fn read_arg_file(path: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {path}"))?;
    let mut bytes = Vec::new();
    file.take(ARG_FILE_LIMIT + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {path}"))?;
    if bytes.len() as u64 > ARG_FILE_LIMIT {
        return Err(Failure::new(Exit::Invalid, format!("{path} is larger than {} KiB", ARG_FILE_LIMIT / 1024)).into());
    }
    String::from_utf8(bytes).map_err(|_| Failure::new(Exit::Invalid, format!("{path} is not UTF-8 text")).into())
}

fn db_path(data_dir: &Path, db: &Option<PathBuf>) -> PathBuf {
    db.clone().unwrap_or_else(|| data_dir.join(local::DB_FILE))
}

/// Reads an exported checkpoint: the JSON written by `audit export`, or a bare note.
fn read_checkpoint(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(match serde_json::from_str::<ExportedCheckpoint>(&text) {
        Ok(e) => e.checkpoint,
        Err(_) => text,
    })
}

pub fn audit(
    data_dir: &Path,
    as_json: bool,
    cmd: &AuditCmd,
    client: impl Fn() -> anyhow::Result<Client>,
) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Verify { db, log_key, checkpoints } => {
            let path = db_path(data_dir, db);
            let options = FileVerifyOptions {
                pinned_verifier: log_key.as_deref().map(value_or_file).transpose()?,
                external: checkpoints.iter().map(|p| read_checkpoint(p)).collect::<anyhow::Result<_>>()?,
            };
            match verify_file(&path, &options) {
                Ok((report, rows)) => {
                    if as_json {
                        output::json(
                            &json!({ "ok": true, "entries": report.entries, "checkpoints_checked": report.checkpoints,
                            "root": hex_root(&report.root), "pinned_key": options.pinned_verifier.is_some(),
                            "rows_checked": rows.rows, "rows_bound": rows.bound }),
                        );
                    } else {
                        println!(
                            "audit log OK: {} entries, {} signed checkpoints verified, root {}; {} state rows match their history",
                            report.entries,
                            report.checkpoints,
                            hex_root(&report.root),
                            rows.rows
                        );
                        if !rows.bound && rows.rows > 0 {
                            println!(
                                "note: this log predates row digests; the next start records a baseline of the rows"
                            );
                        }
                        if options.pinned_verifier.is_none() {
                            println!("note: verified against the key recorded in the file; pass --log-key to pin it");
                        }
                    }
                    Ok(())
                }
                Err(FileVerifyError::Log(e)) => {
                    if as_json {
                        output::json(
                            &json!({ "ok": false, "first_bad_entry": e.first_bad_entry(), "error": e.to_string() }),
                        );
                    }
                    Err(Failure::new(Exit::AuditFailed, format!("audit log verification FAILED: {e}")).into())
                }
                Err(FileVerifyError::State(e)) => {
                    if as_json {
                        let (table, id) = e.row();
                        output::json(&json!({ "ok": false, "table": table, "row": id, "error": e.to_string() }));
                    }
                    Err(Failure::new(Exit::AuditFailed, format!("state verification FAILED: {e}")).into())
                }
                Err(FileVerifyError::Setup(m)) => Err(Failure::new(Exit::Usage, m).into()),
                Err(FileVerifyError::Store(e)) => {
                    Err(Failure::new(Exit::AuditFailed, format!("audit log verification FAILED: {e}")).into())
                }
            }
        }
        AuditCmd::Export { db, out } => {
            let exported =
                export_checkpoint(&db_path(data_dir, db)).map_err(|e| Failure::new(Exit::Failure, e.to_string()))?;
            let text = serde_json::to_string_pretty(&exported)? + "\n";
            match out {
                Some(p) => {
                    std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
                    eprintln!("checkpoint of {} entries written to {}", exported.size, p.display());
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        AuditCmd::List { from, limit } => {
            let v = client()?.get("/v1/audit/entries", &[("from", from.to_string()), ("limit", limit.to_string())])?;
            if as_json {
                output::json(&v)
            } else {
                output::audit(&v)
            }
            Ok(())
        }
        AuditCmd::Proof { seq } => {
            output::json(&client()?.get(&format!("/v1/audit/entries/{seq}/proof"), &[])?);
            Ok(())
        }
        AuditCmd::VerifyPack { file, log_key } => verify_pack(file, log_key.as_deref(), as_json),
        AuditCmd::VerifyProof { file, log_key, origin } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
            let proof: InclusionProof = serde_json::from_str(&text)
                .map_err(|e| Failure::new(Exit::Invalid, format!("not an inclusion proof: {e}")))?;
            let verifier =
                LogVerifier::parse(&value_or_file(log_key)?).map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
            match proof.verify(&verifier, origin) {
                Ok(entry) => {
                    println!(
                        "proof OK: entry {} ({} on {}) is in the signed log of {} entries",
                        entry.seq, entry.action, entry.target, proof.tree_size
                    );
                    Ok(())
                }
                Err(e) => Err(Failure::new(Exit::AuditFailed, format!("proof verification FAILED: {e}")).into()),
            }
        }
    }
}

fn verify_pack(file: &Path, log_key: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    // A pinned key is the caller's input: a bad one is a usage error. Anything wrong with the
    // pack itself — any byte of it — is a failed verification, exit 8.
    let pinned = log_key.map(value_or_file).transpose()?;
    let pinned_verifier = pinned
        .as_deref()
        .map(LogVerifier::parse)
        .transpose()
        .map_err(|e| Failure::new(Exit::Invalid, format!("--log-key: {e}")))?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    match check_pack(&bytes, pinned.as_deref(), pinned_verifier.as_ref()) {
        Ok(summary) => {
            if as_json {
                output::json(&summary);
            } else {
                if pinned.is_none() {
                    eprintln!(
                        "note: using the pack's own log key; pin yours with --log-key to check where it came from"
                    );
                }
                println!(
                    "evidence pack OK: case {}, {} audit entries proven in the signed log of {} entries; body digest {} recorded in entry {}",
                    summary["case_id"].as_str().unwrap_or_default(),
                    summary["entries"],
                    summary["tree_size"],
                    summary["digest"].as_str().unwrap_or_default(),
                    summary["export_entry"]
                );
            }
            Ok(())
        }
        Err(why) => {
            if as_json {
                output::json(&json!({ "ok": false, "error": why }));
            }
            Err(Failure::new(Exit::AuditFailed, format!("evidence pack FAILED: {why}")).into())
        }
    }
}

fn check_pack(bytes: &[u8], pinned: Option<&str>, pinned_verifier: Option<&LogVerifier>) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text (changed?)".to_owned())?;
    let pack: keysentinel_registry::EvidencePack =
        serde_json::from_str(text).map_err(|e| format!("not an evidence pack: {e}"))?;
    if pack.format != keysentinel_registry::PACK_FORMAT {
        return Err(format!("unknown format {:?}", pack.format));
    }
    let own;
    let verifier = match (pinned, pinned_verifier) {
        (Some(key), Some(v)) => {
            // The pack's own statement of its key must be the pinned one, too: a pack that
            // names another key was changed (or comes from another log).
            if pack.log_verifier.trim() != key.trim() {
                return Err("the pack names a log key other than the pinned one (changed, or from another log)".into());
            }
            v
        }
        _ => {
            own = LogVerifier::parse(&pack.log_verifier).map_err(|e| format!("the pack's log key: {e}"))?;
            &own
        }
    };
    let export = pack.export.verify(verifier, &pack.log_origin).map_err(|e| format!("export entry: {e}"))?;
    let case_id = pack.body["case"]["case_id"].as_str().unwrap_or_default().to_owned();
    if export.action != "evidence_pack.export" || export.target != case_id {
        return Err(format!("entry {} does not record the export of case {case_id}", export.seq));
    }
    let digest = keysentinel_registry::body_digest(&pack.body);
    if export.details["digest"].as_str() != Some(digest.as_str()) || digest != pack.digest {
        return Err("the body does not match the digest recorded in the log (changed after export)".into());
    }
    let listed: Vec<u64> =
        pack.body["audit_seqs"].as_array().into_iter().flatten().filter_map(|v| v.as_u64()).collect();
    let proven: Vec<u64> = pack.entries.iter().map(|p| p.seq).collect();
    if listed != proven {
        return Err(format!("the body lists entries {listed:?} but the pack proves {proven:?}"));
    }
    for p in &pack.entries {
        p.verify(verifier, &pack.log_origin).map_err(|e| format!("entry {}: {e}", p.seq))?;
    }
    Ok(json!({ "ok": true, "case_id": case_id, "entries": pack.entries.len(), "tree_size": pack.export.tree_size,
        "digest": digest, "export_entry": export.seq, "pinned_key": pinned.is_some() }))
}

fn hex_root(root: &[u8; 32]) -> String {
    root.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn secrets(data_dir: &Path, as_json: bool, cmd: &SecretsCmd) -> anyhow::Result<()> {
    match cmd {
        SecretsCmd::NewMasterKey => {
            println!("{}", keysentinel_secrets::MasterKey::generate().to_base64().as_str());
            Ok(())
        }
        SecretsCmd::Rewrap => {
            if !data_dir.join(local::DB_FILE).exists() {
                return Err(Failure::new(Exit::Usage, format!("no store in {}", data_dir.display())).into());
            }
            let opened = local::open(data_dir, None)?;
            let n =
                opened.registry.rewrap_secrets(keysentinel_audit::Actor::Local { command: "secrets rewrap".into() })?;
            opened.store.close();
            if as_json {
                output::json(&json!({ "rewrapped": n }));
            } else {
                println!(
                    "rewrapped {n} sealed values under the current master key; the previous key is no longer needed"
                );
            }
            Ok(())
        }
    }
}
