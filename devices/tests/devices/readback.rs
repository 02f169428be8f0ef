//! Steps in doubt settled by reading the instrument back, per instrument kind and per outcome: still running and
//! carried on, finished while the controller was away, switched off (or stopped partway), contradicting the
//! record, and silent. Each test runs a step on a simulator through a pseudo-terminal, drops its driver in the
//! middle (the controller dies; the simulated instrument does not), connects a new driver, reads the instrument
//! back, and settles the step with what the first driver's exchanges left in "the record", as a resumed
//! controller does; then it checks the decision against the simulated bench's ledger.

use std::sync::{Arc, Mutex};
use std::time::Duration as WallDuration;

use devices::capability::{Instrument, Outcome, Place, Task, execute};
use devices::clock::Clock;
use devices::lab::{DriverConfig, Faults, Lab};
use devices::readback::{Actual, Doubt, Observed, RecordedExchange, Settlement, Verdict};
use devices::sim::{Event, Location, SimLab};
use devices::transport::Exchange;
use protocols::units::{Duration, Speed, Temperature, Volume};

use crate::common;

/// The record's view of a driver's exchanges, with their order as their ids.
fn recorded(log: &Arc<Mutex<Vec<Exchange>>>) -> Vec<RecordedExchange> {
    log.lock()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, e)| RecordedExchange {
            id: i as i64 + 1,
            sent_at: e.sent_at,
            sent: e.sent.clone(),
            replied_at: e.replied_at,
            received: e.received.clone(),
        })
        .collect()
}

/// A controller that dies in the middle of a step.
struct Crashed {
    task: Task,
    started: f64,
    record: Vec<RecordedExchange>,
    /// The driver's exchanges before the step (identifying and initializing the instrument).
    before: Vec<RecordedExchange>,
}

/// Runs `task` on a fresh driver for `name` until `until` holds of the simulated bench, then drops the driver in
/// the middle of whatever it was doing, as a killed controller does.
async fn crash_during(
    lab: &Lab,
    sims: &SimLab,
    clock: &Clock,
    name: &str,
    task: Task,
    until: impl Fn(&SimLab, &[Exchange]) -> bool,
) -> Crashed {
    let (sink, log) = common::collector();
    let mut inst = common::connect(lab, sims, name, clock, sink);
    inst.identify().await.unwrap();
    inst.initialize().await.unwrap();
    let before = recorded(&log);
    log.lock().unwrap().clear();
    let started = clock.now();
    let t = task.clone();
    let run = tokio::spawn(async move {
        let mut inst = inst;
        let out = execute(inst.as_mut(), &t).await;
        (inst, out)
    });
    for _ in 0..20_000 {
        if until(sims, &log.lock().unwrap()) || run.is_finished() {
            break;
        }
        tokio::time::sleep(WallDuration::from_millis(1)).await;
    }
    assert!(!run.is_finished(), "the step ended before the crash: {:?}", run.await.map(|r| r.1));
    run.abort();
    let _ = run.await;
    Crashed { task, started, record: recorded(&log), before }
}

/// A new driver for `name`, identified (not initialized: a resumed controller reads it back first).
async fn resumed(lab: &Lab, sims: &SimLab, clock: &Clock, name: &str) -> Box<dyn Instrument> {
    let mut inst = common::connect(lab, sims, name, clock, devices::transport::discard());
    inst.identify().await.unwrap();
    inst
}

/// Reads `inst` back and settles the crashed step from it and the record.
async fn settle(lab: &Lab, inst: &mut dyn Instrument, crashed: &Crashed, clock: &Clock) -> (Observed, Verdict) {
    let observed = inst.as_read_back().expect("the driver reads back").observe().await.unwrap();
    let doubt = Doubt {
        task: &crashed.task,
        asked: &crashed.task,
        started: crashed.started,
        exchanges: Some(&crashed.record),
        before: Some(&crashed.before),
    };
    let spec = lab.instrument(inst.name()).unwrap();
    let verdict = devices::drivers::settle(spec, clock.scale(), &doubt, &observed, clock.now());
    (observed, verdict)
}

