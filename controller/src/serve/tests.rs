//! The server's routes on real records, in process: every page answers, bad input of every kind gets a clear page
//! and status code, the record is never written except by an accepted action, and an action is refused unless it
//! carries the token, the anti-forgery value and the same origin. (The browser tests, `controller/tests/serve.rs`,
//! drive the same pages in Chromium on a running campaign.)

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::guard::Guard;
use super::{App, router};

const TOKEN: &str = "test-token";
const PORT: u16 = 8765;

/// A record of a small simulated run (`lab bench load` in miniature): one campaign of 30 experiments, left
/// `running` (a benchmark never finishes its campaign row), with no controller holding it.
fn finished_record(dir: &Path) -> PathBuf {
    let db = dir.join("lab.db");
    crate::plan::bench::load(10, 30, 6, &db).expect("the load run records");
    db
}

/// A record whose latest campaign is running (no controller holds it): what actions apply to.
fn running_record(dir: &Path) -> PathBuf {
    let db = finished_record(dir);
    let mut record = crate::record::Record::open(&db).expect("the record opens");
    record.begin_campaign(&crate::record::CampaignRow::bench()).expect("a second campaign starts");
    db
}

struct Server {
    app: App,
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Server {
    fn new(db: &Path) -> Server {
        let guard = Guard::with_token(TOKEN.to_owned(), PORT, true, false).expect("a guard");
        Server { app: App::new(db, guard, None) }
    }

    async fn send(&self, req: Request<Body>) -> Reply {
        let r = router(self.app.clone()).oneshot(req).await.expect("the router answers");
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.into_body().collect().await.expect("the body").to_bytes();
        Reply { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
    }

    fn request(method: &str, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("host", format!("127.0.0.1:{PORT}"))
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))))
    }

    async fn get(&self, uri: &str) -> Reply {
        self.send(Self::request("GET", uri).body(Body::empty()).expect("a request")).await
    }

    /// Posts a form as a signed-in browser on the server's own page would.
    async fn post(&self, uri: &str, form: &str) -> Reply {
        let req = Self::request("POST", uri)
            .header("cookie", format!("lab_token_{PORT}={TOKEN}"))
            .header("origin", format!("http://127.0.0.1:{PORT}"))
            .header("sec-fetch-site", "same-origin")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .expect("a request");
        self.send(req).await
    }

    fn csrf(&self) -> String {
        self.app.guard().csrf().to_owned()
    }
}

fn requests(db: &Path) -> Vec<(String, String, String)> {
    let conn = crate::inspect::report::open_read_only(db).expect("the record");
    let mut stmt = conn.prepare("SELECT action, who, reason FROM operator_requests ORDER BY id").expect("a query");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).expect("rows").map(Result::unwrap).collect()
}

fn file_digest(path: &Path) -> String {
    crate::record::sha256_hex(&std::fs::read(path).unwrap_or_default())
}

#[tokio::test]
async fn every_page_answers_on_a_real_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_record(dir.path());
    let s = Server::new(&db);
    let step: i64 = crate::inspect::report::open_read_only(&db)
        .unwrap()
        .query_row("SELECT min(id) FROM steps", [], |r| r.get(0))
        .unwrap();
    for (uri, must_show) in [
        ("/", "bench"),
        ("/?status=running&q=ben", "bench"),
        ("/campaigns/1", "Operator actions"),
        ("/campaigns/1/experiments", "30 of 30 experiments match"),
        ("/campaigns/1/experiments?status=succeeded&sort=duration&dir=desc&per=5&page=2", "page 2 of"),
        ("/campaigns/1/experiments?q=%2312", "1 of 30 experiments match"),
        ("/campaigns/1/experiments/12", "Experiment #12"),
        (&format!("/steps/{step}"), "States and times"),
        ("/campaigns/1/exchanges", "0 exchanges"),
        ("/campaigns/1/plots", "Instruments over lab time"),
        ("/health", "Checkpoints"),
        ("/health/verify", "data-done"),
        ("/login", "Sign in to act"),
        ("/assets/style.css", "--vermilion"),
        ("/assets/lab.js", "EventSource"),
    ] {
        let r = s.get(uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        assert!(r.body.contains(must_show), "{uri} shows `{must_show}`");
        assert!(r.headers.contains_key("content-security-policy"), "{uri}");
        assert_eq!(r.headers["referrer-policy"], "same-origin");
    }
    for plot in ["instruments.svg?recent=1", "instruments.svg", "objective.svg", "parameters.svg", "predicted.svg"] {
        let r = s.get(&format!("/campaigns/1/plots/{plot}")).await;
        assert_eq!(r.status, StatusCode::OK, "{plot}: {}", r.body);
        assert_eq!(r.headers["content-type"], "image/svg+xml");
        assert!(r.body.starts_with("<svg"), "{plot}");
    }
    let csv = s.get("/campaigns/1/experiments.csv?status=succeeded").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-disposition"].to_str().unwrap().contains("campaign-1-experiments.csv"));
    assert_eq!(csv.body.lines().count(), 31, "a header and one line per experiment");
}

