//! `lab fleet learn`: the one learner of a fleet campaign, and its standbys.
//!
//! The learner publishes the campaign (its file and protocol, with their hashes, and what a workcell needs to run
//! it); a campaign of the same name published from a different file is refused. It then takes the campaign's
//! advisory lock (`pg_try_advisory_lock`, held by its session): a second learner waits as a standby and takes over
//! when the first one's session ends, however it ended. Taking over bumps the campaign's learner epoch, which every
//! later step checks, and rebuilds the proposer exactly: the hub keeps every ask (how many points, which were pending,
//! how many results had been told) and the order results were told in, and `experiments` proposers are deterministic
//! for a seed and a sequence of calls, so replaying them gives the state the dead learner had.
//!
//! Each step is one transaction: tell the results that arrived, withdraw proposals every able workcell refused, and
//! publish enough proposals to keep about `in_flight` open per able workcell, within the budget; then
//! `NOTIFY fleet_open`. Between steps it waits for `NOTIFY fleet_result` (or half a second).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use experiments::{Outcome, Point, Proposer};

use super::capability;
use super::hub::{Connection, FleetError, Hub};

/// How to run a learner.
#[derive(Debug, Clone)]
pub struct LearnOptions {
    /// The hub.
    pub hub: Hub,
    /// The campaign file.
    pub campaign: PathBuf,
    /// This learner's name, for `lab fleet status`.
    pub name: String,
    /// Whether to print what it does.
    pub progress: bool,
}

/// What a learner did.
#[derive(Debug, Clone)]
pub struct LearnSummary {
    /// The campaign.
    pub campaign: String,
    /// Proposals that succeeded.
    pub succeeded: i64,
    /// Proposals that failed.
    pub failed: i64,
    /// Why it stopped publishing.
    pub stop_reason: Option<String>,
    /// How long it waited as a standby.
    pub standby: Duration,
    /// How many times it took the campaign over.
    pub takeovers: usize,
}

/// The campaign as the learner reads it.
struct Files {
    campaign: experiments::Campaign,
    campaign_path: String,
    campaign_text: String,
    protocol_path: String,
    protocol_text: String,
    needs: Vec<String>,
}

fn read_files(path: &std::path::Path) -> Result<Files, FleetError> {
    let source = crate::load::read_source(path).map_err(|e| FleetError::Local(e.to_string()))?;
    let problems = |d: protocols::Diagnostics, file: &str| {
        FleetError::Refused(format!("{file}: {}", d.iter().map(|x| x.message.clone()).collect::<Vec<_>>().join("; ")))
    };
    let shown = path.display().to_string();
    let (campaign, _) = experiments::load_campaign(std::sync::Arc::clone(&source)).map_err(|d| problems(d, &shown))?;
    let protocol_path = crate::load::beside(path, &campaign.protocol);
    let protocol_source = crate::load::read_source(&protocol_path).map_err(|e| FleetError::Local(e.to_string()))?;
    let (protocol, _) = protocols::load_protocol(std::sync::Arc::clone(&protocol_source))
        .map_err(|d| problems(d, &protocol_path.display().to_string()))?;
    let checked = campaign.check_against(&protocol);
    if checked.iter().any(|d| d.severity == protocols::Severity::Error) {
        return Err(problems(checked, &shown));
    }
    Ok(Files {
        needs: capability::needs(&protocol),
        campaign,
        campaign_path: shown,
        campaign_text: source.text.clone(),
        protocol_path: protocol_path.display().to_string(),
        protocol_text: protocol_source.text.clone(),
    })
}

/// Publishes the campaign, or checks that the hub's is this one.
async fn publish(hub: &Hub, c: &Connection, f: &Files) -> Result<(), FleetError> {
    let sha = crate::record::sha256_hex(f.campaign_text.as_bytes());
    let protocol_sha = crate::record::sha256_hex(f.protocol_text.as_bytes());
    hub.bounded(c.client.execute(
        "INSERT INTO fleet.campaigns (name, campaign_path, campaign_text, campaign_sha256, protocol_path, protocol_text,
             protocol_sha256, needs, budget, in_flight) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (name) DO NOTHING",
        &[
            &f.campaign.name,
            &f.campaign_path,
            &f.campaign_text,
            &sha,
            &f.protocol_path,
            &f.protocol_text,
            &protocol_sha,
            &f.needs,
            &(f.campaign.budget as i32),
            &(f.campaign.in_flight as i32),
        ],
    ))
    .await?;
    let row = hub
        .bounded(c.client.query_one(
            "SELECT campaign_sha256, campaign_path, protocol_sha256, protocol_path FROM fleet.campaigns WHERE name = $1",
            &[&f.campaign.name],
        ))
        .await?;
    let (their_sha, their_path, their_protocol, their_protocol_path): (String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if their_sha != sha {
        return Err(FleetError::Refused(format!(
            "campaign {} at the hub was published from a campaign file with SHA-256 {their_sha} ({their_path}); {} \
             has SHA-256 {sha}. A fleet campaign's file never changes: give the changed campaign another `name` to \
             publish it as a new campaign",
            f.campaign.name, f.campaign_path
        )));
    }
    if their_protocol != protocol_sha {
        return Err(FleetError::Refused(format!(
            "campaign {} at the hub runs a protocol with SHA-256 {their_protocol} ({their_protocol_path}); {} has \
             SHA-256 {protocol_sha}. A fleet campaign's protocol never changes: give the campaign another `name` to \
             publish it with this protocol",
            f.campaign.name, f.protocol_path
        )));
    }
    Ok(())
}

