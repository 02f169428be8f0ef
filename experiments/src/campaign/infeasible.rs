//! Telling a technician which constraints leave a campaign's space without a point, and why.
//!
//! [`Space::feasible_point`] decides whether any point is left; this module names the culprits: each constraint
//! that no point meets on its own (its sum cannot reach the bound within the ranges, or integer grids step over it),
//! and then the rest together if they still exclude every point. Each problem is one diagnostic, worded as a
//! sentence about the constraint as written, with fixed parameters in the sum.

use std::collections::BTreeMap;
use std::sync::Arc;

use protocols::source::{Node, Seg};
use protocols::units::trim_float;
use protocols::{Diagnostic, SourceFile};

use crate::file::ConstraintFile;
use crate::space::{Dim, Kind, LinearConstraint, Space};

use super::{backticks, codes};

/// What the report needs of the campaign being loaded: its text and index, its varied and its fixed parameters.
pub(super) struct Infeasible<'a> {
    pub src: &'a Arc<SourceFile>,
    pub tree: &'a Node,
    pub dims: &'a [Dim],
    pub fixed: &'a BTreeMap<String, f64>,
}

impl Infeasible<'_> {
    /// Reports constraints that leave no point of the space: each constraint that no point meets on its own, at the
    /// constraint; and the others together, at `constraints`, if no point meets them all.
    pub(super) fn report(
        &self,
        constraints: &[LinearConstraint],
        written: &[(ConstraintFile, Node)],
    ) -> Vec<Diagnostic> {
        let (dims, fixed) = (self.dims, self.fixed);
        let mut out = Vec::new();
        let mut possible: Vec<(LinearConstraint, &ConstraintFile, &Node)> = Vec::new();
        for (checked, (c, item)) in constraints.iter().zip(written) {
            let one = Space::new(dims.to_vec()).with_constraints(vec![checked.clone()]);
            if one.is_ok_and(|s| s.feasible_point().is_some()) {
                possible.push((checked.clone(), c, item));
                continue;
            }
            let (sum, bound) = describe(c, item);
            let (lo, hi) = sum_range(dims, fixed, c);
            let integers: Vec<&str> = c
                .terms
                .keys()
                .filter(|n| dims.iter().any(|d| &d.name == *n && matches!(d.kind, Kind::Integer { .. })))
                .map(String::as_str)
                .collect();
            // Whether the box reaches the bound, so that only the integers' grids miss it.
            let slack = 1e-9 * lo.abs().max(hi.abs()).max(1.0);
            let reaches = c.equals.or(c.min).is_none_or(|m| m <= hi + slack)
                && c.equals.or(c.max).is_none_or(|m| m >= lo - slack);
            let (lo, hi) = (trim_float(lo), trim_float(hi));
            let within = if c.terms.keys().any(|n| fixed.contains_key(n)) {
                "within the ranges of `vary` and the values of `fixed`"
            } else {
                "within the ranges of `vary`"
            };
            let (message, help) = if reaches && !integers.is_empty() {
                (
                    format!(
                        "the constraints leave no point of the space: `{sum}` must be {bound}, and no {} it so",
                        match integers.as_slice() {
                            [one] => format!("value of `{one}` on its grid makes"),
                            many => format!("values of {} on their grids make", backticks(many)),
                        }
                    ),
                    "an integer parameter takes only `min`, `min + step`, ...; change the bound, or the ranges or steps in `vary`".to_owned(),
                )
            } else {
                (
                    format!(
                        "the constraints leave no point of the space: `{sum}` must be {bound}, but {within} it runs from {lo} to {hi}"
                    ),
                    "widen the ranges in `vary`, or change this constraint's bound".to_owned(),
                )
            };
            out.push(Diagnostic::error(codes::CONSTRAINT, self.src, item.span.clone(), message).with_help(help));
        }
        let together = Space::new(dims.to_vec()).with_constraints(possible.iter().map(|(l, ..)| l.clone()).collect());
        if possible.len() > 1 && together.is_ok_and(|s| s.feasible_point().is_none()) {
            let span = self.tree.field_name_span(&[], "constraints");
            let all: Vec<String> =
                possible.iter().map(|(_, c, item)| describe(c, item)).map(|(s, b)| format!("`{s}` {b}")).collect();
            let d = Diagnostic::error(
                codes::CONSTRAINT,
                self.src,
                span,
                format!(
                    "the constraints leave no point of the space: no values within the ranges of `vary` meet these together, though each can be met alone: {}",
                    all.join("; ")
                ),
            )
            .with_help("loosen one of the constraints, or widen the ranges in `vary`");
            out.push(d);
        }
        out
    }
}

/// A constraint as a sentence's parts: the sum as written (`volume_a + 2 × volume_b`, its terms in the file's order
/// from the constraint's `item` in the index) and its bound (`at most 520`).
fn describe(c: &ConstraintFile, item: &Node) -> (String, String) {
    let mut order: Vec<&String> = item
        .get(&[Seg::Field("terms")])
        .map(|t| {
            t.entries.iter().filter_map(|(k, _)| c.terms.get_key_value(k.string.as_deref()?)).map(|(k, _)| k).collect()
        })
        .unwrap_or_default();
    order.extend(c.terms.keys().filter(|k| !order.contains(k)).collect::<Vec<_>>());
    let mut sum = String::new();
    for (name, coefficient) in order.into_iter().map(|k| (k, &c.terms[k])) {
        let sign = if *coefficient < 0.0 { "-" } else { "+" };
        let size = coefficient.abs();
        let term = if size == 1.0 { name.clone() } else { format!("{} × {name}", trim_float(size)) };
        sum = match (sum.is_empty(), sign) {
            (true, "+") => term,
            (true, _) => format!("-{term}"),
            (false, _) => format!("{sum} {sign} {term}"),
        };
    }
    let bound = match (c.equals, c.min, c.max) {
        (Some(e), ..) => format!("equal to {}", trim_float(e)),
        (None, Some(a), Some(b)) => format!("between {} and {}", trim_float(a), trim_float(b)),
        (None, Some(a), None) => format!("at least {}", trim_float(a)),
        (None, None, Some(b)) => format!("at most {}", trim_float(b)),
        (None, None, None) => "bounded".to_owned(),
    };
    (sum, bound)
}

/// The smallest and largest values a constraint's sum takes with its varied parameters within their ranges and its
/// fixed ones at their values.
fn sum_range(dims: &[Dim], fixed: &BTreeMap<String, f64>, c: &ConstraintFile) -> (f64, f64) {
    c.terms.iter().fold((0.0, 0.0), |(lo, hi), (name, a)| {
        match (dims.iter().find(|d| &d.name == name), fixed.get(name)) {
            (Some(d), _) => (lo + (a * d.min).min(a * d.max), hi + (a * d.min).max(a * d.max)),
            (None, Some(v)) => (lo + a * v, hi + a * v),
            (None, None) => (lo, hi),
        }
    })
}
