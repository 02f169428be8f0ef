//! The workcell's source of proposals: claims at the hub, handed to the world as the learner's thread hands
//! proposals to it.
//!
//! When the world asks for `n` proposals, the feed hands over what it already holds (claims adopted at start, or
//! claimed ahead), else claims `n + prefetch` at the hub in one transaction (`fleet.claim`: open proposals whose needs
//! this workcell's capabilities contain, `FOR UPDATE SKIP LOCKED`). Each claimed proposal is checked against this
//! lab's limits first: one beyond them is released at once as a refusal (a `ClaimReleased` row in `lab.db`, which
//! reaches the hub with the journal), so no workcell runs what its instruments would refuse. The world records each
//! proposal it receives with its claim before any experiment starts from it, so `lab.db` holds every claim it acts
//! on.
//!
//! With nothing to claim the feed waits for the learner's `NOTIFY fleet_open` (or a second, since notifications
//! sent while the link was down are lost) and never answers empty-handed, except when the campaign is done: the
//! learner publishes nothing more and every proposal is settled (one another workcell gives back may still need
//! this one). Then it answers with the reason, and the world stops starting experiments. While the hub cannot be
//! reached the world goes on with what it holds; the feed retries with a backoff of at most a second.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Sender;
use devices::Lab;
use protocols::Protocol;

use super::hub::{Connection, FleetError, Hub};
use super::ship::Poke;
use crate::record::{FleetClaim, RecordEvent, Recorder};
use crate::run::{ProposalFeed, RunError};
use crate::schedule::bridge::{Inbound, LearnerRequest};

/// A proposal claimed at the hub.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// Its claim.
    pub claim: FleetClaim,
    /// The proposal as the learner published it.
    pub proposal: experiments::Proposal,
}

/// The hub, as a source of proposals for one local campaign.
#[derive(Debug)]
pub struct HubFeed {
    /// The hub.
    pub hub: Hub,
    /// This workcell's name.
    pub workcell: String,
    /// The fleet campaign.
    pub campaign: String,
    /// Claims this workcell holds at the hub and its record lacks (adopted after a crash): handed over first.
    pub adopted: Vec<Claimed>,
    /// Claims (number, epoch) the record holds already: never handed over again.
    pub recorded: HashSet<(i64, i64)>,
    /// How many claims to hold beyond what the world asks for, so work goes on through a short outage.
    pub prefetch: usize,
    /// The workcell's shipper, poked once a result is committed to `lab.db` so the learner hears of it at once.
    pub shipper: Option<Poke>,
    /// This workcell's lab, for the limits.
    pub lab: Arc<Lab>,
    /// The campaign's protocol.
    pub protocol: Arc<Protocol>,
    /// The campaign's fixed parameter values.
    pub fixed: experiments::Point,
}

