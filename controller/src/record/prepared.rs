//! Statements prepared once per connection and reused for every event the record writes.

use rusqlite::{Connection, Statement};

/// The record's statements on one connection, each prepared the first time it is used and kept while the connection
/// is.
///
/// The writer runs a handful of statements hundreds of thousands of times. rusqlite's `prepare_cached` hashes the
/// whole SQL text on every use and again when the statement returns to its cache, which cost as much as some of the
/// inserts themselves. Every statement here is a string literal of the record's code, so the literal's address (with
/// its length) is enough to find its statement; a literal seen at a new address is prepared once more, which is
/// correct, merely not shared.
pub struct Prepared<'c> {
    conn: &'c Connection,
    statements: Vec<(&'static str, Statement<'c>)>,
}

impl<'c> Prepared<'c> {
    /// No statements yet, on `conn`.
    pub fn new(conn: &'c Connection) -> Self {
        Prepared { conn, statements: Vec::with_capacity(24) }
    }

    /// The statement for `sql`, prepared now if this is its first use.
    pub fn get(&mut self, sql: &'static str) -> rusqlite::Result<&mut Statement<'c>> {
        let i = match self.statements.iter().position(|(s, _)| std::ptr::eq(*s, sql)) {
            Some(i) => i,
            None => {
                self.statements.push((sql, self.conn.prepare(sql)?));
                self.statements.len() - 1
            }
        };
        Ok(&mut self.statements[i].1)
    }
}
