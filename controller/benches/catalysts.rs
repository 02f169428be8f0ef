//! The catalyst demo as a benchmark: how close the campaign's proposer gets to the true optimum of the catalysed
//! protocol within its 32 experiments, with the catalyst encoded by its `Descriptors`, by `OneHot`, and with random
//! proposals, on the same seeds.
//!
//! Each seed is one bench: its hidden chemistry (`devices::sim::chemistry`, the catalysts' constants following their
//! descriptors plus the seed's noise) and the proposer's seed. The campaign is `experiments/campaigns/catalysts.
//! campaign.ron` as written (4 experiments in flight, 8 initial ones), its proposer asked and told batch by batch;
//! each experiment reads the ground truth (`expected_catalysed`, the protocol run ideally) plus the spectrometer's
//! noise, without pseudo-terminals, so the ten seeds run in seconds. The true optimum is the best of a grid over
//! every catalyst, the volume in 1 uL steps and every temperature the campaign allows. A run reaches a fraction of
//! it: the true value at its best-measured experiment over the optimum.
//!
//! "Sooner" is judged seed by seed: for each seed, which encoding first reached 95 % of the optimum (a run that never
//! did counts as the budget plus one), with a two-sided sign test over the seeds where they differ, and the mean
//! paired difference with its standard error. A hundred seeds take a few minutes; ten were too few to tell encodings
//! apart that differ by a few experiments (seeds 0-9 alone favour one-hot by one experiment, seeds 0-99 descriptors
//! by nearly four).
//!
//! Run: `cargo bench -p controller --bench catalysts` (`-- --seeds 20` for another number of seeds, `-- --trace 25`
//! to print seed 25's optimum, each catalyst's best and every proposal of every proposer).

use std::path::Path;