#[tokio::test]
async fn bad_input_gets_a_clear_page_and_status_and_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_record(dir.path());
    let before = file_digest(&db);
    let s = Server::new(&db);
    for (uri, status, says) in [
        ("/campaigns/999", StatusCode::NOT_FOUND, "no campaign 999"),
        ("/campaigns/abc", StatusCode::BAD_REQUEST, "is not a campaign id"),
        ("/campaigns/1/experiments/99999", StatusCode::NOT_FOUND, "no experiment #99999"),
        ("/campaigns/1/experiments/-4", StatusCode::BAD_REQUEST, "is not an experiment id"),
        ("/steps/999999999", StatusCode::NOT_FOUND, "no step 999999999"),
        ("/exchanges/99999999999999999999", StatusCode::BAD_REQUEST, "is not an exchange id"),
        ("/campaigns/1/experiments?per=1000000", StatusCode::BAD_REQUEST, "`per`"),
        ("/campaigns/1/experiments?page=0", StatusCode::BAD_REQUEST, "`page`"),
        ("/campaigns/1/experiments?sort=objective%3Bdrop%20table%20steps", StatusCode::BAD_REQUEST, "`sort`"),
        ("/campaigns/1/experiments?param=x&min=2&max=1", StatusCode::BAD_REQUEST, "`min`"),
        ("/campaigns/1/exchanges?per=501", StatusCode::BAD_REQUEST, "from 1 to 500"),
        ("/?status=exploded", StatusCode::BAD_REQUEST, "`status`"),
        ("/campaigns/1/plots/..%2F..%2Flab.db", StatusCode::NOT_FOUND, "no plot"),
        ("/campaigns/1/plots/secret.svg", StatusCode::NOT_FOUND, "no plot"),
        ("/assets/../../etc/passwd", StatusCode::NOT_FOUND, "no page"),
        ("/assets/%2e%2e/%2e%2e/etc/passwd", StatusCode::NOT_FOUND, "no page"),
        ("/campaigns/%2e%2e/experiments", StatusCode::BAD_REQUEST, "is not a campaign id"),
        ("/nothing/here", StatusCode::NOT_FOUND, "no page at /nothing/here"),
    ] {
        let r = s.get(uri).await;
        assert_eq!(r.status, status, "{uri}: {}", r.body);
        assert!(r.body.contains(says), "{uri} says `{says}`: {}", r.body);
        assert!(r.body.contains("<!doctype html>"), "{uri} is a page");
    }
    // A query that cannot be decoded as text is still only a query.
    assert_eq!(s.get("/campaigns/1/experiments?q=%FF%FE").await.status, StatusCode::OK);
    assert_eq!(s.get("/campaigns/1/pause").await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(file_digest(&db), before, "reading changed the record");
}

