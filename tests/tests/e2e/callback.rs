//! The WeChat callback of `envshare serve` (`POST /wechat/callback`): pushes from the sandbox
//! (encrypted and signed as WeChat's), each kind of bad input (a 4xx that changes nothing in Redis
//! but the rejection counter), repeats, older tickets, the crypto against Python's
//! `cryptography` package, and the real binaries end to end.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envshare::config::Settings;
use envshare::events::EventKind;
use envshare::sandbox::{AuthorizationChange, CallbackPush, SandboxConfig};
use envshare::serve::Application;
use envshare::store::Queue;
use envshare::wechat::Endpoint;
use envshare::wechat::callback::{authorization_xml, envelope_xml, ticket_xml};
use envshare::wechat::crypt::MsgCrypt;
use envshare::{AppId, EnvId};
use envshare_tests::{ChildProcess, TestRedis, TestStack, appid, bin_path, free_port, wait_until};
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const COMPONENT: &str = SandboxConfig::COMPONENT_APPID;

/// Another EncodingAESKey, for ciphertexts that decrypt to garbage under the receiver's key.
const OTHER_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The settings of a receiver on `stack`'s queue: component appid, the callback's secrets, a
/// free port.
fn callback_settings(s: &mut Settings) {
    s.access_token = None;
    s.component_appid = Some(AppId::parse(COMPONENT).unwrap());
    s.component_appsecret = Some(SecretString::from(SandboxConfig::COMPONENT_SECRET));
    s.callback_token = Some(SecretString::from(CallbackPush::TOKEN));
    s.callback_aes_key = Some(SecretString::from(CallbackPush::AES_KEY));
    s.serve_addr = "127.0.0.1:0".parse().unwrap();
}

