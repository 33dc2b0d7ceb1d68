//! Reading the rows of CSV or JSONL input: [`Records`].

use std::io::{self, BufRead, BufReader, Read};

use serde::Deserialize;

use super::{Format, ImportError, Pair, UTF8_BOM};
use crate::ids::{AppId, EnvId};

/// One row of the input: its line number and its pairs, or why it is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The line the row starts on, counted from 1 (a CSV header is line 1).
    pub line: u64,
    /// The row's pairs (one for CSV and `appid`, one or more for `appids`), or the reason the row
    /// is invalid (e.g. `appid "wx12": must be "wx" followed by 16 lowercase hex digits`).
    pub pairs: Result<Vec<Pair>, String>,
}

/// Reads the rows of an input one at a time (an iterator of [`Record`]s).
///
/// Build it with [`Records::new`]; it checks the CSV header at once.
pub struct Records<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    Csv {
        reader: csv::Reader<BlankLines<R>>,
        record: csv::ByteRecord,
        env: usize,
        appid: usize,
    },
    Jsonl {
        reader: BufReader<R>,
        buf: Vec<u8>,
        line: u64,
    },
}

impl<R: Read> Records<R> {
    /// Starts reading `input` as `format`. For CSV this reads and checks the header: an empty
    /// input is [`ImportError::Empty`] and a header without `env` or `appid` is
    /// [`ImportError::MissingColumn`].
    pub fn new(input: R, format: Format) -> Result<Self, ImportError> {
        let inner = match format {
            Format::Csv => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(true)
                    .flexible(true)
                    .trim(csv::Trim::All)
                    .from_reader(BlankLines::new(input));
                let header = reader.byte_headers().map_err(csv_error)?.clone();
                let names: Vec<String> = header
                    .iter()
                    .map(|h| {
                        String::from_utf8_lossy(h.strip_prefix(UTF8_BOM).unwrap_or(h))
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .collect();
                if names.iter().all(|n| n.is_empty()) {
                    let mut rest = csv::ByteRecord::new();
                    while reader.read_byte_record(&mut rest).map_err(csv_error)? {
                        if !is_blank(&rest) {
                            return Err(ImportError::MissingColumn {
                                column: "env",
                                found: "a blank line 1".to_owned(),
                            });
                        }
                    }
                    return Err(ImportError::Empty(
                        "",
                        "a header line \"env,appid\" and rows",
                    ));
                }
                let find = |column: &'static str| {
                    names.iter().position(|n| n == column).ok_or_else(|| {
                        ImportError::MissingColumn {
                            column,
                            found: names.join(","),
                        }
                    })
                };
                let env = find("env")?;
                let appid = find("appid")?;
                Inner::Csv {
                    reader,
                    record: csv::ByteRecord::new(),
                    env,
                    appid,
                }
            }
            Format::Jsonl => Inner::Jsonl {
                reader: BufReader::with_capacity(64 * 1024, input),
                buf: Vec::with_capacity(256),
                line: 0,
            },
        };
        Ok(Self { inner })
    }
}

/// Makes the csv crate's line numbers right. It records a row's line before it skips the line
/// end, so it counts a CRLF row one line short and does not count blank lines at all. This reader
/// turns every `\r` into a space (the fields are trimmed, and neither an env nor an appid can hold
/// one) and puts a space on every empty line, so each physical line is a record; the blank ones
/// are skipped by [`is_blank`] instead.
struct BlankLines<R> {
    inner: R,
    buf: Vec<u8>,
    at_line_start: bool,
    pending: Option<u8>,
}

impl<R: Read> BlankLines<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            buf: vec![0; 32 * 1024],
            at_line_start: true,
            pending: None,
        }
    }
}

impl<R: Read> Read for BlankLines<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if let Some(b) = self.pending.take() {
            out[0] = b;
            return Ok(1);
        }
        // Each input byte becomes at most two output bytes.
        let want = (out.len() / 2).clamp(1, self.buf.len());
        let n = self.inner.read(&mut self.buf[..want])?;
        let mut w = 0;
        for &b in &self.buf[..n] {
            let b = if b == b'\r' { b' ' } else { b };
            if b == b'\n' && self.at_line_start {
                out[w] = b' ';
                w += 1;
                if w == out.len() {
                    self.pending = Some(b);
                    self.at_line_start = true;
                    return Ok(w);
                }
            }
            out[w] = b;
            w += 1;
            self.at_line_start = b == b'\n';
        }
        Ok(w)
    }
}

fn is_blank(record: &csv::ByteRecord) -> bool {
    record.iter().all(<[u8]>::is_empty)
}

