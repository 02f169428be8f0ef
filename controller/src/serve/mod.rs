//! `lab serve`: the lab in a browser. A live view of each campaign and a browser for the whole record, served from
//! the record itself, with the operator's actions on the same requests as the command line.
//!
//! The server only reads `lab.db` (read-only connections, [`record`]), so it works beside a running controller and
//! costs it nothing but the reads. The one thing a browser can change is the list of operator requests, through
//! [`crate::run::operator::request`], as `lab pause` does; the controller carries each out and records who asked and
//! why. [`guard`] says who may look and who may act. Pages are askama templates compiled into the binary, their
//! style and script are embedded ([`assets`]), and nothing is loaded from elsewhere.
//!
//! With `--hub URL` it serves every workcell of a fleet at once: [`fleet`] keeps a private copy of the hub's record
//! of every fleet campaign, shaped like `lab.db`, and the same pages read it; the actions, which act on one
//! controller through its own `lab.db`, are refused there with where to act instead.
//!
//! The parts: [`filters`] checks query strings, [`query`] reads the browsing pages' data, [`live`] the live page's
//! and its update stream, [`health`] runs `lab verify`, [`view`] is what every page shares, [`pages`] and
//! [`actions`] are the handlers, and [`bench`] measures the server (`lab bench serve`).

pub mod actions;
pub mod assets;
pub mod bench;
pub mod filters;
pub mod fleet;
pub mod guard;
pub mod health;
pub mod live;
pub mod pages;
pub mod query;
pub mod record;
pub mod view;

#[cfg(test)]
mod tests;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CACHE_CONTROL, HeaderValue, LOCATION, SET_COOKIE};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use guard::Guard;
use record::{Reader, RecordProblem};
use view::{Chrome, PageError};

/// How to serve a record.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The record.
    pub db: PathBuf,
    /// A fleet's hub (a postgresql:// URL) to serve instead of `db`: every workcell's record at once.
    pub hub: Option<String>,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Whether listening on an address other machines can reach was asked for.
    pub allow_remote: bool,
    /// A certificate chain and its private key (PEM), to serve over TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// A public key every checkpoint's signature is checked against on the health page.
    pub public_key: Option<String>,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The record cannot be served.
    #[error(transparent)]
    Record(#[from] RecordProblem),
    /// Listening beyond this machine was not asked for.
    #[error(
        "{0} can be reached from other machines, and the pages let whoever holds the token pause and abort \
         campaigns; add --allow-remote if that is what you want (and --tls-cert/--tls-key, so the token never \
         crosses the network in clear)"
    )]
    Remote(SocketAddr),
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The certificate or its key cannot be used.
    #[error("cannot use the TLS certificate {cert} with key {key}: {message}")]
    Tls {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// The public key cannot be read.
    #[error("{0}")]
    PublicKey(String),
    /// The hub cannot be read.
    #[error(transparent)]
    Hub(#[from] crate::fleet::FleetError),
    /// The runtime failed.
    #[error("the server failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the server listens, once it does.
#[derive(Debug, Clone)]
pub struct Listening {
    /// The address it listens on (with the port the system chose, for port 0).
    pub addr: SocketAddr,
    /// The address to open, with the token.
    pub url: String,
    /// Whether other machines can reach it.
    pub remote: bool,
    /// Whether it serves TLS.
    pub tls: bool,
}

/// Everything the handlers share.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    reader: Reader,
    guard: Guard,
    hub: live::Hub,
    verifier: health::Verifier,
    fleet: Option<fleet::FleetView>,
}

impl App {
    /// The server's state for the record at `db`.
    pub fn new(db: &Path, guard: Guard, trusted: Option<ed25519_dalek::VerifyingKey>) -> App {
        let reader = Reader::new(db);
        let hub = live::Hub::new(reader.clone(), guard.csrf());
        App { inner: Arc::new(AppInner { reader, guard, hub, verifier: health::Verifier::new(trusted), fleet: None }) }
    }

    /// The server's state for a fleet's hub, whose copy `view` keeps at `copy`.
    pub fn for_fleet(copy: &Path, guard: Guard, view: fleet::FleetView) -> App {
        let reader = Reader::new(copy);
        let hub = live::Hub::new(reader.clone(), guard.csrf());
        let verifier = health::Verifier::new(None);
        App { inner: Arc::new(AppInner { reader, guard, hub, verifier, fleet: Some(view) }) }
    }

    /// The fleet's hub this server shows, if it shows one rather than a `lab.db`.
    pub fn fleet(&self) -> Option<&fleet::FleetView> {
        self.inner.fleet.as_ref()
    }

    /// Whether the browser that sent `headers` may act: signed in with the token, on a server of a `lab.db` (a hub's
    /// copy takes no actions).
    pub fn may_act(&self, headers: &axum::http::HeaderMap) -> bool {
        self.inner.fleet.is_none() && self.inner.guard.signed_in(headers)
    }

    /// The record's reader.
    pub fn reader(&self) -> &Reader {
        &self.inner.reader
    }

    /// The token and its rules.
    pub fn guard(&self) -> &Guard {
        &self.inner.guard
    }

    /// The live pages' streams.
    pub fn hub(&self) -> &live::Hub {
        &self.inner.hub
    }

    /// The record's verification.
    pub fn verifier(&self) -> &health::Verifier {
        &self.inner.verifier
    }

    /// Runs `f` on a read-only connection on tokio's blocking threads (SQLite is synchronous).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, PageError> {
        let reader = self.inner.reader.clone();
        match tokio::task::spawn_blocking(move || reader.with(f)).await {
            Ok(r) => r.map_err(PageError::from),
            Err(e) => Err(PageError::Internal(format!("a read of the record failed: {e}"))),
        }
    }

    /// The frame of a page titled `title`, for the browser that sent `headers`.
    pub fn chrome(&self, title: impl Into<String>, headers: &axum::http::HeaderMap, campaign: Option<i64>) -> Chrome {
        let signed_in = self.may_act(headers);
        let fleet = self.inner.fleet.as_ref().map(|f| f.hub().to_owned());
        Chrome {
            title: title.into(),
            record: match &fleet {
                Some(hub) => format!("fleet hub {hub}"),
                None => self.inner.reader.path().file_name().map_or_else(String::new, |f| f.to_string_lossy().into()),
            },
            fleet,
            signed_in,
            csrf: if signed_in { self.inner.guard.csrf().to_owned() } else { String::new() },
            campaign,
            live: None,
            flash: None,
        }
    }
}

