-- keysentinel embedded store, schema 2: cases of suspected key sharing (issue #5).
CREATE TABLE cases (
    case_id    TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    account_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    stage      TEXT NOT NULL,
    opened_ms  INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
-- At most one case per key is not closed: new detections on the key move that case.
CREATE UNIQUE INDEX cases_live_per_key ON cases(key_id) WHERE status != 'closed';
CREATE INDEX cases_by_status ON cases(status, opened_ms);
CREATE INDEX cases_by_account ON cases(account_id, opened_ms);

-- Notices to key owners: an outbox, delivered at least once by the notifier.
CREATE TABLE notices (
    notice_id  TEXT PRIMARY KEY,
    case_id    TEXT NOT NULL,
    status     TEXT NOT NULL,
    next_ms    INTEGER NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX notices_due ON notices(status, next_ms);
CREATE INDEX notices_by_case ON notices(case_id);
