//! Tampering with a real campaign's record: every kind of edit a person could make with `sqlite3` (a row of a table
//! changed, deleted or inserted; a journal row changed, deleted or inserted with a correctly forged hash; the whole
//! chain rewritten after a checkpoint) is caught by `lab verify`, which names the table, the row and what was done.

use controller::record::journal::{chain_hash, hex, unhex};
use controller::record::verify::{Problem, Report, verify};
use rusqlite::{Connection, params};
use tests::CampaignTest;

/// A small closed-loop campaign on the simulated bench, run once for the whole file: its record holds proposals,
/// experiments, steps, decisions, every wire exchange and the measurements.
fn original() -> &'static CampaignTest {
    static RUN: std::sync::OnceLock<CampaignTest> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let t = CampaignTest::demo(4, 2, 2);
        t.run();
        t
    })
}

/// A copy of the record in a folder of its own, edited by `edit`, and what `lab verify` says about it.
fn tampered(edit: impl FnOnce(&Connection)) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    original().record().execute("VACUUM INTO ?1", [copy.to_string_lossy()]).unwrap();
    {
        let conn = Connection::open(&copy).unwrap();
        edit(&conn);
    }
    verify(&copy).unwrap()
}

fn one(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// The first journal row from `from` on that records a step's success.
fn succeeded_step_after(conn: &Connection, from: i64) -> i64 {
    conn.query_row(
        "SELECT min(id) FROM journal WHERE id >= ?1 AND kind = 'StepStatus' AND body LIKE '%\"succeeded\"%'",
        [from],
        |r| r.get(0),
    )
    .unwrap()
}

/// The problem `report` names for `table`, which must be its first.
fn first_in<'r>(report: &'r Report, table: &str) -> &'r Problem {
    report
        .problems
        .iter()
        .find(|p| p.table == table)
        .unwrap_or_else(|| panic!("no problem named in `{table}`: {:?}", report.problems))
}

#[test]
fn an_untouched_copy_is_intact() {
    let report = tampered(|_| {});
    assert!(report.is_intact(), "{:?}", report.problems);
    assert!(report.journal_rows > 100 && report.rows_compared > 100 && report.checkpoints >= 1, "{report:?}");
}

#[test]
fn an_edited_measurement_is_named_with_its_column() {
    let mut id = 0;
    let report = tampered(|c| {
        id = one(c, "SELECT max(id) FROM measurements");
        c.execute("UPDATE measurements SET value = value + 0.01 WHERE id = ?1", [id]).unwrap();
    });
    let p = first_in(&report, "measurements");
    assert_eq!(p.row, id.to_string());
    assert!(p.what.contains("column `value`") && p.what.ends_with("edited"), "{p}");
    assert_eq!(report.problems.len(), 1, "one edit, one problem: {:?}", report.problems);
}

