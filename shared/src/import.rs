//! Bulk import of `(env, appid)` pairs from CSV or JSONL (DESIGN.md §7, `envshare import`).
//!
//! An import streams its input twice, so memory stays flat however long the file is:
//!
//! 1. [`validate`] reads every row, collects the invalid ones (the first few with their line
//!    numbers, a count of the rest), counts pairs per env and remembers each distinct pair in a
//!    compact [`PairSet`] (16 bytes of key per pair, about 30 MB for 1,000,000 pairs with the
//!    hash table's overhead). Nothing is enqueued in this pass, so a file with a bad row
//!    enqueues nothing.
//! 2. The caller reads the same input again through [`Records`] and feeds each pair to a
//!    [`Planner`], which folds duplicate pairs (a pair is taken the first time it is seen, using
//!    the set from pass 1) and groups appids by env into [`Chunk`]s of `chunk_size` appids. Only
//!    one partly filled chunk per env is held in memory.
//!
//! Inputs:
//! - CSV with a header naming the columns `env` and `appid` (any order, any case, extra columns
//!   ignored); a UTF-8 BOM and CRLF line ends are accepted; fields are trimmed.
//! - JSONL: one object per line, `{"env":…,"appid":…}` or `{"env":…,"appids":[…]}`; other fields
//!   are ignored; blank lines are skipped.
//!
//! Lines are counted from 1 and a CSV header is line 1, so `FILE:LINE` points into the file.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::str::FromStr;

use serde::Deserialize;

use crate::ids::{AppId, BatchId, EnvId};
use crate::store::{EnqueueOptions, EnqueueReport, NewJob, Queue, StoreError};

/// How many invalid lines [`validate`] keeps with their reason by default; the rest are counted.
pub const DEFAULT_MAX_REPORTED: usize = 20;

/// The input format of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CSV with a header naming `env` and `appid`.
    Csv,
    /// One JSON object per line (JSON Lines / NDJSON).
    Jsonl,
}

impl Format {
    /// The format a file name implies: `.csv` → CSV, `.jsonl` / `.ndjson` → JSONL (any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }

    /// Guesses the format from the first bytes of the input: a first non-blank character `{`
    /// means JSONL; a first line that names both `env` and `appid` means CSV. `None` otherwise.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        let head = head.strip_prefix(UTF8_BOM).unwrap_or(head);
        let first = head.iter().position(|b| !b.is_ascii_whitespace())?;
        let head = &head[first..];
        if head[0] == b'{' {
            return Some(Self::Jsonl);
        }
        let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
        let line = String::from_utf8_lossy(&head[..line_end]).to_ascii_lowercase();
        let names: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        (names.contains(&"env") && names.contains(&"appid")).then_some(Self::Csv)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Csv => "csv",
            Self::Jsonl => "jsonl",
        })
    }
}

impl FromStr for Format {
    type Err = ImportError;
    fn from_str(s: &str) -> Result<Self, ImportError> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Self::Csv),
            "jsonl" | "ndjson" => Ok(Self::Jsonl),
            _ => Err(ImportError::UnknownFormat {
                what: format!("format {s:?}"),
            }),
        }
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// An error that stops an import as a whole (a bad row is not one: see [`Record`]).
///
/// None of these is retryable as is: each needs a different file or different flags.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the input failed.
    #[error("reading the input failed: {0}")]
    Io(#[from] io::Error),
    /// The input holds no rows.
    #[error("the input is empty{0}: it needs {1}")]
    Empty(&'static str, &'static str),
    /// The format could not be told.
    #[error(
        "unknown input format ({what}): name the file .csv, .jsonl or .ndjson, or pass --format csv|jsonl"
    )]
    UnknownFormat {
        /// What was looked at.
        what: String,
    },
    /// The CSV header lacks a required column.
    #[error(
        "line 1: the CSV header has no {column:?} column (found: {found}); the header must name the columns env and appid, e.g. \"env,appid\""
    )]
    MissingColumn {
        /// The missing column's name.
        column: &'static str,
        /// The header's column names, comma-separated.
        found: String,
    },
}

