//! Row digests: what binds the state tables to the log.
//!
//! Every operation's audit entries carry the digest of each row the operation wrote, as the row
//! stood after it (`AuditEntry::state`). A row is then provably what its history says: recompute
//! its digest from the stored columns and compare with the digest in the last entry that touched
//! it. A row edited outside keysentinel, or one that no entry ever recorded, fails the check.
//!
//! The encoding is canonical and backend independent (a PostgreSQL adapter computes the same
//! digest from the same column values): a domain-separation tag, the table and the row id, then
//! every column in a fixed order, each as a type tag and a length-prefixed value.

use crate::merkle::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Separates row digests from every other SHA-256 in the system (leaves, nodes, tokens).
const DOMAIN: &[u8] = b"keysentinel/row-state/v1\0";

/// One column value, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Blob(&'a [u8]),
}

/// The digest of one row: `SHA-256(DOMAIN ‖ lp(table) ‖ lp(id) ‖ cell…)`, where `lp` is a
/// big-endian u64 length then the bytes, and each cell is a tag byte (0 null, 1 integer as 8
/// big-endian bytes, 2 text, 3 blob) followed by its length-prefixed value. Lengths make the
/// encoding injective: no two different rows share an encoding.
pub fn row_digest(table: &str, id: &str, cells: &[Cell<'_>]) -> Hash {
    fn lp(h: &mut Sha256, bytes: &[u8]) {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    let mut h = Sha256::new();
    h.update(DOMAIN);
    lp(&mut h, table.as_bytes());
    lp(&mut h, id.as_bytes());
    h.update((cells.len() as u64).to_be_bytes());
    for cell in cells {
        match cell {
            Cell::Null => h.update([0u8]),
            Cell::Int(n) => {
                h.update([1u8]);
                lp(&mut h, &n.to_be_bytes());
            }
            Cell::Text(s) => {
                h.update([2u8]);
                lp(&mut h, s.as_bytes());
            }
            Cell::Blob(b) => {
                h.update([3u8]);
                lp(&mut h, b);
            }
        }
    }
    h.finalize().into()
}

/// A row's state after an operation, as recorded in its audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RowState {
    /// The table (`accounts`, `api_keys`, `operators`, `cases`, `notices`, `report_assessments`).
    pub table: String,
    /// The row's primary key.
    pub id: String,
    /// Hex row digest; `null` when the operation removed the row.
    pub digest: Option<String>,
}

impl RowState {
    pub fn new(table: &str, id: &str, digest: Option<Hash>) -> Self {
        Self { table: table.to_owned(), id: id.to_owned(), digest: digest.map(hex::encode) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoding_separates_columns_tables_and_types() {
        let a = row_digest("t", "1", &[Cell::Text("ab"), Cell::Text("c")]);
        let b = row_digest("t", "1", &[Cell::Text("a"), Cell::Text("bc")]);
        let c = row_digest("u", "1", &[Cell::Text("ab"), Cell::Text("c")]);
        let d = row_digest("t", "1", &[Cell::Blob(b"ab"), Cell::Text("c")]);
        let e = row_digest("t", "1", &[Cell::Null, Cell::Text("c")]);
        let f = row_digest("t", "1", &[Cell::Int(0), Cell::Text("c")]);
        let all = [a, b, c, d, e, f];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        assert_eq!(a, row_digest("t", "1", &[Cell::Text("ab"), Cell::Text("c")]));
    }
}
