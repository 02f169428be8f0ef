//! Ocean Optics Flame spectrometer, RS-232 binary command set (Flame-S manual ch. 8, SAD500 manual).
//!
//! A command is one ASCII letter followed by data words; in binary mode, the power-up default, a word is a 16-bit
//! unsigned integer sent MSB first. Every command is answered ACK (0x06) or NAK (0x15), except `S`, which answers
//! STX (0x02) and a spectrum once the scans are acquired, or ETX (0x03) if it cannot acquire. A spectrum is the
//! words 0xFFFF, data-size flag (0: pixel values are words, 1: double words), scans accumulated, integration time
//! in ms, baseline MSW, baseline LSW, pixel mode (0: all pixels), the pixel values, and 0xFFFD.
//!
//! Absorbance needs a reference: [`Instrument::initialize`] takes one and keeps it, assuming the holder is empty
//! when the lab starts (nothing on the deck stands in the spectrometer at power-up). Initializing again (a
//! reconciliation after a failed reading, whose vessel still stands in the holder) keeps the reference the driver
//! holds, and a controller that resumes while a vessel may stand in the holder gives the driver the reference its
//! predecessor took ([`Measure::restore_reference`], from the recorded reply to [`ACQUIRE`]) instead of taking one
//! through that vessel. Each spectrum is corrected
//! for its dark level with the mean of the optically masked pixels 2..=18 of the ILX511 detector; that range is
//! [U], taken from the detector family's description, not checked against a Flame's data sheet. The absorbance at
//! λ is the mean of `log10((R - dR) / (S - dS))` over the pixels within ±1 nm of λ (the nearest pixel if none is).
//! Nothing here is physical, so every error carries `may_have_acted = false`.
//!
//! Identification [U]: the RS-232 command set has no model query, so `v` answered with ACK and a version word is
//! all that shows the device speaks the Ocean Optics protocol; a NAK or any other reply refuses it.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::future::BoxFuture;
use protocols::InstrumentKind;
use protocols::units::Wavelength;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::Decoder;

use super::{FrameError, error, not_acted};
use crate::capability::{Identity, Instrument, Measure};
use crate::error::{DeviceError, DeviceErrorKind};
use crate::lab::FlameConfig;
use crate::transport::{LineSettings, Link};

/// Acknowledge: the command was accepted.
pub const ACK: u8 = 0x06;
/// Negative acknowledge: the command or its value was refused.
pub const NAK: u8 = 0x15;
/// Starts a spectrum.
pub const STX: u8 = 0x02;
/// Answers `S` when no spectrum can be acquired.
pub const ETX: u8 = 0x03;
/// The word that starts a spectrum.
pub const START_WORD: u16 = 0xFFFF;
/// The word that ends a spectrum.
pub const END_WORD: u16 = 0xFFFD;

/// The optically masked pixels of the ILX511 detector, which see no light [U].
pub const MASKED: std::ops::RangeInclusive<usize> = 2..=18;

/// Half the width of the band averaged around the requested wavelength, in nanometres.
const HALF_BAND: f64 = 1.0;

/// A per-scan count this close to the 16-bit ceiling means the detector saturated.
const SATURATED: f64 = 65_000.0;

/// The words of a spectrum header after STX.
const HEADER_WORDS: usize = 7;

/// What the decoder expects next, which depends on the command sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// ACK or NAK alone.
    Ack,
    /// ACK followed by one data word, or NAK.
    AckWord,
    /// STX and a spectrum, ETX, or NAK.
    Spectrum,
}

/// One reply from the spectrometer.
#[derive(Debug, Clone, PartialEq)]
pub enum FlameReply {
    /// The command was accepted.
    Ack,
    /// The command was refused.
    Nak,
    /// Accepted, with a data word.
    Word(u16),
    /// A spectrum.
    Spectrum(Spectrum),
    /// `S` could not acquire (ETX).
    NoSpectrum,
}

/// A spectrum as the instrument sent it.
#[derive(Clone, PartialEq)]
pub struct Spectrum {
    /// How many scans were summed into each pixel value.
    pub scans: u16,
    /// The integration time per scan, in milliseconds.
    pub integration_ms: u16,
    /// The FPGA baseline value.
    pub baseline: u32,
    /// Pixel values, summed over the scans.
    pub counts: Vec<u32>,
}

