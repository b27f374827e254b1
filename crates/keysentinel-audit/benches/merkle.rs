//! Cost of the audit log's hashing: appending a leaf to the frontier and computing the root
//! (done once per commit), against a bare SHA-256 of the same entry as the baseline.
#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keysentinel_audit::merkle::{leaf_hash, Frontier};
use sha2::{Digest, Sha256};

fn bench(c: &mut Criterion) {
    let entry = br#"{"v":1,"seq":123456,"ts":"2026-11-28T00:00:00Z","prev":"00","actor":{"kind":"operator","id":"alice","role":"admin"},"action":"key.revoke","target":"ksk_abc","reason":"leaked","details":{}}"#;
    c.bench_function("baseline: sha256 of one entry", |b| b.iter(|| Sha256::digest(black_box(entry))));
    let mut f = Frontier::default();
    for i in 0..1_000_000u32 {
        f.push(leaf_hash(&i.to_le_bytes()));
    }
    c.bench_function("frontier push + root at 1M entries", |b| {
        b.iter(|| {
            let mut g = f.clone();
            g.push(leaf_hash(black_box(entry)));
            black_box(g.root())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
