//! Journal shipping: a workcell's `lab.db` journal to the hub, in order, idempotently, whatever the link does.
//!
//! The shipper runs on its own thread with its own connection. Each round it reads the hub's head for the workcell
//! (its last row and that row's hash), checks that `lab.db` holds the same row (else this is not the record the hub
//! knows under this name, and nothing is shipped), reads up to [`BATCH`] rows after it, and sends them in one
//! transaction: each row into `fleet.journal`, where a trigger refuses any row that does not chain, and through
//! [`super::project`] into the hub's tables; the checkpoints they reach go too. A round that fails leaves the hub
//! as it was, and the next one starts from the hub's head again, so a row is never shipped twice or skipped.
//!
//! A lost link is retried with a backoff of at most one second; `lab.db` keeps everything meanwhile. A refused row
//! stops the shipper for good: the refusal is recorded at the hub (`fleet.rejections`, with the workcell and the row)
//! and reported, since shipping past it would break the copy's chain.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::OptionalExtension;
use tokio::sync::Notify;

use super::hub::{Connection, FleetError, Hub, OP_TIMEOUT, describe};
use super::project::{AutoIds, Pending, Statements, project, values};
use crate::record::RecordEvent;

/// The most journal rows one transaction ships.
pub const BATCH: usize = 256;

/// How long the shipper waits for news before it looks at `lab.db` again.
const IDLE: Duration = Duration::from_millis(50);

/// Where shipping stands.
#[derive(Debug, Clone, Default)]
pub struct ShipStatus {
    /// The hub's copy reaches this journal row.
    pub hub_head: i64,
    /// Whether the shipper is connected now.
    pub connected: bool,
    /// The last link problem, if the link is down.
    pub error: Option<String>,
    /// Why the hub refused the journal, if it did (shipping has stopped).
    pub refused: Option<String>,
    /// Rows shipped by this shipper.
    pub shipped: u64,
}