fn csv_error(e: csv::Error) -> ImportError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => ImportError::Io(e),
        other => ImportError::Io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{other:?}"),
        )),
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Record, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Csv {
                reader,
                record,
                env,
                appid,
            } => loop {
                // A loop, not a recursive call per blank row: a file of a million blank lines
                // must not exhaust the blocking thread's stack.
                match reader.read_byte_record(record) {
                    Ok(false) => return None,
                    Ok(true) if is_blank(record) => continue,
                    Ok(true) => {
                        let line = record.position().map_or(0, |p| p.line());
                        return Some(Ok(Record {
                            line,
                            pairs: csv_pair(record, *env, *appid).map(|p| vec![p]),
                        }));
                    }
                    Err(e) => {
                        // The csv crate's only non-I/O errors here are UTF-8 ones, which a
                        // ByteRecord cannot raise; anything else ends the import.
                        let line = e.position().map_or(0, |p| p.line());
                        return match e.into_kind() {
                            csv::ErrorKind::Io(e) => Some(Err(ImportError::Io(e))),
                            other => Some(Ok(Record {
                                line,
                                pairs: Err(format!("not a valid CSV row: {other:?}")),
                            })),
                        };
                    }
                }
            },
            Inner::Jsonl { reader, buf, line } => loop {
                buf.clear();
                match reader.read_until(b'\n', buf) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) => return Some(Err(ImportError::Io(e))),
                }
                *line += 1;
                let mut bytes = buf.as_slice();
                if *line == 1 {
                    bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
                }
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(Ok(Record {
                    line: *line,
                    pairs: json_pairs(bytes),
                }));
            },
        }
    }
}

fn field<'a>(record: &'a csv::ByteRecord, index: usize, name: &str) -> Result<&'a str, String> {
    let raw = record.get(index).ok_or_else(|| {
        format!(
            "missing the {name} column (the row has {} fields)",
            record.len()
        )
    })?;
    let s = std::str::from_utf8(raw).map_err(|_| format!("{name} is not valid UTF-8"))?;
    if s.is_empty() {
        return Err(format!("{name} is empty"));
    }
    Ok(s)
}

fn csv_pair(record: &csv::ByteRecord, env: usize, appid: usize) -> Result<Pair, String> {
    let env = parse_env(field(record, env, "env")?)?;
    let appid = parse_appid(field(record, appid, "appid")?)?;
    Ok((env, appid))
}

/// Checks one pair given as two strings, as a row of an import is checked (the strings are
/// trimmed): the pair, or why it is invalid (`appid "wx12": must be …`). For inputs that are
/// neither CSV nor JSONL, such as the pairs of an API request.
pub fn parse_pair(env: &str, appid: &str) -> Result<Pair, String> {
    let (env, appid) = (env.trim(), appid.trim());
    if env.is_empty() {
        return Err("env is empty".to_owned());
    }
    if appid.is_empty() {
        return Err("appid is empty".to_owned());
    }
    Ok((parse_env(env)?, parse_appid(appid)?))
}

fn parse_env(s: &str) -> Result<EnvId, String> {
    EnvId::parse(s).map_err(|e| e.to_string())
}

fn parse_appid(s: &str) -> Result<AppId, String> {
    AppId::parse(s).map_err(|e| e.to_string())
}

#[derive(Deserialize)]
struct JsonRow {
    env: Option<serde_json::Value>,
    appid: Option<serde_json::Value>,
    appids: Option<serde_json::Value>,
}

const JSONL_SHAPE: &str = r#"expected {"env":"…","appid":"wx…"} or {"env":"…","appids":["wx…",…]}"#;

fn json_str<'a>(v: &'a serde_json::Value, name: &str) -> Result<&'a str, String> {
    v.as_str()
        .ok_or_else(|| format!("{name} must be a string, found {v}"))
}

