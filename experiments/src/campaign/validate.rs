//! A campaign file read into a checked [`Campaign`], section by section, every problem reported at once.
//!
//! The [`Loader`] checks what the campaign alone can tell: the header and format, every `vary` range and `fixed`
//! value, constraints, per-batch parameters, the objectives, the stop rules and the proposer's settings. Each
//! problem is a diagnostic with a code ([`super::codes`]), a span in the file and a hint; the checks that need the
//! protocol are [`Campaign::check_against`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use protocols::ron_file::{check_syntax, parse_section, suggest};
use protocols::source::{Node, Seg, index};
use protocols::units::trim_float;
use protocols::{Diagnostic, Diagnostics, SourceFile};

use protocols::units::{Dimension, Quantity};

use crate::file::{
    AcquisitionFile, CampaignHeader, ConstraintFile, EncodingFile, FORMAT, LevelFile, ObjectiveFile, ProposerFile,
    RangeFile, StopFile, VaryFile,
};
use crate::objective::Objective;
use crate::proposer::{Acquisition, ProposerConfig};
use crate::space::{Dim, Encoding, Level, LinearConstraint, Space};
use crate::stop::{DEFAULT_PATIENCE, StopRules};

use super::infeasible::Infeasible;
use super::{Campaign, backticks, codes};

/// Loads and checks a campaign on its own. On success the result may still carry warnings.
///
/// The checks that need the protocol are in [`Campaign::check_against`].
pub fn load_campaign(source: Arc<SourceFile>) -> Result<(Campaign, Diagnostics), Diagnostics> {
    let mut loader =
        Loader { src: source, diags: Diagnostics::new(), tree: Node::default(), reagents: BTreeMap::new() };
    let campaign = loader.run();
    loader.diags.sort();
    match campaign {
        Some(c) if !loader.diags.has_errors() => Ok((c, loader.diags)),
        _ => Err(loader.diags),
    }
}

struct Loader {
    src: Arc<SourceFile>,
    diags: Diagnostics,
    tree: Node,
    /// The reagent each level of a reagent parameter dispenses, by parameter, in level order.
    reagents: BTreeMap<String, Vec<String>>,
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
        let objectives = self.objectives(header.as_ref());
        let proposer = self.proposer(header.as_ref().map(|h| h.budget));
        let space = match (&dims, &fixed) {
            (Some(d), Some(f)) => self.constrain(Space::new(d.clone()), f, header.as_ref()),
            _ => None,
        };
        let stop = self.stop(objectives.as_ref().map_or(1, Vec::len));
        let header = header?;
        let objectives = objectives?;
        Some(Campaign {
            name: header.name,
            description: header.description,
            protocol: header.protocol,
            lab: header.lab,
            space: space?,
            fixed: fixed?,
            objective: objectives[0].clone(),
            objectives,
            stop: stop?,
            budget: header.budget,
            in_flight: header.in_flight,
            proposer: proposer?,
            seed: header.seed,
            reagents: std::mem::take(&mut self.reagents),
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
            let dim = match value.name.as_deref() {
                None | Some("Range") => match parse_section::<RangeFile>(&self.src, value.span.clone(), "range") {
                    Ok(r) => self.check_range(&name, r.min, r.max, value).then(|| Dim::new(name.clone(), r.min, r.max)),
                    Err(d) => {
                        self.diags.push(d);
                        None
                    }
                },
                Some(_) => match parse_section::<VaryFile>(&self.src, value.span.clone(), "varied parameter") {
                    Ok(VaryFile::Continuous { min, max }) => {
                        self.check_range(&name, min, max, value).then(|| Dim::new(name.clone(), min, max))
                    }
                    Ok(VaryFile::Integer { min, max, step }) => self.integer(&name, min, max, step, value),
                    Ok(VaryFile::Categorical { levels, encoding }) => self.categorical(&name, levels, encoding, value),
                    Err(d) => {
                        self.diags.push(d);
                        None
                    }
                },
            };
            match dim {
                Some(d) => dims.push(d),
                None => {
                    ok = false;
                    // A placeholder keeps the name known, so a second entry of the same name is still reported.
                    dims.push(Dim::new(name, 0.0, 1.0));
                }
            }
        }
        ok.then_some(dims)
    }

