//! Declared instruments: the driver made from a declaration against literal exchanges from each instrument's manual
//! (and the open-source drivers written against the hardware), and against the simulator made from the same
//! declaration through a pseudo-terminal, with its faults.

use std::collections::BTreeMap;
use std::time::Duration;

use devices::capability::{Dispense, Instrument, Place, Task, execute};
use devices::clock::Clock;
use devices::declared::{Value, resolve};
use devices::drivers::declared::Declared;
use devices::error::DeviceErrorKind;
use devices::lab::{DeclaredConfig, Faults, Lab, load_lab};
use devices::sim::Event;
use devices::transport::{Link, discard};
use protocols::diagnostic::SourceFile;
use protocols::units::Volume;
use tokio_test::io::{Builder, Mock};

use crate::common;

/// The driver of built-in declaration `name` as `model` with `settings`, on a scripted line.
fn driver(name: &str, model: &str, settings: &[(&str, &str)], mock: Mock) -> Declared<Mock> {
    let declaration = resolve(name, None).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let given: BTreeMap<String, String> = settings.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    let settings = declaration.settings_for(model, &given).expect("the settings are right");
    let config = DeclaredConfig { declaration, model: model.into(), settings };
    Declared::new("inst", config, Link::new(mock, "inst", Clock::scaled(1e6), discard(), Duration::from_millis(100)))
}

/// A line on which the NE-1000 driver has cleared the volume infused and set a rate of 1000 uL/min, and now sets a
/// volume of 250 uL.
fn start_dispense() -> Builder {
    let mut b = Builder::new();
    b.write(b"0CLDINF\r").read(b"\x0200S\x03").write(b"0RAT1000UM\r").read(b"\x0200S\x03").write(b"0VOL250\r");
    b
}

fn ne1000(mock: Mock) -> Declared<Mock> {
    driver("new_era_ne1000", "NE-1000", &[("diameter", "14.57")], mock)
}

/// The lab of `devices/labs/declared.lab.ron`.
pub fn declared_lab() -> Lab {
    load_lab(SourceFile::new("declared.lab.ron", include_str!("../../labs/declared.lab.ron"))).expect("the lab loads")
}

#[tokio::test]
async fn new_era_identify_reads_the_model_number_and_refuses_another_model() {
    // nesp-lib: `VER` answers `NE` <model number> `V` <firmware>, between STX and ETX after address and status.
    let mock = Builder::new().write(b"0VER\r").read(b"\x0200SNE1000V3.928\x03").build();
    let id = ne1000(mock).identify().await.unwrap();
    assert_eq!((id.model.as_str(), id.firmware.as_deref()), ("NE-1000", Some("3.928")));
    let mock = Builder::new().write(b"0VER\r").read(b"\x0200SNE500V3.928\x03").build();
    let err = ne1000(mock).identify().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
    assert!(err.to_string().contains("NE-500"), "{err}");
}

#[tokio::test]
async fn new_era_dispense_sets_rate_and_volume_runs_and_reads_what_it_infused() {
    let mock = start_dispense()
        .read(b"\x0200S\x03")
        .write(b"0RUN\r")
        .read(b"\x0200I\x03")
        .write(b"0\r")
        .read(b"\x0200I\x03")
        .write(b"0\r")
        .read(b"\x0200S\x03")
        .write(b"0DIS\r")
        .read(b"\x0200SI250.0W0.000UL\x03")
        .build();
    let moved = ne1000(mock).dispense(Volume(250.0)).await.unwrap();
    assert_eq!(moved, Volume(250.0));
}

#[tokio::test]
async fn new_era_errors_alarms_and_unknown_commands_are_typed() {
    // `?OOR`: the pump refused the volume; nothing ran.
    let mock = start_dispense().read(b"\x0200S?OOR\x03").build();
    let err = ne1000(mock).dispense(Volume(250.0)).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Firmware { message, .. } if message == "out of range"), "{err}");
    assert!(!err.may_have_acted);
    // `A?S` while running: the motor stalled after moving; the driver stops the pump.
    let mock = start_dispense()
        .read(b"\x0200S\x03")
        .write(b"0RUN\r")
        .read(b"\x0200I\x03")
        .write(b"0\r")
        .read(b"\x0200A?S\x03")
        .write(b"0STP\r")
        .read(b"\x0200S\x03")
        .build();
    let err = ne1000(mock).dispense(Volume(250.0)).await.unwrap_err();
    assert!(err.to_string().contains("alarm: the motor stalled"), "{err}");
    assert!(err.may_have_acted);
    // A bare `?` is an unknown command.
    let mock = Builder::new().write(b"0STP\r").read(b"\x0200S?\x03").build();
    let err = ne1000(mock).safe_state().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::UnknownCommand { received, .. } if received == b"00S?"), "{err}");
}

