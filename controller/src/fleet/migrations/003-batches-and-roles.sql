-- The hub's third schema version: journal rows are checked a statement at a time, so a shipper can send a batch of
-- rows in one multi-row INSERT; and the fleet's roles, so that a workcell may write only its own rows.

-- The chain is checked after each INSERT statement, over every row it brought: each row must follow the workcell's
-- row before it (in the same statement or already at the hub) and hash to what it says. A row that does not is
-- named, and the whole statement (and its transaction) fails.
DROP TRIGGER journal_chains ON fleet.journal;
DROP FUNCTION fleet.check_chain();
CREATE FUNCTION fleet.check_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.workcell, n.id, (n.id <> 1 AND p.id IS NULL) AS missing INTO bad
    FROM arrived n
    LEFT JOIN fleet.journal p ON p.workcell = n.workcell AND p.id = n.id - 1
    WHERE (n.id <> 1 AND p.id IS NULL)
       OR fleet.chain_hash(CASE WHEN n.id = 1 THEN repeat('0', 64) ELSE p.hash END, n.id, n.campaign_id, n.at,
                           n.kind, n.body) IS DISTINCT FROM n.hash
    ORDER BY n.workcell, n.id
    LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF bad.missing THEN
        RAISE EXCEPTION 'journal row % of workcell % does not follow the hub''s copy: row % is missing',
            bad.id, bad.workcell, bad.id - 1 USING ERRCODE = 'data_exception';
    END IF;
    RAISE EXCEPTION 'journal row % of workcell % does not chain: its hash is not the hash of its content after row %',
        bad.id, bad.workcell, bad.id - 1 USING ERRCODE = 'data_exception';
END
$$;
CREATE TRIGGER journal_chains AFTER INSERT ON fleet.journal REFERENCING NEW TABLE AS arrived
    FOR EACH STATEMENT EXECUTE FUNCTION fleet.check_chain();

-- The fleet's roles. Three group roles, shared by every fleet database on the server; each machine or person logs in
-- with a role of its own, a member of one of them (`lab fleet grant`):
-- - lab_workcell: ships its own journal and checkpoints, writes its own rows of the `record` tables, claims and
--   releases in its own name only (row-level security and the checks in the functions below);
-- - lab_learner: publishes campaigns and proposals and tells results; reads everything;
-- - lab_reader: reads everything (scientists' notebooks, dashboards, `lab report --hub`).
-- The owner of the schema (the user that ran `lab fleet init`) may do everything, as before: a fleet run with one
-- login for all keeps working.
DO $$
BEGIN
    IF NOT (SELECT rolcreaterole OR rolsuper FROM pg_roles WHERE rolname = current_user)
       AND (SELECT count(*) FROM pg_roles WHERE rolname IN ('lab_workcell', 'lab_learner', 'lab_reader')) < 3 THEN
        RAISE EXCEPTION 'creating the fleet''s group roles needs CREATEROLE, which user % lacks: run `lab fleet init` once as a user that has it (such as postgres), or have an administrator run CREATE ROLE lab_workcell NOLOGIN; CREATE ROLE lab_learner NOLOGIN; CREATE ROLE lab_reader NOLOGIN; first', current_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lab_workcell') THEN
        CREATE ROLE lab_workcell NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lab_learner') THEN
        CREATE ROLE lab_learner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'lab_reader') THEN
        CREATE ROLE lab_reader NOLOGIN;
    END IF;
END
$$;

-- The login a workcell's rows belong to (set by `lab fleet grant NAME --as workcell`; NULL: the owner's only).
ALTER TABLE fleet.workcells ADD COLUMN role text UNIQUE;

-- Whether the session may act for workcell `wc`: a workcell's login only for its own workcell; any other session
-- that may call the fleet's functions at all (the owner) for every workcell. The login is `session_user`, which a
-- session cannot change (SET ROLE changes `current_user` only).
CREATE FUNCTION fleet.may_act_for(wc text) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
    SELECT NOT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                       JOIN pg_roles u ON u.oid = m.member
                       WHERE g.rolname = 'lab_workcell' AND u.rolname = session_user)
        OR EXISTS (SELECT 1 FROM fleet.workcells w WHERE w.name = wc AND w.role = session_user)
