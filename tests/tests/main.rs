//! The integration suites, compiled into one test binary.

mod campaign;
mod faults;
mod ron_files;