    /// Checks a continuous or integer range; reports and returns `false` if it is empty, inverted or not finite.
    fn check_range(&mut self, name: &str, min: f64, max: f64, value: &Node) -> bool {
        let field = |f: &str| value.get(&[Seg::Field(f)]).map_or(value.span.clone(), |n| n.span.clone());
        if !min.is_finite() || !max.is_finite() {
            let bad = if min.is_finite() { "max" } else { "min" };
            self.error(
                codes::RANGE,
                field(bad),
                format!("the range of `{name}` has a {bad} that is not a finite number"),
                "give both ends of the range as ordinary numbers",
            );
            return false;
        }
        if min >= max {
            let help = if min == max {
                format!("to hold `{name}` at one value, move it to `fixed`: `\"{name}\": {}`", trim_float(min))
            } else {
                "swap `min` and `max`".to_owned()
            };
            self.error(
                codes::RANGE,
                field("min"),
                format!("the range of `{name}` is empty: min {} is not below max {}", trim_float(min), trim_float(max)),
                help,
            );
            return false;
        }
        true
    }

    fn integer(&mut self, name: &str, min: f64, max: f64, step: f64, value: &Node) -> Option<Dim> {
        if !self.check_range(name, min, max, value) {
            return None;
        }
        let span = value.get(&[Seg::Field("step")]).map_or(value.span.clone(), |n| n.span.clone());
        if !(step.is_finite() && step > 0.0) {
            self.error(
                codes::RANGE,
                span,
                format!("the step of `{name}` is {}, but it must be a positive number", trim_float(step)),
                "`step` is the spacing of the values tried: 1 for whole numbers",
            );
            return None;
        }
        if step > max - min {
            self.error(
                codes::RANGE,
                span,
                format!("`{name}` takes only one value: the step {} is wider than its range", trim_float(step)),
                format!("lower `step`, or move `{name}` to `fixed`"),
            );
            return None;
        }
        Some(Dim::integer(name, min, max, step))
    }

