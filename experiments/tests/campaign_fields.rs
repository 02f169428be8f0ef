//! The campaign fields beyond a box of continuous ranges: integer and categorical parameters, linear
//! constraints, per-batch parameters, several objectives and stop rules; each loaded, and each error reported
//! with its code, line and column.

use experiments::{Direction, Encoding, Kind, StopReason, load_campaign};
use protocols::{Diagnostics, SourceFile, parse_protocol};

fn render(diags: &Diagnostics) -> Vec<String> {
    diags
        .iter()
        .map(|d| {
            let (line, col) = d.line_col();
            format!("{line}:{col} {} {}", d.code, d.message)
        })
        .collect()
}

/// Loads `ron` and compares its diagnostics with `expected`.
#[track_caller]
fn check(ron: &str, expected: &[&str]) {
    let got = match load_campaign(SourceFile::new("t.campaign.ron", ron)) {
        Ok((_, warnings)) => render(&warnings),
        Err(diags) => render(&diags),
    };
    assert_eq!(got, expected, "\n got: {got:#?}\nwant: {expected:#?}");
}

const PROTOCOL: &str = r#"Protocol(
    format: 1,
    name: "p",
    parameters: {
        "volume_a": (unit: "uL", min: 1, max: 500),
        "volume_b": (unit: "uL", min: 1, max: 500),
        "temperature": (unit: "degC", min: 20, max: 100),
        "base": (unit: "1", min: 1, max: 3),
        "drops": (unit: "1", min: 0, max: 10),
    },
    outputs: { "yield": (unit: "AU"), "impurity": (unit: "AU") },
    steps: [
        (id: "load", op: Transfer(to: Kind(SyringePump))),
        (id: "a", on: Named("pump_a"), op: Dispense(volume: "$volume_a"), after: ["load"]),
        (id: "b", on: Named("pump_a"), op: Dispense(volume: "$volume_b"), after: ["a"]),
        (id: "go", op: Transfer(to: Kind(Hotplate)), after: ["b"]),
        (id: "heat", op: Heat(temperature: "$temperature", duration: "10 min"), after: ["go"]),
        (id: "go2", op: Transfer(to: Kind(Spectrometer)), after: ["heat"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "yield"), after: ["go2"]),
        (id: "read2", op: Measure(wavelength: "420 nm", output: "impurity"), after: ["read"]),
    ],
)
"#;

const FULL: &str = r#"Campaign(
    format: 1,
    name: "t",
    protocol: "p.protocol.ron",
    lab: "sim.lab.ron",
    vary: {
        "volume_a": (min: 10, max: 400),
        "volume_b": Continuous(min: 10, max: 400),
        "temperature": Integer(min: 30, max: 90, step: 10),
        "base": Categorical(levels: { "DBU": 1, "MTBD": 2, "BTMG": 3 }),
    },
    fixed: { "drops": 2 },
    objectives: [Maximize("yield"), Minimize("impurity")],
    budget: 20,
    in_flight: 4,
    proposer: GaussianProcess(initial: 6, acquisition: ProbabilityOfImprovement),
    seed: 3,
    constraints: [(terms: { "volume_a": 1, "volume_b": 1, "drops": 10 }, max: 520)],
    per_batch: ["temperature"],
    stop: (max_time: "8 h", min_expected_improvement: 0.001, patience: 4),
)
"#;

#[track_caller]
fn full_with(from: &str, to: &str) -> String {
    assert!(FULL.contains(from), "`{from}` is not in the fixture");
    FULL.replace(from, to)
}

