//! What a page's query string asks for (filters, sorting, paging), parsed and checked before any query runs.
//!
//! A browser sends whatever is in its address bar, so every value is checked here and a wrong one is refused with a
//! page that names the parameter, the value and what would be right (`BadQuery`), never passed on to SQL: sort keys
//! come from a fixed list, and values are bound as parameters. Unknown parameters are ignored, so a link with extra
//! fields (a token, a cache-buster) still works. Empty values mean "not given", as an empty form field does.

use std::collections::HashMap;

/// A query-string value that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the query's `{field}` is `{value}`: {why}")]
pub struct BadQuery {
    /// The parameter.
    pub field: String,
    /// Its value, shortened for the page.
    pub value: String,
    /// What would be right.
    pub why: String,
}

fn bad(field: &str, value: &str, why: impl Into<String>) -> BadQuery {
    let value: String = value.chars().take(80).collect();
    BadQuery { field: field.to_owned(), value, why: why.into() }
}

/// The most rows one page of a table shows.
pub const MAX_PER_PAGE: u32 = 500;
/// Rows per page when the query does not say.
pub const DEFAULT_PER_PAGE: u32 = 100;
/// The longest text a search or a name may be.
const MAX_TEXT: usize = 200;

/// A query string's fields, by name, with empty values dropped.
#[derive(Debug, Clone, Default)]
pub struct Fields(HashMap<String, String>);

impl Fields {
    /// The fields of a raw query string (`a=1&b=x`), percent-decoded.
    pub fn parse(raw: Option<&str>) -> Fields {
        Fields(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .filter(|(_, v)| !v.trim().is_empty())
                .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    /// The value of field `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn text(&self, name: &str) -> Result<Option<String>, BadQuery> {
        match self.get(name) {
            Some(v) if v.chars().count() > MAX_TEXT => Err(bad(name, v, format!("at most {MAX_TEXT} characters"))),
            v => Ok(v.map(str::to_owned)),
        }
    }

    fn number(&self, name: &str) -> Result<Option<f64>, BadQuery> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Some(x)),
                _ => Err(bad(name, v, "a number, like 2.5 or -1e3")),
            },
        }
    }

    fn count(&self, name: &str, default: u32, max: u32) -> Result<u32, BadQuery> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 && n <= u64::from(max) => Ok(n as u32),
                _ => Err(bad(name, v, format!("a whole number from 1 to {max}"))),
            },
        }
    }
}

/// One page of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// The page, from 1.
    pub page: u32,
    /// Rows per page.
    pub per: u32,
}

impl Paging {
    /// `page` and `per` from the query.
    pub fn parse(f: &Fields) -> Result<Paging, BadQuery> {
        Ok(Paging { page: f.count("page", 1, 1_000_000_000)?, per: f.count("per", DEFAULT_PER_PAGE, MAX_PER_PAGE)? })
    }

    /// Rows to skip.
    pub fn offset(self) -> i64 {
        i64::from(self.page - 1) * i64::from(self.per)
    }

    /// The number of pages `rows` rows fill (at least one).
    pub fn pages(self, rows: i64) -> i64 {
        (rows.max(1) + i64::from(self.per) - 1) / i64::from(self.per)
    }
}

/// The experiment table's columns a page may sort by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SortKey {
    /// The experiment's number.
    Seq,
    /// Its status.
    Status,
    /// The measured objective.
    Objective,
    /// When it started.
    Started,
    /// How long it took.
    Duration,
    /// A parameter's value.
    Parameter(String),
}

impl SortKey {
    /// The key as written in a query (`seq`, `objective`, `param:volume`).
    pub fn name(&self) -> String {
        match self {
            SortKey::Seq => "seq".to_owned(),
            SortKey::Status => "status".to_owned(),
            SortKey::Objective => "objective".to_owned(),
            SortKey::Started => "started".to_owned(),
            SortKey::Duration => "duration".to_owned(),
            SortKey::Parameter(p) => format!("param:{p}"),
        }
    }

    fn parse(v: &str) -> Option<SortKey> {
        Some(match v {
            "seq" => SortKey::Seq,
            "status" => SortKey::Status,
            "objective" => SortKey::Objective,
            "started" => SortKey::Started,
            "duration" => SortKey::Duration,
            _ => SortKey::Parameter(v.strip_prefix("param:").filter(|p| !p.is_empty())?.to_owned()),
        })
    }
}

/// What the list of campaigns shows.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignQuery {
    /// Only campaigns with this status.
    pub status: Option<String>,
    /// Only campaigns whose name contains this (in any case).
    pub search: Option<String>,
}

impl CampaignQuery {
    /// The campaign list's query, checked.
    pub fn parse(f: &Fields) -> Result<CampaignQuery, BadQuery> {
        let status = f.text("status")?;
        if let Some(s) = &status
            && !matches!(s.as_str(), "running" | "finished" | "aborted" | "failed")
        {
            return Err(bad("status", s, "one of running, finished, aborted, failed (or empty for all)"));
        }
        Ok(CampaignQuery { status, search: f.text("q")? })
    }
}

/// What the experiment table shows: filters, order and page.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentQuery {
    /// Only experiments with this status.
    pub status: Option<String>,
    /// Text to find: an experiment's number, or words of its error or of the reason it was proposed.
    pub search: Option<String>,
    /// Only experiments whose parameter of this name lies in [`ExperimentQuery::min`, `max`].
    pub parameter: Option<String>,
    /// The parameter's lowest value.
    pub min: Option<f64>,
    /// The parameter's highest value.
    pub max: Option<f64>,
    /// Only experiments with a step that ran on this instrument.
    pub instrument: Option<String>,
    /// The column to sort by.
    pub sort: SortKey,
    /// Largest first.
    pub descending: bool,
    /// The page.
    pub paging: Paging,
}