impl std::fmt::Debug for Spectrum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The record keeps the raw bytes; the parsed form only needs the header and the count of pixels.
        write!(
            f,
            "Spectrum {{ scans: {}, integration_ms: {}, pixels: {} }}",
            self.scans,
            self.integration_ms,
            self.counts.len()
        )
    }
}

impl Spectrum {
    /// The spectrum as it would be on the wire after STX; for simulators and tests.
    pub fn to_bytes(&self) -> Vec<u8> {
        let wide = self.scans > 1 || self.counts.iter().any(|&c| c > u32::from(u16::MAX));
        let mut v = Vec::with_capacity(2 * HEADER_WORDS + 4 * self.counts.len() + 3);
        v.push(STX);
        for w in [
            START_WORD,
            u16::from(wide),
            self.scans,
            self.integration_ms,
            (self.baseline >> 16) as u16,
            self.baseline as u16,
            0,
        ] {
            v.extend_from_slice(&w.to_be_bytes());
        }
        for &c in &self.counts {
            if wide {
                v.extend_from_slice(&c.to_be_bytes());
            } else {
                v.extend_from_slice(&(c.min(u32::from(u16::MAX)) as u16).to_be_bytes());
            }
        }
        v.extend_from_slice(&END_WORD.to_be_bytes());
        v
    }
}

/// Frames Flame replies; set [`FlameDecoder::expect`] to what the command sent calls for.
#[derive(Debug, Clone)]
pub struct FlameDecoder {
    /// What the next reply is.
    pub expect: Expect,
    /// Pixels on the detector, which fixes a spectrum's length.
    pub pixels: usize,
}

fn word(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[2 * i], b[2 * i + 1]])
}

impl Decoder for FlameDecoder {
    type Item = FlameReply;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<FlameReply>, FrameError> {
        let Some(&first) = src.first() else { return Ok(None) };
        match (self.expect, first) {
            (_, NAK) => {
                src.advance(1);
                Ok(Some(FlameReply::Nak))
            }
            (Expect::Ack, ACK) => {
                src.advance(1);
                Ok(Some(FlameReply::Ack))
            }
            (Expect::AckWord, ACK) => {
                if src.len() < 3 {
                    return Ok(None);
                }
                let w = u16::from_be_bytes([src[1], src[2]]);
                src.advance(3);
                Ok(Some(FlameReply::Word(w)))
            }
            (Expect::Spectrum, ETX) => {
                src.advance(1);
                Ok(Some(FlameReply::NoSpectrum))
            }
            (Expect::Spectrum, STX) => self.spectrum(src),
            (expect, b) => Err(FrameError::Malformed(format!("0x{b:02X} cannot start a reply ({expect:?} expected)"))),
        }
    }
}

impl FlameDecoder {
    /// Decodes STX and a spectrum, checking each header word as soon as it has arrived so garbage fails fast.
    fn spectrum(&self, src: &mut BytesMut) -> Result<Option<FlameReply>, FrameError> {
        let body = &src[1..];
        let have = body.len() / 2;
        if have >= 1 && word(body, 0) != START_WORD {
            return Err(FrameError::Malformed(format!("a spectrum starts with 0xFFFF, not 0x{:04X}", word(body, 0))));
        }
        if have >= 2 && word(body, 1) > 1 {
            return Err(FrameError::Malformed(format!("data-size flag {} is neither 0 nor 1", word(body, 1))));
        }
        if have >= 3 && word(body, 2) == 0 {
            return Err(FrameError::Malformed("a spectrum of zero scans".into()));
        }
        if have >= 7 && word(body, 6) != 0 {
            return Err(FrameError::Malformed(format!("pixel mode {} is not 0 (all pixels)", word(body, 6))));
        }
        if have < HEADER_WORDS {
            return Ok(None);
        }
        let width = if word(body, 1) == 1 { 4 } else { 2 };
        // A pixel count from outside the lab file's checks could overflow the frame's size; refuse it instead.
        let Some(total) = self.pixels.checked_mul(width).and_then(|n| n.checked_add(2 * HEADER_WORDS + 2)) else {
            return Err(FrameError::Malformed(format!("a spectrum of {} pixels is too long to frame", self.pixels)));
        };
        if body.len() < total {
            return Ok(None);
        }
        let end = u16::from_be_bytes([body[total - 2], body[total - 1]]);
        if end != END_WORD {
            return Err(FrameError::Malformed(format!(
                "a spectrum of {} pixels ends with 0xFFFD, not 0x{end:04X}; wrong pixel count or lost bytes",
                self.pixels
            )));
        }
        let data = &body[2 * HEADER_WORDS..total - 2];
        let counts = if width == 4 {
            data.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
        } else {
            data.chunks_exact(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).collect()
        };
        let spectrum = Spectrum {
            scans: word(body, 2),
            integration_ms: word(body, 3),
            baseline: (u32::from(word(body, 4)) << 16) | u32::from(word(body, 5)),
            counts,
        };
        src.advance(1 + total);
        Ok(Some(FlameReply::Spectrum(spectrum)))
    }
}