/// The server's routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(pages::campaigns))
        .route("/campaigns/{id}", get(pages::campaign))
        .route("/campaigns/{id}/live", get(pages::live_stream))
        .route("/campaigns/{id}/experiments", get(pages::experiments))
        .route("/campaigns/{id}/experiments.csv", get(pages::export))
        .route("/campaigns/{id}/experiments/{seq}", get(pages::experiment))
        .route("/campaigns/{id}/exchanges", get(pages::exchanges))
        .route("/campaigns/{id}/plots", get(pages::plots))
        .route("/campaigns/{id}/plots/{file}", get(pages::plot))
        .route("/campaigns/{id}/pause", post(actions::pause))
        .route("/campaigns/{id}/resume", post(actions::resume))
        .route("/campaigns/{id}/abort", post(actions::abort))
        .route("/campaigns/{id}/clear", post(actions::clear))
        .route("/campaigns/{id}/restock", post(actions::restock))
        .route("/campaigns/{id}/steps/{step}/confirm", post(actions::confirm))
        .route("/steps/{id}", get(pages::step))
        .route("/exchanges/{id}", get(pages::exchange))
        .route("/health", get(pages::health))
        .route("/health/verify", get(pages::verify))
        .route("/login", get(pages::login).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/assets/style.css", get(assets::style))
        .route("/assets/lab.js", get(assets::script))
        .fallback(pages::not_found)
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app)
}

/// The token in a query string, if any.
fn token_in(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v.into_owned())
}

/// The query string without its token.
fn without_token(query: &str) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "token") {
        s.append_pair(&k, &v);
    }
    s.finish()
}

