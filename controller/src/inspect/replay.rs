//! `lab replay`: checking a driver against a recorded session.
//!
//! From the record, a replay takes one instrument's wire exchanges in one campaign and the tasks its steps sent it
//! (with places resolved, as recorded at dispatch), and runs the current driver through the same calls against a
//! scripted port that answers with the recorded replies. It reports the first place the driver's bytes differ, so a
//! driver change can be checked against real sessions before it meets the instrument.

use std::path::Path;

use devices::replay::{ReplayCall, ReplayReport, Transcript};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// Replays `instrument`'s session in `campaign` (the latest if `None`) from the record at `db`.
pub fn from_record(db: &Path, campaign: Option<i64>, instrument: &str) -> Result<ReplayReport, String> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", db.display()))?;
    let sql = |e: rusqlite::Error| format!("{}: {e}", db.display());
    let campaign = match campaign {
        Some(c) => c,
        None => conn
            .query_row("SELECT max(id) FROM campaigns", [], |r| r.get::<_, Option<i64>>(0))
            .map_err(sql)?
            .ok_or_else(|| format!("{} holds no campaign", db.display()))?,
    };
    let (lab_text, lab_path, scale): (String, String, f64) = conn
        .query_row("SELECT lab_text, lab_path, time_scale FROM campaigns WHERE id = ?1", [campaign], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .map_err(sql)?
        .ok_or_else(|| format!("{} has no campaign {campaign}", db.display()))?;
    let lab = devices::load_lab(protocols::SourceFile::new(lab_path, lab_text))
        .map_err(|d| format!("the lab file recorded with campaign {campaign} no longer loads:\n{d}"))?;
    let spec = lab.instrument(instrument).ok_or_else(|| {
        format!(
            "campaign {campaign}'s lab has no instrument `{instrument}` (it has: {})",
            lab.instruments.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
        )
    })?;
    let mut stmt = conn
        .prepare("SELECT sent, received FROM commands WHERE campaign_id = ?1 AND instrument = ?2 ORDER BY id")
        .map_err(sql)?;
    let exchanges: Vec<(Vec<u8>, Vec<u8>)> = stmt
        .query_map(rusqlite::params![campaign, instrument], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    if exchanges.is_empty() {
        return Err(format!("`{instrument}` exchanged no bytes in campaign {campaign}"));
    }
    let mut stmt = conn
        .prepare(
            "SELECT s.task, s.status FROM steps s JOIN experiments e ON e.id = s.experiment_id
             WHERE e.campaign_id = ?1 AND s.instrument = ?2 AND s.task IS NOT NULL ORDER BY s.started_at, s.id",
        )
        .map_err(sql)?;
    let tasks: Vec<(String, String)> = stmt
        .query_map(rusqlite::params![campaign, instrument], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let mut calls = vec![ReplayCall::Identify, ReplayCall::Initialize];
    for (task, status) in tasks {
        let task: devices::Task =
            serde_json::from_str(&task).map_err(|e| format!("a recorded task does not read back: {e}"))?;
        calls.push(ReplayCall::Task(task));
        if status != "succeeded" {
            // After a failed step the controller put the instrument in its safe state.
            calls.push(ReplayCall::SafeState);
        }
    }
    calls.push(ReplayCall::SafeState);
    let transcript = Transcript::from_exchanges(instrument, scale, exchanges);
    run(spec, &lab.deck, &transcript, &calls)
}

/// Replays a transcript file (with its own calls) against the driver of its instrument in `lab`.
pub fn from_file(transcript: &Path, lab: &Path) -> Result<ReplayReport, String> {
    let text = std::fs::read_to_string(transcript).map_err(|e| format!("cannot read {}: {e}", transcript.display()))?;
    let t = Transcript::parse(&text).map_err(|e| format!("{}: {e}", transcript.display()))?;
    let lab = crate::load::load_lab_file(lab).map_err(|e| match e {
        crate::load::LoadError::Invalid(d) => d.to_string(),
        e => e.to_string(),
    })?;
    let spec = lab.instrument(&t.instrument).ok_or_else(|| format!("the lab has no instrument `{}`", t.instrument))?;
    run(spec, &lab.deck, &t, &t.calls.clone())
}

fn run(
    spec: &devices::InstrumentSpec,
    deck: &devices::lab::Deck,
    t: &Transcript,
    calls: &[ReplayCall],
) -> Result<ReplayReport, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    Ok(rt.block_on(devices::replay::replay(spec, deck, t, calls)))
}
