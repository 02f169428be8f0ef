//! What people do with a fleet: `lab fleet init`, `status`, `retire`, `settle`, and reading a fleet campaign's
//! record with `lab report --hub` and `lab export --hub`.
//!
//! Retiring and settling are the only ways a claim moves without its workcell's journal saying so, and each is one
//! transaction of a function in the hub's schema (`fleet.retire`, `fleet.settle`) that records who and why.
//! A report or an export of a fleet campaign reads the hub's copy of every workcell's record into a temporary file
//! shaped like `lab.db` (one campaign, every workcell's experiments numbered in the fleet's order, instruments named
//! `workcell/instrument`), and then runs the same code as for one `lab.db`.

use std::fmt::Write as _;
use std::path::Path;

use super::hub::{FleetError, Hub};

/// `lab fleet init`: creates or migrates the hub's schema; returns what it did, for people.
pub fn init(hub: &Hub) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    let (from, to) = rt.block_on(hub.init())?;
    Ok(if from == to {
        format!("the hub at {} has fleet schema version {to}, this lab's: nothing to do", hub.redacted())
    } else if from == 0 {
        format!("created fleet schema version {to} at {}", hub.redacted())
    } else {
        format!("migrated the hub at {} from fleet schema version {from} to {to}", hub.redacted())
    })
}

/// `lab fleet retire`: the operator's word that a workcell will not act again. Returns what happened to its claims.
pub fn retire(hub: &Hub, workcell: &str, who: &str, why: &str) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        let rows = hub
            .bounded(c.client.query("SELECT campaign, seq, state FROM fleet.retire($1, $2, $3)", &[&workcell, &who, &why]))
            .await?;
        let mut out = format!("retired workcell {workcell}: it may never claim again, and what it ships is flagged\n");
        for r in rows {
            let (campaign, seq, state): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
            let _ = match state.as_str() {
                "open" => writeln!(out, "  {campaign} #{seq}: never started there; open again for other workcells"),
                _ => writeln!(
                    out,
                    "  {campaign} #{seq}: started there; settle it: `lab fleet settle {campaign} {seq} --done|--not-done`"
                ),
            };
        }
        Ok(out)
    })
}

/// `lab fleet settle`: an operator's verdict on a proposal a retired workcell started.
pub fn settle(hub: &Hub, campaign: &str, seq: i64, done: bool, who: &str, why: &str) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        let state: String = hub
            .bounded(
                c.client.query_one("SELECT fleet.settle($1, $2, $3, $4, $5)", &[&campaign, &seq, &done, &who, &why]),
            )
            .await?
            .get(0);
        Ok(match state.as_str() {
            "open" => format!("{campaign} #{seq} did not run: it is open again for another workcell"),
            _ => format!("{campaign} #{seq} ran and its result is lost: settled"),
        })
    })
}

