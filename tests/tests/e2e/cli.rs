//! The `envshare` binary end to end: the real executable against a real Redis, one queue per test.
//!
//! The binary is found next to this test executable (`target/<profile>/envshare`, the test being
//! `target/<profile>/deps/e2e-…`) and built on first use when the tests run under cargo (see
//! `envshare_tests::bin_path`). `ENVSHARE_BIN` overrides the path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use envshare::QueueName;
use envshare::clock::ManualClock;
use envshare::events::FailReason;
use envshare::store::{
    Ack, Claim, EnqueueOptions, NewJob, Outcome, Queue, QueueSettings, QueueStats, WorkerId,
};
use envshare::{BatchId, EnvId};
use envshare_tests::{TestRedis, appid, bin_path, unique_queue};
use predicates::prelude::*;
use predicates::str::contains;

/// The `envshare` binary: `ENVSHARE_BIN` if set, else the workspace's own (see [`bin_path`]).
fn bin() -> PathBuf {
    match std::env::var_os("ENVSHARE_BIN") {
        Some(p) => p.into(),
        None => bin_path("envshare"),
    }
}

/// `envshare` with the test Redis and queue `q`, and nothing from the caller's environment that
/// could redirect it.
fn envshare(q: &QueueName) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_remove("REDIS_URL")
        .env_remove("ENVSHARE_CHUNK_SIZE")
        .env("ENVSHARE_REDIS_URL", TestRedis::shared().url())
        .env("ENVSHARE_QUEUE", q.as_str())
        .env("ENVSHARE_LOG", "warn");
    cmd
}

async fn queue(q: &QueueName) -> Queue {
    Queue::connect(TestRedis::shared().url(), q, QueueSettings::default())
        .await
        .expect("connect")
}

/// A CSV of `n` distinct appids for env `prod`, plus one repeated row.
fn csv(n: u64) -> String {
    let mut s = String::from("env,appid\n");
    for i in 0..n {
        s.push_str(&format!("prod,{}\n", appid(i)));
    }
    s.push_str(&format!("prod,{}\n", appid(0)));
    s
}

fn file(dir: &tempfile::TempDir, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    path
}

/// Writes `content` to `name` in a new temporary directory; keep the directory while the file is
/// used.
fn input(name: &str, content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = file(&dir, name, content);
    (dir, path)
}

/// `envshare import ARGS PATH` on queue `q`, run to its end.
fn import(q: &QueueName, args: &[&str], path: &Path) -> Assert {
    envshare(q).arg("import").args(args).arg(path).assert()
}

/// The queue's counters, read through the queue API.
async fn stats(q: &QueueName) -> QueueStats {
    queue(q).await.stats().await.unwrap()
}

/// The last stdout line of a successful run, parsed as JSON.
fn success_json(assert: Assert) -> serde_json::Value {
    json_out(assert.success().get_output())
}

fn json_out(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn an_import_enqueues_chunked_jobs_and_prints_the_batch_and_counts() {
    let q = unique_queue("cli-import");
    let (_dir, path) = input("pairs.csv", csv(25).as_bytes());
    let out = import(&q, &["--chunk-size", "10", "--batch", "b-one"], &path)
        .success()
        .stdout(contains("batch b-one: enqueued 3 jobs with 25 appids"))
        .stdout(contains("1 duplicate in the input folded"))
        .get_output()
        .clone();
    assert!(out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("error"));

    let queue = queue(&q).await;
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.ready, 3);
    let batch = queue
        .batch(&BatchId::parse("b-one").unwrap())
        .await
        .unwrap()
        .expect("the batch exists");
    assert_eq!((batch.jobs, batch.appids), (3, 25));
    assert!(batch.sealed, "an import seals its batch");
}

#[tokio::test]
async fn a_second_import_skips_queued_pairs_unless_forced() {
    let q = unique_queue("cli-dedupe");
    let (_dir, path) = input("pairs.csv", csv(12).as_bytes());
    import(&q, &[], &path).success();

    let s = success_json(import(&q, &["--json"], &path));
    assert_eq!(s["jobs"], 0);
    assert_eq!(s["skipped_already_queued"], 12);

    let s = success_json(import(&q, &["--json", "--force"], &path));
    assert_eq!(s["appids"], 12);
    assert_eq!(s["skipped_already_queued"], 0);
    assert_eq!(stats(&q).await.ready, 4);
}

