//! # protocols: what an experiment is, checked before anything moves
//!
//! A protocol is a RON file a technician writes: typed parameters with units and ranges, declared outputs, and
//! steps (an operation on an instrument kind or a named instrument, after other steps). This crate turns that
//! text into a [`Protocol`], a checked DAG on petgraph, or into [`Diagnostics`] that point at the file, line and
//! column of every problem and say how to fix it.
//!
//! The pipeline is parse, then validate: [`file`] mirrors the RON exactly (serde, `deny_unknown_fields`), and
//! [`validate`] builds the runtime type, so nothing downstream ever sees an unchecked protocol.
//! [`Protocol::bind`] then gives one experiment's steps with every quantity resolved, as inert [`Action`]s, and
//! [`print`] writes a checked protocol back as RON that loads to the same protocol.
//!
//! This crate is pure: it reads the text it is given and nothing else. It knows no instrument vendor, no lab, no
//! scheduler and no database. The lab-dependent checks ("is there a hotplate that can reach 150 degC?") live with
//! the lab file in `devices`; the diagnostic machinery here ([`Diagnostic`], [`ron_file`], [`source`]) is shared by
//! every technician-facing file format in the workspace.

pub mod diagnostic;
pub mod file;
pub mod kind;
pub mod op;
pub mod print;
pub mod protocol;
pub mod reagent;
pub mod ron_file;
pub mod source;
pub mod units;
pub mod validate;

use std::sync::Arc;

pub use diagnostic::{Diagnostic, Diagnostics, Severity, SourceFile};
pub use kind::InstrumentKind;
pub use op::{Action, Arg, Destination, InstrumentRef, Op, Operation};
pub use print::to_ron;
pub use protocol::{BindError, BindProblem, Bound, BoundStep, Output, Parameter, Protocol, Step, StepRules};
pub use reagent::{ReagentParameter, ReagentSlot};
pub use validate::load_protocol;

/// Loads a protocol from text, naming it `name` in diagnostics; warnings are dropped.
pub fn parse_protocol(name: &str, text: &str) -> Result<Protocol, Diagnostics> {
    load_protocol(SourceFile::new(name, text)).map(|(p, _)| p)
}

/// Convenience for callers holding an `Arc<SourceFile>` already.
pub fn protocol_from_source(source: &Arc<SourceFile>) -> Result<Protocol, Diagnostics> {
    load_protocol(Arc::clone(source)).map(|(p, _)| p)
}
