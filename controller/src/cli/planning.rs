//! Planning and benchmarks: `lab plan` and `lab bench`.

use std::path::PathBuf;

use super::exit_code;
use super::print_diagnostics;

/// `lab plan`: a protocol's or campaign's estimated schedule in a lab.
pub fn plan_command(args: &super::args::PlanArgs) -> u8 {
    let options = controller::plan::PlanOptions {
        count: args.count,
        set: args.set.clone(),
        calibrate: args.calibrate.clone(),
        draws: usize::from(args.draws),
    };
    match controller::plan::plan_file(&args.lab, &args.file, &options) {
        Ok(r) => {
            // The same warnings `lab check` gives (a bottle too small for the campaign's worst case, ...): a plan
            // that runs out of a reagent waits for a restock it does not show.
            if !r.warnings.is_empty() {
                print_diagnostics(&r.warnings);
            }
            if args.json {
                println!("{:#}", controller::plan::json::to_json(&r));
            } else {
                print!("{r}");
            }
            exit_code::OK
        }
        Err(controller::plan::PlanError::Invalid(d)) => {
            print_diagnostics(&d);
            exit_code::INVALID_INPUT
        }
        Err(controller::plan::PlanError::Other(e)) => {
            eprintln!("lab: {e}");
            exit_code::INVALID_INPUT
        }
    }
}

/// `lab bench schedule`: the scheduler's makespans on workloads, against lower bounds and under noise.
pub fn bench_schedule(workloads: &[PathBuf], best: &[f64], generated: u64, noise_seeds: u64, planner_seeds: u64) -> u8 {
    for (i, path) in workloads.iter().enumerate() {
        let w = match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| controller::plan::workload::parse(&t))
        {
            Ok(w) => w,
            Err(e) => {
                eprintln!("lab: {}: {e}", path.display());
                return exit_code::INVALID_INPUT;
            }
        };
        print!("{}", controller::plan::bench::schedule(&w, best.get(i).copied(), noise_seeds, planner_seeds));
    }
    for seed in 0..generated {
        let w = controller::plan::workload::generate(20, 8, seed);
        print!("{}", controller::plan::bench::schedule(&w, None, noise_seeds.min(3), planner_seeds));
    }
    exit_code::OK
}

/// `lab bench dispatch`: the controller's own time per step, bare and recorded.
pub fn bench_dispatch(sizes: &[usize], rounds: Option<usize>, pin: bool) -> u8 {
    let cores = if pin {
        let Some(cores) = controller::cores::for_this_thread() else {
            eprintln!("lab: --pin needs two cores this process may run on; run without it");
            return exit_code::CANNOT_RUN;
        };
        // The writer is started from this thread, so it would stay on the scheduler's core if it could not be moved
        // (the worst placement there is): a thread of its own tries first.
        let writer = std::thread::spawn(move || controller::cores::pin_this_thread(cores.writer)).join();
        let pinned = writer.unwrap_or_else(|_| Err("the thread that tried the writer's core failed".into()));
        if let Err(e) = pinned.and_then(|()| controller::cores::pin_this_thread(cores.scheduler)) {
            eprintln!("lab: {e}; run without --pin");
            return exit_code::CANNOT_RUN;
        }
        println!("scheduler on core {}, record writer on core {} (--pin)", cores.scheduler, cores.writer);
        Some(cores)
    } else {
        println!("scheduler and record writer where the operating system puts them (--pin keeps them on a core each)");
        None
    };
    println!(
        "{:>8} {:>7} {:>7} {:>9} {:>8} {:>8} {:>26} {:>8} {:>8} {:>26} {:>8} {:>9} {:>10}",
        "steps",
        "frames",
        "rounds",
        "bare ms",
        "us/step",
        "rec.",
        "recording costs (range)",
        "cpu us",
        "rec.",
        "recording costs cpu",
        "events",
        "events/s",
        "durable ms"
    );
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let spread = |v: &[f64]| {
        let (lo, hi) = v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &c| (l.min(c), h.max(c)));
        let mut sorted = v.to_vec();
        format!("{:+.1}% ({:+.1} to {:+.1}%)", median(&mut sorted) * 100.0, lo * 100.0, hi * 100.0)
    };
    for &n in sizes {
        // A run of 1,000 steps lasts 2.5 ms, so one scheduling hiccup weighs on one round; rounds alternate bare and
        // recorded runs so that both see the same machine, and medians leave the hiccups out.
        let rounds = rounds.unwrap_or((200_000 / n.max(1)).clamp(5, 100)).max(1);
        let (mut bare_ms, mut bare_us, mut rec_us, mut costs) = (vec![], vec![], vec![], vec![]);
        let (mut bare_cpu, mut rec_cpu, mut cpu_costs, mut rates, mut durable) =
            (vec![], vec![], vec![], vec![], vec![]);
        let (mut steps, mut frames, mut events) = (0, 0, 0);
        for round in 0..rounds {
            let (bare, per, cpu) = controller::plan::bench::dispatch(n, controller::record::Recorder::null(), None);
            (steps, frames) = (bare.steps, bare.frames);
            bare_ms.push(bare.decision.as_secs_f64() * 1e3);
            let dir = std::env::temp_dir().join(format!("lab-bench-{}-{n}-{round}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let recorded = match controller::record::Record::open(&dir.join("bench.db")) {
                Ok(mut rec) => {
                    if let Some(cores) = cores {
                        rec.keep_writer_on(cores.writer);
                    }
                    let ids = rec.begin_campaign(&controller::record::CampaignRow::bench()).ok();
                    let t0 = std::time::Instant::now();
                    let (recorder, writer) = rec.start_writer();
                    let (_, per, cpu) = controller::plan::bench::dispatch(n, recorder.clone(), ids);
                    recorder.flush();
                    drop(recorder);
                    // Events per second: everything the writer committed, over the run and the writer's catching up.
                    let written = writer.finish().unwrap_or(0);
                    Some((per, cpu, written, t0.elapsed().as_secs_f64()))
                }
                Err(e) => {
                    eprintln!("lab: cannot open a record for the benchmark: {e}");
                    None
                }
            };
            let _ = std::fs::remove_dir_all(&dir);
            let Some((rec_per, rec_c, written, secs)) = recorded else { return exit_code::CANNOT_RUN };
            bare_us.push(per);
            rec_us.push(rec_per);
            costs.push(rec_per / per - 1.0);
            bare_cpu.push(cpu);
            rec_cpu.push(rec_c);
            cpu_costs.push(rec_c / cpu - 1.0);
            events = written;
            rates.push(written as f64 / secs);
            durable.push(secs * 1e3);
        }
        println!(
            "{:>8} {:>7} {:>7} {:>9.2} {:>8.2} {:>8.2} {:>26} {:>8.2} {:>8.2} {:>26} {:>8} {:>9.0} {:>10.1}",
            steps,
            frames,
            rounds,
            median(&mut bare_ms),
            median(&mut bare_us),
            median(&mut rec_us),
            spread(&costs),
            median(&mut bare_cpu),
            median(&mut rec_cpu),
            spread(&cpu_costs),
            events,
            median(&mut rates),
            median(&mut durable)
        );
    }
    exit_code::OK
}

