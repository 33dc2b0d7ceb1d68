//! The second pass: [`Planner`] and [`Chunks`] fold duplicate pairs and group appids by env into
//! jobs' worth of pairs.

use std::collections::HashMap;
use std::io::Read;

use super::{Format, ImportError, Pair, PairSet, Record, Records};
use crate::ids::{AppId, EnvId};

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
pub struct Chunks<I> {
    records: I,
    planner: Option<Planner>,
    rest: std::vec::IntoIter<Chunk>,
    pending: Vec<Chunk>,
}

impl<R: Read> Chunks<Records<R>> {
    /// Starts the second pass over `input`, with the planner built from the first pass.
    pub fn new(input: R, format: Format, planner: Planner) -> Result<Self, ImportError> {
        Ok(Self::from_records(Records::new(input, format)?, planner))
    }
}

impl<I> Chunks<I>
where
    I: Iterator<Item = Result<Record, ImportError>>,
{
    /// The second pass over rows already being read (e.g. a [`Records`]).
    pub fn from_records(records: I, planner: Planner) -> Self {
        Self {
            records,
            planner: Some(planner),
            rest: Vec::new().into_iter(),
            pending: Vec::new(),
        }
    }
}

impl<I> Iterator for Chunks<I>
where
    I: Iterator<Item = Result<Record, ImportError>>,
{
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
    use std::collections::HashSet;

    use super::super::test_support::*;
    use super::super::validate;
    use super::*;

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
}
