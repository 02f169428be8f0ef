//! Replaying a driver against a recorded session, to check a driver change against what real instruments said.
//!
//! A [`Transcript`] is the exchanges of one instrument in order (the bytes sent and the bytes received, as the
//! transport recorded them: from `lab.db`'s `commands` table, or a `.transcript.ron` file), plus optionally the
//! capability calls that produced them. [`replay`] builds the instrument's driver on a scripted stream instead of a
//! port: when the driver writes the recorded bytes, the stream answers with the recorded reply; the first byte the
//! driver writes that differs from the recording stops the replay, and the [`ReplayReport`] says where (which
//! exchange, which byte, what was expected and what the driver sent). A replay that reproduces every exchange and
//! uses them all shows the driver still speaks the protocol exactly as in the recorded session.
//!
//! Lab time runs on a stepping clock ([`Clock::stepping`]): every wait ends at once, so a session of hours replays
//! in moments, and the clock reports the recorded session's time scale, so drivers that size settings by it (a
//! watchdog) send what they sent then. Replies the recording lacks (a command that timed out) make the driver
//! wait its line timeout, as it did. What the replay cannot reproduce: how many times a driver polls while lab time
//! passes depends, in a live session, on wall-clock jitter, so a session whose poll count was decided by timing
//! rather than by the replies may diverge at a poll; the report then names that poll.
//!
//! A transcript file looks like this:
//!
//! ```ron
//! Transcript(
//!     instrument: "pump_a",
//!     time_scale: 400,
//!     exchanges: [
//!         (sent: b"/1&\r", received: b"/0`XCalibur 1.21\x03\r\n"),
//!         (sent: b"/1ZR\r", received: b"/0`\x03\r\n"),
//!     ],
//!     calls: [Identify, Initialize, Task(Dispense(volume: 250)), SafeState],
//! )
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::capability::{Task, execute};
use crate::clock::Clock;
use crate::error::Printable;
use crate::lab::{Deck, InstrumentSpec};
use crate::transport::{Exchange, ExchangeSink, discard};

/// One recorded exchange: the bytes the driver sent and the bytes that came back. Either may be empty: a command
/// the instrument never answers, or bytes that arrived unasked (the rest of a multi-line reply, line noise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    /// The bytes sent, exactly.
    #[serde(with = "byte_string")]
    pub sent: Vec<u8>,
    /// The bytes received, exactly.
    #[serde(with = "byte_string")]
    pub received: Vec<u8>,
}

/// A capability call to make on the driver during a replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReplayCall {
    /// [`crate::Instrument::identify`].
    Identify,
    /// [`crate::Instrument::initialize`].
    Initialize,
    /// [`crate::capability::execute`] of the task.
    Task(Task),
    /// [`crate::Instrument::safe_state`].
    SafeState,
}

impl fmt::Display for ReplayCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplayCall::Identify => f.write_str("identify"),
            ReplayCall::Initialize => f.write_str("initialize"),
            ReplayCall::Task(t) => write!(f, "{t:?}"),
            ReplayCall::SafeState => f.write_str("safe state"),
        }
    }
}

/// The recorded exchanges of one instrument, and the calls that made them if known.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename = "Transcript")]
pub struct Transcript {
    /// The instrument's name in the lab file.
    pub instrument: String,
    /// Lab seconds per wall second in the recorded session.
    #[serde(default = "one")]
    pub time_scale: f64,
    /// The exchanges, in order.
    pub exchanges: Vec<Recorded>,
    /// The capability calls of the session, in order, if known.
    #[serde(default)]
    pub calls: Vec<ReplayCall>,
}

fn one() -> f64 {
    1.0
}

/// Why a transcript file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("not a transcript: {0}")]
pub struct TranscriptError(String);

impl Transcript {
    /// A transcript from recorded `(sent, received)` pairs, in order: the rows of `lab.db`'s `commands` table for
    /// one instrument of one campaign, ordered by `id`. Rows with nothing sent and nothing received (the link
    /// noting a reconnection) are left out.
    pub fn from_exchanges(
        instrument: &str,
        time_scale: f64,
        exchanges: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Self {
        Transcript {
            instrument: instrument.to_owned(),
            time_scale,
            exchanges: exchanges
                .into_iter()
                .filter(|(s, r)| !(s.is_empty() && r.is_empty()))
                .map(|(sent, received)| Recorded { sent, received })
                .collect(),
            calls: Vec::new(),
        }
    }

    /// Reads a transcript file's text.
    pub fn parse(text: &str) -> Result<Self, TranscriptError> {
        ron::from_str(text).map_err(|e| TranscriptError(e.to_string()))
    }

    /// The transcript as a file's text.
    pub fn to_ron(&self) -> String {
        let config = ron::ser::PrettyConfig::default().escape_strings(true);
        // Every field serializes; a failure would be a bug in the serializer, and yields an empty file.
        ron::ser::to_string_pretty(self, config).unwrap_or_default()
    }
}

/// Collects the exchanges of a live session into a [`Transcript`]: pass [`Capture::sink`] to the driver.
#[derive(Debug, Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<Exchange>>>);

impl Capture {
    /// An empty capture.
    pub fn new() -> Self {
        Capture::default()
    }

