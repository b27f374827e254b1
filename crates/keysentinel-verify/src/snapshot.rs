//! The in-memory key snapshot the hot path reads. No database on the hot path: the registry
//! pushes every committed key change here before it answers, so a revocation is seen by the very
//! next verify on the node.

use ed25519_dalek::VerifyingKey;
use hmac::{Hmac, Mac};
use keysentinel_domain::{ApiKey, IpAllowlist, KeyAlgorithm, KeyStatus, Scope, ScopeSet, SigningScheme};
use sha2::{Sha256, Sha512};
use std::sync::Arc;

/// Key material prepared for verification: HMAC states are keyed once here (the inner and outer
/// pads hashed), so each verify only clones a state instead of re-deriving it.
// Entries are built once and shared behind an Arc, so the variants' sizes cost nothing; boxing
// the large one would add a pointer chase to every verify.
#[allow(clippy::large_enum_variant)]
pub enum Material {
    Hmac { sha256: Hmac<Sha256>, sha512: Hmac<Sha512>, sha512_upper: Hmac<Sha512> },
    Ed25519(VerifyingKey),
}

/// Everything verify needs to know about one key.
pub struct KeyEntry {
    pub access_key: Box<str>,
    pub account_id: Box<str>,
    pub scheme: SigningScheme,
    pub material: Material,
    pub status: KeyStatus,
    pub expires_at_ms: i64,
    pub scopes: ScopeSet,
    /// Active sensitive grants with their expiry (ms).
    pub grants: Vec<(Scope, i64)>,
    pub allowlist: IpAllowlist,
}

fn ms(t: keysentinel_domain::Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EntryError {
    #[error("HMAC key without a secret")]
    MissingSecret,
    #[error("Ed25519 public key is not valid")]
    BadPublicKey,
}

impl KeyEntry {
    /// Builds the entry for `key`; `secret` is the opened HMAC secret (None for Ed25519 keys).
    pub fn new(key: &ApiKey, secret: Option<&[u8]>) -> Result<Self, EntryError> {
        use base64::Engine;
        let material = match &key.algorithm {
            KeyAlgorithm::Hmac => {
                let secret = secret.ok_or(EntryError::MissingSecret)?;
                let upper = zeroize::Zeroizing::new(secret.to_ascii_uppercase());
                // HMAC takes keys of any length, so these cannot fail.
                Material::Hmac {
                    sha256: <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| EntryError::MissingSecret)?,
                    sha512: <Hmac<Sha512> as Mac>::new_from_slice(secret).map_err(|_| EntryError::MissingSecret)?,
                    sha512_upper: <Hmac<Sha512> as Mac>::new_from_slice(&upper)
                        .map_err(|_| EntryError::MissingSecret)?,
                }
            }
            KeyAlgorithm::Ed25519 { public_key } => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(public_key)
                    .map_err(|_| EntryError::BadPublicKey)?;
                let bytes: [u8; 32] = raw.as_slice().try_into().map_err(|_| EntryError::BadPublicKey)?;
                Material::Ed25519(VerifyingKey::from_bytes(&bytes).map_err(|_| EntryError::BadPublicKey)?)
            }
        };
        Ok(Self {
            access_key: key.access_key.as_str().into(),
            account_id: key.account_id.as_str().into(),
            scheme: key.scheme,
            material,
            status: key.status,
            expires_at_ms: ms(key.expires_at),
            scopes: key.scopes,
            grants: key
                .grants
                .iter()
                .filter_map(|g| match (g.status, g.expires_at) {
                    (keysentinel_domain::GrantStatus::Active, Some(t)) => Some((g.scope, ms(t))),
                    _ => None,
                })
                .collect(),
            allowlist: key.ip_allowlist.clone(),
        })
    }

    /// Status at `now_ms` (expiry is effective the instant it passes).
    pub fn status_at(&self, now_ms: i64) -> KeyStatus {
        match self.status {
            KeyStatus::Pending | KeyStatus::Active | KeyStatus::Suspended if now_ms >= self.expires_at_ms => {
                KeyStatus::Expired
            }
            s => s,
        }
    }

    pub fn scopes_at(&self, now_ms: i64) -> ScopeSet {
        let mut set = self.scopes;
        for (scope, until) in &self.grants {
            if now_ms < *until {
                set.insert(*scope);
            }
        }
        set
    }
}

const SHARDS: usize = 64;

type Shard = parking_lot::RwLock<std::collections::HashMap<Box<str>, Arc<KeyEntry>, ahash::RandomState>>;

/// Keys by access key, in shards behind read-write locks. The locks are parking_lot's, which are
/// task-fair: a revocation waiting to write is not starved by a stream of verifies reading the
/// same shard (a reader-preferring lock let a hot key delay its own revocation by milliseconds).
/// Access keys come from requests, i.e. from anyone, so shard choice and maps use a randomly
/// keyed hash (aHash) that cannot be steered into collisions.
pub struct KeySnapshot {
    hasher: ahash::RandomState,
    shards: Vec<Shard>,
}

impl Default for KeySnapshot {
    fn default() -> Self {
        let hasher = ahash::RandomState::new();
        let shards = (0..SHARDS)
            .map(|_| parking_lot::RwLock::new(std::collections::HashMap::with_hasher(hasher.clone())))
            .collect();
        Self { hasher, shards }
    }
}

impl KeySnapshot {
    fn shard(&self, access_key: &str) -> &Shard {
        let i = (self.hasher.hash_one(access_key) as usize) % SHARDS;
        &self.shards[i]
    }

    pub fn get(&self, access_key: &str) -> Option<Arc<KeyEntry>> {
        self.shard(access_key).read().get(access_key).cloned()
    }

    pub fn upsert(&self, entry: KeyEntry) {
        let entry = Arc::new(entry);
        self.shard(&entry.access_key).write().insert(entry.access_key.clone(), entry.clone());
    }

    pub fn remove(&self, access_key: &str) {
        self.shard(access_key).write().remove(access_key);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
