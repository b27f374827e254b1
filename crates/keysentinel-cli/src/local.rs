//! Opening the data directory: master keys, policy, the embedded store, the first admin.

use crate::exit::{Exit, Failure};
use anyhow::Context;
use keysentinel_audit::Actor;
use keysentinel_domain::{Clock, KeyPolicy, OperatorId};
use keysentinel_registry::{Registry, SystemClock};
use keysentinel_secrets::{Keyring, MasterKey};
use keysentinel_sqlite::SqliteStore;
use keysentinel_store::StoreError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const DB_FILE: &str = "keysentinel.db";
pub const MASTER_KEY_FILE: &str = "master.key";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

pub struct Opened {
    pub registry: Arc<Registry>,
    pub store: Arc<SqliteStore>,
}

/// Writes a file readable by its owner only, refusing to overwrite.
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn keyring(data_dir: &Path, db_exists: bool) -> anyhow::Result<Keyring> {
    let current = if let Ok(b64) = std::env::var("KEYSENTINEL_MASTER_KEY") {
        MasterKey::from_base64(&b64).map_err(|e| Failure::new(Exit::Usage, format!("KEYSENTINEL_MASTER_KEY: {e}")))?
    } else {
        let file = std::env::var_os("KEYSENTINEL_MASTER_KEY_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| data_dir.join(MASTER_KEY_FILE));
        if file.exists() {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?,
            );
            MasterKey::from_base64(&text).map_err(|e| Failure::new(Exit::Usage, format!("{}: {e}", file.display())))?
        } else if !db_exists {
            let key = MasterKey::generate();
            write_private(&file, &format!("{}\n", key.to_base64().as_str()))?;
            tracing::warn!(
                path = %file.display(),
                "generated a new master key on local disk; in production supply KEYSENTINEL_MASTER_KEY from a secrets manager instead"
            );
            key
        } else {
            return Err(Failure::new(
                Exit::Usage,
                format!("the store's secrets are sealed under a master key, but none was given: set KEYSENTINEL_MASTER_KEY or KEYSENTINEL_MASTER_KEY_FILE, or restore {}", file.display()),
            )
            .into());
        }
    };
    let mut previous = Vec::new();
    if let Ok(list) = std::env::var("KEYSENTINEL_MASTER_KEY_PREVIOUS") {
        for (i, b64) in list.split(',').filter(|s| !s.trim().is_empty()).enumerate() {
            previous.push(MasterKey::from_base64(b64).map_err(|e| {
                Failure::new(Exit::Usage, format!("KEYSENTINEL_MASTER_KEY_PREVIOUS item {}: {e}", i + 1))
            })?);
        }
    }
    Ok(Keyring::new(current, previous))
}

pub fn policy(path: Option<&Path>) -> anyhow::Result<KeyPolicy> {
    match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("cannot read policy file {}", p.display()))?;
            KeyPolicy::from_toml(&text).map_err(|e| Failure::new(Exit::Invalid, format!("{}: {e}", p.display())).into())
        }
        None => Ok(KeyPolicy::default_policy()?),
    }
}

pub fn open(data_dir: &Path, policy_path: Option<&Path>) -> anyhow::Result<Opened> {
    open_pinned(data_dir, policy_path, None)
}

/// As [`open`], refusing (exit 8) a store whose audit log is not signed with the pinned
/// verifier key (`serve --log-key`, the format `audit verify --log-key` takes).
pub fn open_pinned(data_dir: &Path, policy_path: Option<&Path>, log_key: Option<&str>) -> anyhow::Result<Opened> {
    let pinned = log_key
        .map(|text| {
            keysentinel_audit::LogVerifier::parse(text).map_err(|e| {
                Failure::new(
                    Exit::Usage,
                    format!("--log-key: {e} (expected name+keyid+key, as `audit export` prints it)"),
                )
            })
        })
        .transpose()?;
    if pinned.is_some() && !data_dir.join(DB_FILE).exists() {
        // A new store gets a new key, which could never be the pinned one.
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "--log-key pins the audit log of an existing store, but {} does not exist: start without it once, then pin the key `audit export` prints",
                data_dir.join(DB_FILE).display()
            ),
        )
        .into());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let db = data_dir.join(DB_FILE);
    let keyring = Arc::new(keyring(data_dir, db.exists())?);
    let policy = Arc::new(policy(policy_path)?);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let (store, _created) = SqliteStore::open_pinned(&db, &keyring, clock.clone(), pinned.as_ref()).map_err(|e| match e {
        // The data does not match its audit log: refuse to serve any of it (exit 8, as `audit
        // verify` does), and say which row or entry and what to do.
        StoreError::LogKeyMismatch { .. } => Failure::new(
            Exit::AuditFailed,
            format!(
                "refusing to open {}: {e}. Nothing was served. `keysentinel audit verify --db {} --log-key <the pinned key>` checks the log against the key you trust; restore the data from a backup that verifies with it",
                db.display(),
                db.display()
            ),
        ),
        StoreError::State(_) | StoreError::Log(_) => Failure::new(
            Exit::AuditFailed,
            format!(
                "refusing to open {}: {e}. Nothing was served. Run `keysentinel audit verify --db {}` to see the first problem, and restore the data from a backup that verifies",
                db.display(),
                db.display()
            ),
        ),
        other => Failure::new(Exit::Failure, other.to_string()),
    })?;
    let store = Arc::new(store);
    let registry = Arc::new(Registry::new(store.clone(), policy, keyring, clock));
    Ok(Opened { registry, store })
}

/// Creates the first admin when the store has no operator. Returns its token.
pub async fn bootstrap(
    registry: &Registry,
    admin_id: &str,
    command: &str,
) -> anyhow::Result<Option<zeroize::Zeroizing<String>>> {
    let id = OperatorId::parse(admin_id).map_err(|e| Failure::new(Exit::Invalid, e.to_string()))?;
    match registry.bootstrap_admin(Actor::Local { command: command.into() }, id).await {
        Ok(issued) => Ok(Some(issued.token)),
        Err(keysentinel_registry::RegistryError::Forbidden(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
