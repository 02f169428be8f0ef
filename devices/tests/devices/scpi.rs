//! The SCPI thermometer driver against literal exchanges from the notes (Keithley 2000 over RS-232, LF), and
//! against its simulator through a pseudo-terminal.

use std::time::Duration;

use devices::capability::{Instrument, Outcome, Place, ReadTemperature, Task, execute};
use devices::clock::Clock;
use devices::drivers::scpi::ScpiThermometer;
use devices::error::DeviceErrorKind;
use devices::lab::{ScpiConfig, Terminator};
use devices::transport::{Link, discard, open_serial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_test::io::Builder;

use crate::common;

fn meter(mock: tokio_test::io::Mock) -> ScpiThermometer<tokio_test::io::Mock> {
    let config = ScpiConfig { model: "MODEL 2000".into(), terminator: Terminator::Lf };
    ScpiThermometer::new("t", config, Link::new(mock, "t", Clock::scaled(1e5), discard(), Duration::from_millis(100)))
}

#[tokio::test]
async fn identify_checks_the_model_field() {
    let idn = b"KEITHLEY INSTRUMENTS INC.,MODEL 2000,1308393,A20  /A02\n";
    let id = meter(Builder::new().write(b"*IDN?\n").read(idn).build()).identify().await.unwrap();
    assert_eq!((id.serial.as_deref(), id.firmware.as_deref()), (Some("1308393"), Some("A20  /A02")));
    let err = meter(Builder::new().write(b"*IDN?\n").read(b"HEWLETT-PACKARD,34401A,0,10-5-2\n").build())
        .identify()
        .await
        .unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
}

#[tokio::test]
async fn initialize_resets_and_empties_the_error_queue() {
    let mock = Builder::new()
        .write(b"*RST\n")
        .write(b"*CLS\n")
        .write(b"SYST:ERR?\n")
        .read(b"-113,\"Undefined header\"\n")
        .write(b"SYST:ERR?\n")
        .read(b"+0,\"No error\"\n")
        .build();
    meter(mock).initialize().await.unwrap();
}

#[tokio::test]
async fn a_reading_is_an_nr3_number() {
    let mock = Builder::new().write(b"MEAS:TEMP?\n").read(b"+2.53000000E+01\n").build();
    assert_eq!(meter(mock).read_temperature().await.unwrap().0, 25.3);
}

#[tokio::test]
async fn a_failed_reading_reports_the_queued_error() {
    let mock = Builder::new()
        .write(b"MEAS:TEMP?\n")
        .read(b"+9.90000000E+37\n")
        .write(b"SYST:ERR?\n")
        .read(b"-300,\"Device error\"\n")
        .build();
    let err = meter(mock).read_temperature().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Firmware { code: Some(-300), .. }), "{err}");
    // Silence with nothing queued stays a timeout.
    let mock = Builder::new().write(b"MEAS:TEMP?\n").write(b"SYST:ERR?\n").read(b"0,\"No error\"\n").build();
    let err = meter(mock).read_temperature().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn the_thermometer_reads_the_vial_warmed_on_a_block() {
    let lab = common::clean_lab_with(&["gantry", "block_3", "probe_3"]);
    let (sims, clock) = common::start(&lab).await;
    let mut bench = common::ready(&lab, &sims, &clock, discard()).await;
    let room = bench.get_mut("probe_3").unwrap().as_read_temperature().unwrap().read_temperature().await.unwrap();
    assert!((room.0 - 22.0).abs() < 1.0, "an empty probe reads the room: {room}");
    let at = Place::Position("block_3".into());
    execute(bench.get_mut("gantry").unwrap().as_mut(), &Task::Transfer { from: Place::Rack(1), to: at }).await.unwrap();
    let hold = Task::HoldTemperature {
        temperature: protocols::units::Temperature(60.0),
        duration: protocols::units::Duration(900.0),
    };
    execute(bench.get_mut("block_3").unwrap().as_mut(), &hold).await.unwrap();
    let to_probe = Task::Transfer { from: Place::Position("block_3".into()), to: Place::Position("probe_3".into()) };
    execute(bench.get_mut("gantry").unwrap().as_mut(), &to_probe).await.unwrap();
    let read = execute(bench.get_mut("probe_3").unwrap().as_mut(), &Task::ReadTemperature).await.unwrap();
    let vessel = sims.bench().vessel(1).unwrap().temperature;
    let Outcome::Measured { value, unit: "degC" } = read else { panic!("{read:?}") };
    assert!(value > 40.0 && (value - vessel).abs() < 1.0, "read {value} degC, the vial is at {vessel} degC");
    sims.stop().await;
}

#[tokio::test]
async fn the_simulator_queues_errors_for_unknown_headers_in_either_form() {
    let lab = common::clean_lab_with(&["probe_1"]);
    let (sims, _clock) = common::start(&lab).await;
    let spec = lab.instrument("probe_1").unwrap();
    let mut port = open_serial("probe_1", &sims.ports["probe_1"], &spec.line).unwrap();
    port.write_all(b"FOO:BAR\nsystem:error?\nSYST:ERR?\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.iter().filter(|&&b| b == b'\n').count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(1), port.read(&mut buf)).await.unwrap().unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"-113,\"Undefined header\"\n0,\"No error\"\n");
    sims.stop().await;
}
