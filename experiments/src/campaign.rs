//! Campaigns: which protocol to run, which of its parameters to vary and how, what to optimise, how many
//! experiments to run and how to choose them.
//!
//! A campaign is a RON file a scientist writes (see [`crate::file`] for the format). [`load_campaign`] reads it
//! the way protocols are read: RON syntax first, then each section on its own (the header, every `vary` range,
//! every `fixed` value, the objective, the proposer), so that every problem is reported at once, each pointing at
//! its line and column with a code and a hint. What can be checked from the campaign alone is checked there.
//!
//! The campaign names its protocol by path, and this crate reads no files, so the checks that need the protocol
//! ("is `temperature` a parameter of the protocol, and may it go up to 200 degC?") are a second step,
//! [`Campaign::check_against`], which the caller runs once it has loaded the protocol. Its diagnostics still
//! point into the campaign file, since that is where the fix goes.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use protocols::ron_file::{check_syntax, parse_section, suggest};
use protocols::source::{Node, Seg, index};
use protocols::units::trim_float;
use protocols::{Diagnostic, Diagnostics, Protocol, SourceFile};

use crate::file::{AcquisitionFile, CampaignHeader, FORMAT, ObjectiveFile, ProposerFile, RangeFile};
pub use crate::objective::{Direction, Objective};
use crate::proposer::{Acquisition, Proposer, ProposerConfig};
use crate::space::{Dim, Point, Space};

/// Diagnostic codes for campaigns. Syntax and schema errors use the shared codes of
/// [`protocols::ron_file`] (`L0001`, `L0002`).
pub mod codes {
    /// The file states a format version this program does not read.
    pub const FORMAT: &str = "C0001";
    /// A required piece of text (the name, the protocol or lab path, the objective's output) is empty.
    pub const EMPTY_TEXT: &str = "C0002";
    /// A `vary` range is empty, inverted or not finite, or a `fixed` value is not finite.
    pub const RANGE: &str = "C0003";
    /// `vary` lists no parameters.
    pub const NOTHING_VARIES: &str = "C0004";
    /// The budget or the number of experiments in flight is zero (or, as a warning, in flight exceeds the budget).
    pub const BUDGET: &str = "C0005";
    /// The proposer's settings are inconsistent (initial design size, UCB beta).
    pub const PROPOSER: &str = "C0006";
    /// A parameter is named twice: in both `vary` and `fixed`, or twice in one of them.
    pub const TWICE: &str = "C0007";
    /// `vary` or `fixed` names a parameter the protocol does not have.
    pub const UNKNOWN_PARAMETER: &str = "C0008";
    /// A `vary` range or `fixed` value goes outside the range the protocol allows.
    pub const OUT_OF_RANGE: &str = "C0009";
    /// A protocol parameter with no default is neither varied nor fixed.
    pub const UNCOVERED: &str = "C0010";
    /// The objective names an output the protocol does not declare.
    pub const OBJECTIVE: &str = "C0011";
}

/// A checked campaign. It can only be obtained from [`load_campaign`], so its space is non-empty with finite,
/// non-empty ranges, no parameter is both varied and fixed, the budget and the number in flight are at least
/// one, and the proposer's settings are consistent with the budget.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// A short name, recorded with every experiment.
    pub name: String,
    /// What the campaign is for, for people.
    pub description: String,
    /// The protocol's path as written in the file, relative to the campaign file's folder.
    pub protocol: String,
    /// The lab file's path as written in the file, relative to the campaign file's folder.
    pub lab: String,
    /// The parameters varied, with their ranges, in each protocol parameter's own unit.
    pub space: Space,
    /// The parameters held at one value, in each protocol parameter's own unit.
    pub fixed: BTreeMap<String, f64>,
    /// What to optimise.
    pub objective: Objective,
    /// The total number of experiments to run.
    pub budget: usize,
    /// The largest number of experiments running at once.
    pub in_flight: usize,
    /// How experiments are chosen.
    pub proposer: ProposerConfig,
    /// The seed of every random choice the proposer makes.
    pub seed: u64,
    /// The file the campaign was loaded from, with its full text (for provenance and diagnostics).
    pub source: Arc<SourceFile>,
}

