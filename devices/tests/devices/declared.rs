//! Declared instruments: the driver made from a declaration against literal exchanges from each instrument's manual
//! (and the open-source drivers written against the hardware), and against the simulator made from the same
//! declaration through a pseudo-terminal, with its faults.

use std::collections::BTreeMap;
use std::time::Duration;

use devices::capability::{Dispense, HoldTemperature, Instrument, Outcome, Place, Task, Weigh, execute};
use devices::clock::Clock;
use devices::declared::{Value, resolve};
use devices::drivers::declared::Declared;
use devices::error::DeviceErrorKind;
use devices::lab::{DeclaredConfig, Faults, Lab, load_lab};
use devices::sim::Event;
use devices::transport::{Link, discard};
use protocols::diagnostic::SourceFile;
use protocols::units::{Duration as LabDuration, Mass, Temperature, Volume};
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
    // A query is asked again, twice at most, when its reply does not parse.
    let mut b = Builder::new();
    for _ in 0..3 {
        b.write(b"0VER\r").read(b"\x0200SNX1000\x03");
    }
    let err = ne1000(b.build()).identify().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Garbled { received, .. } if received == b"00SNX1000"), "{err}");
    let mock = Builder::new()
        .write(b"0VER\r")
        .read(b"00SNE1000V3.928\x03")
        .write(b"0VER\r")
        .read(b"\x0200SNE1000V3.928\x03")
        .build();
    let id = ne1000(mock).identify().await.unwrap();
    assert_eq!(id.model, "NE-1000", "a reply without its STX was refused and the query asked again");
    // A command that may act is never repeated: a damaged reply to RUN is an error that may have acted.
    let mock = Builder::new().write(b"0RUN\r").read(b"\x0200\x03").build();
    let err = ne1000(mock).call("run", &[]).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Garbled { .. }) && err.may_have_acted, "{err}");
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
    // And the rate and volume of the dispense, with their units, as a read-back of either asks them.
    let got = common::write_and_read(&mut port, b"0RAT\r", Duration::from_secs(5), |b| b.ends_with(b"\x03")).await;
    assert_eq!(got.unwrap(), b"\x0200S1000UM\x03");
    let got = common::write_and_read(&mut port, b"0VOL\r", Duration::from_secs(5), |b| b.ends_with(b"\x03")).await;
    assert_eq!(got.unwrap(), b"\x0200S250UL\x03");
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

fn huber(mock: Mock) -> Declared<Mock> {
    driver("huber_pilot_one", "Pilot ONE", &[], mock)
}

#[tokio::test]
async fn huber_identify_reads_the_serial_and_a_hold_sets_starts_reads_and_stops() {
    // flowchem: `{M1B****` answers the serial number's first word; temperatures are hundredths, two's complement.
    let mock = Builder::new().write(b"{M1B****\r\n").read(b"{S1B1234\r\n").build();
    let id = huber(mock).identify().await.unwrap();
    assert_eq!((id.model.as_str(), id.serial.as_deref()), ("Pilot ONE", Some("1234")));
    let mock = Builder::new()
        .write(b"{M000DAC\r\n")
        .read(b"{S000DAC\r\n")
        .write(b"{M140001\r\n")
        .read(b"{S140001\r\n")
        .write(b"{M01****\r\n")
        .read(b"{S010DAA\r\n")
        .write(b"{M140000\r\n")
        .read(b"{S140000\r\n")
        .build();
    let out = huber(mock).hold_temperature(Temperature(35.0), LabDuration(0.0)).await.unwrap();
    assert!(matches!(out, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - 34.98).abs() < 1e-9), "{out:?}");
    // Below zero: -12.50 degC is FB1E.
    let mock = Builder::new().write(b"{M00FB1E\r\n").read(b"{S00FB1E\r\n").build();
    let got = huber(mock).call("set_point", &[("set_point", Value::Number(-12.5))]).await.unwrap();
    assert_eq!(got["set_point"], Value::Number(-12.5));
    // Beyond the format's range nothing is sent.
    let err = huber(Builder::new().build()).hold_temperature(Temperature(400.0), LabDuration(1.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)) && !err.may_have_acted, "{err}");
}