    fn categorical(
        &mut self,
        name: &str,
        levels: BTreeMap<String, LevelFile>,
        encoding: EncodingFile,
        value: &Node,
    ) -> Option<Dim> {
        let node = value.get(&[Seg::Field("levels")]).cloned().unwrap_or_default();
        let mut ok = true;
        let (levels, reagents) = self.level_values(name, levels, &node)?;
        // The file's order, from the index; serde's map has the values but sorts the names.
        let mut order: Vec<String> = Vec::new();
        for (key, _) in &node.entries {
            let Some(label) = key.string.clone() else { continue };
            if order.contains(&label) {
                self.error(
                    codes::LEVELS,
                    key.span.clone(),
                    format!("level `{label}` of `{name}` is listed twice"),
                    "remove one of the entries",
                );
                ok = false;
            } else if levels.contains_key(&label) {
                order.push(label);
            }
        }
        order.extend(levels.keys().filter(|l| !order.contains(l)).cloned().collect::<Vec<_>>());
        if levels.len() < 2 {
            let help = match levels.iter().next() {
                Some((_, v)) => {
                    format!("to hold `{name}` at one level, move it to `fixed`: `\"{name}\": {}`", trim_float(*v))
                }
                None => "list the levels with the value the protocol gets for each: `levels: {\"A\": 1, \"B\": 2}`"
                    .to_owned(),
            };
            self.error(
                codes::LEVELS,
                node.span.clone(),
                format!("`{name}` has {} level(s); a categorical parameter needs at least 2", levels.len()),
                help,
            );
            return None;
        }
        let mut seen: Vec<(f64, &str)> = Vec::new();
        for label in &order {
            let v = levels[label];
            let span = node.span_of(&[Seg::Key(label)]);
            if !v.is_finite() {
                self.error(
                    codes::LEVELS,
                    span,
                    format!("level `{label}` of `{name}` has a value that is not a finite number"),
                    "give each level the number the protocol parameter takes for it",
                );
                ok = false;
            } else if let Some((_, other)) = seen.iter().find(|(w, _)| *w == v) {
                self.error(
                    codes::LEVELS,
                    span,
                    format!("levels `{other}` and `{label}` of `{name}` both have the value {}", trim_float(v)),
                    "each level needs its own value, so the protocol (and the record) can tell them apart",
                );
                ok = false;
            } else {
                seen.push((v, label));
            }
        }
        let encoding = match encoding {
            EncodingFile::OneHot => Encoding::OneHot,
            EncodingFile::Descriptors(table) => {
                let enc = value.get(&[Seg::Field("encoding")]).cloned().unwrap_or_default();
                let table_node = enc.get(&[Seg::Index(0)]).cloned().unwrap_or_else(|| enc.clone());
                for label in table.keys().filter(|l| !levels.contains_key(*l)) {
                    self.error(
                        codes::LEVELS,
                        table_node.span_of(&[Seg::KeyOf(label)]),
                        format!("descriptors are given for `{label}`, which is not a level of `{name}`"),
                        format!("the levels are: {}", backticks(&order.iter().map(String::as_str).collect::<Vec<_>>())),
                    );
                    ok = false;
                }
                let width = table.values().next().map_or(0, Vec::len);
                let mut rows = Vec::with_capacity(order.len());
                for label in &order {
                    match table.get(label) {
                        None => {
                            self.error(
                                codes::LEVELS,
                                enc.span.clone(),
                                format!("level `{label}` of `{name}` has no descriptors"),
                                "give every level a list of descriptors, all of the same length",
                            );
                            ok = false;
                        }
                        Some(row) if row.is_empty() || row.len() != width || row.iter().any(|x| !x.is_finite()) => {
                            self.error(
                                codes::LEVELS,
                                table_node.span_of(&[Seg::Key(label)]),
                                format!(
                                    "the descriptors of level `{label}` of `{name}` are not {width} finite numbers"
                                ),
                                "give every level a non-empty list of finite descriptors, all of the same length",
                            );
                            ok = false;
                        }
                        Some(row) => rows.push(row.clone()),
                    }
                }
                Encoding::Descriptors(rows)
            }
        };
        if let Some(reagents) = reagents {
            // A reagent parameter's levels are numbered in the file's order; the number is what the proposers,
            // the record's values and the backtests see, and the reagent is what the protocol dispenses.
            let mut by_number: Vec<(f64, String)> = order.iter().map(|l| (levels[l], reagents[l].clone())).collect();
            by_number.sort_by(|a, b| a.0.total_cmp(&b.0));
            self.reagents.insert(name.to_owned(), by_number.into_iter().map(|(_, r)| r).collect());
        }
        let levels = order.iter().map(|l| Level::new(l.clone(), levels[l])).collect();
        ok.then(|| Dim::categorical(name, levels, encoding))
    }

    /// A categorical parameter's levels as numbers; for levels that name reagents, also the reagent of each level,
    /// the levels numbered 1, 2, ... in the file's order. `None` if numbers and reagents are mixed.
    #[expect(clippy::type_complexity, reason = "a private helper's pair of maps")]
    fn level_values(
        &mut self,
        name: &str,
        levels: BTreeMap<String, LevelFile>,
        node: &Node,
    ) -> Option<(BTreeMap<String, f64>, Option<BTreeMap<String, String>>)> {
        let named = levels.values().filter(|l| matches!(l, LevelFile::Reagent(_))).count();
        if named == 0 {
            let numbers = levels.into_iter().map(|(k, v)| (k, if let LevelFile::Number(n) = v { n } else { 0.0 }));
            return Some((numbers.collect(), None));
        }
        if named < levels.len() {
            self.error(
                codes::LEVELS,
                node.span.clone(),
                format!("the levels of `{name}` mix numbers and reagent names"),
                "give every level the number a numeric parameter takes, or every level the reagent a reagent parameter dispenses",
            );
            return None;
        }
        let file_order: Vec<String> = node.entries.iter().filter_map(|(k, _)| k.string.clone()).collect();
        let mut numbers = BTreeMap::new();
        let mut reagents = BTreeMap::new();
        for (label, level) in levels {
            let LevelFile::Reagent(r) = level else { continue };
            let position = file_order.iter().position(|l| *l == label).unwrap_or(file_order.len());
            numbers.insert(label.clone(), (position + 1) as f64);
            reagents.insert(label, r);
        }
        Some((numbers, Some(reagents)))
    }

