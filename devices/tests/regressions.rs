//! Regressions found by fuzzing and by the fuzz targets' oracles (RELIABILITY.md), one test per bug, each named
//! after what must hold.

use bytes::BytesMut;
use devices::drivers::{flame, mettler};
use protocols::SourceFile;
use tokio_util::codec::Decoder;

/// The lab file did not bound a spectrometer's `pixels`: a count near `usize::MAX` overflowed the size of the
/// spectrum the Flame decoder waits for (a panic with overflow checks, a bad slice without), and the simulator
/// would have built a spectrum of that many pixels.
#[test]
fn a_spectrometer_has_a_bounded_number_of_pixels() {
    let lab = include_str!("../labs/sim.lab.ron");
    for (pixels, ok) in [("0", false), ("1", true), ("2048", true), ("16384", true), ("16385", false)] {
        let text = lab.replace("scans: 4,", &format!("scans: 4, pixels: {pixels},"));
        assert_ne!(text, lab, "the lab file has a Flame with `scans: 4`");
        let result = devices::load_lab(SourceFile::new("sim.lab.ron", text));
        assert_eq!(result.is_ok(), ok, "pixels: {pixels}: {:?}", result.err().map(|d| d.to_string()));
    }
    let text = lab.replace("scans: 4,", "scans: 4, pixels: 18446744073709551615,");
    let diags = devices::load_lab(SourceFile::new("sim.lab.ron", text)).expect_err("refused");
    assert!(diags.to_string().contains("a spectrometer has 1 to 16384"), "{diags}");
}

/// Found by `cargo fuzz run codec`: the decoder refuses a pixel count whose spectrum size overflows, rather than
/// panicking, whoever built it.
#[test]
fn a_flame_decoder_for_too_many_pixels_refuses_instead_of_overflowing() {
    let mut spectrum = vec![flame::STX];
    for w in [0xFFFF_u16, 1, 1, 100, 0, 0, 0] {
        spectrum.extend_from_slice(&w.to_be_bytes());
    }
    for pixels in [usize::MAX, usize::MAX / 2, usize::MAX / 4 + 1] {
        let mut d = flame::FlameDecoder { expect: flame::Expect::Spectrum, pixels };
        let result = d.decode(&mut BytesMut::from(&spectrum[..]));
        assert!(result.is_err(), "{pixels} pixels: {result:?}");
    }
}

/// A weight is finite in grams, not only in the unit the balance sent: `1e308 kg` overflows to infinity.
#[test]
fn a_weight_too_large_for_grams_is_refused() {
    let p = |v: &str, u: &str| vec![v.to_owned(), u.to_owned()];
    assert_eq!(mettler::grams(&p("1e308", "kg")), None);
    assert_eq!(mettler::grams(&p("-1e308", "kg")), None);
    assert_eq!(mettler::grams(&p("1e308", "mg")), Some(1e305));
}

/// Found by `cargo fuzz run lab_text`: a raw identifier (`r#0`) where the deck wanted a number made the span index
/// lose the `deck` section, and the lab was refused with no diagnostic at all (`lab check` printed nothing and
/// exited 0). The index now reads raw identifiers as `ron` does, and a refusal always says why.
#[test]
fn a_raw_identifier_in_the_deck_is_refused_with_a_reason() {
    let lab = include_str!("../labs/sim.lab.ron");
    let text = lab.replacen("(x: 250, y: 30, z: 10)", "(x: r#0, y: 30, z: 10)", 1);
    assert_ne!(text, lab, "the demo lab has a position at x 250");
    let diags = devices::load_lab(SourceFile::new("sim.lab.ron", text)).expect_err("refused");
    assert!(diags.has_errors(), "a refusal says why: {diags}");
}
