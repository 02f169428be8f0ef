//! Validation: protocol text to a checked [`Protocol`], with every problem reported at once.
//!
//! The pipeline is: RON syntax, then each section (header, each parameter, each output, each step) deserialized
//! on its own, then the checks that need the whole file: unique ids, dependencies that exist, no cycles, parameter
//! references that resolve with the right dimension, values in range, and vessel locations (every operation on
//! the vessel runs where a transfer has put it, and no transfer moves the vessel while such an operation runs).
//! Each problem is a [`Diagnostic`] pointing at the offending text, with a code and a hint.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::sync::Arc;

use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use crate::file::{
    DestinationFile, FORMAT, InstrumentFile, OpFile, OutputFile, ParameterFile, ProtocolHeader, StepFile,
};
use crate::op::{Arg, Destination, InstrumentRef, Op, Operation};
use crate::protocol::{Output, Parameter, Protocol, Step, StepRules, expected_dimension};
use crate::reagent::ReagentParameter;
use crate::ron_file::{check_syntax, parse_section, suggest};
use crate::source::{Node, Seg, index};
use crate::units::{Dimension, Duration, Quantity, QuantityError, Unit, trim_float};

mod reagents;

/// Diagnostic codes for protocols. Each has an entry in GUIDE.md.
pub mod codes {
    /// The file states a format version this program does not read.
    pub const FORMAT: &str = "P0001";
    /// Two steps, parameters or outputs share a name, or a name has characters that are not allowed.
    pub const NAME: &str = "P0002";
    /// `after` names a step that does not exist, or the step itself.
    pub const DANGLING_AFTER: &str = "P0003";
    /// The steps' dependencies form a cycle.
    pub const CYCLE: &str = "P0004";
    /// An argument refers to a parameter that is not declared.
    pub const UNKNOWN_PARAMETER: &str = "P0005";
    /// A quantity is malformed or has an unknown unit.
    pub const QUANTITY: &str = "P0006";
    /// A quantity or parameter has the wrong dimension for its field.
    pub const DIMENSION: &str = "P0007";
    /// A parameter declaration is inconsistent (range, default, unit).
    pub const PARAMETER: &str = "P0008";
    /// A value is physically impossible (a negative volume).
    pub const RANGE: &str = "P0009";
    /// The step's instrument cannot run its operation.
    pub const WRONG_KIND: &str = "P0010";
    /// An operation on the vessel runs where the vessel is not, or a transfer moves it during one.
    pub const VESSEL: &str = "P0011";
    /// A measured output is not declared, or a declared output is never measured.
    pub const OUTPUT: &str = "P0012";
    /// The protocol has no steps.
    pub const EMPTY: &str = "P0013";
    /// A parameter is declared but never used (warning).
    pub const UNUSED: &str = "P0014";
    /// A step's timing, retry or hold rules are inconsistent or unsafe.
    pub const RULES: &str = "P0015";
}

/// Loads and validates a protocol. On success the result may still carry warnings.
pub fn load_protocol(source: Arc<SourceFile>) -> Result<(Protocol, Diagnostics), Diagnostics> {
    let mut v = Validator { src: source, diags: Diagnostics::new(), tree: Node::default(), reagents: BTreeMap::new() };
    let protocol = v.run();
    v.diags.sort();
    match protocol {
        Some(p) if !v.diags.has_errors() => Ok((p, v.diags)),
        _ => Err(v.diags),
    }
}

struct Validator {
    src: Arc<SourceFile>,
    diags: Diagnostics,
    tree: Node,
    /// The reagent parameters; `None` marks one whose declaration had an error.
    reagents: BTreeMap<String, Option<ReagentParameter>>,
}

/// A step as parsed, with where it came from.
struct Parsed {
    /// Index in the file's `steps` list.
    file_index: usize,
    file: StepFile,
}

