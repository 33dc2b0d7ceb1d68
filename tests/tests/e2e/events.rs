//! Tests: the events on the stream match their documented schema (`docs/events.md`,
//! `docs/schema/*.json`), and the JSON the Lua scripts write is byte for byte what serde writes
//! for the same [`Event`].
//!
//! One run of the real worker (in-process, the sandbox over real HTTP) produces every event type:
//! a permanent errcode, retries exhausted, an appid refused in `err_list`, an accepted appid that
//! its administrator confirms and one that stays unconfirmed; `envshare serve` (in-process)
//! receives the sandbox's three authorization pushes. Every entry of the stream is then read raw
//! with XRANGE and checked.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use envshare::clock::ManualClock;
use envshare::events::Event;
use envshare::sandbox::{AuthorizationChange, CallbackPush, Fault, SandboxConfig};
use envshare::schedule::ConfirmSchedule;
use envshare::store::{Claim, EnqueueOptions, JobOp, NewJob, Queue, QueueSettings, WorkerId};
use envshare::wechat::Endpoint;
use envshare::worker::WorkerOptions;
use envshare::{BatchId, EnvId};
use envshare_tests::{TestRedis, TestStack, appid, unique_queue, wait_until};
use serde_json::Value;

const TOKEN: &str = "static-token-events";
const ENV: &str = "prod-events";
/// This file's appids are `appid(APPIDS + i)`, apart from other files' ones.
const APPIDS: u64 = 0xe0_0000;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema")
}

/// Every schema file, by event type (the file name without `.json`).
pub(crate) fn validators() -> BTreeMap<String, jsonschema::Validator> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(schema_dir()).expect("docs/schema exists") {
        let path = entry.unwrap().path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(event_type) = name.strip_suffix(".json") else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let schema: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        assert_eq!(
            schema["title"], event_type,
            "{name}: the title names the event type"
        );
        let validator = jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{name} is not a valid JSON Schema: {e}"));
        out.insert(event_type.to_owned(), validator);
    }
    out
}

/// Checks one event's JSON: its schema accepts it, it parses as [`Event`], and serde writes it
/// back byte for byte. Returns the event type, or every problem found.
fn check_event(
    validators: &BTreeMap<String, jsonschema::Validator>,
    type_field: Option<&str>,
    json: &str,
) -> Result<String, String> {
    let value: Value = serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))?;
    let event_type = value["type"]
        .as_str()
        .ok_or_else(|| format!("no type: {json}"))?
        .to_owned();
    let mut problems = Vec::new();
    if let Some(field) = type_field
        && field != event_type
    {
        problems.push(format!("the entry's type field is {field}"));
    }
    match validators.get(&event_type) {
        None => problems.push(format!("no docs/schema/{event_type}.json")),
        Some(validator) => problems.extend(
            validator
                .iter_errors(&value)
                .map(|e| format!("schema: {e} at {}", e.instance_path())),
        ),
    }
    match serde_json::from_str::<Event>(json) {
        Err(e) => problems.push(format!("not an Event: {e}")),
        Ok(event) => {
            let serde = serde_json::to_string(&event).expect("an event serializes");
            if serde != json {
                problems.push(format!("serde writes {serde}"));
            }
        }
    }
    if problems.is_empty() {
        Ok(event_type)
    } else {
        Err(format!("{json}\n    {}", problems.join("\n    ")))
    }
}

