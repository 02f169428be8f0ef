//! The scheduler's invariants, over random labs and random DAGs of work, under every policy and with noise.
//!
//! Each case builds a lab (instruments of a few kinds), a list of jobs whose steps form random DAGs on instrument
//! kinds or named instruments, with minimum and maximum waits, and runs them through the real scheduler in the
//! discrete-event simulation (`controller::plan::simulate`), recording to a real `lab.db` in a temporary folder. The
//! record is then read back and must show that:
//!
//! - every job completed and every step succeeded, on an instrument that can run it;
//! - no instrument ran two steps at once;
//! - the record's dependencies of each step are the job's, and every step started after each step in its `after`
//!   ended, plus its `wait`;
//! - a step with a maximum wait (`within`) started within it of its last dependency's end (runs without noise; with
//!   noise a step may overrun the slot kept for another, so there the wait is only reported);
//! - no more experiments ran at once than the in-flight limit;
//! - each step ran for its own duration, within the noise;
//! - a `keep` step's instrument ran its experiment's next step that can run there, with no other experiment's step in
//!   between, unless the record says the keep was let go, and then nothing else started there before it said so;
//! - the report's makespan and busy times agree with the record.
//!
//! A second property checks the planner alone on random problems: its plans respect precedence, minimum waits,
//! candidates and fixed operations, and never overlap two operations on one resource.
//!
//! Cases are few and the seed is fixed, so `cargo test` stays quick and repeatable; `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` explore further (RELIABILITY.md).

use std::collections::{BTreeMap, HashMap};

use controller::plan::simulate::{Noise, Report, Setup};
use controller::record::{CampaignIds, CampaignRow, Record};
use controller::schedule::planner::{self, Operation, Problem};
use controller::schedule::resources::{Job, JobStep, Policy};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use protocols::units::Duration;
use protocols::{InstrumentKind, InstrumentRef, StepRules};

/// The default case count and a fixed seed, unless `PROPTEST_CASES` or `PROPTEST_RNG_SEED` say otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x5ced);
    }
    // A failure prints its smallest case and the seed reproduces it; no regression files are written.
    c.failure_persistence = None;
    c
}

/// A lab: for each instrument, its kind.
#[derive(Debug, Clone)]
struct Lab {
    kinds: Vec<InstrumentKind>,
}

impl Lab {
    fn name(&self, i: usize) -> String {
        format!("{}_{i}", self.kinds[i].name().to_lowercase())
    }

    fn instruments(&self) -> Vec<(String, Option<InstrumentKind>, Option<String>)> {
        (0..self.kinds.len()).map(|i| (self.name(i), Some(self.kinds[i]), None)).collect()
    }

    /// Whether instrument `name` may run a step `on`.
    fn can_run(&self, name: &str, on: &InstrumentRef) -> bool {
        (0..self.kinds.len()).any(|i| {
            self.name(i) == name
                && match on {
                    InstrumentRef::Kind(k) => self.kinds[i] == *k,
                    InstrumentRef::Named(n) => n == name,
                }
        })
    }
}

/// A step as generated: which instrument (by index: named, or any of its kind), how long, after which earlier
/// steps, and its waits.
#[derive(Debug, Clone)]
struct StepSpec {
    instrument: usize,
    by_kind: bool,
    duration: f64,
    after: Vec<usize>,
    wait: Option<f64>,
    within: Option<f64>,
    keep: bool,
}

#[derive(Debug, Clone)]
struct Case {
    lab: Lab,
    jobs: Vec<Vec<StepSpec>>,
    in_flight: usize,
    noise: Noise,
}

impl Case {
    fn jobs(&self) -> Vec<Job> {
        self.jobs
            .iter()
            .enumerate()
            .map(|(j, steps)| Job {
                name: format!("job {j}"),
                steps: steps
                    .iter()
                    .enumerate()
                    .map(|(k, s)| {
                        let i = s.instrument % self.lab.kinds.len();
                        JobStep {
                            name: format!("s{k}"),
                            on: if s.by_kind {
                                InstrumentRef::Kind(self.lab.kinds[i])
                            } else {
                                InstrumentRef::Named(self.lab.name(i))
                            },
                            action: None,
                            duration: s.duration,
                            after: s.after.clone(),
                            rules: StepRules {
                                wait: s.wait.map(Duration),
                                within: s.within.map(Duration),
                                keep: s.keep,
                                ..StepRules::default()
                            },
                        }
                    })
                    .collect(),
            })
            .collect()
    }
}

