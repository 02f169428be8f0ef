//! The pages: campaigns, a campaign's live page and its stream, its experiments (and their export), an experiment,
//! a step, an exchange, the wire log, the plots, the record's health, and signing in.
//!
//! Each handler checks what the address asks for ([`super::filters`], [`super::view::id`]), reads on a blocking
//! thread ([`super::App::read`]) and draws a template; anything missing or malformed is an error page with its
//! status code, never a panic.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, Uri};
use axum::response::{Html, IntoResponse, Response};

use super::App;
use super::filters::{CampaignQuery, ExchangeQuery, ExperimentQuery, Fields, Paging, SortKey};
use super::health::VerifyFragment;
use super::live::{self, Frame, Sections};
use super::query::{self, CampaignLine, ExchangeDetail, ExperimentDetail, ExperimentTable, Facts, StepDetail, WireLog};
use super::view::{Chrome, PageError, Show, hex_dump, id, page};
use crate::inspect::report::Plot;

/// An option of a `<select>`.
pub struct Choice {
    /// Its value (empty for "any").
    pub value: String,
    /// Whether it is chosen.
    pub selected: bool,
}

/// The options `values`, preceded by an empty one for "any", with `chosen` selected.
fn choices<'a>(values: impl IntoIterator<Item = &'a str>, chosen: Option<&str>) -> Vec<Choice> {
    std::iter::once("")
        .chain(values)
        .map(|v| Choice { value: v.to_owned(), selected: chosen.unwrap_or_default() == v })
        .collect()
}

/// The number of pages `paging` makes of `matching` rows, and the links to the pages before and after this one.
fn pager(paging: Paging, matching: i64, href: impl Fn(u32) -> String) -> (i64, Option<String>, Option<String>) {
    let pages = paging.pages(matching);
    let page = i64::from(paging.page);
    (pages, (page > 1).then(|| href(paging.page - 1)), (page < pages).then(|| href(paging.page + 1)))
}

fn no_campaign(id: i64) -> PageError {
    PageError::NotFound(format!("the record has no campaign {id}; the campaigns page lists those it has"))
}

#[derive(Template)]
#[template(path = "campaigns.html")]
struct CampaignsPage {
    chrome: Chrome,
    /// With `--hub`: the workcells and what the last reading of the hub found.
    fleet: Option<super::fleet::FleetState>,
    rows: Vec<CampaignLine>,
    states: Vec<Choice>,
    search: String,
}

impl Show for CampaignsPage {}

/// `/`: every campaign of the record.
pub async fn campaigns(
    State(app): State<App>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let f = Fields::parse(q.as_deref());
    let CampaignQuery { status, search } = CampaignQuery::parse(&f)?;
    let db = app.reader().path().to_owned();
    let mut rows = app.read(move |c| query::campaigns(c, &db)).await?;
    rows.retain(|c| {
        status.as_deref().is_none_or(|s| c.status == s)
            && search.as_deref().is_none_or(|s| c.name.to_lowercase().contains(&s.to_lowercase()))
    });
    Ok(page(&CampaignsPage {
        chrome: app.chrome("Campaigns", &headers, None),
        fleet: app.fleet().map(|f| f.state()),
        rows,
        states: choices(["running", "finished", "aborted", "failed"], status.as_deref()),
        search: search.unwrap_or_default(),
    }))
}

#[derive(Template)]
#[template(path = "campaign.html")]
struct CampaignPage {
    chrome: Chrome,
    id: i64,
    name: String,
    sections: Sections,
    gantt_src: String,
    objective_src: String,
}

impl Show for CampaignPage {}

/// What the last action did, from the address an action sends the browser back to.
fn flash(f: &Fields) -> Option<String> {
    let request: i64 = f.get("sent")?.parse().ok()?;
    let action = f.get("action").filter(|a| matches!(*a, "pause" | "resume" | "abort" | "confirm" | "clear"))?;
    Some(format!(
        "Request {request} ({action}) is in the record; the controller carries it out within a second, and this page \
         shows it when it has."
    ))
}

async fn read_frame(app: &App, id: i64) -> Result<Frame, PageError> {
    let db = app.reader().path().to_owned();
    app.read(move |c| live::read_frame(c, &db, id)).await?.ok_or_else(|| no_campaign(id))
}

