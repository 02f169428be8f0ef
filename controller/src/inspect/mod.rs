//! Reading the record for people: `lab status`, `lab report` and `lab replay`.
//!
//! Everything here opens `lab.db` read-only (WAL readers never block the controller that writes it), so each works
//! from another terminal while a campaign runs, on a finished campaign, and on a copy of a record; none of it writes.

pub mod replay;
pub mod report;
pub mod status;
