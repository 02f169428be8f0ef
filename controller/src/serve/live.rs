//! The live campaign page: what a campaign is doing now, and the stream that keeps an open page up to date.
//!
//! A [`Frame`] is everything the page shows about a campaign at one moment, read from the record ([`read_frame`]);
//! it is drawn as sections of HTML by one template (`live_sections.html`), the same sections whether the page is
//! loaded or updated, so the two can never disagree.
//!
//! Keeping pages up to date costs the controller nothing but the reads: one thread ([`Hub`]) asks SQLite every
//! 100 ms whether another connection committed (`PRAGMA data_version`, a read of the write-ahead log's header), and
//! when the record changed it reads and draws one frame per watched campaign (at most twice a second, however
//! many pages are open) and hands it to every open page's server-sent-event stream. A page whose stream drops
//! reconnects by itself (`EventSource`) and gets the latest frame at once.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use askama::Template;
use axum::response::sse::{Event, KeepAlive, Sse};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::watch;

use super::record::{Reader, RecordProblem};
use super::view::Show;
use crate::inspect::report::data::{ExperimentRow, ReportData, StepSpan, lab_seconds_since, read_campaign};
use crate::inspect::status::{Pending, Status, StepLine, lab_seconds_left};

/// An instrument and what it does now.
#[derive(Debug, Clone)]
pub struct InstrumentState {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Its model, as it identified itself.
    pub model: String,
    /// Why it is offline, if it is.
    pub offline: Option<String>,
    /// The step it runs now.
    pub doing: Option<StepLine>,
}

/// An experiment in flight.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Its number.
    pub seq: i64,
    /// Its parameters, as `name value unit` pairs.
    pub parameters: String,
    /// Lab seconds it started.
    pub started_at: f64,
    /// What runs for it now.
    pub now: String,
}

/// A reagent's stock, where the record tracks it.
#[derive(Debug, Clone)]
pub struct StockLevel {
    /// The reagent.
    pub reagent: String,
    /// Where it stands (a pump's reservoir, a valve's port).
    pub source: String,
    /// What is left.
    pub left: f64,
    /// What running experiments have reserved.
    pub reserved: f64,
    /// The unit.
    pub unit: String,
    /// Whether it runs low.
    pub low: bool,
}

/// Everything the live page shows about a campaign at one moment.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The campaign's id.
    pub campaign: i64,
    /// Its name.
    pub name: String,
    /// Its status in the record.
    pub status: String,
    /// Its state for people: running, paused, stopped without finishing, finished, aborted, failed.
    pub state: String,
    /// The state as a word for styles and tests.
    pub state_class: String,
    /// Paused by an operator.
    pub paused: bool,
    /// Why it stopped, if the record says.
    pub note: Option<String>,
    /// Experiments to run.
    pub budget: i64,
    /// Experiments succeeded.
    pub succeeded: i64,
    /// Experiments failed.
    pub failed: i64,
    /// Experiments running.
    pub running: i64,
    /// Steps running.
    pub running_steps: usize,
    /// Steps ready, waiting for an instrument.
    pub ready: usize,
    /// Steps waiting for earlier steps.
    pub waiting: i64,
    /// Steps failed.
    pub failed_steps: usize,
    /// Lab seconds since the start.
    pub lab_now: f64,
    /// Lab seconds still needed, from the pace so far.
    pub left: Option<f64>,
    /// Lab seconds per wall second.
    pub time_scale: f64,
    /// When it started (wall clock).
    pub started_at: String,
    /// The best experiment's number and objective.
    pub best: Option<(i64, f64)>,
    /// The objective's name.
    pub objective: String,
    /// Its unit.
    pub unit: String,
    /// Whether larger is better.
    pub maximize: bool,
    /// The instruments.
    pub instruments: Vec<InstrumentState>,
    /// The experiments running.
    pub inflight: Vec<InFlight>,
    /// Steps whose outcome is unknown.
    pub unknown: Vec<StepLine>,
    /// Deck places a lost vessel blocks: (place, why).
    pub blocked: Vec<(String, String)>,
    /// Reagent stock, where the record tracks it.
    pub stock: Option<Vec<StockLevel>>,
    /// The latest warnings and errors: (lab seconds, level, message).
    pub warnings: Vec<(f64, String, String)>,
    /// Operators' requests not carried out yet.
    pub pending: Vec<Pending>,
    /// Lab time the Gantt chart starts at.
    pub gantt_from: f64,
    /// How many of the latest experiments the Gantt chart shows, if it shows a window of a long campaign.
    pub gantt_window: Option<usize>,
}

