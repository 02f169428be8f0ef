//! Journal shipping: a workcell's `lab.db` journal to the hub, in order, idempotently, whatever the link does.
//!
//! The shipper runs on its own thread with its own connection. On each new connection it reads the hub's head for
//! the workcell (its last row and that row's hash) and checks that `lab.db` holds the same row (else this is not the
//! record the hub knows under this name, and nothing is shipped). Each round then reads up to [`BATCH`] rows after
//! the head and sends them in one transaction: into `fleet.journal`, where a trigger refuses rows that do not chain,
//! and through [`super::project`] into the hub's tables, a few multi-row statements per batch, pipelined; the
//! checkpoints they reach go too. A round that fails leaves the hub as it was, and the next connection starts from
//! the hub's head again, so a row is never shipped twice or skipped. A round with nothing new in `lab.db` asks the
//! hub nothing.
//!
//! The shipper looks at `lab.db` every [`IDLE`], and at once when poked: `lab workcell` pokes it as soon as a
//! result is committed to `lab.db`, so the learner hears of it within a round trip or two.
//!
//! A lost link is retried with a backoff of at most one second; `lab.db` keeps everything meanwhile. A batch that
//! does not go through within the bound of one operation is halved for the next try, so a slow link still moves.
//! A refused row stops the shipper for good: the refusal is recorded at the hub (`fleet.rejections`, with the
//! workcell and the row) and reported, since shipping past it would break the copy's chain.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::OptionalExtension;
use tokio::sync::Notify;

use super::hub::{Connection, FleetError, Hub, OP_TIMEOUT, describe};
use super::project::{AutoIds, Batch, Pending, Statements, values};
use crate::record::RecordEvent;

/// The most journal rows one transaction ships.
pub const BATCH: usize = 4096;

