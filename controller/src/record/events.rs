//! The events the record keeps: every fact the controller writes to `lab.db`.
//!
//! Each event is appended to the journal as JSON (its `kind` is the variant name) and then projected into the tables
//! scientists read. The types here are the journal's schema: they are owned by the record, not borrowed from the
//! crates that produce them, so a change elsewhere never silently changes what old journals mean. Bytes are written
//! as hex strings so journal bodies stay readable.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Bytes, written as a hex string in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hex(pub Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(self.0.len() * 2);
        for b in &self.0 {
            out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s.serialize_str(&out)
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect::<Result<Vec<u8>, _>>()
            .map(Hex)
    }
}

/// The campaign row, as written when a campaign starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignStarted {
    /// The campaign's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Wall-clock time at lab time zero, RFC 3339.
    pub started_at: String,
    /// Lab seconds per wall second.
    pub time_scale: f64,
    /// The software that ran it.
    pub software_version: String,
    /// The proposer's seed.
    pub seed: u64,
    /// The objective's output name.
    pub objective_output: String,
    /// `maximize` or `minimize`.
    pub objective_direction: String,
    /// Experiments to run.
    pub budget: usize,
    /// Experiments at once.
    pub in_flight: usize,
    /// The campaign file: path and text.
    pub campaign: (String, String),
    /// The protocol file: path and text.
    pub protocol: (String, String),
    /// The lab file: path and text.
    pub lab: (String, String),
}

/// One step of an experiment, as planned when the experiment starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// Step id.
    pub id: i64,
    /// The protocol's step id.
    pub step: String,
    /// The operation's name.
    pub op: String,
    /// The bound action as JSON.
    pub action: String,
    /// The protocol ids of the steps it runs after.
    pub after: Vec<String>,
    /// Whether the operation may be repeated safely.
    pub repeat_safe: bool,
    /// Whether it was ready at once.
    pub ready: bool,
}

/// A proposal as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposalRow {
    /// The strategy that chose it.
    pub strategy: String,
    /// The proposed values.
    pub params: BTreeMap<String, f64>,
    /// The model's prediction of the objective.
    pub predicted_mean: Option<f64>,
    /// The prediction's standard deviation.
    pub predicted_sd: Option<f64>,
    /// The acquisition value.
    pub acquisition: Option<f64>,
    /// The model's provenance (kernel, hyperparameters, training size).
    pub model: Option<serde_json::Value>,
    /// Why it was chosen.
    pub reason: String,
    /// The experiments (record ids) whose results the proposer had been told when it proposed this.
    pub trained_on: Vec<i64>,
    /// The level names of categorical parameters' values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The fleet's claim this proposal carries, when a hub's learner proposed it and this workcell claimed it
    /// (`lab workcell`); recording it is the workcell's record of the claim, before any experiment starts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<FleetClaim>,
}

/// A claim on one proposal of a fleet's campaign, as a workcell holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetClaim {
    /// The fleet campaign's name at the hub.
    pub campaign: String,
    /// The proposal's number in the fleet campaign.
    pub seq: i64,
    /// The claim's epoch: one more each time the proposal is claimed.
    pub epoch: i64,
}

impl ProposalRow {
    /// The record's form of a proposer's proposal.
    pub fn new(p: &experiments::Proposal, trained_on: Vec<i64>) -> Self {
        ProposalRow {
            strategy: p.strategy.clone(),
            params: p.values.clone(),
            predicted_mean: p.predicted_mean,
            predicted_sd: p.predicted_sd,
            acquisition: p.acquisition,
            model: p.model.clone(),
            reason: p.reason.clone(),
            trained_on,
            labels: p.labels.clone(),
            claim: None,
        }
    }
}

/// An instrument's identity, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityRow {
    /// The model it reports.
    pub model: String,
    /// Its serial number.
    pub serial: Option<String>,
    /// Its firmware.
    pub firmware: Option<String>,
    /// The raw identification reply.
    pub raw: String,
}

impl From<&devices::Identity> for IdentityRow {
    fn from(i: &devices::Identity) -> Self {
        IdentityRow {
            model: i.model.clone(),
            serial: i.serial.clone(),
            firmware: i.firmware.clone(),
            raw: i.raw.clone(),
        }
    }
}

/// The states a step's row may hold: the schema's own list (migration 003 checks it), in its order.
pub const STEP_STATES: [&str; 7] = ["waiting", "ready", "running", "succeeded", "failed", "skipped", "unknown"];

