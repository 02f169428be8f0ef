//! Reaction tables measured in full, as a lab's own campaigns would meet them: the suite's check that the proposer
//! does well on real chemistry it was not tuned on, not only on the one table it was.
//!
//! - Buchwald–Hartwig C–N couplings (Ahneman et al., Science 2018), all 3,955 reactions: 15 aryl halides × 22
//!   isoxazole additives × 3 bases × 4 ligands. Split as chemists and the Olympus suite split them, by the aryl
//!   halide's ring (CF3-phenyl, OMe-phenyl, Et-phenyl, 2-pyridyl, 3-pyridyl: three halides each), into five
//!   tables of about 790 conditions. The CF3-phenyl one holds the same yields as `buchwald_a.csv`, the table
//!   the proposer was studied on, in another row and level order.
//! - Suzuki–Miyaura couplings (Perera et al., Science 2018), 5,760 reactions: 15 electrophile–nucleophile pairs ×
//!   12 ligands × 8 bases × 4 solvents, a larger table with five categorical parameters.
//!
//! Every parameter is categorical (one-hot), as a campaign without descriptors has it. A run counts the
//! experiments until the first top-1% condition, within a budget of 100 (about the cost of random search's
//! expectation on the Buchwald–Hartwig tables). `experiments/datasets/README.md` says where each file comes from.

use std::collections::BTreeMap;

use serde_json::json;

use crate::backtest::{Dataset, Lookup, simulate};
use crate::proposer::{Problem, ProposerConfig, build_for};
use crate::space::{Dim, Encoding, Level};
use crate::{Objective, Space};

/// The Buchwald–Hartwig reactions, with short labels for the SMILES (`reaction_legend.csv` maps them back).
pub const BUCHWALD_HARTWIG: &str = include_str!("../../datasets/buchwald_hartwig.csv");
/// The Suzuki–Miyaura reactions, labelled the same way; yields are fractions.
pub const SUZUKI_MIYAURA: &str = include_str!("../../datasets/suzuki_miyaura.csv");

/// The experiments each run may spend.
pub const REACTION_BUDGET: usize = 100;

/// The rings that split the Buchwald–Hartwig reactions, as the aryl-halide labels begin.
const RINGS: [&str; 5] = ["CF3-phenyl", "OMe-phenyl", "Et-phenyl", "2-pyridyl", "3-pyridyl"];

/// A fully measured table of conditions: its space, what each row gives, and the top-1% threshold.
#[derive(Debug, Clone)]
pub struct ReactionTable {
    /// Its name (`buchwald-hartwig/2-pyridyl`, `suzuki-miyaura`).
    pub name: String,
    /// The parameters, all categorical, levels in order of first appearance.
    pub space: Space,
    /// The rows and their yields.
    pub lookup: Lookup,
    /// The yield's column, maximised.
    pub output: String,
    /// The yield a top-1% condition reaches.
    pub threshold: f64,
    /// How many conditions reach it.
    pub top: usize,
}

/// Builds a table from `text`'s rows that `keep` accepts: the `parameters` columns as categorical parameters and
/// `output` as the yield to maximise. `None` if the text is not a table with those columns.
pub fn lookup_table(
    name: &str,
    text: &str,
    parameters: &[&str],
    output: &str,
    keep: &dyn Fn(&[String]) -> bool,
) -> Option<ReactionTable> {
    let mut dataset = Dataset::parse_csv(text).ok()?;
    dataset.rows.retain(|row| keep(row));
    let dims = parameters
        .iter()
        .map(|parameter| {
            let c = dataset.column(parameter)?;
            let mut labels: Vec<&str> = Vec::new();
            for row in &dataset.rows {
                if !labels.contains(&row[c].as_str()) {
                    labels.push(&row[c]);
                }
            }
            let levels = labels.into_iter().enumerate().map(|(i, l)| Level::new(l, i as f64)).collect();
            Some(Dim::categorical(*parameter, levels, Encoding::OneHot))
        })
        .collect::<Option<Vec<Dim>>>()?;
    let space = Space::new(dims);
    let lookup = Lookup::new(&space, &[Objective::maximize(output)], &BTreeMap::new(), &dataset).ok()?;
    let mut yields: Vec<f64> = lookup.outcomes.iter().filter_map(|o| o.as_ref().map(|m| m[output])).collect();
    yields.sort_by(|a, b| b.total_cmp(a));
    let threshold = *yields.get(lookup.points.len().div_ceil(100).saturating_sub(1))?;
    let top = yields.iter().filter(|y| **y >= threshold).count();
    Some(ReactionTable { name: name.to_owned(), space, lookup, output: output.to_owned(), threshold, top })
}