/// `lab fleet status`: the workcells, their lag and claims, and each campaign's progress.
pub fn status(hub: &Hub, campaign: Option<&str>) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        let mut out = format!("hub {} (fleet schema {})\n", hub.redacted(), super::hub::schema_version());
        let campaigns = hub
            .bounded(c.client.query(
                "SELECT p.campaign, p.status, p.budget, coalesce(p.learner, '-'), p.published, p.open, p.running,
                        p.orphaned, p.succeeded, p.failed, p.withdrawn_or_settled, c.stop_reason,
                        (SELECT count(*) FROM fleet.conflicts k WHERE k.campaign = p.campaign)
                 FROM fleet.campaign_progress p JOIN fleet.campaigns c ON c.name = p.campaign
                 WHERE $1::text IS NULL OR p.campaign = $1 ORDER BY c.published_at",
                &[&campaign],
            ))
            .await?;
        if campaigns.is_empty() {
            out.push_str("no campaigns\n");
        }
        for r in &campaigns {
            let _ = writeln!(
                out,
                "campaign {}: {}, learner {}; budget {}: {} published, {} open, {} running, {} orphaned, {} succeeded, \
                 {} failed, {} withdrawn or settled{}{}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(3),
                r.get::<_, i32>(2),
                r.get::<_, i64>(4),
                r.get::<_, i64>(5),
                r.get::<_, i64>(6),
                r.get::<_, i64>(7),
                r.get::<_, i64>(8),
                r.get::<_, i64>(9),
                r.get::<_, i64>(10),
                r.get::<_, Option<String>>(11).map(|s| format!(" ({s})")).unwrap_or_default(),
                match r.get::<_, i64>(12) {
                    0 => String::new(),
                    n => format!("; {n} CONFLICTS"),
                }
            );
        }
        let workcells = hub
            .bounded(c.client.query(
                "SELECT workcell, lab_name, extract(epoch FROM silent_for)::float8, coalesce(hub_head, 0), claimed,
                        started, orphaned, results, retired_at::text, conflict
                 FROM fleet.workcell_status ORDER BY workcell",
                &[],
            ))
            .await?;
        let _ = writeln!(
            out,
            "\n{:<14} {:<10} {:>10} {:>9} {:>7} {:>7} {:>8} {:>7}  state",
            "workcell", "lab", "silent", "hub head", "claimed", "started", "orphaned", "results"
        );
        for r in &workcells {
            let silent: f64 = r.get(2);
            let state = match (r.get::<_, Option<String>>(8), r.get::<_, Option<String>>(9)) {
                (Some(at), Some(c)) => format!("RETIRED at {at}; CONFLICT: {c}"),
                (Some(at), None) => format!("retired at {at}"),
                (None, Some(c)) => format!("CONFLICT: {c}"),
                (None, None) if silent > 60.0 => {
                    "OVERDUE: silent for over a minute (its claims stay its own)".to_owned()
                }
                (None, None) => "ok".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<14} {:<10} {:>9.1}s {:>9} {:>7} {:>7} {:>8} {:>7}  {state}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                silent,
                r.get::<_, i64>(3),
                r.get::<_, i64>(4),
                r.get::<_, i64>(5),
                r.get::<_, i64>(6),
                r.get::<_, i64>(7),
            );
        }
        let rejections = hub
            .bounded(
                c.client
                    .query("SELECT workcell, journal_id, detail FROM fleet.rejections ORDER BY id DESC LIMIT 5", &[]),
            )
            .await?;
        for r in rejections {
            let _ = writeln!(
                out,
                "REFUSED journal row {} of workcell {}: {}",
                r.get::<_, i64>(1),
                r.get::<_, String>(0),
                r.get::<_, String>(2)
            );
        }
        Ok(out)
    })
}