#[tokio::test]
async fn a_file_that_is_not_a_record_or_is_newer_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "not a database at all, just some notes\n".repeat(200)).unwrap();
    let newer = dir.path().join("newer.db");
    rusqlite::Connection::open(&newer).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute("CREATE TABLE t (x)", []).unwrap();
    for (file, says) in [
        (&text, "is not a lab record"),
        (&newer, "schema version 99, newer than this lab"),
        (&other, "it has no lab schema version"),
    ] {
        let before = file_digest(file);
        let err = super::record::open(file).expect_err("refused");
        assert!(err.to_string().contains(says), "{err}");
        let r = Server::new(file).get("/").await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert!(r.body.contains(says), "{}", r.body);
        assert_eq!(file_digest(file), before, "{} was changed", file.display());
    }
    let missing = super::record::open(&dir.path().join("missing.db")).expect_err("refused");
    assert!(missing.to_string().contains("there is no record at"), "{missing}");
    assert!(!dir.path().join("missing.db").exists(), "nothing was created");
    let opts = super::ServeOptions {
        db: text.clone(),
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        allow_remote: false,
        tls: None,
        hub: None,
        public_key: None,
    };
    let refused = super::serve(&opts, |_| panic!("must not listen")).expect_err("refused");
    assert!(refused.to_string().contains("is not a lab record"), "{refused}");
}

#[tokio::test]
async fn a_record_held_by_a_controller_is_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_record(dir.path());
    // The controller's lock and an open writer connection (WAL): readers are neither blocked nor refused.
    let _held = crate::record::Record::open(&db).expect("the controller's side opens the record");
    assert!(crate::record::in_use(&db));
    let r = Server::new(&db).get("/campaigns/1/experiments/3").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

#[tokio::test]
async fn actions_need_the_token_the_form_value_and_the_same_origin() {
    let dir = tempfile::tempdir().unwrap();
    let db = running_record(dir.path());
    let s = Server::new(&db);
    let csrf = s.csrf();
    let form = format!("csrf={csrf}&who=Ada+Lovelace&reason=refilling+B");
    let refused = |r: &Reply, what: &str| {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
        assert!(r.body.contains("nothing was changed"), "{what}");
    };
    let post = |headers: Vec<(&'static str, String)>, body: String| {
        let mut req =
            Server::request("POST", "/campaigns/2/pause").header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.body(Body::from(body)).unwrap()
    };
    let cookie = ("cookie", format!("lab_token_{PORT}={TOKEN}"));
    refused(&s.send(post(vec![], form.clone())).await, "no cookie");
    refused(&s.send(post(vec![("cookie", format!("lab_token_{PORT}=guess"))], form.clone())).await, "a wrong token");
    refused(&s.send(post(vec![cookie.clone()], form.replace(&csrf, "guess"))).await, "a forged form");
    refused(&s.send(post(vec![cookie.clone()], form.replace(&format!("csrf={csrf}&"), ""))).await, "no form value");
    refused(
        &s.send(post(vec![cookie.clone(), ("origin", "http://evil.example".into())], form.clone())).await,
        "another site's page",
    );
    refused(
        &s.send(post(vec![cookie.clone(), ("sec-fetch-site", "cross-site".into())], form.clone())).await,
        "a cross-site request",
    );
    let mut evil_host = post(vec![cookie.clone()], form.clone());
    evil_host.headers_mut().insert("host", "lab.evil.example".parse().unwrap());
    refused(&s.send(evil_host).await, "a name pointed at this machine");
    assert!(requests(&db).is_empty(), "nothing was written");

    // Well-formed but wrong: clear pages, nothing written.
    for (uri, body, status) in [
        ("/campaigns/2/pause", format!("csrf={csrf}&reason=x"), StatusCode::BAD_REQUEST),
        ("/campaigns/2/pause", format!("csrf={csrf}&who=Ada%0AForged&reason=x"), StatusCode::BAD_REQUEST),
        ("/campaigns/2/abort", form.clone(), StatusCode::BAD_REQUEST),
        ("/campaigns/1/pause", form.clone(), StatusCode::CONFLICT),
        ("/campaigns/2/steps/1/confirm", format!("{form}&verdict=done"), StatusCode::NOT_FOUND),
        ("/campaigns/2/steps/1/confirm", form.clone(), StatusCode::BAD_REQUEST),
        ("/campaigns/x/pause", form.clone(), StatusCode::BAD_REQUEST),
    ] {
        let r = s.post(uri, &body).await;
        assert_eq!(r.status, status, "{uri} {body}: {}", r.body);
    }
    assert!(requests(&db).is_empty(), "nothing was written");

    let r = s.post("/campaigns/2/pause", &form).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers["location"], "/campaigns/2?sent=1&action=pause");
    let r = s.post("/campaigns/2/abort", &format!("{form}&sure=yes")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let written = requests(&db);
    assert_eq!(
        written,
        vec![
            ("pause".to_owned(), "Ada Lovelace".to_owned(), "refilling B".to_owned()),
            ("abort".to_owned(), "Ada Lovelace".to_owned(), "refilling B".to_owned()),
        ]
    );
    let page = s.get("/campaigns/2?sent=1&action=pause").await;
    assert!(page.body.contains("Request 1 (pause) is in the record"), "{}", page.body);
}

