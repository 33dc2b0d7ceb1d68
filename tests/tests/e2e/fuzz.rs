//! Bad input (issue 6, part 5): property tests of the three parsers that read outside input,
//! through their public APIs.
//!
//! - the import parser ([`Records`], [`validate`]): arbitrary bytes as CSV and as JSONL, and
//!   near-valid files whose every row's outcome and line number is known in advance;
//! - the WeChat response parser: arbitrary JSON values and bytes into the response types, and
//!   arbitrary bodies served over HTTP to the real [`WechatClient`] (envelope, errcode, type);
//! - the settings parser ([`Settings::from_sources`]): arbitrary environments, arbitrary TOML and
//!   near-valid TOML.
//!
//! Each property asserts no panic and that every rejection is a clear error: a non-empty message
//! naming the line (import), the endpoint (WeChat) or the variable / key (settings), and never a
//! secret's value.
//!
//! Cases per property: `ENVSHARE_FUZZ_CASES`, default 512 (CI: a few seconds for all). The long
//! profile runs 100,000 per property:
//!
//! ```text
//! ENVSHARE_FUZZ_CASES=100000 cargo test -p envshare-tests --test e2e fuzz::
//! ```
//!
//! cargo-fuzz targets of the same parsers are in `fuzz/` (see its README).

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use envshare::config::{ConfigError, Settings};
use envshare::import::{Format, ImportError, Records, validate};
use envshare::wechat::{
    EnvIdsResponse, ItemError, MsgInfo, QuotaResponse, ShareResponse, WechatClient, WechatError,
};
use envshare::{AppId, EnvId};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use secrecy::SecretString;
use serde_json::{Value, json};

/// Cases per property unless `ENVSHARE_FUZZ_CASES` says otherwise.
const DEFAULT_CASES: u32 = 512;

fn config() -> Config {
    let cases = std::env::var("ENVSHARE_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        // Shrunk failures are reported in the panic message; no regression files in the tree.
        failure_persistence: None,
        ..Config::default()
    }
}

// ---- import ----

/// Checks every record of `bytes` read as `format`, and that [`validate`] agrees.
fn check_import(bytes: &[u8], format: Format) -> Result<(), TestCaseError> {
    // A record starts on a line that exists; lines are counted from 1 by '\n'.
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let first_row = if format == Format::Csv { 2 } else { 1 };
    let mut reported = Vec::new();
    match Records::new(bytes, format) {
        Err(e) => prop_assert!(!e.to_string().trim().is_empty(), "empty message: {e:?}"),
        Ok(records) => {
            let mut last = 0;
            for record in records {
                let record = match record {
                    Ok(r) => r,
                    Err(e) => {
                        prop_assert!(!e.to_string().trim().is_empty(), "empty message: {e:?}");
                        break;
                    }
                };
                prop_assert!(
                    (first_row..=lines).contains(&record.line) && record.line >= last,
                    "line {} after line {last}, input of {lines} lines",
                    record.line
                );
                last = record.line;
                match &record.pairs {
                    Ok(pairs) => prop_assert!(!pairs.is_empty()),
                    Err(reason) => {
                        prop_assert!(!reason.trim().is_empty(), "line {}", record.line);
                        reported.push(record.line);
                    }
                }
            }
        }
    }
    if let Ok(v) = validate(bytes, format, 10, usize::MAX) {
        prop_assert_eq!(v.rows, v.valid_rows + v.invalid_rows);
        prop_assert!(v.unique_pairs() + v.duplicates == v.pairs);
        let lines: Vec<u64> = v.errors.iter().map(|e| e.line).collect();
        prop_assert_eq!(lines, reported);
    }
    Ok(())
}

fn env_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn app_id() -> impl Strategy<Value = String> {
    "wx[0-9a-f]{16}"
}

/// An appid that breaks one rule (never empty: an empty field has its own reason).
fn bad_app_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "wx[0-9a-f]{0,15}",
        "wx[0-9a-f]{17,20}",
        "wx[0-9A-F]{16}".prop_filter("an upper-case digit", |s| s[2..]
            .chars()
            .any(|c| c.is_ascii_uppercase())),
        "[a-vyz][a-z][0-9a-f]{16}",
        "wx[0-9a-f]{8}[g-z.;/][0-9a-f]{7}",
    ]
}

