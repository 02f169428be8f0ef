//! The IKA NAMUR driver against literal exchanges, and against its simulator through a pseudo-terminal.

use std::time::Duration;

use devices::capability::{Heat, Instrument, Outcome};
use devices::clock::Clock;
use devices::drivers::ika::IkaHotplate;
use devices::error::DeviceErrorKind;
use devices::lab::{DriverConfig, IkaConfig};
use devices::sim::Event;
use devices::transport::{Link, discard};
use protocols::units::{Duration as LabDuration, Speed, Temperature};
use tokio_test::io::Builder;

use crate::common;

fn plate(mock: tokio_test::io::Mock) -> IkaHotplate<tokio_test::io::Mock> {
    let config = IkaConfig {
        model: "RCT digital".into(),
        max_temperature: Temperature(310.0),
        max_speed: Speed(1500.0),
        tolerance: Temperature(1.0),
        watchdog: None,
    };
    // At this scale the watchdog is 1500 s and every poll is the 5 ms wall minimum.
    IkaHotplate::new("hp", config, Link::new(mock, "hp", Clock::scaled(1e5), discard(), Duration::from_millis(100)))
}

#[tokio::test]
async fn a_reading_parses_value_and_index() {
    let mock = Builder::new().write(b"IN_PV_2\r\n").read(b"25.3 2\r\n").build();
    let mut link = Link::new(mock, "hp", Clock::manual(), discard(), Duration::from_millis(100));
    let line = link.request(b"IN_PV_2\r\n", &mut devices::drivers::ika::NamurDecoder).await.unwrap();
    assert_eq!(devices::drivers::ika::parse_reading(&line, 2), Some(25.3));
}

#[tokio::test]
async fn identify_checks_the_model() {
    let id = plate(Builder::new().write(b"IN_NAME\r\n").read(b"RCT digital\r\n").build()).identify().await.unwrap();
    assert_eq!(id.model, "RCT digital");
    let err = plate(Builder::new().write(b"IN_NAME\r\n").read(b"C-MAG HS7\r\n").build()).identify().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
}

#[tokio::test]
async fn writes_are_not_answered() {
    let mock = Builder::new().write(b"STOP_1\r\n").write(b"STOP_4\r\n").build();
    plate(mock).safe_state().await.unwrap();
}

#[tokio::test]
async fn an_unknown_command_gets_silence_and_the_read_times_out() {
    let mock = Builder::new().write(b"IN_NAME\r\n").wait(Duration::from_millis(500)).build();
    let err = plate(mock).identify().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Timeout { sent, .. } if sent == b"IN_NAME\r\n"), "{err}");
    assert!(!err.may_have_acted);
}

#[tokio::test]
async fn heat_arms_the_watchdog_sets_confirms_ramps_holds_and_stops() {
    let mock = Builder::new()
        .write(b"OUT_WD1@1500\r\n")
        .read(b"1500\r\n")
        .write(b"OUT_SP_1 60\r\n")
        .write(b"IN_SP_1\r\n")
        .read(b"60.0 1\r\n")
        .write(b"START_1\r\n")
        .write(b"OUT_SP_4 600\r\n")
        .write(b"IN_SP_4\r\n")
        .read(b"600 4\r\n")
        .write(b"START_4\r\n")
        .write(b"IN_PV_2\r\n")
        .read(b"25.3 2\r\n")
        .write(b"IN_PV_2\r\n")
        .read(b"59.4 2\r\n")
        .write(b"IN_PV_2\r\n")
        .read(b"60.2 2\r\n")
        .write(b"STOP_1\r\n")
        .write(b"STOP_4\r\n")
        .build();
    let out = plate(mock).heat(Temperature(60.0), LabDuration(20.0), Some(Speed(600.0))).await.unwrap();
    let Outcome::Held { mean_temperature, ramp } = out else { panic!("{out:?}") };
    assert_eq!(mean_temperature, Some(Temperature(60.2)));
    assert!(ramp.0 > 0.0);
}

#[tokio::test]
async fn a_set_point_that_does_not_read_back_fails_and_switches_off() {
    let mock = Builder::new()
        .write(b"OUT_WD1@1500\r\n")
        .read(b"1500\r\n")
        .write(b"OUT_SP_1 60\r\n")
        .write(b"IN_SP_1\r\n")
        .read(b"25.0 1\r\n")
        .write(b"STOP_1\r\n")
        .write(b"STOP_4\r\n")
        .build();
    let err = plate(mock).heat(Temperature(60.0), LabDuration(20.0), None).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Physical(_)), "{err}");
    assert!(err.may_have_acted);
}

#[tokio::test]
async fn limits_are_checked_before_anything_is_sent() {
    let err = plate(Builder::new().build()).heat(Temperature(400.0), LabDuration(1.0), None).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)));
    let err =
        plate(Builder::new().build()).heat(Temperature(60.0), LabDuration(1.0), Some(Speed(2000.0))).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)));
}

