//! Tampering with a real campaign's record: every kind of edit a person could make with `sqlite3` (a row of a table
//! changed, deleted or inserted; a journal row changed, deleted or inserted with a correctly forged hash; the whole
//! chain rewritten after a checkpoint) is caught by `lab verify`, which names the table, the row and what was done.

use controller::record::hex::{hex, unhex};
use controller::record::journal::chain_hash;
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

/// A copy of `campaign`'s record in a folder of its own (kept while the folder lives), edited by `edit`.
fn edited_copy(campaign: &CampaignTest, edit: impl FnOnce(&Connection)) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.db");
    campaign.record().execute("VACUUM INTO ?1", [copy.to_string_lossy()]).unwrap();
    edit(&Connection::open(&copy).unwrap());
    (dir, copy)
}

/// What `lab verify` says about the record at `path`, against the public key `trusted` (hex or file) if given.
fn verified(path: &std::path::Path, trusted: Option<&str>) -> Report {
    let key = trusted.map(|k| controller::record::signing::read_public_key(k).unwrap());
    controller::record::verify::verify_with(path, key.as_ref()).unwrap()
}

/// A copy of the record, edited by `edit`, and what `lab verify` says about it.
fn tampered(edit: impl FnOnce(&Connection)) -> Report {
    let (_dir, copy) = edited_copy(original(), edit);
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
        rewrite_chain(c, edited);
    });
    assert!(
        report.problems.iter().all(|p| p.table != "journal"),
        "the chain itself is unbroken: {:?}",
        report.problems
    );
    let p = first_in(&report, "checkpoints");
    assert!(p.what.contains("no longer has the hash"), "{p}");
}

/// A campaign whose checkpoints are signed with a key kept outside the record (made once for these tests).
fn signed() -> &'static (CampaignTest, tempfile::TempDir, std::path::PathBuf) {
    static RUN: std::sync::OnceLock<(CampaignTest, tempfile::TempDir, std::path::PathBuf)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("lab.key");
        controller::record::signing::write_new_key(&key).unwrap();
        // Four experiments two at a time: about two hours of lab time, so an hourly checkpoint and a final one.
        let t = CampaignTest::demo(4, 2, 2);
        t.try_run_with(|o| o.sign_with = Some(key.clone())).expect("the signed campaign runs");
        (t, keys, key)
    })
}

/// A copy of the signed record, edited by `edit`, verified against the public key `trusted` (hex or file).
fn signed_tampered(edit: impl FnOnce(&Connection), trusted: Option<&str>) -> Report {
    let (_dir, copy) = edited_copy(&signed().0, edit);
    verified(&copy, trusted)
}

fn public_key_file() -> String {
    controller::record::signing::public_path(&signed().2).to_string_lossy().into_owned()
}

