//! `lab plan` against real runs: every campaign of the repository planned, then run on its simulators over
//! pseudo-terminals on a discrete-event clock (`devices::clock::events`, timeouts as long as on the real lab), with
//! the same seed. A run's lab time depends on the files and seeds alone, so each row is the same on any machine.
//!
//! The default suite runs the short version (the campaign `lab init` writes, with a space-filling design, one seed).
//! The full table (every campaign, with `SpaceFilling` and with its own proposer, seeds 1 to 5) takes several minutes
//! of wall time and is ignored; BENCHMARKS.md ("Planning") holds its results:
//!
//! ```sh
//! cargo test --release -p tests --test integration plan_accuracy -- --ignored --nocapture
//! ```
//!
//! Where the plan drew a model's choices, each row also says whether the run fell between the lowest and highest
//! draw. A third ignored test runs each model-based campaign six times with only its readings' noise changed, to
//! show how far apart runs of the same files land (`plan_accuracy::runs`, `LAB_PLAN_NOISES=5`).
//!
//! `LAB_PLAN_CASES=first,declared` runs only those campaigns of the table, `LAB_PLAN_SEEDS=1,2` only those seeds,
//! `LAB_PLAN_PROPOSERS=own` (or `SpaceFilling`) only that proposer; `LAB_PLAN_DRAWS=20` plans with that many draws
//! in place of `lab plan`'s default; `LAB_PLAN_KEEP=1` keeps each run's folder (its record) and says where.

use std::path::{Path, PathBuf};

use controller::plan::{PlanOptions, PlanResult, plan_file};
use tests::{CampaignTest, replace_field, repo_root};

/// A campaign of the repository, its lab, and the lab's time scale.
struct Case {
    name: &'static str,
    campaign: PathBuf,
    lab: PathBuf,
    /// Whether each seed also seeds the lab's simulation. A lab whose simulators inject faults draws them from its
    /// own seed, so without this every row of the campaign meets the same lost replies, each of which costs its
    /// line's timeout (a second, as on the real lab); with it, the rows sample them as the plan's expected cost
    /// assumes.
    fault_seeds: bool,
}

fn cases() -> Vec<Case> {
    let root = repo_root();
    vec![
        Case {
            name: "first (lab init)",
            campaign: root.join("controller/templates/first.campaign.ron"),
            lab: root.join("controller/templates/bench.lab.ron"),
            fault_seeds: false,
        },
        Case {
            name: "demo",
            campaign: root.join("experiments/campaigns/demo.campaign.ron"),
            lab: root.join("devices/labs/sim.lab.ron"),
            fault_seeds: false,
        },
        Case {
            name: "plate",
            campaign: root.join("experiments/campaigns/plate.campaign.ron"),
            lab: root.join("devices/labs/sim.lab.ron"),
            fault_seeds: false,
        },
        Case {
            name: "load",
            campaign: root.join("experiments/campaigns/load.campaign.ron"),
            lab: root.join("devices/labs/load.lab.ron"),
            fault_seeds: false,
        },
        Case {
            name: "catalysts",
            campaign: root.join("experiments/campaigns/catalysts.campaign.ron"),
            lab: root.join("devices/labs/catalysts.lab.ron"),
            fault_seeds: false,
        },
        Case {
            name: "declared",
            campaign: root.join("experiments/campaigns/declared.campaign.ron"),
            lab: root.join("devices/labs/declared.lab.ron"),
            fault_seeds: true,
        },
    ]
}

/// The campaigns `LAB_PLAN_CASES` names (a comma-separated list of the names in [`cases`]), or all of them.
fn selected_cases() -> Vec<Case> {
    match std::env::var("LAB_PLAN_CASES") {
        Ok(names) => {
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            cases().into_iter().filter(|c| names.iter().any(|n| c.name.split(' ').next() == Some(*n))).collect()
        }
        Err(_) => cases(),
    }
}