/// The firmware version a `v` word encodes: 1000 is `1.00.0`.
pub fn version(word: u16) -> String {
    format!("{}.{:02}.{}", word / 1000, (word / 10) % 100, word % 10)
}

/// The command that acquires a spectrum, whose recorded replies hold the references a driver took.
pub const ACQUIRE: &[u8] = b"S";

/// A spectrum's dark-corrected counts per scan; a saturated pixel is NaN, so a reading over it fails instead of
/// being silently low.
pub(crate) fn corrected(spectrum: &Spectrum) -> Vec<f64> {
    let n = f64::from(spectrum.scans.max(1));
    let per_scan: Vec<f64> = spectrum.counts.iter().map(|&c| f64::from(c) / n).collect();
    let masked: Vec<f64> = per_scan.iter().enumerate().filter(|(p, _)| MASKED.contains(p)).map(|(_, &c)| c).collect();
    let dark = if masked.is_empty() { 0.0 } else { masked.iter().sum::<f64>() / masked.len() as f64 };
    per_scan.iter().map(|&c| if c >= SATURATED { f64::NAN } else { c - dark }).collect()
}

/// A Flame spectrometer on a serial line.
pub struct Flame<T> {
    name: String,
    config: FlameConfig,
    line: LineSettings,
    link: Link<T>,
    reference: Option<Vec<f64>>,
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Flame<T> {
    /// A driver for the spectrometer `name` with the lab file's settings and line, talking over `link`.
    pub fn new(name: &str, config: FlameConfig, line: LineSettings, link: Link<T>) -> Self {
        Flame { name: name.to_owned(), config, line, link, reference: None }
    }

    fn decoder(&self, expect: Expect) -> FlameDecoder {
        FlameDecoder { expect, pixels: self.config.pixels }
    }

    /// Sends a command that must be acknowledged.
    async fn acknowledged(&mut self, command: &[u8]) -> Result<(), DeviceError> {
        let mut decoder = self.decoder(Expect::Ack);
        match self.link.request(command, &mut decoder).await.map_err(not_acted)? {
            FlameReply::Ack => Ok(()),
            other => Err(self.refused(command, &other)),
        }
    }

    fn refused(&self, command: &[u8], reply: &FlameReply) -> DeviceError {
        let received = match reply {
            FlameReply::Nak => vec![NAK],
            FlameReply::NoSpectrum => vec![ETX],
            _ => Vec::new(),
        };
        let what = crate::error::Printable(command);
        let message = match reply {
            FlameReply::NoSpectrum => "could not acquire a spectrum (ETX)".to_owned(),
            _ => format!("refused {what} (NAK)"),
        };
        error(&self.name, DeviceErrorKind::Firmware { code: None, message, received }, false)
    }

    /// The integration time in whole milliseconds, within the word the command takes.
    fn integration_ms(&self) -> Result<u16, DeviceError> {
        let ms = (self.config.integration.0 * 1000.0).round();
        if !(1.0..=65_000.0).contains(&ms) {
            return Err(error(
                &self.name,
                DeviceErrorKind::Limit(format!("integration time {} is outside 1 ms..65 s", self.config.integration)),
                false,
            ));
        }
        // Range-checked above.
        Ok(ms as u16)
    }

    /// Acquires a spectrum and returns its dark-corrected counts per scan.
    async fn acquire(&mut self) -> Result<Vec<f64>, DeviceError> {
        let scans = f64::from(self.config.scans.max(1));
        let width = if self.config.scans > 1 { 4.0 } else { 2.0 };
        let bytes = 17.0 + width * self.config.pixels as f64;
        // The reply comes after the scans are integrated (lab time) and the spectrum has crossed the line (wall
        // time at the line's speed: ten bits a byte).
        let timeout = self.line.timeout
            + self.link.clock().wall(self.config.integration.0 * scans)
            + Duration::from_secs_f64(bytes * 10.0 / f64::from(self.line.baud.max(1)));
        let mut decoder = self.decoder(Expect::Spectrum);
        let spectrum = match self.link.request_within(ACQUIRE, &mut decoder, timeout).await.map_err(not_acted)? {
            FlameReply::Spectrum(s) => s,
            other => return Err(self.refused(ACQUIRE, &other)),
        };
        Ok(corrected(&spectrum))
    }

    /// The pixels averaged for a reading at `lambda`.
    pub fn band(&self, lambda: f64) -> Vec<usize> {
        band(&self.config, lambda)
    }
}

/// The pixels of a spectrometer set up as `config` averaged for a reading at `lambda`.
pub(crate) fn band(config: &FlameConfig, lambda: f64) -> Vec<usize> {
    let pixels: Vec<usize> =
        (0..config.pixels).filter(|&p| (config.wavelength(p) - lambda).abs() <= HALF_BAND).collect();
    if !pixels.is_empty() {
        return pixels;
    }
    let nearest = (0..config.pixels).min_by(|&a, &b| {
        let da = (config.wavelength(a) - lambda).abs();
        let db = (config.wavelength(b) - lambda).abs();
        da.total_cmp(&db)
    });
    nearest.into_iter().collect()
}

/// The absorbance a reading over `band` gives from a `reference` and a `sample` spectrum, both corrected; `None`
/// where the driver would refuse the reading (a saturated or dark pixel).
pub(crate) fn band_absorbance(reference: &[f64], sample: &[f64], band: &[usize]) -> Option<f64> {
    let mut sum = 0.0;
    for &p in band {
        let (r, s) = (*reference.get(p)?, *sample.get(p)?);
        if r.is_nan() || s.is_nan() || s <= 0.0 || r <= 0.0 {
            return None;
        }
        sum += (r / s).log10();
    }
    (!band.is_empty()).then(|| sum / band.len() as f64)
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Instrument for Flame<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> InstrumentKind {
        InstrumentKind::Spectrometer
    }

    fn identify(&mut self) -> BoxFuture<'_, Result<Identity, DeviceError>> {
        Box::pin(async move {
            let mut decoder = self.decoder(Expect::AckWord);
            match self.link.request(b"v", &mut decoder).await.map_err(not_acted)? {
                FlameReply::Word(w) => Ok(Identity {
                    model: "Ocean Optics Flame".into(),
                    serial: None,
                    firmware: Some(version(w)),
                    raw: w.to_string(),
                }),
                other => Err(self.refused(b"v", &other)),
            }
        })
    }

