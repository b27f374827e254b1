//! `keysentinel audit verify` on a database file: read-only, and needs no master key.

use crate::expected::Expected;
use crate::state::{StateChecker, StateReport};
use crate::{db_err, open_connection, ConnMeta};
use keysentinel_audit::{Checkpoint, LogAuditor, LogError, LogVerifier, StoredCheckpoint, StoredEntry, VerifyReport};
use keysentinel_store::keys::{Meta, META_LOG_VERIFIER};
use keysentinel_store::{StateError, StoreError, META_LOG_ORIGIN};
use rusqlite::Connection;
use std::path::Path;

#[derive(Default)]
pub struct FileVerifyOptions {
    /// The verifier key to trust (`name+id+key`). Without it the key recorded in the file is
    /// used, which shows the file is self-consistent; pin the key for assurance against someone
    /// who could rewrite the whole file.
    pub pinned_verifier: Option<String>,
    /// Checkpoints exported earlier and kept elsewhere (notes); each must match the log.
    pub external: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FileVerifyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] LogError),
    /// A state row is not what its audit history says.
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Setup(String),
}

pub fn verify_file(path: &Path, options: &FileVerifyOptions) -> Result<(VerifyReport, StateReport), FileVerifyError> {
    if !path.exists() {
        return Err(FileVerifyError::Setup(format!("no database at {}", path.display())));
    }
    let conn = open_connection(path, true)?;
    let mut meta = ConnMeta(&conn);
    let origin = meta.get(META_LOG_ORIGIN)?.map(|v| String::from_utf8_lossy(&v).into_owned()).ok_or_else(|| {
        FileVerifyError::Setup("the database has no audit log identity (not a keysentinel store?)".into())
    })?;
    let recorded = meta.get(META_LOG_VERIFIER)?.map(|v| String::from_utf8_lossy(&v).into_owned());
    let key_text = options
        .pinned_verifier
        .clone()
        .or(recorded)
        .ok_or_else(|| FileVerifyError::Setup("no verifier key recorded; pass one with --log-key".into()))?;
    let verifier = LogVerifier::parse(&key_text).map_err(|e| FileVerifyError::Setup(format!("verifier key: {e}")))?;
    let mut external = Vec::new();
    for note in &options.external {
        let cp = verifier
            .open_for(&origin, note)
            .map_err(|e| FileVerifyError::Setup(format!("external checkpoint: {e}")))?;
        external.push(cp);
    }

    check(&conn, &verifier, &origin, external, None)
}

/// Verifies the log on `conn` (every entry, every checkpoint, `external` ones too) and then
/// every state row against the digests the log records (each row that matches goes into
/// `keep`, when given). Used by `audit verify` and at start-up.
pub(crate) fn check(
    conn: &Connection,
    verifier: &LogVerifier,
    origin: &str,
    external: Vec<Checkpoint>,
    keep: Option<&Expected>,
) -> Result<(VerifyReport, StateReport), FileVerifyError> {
    // One read transaction: the log and the rows from the same snapshot, even while a server
    // commits (WAL), or a row written after the log was read would look unrecorded.
    conn.execute_batch("BEGIN DEFERRED").map_err(db_err)?;
    let result = check_snapshot(conn, verifier, origin, external, keep);
    let _ = conn.execute_batch("COMMIT");
    result
}

fn check_snapshot(
    conn: &Connection,
    verifier: &LogVerifier,
    origin: &str,
    external: Vec<Checkpoint>,
    keep: Option<&Expected>,
) -> Result<(VerifyReport, StateReport), FileVerifyError> {
    let mut stmt = conn.prepare("SELECT size, note FROM audit_checkpoints ORDER BY size").map_err(db_err)?;
    let checkpoints = stmt
        .query_map([], |r| Ok(StoredCheckpoint { size: r.get(0)?, note: r.get(1)? }))
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    let mut auditor = LogAuditor::new(verifier, origin, checkpoints, external)?;
    let mut rows_state = StateChecker::default();
    let mut stmt = conn.prepare("SELECT seq, entry, leaf FROM audit_log ORDER BY seq").map_err(db_err)?;
    let mut rows = stmt.query([]).map_err(db_err)?;
    while let Some(row) = rows.next().map_err(db_err)? {
        // A value of the wrong type (someone stored a number as the entry) is a bad entry, too.
        let seq: i64 = row.get(0).map_err(db_err)?;
        let text: String = row.get(1).unwrap_or_default();
        let leaf: Vec<u8> = row.get(2).unwrap_or_default();
        let entry = auditor.push(StoredEntry { seq, text, leaf })?;
        rows_state.push(&entry)?;
    }
    let report = auditor.finish()?;
    // Rows are judged only against a log that verified: the digests come from it.
    let state = match rows_state.finish(conn, keep) {
        Ok(s) => s,
        Err(StoreError::State(e)) => return Err(e.into()),
        Err(e) => return Err(e.into()),
    };
    Ok((report, state))
}

/// The newest checkpoint and the log's identity, read from a database file (no master key needed).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ExportedCheckpoint {
    pub origin: String,
    pub verifier_key: String,
    pub size: u64,
    pub checkpoint: String,
}

pub fn export_checkpoint(path: &Path) -> Result<ExportedCheckpoint, FileVerifyError> {
    if !path.exists() {
        return Err(FileVerifyError::Setup(format!("no database at {}", path.display())));
    }
    let conn = open_connection(path, true)?;
    let mut meta = ConnMeta(&conn);
    let get = |m: &mut ConnMeta, name: &str| -> Result<String, FileVerifyError> {
        m.get(name)?
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .ok_or_else(|| FileVerifyError::Setup(format!("the database has no {name} (not a keysentinel store?)")))
    };
    let origin = get(&mut meta, META_LOG_ORIGIN)?;
    let verifier_key = get(&mut meta, META_LOG_VERIFIER)?;
    let (size, checkpoint): (i64, String) = conn
        .query_row("SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|_| FileVerifyError::Setup("the log has no checkpoint yet".into()))?;
    Ok(ExportedCheckpoint { origin, verifier_key, size: size as u64, checkpoint })
}
