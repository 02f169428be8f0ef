//! IKA hotplate-stirrer (RCT digital, RET control-visc and relatives), NAMUR protocol.
//!
//! The driver asks only what every NAMUR hotplate of [`crate::models::namur`] has (`IN_NAME`, `IN_PV_2`, `IN_SP_1`,
//! `IN_SP_4`, `OUT_SP_1`, `OUT_SP_4`, `START_n`, `STOP_n`, `OUT_WD1@m`), checks a set point against its model's
//! ranges, and expects the name its model answers (`IKARET` for a RET control-visc).
//!
//! The line is 9600 baud, 7 data bits, even parity (the lab file's line settings). Commands are `CMD[ value]`
//! followed by CR LF. Reads (`IN_*`) are answered `value index` CR LF; writes (`OUT_*`, `START_*`, `STOP_*`,
//! `RESET`) are never answered, so the driver sends them without waiting, and the instrument ignores unknown
//! commands in silence, so a read that times out is the only error signal there is. Every write that matters is
//! confirmed by reading it back (act, then confirm).
//!
//! The plate has a watchdog: `OUT_WD1@m` switches heating and stirring off if no command arrives for `m` seconds.
//! The driver arms it before heating or stirring and polls the plate every [`POLL`] lab seconds while anything is
//! on, so a controller that dies leaves a cold plate. Choices where the notes leave the hardware unverified [U]:
//! - `m` is 120 s at real time; on a fast clock it grows to half a second of wall time (at most 1500 s, the
//!   command's range), because the driver cannot poll faster than [`super::MIN_POLL_WALL`] of wall time.
//! - The echo of `OUT_WD1@m` is taken to be the number `m` on a line of its own; the driver requires it, so a plate
//!   whose watchdog cannot be confirmed is never heated.
//! - After a heat the watchdog is left armed; it finds heater and motor already off.
//!
//! A lab file may set the watchdog itself (`watchdog: "25 min"`): the plate then keeps heating for at most that
//! long without hearing from the controller, so a controller that comes back within it carries on the heat. Within
//! a hold the driver re-arms the watchdog after every reading with the hold's time left and a margin
//! ([`watchdog_margin`]: a poll, or a twentieth of a second of wall time on a fast clock; never less than
//! [`WATCHDOG_FLOOR`], the plate's minimum), so a plate whose controller is gone switches itself off the margin
//! after the end of its hold, and never earlier; a live controller stops the plate itself before the watchdog would.
//!
//! Reading back ([`ReadBack`]): `IN_SP_1`, `IN_PV_2`, `IN_PV_4`. The RCT digital has no command that reports its
//! heater; this driver starts the heater before the stirrer and always stops both together, as the watchdog in
//! mode 1 does, so for a heat that stirs, a turning stirrer shows the heater on and a still one shows it off
//! ([`HeaterState::heating_from`] says so). [`recorded_temperatures`] reads the plate temperatures a heat recorded,
//! and [`settle_heat`] settles a heat left in doubt from them and what the plate reports.

use bytes::BytesMut;
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::{Duration, Speed, Temperature};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{FrameError, Hold, Probe, error, garbled, number, pause, reach_and_hold, with_acted};
use crate::capability::{Heat, Identity, Instrument, Outcome, Stir};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::IkaConfig;
use crate::models::namur::profile;
use crate::readback::{HeaterState, Heating, Observed, ReadBack, RecordedExchange, RecordedReading};
use crate::transport::Link;

/// Lab seconds between two readings while heating, ramping or holding.
pub const POLL: f64 = 10.0;

/// The watchdog timeout at real time, in seconds.
pub const WATCHDOG: f64 = 120.0;

/// The shortest watchdog time the driver arms within a hold, in lab seconds: the plate's own minimum.
pub const WATCHDOG_FLOOR: f64 = 20.0;

/// Wall seconds a live controller may stall at the end of a hold before the plate's watchdog trips.
const WATCHDOG_MARGIN_WALL: f64 = 0.05;

/// The longest reply line NAMUR allows.
const MAX_LINE: usize = 80;

/// Frames NAMUR reply lines: bytes up to LF, without CR, LF and surrounding spaces.
#[derive(Debug, Clone, Default)]
pub struct NamurDecoder;