/// Writes fleet campaign `campaign` as the hub holds it into a new file at `out`, shaped like `lab.db`, for `lab
/// report` and `lab export`. Returns how many experiments it holds.
pub fn materialize(hub: &Hub, campaign: &str, out: &Path) -> Result<usize, FleetError> {
    let local = |e: &dyn std::fmt::Display| FleetError::Local(format!("{}: {e}", out.display()));
    drop(crate::record::Record::open(out).map_err(|e| local(&e))?);
    let rt = super::hub::runtime()?;
    let (head, experiments, parameters, measurements, proposals, steps, instruments) = rt.block_on(async {
        let c = hub.connect().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&campaign];
        let q = |sql: &'static str| hub.bounded(c.client.query(sql, &params));
        let head = q("SELECT c.status, c.budget, c.in_flight, r.started_at, r.time_scale, r.software_version, r.seed,
                         r.objective_output, r.objective_direction, r.campaign_path, r.campaign_text, r.campaign_sha256,
                         r.protocol_path, r.protocol_text, r.protocol_sha256, r.lab_path, r.lab_text, r.lab_sha256,
                         (SELECT max(e.finished_at) FROM record.experiments e JOIN record.campaigns k
                              ON k.workcell = e.workcell AND k.id = e.campaign_id WHERE k.name = c.name)
                      FROM fleet.campaigns c JOIN record.campaigns r ON r.name = c.name
                      WHERE c.name = $1 ORDER BY r.started_at LIMIT 1")
        .await?;
        // Every workcell's experiments of the campaign, in the fleet's order: fleet number, then workcell.
        let experiments = q("SELECT e.workcell, e.id, e.proposal_id, e.params, e.vessel, e.status, e.started_at,
                                    e.finished_at, e.objective, e.error, l.seq
                             FROM record.experiments e JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id
                             LEFT JOIN fleet.links l ON l.workcell = e.workcell AND l.local_experiment = e.id
                             WHERE k.name = $1 ORDER BY l.seq NULLS LAST, e.started_at, e.workcell, e.id")
        .await?;
        let parameters = q("SELECT p.workcell, p.experiment_id, p.name, p.value, p.unit FROM record.parameters p
                            JOIN record.experiments e ON e.workcell = p.workcell AND e.id = p.experiment_id
                            JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id WHERE k.name = $1")
        .await?;
        let measurements = q("SELECT m.workcell, m.experiment_id, m.name, m.value, m.unit, m.at, m.step_id FROM record.measurements m
                              JOIN record.experiments e ON e.workcell = m.workcell AND e.id = m.experiment_id
                              JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id
                              WHERE k.name = $1 ORDER BY m.workcell, m.id")
        .await?;
        let proposals = q("SELECT p.workcell, p.id, p.at, p.strategy, p.params, p.predicted_mean, p.predicted_sd,
                                  p.acquisition, p.model, p.reason FROM record.proposals p
                           JOIN record.campaigns k ON k.workcell = p.workcell AND k.id = p.campaign_id WHERE k.name = $1")
        .await?;
        let steps = q("SELECT s.workcell, s.experiment_id, s.step, s.op, s.action, s.after, s.repeat_safe, s.status,
                              s.instrument, s.ready_at, s.started_at, s.finished_at, s.outcome, s.error, s.id
                       FROM record.steps s JOIN record.experiments e ON e.workcell = s.workcell AND e.id = s.experiment_id
                       JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id WHERE k.name = $1")
        .await?;
        let instruments = q("SELECT DISTINCT ON (i.workcell, i.name) i.workcell, i.name, i.kind, i.driver, i.port, i.line,
                                    i.status FROM record.instruments i
                             JOIN record.campaigns k ON k.workcell = i.workcell AND k.id = i.campaign_id WHERE k.name = $1
                             ORDER BY i.workcell, i.name, i.campaign_id DESC")
        .await?;
        Ok::<_, FleetError>((head, experiments, parameters, measurements, proposals, steps, instruments))
    })?;
    let Some(h) = head.first() else {
        return Err(FleetError::Refused(format!(
            "the hub holds no record of fleet campaign {campaign} yet (no workcell has shipped it)"
        )));
    };
    let mut conn = rusqlite::Connection::open(out).map_err(|e| local(&e))?;
    let tx = conn.transaction().map_err(|e| local(&e))?;
    let sqlite = |e: rusqlite::Error| FleetError::Local(format!("{}: {e}", out.display()));
    let status: String = h.get(0);
    tx.execute(
        "INSERT INTO campaigns (id, name, started_at, time_scale, status, finished_at, software_version, seed,
             objective_output, objective_direction, budget, in_flight, campaign_path, campaign_text, campaign_sha256,
             protocol_path, protocol_text, protocol_sha256, lab_path, lab_text, lab_sha256, note)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)",
        rusqlite::params![
            campaign,
            h.get::<_, String>(3),
            h.get::<_, f64>(4),
            if status == "finished" { "finished" } else { "running" },
            h.get::<_, Option<f64>>(18),
            h.get::<_, String>(5),
            h.get::<_, i64>(6),
            h.get::<_, String>(7),
            h.get::<_, String>(8),
            i64::from(h.get::<_, i32>(1)),
            i64::from(h.get::<_, i32>(2)),
            h.get::<_, String>(9),
            h.get::<_, String>(10),
            h.get::<_, String>(11),
            h.get::<_, String>(12),
            h.get::<_, String>(13),
            h.get::<_, String>(14),
            h.get::<_, String>(15),
            h.get::<_, String>(16),
            h.get::<_, String>(17),
            format!(
                "fleet campaign {campaign} as the hub at {} holds it: every workcell's experiments",
                hub.redacted()
            ),
        ],
    )
    .map_err(sqlite)?;
    let mut ids = std::collections::HashMap::new();
    let mut proposal_ids = std::collections::HashMap::new();
    for (i, p) in proposals.iter().enumerate() {
        let id = i as i64 + 1;
        proposal_ids.insert((p.get::<_, String>(0), p.get::<_, i64>(1)), id);
        tx.execute(
            "INSERT INTO proposals (id, campaign_id, at, strategy, params, predicted_mean, predicted_sd, acquisition,
                 model, reason) VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                id,
                p.get::<_, f64>(2),
                p.get::<_, String>(3),
                p.get::<_, String>(4),
                p.get::<_, Option<f64>>(5),
                p.get::<_, Option<f64>>(6),
                p.get::<_, Option<f64>>(7),
                p.get::<_, Option<String>>(8),
                format!("{} (workcell {})", p.get::<_, String>(9), p.get::<_, String>(0)),
            ],
        )
        .map_err(sqlite)?;
    }
    for (i, e) in experiments.iter().enumerate() {
        let id = i as i64 + 1;
        let wc: String = e.get(0);
        ids.insert((wc.clone(), e.get::<_, i64>(1)), id);
        let proposal = e.get::<_, Option<i64>>(2).and_then(|p| proposal_ids.get(&(wc.clone(), p)).copied());
        tx.execute(
            "INSERT INTO experiments (id, campaign_id, seq, proposal_id, params, vessel, status, started_at, finished_at,
                 objective, error) VALUES (?1, 1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            rusqlite::params![
                id,
                proposal,
                e.get::<_, String>(3),
                e.get::<_, i64>(4),
                e.get::<_, String>(5),
                e.get::<_, f64>(6),
                e.get::<_, Option<f64>>(7),
                e.get::<_, Option<f64>>(8),
                e.get::<_, Option<String>>(9),
            ],
        )
        .map_err(sqlite)?;
    }
    let id_of = |wc: String, local: i64| ids.get(&(wc, local)).copied();
    for p in &parameters {
        if let Some(id) = id_of(p.get(0), p.get(1)) {
            tx.execute(
                "INSERT INTO parameters (experiment_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![id, p.get::<_, String>(2), p.get::<_, f64>(3), p.get::<_, String>(4)],
            )
            .map_err(sqlite)?;
        }
    }
    let mut step_ids = std::collections::HashMap::new();
    for (i, s) in steps.iter().enumerate() {
        if let Some(id) = id_of(s.get(0), s.get(1)) {
            let wc: String = s.get(0);
            step_ids.insert((wc.clone(), s.get::<_, i64>(14)), i as i64 + 1);
            tx.execute(
                "INSERT INTO steps (id, experiment_id, step, op, action, after, repeat_safe, status, instrument, ready_at,
                     started_at, finished_at, outcome, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                rusqlite::params![
                    i as i64 + 1,
                    id,
                    s.get::<_, String>(2),
                    s.get::<_, String>(3),
                    s.get::<_, String>(4),
                    s.get::<_, String>(5),
                    s.get::<_, i64>(6),
                    s.get::<_, String>(7),
                    s.get::<_, Option<String>>(8).map(|n| format!("{wc}/{n}")),
                    s.get::<_, Option<f64>>(9),
                    s.get::<_, Option<f64>>(10),
                    s.get::<_, Option<f64>>(11),
                    s.get::<_, Option<String>>(12),
                    s.get::<_, Option<String>>(13),
                ],
            )
            .map_err(sqlite)?;
        }
    }
    for m in &measurements {
        if let Some(id) = id_of(m.get(0), m.get(1)) {
            let step = step_ids.get(&(m.get::<_, String>(0), m.get::<_, i64>(6))).copied();
            tx.execute(
                "INSERT INTO measurements (experiment_id, step_id, name, value, unit, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![id, step.unwrap_or(0), m.get::<_, String>(2), m.get::<_, f64>(3), m.get::<_, String>(4), m.get::<_, f64>(5)],
            )
            .map_err(sqlite)?;
        }
    }
    for i in &instruments {
        tx.execute(
            "INSERT INTO instruments (campaign_id, name, kind, driver, port, line, status) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                format!("{}/{}", i.get::<_, String>(0), i.get::<_, String>(1)),
                i.get::<_, String>(2),
                i.get::<_, String>(3),
                i.get::<_, String>(4),
                i.get::<_, String>(5),
                i.get::<_, String>(6),
            ],
        )
        .map_err(sqlite)?;
    }
    tx.commit().map_err(sqlite)?;
    Ok(experiments.len())
}

/// `lab fleet grant`: a login of its own for a workcell, a learner or a reader. Returns what to tell its user,
/// with the password when this made one.
pub fn grant(hub: &Hub, login: &str, role: &str, password: Option<String>) -> Result<String, FleetError> {
    let valid = !login.is_empty()
        && login.len() <= 63
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(FleetError::Refused(format!(
            "`{login}` cannot be a login: use 1 to 63 letters, digits, `-`, `_` or `.` (a workcell's login is its \
             name; give the workcell such a name with `lab workcell --name`)"
        )));
    }
    let made = password.is_none();
    let password = match password {
        Some(p) => p,
        None => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes)
                .map_err(|e| FleetError::Local(format!("the system gave no randomness for a password: {e}")))?;
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    // The server gets only a SCRAM verifier: the password never reaches it, its logs or its statistics.
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        hub.bounded(c.client.execute("SELECT fleet.grant_login($1, $2, $3)", &[&login, &verifier, &role])).await
    })?;
    let what = match role {
        "workcell" => format!("workcell {login}: it ships its own journal and claims in its own name only"),
        "learner" => "a learner: it publishes campaigns and proposals and reads everything".to_owned(),
        _ => "a reader: it reads everything and changes nothing".to_owned(),
    };
    let mut out = format!("login {login} may now act at the hub as {what}\n");
    if made {
        let _ = writeln!(out, "password (shown once; the hub keeps only a SCRAM verifier of it): {password}");
        let _ = writeln!(out, "its hub URL: {}", hub.url_for(login, &password));
    }
    Ok(out)
}
