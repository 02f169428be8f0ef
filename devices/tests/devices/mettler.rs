//! The Mettler Toledo MT-SICS driver against literal exchanges from the notes, and against its simulator through
//! a pseudo-terminal, weighing a vial the gantry put on the pan after a pump filled it.

use std::time::Duration;

use devices::capability::{Instrument, Outcome, Place, Task, Weigh, execute};
use devices::clock::Clock;
use devices::drivers::mettler::MettlerBalance;
use devices::error::DeviceErrorKind;
use devices::lab::{BalanceConfig, DriverConfig};
use devices::sim::Event;
use devices::sim::bench::{DENSITY, vial_mass};
use devices::transport::{Link, discard};
use protocols::units::{Duration as LabDuration, Mass, Volume};
use tokio_test::io::Builder;

use crate::common;

fn balance(mock: tokio_test::io::Mock) -> MettlerBalance<tokio_test::io::Mock> {
    let config = BalanceConfig { model: "XS205".into(), capacity: Mass(220.0), settle: LabDuration(10.0) };
    MettlerBalance::new(
        "bal",
        config,
        Link::new(mock, "bal", Clock::scaled(1e5), discard(), Duration::from_millis(100)),
    )
}

#[tokio::test]
async fn identify_reads_type_serial_and_version_and_checks_the_type() {
    let mock = Builder::new()
        .write(b"I2\r\n")
        .read(b"I2 A \"XS205 220.0000 g\"\r\n")
        .write(b"I4\r\n")
        .read(b"I4 A \"1126493049\"\r\n")
        .write(b"I3\r\n")
        .read(b"ES\r\n")
        .build();
    let id = balance(mock).identify().await.unwrap();
    assert_eq!((id.model.as_str(), id.serial.as_deref(), id.firmware), ("XS205", Some("1126493049"), None));

    let mock = Builder::new().write(b"I2\r\n").read(b"I2 A \"WXS205SDU 220.0000 g\"\r\n").build();
    let err = balance(mock).identify().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
}

#[tokio::test]
async fn initialize_resets_lists_the_commands_sets_grams_where_it_can_and_zeroes() {
    // `@` answers with the serial number, not with an `@` line; `I0` answers one line per command, `B` until the
    // last, `A` (the form of the MT-SICS reference manual; the levels and quotes as a third-party parser's tests).
    let mock = Builder::new()
        .write(b"@\r\n")
        .read(b"I4 A \"1126493049\"\r\n")
        .write(b"I0\r\n")
        .read(b"I0 B 0 \"I0\"\r\nI0 B 0 \"S\"\r\n")
        .read(b"I0 B 1 \"T\"\r\n")
        .read(b"I0 A 2 \"M21\"\r\n")
        .write(b"M21 0 0\r\n")
        .read(b"M21 A\r\n")
        .write(b"Z\r\n")
        .read(b"Z A\r\n")
        .build();
    let mut b = balance(mock);
    b.initialize().await.unwrap();
    assert_eq!(b.commands(), ["I0", "S", "T", "M21"]);
    // A balance without `M21` is never asked for it; a list may end with a bare `I0 A`.
    let mock = Builder::new()
        .write(b"@\r\n")
        .read(b"I4 A \"1126493049\"\r\n")
        .write(b"I0\r\n")
        .read(b"I0 B 0 \"I0\"\r\nI0 B 0 \"S\"\r\nI0 A\r\n")
        .write(b"Z\r\n")
        .read(b"Z A\r\n")
        .build();
    let mut b = balance(mock);
    b.initialize().await.unwrap();
    assert_eq!(b.commands(), ["I0", "S"]);
}

