//! Tests: `envshare unshare` and `envshare sync` on the real binaries: the `envshare` CLI and an
//! `envshare-worker` process against the sandbox, which keeps bindings like WeChat does
//! (`batchgetenvid` lists confirmed ones, `batchunshareenv` removes them).

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use envshare::events::EventKind;
use envshare::sandbox::{Sandbox, SandboxConfig, SandboxHandle};
use envshare::store::{Queue, QueueSettings, RowState};
use envshare::wechat::Endpoint;
use envshare::{AppId, BatchId, QueueName};
use envshare_tests::{
    ChildProcess, TestRedis, appid, bin_path, run_envshare, unique_queue, wait_until,
};
use serde_json::Value;

const TOKEN: &str = "sync-static-token";
const ENV: &str = "prod-sync";
const APPIDS: u64 = 0x5c_0000;

struct Setup {
    sandbox: SandboxHandle,
    queue: Queue,
    name: QueueName,
    worker: ChildProcess,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start(prefix: &str) -> Setup {
        envshare::telemetry::init_for_tests();
        let sandbox = Sandbox::start(SandboxConfig {
            static_tokens: vec![TOKEN.into()],
            ..SandboxConfig::default()
        })
        .await
        .unwrap();
        let name = unique_queue(prefix);
        let redis = TestRedis::shared();
        let queue = Queue::connect(redis.url(), &name, QueueSettings::default())
            .await
            .unwrap();
        let env = vec![
            ("ENVSHARE_REDIS_URL", redis.url().to_owned()),
            ("ENVSHARE_QUEUE", name.as_str().to_owned()),
            ("ENVSHARE_WECHAT_BASE_URL", sandbox.url().to_owned()),
            ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
            ("ENVSHARE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("ENVSHARE_LOG", "warn".to_owned()),
        ];
        let worker = ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env);
        Setup {
            sandbox,
            queue,
            name,
            worker,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `envshare ARGS` on a blocking thread, so the in-process sandbox keeps answering.
    async fn envshare(&self, args: &[&str]) -> Output {
        let env = [
            ("ENVSHARE_WECHAT_BASE_URL", self.sandbox.url().to_owned()),
            ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
        ];
        run_envshare(self.name.as_str(), args, &env).await
    }

    fn csv(&self, name: &str, appids: &[u64]) -> PathBuf {
        let mut s = String::from("env,appid\n");
        for i in appids {
            s.push_str(&format!("{ENV},{}\n", appid(APPIDS + i)));
        }
        let path = self.dir.path().join(name);
        std::fs::write(&path, s).unwrap();
        path
    }

    async fn wait_completed(&self, batch: &str) {
        let batch = BatchId::parse(batch).unwrap();
        let done = wait_until(Duration::from_secs(20), || async {
            self.queue
                .batch(&batch)
                .await
                .unwrap()
                .is_some_and(|b| b.completed)
        })
        .await;
        assert!(done, "batch {batch} completed");
    }

    async fn enqueued_jobs(&self) -> u64 {
        let c = self.queue.stats().await.unwrap().counters;
        c.get("enqueued").copied().unwrap_or(0) as u64
    }
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("one JSON line")
}

/// The appid numbers (offsets from APPIDS) of a plan list.
fn appids_of(plan: &Value, list: &str) -> Vec<u64> {
    plan["plan"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["env"], ENV);
            let a = p["appid"].as_str().unwrap();
            u64::from_str_radix(&a[2..], 16).unwrap() - APPIDS
        })
        .collect()
}

