//! Side-by-side peer run: egobox-ego's EGO (`EgorBuilder`, default LogEI infill) on Branin and Hartmann-6,
//! with the same budgets, hit thresholds and summary figures as `cargo bench -p experiments --bench learn`.
//!
//! Usage (see README.md):
//! - `egobox-peer` runs both problems on their default seeds (Hartmann-6: 0..60, Branin: 0..20).
//! - `PEER_FUNCTIONS=Hartmann6` (or `Branin`, comma-separated) picks the problems.
//! - `PEER_SEEDS=0..20`, `PEER_SEEDS=20` (= 0..20) or `PEER_SEEDS=3,7,9` overrides the seeds of every chosen problem.
//! - `PEER_THREADS=N` sizes rayon's pool (1 unless `RAYON_NUM_THREADS` is set).
//! - `PEER_HISTORY=FILE` writes every evaluated value as `problem,seed,evaluation,y` CSV.
//! - `egobox-peer fisher HITS_A N_A HITS_B N_B` prints the two-sided Fisher exact test p-value.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use egobox_ego::EgorBuilder;
use experiments::bench::{self as ours, branin, hartmann6, quantile, sci};
use ndarray::{Array2, ArrayView2};

/// A test problem with its budget split the way the reference run in the notes split it.
struct Problem {
    /// The lab's definition, which our proposer runs on.
    lab: ours::TestFunction,
    name: &'static str,
    f: fn(&[f64]) -> f64,
    bounds: &'static [(f64, f64)],
    minimum: f64,
    /// The whole evaluation budget, initial design included.
    budget: usize,
    /// Size of egobox's initial LHS: 2d + 1, as in the notes' setup.
    n_doe: usize,
    /// Regret at or below which a run counts as having found the minimum.
    threshold: f64,
    default_seeds: std::ops::Range<u64>,
}

// The functions, minima, bounds, budgets and thresholds are the lab's own (`experiments::bench`), so a hit means the
// same thing on both sides.
const HARTMANN6: Problem = Problem {
    lab: ours::HARTMANN6,
    name: ours::HARTMANN6.name,
    f: ours::HARTMANN6.f,
    bounds: ours::HARTMANN6.bounds,
    minimum: ours::HARTMANN6.minimum,
    budget: ours::HARTMANN6.budget,
    n_doe: 13,
    threshold: ours::HARTMANN6.threshold,
    default_seeds: 0..60,
};

const BRANIN: Problem = Problem {
    lab: ours::BRANIN,
    name: ours::BRANIN.name,
    f: ours::BRANIN.f,
    bounds: ours::BRANIN.bounds,
    minimum: ours::BRANIN.minimum,
    budget: ours::BRANIN.budget,
    n_doe: 5,
    threshold: ours::BRANIN.threshold,
    default_seeds: 0..20,
};

/// One seeded run: every value egobox asked for, in the order it asked.
struct Run {
    seed: u64,
    history: Vec<f64>,
    /// Rows of the result's `y_doe`, to check that it is the same history.
    y_doe_rows: usize,
    seconds: f64,
    termination: String,
}

impl Run {
    /// Best-so-far minus the minimum after each evaluation.
    fn regret_trace(&self, p: &Problem) -> Vec<f64> {
        let mut best = f64::INFINITY;
        self.history
            .iter()
            .map(|y| {
                best = best.min(*y);
                best - p.minimum
            })
            .collect()
    }
}