    /// Adds the constraints and the per-batch parameters to `space`; `None` if any had an error.
    fn constrain(
        &mut self,
        space: Space,
        fixed: &BTreeMap<String, f64>,
        header: Option<&CampaignHeader>,
    ) -> Option<Space> {
        let mut ok = true;
        let mut constraints = Vec::new();
        // Each constraint as written, and its place in the file, for naming one the space cannot meet.
        let mut written: Vec<(ConstraintFile, Node)> = Vec::new();
        let node = self.tree.get(&[Seg::Field("constraints")]).cloned();
        for item in node.iter().flat_map(|n| n.items.clone()) {
            let c = match parse_section::<ConstraintFile>(&self.src, item.span.clone(), "constraint") {
                Ok(c) => c,
                Err(d) => {
                    self.diags.push(d);
                    ok = false;
                    continue;
                }
            };
            match self.constraint(&space, fixed, &c, &item) {
                Some(checked) => {
                    constraints.push(checked);
                    written.push((c, item));
                }
                None => ok = false,
            }
        }
        let dims = space.dims().to_vec();
        let mut space = match space.with_constraints(constraints.clone()) {
            Ok(s) => s,
            Err(e) => {
                // Names and kinds were checked above, so this only restates one of those errors.
                let span = self.span(&[Seg::Field("constraints")]);
                self.error(
                    codes::CONSTRAINT,
                    span,
                    e.to_string(),
                    "constrain only varied continuous or integer parameters",
                );
                return None;
            }
        };
        if ok && space.is_constrained() && space.feasible_point().is_none() {
            let found =
                Infeasible { src: &self.src, tree: &self.tree, dims: &dims, fixed }.report(&constraints, &written);
            found.into_iter().for_each(|d| self.diags.push(d));
            ok = false;
        }
        if let Some(h) = header {
            let list = self.tree.get(&[Seg::Field("per_batch")]).cloned().unwrap_or_default();
            let mut names: Vec<String> = Vec::new();
            for (i, name) in h.per_batch.iter().enumerate() {
                let span = list.span_of(&[Seg::Index(i)]);
                if names.contains(name) {
                    self.error(
                        codes::PER_BATCH,
                        span,
                        format!("`{name}` is listed twice in `per_batch`"),
                        "remove one of the entries",
                    );
                    ok = false;
                } else if space.dim(name).is_none() {
                    let help = if fixed.contains_key(name) {
                        format!("`{name}` is fixed, so it is the same for every experiment already")
                    } else {
                        let varied: Vec<&str> = space.dims().iter().map(|d| d.name.as_str()).collect();
                        format!("`per_batch` lists varied parameters: {}", backticks(&varied))
                    };
                    self.error(codes::PER_BATCH, span, format!("`{name}` in `per_batch` is not varied"), help);
                    ok = false;
                } else {
                    names.push(name.clone());
                }
            }
            space = space.with_per_batch(&names).ok()?;
        }
        ok.then_some(space)
    }

