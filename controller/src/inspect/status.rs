//! `lab status`: what a campaign is doing, read from the record by any process, while it runs or after.
//!
//! The record is opened read-only (WAL readers never block the controller that writes it). The status says what is
//! running on which instrument and since when, what is ready and waiting for an instrument, which steps failed,
//! which are unknown (they may have acted, and wait for `lab confirm` with the ids shown), which deck places a lost
//! vessel blocks (they wait for `lab clear`), which instruments are offline, which operator requests the controller
//! has not carried out yet, and how far the campaign has come; and the steps in doubt the controller settled by
//! reading their instruments back, each with its decision and the recorded exchanges that prove it.

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use crate::inspect::report::data::lab_seconds_since;
use crate::inspect::report::human_seconds;

/// Why a status could not be read: the record or the campaign is missing or unreadable.
pub type StatusError = crate::inspect::report::ReadError;

/// One step as the status shows it.
#[derive(Debug, Clone)]
pub struct StepLine {
    /// The step's id in the record (what `lab confirm` takes).
    pub id: i64,
    /// The experiment's number.
    pub experiment: i64,
    /// The step's id in the protocol.
    pub step: String,
    /// The operation.
    pub op: String,
    /// The instrument, once assigned.
    pub instrument: Option<String>,
    /// Lab seconds: when it started (running, failed, unknown) or became ready (ready).
    pub since: Option<f64>,
    /// Why it failed or is unknown.
    pub error: Option<String>,
}

/// A step in doubt settled from what its instrument reported (a row of `settlements`).
#[derive(Debug, Clone)]
pub struct SettledLine {
    /// The step's id in the record.
    pub id: i64,
    /// The experiment's number.
    pub experiment: i64,
    /// The step's id in the protocol.
    pub step: String,
    /// The instrument read back.
    pub instrument: String,
    /// Lab seconds.
    pub at: f64,
    /// `resumed`, `done`, `partial`, `overran`, `not_done`, `in_doubt`, `contradiction` or `unanswered`.
    pub decision: String,
    /// Why, in words.
    pub reason: String,
    /// The ids of the exchanges it rests on (`commands.id`), as JSON: the earlier ones it names and the reading.
    pub evidence: String,
}

/// An instrument that is not available.
#[derive(Debug, Clone)]
pub struct Offline {
    /// Its name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// An operator request the controller has not carried out yet.
#[derive(Debug, Clone)]
pub struct Pending {
    /// The request's id.
    pub id: i64,
    /// `pause`, `resume`, `abort` or `confirm`.
    pub action: String,
    /// The step, for a confirmation.
    pub step: Option<i64>,
    /// Who asked.
    pub who: String,
    /// When (wall clock).
    pub made_at: String,
}

/// A campaign's state, as the record tells it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The record.
    pub db: PathBuf,
    /// The campaign's id.
    pub campaign: i64,
    /// Its name.
    pub name: String,
    /// `running`, `finished`, `aborted` or `failed`, as the record says.
    pub status: String,
    /// Whether a controller holds the record now; `None` if that cannot be told.
    pub controller: Option<bool>,
    /// Whether an operator paused it (and nobody resumed it since).
    pub paused: bool,
    /// When it started (wall clock, RFC 3339).
    pub started_at: String,
    /// Lab seconds per wall second.
    pub time_scale: f64,
    /// Lab seconds since its start (to its end, once it ended).
    pub lab_now: f64,
    /// Experiments to run in total.
    pub budget: i64,
    /// Experiments succeeded.
    pub succeeded: i64,
    /// Experiments failed.
    pub failed: i64,
    /// Experiments running.
    pub running: i64,
    /// The best experiment's number and objective.
    pub best: Option<(i64, f64)>,
    /// The objective's name.
    pub objective: String,
    /// The objective's unit.
    pub unit: String,
    /// Steps running now.
    pub running_steps: Vec<StepLine>,
    /// Steps whose dependencies are done, waiting for an instrument or a start time.
    pub ready_steps: Vec<StepLine>,
    /// Steps waiting for other steps.
    pub waiting: i64,
    /// Steps that failed.
    pub failed_steps: Vec<StepLine>,
    /// Steps whose outcome is unknown.
    pub unknown_steps: Vec<StepLine>,
    /// Instruments that are offline.
    pub offline: Vec<Offline>,
    /// Requests not yet carried out.
    pub pending: Vec<Pending>,
    /// The last warnings and errors: (lab seconds, level, message).
    pub recent: Vec<(f64, String, String)>,
    /// Deck places blocked by a vessel the controller lost track of, not cleared since: (place, why).
    pub blocked: Vec<(String, String)>,
    /// Running experiments that wait for a blocked place to be cleared, by number.
    pub waiting_for_places: Vec<i64>,
    /// Steps in doubt settled by reading their instruments back, the latest last.
    pub settled: Vec<SettledLine>,
    /// Why the campaign stopped, if the record says.
    pub note: Option<String>,
    /// Each tracked bottle: its key, reagent and the microlitres left above its dead volume.
    pub stock: Vec<(String, String, f64)>,
    /// What experiments wait for: the latest `waiting for restock` of each reagent not refilled since.
    pub restock: Vec<String>,
}

