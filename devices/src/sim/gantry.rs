//! A simulated G-code gantry with a servo gripper, Marlin dialect.
//!
//! Lines end at LF (a CR before it is dropped); `;` comments, line numbers `N..` and checksums `*..` are stripped
//! (checksums are not verified). Every command is answered `ok`; unknown ones first get
//! `echo:Unknown command: "<line>"`. `G0`/`G1` queue a straight move (at most 16 queued, as Marlin's planner
//! buffer) and answer at once; `M400`, `G4` and `G28` wait for the queue to finish (and `G4` then dwells), sending
//! `echo:busy: processing` every 2 lab s while they block. Moves take distance / feed rate of lab time; targets
//! are clamped to the travel (soft end stops). `G28` homes X and Y to 0 and Z to the top of the travel (Z homes
//! upward so the gripper clears the deck), at [`HOMING_FEED`]. `M114` reports the last queued target and the
//! stepper counts of where the head actually is; `M115` reports the firmware; `M410` stops at once and discards
//! the queue. `M280 P0 S<angle>` moves the gripper servo at once, wherever the head is: an angle nearer the lab
//! file's `grip` than its `release` closes it (picking what stands within reach), otherwise it opens; `M280 P0`
//! without an angle reports the servo's angle as Marlin does, `echo: Servo 0: <angle>` [U: the spacing]. The
//! servo starts at the lab file's `release`.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::bench::Bench;
use super::pty::Wire;
use super::{Simulator, name_hash};
use crate::clock::Clock;
use crate::lab::{GantryConfig, Point};

/// Homing speed, in mm/min [U].
pub const HOMING_FEED: f64 = 3000.0;
/// The feed rate before any `F`, in mm/min.
const DEFAULT_FEED: f64 = 1500.0;
/// Lab seconds between keepalive lines while a command blocks.
const KEEPALIVE: f64 = 2.0;
/// Moves the planner holds.
const PLANNER_SLOTS: usize = 16;
/// Steps per millimetre, for the `Count` part of `M114`.
const STEPS_PER_MM: [f64; 3] = [80.0, 80.0, 400.0];
/// The longest line kept while waiting for its LF.
const MAX_LINE: usize = 256;

#[derive(Debug, Clone, Copy)]
struct Segment {
    start: f64,
    end: f64,
    from: Point,
    to: Point,
}

pub(crate) struct GantrySim {
    name: String,
    uuid: String,
    travel: Point,
    grip: f64,
    release: f64,
    bench: Bench,
    clock: Clock,
    queue: VecDeque<Segment>,
    /// Where the head is once the queue is empty.
    rest: Point,
    /// The last queued target.
    target: Point,
    feed: f64,
    relative: bool,
    /// The gripper servo's angle.
    servo: f64,
}

fn distance(a: Point, b: Point) -> f64 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2) + (a.z - b.z).powi(2)).sqrt()
}