impl Frame {
    /// Experiments that have ended.
    pub fn done(&self) -> i64 {
        self.succeeded + self.failed
    }
}

/// The Gantt chart of the live page shows a campaign's latest experiments (and every running one) once it has more.
pub const GANTT_WINDOW: i64 = 100;

/// Where the live Gantt chart starts: lab time 0 for a short campaign; for a long one, when the last experiment
/// before the window ended (so every step of the window is drawn whole, and none before it is missing).
fn gantt_window(conn: &Connection, campaign: i64) -> rusqlite::Result<(f64, Option<i64>)> {
    let last: i64 =
        conn.query_row("SELECT coalesce(max(seq), 0) FROM experiments WHERE campaign_id = ?1", [campaign], |r| {
            r.get(0)
        })?;
    if last <= GANTT_WINDOW {
        return Ok((0.0, None));
    }
    let threshold = last - GANTT_WINDOW;
    let from: Option<f64> = conn.query_row(
        "SELECT max(finished_at) FROM experiments WHERE campaign_id = ?1 AND seq <= ?2 AND status != 'running'",
        rusqlite::params![campaign, threshold],
        |r| r.get(0),
    )?;
    Ok((from.unwrap_or(0.0), Some(threshold)))
}

/// Stock levels, where the record tracks them: each tracked bottle's stock as `lab status` reads it, what running
/// experiments still hold reserved there (reserved, less what they drew or let go, plus what a dispense that never
/// acted gave back), and whether it runs low (nothing free, or an experiment waits for a restock of its reagent).
/// `None` for a record older than schema version 7 or a campaign with no tracked bottle, so the page shows no stock
/// section.
fn stock_levels(conn: &Connection, campaign: i64) -> rusqlite::Result<Option<Vec<StockLevel>>> {
    let (stock, waiting) = crate::inspect::status::stock_of(conn, campaign)?;
    if stock.is_empty() {
        return Ok(None);
    }
    let mut stmt = conn.prepare(
        "SELECT bottle, sum(max(held, 0)) FROM (
             SELECT bottle, sum(CASE kind WHEN 'reserved' THEN volume_ul WHEN 'drawn' THEN -volume_ul
                 WHEN 'released' THEN -volume_ul WHEN 'adjusted' THEN CASE unknown WHEN 0 THEN volume_ul ELSE 0 END
                 ELSE 0 END) AS held
             FROM stock_events WHERE campaign_id = ?1 AND experiment_id IS NOT NULL GROUP BY bottle, experiment_id)
         GROUP BY bottle",
    )?;
    let reserved: HashMap<String, f64> =
        stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    // A waiting message names its reagent between the first pair of backquotes.
    let short: Vec<&str> = waiting.iter().filter_map(|m| m.split('`').nth(1)).collect();
    Ok(Some(
        stock
            .into_iter()
            .map(|(bottle, reagent, left)| {
                let reserved = reserved.get(&bottle).copied().unwrap_or(0.0);
                StockLevel {
                    low: left - reserved <= 0.0 || short.contains(&reagent.as_str()),
                    reagent,
                    source: bottle,
                    left: left / 1000.0,
                    reserved: reserved / 1000.0,
                    unit: "mL".to_owned(),
                }
            })
            .collect(),
    ))
}

