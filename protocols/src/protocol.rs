//! The checked protocol: a DAG of steps over typed operations, and its binding to parameter values.
//!
//! A [`Protocol`] can only be obtained from [`crate::load_protocol`], which refuses any file with an error, so
//! code that takes a `&Protocol` may rely on its invariants: step ids are unique, every dependency exists, the
//! graph is acyclic, every parameter reference resolves to a declared parameter of the right dimension, every
//! vessel operation runs where a transfer has put the vessel, and every declared output is measured.

use std::collections::BTreeMap;
use std::sync::Arc;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::diagnostic::SourceFile;
use crate::kind::InstrumentKind;
use crate::op::{Action, Arg, InstrumentRef, Op, Operation};
use crate::reagent::ReagentParameter;
use crate::units::{Dimension, Duration, Quantity, Unit, trim_float};

/// A protocol input: a number with a unit and a range.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// The name, referenced as `$name` in step arguments.
    pub name: String,
    /// The unit values are given in.
    pub unit: Unit,
    /// The smallest allowed value, in `unit`.
    pub min: f64,
    /// The largest allowed value, in `unit`.
    pub max: f64,
    /// The value used when none is given.
    pub default: Option<f64>,
    /// For people.
    pub description: String,
}

impl Parameter {
    /// Converts a value given in this parameter's unit to its dimension's canonical unit.
    pub fn to_canonical(&self, value: f64) -> Quantity {
        Quantity::new(self.unit.to_canonical(value), self.unit.dimension)
    }
}

/// A declared protocol result.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The name, used by `Measure(output: ...)` and by campaign objectives.
    pub name: String,
    /// The unit it is recorded in.
    pub unit: Unit,
    /// For people.
    pub description: String,
}

/// One step of a protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The step's id, unique in the protocol.
    pub id: String,
    /// Which instrument runs it.
    pub on: InstrumentRef,
    /// What it does.
    pub op: Op,
    /// Its timing, retry and hold rules.
    pub rules: StepRules,
}

/// A step's timing, retry and hold rules.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepRules {
    /// The most lab time the step may wait after its dependencies finish.
    pub within: Option<Duration>,
    /// The least lab time the step must wait after its dependencies finish.
    pub wait: Option<Duration>,
    /// How long the step may run before it counts as failed.
    pub timeout: Option<Duration>,
    /// How many retries after a failure (only for operations safe to repeat).
    pub retry: u32,
    /// Whether the step's instrument stays reserved for the experiment's next step of the same kind.
    pub keep: bool,
}

/// A validated protocol. See the module documentation for its invariants.
#[derive(Debug, Clone)]
pub struct Protocol {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) parameters: Vec<Parameter>,
    pub(crate) reagents: Vec<ReagentParameter>,
    pub(crate) outputs: Vec<Output>,
    pub(crate) steps: Vec<Step>,
    /// Node `i` is step `i`; an edge `a -> b` means `b` runs after `a`.
    pub(crate) graph: DiGraph<usize, ()>,
    pub(crate) topological: Vec<usize>,
    /// Each transfer, in the order they run, with the vessel steps that run where it leaves the vessel.
    pub(crate) segments: Vec<(usize, Vec<usize>)>,
    pub(crate) source: Arc<SourceFile>,
}

impl Protocol {
    /// The protocol's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the protocol does.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The file the protocol was loaded from, with its full text (for provenance).
    pub fn source(&self) -> &Arc<SourceFile> {
        &self.source
    }

    /// The reagent parameters, sorted by name.
    pub fn reagent_parameters(&self) -> &[ReagentParameter] {
        &self.reagents
    }

    /// The reagent parameter called `name`.
    pub fn reagent_parameter(&self, name: &str) -> Option<&ReagentParameter> {
        self.reagents.iter().find(|p| p.name == name)
    }

    /// The reagents step `i` may dispense: none for a step that names no reagent, the one it names, or every
    /// reagent its parameter may take given `allowed` (from a campaign's levels; the parameter's own list or its
    /// default otherwise).
    pub fn reagents_of(&self, i: usize, allowed: &BTreeMap<String, Vec<String>>) -> Vec<String> {
        match &self.steps[i].op {
            Op::Dispense { reagent: Some(Arg::Value(name)), .. } => vec![name.clone()],
            Op::Dispense { reagent: Some(Arg::Param(p)), .. } => match allowed.get(p) {
                Some(list) => list.clone(),
                None => {
                    let decl = self.reagent_parameter(p).expect("validated: reagent parameters resolve");
                    match (&decl.slot, &decl.default) {
                        (crate::ReagentSlot::List(list), _) => list.clone(),
                        (_, Some(d)) => vec![d.clone()],
                        _ => Vec::new(),
                    }
                }
            },
            _ => Vec::new(),
        }
    }