/// `/campaigns/ID`: the live page.
pub async fn campaign(
    State(app): State<App>,
    Path(segment): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = id("a campaign", &segment)?;
    let frame = read_frame(&app, id).await?;
    let mut chrome = app.chrome(format!("Campaign {id}: {}", frame.name), &headers, Some(id));
    chrome.live = Some(format!("/campaigns/{id}/live"));
    chrome.flash = flash(&Fields::parse(q.as_deref()));
    let sections = Sections::draw(&frame, chrome.signed_in, app.guard().csrf())
        .map_err(|e| PageError::Internal(format!("the page could not be drawn: {e}")))?;
    Ok(page(&CampaignPage {
        id,
        name: frame.name.clone(),
        gantt_src: live::gantt_src(id, 0),
        objective_src: live::objective_src(&frame),
        sections,
        chrome,
    }))
}

/// `/campaigns/ID/live`: the live page's stream of updates (server-sent events).
pub async fn live_stream(
    State(app): State<App>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = id("a campaign", &segment)?;
    let exists = app.read(move |c| crate::inspect::report::data::read_campaign(c, id)).await?.is_some();
    if !exists {
        return Err(no_campaign(id));
    }
    Ok(live::stream(app.hub(), id, app.may_act(&headers)).into_response())
}

/// A sortable column of the experiment table.
struct Header {
    label: String,
    href: String,
    active: bool,
    numeric: bool,
}

#[derive(Template)]
#[template(path = "experiments.html")]
struct ExperimentsPage {
    chrome: Chrome,
    t: ExperimentTable,
    q: ExperimentQuery,
    headers: Vec<Header>,
    states: Vec<Choice>,
    params: Vec<Choice>,
    instruments: Vec<Choice>,
    min: String,
    max: String,
    instrument: String,
    search: String,
    sort: String,
    pages: i64,
    prev: Option<String>,
    next: Option<String>,
}

impl Show for ExperimentsPage {}

/// `/campaigns/ID/experiments`: the experiment table, filtered, sorted and a page at a time.
pub async fn experiments(
    State(app): State<App>,
    Path(segment): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = id("a campaign", &segment)?;
    let q = ExperimentQuery::parse(&Fields::parse(raw.as_deref()))?;
    let query = q.clone();
    let t = app.read(move |c| query::experiments(c, id, &query)).await?.ok_or_else(|| no_campaign(id))?;
    let mut keys = vec![
        ("#".to_owned(), SortKey::Seq, true),
        ("status".to_owned(), SortKey::Status, false),
        (t.campaign.objective.clone(), SortKey::Objective, true),
    ];
    for (name, unit) in &t.parameters {
        let label = if unit.is_empty() || unit == "1" { name.clone() } else { format!("{name} ({unit})") };
        keys.push((label, SortKey::Parameter(name.clone()), true));
    }
    keys.push(("started".to_owned(), SortKey::Started, true));
    keys.push(("took".to_owned(), SortKey::Duration, true));
    let headers_row = keys
        .into_iter()
        .map(|(label, key, numeric)| {
            let active = key == q.sort;
            Header { href: q.href(Some(&key), Some(active && !q.descending), Some(1)), label, active, numeric }
        })
        .collect();
    let (pages, prev, next) = pager(q.paging, t.matching, |p| q.href(None, None, Some(p)));
    Ok(page(&ExperimentsPage {
        chrome: app.chrome(format!("Experiments of campaign {id}"), &headers, Some(id)),
        states: choices(["running", "succeeded", "failed"], q.status.as_deref()),
        params: choices(t.parameters.iter().map(|(n, _)| n.as_str()), q.parameter.as_deref()),
        instruments: choices(t.instruments.iter().map(String::as_str), q.instrument.as_deref()),
        min: q.min.map(|v| v.to_string()).unwrap_or_default(),
        max: q.max.map(|v| v.to_string()).unwrap_or_default(),
        instrument: q.instrument.clone().unwrap_or_default(),
        search: q.search.clone().unwrap_or_default(),
        sort: if q.sort == SortKey::Seq { String::new() } else { q.sort.name() },
        prev,
        next,
        pages,
        headers: headers_row,
        t,
        q,
    }))
}

/// `/campaigns/ID/experiments.csv`: the experiments that match the filters, every page, as CSV.
pub async fn export(
    State(app): State<App>,
    Path(segment): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let id = id("a campaign", &segment)?;
    let q = ExperimentQuery::parse(&Fields::parse(raw.as_deref()))?;
    let csv = app.read(move |c| query::experiments_csv(c, id, &q)).await?.ok_or_else(|| no_campaign(id))?;
    Ok((
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (CONTENT_DISPOSITION, format!("attachment; filename=\"campaign-{id}-experiments.csv\"")),
        ],
        csv,
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "experiment.html")]
struct ExperimentPage {
    chrome: Chrome,
    e: ExperimentDetail,
}

