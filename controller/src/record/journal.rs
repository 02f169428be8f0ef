//! The journal: every event, in order, in a SHA-256 hash chain.
//!
//! Row `n`'s hash covers row `n - 1`'s hash and row `n`'s own content (id, campaign, time, kind, body), so changing,
//! removing or inserting any row breaks the chain at that row and `lab verify` names it. The chain's head can be
//! written down elsewhere (the campaign summary prints it) so that even a rewrite of the whole chain is caught.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::events::RecordEvent;
use super::hex::{hex, unhex};
use super::prepared::Prepared;

/// The hash before the first row.
pub const GENESIS: [u8; 32] = [0; 32];

/// The hash of one journal row, chained to the previous row's hash.
pub fn chain_hash(
    prev: &[u8; 32],
    id: i64,
    campaign: Option<i64>,
    at: Option<f64>,
    kind: &str,
    body: &str,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(id.to_be_bytes());
    h.update(campaign.unwrap_or(0).to_be_bytes());
    h.update(at.map_or(u64::MAX, f64::to_bits).to_be_bytes());
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(body.as_bytes());
    h.finalize().into()
}

/// The journal's tail as the writer tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// The last row's id (0 for an empty journal).
    pub id: i64,
    /// The last row's hash.
    pub hash: [u8; 32],
}

impl Tail {
    /// Reads the tail of the journal in `conn`.
    pub fn read(conn: &Connection) -> rusqlite::Result<Tail> {
        let last: Option<(i64, String)> = conn
            .query_row("SELECT id, hash FROM journal ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(match last {
            Some((id, h)) => Tail { id, hash: unhex(&h).unwrap_or(GENESIS) },
            None => Tail { id: 0, hash: GENESIS },
        })
    }

    /// Appends `event` after this tail and moves the tail.
    pub fn append(&mut self, sql: &mut Prepared<'_>, event: &RecordEvent) -> rusqlite::Result<i64> {
        let body = serde_json::to_string(event).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let id = self.id + 1;
        let (campaign, at, kind) = (event.campaign(), event.at(), event.kind());
        let hash = chain_hash(&self.hash, id, campaign, at, kind, &body);
        sql.get("INSERT INTO journal (id, campaign_id, at, kind, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?
            .execute(params![id, campaign, at, kind, body, hex(&hash)])?;
        *self = Tail { id, hash };
        Ok(id)
    }
}

/// Writes a checkpoint of the current tail, so a later rewrite of the chain is caught against it; signed with
/// `signer` if there is one, so that a rewrite of the checkpoint too is caught by whoever holds the public key.
pub fn checkpoint(
    conn: &Connection,
    tail: &Tail,
    reason: &str,
    signer: Option<&super::signing::CheckpointSigner>,
) -> rusqlite::Result<()> {
    let hash = hex(&tail.hash);
    let made_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let (public_key, signature) = match signer {
        Some(s) => (Some(s.public_hex()), Some(s.sign(&super::signing::message(tail.id, &hash, &made_at, reason)))),
        None => (None, None),
    };
    conn.execute(
        "INSERT INTO checkpoints (journal_id, hash, made_at, reason, public_key, signature)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![tail.id, hash, made_at, reason, public_key, signature],
    )?;
    Ok(())
}
