//! What the browsing pages show, read from the record's tables: the campaigns, one campaign's experiments (filtered,
//! sorted, a page at a time), an experiment, a step, an exchange on the wire, the wire log, and the record's health.
//!
//! Every query reads the public tables and views with values bound as parameters; the filters arrive checked
//! ([`super::filters`]). Queries stay on the record's indexes (experiments by campaign, steps by experiment, commands
//! by step and by instrument) so that a page of a 10,000-experiment record costs milliseconds; nothing here scans
//! the journal, which is most of a record's bytes.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::filters::{ExchangeQuery, ExperimentQuery, SortKey};
use crate::inspect::report::data::{CampaignInfo, lab_seconds_since, read_campaign};

/// One campaign in the list of campaigns.
#[derive(Debug, Clone)]
pub struct CampaignLine {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// `running`, `finished`, `aborted` or `failed`, as the record says.
    pub status: String,
    /// Paused by an operator.
    pub paused: bool,
    /// Running in the record, but no controller holds the record: it stopped without finishing.
    pub stranded: bool,
    /// Experiments it was to run.
    pub budget: i64,
    /// Experiments succeeded.
    pub succeeded: i64,
    /// Experiments failed.
    pub failed: i64,
    /// Experiments running.
    pub running: i64,
    /// The best experiment's number and objective.
    pub best: Option<(i64, f64)>,
    /// The objective's name.
    pub objective: String,
    /// The lab file's name.
    pub lab: String,
    /// When it started (wall clock).
    pub started_at: String,
    /// Wall seconds it ran (or has run).
    pub wall_seconds: f64,
}

/// The best experiment of campaign `id` by its direction: (number, objective).
pub fn best(conn: &Connection, id: i64, maximize: bool) -> rusqlite::Result<Option<(i64, f64)>> {
    let order = if maximize { "DESC" } else { "ASC" };
    conn.query_row(
        &format!(
            "SELECT seq, objective FROM experiments WHERE campaign_id = ?1 AND objective IS NOT NULL
             ORDER BY objective {order}, seq LIMIT 1"
        ),
        [id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}

/// Every campaign of the record, newest first.
pub fn campaigns(conn: &Connection, db: &Path) -> rusqlite::Result<Vec<CampaignLine>> {
    let mut counts: HashMap<(i64, String), i64> = HashMap::new();
    {
        let mut stmt = conn.prepare("SELECT campaign_id, status, count(*) FROM experiments GROUP BY 1, 2")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            counts.insert((r.get(0)?, r.get(1)?), r.get(2)?);
        }
    }
    let controller = crate::record::in_use(db);
    let latest = crate::record::latest_campaign(conn)?;
    let mut stmt = conn.prepare(
        "SELECT id, name, status, budget, objective_output, objective_direction, lab_path, started_at, time_scale,
                finished_at
         FROM campaigns ORDER BY id DESC",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            r.get::<_, f64>(8)?,
            r.get::<_, Option<f64>>(9)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, name, status, budget, objective, direction, lab_path, started_at, scale, finished_at) = row?;
        let n = |s: &str| counts.get(&(id, s.to_owned())).copied().unwrap_or(0);
        let running = status == "running";
        let lab_now = finished_at.or_else(|| running.then(|| lab_seconds_since(&started_at, scale)).flatten());
        out.push(CampaignLine {
            id,
            paused: running && crate::inspect::status::paused(conn, id)?,
            // Only one controller holds a record at a time, and it runs the latest campaign.
            stranded: running && !(controller && latest == Some(id)),
            budget,
            succeeded: n("succeeded"),
            failed: n("failed"),
            running: n("running"),
            best: best(conn, id, direction == "maximize")?,
            objective,
            lab: Path::new(&lab_path).file_name().map_or(lab_path.clone(), |f| f.to_string_lossy().into_owned()),
            wall_seconds: lab_now.unwrap_or(0.0) / scale.max(f64::MIN_POSITIVE),
            name,
            status,
            started_at,
        });
    }
    Ok(out)
}

