//! `cargo fuzz run protocol_text`: see [`lab_fuzz::protocol_text`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::protocol_text(data));