impl ExperimentQuery {
    /// The experiment table's query, checked.
    pub fn parse(f: &Fields) -> Result<ExperimentQuery, BadQuery> {
        let status = f.text("status")?;
        if let Some(s) = &status
            && !matches!(s.as_str(), "running" | "succeeded" | "failed")
        {
            return Err(bad("status", s, "one of running, succeeded, failed (or empty for all)"));
        }
        let sort = match f.get("sort") {
            None => SortKey::Seq,
            Some(v) => SortKey::parse(v).ok_or_else(|| {
                bad("sort", v, "one of seq, status, objective, started, duration, or param:NAME for a parameter")
            })?,
        };
        let descending = match f.get("dir") {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(v) => return Err(bad("dir", v, "asc or desc")),
        };
        let parameter = f.text("param")?;
        let (min, max) = (f.number("min")?, f.number("max")?);
        if parameter.is_none() && (min.is_some() || max.is_some()) {
            return Err(bad("param", "", "name the parameter that `min` and `max` bound"));
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            return Err(bad("min", &lo.to_string(), format!("at most `max` ({hi})")));
        }
        Ok(ExperimentQuery {
            status,
            search: f.text("q")?,
            parameter,
            min,
            max,
            instrument: f.text("instrument")?,
            sort,
            descending,
            paging: Paging::parse(f)?,
        })
    }

    /// The query string of these filters, with the sort, direction and page changed as given: for the links of
    /// the table's headers, its pages and its export.
    pub fn href(&self, sort: Option<&SortKey>, descending: Option<bool>, page: Option<u32>) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                s.append_pair(k, &v);
            }
        };
        put("status", self.status.clone());
        put("q", self.search.clone());
        put("param", self.parameter.clone());
        put("min", self.min.map(|v| v.to_string()));
        put("max", self.max.map(|v| v.to_string()));
        put("instrument", self.instrument.clone());
        let sort = sort.unwrap_or(&self.sort);
        if *sort != SortKey::Seq {
            put("sort", Some(sort.name()));
        }
        if descending.unwrap_or(self.descending) {
            put("dir", Some("desc".to_owned()));
        }
        let page = page.unwrap_or(self.paging.page);
        if page != 1 {
            put("page", Some(page.to_string()));
        }
        if self.paging.per != DEFAULT_PER_PAGE {
            put("per", Some(self.paging.per.to_string()));
        }
        s.finish()
    }
}

/// What the wire log shows: one instrument's exchanges (or every instrument's), a page at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeQuery {
    /// Only this instrument's exchanges.
    pub instrument: Option<String>,
    /// Only exchanges that failed.
    pub errors_only: bool,
    /// The page.
    pub paging: Paging,
}

impl ExchangeQuery {
    /// The wire log's query, checked.
    pub fn parse(f: &Fields) -> Result<ExchangeQuery, BadQuery> {
        let errors_only = match f.get("errors") {
            None | Some("0") => false,
            Some("1") => true,
            Some(v) => return Err(bad("errors", v, "1 for failed exchanges only, or 0")),
        };
        Ok(ExchangeQuery { instrument: f.text("instrument")?, errors_only, paging: Paging::parse(f)? })
    }

    /// The query string of these filters on another page.
    pub fn href(&self, page: u32) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        if let Some(i) = &self.instrument {
            s.append_pair("instrument", i);
        }
        if self.errors_only {
            s.append_pair("errors", "1");
        }
        if page != 1 {
            s.append_pair("page", &page.to_string());
        }
        if self.paging.per != DEFAULT_PER_PAGE {
            s.append_pair("per", &self.paging.per.to_string());
        }
        s.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(raw: &str) -> Result<ExperimentQuery, BadQuery> {
        ExperimentQuery::parse(&Fields::parse(Some(raw)))
    }

    #[test]
    fn a_query_string_becomes_filters_and_back() {
        let e =
            q("status=succeeded&param=volume&min=10&max=20.5&sort=param%3Avolume&dir=desc&page=3&per=50&x=1").unwrap();
        assert_eq!(e.status.as_deref(), Some("succeeded"));
        assert_eq!((e.min, e.max), (Some(10.0), Some(20.5)));
        assert_eq!(e.sort, SortKey::Parameter("volume".into()));
        assert!(e.descending);
        assert_eq!(e.paging, Paging { page: 3, per: 50 });
        assert_eq!(q(&e.href(None, None, None)).unwrap(), e);
        let empty = q("status=&q=&page=").unwrap();
        assert_eq!((empty.status, empty.search, empty.paging.page), (None, None, 1));
    }

    #[test]
    fn wrong_values_name_the_field_and_the_fix() {
        for (raw, field) in [
            ("per=100000", "per"),
            ("per=0", "per"),
            ("page=-1", "page"),
            ("page=abc", "page"),
            ("per=99999999999999999999999", "per"),
            ("status=exploded", "status"),
            ("sort=objective;drop%20table%20steps", "sort"),
            ("sort=param%3A", "sort"),
            ("dir=up", "dir"),
            ("min=1", "param"),
            ("param=v&min=nan", "min"),
            ("param=v&min=3&max=2", "min"),
        ] {
            let e = q(raw).expect_err(raw);
            assert_eq!(e.field, field, "{raw}: {e}");
        }
        let long = format!("q={}", "x".repeat(500));
        assert_eq!(q(&long).unwrap_err().value.len(), 80, "a long value is shortened on the page");
    }

    #[test]
    fn pages_count_rows() {
        let p = Paging { page: 2, per: 100 };
        assert_eq!((p.offset(), p.pages(0), p.pages(100), p.pages(101)), (100, 1, 1, 2));
    }
}
