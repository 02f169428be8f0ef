//! Events packed into bytes for the trip from the scheduler's thread to the record's writer.
//!
//! A [`RecordEvent`] is 168 bytes, and its text lives in separate allocations. Kept whole until the writer took it, a
//! batch of them and their text was memory the scheduler had filled and could not reuse while it waited, and the
//! writer freed it on another core. The events the scheduler sends for every step (state changes, decisions, readings,
//! wire exchanges) are therefore copied into one growing byte buffer, 50 to 100 bytes each, and dropped at once on the
//! thread that made them, so their memory is reused while it is still in that core's cache. The writer unpacks them
//! into events again. Rare events (a campaign's start, an experiment's steps, a proposal) travel whole beside the
//! bytes, in order. Packing runs more instructions than handing events over whole, and saves more time than it costs:
//! with the scheduler and the writer on a core each, recording cost the scheduler +2 to +5% of its time per step at
//! 1,000 and 10,000 queued steps where whole events cost +4 to +17% (BENCHMARKS.md, "Record").
//!
//! The format is private to one process and one build: nothing packed here is ever stored.

use std::borrow::Cow;

use super::events::{Hex, RecordEvent, STEP_STATES};

/// Tags: what the next packed event is.
const WHOLE: u8 = 0;
const STEP_STATUS: u8 = 1;
const DECISION: u8 = 2;
const MEASUREMENT: u8 = 3;
const COMMAND: u8 = 4;

/// The length written for an absent string or byte string; anything as long travels whole.
const NONE: u32 = u32::MAX;

/// A state not in [`STEP_STATES`], packed as text (the others are packed as their index, so that unpacking borrows
/// them instead of allocating).
const OTHER_STATE: u8 = u8::MAX;

/// Events in the order they were sent: the frequent ones packed into bytes, the rest kept whole.
#[derive(Debug, Default)]
pub struct Packed {
    bytes: Vec<u8>,
    whole: Vec<RecordEvent>,
    len: usize,
}

/// The packed bytes did not unpack: a bug in this module, never bad input.
#[derive(Debug, thiserror::Error)]
#[error("packed events are malformed at byte {at}: {what}")]
struct Malformed {
    at: usize,
    what: &'static str,
}

