//! Reagents in protocols: a dispense may name the reagent it adds, literally (`Dispense(reagent: "A", ...)`) or
//! through a reagent parameter (`Dispense(reagent: "$catalyst", ...)`), which a campaign sets per experiment.
//!
//! A reagent parameter is declared in the protocol's `reagents` section with what it may be: every reagent of a role
//! the lab declares (`(role: "catalyst")`), or a list of reagent names (`(among: ["C1", "C2"])`). The protocol so
//! stays independent of one bench: which bottles hold which reagent, and which pump reaches them, is the lab's
//! business, checked by `lab check` against every level a campaign allows.

use serde::Deserialize;

/// Diagnostic code: a reagent parameter is declared wrong, or a dispense's reagent refers to one that is not
/// declared.
pub const CODE: &str = "P0016";

/// What a reagent parameter may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReagentSlot {
    /// Any reagent the lab declares with this role.
    Role(String),
    /// One of these reagents.
    List(Vec<String>),
}

impl std::fmt::Display for ReagentSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReagentSlot::Role(r) => write!(f, "any reagent with role `{r}`"),
            ReagentSlot::List(l) => {
                write!(f, "one of {}", l.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
            }
        }
    }
}

/// A reagent parameter: which reagent a dispense adds, set per experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ReagentParameter {
    /// The name, referenced as `$name` in a dispense's `reagent`.
    pub name: String,
    /// What it may be.
    pub slot: ReagentSlot,
    /// The reagent used when a campaign does not set it.
    pub default: Option<String>,
    /// For people.
    pub description: String,
}

/// A reagent parameter as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename = "Reagent", deny_unknown_fields)]
pub struct ReagentParameterFile {
    /// Every reagent of this role.
    #[serde(default)]
    pub role: Option<String>,
    /// One of these reagents.
    #[serde(default)]
    pub among: Option<Vec<String>>,
    /// The reagent used when a campaign does not set it.
    #[serde(default)]
    pub default: Option<String>,
    /// For people.
    #[serde(default)]
    pub description: String,
}

/// A dispense's reagent: a name, or a reagent parameter.
pub type ReagentArg = crate::op::Arg<String>;