#[tokio::test]
async fn new_era_replies_that_match_nothing_are_garbled_with_their_bytes_and_limits_hold() {
    let mock = Builder::new().write(b"0VER\r").read(b"\x0200SNX1000\x03").build();
    let err = ne1000(mock).identify().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Garbled { received, .. } if received == b"00SNX1000"), "{err}");
    let mock = Builder::new().write(b"0VER\r").read(b"00SNE1000V3.928\x03").build();
    let err = ne1000(mock).identify().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Garbled { .. }), "a reply must start with STX: {err}");
    // A volume beyond what the pump takes is refused before anything is sent.
    let mut pump = ne1000(Builder::new().build());
    let err = pump.call("set_volume", &[("volume", Value::Number(20_000.0))]).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)), "{err}");
    // Silence is a timeout with the command.
    let (client, _server) = tokio::io::duplex(64);
    let decl = resolve("new_era_ne1000", None).unwrap();
    let settings = decl.settings_for("NE-1000", &[("diameter".into(), "14.57".into())].into()).unwrap();
    let config = DeclaredConfig { declaration: decl, model: "NE-1000".into(), settings };
    let link = Link::new(client, "inst", Clock::manual(), discard(), Duration::from_millis(30));
    let err = Declared::new("inst", config, link).identify().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Timeout { sent, .. } if sent == b"0VER\r"), "{err}");
}

/// Moves the vial of rack slot `slot` to `to` with the lab's gantry.
async fn place(lab: &Lab, sims: &devices::sim::SimLab, clock: &Clock, slot: usize, to: &str) {
    let mut gantry = common::connect(lab, sims, "gantry", clock, discard());
    gantry.initialize().await.unwrap();
    execute(&mut *gantry, &Task::Transfer { from: Place::Rack(slot), to: Place::Position(to.into()) }).await.unwrap();
}

#[tokio::test]
async fn the_new_era_simulator_fills_the_vial_at_its_station_through_a_pseudo_terminal() {
    let lab = declared_lab();
    let (sims, clock) = common::start(&lab).await;
    place(&lab, &sims, &clock, 2, "dispense").await;
    let mut pump = common::connect(&lab, &sims, "syringe", &clock, discard());
    let id = pump.identify().await.unwrap();
    assert_eq!((id.model.as_str(), id.firmware.as_deref()), ("NE-1000", Some("3.928")));
    pump.initialize().await.unwrap();
    let out = execute(&mut *pump, &Task::Dispense { volume: Volume(250.0) }).await.unwrap();
    assert!(matches!(out, devices::Outcome::Dispensed { volume } if (volume.0 - 250.0).abs() < 0.01), "{out:?}");
    let vial = sims.bench().vessel(2).unwrap();
    assert!((vial.volume - 250.0).abs() < 1e-6, "{vial:?}");
    assert!((vial.contents["A"] - 250.0).abs() < 1e-6);
    // The simulator answers what it was sent: the diameter set at initialization.
    drop(pump);
    let mut port = common::open(&lab, &sims, "syringe");
    let got = common::write_and_read(&mut port, b"0DIA\r", Duration::from_secs(5), |b| b.ends_with(b"\x03")).await;
    assert_eq!(got.unwrap(), b"\x0200S14.57\x03");
    let got = common::write_and_read(&mut port, b"0XYZ\r", Duration::from_secs(5), |b| b.ends_with(b"\x03")).await;
    assert_eq!(got.unwrap(), b"\x0200S?\x03", "an unknown command");
    let got = common::write_and_read(&mut port, b"1VER\r", Duration::from_millis(200), |b| !b.is_empty()).await;
    assert_eq!(got, Err(Vec::new()), "another address: silence");
    sims.stop().await;
}

#[tokio::test]
async fn a_stalled_new_era_simulator_reports_the_alarm_and_the_driver_says_it_may_have_acted() {
    let lab = common::with_faults(declared_lab(), "syringe", Faults { partial: 1.0, ..Faults::none() });
    let (sims, clock) = common::start(&lab).await;
    place(&lab, &sims, &clock, 0, "dispense").await;
    let mut pump = common::connect(&lab, &sims, "syringe", &clock, discard());
    pump.initialize().await.unwrap();
    let err = execute(&mut *pump, &Task::Dispense { volume: Volume(200.0) }).await.unwrap_err();
    assert!(err.may_have_acted && err.to_string().contains("stalled"), "{err}");
    let moved: f64 = sims
        .bench()
        .ledger()
        .iter()
        .filter_map(|e| match &e.event {
            Event::Dispensed { volume, vessel: 0, .. } => Some(*volume),
            _ => None,
        })
        .sum();
    assert!((moved - 100.0).abs() < 1e-6, "the stall stopped it halfway: {moved}");
    sims.stop().await;
}