/// Parameters of experiments by id, as `name value unit` text.
fn parameter_text(conn: &Connection, ids: &[i64]) -> rusqlite::Result<HashMap<i64, String>> {
    let mut out: HashMap<i64, String> = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let marks = vec!["?"; ids.len()].join(",");
    let mut stmt = conn.prepare(&format!(
        "SELECT experiment_id, name, value, unit FROM parameters WHERE experiment_id IN ({marks}) ORDER BY name"
    ))?;
    let mut rows = stmt.query(rusqlite::params_from_iter(ids))?;
    let show = Plain;
    while let Some(r) = rows.next()? {
        let (id, name, value, unit): (i64, String, f64, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
        let text = out.entry(id).or_default();
        if !text.is_empty() {
            text.push_str(", ");
        }
        let unit = if unit == "1" { String::new() } else { format!(" {unit}") };
        text.push_str(&format!("{name} {}{unit}", show.num(value)));
    }
    Ok(out)
}

/// Formatting outside a template.
struct Plain;
impl Show for Plain {}

/// Reads what the live page shows of campaign `campaign`; `Ok(None)` if the record has no such campaign.
pub fn read_frame(conn: &Connection, db: &Path, campaign: i64) -> rusqlite::Result<Option<Frame>> {
    let Some(s) = Status::read_from(conn, db, campaign)? else { return Ok(None) };
    let maximize: bool =
        conn.query_row("SELECT objective_direction = 'maximize' FROM campaigns WHERE id = ?1", [campaign], |r| {
            r.get(0)
        })?;
    let mut instruments = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT name, kind, coalesce(model, driver), status, error FROM instruments WHERE campaign_id = ?1
             ORDER BY name",
        )?;
        let mut rows = stmt.query([campaign])?;
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let status: String = r.get(3)?;
            let error: Option<String> = r.get(4)?;
            instruments.push(InstrumentState {
                doing: s.running_steps.iter().find(|l| l.instrument.as_deref() == Some(name.as_str())).cloned(),
                kind: r.get(1)?,
                model: r.get(2)?,
                offline: (status == "offline").then(|| error.unwrap_or_else(|| "offline".to_owned())),
                name,
            });
        }
    }
    let running: Vec<(i64, i64, f64)> = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, seq, started_at FROM experiments WHERE campaign_id = ?1 AND status = 'running' ORDER BY seq",
        )?;
        stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?
    };
    let ids: Vec<i64> = running.iter().map(|r| r.0).collect();
    let mut parameters = parameter_text(conn, &ids)?;
    let inflight = running
        .iter()
        .map(|(id, seq, started_at)| InFlight {
            seq: *seq,
            parameters: parameters.remove(id).unwrap_or_default(),
            started_at: *started_at,
            now: s
                .running_steps
                .iter()
                .filter(|l| l.experiment == *seq)
                .map(|l| format!("{} on {}", l.step, l.instrument.as_deref().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join("; "),
        })
        .collect();
    let (state, state_class) = match (s.status.as_str(), s.paused, s.controller) {
        ("running", true, _) => ("paused: running steps finish, nothing new starts".to_owned(), "paused"),
        ("running", _, Some(false)) => {
            ("stopped without finishing: `lab resume` carries on from the record".to_owned(), "stranded")
        }
        ("running", _, _) => ("running".to_owned(), "running"),
        (other, _, _) => (other.to_owned(), other),
    };
    let (gantt_from, window) = gantt_window(conn, campaign)?;
    let warnings = {
        let mut stmt = conn.prepare_cached(
            "SELECT at, level, coalesce(instrument || ': ', '') || message FROM events
             WHERE campaign_id = ?1 AND level IN ('warning', 'error') ORDER BY id DESC LIMIT 10",
        )?;
        stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?
    };
    Ok(Some(Frame {
        campaign,
        state,
        state_class: state_class.to_owned(),
        paused: s.paused,
        budget: s.budget,
        succeeded: s.succeeded,
        failed: s.failed,
        running: s.running,
        running_steps: s.running_steps.len(),
        ready: s.ready_steps.len(),
        waiting: s.waiting,
        failed_steps: s.failed_steps.len(),
        left: lab_seconds_left(s.done() as usize, s.budget as usize, s.lab_now),
        lab_now: s.lab_now,
        time_scale: s.time_scale,
        started_at: s.started_at,
        best: s.best,
        objective: s.objective,
        unit: s.unit,
        maximize,
        instruments,
        inflight,
        unknown: s.unknown_steps,
        blocked: s.blocked,
        stock: stock_levels(conn, campaign)?,
        warnings,
        pending: s.pending,
        gantt_from,
        gantt_window: window.map(|_| GANTT_WINDOW as usize),
        name: s.name,
        status: s.status,
        note: s.note,
    }))
}

/// The parts of the live page, drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Sections {
    /// The state, progress, best and times.
    pub summary: String,
    /// Pause, resume and abort (for a signed-in browser), and requests not carried out yet.
    pub actions: String,
    /// The instruments and what each does.
    pub instruments: String,
    /// The Gantt chart's caption.
    pub gantt: String,
    /// The objective's caption.
    pub objective: String,
    /// The experiments in flight.
    pub inflight: String,
    /// The steps in doubt.
    pub doubt: String,
    /// The blocked places.
    pub blocked: String,
    /// Reagent stock, where the record tracks it.
    pub stock: Option<String>,
    /// The latest warnings.
    pub warnings: String,
}

