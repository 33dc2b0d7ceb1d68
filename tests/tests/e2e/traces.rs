//! Tests: OpenTelemetry traces across processes. The real `envshare import` and
//! `envshare-worker` binaries export to a small OTLP/HTTP receiver running in the test (the
//! `opentelemetry-proto` messages, decoded with prost), against the sandbox and a real Redis.
//! One import, its jobs' attempts, their WeChat calls and their events must be one trace.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::post;
use envshare::events::{Event, EventKind};
use envshare::sandbox::SandboxConfig;
use envshare::store::read_all;
use envshare_tests::{ChildProcess, TestRedis, TestStack, appid, bin_path, wait_until};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message as _;

/// The fixed token the sandbox accepts; no span attribute may contain it.
const TOKEN: &str = "static-token-LEAKCHECK-traces-9f8e";
const ENV: &str = "prod-traces";
const WAIT: Duration = Duration::from_secs(20);

/// One exported span, flattened out of its resource and scope.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    kind: i32,
    start_ns: u64,
    end_ns: u64,
    attributes: BTreeMap<String, String>,
}

/// The OTLP/HTTP receiver: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Span>>>,
    /// Requests whose body did not decode (must stay 0).
    bad: Arc<Mutex<u32>>,
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/v1/traces", post(export))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }
}