/// An env that breaks one rule (not empty, not only blanks: fields are trimmed).
fn bad_env_id() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9_-]{65,80}", "[a-z]{1,5}[.!/@ é][a-z]{1,5}",]
}

/// One row of a near-valid input, and what the parser must make of it.
#[derive(Debug, Clone)]
enum Row {
    Valid(String, String),
    BadAppid(String, String),
    BadEnv(String, String),
    EmptyAppid(String),
    MissingAppid(String),
    Blank,
}

fn row() -> impl Strategy<Value = Row> {
    prop_oneof![
        6 => (env_id(), app_id()).prop_map(|(e, a)| Row::Valid(e, a)),
        2 => (env_id(), bad_app_id()).prop_map(|(e, a)| Row::BadAppid(e, a)),
        2 => (bad_env_id(), app_id()).prop_map(|(e, a)| Row::BadEnv(e, a)),
        1 => env_id().prop_map(Row::EmptyAppid),
        1 => env_id().prop_map(Row::MissingAppid),
        1 => Just(Row::Blank),
    ]
}

/// What the parser must say of a row: `Ok((env, appid))` or a word its reason must contain.
type Want = Result<(String, String), &'static str>;

/// What the parser must say of `row`; `None` for a blank line (no record).
fn expected(row: &Row) -> Option<Want> {
    match row {
        Row::Valid(e, a) => Some(Ok((e.clone(), a.clone()))),
        Row::BadAppid(..) | Row::EmptyAppid(_) => Some(Err("appid")),
        // "missing the appid column", or with the columns swapped "missing the env column".
        Row::MissingAppid(_) => Some(Err("missing the")),
        Row::BadEnv(..) => Some(Err("env")),
        Row::Blank => None,
    }
}

/// Compares what the parser read with what each row should give, line by line.
fn check_rows(
    bytes: &[u8],
    format: Format,
    rows: &[Row],
    first_line: u64,
) -> Result<(), TestCaseError> {
    let records: Vec<_> = Records::new(bytes, format)
        .map_err(|e| TestCaseError::fail(format!("{e}")))?
        .collect::<Result<_, ImportError>>()
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    let want: Vec<(u64, Want)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| expected(r).map(|e| (first_line + i as u64, e)))
        .collect();
    prop_assert_eq!(records.len(), want.len(), "records: {:?}", records);
    for (record, (line, want)) in records.iter().zip(want) {
        prop_assert_eq!(record.line, line, "{:?}", record);
        match (&record.pairs, want) {
            (Ok(pairs), Ok((e, a))) => {
                prop_assert_eq!(pairs.len(), 1);
                prop_assert_eq!((pairs[0].0.as_str(), pairs[0].1.as_str()), (&*e, &*a));
            }
            (Err(reason), Err(word)) => {
                prop_assert!(
                    reason.contains(word),
                    "line {line}: {reason:?} lacks {word:?}"
                );
            }
            (got, want) => prop_assert!(false, "line {line}: got {got:?}, want {want:?}"),
        }
    }
    Ok(())
}

