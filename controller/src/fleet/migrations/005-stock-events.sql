-- The hub's fifth schema version: a twin of each workcell's reagent stock (`record.stock_events`, the append-only
-- ledger of what each bottle held: declared, reserved, drawn, released, refilled, adjusted), so a fleet's stock is on
-- the hub like the record's other tables, equal to each workcell's `lab.db` row by row, and `lab fleet verify`
-- compares it with the journal's replay. Until now the hub held only the journal rows of stock events.

CREATE TABLE record.stock_events (
    workcell text NOT NULL,
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    at double precision NOT NULL,
    bottle text NOT NULL,
    reagent text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('declared', 'reserved', 'drawn', 'released', 'refilled', 'adjusted')),
    volume_ul double precision NOT NULL,
    experiment_id bigint,
    step_id bigint,
    unknown bigint NOT NULL DEFAULT 0 CHECK (unknown IN (0, 1)),
    left_ul double precision,
    note text NOT NULL DEFAULT '',
    PRIMARY KEY (workcell, id)
);

CREATE INDEX stock_events_by_bottle ON record.stock_events (workcell, campaign_id, bottle, id);

-- What each bottle held after its last event that states it, per workcell and campaign (`stock` in docs/record.md).
CREATE VIEW record.stock AS
SELECT s.workcell, s.campaign_id, s.bottle, s.reagent, s.left_ul, s.at
FROM record.stock_events s
WHERE s.id = (SELECT max(t.id) FROM record.stock_events t
              WHERE t.workcell = s.workcell AND t.campaign_id = s.campaign_id AND t.bottle = s.bottle
                AND t.left_ul IS NOT NULL);

-- The rows of the stock events the hub already holds in the journal: a workcell's `lab.db` numbers them in journal
-- order from 1 (the hub holds each workcell's journal from its first row), so they are numbered here the same way.
-- backfill begins
INSERT INTO record.stock_events (workcell, id, campaign_id, at, bottle, reagent, kind, volume_ul, experiment_id,
    step_id, unknown, left_ul, note)
SELECT j.workcell, row_number() OVER (PARTITION BY j.workcell ORDER BY j.id), (b ->> 'campaign')::bigint,
    (b ->> 'at')::double precision, b ->> 'bottle', b ->> 'reagent', b ->> 'kind', (b ->> 'volume')::double precision,
    (b ->> 'experiment')::bigint, (b ->> 'step')::bigint, CASE WHEN (b ->> 'unknown')::boolean THEN 1 ELSE 0 END,
    (b ->> 'left')::double precision, b ->> 'note'
FROM fleet.journal j CROSS JOIN LATERAL (SELECT j.body::jsonb AS b) body
WHERE j.kind = 'Stock';
-- backfill ends

GRANT SELECT, INSERT, UPDATE ON record.stock_events TO lab_workcell;
GRANT SELECT ON record.stock_events, record.stock TO lab_learner, lab_reader;
ALTER TABLE record.stock_events ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON record.stock_events TO lab_workcell
    USING (workcell IN (SELECT w.name FROM fleet.workcells w WHERE w.role = current_user))
    WITH CHECK (workcell IN (SELECT w.name FROM fleet.workcells w WHERE w.role = current_user));
CREATE POLICY every_row ON record.stock_events FOR SELECT TO lab_learner, lab_reader USING (true);