/// Checks every event, then fails listing every problem.
pub(crate) fn check_all<'a>(
    validators: &BTreeMap<String, jsonschema::Validator>,
    events: impl IntoIterator<Item = (Option<&'a str>, &'a str)>,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut problems = Vec::new();
    for (type_field, json) in events {
        match check_event(validators, type_field, json) {
            Ok(t) => {
                seen.insert(t);
            }
            Err(p) => problems.push(p),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    seen
}

/// Every entry of `queue`'s events stream, raw: `(type field, event JSON)`.
pub(crate) async fn raw_entries(queue: &Queue) -> Vec<(String, String)> {
    let entries = TestRedis::shared()
        .stream_entries(&queue.keys().events())
        .await;
    entries
        .into_iter()
        .map(|(entry_id, fields)| match <[String; 4]>::try_from(fields) {
            Ok([type_key, type_value, event_key, json]) => {
                assert_eq!((type_key.as_str(), event_key.as_str()), ("type", "event"));
                (type_value, json)
            }
            Err(fields) => {
                panic!("entry {entry_id}: expected the fields type and event, got {fields:?}")
            }
        })
        .collect()
}

#[test]
fn every_schema_is_valid_and_every_example_in_the_docs_matches_its_schema() {
    let validators = validators();
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events.md"))
            .expect("docs/events.md exists");
    let mut in_block = false;
    let mut lines = Vec::new();
    for line in doc.lines() {
        if line.trim() == "```json" {
            in_block = true;
        } else if line.trim() == "```" {
            in_block = false;
        } else if in_block && line.starts_with('{') {
            lines.push((None, line));
        }
    }
    let examples = check_all(&validators, lines);
    let documented: BTreeSet<String> = validators.keys().cloned().collect();
    assert_eq!(
        examples, documented,
        "one example per event type in docs/events.md"
    );
}

#[tokio::test]
async fn every_event_a_run_writes_matches_its_schema_and_what_serde_writes() {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        rejected_appids: [appid(APPIDS + 5).to_string()].into(),
        ..SandboxConfig::default()
    };
    let s = TestStack::start("events-schema", config, |settings| {
        settings.concurrency = 1;
        settings.max_attempts = 2;
        settings.confirm_schedule = ConfirmSchedule::parse("200ms,400ms").unwrap();
        settings.confirm_window = Duration::from_millis(1_500);
    })
    .await;
    let options = WorkerOptions {
        confirm_poll: Duration::from_millis(30),
        confirm_lease: Duration::from_secs(1),
        confirm_claim_idle: Duration::from_secs(1),
        ..WorkerOptions::default()
    };
    let worker = s.worker_with(s.settings.clone(), options).await;

    // share.failed, permanent_error: an errcode retrying cannot fix.
    s.sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::Errcode(40097))]);
    s.enqueue(ENV, &[vec![appid(APPIDS + 1)]]).await;
    s.share_events(1, Duration::from_secs(10)).await;
    // share.failed, retries_exhausted: busy on both attempts.
    s.sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::BUSY), Some(Fault::BUSY)]);
    s.enqueue(ENV, &[vec![appid(APPIDS + 2)]]).await;
    s.share_events(2, Duration::from_secs(10)).await;
    // share.accepted ×2 (one confirmed: share.bound; one not: share.unconfirmed), share.failed
    // (rejected), batch.completed and batch.confirmed.
    let (batch, _) = s
        .enqueue(
            ENV,
            &[vec![
                appid(APPIDS + 3),
                appid(APPIDS + 4),
                appid(APPIDS + 5),
            ]],
        )
        .await;
    s.share_events(5, Duration::from_secs(10)).await;
    assert!(s.sandbox.confirm(ENV, appid(APPIDS + 3).as_str()));
    let confirmed_id = format!("batch.{batch}.confirmed");
    let done = wait_until(Duration::from_secs(10), || async {
        raw_entries(&s.queue)
            .await
            .iter()
            .any(|(_, json)| json.contains(&confirmed_id))
    })
    .await;
    assert!(done, "the last batch is confirmed");
    // share.unshared: the bound appid's binding removed.
    let unshare = NewJob {
        op: JobOp::Unshare,
        env: EnvId::parse(ENV).unwrap(),
        appids: vec![appid(APPIDS + 3)],
        batch: BatchId::generate(),
        run_at_ms: None,
    };
    s.queue
        .enqueue(vec![unshare], EnqueueOptions::default())
        .await
        .unwrap();
    let unshared = wait_until(Duration::from_secs(10), || async {
        raw_entries(&s.queue)
            .await
            .iter()
            .any(|(t, _)| t == "share.unshared")
    })
    .await;
    assert!(unshared, "the unshare ran");
    assert!(
        s.sandbox
            .bindings()
            .iter()
            .all(|b| b.appid != appid(APPIDS + 3).as_str()),
        "the sandbox no longer binds it"
    );
    // share.failed, cancelled: a job waiting for a later start, cancelled.
    let later = NewJob {
        op: JobOp::Share,
        env: EnvId::parse(ENV).unwrap(),
        appids: vec![appid(APPIDS + 6)],
        batch: BatchId::generate(),
        run_at_ms: Some(s.queue.now_ms() + 3_600_000),
    };
    let cancelled = later.batch.clone();
    s.queue
        .enqueue(vec![later], EnqueueOptions::default())
        .await
        .unwrap();
    s.queue.cancel_batch(&cancelled).await.unwrap().unwrap();
    worker.stop().await;

    // app.authorized, app.authorization_updated, app.unauthorized: pushed to `envshare serve`.
    let mut serve_settings = s.settings.clone();
    serve_settings.component_appid =
        Some(envshare::AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
    serve_settings.callback_token = Some(CallbackPush::TOKEN.into());
    serve_settings.callback_aes_key = Some(CallbackPush::AES_KEY.into());
    serve_settings.serve_addr = "127.0.0.1:0".parse().unwrap();
    let serve = envshare::serve::Application::build(serve_settings)
        .await
        .expect("serve starts");
    let url = format!("http://{}/wechat/callback", serve.addr());
    let (stop_serve, serve_stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve.run_until_stopped(async move {
        let _ = serve_stopped.await;
    }));
    s.sandbox
        .configure(|c| c.callback = Some(CallbackPush::new(url, None)));
    for change in [
        AuthorizationChange::Authorized,
        AuthorizationChange::Updated,
        AuthorizationChange::Unauthorized,
    ] {
        let answer = s
            .sandbox
            .send_authorization(change, appid(APPIDS + 6).as_str())
            .await
            .expect("the push reaches serve");
        assert!(answer.is_success(), "{answer:?}");
    }
    let _ = stop_serve.send(());
    serving.await.unwrap().unwrap();

    let validators = validators();
    let entries = raw_entries(&s.queue).await;
    let seen = check_all(
        &validators,
        entries
            .iter()
            .map(|(t, json)| (Some(t.as_str()), json.as_str())),
    );
    let reasons: BTreeSet<String> = entries
        .iter()
        .filter_map(|(_, json)| {
            let value: Value = serde_json::from_str(json).ok()?;
            Some(value["reason"].as_str()?.to_owned())
        })
        .collect();
    let documented: BTreeSet<String> = validators.keys().cloned().collect();
    assert_eq!(
        seen, documented,
        "the run wrote every documented event type"
    );
    assert_eq!(
        reasons,
        [
            "cancelled",
            "permanent_error",
            "rejected",
            "retries_exhausted"
        ]
        .map(String::from)
        .into(),
    );
}

