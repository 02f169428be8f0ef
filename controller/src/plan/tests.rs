//! `lab plan`'s tests: plans that are the same however slow the proposer, bounds no simulated run beats, a lab
//! with many hotplates, declared instruments' durations, the landscapes a model's choices are drawn on, a model in
//! a simulated lab choosing from what a simulated bench measures (drawn several times, and said in JSON too),
//! the range a run's lost replies may take it to, and the bound's line for a kind many instruments share.

use std::path::{Path, PathBuf};
use std::time::Duration;

use experiments::{Observation, Outcome, Point, Proposal, Proposer, ProposerConfig};

use super::*;
use crate::schedule::estimate::Rates;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("controller/ is inside the repository").to_owned()
}

/// Every campaign in the repository with the lab it names: `experiments/campaigns/` and the one `lab init` writes.
fn campaigns() -> Vec<(PathBuf, PathBuf)> {
    let mut out: Vec<(PathBuf, PathBuf)> = std::fs::read_dir(root().join("experiments/campaigns"))
        .expect("the campaigns folder")
        .map(|e| e.expect("a folder entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".campaign.ron"))
        .map(|p| {
            let inputs = crate::load::load_campaign_inputs(&p, None).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, inputs.lab_path)
        })
        .collect();
    out.sort();
    let templates = root().join("controller/templates");
    out.push((templates.join("first.campaign.ron"), templates.join("bench.lab.ron")));
    out
}

/// A campaign loaded with its protocol and lab, its proposer and seed replaced if asked.
fn load(campaign: &Path, lab: &Path, proposer: Option<ProposerConfig>, seed: Option<u64>) -> crate::load::Inputs {
    let mut inputs = crate::load::load_campaign_inputs(campaign, Some(lab)).expect("the campaign loads");
    if let Some(p) = proposer {
        inputs.campaign.proposer = p;
    }
    if let Some(s) = seed {
        inputs.campaign.seed = s;
    }
    inputs
}

fn plan(inputs: &crate::load::Inputs, draws: usize, wrap: Wrap) -> PlanResult {
    let durations = Durations::of(&inputs.lab);
    plan_campaign(&inputs.campaign, &inputs.protocol, &inputs.lab, &durations, draws, wrap)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

/// A proposer that takes its time over every answer, as a model does on a loaded machine.
struct Slow(Box<dyn Proposer>);

impl Proposer for Slow {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn tell(&mut self, observation: Observation) {
        self.0.tell(observation);
    }

    fn tell_outcome(&mut self, outcome: Outcome) {
        self.0.tell_outcome(outcome);
    }

    fn ask(&mut self, n: usize, pending: &[Point]) -> Vec<Proposal> {
        std::thread::sleep(Duration::from_millis(15));
        self.0.ask(n, pending)
    }
}

/// The figures of a plan that must not depend on the machine (not the time the planner took).
fn figures(p: &PlanResult) -> (f64, Vec<(String, f64)>, usize, usize, Vec<f64>, f64) {
    (p.estimate(), p.report.busy.clone(), p.report.steps, p.experiments, p.draws.clone(), p.bounds.best())
}

#[test]
fn the_same_files_give_the_same_plan_however_slow_the_proposer() {
    let templates = root().join("controller/templates");
    let (campaign, lab) = (templates.join("first.campaign.ron"), templates.join("bench.lab.ron"));
    for proposer in [Some(ProposerConfig::SpaceFilling), None] {
        let inputs = load(&campaign, &lab, proposer.clone(), None);
        let quick = plan(&inputs, 2, &|p| p);
        let again = plan(&inputs, 2, &|p| p);
        let slow = plan(&inputs, 2, &|p| Box::new(Slow(p)));
        assert!(quick.report.completed, "{quick}");
        assert_eq!(figures(&quick), figures(&again), "two plans of {proposer:?} differ:\n{quick}\n{again}");
        assert_eq!(
            figures(&quick),
            figures(&slow),
            "a slow proposer changed the plan of {proposer:?}:\n{quick}\n{slow}"
        );
    }
}

/// Plans every campaign (but `load` unless `all`) with a space-filling design and with its own proposer, for each
/// seed, and checks that no simulated run (every draw included) is shorter than the plan's lower bound.
fn check_bounds(all: bool, seeds: &[u64]) {
    for (campaign, lab) in campaigns() {
        if !all && campaign.ends_with("load.campaign.ron") {
            continue;
        }
        for proposer in [Some(ProposerConfig::SpaceFilling), None] {
            for &seed in seeds {
                let inputs = load(&campaign, &lab, proposer.clone(), Some(seed));
                let p = plan(&inputs, 3, &|p| p);
                let what = format!("{} with {:?}, seed {seed}", campaign.display(), inputs.campaign.proposer);
                assert!(p.report.completed, "{what}: the simulated run stopped with work left:\n{p}");
                let bound = p.bounds.best();
                assert!(bound > 0.0, "{what}: no bound:\n{p}");
                for run in p.draws.iter().chain([&p.report.makespan]) {
                    assert!(
                        *run >= bound - 1e-6,
                        "{what}: a simulated run of {run:.0} s beats the bound {bound:.0} s:\n{p}"
                    );
                }
            }
        }
    }
}

#[test]
fn no_simulated_run_of_a_campaign_beats_its_lower_bound() {
    // The hundred-instrument `load` campaign takes minutes to plan in a debug build; the ignored test below has it.
    check_bounds(false, &[1]);
}

#[test]
#[ignore = "minutes; cargo test --release -p controller --lib plan::tests -- --ignored"]
fn no_simulated_run_of_any_campaign_beats_its_lower_bound_over_five_seeds() {
    check_bounds(true, &[1, 2, 3, 4, 5]);
}

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
    plan_file(&lab, &campaign, &PlanOptions::default()).unwrap_or_else(|e| panic!("{e:?}"))
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
        let fair = 1.25 * (moves + plan.bounds.chain);
        assert!(plan.report.makespan <= fair, "{what}: makespan above {fair:.0} s:\n{plan}");
    }
}

