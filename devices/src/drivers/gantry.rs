//! A G-code gantry with a servo gripper, Marlin dialect.
//!
//! Commands end in LF. Marlin answers every command with a line `ok` (possibly followed by more text); `echo:`
//! lines (such as the `echo:busy: processing` keepalive during long commands, or `echo:Unknown command: "X1"`) and
//! information lines (the reports of `M114` and `M115`) may come before it, and a line starting `Error:` reports a
//! firmware error. [`MarlinDecoder`] frames everything up to the `ok` (or the `Error:` line) as one reply, so the
//! record holds the echo lines with the command that caused them.
//!
//! A move is acknowledged when it is queued, not when it is done; `M400` (and `G28`, `G4`) answer only when motion
//! has finished. The driver therefore keeps track of the lab time of the motion it has queued and gives those
//! commands a wall-clock timeout that covers it.
//!
//! Choices (the notes do not cover G-code; these follow Marlin's documentation):
//! - The gripper is servo 0 (`M280 P0 S<angle>`); a 500 ms dwell after each servo command lets it finish.
//! - The first move of every transfer restates the feed rate, so a gantry reset since initialization still moves
//!   at the configured speed.
//! - [`Instrument::safe_state`] sends `M410` (quickstop: stop at once, discard queued moves) and then `M400`. It
//!   leaves the gripper alone, since opening it would drop whatever it holds. Marlin warns that a quickstop may
//!   lose steps, so the driver forgets that it homed: transfers fail with `NotReady` until the next initialize.
//! - After a transfer `M114` must report the gantry at the destination's XY at the travel height, within
//!   [`POSITION_TOLERANCE`].
//!
//! Reading back ([`ReadBack`]): `M400` (queued moves finish; nothing new moves), `M114` (where the head is) and
//! `M280 P0` (the servo's angle, which Marlin reports as `echo: Servo 0: <angle>`). A servo gripper cannot feel a
//! vessel; but this driver closes it only over a transfer's origin and opens it only over its destination, so the
//! angle and the place under the head tell where the vessel of a transfer left in doubt is. A gantry read back
//! knows where it stands, so it may put down a vessel it holds ([`Transfer::deliver`]) before it is homed again.
//! Initializing reads the servo first and refuses while the gripper is closed, since homing and then opening it
//! would drop at home whatever it holds.

use std::time::Duration;

/// How many replies to earlier commands `identify` reads past before it gives up on its `M115` report.
const STALE_REPLIES: usize = 4;

use bytes::{Buf, BytesMut};
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{FrameError, error, garbled, not_acted, number, with_acted};
use crate::capability::{Identity, Instrument, Place, Transfer};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::{Deck, GantryConfig, Point};
use crate::readback::{GantryState, Gripper, Observed, ReadBack};
use crate::transport::Link;

/// How far the servo's reported angle may be from the lab file's grip or release and still count as that, in degrees.
const SERVO_TOLERANCE: f64 = 5.0;

/// How far across (X and Y) the head may be from a place and stand over it, in millimetres.
const OVER_TOLERANCE: f64 = 1.0;

/// How far `M114` may place the gantry from where it was sent, in millimetres.
pub const POSITION_TOLERANCE: f64 = 0.05;

/// The dwell after a servo command, in milliseconds.
const SERVO_DWELL_MS: u32 = 500;

/// The longest line the decoder accepts.
const MAX_LINE: usize = 1024;

/// The longest reply the decoder accepts: an hour of keepalive lines fits.
const MAX_REPLY: usize = 256 * 1024;

/// Echo lines kept in a parsed reply; the raw bytes of all of them are in the record regardless.
const MAX_ECHOES: usize = 64;

/// Extra wall time given to every command that waits for motion.
const MOTION_MARGIN: Duration = Duration::from_secs(1);

/// How a Marlin reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// `ok`, with whatever followed it on the line.
    Ok(String),
    /// `Error:` and the message.
    Error(String),
}

/// One framed Marlin reply: every line up to and including the `ok` or `Error:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarlinReply {
    /// Information lines (reports such as `X:.. Y:..` and `FIRMWARE_NAME:..`), in order.
    pub lines: Vec<String>,
    /// `echo:` and `//` lines, which the driver skips (the first [`MAX_ECHOES`]).
    pub echoes: Vec<String>,
    /// How the reply ended.
    pub end: End,
}

