//! Regressions found by fuzzing and property testing (RELIABILITY.md), one test per bug, each named after what
//! must hold.

use protocols::{SourceFile, load_protocol};

/// A protocol whose parameter `v` has the default `default`, written as RON.
fn with_default(default: &str) -> String {
    format!(
        r#"Protocol(format: 1, name: "x", parameters: {{ "v": (unit: "uL", min: 1, max: 10, default: {default}) }},
        steps: [(id: "a", op: Transfer(to: Kind(SyringePump))), (id: "b", op: Dispense(volume: "$v"), after: ["a"])])"#
    )
}

/// RON reads `NaN` as a float. A `NaN` default compares false with both ends of the range, so the range check let
/// it through, and every experiment that relied on the default then failed to bind.
#[test]
fn a_nan_default_is_refused_when_the_protocol_loads() {
    let diags = load_protocol(SourceFile::new("t.protocol.ron", with_default("NaN"))).expect_err("must fail");
    let first = diags.iter().next().expect("a diagnostic");
    assert_eq!(first.code, "P0008");
    assert!(first.message.contains("default NaN uL"), "{}", first.message);
    assert!(load_protocol(SourceFile::new("t.protocol.ron", with_default("5.5"))).is_ok());
}

/// `ron` skips every `Pattern_White_Space` character between tokens, among them the vertical tab and the line
/// separator; the span index skipped only ASCII whitespace and stopped at them, found no `steps`, and the protocol
/// loaded with no steps at all, its broken steps never checked (found by `cargo fuzz run protocol_text`).
#[test]
fn unusual_whitespace_neither_hides_steps_nor_their_errors() {
    const GOOD: &str = r#"steps: [(id: "a", op: Transfer(to: Kind(SyringePump)))]"#;
    const BROKEN: &str = r#"steps: [(id: "a", op: Transfer(to: KiProtocol(ometer)))]"#;
    for space in ["\u{0B}", "\u{0C}", "\u{85}", "\u{200E}", "\u{200F}", "\u{2028}", "\u{2029}"] {
        let good = format!("Protocol({space}format: 1,{space}name: \"x\",{space}{GOOD})");
        let (p, _) = load_protocol(SourceFile::new("t", good)).unwrap_or_else(|d| panic!("{space:?}: {d}"));
        assert_eq!(p.steps().len(), 1, "{space:?}");
        let broken = format!("Protocol({space}format: 1,{space}name: \"x\",{space}{BROKEN})");
        let diags = load_protocol(SourceFile::new("t", broken)).expect_err("a broken step is refused");
        assert_eq!(diags.iter().next().map(|d| d.code), Some("L0002"), "{space:?}: {diags}");
    }
}