#[tokio::test]
async fn bad_rows_exit_2_name_each_line_and_enqueue_nothing() {
    let q = unique_queue("cli-badrows");
    let mut content = String::from("env,appid\nprod,wx0000000000000001\n");
    for i in 0..25 {
        content.push_str(&format!("prod,wxBAD{i}\n"));
    }
    content.push_str("bad env,wx0000000000000002\n");
    let (_dir, path) = input("rows.csv", content.as_bytes());
    import(&q, &[], &path)
        .code(2)
        .stderr(contains(format!(
            "{}:3: invalid appid \"wxBAD0\"",
            path.display()
        )))
        .stderr(contains("… and 6 more invalid lines"))
        .stderr(contains("26 invalid lines"))
        .stderr(contains("nothing was enqueued"))
        .stderr(contains("--skip-invalid"));
    assert_eq!(stats(&q).await.jobs, 0);
}

#[tokio::test]
async fn skip_invalid_enqueues_the_valid_rows_and_reports_the_rest() {
    let q = unique_queue("cli-skip");
    let content = "env,appid\nprod,wx0000000000000001\nprod,nope\nprod,wx0000000000000002\n";
    let (_dir, path) = input("rows.csv", content.as_bytes());
    let out = import(&q, &["--skip-invalid", "--json"], &path)
        .success()
        .stderr(contains(":3: invalid appid \"nope\""))
        .get_output()
        .clone();
    let s = json_out(&out);
    assert_eq!(s["invalid_rows"], 1);
    assert_eq!(s["errors"][0]["line"], 3);
    assert_eq!(s["appids"], 2);
    assert_eq!(stats(&q).await.ready, 1);
}

#[tokio::test]
async fn a_dry_run_shows_the_plan_and_enqueues_nothing() {
    let q = unique_queue("cli-dry");
    let (_dir, path) = input("pairs.csv", csv(25).as_bytes());
    import(&q, &["--dry-run", "--chunk-size", "5"], &path)
        .success()
        .stdout(contains("dry run: nothing was enqueued"))
        .stdout(contains("would enqueue 5 jobs (25 appids"))
        .stdout(contains("prod: 25 appids, 5 jobs"));
    let stats = stats(&q).await;
    assert_eq!((stats.jobs, stats.events), (0, 0));
}

#[tokio::test]
async fn a_csv_with_bom_crlf_and_reordered_columns_imports() {
    let q = unique_queue("cli-bom");
    let content =
        "\u{feff}note,appid,env\r\nx,wx0000000000000001,prod\r\ny,wx0000000000000002,test\r\n";
    let (_dir, path) = input("excel.csv", content.as_bytes());
    let s = success_json(import(&q, &["--json"], &path));
    assert_eq!((s["rows"].as_u64(), s["jobs"].as_u64()), (Some(2), Some(2)));
    assert_eq!(s["envs"], 2);
}

#[tokio::test]
async fn jsonl_in_both_shapes_imports_from_stdin() {
    let q = unique_queue("cli-jsonl");
    let input = format!(
        "{{\"env\":\"prod\",\"appid\":\"{}\"}}\n{{\"env\":\"prod\",\"appids\":[\"{}\",\"{}\"]}}\n",
        appid(1),
        appid(2),
        appid(3)
    );
    let s = success_json(
        envshare(&q)
            .args(["import", "-", "--json"])
            .write_stdin(input)
            .assert(),
    );
    assert_eq!(s["format"], "jsonl");
    assert_eq!(s["input"], "<stdin>");
    assert_eq!(s["appids"], 3);
    assert_eq!(s["jobs"], 1);
}

#[tokio::test]
async fn a_missing_file_exits_2_and_says_so() {
    let q = unique_queue("cli-missing");
    envshare(&q)
        .args(["import", "/nonexistent/pairs.csv"])
        .assert()
        .code(2)
        .stderr(contains("cannot read /nonexistent/pairs.csv: no such file"));
}

#[tokio::test]
async fn an_empty_file_exits_2_and_says_what_it_needs() {
    let q = unique_queue("cli-empty");
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in [("empty.csv", ""), ("header.csv", "env,appid\r\n")] {
        let path = file(&dir, name, content.as_bytes());
        import(&q, &[], &path)
            .code(2)
            .stderr(contains("the input is empty"));
    }
}

#[tokio::test]
async fn an_unknown_format_exits_2_and_names_the_flag() {
    let q = unique_queue("cli-format");
    let (_dir, path) = input("pairs.txt", b"hello world\n");
    import(&q, &[], &path)
        .code(2)
        .stderr(contains("unknown input format"))
        .stderr(contains("--format csv|jsonl"));
    // A usage error (a format clap does not know) is 2 as well.
    import(&q, &["--format", "xml"], &path).code(2);
}

#[tokio::test]
async fn a_missing_column_exits_2_and_shows_the_header() {
    let q = unique_queue("cli-column");
    let (_dir, path) = input("pairs.csv", b"env,app_id\nprod,wx0000000000000001\n");
    import(&q, &[], &path)
        .code(2)
        .stderr(contains("no \"appid\" column (found: env,app_id)"));
}

