//! The web console of `envshare serve`, in a real browser: Debian's `chromium` driven through
//! `chromedriver` (W3C WebDriver, from Rust with thirtyfour) against the real `envshare serve`
//! and `envshare-worker` binaries, a test Redis and the sandbox WeChat API.
//!
//! Without `chromium` and `chromedriver` on PATH the tests FAIL, saying how to install them
//! (`.ci/run` does: `apt-get install chromium chromium-driver`).
//!
//! `ENVSHARE_CONSOLE_SCREENSHOTS=DIR` makes the walk-through save the overview and a batch page
//! as `DIR/console-overview.png` and `DIR/console-batch.png` (the pictures in docs/console.md:
//! `ENVSHARE_CONSOLE_SCREENSHOTS=$PWD/docs/img cargo test -p envshare-tests --test e2e --
//! console::`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use envshare::events::EventKind;
use envshare::sandbox::{AppidRule, Fault, SandboxConfig};
use envshare::wechat::Endpoint;
use envshare::{AppId, BatchId};
use envshare_tests::{ChildProcess, TestStack, appid, bin_path, free_port, wait_until};
use serde_json::json;
use thirtyfour::prelude::*;

/// The API token `envshare serve` runs with here.
const API_TOKEN: &str = "console-test-token-0123456789";
/// The fixed WeChat access token of the sandbox.
const ACCESS_TOKEN: &str = "console-access-token";

/// Where a program is on PATH.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// chromedriver and chromium, or a failure that says how to get them.
fn browser_programs() -> (PathBuf, Option<PathBuf>) {
    let Some(driver) = on_path("chromedriver") else {
        panic!(
            "the console's browser tests need chromium and chromedriver on PATH, and \
             `chromedriver` is not there. Install them: `sudo apt-get install chromium \
             chromium-driver` on Debian/Ubuntu (`.ci/run` does this), or put a chromedriver \
             matching your Chrome on PATH."
        );
    };
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|b| on_path(b));
    if browser.is_none() {
        panic!(
            "chromedriver is on PATH but no chromium: install it with `sudo apt-get install \
             chromium` (`.ci/run` does this)"
        );
    }
    (driver, browser)
}

/// A headless chromium session through a chromedriver of its own.
struct Browser {
    driver: WebDriver,
    chromedriver: ChildProcess,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Browser {
        let (driver_bin, browser_bin) = browser_programs();
        let port = free_port();
        let profile = tempfile::tempdir().expect("a temp dir");
        let chromedriver = ChildProcess::spawn(
            &driver_bin,
            &[&format!("--port={port}")],
            &[("HOME", profile.path().display().to_string())],
        );
        let url = format!("http://127.0.0.1:{port}");
        let up = wait_until(Duration::from_secs(20), || async {
            reqwest::get(format!("{url}/status")).await.is_ok()
        })
        .await;
        assert!(up, "chromedriver did not come up on port {port}");
        let mut caps = DesiredCapabilities::chrome();
        if let Some(b) = &browser_bin {
            caps.set_binary(&b.display().to_string()).unwrap();
        }
        for arg in [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1000",
            &format!(
                "--user-data-dir={}",
                profile.path().join("chrome").display()
            ),
        ] {
            caps.add_arg(arg).unwrap();
        }
        let driver = WebDriver::new(&url, caps)
            .await
            .expect("chromedriver starts a chromium session");
        Browser {
            driver,
            chromedriver,
            _profile: profile,
        }
    }

