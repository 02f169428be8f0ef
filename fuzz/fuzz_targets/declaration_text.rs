//! `cargo fuzz run declaration_text`: see [`lab_fuzz::declaration_text`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::declaration_text(data));