/// One `(env, appid)` pair.
pub type Pair = (EnvId, AppId);

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
            } => match reader.read_byte_record(record) {
                Ok(false) => None,
                Ok(true) if is_blank(record) => self.next(),
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    Some(Ok(Record {
                        line,
                        pairs: csv_pair(record, *env, *appid).map(|p| vec![p]),
                    }))
                }
                Err(e) => {
                    // The csv crate's only non-I/O errors here are UTF-8 ones, which a
                    // ByteRecord cannot raise; anything else ends the import.
                    let line = e.position().map_or(0, |p| p.line());
                    match e.into_kind() {
                        csv::ErrorKind::Io(e) => Some(Err(ImportError::Io(e))),
                        other => Some(Ok(Record {
                            line,
                            pairs: Err(format!("not a valid CSV row: {other:?}")),
                        })),
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

/// One invalid line: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLine {
    /// The line number, counted from 1.
    pub line: u64,
    /// Why the row was rejected.
    pub reason: String,
}

/// The distinct `(env, appid)` pairs of an input, stored compactly: each env is interned to a
/// number and each appid is kept as the 64-bit value of its 16 hex digits, so a pair costs a
/// 16-byte key (plus the hash table's overhead, about 30 bytes per pair in all).
#[derive(Debug, Default)]
pub struct PairSet {
    envs: HashMap<EnvId, u32>,
    pairs: HashSet<(u32, u64)>,
}

fn appid_bits(appid: &AppId) -> u64 {
    // AppId guarantees "wx" + 16 lowercase hex digits, so this cannot fail.
    u64::from_str_radix(&appid.as_str()[2..], 16).unwrap_or_default()
}

impl PairSet {
    /// Adds a pair; `true` if it was not in the set yet.
    pub fn insert(&mut self, env: &EnvId, appid: &AppId) -> bool {
        let next = u32::try_from(self.envs.len()).unwrap_or(u32::MAX);
        let e = match self.envs.get(env) {
            Some(&e) => e,
            None => {
                self.envs.insert(env.clone(), next);
                next
            }
        };
        self.pairs.insert((e, appid_bits(appid)))
    }

    /// Removes a pair; `true` if it was in the set.
    pub fn remove(&mut self, env: &EnvId, appid: &AppId) -> bool {
        match self.envs.get(env) {
            Some(&e) => self.pairs.remove(&(e, appid_bits(appid))),
            None => false,
        }
    }

    /// The number of pairs in the set.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether the set holds no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// What one env of an import amounts to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EnvCount {
    /// Distinct appids to share with the env.
    pub appids: u64,
    /// Jobs they make at the import's chunk size.
    pub jobs: u64,
}

/// The result of the validating pass over an input ([`validate`]).
#[derive(Debug)]
pub struct Validation {
    /// Rows read (blank JSONL lines and the CSV header are not rows).
    pub rows: u64,
    /// Rows that were valid.
    pub valid_rows: u64,
    /// Rows that were invalid.
    pub invalid_rows: u64,
    /// The first invalid rows, in order, at most the cap given to [`validate`].
    pub errors: Vec<InvalidLine>,
    /// Pairs in the valid rows, duplicates included.
    pub pairs: u64,
    /// Pairs that repeat an earlier pair of the input (folded: each pair is enqueued once).
    pub duplicates: u64,
    /// Distinct pairs and jobs per env, sorted by env.
    pub envs: BTreeMap<EnvId, EnvCount>,
    /// The distinct pairs, for the second pass ([`Planner::new`]).
    pub seen: PairSet,
}

impl Validation {
    /// Distinct pairs in the input.
    pub fn unique_pairs(&self) -> u64 {
        self.seen.len() as u64
    }

    /// Jobs the input makes at the chunk size given to [`validate`].
    pub fn jobs(&self) -> u64 {
        self.envs.values().map(|c| c.jobs).sum()
    }

    /// Invalid rows beyond the ones listed in [`Validation::errors`].
    pub fn unlisted_errors(&self) -> u64 {
        self.invalid_rows - self.errors.len() as u64
    }
}

/// Reads all of `input` once: checks every row, keeps the first `max_reported` invalid rows,
/// counts pairs, and folds duplicates. `chunk_size` (at least 1) gives the job counts.
///
/// An input without a single row is [`ImportError::Empty`].
pub fn validate<R: Read>(
    input: R,
    format: Format,
    chunk_size: usize,
    max_reported: usize,
) -> Result<Validation, ImportError> {
    let chunk = chunk_size.max(1) as u64;
    let mut v = Validation {
        rows: 0,
        valid_rows: 0,
        invalid_rows: 0,
        errors: Vec::new(),
        pairs: 0,
        duplicates: 0,
        envs: BTreeMap::new(),
        seen: PairSet::default(),
    };
    for record in Records::new(input, format)? {
        let record = record?;
        v.rows += 1;
        match record.pairs {
            Ok(pairs) => {
                v.valid_rows += 1;
                for (env, appid) in pairs {
                    v.pairs += 1;
                    if !v.seen.insert(&env, &appid) {
                        v.duplicates += 1;
                        continue;
                    }
                    // Look up before inserting: cloning the env for every pair would allocate
                    // a million strings for a million rows.
                    match v.envs.get_mut(&env) {
                        Some(count) => count.appids += 1,
                        None => {
                            v.envs.insert(env, EnvCount { appids: 1, jobs: 0 });
                        }
                    }
                }
            }
            Err(reason) => {
                v.invalid_rows += 1;
                if v.errors.len() < max_reported {
                    v.errors.push(InvalidLine {
                        line: record.line,
                        reason,
                    });
                }
            }
        }
    }
    if v.rows == 0 {
        return Err(match format {
            Format::Csv => ImportError::Empty(" (a header but no rows)", "one row per pair"),
            Format::Jsonl => ImportError::Empty("", "one JSON object per line"),
        });
    }
    for count in v.envs.values_mut() {
        count.jobs = count.appids.div_ceil(chunk);
    }
    Ok(v)
}

/// A job's worth of pairs: one env and up to `chunk_size` appids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The env to share.
    pub env: EnvId,
    /// The appids to share it with, distinct, in input order.
    pub appids: Vec<AppId>,
}