fn lab() -> impl Strategy<Value = Lab> {
    let kinds = [
        InstrumentKind::SyringePump,
        InstrumentKind::Hotplate,
        InstrumentKind::Spectrometer,
        InstrumentKind::Gantry,
        InstrumentKind::Balance,
    ];
    prop::collection::vec(prop::sample::select(kinds.to_vec()), 1..7).prop_map(|kinds| Lab { kinds })
}

/// A job of up to `max` steps; each waits for a random set of earlier steps, so jobs are arbitrary DAGs.
fn job(max: usize) -> impl Strategy<Value = Vec<StepSpec>> {
    let step = (
        any::<usize>(),
        any::<bool>(),
        prop_oneof![1 => Just(0.0), 6 => 1.0f64..300.0],
        any::<u16>(),
        prop::option::weighted(0.2, 1.0f64..60.0),
        prop::option::weighted(0.15, 0.0f64..600.0),
        prop::bool::weighted(0.15),
    );
    prop::collection::vec(step, 1..=max).prop_map(|steps| {
        steps
            .into_iter()
            .enumerate()
            .map(|(k, (instrument, by_kind, duration, deps, wait, slack, keep))| {
                let after: Vec<usize> = (0..k.min(16)).filter(|b| deps & (1 << b) != 0).collect();
                let has_after = !after.is_empty();
                StepSpec {
                    instrument,
                    by_kind,
                    duration,
                    after,
                    wait: wait.filter(|_| has_after),
                    within: slack.filter(|_| has_after).map(|s| s + wait.unwrap_or(0.0)),
                    keep,
                }
            })
            .collect()
    })
}

fn case() -> impl Strategy<Value = Case> {
    (lab(), prop::collection::vec(job(7), 1..10), 1usize..6, prop_oneof![Just(0.0), Just(0.3)], any::<u64>()).prop_map(
        |(lab, jobs, in_flight, spread, seed)| Case { lab, jobs, in_flight, noise: Noise { spread, seed, bias: 0.0 } },
    )
}

/// One step as the record has it.
#[derive(Debug)]
struct Row {
    experiment: i64,
    name: String,
    after: Vec<String>,
    status: String,
    instrument: Option<String>,
    started: Option<f64>,
    finished: Option<f64>,
    /// The order in which steps were dispatched (the id of its `running` event), which orders steps that start at
    /// the same lab time.
    dispatched: Option<i64>,
    /// The id of its `succeeded` event, in the same order.
    ended: Option<i64>,
}

/// What one run did, as the record has it.
struct Run {
    report: Report,
    rows: Vec<Row>,
    /// Each experiment's start and end.
    experiments: Vec<(f64, f64)>,
    /// Every `keep` the scheduler let go: the instrument and the lab time the record says so.
    released: Vec<(String, f64)>,
    /// Every step the record said may start after its maximum wait, before it did: the experiment's number in the
    /// campaign (from 1) and the step's name.
    may_start_late: Vec<(usize, String)>,
}

/// How long the runs of one case may take before the test fails instead of hanging (they take milliseconds).
const RUN_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// [`run_recorded`] on a thread of its own, failing the test if it does not end within [`RUN_BOUND`]: a scheduler
/// that loops forever fails here with the case that made it loop.
fn run(case: &Case, policies: &[Policy]) -> Vec<Run> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (c, p) = (case.clone(), policies.to_vec());
    std::thread::spawn(move || {
        let _ = tx.send(run_recorded(&c, &p));
    });
    match rx.recv_timeout(RUN_BOUND) {
        Ok(result) => result,
        Err(_) => panic!("{policies:?} did not end within {RUN_BOUND:?}: {case:?}"),
    }
}