    async fn text(&self, css: &str) -> String {
        self.driver
            .find(By::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .text()
            .await
            .expect("text")
    }

    /// The text of `css`, or `None` if it is not on the page (now).
    async fn try_text(&self, css: &str) -> Option<String> {
        self.driver.find(By::Css(css)).await.ok()?.text().await.ok()
    }

    async fn h1(&self) -> String {
        self.text("h1").await
    }

    /// Clicks `css` (a link or a form's button) and waits until the page it leads to has
    /// loaded: the old page's window is gone and the new document is complete. Reading the page
    /// right after a plain click can still find the old one, or none, while the browser
    /// navigates (more so on a loaded machine).
    async fn click_to_next_page(&self, css: &str) {
        self.driver
            .execute("window.__envshareOldPage = true;", Vec::new())
            .await
            .expect("mark the current page");
        self.click(css).await;
        let loaded = wait_until(Duration::from_secs(20), || async {
            self.driver
                .execute(
                    "return window.__envshareOldPage === undefined \
                     && document.readyState === 'complete';",
                    Vec::new(),
                )
                .await
                .ok()
                .and_then(|r| r.json().as_bool())
                .unwrap_or(false)
        })
        .await;
        assert!(loaded, "clicking {css} did not lead to a new page");
    }

    async fn click(&self, css: &str) {
        self.driver
            .find(By::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
            .click()
            .await
            .expect("click");
    }

    async fn count(&self, css: &str) -> usize {
        self.driver
            .find_all(By::Css(css))
            .await
            .expect("find")
            .len()
    }

    /// `fetch(path)` from the page, with the browser's cookies: the status and the body.
    async fn fetch(&self, path: &str, method: &str, form: &[(&str, &str)]) -> (u16, String) {
        let script = r#"
            const [path, method, form, done] = arguments;
            const init = { method, credentials: "same-origin" };
            if (method !== "GET") { init.body = new URLSearchParams(form); }
            fetch(path, init)
              .then(r => r.text().then(t => done([r.status, t])))
              .catch(e => done([0, String(e)]));
        "#;
        let form: BTreeMap<&str, &str> = form.iter().copied().collect();
        let ret = self
            .driver
            .execute_async(script, vec![json!(path), json!(method), json!(form)])
            .await
            .expect("fetch from the page");
        ret.convert::<(u16, String)>().expect("[status, text]")
    }

    async fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("ENVSHARE_CONSOLE_SCREENSHOTS") else {
            return;
        };
        let path = Path::new(&dir).join(name);
        self.driver
            .screenshot(&path)
            .await
            .unwrap_or_else(|e| panic!("saving {}: {e}", path.display()));
    }

    async fn quit(mut self) {
        let _ = self.driver.quit().await;
        self.chromedriver.kill9();
    }
}

/// `envshare serve`, the real binary, with an API token, on a free port.
async fn serve(stack: &TestStack) -> (ChildProcess, String) {
    let port = free_port();
    let env = vec![
        ("ENVSHARE_REDIS_URL", stack.settings.redis_url.clone()),
        ("ENVSHARE_QUEUE", stack.settings.queue.as_str().to_owned()),
        ("ENVSHARE_SERVE_ADDR", format!("127.0.0.1:{port}")),
        ("ENVSHARE_API_TOKEN", API_TOKEN.to_owned()),
        ("ENVSHARE_ACCESS_TOKEN", ACCESS_TOKEN.to_owned()),
    ];
    let mut child = ChildProcess::spawn(&bin_path("envshare"), &["serve"], &env);
    let base = format!("http://127.0.0.1:{port}");
    let up = wait_until(Duration::from_secs(20), || async {
        reqwest::get(format!("{base}/healthz")).await.is_ok()
    })
    .await;
    if !up {
        child.kill9();
        panic!("envshare serve did not come up: {:?}", child.output());
    }
    (child, base)
}

/// `envshare-worker`, the real binary, in fixed-token mode against the sandbox.
fn worker(stack: &TestStack) -> ChildProcess {
    let env = vec![
        ("ENVSHARE_REDIS_URL", stack.settings.redis_url.clone()),
        ("ENVSHARE_QUEUE", stack.settings.queue.as_str().to_owned()),
        ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
        ("ENVSHARE_ACCESS_TOKEN", ACCESS_TOKEN.to_owned()),
        ("ENVSHARE_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
        ("ENVSHARE_BACKOFF_BASE_MS", "20".to_owned()),
        ("ENVSHARE_BACKOFF_MAX_MS", "100".to_owned()),
        ("ENVSHARE_MAX_ATTEMPTS", "3".to_owned()),
    ];
    ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env)
}

async fn stop(mut child: ChildProcess) -> String {
    child.sigterm();
    let status = child.wait_exit(Duration::from_secs(20)).await;
    let (_, err) = child.output();
    assert!(status.is_some_and(|s| s.success()), "{status:?}\n{err}");
    err
}

/// 40 appids, every fifth refused by the sandbox (`…bad` suffix), in jobs of 10.
fn batch_appids() -> Vec<Vec<AppId>> {
    let ids: Vec<AppId> = (0..40u64)
        .map(|i| {
            if i % 5 == 4 {
                AppId::parse(&format!("wx{:013x}bad", 0xc0_0000 + i)).unwrap()
            } else {
                appid(0xc0_0000 + i)
            }
        })
        .collect();
    ids.chunks(10).map(<[AppId]>::to_vec).collect()
}

async fn log_in(b: &Browser, base: &str) {
    b.driver.goto(format!("{base}/")).await.unwrap();
    assert_eq!(
        b.h1().await,
        "Sign in",
        "an anonymous visit lands on the sign-in page"
    );
    let token = b.driver.find(By::Css("#token")).await.unwrap();
    token.send_keys(API_TOKEN).await.unwrap();
    b.click_to_next_page("form.login button").await;
    assert_eq!(b.h1().await, "Overview");
}

#[tokio::test]
async fn an_operator_follows_a_batch_retries_a_dead_job_and_pauses_in_the_browser() {
    let browser = Browser::start().await;
    let stack = TestStack::start(
        "console",
        SandboxConfig {
            static_tokens: vec![ACCESS_TOKEN.to_owned()],
            reject_if: Some(AppidRule::suffix("bad")),
            ..SandboxConfig::default()
        },
        |_| {},
    )
    .await;
    let (serve, base) = serve(&stack).await;
    let b = &browser;

    // A wrong token: the sign-in page again, nothing else.
    b.driver.goto(format!("{base}/batches")).await.unwrap();
    assert_eq!(b.h1().await, "Sign in");
    b.driver
        .find(By::Css("#token"))
        .await
        .unwrap()
        .send_keys("not-the-token")
        .await
        .unwrap();
    b.click_to_next_page("form.login button").await;
    assert_eq!(b.h1().await, "Sign in");
    assert!(b.text(".error").await.contains("not the API token"));
    assert_eq!(b.count("header a[href='/batches']").await, 0);

    log_in(b, &base).await;

    // A batch, watched from 0 % to 100 % on its page (it reloads itself while running).
    let jobs = batch_appids();
    let (batch, _) = stack.enqueue("prod-console", &jobs).await;
    b.driver
        .goto(format!("{base}/batches/{batch}"))
        .await
        .unwrap();
    assert_eq!(b.h1().await, format!("Batch {batch}"));
    assert_eq!(b.text("#batch-done").await, "0", "no worker runs yet");
    assert!(b.text("#batch-progress").await.starts_with("0 %"));
    assert_eq!(b.text("#batch-phase").await, "running");
    let worker = worker(&stack);
    let reached = wait_until(Duration::from_secs(30), || async {
        // The page also reloads itself while the batch runs: read without panicking.
        b.driver.refresh().await.is_ok()
            && b.try_text("#batch-progress")
                .await
                .is_some_and(|t| t.contains("100 %"))
            && b.try_text("#batch-phase")
                .await
                .is_some_and(|t| t != "running")
    })
    .await;
    assert!(reached, "the batch page never showed 100 %");
    assert_eq!(b.text("#batch-done").await, "40");
    assert_eq!(b.count("table.results tbody tr").await, 40);
    b.screenshot("console-batch.png").await;

    // Its failures only.
    b.click_to_next_page("nav.filters a[data-state='failed']")
        .await;
    let failed_rows = b.count("table.results tbody tr").await;
    assert_eq!(failed_rows, 8, "every fifth appid was refused");
    assert_eq!(
        b.count("table.results tbody tr[data-state='failed']").await,
        8
    );
    for row in b
        .driver
        .find_all(By::Css("table.results tbody tr"))
        .await
        .unwrap()
    {
        let appid = row.attr("data-appid").await.unwrap().unwrap();
        assert!(appid.ends_with("bad"), "{appid} is not a refused appid");
    }

    // The CSV behind the download link, fetched with the browser's session, against the events.
    b.driver
        .goto(format!("{base}/batches/{batch}"))
        .await
        .unwrap();
    let href = b
        .driver
        .find(By::Css("#csv"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(href, format!("/batches/{batch}/results.csv"));
    let (status, csv_text) = b.fetch(&href, "GET", &[]).await;
    assert_eq!(status, 200);
    compare_csv_with_events(&csv_text, &stack.events().await, &batch);

    // A dead job: one call answered with a permanent errcode.
    stack
        .sandbox
        .script(Endpoint::ShareEnv, [Some(Fault::Errcode(40097))]);
    let (_, dead_ids) = stack
        .enqueue("prod-console", &[vec![appid(0xdead_0001)]])
        .await;
    let dead_id = dead_ids[0].clone();
    assert!(
        wait_until(Duration::from_secs(20), || async {
            stack.stats().await.dead == 1
        })
        .await,
        "the job did not die"
    );
    b.driver.goto(format!("{base}/dead")).await.unwrap();
    let row = format!("tr[data-job='{dead_id}']");
    assert_eq!(b.count(&row).await, 1, "the dead job is listed");
    b.click(&format!("{row} input[type='checkbox']")).await;
    b.click_to_next_page("#retry-selected").await;
    assert!(b.text("#notice").await.contains("1 dead job(s) put back"));
    assert_eq!(b.count(&row).await, 0, "the retried job left the dead list");
    assert!(
        wait_until(Duration::from_secs(20), || async {
            let s = stack.stats().await;
            s.dead == 0 && s.ready == 0 && s.running == 0 && s.scheduled == 0
        })
        .await,
        "the retried job did not finish"
    );

    // Pause with a reason, then resume.
    b.driver.goto(format!("{base}/")).await.unwrap();
    b.driver
        .find(By::Css("#pause-reason-input"))
        .await
        .unwrap()
        .send_keys("maintenance window")
        .await
        .unwrap();
    b.click_to_next_page("#pause-button").await;
    assert!(
        b.text("#pause-state")
            .await
            .starts_with("Paused until resumed")
    );
    assert_eq!(b.text("#pause-reason").await, "maintenance window");
    let paused = stack.stats().await.paused.expect("the queue is paused");
    assert_eq!(paused.reason, "maintenance window");
    b.screenshot("console-overview.png").await;
    b.click_to_next_page("#resume").await;
    assert!(b.text("#pause-state").await.starts_with("Running"));
    assert!(stack.stats().await.paused.is_none());

    // A forged form (no CSRF token), with the session cookie: 403, and nothing changes.
    let (status, page) = b
        .fetch("/pause", "POST", &[("reason", "forged"), ("for", "1h")])
        .await;
    assert_eq!(status, 403, "{page}");
    assert!(page.contains("CSRF"));
    let (status, _) = b
        .fetch("/dead/purge", "POST", &[("all", "1"), ("confirm", "1")])
        .await;
    assert_eq!(status, 403);
    let (status, _) = b
        .fetch("/pause", "POST", &[("reason", "forged"), ("csrf", "00")])
        .await;
    assert_eq!(status, 403, "a wrong CSRF token is no better");
    assert!(
        stack.stats().await.paused.is_none(),
        "the forged pause took"
    );
    // The same form through the page (so with the token) works: the check is the token.
    b.driver.goto(format!("{base}/")).await.unwrap();
    let csrf = b
        .driver
        .find(By::Css("form[action='/pause'] input[name='csrf']"))
        .await
        .unwrap()
        .attr("value")
        .await
        .unwrap()
        .unwrap();
    let (status, _) = b
        .fetch(
            "/pause",
            "POST",
            &[("reason", "with token"), ("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, 200, "followed the redirect to the overview");
    assert_eq!(stack.stats().await.paused.unwrap().reason, "with token");
    stack.queue.resume().await.unwrap();

    // Unknown ids: 404 pages, never 500.
    for path in [
        "/batches/no-such-batch".to_owned(),
        "/batches/no-such-batch/results.csv".to_owned(),
        "/batches/%2F..%2F".to_owned(),
        "/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV".to_owned(),
        "/jobs/%20".to_owned(),
    ] {
        let (status, body) = b.fetch(&path, "GET", &[]).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let (status, _) = b.fetch("/batches?offset=x", "GET", &[]).await;
    assert_eq!(status, 400);
    let (status, _) = b
        .fetch(&format!("/batches/{batch}?state=nope"), "GET", &[])
        .await;
    assert_eq!(status, 400);

    // Lookup by appid and by job id.
    let some = jobs[0][0].clone();
    b.driver
        .goto(format!("{base}/lookup?q={some}"))
        .await
        .unwrap();
    assert_eq!(b.h1().await, format!("Appid {some}"));
    assert_eq!(
        b.count("table.results tbody tr[data-state='accepted']")
            .await,
        1
    );
    b.driver
        .goto(format!("{base}/lookup?q={dead_id}"))
        .await
        .unwrap();
    // It finished (retried from dead, then accepted): gone from the queue, its batch's results
    // still name it, with its appid's row.
    assert_eq!(b.h1().await, format!("Job {dead_id}"));
    assert!(b.text("#job-state").await.contains("finished"));
    assert_eq!(
        b.count(&format!(
            "table.results tbody tr[data-appid='{}']",
            appid(0xdead_0001)
        ))
        .await,
        1,
        "the finished job's page lists its appid"
    );

    // The live feed: a share made now shows up on the open events page (SSE, EventSource).
    b.driver.goto(format!("{base}/events")).await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            b.count("#feed[data-live='1']").await == 1
        })
        .await,
        "the event feed did not connect"
    );
    let live = appid(0xfeed_0001);
    stack.enqueue("prod-console", &[vec![live.clone()]]).await;
    assert!(
        wait_until(Duration::from_secs(20), || async {
            let items = b.driver.find_all(By::Css("#feed li.new")).await.unwrap();
            for li in items {
                let text = li.text().await.unwrap_or_default();
                if text.contains("share.accepted") && text.contains(live.as_str()) {
                    return true;
                }
            }
            false
        })
        .await,
        "the live feed never showed the share of {live}"
    );

    // No secret on any page.
    for path in [
        "/",
        "/batches",
        "/dead",
        "/events",
        &format!("/batches/{batch}"),
    ] {
        let (_, body) = b.fetch(path, "GET", &[]).await;
        assert!(
            !body.contains(API_TOKEN) && !body.contains(ACCESS_TOKEN),
            "{path}"
        );
    }

    browser.quit().await;
    stop(worker).await;
    stop(serve).await;
}

/// The CSV's rows are the batch's share events: the same appids, states and confirmation URLs.
fn compare_csv_with_events(csv_text: &str, events: &[EventKind], batch: &BatchId) {
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    for e in events {
        match e {
            EventKind::ShareAccepted {
                batch_id,
                appid,
                confirm_url,
                ..
            } if batch_id == batch => {
                let url = confirm_url.clone().unwrap_or_default();
                expected.insert(appid.to_string(), ("accepted".to_owned(), url));
            }
            EventKind::ShareFailed {
                batch_id, appid, ..
            } if batch_id == batch => {
                expected.insert(appid.to_string(), ("failed".to_owned(), String::new()));
            }
            _ => {}
        }
    }
    assert_eq!(expected.len(), 40, "one share event per appid");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (appid, state, url, batch_col) = (
        col("appid"),
        col("state"),
        col("confirm_url"),
        col("batch_id"),
    );
    let mut got: BTreeMap<String, (String, String)> = BTreeMap::new();
    for r in reader.records() {
        let r = r.unwrap();
        assert_eq!(&r[batch_col], batch.as_str());
        got.insert(
            r[appid].to_owned(),
            (r[state].to_owned(), r[url].to_owned()),
        );
    }
    assert_eq!(got, expected, "the CSV says what the events said");
    assert!(
        got.values()
            .any(|(s, u)| s == "accepted" && u.starts_with("http"))
    );
}

#[tokio::test]
async fn console_responses_carry_the_security_headers_and_hide_everything_before_sign_in() {
    let stack = TestStack::start("console-hdr", SandboxConfig::default(), |_| {}).await;
    let (serve, base) = serve(&stack).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in [
        "/",
        "/batches",
        "/dead",
        "/events/stream",
        "/jobs/x",
        "/login",
    ] {
        let res = client.get(format!("{base}{path}")).send().await.unwrap();
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        if path != "/login" {
            assert_eq!(res.status(), 303, "{path} without a session");
            assert_eq!(res.headers()["location"], "/login");
        }
    }
    // A forged POST without a session changes nothing either.
    let res = client
        .post(format!("{base}/pause"))
        .form(&[("reason", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(stack.stats().await.paused.is_none());
    // Sign in: the cookie is HttpOnly and SameSite=Strict, Secure behind an https proxy.
    let res = client
        .post(format!("{base}/login"))
        .header("x-forwarded-proto", "https")
        .form(&[("token", API_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains(API_TOKEN));
    let res = client
        .post(format!("{base}/login"))
        .form(&[("token", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(res.headers().get("set-cookie").is_none());
    let session = cookie.split(';').next().unwrap().to_owned();
    let res = client
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    assert!(page.contains("<h1>Overview</h1>") && !page.contains("<script>"));
    let js = client
        .get(format!("{base}/assets/console.js"))
        .send()
        .await
        .unwrap();
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.text().await.unwrap().contains("EventSource"));
    stop(serve).await;
}

#[tokio::test]
async fn without_an_api_token_the_loopback_console_opens_without_asking_but_keeps_csrf() {
    let stack = TestStack::start("console-open", SandboxConfig::default(), |s| {
        s.api_token = None;
        s.serve_addr = "127.0.0.1:0".parse().unwrap();
    })
    .await;
    let app = envshare::serve::Application::build(stack.settings.clone())
        .await
        .expect("serve starts on loopback without a token");
    let base = format!("http://{}", app.addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Pages still need a session, which /login hands out without a form.
    let res = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let res = client.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/");
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = client
        .get(format!("{base}/"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    // Forms still need the session's CSRF token.
    let res = client
        .post(format!("{base}/pause"))
        .header("cookie", &session)
        .form(&[("reason", "no token")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(stack.stats().await.paused.is_none());
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the overview's forms carry a CSRF token");
    let res = client
        .post(format!("{base}/pause"))
        .header("cookie", &session)
        .form(&[("reason", "with the token"), ("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(stack.stats().await.paused.unwrap().reason, "with the token");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
