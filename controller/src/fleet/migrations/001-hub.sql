-- The hub's first schema: the fleet's coordination (schema `fleet`) and the verified copy of every workcell's record
-- (schema `record`). Migrations are append-only: never edit this file, add the next one. `lab fleet init` applies
-- them in order and writes the version to `fleet.schema`; a hub whose version is newer than a lab's is refused.
--
-- Every atomic step of the fleet is one PostgreSQL transaction, key or lock: a claim is one UPDATE of an open row
-- taken with FOR UPDATE SKIP LOCKED; shipping is idempotent on (workcell, journal id); the hash chain of each
-- workcell's journal is checked by a trigger as rows arrive; the learner holds an advisory lock per campaign.

CREATE SCHEMA IF NOT EXISTS fleet;
CREATE SCHEMA IF NOT EXISTS record;

CREATE TABLE fleet.schema (
    version integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    software text NOT NULL
);

-- A campaign the fleet runs: its files as the learner published them, and what a workcell must have to run it.
CREATE TABLE fleet.campaigns (
    name text PRIMARY KEY,
    campaign_path text NOT NULL,
    campaign_text text NOT NULL,
    campaign_sha256 text NOT NULL,
    protocol_path text NOT NULL,
    protocol_text text NOT NULL,
    protocol_sha256 text NOT NULL,
    needs text[] NOT NULL,
    budget integer NOT NULL,
    in_flight integer NOT NULL,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'finished')),
    stop_reason text,
    learner text,
    learner_epoch integer NOT NULL DEFAULT 0,
    learner_since timestamptz,
    published_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

-- A workcell: a lab PC with its own lab.db. `capabilities` are what its instruments offer (`kind:Hotplate`,
-- `instrument:pump_a`); a retired workcell may never claim again, and what it ships after is flagged.
CREATE TABLE fleet.workcells (
    name text PRIMARY KEY,
    lab_name text NOT NULL,
    lab_sha256 text NOT NULL,
    capabilities text[] NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    retired_by text,
    retired_reason text,
    conflict text
);

-- Each proposal of a campaign, and where it stands: open, claimed by one workcell under one epoch, started there,
-- and at last succeeded, failed, withdrawn (the learner stopped before anyone claimed it) or settled by an operator.
CREATE TABLE fleet.proposals (
    campaign text NOT NULL REFERENCES fleet.campaigns (name),
    seq bigint NOT NULL,
    state text NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'claimed', 'started', 'orphaned', 'succeeded', 'failed', 'withdrawn', 'settled')),
    epoch integer NOT NULL DEFAULT 0,
    workcell text REFERENCES fleet.workcells (name),
    needs text[] NOT NULL,
    params jsonb NOT NULL,
    proposal jsonb NOT NULL,
    published_at timestamptz NOT NULL DEFAULT now(),
    claimed_at timestamptz,
    started_at timestamptz,
    concluded_at timestamptz,
    objective double precision,
    outputs jsonb,
    note text,
    PRIMARY KEY (campaign, seq)
);
CREATE INDEX proposals_open ON fleet.proposals (campaign, seq) WHERE state = 'open';
CREATE INDEX proposals_held ON fleet.proposals (workcell) WHERE state IN ('claimed', 'started', 'orphaned');

-- Every claim ever made, and how it ended: a claim moves only by its workcell's journal (a result, a release) or by
-- an operator (retire, settle).
CREATE TABLE fleet.claims (
    campaign text NOT NULL,
    seq bigint NOT NULL,
    epoch integer NOT NULL,
    workcell text NOT NULL REFERENCES fleet.workcells (name),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz,
    ended text CHECK (ended IN ('released', 'refused', 'succeeded', 'failed', 'retired', 'settled')),
    PRIMARY KEY (campaign, seq, epoch),
    FOREIGN KEY (campaign, seq) REFERENCES fleet.proposals (campaign, seq)
);

