//! The reference spectra a resumed controller takes from the record instead of from its spectrometers.
//!
//! A spectrometer's readings rest on a reference taken with its holder empty, which its driver takes when it is
//! first initialized. A controller that stopped with experiments running, or with vessels still on the deck, may
//! have left one in the holder, and a reference taken through it would spoil every reading after it without a sign.
//! So the resumed controller takes none: it gives the new driver the reference its predecessor took, from the
//! recorded reply (the last one the instrument gave to its reference command outside any step, which by the same
//! rule was taken with the holder empty). Where the record holds none, the spectrometer is not used, and the record
//! says why.

use std::collections::BTreeMap;

use devices::Lab;
use rusqlite::{Connection, OptionalExtension};

/// A reference recorded for an instrument: the exchange's id and the bytes the instrument answered.
pub type RecordedReference = Option<(i64, Vec<u8>)>;

/// For each instrument of `lab` whose driver takes a reference, the last one the record of `campaign` holds (or
/// `None` if it holds none), when a vessel may stand in a holder (`occupied`); nothing otherwise, and a fresh
/// reference is taken.
pub fn recorded(
    conn: &Connection,
    campaign: i64,
    lab: &Lab,
    occupied: bool,
) -> rusqlite::Result<BTreeMap<String, RecordedReference>> {
    let mut found = BTreeMap::new();
    if !occupied {
        return Ok(found);
    }
    let mut stmt = conn.prepare(
        "SELECT id, received FROM commands
         WHERE campaign_id = ?1 AND instrument = ?2 AND step_id IS NULL AND sent = ?3 AND error IS NULL
         ORDER BY id DESC LIMIT 1",
    )?;
    for spec in &lab.instruments {
        if let Some(command) = devices::drivers::reference_command(spec) {
            let last = stmt.query_row(rusqlite::params![campaign, spec.name, command], |r| Ok((r.get(0)?, r.get(1)?)));
            found.insert(spec.name.clone(), last.optional()?);
        }
    }
    Ok(found)
}
