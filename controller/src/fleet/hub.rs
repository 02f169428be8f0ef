//! The hub: a PostgreSQL database reached by URL, its schema and its migrations.
//!
//! A URL is read once into a [`Hub`], which keeps the secret parts (the password) to itself: everything printed or
//! logged names the hub by [`Hub::redacted`]. TLS is used as the URL asks (`sslmode=require`, the libpq name), with
//! rustls: the server's certificate is checked against `sslrootcert=FILE` when the URL names one, or else against
//! the system's roots. Every wait on the hub is bounded: connecting (5 s unless the URL says `connect_timeout`), and
//! each operation ([`OP_TIMEOUT`]), so a link that blackholes packets is found within seconds, not at TCP's minutes.
//!
//! The schema is versioned in `fleet.schema`; `lab fleet init` applies the migrations in
//! `controller/src/fleet/migrations/` (append-only) under an advisory lock, and every other command refuses a hub whose
//! version is not this build's, naming the fix.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Client, Config, Notification};

/// The hub's migrations, oldest first. Append only.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/001-hub.sql"),
    include_str!("migrations/002-settlements.sql"),
    include_str!("migrations/003-batches-and-roles.sql"),
    include_str!("migrations/004-chain-check-per-batch.sql"),
    include_str!("migrations/005-stock-events.sql"),
    include_str!("migrations/006-indexes-for-reading.sql"),
];

/// The most one operation on the hub may take before the connection counts as lost.
pub const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// The hub schema version this build writes and reads.
pub fn schema_version() -> i32 {
    MIGRATIONS.len() as i32
}

/// Why the fleet could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The URL does not parse.
    #[error("the hub URL {hub} is not valid: {reason}")]
    Url {
        /// The URL, redacted.
        hub: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing answered, or the link failed.
    #[error("cannot reach the hub at {hub}: {reason}")]
    Unreachable {
        /// The URL, redacted.
        hub: String,
        /// What failed.
        reason: String,
    },
    /// The hub refused the user or password.
    #[error("the hub at {hub} refused the credentials: {reason}")]
    Credentials {
        /// The URL, redacted.
        hub: String,
        /// What the server said.
        reason: String,
    },
    /// The hub's schema is newer than this lab's.
    #[error(
        "the hub at {hub} has fleet schema version {found}, newer than this lab's {supported}: use the lab that \
         migrated it, or a newer one"
    )]
    TooNew {
        /// The URL, redacted.
        hub: String,
        /// The hub's version.
        found: i32,
        /// This build's.
        supported: i32,
    },
    /// The hub has no fleet schema, or an older one.
    #[error("the hub at {hub} has fleet schema version {found}, not {supported}: run `lab fleet init --hub URL` first")]
    NotInitialized {
        /// The URL, redacted.
        hub: String,
        /// The hub's version (0: none).
        found: i32,
        /// This build's.
        supported: i32,
    },
    /// A rule of the fleet refused the request (a campaign file that differs, a retired workcell, a lab that cannot
    /// run the protocol); the message says which and what to do.
    #[error("{0}")]
    Refused(String),
    /// The hub refused an operation.
    #[error("the hub at {hub}: {reason}")]
    Hub {
        /// The URL, redacted.
        hub: String,
        /// What the server said.
        reason: String,
    },
    /// Something on this machine failed (the record, a file, a thread).
    #[error("{0}")]
    Local(String),
}

/// A hub, as a URL names it.
#[derive(Clone)]
pub struct Hub {
    config: Config,
    redacted: String,
    root_cert: Option<PathBuf>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Hub").field(&self.redacted).finish()
    }
}

