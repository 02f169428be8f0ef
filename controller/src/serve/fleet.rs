//! `lab serve --hub URL`: every workcell of a fleet at once, from the hub's verified copy of their records.
//!
//! The pages read one record, so the hub is read into one: a thread of its own polls the hub every second and, when
//! a workcell shipped journal rows or a campaign changed state since the last reading, reads every fleet campaign
//! ([`crate::fleet::mirror`]) and writes them, in one transaction, into a private copy shaped like `lab.db` in a
//! temporary folder (campaign 1 the first published, and so on; experiments numbered by the fleet's proposal
//! number; instruments named `workcell/instrument`; exchanges included). Every page, the live stream and the
//! drill-down then work on that copy as on a workcell's own `lab.db`, and the live pages follow it as they follow a
//! running controller. Each reading also takes the workcells' state (`fleet.workcell_status`: silence, the head of
//! each journal at the hub and its hash, claims, retirement, conflicts) and the refused journal rows, which the
//! campaigns page and the health page show.
//!
//! Nothing here writes to the hub: it only reads, with the same bounded operations as `lab fleet status`. The
//! operator actions of the pages act on one controller through its `lab.db`, which the hub does not have, so they are
//! refused with where to act instead (the workcell's own `lab serve`, or `lab fleet retire|settle`). Reading the
//! whole campaign again on each change is simple and exact, and costs a read of the campaign per second at most;
//! what that takes is measured by the test and printed with each reading (`read_seconds`).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::query::Checkpoint;
use crate::fleet::{FleetError, Hub, mirror};

/// How often the hub is asked whether anything changed.
const POLL: Duration = Duration::from_secs(1);

/// The tables of the copy, emptied before each reading is written (children first).
const TABLES: [&str; 11] = [
    "commands",
    "decisions",
    "measurements",
    "step_events",
    "steps",
    "parameters",
    "experiments",
    "proposals",
    "events",
    "instruments",
    "campaigns",
];

/// One workcell as the hub sees it.
#[derive(Debug, Clone)]
pub struct WorkcellLine {
    /// Its name in the fleet.
    pub name: String,
    /// The name of its lab.
    pub lab: String,
    /// Seconds since the hub last heard from it.
    pub silent: f64,
    /// The id of the last journal row of it the hub holds (0: none yet).
    pub head: i64,
    /// That row's hash.
    pub head_hash: String,
    /// Proposals it has claimed and not started.
    pub claimed: i64,
    /// Proposals it started that have no result yet.
    pub started: i64,
    /// Proposals it started before it was retired, waiting for an operator's verdict.
    pub orphaned: i64,
    /// Results it has sent.
    pub results: i64,
    /// Its state for people: ok, overdue, retired, conflict.
    pub state: String,
    /// Whether the state needs a person's attention.
    pub alarm: bool,
}

/// What the last reading of the hub found.
#[derive(Debug, Clone, Default)]
pub struct FleetState {
    /// The workcells.
    pub workcells: Vec<WorkcellLine>,
    /// The journal rows the hub refused (newest first, at most ten): workcell, row, why.
    pub rejections: Vec<(String, i64, String)>,
    /// The latest checkpoints (at most twenty), newest first.
    pub checkpoints: Vec<Checkpoint>,
    /// How many results the hub flagged as conflicts (from retired workcells, or repeated).
    pub conflicts: i64,
    /// When the hub last answered (wall clock, UTC).
    pub read_at: Option<String>,
    /// How long the last full reading of the campaigns took, in seconds.
    pub read_seconds: Option<f64>,
    /// Why the last attempt to read the hub failed, if it did (the pages then show the last copy).
    pub error: Option<String>,
}

/// The hub a server shows, and its copy.
#[derive(Clone)]
pub struct FleetView {
    redacted: String,
    state: Arc<Mutex<FleetState>>,
    stop: Arc<AtomicBool>,
}

impl FleetView {
    /// The hub's URL with its password hidden.
    pub fn hub(&self) -> &str {
        &self.redacted
    }

