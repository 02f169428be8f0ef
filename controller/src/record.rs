//! The record: `lab.db`, the scientist's proof of what was done.
//!
//! Every campaign, instrument identity, proposal, experiment, step transition, scheduling decision, wire exchange
//! and measurement is written here, with provenance (the full text and SHA-256 of the protocol, lab and campaign
//! files, the software version, the seed). The schema is a public interface: migrations in `controller/migrations/`
//! are append-only, tables are `STRICT`, foreign keys are enforced, and plain `sqlite3` reads everything.
//!
//! Writing never blocks the scheduler: systems send [`RecordEvent`]s over a channel to one writer thread, which
//! commits them in batched transactions. The database is in WAL mode, so readers (`sqlite3`, `lab status`) never
//! block the writer, and a crash loses at most the batch being written, never what was committed. A lock file
//! beside the database keeps two controllers from appending to it at once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use devices::transport::Exchange;
use rusqlite::{Connection, OptionalExtension, params};
use rusqlite_migration::{M, Migrations};

/// The schema's migrations, oldest first. Append only.
const MIGRATIONS: &[M<'static>] = &[M::up(include_str!("../migrations/001-initial.sql"))];

/// The schema version this build writes.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

/// Why the record could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// SQLite refused an operation.
    #[error("{path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of lab.
    #[error(
        "{path} has schema version {found}, newer than this lab's {supported}; use the lab that wrote it, or a newer one"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// The file's version.
        found: usize,
        /// This build's version.
        supported: usize,
    },
    /// The file exists but is not a lab.db (or is damaged).
    #[error("{path} is not a lab record or is damaged ({reason}); it was left untouched")]
    NotARecord {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// Another process holds the database.
    #[error("{path} is in use by another lab process (lock file {lock}); wait for it to finish")]
    Locked {
        /// The database file.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The lock file could not be created.
    #[error("cannot create lock file {lock}: {source}")]
    Lock {
        /// The lock file.
        lock: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Migrating failed.
    #[error("{path}: cannot migrate the schema: {source}")]
    Migration {
        /// The database file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: rusqlite_migration::Error,
    },
}

/// An open record, before its writer thread starts.
pub struct Record {
    conn: Connection,
    path: PathBuf,
    _lock: Option<File>,
}

/// Everything about a campaign known when it starts.
#[derive(Debug, Clone)]
pub struct CampaignRow {
    /// The campaign's name.
    pub name: String,
    /// The wall-clock time at lab time zero.
    pub started_at: SystemTime,
    /// Lab seconds per wall second.
    pub time_scale: f64,
    /// The proposer's seed.
    pub seed: u64,
    /// The objective's output name.
    pub objective_output: String,
    /// `maximize` or `minimize`.
    pub objective_direction: &'static str,
    /// How many experiments the campaign runs.
    pub budget: usize,
    /// How many may run at once.
    pub in_flight: usize,
    /// The campaign file: path and text.
    pub campaign: (String, String),
    /// The protocol file: path and text.
    pub protocol: (String, String),
    /// The lab file: path and text.
    pub lab: (String, String),
}

/// The ids a campaign may use: rows are keyed by ids the controller assigns, so the scheduler never waits for the
/// writer to learn an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignIds {
    /// The campaign's row id.
    pub campaign: i64,
    /// The first free experiment id.
    pub first_experiment: i64,
    /// The first free step id.
    pub first_step: i64,
    /// The first free proposal id.
    pub first_proposal: i64,
}

fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> RecordError + '_ {
    move |source| RecordError::Sqlite { path: path.to_owned(), source }
}

