//! `lab plan`: the schedule of a protocol or a campaign in a lab, estimated before anything moves.
//!
//! It runs the scheduler itself (the same world and policy as a real run) in simulated time on the lab's expected
//! durations, and reports the estimated makespan, each instrument's utilisation, and the lower bounds: the longest
//! experiment alone, and the busiest instrument's total work.

pub mod bench;
pub mod simulate;
pub mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use devices::Lab;
use experiments::{Observation, Outcome, Point, Proposal, Proposer};
use protocols::{Diagnostics, Protocol};

use crate::load::{LoadError, load_campaign_inputs, read_source};
use crate::plan::simulate::{Noise, Report, Setup};
use crate::run::CampaignParts;
use crate::schedule::resources::Policy;

/// Why a plan could not be made.
#[derive(Debug)]
pub enum PlanError {
    /// The files have problems.
    Invalid(Diagnostics),
    /// Something else (a missing parameter value, a file that cannot be read).
    Other(String),
}

impl From<LoadError> for PlanError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Invalid(d) => PlanError::Invalid(d),
            e => PlanError::Other(e.to_string()),
        }
    }
}

/// A plan's figures.
#[derive(Debug, Clone)]
pub struct PlanResult {
    /// What was planned.
    pub what: String,
    /// The lab.
    pub lab: String,
    /// Experiments planned.
    pub experiments: usize,
    /// The scheduler's report.
    pub report: Report,
    /// The longest single experiment, alone in the lab.
    pub critical_path: f64,
}

impl fmt::Display for PlanResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let busiest = r.busy.iter().map(|(_, b)| *b).fold(0.0, f64::max);
        let bound = self.critical_path.max(busiest);
        writeln!(
            f,
            "plan of {} in lab `{}`: {} experiments, {} steps",
            self.what, self.lab, self.experiments, r.steps
        )?;
        writeln!(f, "  estimated makespan  {} ({:.0} s)", hms(r.makespan), r.makespan)?;
        writeln!(
            f,
            "  lower bound         {} (longest experiment alone {}, busiest instrument {})",
            hms(bound),
            hms(self.critical_path),
            hms(busiest)
        )?;
        writeln!(
            f,
            "  within {:.1}% of the bound; planned in {:.1} ms",
            100.0 * (r.makespan / bound.max(1e-9) - 1.0),
            r.decision.as_secs_f64() * 1e3
        )?;
        writeln!(f, "  instrument      busy        utilisation")?;
        for (name, busy) in &r.busy {
            let u = if r.makespan > 0.0 { 100.0 * busy / r.makespan } else { 0.0 };
            writeln!(f, "  {name:<14} {:>10}  {u:>5.1}%  {}", hms(*busy), "#".repeat((u / 5.0).round() as usize))?;
        }
        if !r.completed {
            writeln!(f, "  WARNING: the simulated run did not finish; the lab cannot run this work as planned")?;
        }
        Ok(())
    }
}

fn hms(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// A proposer that proposes the same values every time (planning a protocol N times).
struct Fixed(Point);

impl Proposer for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }

    fn tell(&mut self, _observation: Observation) {}

    fn tell_outcome(&mut self, _outcome: Outcome) {}

    fn ask(&mut self, n: usize, _pending: &[Point]) -> Vec<Proposal> {
        (0..n)
            .map(|_| Proposal {
                values: self.0.clone(),
                strategy: "fixed values (plan)".to_owned(),
                predicted_mean: None,
                predicted_sd: None,
                acquisition: None,
                model: None,
                reason: "planning with the given parameter values".to_owned(),
                labels: Default::default(),
            })
            .collect()
    }
}