fn json_pairs(bytes: &[u8]) -> Result<Vec<Pair>, String> {
    let row: JsonRow = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            format!("not a JSON object: {JSONL_SHAPE}")
        } else {
            format!("not valid JSON ({e}): {JSONL_SHAPE}")
        }
    })?;
    let env = row
        .env
        .as_ref()
        .ok_or_else(|| format!("no \"env\" field: {JSONL_SHAPE}"))?;
    let env = parse_env(json_str(env, "env")?)?;
    match (row.appid, row.appids) {
        (Some(appid), None) => Ok(vec![(env, parse_appid(json_str(&appid, "appid")?)?)]),
        (None, Some(serde_json::Value::Array(list))) => {
            if list.is_empty() {
                return Err("appids is an empty list".to_owned());
            }
            list.iter()
                .enumerate()
                .map(|(i, v)| {
                    let s = json_str(v, &format!("appids[{i}]"))?;
                    let appid = AppId::parse(s).map_err(|e| format!("appids[{i}]: {e}"))?;
                    Ok((env.clone(), appid))
                })
                .collect()
        }
        (None, Some(other)) => Err(format!("appids must be a list of strings, found {other}")),
        (Some(_), Some(_)) => Err("has both \"appid\" and \"appids\": give one of them".to_owned()),
        (None, None) => Err(format!("no \"appid\" or \"appids\" field: {JSONL_SHAPE}")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn a_csv_with_bom_crlf_reordered_and_extra_columns_reads_by_header() {
        let input = format!("\u{feff}note,APPID,env\r\nx,{A},prod\r\ny, {B} ,test\r\n");
        let got = records(&input, Format::Csv);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].line, 2);
        assert_eq!(got[0].pairs, Ok(vec![pair("prod", A)]));
        assert_eq!(got[1].line, 3);
        assert_eq!(got[1].pairs, Ok(vec![pair("test", B)]));
    }

    #[test]
    fn a_csv_line_number_counts_the_header_as_line_1() {
        let input = format!("env,appid\nprod,{A}\nprod,wxBAD\n\nprod,{B}\n");
        let got = records(&input, Format::Csv);
        let lines: Vec<u64> = got.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![2, 3, 5]);
        let reason = got[1].pairs.clone().unwrap_err();
        assert!(
            reason.contains("appid") && reason.contains("wxBAD"),
            "{reason}"
        );
    }

    #[test]
    fn crlf_and_blank_lines_keep_csv_line_numbers_exact() {
        let input = format!("env,appid\r\n\r\nprod,{A}\r\n\n\nprod,wxBAD\r\n");
        let got = records(&input, Format::Csv);
        let lines: Vec<u64> = got.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 6]);
    }

    #[test]
    fn blank_lines_through_a_one_byte_buffer_still_count() {
        let mut r = BlankLines::new("a\n\nb\r\n".as_bytes());
        let mut out = Vec::new();
        let mut byte = [0u8; 1];
        while r.read(&mut byte).unwrap() == 1 {
            out.push(byte[0]);
        }
        assert_eq!(out, b"a\n \nb \n");
    }

    #[test]
    fn a_csv_row_missing_a_field_is_invalid_not_fatal() {
        let got = records("env,appid\nprod\nprod,\n", Format::Csv);
        assert!(
            got[0]
                .pairs
                .clone()
                .unwrap_err()
                .contains("missing the appid column")
        );
        assert!(got[1].pairs.clone().unwrap_err().contains("appid is empty"));
    }

    #[test]
    fn a_csv_header_without_appid_is_a_missing_column() {
        let err = Records::new("env,app\nprod,x\n".as_bytes(), Format::Csv)
            .err()
            .unwrap();
        assert!(matches!(
            err,
            ImportError::MissingColumn {
                column: "appid",
                ..
            }
        ));
        assert!(err.to_string().contains("found: env,app"), "{err}");
    }

    #[test]
    fn jsonl_reads_both_shapes_and_skips_blank_lines() {
        let input = format!(
            "{{\"env\":\"prod\",\"appid\":\"{A}\",\"note\":1}}\r\n\n{{\"env\":\"test\",\"appids\":[\"{B}\",\"{C}\"]}}\n"
        );
        let got = records(&input, Format::Jsonl);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].line, 1);
        assert_eq!(got[0].pairs, Ok(vec![pair("prod", A)]));
        assert_eq!(got[1].line, 3);
        assert_eq!(got[1].pairs, Ok(vec![pair("test", B), pair("test", C)]));
    }

    #[test]
    fn jsonl_names_what_is_wrong_with_a_line() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1,2]", "not a JSON object"),
            (r#"{"appid":"wx0000000000000001"}"#, "no \"env\""),
            (r#"{"env":"prod"}"#, "no \"appid\" or \"appids\""),
            (r#"{"env":"prod","appids":[]}"#, "empty list"),
            (
                r#"{"env":"prod","appids":["wx0000000000000001","x"]}"#,
                "appids[1]",
            ),
            (
                r#"{"env":"prod","appids":"wx0000000000000001"}"#,
                "must be a list",
            ),
            (
                r#"{"env":7,"appid":"wx0000000000000001"}"#,
                "env must be a string",
            ),
            (
                r#"{"env":"a b","appid":"wx0000000000000001"}"#,
                "invalid env",
            ),
            (
                r#"{"env":"p","appid":"wx0000000000000001","appids":["wx0000000000000001"]}"#,
                "both",
            ),
        ];
        for (line, expected) in cases {
            let got = records(line, Format::Jsonl);
            let reason = got[0].pairs.clone().unwrap_err();
            assert!(reason.contains(expected), "{line}: {reason}");
        }
    }

    #[test]
    fn a_million_blank_csv_rows_are_skipped_without_deep_recursion() {
        // The blocking pool's threads have 2 MiB stacks: run on one of that size.
        let mut input = String::from("env,appid\n");
        input.push_str(&"\n".repeat(1_000_000));
        input.push_str(&format!("prod,{A}\n"));
        let got = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || records(&input, Format::Csv))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].line, 1_000_002);
        assert_eq!(got[0].pairs, Ok(vec![pair("prod", A)]));
    }
}