fn csv_field(s: &str, quote: bool) -> String {
    if quote {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_import_parser_reads_any_bytes_as_csv_without_panic_and_names_each_bad_line(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        check_import(&bytes, Format::Csv)?;
    }

    #[test]
    fn the_import_parser_reads_any_bytes_as_jsonl_without_panic_and_names_each_bad_line(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        check_import(&bytes, Format::Jsonl)?;
    }

    #[test]
    fn the_import_parser_reads_text_made_of_csv_and_json_pieces_without_panic(
        pieces in prop::collection::vec(prop_oneof![
            Just("env".to_owned()), Just("appid".to_owned()), Just(",".to_owned()),
            Just("\"".to_owned()), Just("\n".to_owned()), Just("\r\n".to_owned()),
            Just("{".to_owned()), Just("}".to_owned()), Just(":".to_owned()),
            Just("[".to_owned()), Just("]".to_owned()), Just("\"appids\"".to_owned()),
            Just("\u{feff}".to_owned()), Just(" ".to_owned()),
            app_id(), env_id(), "[^\n]{0,8}",
        ], 0..40),
    ) {
        let text = pieces.concat();
        check_import(text.as_bytes(), Format::Csv)?;
        check_import(text.as_bytes(), Format::Jsonl)?;
    }

    #[test]
    fn a_near_valid_csv_gives_each_row_its_pair_or_a_reason_on_its_own_line(
        rows in prop::collection::vec(row(), 1..30),
        swapped in any::<bool>(),
        extra_column in any::<bool>(),
        crlf in any::<bool>(),
        quote in any::<bool>(),
        bom in any::<bool>(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let mut header: Vec<&str> = if swapped { vec!["AppId", "env"] } else { vec!["env", "appid"] };
        if extra_column {
            header.push("note");
        }
        let mut text = String::from(if bom { "\u{feff}" } else { "" });
        text.push_str(&header.join(","));
        text.push_str(end);
        for row in &rows {
            let (env, appid) = match row {
                Row::Valid(e, a) | Row::BadAppid(e, a) | Row::BadEnv(e, a) => (e.clone(), Some(a.clone())),
                Row::EmptyAppid(e) => (e.clone(), Some(String::new())),
                Row::MissingAppid(e) => (e.clone(), None),
                Row::Blank => {
                    text.push_str(end);
                    continue;
                }
            };
            let mut fields = match (&appid, swapped) {
                (Some(a), true) => vec![csv_field(a, quote), csv_field(&env, quote)],
                (Some(a), false) => vec![csv_field(&env, quote), csv_field(a, quote)],
                // Only the first column: the appid's column is missing from the row.
                (None, true) => vec![csv_field(&env, quote)],
                (None, false) => vec![csv_field(&env, quote)],
            };
            if extra_column && appid.is_some() {
                fields.push("x".into());
            }
            text.push_str(&fields.join(","));
            text.push_str(end);
        }
        // With swapped columns a one-field row holds the env in the appid's place: it is then
        // an appid error too, which `expected` already says.
        check_rows(text.as_bytes(), Format::Csv, &rows, 2)?;
    }

    #[test]
    fn a_near_valid_jsonl_gives_each_row_its_pairs_or_a_reason_on_its_own_line(
        rows in prop::collection::vec(json_row(), 1..30),
        crlf in any::<bool>(),
    ) {
        let end = if crlf { "\r\n" } else { "\n" };
        let text: String = rows.iter().map(|(line, _)| format!("{line}{end}")).collect();
        let records: Vec<_> = Records::new(text.as_bytes(), Format::Jsonl)
            .map_err(|e| TestCaseError::fail(format!("{e}")))?
            .collect::<Result<_, ImportError>>()
            .map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let want: Vec<(u64, &JsonWant)> = rows
            .iter()
            .enumerate()
            .filter(|(_, (_, w))| !matches!(w, JsonWant::Skipped))
            .map(|(i, (_, w))| (i as u64 + 1, w))
            .collect();
        prop_assert_eq!(records.len(), want.len(), "{:?}", records);
        for (record, (line, want)) in records.iter().zip(want) {
            prop_assert_eq!(record.line, line);
            match (&record.pairs, want) {
                (Ok(pairs), JsonWant::Pairs(env, appids)) => {
                    let got: Vec<(&str, &str)> = pairs.iter().map(|(e, a)| (e.as_str(), a.as_str())).collect();
                    let want: Vec<(&str, &str)> = appids.iter().map(|a| (env.as_str(), a.as_str())).collect();
                    prop_assert_eq!(got, want);
                }
                (Err(reason), JsonWant::Reason(word)) => {
                    prop_assert!(reason.contains(word), "line {line}: {reason:?} lacks {word:?}");
                }
                (got, want) => prop_assert!(false, "line {line}: got {got:?}, want {want:?}"),
            }
        }
    }
}

/// What a JSONL line must give.
#[derive(Debug, Clone)]
enum JsonWant {
    Pairs(String, Vec<String>),
    /// A word the reason must contain.
    Reason(&'static str),
    /// A blank line: no record.
    Skipped,
}

fn json_row() -> impl Strategy<Value = (String, JsonWant)> {
    let extra = prop::option::of(("[a-z_]{1,8}", any::<i32>()));
    let with_extra = move |mut v: Value, extra: Option<(String, i32)>| {
        if let Some((k, n)) = extra
            && !["env", "appid", "appids"].contains(&k.as_str())
        {
            v[k] = json!(n);
        }
        v.to_string()
    };
    prop_oneof![
        4 => (env_id(), app_id(), extra.clone()).prop_map(move |(e, a, x)| (
            with_extra(json!({"env": e, "appid": a}), x),
            JsonWant::Pairs(e, vec![a]),
        )),
        3 => (env_id(), prop::collection::vec(app_id(), 1..5)).prop_map(|(e, list)| (
            json!({"appids": list, "env": e}).to_string(),
            JsonWant::Pairs(e, list),
        )),
        1 => (env_id(), bad_app_id()).prop_map(|(e, a)| (
            json!({"env": e, "appid": a}).to_string(), JsonWant::Reason("appid"),
        )),
        1 => (env_id(), app_id(), bad_app_id()).prop_map(|(e, a, b)| (
            json!({"env": e, "appids": [a, b]}).to_string(), JsonWant::Reason("appids[1]"),
        )),
        1 => (bad_env_id(), app_id()).prop_map(|(e, a)| (
            json!({"env": e, "appid": a}).to_string(), JsonWant::Reason("env"),
        )),
        1 => (any::<i64>(), app_id()).prop_map(|(n, a)| (
            json!({"env": n, "appid": a}).to_string(), JsonWant::Reason("env must be a string"),
        )),
        1 => app_id().prop_map(|a| (json!({"appid": a}).to_string(), JsonWant::Reason("no \"env\""))),
        1 => env_id().prop_map(|e| (json!({"env": e}).to_string(), JsonWant::Reason("no \"appid\""))),
        1 => (env_id(), app_id()).prop_map(|(e, a)| (
            json!({"env": e, "appid": a, "appids": [a]}).to_string(), JsonWant::Reason("both"),
        )),
        1 => env_id().prop_map(|e| (
            json!({"env": e, "appids": []}).to_string(), JsonWant::Reason("empty list"),
        )),
        1 => (env_id(), any::<i64>()).prop_map(|(e, n)| (
            json!({"env": e, "appids": n}).to_string(), JsonWant::Reason("appids must be a list"),
        )),
        1 => (env_id(), app_id(), 1usize..20).prop_map(|(e, a, cut)| {
            let full = json!({"env": e, "appid": a}).to_string();
            (full[..cut.min(full.len() - 1)].to_owned(), JsonWant::Reason("JSON"))
        }),
        1 => "[a-z0-9,]{1,20}".prop_map(|s| (s, JsonWant::Reason("JSON"))),
        1 => "[ \t]{0,4}".prop_map(|s| (s, JsonWant::Skipped)),
    ]
}

// ---- WeChat responses ----

/// Any JSON value, nested a few levels, with the response types' field names among its keys.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
    ];
    let key = prop_oneof![
        Just("errcode".to_owned()),
        Just("errmsg".to_owned()),
        Just("err_list".to_owned()),
        Just("msg_info_list".to_owned()),
        Just("relation_data".to_owned()),
        Just("env_list".to_owned()),
        Just("appid".to_owned()),
        Just("env".to_owned()),
        Just("url".to_owned()),
        Just("quota".to_owned()),
        Just("daily_limit".to_owned()),
        Just("used".to_owned()),
        Just("remain".to_owned()),
        ".{0,8}",
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Parses `value` into `$t`: an error has a message; a success survives a round trip unchanged.
/// (A macro rather than a generic function: the tests do not depend on serde directly.)
macro_rules! parses_or_explains {
    ($t:ty, $value:expr) => {{
        let value: &Value = $value;
        match serde_json::from_value::<$t>(value.clone()) {
            Ok(parsed) => {
                let again: $t = serde_json::from_value(serde_json::to_value(&parsed).unwrap())
                    .map_err(|e| TestCaseError::fail(format!("round trip: {e}")))?;
                prop_assert_eq!(again, parsed);
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let text = value.to_string();
        prop_assert_eq!(
            serde_json::from_str::<$t>(&text).is_ok(),
            serde_json::from_value::<$t>(value.clone()).is_ok()
        );
    }};
}

fn item_error() -> impl Strategy<Value = ItemError> {
    (
        ".{0,10}",
        ".{0,20}",
        ".{0,20}",
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(env, appid, errmsg, errcode)| ItemError {
            env,
            appid,
            errmsg,
            errcode,
        })
}

/// A tiny HTTP/1.1 server answering every request with the current `body`, so the real client's
/// whole read path (status, size cap, envelope, errcode, type) sees arbitrary answers.
struct BodyServer {
    url: String,
    body: Arc<Mutex<Vec<u8>>>,
}

fn body_server() -> &'static BodyServer {
    static SERVER: OnceLock<BodyServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let body = Arc::new(Mutex::new(Vec::new()));
        let shared = body.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let body = shared.clone();
                std::thread::spawn(move || serve(stream, &body));
            }
        });
        BodyServer { url, body }
    })
}