#[derive(Template)]
#[template(path = "live_sections.html")]
struct Section<'a> {
    which: &'a str,
    f: &'a Frame,
    signed_in: bool,
    csrf: &'a str,
}

impl Show for Section<'_> {}

impl Sections {
    /// Draws the sections of `f`, with the actions' forms if the browser signed in.
    pub fn draw(f: &Frame, signed_in: bool, csrf: &str) -> Result<Sections, askama::Error> {
        let csrf = if signed_in { csrf } else { "" };
        let part = |which: &str| Section { which, f, signed_in, csrf }.render();
        Ok(Sections {
            summary: part("summary")?,
            actions: part("actions")?,
            instruments: part("instruments")?,
            gantt: part("gantt")?,
            objective: part("objective")?,
            inflight: part("inflight")?,
            doubt: part("doubt")?,
            blocked: part("blocked")?,
            stock: f.stock.as_ref().map(|_| part("stock")).transpose()?,
            warnings: part("warnings")?,
        })
    }
}

/// The address of the live Gantt chart's image, at version `version`.
pub fn gantt_src(campaign: i64, version: u64) -> String {
    format!("/campaigns/{campaign}/plots/instruments.svg?recent=1&v={version}")
}

/// The address of the objective plot's image, which changes only when a result arrives.
pub fn objective_src(f: &Frame) -> String {
    format!("/campaigns/{}/plots/objective.svg?v={}-{}", f.campaign, f.done(), f.running)
}

/// One update for the open pages of a campaign: the sections by element id and the images' addresses, as JSON.
fn message(f: &Frame, sections: &Sections, version: u64) -> String {
    let mut parts = serde_json::Map::new();
    for (id, html) in [
        ("live-summary", &sections.summary),
        ("live-actions", &sections.actions),
        ("live-instruments", &sections.instruments),
        ("live-gantt", &sections.gantt),
        ("live-objective", &sections.objective),
        ("live-inflight", &sections.inflight),
        ("live-doubt", &sections.doubt),
        ("live-blocked", &sections.blocked),
        ("live-warnings", &sections.warnings),
    ] {
        parts.insert(id.to_owned(), serde_json::Value::String(html.clone()));
    }
    if let Some(stock) = &sections.stock {
        parts.insert("live-stock".to_owned(), serde_json::Value::String(stock.clone()));
    }
    serde_json::json!({
        "version": version,
        "sections": parts,
        "images": { "img-gantt": gantt_src(f.campaign, version), "img-objective": objective_src(f) },
        // A page whose stock section appears or disappears (a record that gains stock tracking) reloads once.
        "stock": sections.stock.is_some(),
    })
    .to_string()
}

/// Which stream a page follows: a campaign, drawn for a signed-in browser or not.
type Key = (i64, bool);

/// The latest update of a stream, shared by every page that follows it.
type Latest = Option<Arc<String>>;

/// How often the hub asks whether the record changed.
const POLL: Duration = Duration::from_millis(100);
/// The shortest time between two frames of one campaign: a busy record (a simulation writes thousands of steps a
/// second) is read at most twice a second, which keeps a page within a second of it.
const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// A frame is drawn at least this often while pages follow it, so lab time moves on the page.
const REFRESH: Duration = Duration::from_secs(5);