#[tokio::test]
async fn a_broken_command_list_is_a_typed_error() {
    let mock = Builder::new()
        .write(b"@\r\n")
        .read(b"I4 A \"1126493049\"\r\n")
        .write(b"I0\r\n")
        .read(b"I0 B 0 \"I0\"\r\nI0 A zero\r\n")
        .build();
    let err = balance(mock).initialize().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Garbled { received, .. } if received == b"I0 A zero\r\n"), "{err}");
    // A byte no balance sends, anywhere in the list, fails the whole reply with its bytes.
    let mock = Builder::new()
        .write(b"@\r\n")
        .read(b"I4 A \"1126493049\"\r\n")
        .write(b"I0\r\n")
        .read(b"I0 B 0 \"I0\"\r\nI0 B 0 \"\xFFS\"\r\nI0 A 0 \"Z\"\r\n")
        .build();
    let err = balance(mock).initialize().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Garbled { received, .. } if received.starts_with(b"I0 B 0")), "{err}");
    // A list that stops halfway is a timeout with nothing more, within the line timeout.
    let mock = Builder::new()
        .write(b"@\r\n")
        .read(b"I4 A \"1126493049\"\r\n")
        .write(b"I0\r\n")
        .read(b"I0 B 0 \"I0\"\r\n")
        .wait(Duration::from_millis(400))
        .build();
    let err = balance(mock).initialize().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn a_stable_weight_is_read_whitespace_tolerantly() {
    let mock = Builder::new().write(b"S\r\n").read(b"S S     100.00 g\r\n").build();
    assert_eq!(balance(mock).weigh().await.unwrap(), Mass(100.0));
    let mock = Builder::new().write(b"S\r\n").read(b"S S ").read(b"   1500.0 mg\r\n").build();
    assert_eq!(balance(mock).weigh().await.unwrap(), Mass(1.5));
}

#[tokio::test]
async fn each_error_reply_is_a_typed_error_with_its_bytes() {
    let err = balance(Builder::new().write(b"S\r\n").read(b"S I\r\n").build()).weigh().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Busy { received, .. } if received == b"S I\r\n"), "{err}");
    let err = balance(Builder::new().write(b"S\r\n").read(b"S +\r\n").build()).weigh().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Firmware { message, .. } if message.contains("overload")), "{err}");
    let err = balance(Builder::new().write(b"S\r\n").read(b"S -\r\n").build()).weigh().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Firmware { message, .. } if message.contains("underload")), "{err}");
    let err = balance(Builder::new().write(b"S\r\n").read(b"EL\r\n").build()).weigh().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Firmware { received, .. } if received == b"EL\r\n"), "{err}");
    let err = balance(Builder::new().write(b"S\r\n").read(b"S S  12.0 lb\r\n").build()).weigh().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Garbled { .. }), "{err}");
    assert!(!err.may_have_acted, "weighing moves nothing");
}

#[tokio::test]
async fn the_balance_weighs_the_vial_a_pump_filled() {
    let lab = common::clean_lab_with(&["gantry", "pump_1", "balance_1"]);
    let (sims, clock) = common::start(&lab).await;
    let mut bench = common::ready(&lab, &sims, &clock, discard()).await;
    let empty = execute(bench.get_mut("balance_1").unwrap().as_mut(), &Task::Weigh).await.unwrap();
    assert_eq!(empty, Outcome::Measured { value: 0.0, unit: "g" });
    let (station, scale) = (Place::Position("station_1".into()), Place::Position("scale_1".into()));
    let gantry = bench.get_mut("gantry").unwrap().as_mut();
    execute(gantry, &Task::Transfer { from: Place::Rack(3), to: station.clone() }).await.unwrap();
    let pump = bench.get_mut("pump_1").unwrap().as_mut();
    execute(pump, &Task::Dispense { volume: Volume(400.0) }).await.unwrap();
    let gantry = bench.get_mut("gantry").unwrap().as_mut();
    execute(gantry, &Task::Transfer { from: station, to: scale }).await.unwrap();
    let weighed = bench.get_mut("balance_1").unwrap().as_weigh().unwrap().weigh().await.unwrap();
    let expected = vial_mass(3) + 400.0 * DENSITY;
    assert!((weighed.0 - expected).abs() < 2e-4, "weighed {weighed}, the vial and its liquid are {expected} g");
    let ledger = sims.bench().ledger();
    assert!(
        ledger.iter().any(
            |e| matches!(&e.event, Event::Weighed { vessel: Some(3), grams, .. } if (grams - expected).abs() < 2e-4)
        ),
        "{ledger:#?}"
    );
    sims.stop().await;
}

/// Sends `command` to a simulated balance's port and reads until `done` holds for what came (two seconds at most).
async fn ask_until(port: &mut devices::transport::SerialStream, command: &str, done: impl Fn(&str) -> bool) -> String {
    let line = format!("{command}\r\n");
    let got =
        common::write_and_read(port, line.as_bytes(), Duration::from_secs(2), |b| done(&String::from_utf8_lossy(b)))
            .await
            .expect("an answer in time");
    String::from_utf8(got).unwrap()
}