/// An in-process `envshare serve` on a test stack, with the sandbox pushing to it.
struct Receiver {
    stack: TestStack,
    url: String,
    crypt: MsgCrypt,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Receiver {
    async fn start(prefix: &str, tweak: impl FnOnce(&mut Settings)) -> Receiver {
        let stack = TestStack::start(prefix, SandboxConfig::default(), |s| {
            callback_settings(s);
            tweak(s);
        })
        .await;
        let app = Application::build(stack.settings.clone())
            .await
            .expect("serve starts");
        let url = format!("http://{}/wechat/callback", app.addr());
        stack
            .sandbox
            .configure(|c| c.callback = Some(CallbackPush::new(&url, None)));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Receiver {
            stack,
            url,
            crypt: MsgCrypt::new(CallbackPush::TOKEN.into(), CallbackPush::AES_KEY, COMPONENT)
                .unwrap(),
            http: reqwest::Client::new(),
            stop: Some(stop),
            task,
        }
    }

    fn queue(&self) -> &Queue {
        &self.stack.queue
    }

    async fn post(&self, query: &[(&str, String)], body: Vec<u8>) -> (u16, String) {
        let answer = self
            .http
            .post(&self.url)
            .query(query)
            .body(body)
            .send()
            .await
            .expect("the callback answers");
        let status = answer.status().as_u16();
        (status, answer.text().await.unwrap_or_default())
    }

    /// Posts `encrypt` in an envelope, signed with the receiver's token at `timestamp`.
    async fn send_encrypt_at(&self, encrypt: &str, timestamp: u64, nonce: &str) -> (u16, String) {
        let ts = timestamp.to_string();
        let sig = self.crypt.signature(&ts, nonce, encrypt);
        let query = [
            ("timestamp", ts),
            ("nonce", nonce.to_owned()),
            ("encrypt_type", "aes".to_owned()),
            ("msg_signature", sig),
        ];
        self.post(&query, envelope_xml(COMPONENT, encrypt).into_bytes())
            .await
    }

    async fn send_encrypt(&self, encrypt: &str) -> (u16, String) {
        let nonce = format!("{}", rand::random::<u32>());
        self.send_encrypt_at(encrypt, now_s(), &nonce).await
    }

    /// Encrypts `xml` for the receiver and posts it, signed.
    async fn send_xml(&self, xml: &str) -> (u16, String) {
        self.send_encrypt(&self.crypt.encrypt(xml.as_bytes())).await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
}

/// Every key of the queue and its content (`DUMP`), with the `stats` hash read field by field
/// minus `callback_rejected`; and that counter.
async fn snapshot(queue: &Queue) -> (BTreeMap<String, Vec<u8>>, i64) {
    let mut conn = TestRedis::shared().conn().await;
    let pattern = format!("{}*", queue.keys().prefix());
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(&pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stats_key = queue.keys().stats();
    let mut out = BTreeMap::new();
    let mut rejected = 0;
    for key in keys {
        if key == stats_key {
            let mut h: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            rejected = h
                .remove("callback_rejected")
                .map_or(0, |v| v.parse().unwrap());
            // A hash that holds nothing but the counter is as good as none.
            if !h.is_empty() {
                out.insert(key, format!("{h:?}").into_bytes());
            }
        } else {
            let dump: Vec<u8> = redis::cmd("DUMP")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            out.insert(key, dump);
        }
    }
    (out, rejected)
}

/// Sends a bad push with `send` and checks: the status, the reason in the answer, and that
/// Redis changed only by one more `callback_rejected`.
async fn assert_refused<F, Fut>(r: &Receiver, status: u16, reason: &str, send: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = (u16, String)>,
{
    let (before, rejected_before) = snapshot(r.queue()).await;
    let (got, body) = send().await;
    assert_eq!(got, status, "{body}");
    assert!(body.starts_with(reason), "{body}");
    let (after, rejected_after) = snapshot(r.queue()).await;
    assert_eq!(
        before, after,
        "nothing in Redis changes but the counter ({reason})"
    );
    assert_eq!(rejected_after, rejected_before + 1, "{reason}");
}

async fn ticket_hash(queue: &Queue) -> BTreeMap<String, String> {
    let mut conn = TestRedis::shared().conn().await;
    redis::cmd("HGETALL")
        .arg(queue.keys().ticket())
        .query_async(&mut conn)
        .await
        .unwrap()
}

async fn counter(queue: &Queue, name: &str) -> i64 {
    queue
        .stats()
        .await
        .unwrap()
        .counters
        .get(name)
        .copied()
        .unwrap_or(0)
}

#[tokio::test]
async fn a_pushed_ticket_is_stored_and_lifts_a_ticket_pause() {
    let r = Receiver::start("cb-ticket", |_| {}).await;
    let until = r.queue().now_ms() + 600_000;
    r.queue()
        .pause_until(
            until,
            "61005 ticket expired: store a fresh ticket with `envshare ticket set TICKET`",
        )
        .await
        .unwrap();

    let answer = r.stack.sandbox.push_ticket().await.unwrap();
    assert!(answer.is_success(), "{answer:?}");
    let h = ticket_hash(r.queue()).await;
    assert!(h["ticket"].starts_with("ticket@@@sandbox-1-"), "{h:?}");
    assert!(h.contains_key("set_at") && h.contains_key("create_time"));
    assert!(
        r.queue().pause_in_force().await.unwrap().is_none(),
        "the ticket pause is lifted"
    );
    assert_eq!(counter(r.queue(), "callback_tickets").await, 1);
    r.stop().await;
}

#[tokio::test]
async fn a_pause_for_another_reason_is_not_lifted_by_a_ticket() {
    let r = Receiver::start("cb-quota", |_| {}).await;
    let until = r.queue().now_ms() + 600_000;
    r.queue()
        .pause_until(until, "45009 daily quota spent")
        .await
        .unwrap();
    assert!(r.stack.sandbox.push_ticket().await.unwrap().is_success());
    assert!(r.queue().pause_in_force().await.unwrap().is_some());
    r.stop().await;
}

#[tokio::test]
async fn an_exact_repeat_is_answered_success_and_not_applied_twice() {
    let r = Receiver::start("cb-repeat", |_| {}).await;
    let xml = ticket_xml(COMPONENT, now_s(), "ticket@@@first");
    let encrypt = r.crypt.encrypt(xml.as_bytes());
    let ts = now_s();
    assert_eq!(
        r.send_encrypt_at(&encrypt, ts, "4242").await,
        (200, "success".into())
    );
    let set_at = ticket_hash(r.queue()).await["set_at"].clone();
    // The same request again (WeChat re-sends a push it got no `success` for).
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        r.send_encrypt_at(&encrypt, ts, "4242").await,
        (200, "success".into())
    );
    // The same ticket in a new request (new nonce, new ciphertext).
    assert_eq!(r.send_xml(&xml).await, (200, "success".into()));
    assert_eq!(
        ticket_hash(r.queue()).await["set_at"],
        set_at,
        "not stored again"
    );
    assert_eq!(counter(r.queue(), "callback_tickets").await, 1);
    assert_eq!(counter(r.queue(), "callback_repeats").await, 2);
    r.stop().await;
}

#[tokio::test]
async fn an_older_ticket_never_replaces_a_newer_one() {
    let r = Receiver::start("cb-older", |_| {}).await;
    let t = now_s();
    let newer = ticket_xml(COMPONENT, t, "ticket@@@newer");
    let older = ticket_xml(COMPONENT, t - 600, "ticket@@@older");
    assert_eq!(r.send_xml(&newer).await, (200, "success".into()));
    assert_eq!(r.send_xml(&older).await, (200, "success".into()));
    let h = ticket_hash(r.queue()).await;
    assert_eq!(h["ticket"], "ticket@@@newer");
    assert_eq!(h["create_time"], t.to_string());
    assert_eq!(counter(r.queue(), "callback_stale_tickets").await, 1);
    let newest = ticket_xml(COMPONENT, t + 600, "ticket@@@newest");
    assert_eq!(r.send_xml(&newest).await, (200, "success".into()));
    assert_eq!(ticket_hash(r.queue()).await["ticket"], "ticket@@@newest");
    r.stop().await;
}

#[tokio::test]
async fn authorization_pushes_become_app_events_once() {
    let r = Receiver::start("cb-auth", |_| {}).await;
    let a = appid(7001);
    for change in [
        AuthorizationChange::Authorized,
        AuthorizationChange::Updated,
        AuthorizationChange::Unauthorized,
    ] {
        let answer = r
            .stack
            .sandbox
            .send_authorization(change, a.as_str())
            .await
            .unwrap();
        assert!(answer.is_success(), "{answer:?}");
    }
    // A re-send of the same message (same CreateTime) in a new request adds nothing.
    let xml = authorization_xml(COMPONENT, 1_764_745_200, "authorized", a.as_str());
    assert_eq!(r.send_xml(&xml).await, (200, "success".into()));
    assert_eq!(r.send_xml(&xml).await, (200, "success".into()));
    let events = r.stack.events().await;
    let kinds: Vec<&str> = events.iter().map(EventKind::type_name).collect();
    assert_eq!(
        kinds,
        [
            "app.authorized",
            "app.authorization_updated",
            "app.unauthorized",
            "app.authorized"
        ]
    );
    assert!(events.iter().all(|e| matches!(e,
        EventKind::AppAuthorized { appid } | EventKind::AppAuthorizationUpdated { appid } | EventKind::AppUnauthorized { appid } if *appid == a)));
    assert_eq!(counter(r.queue(), "callback_repeats").await, 1);
    // No auto-share configured: nothing enqueued.
    assert_eq!(r.stack.stats().await.jobs, 0);
    r.stop().await;
}

#[tokio::test]
async fn an_authorization_with_auto_share_enqueues_the_envs_in_the_days_batch() {
    let r = Receiver::start("cb-autoshare", |s| {
        s.auto_share_envs = vec![
            EnvId::parse("auto-env-1").unwrap(),
            EnvId::parse("auto-env-2").unwrap(),
        ];
    })
    .await;
    let a = appid(7002);
    let answer = r
        .stack
        .sandbox
        .send_authorization(AuthorizationChange::Authorized, a.as_str())
        .await
        .unwrap();
    assert!(answer.is_success(), "{answer:?}");
    let batch = envshare::BatchId::parse(&format!(
        "auto-{}",
        &envshare::clock::iso8601(r.queue().now_ms() + 8 * 3_600_000)[..10]
    ))
    .unwrap();
    let progress = r
        .queue()
        .batch(&batch)
        .await
        .unwrap()
        .expect("the day's batch");
    assert_eq!((progress.jobs, progress.appids), (2, 2));
    // updateauthorized within the dedupe window: the pairs are skipped, the event written.
    let answer = r
        .stack
        .sandbox
        .send_authorization(AuthorizationChange::Updated, a.as_str())
        .await
        .unwrap();
    assert!(answer.is_success());
    let progress = r.queue().batch(&batch).await.unwrap().unwrap();
    assert_eq!(progress.appids, 2, "deduplicated");
    // unauthorized enqueues nothing.
    assert!(
        r.stack
            .sandbox
            .send_authorization(AuthorizationChange::Unauthorized, a.as_str())
            .await
            .unwrap()
            .is_success()
    );
    assert_eq!(r.queue().batch(&batch).await.unwrap().unwrap().appids, 2);
    assert_eq!(r.stack.events().await.len(), 3);
    r.stop().await;
}

#[tokio::test]
async fn an_unknown_info_type_is_answered_success_counted_and_ignored() {
    let r = Receiver::start("cb-unknown", |_| {}).await;
    let xml = format!(
        "<xml><AppId><![CDATA[{COMPONENT}]]></AppId><CreateTime>{}</CreateTime>\
         <InfoType><![CDATA[notify_third_fasteregister]]></InfoType><status>0</status></xml>",
        now_s()
    );
    let answer = r.stack.sandbox.push_message(&xml).await.unwrap();
    assert!(answer.is_success(), "{answer:?}");
    assert_eq!(counter(r.queue(), "callback_ignored").await, 1);
    assert!(r.stack.events().await.is_empty());
    assert!(ticket_hash(r.queue()).await.is_empty());
    let metrics = reqwest::get(r.url.replace("/wechat/callback", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"envshare_callback_messages_total{info_type="notify_third_fasteregister",result="ignored"} 1"#
        ),
        "{metrics}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_wrong_signature_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-badsig", |_| {}).await;
    let encrypt = r
        .crypt
        .encrypt(ticket_xml(COMPONENT, now_s(), "t").as_bytes());
    let query = [
        ("timestamp", now_s().to_string()),
        ("nonce", "1234".to_owned()),
        ("encrypt_type", "aes".to_owned()),
        ("msg_signature", "0".repeat(40)),
    ];
    let body = envelope_xml(COMPONENT, &encrypt).into_bytes();
    assert_refused(&r, 403, "bad_signature", || r.post(&query, body)).await;
    // Signed with another token.
    let other = MsgCrypt::new("not-the-token".into(), CallbackPush::AES_KEY, COMPONENT).unwrap();
    let ts = now_s().to_string();
    let query = [
        ("timestamp", ts.clone()),
        ("nonce", "1235".to_owned()),
        ("encrypt_type", "aes".to_owned()),
        ("msg_signature", other.signature(&ts, "1235", &encrypt)),
    ];
    let body = envelope_xml(COMPONENT, &encrypt).into_bytes();
    assert_refused(&r, 403, "bad_signature", || r.post(&query, body)).await;
    let metrics = reqwest::get(r.url.replace("/wechat/callback", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"envshare_callback_rejections_total{reason="bad_signature"} 2"#),
        "{metrics}"
    );
    r.stop().await;
}

#[tokio::test]
async fn a_stale_timestamp_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-stale", |_| {}).await;
    let encrypt = r
        .crypt
        .encrypt(ticket_xml(COMPONENT, now_s(), "t").as_bytes());
    for ts in [now_s() - 301, now_s() + 400] {
        assert_refused(&r, 400, "stale_timestamp", || {
            r.send_encrypt_at(&encrypt, ts, "77")
        })
        .await;
    }
    r.stop().await;
}

#[tokio::test]
async fn a_message_for_another_appid_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-appid", |_| {}).await;
    let other = MsgCrypt::new(
        CallbackPush::TOKEN.into(),
        CallbackPush::AES_KEY,
        "wx00000000000000c1",
    )
    .unwrap();
    let encrypt = other.encrypt(ticket_xml("wx00000000000000c1", now_s(), "t").as_bytes());
    assert_refused(&r, 403, "wrong_appid", || r.send_encrypt(&encrypt)).await;
    r.stop().await;
}

#[tokio::test]
async fn bad_base64_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-base64", |_| {}).await;
    assert_refused(&r, 400, "bad_base64", || {
        r.send_encrypt("not*base64*at*all")
    })
    .await;
    r.stop().await;
}

#[tokio::test]
async fn bad_padding_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-padding", |_| {}).await;
    // Encrypted under another key: under the receiver's it decrypts to noise.
    let other = MsgCrypt::new(CallbackPush::TOKEN.into(), OTHER_KEY, COMPONENT).unwrap();
    let encrypt = other.encrypt_with(ticket_xml(COMPONENT, 1, "t").as_bytes(), [7; 16]);
    assert_refused(&r, 400, "bad_padding", || r.send_encrypt(&encrypt)).await;
    r.stop().await;
}

