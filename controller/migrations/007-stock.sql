-- Version 7: reagent stock, as append-only events, and restock requests (`lab restock`).
--
-- Each row of `stock_events` is one change to what a bottle holds as the controller knows it: `declared` (the lab
-- file's volume less its dead volume, when a campaign starts or resumes), `reserved` (an experiment set aside what
-- its dispenses will draw, before it started), `drawn` (a dispense drew it: its step, and the stock left after),
-- `released` (an experiment ended without drawing what it reserved), `refilled` (a technician topped the bottle up
-- or set it to a volume, through `lab restock`) and `adjusted` (the controller corrected its belief, with a note).
-- A dispense whose outcome is unknown is `drawn` in full with `unknown = 1`. `bottle` is the source's key: a pump's
-- name for its own reservoir, `valve:port` for a valve port. `stock` folds the events into what is left.
-- `operator_requests` gains `restock` (the bottle in `place`, microlitres in `volume`, `absolute` for a set level);
-- SQLite cannot change a CHECK constraint in place, so that table is rebuilt with its rows and ids unchanged.

CREATE TABLE stock_events (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    at REAL NOT NULL,
    bottle TEXT NOT NULL,
    reagent TEXT NOT NULL,
    kind TEXT NOT NULL
        CHECK (kind IN ('declared', 'reserved', 'drawn', 'released', 'refilled', 'adjusted')),
    volume_ul REAL NOT NULL,
    experiment_id INTEGER,
    step_id INTEGER,
    unknown INTEGER NOT NULL DEFAULT 0 CHECK (unknown IN (0, 1)),
    left_ul REAL,
    note TEXT NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX stock_events_by_bottle ON stock_events (campaign_id, bottle, id);

-- What each bottle held after its last event, per campaign: the `left_ul` of the last row that states it.
CREATE VIEW stock AS
SELECT s.campaign_id, s.bottle, s.reagent, s.left_ul, s.at
FROM stock_events s
WHERE s.id = (
    SELECT max(t.id) FROM stock_events t
    WHERE t.campaign_id = s.campaign_id AND t.bottle = s.bottle AND t.left_ul IS NOT NULL
);

CREATE TABLE operator_requests_v6 (
    id INTEGER PRIMARY KEY,
    made_at TEXT NOT NULL,
    campaign_id INTEGER,
    action TEXT NOT NULL
        CHECK (action = 'pause' OR action = 'resume' OR action = 'abort' OR action = 'confirm' OR action = 'clear'
            OR action = 'restock'),
    step_id INTEGER,
    verdict TEXT CHECK (verdict = 'done' OR verdict = 'not_done' OR verdict = 'failed'),
    place TEXT,
    who TEXT NOT NULL,
    reason TEXT NOT NULL,
    handled_at TEXT,
    volume REAL,
    absolute INTEGER CHECK (absolute IN (0, 1))
) STRICT;

INSERT INTO operator_requests_v6 (id, made_at, campaign_id, action, step_id, verdict, place, who, reason, handled_at)
SELECT id, made_at, campaign_id, action, step_id, verdict, place, who, reason, handled_at FROM operator_requests;

DROP TABLE operator_requests;
ALTER TABLE operator_requests_v6 RENAME TO operator_requests;
