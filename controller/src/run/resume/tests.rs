//! Reading the record back for a resume: where a concluded experiment's vessel was left, and its return steps.

use super::*;
use crate::record::{CampaignRow, Record, StepRow};

/// A failed experiment whose vessel stands at `dispense`, with `returns` return steps added that never started.
fn failed_with_unstarted_returns(returns: usize) -> (tempfile::TempDir, Connection, i64) {
    failed_after_transfer("succeeded", returns)
}

/// A failed experiment whose transfer from its rack slot to `dispense` ended `ended`, with `returns` return steps
/// added that never started.
fn failed_after_transfer(ended: &'static str, returns: usize) -> (tempfile::TempDir, Connection, i64) {
    after_transfer(Task::Transfer { from: Place::Rack(0), to: Place::Position("dispense".into()) }, ended, returns)
}

/// A failed experiment whose one step was sent `task`, which ended `ended`, with `returns` return steps added that
/// never started.
fn after_transfer(task: Task, ended: &'static str, returns: usize) -> (tempfile::TempDir, Connection, i64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.db");
    let mut record = Record::open(&path).unwrap();
    let ids = record.begin_campaign(&CampaignRow::bench()).unwrap();
    let (recorder, writer) = record.start_writer();
    let (exp, step) = (ids.first_experiment, ids.first_step);
    let row = |id: i64, name: &str| StepRow {
        id,
        step: name.to_owned(),
        op: "Transfer".to_owned(),
        action: "{}".to_owned(),
        after: Vec::new(),
        repeat_safe: false,
        ready: true,
    };
    recorder.send(RecordEvent::ExperimentStarted {
        id: exp,
        campaign: ids.campaign,
        seq: 1,
        proposal: None,
        params: Vec::new(),
        vessel: 0,
        at: 0.0,
        steps: vec![row(step, "to_dispense")],
    });
    recorder.send(RecordEvent::StepStatus {
        step,
        at: 1.0,
        status: "running".into(),
        instrument: Some("gantry".into()),
        task: Some(serde_json::to_string(&task).unwrap()),
        attempt: Some(1),
        outcome: None,
        error: None,
    });
    recorder.send(RecordEvent::step(step, 2.0, ended));
    recorder.send(RecordEvent::ExperimentFinished { id: exp, at: 3.0, objective: None, error: Some("x".into()) });
    for n in 0..returns {
        recorder.send(RecordEvent::StepAdded {
            experiment: exp,
            at: 3.0,
            step: return_vessel_row(step + 1 + n as i64, &return_vessel_name(n)),
            why: "test".into(),
        });
    }
    drop(recorder);
    writer.finish().unwrap();
    (dir, Connection::open(&path).unwrap(), exp)
}

#[test]
fn return_steps_that_never_started_count_so_the_next_has_a_new_name() {
    let (_dir, conn, exp) = failed_with_unstarted_returns(0);
    let left = left_vessel(&conn, exp, 1, 0).unwrap().unwrap();
    assert_eq!((left.returns, left.places.clone(), left.known), (0, vec!["dispense".to_owned()], true));
    assert!(left.unstarted_returns.is_empty());

    // The controller stopped after adding the return step and before running it (it has no task yet).
    let (_dir, conn, exp) = failed_with_unstarted_returns(2);
    let left = left_vessel(&conn, exp, 1, 0).unwrap().unwrap();
    assert_eq!(left.returns, 2, "the next return step is return_vessel_3");
    let names: Vec<&str> = left.unstarted_returns.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["return_vessel", "return_vessel_2"]);
    assert_eq!(left.places, ["dispense"]);
}

/// A transfer out of the rack that failed (as an earlier resume settles one left in doubt) may have left the vessel
/// in its slot, in the gripper or at the station: its place is not known, so the next resume does not send the
/// gantry to fetch it from the station. Found by the crash test's whole-ledger audit: the gantry closed on nothing
/// at the dispense station, where another experiment's vial could have stood.
#[test]
fn a_vessel_whose_transfer_from_the_rack_failed_is_not_known_to_be_at_the_station() {
    let (_dir, conn, exp) = failed_after_transfer("failed", 0);
    let left = left_vessel(&conn, exp, 1, 0).unwrap().unwrap();
    assert_eq!((left.places.clone(), left.known), (vec!["dispense".to_owned()], false));
}

/// A transfer carried on after a kill is sent as a delivery of the vessel in the gripper: the next resume finds the
/// vessel where it was delivered, not where the transfer began. Found by the long crash run: the gantry was sent to
/// fetch a vial from the dispense station that a delivery had put on a hotplate, and closed on nothing.
#[test]
fn a_vessel_delivered_by_a_carried_on_transfer_is_where_it_was_delivered() {
    let deliver = Task::Deliver { to: Place::Position("hotplate_1".into()) };
    let (_dir, conn, exp) = after_transfer(deliver.clone(), "succeeded", 0);
    let left = left_vessel(&conn, exp, 1, 0).unwrap().unwrap();
    assert_eq!((left.places.clone(), left.known), (vec!["hotplate_1".to_owned()], true));
    // Cut short by another kill: the vessel is in the gripper or on the hotplate, which stays blocked.
    let (_dir, conn, exp) = after_transfer(deliver, "unknown", 0);
    let left = left_vessel(&conn, exp, 1, 0).unwrap().unwrap();
    assert_eq!((left.places.clone(), left.known, left.in_doubt.len()), (vec!["hotplate_1".to_owned()], false, 1));
}