/// The five Buchwald–Hartwig tables (one per aryl halide's ring) and the Suzuki–Miyaura table.
pub fn reaction_tables() -> Vec<ReactionTable> {
    let bh = ["aryl_halide", "additive", "base", "ligand"];
    let mut tables: Vec<ReactionTable> = RINGS
        .iter()
        .filter_map(|ring| {
            let keep = |row: &[String]| row[0].starts_with(ring);
            lookup_table(&format!("buchwald-hartwig/{ring}"), BUCHWALD_HARTWIG, &bh, "yield", &keep)
        })
        .collect();
    let sm = ["electrophile", "nucleophile", "ligand", "base", "solvent"];
    tables.extend(lookup_table("suzuki-miyaura", SUZUKI_MIYAURA, &sm, "yield", &|_| true));
    tables
}

/// Runs `config` on `table` for up to `budget` experiments with `in_flight` at once; returns the experiment that
/// first reached the top 1%, if one did.
pub fn reaction_run(
    config: &ProposerConfig,
    table: &ReactionTable,
    budget: usize,
    in_flight: usize,
    seed: u64,
) -> Option<usize> {
    let output = table.output.as_str();
    let problem = Problem {
        space: table.space.clone(),
        objectives: vec![Objective::maximize(output)],
        budget,
        stop: crate::StopRules { target: Some(table.threshold), ..crate::StopRules::default() },
        pool: Some(table.lookup.points.clone()),
    };
    let mut proposer = build_for(config, &problem, seed);
    let (steps, _) = simulate(proposer.as_mut(), budget, in_flight, &mut |p| table.lookup.measure(&table.space, p));
    steps.iter().position(|s| s.outputs.as_ref().is_some_and(|o| o[output] >= table.threshold)).map(|i| i + 1)
}

/// Proposal latency over `table`: `observations` random rows told with their yields, then `cycles` rounds of one
/// timed ask and one tell, after one untimed ask, as [`super::latency_run`] does on Hartmann-6. Returns the times
/// in milliseconds, how many of them re-estimated the hyperparameters, and how many came from the noisy model.
/// `clock` reads the time.
pub fn latency_run(
    table: &ReactionTable,
    observations: usize,
    cycles: usize,
    seed: u64,
    clock: &dyn Fn() -> std::time::Instant,
) -> (Vec<f64>, usize, usize) {
    let output = table.output.as_str();
    let problem = Problem {
        space: table.space.clone(),
        objectives: vec![Objective::maximize(output)],
        budget: observations + cycles + 1,
        stop: crate::StopRules::default(),
        pool: Some(table.lookup.points.clone()),
    };
    let mut random = build_for(&ProposerConfig::Random, &problem, seed ^ 0xA5A5);
    // The told rows stand in for the random start, so every timed proposal uses the model.
    let config =
        ProposerConfig::GaussianProcess { initial: 0, acquisition: crate::Acquisition::LogExpectedImprovement };
    let mut proposer = build_for(&config, &problem, seed);
    let mut tell = |p: &mut dyn crate::Proposer, values: crate::Point| {
        let outputs = table.lookup.measure(&table.space, &values);
        p.tell_outcome(crate::Outcome { values, outputs });
    };
    for q in random.ask(observations, &[]) {
        tell(proposer.as_mut(), q.values);
    }
    super::time_proposals(proposer.as_mut(), cycles, clock, &mut tell)
}

