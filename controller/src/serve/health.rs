//! The record's health: `lab verify`'s result, the head of the hash chain, and the checkpoints with their signatures.
//!
//! Verifying replays the whole journal (seconds on a week-long record), so it runs on its own thread, once at a time,
//! and its result is kept until someone asks again; the page shows the facts at once and fetches the result when it
//! is ready. Verifying reads the record in one read-only snapshot, so it never holds up the controller.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use askama::Template;
use ed25519_dalek::VerifyingKey;

use super::view::Show;
use crate::record::verify::{Report, verify_with};

/// Where a verification stands.
#[derive(Debug, Clone)]
pub enum Verification {
    /// Running since then.
    Running(Instant),
    /// Done.
    Done(Box<Report>),
    /// It could not run (the record could not be read).
    Failed(String),
}

/// The latest verification, shared by the server's requests.
#[derive(Clone)]
pub struct Verifier {
    state: Arc<Mutex<Option<Verification>>>,
    trusted: Option<VerifyingKey>,
}

impl Verifier {
    /// A verifier that also checks every checkpoint against `trusted`, if given.
    pub fn new(trusted: Option<VerifyingKey>) -> Verifier {
        Verifier { state: Arc::new(Mutex::new(None)), trusted }
    }

    /// The latest verification; starts one if none has run, or if `again` and none is running now.
    pub fn current(&self, db: &std::path::Path, again: bool) -> Verification {
        let Ok(mut state) = self.state.lock() else {
            return Verification::Failed("the server's verifier failed earlier; restart lab serve".to_owned());
        };
        let start = match &*state {
            None => true,
            Some(Verification::Running(_)) => false,
            Some(_) => again,
        };
        if start {
            *state = Some(Verification::Running(Instant::now()));
            let (shared, db, trusted) = (Arc::clone(&self.state), db.to_owned(), self.trusted);
            let spawned = std::thread::Builder::new().name("lab-serve-verify".into()).spawn(move || {
                let result = match verify_with(&db, trusted.as_ref()) {
                    Ok(r) => Verification::Done(Box::new(r)),
                    Err(e) => Verification::Failed(e),
                };
                if let Ok(mut s) = shared.lock() {
                    *s = Some(result);
                }
            });
            if let Err(e) = spawned {
                *state = Some(Verification::Failed(format!("cannot start the verification: {e}")));
            }
        }
        state.clone().unwrap_or_else(|| Verification::Failed("no verification".to_owned()))
    }

    /// Whether checkpoints are checked against a trusted key.
    pub fn trusted(&self) -> bool {
        self.trusted.is_some()
    }
}

/// How a verification is shown.
pub enum VerifyState {
    /// Running for this many seconds.
    Running(u64),
    /// It could not run.
    Failed(String),
    /// Its result.
    Done(Box<Report>),
}

/// The verification's part of the health page, also served alone while the page waits for it.
#[derive(Template)]
#[template(path = "verify.html")]
pub struct VerifyFragment {
    /// Where it stands.
    pub state: VerifyState,
    /// Whether a trusted key was given.
    pub trusted: bool,
}

impl Show for VerifyFragment {}

impl VerifyFragment {
    /// The fragment for a verification.
    pub fn of(v: Verification, trusted: bool) -> VerifyFragment {
        let state = match v {
            Verification::Running(since) => VerifyState::Running(since.elapsed().as_secs()),
            Verification::Done(r) => VerifyState::Done(r),
            Verification::Failed(e) => VerifyState::Failed(e),
        };
        VerifyFragment { state, trusted }
    }
}