#[tokio::test]
async fn a_truncated_length_prefix_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-truncated", |_| {}).await;
    let encrypt = r
        .crypt
        .encrypt(ticket_xml(COMPONENT, now_s(), "t").as_bytes());
    // CBC: flipping a bit of ciphertext block 0 flips the same bit of plaintext block 1 (and
    // garbles block 0, the random prefix): the top bit of the length prefix, which then points
    // far past the end; the padding, in the last block, stays valid.
    let mut cipher = STANDARD.decode(&encrypt).unwrap();
    cipher[0] ^= 0x80;
    let tampered = STANDARD.encode(&cipher);
    assert_refused(&r, 400, "truncated", || r.send_encrypt(&tampered)).await;
    r.stop().await;
}

#[tokio::test]
async fn a_body_or_message_that_is_not_xml_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-notxml", |_| {}).await;
    let query = [
        ("timestamp", now_s().to_string()),
        ("nonce", "99".to_owned()),
        ("encrypt_type", "aes".to_owned()),
        ("msg_signature", "a".repeat(40)),
    ];
    assert_refused(&r, 400, "not_xml", || {
        r.post(&query, b"{\"Encrypt\":\"abc\"}".to_vec())
    })
    .await;
    // A correctly encrypted and signed message whose content is not XML.
    let encrypt = r.crypt.encrypt(b"this is <not xml");
    assert_refused(&r, 400, "bad_message", || r.send_encrypt(&encrypt)).await;
    r.stop().await;
}