/// The lab seconds a campaign still needs, from its pace so far: the lab time per finished experiment, times the
/// experiments left. Experiments overlap, so the pace already includes how many run at once. `None` until one
/// experiment has finished.
pub fn lab_seconds_left(done: usize, budget: usize, lab_now: f64) -> Option<f64> {
    (done > 0 && lab_now > 0.0).then(|| budget.saturating_sub(done) as f64 * lab_now / done as f64)
}

impl Status {
    /// Reads the status of a campaign (the latest if `campaign` is `None`) from the record at `db`.
    pub fn read(db: &Path, campaign: Option<i64>) -> Result<Status, StatusError> {
        let conn = crate::inspect::report::open_record(db)?;
        let record = |source| StatusError::Record { path: db.to_owned(), source };
        let missing = || StatusError::no_campaign(db, campaign);
        let id = match campaign {
            Some(id) => Some(id),
            None => crate::record::latest_campaign(&conn).map_err(record)?,
        };
        let id = id.ok_or_else(missing)?;
        Status::read_from(&conn, db, id).map_err(record)?.ok_or_else(missing)
    }

    /// Reads the status of campaign `id` through an open connection to the record at `db`; `Ok(None)` if the record
    /// has no such campaign.
    pub fn read_from(conn: &Connection, db: &Path, id: i64) -> rusqlite::Result<Option<Status>> {
        let Some(mut status) = read_status(conn, id)? else { return Ok(None) };
        status.db = db.to_owned();
        status.controller = controller_holds(db);
        Ok(Some(status))
    }

    /// Experiments that have ended.
    pub fn done(&self) -> i64 {
        self.succeeded + self.failed
    }
}

