//! The Marlin gantry driver against literal exchanges, and against its simulator through a pseudo-terminal.

use std::time::Duration;

use devices::capability::{Instrument, Place, Transfer};
use devices::clock::Clock;
use devices::drivers::gantry::Gantry;
use devices::error::DeviceErrorKind;
use devices::lab::DriverConfig;
use devices::sim::{Event, Location};
use devices::transport::{Link, discard};
use tokio_test::io::Builder;

use crate::common;

fn gantry(mock: tokio_test::io::Mock) -> Gantry<tokio_test::io::Mock> {
    let lab = common::sim_lab();
    let DriverConfig::GcodeGantry(config) = lab.instrument("gantry").unwrap().driver.clone() else { unreachable!() };
    Gantry::new(
        "gantry",
        config,
        lab.deck,
        Link::new(mock, "gantry", Clock::scaled(1e5), discard(), Duration::from_millis(200)),
    )
}

fn initialized(b: &mut Builder) -> &mut Builder {
    b.write(b"M280 P0\n")
        .read(b"echo: Servo 0: 0\nok\n")
        .write(b"G28\n")
        .read(b"echo:busy: processing\n")
        .read(b"echo:busy: processing\nok\n")
        .write(b"G90\n")
        .read(b"ok\n")
        .write(b"M280 P0 S0\n")
        .read(b"ok\n")
        .write(b"G0 Z90 F3000\n")
        .read(b"ok\n")
        .write(b"M400\n")
        .read(b"ok\n")
        .write(b"M114\n")
        .read(b"X:0.00 Y:0.00 Z:90.00 E:0.00 Count X:0 Y:0 Z:36000\nok\n")
}

#[tokio::test]
async fn identify_parses_m115() {
    let mock = Builder::new()
        .write(b"M115\n")
        .read(b"FIRMWARE_NAME:Marlin 2.1.2.4 (Github) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:Lab Gantry EXTRUDER_COUNT:0 UUID:cede2a2f\nCap:EEPROM:0\nok\n")
        .build();
    let id = gantry(mock).identify().await.unwrap();
    assert_eq!(id.model, "Lab Gantry");
    assert_eq!(id.firmware.as_deref(), Some("Marlin 2.1.2.4 (Github)"));
    assert_eq!(id.serial.as_deref(), Some("cede2a2f"));
}

/// A controller killed while `M400` waited for motion leaves that command's `ok` to come after it is gone; the next
/// controller's `M115` is answered after it, as Marlin answers in order.
#[tokio::test]
async fn identify_reads_past_the_ok_of_a_command_sent_before_a_crash() {
    let mock = Builder::new()
        .write(b"M115\n")
        .read(b"ok\n")
        .read(b"FIRMWARE_NAME:Marlin 2.1.2.4 (Github) MACHINE_TYPE:Lab Gantry UUID:cede2a2f\nok\n")
        .build();
    let id = gantry(mock).identify().await.unwrap();
    assert_eq!(id.model, "Lab Gantry");
}

#[tokio::test]
async fn a_transfer_descends_grips_carries_releases_and_checks_the_position() {
    let mock = initialized(&mut Builder::new())
        .write(b"G0 Z90 F3000\n")
        .read(b"ok\n")
        .write(b"G0 X20 Y20\n")
        .read(b"ok\n")
        .write(b"G0 Z8\n")
        .read(b"ok\n")
        .write(b"M400\n")
        .read(b"echo:busy: processing\nok\n")
        .write(b"M280 P0 S90\n")
        .read(b"ok\n")
        .write(b"G4 P500\n")
        .read(b"ok\n")
        .write(b"G0 Z90\n")
        .read(b"ok\n")
        .write(b"G0 X250 Y30\n")
        .read(b"ok\n")
        .write(b"G0 Z10\n")
        .read(b"ok\n")
        .write(b"M400\n")
        .read(b"ok\n")
        .write(b"M280 P0 S0\n")
        .read(b"echo:Unknown command: \"M280 P0 S0\"\nok\n")
        .write(b"G4 P500\n")
        .read(b"ok\n")
        .write(b"G0 Z90\n")
        .read(b"ok\n")
        .write(b"M400\n")
        .read(b"ok\n")
        .write(b"M114\n")
        .read(b"X:250.00 Y:30.00 Z:90.00 E:0.00 Count X:20000 Y:2400 Z:36000\nok\n")
        .build();
    let mut g = gantry(mock);
    g.initialize().await.unwrap();
    g.transfer(&Place::Rack(0), &Place::Position("dispense".into())).await.unwrap();
}