impl Record {
    /// Opens (creating if needed) and migrates the record at `path`, and takes its lock.
    pub fn open(path: &Path) -> Result<Record, RecordError> {
        let lock_path = lock_path(path);
        let lock = File::create(&lock_path).map_err(|source| RecordError::Lock { lock: lock_path.clone(), source })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(RecordError::Locked { path: path.to_owned(), lock: lock_path });
            }
            Err(std::fs::TryLockError::Error(source)) => return Err(RecordError::Lock { lock: lock_path, source }),
        }
        let mut record = Self::open_unlocked(path)?;
        record._lock = Some(lock);
        Ok(record)
    }

    /// Opens the record for reading and writing without taking the lock (for read-mostly tools).
    pub fn open_unlocked(path: &Path) -> Result<Record, RecordError> {
        let e = sqlite(path);
        let mut conn = Connection::open(path).map_err(&e)?;
        // A file that is not SQLite fails here, before anything is written to it.
        let version: usize = match conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0)) {
            Ok(v) => v.max(0) as usize,
            Err(err) => return Err(RecordError::NotARecord { path: path.to_owned(), reason: err.to_string() }),
        };
        if version > MIGRATIONS.len() {
            return Err(RecordError::TooNew { path: path.to_owned(), found: version, supported: MIGRATIONS.len() });
        }
        if version == 0 {
            let tables: i64 = conn
                .query_row("SELECT count(*) FROM sqlite_schema WHERE type = 'table'", [], |r| r.get(0))
                .map_err(|err| RecordError::NotARecord { path: path.to_owned(), reason: err.to_string() })?;
            if tables > 0 {
                return Err(RecordError::NotARecord {
                    path: path.to_owned(),
                    reason: "it holds tables but no lab schema version".to_owned(),
                });
            }
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(&e)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(&e)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(&e)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(&e)?;
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .map_err(|source| RecordError::Migration { path: path.to_owned(), source })?;
        Ok(Record { conn, path: path.to_owned(), _lock: None })
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Inserts the campaign's row and reserves id ranges for its experiments, steps and proposals.
    pub fn begin_campaign(&mut self, c: &CampaignRow) -> Result<CampaignIds, RecordError> {
        let e = sqlite(&self.path);
        let next = |conn: &Connection, table: &str| -> rusqlite::Result<i64> {
            conn.query_row(&format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"), [], |r| r.get(0))
        };
        let sha = |t: &str| sha256_hex(t.as_bytes());
        self.conn
            .execute(
                "INSERT INTO campaigns (name, started_at, time_scale, status, software_version, seed, objective_output,
                     objective_direction, budget, in_flight, campaign_path, campaign_text, campaign_sha256,
                     protocol_path, protocol_text, protocol_sha256, lab_path, lab_text, lab_sha256)
                 VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                params![
                    c.name,
                    humantime::format_rfc3339_millis(c.started_at).to_string(),
                    c.time_scale,
                    software_version(),
                    c.seed as i64,
                    c.objective_output,
                    c.objective_direction,
                    c.budget as i64,
                    c.in_flight as i64,
                    c.campaign.0,
                    c.campaign.1,
                    sha(&c.campaign.1),
                    c.protocol.0,
                    c.protocol.1,
                    sha(&c.protocol.1),
                    c.lab.0,
                    c.lab.1,
                    sha(&c.lab.1),
                ],
            )
            .map_err(&e)?;
        Ok(CampaignIds {
            campaign: self.conn.last_insert_rowid(),
            first_experiment: next(&self.conn, "experiments").map_err(&e)?,
            first_step: next(&self.conn, "steps").map_err(&e)?,
            first_proposal: next(&self.conn, "proposals").map_err(&e)?,
        })
    }

    /// Starts the writer thread; the record is then written only through the returned [`Recorder`].
    pub fn start_writer(self) -> (Recorder, RecordWriter) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let path = self.path.clone();
        let handle = std::thread::Builder::new()
            .name("lab-record".into())
            .spawn(move || write_loop(self, rx))
            .expect("spawning the record writer thread");
        (Recorder { tx }, RecordWriter { handle: Some(handle), path })
    }
}

fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// The software version recorded with every campaign.
pub fn software_version() -> String {
    format!("lab {}", env!("CARGO_PKG_VERSION"))
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Something to write to the record.
#[derive(Debug, Clone)]
pub enum RecordEvent {
    /// An instrument was opened and identified, or failed to.
    Instrument {
        /// Campaign id.
        campaign: i64,
        /// Name in the lab file.
        name: String,
        /// Kind.
        kind: String,
        /// Driver.
        driver: String,
        /// Port path.
        port: String,
        /// Line settings.
        line: String,
        /// The identity, if it answered.
        identity: Option<devices::Identity>,
        /// Why it is offline, if it is.
        error: Option<String>,
    },
    /// The proposer proposed a point.
    Proposal {
        /// Proposal id.
        id: i64,
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// The proposal.
        proposal: experiments::Proposal,
    },
    /// An experiment started, with its steps.
    ExperimentStarted {
        /// Experiment id.
        id: i64,
        /// Campaign id.
        campaign: i64,
        /// 1-based number in the campaign.
        seq: i64,
        /// The proposal it came from.
        proposal: Option<i64>,
        /// Parameter values with units, in the protocol's order.
        params: Vec<(String, f64, String)>,
        /// Rack slot of its vessel.
        vessel: i64,
        /// Lab time.
        at: f64,
        /// Its steps: id, step name, op, action JSON, after (step names), repeat-safe, initially ready.
        steps: Vec<StepRow>,
    },
    /// A step changed state.
    StepStatus {
        /// Step id.
        step: i64,
        /// Lab time.
        at: f64,
        /// New state.
        status: &'static str,
        /// The instrument, once assigned.
        instrument: Option<String>,
        /// Outcome JSON (finished steps).
        outcome: Option<String>,
        /// Error (failed or skipped steps).
        error: Option<String>,
    },
    /// The scheduler assigned a step to an instrument.
    Decision {
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// Step id.
        step: i64,
        /// The instrument chosen.
        instrument: String,
        /// The deck place chosen, for transfers.
        place: Option<String>,
        /// How long the step had been ready.
        waited: f64,
        /// Why.
        reason: String,
    },
    /// A reading.
    Measurement {
        /// Experiment id.
        experiment: i64,
        /// Step id.
        step: i64,
        /// Output name.
        name: String,
        /// Value.
        value: f64,
        /// Unit.
        unit: String,
        /// Lab time.
        at: f64,
    },
    /// An experiment ended.
    ExperimentFinished {
        /// Experiment id.
        id: i64,
        /// Lab time.
        at: f64,
        /// The objective value, if it succeeded.
        objective: Option<f64>,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// Bytes crossed a wire.
    Command {
        /// Campaign id.
        campaign: i64,
        /// The exchange.
        exchange: Exchange,
    },
    /// Something the record should say in words (a fault, a safe-state, an operator action).
    Event {
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// `info`, `warning` or `error`.
        level: &'static str,
        /// The instrument concerned, if one.
        instrument: Option<String>,
        /// The message.
        message: String,
    },
    /// The campaign ended.
    CampaignFinished {
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// `finished`, `aborted` or `failed`.
        status: &'static str,
        /// Why, if not finished normally.
        note: Option<String>,
    },
    /// Commit everything before this event, then reply.
    Flush(Sender<()>),
}

/// One step row of an experiment.
#[derive(Debug, Clone)]
pub struct StepRow {
    /// Step id.
    pub id: i64,
    /// The protocol's step id.
    pub step: String,
    /// The operation's name.
    pub op: String,
    /// The bound action as JSON.
    pub action: String,
    /// The protocol ids of the steps it runs after.
    pub after: Vec<String>,
    /// Whether the operation may be repeated safely.
    pub repeat_safe: bool,
    /// Whether it was ready at once.
    pub ready: bool,
}

/// The sending side of the record: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: Sender<RecordEvent>,
}

impl Recorder {
    /// Queues an event for writing.
    pub fn send(&self, event: RecordEvent) {
        // The writer only stops after every Recorder is dropped, so a send cannot fail while one is alive.
        let _ = self.tx.send(event);
    }

    /// Waits until everything queued so far is committed.
    pub fn flush(&self) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(RecordEvent::Flush(tx));
        let _ = rx.recv();
    }

    /// A sink for instrument exchanges that records them under `campaign`.
    pub fn exchange_sink(&self, campaign: i64) -> devices::ExchangeSink {
        let tx = self.tx.clone();
        Arc::new(move |exchange| {
            let _ = tx.send(RecordEvent::Command { campaign, exchange });
        })
    }
}

