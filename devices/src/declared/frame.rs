//! Framing of a declared instrument's requests and replies: checksums, where a reply ends, and replies of several
//! lines read as one.
//!
//! A reply frame is one of four shapes ([`Frame`]): ended by a terminator (`\r\n`), between a start and an end byte
//! (New Era's `STX ... ETX`), of a fixed length, or ended by a prompt (Harvard's `:`, `>`, `<`). The text of a frame
//! must be UTF-8 without control characters other than tab; anything else is refused with the bytes, as is a frame
//! longer than its maximum, so an instrument that answers something unexpected never stalls a driver. A
//! [`ReplyDecoder`] reads the frames of one exchange: one line, lines up to a last one that matches a pattern, or a
//! count of lines, and stops early at a line that a reply class claims (an error answers in one line whatever the
//! command's reply would have been).

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use super::template::Template;
use super::{Class, Lines};
use crate::drivers::FrameError;

/// What a checksum sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumKind {
    /// The sum of the bytes, modulo 256.
    Sum8,
    /// The exclusive or of the bytes.
    Xor8,
    /// CRC-16/MODBUS (reflected 0x8005, initial 0xFFFF), sent low byte first when raw.
    Crc16Modbus,
    /// CRC-16/XMODEM, the CCITT polynomial 0x1021 from 0 (New Era's safe mode), sent high byte first when raw.
    Crc16Ccitt,
}

/// How a checksum is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As upper-case hexadecimal digits.
    Hex,
    /// As bytes.
    Raw,
}

/// A checksum and how it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checksum {
    /// What it sums.
    pub kind: ChecksumKind,
    /// How it is written.
    pub encoding: Encoding,
}

const CRC_MODBUS: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);
const CRC_XMODEM: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_XMODEM);

impl Checksum {
    /// The checksum of `data`, as written on the wire.
    pub fn of(&self, data: &[u8]) -> Vec<u8> {
        let (value, bytes): (u16, usize) = match self.kind {
            ChecksumKind::Sum8 => (u16::from(data.iter().fold(0u8, |a, b| a.wrapping_add(*b))), 1),
            ChecksumKind::Xor8 => (u16::from(data.iter().fold(0u8, |a, b| a ^ b)), 1),
            ChecksumKind::Crc16Modbus => (CRC_MODBUS.checksum(data), 2),
            ChecksumKind::Crc16Ccitt => (CRC_XMODEM.checksum(data), 2),
        };
        match (self.encoding, bytes) {
            (Encoding::Hex, 1) => format!("{value:02X}").into_bytes(),
            (Encoding::Hex, _) => format!("{value:04X}").into_bytes(),
            (Encoding::Raw, 1) => vec![value as u8],
            (Encoding::Raw, _) if self.kind == ChecksumKind::Crc16Modbus => value.to_le_bytes().to_vec(),
            (Encoding::Raw, _) => value.to_be_bytes().to_vec(),
        }
    }

    /// How many bytes it takes on the wire.
    pub fn width(&self) -> usize {
        let bytes = if matches!(self.kind, ChecksumKind::Sum8 | ChecksumKind::Xor8) { 1 } else { 2 };
        if self.encoding == Encoding::Hex { 2 * bytes } else { bytes }
    }

    /// Splits `body` into its data and checksum and checks them; the data, or why not.
    fn check<'a>(&self, body: &'a [u8]) -> Result<&'a [u8], FrameError> {
        let w = self.width();
        if body.len() < w {
            return Err(FrameError::Malformed(format!("a reply of {} bytes has no room for its checksum", body.len())));
        }
        let (data, sum) = body.split_at(body.len() - w);
        let expected = self.of(data);
        if expected.eq_ignore_ascii_case(sum) {
            Ok(data)
        } else {
            Err(FrameError::Checksum(format!(
                "checksum {} expected, {} received",
                crate::error::Printable(&expected),
                crate::error::Printable(sum)
            )))
        }
    }
}