/// Runs `case` under each policy, each as a campaign of its own in one fresh `lab.db` (starting a record's writer
/// costs more than a whole simulated run, so a case starts one).
fn run_recorded(case: &Case, policies: &[Policy]) -> Vec<Run> {
    // The record syncs every commit; in memory (`/dev/shm`) that costs nothing, on a disk it is most of the run.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temporary folder");
    let db = dir.path().join("lab.db");
    let mut record = Record::open(&db).expect("a fresh record");
    // Every campaign is begun before the writer starts, so each is given a range of ids of its own.
    let ids: Vec<CampaignIds> = (0..policies.len() as i64)
        .map(|k| {
            let ids = record.begin_campaign(&CampaignRow::bench()).expect("a campaign row");
            let base = k * 1_000_000;
            CampaignIds {
                first_experiment: ids.first_experiment + base,
                first_step: ids.first_step + base,
                first_proposal: ids.first_proposal + base,
                ..ids
            }
        })
        .collect();
    let (recorder, writer) = record.start_writer();
    let reports: Vec<Report> = policies
        .iter()
        .zip(&ids)
        .map(|(&policy, &ids)| {
            let jobs = case.jobs();
            let mut setup = Setup::new(&case.lab.instruments(), policy, recorder.clone());
            setup.recorded_jobs(jobs, case.in_flight, ids);
            setup.run(case.noise)
        })
        .collect();
    recorder.flush();
    drop(recorder);
    writer.finish().expect("the record writer finishes");

    let conn = rusqlite::Connection::open(&db).expect("the record opens");
    reports
        .into_iter()
        .zip(&ids)
        .map(|(report, ids)| {
            let mut stmt = conn
                .prepare(
                    "SELECT s.experiment_id, s.step, s.after, s.status, s.instrument, s.started_at, s.finished_at,
                     (SELECT min(id) FROM step_events v WHERE v.step_id = s.id AND v.status = 'running'),
                     (SELECT min(id) FROM step_events v WHERE v.step_id = s.id AND v.status = 'succeeded')
                     FROM steps s JOIN experiments e ON e.id = s.experiment_id WHERE e.campaign_id = ?1
                     ORDER BY s.id",
                )
                .expect("a query");
            let rows = stmt
                .query_map([ids.campaign], |r| {
                    let after: String = r.get(2)?;
                    Ok(Row {
                        experiment: r.get(0)?,
                        name: r.get(1)?,
                        after: serde_json::from_str(&after).expect("a step's `after` is a JSON list of names"),
                        status: r.get(3)?,
                        instrument: r.get(4)?,
                        started: r.get(5)?,
                        finished: r.get(6)?,
                        dispatched: r.get(7)?,
                        ended: r.get(8)?,
                    })
                })
                .expect("rows")
                .map(|r| r.expect("a row"))
                .collect();
            let mut stmt = conn
                .prepare("SELECT started_at, finished_at FROM experiments WHERE campaign_id = ?1 ORDER BY id")
                .expect("a query");
            let experiments = stmt
                .query_map([ids.campaign], |r| {
                    Ok((r.get::<_, f64>(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN)))
                })
                .expect("rows")
                .map(|r| r.expect("a row"))
                .collect();
            let mut stmt = conn
                .prepare(
                    "SELECT instrument, at FROM events WHERE campaign_id = ?1 AND message LIKE '%keep was let go%'
                     ORDER BY id",
                )
                .expect("a query");
            let released = stmt
                .query_map([ids.campaign], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))
                .expect("rows")
                .map(|r| r.expect("a row"))
                .collect();
            let mut stmt = conn
                .prepare("SELECT message FROM events WHERE campaign_id = ?1 AND message LIKE '%may start late'")
                .expect("a query");
            let may_start_late = stmt
                .query_map([ids.campaign], |r| r.get::<_, String>(0))
                .expect("rows")
                .map(|m| {
                    let m = m.expect("a row");
                    let seq = m
                        .split("of experiment #")
                        .nth(1)
                        .and_then(|t| t.split(' ').next())
                        .and_then(|n| n.parse().ok());
                    let step = m.rsplit(": `").next().and_then(|t| t.split('`').next()).map(str::to_owned);
                    (seq.expect("the experiment's number"), step.expect("the step's name"))
                })
                .collect();
            Run { report, rows, experiments, released, may_start_late }
        })
        .collect()
}

