//! The loader reads exactly what a file says, and the printer is its inverse: a valid protocol loads to the protocol
//! the file describes, and printed with [`protocols::to_ron`] and loaded again it is the same protocol.
//!
//! The property runs over random valid protocols: random parameters of every dimension and unit, random DAGs of
//! steps over the whole operation vocabulary (vessel steps grouped behind the transfers that put the vessel where
//! they act, valve selections hanging anywhere), literal quantities in any unit, timing, retry and hold rules, and
//! arbitrary Unicode in every free-text field. Generated files are shuffled, so step order in the file is not
//! dependency order. What the loader returns is compared field by field with the specification the file was written
//! from (each quantity converted to its canonical unit by this file's own table), so a loader that drops or changes a
//! field (`keep`, `within`, a unit) fails even if it does so consistently; then the printed text must load to the
//! same protocol. The round trip also runs on the repository's own protocols.
//!
//! Cases are few and the seed is fixed, so `cargo test` is quick and repeatable; `PROPTEST_CASES` and
//! `PROPTEST_RNG_SEED` explore further (see RELIABILITY.md).

use std::collections::BTreeSet;
use std::fmt::Write;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use protocols::units::{Duration, Speed, Temperature, Volume, Wavelength};
use protocols::{
    Arg, Destination, InstrumentKind, InstrumentRef, Op, Protocol, SourceFile, Step, StepRules, load_protocol, to_ron,
};

/// The default case count and a fixed seed, unless `PROPTEST_CASES` or `PROPTEST_RNG_SEED` say otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x1ab);
    }
    // A failure prints its smallest case and the seed reproduces it; no regression files are written.
    c.failure_persistence = None;
    c
}

/// Loads `text`, failing with every diagnostic if it does not load.
fn load(text: &str) -> Protocol {
    match load_protocol(SourceFile::new("generated.protocol.ron", text)) {
        Ok((p, _)) => p,
        Err(d) => panic!("does not load:\n{d}\n--- text ---\n{text}"),
    }
}

/// Asserts that two protocols are the same: every field a checked protocol holds, and its dependency graph.
#[track_caller]
fn assert_same(a: &Protocol, b: &Protocol, text: &str) {
    let context = format!("--- printed ---\n{text}");
    assert_eq!(a.name(), b.name(), "{context}");
    assert_eq!(a.description(), b.description(), "{context}");
    assert_eq!(a.parameters(), b.parameters(), "{context}");
    assert_eq!(a.outputs(), b.outputs(), "{context}");
    assert_eq!(a.steps(), b.steps(), "{context}");
    for i in 0..a.steps().len() {
        assert_eq!(a.dependencies(i), b.dependencies(i), "dependencies of step {i}\n{context}");
    }
    assert_eq!(a.vessel_segments(), b.vessel_segments(), "{context}");
}

/// Prints `p`, loads the text, and checks the result is `p`, and that printing it again gives the same text.
#[track_caller]
fn check_round_trip(p: &Protocol) {
    let printed = to_ron(p);
    let again = load(&printed);
    assert_same(p, &again, &printed);
    assert_eq!(to_ron(&again), printed, "printing is a fixed point");
}

#[test]
fn the_repository_protocols_survive_printing() {
    let library = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("library");
    let mut seen = 0;
    for entry in std::fs::read_dir(&library).expect("protocols/library exists") {
        let path = entry.expect("a directory entry").path();
        if path.to_string_lossy().ends_with(".protocol.ron") {
            let text = std::fs::read_to_string(&path).expect("readable");
            check_round_trip(&load(&text));
            seen += 1;
        }
    }
    assert!(seen > 0, "no protocol in {}", library.display());
}

