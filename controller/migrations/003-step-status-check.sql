-- Version 3: `steps` checks its status with comparisons instead of an IN list.
--
-- SQLite evaluates `status IN (<seven values>)` by building a temporary index of the list each time a statement that
-- writes a step's status runs, and every state change of every step writes one; that made the check the largest
-- single cost of recording. The comparisons below allow exactly the same values. A table other tables refer to
-- cannot change a constraint in place, so the table is rebuilt with its rows, ids, index and views unchanged.

CREATE TABLE steps_v3 (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    step TEXT NOT NULL,
    op TEXT NOT NULL,
    action TEXT NOT NULL,
    after TEXT NOT NULL,
    repeat_safe INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status = 'waiting' OR status = 'ready' OR status = 'running' OR status = 'succeeded'
               OR status = 'failed' OR status = 'skipped' OR status = 'unknown'),
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

INSERT INTO steps_v3 (id, experiment_id, step, op, action, after, repeat_safe, status, instrument, task, attempt,
                      ready_at, started_at, finished_at, outcome, error)
SELECT id, experiment_id, step, op, action, after, repeat_safe, status, instrument, task, attempt, ready_at,
       started_at, finished_at, outcome, error
FROM steps;

DROP VIEW step_timeline;
DROP VIEW command_log;
DROP TABLE steps;
ALTER TABLE steps_v3 RENAME TO steps;
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