/// Plans a protocol (`count` experiments with the `set` values) or a campaign file in a lab.
pub fn plan_file(lab_path: &Path, file: &Path, count: usize, set: &[String]) -> Result<PlanResult, PlanError> {
    let lab = Arc::new(crate::load::load_lab_file(lab_path)?);
    let source = read_source(file)?;
    let kind = protocols::source::index(&source.text).name.unwrap_or_default();
    if kind == "Campaign" {
        let inputs = load_campaign_inputs(file, Some(lab_path))?;
        let mut spacefill = inputs.campaign.clone();
        spacefill.proposer = experiments::ProposerConfig::SpaceFilling;
        let parts = CampaignParts::from(&inputs.campaign);
        let (setup, learner) = Setup::campaign(
            &parts,
            spacefill.build_proposer(),
            &inputs.protocol,
            &lab,
            Policy::Planned { replan: true, budget: None },
        )
        .map_err(PlanError::Other)?;
        let report = setup.run(Noise::NONE);
        let _ = learner.join();
        return Ok(PlanResult {
            what: format!("campaign `{}` (parameters from a space-filling design)", inputs.campaign.name),
            lab: lab.name.clone(),
            experiments: report.experiments,
            critical_path: critical_path(&inputs.protocol, &lab, &parts.fixed)?,
            report,
        });
    }
    let (protocol, _) = protocols::load_protocol(source).map_err(PlanError::Invalid)?;
    let problems = lab.check_protocol(&protocol);
    if problems.has_errors() {
        return Err(PlanError::Invalid(problems));
    }
    let mut values = BTreeMap::new();
    for s in set {
        let (name, value) =
            s.split_once('=').ok_or_else(|| PlanError::Other(format!("`--set {s}`: write NAME=VALUE")))?;
        let v: f64 =
            value.trim().parse().map_err(|_| PlanError::Other(format!("`--set {s}`: `{value}` is not a number")))?;
        values.insert(name.trim().to_owned(), v);
    }
    protocol.bind(&values).map_err(|e| PlanError::Other(format!("{e}; give values with --set NAME=VALUE")))?;
    let protocol = Arc::new(protocol);
    let parts = CampaignParts {
        fixed: BTreeMap::new(),
        objective: protocol.outputs().first().map(|o| o.name.clone()).unwrap_or_default(),
        direction: experiments::Direction::Maximize,
        objectives: Vec::new(),
        stop: experiments::StopRules::default(),
        budget: count.max(1),
        in_flight: count.max(1),
        reagents: BTreeMap::new(),
    };
    let (setup, learner) = Setup::campaign(
        &parts,
        Box::new(Fixed(values.clone())),
        &protocol,
        &lab,
        Policy::Planned { replan: true, budget: None },
    )
    .map_err(PlanError::Other)?;
    let report = setup.run(Noise::NONE);
    let _ = learner.join();
    Ok(PlanResult {
        what: format!("protocol `{}`", protocol.name()),
        lab: lab.name.clone(),
        experiments: report.experiments,
        critical_path: critical_path(&protocol, &lab, &values)?,
        report,
    })
}