fn serve(mut stream: std::net::TcpStream, body: &Mutex<Vec<u8>>) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request: headers, then Content-Length bytes.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + len);
        let answer = body.lock().unwrap().clone();
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        )
        .into_bytes();
        out.extend_from_slice(&answer);
        // One write: head and body in two small writes would wait out Nagle and delayed ACKs.
        if stream.write_all(&out).is_err() {
            return;
        }
    }
}

/// One runtime for the client property (proptest cases are synchronous).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The client property shares one server, so its cases run one at a time.
static CLIENT_CASES: Mutex<()> = Mutex::new(());

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), json_value()).prop_map(|(code, rest)| {
            let mut v = match rest {
                Value::Object(m) => Value::Object(m),
                other => json!({"err_list": other}),
            };
            v["errcode"] = code;
            v.to_string().into_bytes()
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_response_types_take_any_json_value_without_panic(value in json_value()) {
        parses_or_explains!(ShareResponse, &value);
        parses_or_explains!(EnvIdsResponse, &value);
        parses_or_explains!(QuotaResponse, &value);
    }

    #[test]
    fn the_response_types_take_any_bytes_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        for result in [
            serde_json::from_slice::<ShareResponse>(&bytes).err(),
            serde_json::from_slice::<EnvIdsResponse>(&bytes).err(),
            serde_json::from_slice::<QuotaResponse>(&bytes).err(),
        ]
        .into_iter()
        .flatten()
        {
            prop_assert!(!result.to_string().is_empty());
        }
    }

    #[test]
    fn a_share_answer_with_unknown_fields_and_absent_lists_parses_to_what_was_sent(
        err_list in prop::option::of(prop::collection::vec(item_error(), 0..4)),
        msg_info_list in prop::option::of(prop::collection::vec(
            (".{0,20}", ".{0,40}").prop_map(|(appid, url)| MsgInfo { appid, url }), 0..4)),
        unknown in prop::collection::vec(("x_[a-z]{1,8}", json_value()), 0..3),
    ) {
        let mut v = json!({"errcode": 0, "errmsg": "ok"});
        if let Some(list) = &err_list {
            v["err_list"] = serde_json::to_value(list).unwrap();
        }
        if let Some(list) = &msg_info_list {
            v["msg_info_list"] = serde_json::to_value(list).unwrap();
        }
        for (k, x) in unknown {
            v[k] = x;
        }
        let parsed: ShareResponse = serde_json::from_value(v)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.err_list, err_list.unwrap_or_default());
        prop_assert_eq!(parsed.msg_info_list, msg_info_list.unwrap_or_default());
    }

    #[test]
    fn the_client_turns_any_answer_body_into_a_response_or_an_error_naming_the_endpoint(
        body in body(),
    ) {
        let _one_at_a_time = CLIENT_CASES.lock().unwrap_or_else(|p| p.into_inner());
        let server = body_server();
        *server.body.lock().unwrap() = body.clone();
        static CLIENT: OnceLock<WechatClient> = OnceLock::new();
        let client = CLIENT.get_or_init(|| {
            WechatClient::new(&server.url, Duration::from_secs(5)).unwrap()
        });
        let token = SecretString::from("tok-FUZZ-0000");
        let env = EnvId::parse("fuzz").unwrap();
        let appids = [AppId::parse("wx0123456789abcdef").unwrap()];
        let result = runtime().block_on(client.share_env(&token, &env, &appids));
        match result {
            Ok(answer) => {
                // Accepted only when the body is JSON whose errcode is absent or 0.
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| TestCaseError::fail(format!("Ok for a non-JSON body: {e}")))?;
                prop_assert!(v.get("errcode").is_none_or(|c| c == 0), "Ok for {v}");
                let _ = answer.confirm_url("wx0123456789abcdef");
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(message.starts_with("componenttcb/batchshareenv: "), "{message}");
                prop_assert!(!message.contains("FUZZ"), "the token leaked: {message}");
                prop_assert!(
                    matches!(e, WechatError::Decode { .. } | WechatError::Api { .. }),
                    "a 200 answer is either unparsable or an errcode: {e:?}"
                );
            }
        }
    }
}

