//! The hub's twins of `lab.db`'s tables: each journal row a workcell ships, projected as `record::project` projects it
//! into `lab.db`, with the workcell's name in every key; and the fleet's own bookkeeping that a row carries (a claim
//! recorded, an experiment started or ended, a claim released).
//!
//! This is the one place that repeats `record/project.rs`, in PostgreSQL's dialect, so the two can drift: the fleet
//! suite checks that the hub's tables equal each workcell's `lab.db` row by row, and `lab fleet verify` replays the
//! hub's copy of each journal through `record/project.rs` and compares. Values are the ones the SQLite projection
//! stores, computed by the same code (JSON text by the same serializer), and the ids SQLite assigns to rows without
//! one of their own (step events, decisions, measurements, commands, events, settlements, stock events) are assigned
//! here in the
//! same order, from the largest id the hub holds for the workcell ([`AutoIds`]).
//!
//! A shipped batch of rows becomes a few statements, not a few per row ([`Batch`]): the rows of each table are
//! gathered into arrays and inserted by one `INSERT ... SELECT FROM unnest(...)`, and the state changes of a step
//! (ready, running, ended) are merged into one change per step, as applying them one after another would leave it.
//! Inserts go before the changes that follow them, and a result's measurements before the fleet's bookkeeping that
//! reads them, so the tables end as applying the rows one by one would leave them. The
//! statements are prepared once per connection ([`Statements`]) and sent pipelined, each with its values owned, so
//! a batch costs about one round trip.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement};

use crate::record::RecordEvent;

/// One pipelined statement of a batch.
pub type Pending<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// A statement's values, owned so the statement can wait in a pipeline.
pub type Values = Vec<Box<dyn ToSql + Sync + Send>>;

macro_rules! values {
    ($($v:expr),* $(,)?) => { vec![$(Box::new($v) as Box<dyn tokio_postgres::types::ToSql + Sync + Send>),*] };
}
pub(crate) use values;

/// Rows of one table gathered for one multi-row insert: a vector per column, sent as arrays.
macro_rules! rows {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Default)]
        struct $name {
            n: usize,
            $($field: Vec<$ty>,)*
        }

        impl $name {
            #[allow(clippy::too_many_arguments)]
            fn push(&mut self, $($field: $ty),*) {
                self.n += 1;
                $(self.$field.push($field);)*
            }

            /// The gathered columns after the workcell's name, leaving this empty; `None` when nothing was gathered.
            fn take(&mut self, workcell: &str) -> Option<Values> {
                if self.n == 0 {
                    return None;
                }
                let t = std::mem::take(self);
                Some(values![workcell.to_owned(), $(t.$field),*])
            }
        }
    };
}

