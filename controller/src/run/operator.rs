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
        "SELECT id, action, step_id, verdict, place, who, reason, volume, absolute FROM operator_requests
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
            r.get::<_, Option<f64>>(7)?,
            r.get::<_, Option<i64>>(8)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, action, step, verdict, place, who, reason, volume, absolute) = row?;
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
            "restock" => match (place, volume) {
                (Some(bottle), Some(volume)) => {
                    OperatorAction::Restock { bottle, volume, absolute: absolute == Some(1) }
                }
                _ => continue,
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
    let has_table =
        crate::record::has_table(&conn, "operator_requests").map_err(|e| format!("{}: {e}", db.display()))?;
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
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)).map_err(|e| e.to_string())?;
    if matches!(action, OperatorAction::Restock { .. }) && version < 7 {
        return Err(format!(
            "{} was written by an older lab (schema version {version}), which tracked no stock; run `lab resume --db \
             {}` with this lab first",
            db.display(),
            db.display()
        ));
    }
    let campaign: Option<i64> = conn
        .query_row("SELECT max(id) FROM campaigns WHERE status = 'running'", [], |r| r.get(0))
        .optional()
        .map_err(|e| e.to_string())?
        .flatten();
    let (mut volume, mut absolute) = (None, None);
    let (name, step, verdict, place) = match action {
        OperatorAction::Pause => ("pause", None, None, None),
        OperatorAction::Resume => ("resume", None, None, None),
        OperatorAction::Abort => ("abort", None, None, None),
        OperatorAction::Confirm { step, verdict, place } => {
            ("confirm", Some(*step), Some(verdict.name()), place.clone())
        }
        OperatorAction::Clear { place } => ("clear", None, None, Some(place.clone())),
        OperatorAction::Restock { bottle, volume: v, absolute: a } => {
            (volume, absolute) = (Some(*v), Some(i64::from(*a)));
            ("restock", None, None, Some(bottle.clone()))
        }
    };
    // Before schema version 7 the table had no `volume` and `absolute` (and no restock), so those stay out.
    let insert = if version < 7 {
        "INSERT INTO operator_requests (made_at, campaign_id, action, step_id, verdict, place, who, reason)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8 WHERE ?9 IS NULL AND ?10 IS NULL"
    } else {
        "INSERT INTO operator_requests (made_at, campaign_id, action, step_id, verdict, place, who, reason, volume,
         absolute) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    };
    conn.execute(
        insert,
        params![
            humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            campaign,
            name,
            step,
            verdict,
            place,
            who,
            reason,
            volume,
            absolute
        ],
    )
    .map_err(|e| format!("{}: {e}", db.display()))?;
    Ok((conn.last_insert_rowid(), campaign))
}

/// Reads a restock's amount as a technician types it (`10 mL`, `500 uL`) into microlitres; the error says why not and
/// how to write it. `lab restock` and the live page's restock form both read it here.
pub fn restock_volume(text: &str) -> Result<f64, String> {
    match protocols::units::Quantity::parse(text) {
        Ok(q) if q.dimension == protocols::units::Dimension::Volume => Ok(q.value),
        Ok(q) => {
            Err(format!("`{text}` is a {}, not a volume; write it as \"10 mL\" or \"500 uL\"", q.dimension.name()))
        }
        Err(e) => Err(format!("`{text}` is not a volume ({e}); write it as \"10 mL\" or \"500 uL\"")),
    }
}

/// Asks the running campaign (or the next one to resume) of record `db` to count a bottle refilled: `bottle` is a
/// bottle's key (`pump_a`, `valve:2`) or the reagent one bottle holds; `volume_ul` microlitres were added, or, with
/// `absolute`, the bottle now holds that much above its dead volume. Refused before anything is written if the
/// volume is negative or not a number, or if no recorded bottle of the campaign matches. Returns the request's id
/// and campaign. `lab restock` and the web console's restock button both call this.
pub fn restock(
    db: &Path,
    bottle: &str,
    volume_ul: f64,
    absolute: bool,
    who: &str,
    reason: &str,
) -> Result<(i64, Option<i64>), String> {
    if !volume_ul.is_finite() || volume_ul < 0.0 {
        return Err(format!(
            "cannot restock `{bottle}` by {volume_ul} uL: a restock adds liquid (or, with --set, says how much is \
             there), so it is never negative"
        ));
    }
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", db.display()))?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(|e| e.to_string())?;
    let has_stock = crate::record::has_table(&conn, "stock_events").map_err(|e| format!("{}: {e}", db.display()))?;
    if has_stock {
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT bottle, reagent FROM stock_events WHERE campaign_id =
                 (SELECT max(id) FROM campaigns WHERE status = 'running') ORDER BY bottle",
            )
            .map_err(|e| e.to_string())?;
        let bottles: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(Iterator::collect)
            .map_err(|e| e.to_string())?;
        let matching = bottles.iter().filter(|(b, r)| b == bottle || r == bottle).count();
        if !bottles.is_empty() && matching != 1 {
            let list: Vec<String> = bottles.iter().map(|(b, r)| format!("`{b}` ({r})")).collect();
            return Err(if matching == 0 {
                format!("the running campaign tracks no bottle `{bottle}`; its bottles are {}", list.join(", "))
            } else {
                format!("several bottles hold `{bottle}`; name one of {}", list.join(", "))
            });
        }
    }
    drop(conn);
    let action = OperatorAction::Restock { bottle: bottle.to_owned(), volume: volume_ul, absolute };
    request(db, &action, who, reason)
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
