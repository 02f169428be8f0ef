//! The campaign loader's diagnostics: one case per error kind, each checked for its code, line, column and message.
//!
//! Every case goes through [`check`] or [`check_against`], the only places that call the loader, so the tests
//! read as data: a RON fixture and the diagnostics it must produce, rendered as `line:col code message`.

use experiments::{Acquisition, Direction, ProposerConfig, load_campaign};
use protocols::{Diagnostic, Diagnostics, SourceFile, parse_protocol};

/// Loads `ron` and compares its diagnostics, one per line as `line:col code message`, with `expected`.
#[track_caller]
fn check(ron: &str, expected: &[&str]) {
    let got = match load_campaign(SourceFile::new("t.campaign.ron", ron)) {
        Ok((_, warnings)) => render_all(&warnings),
        Err(diags) => render_all(&diags),
    };
    assert_eq!(got, expected, "\n got: {got:#?}\nwant: {expected:#?}");
}

/// Loads `ron` (which must load), checks it against [`PROTOCOL`] and compares the diagnostics with `expected`.
#[track_caller]
fn check_against(ron: &str, expected: &[&str]) {
    let (campaign, _) = load_campaign(SourceFile::new("t.campaign.ron", ron)).expect("the campaign loads on its own");
    let protocol = parse_protocol("p.protocol.ron", PROTOCOL).expect("the test protocol is valid");
    let got = render_all(&campaign.check_against(&protocol));
    assert_eq!(got, expected, "\n got: {got:#?}\nwant: {expected:#?}");
}

/// The help text of the first diagnostic of `ron`, from loading alone or, if it loads, from checking it against
/// [`PROTOCOL`].
fn first_help(ron: &str) -> String {
    let diags = match load_campaign(SourceFile::new("t.campaign.ron", ron)) {
        Ok((c, _)) => c.check_against(&parse_protocol("p", PROTOCOL).unwrap()),
        Err(d) => d,
    };
    diags.iter().next().and_then(|d| d.help.clone()).unwrap_or_default()
}

fn render_all(diags: &Diagnostics) -> Vec<String> {
    diags.iter().map(render).collect()
}

fn render(d: &Diagnostic) -> String {
    let (line, col) = d.line_col();
    format!("{line}:{col} {} {}", d.code, d.message)
}

const PROTOCOL: &str = r#"Protocol(
    format: 1,
    name: "p",
    parameters: {
        "volume": (unit: "uL", min: 10, max: 100),
        "temperature": (unit: "degC", min: 20, max: 100),
        "duration": (unit: "min", min: 1, max: 60),
        "extra": (unit: "uL", min: 10, max: 100, default: 50),
    },
    outputs: { "yield": (unit: "AU") },
    steps: [
        (id: "load", op: Transfer(to: Kind(SyringePump))),
        (id: "add", on: Named("pump_a"), op: Dispense(volume: "$volume"), after: ["load"]),
        (id: "add2", on: Named("pump_a"), op: Dispense(volume: "$extra"), after: ["add"]),
        (id: "go", op: Transfer(to: Kind(Hotplate)), after: ["add2"]),
        (id: "heat", op: Heat(temperature: "$temperature", duration: "$duration"), after: ["go"]),
        (id: "go2", op: Transfer(to: Kind(Spectrometer)), after: ["heat"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "yield"), after: ["go2"]),
    ],
)
"#;

const GOOD: &str = r#"Campaign(
    format: 1,
    name: "t",
    protocol: "p.protocol.ron",
    lab: "sim.lab.ron",
    vary: {
        "volume": (min: 10, max: 100),
        "temperature": (min: 30, max: 90),
    },
    fixed: { "duration": 5 },
    objective: Maximize("yield"),
    budget: 10,
    in_flight: 2,
    proposer: GaussianProcess(initial: 4),
    seed: 7,
)
"#;

/// [`GOOD`] with `from` replaced by `to`; `from` must occur.
#[track_caller]
fn good_with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "`{from}` is not in the fixture");
    GOOD.replace(from, to)
}

#[test]
fn a_good_campaign_loads_and_checks_without_diagnostics() {
    check(GOOD, &[]);
    check_against(GOOD, &[]);
    let (c, _) = load_campaign(SourceFile::new("t", GOOD)).unwrap();
    assert_eq!(c.name, "t");
    assert_eq!(c.space.dims().len(), 2);
    assert_eq!(
        (c.space.dims()[1].name.as_str(), c.space.dims()[1].min, c.space.dims()[1].max),
        ("temperature", 30.0, 90.0)
    );
    assert_eq!(c.fixed["duration"], 5.0);
    assert_eq!(c.objective.direction, Direction::Maximize);
    assert_eq!((c.budget, c.in_flight, c.seed), (10, 2, 7));
    assert_eq!(
        c.proposer,
        ProposerConfig::GaussianProcess { initial: 4, acquisition: Acquisition::LogExpectedImprovement }
    );
}