rows!(
    /// `fleet.journal`.
    JournalRows { id: i64, campaign: Option<i64>, at: Option<f64>, kind: String, body: String, hash: String }
);
rows!(
    /// `record.proposals`.
    ProposalRows {
        id: i64,
        campaign: i64,
        at: f64,
        strategy: String,
        params: String,
        mean: Option<f64>,
        sd: Option<f64>,
        acquisition: Option<f64>,
        model: Option<String>,
        reason: String,
    }
);
rows!(
    /// `record.experiments`.
    ExperimentRows {
        id: i64,
        campaign: i64,
        seq: i64,
        proposal: Option<i64>,
        params: String,
        vessel: i64,
        started_at: f64,
    }
);
rows!(
    /// `record.parameters`.
    ParameterRows { experiment: i64, name: String, value: f64, unit: String }
);
rows!(
    /// `record.steps`.
    StepRows {
        id: i64,
        experiment: i64,
        step: String,
        op: String,
        action: String,
        after: String,
        repeat_safe: i64,
        status: String,
        ready_at: Option<f64>,
    }
);
rows!(
    /// `record.step_events`.
    StepEventRows { id: i64, step: i64, at: f64, status: String, instrument: Option<String>, detail: Option<String> }
);
rows!(
    /// `record.decisions`.
    DecisionRows {
        id: i64,
        campaign: i64,
        at: f64,
        step: i64,
        instrument: String,
        place: Option<String>,
        waited: f64,
        reason: String,
    }
);
rows!(
    /// `record.measurements`.
    MeasurementRows { id: i64, experiment: i64, step: i64, name: String, value: f64, unit: String, at: f64 }
);
rows!(
    /// `record.commands`.
    CommandRows {
        id: i64,
        campaign: i64,
        instrument: String,
        step: Option<i64>,
        sent_at: f64,
        sent: Vec<u8>,
        sent_text: String,
        replied_at: Option<f64>,
        received: Vec<u8>,
        received_text: String,
        parsed: Option<String>,
        error: Option<String>,
    }
);
rows!(
    /// `record.events`.
    EventRows { id: i64, campaign: i64, at: f64, level: String, instrument: Option<String>, message: String }
);
rows!(
    /// `record.stock_events`.
    StockRows {
        id: i64,
        campaign: i64,
        at: f64,
        bottle: String,
        reagent: String,
        kind: String,
        volume: f64,
        experiment: Option<i64>,
        step: Option<i64>,
        unknown: i64,
        left: Option<f64>,
        note: String,
    }
);
rows!(
    /// Merged state changes of `record.steps`, one per step ([`StepChange`]).
    StepChangeRows {
        id: i64,
        status: String,
        set_ready: bool,
        ready_at: Option<f64>,
        set_started: bool,
        started_at: Option<f64>,
        set_finished: bool,
        finished_at: Option<f64>,
        instrument: Option<String>,
        task: Option<String>,
        attempt: Option<i64>,
        outcome: Option<String>,
        error: Option<String>,
    }
);

/// What a run of state changes does to one step's row, merged: `record/project.rs` sets the time column each state
/// starts (`running` also clears `finished_at`), and each of the other columns only when the change carries a value,
/// so the last value given wins and a column no change gave keeps what the row holds.
#[derive(Debug, Clone, Default)]
struct StepChange {
    status: String,
    ready_at: Option<f64>,
    started_at: Option<f64>,
    finished_at: Option<Option<f64>>,
    instrument: Option<String>,
    task: Option<String>,
    attempt: Option<i64>,
    outcome: Option<String>,
    error: Option<String>,
}

impl StepChange {
    #[allow(clippy::too_many_arguments)]
    fn then(
        &mut self,
        status: &str,
        at: f64,
        instrument: &Option<String>,
        task: &Option<String>,
        attempt: Option<i64>,
        outcome: &Option<String>,
        error: &Option<String>,
    ) {
        status.clone_into(&mut self.status);
        match status {
            "ready" => self.ready_at = Some(at),
            "running" => {
                self.started_at = Some(at);
                self.finished_at = Some(None);
            }
            _ => self.finished_at = Some(Some(at)),
        }
        let keep = |mine: &mut Option<String>, given: &Option<String>| {
            if given.is_some() {
                mine.clone_from(given);
            }
        };
        keep(&mut self.instrument, instrument);
        keep(&mut self.task, task);
        keep(&mut self.outcome, outcome);
        keep(&mut self.error, error);
        if attempt.is_some() {
            self.attempt = attempt;
        }
    }
}

/// The statements a shipper uses, prepared once per connection.
pub struct Statements {
    journal: Statement,
    /// A checkpoint.
    pub checkpoint: Statement,
    campaign: Statement,
    instrument: Statement,
    proposals: Statement,
    experiments: Statement,
    parameters: Statement,
    steps: Statement,
    step_events: Statement,
    decisions: Statement,
    measurements: Statement,
    commands: Statement,
    events: Statement,
    stock_events: Statement,
    step_changes: Statement,
    experiment_finished: Statement,
    settlement: Statement,
    actual: Statement,
    campaign_finished: Statement,
    on_proposal: Statement,
    on_started: Statement,
    on_finished: Statement,
    on_released: Statement,
}

