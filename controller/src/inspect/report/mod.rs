//! `lab report`: one campaign of the record as a self-contained web page with plots, for scientists.
//!
//! The page (`report.html`) needs no server and no network: its plots are SVG inlined in the page, its style is in
//! the page, and it loads nothing. Each plot is also written beside it as `NAME.svg` and `NAME.png`. The record is
//! opened read-only, so a report can be made while the campaign is still running (WAL readers never block the
//! writer) and the record is never changed by it.

pub mod data;
pub mod durations;
mod html;
pub mod plots;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use data::ReportData;
pub use plots::Plot;

/// Why a campaign could not be read from a record (`lab report` and `lab status` alike).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// There is no record at the path.
    #[error("there is no record at {path} (give the one the campaign writes with --db)")]
    Missing {
        /// The path.
        path: PathBuf,
    },
    /// The record could not be opened or read.
    #[error("cannot read the record {path}: {source}")]
    Record {
        /// The record.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The record has no such campaign (or no campaign at all).
    #[error("{path} has {what}")]
    NoCampaign {
        /// The record.
        path: PathBuf,
        /// What is missing, as a fragment: "no campaign", "no campaign 7".
        what: String,
    },
}

impl ReadError {
    /// The record at `db` has no campaign `campaign` (or none at all, for `None`).
    pub fn no_campaign(db: &Path, campaign: Option<i64>) -> Self {
        ReadError::NoCampaign {
            path: db.to_owned(),
            what: campaign.map_or("no campaign".to_owned(), |c| format!("no campaign {c}")),
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The campaign could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A plot could not be drawn.
    #[error("cannot draw the {plot} plot: {message}")]
    Draw {
        /// The plot's name.
        plot: &'static str,
        /// What plotters said.
        message: String,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// What a report wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The page.
    pub page: PathBuf,
    /// Every file written, the page first.
    pub files: Vec<PathBuf>,
    /// The campaign reported on.
    pub campaign: i64,
}

/// Opens a record for reading only. SQLite creates no file in this mode, so a missing record is an error.
pub fn open_read_only(db: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    Ok(conn)
}

/// Opens the record at `db` read-only, naming a missing file as such.
pub fn open_record(db: &Path) -> Result<Connection, ReadError> {
    if !db.exists() {
        return Err(ReadError::Missing { path: db.to_owned() });
    }
    open_read_only(db).map_err(|source| ReadError::Record { path: db.to_owned(), source })
}

/// Reads a campaign (the latest if `campaign` is `None`) from the record at `db`.
pub fn read(db: &Path, campaign: Option<i64>) -> Result<ReportData, ReadError> {
    let conn = open_record(db)?;
    ReportData::read(&conn, campaign)
        .map_err(|source| ReadError::Record { path: db.to_owned(), source })?
        .ok_or_else(|| ReadError::no_campaign(db, campaign))
}

/// Writes the report of a campaign (the latest if `campaign` is `None`) into the folder `out`, creating it.
pub fn write_report(db: &Path, campaign: Option<i64>, out: &Path) -> Result<Written, ReportError> {
    let data = read(db, campaign)?;
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| ReportError::Write { path, source }
    };
    std::fs::create_dir_all(out).map_err(write_err(out))?;
    let mut files = Vec::new();
    let mut svgs = Vec::new();
    for plot in Plot::ALL {
        let draw = |message| ReportError::Draw { plot: plot.name(), message };
        let svg = plot.svg(&data).map_err(draw)?;
        let svg_path = out.join(format!("{}.svg", plot.name()));
        std::fs::write(&svg_path, &svg).map_err(write_err(&svg_path))?;
        let png_path = out.join(format!("{}.png", plot.name()));
        plot.png(&data, &png_path).map_err(draw)?;
        files.push(svg_path);
        files.push(png_path);
        svgs.push((plot, svg));
    }
    let page = out.join("report.html");
    std::fs::write(&page, html::page(&data, db, &svgs)).map_err(write_err(&page))?;
    files.insert(0, page.clone());
    Ok(Written { page, files, campaign: data.campaign.id })
}

/// A duration in seconds for people: `42 s`, `12.5 min`, `6.9 h`.
pub fn human_seconds(s: f64) -> String {
    if !s.is_finite() {
        "-".to_owned()
    } else if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 90.0 * 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}
