//! A closed-loop campaign through real pseudo-terminals, checked against what `lab.db` recorded.

use std::collections::HashMap;

use rusqlite::Connection;
use tests::CampaignTest;

/// Runs a 12-experiment campaign, 4 in flight, once for the whole file (it takes a few seconds).
fn campaign() -> &'static (CampaignTest, controller::run::Summary) {
    static RUN: std::sync::OnceLock<(CampaignTest, controller::run::Summary)> = std::sync::OnceLock::new();
    RUN.get_or_init(|| {
        let t = CampaignTest::demo(12, 4, 4);
        let s = t.run();
        (t, s)
    })
}

fn query<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Vec<T> {
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn every_experiment_ran_every_step() {
    let (t, s) = campaign();
    let conn = t.record();
    let failures: Vec<String> = query(&conn, "SELECT seq || ': ' || error FROM experiments WHERE error IS NOT NULL");
    assert_eq!((s.started, s.succeeded, s.failed), (12, 12, 0), "{s:?}\nfailures: {failures:#?}");
    let statuses: Vec<String> = query(&conn, "SELECT DISTINCT status FROM experiments");
    assert_eq!(statuses, vec!["succeeded"]);
    let steps: i64 = conn.query_row("SELECT count(*) FROM steps WHERE status = 'succeeded'", [], |r| r.get(0)).unwrap();
    assert_eq!(steps, 12 * 8, "8 steps per experiment");
    let objectives: Vec<f64> = query(&conn, "SELECT objective FROM experiments WHERE objective IS NOT NULL");
    assert_eq!(objectives.len(), 12);
    assert!(objectives.iter().all(|v| v.is_finite()));
    let campaign_status: String = conn.query_row("SELECT status FROM campaigns", [], |r| r.get(0)).unwrap();
    assert_eq!(campaign_status, "finished");
}

#[test]
fn dependencies_were_respected() {
    let (t, _) = campaign();
    let conn = t.record();
    let mut stmt = conn.prepare("SELECT experiment_id, step, after, started_at, finished_at FROM steps").unwrap();
    let rows: Vec<(i64, String, String, f64, f64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let finished: HashMap<(i64, String), f64> = rows.iter().map(|r| ((r.0, r.1.clone()), r.4)).collect();
    let mut checked = 0;
    for (exp, step, after, started, _) in &rows {
        let after: Vec<String> = serde_json::from_str(after).unwrap();
        for dep in after {
            let dep_end = finished[&(*exp, dep.clone())];
            assert!(
                *started >= dep_end,
                "experiment {exp}: `{step}` started at {started} before `{dep}` finished at {dep_end}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 12 * 8, "checked {checked} dependencies");
}

#[test]
fn no_instrument_ran_two_steps_at_once() {
    let (t, _) = campaign();
    let conn = t.record();
    let mut stmt =
        conn.prepare("SELECT instrument, started_at, finished_at FROM steps ORDER BY instrument, started_at").unwrap();
    let rows: Vec<(String, f64, f64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
    for w in rows.windows(2) {
        if w[0].0 == w[1].0 {
            assert!(w[1].1 >= w[0].2, "{} ran two steps at once: {:?} and {:?}", w[0].0, w[0], w[1]);
        }
    }
    let instruments: Vec<String> = query(&conn, "SELECT DISTINCT instrument FROM steps ORDER BY 1");
    assert!(instruments.len() >= 6, "work spread over the lab: {instruments:?}");
}

#[test]
fn experiments_ran_concurrently() {
    let (t, s) = campaign();
    assert!(s.peak_in_flight >= 4, "peak in flight {}", s.peak_in_flight);
    let conn = t.record();
    let mut stmt = conn.prepare("SELECT started_at, finished_at FROM experiments").unwrap();
    let spans: Vec<(f64, f64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    let peak = spans.iter().map(|(a, _)| spans.iter().filter(|(b, e)| b <= a && a < e).count()).max().unwrap();
    assert!(peak >= 4, "the record shows at most {peak} experiments at once");
    let hotplates: Vec<String> = query(&conn, "SELECT DISTINCT instrument FROM steps WHERE op = 'Heat' ORDER BY 1");
    assert_eq!(hotplates, vec!["hotplate_1", "hotplate_2", "hotplate_3", "hotplate_4"]);
}

#[test]
fn every_command_has_its_reply() {
    let (t, _) = campaign();
    let conn = t.record();
    let errors: Vec<String> =
        query(&conn, "SELECT instrument || ': ' || sent_text || ' -> ' || error FROM commands WHERE error IS NOT NULL");
    assert!(errors.is_empty(), "{errors:#?}");
    // The only commands without a reply are NAMUR writes, which the protocol never answers.
    let silent: Vec<String> = query(&conn, "SELECT sent_text FROM commands WHERE length(received) = 0");
    assert!(!silent.is_empty());
    for s in &silent {
        assert!(
            ["OUT_", "START_", "STOP_", "RESET"].iter().any(|p| s.starts_with(p)),
            "`{s}` got no reply but is not a NAMUR write"
        );
    }
    let by_instrument: Vec<String> = query(&conn, "SELECT DISTINCT instrument FROM commands ORDER BY 1");
    assert_eq!(by_instrument.len(), 8, "every instrument talked: {by_instrument:?}");
    let tagged: i64 =
        conn.query_row("SELECT count(*) FROM commands WHERE step_id IS NOT NULL", [], |r| r.get(0)).unwrap();
    assert!(tagged > 100, "commands are linked to the steps that sent them ({tagged})");
}

#[test]
fn the_best_result_beats_the_median_of_the_space_filling_batch() {
    let (t, s) = campaign();
    let conn = t.record();
    let mut first: Vec<f64> = query(&conn, "SELECT objective FROM experiments WHERE seq <= 4 ORDER BY seq");
    first.sort_by(f64::total_cmp);
    let median = (first[1] + first[2]) / 2.0;
    let best = s.best.as_ref().expect("a best result").objective;
    assert!(best > median, "best {best} does not beat the first batch's median {median}");
    let strategies: Vec<String> = query(&conn, "SELECT DISTINCT strategy FROM proposals ORDER BY id");
    assert!(strategies.len() >= 2, "both the initial design and the model proposed: {strategies:?}");
}

#[test]
fn the_record_holds_provenance() {
    let (t, _) = campaign();
    let conn = t.record();
    let (protocol_text, sha): (String, String) = conn
        .query_row("SELECT protocol_text, protocol_sha256 FROM campaigns", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(sha, controller::record::sha256_hex(protocol_text.as_bytes()));
    let identities: Vec<String> =
        query(&conn, "SELECT name || '=' || model FROM instruments WHERE status = 'ready' ORDER BY name");
    assert_eq!(identities.len(), 8, "{identities:?}");
    let linked: i64 = conn
        .query_row("SELECT count(*) FROM experiments e JOIN proposals p ON p.id = e.proposal_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(linked, 12, "every experiment names its proposal");
    let safe: i64 = conn
        .query_row("SELECT count(*) FROM events WHERE message LIKE '%left in its safe state'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(safe, 8, "every instrument was left safe");
}

#[test]
fn a_second_campaign_appends_to_the_same_record() {
    let t = CampaignTest::demo(2, 2, 2);
    let first = t.run();
    let second = t.run();
    assert_eq!(second.campaign_id, first.campaign_id + 1);
    let conn = t.record();
    let campaigns: i64 = conn.query_row("SELECT count(*) FROM campaigns", [], |r| r.get(0)).unwrap();
    let experiments: i64 = conn.query_row("SELECT count(*) FROM experiments", [], |r| r.get(0)).unwrap();
    assert_eq!((campaigns, experiments), (2, 4));
}

#[test]
fn a_missing_serial_port_stops_only_its_experiments() {
    // pump_b is wired to a port that does not exist: every experiment needs it, so nothing can run, and the
    // controller says so before moving anything.
    let root = tests::repo_root();
    let lab = std::fs::read_to_string(root.join("devices/labs/sim.lab.ron")).unwrap();
    let t = CampaignTest::demo(4, 2, 2);
    let broken = lab
        .replace(
            "reservoir: \"B\"),\n            port: Simulated,",
            "reservoir: \"B\"),\n            port: Serial(\"/dev/ttyDOES_NOT_EXIST\"),",
        )
        .replace("time_scale: 400", "time_scale: 1");
    let lab_path = t.dir.path().join("broken.lab.ron");
    std::fs::write(&lab_path, broken).unwrap();
    let text = std::fs::read_to_string(&t.campaign).unwrap();
    std::fs::write(&t.campaign, tests::replace_field(&text, "lab", &format!("{:?}", lab_path.display().to_string())))
        .unwrap();
    let err = t.try_run().unwrap_err();
    assert!(err.to_string().contains("pump_b"), "{err}");
    let conn = t.record();
    let (status, error): (String, String) = conn
        .query_row("SELECT status, error FROM instruments WHERE name = 'pump_b'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!(status, "offline");
    assert!(error.contains("/dev/ttyDOES_NOT_EXIST"), "{error}");
    let campaign: String = conn.query_row("SELECT status FROM campaigns", [], |r| r.get(0)).unwrap();
    assert_eq!(campaign, "failed");
}

#[test]
fn a_missing_hotplate_port_leaves_the_others_working() {
    let root = tests::repo_root();
    let lab = std::fs::read_to_string(root.join("devices/labs/sim.lab.ron")).unwrap();
    let t = CampaignTest::demo(6, 3, 3);
    let broken = lab
        .replace(
            "watchdog: \"25 min\"),\n            port: Simulated,\n            position: \"hotplate_2\",",
            "watchdog: \"25 min\"),\n            port: Serial(\"/dev/ttyDOES_NOT_EXIST\"),\n            position: \"hotplate_2\",",
        )
        .replace("time_scale: 400", "time_scale: 1");
    assert!(broken.contains("ttyDOES_NOT_EXIST"));
    let lab_path = t.dir.path().join("broken.lab.ron");
    std::fs::write(&lab_path, broken).unwrap();
    let text = std::fs::read_to_string(&t.campaign).unwrap();
    std::fs::write(&t.campaign, tests::replace_field(&text, "lab", &format!("{:?}", lab_path.display().to_string())))
        .unwrap();
    // A lab file with a real port must say real time; the test's accelerated clock is an override that only
    // simulators accept, and the real port is absent anyway.
    let s = t.run();
    assert_eq!((s.succeeded, s.failed), (6, 0), "{s:?}");
    assert_eq!(s.offline.len(), 1);
    let conn = t.record();
    let used: Vec<String> = query(&conn, "SELECT DISTINCT instrument FROM steps WHERE op = 'Heat' ORDER BY 1");
    assert!(!used.contains(&"hotplate_2".to_owned()), "{used:?}");
}

/// `lab export` writes the experiment table a notebook reads: one row per experiment with its parameters, outputs,
/// objective and status, the same in CSV and Parquet, and the same as the record says.
#[test]
fn the_experiment_table_exports_to_csv_and_parquet() {
    use controller::record::export::{Format, export};
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;

    let (t, _) = campaign();
    let conn = t.record();
    // The record's own account: each experiment's sequence number, objective and first parameter, in order.
    let expected: Vec<(i64, Option<f64>, f64)> = conn
        .prepare(
            "SELECT e.seq, e.objective, (SELECT value FROM parameters p WHERE p.experiment_id = e.id ORDER BY name LIMIT 1)
             FROM experiments e ORDER BY e.seq",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(expected.len(), 12);
    let first_parameter: String = conn.query_row("SELECT min(name) FROM parameters", [], |r| r.get(0)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("experiments.csv");
    assert_eq!(export(&t.db, None, Format::Csv, &csv).unwrap(), 12);
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("no {name}: {header:?}"));
    let (seq, objective, parameter, status) =
        (column("seq"), column("objective"), column(&format!("param.{first_parameter}")), column("status"));
    assert!(header.iter().any(|h| h.starts_with("output.")), "outputs are columns: {header:?}");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 12);
    for (row, (s, o, p)) in rows.iter().zip(&expected) {
        assert_eq!(row[seq].parse::<i64>().unwrap(), *s);
        assert_eq!(row[objective].parse::<f64>().ok(), *o);
        assert_eq!(row[parameter].parse::<f64>().unwrap(), *p);
        assert!(["succeeded", "failed"].contains(&row[status]), "{row:?}");
    }

    let pq = dir.path().join("experiments.parquet");
    assert_eq!(export(&t.db, None, Format::Parquet, &pq).unwrap(), 12);
    let reader = SerializedFileReader::new(std::fs::File::open(&pq).unwrap()).unwrap();
    assert_eq!(reader.metadata().file_metadata().num_rows(), 12);
    let names: Vec<String> =
        reader.metadata().file_metadata().schema_descr().columns().iter().map(|c| c.name().to_owned()).collect();
    assert_eq!(names, header, "the Parquet file has the CSV's columns");
    let rows: Vec<parquet::record::Row> = reader.get_row_iter(None).unwrap().map(Result::unwrap).collect();
    for (row, (s, o, p)) in rows.iter().zip(&expected) {
        let field = |i: usize| row.get_column_iter().nth(i).unwrap().1;
        assert_eq!(field(seq), &Field::Long(*s));
        assert_eq!(field(objective), &o.map_or(Field::Null, Field::Double));
        assert_eq!(field(parameter), &Field::Double(*p));
    }
}

/// The schema is a public interface: every query `docs/record.md` offers a scientist runs on a real record, and the
/// views give one row per experiment, per step and per command without joins.
#[test]
fn the_documented_queries_and_views_answer_on_a_real_record() {
    let (t, _) = campaign();
    let conn = t.record();
    let doc = std::fs::read_to_string(tests::repo_root().join("docs/record.md")).unwrap();
    let mut blocks = 0;
    for block in doc.split("```sql").skip(1) {
        let sql = block.split("```").next().unwrap();
        for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            let mut stmt = conn.prepare(statement).unwrap_or_else(|e| panic!("docs/record.md: {e}\nin:\n{statement}"));
            let n = stmt.column_count();
            let mut rows = stmt.query([]).unwrap();
            while let Some(row) = rows.next().unwrap_or_else(|e| panic!("docs/record.md: {e}\nin:\n{statement}")) {
                for i in 0..n {
                    let _: rusqlite::types::Value = row.get(i).unwrap();
                }
            }
        }
        blocks += 1;
    }
    assert!(blocks >= 8, "docs/record.md has its queries ({blocks} found)");

    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(one("SELECT count(*) FROM experiment_view"), 12);
    assert_eq!(one("SELECT count(*) FROM experiment_view WHERE json_extract(parameters, '$.temperature') IS NULL"), 0);
    assert_eq!(one("SELECT count(*) FROM step_timeline"), one("SELECT count(*) FROM steps"));
    assert_eq!(one("SELECT count(*) FROM command_log"), one("SELECT count(*) FROM commands"));
    assert!(one("SELECT count(*) FROM command_log WHERE experiment IS NOT NULL AND latency >= 0") > 0);
}