$$;

CREATE FUNCTION fleet.authorize(wc text) RETURNS void LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT fleet.may_act_for(wc) THEN
        RAISE EXCEPTION 'login % may not act for workcell %: a workcell''s login acts only for its own workcell',
            session_user, wc USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

-- Registers (or re-registers) workcell `wc` with its lab and capabilities; returns when and why it was retired, if
-- it was. A workcell's login registers only the workcell it was granted.
CREATE FUNCTION fleet.register(wc text, lab text, lab_sha text, caps text[]) RETURNS text LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    out text;
BEGIN
    IF NOT fleet.may_act_for(wc) THEN
        RAISE EXCEPTION 'login % may not register workcell %: an administrator grants it with `lab fleet grant % --as workcell`, and the workcell then logs in as %',
            session_user, wc, wc, wc USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO fleet.workcells (name, lab_name, lab_sha256, capabilities) VALUES (wc, lab, lab_sha, caps)
    ON CONFLICT (name) DO UPDATE SET lab_name = EXCLUDED.lab_name, lab_sha256 = EXCLUDED.lab_sha256,
        capabilities = EXCLUDED.capabilities, last_seen = now()
    RETURNING CASE WHEN retired_at IS NOT NULL THEN format('at %s by %s: %s', retired_at, retired_by, retired_reason) END
        INTO out;
    RETURN out;
END
$$;

