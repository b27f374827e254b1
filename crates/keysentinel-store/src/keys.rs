//! The audit log's own keys (checkpoint signing, pseudonyms), created once at initialisation and
//! kept sealed under the master key in the store's metadata. Shared by every backend.

use crate::StoreError;
use ed25519_dalek::SigningKey;
use keysentinel_audit::LogSigner;
use keysentinel_secrets::{Keyring, Pseudonymizer};
use rand::RngCore;
use zeroize::Zeroize;

pub const META_LOG_KEY: &str = "audit.log_signing_key";
pub const META_PSEUDONYM_KEY: &str = "audit.pseudonym_key";
pub const META_LOG_ORIGIN: &str = "audit.origin";
pub const META_LOG_VERIFIER: &str = "audit.verifier_key";

/// The unsealed log keys.
pub struct LogKeys {
    pub origin: String,
    pub signer: LogSigner,
    pub pseudonymizer: Pseudonymizer,
}

/// Minimal metadata access, so initialisation works before the writer exists.
pub trait Meta {
    fn get(&mut self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, name: &str, value: &[u8]) -> Result<(), StoreError>;
}

impl LogKeys {
    /// Loads the log keys, creating them on first use. Returns whether they were created.
    pub fn load_or_create(meta: &mut dyn Meta, keyring: &Keyring) -> Result<(Self, bool), StoreError> {
        match (meta.get(META_LOG_ORIGIN)?, meta.get(META_LOG_KEY)?, meta.get(META_PSEUDONYM_KEY)?) {
            (Some(origin), Some(sealed_log), Some(sealed_pseudo)) => {
                let origin =
                    String::from_utf8(origin).map_err(|_| StoreError::Corrupt("audit origin is not UTF-8".into()))?;
                let log_bytes = keyring.open(&sealed_log, META_LOG_KEY.as_bytes())?;
                let log: [u8; 32] =
                    log_bytes.as_slice().try_into().map_err(|_| StoreError::Corrupt("log key length".into()))?;
                let pseudo_bytes = keyring.open(&sealed_pseudo, META_PSEUDONYM_KEY.as_bytes())?;
                let pseudo: [u8; 32] = pseudo_bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("pseudonym key length".into()))?;
                let keys = LogKeys {
                    signer: LogSigner::new(origin.clone(), SigningKey::from_bytes(&log)),
                    pseudonymizer: Pseudonymizer::new(pseudo),
                    origin,
                };
                Ok((keys, false))
            }
            (None, None, None) => {
                let mut id = [0u8; 8];
                rand::rngs::OsRng.fill_bytes(&mut id);
                let origin = format!("keysentinel/audit/{}", hex::encode(id));
                let signing = SigningKey::generate(&mut rand::rngs::OsRng);
                let mut pseudo = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut pseudo);
                meta.put(META_LOG_ORIGIN, origin.as_bytes())?;
                meta.put(META_LOG_KEY, &keyring.seal(signing.as_bytes(), META_LOG_KEY.as_bytes()))?;
                meta.put(META_PSEUDONYM_KEY, &keyring.seal(&pseudo, META_PSEUDONYM_KEY.as_bytes()))?;
                let signer = LogSigner::new(origin.clone(), signing);
                meta.put(META_LOG_VERIFIER, signer.verifier().encode().as_bytes())?;
                let keys = LogKeys { signer, pseudonymizer: Pseudonymizer::new(pseudo), origin };
                pseudo.zeroize();
                Ok((keys, true))
            }
            _ => Err(StoreError::Corrupt("audit log keys are partly missing from the store".into())),
        }
    }

    /// Re-seals the log keys under the keyring's current master key.
    pub fn rewrap(meta: &mut dyn Meta, keyring: &Keyring) -> Result<u32, StoreError> {
        let mut n = 0;
        for name in [META_LOG_KEY, META_PSEUDONYM_KEY] {
            let sealed = meta.get(name)?.ok_or_else(|| StoreError::Corrupt(format!("{name} missing")))?;
            if keyring.needs_rewrap(&sealed) {
                let plain = keyring.open(&sealed, name.as_bytes())?;
                meta.put(name, &keyring.seal(&plain, name.as_bytes()))?;
                n += 1;
            }
        }
        Ok(n)
    }
}