/// One row of the experiment table.
#[derive(Debug, Clone)]
pub struct ExperimentLine {
    /// Its number in the campaign.
    pub seq: i64,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Parameter values, in the order of [`ExperimentTable::parameters`].
    pub values: Vec<Option<f64>>,
    /// The measured objective.
    pub objective: Option<f64>,
    /// Lab seconds from the campaign's start.
    pub started_at: f64,
    /// Lab seconds from the campaign's start.
    pub finished_at: Option<f64>,
    /// How it was proposed.
    pub strategy: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A page of a campaign's experiment table.
#[derive(Debug, Clone)]
pub struct ExperimentTable {
    /// The campaign.
    pub campaign: CampaignInfo,
    /// The campaign's parameters with their units.
    pub parameters: Vec<(String, String)>,
    /// The campaign's instruments, for the filter.
    pub instruments: Vec<String>,
    /// The rows of this page.
    pub rows: Vec<ExperimentLine>,
    /// Rows that match the filters, on every page.
    pub matching: i64,
    /// Experiments in the campaign.
    pub total: i64,
}

/// The campaign's parameters and their units, from its first experiment (every experiment of a campaign has the
/// same parameters).
fn parameter_names(conn: &Connection, campaign: i64) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, unit FROM parameters WHERE experiment_id =
             (SELECT id FROM experiments WHERE campaign_id = ?1 ORDER BY seq LIMIT 1)
         ORDER BY name",
    )?;
    stmt.query_map([campaign], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// The `FROM ... WHERE ...` of the experiment table's filters, with its bound values.
fn experiment_filter(campaign: i64, q: &ExperimentQuery) -> (String, Vec<Value>) {
    let mut sql = "FROM experiments e LEFT JOIN proposals p ON p.id = e.proposal_id".to_owned();
    let mut values: Vec<Value> = Vec::new();
    if let SortKey::Parameter(name) = &q.sort {
        values.push(Value::Text(name.clone()));
        sql += &format!(" LEFT JOIN parameters sp ON sp.experiment_id = e.id AND sp.name = ?{}", values.len());
    }
    values.push(Value::Integer(campaign));
    sql += &format!(" WHERE e.campaign_id = ?{}", values.len());
    if let Some(s) = &q.status {
        values.push(Value::Text(s.clone()));
        sql += &format!(" AND e.status = ?{}", values.len());
    }
    if let Some(name) = &q.parameter {
        values.push(Value::Text(name.clone()));
        let n = values.len();
        values.push(Value::Real(q.min.unwrap_or(f64::MIN)));
        values.push(Value::Real(q.max.unwrap_or(f64::MAX)));
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM parameters f WHERE f.experiment_id = e.id AND f.name = ?{n}
                          AND f.value >= ?{} AND f.value <= ?{})",
            n + 1,
            n + 2
        );
    }
    if let Some(i) = &q.instrument {
        values.push(Value::Text(i.clone()));
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM steps s WHERE s.experiment_id = e.id AND s.instrument = ?{})",
            values.len()
        );
    }
    if let Some(text) = &q.search {
        let pattern = format!("%{}%", text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        values.push(Value::Text(text.trim_start_matches('#').to_owned()));
        let n = values.len();
        values.push(Value::Text(pattern));
        sql += &format!(
            " AND (CAST(e.seq AS TEXT) = ?{n} OR e.error LIKE ?{m} ESCAPE '\\' OR p.reason LIKE ?{m} ESCAPE '\\'
                   OR p.strategy LIKE ?{m} ESCAPE '\\')",
            m = n + 1
        );
    }
    (sql, values)
}

