//! The server's read-only connections to the record, and what can be wrong with the file.
//!
//! Every connection is opened read-only (`SQLITE_OPEN_READ_ONLY`): nothing a request does can change the record,
//! whatever it sends. In WAL mode readers never block the controller that writes (nor does it block them), so pages
//! work while a campaign runs and holds the record's lock. Connections are kept in a small pool, since opening one
//! reads the schema again; each is checked before use, so a file that a newer `lab` migrated while the server ran, or
//! that was replaced by something else, gives a clear page instead of a query error.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

/// Why the record cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordProblem {
    /// There is no file.
    #[error("there is no record at {0} (give the one the campaign writes with --db)")]
    Missing(PathBuf),
    /// The file is not a lab record (another SQLite database, or not SQLite at all).
    #[error("{path} is not a lab record ({reason}); nothing was changed")]
    NotARecord {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A newer `lab` wrote it.
    #[error(
        "{path} has schema version {found}, newer than this lab's {supported}; serve it with the lab that wrote it, \
         or a newer one"
    )]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: i64,
        /// This build's.
        supported: i64,
    },
    /// SQLite could not read it (a damaged file, a folder without permission to read the write-ahead log).
    #[error("cannot read the record {path}: {message}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
}

/// Read-only connections to one record, pooled.
#[derive(Clone)]
pub struct Reader {
    db: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
}

/// Connections kept open between requests; more are opened under load and closed after.
const KEEP: usize = 8;

impl Reader {
    /// A reader for the record at `db`; nothing is opened until the first request.
    pub fn new(db: &Path) -> Reader {
        Reader { db: db.to_owned(), idle: Arc::new(Mutex::new(Vec::new())) }
    }

    /// The record's path.
    pub fn path(&self) -> &Path {
        &self.db
    }

    /// Runs `f` on a checked read-only connection. It blocks (SQLite is synchronous): async callers run it on
    /// tokio's blocking threads.
    pub fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, RecordProblem> {
        let conn = match self.idle.lock().map(|mut v| v.pop()) {
            Ok(Some(c)) => c,
            _ => open(&self.db)?,
        };
        check(&conn, &self.db)?;
        let result = f(&conn).map_err(|e| unreadable(&self.db, &e));
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < KEEP
        {
            idle.push(conn);
        }
        result
    }
}

fn unreadable(db: &Path, e: &rusqlite::Error) -> RecordProblem {
    RecordProblem::Unreadable { path: db.to_owned(), message: e.to_string() }
}

/// Opens a read-only connection to `db` and checks that it is a record this `lab` can read.
pub fn open(db: &Path) -> Result<Connection, RecordProblem> {
    if !db.exists() {
        return Err(RecordProblem::Missing(db.to_owned()));
    }
    if db.is_dir() {
        return Err(RecordProblem::NotARecord { path: db.to_owned(), reason: "it is a folder".to_owned() });
    }
    let conn = crate::inspect::report::open_read_only(db).map_err(|e| unreadable(db, &e))?;
    check(&conn, db)?;
    Ok(conn)
}

/// Checks that the file behind `conn` is a lab record of a schema this build reads.
fn check(conn: &Connection, db: &Path) -> Result<(), RecordProblem> {
    let not_a_record = |reason: String| RecordProblem::NotARecord { path: db.to_owned(), reason };
    // A file that is not SQLite fails on its first read, here.
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| not_a_record(e.to_string()))?;
    let supported = crate::record::schema_version() as i64;
    if version > supported {
        return Err(RecordProblem::TooNew { path: db.to_owned(), found: version, supported });
    }
    // Version 2 brought the journal and operator requests, which every page and action relies on.
    if version < 2 {
        return Err(not_a_record(if version == 0 {
            "it has no lab schema version".to_owned()
        } else {
            format!("schema version {version} is from a lab too old to serve; open it once with `lab resume` first")
        }));
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'
             AND name IN ('campaigns', 'experiments', 'steps', 'commands', 'journal', 'operator_requests')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| not_a_record(e.to_string()))?;
    if tables < 6 {
        return Err(not_a_record("it lacks the lab's tables".to_owned()));
    }
    Ok(())
}
