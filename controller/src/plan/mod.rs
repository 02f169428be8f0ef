//! `lab plan`: the schedule of a protocol or a campaign in a lab, estimated before anything moves.
//!
//! It runs the scheduler itself (the same world and policy as a real run) in simulated time, each step lasting what
//! the lab's instruments are expected to take in the state the run leaves them in (`schedule::estimate`), and
//! reports the estimated lab time, each instrument's utilisation, and lower bounds no run can beat ([`bound`]).
//! The same files and seed give the same plan, however busy the computer: the simulation never lets the wall clock
//! decide anything ([`simulate`]). Durations may be fitted to recorded runs first ([`calibrate`]). Where the
//! campaign's proposer chooses from results, the plan of a simulated lab measures them on a simulated bench as the
//! run will, several times with the readings' noise and the steps' ends drawn; for any other lab, which a plan cannot
//! know, it draws those choices several times; either way it gives the median draw and the spread ([`draws`]).

pub mod bench;
pub mod bound;
pub mod calibrate;
pub mod draws;
pub mod json;
pub mod simulate;
pub mod workload;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use devices::Lab;
use experiments::{Observation, Outcome, Point, Proposal, Proposer, ProposerConfig};
use protocols::{Diagnostics, Protocol};

use crate::load::{LoadError, load_campaign_inputs, read_source};
use crate::plan::bound::{Bounds, Counted};
use crate::plan::calibrate::Fit;
use crate::plan::draws::{BenchDraws, Drawn, Planned, ProposedLog};
use crate::plan::simulate::{Noise, Report, Setup};
use crate::run::CampaignParts;
use crate::schedule::estimate::Durations;
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

/// How many draws a plan makes of what it cannot know, unless told: enough that a run falls outside the lowest and
/// highest of them about one time in eleven were they alike (2 / (n + 1)), an odd number so that the median is a
/// draw, and 2.3 s of planning for the repository's largest model-based campaigns in a release build on two cores
/// (BENCHMARKS.md, "Planning").
pub const DEFAULT_DRAWS: usize = 21;

/// What to plan, beyond the files.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// For a protocol: how many experiments at once.
    pub count: usize,
    /// For a protocol: parameter values, as `NAME=VALUE`.
    pub set: Vec<String>,
    /// Records whose runs the durations are fitted to first (none: the lab file's defaults).
    pub calibrate: Vec<PathBuf>,
    /// For a campaign whose proposer chooses from results: how many draws of those choices.
    pub draws: usize,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { count: 1, set: Vec::new(), calibrate: Vec::new(), draws: DEFAULT_DRAWS }
    }
}

/// Where a plan's parameter values came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Parameters {
    /// Given on the command line (a protocol planned `count` times).
    Given,
    /// The campaign's own proposer, which chooses without looking at results: the run proposes the same.
    Own(String),
    /// The first `known` from the proposer's own design, the rest its model's choices on the results a simulated
    /// bench of the lab gives (the lab's instruments are all simulators whose chemistry the lab file fixes).
    Measured {
        /// The proposer.
        proposer: String,
        /// How many proposals the plan knows.
        known: usize,
        /// How many its model chose on the bench's results (in the median draw).
        chosen: usize,
        /// What the plan drew, since the run's readings differ from any plan's in the third decimal.
        drawn: BenchDraws,
    },
    /// The first `known` from the proposer's own design, the rest its model's choices on a landscape drawn in place
    /// of the results, once per draw.
    Drawn {
        /// The proposer.
        proposer: String,
        /// How many proposals the plan knows.
        known: usize,
        /// How many it drew.
        drawn: usize,
    },
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
    /// Experiments at once.
    pub in_flight: usize,
    /// The scheduler's report (of the median draw, when parameters were drawn). Its makespan is the estimated lab
    /// time, start-up included.
    pub report: Report,
    /// The lab seconds a run takes to start before its first step.
    pub startup: f64,
    /// Where the parameter values came from.
    pub parameters: Parameters,
    /// Each draw's estimated lab time, in the order drawn (empty when nothing was drawn).
    pub draws: Vec<f64>,
    /// The lower bounds.
    pub bounds: Bounds,
    /// The durations' fit to recorded runs, and the estimate with the lab file's defaults, when calibrated.
    pub calibration: Option<(Fit, f64)>,
    /// Why the campaign may stop before its budget, which the plan does not simulate.
    pub may_stop: Option<String>,
    /// Each experiment's parameter values, in the order proposed (of the median draw, when drawn).
    pub proposals: Vec<Point>,
    /// The warnings `lab check` gives the campaign (a bottle too small for its worst case, ...), which `lab plan`
    /// prints before the plan.
    pub warnings: protocols::Diagnostics,
}