impl Statements {
    /// Prepares every statement on `client`.
    pub async fn prepare(client: &Client) -> Result<Statements, tokio_postgres::Error> {
        // `$1` is the workcell; the other parameters are arrays, one element per row.
        let insert = |table: &str, columns: &str, types: &str| {
            let n = types.split(',').count();
            let arrays: Vec<String> =
                types.split(',').enumerate().map(|(i, t)| format!("${}::{}[]", i + 2, t.trim())).collect();
            debug_assert_eq!(n, columns.split(',').count());
            format!("INSERT INTO {table} (workcell, {columns}) SELECT $1, * FROM unnest({})", arrays.join(", "))
        };
        Ok(Statements {
            journal: client
                .prepare(&insert(
                    "fleet.journal",
                    "id, campaign_id, at, kind, body, hash",
                    "bigint, bigint, float8, text, text, text",
                ))
                .await?,
            checkpoint: client
                .prepare(
                    "INSERT INTO fleet.checkpoints (workcell, id, journal_id, hash, made_at, reason, public_key, signature)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                )
                .await?,
            campaign: client
                .prepare(
                    "INSERT INTO record.campaigns (workcell, id, name, started_at, time_scale, status, software_version,
                         seed, objective_output, objective_direction, budget, in_flight, campaign_path, campaign_text,
                         campaign_sha256, protocol_path, protocol_text, protocol_sha256, lab_path, lab_text, lab_sha256)
                     VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                         $18, $19, $20)",
                )
                .await?,
            instrument: client
                .prepare(
                    "INSERT INTO record.instruments (workcell, campaign_id, name, kind, driver, port, line, status,
                         model, serial, firmware, identity_raw, error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                     ON CONFLICT (workcell, campaign_id, name) DO UPDATE SET kind = EXCLUDED.kind,
                         driver = EXCLUDED.driver, port = EXCLUDED.port, line = EXCLUDED.line,
                         status = EXCLUDED.status, model = EXCLUDED.model, serial = EXCLUDED.serial,
                         firmware = EXCLUDED.firmware, identity_raw = EXCLUDED.identity_raw, error = EXCLUDED.error",
                )
                .await?,
            proposals: client
                .prepare(&insert(
                    "record.proposals",
                    "id, campaign_id, at, strategy, params, predicted_mean, predicted_sd, acquisition, model, reason",
                    "bigint, bigint, float8, text, text, float8, float8, float8, text, text",
                ))
                .await?,
            experiments: client
                .prepare(
                    "INSERT INTO record.experiments (workcell, id, campaign_id, seq, proposal_id, params, vessel,
                         started_at, status)
                     SELECT $1, u.*, 'running' FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                         $6::text[], $7::bigint[], $8::float8[]) AS u",
                )
                .await?,
            parameters: client
                .prepare(&insert("record.parameters", "experiment_id, name, value, unit", "bigint, text, float8, text"))
                .await?,
            steps: client
                .prepare(&insert(
                    "record.steps",
                    "id, experiment_id, step, op, action, after, repeat_safe, status, ready_at",
                    "bigint, bigint, text, text, text, text, bigint, text, float8",
                ))
                .await?,
            step_events: client
                .prepare(&insert(
                    "record.step_events",
                    "id, step_id, at, status, instrument, detail",
                    "bigint, bigint, float8, text, text, text",
                ))
                .await?,
            decisions: client
                .prepare(&insert(
                    "record.decisions",
                    "id, campaign_id, at, step_id, instrument, place, waited, reason",
                    "bigint, bigint, float8, bigint, text, text, float8, text",
                ))
                .await?,
            measurements: client
                .prepare(&insert(
                    "record.measurements",
                    "id, experiment_id, step_id, name, value, unit, at",
                    "bigint, bigint, bigint, text, float8, text, float8",
                ))
                .await?,
            commands: client
                .prepare(&insert(
                    "record.commands",
                    "id, campaign_id, instrument, step_id, sent_at, sent, sent_text, replied_at, received, \
                     received_text, parsed, error",
                    "bigint, bigint, text, bigint, float8, bytea, text, float8, bytea, text, text, text",
                ))
                .await?,
            events: client
                .prepare(&insert(
                    "record.events",
                    "id, campaign_id, at, level, instrument, message",
                    "bigint, bigint, float8, text, text, text",
                ))
                .await?,
            stock_events: client
                .prepare(&insert(
                    "record.stock_events",
                    "id, campaign_id, at, bottle, reagent, kind, volume_ul, experiment_id, step_id, unknown, left_ul, \
                     note",
                    "bigint, bigint, float8, text, text, text, float8, bigint, bigint, bigint, float8, text",
                ))
                .await?,
            step_changes: client
                .prepare(
                    "UPDATE record.steps s SET status = c.status,
                         ready_at = CASE WHEN c.set_ready THEN c.ready_at ELSE s.ready_at END,
                         started_at = CASE WHEN c.set_started THEN c.started_at ELSE s.started_at END,
                         finished_at = CASE WHEN c.set_finished THEN c.finished_at ELSE s.finished_at END,
                         instrument = coalesce(c.instrument, s.instrument), task = coalesce(c.task, s.task),
                         attempt = coalesce(c.attempt, s.attempt), outcome = coalesce(c.outcome, s.outcome),
                         error = coalesce(c.error, s.error)
                     FROM unnest($2::bigint[], $3::text[], $4::bool[], $5::float8[], $6::bool[], $7::float8[],
                                 $8::bool[], $9::float8[], $10::text[], $11::text[], $12::bigint[], $13::text[],
                                 $14::text[])
                         AS c(id, status, set_ready, ready_at, set_started, started_at, set_finished, finished_at,
                              instrument, task, attempt, outcome, error)
                     WHERE s.workcell = $1 AND s.id = c.id",
                )
                .await?,
            experiment_finished: client
                .prepare(
                    "UPDATE record.experiments SET status = $3, finished_at = $4, objective = $5, error = $6
                     WHERE workcell = $1 AND id = $2",
                )
                .await?,
            settlement: client
                .prepare(
                    "INSERT INTO record.settlements (workcell, id, step_id, at, instrument, decision, observed, reason,
                         evidence, read_from) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await?,
            actual: client
                .prepare(
                    "UPDATE record.parameters SET actual = $4 WHERE workcell = $1 AND experiment_id = $2 AND name = $3",
                )
                .await?,
            campaign_finished: client
                .prepare(
                    "UPDATE record.campaigns SET status = $3, finished_at = $4, note = $5 WHERE workcell = $1 AND id = $2",
                )
                .await?,
            on_proposal: client.prepare("SELECT fleet.on_proposal($1, $2, $3, $4, $5, $6)").await?,
            on_started: client.prepare("SELECT fleet.on_started($1, $2, $3, $4)").await?,
            on_finished: client.prepare("SELECT fleet.on_finished($1, $2, $3, $4, $5, $6)").await?,
            on_released: client.prepare("SELECT fleet.on_released($1, $2, $3, $4, $5, $6)").await?,
        })
    }
}