async fn export(
    State(r): State<Receiver>,
    body: Bytes,
) -> (StatusCode, [(header::HeaderName, &'static str); 1], Vec<u8>) {
    let proto = [(header::CONTENT_TYPE, "application/x-protobuf")];
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        *r.bad.lock().unwrap() += 1;
        return (StatusCode::BAD_REQUEST, proto, Vec::new());
    };
    let mut out = r.spans.lock().unwrap();
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|res| &res.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref()))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    kind: s.kind,
                    start_ns: s.start_time_unix_nano,
                    end_ns: s.end_time_unix_nano,
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
                        .collect(),
                });
            }
        }
    }
    (
        StatusCode::OK,
        proto,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn text(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

/// The trace as an indented tree, children in start order: service, span name, duration and
/// attributes (the text dump in docs/operations.md comes from here).
fn render(spans: &[Span]) -> String {
    fn walk(spans: &[Span], parent: &str, depth: usize, out: &mut String) {
        let mut children: Vec<&Span> = spans.iter().filter(|s| s.parent == parent).collect();
        children.sort_by_key(|s| s.start_ns);
        for s in children {
            let attrs: Vec<String> = s
                .attributes
                .iter()
                .filter(|(k, _)| !k.starts_with("code.") && k.as_str() != "target")
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                out,
                "{:indent$}{} [{}] {:.1} ms  {}",
                "",
                s.name,
                s.service,
                s.end_ns.saturating_sub(s.start_ns) as f64 / 1e6,
                attrs.join(" "),
                indent = depth * 2
            );
            walk(spans, &s.span_id, depth + 1, out);
        }
    }
    let mut out = String::new();
    walk(spans, "", 0, &mut out);
    out
}

/// Runs the real `envshare` with `args` on the stack's Redis and queue (on a blocking thread:
/// the sandbox and the receiver run in this test's runtime).
async fn envshare(stack: &TestStack, args: &[&str], otel: Option<SocketAddr>) -> (bool, String) {
    let mut cmd = std::process::Command::new(bin_path("envshare"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENVSHARE_REDIS_URL", &stack.settings.redis_url)
        .env("ENVSHARE_QUEUE", stack.name().as_str());
    if let Some(addr) = otel {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}"));
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("envshare runs"))
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A CSV of `n` pairs of [`ENV`], appids numbered from `from`.
fn pairs_file(dir: &tempfile::TempDir, from: u64, n: u64) -> String {
    let csv: String = std::iter::once("env,appid\n".to_owned())
        .chain((from..from + n).map(|i| format!("{ENV},{}\n", appid(i))))
        .collect();
    let file = dir.path().join(format!("pairs-{from}.csv"));
    std::fs::write(&file, csv).unwrap();
    file.to_str().unwrap().to_owned()
}

/// Every event of the stack's queue, oldest first, with its `trace_id`.
async fn events(stack: &TestStack) -> Vec<Event> {
    let mut conn = TestRedis::shared().conn().await;
    read_all(&mut conn, stack.queue.keys())
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.event)
        .collect()
}

#[tokio::test]
async fn an_import_its_attempts_wechat_calls_and_events_are_one_trace() {
    let (receiver, addr) = Receiver::start().await;
    let stack = TestStack::start(
        "traces",
        SandboxConfig {
            static_tokens: vec![TOKEN.into()],
            ..SandboxConfig::default()
        },
        |_| {},
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = pairs_file(&dir, 1, 3);

    // 3 pairs in chunks of 2: two jobs, so two attempts under one import.
    let (ok, out) = envshare(
        &stack,
        &["import", "--chunk-size", "2", "--batch", "traced", &file],
        Some(addr),
    )
    .await;
    assert!(ok, "envshare import failed:\n{out}");

    let worker = ChildProcess::spawn(
        &bin_path("envshare-worker"),
        &[],
        &[
            ("ENVSHARE_REDIS_URL", stack.settings.redis_url.clone()),
            ("ENVSHARE_QUEUE", stack.name().to_string()),
            ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
            ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
            ("ENVSHARE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{addr}")),
            ("OTEL_SERVICE_NAME", "envshare-worker-traces".to_owned()),
        ],
    );
    assert!(
        wait_until(WAIT, || async {
            events(&stack)
                .await
                .iter()
                .any(|e| matches!(e.kind, EventKind::BatchCompleted { .. }))
        })
        .await,
        "the batch completes"
    );
    // A stopping worker exports the spans it still buffers.
    worker.sigterm();
    let mut worker = worker;
    let status = worker.wait_exit(WAIT).await.expect("the worker stops");
    let (_, stderr) = worker.output();
    assert_eq!(status.code(), Some(0), "worker stderr:\n{stderr}");
    // ENVSHARE_LOG (default info) still filters the log lines with the trace layer installed.
    assert!(
        stderr.contains(" INFO "),
        "the worker logs at info:\n{stderr}"
    );
    assert!(
        !stderr.contains(" DEBUG ") && !stderr.contains(" TRACE "),
        "no debug or trace lines at ENVSHARE_LOG=info:\n{stderr}"
    );

    let spans = receiver.spans();
    assert_eq!(*receiver.bad.lock().unwrap(), 0, "every export decodes");
    let find = |name: &str| -> Vec<&Span> { spans.iter().filter(|s| s.name == name).collect() };

    // The import: the root, from the `envshare` service.
    let imports = find("envshare.import");
    assert_eq!(imports.len(), 1, "one import span: {spans:#?}");
    let import = imports[0];
    assert_eq!(import.service, "envshare");
    assert_eq!(import.parent, "", "the import starts the trace");
    assert_eq!(
        import.attributes.get("batch_id").map(String::as_str),
        Some("traced")
    );
    assert_eq!(import.attributes.get("jobs").map(String::as_str), Some("2"));
    assert_eq!(
        import.attributes.get("appids").map(String::as_str),
        Some("3")
    );
    let trace = import.trace_id.clone();

    // Each attempt: a consumer span in the worker, child of the import (across processes).
    let attempts = find("share attempt");
    assert_eq!(attempts.len(), 2, "one span per attempt: {spans:#?}");
    for a in &attempts {
        assert_eq!(
            a.service, "envshare-worker-traces",
            "OTEL_SERVICE_NAME names it"
        );
        assert_eq!(a.trace_id, trace, "the attempt is in the import's trace");
        assert_eq!(
            a.parent, import.span_id,
            "the attempt's parent is the import"
        );
        assert_eq!(a.kind, 5, "SPAN_KIND_CONSUMER");
        assert_eq!(
            a.attributes.get("outcome").map(String::as_str),
            Some("done")
        );
        assert_eq!(a.attributes.get("attempt").map(String::as_str), Some("1"));
        assert!(a.attributes.contains_key("job_id"), "{a:?}");
    }

    // Each WeChat call: a client span under its attempt (through the endpoint's span).
    let calls = find("POST /componenttcb/batchshareenv");
    assert_eq!(calls.len(), 2, "one call per job: {spans:#?}");
    for c in &calls {
        assert_eq!(c.trace_id, trace);
        assert_eq!(c.kind, 3, "SPAN_KIND_CLIENT");
        let endpoint = spans
            .iter()
            .find(|s| s.span_id == c.parent)
            .expect("the call's parent span was exported");
        assert_eq!(endpoint.name, "wechat.share_env");
        assert!(
            attempts.iter().any(|a| a.span_id == endpoint.parent),
            "wechat.share_env is a child of an attempt"
        );
        assert_eq!(
            c.attributes
                .get("http.response.status_code")
                .map(String::as_str),
            Some("200")
        );
        assert_eq!(
            c.attributes.get("wechat.errcode").map(String::as_str),
            Some("0")
        );
        assert_eq!(
            c.attributes.get("url.path").map(String::as_str),
            Some("/componenttcb/batchshareenv")
        );
    }

    // Every event of the batch carries the trace id.
    let events = events(&stack).await;
    let accepted: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ShareAccepted { .. }))
        .collect();
    assert_eq!(accepted.len(), 3);
    for e in &events {
        assert_eq!(e.trace_id.as_deref(), Some(trace.as_str()), "{e:?}");
    }

    // They match their schemas, and the ones Lua wrote (batch.completed) are what serde writes.
    let raw = crate::events::raw_entries(&stack.queue).await;
    let seen = crate::events::check_all(
        &crate::events::validators(),
        raw.iter()
            .map(|(t, json)| (Some(t.as_str()), json.as_str())),
    );
    assert!(
        seen.contains("batch.completed") && seen.contains("share.accepted"),
        "{seen:?}"
    );

    // Nothing secret in any span.
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains(TOKEN),
                "span {} attribute {k} holds the token",
                s.name
            );
            assert!(
                !v.contains("access_token"),
                "span {} attribute {k}: {v}",
                s.name
            );
        }
    }

    let tree = render(
        &spans
            .iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect::<Vec<_>>(),
    );
    println!("trace {trace}:\n{tree}");
}

