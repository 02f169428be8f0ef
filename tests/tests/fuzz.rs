//! The fuzz targets of `fuzz/` as ordinary tests, so `cargo test` covers them without cargo fuzz or a nightly
//! compiler: each target runs on its seeds (the repository's RON files, `fuzz/seeds/`) and on a few hundred
//! pseudo-random inputs made from them by the mutations a fuzzer starts with. A target panics on any broken
//! invariant, so each test passes only if none did.
//!
//! The inputs are the same on every run; `LAB_FUZZ_INPUTS` sets how many mutations each target gets (RELIABILITY.md).

#[path = "../../fuzz/src/lib.rs"]
mod lab_fuzz;

use std::path::Path;

use lab_fuzz::{CODEC_HEADER, CODECS, RON_TOKENS, Rng, mutate};

/// How many mutated inputs each target runs on.
fn inputs() -> usize {
    std::env::var("LAB_FUZZ_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

/// The files of `fuzz/seeds/<target>/`.
fn seed_files(target: &str) -> Vec<Vec<u8>> {
    let dir = tests::repo_root().join("fuzz/seeds").join(target);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read(p).expect("a readable seed")).collect()
}

/// The repository's RON files whose names end with `suffix`.
fn ron_seeds(suffix: &str) -> Vec<Vec<u8>> {
    let seeds: Vec<Vec<u8>> = tests::ron_files()
        .iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .map(|p| std::fs::read(p).expect("a readable RON file"))
        .collect();
    assert!(!seeds.is_empty(), "no {suffix} file in the repository");
    seeds
}

/// Runs `target` on every seed, then on `inputs()` mutations: each of a random seed, or of an earlier mutation (so
/// some inputs are several mutations deep).
fn run(target: fn(&[u8]), seeds: &[Vec<u8>], tokens: &[&str], salt: u64) {
    for s in seeds {
        target(s);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ salt);
    let mut previous = seeds[0].clone();
    for _ in 0..inputs() {
        let base = if rng.below(3) == 0 { previous.clone() } else { seeds[rng.below(seeds.len())].clone() };
        let input = mutate(&base, &mut rng, tokens);
        target(&input);
        previous = input;
    }
}

#[test]
fn the_protocol_loader_survives_mutated_protocols() {
    run(lab_fuzz::protocol_text, &ron_seeds(".protocol.ron"), RON_TOKENS, 1);
}

#[test]
fn the_lab_loader_survives_mutated_labs() {
    run(lab_fuzz::lab_text, &ron_seeds(".lab.ron"), RON_TOKENS, 2);
}

#[test]
fn the_campaign_loader_survives_mutated_campaigns() {
    run(lab_fuzz::campaign_text, &ron_seeds(".campaign.ron"), RON_TOKENS, 3);
}

#[test]
fn the_declaration_loader_survives_mutated_declarations() {
    run(lab_fuzz::declaration_text, &ron_seeds(".instrument.ron"), RON_TOKENS, 8);
}

#[test]
fn the_map_loader_survives_mutated_maps() {
    run(lab_fuzz::map_text, &ron_seeds(".modbus.ron"), RON_TOKENS, 9);
}

#[test]
fn the_transcript_parser_survives_mutated_transcripts() {
    run(lab_fuzz::transcript_text, &seed_files("transcript_text"), RON_TOKENS, 4);
}

#[test]
fn every_reply_decoder_survives_mutated_and_random_replies() {
    let seeds = seed_files("codec");
    let decoders: std::collections::BTreeSet<u8> = seeds.iter().map(|s| s[0] % CODECS).collect();
    assert_eq!(decoders.len(), usize::from(CODECS), "a seed for every decoder and round trip");
    run(lab_fuzz::codec, &seeds, &[], 5);
    // Purely random input too, with each decoder in turn and every chunking.
    let mut rng = Rng(6);
    for i in 0..inputs() * 2 {
        let len = CODEC_HEADER + rng.below(400);
        let mut input: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        input[0] = (i % usize::from(CODECS)) as u8;
        lab_fuzz::codec(&input);
    }
}

#[test]
fn the_reply_parsers_survive_mutated_replies() {
    run(lab_fuzz::reply_parsers, &seed_files("reply_parsers"), &[" ", ":", ",", "\"", "e", "-", "."], 7);
}

#[test]
fn chunkings_cover_the_input_exactly() {
    for seed in [0, 1, 7, 255] {
        for len in [0, 1, 2, 97, 1000] {
            let chunks = lab_fuzz::chunking(seed, len);
            assert_eq!(chunks.iter().sum::<usize>(), len);
            assert!(chunks.iter().all(|&c| c > 0 || len == 0));
        }
    }
}

/// `fuzz/ron.dict` is libFuzzer's copy of [`RON_TOKENS`].
#[test]
fn the_fuzzer_dictionary_matches_the_token_list() {
    let path = tests::repo_root().join("fuzz/ron.dict");
    let text = std::fs::read_to_string(Path::new(&path)).expect("fuzz/ron.dict exists");
    let entries: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('"'))
        .map(|l| l[1..l.len() - 1].replace("\\\"", "\"").replace("\\\\", "\\"))
        .collect();
    assert_eq!(entries, RON_TOKENS, "regenerate fuzz/ron.dict from lab_fuzz::RON_TOKENS");
}
