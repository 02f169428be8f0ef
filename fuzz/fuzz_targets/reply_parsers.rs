//! `cargo fuzz run reply_parsers`: see [`lab_fuzz::reply_parsers`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::reply_parsers(data));
