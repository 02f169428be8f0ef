-- Version 6: steps in doubt settled by reading the instruments back.
--
-- When a step's outcome is in doubt (the controller stopped while it ran, or it failed after it may have acted), the
-- controller asks its instrument what state it is in and settles the step from the answer: it carries on (a plate
-- still heating), is done, is partly done (a stroke that stopped partway), never happened, or stays in doubt for the
-- policy. Each decision is a row here with what the instrument reported and the exchanges it rests on: the earlier
-- ones it names (`evidence`, a JSON list of `commands.id`), and the reading itself (the step's commands with this
-- instrument sent from `read_from` to `at`).
--
-- A value that came out other than asked (the volume a partial stroke moved) is kept beside the asked one in
-- `parameters.actual`: the learner is told the actual value, and the asked one is never overwritten.

CREATE TABLE settlements (
    id INTEGER PRIMARY KEY,
    step_id INTEGER NOT NULL REFERENCES steps (id),
    at REAL NOT NULL,
    instrument TEXT NOT NULL,
    decision TEXT NOT NULL
        CHECK (decision = 'resumed' OR decision = 'done' OR decision = 'partial' OR decision = 'overran'
               OR decision = 'not_done' OR decision = 'in_doubt' OR decision = 'contradiction'
               OR decision = 'unanswered'),
    observed TEXT,
    reason TEXT NOT NULL,
    evidence TEXT NOT NULL,
    read_from REAL NOT NULL
) STRICT;

CREATE INDEX settlements_by_step ON settlements (step_id);

ALTER TABLE parameters ADD COLUMN actual REAL;
