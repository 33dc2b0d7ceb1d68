//! Conventions of well-kept command-line tools, checked on the real binaries: logs without
//! colour codes off a terminal (and with them on one, unless `NO_COLOR`), `--version` naming the
//! commit, and the checked-in completions and man pages matching the command line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use envshare::sandbox::SandboxConfig;
use envshare_tests::{ChildProcess, TestRedis, TestStack, appid, bin_path, unique_queue};

/// The escape byte every ANSI colour sequence starts with.
const ESC: u8 = 0x1b;
const TOKEN: &str = "static-token-conventions-7c1d";
/// This file's appids (see `appid`).
const APPID_BASE: u64 = 0xc7_0000;
const WAIT: Duration = Duration::from_secs(15);

/// The repository's root directory.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// Asserts `bytes` (a stream of `what`) hold no escape byte, showing where one is.
fn assert_no_escape(bytes: &str, what: &str) {
    if let Some(at) = bytes.bytes().position(|b| b == ESC) {
        let from = bytes[..at].rfind('\n').map_or(0, |n| n + 1);
        let line = bytes[from..].lines().next().unwrap_or_default();
        panic!("{what} has an escape byte at offset {at}, in the line {line:?}\n--- all:\n{bytes}");
    }
}

/// Runs the real `envshare-worker` with logs in `format` on a pipe: it shares a few appids
/// against the sandbox, is stopped with SIGTERM, and its stderr is returned.
async fn worker_log(format: &str) -> String {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        ..SandboxConfig::default()
    };
    let stack = TestStack::start("conventions-log", config, |_| {}).await;
    stack
        .enqueue(
            "prod-conventions",
            &[
                vec![appid(APPID_BASE + 1), appid(APPID_BASE + 2)],
                vec![appid(APPID_BASE + 3)],
            ],
        )
        .await;
    let env = [
        ("ENVSHARE_REDIS_URL", TestRedis::shared().url().to_owned()),
        ("ENVSHARE_QUEUE", stack.name().to_string()),
        ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
        ("ENVSHARE_ACCESS_TOKEN", TOKEN.to_owned()),
        ("ENVSHARE_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("ENVSHARE_LOG", "debug".to_owned()),
        ("ENVSHARE_LOG_FORMAT", format.to_owned()),
        // Logged as a warning (a coloured level on a terminal).
        ("ENVSHARE_NOT_A_SETTING", "1".to_owned()),
        // A terminal's usual variables: the destination decides, not these.
        ("TERM", "xterm-256color".to_owned()),
        ("COLORTERM", "truecolor".to_owned()),
    ];
    let mut child = ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env);
    let shared = stack.share_events(3, WAIT).await;
    assert_eq!(shared.len(), 3, "{shared:?}");
    child.sigterm();
    let status = child
        .wait_exit(WAIT)
        .await
        .expect("envshare-worker exits after SIGTERM");
    let (stdout, stderr) = child.output();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    assert_no_escape(&stdout, "the worker's stdout");
    stderr
}