    /// What the last reading found.
    pub fn state(&self) -> FleetState {
        self.state.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the reading thread (at its next poll).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Reads the hub into a new copy at `copy` once (so that a hub that cannot be read is said before anything listens),
/// then keeps the copy current from a thread of its own until [`FleetView::stop`].
pub fn start(hub: Hub, copy: &Path) -> Result<FleetView, FleetError> {
    let local = |e: &dyn std::fmt::Display| FleetError::Local(format!("{}: {e}", copy.display()));
    drop(crate::record::Record::open(copy).map_err(|e| local(&e))?);
    let mut conn = rusqlite::Connection::open(copy).map_err(|e| local(&e))?;
    let rt = crate::fleet::hub::runtime()?;
    let state = Arc::new(Mutex::new(FleetState::default()));
    let (marker, fresh) = rt.block_on(async {
        let c = hub.connect().await?;
        let marker = changes(&hub, &c.client).await?;
        let fresh = read(&hub, &c.client, &mut conn).await?;
        Ok::<_, FleetError>((marker, fresh))
    })?;
    if let Ok(mut s) = state.lock() {
        *s = fresh;
    }
    let view =
        FleetView { redacted: hub.redacted().to_owned(), state: state.clone(), stop: Arc::new(AtomicBool::new(false)) };
    let stop = view.stop.clone();
    std::thread::Builder::new()
        .name("lab-serve-hub".into())
        .spawn(move || follow(rt, hub, conn, marker, state, stop))
        .map_err(|e| FleetError::Local(format!("cannot start the hub's reader: {e}")))?;
    Ok(view)
}

/// What changes when anything a page shows changes: each workcell's journal head at the hub (the record's tables
/// change only through it) and each campaign's state and proposals' states.
async fn changes(hub: &Hub, client: &tokio_postgres::Client) -> Result<String, FleetError> {
    let row = hub
        .bounded(client.query_one(
            "SELECT coalesce((SELECT string_agg(workcell || ':' || coalesce(hub_head, 0) || ':' || (retired_at IS NULL)
                                                || ':' || coalesce(conflict, ''), ',' ORDER BY workcell)
                              FROM fleet.workcell_status), '')
                    || '|' || coalesce((SELECT string_agg(campaign || ':' || status || ':' || published || ':' || open
                                                || ':' || running || ':' || succeeded || ':' || failed, ','
                                                ORDER BY campaign)
                                        FROM fleet.campaign_progress), '')",
            &[],
        ))
        .await?;
    Ok(row.get(0))
}

/// Reads every fleet campaign into the copy behind `conn` (one transaction: a page sees the last reading or this one,
/// never half of one), and the workcells' state.
async fn read(
    hub: &Hub,
    client: &tokio_postgres::Client,
    conn: &mut rusqlite::Connection,
) -> Result<FleetState, FleetError> {
    let t0 = Instant::now();
    let names = mirror::campaign_names(hub, client).await?;
    let mut campaigns = Vec::new();
    for name in &names {
        if let Some(data) = mirror::read_campaign(hub, client, name, true).await? {
            campaigns.push((name, data));
        }
    }
    let copy = |e: rusqlite::Error| FleetError::Local(format!("the hub's copy: {e}"));
    let tx = conn.transaction().map_err(copy)?;
    for table in TABLES {
        tx.execute(&format!("DELETE FROM {table}"), []).map_err(copy)?;
    }
    // Campaign ids follow the order of publication, which never changes, so a page's address stays right.
    for (i, (name, data)) in campaigns.iter().enumerate() {
        mirror::write_campaign(&tx, i as i64 + 1, name, hub.redacted(), data).map_err(copy)?;
    }
    tx.commit().map_err(copy)?;
    let mut state = workcells(hub, client).await?;
    state.read_seconds = Some(t0.elapsed().as_secs_f64());
    Ok(state)
}

