//! Signed checkpoints (tree heads) in the C2SP signed-note / tlog-checkpoint text format:
//!
//! ```text
//! <origin>
//! <tree size>
//! <base64 root hash>
//! time <RFC 3339>            (extension line)
//!
//! — <key name> <base64(4-byte key id ‖ Ed25519 signature)>
//! ```
//!
//! The signature covers the body (everything before the blank line, newline-terminated). The key
//! id is the first four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key). A verifier key is
//! written `<name>+<hex key id>+<base64(0x01 ‖ public key)>`, so it can be pinned as one line.

use crate::merkle::Hash;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const ED25519_ALG: u8 = 0x01;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint is malformed: {0}")]
    Malformed(&'static str),
    #[error("checkpoint is for log {found:?}, expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("checkpoint carries no signature by key {0:?}")]
    NoSignature(String),
    #[error("checkpoint signature by {0:?} does not verify")]
    BadSignature(String),
    #[error("verifier key is malformed: {0}")]
    BadVerifierKey(&'static str),
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519_ALG]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// A checkpoint's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub time: OffsetDateTime,
}

impl Checkpoint {
    fn body(&self) -> Result<String, CheckpointError> {
        let time = self.time.format(&Rfc3339).map_err(|_| CheckpointError::Malformed("time out of range"))?;
        Ok(format!("{}\n{}\n{}\ntime {}\n", self.origin, self.size, B64.encode(self.root), time))
    }
}

/// Signs checkpoints with the log's Ed25519 key.
pub struct LogSigner {
    name: String,
    key: SigningKey,
}

impl LogSigner {
    pub fn new(name: impl Into<String>, key: SigningKey) -> Self {
        Self { name: name.into(), key }
    }

    pub fn verifier(&self) -> LogVerifier {
        LogVerifier { name: self.name.clone(), key: self.key.verifying_key() }
    }

    /// The signed note text.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, CheckpointError> {
        let body = checkpoint.body()?;
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        Ok(format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob)))
    }
}

/// Verifies checkpoints of one log (its origin and public key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogVerifier {
    name: String,
    key: VerifyingKey,
}

impl LogVerifier {
    /// Parses `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CheckpointError::BadVerifierKey("expected name+keyid+key"));
        };
        let raw = B64.decode(key_b64).map_err(|_| CheckpointError::BadVerifierKey("key is not base64"))?;
        let (alg, key_bytes) = raw.split_first().ok_or(CheckpointError::BadVerifierKey("empty key"))?;
        if *alg != ED25519_ALG {
            return Err(CheckpointError::BadVerifierKey("not an Ed25519 key"));
        }
        let bytes: [u8; 32] =
            key_bytes.try_into().map_err(|_| CheckpointError::BadVerifierKey("key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| CheckpointError::BadVerifierKey("not a valid Ed25519 point"))?;
        if hex::encode(key_id(name, &key)) != id_hex {
            return Err(CheckpointError::BadVerifierKey("key id does not match name and key"));
        }
        Ok(Self { name: name.to_owned(), key })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn encode(&self) -> String {
        let mut raw = vec![ED25519_ALG];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(key_id(&self.name, &self.key)), B64.encode(raw))
    }

    /// Checks the note's signature and returns its content.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, sigs) =
            note.split_once("\n\n").ok_or(CheckpointError::Malformed("no blank line before signatures"))?;
        let body = format!("{body}\n");
        let wanted_id = key_id(&self.name, &self.key);
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else { continue };
            let Some((name, sig_b64)) = rest.split_once(' ') else { continue };
            if name != self.name {
                continue;
            }
            let Ok(blob) = B64.decode(sig_b64) else { continue };
            if blob.len() != 68 || blob[..4] != wanted_id {
                continue;
            }
            let sig =
                Signature::from_slice(&blob[4..]).map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            self.key.verify(body.as_bytes(), &sig).map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
            return parse_body(&body);
        }
        Err(CheckpointError::NoSignature(self.name.clone()))
    }

    /// Like `open`, and also requires the checkpoint to be for `origin`.
    pub fn open_for(&self, origin: &str, note: &str) -> Result<Checkpoint, CheckpointError> {
        let cp = self.open(note)?;
        if cp.origin != origin {
            return Err(CheckpointError::WrongOrigin { expected: origin.to_owned(), found: cp.origin });
        }
        Ok(cp)
    }
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let mut lines = body.lines();
    let origin = lines.next().filter(|l| !l.is_empty()).ok_or(CheckpointError::Malformed("missing origin"))?;
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or(CheckpointError::Malformed("tree size is not a number"))?;
    let root_raw =
        lines.next().and_then(|l| B64.decode(l).ok()).ok_or(CheckpointError::Malformed("root hash is not base64"))?;
    let root: Hash = root_raw.try_into().map_err(|_| CheckpointError::Malformed("root hash is not 32 bytes"))?;
    let time = lines
        .find_map(|l| l.strip_prefix("time "))
        .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        .ok_or(CheckpointError::Malformed("missing or bad time line"))?;
    Ok(Checkpoint { origin: origin.to_owned(), size, root, time })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn signer() -> LogSigner {
        LogSigner::new("keysentinel.test/log", SigningKey::generate(&mut rand::rngs::OsRng))
    }

    fn cp() -> Checkpoint {
        Checkpoint {
            origin: "keysentinel.test/log".into(),
            size: 42,
            root: [7u8; 32],
            time: datetime!(2026-11-28 01:02:03 UTC),
        }
    }

    #[test]
    fn sign_then_open_round_trips_through_an_encoded_verifier() {
        let s = signer();
        let note = s.sign(&cp()).unwrap();
        let v = LogVerifier::parse(&s.verifier().encode()).unwrap();
        assert_eq!(v.open_for("keysentinel.test/log", &note).unwrap(), cp());
        assert!(matches!(v.open_for("other", &note), Err(CheckpointError::WrongOrigin { .. })));
    }

    #[test]
    fn any_change_to_the_body_or_a_foreign_key_is_refused() {
        let s = signer();
        let note = s.sign(&cp()).unwrap();
        let tampered = note.replacen("\n42\n", "\n41\n", 1);
        assert!(matches!(s.verifier().open(&tampered), Err(CheckpointError::BadSignature(_))));
        let other = signer();
        assert!(matches!(other.verifier().open(&note), Err(CheckpointError::NoSignature(_))));
        assert!(s.verifier().open("garbage").is_err());
    }
}