#[test]
fn declared_instruments_take_the_durations_their_declarations_give() {
    let path = root().join("devices/labs/declared.lab.ron");
    let text = std::fs::read_to_string(&path).expect("the declared lab");
    let lab = devices::load_lab(protocols::SourceFile::new(path.display().to_string(), text)).expect("it loads");
    let durations = Durations::of(&lab);
    let spec = |name: &str| lab.instrument(name).unwrap_or_else(|| panic!("{name} in the lab"));
    let dispense =
        |volume: f64| protocols::Action::Dispense { volume: protocols::units::Volume(volume), reagent: None };
    // The NE-1000 pumps at its `dispense_rate` (1000 uL/min by default): 300 uL take 18 s of flow, seen at the
    // driver's next status poll, and its commands, each answered after the simulator's latency (up to 3 ms).
    let Rates::Flow { rate, .. } = durations.rates(spec("syringe")) else { panic!("the pump is not a flow") };
    assert!((rate - 1000.0 / 60.0).abs() < 1e-9, "{rate}");
    let fill = durations.least(&lab, spec("syringe"), &dispense(300.0), &[]);
    assert!((18.0..36.0).contains(&fill), "{fill}");
    // The Alicat passes its `flow` setting (50 sccm) times the declaration's scale: 5 mL in about 6 s. Its lost
    // replies cost a plan their expected time, never the bound.
    let Rates::Flow { rate, stall, .. } = durations.rates(spec("mfc")) else { panic!("the flow controller") };
    assert!((rate - 50.0 * 1000.0 / 60.0).abs() < 1e-9, "{rate}");
    assert!(stall > 0.0, "3% of its replies are lost");
    let sparge = durations.least(&lab, spec("mfc"), &dispense(5000.0), &[]);
    let mut state = durations.initial(&lab, spec("mfc"));
    let expected = durations.run(
        &lab,
        spec("mfc"),
        &mut state,
        &devices::Task::Dispense { volume: protocols::units::Volume(5000.0) },
        0.0,
    );
    assert!(sparge >= 6.0 && expected > sparge, "least {sparge}, expected {expected}");
    // The Huber holds as a plate does, at its declared poll and tolerance; the balance weighs in a few seconds.
    let Rates::Thermal { poll, tolerance, .. } = durations.rates(spec("circulator")) else { panic!("the circulator") };
    assert_eq!((poll, tolerance), (10.0, 0.5));
    let weigh = durations.least(&lab, spec("balance"), &protocols::Action::Weigh { output: "mass".into() }, &[]);
    assert!(weigh > 0.0 && weigh < 10.0, "{weigh}");
}

