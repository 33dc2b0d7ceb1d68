//! Per-appid results as files: CSV (RFC 4180, CRLF, a header, formula-safe cells) or JSONL, one
//! row per appid with the columns of [`COLUMNS`]. This is the file operators send to the Mini
//! Programs' administrators; `envshare batch results`, the API's
//! `GET /api/v1/batches/{id}/results` and the console's download all write it with
//! [`ResultsWriter`], so the three agree byte for byte.
//!
//! ```
//! use envshare::export::{ExportFormat, ResultsWriter};
//! let w = ResultsWriter::new(ExportFormat::Csv, Vec::new(), false).unwrap();
//! let bytes = w.finish().unwrap();
//! assert!(bytes.starts_with(b"batch_id,env,appid,state,"));
//! ```

use std::io::{self, Write};

use serde::Serialize;

use crate::clock;
use crate::store::{ResultRow, RowState};

/// The columns of a results file, in order (the CSV header and the JSONL keys).
pub const COLUMNS: [&str; 11] = [
    "batch_id",
    "env",
    "appid",
    "state",
    "confirm_url",
    "errcode",
    "errmsg",
    "reason",
    "attempts",
    "job_id",
    "updated_at",
];

/// The file format of a results export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// RFC 4180 CSV with CRLF line ends and a header line.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl ExportFormat {
    /// The media type to serve the format as.
    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Jsonl => "application/x-ndjson",
        }
    }

    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Csv => "csv",
            ExportFormat::Jsonl => "jsonl",
        }
    }
}

/// One row as a results file holds it: the columns of [`COLUMNS`], in order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExportRow<'a> {
    /// The batch.
    pub batch_id: &'a str,
    /// The environment.
    pub env: &'a str,
    /// The Mini Program.
    pub appid: &'a str,
    /// Where the pair stands.
    pub state: RowState,
    /// The administrator's confirmation URL, once WeChat gave one.
    pub confirm_url: Option<&'a str>,
    /// WeChat's error code of a failure.
    pub errcode: Option<i64>,
    /// WeChat's error message of a failure.
    pub errmsg: Option<&'a str>,
    /// Why the pair failed (`rejected`, `permanent_error`, …).
    pub reason: Option<&'a str>,
    /// Attempts made.
    pub attempts: u32,
    /// The job that carried the pair.
    pub job_id: &'a str,
    /// When the row last changed, RFC 3339 UTC to the second.
    pub updated_at: Option<String>,
}

impl<'a> ExportRow<'a> {
    /// The export columns of `r`.
    pub fn of(r: &'a ResultRow) -> Self {
        Self {
            batch_id: r.batch_id.as_str(),
            env: r.env.as_str(),
            appid: r.appid.as_str(),
            state: r.state,
            confirm_url: r.confirm_url.as_deref(),
            errcode: r.errcode,
            errmsg: r.errmsg.as_deref(),
            reason: r.reason.as_deref(),
            attempts: r.attempts,
            job_id: r.job_id.as_str(),
            updated_at: (r.updated_at_ms > 0).then(|| clock::iso8601_seconds(r.updated_at_ms)),
        }
    }
}

/// A text cell a spreadsheet would take for a formula (`=`, `+`, `-`, `@`, tab, carriage
/// return first) gets a leading `'`, which spreadsheets show as text and do not run.
pub fn cell(s: &str) -> std::borrow::Cow<'_, str> {
    match s.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => format!("'{s}").into(),
        _ => s.into(),
    }
}

/// Writes result rows in one format; the CSV header is written at once.
pub enum ResultsWriter<W: Write> {
    /// CSV.
    Csv(Box<csv::Writer<W>>),
    /// JSONL.
    Jsonl(W),
}

impl<W: Write> std::fmt::Debug for ResultsWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ResultsWriter::Csv(_) => "ResultsWriter::Csv",
            ResultsWriter::Jsonl(_) => "ResultsWriter::Jsonl",
        })
    }
}

impl<W: Write> ResultsWriter<W> {
    /// A writer of `format` into `out`; `bom` starts a CSV with a UTF-8 byte order mark (for
    /// Excel).
    pub fn new(format: ExportFormat, mut out: W, bom: bool) -> io::Result<Self> {
        Ok(match format {
            ExportFormat::Csv => {
                if bom {
                    out.write_all("\u{feff}".as_bytes())?;
                }
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(out);
                w.write_record(COLUMNS)?;
                ResultsWriter::Csv(Box::new(w))
            }
            ExportFormat::Jsonl => ResultsWriter::Jsonl(out),
        })
    }

    /// Writes one row.
    pub fn row(&mut self, r: &ResultRow) -> io::Result<()> {
        let o = ExportRow::of(r);
        match self {
            ResultsWriter::Csv(w) => {
                let errcode = o.errcode.map(|c| c.to_string()).unwrap_or_default();
                let attempts = o.attempts.to_string();
                let updated = o.updated_at.unwrap_or_default();
                w.write_record([
                    &*cell(o.batch_id),
                    &*cell(o.env),
                    o.appid,
                    o.state.as_str(),
                    &*cell(o.confirm_url.unwrap_or_default()),
                    errcode.as_str(),
                    &*cell(o.errmsg.unwrap_or_default()),
                    &*cell(o.reason.unwrap_or_default()),
                    attempts.as_str(),
                    &*cell(o.job_id),
                    updated.as_str(),
                ])?;
            }
            ResultsWriter::Jsonl(w) => {
                serde_json::to_writer(&mut *w, &o)?;
                w.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Writes out what is buffered (a response streamed a page at a time sends each page).
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            ResultsWriter::Csv(w) => w.flush(),
            ResultsWriter::Jsonl(w) => w.flush(),
        }
    }

    /// Flushes what is buffered and hands back the output.
    pub fn finish(self) -> io::Result<W> {
        match self {
            ResultsWriter::Csv(w) => w.into_inner().map_err(|e| e.into_error()),
            ResultsWriter::Jsonl(mut w) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_a_spreadsheet_would_run_is_kept_as_text() {
        assert_eq!(cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(cell("-1 system error"), "'-1 system error");
        assert_eq!(cell("@x"), "'@x");
        assert_eq!(
            cell("https://example.com/c?a=1"),
            "https://example.com/c?a=1"
        );
        assert_eq!(cell(""), "");
    }
}
