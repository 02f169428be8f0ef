//! The operator's actions from the pages: pause, resume, abort, confirm a step, clear a place, restock a bottle;
//! and signing in.
//!
//! An action is written exactly as `lab pause` writes it: one row of `operator_requests`, through
//! [`crate::run::operator::request`], with the operator's name and reason; the controller carries it out and records
//! what it did. Before anything is written the request must pass [`super::guard::Guard::check_action`] (the token's
//! cookie, the same origin, the form's anti-forgery value), and its fields and its campaign are checked; a request
//! that fails is refused with a page saying why, and the record is not touched.
//!
//! Restocking a bottle (`POST /campaigns/ID/restock`, the form in the live page's stock section) goes through
//! [`crate::run::operator::restock`], as `lab restock` does, which also refuses a bottle the running campaign does
//! not track.
//! A server of a fleet's hub takes no actions at all (`App::fleet`).

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{HeaderValue, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::OptionalExtension;

use super::App;
use super::view::{PageError, id};
use crate::schedule::bridge::{OperatorAction, Verdict};

/// A posted form's fields.
struct Form(std::collections::HashMap<String, String>);

impl Form {
    fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.trim().to_owned())).collect())
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// A field that must be given, at most `max` characters long.
    fn required(&self, name: &str, what: &str, max: usize) -> Result<String, PageError> {
        let v = self.get(name).ok_or_else(|| PageError::BadRequest(format!("say {what} (the form's `{name}`)")))?;
        if v.chars().count() > max || v.chars().any(char::is_control) {
            return Err(PageError::BadRequest(format!(
                "the form's `{name}` must be one line of at most {max} characters"
            )));
        }
        Ok(v.to_owned())
    }
}

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// Checks and writes an operator request for campaign `campaign`, then sends the browser back to its page.
async fn act(
    app: App,
    campaign: &str,
    headers: &HeaderMap,
    body: &[u8],
    make: impl FnOnce(&Form) -> Result<OperatorAction, PageError>,
) -> Result<Response, PageError> {
    if let Some(fleet) = app.fleet() {
        // The hub holds copies of the workcells' records, not a controller's requests: nothing is written anywhere.
        return Err(PageError::Conflict(format!(
            "this server shows the fleet hub {} and takes no actions: pause, resume, abort, confirm, clear and restock act on \
             one workcell's controller, from `lab serve --db lab.db` on that workcell's PC (or `lab pause` there); \
             a workcell lost for good is retired with `lab fleet retire`, and what it started settled with `lab \
             fleet settle`",
            fleet.hub()
        )));
    }
    let campaign = id("a campaign", campaign)?;
    let form = Form::parse(body);
    app.guard()
        .check_action(headers, form.get("csrf").unwrap_or_default())
        .map_err(|r| PageError::Forbidden(r.to_string()))?;
    let who = form.required("who", "who you are", 100)?;
    let reason = form.required("reason", "why", 500)?;
    let action = make(&form)?;
    let step = match &action {
        OperatorAction::Confirm { step, .. } => Some(*step),
        _ => None,
    };
    // The request goes to the campaign the controller runs (`operator::request` writes it for the latest running
    // one), so it is refused unless that is the campaign whose page sent it.
    let (running, step_campaign) = app
        .read(move |c| {
            let running: Option<i64> = c
                .query_row("SELECT max(id) FROM campaigns WHERE status = 'running'", [], |r| r.get(0))
                .optional()?
                .flatten();
            let step_campaign: Option<i64> = match step {
                None => None,
                Some(s) => c
                    .query_row(
                        "SELECT e.campaign_id FROM steps s JOIN experiments e ON e.id = s.experiment_id
                         WHERE s.id = ?1",
                        [s],
                        |r| r.get(0),
                    )
                    .optional()?,
            };
            Ok((running, step_campaign))
        })
        .await?;
    if running != Some(campaign) {
        return Err(PageError::Conflict(match running {
            None => format!("campaign {campaign} is not running (no campaign of this record is); nothing was sent"),
            Some(r) => format!("campaign {campaign} is not the one running (campaign {r} is); nothing was sent"),
        }));
    }
    if let Some(s) = step
        && step_campaign != Some(campaign)
    {
        return Err(PageError::NotFound(format!("campaign {campaign} has no step {s}; nothing was sent")));
    }
    let db: PathBuf = app.reader().path().to_owned();
    let name = action.name();
    let written = tokio::task::spawn_blocking(move || match action {
        OperatorAction::Restock { bottle, volume, absolute } => {
            crate::run::operator::restock(&db, &bottle, volume, absolute, &who, &reason)
        }
        action => crate::run::operator::request(&db, &action, &who, &reason),
    })
    .await;
    match written {
        Ok(Ok((request, _))) => Ok(see_other(&format!("/campaigns/{campaign}?sent={request}&action={name}"))),
        Ok(Err(e)) => Err(PageError::Conflict(format!("the request could not be written: {e}"))),
        Err(e) => Err(PageError::Internal(format!("writing the request failed: {e}"))),
    }
}

