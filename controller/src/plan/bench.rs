//! `lab bench`: the scheduler's benchmarks, printed as tables.
//!
//! `schedule` runs a workload through the real scheduler in simulated time and compares its makespan with the lower
//! bound (and, when given, the best known); `noise` reruns it with real durations drawn around the estimates, online
//! replanning against the first plan executed blindly; `dispatch` measures the controller's own time per step with
//! zero-latency simulated instruments at growing queue sizes; `load` runs a lab of 100 instruments through 10,000
//! experiments, recorded, and reports time, memory and the record's size.

use std::fmt::Write;
use std::time::Instant;

use crate::plan::simulate::{Noise, Report, Setup};
use crate::plan::workload::Workload;
use crate::record::Recorder;
use crate::schedule::planner;
use crate::schedule::resources::{Job, JobStep, Policy};

/// Runs a workload through the scheduler in simulated time.
pub fn run_workload(w: &Workload, policy: Policy, noise: Noise, recorder: Recorder) -> Report {
    let devices: Vec<(String, Option<protocols::InstrumentKind>, Option<String>)> =
        w.devices.iter().map(|d| (d.clone(), None, None)).collect();
    let mut setup = Setup::new(&devices, policy, recorder);
    setup.jobs(w.jobs.clone(), w.jobs.len());
    setup.run(noise)
}

