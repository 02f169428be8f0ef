//! `lab export`: the experiment table as CSV or Parquet, for notebooks.
//!
//! One row per experiment, with one column per parameter and per measured output (named `param.<name>` and
//! `output.<name>` so they never collide with the fixed columns), the objective, the status and the times.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;

/// The file formats `lab export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values, RFC 4180 quoting.
    Csv,
    /// Apache Parquet, uncompressed.
    Parquet,
}

/// The experiment table of one campaign (or all), ready to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Parameter names, sorted.
    pub parameters: Vec<String>,
    /// Output names, sorted.
    pub outputs: Vec<String>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// One experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Campaign id.
    pub campaign: i64,
    /// Campaign name.
    pub campaign_name: String,
    /// Experiment number in the campaign.
    pub seq: i64,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Parameter values, in [`Table::parameters`] order.
    pub parameters: Vec<Option<f64>>,
    /// Output values, in [`Table::outputs`] order.
    pub outputs: Vec<Option<f64>>,
    /// The objective.
    pub objective: Option<f64>,
    /// Lab seconds from campaign start.
    pub started_at: f64,
    /// Lab seconds from campaign start.
    pub finished_at: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Reads the experiment table of `campaign` (every campaign if `None`).
pub fn read(conn: &Connection, campaign: Option<i64>) -> rusqlite::Result<Table> {
    let filter = campaign.map_or(String::new(), |c| format!("WHERE campaign_id = {c}"));
    let names = |sql: &str| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(sql)?;
        let v: BTreeSet<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(v.into_iter().collect())
    };
    let parameters = names(&format!(
        "SELECT DISTINCT p.name FROM parameters p JOIN experiments e ON e.id = p.experiment_id {filter}"
    ))?;
    let outputs = names(&format!(
        "SELECT DISTINCT m.name FROM measurements m JOIN experiments e ON e.id = m.experiment_id {filter}"
    ))?;
    // Values come from their tables, not from the view's JSON columns: SQLite writes reals into JSON with 15
    // significant digits, and an export must give back exactly what was recorded.
    let values = |sql: &str, names: &[String]| -> rusqlite::Result<HashMap<i64, Vec<Option<f64>>>> {
        let mut out: HashMap<i64, Vec<Option<f64>>> = HashMap::new();
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (experiment, name, value): (i64, String, Option<f64>) = (r.get(0)?, r.get(1)?, r.get(2)?);
            if let Some(i) = names.iter().position(|n| *n == name) {
                out.entry(experiment).or_insert_with(|| vec![None; names.len()])[i] = value;
            }
        }
        Ok(out)
    };
    let parameter_values = values(
        &format!(
            "SELECT p.experiment_id, p.name, p.value FROM parameters p JOIN experiments e ON e.id = p.experiment_id
             {filter}"
        ),
        &parameters,
    )?;
    // A repeated reading of an output: the last one counts, as in the view.
    let output_values = values(
        &format!(
            "SELECT m.experiment_id, m.name, m.value FROM measurements m JOIN experiments e ON e.id = m.experiment_id
             {filter} ORDER BY m.id"
        ),
        &outputs,
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT experiment_id, campaign_id, campaign, seq, status, objective, started_at, finished_at, error
         FROM experiment_view {filter} ORDER BY campaign_id, seq"
    ))?;
    let rows = stmt
        .query_map([], |r| {
            let id: i64 = r.get(0)?;
            let pick = |m: &HashMap<i64, Vec<Option<f64>>>, n: usize| m.get(&id).cloned().unwrap_or(vec![None; n]);
            Ok(Row {
                campaign: r.get(1)?,
                campaign_name: r.get(2)?,
                seq: r.get(3)?,
                status: r.get(4)?,
                parameters: pick(&parameter_values, parameters.len()),
                outputs: pick(&output_values, outputs.len()),
                objective: r.get(5)?,
                started_at: r.get(6)?,
                finished_at: r.get(7)?,
                error: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Table { parameters, outputs, rows })
}

impl Table {
    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = ["campaign", "campaign_name", "seq", "status"].map(str::to_owned).to_vec();
        h.extend(self.parameters.iter().map(|p| format!("param.{p}")));
        h.extend(self.outputs.iter().map(|o| format!("output.{o}")));
        h.extend(["objective", "started_at", "finished_at", "error"].map(str::to_owned));
        h
    }

    /// Writes the table as CSV.
    pub fn write_csv(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let quote = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
        };
        let num = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        writeln!(out, "{}", self.header().iter().map(|h| quote(h)).collect::<Vec<_>>().join(","))?;
        for r in &self.rows {
            let mut cells = vec![r.campaign.to_string(), quote(&r.campaign_name), r.seq.to_string(), quote(&r.status)];
            cells.extend(r.parameters.iter().map(|v| num(*v)));
            cells.extend(r.outputs.iter().map(|v| num(*v)));
            cells.push(num(r.objective));
            cells.push(r.started_at.to_string());
            cells.push(num(r.finished_at));
            cells.push(r.error.as_deref().map(quote).unwrap_or_default());
            writeln!(out, "{}", cells.join(","))?;
        }
        Ok(())
    }

    /// Writes the table as a Parquet file.
    pub fn write_parquet(&self, file: std::fs::File) -> Result<(), parquet::errors::ParquetError> {
        use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::types::Type;

        let header = self.header();
        let utf8 = |name: &str, required: bool| {
            Type::primitive_type_builder(name, parquet::basic::Type::BYTE_ARRAY)
                .with_repetition(if required {
                    parquet::basic::Repetition::REQUIRED
                } else {
                    parquet::basic::Repetition::OPTIONAL
                })
                .with_logical_type(Some(parquet::basic::LogicalType::String))
                .build()
        };
        let prim = |name: &str, t: parquet::basic::Type, required: bool| {
            Type::primitive_type_builder(name, t)
                .with_repetition(if required {
                    parquet::basic::Repetition::REQUIRED
                } else {
                    parquet::basic::Repetition::OPTIONAL
                })
                .build()
        };
        let mut fields = vec![
            Arc::new(prim(&header[0], parquet::basic::Type::INT64, true)?),
            Arc::new(utf8(&header[1], true)?),
            Arc::new(prim(&header[2], parquet::basic::Type::INT64, true)?),
            Arc::new(utf8(&header[3], true)?),
        ];
        for name in &header[4..header.len() - 4] {
            fields.push(Arc::new(prim(name, parquet::basic::Type::DOUBLE, false)?));
        }
        fields.push(Arc::new(prim("objective", parquet::basic::Type::DOUBLE, false)?));
        fields.push(Arc::new(prim("started_at", parquet::basic::Type::DOUBLE, true)?));
        fields.push(Arc::new(prim("finished_at", parquet::basic::Type::DOUBLE, false)?));
        fields.push(Arc::new(utf8("error", false)?));
        let schema = Arc::new(Type::group_type_builder("experiment").with_fields(fields).build()?);
        let mut writer = SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))?;
        let mut group = writer.next_row_group()?;
        let np = self.parameters.len();
        let mut column = 0usize;
        while let Some(mut col) = group.next_column()? {
            let doubles = |values: Vec<Option<f64>>| -> (Vec<f64>, Vec<i16>) {
                let defs = values.iter().map(|v| i16::from(v.is_some())).collect();
                (values.into_iter().flatten().collect(), defs)
            };
            match column {
                0 => {
                    let v: Vec<i64> = self.rows.iter().map(|r| r.campaign).collect();
                    col.typed::<Int64Type>().write_batch(&v, None, None)?;
                }
                2 => {
                    let v: Vec<i64> = self.rows.iter().map(|r| r.seq).collect();
                    col.typed::<Int64Type>().write_batch(&v, None, None)?;
                }
                1 | 3 => {
                    let v: Vec<ByteArray> = self
                        .rows
                        .iter()
                        .map(|r| {
                            ByteArray::from(if column == 1 { r.campaign_name.as_str() } else { r.status.as_str() })
                        })
                        .collect();
                    col.typed::<ByteArrayType>().write_batch(&v, None, None)?;
                }
                c if c >= 4 && c < header.len() - 1 => {
                    let k = c - 4;
                    let values: Vec<Option<f64>> = self
                        .rows
                        .iter()
                        .map(|r| {
                            if k < np {
                                r.parameters[k]
                            } else if k < np + self.outputs.len() {
                                r.outputs[k - np]
                            } else {
                                match k - np - self.outputs.len() {
                                    0 => r.objective,
                                    1 => Some(r.started_at),
                                    _ => r.finished_at,
                                }
                            }
                        })
                        .collect();
                    let required = k == np + self.outputs.len() + 1;
                    let (v, defs) = doubles(values);
                    col.typed::<DoubleType>().write_batch(&v, (!required).then_some(defs.as_slice()), None)?;
                }
                _ => {
                    let defs: Vec<i16> = self.rows.iter().map(|r| i16::from(r.error.is_some())).collect();
                    let v: Vec<ByteArray> =
                        self.rows.iter().filter_map(|r| r.error.as_deref().map(ByteArray::from)).collect();
                    col.typed::<ByteArrayType>().write_batch(&v, Some(&defs), None)?;
                }
            }
            col.close()?;
            column += 1;
        }
        group.close()?;
        writer.close()?;
        Ok(())
    }
}

/// Exports the experiment table of `campaign` (or all) from the record at `db` to `out`.
pub fn export(db: &Path, campaign: Option<i64>, format: Format, out: &Path) -> Result<usize, String> {
    let conn = Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("{}: {e}", db.display()))?;
    let table = read(&conn, campaign).map_err(|e| format!("{}: {e}", db.display()))?;
    let file = std::fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    match format {
        Format::Csv => {
            let mut w = std::io::BufWriter::new(file);
            table.write_csv(&mut w).and_then(|()| w.flush()).map_err(|e| format!("{}: {e}", out.display()))?;
        }
        Format::Parquet => table.write_parquet(file).map_err(|e| format!("{}: {e}", out.display()))?,
    }
    Ok(table.rows.len())
}
