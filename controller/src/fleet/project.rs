//! The hub's twins of `lab.db`'s tables: each journal row a workcell ships, projected as `record::project` projects it
//! into `lab.db`, with the workcell's name in every key; and the fleet's own bookkeeping that a row carries (a claim
//! recorded, an experiment started or ended, a claim released).
//!
//! This is the one place that repeats `record/project.rs`, in PostgreSQL's dialect, so the two can drift: the fleet
//! suite checks that the hub's tables equal each workcell's `lab.db` row by row. Values are the ones the SQLite
//! projection stores, computed by the same code (JSON text by the same serializer), and the ids SQLite assigns to
//! rows without one of their own (step events, decisions, measurements, commands, events, settlements) are assigned
//! here in the same order, from the largest id the hub holds for the workcell ([`AutoIds`]).
//!
//! Statements are prepared once per connection ([`Statements`]) and sent pipelined, each with its values owned, so a
//! batch of rows costs about one round trip.

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Statement, Transaction};

use crate::record::RecordEvent;

/// One pipelined statement of a batch.
pub type Pending<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// A statement's values, owned so the statement can wait in a pipeline.
pub type Values = Vec<Box<dyn ToSql + Sync + Send>>;

macro_rules! values {
    ($($v:expr),* $(,)?) => { vec![$(Box::new($v) as Box<dyn tokio_postgres::types::ToSql + Sync + Send>),*] };
}
pub(crate) use values;