/// Whether a controller holds the record's lock file, without ever keeping it: a shared lock that succeeds is
/// dropped at once.
fn controller_holds(db: &Path) -> Option<bool> {
    let mut lock = db.as_os_str().to_owned();
    lock.push(".lock");
    let file = std::fs::File::open(PathBuf::from(lock)).ok()?;
    match file.try_lock_shared() {
        Ok(()) => Some(false),
        Err(std::fs::TryLockError::WouldBlock) => Some(true),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// The steps of a campaign that a status lists, by state.
struct Lines {
    running: Vec<StepLine>,
    ready: Vec<StepLine>,
    failed: Vec<StepLine>,
    unknown: Vec<StepLine>,
    waiting: i64,
}

/// Reads the campaign's running, ready, failed and unknown steps, and counts the waiting ones, in one pass over the
/// steps: states have no index, and a week-long record has hundreds of thousands of steps, so a query per state
/// would read them all again each time (five passes took a 10,000-experiment record's status from about 25 ms to
/// 115 ms). The pass reads the table in order and looks up the experiment of the few steps that are not done (`CROSS
/// JOIN` keeps SQLite from starting at the experiments, which costs an index lookup per step). Running steps are in
/// order of start, ready ones of readiness, failed ones of their end, unknown ones of id (a time not recorded first,
/// then by id, as SQL would order them).
fn step_lines(conn: &Connection, campaign: i64) -> rusqlite::Result<Lines> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, e.seq, s.step, s.op, s.instrument, s.status, s.ready_at, s.started_at, s.finished_at, s.error
         FROM steps s CROSS JOIN experiments e ON e.id = s.experiment_id
         WHERE s.status != 'succeeded' AND s.status != 'skipped' AND e.campaign_id = ?1",
    )?;
    let mut rows = stmt.query([campaign])?;
    let mut by_state: [Vec<(Option<f64>, StepLine)>; 4] = Default::default();
    let mut waiting = 0;
    while let Some(r) = rows.next()? {
        let status: String = r.get(5)?;
        let (ready_at, started_at, finished_at): (Option<f64>, Option<f64>, Option<f64>) =
            (r.get(6)?, r.get(7)?, r.get(8)?);
        let (list, since, key) = match status.as_str() {
            "running" => (0, started_at, started_at),
            "ready" => (1, ready_at, ready_at),
            "failed" => (2, started_at, finished_at),
            "unknown" => (3, started_at, None),
            _ => {
                waiting += 1;
                continue;
            }
        };
        let line = StepLine {
            id: r.get(0)?,
            experiment: r.get(1)?,
            step: r.get(2)?,
            op: r.get(3)?,
            instrument: r.get(4)?,
            since,
            error: r.get(9)?,
        };
        by_state[list].push((key, line));
    }
    let [running, ready, failed, unknown] = by_state.map(|mut v| {
        v.sort_by(|(x, a), (y, b)| {
            x.is_some().cmp(&y.is_some()).then(x.unwrap_or(0.0).total_cmp(&y.unwrap_or(0.0))).then(a.id.cmp(&b.id))
        });
        v.into_iter().map(|(_, l)| l).collect()
    });
    Ok(Lines { running, ready, failed, unknown, waiting })
}

