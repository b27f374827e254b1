-- keysentinel embedded store, schema 4: the approved-vendor registry and counterparties
-- (issue #13). Both are state tables bound to the audit log like every other (src/state.rs).
CREATE TABLE vendors (
    vendor_id     TEXT PRIMARY KEY,
    status        TEXT NOT NULL,
    recert_due_ms INTEGER,
    doc           TEXT NOT NULL
);
-- The lapse sweep: approved vendors by recertification date.
CREATE INDEX vendors_by_recertification ON vendors(status, recert_due_ms);
-- Keys by vendor: what a vendor's lapse restricts, and its exposure.
CREATE INDEX api_keys_by_vendor ON api_keys(vendor_id) WHERE vendor_id IS NOT NULL;

CREATE TABLE counterparties (
    counterparty_id TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    account_id      TEXT NOT NULL,
    from_ms         INTEGER NOT NULL,
    until_ms        INTEGER,
    doc             TEXT NOT NULL
);
CREATE INDEX counterparties_by_account ON counterparties(account_id);
-- The sweep that tells detection when a record begins or stops being in effect.
CREATE INDEX counterparties_by_from ON counterparties(from_ms);
CREATE INDEX counterparties_by_until ON counterparties(until_ms);
