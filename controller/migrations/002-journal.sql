-- Version 2: the tamper-evident journal, operator requests and reconciliations, and the "unknown" step state.
--
-- Every event the controller records is first appended to `journal`, whose rows form a SHA-256 hash chain; the other
-- tables are projections of the journal, updated in the same transaction, so `lab verify` can replay the journal and
-- name any row of any table that was edited, deleted or inserted afterwards.

CREATE TABLE journal (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER,
    at REAL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL
) STRICT;

CREATE TABLE checkpoints (
    id INTEGER PRIMARY KEY,
    journal_id INTEGER NOT NULL,
    hash TEXT NOT NULL,
    made_at TEXT NOT NULL,
    reason TEXT NOT NULL
) STRICT;

-- Requests from people to a running (or stopped) controller: pause, resume, abort, and confirmations of steps whose
-- outcome is unknown. The controller marks each one handled; the journal records what it did.
CREATE TABLE operator_requests (
    id INTEGER PRIMARY KEY,
    made_at TEXT NOT NULL,
    campaign_id INTEGER,
    action TEXT NOT NULL CHECK (action IN ('pause', 'resume', 'abort', 'confirm')),
    step_id INTEGER,
    verdict TEXT CHECK (verdict IN ('done', 'not_done', 'failed')),
    place TEXT,
    who TEXT NOT NULL,
    reason TEXT NOT NULL,
    handled_at TEXT
) STRICT;

-- Steps gain the 'unknown' state (a step that may have acted, whose outcome was never recorded), the task as it was
-- sent to the instrument (places resolved), and the attempt number (repeat-safe steps may be retried).
CREATE TABLE steps_v2 (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    step TEXT NOT NULL,
    op TEXT NOT NULL,
    action TEXT NOT NULL,
    after TEXT NOT NULL,
    repeat_safe INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('waiting', 'ready', 'running', 'succeeded', 'failed', 'skipped', 'unknown')),
    instrument TEXT,
    task TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    ready_at REAL,
    started_at REAL,
    finished_at REAL,
    outcome TEXT,
    error TEXT,
    UNIQUE (experiment_id, step)
) STRICT;

INSERT INTO steps_v2 (id, experiment_id, step, op, action, after, repeat_safe, status, instrument, ready_at, started_at,
                      finished_at, outcome, error)
SELECT id, experiment_id, step, op, action, after, repeat_safe, status, instrument, ready_at, started_at, finished_at,
       outcome, error
FROM steps;

DROP VIEW step_timeline;
DROP TABLE steps;
ALTER TABLE steps_v2 RENAME TO steps;
CREATE INDEX steps_by_experiment ON steps (experiment_id);

CREATE VIEW step_timeline AS
SELECT
    e.campaign_id,
    e.seq AS experiment,
    s.id AS step_id,
    s.step,
    s.op,
    s.instrument,
    s.status,
    s.attempt,
    s.ready_at,
    s.started_at,
    s.finished_at,
    s.finished_at - s.started_at AS duration,
    s.started_at - s.ready_at AS waited,
    s.error
FROM steps s
JOIN experiments e ON e.id = s.experiment_id;

-- One row per experiment with every parameter and every measured output as JSON objects, for notebooks.
CREATE VIEW experiment_view AS
SELECT
    e.campaign_id,
    c.name AS campaign,
    e.seq,
    e.id AS experiment_id,
    e.status,
    (SELECT json_group_object(p.name, p.value) FROM parameters p WHERE p.experiment_id = e.id) AS parameters,
    (SELECT json_group_object(m.name, m.value) FROM measurements m WHERE m.experiment_id = e.id) AS outputs,
    e.objective,
    c.objective_output,
    e.vessel,
    e.proposal_id,
    e.started_at,
    e.finished_at,
    e.finished_at - e.started_at AS duration,
    e.error
FROM experiments e
JOIN campaigns c ON c.id = e.campaign_id;

-- One row per instrument command, with its step and experiment.
CREATE VIEW command_log AS
SELECT
    k.campaign_id,
    k.id AS command_id,
    k.instrument,
    e.seq AS experiment,
    s.step,
    k.sent_at,
    k.replied_at,
    k.replied_at - k.sent_at AS latency,
    k.sent_text,
    k.received_text,
    k.parsed,
    k.error
FROM commands k
LEFT JOIN steps s ON s.id = k.step_id
LEFT JOIN experiments e ON e.id = s.experiment_id;