    /// Checks one constraint and folds fixed parameters into its bounds.
    fn constraint(
        &mut self,
        space: &Space,
        fixed: &BTreeMap<String, f64>,
        c: &ConstraintFile,
        item: &Node,
    ) -> Option<LinearConstraint> {
        let mut ok = true;
        let bound = |f: &str| item.get(&[Seg::Field(f)]).map_or(item.span.clone(), |n| n.span.clone());
        if c.terms.is_empty() {
            self.error(
                codes::CONSTRAINT,
                bound("terms"),
                "the constraint has no terms",
                "list the parameters summed, with their coefficients: `terms: {\"volume_a\": 1, \"volume_b\": 1}`",
            );
            return None;
        }
        let (min, max) = match (c.min, c.max, c.equals) {
            (_, _, Some(_)) if c.min.is_some() || c.max.is_some() => {
                self.error(
                    codes::CONSTRAINT,
                    bound("equals"),
                    "the constraint gives `equals` together with `min` or `max`",
                    "give `equals` alone, or a `min` and a `max`",
                );
                return None;
            }
            (_, _, Some(e)) => (Some(e), Some(e)),
            (None, None, None) => {
                self.error(
                    codes::CONSTRAINT,
                    item.span.clone(),
                    "the constraint has no bound",
                    "give `max` (the sum is at most), `min` (at least), both, or `equals`",
                );
                return None;
            }
            (min, max, None) => (min, max),
        };
        for (field, v) in [("min", min), ("max", max)] {
            if v.is_some_and(|v| !v.is_finite()) {
                let field = if c.equals.is_some() { "equals" } else { field };
                self.error(
                    codes::CONSTRAINT,
                    bound(field),
                    format!("the constraint's `{field}` is not a finite number"),
                    "give the bound as an ordinary number, in the parameters' units",
                );
                ok = false;
            }
        }
        if let (Some(a), Some(b)) = (min, max)
            && a > b
        {
            self.error(
                codes::CONSTRAINT,
                bound("min"),
                format!("the constraint's `min` {} is above its `max` {}", trim_float(a), trim_float(b)),
                "swap `min` and `max`",
            );
            ok = false;
        }
        let terms_node = item.get(&[Seg::Field("terms")]).cloned().unwrap_or_default();
        let mut terms = Vec::new();
        let mut offset = 0.0;
        for (name, coefficient) in &c.terms {
            let span = terms_node.span_of(&[Seg::KeyOf(name)]);
            if !coefficient.is_finite() {
                self.error(
                    codes::CONSTRAINT,
                    terms_node.span_of(&[Seg::Key(name)]),
                    format!("the coefficient of `{name}` is not a finite number"),
                    "give each coefficient as an ordinary number",
                );
                ok = false;
            } else if let Some(v) = fixed.get(name) {
                offset += coefficient * v;
            } else {
                match space.dim(name) {
                    Some(d) if d.is_categorical() => {
                        self.error(codes::CONSTRAINT, span, format!("`{name}` is categorical, so it cannot be summed"), "constrain only continuous and integer parameters; to rule out combinations of levels, leave them out of the levels");
                        ok = false;
                    }
                    Some(_) => terms.push((name.clone(), *coefficient)),
                    None => {
                        let varied: Vec<&str> = space.dims().iter().map(|d| d.name.as_str()).collect();
                        let help = match suggest(name, &varied) {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!("a constraint sums varied or fixed parameters: {}", backticks(&varied)),
                        };
                        self.error(
                            codes::CONSTRAINT,
                            span,
                            format!("the constraint names `{name}`, which is neither varied nor fixed"),
                            help,
                        );
                        ok = false;
                    }
                }
            }
        }
        if ok && terms.is_empty() {
            self.error(
                codes::CONSTRAINT,
                bound("terms"),
                "the constraint sums only fixed parameters",
                "a constraint must involve at least one varied parameter",
            );
            ok = false;
        }
        ok.then(|| LinearConstraint { terms, min: min.map(|m| m - offset), max: max.map(|m| m - offset) })
    }