/// The longest path through one experiment, on expected durations.
fn critical_path(protocol: &Protocol, lab: &Lab, values: &Point) -> Result<f64, PlanError> {
    let mut v = values.clone();
    for p in protocol.parameters() {
        v.entry(p.name.clone()).or_insert_with(|| p.default.unwrap_or((p.min + p.max) / 2.0));
    }
    let bound = protocol.bind(&v).map_err(|e| PlanError::Other(e.to_string()))?;
    let mut finish = vec![0.0f64; bound.steps.len()];
    for &i in protocol.topological_order() {
        let s = &bound.steps[i];
        let start = s.after.iter().map(|&a| finish[a]).fold(0.0, f64::max) + s.rules.wait.map_or(0.0, |w| w.0);
        finish[i] = start + crate::schedule::estimate::action(lab, &s.on, &s.action);
    }
    Ok(finish.iter().copied().fold(0.0, f64::max))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's bench with `n` hotplates in place of its four: two pumps over one dispense station, one
    /// spectrometer and `gantries` gantries serve them all.
    fn lab_with_hotplates(n: usize, gantries: usize) -> String {
        let positions: String = (1..=n)
            .map(|i| format!("\"hotplate_{i}\": (x: {}, y: {}, z: 14),\n", 40 + (i % 12) * 30, 120 + (i / 12) * 20))
            .collect();
        let hotplates: String = (1..=n)
            .map(|i| {
                format!(
                    "\"hotplate_{i}\": (driver: IkaHotplate(model: \"RCT digital\", max_temperature: \"310 degC\", \
                     max_speed: \"1500 rpm\"), port: Simulated, position: \"hotplate_{i}\"),\n"
                )
            })
            .collect();
        let gantries: String = (1..=gantries)
            .map(|i| {
                format!(
                    "\"gantry_{i}\": (driver: GcodeGantry(feed_rate: 3000, travel: (x: 450, y: 300, z: 120), \
                     grip: 90, release: 0), port: Simulated),\n"
                )
            })
            .collect();
        format!(
            r#"Lab(
    format: 1,
    name: "many_hotplates",
    deck: (
        safe_z: 90,
        rack: (origin: (x: 20, y: 20, z: 8), pitch_x: 8, pitch_y: 8, columns: 24, rows: 4),
        positions: {{ "dispense": (x: 250, y: 40, z: 10), "uvvis": (x: 440, y: 40, z: 20), {positions} }},
    ),
    instruments: {{
        "pump_a": (driver: CavroXCalibur(address: 1, syringe: "1 mL", top_speed: 400, reservoir: "A"),
                   port: Simulated, position: "dispense"),
        "pump_b": (driver: CavroXCalibur(address: 1, syringe: "1 mL", top_speed: 400, reservoir: "B"),
                   port: Simulated, position: "dispense"),
        "uvvis": (driver: OceanFlame(integration: "100 ms", scans: 4, calibration: [339.2, 0.2737, -1.2e-5, 0]),
                  port: Simulated, position: "uvvis"),
        {gantries}
        {hotplates}
    }},
    simulation: (seed: 7, time_scale: 400),
)"#
        )
    }

    /// Plans a campaign of `n` experiments, all in flight at once, in a lab with `n` hotplates.
    fn plan_many_hotplates(n: usize, gantries: usize) -> PlanResult {
        let dir = tempfile::tempdir().unwrap();
        let lab = dir.path().join("many.lab.ron");
        std::fs::write(&lab, lab_with_hotplates(n, gantries)).unwrap();
        let protocol = Path::new(env!("CARGO_MANIFEST_DIR")).join("../protocols/library/condensation.protocol.ron");
        let campaign = dir.path().join("many.campaign.ron");
        std::fs::write(
            &campaign,
            format!(
                r#"Campaign(
    format: 1,
    name: "many",
    protocol: {protocol:?},
    lab: "many.lab.ron",
    vary: {{ "volume_b": (min: 50, max: 500), "temperature": (min: 30, max: 150), "duration": (min: 5, max: 90) }},
    objective: Maximize("absorbance"),
    budget: {n},
    in_flight: {n},
    proposer: GaussianProcess(initial: {n}),
    seed: 1,
)"#
            ),
        )
        .unwrap();
        plan_file(&lab, &campaign, 1, &[]).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_lab_with_many_hotplates_and_one_spectrometer_runs_every_experiment() {
        // Vials end their heats close together and wait for the one spectrometer, so the gantry's ready steps are
        // mostly moves to the spectrometer that only its least urgent step (taking the vial there back to the rack)
        // can make possible. With 96, more than 32 such moves stood before that step, and the scheduler stopped
        // looking before it reached it. With two gantries, the pumps' plan had them wait for a vial that the vial
        // already at the dispense station kept out, and the simulation jumped to its next event, a heat ending an
        // hour and a half later, where a real run stops waiting as soon as the step is late (in a lab like this one,
        // 18,370 lab s instead of 8,922).
        for (n, gantries) in [(48, 1), (96, 1), (96, 2)] {
            let plan = plan_many_hotplates(n, gantries);
            let what = format!("{n} hotplates, {gantries} gantries");
            assert!(plan.report.completed, "{what}: the simulated run stopped with work left:\n{plan}");
            assert_eq!(plan.experiments, n, "{what}");
            // Every gantry move one after another, then one experiment at the protocol's default values alone, with
            // a quarter to spare: instruments idling for a plan that cannot be met take longer.
            let moves: f64 =
                plan.report.busy.iter().filter(|(name, _)| name.starts_with("gantry")).map(|(_, busy)| busy).sum();
            let fair = 1.25 * (moves + plan.critical_path);
            assert!(plan.report.makespan <= fair, "{what}: makespan above {fair:.0} s:\n{plan}");
        }
    }
}