/// The experiments of `campaign` that match `q`, in its order, one page; `Ok(None)` if there is no such campaign.
pub fn experiments(conn: &Connection, campaign: i64, q: &ExperimentQuery) -> rusqlite::Result<Option<ExperimentTable>> {
    let Some(info) = read_campaign(conn, campaign)? else { return Ok(None) };
    let parameters = parameter_names(conn, campaign)?;
    let instruments = {
        let mut stmt = conn.prepare_cached("SELECT name FROM instruments WHERE campaign_id = ?1 ORDER BY name")?;
        stmt.query_map([campaign], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?
    };
    let total: i64 =
        conn.query_row("SELECT count(*) FROM experiments WHERE campaign_id = ?1", [campaign], |r| r.get(0))?;
    let (from, mut values) = experiment_filter(campaign, q);
    let matching: i64 =
        conn.query_row(&format!("SELECT count(*) {from}"), params_from_iter(values.iter()), |r| r.get(0))?;
    let key = match &q.sort {
        SortKey::Seq => "e.seq",
        SortKey::Status => "e.status",
        SortKey::Objective => "e.objective",
        SortKey::Started => "e.started_at",
        SortKey::Duration => "(e.finished_at - e.started_at)",
        SortKey::Parameter(_) => "sp.value",
    };
    let dir = if q.descending { "DESC" } else { "ASC" };
    values.push(Value::Integer(i64::from(q.paging.per)));
    values.push(Value::Integer(q.paging.offset()));
    let sql = format!(
        "SELECT e.id, e.seq, e.status, e.objective, e.started_at, e.finished_at, p.strategy, e.error {from}
         ORDER BY {key} {dir} NULLS LAST, e.seq {dir} LIMIT ?{} OFFSET ?{}",
        values.len() - 1,
        values.len()
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut ids = Vec::new();
    let mut rows = stmt
        .query_map(params_from_iter(values.iter()), |r| {
            ids.push(r.get::<_, i64>(0)?);
            Ok(ExperimentLine {
                seq: r.get(1)?,
                status: r.get(2)?,
                values: Vec::new(),
                objective: r.get(3)?,
                started_at: r.get(4)?,
                finished_at: r.get(5)?,
                strategy: r.get(6)?,
                error: r.get(7)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if !ids.is_empty() && !parameters.is_empty() {
        let marks = vec!["?"; ids.len()].join(",");
        let mut stmt = conn
            .prepare(&format!("SELECT experiment_id, name, value FROM parameters WHERE experiment_id IN ({marks})"))?;
        let mut found: HashMap<i64, HashMap<String, f64>> = HashMap::new();
        let mut q = stmt.query(params_from_iter(ids.iter()))?;
        while let Some(r) = q.next()? {
            found.entry(r.get(0)?).or_default().insert(r.get(1)?, r.get(2)?);
        }
        for (row, id) in rows.iter_mut().zip(&ids) {
            let values = found.get(id);
            row.values = parameters.iter().map(|(n, _)| values.and_then(|v| v.get(n)).copied()).collect();
        }
    }
    Ok(Some(ExperimentTable { campaign: info, parameters, instruments, rows, matching, total }))
}

/// The experiments of `campaign` that match `q` (every page) as CSV, in `lab export`'s columns; `Ok(None)` if there
/// is no such campaign.
pub fn experiments_csv(conn: &Connection, campaign: i64, q: &ExperimentQuery) -> rusqlite::Result<Option<String>> {
    if read_campaign(conn, campaign)?.is_none() {
        return Ok(None);
    }
    let (from, values) = experiment_filter(campaign, q);
    let mut stmt = conn.prepare(&format!("SELECT e.seq {from}"))?;
    let wanted: std::collections::HashSet<i64> =
        stmt.query_map(params_from_iter(values.iter()), |r| r.get(0))?.collect::<Result<_, _>>()?;
    let mut table = crate::record::export::read(conn, Some(campaign))?;
    table.rows.retain(|r| wanted.contains(&r.seq));
    let mut out = Vec::new();
    // Writing into memory cannot fail.
    let _ = table.write_csv(&mut out);
    Ok(Some(String::from_utf8_lossy(&out).into_owned()))
}

/// A measured output.
#[derive(Debug, Clone)]
pub struct Output {
    /// Its name.
    pub name: String,
    /// The value.
    pub value: f64,
    /// Its unit.
    pub unit: String,
    /// Lab seconds it was measured.
    pub at: f64,
    /// The step that measured it.
    pub step: i64,
}

/// How an experiment was proposed.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// The strategy (`space-filling (Sobol)`, `GP LogEI`, ...).
    pub strategy: String,
    /// The model's predicted mean of the objective.
    pub mean: Option<f64>,
    /// Its standard deviation.
    pub sd: Option<f64>,
    /// The acquisition function's value.
    pub acquisition: Option<f64>,
    /// The model, as the proposer described it.
    pub model: Option<String>,
    /// Why it was chosen.
    pub reason: String,
    /// Lab seconds it was proposed.
    pub at: f64,
}

/// One step of an experiment.
#[derive(Debug, Clone)]
pub struct StepLine {
    /// The step's record id.
    pub id: i64,
    /// Its id in the protocol.
    pub step: String,
    /// The operation.
    pub op: String,
    /// The instrument that ran it.
    pub instrument: Option<String>,
    /// Its state.
    pub status: String,
    /// Which attempt.
    pub attempt: i64,
    /// Lab seconds it became ready.
    pub ready_at: Option<f64>,
    /// Lab seconds it started.
    pub started_at: Option<f64>,
    /// Lab seconds it ended.
    pub finished_at: Option<f64>,
    /// Why it failed or is unknown.
    pub error: Option<String>,
}

/// An experiment with everything about it.
#[derive(Debug, Clone)]
pub struct ExperimentDetail {
    /// The campaign.
    pub campaign: CampaignInfo,
    /// Its number.
    pub seq: i64,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// The vessel's rack slot.
    pub vessel: i64,
    /// Lab seconds it started.
    pub started_at: f64,
    /// Lab seconds it ended.
    pub finished_at: Option<f64>,
    /// The objective.
    pub objective: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Parameters: name, value, unit.
    pub parameters: Vec<(String, f64, String)>,
    /// Measured outputs.
    pub outputs: Vec<Output>,
    /// The proposal.
    pub proposal: Option<Proposal>,
    /// Its steps, in order of start.
    pub steps: Vec<StepLine>,
    /// The number of the experiment before it.
    pub previous: Option<i64>,
    /// The number of the experiment after it.
    pub next: Option<i64>,
}

/// Experiment `seq` of `campaign`; `Ok(None)` if there is none.
pub fn experiment(conn: &Connection, campaign: i64, seq: i64) -> rusqlite::Result<Option<ExperimentDetail>> {
    let Some(info) = read_campaign(conn, campaign)? else { return Ok(None) };
    let Some((id, status, vessel, started_at, finished_at, objective, error, proposal_id)) = conn
        .query_row(
            "SELECT id, status, vessel, started_at, finished_at, objective, error, proposal_id FROM experiments
             WHERE campaign_id = ?1 AND seq = ?2",
            params![campaign, seq],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<f64>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    let parameters = {
        let mut stmt =
            conn.prepare_cached("SELECT name, value, unit FROM parameters WHERE experiment_id = ?1 ORDER BY name")?;
        stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<Vec<_>, _>>()?
    };
    let outputs = {
        let mut stmt = conn.prepare_cached(
            "SELECT name, value, unit, at, step_id FROM measurements WHERE experiment_id = ?1 ORDER BY id",
        )?;
        stmt.query_map([id], |r| {
            Ok(Output { name: r.get(0)?, value: r.get(1)?, unit: r.get(2)?, at: r.get(3)?, step: r.get(4)? })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let proposal = match proposal_id {
        None => None,
        Some(p) => conn
            .query_row(
                "SELECT strategy, predicted_mean, predicted_sd, acquisition, model, reason, at FROM proposals
                 WHERE id = ?1",
                [p],
                |r| {
                    Ok(Proposal {
                        strategy: r.get(0)?,
                        mean: r.get(1)?,
                        sd: r.get(2)?,
                        acquisition: r.get(3)?,
                        model: r.get(4)?,
                        reason: r.get(5)?,
                        at: r.get(6)?,
                    })
                },
            )
            .optional()?,
    };
    let steps = {
        let mut stmt = conn.prepare_cached(
            "SELECT id, step, op, instrument, status, attempt, ready_at, started_at, finished_at, error FROM steps
             WHERE experiment_id = ?1 ORDER BY started_at IS NULL, started_at, id",
        )?;
        stmt.query_map([id], |r| {
            Ok(StepLine {
                id: r.get(0)?,
                step: r.get(1)?,
                op: r.get(2)?,
                instrument: r.get(3)?,
                status: r.get(4)?,
                attempt: r.get(5)?,
                ready_at: r.get(6)?,
                started_at: r.get(7)?,
                finished_at: r.get(8)?,
                error: r.get(9)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    let neighbour = |sql: &str| -> rusqlite::Result<Option<i64>> {
        conn.query_row(sql, params![campaign, seq], |r| r.get(0)).optional().map(Option::flatten)
    };
    let previous = neighbour("SELECT max(seq) FROM experiments WHERE campaign_id = ?1 AND seq < ?2")?;
    let next = neighbour("SELECT min(seq) FROM experiments WHERE campaign_id = ?1 AND seq > ?2")?;
    Ok(Some(ExperimentDetail {
        campaign: info,
        seq,
        status,
        vessel,
        started_at,
        finished_at,
        objective,
        error,
        parameters,
        outputs,
        proposal,
        steps,
        previous,
        next,
    }))
}

/// A change of a step's state.
#[derive(Debug, Clone)]
pub struct StepEvent {
    /// Lab seconds.
    pub at: f64,
    /// The new state.
    pub status: String,
    /// The instrument.
    pub instrument: Option<String>,
    /// What the controller said.
    pub detail: Option<String>,
}

/// A scheduling decision about a step.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Lab seconds.
    pub at: f64,
    /// The instrument chosen.
    pub instrument: String,
    /// The deck place.
    pub place: Option<String>,
    /// Lab seconds the step waited for it.
    pub waited: f64,
    /// Why.
    pub reason: String,
}

/// One exchange on a wire, as a row of a table.
#[derive(Debug, Clone)]
pub struct ExchangeLine {
    /// Its id.
    pub id: i64,
    /// The instrument.
    pub instrument: String,
    /// The experiment and step it served, if any.
    pub step: Option<(i64, i64, String)>,
    /// Lab seconds the command was sent.
    pub sent_at: f64,
    /// Lab seconds the reply arrived.
    pub replied_at: Option<f64>,
    /// The command, printable.
    pub sent_text: String,
    /// The reply, printable.
    pub received_text: String,
    /// What the driver made of the reply.
    pub parsed: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// An operator's request, as the record keeps it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Its id.
    pub id: i64,
    /// When it was made (wall clock).
    pub made_at: String,
    /// `pause`, `resume`, `abort`, `confirm` or `clear`.
    pub action: String,
    /// The verdict, for a confirmation.
    pub verdict: Option<String>,
    /// The place, for a clearance or a confirmation.
    pub place: Option<String>,
    /// Who asked.
    pub who: String,
    /// Why.
    pub reason: String,
    /// When the controller carried it out (wall clock).
    pub handled_at: Option<String>,
}

/// A step with everything about it.
#[derive(Debug, Clone)]
pub struct StepDetail {
    /// The campaign's id.
    pub campaign: i64,
    /// The campaign's lab seconds per wall second.
    pub time_scale: f64,
    /// The experiment's number.
    pub experiment: i64,
    /// The step as a line of a table.
    pub line: StepLine,
    /// The protocol's action, bound (JSON).
    pub action: String,
    /// The task sent to the instrument, places resolved (JSON).
    pub task: Option<String>,
    /// The steps it waited for (JSON list of protocol ids).
    pub after: String,
    /// Whether it may be repeated safely.
    pub repeat_safe: bool,
    /// What it returned (JSON).
    pub outcome: Option<String>,
    /// Its changes of state.
    pub events: Vec<StepEvent>,
    /// The scheduler's decisions about it.
    pub decisions: Vec<Decision>,
    /// Every exchange on the wire it made.
    pub exchanges: Vec<ExchangeLine>,
    /// What it measured.
    pub outputs: Vec<Output>,
    /// Operators' verdicts on it.
    pub requests: Vec<Request>,
}

const EXCHANGE_COLUMNS: &str = "k.id, k.instrument, e.seq, s.id, s.step, k.sent_at, k.replied_at, k.sent_text,
    k.received_text, k.parsed, k.error";

fn exchange_line(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExchangeLine> {
    let seq: Option<i64> = r.get(2)?;
    let step: Option<i64> = r.get(3)?;
    let name: Option<String> = r.get(4)?;
    Ok(ExchangeLine {
        id: r.get(0)?,
        instrument: r.get(1)?,
        step: match (seq, step, name) {
            (Some(e), Some(s), Some(n)) => Some((e, s, n)),
            _ => None,
        },
        sent_at: r.get(5)?,
        replied_at: r.get(6)?,
        sent_text: r.get(7)?,
        received_text: r.get(8)?,
        parsed: r.get(9)?,
        error: r.get(10)?,
    })
}

/// Step `id`; `Ok(None)` if there is none.
pub fn step(conn: &Connection, id: i64) -> rusqlite::Result<Option<StepDetail>> {
    let Some(mut detail) = conn
        .query_row(
            "SELECT s.id, s.step, s.op, s.instrument, s.status, s.attempt, s.ready_at, s.started_at, s.finished_at,
                    s.error, s.action, s.task, s.after, s.repeat_safe, s.outcome, e.campaign_id, e.seq, c.time_scale
             FROM steps s JOIN experiments e ON e.id = s.experiment_id JOIN campaigns c ON c.id = e.campaign_id
             WHERE s.id = ?1",
            [id],
            |r| {
                Ok(StepDetail {
                    line: StepLine {
                        id: r.get(0)?,
                        step: r.get(1)?,
                        op: r.get(2)?,
                        instrument: r.get(3)?,
                        status: r.get(4)?,
                        attempt: r.get(5)?,
                        ready_at: r.get(6)?,
                        started_at: r.get(7)?,
                        finished_at: r.get(8)?,
                        error: r.get(9)?,
                    },
                    action: r.get(10)?,
                    task: r.get(11)?,
                    after: r.get(12)?,
                    repeat_safe: r.get::<_, i64>(13)? != 0,
                    outcome: r.get(14)?,
                    campaign: r.get(15)?,
                    experiment: r.get(16)?,
                    time_scale: r.get(17)?,
                    events: Vec::new(),
                    decisions: Vec::new(),
                    exchanges: Vec::new(),
                    outputs: Vec::new(),
                    requests: Vec::new(),
                })
            },
        )
        .optional()?
    else {
        return Ok(None);
    };
    // `step_events` and `decisions` have no index by step, so these two read their whole table (tens of
    // milliseconds on a 10,000-experiment record). An index would cost the controller's writer on every step, and a
    // step page is opened by a person, one at a time.
    detail.events = {
        let mut stmt = conn
            .prepare_cached("SELECT at, status, instrument, detail FROM step_events WHERE step_id = ?1 ORDER BY id")?;
        stmt.query_map([id], |r| {
            Ok(StepEvent { at: r.get(0)?, status: r.get(1)?, instrument: r.get(2)?, detail: r.get(3)? })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    detail.decisions = {
        let mut stmt = conn.prepare_cached(
            "SELECT at, instrument, place, waited, reason FROM decisions WHERE step_id = ?1 ORDER BY id",
        )?;
        stmt.query_map([id], |r| {
            Ok(Decision {
                at: r.get(0)?,
                instrument: r.get(1)?,
                place: r.get(2)?,
                waited: r.get(3)?,
                reason: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    detail.exchanges = {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {EXCHANGE_COLUMNS} FROM commands k LEFT JOIN steps s ON s.id = k.step_id
             LEFT JOIN experiments e ON e.id = s.experiment_id WHERE k.step_id = ?1 ORDER BY k.id"
        ))?;
        stmt.query_map([id], exchange_line)?.collect::<Result<Vec<_>, _>>()?
    };
    detail.outputs = {
        let mut stmt = conn
            .prepare_cached("SELECT name, value, unit, at, step_id FROM measurements WHERE step_id = ?1 ORDER BY id")?;
        stmt.query_map([id], |r| {
            Ok(Output { name: r.get(0)?, value: r.get(1)?, unit: r.get(2)?, at: r.get(3)?, step: r.get(4)? })
        })?
        .collect::<Result<Vec<_>, _>>()?
    };
    detail.requests = requests(conn, "step_id = ?1", id)?;
    Ok(Some(detail))
}

/// Operators' requests matching `filter` (a condition on `operator_requests` with one parameter), oldest first.
pub fn requests(conn: &Connection, filter: &str, value: i64) -> rusqlite::Result<Vec<Request>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, made_at, action, verdict, place, who, reason, handled_at FROM operator_requests
         WHERE {filter} ORDER BY id"
    ))?;
    stmt.query_map([value], |r| {
        Ok(Request {
            id: r.get(0)?,
            made_at: r.get(1)?,
            action: r.get(2)?,
            verdict: r.get(3)?,
            place: r.get(4)?,
            who: r.get(5)?,
            reason: r.get(6)?,
            handled_at: r.get(7)?,
        })
    })?
    .collect()
}

/// One exchange, with its bytes.
#[derive(Debug, Clone)]
pub struct ExchangeDetail {
    /// The campaign's id.
    pub campaign: i64,
    /// Lab seconds per wall second, to give the round trip in wall time.
    pub time_scale: f64,
    /// The exchange as a line of a table.
    pub line: ExchangeLine,
    /// The bytes sent.
    pub sent: Vec<u8>,
    /// The bytes received.
    pub received: Vec<u8>,
    /// The id of the same instrument's exchange before it.
    pub previous: Option<i64>,
    /// The id of the same instrument's exchange after it.
    pub next: Option<i64>,
}

/// Exchange `id`; `Ok(None)` if there is none.
pub fn exchange(conn: &Connection, id: i64) -> rusqlite::Result<Option<ExchangeDetail>> {
    let Some((line, campaign, time_scale, sent, received)) = conn
        .query_row(
            &format!(
                "SELECT {EXCHANGE_COLUMNS}, k.campaign_id, c.time_scale, k.sent, k.received
                 FROM commands k LEFT JOIN steps s ON s.id = k.step_id
                 LEFT JOIN experiments e ON e.id = s.experiment_id JOIN campaigns c ON c.id = k.campaign_id
                 WHERE k.id = ?1"
            ),
            [id],
            |r| Ok((exchange_line(r)?, r.get::<_, i64>(11)?, r.get::<_, f64>(12)?, r.get(13)?, r.get(14)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let neighbour = |sql: &str| -> rusqlite::Result<Option<i64>> {
        conn.query_row(sql, params![campaign, line.instrument, line.sent_at, id], |r| r.get(0)).optional()
    };
    let previous = neighbour(
        "SELECT id FROM commands WHERE campaign_id = ?1 AND instrument = ?2 AND (sent_at, id) < (?3, ?4)
         ORDER BY sent_at DESC, id DESC LIMIT 1",
    )?;
    let next = neighbour(
        "SELECT id FROM commands WHERE campaign_id = ?1 AND instrument = ?2 AND (sent_at, id) > (?3, ?4)
         ORDER BY sent_at, id LIMIT 1",
    )?;
    Ok(Some(ExchangeDetail { campaign, time_scale, line, sent, received, previous, next }))
}

/// A page of a campaign's wire log.
#[derive(Debug, Clone)]
pub struct WireLog {
    /// The campaign.
    pub campaign: CampaignInfo,
    /// Its instruments, for the filter.
    pub instruments: Vec<String>,
    /// This page's exchanges.
    pub rows: Vec<ExchangeLine>,
    /// Exchanges that match the filters.
    pub matching: i64,
}

/// The exchanges of `campaign` that match `q`, in the order they were sent, one page; `Ok(None)` if there is no
/// such campaign.
pub fn exchanges(conn: &Connection, campaign: i64, q: &ExchangeQuery) -> rusqlite::Result<Option<WireLog>> {
    let Some(info) = read_campaign(conn, campaign)? else { return Ok(None) };
    let instruments = {
        let mut stmt = conn.prepare_cached("SELECT name FROM instruments WHERE campaign_id = ?1 ORDER BY name")?;
        stmt.query_map([campaign], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?
    };
    let mut filter = "k.campaign_id = ?1".to_owned();
    let mut values = vec![Value::Integer(campaign)];
    if let Some(i) = &q.instrument {
        values.push(Value::Text(i.clone()));
        filter += " AND k.instrument = ?2";
    }
    if q.errors_only {
        filter += " AND k.error IS NOT NULL";
    }
    let matching: i64 = conn.query_row(
        &format!("SELECT count(*) FROM commands k WHERE {filter}"),
        params_from_iter(values.iter()),
        |r| r.get(0),
    )?;
    let n = values.len();
    values.push(Value::Integer(i64::from(q.paging.per)));
    values.push(Value::Integer(q.paging.offset()));
    let mut stmt = conn.prepare(&format!(
        "SELECT {EXCHANGE_COLUMNS} FROM commands k LEFT JOIN steps s ON s.id = k.step_id
         LEFT JOIN experiments e ON e.id = s.experiment_id WHERE {filter}
         ORDER BY k.sent_at, k.id LIMIT ?{} OFFSET ?{}",
        n + 1,
        n + 2
    ))?;
    let rows = stmt.query_map(params_from_iter(values.iter()), exchange_line)?.collect::<Result<Vec<_>, _>>()?;
    Ok(Some(WireLog { campaign: info, instruments, rows, matching }))
}

/// A checkpoint of the hash chain.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// Its id.
    pub id: i64,
    /// The journal row it vouches for.
    pub journal_id: i64,
    /// The chain's hash at that row.
    pub hash: String,
    /// When (wall clock).
    pub made_at: String,
    /// Why it was made.
    pub reason: String,
    /// The public key that signed it, if any.
    pub public_key: Option<String>,
    /// The workcell that made it, on a fleet's hub (none in one `lab.db`).
    pub workcell: Option<String>,
}

/// What the health page shows without verifying.
#[derive(Debug, Clone)]
pub struct Facts {
    /// Bytes on disk (the database and its write-ahead log).
    pub bytes: u64,
    /// The file's schema version.
    pub schema: i64,
    /// The last journal row's id (the number of rows, if none was deleted).
    pub journal_rows: i64,
    /// The head of the hash chain.
    pub head: Option<String>,
    /// Campaigns in the record.
    pub campaigns: i64,
    /// Whether a controller holds the record now.
    pub controller: bool,
    /// Checkpoints in all.
    pub checkpoint_count: i64,
    /// The latest checkpoints, newest first.
    pub checkpoints: Vec<Checkpoint>,
}

/// The checkpoints the health page lists.
const CHECKPOINTS_SHOWN: i64 = 50;

/// The record's facts.
pub fn facts(conn: &Connection, db: &Path) -> rusqlite::Result<Facts> {
    let bytes = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    let signed =
        conn.query_row("SELECT count(*) FROM pragma_table_info('checkpoints') WHERE name = 'public_key'", [], |r| {
            r.get::<_, i64>(0)
        })? > 0;
    let mut stmt = conn.prepare(&format!(
        "SELECT id, journal_id, hash, made_at, reason, {} FROM checkpoints ORDER BY id DESC LIMIT {CHECKPOINTS_SHOWN}",
        if signed { "public_key" } else { "NULL" }
    ))?;
    let checkpoints = stmt
        .query_map([], |r| {
            Ok(Checkpoint {
                id: r.get(0)?,
                journal_id: r.get(1)?,
                hash: r.get(2)?,
                made_at: r.get(3)?,
                reason: r.get(4)?,
                public_key: r.get(5)?,
                workcell: None,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Facts {
        bytes,
        schema: conn.query_row("PRAGMA user_version", [], |r| r.get(0))?,
        journal_rows: conn.query_row("SELECT coalesce(max(id), 0) FROM journal", [], |r| r.get(0))?,
        head: conn.query_row("SELECT hash FROM journal ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).optional()?,
        campaigns: conn.query_row("SELECT count(*) FROM campaigns", [], |r| r.get(0))?,
        controller: crate::record::in_use(db),
        checkpoint_count: conn.query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))?,
        checkpoints,
    })
}