/// Runs the learner (or a standby, until it takes over) until the campaign is finished and every proposal settled.
pub fn learn(opts: &LearnOptions) -> Result<LearnSummary, FleetError> {
    let files = read_files(&opts.campaign)?;
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        // The first connection publishes: a wrong file, URL, credentials or schema is a clear error before anything.
        let first = opts.hub.connect().await?;
        publish(&opts.hub, &first, &files).await?;
        drop(first);
        let mut summary = LearnSummary {
            campaign: files.campaign.name.clone(),
            succeeded: 0,
            failed: 0,
            stop_reason: None,
            standby: Duration::ZERO,
            takeovers: 0,
        };
        let mut last = String::new();
        let mut backoff = Duration::from_millis(100);
        loop {
            match lead(opts, &files, &mut summary).await {
                Ok(true) => return Ok(summary),
                Ok(false) => backoff = Duration::from_millis(100),
                Err(FleetError::Refused(r)) => return Err(FleetError::Refused(r)),
                Err(e) => {
                    let said = e.to_string();
                    if opts.progress && said != last {
                        eprintln!("lab: {said}; waiting to lead again");
                    }
                    last = said;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    })
}

/// Waits for the lock, takes the campaign over and leads it. Ok(true): the campaign is done; Ok(false): the lead was
/// lost to another learner.
async fn lead(opts: &LearnOptions, f: &Files, summary: &mut LearnSummary) -> Result<bool, FleetError> {
    let hub = &opts.hub;
    let mut c = hub.connect().await?;
    let name = &f.campaign.name;
    let t0 = Instant::now();
    let mut said = false;
    loop {
        if finished_and_settled(hub, &c, name).await? {
            return Ok(true);
        }
        let got: bool = hub
            .bounded(
                c.client.query_one("SELECT pg_try_advisory_lock(hashtext('lab fleet learn'), hashtext($1))", &[name]),
            )
            .await?
            .get(0);
        if got {
            break;
        }
        if !said && opts.progress {
            eprintln!("lab: standby: another learner leads campaign {name}; this one takes over if it stops");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    summary.standby += t0.elapsed();
    let epoch: i32 = hub
        .bounded(c.client.query_one(
            "UPDATE fleet.campaigns SET learner = $2, learner_epoch = learner_epoch + 1, learner_since = now()
             WHERE name = $1 RETURNING learner_epoch",
            &[name, &opts.name],
        ))
        .await?
        .get(0);
    summary.takeovers += 1;
    let (mut proposer, mut told) = replay(hub, &c, f).await?;
    if opts.progress {
        eprintln!("lab: learner {} leads campaign {name} (epoch {epoch}), {told} results told", opts.name);
    }
    hub.bounded(c.client.batch_execute("LISTEN fleet_result")).await?;
    loop {
        let done = step(hub, &mut c, f, epoch, &mut proposer, &mut told, &opts.name, summary).await?;
        if done {
            return Ok(true);
        }
        tokio::select! {
            _ = c.notifications.recv() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Whether the campaign is finished and every proposal is final.
async fn finished_and_settled(hub: &Hub, c: &Connection, name: &str) -> Result<bool, FleetError> {
    let row = hub
        .bounded(c.client.query_one(
            "SELECT c.status = 'finished' AND NOT EXISTS (SELECT 1 FROM fleet.proposals p WHERE p.campaign = c.name
                 AND p.state IN ('open', 'claimed', 'started', 'orphaned'))
             FROM fleet.campaigns c WHERE c.name = $1",
            &[&name],
        ))
        .await?;
    Ok(row.get(0))
}

/// Rebuilds the proposer the campaign's learners had: every ask replayed in order with the results told before it.
async fn replay(hub: &Hub, c: &Connection, f: &Files) -> Result<(Box<dyn Proposer>, i32), FleetError> {
    let name = &f.campaign.name;
    let mut proposer = f.campaign.build_proposer();
    let results = hub
        .bounded(c.client.query(
            "SELECT told, params, outputs FROM fleet.results WHERE campaign = $1 AND told IS NOT NULL ORDER BY told",
            &[name],
        ))
        .await?;
    let asks = hub
        .bounded(c.client.query("SELECT told, count, pending FROM fleet.asks WHERE campaign = $1 ORDER BY n", &[name]))
        .await?;
    let mut results = results.into_iter().peekable();
    let mut told = 0;
    let mut tell_through = |limit: i32, proposer: &mut Box<dyn Proposer>| {
        while let Some(r) = results.next_if(|r| r.get::<_, i32>(0) <= limit) {
            told = r.get(0);
            proposer.tell_outcome(outcome(r.get(1), r.get(2)));
        }
    };
    for a in asks {
        tell_through(a.get(0), &mut proposer);
        let pending: Vec<Point> = serde_json::from_value(a.get(2)).unwrap_or_default();
        let _ = proposer.ask(a.get::<_, i32>(1) as usize, &pending);
    }
    tell_through(i32::MAX, &mut proposer);
    Ok((proposer, told))
}

fn outcome(params: serde_json::Value, outputs: Option<serde_json::Value>) -> Outcome {
    Outcome {
        values: serde_json::from_value(params).unwrap_or_default(),
        outputs: outputs.and_then(|o| serde_json::from_value(o).ok()),
    }
}

/// One step of the learner, in one transaction. Returns whether the campaign is done.
async fn step(
    hub: &Hub,
    c: &mut Connection,
    f: &Files,
    epoch: i32,
    proposer: &mut Box<dyn Proposer>,
    told: &mut i32,
    learner: &str,
    summary: &mut LearnSummary,
) -> Result<bool, FleetError> {
    let name = &f.campaign.name;
    let tx = hub.bounded(c.client.transaction()).await?;
    let row = hub
        .bounded(tx.query_one(
            "SELECT learner_epoch, status, budget, in_flight FROM fleet.campaigns WHERE name = $1 FOR UPDATE",
            &[name],
        ))
        .await?;
    let (their_epoch, status, budget, in_flight): (i32, String, i32, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if their_epoch != epoch {
        return Err(FleetError::Hub {
            hub: hub.redacted().to_owned(),
            reason: format!("learner epoch {their_epoch} leads campaign {name} now, not this learner's {epoch}"),
        });
    }
    let results = hub
        .bounded(tx.query(
            "SELECT seq, params, outputs FROM fleet.results WHERE campaign = $1 AND told IS NULL
             ORDER BY arrived_at, seq FOR UPDATE",
            &[name],
        ))
        .await?;
    let told_now = *told + results.len() as i32;
    if !results.is_empty() {
        // Numbered in arrival order, in one statement.
        let seqs: Vec<i64> = results.iter().map(|r| r.get(0)).collect();
        let numbers: Vec<i32> = (*told + 1..=told_now).collect();
        hub.bounded(tx.execute(
            "UPDATE fleet.results r SET told = u.told FROM unnest($2::bigint[], $3::int[]) AS u(seq, told)
             WHERE r.campaign = $1 AND r.seq = u.seq",
            &[name, &seqs, &numbers],
        ))
        .await?;
    }
    let counts = hub
        .bounded(tx.query_one(
            "SELECT count(*) FILTER (WHERE state <> 'withdrawn'),
                    count(*) FILTER (WHERE state = 'open'),
                    count(*) FILTER (WHERE state IN ('open', 'claimed', 'started', 'orphaned')),
                    count(*) FILTER (WHERE state = 'succeeded'),
                    count(*) FILTER (WHERE state = 'failed'),
                    coalesce(max(seq), 0),
                    (SELECT count(*) FROM fleet.workcells w WHERE w.retired_at IS NULL AND $2 <@ w.capabilities),
                    (SELECT count(*) FROM fleet.asks a WHERE a.campaign = $1)
             FROM fleet.proposals WHERE campaign = $1",
            &[name, &f.needs],
        ))
        .await?;
    let (published, open, unsettled, succeeded, failed, max_seq, able, asks): (i64, i64, i64, i64, i64, i64, i64, i64) = (
        counts.get(0),
        counts.get(1),
        counts.get(2),
        counts.get(3),
        counts.get(4),
        counts.get(5),
        counts.get(6),
        counts.get(7),
    );
    summary.succeeded = succeeded;
    summary.failed = failed;
    let mut done = false;
    // A proposal every able workcell refused would wait forever.
    hub.bounded(tx.execute(
        "UPDATE fleet.proposals p SET state = 'withdrawn', note = 'every workcell able to run the protocol refused it'
             WHERE p.campaign = $1 AND p.state = 'open'
               AND EXISTS (SELECT 1 FROM fleet.workcells w WHERE w.retired_at IS NULL AND p.needs <@ w.capabilities)
               AND NOT EXISTS (SELECT 1 FROM fleet.workcells w WHERE w.retired_at IS NULL AND p.needs <@ w.capabilities
                   AND NOT EXISTS (SELECT 1 FROM fleet.refusals r
                                   WHERE r.campaign = p.campaign AND r.seq = p.seq AND r.workcell = w.name))",
        &[name],
    ))
    .await?;
    if status == "running" {
        // Tell only now, after the transaction's reads: a failed step leaves the proposer as the hub's record says.
        let outcomes: Vec<Outcome> = results.iter().map(|r| outcome(r.get(1), r.get(2))).collect();
        let mut stop = None;
        let remaining = i64::from(budget) - published;
        let target = i64::from(in_flight) * able.max(1);
        let k = (target - open).min(remaining);
        let mut proposals = Vec::new();
        let mut pending: Vec<Point> = Vec::new();
        for o in outcomes {
            proposer.tell_outcome(o);
        }
        let stop_now = proposer.should_stop().map(|r| r.to_string());
        if let Some(why) = stop_now {
            stop = Some(why);
        } else if remaining <= 0 {
            stop = Some(format!("the budget of {budget} experiments is published"));
        } else if k > 0 {
            pending = hub
                .bounded(tx.query(
                    "SELECT params FROM fleet.proposals WHERE campaign = $1
                     AND state IN ('open', 'claimed', 'started', 'orphaned') ORDER BY seq",
                    &[name],
                ))
                .await?
                .into_iter()
                .filter_map(|r| serde_json::from_value(r.get::<_, serde_json::Value>(0)).ok())
                .collect();
            proposals = proposer.ask(k as usize, &pending);
            if proposals.is_empty() && unsettled == 0 {
                stop = Some("the proposer has nothing more to propose".to_owned());
            }
        }
        if !proposals.is_empty() {
            hub.bounded(tx.execute(
                "INSERT INTO fleet.asks (campaign, n, told, count, pending, first_seq, learner) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[name, &(asks as i32 + 1), &told_now, &(k as i32), &serde_json::to_value(&pending).unwrap_or_default(), &(max_seq + 1), &learner],
            ))
            .await?;
            let seqs: Vec<i64> = (0..proposals.len() as i64).map(|i| max_seq + 1 + i).collect();
            let params: Vec<serde_json::Value> =
                proposals.iter().map(|p| serde_json::to_value(&p.values).unwrap_or_default()).collect();
            let published: Vec<serde_json::Value> =
                proposals.iter().map(|p| serde_json::to_value(p).unwrap_or_default()).collect();
            hub.bounded(tx.execute(
                "INSERT INTO fleet.proposals (campaign, seq, needs, params, proposal)
                 SELECT $1, u.seq, $3, u.params, u.proposal FROM unnest($2::bigint[], $4::jsonb[], $5::jsonb[])
                     AS u(seq, params, proposal)",
                &[name, &seqs, &f.needs, &params, &published],
            ))
            .await?;
            hub.bounded(tx.execute("SELECT pg_notify('fleet_open', $1)", &[name])).await?;
        }
        if let Some(why) = &stop {
            let withdraw = !why.starts_with("the budget");
            if withdraw {
                hub.bounded(tx.execute(
                    "UPDATE fleet.proposals SET state = 'withdrawn', note = $2 WHERE campaign = $1 AND state = 'open'",
                    &[name, why],
                ))
                .await?;
            }
            hub.bounded(tx.execute(
                "UPDATE fleet.campaigns SET status = 'finished', stop_reason = $2, finished_at = now() WHERE name = $1",
                &[name, why],
            ))
            .await?;
            hub.bounded(tx.execute("SELECT pg_notify('fleet_open', $1)", &[name])).await?;
            summary.stop_reason = Some(why.clone());
        }
    } else {
        for r in &results {
            proposer.tell_outcome(outcome(r.get(1), r.get(2)));
        }
        done = unsettled == 0;
    }
    hub.bounded(tx.commit()).await?;
    *told = told_now;
    Ok(done)
}