/// The next id of each table whose rows SQLite numbers itself, for one workcell.
#[derive(Debug, Clone, Copy, Default)]
pub struct AutoIds {
    step_events: i64,
    decisions: i64,
    measurements: i64,
    commands: i64,
    events: i64,
    settlements: i64,
    stock_events: i64,
}

impl AutoIds {
    /// Reads the largest ids the hub holds for `workcell`.
    pub async fn read(client: &Client, workcell: &str) -> Result<AutoIds, tokio_postgres::Error> {
        let row = client
            .query_one(
                "SELECT (SELECT coalesce(max(id), 0) FROM record.step_events WHERE workcell = $1),
                        (SELECT coalesce(max(id), 0) FROM record.decisions WHERE workcell = $1),
                        (SELECT coalesce(max(id), 0) FROM record.measurements WHERE workcell = $1),
                        (SELECT coalesce(max(id), 0) FROM record.commands WHERE workcell = $1),
                        (SELECT coalesce(max(id), 0) FROM record.events WHERE workcell = $1),
                        (SELECT coalesce(max(id), 0) FROM record.settlements WHERE workcell = $1),
                        (SELECT coalesce(max(id), 0) FROM record.stock_events WHERE workcell = $1)",
                &[&workcell],
            )
            .await?;
        Ok(AutoIds {
            step_events: row.get(0),
            decisions: row.get(1),
            measurements: row.get(2),
            commands: row.get(3),
            events: row.get(4),
            settlements: row.get(5),
            stock_events: row.get(6),
        })
    }
}

