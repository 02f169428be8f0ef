//! The SCPI thermometer driver against literal exchanges from the notes (Keithley 2000 over RS-232, LF), and
//! against its simulator through a pseudo-terminal.

use std::time::Duration;

use devices::capability::{Instrument, Outcome, Place, ReadTemperature, Task, execute};
use devices::clock::Clock;
use devices::drivers::scpi::ScpiThermometer;
use devices::error::DeviceErrorKind;
use devices::lab::{ScpiConfig, Terminator};
use devices::transport::{Link, discard};
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
        .write(b"UNIT:TEMP C\n")
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
    let mut port = common::open(&lab, &sims, "probe_1");
    let got = exchange(&mut port, b"FOO:BAR\nsystem:error?\nSYST:ERR?\n", 2).await;
    assert_eq!(got, "-113,\"Undefined header\"\n0,\"No error\"\n");
    sims.stop().await;
}

/// Writes `messages` to a port and reads `lines` reply lines (a second at most).
async fn exchange(port: &mut devices::transport::SerialStream, messages: &[u8], lines: usize) -> String {
    let got = common::write_and_read(port, messages, Duration::from_secs(1), |b| common::lines(b) >= lines).await;
    String::from_utf8(got.expect("the replies in time")).unwrap()
}

#[tokio::test]
async fn the_simulated_model_2000_answers_its_core_measurement_set() {
    let lab = common::clean_lab_with(&["probe_1"]);
    let (sims, _clock) = common::start(&lab).await;
    let mut port = common::open(&lab, &sims, "probe_1");
    // Its *RST function is DC volts; a thermocouple at room temperature gives no thermoelectric voltage.
    let volts = exchange(&mut port, b"*RST\nCONF?\nMEAS:VOLT:DC?\n", 2).await;
    let mut lines = volts.lines();
    assert_eq!(lines.next(), Some("\"VOLT:DC\""));
    let v: f64 = lines.next().unwrap().parse().unwrap();
    assert!(v.abs() < 1e-5, "{v} V");
    // The thermocouple loop's resistance, 2- and 4-wire, through CONF then READ?, and FETC? after INIT.
    let ohms = exchange(&mut port, b"CONF:RES\nREAD?\nconfigure:fresistance 10,0.001\nINIT\nFETC?\n", 2).await;
    let r: Vec<f64> = ohms.lines().map(|l| l.parse().unwrap()).collect();
    assert!((r[0] - 5.2).abs() < 0.01 && (r[1] - 4.9).abs() < 0.01, "{r:?}");
    // Temperature in each unit; frequency without a signal reads 0.
    let t = exchange(&mut port, b"UNIT:TEMP K;:MEAS:TEMP?;:UNIT:TEMP?\nMEAS:FREQ?\n", 2).await;
    let first: Vec<&str> = t.lines().next().unwrap().split(';').collect();
    let kelvin: f64 = first[0].parse().unwrap();
    assert!((kelvin - 295.15).abs() < 0.5 && first[1] == "K", "{t}");
    assert_eq!(t.lines().nth(1), Some("+0.00000000E+00"));
    // FETC? after the function changed has no reading: no reply, and -230 queued; then the queue is empty.
    let stale = exchange(&mut port, b"FUNC \"CURR:AC\"\nFETC?\nSYST:ERR?\nSYST:ERR?\n", 2).await;
    assert_eq!(stale, "-230,\"Data corrupt or stale\"\n0,\"No error\"\n");
    sims.stop().await;
}