-- The hub heard from workcell `wc`.
CREATE FUNCTION fleet.seen(wc text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM fleet.authorize(wc);
    UPDATE fleet.workcells SET last_seen = now() WHERE name = wc;
END
$$;

-- The functions of 001 a workcell calls, again, now run with the owner's rights and only for the caller's own
-- workcell.
CREATE OR REPLACE FUNCTION fleet.claim(wc text, camp text, n integer)
RETURNS TABLE (seq bigint, epoch integer, params jsonb, proposal jsonb) LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
DECLARE
    caps text[];
    retired timestamptz;
BEGIN
    PERFORM fleet.authorize(wc);
    UPDATE fleet.workcells w SET last_seen = now() WHERE w.name = wc RETURNING w.capabilities, w.retired_at
        INTO caps, retired;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workcell % is not registered at this hub', wc USING ERRCODE = 'no_data_found';
    END IF;
    IF retired IS NOT NULL THEN
        RAISE EXCEPTION 'workcell % was retired at %: it may not claim', wc, retired USING ERRCODE = 'check_violation';
    END IF;
    RETURN QUERY
    WITH picked AS (
        SELECT p.campaign, p.seq FROM fleet.proposals p
        WHERE p.campaign = camp AND p.state = 'open' AND p.needs <@ caps
          AND NOT EXISTS (SELECT 1 FROM fleet.refusals r
                          WHERE r.campaign = p.campaign AND r.seq = p.seq AND r.workcell = wc)
        ORDER BY p.seq
        LIMIT n
        FOR UPDATE SKIP LOCKED
    ), claimed AS (
        UPDATE fleet.proposals p SET state = 'claimed', workcell = wc, epoch = p.epoch + 1, claimed_at = now()
        FROM picked WHERE p.campaign = picked.campaign AND p.seq = picked.seq
        RETURNING p.seq, p.epoch, p.params, p.proposal
    ), logged AS (
        INSERT INTO fleet.claims (campaign, seq, epoch, workcell) SELECT camp, c.seq, c.epoch, wc FROM claimed c
    )
    SELECT c.seq, c.epoch, c.params, c.proposal FROM claimed c ORDER BY c.seq;
END
$$;

CREATE OR REPLACE FUNCTION fleet.on_proposal(wc text, local_camp bigint, local_proposal bigint, camp text, s bigint,
                                             e integer)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM fleet.authorize(wc);
    INSERT INTO fleet.links (workcell, local_campaign, local_proposal, campaign, seq, epoch)
    VALUES (wc, local_camp, local_proposal, camp, s, e) ON CONFLICT DO NOTHING;
END
$$;

CREATE OR REPLACE FUNCTION fleet.on_started(wc text, local_proposal bigint, local_experiment bigint,
                                            journal_id bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l fleet.links%ROWTYPE;
BEGIN
    PERFORM fleet.authorize(wc);
    UPDATE fleet.links SET local_experiment = on_started.local_experiment
    WHERE workcell = wc AND links.local_proposal = on_started.local_proposal RETURNING * INTO l;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF fleet.claim_holds(wc, l.campaign, l.seq, l.epoch, ARRAY['claimed'], journal_id, 'a start') THEN
        UPDATE fleet.proposals SET state = 'started', started_at = now() WHERE campaign = l.campaign AND seq = l.seq;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION fleet.on_finished(wc text, local_experiment bigint, ok boolean, objective double precision,
                                             error text, journal_id bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l fleet.links%ROWTYPE;
    outs jsonb;
BEGIN
    PERFORM fleet.authorize(wc);
    SELECT * INTO l FROM fleet.links WHERE workcell = wc AND links.local_experiment = on_finished.local_experiment;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF NOT fleet.claim_holds(wc, l.campaign, l.seq, l.epoch, ARRAY['claimed', 'started'], journal_id, 'a result') THEN
        RETURN;
    END IF;
    IF ok THEN
        SELECT jsonb_object_agg(m.name, m.value) INTO outs FROM (
            SELECT DISTINCT ON (name) name, value FROM record.measurements
            WHERE workcell = wc AND experiment_id = local_experiment ORDER BY name, id DESC) m;
    END IF;
    UPDATE fleet.proposals SET state = CASE WHEN ok THEN 'succeeded' ELSE 'failed' END, concluded_at = now(),
        objective = on_finished.objective, outputs = outs, note = error
    WHERE campaign = l.campaign AND seq = l.seq;
    UPDATE fleet.claims SET ended_at = now(), ended = CASE WHEN ok THEN 'succeeded' ELSE 'failed' END
    WHERE campaign = l.campaign AND seq = l.seq AND epoch = l.epoch;
    INSERT INTO fleet.results (campaign, seq, workcell, epoch, params, outputs)
    SELECT l.campaign, l.seq, wc, l.epoch, p.params, outs FROM fleet.proposals p
    WHERE p.campaign = l.campaign AND p.seq = l.seq
    ON CONFLICT DO NOTHING;
    PERFORM pg_notify('fleet_result', l.campaign);
END
$$;

CREATE OR REPLACE FUNCTION fleet.on_released(wc text, camp text, s bigint, e integer, refusal text, journal_id bigint)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM fleet.authorize(wc);
    IF refusal IS NOT NULL THEN
        INSERT INTO fleet.refusals (campaign, seq, workcell, reason) VALUES (camp, s, wc, refusal)
        ON CONFLICT DO NOTHING;
    END IF;
    IF NOT fleet.claim_holds(wc, camp, s, e, ARRAY['claimed'], journal_id, 'a release') THEN
        RETURN;
    END IF;
    UPDATE fleet.proposals SET state = 'open', workcell = NULL, claimed_at = NULL WHERE campaign = camp AND seq = s;
    UPDATE fleet.claims SET ended_at = now(), ended = CASE WHEN refusal IS NULL THEN 'released' ELSE 'refused' END
    WHERE campaign = camp AND seq = s AND epoch = e;
    PERFORM pg_notify('fleet_open', camp);
END
$$;

-- Creates login `login` (or gives it a new password) as a member of group lab_<kind>; for a workcell, the workcell
-- of that name belongs to it. `verifier` is a SCRAM-SHA-256 verifier computed by the client, so the password itself
-- never reaches the server or its logs. Run by the owner, with CREATEROLE.
CREATE FUNCTION fleet.grant_login(login text, verifier text, kind text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    grp text := 'lab_' || kind;
BEGIN
    IF kind NOT IN ('workcell', 'learner', 'reader') THEN
        RAISE EXCEPTION 'a login is granted as workcell, learner or reader, not %', kind
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = login) THEN
        IF NOT EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
                       JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = grp AND u.rolname = login) THEN
            RAISE EXCEPTION 'a role % exists already on this server and is not a lab %: choose another name', login, kind
                USING ERRCODE = 'duplicate_object';
        END IF;
        EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', login, verifier);
    ELSE
        EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L IN ROLE %I', login, verifier, grp);
    END IF;
    IF kind = 'workcell' THEN
        IF EXISTS (SELECT 1 FROM fleet.workcells WHERE name = login AND role IS DISTINCT FROM login
                   AND EXISTS (SELECT 1 FROM fleet.journal j WHERE j.workcell = login)) THEN
            RAISE EXCEPTION 'workcell % has shipped rows under another login; it keeps it', login
                USING ERRCODE = 'duplicate_object';
        END IF;
        INSERT INTO fleet.workcells (name, lab_name, lab_sha256, capabilities, role) VALUES (login, '', '', '{}', login)
        ON CONFLICT (name) DO UPDATE SET role = EXCLUDED.role;
    END IF;
END
$$;

-- What each group may do. Functions are executable by everyone unless revoked: those that change the fleet are
-- revoked, then granted to the groups that call them (the owner may call all).
REVOKE EXECUTE ON FUNCTION fleet.claim(text, text, integer), fleet.on_proposal(text, bigint, bigint, text, bigint, integer),
    fleet.on_started(text, bigint, bigint, bigint), fleet.on_finished(text, bigint, boolean, double precision, text, bigint),
    fleet.on_released(text, text, bigint, integer, text, bigint), fleet.register(text, text, text, text[]),
    fleet.seen(text), fleet.retire(text, text, text), fleet.settle(text, bigint, boolean, text, text),
    fleet.grant_login(text, text, text), fleet.claim_holds(text, text, bigint, integer, text[], bigint, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION fleet.claim(text, text, integer), fleet.on_proposal(text, bigint, bigint, text, bigint, integer),
    fleet.on_started(text, bigint, bigint, bigint), fleet.on_finished(text, bigint, boolean, double precision, text, bigint),
    fleet.on_released(text, text, bigint, integer, text, bigint), fleet.register(text, text, text, text[]),
    fleet.seen(text) TO lab_workcell;

GRANT USAGE ON SCHEMA fleet, record TO lab_workcell, lab_learner, lab_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA fleet, record TO lab_learner, lab_reader;
GRANT INSERT, UPDATE ON fleet.campaigns, fleet.proposals, fleet.asks TO lab_learner;
GRANT UPDATE ON fleet.results TO lab_learner;
GRANT SELECT ON fleet.schema, fleet.campaigns, fleet.proposals, fleet.workcells TO lab_workcell;
GRANT SELECT, INSERT ON fleet.journal, fleet.checkpoints, fleet.rejections TO lab_workcell;
GRANT USAGE ON SEQUENCE fleet.rejections_id_seq TO lab_workcell;
GRANT SELECT, INSERT, UPDATE ON record.campaigns, record.instruments, record.proposals, record.experiments,
    record.parameters, record.steps, record.step_events, record.decisions, record.measurements, record.commands,
    record.events, record.settlements TO lab_workcell;

-- Row-level security: a workcell's login sees and writes only its own workcell's rows of the journal, the
-- checkpoints and the record's tables; learners and readers see every row. (The owner is not subject to it.)
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['fleet.journal', 'fleet.checkpoints', 'fleet.rejections', 'record.campaigns',
        'record.instruments', 'record.proposals', 'record.experiments', 'record.parameters', 'record.steps',
        'record.step_events', 'record.decisions', 'record.measurements', 'record.commands', 'record.events',
        'record.settlements']
    LOOP
        EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY own_rows ON %s TO lab_workcell
            USING (workcell IN (SELECT w.name FROM fleet.workcells w WHERE w.role = current_user))
            WITH CHECK (workcell IN (SELECT w.name FROM fleet.workcells w WHERE w.role = current_user))', t);
        EXECUTE format('CREATE POLICY every_row ON %s FOR SELECT TO lab_learner, lab_reader USING (true)', t);
    END LOOP;
END
$$;
