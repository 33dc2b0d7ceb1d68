//! Where the pairs of an import come from: a [`Source`] (a file, bytes in memory, or pairs
//! already parsed) and the [`Format`] of its bytes.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use super::{ImportError, Observer, Pair, Record, Records, UTF8_BOM};

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

/// How many bytes [`Source::check`] reads to guess the format.
const SNIFF_BYTES: u64 = 8192;

/// The input of an import. It is read more than once (a validating pass, then the enqueueing
/// pass), so it is a file that can be read again from the start, or bytes or pairs in memory:
/// a stream such as standard input must be spooled to a file first.
#[derive(Debug)]
pub struct Source {
    name: String,
    data: Data,
    format: Option<Format>,
    checked: bool,
}

#[derive(Clone)]
enum Data {
    File { file: Arc<File>, len: u64 },
    Bytes(Arc<[u8]>),
    Pairs(Arc<[Pair]>),
}

impl fmt::Debug for Data {
    // The sizes, not the contents: an input may be megabytes long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File { len, .. } => write!(f, "File({len} bytes)"),
            Self::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            Self::Pairs(p) => write!(f, "Pairs({} pairs)", p.len()),
        }
    }
}

impl Source {
    /// A file of `len` bytes, read from its start by each pass. `name` is how messages name it
    /// (`FILE` in `FILE:LINE`); a `.csv`, `.jsonl` or `.ndjson` extension in it sets the format.
    pub fn file(name: impl Into<String>, file: File, len: u64) -> Self {
        Self::new(
            name,
            Data::File {
                file: Arc::new(file),
                len,
            },
        )
    }

    /// Bytes in memory (e.g. the body of a request), named `name` in messages.
    pub fn bytes(name: impl Into<String>, bytes: impl Into<Arc<[u8]>>) -> Self {
        Self::new(name, Data::Bytes(bytes.into()))
    }

    /// Pairs already parsed and validated (e.g. command-line arguments): each pair is one row,
    /// numbered from 1. Its summary names the format `arguments`.
    pub fn pairs(name: impl Into<String>, pairs: Vec<Pair>) -> Self {
        Self::new(name, Data::Pairs(pairs.into()))
    }

    fn new(name: impl Into<String>, data: Data) -> Self {
        Self {
            name: name.into(),
            data,
            format: None,
            checked: false,
        }
    }

    /// Reads the bytes as `format` (`None`: from the name's extension, else from the first
    /// bytes). Ignored for [`Source::pairs`].
    pub fn with_format(mut self, format: Option<Format>) -> Self {
        self.format = format;
        self.checked = false;
        self
    }

    /// How messages name the input.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The input's size in bytes (0 for [`Source::pairs`]), for progress.
    pub fn len(&self) -> u64 {
        match &self.data {
            Data::File { len, .. } => *len,
            Data::Bytes(b) => b.len() as u64,
            Data::Pairs(_) => 0,
        }
    }

    /// Whether the input holds no byte and no pair.
    pub fn is_empty(&self) -> bool {
        match &self.data {
            Data::Pairs(p) => p.is_empty(),
            _ => self.len() == 0,
        }
    }

    /// The format of the bytes: the one given, or the one found by [`Source::check`]. `None`
    /// for [`Source::pairs`].
    pub fn format(&self) -> Option<Format> {
        match self.data {
            Data::Pairs(_) => None,
            _ => self.format,
        }
    }

    /// What the summary calls the format: `csv`, `jsonl`, or `arguments` for pairs.
    pub(super) fn format_label(&self) -> String {
        self.format()
            .map_or_else(|| "arguments".to_owned(), |f| f.to_string())
    }

    /// Checks the input before anything is read in full: an empty input is
    /// [`ImportError::Empty`], a format that cannot be told is [`ImportError::UnknownFormat`],
    /// and a CSV header without `env` or `appid` is [`ImportError::MissingColumn`]. Reads at
    /// most the first few KiB; [`super::run`] calls it when the caller has not.
    pub fn check(&mut self) -> Result<(), ImportError> {
        if self.checked || matches!(self.data, Data::Pairs(_)) {
            self.checked = true;
            return Ok(());
        }
        if self.is_empty() {
            return Err(ImportError::Empty(
                "",
                "a CSV header \"env,appid\" and rows, or JSON lines",
            ));
        }
        let format = match self
            .format
            .or_else(|| Format::from_path(Path::new(&self.name)))
        {
            Some(f) => f,
            None => {
                let mut head = Vec::with_capacity(SNIFF_BYTES as usize);
                self.reader()?.take(SNIFF_BYTES).read_to_end(&mut head)?;
                Format::sniff(&head).ok_or_else(|| ImportError::UnknownFormat {
                    what: format!(
                        "{} neither starts with a JSON object nor has a CSV header naming env and appid",
                        self.name
                    ),
                })?
            }
        };
        Records::new(self.reader()?, format)?;
        self.format = Some(format);
        self.checked = true;
        Ok(())
    }

    /// A reader from the start of the bytes (each pass gets its own).
    fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        match &self.data {
            Data::File { file, .. } => {
                let mut f = file.try_clone()?;
                f.seek(SeekFrom::Start(0))?;
                Ok(Box::new(f))
            }
            Data::Bytes(b) => Ok(Box::new(io::Cursor::new(Arc::clone(b)))),
            Data::Pairs(_) => Ok(Box::new(io::empty())),
        }
    }

    /// The distinct valid pairs of the input, in input order, held in memory (for an input
    /// that is a set to compare, such as the desired state of `envshare sync`; an import
    /// streams instead). Invalid rows are left out: validate with [`run`](super::run) to
    /// report them. Call after [`Source::check`].
    pub fn distinct_pairs(&self) -> Result<Vec<Pair>, ImportError> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for record in self.rows(None)? {
            for pair in record?.pairs.unwrap_or_default() {
                if seen.insert(pair.clone()) {
                    out.push(pair);
                }
            }
        }
        Ok(out)
    }

    /// The rows from the start, after [`Source::check`]; each read is reported to `observer`.
    pub(super) fn rows(&self, observer: Option<Arc<dyn Observer>>) -> Result<Rows, ImportError> {
        let format = match (&self.data, self.format) {
            (Data::Pairs(pairs), _) => {
                return Ok(Rows::Pairs {
                    pairs: Arc::clone(pairs),
                    next: 0,
                });
            }
            (_, Some(format)) => format,
            (_, None) => unreachable!("Source::check sets the format of bytes"),
        };
        let reader = self.reader()?;
        let reader: Box<dyn Read + Send> = match observer {
            Some(observer) => Box::new(Observed {
                inner: reader,
                observer,
            }),
            None => reader,
        };
        Ok(Rows::Read(Records::new(reader, format)?))
    }
}

/// Reports each read to an observer.
struct Observed {
    inner: Box<dyn Read + Send>,
    observer: Arc<dyn Observer>,
}

impl Read for Observed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.observer.read(n as u64);
        Ok(n)
    }
}

/// The rows of a [`Source`], whatever it holds.
pub(super) enum Rows {
    /// Rows parsed from bytes.
    Read(Records<Box<dyn Read + Send>>),
    /// One row per pair.
    Pairs { pairs: Arc<[Pair]>, next: usize },
}

impl Iterator for Rows {
    type Item = Result<Record, ImportError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Rows::Read(records) => records.next(),
            Rows::Pairs { pairs, next } => {
                let pair = pairs.get(*next)?.clone();
                *next += 1;
                Some(Ok(Record {
                    line: *next as u64,
                    pairs: Ok(vec![pair]),
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
