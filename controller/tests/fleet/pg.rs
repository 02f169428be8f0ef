//! A throwaway PostgreSQL cluster for tests and benchmarks: Debian's `postgresql` package, started in a temporary
//! folder on a free loopback port, as an unprivileged user when the test runs as root (`initdb` refuses root), and
//! stopped and removed when dropped. Every wait is bounded.
//!
//! Without PostgreSQL a test skips with a message saying how to install it, unless `LAB_REQUIRE_POSTGRES=1` (as
//! `.ci/run` sets), which turns the skip into a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The superuser's password in every test cluster (loopback only, removed after).
pub const PASSWORD: &str = "lab-test-secret";

/// A running cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<String>,
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    /// With TLS: the certificate of the authority that signed the server's.
    pub ca: Option<PathBuf>,
}

/// The newest PostgreSQL (15 or later) installed by Debian's packages.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            (v >= 15 && bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PgCluster {
    /// Starts a cluster, or returns `None` (after saying why) when PostgreSQL is not installed and the caller may
    /// skip.
    pub fn start() -> Option<PgCluster> {
        Self::start_with(false)
    }

    /// A cluster that accepts TCP connections over TLS only, with a server certificate signed by a throwaway
    /// authority ([`PgCluster::ca`]).
    pub fn start_tls() -> Option<PgCluster> {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Option<PgCluster> {
        let Some(bin) = find_bin() else {
            let why = "PostgreSQL 15 or later is not installed (apt-get install -y postgresql); fleet tests skipped";
            if std::env::var("LAB_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("{why}, but LAB_REQUIRE_POSTGRES=1 requires them");
            }
            eprintln!("SKIPPED: {why}");
            return None;
        };
        let user = is_root().then(|| std::env::var("LAB_PG_USER").unwrap_or_else(|_| "postgres".to_owned()));
        let dir = tempfile::Builder::new().prefix("lab-pg-").tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(dir.path().join("pwfile"), PASSWORD).unwrap();
        let ca = tls.then(|| make_certificates(dir.path()));
        if let Some(u) = &user {
            let status = Command::new("chown").args(["-R", u]).arg(dir.path()).status().unwrap();
            assert!(status.success(), "chown of the cluster's folder to {u} failed");
        }
        let cluster = PgCluster { dir, bin, user, port: free_port(), ca };
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "lab",
                "-E",
                "UTF8",
                "--locale=C",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                cluster.dir.path().join("pwfile").to_str().unwrap(),
            ],
            Duration::from_secs(120),
        );
        if cluster.ca.is_some() {
            // TCP only with TLS: a connection that is not encrypted finds no line here and is refused.
            let hba = "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n";
            let path = data.join("pg_hba.conf");
            std::fs::write(&path, hba).unwrap();
            if let Some(u) = &cluster.user {
                Command::new("chown").arg(u).arg(&path).status().unwrap();
            }
        }
        cluster.start_server();
        cluster.psql("postgres", "CREATE DATABASE lab");
        Some(cluster)
    }

    /// Runs a PostgreSQL program as the cluster's user, failing the test if it fails or outlives `bound`.
    fn run(&self, program: &str, args: &[&str], bound: Duration) -> String {
        let exe = self.bin.join(program);
        let mut cmd = match &self.user {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let mut child = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        let t0 = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let out = child.wait_with_output().unwrap();
                let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
                assert!(status.success(), "{program} {args:?} failed: {text}");
                return text;
            }
            if t0.elapsed() > bound {
                let _ = child.kill();
                panic!("{program} {args:?} did not end within {bound:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn start_server(&self) {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        if self.ca.is_some() {
            let d = self.dir.path().display();
            opts.push_str(&format!(" -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key"));
        }
        let log = self.dir.path().join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["start", "-D", &self.data(), "-l", &log, "-w", "-t", "60", "-o", &opts],
            Duration::from_secs(90),
        );
    }

    /// Runs SQL with psql over the cluster's socket, as superuser `lab`.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let psql = self.bin.join("psql");
        let out = Command::new(psql)
            .args(["-h", &self.dir.path().display().to_string(), "-p", &self.port.to_string(), "-U", "lab", "-d", db])
            .args(["-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The URL of database `lab` on this cluster, through `port` (the cluster's own, or a proxy's).
    pub fn url_via(&self, port: u16) -> String {
        format!("postgresql://lab:{PASSWORD}@127.0.0.1:{port}/lab")
    }

    /// The URL of database `lab` on this cluster for `login` with `password`, through `port`.
    pub fn url_as(&self, login: &str, password: &str, port: u16) -> String {
        format!("postgresql://{login}:{password}@127.0.0.1:{port}/lab")
    }

    /// The URL of database `lab` on this cluster.
    pub fn url(&self) -> String {
        self.url_via(self.port)
    }

    /// Restarts the server at once (`-m immediate`: as if it crashed), keeping its data.
    pub fn restart(&self) {
        self.run("pg_ctl", &["stop", "-D", &self.data(), "-m", "immediate", "-w", "-t", "60"], Duration::from_secs(90));
        self.start_server();
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A throwaway certificate authority and a server certificate it signed for 127.0.0.1 and localhost, in `dir`
/// (`openssl`, which Debian's postgresql brings with ssl-cert). Returns the authority's certificate.
fn make_certificates(dir: &Path) -> PathBuf {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl is installed");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=lab test authority",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    dir.join("ca.crt")
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["stop", "-D", data.as_str(), "-m", "immediate", "-w", "-t", "30"];
        let _ = match &self.user {
            Some(u) => Command::new("runuser").args(["-u", u, "--"]).arg(exe).args(args).output(),
            None => Command::new(exe).args(args).output(),
        };
    }
}

/// A blocking client for tests and benchmarks, with its own runtime and the notifications it receives.
pub struct Sql {
    /// The runtime the client runs on.
    pub rt: tokio::runtime::Runtime,
    /// The client.
    pub client: tokio_postgres::Client,
    /// Notifications on the channels it listens to.
    pub notes: tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
}

impl Sql {
    /// Connects to `url` (no TLS: loopback).
    pub fn connect(url: &str) -> Sql {
        use futures::StreamExt;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (client, notes) = rt.block_on(async {
            let (client, mut conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move {
                let mut s = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
                while let Some(Ok(m)) = s.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(n) = m {
                        let _ = tx.send(n);
                    }
                }
            });
            (client, rx)
        });
        Sql { rt, client, notes }
    }

    /// Runs statements.
    pub fn execute(&self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs statements, returning the server's refusal.
    pub fn try_execute(&self, sql: &str) -> Result<(), String> {
        self.rt.block_on(self.client.batch_execute(sql)).map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => e.to_string(),
        })
    }

    /// Runs a query.
    pub fn query(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) -> Vec<tokio_postgres::Row> {
        self.rt.block_on(self.client.query(sql, params)).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// One integer.
    pub fn count(&self, sql: &str) -> i64 {
        self.query(sql, &[])[0].get(0)
    }

    /// A column of floats (NULLs left out).
    pub fn floats(&self, sql: &str) -> Vec<f64> {
        self.query(sql, &[]).iter().filter_map(|r| r.get::<_, Option<f64>>(0)).collect()
    }
}