/// An open connection to the hub, with the notifications (`LISTEN`) it receives.
pub struct Connection {
    /// The client.
    pub client: Client,
    /// Notifications on the channels the client listens to, as they arrive.
    pub notifications: mpsc::UnboundedReceiver<Notification>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Hub {
    /// Reads a hub URL (`postgresql://user:password@host:port/db?sslmode=require&sslrootcert=ca.pem`).
    pub fn parse(url: &str) -> Result<Hub, FleetError> {
        let redacted = redact(url);
        let (base, query) = match url.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (url, None),
        };
        let mut root_cert = None;
        let mut kept = Vec::new();
        let mut timeout_given = false;
        for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sslrootcert", v)) => root_cert = Some(PathBuf::from(v)),
                Some((k, _)) => {
                    timeout_given |= k == "connect_timeout";
                    kept.push(pair);
                }
                None => kept.push(pair),
            }
        }
        let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(FleetError::Url {
                hub: redacted,
                reason: "a hub is named by a postgresql:// URL, such as postgresql://lab@hub.example/lab".into(),
            });
        }
        let mut config: Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| FleetError::Url { hub: redacted.clone(), reason: e.to_string() })?;
        if !timeout_given {
            config.connect_timeout(Duration::from_secs(5));
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(5)).tcp_user_timeout(Duration::from_secs(5));
        config.application_name("lab");
        Ok(Hub { config, redacted, root_cert })
    }

    /// A URL to this hub's database for another login (host, port and database as this hub's).
    pub fn url_for(&self, login: &str, password: &str) -> String {
        use tokio_postgres::config::Host;
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
            Some(Host::Tcp(h)) => h.clone(),
            _ => "localhost".to_owned(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let db = self.config.get_dbname().unwrap_or(login);
        let mut url = format!("postgresql://{login}:{password}@{host}:{port}/{db}");
        if self.config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            url.push_str("?sslmode=require");
            if let Some(ca) = &self.root_cert {
                url.push_str(&format!("&sslrootcert={}", ca.display()));
            }
        }
        url
    }

    /// The URL with its password hidden, for messages and logs.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The TLS connector: the URL's root certificate, or the system's roots.
    fn tls(&self) -> Result<tokio_postgres_rustls::MakeRustlsConnect, FleetError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                let bad = |e: String| FleetError::Url {
                    hub: self.redacted.clone(),
                    reason: format!("sslrootcert {}: {e}", path.display()),
                };
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
                    roots.add(cert.map_err(|e| bad(e.to_string()))?).map_err(|e| bad(e.to_string()))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        // ring rather than aws-lc-rs: it builds with the C compiler Rust needs anyway (aws-lc-rs wants cmake and a
        // long C build). rustls marks ring's provider deprecated for lacking post-quantum key exchange, which a
        // PostgreSQL link does not need today.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FleetError::Local(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    /// Connects (within the connect timeout), checks nothing else. Must run inside a tokio runtime.
    pub async fn connect_raw(&self) -> Result<Connection, FleetError> {
        let tls = self.tls()?;
        let (client, mut connection) = self.config.connect(tls).await.map_err(|e| self.connect_error(&e))?;
        let (tx, notifications) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        let _ = tx.send(n);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        Ok(Connection { client, notifications, driver })
    }

    /// Connects and checks that the hub's schema is this build's.
    pub async fn connect(&self) -> Result<Connection, FleetError> {
        let c = self.connect_raw().await?;
        let found = self.bounded(version(&c.client)).await?;
        let supported = schema_version();
        if found > supported {
            return Err(FleetError::TooNew { hub: self.redacted.clone(), found, supported });
        }
        if found < supported {
            return Err(FleetError::NotInitialized { hub: self.redacted.clone(), found, supported });
        }
        Ok(c)
    }

    /// Runs `op` within [`OP_TIMEOUT`], turning its error into a [`FleetError`] that names the hub.
    pub async fn bounded<T>(
        &self,
        op: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, FleetError> {
        match tokio::time::timeout(OP_TIMEOUT, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.error(&e)),
            Err(_) => Err(FleetError::Unreachable {
                hub: self.redacted.clone(),
                reason: format!("no answer within {} s", OP_TIMEOUT.as_secs()),
            }),
        }
    }

    /// A PostgreSQL error, as a [`FleetError`] naming the hub.
    pub fn error(&self, e: &tokio_postgres::Error) -> FleetError {
        match e.as_db_error() {
            Some(db) => {
                let mut reason = db.message().to_owned();
                if let Some(d) = db.detail() {
                    reason.push_str(": ");
                    reason.push_str(d);
                }
                if db.code().code().starts_with("28") {
                    FleetError::Credentials { hub: self.redacted.clone(), reason }
                } else {
                    FleetError::Hub { hub: self.redacted.clone(), reason }
                }
            }
            None => FleetError::Unreachable { hub: self.redacted.clone(), reason: describe(e) },
        }
    }

    fn connect_error(&self, e: &tokio_postgres::Error) -> FleetError {
        match self.error(e) {
            FleetError::Hub { hub, reason } if e.as_db_error().is_some_and(|d| d.code().code() == "3D000") => {
                FleetError::Unreachable { hub, reason }
            }
            other => other,
        }
    }

    /// Creates or migrates the hub's schema; returns the versions before and after.
    pub async fn init(&self) -> Result<(i32, i32), FleetError> {
        let mut c = self.connect_raw().await?;
        let encoding: String = self.bounded(c.client.query_one("SHOW server_encoding", &[])).await?.get(0);
        if encoding != "UTF8" {
            return Err(FleetError::Refused(format!(
                "the hub at {} stores text as {encoding}; lab's journal is UTF-8 and its hash chain covers the bytes, \
                 so the hub's database must be created with ENCODING 'UTF8'",
                self.redacted
            )));
        }
        let tx = self.bounded(c.client.transaction()).await?;
        // One `lab fleet init` at a time: a second waits here, then finds the schema current.
        self.bounded(tx.execute("SELECT pg_advisory_xact_lock(7243102118)", &[])).await?;
        let found = self.bounded(version(&tx)).await?;
        let supported = schema_version();
        if found > supported {
            return Err(FleetError::TooNew { hub: self.redacted.clone(), found, supported });
        }
        for (i, m) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            self.bounded(tx.batch_execute(m)).await?;
            self.bounded(tx.execute(
                "INSERT INTO fleet.schema (version, software) VALUES ($1, $2)",
                &[&(i as i32 + 1), &crate::record::software_version()],
            ))
            .await?;
        }
        self.bounded(tx.commit()).await?;
        Ok((found, supported))
    }
}