/// Recomputes every journal hash from row `from` on, so that the chain is unbroken again after an edit there.
fn rewrite_chain(c: &Connection, from: i64) {
    let rows: Vec<(i64, Option<i64>, Option<f64>, String, String)> = c
        .prepare("SELECT id, campaign_id, at, kind, body FROM journal WHERE id >= ?1 ORDER BY id")
        .unwrap()
        .query_map([from], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let prev: String = c.query_row("SELECT hash FROM journal WHERE id = ?1", [from - 1], |r| r.get(0)).unwrap();
    let mut prev = unhex(&prev).unwrap();
    for (id, campaign, at, kind, body) in rows {
        prev = chain_hash(&prev, id, campaign, at, &kind, &body);
        c.execute("UPDATE journal SET hash = ?2 WHERE id = ?1", params![id, hex(&prev)]).unwrap();
    }
}

/// Rewrites the journal from `from` on so that the chain is unbroken again, then points every checkpoint at the new
/// hashes: what someone who can edit the record but does not hold the key would do.
fn rewrite_chain_and_checkpoints(c: &Connection, from: i64) {
    rewrite_chain(c, from);
    c.execute("UPDATE checkpoints SET hash = (SELECT hash FROM journal WHERE journal.id = checkpoints.journal_id)", [])
        .unwrap();
}

#[test]
fn a_signed_record_untouched_is_intact_against_its_public_key() {
    let report = signed_tampered(|_| {}, Some(&public_key_file()));
    assert!(report.is_intact(), "{:?}", report.problems);
    assert!(report.signed >= 1 && report.signed == report.checkpoints, "{report:?}");
    assert_eq!(report.last_signed, Some(report.journal_rows), "the last checkpoint covers the whole journal");
    // The public key a verifier is given is the one that signed.
    let public = std::fs::read_to_string(public_key_file()).unwrap();
    assert!(public.contains(&report.signers[0]), "{report:?}");
}

/// Without the key, rewriting the chain and its checkpoints together leaves nothing unbroken but the signature.
#[test]
fn a_chain_rewritten_with_its_checkpoints_is_caught_by_the_signature() {
    let report = signed_tampered(
        |c| {
            let edited = succeeded_step_after(c, 40);
            c.execute("UPDATE journal SET body = replace(body, 'succeeded', 'failed') WHERE id = ?1", [edited])
                .unwrap();
            rewrite_chain_and_checkpoints(c, edited);
        },
        None,
    );
    assert!(
        report.problems.iter().all(|p| p.table != "journal"),
        "the chain itself is unbroken: {:?}",
        report.problems
    );
    let p = first_in(&report, "checkpoints");
    assert!(p.what.contains("signature does not match"), "{p}");
}

/// A forger who re-signs the rewritten checkpoints with a key of their own makes a record that is consistent in
/// itself; only the lab's public key, given from outside, tells it apart.
#[test]
fn checkpoints_re_signed_with_another_key_are_caught_only_against_the_labs_public_key() {
    let forger = tempfile::tempdir().unwrap();
    let forged_key = forger.path().join("forged.key");
    controller::record::signing::write_new_key(&forged_key).unwrap();
    let forged = controller::record::signing::CheckpointSigner::read(&forged_key).unwrap();
    let edit = |c: &Connection| {
        let edited = succeeded_step_after(c, 40);
        c.execute("UPDATE journal SET body = replace(body, 'succeeded', 'failed') WHERE id = ?1", [edited]).unwrap();
        rewrite_chain_and_checkpoints(c, edited);
        let rows: Vec<(i64, i64, String, String, String)> = c
            .prepare("SELECT id, journal_id, hash, made_at, reason FROM checkpoints")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (id, journal_id, hash, made_at, reason) in rows {
            let message = controller::record::signing::message(journal_id, &hash, &made_at, &reason);
            c.execute(
                "UPDATE checkpoints SET public_key = ?2, signature = ?3 WHERE id = ?1",
                params![id, forged.public_hex(), forged.sign(&message)],
            )
            .unwrap();
        }
    };
    // Consistent in itself: without the lab's key, nothing is wrong. But the tables still disagree with the
    // rewritten journal, unless they were rewritten too; this edit changed the journal only.
    let alone = signed_tampered(edit, None);
    assert!(alone.problems.iter().all(|p| p.table != "journal" && p.table != "checkpoints"), "{:?}", alone.problems);
    let against = signed_tampered(edit, Some(&public_key_file()));
    let p = first_in(&against, "checkpoints");
    assert!(p.what.contains("not by the key given"), "{p}");
}

#[test]
fn an_unsigned_record_fails_against_a_public_key() {
    let report = tampered(|_| {});
    assert!(report.is_intact(), "intact without a key: {:?}", report.problems);
    let (_dir, copy) = edited_copy(original(), |_| {});
    let against = verified(&copy, Some(&public_key_file()));
    let p = first_in(&against, "checkpoints");
    assert!(p.what.contains("none is signed by the key given"), "{p}");
}

/// Checkpoints from before signing began (unsigned) are proven by the signed ones after them.
#[test]
fn unsigned_checkpoints_before_a_signed_one_are_covered_by_it() {
    let report = signed_tampered(
        |c| {
            c.execute(
                "INSERT INTO checkpoints (journal_id, hash, made_at, reason)
                 SELECT 5, hash, '2026-01-01T00:00:00.000Z', 'from before the lab signed' FROM journal WHERE id = 5",
                [],
            )
            .unwrap();
        },
        Some(&public_key_file()),
    );
    assert!(report.is_intact(), "{:?}", report.problems);
}

/// Rows after the last signed checkpoint of a record no controller is writing to are not proven: someone may have
/// rewritten the end (here, the final checkpoint is deleted, as a forger who rewrote the last hour would).
#[test]
fn rows_after_the_last_signed_checkpoint_are_named_unless_a_controller_is_writing() {
    let cut = |c: &Connection| {
        let checkpoints = one(c, "SELECT count(*) FROM checkpoints");
        assert!(checkpoints >= 2, "an hourly checkpoint and a final one: {checkpoints}");
        c.execute("DELETE FROM checkpoints WHERE id = (SELECT max(id) FROM checkpoints)", []).unwrap();
    };
    let report = signed_tampered(cut, Some(&public_key_file()));
    let p = first_in(&report, "journal");
    assert!(p.what.contains("after the last checkpoint signed by the key given"), "{p}");
    let (from, to) = report.unproven.expect("rows after the last signed checkpoint");
    assert_eq!(p.row, format!("{from}..={to}"));
    assert_eq!(to, report.journal_rows);

    // The same record while a controller holds it: the rows are expected, and named as unproven only.
    let (_dir, copy) = edited_copy(&signed().0, cut);
    let held = controller::record::Record::open(&copy).unwrap();
    let report = verified(&copy, Some(&public_key_file()));
    drop(held);
    assert!(report.is_intact(), "{:?}", report.problems);
    assert!(report.unproven.is_some(), "{report:?}");
}
