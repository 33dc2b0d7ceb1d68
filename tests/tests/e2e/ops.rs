//! Tests: what an operator's platform sees of a worker. `/readyz` while the queue is paused and
//! while Redis is down, next to `/metrics`, which must stay scrapeable in both cases.

use std::time::Duration;

use envshare::AppId;
use envshare::sandbox::SandboxConfig;
use envshare::worker::WorkerOptions;
use envshare_tests::{ChildProcess, TestRedis, TestStack, appid, bin_path, free_port, wait_until};
use secrecy::SecretString;
use serde_json::Value;

const TOKEN: &str = "static-token-ops-1a2b";
const SECRET: &str = "secret-ops-3c4d";
const TICKET: &str = "ticket-ops-5e6f";
const WAIT: Duration = Duration::from_secs(20);

async fn start_stack(prefix: &str) -> TestStack {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        component_secret: SECRET.into(),
        verify_ticket: TICKET.into(),
        ..SandboxConfig::default()
    };
    TestStack::start(prefix, config, |_| {}).await
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET answers");
    let status = r.status().as_u16();
    (status, r.text().await.expect("a body"))
}

/// `/readyz` as (status, JSON body).
async fn readyz(base: &str) -> (u16, Value) {
    let (status, body) = get(&format!("{base}/readyz")).await;
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, json)
}

fn detail<'a>(body: &'a Value, check: &str) -> &'a str {
    body["checks"][check]["detail"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_quota_pause_keeps_the_worker_ready_and_scrapeable_and_readyz_says_paused() {
    let stack = start_stack("ops-readyz-quota").await;
    let worker = stack.worker().await;
    let base = format!("http://{}", worker.http_addr());

    let (status, body) = readyz(&base).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(detail(&body, "pause"), "not paused", "{body}");

    let until = stack.queue.now_ms() + 3_600_000;
    stack
        .queue
        .pause_until(until, "45009 daily quota spent")
        .await
        .unwrap();
    let (status, body) = readyz(&base).await;
    assert_eq!(
        status, 200,
        "a pause must not make the worker unready: {body}"
    );
    assert_eq!(body["ready"], true, "{body}");
    assert_eq!(body["checks"]["pause"]["ok"], true, "{body}");
    let pause = detail(&body, "pause");
    assert!(
        pause.starts_with("paused: 45009 daily quota spent (for ") && pause.ends_with(" s more)"),
        "{body}"
    );
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("\nenvshare_queue_paused 1\n"),
        "the pause is visible to Prometheus:\n{metrics}"
    );

    stack.queue.resume().await.unwrap();
    let (status, body) = readyz(&base).await;
    assert_eq!(
        (status, detail(&body, "pause")),
        (200, "not paused"),
        "{body}"
    );
    worker.stop().await;
}

#[tokio::test]
async fn a_ticket_pause_keeps_the_worker_ready_with_the_reason_in_readyz() {
    let mut stack = start_stack("ops-readyz-ticket").await;
    stack.settings.access_token = None;
    stack.settings.component_appid = Some(AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
    stack.settings.component_appsecret = Some(SecretString::from(SECRET));
    stack.set_ticket("ticket-ops-wrong").await;
    let options = WorkerOptions {
        misconfig_recheck: Some(Duration::from_secs(60)),
        ..WorkerOptions::default()
    };
    let worker = stack.worker_with(stack.settings.clone(), options).await;
    stack.enqueue("prod-ops", &[vec![appid(1)]]).await;
    assert!(stack.wait_paused("61005", WAIT).await, "the ticket pauses");

    let base = format!("http://{}", worker.http_addr());
    let (status, body) = readyz(&base).await;
    assert_eq!(status, 200, "{body}");
    assert!(detail(&body, "token").starts_with("paused: "), "{body}");
    assert!(detail(&body, "pause").contains("61005"), "{body}");
    assert!(!body.to_string().contains(SECRET), "{body}");
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains("\nenvshare_queue_paused 1\n"), "{metrics}");
    worker.stop().await;
}

#[tokio::test]
async fn redis_down_makes_the_worker_unready_but_metrics_still_answer() {
    let redis = TestRedis::private();
    let mut stack = start_stack("ops-readyz-down").await;
    stack.settings.redis_url = redis.url().to_owned();
    let worker = stack.worker().await;
    let base = format!("http://{}", worker.http_addr());
    assert_eq!(readyz(&base).await.0, 200);

    redis.kill();
    assert!(
        wait_until(WAIT, || async { readyz(&base).await.0 == 503 }).await,
        "not ready while Redis is down"
    );
    let (_, body) = readyz(&base).await;
    assert_eq!(body["checks"]["redis"]["ok"], false, "{body}");
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200, "metrics answer without Redis");
    assert!(metrics.contains("envshare_redis_errors_total"), "{metrics}");

    redis.restart();
    assert!(
        wait_until(WAIT, || async { readyz(&base).await.0 == 200 }).await,
        "ready again once Redis is back"
    );
    worker.stop().await;
}

// ---- deploy/monitoring: every metric the rules and the dashboard use is exported ----

