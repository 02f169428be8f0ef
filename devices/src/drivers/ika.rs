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
use crate::transport::Link;

/// Lab seconds between two readings while heating, ramping or holding.
pub const POLL: f64 = 10.0;

/// The watchdog timeout at real time, in seconds.
pub const WATCHDOG: f64 = 120.0;

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

    /// Arms the watchdog, sized to the clock (see the module doc), and checks its echo.
    async fn arm_watchdog(&mut self) -> Result<(), DeviceError> {
        let m = watchdog_seconds(self.link.clock().scale());
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
        let clock = self.link.clock().clone();
        let tolerance = self.config.tolerance.0.abs();
        let name = self.name.clone();
        let plan = Hold { what: "the plate ", target: t, tolerance, hold, poll: POLL };
        let held = reach_and_hold(self, &name, &clock, plan).await?;
        self.write("STOP_1").await?;
        self.write("STOP_4").await?;
        Ok(held)
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