/// Sleeps `lab` seconds of the fast clock.
async fn lab_sleep(clock: &Clock, lab: f64) {
    clock.sleep(lab).await;
}

fn heat(t: f64, hold: f64) -> Task {
    Task::Heat { temperature: Temperature(t), duration: Duration(hold), stir: Some(Speed(600.0)) }
}

/// A vial stands on the hotplate at `position`, as if carried there.
async fn vial_on(lab: &Lab, sims: &SimLab, clock: &Clock, position: &str) {
    let mut gantry = common::connect(lab, sims, "gantry", clock, devices::transport::discard());
    gantry.identify().await.unwrap();
    gantry.initialize().await.unwrap();
    let to = Place::Position(position.to_owned());
    execute(gantry.as_mut(), &Task::Transfer { from: Place::Rack(0), to }).await.unwrap();
}

/// The hold began: a reading at the set point is in the record.
fn holding(t: f64) -> impl Fn(&SimLab, &[Exchange]) -> bool {
    holding_for(t, 0.0)
}

/// The hold has gone on for `lab` seconds since the first reading at the set point (lab time, so that how often
/// the driver polls on a loaded machine does not matter).
fn holding_for(t: f64, lab: f64) -> impl Fn(&SimLab, &[Exchange]) -> bool {
    move |sims, log| {
        log.iter()
            .find(|e| {
                e.sent == b"IN_PV_2\r\n"
                    && devices::drivers::ika::parse_reading(String::from_utf8_lossy(&e.received).trim(), 2)
                        .is_some_and(|v| (v - t).abs() <= 1.0)
            })
            .and_then(|e| e.replied_at)
            .is_some_and(|at| sims.bench().clock().now() >= at + lab)
    }
}