/// The workcells' state, the refused rows and the conflicts.
async fn workcells(hub: &Hub, client: &tokio_postgres::Client) -> Result<FleetState, FleetError> {
    let rows = hub
        .bounded(client.query(
            "SELECT s.workcell, s.lab_name, extract(epoch FROM s.silent_for)::float8, coalesce(s.hub_head, 0),
                    coalesce(j.hash, ''), s.claimed, s.started, s.orphaned, s.results, s.retired_at::text, s.conflict
             FROM fleet.workcell_status s
             LEFT JOIN fleet.journal j ON j.workcell = s.workcell AND j.id = s.hub_head
             ORDER BY s.workcell",
            &[],
        ))
        .await?;
    let workcells = rows
        .iter()
        .map(|r| {
            let silent: f64 = r.get(2);
            let (state, alarm) = match (r.get::<_, Option<String>>(9), r.get::<_, Option<String>>(10)) {
                (Some(at), Some(c)) => (format!("retired at {at}; conflict: {c}"), true),
                (Some(at), None) => (format!("retired at {at}"), false),
                (None, Some(c)) => (format!("conflict: {c}"), true),
                (None, None) if silent > 60.0 => {
                    ("overdue: silent for over a minute (its claims stay its own)".into(), true)
                }
                (None, None) => ("ok".into(), false),
            };
            WorkcellLine {
                name: r.get(0),
                lab: r.get(1),
                silent,
                head: r.get(3),
                head_hash: r.get(4),
                claimed: r.get(5),
                started: r.get(6),
                orphaned: r.get(7),
                results: r.get(8),
                state,
                alarm,
            }
        })
        .collect();
    let rejections = hub
        .bounded(
            client.query("SELECT workcell, journal_id, detail FROM fleet.rejections ORDER BY id DESC LIMIT 10", &[]),
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let checkpoints = hub
        .bounded(client.query(
            "SELECT workcell, journal_id, hash, made_at, reason, public_key, id FROM fleet.checkpoints
             ORDER BY made_at DESC, workcell, id DESC LIMIT 20",
            &[],
        ))
        .await?
        .iter()
        .map(|r| Checkpoint {
            id: r.get(6),
            workcell: Some(r.get(0)),
            journal_id: r.get(1),
            hash: r.get(2),
            made_at: r.get(3),
            reason: r.get(4),
            public_key: r.get(5),
        })
        .collect();
    let conflicts = hub.bounded(client.query_one("SELECT count(*) FROM fleet.conflicts", &[])).await?.get(0);
    let read_at = hub
        .bounded(client.query_one("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC'", &[]))
        .await?
        .get(0);
    Ok(FleetState {
        workcells,
        rejections,
        checkpoints,
        conflicts,
        read_at: Some(read_at),
        read_seconds: None,
        error: None,
    })
}

/// The reading thread: polls the hub, reads it again when it changed, and reconnects after a failure (the pages keep
/// the last copy meanwhile, and say why it is not newer).
fn follow(
    rt: tokio::runtime::Runtime,
    hub: Hub,
    mut conn: rusqlite::Connection,
    mut marker: String,
    state: Arc<Mutex<FleetState>>,
    stop: Arc<AtomicBool>,
) {
    let mut client = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL);
        let result = rt.block_on(async {
            if client.is_none() {
                client = Some(hub.connect().await?);
            }
            let Some(c) = client.as_ref() else { return Ok(None) };
            let now = changes(&hub, &c.client).await?;
            if now == marker {
                // Silence and the hub's clock move without a change: the workcells' lines are read anyway.
                let mut fresh = workcells(&hub, &c.client).await?;
                if let Ok(s) = state.lock() {
                    fresh.read_seconds = s.read_seconds;
                }
                return Ok(Some((now, fresh)));
            }
            Ok::<_, FleetError>(Some((now, read(&hub, &c.client, &mut conn).await?)))
        });
        match result {
            Ok(Some((now, fresh))) => {
                marker = now;
                if let Ok(mut s) = state.lock() {
                    *s = fresh;
                }
            }
            Ok(None) => {}
            Err(e) => {
                client = None;
                if let Ok(mut s) = state.lock() {
                    s.error = Some(format!(
                        "{e} (the pages show the hub as read at {})",
                        s.read_at.as_deref().unwrap_or("start")
                    ));
                }
            }
        }
    }
}