/// `lab bench load`: one large simulated run through the scheduler and the record.
pub fn bench_load(instruments: usize, experiments: usize, in_flight: usize, db: Option<PathBuf>) -> u8 {
    let dir = std::env::temp_dir().join(format!("lab-bench-load-{}", std::process::id()));
    let path = match &db {
        Some(p) => p.clone(),
        None => {
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("lab: cannot make {} for the record ({e}); give one with --db", dir.display());
                return exit_code::CANNOT_RUN;
            }
            dir.join("load.db")
        }
    };
    if db.is_some() && path.exists() {
        eprintln!(
            "lab: {} exists; the load benchmark writes a fresh record (remove it or pick another)",
            path.display()
        );
        return exit_code::CANNOT_RUN;
    }
    let result = controller::plan::bench::load(instruments, experiments.max(1), in_flight.max(1), &path);
    if db.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    match result {
        Ok(r) => {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            let rss = |b: Option<u64>| b.map_or("n/a".to_owned(), |b| format!("{:.0} MiB", mib(b)));
            println!(
                "load: {instruments} instruments, {experiments} experiments, {in_flight} in flight, greedy, 20% noise"
            );
            println!(
                "  experiments completed  {} ({})",
                r.run.experiments,
                if r.run.completed { "all" } else { "NOT all" }
            );
            println!("  steps run              {}", r.run.steps);
            println!("  lab time               {:.1} days", r.run.makespan / 86400.0);
            println!(
                "  wall time              {:.1} s (scheduler {:.1} s, the rest the record)",
                r.wall.as_secs_f64(),
                r.run.decision.as_secs_f64()
            );
            println!("  controller per step    {:.1} us", r.wall.as_secs_f64() * 1e6 / r.run.steps.max(1) as f64);
            println!(
                "  peak memory (RSS)      {} for the run, {} with lab verify",
                rss(r.peak_run),
                rss(controller::plan::bench::peak_rss())
            );
            println!("  record                 {:.0} MiB, {} journal rows", mib(r.db_bytes), r.journal_rows);
            println!(
                "  lab verify             {:.1} s, {}",
                r.verify.as_secs_f64(),
                if r.intact { "intact" } else { "PROBLEMS" }
            );
            if r.run.completed && r.intact { exit_code::OK } else { exit_code::CANNOT_RUN }
        }
        Err(e) => {
            eprintln!("lab: the load benchmark failed: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab bench learn`: the proposers' benchmark suite.
pub fn bench_learn(seeds: usize, landscapes: Vec<String>) -> u8 {
    let options = experiments::bench::LearnOptions {
        seeds,
        landscapes: landscapes != ["none"],
        landscape_names: landscapes,
        ..Default::default()
    };
    print!("{}", experiments::bench::learn_suite(&options, &std::time::Instant::now));
    exit_code::OK
}