/// The `schedule` benchmark for one workload: makespan, bound, decision time, and the same under noise.
pub fn schedule(w: &Workload, best_known: Option<f64>, noise_seeds: u64, planner_seeds: u64) -> String {
    let mut out = String::new();
    let (path, busiest) = planner::lower_bound(&w.problem());
    let bound = path.max(busiest);
    let planned = run_workload(w, Policy::Planned { replan: true, budget: None }, Noise::NONE, Recorder::null());
    let greedy = run_workload(w, Policy::Greedy, Noise::NONE, Recorder::null());
    // The planner on its own, once per seed: how its result and its time vary with the seed alone.
    let problem = w.problem();
    let mut alone: Vec<(f64, f64)> = (0..planner_seeds.max(1))
        .map(|seed| {
            let t0 = Instant::now();
            let plan = planner::plan(&problem, planner::default_budget(problem.ops.len()), seed);
            (plan.makespan, t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect();
    let per_1000 = |r: &Report| r.decision.as_secs_f64() * 1e3 * 1000.0 / w.steps() as f64;
    let gap = |m: f64| {
        best_known.map_or(String::new(), |b| format!(" ({:+.1}% vs best known {b:.0})", 100.0 * (m / b - 1.0)))
    };
    let _ = writeln!(
        out,
        "workload `{}`: {} jobs, {} steps, {} instruments",
        w.name,
        w.jobs.len(),
        w.steps(),
        w.devices.len()
    );
    let _ =
        writeln!(out, "  lower bound        {bound:.0} s (critical path {path:.0}, busiest instrument {busiest:.0})");
    let _ = writeln!(
        out,
        "  planned            makespan {:.0} s{}, {:.1}% over the bound; decision time {:.2} ms ({:.2} ms per 1000 steps), of which planning {:.2} ms ({:.2} ms per 1000 steps, {} plans)",
        planned.makespan,
        gap(planned.makespan),
        100.0 * (planned.makespan / bound - 1.0),
        planned.decision.as_secs_f64() * 1e3,
        per_1000(&planned),
        planned.planning.as_secs_f64() * 1e3,
        planned.planning.as_secs_f64() * 1e6 / w.steps() as f64,
        planned.plans
    );
    let target = best_known.unwrap_or(bound);
    let hits = alone.iter().filter(|(m, _)| *m <= target + 1e-9).count();
    let mut times: Vec<f64> = alone.iter().map(|(_, t)| *t).collect();
    times.sort_by(f64::total_cmp);
    alone.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median_time = times[times.len() / 2];
    let _ = writeln!(
        out,
        "  planner, {} seeds  makespan {:.0} / {:.0} / {:.0} s (best / median / worst), {hits} at the {}; {:.2} ms median ({:.2} ms per 1000 steps)",
        alone.len(),
        alone[0].0,
        alone[alone.len() / 2].0,
        alone[alone.len() - 1].0,
        if best_known.is_some() { "best known" } else { "lower bound" },
        median_time,
        median_time * 1000.0 / w.steps() as f64
    );
    let _ = writeln!(
        out,
        "  greedy (critical path) makespan {:.0} s{}; decision time {:.2} ms",
        greedy.makespan,
        gap(greedy.makespan),
        greedy.decision.as_secs_f64() * 1e3
    );
    if noise_seeds > 0 {
        let (mut online, mut blind, mut wins) = (0.0, 0.0, 0);
        let (mut plans, mut planning) = (0, std::time::Duration::ZERO);
        for seed in 0..noise_seeds {
            let noise = Noise { spread: 0.3, seed, bias: 0.0 };
            let o = run_workload(w, Policy::Planned { replan: true, budget: None }, noise, Recorder::null());
            let b = run_workload(w, Policy::Planned { replan: false, budget: None }, noise, Recorder::null());
            online += o.makespan;
            blind += b.makespan;
            plans += o.plans;
            planning += o.planning;
            wins += usize::from(o.makespan <= b.makespan);
        }
        let n = noise_seeds as f64;
        let _ = writeln!(
            out,
            "  under noise (±30%, {noise_seeds} seeds): online replanning {:.0} s mean, plan executed blindly {:.0} s mean ({:+.1}%); online no worse in {wins}/{noise_seeds}; online made {:.1} plans per run, planning {:.2} ms per 1000 steps",
            online / n,
            blind / n,
            100.0 * (online / blind - 1.0),
            plans as f64 / n,
            planning.as_secs_f64() * 1e6 / (n * w.steps() as f64)
        );
    }
    out
}

/// A queue of `steps` steps in chains of ten over `instruments` instruments, for the dispatch benchmark.
pub fn dispatch_jobs(steps: usize, instruments: usize) -> (Vec<String>, Vec<Job>) {
    let names: Vec<String> = (0..instruments).map(|i| format!("inst_{i}")).collect();
    let jobs = (0..steps.div_ceil(10))
        .map(|j| Job {
            name: format!("job {j}"),
            steps: (0..10)
                .map(|k| JobStep {
                    name: format!("s{k}"),
                    on: protocols::InstrumentRef::Named(names[(j * 7 + k * 3) % instruments].clone()),
                    action: None,
                    duration: 1.0 + ((j + k) % 5) as f64,
                    after: if k == 0 { vec![] } else { vec![k - 1] },
                    rules: protocols::StepRules::default(),
                })
                .collect(),
        })
        .collect();
    (names, jobs)
}

/// Controller time per step, with zero-latency simulated instruments, `steps` steps queued at once: the report, the
/// scheduler's wall time per step (us), and the CPU time per step of the thread that ran the whole simulation (us;
/// time the thread spent waiting for a core or for the record's queue is not in it).
/// With `ids` (the campaign the record began), rows are recorded under that campaign's ids.
pub fn dispatch(steps: usize, recorder: Recorder, ids: Option<crate::record::CampaignIds>) -> (Report, f64, f64) {
    let (names, jobs) = dispatch_jobs(steps, 16);
    let devices: Vec<(String, Option<protocols::InstrumentKind>, Option<String>)> =
        names.iter().map(|d| (d.clone(), None, None)).collect();
    let mut setup = Setup::new(&devices, Policy::Greedy, recorder);
    let n = jobs.len();
    match ids {
        Some(ids) => setup.recorded_jobs(jobs, n, ids),
        None => setup.jobs(jobs, n),
    }
    let cpu = thread_cpu();
    let r = setup.run(Noise::NONE);
    let cpu = thread_cpu().saturating_sub(cpu);
    let per_step = r.decision.as_secs_f64() * 1e6 / r.steps.max(1) as f64;
    let cpu_per_step = cpu.as_secs_f64() * 1e6 / r.steps.max(1) as f64;
    (r, per_step, cpu_per_step)
}

/// The CPU time the calling thread has used (zero where the system cannot say).
pub fn thread_cpu() -> std::time::Duration {
    #[cfg(unix)]
    {
        use nix::time::{ClockId, clock_gettime};
        clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map(std::time::Duration::from).unwrap_or_default()
    }
    #[cfg(not(unix))]
    {
        std::time::Duration::ZERO
    }
}

/// The instruments of the load benchmark's lab: `n` instruments in fixed proportions of five kinds.
pub fn load_lab(n: usize) -> Vec<(String, Option<protocols::InstrumentKind>, Option<String>)> {
    use protocols::InstrumentKind as K;
    // Out of every ten: three pumps, three hotplates (the long steps), one balance, two spectrometers, one gantry.
    let pattern = [
        K::SyringePump,
        K::Hotplate,
        K::SyringePump,
        K::Hotplate,
        K::Spectrometer,
        K::Gantry,
        K::SyringePump,
        K::Hotplate,
        K::Balance,
        K::Spectrometer,
    ];
    (0..n)
        .map(|i| {
            let kind = pattern[i % pattern.len()];
            (format!("{}_{i}", kind.name().to_lowercase()), Some(kind), None)
        })
        .collect()
}

/// `experiments` jobs shaped like the demo protocol: carry the vessel in, two dispenses, carry it to a hotplate
/// that must start heating within five minutes of the second dispense, carry it to a spectrometer, measure, weigh.
/// Durations vary from job to job.
pub fn load_jobs(experiments: usize) -> Vec<Job> {
    use protocols::InstrumentKind as K;
    let step = |k: usize, kind: K, duration: f64, after: Vec<usize>, within: Option<f64>| JobStep {
        name: format!("s{k}"),
        on: protocols::InstrumentRef::Kind(kind),
        action: None,
        duration,
        after,
        rules: protocols::StepRules { within: within.map(protocols::units::Duration), ..Default::default() },
    };
    (0..experiments)
        .map(|j| {
            let v = (j * 7919 % 101) as f64 / 100.0;
            Job {
                name: format!("experiment {j}"),
                steps: vec![
                    step(0, K::Gantry, 20.0, vec![], None),
                    step(1, K::SyringePump, 60.0 + 60.0 * v, vec![0], None),
                    step(2, K::SyringePump, 90.0 - 30.0 * v, vec![1], None),
                    step(3, K::Gantry, 20.0, vec![2], Some(300.0)),
                    step(4, K::Hotplate, 900.0 + 1800.0 * v, vec![3], Some(300.0)),
                    step(5, K::Gantry, 20.0, vec![4], None),
                    step(6, K::Spectrometer, 60.0, vec![5], None),
                    step(7, K::Balance, 30.0, vec![5], None),
                ],
            }
        })
        .collect()
}

/// What the load benchmark measured.
#[derive(Debug)]
pub struct LoadReport {
    /// The simulation's own report.
    pub run: Report,
    /// Wall time of the run, the record's writer included.
    pub wall: std::time::Duration,
    /// Rows in the record's journal.
    pub journal_rows: i64,
    /// The record's size on disk, in bytes (database and write-ahead log).
    pub db_bytes: u64,
    /// The process's peak resident memory once the run and its record were done (before verifying).
    pub peak_run: Option<u64>,
    /// Wall time of `lab verify` on the record.
    pub verify: std::time::Duration,
    /// Whether `lab verify` found the record intact.
    pub intact: bool,
}

/// Runs `experiments` demo-shaped experiments on a lab of `instruments` instruments with `in_flight` at once,
/// greedily, in simulated time, recording everything to a fresh record at `db`, then verifies the record.
pub fn load(
    instruments: usize,
    experiments: usize,
    in_flight: usize,
    db: &std::path::Path,
) -> Result<LoadReport, String> {
    use crate::record::{CampaignRow, Record};
    let t0 = Instant::now();
    let mut record = Record::open(db).map_err(|e| e.to_string())?;
    let ids = record.begin_campaign(&CampaignRow::bench()).map_err(|e| e.to_string())?;
    let (recorder, writer) = record.start_writer();
    let mut setup = Setup::new(&load_lab(instruments), Policy::Greedy, recorder.clone());
    setup.recorded_jobs(load_jobs(experiments), in_flight, ids);
    let run = setup.run(Noise { spread: 0.2, seed: 1, bias: 0.0 });
    recorder.flush();
    drop(recorder);
    writer.finish().map_err(|e| e.to_string())?;
    let wall = t0.elapsed();
    let peak_run = peak_rss();
    let db_bytes = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    let t1 = Instant::now();
    let report = crate::record::verify::verify(db)?;
    Ok(LoadReport {
        run,
        wall,
        peak_run,
        journal_rows: report.journal_rows,
        db_bytes,
        verify: t1.elapsed(),
        intact: report.is_intact(),
    })
}

/// The process's peak resident memory in bytes (`VmHWM`), where the system reports it (Linux).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