/// `POST /campaigns/ID/pause`.
pub async fn pause(State(app): State<App>, Path(c): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    act(app, &c, &headers, &body, |_| Ok(OperatorAction::Pause)).await.into_response()
}

/// `POST /campaigns/ID/resume`.
pub async fn resume(State(app): State<App>, Path(c): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    act(app, &c, &headers, &body, |_| Ok(OperatorAction::Resume)).await.into_response()
}

/// `POST /campaigns/ID/abort`: needs the form's "stop now" box ticked.
pub async fn abort(State(app): State<App>, Path(c): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    act(app, &c, &headers, &body, |f| match f.get("sure") {
        Some("yes") => Ok(OperatorAction::Abort),
        _ => Err(PageError::BadRequest("tick \"stop now\" to abort; nothing was sent".to_owned())),
    })
    .await
    .into_response()
}

/// `POST /campaigns/ID/steps/STEP/confirm`: a verdict on a step in doubt.
pub async fn confirm(
    State(app): State<App>,
    Path((c, step)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let step = match id("a step", &step) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    act(app, &c, &headers, &body, |f| {
        let verdict = f.get("verdict").and_then(Verdict::parse).ok_or_else(|| {
            PageError::BadRequest("say what happened: the form's `verdict` is done, not_done or failed".to_owned())
        })?;
        let place = match f.get("vessel_at") {
            None => None,
            Some(_) => Some(f.required("vessel_at", "where the vessel is", 100)?),
        };
        Ok(OperatorAction::Confirm { step, verdict, place })
    })
    .await
    .into_response()
}

/// `POST /campaigns/ID/clear`: a blocked deck place is empty.
pub async fn clear(State(app): State<App>, Path(c): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    act(app, &c, &headers, &body, |f| Ok(OperatorAction::Clear { place: f.required("place", "the place", 100)? }))
        .await
        .into_response()
}

/// `POST /campaigns/ID/restock`: a bottle was topped up by a volume, or (the form's "set" box) now holds it.
pub async fn restock(State(app): State<App>, Path(c): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    act(app, &c, &headers, &body, |f| {
        let bottle = f.required("bottle", "which bottle", 100)?;
        let text = f.required("volume", "the volume", 40)?;
        let volume = crate::run::operator::restock_volume(&text)
            .map_err(|e| PageError::BadRequest(format!("{e}; nothing was sent")))?;
        if !(volume.is_finite() && volume >= 0.0) {
            return Err(PageError::BadRequest(format!(
                "`{text}` is negative: a restock adds liquid (or says how much is there); nothing was sent"
            )));
        }
        Ok(OperatorAction::Restock { bottle, volume, absolute: f.get("set") == Some("yes") })
    })
    .await
    .into_response()
}

/// `POST /login`: signs the browser in with the token typed into the form.
pub async fn login(State(app): State<App>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let guard = app.guard();
    if !form.get("token").is_some_and(|t| guard.is_token(t)) {
        return PageError::Forbidden(
            "that is not this server's token: copy it from the link `lab serve` printed when it started".to_owned(),
        )
        .into_response();
    }
    let mut r = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&guard.sign_in_cookie()) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}

/// `POST /logout`: forgets the browser's sign-in.
pub async fn logout(State(app): State<App>) -> Response {
    let mut r = see_other("/");
    if let Ok(v) = HeaderValue::from_str(&app.guard().sign_out_cookie()) {
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}
