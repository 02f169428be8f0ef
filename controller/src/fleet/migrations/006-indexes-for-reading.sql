-- The hub's sixth schema version: indexes for reading a campaign whole (`lab serve --hub`, `lab fleet verify`, the
-- mirror). The record's tables were keyed by (workcell, id) alone, so a campaign's steps were found by scanning all
-- of a workcell's steps once per experiment: on a hub of 3,000 experiments (24,000 steps) that one statement took
-- 7.2 s, past the 10 s bound of a hub's operations once the machine was busy, and `lab serve --hub` could not start
-- (BENCHMARKS.md, "Serve"). Each table is now reachable from the row that owns it.

CREATE INDEX experiments_by_campaign ON record.experiments (workcell, campaign_id);
CREATE INDEX parameters_by_experiment ON record.parameters (workcell, experiment_id);
CREATE INDEX steps_by_experiment ON record.steps (workcell, experiment_id);
CREATE INDEX step_events_by_step ON record.step_events (workcell, step_id);
CREATE INDEX proposals_by_campaign ON record.proposals (workcell, campaign_id);
CREATE INDEX decisions_by_campaign ON record.decisions (workcell, campaign_id);
CREATE INDEX commands_by_campaign ON record.commands (workcell, campaign_id);
CREATE INDEX events_by_campaign ON record.events (workcell, campaign_id);