impl Packed {
    /// Room for about `events` events without growing.
    pub fn with_capacity(events: usize) -> Self {
        Packed { bytes: Vec::with_capacity(events * 96), whole: Vec::new(), len: 0 }
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `event` after the others: packed if it is one of the packed kinds and each of its texts is shorter than
    /// [`NONE`] bytes, else whole.
    pub fn push(&mut self, event: RecordEvent) {
        self.len += 1;
        let start = self.bytes.len();
        if pack(&mut self.bytes, &event).is_none() {
            self.bytes.truncate(start);
            self.bytes.push(WHOLE);
            self.whole.push(event);
        }
    }

    /// The events, in the order they were pushed, to `each`; stops at the first error, which is `each`'s or says
    /// where the bytes were malformed.
    pub fn unpack(self, mut each: impl FnMut(RecordEvent) -> Result<(), String>) -> Result<(), String> {
        self.unpack_each(&mut each).map_err(|e| match e {
            Stop::Malformed(m) => m.to_string(),
            Stop::Each(e) => e,
        })
    }

    fn unpack_each(self, each: &mut impl FnMut(RecordEvent) -> Result<(), String>) -> Result<(), Stop> {
        let mut r = Reader { bytes: &self.bytes, at: 0 };
        let mut whole = self.whole.into_iter();
        let mut unpacked = 0;
        while r.at < r.bytes.len() {
            let event = match r.u8()? {
                WHOLE => whole.next().ok_or_else(|| r.malformed("more whole events named than kept"))?,
                STEP_STATUS => RecordEvent::StepStatus {
                    step: r.i64()?,
                    at: r.f64()?,
                    status: match r.u8()? {
                        OTHER_STATE => Cow::Owned(r.string()?),
                        i => {
                            Cow::Borrowed(*STEP_STATES.get(usize::from(i)).ok_or_else(|| r.malformed("unknown state"))?)
                        }
                    },
                    instrument: r.opt_string()?,
                    task: r.opt_string()?,
                    attempt: r.opt_u32()?,
                    outcome: r.opt_string()?,
                    error: r.opt_string()?,
                },
                DECISION => RecordEvent::Decision {
                    campaign: r.i64()?,
                    at: r.f64()?,
                    step: r.i64()?,
                    instrument: r.string()?,
                    place: r.opt_string()?,
                    waited: r.f64()?,
                    reason: r.string()?,
                },
                MEASUREMENT => RecordEvent::Measurement {
                    experiment: r.i64()?,
                    step: r.i64()?,
                    name: r.string()?,
                    value: r.f64()?,
                    unit: r.string()?,
                    at: r.f64()?,
                },
                COMMAND => RecordEvent::Command {
                    campaign: r.i64()?,
                    instrument: r.string()?,
                    step: r.opt_i64()?,
                    sent_at: r.f64()?,
                    sent: Hex(r.bytes()?.ok_or_else(|| r.malformed("absent bytes"))?.to_vec()),
                    replied_at: r.opt_f64()?,
                    received: Hex(r.bytes()?.ok_or_else(|| r.malformed("absent bytes"))?.to_vec()),
                    parsed: r.opt_string()?,
                    error: r.opt_string()?,
                },
                _ => return Err(r.malformed("unknown tag").into()),
            };
            unpacked += 1;
            each(event).map_err(Stop::Each)?;
        }
        // Every event pushed must have come out: a batch cut on an event's boundary would otherwise lose events silently.
        if unpacked != self.len || whole.next().is_some() {
            return Err(r.malformed("not as many events as were packed").into());
        }
        Ok(())
    }
}

/// Why unpacking stopped.
enum Stop {
    Malformed(Malformed),
    Each(String),
}

impl From<Malformed> for Stop {
    fn from(m: Malformed) -> Self {
        Stop::Malformed(m)
    }
}

/// Packs `event` onto `b`; `None` (with part of it written) if it is not a packed kind or a text is too long.
fn pack(b: &mut Vec<u8>, event: &RecordEvent) -> Option<()> {
    match event {
        RecordEvent::StepStatus { step, at, status, instrument, task, attempt, outcome, error } => {
            b.push(STEP_STATUS);
            put_i64(b, *step);
            put_f64(b, *at);
            match STEP_STATES.iter().position(|s| *s == status) {
                Some(i) => b.push(i as u8),
                None => {
                    b.push(OTHER_STATE);
                    put_str(b, Some(status))?;
                }
            }
            put_str(b, instrument.as_deref())?;
            put_str(b, task.as_deref())?;
            put_opt_u32(b, *attempt);
            put_str(b, outcome.as_deref())?;
            put_str(b, error.as_deref())?;
        }
        RecordEvent::Decision { campaign, at, step, instrument, place, waited, reason } => {
            b.push(DECISION);
            put_i64(b, *campaign);
            put_f64(b, *at);
            put_i64(b, *step);
            put_str(b, Some(instrument))?;
            put_str(b, place.as_deref())?;
            put_f64(b, *waited);
            put_str(b, Some(reason))?;
        }
        RecordEvent::Measurement { experiment, step, name, value, unit, at } => {
            b.push(MEASUREMENT);
            put_i64(b, *experiment);
            put_i64(b, *step);
            put_str(b, Some(name))?;
            put_f64(b, *value);
            put_str(b, Some(unit))?;
            put_f64(b, *at);
        }
        RecordEvent::Command { campaign, instrument, step, sent_at, sent, replied_at, received, parsed, error } => {
            b.push(COMMAND);
            put_i64(b, *campaign);
            put_str(b, Some(instrument))?;
            put_opt_i64(b, *step);
            put_f64(b, *sent_at);
            put_bytes(b, Some(&sent.0))?;
            put_opt_f64(b, *replied_at);
            put_bytes(b, Some(&received.0))?;
            put_str(b, parsed.as_deref())?;
            put_str(b, error.as_deref())?;
        }
        _ => return None,
    }
    Some(())
}

fn put_i64(b: &mut Vec<u8>, v: i64) {
    b.extend_from_slice(&v.to_le_bytes());
}

fn put_f64(b: &mut Vec<u8>, v: f64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// `None` for a text of [`NONE`] bytes or more, which cannot be packed.
fn put_bytes(b: &mut Vec<u8>, v: Option<&[u8]>) -> Option<()> {
    match v {
        Some(v) => {
            let n = u32::try_from(v.len()).ok().filter(|&n| n < NONE)?;
            b.extend_from_slice(&n.to_le_bytes());
            b.extend_from_slice(v);
        }
        None => b.extend_from_slice(&NONE.to_le_bytes()),
    }
    Some(())
}

fn put_str(b: &mut Vec<u8>, v: Option<&str>) -> Option<()> {
    put_bytes(b, v.map(str::as_bytes))
}

fn put_opt_i64(b: &mut Vec<u8>, v: Option<i64>) {
    b.push(u8::from(v.is_some()));
    put_i64(b, v.unwrap_or_default());
}

fn put_opt_f64(b: &mut Vec<u8>, v: Option<f64>) {
    b.push(u8::from(v.is_some()));
    put_f64(b, v.unwrap_or_default());
}

fn put_opt_u32(b: &mut Vec<u8>, v: Option<u32>) {
    b.push(u8::from(v.is_some()));
    b.extend_from_slice(&v.unwrap_or_default().to_le_bytes());
}

/// Reads packed bytes in order.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn malformed(&self, what: &'static str) -> Malformed {
        Malformed { at: self.at, what }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let end = self.at.saturating_add(N);
        let taken = self.bytes.get(self.at..end).ok_or_else(|| self.malformed("cut short"))?;
        self.at = end;
        Ok(taken.try_into().expect("a slice of N bytes"))
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take::<1>()?[0])
    }

    fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    fn f64(&mut self) -> Result<f64, Malformed> {
        Ok(f64::from_le_bytes(self.take()?))
    }

    fn present(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.malformed("bad presence flag")),
        }
    }

    fn opt_i64(&mut self) -> Result<Option<i64>, Malformed> {
        let present = self.present()?;
        let v = self.i64()?;
        Ok(present.then_some(v))
    }

    fn opt_f64(&mut self) -> Result<Option<f64>, Malformed> {
        let present = self.present()?;
        let v = self.f64()?;
        Ok(present.then_some(v))
    }

    fn opt_u32(&mut self) -> Result<Option<u32>, Malformed> {
        let present = self.present()?;
        let v = u32::from_le_bytes(self.take()?);
        Ok(present.then_some(v))
    }

    fn bytes(&mut self) -> Result<Option<&'a [u8]>, Malformed> {
        let n = u32::from_le_bytes(self.take()?);
        if n == NONE {
            return Ok(None);
        }
        let end = self.at.saturating_add(n as usize);
        let v = self.bytes.get(self.at..end).ok_or_else(|| self.malformed("text cut short"))?;
        self.at = end;
        Ok(Some(v))
    }

    fn opt_string(&mut self) -> Result<Option<String>, Malformed> {
        let start = self.at;
        match self.bytes()? {
            Some(v) => std::str::from_utf8(v)
                .map(|s| Some(s.to_owned()))
                .map_err(|_| Malformed { at: start, what: "text is not UTF-8" }),
            None => Ok(None),
        }
    }

    fn string(&mut self) -> Result<String, Malformed> {
        self.opt_string()?.ok_or_else(|| self.malformed("absent text"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::events::StepRow;

    /// Every packed variant with every optional field absent and present, interleaved with events kept whole.
    fn samples() -> Vec<RecordEvent> {
        let step = |status: Cow<'static, str>, some: bool| RecordEvent::StepStatus {
            step: 42,
            at: 1.25,
            status,
            instrument: some.then(|| "pump_a".into()),
            task: some.then(|| r#"{"Dispense":{"volume_ml":0.5}}"#.into()),
            attempt: some.then_some(3),
            outcome: some.then(|| r#""Done""#.into()),
            error: some.then(|| "timed out: µ, ü and a \"quote\"".into()),
        };
        vec![
            RecordEvent::ExperimentStarted {
                id: 1,
                campaign: 1,
                seq: 1,
                proposal: None,
                params: vec![("volume".into(), 0.5, "mL".into())],
                vessel: 2,
                at: 0.0,
                steps: vec![StepRow {
                    id: 42,
                    step: "dispense".into(),
                    op: "dispense".into(),
                    action: "{}".into(),
                    after: vec![],
                    repeat_safe: false,
                    ready: true,
                }],
            },
            step(Cow::Borrowed("running"), true),
            step(Cow::Borrowed("ready"), false),
            step(Cow::Owned("succeeded".into()), false),
            step(Cow::Owned("a state of the future".into()), true),
            RecordEvent::Decision {
                campaign: 1,
                at: 2.0,
                step: 42,
                instrument: "pump_a".into(),
                place: Some("dispense".into()),
                waited: 0.5,
                reason: "critical path; `pump_a` was idle".into(),
            },
            RecordEvent::Decision {
                campaign: 1,
                at: 2.0,
                step: 43,
                instrument: String::new(),
                place: None,
                waited: f64::NAN,
                reason: String::new(),
            },
            RecordEvent::say(1, 3.0, "warning", Some("pump_a"), "kept whole"),
            RecordEvent::Measurement {
                experiment: 1,
                step: 44,
                name: "absorbance".into(),
                value: -0.0,
                unit: "AU".into(),
                at: f64::INFINITY,
            },
            RecordEvent::Command {
                campaign: 1,
                instrument: "pump_a".into(),
                step: Some(42),
                sent_at: 1.5,
                sent: Hex(b"/1ZR\r".to_vec()),
                replied_at: Some(1.6),
                received: Hex(vec![0x2f, 0x30, 0x60, 0x03, 0x0d, 0x0a, 0xff, 0x00]),
                parsed: Some("ok".into()),
                error: None,
            },
            RecordEvent::Command {
                campaign: 1,
                instrument: "balance".into(),
                step: None,
                sent_at: 1.5,
                sent: Hex(Vec::new()),
                replied_at: None,
                received: Hex(Vec::new()),
                parsed: None,
                error: Some("no reply".into()),
            },
            RecordEvent::ExperimentFinished { id: 1, at: 4.0, objective: Some(0.7), error: None },
        ]
    }

    /// Compares through JSON, which is what the journal hashes, so that NaN compares equal to itself.
    fn json(events: &[RecordEvent]) -> Vec<String> {
        events.iter().map(|e| serde_json::to_string(e).unwrap()).collect()
    }

    #[test]
    fn every_event_unpacks_as_it_was_packed_and_in_order() {
        let mut packed = Packed::with_capacity(4);
        for e in samples() {
            packed.push(e);
        }
        assert_eq!(packed.len(), samples().len());
        let mut out = Vec::new();
        packed
            .unpack(|e| {
                out.push(e);
                Ok(())
            })
            .unwrap();
        assert_eq!(json(&out), json(&samples()));
        assert!(matches!(&out[2], RecordEvent::StepStatus { status: Cow::Borrowed("ready"), .. }), "{:?}", out[2]);
        assert!(matches!(&out[3], RecordEvent::StepStatus { status: Cow::Borrowed("succeeded"), .. }));
        assert!(matches!(&out[4], RecordEvent::StepStatus { status: Cow::Owned(_), .. }));
        // Unpacked measurements keep the sign of zero and infinities, which JSON would not show.
        let RecordEvent::Measurement { value, at, .. } = &out[8] else { panic!("{:?}", out[8]) };
        assert!(value.is_sign_negative() && at.is_infinite());
    }

    #[test]
    fn cut_or_corrupt_bytes_are_an_error_not_a_panic() {
        let mut packed = Packed::default();
        for e in samples() {
            packed.push(e);
        }
        let full = packed.bytes.len();
        for cut in 0..full {
            let mut p = Packed::default();
            for e in samples() {
                p.push(e);
            }
            p.bytes.truncate(cut);
            // A cut on an event's boundary, too, leaves fewer events than were packed.
            assert!(p.unpack(|_| Ok(())).is_err(), "cut at {cut}");
        }
        let mut p = Packed::default();
        p.push(RecordEvent::say(1, 0.0, "info", None, "kept whole"));
        p.whole.clear();
        assert!(p.unpack(|_| Ok(())).unwrap_err().contains("more whole events named than kept"));
        let mut p = Packed::default();
        p.push(RecordEvent::step(1, 0.0, "ready"));
        p.whole.push(RecordEvent::step(2, 0.0, "ready"));
        assert!(p.unpack(|_| Ok(())).unwrap_err().contains("not as many events as were packed"));
        let mut p = Packed::default();
        p.push(RecordEvent::step(1, 0.0, "ready"));
        p.bytes[0] = 99;
        assert!(p.unpack(|_| Ok(())).unwrap_err().contains("unknown tag"));
    }
}