fn run(p: &Problem, seed: u64) -> Run {
    // egobox calls the objective with a batch of rows (the whole initial design at once, then one row per
    // iteration); logging inside the closure records exactly what was evaluated, independently of the result.
    let log = Arc::new(Mutex::new(Vec::<f64>::new()));
    let objective = {
        let log = Arc::clone(&log);
        let f = p.f;
        move |x: &ArrayView2<f64>| -> Array2<f64> {
            let ys: Vec<f64> = x.rows().into_iter().map(|row| f(&row.to_vec())).collect();
            log.lock().unwrap().extend(&ys);
            Array2::from_shape_vec((ys.len(), 1), ys).unwrap()
        }
    };
    let mut xlimits = Array2::zeros((p.bounds.len(), 2));
    for (i, (lo, hi)) in p.bounds.iter().enumerate() {
        xlimits[[i, 0]] = *lo;
        xlimits[[i, 1]] = *hi;
    }
    let start = Instant::now();
    // Defaults everywhere else: LogEI infill, SLSQP infill optimizer, constant-mean squared-exponential GP.
    let result = EgorBuilder::optimize(objective)
        .configure(|c| c.n_doe(p.n_doe).max_iters(p.budget - p.n_doe).seed(seed))
        .min_within(&xlimits)
        .expect("egobox configuration")
        .run()
        .expect("egobox run");
    let seconds = start.elapsed().as_secs_f64();
    let history = log.lock().unwrap().clone();
    // The result's history must be the logged one; if egobox ever re-evaluated or dropped a point, say so.
    let same = result.y_doe.nrows() == history.len()
        && result.y_doe.column(0).iter().zip(&history).all(|(a, b)| a.to_bits() == b.to_bits());
    if !same {
        eprintln!(
            "warning: {} seed {seed}: y_doe ({} rows) differs from the {} logged evaluations",
            p.name,
            result.y_doe.nrows(),
            history.len()
        );
    }
    Run {
        seed,
        history,
        y_doe_rows: result.y_doe.nrows(),
        seconds,
        termination: format!("{}", result.state.get_termination_status()),
    }
}

/// Summary figures over a set of runs, computed as the learn bench computes them.
struct Summary {
    regrets: Vec<f64>,
    hits: Vec<Option<usize>>,
    seconds: Vec<f64>,
}

impl Summary {
    /// From each run's regret trace and seconds.
    fn new(p: &Problem, runs: &[(&[f64], f64)]) -> Self {
        let mut s = Summary { regrets: Vec::new(), hits: Vec::new(), seconds: Vec::new() };
        for (trace, seconds) in runs {
            s.regrets.push(trace.last().copied().unwrap_or(f64::INFINITY));
            s.hits.push(trace.iter().position(|x| *x <= p.threshold).map(|i| i + 1));
            s.seconds.push(*seconds);
        }
        s
    }

    fn hit_count(&self) -> usize {
        self.hits.iter().filter(|h| h.is_some()).count()
    }

    fn row(&self, p: &Problem, method: &str, label: &str) -> String {
        let to_hit: Vec<f64> = self.hits.iter().map(|h| h.map_or(f64::INFINITY, |n| n as f64)).collect();
        let median_to_hit = quantile(&to_hit, 0.5);
        // Regrets below 1e-12 count as 1e-12, as in the learn bench.
        let mean_log10 =
            self.regrets.iter().map(|r| r.max(1e-12).log10()).sum::<f64>() / self.regrets.len().max(1) as f64;
        format!(
            "| {} | {} | {} | {} | {} | {}–{} | {:.2} | {}/{} | {} | {:.2} |",
            p.name,
            method,
            label,
            p.budget,
            sci(quantile(&self.regrets, 0.5)),
            sci(quantile(&self.regrets, 0.25)),
            sci(quantile(&self.regrets, 0.75)),
            mean_log10,
            self.hit_count(),
            self.hits.len(),
            if median_to_hit.is_finite() { format!("{median_to_hit}") } else { format!(">{}", p.budget) },
            self.seconds.iter().sum::<f64>() / self.seconds.len().max(1) as f64,
        )
    }
}

/// Seeds from `PEER_SEEDS`: `a..b`, a count `n` (= `0..n`), or a comma-separated list.
fn parse_seeds(spec: &str) -> Vec<u64> {
    let spec = spec.trim();
    if let Some((a, b)) = spec.split_once("..") {
        let (a, b): (u64, u64) =
            (a.trim().parse().expect("PEER_SEEDS start"), b.trim().parse().expect("PEER_SEEDS end"));
        return (a..b).collect();
    }
    if spec.contains(',') {
        return spec
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().expect("PEER_SEEDS"))
            .collect();
    }
    (0..spec.parse::<u64>().expect("PEER_SEEDS")).collect()
}