#[tokio::test]
async fn an_unreachable_redis_exits_1_with_the_url_but_not_the_password() {
    let q = unique_queue("cli-noredis");
    let port = envshare_tests::free_port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}");
    envshare(&q)
        .env("ENVSHARE_REDIS_URL", &url)
        .args(["status"])
        .assert()
        .code(1)
        .stderr(contains(format!(
            "cannot reach Redis at redis://:***@127.0.0.1:{port}"
        )))
        .stderr(contains("ENVSHARE_REDIS_URL"))
        .stderr(contains("hunter2").not());
}

#[tokio::test]
async fn enqueue_validates_and_enqueues_a_few_pairs() {
    let q = unique_queue("cli-enqueue");
    envshare(&q)
        .args([
            "enqueue",
            "--env",
            "prod",
            "--appid",
            appid(1).as_str(),
            "--appid",
            "wxBAD",
        ])
        .assert()
        .code(2)
        .stderr(contains("fix --appid"));
    let s = success_json(
        envshare(&q)
            .args([
                "enqueue",
                "--env",
                "prod",
                "--chunk-size",
                "2",
                "--json",
                "--appid",
            ])
            .args([appid(1), appid(2), appid(3), appid(3)].map(|a| a.to_string()))
            .assert(),
    );
    assert_eq!(
        (s["jobs"].as_u64(), s["appids"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(s["duplicates_in_input"], 1);
    assert_eq!(stats(&q).await.ready, 2);
}

#[tokio::test]
async fn status_json_reports_counts_and_the_batch() {
    let q = unique_queue("cli-status");
    envshare(&q)
        .args([
            "enqueue",
            "--env",
            "prod",
            "--batch",
            "b-s",
            "--appid",
            appid(1).as_str(),
            appid(2).as_str(),
        ])
        .assert()
        .success();
    let s = success_json(
        envshare(&q)
            .args(["status", "--json", "--batch", "b-s"])
            .assert(),
    );
    assert_eq!(s["ready"], 1);
    assert_eq!(s["dead"], 0);
    assert_eq!(s["batch"]["appids"], 2);
    assert_eq!(s["batch"]["pending"], 2);
    assert_eq!(s["ticket"]["stored"], false);
    envshare(&q)
        .args(["status", "--batch", "b-nope"])
        .assert()
        .code(2)
        .stderr(contains("has no batch b-nope"));
}

/// Enqueues one job and buries it through the queue API; returns the job id.
async fn dead_job(q: &QueueName) -> String {
    let queue = queue(q)
        .await
        .with_clock(Arc::new(ManualClock::new(1_800_000_000_000)));
    let job = NewJob {
        op: envshare::store::JobOp::Share,
        env: EnvId::parse("prod").unwrap(),
        appids: vec![appid(7)],
        batch: BatchId::parse("b-dead").unwrap(),
        run_at_ms: None,
    };
    let report = queue
        .enqueue(vec![job], EnqueueOptions::default())
        .await
        .unwrap();
    let Claim::Jobs(leases) = queue.claim(&WorkerId::new("w"), 1).await.unwrap() else {
        panic!("not paused")
    };
    let outcome = Outcome::Dead {
        reason: FailReason::PermanentError,
        errcode: Some(40097),
        errmsg: "invalid args".into(),
    };
    let acks = leases
        .into_iter()
        .map(|l| Ack::new(l, outcome.clone()))
        .collect();
    queue.complete(acks).await.unwrap();
    report.job_ids[0].to_string()
}

#[tokio::test]
async fn a_dead_job_is_listed_and_retry_puts_it_back_in_ready() {
    let q = unique_queue("cli-dead");
    let id = dead_job(&q).await;
    envshare(&q)
        .args(["dead", "list"])
        .assert()
        .success()
        .stdout(contains(id.as_str()))
        .stdout(contains("permanent_error"))
        .stdout(contains("40097"));
    let listed = envshare(&q)
        .args(["dead", "list", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json_out(&listed)[0]["attempts"], 1);

    envshare(&q)
        .args(["dead", "retry", &id])
        .assert()
        .success()
        .stdout(contains("1 dead job put back in ready"));
    let stats = stats(&q).await;
    assert_eq!((stats.dead, stats.ready), (0, 1));
    envshare(&q)
        .args(["dead", "retry", &id])
        .assert()
        .code(2)
        .stderr(contains("is a dead job"));
}

#[tokio::test]
async fn purge_refuses_without_yes_when_stdin_is_not_a_terminal() {
    let q = unique_queue("cli-purge");
    dead_job(&q).await;
    envshare(&q)
        .args(["dead", "purge", "--all"])
        .write_stdin("y\n")
        .assert()
        .code(2)
        .stderr(contains("pass --yes"));
    assert_eq!(stats(&q).await.dead, 1);
    envshare(&q)
        .args(["dead", "purge", "--all", "--yes"])
        .assert()
        .success()
        .stdout(contains("1 dead job purged"));
    assert_eq!(stats(&q).await.dead, 0);
}

#[tokio::test]
async fn events_tail_prints_events_as_json_and_acks_them() {
    let q = unique_queue("cli-events");
    dead_job(&q).await;
    let out = envshare(&q)
        .args([
            "events",
            "tail",
            "--from-start",
            "--json",
            "--count",
            "2",
            "--group",
            "g",
        ])
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let types: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(types, ["\"share.failed\"", "\"batch.completed\""]);
    let mut conn = TestRedis::shared().conn().await;
    // XPENDING's summary form starts with the number of pending entries.
    let pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(envshare::store::Keys::new(&q).events())
        .arg("g")
        .query_async(&mut conn)
        .await
        .unwrap();
    let count: u64 = redis::from_redis_value(pending[0].clone()).unwrap();
    assert_eq!(count, 0, "tail acks what it printed");
}

#[tokio::test]
async fn ticket_set_reads_stdin_stores_it_and_never_echoes_it() {
    let q = unique_queue("cli-ticket");
    let ticket = "ticket@@@xyz-secret-value";
    let out = envshare(&q)
        .args(["ticket", "set", "-"])
        .write_stdin(format!("{ticket}\n"))
        .assert()
        .success()
        .stdout(contains(format!(
            "ticket stored ({} characters)",
            ticket.len()
        )))
        .get_output()
        .clone();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("secret"), "the ticket was echoed: {all}");
    let mut conn = TestRedis::shared().conn().await;
    let (stored, set_at): (String, u64) = redis::cmd("HMGET")
        .arg(envshare::store::Keys::new(&q).ticket())
        .arg("ticket")
        .arg("set_at")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored, ticket);
    assert!(set_at > 0);
    let status = envshare(&q)
        .args(["status", "--json"])
        .assert()
        .success()
        .get_output()
        .clone();
    assert_eq!(json_out(&status)["ticket"]["stored"], true);
    assert!(!String::from_utf8_lossy(&status.stdout).contains("secret"));
    envshare(&q)
        .args(["ticket", "set", "-"])
        .write_stdin("\n")
        .assert()
        .code(2)
        .stderr(contains("the ticket is empty"));
}

#[test]
fn a_usage_error_exits_2() {
    let q = unique_queue("cli-usage");
    envshare(&q).args(["dead", "retry"]).assert().code(2);
    envshare(&q).arg("frobnicate").assert().code(2);
}

#[tokio::test]
async fn the_demo_ends_every_pair_and_deletes_its_queue() {
    let redis = TestRedis::shared();
    let out = Command::new(bin())
        .args(["demo", "--pairs", "100"])
        .env_remove("REDIS_URL")
        .env("ENVSHARE_REDIS_URL", redis.url())
        .env("ENVSHARE_LOG", "warn")
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // "batch b-… completed: 100 of 100 pairs ended, 99 accepted, 1 failed"
    let line = stdout
        .lines()
        .find(|l| l.contains(" completed: "))
        .unwrap_or_else(|| panic!("no completion line in:\n{stdout}\n{stderr}"));
    let numbers: Vec<u64> = line
        .split(": ")
        .nth(1)
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let [ended, total, accepted, failed] = numbers[..] else {
        panic!("unexpected completion line: {line}")
    };
    assert_eq!((ended, total), (100, 100), "{line}");
    assert_eq!(accepted + failed, 100, "{line}");
    // The generated file holds one appid ending in "bad", which the sandbox rejects.
    assert!(failed >= 1, "{line}");
    assert!(stdout.contains("rejected"), "{stdout}");
    assert!(stdout.contains("\"type\": \"batch.completed\""), "{stdout}");
    let token_fetches: u64 = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("token fetches"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no token fetches line in:\n{stdout}"));
    assert!(
        token_fetches >= 1,
        "component mode fetches a token: {stdout}"
    );

    // The demo ran in a queue of its own on the given Redis and deleted it afterwards.
    let queue = stderr
        .split_whitespace()
        .find(|w| w.starts_with("demo-"))
        .map(|w| w.trim_end_matches([';', ')']))
        .unwrap_or_else(|| panic!("no demo queue named in:\n{stderr}"));
    let mut conn = redis.conn().await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("envshare:{{{queue}}}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty(), "keys left behind: {left:?}");
}
