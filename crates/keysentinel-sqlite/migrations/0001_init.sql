-- keysentinel embedded store, schema 1.
-- Rows keep their full document as JSON in `doc`; the other columns are for lookups and filters.

CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE accounts (
    account_id   TEXT PRIMARY KEY,
    segment      TEXT NOT NULL,
    verification TEXT NOT NULL,
    doc          TEXT NOT NULL
);

CREATE TABLE api_keys (
    access_key    TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(account_id),
    status        TEXT NOT NULL,
    vendor_id     TEXT,
    expires_ms    INTEGER NOT NULL,
    doc           TEXT NOT NULL,
    sealed_secret BLOB
);
CREATE INDEX api_keys_by_account ON api_keys(account_id, status);
CREATE INDEX api_keys_by_expiry ON api_keys(status, expires_ms);

CREATE TABLE operators (
    operator_id TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    token_hash  BLOB NOT NULL UNIQUE,
    disabled    INTEGER NOT NULL,
    doc         TEXT NOT NULL
);

-- The audit log. `entry` is the exact text that was hashed; `leaf` its RFC 6962 leaf hash.
CREATE TABLE audit_log (
    seq   INTEGER PRIMARY KEY,
    entry TEXT NOT NULL,
    leaf  BLOB NOT NULL
);
-- Signed tree heads, one per commit that appended entries.
CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL
);

-- Append-only, against bugs (not against someone with write access to the file: that is what
-- the hashes and signatures are for).
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