#[tokio::test]
async fn huber_silence_is_an_unknown_command_after_asking_again() {
    let (client, mut server) = tokio::io::duplex(256);
    let decl = resolve("huber_pilot_one", None).unwrap();
    let settings = decl.settings_for("Pilot ONE", &BTreeMap::new()).unwrap();
    let config = DeclaredConfig { declaration: decl, model: "Pilot ONE".into(), settings };
    let link = Link::new(client, "inst", Clock::manual(), discard(), Duration::from_millis(20));
    let err = Declared::new("inst", config, link).call("process", &[]).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::UnknownCommand { received, .. } if received.is_empty()), "{err}");
    let mut sent = vec![0u8; 64];
    let n = tokio::io::AsyncReadExt::read(&mut server, &mut sent).await.unwrap();
    assert_eq!(&sent[..n], b"{M3A****\r\n{M3A****\r\n{M3A****\r\n", "asked three times");
}

fn sartorius(mock: Mock) -> Declared<Mock> {
    driver("sartorius_entris_ii", "BCE224I-1S", &[], mock)
}

#[tokio::test]
async fn sartorius_weighs_once_the_unit_shows_and_refuses_an_overload() {
    let mock = Builder::new().write(b"\x1bx1_\r\n").read(b"BCE224I-1S\r\n").build();
    assert_eq!(sartorius(mock).identify().await.unwrap().model, "BCE224I-1S");
    // Zeroing is not answered.
    let mock = Builder::new().write(b"\x1bV\r\n").build();
    sartorius(mock).initialize().await.unwrap();
    // A blank unit: not stable yet.
    let mock = Builder::new()
        .write(b"\x1bP\r\n")
        .read(b"+  12.3461    \r\n")
        .write(b"\x1bP\r\n")
        .read(b"+  12.3456 g  \r\n")
        .build();
    assert_eq!(sartorius(mock).weigh().await.unwrap(), Mass(12.3456));
    let mock = Builder::new().write(b"\x1bP\r\n").read(b"-   0.0210 g  \r\n").build();
    assert_eq!(sartorius(mock).weigh().await.unwrap(), Mass(-0.021));
    let mock = Builder::new().write(b"\x1bP\r\n").read(b"+     High    \r\n").build();
    let err = sartorius(mock).weigh().await.unwrap_err();
    assert!(err.to_string().contains("overload"), "{err}");
}

fn alicat(mock: Mock) -> Declared<Mock> {
    driver("alicat_mc", "MC-100SCCM-D", &[], mock)
}

#[tokio::test]
async fn alicat_identify_reads_ten_lines_of_manufacturing_data_as_one_exchange() {
    let mock = Builder::new()
        .write(b"A??M*\r")
        .read(b"A M01 Alicat Scientific\rA M02 www.alicat.com\rA M03 +1 520-290-6060\rA M04 MC-100SCCM-D\r")
        .read(b"A M05 123456\rA M06 2021-01-01\rA M07 2021-02-01\rA M08 ACS\rA M09 10v05\rA M10 \r")
        .build();
    let id = alicat(mock).identify().await.unwrap();
    assert_eq!(
        (id.model.as_str(), id.serial.as_deref(), id.firmware.as_deref()),
        ("MC-100SCCM-D", Some("123456"), Some("10v05"))
    );
    // numat/alicat: `AS` and the set point answers the data frame.
    let mock = Builder::new().write(b"AS25.00\r").read(b"A +014.70 +025.00 +025.00 +025.00 +025.00     N2\r").build();
    let mut mfc = alicat(mock);
    let frame = mfc.call("set_flow", &[("set_point", Value::Number(25.0))]).await.unwrap();
    assert_eq!((frame["mass_flow"].number(), frame["gas"].text()), (Some(25.0), "N2".to_owned()));
    // A command the declaration does not have is refused before anything is sent, as is a flow beyond the range.
    assert!(matches!(mfc.call("xx", &[]).await.unwrap_err().kind, DeviceErrorKind::Unsupported(_)));
    let err = mfc.call("set_flow", &[("set_point", Value::Number(250.0))]).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)), "{err}");
}