/// What every request passes first: the host check, signing in with a token in the address, who may look, and the
/// same-origin check for anything but reading; then the security headers on every response.
async fn gate(State(app): State<App>, req: Request, next: Next) -> Response {
    let guard = app.guard();
    let headers = req.headers().clone();
    if !guard.host_allowed(&headers) {
        return with_headers(
            PageError::Forbidden(
                "this server listens on loopback and answers to localhost and 127.0.0.1 only (the request named \
                 another host, as a page elsewhere would that points a name of its own at this machine)"
                    .to_owned(),
            )
            .into_response(),
        );
    }
    if let Some(token) = req.uri().query().and_then(token_in) {
        if !guard.is_token(&token) {
            return with_headers(
                PageError::Forbidden(
                    "the token in the address is not this server's: copy the link `lab serve` printed when it \
                     started (a new start makes a new token)"
                        .to_owned(),
                )
                .into_response(),
            );
        }
        // Signed in: the same page without the token, so it leaves the address bar and the history.
        let rest = without_token(req.uri().query().unwrap_or_default());
        let to = if rest.is_empty() { req.uri().path().to_owned() } else { format!("{}?{rest}", req.uri().path()) };
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let (Ok(loc), Ok(cookie)) = (HeaderValue::from_str(&to), HeaderValue::from_str(&guard.sign_in_cookie())) {
            r.headers_mut().insert(LOCATION, loc);
            r.headers_mut().insert(SET_COOKIE, cookie);
        }
        return with_headers(r);
    }
    let path = req.uri().path();
    let public = path == "/login" || path.starts_with("/assets/");
    let local = req.extensions().get::<ConnectInfo<SocketAddr>>().is_some_and(|c| c.0.ip().is_loopback());
    if !local && !public && !guard.signed_in(&headers) {
        let mut r = PageError::Forbidden(
            "viewing from another machine needs the token: open the link `lab serve` printed, or sign in".to_owned(),
        )
        .into_response();
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return with_headers(r);
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD)
        && let Err(refused) = guard.same_origin(&headers)
    {
        return with_headers(PageError::Forbidden(refused.to_string()).into_response());
    }
    with_headers(next.run(req).await)
}

/// The headers every response carries: nothing is framed by or loaded from another site, no address leaks to another
/// site through `Referer` (within the server it is kept: with none at all, browsers send `Origin: null` with a form,
/// and the same-origin check could not tell the server's own pages from any other), types are not guessed, and
/// pages (which show live data) are not cached.
fn with_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// Checks the record and the options, listens, calls `announce` with the address to open, and serves until the
/// process is interrupted.
pub fn serve(opts: &ServeOptions, announce: impl FnOnce(&Listening)) -> Result<(), ServeError> {
    // A hub is read into a private copy in a temporary folder, removed when the server ends.
    let fleet = match &opts.hub {
        Some(url) => {
            let hub = crate::fleet::Hub::parse(url)?;
            let dir = tempfile::Builder::new().prefix("lab-serve-hub-").tempdir()?;
            let copy = dir.path().join("fleet.db");
            let view = fleet::start(hub, &copy)?;
            Some((dir, copy, view))
        }
        None => {
            drop(record::open(&opts.db)?);
            None
        }
    };
    let remote = !opts.addr.ip().is_loopback();
    if remote && !opts.allow_remote {
        return Err(ServeError::Remote(opts.addr));
    }
    let trusted = opts
        .public_key
        .as_deref()
        .map(crate::record::signing::read_public_key)
        .transpose()
        .map_err(ServeError::PublicKey)?;
    let listener = TcpListener::bind(opts.addr).map_err(|source| ServeError::Bind { addr: opts.addr, source })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let guard = Guard::new(addr.port(), !remote, opts.tls.is_some()).map_err(std::io::Error::other)?;
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    let host = if addr.ip().is_unspecified() { "HOST".to_owned() } else { addr.ip().to_string() };
    let host = if addr.is_ipv6() { format!("[{host}]") } else { host };
    let url = format!("{scheme}://{host}:{}/?token={}", addr.port(), guard.token());
    let app = match &fleet {
        Some((_, copy, view)) => App::for_fleet(copy, guard, view.clone()),
        None => App::new(&opts.db, guard, trusted),
    };
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("lab-serve").enable_all().build()?;
    let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
    let result = runtime.block_on(async move {
        let handle = axum_server::Handle::new();
        let server = match &opts.tls {
            None => {
                let server = axum_server::from_tcp(listener)?.handle(handle.clone());
                announce(&Listening { addr, url, remote, tls: false });
                tokio::spawn(async move { server.serve(service).await })
            }
            Some((cert, key)) => {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .map_err(|e| ServeError::Tls { cert: cert.clone(), key: key.clone(), message: e.to_string() })?;
                let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone());
                announce(&Listening { addr, url, remote, tls: true });
                tokio::spawn(async move { server.serve(service).await })
            }
        };
        tokio::select! {
            r = server => match r {
                Ok(r) => r.map_err(ServeError::Io),
                Err(e) => Err(ServeError::Io(std::io::Error::other(e))),
            },
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    });
    // Open live streams never end by themselves; the runtime is not left waiting for them.
    runtime.shutdown_timeout(Duration::from_millis(200));
    if let Some((_, _, view)) = &fleet {
        view.stop();
    }
    result
}