impl Validator {
    fn span(&self, path: &[Seg<'_>]) -> Range<usize> {
        self.tree.span_of(path)
    }

    fn error(&mut self, code: &'static str, span: Range<usize>, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic::error(code, &self.src, span, message));
        self.diags.0.last_mut().expect("just pushed")
    }

    fn run(&mut self) -> Option<Protocol> {
        if let Err(d) = check_syntax(&self.src) {
            self.diags.push(d);
            return None;
        }
        self.tree = index(&self.src.text);
        let whole = 0..self.src.text.len();
        let header = match parse_section::<ProtocolHeader>(&self.src, whole, "protocol") {
            Ok(h) => Some(h),
            Err(d) => {
                self.diags.push(d);
                None
            }
        };
        if let Some(h) = &header
            && h.format != FORMAT
        {
            let span = self.span(&[Seg::Field("format")]);
            self.error(codes::FORMAT, span, format!("unsupported protocol format {}", h.format))
                .with_help_mut(format!("this version of lab reads `format: {FORMAT}`"));
        }
        let parameters = self.parameters();
        self.reagents = reagents::declarations(&self.src, &self.tree, &mut self.diags);
        for name in self.reagents.keys().filter(|n| parameters.contains_key(*n)).cloned().collect::<Vec<_>>() {
            let span = self.span(&[Seg::Field("reagents"), Seg::KeyOf(&name)]);
            self.error(codes::NAME, span, format!("`{name}` is both a parameter and a reagent parameter"))
                .with_help_mut("rename one of them");
        }
        let outputs = self.outputs();
        let parsed = self.parse_steps();
        if header.is_some() && self.tree.get(&[Seg::Field("steps")]).is_none() {
            // `ron` read a `steps` field that the span index could not find: the file is refused rather than loaded
            // without the steps that were never checked.
            let whole = 0..self.src.text.len();
            self.error(crate::ron_file::SYNTAX, whole, "cannot locate the steps of this protocol")
                .with_help_mut("write the file with plain spaces and line breaks between its parts");
        }
        let steps = self.check_steps(&parsed, &parameters, &outputs);
        let graph = self.build_graph(&parsed);
        let topological = match petgraph::algo::toposort(&graph, None) {
            Ok(order) => Some(order.into_iter().map(NodeIndex::index).collect::<Vec<_>>()),
            Err(_) => {
                self.report_cycles(&graph, &parsed);
                None
            }
        };
        // The vessel check needs every step and every dependency; with any of them missing it would only add
        // confusing follow-on errors.
        let complete = !self.diags.has_errors() && steps.iter().all(Option::is_some);
        let mut segments = Vec::new();
        if let (Some(order), true) = (&topological, complete) {
            segments = self.check_vessel(&graph, order, &parsed, &steps);
        }
        self.check_outputs_measured(&outputs, &steps);
        self.check_unused(&parameters, &steps);
        let header = header?;
        let topological = topological?;
        if steps.len() != parsed.len() || steps.iter().any(Option::is_none) {
            return None;
        }
        Some(Protocol {
            name: header.name,
            description: header.description,
            parameters: parameters.into_values().flatten().collect(),
            reagents: std::mem::take(&mut self.reagents).into_values().flatten().collect(),
            outputs: outputs.into_values().flatten().collect(),
            steps: steps.into_iter().flatten().collect(),
            graph,
            topological,
            segments,
            source: Arc::clone(&self.src),
        })
    }

    /// Reads the `parameters` map; a `None` value marks a parameter whose declaration had an error.
    fn parameters(&mut self) -> BTreeMap<String, Option<Parameter>> {
        let mut out = BTreeMap::new();
        let Some(node) = self.tree.get(&[Seg::Field("parameters")]).cloned() else { return out };
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            if !valid_name(&name) {
                self.error(codes::NAME, key.span.clone(), format!("`{name}` is not a valid parameter name"))
                    .with_help_mut("use lower-case letters, digits and `_`, starting with a letter");
            }
            if out.contains_key(&name) {
                self.error(codes::NAME, key.span.clone(), format!("parameter `{name}` is declared twice"))
                    .with_help_mut("remove or rename one of the declarations");
                continue;
            }
            let decl = match parse_section::<ParameterFile>(&self.src, value.span.clone(), "parameter") {
                Ok(p) => self.check_parameter(&name, p, value),
                Err(d) => {
                    self.diags.push(d);
                    None
                }
            };
            out.insert(name, decl);
        }
        out
    }

    fn check_parameter(&mut self, name: &str, p: ParameterFile, node: &Node) -> Option<Parameter> {
        let field = |f: &str| node.get(&[Seg::Field(f)]).map_or(node.span.clone(), |n| n.span.clone());
        let Some(unit) = Unit::parse(&p.unit) else {
            let known: Vec<&str> = Unit::symbols().collect();
            let hint = match suggest(&p.unit, &known) {
                Some(s) => format!("did you mean `{s}`? Known units: {}", known.join(", ")),
                None => format!("known units: {}", known.join(", ")),
            };
            self.error(codes::PARAMETER, field("unit"), format!("unknown unit `{}` for parameter `{name}`", p.unit))
                .with_help_mut(hint);
            return None;
        };
        let mut ok = true;
        if !p.min.is_finite() || !p.max.is_finite() || p.min > p.max {
            self.error(
                codes::PARAMETER,
                field("min"),
                format!("parameter `{name}` has min {} greater than max {}", trim_float(p.min), trim_float(p.max)),
            )
            .with_help_mut("swap them, or fix the one that is wrong");
            ok = false;
        }
        // Written as "not inside" so that a `NaN` default, which compares false with everything, is refused too.
        if let Some(d) = p.default
            && !(p.min <= d && d <= p.max)
        {
            self.error(
                codes::PARAMETER,
                field("default"),
                format!(
                    "default {} {} of parameter `{name}` is outside its range {}..={} {}",
                    trim_float(d),
                    unit,
                    trim_float(p.min),
                    trim_float(p.max),
                    unit
                ),
            )
            .with_help_mut("move the default inside the range, or widen the range");
            ok = false;
        }
        ok.then(|| Parameter {
            name: name.to_owned(),
            unit,
            min: p.min,
            max: p.max,
            default: p.default,
            description: p.description,
        })
    }

