//! Expected against real step durations, per instrument and operation: what the report's "Step durations"
//! section shows (`html` writes it).
//!
//! "Expected" is what `lab plan` predicts from the lab file the campaign ran with (`schedule::estimate`), with each
//! instrument's state followed through the run as it really went (how hot each plate still was when a heat began,
//! where the gantry stood), so the comparison shows how far the lab file's rates are from this lab, which
//! `lab plan --calibrate` corrects. The same reading of the record's steps serves that calibration.

use std::collections::BTreeMap;

use devices::{Lab, Task};
use rusqlite::{Connection, OptionalExtension};

use crate::schedule::estimate::{Durations, Recorded};

/// One instrument's steps of one operation: how many, and their mean expected and real durations.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationRow {
    /// The instrument.
    pub instrument: String,
    /// The operation, in words.
    pub operation: String,
    /// Steps that succeeded.
    pub steps: usize,
    /// Mean expected lab seconds.
    pub expected: f64,
    /// Mean real lab seconds.
    pub real: f64,
}

/// The steps of a campaign that succeeded on an instrument, in order of start, with their tasks and timing.
pub fn recorded_steps(conn: &Connection, campaign: i64) -> rusqlite::Result<Vec<Recorded>> {
    let mut stmt = conn.prepare(
        "SELECT s.instrument, s.task, s.started_at, s.finished_at, s.outcome FROM steps s
         JOIN experiments e ON e.id = s.experiment_id
         WHERE e.campaign_id = ?1 AND s.status = 'succeeded' AND s.instrument IS NOT NULL AND s.task IS NOT NULL
           AND s.started_at IS NOT NULL AND s.finished_at IS NOT NULL
         ORDER BY s.started_at, s.id",
    )?;
    let rows = stmt.query_map([campaign], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, f64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, Option<String>>(4)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (instrument, task, started, finished, outcome) = row?;
        // A task this version cannot read (written by another) is left out of the comparison.
        let Ok(task) = serde_json::from_str::<Task>(&task) else { continue };
        let ramp = outcome
            .and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok())
            .and_then(|v| v.get("Held").and_then(|h| h.get("ramp")).and_then(serde_json::Value::as_f64));
        out.push(Recorded { instrument, task, started, finished, ramp });
    }
    Ok(out)
}

/// The lab a campaign ran in, as the record holds its file; `None` if this version cannot read it.
pub fn recorded_lab(conn: &Connection, campaign: i64) -> rusqlite::Result<Option<Lab>> {
    let file: Option<(String, String)> = conn
        .query_row("SELECT lab_path, lab_text FROM campaigns WHERE id = ?1", [campaign], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(file.and_then(|(path, text)| devices::load_lab(protocols::SourceFile::new(path, text)).ok()))
}

/// Expected (from the lab file's rates) against real durations of a campaign's steps.
pub fn expected_against_real(conn: &Connection, campaign: i64) -> rusqlite::Result<Vec<DurationRow>> {
    let Some(lab) = recorded_lab(conn, campaign)? else { return Ok(Vec::new()) };
    let steps = recorded_steps(conn, campaign)?;
    Ok(compare(&lab, &steps, &Durations::of(&lab)))
}

/// Expected (by `durations`) against real durations of one run's steps, per instrument and operation.
pub fn compare(lab: &Lab, steps: &[Recorded], durations: &Durations) -> Vec<DurationRow> {
    let expected = durations.replay(lab, steps);
    let mut table: BTreeMap<(String, &'static str), (usize, f64, f64)> = BTreeMap::new();
    for (s, e) in steps.iter().zip(expected) {
        let Some(e) = e else { continue };
        let row = table.entry((s.instrument.clone(), s.task.verb())).or_default();
        row.0 += 1;
        row.1 += e;
        row.2 += s.finished - s.started;
    }
    table
        .into_iter()
        .map(|((instrument, op), (n, e, r))| DurationRow {
            instrument,
            operation: op.to_owned(),
            steps: n,
            expected: e / n as f64,
            real: r / n as f64,
        })
        .collect()
}