fn next(id: &mut i64) -> i64 {
    *id += 1;
    *id
}

/// The statements that ship one batch of a workcell's journal and project it: the journal rows, the tables' rows
/// gathered per table, and the fleet's bookkeeping in journal order ([`Batch::statements`]).
pub struct Batch<'s> {
    st: &'s Statements,
    workcell: String,
    ids: AutoIds,
    journal: JournalRows,
    proposals: ProposalRows,
    experiments: ExperimentRows,
    parameters: ParameterRows,
    steps: StepRows,
    step_events: StepEventRows,
    decisions: DecisionRows,
    measurements: MeasurementRows,
    commands: CommandRows,
    events: EventRows,
    stock_events: StockRows,
    /// Rare inserts, in order, before the gathered ones (a campaign's row).
    first: Vec<(&'s Statement, Values)>,
    /// Merged state changes of steps, by step.
    changes: BTreeMap<i64, StepChange>,
    /// Other changes, in journal order, after the inserts (an instrument's row, an experiment's or campaign's end).
    then: Vec<(&'s Statement, Values)>,
    /// Statements ready to send, in order.
    out: Vec<(&'s Statement, Values)>,
}

impl<'s> Batch<'s> {
    /// An empty batch for `workcell`, numbering rows after `ids`.
    pub fn new(st: &'s Statements, workcell: &str, ids: AutoIds) -> Batch<'s> {
        Batch {
            st,
            workcell: workcell.to_owned(),
            ids,
            journal: JournalRows::default(),
            proposals: ProposalRows::default(),
            experiments: ExperimentRows::default(),
            parameters: ParameterRows::default(),
            steps: StepRows::default(),
            step_events: StepEventRows::default(),
            decisions: DecisionRows::default(),
            measurements: MeasurementRows::default(),
            commands: CommandRows::default(),
            events: EventRows::default(),
            stock_events: StockRows::default(),
            first: Vec::new(),
            changes: BTreeMap::new(),
            then: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Adds journal row `id` and its projection.
    pub fn add(
        &mut self,
        id: i64,
        campaign: Option<i64>,
        at: Option<f64>,
        kind: &str,
        body: &str,
        hash: &str,
        event: &RecordEvent,
    ) {
        self.journal.push(id, campaign, at, kind.to_owned(), body.to_owned(), hash.to_owned());
        self.project(id, event);
    }

    /// Adds a call of the fleet's bookkeeping, to run in journal order. What it reads must be in first: the links
    /// and claims only these calls write (so their order is enough), and a result's measurements (so the
    /// measurements gathered so far go first). The other tables' rows may wait for the end of the batch.
    fn barrier(&mut self, statement: &'s Statement, values: Values) {
        if let Some(v) = self.measurements.take(&self.workcell) {
            self.out.push((&self.st.measurements, v));
        }
        self.out.push((statement, values));
    }

    /// Moves everything gathered into the statements to send: rare inserts, then every table's rows, then the
    /// changes, so each change finds the rows it changes.
    fn flush(&mut self) {
        let st = self.st;
        let wc = self.workcell.clone();
        self.out.append(&mut self.first);
        let gathered = [
            (&st.proposals, self.proposals.take(&wc)),
            (&st.experiments, self.experiments.take(&wc)),
            (&st.parameters, self.parameters.take(&wc)),
            (&st.steps, self.steps.take(&wc)),
            (&st.step_events, self.step_events.take(&wc)),
            (&st.decisions, self.decisions.take(&wc)),
            (&st.measurements, self.measurements.take(&wc)),
            (&st.commands, self.commands.take(&wc)),
            (&st.events, self.events.take(&wc)),
            (&st.stock_events, self.stock_events.take(&wc)),
        ];
        for (statement, values) in gathered {
            if let Some(v) = values {
                self.out.push((statement, v));
            }
        }
        if !self.changes.is_empty() {
            let mut rows = StepChangeRows::default();
            for (id, c) in std::mem::take(&mut self.changes) {
                rows.push(
                    id,
                    c.status,
                    c.ready_at.is_some(),
                    c.ready_at,
                    c.started_at.is_some(),
                    c.started_at,
                    c.finished_at.is_some(),
                    c.finished_at.flatten(),
                    c.instrument,
                    c.task,
                    c.attempt,
                    c.outcome,
                    c.error,
                );
            }
            if let Some(v) = rows.take(&wc) {
                self.out.push((&st.step_changes, v));
            }
        }
        self.out.append(&mut self.then);
    }

    /// Every statement of the batch, in the order to send them (the journal's rows first, so a row that does not
    /// chain is the first error), and the ids numbered after it.
    pub fn statements(mut self) -> (Vec<(&'s Statement, Values)>, AutoIds) {
        self.flush();
        let mut all = Vec::with_capacity(self.out.len() + 1);
        if let Some(v) = self.journal.take(&self.workcell) {
            all.push((&self.st.journal, v));
        }
        all.append(&mut self.out);
        (all, self.ids)
    }

    /// Gathers what `event` (journal row `journal_id`) does to the hub's tables, then the fleet's bookkeeping it
    /// carries.
    fn project(&mut self, journal_id: i64, event: &RecordEvent) {
        let st = self.st;
        let wc = self.workcell.clone();
        match event {
            RecordEvent::CampaignStarted(c) => self.first.push((
                &st.campaign,
                values![
                    wc,
                    c.id,
                    c.name.clone(),
                    c.started_at.clone(),
                    c.time_scale,
                    c.software_version.clone(),
                    c.seed as i64,
                    c.objective_output.clone(),
                    c.objective_direction.clone(),
                    c.budget as i64,
                    c.in_flight as i64,
                    c.campaign.0.clone(),
                    c.campaign.1.clone(),
                    crate::record::sha256_hex(c.campaign.1.as_bytes()),
                    c.protocol.0.clone(),
                    c.protocol.1.clone(),
                    crate::record::sha256_hex(c.protocol.1.as_bytes()),
                    c.lab.0.clone(),
                    c.lab.1.clone(),
                    crate::record::sha256_hex(c.lab.1.as_bytes()),
                ],
            )),
            RecordEvent::Instrument { campaign, name, kind, driver, port, line, identity, error } => self.then.push((
                &st.instrument,
                values![
                    wc,
                    *campaign,
                    name.clone(),
                    kind.clone(),
                    driver.clone(),
                    port.clone(),
                    line.clone(),
                    if error.is_some() { "offline" } else { "ready" }.to_owned(),
                    identity.as_ref().map(|i| i.model.clone()),
                    identity.as_ref().and_then(|i| i.serial.clone()),
                    identity.as_ref().and_then(|i| i.firmware.clone()),
                    identity.as_ref().map(|i| i.raw.clone()),
                    error.clone(),
                ],
            )),
            RecordEvent::Proposal { id, campaign, at, proposal } => {
                self.proposals.push(
                    *id,
                    *campaign,
                    *at,
                    proposal.strategy.clone(),
                    serde_json::to_string(&proposal.params).unwrap_or_default(),
                    proposal.predicted_mean,
                    proposal.predicted_sd,
                    proposal.acquisition,
                    crate::record::project::model_text(proposal),
                    proposal.reason.clone(),
                );
                if let Some(c) = &proposal.claim {
                    let v = values![wc, *campaign, *id, c.campaign.clone(), c.seq, c.epoch as i32];
                    self.barrier(&st.on_proposal, v);
                }
            }
            RecordEvent::ExperimentStarted { id, campaign, seq, proposal, params, vessel, at, steps } => {
                let json: serde_json::Map<String, serde_json::Value> =
                    params.iter().map(|(n, v, _)| (n.clone(), serde_json::json!(v))).collect();
                self.experiments.push(
                    *id,
                    *campaign,
                    *seq,
                    *proposal,
                    serde_json::Value::Object(json).to_string(),
                    *vessel,
                    *at,
                );
                for (name, value, unit) in params {
                    self.parameters.push(*id, name.clone(), *value, unit.clone());
                }
                for s in steps {
                    let status = if s.ready { "ready" } else { "waiting" };
                    self.steps.push(
                        s.id,
                        *id,
                        s.step.clone(),
                        s.op.clone(),
                        s.action.clone(),
                        serde_json::to_string(&s.after).unwrap_or_default(),
                        i64::from(s.repeat_safe),
                        status.to_owned(),
                        s.ready.then_some(*at),
                    );
                    let n = next(&mut self.ids.step_events);
                    self.step_events.push(n, s.id, *at, status.to_owned(), None, None);
                }
                if let Some(p) = proposal {
                    self.barrier(&st.on_started, values![wc, *p, *id, journal_id]);
                }
            }
            RecordEvent::StepAdded { experiment, at, step: s, why } => {
                self.steps.push(
                    s.id,
                    *experiment,
                    s.step.clone(),
                    s.op.clone(),
                    s.action.clone(),
                    serde_json::to_string(&s.after).unwrap_or_default(),
                    i64::from(s.repeat_safe),
                    "ready".to_owned(),
                    Some(*at),
                );
                let n = next(&mut self.ids.step_events);
                self.step_events.push(n, s.id, *at, "ready".to_owned(), None, Some(why.clone()));
            }
            RecordEvent::StepStatus { step, at, status, instrument, task, attempt, outcome, error } => {
                self.changes.entry(*step).or_default().then(
                    status,
                    *at,
                    instrument,
                    task,
                    attempt.map(i64::from),
                    outcome,
                    error,
                );
                let n = next(&mut self.ids.step_events);
                let detail = error.as_ref().or(outcome.as_ref()).or(task.as_ref()).cloned();
                self.step_events.push(n, *step, *at, status.to_string(), instrument.clone(), detail);
            }
            RecordEvent::Decision { campaign, at, step, instrument, place, waited, reason } => {
                let n = next(&mut self.ids.decisions);
                self.decisions.push(
                    n,
                    *campaign,
                    *at,
                    *step,
                    instrument.clone(),
                    place.clone(),
                    *waited,
                    reason.clone(),
                );
            }
            RecordEvent::Measurement { experiment, step, name, value, unit, at } => {
                let n = next(&mut self.ids.measurements);
                self.measurements.push(n, *experiment, *step, name.clone(), *value, unit.clone(), *at);
            }
            RecordEvent::ExperimentFinished { id, at, objective, error } => {
                let status = if error.is_some() { "failed" } else { "succeeded" };
                let v = values![wc.clone(), *id, status.to_owned(), *at, *objective, error.clone()];
                self.then.push((&st.experiment_finished, v));
                // The result's outputs are read from the measurements: everything before it must be in.
                let v = values![wc, *id, error.is_none(), *objective, error.clone(), journal_id];
                self.barrier(&st.on_finished, v);
            }
            RecordEvent::Command { campaign, instrument, step, sent_at, sent, replied_at, received, parsed, error } => {
                let n = next(&mut self.ids.commands);
                self.commands.push(
                    n,
                    *campaign,
                    instrument.clone(),
                    *step,
                    *sent_at,
                    sent.0.clone(),
                    crate::record::printable(&sent.0),
                    *replied_at,
                    received.0.clone(),
                    crate::record::printable(&received.0),
                    parsed.clone(),
                    error.clone(),
                );
            }
            RecordEvent::Event { campaign, at, level, instrument, message } => {
                let n = next(&mut self.ids.events);
                self.events.push(n, *campaign, *at, level.clone(), instrument.clone(), message.clone());
            }
            RecordEvent::Settled { step, at, instrument, decision, observed, reason, evidence, read_from, actual } => {
                // Rare (a step in doubt settled by reading its instrument back): one row each, after the batch's
                // inserts, so the parameter whose actual value it gives is there.
                let n = next(&mut self.ids.settlements);
                let evidence = serde_json::to_string(evidence).unwrap_or_else(|_| "[]".to_owned());
                let v = values![
                    wc.clone(),
                    n,
                    *step,
                    *at,
                    instrument.clone(),
                    decision.clone(),
                    observed.clone(),
                    reason.clone(),
                    evidence,
                    *read_from
                ];
                self.then.push((&st.settlement, v));
                if let Some((experiment, name, value)) = actual {
                    self.then.push((&st.actual, values![wc, *experiment, name.clone(), *value]));
                }
            }
            RecordEvent::Stock {
                campaign,
                at,
                bottle,
                reagent,
                kind,
                volume,
                experiment,
                step,
                unknown,
                left,
                note,
            } => {
                let n = next(&mut self.ids.stock_events);
                self.stock_events.push(
                    n,
                    *campaign,
                    *at,
                    bottle.clone(),
                    reagent.clone(),
                    kind.clone(),
                    *volume,
                    *experiment,
                    *step,
                    i64::from(*unknown),
                    *left,
                    note.clone(),
                );
            }
            RecordEvent::RequestHandled { .. } => {
                // lab.db marks the person's request row handled; the hub holds no request rows (people write them
                // into the workcell's lab.db, outside the journal), so nothing changes here.
            }
            RecordEvent::ClaimReleased { claim, reason, refused, .. } => {
                let v = values![
                    wc,
                    claim.campaign.clone(),
                    claim.seq,
                    claim.epoch as i32,
                    refused.then(|| reason.clone()),
                    journal_id
                ];
                self.barrier(&st.on_released, v);
            }
            RecordEvent::CampaignFinished { campaign, at, status, note } => {
                self.then.push((&st.campaign_finished, values![wc, *campaign, status.clone(), *at, note.clone()]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_step_changes_leave_the_row_as_changes_one_by_one_would() {
        let none = None::<String>;
        let mut c = StepChange::default();
        c.then("ready", 1.0, &none, &none, None, &none, &none);
        c.then("running", 2.0, &Some("hotplate_1".into()), &Some("{task}".into()), Some(1), &none, &none);
        c.then("failed", 3.0, &none, &none, None, &none, &Some("timeout".into()));
        c.then("running", 4.0, &none, &Some("{task 2}".into()), Some(2), &none, &none);
        assert_eq!(c.status, "running");
        assert_eq!((c.ready_at, c.started_at, c.finished_at), (Some(1.0), Some(4.0), Some(None)));
        assert_eq!(c.instrument.as_deref(), Some("hotplate_1"));
        assert_eq!((c.task.as_deref(), c.attempt), (Some("{task 2}"), Some(2)));
        // An error once given stays (coalesce keeps it), as in lab.db.
        assert_eq!(c.error.as_deref(), Some("timeout"));
        c.then("succeeded", 5.0, &none, &none, None, &Some("{done}".into()), &none);
        assert_eq!((c.finished_at, c.outcome.as_deref()), (Some(Some(5.0)), Some("{done}")));
    }
}
