//! The record: `lab.db`, the scientist's proof of what was done.
//!
//! Every campaign, instrument identity, proposal, experiment, step transition, scheduling decision, wire exchange
//! and measurement is written here, with provenance (the full text and SHA-256 of the protocol, lab and campaign
//! files, the software version, the seed). The schema is a public interface: migrations in `controller/migrations/`
//! are append-only, tables are `STRICT`, foreign keys are enforced, and plain `sqlite3` reads everything.
//!
//! Every fact is an [`RecordEvent`] appended to the [`journal`], a SHA-256 hash chain; the tables people read are
//! [`project`]ions of it, updated in the same transaction, and [`verify`] checks both. Writing never blocks the
//! scheduler: systems send events over a bounded channel to one writer thread, which commits them in batched
//! transactions (WAL mode, `synchronous = FULL`). Work that must not happen before its intent is on disk (sending a
//! step to an instrument) is queued with [`Recorder::after_commit`] and runs only once the batch holding the intent is
//! committed, so after a crash every step that may have acted is known. A lock file beside the database keeps two
//! controllers from appending to it at once.

pub mod events;
pub mod export;
pub mod hex;
pub mod journal;
pub mod packed;
pub mod prepared;
pub mod project;
pub mod signing;
pub mod verify;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use rusqlite::{Connection, OptionalExtension};
use rusqlite_migration::{M, Migrations};

pub use events::{CampaignStarted, FleetClaim, Hex, IdentityRow, ProposalRow, RecordEvent, StepRow};
use journal::Tail;
use packed::Packed;
use prepared::Prepared;

/// The schema's migrations, oldest first. Append only.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/001-initial.sql")),
    M::up(include_str!("../../migrations/002-journal.sql")),
    M::up(include_str!("../../migrations/003-step-status-check.sql")),
    M::up(include_str!("../../migrations/004-clear-requests.sql")),
    M::up(include_str!("../../migrations/005-signed-checkpoints.sql")),
    M::up(include_str!("../../migrations/006-settlements.sql")),
    M::up(include_str!("../../migrations/007-stock.sql")),
];

/// The schema version this build writes.
pub fn schema_version() -> usize {
    MIGRATIONS.len()
}

/// Whether a record has table `name`: readers of an older record, written before the table's migration, find
/// none and show nothing of it.
pub fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = ?1", [name], |r| r.get(0))
}

/// How many events may wait for the writer before senders wait in turn. In a lab the writer is idle almost all the
/// time and the queue holds a handful; it fills only when the scheduler makes events faster than the disk takes them,
/// which happens in simulations running days of lab time a second. There, waiting holds back the scheduler, so the
/// queue is large enough to take a burst of a few hundred thousand steps (a run of 100,000 queued steps makes 410,000
/// events, of which the writer has taken about a third by the time the scheduler is done) and the writer catches up
/// after. The bound keeps memory finite if the disk stalls (50 to 100 bytes an event, [`packed`]; a command carries
/// its bytes), and in that case waiting is right, since nothing may act that cannot be recorded.
/// What the larger queue costs: a step goes to an instrument only once its intent is committed
/// ([`Recorder::after_commit`]), after everything queued before it, so with a full queue a dispatch would wait the
/// seconds the writer needs to reach it (about 5 s for a million events), and a crash loses what is queued. Neither
/// happens in a lab, where the queue holds a handful of events; in a simulated burst, the events a crash loses are
/// those of steps that never acted.
const QUEUE: usize = 1 << 20;

/// How many events a [`Recorder`] gathers before it hands them to the writer as one message. Each message through the
/// queue costs the sender a transfer between cores; one per batch instead of one per event is most of what recording
/// cost the scheduler. The frequent events are [`packed`] into bytes as they are gathered, so that the thread that sent
/// one frees it at once. Nothing waits in the gathering for long: the writer takes the gathered events itself whenever
/// its queue is empty (it looks every [`WRITER_IDLE`]), and anything that waits on the record (a dispatch after its
/// intent's commit, a flush, a checkpoint) hands them over first, so gathering never delays a commit anything waits
/// for, nor reorders events.
const HAND_OVER: usize = 256;

/// The gathered events, leaving room for the next batch in their place.
fn take_batch(gathered: &mut Packed) -> Packed {
    std::mem::replace(gathered, Packed::with_capacity(HAND_OVER))
}