/// The seeds `LAB_PLAN_SEEDS` names (comma-separated), or 1 to 5.
fn selected_seeds() -> Vec<u64> {
    match std::env::var("LAB_PLAN_SEEDS") {
        Ok(seeds) => seeds
            .split(',')
            .map(|s| s.trim().parse().unwrap_or_else(|_| panic!("LAB_PLAN_SEEDS: `{s}` is not a seed")))
            .collect(),
        Err(_) => (1..=5).collect(),
    }
}

/// One row of the table.
struct Row {
    plan: PlanResult,
    run: f64,
    failed: usize,
    /// Experiments the run started, and why it stopped early if it did.
    started: usize,
    stop: Option<String>,
    /// How many experiments, from the first, the run chose as the plan did.
    alike: usize,
    /// Replies the run waited for until their line's timeout, and where.
    lost: (usize, String),
}

/// Replies a run waited for until the line's timeout (commands that failed after at least a quarter of `each` lab
/// s), and where: each one's instrument, command, and lab time since its step started (`start-up` outside steps).
fn lost_replies(db: &Path, each: f64) -> (usize, String) {
    let conn = rusqlite::Connection::open(db).expect("the record");
    let mut stmt = conn
        .prepare(
            "SELECT c.instrument, c.sent_text, c.sent_at - s.started_at, s.finished_at - c.sent_at
             FROM commands c LEFT JOIN steps s ON s.id = c.step_id
             WHERE c.error IS NOT NULL AND c.replied_at - c.sent_at >= ?1 ORDER BY c.id",
        )
        .expect("a query");
    let rows: Vec<String> = stmt
        .query_map([each / 4.0], |r| {
            let (who, what) = (r.get::<_, String>(0)?, r.get::<_, String>(1)?);
            let (into, left) = (r.get::<_, Option<f64>>(2)?, r.get::<_, Option<f64>>(3)?);
            Ok(match (into, left) {
                (Some(a), Some(b)) => {
                    format!("{who} {:?} {a:.0} s into its step, {b:.0} s before its end", what.trim())
                }
                _ => format!("{who} {:?} at start-up", what.trim()),
            })
        })
        .expect("the commands")
        .map(|r| r.expect("a row"))
        .collect();
    (rows.len(), rows.join("; "))
}

/// How many of the run's experiments, from the first, have the parameter values the plan proposed in that order.
fn alike(db: &Path, plan: &[experiments::Point]) -> usize {
    let conn = rusqlite::Connection::open(db).expect("the record");
    let mut stmt = conn
        .prepare(
            "SELECT e.seq, p.name, p.value FROM experiments e JOIN parameters p ON p.experiment_id = e.id
             ORDER BY e.seq",
        )
        .expect("a query");
    let mut run: Vec<experiments::Point> = Vec::new();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, f64>(2)?)))
        .expect("the parameters");
    for (seq, name, value) in rows.map(|r| r.expect("a row")) {
        let i = usize::try_from(seq - 1).expect("experiments count from 1");
        if run.len() <= i {
            run.resize(i + 1, Default::default());
        }
        run[i].insert(name, value);
    }
    let same = |a: &experiments::Point, b: &experiments::Point| {
        a.iter().all(|(k, v)| b.get(k).is_some_and(|w| (v - w).abs() <= 1e-6 * v.abs().max(1.0)))
    };
    run.iter().zip(plan).take_while(|(r, p)| same(p, r)).count()
}

