//! What people do with a fleet: `lab fleet init`, `status`, `retire`, `settle`, and reading a fleet campaign's
//! record with `lab report --hub` and `lab export --hub`.
//!
//! Retiring and settling are the only ways a claim moves without its workcell's journal saying so, and each is one
//! transaction of a function in the hub's schema (`fleet.retire`, `fleet.settle`) that records who and why.
//! A report or an export of a fleet campaign reads the hub's copy of every workcell's record into a temporary file
//! shaped like `lab.db` ([`super::mirror`]: one campaign, every workcell's experiments numbered by the fleet's
//! proposal number, instruments named `workcell/instrument`), and then runs the same code as for one `lab.db`.

use std::fmt::Write as _;
use std::path::Path;

use super::hub::{FleetError, Hub};

/// `lab fleet init`: creates or migrates the hub's schema; returns what it did, for people.
pub fn init(hub: &Hub) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    let (from, to) = rt.block_on(hub.init())?;
    Ok(if from == to {
        format!("the hub at {} has fleet schema version {to}, this lab's: nothing to do", hub.redacted())
    } else if from == 0 {
        format!("created fleet schema version {to} at {}", hub.redacted())
    } else {
        format!("migrated the hub at {} from fleet schema version {from} to {to}", hub.redacted())
    })
}

/// `lab fleet retire`: the operator's word that a workcell will not act again. Returns what happened to its claims.
pub fn retire(hub: &Hub, workcell: &str, who: &str, why: &str) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        let rows = hub
            .bounded(c.client.query("SELECT campaign, seq, state FROM fleet.retire($1, $2, $3)", &[&workcell, &who, &why]))
            .await?;
        let mut out = format!("retired workcell {workcell}: it may never claim again, and what it ships is flagged\n");
        for r in rows {
            let (campaign, seq, state): (String, i64, String) = (r.get(0), r.get(1), r.get(2));
            let _ = match state.as_str() {
                "open" => writeln!(out, "  {campaign} #{seq}: never started there; open again for other workcells"),
                _ => writeln!(
                    out,
                    "  {campaign} #{seq}: started there; settle it: `lab fleet settle {campaign} {seq} --done|--not-done`"
                ),
            };
        }
        Ok(out)
    })
}

/// `lab fleet settle`: an operator's verdict on a proposal a retired workcell started.
pub fn settle(hub: &Hub, campaign: &str, seq: i64, done: bool, who: &str, why: &str) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        let state: String = hub
            .bounded(
                c.client.query_one("SELECT fleet.settle($1, $2, $3, $4, $5)", &[&campaign, &seq, &done, &who, &why]),
            )
            .await?
            .get(0);
        Ok(match state.as_str() {
            "open" => format!("{campaign} #{seq} did not run: it is open again for another workcell"),
            _ => format!("{campaign} #{seq} ran and its result is lost: settled"),
        })
    })
}

/// `lab fleet status`: the workcells, their lag and claims, and each campaign's progress.
pub fn status(hub: &Hub, campaign: Option<&str>) -> Result<String, FleetError> {
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        let mut out = format!("hub {} (fleet schema {})\n", hub.redacted(), super::hub::schema_version());
        let campaigns = hub
            .bounded(c.client.query(
                "SELECT p.campaign, p.status, p.budget, coalesce(p.learner, '-'), p.published, p.open, p.running,
                        p.orphaned, p.succeeded, p.failed, p.withdrawn_or_settled, c.stop_reason,
                        (SELECT count(*) FROM fleet.conflicts k WHERE k.campaign = p.campaign)
                 FROM fleet.campaign_progress p JOIN fleet.campaigns c ON c.name = p.campaign
                 WHERE $1::text IS NULL OR p.campaign = $1 ORDER BY c.published_at",
                &[&campaign],
            ))
            .await?;
        if campaigns.is_empty() {
            out.push_str("no campaigns\n");
        }
        for r in &campaigns {
            let _ = writeln!(
                out,
                "campaign {}: {}, learner {}; budget {}: {} published, {} open, {} running, {} orphaned, {} succeeded, \
                 {} failed, {} withdrawn or settled{}{}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                r.get::<_, String>(3),
                r.get::<_, i32>(2),
                r.get::<_, i64>(4),
                r.get::<_, i64>(5),
                r.get::<_, i64>(6),
                r.get::<_, i64>(7),
                r.get::<_, i64>(8),
                r.get::<_, i64>(9),
                r.get::<_, i64>(10),
                r.get::<_, Option<String>>(11).map(|s| format!(" ({s})")).unwrap_or_default(),
                match r.get::<_, i64>(12) {
                    0 => String::new(),
                    n => format!("; {n} CONFLICTS"),
                }
            );
        }
        let workcells = hub
            .bounded(c.client.query(
                "SELECT workcell, lab_name, extract(epoch FROM silent_for)::float8, coalesce(hub_head, 0), claimed,
                        started, orphaned, results, retired_at::text, conflict
                 FROM fleet.workcell_status ORDER BY workcell",
                &[],
            ))
            .await?;
        let _ = writeln!(
            out,
            "\n{:<14} {:<10} {:>10} {:>9} {:>7} {:>7} {:>8} {:>7}  state",
            "workcell", "lab", "silent", "hub head", "claimed", "started", "orphaned", "results"
        );
        for r in &workcells {
            let silent: f64 = r.get(2);
            let state = match (r.get::<_, Option<String>>(8), r.get::<_, Option<String>>(9)) {
                (Some(at), Some(c)) => format!("RETIRED at {at}; CONFLICT: {c}"),
                (Some(at), None) => format!("retired at {at}"),
                (None, Some(c)) => format!("CONFLICT: {c}"),
                (None, None) if silent > 60.0 => {
                    "OVERDUE: silent for over a minute (its claims stay its own)".to_owned()
                }
                (None, None) => "ok".to_owned(),
            };
            let _ = writeln!(
                out,
                "{:<14} {:<10} {:>9.1}s {:>9} {:>7} {:>7} {:>8} {:>7}  {state}",
                r.get::<_, String>(0),
                r.get::<_, String>(1),
                silent,
                r.get::<_, i64>(3),
                r.get::<_, i64>(4),
                r.get::<_, i64>(5),
                r.get::<_, i64>(6),
                r.get::<_, i64>(7),
            );
        }
        let rejections = hub
            .bounded(
                c.client
                    .query("SELECT workcell, journal_id, detail FROM fleet.rejections ORDER BY id DESC LIMIT 5", &[]),
            )
            .await?;
        for r in rejections {
            let _ = writeln!(
                out,
                "REFUSED journal row {} of workcell {}: {}",
                r.get::<_, i64>(1),
                r.get::<_, String>(0),
                r.get::<_, String>(2)
            );
        }
        Ok(out)
    })
}