/// The queue's capacity in messages: full batches hold [`QUEUE`] events.
const SLOTS: usize = QUEUE / HAND_OVER;

/// The most events the writer commits in one transaction.
const TRANSACTION: usize = 8192;

/// The page size of records this build creates, in bytes.
const PAGE_SIZE: i64 = 16_384;

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
    tail: Tail,
    /// The key that signs checkpoints, if the campaign was given one.
    signer: Option<signing::CheckpointSigner>,
    /// The core the writer thread is kept on, if one was asked for (see [`crate::cores`]).
    writer_core: Option<usize>,
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

impl CampaignRow {
    /// A campaign row for benchmarks, which record without a campaign file.
    pub fn bench() -> Self {
        CampaignRow {
            name: "bench".to_owned(),
            started_at: SystemTime::now(),
            time_scale: 1.0,
            seed: 0,
            objective_output: "none".to_owned(),
            objective_direction: "maximize",
            budget: 0,
            in_flight: 0,
            campaign: (String::new(), String::new()),
            protocol: (String::new(), String::new()),
            lab: (String::new(), String::new()),
        }
    }
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
        if version > 0 && version < MIGRATIONS.len() {
            backup(&conn, path, version)?;
        }
        if version == 0 {
            // A new record gets 16 KiB pages (SQLite's default is 4 KiB). The journal's rows are three quarters of
            // the record's bytes and are only ever appended, so larger pages mean fewer pages to write to the WAL,
            // checksum and copy back: a tenth less of the writer's time per event (BENCHMARKS.md, "Record"). The size
            // is fixed once the first table exists, so older records keep theirs.
            conn.pragma_update(None, "page_size", PAGE_SIZE).map_err(&e)?;
        }
        conn.pragma_update(None, "journal_mode", "WAL").map_err(&e)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(&e)?;
        // The writer commits up to 8,192 events at once, which dirties more pages than SQLite's default cache (2 MiB)
        // holds: pages spilled in the middle of a transaction are written to the WAL early and read back. 32 MiB
        // holds a full batch; SQLite allocates it only as pages are used.
        conn.pragma_update(None, "cache_size", -32_768).map_err(&e)?;
        // Copying the WAL into the database every 1,000 pages (the default) copies the same few pages again and again
        // (the ends of the journal and of the step tables, and the steps each changed three times). Every 40 MiB of
        // WAL (10,000 pages of 4 KiB) copies each of them a tenth as often; with the larger cache, the writer spends
        // about an eighth less time per event. Checkpoints never change what is durable: a committed transaction is
        // durable once it is in the WAL.
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(&e)?;
        conn.pragma_update(None, "wal_autocheckpoint", (40 << 20) / page.max(512)).map_err(&e)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(&e)?;
        // Migrations may rebuild tables other tables refer to, which SQLite only allows with foreign keys off; they
        // are switched on, and checked, right after.
        conn.pragma_update(None, "foreign_keys", "OFF").map_err(&e)?;
        Migrations::from_slice(MIGRATIONS)
            .to_latest(&mut conn)
            .map_err(|source| RecordError::Migration { path: path.to_owned(), source })?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(&e)?;
        let violations: i64 =
            conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| r.get(0)).map_err(&e)?;
        if violations > 0 {
            return Err(RecordError::NotARecord {
                path: path.to_owned(),
                reason: format!("{violations} rows refer to rows that do not exist"),
            });
        }
        let tail = Tail::read(&conn).map_err(&e)?;
        Ok(Record { conn, path: path.to_owned(), tail, signer: None, writer_core: None, _lock: None })
    }

    /// The public key (hex) that signs this record's checkpoints from now on, if any.
    pub fn signing_key(&self) -> Option<String> {
        self.signer.as_ref().map(signing::CheckpointSigner::public_hex)
    }

    /// Signs every checkpoint written from now on with `key` (see [`signing`]).
    pub fn sign_checkpoints_with(&mut self, key: signing::CheckpointSigner) {
        self.signer = Some(key);
    }

    /// Keeps the writer thread, once started, on `core` (see [`crate::cores`]).
    pub fn keep_writer_on(&mut self, core: usize) {
        self.writer_core = Some(core);
    }

    /// The database path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for queries.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Inserts the campaign's row (through the journal) and reserves id ranges for its experiments, steps and
    /// proposals.
    pub fn begin_campaign(&mut self, c: &CampaignRow) -> Result<CampaignIds, RecordError> {
        let path = self.path.clone();
        let e = sqlite(&path);
        let next = |conn: &Connection, table: &str| -> rusqlite::Result<i64> {
            conn.query_row(&format!("SELECT coalesce(max(id), 0) + 1 FROM {table}"), [], |r| r.get(0))
        };
        let id = next(&self.conn, "campaigns").map_err(&e)?;
        let event = RecordEvent::CampaignStarted(Box::new(CampaignStarted {
            id,
            name: c.name.clone(),
            started_at: humantime::format_rfc3339_millis(c.started_at).to_string(),
            time_scale: c.time_scale,
            software_version: software_version(),
            seed: c.seed,
            objective_output: c.objective_output.clone(),
            objective_direction: c.objective_direction.to_owned(),
            budget: c.budget,
            in_flight: c.in_flight,
            campaign: c.campaign.clone(),
            protocol: c.protocol.clone(),
            lab: c.lab.clone(),
        }));
        self.write(&[event])?;
        Ok(CampaignIds {
            campaign: id,
            first_experiment: next(&self.conn, "experiments").map_err(&e)?,
            first_step: next(&self.conn, "steps").map_err(&e)?,
            first_proposal: next(&self.conn, "proposals").map_err(&e)?,
        })
    }

    /// Appends events to the journal and projects them, in one transaction, from this thread.
    pub fn write(&mut self, events: &[RecordEvent]) -> Result<(), RecordError> {
        let e = sqlite(&self.path);
        let tx = self.conn.unchecked_transaction().map_err(&e)?;
        let mut sql = Prepared::new(&self.conn);
        let mut tail = self.tail;
        for event in events {
            tail.append(&mut sql, event).map_err(&e)?;
            project::apply(&mut sql, event).map_err(&e)?;
        }
        drop(sql);
        tx.commit().map_err(&e)?;
        self.tail = tail;
        Ok(())
    }
}