/// The writer thread; joining it waits until every queued event is committed.
pub struct RecordWriter {
    handle: Option<JoinHandle<Result<u64, String>>>,
    path: PathBuf,
}

impl RecordWriter {
    /// Waits for the writer to finish (after every [`Recorder`] is dropped); returns how many events it wrote.
    pub fn finish(mut self) -> Result<u64, String> {
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(format!("{}: the record writer panicked", self.path.display())),
            None => Ok(0),
        }
    }
}

fn write_loop(record: Record, rx: Receiver<RecordEvent>) -> Result<u64, String> {
    let Record { mut conn, path, _lock } = record;
    let mut written = 0u64;
    let mut batch = Vec::with_capacity(1024);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < 4096 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut acks = Vec::new();
        let tx = conn.transaction().map_err(|e| format!("{}: {e}", path.display()))?;
        for event in batch.drain(..) {
            if let RecordEvent::Flush(ack) = event {
                acks.push(ack);
                continue;
            }
            if let Err(e) = write_event(&tx, &event) {
                // A row that cannot be written is a bug; say so loudly but keep recording everything else.
                tracing::error!("{}: cannot record {event:?}: {e}", path.display());
            }
            written += 1;
        }
        tx.commit().map_err(|e| format!("{}: {e}", path.display()))?;
        for ack in acks {
            let _ = ack.send(());
        }
    }
    Ok(written)
}

