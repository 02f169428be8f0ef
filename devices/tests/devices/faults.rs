//! Every kind of injected fault, through a pseudo-terminal: the driver's call ends with the right typed error (or
//! recovers, where the protocol lets it), within a bound, and the simulator's ledger says what physically happened.

use std::time::{Duration, Instant};

use devices::capability::{Instrument, Place, Task, execute};
use devices::error::{DeviceError, DeviceErrorKind};
use devices::lab::{Disconnect, Faults, Lab, Latency};
use devices::sim::{Event, SimLab, WireFault};
use devices::transport::discard;
use protocols::units::{Duration as LabDuration, Temperature, Volume};

use crate::common;

/// No call in these tests may take longer than this: a few line timeouts and reconnections at most.
const BOUND: Duration = Duration::from_secs(10);

type Instruments = std::collections::BTreeMap<String, Box<dyn Instrument>>;

/// Starts the gantry and `names` fault-free, readies them, puts vial 0 at `vial_to` if given, and then switches
/// on `faults` for each instrument named, so identification and initialization are clean and the faults hit the
/// calls under test.
async fn bench(names: &[&str], vial_to: Option<&str>, faults: &[(&str, Faults)]) -> (SimLab, Instruments) {
    let lab = lab(names);
    let (sims, clock) = common::start(&lab).await;
    let mut instruments = common::ready(&lab, &sims, &clock, discard()).await;
    if let Some(station) = vial_to {
        let to = Place::Position(station.to_owned());
        execute(instruments.get_mut("gantry").unwrap().as_mut(), &Task::Transfer { from: Place::Rack(0), to })
            .await
            .unwrap();
    }
    for (name, f) in faults {
        assert!(sims.set_faults(name, Some(Faults { seed: Some(5), ..f.clone() })));
    }
    (sims, instruments)
}

/// Runs `task` on `name`, failing the test if it takes longer than [`BOUND`].
async fn run(instruments: &mut Instruments, name: &str, task: Task) -> Result<devices::Outcome, DeviceError> {
    let started = Instant::now();
    let inst = instruments.get_mut(name).unwrap().as_mut();
    let r = tokio::time::timeout(BOUND, execute(inst, &task)).await.expect("the call ends within its bound");
    assert!(started.elapsed() < BOUND);
    r
}

/// The rehearsal lab's gantry and `instruments`, without faults.
fn lab(instruments: &[&str]) -> Lab {
    let mut names = vec!["gantry"];
    names.extend_from_slice(instruments);
    common::clean_lab_with(&names)
}