/// `case`'s campaign with `seed`, with its own proposer or (`space_filling`) a space-filling design, run at its lab's
/// own time scale; with `noise`, its spectrometer renamed `uvvis_NOISE` (see [`rename_spectrometer`]).
fn campaign_in(case: &Case, space_filling: bool, seed: u64, noise: Option<u64>) -> CampaignTest {
    let text = std::fs::read_to_string(&case.campaign).expect("the campaign file");
    let start = text.find("protocol: \"").expect("a protocol line") + "protocol: \"".len();
    let rel = &text[start..start + text[start..].find('"').expect("a quoted path")];
    let protocol = case.campaign.parent().expect("a folder").join(rel);
    let mut text = replace_field(&text, "protocol", &format!("{:?}", protocol.display().to_string()));
    text = replace_field(&text, "seed", &seed.to_string());
    if space_filling {
        text = replace_field(&text, "proposer", "SpaceFilling");
    }
    let mut lab_text = std::fs::read_to_string(&case.lab).expect("the lab file");
    if case.fault_seeds {
        let at = lab_text.find("simulation: (seed: ").expect("a simulation seed") + "simulation: (seed: ".len();
        let end = at + lab_text[at..].find(',').expect("a comma after the seed");
        lab_text.replace_range(at..end, &(1000 + seed).to_string());
    }
    if let Some(k) = noise {
        lab_text = rename_spectrometer(&lab_text, &format!("uvvis_{k}"));
    }
    let t = CampaignTest::from_text("");
    let lab_path = t.dir.path().join("test.lab.ron");
    std::fs::write(&lab_path, &lab_text).expect("writing the lab");
    text = replace_field(&text, "lab", &format!("{:?}", lab_path.display().to_string()));
    std::fs::write(&t.campaign, &text).expect("writing the campaign");
    let lab =
        devices::load_lab(protocols::SourceFile::new(lab_path.display().to_string(), lab_text)).expect("the lab loads");
    t.time_scale(lab.simulation.time_scale)
}

/// `lab_text` with its instrument `uvvis` (a simulated spectrometer) named `name`. A simulated spectrometer draws its
/// shot and read noise from the lab's seed and its own name, and the lab's chemistry from the seed alone, so a run of
/// the renamed lab meets the same chemistry with other noise: the protocols name the spectrometer by its kind, and
/// the deck position keeps its name.
fn rename_spectrometer(lab_text: &str, name: &str) -> String {
    let instruments = lab_text.find("instruments: {").expect("an instruments map");
    let at = instruments + lab_text[instruments..].find("\"uvvis\": (").expect("an instrument `uvvis`");
    let mut out = lab_text.to_owned();
    out.replace_range(at..at + "\"uvvis\"".len(), &format!("{name:?}"));
    out
}

/// Plans and then runs `case` with `seed` (see [`campaign_in`]), the plan calibrated on `calibrate` if given.
fn plan_and_run(case: &Case, space_filling: bool, seed: u64, calibrate: Option<&Path>) -> (CampaignTest, Row) {
    plan_and_run_with(case, space_filling, seed, calibrate, None)
}

/// [`plan_and_run`], the spectrometer renamed for `noise` if given (see [`campaign_in`]).
fn plan_and_run_with(
    case: &Case,
    space_filling: bool,
    seed: u64,
    calibrate: Option<&Path>,
    noise: Option<u64>,
) -> (CampaignTest, Row) {
    let mut t = campaign_in(case, space_filling, seed, noise);
    if std::env::var("LAB_PLAN_KEEP").is_ok() {
        t.keep();
    }
    let draws = std::env::var("LAB_PLAN_DRAWS")
        .map_or(PlanOptions::default().draws, |n| n.parse().expect("LAB_PLAN_DRAWS: a count"));
    let options =
        PlanOptions { calibrate: calibrate.into_iter().map(Path::to_owned).collect(), draws, ..Default::default() };
    let plan = plan_file(&t.dir.path().join("test.lab.ron"), &t.campaign, &options).unwrap_or_else(|e| panic!("{e:?}"));
    let summary = t.run();
    let plan_proposals = plan.proposals.clone();
    let row = Row {
        run: summary.lab_seconds,
        failed: summary.failed,
        started: summary.started,
        stop: summary.stop_reason.clone(),
        alike: alike(&summary.db, &plan_proposals),
        lost: plan.lost_replies().map_or((0, String::new()), |l| lost_replies(&summary.db, l.each)),
        plan,
    };
    (t, row)
}

/// Where a run fell against its plan's draws: inside their spread (lowest to highest), or outside it.
fn spread(row: &Row) -> Option<(f64, f64, bool)> {
    let lo = row.plan.draws.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = row.plan.draws.iter().copied().fold(0.0, f64::max);
    (!row.plan.draws.is_empty()).then_some((lo, hi, (lo..=hi).contains(&row.run)))
}

