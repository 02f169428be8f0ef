//! The integration suites, compiled into one test binary.

mod campaign;
mod ron_files;