// ---- settings ----

/// Every setting's file key (docs/configuration.md).
const KEYS: &[&str] = &[
    "redis_url",
    "redis_cluster",
    "queue",
    "wechat_base_url",
    "component_appid",
    "component_appsecret",
    "access_token",
    "token_source",
    "token_redis_key",
    "token_redis_url",
    "token_url",
    "token_url_auth",
    "token_refresh_ahead_ms",
    "concurrency",
    "max_attempts",
    "backoff_base_ms",
    "backoff_max_ms",
    "lease_ms",
    "rate_limit",
    "chunk_size",
    "request_timeout_ms",
    "quota_reset",
    "events_maxlen",
    "dedupe_window_ms",
    "shutdown_timeout_ms",
    "http_addr",
    "log",
    "log_format",
    "webhook_urls",
    "webhook_secret",
    "webhook_secret_previous",
    "webhook_max_age_ms",
    "webhook_timeout_ms",
];
const SECRET_KEYS: &[&str] = &[
    "component_appsecret",
    "access_token",
    "webhook_secret",
    "webhook_secret_previous",
    "token_url_auth",
];
/// Secret values carry this mark; no message may contain it.
const SECRET_MARK: &str = "SeCrEtMaRk";

/// Values close to what each setting accepts, and a few that are not.
fn setting_value() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u64..100_000).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        Just(String::new()),
        Just("true".to_owned()),
        Just("yes".to_owned()),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("redis://127.0.0.1:6379".to_owned()),
        Just("redis://:pw@host:1/0".to_owned()),
        Just("http://127.0.0.1:1".to_owned()),
        Just("127.0.0.1:0".to_owned()),
        Just("trace".to_owned()),
        Just("info,envshare=debug".to_owned()),
        Just("json".to_owned()),
        Just("03:30".to_owned()),
        Just("24:00".to_owned()),
        Just("wx00000000000000c0".to_owned()),
        Just("share".to_owned()),
        ".{0,16}",
    ]
}