#[test]
fn every_new_field_loads_and_checks_against_the_protocol() {
    let (c, warnings) = load_campaign(SourceFile::new("t", FULL)).unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    let dims = c.space.dims();
    assert_eq!(
        dims.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["volume_a", "volume_b", "temperature", "base"]
    );
    assert!(matches!(dims[2].kind, Kind::Integer { step } if step == 10.0));
    let levels = dims[3].levels().unwrap();
    assert_eq!(
        levels.iter().map(|l| (l.label.as_str(), l.value)).collect::<Vec<_>>(),
        [("DBU", 1.0), ("MTBD", 2.0), ("BTMG", 3.0)]
    );
    assert!(matches!(&dims[3].kind, Kind::Categorical { encoding: Encoding::OneHot, .. }));
    // The fixed 2 drops × 10 move into the bound: volume_a + volume_b <= 500.
    let constraint = &c.space.constraints()[0];
    assert_eq!(constraint.max, Some(500.0));
    assert_eq!(constraint.terms.len(), 2);
    assert_eq!(c.space.per_batch(), ["temperature"]);
    assert_eq!(c.objectives.len(), 2);
    assert_eq!((c.objective.output.as_str(), c.objectives[1].direction), ("yield", Direction::Minimize));
    assert_eq!(c.stop.max_time, Some(8.0 * 3600.0));
    assert_eq!((c.stop.min_expected_improvement, c.stop.patience), (Some(0.001), 4));
    assert!(matches!(c.stop.check_time(9.0 * 3600.0), Some(StopReason::Time { .. })));
    let protocol = parse_protocol("p", PROTOCOL).unwrap();
    assert!(c.check_against(&protocol).is_empty(), "{}", c.check_against(&protocol));
    let mut proposer = c.build_proposer();
    assert_eq!(proposer.name(), "gaussian process (ParEGO, PI)");
    let batch = proposer.ask(4, &[]);
    assert_eq!(batch.len(), 4);
    for p in &batch {
        assert!(c.space.contains(&p.values), "{:?}", p.values);
        assert_eq!(p.values["temperature"], batch[0].values["temperature"], "one temperature per batch");
        assert!(p.labels.contains_key("base"));
        protocol.bind(&c.parameters(&p.values)).expect("every proposal binds to the protocol");
    }
}

#[test]
fn a_single_objective_campaign_keeps_the_old_fields() {
    let ron =
        full_with("objectives: [Maximize(\"yield\"), Minimize(\"impurity\")]", "objective: Minimize(\"impurity\")");
    let (c, _) = load_campaign(SourceFile::new("t", &ron)).unwrap();
    assert_eq!(c.objectives, vec![c.objective.clone()]);
    assert_eq!(c.objective.direction, Direction::Minimize);
}

#[test]
fn categorical_levels_are_checked() {
    check(
        &full_with("{ \"DBU\": 1, \"MTBD\": 2, \"BTMG\": 3 }", "{ \"DBU\": 1 }"),
        &["10:37 C0012 `base` has 1 level(s); a categorical parameter needs at least 2"],
    );
    check(
        &full_with("\"MTBD\": 2", "\"MTBD\": 1"),
        &["10:57 C0012 levels `DBU` and `MTBD` of `base` both have the value 1"],
    );
    check(
        &full_with("\"BTMG\": 3 }", "\"BTMG\": 3, \"DBU\": 4 }"),
        &["10:71 C0012 level `DBU` of `base` is listed twice"],
    );
    check(
        &full_with("\"BTMG\": 3 })", "\"BTMG\": 3 }, encoding: Descriptors({ \"DBU\": [1.0], \"MTBD\": [2.0, 3.0] }))"),
        &[
            "10:83 C0012 level `BTMG` of `base` has no descriptors",
            "10:119 C0012 the descriptors of level `MTBD` of `base` are not 1 finite numbers",
        ],
    );
}

#[test]
fn levels_outside_the_protocol_range_are_reported() {
    let ron = full_with("\"BTMG\": 3", "\"BTMG\": 7");
    let (c, _) = load_campaign(SourceFile::new("t", &ron)).unwrap();
    let got = render(&c.check_against(&parse_protocol("p", PROTOCOL).unwrap()));
    assert_eq!(got, ["10:68 C0009 level `BTMG` of `base` sets it to 7 1, outside the protocol's range 1..=3 1"]);
}

#[test]
fn integer_steps_must_be_positive_and_fit() {
    check(
        &full_with("step: 10", "step: 0"),
        &["9:56 C0003 the step of `temperature` is 0, but it must be a positive number"],
    );
    check(
        &full_with("step: 10", "step: 100"),
        &["9:56 C0003 `temperature` takes only one value: the step 100 is wider than its range"],
    );
}