/// The table's line for a row, and whether it holds: plan within 10% of the run, the run not below the bound.
fn line(what: &str, row: &Row) -> (String, bool) {
    let diff = (row.plan.estimate() - row.run) / row.run;
    let bound = row.plan.bounds.best();
    let spread = match spread(row) {
        Some((lo, hi, inside)) => format!(
            " (median of {} draws, {lo:.0} to {hi:.0}: {:+.1}% to {:+.1}%, the run {})",
            row.plan.draws.len(),
            100.0 * (lo - row.run) / row.run,
            100.0 * (hi - row.run) / row.run,
            if inside { "inside" } else { "OUTSIDE" }
        ),
        None => String::new(),
    };
    let lost = match row.plan.lost_replies() {
        Some(l) => format!(
            " (lost replies {:.1}, {} to {}: {:.0} to {:.0}{}; the run met {})",
            l.expected,
            l.few,
            l.many,
            l.range.0,
            l.range.1,
            if (l.range.0..=l.range.1).contains(&row.run) { ", the run inside" } else { ", the run outside" },
            row.lost.0
        ),
        None => String::new(),
    };
    let pace = format!(
        ", the planner {:.1} ns per unit of work ({} units)",
        row.plan.report.planning.as_secs_f64() * 1e9 / row.plan.report.work.max(1) as f64,
        row.plan.report.work
    );
    let mut failed =
        if row.failed > 0 { format!(", {} experiments failed in the run", row.failed) } else { String::new() };
    if row.started != row.plan.experiments || row.stop.is_some() || row.alike < row.started {
        failed += &format!(
            ", {} experiments planned and {} run, the first {} alike{}",
            row.plan.experiments,
            row.started,
            row.alike,
            row.stop.as_ref().map(|s| format!(" (stopped: {s})")).unwrap_or_default()
        );
    }
    failed += &pace;
    if !row.lost.1.is_empty() {
        failed += &format!("; lost: {}", row.lost.1);
    }
    let ok = diff.abs() <= 0.10 && row.run >= bound;
    (
        format!(
            "| {what} | {:.0}{spread}{lost} | {:.0} | {:+.1}% | {:.0} | {}{failed} |",
            row.plan.estimate(),
            row.run,
            100.0 * diff,
            bound,
            if ok { "yes" } else { "NO" }
        ),
        ok,
    )
}

#[test]
fn the_plan_of_the_first_campaign_is_within_a_tenth_of_its_run_and_below_its_bound_never() {
    let case = &cases()[0];
    let (_, row) = plan_and_run(case, true, 1, None);
    let (text, ok) = line("first, SpaceFilling, seed 1", &row);
    assert_eq!(row.failed, 0, "{text}");
    assert!(ok, "{text}\n{}", row.plan);
}

#[test]
#[ignore = "every campaign planned and run, minutes; cargo test --release -p tests --test integration plan_accuracy -- --ignored --nocapture"]
fn plan_against_run_for_every_campaign_with_both_proposers_over_five_seeds() {
    println!(
        "| campaign, proposer, seed | plan, lab s | run, lab s | plan - run | lower bound | within 10%, bound held |"
    );
    println!("|---|---|---|---|---|---|");
    let mut misses = Vec::new();
    // Rows within 10%, of all; rows whose run fell inside the plan's draws, of those with draws.
    let (mut within, mut rows, mut inside, mut drawn) = (0, 0, 0, 0);
    for case in selected_cases() {
        let proposers = std::env::var("LAB_PLAN_PROPOSERS").unwrap_or_default();
        for space_filling in [true, false].into_iter().filter(|sf| match proposers.as_str() {
            "own" => !sf,
            "SpaceFilling" => *sf,
            _ => true,
        }) {
            for &seed in &selected_seeds() {
                let what = format!(
                    "{}, {}, seed {seed}",
                    case.name,
                    if space_filling { "SpaceFilling" } else { "own proposer" }
                );
                let (_, row) = plan_and_run(&case, space_filling, seed, None);
                let (text, ok) = line(&what, &row);
                println!("{text}");
                rows += 1;
                within += usize::from((row.plan.estimate() - row.run).abs() <= 0.10 * row.run);
                if let Some((_, _, is_inside)) = spread(&row) {
                    drawn += 1;
                    inside += usize::from(is_inside);
                }
                if !ok {
                    misses.push(text);
                }
            }
        }
    }
    println!(
        "plan within 10% of the run: {within} of {rows} rows; the run inside the plan's draws: {inside} of {drawn}"
    );
    assert!(misses.is_empty(), "rows that missed:\n{}", misses.join("\n"));
}