/// The driver of built-in declaration `name` as `model` on a scripted line and a discrete-event clock, where a reply
/// that does not come is missing as soon as nothing else could happen first (no wall time passes for it).
fn on_discrete_clock(name: &str, model: &str, mock: Mock) -> Declared<Mock> {
    let declaration = resolve(name, None).expect("built in");
    let settings = declaration.settings_for(model, &BTreeMap::new()).expect("the settings are right");
    let config = DeclaredConfig { declaration, model: model.into(), settings };
    Declared::new("inst", config, Link::new(mock, "inst", Clock::discrete(), discard(), Duration::from_millis(100)))
}

fn alicat_on_discrete_clock(mock: Mock) -> Declared<Mock> {
    on_discrete_clock("alicat_mc", "MC-100SCCM-D", mock)
}

#[tokio::test]
async fn the_hubers_set_point_and_control_are_read_back_through_pb_reads() {
    // 35.00 degC is 0DAC; its answer lost, `{M00****` shows it in place.
    let mock = Builder::new().write(b"{M000DAC\r\n").write(b"{M00****\r\n").read(b"{S000DAC\r\n").build();
    let mut huber = on_discrete_clock("huber_pilot_one", "Pilot ONE", mock);
    huber.call("set_point", &[("set_point", Value::Number(35.0))]).await.unwrap();
    // Control switched on, its answer lost and the read showing it still off: switched on again, once.
    let mock = Builder::new()
        .write(b"{M140001\r\n")
        .write(b"{M14****\r\n")
        .read(b"{S140000\r\n")
        .write(b"{M140001\r\n")
        .read(b"{S140001\r\n")
        .build();
    let mut huber = on_discrete_clock("huber_pilot_one", "Pilot ONE", mock);
    huber.call("control", &[("control", Value::Number(1.0))]).await.unwrap();
}

/// The Alicat's data frame with `set_point` sccm set (and flowing).
fn frame(set_point: &str) -> Vec<u8> {
    format!("A +014.70 +025.00 {set_point} {set_point} {set_point}     N2\r").into_bytes()
}

#[tokio::test]
async fn a_set_point_whose_reply_was_lost_is_read_back_and_not_sent_again_when_it_took() {
    // The set point's answer never comes; a poll (a query) shows 50 in place: the call goes on with the poll's frame.
    let mock = Builder::new().write(b"AS50.00\r").write(b"A\r").read(&frame("+050.00")).build();
    let got = alicat_on_discrete_clock(mock).call("set_flow", &[("set_point", Value::Number(50.0))]).await.unwrap();
    assert_eq!(got["set_point"], Value::Number(50.0));
    // A damaged answer is settled the same way (the poll's own damaged answer asked again, as a query is).
    let mock = Builder::new()
        .write(b"AS50.00\r")
        .read(b"A +014.70 +025.00 +050.00 +050.00 +050\xff00     N2\r")
        .write(b"A\r")
        .read(b"A +014.70 +0\xff5.00\r")
        .write(b"A\r")
        .read(&frame("+050.00"))
        .build();
    alicat_on_discrete_clock(mock).call("set_flow", &[("set_point", Value::Number(50.0))]).await.unwrap();
}

#[tokio::test]
async fn a_set_point_that_did_not_take_is_sent_once_more_and_a_second_miss_has_not_acted() {
    // The poll shows the old set point: the command did not take, and is sent again, once.
    let mock = Builder::new()
        .write(b"AS50.00\r")
        .write(b"A\r")
        .read(&frame("+000.00"))
        .write(b"AS50.00\r")
        .read(&frame("+050.00"))
        .build();
    let got = alicat_on_discrete_clock(mock).call("set_flow", &[("set_point", Value::Number(50.0))]).await.unwrap();
    assert_eq!(got["mass_flow"], Value::Number(50.0));
    // Lost again and still not in place: the error stands, and the read-back says nothing was set.
    let mock = Builder::new()
        .write(b"AS50.00\r")
        .write(b"A\r")
        .read(&frame("+000.00"))
        .write(b"AS50.00\r")
        .write(b"A\r")
        .read(&frame("+000.00"))
        .build();
    let err = alicat_on_discrete_clock(mock).call("set_flow", &[("set_point", Value::Number(50.0))]).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }) && !err.may_have_acted, "{err}");
}

#[tokio::test]
async fn a_set_point_that_cannot_be_read_back_fails_as_one_that_may_have_acted() {
    // The set point's answer and three polls' answers are lost: nothing says whether 50 took, so nothing is sent
    // again and the error says it may have acted.
    let mock = Builder::new().write(b"AS50.00\r").write(b"A\r").write(b"A\r").write(b"A\r").build();
    let err = alicat_on_discrete_clock(mock).call("set_flow", &[("set_point", Value::Number(50.0))]).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }) && err.may_have_acted, "{err}");
}