    /// The sink that feeds this capture.
    pub fn sink(&self) -> ExchangeSink {
        let log = Arc::clone(&self.0);
        Arc::new(move |e| log.lock().unwrap_or_else(|p| p.into_inner()).push(e))
    }

    /// The transcript of everything captured for `instrument`.
    pub fn transcript(&self, instrument: &str, time_scale: f64, calls: Vec<ReplayCall>) -> Transcript {
        let log = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let pairs = log.iter().filter(|e| &*e.instrument == instrument).map(|e| (e.sent.clone(), e.received.clone()));
        Transcript { calls, ..Transcript::from_exchanges(instrument, time_scale, pairs) }
    }
}

/// Where the driver's bytes first differed from the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    /// The index of the recorded exchange the driver was sending.
    pub exchange: usize,
    /// The index of the first differing byte within that exchange's sent bytes.
    pub offset: usize,
    /// What the recording says was sent (empty if the recording had no more exchanges).
    pub expected: Vec<u8>,
    /// What the driver sent for that exchange, up to and including its first differing write.
    pub actual: Vec<u8>,
    /// The index of the call during which it happened.
    pub call: usize,
}

/// How one call of the replay ended.
#[derive(Debug, Clone, PartialEq)]
pub struct CallResult {
    /// The call.
    pub call: ReplayCall,
    /// What it returned (debug text), or its error.
    pub result: Result<String, String>,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// The instrument.
    pub instrument: String,
    /// Recorded exchanges (after leaving out empty ones).
    pub recorded: usize,
    /// Exchanges the driver reproduced byte for byte.
    pub matched: usize,
    /// Where the driver first differed, if it did.
    pub divergence: Option<Divergence>,
    /// Each call made and how it ended; calls after a divergence are not made.
    pub calls: Vec<CallResult>,
}

impl ReplayReport {
    /// Whether the driver reproduced the whole recording: no divergence, and no recorded exchange left over.
    pub fn reproduced(&self) -> bool {
        self.divergence.is_none() && self.matched == self.recorded
    }
}

impl fmt::Display for ReplayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {} of {} recorded exchanges reproduced", self.instrument, self.matched, self.recorded)?;
        for (i, c) in self.calls.iter().enumerate() {
            match &c.result {
                Ok(r) => writeln!(f, "  call {i} {}: ok {r}", c.call)?,
                Err(e) => writeln!(f, "  call {i} {}: error {e}", c.call)?,
            }
        }
        match &self.divergence {
            None if self.reproduced() => writeln!(f, "  the driver sent exactly the recorded bytes"),
            None => writeln!(f, "  the calls ended before the recording did"),
            Some(d) => writeln!(
                f,
                "  the driver's bytes differ at exchange {}, byte {} (during call {}): recorded {}, driver sent {}",
                d.exchange,
                d.offset,
                d.call,
                Printable(&d.expected),
                Printable(&d.actual)
            ),
        }
    }
}

/// Runs `calls` on the driver of `spec` against the recorded `transcript` and reports where the driver's bytes
/// differ. Must be called inside a tokio runtime.
pub async fn replay(spec: &InstrumentSpec, deck: &Deck, transcript: &Transcript, calls: &[ReplayCall]) -> ReplayReport {
    let script = Script::new(&transcript.exchanges);
    let scale =
        if transcript.time_scale.is_finite() && transcript.time_scale > 0.0 { transcript.time_scale } else { 1.0 };
    let sink: ExchangeSink = discard();
    let mut driver = crate::drivers::build(spec, deck, script.clone(), Clock::stepping(scale), sink);
    let mut results = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        script.state().call = i;
        let result = match call {
            ReplayCall::Identify => driver.identify().await.map(|id| format!("{id:?}")),
            ReplayCall::Initialize => driver.initialize().await.map(|()| "done".to_owned()),
            ReplayCall::Task(task) => execute(driver.as_mut(), task).await.map(|o| format!("{o:?}")),
            ReplayCall::SafeState => driver.safe_state().await.map(|()| "done".to_owned()),
        };
        results.push(CallResult { call: call.clone(), result: result.map_err(|e| e.to_string()) });
        if script.state().divergence.is_some() {
            break;
        }
    }
    let state = script.state();
    ReplayReport {
        instrument: transcript.instrument.clone(),
        recorded: state.entries.len(),
        matched: state.next,
        divergence: state.divergence.clone(),
        calls: results,
    }
}