/// Something to write to the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event")]
pub enum RecordEvent {
    /// A campaign started. (Boxed, like the proposal below: these are rare and large, and every event, moved by value
    /// on its way to the writer, is as large as the largest variant.)
    CampaignStarted(Box<CampaignStarted>),
    /// An instrument was opened and identified, or failed to be.
    Instrument {
        /// Campaign id.
        campaign: i64,
        /// Name in the lab file.
        name: String,
        /// Kind.
        kind: String,
        /// Driver.
        driver: String,
        /// Port path.
        port: String,
        /// Line settings.
        line: String,
        /// The identity, if it answered (boxed to keep every event small).
        identity: Option<Box<IdentityRow>>,
        /// Why it is offline, if it is.
        error: Option<String>,
    },
    /// The proposer proposed a point.
    Proposal {
        /// Proposal id.
        id: i64,
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// The proposal.
        proposal: Box<ProposalRow>,
    },
    /// An experiment started, with its steps.
    ExperimentStarted {
        /// Experiment id.
        id: i64,
        /// Campaign id.
        campaign: i64,
        /// 1-based number in the campaign.
        seq: i64,
        /// The proposal it came from.
        proposal: Option<i64>,
        /// Parameter values with units, in the protocol's order.
        params: Vec<(String, f64, String)>,
        /// Rack slot of its vessel.
        vessel: i64,
        /// Lab time.
        at: f64,
        /// Its steps.
        steps: Vec<StepRow>,
    },
    /// A step was added to an experiment after it started (returning a failed experiment's vessel to the rack).
    StepAdded {
        /// Experiment id.
        experiment: i64,
        /// Lab time.
        at: f64,
        /// The step.
        step: StepRow,
        /// Why it was added.
        why: String,
    },
    /// A step changed state.
    StepStatus {
        /// Step id.
        step: i64,
        /// Lab time.
        at: f64,
        /// New state: `ready`, `running`, `succeeded`, `failed`, `skipped` or `unknown`. (Borrowed when the
        /// controller writes it, so that recording a state change allocates nothing for it.)
        status: Cow<'static, str>,
        /// The instrument, once assigned.
        instrument: Option<String>,
        /// The task sent to the instrument, as JSON (with `running`).
        task: Option<String>,
        /// The attempt number (with `running`).
        attempt: Option<u32>,
        /// Outcome JSON (finished steps).
        outcome: Option<String>,
        /// Error or explanation (failed, skipped, unknown steps).
        error: Option<String>,
    },
    /// The scheduler assigned a step to an instrument.
    Decision {
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// Step id.
        step: i64,
        /// The instrument chosen.
        instrument: String,
        /// The deck place chosen, for transfers.
        place: Option<String>,
        /// How long the step had been ready.
        waited: f64,
        /// Why.
        reason: String,
    },
    /// A reading.
    Measurement {
        /// Experiment id.
        experiment: i64,
        /// Step id.
        step: i64,
        /// Output name.
        name: String,
        /// Value.
        value: f64,
        /// Unit.
        unit: String,
        /// Lab time.
        at: f64,
    },
    /// An experiment ended.
    ExperimentFinished {
        /// Experiment id.
        id: i64,
        /// Lab time.
        at: f64,
        /// The objective value, if it succeeded.
        objective: Option<f64>,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// Bytes crossed a wire.
    Command {
        /// Campaign id.
        campaign: i64,
        /// Instrument name.
        instrument: String,
        /// The step that caused it.
        step: Option<i64>,
        /// Lab time written.
        sent_at: f64,
        /// Bytes written.
        sent: Hex,
        /// Lab time the reply was complete.
        replied_at: Option<f64>,
        /// Bytes read.
        received: Hex,
        /// The reply as the driver understood it.
        parsed: Option<String>,
        /// What went wrong.
        error: Option<String>,
    },
    /// Something the record should say in words (a fault, a safe state, an operator's action).
    Event {
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// `info`, `warning` or `error`.
        level: String,
        /// The instrument concerned.
        instrument: Option<String>,
        /// The message.
        message: String,
    },
    /// An operator's request (from `operator_requests`) was carried out; the journal keeps who asked and why.
    RequestHandled {
        /// The request's id in `operator_requests`.
        request: i64,
        /// Lab time.
        at: f64,
        /// What was asked: `pause`, `resume`, `abort` or `confirm`.
        action: String,
        /// Who asked.
        who: String,
        /// Why.
        reason: String,
        /// What was done.
        outcome: String,
    },
    /// A step in doubt was settled from what its instrument reported when read back (or from its silence).
    Settled {
        /// Step id.
        step: i64,
        /// Lab time.
        at: f64,
        /// The instrument read back.
        instrument: String,
        /// `resumed`, `done`, `partial`, `overran`, `not_done`, `in_doubt`, `contradiction` or `unanswered`.
        decision: String,
        /// What the instrument reported, in words; none if it did not answer.
        observed: Option<String>,
        /// Why the decision follows, in words.
        reason: String,
        /// The record ids of earlier exchanges the decision rests on (the reading that marked a hold's start, the
        /// stroke a pump accepted).
        evidence: Vec<i64>,
        /// Lab time the read-back began: the step's exchanges with the instrument from then to `at` are the reading
        /// itself.
        read_from: f64,
        /// A parameter whose value came out other than asked: the experiment, the parameter, and the value (in the
        /// parameter's unit) the learner is told.
        actual: Option<(i64, String, f64)>,
    },
    /// A workcell gave a fleet claim back without starting an experiment from it (its campaign ended first, or it
    /// cannot run the proposal); the hub opens the proposal again when this row arrives.
    ClaimReleased {
        /// Campaign id (the local campaign the claim was taken for).
        campaign: i64,
        /// Lab time.
        at: f64,
        /// The claim.
        claim: FleetClaim,
        /// Why: the workcell cannot run it (a refusal: it is never claimed here again), or only the campaign ended.
        reason: String,
        /// Whether this is a refusal.
        refused: bool,
    },
    /// The campaign ended, or stopped.
    CampaignFinished {
        /// Campaign id.
        campaign: i64,
        /// Lab time.
        at: f64,
        /// `finished`, `aborted`, `failed` or `running` (a campaign resumed after a crash goes back to running).
        status: String,
        /// Why, if not finished normally.
        note: Option<String>,
    },
}

impl RecordEvent {
    /// The variant's name, stored as the journal row's `kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            RecordEvent::CampaignStarted(_) => "CampaignStarted",
            RecordEvent::Instrument { .. } => "Instrument",
            RecordEvent::Proposal { .. } => "Proposal",
            RecordEvent::ExperimentStarted { .. } => "ExperimentStarted",
            RecordEvent::StepAdded { .. } => "StepAdded",
            RecordEvent::StepStatus { .. } => "StepStatus",
            RecordEvent::Decision { .. } => "Decision",
            RecordEvent::Measurement { .. } => "Measurement",
            RecordEvent::ExperimentFinished { .. } => "ExperimentFinished",
            RecordEvent::Command { .. } => "Command",
            RecordEvent::Event { .. } => "Event",
            RecordEvent::RequestHandled { .. } => "RequestHandled",
            RecordEvent::Settled { .. } => "Settled",
            RecordEvent::CampaignFinished { .. } => "CampaignFinished",
            RecordEvent::ClaimReleased { .. } => "ClaimReleased",
        }
    }

    /// The lab time the event happened, if it has one.
    pub fn at(&self) -> Option<f64> {
        match self {
            RecordEvent::Proposal { at, .. }
            | RecordEvent::ExperimentStarted { at, .. }
            | RecordEvent::StepStatus { at, .. }
            | RecordEvent::StepAdded { at, .. }
            | RecordEvent::Decision { at, .. }
            | RecordEvent::Measurement { at, .. }
            | RecordEvent::ExperimentFinished { at, .. }
            | RecordEvent::Event { at, .. }
            | RecordEvent::RequestHandled { at, .. }
            | RecordEvent::Settled { at, .. }
            | RecordEvent::CampaignFinished { at, .. }
            | RecordEvent::ClaimReleased { at, .. } => Some(*at),
            RecordEvent::Command { sent_at, .. } => Some(*sent_at),
            RecordEvent::CampaignStarted(_) | RecordEvent::Instrument { .. } => None,
        }
    }

    /// The campaign the event belongs to, where the event names it.
    pub fn campaign(&self) -> Option<i64> {
        match self {
            RecordEvent::CampaignStarted(c) => Some(c.id),
            RecordEvent::Instrument { campaign, .. }
            | RecordEvent::Proposal { campaign, .. }
            | RecordEvent::ExperimentStarted { campaign, .. }
            | RecordEvent::Decision { campaign, .. }
            | RecordEvent::Command { campaign, .. }
            | RecordEvent::Event { campaign, .. }
            | RecordEvent::CampaignFinished { campaign, .. }
            | RecordEvent::ClaimReleased { campaign, .. } => Some(*campaign),
            _ => None,
        }
    }

    /// A step status change with no extra detail.
    pub fn step(step: i64, at: f64, status: &'static str) -> Self {
        RecordEvent::StepStatus {
            step,
            at,
            status: status.into(),
            instrument: None,
            task: None,
            attempt: None,
            outcome: None,
            error: None,
        }
    }

    /// A wire exchange, in the record's form.
    pub fn command(campaign: i64, e: devices::Exchange) -> Self {
        RecordEvent::Command {
            campaign,
            instrument: e.instrument.to_string(),
            step: e.tag.map(|t| t as i64),
            sent_at: e.sent_at,
            sent: Hex(e.sent),
            replied_at: e.replied_at,
            received: Hex(e.received),
            parsed: e.parsed,
            error: e.error,
        }
    }

    /// A message for people.
    pub fn say(campaign: i64, at: f64, level: &str, instrument: Option<&str>, message: impl Into<String>) -> Self {
        RecordEvent::Event {
            campaign,
            at,
            level: level.to_owned(),
            instrument: instrument.map(str::to_owned),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json_with_bytes_as_hex() {
        let e = RecordEvent::Command {
            campaign: 1,
            instrument: "pump_a".into(),
            step: Some(7),
            sent_at: 1.5,
            sent: Hex(b"/1ZR\r".to_vec()),
            replied_at: Some(1.6),
            received: Hex(vec![0x2f, 0x30, 0x60, 0x03, 0x0d, 0x0a]),
            parsed: None,
            error: None,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""sent":"2f315a520d""#), "{json}");
        assert!(json.starts_with(r#"{"event":"Command""#), "{json}");
        assert_eq!(serde_json::from_str::<RecordEvent>(&json).unwrap(), e);
    }
}