#[tokio::test]
async fn a_query_without_its_parameters_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-query", |_| {}).await;
    let encrypt = r
        .crypt
        .encrypt(ticket_xml(COMPONENT, now_s(), "t").as_bytes());
    let ts = now_s().to_string();
    let sig = r.crypt.signature(&ts, "5", &encrypt);
    let body = envelope_xml(COMPONENT, &encrypt).into_bytes();
    let plain = [
        ("timestamp", ts.clone()),
        ("nonce", "5".to_owned()),
        ("msg_signature", sig.clone()),
    ];
    assert_refused(&r, 400, "bad_query", || r.post(&plain, body.clone())).await;
    let no_nonce = [
        ("timestamp", ts),
        ("encrypt_type", "aes".to_owned()),
        ("msg_signature", sig),
    ];
    assert_refused(&r, 400, "bad_query", || r.post(&no_nonce, body)).await;
    r.stop().await;
}

#[tokio::test]
async fn a_nonce_reused_by_another_push_is_refused_and_changes_nothing() {
    let r = Receiver::start("cb-nonce", |_| {}).await;
    let ts = now_s();
    let first = r
        .crypt
        .encrypt(ticket_xml(COMPONENT, ts, "ticket@@@a").as_bytes());
    assert_eq!(r.send_encrypt_at(&first, ts, "31337").await.0, 200);
    let second = r
        .crypt
        .encrypt(ticket_xml(COMPONENT, ts + 1, "ticket@@@b").as_bytes());
    assert_refused(&r, 409, "nonce_reused", || {
        r.send_encrypt_at(&second, ts, "31337")
    })
    .await;
    assert_eq!(ticket_hash(r.queue()).await["ticket"], "ticket@@@a");
    r.stop().await;
}

