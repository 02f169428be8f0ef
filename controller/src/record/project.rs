//! Projections: how each journal event changes the tables people read.
//!
//! The writer applies [`apply`] to every event right after appending it to the journal, in the same transaction;
//! `lab verify` applies it again to a fresh database to rebuild what the tables must hold. So this function is the
//! one definition of what the tables mean.

use rusqlite::params;

use super::events::RecordEvent;
use super::prepared::Prepared;

/// Applies one event to the projection tables, through the statements of `sql`'s connection.
pub fn apply(sql: &mut Prepared<'_>, event: &RecordEvent) -> rusqlite::Result<()> {
    match event {
        RecordEvent::CampaignStarted(c) => {
            sql.get(
                "INSERT INTO campaigns (id, name, started_at, time_scale, status, software_version, seed,
                     objective_output, objective_direction, budget, in_flight, campaign_path, campaign_text,
                     campaign_sha256, protocol_path, protocol_text, protocol_sha256, lab_path, lab_text, lab_sha256)
                 VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?
            .execute(params![
                c.id,
                c.name,
                c.started_at,
                c.time_scale,
                c.software_version,
                c.seed as i64,
                c.objective_output,
                c.objective_direction,
                c.budget as i64,
                c.in_flight as i64,
                c.campaign.0,
                c.campaign.1,
                super::sha256_hex(c.campaign.1.as_bytes()),
                c.protocol.0,
                c.protocol.1,
                super::sha256_hex(c.protocol.1.as_bytes()),
                c.lab.0,
                c.lab.1,
                super::sha256_hex(c.lab.1.as_bytes()),
            ])?;
        }
        RecordEvent::Instrument { campaign, name, kind, driver, port, line, identity, error } => {
            sql.get(
                "INSERT OR REPLACE INTO instruments (campaign_id, name, kind, driver, port, line, status, model, serial,
                     firmware, identity_raw, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                campaign,
                name,
                kind,
                driver,
                port,
                line,
                if error.is_some() { "offline" } else { "ready" },
                identity.as_ref().map(|i| &i.model),
                identity.as_ref().and_then(|i| i.serial.as_ref()),
                identity.as_ref().and_then(|i| i.firmware.as_ref()),
                identity.as_ref().map(|i| &i.raw),
                error,
            ])?;
        }
        RecordEvent::Proposal { id, campaign, at, proposal } => {
            let model = model_text(proposal);
            sql.get(
                "INSERT INTO proposals (id, campaign_id, at, strategy, params, predicted_mean, predicted_sd, acquisition,
                     model, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                id,
                campaign,
                at,
                proposal.strategy,
                serde_json::to_string(&proposal.params).unwrap_or_default(),
                proposal.predicted_mean,
                proposal.predicted_sd,
                proposal.acquisition,
                model,
                proposal.reason,
            ])?;
        }
        RecordEvent::ExperimentStarted { id, campaign, seq, proposal, params: values, vessel, at, steps } => {
            let json: serde_json::Map<String, serde_json::Value> =
                values.iter().map(|(n, v, _)| (n.clone(), serde_json::json!(v))).collect();
            sql.get(
                "INSERT INTO experiments (id, campaign_id, seq, proposal_id, params, vessel, status, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7)",
            )?
            .execute(params![
                id,
                campaign,
                seq,
                proposal,
                serde_json::Value::Object(json).to_string(),
                vessel,
                at
            ])?;
            for (name, value, unit) in values {
                sql.get("INSERT INTO parameters (experiment_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![id, name, value, unit])?;
            }
            for s in steps {
                let status = if s.ready { "ready" } else { "waiting" };
                sql.get(
                    "INSERT INTO steps (id, experiment_id, step, op, action, after, repeat_safe, status, ready_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    s.id,
                    id,
                    s.step,
                    s.op,
                    s.action,
                    serde_json::to_string(&s.after).unwrap_or_default(),
                    s.repeat_safe,
                    status,
                    s.ready.then_some(*at),
                ])?;
                sql.get("INSERT INTO step_events (step_id, at, status) VALUES (?1, ?2, ?3)")?
                    .execute(params![s.id, at, status])?;
            }
        }
        RecordEvent::StepAdded { experiment, at, step: s, why } => {
            sql.get(
                "INSERT INTO steps (id, experiment_id, step, op, action, after, repeat_safe, status, ready_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'ready', ?8)",
            )?
            .execute(params![
                s.id,
                experiment,
                s.step,
                s.op,
                s.action,
                serde_json::to_string(&s.after).unwrap_or_default(),
                s.repeat_safe,
                at
            ])?;
            sql.get("INSERT INTO step_events (step_id, at, status, detail) VALUES (?1, ?2, 'ready', ?3)")?
                .execute(params![s.id, at, why])?;
        }
        RecordEvent::StepStatus { step, at, status, instrument, task, attempt, outcome, error } => {
            // Each state sets the time column it starts; a retried step starts again.
            let update = match &**status {
                "ready" => {
                    "UPDATE steps SET status = ?2, ready_at = ?3, instrument = coalesce(?4, instrument),
                         task = coalesce(?5, task), attempt = coalesce(?6, attempt), outcome = coalesce(?7, outcome),
                         error = coalesce(?8, error) WHERE id = ?1"
                }
                "running" => {
                    "UPDATE steps SET status = ?2, started_at = ?3, finished_at = NULL, instrument = coalesce(?4, instrument),
                         task = coalesce(?5, task), attempt = coalesce(?6, attempt), outcome = coalesce(?7, outcome),
                         error = coalesce(?8, error) WHERE id = ?1"
                }
                _ => {
                    "UPDATE steps SET status = ?2, finished_at = ?3, instrument = coalesce(?4, instrument),
                         task = coalesce(?5, task), attempt = coalesce(?6, attempt), outcome = coalesce(?7, outcome),
                         error = coalesce(?8, error) WHERE id = ?1"
                }
            };
            sql.get(update)?.execute(params![step, status, at, instrument, task, attempt, outcome, error])?;
            sql.get("INSERT INTO step_events (step_id, at, status, instrument, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![step, at, status, instrument, error.as_ref().or(outcome.as_ref()).or(task.as_ref())])?;
        }
        RecordEvent::Decision { campaign, at, step, instrument, place, waited, reason } => {
            sql.get(
                "INSERT INTO decisions (campaign_id, at, step_id, instrument, place, waited, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![campaign, at, step, instrument, place, waited, reason])?;
        }
        RecordEvent::Measurement { experiment, step, name, value, unit, at } => {
            sql.get(
                "INSERT INTO measurements (experiment_id, step_id, name, value, unit, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![experiment, step, name, value, unit, at])?;
        }
        RecordEvent::ExperimentFinished { id, at, objective, error } => {
            sql.get("UPDATE experiments SET status = ?2, finished_at = ?3, objective = ?4, error = ?5 WHERE id = ?1")?
                .execute(params![id, if error.is_some() { "failed" } else { "succeeded" }, at, objective, error])?;
        }
        RecordEvent::Command { campaign, instrument, step, sent_at, sent, replied_at, received, parsed, error } => {
            sql.get(
                "INSERT INTO commands (campaign_id, instrument, step_id, sent_at, sent, sent_text, replied_at, received,
                     received_text, parsed, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                campaign,
                instrument,
                step,
                sent_at,
                sent.0,
                super::printable(&sent.0),
                replied_at,
                received.0,
                super::printable(&received.0),
                parsed,
                error,
            ])?;
        }
        RecordEvent::Event { campaign, at, level, instrument, message } => {
            sql.get("INSERT INTO events (campaign_id, at, level, instrument, message) VALUES (?1, ?2, ?3, ?4, ?5)")?
                .execute(params![campaign, at, level, instrument, message])?;
        }
        RecordEvent::RequestHandled { request, at, .. } => {
            // The request row itself is written by the person's command, outside the journal (the controller is the
            // journal's only writer); the journal keeps who asked, why and what was done, and marking the request
            // handled is this projection.
            sql.get(
                "UPDATE operator_requests SET handled_at = printf('%.3f', ?2) WHERE id = ?1 AND handled_at IS NULL",
            )?
            .execute(params![request, at])?;
        }
        RecordEvent::Settled { step, at, instrument, decision, observed, reason, evidence, read_from, actual } => {
            sql.get(
                "INSERT INTO settlements (step_id, at, instrument, decision, observed, reason, evidence, read_from)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                step,
                at,
                instrument,
                decision,
                observed,
                reason,
                serde_json::to_string(evidence).unwrap_or_else(|_| "[]".to_owned()),
                read_from
            ])?;
            if let Some((experiment, name, value)) = actual {
                sql.get("UPDATE parameters SET actual = ?3 WHERE experiment_id = ?1 AND name = ?2")?
                    .execute(params![experiment, name, value])?;
            }
        }
        RecordEvent::ClaimReleased { .. } => {
            // A fleet's bookkeeping: the hub's tables follow it; lab.db's tables have nothing to change.
        }
        RecordEvent::CampaignFinished { campaign, at, status, note } => {
            sql.get("UPDATE campaigns SET status = ?2, finished_at = ?3, note = ?4 WHERE id = ?1")?
                .execute(params![campaign, status, at, note])?;
        }
    }
    Ok(())
}

/// A proposal's `model` column: the model's provenance with what it was trained on (and the level names of
/// categorical values), as JSON text.
pub fn model_text(proposal: &super::ProposalRow) -> Option<String> {
    match &proposal.model {
        Some(m) => {
            let mut m = m.clone();
            if let Some(o) = m.as_object_mut() {
                o.insert("trained_on".into(), serde_json::json!(proposal.trained_on));
                if !proposal.labels.is_empty() {
                    o.insert("labels".into(), serde_json::json!(proposal.labels));
                }
            }
            Some(m.to_string())
        }
        None if !proposal.trained_on.is_empty() => {
            Some(serde_json::json!({ "trained_on": proposal.trained_on }).to_string())
        }
        None => None,
    }
}

/// The tables [`apply`] writes, with the columns `lab verify` compares (every column, in a stable order).
pub const PROJECTED: &[(&str, &str)] = &[
    ("campaigns", "id"),
    ("instruments", "campaign_id, name"),
    ("proposals", "id"),
    ("experiments", "id"),
    ("parameters", "experiment_id, name"),
    ("steps", "id"),
    ("step_events", "id"),
    ("decisions", "id"),
    ("measurements", "id"),
    ("commands", "id"),
    ("events", "id"),
    ("settlements", "id"),
];