#[tokio::test]
async fn the_printed_link_signs_in_and_other_machines_need_it_to_look() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_record(dir.path());
    let s = Server::new(&db);
    let r = s.get(&format!("/campaigns/1/experiments?token={TOKEN}&status=succeeded")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/campaigns/1/experiments?status=succeeded", "the token leaves the address");
    let cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with(&format!("lab_token_{PORT}={TOKEN};")) && cookie.contains("HttpOnly"), "{cookie}");
    let wrong = s.get("/?token=guess").await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert!(wrong.headers.get("set-cookie").is_none());

    let remote = |cookie: Option<&str>| {
        let mut req = Request::builder()
            .uri("/campaigns/1")
            .header("host", format!("127.0.0.1:{PORT}"))
            .extension(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.body(Body::empty()).unwrap()
    };
    assert_eq!(s.send(remote(None)).await.status, StatusCode::UNAUTHORIZED);
    let signed = s.send(remote(Some(&format!("lab_token_{PORT}={TOKEN}")))).await;
    assert_eq!(signed.status, StatusCode::OK);
    assert!(signed.body.contains("form-pause") || signed.body.contains("has ended"), "signed in: the actions show");
    let page = s.get("/campaigns/1").await;
    assert!(!page.body.contains(&s.csrf()), "a browser that has not signed in never sees the form value");
}

#[tokio::test]
async fn the_live_stream_sends_the_page_sections() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_record(dir.path());
    let s = Server::new(&db);
    let r = router(s.app.clone()).oneshot(Server::request("GET", "/campaigns/1/live").body(Body::empty()).unwrap());
    let r = r.await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.into_body();
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("a frame within ten seconds")
        .expect("the stream is open")
        .expect("a frame");
    let text = String::from_utf8_lossy(frame.data_ref().expect("data")).into_owned();
    assert!(text.starts_with("event: frame\ndata: {"), "{text}");
    let json: serde_json::Value = serde_json::from_str(text.trim_start_matches("event: frame\ndata: ").trim()).unwrap();
    for id in ["live-summary", "live-actions", "live-instruments", "live-inflight", "live-doubt", "live-warnings"] {
        assert!(json["sections"][id].is_string(), "{id} in {json}");
    }
    assert!(json["sections"]["live-stock"].is_null(), "no stock section for a record without stock");
    assert_eq!(s.get("/campaigns/7/live").await.status, StatusCode::NOT_FOUND);
}

#[test]
fn a_stock_section_appears_only_where_stock_is_tracked() {
    let dir = tempfile::tempdir().unwrap();
    let db = finished_record(dir.path());
    let reader = super::record::Reader::new(&db);
    let mut frame = super::live::frame(&reader, 1).unwrap().expect("campaign 1");
    let none = super::live::Sections::draw(&frame, false, "").unwrap();
    assert!(none.stock.is_none());
    frame.stock = Some(vec![super::live::StockLevel {
        reagent: "catalyst C1".into(),
        source: "valve_1 port 3".into(),
        left: 12.5,
        reserved: 2.0,
        unit: "mL".into(),
        low: true,
    }]);
    let some = super::live::Sections::draw(&frame, false, "").unwrap();
    let stock = some.stock.expect("a stock section");
    assert!(stock.contains("catalyst C1") && stock.contains("12.5 mL"), "{stock}");
}