/// Copies a database about to be migrated to `<db>.v<version>.backup` (or a numbered variant if that exists), so a
/// migration never loses the only copy of a record.
fn backup(conn: &Connection, db: &Path, version: usize) -> Result<PathBuf, RecordError> {
    let mut n = 0;
    let target = loop {
        let mut s = db.as_os_str().to_owned();
        s.push(if n == 0 { format!(".v{version}.backup") } else { format!(".v{version}.backup.{n}") });
        let p = PathBuf::from(s);
        if !p.exists() {
            break p;
        }
        n += 1;
    };
    conn.execute("VACUUM INTO ?1", [target.to_string_lossy()])
        .map_err(|source| RecordError::Sqlite { path: db.to_owned(), source })?;
    tracing::warn!("{} is schema version {version}; backed up to {} before migrating", db.display(), target.display());
    Ok(target)
}

/// Whether a controller holds the record at `db` now (its lock file is locked). Asking takes the lock for an
/// instant, so a controller starting at that very moment would be told the record is in use.
pub fn in_use(db: &Path) -> bool {
    match File::open(lock_path(db)) {
        Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
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
    hex::hex(&sha2::Sha256::digest(bytes))
}

/// What the writer thread is asked to do.
enum WriterMessage {
    /// Journal and project these events, in order.
    Events(Packed),
    /// Run this once everything sent before it is committed.
    AfterCommit(Box<dyn FnOnce() + Send>),
    /// Write a checkpoint of the journal's head.
    Checkpoint(String),
    /// Reply once everything sent before it is committed.
    Flush(Sender<()>),
}

/// The sending side of the record: cheap to clone; waits only if the disk cannot keep up.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<Sender<WriterMessage>>,
    /// Events gathered and not yet handed to the writer, shared by every clone so that handing over keeps them in
    /// the order they were sent.
    gathered: Arc<Mutex<Packed>>,
    failure: Arc<Mutex<Option<String>>>,
    /// The writer thread, woken at once for what someone waits on (see [`WRITER_IDLE`]).
    writer: Option<std::thread::Thread>,
}

/// How long the writer sleeps when it finds nothing queued. Events do not wake it: waking a sleeping thread is a
/// system call, which cost the scheduler more than the event itself on every send. What someone waits for (a
/// dispatch after its intent's commit, a flush) wakes it at once.
const WRITER_IDLE: std::time::Duration = std::time::Duration::from_millis(2);