#[tokio::test]
async fn the_driver_heats_its_simulator_through_a_pseudo_terminal() {
    let lab = common::lab_with(&["hotplate_2"]);
    let (sims, clock) = common::start(&lab).await;
    let (sink, log) = common::collector();
    let mut hp = common::connect(&lab, &sims, "hotplate_2", &clock, sink);
    assert_eq!(hp.identify().await.unwrap().model, "RCT digital");
    hp.initialize().await.unwrap();
    let out = hp.as_heat().unwrap().heat(Temperature(45.0), LabDuration(120.0), Some(Speed(600.0))).await.unwrap();
    let Outcome::Held { mean_temperature: Some(mean), ramp } = out else { panic!("{out:?}") };
    assert!((mean.0 - 45.0).abs() < 1.0, "held at {mean}");
    assert!(ramp.0 > 60.0, "a plate ramps about 10 degC/min, took {ramp}");
    // Writes are not answered; a read after them is answered only once the plate has taken them.
    hp.identify().await.unwrap();
    let plate = sims.bench().plate("hotplate_2").unwrap();
    assert!(!plate.heater_on && !plate.motor_on);
    let events: Vec<Event> = sims.bench().ledger().into_iter().map(|e| e.event).collect();
    assert!(events.contains(&Event::HeaterSetPoint { position: "hotplate_2".into(), set_point: 45.0 }));
    assert!(events.contains(&Event::Heater { position: "hotplate_2".into(), on: false }));
    assert!(!events.iter().any(|e| matches!(e, Event::WatchdogTripped { .. })));
    assert!(log.lock().unwrap().iter().any(|e| e.sent == b"START_1\r\n" && e.received.is_empty()));
    sims.stop().await;
}

#[tokio::test]
async fn the_simulated_watchdog_switches_a_forgotten_plate_off() {
    let lab = common::lab_with(&["hotplate_3"]);
    let clock = Clock::manual();
    let sims = devices::sim::start(&lab, clock.clone()).await.unwrap();
    let spec = lab.instrument("hotplate_3").unwrap();
    let port = devices::transport::open_serial("hotplate_3", &sims.ports["hotplate_3"], &spec.line).unwrap();
    let mut link = Link::new(port, "hotplate_3", clock.clone(), discard(), Duration::from_secs(1));
    let echo = link.request(b"OUT_WD1@30\r\n", &mut devices::drivers::ika::NamurDecoder).await.unwrap();
    assert_eq!(echo, "30");
    link.send(b"OUT_SP_1 80\r\nSTART_1\r\n").await.unwrap();
    let sp = link.request(b"IN_SP_1\r\n", &mut devices::drivers::ika::NamurDecoder).await.unwrap();
    assert_eq!(sp, "80.0 1");
    clock.advance(60.0);
    let plate = sims.bench().plate("hotplate_3").unwrap();
    assert!(!plate.heater_on, "30 s of silence trips the watchdog");
    assert!(
        sims.bench()
            .ledger()
            .iter()
            .any(|e| e.event == Event::WatchdogTripped { position: "hotplate_3".into() } && e.at == 30.0)
    );
    sims.stop().await;
}

/// Sends `command` and waits `wait` for an answer line; `None` if the plate stayed silent.
async fn answer(port: &mut devices::transport::SerialStream, command: &str, wait: Duration) -> Option<String> {
    let line = format!("{command}\r\n");
    let got = common::write_and_read(port, line.as_bytes(), wait, |b| b.ends_with(b"\r\n")).await.ok()?;
    Some(String::from_utf8(got).unwrap().trim_end().to_owned())
}

#[tokio::test]
async fn each_simulated_model_answers_only_its_own_commands() {
    let mut lab = common::lab_with(&["hotplate_1", "hotplate_2"]);
    let DriverConfig::IkaHotplate(c) = &mut lab.instruments[1].driver else { panic!("a hotplate") };
    c.model = "RET control-visc".into();
    let (sims, _clock) = common::start(&lab).await;
    let open = |name: &str| common::open(&lab, &sims, name);
    let quiet = Duration::from_millis(150);
    let mut rct = open("hotplate_1");
    for lacking in ["IN_PV_7", "IN_TYPE", "STATUS_1", "IN_SP_2"] {
        assert_eq!(answer(&mut rct, lacking, quiet).await, None, "an RCT digital is silent on {lacking}");
    }
    assert_eq!(answer(&mut rct, "IN_NAME", quiet).await.as_deref(), Some("RCT digital"));
    let mut ret = open("hotplate_2");
    assert_eq!(answer(&mut ret, "IN_NAME", quiet).await.as_deref(), Some("IKARET"));
    assert_eq!(answer(&mut ret, "IN_TYPE", quiet).await.as_deref(), Some("RET control-visc"));
    assert_eq!(answer(&mut ret, "IN_PV_7", quiet).await.as_deref(), Some("22.0 7"));
    assert_eq!(answer(&mut ret, "STATUS_1", quiet).await.as_deref(), Some("12"));
    answer(&mut ret, "START_1", quiet).await;
    assert_eq!(answer(&mut ret, "STATUS_1", quiet).await.as_deref(), Some("11"));
    // Its motor turns from 50 rpm: a lower set point is ignored, as one outside its range.
    answer(&mut ret, "OUT_SP_4 30", quiet).await;
    assert_eq!(answer(&mut ret, "IN_SP_4", quiet).await.as_deref(), Some("0 4"));
    sims.stop().await;
}

#[tokio::test]
async fn the_driver_knows_a_ret_control_visc_by_its_name_and_speed_range() {
    let mut lab = common::lab_with(&["hotplate_2"]);
    let DriverConfig::IkaHotplate(c) = &mut lab.instruments[0].driver else { panic!("a hotplate") };
    c.model = "RET control-visc".into();
    let (sims, clock) = common::start(&lab).await;
    let mut hp = common::connect(&lab, &sims, "hotplate_2", &clock, discard());
    assert_eq!(hp.identify().await.unwrap().model, "IKARET");
    let err = hp.as_stir().unwrap().stir(Speed(20.0), LabDuration(5.0)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)) && !err.may_have_acted, "{err}");
    sims.stop().await;
}