impl Decoder for NamurDecoder {
    type Item = String;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<String>, FrameError> {
        let Some(end) = src.iter().position(|&b| b == b'\n') else {
            if src.len() > MAX_LINE + 4 {
                return Err(FrameError::Malformed(format!("no line end within {MAX_LINE} characters")));
            }
            return Ok(None);
        };
        let line = src.split_to(end + 1);
        let text = line[..end].strip_suffix(b"\r").unwrap_or(&line[..end]);
        if let Some(b) = text.iter().find(|b| !(0x20..=0x7e).contains(*b)) {
            return Err(FrameError::Malformed(format!("the line holds the byte 0x{b:02X}")));
        }
        Ok(Some(String::from_utf8_lossy(text).trim().to_owned()))
    }
}

/// Parses a reading `value index` whose index must be `index`.
pub fn parse_reading(line: &str, index: u8) -> Option<f64> {
    let mut parts = line.split_whitespace();
    let value: f64 = parts.next()?.parse().ok()?;
    let i: u8 = parts.next()?.parse().ok()?;
    (i == index && parts.next().is_none() && value.is_finite()).then_some(value)
}

/// An IKA hotplate-stirrer on a serial line.
pub struct IkaHotplate<T> {
    name: String,
    config: IkaConfig,
    link: Link<T>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> IkaHotplate<T> {
    /// A driver for the hotplate `name` with the lab file's settings, talking over `link`.
    pub fn new(name: &str, config: IkaConfig, link: Link<T>) -> Self {
        IkaHotplate { name: name.to_owned(), config, link }
    }

    /// Sends a write, which the plate never answers.
    async fn write(&mut self, command: &str) -> Result<(), DeviceError> {
        self.link.send(format!("{command}\r\n").as_bytes()).await.map_err(|e| with_acted(e, true))
    }

    /// Sends a read and returns its reply line; errors carry `acted`.
    async fn read(&mut self, command: &str, acted: bool) -> Result<String, DeviceError> {
        self.link
            .request(format!("{command}\r\n").as_bytes(), &mut NamurDecoder)
            .await
            .map_err(|e| with_acted(e, acted))
    }

    /// Sends a read and parses its `value index` reply.
    async fn read_value(&mut self, command: &str, index: u8, acted: bool) -> Result<f64, DeviceError> {
        let line = self.read(command, acted).await?;
        parse_reading(&line, index).ok_or_else(|| {
            garbled(
                &self.name,
                format!("{command}\r\n").as_bytes(),
                line.as_bytes(),
                format!("expected `value {index}`"),
                acted,
            )
        })
    }

    /// Arms the watchdog for the longest it may wait (the lab file's, or one sized to the clock; see the module
    /// doc), and checks its echo.
    async fn arm_watchdog(&mut self) -> Result<(), DeviceError> {
        let m = match self.config.watchdog {
            Some(w) => w.0.ceil().clamp(WATCHDOG_FLOOR, 1500.0) as u32,
            None => watchdog_seconds(self.link.clock().scale()),
        };
        self.arm_watchdog_for(m).await
    }

    /// Within a hold that ends `left` lab seconds from now, re-arms a lab file's watchdog with the time left, so
    /// the plate stops itself at the hold's end if the controller is gone; nothing to do without one, or while
    /// more is left than the watchdog's longest.
    async fn watch_hold(&mut self, left: f64) -> Result<(), DeviceError> {
        let Some(longest) = self.config.watchdog.map(|w| w.0) else { return Ok(()) };
        if left >= longest {
            return Ok(());
        }
        // Armed after the poll's reading for the time left and a margin, it trips the margin after the hold's end
        // (a later reading restarts it with the same time, a poll later still), so a live controller, which stops
        // the plate itself at the end, does not see it trip unless it stalls for longer than the margin.
        let margin = watchdog_margin(self.link.clock().scale());
        self.arm_watchdog_for((left + margin).clamp(WATCHDOG_FLOOR, longest).ceil() as u32).await
    }

    /// Arms the watchdog for `m` seconds and checks its echo.
    async fn arm_watchdog_for(&mut self, m: u32) -> Result<(), DeviceError> {
        let command = format!("OUT_WD1@{m}");
        let echo = self.read(&command, false).await?;
        let echoed = echo.split_whitespace().next().and_then(|v| v.parse::<f64>().ok());
        if echoed != Some(f64::from(m)) {
            return Err(garbled(
                &self.name,
                format!("{command}\r\n").as_bytes(),
                echo.as_bytes(),
                format!("expected the echo `{m}`"),
                false,
            ));
        }
        Ok(())
    }

    /// Writes a set point and reads it back.
    async fn set_and_confirm(
        &mut self,
        channel: u8,
        value: f64,
        decimals: usize,
        unit: &str,
    ) -> Result<(), DeviceError> {
        let text = number(value, decimals);
        self.write(&format!("OUT_SP_{channel} {text}")).await?;
        let back = self.read_value(&format!("IN_SP_{channel}"), channel, true).await?;
        let sent: f64 = text.parse().unwrap_or(value);
        if (back - sent).abs() > 0.05 {
            return Err(error(
                &self.name,
                DeviceErrorKind::Physical(format!(
                    "set point {channel} reads back as {back} {unit}, not the {text} {unit} sent"
                )),
                true,
            ));
        }
        Ok(())
    }

    fn limits(
        &self,
        temperature: Option<Temperature>,
        speed: Option<Speed>,
        duration: Duration,
    ) -> Result<(), DeviceError> {
        let limit = |msg: String| Err(error(&self.name, DeviceErrorKind::Limit(msg), false));
        if let Some(t) = temperature
            && !(t.0.is_finite() && (0.0..=self.config.max_temperature.0).contains(&t.0))
        {
            return limit(format!("set point {t} is outside 0..={}", self.config.max_temperature));
        }
        if let Some(s) = speed
            && !(s.0.is_finite() && (0.0..=self.config.max_speed.0).contains(&s.0))
        {
            return limit(format!("speed {s} is outside 0..={}", self.config.max_speed));
        }
        // A model whose motor has a lowest speed (50 rpm on a RET control-visc) cannot stir slower.
        let lowest = profile(&self.config.model).map_or(0.0, |p| p.speed.0);
        if let Some(s) = speed
            && s.0 > 0.0
            && s.0 < lowest
        {
            return limit(format!("speed {s} is below the {lowest} rpm this model stirs at least"));
        }
        if !(duration.0.is_finite() && duration.0 >= 0.0) {
            return limit(format!("cannot hold for {duration}"));
        }
        Ok(())
    }

    /// Heater and motor off, ignoring failures; used on the way out of a failed heat, whose error matters more.
    async fn stop_quietly(&mut self) {
        let _ = self.write("STOP_1").await;
        let _ = self.write("STOP_4").await;
    }

    async fn run_heat(&mut self, t: f64, hold: f64, stir: Option<f64>) -> Result<Outcome, DeviceError> {
        self.arm_watchdog().await?;
        self.set_and_confirm(1, t, 1, "degC").await?;
        self.write("START_1").await?;
        if let Some(rpm) = stir {
            self.set_and_confirm(4, rpm.round(), 0, "rpm").await?;
            self.write("START_4").await?;
        }
        self.heat_and_hold(t, hold, false).await
    }

    /// Reaches `t` (unless the hold is `under_way`, carried on after the controller was away) and holds it for
    /// `hold` lab seconds, re-arming the watchdog with the time left as the hold goes ([`Probe::holding`]), then
    /// turns heating and stirring off.
    async fn heat_and_hold(&mut self, t: f64, hold: f64, under_way: bool) -> Result<Outcome, DeviceError> {
        let clock = self.link.clock().clone();
        let tolerance = self.config.tolerance.0.abs();
        let name = self.name.clone();
        let plan = Hold { what: "the plate ", target: t, tolerance, hold, poll: POLL, under_way };
        let held = reach_and_hold(self, &name, &clock, plan).await?;
        self.write("STOP_1").await?;
        self.write("STOP_4").await?;
        Ok(held)
    }

    /// Reads the plate back: set point, plate temperature, and the stirrer's actual speed.
    async fn read_back(&mut self) -> Result<HeaterState, DeviceError> {
        let set_point = self.read_value("IN_SP_1", 1, false).await?;
        let temperature = self.read_value("IN_PV_2", 2, false).await?;
        let rpm = self.read_value("IN_PV_4", 4, false).await?;
        if !(0.0..=1e4).contains(&rpm) || !(-100.0..=1000.0).contains(&temperature) {
            return Err(garbled(
                &self.name,
                b"IN_PV_4\r\n",
                format!("{temperature} degC, {rpm} rpm").as_bytes(),
                "not a plate's temperature and speed",
                false,
            ));
        }
        Ok(HeaterState {
            set_point: Temperature(set_point),
            temperature: Temperature(temperature),
            heating: Heating::Unknown,
            heating_from: if rpm > 0.0 {
                format!(
                    "the {} cannot report its heater; the stirrer turns at {rpm:.0} rpm, and this driver starts the \
                     heater before the stirrer and stops both together, as the watchdog does",
                    self.config.model
                )
            } else {
                format!(
                    "the {} cannot report its heater; the stirrer stands still, and this driver stops heater and \
                     stirrer together, as the watchdog does",
                    self.config.model
                )
            },
            stirring: Some(Speed(rpm)),
            tolerance: self.config.tolerance,
        })
    }

    /// Carries on with a heat the plate still runs; see [`Heat::continue_heat`].
    async fn carry_on(
        &mut self,
        t: f64,
        hold: f64,
        stir: Option<f64>,
        at_set_point: bool,
    ) -> Result<Outcome, DeviceError> {
        let h = self.read_back().await?;
        if let Some(why) = heat_mismatch(&h, t, stir) {
            return Err(error(
                &self.name,
                DeviceErrorKind::Physical(format!("cannot carry on the heat: {why}")),
                false,
            ));
        }
        self.arm_watchdog().await?;
        self.heat_and_hold(t, hold, at_set_point).await
    }

    async fn run_stir(&mut self, rpm: f64, duration: f64) -> Result<(), DeviceError> {
        self.arm_watchdog().await?;
        self.set_and_confirm(4, rpm.round(), 0, "rpm").await?;
        self.write("START_4").await?;
        let clock = self.link.clock().clone();
        let end = clock.now() + duration;
        loop {
            let left = end - clock.now();
            if left <= 0.0 {
                break;
            }
            pause(&clock, left.min(POLL)).await;
            self.read_value("IN_PV_4", 4, true).await?;
        }
        self.write("STOP_4").await
    }
}

/// The plate temperatures (`IN_PV_2`) a step read, from its recorded exchanges, in order.
pub fn recorded_temperatures(exchanges: &[RecordedExchange]) -> Vec<RecordedReading> {
    exchanges
        .iter()
        .filter(|e| e.sent == b"IN_PV_2\r\n")
        .filter_map(|e| {
            let line = std::str::from_utf8(&e.received).ok()?;
            let value = parse_reading(line.trim(), 2)?;
            Some(RecordedReading { id: e.id, at: e.replied_at?, value })
        })
        .collect()
}

/// What settling a heat needs to know of this driver: how its plate stops itself when the controller is gone,
/// and that its stirrer tells whether it heats.
pub fn heat_facts(config: &IkaConfig, scale: f64) -> crate::readback::HeatFacts {
    let (longest, hold_aware) = match config.watchdog {
        Some(w) => (w.0.clamp(WATCHDOG_FLOOR, 1500.0), true),
        None => (f64::from(watchdog_seconds(scale)), false),
    };
    let overrun = watchdog_margin(scale).min(longest);
    // A reading restarts the watchdog a poll before it is re-armed; below the plate's shortest watchdog, the rest.
    let slack = POLL + (WATCHDOG_FLOOR - overrun).max(0.0);
    crate::readback::HeatFacts {
        watchdog: Some(crate::readback::Watchdog { longest, hold_aware, overrun, slack }),
        stirrer_tells_heater: true,
        poll: POLL,
    }
}

/// How long past a hold's end the driver arms the watchdog, in lab seconds on a clock running `scale` times faster
/// than the wall: a poll, or [`WATCHDOG_MARGIN_WALL`] of wall time if that is longer.
pub fn watchdog_margin(scale: f64) -> f64 {
    let wall = if scale.is_finite() { WATCHDOG_MARGIN_WALL * scale } else { 1500.0 };
    POLL.max(wall)
}

/// Why the plate does not heat as a heat at `t` degC (stirring at `stir` rpm) would have it, if it does not.
fn heat_mismatch(h: &HeaterState, t: f64, stir: Option<f64>) -> Option<String> {
    if (h.set_point.0 - t).abs() > 0.05 {
        return Some(format!("its set point reads {}, not {t} degC", h.set_point));
    }
    let turning = h.stirring.map_or(0.0, |s| s.0);
    match stir {
        Some(rpm) if (turning - rpm).abs() > (0.05 * rpm).max(10.0) => {
            Some(format!("its stirrer turns at {turning:.0} rpm, not {rpm:.0} rpm"))
        }
        None => Some("a heat without stirring cannot be confirmed on this plate".to_owned()),
        _ => None,
    }
}

/// The watchdog timeout for a clock running `scale` times faster than the wall: 120 s, or half a second of wall
/// time if that is longer, within the command's 20..=1500 s.
pub fn watchdog_seconds(scale: f64) -> u32 {
    let m = WATCHDOG.max(0.5 * scale);
    // Clamped to 20..=1500, so the conversion is exact.
    (if m.is_finite() { m.ceil() } else { 1500.0 }).clamp(20.0, 1500.0) as u32
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Probe for IkaHotplate<T> {
    fn celsius(&mut self) -> impl std::future::Future<Output = Result<f64, DeviceError>> + Send {
        self.read_value("IN_PV_2", 2, true)
    }

    fn holding(&mut self, left: f64) -> impl std::future::Future<Output = Result<(), DeviceError>> + Send {
        self.watch_hold(left)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for IkaHotplate<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::Hotplate
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let name = self.read("IN_NAME", false).await?;
            // A model with a profile answers its own name (a RET control-visc says `IKARET`); any other is taken
            // to answer the lab file's `model`.
            let expected = profile(&self.config.model).map_or(self.config.model.as_str(), |p| p.name);
            if name != expected {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::WrongIdentity {
                        expected: format!("an IKA `{}`, which answers `{expected}`", self.config.model),
                        found: name,
                    },
                    false,
                ));
            }
            Ok(Identity { model: name.clone(), serial: None, firmware: None, raw: name })
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            self.write("STOP_1").await?;
            self.write("STOP_4").await?;
            self.read_value("IN_PV_2", 2, false).await?;
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            self.write("STOP_1").await?;
            self.write("STOP_4").await
        })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_heat(&mut self) -> Option<&mut dyn Heat> {
        Some(self)
    }

    fn as_stir(&mut self) -> Option<&mut dyn Stir> {
        Some(self)
    }

    fn as_read_back(&mut self) -> Option<&mut dyn ReadBack> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ReadBack for IkaHotplate<T> {
    fn observe(&mut self) -> BoxFuture<'_, Result<Observed, DeviceError>> {
        Box::pin(async move { self.read_back().await.map(Observed::Heater) })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Heat for IkaHotplate<T> {
    fn heat(
        &mut self,
        temperature: Temperature,
        duration: Duration,
        stir: Option<Speed>,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>> {
        Box::pin(async move {
            self.limits(Some(temperature), stir, duration)?;
            let result = self.run_heat(temperature.0, duration.0, stir.map(|s| s.0)).await;
            if result.as_ref().is_err_and(|e| e.may_have_acted) {
                self.stop_quietly().await;
            }
            result
        })
    }

    fn continue_heat(
        &mut self,
        temperature: Temperature,
        hold: Duration,
        stir: Option<Speed>,
        at_set_point: bool,
    ) -> BoxFuture<'_, Result<Outcome, DeviceError>> {
        Box::pin(async move {
            self.limits(Some(temperature), stir, hold)?;
            let result = self.carry_on(temperature.0, hold.0, stir.map(|s| s.0), at_set_point).await;
            if result.as_ref().is_err_and(|e| e.may_have_acted) {
                self.stop_quietly().await;
            }
            result
        })
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stir for IkaHotplate<T> {
    fn stir(&mut self, speed: Speed, duration: Duration) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            self.limits(None, Some(speed), duration)?;
            let result = self.run_stir(speed.0, duration.0).await;
            if result.as_ref().is_err_and(|e| e.may_have_acted) {
                self.stop_quietly().await;
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_decode_with_either_ending() {
        let mut d = NamurDecoder;
        let mut b = BytesMut::from(&b"25.3 2\r\nRCT digital\n30"[..]);
        assert_eq!(d.decode(&mut b).unwrap().as_deref(), Some("25.3 2"));
        assert_eq!(d.decode(&mut b).unwrap().as_deref(), Some("RCT digital"));
        assert_eq!(d.decode(&mut b).unwrap(), None);
        assert!(d.decode(&mut BytesMut::from(&[b'9'; 100][..])).is_err());
        assert!(d.decode(&mut BytesMut::from(&b"25\x003 2\r\n"[..])).is_err());
    }

    #[test]
    fn readings_need_their_index() {
        assert_eq!(parse_reading("25.3 2", 2), Some(25.3));
        assert_eq!(parse_reading("25.3 1", 2), None);
        assert_eq!(parse_reading("25.3", 2), None);
        assert_eq!(parse_reading("abc 2", 2), None);
        assert_eq!(parse_reading("NaN 2", 2), None);
    }

    #[test]
    fn the_watchdog_grows_with_the_clock_within_its_range() {
        assert_eq!(watchdog_seconds(1.0), 120);
        assert_eq!(watchdog_seconds(400.0), 200);
        assert_eq!(watchdog_seconds(2000.0), 1000);
        assert_eq!(watchdog_seconds(1e6), 1500);
        assert_eq!(watchdog_seconds(f64::INFINITY), 1500);
    }
}
