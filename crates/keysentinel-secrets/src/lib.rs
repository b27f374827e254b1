//! Secrets at rest.
//!
//! - **Master keys** (256-bit, from the environment or a file) encrypt everything else. Each has a
//!   fingerprint, stored beside every ciphertext, so several keys can be loaded at once: the
//!   current one seals, older ones still open, and `keysentinel secrets rewrap` moves everything
//!   to the current key (see docs/operations.md, "Rotating the master key").
//! - **Sealing** is XChaCha20-Poly1305 with a random 192-bit nonce and the caller's context as
//!   associated data, so a ciphertext copied onto another row (another key's secret) fails to open.
//! - **Tokens and secrets** are 256-bit random, base62, with a recognisable prefix and a CRC32
//!   checksum for secret scanners.
//! - **Operator tokens** are stored as SHA-256 hashes. They are 256-bit random, so a slow
//!   password hash would add nothing but latency to every admin request.
//! - **Pseudonyms**: HMAC-SHA256 under a log-specific key, for sensitive values that the audit
//!   log must be able to match but never show.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use keysentinel_domain::ids::checksummed;
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SecretsError {
    #[error("master key must be 32 bytes encoded in base64 (generate one with `keysentinel secrets new-master-key`)")]
    BadMasterKey,
    #[error("sealed value was made with master key {0}, which is not loaded (set KEYSENTINEL_MASTER_KEY_PREVIOUS)")]
    UnknownMasterKey(String),
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed value failed authentication (wrong key, wrong row, or tampered ciphertext)")]
    Authentication,
}

const SEAL_VERSION: u8 = 1;
const FINGERPRINT_LEN: usize = 8;
const NONCE_LEN: usize = 24;

/// One 256-bit master key.
pub struct MasterKey {
    key: Zeroizing<[u8; 32]>,
    fingerprint: [u8; FINGERPRINT_LEN],
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest =
            Sha256::new().chain_update(b"keysentinel master key fingerprint v1").chain_update(bytes).finalize();
        let mut fingerprint = [0u8; FINGERPRINT_LEN];
        fingerprint.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        Self { key: Zeroizing::new(bytes), fingerprint }
    }

    pub fn from_base64(text: &str) -> Result<Self, SecretsError> {
        let mut raw = B64.decode(text.trim()).map_err(|_| SecretsError::BadMasterKey)?;
        let bytes: Result<[u8; 32], _> = raw.as_slice().try_into();
        raw.zeroize();
        bytes.map(Self::from_bytes).map_err(|_| SecretsError::BadMasterKey)
    }

    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// The key in base64, for writing a newly generated key to its file once.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(B64.encode(*self.key))
    }

    pub fn fingerprint(&self) -> String {
        hex::encode(self.fingerprint)
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint())
    }
}

/// The loaded master keys: the first seals, all open.
#[derive(Debug)]
pub struct Keyring {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Keyring {
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Self {
        Self { current, previous }
    }

    pub fn current_fingerprint(&self) -> String {
        self.current.fingerprint()
    }

    /// Encrypts `plaintext`; `context` (e.g. "api-key-secret:<access key>") must be given again
    /// to open it.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&*self.current.key).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(&self.current.fingerprint, context);
        // Encryption with a valid key and in-memory buffers cannot fail; an empty ciphertext
        // would fail to open and so can never be mistaken for a secret.
        let ct = cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad }).unwrap_or_default();
        let mut out = Vec::with_capacity(1 + FINGERPRINT_LEN + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&self.current.fingerprint);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Zeroizing<Vec<u8>>, SecretsError> {
        if sealed.len() < 1 + FINGERPRINT_LEN + NONCE_LEN + 16 || sealed[0] != SEAL_VERSION {
            return Err(SecretsError::Malformed);
        }
        let fingerprint = &sealed[1..1 + FINGERPRINT_LEN];
        let nonce = &sealed[1 + FINGERPRINT_LEN..1 + FINGERPRINT_LEN + NONCE_LEN];
        let ct = &sealed[1 + FINGERPRINT_LEN + NONCE_LEN..];
        let key = std::iter::once(&self.current)
            .chain(self.previous.iter())
            .find(|k| k.fingerprint.as_slice() == fingerprint)
            .ok_or_else(|| SecretsError::UnknownMasterKey(hex::encode(fingerprint)))?;
        let cipher = XChaCha20Poly1305::new((&*key.key).into());
        let aad = aad(&key.fingerprint, context);
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| SecretsError::Authentication)
    }

    /// True when `sealed` was made with an older master key and should be rewrapped.
    pub fn needs_rewrap(&self, sealed: &[u8]) -> bool {
        sealed.get(1..1 + FINGERPRINT_LEN).is_some_and(|fp| fp != self.current.fingerprint.as_slice())
    }
}