#[test]
#[ignore = "four real campaigns; cargo test --release -p tests --test integration plan_accuracy -- --ignored --nocapture"]
fn durations_calibrated_on_one_run_predict_the_next_within_five_percent() {
    println!("| campaign | run 2, lab s | plan from the lab file | plan calibrated on run 1 |");
    println!("|---|---|---|---|");
    // `first` and `demo` by default; `LAB_PLAN_CASES` names others (`load`, whose run's pace is this machine's).
    let chosen =
        if std::env::var("LAB_PLAN_CASES").is_ok() { selected_cases() } else { cases().into_iter().take(2).collect() };
    for case in &chosen {
        // The first run writes the record the durations are fitted to; the second, with another seed, is predicted.
        let (first, first_row) = plan_and_run(case, true, 1, None);
        println!("run 1: {:.0} lab s, planned {:.0}", first_row.run, first_row.plan.estimate());
        let (_, second) = plan_and_run(case, true, 2, Some(&first.db));
        let (fit, before) = second.plan.calibration.clone().expect("a calibrated plan");
        let off = |plan: f64| 100.0 * (plan - second.run) / second.run;
        println!(
            "| {} | {:.0} | {before:.0} ({:+.1}%) | {:.0} ({:+.1}%) |",
            case.name,
            second.run,
            off(before),
            second.plan.estimate(),
            off(second.plan.estimate())
        );
        println!("{}", fit.changes.join("\n"));
        assert!(
            off(second.plan.estimate()).abs() <= 5.0,
            "{}: the calibrated plan is off:\n{}",
            case.name,
            second.plan
        );
    }
}

#[test]
#[ignore = "minutes; LAB_PLAN_CASES=first,demo,plate cargo test -p tests --test integration plan_accuracy::runs -- --ignored --nocapture"]
fn runs_of_a_model_based_campaign_spread_over_the_spectrometers_noise() {
    // How far apart runs of one campaign land when only the noise of its readings differs: the same files, seeds
    // and chemistry, the spectrometer renamed (`rename_spectrometer`) 0 to LAB_PLAN_NOISES times (5 by default).
    // No plan can be closer to every one of them than half their spread.
    let noises: u64 = std::env::var("LAB_PLAN_NOISES").map_or(5, |n| n.parse().expect("LAB_PLAN_NOISES: a count"));
    println!("| campaign, seed | runs, lab s (the lab's own noise first) | lowest to highest, around their median |");
    println!("|---|---|---|");
    for case in selected_cases() {
        for &seed in &selected_seeds() {
            let runs: Vec<f64> = std::iter::once(None)
                .chain((1..=noises).map(Some))
                .map(|noise| {
                    let t = campaign_in(&case, false, seed, noise);
                    let summary = t.run();
                    assert_eq!(summary.failed, 0, "{}, seed {seed}, noise {noise:?}: experiments failed", case.name);
                    summary.lab_seconds
                })
                .collect();
            let mut sorted = runs.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let each: Vec<String> = runs.iter().map(|r| format!("{r:.0}")).collect();
            println!(
                "| {}, seed {seed} | {} | {:+.1}% to {:+.1}% |",
                case.name,
                each.join(", "),
                100.0 * (sorted[0] / median - 1.0),
                100.0 * (sorted[sorted.len() - 1] / median - 1.0)
            );
        }
    }
}