use devices::sim::chemistry::{catalysed_optimum, expected_catalysed};
use experiments::{Encoding, Observation, ProposerConfig, Space};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The spectrometer's noise on a reading, in absorbance units (about what the simulated Flame shows).
const NOISE: f64 = 0.005;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let option = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)?.parse::<u64>().ok());
    let seeds = option("--seeds").unwrap_or(100);
    let trace = option("--trace");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the repository").to_owned();
    let inputs =
        controller::load::load_campaign_inputs(&root.join("experiments/campaigns/catalysts.campaign.ron"), None)
            .expect("the catalyst campaign loads");
    let campaign = inputs.campaign;
    let catalysts = &campaign.reagents["catalyst"];
    let index_of = |level: f64| {
        let reagent = &catalysts[(level.round() as usize).saturating_sub(1)];
        devices::sim::chemistry::CATALYSTS.iter().position(|c| c == reagent).expect("a catalyst the bench knows")
    };
    let volume = campaign.space.dim("volume_cat").expect("the campaign varies volume_cat").clone();
    let temperature = campaign.space.dim("temperature").expect("the campaign varies temperature").clone();
    let volumes: Vec<f64> = (volume.min as i64..=volume.max as i64).map(|v| v as f64).collect();
    let temperatures: Vec<f64> = {
        let mut t = temperature.min;
        let mut out = Vec::new();
        while t <= temperature.max + 1e-9 {
            out.push(t);
            t += 10.0;
        }
        out
    };
    let one_hot = {
        let mut c = campaign.clone();
        let dims = c
            .space
            .dims()
            .iter()
            .map(|d| match (d.levels(), d.name == "catalyst") {
                (Some(levels), true) => experiments::Dim::categorical(&d.name, levels.to_vec(), Encoding::OneHot),
                _ => d.clone(),
            })
            .collect();
        c.space = Space::new(dims);
        c
    };
    let random = {
        let mut c = campaign.clone();
        c.proposer = ProposerConfig::Random;
        c
    };
    println!(
        "catalyst demo: {} catalysts, volume_cat {}..={} uL, temperature {}..={} degC, budget {}, {} in flight, {} seeds",
        catalysts.len(),
        volume.min,
        volume.max,
        temperature.min,
        temperature.max,
        campaign.budget,
        campaign.in_flight,
        seeds
    );
    println!(
        "{:<12} {:>6} {:>9} {:>9} {:>16} {:>10}",
        "proposer", "seeds", ">=95 %", "mean", "95 % after (mean)", "wall s"
    );
    let mut firsts: Vec<(&str, Vec<usize>)> = Vec::new();
    for (name, c) in [("Descriptors", &campaign), ("OneHot", &one_hot), ("random", &random)] {
        let started = std::time::Instant::now();
        let mut reached = Vec::new();
        let mut after = Vec::new();
        for seed in 0..seeds {
            let (optimum, best_catalyst, best_volume, best_temperature) =
                catalysed_optimum(seed, catalysts.len(), &volumes, &temperatures);
            let traced = trace == Some(seed);
            if traced {
                println!(
                    "seed {seed}, {name}: optimum {optimum:.3} AU with {} at {best_volume} uL and {best_temperature} degC",
                    devices::sim::chemistry::CATALYSTS[best_catalyst]
                );
                for (i, catalyst) in devices::sim::chemistry::CATALYSTS.iter().enumerate().take(catalysts.len()) {
                    let (value, v, t) = volumes
                        .iter()
                        .flat_map(|&v| temperatures.iter().map(move |&t| (v, t)))
                        .map(|(v, t)| (expected_catalysed(seed, Some(i), v, t), v, t))
                        .fold((f64::NEG_INFINITY, 0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a });
                    println!(
                        "  {catalyst} at best: {value:.3} AU ({:.1} %) at {v} uL and {t} degC",
                        100.0 * value / optimum
                    );
                }
            }
            let mut c = c.clone();
            c.seed = seed;
            let mut proposer = c.build_proposer();
            let mut noise = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x006e_6f69_7365);
            let (mut best_measured, mut best_true, mut first95) = (f64::NEG_INFINITY, 0.0, None);
            let mut done = 0;
            while done < c.budget {
                let n = c.in_flight.min(c.budget - done);
                let proposals = proposer.ask(n, &[]);
                if proposals.is_empty() {
                    break;
                }
                for p in proposals {
                    let truth = expected_catalysed(
                        seed,
                        Some(index_of(p.values["catalyst"])),
                        p.values["volume_cat"],
                        p.values["temperature"],
                    );
                    if traced {
                        println!(
                            "  #{:<2} {} {:>5.1} uL {:>5.1} degC: {truth:.3} AU ({:.1} %)",
                            done + 1,
                            devices::sim::chemistry::CATALYSTS[index_of(p.values["catalyst"])],
                            p.values["volume_cat"],
                            p.values["temperature"],
                            100.0 * truth / optimum
                        );
                    }
                    let reading = truth + NOISE * (noise.r#gen::<f64>() * 2.0 - 1.0) * 1.7;
                    done += 1;
                    if reading > best_measured {
                        best_measured = reading;
                        best_true = truth;
                    }
                    if first95.is_none() && best_true >= 0.95 * optimum {
                        first95 = Some(done);
                    }
                    proposer.tell(Observation { values: p.values, objective: Some(reading) });
                }
            }
            reached.push(best_true / optimum);
            after.push(first95);
        }
        let hits = reached.iter().filter(|f| **f >= 0.95).count();
        let mean = reached.iter().sum::<f64>() / reached.len() as f64;
        // Runs that never reached 95 % count as the budget plus one, so a proposer gains nothing by failing.
        let first: Vec<usize> = after.iter().map(|a| a.unwrap_or(campaign.budget + 1)).collect();
        let mean_after = first.iter().sum::<usize>() as f64 / first.len() as f64;
        println!(
            "{:<12} {:>6} {:>9} {:>8.1}% {:>16.1} {:>10.1}",
            name,
            seeds,
            format!("{hits}/{seeds}"),
            100.0 * mean,
            mean_after,
            started.elapsed().as_secs_f64()
        );
        println!("  per seed: {}", reached.iter().map(|f| format!("{:.1}", 100.0 * f)).collect::<Vec<_>>().join(" "));
        println!(
            "  95 % after: {}",
            after.iter().map(|a| a.map_or("-".to_owned(), |a| a.to_string())).collect::<Vec<_>>().join(" ")
        );
        firsts.push((name, first));
    }
    println!("seed by seed, experiments to 95 % (a miss counts {}):", campaign.budget + 1);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let ((na, fa), (nb, fb)) = (&firsts[a], &firsts[b]);
        println!("  {na} against {nb}: {}", paired(fa, fb));
    }
}

/// A paired comparison of experiments to 95 % over the same seeds: in how many `a` was sooner, later and alike, a
/// two-sided sign test over the seeds where they differ, and the mean difference `a - b` with its standard error.
fn paired(a: &[usize], b: &[usize]) -> String {
    let sooner = a.iter().zip(b).filter(|(x, y)| x < y).count();
    let later = a.iter().zip(b).filter(|(x, y)| x > y).count();
    let differ = sooner + later;
    // P(X <= min) for X ~ Binomial(differ, 1/2), doubled; computed in logs so a hundred seeds do not overflow.
    let ln_choose = |n: usize, k: usize| -> f64 { (1..=k).map(|i| ((n - k + i) as f64 / i as f64).ln()).sum() };
    let tail: f64 = (0..=sooner.min(later)).map(|k| (ln_choose(differ, k) - differ as f64 * 2f64.ln()).exp()).sum();
    let p = (2.0 * tail).min(1.0);
    let diffs: Vec<f64> = a.iter().zip(b).map(|(x, y)| *x as f64 - *y as f64).collect();
    let n = diffs.len() as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let se = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0)).sqrt() / n.sqrt();
    format!(
        "sooner in {sooner} seeds, later in {later}, alike in {}; sign test p = {p:.4}; mean difference {mean:+.1} \
         ± {se:.1} experiments",
        a.len() - differ
    )
}