/// The fewest rows a batch is cut to on a slow link (see [`round`]).
const MIN_BATCH: usize = 64;

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

    /// A handle that pokes this shipper from any thread (see [`Shipper::poke`]).
    pub fn poker(&self) -> Poke {
        Poke(Arc::clone(&self.poke))
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

/// Pokes a shipper: it looks at `lab.db` at once rather than at its next round.
#[derive(Debug, Clone)]
pub struct Poke(Arc<Notify>);

impl Poke {
    /// Pokes the shipper.
    pub fn poke(&self) {
        self.0.notify_one();
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
    /// Reading `lab.db`: try again.
    Local(String),
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
    let mut link: Option<Link> = None;
    let mut local: Option<rusqlite::Connection> = None;
    let mut backoff = Duration::from_millis(50);
    let mut was_down = false;
    let mut size = BATCH;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if local.is_none() {
            match rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) {
                Ok(c) => local = Some(c),
                Err(e) => {
                    set(&|s| s.error = Some(format!("cannot read {}: {e}", db.display())));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        let reader = local.as_ref().expect("opened above");
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
        let l = link.as_mut().expect("connected above");
        let asked = size;
        match round(&hub, l, &workcell, reader, asked).await {
            Ok((head, n)) => {
                size = (size * 2).min(BATCH);
                set(&|s| {
                    s.hub_head = head;
                    s.shipped += n as u64;
                });
                if n < asked {
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE) => {}
                        _ = poke.notified() => {}
                    }
                }
            }
            Err(ShipError::Local(e)) => {
                // The record could not be read (a moment's lock, a file replaced): read it afresh next round.
                local = None;
                set(&|s| s.error = Some(e.clone()));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(ShipError::Link(e)) => {
                link = None;
                // A link too slow for a batch within the bound gets smaller batches; they grow again after.
                size = (size / 2).max(MIN_BATCH);
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
                if let Some(l) = &link {
                    let _ = hub
                        .bounded(l.conn.client.execute(
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

/// A connection to the hub, with the shipper's statements, the ids it numbers rows from, and how far the hub's copy
/// reaches once it has been read on this connection.
struct Link {
    conn: Connection,
    statements: Statements,
    ids: AutoIds,
    /// The hub's last journal row and last checkpoint of this workcell, as the last round left them.
    head: Option<(i64, i64)>,
}

/// Connects and prepares the shipper's statements.
async fn open(hub: &Hub, workcell: &str) -> Result<Link, FleetError> {
    let conn = hub.connect().await?;
    let statements = hub.bounded(Statements::prepare(&conn.client)).await?;
    let ids = hub.bounded(AutoIds::read(&conn.client, workcell)).await?;
    Ok(Link { conn, statements, ids, head: None })
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

/// A checkpoint row of `lab.db`.
type Checkpoint = (i64, i64, String, String, String, Option<String>, Option<String>);

/// Reads the hub's copy's head and checks that `lab.db` holds the same row there.
async fn hub_head(
    hub: &Hub,
    conn: &Connection,
    workcell: &str,
    local: &rusqlite::Connection,
) -> Result<(i64, i64), ShipError> {
    let head = hub
        .bounded(conn.client.query_one(
            "SELECT (SELECT id FROM fleet.journal WHERE workcell = $1 ORDER BY id DESC LIMIT 1),
                    (SELECT hash FROM fleet.journal WHERE workcell = $1 ORDER BY id DESC LIMIT 1),
                    (SELECT coalesce(max(id), 0) FROM fleet.checkpoints WHERE workcell = $1)",
            &[&workcell],
        ))
        .await
        .map_err(|e| ShipError::Link(e.to_string()))?;
    let (head_id, head_hash, checkpoint): (Option<i64>, Option<String>, i64) = (head.get(0), head.get(1), head.get(2));
    let head_id = head_id.unwrap_or(0);
    if let Some(hub_hash) = head_hash {
        let mine: Option<String> = local
            .query_row("SELECT hash FROM journal WHERE id = ?1", [head_id], |r| r.get(0))
            .optional()
            .map_err(|e| ShipError::Local(format!("reading lab.db: {e}")))?;
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
    Ok((head_id, checkpoint))
}

/// Ships one batch of at most `size` rows; returns the hub's head after it and how many rows it shipped.
async fn round(
    hub: &Hub,
    link: &mut Link,
    workcell: &str,
    local: &rusqlite::Connection,
    size: usize,
) -> Result<(i64, usize), ShipError> {
    let sqlite = |e: rusqlite::Error| ShipError::Local(format!("reading lab.db: {e}"));
    // Nothing new in lab.db since the last round: no need to ask the hub anything.
    let (local_head, local_checkpoint): (i64, i64) = local
        .query_row(
            "SELECT (SELECT coalesce(max(id), 0) FROM journal), (SELECT coalesce(max(id), 0) FROM checkpoints)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sqlite)?;
    let (head_id, checkpoint) = match link.head {
        Some(h) => h,
        None => {
            let h = hub_head(hub, &link.conn, workcell, local).await?;
            link.head = Some(h);
            h
        }
    };
    if local_head <= head_id && local_checkpoint <= checkpoint {
        return Ok((head_id, 0));
    }
    let rows: Vec<Row> = {
        let mut s = local
            .prepare_cached(
                "SELECT id, campaign_id, at, kind, body, hash FROM journal WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(sqlite)?;
        s.query_map(rusqlite::params![head_id, size as i64], |r| {
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
    let mut batch = Batch::new(&link.statements, workcell, link.ids);
    for r in &rows {
        let event: RecordEvent = serde_json::from_str(&r.body).map_err(|e| ShipError::Refused {
            detail: format!(
                "journal row {} of lab.db is not an event this lab knows ({e}); use the lab that wrote it",
                r.id
            ),
            row: Some(r.id),
        })?;
        batch.add(r.id, r.campaign, r.at, &r.kind, &r.body, &r.hash, &event);
    }
    let (statements, next_ids) = batch.statements();
    let reached_checkpoint = checkpoints.last().map_or(checkpoint, |c| c.0);
    let tx = hub.bounded(link.conn.client.transaction()).await.map_err(|e| ShipError::Link(e.to_string()))?;
    let outcome = {
        let mut pending: Vec<Pending<'_>> = Vec::with_capacity(statements.len() + checkpoints.len() + 1);
        for (statement, values) in statements {
            pending.push(Box::pin(tx.execute_raw(statement, values)));
        }
        for c in &checkpoints {
            pending.push(Box::pin(tx.execute_raw(
                &link.statements.checkpoint,
                values![workcell.to_owned(), c.0, c.1, c.2.clone(), c.3.clone(), c.4.clone(), c.5.clone(), c.6.clone()],
            )));
        }
        pending.push(Box::pin(tx.execute_raw("SELECT fleet.seen($1)", values![workcell.to_owned()])));
        tokio::time::timeout(OP_TIMEOUT, futures::future::try_join_all(pending)).await
    };
    match outcome {
        Err(_) => return Err(ShipError::Link(format!("no answer within {} s", OP_TIMEOUT.as_secs()))),
        Ok(Err(e)) => return Err(classify(&e)),
        Ok(Ok(_)) => {}
    }
    hub.bounded(tx.commit()).await.map_err(|e| ShipError::Link(e.to_string()))?;
    link.ids = next_ids;
    link.head = Some((reach, reached_checkpoint));
    Ok((reach, rows.len()))
}

/// A failed round: the link or a passing conflict (try again from the hub's head), or a refusal (stop).
fn classify(e: &tokio_postgres::Error) -> ShipError {
    let Some(db) = e.as_db_error() else { return ShipError::Link(describe(e)) };
    let code = db.code().code();
    // Another shipper of this workcell's record got there first (a killed workcell's process not yet gone, or an
    // operator's `--ship-only`), the server is shutting down, or a transaction lost a race: none of it is this
    // journal's fault, and the next round starts again from the hub's head.
    let raced = code == "23505" && db.constraint() == Some("journal_pkey");
    if raced || ["40", "53", "57", "08"].iter().any(|c| code.starts_with(c)) {
        return ShipError::Link(db.message().to_owned());
    }
    ShipError::Refused { detail: db.message().to_owned(), row: row_named(db.message()) }
}

/// The journal row a refusal names (`journal row N of workcell ...`).
fn row_named(message: &str) -> Option<i64> {
    let rest = message.split("journal row ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}