/// Runs `envshare ARGS` with `env` (and PATH only), stdin closed, output piped.
fn envshare_piped(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin_path("envshare"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("envshare runs")
}

/// `envshare dead list` on a fresh queue with debug logs in `format` and an unknown variable
/// (a warning), output piped; returns (stdout, stderr).
fn cli_log(format: &str) -> (String, String) {
    let q = unique_queue("conventions-cli");
    let out = envshare_piped(
        &["dead", "list"],
        &[
            ("ENVSHARE_REDIS_URL", TestRedis::shared().url()),
            ("ENVSHARE_QUEUE", q.as_str()),
            ("ENVSHARE_LOG", "debug"),
            ("ENVSHARE_LOG_FORMAT", format),
            ("ENVSHARE_NOT_A_SETTING", "1"),
            ("TERM", "xterm-256color"),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

/// Every line of `log` is one JSON object with a level and fields.
fn assert_json_lines(log: &str, what: &str) {
    assert!(!log.trim().is_empty(), "{what} logged nothing");
    for line in log.lines() {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}: a line that is not one JSON object ({e}): {line}"));
        assert!(
            value.is_object() && value.get("level").is_some(),
            "{what}: {line}"
        );
    }
}

#[tokio::test]
async fn worker_logs_to_a_pipe_carry_no_colour_codes_as_text_or_json() {
    let text = worker_log("text").await;
    assert_no_escape(&text, "the worker's text log");
    assert!(
        text.lines().count() >= 3,
        "the worker logged a few lines:\n{text}"
    );
    assert!(
        text.contains("WARN") && text.contains("ENVSHARE_NOT_A_SETTING"),
        "{text}"
    );
    assert!(text.contains("shutdown requested"), "{text}");

    let json = worker_log("json").await;
    assert_no_escape(&json, "the worker's JSON log");
    assert_json_lines(&json, "the worker's JSON log");
    assert!(json.lines().count() >= 3, "{json}");
    assert!(json.contains("\"level\":\"WARN\""), "{json}");
}

#[test]
fn cli_logs_to_a_pipe_carry_no_colour_codes_as_text_or_json() {
    let (stdout, text) = cli_log("text");
    assert_no_escape(&stdout, "envshare's stdout");
    assert_no_escape(&text, "envshare's text log");
    assert!(
        text.contains("WARN") && text.contains("ENVSHARE_NOT_A_SETTING"),
        "{text}"
    );

    let (stdout, json) = cli_log("json");
    assert_no_escape(&stdout, "envshare's stdout");
    assert_no_escape(&json, "envshare's JSON log");
    assert_json_lines(&json, "envshare's JSON log");
    assert!(json.contains("ENVSHARE_NOT_A_SETTING"), "{json}");
}

/// Runs `envshare ENVSHARE_ARGS` on a pseudo-terminal (util-linux `script`) with `env`, and
/// returns everything it wrote there.
fn envshare_on_a_terminal(args: &str, env: &[(&str, &str)]) -> String {
    let bin = bin_path("envshare");
    let command = format!("{} {args}", bin.display());
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` runs (it gives the command a terminal)");
    let all = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{command}:\n{all}");
    all
}

#[test]
fn cli_logs_on_a_terminal_are_coloured_unless_no_color_is_set() {
    let q = unique_queue("conventions-tty");
    let env = [
        ("ENVSHARE_REDIS_URL", TestRedis::shared().url()),
        ("ENVSHARE_QUEUE", q.as_str()),
        ("ENVSHARE_NOT_A_SETTING", "1"),
        ("TERM", "xterm-256color"),
    ];
    let coloured = envshare_on_a_terminal("dead list", &env);
    assert!(coloured.contains("ENVSHARE_NOT_A_SETTING"), "{coloured}");
    assert!(
        coloured.bytes().any(|b| b == ESC),
        "a terminal gets colour: {coloured:?}"
    );

    for no_color in ["1", "0"] {
        let mut env = env.to_vec();
        env.push(("NO_COLOR", no_color));
        let plain = envshare_on_a_terminal("dead list", &env);
        assert!(plain.contains("ENVSHARE_NOT_A_SETTING"), "{plain}");
        assert_no_escape(&plain, &format!("a terminal with NO_COLOR={no_color}"));
    }
}

/// Whether `s` is `<12 hex digits> <YYYY-MM-DD>` or `unknown`.
fn is_commit(s: &str) -> bool {
    if s == "unknown" {
        return true;
    }
    let Some((hash, date)) = s.split_once(' ') else {
        return false;
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let date: Vec<&str> = date.split('-').collect();
    hash.len() == 12
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && matches!(date.as_slice(), [y, m, d]
            if y.len() == 4 && m.len() == 2 && d.len() == 2 && digits(y) && digits(m) && digits(d))
}

#[test]
fn version_names_the_package_version_and_the_commit_of_both_binaries() {
    for name in ["envshare", "envshare-worker"] {
        for flag in ["--version", "-V"] {
            let out = Command::new(bin_path(name))
                .arg(flag)
                .env_clear()
                .output()
                .expect("runs");
            assert!(out.status.success(), "{name} {flag}: {out:?}");
            let text = String::from_utf8(out.stdout).expect("UTF-8");
            let line = text.strip_suffix('\n').unwrap_or(&text);
            let rest = line
                .strip_prefix(&format!("{name} {} (", env!("CARGO_PKG_VERSION")))
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{name} {flag} printed {text:?}"));
            assert!(is_commit(rest), "{name} {flag} printed {text:?}");
        }
    }
}

#[test]
fn the_commit_shape_check_accepts_what_build_rs_writes() {
    assert!(is_commit("0123456789ab 2026-12-03"));
    assert!(is_commit("unknown"));
    assert!(!is_commit("0123456 2026-12-03"));
    assert!(!is_commit("0123456789ab"));
    assert!(!is_commit("0123456789ab 2026-1-03"));
}

/// The command that rewrites the checked-in completions and man pages.
const REGENERATE: &str = "rm -f docs/man/*.1 && cargo run -q --bin envshare -- man --out-dir docs/man && \
     for sh in bash zsh fish; do cargo run -q --bin envshare -- completions $sh > completions/envshare.$sh; done";

/// The files in `dir` and their contents, sorted by name.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            (name, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_checked_in_man_pages_and_completions_are_current() {
    let root = repo_root();
    let fresh = tempfile::tempdir().unwrap();
    let out = envshare_piped(&["man", "--out-dir", fresh.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "envshare man: {out:?}");
    let generated = files(fresh.path());
    assert!(
        generated.iter().any(|(n, _)| n == "envshare.1")
            && generated.iter().any(|(n, _)| n == "envshare-import.1")
            && generated.iter().any(|(n, _)| n == "envshare-dead-list.1"),
        "{:?}",
        generated.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    // The pages stay the same from one commit to the next: they name no commit.
    let version = String::from_utf8(envshare_piped(&["--version"], &[]).stdout).unwrap();
    let commit = version.split(['(', ')']).nth(1).unwrap_or_default();
    if let Some((hash, _date)) = commit.split_once(' ') {
        for (name, text) in &generated {
            assert!(!text.contains(hash), "{name} names the commit {hash}");
        }
    }
    let mut stale = Vec::new();
    let checked_in = files(&root.join("docs/man"));
    if checked_in != generated {
        stale.push("docs/man/".to_owned());
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = envshare_piped(&["completions", shell], &[]);
        assert!(
            out.status.success(),
            "envshare completions {shell}: {out:?}"
        );
        assert!(!out.stdout.is_empty(), "completions {shell}");
        let path = root.join(format!("completions/envshare.{shell}"));
        if std::fs::read(&path).ok().as_deref() != Some(&out.stdout[..]) {
            stale.push(format!("completions/envshare.{shell}"));
        }
    }
    assert!(
        stale.is_empty(),
        "out of date with the command line: {}. Regenerate them from the repository root with\n  {REGENERATE}\nand commit the result.",
        stale.join(", ")
    );
}

#[test]
fn completions_cover_every_shell_clap_complete_knows() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = envshare_piped(&["completions", shell], &[]);
        assert!(out.status.success(), "completions {shell}: {out:?}");
        let script = String::from_utf8(out.stdout).expect("UTF-8");
        assert!(
            script.contains("envshare") && script.contains("import"),
            "{shell}"
        );
    }
}
