//! The VICI selector valve driver against literal exchanges from the notes, and against its simulator through a
//! pseudo-terminal, choosing which reservoir a pump draws from.

use std::collections::BTreeMap;
use std::time::Duration;

use devices::capability::{Instrument, Place, Select, Task, execute};
use devices::clock::Clock;
use devices::drivers::vici::ViciValve;
use devices::error::DeviceErrorKind;
use devices::lab::ValveConfig;
use devices::sim::Event;
use devices::transport::{Link, discard};
use protocols::units::Volume;
use tokio_test::io::Builder;

use crate::common;

fn valve(mock: tokio_test::io::Mock, id: Option<char>) -> ViciValve<tokio_test::io::Mock> {
    let config = ValveConfig { positions: 10, id, feeds: None, ports: BTreeMap::new(), line: None, waste: None };
    ViciValve::new("v", config, Link::new(mock, "v", Clock::scaled(1e5), discard(), Duration::from_millis(100)))
}

#[tokio::test]
async fn identify_checks_the_number_of_ports_and_the_id() {
    let mock = Builder::new()
        .write(b"/ZVR\r")
        .read(b"EUHA 1.06\r")
        .write(b"/ZNP\r")
        .read(b"NP10\r")
        .write(b"/ZID\r")
        .read(b"IDZ\r")
        .build();
    let id = valve(mock, Some('Z')).identify().await.unwrap();
    assert_eq!(id.firmware.as_deref(), Some("EUHA 1.06"));
    let mock = Builder::new().write(b"VR\r").read(b"EUHA 1.06\r").write(b"NP\r").read(b"NP06\r").build();
    let err = valve(mock, None).identify().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::WrongIdentity { .. }), "{err}");
}

#[tokio::test]
async fn a_selection_goes_and_confirms_the_port() {
    // `GO5` is never answered in IFM0; `CP` reports the old port until the valve arrives.
    let mock = Builder::new().write(b"GO5\r").write(b"CP\r").read(b"CP01\r").write(b"CP\r").read(b"CP05\r").build();
    valve(mock, None).select(5).await.unwrap();
}

#[tokio::test]
async fn an_impossible_port_is_refused_before_sending_and_a_stuck_valve_is_physical() {
    let err = valve(Builder::new().build(), None).select(11).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)) && !err.may_have_acted, "{err}");
    let err =
        valve(Builder::new().write(b"GO2\r").write(b"CP\r").read(b"CPX\r").build(), None).select(2).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Garbled { .. }) && err.may_have_acted, "{err}");
}

#[tokio::test]
async fn the_valve_chooses_what_the_pump_draws() {
    let lab = common::clean_lab_with(&["gantry", "pump_3", "valve"]);
    let (sims, clock) = common::start(&lab).await;
    let mut bench = common::ready(&lab, &sims, &clock, discard()).await;
    let at = Place::Position("station_3".into());
    execute(bench.get_mut("gantry").unwrap().as_mut(), &Task::Transfer { from: Place::Rack(0), to: at.clone() })
        .await
        .unwrap();
    execute(bench.get_mut("valve").unwrap().as_mut(), &Task::Select { position: 2 }).await.unwrap();
    execute(bench.get_mut("pump_3").unwrap().as_mut(), &Task::Dispense { volume: Volume(100.0) }).await.unwrap();
    bench.get_mut("valve").unwrap().as_select().unwrap().select(1).await.unwrap();
    execute(bench.get_mut("pump_3").unwrap().as_mut(), &Task::Dispense { volume: Volume(50.0) }).await.unwrap();
    let vessel = sims.bench().vessel(0).unwrap();
    assert!((vessel.contents["B"] - 100.0).abs() < 0.5, "{:?}", vessel.contents);
    assert!((vessel.contents["A"] - 50.0).abs() < 0.5, "{:?}", vessel.contents);
    let moves: Vec<u32> = sims
        .bench()
        .ledger()
        .into_iter()
        .filter_map(|e| match e.event {
            Event::ValveMoved { position } => Some(position),
            _ => None,
        })
        .collect();
    assert_eq!(moves, vec![2, 1]);
    sims.stop().await;
}
