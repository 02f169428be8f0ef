//! What a campaign optimises: one protocol output, to be made as large or as small as possible.
//!
//! The objective lives in its own module because both the campaign file and the proposers need it: the campaign
//! names the output, and a proposer needs the direction to know which results are better. Proposers that model
//! the objective minimise internally, so [`Direction::internal`] is the one place where the sign is flipped.

use serde::{Deserialize, Serialize};

/// Whether larger or smaller values of the objective are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    /// Larger is better.
    Maximize,
    /// Smaller is better.
    Minimize,
}

impl Direction {
    /// Converts an objective value to the internal convention, where smaller is always better.
    pub fn internal(self, value: f64) -> f64 {
        match self {
            Direction::Maximize => -value,
            Direction::Minimize => value,
        }
    }

    /// Converts an internal value (smaller is better) back to the objective's own sign.
    pub fn external(self, value: f64) -> f64 {
        // Negation is its own inverse.
        self.internal(value)
    }

    /// Whether `a` is a better objective value than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        self.internal(a) < self.internal(b)
    }

    /// The verb, as written in campaign files.
    pub fn verb(self) -> &'static str {
        match self {
            Direction::Maximize => "Maximize",
            Direction::Minimize => "Minimize",
        }
    }
}

/// The protocol output a campaign optimises, and in which direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Objective {
    /// The name of a declared protocol output, such as `"absorbance"`.
    pub output: String,
    /// Whether larger or smaller is better.
    pub direction: Direction,
}

impl Objective {
    /// An objective to maximise `output`.
    pub fn maximize(output: impl Into<String>) -> Self {
        Objective { output: output.into(), direction: Direction::Maximize }
    }

    /// An objective to minimise `output`.
    pub fn minimize(output: impl Into<String>) -> Self {
        Objective { output: output.into(), direction: Direction::Minimize }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internal_convention_is_minimisation() {
        assert_eq!(Direction::Maximize.internal(3.0), -3.0);
        assert_eq!(Direction::Maximize.external(Direction::Maximize.internal(3.0)), 3.0);
        assert_eq!(Direction::Minimize.internal(3.0), 3.0);
        assert!(Direction::Maximize.better(2.0, 1.0));
        assert!(Direction::Minimize.better(1.0, 2.0));
    }
}