/// The hub's schema version (0 when it has none).
async fn version(c: &impl tokio_postgres::GenericClient) -> Result<i32, tokio_postgres::Error> {
    let exists: bool = c.query_one("SELECT to_regclass('fleet.schema') IS NOT NULL", &[]).await?.get(0);
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = c.query_one("SELECT max(version) FROM fleet.schema", &[]).await?.get(0);
    Ok(v.unwrap_or(0))
}

/// A client error with its causes, for people.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// A URL with its password (in the authority or as `password=` in the query) replaced by `***`.
pub fn redact(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme) = out.find("://") {
        let rest = scheme + 3;
        let end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..end].rfind('@') {
            let at = rest + at;
            if let Some(colon) = out[rest..at].find(':') {
                out.replace_range(rest + colon + 1..at, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some(("password", _)) => "password=***".to_owned(),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

/// Builds a runtime for one fleet thread: a current-thread runtime, so each thread that talks to the hub owns its
/// connection and nothing is shared with the campaign's own runtime.
pub fn runtime() -> Result<tokio::runtime::Runtime, FleetError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FleetError::Local(format!("cannot start a runtime for the hub: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show_in_a_redacted_url() {
        assert_eq!(redact("postgresql://lab:s3cret@hub:5432/lab"), "postgresql://lab:***@hub:5432/lab");
        assert_eq!(
            redact("postgresql://lab@hub/lab?password=s3cret&sslmode=require"),
            "postgresql://lab@hub/lab?password=***&sslmode=require"
        );
        assert_eq!(redact("postgresql://hub/lab"), "postgresql://hub/lab");
        let hub =
            Hub::parse("postgresql://lab:s3cret@127.0.0.1:1/lab?sslmode=require&sslrootcert=/tmp/ca.pem").unwrap();
        assert!(!format!("{hub:?}").contains("s3cret"));
        assert_eq!(hub.root_cert.as_deref(), Some(std::path::Path::new("/tmp/ca.pem")));
        let bad = Hub::parse("mysql://lab:s3cret@hub/lab").unwrap_err().to_string();
        assert!(bad.contains("postgresql://") && !bad.contains("s3cret"), "{bad}");
    }
}
