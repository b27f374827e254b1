//! Property tests: any single mutation of a stored log is detected, and the first bad entry is
//! named correctly.

// Test helpers may unwrap and panic: a failure there is a failed test, which is the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ed25519_dalek::SigningKey;
use keysentinel_audit::merkle::{inclusion_proof, root};
use keysentinel_audit::proof::InclusionProof;
use keysentinel_audit::*;
use proptest::prelude::*;
use time::macros::datetime;

const ORIGIN: &str = "keysentinel.test/audit";

struct Log {
    signer: LogSigner,
    entries: Vec<(i64, String, Vec<u8>)>,
    checkpoints: Vec<(i64, String)>,
}

/// Builds a log of `n` entries, committing in batches of `batch` with a checkpoint per batch.
fn build(n: usize, batch: usize) -> Log {
    let signer = LogSigner::new(ORIGIN, SigningKey::from_bytes(&[9u8; 32]));
    let mut state = LogState::default();
    let (mut entries, mut checkpoints) = (vec![], vec![]);
    for i in 0..n {
        let draft = AuditDraft {
            actor: Actor::Operator { id: format!("op{}", i % 3), role: "admin".into() },
            action: "key.suspend".into(),
            target: format!("ksk_{i:036}"),
            reason: format!("reason {i}"),
            policy_version: Some("p1".into()),
            details: serde_json::json!({ "n": i }),
        };
        let sealed = state.append(draft, datetime!(2026-11-28 00:00 UTC) + time::Duration::seconds(i as i64)).unwrap();
        entries.push((sealed.seq as i64, sealed.text, sealed.leaf.to_vec()));
        if (i + 1) % batch == 0 || i + 1 == n {
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size: state.size(),
                root: state.root(),
                time: datetime!(2026-11-28 01:00 UTC),
            };
            checkpoints.push((state.size() as i64, signer.sign(&cp).unwrap()));
        }
    }
    Log { signer, entries, checkpoints }
}

fn verify(log: &Log) -> Result<VerifyReport, LogError> {
    verify_log(
        &log.signer.verifier(),
        ORIGIN,
        log.entries.iter().map(|(seq, text, leaf)| StoredEntry { seq: *seq, text: text.clone(), leaf: leaf.clone() }),
        log.checkpoints.iter().map(|(size, note)| StoredCheckpoint { size: *size, note: note.clone() }),
    )
}

fn rehash(e: &mut (i64, String, Vec<u8>)) {
    e.2 = keysentinel_audit::merkle::leaf_hash(e.1.as_bytes()).to_vec();
}

