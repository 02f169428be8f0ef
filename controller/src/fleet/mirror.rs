//! A fleet campaign as the hub holds it, written into a file shaped like `lab.db`, so that the code that reads one
//! record (`lab report`, `lab export`, `lab serve`) reads every workcell's part of a fleet campaign as one campaign.
//!
//! [`read_campaign`] reads a campaign's rows from the hub's `record` schema in one go; [`write_campaign`] writes
//! them under one campaign id of a SQLite record. Experiments are numbered by the fleet's proposal number (`seq` of
//! `fleet.proposals`, `fleet_seq` in the hub's views), so a number means the same proposal on the hub, in a report
//! and on a page, and does not move as more results arrive. Instruments are named `workcell/instrument`. A row's id
//! in the file is its workcell's number (in the order the workcells registered) times 2^40 plus its id in that
//! workcell's `lab.db`: stable from one reading to the next, so a link to an exchange keeps pointing at it while a
//! served copy is read again. Each workcell's lab times count from its own start of the campaign; they are moved to
//! count from the first workcell's start (at the campaign's time scale), so one Gantt chart shows every workcell.

use std::collections::HashMap;

use tokio_postgres::{Client, Row};

use super::hub::{FleetError, Hub};

/// A fleet campaign's rows as the hub holds them.
pub struct HubCampaign {
    head: Row,
    experiments: Vec<Row>,
    parameters: Vec<Row>,
    measurements: Vec<Row>,
    proposals: Vec<Row>,
    steps: Vec<Row>,
    step_events: Vec<Row>,
    instruments: Vec<Row>,
    events: Vec<Row>,
    commands: Vec<Row>,
    /// The scheduler's decisions (where and when each step was placed, and why), read with the exchanges.
    decisions: Vec<Row>,
    /// Each workcell's number, in the order the workcells registered.
    workcells: HashMap<String, i64>,
    /// Each workcell's start of the campaign (wall clock, RFC 3339).
    starts: HashMap<String, String>,
}

impl HubCampaign {
    /// How many experiments it holds (every workcell's).
    pub fn experiments(&self) -> usize {
        self.experiments.len()
    }
}