fn read_status(conn: &Connection, id: i64) -> rusqlite::Result<Option<Status>> {
    let Some((name, status, started_at, time_scale, finished_at, budget, objective, direction, note)) = conn
        .query_row(
            "SELECT name, status, started_at, time_scale, finished_at, budget, objective_output, objective_direction,
                    note FROM campaigns WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut counts: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    {
        let mut stmt =
            conn.prepare_cached("SELECT status, count(*) FROM experiments WHERE campaign_id = ?1 GROUP BY status")?;
        let mut rows = stmt.query([id])?;
        while let Some(r) = rows.next()? {
            counts.insert(r.get(0)?, r.get(1)?);
        }
    }
    let count = |s: &str| counts.get(s).copied().unwrap_or(0);
    let order = if direction == "maximize" { "DESC" } else { "ASC" };
    let best = conn
        .query_row(
            &format!(
                "SELECT seq, objective FROM experiments WHERE campaign_id = ?1 AND objective IS NOT NULL
                 ORDER BY objective {order}, seq LIMIT 1"
            ),
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let unit: String = conn
        .query_row(
            "SELECT m.unit FROM measurements m JOIN experiments e ON e.id = m.experiment_id
             WHERE e.campaign_id = ?1 AND m.name = ?2 LIMIT 1",
            rusqlite::params![id, objective],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default();
    let lines = step_lines(conn, id)?;
    let offline = {
        let mut stmt = conn.prepare(
            "SELECT name, coalesce(error, 'offline') FROM instruments WHERE campaign_id = ?1 AND status = 'offline'
             ORDER BY name",
        )?;
        stmt.query_map([id], |r| Ok(Offline { name: r.get(0)?, reason: r.get(1)? }))?.collect::<Result<_, _>>()?
    };
    let pending = {
        let mut stmt = conn.prepare(
            "SELECT id, action, step_id, who, made_at FROM operator_requests
             WHERE handled_at IS NULL AND (campaign_id IS NULL OR campaign_id = ?1) ORDER BY id",
        )?;
        stmt.query_map([id], |r| {
            Ok(Pending { id: r.get(0)?, action: r.get(1)?, step: r.get(2)?, who: r.get(3)?, made_at: r.get(4)? })
        })?
        .collect::<Result<_, _>>()?
    };
    let recent = {
        let mut stmt = conn.prepare(
            "SELECT at, level, coalesce(instrument || ': ', '') || message FROM events
             WHERE campaign_id = ?1 AND level IN ('warning', 'error') ORDER BY id DESC LIMIT 5",
        )?;
        let mut v: Vec<(f64, String, String)> =
            stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        v.reverse();
        v
    };
    let blocked = blocked_places(conn, id)?;
    let (stock, restock) = stock_of(conn, id)?;
    let restock = if status == "running" { restock } else { Vec::new() };
    let waiting_for_places = if blocked.is_empty() { Vec::new() } else { waiting_for_places(conn, id)? };
    let settled = settled(conn, id)?;
    let paused = status == "running" && paused(conn, id)?;
    // The journal has no index by campaign, and a week of a busy lab is hundreds of thousands of rows: reading it
    // from its end finds a running campaign's last rows at once.
    let last_recorded: f64 = conn.query_row(
        "SELECT coalesce(max(at), 0) FROM (SELECT at FROM journal WHERE campaign_id = ?1 ORDER BY id DESC LIMIT 1000)",
        [id],
        |r| r.get(0),
    )?;
    let lab_now = finished_at
        .or_else(|| (status == "running").then(|| lab_seconds_since(&started_at, time_scale)).flatten())
        .unwrap_or(last_recorded)
        .max(last_recorded);
    Ok(Some(Status {
        db: PathBuf::new(),
        campaign: id,
        name,
        status,
        controller: None,
        paused,
        started_at,
        time_scale,
        lab_now,
        budget,
        succeeded: count("succeeded"),
        failed: count("failed"),
        running: count("running"),
        best,
        objective,
        unit,
        running_steps: lines.running,
        ready_steps: lines.ready,
        waiting: lines.waiting,
        failed_steps: lines.failed,
        unknown_steps: lines.unknown,
        offline,
        pending,
        recent,
        blocked,
        waiting_for_places,
        settled,
        note,
        stock,
        restock,
    }))
}

/// Whether an operator's pause of campaign `id` holds: the controller says each pause, resume and abort in the
/// events, and a pause holds until a resume or an abort.
pub fn paused(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn
        .query_row(
            "SELECT message FROM events WHERE campaign_id = ?1 AND instrument IS NULL
             AND (message LIKE 'paused:%' OR message LIKE 'resumed%' OR message LIKE 'aborted:%')
             ORDER BY id DESC LIMIT 1",
            [id],
            |r| r.get::<_, String>(0),
        )
        .optional()?
        .is_some_and(|m| m.starts_with("paused:")))
}

/// Each tracked bottle's stock as (bottle, reagent, microlitres left), and what experiments wait for, from
/// `stock_events` (empty for a record older than schema version 7, which tracked no stock). `lab status` and the
/// live page of `lab serve` both show it.
pub(crate) fn stock_of(conn: &Connection, id: i64) -> rusqlite::Result<(Vec<(String, String, f64)>, Vec<String>)> {
    if !crate::record::has_table(conn, "stock_events")? {
        return Ok((Vec::new(), Vec::new()));
    }
    let mut stmt = conn.prepare("SELECT bottle, reagent, left_ul FROM stock WHERE campaign_id = ?1 ORDER BY bottle")?;
    let stock = stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?;
    // The latest `waiting for restock` of each reagent, unless the reagent was refilled since.
    let mut stmt = conn.prepare(
        "SELECT at, message FROM events WHERE campaign_id = ?1 AND message LIKE 'waiting for restock: %' ORDER BY id",
    )?;
    let mut latest: std::collections::BTreeMap<String, (f64, String)> = std::collections::BTreeMap::new();
    for row in stmt.query_map([id], |r| Ok((r.get::<_, f64>(0)?, r.get::<_, String>(1)?)))? {
        let (at, message) = row?;
        let reagent = message.split('`').nth(1).unwrap_or_default().to_owned();
        latest.insert(reagent, (at, message));
    }
    let mut refilled = conn.prepare(
        "SELECT count(*) FROM stock_events WHERE campaign_id = ?1 AND kind = 'refilled' AND reagent = ?2 AND at >= ?3",
    )?;
    let mut restock = Vec::new();
    for (reagent, (at, message)) in latest {
        if refilled.query_row(rusqlite::params![id, reagent, at], |r| r.get::<_, i64>(0))? == 0 {
            restock.push(message);
        }
    }
    Ok((stock, restock))
}

/// How many settled steps the status lists.
const SETTLED_SHOWN: i64 = 12;

/// The latest steps in doubt settled by reading their instruments back; none in a record older than schema
/// version 6, which has no `settlements`.
fn settled(conn: &Connection, campaign: i64) -> rusqlite::Result<Vec<SettledLine>> {
    if !crate::record::has_table(conn, "settlements")? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT * FROM (SELECT s.step_id, t.experiment, t.step, s.instrument, s.at, s.decision, s.reason,
             (SELECT json_group_array(id) FROM (SELECT value AS id FROM json_each(s.evidence)
                 UNION SELECT c.id FROM commands c WHERE c.step_id = s.step_id AND c.instrument = s.instrument
                 AND c.sent_at >= s.read_from AND c.sent_at <= s.at ORDER BY id))
         FROM settlements s JOIN step_timeline t ON t.step_id = s.step_id WHERE t.campaign_id = ?1
         ORDER BY s.id DESC LIMIT ?2) ORDER BY at",
    )?;
    stmt.query_map(rusqlite::params![campaign, SETTLED_SHOWN], |r| {
        Ok(SettledLine {
            id: r.get(0)?,
            experiment: r.get(1)?,
            step: r.get(2)?,
            instrument: r.get(3)?,
            at: r.get(4)?,
            decision: r.get(5)?,
            reason: r.get(6)?,
            evidence: r.get(7)?,
        })
    })?
    .collect()
}

/// Running experiments the controller said wait for a blocked place (`experiment #N waits: ...`).
fn waiting_for_places(conn: &Connection, campaign: i64) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT e.seq FROM events v JOIN experiments e ON e.campaign_id = v.campaign_id
         AND v.message LIKE 'experiment #' || e.seq || ' waits: %'
         WHERE v.campaign_id = ?1 AND e.status = 'running' ORDER BY e.seq",
    )?;
    stmt.query_map([campaign], |r| r.get(0))?.collect()
}