/// A running shipper.
pub struct Shipper {
    status: Arc<Mutex<ShipStatus>>,
    stop: Arc<AtomicBool>,
    poke: Arc<Notify>,
    db: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Shipper {
    /// Starts shipping `db`'s journal to `hub` as workcell `workcell`; `quiet` keeps link changes off standard error.
    pub fn spawn(hub: Hub, workcell: String, db: PathBuf, quiet: bool) -> Result<Shipper, FleetError> {
        let status = Arc::new(Mutex::new(ShipStatus::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let poke = Arc::new(Notify::new());
        let thread = {
            let (status, stop, poke, db) = (Arc::clone(&status), Arc::clone(&stop), Arc::clone(&poke), db.clone());
            std::thread::Builder::new()
                .name("lab-shipper".into())
                .spawn(move || {
                    let Ok(rt) = super::hub::runtime() else { return };
                    rt.block_on(run(hub, workcell, db, status, stop, poke, quiet));
                })
                .map_err(|e| FleetError::Local(format!("cannot start the shipper's thread: {e}")))?
        };
        Ok(Shipper { status, stop, poke, db, thread: Some(thread) })
    }

    /// Asks the shipper to look at `lab.db` now rather than at its next round.
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Where shipping stands.
    pub fn status(&self) -> ShipStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The last journal row `lab.db` holds.
    pub fn local_head(&self) -> i64 {
        local_head(&self.db).unwrap_or(0)
    }

    /// Waits until the hub holds every row `lab.db` holds now, or shipping was refused, or `bound` passed (never, if
    /// `None`); `report` is called every ten seconds while it waits. Returns the status at the end.
    pub fn wait_caught_up(&self, bound: Option<Duration>, mut report: impl FnMut(&ShipStatus, i64)) -> ShipStatus {
        let target = self.local_head();
        let t0 = Instant::now();
        let mut last_report = Instant::now();
        loop {
            self.poke();
            let s = self.status();
            if s.hub_head >= target || s.refused.is_some() {
                return s;
            }
            if bound.is_some_and(|b| t0.elapsed() >= b) {
                return s;
            }
            if last_report.elapsed() >= Duration::from_secs(10) {
                report(&s, target);
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the shipper (what it has not shipped stays in `lab.db` for next time).
    pub fn stop(mut self) -> ShipStatus {
        self.stop.store(true, Ordering::SeqCst);
        self.poke();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.status()
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.poke.notify_one();
    }
}

/// The last journal row of the record at `db`.
pub fn local_head(db: &std::path::Path) -> rusqlite::Result<i64> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.query_row("SELECT coalesce(max(id), 0) FROM journal", [], |r| r.get(0))
}

/// Why a round of shipping failed.
enum ShipError {
    /// The link: try again.
    Link(String),
    /// The hub refused the rows, or `lab.db` is not the record the hub knows: stop.
    Refused { detail: String, row: Option<i64> },
}

async fn run(
    hub: Hub,
    workcell: String,
    db: PathBuf,
    status: Arc<Mutex<ShipStatus>>,
    stop: Arc<AtomicBool>,
    poke: Arc<Notify>,
    quiet: bool,
) {
    let set = |f: &dyn Fn(&mut ShipStatus)| {
        if let Ok(mut s) = status.lock() {
            f(&mut s);
        }
    };
    let say = |what: String| {
        if !quiet {
            eprintln!("lab: {what}");
        }
    };
    let mut link: Option<(Connection, Statements, AutoIds)> = None;
    let mut backoff = Duration::from_millis(50);
    let mut was_down = false;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let local = match rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) {
            Ok(c) => c,
            Err(e) => {
                set(&|s| s.error = Some(format!("cannot read {}: {e}", db.display())));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if link.is_none() {
            match open(&hub, &workcell).await {
                Ok(l) => {
                    link = Some(l);
                    backoff = Duration::from_millis(50);
                    if was_down {
                        say(format!(
                            "the hub at {} answers again; shipping the journal from where it stopped",
                            hub.redacted()
                        ));
                    }
                    was_down = false;
                    set(&|s| {
                        s.connected = true;
                        s.error = None;
                    });
                }
                Err(e) => {
                    let e = e.to_string();
                    if !was_down {
                        say(format!("{e}; lab.db keeps every row, and shipping resumes when the hub answers"));
                    }
                    was_down = true;
                    set(&|s| {
                        s.connected = false;
                        s.error = Some(e.clone());
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = poke.notified() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let (conn, statements, ids) = link.as_mut().expect("connected above");
        match round(&hub, conn, statements, ids, &workcell, &local).await {
            Ok((head, n)) => {
                set(&|s| {
                    s.hub_head = head;
                    s.shipped += n as u64;
                });
                if n < BATCH {
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE) => {}
                        _ = poke.notified() => {}
                    }
                }
            }
            Err(ShipError::Link(e)) => {
                link = None;
                if !was_down {
                    say(format!(
                        "lost the hub at {}: {e}; lab.db keeps every row, and shipping resumes when it answers",
                        hub.redacted()
                    ));
                }
                was_down = true;
                set(&|s| {
                    s.connected = false;
                    s.error = Some(e.clone());
                });
            }
            Err(ShipError::Refused { detail, row }) => {
                let message = format!("the hub refused workcell {workcell}'s journal: {detail}");
                eprintln!("lab: {message}; shipping has stopped (lab.db is unchanged)");
                if let Some((conn, ..)) = &link {
                    let _ = hub
                        .bounded(conn.client.execute(
                            "INSERT INTO fleet.rejections (workcell, journal_id, detail) VALUES ($1, $2, $3)",
                            &[&workcell, &row.unwrap_or(0), &detail],
                        ))
                        .await;
                }
                set(&|s| s.refused = Some(message.clone()));
                return;
            }
        }
    }
}

/// Connects and prepares the shipper's statements.
async fn open(hub: &Hub, workcell: &str) -> Result<(Connection, Statements, AutoIds), FleetError> {
    let conn = hub.connect().await?;
    let statements = hub.bounded(Statements::prepare(&conn.client)).await?;
    let ids = hub.bounded(AutoIds::read(&conn.client, workcell)).await?;
    Ok((conn, statements, ids))
}

/// One journal row of `lab.db`.
struct Row {
    id: i64,
    campaign: Option<i64>,
    at: Option<f64>,
    kind: String,
    body: String,
    hash: String,
}

/// Ships one batch; returns the hub's head after it and how many rows it shipped.
async fn round(
    hub: &Hub,
    conn: &mut Connection,
    st: &Statements,
    ids: &mut AutoIds,
    workcell: &str,
    local: &rusqlite::Connection,
) -> Result<(i64, usize), ShipError> {
    let link = |e: FleetError| ShipError::Link(e.to_string());
    let head = hub
        .bounded(conn.client.query_one(
            "SELECT (SELECT id FROM fleet.journal WHERE workcell = $1 ORDER BY id DESC LIMIT 1),
                    (SELECT hash FROM fleet.journal WHERE workcell = $1 ORDER BY id DESC LIMIT 1),
                    (SELECT coalesce(max(id), 0) FROM fleet.checkpoints WHERE workcell = $1)",
            &[&workcell],
        ))
        .await
        .map_err(link)?;
    let (head_id, head_hash, checkpoint): (Option<i64>, Option<String>, i64) = (head.get(0), head.get(1), head.get(2));
    let head_id = head_id.unwrap_or(0);
    let sqlite = |e: rusqlite::Error| ShipError::Link(format!("reading lab.db: {e}"));
    if let Some(hub_hash) = head_hash {
        let mine: Option<String> = local
            .query_row("SELECT hash FROM journal WHERE id = ?1", [head_id], |r| r.get(0))
            .optional()
            .map_err(sqlite)?;
        match mine {
            Some(h) if h == hub_hash => {}
            Some(_) => {
                return Err(ShipError::Refused {
                    detail: format!(
                        "row {head_id} of this lab.db differs from the hub's copy of workcell {workcell}'s row \
                         {head_id}: this is not the record workcell {workcell} shipped before (give this lab.db \
                         another workcell name)"
                    ),
                    row: Some(head_id),
                });
            }
            None => {
                return Err(ShipError::Refused {
                    detail: format!(
                        "the hub holds {head_id} rows of workcell {workcell}'s journal, more than this lab.db: it is \
                         not the record workcell {workcell} shipped before, or it was cut back"
                    ),
                    row: Some(head_id),
                });
            }
        }
    }
    let rows: Vec<Row> = {
        let mut s = local
            .prepare_cached(
                "SELECT id, campaign_id, at, kind, body, hash FROM journal WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(sqlite)?;
        s.query_map(rusqlite::params![head_id, BATCH as i64], |r| {
            Ok(Row {
                id: r.get(0)?,
                campaign: r.get(1)?,
                at: r.get(2)?,
                kind: r.get(3)?,
                body: r.get(4)?,
                hash: r.get(5)?,
            })
        })
        .map_err(sqlite)?
        .collect::<Result<_, _>>()
        .map_err(sqlite)?
    };
    let reach = rows.last().map_or(head_id, |r| r.id);
    type Checkpoint = (i64, i64, String, String, String, Option<String>, Option<String>);
    let checkpoints: Vec<Checkpoint> = {
        let mut s = local
            .prepare_cached(
                "SELECT id, journal_id, hash, made_at, reason, public_key, signature FROM checkpoints
                 WHERE id > ?1 AND journal_id <= ?2 ORDER BY id",
            )
            .map_err(sqlite)?;
        s.query_map([checkpoint, reach], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })
        .map_err(sqlite)?
        .collect::<Result<_, _>>()
        .map_err(sqlite)?
    };
    if rows.is_empty() && checkpoints.is_empty() {
        return Ok((head_id, 0));
    }
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let event: RecordEvent = serde_json::from_str(&r.body).map_err(|e| ShipError::Refused {
            detail: format!(
                "journal row {} of lab.db is not an event this lab knows ({e}); use the lab that wrote it",
                r.id
            ),
            row: Some(r.id),
        })?;
        events.push(event);
    }
    let tx = hub.bounded(conn.client.transaction()).await.map_err(link)?;
    let mut next_ids = *ids;
    let outcome = {
        let mut pending: Vec<Pending<'_>> = Vec::with_capacity(rows.len() * 3);
        for (r, event) in rows.iter().zip(&events) {
            pending.push(Box::pin(tx.execute_raw(
                &st.journal,
                values![workcell.to_owned(), r.id, r.campaign, r.at, r.kind.clone(), r.body.clone(), r.hash.clone()],
            )));
            project(&tx, st, workcell, &mut next_ids, r.id, event, &mut pending);
        }
        for c in &checkpoints {
            pending.push(Box::pin(tx.execute_raw(
                &st.checkpoint,
                values![workcell.to_owned(), c.0, c.1, c.2.clone(), c.3.clone(), c.4.clone(), c.5.clone(), c.6.clone()],
            )));
        }
        pending.push(Box::pin(tx.execute_raw(
            "UPDATE fleet.workcells SET last_seen = now() WHERE name = $1",
            values![workcell.to_owned()],
        )));
        tokio::time::timeout(OP_TIMEOUT, futures::future::try_join_all(pending)).await
    };
    match outcome {
        Err(_) => return Err(ShipError::Link(format!("no answer within {} s", OP_TIMEOUT.as_secs()))),
        Ok(Err(e)) => {
            return Err(match e.as_db_error() {
                Some(db) => ShipError::Refused { detail: db.message().to_owned(), row: row_named(db.message()) },
                None => ShipError::Link(describe(&e)),
            });
        }
        Ok(Ok(_)) => {}
    }
    hub.bounded(tx.commit()).await.map_err(link)?;
    *ids = next_ids;
    Ok((reach, rows.len()))
}

/// The journal row a refusal names (`journal row N of workcell ...`).
fn row_named(message: &str) -> Option<i64> {
    let rest = message.split("journal row ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}