#[test]
fn the_demo_campaign_loads_and_checks_clean_against_the_library_protocol() {
    let text = include_str!("../campaigns/demo.campaign.ron");
    let (campaign, warnings) = load_campaign(SourceFile::new("demo.campaign.ron", text)).expect("demo loads");
    assert!(warnings.is_empty(), "{warnings}");
    assert_eq!(campaign.protocol, "../../protocols/library/condensation.protocol.ron");
    // The protocol path is relative to the campaign file's folder, as the controller resolves it.
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("campaigns");
    let path = folder.join(&campaign.protocol);
    let protocol_text = std::fs::read_to_string(&path).expect("the demo's protocol exists");
    let protocol = parse_protocol(&path.display().to_string(), &protocol_text).expect("the library protocol is valid");
    let diags = campaign.check_against(&protocol);
    assert!(diags.is_empty(), "{diags}");
    let mut proposer = campaign.build_proposer();
    assert_eq!(proposer.name(), "gaussian process (LogEI)");
    let batch = proposer.ask(campaign.in_flight, &[]);
    assert_eq!(batch.len(), 4);
    for p in &batch {
        assert!(campaign.space.contains(&p.values));
        protocol.bind(&campaign.parameters(&p.values)).expect("every proposal binds to the protocol");
    }
}

#[test]
fn syntax_errors_point_at_the_break() {
    check(&good_with("    budget: 10,", "    budget: 10"), &["13:5 L0001 RON syntax error: expected comma"]);
}

#[test]
fn unknown_fields_name_the_alternatives() {
    check(&good_with("budget: 10", "budjet: 10"), &["12:5 L0002 unknown field `budjet` in this campaign"]);
    assert!(first_help(&good_with("budget: 10", "budjet: 10")).starts_with("did you mean `budget`?"));
    check(
        &good_with("(min: 10, max: 100)", "(min: 10, maks: 100)"),
        &["7:29 L0002 unknown field `maks` in this range"],
    );
}

#[test]
fn unknown_objectives_proposers_and_acquisitions_name_the_alternatives() {
    let ron = good_with("Maximize(\"yield\")", "Maximise(\"yield\")");
    check(&ron, &["11:16 L0002 unknown objective (use `Maximize(\"output\")` or `Minimize(\"output\")`) `Maximise`"]);
    assert!(first_help(&ron).starts_with("did you mean `Maximize`?"));
    let ron = good_with("GaussianProcess(initial: 4)", "GausianProcess(initial: 4)");
    check(&ron, &["14:15 L0002 unknown proposer `GausianProcess`"]);
    assert!(first_help(&ron).starts_with("did you mean `GaussianProcess`?"));
    let ron = good_with("GaussianProcess(initial: 4)", "GaussianProcess(initial: 4, acquisition: LogEI)");
    check(&ron, &["14:56 L0002 unknown variant `LogEI`"]);
}

#[test]
fn the_three_sections_report_their_errors_together() {
    let ron = good_with("Maximize(\"yield\")", "Maximise(\"yield\")")
        .replace("(min: 10, max: 100)", "(min: 100, max: 10)")
        .replace("initial: 4", "initial: 40");
    check(
        &ron,
        &[
            "7:25 C0003 the range of `volume` is empty: min 100 is not below max 10",
            "11:16 L0002 unknown objective (use `Maximize(\"output\")` or `Minimize(\"output\")`) `Maximise`",
            "14:40 C0006 `initial` is 40, more than the budget of 10",
        ],
    );
}

#[test]
fn the_format_version_is_checked() {
    check(&good_with("format: 1", "format: 2"), &["2:13 C0001 unsupported campaign format 2"]);
}

#[test]
fn required_text_must_not_be_empty() {
    check(&good_with("name: \"t\"", "name: \"\""), &["3:11 C0002 the campaign's `name` is empty"]);
    check(&good_with("lab: \"sim.lab.ron\"", "lab: \" \""), &["5:10 C0002 the campaign's `lab` is empty"]);
    check(&good_with("Maximize(\"yield\")", "Maximize(\"\")"), &["11:25 C0002 the objective names no output"]);
}

#[test]
fn ranges_must_be_finite_and_non_empty() {
    check(
        &good_with("(min: 10, max: 100)", "(min: 10, max: inf)"),
        &["7:34 C0003 the range of `volume` has a max that is not a finite number"],
    );
    let ron = good_with("(min: 30, max: 90)", "(min: 30, max: 30)");
    check(&ron, &["8:30 C0003 the range of `temperature` is empty: min 30 is not below max 30"]);
    assert_eq!(first_help(&ron), "to hold `temperature` at one value, move it to `fixed`: `\"temperature\": 30`");
    check(
        &good_with("{ \"duration\": 5 }", "{ \"duration\": NaN }"),
        &["10:26 C0003 fixed `duration` is not a finite number"],
    );
    check(
        &good_with("{ \"duration\": 5 }", "{ \"duration\": \"5 min\" }"),
        &["10:26 L0001 RON syntax error: expected float"],
    );
}

#[test]
fn a_campaign_must_vary_something() {
    let ron = good_with(
        "vary: {\n        \"volume\": (min: 10, max: 100),\n        \"temperature\": (min: 30, max: 90),\n    }",
        "vary: {}",
    );
    check(&ron, &["6:11 C0004 the campaign varies no parameters"]);
}

