//! `cargo fuzz run campaign_text`: see [`lab_fuzz::campaign_text`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lab_fuzz::campaign_text(data));
