//! The fleet's logins (`lab fleet grant`): a workcell's login writes only its own rows and claims and releases only in
//! its own name; a reader only reads; the owner keeps every right. Each refusal comes from the hub itself (row-level
//! security, privileges, and the checks in the fleet's functions), tried over a plain SQL connection as an attacker
//! holding a workcell's password would.

use super::harness::{self, grant, lab, write_campaign};
use super::pg::Sql;

#[test]
fn a_workcells_login_writes_only_its_own_rows_and_claims_only_in_its_own_name() {
    let Some((pg, owner, hub)) = harness::hub() else { return };
    let a = grant(&owner, "wc-a", "workcell");
    let b = grant(&owner, "wc-b", "workcell");
    let reader = grant(&owner, "reader", "reader");
    // A password that is not one of these is refused, and a login may not take a name another role has.
    let (ok, _, err) = lab(&["fleet", "grant", "lab", "--as", "workcell"], &owner);
    assert!(!ok && err.contains("exists already on this server and is not a lab workcell"), "{err}");
    let (ok, _, err) = lab(&["fleet", "grant", "wc a", "--as", "reader"], &owner);
    assert!(!ok && err.contains("cannot be a login"), "{err}");
    let (ok, _, err) = lab(&["fleet", "status"], &pg.url_as("wc-a", "not-its-password", pg.port));
    assert!(!ok && err.contains("refused the credentials") && !err.contains(&a), "{err}");

    hub.execute(
        "INSERT INTO fleet.campaigns (name, campaign_path, campaign_text, campaign_sha256, protocol_path, protocol_text,
             protocol_sha256, needs, budget, in_flight) VALUES ('roles', '-', '-', '-', '-', '-', '-', '{}', 4, 1);
         INSERT INTO fleet.proposals (campaign, seq, needs, params, proposal)
             SELECT 'roles', s, '{}', '{}', '{}' FROM generate_series(1, 4) s;",
    );
    let wa = Sql::connect(&pg.url_as("wc-a", &a, pg.port));
    let wb = Sql::connect(&pg.url_as("wc-b", &b, pg.port));
    let denied = |sql: &Sql, statement: &str, why: &str| {
        let e = sql.try_execute(statement).expect_err(statement);
        assert!(e.contains(why), "{statement}: {e}");
    };
    // Registering and claiming: in its own name only.
    wa.execute("SELECT fleet.register('wc-a', 'sim', '', '{}')");
    wb.execute("SELECT fleet.register('wc-b', 'sim', '', '{}')");
    denied(&wa, "SELECT fleet.register('wc-b', 'sim', '', '{}')", "may not register workcell wc-b");
    denied(&wa, "SELECT fleet.register('wc-new', 'sim', '', '{}')", "may not register workcell wc-new");
    denied(&wa, "SELECT * FROM fleet.claim('wc-b', 'roles', 1)", "may not act for workcell wc-b");
    assert_eq!(wa.count("SELECT count(*) FROM fleet.claim('wc-a', 'roles', 1)"), 1);
    assert_eq!(wb.count("SELECT count(*) FROM fleet.claim('wc-b', 'roles', 1)"), 1);
    // Releasing another's claim, or moving proposals by hand, is refused.
    denied(&wa, "SELECT fleet.on_released('wc-b', 'roles', 2, 1, NULL, 1)", "may not act for workcell wc-b");
    denied(&wa, "UPDATE fleet.proposals SET state = 'open' WHERE seq = 2", "permission denied");
    denied(&wa, "SELECT * FROM fleet.retire('wc-b', 'wc-a', 'take its claims')", "permission denied");
    denied(&wa, "UPDATE fleet.workcells SET retired_at = now() WHERE name = 'wc-b'", "permission denied");
    assert_eq!(hub.count("SELECT count(*) FROM fleet.proposals WHERE workcell = 'wc-b' AND state = 'claimed'"), 1);

    // Journal rows: its own ship (a real record, through the shipper); another's are refused and unseen.
    let dir = tempfile::tempdir().unwrap();
    let campaign = write_campaign(dir.path(), "local", 2, 2, "Random");
    let db = dir.path().join("lab.db");
    let out = std::process::Command::new(harness::LAB)
        .args(["campaign", campaign.to_str().unwrap(), "--db", db.to_str().unwrap(), "--time-scale", "2000", "-q"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ship = |login: &str, password: &str| harness::ship(&pg.url_as(login, password, pg.port), "wc-a", &db);
    // wc-b's login shipping wc-a's record is refused by the hub, and nothing lands.
    let s = ship("wc-b", &b);
    assert!(s.refused.as_deref().is_some_and(|r| r.contains("row-level security")), "{s:?}");
    assert_eq!(hub.count("SELECT count(*) FROM fleet.journal"), 0);
    let s = ship("wc-a", &a);
    assert!(s.refused.is_none(), "{s:?}");
    let rows = harness::check_copy(&hub, "wc-a", &db);
    assert!(rows > 50, "{rows}");
    denied(
        &wb,
        "INSERT INTO fleet.journal (workcell, id, campaign_id, at, kind, body, hash)
         SELECT 'wc-a', max(id) + 1, 1, 1.0, 'Event', '{}', 'x' FROM fleet.journal",
        "row-level security",
    );
    assert_eq!(wb.count("SELECT count(*) FROM fleet.journal"), 0, "wc-b sees none of wc-a's journal");
    assert_eq!(wb.count("SELECT count(*) FROM record.steps"), 0);
    // The stock ledger's twin (hub schema version 5) is held the same way.
    denied(
        &wb,
        "INSERT INTO record.stock_events (workcell, id, campaign_id, at, bottle, reagent, kind, volume_ul)
         VALUES ('wc-a', 999, 1, 1.0, 'pump_a', 'A', 'refilled', 1.0)",
        "row-level security",
    );
    wb.execute("UPDATE record.steps SET status = 'failed'");
    denied(&wb, "DELETE FROM fleet.checkpoints", "permission denied");
    assert!(wa.count("SELECT count(*) FROM fleet.journal") > 0, "wc-a sees its own");
    harness::check_copy(&hub, "wc-a", &db);

    // A reader reads everything and changes nothing.
    let r = Sql::connect(&pg.url_as("reader", &reader, pg.port));
    assert_eq!(r.count("SELECT count(*) FROM fleet.journal"), hub.count("SELECT count(*) FROM fleet.journal"));
    denied(&r, "UPDATE record.steps SET status = 'failed'", "permission denied");
    denied(&r, "SELECT count(*) FROM fleet.claim('wc-a', 'roles', 1)", "permission denied");
    let (ok, out, err) = lab(&["fleet", "status"], &pg.url_as("reader", &reader, pg.port));
    assert!(ok && out.contains("campaign roles"), "{out}{err}");
    let (ok, out, err) = lab(&["fleet", "verify"], &pg.url_as("reader", &reader, pg.port));
    assert!(ok && out.contains("workcell wc-a: intact at the hub"), "{out}{err}");
    // A new password replaces the old one.
    let again = grant(&owner, "reader", "reader");
    assert_ne!(again, reader);
    let (ok, _, _) = lab(&["fleet", "status"], &pg.url_as("reader", &reader, pg.port));
    assert!(!ok, "the old password is void");
}
