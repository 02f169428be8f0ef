//! `lab fleet verify`: proving the hub's copy of each workcell's record, as `lab verify` proves a `lab.db`.
//!
//! The hub's copy of one workcell (its journal, its checkpoints and its rows of the `record` tables) is written into
//! a temporary file shaped like `lab.db`, and `record::verify` checks that file: the hash chain row by row, every
//! checkpoint against the row it names and its signature (against a trusted public key, if given), and every table
//! against a replay of the journal through `record/project.rs`. So the same code that proves a workcell's own record
//! proves the hub's copy, and a hub table that does not say what the journal says (an edit at the hub, or the hub's
//! projection in `fleet::project` drifting from the record's) is named with its table, row and column.
//!
//! The copy is read row by row as it streams from the hub, so a long journal is never held in memory. Rows after a
//! workcell's last signed checkpoint are reported as proven by the chain only: the hub cannot tell whether that
//! workcell is still running (its next checkpoint signs them) or stopped before its end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use futures::StreamExt;
use rusqlite::types::Value;
use tokio_postgres::types::Type;

use super::hub::{Connection, FleetError, Hub, OP_TIMEOUT};
use crate::record::verify::Report;

/// One workcell's verdict.
#[derive(Debug)]
pub struct Verdict {
    /// The workcell.
    pub workcell: String,
    /// What `record::verify` found in the hub's copy.
    pub report: Report,
    /// Whether a trusted key was given for it.
    pub keyed: bool,
}

/// Verifies the hub's copy of every workcell's record (or `only` one's). `keys` are public keys (hex or a file), each
/// for every workcell or, as `WORKCELL=KEY`, for one.
pub fn verify(hub: &Hub, only: Option<&str>, keys: &[String]) -> Result<Vec<Verdict>, FleetError> {
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        let workcells: Vec<String> = hub
            .bounded(c.client.query(
                "SELECT DISTINCT workcell FROM fleet.journal WHERE $1::text IS NULL OR workcell = $1 ORDER BY 1",
                &[&only],
            ))
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(w) = only
            && workcells.is_empty()
        {
            return Err(FleetError::Refused(format!("the hub holds no journal of workcell {w}")));
        }
        let (every, per) = trusted_keys(keys, &workcells)?;
        let mut out = Vec::new();
        for w in workcells {
            let key = per.get(&w).or(every.as_ref());
            let dir = tempfile::tempdir().map_err(|e| FleetError::Local(format!("a temporary folder: {e}")))?;
            let path = dir.path().join(format!("{w}.db"));
            // The copy's lock is held while it is checked: like a record a controller is writing to, its rows after
            // the last signed checkpoint are unproven, not a problem (see the module's documentation).
            let record = crate::record::Record::open(&path).map_err(|e| FleetError::Local(e.to_string()))?;
            copy(hub, &c, &w, record.connection(), &path).await?;
            let mut report = crate::record::verify::verify_with(&path, key).map_err(FleetError::Local)?;
            drop(record);
            for p in &mut report.problems {
                p.what = p.what.replace("in the file", "at the hub");
            }
            out.push(Verdict { workcell: w, report, keyed: key.is_some() });
        }
        Ok(out)
    })
}

/// The keys given: one for every workcell, and those for one (`WORKCELL=KEY`, where WORKCELL is a workcell at the
/// hub).
fn trusted_keys(
    keys: &[String],
    workcells: &[String],
) -> Result<(Option<ed25519_dalek::VerifyingKey>, BTreeMap<String, ed25519_dalek::VerifyingKey>), FleetError> {
    let read = |k: &str| crate::record::signing::read_public_key(k).map_err(FleetError::Refused);
    let mut every = None;
    let mut per = BTreeMap::new();
    for k in keys {
        match k.split_once('=') {
            Some((w, key)) if workcells.iter().any(|x| x == w) => {
                per.insert(w.to_owned(), read(key)?);
            }
            _ if every.is_some() => {
                return Err(FleetError::Refused(format!(
                    "--public-key {k}: one key for every workcell is given already; give the others as WORKCELL=KEY"
                )));
            }
            _ => every = Some(read(k)?),
        }
    }
    Ok((every, per))
}