    fn initialize(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        Box::pin(async move {
            let ms = self.integration_ms()?;
            self.acknowledged(b"bB").await?;
            let mut i = vec![b'I'];
            i.extend_from_slice(&ms.to_be_bytes());
            self.acknowledged(&i).await?;
            let mut a = vec![b'A'];
            a.extend_from_slice(&self.config.scans.to_be_bytes());
            self.acknowledged(&a).await?;
            // The holder may not be empty now: a reference this driver took, or was given, is kept.
            if self.reference.is_none() {
                self.reference = Some(self.acquire().await?);
            }
            Ok(())
        })
    }

    fn safe_state(&mut self) -> BoxFuture<'_, Result<(), DeviceError>> {
        // A spectrometer does nothing physical that could need stopping.
        Box::pin(async { Ok(()) })
    }

    fn set_tag(&mut self, tag: Option<u64>) {
        self.link.set_tag(tag);
    }

    fn as_measure(&mut self) -> Option<&mut dyn Measure> {
        Some(self)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Measure for Flame<T> {
    fn takes_reference(&self) -> bool {
        true
    }

    fn restore_reference(&mut self, received: &[u8]) -> Result<(), String> {
        let mut decoder = self.decoder(Expect::Spectrum);
        let mut bytes = BytesMut::from(received);
        let spectrum = match decoder.decode(&mut bytes) {
            Ok(Some(FlameReply::Spectrum(s))) if s.scans == self.config.scans.max(1) => s,
            Ok(Some(FlameReply::Spectrum(s))) => {
                return Err(format!("it summed {} scans, not the {} this lab sets", s.scans, self.config.scans));
            }
            Ok(Some(_)) => return Err("it is no spectrum".to_owned()),
            Ok(None) => return Err(format!("its {} bytes are not a whole spectrum", received.len())),
            Err(e) => return Err(e.to_string()),
        };
        let integration = (self.config.integration.0 * 1000.0).round();
        if f64::from(spectrum.integration_ms) != integration {
            return Err(format!(
                "it was integrated for {} ms, not the {integration} ms this lab sets",
                spectrum.integration_ms
            ));
        }
        self.reference = Some(corrected(&spectrum));
        Ok(())
    }

    fn absorbance(&mut self, wavelength: Wavelength) -> BoxFuture<'_, Result<f64, DeviceError>> {
        Box::pin(async move {
            let (lo, hi) = self.config.range();
            let lambda = wavelength.0;
            if !(lambda.is_finite() && lambda >= lo.0 && lambda <= hi.0) {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::Limit(format!("{wavelength} is outside the detector's {lo}..{hi}")),
                    false,
                ));
            }
            let band = self.band(lambda);
            if band.is_empty() {
                return Err(error(&self.name, DeviceErrorKind::Limit("the detector has no pixels".into()), false));
            }
            if self.reference.is_none() {
                return Err(error(
                    &self.name,
                    DeviceErrorKind::NotReady("no reference spectrum; initialize with the holder empty".into()),
                    false,
                ));
            }
            let sample = self.acquire().await?;
            let reference = self.reference.as_deref().unwrap_or_default();
            let mut sum = 0.0;
            for &p in &band {
                let (r, s) =
                    (reference.get(p).copied().unwrap_or(f64::NAN), sample.get(p).copied().unwrap_or(f64::NAN));
                if r.is_nan() || s.is_nan() {
                    return Err(error(
                        &self.name,
                        DeviceErrorKind::Physical(format!("the detector saturated near {wavelength}")),
                        false,
                    ));
                }
                if s <= 0.0 {
                    return Err(error(
                        &self.name,
                        DeviceErrorKind::Physical(format!("no light reached the detector at {wavelength}")),
                        false,
                    ));
                }
                if r <= 0.0 {
                    return Err(error(
                        &self.name,
                        DeviceErrorKind::Physical(format!("the reference spectrum has no light at {wavelength}")),
                        false,
                    ));
                }
                sum += (r / s).log10();
            }
            Ok(sum / band.len() as f64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spectrum(pixels: usize, scans: u16) -> Spectrum {
        Spectrum { scans, integration_ms: 100, baseline: 0, counts: (0..pixels as u32).map(|p| 1000 + p).collect() }
    }

    #[test]
    fn spectra_round_trip_in_both_widths() {
        for scans in [1, 4] {
            let s = spectrum(16, scans);
            let mut d = FlameDecoder { expect: Expect::Spectrum, pixels: 16 };
            let mut b = BytesMut::from(&s.to_bytes()[..]);
            assert_eq!(d.decode(&mut b).unwrap(), Some(FlameReply::Spectrum(s)));
            assert!(b.is_empty());
        }
    }

    #[test]
    fn replies_wait_for_all_their_bytes() {
        let mut d = FlameDecoder { expect: Expect::AckWord, pixels: 16 };
        let mut b = BytesMut::from(&[ACK, 0x03][..]);
        assert_eq!(d.decode(&mut b).unwrap(), None);
        b.extend_from_slice(&[0xE8]);
        assert_eq!(d.decode(&mut b).unwrap(), Some(FlameReply::Word(1000)));
        assert_eq!(version(1000), "1.00.0");
        assert_eq!(version(3021), "3.02.1");
    }

    #[test]
    fn bad_headers_fail_before_the_whole_spectrum_arrives() {
        let mut d = FlameDecoder { expect: Expect::Spectrum, pixels: 2048 };
        assert!(d.decode(&mut BytesMut::from(&[STX, 0xFF, 0xFE][..])).is_err());
        assert!(d.decode(&mut BytesMut::from(&[STX, 0xFF, 0xFF, 0x00, 0x07][..])).is_err());
        assert!(d.decode(&mut BytesMut::from(&[0x41][..])).is_err());
        let mut d = FlameDecoder { expect: Expect::Ack, pixels: 2048 };
        assert!(d.decode(&mut BytesMut::from(&[STX][..])).is_err());
    }
}
