//! `lab workcell`: one lab PC in a fleet. It registers with the hub, ships its journal, and runs the fleet's
//! campaigns its lab can run, one after another, with the same scheduler and record as `lab campaign`; only the
//! proposals come from the hub ([`super::feed`]) instead of a learner of its own.
//!
//! Its `lab.db` is the source of truth and the outbox. Before a campaign starts (or resumes after a crash) the
//! workcell compares its record with the hub: a claim the hub says it holds and the record lacks (the workcell died
//! between the hub's commit and its own) is adopted, handed to the world before anything new; a claim the record
//! holds in a campaign that ended without starting it is released. When a campaign ends, every claim it never
//! started is released the same way. A release is written to `lab.db` first and reaches the hub with the journal,
//! so a claim moves only by the workcell's own record.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::OptionalExtension;

use super::capability;
use super::feed::{Claimed, HubFeed};
use super::hub::{FleetError, Hub};
use super::ship::{ShipStatus, Shipper};
use crate::load::Inputs;
use crate::record::{FleetClaim, Record, RecordEvent};
use crate::run::{CampaignOptions, ResumeOptions, Summary};
use crate::schedule::resources::{BlockedPolicy, Policy, UnknownPolicy};

/// How to run a workcell.
#[derive(Debug, Clone)]
pub struct WorkcellOptions {
    /// The hub.
    pub hub: Hub,
    /// This workcell's lab file.
    pub lab: PathBuf,
    /// Its record.
    pub db: PathBuf,
    /// Its name in the fleet (the lab's name if `None`).
    pub name: Option<String>,
    /// Only this fleet campaign (else every campaign its lab can run, in the order they were published).
    pub campaign: Option<String>,
    /// Claims to hold beyond what the scheduler asks for.
    pub prefetch: usize,
    /// Lab seconds per wall second (simulated labs only).
    pub time_scale: Option<f64>,
    /// Whether to print progress.
    pub progress: bool,
    /// The scheduler's policy.
    pub policy: Policy,
    /// What happens to steps whose outcome is unknown.
    pub unknown: UnknownPolicy,
    /// Whether steps in doubt are first settled by reading their instruments back.
    pub read_back: bool,
    /// A key to sign checkpoints with.
    pub sign_with: Option<PathBuf>,
    /// How long to wait at the end for the hub to take the whole journal (`None`: until it has).
    pub ship_wait: Option<Duration>,
    /// Only ship the record's journal, claim nothing, run nothing (a stopped workcell's record, before an operator
    /// retires it).
    pub ship_only: bool,
    /// Run each step on a simulation of its expected duration instead of the instruments ([`super::instant`]).
    pub instant: bool,
}

/// What a workcell did.
#[derive(Debug)]
pub struct WorkcellSummary {
    /// Its name.
    pub name: String,
    /// Each campaign it ran, in order.
    pub campaigns: Vec<Summary>,
    /// Where shipping stood at the end.
    pub shipped: ShipStatus,
    /// The last journal row of `lab.db`.
    pub local_head: i64,
}

/// A claim as this workcell's record holds it.
#[derive(Debug, Clone)]
struct LocalClaim {
    local_campaign: i64,
    claim: FleetClaim,
    started: bool,
    released: bool,
}