/// ln C(n, k).
fn ln_choose(n: u64, k: u64) -> f64 {
    (1..=k).map(|i| ((n - k + i) as f64).ln() - (i as f64).ln()).sum()
}

/// Two-sided Fisher exact test on the 2×2 table (hits, misses) × (A, B): the total probability, under the
/// hypergeometric null with the margins fixed, of every table no more likely than the observed one (the
/// convention of R's `fisher.test` and SciPy, with the same 1e-7 relative tolerance for ties).
fn fisher_two_sided(hits_a: u64, n_a: u64, hits_b: u64, n_b: u64) -> f64 {
    let hits = hits_a + hits_b;
    let n = n_a + n_b;
    let p = |k: u64| (ln_choose(n_a, k) + ln_choose(n_b, hits - k) - ln_choose(n, hits)).exp();
    let observed = p(hits_a);
    let lo = hits.saturating_sub(n_b);
    let hi = hits.min(n_a);
    (lo..=hi).map(p).filter(|pk| *pk <= observed * (1.0 + 1e-7)).sum::<f64>().min(1.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("fisher") {
        let v: Vec<u64> = args[1..].iter().map(|s| s.parse().expect("fisher HITS_A N_A HITS_B N_B")).collect();
        assert_eq!(v.len(), 4, "fisher HITS_A N_A HITS_B N_B");
        println!("two-sided Fisher exact p = {:.4}", fisher_two_sided(v[0], v[1], v[2], v[3]));
        return;
    }

    // The test functions must have their known minima, or regrets mean nothing.
    let at_star = hartmann6(&[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]);
    assert!((at_star - HARTMANN6.minimum).abs() < 1e-5, "Hartmann-6 at x* = {at_star}");
    assert!((branin(&[std::f64::consts::PI, 2.275]) - BRANIN.minimum).abs() < 1e-6);
    println!(
        "check: Hartmann-6 at x* = {at_star:.6}; Branin at (pi, 2.275) = {:.6}",
        branin(&[std::f64::consts::PI, 2.275])
    );

    // One thread unless told otherwise: the machine has 2 cores shared with timing runs, and our side runs on
    // one thread, so seconds per run compare like with like.
    let threads = std::env::var("PEER_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("rayon pool");
    }
    println!(
        "egobox-ego 0.42, rayon threads: {}, n_doe = 2d+1 (egobox's default LHS), max_iters = budget - n_doe",
        rayon::current_num_threads()
    );

    let chosen: Vec<String> = std::env::var("PEER_FUNCTIONS")
        .unwrap_or_else(|_| "Hartmann6,Branin".to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let seeds_override = std::env::var("PEER_SEEDS").ok().map(|s| parse_seeds(&s));
    let mut history_csv = String::from("problem,seed,evaluation,y\n");
    let mut tables = Vec::new();

    let methods: Vec<String> = std::env::var("PEER_METHODS")
        .unwrap_or_else(|_| "egobox,ours".to_owned())
        .split(',')
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    let mut comparisons = Vec::new();

    for p in [HARTMANN6, BRANIN] {
        if !chosen.iter().any(|c| c.eq_ignore_ascii_case(p.name)) {
            continue;
        }
        let seeds = seeds_override.clone().unwrap_or_else(|| p.default_seeds.clone().collect());
        let mut summaries: Vec<(&str, Summary)> = Vec::new();
        for method in &methods {
            // Each run: its seed, its regret after each evaluation, and its seconds.
            let mut runs: Vec<(u64, Vec<f64>, f64)> = Vec::new();
            let label = match method.as_str() {
                "egobox" => {
                    println!(
                        "\n{} with egobox: budget {}, n_doe {}, max_iters {}, seeds {:?}",
                        p.name,
                        p.budget,
                        p.n_doe,
                        p.budget - p.n_doe,
                        seeds
                    );
                    println!("seed | regret@{} | evals to hit | evaluations | y_doe rows | s | termination", p.budget);
                    for &seed in &seeds {
                        let r = run(&p, seed);
                        let trace = r.regret_trace(&p);
                        println!(
                            "{} | {:.3e} | {} | {} | {} | {:.2} | {}",
                            r.seed,
                            trace.last().copied().unwrap_or(f64::INFINITY),
                            first_hit(&p, &trace),
                            r.history.len(),
                            r.y_doe_rows,
                            r.seconds,
                            r.termination
                        );
                        if r.history.len() != p.budget {
                            println!("note: seed {seed} made {} evaluations, not {}", r.history.len(), p.budget);
                        }
                        for (i, y) in r.history.iter().enumerate() {
                            let _ = writeln!(history_csv, "{},{},{},{y:e}", p.name, r.seed, i + 1);
                        }
                        runs.push((seed, trace, r.seconds));
                    }
                    "egobox EGO, LogEI (default)"
                }
                "ours" => {
                    // The learn bench's own run: the lab's default Gaussian-process proposer, one in flight.
                    let config = ours::default_gp(p.bounds.len());
                    println!("\n{} with ours ({config:?}): budget {}, seeds {:?}", p.name, p.budget, seeds);
                    println!("seed | regret@{} | evals to hit | s", p.budget);
                    for &seed in &seeds {
                        let start = Instant::now();
                        let trace = ours::regret_trace(&config, &p.lab, 1, seed);
                        let seconds = start.elapsed().as_secs_f64();
                        println!(
                            "{seed} | {:.3e} | {} | {seconds:.2}",
                            trace.last().copied().unwrap_or(f64::INFINITY),
                            first_hit(&p, &trace)
                        );
                        runs.push((seed, trace, seconds));
                    }
                    "ours, GP LogEI"
                }
                other => panic!("PEER_METHODS: unknown method {other:?} (egobox or ours)"),
            };
            let all: Vec<(&[f64], f64)> = runs.iter().map(|(_, t, s)| (t.as_slice(), *s)).collect();
            let summary = Summary::new(&p, &all);
            tables.push(summary.row(&p, label, &seed_label(&seeds)));
            // The notes' reference used seeds 0..19: show that subset separately when the run covers more.
            let first20: Vec<(&[f64], f64)> =
                runs.iter().filter(|(seed, ..)| *seed < 20).map(|(_, t, s)| (t.as_slice(), *s)).collect();
            if first20.len() == 20 && runs.len() > 20 {
                tables.push(Summary::new(&p, &first20).row(&p, label, "0–19"));
            }
            summaries.push((label, summary));
        }
        if let [(a_label, a), (b_label, b)] = &summaries[..] {
            comparisons.push(compare(&p, (a_label, a), (b_label, b)));
        }
    }

    println!(
        "\n| problem | method | seeds | budget | median regret | IQR | mean log10 | hits | median evals to hit | s/run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for row in &tables {
        println!("{row}");
    }
    for c in &comparisons {
        println!("\n{c}");
    }
    if let Ok(path) = std::env::var("PEER_HISTORY") {
        std::fs::write(&path, history_csv).expect("writing PEER_HISTORY");
        println!("history written to {path}");
    }
}

/// The evaluation at which a trace first hits, or `-`.
fn first_hit(p: &Problem, trace: &[f64]) -> String {
    trace.iter().position(|x| *x <= p.threshold).map_or("-".to_owned(), |i| (i + 1).to_string())
}

/// Two methods on one problem: the Fisher test on their hit counts, and bootstrap 95% intervals for the differences
/// of their median log10 regret and mean log10 regret (seeds are not paired: each method draws its own initial
/// design, so each side is resampled on its own).
fn compare(p: &Problem, (a_label, a): (&str, &Summary), (b_label, b): (&str, &Summary)) -> String {
    let log = |s: &Summary| s.regrets.iter().map(|r| r.max(1e-12).log10()).collect::<Vec<f64>>();
    let (la, lb) = (log(a), log(b));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let mut rng = SplitMix(0x5eed);
    let mut median_diffs = Vec::new();
    let mut mean_diffs = Vec::new();
    for _ in 0..BOOTSTRAP {
        let ra = rng.resample(&la);
        let rb = rng.resample(&lb);
        median_diffs.push(quantile(&ra, 0.5) - quantile(&rb, 0.5));
        mean_diffs.push(mean(&ra) - mean(&rb));
    }
    let interval = |v: &[f64]| format!("{:+.2} to {:+.2}", quantile(v, 0.025), quantile(v, 0.975));
    format!(
        "{}: {a_label} against {b_label}\n- hits {}/{} against {}/{}: two-sided Fisher exact p = {:.3}\n\
         - median log10 regret {:.2} against {:.2}: difference {:+.2}, bootstrap 95% interval {}\n\
         - mean log10 regret {:.2} against {:.2}: difference {:+.2}, bootstrap 95% interval {}",
        p.name,
        a.hit_count(),
        a.hits.len(),
        b.hit_count(),
        b.hits.len(),
        fisher_two_sided(a.hit_count() as u64, a.hits.len() as u64, b.hit_count() as u64, b.hits.len() as u64),
        quantile(&la, 0.5),
        quantile(&lb, 0.5),
        quantile(&la, 0.5) - quantile(&lb, 0.5),
        interval(&median_diffs),
        mean(&la),
        mean(&lb),
        mean(&la) - mean(&lb),
        interval(&mean_diffs),
    )
}

/// Bootstrap resamples per comparison.
const BOOTSTRAP: usize = 4000;

/// SplitMix64: a few lines of well-known generator, enough to resample with, and the same on every run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn resample(&mut self, v: &[f64]) -> Vec<f64> {
        (0..v.len()).map(|_| v[(self.next() % v.len() as u64) as usize]).collect()
    }
}