/// How a reply frame ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Text up to a terminator, with a checksum before it if given.
    Terminated {
        /// The terminator.
        end: Vec<u8>,
        /// The longest frame, terminator included.
        max: usize,
        /// A checksum at the end of the text.
        checksum: Option<Checksum>,
    },
    /// Text between a start and an end sequence.
    Delimited {
        /// What starts a frame.
        start: Vec<u8>,
        /// What ends it.
        end: Vec<u8>,
        /// The longest frame, start and end included.
        max: usize,
        /// A checksum at the end of the text.
        checksum: Option<Checksum>,
    },
    /// Exactly this many bytes.
    Fixed(usize),
    /// Text up to and with the first of the prompts (line breaks around it dropped).
    Prompt {
        /// The prompts.
        prompts: Vec<Vec<u8>>,
        /// The longest frame.
        max: usize,
    },
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The text of a frame: UTF-8 without control characters other than tab, CR and LF (which a prompt frame keeps
/// between lines).
fn text(bytes: &[u8]) -> Result<String, FrameError> {
    let s = std::str::from_utf8(bytes)
        .map_err(|_| FrameError::Malformed(format!("{} is not text", crate::error::Printable(bytes))))?;
    if let Some(c) = s.chars().find(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n')) {
        return Err(FrameError::Malformed(format!("control character {:?} in a reply", c)));
    }
    Ok(s.to_owned())
}

impl Frame {
    /// Takes one frame off the front of `buf`: its text, `None` if more bytes are needed, or why the bytes cannot
    /// be a reply.
    pub fn take(&self, buf: &mut BytesMut) -> Result<Option<String>, FrameError> {
        let too_long = |max: usize| FrameError::Malformed(format!("no end of reply within {max} bytes"));
        match self {
            Frame::Terminated { end, max, checksum } => {
                let Some(i) = find(&buf[..buf.len().min(*max)], end) else {
                    return if buf.len() >= *max { Err(too_long(*max)) } else { Ok(None) };
                };
                let frame = buf.split_to(i + end.len());
                let body = &frame[..i];
                let data = match checksum {
                    Some(c) => c.check(body)?,
                    None => body,
                };
                text(data).map(Some)
            }
            Frame::Delimited { start, end, max, checksum } => {
                let n = buf.len().min(start.len());
                if buf[..n] != start[..n] {
                    return Err(FrameError::Malformed(format!(
                        "a reply starts {}, not {}",
                        crate::error::Printable(&buf[..n]),
                        crate::error::Printable(start)
                    )));
                }
                if buf.len() < start.len() {
                    return Ok(None);
                }
                let window = &buf[start.len()..buf.len().min(*max)];
                let Some(i) = find(window, end) else {
                    return if buf.len() >= *max { Err(too_long(*max)) } else { Ok(None) };
                };
                let frame = buf.split_to(start.len() + i + end.len());
                let body = &frame[start.len()..start.len() + i];
                let data = match checksum {
                    Some(c) => c.check(body)?,
                    None => body,
                };
                text(data).map(Some)
            }
            Frame::Fixed(n) => {
                if buf.len() < *n {
                    return Ok(None);
                }
                let frame = buf.split_to(*n);
                text(&frame).map(Some)
            }
            Frame::Prompt { prompts, max } => {
                let window = &buf[..buf.len().min(*max)];
                let first = prompts.iter().filter_map(|p| find(window, p).map(|i| (i, i + p.len()))).min();
                let Some((_, end)) = first else {
                    return if buf.len() >= *max { Err(too_long(*max)) } else { Ok(None) };
                };
                let frame = buf.split_to(end);
                text(&frame).map(|t| Some(t.trim_matches(['\r', '\n']).to_owned()))
            }
        }
    }

    /// The bytes of a frame holding `text` (a simulator's reply), and where its checksum's last byte is.
    pub fn wrap(&self, text: &str) -> (Vec<u8>, Option<usize>) {
        let with = |start: &[u8], end: &[u8], checksum: &Option<Checksum>| {
            let mut out = start.to_vec();
            out.extend_from_slice(text.as_bytes());
            let mut at = None;
            if let Some(c) = checksum {
                out.extend(c.of(text.as_bytes()));
                at = Some(out.len() - 1);
            }
            out.extend_from_slice(end);
            (out, at)
        };
        match self {
            Frame::Terminated { end, checksum, .. } => with(&[], end, checksum),
            Frame::Delimited { start, end, checksum, .. } => with(start, end, checksum),
            Frame::Fixed(_) | Frame::Prompt { .. } => (text.as_bytes().to_vec(), None),
        }
    }

    /// Whether the frame carries a checksum.
    pub fn checksum(&self) -> Option<Checksum> {
        match self {
            Frame::Terminated { checksum, .. } | Frame::Delimited { checksum, .. } => *checksum,
            Frame::Fixed(_) | Frame::Prompt { .. } => None,
        }
    }
}

/// A reply: its lines.
#[derive(Clone, PartialEq, Eq)]
pub struct Reply {
    /// The lines, in order.
    pub lines: Vec<String>,
}

impl Reply {
    /// The lines joined with `\n`, which is what patterns match.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text())
    }
}

/// Reads the reply of one exchange: its frames, one line or several.
#[derive(Debug)]
pub struct ReplyDecoder<'a> {
    frame: &'a Frame,
    lines: &'a Lines,
    classes: &'a [Class],
    got: Vec<String>,
}

impl<'a> ReplyDecoder<'a> {
    /// A decoder for a reply of `lines` lines, each framed by `frame`, ending early at a line one of `classes`
    /// claims.
    pub fn new(frame: &'a Frame, lines: &'a Lines, classes: &'a [Class]) -> Self {
        ReplyDecoder { frame, lines, classes, got: Vec::new() }
    }

    fn complete(&self, last: &str) -> bool {
        match self.lines {
            Lines::One => true,
            Lines::Count(n) => self.got.len() >= usize::from(*n),
            Lines::Until(t) => t.matches(last).is_some(),
        }
    }
}

/// The most lines a reply may have before it counts as runaway.
pub const MAX_LINES: usize = 64;