/// A table keyed by two columns (experiment and name) is compared in the same order SQLite sorts it, so one edited
/// parameter is named once, by its whole key, and the rows after it still line up.
#[test]
fn an_edited_parameter_is_named_by_its_whole_key() {
    let mut key = String::new();
    let report = tampered(|c| {
        let (experiment, name): (i64, String) = c
            .query_row(
                "SELECT experiment_id, name FROM parameters ORDER BY experiment_id, name LIMIT 1 OFFSET 5",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        key = format!("{experiment}, {name:?}");
        c.execute(
            "UPDATE parameters SET value = value * 2 WHERE experiment_id = ?1 AND name = ?2",
            params![experiment, name],
        )
        .unwrap();
    });
    let p = first_in(&report, "parameters");
    assert_eq!(p.row, key);
    assert!(p.what.contains("column `value`") && p.what.ends_with("edited"), "{p}");
    assert_eq!(report.problems.len(), 1, "one edit, one problem: {:?}", report.problems);
}

#[test]
fn a_deleted_command_is_named() {
    let mut id = 0;
    let report = tampered(|c| {
        id = one(c, "SELECT id FROM commands ORDER BY id LIMIT 1 OFFSET 10");
        c.execute("DELETE FROM commands WHERE id = ?1", [id]).unwrap();
    });
    let p = first_in(&report, "commands");
    assert_eq!(p.row, id.to_string());
    assert!(p.what.ends_with("deleted"), "{p}");
    assert_eq!(report.problems.len(), 1, "one deletion, one problem: {:?}", report.problems);
}

#[test]
fn an_inserted_step_event_is_named() {
    let mut id = 0;
    let report = tampered(|c| {
        c.execute(
            "INSERT INTO step_events (step_id, at, status) SELECT step_id, at + 1, 'succeeded' FROM step_events LIMIT 1",
            [],
        )
        .unwrap();
        id = c.last_insert_rowid();
    });
    let p = first_in(&report, "step_events");
    assert_eq!(p.row, id.to_string());
    assert!(p.what.ends_with("inserted"), "{p}");
    assert_eq!(report.problems.len(), 1, "one insertion, one problem: {:?}", report.problems);
}

#[test]
fn an_edited_journal_row_breaks_the_chain_there() {
    let mut id = 0;
    let report = tampered(|c| {
        id = succeeded_step_after(c, 40);
        c.execute("UPDATE journal SET body = replace(body, 'succeeded', 'failed') WHERE id = ?1", [id]).unwrap();
    });
    let p = first_in(&report, "journal");
    assert_eq!(p.row, id.to_string());
    assert!(p.what.contains("edited"), "{p}");
}

#[test]
fn a_deleted_journal_row_is_named() {
    let report = tampered(|c| {
        c.execute("DELETE FROM journal WHERE id = 77", []).unwrap();
    });
    let p = first_in(&report, "journal");
    assert_eq!(p.row, "77");
    assert!(p.what.contains("deleted"), "{p}");
}

/// Someone who knows the hash function inserts a made-up event with a correct hash for its place: the row after it
/// no longer follows from it.
#[test]
fn an_inserted_journal_row_with_a_forged_hash_is_caught_at_the_next_row() {
    let at = 50;
    let report = tampered(|c| {
        let last = one(c, "SELECT max(id) FROM journal");
        // Make room at `at` (two steps, so no id collides on the way).
        c.execute("UPDATE journal SET id = id + ?2 WHERE id >= ?1", params![at, last + 1]).unwrap();
        c.execute("UPDATE journal SET id = id - ?2 WHERE id > ?2", params![at, last]).unwrap();
        let prev: String = c.query_row("SELECT hash FROM journal WHERE id = ?1", [at - 1], |r| r.get(0)).unwrap();
        let body = r#"{"event":"Event","campaign":1,"at":1.0,"level":"info","instrument":null,"message":"all fine"}"#;
        let hash = chain_hash(&unhex(&prev).unwrap(), at, Some(1), Some(1.0), "Event", body);
        c.execute(
            "INSERT INTO journal (id, campaign_id, at, kind, body, hash) VALUES (?1, 1, 1.0, 'Event', ?2, ?3)",
            params![at, body, hex(&hash)],
        )
        .unwrap();
    });
    let p = first_in(&report, "journal");
    assert_eq!(p.row, (at + 1).to_string());
    assert!(p.what.contains("inserted"), "{p}");
}

/// Rewriting every hash after an edit makes an unbroken chain, but not the one the checkpoint wrote down.
#[test]
fn a_chain_rewritten_after_an_edit_disagrees_with_its_checkpoint() {
    let report = tampered(|c| {
        let edited = succeeded_step_after(c, 60);
        c.execute("UPDATE journal SET body = replace(body, 'succeeded', 'failed') WHERE id = ?1", [edited]).unwrap();
        let rows: Vec<(i64, Option<i64>, Option<f64>, String, String)> = c
            .prepare("SELECT id, campaign_id, at, kind, body FROM journal WHERE id >= ?1 ORDER BY id")
            .unwrap()
            .query_map([edited], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let prev: String = c.query_row("SELECT hash FROM journal WHERE id = ?1", [edited - 1], |r| r.get(0)).unwrap();
        let mut prev = unhex(&prev).unwrap();
        for (id, campaign, at, kind, body) in rows {
            prev = chain_hash(&prev, id, campaign, at, &kind, &body);
            c.execute("UPDATE journal SET hash = ?2 WHERE id = ?1", params![id, hex(&prev)]).unwrap();
        }
    });
    assert!(
        report.problems.iter().all(|p| p.table != "journal"),
        "the chain itself is unbroken: {:?}",
        report.problems
    );
    let p = first_in(&report, "checkpoints");
    assert!(p.what.contains("no longer has the hash"), "{p}");
}