fn env_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(KEYS).prop_map(|k| format!("ENVSHARE_{}", k.to_ascii_uppercase())),
        1 => "ENVSHARE_[A-Za-z_]{1,12}",
        1 => Just("REDIS_URL".to_owned()),
        1 => "[A-Z_]{1,10}",
    ]
}

/// The value given to a variable or key, marked when the setting is a secret.
fn value_for(name: &str, value: String) -> String {
    let lower = name.to_ascii_lowercase();
    if SECRET_KEYS.iter().any(|k| lower.ends_with(k)) {
        format!("{SECRET_MARK}{value}")
    } else {
        value
    }
}

/// An error says something, names what it rejects and never holds a secret's value.
fn check_config_error(e: &ConfigError) -> Result<(), TestCaseError> {
    let message = e.to_string();
    prop_assert!(message.len() > "loading settings: ".len(), "{message:?}");
    prop_assert!(!message.contains(SECRET_MARK), "a secret in: {message}");
    prop_assert!(
        !format!("{e:?}").contains(SECRET_MARK),
        "a secret in: {e:?}"
    );
    prop_assert!(!e.is_retryable());
    for s in e.setting_errors() {
        let line = s.to_string();
        prop_assert!(!s.problem.trim().is_empty(), "{line}");
        if s.from_file {
            prop_assert!(line.contains(s.key), "{line}");
        } else {
            prop_assert!(line.contains(&s.variable), "{line}");
        }
        if SECRET_KEYS.contains(&s.key) {
            prop_assert!(s.value.is_none(), "a secret's value is kept: {s:?}");
        }
    }
    Ok(())
}

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        setting_value().prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        (0.0f64..1e6).prop_map(|f| format!("{f:?}")),
        Just("[1, 2]".to_owned()),
        Just("{ a = 1 }".to_owned()),
        Just("1979-05-27T07:32:00Z".to_owned()),
    ]
}