    /// The parameters, sorted by name.
    pub fn parameters(&self) -> &[Parameter] {
        &self.parameters
    }

    /// The parameter called `name`.
    pub fn parameter(&self, name: &str) -> Option<&Parameter> {
        self.parameters.iter().find(|p| p.name == name)
    }

    /// The declared outputs, sorted by name.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// The output called `name`.
    pub fn output(&self, name: &str) -> Option<&Output> {
        self.outputs.iter().find(|o| o.name == name)
    }

    /// The steps, in file order; a step's index here is its identity in [`Bound::steps`].
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The index of the step with id `id`.
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// The steps step `i` runs after.
    pub fn dependencies(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> =
            self.graph.neighbors_directed(NodeIndex::new(i), Direction::Incoming).map(|n| n.index()).collect();
        v.sort_unstable();
        v
    }

    /// The steps that run after step `i`.
    pub fn dependents(&self, i: usize) -> Vec<usize> {
        let mut v: Vec<usize> =
            self.graph.neighbors_directed(NodeIndex::new(i), Direction::Outgoing).map(|n| n.index()).collect();
        v.sort_unstable();
        v
    }

    /// Every step, each after all of its dependencies.
    pub fn topological_order(&self) -> &[usize] {
        &self.topological
    }

    /// Each transfer step, in the order they run, with the steps that act on the vessel where it leaves it.
    /// Choosing a transfer's destination must leave the vessel where all of those steps can run.
    pub fn vessel_segments(&self) -> &[(usize, Vec<usize>)] {
        &self.segments
    }

    /// The transfer that put the vessel where step `i` acts on it, if `i` acts on the vessel.
    pub fn transfer_serving(&self, i: usize) -> Option<usize> {
        self.segments.iter().find(|(_, served)| served.contains(&i)).map(|(t, _)| *t)
    }

    /// The instrument kinds this protocol needs.
    pub fn kinds(&self) -> Vec<InstrumentKind> {
        let mut v: Vec<InstrumentKind> = self.steps.iter().map(|s| s.op.kind()).collect();
        v.sort();
        v.dedup();
        v
    }

    /// Binds the protocol to parameter values given in each parameter's own unit. Parameters not given take their
    /// default. Fails if a value is missing, out of range, or names no parameter.
    pub fn bind(&self, values: &BTreeMap<String, f64>) -> Result<Bound, BindError> {
        self.bind_with(values, &BTreeMap::new())
    }