/// A gripper found closed may hold a vessel (a controller stopped while it carried one): initializing, which homes
/// and then opens the gripper, would drop it at home, so it refuses and moves nothing.
#[tokio::test]
async fn initializing_with_the_gripper_closed_is_refused_before_anything_moves() {
    let mock = Builder::new().write(b"M280 P0\n").read(b"echo: Servo 0: 90\nok\n").build();
    let err = gantry(mock).initialize().await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::NotReady(m) if m.contains("may hold a vessel")), "{err}");
    assert!(!err.may_have_acted);
}

#[tokio::test]
async fn an_error_line_is_a_firmware_error() {
    let mock = initialized(&mut Builder::new())
        .write(b"G0 Z90 F3000\n")
        .read(b"Error:Printer halted. kill() called!\n")
        .build();
    let mut g = gantry(mock);
    g.initialize().await.unwrap();
    let err = g.transfer(&Place::Rack(0), &Place::Rack(1)).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Firmware { message, .. } if message.contains("halted")), "{err}");
}

#[tokio::test]
async fn a_wrong_final_position_is_reported() {
    let mut b = Builder::new();
    initialized(&mut b);
    for (cmd, reply) in [
        (&b"G0 Z90 F3000\n"[..], &b"ok\n"[..]),
        (b"G0 X20 Y20\n", b"ok\n"),
        (b"G0 Z8\n", b"ok\n"),
        (b"M400\n", b"ok\n"),
        (b"M280 P0 S90\n", b"ok\n"),
        (b"G4 P500\n", b"ok\n"),
        (b"G0 Z90\n", b"ok\n"),
        (b"G0 X42 Y20\n", b"ok\n"),
        (b"G0 Z8\n", b"ok\n"),
        (b"M400\n", b"ok\n"),
        (b"M280 P0 S0\n", b"ok\n"),
        (b"G4 P500\n", b"ok\n"),
        (b"G0 Z90\n", b"ok\n"),
        (b"M400\n", b"ok\n"),
        (b"M114\n", b"X:42.00 Y:20.00 Z:80.00 E:0.00 Count X:0 Y:0 Z:0\nok\n"),
    ] {
        b.write(cmd).read(reply);
    }
    let mut g = gantry(b.build());
    g.initialize().await.unwrap();
    let err = g.transfer(&Place::Rack(0), &Place::Rack(1)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Physical(_)), "{err}");
    assert!(err.may_have_acted);
}

#[tokio::test]
async fn places_are_checked_before_anything_moves() {
    let mut g = gantry(initialized(&mut Builder::new()).build());
    let err = g.transfer(&Place::Rack(0), &Place::Rack(1)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::NotReady(_)), "{err}");
    g.initialize().await.unwrap();
    let err = g.transfer(&Place::Rack(99), &Place::Rack(1)).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)), "{err}");
    let err = g.transfer(&Place::Rack(0), &Place::Position("sink".into())).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Limit(_)), "{err}");
    assert!(!err.may_have_acted);
}

#[tokio::test]
async fn the_driver_moves_vials_on_its_simulator_through_a_pseudo_terminal() {
    let lab = common::lab_with(&["gantry"]);
    let (sims, clock) = common::start(&lab).await;
    let (sink, log) = common::collector();
    let mut g = common::connect(&lab, &sims, "gantry", &clock, sink);
    let id = g.identify().await.unwrap();
    assert!(id.firmware.unwrap().starts_with("Marlin"));
    g.initialize().await.unwrap();
    let hotplate = Place::Position("hotplate_1".into());
    g.as_transfer().unwrap().transfer(&Place::Rack(0), &hotplate).await.unwrap();
    assert_eq!(sims.bench().vessel(0).unwrap().location, Location::At(hotplate.clone()));
    // Slot 0 is empty now: the gripper closes on nothing, which the driver cannot see but the bench records.
    g.as_transfer().unwrap().transfer(&Place::Rack(0), &Place::Rack(1)).await.unwrap();
    let events: Vec<Event> = sims.bench().ledger().into_iter().map(|e| e.event).collect();
    assert!(events.contains(&Event::Placed { vessel: 0, from: Place::Rack(0), to: hotplate.clone() }));
    assert!(events.iter().any(|e| matches!(e, Event::GrippedNothing { .. })));
    g.safe_state().await.unwrap();
    assert!(log.lock().unwrap().iter().any(|e| e.sent == b"M400\n" && e.received.ends_with(b"ok\n")));
    sims.stop().await;
}