/// A step's line in a table: id, instrument, experiment, step and operation, and a time column.
fn step_row(f: &mut fmt::Formatter<'_>, s: &StepLine, time: &str) -> fmt::Result {
    writeln!(
        f,
        "  {:>6}  {:<12} #{:<4} {:<24} {time}",
        s.id,
        s.instrument.as_deref().unwrap_or("-"),
        s.experiment,
        format!("{} ({})", s.step, s.op),
    )
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match (self.status.as_str(), self.controller, self.paused) {
            ("running", _, true) => "PAUSED (`lab resume` goes on)".to_owned(),
            ("running", Some(false), _) => {
                "running in the record, but no controller holds it: the controller stopped without finishing".to_owned()
            }
            (s, _, _) => s.to_owned(),
        };
        writeln!(f, "campaign {} `{}` in {}: {state}", self.campaign, self.name, self.db.display())?;
        writeln!(f, "  started      {} (wall clock), lab time {}x", self.started_at, self.time_scale)?;
        let done = self.done();
        write!(
            f,
            "  experiments  {done}/{} done ({} succeeded, {} failed), {} running",
            self.budget, self.succeeded, self.failed, self.running
        )?;
        writeln!(f)?;
        match self.best {
            Some((seq, v)) => {
                writeln!(f, "  best         {} {v:.4} {} (experiment #{seq})", self.objective, self.unit)?
            }
            None => writeln!(f, "  best         none yet")?,
        }
        write!(f, "  lab time     {}", human_seconds(self.lab_now))?;
        if self.status == "running" {
            match lab_seconds_left(done as usize, self.budget as usize, self.lab_now) {
                Some(left) => write!(
                    f,
                    " so far; about {} left ({} of wall time)",
                    human_seconds(left),
                    human_seconds(left / self.time_scale.max(f64::MIN_POSITIVE))
                )?,
                None => write!(f, " so far; time left is known once an experiment finishes")?,
            }
        }
        writeln!(f)?;
        if let Some(note) = &self.note {
            writeln!(f, "  note         {note}")?;
        }
        let header = |f: &mut fmt::Formatter<'_>, title: String, time: &str, rows: usize| -> fmt::Result {
            writeln!(f)?;
            writeln!(f, "{title}")?;
            if rows == 0 {
                return Ok(());
            }
            writeln!(f, "  {:>6}  {:<12} {:<5} {:<24} {time}", "step", "instrument", "exp", "(operation)")
        };
        if !self.running_steps.is_empty() {
            header(
                f,
                format!("running ({})", self.running_steps.len()),
                "running for (lab time)",
                self.running_steps.len(),
            )?;
            for s in &self.running_steps {
                let time = s.since.map_or("-".to_owned(), |t| human_seconds((self.lab_now - t).max(0.0)));
                step_row(f, s, &time)?;
            }
        }
        if !self.ready_steps.is_empty() || self.waiting > 0 {
            header(
                f,
                format!(
                    "queued: {} ready and waiting for an instrument, {} waiting for earlier steps",
                    self.ready_steps.len(),
                    self.waiting
                ),
                "ready for (lab time)",
                self.ready_steps.len(),
            )?;
            for s in &self.ready_steps {
                let time = s.since.map_or("-".to_owned(), |t| human_seconds((self.lab_now - t).max(0.0)));
                step_row(f, s, &time)?;
            }
        }
        if !self.unknown_steps.is_empty() {
            header(
                f,
                format!(
                    "UNKNOWN ({}): these may have acted; look at the instrument and the vessel, then settle each with\n  \
                     lab confirm STEP --done | --not-done | --failed [--vessel-at PLACE] --db {}",
                    self.unknown_steps.len(),
                    self.db.display()
                ),
                "why",
                self.unknown_steps.len(),
            )?;
            for s in &self.unknown_steps {
                step_row(f, s, s.error.as_deref().unwrap_or("-"))?;
            }
        }
        if !self.failed_steps.is_empty() {
            header(f, format!("failed ({})", self.failed_steps.len()), "why", self.failed_steps.len())?;
            for s in &self.failed_steps {
                step_row(f, s, s.error.as_deref().unwrap_or("-"))?;
            }
        }
        if !self.offline.is_empty() {
            writeln!(f)?;
            writeln!(f, "offline instruments ({})", self.offline.len())?;
            for o in &self.offline {
                writeln!(f, "  {:<12} {}", o.name, o.reason)?;
            }
        }
        if !self.pending.is_empty() {
            writeln!(f)?;
            writeln!(f, "requests the controller has not carried out yet ({})", self.pending.len())?;
            for p in &self.pending {
                let step = p.step.map_or(String::new(), |s| format!(" step {s}"));
                writeln!(f, "  #{:<5} {}{step} by {} at {}", p.id, p.action, p.who, p.made_at)?;
            }
        }
        if !self.blocked.is_empty() {
            writeln!(f)?;
            if self.status == "running" {
                writeln!(
                    f,
                    "BLOCKED places ({}): look, take the vial away, then\n  lab clear PLACE --db {}",
                    self.blocked.len(),
                    self.db.display()
                )?;
            } else {
                writeln!(f, "places left blocked when the campaign ended: empty them before the next campaign")?;
            }
            for (place, why) in &self.blocked {
                writeln!(f, "  {place:<14} {why}")?;
            }
            if !self.waiting_for_places.is_empty() {
                let which: Vec<String> = self.waiting_for_places.iter().map(|s| format!("#{s}")).collect();
                writeln!(
                    f,
                    "  experiments waiting for a place to be cleared (nothing of the budget is spent meanwhile): {}",
                    which.join(", ")
                )?;
            }
        }
        if !self.settled.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "steps in doubt settled by reading their instruments back (the latest {}; evidence: commands.id)",
                self.settled.len()
            )?;
            for s in &self.settled {
                writeln!(
                    f,
                    "  {:>6}  {:<12} #{:<4} {:<14} {:>9}  {:<13} evidence {}",
                    s.id,
                    s.instrument,
                    s.experiment,
                    s.step,
                    human_seconds(s.at),
                    s.decision,
                    s.evidence
                )?;
                writeln!(f, "          {}", s.reason)?;
            }
        }
        if !self.restock.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "WAITING FOR RESTOCK: refill the bottle, then `lab restock REAGENT VOLUME --db {}`",
                self.db.display()
            )?;
            for message in &self.restock {
                writeln!(f, "  {}", message.trim_start_matches("waiting for restock: "))?;
            }
        }
        if !self.stock.is_empty() {
            writeln!(f)?;
            writeln!(f, "stock (usable, above each bottle's dead volume)")?;
            for (bottle, reagent, left) in &self.stock {
                writeln!(f, "  {bottle:<14} {reagent:<10} {:>10.0} uL", left)?;
            }
        }
        if !self.recent.is_empty() {
            writeln!(f)?;
            writeln!(f, "latest warnings and errors")?;
            for (at, level, message) in &self.recent {
                writeln!(f, "  {:>9}  {level:<7}  {message}", human_seconds(*at))?;
            }
        }
        Ok(())
    }
}