impl Recorder {
    /// A recorder that keeps nothing, for planning and benchmarks: work queued after a commit runs at once.
    pub fn null() -> Self {
        Recorder { tx: None, gathered: Arc::default(), failure: Arc::new(Mutex::new(None)), writer: None }
    }

    /// Queues an event for writing (gathered with others, see [`HAND_OVER`]).
    pub fn send(&self, event: RecordEvent) {
        let Some(tx) = &self.tx else { return };
        let mut gathered = self.gathered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        gathered.push(event);
        if gathered.len() >= HAND_OVER {
            let batch = take_batch(&mut gathered);
            // Sent under the lock, so no other clone's events can overtake these.
            // The writer only stops after every Recorder is dropped, or on a failure that `failure` reports.
            let _ = tx.send(WriterMessage::Events(batch));
        }
    }

    /// Hands every gathered event to the writer.
    pub fn hand_over(&self) {
        self.send_after_gathered(None);
    }

    /// Hands over the gathered events, then sends `message`, under one lock so nothing comes between them.
    fn send_after_gathered(&self, message: Option<WriterMessage>) -> bool {
        let Some(tx) = &self.tx else { return false };
        let mut gathered = self.gathered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !gathered.is_empty() {
            let _ = tx.send(WriterMessage::Events(take_batch(&mut gathered)));
        }
        message.is_some_and(|m| tx.send(m).is_ok())
    }

    /// Runs `then` once every event sent so far is committed to disk. If the record fails first, `then` never runs:
    /// nothing may act that could not be recorded.
    pub fn after_commit(&self, then: impl FnOnce() + Send + 'static) {
        match &self.tx {
            Some(_) => {
                self.send_after_gathered(Some(WriterMessage::AfterCommit(Box::new(then))));
                self.wake();
            }
            None => then(),
        }
    }

    /// Writes a checkpoint of the journal's head after everything sent so far.
    pub fn checkpoint(&self, reason: impl Into<String>) {
        self.send_after_gathered(Some(WriterMessage::Checkpoint(reason.into())));
    }

    /// Waits until everything queued so far is committed.
    pub fn flush(&self) {
        if self.tx.is_none() {
            return;
        }
        let (ack, rx) = crossbeam_channel::bounded(1);
        if self.send_after_gathered(Some(WriterMessage::Flush(ack))) {
            self.wake();
            let _ = rx.recv();
        }
    }

    /// Wakes the writer if it sleeps.
    fn wake(&self) {
        if let Some(w) = &self.writer {
            w.unpark();
        }
    }

    /// Why the record stopped accepting events, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().map(|f| f.clone()).unwrap_or_else(|p| p.into_inner().clone())
    }

    /// A sink for instrument exchanges that records them under `campaign`, gathered with every other event (a
    /// driver's report costs it a push onto the gathered list, and never wakes the writer).
    pub fn exchange_sink(&self, campaign: i64) -> devices::ExchangeSink {
        let recorder = self.clone();
        Arc::new(move |exchange| recorder.send(RecordEvent::command(campaign, exchange)))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Whatever this clone (or another) gathered goes to the writer before the last clone's channel closes.
        self.hand_over();
    }
}

