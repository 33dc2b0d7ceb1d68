//! The operator's commands end to end: the real `envshare` binary against a real Redis, with
//! in-process workers (`envshare::worker::Application`) sharing against the sandbox over HTTP.
//! `pause`/`resume`, `job show`, `batch list|show|results|cancel` and `find`.

use std::process::Output;
use std::time::Duration;

use envshare::events::{EventKind, FailReason};
use envshare::sandbox::SandboxConfig;
use envshare::store::{Ack, Claim, DeadSelection, Outcome, WorkerId};
use envshare::{AppId, BatchId};
use envshare_tests::{TestStack, all_accepted, appid, run_envshare, wait_until};

/// The fixed token the sandbox accepts.
const TOKEN: &str = "operator-static-token";
/// This file's appids: `appid(BASE + i)`.
const BASE: u64 = 0x0a_0000;
const ENV: &str = "prod-ops";
const WAIT: Duration = Duration::from_secs(20);

/// The header of `batch results --format csv`.
const HEADER: &str =
    "batch_id,env,appid,state,confirm_url,errcode,errmsg,reason,attempts,job_id,updated_at";

async fn stack(prefix: &str, config: SandboxConfig) -> TestStack {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        ..config
    };
    TestStack::start(prefix, config, |_| {}).await
}

fn ids(from: u64, n: u64) -> Vec<AppId> {
    (from..from + n).map(|i| appid(BASE + i)).collect()
}

