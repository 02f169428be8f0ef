//! The protocol loader's diagnostics: one case per error kind, each checked for its code, line, column and message.
//!
//! Every case goes through [`check`], the single place that calls the loader, so the tests read as data: a RON
//! fixture and the diagnostics it must produce, rendered as `line:col code message`.

use protocols::{SourceFile, load_protocol};

/// Loads `ron` and compares its diagnostics, one per line as `line:col code message`, with `expected`.
#[track_caller]
fn check(ron: &str, expected: &[&str]) {
    let got = match load_protocol(SourceFile::new("t.protocol.ron", ron)) {
        Ok((_, warnings)) => warnings.iter().map(render).collect::<Vec<_>>(),
        Err(diags) => diags.iter().map(render).collect(),
    };
    let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    assert_eq!(got, expected, "\n got: {got:#?}\nwant: {expected:#?}");
}

/// Loads `ron` and returns the help text of its first diagnostic.
fn first_help(ron: &str) -> String {
    let diags = load_protocol(SourceFile::new("t.protocol.ron", ron)).expect_err("must fail");
    diags.iter().next().and_then(|d| d.help.clone()).unwrap_or_default()
}

fn render(d: &protocols::Diagnostic) -> String {
    let (line, col) = d.line_col();
    format!("{line}:{col} {} {}", d.code, d.message)
}

const HEAD: &str = r#"Protocol(
    format: 1,
    name: "t",
    parameters: { "v": (unit: "uL", min: 10, max: 100) },
    outputs: { "a": (unit: "AU") },
"#;

fn with_steps(steps: &str) -> String {
    format!("{HEAD}    steps: [\n{steps}    ],\n)\n")
}

const GOOD_STEPS: &str = r#"        (id: "load", op: Transfer(to: Kind(SyringePump))),
        (id: "add", on: Named("pump_a"), op: Dispense(volume: "$v"), after: ["load"]),
        (id: "go", op: Transfer(to: Kind(Spectrometer)), after: ["add"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "a"), after: ["go"]),
"#;

#[test]
fn a_good_protocol_loads_without_diagnostics() {
    check(&with_steps(GOOD_STEPS), &[]);
    let (p, _) = load_protocol(SourceFile::new("t", with_steps(GOOD_STEPS))).unwrap();
    assert_eq!(p.steps().len(), 4);
    assert_eq!(p.dependencies(3), vec![2]);
    assert_eq!(p.topological_order(), &[0, 1, 2, 3]);
}

#[test]
fn syntax_errors_point_at_the_break() {
    check("Protocol(\n    format: 1\n    name: \"x\",\n)", &["3:5 L0001 RON syntax error: expected comma"]);
}

#[test]
fn unknown_fields_are_reported_in_every_step_at_once() {
    let steps = r#"        (id: "load", op: Transfer(to: Kind(SyringePump)), afterr: []),
        (id: "add", on: Named("pump_a"), op: Dispense(volume: "$v"), after: ["load"], priority: 3),
        (id: "go", op: Transfer(to: Kind(Spectrometer)), after: ["add"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "a"), after: ["go"]),
"#;
    check(
        &with_steps(steps),
        &["7:59 L0002 unknown field `afterr` in this step", "8:87 L0002 unknown field `priority` in this step"],
    );
    assert!(first_help(&with_steps(steps)).starts_with("did you mean `after`?"));
}

#[test]
fn unknown_operations_and_kinds_name_the_alternatives() {
    let steps = r#"        (id: "load", op: Transfer(to: Kind(SyringePmp))),
        (id: "add", on: Named("pump_a"), op: Dispence(volume: "$v"), after: ["load"]),
        (id: "go", op: Transfer(to: Kind(Spectrometer)), after: ["add"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "a"), after: ["go"]),
"#;
    check(
        &with_steps(steps),
        &["7:44 L0002 unknown instrument kind `SyringePmp`", "8:46 L0002 unknown operation `Dispence`"],
    );
    assert!(first_help(&with_steps(steps)).starts_with("did you mean `SyringePump`?"));
}