/// Checks every invariant of one run of `case` under `policy`; returns the first that does not hold.
fn check(case: &Case, policy: Policy, run: &Run) -> Result<(), TestCaseError> {
    const EPS: f64 = 1e-6;
    let Run { report, rows, experiments, released, may_start_late } = run;
    let jobs = case.jobs();
    let total: usize = jobs.iter().map(|j| j.steps.len()).sum();
    prop_assert!(report.completed, "{policy:?}: the run did not complete: {report:?}");
    prop_assert_eq!(report.experiments, jobs.len(), "{:?}: every job completes", policy);
    prop_assert_eq!(rows.len(), total, "{:?}: every step is in the record", policy);

    // Each recorded experiment's steps, in job order (experiments start in job order).
    let mut by_experiment: BTreeMap<i64, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        by_experiment.entry(r.experiment).or_default().push(r);
    }
    let mut busy: HashMap<String, f64> = HashMap::new();
    let mut makespan = 0.0f64;
    for (j, (job, (_, steps))) in jobs.iter().zip(&by_experiment).enumerate() {
        prop_assert_eq!(steps.len(), job.steps.len(), "{:?}: every step of {} is in the record", policy, &job.name);
        for (spec, r) in job.steps.iter().zip(steps) {
            prop_assert_eq!(&r.status, "succeeded", "{:?}: step {:?}", policy, r);
            let (Some(inst), Some(start), Some(finish)) = (&r.instrument, r.started, r.finished) else {
                return Err(TestCaseError::fail(format!("{policy:?}: step without instrument or times: {r:?}")));
            };
            prop_assert!(case.lab.can_run(inst, &spec.on), "{:?}: {} cannot run {:?}", policy, inst, spec.on);
            let duration = finish - start;
            // The simulation draws each step's real duration within the spread of the job's own duration.
            let (low, high) = (1.0 - case.noise.spread, 1.0 + case.noise.spread);
            prop_assert!(
                duration >= spec.duration * low - EPS && duration <= spec.duration * high + EPS,
                "{:?}: step {:?} ran {} s, expected {} s within {}..{} of it",
                policy,
                r,
                duration,
                spec.duration,
                low,
                high
            );
            // Dependencies come from the job, not from the record, whose column must say the same.
            let names: Vec<&str> = spec.after.iter().map(|&a| job.steps[a].name.as_str()).collect();
            prop_assert_eq!(&r.after, &names, "{:?}: the record's dependencies of `{}`", policy, &r.name);
            let wait = spec.rules.wait.map_or(0.0, |w| w.0);
            let mut last = f64::NEG_INFINITY;
            for &dep in &spec.after {
                let dep_end = steps[dep].finished.unwrap_or(f64::NAN);
                last = last.max(dep_end);
                prop_assert!(
                    start + EPS >= dep_end + wait,
                    "{:?}: `{}` started at {} but `{}` ended at {} and it must wait {} s",
                    policy,
                    r.name,
                    start,
                    job.steps[dep].name,
                    dep_end,
                    wait
                );
            }
            // Where waiting could last forever a step starts holding what it can, and says which follower may start
            // late; only that one may.
            let warned = may_start_late.iter().any(|(seq, name)| *seq == j + 1 && *name == r.name);
            if let Some(within) = spec.rules.within
                && case.noise.spread == 0.0
                && !warned
            {
                prop_assert!(
                    start <= last + within.0 + EPS,
                    "{:?}: `{}` started at {}, {} s after its last dependency ended at {}; its maximum wait is {} s",
                    policy,
                    r.name,
                    start,
                    start - last,
                    last,
                    within.0
                );
            }
            *busy.entry(inst.clone()).or_default() += duration;
            makespan = makespan.max(finish);
        }
    }

    // `keep`: the experiment's next step that can run on a keep step's instrument runs there, and no other
    // experiment's step runs there in between, unless the record says the keep was let go (for a promise to another
    // experiment's maximum wait, or because kept instruments waited on each other); then nothing of another
    // experiment started there before the record said so.
    for (job, (_, steps)) in jobs.iter().zip(&by_experiment) {
        for (k, (spec, r)) in job.steps.iter().zip(steps).enumerate() {
            let (true, Some(inst), Some(finished)) = (spec.rules.keep, &r.instrument, r.finished) else {
                continue;
            };
            // The kept step: the next one that could run on the instrument and was dispatched after this one ended.
            let kept = job
                .steps
                .iter()
                .zip(steps.iter())
                .skip(k + 1)
                .find(|(s, row)| case.lab.can_run(inst, &s.on) && row.dispatched > r.ended);
            // Nothing left to keep the instrument for.
            let Some((_, next)) = kept else { continue };
            let until = next.started.unwrap_or(f64::NAN);
            let let_go = released
                .iter()
                .filter(|(i, at)| i == inst && *at + EPS >= finished && *at <= until + EPS)
                .map(|(_, at)| *at)
                .fold(f64::INFINITY, f64::min);
            if let_go.is_infinite() {
                prop_assert_eq!(
                    next.instrument.as_deref(),
                    Some(inst.as_str()),
                    "{:?}: `{}` keeps {} for `{}`",
                    policy,
                    &r.name,
                    inst,
                    &next.name
                );
            }
            for other in rows {
                if other.experiment != r.experiment
                    && other.instrument.as_deref() == Some(inst.as_str())
                    && other.dispatched > r.ended
                    && other.dispatched < next.dispatched
                    && other.started.is_some_and(|s| s + EPS < let_go)
                {
                    return Err(TestCaseError::fail(format!(
                        "{policy:?}: {inst} is kept after `{}` for `{}`, but {other:?} ran in between{}",
                        r.name,
                        next.name,
                        if let_go.is_finite() {
                            format!(" before the keep was let go at {let_go}")
                        } else {
                            String::new()
                        }
                    )));
                }
            }
        }
    }

    // No instrument runs two steps at once.
    let mut by_instrument: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for r in rows {
        if let (Some(i), Some(s), Some(f)) = (&r.instrument, r.started, r.finished) {
            by_instrument.entry(i).or_default().push((s, f));
        }
    }
    for (inst, spans) in &mut by_instrument {
        spans.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
        for w in spans.windows(2) {
            prop_assert!(w[1].0 + EPS >= w[0].1, "{:?}: {} ran {:?} and {:?} at once", policy, inst, w[0], w[1]);
        }
    }

    // The in-flight limit holds: count experiments running at each start.
    for &(start, _) in experiments {
        let running = experiments.iter().filter(|(s, f)| *s <= start + EPS && *f > start + EPS).count();
        prop_assert!(running <= case.in_flight, "{:?}: {} experiments at once at {}", policy, running, start);
    }

    // The report agrees with the record.
    prop_assert!(
        (report.makespan - makespan).abs() < EPS,
        "{:?}: makespan {} vs {}",
        policy,
        report.makespan,
        makespan
    );
    for (name, b) in &report.busy {
        let recorded = busy.get(name).copied().unwrap_or(0.0);
        prop_assert!((b - recorded).abs() < 1e-6 * (1.0 + b), "{:?}: {} busy {} vs {}", policy, name, b, recorded);
    }
    Ok(())
}

