//! Hex text for hashes, keys and signatures: how the record writes bytes that people read with `sqlite3`.
//!
//! The journal, the signed checkpoints and `lab verify` all write and read hex; it lives apart from each of them
//! so that none of them imports another for it.

/// Lower-case hex of a hash (or any bytes). The writer hexes one hash per event, so this builds the string from a
/// table rather than formatting each byte (which cost about a microsecond per hash).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// A hash from hex, if it is one.
pub fn unhex(s: &str) -> Option<[u8; 32]> {
    unhex_bytes(s)
}

/// Exactly `N` bytes from `2 * N` hex digits, if that is what `s` is.
pub fn unhex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