/// The second pass: folds duplicate pairs and groups appids by env into [`Chunk`]s.
///
/// Memory: one partly filled chunk per env, plus the pair set of the first pass (which shrinks
/// as pairs are taken).
#[derive(Debug)]
pub struct Planner {
    seen: PairSet,
    chunk_size: usize,
    buffers: HashMap<EnvId, Vec<AppId>>,
}

impl Planner {
    /// A planner that takes each pair of `seen` once and makes chunks of `chunk_size` (at least 1)
    /// appids.
    pub fn new(seen: PairSet, chunk_size: usize) -> Self {
        Self {
            seen,
            chunk_size: chunk_size.max(1),
            buffers: HashMap::new(),
        }
    }

    /// Offers one pair; returns a full chunk when this pair completes one. A pair not in the
    /// set (a duplicate already taken, or one the first pass did not see) is ignored.
    pub fn push(&mut self, env: EnvId, appid: AppId) -> Option<Chunk> {
        if !self.seen.remove(&env, &appid) {
            return None;
        }
        let buffer = match self.buffers.get_mut(&env) {
            Some(b) => b,
            None => self.buffers.entry(env.clone()).or_default(),
        };
        buffer.push(appid);
        if buffer.len() < self.chunk_size {
            return None;
        }
        let appids = std::mem::replace(buffer, Vec::with_capacity(self.chunk_size));
        Some(Chunk { env, appids })
    }

    /// The remaining partly filled chunks, sorted by env.
    pub fn finish(self) -> Vec<Chunk> {
        let mut rest: Vec<Chunk> = self
            .buffers
            .into_iter()
            .filter(|(_, appids)| !appids.is_empty())
            .map(|(env, appids)| Chunk { env, appids })
            .collect();
        rest.sort_by(|a, b| a.env.cmp(&b.env));
        rest
    }
}

/// The second pass as an iterator: reads `input` again and yields the chunks of the
/// [`Planner`] (its full chunks as they fill, then the partly filled ones). Invalid rows are
/// skipped: the first pass already reported them.
pub struct Chunks<R: Read> {
    records: Records<R>,
    planner: Option<Planner>,
    rest: std::vec::IntoIter<Chunk>,
    pending: Vec<Chunk>,
}

