//! Reading the record: `lab status`, `lab report`, `lab verify`, `lab export` and `lab replay`.

use std::path::Path;

use super::exit_code;

/// `lab status`: what a campaign is doing, from the record.
pub fn status_command(db: &Path, campaign: Option<i64>) -> u8 {
    match controller::inspect::status::status_text(db, campaign) {
        Ok(text) => {
            print!("{text}");
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab report`: a campaign's web page with plots and tables.
pub fn report_command(db: &Path, campaign: Option<i64>, out: &Path) -> u8 {
    match controller::inspect::report::write_report(db, campaign, out) {
        Ok(w) => {
            println!("wrote the report of campaign {} to {}", w.campaign, w.page.display());
            for f in w.files.iter().skip(1) {
                println!("  {}", f.display());
            }
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab verify`: the record's hash chain, checkpoints (and their signatures) and tables checked.
pub fn verify_command(db: &Path, public_key: Option<&str>) -> u8 {
    let trusted = match public_key.map(controller::record::signing::read_public_key).transpose() {
        Ok(k) => k,
        Err(e) => {
            eprintln!("lab: {e}");
            return exit_code::USAGE;
        }
    };
    match controller::record::verify::verify_with(db, trusted.as_ref()) {
        Ok(r) if r.is_intact() => {
            println!(
                "{}: intact. {} journal rows in an unbroken hash chain, {} checkpoint{}, {} table rows match the journal.",
                db.display(),
                r.journal_rows,
                r.checkpoints,
                if r.checkpoints == 1 { "" } else { "s" },
                r.rows_compared
            );
            for key in &r.signers {
                println!("checkpoints signed by key {key}");
            }
            if r.signed == 0 && trusted.is_none() {
                println!(
                    "the checkpoints are not signed: whoever can edit the file could rewrite them with the chain \
                     (compare the head below with the one the campaign printed, or sign campaigns: `lab key new`)"
                );
            }
            match (trusted.is_some(), r.unproven) {
                (true, Some((from, to))) => println!(
                    "signed by the key given up to journal row {}; rows {from} to {to} were written since by the \
                     controller running now, and its next checkpoint signs them",
                    from - 1
                ),
                (true, None) => println!("signed by the key given up to the last journal row"),
                _ => {}
            }
            println!("head {}", r.head);
            exit_code::OK
        }
        Ok(r) => {
            println!("{}: NOT intact ({} problem(s)):", db.display(), r.problems.len());
            for p in &r.problems {
                println!("  {p}");
            }
            exit_code::INVALID_INPUT
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab export`: the experiment table as CSV or Parquet.
pub fn export_command(db: &Path, campaign: Option<i64>, format: &str, out: &Path) -> u8 {
    let format = if format == "parquet" {
        controller::record::export::Format::Parquet
    } else {
        controller::record::export::Format::Csv
    };
    match controller::record::export::export(db, campaign, format, out) {
        Ok(n) => {
            println!("wrote {n} experiments to {}", out.display());
            exit_code::OK
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}

/// `lab replay`: one instrument's session from the record, or a transcript file, replayed against its driver.
pub fn replay_command(
    db: &Path,
    campaign: Option<i64>,
    instrument: Option<&str>,
    transcript: Option<&Path>,
    lab: Option<&Path>,
) -> u8 {
    let report = match (transcript, lab, instrument) {
        (Some(t), Some(l), _) => controller::inspect::replay::from_file(t, l),
        (_, _, Some(i)) => controller::inspect::replay::from_record(db, campaign, i),
        _ => Err("give --instrument (from the record) or --transcript with --lab".to_owned()),
    };
    match report {
        Ok(r) => {
            print!("{r}");
            if r.reproduced() { exit_code::OK } else { exit_code::INVALID_INPUT }
        }
        Err(e) => {
            eprintln!("lab: {e}");
            exit_code::CANNOT_RUN
        }
    }
}
