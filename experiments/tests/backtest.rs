//! Backtests: a campaign's proposer against a lookup table, through the same calls `lab campaign --backtest`
//! makes.

use experiments::backtest::{BacktestOptions, Dataset, run_backtest};
use experiments::load_campaign;
use protocols::SourceFile;

const CAMPAIGN: &str = r#"Campaign(
    format: 1,
    name: "screen",
    protocol: "p.protocol.ron",
    lab: "sim.lab.ron",
    vary: {
        "catalyst": Categorical(levels: { "Pd": 1, "Ni": 2, "Cu": 3 }),
        "temperature": Integer(min: 20, max: 80, step: 20),
    },
    fixed: { "time": 30 },
    objective: Maximize("yield"),
    budget: 9,
    in_flight: 2,
    proposer: GaussianProcess(initial: 3),
    seed: 4,
)
"#;

/// Every catalyst at every temperature (yield peaks for Ni at 60), one failed run, one row at another fixed
/// time, one outside the ranges and one repeat.
fn table() -> String {
    let mut csv = String::from("catalyst,temperature,time,yield\n");
    for (c, base) in [("Pd", 30.0), ("Ni", 50.0), ("Cu", 10.0)] {
        for t in [20.0, 40.0, 60.0, 80.0] {
            let y: f64 = base - (t - 60.0f64).abs() / 4.0;
            let cell = if c == "Cu" && t == 80.0 { String::new() } else { format!("{y}") };
            csv.push_str(&format!("{c},{t},30,{cell}\n"));
        }
    }
    csv.push_str("Pd,40,45,99\n");
    csv.push_str("Pt,40,30,99\n");
    csv.push_str("\"Ni\",60,30,1\n");
    csv
}

#[test]
fn a_backtest_measures_by_lookup_and_reports_against_the_table() {
    let (campaign, _) = load_campaign(SourceFile::new("screen.campaign.ron", CAMPAIGN)).unwrap();
    let dataset = Dataset::parse_csv(&table()).unwrap();
    let report = run_backtest(&campaign, &dataset, &BacktestOptions::default()).unwrap();
    assert_eq!((report.rows, report.pool, report.excluded, report.duplicates), (15, 12, 2, 1));
    assert_eq!((report.budget, report.in_flight, report.seed), (9, 2, 4));
    assert_eq!(report.steps.len(), 9);
    let mut seen: Vec<String> = report.steps.iter().map(|s| format!("{:?}", s.proposal.values)).collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 9, "no row is measured twice");
    for s in &report.steps {
        assert!(campaign.space.contains(&s.proposal.values));
        let expected_failure = s.proposal.labels["catalyst"] == "Cu" && s.proposal.values["temperature"] == 80.0;
        assert_eq!(s.outputs.is_none(), expected_failure);
    }
    assert_eq!(report.table_best, Some(50.0));
    assert_eq!((report.top_threshold, report.top_count), (Some(50.0), 1));
    let to_best = report.to_best.expect("9 of 12 rows, guided by the model, include the best");
    assert_eq!(report.to_top, Some(to_best));
    let text = report.to_string();
    assert!(
        text.starts_with(
            "backtest of campaign `screen` (gaussian process (LogEI)): 9 experiments, 2 in flight, seed 4"
        )
    );
    assert!(text.contains("catalyst=Ni temperature=60"), "{text}");
    assert!(text.contains("random search needs 6.5 experiments on average to reach the top 1%"), "{text}");
}

#[test]
fn options_override_the_campaign_and_bad_tables_are_refused() {
    let (campaign, _) = load_campaign(SourceFile::new("screen.campaign.ron", CAMPAIGN)).unwrap();
    let dataset = Dataset::parse_csv(&table()).unwrap();
    let options = BacktestOptions { seed: Some(1), budget: Some(100), in_flight: Some(1) };
    let report = run_backtest(&campaign, &dataset, &options).unwrap();
    assert_eq!(report.steps.len(), 12, "the budget is capped by the table");
    let missing = Dataset::parse_csv("catalyst,yield\nPd,1\n").unwrap();
    let err = run_backtest(&campaign, &missing, &options).unwrap_err();
    assert_eq!(err.to_string(), "the table has no column `temperature` (its columns are: catalyst, yield)");
    let outside = Dataset::parse_csv("catalyst,temperature,yield\nPt,20,1\n").unwrap();
    let err = run_backtest(&campaign, &outside, &options).unwrap_err();
    assert_eq!(err.to_string(), "none of the table's 1 rows lies in the campaign's space");
}