impl PlanResult {
    /// The estimated lab time: the run's, or the median draw's.
    pub fn estimate(&self) -> f64 {
        self.report.makespan
    }

    /// Where a run's luck with lost replies may take it, if the lab's simulators lose any: the lab time with as few
    /// and as many of them as one run in ten meets either way (a Poisson count around the expected number), each
    /// costing its mean. The estimate counts their expected cost; any one run meets a whole number of them, each of
    /// which costs the line's timeout (a second on the discrete-event clock, as on the real lab; hundreds of lab
    /// seconds on a clock paced against the wall at the lab's time scale), and a campaign with one experiment at a
    /// time waits for every one.
    pub fn lost_replies(&self) -> Option<LostReplies> {
        let (expected, seconds) = self.report.lost;
        if expected < 1e-3 {
            return None;
        }
        let each = seconds / expected;
        let (few, many) = (poisson_quantile(expected, 0.1), poisson_quantile(expected, 0.9));
        let at = |n: usize| self.estimate() + (n as f64 - expected) * each;
        Some(LostReplies { expected, each, few, many, range: (at(few), at(many)) })
    }
}

/// What a plan says of the replies a run's simulators are expected to lose ([`PlanResult::lost_replies`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LostReplies {
    /// How many a run is expected to meet.
    pub expected: f64,
    /// The lab seconds each costs, on average (less than its wait where the heat it interrupts goes on).
    pub each: f64,
    /// As few as one run in ten meets.
    pub few: usize,
    /// As many as one run in ten meets.
    pub many: usize,
    /// The estimate with `few` and with `many` of them.
    pub range: (f64, f64),
}

/// The smallest count whose Poisson probability up to it, for a mean of `lambda`, reaches `q`.
fn poisson_quantile(lambda: f64, q: f64) -> usize {
    let (mut term, mut sum) = ((-lambda).exp(), 0.0);
    for k in 0..10_000 {
        sum += term;
        if sum >= q {
            return k;
        }
        term *= lambda / (k + 1) as f64;
    }
    10_000
}