fn ledger_dispensed(sims: &SimLab, vessel: usize) -> f64 {
    sims.bench()
        .ledger()
        .iter()
        .filter_map(|e| match &e.event {
            Event::Dispensed { vessel: v, volume, .. } if *v == vessel => Some(*volume),
            _ => None,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_pump_refuses_without_acting() {
    let (sims, mut i) =
        bench(&["pump_2"], Some("station_2"), &[("pump_2", Faults { busy: 1.0, ..Faults::none() })]).await;
    let err = run(&mut i, "pump_2", Task::Dispense { volume: Volume(200.0) }).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Busy { .. }) && !err.may_have_acted, "{err}");
    assert_eq!(ledger_dispensed(&sims, 0), 0.0, "nothing moved");
    assert!(sims.faults().iter().any(|f| f.fault == WireFault::Busy));
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firmware_error_is_a_named_code_for_every_instrument_that_has_codes() {
    let error = Faults { firmware_error: 1.0, ..Faults::none() };
    let names = ["pump_2", "balance_1", "block_1", "probe_1"];
    let faults: Vec<(&str, Faults)> = names.iter().map(|n| (*n, error.clone())).collect();
    let (sims, mut i) = bench(&names, Some("station_2"), &faults).await;
    let err = run(&mut i, "pump_2", Task::Dispense { volume: Volume(100.0) }).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(6), .. }) && !err.may_have_acted, "{err}");
    let err = run(&mut i, "balance_1", Task::Weigh).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Firmware { received, .. } if received == b"EL\r\n"), "{err}");
    let hold = Task::HoldTemperature { temperature: Temperature(40.0), duration: LabDuration(10.0) };
    let err = run(&mut i, "block_1", hold).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(4), .. }), "{err}");
    let err = run(&mut i, "probe_1", Task::ReadTemperature).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(-300), .. }), "{err}");
    assert_eq!(ledger_dispensed(&sims, 0), 0.0);
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_stroke_faults_and_the_ledger_holds_half_of_it() {
    let partial = Faults { partial: 1.0, ..Faults::none() };
    let (sims, mut i) = bench(&["pump_2"], Some("station_2"), &[("pump_2", partial)]).await;
    let err = run(&mut i, "pump_2", Task::Dispense { volume: Volume(300.0) }).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(9), .. }) && err.may_have_acted, "{err}");
    let moved = ledger_dispensed(&sims, 0);
    assert!((moved - 150.0).abs() < 0.5, "the plunger stopped halfway through the stroke: {moved} uL");
    // An overload needs a new initialization: the next dispense is refused until then.
    let err = run(&mut i, "pump_2", Task::Dispense { volume: Volume(10.0) }).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Firmware { code: Some(7), .. }) && !err.may_have_acted, "{err}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_is_a_timeout_within_the_line_timeout() {
    let (sims, mut i) = bench(&["balance_2"], None, &[("balance_2", Faults { no_reply: 1.0, ..Faults::none() })]).await;
    let started = Instant::now();
    let err = run(&mut i, "balance_2", Task::Weigh).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Timeout { received, .. } if received.is_empty()), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "one line timeout (1 s) and the settling allowance");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_reply_is_a_timeout_with_the_bytes_that_came() {
    let cut = Faults { truncated: 1.0, ..Faults::none() };
    let (sims, mut i) = bench(&["probe_2"], None, &[("probe_2", cut)]).await;
    let err = i.get_mut("probe_2").unwrap().identify().await.unwrap_err();
    let DeviceErrorKind::Timeout { received, .. } = &err.kind else { panic!("{err}") };
    assert!(b"KEITHLEY INSTRUMENTS INC.,MODEL 2000,1308393,A20  /A02\n".starts_with(received), "{err}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbled_reply_is_reported_with_its_bytes() {
    let garble = Faults { garbled: 1.0, ..Faults::none() };
    let (sims, mut i) = bench(&["balance_3"], None, &[("balance_3", garble)]).await;
    let err = run(&mut i, "balance_3", Task::Weigh).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Garbled { received, .. } if received.contains(&0xFF)), "{err}");
    assert!(!err.may_have_acted);
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_crc_is_a_checksum_error() {
    let crc = Faults { bad_checksum: 1.0, ..Faults::none() };
    let (sims, mut i) = bench(&["block_2"], None, &[("block_2", crc)]).await;
    let hold = Task::HoldTemperature { temperature: Temperature(40.0), duration: LabDuration(10.0) };
    let err = run(&mut i, "block_2", hold).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Checksum { .. }), "{err}");
    // The set point write was refused by the CRC of its echo: the controller may have taken it.
    assert!(err.may_have_acted);
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oem_repeats_get_past_lost_and_corrupted_answers_without_running_twice() {
    let lossy = Faults { no_reply: 0.25, bad_checksum: 0.25, ..Faults::none() };
    let (sims, mut i) = bench(&["pump_1"], Some("station_1"), &[("pump_1", lossy)]).await;
    let mut confirmed = 0;
    for _ in 0..4 {
        // A dispense still fails if one frame loses all its repeats; what matters is what moved.
        if run(&mut i, "pump_1", Task::Dispense { volume: Volume(100.0) }).await.is_ok() {
            confirmed += 1;
        }
    }
    let injected = sims.faults().into_iter().filter(|f| f.instrument == "pump_1").count();
    assert!(injected >= 4, "faults were injected: {injected}");
    let strokes =
        sims.bench().ledger().iter().filter(|e| matches!(e.event, Event::Dispensed { vessel: 0, .. })).count();
    let moved = ledger_dispensed(&sims, 0);
    assert!(strokes <= 4 && moved <= 400.0 + 1e-6, "no stroke ran twice: {strokes} strokes, {moved} uL");
    assert!(strokes >= confirmed && confirmed >= 3, "repeats recovered most dispenses: {confirmed} of 4");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_with_the_last_sequence_number_is_answered_without_running_again() {
    // Every answer's checksum is wrong: the driver repeats each frame until it gives up, and the pump answers each
    // repeat from memory. One dispense string ran, once.
    let crc = Faults { bad_checksum: 1.0, ..Faults::none() };
    let (sims, mut i) = bench(&["pump_1"], Some("station_1"), &[("pump_1", crc)]).await;
    let err = run(&mut i, "pump_1", Task::Dispense { volume: Volume(100.0) }).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Checksum { .. }), "{err}");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The simulated pump settles its moves when it next hears a command.
    let _ = i.get_mut("pump_1").unwrap().identify().await;
    let strokes =
        sims.bench().ledger().iter().filter(|e| matches!(e.event, Event::Dispensed { vessel: 0, .. })).count();
    assert_eq!(strokes, 1, "five frames, one stroke");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_beyond_the_timeout_is_a_timeout_and_below_it_only_slows() {
    let slow = Faults { latency: Latency::Fixed(Duration::from_millis(60)), ..Faults::none() };
    let (sims, mut i) = bench(&["probe_3"], None, &[("probe_3", slow)]).await;
    let started = Instant::now();
    run(&mut i, "probe_3", Task::ReadTemperature).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(60));
    let too_slow = Faults { latency: Latency::Fixed(Duration::from_millis(1500)), ..Faults::none() };
    sims.set_faults("probe_3", Some(too_slow));
    let err = run(&mut i, "probe_3", Task::ReadTemperature).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Timeout { .. }), "{err}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_cable_is_reopened_with_backoff_and_the_pump_works_again() {
    // The lab file's disconnect makes the stable port path; readiness takes fewer than 12 of the pump's commands.
    let down = Disconnect { after: 12, down: Duration::from_millis(200) };
    let lab = common::with_faults(lab(&["pump_2"]), "pump_2", Faults { disconnect: Some(down), ..Faults::none() });
    let (sims, clock) = common::start(&lab).await;
    let (sink, log) = common::collector();
    let mut gantry = common::connect_reopening(&lab, &sims, "gantry", &clock, discard());
    gantry.identify().await.unwrap();
    gantry.initialize().await.unwrap();
    let to = Place::Position("station_2".into());
    execute(gantry.as_mut(), &Task::Transfer { from: Place::Rack(0), to }).await.unwrap();
    let mut pump = common::connect_reopening(&lab, &sims, "pump_2", &clock, sink);
    pump.identify().await.unwrap();
    pump.initialize().await.unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..8 {
        let started = Instant::now();
        let r = tokio::time::timeout(BOUND, execute(pump.as_mut(), &Task::Dispense { volume: Volume(50.0) }))
            .await
            .expect("bounded");
        assert!(started.elapsed() < BOUND);
        outcomes.push(r);
    }
    let disconnects = sims.faults().iter().filter(|f| f.fault == WireFault::Disconnected).count();
    assert!(disconnects >= 1, "the cable came out");
    for r in &outcomes {
        if let Err(e) = r {
            assert!(matches!(e.kind, DeviceErrorKind::Reconnected { .. }), "a lost reply is `Reconnected`: {e}");
        }
    }
    assert!(outcomes.last().unwrap().is_ok(), "{outcomes:?}");
    let notes: Vec<String> = log.lock().unwrap().iter().filter_map(|e| e.parsed.clone()).collect();
    assert!(notes.iter().any(|n| n.contains("open again")), "every reopening is recorded");
    // A disconnect stops no plunger: every confirmed dispense moved, and none moved more than asked.
    let ok = outcomes.iter().filter(|r| r.is_ok()).count() as f64;
    let moved = ledger_dispensed(&sims, 0);
    assert!(moved >= 50.0 * ok - 1e-6 && moved <= 400.0 + 1e-6, "{moved} uL for {ok} confirmed dispenses");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_never_comes_back_is_disconnected_after_bounded_attempts() {
    let down = Disconnect { after: 2, down: Duration::from_secs(3600) };
    let mut lab =
        common::with_faults(lab(&["probe_1"]), "probe_1", Faults { disconnect: Some(down), ..Faults::none() });
    lab.instruments[1].line.reconnect.attempts = 3;
    let (sims, clock) = common::start(&lab).await;
    let mut probe = common::connect_reopening(&lab, &sims, "probe_1", &clock, discard());
    probe.identify().await.unwrap();
    // `initialize` sends *RST and *CLS, unanswered, and the port goes after the second.
    let started = Instant::now();
    let err = probe.initialize().await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Disconnected), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "three attempts of bounded backoff");
    let err = execute(probe.as_mut(), &Task::ReadTemperature).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Disconnected), "{err}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_controller_and_balance_refuse_their_step() {
    let busy = Faults { busy: 1.0, ..Faults::none() };
    let (sims, mut i) = bench(&["block_3", "balance_2"], None, &[("block_3", busy.clone()), ("balance_2", busy)]).await;
    let hold = Task::HoldTemperature { temperature: Temperature(40.0), duration: LabDuration(10.0) };
    let err = run(&mut i, "block_3", hold).await.unwrap_err();
    assert!(matches!(err.kind, DeviceErrorKind::Busy { .. }) && !err.may_have_acted, "{err}");
    let err = run(&mut i, "balance_2", Task::Weigh).await.unwrap_err();
    assert!(matches!(&err.kind, DeviceErrorKind::Busy { received, .. } if received == b"S I\r\n"), "{err}");
    sims.stop().await;
}

