//! The Modbus RTU temperature controller driver (tokio-modbus over the transport's link) against literal frames
//! from the notes, and against its simulator through a pseudo-terminal.

use std::time::Duration;

use devices::capability::{HoldTemperature, Instrument, Outcome};
use devices::clock::Clock;
use devices::drivers::modbus::{ModbusTemperature, crc16};
use devices::error::DeviceErrorKind;
use devices::lab::ModbusConfig;
use devices::sim::Event;
use devices::transport::{Link, discard};
use protocols::units::{Duration as LabDuration, Temperature};
use tokio_test::io::Builder;

use crate::common;

fn controller(mock: tokio_test::io::Mock) -> ModbusTemperature<tokio_test::io::Mock> {
    let config =
        ModbusConfig { address: 1, model_code: 7001, max_temperature: Temperature(150.0), tolerance: Temperature(1.0) };
    ModbusTemperature::new(
        "blk",
        config,
        Link::new(mock, "blk", Clock::scaled(1e5), discard(), Duration::from_millis(100)),
    )
}

/// A frame with its CRC appended, low byte first.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = body.to_vec();
    v.extend_from_slice(&crc16(body).to_le_bytes());
    v
}

#[test]
fn the_notes_frames_carry_their_crcs() {
    assert_eq!(framed(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x02]), [0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B]);
    assert_eq!(
        framed(&[0x01, 0x03, 0x04, 0x00, 0xFA, 0x00, 0x01]),
        [0x01, 0x03, 0x04, 0x00, 0xFA, 0x00, 0x01, 0x1B, 0xC2]
    );
    assert_eq!(framed(&[0x01, 0x06, 0x00, 0x10, 0x01, 0x2C]), [0x01, 0x06, 0x00, 0x10, 0x01, 0x2C, 0x88, 0x42]);
    assert_eq!(framed(&[0x01, 0x83, 0x02]), [0x01, 0x83, 0x02, 0xC0, 0xF1]);
    assert_eq!(framed(&[0x01, 0x86, 0x03]), [0x01, 0x86, 0x03, 0x02, 0x61]);
}

#[tokio::test]
async fn identify_reads_the_identity_registers_and_checks_the_model() {
    // Registers 0x0100 and 0x0101: model 7001 (0x1B59), firmware 1.05 (105).
    let mock = Builder::new()
        .write(&framed(&[0x01, 0x03, 0x01, 0x00, 0x00, 0x02]))
        .read(&framed(&[0x01, 0x03, 0x04, 0x1B, 0x59, 0x00, 0x69]))
        .build();
    let id = controller(mock).identify().await.unwrap();
    assert_eq!(id.firmware.as_deref(), Some("1.05"));
    let mock = Builder::new()
        .write(&framed(&[0x01, 0x03, 0x01, 0x00, 0x00, 0x02]))
        .read(&framed(&[0x01, 0x03, 0x04, 0x00, 0x01, 0x00, 0x69]))
        .build();
    let err = controller(mock).identify().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
}

#[tokio::test]
async fn initialize_stops_and_reads_the_process_value() {
    let mock = Builder::new()
        .write(&framed(&[0x01, 0x06, 0x00, 0x02, 0x00, 0x00]))
        .read(&framed(&[0x01, 0x06, 0x00, 0x02, 0x00, 0x00]))
        .write(&framed(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x01]))
        .read(&framed(&[0x01, 0x03, 0x02, 0x00, 0xFA]))
        .build();
    controller(mock).initialize().await.unwrap();
}

#[tokio::test]
async fn exceptions_and_bad_crcs_are_typed_errors_with_their_bytes() {
    let stop = framed(&[0x01, 0x06, 0x00, 0x02, 0x00, 0x00]);
    let busy = framed(&[0x01, 0x86, 0x06]);
    let err = controller(Builder::new().write(&stop).read(&busy).build()).safe_state().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Busy { received, .. } if *received == busy), "{err}");
    assert!(!err.may_have_acted, "an exception means the write was refused");
    let failure = framed(&[0x01, 0x86, 0x04]);
    let err = controller(Builder::new().write(&stop).read(&failure).build()).safe_state().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(4), .. }), "{err}");
    let mut corrupt = stop.clone();
    corrupt[7] ^= 0x40;
    let err = controller(Builder::new().write(&stop).read(&corrupt).build()).safe_state().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Checksum { received, .. } if *received == corrupt), "{err}");
    let silent = Builder::new().write(&stop).wait(Duration::from_millis(400)).build();
    let err = controller(silent).safe_state().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn a_set_point_beyond_the_limit_is_refused_before_sending() {
    let err =
        controller(Builder::new().build()).hold_temperature(Temperature(200.0), LabDuration(60.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)), "{err}");
}

#[tokio::test]
async fn the_block_holds_a_temperature_on_its_simulator() {
    let lab = common::clean_lab_with(&["block_2"]);
    let (sims, clock) = common::start(&lab).await;
    let mut bench = common::ready(&lab, &sims, &clock, discard()).await;
    let block = bench.get_mut("block_2").unwrap();
    let held =
        block.as_hold_temperature().unwrap().hold_temperature(Temperature(45.0), LabDuration(120.0)).await.unwrap();
    assert!(matches!(held, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - 45.0).abs() < 1.5), "{held:?}");
    let plate = sims.bench().plate("block_2").unwrap();
    assert!(!plate.heater_on, "the hold ends with the heating off");
    let ledger = sims.bench().ledger();
    assert!(ledger.iter().any(|e| matches!(&e.event, Event::HeaterSetPoint { set_point, .. } if *set_point == 45.0)));
    sims.stop().await;
}