/// Loads and checks a campaign on its own. On success the result may still carry warnings.
///
/// The checks that need the protocol are in [`Campaign::check_against`].
pub fn load_campaign(source: Arc<SourceFile>) -> Result<(Campaign, Diagnostics), Diagnostics> {
    let mut loader = Loader { src: source, diags: Diagnostics::new(), tree: Node::default() };
    let campaign = loader.run();
    loader.diags.sort();
    match campaign {
        Some(c) if !loader.diags.has_errors() => Ok((c, loader.diags)),
        _ => Err(loader.diags),
    }
}

impl Campaign {
    /// Checks the campaign against the protocol it names: every varied or fixed name is a parameter of the
    /// protocol, ranges and values lie inside what the protocol allows, every parameter without a default gets a
    /// value, and the objective is a declared output. Diagnostics point into the campaign file.
    pub fn check_against(&self, protocol: &Protocol) -> Diagnostics {
        let tree = index(&self.source.text);
        let mut diags = Diagnostics::new();
        let mut error = |code: &'static str, span: Range<usize>, message: String, help: String| {
            diags.push(Diagnostic::error(code, &self.source, span, message).with_help(help));
        };
        let known: Vec<&str> = protocol.parameters().iter().map(|p| p.name.as_str()).collect();
        let unknown_help = |name: &str| match suggest(name, &known) {
            Some(s) => {
                format!("did you mean `{s}`? The parameters of `{}` are: {}", protocol.name(), backticks(&known))
            }
            None if known.is_empty() => format!("protocol `{}` has no parameters", protocol.name()),
            None => format!("the parameters of `{}` are: {}", protocol.name(), backticks(&known)),
        };
        for dim in &self.space.dims {
            let key = tree.span_of(&[Seg::Field("vary"), Seg::KeyOf(&dim.name)]);
            let Some(p) = protocol.parameter(&dim.name) else {
                error(
                    codes::UNKNOWN_PARAMETER,
                    key,
                    format!("protocol `{}` has no parameter `{}`", protocol.name(), dim.name),
                    unknown_help(&dim.name),
                );
                continue;
            };
            if dim.min < p.min || dim.max > p.max {
                let bound = if dim.min < p.min { "min" } else { "max" };
                let span = tree.span_of(&[Seg::Field("vary"), Seg::Key(&dim.name), Seg::Field(bound)]);
                error(
                    codes::OUT_OF_RANGE,
                    span,
                    format!(
                        "`{}` varies over {}..={} {}, outside the protocol's range {}..={} {}",
                        dim.name,
                        trim_float(dim.min),
                        trim_float(dim.max),
                        p.unit,
                        trim_float(p.min),
                        trim_float(p.max),
                        p.unit
                    ),
                    format!(
                        "protocol `{}` allows `{}` from {} to {} {}; narrow the range to fit",
                        protocol.name(),
                        dim.name,
                        trim_float(p.min),
                        trim_float(p.max),
                        p.unit
                    ),
                );
            }
        }
        for (name, value) in &self.fixed {
            let Some(p) = protocol.parameter(name) else {
                let key = tree.span_of(&[Seg::Field("fixed"), Seg::KeyOf(name)]);
                error(
                    codes::UNKNOWN_PARAMETER,
                    key,
                    format!("protocol `{}` has no parameter `{name}`", protocol.name()),
                    unknown_help(name),
                );
                continue;
            };
            if *value < p.min || *value > p.max {
                let span = tree.span_of(&[Seg::Field("fixed"), Seg::Key(name)]);
                error(
                    codes::OUT_OF_RANGE,
                    span,
                    format!(
                        "fixed `{name}` = {} {} is outside the protocol's range {}..={} {}",
                        trim_float(*value),
                        p.unit,
                        trim_float(p.min),
                        trim_float(p.max),
                        p.unit
                    ),
                    format!(
                        "protocol `{}` allows `{name}` from {} to {} {}",
                        protocol.name(),
                        trim_float(p.min),
                        trim_float(p.max),
                        p.unit
                    ),
                );
            }
        }
        for p in protocol.parameters() {
            if p.default.is_none() && self.space.dim(&p.name).is_none() && !self.fixed.contains_key(&p.name) {
                let span = tree.field_name_span(&[], "vary");
                error(
                    codes::UNCOVERED,
                    span,
                    format!("protocol parameter `{}` has no default, so the campaign must vary or fix it", p.name),
                    format!(
                        "add `\"{0}\": (min: {1}, max: {2})` to `vary`, or `\"{0}\": <value>` to `fixed` (the protocol allows {1}..={2} {3})",
                        p.name,
                        trim_float(p.min),
                        trim_float(p.max),
                        p.unit
                    ),
                );
            }
        }
        if protocol.output(&self.objective.output).is_none() {
            let span = tree.span_of(&[Seg::Field("objective"), Seg::Index(0)]);
            let outputs: Vec<&str> = protocol.outputs().iter().map(|o| o.name.as_str()).collect();
            let help = match suggest(&self.objective.output, &outputs) {
                Some(s) => format!("did you mean `{s}`?"),
                None if outputs.is_empty() => format!("protocol `{}` declares no outputs", protocol.name()),
                None => format!("the outputs of `{}` are: {}", protocol.name(), backticks(&outputs)),
            };
            error(
                codes::OBJECTIVE,
                span,
                format!("protocol `{}` has no output `{}`", protocol.name(), self.objective.output),
                help,
            );
        }
        diags.sort();
        diags
    }

    /// Builds the proposer this campaign asks for, seeded with [`Campaign::seed`].
    pub fn build_proposer(&self) -> Box<dyn Proposer> {
        crate::proposer::build(&self.proposer, &self.space, &self.objective, self.budget, self.seed)
    }

    /// The values of every parameter the campaign sets for one experiment: the varied ones from `point`, and the
    /// fixed ones. Parameters the campaign leaves alone take the protocol's defaults when the protocol is bound.
    pub fn parameters(&self, point: &Point) -> BTreeMap<String, f64> {
        let mut values = self.fixed.clone();
        for dim in &self.space.dims {
            if let Some(v) = point.get(&dim.name) {
                values.insert(dim.name.clone(), *v);
            }
        }
        values
    }
}