/// Writes fleet campaign `campaign` as the hub holds it into a new file at `out`, shaped like `lab.db`, for `lab
/// report` and `lab export` ([`super::mirror`]). Returns how many experiments it holds.
pub fn materialize(hub: &Hub, campaign: &str, out: &Path) -> Result<usize, FleetError> {
    let local = |e: &dyn std::fmt::Display| FleetError::Local(format!("{}: {e}", out.display()));
    drop(crate::record::Record::open(out).map_err(|e| local(&e))?);
    let rt = super::hub::runtime()?;
    let data = rt.block_on(async {
        let c = hub.connect().await?;
        super::mirror::read_campaign(hub, &c.client, campaign, false).await
    })?;
    let Some(data) = data else {
        return Err(FleetError::Refused(format!(
            "the hub holds no record of fleet campaign {campaign} yet (no workcell has shipped it)"
        )));
    };
    let mut conn = rusqlite::Connection::open(out).map_err(|e| local(&e))?;
    let tx = conn.transaction().map_err(|e| local(&e))?;
    super::mirror::write_campaign(&tx, 1, campaign, hub.redacted(), &data).map_err(|e| local(&e))?;
    tx.commit().map_err(|e| local(&e))?;
    Ok(data.experiments())
}

/// `lab fleet grant`: a login of its own for a workcell, a learner or a reader. Returns what to tell its user,
/// with the password when this made one.
pub fn grant(hub: &Hub, login: &str, role: &str, password: Option<String>) -> Result<String, FleetError> {
    let valid = !login.is_empty()
        && login.len() <= 63
        && login.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(FleetError::Refused(format!(
            "`{login}` cannot be a login: use 1 to 63 letters, digits, `-`, `_` or `.` (a workcell's login is its \
             name; give the workcell such a name with `lab workcell --name`)"
        )));
    }
    let made = password.is_none();
    let password = match password {
        Some(p) => p,
        None => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes)
                .map_err(|e| FleetError::Local(format!("the system gave no randomness for a password: {e}")))?;
            bytes.iter().map(|b| format!("{b:02x}")).collect()
        }
    };
    // The server gets only a SCRAM verifier: the password never reaches it, its logs or its statistics.
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let rt = super::hub::runtime()?;
    rt.block_on(async {
        let c = hub.connect().await?;
        hub.bounded(c.client.execute("SELECT fleet.grant_login($1, $2, $3)", &[&login, &verifier, &role])).await
    })?;
    let what = match role {
        "workcell" => format!("workcell {login}: it ships its own journal and claims in its own name only"),
        "learner" => "a learner: it publishes campaigns and proposals and reads everything".to_owned(),
        _ => "a reader: it reads everything and changes nothing".to_owned(),
    };
    let mut out = format!("login {login} may now act at the hub as {what}\n");
    if made {
        let _ = writeln!(out, "password (shown once; the hub keeps only a SCRAM verifier of it): {password}");
        let _ = writeln!(out, "its hub URL: {}", hub.url_for(login, &password));
    }
    Ok(out)
}