impl Record {
    /// Starts the writer thread; the record is then written only through the returned [`Recorder`].
    pub fn start_writer(self) -> (Recorder, RecordWriter) {
        let (tx, rx) = crossbeam_channel::bounded(SLOTS);
        let gathered: Arc<Mutex<Packed>> = Arc::default();
        let gathered_by_writer = Arc::clone(&gathered);
        let failure = Arc::new(Mutex::new(None));
        let path = self.path.clone();
        let f = Arc::clone(&failure);
        let handle = std::thread::Builder::new()
            .name("lab-record".into())
            .spawn(move || {
                if let Some(core) = self.writer_core
                    && let Err(e) = crate::cores::pin_this_thread(core)
                {
                    // Where the writer runs changes how fast, never what it writes.
                    tracing::warn!("{e}; the record's writer stays on the cores of the thread that started it");
                }
                write_loop(self, rx, gathered_by_writer, f)
            })
            .expect("spawning the record writer thread");
        let writer = Some(handle.thread().clone());
        (Recorder { tx: Some(tx), gathered, failure, writer }, RecordWriter { handle: Some(handle), path })
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

fn write_loop(
    record: Record,
    rx: Receiver<WriterMessage>,
    gathered: Arc<Mutex<Packed>>,
    failure: Arc<Mutex<Option<String>>>,
) -> Result<u64, String> {
    let mut written = 0u64;
    let conn = &record.conn;
    let path = record.path.display().to_string();
    // The statements live as long as the thread: preparing or looking them up per event cost more than some inserts.
    let mut sql = Prepared::new(conn);
    let mut committed = record.tail;
    let mut batch: Vec<WriterMessage> = Vec::with_capacity(1024);
    let fail = |msg: String| {
        tracing::error!("{msg}");
        if let Ok(mut f) = failure.lock() {
            *f = Some(msg.clone());
        }
        msg
    };
    loop {
        let first = match rx.try_recv() {
            Ok(m) => m,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                // Senders hand over under this lock, so with the queue still empty while it is held, the gathered
                // events are the oldest waiting.
                let taken = {
                    let mut g = gathered.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (rx.is_empty() && !g.is_empty()).then(|| take_batch(&mut g))
                };
                match taken {
                    Some(events) => WriterMessage::Events(events),
                    None => {
                        std::thread::park_timeout(WRITER_IDLE);
                        continue;
                    }
                }
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => break,
        };
        let size = |m: &WriterMessage| if let WriterMessage::Events(v) = m { v.len() } else { 1 };
        let mut events = size(&first);
        batch.push(first);
        while events < TRANSACTION {
            match rx.try_recv() {
                Ok(m) => {
                    events += size(&m);
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        let mut tail = committed;
        let tx = conn.unchecked_transaction().map_err(|e| fail(format!("{path}: cannot write the record: {e}")))?;
        let mut after = Vec::new();
        for message in batch.drain(..) {
            match message {
                WriterMessage::Events(events) => {
                    written += events.len() as u64;
                    events
                        .unpack(|event| write_event(&mut tail, &mut sql, &event))
                        .map_err(|e| fail(format!("{path}: {e}")))?;
                }
                WriterMessage::AfterCommit(f) => after.push(Either::Run(f)),
                WriterMessage::Flush(ack) => after.push(Either::Ack(ack)),
                WriterMessage::Checkpoint(reason) => {
                    journal::checkpoint(&tx, &tail, &reason, record.signer.as_ref())
                        .map_err(|e| fail(format!("{path}: cannot write a checkpoint: {e}")))?;
                }
            }
        }
        tx.commit().map_err(|e| fail(format!("{path}: cannot commit the record: {e}")))?;
        committed = tail;
        for a in after {
            match a {
                Either::Run(f) => f(),
                Either::Ack(ack) => {
                    let _ = ack.send(());
                }
            }
        }
    }
    Ok(written)
}

/// Journals and projects one event.
fn write_event(tail: &mut Tail, sql: &mut Prepared<'_>, event: &RecordEvent) -> Result<(), String> {
    tail.append(sql, event).map_err(|e| format!("cannot append to the journal: {e}"))?;
    if let Err(e) = project::apply(sql, event) {
        // The journal holds the event; a projection that fails is a bug, and `lab verify` will show the table that
        // lacks it. Recording goes on.
        tracing::error!("cannot project {}: {e}", event.kind());
    }
    Ok(())
}

enum Either {
    Run(Box<dyn FnOnce() + Send>),
    Ack(Sender<()>),
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
    fn a_version_2_record_migrates_with_its_steps_and_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        let step = |id, ready| StepRow {
            id,
            step: format!("s{id}"),
            op: "dispense".into(),
            action: "{}".into(),
            after: vec![],
            repeat_safe: false,
            ready,
        };
        let events = [
            old_campaign_started(),
            RecordEvent::ExperimentStarted {
                id: 1,
                campaign: 1,
                seq: 1,
                proposal: None,
                params: vec![],
                vessel: 1,
                at: 0.0,
                steps: vec![step(1, true), step(2, false)],
            },
            RecordEvent::StepStatus {
                step: 1,
                at: 1.0,
                status: "unknown".into(),
                instrument: Some("pump".into()),
                task: None,
                attempt: Some(1),
                outcome: None,
                error: Some("in doubt".into()),
            },
        ];
        // A record as version 2 wrote it: its migrations, then the journal and its projection.
        {
            let mut conn = Connection::open(&path).unwrap();
            Migrations::from_slice(&MIGRATIONS[..2]).to_latest(&mut conn).unwrap();
            let mut sql = Prepared::new(&conn);
            let mut tail = Tail::read(&conn).unwrap();
            for e in &events {
                tail.append(&mut sql, e).unwrap();
                project::apply(&mut sql, e).unwrap();
            }
        }
        let record = Record::open(&path).unwrap();
        let conn = record.connection();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version as usize, schema_version());
        // An existing record keeps the page size it was made with; only new ones get larger pages.
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(page, 4096);
        let steps: Vec<(i64, String, Option<String>)> = conn
            .prepare("SELECT id, status, error FROM steps ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            steps,
            vec![(1, "unknown".to_owned(), Some("in doubt".to_owned())), (2, "waiting".to_owned(), None)]
        );
        // The rewritten check allows what the old one did, and nothing more.
        let bad = conn.execute("UPDATE steps SET status = 'runing' WHERE id = 2", []);
        assert!(bad.is_err(), "a status outside the list was accepted");
        let timeline: i64 = conn.query_row("SELECT count(*) FROM step_timeline", [], |r| r.get(0)).unwrap();
        assert_eq!(timeline, 2);
        drop(record);
        assert!(dir.path().join("lab.db.v2.backup").exists());
        let report = verify::verify(&path).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems.iter().map(ToString::to_string).collect::<Vec<_>>());
        assert_eq!(report.journal_rows, 3);
    }

    /// The first event of a campaign as an older version recorded it.
    fn old_campaign_started() -> RecordEvent {
        RecordEvent::CampaignStarted(Box::new(CampaignStarted {
            id: 1,
            name: "old".into(),
            started_at: "2025-01-01T00:00:00.000Z".into(),
            time_scale: 1.0,
            software_version: "lab 0.0.0".into(),
            seed: 0,
            objective_output: "y".into(),
            objective_direction: "maximize".into(),
            budget: 1,
            in_flight: 1,
            campaign: (String::new(), String::new()),
            protocol: (String::new(), String::new()),
            lab: (String::new(), String::new()),
        }))
    }

    /// `lab verify` reads a record as it is, without migrating it: one made before checkpoints could be signed
    /// verifies as it did, its checkpoints unsigned.
    #[test]
    fn a_version_4_record_verifies_without_being_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            Migrations::from_slice(&MIGRATIONS[..4]).to_latest(&mut conn).unwrap();
            let mut sql = Prepared::new(&conn);
            let mut tail = Tail::read(&conn).unwrap();
            let e = old_campaign_started();
            tail.append(&mut sql, &e).unwrap();
            project::apply(&mut sql, &e).unwrap();
            drop(sql);
            conn.execute(
                "INSERT INTO checkpoints (journal_id, hash, made_at, reason) VALUES (?1, ?2, 'then', 'campaign 1 finished')",
                rusqlite::params![tail.id, hex::hex(&tail.hash)],
            )
            .unwrap();
        }
        let report = verify::verify(&path).unwrap();
        assert!(report.is_intact(), "{:?}", report.problems);
        assert_eq!((report.checkpoints, report.signed), (1, 0));
        let version: i64 = Connection::open(&path).unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 4, "verifying changed nothing");
    }

    #[test]
    fn gathered_events_reach_the_record_in_order_from_every_clone_and_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.db");
        let mut record = Record::open(&path).unwrap();
        let page: i64 = record.connection().query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        assert_eq!(page, PAGE_SIZE, "a new record has larger pages");
        let ids = record.begin_campaign(&CampaignRow::bench()).unwrap();
        let (recorder, writer) = record.start_writer();
        let other = recorder.clone();
        let sink = recorder.exchange_sink(ids.campaign);
        // More than one batch, sent alternately from two clones; the last few stay gathered until the clones drop.
        for n in 0..(HAND_OVER * 2 + 10) {
            let from = if n % 2 == 0 { &recorder } else { &other };
            from.send(RecordEvent::say(ids.campaign, n as f64, "info", None, format!("{n}")));
        }
        drop((recorder, other, sink));
        writer.finish().unwrap();
        let conn = Connection::open(&path).unwrap();
        let texts: Vec<String> = conn
            .prepare("SELECT message FROM events ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let expected: Vec<String> = (0..(HAND_OVER * 2 + 10)).map(|n| n.to_string()).collect();
        assert_eq!(texts, expected);
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