impl GantrySim {
    pub(crate) fn new(name: &str, config: &GantryConfig, seed: u64, bench: Bench, clock: Clock) -> Self {
        let h = name_hash(name) ^ seed;
        let start = Point { x: 0.0, y: 0.0, z: 0.0 };
        GantrySim {
            name: name.to_owned(),
            uuid: format!("{:08x}-{:04x}-4000-8000-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xffff_ffff_ffff),
            travel: config.travel,
            grip: config.grip,
            release: config.release,
            bench,
            clock,
            queue: VecDeque::new(),
            rest: start,
            target: start,
            feed: DEFAULT_FEED,
            relative: false,
            servo: config.release,
        }
    }

    /// Drops finished moves from the queue.
    fn settle(&mut self, now: f64) {
        while let Some(s) = self.queue.front().copied() {
            if s.end > now {
                break;
            }
            self.rest = s.to;
            self.queue.pop_front();
        }
    }

    /// Where the head actually is.
    fn actual(&mut self, now: f64) -> Point {
        self.settle(now);
        match self.queue.front() {
            Some(s) if now > s.start && s.end > s.start => {
                let f = ((now - s.start) / (s.end - s.start)).clamp(0.0, 1.0);
                Point {
                    x: s.from.x + (s.to.x - s.from.x) * f,
                    y: s.from.y + (s.to.y - s.from.y) * f,
                    z: s.from.z + (s.to.z - s.from.z) * f,
                }
            }
            _ => self.rest,
        }
    }

    fn queue_end(&self) -> f64 {
        self.queue.back().map_or(f64::NEG_INFINITY, |s| s.end)
    }

    fn clamp(&self, p: Point) -> Point {
        Point { x: p.x.clamp(0.0, self.travel.x), y: p.y.clamp(0.0, self.travel.y), z: p.z.clamp(0.0, self.travel.z) }
    }

    /// Waits until lab time `until`, sending keepalives while it blocks; false once the line is gone.
    async fn block_until(&mut self, until: f64, wire: &mut Wire) -> bool {
        loop {
            let now = self.clock.now();
            if now >= until {
                return true;
            }
            self.clock.sleep_until(until.min(now + KEEPALIVE)).await;
            if self.clock.now() < until && !wire.reply(b"echo:busy: processing\n").await {
                return false;
            }
        }
    }

    /// Queues a move to `to` at the current feed rate.
    fn push_move(&mut self, to: Point, now: f64) {
        let to = self.clamp(to);
        let from = self.target;
        let start = self.queue_end().max(now);
        let duration = distance(from, to) / (self.feed / 60.0);
        self.queue.push_back(Segment { start, end: start + duration, from, to });
        self.target = to;
    }

    fn report_position(&mut self) -> String {
        let now = self.clock.now();
        let actual = self.actual(now);
        let t = self.target;
        let counts: Vec<i64> =
            [actual.x, actual.y, actual.z].iter().zip(STEPS_PER_MM).map(|(v, s)| (v * s).round() as i64).collect();
        format!("X:{:.2} Y:{:.2} Z:{:.2} E:0.00 Count X:{} Y:{} Z:{}\n", t.x, t.y, t.z, counts[0], counts[1], counts[2])
    }

    fn firmware(&self) -> String {
        format!(
            "FIRMWARE_NAME:Marlin 2.1.2.4 (lab simulator) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0 \
             MACHINE_TYPE:Lab Gantry EXTRUDER_COUNT:0 UUID:{}\nCap:SERIAL_XON_XOFF:0\nCap:EEPROM:0\nCap:AUTOREPORT_POS:0\n",
            self.uuid
        )
    }

    /// Executes one command line, writing everything but the final `ok`; false once the line is gone.
    async fn execute(&mut self, line: &str, wire: &mut Wire) -> bool {
        let mut words = line.split_whitespace();
        let Some(code) = words.next() else { return true };
        let code = code.to_ascii_uppercase();
        let mut params = std::collections::BTreeMap::new();
        for w in words {
            let mut chars = w.chars();
            if let Some(letter) = chars.next()
                && let Ok(v) = chars.as_str().parse::<f64>()
                && v.is_finite()
            {
                params.insert(letter.to_ascii_uppercase(), v);
            }
        }
        let now = self.clock.now();
        self.settle(now);
        match code.as_str() {
            "G0" | "G1" => {
                if let Some(&f) = params.get(&'F')
                    && f > 0.0
                {
                    self.feed = f;
                }
                let base = self.target;
                let axis = |letter: char, current: f64| match params.get(&letter) {
                    Some(&v) if self.relative => current + v,
                    Some(&v) => v,
                    None => current,
                };
                let to = Point { x: axis('X', base.x), y: axis('Y', base.y), z: axis('Z', base.z) };
                if self.queue.len() >= PLANNER_SLOTS {
                    let free_at = self.queue.front().map_or(now, |s| s.end);
                    if !self.block_until(free_at, wire).await {
                        return false;
                    }
                }
                let now = self.clock.now();
                self.settle(now);
                self.push_move(to, now);
                true
            }
            "G4" => {
                let dwell = params
                    .get(&'P')
                    .map(|ms| ms / 1000.0)
                    .or_else(|| params.get(&'S').copied())
                    .unwrap_or(0.0)
                    .max(0.0);
                let done = self.queue_end().max(now);
                self.block_until(done + dwell, wire).await
            }
            "G28" => {
                let done = self.queue_end().max(now);
                if !self.block_until(done, wire).await {
                    return false;
                }
                let now = self.clock.now();
                self.settle(now);
                let home = Point { x: 0.0, y: 0.0, z: self.travel.z };
                let from = self.rest;
                let end = now + distance(from, home) / (HOMING_FEED / 60.0) + 1.0;
                self.queue.push_back(Segment { start: now, end, from, to: home });
                self.target = home;
                self.block_until(end, wire).await
            }
            "G90" => {
                self.relative = false;
                true
            }
            "G91" => {
                self.relative = true;
                true
            }
            "M400" => {
                let done = self.queue_end();
                self.block_until(done, wire).await
            }
            "M114" => {
                let report = self.report_position();
                wire.reply(report.as_bytes()).await
            }
            "M115" => {
                let report = self.firmware();
                wire.reply(report.as_bytes()).await
            }
            "M280" => {
                if params.get(&'P').copied().unwrap_or(0.0) != 0.0 {
                    return true;
                }
                let Some(&angle) = params.get(&'S') else {
                    return wire.reply(format!("echo: Servo 0: {:.0}\n", self.servo).as_bytes()).await;
                };
                self.servo = angle;
                let at = self.actual(now);
                if (angle - self.grip).abs() < (angle - self.release).abs() {
                    self.bench.grip(&self.name, at);
                } else {
                    self.bench.release(&self.name, at);
                }
                true
            }
            "M410" => {
                let at = self.actual(now);
                self.queue.clear();
                self.rest = at;
                self.target = at;
                true
            }
            "M17" | "M18" | "M84" | "M82" | "M83" | "M110" => true,
            _ => wire.reply(format!("echo:Unknown command: \"{line}\"\n").as_bytes()).await,
        }
    }
}

/// A command line without its comment, line number and checksum.
fn strip(line: &str) -> &str {
    let line = line.split(';').next().unwrap_or_default();
    let line = line.split('*').next().unwrap_or_default().trim();
    match line.strip_prefix('N') {
        Some(rest) if rest.starts_with(|c: char| c.is_ascii_digit()) => {
            rest.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start()
        }
        _ => line,
    }
}

impl Simulator for GantrySim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        let Some(end) = input.iter().position(|&b| b == b'\n') else {
            if input.len() > MAX_LINE {
                input.clear();
            }
            return None;
        };
        let line = input.split_to(end + 1);
        Some(line[..end].to_vec())
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        let text = String::from_utf8_lossy(&command);
        let line = strip(&text);
        if line.is_empty() {
            return true;
        }
        self.execute(line, wire).await && wire.reply(b"ok\n").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_numbers_and_checksums_are_stripped() {
        assert_eq!(strip("N12 G0 X1*75"), "G0 X1");
        assert_eq!(strip("G28 ; home"), "G28");
        assert_eq!(strip("  \r"), "");
        assert_eq!(strip("NOPE"), "NOPE");
    }
}
