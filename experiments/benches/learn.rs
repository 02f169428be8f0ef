//! `cargo bench -p experiments`: the learning benchmark suite, printed as Markdown tables.
//!
//! The suite itself lives in `experiments::bench` (pure, so `lab bench learn` runs the same code); this harness
//! only supplies the clock and the options. `LEARN_SEEDS` sets the number of seeds (10 by default), and
//! `LEARN_ONLY` a comma-separated subset of `analytic`, `lookup`, `reactions`, `multi`, `latency`, `landscapes`. Three more
//! narrow a run down for studying one problem: `LEARN_FUNCTIONS`, the analytic functions by name (`Branin`,
//! `Hartmann6`), `LEARN_IN_FLIGHT`, the numbers of experiments in flight (`1,4,8` by default), and `LEARN_LANDSCAPES`, the
//! landscapes by name (`ridge`, `needle/table/noisy`).

use std::time::Instant;

use experiments::bench::{LearnOptions, learn_suite};

fn main() {
    let mut options = LearnOptions::default();
    if let Some(seeds) = std::env::var("LEARN_SEEDS").ok().and_then(|s| s.parse().ok()) {
        options.seeds = seeds;
    }
    if let Ok(only) = std::env::var("LEARN_ONLY") {
        let parts: Vec<&str> = only.split(',').map(str::trim).collect();
        options.analytic = parts.contains(&"analytic");
        options.lookup = parts.contains(&"lookup");
        options.multi_objective = parts.contains(&"multi");
        options.reactions = parts.contains(&"reactions");
        options.landscapes = parts.contains(&"landscapes");
        if !parts.contains(&"latency") {
            options.latency_at.clear();
        }
    }
    if let Ok(names) = std::env::var("LEARN_FUNCTIONS") {
        options.functions = names.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    }
    if let Ok(names) = std::env::var("LEARN_LANDSCAPES") {
        options.landscape_names = names.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect();
    }
    if let Ok(flights) = std::env::var("LEARN_IN_FLIGHT") {
        let parsed: Vec<usize> = flights.split(',').filter_map(|s| s.trim().parse().ok()).filter(|q| *q > 0).collect();
        if !parsed.is_empty() {
            options.in_flight = parsed;
        }
    }
    let start = Instant::now();
    let report = learn_suite(&options, &Instant::now);
    println!("{report}");
    println!("suite time: {:.1} s", start.elapsed().as_secs_f64());
}