    fn outputs(&mut self) -> BTreeMap<String, Option<Output>> {
        let mut out = BTreeMap::new();
        let Some(node) = self.tree.get(&[Seg::Field("outputs")]).cloned() else { return out };
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            if !valid_name(&name) {
                self.error(codes::NAME, key.span.clone(), format!("`{name}` is not a valid output name"))
                    .with_help_mut("use lower-case letters, digits and `_`, starting with a letter");
            }
            if out.contains_key(&name) {
                self.error(codes::NAME, key.span.clone(), format!("output `{name}` is declared twice"))
                    .with_help_mut("remove or rename one of the declarations");
                continue;
            }
            let decl = match parse_section::<OutputFile>(&self.src, value.span.clone(), "output") {
                Ok(o) => match Unit::parse(&o.unit) {
                    Some(unit) => Some(Output { name: name.clone(), unit, description: o.description }),
                    None => {
                        let span = value.span_of(&[Seg::Field("unit")]);
                        self.error(codes::QUANTITY, span, format!("unknown unit `{}` for output `{name}`", o.unit))
                            .with_help_mut(format!("known units: {}", Unit::symbols().collect::<Vec<_>>().join(", ")));
                        None
                    }
                },
                Err(d) => {
                    self.diags.push(d);
                    None
                }
            };
            out.insert(name, decl);
        }
        out
    }

    fn parse_steps(&mut self) -> Vec<Parsed> {
        let Some(list) = self.tree.get(&[Seg::Field("steps")]).cloned() else { return Vec::new() };
        if list.items.is_empty() {
            let span = list.span.clone();
            self.error(codes::EMPTY, span, "the protocol has no steps")
                .with_help_mut("add at least one step: `(id: \"...\", op: ...)`");
        }
        let mut out = Vec::new();
        for (i, item) in list.items.iter().enumerate() {
            match parse_section::<StepFile>(&self.src, item.span.clone(), "step") {
                Ok(file) => out.push(Parsed { file_index: i, file }),
                Err(d) => self.diags.push(d),
            }
        }
        out
    }

    /// Checks each step on its own; `None` marks a step with an error.
    fn check_steps(
        &mut self,
        parsed: &[Parsed],
        params: &BTreeMap<String, Option<Parameter>>,
        outputs: &BTreeMap<String, Option<Output>>,
    ) -> Vec<Option<Step>> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        for p in parsed {
            let i = p.file_index;
            let id_span = self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("id")]);
            let mut ok = true;
            if !valid_name(&p.file.id) {
                self.error(codes::NAME, id_span.clone(), format!("`{}` is not a valid step id", p.file.id))
                    .with_help_mut("use lower-case letters, digits and `_`, starting with a letter");
                ok = false;
            }
            if let Some(first) = seen.get(&p.file.id) {
                let line = self.src.line_col(self.span(&[Seg::Field("steps"), Seg::Index(*first)]).start).0;
                self.error(codes::NAME, id_span, format!("step id `{}` is used twice", p.file.id))
                    .with_help_mut(format!("the first step with this id is on line {line}; rename one of them"));
                ok = false;
            } else {
                seen.insert(p.file.id.clone(), i);
            }
            let op = self.check_op(i, &p.file.op, params, outputs);
            let on = match &p.file.on {
                None => op.as_ref().map(|o| InstrumentRef::Kind(o.kind())),
                Some(InstrumentFile::Kind(k)) => Some(InstrumentRef::Kind(*k)),
                Some(InstrumentFile::Named(n)) => Some(InstrumentRef::Named(n.clone())),
            };
            if let (Some(InstrumentRef::Kind(k)), Some(op)) = (&on, &op)
                && *k != op.kind()
            {
                let span = self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("on")]);
                self.error(
                    codes::WRONG_KIND,
                    span,
                    format!("step `{}` asks {} to {}", p.file.id, k.phrase(), op.name()),
                )
                .with_help_mut(format!(
                    "`{}` runs on {}: write `on: Kind({})`, or leave `on` out",
                    op.name(),
                    op.kind().phrase(),
                    op.kind().name()
                ));
                ok = false;
            }
            let rules = self.check_rules(i, &p.file, op.as_ref());
            out.push(match (ok, on, op, rules) {
                (true, Some(on), Some(op), Some(rules)) => Some(Step { id: p.file.id.clone(), on, op, rules }),
                _ => None,
            });
        }
        out
    }

    /// Checks a step's timing, retry and hold rules.
    fn check_rules(&mut self, i: usize, f: &StepFile, op: Option<&Op>) -> Option<StepRules> {
        let mut ok = true;
        let mut duration = |this: &mut Self, field: &'static str, text: &Option<String>| -> Option<Duration> {
            let text = text.as_ref()?;
            let span = this.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field(field)]);
            match Quantity::parse(text) {
                Ok(q) if q.dimension == Dimension::Duration && q.value > 0.0 => Some(Duration(q.value)),
                Ok(q) if q.dimension == Dimension::Duration => {
                    this.error(codes::RANGE, span, format!("`{field}` must be a positive duration, not {text}"))
                        .with_help_mut("such as \"120 s\" or \"5 min\"");
                    ok = false;
                    None
                }
                Ok(q) => {
                    this.error(
                        codes::DIMENSION,
                        span,
                        format!("`{field}` needs a duration, not a {}", q.dimension.name()),
                    )
                    .with_help_mut("such as \"120 s\" or \"5 min\"");
                    ok = false;
                    None
                }
                Err(e) => {
                    this.error(codes::QUANTITY, span, format!("bad quantity for `{field}`: {e}"))
                        .with_help_mut("write a number and a unit of duration: s, min, h, ms");
                    ok = false;
                    None
                }
            }
        };
        let within = duration(self, "within", &f.within);
        let wait = duration(self, "wait", &f.wait);
        let timeout = duration(self, "timeout", &f.timeout);
        if (f.within.is_some() || f.wait.is_some()) && f.after.is_empty() {
            let field = if f.within.is_some() { "within" } else { "wait" };
            let span = self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field(field)]);
            self.error(codes::RULES, span, format!("step `{}` has `{field}` but no `after`", f.id)).with_help_mut(
                "`within` and `wait` count from the end of the steps in `after`; add them, or remove the rule",
            );
            ok = false;
        }
        if let (Some(a), Some(b)) = (within, wait)
            && b.0 > a.0
        {
            let span = self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("wait")]);
            self.error(
                codes::RULES,
                span,
                format!("step `{}` must wait at least {b} but start within {a}: no start time satisfies both", f.id),
            )
            .with_help_mut("make `wait` shorter than `within`");
            ok = false;
        }
        if f.retry > 0
            && let Some(op) = op
            && !op.repeat_safe()
        {
            let span = self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("retry")]);
            self.error(
                codes::RULES,
                span,
                format!("step `{}` cannot be retried: `{}` may have acted before it failed", f.id, op.name()),
            )
            .with_help_mut("only measurements are safe to repeat; remove `retry`");
            ok = false;
        }
        ok.then_some(StepRules { within, wait, timeout, retry: f.retry, keep: f.keep })
    }

    fn check_op(
        &mut self,
        i: usize,
        op: &OpFile,
        params: &BTreeMap<String, Option<Parameter>>,
        outputs: &BTreeMap<String, Option<Output>>,
    ) -> Option<Op> {
        let mut ok = true;
        let mut q = |this: &mut Self, field: &'static str, text: &str| -> Option<Arg<Quantity>> {
            let r = this.quantity(i, field, text, params);
            if r.is_none() {
                ok = false;
            }
            r
        };
        let op = match op {
            OpFile::Transfer { to } => Some(Op::Transfer {
                to: match to {
                    DestinationFile::Rack => Destination::Rack,
                    DestinationFile::Kind(k) => Destination::Kind(*k),
                    DestinationFile::Named(n) => Destination::Named(n.clone()),
                },
            }),
            OpFile::Dispense { volume, reagent } => {
                let volume = q(self, "volume", volume);
                let reagent = match reagent {
                    None => None,
                    Some(text) => {
                        let span =
                            self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field("reagent")]);
                        let numeric: Vec<&str> = params.keys().map(String::as_str).collect();
                        let arg = reagents::argument(&self.src, span, text, &self.reagents, &numeric, &mut self.diags);
                        Some(arg?)
                    }
                };
                Some(Op::Dispense { volume: typed(volume?)?, reagent })
            }
            OpFile::Heat { temperature, duration, stir } => {
                let temperature = q(self, "temperature", temperature);
                let duration = q(self, "duration", duration);
                let stir = stir.as_ref().map(|s| q(self, "stir", s));
                Some(Op::Heat {
                    temperature: typed(temperature?)?,
                    duration: typed(duration?)?,
                    stir: match stir {
                        None => None,
                        Some(s) => Some(typed(s?)?),
                    },
                })
            }
            OpFile::Stir { speed, duration } => {
                let speed = q(self, "speed", speed);
                let duration = q(self, "duration", duration);
                Some(Op::Stir { speed: typed(speed?)?, duration: typed(duration?)? })
            }
            OpFile::Measure { wavelength, output } => {
                let wavelength = q(self, "wavelength", wavelength);
                if !self.output_declared(i, output, "AU", outputs) {
                    return None;
                }
                Some(Op::Measure { wavelength: typed(wavelength?)?, output: output.clone() })
            }
            OpFile::Weigh { output } => {
                self.output_declared(i, output, "g", outputs).then(|| Op::Weigh { output: output.clone() })
            }
            OpFile::ReadTemperature { output } => {
                self.output_declared(i, output, "degC", outputs).then(|| Op::ReadTemperature { output: output.clone() })
            }
            OpFile::Select { position } => {
                if *position == 0 {
                    let span =
                        self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field("position")]);
                    self.error(codes::RANGE, span, "`position` is 0; a valve's ports are numbered from 1")
                        .with_help_mut("write the port as printed on the valve: 1, 2, ...");
                    return None;
                }
                Some(Op::Select { position: *position })
            }
            OpFile::HoldTemperature { temperature, duration } => {
                let temperature = q(self, "temperature", temperature);
                let duration = q(self, "duration", duration);
                Some(Op::HoldTemperature { temperature: typed(temperature?)?, duration: typed(duration?)? })
            }
        };
        if ok { op } else { None }
    }

    /// Whether the output a reading step writes is declared; reports it if not, suggesting `unit`.
    fn output_declared(
        &mut self,
        i: usize,
        output: &str,
        unit: &str,
        outputs: &BTreeMap<String, Option<Output>>,
    ) -> bool {
        if outputs.contains_key(output) {
            return true;
        }
        let span = self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field("output")]);
        let known: Vec<&str> = outputs.keys().map(String::as_str).collect();
        let help = match suggest(output, &known) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("declare it: `outputs: {{ \"{output}\": (unit: \"{unit}\") }}`"),
        };
        self.error(codes::OUTPUT, span, format!("output `{output}` is not declared")).with_help_mut(help);
        false
    }

    /// Checks one quantity argument: a parameter reference (`$name`) or a literal with a unit.
    fn quantity(
        &mut self,
        i: usize,
        field: &'static str,
        text: &str,
        params: &BTreeMap<String, Option<Parameter>>,
    ) -> Option<Arg<Quantity>> {
        let span = self.span(&[Seg::Field("steps"), Seg::Index(i), Seg::Field("op"), Seg::Field(field)]);
        let want = expected_dimension(field);
        if let Some(name) = text.trim().strip_prefix('$') {
            if self.reagents.contains_key(name) {
                self.error(
                    codes::DIMENSION,
                    span,
                    format!("`{field}` needs a {}, but `{name}` is a reagent", want.name()),
                )
                .with_help_mut(format!("use a parameter in {}", want.examples()));
                return None;
            }
            let Some(decl) = params.get(name) else {
                let known: Vec<&str> = params.keys().map(String::as_str).collect();
                let help = match suggest(name, &known) {
                    Some(s) => format!("did you mean `${s}`?"),
                    None if known.is_empty() => {
                        format!("declare it under `parameters: {{ \"{name}\": (unit: \"...\", min: ..., max: ...) }}`")
                    }
                    None => format!(
                        "declare it under `parameters`, or use one of: {}",
                        known.iter().map(|k| format!("`${k}`")).collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(codes::UNKNOWN_PARAMETER, span, format!("unknown parameter `{name}`")).with_help_mut(help);
                return None;
            };
            // A parameter whose declaration had an error was already reported.
            let decl = decl.as_ref()?;
            if decl.unit.dimension != want {
                self.error(
                    codes::DIMENSION,
                    span,
                    format!(
                        "`{field}` needs a {}, but parameter `{name}` is a {} ({})",
                        want.name(),
                        decl.unit.dimension.name(),
                        decl.unit
                    ),
                )
                .with_help_mut(format!("use a parameter in {}", want.examples()));
                return None;
            }
            let (lo, hi) = (decl.to_canonical(decl.min).value, decl.to_canonical(decl.max).value);
            if let Some(problem) = physical_problem(field, lo.min(hi)) {
                let pspan = self.span(&[Seg::Field("parameters"), Seg::Key(name), Seg::Field("min")]);
                self.error(codes::RANGE, pspan, format!("parameter `{name}` allows {problem} for `{field}`"))
                    .with_help_mut("raise the parameter's `min`");
                return None;
            }
            return Some(Arg::Param(name.to_owned()));
        }
        match Quantity::parse(text) {
            Ok(q) if q.dimension != want => {
                self.error(
                    codes::DIMENSION,
                    span,
                    format!("`{field}` needs a {}, not a {}", want.name(), q.dimension.name()),
                )
                .with_help_mut(format!("write it with a unit of {}: {}", want.name(), want.examples()));
                None
            }
            Ok(q) => match physical_problem(field, q.value) {
                Some(problem) => {
                    self.error(codes::RANGE, span, format!("`{field}` is {problem}"))
                        .with_help_mut(format!("give a {} that can be done", want.name()));
                    None
                }
                None => Some(Arg::Value(q)),
            },
            Err(e) => {
                let help = match &e {
                    QuantityError::UnknownUnit(u) => {
                        let known: Vec<&str> = Unit::symbols().collect();
                        match suggest(u, &known) {
                            Some(s) => format!("did you mean `{s}`? Units of {}: {}", want.name(), want.examples()),
                            None => format!("units of {}: {}", want.name(), want.examples()),
                        }
                    }
                    _ => {
                        format!("write a number and a unit, such as \"{}\", or a parameter as \"$name\"", example(want))
                    }
                };
                self.error(codes::QUANTITY, span, format!("bad quantity for `{field}`: {e}")).with_help_mut(help);
                None
            }
        }
    }

    fn build_graph(&mut self, parsed: &[Parsed]) -> DiGraph<usize, ()> {
        let mut graph = DiGraph::new();
        for i in 0..parsed.len() {
            graph.add_node(i);
        }
        // Ids of every step in the file, including ones that failed to parse, so a typo in one step's operation
        // does not also produce "unknown step" errors in every step that depends on it.
        let list = self.tree.get(&[Seg::Field("steps")]).cloned().unwrap_or_default();
        let all_ids: BTreeSet<String> =
            list.items.iter().filter_map(|n| n.get(&[Seg::Field("id")]).and_then(|n| n.string.clone())).collect();
        let index_of: HashMap<&str, usize> =
            parsed.iter().enumerate().rev().map(|(k, p)| (p.file.id.as_str(), k)).collect();
        for (k, p) in parsed.iter().enumerate() {
            for (j, dep) in p.file.after.iter().enumerate() {
                let span =
                    self.span(&[Seg::Field("steps"), Seg::Index(p.file_index), Seg::Field("after"), Seg::Index(j)]);
                if *dep == p.file.id {
                    self.error(codes::DANGLING_AFTER, span, format!("step `{dep}` lists itself in `after`"))
                        .with_help_mut("remove it: a step cannot wait for itself");
                    continue;
                }
                match index_of.get(dep.as_str()) {
                    Some(&d) => {
                        let (a, b) = (NodeIndex::new(d), NodeIndex::new(k));
                        if graph.find_edge(a, b).is_none() {
                            graph.add_edge(a, b, ());
                        }
                    }
                    None if all_ids.contains(dep) => {}
                    None => {
                        let known: Vec<&str> = all_ids.iter().map(String::as_str).collect();
                        let help = match suggest(dep, &known) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("the steps are: {}", known.join(", ")),
                        };
                        self.error(
                            codes::DANGLING_AFTER,
                            span,
                            format!("step `{}` runs after `{dep}`, which is not a step of this protocol", p.file.id),
                        )
                        .with_help_mut(help);
                    }
                }
            }
        }
        graph
    }

    fn report_cycles(&mut self, graph: &DiGraph<usize, ()>, parsed: &[Parsed]) {
        for scc in petgraph::algo::tarjan_scc(graph) {
            if scc.len() < 2 {
                continue;
            }
            let cycle = cycle_in(graph, &scc);
            let names: Vec<&str> = cycle.iter().map(|n| parsed[n.index()].file.id.as_str()).collect();
            let first = cycle[0].index();
            let span = self.span(&[Seg::Field("steps"), Seg::Index(parsed[first].file_index), Seg::Field("after")]);
            let mut members: Vec<&str> = scc.iter().map(|n| parsed[n.index()].file.id.as_str()).collect();
            members.sort_unstable();
            let waits: Vec<String> = (0..names.len())
                .map(|k| format!("`{}` waits for `{}`", names[(k + 1) % names.len()], names[k]))
                .collect();
            self.error(
                codes::CYCLE,
                span,
                format!("steps {} wait for each other in a cycle: {}", backticks(&members), waits.join(", ")),
            )
                .with_help_mut("every step must be able to start once the steps in its `after` finish; remove one of these dependencies");
        }
    }

    /// Checks vessel locations; returns each transfer with the vessel steps it serves, in transfer order.
    fn check_vessel(
        &mut self,
        graph: &DiGraph<usize, ()>,
        order: &[usize],
        parsed: &[Parsed],
        steps: &[Option<Step>],
    ) -> Vec<(usize, Vec<usize>)> {
        let n = parsed.len();
        let mut ancestors: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); n];
        for &i in order {
            let deps: Vec<usize> =
                graph.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming).map(|d| d.index()).collect();
            for d in deps {
                let inherited = ancestors[d].clone();
                ancestors[i].insert(d);
                ancestors[i].extend(inherited);
            }
        }
        let is_transfer = |i: usize| matches!(steps[i].as_ref().map(|s| &s.op), Some(Op::Transfer { .. }));
        let mut transfers: Vec<usize> = (0..n).filter(|&i| is_transfer(i)).collect();
        transfers.sort_by_key(|&t| ancestors[t].len());
        let span_of = |this: &Self, i: usize, f: &str| {
            this.span(&[Seg::Field("steps"), Seg::Index(parsed[i].file_index), Seg::Field(f)])
        };
        for w in 0..transfers.len() {
            for &b in &transfers[w + 1..] {
                let a = transfers[w];
                if !ancestors[b].contains(&a) && !ancestors[a].contains(&b) {
                    let span = span_of(self, b, "id");
                    let (ia, ib) = (&parsed[a].file.id, &parsed[b].file.id);
                    self.error(
                        codes::VESSEL,
                        span,
                        format!(
                            "transfers `{ia}` and `{ib}` may run at the same time, but the vessel can only go one place"
                        ),
                    )
                    .with_help_mut(format!("add `after: [\"{ia}\"]` to `{ib}`, or the reverse"));
                    return Vec::new();
                }
            }
        }
        let mut segments: Vec<(usize, Vec<usize>)> = transfers.iter().map(|&t| (t, Vec::new())).collect();
        for i in 0..n {
            let Some(step) = &steps[i] else { continue };
            if !step.op.acts_on_vessel() {
                continue;
            }
            let id = &step.id;
            let prior = transfers.iter().rposition(|t| ancestors[i].contains(t));
            let Some(k) = prior else {
                let span = span_of(self, i, "id");
                let kind = step.op.kind();
                self.error(
                    codes::VESSEL,
                    span,
                    format!(
                        "step `{id}` acts on the vessel, but no transfer brings the vessel to {} before it",
                        kind.phrase()
                    ),
                )
                .with_help_mut(format!(
                    "add a step `(id: \"to_{}\", op: Transfer(to: Kind({}))` and list it in the `after` of `{id}`",
                    snake(kind.name()),
                    kind.name()
                ));
                continue;
            };
            let t = transfers[k];
            segments[k].1.push(i);
            let tid = &parsed[t].file.id;
            let Some(Op::Transfer { to }) = steps[t].as_ref().map(|s| &s.op) else { continue };
            let mismatch = match to {
                Destination::Rack => Some("the rack".to_owned()),
                Destination::Kind(kind) if *kind != step.op.kind() => Some(kind.phrase().to_owned()),
                _ => None,
            };
            if let Some(place) = mismatch {
                let span = span_of(self, i, "id");
                self.error(
                    codes::VESSEL,
                    span,
                    format!(
                        "step `{id}` needs the vessel at {}, but transfer `{tid}` left it at {place}",
                        step.op.kind().phrase()
                    ),
                )
                .with_help_mut(format!(
                    "add a `Transfer(to: Kind({}))` between `{tid}` and `{id}`",
                    step.op.kind().name()
                ));
            }
            if let Some(&next) = transfers.get(k + 1)
                && !ancestors[next].contains(&i)
            {
                let span = span_of(self, next, "id");
                let nid = &parsed[next].file.id;
                self.error(
                    codes::VESSEL,
                    span,
                    format!("transfer `{nid}` may move the vessel while `{id}` is still acting on it"),
                )
                .with_help_mut(format!("add `\"{id}\"` to the `after` of `{nid}`"));
            }
        }
        segments
    }

    fn check_outputs_measured(&mut self, outputs: &BTreeMap<String, Option<Output>>, steps: &[Option<Step>]) {
        let measured: BTreeSet<&str> = steps.iter().flatten().filter_map(|s| s.op.output()).collect();
        let parsed_all = self.tree.get(&[Seg::Field("steps")]).map_or(0, |n| n.items.len());
        if steps.iter().filter(|s| s.is_some()).count() < parsed_all {
            // A step that failed to parse may be the one that measures; do not guess.
            return;
        }
        for name in outputs.keys() {
            if !measured.contains(name.as_str()) {
                let span = self.span(&[Seg::Field("outputs"), Seg::KeyOf(name)]);
                self.error(codes::OUTPUT, span, format!("output `{name}` is declared but no step measures it"))
                    .with_help_mut(format!(
                        "add a step that reads it (`Measure`, `Weigh` or `ReadTemperature` with `output: \"{name}\"`), or remove the output"
                    ));
            }
        }
    }

    fn check_unused(&mut self, params: &BTreeMap<String, Option<Parameter>>, steps: &[Option<Step>]) {
        let mut used = BTreeSet::new();
        for s in steps.iter().flatten() {
            let mut add = |a: Option<&str>| {
                if let Some(n) = a {
                    used.insert(n.to_owned());
                }
            };
            match &s.op {
                Op::Transfer { .. } => {}
                Op::Dispense { volume, reagent } => {
                    add(param_name(volume));
                    add(reagent.as_ref().and_then(param_name));
                }
                Op::Heat { temperature, duration, stir } => {
                    add(param_name(temperature));
                    add(param_name(duration));
                    add(stir.as_ref().and_then(param_name));
                }
                Op::Stir { speed, duration } => {
                    add(param_name(speed));
                    add(param_name(duration));
                }
                Op::Measure { wavelength, .. } => add(param_name(wavelength)),
                Op::HoldTemperature { temperature, duration } => {
                    add(param_name(temperature));
                    add(param_name(duration));
                }
                Op::Weigh { .. } | Op::Select { .. } | Op::ReadTemperature { .. } => {}
            }
        }
        let parsed_all = self.tree.get(&[Seg::Field("steps")]).map_or(0, |n| n.items.len());
        if steps.iter().filter(|s| s.is_some()).count() < parsed_all {
            return;
        }
        let reagents: Vec<(&str, &str)> = self.reagents.keys().map(|n| (n.as_str(), "reagents")).collect();
        for (name, section) in params.keys().map(|n| (n.as_str(), "parameters")).chain(reagents) {
            if !used.contains(name) {
                let span = self.span(&[Seg::Field(section), Seg::KeyOf(name)]);
                let d = Diagnostic::error(codes::UNUSED, &self.src, span, format!("parameter `{name}` is never used"))
                    .with_help(format!("use it as \"${name}\" in a step, or remove it"))
                    .warning();
                self.diags.push(d);
            }
        }
    }
}