#[test]
fn a_drawn_landscape_has_one_peak_and_turns_it_over_for_an_output_to_make_small() {
    let inputs = load(
        &root().join("experiments/campaigns/demo.campaign.ron"),
        &root().join("devices/labs/sim.lab.ron"),
        None,
        None,
    );
    let mut problem = inputs.campaign.problem(None);
    let a = draws::Landscape::draw(&problem, 1);
    let b = draws::Landscape::draw(&problem, 2);
    let point: Point = [("volume_b", 100.0), ("temperature", 60.0), ("duration", 30.0)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let (va, vb) = (a.at("absorbance", &point), b.at("absorbance", &point));
    assert!(va > 0.0 && va <= 1.0 && vb > 0.0 && vb <= 1.0 && va != vb, "{va} {vb}");
    problem.objectives[0].direction = experiments::Direction::Minimize;
    let c = draws::Landscape::draw(&problem, 1);
    assert_eq!(c.at("absorbance", &point), -va);
}

#[test]
fn a_plan_says_how_far_a_runs_luck_with_lost_replies_may_take_it() {
    let campaign = root().join("experiments/campaigns/declared.campaign.ron");
    let inputs = load(&campaign, &root().join("devices/labs/declared.lab.ron"), None, None);
    let p = plan(&inputs, 1, &|p| p);
    let l = p.lost_replies().unwrap_or_else(|| panic!("the declared lab's simulators lose replies:\n{p}"));
    // Each is waited for its line's timeout, a second, as on the real lab (the discrete-event clock does not
    // multiply it by the lab's time scale), less what a hold spends anyway.
    assert!(l.each > 0.1 && l.each <= 1.0 + 1e-9, "{l:?}");
    assert!(l.expected > 0.1 && l.few as f64 <= l.expected && l.many as f64 >= l.expected, "{l:?}");
    assert!(l.range.0 <= p.estimate() && p.estimate() <= l.range.1, "{l:?} around {}", p.estimate());
    assert!(p.to_string().contains("lost replies"), "{p}");
    // A lab whose simulators lose nothing has no such range.
    let calm = load(
        &root().join("experiments/campaigns/demo.campaign.ron"),
        &root().join("devices/labs/sim.lab.ron"),
        None,
        None,
    );
    assert!(plan(&calm, 1, &|p| p).lost_replies().is_none());
    // A reply lost early in a long hold costs nothing: the hold goes on while the driver waits for it. Shown with
    // the wait of the same lab paced against the wall at its time scale (400 lab s), long beside the readings.
    let circulator = inputs.lab.instrument("circulator").expect("the circulator");
    let Rates::Thermal { stall, wait, .. } = Durations::of(&inputs.lab).rates(circulator) else {
        panic!("the circulator holds as a plate")
    };
    let p = stall / wait;
    let paced = |mut rates: Rates| {
        if let Rates::Thermal { stall, wait, .. } = &mut rates {
            *wait = 400.0;
            *stall = if *stall > 0.0 { p * 400.0 } else { 0.0 };
        }
        rates
    };
    let (rates, calm) = (
        paced(Durations::of(&inputs.lab).rates(circulator)),
        paced(Durations::of(&inputs.lab).calm().rates(circulator)),
    );
    let wait = 400.0;
    let (short, long) = (rates.heat(25.0, 25.0, 60.0, true), rates.heat(25.0, 25.0, 3600.0, true));
    let (short_calm, long_calm) = (calm.heat(25.0, 25.0, 60.0, true), calm.heat(25.0, 25.0, 3600.0, true));
    // Readings at the start, and every 10 s to the end; only the last 400 s of the hour's readings risk anything.
    assert!((long - long_calm) < p * wait * 42.0, "{long} against {long_calm}");
    assert!((short - short_calm) > p * (wait - 60.0) * 6.0, "{short} against {short_calm}");
    // Poisson counts: with a mean of 2, none at all is one run in seven, and four or fewer nineteen in twenty.
    assert_eq!((poisson_quantile(2.0, 0.1), poisson_quantile(2.0, 0.9)), (0, 4));
    assert_eq!(poisson_quantile(0.0, 0.9), 0);
}

#[test]
fn a_model_in_a_simulated_lab_chooses_from_what_the_simulated_bench_measures() {
    let inputs = load(
        &root().join("experiments/campaigns/plate.campaign.ron"),
        &root().join("devices/labs/sim.lab.ron"),
        None,
        None,
    );
    let p = plan(&inputs, 3, &|p| p);
    let Parameters::Measured { known: 8, drawn, .. } = &p.parameters else { panic!("not measured:\n{p}") };
    assert!(p.report.completed, "{p}");
    // Three draws of the spectrometer's noise (the run's own first) and of when steps end; the plan shown is the
    // median draw's.
    assert_eq!((drawn.count, p.draws.len()), (3, 3), "{p}");
    assert_eq!(drawn.noise(0), inputs.lab.simulation.seed);
    assert!(drawn.noise(1) != drawn.noise(0) && drawn.noise(2) != drawn.noise(1));
    assert_eq!(drawn.steps(0), simulate::Noise::NONE, "the first draw's steps end as estimated");
    let mut sorted = p.draws.clone();
    sorted.sort_by(f64::total_cmp);
    assert_eq!(p.estimate(), sorted[1], "{p}");
    let text = p.to_string();
    assert!(text.contains("the median of 3 draws") && text.contains("spectrometers' noise"), "{text}");
    // The bench's chemistry gives every experiment a real absorbance, so the model has something to choose from, and
    // the same files give the same draws.
    let again = plan(&inputs, 3, &|p| p);
    assert_eq!(figures(&p), figures(&again), "two plans differ:\n{p}\n{again}");
    // `--json` says the same: the median, every draw, and what was drawn.
    let json = json::to_json(&p);
    assert_eq!(json["estimate_s"].as_f64(), Some(p.estimate()));
    assert_eq!(json["central"], "median of the draws");
    assert_eq!(json["draws"]["count"], 3);
    assert_eq!(json["draws"]["lowest_s"].as_f64(), Some(sorted[0]));
    assert_eq!(json["draws"]["highest_s"].as_f64(), Some(sorted[2]));
    assert_eq!(json["draws"]["drawn"]["spectrometer_noise"]["run_seed"], inputs.lab.simulation.seed);
    assert_eq!(json["parameters"]["known"], 8);
}

#[test]
fn draws_come_back_in_order_whichever_thread_ran_them() {
    let squares = draws::each(37, |i| {
        // Early draws take longest, so the threads finish out of order.
        std::thread::sleep(Duration::from_millis(if i < 4 { 20 } else { 0 }));
        i * i
    });
    assert_eq!(squares, (0..37).map(|i| i * i).collect::<Vec<_>>());
    assert!(draws::each(0, |i| i).is_empty());
}

#[test]
fn a_dispense_that_primes_the_line_takes_the_primes_draw_turns_and_push() {
    // The catalyst campaign one experiment at a time, catalysts chosen at random, on its lab and on the same lab
    // without the valve's `line` (which never primes): the catalyst pump's busy time differs by one prime for every
    // dispense whose catalyst the line does not hold (the first, and each change of catalyst).
    let campaign = root().join("experiments/campaigns/catalysts.campaign.ron");
    let lab = root().join("devices/labs/catalysts.lab.ron");
    let dir = tempfile::tempdir().unwrap();
    let lineless = dir.path().join("lineless.lab.ron");
    let text = std::fs::read_to_string(&lab).unwrap();
    assert!(text.contains("line: \"40 uL\","));
    std::fs::write(&lineless, text.replace("line: \"40 uL\",", "")).unwrap();
    let busy = |lab: &Path| {
        let mut inputs = load(&campaign, lab, Some(ProposerConfig::Random), Some(3));
        inputs.campaign.budget = 6;
        inputs.campaign.in_flight = 1;
        let p = plan(&inputs, 1, &|p| p);
        assert!(p.report.completed, "{p}");
        let pump_c = p.report.busy.iter().find(|(n, _)| n == "pump_c").map(|(_, b)| *b).unwrap();
        (pump_c, p.proposals.clone(), inputs)
    };
    let (primed, proposals, inputs) = busy(&lab);
    let (plain, again, _) = busy(&lineless);
    assert_eq!(proposals, again, "the same experiments in both plans");
    let levels: Vec<f64> = proposals.iter().map(|p| p["catalyst"]).collect();
    let primes = 1 + levels.windows(2).filter(|w| w[0] != w[1]).count();
    let pump = inputs.lab.instrument("pump_c").unwrap();
    let each = Durations::of(&inputs.lab).prime(&inputs.lab, pump, 80.0);
    // 80 uL is a third of the 250 uL syringe: two travels of 960 increments at 400 a second (2.4 lab s each), and
    // the valve's two turns. A run of this campaign on its discrete-event clock (8 experiments, one at a time, random
    // catalysts) took 5.6 to 6.3 lab s longer for a dispense that primed than the same volume without (10.2 to 11.9
    // lab s against 2.4 to 4.1 for 27 to 46 uL); the controller's own pace, which a paced clock added, is not lab time.
    assert!(each > 4.8 && each < 8.0, "a prime takes {each} lab s");
    let extra = primed - plain;
    assert!(
        (extra - primes as f64 * each).abs() < 1e-6,
        "{primes} primes of {each} lab s each, but the pump was busy {extra} lab s longer ({levels:?})"
    );
}

#[test]
fn a_kind_shared_by_many_instruments_is_said_in_a_line() {
    let many: Vec<String> = (1..=96).rev().map(|i| format!("hotplate_{i}")).collect();
    assert_eq!(super::shared_by(&many), "96 instruments (hotplate_1, hotplate_2, …, hotplate_96)");
    let few: Vec<String> = ["hotplate_2", "hotplate_10", "hotplate_1"].map(String::from).to_vec();
    assert_eq!(super::shared_by(&few), "hotplate_1, hotplate_2, hotplate_10");
}