/// `envshare ARGS` on the stack's queue and sandbox, run off the runtime's threads (the sandbox
/// and the workers keep running meanwhile).
async fn envshare(s: &TestStack, args: &[&str]) -> Output {
    let env = [
        ("ENVSHARE_WECHAT_BASE_URL", s.sandbox.url().to_owned()),
        ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
    ];
    run_envshare(s.name().as_str(), args, &env).await
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `envshare ARGS`, asserts it succeeded and returns its standard output.
async fn ok(s: &TestStack, args: &[&str]) -> String {
    let o = envshare(s, args).await;
    assert!(
        o.status.success(),
        "envshare {args:?}: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs `envshare ARGS --json`-style and parses its standard output as one JSON value.
async fn json(s: &TestStack, args: &[&str]) -> serde_json::Value {
    let out = ok(s, args).await;
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Runs `envshare ARGS`, asserts it exited with `code`, and returns its standard error.
async fn fails(s: &TestStack, args: &[&str], code: i32) -> String {
    let o = envshare(s, args).await;
    assert_eq!(
        o.status.code(),
        Some(code),
        "envshare {args:?}\nstdout: {}\nstderr: {}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

/// `envshare enqueue --env ENV --appid … --batch BATCH` (chunk size `chunk`).
async fn enqueue(s: &TestStack, batch: &str, appids: &[AppId], chunk: usize) {
    let chunk = chunk.to_string();
    let mut args = vec![
        "enqueue",
        "--env",
        ENV,
        "--batch",
        batch,
        "--chunk-size",
        &chunk,
        "--force",
        "--json",
        "--appid",
    ];
    args.extend(appids.iter().map(AppId::as_str));
    let summary = json(s, &args).await;
    assert_eq!(summary["appids"], appids.len(), "{summary}");
}

async fn get(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

fn completed_events(events: &[EventKind], batch: &str) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, EventKind::BatchCompleted { batch_id, .. } if batch_id.as_str() == batch))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_stops_claims_at_the_next_poll_shows_everywhere_and_resume_restarts_them() {
    let s = stack("op-pause", SandboxConfig::default()).await;
    let worker = s.worker().await;
    let out = ok(
        &s,
        &["pause", "--reason", "database upgrade, back at 14:00"],
    )
    .await;
    assert!(out.contains("until resumed"), "{out}");

    let appids = ids(0, 6);
    enqueue(&s, "b-ops-pause", &appids, 2).await;
    // The workers poll every 50 ms: many polls pass, none may claim.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let stats = s.stats().await;
    assert_eq!(
        (stats.ready, stats.running, s.share_calls()),
        (3, 0, 0),
        "{stats:?}"
    );

    let status = ok(&s, &["status"]).await;
    assert!(
        status
            .contains("paused until resumed (`envshare resume`): database upgrade, back at 14:00"),
        "{status}"
    );
    let status = json(&s, &["status", "--json"]).await;
    assert_eq!(
        status["paused"]["reason"],
        "database upgrade, back at 14:00"
    );
    let base = format!("http://{}", worker.http_addr());
    let ready: serde_json::Value =
        serde_json::from_str(&get(&format!("{base}/readyz")).await).unwrap();
    assert_eq!(
        ready["checks"]["pause"]["detail"], "paused until resumed: database upgrade, back at 14:00",
        "{ready}"
    );
    let metrics = get(&format!("{base}/metrics")).await;
    assert!(metrics.contains("envshare_queue_paused 1"), "{metrics}");

    let out = ok(&s, &["resume"]).await;
    assert!(out.contains("resumed"), "{out}");
    assert!(out.contains("database upgrade, back at 14:00"), "{out}");
    s.share_events(6, WAIT).await;
    assert!(
        wait_until(WAIT, || async { s.stats().await.jobs == 0 }).await,
        "every job completes after resume"
    );
    let metrics = get(&format!("{base}/metrics")).await;
    assert!(metrics.contains("envshare_queue_paused 0"), "{metrics}");
    let ready: serde_json::Value =
        serde_json::from_str(&get(&format!("{base}/readyz")).await).unwrap();
    assert_eq!(ready["checks"]["pause"]["detail"], "not paused", "{ready}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_lifts_an_automatic_quota_pause_early() {
    let s = stack("op-quota", SandboxConfig::default()).await;
    let reason = "WeChat daily quota spent (45009: reach max api daily quota limit)";
    s.queue
        .pause_until(s.queue.now_ms() + 3_600_000, reason)
        .await
        .unwrap();
    let worker = s.worker().await;
    enqueue(&s, "b-ops-quota", &ids(10, 3), 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.share_calls(), 0, "no call while the quota pause holds");
    let status = ok(&s, &["status"]).await;
    assert!(
        status.contains("paused until ") && status.contains(reason),
        "{status}"
    );

    let out = json(&s, &["resume", "--json"]).await;
    assert_eq!(out["lifted"]["reason"], reason, "{out}");
    assert_eq!(out["lifted"]["until_resumed"], false, "{out}");
    s.share_events(3, WAIT).await;
    assert!(s.stats().await.paused.is_none());
    let out = ok(&s, &["resume"]).await;
    assert!(out.contains("was not paused; nothing to resume"), "{out}");
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_takes_a_duration_never_shortens_a_longer_pause_and_rejects_bad_input() {
    let s = stack("op-pausefor", SandboxConfig::default()).await;
    let e = fails(&s, &["pause", "--for", "0s"], 2).await;
    assert!(e.contains("--for") && e.contains("zero"), "{e}");
    let e = fails(&s, &["pause", "--for", "10"], 2).await;
    assert!(e.contains("unit"), "{e}");
    let e = fails(&s, &["pause", "--reason", " "], 2).await;
    assert!(e.contains("--reason"), "{e}");
    assert!(s.stats().await.paused.is_none(), "bad input pauses nothing");

    let before = s.queue.now_ms();
    let out = json(&s, &["pause", "--for", "1h", "--reason", "audit", "--json"]).await;
    let until = out["paused"]["until_ms"].as_u64().unwrap();
    assert!(
        (before + 3_600_000..=s.queue.now_ms() + 3_600_000).contains(&until),
        "{out}"
    );
    assert_eq!(out["paused"]["until_resumed"], false);
    assert_eq!(out["paused"]["reason"], "audit");
    let status = ok(&s, &["status"]).await;
    assert!(
        status.contains("paused until ") && status.contains("more): audit"),
        "{status}"
    );

    // Until resumed is longer than an hour: it replaces the pause.
    let out = json(&s, &["pause", "--json"]).await;
    assert_eq!(out["paused"]["until_resumed"], true, "{out}");
    assert_eq!(out["kept_longer"], false, "{out}");
    // Five minutes is shorter: the open-ended pause stays, and the answer says so.
    let out = ok(&s, &["pause", "--for", "5m", "--reason", "short"]).await;
    assert!(out.contains("already paused for longer"), "{out}");
    let paused = s.stats().await.paused.unwrap();
    assert_eq!(paused.until_ms, envshare::schedule::PAUSE_UNTIL_RESUMED_MS);
    assert_ne!(paused.reason, "short");
    ok(&s, &["resume"]).await;
    assert!(s.stats().await.paused.is_none());
}

/// Parses a CSV the way a spreadsheet would: header, then records of equal length.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes());
    r.records()
        .map(|rec| rec.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_results_list_every_appid_with_its_confirm_url_as_csv_and_jsonl() {
    let rejected = appid(BASE + 0x24);
    let config = SandboxConfig {
        rejected_appids: [rejected.to_string()].into(),
        ..SandboxConfig::default()
    };
    let s = stack("op-results", config).await;
    let worker = s.worker().await;
    let mut appids = ids(0x20, 25);
    appids.sort();
    let batch = "b-ops-results";
    enqueue(&s, batch, &appids, 10).await;
    s.share_events(25, WAIT).await;
    assert!(
        wait_until(WAIT, || async {
            s.queue
                .batch(&BatchId::parse(batch).unwrap())
                .await
                .unwrap()
                .is_some_and(|b| b.completed)
        })
        .await
    );
    worker.stop().await;

    let csv = ok(&s, &["batch", "results", batch]).await;
    assert!(csv.starts_with(&format!("{HEADER}\r\n")), "{csv}");
    assert!(
        csv.ends_with("\r\n") && !csv.contains("\u{feff}"),
        "RFC 4180 line ends, no BOM"
    );
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 26, "a header and one row per appid:\n{csv}");
    let mut seen: Vec<String> = Vec::new();
    for row in &rows[1..] {
        assert_eq!(row.len(), 11, "{row:?}");
        let (b, env, app, state, url) = (&row[0], &row[1], &row[2], &row[3], &row[4]);
        assert_eq!((b.as_str(), env.as_str()), (batch, ENV));
        assert!(
            row[10].ends_with('Z') && row[10].contains('T'),
            "RFC 3339: {row:?}"
        );
        assert!(!row[9].is_empty(), "job id: {row:?}");
        if app == rejected.as_str() {
            assert_eq!(state, "failed", "{row:?}");
            assert!(
                url.is_empty() && !row[6].is_empty() && row[7] == "rejected",
                "{row:?}"
            );
        } else {
            assert_eq!(state, "accepted", "{row:?}");
            assert_eq!(*url, format!("{}/confirm/{ENV}/{app}", s.sandbox.url()));
        }
        seen.push(app.clone());
    }
    seen.sort();
    let want: Vec<String> = appids.iter().map(ToString::to_string).collect();
    assert_eq!(seen, want, "every appid exactly once");

    let jsonl = ok(
        &s,
        &[
            "batch", "results", batch, "--format", "jsonl", "--state", "failed",
        ],
    )
    .await;
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{jsonl}");
    assert_eq!(lines[0]["appid"], rejected.as_str());
    assert_eq!(lines[0]["state"], "failed");
    assert_eq!(lines[0]["reason"], "rejected");
    // Sorted here: the order of a parsed object's keys is serde_json's choice (sorted, or as
    // written once any crate of the test build turns on its `preserve_order` feature).
    let mut keys: Vec<&str> = lines[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    let mut want: Vec<&str> = HEADER.split(',').collect();
    want.sort_unstable();
    assert_eq!(keys, want, "the CSV's columns, as keys");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("for-admins.csv");
    let o = envshare(
        &s,
        &[
            "batch",
            "results",
            batch,
            "--bom",
            "--state",
            "accepted",
            "--out",
            path.to_str().unwrap(),
        ],
    )
    .await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "the rows go to the file");
    assert!(stderr(&o).contains("wrote 24 rows"), "{}", stderr(&o));
    let file = std::fs::read_to_string(&path).unwrap();
    let body = file.strip_prefix('\u{feff}').expect("a UTF-8 BOM first");
    assert_eq!(parse_csv(body).len(), 25);

    let show = json(&s, &["batch", "show", batch, "--json"]).await;
    assert_eq!(show["results"]["accepted"], 24, "{show}");
    assert_eq!(show["results"]["failed"], 1, "{show}");
    assert_eq!(show["results"]["pending"], 0, "{show}");
    assert_eq!(
        (show["appids"].as_u64(), show["jobs"].as_u64()),
        (Some(25), Some(3))
    );
    assert_eq!(show["phase"], "completed", "{show}");
    let text = ok(&s, &["batch", "show", batch]).await;
    assert!(
        text.contains("appids by state: accepted 24, failed 1"),
        "{text}"
    );

    let list = json(&s, &["batch", "list", "--json"]).await;
    assert_eq!(list[0]["id"], batch, "{list}");
    assert_eq!(list[0]["accepted"], 24, "{list}");
    let text = ok(&s, &["batch", "list"]).await;
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("batch ") && header.contains("accepted"),
        "{text}"
    );
    let line = lines.next().unwrap();
    assert!(
        line.starts_with(batch) && line.ends_with("completed"),
        "{text}"
    );
    // Aligned: each column starts where its title does.
    let col = header.find("appids").unwrap() + "appids".len();
    assert_eq!(&line[col - 2..col], "25", "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_batch_ends_its_waiting_appids_cancelled_and_completes_it_once() {
    let s = stack("op-cancel", SandboxConfig::default()).await;
    let batch = "b-ops-cancel";
    enqueue(&s, batch, &ids(0x40, 12), 5).await;
    assert_eq!(s.stats().await.ready, 3);

    let out = json(&s, &["batch", "cancel", batch, "--json"]).await;
    assert_eq!(out["already_completed"], false, "{out}");
    assert_eq!(out["cancelled_jobs"], 3, "{out}");
    assert_eq!(out["cancelled_appids"], 12, "{out}");
    assert_eq!(out["running_jobs"], 0, "{out}");
    let stats = s.stats().await;
    assert_eq!((stats.ready, stats.jobs), (0, 0), "{stats:?}");

    let jsonl = ok(
        &s,
        &["batch", "results", batch, "--json", "--state", "cancelled"],
    )
    .await;
    assert_eq!(jsonl.lines().count(), 12, "{jsonl}");
    let show = json(&s, &["batch", "show", batch, "--json"]).await;
    assert_eq!(show["results"]["cancelled"], 12, "{show}");
    assert_eq!(show["phase"], "cancelled", "{show}");
    let list = ok(&s, &["batch", "list"]).await;
    assert!(
        list.lines().nth(1).unwrap().ends_with("cancelled"),
        "{list}"
    );
    assert_eq!(completed_events(&s.events().await, batch), 1);

    let out = ok(&s, &["batch", "cancel", batch]).await;
    assert!(
        out.contains("had already completed") && out.contains("nothing changed"),
        "{out}"
    );
    let out = json(&s, &["batch", "cancel", batch, "--json"]).await;
    assert_eq!(out["already_completed"], true, "{out}");
    assert_eq!(
        completed_events(&s.events().await, batch),
        1,
        "no second batch.completed"
    );

    // 500 waiting appids: the sweep's slice that cancels the last job completes the batch.
    let big = "b-ops-cancel-500";
    let mut csv = String::from("env,appid\n");
    for a in ids(0x1000, 500) {
        csv.push_str(&format!("{ENV},{a}\n"));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("500.csv");
    std::fs::write(&path, csv).unwrap();
    ok(
        &s,
        &["import", path.to_str().unwrap(), "--batch", big, "--json"],
    )
    .await;
    let out = ok(&s, &["batch", "cancel", big]).await;
    assert!(
        out.contains("50 waiting jobs (500 appids) taken out of the queue"),
        "{out}"
    );
    let show = json(&s, &["batch", "show", big, "--json"]).await;
    assert_eq!(show["results"]["cancelled"], 500, "{show}");
    assert_eq!(completed_events(&s.events().await, big), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_shows_an_appid_across_two_batches_newest_first() {
    let s = stack("op-find", SandboxConfig::default()).await;
    let worker = s.worker().await;
    let target = appid(BASE + 0x60);
    enqueue(
        &s,
        "b-ops-find-1",
        &[target.clone(), appid(BASE + 0x61)],
        10,
    )
    .await;
    s.share_events(2, WAIT).await;
    // Batches are ordered by creation time (ms): keep the second one a clear tick later.
    tokio::time::sleep(Duration::from_millis(20)).await;
    enqueue(&s, "b-ops-find-2", std::slice::from_ref(&target), 10).await;
    s.share_events(3, WAIT).await;
    worker.stop().await;

    let rows = json(&s, &["find", target.as_str(), "--json"]).await;
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["batch_id"], "b-ops-find-2");
    assert_eq!(rows[1]["batch_id"], "b-ops-find-1");
    for r in rows {
        assert_eq!(r["appid"], target.as_str());
        assert_eq!(r["state"], "accepted");
        assert!(
            r["confirm_url"]
                .as_str()
                .unwrap()
                .ends_with(target.as_str())
        );
        assert!(r["updated_at"].as_str().unwrap().ends_with('Z'));
    }
    let text = ok(&s, &["find", target.as_str()]).await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[1].starts_with("b-ops-find-2") && lines[2].starts_with("b-ops-find-1"),
        "{text}"
    );

    let out = ok(&s, &["find", appid(BASE + 0x6f).as_str()]).await;
    assert!(out.contains("no share of"), "{out}");
    let e = fails(&s, &["find", "wxNOPE"], 2).await;
    assert!(e.contains("appid"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_show_describes_a_waiting_then_dead_job_and_names_a_missing_one() {
    let s = stack("op-job", SandboxConfig::default()).await;
    let (batch, jobs) = s.enqueue(ENV, &[ids(0x80, 3)]).await;
    let id = jobs[0].as_str();
    let out = json(&s, &["job", "show", id, "--json"]).await;
    assert_eq!(out["state"]["state"], "ready", "{out}");
    assert_eq!(out["job"]["batch"], batch.as_str(), "{out}");
    assert_eq!(out["job"]["appids"].as_array().unwrap().len(), 3, "{out}");
    let text = ok(&s, &["job", "show", id]).await;
    assert!(
        text.contains(&format!("job {id} (share)")) && text.contains("ready (waiting"),
        "{text}"
    );
    assert!(text.contains(appid(BASE + 0x82).as_str()), "{text}");

    // The job dies: job show says why, and its appids' rows say the same.
    let Claim::Jobs(leases) = s.queue.claim(&WorkerId::new("w-ops"), 1).await.unwrap() else {
        panic!("not paused")
    };
    let outcome = Outcome::Dead {
        reason: FailReason::PermanentError,
        errcode: Some(40097),
        errmsg: "invalid args, a \"quoted\" word".into(),
    };
    let acks = leases
        .into_iter()
        .map(|l| Ack::new(l, outcome.clone()))
        .collect();
    s.queue.complete(acks).await.unwrap();
    let text = ok(&s, &["job", "show", id]).await;
    assert!(text.contains("dead since"), "{text}");
    assert!(
        text.contains("permanent_error (errcode 40097) after 1 attempt(s): invalid args"),
        "{text}"
    );
    let out = json(&s, &["job", "show", id, "--json"]).await;
    assert_eq!(out["state"]["state"], "dead", "{out}");
    assert_eq!(out["dead"]["errcode"], 40097, "{out}");
    let csv = ok(
        &s,
        &["batch", "results", batch.as_str(), "--state", "failed"],
    )
    .await;
    let rows = parse_csv(&csv);
    assert_eq!(rows.len(), 4, "{csv}");
    for row in &rows[1..] {
        assert_eq!(row[5], "40097", "{row:?}");
        assert_eq!(row[6], "invalid args, a \"quoted\" word", "{row:?}");
        assert_eq!(row[7], "permanent_error", "{row:?}");
        assert_eq!(row[9], id, "{row:?}");
    }
    assert!(
        csv.contains("\"invalid args, a \"\"quoted\"\" word\""),
        "RFC 4180 quoting: {csv}"
    );

    let gone = envshare::JobId::generate();
    let e = fails(&s, &["job", "show", gone.as_str()], 2).await;
    assert!(
        e.contains(gone.as_str()) && e.contains("its id says it was created at"),
        "{e}"
    );
    let e = fails(&s, &["job", "show", "01NOSUCHJOB0000000000000000"], 2).await;
    assert!(e.contains("01NOSUCHJOB0000000000000000"), "{e}");
    assert!(
        e.contains("envshare batch list") && e.contains("no batch on record names it"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_show_finds_a_finished_job_in_its_batch_results() {
    let s = stack("op-job-done", SandboxConfig::default()).await;
    // Two batches, the job looked up in the first one, between two other jobs.
    let (batch, jobs) = s
        .enqueue(ENV, &[ids(0x90, 2), ids(0x92, 3), ids(0x95, 1)])
        .await;
    let (later, _) = s.enqueue(ENV, &[ids(0x96, 2)]).await;
    assert_ne!(batch, later);
    // Finish every job: the first ones accepted, the last one of the first batch dead.
    let worker = WorkerId::new("w-done");
    let mut acks = Vec::new();
    while let Claim::Jobs(leases) = s.queue.claim(&worker, 10).await.unwrap() {
        if leases.is_empty() {
            break;
        }
        for l in leases {
            let outcome = if l.job.id == jobs[2] {
                Outcome::Dead {
                    reason: FailReason::PermanentError,
                    errcode: Some(40097),
                    errmsg: "invalid args".into(),
                }
            } else {
                all_accepted(&l.job, Some("https://confirm.example/"))
            };
            acks.push(Ack::new(l, outcome));
        }
    }
    s.queue.complete(acks).await.unwrap();
    s.queue.dead_purge(DeadSelection::All).await.unwrap();
    assert_eq!(
        s.queue.stats().await.unwrap().jobs,
        0,
        "every job left the queue"
    );

    let id = jobs[1].as_str();
    let out = json(&s, &["job", "show", id, "--json"]).await;
    assert_eq!(out["id"], id, "{out}");
    assert_eq!(out["batch_id"], batch.as_str(), "{out}");
    assert_eq!(out["index"], 1, "{out}");
    let rows = out["rows"].as_array().unwrap();
    let appids: Vec<&str> = rows.iter().map(|r| r["appid"].as_str().unwrap()).collect();
    let want = ids(0x92, 3);
    assert_eq!(
        appids,
        want.iter().map(|a| a.as_str()).collect::<Vec<_>>(),
        "{out}"
    );
    for (r, a) in rows.iter().zip(&want) {
        assert_eq!(r["state"], "accepted", "{r}");
        assert_eq!(r["job_id"], id, "{r}");
        assert_eq!(
            r["confirm_url"],
            format!("https://confirm.example/{a}"),
            "{r}"
        );
    }
    let text = ok(&s, &["job", "show", id]).await;
    assert!(
        text.contains(&format!("job {id} (finished")) && text.contains(batch.as_str()),
        "{text}"
    );
    assert!(
        text.contains(&format!("https://confirm.example/{}", want[2])),
        "{text}"
    );

    // The dead, purged job: its batch still tells how it ended.
    let out = json(&s, &["job", "show", jobs[2].as_str(), "--json"]).await;
    assert_eq!(out["index"], 2, "{out}");
    assert_eq!(out["rows"][0]["state"], "failed", "{out}");
    assert_eq!(out["rows"][0]["reason"], "permanent_error", "{out}");
    assert_eq!(out["rows"][0]["errcode"], 40097, "{out}");
    assert_eq!(out["rows"].as_array().unwrap().len(), 1, "{out}");
    // The first job of the first batch.
    let out = json(&s, &["job", "show", jobs[0].as_str(), "--json"]).await;
    assert_eq!(
        (out["index"].as_u64(), out["rows"].as_array().unwrap().len()),
        (Some(0), 2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_invalid_batch_ids_exit_2_naming_them_and_suggesting_batch_list() {
    let s = stack("op-unknown", SandboxConfig::default()).await;
    for args in [
        &["batch", "show", "b-no-such-batch"][..],
        &["batch", "results", "b-no-such-batch"],
        &["batch", "cancel", "b-no-such-batch"],
        &["batch", "show", "b-no-such-batch", "--json"],
    ] {
        let e = fails(&s, args, 2).await;
        assert!(e.contains("b-no-such-batch"), "{args:?}: {e}");
        assert!(e.contains("envshare batch list"), "{args:?}: {e}");
    }
    let e = fails(&s, &["batch", "show", "not a batch!"], 2).await;
    assert!(e.contains("batch id"), "{e}");
    let e = fails(&s, &["batch", "results", "b-x", "--state", "done"], 2).await;
    assert!(
        e.contains("pending") && e.contains("unshared"),
        "the valid states: {e}"
    );
    let e = fails(
        &s,
        &["batch", "results", "b-x", "--format", "jsonl", "--bom"],
        2,
    )
    .await;
    assert!(e.contains("--bom"), "{e}");
    let out = ok(&s, &["batch", "list"]).await;
    assert!(out.contains("no batch on record"), "{out}");
    assert_eq!(
        json(&s, &["batch", "list", "--json"]).await,
        serde_json::json!([])
    );
}
