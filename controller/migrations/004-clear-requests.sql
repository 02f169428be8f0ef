-- Version 4: operators can clear a deck place (`lab clear`).
--
-- A vessel whose whereabouts the controller lost (a transfer in doubt, a vial that could not be carried back) keeps
-- every place it may stand at blocked. Once a person has looked and removed it, `lab clear PLACE` says so, as a row
-- here with `action = 'clear'` and the place in `place`. SQLite cannot change a CHECK constraint in place, so the
-- table is rebuilt with its rows and ids unchanged; no view or other table refers to it.

CREATE TABLE operator_requests_v4 (
    id INTEGER PRIMARY KEY,
    made_at TEXT NOT NULL,
    campaign_id INTEGER,
    action TEXT NOT NULL
        CHECK (action = 'pause' OR action = 'resume' OR action = 'abort' OR action = 'confirm' OR action = 'clear'),
    step_id INTEGER,
    verdict TEXT CHECK (verdict = 'done' OR verdict = 'not_done' OR verdict = 'failed'),
    place TEXT,
    who TEXT NOT NULL,
    reason TEXT NOT NULL,
    handled_at TEXT
) STRICT;

INSERT INTO operator_requests_v4 (id, made_at, campaign_id, action, step_id, verdict, place, who, reason, handled_at)
SELECT id, made_at, campaign_id, action, step_id, verdict, place, who, reason, handled_at FROM operator_requests;

DROP TABLE operator_requests;
ALTER TABLE operator_requests_v4 RENAME TO operator_requests;