/// Metrics from elsewhere that the files may use (Prometheus's own `up`).
const FOREIGN_METRICS: &[&str] = &["up"];

/// PromQL words that are not metric names: aggregations, keywords, and names that are always
/// followed by a parenthesis anyway (functions) are told apart by that.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "atan2",
];

/// A selector in an expression: the metric name and its `label="value"` matchers (only the
/// equality ones: `!=`, `=~`, `!~` do not say which values must exist).
#[derive(Debug, PartialEq)]
struct Selector {
    metric: String,
    equal: Vec<(String, String)>,
}

/// The metric selectors of a PromQL expression. Skips strings, ranges and subqueries
/// (`[5m]`, `[1h:]`, Grafana's `[$__rate_interval]`), numbers and durations, function calls,
/// aggregations with their `by (…)`/`without (…)` label lists, and binary operator keywords.
fn selectors(expr: &str) -> Vec<Selector> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out: Vec<Selector> = Vec::new();
    let mut i = 0;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let skip_to = |mut j: usize, close: char| {
        while j < chars.len() && chars[j] != close {
            j += 1;
        }
        j + 1
    };
    // After `by`/`without`/`on`/… the next parenthesis holds label names, not metrics.
    let mut labels_follow = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '(' && labels_follow {
            i = skip_to(i, ')');
            labels_follow = false;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (word(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && word(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            let mut j = i;
            while j < chars.len() && chars[j].is_whitespace() {
                j += 1;
            }
            let lower = name.to_ascii_lowercase();
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&lower.as_str())
            {
                labels_follow = true;
            } else if chars.get(j) == Some(&'(') || PROMQL_WORDS.contains(&lower.as_str()) {
                // A function or an aggregation.
            } else {
                let mut equal = Vec::new();
                if chars.get(j) == Some(&'{') {
                    let end = skip_to(j, '}');
                    let inner: String = chars[j + 1..end - 1].iter().collect();
                    for m in inner.split(',') {
                        if let Some((k, v)) = m.split_once('=')
                            && !k.ends_with('!')
                            && !v.starts_with('~')
                        {
                            equal
                                .push((k.trim().to_owned(), v.trim().trim_matches('"').to_owned()));
                        }
                    }
                    i = end;
                }
                out.push(Selector {
                    metric: name,
                    equal,
                });
            }
        } else if c == '{' {
            i = skip_to(i, '}');
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_promql_scanner_finds_metrics_and_skips_everything_else() {
    let got = selectors(
        "histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=\"1\",y!=\"2\"}[$__rate_interval]))) \
         / on (instance) group_left () max without (job) (b:rec) > 3 and delta(c[1h:]) or vector(1e3) \
         unless absent(up{job=~\".*e.*\"} == 1) offset 5m",
    );
    let names: Vec<&str> = got.iter().map(|s| s.metric.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b:rec", "c", "up"]);
    assert_eq!(got[0].equal, [("x".to_owned(), "1".to_owned())]);
    assert!(got[3].equal.is_empty());
}

/// Every `expr:` in a Prometheus rule file, with its rule name. Handles inline values and
/// `|`/`>` block scalars.
fn rule_exprs(yaml: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut out = Vec::new();
    let mut name = String::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start().trim_start_matches("- ");
        if let Some(n) = t
            .strip_prefix("alert:")
            .or_else(|| t.strip_prefix("record:"))
        {
            name = n.trim().to_owned();
        }
        if let Some(v) = t.strip_prefix("expr:") {
            let v = v.trim();
            if v == "|" || v == ">" || v == "|-" || v == ">-" {
                let indent = lines[i].len() - lines[i].trim_start().len();
                let mut body = Vec::new();
                while i + 1 < lines.len() {
                    let next = lines[i + 1];
                    if !next.trim().is_empty() && next.len() - next.trim_start().len() <= indent {
                        break;
                    }
                    body.push(next.trim());
                    i += 1;
                }
                out.push((name.clone(), body.join(" ")));
            } else {
                out.push((name.clone(), v.to_owned()));
            }
        }
        i += 1;
    }
    out
}

/// Every target expression of a Grafana dashboard, with its panel title.
fn dashboard_exprs(json: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            out.push((
                panel["title"].as_str().unwrap_or("?").to_owned(),
                expr.to_owned(),
            ));
        }
    }
    out
}

/// Sample names and their label sets in a text exposition.
fn exposition(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let name_end = l.find(['{', ' ']).unwrap_or(l.len());
            let mut labels = Vec::new();
            if l[name_end..].starts_with('{') {
                let close = l.find('}').expect("a closing brace");
                for pair in l[name_end + 1..close].split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("label=value");
                    labels.push((k.to_owned(), v.trim_matches('"').to_owned()));
                }
            }
            (l[..name_end].to_owned(), labels)
        })
        .collect()
}

