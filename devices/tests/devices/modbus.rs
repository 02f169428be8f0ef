//! The Modbus RTU temperature controller driver (tokio-modbus over the transport's link) against literal frames
//! built from the register maps of the Eurotherm 3200, Omron E5CC and Watlow EZ-ZONE PM, and against the simulators
//! generated from those maps, through pseudo-terminals.

use std::sync::Arc;
use std::time::Duration;

use devices::capability::{HoldTemperature, Instrument, Outcome};
use devices::clock::Clock;
use devices::drivers::modbus::ModbusTemperature;
use devices::error::DeviceErrorKind;
use devices::lab::ModbusConfig;
use devices::modbus_map::{BUILT_IN, load_map};
use devices::sim::Event;
use devices::transport::{Link, discard};
use protocols::diagnostic::SourceFile;
use protocols::units::{Duration as LabDuration, Temperature};
use tokio_test::io::Builder;

use crate::common;

/// The built-in map `name`.
pub fn map(name: &str) -> Arc<devices::modbus_map::ModbusMap> {
    let (_, text) = BUILT_IN.iter().find(|(n, _)| *n == name).expect("a built-in map");
    Arc::new(load_map(SourceFile::new(name, *text)).expect("the map loads"))
}

fn controller(mock: tokio_test::io::Mock, map_name: &str) -> ModbusTemperature<tokio_test::io::Mock> {
    let config = ModbusConfig {
        address: 1,
        map: map(map_name),
        max_temperature: Temperature(150.0),
        tolerance: Temperature(1.0),
    };
    ModbusTemperature::new(
        "blk",
        config,
        Link::new(mock, "blk", Clock::scaled(1e5), discard(), Duration::from_millis(100)),
    )
}

/// A frame with its CRC-16/MODBUS appended, low byte first.
fn framed(body: &[u8]) -> Vec<u8> {
    const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);
    let mut v = body.to_vec();
    v.extend_from_slice(&CRC.checksum(body).to_le_bytes());
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
}

#[tokio::test]
async fn an_omron_e5cc_is_read_with_its_decimals_and_run_by_operation_commands() {
    // Identify: no identity to read, so the process value at 0x2000, after its decimals at 0x2410 (1: tenths).
    let dp = (framed(&[1, 3, 0x24, 0x10, 0, 1]), framed(&[1, 3, 2, 0, 1]));
    let pv = (framed(&[1, 3, 0x20, 0x00, 0, 1]), framed(&[1, 3, 2, 0x00, 0xFA]));
    let mock = Builder::new().write(&dp.0).read(&dp.1).write(&pv.0).read(&pv.1).build();
    let id = controller(mock, "omron_e5cc").identify().await.unwrap();
    assert_eq!(id.model, "Omron E5CC");
    assert!(id.raw.contains("25.0 degC"), "{}", id.raw);
    // Initialize: communications writing on (00 01), STOP (01 01), both to the operation command at 0x0000.
    let on = framed(&[1, 6, 0, 0, 0x00, 0x01]);
    let stop = framed(&[1, 6, 0, 0, 0x01, 0x01]);
    let mock = Builder::new()
        .write(&on)
        .read(&on)
        .write(&stop)
        .read(&stop)
        .write(&dp.0)
        .read(&dp.1)
        .write(&pv.0)
        .read(&pv.1)
        .build();
    controller(mock, "omron_e5cc").initialize().await.unwrap();
}

