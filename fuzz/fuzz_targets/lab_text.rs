//! `cargo fuzz run lab_text`: see [`lab_fuzz::lab_text`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::lab_text(data));