fn write_event(tx: &rusqlite::Transaction<'_>, event: &RecordEvent) -> rusqlite::Result<()> {
    match event {
        RecordEvent::Instrument { campaign, name, kind, driver, port, line, identity, error } => {
            tx.prepare_cached(
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
            tx.prepare_cached(
                "INSERT INTO proposals (id, campaign_id, at, strategy, params, predicted_mean, predicted_sd, acquisition,
                     model, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                id,
                campaign,
                at,
                proposal.strategy,
                serde_json::to_string(&proposal.values).unwrap_or_default(),
                proposal.predicted_mean,
                proposal.predicted_sd,
                proposal.acquisition,
                proposal.model.as_ref().map(|m| m.to_string()),
                proposal.reason,
            ])?;
        }
        RecordEvent::ExperimentStarted { id, campaign, seq, proposal, params: values, vessel, at, steps } => {
            let json: serde_json::Map<String, serde_json::Value> =
                values.iter().map(|(n, v, _)| (n.clone(), serde_json::json!(v))).collect();
            tx.prepare_cached(
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
                tx.prepare_cached("INSERT INTO parameters (experiment_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![id, name, value, unit])?;
            }
            for s in steps {
                let status = if s.ready { "ready" } else { "waiting" };
                tx.prepare_cached(
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
                tx.prepare_cached("INSERT INTO step_events (step_id, at, status) VALUES (?1, ?2, ?3)")?
                    .execute(params![s.id, at, status])?;
            }
        }
        RecordEvent::StepStatus { step, at, status, instrument, outcome, error } => {
            let column = match *status {
                "ready" => Some("ready_at"),
                "running" => Some("started_at"),
                "succeeded" | "failed" | "skipped" => Some("finished_at"),
                _ => None,
            };
            if let Some(column) = column {
                tx.prepare_cached(&format!(
                    "UPDATE steps SET status = ?2, {column} = ?3, instrument = coalesce(?4, instrument),
                         outcome = coalesce(?5, outcome), error = coalesce(?6, error) WHERE id = ?1"
                ))?
                .execute(params![step, status, at, instrument, outcome, error])?;
            }
            tx.prepare_cached(
                "INSERT INTO step_events (step_id, at, status, instrument, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![step, at, status, instrument, error.as_ref().or(outcome.as_ref())])?;
        }
        RecordEvent::Decision { campaign, at, step, instrument, place, waited, reason } => {
            tx.prepare_cached(
                "INSERT INTO decisions (campaign_id, at, step_id, instrument, place, waited, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![campaign, at, step, instrument, place, waited, reason])?;
        }
        RecordEvent::Measurement { experiment, step, name, value, unit, at } => {
            tx.prepare_cached(
                "INSERT INTO measurements (experiment_id, step_id, name, value, unit, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![experiment, step, name, value, unit, at])?;
        }
        RecordEvent::ExperimentFinished { id, at, objective, error } => {
            tx.prepare_cached(
                "UPDATE experiments SET status = ?2, finished_at = ?3, objective = ?4, error = ?5 WHERE id = ?1",
            )?
            .execute(params![
                id,
                if error.is_some() { "failed" } else { "succeeded" },
                at,
                objective,
                error
            ])?;
        }
        RecordEvent::Command { campaign, exchange } => {
            tx.prepare_cached(
                "INSERT INTO commands (campaign_id, instrument, step_id, sent_at, sent, sent_text, replied_at, received,
                     received_text, parsed, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                campaign,
                &*exchange.instrument,
                exchange.tag.map(|t| t as i64),
                exchange.sent_at,
                exchange.sent,
                printable(&exchange.sent),
                exchange.replied_at,
                exchange.received,
                printable(&exchange.received),
                exchange.parsed,
                exchange.error,
            ])?;
        }
        RecordEvent::Event { campaign, at, level, instrument, message } => {
            tx.prepare_cached(
                "INSERT INTO events (campaign_id, at, level, instrument, message) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![campaign, at, level, instrument, message])?;
        }
        RecordEvent::CampaignFinished { campaign, at, status, note } => {
            tx.prepare_cached("UPDATE campaigns SET status = ?2, finished_at = ?3, note = ?4 WHERE id = ?1")?
                .execute(params![campaign, status, at, note])?;
        }
        RecordEvent::Flush(_) => {}
    }
    Ok(())
}

/// Bytes as text with control characters escaped, for people reading the record with `sqlite3`.
pub fn printable(bytes: &[u8]) -> String {
    let s = devices::error::Printable(bytes).to_string();
    s[1..s.len() - 1].to_owned()
}

/// Reads the latest campaign's id, if any (for tools that report on "the last campaign").
pub fn latest_campaign(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT max(id) FROM campaigns", [], |r| r.get(0)).optional().map(Option::flatten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        Migrations::from_slice(MIGRATIONS).validate().unwrap();
    }

    #[test]
    fn a_newer_database_is_refused_and_a_foreign_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = Record::open(&path).err().unwrap();
        assert!(matches!(err, RecordError::TooNew { found: 99, .. }), "{err}");

        let other = dir.path().join("other.db");
        {
            let conn = Connection::open(&other).unwrap();
            conn.execute("CREATE TABLE t (x)", []).unwrap();
        }
        let err = Record::open(&other).err().unwrap();
        assert!(matches!(err, RecordError::NotARecord { .. }), "{err}");

        let text = dir.path().join("notes.db");
        std::fs::write(&text, "these are my notes, not a database").unwrap();
        let err = Record::open(&text).err().unwrap();
        assert!(matches!(err, RecordError::NotARecord { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&text).unwrap(), "these are my notes, not a database");
    }

    #[test]
    fn a_second_controller_cannot_open_a_locked_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        let _first = Record::open(&path).unwrap();
        let err = Record::open(&path).err().unwrap();
        assert!(matches!(err, RecordError::Locked { .. }), "{err}");
    }
}