#[test]
fn literals_print_in_canonical_units_and_keep_their_value() {
    let p = load(
        r#"Protocol(format: 1, name: "units", parameters: {}, outputs: { "t": (unit: "degC") },
        steps: [
            (id: "go", op: Transfer(to: Kind(TemperatureController))),
            (id: "hold", op: HoldTemperature(temperature: "310.15 K", duration: "1.5 min"), after: ["go"],
             wait: "250 ms", within: "2 h", timeout: "1e3 s", keep: true),
            (id: "to_probe", op: Transfer(to: Kind(Thermometer)), after: ["hold"]),
            (id: "read", op: ReadTemperature(output: "t"), after: ["to_probe"], retry: 2),
        ])"#,
    );
    let printed = to_ron(&p);
    assert!(printed.contains(r#"duration: "90 s""#), "{printed}");
    assert!(printed.contains(r#"wait: "0.25 s""#), "{printed}");
    check_round_trip(&p);
}

/// A quantity as generated: a literal in one of the dimension's units, or a reference to a parameter.
#[derive(Debug, Clone)]
enum Quantity {
    Literal(f64, &'static str),
    Param(usize),
}

/// A generated parameter: its dimension's units, a unit, a range, a default and a description.
#[derive(Debug, Clone)]
struct Param {
    dimension: usize,
    unit: &'static str,
    min: f64,
    max: f64,
    default: Option<f64>,
    description: String,
}

/// The units of each dimension a parameter may have; the first five are the ones operations take.
const UNITS: [&[&str]; 8] = [
    &["uL", "µL", "nL", "mL"],
    &["degC", "°C", "K"],
    &["s", "ms", "min", "h"],
    &["rpm"],
    &["nm"],
    &["M", "mM"],
    &["g", "mg", "kg"],
    &["1", "AU"],
];
const VOLUME: usize = 0;
const TEMPERATURE: usize = 1;
const DURATION: usize = 2;
const SPEED: usize = 3;
const WAVELENGTH: usize = 4;

/// Outputs reading steps may write; declared outputs are exactly the ones used.
const OUTPUTS: [&str; 4] = ["absorbance", "mass", "temperature", "o3"];

/// What a step does, with its quantities.
#[derive(Debug, Clone)]
enum OpSpec {
    Dispense(Quantity),
    Heat(Quantity, Quantity, Option<Quantity>),
    Stir(Quantity, Quantity),
    Measure(Quantity, usize),
    Weigh(usize),
    ReadTemperature(usize),
    HoldTemperature(Quantity, Quantity),
}

impl OpSpec {
    fn kind(&self) -> InstrumentKind {
        match self {
            OpSpec::Dispense(_) => InstrumentKind::SyringePump,
            OpSpec::Heat(..) | OpSpec::Stir(..) => InstrumentKind::Hotplate,
            OpSpec::Measure(..) => InstrumentKind::Spectrometer,
            OpSpec::Weigh(_) => InstrumentKind::Balance,
            OpSpec::ReadTemperature(_) => InstrumentKind::Thermometer,
            OpSpec::HoldTemperature(..) => InstrumentKind::TemperatureController,
        }
    }

    fn repeat_safe(&self) -> bool {
        matches!(self, OpSpec::Measure(..) | OpSpec::Weigh(_) | OpSpec::ReadTemperature(_))
    }
}

/// Where a transfer takes the vessel.
#[derive(Debug, Clone)]
enum Dest {
    Rack,
    Kind(InstrumentKind),
    Named(String),
}

/// A step's rules as generated (durations in seconds); `within` and `wait` apply only to steps with dependencies.
#[derive(Debug, Clone)]
struct Rules {
    within_wait: Option<(f64, f64)>,
    timeout: Option<f64>,
    retry: u32,
    keep: bool,
}

/// A step that acts on the vessel, in the segment of the transfer that brought it there.
#[derive(Debug, Clone)]
struct VesselStep {
    op: OpSpec,
    /// Which earlier steps of the same segment it also waits for (bit `k`: the `k`-th).
    also_after: u8,
    on: OnSpec,
    rules: Rules,
}

/// How a step names its instrument.
#[derive(Debug, Clone)]
enum OnSpec {
    Omitted,
    OwnKind,
    Named(String),
}

/// A transfer and the vessel steps that run where it leaves the vessel.
#[derive(Debug, Clone)]
struct Segment {
    dest: Dest,
    on: OnSpec,
    rules: Rules,
    steps: Vec<VesselStep>,
}

/// A valve selection, which acts on no vessel and may wait for any earlier steps.
#[derive(Debug, Clone)]
struct Select {
    position: u32,
    after: Vec<usize>,
    rules: Rules,
}

#[derive(Debug, Clone)]
struct Spec {
    name: String,
    description: String,
    params: Vec<Param>,
    segments: Vec<Segment>,
    selects: Vec<Select>,
    /// Sort keys that shuffle the steps in the file.
    order: Vec<u32>,
}

/// Any text, including quotes, backslashes, control characters and comment markers.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => Just(String::new()),
        1 => "[a-z \"\\\\/*\n\t{}()\\[\\],:$]{0,12}",
    ]
}

fn param() -> impl Strategy<Value = Param> {
    (0..UNITS.len(), any::<prop::sample::Index>(), 1e-3f64..100.0, 0.0f64..1e3, prop::option::of(0.0f64..=1.0), text())
        .prop_map(|(dimension, unit, min, width, default, description)| {
            let max = min + width;
            Param {
                dimension,
                unit: UNITS[dimension][unit.index(UNITS[dimension].len())],
                min,
                max,
                default: default.map(|f| (min + f * width).clamp(min, max)),
                description,
            }
        })
}

/// A quantity of `dimension`: a positive literal in one of its units, or a parameter reference.
fn quantity(dimension: usize) -> impl Strategy<Value = Quantity> {
    let literal = (any::<prop::sample::Index>(), 1e-3f64..1e4).prop_map(move |(unit, v)| {
        let unit = *unit.get(UNITS[dimension]);
        // Kelvin literals stay above absolute zero because they are positive.
        Quantity::Literal(v, unit)
    });
    prop_oneof![2 => literal, 1 => any::<usize>().prop_map(Quantity::Param)]
}

fn op_of(kind: InstrumentKind) -> BoxedStrategy<OpSpec> {
    let output = 0..OUTPUTS.len();
    match kind {
        InstrumentKind::SyringePump => quantity(VOLUME).prop_map(OpSpec::Dispense).boxed(),
        InstrumentKind::Hotplate => prop_oneof![
            (quantity(TEMPERATURE), quantity(DURATION), prop::option::of(quantity(SPEED)))
                .prop_map(|(t, d, s)| OpSpec::Heat(t, d, s)),
            (quantity(SPEED), quantity(DURATION)).prop_map(|(s, d)| OpSpec::Stir(s, d)),
        ]
        .boxed(),
        InstrumentKind::Spectrometer => (quantity(WAVELENGTH), output).prop_map(|(w, o)| OpSpec::Measure(w, o)).boxed(),
        InstrumentKind::Balance => output.prop_map(OpSpec::Weigh).boxed(),
        InstrumentKind::Thermometer => output.prop_map(OpSpec::ReadTemperature).boxed(),
        _ => (quantity(TEMPERATURE), quantity(DURATION)).prop_map(|(t, d)| OpSpec::HoldTemperature(t, d)).boxed(),
    }
}

/// The kinds that act on the vessel at their own place.
const PLACED: [InstrumentKind; 6] = [
    InstrumentKind::SyringePump,
    InstrumentKind::Hotplate,
    InstrumentKind::Spectrometer,
    InstrumentKind::Balance,
    InstrumentKind::TemperatureController,
    InstrumentKind::Thermometer,
];

fn rules() -> impl Strategy<Value = Rules> {
    (
        prop::option::of((1e-3f64..1e4, 1e-3f64..1e4)),
        prop::option::of(1e-3f64..1e5),
        prop::option::weighted(0.2, 1u32..4),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(ww, timeout, retry, keep)| Rules {
            within_wait: ww.map(|(a, b)| (a.max(b), a.min(b))),
            timeout,
            retry: retry.unwrap_or(0),
            keep,
        })
}

fn on() -> impl Strategy<Value = OnSpec> {
    prop_oneof![2 => Just(OnSpec::Omitted), 1 => Just(OnSpec::OwnKind), 1 => text().prop_map(OnSpec::Named)]
}

fn segment() -> impl Strategy<Value = Segment> {
    let dest = prop_oneof![
        1 => Just(Dest::Rack),
        4 => prop::sample::select(PLACED.to_vec()).prop_map(Dest::Kind),
        1 => text().prop_map(Dest::Named),
    ];
    (dest, on(), rules()).prop_flat_map(|(dest, transfer_on, transfer_rules)| {
        let kinds: Vec<InstrumentKind> = match &dest {
            Dest::Rack => Vec::new(),
            Dest::Kind(k) => vec![*k],
            Dest::Named(_) => PLACED.to_vec(),
        };
        let steps = if kinds.is_empty() {
            Just(Vec::new()).boxed()
        } else {
            let step = prop::sample::select(kinds)
                .prop_flat_map(op_of)
                .prop_flat_map(|op| (Just(op), any::<u8>(), on(), rules()))
                .prop_map(|(op, also_after, on, rules)| VesselStep { op, also_after, on, rules });
            prop::collection::vec(step, 0..4).boxed()
        };
        (Just(dest), Just(transfer_on), Just(transfer_rules), steps).prop_map(|(dest, on, rules, steps)| Segment {
            dest,
            on,
            rules,
            steps,
        })
    })
}

fn spec() -> impl Strategy<Value = Spec> {
    let select = (1u32..13, prop::collection::vec(any::<usize>(), 0..3), rules())
        .prop_map(|(position, after, rules)| Select { position, after, rules });
    (
        text(),
        text(),
        prop::collection::vec(param(), 0..6),
        prop::collection::vec(segment(), 1..5),
        prop::collection::vec(select, 0..3),
        prop::collection::vec(any::<u32>(), 32),
    )
        .prop_map(|(name, description, params, segments, selects, order)| Spec {
            name,
            description,
            params,
            segments,
            selects,
            order,
        })
}

/// A RON string literal that escapes everything but ASCII letters and digits as `\u{..}`, unlike the printer, so
/// both escape forms are read.
fn ron_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == ' ' {
            out.push(c);
        } else {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
    out.push('"');
    out
}

impl Spec {
    /// The quantity as a file writes it; a parameter reference of the wrong dimension becomes a literal.
    fn quantity(&self, q: &Quantity, dimension: usize) -> String {
        let of_dimension: Vec<usize> =
            (0..self.params.len()).filter(|&i| self.params[i].dimension == dimension).collect();
        match q {
            Quantity::Param(i) if !of_dimension.is_empty() => {
                ron_string(&format!("$p{}", of_dimension[i % of_dimension.len()]))
            }
            Quantity::Literal(v, unit) => ron_string(&format!("{v} {unit}")),
            Quantity::Param(_) => ron_string(&format!("1 {}", UNITS[dimension][0])),
        }
    }

    fn op(&self, op: &OpSpec) -> String {
        match op {
            OpSpec::Dispense(v) => format!("Dispense(volume: {})", self.quantity(v, VOLUME)),
            OpSpec::Heat(t, d, s) => format!(
                "Heat(temperature: {}, duration: {}{})",
                self.quantity(t, TEMPERATURE),
                self.quantity(d, DURATION),
                s.as_ref().map(|s| format!(", stir: {}", self.quantity(s, SPEED))).unwrap_or_default()
            ),
            OpSpec::Stir(s, d) => {
                format!("Stir(speed: {}, duration: {})", self.quantity(s, SPEED), self.quantity(d, DURATION))
            }
            OpSpec::Measure(w, o) => {
                format!("Measure(wavelength: {}, output: \"{}\")", self.quantity(w, WAVELENGTH), OUTPUTS[*o])
            }
            OpSpec::Weigh(o) => format!("Weigh(output: \"{}\")", OUTPUTS[*o]),
            OpSpec::ReadTemperature(o) => format!("ReadTemperature(output: \"{}\")", OUTPUTS[*o]),
            OpSpec::HoldTemperature(t, d) => format!(
                "HoldTemperature(temperature: {}, duration: {})",
                self.quantity(t, TEMPERATURE),
                self.quantity(d, DURATION)
            ),
        }
    }

    /// Every step of every segment, then the selections, in dependency order, with the outputs they write.
    fn step_defs(&self) -> (Vec<StepDef<'_>>, BTreeSet<&'static str>) {
        let mut steps = Vec::new();
        let mut outputs = BTreeSet::new();
        let mut previous: Vec<String> = Vec::new();
        for (j, seg) in self.segments.iter().enumerate() {
            let id = format!("t{j}");
            let mut after: Vec<String> = Vec::new();
            if j > 0 {
                after.push(format!("t{}", j - 1));
                after.extend((0..self.segments[j - 1].steps.len()).map(|k| format!("v{}_{k}", j - 1)));
            }
            steps.push(StepDef {
                id: id.clone(),
                on: &seg.on,
                kind: InstrumentKind::Gantry,
                op: OpDef::Transfer(&seg.dest),
                after,
                rules: &seg.rules,
                repeat_safe: false,
            });
            previous.push(id.clone());
            for (k, v) in seg.steps.iter().enumerate() {
                let vid = format!("v{j}_{k}");
                let mut after = vec![id.clone()];
                after.extend((0..k).filter(|b| v.also_after & (1 << b) != 0).map(|b| format!("v{j}_{b}")));
                if let OpSpec::Measure(_, o) | OpSpec::Weigh(o) | OpSpec::ReadTemperature(o) = &v.op {
                    outputs.insert(OUTPUTS[*o]);
                }
                steps.push(StepDef {
                    id: vid.clone(),
                    on: &v.on,
                    kind: v.op.kind(),
                    op: OpDef::Vessel(&v.op),
                    after,
                    rules: &v.rules,
                    repeat_safe: v.op.repeat_safe(),
                });
                previous.push(vid);
            }
        }
        for (s, sel) in self.selects.iter().enumerate() {
            let mut after: Vec<String> = sel.after.iter().map(|&i| previous[i % previous.len()].clone()).collect();
            after.sort();
            after.dedup();
            let id = format!("sel{s}");
            steps.push(StepDef {
                id: id.clone(),
                on: &OnSpec::Omitted,
                kind: InstrumentKind::Valve,
                op: OpDef::Select(sel.position),
                after,
                rules: &sel.rules,
                repeat_safe: true,
            });
            previous.push(id);
        }
        (steps, outputs)
    }

    /// The protocol file: every step of every segment, then the selections, in a shuffled order.
    fn text(&self) -> String {
        let (defs, outputs) = self.step_defs();
        let steps: Vec<String> = defs.iter().map(|d| d.text(self)).collect();
        let mut order: Vec<usize> = (0..steps.len()).collect();
        order.sort_by_key(|&i| (self.order[i % self.order.len()], i));
        let mut out = format!("Protocol(\n    format: 1,\n    name: {},\n", ron_string(&self.name));
        if !self.description.is_empty() {
            let _ = writeln!(out, "    description: {},", ron_string(&self.description));
        }
        out.push_str("    parameters: {\n");
        for (i, p) in self.params.iter().enumerate() {
            let default = p.default.map(|d| format!(", default: {d:?}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "        \"p{i}\": (unit: {}, min: {:?}, max: {:?}{default}, description: {}),",
                ron_string(p.unit),
                p.min,
                p.max,
                ron_string(&p.description)
            );
        }
        out.push_str("    },\n    outputs: {\n");
        for o in outputs {
            let _ = writeln!(out, "        \"{o}\": (unit: \"AU\"),");
        }
        out.push_str("    },\n    steps: [\n");
        for i in order {
            let _ = writeln!(out, "        {},", steps[i]);
        }
        out.push_str("    ],\n)\n");
        out
    }

    /// A quantity argument as the loader must return it: a parameter reference by name, or the literal in its
    /// dimension's canonical unit. Mirrors [`Spec::quantity`], which writes it.
    fn arg<T>(&self, q: &Quantity, dimension: usize, make: fn(f64) -> T) -> Arg<T> {
        let of_dimension: Vec<usize> =
            (0..self.params.len()).filter(|&i| self.params[i].dimension == dimension).collect();
        match q {
            Quantity::Param(i) if !of_dimension.is_empty() => {
                Arg::Param(format!("p{}", of_dimension[i % of_dimension.len()]))
            }
            Quantity::Literal(v, unit) => Arg::Value(make(canonical(*v, unit))),
            Quantity::Param(_) => Arg::Value(make(canonical(1.0, UNITS[dimension][0]))),
        }
    }

    /// The operation a vessel step must load as.
    fn expected_op(&self, op: &OpSpec) -> Op {
        match op {
            OpSpec::Dispense(v) => Op::Dispense { volume: self.arg(v, VOLUME, Volume) },
            OpSpec::Heat(t, d, s) => Op::Heat {
                temperature: self.arg(t, TEMPERATURE, Temperature),
                duration: self.arg(d, DURATION, Duration),
                stir: s.as_ref().map(|s| self.arg(s, SPEED, Speed)),
            },
            OpSpec::Stir(s, d) => {
                Op::Stir { speed: self.arg(s, SPEED, Speed), duration: self.arg(d, DURATION, Duration) }
            }
            OpSpec::Measure(w, o) => {
                Op::Measure { wavelength: self.arg(w, WAVELENGTH, Wavelength), output: OUTPUTS[*o].to_owned() }
            }
            OpSpec::Weigh(o) => Op::Weigh { output: OUTPUTS[*o].to_owned() },
            OpSpec::ReadTemperature(o) => Op::ReadTemperature { output: OUTPUTS[*o].to_owned() },
            OpSpec::HoldTemperature(t, d) => Op::HoldTemperature {
                temperature: self.arg(t, TEMPERATURE, Temperature),
                duration: self.arg(d, DURATION, Duration),
            },
        }
    }

    /// Asserts that `p`, loaded from [`Spec::text`], is the protocol this specification describes: its name,
    /// description, parameters, outputs, and every step with its instrument, operation, dependencies and rules.
    #[track_caller]
    fn assert_loaded(&self, p: &Protocol, text: &str) {
        let context = format!("--- file ---\n{text}");
        assert_eq!(p.name(), self.name, "{context}");
        assert_eq!(p.description(), self.description, "{context}");
        assert_eq!(p.parameters().len(), self.params.len(), "{context}");
        for (i, spec) in self.params.iter().enumerate() {
            let name = format!("p{i}");
            let got = p.parameter(&name).unwrap_or_else(|| panic!("parameter `{name}` is missing\n{context}"));
            let want = (spec.unit, spec.min, spec.max, spec.default, spec.description.as_str());
            let loaded = (got.unit.symbol, got.min, got.max, got.default, got.description.as_str());
            assert_eq!(loaded, want, "parameter `{name}`\n{context}");
        }
        let (defs, outputs) = self.step_defs();
        let mut loaded: Vec<(&str, &str, &str)> =
            p.outputs().iter().map(|o| (o.name.as_str(), o.unit.symbol, o.description.as_str())).collect();
        loaded.sort_unstable();
        let declared: Vec<(&str, &str, &str)> = outputs.iter().map(|o| (*o, "AU", "")).collect();
        assert_eq!(loaded, declared, "outputs\n{context}");
        assert_eq!(p.steps().len(), defs.len(), "{context}");
        for def in &defs {
            let i = p.step_index(&def.id).unwrap_or_else(|| panic!("step `{}` is missing\n{context}", def.id));
            assert_eq!(p.steps()[i], def.expected(self), "step `{}`\n{context}", def.id);
            let mut after: Vec<&str> = p.dependencies(i).into_iter().map(|d| p.steps()[d].id.as_str()).collect();
            after.sort_unstable();
            let mut want: Vec<&str> = def.after.iter().map(String::as_str).collect();
            want.sort_unstable();
            assert_eq!(after, want, "dependencies of `{}`\n{context}", def.id);
        }
    }
}

/// A value written in `unit`, in its dimension's canonical unit: this file's own table, so a loader that converts a
/// unit wrongly does not agree with it.
fn canonical(value: f64, unit: &str) -> f64 {
    let (scale, offset) = match unit {
        "nL" | "mM" | "mg" | "ms" => (1e-3, 0.0),
        "mL" | "kg" => (1e3, 0.0),
        "K" => (1.0, -273.15),
        "min" => (60.0, 0.0),
        "h" => (3600.0, 0.0),
        "uL" | "µL" | "degC" | "°C" | "s" | "rpm" | "nm" | "M" | "g" | "1" | "AU" => (1.0, 0.0),
        other => panic!("no conversion for `{other}` in this test's table"),
    };
    value * scale + offset
}

/// What a step does, as generated.
#[derive(Debug, Clone, Copy)]
enum OpDef<'a> {
    Transfer(&'a Dest),
    Vessel(&'a OpSpec),
    Select(u32),
}

/// One step of the file as the specification gives it, before it is written.
#[derive(Debug)]
struct StepDef<'a> {
    id: String,
    on: &'a OnSpec,
    kind: InstrumentKind,
    op: OpDef<'a>,
    after: Vec<String>,
    rules: &'a Rules,
    repeat_safe: bool,
}

impl StepDef<'_> {
    fn text(&self, spec: &Spec) -> String {
        let op = match self.op {
            OpDef::Transfer(dest) => {
                let to = match dest {
                    Dest::Rack => "Rack".to_owned(),
                    Dest::Kind(k) => format!("Kind({})", k.name()),
                    Dest::Named(n) => format!("Named({})", ron_string(n)),
                };
                format!("Transfer(to: {to})")
            }
            OpDef::Vessel(op) => spec.op(op),
            OpDef::Select(position) => format!("Select(position: {position})"),
        };
        step(&self.id, self.on, self.kind, &op, &self.after, self.rules, self.repeat_safe)
    }

    /// The checked step this one must load as: rules the file leaves out (see [`step`]) are absent.
    fn expected(&self, spec: &Spec) -> Step {
        let on = match self.on {
            OnSpec::Omitted | OnSpec::OwnKind => InstrumentRef::Kind(self.kind),
            OnSpec::Named(n) => InstrumentRef::Named(n.clone()),
        };
        let op = match self.op {
            OpDef::Transfer(dest) => Op::Transfer {
                to: match dest {
                    Dest::Rack => Destination::Rack,
                    Dest::Kind(k) => Destination::Kind(*k),
                    Dest::Named(n) => Destination::Named(n.clone()),
                },
            },
            OpDef::Vessel(op) => spec.expected_op(op),
            OpDef::Select(position) => Op::Select { position },
        };
        let timed = self.rules.within_wait.filter(|_| !self.after.is_empty());
        let rules = StepRules {
            within: timed.map(|(within, _)| Duration(within)),
            wait: timed.map(|(_, wait)| Duration(wait)),
            timeout: self.rules.timeout.map(Duration),
            retry: if self.repeat_safe { self.rules.retry } else { 0 },
            keep: self.rules.keep,
        };
        Step { id: self.id.clone(), on, op, rules }
    }
}

/// One step as a file writes it; rules a step may not have (timing without dependencies, retries of operations
/// that are not safe to repeat) are left out.
fn step(
    id: &str,
    on: &OnSpec,
    kind: InstrumentKind,
    op: &str,
    after: &[String],
    rules: &Rules,
    repeat_safe: bool,
) -> String {
    let mut s = format!("(id: \"{id}\", op: {op}");
    match on {
        OnSpec::Omitted => {}
        OnSpec::OwnKind => {
            let _ = write!(s, ", on: Kind({})", kind.name());
        }
        OnSpec::Named(n) => {
            let _ = write!(s, ", on: Named({})", ron_string(n));
        }
    }
    if !after.is_empty() {
        let list: Vec<String> = after.iter().map(|a| format!("\"{a}\"")).collect();
        let _ = write!(s, ", after: [{}]", list.join(", "));
        if let Some((within, wait)) = rules.within_wait {
            let _ = write!(s, ", within: \"{within} s\", wait: \"{wait} s\"");
        }
    }
    if let Some(t) = rules.timeout {
        let _ = write!(s, ", timeout: \"{t} s\"");
    }
    if repeat_safe && rules.retry > 0 {
        let _ = write!(s, ", retry: {}", rules.retry);
    }
    if rules.keep {
        s.push_str(", keep: true");
    }
    s.push(')');
    s
}

proptest! {
    #![proptest_config(config(200))]

    /// A random valid protocol loads to the protocol its specification describes, and printed and loaded again is
    /// the same protocol, and prints the same.
    #[test]
    fn proptest_a_protocol_loads_as_written_and_survives_printing(spec in spec()) {
        let text = spec.text();
        let p = load(&text);
        spec.assert_loaded(&p, &text);
        check_round_trip(&p);
    }
}
