//! The integration suites, compiled into one test binary.

mod architecture;
mod campaign;
mod declared;
mod faults;
mod fuzz;
mod idle;
mod lab_time;
mod plan_accuracy;
mod reagents;
mod ron_files;
mod soak;
mod tamper;
mod timeouts;