trait WithHelpMut {
    fn with_help_mut(&mut self, help: impl Into<String>);
}

impl WithHelpMut for Diagnostic {
    fn with_help_mut(&mut self, help: impl Into<String>) {
        self.help = Some(help.into());
    }
}

fn typed<T: TryFrom<Quantity>>(a: Arg<Quantity>) -> Option<Arg<T>> {
    Some(match a {
        Arg::Value(q) => Arg::Value(T::try_from(q).ok()?),
        Arg::Param(p) => Arg::Param(p),
    })
}

fn param_name<T>(a: &Arg<T>) -> Option<&str> {
    match a {
        Arg::Param(p) => Some(p),
        Arg::Value(_) => None,
    }
}

/// What is physically wrong with a canonical value for a field, if anything.
fn physical_problem(field: &str, value: f64) -> Option<String> {
    match field {
        "volume" if value <= 0.0 => Some(format!("{} uL; a volume must be positive", trim_float(value))),
        "duration" if value < 0.0 => Some(format!("{} s; a duration cannot be negative", trim_float(value))),
        "temperature" if value < -273.15 => Some(format!("{} degC, below absolute zero", trim_float(value))),
        "stir" | "speed" if value < 0.0 => Some(format!("{} rpm; a speed cannot be negative", trim_float(value))),
        "wavelength" if value <= 0.0 => Some(format!("{} nm; a wavelength must be positive", trim_float(value))),
        _ => None,
    }
}