#[tokio::test]
async fn without_an_otlp_endpoint_no_traceparent_or_trace_id_is_written() {
    let (receiver, addr) = Receiver::start().await;
    let stack = TestStack::start(
        "traces-off",
        SandboxConfig {
            static_tokens: vec![TOKEN.into()],
            ..SandboxConfig::default()
        },
        |_| {},
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = envshare(&stack, &["import", &pairs_file(&dir, 1, 2)], None).await;
    assert!(ok, "envshare import failed:\n{out}");
    let mut conn = TestRedis::shared().conn().await;
    let payloads: Vec<String> = redis::cmd("HVALS")
        .arg(stack.queue.keys().jobs())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!payloads.is_empty());
    for p in &payloads {
        assert!(
            !p.contains("\"tp\""),
            "no traceparent with tracing off: {p}"
        );
    }
    let worker = stack.worker().await;
    assert!(
        wait_until(WAIT, || async {
            events(&stack)
                .await
                .iter()
                .any(|e| matches!(e.kind, EventKind::BatchCompleted { .. }))
        })
        .await
    );
    worker.stop().await;
    for e in events(&stack).await {
        assert_eq!(e.trace_id, None, "{e:?}");
        assert!(!e.to_json().contains("trace_id"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(receiver.spans().is_empty(), "nothing was exported");

    // A traced import's payloads do carry one, and the events the Lua scripts write for its
    // jobs (here share.failed of a cancelled batch, and its batch.completed) carry its trace id.
    let (ok, out) = envshare(
        &stack,
        &[
            "import",
            "--force",
            "--batch",
            "traced-cancel",
            &pairs_file(&dir, 10, 1),
        ],
        Some(addr),
    )
    .await;
    assert!(ok, "{out}");
    let payloads: Vec<String> = redis::cmd("HVALS")
        .arg(stack.queue.keys().jobs())
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(payloads.len(), 1, "{payloads:?}");
    let payload: serde_json::Value = serde_json::from_str(&payloads[0]).unwrap();
    let tp = payload["tp"]
        .as_str()
        .expect("a traceparent in the payload")
        .to_owned();
    assert!(tp.starts_with("00-") && tp.len() == 55, "{tp}");
    let (ok, out) = envshare(&stack, &["batch", "cancel", "traced-cancel"], None).await;
    assert!(ok, "{out}");
    let traced: Vec<Event> = events(&stack)
        .await
        .into_iter()
        .filter(|e| e.trace_id.is_some())
        .collect();
    let types: Vec<&str> = traced.iter().map(|e| e.kind.type_name()).collect();
    // Nothing was accepted: batch.confirmed follows at once, with the import's trace too.
    assert_eq!(
        types,
        ["share.failed", "batch.completed", "batch.confirmed"],
        "{traced:?}"
    );
    for e in &traced {
        assert_eq!(e.trace_id.as_deref(), Some(&tp[3..35]));
    }
    let raw = crate::events::raw_entries(&stack.queue).await;
    crate::events::check_all(
        &crate::events::validators(),
        raw.iter()
            .map(|(t, json)| (Some(t.as_str()), json.as_str())),
    );
}

#[tokio::test]
async fn an_unsupported_otlp_protocol_is_refused_with_exit_code_2_by_both_binaries() {
    let env = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://127.0.0.1:4317".to_owned(),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("ENVSHARE_REDIS_URL", TestRedis::shared().url().to_owned()),
    ];
    for bin in ["envshare", "envshare-worker"] {
        let args: &[&str] = if bin == "envshare" { &["status"] } else { &[] };
        let mut child = ChildProcess::spawn(&bin_path(bin), args, &env);
        let status = child.wait_exit(WAIT).await.expect("it exits at once");
        let (_, stderr) = child.output();
        assert_eq!(status.code(), Some(2), "{bin}: {stderr}");
        assert!(
            stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL") && stderr.contains("http/protobuf"),
            "{bin}: {stderr}"
        );
    }
}