/// Deck places the controller keeps blocked for a vessel it lost track of, from its own warnings in the record
/// ([`crate::schedule::systems::conclude::lost_vessel_warning`]), less those an operator cleared since ("`P` cleared by ..."),
/// in the order they were blocked.
fn blocked_places(conn: &Connection, campaign: i64) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT message FROM events WHERE campaign_id = ?1 AND level = 'warning' AND instrument IS NULL
         AND (message LIKE 'the vessel of experiment #% may still stand at %' OR message LIKE '`%` cleared by %')
         ORDER BY id",
    )?;
    let messages: Vec<String> = stmt.query_map([campaign], |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut blocked: Vec<(String, String)> = Vec::new();
    for m in messages {
        if let Some(rest) = m.strip_prefix('`')
            && let Some((place, _)) = rest.split_once("` cleared by ")
        {
            blocked.retain(|(p, _)| p != place);
            continue;
        }
        let Some((head, places)) = m.split_once(" may still stand at ") else { continue };
        let who = head.trim_start_matches("the vessel of ");
        let places = places.split(';').next().unwrap_or_default();
        for place in places.split('`').skip(1).step_by(2) {
            if !blocked.iter().any(|(p, _)| p == place) {
                blocked.push((place.to_owned(), format!("the vessel of {who} may stand here")));
            }
        }
    }
    Ok(blocked)
}

/// The status as text, for `lab status`.
pub fn status_text(db: &Path, campaign: Option<i64>) -> Result<String, StatusError> {
    Status::read(db, campaign).map(|s| s.to_string())
}
