//! The fleet harness: a hub, workcells on simulators with different labs, learners, a proxy per workcell link, and
//! the oracle every run is checked against.
//!
//! Each workcell's simulators run in their own `lab sim` process, so the simulated bench outlives every `lab
//! workcell` killed on it, as a real bench would, and writes its ledger (what physically happened) when stopped.
//! Each workcell reaches the hub only through its proxy.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use devices::sim::bench::Event;

use super::pg::{PgCluster, Sql};
use super::proxy::Proxy;

/// The `lab` binary.
pub const LAB: &str = env!("CARGO_BIN_EXE_lab");

/// The repository.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// A small deterministic generator for fault schedules.
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in [0, 1).
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in [a, b).
    pub fn between(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next()
    }
}

/// Kills a child with SIGKILL and reaps it.
pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One workcell: its simulators, its proxy, its record and (while it runs) its `lab workcell` process.
pub struct Cell {
    /// Its name in the fleet.
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    sim: Option<Child>,
    /// The simulators' hands (`lab sim --hands`): a technician takes a lost vessel off the deck through them.
    hands: Option<std::process::ChildStdin>,
    /// The record's lost-vessel warnings a technician has answered (event ids), and the places cleared.
    attended: std::collections::BTreeSet<i64>,
    /// How many places a technician cleared.
    pub cleared: usize,
    /// Its link to the hub.
    pub proxy: Proxy,
    /// The running `lab workcell`, if any.
    pub process: Option<Child>,
    /// How many times it was started.
    pub starts: usize,
    /// Its own login's password at the hub (`lab fleet grant`), if it has one; else it logs in as the hub's owner.
    pub password: Option<String>,
}

impl Cell {
    /// Starts the simulators of `lab_text` (a lab file's text) for workcell `name` in `dir`, and a proxy to `hub_port`.
    pub fn new(name: &str, dir: &Path, lab_text: &str, hub_port: u16, time_scale: f64) -> Cell {
        let dir = dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = dir.join("ledger.ron");
        let lab = lab_text.replace(
            "simulation: (seed: 7, time_scale: 400)",
            &format!("simulation: (seed: 7, time_scale: {time_scale}, ledger: {:?})", ledger.display().to_string()),
        );
        assert!(lab.contains("ledger:"), "the demo lab's simulation line changed; update the fleet harness");
        std::fs::write(dir.join("base.lab.ron"), lab).unwrap();
        let mut sim = Command::new(LAB)
            .args(["sim", "base.lab.ron", "--lab-out", "ext.lab.ron", "--hands"])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while !dir.join("ext.lab.ron").exists() {
            assert!(t0.elapsed() < Duration::from_secs(30), "`lab sim` for {name} did not write its lab file");
            std::thread::sleep(Duration::from_millis(50));
        }
        let proxy = Proxy::start(hub_port);
        let hands = sim.stdin.take();
        Cell {
            name: name.to_owned(),
            dir,
            sim: Some(sim),
            hands,
            attended: Default::default(),
            cleared: 0,
            proxy,
            process: None,
            starts: 0,
            password: None,
        }
    }

    /// A technician's round: each place the record says a lost vessel blocks (a kill in the middle of a transfer) is
    /// looked at, emptied on the simulated deck and cleared with `lab clear PLACE`, as FLEET.md tells an operator to.
    /// Until then the workcell waits with what it holds.
    pub fn attend(&mut self) {
        const LOST: &str =
            "SELECT id, message FROM events WHERE message LIKE 'the vessel of experiment #% may still stand at %'";
        let read = |c: rusqlite::Connection| -> rusqlite::Result<Vec<(i64, String)>> {
            c.prepare(LOST)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
        };
        let warnings = rusqlite::Connection::open_with_flags(self.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(read)
            .unwrap_or_default();
        for (id, message) in warnings {
            if !self.attended.insert(id) {
                continue;
            }
            let before = message.split("; blocked").next().unwrap_or_default();
            for place in before.split('`').skip(1).step_by(2) {
                use std::io::Write;
                if let Some(hands) = self.hands.as_mut() {
                    let _ = writeln!(hands, "remove {place}").and_then(|()| hands.flush());
                }
                std::thread::sleep(Duration::from_millis(100));
                let out = Command::new(LAB)
                    .args(["clear", place, "--db", "lab.db", "--by", "technician", "--reason", "lost vial taken away"])
                    .current_dir(&self.dir)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "lab clear {place}: {}", String::from_utf8_lossy(&out.stderr));
                self.cleared += 1;
            }
        }
    }