#[tokio::test]
async fn a_10_mb_body_is_refused_before_it_is_read() {
    let r = Receiver::start("cb-large", |_| {}).await;
    let addr = r
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/wechat/callback")
        .to_owned();
    let send = move || async move {
        tokio::task::spawn_blocking(move || {
            let mut tcp = TcpStream::connect(&addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let head = format!(
                "POST /wechat/callback?timestamp=1&nonce=1&encrypt_type=aes&msg_signature={} \
                 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                "0".repeat(40),
                10 * 1024 * 1024
            );
            tcp.write_all(head.as_bytes()).unwrap();
            // None of the 10 MB is sent: an answer can only come if the server refuses without
            // waiting for the body. (Bytes the server never reads would make its close a reset,
            // which could drop the answer before this side reads it.)
            let mut answer = vec![0; 4096];
            let n = tcp
                .read(&mut answer)
                .expect("an answer before the body is sent");
            let text = String::from_utf8_lossy(&answer[..n]).into_owned();
            let status: u16 = text[9..12].parse().unwrap();
            let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
            (status, body)
        })
        .await
        .unwrap()
    };
    assert_refused(&r, 413, "too_large", send).await;
    r.stop().await;
}

/// The crypto against an independent implementation: Python's `cryptography` package encrypts
/// with the EncodingAESKey and envshare decrypts, and the other way round.
#[test]
fn the_crypto_round_trips_with_pythons_cryptography_package() {
    const SCRIPT: &str = r#"
import base64, hashlib, struct, sys
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
mode, key_b64, appid, text = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
key = base64.b64decode(key_b64 + "=")
cipher = Cipher(algorithms.AES(key), modes.CBC(key[:16]))
if mode == "encrypt":
    msg = text.encode()
    plain = b"0123456789abcdef" + struct.pack(">I", len(msg)) + msg + appid.encode()
    pad = 32 - len(plain) % 32
    plain += bytes([pad]) * pad
    e = cipher.encryptor()
    print(base64.b64encode(e.update(plain) + e.finalize()).decode())
else:
    d = cipher.decryptor()
    plain = d.update(base64.b64decode(text)) + d.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad, "padding"
    plain = plain[:-pad]
    n = struct.unpack(">I", plain[16:20])[0]
    assert plain[20 + n:].decode() == appid, "appid"
    print(plain[20:20 + n].decode())
"#;
    let python = |args: &[&str]| -> String {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(SCRIPT)
            .args(args)
            .output()
            .expect("python3 runs (install python3 and its `cryptography` package)");
        assert!(
            out.status.success(),
            "python3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
    };
    let crypt =
        MsgCrypt::new(CallbackPush::TOKEN.into(), CallbackPush::AES_KEY, COMPONENT).unwrap();
    for xml in [
        ticket_xml(COMPONENT, 1_764_745_200, "ticket@@@python"),
        authorization_xml(COMPONENT, 1, "authorized", "wx0123456789abcdef"),
        // 12 bytes of header and appid short of a block: the padding is a whole 32 bytes.
        "x".repeat(32 * 3 - 20 - COMPONENT.len()),
        "微信 ✓".to_owned(),
    ] {
        let from_python = python(&["encrypt", CallbackPush::AES_KEY, COMPONENT, &xml]);
        assert_eq!(
            crypt
                .decrypt(&from_python)
                .expect("envshare decrypts Python's"),
            xml.as_bytes()
        );
        let from_rust = crypt.encrypt(xml.as_bytes());
        assert_eq!(
            python(&["decrypt", CallbackPush::AES_KEY, COMPONENT, &from_rust]),
            xml
        );
    }
}

/// `envshare serve`, the real binary, on a free port; waits until `/healthz` answers.
async fn serve_binary(stack: &TestStack, extra: &[(&str, String)]) -> (ChildProcess, String) {
    let port = free_port();
    let mut env = vec![
        ("ENVSHARE_REDIS_URL", stack.settings.redis_url.clone()),
        ("ENVSHARE_QUEUE", stack.settings.queue.as_str().to_owned()),
        ("ENVSHARE_COMPONENT_APPID", COMPONENT.to_owned()),
        (
            "ENVSHARE_COMPONENT_APPSECRET",
            SandboxConfig::COMPONENT_SECRET.to_owned(),
        ),
        ("ENVSHARE_CALLBACK_TOKEN", CallbackPush::TOKEN.to_owned()),
        (
            "ENVSHARE_CALLBACK_AES_KEY",
            CallbackPush::AES_KEY.to_owned(),
        ),
        ("ENVSHARE_SERVE_ADDR", format!("127.0.0.1:{port}")),
    ];
    env.extend(extra.iter().cloned());
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
    stack.sandbox.configure(|c| {
        c.callback = Some(CallbackPush::new(format!("{base}/wechat/callback"), None))
    });
    (child, base)
}

/// `envshare-worker`, the real binary, in component token mode against the sandbox.
fn worker_binary(stack: &TestStack, extra: &[(&str, String)]) -> ChildProcess {
    let mut env = vec![
        ("ENVSHARE_REDIS_URL", stack.settings.redis_url.clone()),
        ("ENVSHARE_QUEUE", stack.settings.queue.as_str().to_owned()),
        ("ENVSHARE_WECHAT_BASE_URL", stack.sandbox.url().to_owned()),
        ("ENVSHARE_COMPONENT_APPID", COMPONENT.to_owned()),
        (
            "ENVSHARE_COMPONENT_APPSECRET",
            SandboxConfig::COMPONENT_SECRET.to_owned(),
        ),
        ("ENVSHARE_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
        ("ENVSHARE_BACKOFF_BASE_MS", "20".to_owned()),
        ("ENVSHARE_BACKOFF_MAX_MS", "100".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    ChildProcess::spawn(&bin_path("envshare-worker"), &[], &env)
}

async fn stop(mut child: ChildProcess) -> (String, String) {
    child.sigterm();
    let status = child.wait_exit(Duration::from_secs(15)).await;
    let output = child.output();
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        output.1
    );
    output
}

#[tokio::test]
async fn a_ticket_pushed_through_envshare_serve_lets_a_component_worker_share() {
    let stack =
        TestStack::start("cb-bin-ticket", SandboxConfig::default(), callback_settings).await;
    let (serve, _) = serve_binary(&stack, &[]).await;
    let answer = stack.sandbox.push_ticket().await.unwrap();
    assert!(answer.is_success(), "{answer:?}");

    let worker = worker_binary(&stack, &[]);
    let a = appid(7101);
    stack.enqueue("cb-env", &[vec![a.clone()]]).await;
    let events = stack.share_events(1, Duration::from_secs(20)).await;
    assert!(
        matches!(&events[0], EventKind::ShareAccepted { appid, .. } if *appid == a),
        "{events:?}"
    );
    assert_eq!(
        stack.sandbox.token_fetches(),
        1,
        "the token was fetched with the pushed ticket"
    );
    stop(worker).await;
    let (_, log) = stop(serve).await;
    assert!(log.contains("verify ticket stored"), "{log}");
    assert!(
        !log.contains("ticket@@@"),
        "the ticket is never logged: {log}"
    );
}

#[tokio::test]
async fn a_ticket_pause_ends_by_itself_when_the_next_push_arrives() {
    let stack = TestStack::start("cb-bin-pause", SandboxConfig::default(), callback_settings).await;
    let (serve, _) = serve_binary(&stack, &[]).await;
    // A ticket WeChat no longer accepts: the worker's token fetch gets 61005 and pauses the
    // queue; the re-check is far away, so only a new ticket can end the pause in time.
    stack.set_ticket("ticket@@@expired").await;
    let worker = worker_binary(
        &stack,
        &[("ENVSHARE_TOKEN_RECHECK_MS", "600000".to_owned())],
    );
    let a = appid(7102);
    stack.enqueue("cb-env", &[vec![a.clone()]]).await;
    // The token fetch gets 61005: the worker pauses the queue and asks WeChat to push a ticket
    // (api_start_push_ticket, once per 10 minutes across workers). The sandbox pushes one
    // through `envshare serve`, which stores it and lifts the pause: the share goes through
    // with nobody storing a ticket by hand.
    let events = stack.share_events(1, Duration::from_secs(20)).await;
    assert!(
        matches!(&events[0], EventKind::ShareAccepted { appid, .. } if *appid == a),
        "{events:?}"
    );
    assert!(stack.stats().await.paused.is_none());
    assert_eq!(
        stack.sandbox.calls(Endpoint::StartPushTicket),
        1,
        "the worker asked for the push once"
    );
    assert_eq!(stack.sandbox.tickets_pushed(), 1);
    stop(worker).await;
    stop(serve).await;
}

#[tokio::test]
async fn an_authorization_with_auto_share_leads_to_share_accepted_for_that_appid() {
    let stack = TestStack::start("cb-bin-auth", SandboxConfig::default(), callback_settings).await;
    let (serve, _) = serve_binary(
        &stack,
        &[(
            "ENVSHARE_AUTO_SHARE_ENVS",
            "auto-env-a,auto-env-b".to_owned(),
        )],
    )
    .await;
    assert!(stack.sandbox.push_ticket().await.unwrap().is_success());
    let worker = worker_binary(&stack, &[]);
    let a = appid(7103);
    let answer = stack
        .sandbox
        .send_authorization(AuthorizationChange::Authorized, a.as_str())
        .await
        .unwrap();
    assert!(answer.is_success(), "{answer:?}");
    let events = stack.share_events(2, Duration::from_secs(20)).await;
    let mut envs: Vec<String> = events
        .iter()
        .map(|e| match e {
            EventKind::ShareAccepted {
                appid,
                env,
                batch_id,
                ..
            } => {
                assert_eq!(*appid, a);
                assert!(batch_id.as_str().starts_with("auto-"), "{batch_id}");
                env.to_string()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    envs.sort();
    assert_eq!(envs, ["auto-env-a", "auto-env-b"]);
    assert!(
        stack
            .events()
            .await
            .iter()
            .any(|e| matches!(e, EventKind::AppAuthorized { appid } if *appid == a))
    );
    stop(worker).await;
    stop(serve).await;
}

#[tokio::test]
async fn envshare_serve_refuses_an_open_address_without_a_token_and_a_bad_key_at_start() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(bin_path("envshare"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ENVSHARE_REDIS_URL", "redis://127.0.0.1:1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("envshare runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["serve", "--addr", "0.0.0.0:0"], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ENVSHARE_API_TOKEN") && err.contains("0.0.0.0:0"),
        "{err}"
    );

    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    let (code, err) = run(
        &["serve"],
        &[
            ("ENVSHARE_CALLBACK_TOKEN", "cb-token-secret"),
            ("ENVSHARE_CALLBACK_AES_KEY", key),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("ENVSHARE_CALLBACK_AES_KEY") && err.contains("43"),
        "{err}"
    );
    assert!(
        !err.contains(key) && !err.contains("cb-token-secret"),
        "{err}"
    );
}