#[tokio::test]
async fn a_set_point_kept_in_eeprom_is_not_rewritten_when_it_holds_the_value() {
    let dp = (framed(&[1, 3, 0x24, 0x10, 0, 1]), framed(&[1, 3, 2, 0, 1]));
    let sp_read = framed(&[1, 3, 0x21, 0x03, 0, 1]);
    let sp_250 = framed(&[1, 3, 2, 0x00, 0xFA]);
    let pv = (framed(&[1, 3, 0x20, 0x00, 0, 1]), framed(&[1, 3, 2, 0x00, 0xFB]));
    let run = framed(&[1, 6, 0, 0, 0x01, 0x00]);
    let stop = framed(&[1, 6, 0, 0, 0x01, 0x01]);
    // The set point already reads 25.0: no write to 0x2103, only the read-back, RUN, one reading, STOP.
    let mock = Builder::new()
        .write(&dp.0)
        .read(&dp.1)
        .write(&sp_read)
        .read(&sp_250)
        .write(&sp_read)
        .read(&sp_250)
        .write(&run)
        .read(&run)
        .write(&pv.0)
        .read(&pv.1)
        .write(&stop)
        .read(&stop)
        .build();
    let held = controller(mock, "omron_e5cc").hold_temperature(Temperature(25.0), LabDuration(0.0)).await.unwrap();
    assert!(matches!(held, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - 25.1).abs() < 1e-9), "{held:?}");
}

#[tokio::test]
async fn a_eurotherm_set_point_is_a_float_written_with_function_16() {
    // The comms set point (parameter 26) as a float at 2 x 26 + 0x8000 = 0x8034, high word first: 45.0 = 0x4234_0000.
    let write = framed(&[1, 0x10, 0x80, 0x34, 0, 2, 4, 0x42, 0x34, 0x00, 0x00]);
    let written = framed(&[1, 0x10, 0x80, 0x34, 0, 2]);
    let read_back = (framed(&[1, 3, 0x80, 0x34, 0, 2]), framed(&[1, 3, 4, 0x42, 0x34, 0x00, 0x00]));
    let auto = framed(&[1, 6, 0x01, 0x11, 0, 0]);
    let pv = (framed(&[1, 3, 0x80, 0x02, 0, 2]), framed(&[1, 3, 4, 0x42, 0x34, 0x66, 0x66]));
    let off = framed(&[1, 6, 0x01, 0x11, 0, 2]);
    let mock = Builder::new()
        .write(&write)
        .read(&written)
        .write(&read_back.0)
        .read(&read_back.1)
        .write(&auto)
        .read(&auto)
        .write(&pv.0)
        .read(&pv.1)
        .write(&off)
        .read(&off)
        .build();
    let held = controller(mock, "eurotherm_3200").hold_temperature(Temperature(45.0), LabDuration(0.0)).await.unwrap();
    assert!(matches!(held, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - 45.1).abs() < 1e-4), "{held:?}");
}

#[tokio::test]
async fn a_watlow_reads_low_word_first_in_fahrenheit() {
    // Analog input 1 at 360: 71.6 degF = 0x428F_3333, low word first.
    let pv = (framed(&[1, 3, 0x01, 0x68, 0, 2]), framed(&[1, 3, 4, 0x33, 0x33, 0x42, 0x8F]));
    let mut c = controller(Builder::new().write(&pv.0).read(&pv.1).build(), "watlow_ez_zone_pm");
    assert!((c.read_point("pv").await.unwrap() - 71.6).abs() < 1e-4);
    let id = controller(Builder::new().write(&pv.0).read(&pv.1).build(), "watlow_ez_zone_pm").identify().await.unwrap();
    assert!(id.raw.contains("22.0 degC"), "71.6 degF is 22.0 degC: {}", id.raw);
}