impl Decoder for ReplyDecoder<'_> {
    type Item = Reply;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Reply>, FrameError> {
        while src.has_remaining() {
            let Some(line) = self.frame.take(src)? else { return Ok(None) };
            let claimed = self.got.is_empty() && self.classes.iter().any(|c| c.reply.matches(&line).is_some());
            self.got.push(line);
            let last = self.got.last().map(String::as_str).unwrap_or_default();
            if claimed || self.complete(last) {
                return Ok(Some(Reply { lines: std::mem::take(&mut self.got) }));
            }
            if self.got.len() >= MAX_LINES {
                return Err(FrameError::Malformed(format!("a reply of more than {MAX_LINES} lines")));
            }
        }
        Ok(None)
    }
}

/// Matches `text` against the first of `templates` that matches; its index.
pub fn first_match(templates: &[&Template], text: &str) -> Option<usize> {
    templates.iter().position(|t| t.matches(text).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::declared::ClassKind;

    fn take(frame: &Frame, bytes: &[u8]) -> Result<Option<String>, FrameError> {
        frame.take(&mut BytesMut::from(bytes))
    }

    #[test]
    fn checksums_match_their_references() {
        // CRC-16/MODBUS of the standard check string is 0x4B37, CRC-16/XMODEM 0x31C3.
        let modbus = Checksum { kind: ChecksumKind::Crc16Modbus, encoding: Encoding::Raw };
        assert_eq!(modbus.of(b"123456789"), vec![0x37, 0x4B]);
        let ccitt = Checksum { kind: ChecksumKind::Crc16Ccitt, encoding: Encoding::Hex };
        assert_eq!(ccitt.of(b"123456789"), b"31C3");
        let sum = Checksum { kind: ChecksumKind::Sum8, encoding: Encoding::Hex };
        assert_eq!(sum.of(b"\x01\x02\xFF"), b"02");
        let xor = Checksum { kind: ChecksumKind::Xor8, encoding: Encoding::Raw };
        assert_eq!(xor.of(b"\x0F\xF0"), vec![0xFF]);
    }

    #[test]
    fn frames_end_where_the_instrument_says() {
        let crlf = Frame::Terminated { end: b"\r\n".to_vec(), max: 32, checksum: None };
        assert_eq!(take(&crlf, b"{S01FB1E\r\n").unwrap().unwrap(), "{S01FB1E");
        assert_eq!(take(&crlf, b"{S01FB").unwrap(), None);
        assert!(take(&crlf, &[b'x'; 40]).is_err(), "no terminator within the maximum");
        let stx = Frame::Delimited { start: vec![2], end: vec![3], max: 64, checksum: None };
        assert_eq!(take(&stx, b"\x0200SNE1000V3.928\x03").unwrap().unwrap(), "00SNE1000V3.928");
        assert!(take(&stx, b"00S\x03").is_err(), "a reply must start with STX");
        let fixed = Frame::Fixed(3);
        assert_eq!(take(&fixed, b"abcd").unwrap().unwrap(), "abc");
        let prompt = Frame::Prompt { prompts: vec![b":".to_vec(), b">".to_vec()], max: 64 };
        assert_eq!(take(&prompt, b"\r\n0.5 ml/min\r\n00:").unwrap().unwrap(), "0.5 ml/min\r\n00:");
        assert!(take(&crlf, b"ok\xFF\r\n").is_err(), "not text");
        assert!(take(&crlf, b"o\x07k\r\n").is_err(), "a bell is not text");
    }

    #[test]
    fn a_checksummed_frame_is_checked_and_wrapped_back() {
        let sum = Checksum { kind: ChecksumKind::Sum8, encoding: Encoding::Hex };
        let f = Frame::Terminated { end: b"\r".to_vec(), max: 32, checksum: Some(sum) };
        let (bytes, at) = f.wrap("PV 25.0");
        assert_eq!(at, Some(bytes.len() - 2));
        assert_eq!(take(&f, &bytes).unwrap().unwrap(), "PV 25.0");
        let mut bad = bytes.clone();
        bad[at.unwrap()] ^= 1;
        assert!(matches!(take(&f, &bad), Err(FrameError::Checksum(_))));
    }

    #[test]
    fn a_reply_of_several_lines_is_one_exchange_unless_a_class_claims_its_first() {
        let f = Frame::Terminated { end: b"\r".to_vec(), max: 64, checksum: None };
        let until = Lines::Until(Template::parse("{_:s} M10{_:*}").unwrap());
        let classes = [Class { reply: Template::parse("?").unwrap(), is: ClassKind::Unknown }];
        let mut d = ReplyDecoder::new(&f, &until, &classes);
        let mut buf = BytesMut::from(&b"A M01 Alicat Scientific\rA M04 MC-100SCCM-D\r"[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"A M10 \r");
        let r = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(r.lines.len(), 3);
        assert_eq!(r.text(), "A M01 Alicat Scientific\nA M04 MC-100SCCM-D\nA M10 ");
        let mut buf = BytesMut::from(&b"?\r"[..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().lines, vec!["?"]);
        let count = Lines::Count(2);
        let mut d = ReplyDecoder::new(&f, &count, &[]);
        assert_eq!(d.decode(&mut BytesMut::from(&b"a\rb\rc\r"[..])).unwrap().unwrap().lines, vec!["a", "b"]);
    }
}