/// The table as a problem for the peers' harness (`peers/python/run.py`), in the landscapes' format: categorical
/// dimensions, the rows by level value with their yields, no noise.
pub fn export(table: &ReactionTable, seeds: usize) -> serde_json::Value {
    let dims = super::landscape::export_dims(&table.space);
    let rows: Vec<Vec<f64>> =
        table.lookup.points.iter().map(|p| table.space.dims().iter().map(|d| p[&d.name]).collect()).collect();
    let values: Vec<f64> =
        table.lookup.outcomes.iter().map(|o| o.as_ref().map_or(f64::NEG_INFINITY, |m| m[&table.output])).collect();
    let best = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    json!({
        "name": table.name,
        "kind": "reaction",
        "dims": dims,
        "budget": REACTION_BUDGET,
        "initial": 2 * table.space.len() + 1,
        "optimum": best,
        "target": table.threshold,
        "rule": format!("top 1% of the table ({} of {} rows, yield >= {})", table.top, rows.len(), table.threshold),
        "noise_sd": 0.0,
        "table": {"rows": rows, "values": values},
        "noise": vec![vec![0.0; REACTION_BUDGET]; seeds],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{buchwald, default_gp};

    #[test]
    fn the_reaction_tables_are_the_documented_ones() {
        let tables = reaction_tables();
        let sizes: Vec<(&str, usize, usize)> =
            tables.iter().map(|t| (t.name.as_str(), t.lookup.points.len(), t.top)).collect();
        assert_eq!(
            sizes,
            vec![
                ("buchwald-hartwig/CF3-phenyl", 790, 8),
                ("buchwald-hartwig/OMe-phenyl", 792, 8),
                ("buchwald-hartwig/Et-phenyl", 790, 8),
                ("buchwald-hartwig/2-pyridyl", 792, 8),
                ("buchwald-hartwig/3-pyridyl", 791, 8),
                ("suzuki-miyaura", 5760, 58),
            ]
        );
        for t in &tables {
            assert_eq!(t.lookup.excluded + t.lookup.duplicates, 0, "{}", t.name);
            assert!(t.space.dims().iter().all(|d| d.is_categorical()), "{}", t.name);
        }
        let counts: Vec<usize> = tables[0].space.dims().iter().filter_map(|d| d.count()).collect();
        assert_eq!(counts, vec![3, 22, 3, 4]);
        let counts: Vec<usize> = tables[5].space.dims().iter().filter_map(|d| d.count()).collect();
        assert_eq!(counts, vec![7, 4, 12, 8, 4]);
    }

    #[test]
    fn the_cf3_table_holds_the_studied_tables_yields() {
        // The studied table (Olympus's copy) has two more rows, filled in; every other yield is the same.
        let studied = buchwald();
        let cf3 = &reaction_tables()[0];
        let yields = |l: &Lookup| -> Vec<u64> {
            let mut v: Vec<u64> = l.outcomes.iter().filter_map(|o| o.as_ref().map(|m| m["yield"].to_bits())).collect();
            v.sort_unstable();
            v
        };
        let (threshold, studied) = (studied.threshold, yields(&studied.lookup));
        assert_eq!(yields(&cf3.lookup).iter().filter(|y| studied.binary_search(y).is_ok()).count(), 790);
        assert_eq!(cf3.threshold, threshold);
    }

    #[test]
    fn a_run_finds_the_top_of_a_table_and_the_export_matches_it() {
        let t = &reaction_tables()[3];
        let hit = reaction_run(&default_gp(t.space.len()), t, REACTION_BUDGET, 1, 0);
        assert!(hit.is_some_and(|h| h <= REACTION_BUDGET), "{hit:?}");
        let spec = export(t, 2);
        assert_eq!(spec["table"]["rows"].as_array().map(Vec::len), Some(792));
        assert_eq!(spec["target"].as_f64(), Some(t.threshold));
        assert_eq!(spec["noise"].as_array().map(Vec::len), Some(2));
    }
}