fn heater_starts(sims: &SimLab, position: &str) -> usize {
    sims.bench().ledger().iter().filter(|e| e.event == Event::Heater { position: position.into(), on: true }).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotplate_still_heating_carries_on_for_the_hold_left() {
    let lab = common::lab_with(&["hotplate_1", "gantry"]);
    let (sims, clock) = common::start(&lab).await;
    vial_on(&lab, &sims, &clock, "hotplate_1").await;
    let crashed = crash_during(&lab, &sims, &clock, "hotplate_1", heat(60.0, 600.0), holding(60.0)).await;
    lab_sleep(&clock, 100.0).await;
    let mut hp = resumed(&lab, &sims, &clock, "hotplate_1").await;
    let (_, verdict) = settle(&lab, hp.as_mut(), &crashed, &clock).await;
    let Settlement::Continue { task, why } = &verdict.settlement else { panic!("{verdict:?}") };
    let Task::ContinueHeat { hold, at_set_point: true, .. } = task else { panic!("{task:?}") };
    assert_eq!(verdict.evidence.len(), 1, "the reading that marked the hold's start");
    let reached = crashed.record[(verdict.evidence[0] - 1) as usize].replied_at.unwrap();
    let expected = reached + 600.0 - clock.now();
    assert!(hold.0 > 0.0 && hold.0 <= 500.0 && hold.0 >= expected - 1.0, "600 s from {reached} s: {hold}");
    assert!(why.contains("nothing was read between"), "{why}");
    let out = execute(hp.as_mut(), task).await.unwrap();
    assert!(matches!(out, Outcome::Held { .. }), "{out:?}");
    // Writes are not answered; a read after them is answered once the plate has taken them.
    hp.identify().await.unwrap();
    let plate = sims.bench().plate("hotplate_1").unwrap();
    assert!(!plate.heater_on && !plate.motor_on, "switched off at the end");
    assert_eq!(heater_starts(&sims, "hotplate_1"), 1, "the heater was never started again");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotplate_whose_hold_ended_while_away_was_stopped_by_its_watchdog_at_the_end() {
    let lab = common::lab_with(&["hotplate_2", "gantry"]);
    let (sims, clock) = common::start(&lab).await;
    vial_on(&lab, &sims, &clock, "hotplate_2").await;
    // Dead within the last 25 minutes of the hold (the lab file's watchdog) less the margin, so the watchdog stops it
    // the margin after its end.
    let crashed = crash_during(&lab, &sims, &clock, "hotplate_2", heat(55.0, 2400.0), holding_for(55.0, 1300.0)).await;
    let margin = devices::drivers::ika::watchdog_margin(common::SCALE);
    lab_sleep(&clock, 1100.0 + margin + 100.0).await;
    let tripped: Vec<f64> = sims
        .bench()
        .ledger()
        .iter()
        .filter(|e| e.event == Event::WatchdogTripped { position: "hotplate_2".into() })
        .map(|e| e.at)
        .collect();
    assert_eq!(tripped.len(), 1, "the plate stopped itself");
    let mut hp = resumed(&lab, &sims, &clock, "hotplate_2").await;
    let (_, verdict) = settle(&lab, hp.as_mut(), &crashed, &clock).await;
    let Settlement::Done { why, actual: None, .. } = &verdict.settlement else { panic!("{verdict:?}") };
    assert!(why.contains("watchdog"), "{why}");
    // The hold began at the recorded reading; the watchdog stopped the plate the margin after its end, not earlier.
    let reading = crashed.record[(verdict.evidence[0] - 1) as usize].replied_at.unwrap();
    let end = reading + 2400.0 + margin;
    assert!(tripped[0] >= end - 1.0 && tripped[0] <= end + 30.0, "tripped at {tripped:?}, the hold ends at {end}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotplate_switched_off_before_its_hold_ended_stays_in_doubt() {
    let lab = common::lab_with(&["hotplate_3", "gantry"]);
    let (sims, clock) = common::start(&lab).await;
    vial_on(&lab, &sims, &clock, "hotplate_3").await;
    let crashed = crash_during(&lab, &sims, &clock, "hotplate_3", heat(50.0, 900.0), holding(50.0)).await;
    // Someone switches it off at the plate (or another program sends what the front panel does).
    let mut other = resumed(&lab, &sims, &clock, "hotplate_3").await;
    other.safe_state().await.unwrap();
    drop(other);
    let mut hp = resumed(&lab, &sims, &clock, "hotplate_3").await;
    let (_, verdict) = settle(&lab, hp.as_mut(), &crashed, &clock).await;
    let Settlement::InDoubt { why, contradiction: None } = &verdict.settlement else { panic!("{verdict:?}") };
    assert!(why.contains("before the hold's end"), "{why}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotplate_at_another_set_point_contradicts_the_record() {
    let lab = common::lab_with(&["hotplate_4", "gantry"]);
    let (sims, clock) = common::start(&lab).await;
    vial_on(&lab, &sims, &clock, "hotplate_4").await;
    let crashed = crash_during(&lab, &sims, &clock, "hotplate_4", heat(50.0, 900.0), holding(50.0)).await;
    let mut other = resumed(&lab, &sims, &clock, "hotplate_4").await;
    execute(other.as_mut(), &heat(70.0, 1.0)).await.unwrap();
    drop(other);
    let mut hp = resumed(&lab, &sims, &clock, "hotplate_4").await;
    let (_, verdict) = settle(&lab, hp.as_mut(), &crashed, &clock).await;
    let Settlement::InDoubt { contradiction: Some(both), .. } = &verdict.settlement else { panic!("{verdict:?}") };
    assert!(both.contains("70") && both.contains("50"), "names both set points: {both}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_instrument_cannot_be_read_back_of_any_kind() {
    let lab = common::lab_with(&["hotplate_1", "pump_a", "gantry"]);
    let (sims, clock) = common::start(&lab).await;
    for name in ["hotplate_1", "pump_a", "gantry"] {
        let mut inst = resumed(&lab, &sims, &clock, name).await;
        sims.set_faults(name, Some(Faults { no_reply: 1.0, ..Faults::none() }));
        let err = inst.as_read_back().unwrap().observe().await.unwrap_err();
        assert!(!err.may_have_acted, "{name}: reading back moves nothing: {err}");
        assert!(err.to_string().contains("no reply"), "{name}: {err}");
        sims.set_faults(name, None);
    }
    sims.stop().await;
}

/// A slow pump, so a stroke can be caught in the act.
fn slow_pump_lab() -> Lab {
    let mut lab = common::lab_with(&["pump_a", "gantry"]);
    let pump = lab.instruments.iter_mut().find(|i| i.name == "pump_a").unwrap();
    if let devices::lab::DriverConfig::CavroXCalibur(c) = &mut pump.driver {
        c.top_speed = 5;
    }
    lab
}

async fn vial_at_dispense(lab: &Lab, sims: &SimLab, clock: &Clock) {
    let mut gantry = common::connect(lab, sims, "gantry", clock, devices::transport::discard());
    gantry.identify().await.unwrap();
    gantry.initialize().await.unwrap();
    let to = Place::Position("dispense".into());
    execute(gantry.as_mut(), &Task::Transfer { from: Place::Rack(0), to }).await.unwrap();
}

fn dispensed(sims: &SimLab) -> f64 {
    sims.bench()
        .ledger()
        .iter()
        .filter_map(|e| match e.event {
            Event::Dispensed { volume, vessel: 0, .. } => Some(volume),
            _ => None,
        })
        .sum()
}

/// The stroke command was answered: the pump runs it.
fn stroke_accepted(_: &SimLab, log: &[Exchange]) -> bool {
    log.iter().any(|e| e.sent.starts_with(b"/1IA") && !e.received.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_still_stroking_is_waited_for_and_its_stroke_is_done() {
    let lab = slow_pump_lab();
    let (sims, clock) = common::start(&lab).await;
    vial_at_dispense(&lab, &sims, &clock).await;
    let task = Task::Dispense { volume: Volume(100.0) };
    let crashed = crash_during(&lab, &sims, &clock, "pump_a", task, stroke_accepted).await;
    let mut pump = resumed(&lab, &sims, &clock, "pump_a").await;
    let (observed, verdict) = settle(&lab, pump.as_mut(), &crashed, &clock).await;
    let Observed::Pump(p) = &observed else { panic!("{observed:?}") };
    assert!(p.waited > 0.0, "the stroke was still running when read back: {observed}");
    let Settlement::Done { outcome: Outcome::Dispensed { volume }, actual: None, .. } = &verdict.settlement else {
        panic!("{verdict:?}")
    };
    assert!((volume.0 - 100.0).abs() < 0.5 && (dispensed(&sims) - 100.0).abs() < 0.5, "{volume}");
    assert_eq!(verdict.evidence.len(), 1, "the stroke the record shows accepted");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_that_finished_its_stroke_while_away_is_done_and_one_never_sent_runs() {
    let lab = slow_pump_lab();
    let (sims, clock) = common::start(&lab).await;
    vial_at_dispense(&lab, &sims, &clock).await;
    let task = Task::Dispense { volume: Volume(50.0) };
    let crashed = crash_during(&lab, &sims, &clock, "pump_a", task.clone(), stroke_accepted).await;
    lab_sleep(&clock, 200.0).await;
    let mut pump = resumed(&lab, &sims, &clock, "pump_a").await;
    let (_, verdict) = settle(&lab, pump.as_mut(), &crashed, &clock).await;
    assert!(matches!(verdict.settlement, Settlement::Done { actual: None, .. }), "{verdict:?}");
    // The record may lose the last few milliseconds before a kill, the stroke's answer with them: the valve, turned
    // the other way from where the pump's last recorded command left it, still says the stroke ran.
    let lost = Crashed { record: Vec::new(), ..crashed };
    let (_, verdict) = settle(&lab, pump.as_mut(), &lost, &clock).await;
    let Settlement::Done { why, actual: None, .. } = &verdict.settlement else { panic!("{verdict:?}") };
    assert!(why.contains("turned the other way"), "{why}");
    // A pump initialized and never sent its stroke (the controller died first) still has its valve where it was.
    pump.initialize().await.unwrap();
    let initialized = RecordedExchange {
        id: 1,
        sent_at: 0.0,
        sent: b"/1ZR\r".to_vec(),
        replied_at: Some(0.0),
        received: b"/0`\x03\r\n".to_vec(),
    };
    let never = Crashed { task, started: clock.now(), record: Vec::new(), before: vec![initialized] };
    let (_, verdict) = settle(&lab, pump.as_mut(), &never, &clock).await;
    assert!(matches!(verdict.settlement, Settlement::NotDone { .. }), "{verdict:?}");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_stopped_partway_by_a_fault_is_settled_with_the_volume_it_moved() {
    let mut lab = common::lab_with(&["pump_a", "gantry"]);
    lab = common::with_faults(lab, "pump_a", Faults { partial: 1.0, ..Faults::none() });
    let (sims, clock) = common::start(&lab).await;
    vial_at_dispense(&lab, &sims, &clock).await;
    let (sink, log) = common::collector();
    let mut pump = common::connect(&lab, &sims, "pump_a", &clock, sink);
    pump.identify().await.unwrap();
    sims.set_faults("pump_a", None);
    pump.initialize().await.unwrap();
    sims.set_faults("pump_a", Some(Faults { partial: 1.0, seed: Some(5), ..Faults::none() }));
    let task = Task::Dispense { volume: Volume(300.0) };
    let started = clock.now();
    let err = execute(pump.as_mut(), &task).await.unwrap_err();
    assert!(err.may_have_acted, "{err}");
    sims.set_faults("pump_a", None);
    // The failure is settled in the same run: the record does not hold its exchanges yet.
    let observed = pump.as_read_back().unwrap().observe().await.unwrap();
    let doubt = Doubt { task: &task, asked: &task, started, exchanges: None, before: None };
    let verdict =
        devices::drivers::settle(lab.instrument("pump_a").unwrap(), common::SCALE, &doubt, &observed, clock.now());
    let Settlement::Done { actual: Some(Actual::Volume(moved)), .. } = &verdict.settlement else {
        panic!("{verdict:?} from {observed}")
    };
    assert!((moved.0 - 150.0).abs() < 0.5, "half the stroke: {moved}");
    // Initializing returns what the syringe still holds to the reservoir: the vessel keeps exactly what moved.
    pump.initialize().await.unwrap();
    assert!(
        (dispensed(&sims) - moved.0).abs() < 0.01,
        "the bench shows {} uL, the settlement {moved}",
        dispensed(&sims)
    );
    assert!(log.lock().unwrap().iter().any(|e| e.sent == b"/1wR\r"), "the valve went to the input first");
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plunger_where_no_step_put_it_contradicts_the_record() {
    let lab = slow_pump_lab();
    let (sims, clock) = common::start(&lab).await;
    let mut pump = resumed(&lab, &sims, &clock, "pump_a").await;
    pump.initialize().await.unwrap();
    drop(pump);
    // Someone draws 30 increments from the reservoir with a terminal of their own.
    {
        let spec = lab.instrument("pump_a").unwrap();
        let port = devices::transport::open_serial("pump_a", &sims.ports["pump_a"], &spec.line).unwrap();
        let mut link = devices::transport::Link::new(
            port,
            "pump_a",
            clock.clone(),
            devices::transport::discard(),
            WallDuration::from_secs(1),
        );
        link.request(b"/1IA30R\r", &mut devices::drivers::cavro::DtDecoder).await.unwrap();
    }
    lab_sleep(&clock, 100.0).await;
    let mut pump = resumed(&lab, &sims, &clock, "pump_a").await;
    let crashed = Crashed {
        task: Task::Dispense { volume: Volume(100.0) },
        started: clock.now(),
        record: Vec::new(),
        before: Vec::new(),
    };
    let (_, verdict) = settle(&lab, pump.as_mut(), &crashed, &clock).await;
    let Settlement::InDoubt { contradiction: Some(both), .. } = &verdict.settlement else { panic!("{verdict:?}") };
    assert!(both.contains("30 increments"), "{both}");
    sims.stop().await;
}

/// Where the vessel of rack slot 0 is.
fn where_is(sims: &SimLab) -> Location {
    sims.bench().vessel(0).unwrap().location
}

fn transfer_to(place: &str) -> Task {
    Task::Transfer { from: Place::Rack(0), to: Place::Position(place.to_owned()) }
}

/// A slow gantry, so a transfer can be caught in the act.
fn slow_gantry_lab() -> Lab {
    let mut lab = common::lab_with(&["gantry", "hotplate_1"]);
    let g = lab.instruments.iter_mut().find(|i| i.name == "gantry").unwrap();
    if let devices::lab::DriverConfig::GcodeGantry(c) = &mut g.driver {
        c.feed_rate = 300.0;
    }
    lab
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gantry_holding_the_vessel_puts_it_down_where_it_was_going() {
    let lab = slow_gantry_lab();
    let (sims, clock) = common::start(&lab).await;
    let crashed =
        crash_during(&lab, &sims, &clock, "gantry", transfer_to("hotplate_1"), |s, _| where_is(s) == Location::Gripper)
            .await;
    let mut gantry = resumed(&lab, &sims, &clock, "gantry").await;
    let (_, verdict) = settle(&lab, gantry.as_mut(), &crashed, &clock).await;
    let Settlement::Continue { task, .. } = &verdict.settlement else { panic!("{verdict:?}") };
    execute(gantry.as_mut(), task).await.unwrap();
    assert_eq!(where_is(&sims), Location::At(Place::Position("hotplate_1".into())));
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gantry_that_put_the_vessel_down_or_never_picked_it_says_where_it_is() {
    let lab = slow_gantry_lab();
    let (sims, clock) = common::start(&lab).await;
    // Put down while the controller was away: the head rises over the destination with the gripper open.
    let placed = |s: &SimLab, _: &[Exchange]| matches!(where_is(s), Location::At(Place::Position(_)));
    let crashed = crash_during(&lab, &sims, &clock, "gantry", transfer_to("hotplate_1"), placed).await;
    let mut gantry = resumed(&lab, &sims, &clock, "gantry").await;
    let (_, verdict) = settle(&lab, gantry.as_mut(), &crashed, &clock).await;
    let Settlement::Done { place: Some(p), .. } = &verdict.settlement else { panic!("{verdict:?}") };
    assert_eq!(p, &Place::Position("hotplate_1".into()));
    // Never picked: the controller died on the way to the vessel.
    gantry.initialize().await.unwrap();
    drop(gantry);
    let back = Task::Transfer { from: Place::Position("hotplate_1".into()), to: Place::Rack(0) };
    let moving = |_: &SimLab, log: &[Exchange]| log.iter().filter(|e| e.sent.starts_with(b"G0")).count() >= 2;
    let crashed = crash_during(&lab, &sims, &clock, "gantry", back, moving).await;
    let mut gantry = resumed(&lab, &sims, &clock, "gantry").await;
    let (_, verdict) = settle(&lab, gantry.as_mut(), &crashed, &clock).await;
    let Settlement::NotDone { place: Some(p), .. } = &verdict.settlement else { panic!("{verdict:?}") };
    assert_eq!(p, &Place::Position("hotplate_1".into()));
    assert_eq!(where_is(&sims), Location::At(Place::Position("hotplate_1".into())));
    sims.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gantry_open_where_it_should_hold_a_vessel_contradicts_the_record() {
    let lab = slow_gantry_lab();
    let (sims, clock) = common::start(&lab).await;
    let mut gantry = resumed(&lab, &sims, &clock, "gantry").await;
    gantry.initialize().await.unwrap();
    // The record says the gripper held a vessel to put down; it is open.
    let deliver = Crashed {
        task: Task::Deliver { to: Place::Position("hotplate_1".into()) },
        started: clock.now(),
        record: vec![],
        before: vec![],
    };
    let (_, verdict) = settle(&lab, gantry.as_mut(), &deliver, &clock).await;
    assert!(matches!(verdict.settlement, Settlement::InDoubt { contradiction: Some(_), .. }), "{verdict:?}");
    sims.stop().await;
}

/// The faulty lab's heating block on Modbus, without faults.
fn block_lab() -> Lab {
    common::clean_lab_with(&["block_1"])
}

fn hold(t: f64, d: f64) -> Task {
    Task::HoldTemperature { temperature: Temperature(t), duration: Duration(d) }
}

/// A process value at the set point is in the record.
fn block_holding(lab: &Lab, block: &str, t: f64) -> impl Fn(&SimLab, &[Exchange]) -> bool + use<> {
    let DriverConfig::ModbusTemperature(config) = lab.instrument(block).unwrap().driver.clone() else { panic!() };
    move |_, log| {
        let record: Vec<RecordedExchange> = log
            .iter()
            .map(|e| RecordedExchange {
                id: 0,
                sent_at: e.sent_at,
                sent: e.sent.clone(),
                replied_at: e.replied_at,
                received: e.received.clone(),
            })
            .collect();
        devices::drivers::modbus::recorded_temperatures(&config, &record).iter().any(|r| (r.value - t).abs() <= 1.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temperature_controller_is_carried_on_stopped_late_or_left_in_doubt() {
    let lab = block_lab();
    let (sims, clock) = common::start(&lab).await;
    // Still holding: carried on.
    let crashed =
        crash_during(&lab, &sims, &clock, "block_1", hold(40.0, 900.0), block_holding(&lab, "block_1", 40.0)).await;
    let mut block = resumed(&lab, &sims, &clock, "block_1").await;
    let (_, verdict) = settle(&lab, block.as_mut(), &crashed, &clock).await;
    let Settlement::Continue { task: t @ Task::ContinueHold { .. }, .. } = &verdict.settlement else {
        panic!("{verdict:?}")
    };
    execute(block.as_mut(), t).await.unwrap();
    assert!(!sims.bench().plate("block_1").unwrap().heater_on);
    drop(block);
    // Its hold ended while away; it has no watchdog and heats on: done, stopped late.
    let crashed =
        crash_during(&lab, &sims, &clock, "block_1", hold(40.0, 60.0), block_holding(&lab, "block_1", 40.0)).await;
    lab_sleep(&clock, 80.0).await;
    let mut block = resumed(&lab, &sims, &clock, "block_1").await;
    let (_, verdict) = settle(&lab, block.as_mut(), &crashed, &clock).await;
    let Settlement::Done { why, .. } = &verdict.settlement else { panic!("{verdict:?}") };
    assert!(why.contains("late"), "{why}");
    block.safe_state().await.unwrap();
    drop(block);
    // Switched off before its end: in doubt.
    let crashed =
        crash_during(&lab, &sims, &clock, "block_1", hold(40.0, 900.0), block_holding(&lab, "block_1", 40.0)).await;
    let mut block = resumed(&lab, &sims, &clock, "block_1").await;
    block.safe_state().await.unwrap();
    let (_, verdict) = settle(&lab, block.as_mut(), &crashed, &clock).await;
    assert!(matches!(verdict.settlement, Settlement::InDoubt { contradiction: None, .. }), "{verdict:?}");
    drop(block);
    // At another set point: a contradiction.
    let crashed =
        crash_during(&lab, &sims, &clock, "block_1", hold(40.0, 900.0), block_holding(&lab, "block_1", 40.0)).await;
    let mut block = resumed(&lab, &sims, &clock, "block_1").await;
    execute(block.as_mut(), &hold(45.0, 1.0)).await.unwrap();
    drop(block);
    let mut block = resumed(&lab, &sims, &clock, "block_1").await;
    let (_, verdict) = settle(&lab, block.as_mut(), &crashed, &clock).await;
    assert!(matches!(verdict.settlement, Settlement::InDoubt { contradiction: Some(_), .. }), "{verdict:?}");
    // Silent: an error, nothing acted.
    sims.set_faults("block_1", Some(Faults { no_reply: 1.0, ..Faults::none() }));
    let err = block.as_read_back().unwrap().observe().await.unwrap_err();
    assert!(!err.may_have_acted, "{err}");
    sims.stop().await;
}

/// A Watlow reads its set point in degF and its control mode back, so its hold is carried on; an Omron starts and
/// stops through a write-only command, so whether it heats cannot be read and its hold stays in doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_whose_map_cannot_show_that_it_runs_leaves_its_hold_in_doubt() {
    let lab = common::clean_lab_with(&["block_2", "block_3"]);
    let (sims, clock) = common::start(&lab).await;
    let crashed =
        crash_during(&lab, &sims, &clock, "block_3", hold(40.0, 900.0), block_holding(&lab, "block_3", 40.0)).await;
    let mut watlow = resumed(&lab, &sims, &clock, "block_3").await;
    let (observed, verdict) = settle(&lab, watlow.as_mut(), &crashed, &clock).await;
    assert!(matches!(verdict.settlement, Settlement::Continue { .. }), "{observed} {verdict:?}");
    watlow.safe_state().await.unwrap();
    let heating = |sims: &SimLab, _: &[Exchange]| sims.bench().plate("block_2").is_some_and(|p| p.heater_on);
    let crashed = crash_during(&lab, &sims, &clock, "block_2", hold(40.0, 900.0), heating).await;
    let mut omron = resumed(&lab, &sims, &clock, "block_2").await;
    let (observed, verdict) = settle(&lab, omron.as_mut(), &crashed, &clock).await;
    let Settlement::InDoubt { why, contradiction: None } = &verdict.settlement else { panic!("{verdict:?}") };
    assert!(why.contains("`operation_command`, which cannot be read"), "{observed}: {why}");
    omron.safe_state().await.unwrap();
    sims.stop().await;
}

/// A heat that the controller dropped in its hold and carried on after a gap gives the same product in the bench's
/// chemistry as an uninterrupted heat of the same hold, within what the chemistry's timing allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heat_carried_on_after_a_crash_makes_what_an_uninterrupted_heat_makes() {
    let lab = common::sim_lab();
    // A slower clock than the other tests': a poll that comes late on a loaded machine moves the hold's start by
    // fewer lab seconds.
    let clock = Clock::scaled(500.0);
    let sims = devices::sim::start(&lab, clock.clone()).await.unwrap();
    let mut bench = common::ready(&lab, &sims, &clock, devices::transport::discard()).await;
    let at = |p: &str| Place::Position(p.to_owned());
    let mut prepare = async |slot: usize, hotplate: &str| {
        let mut run =
            async |name: &str, task: Task| execute(bench.get_mut(name).unwrap().as_mut(), &task).await.unwrap();
        run("gantry", Task::Transfer { from: Place::Rack(slot), to: at("dispense") }).await;
        run("pump_a", Task::Dispense { volume: Volume(250.0) }).await;
        run("pump_b", Task::Dispense { volume: Volume(250.0) }).await;
        run("gantry", Task::Transfer { from: at("dispense"), to: at(hotplate) }).await;
    };
    prepare(0, "hotplate_1").await;
    prepare(1, "hotplate_2").await;
    drop(bench.remove("hotplate_2"));
    // Both vessels heat at once: one without a break, the other dropped in its hold and carried on after a gap.
    let task = heat(80.0, 1800.0);
    let mut plate = bench.remove("hotplate_1").unwrap();
    let (t, b) = (task.clone(), sims.bench().clone());
    let first = tokio::spawn(async move {
        execute(plate.as_mut(), &t).await.unwrap();
        b.vessel(0).unwrap().moles.p
    });
    let crashed = crash_during(&lab, &sims, &clock, "hotplate_2", task, holding_for(80.0, 300.0)).await;
    lab_sleep(&clock, 300.0).await;
    let mut hp = resumed(&lab, &sims, &clock, "hotplate_2").await;
    let (_, verdict) = settle(&lab, hp.as_mut(), &crashed, &clock).await;
    let Settlement::Continue { task, .. } = &verdict.settlement else { panic!("{verdict:?}") };
    execute(hp.as_mut(), task).await.unwrap();
    let resumed = sims.bench().vessel(1).unwrap().moles.p;
    let uninterrupted = first.await.unwrap();
    let gap = (resumed - uninterrupted).abs() / uninterrupted;
    let trips: Vec<_> =
        sims.bench().ledger().into_iter().filter(|e| matches!(e.event, Event::WatchdogTripped { .. })).collect();
    assert!(
        uninterrupted > 0.0 && gap < 0.03,
        "uninterrupted {uninterrupted:e} mol, resumed {resumed:e} mol; watchdog trips {trips:?}"
    );
    sims.stop().await;
}
