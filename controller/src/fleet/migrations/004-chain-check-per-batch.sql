-- The hub's fourth schema version: the chain check of a statement's rows costs the same however large the hub's copy
-- grows. Version 3 joined the arrived rows to `fleet.journal` to find each row's predecessor, which the planner,
-- knowing nothing of the transition table, could do by reading the whole journal into a hash table: 31 ms of a 39 ms
-- check of 4,096 rows against 37,000 at the hub, and catch-up on one hub fell from 22,000 to 8,500 rows a second as
-- its journal grew to 200,000 rows (BENCHMARKS.md, "Fleet"). Now each arrived row takes its predecessor's hash from
-- the row before it in the same statement, and only the first row of each workcell's run looks the hub's copy up, by
-- its key.
CREATE OR REPLACE FUNCTION fleet.check_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    WITH n AS (
        SELECT a.workcell, a.id, a.campaign_id, a.at, a.kind, a.body, a.hash,
               CASE WHEN a.id = 1 THEN repeat('0', 64)
                    WHEN lag(a.id) OVER w = a.id - 1 THEN lag(a.hash) OVER w
                    WHEN lag(a.id) OVER w IS NULL THEN
                        (SELECT p.hash FROM fleet.journal p WHERE p.workcell = a.workcell AND p.id = a.id - 1)
               END AS prev
        FROM arrived a
        WINDOW w AS (PARTITION BY a.workcell ORDER BY a.id)
    )
    SELECT n.workcell, n.id, n.prev IS NULL AS missing INTO bad
    FROM n
    WHERE n.prev IS NULL
       OR fleet.chain_hash(n.prev, n.id, n.campaign_id, n.at, n.kind, n.body) IS DISTINCT FROM n.hash
    ORDER BY n.workcell, n.id
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'data_exception', MESSAGE = CASE
            WHEN bad.missing THEN format('journal row %s of workcell %s does not follow the hub''s copy: row %s is missing',
                                         bad.id, bad.workcell, bad.id - 1)
            ELSE format('journal row %s of workcell %s does not chain: its hash is not the hash of its content after row %s',
                        bad.id, bad.workcell, bad.id - 1)
        END;
    END IF;
    RETURN NULL;
END
$$;
