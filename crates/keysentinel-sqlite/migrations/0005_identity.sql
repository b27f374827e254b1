-- keysentinel embedded store, schema 5: who stands behind an account and operates its keys
-- (issue #13, item 1): beneficial owners, representatives, named operators, desks, systems.
-- A state table bound to the audit log like every other (src/state.rs).
CREATE TABLE parties (
    party_id   TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    kind       TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX parties_by_account ON parties(account_id);