#[test]
fn an_untouched_log_verifies() {
    let log = build(50, 4);
    let report = verify(&log).unwrap();
    assert_eq!(report.entries, 50);
    assert_eq!(report.checkpoints, 13);
    assert_eq!(report.latest.map(|c| c.size), Some(50));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn modifying_an_entry_is_detected_at_that_entry(n in 2usize..40, pick in any::<prop::sample::Index>(), fix_hash in any::<bool>()) {
        let mut log = build(n, 1);
        let i = pick.index(n);
        log.entries[i].1 = log.entries[i].1.replace("reason", "REASON");
        if fix_hash { rehash(&mut log.entries[i]); }
        let err = verify(&log).unwrap_err();
        prop_assert_eq!(err.first_bad_entry(), Some(i as u64), "{}", err);
    }

    #[test]
    fn rewriting_the_whole_tail_is_caught_by_the_signed_roots(n in 2usize..40, pick in any::<prop::sample::Index>()) {
        let mut log = build(n, 1);
        let i = pick.index(n);
        // An attacker who rewrites entry i and re-links every later entry still cannot re-sign.
        let mut state = LogState::from_leaves(log.entries[..i].iter().map(|e| <[u8; 32]>::try_from(e.2.as_slice()).unwrap()));
        for e in log.entries[i..].iter_mut() {
            let mut entry: AuditEntry = serde_json::from_str(&e.1).unwrap();
            entry.reason = format!("forged {}", entry.reason);
            let draft = AuditDraft { actor: entry.actor, action: entry.action, target: entry.target, reason: entry.reason, policy_version: entry.policy_version, details: entry.details };
            let sealed = state.append(draft, entry.ts).unwrap();
            e.1 = sealed.text;
            e.2 = sealed.leaf.to_vec();
        }
        let err = verify(&log).unwrap_err();
        prop_assert_eq!(err.first_bad_entry(), Some(i as u64), "{}", err);
    }

    #[test]
    fn deleting_an_entry_is_detected(n in 2usize..40, pick in any::<prop::sample::Index>()) {
        let mut log = build(n, 3);
        let i = pick.index(n);
        log.entries.remove(i);
        let err = verify(&log).unwrap_err();
        prop_assert_eq!(err.first_bad_entry(), Some(i as u64), "{}", err);
    }

    #[test]
    fn inserting_an_entry_is_detected(n in 2usize..40, pick in any::<prop::sample::Index>()) {
        let mut log = build(n, 3);
        let i = pick.index(n);
        let mut forged = log.entries[i].clone();
        forged.1 = forged.1.replace("reason", "inserted");
        rehash(&mut forged);
        log.entries.insert(i, forged);
        // Renumber as an attacker with SQL access would, to keep positions contiguous.
        for (pos, e) in log.entries.iter_mut().enumerate() { e.0 = pos as i64; }
        let err = verify(&log).unwrap_err();
        let bad = err.first_bad_entry().unwrap();
        prop_assert!(bad == i as u64 || bad + 1 == i as u64 || bad == i as u64 + 1, "{} at {}", err, i);
    }

    #[test]
    fn swapping_two_entries_is_detected(n in 3usize..40, a in any::<prop::sample::Index>(), b in any::<prop::sample::Index>()) {
        let mut log = build(n, 2);
        let (i, j) = (a.index(n), b.index(n));
        prop_assume!(i != j);
        let (lo, _hi) = (i.min(j), i.max(j));
        let (ti, tj) = (log.entries[i].1.clone(), log.entries[j].1.clone());
        log.entries[i].1 = tj;
        log.entries[j].1 = ti;
        rehash(&mut log.entries[i]);
        rehash(&mut log.entries[j]);
        let err = verify(&log).unwrap_err();
        prop_assert_eq!(err.first_bad_entry(), Some(lo as u64), "{}", err);
    }

    #[test]
    fn truncating_is_detected(n in 2usize..40, keep in any::<prop::sample::Index>()) {
        let mut log = build(n, 1);
        let k = keep.index(n);
        log.entries.truncate(k);
        let err = verify(&log).unwrap_err();
        prop_assert_eq!(err.first_bad_entry(), Some(k as u64), "{}", err);
    }

    #[test]
    fn truncating_the_tail_and_its_checkpoints_is_caught_by_an_exported_checkpoint(n in 2usize..40, keep in any::<prop::sample::Index>()) {
        let mut log = build(n, 1);
        // The checkpoint a verifier exported earlier, kept where the database's host cannot write.
        let exported = log.signer.verifier().open_for(ORIGIN, &log.checkpoints.last().unwrap().1).unwrap();
        let k = keep.index(n - 1) + 1;
        log.entries.truncate(k);
        log.checkpoints.retain(|(size, _)| *size as usize <= k);
        // The file alone is self-consistent again...
        prop_assert!(verify(&log).is_ok());
        // ...but not against what was exported.
        let mut auditor = LogAuditor::new(
            &log.signer.verifier(),
            ORIGIN,
            log.checkpoints.iter().map(|(size, note)| StoredCheckpoint { size: *size, note: note.clone() }),
            [exported],
        ).unwrap();
        for (seq, text, leaf) in &log.entries {
            auditor.push(StoredEntry { seq: *seq, text: text.clone(), leaf: leaf.clone() }).unwrap();
        }
        let err = auditor.finish().unwrap_err();
        prop_assert_eq!(err, LogError::Truncated { seq: k as u64, size: n as u64 });
    }

    #[test]
    fn an_unsigned_tail_entry_is_detected(n in 1usize..20) {
        let mut log = build(n, 1);
        let mut state = LogState::from_leaves(log.entries.iter().map(|e| <[u8; 32]>::try_from(e.2.as_slice()).unwrap()));
        let sealed = state.append(AuditDraft { actor: Actor::Local { command: "sql".into() }, action: "x".into(), target: "y".into(), reason: String::new(), policy_version: None, details: serde_json::Value::Null }, datetime!(2026-11-28 00:00 UTC)).unwrap();
        log.entries.push((sealed.seq as i64, sealed.text, sealed.leaf.to_vec()));
        let err = verify(&log).unwrap_err();
        prop_assert_eq!(err, LogError::Unsigned { seq: n as u64 });
    }

    #[test]
    fn inclusion_proofs_check_offline_and_fail_on_one_changed_byte(n in 1usize..40, pick in any::<prop::sample::Index>(), byte in any::<prop::sample::Index>()) {
        let log = build(n, n);
        let i = pick.index(n);
        let leaves: Vec<Hash> = log.entries.iter().map(|e| <[u8; 32]>::try_from(e.2.as_slice()).unwrap()).collect();
        prop_assert_eq!(root(&leaves), LogState::from_leaves(leaves.clone()).root());
        let path = inclusion_proof(&leaves, i).unwrap();
        let (_, note) = log.checkpoints.last().unwrap();
        let proof = InclusionProof::new(log.entries[i].1.clone(), i as u64, n as u64, &path, note.clone());
        prop_assert!(proof.verify(&log.signer.verifier(), ORIGIN).is_ok());
        let mut bytes = proof.entry.clone().into_bytes();
        let at = byte.index(bytes.len());
        bytes[at] ^= 0x01;
        let tampered = InclusionProof { entry: String::from_utf8_lossy(&bytes).into_owned(), ..proof };
        prop_assert!(tampered.verify(&log.signer.verifier(), ORIGIN).is_err());
    }
}
