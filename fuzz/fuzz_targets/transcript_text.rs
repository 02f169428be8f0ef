//! `cargo fuzz run transcript_text`: see [`lab_fuzz::transcript_text`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::transcript_text(data));