/// Sends `command` and reads `lines` reply lines.
async fn ask(port: &mut devices::transport::SerialStream, command: &str, lines: usize) -> String {
    ask_until(port, command, |got| got.matches('\n').count() >= lines).await
}

#[tokio::test]
async fn each_simulated_model_lists_and_answers_its_own_commands() {
    let mut lab = common::clean_lab_with(&["balance_1", "balance_2"]);
    let DriverConfig::MettlerBalance(c) = &mut lab.instruments[1].driver else { panic!("a balance") };
    c.model = "WXS205SDU".into();
    let (sims, _clock) = common::start(&lab).await;
    let open = |name: &str| common::open(&lab, &sims, name);
    let mut xs = open("balance_1");
    let list = ask(&mut xs, "I0", 21).await;
    assert!(list.starts_with("I0 B 0 \"I0\"\r\n") && list.ends_with("I0 A 2 \"M21\"\r\n"), "{list}");
    assert!(list.contains("I0 B 1 \"D\"\r\n"));
    assert_eq!(ask(&mut xs, "D \"hello\"", 1).await, "D A\r\n");
    let mut wxs = open("balance_2");
    let list = ask(&mut wxs, "I0", 19).await;
    assert!(!list.contains("\"D\"") && list.contains("\"M21\""), "{list}");
    // A weigh module has no display: `D` is a syntax error there, as on the real one.
    assert_eq!(ask(&mut wxs, "D \"hello\"", 1).await, "ES\r\n");
    assert_eq!(ask(&mut wxs, "I2", 1).await, "I2 A \"WXS205SDU 220.0000 g\"\r\n");
    // Taring an empty, zeroed pan stores a zero tare; the host unit changes every weight reply.
    assert_eq!(ask(&mut wxs, "Z", 1).await, "Z A\r\n");
    assert_eq!(ask(&mut wxs, "T", 1).await, "T S     0.0000 g\r\n");
    assert_eq!(ask(&mut wxs, "M21 0 3", 1).await, "M21 A\r\n");
    assert_eq!(ask(&mut wxs, "M21 0", 1).await, "M21 A 0 3\r\n");
    assert_eq!(ask(&mut wxs, "S", 1).await, "S S        0.0 mg\r\n");
    assert_eq!(ask(&mut wxs, "M21 0 9", 1).await, "M21 L\r\n");
    sims.stop().await;
}

#[tokio::test]
async fn sir_streams_weights_until_the_next_command() {
    let lab = common::clean_lab_with(&["balance_1"]);
    let (sims, _clock) = common::start(&lab).await;
    let mut port = common::open(&lab, &sims, "balance_1");
    let lines = ask(&mut port, "SIR", 3).await;
    assert!(lines.lines().take(3).all(|l| l == "S S     0.0000 g"), "{lines}");
    // The next command ends the stream; its answer follows whatever lines were on their way.
    let tail = ask_until(&mut port, "I4", |got| got.ends_with("I4 A \"1126493049\"\r\n")).await;
    assert!(tail.lines().rev().skip(1).all(|l| l == "S S     0.0000 g"), "{tail}");
    sims.stop().await;
}

#[tokio::test]
async fn the_driver_initializes_each_simulated_model() {
    let mut lab = common::clean_lab_with(&["balance_1", "balance_2"]);
    let DriverConfig::MettlerBalance(c) = &mut lab.instruments[1].driver else { panic!("a balance") };
    c.model = "WXS205SDU".into();
    let (sims, clock) = common::start(&lab).await;
    let (sink, log) = common::collector();
    let mut bench = common::ready(&lab, &sims, &clock, sink).await;
    assert_eq!(
        execute(bench.get_mut("balance_2").unwrap().as_mut(), &Task::Weigh).await.unwrap(),
        Outcome::Measured { value: 0.0, unit: "g" }
    );
    let sent: Vec<Vec<u8>> = log.lock().unwrap().iter().map(|e| e.sent.clone()).collect();
    assert_eq!(sent.iter().filter(|s| s.as_slice() == b"M21 0 0\r\n").count(), 2, "both models have M21");
    sims.stop().await;
}