/// Runs the workcell until no fleet campaign it can run is left.
pub fn run_workcell(opts: &WorkcellOptions) -> Result<WorkcellSummary, FleetError> {
    let local = |e: &dyn std::fmt::Display| FleetError::Local(e.to_string());
    let lab_source = crate::load::read_source(&opts.lab).map_err(|e| local(&e))?;
    let lab = devices::load_lab(Arc::clone(&lab_source)).map_err(|d| {
        FleetError::Refused(format!(
            "{}: {}",
            opts.lab.display(),
            d.iter().map(|x| x.message.clone()).collect::<Vec<_>>().join("; ")
        ))
    })?;
    let lab = Arc::new(lab);
    let name = opts.name.clone().unwrap_or_else(|| lab.name.clone());
    let caps = capability::capabilities(&lab);
    // The record exists (created or migrated) before the shipper reads it.
    drop(Record::open(&opts.db).map_err(|e| local(&e))?);
    let rt = super::hub::runtime()?;
    // A hub that does not answer is an error before anything moves, unless the record holds a fleet campaign this
    // workcell was running when it stopped: that one goes on from the record (it holds the claims), and the hub
    // hears of it when it answers.
    let (retired, offline) = match rt.block_on(register(&opts.hub, &name, &lab, &caps)) {
        Ok(r) => (r, None),
        Err(e @ FleetError::Unreachable { .. }) => match unfinished_here(&opts.db)? {
            Some(next) => {
                eprintln!(
                    "lab: {e}; resuming fleet campaign {} from {}: claims and shipping go on when the hub answers",
                    next.campaign,
                    opts.db.display()
                );
                (None, Some(next))
            }
            None => return Err(e),
        },
        Err(e) => return Err(e),
    };
    let shipper = Shipper::spawn(opts.hub.clone(), name.clone(), opts.db.clone(), !opts.progress)?;
    if opts.ship_only {
        let status = shipper.wait_caught_up(opts.ship_wait, |_, _| {});
        let local_head = shipper.local_head();
        shipper.stop();
        if let Some(r) = &status.refused {
            return Err(FleetError::Refused(r.clone()));
        }
        return Ok(WorkcellSummary { name, campaigns: Vec::new(), shipped: status, local_head });
    }
    if let Some(when) = retired {
        // What it recorded still goes to the hub, which flags every result as a conflict; it claims nothing.
        shipper.wait_caught_up(Some(Duration::from_secs(30)), |_, _| {});
        shipper.stop();
        return Err(FleetError::Refused(format!(
            "workcell {name} was retired ({when}): it may not claim again, and the hub flags what it ships as a \
             conflict; its lab.db is intact. Register this lab under a new name to bring it back into the fleet"
        )));
    }
    let mut campaigns = Vec::new();
    let mut pinned_done = false;
    let mut offline = offline;
    loop {
        let next = match offline.take() {
            Some(next) => Some(next),
            None => patiently(&rt, opts.progress, async || next_campaign(opts, &name, &lab, &caps).await)?,
        };
        let Some(next) = next else { break };
        if pinned_done && opts.campaign.is_some() {
            break;
        }
        let summary = run_one(opts, &rt, &name, &lab, next, &shipper)?;
        shipper.poke();
        // An instrument a step needs went offline for good: the run stopped safely and gave back every claim it had
        // not started, so the rest of the fleet runs them. This workcell claims nothing more until it is repaired
        // and started again (which resumes its campaign), rather than resuming at once into the same fault.
        let stopped = summary.status == "stopped";
        if stopped && opts.progress {
            eprintln!(
                "lab: workcell {name} stops: {}; repair it, then start `lab workcell` again",
                summary.stop_reason.as_deref().unwrap_or("an instrument went offline")
            );
        }
        campaigns.push(summary);
        pinned_done = true;
        if stopped {
            break;
        }
    }
    if opts.campaign.is_some() && campaigns.is_empty() {
        shipper.stop();
        return Err(FleetError::Refused(format!(
            "the hub has no running campaign {} that workcell {name} can run",
            opts.campaign.as_deref().unwrap_or_default()
        )));
    }
    let progress = opts.progress;
    let status = shipper.wait_caught_up(opts.ship_wait, |s, target| {
        if progress {
            eprintln!(
                "lab: waiting for the hub to take the journal: {} of {target} rows there{}",
                s.hub_head,
                s.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
            );
        }
    });
    let local_head = shipper.local_head();
    let shipped = shipper.stop();
    if let Some(r) = &status.refused {
        return Err(FleetError::Refused(r.clone()));
    }
    Ok(WorkcellSummary { name, campaigns, shipped, local_head })
}

