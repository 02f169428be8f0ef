//! The Ocean Optics Flame driver against literal binary exchanges, and against its simulator through a
//! pseudo-terminal.

use std::time::Duration;

use devices::capability::{Instrument, Measure};
use devices::clock::Clock;
use devices::drivers::flame::{ACK, Flame, MASKED, NAK, Spectrum};
use devices::error::DeviceErrorKind;
use devices::lab::FlameConfig;
use devices::sim::Event;
use devices::transport::{LineSettings, Link, discard};
use protocols::units::{Duration as LabDuration, Wavelength};
use tokio_test::io::Builder;

use crate::common;

const PIXELS: usize = 64;

fn config() -> FlameConfig {
    // Pixel p sees 500 + p nm.
    FlameConfig { integration: LabDuration(0.1), scans: 4, calibration: [500.0, 1.0, 0.0, 0.0], pixels: PIXELS }
}

fn flame(mock: tokio_test::io::Mock) -> Flame<tokio_test::io::Mock> {
    let link = Link::new(mock, "uvvis", Clock::scaled(1e5), discard(), Duration::from_millis(200));
    Flame::new("uvvis", config(), LineSettings::n81(9600), link)
}

/// A spectrum of four scans, each with `light` counts above a dark level of 1500 outside the masked pixels.
fn spectrum(light: u32) -> Vec<u8> {
    let counts = (0..PIXELS).map(|p| 4 * (1500 + if MASKED.contains(&p) { 0 } else { light })).collect();
    Spectrum { scans: 4, integration_ms: 100, baseline: 0, counts }.to_bytes()
}

fn initialized(builder: &mut Builder) -> &mut Builder {
    let reference = spectrum(30_000);
    builder
        .write(b"bB")
        .read(&[ACK])
        .write(&[b'I', 0, 100])
        .read(&[ACK])
        .write(&[b'A', 0, 4])
        .read(&[ACK])
        .write(b"S")
        .read(&reference[..5])
        .read(&reference[5..100])
        .read(&reference[100..])
}

#[tokio::test]
async fn identify_reads_the_version_word() {
    let id = flame(Builder::new().write(b"v").read(&[ACK, 0x03, 0xE8]).build()).identify().await.unwrap();
    assert_eq!(id.firmware.as_deref(), Some("1.00.0"));
}

#[tokio::test]
async fn absorbance_is_dark_corrected_against_the_reference_from_split_reads() {
    let sample = spectrum(3000);
    let mock = initialized(&mut Builder::new()).write(b"S").read(&sample[..100]).read(&sample[100..]).build();
    let mut f = flame(mock);
    f.initialize().await.unwrap();
    let a = f.absorbance(Wavelength(540.0)).await.unwrap();
    assert!((a - 1.0).abs() < 1e-9, "log10(30000 / 3000) = 1, got {a}");
}

/// A driver given the reference an earlier one took (its recorded reply) takes none when initialized, nor when
/// initialized again, so a vessel standing in the holder is never taken for the reference; a reply that is not a
/// spectrum of this lab's settings is refused.
#[tokio::test]
async fn a_restored_reference_is_used_and_initializing_takes_none_through_the_holder() {
    let reference = spectrum(30_000);
    let sample = spectrum(3000);
    let settings = |b: &mut Builder| {
        b.write(b"bB").read(&[ACK]).write(&[b'I', 0, 100]).read(&[ACK]).write(&[b'A', 0, 4]).read(&[ACK]);
    };
    let mut builder = Builder::new();
    settings(&mut builder);
    settings(&mut builder);
    let mut f = flame(builder.write(b"S").read(&sample).build());
    f.restore_reference(&reference).unwrap();
    f.initialize().await.unwrap();
    f.initialize().await.unwrap();
    let a = f.absorbance(Wavelength(540.0)).await.unwrap();
    assert!((a - 1.0).abs() < 1e-9, "log10(30000 / 3000) = 1, got {a}");
    let mut g = flame(Builder::new().build());
    let two_scans = Spectrum { scans: 2, integration_ms: 100, baseline: 0, counts: vec![0; PIXELS] }.to_bytes();
    assert!(g.restore_reference(&two_scans).unwrap_err().contains("2 scans"));
    let longer = Spectrum { scans: 4, integration_ms: 200, baseline: 0, counts: vec![0; PIXELS] }.to_bytes();
    assert!(g.restore_reference(&longer).unwrap_err().contains("200 ms"));
    assert!(g.restore_reference(&reference[..50]).unwrap_err().contains("not a whole spectrum"));
    assert!(g.restore_reference(&[ACK]).is_err());
}

#[tokio::test]
async fn a_spectrum_with_a_bad_end_marker_is_garbled() {
    let mut bad = spectrum(30_000);
    let n = bad.len();
    bad[n - 1] = 0xFE;
    let mock = Builder::new()
        .write(b"bB")
        .read(&[ACK])
        .write(&[b'I', 0, 100])
        .read(&[ACK])
        .write(&[b'A', 0, 4])
        .read(&[ACK])
        .write(b"S")
        .read(&bad)
        .build();
    let err = flame(mock).initialize().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Garbled { reason, .. } if reason.contains("0xFFFD")), "{err}");
    assert!(!err.may_have_acted);
}

#[tokio::test]
async fn a_refused_setting_is_a_firmware_error() {
    let mock = Builder::new().write(b"bB").read(&[ACK]).write(&[b'I', 0, 100]).read(&[NAK]).build();
    let err = flame(mock).initialize().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { .. }), "{err}");
}

#[tokio::test]
async fn darkness_is_an_error_not_infinity() {
    let sample = spectrum(0);
    let mock = initialized(&mut Builder::new()).write(b"S").read(&sample).build();
    let mut f = flame(mock);
    f.initialize().await.unwrap();
    let err = f.absorbance(Wavelength(540.0)).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Physical(m) if m.contains("no light")), "{err}");
}

#[tokio::test]
async fn limits_and_readiness_are_checked_before_anything_is_sent() {
    let mut f = flame(Builder::new().build());
    let err = f.absorbance(Wavelength(700.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)), "{err}");
    let err = f.absorbance(Wavelength(540.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::NotReady(_)), "{err}");
}

#[tokio::test]
async fn the_driver_reads_its_simulator_through_a_pseudo_terminal() {
    let lab = common::lab_with(&["uvvis"]);
    let (sims, clock) = common::start(&lab).await;
    let mut uvvis = common::connect(&lab, &sims, "uvvis", &clock, discard());
    assert_eq!(uvvis.identify().await.unwrap().firmware.as_deref(), Some("1.00.0"));
    uvvis.initialize().await.unwrap();
    let a = uvvis.as_measure().unwrap().absorbance(Wavelength(520.0)).await.unwrap();
    assert!(a.abs() < 0.01, "the empty holder reads as its own reference, got {a}");
    let err = uvvis.as_measure().unwrap().absorbance(Wavelength(200.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)));
    let measured =
        sims.bench().ledger().iter().filter(|e| matches!(e.event, Event::Measured { vessel: None, .. })).count();
    assert_eq!(measured, 2, "the reference and the reading");
    sims.stop().await;
}
