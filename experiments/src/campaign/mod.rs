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

mod infeasible;
mod validate;

pub use validate::load_campaign;

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use protocols::ron_file::suggest;
use protocols::source::{Seg, index};
use protocols::units::trim_float;
use protocols::{Diagnostic, Diagnostics, Protocol, SourceFile};

pub use crate::objective::{Direction, Objective};
use crate::proposer::{Problem, Proposer, ProposerConfig, build_for};
use crate::space::{Point, Space};
use crate::stop::StopRules;

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
    /// A categorical parameter's levels or descriptors are wrong (none, one, repeated, or inconsistent).
    pub const LEVELS: &str = "C0012";
    /// A linear constraint is malformed, names a parameter it cannot constrain, or the constraints cannot all hold.
    pub const CONSTRAINT: &str = "C0013";
    /// `per_batch` names a parameter that is not varied, or names one twice.
    pub const PER_BATCH: &str = "C0014";
    /// A stop rule is malformed (a time without a duration unit, a threshold out of range).
    pub const STOP: &str = "C0015";
    /// The objectives are missing, given twice (`objective` and `objectives`), empty or repeated.
    pub const OBJECTIVES: &str = "C0016";
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
    /// The parameters varied, with their ranges or levels in each protocol parameter's own unit, the linear
    /// constraints and the parameters shared per batch.
    pub space: Space,
    /// The parameters held at one value, in each protocol parameter's own unit.
    pub fixed: BTreeMap<String, f64>,
    /// What to optimise: the first (or only) of [`Campaign::objectives`].
    pub objective: Objective,
    /// Everything to optimise: one objective, or several (then the proposer seeks the Pareto front).
    pub objectives: Vec<Objective>,
    /// When to stop before the budget is spent.
    pub stop: StopRules,
    /// The total number of experiments to run.
    pub budget: usize,
    /// The largest number of experiments running at once.
    pub in_flight: usize,
    /// How experiments are chosen.
    pub proposer: ProposerConfig,
    /// The seed of every random choice the proposer makes.
    pub seed: u64,
    /// For each reagent parameter the campaign varies, the reagent each level dispenses, in the order of the
    /// levels' numbers (1, 2, ...: the value the parameter takes in a point).
    pub reagents: BTreeMap<String, Vec<String>>,
    /// The file the campaign was loaded from, with its full text (for provenance and diagnostics).
    pub source: Arc<SourceFile>,
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
        for dim in self.space.dims() {
            let key = tree.span_of(&[Seg::Field("vary"), Seg::KeyOf(&dim.name)]);
            match (self.reagents.contains_key(&dim.name), protocol.reagent_parameter(&dim.name)) {
                (true, Some(_)) => continue,
                (true, None) => {
                    let help = if protocol.parameter(&dim.name).is_some() {
                        format!(
                            "`{}` is a number in protocol `{}`; give each level the number it takes",
                            dim.name,
                            protocol.name()
                        )
                    } else {
                        unknown_help(&dim.name)
                    };
                    error(
                        codes::UNKNOWN_PARAMETER,
                        key,
                        format!("protocol `{}` has no reagent parameter `{}`", protocol.name(), dim.name),
                        help,
                    );
                    continue;
                }
                (false, Some(_)) => {
                    error(
                        codes::LEVELS,
                        key,
                        format!(
                            "`{}` is a reagent parameter of protocol `{}`, so its levels name reagents",
                            dim.name,
                            protocol.name()
                        ),
                        format!("write `\"{}\": Categorical(levels: {{\"label\": \"reagent\", ...}})`", dim.name),
                    );
                    continue;
                }
                (false, None) => {}
            }
            let Some(p) = protocol.parameter(&dim.name) else {
                error(
                    codes::UNKNOWN_PARAMETER,
                    key,
                    format!("protocol `{}` has no parameter `{}`", protocol.name(), dim.name),
                    unknown_help(&dim.name),
                );
                continue;
            };
            if let Some(levels) = dim.levels() {
                for level in levels.iter().filter(|l| l.value < p.min || l.value > p.max) {
                    let span = tree.span_of(&[
                        Seg::Field("vary"),
                        Seg::Key(&dim.name),
                        Seg::Field("levels"),
                        Seg::Key(&level.label),
                    ]);
                    error(
                        codes::OUT_OF_RANGE,
                        span,
                        format!(
                            "level `{}` of `{}` sets it to {} {}, outside the protocol's range {}..={} {}",
                            level.label,
                            dim.name,
                            trim_float(level.value),
                            p.unit,
                            trim_float(p.min),
                            trim_float(p.max),
                            p.unit
                        ),
                        format!(
                            "each level's number is the value protocol `{}` receives for `{}`; give one from {} to {}",
                            protocol.name(),
                            dim.name,
                            trim_float(p.min),
                            trim_float(p.max)
                        ),
                    );
                }
            } else if dim.min < p.min || dim.max > p.max {
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
        let several = self.objectives.len() > 1;
        for (i, objective) in self.objectives.iter().enumerate() {
            if protocol.output(&objective.output).is_some() {
                continue;
            }
            let span = if several {
                tree.span_of(&[Seg::Field("objectives"), Seg::Index(i), Seg::Index(0)])
            } else {
                tree.span_of(&[Seg::Field("objective"), Seg::Index(0)])
            };
            let outputs: Vec<&str> = protocol.outputs().iter().map(|o| o.name.as_str()).collect();
            let help = match suggest(&objective.output, &outputs) {
                Some(s) => format!("did you mean `{s}`?"),
                None if outputs.is_empty() => format!("protocol `{}` declares no outputs", protocol.name()),
                None => format!("the outputs of `{}` are: {}", protocol.name(), backticks(&outputs)),
            };
            error(
                codes::OBJECTIVE,
                span,
                format!("protocol `{}` has no output `{}`", protocol.name(), objective.output),
                help,
            );
        }
        diags.sort();
        diags
    }

    /// Builds the proposer this campaign asks for, seeded with [`Campaign::seed`].
    pub fn build_proposer(&self) -> Box<dyn Proposer> {
        build_for(&self.proposer, &self.problem(None), self.seed)
    }

    /// Builds the proposer this campaign asks for, choosing only among `pool` (the rows of a lookup table), seeded
    /// with `seed`.
    pub fn build_proposer_over(&self, pool: Vec<Point>, seed: u64) -> Box<dyn Proposer> {
        build_for(&self.proposer, &self.problem(Some(pool)), seed)
    }

    /// What the proposer is built for: the space, the objectives, the budget and the stop rules.
    pub fn problem(&self, pool: Option<Vec<Point>>) -> Problem {
        Problem {
            space: self.space.clone(),
            objectives: self.objectives.clone(),
            budget: self.budget,
            stop: self.stop.clone(),
            pool,
        }
    }

    /// The level names of a point's categorical values, by parameter name (for people and the record).
    pub fn labels(&self, point: &Point) -> BTreeMap<String, String> {
        self.space.labels(point)
    }

    /// The reagent each reagent parameter dispenses at a point (by the level's number), for
    /// [`protocols::Protocol::bind_with`]. Parameters the campaign leaves alone take the protocol's default.
    pub fn reagents_at(&self, point: &Point) -> BTreeMap<String, String> {
        reagents_at(&self.reagents, point)
    }

    /// The values of every parameter the campaign sets for one experiment: the varied ones from `point`, and the
    /// fixed ones. Parameters the campaign leaves alone take the protocol's defaults when the protocol is bound.
    pub fn parameters(&self, point: &Point) -> BTreeMap<String, f64> {
        let mut values = self.fixed.clone();
        for dim in self.space.dims() {
            if let Some(v) = point.get(&dim.name) {
                values.insert(dim.name.clone(), *v);
            }
        }
        values
    }
}

/// The reagent each reagent parameter in `levels` (its reagents in level order) dispenses at `point`, where the
/// parameter's value is its level's number, from 1.
pub fn reagents_at(levels: &BTreeMap<String, Vec<String>>, point: &Point) -> BTreeMap<String, String> {
    levels
        .iter()
        .filter_map(|(name, list)| {
            let v = point.get(name)?;
            let i = (v.round() as usize).checked_sub(1)?;
            Some((name.clone(), list.get(i)?.clone()))
        })
        .collect()
}

fn backticks(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}