-- Proposals a workcell found it cannot run (beyond an instrument's limit): it never claims them again.
CREATE TABLE fleet.refusals (
    campaign text NOT NULL,
    seq bigint NOT NULL,
    workcell text NOT NULL,
    reason text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign, seq, workcell)
);

-- Which local proposal and experiment of which workcell carry which fleet proposal, as the workcells' journals say.
CREATE TABLE fleet.links (
    workcell text NOT NULL,
    local_campaign bigint NOT NULL,
    local_proposal bigint NOT NULL,
    campaign text NOT NULL,
    seq bigint NOT NULL,
    epoch integer NOT NULL,
    local_experiment bigint,
    PRIMARY KEY (workcell, local_proposal)
);
CREATE UNIQUE INDEX links_by_experiment ON fleet.links (workcell, local_experiment);

-- Results, as they arrive in the workcells' journals, for the learner. A proposal has at most one result.
CREATE TABLE fleet.results (
    campaign text NOT NULL,
    seq bigint NOT NULL,
    workcell text NOT NULL,
    epoch integer NOT NULL,
    params jsonb NOT NULL,
    outputs jsonb,
    arrived_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    told integer,
    PRIMARY KEY (campaign, seq)
);
CREATE INDEX results_untold ON fleet.results (campaign) WHERE told IS NULL;

-- The learner's decisions, in order: each ask with how many results it had been told and the points it avoided,
-- so a standby rebuilds the same proposer by replaying them.
CREATE TABLE fleet.asks (
    campaign text NOT NULL,
    n integer NOT NULL,
    told integer NOT NULL,
    count integer NOT NULL,
    pending jsonb NOT NULL,
    first_seq bigint NOT NULL,
    learner text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (campaign, n)
);

-- What the hub saw that it must not merge: a retired workcell's results, results of a claim that moved on.
CREATE TABLE fleet.conflicts (
    id bigserial PRIMARY KEY,
    workcell text NOT NULL,
    journal_id bigint NOT NULL,
    campaign text,
    seq bigint,
    detail text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);

-- Journal rows the hub refused (they do not chain), with the workcell and the row.
CREATE TABLE fleet.rejections (
    id bigserial PRIMARY KEY,
    workcell text NOT NULL,
    journal_id bigint NOT NULL,
    detail text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);

-- The verified copy of each workcell's journal: the same columns as lab.db's `journal`, keyed by workcell.
CREATE TABLE fleet.journal (
    workcell text NOT NULL,
    id bigint NOT NULL,
    campaign_id bigint,
    at double precision,
    kind text NOT NULL,
    body text NOT NULL,
    hash text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workcell, id)
);