/// Every fleet campaign's name, in the order they were published.
pub async fn campaign_names(hub: &Hub, client: &Client) -> Result<Vec<String>, FleetError> {
    let rows = hub.bounded(client.query("SELECT name FROM fleet.campaigns ORDER BY published_at, name", &[])).await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Reads fleet campaign `campaign` from the hub: every workcell's experiments, steps, parameters, measurements,
/// proposals, instruments and events, and with `exchanges` every command on the wire and every scheduling decision
/// (what a drill-down to a step shows). `None` when no workcell has shipped any of it yet.
pub async fn read_campaign(
    hub: &Hub,
    client: &Client,
    campaign: &str,
    exchanges: bool,
) -> Result<Option<HubCampaign>, FleetError> {
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&campaign];
    let q = |sql: &'static str| hub.bounded(client.query(sql, &params));
    let head = q("SELECT c.status, c.budget, c.in_flight, r.started_at, r.time_scale, r.software_version, r.seed,
                         r.objective_output, r.objective_direction, r.campaign_path, r.campaign_text, r.campaign_sha256,
                         r.protocol_path, r.protocol_text, r.protocol_sha256, r.lab_path, r.lab_text, r.lab_sha256
                  FROM fleet.campaigns c JOIN record.campaigns r ON r.name = c.name
                  WHERE c.name = $1 ORDER BY r.started_at LIMIT 1")
    .await?;
    let Some(head) = head.into_iter().next() else { return Ok(None) };
    let starts = q("SELECT workcell, min(started_at) FROM record.campaigns WHERE name = $1 GROUP BY workcell")
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // The joins below name the campaign's rows of every workcell: `k` is each workcell's own campaign of that name.
    let experiments = q("SELECT e.workcell, e.id, e.proposal_id, e.params, e.vessel, e.status, e.started_at,
                                e.finished_at, e.objective, e.error, l.seq
                         FROM record.experiments e
                         JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id
                         LEFT JOIN fleet.links l ON l.workcell = e.workcell AND l.local_experiment = e.id
                         WHERE k.name = $1 ORDER BY l.seq NULLS LAST, e.started_at, e.workcell, e.id")
    .await?;
    let parameters = q("SELECT p.workcell, p.experiment_id, p.name, p.value, p.unit FROM record.parameters p
                        JOIN record.experiments e ON e.workcell = p.workcell AND e.id = p.experiment_id
                        JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id
                        WHERE k.name = $1")
    .await?;
    let measurements = q("SELECT m.workcell, m.id, m.experiment_id, m.step_id, m.name, m.value, m.unit, m.at
                          FROM record.measurements m
                          JOIN record.experiments e ON e.workcell = m.workcell AND e.id = m.experiment_id
                          JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id
                          WHERE k.name = $1")
    .await?;
    let proposals = q("SELECT p.workcell, p.id, p.at, p.strategy, p.params, p.predicted_mean, p.predicted_sd,
                              p.acquisition, p.model, p.reason FROM record.proposals p
                       JOIN record.campaigns k ON k.workcell = p.workcell AND k.id = p.campaign_id WHERE k.name = $1")
    .await?;
    let steps = q("SELECT s.workcell, s.id, s.experiment_id, s.step, s.op, s.action, s.after, s.repeat_safe, s.status,
                          s.instrument, s.ready_at, s.started_at, s.finished_at, s.outcome, s.error
                   FROM record.steps s JOIN record.experiments e ON e.workcell = s.workcell AND e.id = s.experiment_id
                   JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id WHERE k.name = $1")
    .await?;
    let step_events = q("SELECT v.workcell, v.id, v.step_id, v.at, v.status, v.instrument, v.detail
                         FROM record.step_events v
                         JOIN record.steps s ON s.workcell = v.workcell AND s.id = v.step_id
                         JOIN record.experiments e ON e.workcell = s.workcell AND e.id = s.experiment_id
                         JOIN record.campaigns k ON k.workcell = e.workcell AND k.id = e.campaign_id
                         WHERE k.name = $1")
    .await?;
    let instruments = q("SELECT DISTINCT ON (i.workcell, i.name) i.workcell, i.name, i.kind, i.driver, i.port, i.line,
                                i.status FROM record.instruments i
                         JOIN record.campaigns k ON k.workcell = i.workcell AND k.id = i.campaign_id WHERE k.name = $1
                         ORDER BY i.workcell, i.name, i.campaign_id DESC")
    .await?;
    let events = q("SELECT v.workcell, v.id, v.at, v.level, v.instrument, v.message FROM record.events v
                    JOIN record.campaigns k ON k.workcell = v.workcell AND k.id = v.campaign_id WHERE k.name = $1")
    .await?;
    let commands = if exchanges {
        q("SELECT m.workcell, m.id, m.instrument, m.step_id, m.sent_at, m.sent, m.sent_text, m.replied_at, m.received,
                  m.received_text, m.parsed, m.error FROM record.commands m
           JOIN record.campaigns k ON k.workcell = m.workcell AND k.id = m.campaign_id WHERE k.name = $1")
        .await?
    } else {
        Vec::new()
    };
    let decisions = if exchanges {
        q("SELECT d.workcell, d.id, d.at, d.step_id, d.instrument, d.place, d.waited, d.reason FROM record.decisions d
           JOIN record.campaigns k ON k.workcell = d.workcell AND k.id = d.campaign_id WHERE k.name = $1")
        .await?
    } else {
        Vec::new()
    };
    let workcells = hub
        .bounded(client.query("SELECT name FROM fleet.workcells ORDER BY registered_at, name", &[]))
        .await?
        .iter()
        .enumerate()
        .map(|(i, r)| (r.get::<_, String>(0), i as i64 + 1))
        .collect();
    Ok(Some(HubCampaign {
        head,
        experiments,
        parameters,
        measurements,
        proposals,
        steps,
        step_events,
        instruments,
        events,
        commands,
        decisions,
        workcells,
        starts,
    }))
}

/// Writes `data` (fleet campaign `name`, read from the hub `hub`) into the record behind `tx` as campaign `id`.
pub fn write_campaign(
    tx: &rusqlite::Connection,
    id: i64,
    name: &str,
    hub: &str,
    data: &HubCampaign,
) -> rusqlite::Result<()> {
    // A row's id in the file: its workcell's number in the top bits, its own id below (see the module's docs).
    let key = |wc: &str, local: i64| data.workcells.get(wc).map_or(local, |n| (n << 40) | local);
    let h = &data.head;
    let status: String = h.get(0);
    // How far each workcell's start of the campaign lies after the first one's, in lab seconds.
    let (first, scale): (String, f64) = (h.get(3), h.get(4));
    let wall = |t: &str| humantime::parse_rfc3339(t).ok();
    let offsets: HashMap<&str, f64> = data
        .starts
        .iter()
        .map(|(wc, t)| {
            let lag = wall(t).zip(wall(&first)).and_then(|(a, b)| a.duration_since(b).ok());
            (wc.as_str(), lag.map_or(0.0, |d| d.as_secs_f64() * scale))
        })
        .collect();
    let shift = |wc: &str, t: f64| t + offsets.get(wc).copied().unwrap_or(0.0);
    let shift_opt = |wc: &str, t: Option<f64>| t.map(|t| shift(wc, t));
    let finished = data
        .experiments
        .iter()
        .filter_map(|e| shift_opt(&e.get::<_, String>(0), e.get(7)))
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    tx.execute(
        "INSERT INTO campaigns (id, name, started_at, time_scale, status, finished_at, software_version, seed,
             objective_output, objective_direction, budget, in_flight, campaign_path, campaign_text, campaign_sha256,
             protocol_path, protocol_text, protocol_sha256, lab_path, lab_text, lab_sha256, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
        rusqlite::params![
            id,
            name,
            h.get::<_, String>(3),
            h.get::<_, f64>(4),
            if status == "finished" { "finished" } else { "running" },
            finished,
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
            format!("fleet campaign {name} as the hub at {hub} holds it: every workcell's experiments"),
        ],
    )?;
    for p in &data.proposals {
        let wc: String = p.get(0);
        tx.execute(
            "INSERT INTO proposals (id, campaign_id, at, strategy, params, predicted_mean, predicted_sd, acquisition,
                 model, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                key(&wc, p.get(1)),
                id,
                shift(&wc, p.get(2)),
                p.get::<_, String>(3),
                p.get::<_, String>(4),
                p.get::<_, Option<f64>>(5),
                p.get::<_, Option<f64>>(6),
                p.get::<_, Option<f64>>(7),
                p.get::<_, Option<String>>(8),
                format!("{} (workcell {wc})", p.get::<_, String>(9)),
            ],
        )?;
    }
    // The fleet's number where the experiment has one and no other took it (a retired workcell's late result may
    // repeat one); the rest after the budget, in the order read.
    let budget = i64::from(h.get::<_, i32>(1));
    let mut taken = std::collections::HashSet::new();
    let mut extra = budget.max(0);
    for e in &data.experiments {
        let wc: String = e.get(0);
        let seq = match e.get::<_, Option<i64>>(10) {
            Some(s) if taken.insert(s) => s,
            _ => {
                extra += 1;
                extra
            }
        };
        tx.execute(
            "INSERT INTO experiments (id, campaign_id, seq, proposal_id, params, vessel, status, started_at, finished_at,
                 objective, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            rusqlite::params![
                key(&wc, e.get(1)),
                id,
                seq,
                e.get::<_, Option<i64>>(2).map(|p| key(&wc, p)),
                e.get::<_, String>(3),
                e.get::<_, i64>(4),
                e.get::<_, String>(5),
                shift(&wc, e.get(6)),
                shift_opt(&wc, e.get(7)),
                e.get::<_, Option<f64>>(8),
                e.get::<_, Option<String>>(9),
            ],
        )?;
    }
    for p in &data.parameters {
        let wc: String = p.get(0);
        tx.execute(
            "INSERT INTO parameters (experiment_id, name, value, unit) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![key(&wc, p.get(1)), p.get::<_, String>(2), p.get::<_, f64>(3), p.get::<_, String>(4)],
        )?;
    }
    let named = |wc: &str, n: Option<String>| n.map(|n| format!("{wc}/{n}"));
    for s in &data.steps {
        let wc: String = s.get(0);
        tx.execute(
            "INSERT INTO steps (id, experiment_id, step, op, action, after, repeat_safe, status, instrument, ready_at,
                 started_at, finished_at, outcome, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            rusqlite::params![
                key(&wc, s.get(1)),
                key(&wc, s.get(2)),
                s.get::<_, String>(3),
                s.get::<_, String>(4),
                s.get::<_, String>(5),
                s.get::<_, String>(6),
                s.get::<_, i64>(7),
                s.get::<_, String>(8),
                named(&wc, s.get(9)),
                shift_opt(&wc, s.get(10)),
                shift_opt(&wc, s.get(11)),
                shift_opt(&wc, s.get(12)),
                s.get::<_, Option<String>>(13),
                s.get::<_, Option<String>>(14),
            ],
        )?;
    }
    for v in &data.step_events {
        let wc: String = v.get(0);
        tx.execute(
            "INSERT INTO step_events (id, step_id, at, status, instrument, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                key(&wc, v.get(1)),
                key(&wc, v.get(2)),
                shift(&wc, v.get(3)),
                v.get::<_, String>(4),
                named(&wc, v.get(5)),
                v.get::<_, Option<String>>(6),
            ],
        )?;
    }
    for m in &data.measurements {
        let wc: String = m.get(0);
        tx.execute(
            "INSERT INTO measurements (id, experiment_id, step_id, name, value, unit, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                key(&wc, m.get(1)),
                key(&wc, m.get(2)),
                key(&wc, m.get(3)),
                m.get::<_, String>(4),
                m.get::<_, f64>(5),
                m.get::<_, String>(6),
                shift(&wc, m.get(7)),
            ],
        )?;
    }
    for i in &data.instruments {
        let wc: String = i.get(0);
        tx.execute(
            "INSERT INTO instruments (campaign_id, name, kind, driver, port, line, status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            rusqlite::params![
                id,
                format!("{wc}/{}", i.get::<_, String>(1)),
                i.get::<_, String>(2),
                i.get::<_, String>(3),
                i.get::<_, String>(4),
                i.get::<_, String>(5),
                i.get::<_, String>(6),
            ],
        )?;
    }
    for v in &data.events {
        let wc: String = v.get(0);
        tx.execute(
            "INSERT INTO events (id, campaign_id, at, level, instrument, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![
                key(&wc, v.get(1)),
                id,
                shift(&wc, v.get(2)),
                v.get::<_, String>(3),
                named(&wc, v.get(4)),
                format!("{wc}: {}", v.get::<_, String>(5)),
            ],
        )?;
    }
    for d in &data.decisions {
        let wc: String = d.get(0);
        tx.execute(
            "INSERT INTO decisions (id, campaign_id, at, step_id, instrument, place, waited, reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                key(&wc, d.get(1)),
                id,
                shift(&wc, d.get(2)),
                key(&wc, d.get(3)),
                format!("{wc}/{}", d.get::<_, String>(4)),
                d.get::<_, Option<String>>(5),
                d.get::<_, f64>(6),
                d.get::<_, String>(7),
            ],
        )?;
    }
    for m in &data.commands {
        let wc: String = m.get(0);
        tx.execute(
            "INSERT INTO commands (id, campaign_id, instrument, step_id, sent_at, sent, sent_text, replied_at, received,
                 received_text, parsed, error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            rusqlite::params![
                key(&wc, m.get(1)),
                id,
                format!("{wc}/{}", m.get::<_, String>(2)),
                m.get::<_, Option<i64>>(3).map(|s| key(&wc, s)),
                shift(&wc, m.get(4)),
                m.get::<_, Vec<u8>>(5),
                m.get::<_, String>(6),
                shift_opt(&wc, m.get(7)),
                m.get::<_, Vec<u8>>(8),
                m.get::<_, String>(9),
                m.get::<_, Option<String>>(10),
                m.get::<_, Option<String>>(11),
            ],
        )?;
    }
    Ok(())
}
