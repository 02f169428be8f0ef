//! `lab verify`: proving a record was not edited.
//!
//! Three checks, each naming the first row that fails it: the journal's hash chain (a row edited, deleted or inserted
//! breaks it there), the checkpoints (a rewrite of the whole chain after a checkpoint disagrees with it, and a signed
//! checkpoint rewritten too no longer matches its signature; see [`super::signing`]), and the tables people read (the journal is replayed into a fresh database, and every row of every projected table must
//! match; an edited, deleted or inserted row is named with its table, key and column).
//!
//! A record grows for as long as a lab runs (a week of a busy simulated lab is 130 MiB), so nothing here holds it in
//! memory: the journal is replayed as it is read, into a temporary database on disk, and each table is compared with
//! its replay row by row as both are read in key order.

use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use rusqlite_migration::Migrations;

use super::events::RecordEvent;
use super::hex;
use super::journal::{self, GENESIS};
use super::prepared::Prepared;
use super::{MIGRATIONS, project};

/// One thing that is wrong with a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The table.
    pub table: String,
    /// The row's key.
    pub row: String,
    /// What is wrong.
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} row {}: {}", self.table, self.row, self.what)
    }
}

/// What `lab verify` found.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Journal rows checked.
    pub journal_rows: i64,
    /// The head of the chain as stored.
    pub head: String,
    /// Checkpoints checked.
    pub checkpoints: usize,
    /// Checkpoints whose signature matches them.
    pub signed: usize,
    /// The public keys (hex) that signed them.
    pub signers: Vec<String>,
    /// The journal row of the last checkpoint with a matching signature (by the trusted key, if one was given):
    /// everything up to it is proven by the key; rows after it only by the chain.
    pub last_signed: Option<i64>,
    /// With a trusted key: the journal rows after the last checkpoint it signed (a problem unless a controller is
    /// writing to the record now).
    pub unproven: Option<(i64, i64)>,
    /// Table rows compared with the journal's replay.
    pub rows_compared: usize,
    /// Everything wrong, first problems first (at most a few per table).
    pub problems: Vec<Problem>,
}

impl Report {
    /// Whether the record is intact.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the record at `path` without changing it.
pub fn verify(path: &Path) -> Result<Report, String> {
    verify_with(path, None)
}

/// Verifies the record at `path` without changing it; with `trusted`, every checkpoint must also be signed by that
/// key (a public key the lab keeps outside the record), so that a record rewritten with its checkpoints is caught.
pub fn verify_with(path: &Path, trusted: Option<&ed25519_dalek::VerifyingKey>) -> Result<Report, String> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let sql = |e: rusqlite::Error| format!("{}: {e}", path.display());
    let mut problems = Vec::new();
    // One read transaction, so the journal and every table are read from the same snapshot even while a controller
    // appends to the record (rows written in between would otherwise look inserted).
    let _snapshot = conn.unchecked_transaction().map_err(sql)?;

    // The chain.
    // The replay: a private database SQLite keeps in a temporary file and deletes on close, so its size is the disk's
    // problem, not memory's. It is thrown away, so it needs no rollback journal and no syncing.
    let mut replay = Connection::open("").map_err(sql)?;
    replay.pragma_update(None, "journal_mode", "OFF").map_err(sql)?;
    replay.pragma_update(None, "synchronous", "OFF").map_err(sql)?;
    replay.pragma_update(None, "foreign_keys", "OFF").map_err(sql)?;
    Migrations::from_slice(MIGRATIONS).to_latest(&mut replay).map_err(|e| e.to_string())?;
    let tx = replay.unchecked_transaction().map_err(sql)?;
    let mut statements = Prepared::new(&replay);
    let mut stmt =
        conn.prepare("SELECT id, campaign_id, at, kind, body, hash FROM journal ORDER BY id").map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut prev = GENESIS;
    let mut expected_id = 1;
    let mut count = 0;
    let mut head = hex::hex(&GENESIS);
    let mut chain_ok = true;
    while let Some(r) = rows.next().map_err(sql)? {
        let (id, campaign, at, kind, body, hash): (i64, Option<i64>, Option<f64>, String, String, String) = (
            r.get(0).map_err(sql)?,
            r.get(1).map_err(sql)?,
            r.get(2).map_err(sql)?,
            r.get(3).map_err(sql)?,
            r.get(4).map_err(sql)?,
            r.get(5).map_err(sql)?,
        );
        count += 1;
        if chain_ok && id != expected_id {
            let what = if id > expected_id {
                format!("rows {expected_id}..={} are missing: deleted", id - 1)
            } else {
                "out of order: inserted".to_owned()
            };
            problems.push(Problem { table: "journal".into(), row: expected_id.to_string(), what });
            chain_ok = false;
        }
        let computed = journal::chain_hash(&prev, id, campaign, at, &kind, &body);
        if chain_ok && hex::hex(&computed) != hash {
            problems.push(Problem {
                table: "journal".into(),
                row: id.to_string(),
                what: "its content does not match the hash chain: edited (or a row was inserted before it)".into(),
            });
            chain_ok = false;
        }
        prev = hex::unhex(&hash).unwrap_or(GENESIS);
        head = hash;
        expected_id = id + 1;
        match serde_json::from_str::<RecordEvent>(&body) {
            // Replaying an altered journal would only shift every later row, so the replay stops at the first break
            // and the tables are then not compared (the broken chain already names the row).
            // A projection that fails during replay is a difference the comparison below will show.
            Ok(e) if chain_ok => {
                let _ = project::apply(&mut statements, &e);
            }
            Ok(_) => {}
            Err(e) => problems.push(Problem {
                table: "journal".into(),
                row: id.to_string(),
                what: format!("its body is not an event this version reads: {e}"),
            }),
        }
    }
    drop(rows);
    drop(stmt);
    drop(statements);
    tx.commit().map_err(sql)?;