#[tokio::test]
async fn a_lapsed_lease_writes_share_failed_and_batch_completed_as_serde_does() {
    let clock = ManualClock::new(1_800_000_000_000);
    let settings = QueueSettings {
        max_attempts: 1,
        lease: Duration::from_millis(1_000),
        ..QueueSettings::default()
    };
    let queue = Queue::connect(
        TestRedis::shared().url(),
        &unique_queue("events-lapsed"),
        settings,
    )
    .await
    .expect("connect")
    .with_clock(Arc::new(clock.clone()));
    let job = NewJob {
        op: JobOp::Share,
        env: EnvId::parse(ENV).unwrap(),
        appids: vec![appid(APPIDS + 10), appid(APPIDS + 11)],
        batch: BatchId::parse("b-events-lapsed").unwrap(),
        run_at_ms: None,
    };
    let options = EnqueueOptions {
        force: true,
        seal: true,
    };
    queue.enqueue(vec![job], options).await.expect("enqueue");
    let Claim::Jobs(leases) = queue.claim(&WorkerId::generate(), 1).await.unwrap() else {
        panic!("not paused");
    };
    assert_eq!(leases.len(), 1);
    clock.advance(Duration::from_millis(1_001));
    assert_eq!(queue.reap(10).await.unwrap().buried, 1);

    let entries = raw_entries(&queue).await;
    let seen = check_all(
        &validators(),
        entries
            .iter()
            .map(|(t, json)| (Some(t.as_str()), json.as_str())),
    );
    // Nothing was accepted, so the batch is confirmed as it completes.
    assert_eq!(
        seen,
        ["batch.completed", "batch.confirmed", "share.failed"]
            .map(String::from)
            .into()
    );
    assert!(
        entries
            .iter()
            .all(|(t, json)| t != "share.failed" || json.contains(r#""reason":"lease_expired""#))
    );
}

/// The prelude's JSON writer against serde_json, on strings that need escaping (quotes,
/// backslashes, control characters), and ones that must not be escaped (`/`, DEL, non-ASCII).
#[tokio::test]
async fn the_lua_json_writer_escapes_strings_as_serde_does() {
    let prelude = include_str!("../../../shared/src/store/lua/prelude.lua");
    let script = redis::Script::new(&format!(
        "{prelude}\nreturn json_object({{'s', ARGV[5], 'n', 42, 'z', cjson.null}})"
    ));
    let mut conn = TestRedis::shared().conn().await;
    let samples = [
        "plain".to_owned(),
        "quote \" backslash \\ slash / del \u{7f}".to_owned(),
        "newline \n return \r tab \t backspace \u{8} formfeed \u{c}".to_owned(),
        (0u8..32).map(char::from).collect::<String>(),
        "微信 云开发 ✓ 😀".to_owned(),
        "https://open.weixin.qq.com/x?a=1&b=<2>".to_owned(),
    ];
    for s in samples {
        let lua: String = script
            .arg("0")
            .arg("1970-01-01T00:00:00.000Z")
            .arg("p:")
            .arg("10")
            .arg(&s)
            .invoke_async(&mut conn)
            .await
            .expect("the prelude runs");
        let serde = format!(
            r#"{{"s":{},"n":42,"z":null}}"#,
            serde_json::to_string(&s).unwrap()
        );
        assert_eq!(lua, serde, "for {s:?}");
    }
}
