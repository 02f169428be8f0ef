-- The first version of the lab.db schema. Migrations are append-only: never edit this file, add the next one.
-- Times named `*_at` of type REAL are lab seconds since the campaign's start (campaigns.started_at, wall clock UTC);
-- in a simulated campaign lab time runs `campaigns.time_scale` times faster than the wall.

CREATE TABLE campaigns (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    started_at TEXT NOT NULL,
    time_scale REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'aborted', 'failed')),
    finished_at REAL,
    software_version TEXT NOT NULL,
    seed INTEGER NOT NULL,
    objective_output TEXT NOT NULL,
    objective_direction TEXT NOT NULL CHECK (objective_direction IN ('maximize', 'minimize')),
    budget INTEGER NOT NULL,
    in_flight INTEGER NOT NULL,
    campaign_path TEXT NOT NULL,
    campaign_text TEXT NOT NULL,
    campaign_sha256 TEXT NOT NULL,
    protocol_path TEXT NOT NULL,
    protocol_text TEXT NOT NULL,
    protocol_sha256 TEXT NOT NULL,
    lab_path TEXT NOT NULL,
    lab_text TEXT NOT NULL,
    lab_sha256 TEXT NOT NULL,
    note TEXT
) STRICT;

CREATE TABLE instruments (
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    driver TEXT NOT NULL,
    port TEXT NOT NULL,
    line TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ready', 'offline')),
    model TEXT,
    serial TEXT,
    firmware TEXT,
    identity_raw TEXT,
    error TEXT,
    PRIMARY KEY (campaign_id, name)
) STRICT;

CREATE TABLE proposals (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    at REAL NOT NULL,
    strategy TEXT NOT NULL,
    params TEXT NOT NULL,
    predicted_mean REAL,
    predicted_sd REAL,
    acquisition REAL,
    model TEXT,
    reason TEXT NOT NULL
) STRICT;

CREATE TABLE experiments (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    seq INTEGER NOT NULL,
    proposal_id INTEGER REFERENCES proposals (id),
    params TEXT NOT NULL,
    vessel INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at REAL NOT NULL,
    finished_at REAL,
    objective REAL,
    error TEXT,
    UNIQUE (campaign_id, seq)
) STRICT;

CREATE TABLE parameters (
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    PRIMARY KEY (experiment_id, name)
) STRICT;

CREATE TABLE steps (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    step TEXT NOT NULL,
    op TEXT NOT NULL,
    action TEXT NOT NULL,
    after TEXT NOT NULL,
    repeat_safe INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('waiting', 'ready', 'running', 'succeeded', 'failed', 'skipped')),
    instrument TEXT,
    ready_at REAL,
    started_at REAL,
    finished_at REAL,
    outcome TEXT,
    error TEXT,
    UNIQUE (experiment_id, step)
) STRICT;

CREATE TABLE step_events (
    id INTEGER PRIMARY KEY,
    step_id INTEGER NOT NULL REFERENCES steps (id),
    at REAL NOT NULL,
    status TEXT NOT NULL,
    instrument TEXT,
    detail TEXT
) STRICT;

CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    at REAL NOT NULL,
    step_id INTEGER NOT NULL REFERENCES steps (id),
    instrument TEXT NOT NULL,
    place TEXT,
    waited REAL NOT NULL,
    reason TEXT NOT NULL
) STRICT;

CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    instrument TEXT NOT NULL,
    step_id INTEGER REFERENCES steps (id),
    sent_at REAL NOT NULL,
    sent BLOB NOT NULL,
    sent_text TEXT NOT NULL,
    replied_at REAL,
    received BLOB NOT NULL,
    received_text TEXT NOT NULL,
    parsed TEXT,
    error TEXT
) STRICT;

CREATE TABLE measurements (
    id INTEGER PRIMARY KEY,
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    step_id INTEGER NOT NULL REFERENCES steps (id),
    name TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL,
    at REAL NOT NULL
) STRICT;

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    at REAL NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('info', 'warning', 'error')),
    instrument TEXT,
    message TEXT NOT NULL
) STRICT;

CREATE INDEX commands_by_step ON commands (step_id);
CREATE INDEX commands_by_instrument ON commands (campaign_id, instrument, sent_at);
CREATE INDEX steps_by_experiment ON steps (experiment_id);
CREATE INDEX experiments_by_campaign ON experiments (campaign_id, seq);

-- One row per experiment, with its parameters as JSON, its objective and its times.
CREATE VIEW experiment_results AS
SELECT
    e.campaign_id,
    c.name AS campaign,
    e.seq,
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
FROM experiments e
JOIN campaigns c ON c.id = e.campaign_id;

-- One row per step, with its experiment and the instrument that ran it.
CREATE VIEW step_timeline AS
SELECT
    e.campaign_id,
    e.seq AS experiment,
    s.id AS step_id,
    s.step,
    s.op,
    s.instrument,
    s.status,
    s.ready_at,
    s.started_at,
    s.finished_at,
    s.finished_at - s.started_at AS duration,
    s.started_at - s.ready_at AS waited,
    s.error
FROM steps s
JOIN experiments e ON e.id = s.experiment_id;
