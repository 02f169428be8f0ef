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
    let config = CavroConfig {
        address: 1,
        syringe: Volume(1000.0),
        top_speed: 400,
        reservoir: devices::lab::Bottle { reagent: "A".into(), volume: None, dead: protocols::units::Volume(0.0) },
        protocol: devices::lab::CavroProtocol::Dt,
        fed: false,
    };
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
    // Each stroke turns the valve back the other way at its end, so the second ends with it to the input.
    let mock = Builder::new()
        .write(b"/1IA3000OA0R\r")
        .read(b"/0`\x03\r\n")
        .write(b"/1Q\r")
        .read(b"/0`\x03\r\n")
        .write(b"/1IA1500OA0IR\r")
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

fn oem_pump(mock: tokio_test::io::Mock) -> XCalibur<tokio_test::io::Mock> {
    let config = CavroConfig {
        address: 1,
        syringe: Volume(1000.0),
        top_speed: 400,
        reservoir: devices::lab::Bottle { reagent: "A".into(), volume: None, dead: protocols::units::Volume(0.0) },
        protocol: devices::lab::CavroProtocol::Oem,
        fed: false,
    };
    XCalibur::new(
        "pump_a",
        config,
        Link::new(mock, "pump_a", Clock::scaled(1e5), discard(), Duration::from_millis(200)),
    )
}

/// An OEM answer: STX, `0`, the status byte, data, ETX, XOR.
fn oem_answer(status: u8, data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x02, b'0', status];
    v.extend_from_slice(data);
    v.push(0x03);
    v.push(devices::drivers::cavro::xor(&v));
    v
}

#[tokio::test]
async fn oem_initialization_uses_the_notes_frames_and_counts_its_sequence() {
    // `ZR` with sequence 1 is 02 31 31 5A 52 03 09; `Q` with sequence 2 is 02 31 32 51 03 53 (notes, 3.6).
    let mock = Builder::new()
        .write(&[0x02, 0x31, 0x31, 0x5A, 0x52, 0x03, 0x09])
        .read(&[0x02, 0x30, 0x60, 0x03, 0x51])
        .write(&[0x02, 0x31, 0x32, 0x51, 0x03, 0x53])
        .read(&[0x02, 0x30, 0x40, 0x03, 0x71])
        .write(&devices::drivers::cavro::oem_frame(b'1', 3, false, b"Q"))
        .read(&[0x02, 0x30, 0x60, 0x03, 0x51])
        .write(&devices::drivers::cavro::oem_frame(b'1', 4, false, b"V400R"))
        .read(&[0x02, 0x30, 0x60, 0x03, 0x51])
        .build();
    oem_pump(mock).initialize().await.unwrap();
}

#[tokio::test]
async fn an_unanswered_oem_frame_is_repeated_with_the_repeat_bit() {
    // No answer to the first `ZR` within 100 ms: the same frame again with REP set (seq byte 0x39).
    let mock = Builder::new()
        .write(&[0x02, 0x31, 0x31, 0x5A, 0x52, 0x03, 0x09])
        .write(&[0x02, 0x31, 0x39, 0x5A, 0x52, 0x03, 0x01])
        .read(&[0x02, 0x30, 0x60, 0x03, 0x51])
        .write(&devices::drivers::cavro::oem_frame(b'1', 2, false, b"Q"))
        .read(&[0x02, 0x30, 0x60, 0x03, 0x51])
        .write(&devices::drivers::cavro::oem_frame(b'1', 3, false, b"V400R"))
        .read(&[0x02, 0x30, 0x60, 0x03, 0x51])
        .build();
    oem_pump(mock).initialize().await.unwrap();
}

#[tokio::test]
async fn a_bad_oem_checksum_is_asked_again_and_reported_with_its_bytes_if_it_persists() {
    let id = devices::drivers::cavro::oem_frame(b'1', 1, false, b"&");
    let again = devices::drivers::cavro::oem_frame(b'1', 1, true, b"&");
    let mut bad = oem_answer(0x60, b"XCalibur 1.21");
    *bad.last_mut().unwrap() ^= 0x01;
    let good = oem_answer(0x60, b"XCalibur 1.21");
    let id_ok = oem_pump(Builder::new().write(&id).read(&bad).write(&again).read(&good).build()).identify().await;
    assert_eq!(id_ok.unwrap().firmware.as_deref(), Some("XCalibur 1.21"));
    let mut mock = Builder::new();
    mock.write(&id).read(&bad);
    for _ in 1..devices::drivers::cavro::OEM_ATTEMPTS {
        mock.write(&again).read(&bad);
    }
    let err = oem_pump(mock.build()).identify().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Checksum { received, .. } if *received == bad), "{err}");
}

#[tokio::test]
async fn a_busy_pump_is_a_busy_error_that_has_not_acted() {
    let mock = Builder::new().write(b"/1IA750OA0R\r").read(b"/0o\x03\r\n").build();
    let err = pump(mock).dispense(Volume(250.0)).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Busy { received, .. } if received == b"/0o\x03\r\n"), "{err}");
    assert!(!err.may_have_acted);
}

#[tokio::test]
async fn identify_refuses_a_pump_of_another_family() {
    let mock = Builder::new().write(b"/1&\r").read(b"/0`C3000 V2.0\x03\r\n").build();
    let err = pump(mock).identify().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
}

#[tokio::test]
async fn the_oem_driver_dispenses_on_its_simulator() {
    let lab = common::clean_lab_with(&["gantry", "pump_1"]);
    let (sims, clock) = common::start(&lab).await;
    let (sink, log) = common::collector();
    let mut bench = common::ready(&lab, &sims, &clock, sink).await;
    let at = Place::Position("station_1".into());
    devices::execute(
        bench.get_mut("gantry").unwrap().as_mut(),
        &devices::Task::Transfer { from: Place::Rack(2), to: at },
    )
    .await
    .unwrap();
    let moved = bench.get_mut("pump_1").unwrap().as_dispense().unwrap().dispense(Volume(1500.0)).await.unwrap();
    assert_eq!(moved, Volume(1500.0));
    assert!((sims.bench().vessel(2).unwrap().volume - 1500.0).abs() < 1e-6);
    let oem_only = log
        .lock()
        .unwrap()
        .iter()
        .filter(|e| &*e.instrument == "pump_1")
        .all(|e| e.sent.first().is_none_or(|&b| b == 0x02));
    assert!(oem_only, "every frame to the pump is OEM");
    sims.stop().await;
}