impl<R: Read> Chunks<R> {
    /// Starts the second pass over `input`, with the planner built from the first pass.
    pub fn new(input: R, format: Format, planner: Planner) -> Result<Self, ImportError> {
        Ok(Self {
            records: Records::new(input, format)?,
            planner: Some(planner),
            rest: Vec::new().into_iter(),
            pending: Vec::new(),
        })
    }
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = Result<Chunk, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(chunk) = self.pending.pop() {
                return Some(Ok(chunk));
            }
            let Some(planner) = self.planner.as_mut() else {
                return self.rest.next().map(Ok);
            };
            match self.records.next() {
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(Record {
                    pairs: Ok(pairs), ..
                })) => {
                    for (env, appid) in pairs {
                        self.pending.extend(planner.push(env, appid));
                    }
                    // A JSONL row may fill several chunks at once: yield them in order.
                    self.pending.reverse();
                }
                Some(Ok(_invalid)) => {}
                None => {
                    let planner = self.planner.take()?;
                    self.rest = planner.finish().into_iter();
                }
            }
        }
    }
}

/// Jobs per [`Queue::enqueue`] call of [`enqueue_chunks`]: the queue slices each call again into
/// script calls of a few hundred jobs with several in flight, so this keeps its pipeline full.
pub const ENQUEUE_SLICE_JOBS: usize = 4000;
/// Pairs per [`Queue::enqueue`] call of [`enqueue_chunks`] at most (for large chunk sizes).
pub const ENQUEUE_SLICE_PAIRS: usize = 40_000;
/// [`Queue::enqueue`] calls in flight at once, while the reader prepares the next slice.
pub const ENQUEUE_IN_FLIGHT: usize = 2;

/// What an import enqueued so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Enqueued {
    /// Jobs created.
    pub jobs: u64,
    /// Appids enqueued in them.
    pub appids: u64,
    /// Pairs skipped because they were already queued within the dedupe window.
    pub skipped_duplicates: u64,
}

impl Enqueued {
    fn add(&mut self, r: &EnqueueReport) {
        self.jobs += r.jobs as u64;
        self.appids += r.appids as u64;
        self.skipped_duplicates += r.skipped_duplicates as u64;
    }
}

/// Why [`enqueue_chunks`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    /// Reading the input again failed (not retryable as is: the input changed or went away).
    #[error("reading the input for enqueueing failed")]
    Read(#[source] ImportError),
    /// The queue failed; the jobs counted in `done` were enqueued, the rest were not.
    /// Retryable when [`StoreError::is_retryable`] says so: running the same import again
    /// with the same batch id skips the pairs already queued.
    #[error("enqueueing failed after {} jobs were enqueued", done.jobs)]
    Queue {
        /// What was enqueued before the failure.
        done: Enqueued,
        /// The queue's error.
        #[source]
        source: StoreError,
    },
}