    // The checkpoints. Records made before schema version 5 have no signature columns: theirs are all unsigned.
    let signable: bool = conn
        .query_row("SELECT count(*) > 0 FROM pragma_table_info('checkpoints') WHERE name = 'signature'", [], |r| {
            r.get(0)
        })
        .map_err(sql)?;
    let query = if signable {
        "SELECT id, journal_id, hash, made_at, reason, public_key, signature FROM checkpoints ORDER BY id"
    } else {
        "SELECT id, journal_id, hash, made_at, reason, NULL, NULL FROM checkpoints ORDER BY id"
    };
    let mut stmt = conn.prepare(query).map_err(sql)?;
    type CheckpointRow = (i64, i64, String, String, String, Option<String>, Option<String>);
    let checkpoints: Vec<CheckpointRow> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let trusted_hex = trusted.map(|k| hex::hex(k.as_bytes()));
    let is_trusted = |key: &str| trusted_hex.as_ref().is_none_or(|t| t.eq_ignore_ascii_case(key));
    // A checkpoint signed by the trusted key proves the chain up to its row, and with it every checkpoint before it
    // (unsigned ones from before signing began, or ones signed by a key the lab used before). What follows the last
    // one is proven by the chain only.
    // Each signature is checked once: `None` for an unsigned checkpoint.
    let checks: Vec<Option<Result<(), String>>> = checkpoints
        .iter()
        .map(|(_, journal_id, hash, made_at, reason, key, sig)| match (key, sig) {
            (Some(k), Some(s)) => {
                Some(super::signing::check(k, s, &super::signing::message(*journal_id, hash, made_at, reason)))
            }
            _ => None,
        })
        .collect();
    let last_trusted = checkpoints
        .iter()
        .zip(&checks)
        .filter(|(c, check)| matches!(check, Some(Ok(()))) && c.5.as_deref().is_some_and(is_trusted))
        .map(|(c, _)| c.1)
        .max();
    let (mut signed, mut signers) = (0, Vec::<String>::new());
    for ((id, journal_id, hash, _, _, public_key, signature), check) in checkpoints.iter().zip(checks) {
        let mut problem = |what: String| {
            problems.push(Problem { table: "checkpoints".into(), row: id.to_string(), what });
        };
        let stored: Option<String> =
            conn.query_row("SELECT hash FROM journal WHERE id = ?1", [journal_id], |r| r.get(0)).ok();
        if stored.as_deref() != Some(hash.as_str()) {
            problem(format!("journal row {journal_id} no longer has the hash it had when checkpointed"));
        }
        match (public_key, check) {
            (Some(key), Some(check)) => match check {
                Err(why) => problem(why),
                Ok(()) if !is_trusted(key) && last_trusted.is_none_or(|t| *journal_id > t) => problem(format!(
                    "signed by key {key}, not by the key given, and no checkpoint signed by the key given comes \
                         after it: re-signed by someone else (or the lab's key changed; verify with the newer key)"
                )),
                Ok(()) => {
                    signed += 1;
                    if !signers.contains(key) {
                        signers.push(key.clone());
                    }
                }
            },
            _ if public_key.is_none() && signature.is_none() => {}
            _ => problem("it has a public key or a signature but not both: edited".into()),
        }
    }
    let mut unproven = None;
    if trusted.is_some() {
        match last_trusted {
            None => problems.push(Problem {
                table: "checkpoints".into(),
                row: "-".into(),
                what: "none is signed by the key given, so nothing in this record is proven by it (was the campaign \
                       run with --sign-with, and is this the lab's public key?)"
                    .into(),
            }),
            Some(last) if last < count => {
                unproven = Some((last + 1, count));
                // A campaign still running has written rows since its last hourly checkpoint; a record nothing is
                // writing to has no reason to, except a campaign that stopped before its end.
                if !super::in_use(path) {
                    problems.push(Problem {
                        table: "journal".into(),
                        row: format!("{}..={count}", last + 1),
                        what: "these rows come after the last checkpoint signed by the key given, so nothing proves \
                               them: they may have been rewritten. A campaign that stopped before its end leaves \
                               such rows too; `lab resume --sign-with KEY` finishes it and signs them"
                            .into(),
                    });
                }
            }
            Some(_) => {}
        }
    }
    let report = |rows_compared, problems| Report {
        journal_rows: count,
        head: head.clone(),
        checkpoints: checkpoints.len(),
        signed,
        signers: signers.clone(),
        last_signed: last_trusted,
        unproven,
        rows_compared,
        problems,
    };

