//! The Mettler Toledo MT-SICS driver against literal exchanges from the notes, and against its simulator through
//! a pseudo-terminal, weighing a vial the gantry put on the pan after a pump filled it.

use std::time::Duration;

use devices::capability::{Instrument, Outcome, Place, Task, Weigh, execute};
use devices::clock::Clock;
use devices::drivers::mettler::MettlerBalance;
use devices::error::DeviceErrorKind;
use devices::lab::BalanceConfig;
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
async fn initialize_resets_and_zeroes() {
    // `@` answers with the serial number, not with an `@` line.
    let mock = Builder::new().write(b"@\r\n").read(b"I4 A \"1126493049\"\r\n").write(b"Z\r\n").read(b"Z A\r\n").build();
    balance(mock).initialize().await.unwrap();
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