fn example(d: Dimension) -> &'static str {
    match d {
        Dimension::Volume => "250 uL",
        Dimension::Temperature => "80 degC",
        Dimension::Duration => "30 min",
        Dimension::RotationalSpeed => "600 rpm",
        Dimension::Wavelength => "520 nm",
        Dimension::Concentration => "0.5 M",
        Dimension::Mass => "10 g",
        Dimension::Dimensionless => "1",
    }
}

/// Whether `name` is a valid id: lower-case ASCII letters, digits and `_`, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    let mut c = name.chars();
    c.next().is_some_and(|f| f.is_ascii_lowercase())
        && c.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn backticks(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

fn snake(name: &str) -> String {
    let mut s = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            s.push('_');
        }
        s.push(c.to_ascii_lowercase());
    }
    s
}

/// One simple cycle through the nodes of a strongly connected component, in dependency order.
fn cycle_in(graph: &DiGraph<usize, ()>, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
    let start = *members.iter().next().expect("non-empty component");
    // Depth-first search from `start` inside the component until an edge returns to `start`.
    let mut stack = vec![(start, graph.neighbors(start).filter(|n| members.contains(n)).collect::<Vec<_>>())];
    let mut on_path = BTreeSet::from([start]);
    while let Some((_, next)) = stack.last_mut() {
        match next.pop() {
            Some(n) if n == start => return stack.iter().map(|(n, _)| *n).collect(),
            Some(n) if !on_path.contains(&n) => {
                on_path.insert(n);
                let succ = graph.neighbors(n).filter(|m| members.contains(m)).collect();
                stack.push((n, succ));
            }
            Some(_) => {}
            None => {
                let (n, _) = stack.pop().expect("non-empty");
                on_path.remove(&n);
            }
        }
    }
    scc.to_vec()
}