impl fmt::Display for PlanResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let b = &self.bounds;
        let bound = b.best();
        writeln!(
            f,
            "plan of {} in lab `{}`: {} experiments, {} steps",
            self.what, self.lab, self.experiments, r.steps
        )?;
        match &self.parameters {
            Parameters::Given => writeln!(f, "  parameters          as given")?,
            Parameters::Own(p) => {
                writeln!(f, "  parameters          the campaign's own proposer ({p}); the run will propose the same")?
            }
            Parameters::Measured { proposer, known, chosen, drawn } => {
                writeln!(
                    f,
                    "  parameters          {known} from the {proposer}'s own design, as the run will propose them; its model \
                     chooses the other {chosen} from what the lab's simulated bench measures in the plan, as it will in the \
                     run"
                )?;
                if drawn.count > 1 {
                    let steps = if drawn.spread > 0.0 || drawn.bias > 0.0 {
                        format!(
                            "; and when each step ends, all of them within {:.1}% of their estimates and each within \
                             {:.1}% of that, since a plan's steps end seconds away from the run's",
                            100.0 * drawn.bias,
                            100.0 * drawn.spread
                        )
                    } else {
                        String::new()
                    };
                    writeln!(
                        f,
                        "  drawn               the spectrometers' noise, which the model's choices follow once its design is \
                         measured: the run's own (simulation seed {}) and {} other seeds{steps}",
                        drawn.seed,
                        drawn.count - 1
                    )?;
                }
            }
            Parameters::Drawn { proposer, known, drawn } => {
                writeln!(
                    f,
                    "  parameters          {known} from the {proposer}'s own design, as the run will propose them; its model \
                     chooses the other {drawn} from results a plan cannot know, so each of {} draws tells it results \
                     from a landscape with one peak at a random place, and it chooses there",
                    self.draws.len()
                )?;
            }
        }
        if let Some((fit, before)) = &self.calibration {
            writeln!(
                f,
                "  durations           fitted to {} recorded steps of {} run(s); the estimate moved from {} to {} ({:+.1}%)",
                fit.steps,
                fit.runs,
                hms(*before),
                hms(self.estimate()),
                100.0 * (self.estimate() / before.max(1e-9) - 1.0)
            )?;
            for line in &fit.changes {
                writeln!(f, "    {line}")?;
            }
        }
        if self.draws.len() > 1 {
            let mut sorted = self.draws.clone();
            sorted.sort_by(f64::total_cmp);
            writeln!(
                f,
                "  estimated lab time  {} ({:.0} s), the median of {} draws; lowest {}, highest {}",
                hms(self.estimate()),
                self.estimate(),
                sorted.len(),
                hms(sorted[0]),
                hms(sorted[sorted.len() - 1])
            )?;
        } else {
            writeln!(f, "  estimated lab time  {} ({:.0} s)", hms(self.estimate()), self.estimate())?;
        }
        writeln!(f, "    of which start-up {} (opening and initializing the instruments)", hms(self.startup))?;
        if let Some(l) = self.lost_replies() {
            writeln!(
                f,
                "    counting {:.1} lost replies, the mean of the faults the lab file gives its simulators, each waited \
                 for its line's timeout at the lab's pace and costing {:.1} s on average; a run that meets {} or {} of \
                 them (one run in ten either way) takes about {} to {}",
                l.expected,
                l.each,
                l.few,
                l.many,
                hms(l.range.0),
                hms(l.range.1)
            )?;
        }
        if let Some(why) = &self.may_stop {
            writeln!(f, "    if it runs its whole budget: {why}")?;
        }
        writeln!(f, "  lower bound         {} ({:.0} s), the largest of:", hms(bound), bound)?;
        writeln!(f, "    {:<36} {}", "the longest experiment alone", hms(b.chain))?;
        let flight = format!("{} experiments, {} at a time", b.counted, self.in_flight);
        writeln!(f, "    {flight:<36} {}", hms(b.in_flight))?;
        writeln!(f, "    {:<36} {}", format!("work shared by {}", shared_by(&b.instruments.1)), hms(b.instruments.0))?;
        if let Some(limit) = b.limit {
            writeln!(f, "    (capped by the campaign's time limit, {})", hms(limit))?;
        }
        if b.counted < self.experiments {
            writeln!(
                f,
                "    (counting the {} experiments certain to run, since the campaign may stop early)",
                b.counted
            )?;
        }
        writeln!(
            f,
            "  {:.1}% above the bound; simulated with {} plans in {:.1} ms of planning ({:.1} ns per unit of its work)",
            100.0 * (self.estimate() / bound.max(1e-9) - 1.0),
            r.plans,
            r.planning.as_secs_f64() * 1e3,
            r.planning.as_secs_f64() * 1e9 / r.work.max(1) as f64
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

/// The instruments a kind's work is shared by, as a line can hold them: all by name up to four, else how many and
/// the first and last in their numbers' order (`hotplate_1, hotplate_2, …, hotplate_96`).
fn shared_by(names: &[String]) -> String {
    let mut names: Vec<&String> = names.iter().collect();
    // Numbered names in the order of their numbers: `hotplate_2` before `hotplate_10`.
    names.sort_by_key(|n| {
        let stem = n.trim_end_matches(|c: char| c.is_ascii_digit());
        (stem.to_owned(), n[stem.len()..].parse::<u64>().ok(), (*n).clone())
    });
    match names.as_slice() {
        [first, second, .., last] if names.len() > 4 => {
            format!("{} instruments ({first}, {second}, …, {last})", names.len())
        }
        _ => names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", "),
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
pub fn plan_file(lab_path: &Path, file: &Path, options: &PlanOptions) -> Result<PlanResult, PlanError> {
    let lab = Arc::new(crate::load::load_lab_file(lab_path)?);
    let (durations, calibration) = durations_for(&lab, &options.calibrate)?;
    let source = read_source(file)?;
    let kind = protocols::source::index(&source.text).name.unwrap_or_default();
    if kind == "Campaign" {
        let inputs = load_campaign_inputs(file, Some(lab_path))?;
        let mut plan = plan_campaign(&inputs.campaign, &inputs.protocol, &lab, &durations, options.draws, &|p| p)?;
        plan.warnings = inputs.warnings;
        if let Some(fit) = calibration {
            let defaults = Durations::of(&lab);
            let before = plan_campaign(&inputs.campaign, &inputs.protocol, &lab, &defaults, options.draws, &|p| p)?;
            plan.calibration = Some((fit, before.estimate()));
        }
        return Ok(plan);
    }
    let (protocol, _) = protocols::load_protocol(source).map_err(PlanError::Invalid)?;
    let problems = lab.check_protocol(&protocol);
    if problems.has_errors() {
        return Err(PlanError::Invalid(problems));
    }
    let mut values = BTreeMap::new();
    for s in &options.set {
        let (name, value) =
            s.split_once('=').ok_or_else(|| PlanError::Other(format!("`--set {s}`: write NAME=VALUE")))?;
        let v: f64 =
            value.trim().parse().map_err(|_| PlanError::Other(format!("`--set {s}`: `{value}` is not a number")))?;
        values.insert(name.trim().to_owned(), v);
    }
    protocol.bind(&values).map_err(|e| PlanError::Other(format!("{e}; give values with --set NAME=VALUE")))?;
    let protocol = Arc::new(protocol);
    let count = options.count.max(1);
    let parts = CampaignParts {
        fixed: BTreeMap::new(),
        objective: protocol.outputs().first().map(|o| o.name.clone()).unwrap_or_default(),
        direction: experiments::Direction::Maximize,
        objectives: Vec::new(),
        stop: experiments::StopRules::default(),
        budget: count,
        in_flight: count,
        reagents: BTreeMap::new(),
    };
    let report = simulate(&parts, Box::new(Fixed(values.clone())), &protocol, &lab, &durations, Measure::NOT)?;
    let counted = vec![Counted::Known(values.clone()); count];
    let bounds =
        bound::bounds(&bounds_input(&protocol, &lab, &durations, &parts, None), &counted).map_err(PlanError::Other)?;
    let mut plan = PlanResult {
        what: format!("protocol `{}`", protocol.name()),
        lab: lab.name.clone(),
        experiments: report.experiments,
        in_flight: parts.in_flight,
        startup: durations.startup,
        report,
        parameters: Parameters::Given,
        draws: Vec::new(),
        bounds,
        calibration: None,
        may_stop: None,
        proposals: vec![values.clone(); count],
        warnings: protocols::Diagnostics::new(),
    };
    if let Some(fit) = calibration {
        let before = simulate(&parts, Box::new(Fixed(values)), &protocol, &lab, &Durations::of(&lab), Measure::NOT)?;
        plan.calibration = Some((fit, before.makespan));
    }
    Ok(plan)
}

/// The durations to plan with: the lab file's defaults, or fitted to the runs `records` hold.
fn durations_for(lab: &Lab, records: &[PathBuf]) -> Result<(Durations, Option<Fit>), PlanError> {
    if records.is_empty() {
        return Ok((Durations::of(lab), None));
    }
    let fit = calibrate::fit(lab, records).map_err(PlanError::Other)?;
    Ok((fit.durations.clone(), Some(fit)))
}

/// A proposer change applied before a planned run uses it (a test slows it down; `lab plan` leaves it).
pub type Wrap<'a> = &'a (dyn Fn(Box<dyn Proposer>) -> Box<dyn Proposer> + Sync);

/// Plans a loaded campaign: its own proposer where the plan can know its choices, else `draws` draws of them.
pub fn plan_campaign(
    campaign: &experiments::Campaign,
    protocol: &Arc<Protocol>,
    lab: &Arc<Lab>,
    durations: &Durations,
    draws: usize,
    wrap: Wrap,
) -> Result<PlanResult, PlanError> {
    let parts = CampaignParts::from(campaign);
    let problem = campaign.problem(None);
    let (mut parameters, mut runs) = match campaign.proposer {
        ProposerConfig::GaussianProcess { initial, .. } if devices::sim::DryBench::models(lab) => {
            // The lab's chemistry is the simulators', so the plan measures what the run will; what it cannot know
            // is the third decimal of each reading (the noise, and how much product formed by when the step ended),
            // which the model's choices follow, so it draws both (`BenchDraws`).
            let draws = if initial >= campaign.budget { 1 } else { draws.max(1) };
            let bench = BenchDraws::new(lab.simulation.seed, draws);
            let runs = draws::each(draws, |draw| {
                let log = ProposedLog::default();
                let measured = Planned::measured(campaign.build_proposer(), initial, Arc::clone(&log));
                let how = Measure { bench: Some(bench.noise(draw)), steps: bench.steps(draw) };
                simulate(&parts, wrap(Box::new(measured)), protocol, lab, durations, how).map(|r| (r, log))
            })
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            let known = initial.min(campaign.budget);
            let proposer = "Gaussian process".to_owned();
            (Parameters::Measured { proposer, known, chosen: 0, drawn: bench }, runs)
        }
        ProposerConfig::GaussianProcess { initial, .. } => {
            // With a design as large as the budget, the model chooses nothing and one run knows every experiment.
            let draws = if initial >= campaign.budget { 1 } else { draws.max(1) };
            let runs = draws::each(draws, |draw| {
                let log = ProposedLog::default();
                let seed = campaign.seed.wrapping_add(draw as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED;
                let drawn = Drawn::new(campaign.build_proposer(), initial, &problem, seed, Arc::clone(&log));
                simulate(&parts, wrap(Box::new(drawn)), protocol, lab, durations, Measure::NOT).map(|r| (r, log))
            })
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
            let known = initial.min(campaign.budget);
            (
                Parameters::Drawn {
                    proposer: "Gaussian process".to_owned(),
                    known,
                    drawn: campaign.budget.saturating_sub(known),
                },
                runs,
            )
        }
        ProposerConfig::Random | ProposerConfig::SpaceFilling => {
            let log = ProposedLog::default();
            let planned = Planned::new(campaign.build_proposer(), Arc::clone(&log));
            let report = simulate(&parts, wrap(Box::new(planned)), protocol, lab, durations, Measure::NOT)?;
            let name = match campaign.proposer {
                ProposerConfig::Random => "Random",
                _ => "SpaceFilling",
            };
            (Parameters::Own(format!("{name}, seed {}", campaign.seed)), vec![(report, log)])
        }
    };
    let drawn: Vec<f64> = runs.iter().map(|(r, _)| r.makespan).collect();
    // The median draw (the lower of the middle two for an even count) is the plan shown.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| drawn[a].total_cmp(&drawn[b]));
    let median = order[(order.len() - 1) / 2];
    let (report, log) = runs.swap_remove(median);
    if let Parameters::Measured { known, chosen, .. } = &mut parameters {
        *chosen = report.experiments.saturating_sub(*known);
    }
    let proposed = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).points.clone();
    let may_stop = early_stop(campaign);
    let certain = certain_experiments(campaign);
    let counted: Vec<Counted> = proposed
        .iter()
        .take(certain)
        .map(|(values, known)| if *known { Counted::Known(values.clone()) } else { Counted::Unknown })
        .collect();
    let bounds = bound::bounds(&bounds_input(protocol, lab, durations, &parts, Some(&campaign.space)), &counted)
        .map_err(PlanError::Other)?;
    Ok(PlanResult {
        what: format!("campaign `{}`", campaign.name),
        lab: lab.name.clone(),
        experiments: report.experiments,
        in_flight: parts.in_flight,
        startup: durations.startup,
        report,
        parameters,
        draws: if drawn.len() > 1 { drawn } else { Vec::new() },
        bounds,
        calibration: None,
        may_stop,
        proposals: proposed.iter().map(|(p, _)| p.clone()).collect(),
        warnings: protocols::Diagnostics::new(),
    })
}

/// How a simulated run measures: on a simulated bench of the lab whose spectrometers draw their noise from `bench`
/// (none: every measurement is a placeholder), each step lasting its expected duration perturbed by `steps`.
#[derive(Debug, Clone, Copy)]
struct Measure {
    bench: Option<u64>,
    steps: Noise,
}

impl Measure {
    /// Placeholder measurements, steps as expected.
    const NOT: Measure = Measure { bench: None, steps: Noise::NONE };
}

/// One simulated run of a campaign's experiments, proposed by `proposer`, on `durations`, measuring as `how` says.
fn simulate(
    parts: &CampaignParts,
    proposer: Box<dyn Proposer>,
    protocol: &Arc<Protocol>,
    lab: &Arc<Lab>,
    durations: &Durations,
    how: Measure,
) -> Result<Report, PlanError> {
    let (mut setup, learner) =
        Setup::campaign(parts, proposer, protocol, lab, Policy::Planned { replan: true, budget: None })
            .map_err(PlanError::Other)?;
    if let Some(noise) = how.bench {
        setup.with_bench(lab, noise);
    }
    setup.with_durations(Arc::clone(lab), durations.clone());
    let report = setup.run(how.steps);
    let _ = learner.join();
    Ok(report)
}

fn bounds_input<'a>(
    protocol: &'a Protocol,
    lab: &'a Lab,
    durations: &'a Durations,
    parts: &'a CampaignParts,
    space: Option<&experiments::Space>,
) -> bound::Campaign<'a> {
    bound::Campaign {
        protocol,
        lab,
        durations,
        fixed: &parts.fixed,
        corners: space.map(|s| bound::corners(s, 4096)).unwrap_or_default(),
        in_flight: parts.in_flight,
        limit: parts.stop.max_time,
    }
}

/// Why a campaign may end before its budget, on results the plan cannot know.
fn early_stop(campaign: &experiments::Campaign) -> Option<String> {
    let s = &campaign.stop;
    let mut why = Vec::new();
    if let Some(t) = s.target {
        why.push(format!("it stops once a result reaches {t}"));
    }
    if s.min_expected_improvement.is_some() && matches!(campaign.proposer, ProposerConfig::GaussianProcess { .. }) {
        why.push("it stops once its model expects too little improvement".to_owned());
    }
    (!why.is_empty()).then(|| why.join(", and "))
}

/// How many experiments a campaign runs whatever its results: its budget, unless a rule on results may stop it (a
/// target may be reached by the first result, so only the first experiments in flight are certain; a model that
/// expects too little improvement may stop as soon as its design is handed out).
fn certain_experiments(campaign: &experiments::Campaign) -> usize {
    let mut n = campaign.budget;
    if campaign.stop.target.is_some() {
        n = n.min(campaign.in_flight);
    }
    if campaign.stop.min_expected_improvement.is_some()
        && let ProposerConfig::GaussianProcess { initial, .. } = campaign.proposer
    {
        n = n.min(initial);
    }
    n
}

#[cfg(test)]
mod tests;