#[test]
fn constraints_are_checked() {
    check(
        &full_with("\"drops\": 10 }, max: 520", "\"drops\": 10 }, max: 520, equals: 3"),
        &["18:92 C0013 the constraint gives `equals` together with `min` or `max`"],
    );
    check(&full_with(", max: 520)", ")"), &["18:19 C0013 the constraint has no bound"]);
    check(
        &full_with("\"volume_a\": 1, \"volume_b\"", "\"volume_c\": 1, \"volume_b\""),
        &["18:29 C0013 the constraint names `volume_c`, which is neither varied nor fixed"],
    );
    check(
        &full_with("\"drops\": 10 }", "\"base\": 10 }"),
        &["18:59 C0013 `base` is categorical, so it cannot be summed"],
    );
    check(
        &full_with("max: 520", "min: 900"),
        &[
            "18:19 C0013 the constraints leave no point of the space: `volume_a + volume_b + 10 × drops` must be at least 900, but within the ranges of `vary` and the values of `fixed` it runs from 40 to 820",
        ],
    );
    let on_grid = |bound: &str| {
        full_with(
            "\"volume_a\": 1, \"volume_b\": 1, \"drops\": 10 }, max: 520",
            &format!("\"temperature\": 2 }}, {bound}"),
        )
    };
    check(
        &on_grid("equals: 105"),
        &[
            "18:19 C0013 the constraints leave no point of the space: `2 × temperature` must be equal to 105, and no value of `temperature` on its grid makes it so",
        ],
    );
    check(&on_grid("equals: 100"), &[]);
    check(
        &on_grid("min: 101, max: 119"),
        &[
            "18:19 C0013 the constraints leave no point of the space: `2 × temperature` must be between 101 and 119, and no value of `temperature` on its grid makes it so",
        ],
    );
    check(
        &full_with(
            "max: 520)]",
            "max: 520), (terms: { \"volume_a\": 1, \"volume_b\": -1 }, min: 300), (terms: { \"volume_b\": 2 }, min: 300)]",
        ),
        &[
            "18:5 C0013 the constraints leave no point of the space: no values within the ranges of `vary` meet these together, though each can be met alone: `volume_a + volume_b + 10 × drops` at most 520; `volume_a - volume_b` at least 300; `2 × volume_b` at least 300",
        ],
    );
    check(&full_with("max: 520", "min: 30, max: 20"), &["18:79 C0013 the constraint's `min` 30 is above its `max` 20"]);
}

#[test]
fn per_batch_names_varied_parameters_once() {
    check(
        &full_with("per_batch: [\"temperature\"]", "per_batch: [\"temperature\", \"drops\", \"temperature\"]"),
        &[
            "19:32 C0014 `drops` in `per_batch` is not varied",
            "19:41 C0014 `temperature` is listed twice in `per_batch`",
        ],
    );
}

#[test]
fn objectives_are_given_once_and_not_repeated() {
    check(
        &full_with(
            "objectives: [Maximize(\"yield\"), Minimize(\"impurity\")]",
            "objectives: [Maximize(\"yield\"), Minimize(\"yield\")]",
        ),
        &["13:37 C0016 `yield` is listed twice in `objectives`"],
    );
    check(
        &full_with("objectives: [Maximize(\"yield\"), Minimize(\"impurity\")]", "objectives: []"),
        &["13:17 C0016 `objectives` lists no outputs"],
    );
    check(
        &full_with("objectives: [", "objective: Maximize(\"yield\"),\n    objectives: ["),
        &["14:5 C0016 the campaign gives both `objective` and `objectives`"],
    );
    check(
        &full_with("objectives: [Maximize(\"yield\"), Minimize(\"impurity\")],\n", ""),
        &["1:1 C0016 the campaign has no `objective`"],
    );
    let ron = full_with("Minimize(\"impurity\")", "Minimize(\"purity\")");
    let (c, _) = load_campaign(SourceFile::new("t", &ron)).unwrap();
    let got = render(&c.check_against(&parse_protocol("p", PROTOCOL).unwrap()));
    assert_eq!(got, ["13:46 C0011 protocol `p` has no output `purity`"]);
}

#[test]
fn stop_rules_are_checked() {
    check(
        &full_with("max_time: \"8 h\"", "max_time: \"8 uL\""),
        &["20:22 C0015 `max_time` is \"8 uL\", not a positive duration"],
    );
    check(
        &full_with("min_expected_improvement: 0.001", "min_expected_improvement: 2"),
        &["20:55 C0015 `min_expected_improvement` is 2, but it must be between 0 and 1"],
    );
    check(&full_with("patience: 4", "patience: 0"), &["20:72 C0015 `patience` is 0"]);
    check(&full_with("max_time: \"8 h\"", "target: 0.9"), &["20:20 C0015 `target` needs a single objective"]);
}