/// The streams of the open live pages, fed by one thread that reads the record when it changes.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

struct HubInner {
    reader: Reader,
    csrf: String,
    streams: Mutex<HashMap<Key, watch::Sender<Latest>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Hub {
    /// A hub for the record `reader` reads; forms in signed-in frames carry `csrf`.
    pub fn new(reader: Reader, csrf: &str) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                reader,
                csrf: csrf.to_owned(),
                streams: Mutex::new(HashMap::new()),
                thread: Mutex::new(None),
            }),
        }
    }

    /// Follows campaign `campaign` (drawn for a signed-in browser if `signed_in`); the receiver sees the latest
    /// frame at once and every new one after.
    pub fn subscribe(&self, campaign: i64, signed_in: bool) -> watch::Receiver<Latest> {
        let mut rx = match self.inner.streams.lock() {
            Ok(mut streams) => {
                streams.entry((campaign, signed_in)).or_insert_with(|| watch::channel(None).0).subscribe()
            }
            // A poisoned map means a panic elsewhere; this page simply gets no updates.
            Err(_) => watch::channel(None).1,
        };
        rx.mark_changed();
        self.start();
        rx
    }

    fn start(&self) {
        let Ok(mut thread) = self.inner.thread.lock() else { return };
        if thread.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let hub = Arc::downgrade(&self.inner);
        *thread = std::thread::Builder::new().name("lab-serve-live".into()).spawn(move || watch_record(hub)).ok();
    }
}

/// The hub's thread: polls the record for changes and draws frames for the watched campaigns. It ends when the
/// server drops the hub.
fn watch_record(hub: Weak<HubInner>) {
    let mut conn: Option<Connection> = None;
    let mut seen: Option<i64> = None;
    let mut version: u64 = 0;
    let mut drawn: HashMap<Key, (Instant, u64)> = HashMap::new();
    loop {
        std::thread::sleep(POLL);
        let Some(hub) = hub.upgrade() else { return };
        let keys: Vec<Key> = match hub.streams.lock() {
            Ok(mut streams) => {
                streams.retain(|_, tx| tx.receiver_count() > 0);
                streams.keys().copied().collect()
            }
            Err(_) => return,
        };
        drawn.retain(|k, _| keys.contains(k));
        if keys.is_empty() {
            continue;
        }
        if conn.is_none() {
            conn = super::record::open(hub.reader.path()).ok();
        }
        let Some(c) = &conn else { continue };
        let changed = match c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)) {
            Ok(v) => {
                let changed = seen != Some(v);
                seen = Some(v);
                changed
            }
            Err(_) => {
                conn = None;
                continue;
            }
        };
        if changed {
            version += 1;
        }
        let now = Instant::now();
        let due: Vec<Key> = keys
            .into_iter()
            .filter(|k| match drawn.get(k) {
                None => true,
                Some((at, v)) => {
                    (*v != version && now.duration_since(*at) >= MIN_INTERVAL) || now.duration_since(*at) >= REFRESH
                }
            })
            .collect();
        let mut frames: HashMap<i64, Option<Frame>> = HashMap::new();
        for key in due {
            let frame = match frames.get(&key.0) {
                Some(f) => f.clone(),
                None => {
                    let f = read_frame(c, hub.reader.path(), key.0).ok().flatten();
                    frames.insert(key.0, f.clone());
                    f
                }
            };
            drawn.insert(key, (now, version));
            let Some(frame) = frame else { continue };
            let Ok(sections) = Sections::draw(&frame, key.1, &hub.csrf) else { continue };
            let text = message(&frame, &sections, version);
            if let Ok(streams) = hub.streams.lock()
                && let Some(tx) = streams.get(&key)
            {
                tx.send_if_modified(|latest| {
                    // The image addresses carry the version, so an unchanged record sends nothing new.
                    let same = latest.as_deref().is_some_and(|l| *l == text);
                    if !same {
                        *latest = Some(Arc::new(text));
                    }
                    !same
                });
            }
        }
    }
}