#[test]
fn budget_and_in_flight_are_checked() {
    check(
        &good_with("budget: 10,\n    in_flight: 2", "budget: 0,\n    in_flight: 0"),
        &["12:13 C0005 the budget is 0 experiments", "13:16 C0005 `in_flight` is 0, so no experiment could ever start"],
    );
    // More in flight than the budget is only a warning.
    check(&good_with("in_flight: 2", "in_flight: 12"), &["13:16 C0005 `in_flight` is 12, more than the budget of 10"]);
    let (_, warnings) = load_campaign(SourceFile::new("t", good_with("in_flight: 2", "in_flight: 12"))).unwrap();
    assert!(!warnings.has_errors());
}

#[test]
fn proposer_settings_are_checked() {
    check(
        &good_with("initial: 4", "initial: 0"),
        &["14:40 C0006 the Gaussian process needs at least 1 initial experiment"],
    );
    check(
        &good_with("initial: 4", "initial: 4, acquisition: UpperConfidenceBound(beta: 0)"),
        &["14:83 C0006 `beta` is 0, but it must be a positive number"],
    );
    let (c, _) = load_campaign(SourceFile::new(
        "t",
        good_with("initial: 4", "initial: 4, acquisition: UpperConfidenceBound(beta: 2.5)"),
    ))
    .unwrap();
    assert_eq!(
        c.proposer,
        ProposerConfig::GaussianProcess { initial: 4, acquisition: Acquisition::UpperConfidenceBound { beta: 2.5 } }
    );
    let (c, _) = load_campaign(SourceFile::new("t", good_with("GaussianProcess(initial: 4)", "SpaceFilling"))).unwrap();
    assert_eq!(c.proposer, ProposerConfig::SpaceFilling);
}

#[test]
fn a_parameter_cannot_be_named_twice() {
    check(
        &good_with("{ \"duration\": 5 }", "{ \"temperature\": 50 }"),
        &["10:14 C0007 `temperature` is both varied and fixed"],
    );
    check(
        &good_with("\"temperature\": (min: 30, max: 90),", "\"volume\": (min: 30, max: 90),"),
        &["8:9 C0007 `volume` is listed twice in `vary`"],
    );
}

#[test]
fn a_file_of_another_kind_is_named() {
    let errs = load_campaign(SourceFile::new("t", PROTOCOL)).unwrap_err();
    assert_eq!(errs.iter().next().unwrap().message, "this file holds a `Protocol`, but a `Campaign` was expected here");
}

#[test]
fn names_must_be_parameters_of_the_protocol() {
    let ron = good_with("\"temperature\": (min", "\"temprature\": (min");
    check_against(
        &ron,
        &[
            "6:5 C0010 protocol parameter `temperature` has no default, so the campaign must vary or fix it",
            "8:9 C0008 protocol `p` has no parameter `temprature`",
        ],
    );
    assert!(first_help(&ron).starts_with("add `\"temperature\": (min: 20, max: 100)` to `vary`"));
    let diags =
        load_campaign(SourceFile::new("t", ron)).unwrap().0.check_against(&parse_protocol("p", PROTOCOL).unwrap());
    assert_eq!(
        diags.iter().nth(1).unwrap().help.as_deref(),
        Some("did you mean `temperature`? The parameters of `p` are: `duration`, `extra`, `temperature`, `volume`")
    );
    check_against(
        &good_with("{ \"duration\": 5 }", "{ \"duration\": 5, \"speed\": 3 }"),
        &["10:29 C0008 protocol `p` has no parameter `speed`"],
    );
}

#[test]
fn ranges_and_values_must_fit_the_protocol() {
    let ron = good_with("(min: 30, max: 90)", "(min: 10, max: 90)");
    check_against(
        &ron,
        &["8:30 C0009 `temperature` varies over 10..=90 degC, outside the protocol's range 20..=100 degC"],
    );
    assert_eq!(first_help(&ron), "protocol `p` allows `temperature` from 20 to 100 degC; narrow the range to fit");
    check_against(
        &good_with("(min: 10, max: 100)", "(min: 10, max: 150)"),
        &["7:34 C0009 `volume` varies over 10..=150 uL, outside the protocol's range 10..=100 uL"],
    );
    check_against(
        &good_with("{ \"duration\": 5 }", "{ \"duration\": 90 }"),
        &["10:26 C0009 fixed `duration` = 90 min is outside the protocol's range 1..=60 min"],
    );
}

#[test]
fn parameters_without_defaults_must_be_covered() {
    check_against(
        &good_with("{ \"duration\": 5 }", "{}"),
        &["6:5 C0010 protocol parameter `duration` has no default, so the campaign must vary or fix it"],
    );
}

#[test]
fn the_objective_must_be_a_declared_output() {
    let ron = good_with("Maximize(\"yield\")", "Minimize(\"yeild\")");
    check_against(&ron, &["11:25 C0011 protocol `p` has no output `yeild`"]);
    assert_eq!(first_help(&ron), "did you mean `yield`?");
}