/// Frames Marlin replies; see the module doc.
///
/// Nothing is taken from the buffer until the reply is complete, so the bytes recorded for an exchange are all of
/// its lines; `scanned` remembers how far complete lines have been read, so each line is parsed once.
#[derive(Debug, Clone, Default)]
pub struct MarlinDecoder {
    scanned: usize,
    lines: Vec<String>,
    echoes: Vec<String>,
}

impl MarlinDecoder {
    fn reset(&mut self) {
        self.scanned = 0;
        self.lines.clear();
        self.echoes.clear();
    }

    fn malformed(&mut self, why: String) -> Result<Option<MarlinReply>, FrameError> {
        self.reset();
        Err(FrameError::Malformed(why))
    }
}

impl Decoder for MarlinDecoder {
    type Item = MarlinReply;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<MarlinReply>, FrameError> {
        if self.scanned > src.len() {
            // The buffer was replaced underneath; start over.
            self.reset();
        }
        loop {
            let rest = &src[self.scanned..];
            let Some(len) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_LINE {
                    return self.malformed(format!("no line end within {MAX_LINE} bytes"));
                }
                return Ok(None);
            };
            if self.scanned > MAX_REPLY {
                return self.malformed(format!("no `ok` within {MAX_REPLY} bytes"));
            }
            let Ok(line) = std::str::from_utf8(&rest[..len]) else {
                return self.malformed("a line that is not text".into());
            };
            let line = line.trim().to_owned();
            let end_of_line = self.scanned + len + 1;
            let end = if line == "ok" || line.starts_with("ok ") {
                Some(End::Ok(line[2..].trim().to_owned()))
            } else {
                line.strip_prefix("Error:").or_else(|| line.strip_prefix("!!")).map(|m| End::Error(m.trim().to_owned()))
            };
            if let Some(end) = end {
                src.advance(end_of_line);
                self.scanned = 0;
                return Ok(Some(MarlinReply {
                    lines: std::mem::take(&mut self.lines),
                    echoes: std::mem::take(&mut self.echoes),
                    end,
                }));
            }
            if line.starts_with("echo:") || line.starts_with("//") {
                if self.echoes.len() < MAX_ECHOES {
                    self.echoes.push(line);
                }
            } else if !line.is_empty() {
                self.lines.push(line);
            }
            self.scanned = end_of_line;
        }
    }
}

/// Reads `KEY:value` fields from an `M115` line, whose values may contain spaces: a field runs to the next
/// ` KEY:` with an upper-case key.
pub fn fields(line: &str) -> Vec<(&str, &str)> {
    let bytes = line.as_bytes();
    let mut starts = Vec::new();
    for (i, _) in line.match_indices(':') {
        let key_start = line[..i].rfind(' ').map_or(0, |s| s + 1);
        let key = &line[key_start..i];
        if !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
            && (key_start == 0 || bytes[key_start - 1] == b' ')
        {
            starts.push((key_start, i));
        }
    }
    let mut out = Vec::new();
    for (k, &(key_start, colon)) in starts.iter().enumerate() {
        let value_end = starts.get(k + 1).map_or(line.len(), |&(next, _)| next);
        out.push((&line[key_start..colon], line[colon + 1..value_end].trim()));
    }
    out
}

/// Parses the logical position of an `M114` report: `X:.. Y:.. Z:..` before `Count`.
pub fn parse_position(line: &str) -> Option<Point> {
    let head = line.split(" Count").next()?;
    let mut x = None;
    let mut y = None;
    let mut z = None;
    for part in head.split_whitespace() {
        let (k, v) = part.split_once(':')?;
        let v: f64 = v.parse().ok()?;
        match k {
            "X" => x = Some(v),
            "Y" => y = Some(v),
            "Z" => z = Some(v),
            _ => {}
        }
    }
    Some(Point { x: x?, y: y?, z: z? })
}