    /// Binds the protocol to parameter values and to the reagent each reagent parameter takes (reagent parameters
    /// not given take their default). A campaign passes a reagent parameter's level number among `values` too; it
    /// is kept in [`Bound::values`] for the record, and the reagent comes from `reagents`.
    pub fn bind_with(
        &self,
        values: &BTreeMap<String, f64>,
        reagents: &BTreeMap<String, String>,
    ) -> Result<Bound, BindError> {
        let mut errors = Vec::new();
        for name in values.keys().chain(reagents.keys()) {
            if self.parameter(name).is_none() && self.reagent_parameter(name).is_none() {
                errors.push(BindProblem::Unknown { name: name.clone() });
            }
        }
        let mut resolved = BTreeMap::new();
        for p in &self.parameters {
            match values.get(&p.name).copied().or(p.default) {
                None => errors.push(BindProblem::Missing { name: p.name.clone() }),
                Some(v) if !v.is_finite() || v < p.min || v > p.max => errors.push(BindProblem::OutOfRange {
                    name: p.name.clone(),
                    value: v,
                    min: p.min,
                    max: p.max,
                    unit: p.unit.symbol,
                }),
                Some(v) => {
                    resolved.insert(p.name.clone(), v);
                }
            }
        }
        let mut chosen = BTreeMap::new();
        for r in &self.reagents {
            match reagents.get(&r.name).or(r.default.as_ref()) {
                None => errors.push(BindProblem::Missing { name: r.name.clone() }),
                Some(name) => {
                    chosen.insert(r.name.clone(), name.clone());
                }
            }
            if let Some(v) = values.get(&r.name) {
                resolved.insert(r.name.clone(), *v);
            }
        }
        if !errors.is_empty() {
            return Err(BindError { protocol: self.name.clone(), problems: errors });
        }
        let canonical = |name: &str| -> Quantity {
            let p = self.parameter(name).expect("validated: references resolve");
            p.to_canonical(resolved[name])
        };
        fn arg<T: TryFrom<Quantity> + Copy>(a: &Arg<T>, canonical: &dyn Fn(&str) -> Quantity) -> T
        where
            T::Error: std::fmt::Debug,
        {
            match a {
                Arg::Value(v) => *v,
                Arg::Param(name) => T::try_from(canonical(name)).expect("validated: parameter dimensions match"),
            }
        }
        let steps = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let action = match &s.op {
                    Op::Transfer { to } => Action::Transfer { to: to.clone() },
                    Op::Dispense { volume, reagent } => Action::Dispense {
                        volume: arg(volume, &canonical),
                        reagent: reagent.as_ref().map(|r| match r {
                            Arg::Value(name) => name.clone(),
                            Arg::Param(p) => chosen[p].clone(),
                        }),
                    },
                    Op::Heat { temperature, duration, stir } => Action::Heat {
                        temperature: arg(temperature, &canonical),
                        duration: arg(duration, &canonical),
                        stir: stir.as_ref().map(|a| arg(a, &canonical)),
                    },
                    Op::Stir { speed, duration } => {
                        Action::Stir { speed: arg(speed, &canonical), duration: arg(duration, &canonical) }
                    }
                    Op::Measure { wavelength, output } => {
                        Action::Measure { wavelength: arg(wavelength, &canonical), output: output.clone() }
                    }
                    Op::Weigh { output } => Action::Weigh { output: output.clone() },
                    Op::Select { position } => Action::Select { position: *position },
                    Op::ReadTemperature { output } => Action::ReadTemperature { output: output.clone() },
                    Op::HoldTemperature { temperature, duration } => Action::HoldTemperature {
                        temperature: arg(temperature, &canonical),
                        duration: arg(duration, &canonical),
                    },
                };
                BoundStep { id: s.id.clone(), on: s.on.clone(), action, after: self.dependencies(i), rules: s.rules }
            })
            .collect();
        Ok(Bound { values: resolved, reagents: chosen, steps })
    }
}

/// A protocol bound to one experiment's parameter values.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Every parameter's value, in the parameter's own unit.
    pub values: BTreeMap<String, f64>,
    /// The reagent each reagent parameter took.
    pub reagents: BTreeMap<String, String>,
    /// The steps, in the protocol's order.
    pub steps: Vec<BoundStep>,
}

/// One step with its action bound.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundStep {
    /// The step's id.
    pub id: String,
    /// Which instrument runs it.
    pub on: InstrumentRef,
    /// What it does, with concrete values.
    pub action: Action,
    /// Indices of the steps it runs after.
    pub after: Vec<usize>,
    /// Its timing, retry and hold rules.
    pub rules: StepRules,
}

/// Why parameter values could not be bound to a protocol.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cannot bind protocol `{protocol}`: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct BindError {
    /// The protocol's name.
    pub protocol: String,
    /// Every problem found.
    pub problems: Vec<BindProblem>,
}

/// One reason a binding failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BindProblem {
    /// A parameter with no default was not given.
    #[error("parameter `{name}` has no value and no default")]
    Missing {
        /// The parameter.
        name: String,
    },
    /// A value is outside the parameter's range.
    #[error("parameter `{name}` = {} {unit} is outside {}..={} {unit}", trim_float(*value), trim_float(*min), trim_float(*max))]
    OutOfRange {
        /// The parameter.
        name: String,
        /// The value given.
        value: f64,
        /// The range's lower end.
        min: f64,
        /// The range's upper end.
        max: f64,
        /// The parameter's unit.
        unit: &'static str,
    },
    /// A value was given for a parameter the protocol does not have.
    #[error("the protocol has no parameter `{name}`")]
    Unknown {
        /// The name given.
        name: String,
    },
}

/// The dimension each operation argument must have, for messages and checks.
pub(crate) fn expected_dimension(field: &str) -> Dimension {
    match field {
        "volume" => Dimension::Volume,
        "temperature" => Dimension::Temperature,
        "duration" => Dimension::Duration,
        "stir" | "speed" => Dimension::RotationalSpeed,
        "wavelength" => Dimension::Wavelength,
        _ => Dimension::Dimensionless,
    }
}
