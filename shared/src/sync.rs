//! Desired-state sync (`envshare sync`): compare the (env, appid) pairs an operator wants bound
//! with what WeChat reports bound and what envshare has on record, and plan the difference.
//!
//! WeChat's `batchgetenvid` answers per appid, so the actual bindings can only be read for
//! appids one names. A plan therefore looks at the appids of the desired set plus every appid
//! of the result rows on record for the desired envs: a binding made outside envshare, to an
//! appid envshare never handled and the file does not name, cannot be seen (and so is never
//! unshared by `--prune`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::confirm::{BindingChecker, CheckError};
use crate::ids::{AppId, EnvId};
use crate::store::{Queue, ResultRow, RowState, StoreError};

/// Batches read per page while collecting the rows on record.
const BATCH_PAGE: usize = 200;

/// One (env, appid) pair.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pair {
    /// The environment.
    pub env: EnvId,
    /// The Mini Program.
    pub appid: AppId,
}

/// What a sync would do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Desired pairs neither bound nor in flight: to be shared.
    pub to_share: Vec<Pair>,
    /// Desired pairs WeChat reports bound: nothing to do.
    pub bound: Vec<Pair>,
    /// Desired pairs shared and waiting for their administrator's confirmation, or still
    /// queued (their latest row on record is `accepted` or `pending`): nothing to do now.
    pub awaiting: Vec<Pair>,
    /// Bound pairs of the desired envs that the desired set lacks: unshared with `--prune`
    /// (listed only when pruning).
    pub to_unshare: Vec<Pair>,
    /// Appids whose bindings were read from WeChat.
    pub appids_checked: usize,
}

impl Plan {
    /// Whether applying the plan would enqueue anything.
    pub fn is_empty(&self) -> bool {
        self.to_share.is_empty() && self.to_unshare.is_empty()
    }
}

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Reading the rows on record failed.
    #[error("reading the result rows on record failed")]
    Store(#[from] StoreError),
    /// Reading the bindings from WeChat failed.
    #[error("reading the bindings from WeChat (batchgetenvid) failed")]
    Check(#[from] CheckError),
}

/// The latest row on record of each pair of the envs in `envs` (newest batch first, so the
/// first row seen of a pair is its latest).
async fn rows_on_record(
    queue: &Queue,
    envs: &BTreeSet<EnvId>,
) -> Result<HashMap<(EnvId, AppId), ResultRow>, StoreError> {
    let mut latest = HashMap::new();
    let mut offset = 0;
    loop {
        let batches = queue.list_batches(offset, BATCH_PAGE).await?;
        for b in &batches {
            let mut cursor = 0;
            loop {
                let page = queue
                    .results_page(b, None, cursor, crate::store::MAX_RESULTS_PAGE)
                    .await?;
                for row in page.rows {
                    if envs.contains(&row.env) {
                        latest
                            .entry((row.env.clone(), row.appid.clone()))
                            .or_insert(row);
                    }
                }
                match page.next {
                    Some(n) => cursor = n,
                    None => break,
                }
            }
        }
        if batches.len() < BATCH_PAGE {
            return Ok(latest);
        }
        offset += BATCH_PAGE;
    }
}

/// Plans a sync of `desired` (distinct pairs): reads the rows on record and the bindings of
/// the appids involved, and sorts each pair. With `prune`, bound pairs of the desired envs
/// missing from `desired` are planned for unsharing.
pub async fn plan(
    queue: &Queue,
    checker: &BindingChecker,
    desired: &[Pair],
    prune: bool,
) -> Result<Plan, SyncError> {
    let envs: BTreeSet<EnvId> = desired.iter().map(|p| p.env.clone()).collect();
    let records = rows_on_record(queue, &envs).await?;
    let mut appids: BTreeSet<AppId> = desired.iter().map(|p| p.appid.clone()).collect();
    if prune {
        appids.extend(records.keys().map(|(_, a)| a.clone()));
    }
    let appids: Vec<AppId> = appids.into_iter().collect();

    // The bound envs of every appid involved, in calls of the checker's batch size.
    let mut bound: BTreeMap<AppId, BTreeSet<String>> = BTreeMap::new();
    for part in appids.chunks(checker.batch()) {
        let answer = checker.get_env_ids(part).await?;
        for a in part {
            let envs: BTreeSet<String> = answer.envs_of(a.as_str()).iter().cloned().collect();
            if !envs.is_empty() {
                bound.insert(a.clone(), envs);
            }
        }
    }
    let is_bound = |p: &Pair| {
        bound
            .get(&p.appid)
            .is_some_and(|e| e.contains(p.env.as_str()))
    };

    let mut plan = Plan {
        appids_checked: appids.len(),
        ..Plan::default()
    };
    for p in desired {
        if is_bound(p) {
            plan.bound.push(p.clone());
            continue;
        }
        let in_flight = records
            .get(&(p.env.clone(), p.appid.clone()))
            .is_some_and(|r| matches!(r.state, RowState::Accepted | RowState::Pending));
        if in_flight {
            plan.awaiting.push(p.clone());
        } else {
            plan.to_share.push(p.clone());
        }
    }
    if prune {
        let wanted: BTreeSet<&Pair> = desired.iter().collect();
        for (appid, bound_envs) in &bound {
            for env in bound_envs {
                let Ok(env) = EnvId::parse(env) else { continue };
                if !envs.contains(&env) {
                    continue;
                }
                let p = Pair {
                    env,
                    appid: appid.clone(),
                };
                if !wanted.contains(&p) {
                    plan.to_unshare.push(p);
                }
            }
        }
    }
    for list in [
        &mut plan.to_share,
        &mut plan.bound,
        &mut plan.awaiting,
        &mut plan.to_unshare,
    ] {
        list.sort();
    }
    Ok(plan)
}
