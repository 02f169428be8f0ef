//! Operators' requests to a campaign: pause, resume, abort, verdicts on steps whose outcome is unknown, and deck
//! places cleared by hand.
//!
//! A request is a row in `operator_requests`, written by `lab pause`, `lab resume`, `lab abort`, `lab confirm` or
//! `lab clear` from any terminal with the database's path. The running controller polls the table, carries the
//! request out, and records in the journal who asked, why, and what it did. Requests that arrive while no controller
//! runs are carried out when the campaign resumes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use rusqlite::{Connection, OptionalExtension, params};

use crate::schedule::bridge::{Inbound, OperatorAction, OperatorRequest, Verdict};

/// Requests not yet handled for `campaign` (or for whichever campaign runs), oldest first.
pub fn pending(conn: &Connection, campaign: i64) -> rusqlite::Result<Vec<OperatorRequest>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, action, step_id, verdict, place, who, reason FROM operator_requests
         WHERE handled_at IS NULL AND (campaign_id IS NULL OR campaign_id = ?1) ORDER BY id",
    )?;
    let rows = stmt.query_map([campaign], |r| {
        let action: String = r.get(1)?;
        let step: Option<i64> = r.get(2)?;
        let verdict: Option<String> = r.get(3)?;
        Ok((
            r.get::<_, i64>(0)?,
            action,
            step,
            verdict,
            r.get::<_, Option<String>>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, action, step, verdict, place, who, reason) = row?;
        let action = match action.as_str() {
            "pause" => OperatorAction::Pause,
            "resume" => OperatorAction::Resume,
            "abort" => OperatorAction::Abort,
            "confirm" => match (step, verdict.as_deref().and_then(Verdict::parse)) {
                (Some(step), Some(verdict)) => OperatorAction::Confirm { step, verdict, place },
                _ => continue,
            },
            "clear" => match place {
                Some(place) => OperatorAction::Clear { place },
                None => continue,
            },
            _ => continue,
        };
        out.push(OperatorRequest { id: Some(id), action, who, reason });
    }
    Ok(out)
}

/// Writes a request; returns its id and the campaign it applies to.
pub fn request(db: &Path, action: &OperatorAction, who: &str, reason: &str) -> Result<(i64, Option<i64>), String> {
    let conn = Connection::open(db).map_err(|e| format!("{}: {e}", db.display()))?;
    conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let has_table: bool = conn
        .query_row("SELECT count(*) FROM sqlite_schema WHERE name = 'operator_requests'", [], |r| r.get::<_, i64>(0))
        .map(|n| n > 0)
        .map_err(|e| format!("{}: {e}", db.display()))?;
    if !has_table {
        return Err(format!(
            "{} is not a lab record (or is older than this lab); run a campaign on it first",
            db.display()
        ));
    }
    // `clear` came with schema version 4; an older record's table refuses it until a controller of this version has
    // opened (and migrated) the record.
    if matches!(action, OperatorAction::Clear { .. })
        && let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(|e| e.to_string())?
        && version < 4
    {
        return Err(format!(
            "{} was written by an older lab (schema version {version}); run `lab resume --db {}` with this lab first, \
             then clear",
            db.display(),
            db.display()
        ));
    }
    let campaign: Option<i64> = conn
        .query_row("SELECT max(id) FROM campaigns WHERE status = 'running'", [], |r| r.get(0))
        .optional()
        .map_err(|e| e.to_string())?
        .flatten();
    let (name, step, verdict, place) = match action {
        OperatorAction::Pause => ("pause", None, None, None),
        OperatorAction::Resume => ("resume", None, None, None),
        OperatorAction::Abort => ("abort", None, None, None),
        OperatorAction::Confirm { step, verdict, place } => {
            ("confirm", Some(*step), Some(verdict.name()), place.clone())
        }
        OperatorAction::Clear { place } => ("clear", None, None, Some(place.clone())),
    };
    conn.execute(
        "INSERT INTO operator_requests (made_at, campaign_id, action, step_id, verdict, place, who, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            campaign,
            name,
            step,
            verdict,
            place,
            who,
            reason
        ],
    )
    .map_err(|e| format!("{}: {e}", db.display()))?;
    Ok((conn.last_insert_rowid(), campaign))
}

/// A thread that turns rows of `operator_requests` into inbound requests.
pub(super) struct RequestPoller {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl RequestPoller {
    pub(super) fn stop(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub(super) fn spawn_request_poller(db: PathBuf, campaign: i64, inbound: Sender<Inbound>) -> RequestPoller {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name("lab-requests".into())
        .spawn(move || {
            let Ok(conn) = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            else {
                return;
            };
            let _ = conn.busy_timeout(Duration::from_secs(1));
            let mut seen = std::collections::HashSet::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                for r in crate::run::operator::pending(&conn, campaign).unwrap_or_default() {
                    if seen.insert(r.id) {
                        let _ = inbound.send(Inbound::Operator(r));
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .ok();
    RequestPoller { stop, handle }
}