fn repo_file(path: &str) -> String {
    let full = concat!(env!("CARGO_MANIFEST_DIR"), "/..").to_owned() + "/" + path;
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

#[tokio::test]
async fn the_monitoring_files_use_only_metrics_a_real_worker_exports() {
    // A WeChat that accepts some appids, rejects others, and runs out of quota, so every
    // labelled family has series: outcomes, appid results, errcodes, pause reasons.
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        reject_if: Some(envshare::sandbox::AppidRule::suffix("bad")),
        daily_quota: Some(3),
        ..SandboxConfig::default()
    };
    let stack = TestStack::start("ops-monitoring", config, |_| {}).await;
    let port = free_port();
    let mut worker = ChildProcess::spawn(
        &bin_path("envshare-worker"),
        &[],
        &[
            ("ENVSHARE_REDIS_URL", stack.settings.redis_url.clone()),
            ("ENVSHARE_QUEUE", stack.name().to_string()),
            ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
            ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
            ("ENVSHARE_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("ENVSHARE_CONCURRENCY", "1".to_owned()),
        ],
    );
    // Every job holds one appid WeChat takes and one it refuses.
    let jobs: Vec<Vec<AppId>> = (1..=5)
        .map(|i| {
            let bad = AppId::parse(&format!("wx000000000000{i:x}bad")).unwrap();
            vec![appid(i), bad]
        })
        .collect();
    stack.enqueue("prod-ops", &jobs).await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let wanted = [
        "envshare_pauses_total{reason=\"quota\"}",
        "envshare_appids_total{result=\"accepted\"}",
        "envshare_appids_total{result=\"rejected\"}",
        "envshare_jobs_total{outcome=\"done\"}",
        "envshare_wechat_calls_total{errcode=\"45009\"}",
    ];
    let start = std::time::Instant::now();
    let deadline = start + WAIT;
    let mut scrape = String::new();
    let complete = loop {
        if let Ok(r) = reqwest::get(&url).await {
            scrape = r.text().await.unwrap_or_default();
        }
        if wanted.iter().all(|s| scrape.contains(s)) {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    worker.kill9();
    assert!(
        complete,
        "the worker never showed every labelled family:\n{scrape}"
    );
    let exported = exposition(&scrape);

    let rules = rule_exprs(&repo_file("deploy/monitoring/prometheus-rules.yaml"));
    let alerts = repo_file("deploy/monitoring/prometheus-rules.yaml")
        .lines()
        .filter(|l| {
            l.trim_start().starts_with("- alert:") || l.trim_start().starts_with("- record:")
        })
        .count();
    assert_eq!(rules.len(), alerts, "one expression per rule: {rules:?}");
    let dashboard: Value =
        serde_json::from_str(&repo_file("deploy/monitoring/grafana-dashboard.json")).unwrap();
    let panels = dashboard_exprs(&dashboard);
    assert!(
        rules.len() >= 10 && panels.len() >= 20,
        "{rules:?} {panels:?}"
    );
    let mut files: Vec<(String, Vec<(String, String)>)> = vec![
        ("deploy/monitoring/prometheus-rules.yaml".into(), rules),
        ("deploy/monitoring/grafana-dashboard.json".into(), panels),
    ];
    // The autoscalers' queries: KEDA's `query:` and prometheus-adapter's `metricsQuery:` (its
    // `<<.LabelMatchers>>` template only adds the namespace).
    for file in [
        "deploy/autoscaling/keda-scaledobject.yaml",
        "deploy/autoscaling/prometheus-adapter-values.yaml",
    ] {
        let queries: Vec<(String, String)> = repo_file(file)
            .lines()
            .filter_map(|l| {
                let l = l.trim();
                l.strip_prefix("query:")
                    .or_else(|| l.strip_prefix("metricsQuery:"))
            })
            .map(|q| {
                let q = q.trim().trim_matches('\'');
                let q = q
                    .replace(",<<.LabelMatchers>>", "")
                    .replace("<<.LabelMatchers>>", "");
                ("query".to_owned(), q)
            })
            .collect();
        assert!(!queries.is_empty(), "{file}: no query found");
        files.push((file.into(), queries));
    }

    let mut missing = Vec::new();
    let mut seen = 0;
    for (file, exprs) in &files {
        for (name, expr) in exprs {
            let found = selectors(expr);
            assert!(!found.is_empty(), "{file}: {name}: no metric in {expr:?}");
            for s in found {
                seen += 1;
                if FOREIGN_METRICS.contains(&s.metric.as_str()) {
                    continue;
                }
                let series: Vec<_> = exported.iter().filter(|(n, _)| *n == s.metric).collect();
                if series.is_empty() {
                    missing.push(format!("{file}: {name}: {} is not exported", s.metric));
                    continue;
                }
                for (k, v) in &s.equal {
                    if !series
                        .iter()
                        .any(|(_, ls)| ls.iter().any(|(lk, lv)| lk == k && lv == v))
                    {
                        missing.push(format!(
                            "{file}: {name}: {}{{{k}=\"{v}\"}} has no series",
                            s.metric
                        ));
                    }
                }
            }
        }
    }
    assert!(seen > 40, "only {seen} selectors found");
    assert!(
        missing.is_empty(),
        "the files use metrics the worker does not export:\n{}\n\nexported:\n{scrape}",
        missing.join("\n")
    );
}
