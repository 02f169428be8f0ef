//! When a campaign should stop before its budget is spent: out of time, target reached, or nothing left to gain.
//!
//! A campaign always stops at its budget (the controller counts experiments). [`StopRules`] add three earlier
//! reasons a scientist may ask for: a lab-time limit (the controller owns the clock, so it asks
//! [`StopRules::check_time`]), a target value of the objective (the proposer sees every result), and "no expected
//! improvement left": the model-based proposals of the last `patience` asks all expected to improve on the best
//! result by less than a fraction of the range of results seen. The proposer tracks the last two and answers
//! [`crate::Proposer::should_stop`], so the controller consults one method after each ask. The same method says
//! when a proposer has nothing to propose: every point of a finite space tried, or a space whose constraints leave
//! no point at all.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Objective;

/// The default number of consecutive low-improvement proposals before "no expected improvement left".
pub const DEFAULT_PATIENCE: usize = 3;

/// Optional reasons to stop before the budget is spent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StopRules {
    /// The most lab time the campaign may take, in seconds.
    pub max_time: Option<f64>,
    /// Stop once a result reaches this value of the (first) objective, in its direction.
    pub target: Option<f64>,
    /// Stop once the expected improvement of `patience` consecutive model-based proposals is below this fraction
    /// of the range of results seen so far.
    pub min_expected_improvement: Option<f64>,
    /// How many consecutive low-improvement proposals it takes; at least 1.
    pub patience: usize,
}

/// Why a campaign stopped, or should.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StopReason {
    /// Every experiment of the budget has been run.
    Budget {
        /// The budget.
        experiments: usize,
    },
    /// The lab-time limit has passed.
    Time {
        /// Lab seconds elapsed.
        elapsed: f64,
        /// The limit, in lab seconds.
        limit: f64,
    },
    /// A result reached the target.
    Target {
        /// The objective's output.
        output: String,
        /// The result that reached it.
        value: f64,
        /// The target.
        target: f64,
    },
    /// The model expects no worthwhile improvement anywhere.
    NoImprovementLeft {
        /// The last proposal's expected improvement, as a fraction of the range of results.
        expected: f64,
        /// The threshold, as a fraction of the range of results.
        threshold: f64,
        /// How many consecutive proposals were below it.
        proposals: usize,
    },
    /// The space has no untried point left.
    Exhausted,
    /// The space's constraints leave no point at all. A checked campaign never has such a space (its loader
    /// rejects it), but a space built in code may, and a proposer then says so instead of proposing nothing
    /// without a reason.
    Infeasible,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Budget { experiments } => write!(f, "the budget of {experiments} experiments is spent"),
            StopReason::Time { elapsed, limit } => {
                write!(f, "the time limit of {} s has passed ({} s elapsed)", limit.round(), elapsed.round())
            }
            StopReason::Target { output, value, target } => {
                write!(f, "`{output}` reached {value}, at or beyond the target {target}")
            }
            StopReason::NoImprovementLeft { expected, threshold, proposals } => write!(
                f,
                "the last {proposals} proposals expected to improve by at most {:.3}% of the range of results \
                 (threshold {:.3}%)",
                100.0 * expected,
                100.0 * threshold
            ),
            StopReason::Exhausted => write!(f, "every point of the space has been tried"),
            StopReason::Infeasible => write!(f, "the constraints leave no point of the space"),
        }
    }
}

impl StopRules {
    /// The time rule: `Some` once `elapsed` lab seconds reach the limit.
    pub fn check_time(&self, elapsed: f64) -> Option<StopReason> {
        let limit = self.max_time?;
        (elapsed >= limit).then_some(StopReason::Time { elapsed, limit })
    }

    /// Whether a result `value` of `objective` reaches the target.
    pub fn reaches_target(&self, objective: &Objective, value: f64) -> bool {
        self.target.is_some_and(|t| value.is_finite() && !objective.direction.better(t, value))
    }
}

/// What a proposer remembers to answer [`crate::Proposer::should_stop`].
#[derive(Debug, Clone, Default)]
pub(crate) struct StopTracker {
    rules: StopRules,
    objective: Option<Objective>,
    reached: Option<StopReason>,
    low: usize,
    last: Option<f64>,
    exhausted: bool,
    infeasible: bool,
}

impl StopTracker {
    pub fn new(rules: StopRules, objective: Option<Objective>) -> Self {
        StopTracker { rules, objective, ..StopTracker::default() }
    }

    /// Notes a successful result of the first objective.
    pub fn told(&mut self, value: f64) {
        if self.reached.is_none()
            && let Some(o) = &self.objective
            && self.rules.reaches_target(o, value)
        {
            self.reached = Some(StopReason::Target {
                output: o.output.clone(),
                value,
                target: self.rules.target.unwrap_or(value),
            });
        }
    }

    /// Notes a model-based proposal's expected improvement, as a fraction of the range of results.
    pub fn proposed(&mut self, relative_improvement: f64) {
        let Some(threshold) = self.rules.min_expected_improvement else { return };
        self.last = Some(relative_improvement);
        if relative_improvement < threshold { self.low += 1 } else { self.low = 0 }
    }

    /// Notes that an ask found no untried point.
    pub fn exhausted(&mut self) {
        self.exhausted = true;
    }

    /// Notes that the space has no point at all, so no ask can ever propose one.
    pub fn infeasible(&mut self) {
        self.infeasible = true;
    }

    /// Whether the space has no point at all: an ask then returns at once, since every repair it tried would fail.
    pub fn no_point(&self) -> bool {
        self.infeasible
    }

    pub fn should_stop(&self) -> Option<StopReason> {
        if let Some(r) = &self.reached {
            return Some(r.clone());
        }
        if self.infeasible {
            return Some(StopReason::Infeasible);
        }
        if self.exhausted {
            return Some(StopReason::Exhausted);
        }
        let threshold = self.rules.min_expected_improvement?;
        let patience = self.rules.patience.max(1);
        (self.low >= patience).then(|| StopReason::NoImprovementLeft {
            expected: self.last.unwrap_or(0.0),
            threshold,
            proposals: self.low,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_fires_only_when_it_should() {
        let rules =
            StopRules { max_time: Some(3600.0), target: Some(0.9), min_expected_improvement: Some(0.01), patience: 2 };
        assert_eq!(rules.check_time(10.0), None);
        assert!(matches!(rules.check_time(3600.0), Some(StopReason::Time { .. })));
        let mut t = StopTracker::new(rules, Some(Objective::maximize("yield")));
        t.told(0.5);
        assert_eq!(t.should_stop(), None);
        t.proposed(0.001);
        assert_eq!(t.should_stop(), None);
        t.proposed(0.5);
        t.proposed(0.001);
        assert_eq!(t.should_stop(), None, "the streak restarted");
        t.proposed(0.002);
        assert!(matches!(t.should_stop(), Some(StopReason::NoImprovementLeft { proposals: 2, .. })));
        t.told(0.95);
        let reason = t.should_stop().unwrap();
        assert_eq!(reason.to_string(), "`yield` reached 0.95, at or beyond the target 0.9");
    }

    #[test]
    fn a_minimised_target_is_reached_from_above() {
        let rules = StopRules { target: Some(2.0), ..StopRules::default() };
        assert!(rules.reaches_target(&Objective::minimize("impurity"), 1.5));
        assert!(!rules.reaches_target(&Objective::minimize("impurity"), 2.5));
        assert!(!rules.reaches_target(&Objective::minimize("impurity"), f64::NAN));
        assert_eq!(StopTracker::default().should_stop(), None);
    }
}
