//! Replaying drivers against sessions captured from their simulators: the same driver reproduces every byte; an
//! altered byte in the recording, or a changed driver setting, is found at the exact exchange and byte.

use devices::capability::{Place, Task, execute};
use devices::replay::{Capture, ReplayCall, Transcript, replay};
use devices::transport::discard;
use protocols::units::{Duration as LabDuration, Temperature, Volume};

use crate::common;

/// Captures a session of `name` on its simulator (after the gantry puts vial 0 at `station`), making `calls`.
async fn capture(names: &[&str], name: &str, station: Option<&str>, calls: &[ReplayCall]) -> Transcript {
    let lab = common::clean_lab_with(names);
    let (sims, clock) = common::start(&lab).await;
    let mut gantry = common::connect(&lab, &sims, "gantry", &clock, discard());
    gantry.identify().await.unwrap();
    gantry.initialize().await.unwrap();
    let capture = Capture::new();
    let mut driver = common::connect(&lab, &sims, name, &clock, capture.sink());
    let mut vial = station;
    for call in calls {
        // The vial arrives once the instrument is ready, as in a campaign (a balance zeroes an empty pan).
        if let (ReplayCall::Task(_), Some(s)) = (call, vial.take()) {
            let task = Task::Transfer { from: Place::Rack(0), to: Place::Position(s.into()) };
            execute(gantry.as_mut(), &task).await.unwrap();
        }
        match call {
            ReplayCall::Identify => drop(driver.identify().await.unwrap()),
            ReplayCall::Initialize => driver.initialize().await.unwrap(),
            ReplayCall::Task(t) => drop(execute(driver.as_mut(), t).await.unwrap()),
            ReplayCall::SafeState => driver.safe_state().await.unwrap(),
        }
    }
    sims.stop().await;
    capture.transcript(name, clock.scale(), calls.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_session_replays_byte_for_byte_and_an_altered_byte_is_found() {
    let calls = vec![
        ReplayCall::Identify,
        ReplayCall::Initialize,
        ReplayCall::Task(Task::Dispense { volume: Volume(250.0) }),
        ReplayCall::SafeState,
    ];
    let names = ["gantry", "pump_2"];
    let transcript = capture(&names, "pump_2", Some("station_2"), &calls).await;
    let lab = common::clean_lab_with(&names);
    let spec = lab.instrument("pump_2").unwrap();
    // Through the file form, as `lab replay FILE` would read it.
    let transcript = Transcript::parse(&transcript.to_ron()).unwrap();
    let report = replay(spec, &lab.deck, &transcript, &transcript.calls).await;
    assert!(report.reproduced(), "{report}");
    assert!(report.recorded >= 5, "{report}");

    // Alter one byte of the dispense command in the recording: `/2IA750OA0R\r` becomes `/2IA751OA0R\r`.
    let mut altered = transcript.clone();
    let k = altered.exchanges.iter().position(|e| e.sent.starts_with(b"/2IA750")).expect("the dispense was recorded");
    altered.exchanges[k].sent[6] = b'1';
    let report = replay(spec, &lab.deck, &altered, &calls).await;
    let d = report.divergence.clone().expect("the replay diverges");
    assert_eq!((d.exchange, d.offset, d.call), (k, 6, 2), "{report}");
    assert_eq!(d.expected, b"/2IA751OA0R\r");
    assert_eq!(d.actual, b"/2IA750OA0R\r");
    assert!(report.calls[2].result.is_err(), "the call stops at the divergence");
    assert_eq!(report.calls.len(), 3, "no call after the divergence");
    assert!(report.to_string().contains("exchange"), "{report}");

    // A changed driver setting shows the same way: a faster plunger sends a different speed.
    let mut faster = spec.clone();
    if let devices::lab::DriverConfig::CavroXCalibur(c) = &mut faster.driver {
        c.top_speed = 500;
    }
    let report = replay(&faster, &lab.deck, &transcript, &calls).await;
    let d = report.divergence.expect("the speed differs");
    assert_eq!((d.expected.as_slice(), d.actual.as_slice()), (&b"/2V400R\r"[..], &b"/2V500R\r"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_the_new_instruments_replay_exactly() {
    let balance = [ReplayCall::Identify, ReplayCall::Initialize, ReplayCall::Task(Task::Weigh)];
    // A hold of no time: how many readings a timed hold takes depends on wall-clock jitter during capture, which a
    // replay cannot reproduce (see `devices::replay`); the ramp to the set point is decided by the replies alone.
    let hold = Task::HoldTemperature { temperature: Temperature(35.0), duration: LabDuration(0.0) };
    let block = [ReplayCall::Identify, ReplayCall::Initialize, ReplayCall::Task(hold), ReplayCall::SafeState];
    let probe = [ReplayCall::Identify, ReplayCall::Initialize, ReplayCall::Task(Task::ReadTemperature)];
    let valve = [ReplayCall::Identify, ReplayCall::Initialize, ReplayCall::Task(Task::Select { position: 4 })];
    let oem = [ReplayCall::Identify, ReplayCall::Initialize, ReplayCall::Task(Task::Dispense { volume: Volume(50.0) })];
    let cases: [(&[&str], &str, Option<&str>, &[ReplayCall]); 5] = [
        (&["gantry", "balance_1"], "balance_1", Some("scale_1"), &balance),
        (&["gantry", "block_1"], "block_1", None, &block),
        (&["gantry", "probe_2"], "probe_2", None, &probe),
        (&["gantry", "valve"], "valve", None, &valve),
        (&["gantry", "pump_1"], "pump_1", Some("station_1"), &oem),
    ];
    for (names, name, station, calls) in cases {
        let transcript = capture(names, name, station, calls).await;
        let lab = common::clean_lab_with(names);
        let report = replay(lab.instrument(name).unwrap(), &lab.deck, &transcript, calls).await;
        assert!(report.reproduced(), "{report}");
    }
}
