//! `cargo bench -p experiments`: the learning benchmark suite, printed as Markdown tables.
//!
//! The suite itself lives in `experiments::bench` (pure, so `lab bench learn` runs the same code); this harness
//! only supplies the clock and the options. `LEARN_SEEDS` sets the number of seeds (10 by default), and
//! `LEARN_ONLY` a comma-separated subset of `analytic`, `lookup`, `multi`, `latency`.

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
        if !parts.contains(&"latency") {
            options.latency_at.clear();
        }
    }
    let start = Instant::now();
    let report = learn_suite(&options, &Instant::now);
    println!("{report}");
    println!("suite time: {:.1} s", start.elapsed().as_secs_f64());
}