struct Loader {
    src: Arc<SourceFile>,
    diags: Diagnostics,
    tree: Node,
}

impl Loader {
    fn span(&self, path: &[Seg<'_>]) -> Range<usize> {
        self.tree.span_of(path)
    }

    fn error(&mut self, code: &'static str, span: Range<usize>, message: impl Into<String>, help: impl Into<String>) {
        self.diags.push(Diagnostic::error(code, &self.src, span, message).with_help(help));
    }

    fn run(&mut self) -> Option<Campaign> {
        if let Err(d) = check_syntax(&self.src) {
            self.diags.push(d);
            return None;
        }
        self.tree = index(&self.src.text);
        let whole = 0..self.src.text.len();
        let header = match parse_section::<CampaignHeader>(&self.src, whole, "campaign") {
            Ok(h) => Some(h),
            Err(d) => {
                self.diags.push(d);
                None
            }
        };
        if let Some(h) = &header {
            self.check_header(h);
        }
        let dims = self.vary();
        let fixed = self.fixed(&dims);
        let objective = self.objective();
        let proposer = self.proposer(header.as_ref().map(|h| h.budget));
        let header = header?;
        Some(Campaign {
            name: header.name,
            description: header.description,
            protocol: header.protocol,
            lab: header.lab,
            space: Space::new(dims?),
            fixed: fixed?,
            objective: objective?,
            budget: header.budget,
            in_flight: header.in_flight,
            proposer: proposer?,
            seed: header.seed,
            source: Arc::clone(&self.src),
        })
    }

    fn check_header(&mut self, h: &CampaignHeader) {
        if h.format != FORMAT {
            let span = self.span(&[Seg::Field("format")]);
            self.error(
                codes::FORMAT,
                span,
                format!("unsupported campaign format {}", h.format),
                format!("this version of lab reads `format: {FORMAT}`"),
            );
        }
        for (field, value, help) in [
            ("name", &h.name, "give the campaign a short name; it is recorded with every experiment"),
            ("protocol", &h.protocol, "give the path of the protocol file, relative to this file's folder"),
            ("lab", &h.lab, "give the path of the lab file, relative to this file's folder"),
        ] {
            if value.trim().is_empty() {
                let span = self.span(&[Seg::Field(field)]);
                self.error(codes::EMPTY_TEXT, span, format!("the campaign's `{field}` is empty"), help);
            }
        }
        if h.budget == 0 {
            let span = self.span(&[Seg::Field("budget")]);
            self.error(
                codes::BUDGET,
                span,
                "the budget is 0 experiments",
                "set `budget` to the number of experiments to run",
            );
        }
        if h.in_flight == 0 {
            let span = self.span(&[Seg::Field("in_flight")]);
            self.error(
                codes::BUDGET,
                span,
                "`in_flight` is 0, so no experiment could ever start",
                "set `in_flight` to how many experiments may run at once, at least 1",
            );
        } else if h.budget > 0 && h.in_flight > h.budget {
            let span = self.span(&[Seg::Field("in_flight")]);
            let d = Diagnostic::error(
                codes::BUDGET,
                &self.src,
                span,
                format!("`in_flight` is {}, more than the budget of {}", h.in_flight, h.budget),
            )
            .with_help(format!("at most {} experiments will run at once", h.budget))
            .warning();
            self.diags.push(d);
        }
    }

    /// Reads the `vary` map; `None` if any entry had an error.
    fn vary(&mut self) -> Option<Vec<Dim>> {
        let node = self.tree.get(&[Seg::Field("vary")])?.clone();
        if node.entries.is_empty() {
            self.error(
                codes::NOTHING_VARIES,
                node.span.clone(),
                "the campaign varies no parameters",
                "add at least one parameter to `vary`: `\"name\": (min: ..., max: ...)`",
            );
            return None;
        }
        let mut dims: Vec<Dim> = Vec::new();
        let mut ok = true;
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            if dims.iter().any(|d| d.name == name) {
                self.error(
                    codes::TWICE,
                    key.span.clone(),
                    format!("`{name}` is listed twice in `vary`"),
                    "remove one of the entries",
                );
                ok = false;
                continue;
            }
            let range = match parse_section::<RangeFile>(&self.src, value.span.clone(), "range") {
                Ok(r) => r,
                Err(d) => {
                    self.diags.push(d);
                    ok = false;
                    continue;
                }
            };
            let field = |f: &str| value.get(&[Seg::Field(f)]).map_or(value.span.clone(), |n| n.span.clone());
            if !range.min.is_finite() || !range.max.is_finite() {
                let bad = if range.min.is_finite() { "max" } else { "min" };
                self.error(
                    codes::RANGE,
                    field(bad),
                    format!("the range of `{name}` has a {bad} that is not a finite number"),
                    "give both ends of the range as ordinary numbers",
                );
                ok = false;
            } else if range.min >= range.max {
                let help = if range.min == range.max {
                    format!(
                        "to hold `{name}` at one value, move it to `fixed`: `\"{name}\": {}`",
                        trim_float(range.min)
                    )
                } else {
                    "swap `min` and `max`".to_owned()
                };
                self.error(
                    codes::RANGE,
                    field("min"),
                    format!(
                        "the range of `{name}` is empty: min {} is not below max {}",
                        trim_float(range.min),
                        trim_float(range.max)
                    ),
                    help,
                );
                ok = false;
            }
            dims.push(Dim::new(name, range.min, range.max));
        }
        ok.then_some(dims)
    }

