//! `cargo fuzz run map_text`: see [`lab_fuzz::map_text`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::map_text(data));