const POLICIES: [Policy; 3] =
    [Policy::Greedy, Policy::Planned { replan: true, budget: None }, Policy::Planned { replan: false, budget: None }];

proptest! {
    #![proptest_config(config(16))]

    /// Under every policy, with or without noise: every job completes, no instrument is double-booked, every
    /// dependency and minimum wait holds, the in-flight limit holds, and the record matches the report.
    #[test]
    fn proptest_no_instrument_double_booked_and_every_dependency_holds(case in case()) {
        for (policy, run) in POLICIES.into_iter().zip(run(&case, &POLICIES)) {
            check(&case, policy, &run)?;
        }
    }
}

/// A random planning problem: operations in jobs of random DAGs, each with one to three candidate resources, some
/// already running.
fn problem() -> impl Strategy<Value = Problem> {
    let op = (
        0.0f64..100.0,
        prop::collection::vec(any::<usize>(), 1..4),
        any::<u16>(),
        prop::option::weighted(0.2, 0.0f64..30.0),
        prop::option::weighted(0.2, 0.0f64..100.0),
    );
    (1usize..6, prop::collection::vec(prop::collection::vec(op, 1..8), 1..8), 0.0f64..50.0).prop_map(
        |(resources, jobs, now)| {
            let mut ops = Vec::new();
            for (j, job) in jobs.into_iter().enumerate() {
                let base = ops.len();
                for (k, (duration, candidates, deps, min_wait, max_wait)) in job.into_iter().enumerate() {
                    let mut candidates: Vec<usize> = candidates.into_iter().map(|c| c % resources).collect();
                    candidates.sort_unstable();
                    candidates.dedup();
                    let preds: Vec<usize> = (0..k.min(16)).filter(|b| deps & (1 << b) != 0).map(|b| base + b).collect();
                    ops.push(Operation {
                        job: j,
                        duration,
                        candidates,
                        preds,
                        release: now,
                        min_wait: min_wait.unwrap_or(0.0),
                        max_wait,
                        fixed: None,
                    });
                }
            }
            Problem { resources, available: Vec::new(), ops }
        },
    )
}