#[tokio::test]
async fn a_flow_look_whose_replies_are_lost_is_one_look_missed_and_two_in_a_row_end_the_dispense() {
    // 1000 uL at 50 sccm take 1.2 s: the look at 1 s is lost three times (0.1 s each), and by then the volume has
    // passed at the flow set, so the flow is closed without another look.
    let lost_look = |b: &mut Builder| {
        b.write(b"A\r").write(b"A\r").write(b"A\r");
    };
    let mut b = Builder::new();
    b.write(b"AS50.00\r").read(&frame("+050.00"));
    lost_look(&mut b);
    b.write(b"AS0.00\r").read(&frame("+000.00"));
    let mut mfc = alicat_on_discrete_clock(b.build());
    let out = mfc.as_dispense().expect("a flow controller dispenses").dispense(Volume(1000.0)).await.unwrap();
    // What flowed while the look was lost counts: less than a poll's flow (50 mL/min for a second) beyond.
    assert!(out.0 >= 1000.0 && out.0 < 1000.0 + 50_000.0 / 60.0, "{out:?}");
    // 5000 uL take 6 s: two looks lost in a row end the dispense, which may have acted, and the flow is closed.
    let mut b = Builder::new();
    b.write(b"AS50.00\r").read(&frame("+050.00"));
    lost_look(&mut b);
    lost_look(&mut b);
    b.write(b"AS0.00\r").read(&frame("+000.00"));
    let mut mfc = alicat_on_discrete_clock(b.build());
    let err = mfc.as_dispense().expect("a flow controller dispenses").dispense(Volume(5000.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }) && err.may_have_acted, "{err}");
}

/// The declared lab's simulators on a clock of `scale` lab seconds per wall second, without their faults.
async fn clean_declared(scale: f64) -> (Lab, devices::sim::SimLab, Clock) {
    let mut lab = declared_lab();
    for i in &mut lab.instruments {
        i.faults = None;
    }
    let clock = Clock::scaled(scale);
    let sims = devices::sim::start(&lab, clock.clone()).await.expect("the simulators start");
    (lab, sims, clock)
}

#[tokio::test]
async fn declared_simulators_sparge_hold_and_weigh_a_vial_through_pseudo_terminals() {
    let (lab, sims, clock) = clean_declared(100.0).await;
    place(&lab, &sims, &clock, 1, "jacket").await;
    let mut mfc = common::connect(&lab, &sims, "mfc", &clock, discard());
    assert_eq!(mfc.identify().await.unwrap().model, "MC-100SCCM-D");
    let out = execute(&mut *mfc, &Task::Dispense { volume: Volume(5000.0) }).await.unwrap();
    let devices::Outcome::Dispensed { volume } = out else { panic!("{out:?}") };
    let sparged: f64 = sims
        .bench()
        .ledger()
        .iter()
        .filter_map(|e| match &e.event {
            Event::Sparged { gas, volume, vessel: Some(1), .. } if gas == "N2" => Some(*volume),
            _ => None,
        })
        .sum();
    // The driver's account of a flow integrated on an accelerated clock is close to the ledger's, not exact.
    assert!(volume.0 >= 5000.0 && (sparged - volume.0).abs() < 0.25 * volume.0, "{volume:?} against {sparged}");
    assert_eq!(sims.bench().vessel(1).unwrap().volume, 0.0, "gas adds no liquid");
    drop(mfc);
    let mut port = common::open(&lab, &sims, "mfc");
    let got = common::write_and_read(&mut port, b"AXX\r", Duration::from_secs(5), |b| b.ends_with(b"\r")).await;
    assert_eq!(got.unwrap(), b"?\r", "an unknown command");

    let mut circulator = common::connect(&lab, &sims, "circulator", &clock, discard());
    circulator.identify().await.unwrap();
    circulator.initialize().await.unwrap();
    let out = execute(
        &mut *circulator,
        &Task::HoldTemperature { temperature: Temperature(40.0), duration: LabDuration(60.0) },
    )
    .await
    .unwrap();
    assert!(matches!(out, Outcome::Held { mean_temperature: Some(t), .. } if (t.0 - 40.0).abs() < 1.0), "{out:?}");
    let plate = sims.bench().plate("jacket").unwrap();
    assert!(!plate.heater_on && plate.set_point == 40.0, "{plate:?}");
    assert!(sims.bench().vessel(1).unwrap().temperature > 30.0, "the vial warmed in the jacket");
    sims.stop().await;
}