/// Enqueues `chunks` into `batch`, streaming: a blocking thread pulls chunks (e.g. [`Chunks`]
/// over the input) and hands slices of [`ENQUEUE_SLICE_JOBS`] jobs to this task, which keeps
/// [`ENQUEUE_IN_FLIGHT`] [`Queue::enqueue`] calls going, so memory holds a few slices at most
/// and parsing overlaps with Redis. `progress` is called after each slice with the running
/// totals. Does not seal the batch: call [`Queue::seal_batch`] once everything is in.
pub async fn enqueue_chunks<I>(
    queue: &Queue,
    chunks: I,
    batch: &BatchId,
    force: bool,
    mut progress: impl FnMut(&Enqueued),
) -> Result<Enqueued, EnqueueError>
where
    I: Iterator<Item = Result<Chunk, ImportError>> + Send + 'static,
{
    use futures::StreamExt as _;

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<NewJob>>(ENQUEUE_IN_FLIGHT);
    let batch_id = batch.clone();
    let reader = tokio::task::spawn_blocking(move || -> Result<(), ImportError> {
        let mut slice = Vec::new();
        let mut pairs = 0;
        for chunk in chunks {
            let chunk = chunk?;
            pairs += chunk.appids.len();
            slice.push(NewJob {
                env: chunk.env,
                appids: chunk.appids,
                batch: batch_id.clone(),
                run_at_ms: None,
            });
            if slice.len() >= ENQUEUE_SLICE_JOBS || pairs >= ENQUEUE_SLICE_PAIRS {
                pairs = 0;
                if tx.blocking_send(std::mem::take(&mut slice)).is_err() {
                    // The enqueueing side stopped on an error; it reports it.
                    return Ok(());
                }
            }
        }
        if !slice.is_empty() {
            let _ = tx.blocking_send(slice);
        }
        Ok(())
    });

    let opts = EnqueueOptions { force, seal: false };
    let slices = futures::stream::poll_fn(|cx| rx.poll_recv(cx));
    let mut calls = slices
        .map(|jobs| queue.enqueue(jobs, opts))
        .buffer_unordered(ENQUEUE_IN_FLIGHT);
    let mut done = Enqueued::default();
    while let Some(result) = calls.next().await {
        match result {
            Ok(report) => {
                done.add(&report);
                progress(&done);
            }
            Err(source) => {
                // Dropping the stream drops the receiver, which stops the reader thread.
                drop(calls);
                let _ = reader.await;
                return Err(EnqueueError::Queue { done, source });
            }
        }
    }
    match reader.await {
        Ok(Ok(())) => Ok(done),
        Ok(Err(e)) => Err(EnqueueError::Read(e)),
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

/// Splits already validated pairs (e.g. from `envshare enqueue`) into chunks, folding duplicates.
pub fn plan_pairs(pairs: impl IntoIterator<Item = Pair>, chunk_size: usize) -> Vec<Chunk> {
    let pairs: Vec<Pair> = pairs.into_iter().collect();
    let mut seen = PairSet::default();
    for (env, appid) in &pairs {
        seen.insert(env, appid);
    }
    let mut planner = Planner::new(seen, chunk_size);
    let mut chunks: Vec<Chunk> = pairs
        .into_iter()
        .filter_map(|(env, appid)| planner.push(env, appid))
        .collect();
    chunks.extend(planner.finish());
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "wx0000000000000001";
    const B: &str = "wx0000000000000002";
    const C: &str = "wx00000000000000ff";

    fn records(input: &str, format: Format) -> Vec<Record> {
        Records::new(input.as_bytes(), format)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn pair(env: &str, appid: &str) -> Pair {
        (EnvId::parse(env).unwrap(), AppId::parse(appid).unwrap())
    }

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
    fn an_empty_input_is_an_error_in_both_formats() {
        for (input, format) in [
            ("", Format::Csv),
            ("\r\n\n", Format::Csv),
            ("env,appid\n", Format::Csv),
            ("", Format::Jsonl),
            ("\n  \n", Format::Jsonl),
        ] {
            let err = validate(input.as_bytes(), format, 10, 20).unwrap_err();
            assert!(matches!(err, ImportError::Empty(..)), "{input:?}: {err}");
        }
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
    fn validate_caps_the_listed_errors_and_counts_the_rest() {
        let mut input = String::from("env,appid\n");
        for i in 0..30 {
            input.push_str(&format!("prod,bad{i}\n"));
        }
        input.push_str(&format!("prod,{A}\n"));
        let v = validate(input.as_bytes(), Format::Csv, 10, 20).unwrap();
        assert_eq!(v.rows, 31);
        assert_eq!(v.invalid_rows, 30);
        assert_eq!(v.errors.len(), 20);
        assert_eq!(v.unlisted_errors(), 10);
        assert_eq!(v.errors[0].line, 2);
        assert_eq!(v.valid_rows, 1);
    }

    #[test]
    fn validate_folds_duplicates_and_counts_jobs_per_env() {
        let mut input = String::from("env,appid\n");
        for i in 0..25u64 {
            input.push_str(&format!("prod,wx{i:016x}\n"));
        }
        input.push_str(&format!("prod,{A}\ntest,{A}\ntest,{A}\n"));
        let v = validate(input.as_bytes(), Format::Csv, 10, 20).unwrap();
        assert_eq!(v.pairs, 28);
        assert_eq!(v.duplicates, 2);
        assert_eq!(v.unique_pairs(), 26);
        assert_eq!(
            v.envs[&EnvId::parse("prod").unwrap()],
            EnvCount {
                appids: 25,
                jobs: 3
            }
        );
        assert_eq!(
            v.envs[&EnvId::parse("test").unwrap()],
            EnvCount { appids: 1, jobs: 1 }
        );
        assert_eq!(v.jobs(), 4);
    }

    #[test]
    fn the_planner_takes_each_pair_once_and_chunks_by_env() {
        let input = format!("env,appid\np,{A}\nq,{A}\np,{B}\np,{A}\np,{C}\nq,{B}\n");
        let v = validate(input.as_bytes(), Format::Csv, 2, 20).unwrap();
        let mut planner = Planner::new(v.seen, 2);
        let mut chunks = Vec::new();
        for r in Records::new(input.as_bytes(), Format::Csv).unwrap() {
            for (env, appid) in r.unwrap().pairs.unwrap() {
                chunks.extend(planner.push(env, appid));
            }
        }
        chunks.extend(planner.finish());
        let p = EnvId::parse("p").unwrap();
        let q = EnvId::parse("q").unwrap();
        let a = |s: &str| AppId::parse(s).unwrap();
        assert_eq!(
            chunks,
            vec![
                Chunk {
                    env: p.clone(),
                    appids: vec![a(A), a(B)]
                },
                Chunk {
                    env: q.clone(),
                    appids: vec![a(A), a(B)]
                },
                Chunk {
                    env: p,
                    appids: vec![a(C)]
                },
            ]
        );
    }

    #[test]
    fn the_second_pass_yields_every_distinct_pair_once_in_chunks() {
        let mut input = String::new();
        for i in 0..95u64 {
            let env = ["a", "b", "c"][(i % 3) as usize];
            input.push_str(&format!(
                "{{\"env\":\"{env}\",\"appids\":[\"wx{i:016x}\",\"wx{:016x}\"]}}\n",
                i / 2
            ));
        }
        input.push_str("garbage\n");
        let v = validate(input.as_bytes(), Format::Jsonl, 7, 20).unwrap();
        assert_eq!(v.invalid_rows, 1);
        let expected_jobs = v.jobs();
        let expected_pairs = v.unique_pairs();
        let planner = Planner::new(v.seen, 7);
        let chunks: Vec<Chunk> = Chunks::new(input.as_bytes(), Format::Jsonl, planner)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunks.len() as u64, expected_jobs);
        let mut all = HashSet::new();
        for c in &chunks {
            assert!(!c.appids.is_empty() && c.appids.len() <= 7);
            for a in &c.appids {
                assert!(all.insert((c.env.clone(), a.clone())), "pair twice");
            }
        }
        assert_eq!(all.len() as u64, expected_pairs);
    }

    #[test]
    fn plan_pairs_folds_duplicates() {
        let chunks = plan_pairs([pair("p", A), pair("p", A), pair("p", B)], 10);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].appids.len(), 2);
    }

    #[test]
    fn the_format_comes_from_the_extension_or_the_first_bytes() {
        assert_eq!(Format::from_path(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(
            Format::from_path(Path::new("b.ndjson")),
            Some(Format::Jsonl)
        );
        assert_eq!(Format::from_path(Path::new("b.jsonl")), Some(Format::Jsonl));
        assert_eq!(Format::from_path(Path::new("b.txt")), None);
        assert_eq!(Format::from_path(Path::new("-")), None);
        assert_eq!(
            Format::sniff(b"\xEF\xBB\xBF  {\"env\":1}"),
            Some(Format::Jsonl)
        );
        assert_eq!(Format::sniff(b"appid,\"env\"\r\nx,y"), Some(Format::Csv));
        assert_eq!(Format::sniff(b"hello\nworld"), None);
        assert_eq!(Format::sniff(b""), None);
        assert_eq!("JSONL".parse::<Format>().unwrap(), Format::Jsonl);
        assert!("xml".parse::<Format>().is_err());
    }

    #[test]
    fn the_pair_set_tells_envs_apart() {
        let mut s = PairSet::default();
        let (p, a) = pair("p", A);
        let (q, _) = pair("q", A);
        assert!(s.insert(&p, &a));
        assert!(!s.insert(&p, &a));
        assert!(s.insert(&q, &a));
        assert_eq!(s.len(), 2);
        assert!(s.remove(&q, &a));
        assert!(!s.remove(&q, &a));
    }
}
