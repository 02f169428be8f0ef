-- The hub's second schema: the twins of lab.db's schema version 6, steps in doubt settled by reading instruments
-- back (`record.settlements`) and the actual value of a parameter that came out other than asked
-- (`record.parameters.actual`), so a workcell's record keeps equalling its copy here row by row.

CREATE TABLE record.settlements (
    workcell text NOT NULL,
    id bigint NOT NULL,
    step_id bigint NOT NULL,
    at double precision NOT NULL,
    instrument text NOT NULL,
    decision text NOT NULL,
    observed text,
    reason text NOT NULL,
    evidence text NOT NULL,
    read_from double precision NOT NULL,
    PRIMARY KEY (workcell, id)
);

ALTER TABLE record.parameters ADD COLUMN actual double precision;