/// The server-sent-event stream of campaign `campaign`'s live page.
pub fn stream(
    hub: &Hub,
    campaign: i64,
    signed_in: bool,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>> + use<>> {
    let rx = hub.subscribe(campaign, signed_in);
    let events = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            rx.changed().await.ok()?;
            let latest = rx.borrow_and_update().clone();
            if let Some(text) = latest {
                return Some((Ok(Event::default().event("frame").data(text.as_str())), rx));
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Which steps a plot needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steps {
    /// None (the objective plot).
    None,
    /// The live Gantt chart's window.
    Recent,
    /// Every step of the campaign.
    All,
}

/// The data of a campaign's objective and Gantt plots: every experiment, and the steps asked for; with the lab time
/// the Gantt chart starts at.
pub fn plot_data(conn: &Connection, campaign: i64, wanted: Steps) -> rusqlite::Result<Option<(ReportData, f64)>> {
    let Some(info) = read_campaign(conn, campaign)? else { return Ok(None) };
    let (from, threshold) = match wanted {
        Steps::Recent => gantt_window(conn, campaign)?,
        _ => (0.0, None),
    };
    let steps = if wanted == Steps::None {
        Vec::new()
    } else {
        let mut stmt = conn.prepare_cached(
            "SELECT s.instrument, s.op, e.seq, s.started_at, s.finished_at, s.status
             FROM experiments e JOIN steps s ON s.experiment_id = e.id
             WHERE e.campaign_id = ?1 AND (e.seq > ?2 OR e.status = 'running')
             AND s.instrument IS NOT NULL AND s.started_at IS NOT NULL
             ORDER BY s.started_at, s.id",
        )?;
        stmt.query_map(rusqlite::params![campaign, threshold.unwrap_or(0)], StepSpan::from_row)?
            .collect::<Result<Vec<_>, _>>()?
    };
    let experiments = {
        let mut stmt = conn.prepare_cached(
            "SELECT e.seq, e.status, e.objective, p.predicted_mean, p.predicted_sd, p.strategy, e.started_at,
                    e.finished_at, e.error
             FROM experiments e LEFT JOIN proposals p ON p.id = e.proposal_id
             WHERE e.campaign_id = ?1 ORDER BY e.seq",
        )?;
        stmt.query_map([campaign], |r| {
            let mean: Option<f64> = r.get(3)?;
            let sd: Option<f64> = r.get(4)?;
            Ok(ExperimentRow {
                seq: r.get(0)?,
                status: r.get(1)?,
                values: Default::default(),
                objective: r.get(2)?,
                predicted: mean.zip(sd.or(Some(0.0))),
                strategy: r.get(5)?,
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
                error: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let instruments = crate::inspect::report::data::instruments(conn, campaign)?;
    let objective_unit: String = conn
        .query_row(
            "SELECT m.unit FROM measurements m JOIN experiments e ON e.id = m.experiment_id
             WHERE e.campaign_id = ?1 AND m.name = ?2 LIMIT 1",
            rusqlite::params![campaign, info.objective],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or_default();
    // Lab time now: the campaign's end, or the wall clock's reading for a running one, and never before the last
    // step drawn.
    let last = steps.iter().flat_map(|s| [Some(s.started_at), s.finished_at]).flatten().fold(from, f64::max);
    let now = info
        .finished_at
        .or_else(|| (info.status == "running").then(|| lab_seconds_since(&info.started_at, info.time_scale)).flatten());
    let lab_now = now.unwrap_or(last).max(last);
    let data = ReportData {
        campaign: info,
        parameters: Vec::new(),
        objective_unit,
        experiments,
        steps,
        instruments,
        head: None,
        lab_now,
        // The live page draws no table of expected against real durations; `lab report` does.
        durations: Vec::new(),
    };
    Ok(Some((data, from)))
}

/// Reads the frame of `campaign` through `reader`, for a page's first drawing.
pub fn frame(reader: &Reader, campaign: i64) -> Result<Option<Frame>, RecordProblem> {
    let db: PathBuf = reader.path().to_owned();
    reader.with(|conn| read_frame(conn, &db, campaign))
}
