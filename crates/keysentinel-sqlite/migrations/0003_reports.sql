-- keysentinel embedded store, schema 3: suspicious-matter report assessments (issue #5). Kept
-- apart from cases on purpose: what the owner may see of a case (notices, dispute evidence
-- packs) is built from the case, and must never reveal that a report was considered.
CREATE TABLE report_assessments (
    case_id     TEXT PRIMARY KEY,
    status      TEXT NOT NULL,
    deadline_ms INTEGER,
    opened_ms   INTEGER NOT NULL,
    doc         TEXT NOT NULL
);
CREATE INDEX report_assessments_by_deadline ON report_assessments(status, deadline_ms);