#[tokio::test]
async fn the_sartorius_simulator_weighs_the_vial_on_its_pan() {
    let (lab, sims, clock) = clean_declared(common::SCALE).await;
    let mut balance = common::connect(&lab, &sims, "balance", &clock, discard());
    assert_eq!(balance.identify().await.unwrap().model, "BCE224I-1S");
    balance.initialize().await.unwrap();
    place(&lab, &sims, &clock, 3, "balance").await;
    let out = execute(&mut *balance, &Task::Weigh).await.unwrap();
    let devices::Outcome::Measured { value, unit: "g" } = out else { panic!("{out:?}") };
    assert!((value - devices::sim::bench::vial_mass(3)).abs() < 1e-4, "{value}");
    assert!(
        sims.bench().ledger().iter().any(|e| matches!(&e.event, Event::Weighed { vessel: Some(3), .. })),
        "the balance sent a stable weight"
    );
    sims.stop().await;
}

#[tokio::test]
async fn declared_drivers_get_typed_errors_from_simulators_that_lose_and_damage_replies() {
    let mut lab = declared_lab();
    for i in &mut lab.instruments {
        let noisy = Faults { no_reply: 0.3, garbled: 0.3, truncated: 0.2, seed: Some(3), ..Faults::none() };
        i.faults = (i.name != "gantry").then_some(noisy);
        i.line.timeout = Duration::from_millis(60);
    }
    let clock = Clock::scaled(common::SCALE);
    let sims = devices::sim::start(&lab, clock.clone()).await.unwrap();
    let mut answered = 0;
    for name in ["syringe", "mfc", "circulator", "balance"] {
        let mut i = common::connect(&lab, &sims, name, &clock, discard());
        for _ in 0..8 {
            let result = tokio::time::timeout(Duration::from_secs(30), i.identify()).await.expect("never hangs");
            match result {
                Ok(_) => answered += 1,
                Err(e) => assert!(
                    matches!(
                        e.kind,
                        DeviceErrorKind::Timeout { .. }
                            | DeviceErrorKind::Garbled { .. }
                            | DeviceErrorKind::UnknownCommand { .. }
                            | DeviceErrorKind::WrongIdentity { .. }
                    ),
                    "{e}"
                ),
            }
        }
    }
    assert!(answered > 8, "asking again gets most answers through: {answered} of 32");
    sims.stop().await;
}

#[tokio::test]
async fn the_declared_mt_sics_balance_speaks_what_the_rust_driver_speaks() {
    let balance = |mock| driver("mettler_sics_level0", "XS205", &[], mock);
    // The exchanges of the Rust driver's tests (tests/devices/mettler.rs), from the MT-SICS reference.
    let mock = Builder::new().write(b"I2\r\n").read(b"I2 A \"XS205 220.0000 g\"\r\n").build();
    assert_eq!(balance(mock).identify().await.unwrap().model, "XS205");
    let mock = Builder::new().write(b"S\r\n").read(b"S S     100.00 g\r\n").build();
    assert_eq!(balance(mock).weigh().await.unwrap(), Mass(100.0));
    let mock = Builder::new().write(b"Z\r\n").read(b"Z A\r\n").build();
    balance(mock).initialize().await.unwrap();
    let mock = Builder::new().write(b"S\r\n").read(b"S +\r\n").build();
    assert!(balance(mock).weigh().await.unwrap_err().to_string().contains("overload"));
    let mock = Builder::new().write(b"Z\r\n").read(b"ES\r\n").build();
    let err = balance(mock).initialize().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::UnknownCommand { .. }), "{err}");
    // Busy: a query is asked again.
    let mock = Builder::new().write(b"S\r\n").read(b"S I\r\n").write(b"S\r\n").read(b"S S      0.0012 g\r\n").build();
    assert_eq!(balance(mock).weigh().await.unwrap(), Mass(0.0012));
}