    /// Reads the stop rules; `None` if they had an error.
    fn stop(&mut self, objectives: usize) -> Option<StopRules> {
        let Some(node) = self.tree.get(&[Seg::Field("stop")]).cloned() else {
            return Some(StopRules { patience: DEFAULT_PATIENCE, ..StopRules::default() });
        };
        let file = match parse_section::<StopFile>(&self.src, node.span.clone(), "stop rules") {
            Ok(f) => f,
            Err(d) => {
                self.diags.push(d);
                return None;
            }
        };
        let span = |f: &str| node.get(&[Seg::Field(f)]).map_or(node.span.clone(), |n| n.span.clone());
        let mut ok = true;
        let max_time = match &file.max_time {
            None => None,
            Some(text) => match Quantity::parse(text) {
                Ok(q) if q.dimension == Dimension::Duration && q.value > 0.0 && q.value.is_finite() => Some(q.value),
                _ => {
                    self.error(
                        codes::STOP,
                        span("max_time"),
                        format!("`max_time` is \"{text}\", not a positive duration"),
                        "give a duration with a unit, such as \"90 min\" or \"8 h\"",
                    );
                    ok = false;
                    None
                }
            },
        };
        if let Some(t) = file.target {
            if !t.is_finite() {
                self.error(
                    codes::STOP,
                    span("target"),
                    "`target` is not a finite number",
                    "give the objective value to stop at, in the output's unit",
                );
                ok = false;
            } else if objectives > 1 {
                self.error(codes::STOP, span("target"), "`target` needs a single objective", "with several objectives there is no one value to reach; use `min_expected_improvement` or the budget");
                ok = false;
            }
        }
        if let Some(e) = file.min_expected_improvement
            && !(e > 0.0 && e < 1.0)
        {
            self.error(codes::STOP, span("min_expected_improvement"), format!("`min_expected_improvement` is {}, but it must be between 0 and 1", trim_float(e)), "it is a fraction of the range of results seen; 0.001 stops when no proposal expects to gain 0.1% of it");
            ok = false;
        }
        if file.patience == Some(0) {
            self.error(
                codes::STOP,
                span("patience"),
                "`patience` is 0",
                "give how many consecutive proposals must expect too little improvement; 3 is usual",
            );
            ok = false;
        }
        ok.then(|| StopRules {
            max_time,
            target: file.target,
            min_expected_improvement: file.min_expected_improvement,
            patience: file.patience.unwrap_or(DEFAULT_PATIENCE),
        })
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

    /// Reads `objective` or `objectives`; `None` if either had an error.
    fn objectives(&mut self, header: Option<&CampaignHeader>) -> Option<Vec<Objective>> {
        let one = self.tree.get(&[Seg::Field("objective")]).cloned();
        let many = self.tree.get(&[Seg::Field("objectives")]).cloned();
        let header_ok = header.is_some();
        match (one, many) {
            (Some(_), Some(_)) => {
                let span = self.tree.field_name_span(&[], "objectives");
                self.error(
                    codes::OBJECTIVES,
                    span,
                    "the campaign gives both `objective` and `objectives`",
                    "keep `objective: Maximize(\"...\")` for one output, or list every output in `objectives`",
                );
                None
            }
            (None, None) => {
                if header_ok {
                    let span = self.tree.span_of(&[]);
                    let span = span.start..(span.start + 8).min(span.end);
                    self.error(
                        codes::OBJECTIVES,
                        span,
                        "the campaign has no `objective`",
                        "add `objective: Maximize(\"output\")` (or `Minimize`), naming an output of the protocol",
                    );
                }
                None
            }
            (Some(node), None) => self.objective(&node).map(|o| vec![o]),
            (None, Some(node)) => {
                if node.items.is_empty() {
                    self.error(
                        codes::OBJECTIVES,
                        node.span.clone(),
                        "`objectives` lists no outputs",
                        "list the outputs to optimise: `objectives: [Maximize(\"yield\"), Minimize(\"impurity\")]`",
                    );
                    return None;
                }
                let mut out: Vec<Objective> = Vec::new();
                let mut ok = true;
                for item in &node.items {
                    match self.objective(item) {
                        Some(o) if out.iter().any(|p| p.output == o.output) => {
                            self.error(
                                codes::OBJECTIVES,
                                item.span.clone(),
                                format!("`{}` is listed twice in `objectives`", o.output),
                                "remove one of the entries",
                            );
                            ok = false;
                        }
                        Some(o) => out.push(o),
                        None => ok = false,
                    }
                }
                ok.then_some(out)
            }
        }
    }

    fn objective(&mut self, node: &Node) -> Option<Objective> {
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
                    AcquisitionFile::ProbabilityOfImprovement => Acquisition::ProbabilityOfImprovement,
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