impl Show for ExperimentPage {}

/// `/campaigns/ID/experiments/SEQ`: one experiment, its proposal and its steps.
pub async fn experiment(
    State(app): State<App>,
    Path((campaign, seq)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let campaign = id("a campaign", &campaign)?;
    let seq = id("an experiment", &seq)?;
    let e = app.read(move |c| query::experiment(c, campaign, seq)).await?.ok_or_else(|| {
        PageError::NotFound(format!(
            "campaign {campaign} has no experiment #{seq} (or the record has no such campaign)"
        ))
    })?;
    Ok(page(&ExperimentPage { chrome: app.chrome(format!("Experiment #{seq}"), &headers, Some(campaign)), e }))
}

#[derive(Template)]
#[template(path = "step.html")]
struct StepPage {
    chrome: Chrome,
    s: StepDetail,
}

impl Show for StepPage {}

/// `/steps/ID`: one step, its states, the scheduler's decisions and its exchanges on the wire.
pub async fn step(
    State(app): State<App>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = id("a step", &segment)?;
    let s = app
        .read(move |c| query::step(c, id))
        .await?
        .ok_or_else(|| PageError::NotFound(format!("the record has no step {id}")))?;
    Ok(page(&StepPage { chrome: app.chrome(format!("Step {id}"), &headers, Some(s.campaign)), s }))
}

#[derive(Template)]
#[template(path = "exchange.html")]
struct ExchangePage {
    chrome: Chrome,
    x: ExchangeDetail,
    sent_hex: Vec<String>,
    received_hex: Vec<String>,
}

impl Show for ExchangePage {}

/// `/exchanges/ID`: one exchange on a wire, byte by byte.
pub async fn exchange(
    State(app): State<App>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = id("an exchange", &segment)?;
    let x = app
        .read(move |c| query::exchange(c, id))
        .await?
        .ok_or_else(|| PageError::NotFound(format!("the record has no exchange {id}")))?;
    Ok(page(&ExchangePage {
        chrome: app.chrome(format!("Exchange {id}"), &headers, Some(x.campaign)),
        sent_hex: hex_dump(&x.sent),
        received_hex: hex_dump(&x.received),
        x,
    }))
}

#[derive(Template)]
#[template(path = "exchanges.html")]
struct ExchangesPage {
    chrome: Chrome,
    w: WireLog,
    q: ExchangeQuery,
    instruments: Vec<Choice>,
    pages: i64,
    prev: Option<String>,
    next: Option<String>,
}

impl Show for ExchangesPage {}

/// `/campaigns/ID/exchanges`: the wire log, by instrument, a page at a time.
pub async fn exchanges(
    State(app): State<App>,
    Path(segment): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = id("a campaign", &segment)?;
    let q = ExchangeQuery::parse(&Fields::parse(raw.as_deref()))?;
    let query = q.clone();
    let w = app.read(move |c| query::exchanges(c, id, &query)).await?.ok_or_else(|| no_campaign(id))?;
    let (pages, prev, next) = pager(q.paging, w.matching, |p| q.href(p));
    Ok(page(&ExchangesPage {
        chrome: app.chrome(format!("Wire log of campaign {id}"), &headers, Some(id)),
        instruments: choices(w.instruments.iter().map(String::as_str), q.instrument.as_deref()),
        prev,
        next,
        pages,
        w,
        q,
    }))
}

#[derive(Template)]
#[template(path = "plots.html")]
struct PlotsPage {
    chrome: Chrome,
    id: i64,
    name: String,
    plots: Vec<(&'static str, &'static str)>,
}

impl Show for PlotsPage {}

/// `/campaigns/ID/plots`: the report's plots, drawn now.
pub async fn plots(
    State(app): State<App>,
    Path(segment): Path<String>,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let id = id("a campaign", &segment)?;
    let info =
        app.read(move |c| crate::inspect::report::data::read_campaign(c, id)).await?.ok_or_else(|| no_campaign(id))?;
    Ok(page(&PlotsPage {
        chrome: app.chrome(format!("Plots of campaign {id}"), &headers, Some(id)),
        id,
        name: info.name,
        plots: Plot::ALL.iter().map(|p| (p.name(), p.title())).collect(),
    }))
}

/// `/campaigns/ID/plots/NAME.svg`: one of the report's plots as SVG; `instruments.svg?recent=1` (the Gantt chart)
/// is the live page's window of a long campaign.
pub async fn plot(
    State(app): State<App>,
    Path((segment, file)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let id = id("a campaign", &segment)?;
    let plot = file.strip_suffix(".svg").and_then(|name| Plot::ALL.into_iter().find(|p| p.name() == name)).ok_or_else(
        || {
            let names: Vec<String> = Plot::ALL.iter().map(|p| format!("{}.svg", p.name())).collect();
            PageError::NotFound(format!("there is no plot `{file}`; the plots are {}", names.join(", ")))
        },
    )?;
    let steps = match plot {
        Plot::Gantt if Fields::parse(raw.as_deref()).get("recent") == Some("1") => live::Steps::Recent,
        Plot::Gantt => live::Steps::All,
        _ => live::Steps::None,
    };
    let svg = match plot {
        Plot::Objective | Plot::Gantt => {
            let data = app.read(move |c| live::plot_data(c, id, steps)).await?.ok_or_else(|| no_campaign(id))?;
            tokio::task::spawn_blocking(move || match plot {
                Plot::Gantt => Plot::gantt_svg_from(&data.0, data.1),
                _ => plot.svg(&data.0),
            })
            .await
        }
        Plot::Parameters | Plot::Predicted => {
            let data = app
                .read(move |c| crate::inspect::report::data::ReportData::read(c, Some(id)))
                .await?
                .ok_or_else(|| no_campaign(id))?;
            tokio::task::spawn_blocking(move || plot.svg(&data)).await
        }
    };
    match svg {
        Ok(Ok(svg)) => Ok(([(CONTENT_TYPE, "image/svg+xml")], svg).into_response()),
        Ok(Err(e)) => Err(PageError::Internal(format!("cannot draw the {} plot: {e}", plot.name()))),
        Err(e) => Err(PageError::Internal(format!("drawing the {} plot failed: {e}", plot.name()))),
    }
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    chrome: Chrome,
    f: Facts,
    path: String,
    mib: String,
    supported: usize,
    verify: String,
    more: bool,
}

impl Show for HealthPage {}

/// `/health`: the record's facts, its checkpoints, and `lab verify`'s result (`?again=1` verifies again).
pub async fn health(
    State(app): State<App>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    if let Some(fleet) = app.fleet() {
        return Ok(page(&FleetHealthPage {
            chrome: app.chrome("The fleet's records", &headers, None),
            fleet: fleet.state(),
        }));
    }
    let db = app.reader().path().to_owned();
    let path = db.display().to_string();
    let f = app.read(move |c| query::facts(c, &db)).await?;
    let again = Fields::parse(raw.as_deref()).get("again") == Some("1");
    let verify = verify_fragment(&app, again)?;
    Ok(page(&HealthPage {
        chrome: app.chrome("Record health", &headers, None),
        mib: format!("{:.1}", f.bytes as f64 / (1024.0 * 1024.0)),
        supported: crate::record::schema_version(),
        more: f.checkpoint_count > f.checkpoints.len() as i64,
        f,
        path,
        verify,
    }))
}

fn verify_fragment(app: &App, again: bool) -> Result<String, PageError> {
    let v = app.verifier().current(app.reader().path(), again);
    VerifyFragment::of(v, app.verifier().trusted())
        .render()
        .map_err(|e| PageError::Internal(format!("the verification could not be drawn: {e}")))
}

#[derive(Template)]
#[template(path = "fleet_health.html")]
struct FleetHealthPage {
    chrome: Chrome,
    fleet: super::fleet::FleetState,
}

impl Show for FleetHealthPage {}

/// `/health/verify`: `lab verify`'s result alone, which the health page fetches until it is done.
pub async fn verify(State(app): State<App>) -> Result<Response, PageError> {
    if app.fleet().is_some() {
        return Err(PageError::NotFound(
            "a fleet hub checks each journal row as it arrives; /health shows what it found".to_owned(),
        ));
    }
    Ok(Html(verify_fragment(&app, false)?).into_response())
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
}

impl Show for LoginPage {}

/// `/login`: a form to sign in with the token.
pub async fn login(State(app): State<App>, headers: HeaderMap) -> Response {
    page(&LoginPage { chrome: app.chrome("Sign in", &headers, None) })
}

/// Any other address.
pub async fn not_found(uri: Uri) -> PageError {
    let shown: String = uri.path().chars().take(120).collect();
    PageError::NotFound(format!("there is no page at {shown}"))
}
