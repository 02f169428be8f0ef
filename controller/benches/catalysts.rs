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
//! Run: `cargo bench -p controller --bench catalysts` (`-- --seeds 20` for more).

use std::path::Path;

use devices::sim::chemistry::{catalysed_optimum, expected_catalysed};
use experiments::{Encoding, Observation, ProposerConfig, Space};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// The spectrometer's noise on a reading, in absorbance units (about what the simulated Flame shows).
const NOISE: f64 = 0.005;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seeds: u64 = args.iter().position(|a| a == "--seeds").and_then(|i| args.get(i + 1)?.parse().ok()).unwrap_or(10);
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
    for (name, c) in [("Descriptors", &campaign), ("OneHot", &one_hot), ("random", &random)] {
        let started = std::time::Instant::now();
        let mut reached = Vec::new();
        let mut after = Vec::new();
        for seed in 0..seeds {
            let (optimum, ..) = catalysed_optimum(seed, catalysts.len(), &volumes, &temperatures);
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
        let mean_after =
            after.iter().map(|a| a.unwrap_or(campaign.budget + 1) as f64).sum::<f64>() / after.len() as f64;
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
    }
}