fn bound(sandbox: &SandboxHandle) -> Vec<u64> {
    let mut v: Vec<u64> = sandbox
        .bindings()
        .iter()
        .filter(|b| b.confirmed && b.env == ENV)
        .map(|b| u64::from_str_radix(&b.appid[2..], 16).unwrap() - APPIDS)
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn sync_plans_applies_once_and_prune_unshares_exactly_the_extra_bindings() {
    let mut s = Setup::start("sync-plan").await;
    // Bound before the sync: 1 and 2 (wanted) and 7 and 8 (not wanted).
    let seed = s.csv("seed.csv", &[1, 2, 7, 8]);
    let out = json(
        &s.envshare(&["import", seed.to_str().unwrap(), "--json"])
            .await,
    );
    s.wait_completed(out["batch"].as_str().unwrap()).await;
    s.sandbox.confirm_all();
    assert_eq!(bound(&s.sandbox), [1, 2, 7, 8]);

    let desired = s.csv("desired.csv", &[1, 2, 3, 4, 5, 6]);
    let file = desired.to_str().unwrap();
    let before = s.enqueued_jobs().await;

    // The plan alone enqueues nothing.
    let plan = json(&s.envshare(&["sync", file, "--json"]).await);
    assert_eq!(appids_of(&plan, "bound"), [1, 2]);
    assert_eq!(appids_of(&plan, "to_share"), [3, 4, 5, 6]);
    assert!(
        appids_of(&plan, "to_unshare").is_empty(),
        "no prune, no unshare"
    );
    assert_eq!(plan["applied"], false);
    assert_eq!(s.enqueued_jobs().await, before);

    // Applied: one batch shares exactly the missing pairs.
    let applied = json(&s.envshare(&["sync", file, "--apply", "--json"]).await);
    assert_eq!(applied["applied"], true);
    s.wait_completed(applied["batch"].as_str().unwrap()).await;
    for i in 3..=6 {
        assert_eq!(s.sandbox.share_calls_for(appid(APPIDS + i).as_str()), 1);
    }

    // Twice in a row: the second run enqueues nothing (the new shares await confirmation).
    let jobs = s.enqueued_jobs().await;
    let again = json(&s.envshare(&["sync", file, "--apply", "--json"]).await);
    assert_eq!(again["applied"], false);
    assert_eq!(appids_of(&again, "awaiting"), [3, 4, 5, 6]);
    assert!(appids_of(&again, "to_share").is_empty());
    assert_eq!(s.enqueued_jobs().await, jobs);

    // --prune shows the extra bindings; without --apply nothing happens, and --apply without
    // --yes off a terminal refuses.
    let pruned = json(&s.envshare(&["sync", file, "--prune", "--json"]).await);
    assert_eq!(appids_of(&pruned, "to_unshare"), [7, 8]);
    let refused = s.envshare(&["sync", file, "--prune", "--apply"]).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--yes"));
    assert_eq!(s.enqueued_jobs().await, jobs);
    assert_eq!(bound(&s.sandbox), [1, 2, 7, 8]);

    let done = json(
        &s.envshare(&["sync", file, "--prune", "--apply", "--yes", "--json"])
            .await,
    );
    let batch = done["batch"].as_str().unwrap().to_owned();
    s.wait_completed(&batch).await;
    assert_eq!(
        bound(&s.sandbox),
        [1, 2],
        "exactly the extra bindings are gone"
    );
    assert_eq!(s.sandbox.calls(Endpoint::UnshareEnv), 1);
    let batch = BatchId::parse(&batch).unwrap();
    let rows = s
        .queue
        .results_page(&batch, Some(RowState::Unshared), 0, 100)
        .await
        .unwrap()
        .rows;
    let unshared: Vec<AppId> = rows.into_iter().map(|r| r.appid).collect();
    assert_eq!(unshared, [appid(APPIDS + 7), appid(APPIDS + 8)]);
    let mut conn = TestRedis::shared().conn().await;
    let events = envshare::store::read_all(&mut conn, s.queue.keys())
        .await
        .unwrap();
    let unshared_events = events
        .iter()
        .filter(|e| matches!(e.event.kind, EventKind::ShareUnshared { .. }))
        .count();
    assert_eq!(unshared_events, 2);
    s.worker.sigterm();
    s.worker.wait_exit(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn unshare_validates_its_file_like_import_and_unshares_through_the_queue() {
    let mut s = Setup::start("sync-unshare").await;
    let seed = s.csv("seed.csv", &[1, 2, 3]);
    let out = json(
        &s.envshare(&["import", seed.to_str().unwrap(), "--json"])
            .await,
    );
    s.wait_completed(out["batch"].as_str().unwrap()).await;
    s.sandbox.confirm_all();

    // A bad row: exit 2 naming FILE:LINE, nothing enqueued.
    let bad = s.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!("env,appid\n{ENV},{}\n{ENV},wx12\n", appid(APPIDS + 1)),
    )
    .unwrap();
    let jobs = s.enqueued_jobs().await;
    let out = s.envshare(&["unshare", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.csv:3:"), "{stderr}");
    assert_eq!(s.enqueued_jobs().await, jobs);

    // Pairs as arguments: unshared through the queue.
    let a1 = appid(APPIDS + 1).to_string();
    let a2 = appid(APPIDS + 2).to_string();
    let out = json(
        &s.envshare(&["unshare", "--env", ENV, "--appid", &a1, &a2, "--json"])
            .await,
    );
    s.wait_completed(out["batch"].as_str().unwrap()).await;
    assert_eq!(bound(&s.sandbox), [3]);
    // The appid's history across batches, newest first: unshared, then accepted.
    let found = s.queue.find_appid(&appid(APPIDS + 1)).await.unwrap();
    let states: Vec<RowState> = found.iter().map(|r| r.state).collect();
    assert_eq!(states, [RowState::Unshared, RowState::Accepted]);
    s.worker.sigterm();
    s.worker.wait_exit(Duration::from_secs(10)).await;
}