#[test]
fn dangling_after_ids_are_errors_with_a_suggestion() {
    let steps = GOOD_STEPS.replace(r#"after: ["add"]"#, r#"after: ["ad"]"#);
    check(&with_steps(&steps), &["9:66 P0003 step `go` runs after `ad`, which is not a step of this protocol"]);
    assert_eq!(first_help(&with_steps(&steps)), "did you mean `add`?");
}

#[test]
fn a_step_cannot_wait_for_itself() {
    let steps = GOOD_STEPS.replace(r#"after: ["go"]"#, r#"after: ["go", "read"]"#);
    check(&with_steps(&steps), &["10:84 P0003 step `read` lists itself in `after`"]);
}

#[test]
fn cycles_name_every_step_on_the_cycle() {
    let steps = r#"        (id: "load", op: Transfer(to: Kind(SyringePump)), after: ["read"]),
        (id: "add", on: Named("pump_a"), op: Dispense(volume: "$v"), after: ["load"]),
        (id: "go", op: Transfer(to: Kind(Spectrometer)), after: ["add"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "a"), after: ["go"]),
"#;
    check(
        &with_steps(steps),
        &["7:66 P0004 steps `add`, `go`, `load`, `read` wait for each other in a cycle: \
           `add` waits for `load`, `go` waits for `add`, `read` waits for `go`, `load` waits for `read`"],
    );
}

#[test]
fn unknown_parameters_and_bad_quantities_are_reported_together() {
    let steps = r#"        (id: "load", op: Transfer(to: Kind(SyringePump))),
        (id: "add", on: Named("pump_a"), op: Dispense(volume: "$vol"), after: ["load"]),
        (id: "add2", on: Named("pump_a"), op: Dispense(volume: "25 ul"), after: ["add"]),
        (id: "go", op: Transfer(to: Kind(Hotplate)), after: ["add2"]),
        (id: "heat", op: Heat(temperature: "80", duration: "$v"), after: ["go"]),
        (id: "go2", op: Transfer(to: Kind(Spectrometer)), after: ["heat"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "a"), after: ["go2"]),
"#;
    check(
        &with_steps(steps),
        &[
            "8:63 P0005 unknown parameter `vol`",
            "9:64 P0006 bad quantity for `volume`: unknown unit `ul`",
            "11:44 P0006 bad quantity for `temperature`: `80` has no unit",
            "11:60 P0007 `duration` needs a duration, but parameter `v` is a volume (uL)",
        ],
    );
}

#[test]
fn literals_of_the_wrong_dimension_or_impossible_values_are_errors() {
    let steps = GOOD_STEPS.replace(r#"Dispense(volume: "$v")"#, r#"Dispense(volume: "30 min")"#);
    check(&with_steps(&steps), &["8:63 P0007 `volume` needs a volume, not a duration"]);
    let steps = GOOD_STEPS.replace(r#"Dispense(volume: "$v")"#, r#"Dispense(volume: "-5 uL")"#);
    check(&with_steps(&steps), &["8:63 P0009 `volume` is -5 uL; a volume must be positive"]);
}

#[test]
fn parameter_declarations_are_checked() {
    let ron = with_steps(GOOD_STEPS).replace(
        r#""v": (unit: "uL", min: 10, max: 100)"#,
        r#""v": (unit: "uL", min: 10, max: 100, default: 500), "w": (unit: "litres", min: 1, max: 2), "x": (unit: "uL", min: 5, max: 1)"#,
    );
    check(
        &ron,
        &[
            "4:65 P0008 default 500 uL of parameter `v` is outside its range 10..=100 uL",
            "4:83 P0008 unknown unit `litres` for parameter `w`",
            "4:133 P0008 parameter `x` has min 5 greater than max 1",
        ],
    );
}

#[test]
fn a_parameter_range_that_allows_impossible_values_is_an_error() {
    let ron = with_steps(GOOD_STEPS).replace(r#"min: 10, max: 100"#, r#"min: 0, max: 100"#);
    check(&ron, &["4:42 P0009 parameter `v` allows 0 uL; a volume must be positive for `volume`"]);
}

#[test]
fn an_instrument_kind_that_cannot_run_the_operation_is_an_error() {
    let steps = GOOD_STEPS.replace(r#"on: Named("pump_a"), "#, r#"on: Kind(Hotplate), "#);
    check(&with_steps(&steps), &["8:25 P0010 step `add` asks a hotplate to Dispense"]);
}

#[test]
fn vessel_operations_must_run_where_the_vessel_is() {
    // No transfer before the dispense.
    let steps = r#"        (id: "add", on: Named("pump_a"), op: Dispense(volume: "$v")),
        (id: "go", op: Transfer(to: Kind(Spectrometer)), after: ["add"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "a"), after: ["go"]),
"#;
    check(
        &with_steps(steps),
        &["7:14 P0011 step `add` acts on the vessel, but no transfer brings the vessel to a syringe pump before it"],
    );
    // The vessel went to the wrong kind of instrument.
    let steps = GOOD_STEPS.replace("Transfer(to: Kind(Spectrometer))", "Transfer(to: Kind(Hotplate))");
    check(
        &with_steps(&steps),
        &["10:14 P0011 step `read` needs the vessel at a spectrometer, but transfer `go` left it at a hotplate"],
    );
    // A transfer may move the vessel while it is being measured.
    let steps = format!("{GOOD_STEPS}        (id: \"home\", op: Transfer(to: Rack), after: [\"go\"]),\n");
    check(&with_steps(&steps), &["11:14 P0011 transfer `home` may move the vessel while `read` is still acting on it"]);
    // Two transfers at once.
    let steps = format!("{GOOD_STEPS}        (id: \"home\", op: Transfer(to: Rack), after: [\"add\"]),\n");
    check(
        &with_steps(&steps),
        &["11:14 P0011 transfers `go` and `home` may run at the same time, but the vessel can only go one place"],
    );
}

#[test]
fn outputs_must_be_declared_and_measured() {
    let steps = GOOD_STEPS.replace(r#"output: "a""#, r#"output: "abs""#);
    check(&with_steps(&steps), &["10:64 P0012 output `abs` is not declared"]);
}

#[test]
fn duplicate_ids_and_bad_names_are_errors() {
    let steps = GOOD_STEPS.replace(r#"(id: "go""#, r#"(id: "add""#).replace(r#"after: ["go"]"#, r#"after: ["add"]"#);
    let errs = load_protocol(SourceFile::new("t", with_steps(&steps))).unwrap_err();
    assert_eq!(errs.codes()[0], "P0002");
    assert_eq!(errs.iter().next().unwrap().message, "step id `add` is used twice");
    let steps = GOOD_STEPS.replace(r#"(id: "load""#, r#"(id: "Load Vial""#).replace(r#"["load"]"#, r#"["Load Vial"]"#);
    check(&with_steps(&steps), &["7:14 P0002 `Load Vial` is not a valid step id"]);
}

#[test]
fn format_version_and_empty_protocols_are_checked() {
    let ron = with_steps(GOOD_STEPS).replace("format: 1", "format: 2");
    check(&ron, &["2:13 P0001 unsupported protocol format 2"]);
    check("Protocol(format: 1, name: \"e\", steps: [])", &["1:39 P0013 the protocol has no steps"]);
}

#[test]
fn a_file_of_another_kind_is_named() {
    let errs = load_protocol(SourceFile::new("t", "Lab(format: 1)")).unwrap_err();
    assert_eq!(errs.iter().next().unwrap().message, "this file holds a `Lab`, but a `Protocol` was expected here");
}

#[test]
fn binding_checks_missing_and_out_of_range_values() {
    let (p, _) = load_protocol(SourceFile::new("t", with_steps(GOOD_STEPS))).unwrap();
    let err = p.bind(&Default::default()).unwrap_err();
    assert_eq!(err.to_string(), "cannot bind protocol `t`: parameter `v` has no value and no default");
    let err = p.bind(&[("v".to_owned(), 200.0), ("q".to_owned(), 1.0)].into()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot bind protocol `t`: the protocol has no parameter `q`; parameter `v` = 200 uL is outside 10..=100 uL"
    );
    let b = p.bind(&[("v".to_owned(), 50.0)].into()).unwrap();
    assert_eq!(b.steps[1].action.to_string(), "Dispense 50 uL");
}

#[test]
fn timing_and_retry_rules_are_checked() {
    let steps = GOOD_STEPS
        .replace(r#"after: ["go"]),"#, r#"after: ["go"], within: "2 min", wait: "5 min", retry: 2),"#)
        .replace(r#"after: ["load"]),"#, r#"after: ["load"], retry: 1, timeout: "0 s"),"#);
    check(
        &with_steps(&steps),
        &[
            "8:94 P0015 step `add` cannot be retried: `Dispense` may have acted before it failed",
            "8:106 P0009 `timeout` must be a positive duration, not 0 s",
            "10:108 P0015 step `read` must wait at least 300 s but start within 120 s: no start time satisfies both",
        ],
    );
    let steps = GOOD_STEPS.replace(
        r#"(id: "load", op: Transfer(to: Kind(SyringePump))),"#,
        r#"(id: "load", op: Transfer(to: Kind(SyringePump)), within: "1 min"),"#,
    );
    check(&with_steps(&steps), &["7:67 P0015 step `load` has `within` but no `after`"]);
    let steps = GOOD_STEPS.replace(r#"after: ["go"]),"#, r#"after: ["go"], within: "2 min", retry: 3, keep: true),"#);
    let (p, _) = load_protocol(SourceFile::new("t", with_steps(&steps))).unwrap();
    let rules = p.steps()[3].rules;
    assert_eq!((rules.within.map(|d| d.0), rules.retry, rules.keep), (Some(120.0), 3, true));
}

#[test]
fn reagent_parameters_and_reagent_references_are_checked() {
    let text = r#"Protocol(
    format: 1,
    name: "t",
    parameters: { "v": (unit: "uL", min: 10, max: 100) },
    reagents: {
        "cat": (role: "catalyst", among: ["C1"]),
        "base": (among: ["B1", "B2"], default: "B3"),
        "solvent": (),
    },
    outputs: { "a": (unit: "AU") },
    steps: [
        (id: "load", op: Transfer(to: Kind(SyringePump))),
        (id: "add", op: Dispense(reagent: "$cta", volume: "$v"), after: ["load"]),
        (id: "add2", op: Dispense(reagent: "$v", volume: "$base"), after: ["load"]),
        (id: "to_uvvis", op: Transfer(to: Kind(Spectrometer)), after: ["add", "add2"]),
        (id: "read", op: Measure(wavelength: "520 nm", output: "a"), after: ["to_uvvis"]),
    ],
)
"#;
    check(
        text,
        &[
            "6:16 P0016 reagent parameter `cat` gives both `role` and `among`",
            "7:48 P0016 the default `B3` of `base` is not among its reagents",
            "8:20 P0016 reagent parameter `solvent` says neither which role nor which reagents it may take",
            "13:43 P0016 unknown reagent parameter `cta`",
            "14:44 P0016 `v` is a number, not a reagent",
            "14:58 P0007 `volume` needs a volume, but `base` is a reagent",
        ],
    );
    assert_eq!(
        first_help(&text.replace("\"$cta\"", "\"$cat\"")),
        "give one: `(role: \"catalyst\")` or `(among: [\"C1\", \"C2\"])`"
    );
}

#[test]
fn a_protocol_naming_reagents_prints_back_to_itself_and_binds_each_reagent() {
    let text = include_str!("../library/catalysed.protocol.ron");
    let (p, warnings) = load_protocol(SourceFile::new("catalysed.protocol.ron", text)).unwrap();
    assert!(warnings.is_empty(), "{warnings}");
    let printed = protocols::to_ron(&p);
    let (again, _) = load_protocol(SourceFile::new("again.protocol.ron", printed.clone())).unwrap();
    assert_eq!(again.reagent_parameters(), p.reagent_parameters(), "{printed}");
    assert_eq!(protocols::to_ron(&again), printed);
    let values = std::collections::BTreeMap::from([("catalyst".to_owned(), 2.0)]);
    let reagents = std::collections::BTreeMap::from([("catalyst".to_owned(), "C2".to_owned())]);
    let b = p.bind_with(&values, &reagents).unwrap();
    let shown: Vec<String> = b.steps.iter().filter(|s| s.id.starts_with("add")).map(|s| s.action.to_string()).collect();
    assert_eq!(shown, vec!["Dispense 250 uL of A", "Dispense 250 uL of B", "Dispense 40 uL of C2"]);
    assert_eq!(b.values["catalyst"], 2.0);
    // Without a campaign the reagent parameter takes its default.
    let b = p.bind(&std::collections::BTreeMap::new()).unwrap();
    assert_eq!(b.reagents["catalyst"], "C1");
}
