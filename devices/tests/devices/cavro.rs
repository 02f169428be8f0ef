//! The Cavro XCalibur driver against literal DT exchanges, and against its simulator through a pseudo-terminal.

use crate::common;

use std::time::Duration;

use devices::capability::{Dispense, Instrument, Place};
use devices::clock::Clock;
use devices::drivers::cavro::{CavroError, XCalibur};
use devices::error::DeviceErrorKind;
use devices::lab::CavroConfig;
use devices::sim::{Event, Location};
use devices::transport::{Link, discard};
use protocols::units::Volume;
use tokio_test::io::Builder;

fn pump(mock: tokio_test::io::Mock) -> XCalibur<tokio_test::io::Mock> {
    let config = CavroConfig { address: 1, syringe: Volume(1000.0), top_speed: 400, reservoir: "A".into() };
    XCalibur::new(
        "pump_a",
        config,
        Link::new(mock, "pump_a", Clock::scaled(1e5), discard(), Duration::from_millis(200)),
    )
}

#[tokio::test]
async fn initialize_homes_polls_until_ready_and_sets_the_speed() {
    let mock = Builder::new()
        .write(b"/1ZR\r")
        .read(b"/0`\x03\r\n")
        .write(b"/1Q\r")
        .read(b"/0@\x03\r\n")
        .write(b"/1Q\r")
        .read(b"/0`\x03\r\n")
        .write(b"/1V400R\r")
        .read(b"/0`\x03\r\n")
        .build();
    pump(mock).initialize().await.unwrap();
}

#[tokio::test]
async fn identify_reports_the_firmware() {
    let mock = Builder::new().write(b"/1&\r").read(b"/0`XCalibur 1.21\x03\r\n").build();
    let id = pump(mock).identify().await.unwrap();
    assert_eq!(id.firmware.as_deref(), Some("XCalibur 1.21"));
}

#[tokio::test]
async fn an_out_of_range_operand_is_a_typed_error() {
    let mock = Builder::new().write(b"/1A4000R\r").read(b"/0c\x03\r\n").build();
    let mut link = Link::new(mock, "pump_a", Clock::manual(), discard(), Duration::from_millis(200));
    let answer = link.request(b"/1A4000R\r", &mut devices::drivers::cavro::DtDecoder).await.unwrap();
    assert!(answer.ready());
    assert_eq!(answer.error(), Some(CavroError::InvalidOperand));
}

#[tokio::test]
async fn a_refused_stroke_has_not_acted_but_a_failed_one_has() {
    let mock = Builder::new().write(b"/1IA750OA0R\r").read(b"/0c\x03\r\n").build();
    let err = pump(mock).dispense(Volume(250.0)).await.unwrap_err();
    assert!(
        matches!(&err.kind, DeviceErrorKind::Firmware { code: Some(3), received, .. } if received == b"/0c\x03\r\n"),
        "{err}"
    );
    assert!(!err.may_have_acted);

    let mock = Builder::new().write(b"/1IA750OA0R\r").read(b"/0`\x03\r\n").write(b"/1Q\r").read(b"/0i\x03\r\n").build();
    let err = pump(mock).dispense(Volume(250.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(9), .. }), "{err}");
    assert!(err.may_have_acted, "a plunger overload happens during the move");
}

#[tokio::test]
async fn a_large_volume_takes_several_strokes() {
    let mock = Builder::new()
        .write(b"/1IA3000OA0R\r")
        .read(b"/0`\x03\r\n")
        .write(b"/1Q\r")
        .read(b"/0`\x03\r\n")
        .write(b"/1IA1500OA0R\r")
        .read(b"/0`\x03\r\n")
        .write(b"/1Q\r")
        .read(b"/0`\x03\r\n")
        .build();
    let moved = pump(mock).dispense(Volume(1500.1)).await.unwrap();
    assert_eq!(moved, Volume(1500.0), "the volume commanded, in whole increments");
}

#[tokio::test]
async fn limits_are_checked_before_anything_is_sent() {
    let err = pump(Builder::new().build()).dispense(Volume(-5.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)));
    assert!(!err.may_have_acted);
}

#[tokio::test]
async fn a_garbled_answer_is_reported_with_its_bytes() {
    let mock = Builder::new().write(b"/1&\r").read(b"/9`\x03\r\n").build();
    let err = pump(mock).identify().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Garbled { received, .. } if received == b"/9`\x03\r\n"), "{err}");
    assert!(!err.may_have_acted, "identify only asks");
}

#[tokio::test]
async fn the_driver_dispenses_on_its_simulator_through_a_pseudo_terminal() {
    let lab = common::lab_with(&["pump_a"]);
    let (sims, clock) = common::start(&lab).await;
    let (sink, log) = common::collector();
    let mut pump = common::connect(&lab, &sims, "pump_a", &clock, sink);
    let id = pump.identify().await.unwrap();
    assert_eq!(id.model, "Cavro XCalibur");
    let before_init = pump.as_dispense().unwrap().dispense(Volume(100.0)).await.unwrap_err();
    assert!(matches!(before_init.kind, DeviceErrorKind::Firmware { code: Some(7), .. }), "{before_init}");
    pump.initialize().await.unwrap();
    let moved = pump.as_dispense().unwrap().dispense(Volume(250.0)).await.unwrap();
    assert_eq!(moved, Volume(250.0));
    pump.safe_state().await.unwrap();
    // Nothing stood at the dispense station, so the liquid went onto the deck.
    let spills: Vec<f64> = sims
        .bench()
        .ledger()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::Spilled { volume, reservoir, position } if reservoir == "A" && position == "dispense" => {
                Some(volume)
            }
            _ => None,
        })
        .collect();
    assert_eq!(spills.len(), 1);
    assert!((spills[0] - 250.0).abs() < 1e-9, "{spills:?}");
    assert_eq!(sims.bench().vessel(0).unwrap().location, Location::At(Place::Rack(0)));
    assert!(log.lock().unwrap().iter().any(|e| e.sent == b"/1IA750OA0R\r" && e.received == b"/0`\x03\r\n"));
    // The port can be closed and opened again while the simulator runs, as after a controller restart.
    drop(pump);
    let mut again = common::connect(&lab, &sims, "pump_a", &clock, devices::transport::discard());
    assert_eq!(again.identify().await.unwrap().model, "Cavro XCalibur");
    sims.stop().await;
}