    /// Its URL of the hub: through its proxy, as its own login if it has one.
    pub fn hub_url(&self, pg: &PgCluster) -> String {
        match &self.password {
            Some(p) => pg.url_as(&self.name, p, self.proxy.port),
            None => pg.url_via(self.proxy.port),
        }
    }

    /// The record.
    pub fn db(&self) -> PathBuf {
        self.dir.join("lab.db")
    }

    /// Starts `lab workcell` through the proxy.
    pub fn start(&mut self, hub_url: &str) {
        self.start_with(hub_url, &[]);
    }

    /// Starts `lab workcell` through the proxy, with `more` arguments.
    pub fn start_with(&mut self, hub_url: &str, more: &[&str]) {
        assert!(self.process.is_none(), "{} runs already", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("workcell.log")).unwrap();
        let child = Command::new(LAB)
            .args(["workcell", "--lab", "ext.lab.ron", "--db", "lab.db", "--name", &self.name, "--ship-wait", "120"])
            .args(more)
            .env("LAB_HUB", hub_url)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Some(child);
        self.starts += 1;
    }

    /// Whether its `lab workcell` runs; reaps it if it ended, returning its exit code.
    pub fn poll(&mut self) -> Option<i32> {
        let p = self.process.as_mut()?;
        match p.try_wait().unwrap() {
            Some(status) => {
                self.process = None;
                Some(status.code().unwrap_or(-1))
            }
            None => None,
        }
    }

    /// Kills its `lab workcell` (SIGKILL), if it runs.
    pub fn kill(&mut self) -> bool {
        match self.process.take() {
            Some(mut p) => {
                kill9(&mut p);
                true
            }
            None => false,
        }
    }