/// The statements a shipper uses, prepared once per connection.
pub struct Statements {
    /// A journal row.
    pub journal: Statement,
    /// A checkpoint.
    pub checkpoint: Statement,
    campaign: Statement,
    instrument: Statement,
    proposal: Statement,
    experiment: Statement,
    parameter: Statement,
    step: Statement,
    step_event: Statement,
    step_ready: Statement,
    step_running: Statement,
    step_ended: Statement,
    step_event_detail: Statement,
    decision: Statement,
    measurement: Statement,
    experiment_finished: Statement,
    command: Statement,
    event: Statement,
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
        let step_update = |times: &str| {
            format!(
                "UPDATE record.steps SET status = $3, {times}, instrument = coalesce($5, instrument),
                     task = coalesce($6, task), attempt = coalesce($7, attempt), outcome = coalesce($8, outcome),
                     error = coalesce($9, error) WHERE workcell = $1 AND id = $2"
            )
        };
        Ok(Statements {
            journal: client
                .prepare(
                    "INSERT INTO fleet.journal (workcell, id, campaign_id, at, kind, body, hash)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
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
            proposal: client
                .prepare(
                    "INSERT INTO record.proposals (workcell, id, campaign_id, at, strategy, params, predicted_mean,
                         predicted_sd, acquisition, model, reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .await?,
            experiment: client
                .prepare(
                    "INSERT INTO record.experiments (workcell, id, campaign_id, seq, proposal_id, params, vessel, status,
                         started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8)",
                )
                .await?,
            parameter: client
                .prepare(
                    "INSERT INTO record.parameters (workcell, experiment_id, name, value, unit)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .await?,
            step: client
                .prepare(
                    "INSERT INTO record.steps (workcell, id, experiment_id, step, op, action, after, repeat_safe, status,
                         ready_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await?,
            step_event: client
                .prepare(
                    "INSERT INTO record.step_events (workcell, id, step_id, at, status, instrument, detail)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .await?,
            step_ready: client.prepare(&step_update("ready_at = $4")).await?,
            step_running: client.prepare(&step_update("started_at = $4, finished_at = NULL")).await?,
            step_ended: client.prepare(&step_update("finished_at = $4")).await?,
            step_event_detail: client
                .prepare(
                    "INSERT INTO record.step_events (workcell, id, step_id, at, status, detail)
                     VALUES ($1, $2, $3, $4, 'ready', $5)",
                )
                .await?,
            decision: client
                .prepare(
                    "INSERT INTO record.decisions (workcell, id, campaign_id, at, step_id, instrument, place, waited,
                         reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .await?,
            measurement: client
                .prepare(
                    "INSERT INTO record.measurements (workcell, id, experiment_id, step_id, name, value, unit, at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .await?,
            experiment_finished: client
                .prepare(
                    "UPDATE record.experiments SET status = $3, finished_at = $4, objective = $5, error = $6
                     WHERE workcell = $1 AND id = $2",
                )
                .await?,
            command: client
                .prepare(
                    "INSERT INTO record.commands (workcell, id, campaign_id, instrument, step_id, sent_at, sent,
                         sent_text, replied_at, received, received_text, parsed, error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .await?,
            event: client
                .prepare(
                    "INSERT INTO record.events (workcell, id, campaign_id, at, level, instrument, message)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
                        (SELECT coalesce(max(id), 0) FROM record.settlements WHERE workcell = $1)",
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
        })
    }
}

fn next(id: &mut i64) -> i64 {
    *id += 1;
    *id
}

/// Adds to `out` the statements that project `event` (journal row `journal_id` of `workcell`) into the hub's
/// tables, in order, then the fleet's bookkeeping it carries.
pub fn project<'a>(
    tx: &'a Transaction<'a>,
    st: &'a Statements,
    workcell: &str,
    ids: &mut AutoIds,
    journal_id: i64,
    event: &RecordEvent,
    out: &mut Vec<Pending<'a>>,
) {
    let wc = workcell.to_owned();
    let mut push = |statement: &'a Statement, v: Values| out.push(Box::pin(tx.execute_raw(statement, v)));
    match event {
        RecordEvent::CampaignStarted(c) => push(
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
        ),
        RecordEvent::Instrument { campaign, name, kind, driver, port, line, identity, error } => push(
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
        ),
        RecordEvent::Proposal { id, campaign, at, proposal } => {
            push(
                &st.proposal,
                values![
                    wc.clone(),
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
                ],
            );
            if let Some(c) = &proposal.claim {
                push(&st.on_proposal, values![wc, *campaign, *id, c.campaign.clone(), c.seq, c.epoch as i32]);
            }
        }
        RecordEvent::ExperimentStarted { id, campaign, seq, proposal, params, vessel, at, steps } => {
            let json: serde_json::Map<String, serde_json::Value> =
                params.iter().map(|(n, v, _)| (n.clone(), serde_json::json!(v))).collect();
            push(
                &st.experiment,
                values![
                    wc.clone(),
                    *id,
                    *campaign,
                    *seq,
                    *proposal,
                    serde_json::Value::Object(json).to_string(),
                    *vessel,
                    *at
                ],
            );
            for (name, value, unit) in params {
                push(&st.parameter, values![wc.clone(), *id, name.clone(), *value, unit.clone()]);
            }
            for s in steps {
                let status = if s.ready { "ready" } else { "waiting" };
                push(
                    &st.step,
                    values![
                        wc.clone(),
                        s.id,
                        *id,
                        s.step.clone(),
                        s.op.clone(),
                        s.action.clone(),
                        serde_json::to_string(&s.after).unwrap_or_default(),
                        i64::from(s.repeat_safe),
                        status.to_owned(),
                        s.ready.then_some(*at),
                    ],
                );
                push(
                    &st.step_event,
                    values![
                        wc.clone(),
                        next(&mut ids.step_events),
                        s.id,
                        *at,
                        status.to_owned(),
                        None::<String>,
                        None::<String>
                    ],
                );
            }
            if let Some(p) = proposal {
                push(&st.on_started, values![wc, *p, *id, journal_id]);
            }
        }
        RecordEvent::StepAdded { experiment, at, step: s, why } => {
            push(
                &st.step,
                values![
                    wc.clone(),
                    s.id,
                    *experiment,
                    s.step.clone(),
                    s.op.clone(),
                    s.action.clone(),
                    serde_json::to_string(&s.after).unwrap_or_default(),
                    i64::from(s.repeat_safe),
                    "ready".to_owned(),
                    Some(*at),
                ],
            );
            push(&st.step_event_detail, values![wc, next(&mut ids.step_events), s.id, *at, why.clone()]);
        }
        RecordEvent::StepStatus { step, at, status, instrument, task, attempt, outcome, error } => {
            let statement = match &**status {
                "ready" => &st.step_ready,
                "running" => &st.step_running,
                _ => &st.step_ended,
            };
            push(
                statement,
                values![
                    wc.clone(),
                    *step,
                    status.to_string(),
                    *at,
                    instrument.clone(),
                    task.clone(),
                    attempt.map(i64::from),
                    outcome.clone(),
                    error.clone()
                ],
            );
            push(
                &st.step_event,
                values![
                    wc,
                    next(&mut ids.step_events),
                    *step,
                    *at,
                    status.to_string(),
                    instrument.clone(),
                    error.as_ref().or(outcome.as_ref()).or(task.as_ref()).cloned()
                ],
            );
        }
        RecordEvent::Decision { campaign, at, step, instrument, place, waited, reason } => push(
            &st.decision,
            values![
                wc,
                next(&mut ids.decisions),
                *campaign,
                *at,
                *step,
                instrument.clone(),
                place.clone(),
                *waited,
                reason.clone()
            ],
        ),
        RecordEvent::Measurement { experiment, step, name, value, unit, at } => push(
            &st.measurement,
            values![wc, next(&mut ids.measurements), *experiment, *step, name.clone(), *value, unit.clone(), *at],
        ),
        RecordEvent::ExperimentFinished { id, at, objective, error } => {
            let status = if error.is_some() { "failed" } else { "succeeded" };
            push(&st.experiment_finished, values![wc.clone(), *id, status.to_owned(), *at, *objective, error.clone()]);
            push(&st.on_finished, values![wc, *id, error.is_none(), *objective, error.clone(), journal_id]);
        }
        RecordEvent::Command { campaign, instrument, step, sent_at, sent, replied_at, received, parsed, error } => {
            push(
                &st.command,
                values![
                    wc,
                    next(&mut ids.commands),
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
                ],
            )
        }
        RecordEvent::Event { campaign, at, level, instrument, message } => push(
            &st.event,
            values![wc, next(&mut ids.events), *campaign, *at, level.clone(), instrument.clone(), message.clone()],
        ),
        RecordEvent::Settled { step, at, instrument, decision, observed, reason, evidence, read_from, actual } => {
            push(
                &st.settlement,
                values![
                    wc.clone(),
                    next(&mut ids.settlements),
                    *step,
                    *at,
                    instrument.clone(),
                    decision.clone(),
                    observed.clone(),
                    reason.clone(),
                    serde_json::to_string(evidence).unwrap_or_else(|_| "[]".to_owned()),
                    *read_from
                ],
            );
            if let Some((experiment, name, value)) = actual {
                push(&st.actual, values![wc, *experiment, name.clone(), *value]);
            }
        }
        RecordEvent::RequestHandled { .. } => {
            // lab.db marks the person's request row handled; the hub holds no request rows (people write them into
            // the workcell's lab.db, outside the journal), so nothing changes here.
        }
        RecordEvent::ClaimReleased { claim, reason, refused, .. } => push(
            &st.on_released,
            values![
                wc,
                claim.campaign.clone(),
                claim.seq,
                claim.epoch as i32,
                refused.then(|| reason.clone()),
                journal_id
            ],
        ),
        RecordEvent::CampaignFinished { campaign, at, status, note } => {
            push(&st.campaign_finished, values![wc, *campaign, status.clone(), *at, note.clone()]);
        }
    }
}