#[tokio::test]
async fn exceptions_and_bad_crcs_are_typed_errors_with_their_bytes() {
    let off = framed(&[1, 6, 0x01, 0x11, 0, 2]);
    let busy = framed(&[1, 0x86, 0x06]);
    let err =
        controller(Builder::new().write(&off).read(&busy).build(), "eurotherm_3200").safe_state().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Busy { received, .. } if *received == busy), "{err}");
    assert!(!err.may_have_acted, "an exception means the write was refused");
    let failure = framed(&[1, 0x86, 0x04]);
    let err =
        controller(Builder::new().write(&off).read(&failure).build(), "eurotherm_3200").safe_state().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(4), .. }), "{err}");
    let mut corrupt = off.clone();
    corrupt[7] ^= 0x40;
    let mock = Builder::new().write(&off).read(&corrupt).wait(Duration::from_millis(300)).build();
    let err = controller(mock, "eurotherm_3200").safe_state().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Checksum { received, .. } if *received == corrupt), "{err}");
    assert!(err.may_have_acted, "a write whose answer was damaged may have been carried out");
    let short = Builder::new().write(&off).read(&off[..5]).wait(Duration::from_millis(300)).build();
    let err = controller(short, "eurotherm_3200").safe_state().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Timeout { received, .. } if *received == off[..5]), "{err}");
    let silent = Builder::new().write(&off).wait(Duration::from_millis(300)).build();
    let err = controller(silent, "eurotherm_3200").safe_state().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn a_set_point_beyond_the_limit_is_refused_before_sending() {
    let err = controller(Builder::new().build(), "omron_e5cc")
        .hold_temperature(Temperature(200.0), LabDuration(60.0))
        .await
        .unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)), "{err}");
}

#[tokio::test]
async fn each_map_holds_a_temperature_on_its_simulator() {
    for block in ["block_1", "block_2", "block_3"] {
        let lab = common::clean_lab_with(&[block]);
        let (sims, clock) = common::start(&lab).await;
        let mut bench = common::ready(&lab, &sims, &clock, discard()).await;
        let b = bench.get_mut(block).unwrap();
        let held = b.as_hold_temperature().unwrap().hold_temperature(Temperature(45.0), LabDuration(120.0)).await;
        let held = held.unwrap_or_else(|e| panic!("{block}: {e}"));
        assert!(
            matches!(held, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - 45.0).abs() < 1.5),
            "{block}: {held:?}"
        );
        let plate = sims.bench().plate(block).unwrap();
        assert!(!plate.heater_on, "{block}: the hold ends with the heating off");
        let set =
            sims.bench().ledger().into_iter().any(
                |e| matches!(&e.event, Event::HeaterSetPoint { set_point, .. } if (*set_point - 45.0).abs() < 0.01),
            );
        assert!(set, "{block}: the set point reached the block");
        sims.stop().await;
    }
}

#[tokio::test]
async fn the_simulator_answers_as_its_map_says() {
    let lab = common::clean_lab_with(&["block_2"]);
    let (sims, _clock) = common::start(&lab).await;
    let mut port = common::open(&lab, &sims, "block_2");
    let ask = |request: Vec<u8>, reply_len: usize| (framed(&request), reply_len);
    for ((request, len), expected) in [
        // An address outside the map: exception 2.
        (ask(vec![1, 3, 0x30, 0x00, 0, 1], 5), framed(&[1, 0x83, 0x02])),
        // The decimal-point monitor holds the map's initial 1.
        (ask(vec![1, 3, 0x24, 0x10, 0, 1], 7), framed(&[1, 3, 2, 0, 1])),
        // The operation command is write-only: reading it is exception 2.
        (ask(vec![1, 3, 0x00, 0x00, 0, 1], 5), framed(&[1, 0x83, 0x02])),
        // The process value is read-only.
        (ask(vec![1, 6, 0x20, 0x00, 0, 1], 5), framed(&[1, 0x86, 0x02])),
        // A set point beyond the map's range: exception 3.
        (ask(vec![1, 6, 0x21, 0x03, 0x7F, 0xFF], 5), framed(&[1, 0x86, 0x03])),
        // Function 43 without an identity in the map: exception 1.
        (ask(vec![1, 0x2B, 0x0E, 1, 0], 5), framed(&[1, 0xAB, 0x01])),
    ] {
        let got = common::write_and_read(&mut port, &request, Duration::from_secs(1), |b| b.len() >= len).await;
        assert_eq!(got.expect("an answer"), expected, "{request:02X?}");
    }
    // Another slave's request gets no answer at all.
    let other = framed(&[2, 3, 0x24, 0x10, 0, 1]);
    let got = common::write_and_read(&mut port, &other, Duration::from_millis(150), |b| !b.is_empty()).await;
    assert_eq!(got, Err(Vec::new()));
    sims.stop().await;
}