proptest! {
    #![proptest_config(config(64))]

    /// A plan starts every operation on one of its candidates, after its release, after each predecessor's end plus
    /// its minimum wait, and never runs two operations on one resource at once.
    #[test]
    fn proptest_plans_respect_precedence_and_never_overlap(p in problem(), budget in 8usize..64, seed in any::<u64>()) {
        const EPS: f64 = 1e-6;
        let plan = planner::plan(&p, budget, seed);
        prop_assert_eq!(plan.start.len(), p.ops.len());
        let mut spans: Vec<Vec<(f64, f64)>> = vec![Vec::new(); p.resources];
        for (i, op) in p.ops.iter().enumerate() {
            let (start, r) = (plan.start[i], plan.resource[i]);
            prop_assert!(op.candidates.contains(&r), "operation {} on {} not in {:?}", i, r, op.candidates);
            prop_assert!(start + EPS >= op.release, "operation {} starts at {} before its release {}", i, start, op.release);
            for &q in &op.preds {
                prop_assert!(
                    start + EPS >= plan.end(&p, q) + op.min_wait,
                    "operation {} starts at {} but {} ends at {} and it waits {}", i, start, q, plan.end(&p, q), op.min_wait
                );
            }
            spans[r].push((start, plan.end(&p, i)));
        }
        for (r, s) in spans.iter_mut().enumerate() {
            s.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            for w in s.windows(2) {
                prop_assert!(w[1].0 + EPS >= w[0].1, "resource {} runs {:?} and {:?} at once", r, w[0], w[1]);
            }
        }
        let makespan = (0..p.ops.len()).map(|i| plan.end(&p, i)).fold(0.0, f64::max);
        prop_assert!((plan.makespan - makespan).abs() < EPS, "makespan {} vs {}", plan.makespan, makespan);
        let (path, busiest) = planner::lower_bound(&p);
        prop_assert!(plan.makespan + EPS >= path.max(busiest), "makespan {} below the lower bound", plan.makespan);
    }
}

/// Giffler–Thompson picks among the operations that could start before the earliest completion; an operation that
/// takes no time starts exactly at it, so the set was empty and the planner panicked ("chosen from ready") on any
/// problem with a zero-duration operation, such as a workload step of `duration_s: 0` (found by
/// `proptest_no_instrument_double_booked_and_every_dependency_holds`).
#[test]
fn an_operation_that_takes_no_time_is_planned() {
    let op = |duration: f64, preds: Vec<usize>| Operation {
        job: 0,
        duration,
        candidates: vec![0],
        preds,
        release: 0.0,
        min_wait: 0.0,
        max_wait: None,
        fixed: None,
    };
    let p =
        Problem { resources: 1, available: Vec::new(), ops: vec![op(0.0, vec![]), op(5.0, vec![0]), op(0.0, vec![1])] };
    let plan = planner::plan(&p, 16, 0);
    assert_eq!(plan.start, vec![0.0, 0.0, 5.0]);
    assert_eq!(plan.makespan, 5.0);
}