    /// Reads the `fixed` map; `None` if any entry had an error. Also reports names both varied and fixed.
    fn fixed(&mut self, dims: &Option<Vec<Dim>>) -> Option<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        let Some(node) = self.tree.get(&[Seg::Field("fixed")]).cloned() else { return Some(out) };
        let varied: Vec<String> = match (dims, self.tree.get(&[Seg::Field("vary")])) {
            (Some(d), _) => d.iter().map(|d| d.name.clone()).collect(),
            (None, Some(v)) => v.entries.iter().filter_map(|(k, _)| k.string.clone()).collect(),
            (None, None) => Vec::new(),
        };
        let mut ok = true;
        for (key, value) in &node.entries {
            let Some(name) = key.string.clone() else { continue };
            if out.contains_key(&name) {
                self.error(
                    codes::TWICE,
                    key.span.clone(),
                    format!("`{name}` is listed twice in `fixed`"),
                    "remove one of the entries",
                );
                ok = false;
                continue;
            }
            if varied.contains(&name) {
                self.error(
                    codes::TWICE,
                    key.span.clone(),
                    format!("`{name}` is both varied and fixed"),
                    format!("remove `{name}` from `vary` or from `fixed`"),
                );
                ok = false;
            }
            match parse_section::<f64>(&self.src, value.span.clone(), "fixed value") {
                Ok(v) if v.is_finite() => {
                    out.insert(name, v);
                }
                Ok(_) => {
                    self.error(
                        codes::RANGE,
                        value.span.clone(),
                        format!("fixed `{name}` is not a finite number"),
                        "give the value as an ordinary number, in the parameter's unit",
                    );
                    ok = false;
                }
                Err(d) => {
                    self.diags.push(d);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn objective(&mut self) -> Option<Objective> {
        let node = self.tree.get(&[Seg::Field("objective")])?.clone();
        let objective = match parse_section::<ObjectiveFile>(&self.src, node.span.clone(), "objective") {
            Ok(ObjectiveFile::Maximize(output)) => Objective::maximize(output),
            Ok(ObjectiveFile::Minimize(output)) => Objective::minimize(output),
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        if objective.output.trim().is_empty() {
            let span = node.span_of(&[Seg::Index(0)]);
            self.error(
                codes::EMPTY_TEXT,
                span,
                "the objective names no output",
                "name the protocol output to optimise, such as `Maximize(\"absorbance\")`",
            );
            return None;
        }
        Some(objective)
    }

    fn proposer(&mut self, budget: Option<usize>) -> Option<ProposerConfig> {
        let node = self.tree.get(&[Seg::Field("proposer")])?.clone();
        let file = match parse_section::<ProposerFile>(&self.src, node.span.clone(), "proposer") {
            Ok(f) => f,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        Some(match file {
            ProposerFile::Random => ProposerConfig::Random,
            ProposerFile::SpaceFilling => ProposerConfig::SpaceFilling,
            ProposerFile::GaussianProcess { initial, acquisition } => {
                let mut ok = true;
                let initial_span = node.span_of(&[Seg::Field("initial")]);
                if initial == 0 {
                    self.error(
                        codes::PROPOSER,
                        initial_span,
                        "the Gaussian process needs at least 1 initial experiment",
                        "set `initial` to the size of the space-filling start; about twice the number of varied parameters, plus one, works well",
                    );
                    ok = false;
                } else if let Some(budget) = budget
                    && budget > 0
                    && initial > budget
                {
                    self.error(
                        codes::PROPOSER,
                        initial_span,
                        format!("`initial` is {initial}, more than the budget of {budget}"),
                        "lower `initial`, or use `SpaceFilling` if no model is wanted",
                    );
                    ok = false;
                }
                let acquisition = match acquisition {
                    AcquisitionFile::LogExpectedImprovement => Acquisition::LogExpectedImprovement,
                    AcquisitionFile::ExpectedImprovement => Acquisition::ExpectedImprovement,
                    AcquisitionFile::UpperConfidenceBound { beta } => {
                        if !(beta.is_finite() && beta > 0.0) {
                            let span = node.span_of(&[Seg::Field("acquisition"), Seg::Field("beta")]);
                            self.error(
                                codes::PROPOSER,
                                span,
                                format!("`beta` is {}, but it must be a positive number", trim_float(beta)),
                                "`beta` weighs uncertainty against the predicted value; 2 to 4 is usual",
                            );
                            ok = false;
                        }
                        Acquisition::UpperConfidenceBound { beta }
                    }
                };
                if !ok {
                    return None;
                }
                ProposerConfig::GaussianProcess { initial, acquisition }
            }
        })
    }
}

fn backticks(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}