/// The cable pulled on a command that has no reply (the valve's `GO3`), and the driver's next command (`CP`) written
/// at the same lab instant: `CP` goes nowhere and the driver finds the port gone when it reads for the reply,
/// whether it wrote `CP` before the simulator handled `GO3` (the order an idle machine gives; this runtime has one
/// thread and runs the simulator only when the driver waits) or after (the order a loaded machine may give, forced
/// here). Before, the port closed as soon as `GO3` was handled, so a `CP` written after that failed to write, was
/// sent again on the reopened port and succeeded: one run, two records.
#[tokio::test]
async fn a_command_after_a_pull_on_one_without_reply_goes_nowhere_whoever_runs_first() {
    let idle = pull_on_a_command_without_reply(false).await;
    let loaded = pull_on_a_command_without_reply(true).await;
    assert_eq!(idle, loaded, "one outcome and one record whatever ran first");
    let (error, exchanges) = idle;
    assert!(error.starts_with("Reconnected"), "the port was lost after `CP` was written: {error}");
    let cp = exchanges.iter().filter(|e| e.sent == b"CP\r").count();
    assert_eq!(cp, 2, "`CP` written once before the pull and once after it, never again: {exchanges:#?}");
}

/// Asks a valve where it is, turns it to port 3 (the cable comes out as it does) and asks again, at one lab
/// instant; first waits until the simulator has handled the turn if `simulator_first`. The error of the last
/// question and every exchange.
async fn pull_on_a_command_without_reply(simulator_first: bool) -> (String, Vec<devices::transport::Exchange>) {
    use devices::transport::{Link, Terminated, open_serial, serial_opener};
    let down = Disconnect { after: 2, down: Duration::from_millis(300) };
    let lab = common::with_faults(
        common::clean_lab_with(&["valve"]),
        "valve",
        Faults { disconnect: Some(down), ..Faults::none() },
    );
    let clock = devices::Clock::discrete();
    let sims = devices::sim::start(&lab, clock.clone()).await.expect("the simulator starts");
    let (line, path) = (&lab.instrument("valve").expect("in the lab").line, sims.ports["valve"].clone());
    let (sink, log) = common::collector();
    let port = open_serial("valve", &path, line).expect("the pseudo-terminal opens");
    let mut link = Link::new(port, "valve", clock.clone(), sink, line.timeout)
        .reopening(serial_opener("valve", &path, line), line.reconnect);
    let mut cr = Terminated::new(b"\r", 64);
    let asked = devices::clock::party(vec![clock.hold()], async {
        link.request(b"CP\r", &mut cr).await.expect("the valve answers");
        link.send(b"GO3\r").await.expect("the turn is written");
        if simulator_first {
            let pulled = || sims.faults().iter().any(|f| f.fault == WireFault::Disconnected);
            for _ in 0..1000 {
                if pulled() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert!(pulled(), "the simulator handled the turn, and the cable came out");
        }
        tokio::time::timeout(BOUND, link.request(b"CP\r", &mut cr)).await.expect("bounded")
    })
    .await;
    drop(link);
    sims.stop().await;
    let error = format!("{:?}", asked.expect_err("the answer to `CP` is lost with the port").kind);
    let mut exchanges = log.lock().unwrap().clone();
    // Each run's port has a path of its own.
    for e in &mut exchanges {
        e.error = e.error.as_ref().map(|m| m.replace(path.as_str(), "<port>"));
    }
    (error, exchanges)
}