/// Writes the hub's copy of workcell `w`'s record into the record at `path` (open as `file`).
async fn copy(hub: &Hub, c: &Connection, w: &str, file: &rusqlite::Connection, path: &Path) -> Result<(), FleetError> {
    let local = |e: rusqlite::Error| FleetError::Local(format!("{}: {e}", path.display()));
    let tx = file.unchecked_transaction().map_err(local)?;
    stream(
        hub,
        c,
        "SELECT id, campaign_id, at, kind, body, hash FROM fleet.journal WHERE workcell = $1 ORDER BY id",
        w,
        &tx,
        "INSERT INTO journal (id, campaign_id, at, kind, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .await?;
    stream(
        hub,
        c,
        "SELECT id, journal_id, hash, made_at, reason, public_key, signature FROM fleet.checkpoints
         WHERE workcell = $1 ORDER BY id",
        w,
        &tx,
        "INSERT INTO checkpoints (id, journal_id, hash, made_at, reason, public_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .await?;
    for (table, key) in crate::record::project::PROJECTED {
        let columns: Vec<String> = tx
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(local)?;
        let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
        let marks: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        stream(
            hub,
            c,
            &format!("SELECT {} FROM record.{table} WHERE workcell = $1 ORDER BY {key}", quoted.join(", ")),
            w,
            &tx,
            &format!("INSERT INTO {table} ({}) VALUES ({})", quoted.join(", "), marks.join(", ")),
        )
        .await?;
    }
    tx.commit().map_err(local)
}

/// Streams the rows of `select` (with the workcell as `$1`) from the hub into `insert`.
async fn stream(
    hub: &Hub,
    c: &Connection,
    select: &str,
    w: &str,
    tx: &rusqlite::Transaction<'_>,
    insert: &str,
) -> Result<(), FleetError> {
    let local = |e: rusqlite::Error| FleetError::Local(e.to_string());
    let rows = hub.bounded(c.client.query_raw(select, [w])).await?;
    let mut rows = std::pin::pin!(rows);
    let mut statement = tx.prepare_cached(insert).map_err(local)?;
    loop {
        let next = tokio::time::timeout(OP_TIMEOUT, rows.next()).await.map_err(|_| FleetError::Unreachable {
            hub: hub.redacted().to_owned(),
            reason: format!("no answer within {} s", OP_TIMEOUT.as_secs()),
        })?;
        let Some(row) = next else { break };
        let row = row.map_err(|e| hub.error(&e))?;
        let values =
            (0..row.len()).map(|i| value(&row, i)).collect::<Result<Vec<Value>, _>>().map_err(|e| hub.error(&e))?;
        statement.execute(rusqlite::params_from_iter(values)).map_err(local)?;
    }
    Ok(())
}

/// A PostgreSQL value as SQLite holds it.
fn value(row: &tokio_postgres::Row, i: usize) -> Result<Value, tokio_postgres::Error> {
    let t = row.columns()[i].type_();
    Ok(if *t == Type::INT8 {
        row.try_get::<_, Option<i64>>(i)?.map_or(Value::Null, Value::Integer)
    } else if *t == Type::INT4 {
        row.try_get::<_, Option<i32>>(i)?.map_or(Value::Null, |v| Value::Integer(i64::from(v)))
    } else if *t == Type::FLOAT8 {
        row.try_get::<_, Option<f64>>(i)?.map_or(Value::Null, Value::Real)
    } else if *t == Type::BYTEA {
        row.try_get::<_, Option<Vec<u8>>>(i)?.map_or(Value::Null, Value::Blob)
    } else {
        row.try_get::<_, Option<String>>(i)?.map_or(Value::Null, Value::Text)
    })
}

/// The verdicts for people; and whether every copy is intact.
pub fn describe(verdicts: &[Verdict]) -> (String, bool) {
    let mut out = String::new();
    let mut intact = true;
    if verdicts.is_empty() {
        out.push_str("the hub holds no workcell's journal yet\n");
    }
    for v in verdicts {
        let r = &v.report;
        if r.is_intact() {
            let _ = writeln!(
                out,
                "workcell {}: intact at the hub. {} journal rows in an unbroken hash chain, {} checkpoint{} ({} signed), \
                 {} table rows match the journal; head {}",
                v.workcell,
                r.journal_rows,
                r.checkpoints,
                if r.checkpoints == 1 { "" } else { "s" },
                r.signed,
                r.rows_compared,
                r.head
            );
            for key in &r.signers {
                let _ = writeln!(out, "  checkpoints signed by key {key}");
            }
            match (v.keyed, r.unproven) {
                (true, Some((from, to))) => {
                    let _ = writeln!(
                        out,
                        "  signed by the key given up to journal row {}; rows {from} to {to} are proven by the chain \
                         only (a workcell still running signs them at its next checkpoint)",
                        from - 1
                    );
                }
                (true, None) => {
                    let _ = writeln!(out, "  signed by the key given up to its last journal row");
                }
                _ => {}
            }
        } else {
            intact = false;
            let _ = writeln!(out, "workcell {}: NOT intact at the hub ({} problem(s)):", v.workcell, r.problems.len());
            for p in &r.problems {
                let _ = writeln!(out, "  {p}");
            }
        }
    }
    (out, intact)
}