fn aad(fingerprint: &[u8], context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + fingerprint.len() + context.len());
    aad.push(SEAL_VERSION);
    aad.extend_from_slice(fingerprint);
    aad.extend_from_slice(context);
    aad
}

/// A new API secret: `kss_` + 43 base62 characters (~256 bits) + 6-character checksum.
pub fn generate_api_secret() -> Zeroizing<String> {
    let random = Zeroizing::new(Alphanumeric.sample_string(&mut rand::rngs::OsRng, 43));
    Zeroizing::new(checksummed("kss_", &random))
}

/// A new operator token: `kso_` + 43 base62 + checksum.
pub fn generate_operator_token() -> Zeroizing<String> {
    let random = Zeroizing::new(Alphanumeric.sample_string(&mut rand::rngs::OsRng, 43));
    Zeroizing::new(checksummed("kso_", &random))
}

/// What is stored for an operator token.
pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::new().chain_update(b"keysentinel operator token v1\0").chain_update(token.as_bytes()).finalize().into()
}

/// Constant-time equality for secrets and digests.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Keyed hashes of sensitive values for the audit log.
pub struct Pseudonymizer {
    key: Zeroizing<[u8; 32]>,
}

impl Pseudonymizer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key: Zeroizing::new(key) }
    }

    /// `hmac-sha256:<first 128 bits, hex>` of `value` under `kind` (so the same value in two
    /// roles does not link).
    pub fn pseudonym(&self, kind: &str, value: &[u8]) -> String {
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&*self.key) else { return String::new() };
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value);
        let tag = mac.finalize().into_bytes();
        format!("hmac-sha256:{}", hex::encode(&tag[..16]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keysentinel_domain::ids::has_valid_checksum;

    #[test]
    fn seal_open_round_trip_and_binding_to_context() {
        let ring = Keyring::new(MasterKey::generate(), vec![]);
        let sealed = ring.seal(b"top secret", b"api-key-secret:ksk_a");
        assert_eq!(ring.open(&sealed, b"api-key-secret:ksk_a").unwrap().as_slice(), b"top secret");
        assert_eq!(ring.open(&sealed, b"api-key-secret:ksk_b"), Err(SecretsError::Authentication));
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(ring.open(&flipped, b"api-key-secret:ksk_a"), Err(SecretsError::Authentication));
        assert_eq!(ring.open(&sealed[..10], b"x"), Err(SecretsError::Malformed));
        assert!(!sealed.windows(10).any(|w| w == b"top secret"), "ciphertext must not contain the plaintext");
    }

    #[test]
    fn rotation_old_key_opens_new_key_seals() {
        let old = MasterKey::generate();
        let old_b64 = old.to_base64();
        let before = Keyring::new(old, vec![]);
        let sealed = before.seal(b"s", b"c");
        let after = Keyring::new(MasterKey::generate(), vec![MasterKey::from_base64(&old_b64).unwrap()]);
        assert!(after.needs_rewrap(&sealed));
        let resealed = after.seal(&after.open(&sealed, b"c").unwrap(), b"c");
        assert!(!after.needs_rewrap(&resealed));
        let without_old = Keyring::new(MasterKey::generate(), vec![]);
        assert!(matches!(without_old.open(&sealed, b"c"), Err(SecretsError::UnknownMasterKey(_))));
    }

    #[test]
    fn master_key_parsing() {
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert!(MasterKey::from_base64(&B64.encode([1u8; 16])).is_err());
        let k = MasterKey::from_base64(&B64.encode([1u8; 32])).unwrap();
        assert_eq!(format!("{k:?}"), format!("MasterKey({})", k.fingerprint()), "Debug never shows the key");
    }

    #[test]
    fn generated_credentials_are_checksummed_and_distinct() {
        let (a, b) = (generate_api_secret(), generate_api_secret());
        assert_ne!(*a, *b);
        assert!(has_valid_checksum("kss_", &a));
        assert!(has_valid_checksum("kso_", &generate_operator_token()));
        assert_eq!(a.len(), 4 + 43 + 6);
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_role_separated() {
        let p = Pseudonymizer::new([3u8; 32]);
        let q = Pseudonymizer::new([4u8; 32]);
        assert_eq!(p.pseudonym("ip", b"1.2.3.4"), p.pseudonym("ip", b"1.2.3.4"));
        assert_ne!(p.pseudonym("ip", b"1.2.3.4"), q.pseudonym("ip", b"1.2.3.4"));
        assert_ne!(p.pseudonym("ip", b"1.2.3.4"), p.pseudonym("device", b"1.2.3.4"));
        assert!(ct_eq(&hash_token("a"), &hash_token("a")) && !ct_eq(&hash_token("a"), &hash_token("b")));
    }
}