/// `0–59` for a contiguous range, otherwise the count.
fn seed_label(seeds: &[u64]) -> String {
    let contiguous = seeds.windows(2).all(|w| w[1] == w[0] + 1);
    match (seeds.first(), seeds.last()) {
        (Some(a), Some(b)) if contiguous => format!("{a}–{b}"),
        _ => format!("{} seeds", seeds.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_functions_have_their_known_minima() {
        let x = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573];
        assert!((hartmann6(&x) - HARTMANN6.minimum).abs() < 1e-5);
        assert!((branin(&[std::f64::consts::PI, 2.275]) - BRANIN.minimum).abs() < 1e-6);
        assert!((branin(&[9.42478, 2.475]) - BRANIN.minimum).abs() < 1e-5);
    }

    #[test]
    fn fisher_matches_known_values() {
        // R: fisher.test(matrix(c(3, 1, 1, 3), 2))$p.value = 0.4857143
        assert!((fisher_two_sided(3, 4, 1, 4) - 0.4857143).abs() < 1e-6);
        // R: fisher.test(matrix(c(1, 9, 11, 3), 2))$p.value = 0.002759456
        assert!((fisher_two_sided(1, 10, 11, 14) - 0.002759456).abs() < 1e-8);
        // Identical proportions give p = 1.
        assert!((fisher_two_sided(10, 20, 10, 20) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn quantile_interpolates_and_sorts_infinity_last() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0, f64::INFINITY], 0.5), 2.5);
    }

    #[test]
    fn seeds_parse_in_all_three_forms() {
        assert_eq!(parse_seeds("2..5"), vec![2, 3, 4]);
        assert_eq!(parse_seeds("3"), vec![0, 1, 2]);
        assert_eq!(parse_seeds("7, 9"), vec![7, 9]);
    }
}