fn toml_key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(KEYS).prop_map(str::to_owned),
        // Typos: a letter dropped or doubled, the prefix kept, upper case.
        1 => prop::sample::select(KEYS).prop_map(|k| k[1..].to_owned()),
        1 => prop::sample::select(KEYS).prop_map(|k| format!("{k}s")),
        1 => prop::sample::select(KEYS).prop_map(|k| format!("envshare_{k}")),
        1 => prop::sample::select(KEYS).prop_map(|k| k.to_ascii_uppercase()),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_environment_loads_or_names_every_bad_variable_without_echoing_a_secret(
        vars in prop::collection::vec((env_name(), setting_value()), 0..12),
    ) {
        let vars: Vec<(String, String)> =
            vars.into_iter().map(|(k, v)| { let v = value_for(&k, v); (k, v) }).collect();
        match Settings::from_sources(vars.clone(), None) {
            Ok(settings) => {
                let debug = format!("{settings:?}");
                prop_assert!(!debug.contains(SECRET_MARK), "{}", debug);
                // A known variable that was given is not reported as unknown.
                for name in settings.unknown_env_vars() {
                    prop_assert!(name.starts_with("ENVSHARE_"));
                    let key = name["ENVSHARE_".len()..].to_ascii_lowercase();
                    prop_assert!(
                        !KEYS.contains(&key.as_str()) || name[9..] != key.to_ascii_uppercase(),
                        "{name} is a setting"
                    );
                }
            }
            Err(e) => {
                check_config_error(&e)?;
                prop_assert!(!e.setting_errors().is_empty(), "only values are checked: {e}");
                let given: BTreeSet<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
                for s in e.setting_errors() {
                    prop_assert!(
                        given.contains(s.variable.as_str()),
                        "{} was not given: {s}", s.variable
                    );
                }
            }
        }
    }

    #[test]
    fn any_text_as_a_config_file_loads_or_explains_without_panic(text in ".{0,200}") {
        if let Err(e) = Settings::from_sources(Vec::new(), Some(&text)) {
            check_config_error(&e)?;
        }
    }

    #[test]
    fn a_near_valid_config_file_loads_or_names_every_bad_key(
        entries in prop::collection::vec((toml_key(), toml_value()), 0..10),
    ) {
        let mut text = String::new();
        for (key, value) in &entries {
            let value = if SECRET_KEYS.contains(&key.as_str()) {
                format!("{:?}", value_for(key, value.trim_matches('"').to_owned()))
            } else {
                value.clone()
            };
            text.push_str(&format!("{key} = {value}\n"));
        }
        let keys: BTreeSet<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
        let unknown: Vec<&str> = keys.iter().copied().filter(|k| !KEYS.contains(k)).collect();
        let duplicate = keys.len() < entries.len();
        match Settings::from_sources(Vec::new(), Some(&text)) {
            Ok(settings) => {
                prop_assert!(unknown.is_empty(), "unknown keys {unknown:?} accepted:\n{text}");
                prop_assert!(!duplicate, "a repeated key accepted:\n{text}");
                let debug = format!("{settings:?}");
                prop_assert!(!debug.contains(SECRET_MARK), "{}", debug);
            }
            Err(e) => {
                check_config_error(&e)?;
                let message = e.to_string();
                match &e {
                    ConfigError::UnknownKeys { keys, .. } => {
                        prop_assert!(!keys.is_empty());
                        for k in keys {
                            prop_assert!(message.contains(&k.key), "{message}");
                        }
                    }
                    ConfigError::Invalid { errors, .. } => {
                        prop_assert!(unknown.is_empty(), "{unknown:?} not reported: {message}");
                        for s in errors {
                            prop_assert!(keys.contains(s.key), "{} was not given: {message}", s.key);
                        }
                    }
                    ConfigError::BadFile { message: m, .. } => {
                        prop_assert!(!m.trim().is_empty());
                    }
                    ConfigError::ReadFile { .. } => prop_assert!(false, "no file was read"),
                }
            }
        }
    }
}