/// Asserts `case` completes under every policy and keeps every invariant.
#[track_caller]
fn assert_completes(case: &Case, policies: &[Policy]) {
    for (&policy, run) in policies.iter().zip(run(case, policies)) {
        check(case, policy, &run).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn step(instrument: usize, by_kind: bool, duration: f64, after: Vec<usize>, within: Option<f64>) -> StepSpec {
    StepSpec { instrument, by_kind, duration, after, wait: None, within, keep: false }
}

/// A regression (found by the property above): two balances and two jobs with maximum waits deadlocked under
/// `Policy::Planned { replan: false }`. A step that must be followed within a maximum wait starts only once its
/// follower's instrument is held; the plan's instrument for it could never be held and a blind plan is never redone.
/// Now a follower is held on another instrument that can run it, and may run there.
#[test]
fn a_blind_plan_with_maximum_waits_completes() {
    let case = Case {
        lab: Lab { kinds: vec![InstrumentKind::Balance, InstrumentKind::Balance] },
        jobs: vec![
            vec![
                step(1, false, 120.0, vec![], None),
                step(1, false, 140.0, vec![0], None),
                step(0, false, 70.0, vec![0], None),
                step(0, true, 200.0, vec![1], Some(574.0)),
                step(0, false, 250.0, vec![0], None),
            ],
            vec![step(0, true, 260.0, vec![], None), step(1, false, 300.0, vec![0], Some(600.0))],
        ],
        in_flight: 2,
        noise: Noise::NONE,
    };
    assert_completes(&case, &POLICIES);
}

/// A regression (found by the property above): one instrument, one job of three steps, each of the last two with a
/// maximum wait after the one before. `s0` held the instrument for `s1`; `s1` then had to hold it for `s2`, and
/// `hold_followers` (`schedule/systems.rs`) counted `s1`'s own hold against it, so `s1` never started. A step's own
/// holds no longer count against its followers'.
#[test]
fn a_chain_of_maximum_waits_on_one_instrument_completes() {
    let case = Case {
        lab: Lab { kinds: vec![InstrumentKind::Spectrometer] },
        jobs: vec![vec![
            step(0, false, 150.0, vec![], None),
            step(0, false, 190.0, vec![0], Some(560.0)),
            step(0, false, 290.0, vec![1], Some(300.0)),
        ]],
        in_flight: 1,
        noise: Noise::NONE,
    };
    assert_completes(&case, &POLICIES);
}

/// A regression (found by the property above): two hotplates; job A runs `a0` on `hotplate_1` and then `a1` on any
/// hotplate within 400 s; job B runs two steps on `hotplate_0`. Starting `a0` held `hotplate_0` for `a1`, `a1` ran on
/// `hotplate_1`, and the hold on `hotplate_0` was never released, so B's second step waited forever. A step's holds
/// now go from every instrument when it starts, fails or is skipped.
#[test]
fn a_hold_left_on_an_instrument_the_follower_did_not_use_is_released() {
    let case = Case {
        lab: Lab { kinds: vec![InstrumentKind::Hotplate, InstrumentKind::Hotplate] },
        jobs: vec![
            vec![step(1, false, 260.0, vec![], None), step(0, true, 70.0, vec![0], Some(400.0))],
            vec![step(0, false, 280.0, vec![], None), step(0, false, 80.0, vec![], None)],
        ],
        in_flight: 2,
        noise: Noise::NONE,
    };
    assert_completes(&case, &POLICIES);
}

/// `keep`: job A dispenses on the pump, heats, and dispenses again, keeping the pump between; job B's dispense,
/// which is ready all along, must wait until A's second dispense is done instead of slipping in while A heats.
#[test]
fn a_kept_instrument_waits_for_its_experiment() {
    let mut dispense = step(0, false, 60.0, vec![], None);
    dispense.keep = true;
    let case = Case {
        lab: Lab { kinds: vec![InstrumentKind::SyringePump, InstrumentKind::Hotplate] },
        jobs: vec![
            vec![dispense, step(1, false, 600.0, vec![0], None), step(0, false, 60.0, vec![1], None)],
            vec![step(0, false, 30.0, vec![], None)],
        ],
        in_flight: 2,
        noise: Noise::NONE,
    };
    for (&policy, run) in POLICIES.iter().zip(run(&case, &POLICIES)) {
        check(&case, policy, &run).unwrap_or_else(|e| panic!("{e}"));
        assert!(run.released.is_empty(), "{policy:?}: nothing forced the keep to go");
        let start = |exp: usize, name: &str| {
            let first = run.rows.iter().map(|r| r.experiment).min().unwrap();
            run.rows.iter().find(|r| r.experiment == first + exp as i64 && r.name == name).unwrap().started.unwrap()
        };
        assert!(
            start(1, "s0") >= 720.0 - 1e-6,
            "{policy:?}: B's dispense waits for A's second (starts {})",
            start(1, "s0")
        );
    }
}

/// A regression (found when the property above began to check maximum waits): `s0` must be followed by `s2` on the
/// hotplate within 52 s, but the hotplate had just been given `s1` (162 s) in the same frame, and the hold for `s2`
/// was made on it anyway, so `s2` started 71 s late. A busy instrument (or one given a step in the same frame) is now
/// held only if it is expected to be free before the follower's latest start; otherwise `s0` waits.
#[test]
fn a_follower_is_not_held_on_an_instrument_busy_past_its_latest_start() {
    let case = Case {
        lab: Lab {
            kinds: vec![
                InstrumentKind::Gantry,
                InstrumentKind::SyringePump,
                InstrumentKind::Hotplate,
                InstrumentKind::Spectrometer,
            ],
        },
        jobs: vec![vec![
            step(3, false, 91.1, vec![], None),
            step(2, false, 161.8, vec![], None),
            step(2, true, 0.0, vec![0], Some(52.5)),
        ]],
        in_flight: 3,
        noise: Noise::NONE,
    };
    assert_completes(&case, &POLICIES);
}

/// A regression (found as the one above): `s2` must start within 0 s of both `s0` (275 s) and `s1` (no time), which
/// start in the same frame. Each saw the other still waiting, so neither was the last to start and nothing was held
/// for `s2`; `s3` took the spectrometer first and `s2` started 1 s late. A step is now the last of a follower's
/// dependencies to start when the others have succeeded, run, or were given an instrument in the same frame.
#[test]
fn a_follower_of_dependencies_that_start_together_is_held() {
    let case = Case {
        lab: Lab { kinds: vec![InstrumentKind::Spectrometer, InstrumentKind::Spectrometer] },
        jobs: vec![vec![
            step(0, false, 275.4, vec![], None),
            step(1, false, 0.0, vec![], None),
            step(0, false, 0.0, vec![0, 1], Some(0.0)),
            step(0, false, 1.0, vec![], None),
        ]],
        in_flight: 1,
        noise: Noise::NONE,
    };
    assert_completes(&case, &POLICIES);
}

/// A regression (found as the one above): on one pump, `s0` keeps the pump for its experiment's next step, `s3`
/// (199 s), while `s4` must start 1 s after `s0` ends and is held there; the keep won and `s4` started 199 s late. A
/// keep now yields to any maximum wait already promised on its instrument, its own experiment's too, and the record
/// says so.
#[test]
fn a_keep_yields_to_a_maximum_wait_of_its_own_experiment() {
    let mut keep = step(0, false, 1.0, vec![], None);
    keep.keep = true;
    let mut late = step(0, false, 0.0, vec![0, 1, 2], Some(1.0));
    late.wait = Some(1.0);
    let case = Case {
        lab: Lab { kinds: vec![InstrumentKind::SyringePump] },
        jobs: vec![vec![
            keep,
            step(0, false, 0.0, vec![], None),
            step(0, false, 0.0, vec![1], None),
            step(0, false, 198.8, vec![], None),
            late,
        ]],
        in_flight: 1,
        noise: Noise::NONE,
    };
    assert_completes(&case, &POLICIES);
}