-- The hash of one journal row, exactly as `record::journal::chain_hash` computes it.
CREATE FUNCTION fleet.chain_hash(prev text, id bigint, campaign bigint, at double precision, kind text, body text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT encode(sha256(decode(prev, 'hex') || int8send(id) || int8send(coalesce(campaign, 0))
        || coalesce(float8send(at), '\xffffffffffffffff'::bytea) || convert_to(kind, 'UTF8') || '\x00'::bytea
        || convert_to(body, 'UTF8')), 'hex')
$$;

-- Refuses a journal row that does not follow the workcell's previous row: a gap, or a hash that does not chain.
CREATE FUNCTION fleet.check_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev text;
BEGIN
    IF NEW.id = 1 THEN
        prev := repeat('0', 64);
    ELSE
        SELECT hash INTO prev FROM fleet.journal WHERE workcell = NEW.workcell AND id = NEW.id - 1;
        IF prev IS NULL THEN
            RAISE EXCEPTION 'journal row % of workcell % does not follow the hub''s copy: row % is missing',
                NEW.id, NEW.workcell, NEW.id - 1 USING ERRCODE = 'data_exception';
        END IF;
    END IF;
    IF fleet.chain_hash(prev, NEW.id, NEW.campaign_id, NEW.at, NEW.kind, NEW.body) <> NEW.hash THEN
        RAISE EXCEPTION 'journal row % of workcell % does not chain: its hash is not the hash of its content after row %',
            NEW.id, NEW.workcell, NEW.id - 1 USING ERRCODE = 'data_exception';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER journal_chains BEFORE INSERT ON fleet.journal FOR EACH ROW EXECUTE FUNCTION fleet.check_chain();

CREATE TABLE fleet.checkpoints (
    workcell text NOT NULL,
    id bigint NOT NULL,
    journal_id bigint NOT NULL,
    hash text NOT NULL,
    made_at text NOT NULL,
    reason text NOT NULL,
    public_key text,
    signature text,
    PRIMARY KEY (workcell, id)
);

-- The twins of lab.db's tables (docs/record.md), each with the workcell whose record it copies.
CREATE TABLE record.campaigns (
    workcell text NOT NULL,
    id bigint NOT NULL,
    name text NOT NULL,
    started_at text NOT NULL,
    time_scale double precision NOT NULL,
    status text NOT NULL,
    finished_at double precision,
    software_version text NOT NULL,
    seed bigint NOT NULL,
    objective_output text NOT NULL,
    objective_direction text NOT NULL,
    budget bigint NOT NULL,
    in_flight bigint NOT NULL,
    campaign_path text NOT NULL,
    campaign_text text NOT NULL,
    campaign_sha256 text NOT NULL,
    protocol_path text NOT NULL,
    protocol_text text NOT NULL,
    protocol_sha256 text NOT NULL,
    lab_path text NOT NULL,
    lab_text text NOT NULL,
    lab_sha256 text NOT NULL,
    note text,
    PRIMARY KEY (workcell, id)
);

CREATE TABLE record.instruments (
    workcell text NOT NULL,
    campaign_id bigint NOT NULL,
    name text NOT NULL,
    kind text NOT NULL,
    driver text NOT NULL,
    port text NOT NULL,
    line text NOT NULL,
    status text NOT NULL,
    model text,
    serial text,
    firmware text,
    identity_raw text,
    error text,
    PRIMARY KEY (workcell, campaign_id, name)
);

CREATE TABLE record.proposals (
    workcell text NOT NULL,
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    at double precision NOT NULL,
    strategy text NOT NULL,
    params text NOT NULL,
    predicted_mean double precision,
    predicted_sd double precision,
    acquisition double precision,
    model text,
    reason text NOT NULL,
    PRIMARY KEY (workcell, id)
);

CREATE TABLE record.experiments (
    workcell text NOT NULL,
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    seq bigint NOT NULL,
    proposal_id bigint,
    params text NOT NULL,
    vessel bigint NOT NULL,
    status text NOT NULL,
    started_at double precision NOT NULL,
    finished_at double precision,
    objective double precision,
    error text,
    PRIMARY KEY (workcell, id)
);

CREATE TABLE record.parameters (
    workcell text NOT NULL,
    experiment_id bigint NOT NULL,
    name text NOT NULL,
    value double precision NOT NULL,
    unit text NOT NULL,
    PRIMARY KEY (workcell, experiment_id, name)
);

CREATE TABLE record.steps (
    workcell text NOT NULL,
    id bigint NOT NULL,
    experiment_id bigint NOT NULL,
    step text NOT NULL,
    op text NOT NULL,
    action text NOT NULL,
    after text NOT NULL,
    repeat_safe bigint NOT NULL,
    status text NOT NULL,
    instrument text,
    task text,
    attempt bigint NOT NULL DEFAULT 1,
    ready_at double precision,
    started_at double precision,
    finished_at double precision,
    outcome text,
    error text,
    PRIMARY KEY (workcell, id)
);

CREATE TABLE record.step_events (
    workcell text NOT NULL,
    id bigint NOT NULL,
    step_id bigint NOT NULL,
    at double precision NOT NULL,
    status text NOT NULL,
    instrument text,
    detail text,
    PRIMARY KEY (workcell, id)
);

CREATE TABLE record.decisions (
    workcell text NOT NULL,
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    at double precision NOT NULL,
    step_id bigint NOT NULL,
    instrument text NOT NULL,
    place text,
    waited double precision NOT NULL,
    reason text NOT NULL,
    PRIMARY KEY (workcell, id)
);

CREATE TABLE record.commands (
    workcell text NOT NULL,
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    instrument text NOT NULL,
    step_id bigint,
    sent_at double precision NOT NULL,
    sent bytea NOT NULL,
    sent_text text NOT NULL,
    replied_at double precision,
    received bytea NOT NULL,
    received_text text NOT NULL,
    parsed text,
    error text,
    PRIMARY KEY (workcell, id)
);

CREATE TABLE record.measurements (
    workcell text NOT NULL,
    id bigint NOT NULL,
    experiment_id bigint NOT NULL,
    step_id bigint NOT NULL,
    name text NOT NULL,
    value double precision NOT NULL,
    unit text NOT NULL,
    at double precision NOT NULL,
    PRIMARY KEY (workcell, id)
);
CREATE INDEX measurements_by_experiment ON record.measurements (workcell, experiment_id);

CREATE TABLE record.events (
    workcell text NOT NULL,
    id bigint NOT NULL,
    campaign_id bigint NOT NULL,
    at double precision NOT NULL,
    level text NOT NULL,
    instrument text,
    message text NOT NULL,
    PRIMARY KEY (workcell, id)
);

-- The views of docs/record.md, with the workcell, and for fleet campaigns the fleet's proposal number (`fleet_seq`).
CREATE VIEW record.experiment_results AS
SELECT
    e.workcell,
    e.campaign_id,
    c.name AS campaign,
    e.seq,
    l.seq AS fleet_seq,
    e.id AS experiment_id,
    e.status,
    e.params,
    e.objective,
    c.objective_output,
    e.vessel,
    e.started_at,
    e.finished_at,
    e.finished_at - e.started_at AS duration,
    e.error
FROM record.experiments e
JOIN record.campaigns c ON c.workcell = e.workcell AND c.id = e.campaign_id
LEFT JOIN fleet.links l ON l.workcell = e.workcell AND l.local_experiment = e.id;

CREATE VIEW record.step_timeline AS
SELECT
    e.workcell,
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
FROM record.steps s
JOIN record.experiments e ON e.workcell = s.workcell AND e.id = s.experiment_id;

CREATE VIEW record.experiment_view AS
SELECT
    e.workcell,
    e.campaign_id,
    c.name AS campaign,
    e.seq,
    l.seq AS fleet_seq,
    e.id AS experiment_id,
    e.status,
    (SELECT json_object_agg(p.name, p.value) FROM record.parameters p
     WHERE p.workcell = e.workcell AND p.experiment_id = e.id) AS parameters,
    (SELECT json_object_agg(m.name, m.value) FROM record.measurements m
     WHERE m.workcell = e.workcell AND m.experiment_id = e.id) AS outputs,
    e.objective,
    c.objective_output,
    e.vessel,
    e.proposal_id,
    e.started_at,
    e.finished_at,
    e.finished_at - e.started_at AS duration,
    e.error
FROM record.experiments e
JOIN record.campaigns c ON c.workcell = e.workcell AND c.id = e.campaign_id
LEFT JOIN fleet.links l ON l.workcell = e.workcell AND l.local_experiment = e.id;

CREATE VIEW record.command_log AS
SELECT
    k.workcell,
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
FROM record.commands k
LEFT JOIN record.steps s ON s.workcell = k.workcell AND s.id = k.step_id
LEFT JOIN record.experiments e ON e.workcell = s.workcell AND e.id = s.experiment_id;

-- Each workcell: when the hub last heard from it, how far its shipped journal reaches, what it holds.
CREATE VIEW fleet.workcell_status AS
SELECT
    w.name AS workcell,
    w.lab_name,
    w.last_seen,
    now() - w.last_seen AS silent_for,
    w.retired_at,
    w.conflict,
    (SELECT max(j.id) FROM fleet.journal j WHERE j.workcell = w.name) AS hub_head,
    (SELECT count(*) FROM fleet.proposals p WHERE p.workcell = w.name AND p.state = 'claimed') AS claimed,
    (SELECT count(*) FROM fleet.proposals p WHERE p.workcell = w.name AND p.state = 'started') AS started,
    (SELECT count(*) FROM fleet.proposals p WHERE p.workcell = w.name AND p.state = 'orphaned') AS orphaned,
    (SELECT count(*) FROM fleet.results r WHERE r.workcell = w.name) AS results
FROM fleet.workcells w;

-- Each campaign: how many proposals stand where.
CREATE VIEW fleet.campaign_progress AS
SELECT
    c.name AS campaign,
    c.status,
    c.budget,
    c.learner,
    count(p.seq) AS published,
    count(p.seq) FILTER (WHERE p.state = 'open') AS open,
    count(p.seq) FILTER (WHERE p.state IN ('claimed', 'started')) AS running,
    count(p.seq) FILTER (WHERE p.state = 'orphaned') AS orphaned,
    count(p.seq) FILTER (WHERE p.state = 'succeeded') AS succeeded,
    count(p.seq) FILTER (WHERE p.state = 'failed') AS failed,
    count(p.seq) FILTER (WHERE p.state IN ('withdrawn', 'settled')) AS withdrawn_or_settled
FROM fleet.campaigns c
LEFT JOIN fleet.proposals p ON p.campaign = c.name
GROUP BY c.name, c.status, c.budget, c.learner;

-- Claims up to `n` open proposals of campaign `camp` for workcell `wc`: those whose needs its capabilities cover and
-- that it has not refused, lowest number first, skipping rows another workcell is claiming at this moment. A retired
-- workcell may not claim.
CREATE FUNCTION fleet.claim(wc text, camp text, n integer)
RETURNS TABLE (seq bigint, epoch integer, params jsonb, proposal jsonb) LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    caps text[];
    retired timestamptz;
BEGIN
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

-- A workcell's journal says it recorded proposal `local_proposal` as the fleet's (camp, s) under epoch e.
CREATE FUNCTION fleet.on_proposal(wc text, local_camp bigint, local_proposal bigint, camp text, s bigint, e integer)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO fleet.links (workcell, local_campaign, local_proposal, campaign, seq, epoch)
    VALUES (wc, local_camp, local_proposal, camp, s, e) ON CONFLICT DO NOTHING
$$;

-- Whether the claim (camp, s, e) is still workcell wc's, and records a conflict (with the journal row) if not.
CREATE FUNCTION fleet.claim_holds(wc text, camp text, s bigint, e integer, states text[], journal_id bigint,
                                  what text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    p fleet.proposals%ROWTYPE;
    retired timestamptz;
BEGIN
    SELECT * INTO p FROM fleet.proposals WHERE campaign = camp AND seq = s FOR UPDATE;
    SELECT retired_at INTO retired FROM fleet.workcells WHERE name = wc;
    IF FOUND AND p.workcell = wc AND p.epoch = e AND p.state = ANY (states) AND retired IS NULL THEN
        RETURN true;
    END IF;
    INSERT INTO fleet.conflicts (workcell, journal_id, campaign, seq, detail)
    VALUES (wc, journal_id, camp, s, format('%s of proposal %s of campaign %s under claim epoch %s, but %s', what, s,
        camp, e, CASE
            WHEN retired IS NOT NULL THEN format('workcell %s was retired at %s', wc, retired)
            WHEN p.seq IS NULL THEN 'the hub has no such proposal'
            ELSE format('the proposal is %s (%s, epoch %s)', p.state, coalesce(p.workcell, 'no workcell'), p.epoch)
        END));
    UPDATE fleet.workcells SET conflict = coalesce(conflict, format('journal row %s: %s', journal_id, what))
    WHERE name = wc;
    RETURN false;
END
$$;

-- A workcell's journal says experiment `local_experiment` started from local proposal `local_proposal`.
CREATE FUNCTION fleet.on_started(wc text, local_proposal bigint, local_experiment bigint, journal_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    l fleet.links%ROWTYPE;
BEGIN
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

-- A workcell's journal says experiment `local_experiment` ended; its result goes to the learner if the claim holds.
CREATE FUNCTION fleet.on_finished(wc text, local_experiment bigint, ok boolean, objective double precision,
                                  error text, journal_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    l fleet.links%ROWTYPE;
    outs jsonb;
BEGIN
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

-- A workcell's journal says it gave back the claim (camp, s, e), unstarted; `refusal` says why it cannot run it.
CREATE FUNCTION fleet.on_released(wc text, camp text, s bigint, e integer, refusal text, journal_id bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
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

-- An operator's word that workcell `wc` will not act again: claims it never started (as far as its shipped journal
-- says) open again for others; those it started wait for `lab fleet settle`.
CREATE FUNCTION fleet.retire(wc text, who text, why text)
RETURNS TABLE (campaign text, seq bigint, state text) LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    UPDATE fleet.workcells SET retired_at = now(), retired_by = who, retired_reason = why
    WHERE name = wc AND retired_at IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'workcell % is not registered at this hub, or is retired already', wc
            USING ERRCODE = 'no_data_found';
    END IF;
    UPDATE fleet.claims c SET ended_at = now(), ended = 'retired'
    FROM fleet.proposals p
    WHERE p.workcell = wc AND p.state IN ('claimed', 'started') AND c.campaign = p.campaign AND c.seq = p.seq
      AND c.epoch = p.epoch AND c.ended IS NULL;
    RETURN QUERY
    UPDATE fleet.proposals p SET
        state = CASE WHEN p.state = 'claimed' THEN 'open' ELSE 'orphaned' END,
        workcell = CASE WHEN p.state = 'claimed' THEN NULL ELSE p.workcell END,
        note = format('workcell %s retired by %s: %s', wc, who, why)
    WHERE p.workcell = wc AND p.state IN ('claimed', 'started')
    RETURNING p.campaign, p.seq, p.state;
    PERFORM pg_notify('fleet_open', '');
END
$$;

-- An operator settles a proposal a retired workcell started: it ran (`done`: its result is lost with the workcell)
-- or it did not (it opens again for another workcell).
CREATE FUNCTION fleet.settle(camp text, s bigint, done boolean, who text, why text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    SELECT state INTO st FROM fleet.proposals WHERE campaign = camp AND seq = s FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'campaign % has no proposal %', camp, s USING ERRCODE = 'no_data_found';
    END IF;
    IF st <> 'orphaned' THEN
        RAISE EXCEPTION 'proposal % of campaign % is %, not orphaned: only proposals a retired workcell started are settled',
            s, camp, st USING ERRCODE = 'check_violation';
    END IF;
    UPDATE fleet.proposals SET
        state = CASE WHEN done THEN 'settled' ELSE 'open' END,
        workcell = CASE WHEN done THEN workcell ELSE NULL END,
        concluded_at = CASE WHEN done THEN now() END,
        note = format('settled %s by %s: %s', CASE WHEN done THEN 'done' ELSE 'not done' END, who, why)
    WHERE campaign = camp AND seq = s;
    PERFORM pg_notify('fleet_open', camp);
    RETURN CASE WHEN done THEN 'settled' ELSE 'open' END;
END
$$;