/// The scripted stream's state, shared between the driver's stream and the replay.
#[derive(Debug)]
struct ScriptState {
    entries: Vec<Recorded>,
    /// The exchange whose sent bytes the driver is writing.
    next: usize,
    /// What the driver has written of it so far.
    written: Vec<u8>,
    readable: VecDeque<u8>,
    divergence: Option<Divergence>,
    call: usize,
    reader: Option<Waker>,
}

impl ScriptState {
    /// Makes the replies of every exchange from `next` on that sends nothing readable, up to the next one that does.
    fn deliver_unsent(&mut self) {
        while let Some(e) = self.entries.get(self.next).filter(|e| e.sent.is_empty()) {
            self.readable.extend(e.received.iter().copied());
            self.next += 1;
        }
    }
}

/// A stream that answers the driver with the recorded replies, and notes the first byte that differs.
#[derive(Debug, Clone)]
struct Script(Arc<Mutex<ScriptState>>);

impl Script {
    fn new(exchanges: &[Recorded]) -> Self {
        let entries: Vec<Recorded> =
            exchanges.iter().filter(|e| !(e.sent.is_empty() && e.received.is_empty())).cloned().collect();
        let mut state = ScriptState {
            entries,
            next: 0,
            written: Vec::new(),
            readable: VecDeque::new(),
            divergence: None,
            call: 0,
            reader: None,
        };
        state.deliver_unsent();
        Script(Arc::new(Mutex::new(state)))
    }

    fn state(&self) -> MutexGuard<'_, ScriptState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AsyncWrite for Script {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let mut s = self.state();
        if s.divergence.is_some() {
            return Poll::Ready(Err(std::io::Error::other("the replay has diverged from the recording")));
        }
        for (k, &b) in buf.iter().enumerate() {
            let expected = s.entries.get(s.next).map(|e| e.sent.clone()).unwrap_or_default();
            let offset = s.written.len();
            if expected.get(offset) != Some(&b) {
                let mut actual = s.written.clone();
                actual.extend_from_slice(&buf[k..]);
                let (exchange, call) = (s.next, s.call);
                s.divergence = Some(Divergence { exchange, offset, expected, actual, call });
                if let Some(w) = s.reader.take() {
                    w.wake();
                }
                return Poll::Ready(Err(std::io::Error::other("the driver's bytes differ from the recording")));
            }
            s.written.push(b);
            if s.written.len() == expected.len() {
                s.written.clear();
                let received = s.entries[s.next].received.clone();
                s.readable.extend(received);
                s.next += 1;
                s.deliver_unsent();
                if let Some(w) = s.reader.take() {
                    w.wake();
                }
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Script {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let mut s = self.state();
        if s.readable.is_empty() {
            // Nothing recorded to say: the instrument is silent, as it was, until the driver sends again.
            s.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.remaining().min(s.readable.len());
        let bytes: Vec<u8> = s.readable.drain(..n).collect();
        buf.put_slice(&bytes);
        Poll::Ready(Ok(()))
    }
}

/// Bytes as a RON byte string (`b"/1ZR\r"`), read back from a byte string, a string or a list of numbers.
mod byte_string {
    use serde::de::{self, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string such as b\"/1ZR\\r\"")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocols::units::Volume;

    #[test]
    fn transcripts_round_trip_through_their_file_form() {
        let t = Transcript {
            instrument: "pump_a".into(),
            time_scale: 400.0,
            exchanges: vec![
                Recorded { sent: b"/1&\r".to_vec(), received: b"/0`XCalibur 1.21\x03\r\n".to_vec() },
                Recorded { sent: vec![0x02, 0x31, 0x31, 0x5A, 0x52, 0x03, 0x09], received: vec![0xFF, 0x00] },
                Recorded { sent: Vec::new(), received: b"noise".to_vec() },
            ],
            calls: vec![
                ReplayCall::Identify,
                ReplayCall::Task(Task::Dispense { volume: Volume(250.0) }),
                ReplayCall::SafeState,
            ],
        };
        let text = t.to_ron();
        assert!(text.contains(r#"b"/1&\r""#), "{text}");
        assert_eq!(Transcript::parse(&text).unwrap(), t);
        let written = "Transcript(instrument: \"p\", exchanges: [(sent: b\"Q\\r\", received: b\"\")], \
                       calls: [Identify, Task(Dispense(volume: 250))])";
        let parsed = Transcript::parse(written).unwrap();
        assert_eq!(parsed.time_scale, 1.0);
        assert_eq!(parsed.calls[1], ReplayCall::Task(Task::Dispense { volume: Volume(250.0) }));
    }

    #[test]
    fn empty_rows_are_left_out() {
        let t =
            Transcript::from_exchanges("p", 1.0, [(vec![], vec![]), (b"a".to_vec(), vec![]), (vec![], b"b".to_vec())]);
        assert_eq!(t.exchanges.len(), 2);
    }
}