/// Runs `op` until it works or fails for another reason than an unreachable hub, waiting at most a second between
/// tries: a workcell that is running waits out an outage rather than end.
fn patiently<T>(
    rt: &tokio::runtime::Runtime,
    progress: bool,
    mut op: impl AsyncFnMut() -> Result<T, FleetError>,
) -> Result<T, FleetError> {
    let mut backoff = Duration::from_millis(50);
    let mut said = false;
    loop {
        match rt.block_on(op()) {
            Err(e @ FleetError::Unreachable { .. }) => {
                if progress && !said {
                    eprintln!("lab: {e}; waiting for the hub");
                    said = true;
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// The fleet campaign this record was running when its workcell stopped, from the record alone.
fn unfinished_here(db: &Path) -> Result<Option<Next>, FleetError> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| FleetError::Local(format!("{}: {e}", db.display())))?;
    let row = conn
        .query_row(
            "SELECT c.id, c.name, c.campaign_path, c.campaign_text, c.protocol_path, c.protocol_text FROM campaigns c
             WHERE c.status = 'running' AND EXISTS (SELECT 1 FROM journal j WHERE j.campaign_id = c.id
                 AND j.kind = 'Proposal' AND j.body LIKE '%\"claim\"%')
             ORDER BY c.id DESC LIMIT 1",
            [],
            |r| {
                Ok(Next {
                    resume: Some(r.get(0)?),
                    campaign: r.get(1)?,
                    campaign_path: r.get(2)?,
                    campaign_text: r.get(3)?,
                    protocol_path: r.get(4)?,
                    protocol_text: r.get(5)?,
                })
            },
        )
        .optional()
        .map_err(|e| FleetError::Local(format!("{}: {e}", db.display())))?;
    Ok(row)
}

/// Registers (or re-registers) the workcell; returns when and why it was retired, if it was.
async fn register(hub: &Hub, name: &str, lab: &devices::Lab, caps: &[String]) -> Result<Option<String>, FleetError> {
    let c = hub.connect().await?;
    let row = hub
        .bounded(c.client.query_one(
            "SELECT fleet.register($1, $2, $3, $4)",
            &[&name, &lab.name, &crate::record::sha256_hex(lab.source.text.as_bytes()), &caps],
        ))
        .await?;
    Ok(row.get(0))
}

/// A campaign to run next: a local one to resume, or a fleet campaign to start.
struct Next {
    campaign: String,
    campaign_path: String,
    campaign_text: String,
    protocol_path: String,
    protocol_text: String,
    resume: Option<i64>,
}

/// Chooses the next campaign: the record's unfinished fleet campaign first, then the fleet's running campaigns this
/// lab can run, oldest first.
async fn next_campaign(
    opts: &WorkcellOptions,
    name: &str,
    lab: &devices::Lab,
    caps: &[String],
) -> Result<Option<Next>, FleetError> {
    let conn = rusqlite::Connection::open_with_flags(&opts.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| FleetError::Local(format!("{}: {e}", opts.db.display())))?;
    let sqlite = |e: rusqlite::Error| FleetError::Local(format!("{}: {e}", opts.db.display()));
    let unfinished: Option<(i64, String, String)> = conn
        .query_row(
            "SELECT id, name, campaign_sha256 FROM campaigns WHERE status = 'running' ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(sqlite)?;
    let c = opts.hub.connect().await?;
    let hub = &opts.hub;
    if let Some((id, local_name, sha)) = unfinished {
        let row = hub
            .bounded(c.client.query_opt(
                "SELECT campaign_path, campaign_text, protocol_path, protocol_text FROM fleet.campaigns
                 WHERE name = $1 AND campaign_sha256 = $2",
                &[&local_name, &sha],
            ))
            .await?;
        let Some(row) = row else {
            return Err(FleetError::Refused(format!(
                "{} holds campaign {id} ({local_name}) unfinished, and it is not a campaign of this fleet: finish it \
                 with `lab resume --db {}` (or abort it) before this lab joins the fleet",
                opts.db.display(),
                opts.db.display()
            )));
        };
        return Ok(Some(Next {
            campaign: local_name,
            campaign_path: row.get(0),
            campaign_text: row.get(1),
            protocol_path: row.get(2),
            protocol_text: row.get(3),
            resume: Some(id),
        }));
    }
    let rows = hub
        .bounded(c.client.query(
            "SELECT name, campaign_path, campaign_text, protocol_path, protocol_text FROM fleet.campaigns
             WHERE (status = 'running' OR EXISTS (SELECT 1 FROM fleet.proposals p WHERE p.campaign = name
                    AND p.state IN ('open', 'claimed', 'started', 'orphaned')))
               AND needs <@ $1 AND ($2::text IS NULL OR name = $2) ORDER BY published_at, name",
            &[&caps, &opts.campaign],
        ))
        .await?;
    if rows.is_empty()
        && let Some(pinned) = &opts.campaign
    {
        let needs: Option<Vec<String>> = hub
            .bounded(c.client.query_opt("SELECT needs FROM fleet.campaigns WHERE name = $1", &[pinned]))
            .await?
            .map(|r| r.get(0));
        if let Some(needs) = needs {
            let missing: Vec<&String> = needs.iter().filter(|n| !caps.contains(n)).collect();
            if !missing.is_empty() {
                return Err(FleetError::Refused(format!(
                    "workcell {name}'s lab `{}` cannot run campaign {pinned}: it lacks {}",
                    lab.name,
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                )));
            }
        }
    }
    for row in rows {
        let protocol_text: String = row.get(4);
        let protocol_path: String = row.get(3);
        let campaign: String = row.get(0);
        let protocol =
            match protocols::load_protocol(protocols::SourceFile::new(protocol_path.clone(), protocol_text.clone())) {
                Ok((p, _)) => p,
                Err(d) if opts.campaign.is_some() => {
                    return Err(FleetError::Refused(format!(
                        "the protocol of campaign {campaign} at the hub does not load with this lab: {}",
                        d.iter().map(|x| x.message.clone()).collect::<Vec<_>>().join("; ")
                    )));
                }
                // A campaign published by another version of lab, say: not one this workcell can run.
                Err(_) => continue,
            };
        match capability::can_run(lab, &protocol) {
            Ok(()) => {
                return Ok(Some(Next {
                    campaign,
                    campaign_path: row.get(1),
                    campaign_text: row.get(2),
                    protocol_path,
                    protocol_text,
                    resume: None,
                }));
            }
            Err(why) if opts.campaign.is_some() => {
                return Err(FleetError::Refused(format!(
                    "workcell {name}'s lab `{}` cannot run campaign {campaign}: {why}",
                    lab.name
                )));
            }
            Err(_) => continue,
        }
    }
    Ok(None)
}

/// Runs (or resumes) one campaign with proposals from the hub, then gives back what it never started.
fn run_one(
    opts: &WorkcellOptions,
    rt: &tokio::runtime::Runtime,
    name: &str,
    lab: &Arc<devices::Lab>,
    next: Next,
    shipper: &Shipper,
) -> Result<Summary, FleetError> {
    let refused = |what: &str, d: protocols::Diagnostics| {
        FleetError::Refused(format!(
            "{what} of fleet campaign {} does not load here: {}",
            next.campaign,
            d.iter().map(|x| x.message.clone()).collect::<Vec<_>>().join("; ")
        ))
    };
    let (campaign, _) =
        experiments::load_campaign(protocols::SourceFile::new(next.campaign_path.clone(), next.campaign_text.clone()))
            .map_err(|d| refused("the campaign file", d))?;
    let (protocol, _) =
        protocols::load_protocol(protocols::SourceFile::new(next.protocol_path.clone(), next.protocol_text.clone()))
            .map_err(|d| refused("the protocol", d))?;
    let checked = campaign.check_against(&protocol);
    if checked.iter().any(|d| d.severity == protocols::Severity::Error) {
        return Err(refused("the campaign", checked));
    }
    capability::can_run(lab, &protocol).map_err(|why| {
        FleetError::Refused(format!(
            "workcell {name}'s lab `{}` cannot run campaign {}: {why}",
            lab.name, next.campaign
        ))
    })?;
    let protocol = Arc::new(protocol);

    // Compare the record with the hub: adopt what the hub says this workcell holds and the record lacks, and give
    // back what the record holds in campaigns that ended without starting it.
    let local = local_claims(&opts.db)?;
    let held = match next.resume {
        // A campaign resumed while the hub does not answer adopts nothing: what the hub holds for it waits, claimed,
        // and is released when the campaign ends.
        Some(_) => rt.block_on(held_claims(&opts.hub, name, &next.campaign)).unwrap_or_default(),
        None => patiently(rt, opts.progress, async || held_claims(&opts.hub, name, &next.campaign).await)?,
    };
    let recorded: HashSet<(String, i64, i64)> =
        local.iter().map(|l| (l.claim.campaign.clone(), l.claim.seq, l.claim.epoch)).collect();
    let (adopted, beyond): (Vec<Claimed>, Vec<Claimed>) = held
        .into_iter()
        .filter(|c| !recorded.contains(&(c.claim.campaign.clone(), c.claim.seq, c.claim.epoch)))
        .partition(|c| capability::refusal(lab, &protocol, &campaign.fixed, &c.proposal.values).is_none());
    release_unstarted(&opts.db, &local, next.resume, "the campaign it was claimed for ended before it started")?;
    // An adopted claim is checked against this lab's limits as a new one is (the lab file may have changed too).
    if let Some(id) = next.resume.or_else(|| local.iter().map(|l| l.local_campaign).max()) {
        for c in beyond {
            let why = capability::refusal(lab, &protocol, &campaign.fixed, &c.proposal.values).unwrap_or_default();
            write_release(&opts.db, id, c.claim, &why, true)?;
        }
    }
    shipper.poke();

    let feed = HubFeed {
        hub: opts.hub.clone(),
        workcell: name.to_owned(),
        campaign: next.campaign.clone(),
        adopted,
        recorded: local
            .iter()
            .filter(|l| l.claim.campaign == next.campaign)
            .map(|l| (l.claim.seq, l.claim.epoch))
            .collect(),
        prefetch: opts.prefetch,
        shipper: Some(shipper.poker()),
        lab: Arc::clone(lab),
        protocol: Arc::clone(&protocol),
        fixed: campaign.fixed.clone(),
    };
    let mut copts = CampaignOptions::new(PathBuf::from(&next.campaign_path), opts.db.clone());
    copts.time_scale = opts.time_scale;
    copts.paced = opts.time_scale.is_some();
    copts.progress = opts.progress;
    copts.policy = opts.policy;
    copts.unknown = opts.unknown;
    // A place blocked by a lost vessel makes this workcell wait for `lab clear` instead of failing each proposal it
    // claims at its first transfer: the rest of the fleet runs them meanwhile.
    copts.blocked = BlockedPolicy::Wait;
    copts.read_back = opts.read_back;
    copts.sign_with = opts.sign_with.clone();
    copts.feed = Some(Arc::new(feed));
    if opts.progress {
        eprintln!(
            "lab: workcell {name} {} fleet campaign {} from {}",
            if next.resume.is_some() { "resumes" } else { "joins" },
            next.campaign,
            opts.hub.redacted()
        );
    }
    let summary = match next.resume {
        Some(id) if opts.instant => {
            return Err(FleetError::Refused(format!(
                "{} holds fleet campaign {} (local campaign {id}) unfinished: an instant workcell does not resume; \
                 give it another --db",
                opts.db.display(),
                next.campaign
            )));
        }
        Some(id) => crate::run::resume_campaign(
            &ResumeOptions { db: opts.db.clone(), campaign: Some(id), lab: Some(opts.lab.clone()) },
            &copts,
        ),
        None => {
            let inputs = Inputs {
                campaign,
                campaign_path: PathBuf::from(&next.campaign_path),
                protocol,
                protocol_path: PathBuf::from(&next.protocol_path),
                lab: Arc::clone(lab),
                lab_path: opts.lab.clone(),
                warnings: Default::default(),
            };
            if opts.instant { super::instant::run(inputs, &copts) } else { crate::run::run_inputs(inputs, &copts) }
        }
    }
    .map_err(|e| FleetError::Local(e.to_string()))?;

    // Give back every claim this campaign never started: those the record holds, and those the hub says it holds
    // that never reached the record (claimed ahead).
    let local = local_claims(&opts.db)?;
    release_unstarted(&opts.db, &local, None, "the workcell's campaign ended before it started")?;
    if let Ok(held) = rt.block_on(held_claims(&opts.hub, name, &next.campaign)) {
        let recorded: HashSet<(String, i64, i64)> =
            local.iter().map(|l| (l.claim.campaign.clone(), l.claim.seq, l.claim.epoch)).collect();
        let ahead: Vec<FleetClaim> = held
            .into_iter()
            .map(|c| c.claim)
            .filter(|c| !recorded.contains(&(c.campaign.clone(), c.seq, c.epoch)))
            .collect();
        write_releases(&opts.db, summary.campaign_id, ahead, "claimed ahead; the workcell's campaign ended first")?;
    }
    Ok(summary)
}

/// The claims this workcell holds at the hub in `campaign` (not yet started there), with their proposals.
async fn held_claims(hub: &Hub, workcell: &str, campaign: &str) -> Result<Vec<Claimed>, FleetError> {
    let c = hub.connect().await?;
    let rows = hub
        .bounded(c.client.query(
            "SELECT seq, epoch, proposal FROM fleet.proposals WHERE workcell = $1 AND campaign = $2 AND state = 'claimed'
             ORDER BY seq",
            &[&workcell, &campaign],
        ))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let proposal = serde_json::from_value(r.get::<_, serde_json::Value>(2)).ok()?;
            Some(Claimed {
                claim: FleetClaim {
                    campaign: campaign.to_owned(),
                    seq: r.get(0),
                    epoch: i64::from(r.get::<_, i32>(1)),
                },
                proposal,
            })
        })
        .collect())
}

/// Every claim the record at `db` holds, as its journal says: recorded with a proposal, started or not, released
/// or not.
fn local_claims(db: &Path) -> Result<Vec<LocalClaim>, FleetError> {
    let sqlite = |e: rusqlite::Error| FleetError::Local(format!("{}: {e}", db.display()));
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sqlite)?;
    let started: HashSet<i64> = conn
        .prepare("SELECT proposal_id FROM experiments WHERE proposal_id IS NOT NULL")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sqlite)?;
    let bodies = |kind: &str| -> Result<Vec<String>, FleetError> {
        conn.prepare("SELECT body FROM journal WHERE kind = ?1 ORDER BY id")
            .and_then(|mut s| s.query_map([kind], |r| r.get(0))?.collect())
            .map_err(sqlite)
    };
    let mut released = HashSet::new();
    for body in bodies("ClaimReleased")? {
        if let Ok(RecordEvent::ClaimReleased { claim, .. }) = serde_json::from_str(&body) {
            released.insert((claim.campaign, claim.seq, claim.epoch));
        }
    }
    let mut out = Vec::new();
    for body in bodies("Proposal")? {
        if !body.contains("\"claim\"") {
            continue;
        }
        if let Ok(RecordEvent::Proposal { id, campaign, proposal, .. }) = serde_json::from_str(&body)
            && let Some(claim) = proposal.claim
        {
            let released = released.contains(&(claim.campaign.clone(), claim.seq, claim.epoch));
            out.push(LocalClaim { local_campaign: campaign, claim, started: started.contains(&id), released });
        }
    }
    Ok(out)
}