    /// What its `lab workcell` processes said.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("workcell.log")).unwrap_or_default()
    }

    /// Stops its simulators, which write their ledger, and reads it.
    pub fn ledger(&mut self) -> devices::sim::LedgerFile {
        self.hands = None;
        if let Some(mut sim) = self.sim.take() {
            let _ = Command::new("kill").args(["-INT", &sim.id().to_string()]).status();
            let t0 = Instant::now();
            while sim.try_wait().unwrap().is_none() {
                if t0.elapsed() > Duration::from_secs(30) {
                    kill9(&mut sim);
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        devices::sim::LedgerFile::read(&self.dir.join("ledger.ron")).expect("the simulators wrote their ledger")
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        self.kill();
        if let Some(mut s) = self.sim.take() {
            kill9(&mut s);
        }
    }
}

/// The demo lab, as workcells of the fleet vary it.
pub fn demo_lab() -> String {
    std::fs::read_to_string(repo().join("devices/labs/sim.lab.ron")).unwrap()
}

/// The demo lab with its hotplates limited to `max` degrees Celsius.
pub fn lab_with_hotplates_up_to(max: u32) -> String {
    let lab = demo_lab();
    assert!(lab.contains("max_temperature: \"310 degC\""), "the demo lab's hotplates changed; update the harness");
    lab.replace("max_temperature: \"310 degC\"", &format!("max_temperature: \"{max} degC\""))
}

/// The demo lab without its spectrometer (it cannot read the product, so it can run no campaign of the demo's).
pub fn lab_without_spectrometer() -> String {
    let lab = demo_lab();
    let start = lab.find("        \"uvvis\": (\n").expect("the demo lab's uvvis instrument");
    let end = start + lab[start..].find("        ),\n").unwrap() + "        ),\n".len();
    let mut out = lab.clone();
    out.replace_range(start..end, "");
    out.replace("            \"uvvis\": (x: 380, y: 40, z: 20),\n", "")
}

/// Writes a fleet campaign of the demo reaction to `dir`: `budget` experiments, `in_flight` at once per workcell.
pub fn write_campaign(dir: &Path, name: &str, budget: usize, in_flight: usize, proposer: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo().join("experiments/campaigns/demo.campaign.ron")).unwrap();
    let text = text
        .replace("name: \"demo\"", &format!("name: {name:?}"))
        .replace(
            "\"../../protocols/library/condensation.protocol.ron\"",
            &format!("{:?}", repo().join("protocols/library/condensation.protocol.ron").display().to_string()),
        )
        .replace(
            "\"../../devices/labs/sim.lab.ron\"",
            &format!("{:?}", repo().join("devices/labs/sim.lab.ron").display().to_string()),
        )
        .replace("budget: 24", &format!("budget: {budget}"))
        .replace("in_flight: 4", &format!("in_flight: {in_flight}"))
        .replace(
            "proposer: GaussianProcess(initial: 8, acquisition: LogExpectedImprovement)",
            &format!("proposer: {proposer}"),
        );
    assert!(text.contains(&format!("proposer: {proposer}")), "the demo campaign changed; update the harness");
    let path = dir.join(format!("{name}.campaign.ron"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `lab fleet learn` for `campaign` on the hub, its output appended to `log`.
pub fn learner(campaign: &Path, hub_url: &str, name: &str, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(LAB)
        .args(["fleet", "learn"])
        .arg(campaign)
        .args(["--name", name])
        .env("LAB_HUB", hub_url)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Runs `lab ARGS` with the hub in LAB_HUB; returns (success, stdout, stderr).
pub fn lab(args: &[&str], hub_url: &str) -> (bool, String, String) {
    let out = Command::new(LAB).args(args).env("LAB_HUB", hub_url).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Gives `login` its own login at the hub as `role` (`lab fleet grant`, by the hub's owner); returns its password.
pub fn grant(owner_url: &str, login: &str, role: &str) -> String {
    let (ok, out, err) = lab(&["fleet", "grant", login, "--as", role], owner_url);
    assert!(ok, "lab fleet grant {login}: {out}{err}");
    out.lines()
        .find_map(|l| l.split_once("): ").filter(|(a, _)| a.starts_with("password")).map(|(_, p)| p.trim().to_owned()))
        .unwrap_or_else(|| panic!("no password in {out}"))
}

/// A throwaway cluster with the fleet's schema: the cluster, its owner's URL, and a client for the oracle; `None`
/// (after saying why) where PostgreSQL is not installed and the test may skip.
pub fn hub() -> Option<(PgCluster, String, Sql)> {
    let pg = PgCluster::start()?;
    let url = pg.url();
    let (ok, out, err) = lab(&["fleet", "init"], &url);
    assert!(ok, "lab fleet init: {out}{err}");
    let sql = client(&pg);
    Some((pg, url, sql))
}

/// Ships the record at `db` as workcell `workcell` to the hub at `url` until the hub holds all of it, the hub refuses
/// it, or a minute passes; returns where shipping stood.
pub fn ship(url: &str, workcell: &str, db: &Path) -> controller::fleet::ship::ShipStatus {
    let hub = controller::fleet::Hub::parse(url).unwrap();
    let shipper = controller::fleet::ship::Shipper::spawn(hub, workcell.into(), db.to_owned(), true).unwrap();
    let s = shipper.wait_caught_up(Some(Duration::from_secs(60)), |_, _| {});
    shipper.stop();
    s
}

/// A client for the oracle.
pub fn client(pg: &PgCluster) -> Sql {
    Sql::connect(&pg.url())
}

/// A value of a table cell, as either database holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cellv {
    /// NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A float (compared by bits).
    Real(u64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// Every row of `table` in the SQLite record, in key order, with its columns' names.
fn sqlite_rows(conn: &rusqlite::Connection, table: &str, keys: &str) -> (Vec<String>, Vec<Vec<Cellv>>) {
    let columns: Vec<String> = conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = conn.prepare(&format!("SELECT {} FROM {table} ORDER BY {keys}", columns.join(", "))).unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok((0..columns.len())
                .map(|i| match r.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Null => Cellv::Null,
                    rusqlite::types::ValueRef::Integer(v) => Cellv::Int(v),
                    rusqlite::types::ValueRef::Real(v) => Cellv::Real(v.to_bits()),
                    rusqlite::types::ValueRef::Text(t) => Cellv::Text(String::from_utf8_lossy(t).into_owned()),
                    rusqlite::types::ValueRef::Blob(b) => Cellv::Blob(b.to_vec()),
                })
                .collect::<Vec<_>>())
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (columns, rows)
}

/// Every row of the hub's twin of `table` for `workcell`, in key order, with the same columns.
fn hub_rows(hub: &Sql, workcell: &str, table: &str, columns: &[String], keys: &str) -> Vec<Vec<Cellv>> {
    let sql = format!(
        "SELECT {} FROM record.{table} WHERE workcell = $1 ORDER BY {keys}",
        columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
    );
    hub.query(&sql, &[&workcell])
        .into_iter()
        .map(|r| {
            (0..columns.len())
                .map(|i| {
                    use tokio_postgres::types::Type;
                    let t = r.columns()[i].type_().clone();
                    if t == Type::INT8 {
                        r.get::<_, Option<i64>>(i).map_or(Cellv::Null, Cellv::Int)
                    } else if t == Type::FLOAT8 {
                        r.get::<_, Option<f64>>(i).map_or(Cellv::Null, |v| Cellv::Real(v.to_bits()))
                    } else if t == Type::BYTEA {
                        r.get::<_, Option<Vec<u8>>>(i).map_or(Cellv::Null, Cellv::Blob)
                    } else {
                        r.get::<_, Option<String>>(i).map_or(Cellv::Null, Cellv::Text)
                    }
                })
                .collect()
        })
        .collect()
}

/// Checks that the hub's tables equal `db`'s, row by row, for workcell `name`, and that the hub's copy of the journal
/// ends at `db`'s head, hash for hash. Returns the rows compared.
pub fn check_copy(hub: &Sql, name: &str, db: &Path) -> usize {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let (local_id, local_hash): (i64, String) = conn
        .query_row("SELECT id, hash FROM journal ORDER BY id DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let head = hub.query("SELECT id, hash FROM fleet.journal WHERE workcell = $1 ORDER BY id DESC LIMIT 1", &[&name]);
    assert!(!head.is_empty(), "the hub holds nothing of workcell {name}");
    let (hub_id, hub_hash): (i64, String) = (head[0].get(0), head[0].get(1));
    assert_eq!((hub_id, &hub_hash), (local_id, &local_hash), "workcell {name}'s chain head at the hub and in lab.db");
    let mut compared = 0;
    for (table, keys) in controller::record::project::PROJECTED {
        let (columns, local) = sqlite_rows(&conn, table, keys);
        let remote = hub_rows(hub, name, table, &columns, keys);
        assert_eq!(
            local.len(),
            remote.len(),
            "workcell {name}: table {table} has {} rows in lab.db, {} at the hub",
            local.len(),
            remote.len()
        );
        for (i, (l, r)) in local.iter().zip(&remote).enumerate() {
            assert_eq!(
                l, r,
                "workcell {name}: table {table}, row {i} ({columns:?}) differs between lab.db and the hub"
            );
        }
        compared += local.len();
    }
    compared
}

/// The fleet proposal each local experiment of `db` came from: (local experiment id, vessel) by fleet seq.
pub fn local_experiments(db: &Path) -> Vec<(i64, i64, i64)> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut seq_of: HashMap<i64, i64> = HashMap::new();
    let mut stmt =
        conn.prepare("SELECT body FROM journal WHERE kind = 'Proposal' AND body LIKE '%\"claim\"%'").unwrap();
    for body in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap) {
        if let Ok(controller::record::RecordEvent::Proposal { id, proposal, .. }) = serde_json::from_str(&body)
            && let Some(c) = proposal.claim
        {
            seq_of.insert(id, c.seq);
        }
    }
    let mut stmt = conn.prepare("SELECT id, proposal_id, vessel FROM experiments").unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, i64>(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .filter_map(|(id, p, vessel)| Some((seq_of.get(&p?).copied()?, id, vessel)))
        .collect()
}

/// The vessels each reservoir dispensed into, per ledger.
pub fn dispensed(ledger: &devices::sim::LedgerFile) -> BTreeMap<(usize, String), usize> {
    let mut out = BTreeMap::new();
    for e in &ledger.ledger {
        if let Event::Dispensed { reservoir, vessel, .. } = &e.event {
            *out.entry((*vessel, reservoir.clone())).or_default() += 1;
        }
    }
    out
}

/// How many journal rows the record at `db` holds (0 if it has none yet).
pub fn journal_rows(db: &Path) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row("SELECT count(*) FROM journal", [], |r| r.get(0)))
        .unwrap_or(0)
}

/// Why each failed experiment of the record at `db` failed.
pub fn failures(db: &Path) -> Vec<String> {
    let Ok(conn) = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare("SELECT coalesce(error, '') FROM experiments WHERE status = 'failed'") else {
        return Vec::new();
    };
    stmt.query_map([], |r| r.get::<_, String>(0)).map(|rows| rows.flatten().collect()).unwrap_or_default()
}
