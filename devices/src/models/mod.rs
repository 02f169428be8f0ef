//! Model profiles: what each model of an instrument family implements and how it answers the rest.
//!
//! A driver family speaks one protocol, but models of the family differ: an MT-SICS balance lists the commands it
//! has for `I0` and answers `ES` to the others; an IKA RCT digital is silent on the NAMUR commands a RET
//! control-visc answers; a SCPI meter measures the functions its model has. A profile records one model, from its
//! manual (or from a driver verified on the hardware, as each says). Simulators answer as their profile's model
//! would; drivers ask only what a model has; `lab check` refuses a simulated instrument whose model has no profile.

pub mod namur;
pub mod scpi;
pub mod sics;
