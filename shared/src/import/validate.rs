//! The first pass over an input: [`validate`] checks every row and counts what an import
//! amounts to, before anything is enqueued.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

use super::{Format, ImportError, Record, Records};
use crate::ids::{AppId, EnvId};

/// One invalid line: where it is and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
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
    /// The distinct pairs, for the second pass ([`Planner::new`](super::Planner::new)).
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
    let empty = match format {
        Format::Csv => ImportError::Empty(" (a header but no rows)", "one row per pair"),
        Format::Jsonl => ImportError::Empty("", "one JSON object per line"),
    };
    validate_rows(
        Records::new(input, format)?,
        chunk_size,
        max_reported,
        empty,
    )
}

/// [`validate`] over rows already being read; `empty` is the error for an input without rows.
pub(super) fn validate_rows(
    rows: impl Iterator<Item = Result<Record, ImportError>>,
    chunk_size: usize,
    max_reported: usize,
    empty: ImportError,
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
    for record in rows {
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
        return Err(empty);
    }
    for count in v.envs.values_mut() {
        count.jobs = count.appids.div_ceil(chunk);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;

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
