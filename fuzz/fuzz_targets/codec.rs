//! `cargo fuzz run codec`: see [`lab_fuzz::codec`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::codec(data));
