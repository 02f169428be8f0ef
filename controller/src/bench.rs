//! `lab bench`: the scheduler's benchmarks, printed as tables.
//!
//! `schedule` runs a workload through the real scheduler in simulated time and compares its makespan with the lower
//! bound (and, when given, the best known); `noise` reruns it with real durations drawn around the estimates, online
//! replanning against the first plan executed blindly; `dispatch` measures the controller's own time per step with
//! zero-latency simulated instruments at growing queue sizes.

use std::fmt::Write;
use std::time::Instant;

use crate::planner;
use crate::record::Recorder;
use crate::schedule::resources::{Job, JobStep, Policy};
use crate::simulate::{Noise, Report, Setup};
use crate::workload::Workload;

/// Runs a workload through the scheduler in simulated time.
pub fn run_workload(w: &Workload, policy: Policy, noise: Noise, recorder: Recorder) -> Report {
    let devices: Vec<(String, Option<protocols::InstrumentKind>, Option<String>)> =
        w.devices.iter().map(|d| (d.clone(), None, None)).collect();
    let mut setup = Setup::new(&devices, policy, recorder);
    setup.jobs(w.jobs.clone(), w.jobs.len());
    setup.run(noise)
}

/// The `schedule` benchmark for one workload: makespan, bound, decision time, and the same under noise.
pub fn schedule(w: &Workload, best_known: Option<f64>, noise_seeds: u64) -> String {
    let mut out = String::new();
    let (path, busiest) = planner::lower_bound(&w.problem());
    let bound = path.max(busiest);
    let planned = run_workload(w, Policy::Planned { replan: true, budget: None }, Noise::NONE, Recorder::null());
    let greedy = run_workload(w, Policy::Greedy, Noise::NONE, Recorder::null());
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
        "  planned            makespan {:.0} s{}, {:.1}% over the bound; decision time {:.2} ms ({:.2} ms per 1000 steps, {} plans)",
        planned.makespan,
        gap(planned.makespan),
        100.0 * (planned.makespan / bound - 1.0),
        planned.decision.as_secs_f64() * 1e3,
        per_1000(&planned),
        planned.plans
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
        for seed in 0..noise_seeds {
            let noise = Noise { spread: 0.3, seed };
            let o = run_workload(w, Policy::Planned { replan: true, budget: None }, noise, Recorder::null());
            let b = run_workload(w, Policy::Planned { replan: false, budget: None }, noise, Recorder::null());
            online += o.makespan;
            blind += b.makespan;
            wins += usize::from(o.makespan <= b.makespan);
        }
        let n = noise_seeds as f64;
        let _ = writeln!(
            out,
            "  under noise (±30%, {noise_seeds} seeds): online replanning {:.0} s mean, plan executed blindly {:.0} s mean ({:+.1}%); online no worse in {wins}/{noise_seeds}",
            online / n,
            blind / n,
            100.0 * (online / blind - 1.0)
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

/// Controller time per step, with zero-latency simulated instruments, `steps` steps queued at once.
pub fn dispatch(steps: usize, recorder: Recorder) -> (Report, f64) {
    let (names, jobs) = dispatch_jobs(steps, 16);
    let devices: Vec<(String, Option<protocols::InstrumentKind>, Option<String>)> =
        names.iter().map(|d| (d.clone(), None, None)).collect();
    let mut setup = Setup::new(&devices, Policy::Greedy, recorder);
    let n = jobs.len();
    setup.jobs(jobs, n);
    let t0 = Instant::now();
    let r = setup.run(Noise::NONE);
    let _ = t0;
    let per_step = r.decision.as_secs_f64() * 1e6 / r.steps.max(1) as f64;
    (r, per_step)
}
