//! `lab workcell --instant`: a workcell whose steps run on the discrete-event simulation `lab plan` uses, not on
//! instruments, so they take no wall time at all.
//!
//! Everything else is the workcell's own: the proposals are claimed at the hub, the scheduler (world, systems,
//! policy) decides as in a real run, every event goes to `lab.db` through the same recorder and hash chain, and the
//! shipper sends it to the hub. Only the executor differs: a dispatched step ends after its expected duration in
//! lab time, which jumps from one event to the next ([`crate::plan::simulate`]); a measurement reads 0. No port is
//! opened and no instrument acts, so a fleet can be rehearsed with the lab files of its real workcells, and the
//! fleet's own cost (claiming, recording, shipping, learning) measured without the instruments' time
//! (BENCHMARKS.md, "Fleet"). The record says, in its first event, that its steps were simulated.
//!
//! An instant campaign is never resumed: a simulation interrupted leaves nothing in any instrument to reconcile, so
//! `lab workcell --instant` refuses a record that holds an unfinished campaign (use a throwaway `--db`).

use std::sync::Arc;
use std::time::Instant;

use crate::load::Inputs;
use crate::plan::simulate::{Noise, Setup};
use crate::record::{Record, RecordEvent};
use crate::run::{CampaignOptions, CampaignParts, RunError, Summary};
use crate::schedule::bridge::Bridge;
use crate::schedule::resources;

/// Runs a campaign whose proposals come from `opts.feed`, each step simulated on its expected duration.
pub fn run(inputs: Inputs, opts: &CampaignOptions) -> Result<Summary, RunError> {
    let wall = Instant::now();
    let Some(feed) = &opts.feed else {
        return Err(RunError::System("an instant campaign takes its proposals from a fleet's hub".into()));
    };
    let (lab, protocol, campaign) = (Arc::clone(&inputs.lab), Arc::clone(&inputs.protocol), inputs.campaign.clone());
    let mut record = Record::open(&opts.db)?;
    if let Some(id) =
        crate::run::resume::unfinished(record.connection(), None).map_err(|e| RunError::System(e.to_string()))?
    {
        return Err(RunError::Lab(format!(
            "{} holds campaign {id} unfinished: an instant run starts only on a record with nothing to resume (give \
             it another --db)",
            opts.db.display()
        )));
    }
    let instruments: Vec<(String, Option<protocols::InstrumentKind>, Option<String>)> =
        lab.instruments.iter().map(|i| (i.name.clone(), Some(i.kind()), i.position.clone())).collect();
    // The simulation's clock is manual: lab time moves only from one simulated event to the next.
    let probe = devices::Clock::manual();
    let ids = record.begin_campaign(&crate::run::campaign_row(&inputs, probe.epoch(), 1.0))?;
    let (recorder, writer) = record.start_writer();
    recorder.send(RecordEvent::say(
        ids.campaign,
        0.0,
        "warning",
        None,
        "this campaign's steps are simulated on their expected durations (`lab workcell --instant`): no instrument \
         acts, and every reading is 0"
            .to_owned(),
    ));
    let mut setup = Setup::new(&instruments, opts.policy, recorder.clone());
    setup.go_on_without_answers();
    setup.world.insert_resource(opts.unknown);
    setup.world.insert_resource(opts.blocked);
    setup.world.insert_resource(resources::Varied(campaign.space.clone()));
    let clock = setup.clock.clone();
    let (learner, feed_thread) = feed.spawn(setup.inbox(), recorder.clone(), ids.campaign, clock.clone())?;
    setup.world.resource_mut::<Bridge>().learner = Some(learner);
    crate::run::insert_campaign(
        &mut setup.world,
        &CampaignParts::from(&campaign),
        &protocol,
        &lab,
        &clock,
        resources::Record { recorder: recorder.clone(), campaign: ids.campaign },
        ids,
        opts.policy,
    );
    let report = setup.run(Noise::NONE);
    // The world is gone with the setup: the feed's request channel closes and its thread ends.
    let _ = feed_thread.join();
    let lab_seconds = clock.now();
    let (status, note) = if report.completed {
        ("finished", None)
    } else {
        (
            "aborted",
            Some("the simulation stopped with work left (the hub gave no proposal within five minutes)".to_owned()),
        )
    };
    recorder.send(RecordEvent::CampaignFinished {
        campaign: ids.campaign,
        at: lab_seconds,
        status: status.into(),
        note,
    });
    recorder.checkpoint(format!("campaign {} {status}", ids.campaign));
    recorder.flush();
    drop(recorder);
    writer.finish().map_err(RunError::System)?;
    let conn = rusqlite::Connection::open(&opts.db).map_err(|e| RunError::System(e.to_string()))?;
    let (succeeded, failed): (i64, i64) = conn
        .query_row(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed')
             FROM experiments WHERE campaign_id = ?1",
            [ids.campaign],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(|e| RunError::System(e.to_string()))?;
    let head = conn.query_row("SELECT hash FROM journal ORDER BY id DESC LIMIT 1", [], |r| r.get(0)).ok();
    Ok(Summary {
        campaign_id: ids.campaign,
        name: campaign.name.clone(),
        db: opts.db.clone(),
        started: report.experiments,
        succeeded: succeeded as usize,
        failed: failed as usize,
        peak_in_flight: 0,
        best: None,
        objective: (campaign.objective.output.clone(), String::new()),
        units: Default::default(),
        levels: crate::run::level_names(&campaign),
        lab_seconds,
        wall_seconds: wall.elapsed().as_secs_f64(),
        status,
        stop_reason: None,
        offline: Vec::new(),
        head,
    })
}