impl ProposalFeed for HubFeed {
    fn spawn(
        &self,
        inbound: Sender<Inbound>,
        recorder: Recorder,
        campaign: i64,
        clock: devices::Clock,
    ) -> Result<(Sender<LearnerRequest>, std::thread::JoinHandle<()>), RunError> {
        let (tx, rx) = crossbeam_channel::unbounded::<LearnerRequest>();
        let (atx, arx) = tokio::sync::mpsc::unbounded_channel();
        // The world's requests arrive on a crossbeam channel; a small thread moves them to the feed's runtime.
        std::thread::Builder::new()
            .name("lab-feed-inbox".into())
            .spawn(move || {
                while let Ok(r) = rx.recv() {
                    if atx.send(r).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| RunError::System(format!("cannot start the feed's thread: {e}")))?;
        let serve = Serve {
            hub: self.hub.clone(),
            workcell: self.workcell.clone(),
            campaign: self.campaign.clone(),
            held: self.adopted.iter().cloned().collect(),
            known: self
                .recorded
                .iter()
                .copied()
                .chain(self.adopted.iter().map(|c| (c.claim.seq, c.claim.epoch)))
                .collect(),
            prefetch: self.prefetch,
            shipper: self.shipper.clone(),
            lab: Arc::clone(&self.lab),
            protocol: Arc::clone(&self.protocol),
            fixed: self.fixed.clone(),
            recorder,
            local_campaign: campaign,
            clock,
        };
        let handle = std::thread::Builder::new()
            .name("lab-feed".into())
            .spawn(move || {
                let Ok(rt) = super::hub::runtime() else { return };
                rt.block_on(serve.run(arx, inbound));
            })
            .map_err(|e| RunError::System(format!("cannot start the feed's thread: {e}")))?;
        Ok((tx, handle))
    }
}

/// The feed's thread.
struct Serve {
    hub: Hub,
    workcell: String,
    campaign: String,
    held: VecDeque<Claimed>,
    /// Every claim this feed handed over or holds, and those the record held when it started.
    known: HashSet<(i64, i64)>,
    prefetch: usize,
    shipper: Option<Poke>,
    lab: Arc<Lab>,
    protocol: Arc<Protocol>,
    fixed: experiments::Point,
    recorder: Recorder,
    local_campaign: i64,
    clock: devices::Clock,
}

/// What the hub said when asked for claims.
enum Answer {
    /// These.
    Claims(Vec<Claimed>),
    /// None now; the campaign runs on.
    Wait,
    /// The campaign is finished.
    Finished(String),
}

impl Serve {
    async fn run(
        mut self,
        mut requests: tokio::sync::mpsc::UnboundedReceiver<LearnerRequest>,
        inbound: Sender<Inbound>,
    ) {
        let mut link: Option<Connection> = None;
        let mut backoff = Duration::from_millis(50);
        let mut asked = 0usize;
        let mut last_error: Option<String> = None;
        loop {
            if asked == 0 {
                match requests.recv().await {
                    Some(r) => asked += self.take(r),
                    None => break,
                }
            }
            while let Ok(r) = requests.try_recv() {
                asked += self.take(r);
            }
            if self.held.is_empty() {
                let want = asked + self.prefetch;
                let answer = match &mut link {
                    Some(c) => self.claim(c, want).await,
                    None => match self.hub.connect().await {
                        Ok(c) => {
                            let c = link.insert(c);
                            let _ = self.hub.bounded(c.client.batch_execute("LISTEN fleet_open")).await;
                            self.claim(c, want).await
                        }
                        Err(e) => Err(e),
                    },
                };
                match answer {
                    Ok(Answer::Claims(claims)) => {
                        backoff = Duration::from_millis(50);
                        last_error = None;
                        self.held.extend(claims);
                    }
                    Ok(Answer::Finished(why)) => {
                        let stop =
                            Inbound::Proposals { asked, proposals: Vec::new(), stop: Some(why), claims: Vec::new() };
                        if inbound.send(stop).is_err() {
                            break;
                        }
                        asked = 0;
                        continue;
                    }
                    Ok(Answer::Wait) => {
                        backoff = Duration::from_millis(50);
                        let c = link.as_mut().expect("claimed through it");
                        tokio::select! {
                            _ = c.notifications.recv() => {}
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            r = requests.recv() => match r {
                                Some(r) => asked += self.take(r),
                                None => break,
                            },
                        }
                        continue;
                    }
                    Err(e) => {
                        // Said once per kind of trouble: a link that flaps would otherwise fill the log.
                        let said = e.to_string();
                        if last_error.as_deref() != Some(said.as_str()) {
                            eprintln!("lab: claiming at the hub: {said}; the workcell goes on with what it holds");
                            last_error = Some(said);
                        }
                        link = None;
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            r = requests.recv() => match r {
                                Some(r) => asked += self.take(r),
                                None => break,
                            },
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        continue;
                    }
                }
            }
            if self.held.is_empty() {
                continue;
            }
            let take = asked.min(self.held.len());
            let handed: Vec<Claimed> = self.held.drain(..take).collect();
            let answer = Inbound::Proposals {
                asked,
                proposals: handed.iter().map(|c| c.proposal.clone()).collect(),
                stop: None,
                claims: handed.into_iter().map(|c| c.claim).collect(),
            };
            if inbound.send(answer).is_err() {
                break;
            }
            asked = 0;
        }
        // Claims held ahead and never handed over stay claimed at the hub; `lab workcell` releases them through the
        // record when the campaign ends, and adopts them if it stopped first.
        self.recorder.flush();
    }

    /// How many proposals a request of the world asks for. A tell means an experiment ended and its result was sent
    /// to the record: once that is committed, the shipper is poked, so the result reaches the hub (and the learner)
    /// without waiting for the shipper's next look.
    fn take(&self, request: LearnerRequest) -> usize {
        match request {
            LearnerRequest::Ask { n, .. } => n,
            LearnerRequest::Tell(_) => {
                if let Some(shipper) = &self.shipper {
                    let shipper = shipper.clone();
                    self.recorder.after_commit(move || shipper.poke());
                }
                0
            }
        }
    }

    /// Claims up to `want` proposals; refuses those beyond this lab's limits.
    async fn claim(&mut self, c: &mut Connection, want: usize) -> Result<Answer, FleetError> {
        let mut rows = self
            .hub
            .bounded(c.client.query(
                "SELECT seq, epoch, proposal FROM fleet.claim($1, $2, $3)",
                &[&self.workcell, &self.campaign, &(want as i32)],
            ))
            .await?;
        if rows.is_empty() {
            // A claim whose commit reached the hub while its answer was lost with the link is this workcell's and
            // nobody else's: adopt it, or it would wait forever.
            rows = self
                .hub
                .bounded(c.client.query(
                    "SELECT seq, epoch, proposal FROM fleet.proposals
                     WHERE workcell = $1 AND campaign = $2 AND state = 'claimed' ORDER BY seq",
                    &[&self.workcell, &self.campaign],
                ))
                .await?
                .into_iter()
                .filter(|r| !self.known.contains(&(r.get::<_, i64>(0), i64::from(r.get::<_, i32>(1)))))
                .collect();
        }
        if rows.is_empty() {
            let status: Option<String> = self
                .hub
                .bounded(c.client.query_opt(
                    "SELECT CASE WHEN c.status = 'finished' AND NOT EXISTS (SELECT 1 FROM fleet.proposals p
                         WHERE p.campaign = c.name AND p.state IN ('open', 'claimed', 'started', 'orphaned'))
                     THEN coalesce(c.stop_reason, 'finished') END
                     FROM fleet.campaigns c WHERE c.name = $1",
                    &[&self.campaign],
                ))
                .await?
                .and_then(|r| r.get(0));
            return Ok(match status {
                Some(why) => {
                    Answer::Finished(format!("the fleet's learner finished campaign {}: {why}", self.campaign))
                }
                None => Answer::Wait,
            });
        }
        let mut claims = Vec::new();
        let mut refused = false;
        for r in rows {
            let claim =
                FleetClaim { campaign: self.campaign.clone(), seq: r.get(0), epoch: i64::from(r.get::<_, i32>(1)) };
            self.known.insert((claim.seq, claim.epoch));
            let value: serde_json::Value = r.get(2);
            let proposal: experiments::Proposal = match serde_json::from_value(value) {
                Ok(p) => p,
                Err(e) => {
                    self.release(claim, format!("the proposal does not read as one: {e}"));
                    refused = true;
                    continue;
                }
            };
            if let Some(why) = super::capability::refusal(&self.lab, &self.protocol, &self.fixed, &proposal.values) {
                self.release(claim, why);
                refused = true;
                continue;
            }
            claims.push(Claimed { claim, proposal });
        }
        if refused {
            // The refusals must be durable before anything else is claimed, so a crash cannot lose them.
            self.recorder.flush();
        }
        Ok(if claims.is_empty() && !refused { Answer::Wait } else { Answer::Claims(claims) })
    }

    /// Records that this workcell gives `claim` back because it cannot run it.
    fn release(&self, claim: FleetClaim, reason: String) {
        self.recorder.send(RecordEvent::ClaimReleased {
            campaign: self.local_campaign,
            at: self.clock.now(),
            claim,
            reason,
            refused: true,
        });
    }
}