/// Releases every claim of `local` that was never started nor released, outside campaign `keep` (one about to be
/// resumed keeps its queued claims), writing the releases to the record.
fn release_unstarted(db: &Path, local: &[LocalClaim], keep: Option<i64>, why: &str) -> Result<(), FleetError> {
    let mut by_campaign: BTreeMap<i64, Vec<FleetClaim>> = BTreeMap::new();
    for l in local.iter().filter(|l| !l.started && !l.released && Some(l.local_campaign) != keep) {
        by_campaign.entry(l.local_campaign).or_default().push(l.claim.clone());
    }
    for (campaign, claims) in by_campaign {
        write_releases(db, campaign, claims, why)?;
    }
    Ok(())
}

/// Writes a refusal (or a release) of one claim to the record.
fn write_release(db: &Path, campaign: i64, claim: FleetClaim, why: &str, refused: bool) -> Result<(), FleetError> {
    write_events(db, campaign, vec![claim], why, refused)
}

/// Writes one `ClaimReleased` row per claim to the record, in one transaction.
fn write_releases(db: &Path, campaign: i64, claims: Vec<FleetClaim>, why: &str) -> Result<(), FleetError> {
    write_events(db, campaign, claims, why, false)
}

/// Writes one `ClaimReleased` row per claim, refusals or not, in one transaction.
fn write_events(db: &Path, campaign: i64, claims: Vec<FleetClaim>, why: &str, refused: bool) -> Result<(), FleetError> {
    if claims.is_empty() {
        return Ok(());
    }
    let mut record = Record::open(db).map_err(|e| FleetError::Local(e.to_string()))?;
    let at: f64 = record
        .connection()
        .query_row("SELECT coalesce(max(at), 0) FROM journal WHERE campaign_id = ?1", [campaign], |r| r.get(0))
        .unwrap_or(0.0);
    let events: Vec<RecordEvent> = claims
        .into_iter()
        .map(|claim| RecordEvent::ClaimReleased { campaign, at, claim, reason: why.to_owned(), refused })
        .collect();
    record.write(&events).map_err(|e| FleetError::Local(e.to_string()))
}