/// A running record whose campaign tracks two bottles: a catalyst on a valve's port with 4.8 mL left of which
/// 0.3 mL is reserved, and a base in a pump's own reservoir with less left than experiments reserved.
fn record_with_stock(dir: &Path) -> PathBuf {
    let db = running_record(dir);
    let mut record = crate::record::Record::open(&db).expect("the record opens");
    let stock = |at: f64, bottle: &str, reagent: &str, kind: &str, volume: f64, experiment, left| {
        crate::record::RecordEvent::Stock {
            campaign: 2,
            at,
            bottle: bottle.into(),
            reagent: reagent.into(),
            kind: kind.into(),
            volume,
            experiment,
            step: None,
            unknown: false,
            left,
            note: String::new(),
        }
    };
    record
        .write(&[
            stock(0.0, "valve:2", "C1", "declared", 5000.0, None, Some(5000.0)),
            stock(0.0, "pump_b", "base", "declared", 800.0, None, Some(800.0)),
            stock(1.0, "valve:2", "C1", "reserved", 500.0, Some(1), None),
            stock(1.0, "pump_b", "base", "reserved", 900.0, Some(2), None),
            stock(2.0, "valve:2", "C1", "drawn", 200.0, Some(1), Some(4800.0)),
        ])
        .expect("the stock is recorded");
    drop(record);
    db
}

#[tokio::test]
async fn stock_is_shown_and_a_bottle_is_restocked_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = record_with_stock(dir.path());
    let s = Server::new(&db);
    let signed_in = s
        .send(
            Server::request("GET", "/campaigns/2")
                .header("cookie", format!("lab_token_{PORT}={TOKEN}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::OK);
    let page = &signed_in.body;
    assert!(page.contains("Reagent stock"), "{page}");
    for shown in ["C1", "valve:2", "4.8 mL", "0.3 mL", "base", "0.8 mL", "0.9 mL", "/campaigns/2/restock"] {
        assert!(page.contains(shown), "the page shows {shown}: {page}");
    }
    assert!(page.contains(r#"<tr class="offline"><td>base</td>"#), "the base runs low: {page}");
    assert!(page.contains(r#"<tr class=""><td>C1</td>"#), "the catalyst does not: {page}");
    let anonymous = s.get("/campaigns/2").await;
    assert!(anonymous.body.contains("4.8 mL") && !anonymous.body.contains("/campaigns/2/restock"));

    let csrf = s.csrf();
    let form = format!("csrf={csrf}&who=Ada+Lovelace&reason=new+bottle");
    for (body, status, why) in [
        (format!("{form}&bottle=valve%3A7&volume=10+mL"), StatusCode::CONFLICT, "tracks no bottle"),
        (format!("{form}&bottle=valve%3A2&volume=-5+mL"), StatusCode::BAD_REQUEST, "negative"),
        (format!("{form}&bottle=valve%3A2&volume=3+s"), StatusCode::BAD_REQUEST, "not a volume"),
        (format!("{form}&bottle=valve%3A2&volume=lots"), StatusCode::BAD_REQUEST, "not a volume"),
        (format!("{form}&bottle=valve%3A2"), StatusCode::BAD_REQUEST, "the volume"),
        (format!("{form}&volume=10+mL"), StatusCode::BAD_REQUEST, "which bottle"),
    ] {
        let r = s.post("/campaigns/2/restock", &body).await;
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body.contains(why), "{body}: {}", r.body);
    }
    let unsigned = Server::request("POST", "/campaigns/2/restock")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("{form}&bottle=valve%3A2&volume=10+mL")))
        .unwrap();
    assert_eq!(s.send(unsigned).await.status, StatusCode::FORBIDDEN);
    assert!(requests(&db).is_empty(), "nothing was written");

    let r = s.post("/campaigns/2/restock", &format!("{form}&bottle=valve%3A2&volume=10+mL")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.headers["location"], "/campaigns/2?sent=1&action=restock");
    let r = s.post("/campaigns/2/restock", &format!("{form}&bottle=C1&volume=250+uL&set=yes")).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let conn = crate::inspect::report::open_read_only(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT campaign_id, action, place, volume, absolute, who FROM operator_requests ORDER BY id")
        .unwrap();
    let rows: Vec<(i64, String, String, f64, i64, String)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let ada = "Ada Lovelace".to_owned();
    assert_eq!(
        rows,
        vec![
            (2, "restock".into(), "valve:2".into(), 10_000.0, 0, ada.clone()),
            (2, "restock".into(), "C1".into(), 250.0, 1, ada),
        ]
    );
}
