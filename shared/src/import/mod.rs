//! Bulk import of `(env, appid)` pairs: the flow behind `envshare import`, `envshare enqueue` and
//! the demo, from the input to a sealed batch.
//!
//! [`run`] is the whole flow: validate → skip the pairs already bound (optional) → plan →
//! enqueue → seal the batch, returning a [`Summary`]. Its stages, one module each:
//!
//! - [`Source`] (`source`): where the pairs come from: a file (standard input spooled to one), bytes
//!   in memory (a request body), or pairs already parsed (command-line arguments); and the
//!   [`Format`] of the bytes.
//! - [`Records`] (`parse`): reads the rows of CSV or JSONL input one at a time.
//! - [`validate`] (`validate`): the first pass. It reads every row, collects the invalid ones (the
//!   first few with their line numbers, a count of the rest), counts pairs per env and remembers
//!   each distinct pair in a compact [`PairSet`] (16 bytes of key per pair, about 30 MB for
//!   1,000,000 pairs with the hash table's overhead). Nothing is enqueued in this pass, so an
//!   input with a bad row enqueues nothing.
//! - [`Planner`] and [`Chunks`] (`plan`): the second pass reads the same input again and feeds
//!   each pair to the planner, which folds duplicate pairs (a pair is taken the first time it is
//!   seen, using the set from pass 1) and groups appids by env into [`Chunk`]s of `chunk_size`
//!   appids. Only one partly filled chunk per env is held in memory.
//! - [`enqueue_chunks`] (`enqueue`): streams the chunks into the queue.
//!
//! Memory stays flat however long the input is: it is streamed twice, never held.
//!
//! Inputs:
//! - CSV with a header naming the columns `env` and `appid` (any order, any case, extra columns
//!   ignored); a UTF-8 BOM and CRLF line ends are accepted; fields are trimmed.
//! - JSONL: one object per line, `{"env":…,"appid":…}` or `{"env":…,"appids":[…]}`; other fields
//!   are ignored; blank lines are skipped.
//!
//! Lines are counted from 1 and a CSV header is line 1, so `FILE:LINE` points into the file.

use std::io;

use crate::ids::{AppId, EnvId};

mod enqueue;
mod parse;
mod plan;
mod run;
mod source;
mod validate;

pub use enqueue::{
    ENQUEUE_IN_FLIGHT, ENQUEUE_SLICE_JOBS, ENQUEUE_SLICE_PAIRS, EnqueueError, Enqueued,
    enqueue_chunks,
};
pub use parse::{Record, Records, parse_pair};
pub use plan::{Chunk, Chunks, Planner, plan_pairs};
pub use run::{
    BoundPair, MakeChecker, NoProgress, Observer, Options, Pass, RunError, Summary, run,
};
pub use source::{Format, Source};
pub use validate::{EnvCount, InvalidLine, PairSet, Validation, validate};

/// How many invalid lines [`validate`] keeps with their reason by default; the rest are counted.
pub const DEFAULT_MAX_REPORTED: usize = 20;

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

#[cfg(test)]
mod test_support {
    use super::*;

    pub(crate) const A: &str = "wx0000000000000001";
    pub(crate) const B: &str = "wx0000000000000002";
    pub(crate) const C: &str = "wx00000000000000ff";

    pub(crate) fn records(input: &str, format: Format) -> Vec<Record> {
        Records::new(input.as_bytes(), format)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub(crate) fn pair(env: &str, appid: &str) -> Pair {
        (EnvId::parse(env).unwrap(), AppId::parse(appid).unwrap())
    }
}