/// A Marlin gantry on a serial line.
pub struct Gantry<T> {
    name: String,
    config: GantryConfig,
    deck: Deck,
    link: Link<T>,
    decoder: MarlinDecoder,
    homed: bool,
    /// Whether the head's position was read back since the last quickstop, so it may put down a held vessel.
    located: bool,
    /// Where the last queued move ends, if known.
    at: Option<Point>,
    /// Lab seconds of motion queued since motion last finished.
    queued: f64,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Gantry<T> {
    /// A driver for the gantry `name` with the lab file's settings and deck, talking over `link`.
    pub fn new(name: &str, config: GantryConfig, deck: Deck, link: Link<T>) -> Self {
        Gantry {
            name: name.to_owned(),
            config,
            deck,
            link,
            decoder: MarlinDecoder::default(),
            homed: false,
            located: false,
            at: None,
            queued: 0.0,
        }
    }

    /// Lab seconds to travel `mm` at the configured feed rate.
    fn travel_time(&self, mm: f64) -> f64 {
        mm / (self.config.feed_rate / 60.0)
    }

    /// The longest straight move in the travel volume.
    fn diagonal(&self) -> f64 {
        let t = self.config.travel;
        (t.x * t.x + t.y * t.y + t.z * t.z).sqrt()
    }

    /// Sends one command and waits for its `ok`, for the link timeout plus the wall time of `wait` lab seconds of
    /// motion. A firmware error carries `acted`; a lost reply may always have acted, unless the command is a query.
    async fn gcode(&mut self, command: &str, wait: f64, acted: bool, query: bool) -> Result<MarlinReply, DeviceError> {
        let wall = self.link.clock().wall(wait);
        let timeout = self.link.timeout() + if wait > 0.0 { wall + wall / 2 + MOTION_MARGIN } else { Duration::ZERO };
        let bytes = format!("{command}\n");
        self.decoder = MarlinDecoder::default();
        let reply = self.link.request_within(bytes.as_bytes(), &mut self.decoder, timeout).await;
        let reply = reply.map_err(|e| if query { not_acted(e) } else { with_acted(e, true) })?;
        if let End::Error(message) = &reply.end {
            // Marlin may follow an error with `Resend:` and `ok`; take them now so they do not answer the next command.
            let mut drain = MarlinDecoder::default();
            let _ = self.link.receive(&mut drain, Duration::from_millis(100)).await;
            let mut received = reply.lines.join("\n");
            received.push_str(&format!("\nError:{message}\n"));
            return Err(error(
                &self.name,
                DeviceErrorKind::Firmware { code: None, message: message.clone(), received: received.into_bytes() },
                acted,
            ));
        }
        Ok(reply)
    }

    /// Queues a move to the given coordinates (an axis left out keeps its place) and accounts for its lab time.
    async fn move_to(
        &mut self,
        x: Option<f64>,
        y: Option<f64>,
        z: Option<f64>,
        feed: bool,
        acted: bool,
    ) -> Result<(), DeviceError> {
        let mut command = "G0".to_owned();
        for (axis, v) in [("X", x), ("Y", y), ("Z", z)] {
            if let Some(v) = v {
                command.push_str(&format!(" {axis}{}", number(v, 3)));
            }
        }
        if feed {
            command.push_str(&format!(" F{}", number(self.config.feed_rate, 1)));
        }
        let target = self.at.map(|p| Point { x: x.unwrap_or(p.x), y: y.unwrap_or(p.y), z: z.unwrap_or(p.z) });
        let distance = match (self.at, target) {
            (Some(a), Some(b)) => ((a.x - b.x).powi(2) + (a.y - b.y).powi(2) + (a.z - b.z).powi(2)).sqrt(),
            _ => self.diagonal(),
        };
        let wait = self.queued;
        self.gcode(&command, wait, acted, false).await?;
        self.queued += self.travel_time(distance);
        self.at = target;
        Ok(())
    }

    /// Waits for all queued motion to finish (`M400`).
    async fn finish_moves(&mut self) -> Result<(), DeviceError> {
        let wait = self.queued;
        self.gcode("M400", wait, true, false).await?;
        self.queued = 0.0;
        Ok(())
    }

    /// Closes or opens the gripper and lets the servo settle.
    async fn servo(&mut self, angle: f64) -> Result<(), DeviceError> {
        self.gcode(&format!("M280 P0 S{}", number(angle, 1)), 0.0, true, false).await?;
        self.gcode(&format!("G4 P{SERVO_DWELL_MS}"), f64::from(SERVO_DWELL_MS) / 1000.0, true, false).await?;
        Ok(())
    }

    /// Reads the position `M114` reports.
    async fn position(&mut self, acted: bool) -> Result<Point, DeviceError> {
        let reply = self.gcode("M114", 0.0, acted, true).await.map_err(|e| with_acted(e, acted))?;
        reply.lines.iter().find_map(|l| parse_position(l)).ok_or_else(|| {
            garbled(
                &self.name,
                b"M114\n",
                reply.lines.join("\n").as_bytes(),
                "no `X:.. Y:.. Z:..` position line",
                acted,
            )
        })
    }

    /// The point of a place, or why the gantry cannot go there.
    fn resolve(&self, place: &Place) -> Result<Point, DeviceError> {
        let p = self
            .deck
            .point(place)
            .ok_or_else(|| error(&self.name, DeviceErrorKind::Limit(format!("{place} is not on the deck")), false))?;
        let t = self.config.travel;
        let inside = |v: f64, max: f64| v.is_finite() && (0.0..=max).contains(&v);
        if !(inside(p.x, t.x) && inside(p.y, t.y) && inside(p.z, t.z)) || p.z >= self.deck.safe_z {
            return Err(error(
                &self.name,
                DeviceErrorKind::Limit(format!(
                    "{place} at ({}, {}, {}) is outside the travel (0..={}, 0..={}, 0..={}) or not below the travel height {}",
                    p.x, p.y, p.z, t.x, t.y, t.z, self.deck.safe_z
                )),
                false,
            ));
        }
        Ok(p)
    }

    async fn run_transfer(&mut self, a: Point, b: Point) -> Result<(), DeviceError> {
        let safe = self.deck.safe_z;
        // The first command may be refused before anything moves; everything after it follows motion.
        self.move_to(None, None, Some(safe), true, false).await?;
        self.move_to(Some(a.x), Some(a.y), None, false, true).await?;
        self.move_to(None, None, Some(a.z), false, true).await?;
        self.finish_moves().await?;
        self.servo(self.config.grip).await?;
        self.place(b, false).await
    }

    /// Carries what the gripper holds to `b` from wherever the head is, puts it down and checks where the head ended.
    async fn place(&mut self, b: Point, feed: bool) -> Result<(), DeviceError> {
        let safe = self.deck.safe_z;
        self.move_to(None, None, Some(safe), feed, true).await?;
        self.move_to(Some(b.x), Some(b.y), None, false, true).await?;
        self.move_to(None, None, Some(b.z), false, true).await?;
        self.finish_moves().await?;
        self.servo(self.config.release).await?;
        self.move_to(None, None, Some(safe), false, true).await?;
        self.finish_moves().await?;
        let p = self.position(true).await?;
        let expected = Point { x: b.x, y: b.y, z: safe };
        if (p.x - expected.x).abs() > POSITION_TOLERANCE
            || (p.y - expected.y).abs() > POSITION_TOLERANCE
            || (p.z - expected.z).abs() > POSITION_TOLERANCE
        {
            return Err(error(
                &self.name,
                DeviceErrorKind::Physical(format!(
                    "the gantry reports ({}, {}, {}) after the transfer, not ({}, {}, {})",
                    p.x, p.y, p.z, expected.x, expected.y, expected.z
                )),
                true,
            ));
        }
        self.at = Some(p);
        Ok(())
    }

    /// The gripper's state, from the servo's angle (`M280 P0`).
    async fn gripper(&mut self) -> Result<Gripper, DeviceError> {
        let reply = self.gcode("M280 P0", 0.0, false, true).await?;
        let angle = reply
            .echoes
            .iter()
            .chain(reply.lines.iter())
            .find_map(|l| l.split("Servo 0:").nth(1).and_then(|v| v.trim().parse::<f64>().ok()))
            .filter(|a| a.is_finite())
            .ok_or_else(|| {
                garbled(
                    &self.name,
                    b"M280 P0\n",
                    reply.echoes.join("\n").as_bytes(),
                    "no `Servo 0: <angle>` line",
                    false,
                )
            })?;
        let gripper = if (angle - self.config.grip).abs() <= SERVO_TOLERANCE {
            Gripper::Closed
        } else if (angle - self.config.release).abs() <= SERVO_TOLERANCE {
            Gripper::Open
        } else {
            Gripper::Between(angle)
        };
        Ok(gripper)
    }

    /// Reads the gantry back: finishes queued moves, then the head's position and the gripper's servo.
    async fn read_back(&mut self) -> Result<GantryState, DeviceError> {
        // Nothing the driver queued is known after a controller stopped: wait as long as the longest move could.
        let wait = self.queued + self.travel_time(self.diagonal());
        self.gcode("M400", wait, false, true).await?;
        self.queued = 0.0;
        let position = self.position(false).await?;
        let gripper = self.gripper().await?;
        let deck = &self.deck;
        let over = (0..deck.rack.slots())
            .map(Place::Rack)
            .chain(deck.positions.keys().cloned().map(Place::Position))
            .find(|p| {
                deck.point(p).is_some_and(|q| {
                    (q.x - position.x).abs() <= OVER_TOLERANCE && (q.y - position.y).abs() <= OVER_TOLERANCE
                })
            });
        self.at = Some(position);
        self.located = true;
        Ok(GantryState { position: (position.x, position.y, position.z), gripper, over })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for Gantry<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::Gantry
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let mut reply = self.gcode("M115", 0.0, false, true).await?;
            // Marlin answers in order, and a command the previous controller sent before it died (an `M400` waiting
            // for motion, say) is still answered after it: its `ok` comes first. Up to a few such stale replies are
            // read past; they are in the record with the rest of the wire traffic.
            for _ in 0..STALE_REPLIES {
                if reply.lines.iter().any(|l| l.contains("FIRMWARE_NAME:")) {
                    break;
                }
                self.decoder = MarlinDecoder::default();
                match self.link.receive(&mut self.decoder, self.link.timeout()).await {
                    Ok(next) => reply = next,
                    Err(_) => break,
                }
            }
            let Some(line) = reply.lines.iter().find(|l| l.contains("FIRMWARE_NAME:")) else {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: "G-code firmware answering M115".into(),
                        found: reply.lines.join(" | "),
                    },
                    false,
                ));
            };
            let f = fields(line);
            let get = |key: &str| f.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned());
            Ok(Identity {
                model: get("MACHINE_TYPE").unwrap_or_else(|| "G-code gantry".into()),
                serial: get("UUID"),
                firmware: get("FIRMWARE_NAME"),
                raw: line.clone(),
            })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            self.homed = false;
            // Initializing opens the gripper at home; a closed one may hold a vessel (a controller stopped while it
            // carried one, and nothing put it down), which would fall there. A person must take it first.
            if self.gripper().await? == Gripper::Closed {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::NotReady(format!(
                        "its gripper is closed and may hold a vessel, which initializing would drop at home: take \
                         any vessel out of the gripper and open it (`M280 P0 S{}`) before the gantry is used",
                        number(self.config.release, 1)
                    )),
                    false,
                ));
            }
            // Homing runs each axis to its end stop, at worst the whole travel at a fifth of the feed rate.
            let t = self.config.travel;
            let home = 5.0 * self.travel_time(t.x + t.y + t.z) + 10.0;
            let wait = self.queued + home;
            self.gcode("G28", wait, true, false).await?;
            self.queued = 0.0;
            self.at = None;
            self.gcode("G90", 0.0, true, false).await?;
            self.gcode(&format!("M280 P0 S{}", number(self.config.release, 1)), 0.0, true, false).await?;
            self.move_to(None, None, Some(self.deck.safe_z), true, true).await?;
            self.finish_moves().await?;
            self.at = Some(self.position(true).await?);
            self.homed = true;
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            self.homed = false;
            self.located = false;
            self.at = None;
            self.queued = 0.0;
            self.gcode("M410", 0.0, true, false).await?;
            self.gcode("M400", 0.0, true, false).await?;
            Ok(())
        })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_transfer(&mut self) -> Option<&mut dyn Transfer> {
        Some(self)
    }

    fn as_read_back(&mut self) -> Option<&mut dyn ReadBack> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ReadBack for Gantry<T> {
    fn observe(&mut self) -> BoxFuture<'_, Result<Observed, DeviceError>> {
        Box::pin(async move { self.read_back().await.map(Observed::Gantry) })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transfer for Gantry<T> {
    fn transfer<'a>(&'a mut self, from: &'a Place, to: &'a Place) -> BoxFuture<'a, Result<(), DeviceError>> {
        Box::pin(async move {
            let a = self.resolve(from)?;
            let b = self.resolve(to)?;
            if !(self.deck.safe_z.is_finite() && self.deck.safe_z >= 0.0 && self.deck.safe_z <= self.config.travel.z) {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Limit(format!("the travel height {} is outside the travel", self.deck.safe_z)),
                    false,
                ));
            }
            if !self.homed {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::NotReady("not homed; initialize the gantry first".into()),
                    false,
                ));
            }
            let result = self.run_transfer(a, b).await;
            if result.is_err() {
                // Where the gantry is and what is queued are no longer known.
                self.at = None;
            }
            result
        })
    }

    fn deliver<'a>(&'a mut self, to: &'a Place) -> BoxFuture<'a, Result<(), DeviceError>> {
        Box::pin(async move {
            let b = self.resolve(to)?;
            if !(self.homed || self.located) {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::NotReady("where the head is has not been read back".into()),
                    false,
                ));
            }
            // Whatever fails from here on, the vessel was in the gripper: the error says it may have moved.
            let result = self.place(b, true).await.map_err(|e| with_acted(e, true));
            if result.is_err() {
                self.at = None;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Option<MarlinReply>, String>> {
        let mut d = MarlinDecoder::default();
        let mut b = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut b) {
                Ok(None) => break,
                r => out.push(r.map_err(|e| e.to_string())),
            }
            if b.is_empty() {
                break;
            }
        }
        out
    }

    #[test]
    fn replies_run_to_ok_and_skip_echoes() {
        let r = decode_all(b"echo:busy: processing\r\necho:busy: processing\nok\n");
        assert_eq!(r.len(), 1);
        let reply = r[0].clone().unwrap().unwrap();
        assert_eq!(reply.echoes.len(), 2);
        assert_eq!(reply.end, End::Ok(String::new()));
        let r = decode_all(b"X:1.00 Y:2.00 Z:3.00 E:0.00 Count X:80 Y:160 Z:1200\nok\n");
        let reply = r[0].clone().unwrap().unwrap();
        assert_eq!(parse_position(&reply.lines[0]), Some(Point { x: 1.0, y: 2.0, z: 3.0 }));
        let r = decode_all(b"Error:Printer halted. kill() called!\n");
        assert_eq!(r[0].clone().unwrap().unwrap().end, End::Error("Printer halted. kill() called!".into()));
    }

    #[test]
    fn a_partial_reply_waits_and_keeps_its_lines() {
        let mut d = MarlinDecoder::default();
        let mut b = BytesMut::from(&b"X:1.00 Y:2.00 Z:3.00 E:0.00 Count X:80 Y:160 Z:1200\no"[..]);
        assert_eq!(d.decode(&mut b).unwrap(), None);
        assert_eq!(b.len(), 53, "nothing is taken before the reply is complete");
        b.extend_from_slice(b"k\n");
        let reply = d.decode(&mut b).unwrap().unwrap();
        assert_eq!(reply.lines.len(), 1);
    }

    #[test]
    fn firmware_fields_may_hold_spaces() {
        let line = "FIRMWARE_NAME:Marlin 2.1.2.4 (sim) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 MACHINE_TYPE:lab gantry UUID:abc";
        let f = fields(line);
        assert_eq!(f[0], ("FIRMWARE_NAME", "Marlin 2.1.2.4 (sim)"));
        assert_eq!(f[1], ("SOURCE_CODE_URL", "github.com/MarlinFirmware/Marlin"));
        assert_eq!(f[3], ("MACHINE_TYPE", "lab gantry"));
        assert_eq!(f[4], ("UUID", "abc"));
    }
}