    // The tables, against a replay of the journal. A broken chain already names the altered row, and replaying an
    // altered journal would only shift every later row, so the tables are compared only against an intact one.
    if !chain_ok || problems.iter().any(|p| p.table == "journal") {
        return Ok(report(0, problems));
    }
    let mut compared = 0;
    for (table, key) in project::PROJECTED {
        // A record older than a table (`settlements` came with schema version 6) is read as it is: the table is
        // missing, and so must be every row its journal would have put there.
        let exists = |c: &Connection| {
            c.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1", [table], |r| {
                r.get::<_, bool>(0)
            })
        };
        if !exists(&conn).map_err(sql)? {
            let rows: i64 =
                replay.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0)).map_err(sql)?;
            if rows > 0 {
                problems.push(Problem {
                    table: (*table).into(),
                    row: "all".into(),
                    what: format!("the table is missing, and the journal puts {rows} rows in it"),
                });
            }
            continue;
        }
        compared += compare(&conn, &replay, table, key, &mut problems).map_err(sql)?;
    }
    Ok(report(compared, problems))
}

/// Compares a table row by row with its replay, both read in key order; returns how many rows the file holds. At
/// most five problems are named per table: after the first few, the rest are usually the same edit seen again.
fn compare(
    file: &Connection,
    replay: &Connection,
    table: &str,
    key: &str,
    problems: &mut Vec<Problem>,
) -> rusqlite::Result<usize> {
    let q = format!("SELECT * FROM {table} ORDER BY {key}");
    let mut file_stmt = file.prepare(&q)?;
    let mut replay_stmt = replay.prepare(&q)?;
    let columns: Vec<String> = file_stmt.column_names().into_iter().map(str::to_owned).collect();
    let n = columns.len();
    let key_columns = key.split(", ").count();
    let mut file_rows = file_stmt.query([])?;
    let mut replay_rows = replay_stmt.query([])?;
    let read = |rows: &mut rusqlite::Rows<'_>| -> rusqlite::Result<Option<Vec<Value>>> {
        rows.next()?.map(|r| (0..n).map(|i| r.get::<_, Value>(i)).collect()).transpose()
    };
    let key_of = |row: &[Value]| row[..key_columns].iter().map(show).collect::<Vec<_>>().join(", ");
    let before = problems.len();
    let mut say = |row: String, what: String| {
        if problems.len() < before + 5 {
            problems.push(Problem { table: table.to_owned(), row, what });
        }
    };
    let mut in_file = 0;
    let (mut a, mut b) = (read(&mut file_rows)?, read(&mut replay_rows)?);
    loop {
        match (&a, &b) {
            (Some(x), Some(y)) => match order(&x[..key_columns], &y[..key_columns]) {
                std::cmp::Ordering::Equal => {
                    if let Some(c) = (0..n).find(|&c| !same(&x[c], &y[c])) {
                        say(
                            key_of(x),
                            format!(
                                "column `{}` is {} in the file, {} according to the journal: edited",
                                columns[c],
                                show(&x[c]),
                                show(&y[c])
                            ),
                        );
                    }
                    in_file += 1;
                    a = read(&mut file_rows)?;
                    b = read(&mut replay_rows)?;
                }
                std::cmp::Ordering::Less => {
                    say(key_of(x), "is not in the journal: inserted".into());
                    in_file += 1;
                    a = read(&mut file_rows)?;
                }
                std::cmp::Ordering::Greater => {
                    say(key_of(y), "is in the journal but not in the file: deleted".into());
                    b = read(&mut replay_rows)?;
                }
            },
            (Some(x), None) => {
                say(key_of(x), "is not in the journal: inserted".into());
                in_file += 1;
                a = read(&mut file_rows)?;
            }
            (None, Some(y)) => {
                say(key_of(y), "is in the journal but not in the file: deleted".into());
                b = read(&mut replay_rows)?;
            }
            (None, None) => break,
        }
    }
    Ok(in_file)
}

fn order(a: &[Value], b: &[Value]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Value::Integer(p), Value::Integer(q)) => p.cmp(q),
            // SQLite's `ORDER BY` on text compares bytes, as `str` does.
            (Value::Text(p), Value::Text(q)) => p.cmp(q),
            _ => show(x).cmp(&show(y)),
        };
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        // Reals round-trip through JSON exactly, but compare with a tolerance anyway so a value that went through a
        // different formatting path is not called edited.
        (Value::Real(x), Value::Real(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(t) if t.len() > 60 => {
            format!("{:?}...", &t[..t.char_indices().nth(57).map_or(t.len(), |(i, _)| i)])
        }
        Value::Text(t) => format!("{t:?}"),
        Value::Blob(b) => format!("{} bytes", b.len()),
    }
}
