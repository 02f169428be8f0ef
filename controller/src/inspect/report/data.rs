//! What a report shows, read from `lab.db` with plain read-only queries.
//!
//! Everything comes from the public views and tables (`campaigns`, `experiment_view`, `proposals`, `step_timeline`,
//! `instruments`, `journal`), never from the writer's internals, so a report can be made from another process while
//! a campaign runs and from any record this version of `lab` can read.

use std::collections::BTreeMap;
use std::time::SystemTime;

use rusqlite::{Connection, OptionalExtension};

/// The campaign's row, as the report needs it.
#[derive(Debug, Clone)]
pub struct CampaignInfo {
    /// Its id in the record.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// `running`, `finished`, `aborted` or `failed`.
    pub status: String,
    /// The wall-clock time it started (RFC 3339).
    pub started_at: String,
    /// Lab seconds per wall second.
    pub time_scale: f64,
    /// Lab seconds from its start to its end, if it ended.
    pub finished_at: Option<f64>,
    /// The number of experiments it was to run.
    pub budget: i64,
    /// How many experiments it ran at once, at most.
    pub in_flight: i64,
    /// The proposer's seed.
    pub seed: i64,
    /// The version of `lab` that ran it.
    pub software_version: String,
    /// The output it optimised.
    pub objective: String,
    /// `maximize` or `minimize`.
    pub direction: String,
    /// The campaign, protocol and lab files, each with its SHA-256.
    pub files: Vec<(&'static str, String, String)>,
    /// Why it stopped, if the controller said.
    pub note: Option<String>,
}

impl CampaignInfo {
    /// Whether larger values of the objective are better.
    pub fn maximize(&self) -> bool {
        self.direction == "maximize"
    }
}

/// One experiment, with its proposal's prediction.
#[derive(Debug, Clone)]
pub struct ExperimentRow {
    /// Its number in the campaign, from 1.
    pub seq: i64,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Parameter values, by name, in each parameter's unit.
    pub values: BTreeMap<String, f64>,
    /// The measured objective.
    pub objective: Option<f64>,
    /// The proposer's predicted mean and standard deviation of the objective, for model-based proposals.
    pub predicted: Option<(f64, f64)>,
    /// How the proposal was chosen (`space-filling (Sobol)`, `GP LogEI`, ...).
    pub strategy: Option<String>,
    /// Lab seconds from the campaign's start.
    pub started_at: f64,
    /// Lab seconds from the campaign's start.
    pub finished_at: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One step's time on an instrument.
#[derive(Debug, Clone)]
pub struct StepSpan {
    /// The instrument that ran it.
    pub instrument: String,
    /// The operation (`Transfer`, `Heat`, ...).
    pub op: String,
    /// The experiment's number.
    pub experiment: i64,
    /// Lab seconds it started.
    pub started_at: f64,
    /// Lab seconds it ended; none while it runs.
    pub finished_at: Option<f64>,
    /// The step's status.
    pub status: String,
}

/// An instrument of the campaign's lab.
#[derive(Debug, Clone)]
pub struct InstrumentRow {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// `ready` or `offline`.
    pub status: String,
}

/// Everything a report shows about one campaign.
#[derive(Debug, Clone)]
pub struct ReportData {
    /// The campaign.
    pub campaign: CampaignInfo,
    /// Every parameter recorded, with its unit, sorted by name.
    pub parameters: Vec<(String, String)>,
    /// The objective's unit, if any measurement recorded one.
    pub objective_unit: String,
    /// Every experiment, in order.
    pub experiments: Vec<ExperimentRow>,
    /// Every step that started, in order of start.
    pub steps: Vec<StepSpan>,
    /// The lab's instruments, in name order.
    pub instruments: Vec<InstrumentRow>,
    /// The head of the record's hash chain (`lab verify` checks the record against it).
    pub head: Option<String>,
    /// Lab seconds from the campaign's start to its end, or to now while it runs.
    pub lab_now: f64,
    /// Expected against real step durations, per instrument and operation.
    pub durations: Vec<super::durations::DurationRow>,
}

impl StepSpan {
    /// A span from a row of `instrument, op, experiment, started_at, finished_at, status`, the columns every query
    /// of spans selects in that order.
    pub fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StepSpan> {
        Ok(StepSpan {
            instrument: r.get(0)?,
            op: r.get(1)?,
            experiment: r.get(2)?,
            started_at: r.get(3)?,
            finished_at: r.get(4)?,
            status: r.get(5)?,
        })
    }
}

/// The instruments of campaign `id`, by name. The statement is cached, since the live page asks on every frame.
pub fn instruments(conn: &Connection, id: i64) -> rusqlite::Result<Vec<InstrumentRow>> {
    let mut stmt =
        conn.prepare_cached("SELECT name, kind, status FROM instruments WHERE campaign_id = ?1 ORDER BY name")?;
    stmt.query_map([id], |r| Ok(InstrumentRow { name: r.get(0)?, kind: r.get(1)?, status: r.get(2)? }))?.collect()
}

impl ReportData {
    /// Reads a campaign (the latest if `campaign` is `None`); `Ok(None)` if the record holds no such campaign.
    pub fn read(conn: &Connection, campaign: Option<i64>) -> rusqlite::Result<Option<ReportData>> {
        let id = match campaign {
            Some(id) => id,
            None => match crate::record::latest_campaign(conn)? {
                Some(id) => id,
                None => return Ok(None),
            },
        };
        let Some(campaign) = read_campaign(conn, id)? else { return Ok(None) };
        let parameters = {
            let mut stmt = conn.prepare(
                "SELECT p.name, min(p.unit) FROM parameters p JOIN experiments e ON e.id = p.experiment_id
                 WHERE e.campaign_id = ?1 GROUP BY p.name ORDER BY p.name",
            )?;
            stmt.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<(String, String)>, _>>()?
        };
        let objective_unit: String = conn
            .query_row(
                "SELECT m.unit FROM measurements m JOIN experiments e ON e.id = m.experiment_id
                 WHERE e.campaign_id = ?1 AND m.name = ?2 LIMIT 1",
                rusqlite::params![id, campaign.objective],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default();
        let experiments = {
            let mut stmt = conn.prepare(
                "SELECT v.seq, v.status, v.parameters, v.objective, p.predicted_mean, p.predicted_sd, p.strategy,
                        v.started_at, v.finished_at, v.error
                 FROM experiment_view v LEFT JOIN proposals p ON p.id = v.proposal_id
                 WHERE v.campaign_id = ?1 ORDER BY v.seq",
            )?;
            stmt.query_map([id], |r| {
                let params: Option<String> = r.get(2)?;
                let values = params
                    .as_deref()
                    .and_then(|j| serde_json::from_str::<BTreeMap<String, serde_json::Value>>(j).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|(k, v)| v.as_f64().map(|v| (k, v)))
                    .collect();
                let mean: Option<f64> = r.get(4)?;
                let sd: Option<f64> = r.get(5)?;
                Ok(ExperimentRow {
                    seq: r.get(0)?,
                    status: r.get(1)?,
                    values,
                    objective: r.get(3)?,
                    predicted: mean.zip(sd.or(Some(0.0))),
                    strategy: r.get(6)?,
                    started_at: r.get(7)?,
                    finished_at: r.get(8)?,
                    error: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let steps = {
            let mut stmt = conn.prepare(
                "SELECT instrument, op, experiment, started_at, finished_at, status FROM step_timeline
                 WHERE campaign_id = ?1 AND instrument IS NOT NULL AND started_at IS NOT NULL
                 ORDER BY started_at, step_id",
            )?;
            stmt.query_map([id], StepSpan::from_row)?.collect::<Result<Vec<_>, _>>()?
        };
        let instruments = instruments(conn, id)?;
        let head = conn.query_row("SELECT hash FROM journal ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).optional()?;
        let last_recorded = steps
            .iter()
            .flat_map(|s| [Some(s.started_at), s.finished_at])
            .chain(experiments.iter().flat_map(|e| [Some(e.started_at), e.finished_at]))
            .flatten()
            .fold(0.0_f64, f64::max);
        let lab_now = campaign
            .finished_at
            .or_else(|| {
                (campaign.status == "running")
                    .then(|| lab_seconds_since(&campaign.started_at, campaign.time_scale))
                    .flatten()
            })
            .unwrap_or(last_recorded)
            .max(last_recorded);
        let durations = super::durations::expected_against_real(conn, id)?;
        Ok(Some(ReportData {
            campaign,
            parameters,
            objective_unit,
            experiments,
            steps,
            instruments,
            head,
            lab_now,
            durations,
        }))
    }

    /// The experiments with a measured objective, as (number, value).
    pub fn measured(&self) -> Vec<(i64, f64)> {
        self.experiments.iter().filter_map(|e| e.objective.filter(|v| v.is_finite()).map(|v| (e.seq, v))).collect()
    }

    /// The best experiment so far, by the campaign's direction.
    pub fn best(&self) -> Option<&ExperimentRow> {
        let better = |a: f64, b: f64| if self.campaign.maximize() { a > b } else { a < b };
        self.experiments.iter().filter(|e| e.objective.is_some_and(f64::is_finite)).fold(None, |best, e| match best {
            Some(b) if !better(e.objective.unwrap_or(f64::NAN), b.objective.unwrap_or(f64::NAN)) => Some(b),
            _ => Some(e),
        })
    }

    /// The best objective up to and including each measured experiment, as (number, best so far).
    pub fn best_so_far(&self) -> Vec<(i64, f64)> {
        let mut best: Option<f64> = None;
        self.measured()
            .into_iter()
            .map(|(seq, v)| {
                let b = match best {
                    Some(b) if self.campaign.maximize() => b.max(v),
                    Some(b) => b.min(v),
                    None => v,
                };
                best = Some(b);
                (seq, b)
            })
            .collect()
    }

    /// The parameters that took more than one value, with their units: the ones worth plotting.
    pub fn varied(&self) -> Vec<(String, String)> {
        self.parameters
            .iter()
            .filter(|(name, _)| {
                let mut values = self.experiments.iter().filter_map(|e| e.values.get(name));
                let first = values.next();
                values.any(|v| Some(v) != first)
            })
            .cloned()
            .collect()
    }

    /// Wall seconds the campaign took (or has taken), from its lab time and time scale.
    pub fn wall_seconds(&self) -> f64 {
        self.lab_now / self.campaign.time_scale.max(f64::MIN_POSITIVE)
    }

    /// Experiments by status: (succeeded, failed, running).
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s: &str| self.experiments.iter().filter(|e| e.status == s).count();
        (n("succeeded"), n("failed"), n("running"))
    }

    /// The objective's name with its unit, for axis labels.
    pub fn objective_label(&self) -> String {
        with_unit(&self.campaign.objective, &self.objective_unit)
    }
}

/// A name with its unit in brackets, or the name alone for a dimensionless quantity.
pub fn with_unit(name: &str, unit: &str) -> String {
    if unit.is_empty() || unit == "1" { name.to_owned() } else { format!("{name} ({unit})") }
}

/// Lab seconds since a campaign started at `started_at` (RFC 3339), running `scale` times faster than the wall.
pub fn lab_seconds_since(started_at: &str, scale: f64) -> Option<f64> {
    let start = humantime::parse_rfc3339_weak(started_at).ok()?;
    let wall = SystemTime::now().duration_since(start).ok()?.as_secs_f64();
    Some(wall * scale)
}

/// Reads campaign `id`'s row; `Ok(None)` if the record has no such campaign.
pub fn read_campaign(conn: &Connection, id: i64) -> rusqlite::Result<Option<CampaignInfo>> {
    conn.query_row(
        "SELECT id, name, status, started_at, time_scale, finished_at, budget, in_flight, seed, software_version,
                objective_output, objective_direction, campaign_path, campaign_sha256, protocol_path, protocol_sha256,
                lab_path, lab_sha256, note
         FROM campaigns WHERE id = ?1",
        [id],
        |r| {
            Ok(CampaignInfo {
                id: r.get(0)?,
                name: r.get(1)?,
                status: r.get(2)?,
                started_at: r.get(3)?,
                time_scale: r.get(4)?,
                finished_at: r.get(5)?,
                budget: r.get(6)?,
                in_flight: r.get(7)?,
                seed: r.get(8)?,
                software_version: r.get(9)?,
                objective: r.get(10)?,
                direction: r.get(11)?,
                files: vec![
                    ("campaign", r.get(12)?, r.get(13)?),
                    ("protocol", r.get(14)?, r.get(15)?),
                    ("lab", r.get(16)?, r.get(17)?),
                ],
                note: r.get(18)?,
            })
        },
    )
    .optional()
}
