//! The WeChat client against the sandbox, over real HTTP: every row of the errcode table, the
//! wire format, every transport failure, tokens, quota and bindings.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envshare::sandbox::{AppidRule, Fault, Latency, Sandbox, SandboxConfig, SandboxHandle};
use envshare::wechat::{Endpoint, ErrorClass, MAX_RESPONSE_BYTES, WechatClient, WechatError};
use envshare::{AppId, EnvId};
use envshare_tests::appid;
use secrecy::SecretString;

/// A recognisable fixed token: the leak tests search for it.
const TOKEN: &str = "tok-LEAKCHECK-5f1e9a7c";

async fn sandbox_with(config: SandboxConfig) -> SandboxHandle {
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        ..config
    };
    Sandbox::start(config).await.expect("sandbox starts")
}

async fn sandbox() -> SandboxHandle {
    sandbox_with(SandboxConfig::default()).await
}

fn client(s: &SandboxHandle) -> WechatClient {
    WechatClient::new(s.url(), Duration::from_secs(5)).expect("client builds")
}

fn token() -> SecretString {
    SecretString::from(TOKEN)
}

fn env(name: &str) -> EnvId {
    EnvId::parse(name).unwrap()
}

fn bad_appid(n: u64) -> AppId {
    AppId::parse(&format!("wx{n:013x}bad")).unwrap()
}

/// Scripts `fault` on the next share call and returns the client's error.
async fn share_error(s: &SandboxHandle, c: &WechatClient, fault: Fault) -> WechatError {
    s.script(Endpoint::ShareEnv, [Some(fault)]);
    c.share_env(&token(), &env("e1"), &[appid(1)])
        .await
        .expect_err("the scripted fault fails the call")
}

async fn assert_errcodes_classify_as(codes: &[i64], class: ErrorClass) {
    let s = sandbox().await;
    let c = client(&s);
    for &code in codes {
        let e = share_error(&s, &c, Fault::Errcode(code)).await;
        assert!(
            matches!(e, WechatError::Api { endpoint: Endpoint::ShareEnv, errcode, .. } if errcode == code),
            "{code}: {e:?}"
        );
        assert_eq!(e.class(), class, "{code}");
        assert!(
            !e.outcome_unknown(),
            "WeChat answered {code}: the outcome is known"
        );
    }
    // The faults were answered before processing: nothing was bound.
    assert!(s.bindings().is_empty());
}

// ---- errcode table, one test per row, through the client ----

#[tokio::test]
async fn errcode_zero_accepts_every_appid_with_a_confirmation_url() {
    let s = sandbox().await;
    let c = client(&s);
    let appids = [appid(1), appid(2)];
    let answer = c
        .share_env(&token(), &env("prod-1"), &appids)
        .await
        .unwrap();
    assert!(answer.err_list.is_empty(), "absent err_list is empty");
    assert_eq!(answer.msg_info_list.len(), 2);
    for a in &appids {
        assert_eq!(
            answer.confirm_url(a.as_str()),
            Some(format!("{}/confirm/prod-1/{a}", s.url()).as_str())
        );
    }
    assert_eq!(s.share_calls_for(appid(1).as_str()), 1);
    assert_eq!(s.calls(Endpoint::ShareEnv), 1);
}

#[tokio::test]
async fn system_busy_and_system_error_are_transient() {
    assert_errcodes_classify_as(&[-1, -1000], ErrorClass::Transient).await;
}

#[tokio::test]
async fn token_errcodes_are_token_errors() {
    assert_errcodes_classify_as(&[40014, 42001, 40001, 41001], ErrorClass::Token).await;
}

#[tokio::test]
async fn listed_permanent_errcodes_are_permanent() {
    assert_errcodes_classify_as(
        &[40097, 40101, 43002, 44002, 47001, 85088],
        ErrorClass::Permanent,
    )
    .await;
}

#[tokio::test]
async fn quota_spent_is_a_quota_error() {
    assert_errcodes_classify_as(&[45009], ErrorClass::Quota).await;
}

#[tokio::test]
async fn an_unknown_errcode_is_permanent() {
    assert_errcodes_classify_as(&[12345, 61005], ErrorClass::Permanent).await;
}

// ---- wire format ----

#[tokio::test]
async fn refused_appids_come_back_in_err_list_and_the_rest_are_accepted() {
    let s = sandbox_with(SandboxConfig {
        rejected_appids: [appid(7).to_string()].into(),
        reject_if: Some(AppidRule::suffix("bad")),
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&s);
    let appids = [appid(1), appid(7), bad_appid(3)];
    let answer = c.share_env(&token(), &env("e1"), &appids).await.unwrap();
    let refused: Vec<&str> = answer.err_list.iter().map(|e| e.appid.as_str()).collect();
    assert_eq!(refused, [appid(7).as_str(), bad_appid(3).as_str()]);
    assert!(
        answer
            .err_list
            .iter()
            .all(|e| e.env == "e1" && !e.errmsg.is_empty())
    );
    assert_eq!(answer.msg_info_list.len(), 1);
    assert!(answer.confirm_url(appid(1).as_str()).is_some());
    assert!(answer.error_for(appid(1).as_str()).is_none());
}

#[tokio::test]
async fn absent_lists_and_unknown_fields_are_accepted() {
    // Every sandbox answer carries an undocumented `sandbox_request_id` and leaves out empty
    // lists; an all-refused share has no msg_info_list, a getenvid of unknown appids no err_list.
    let s = sandbox_with(SandboxConfig {
        reject_if: Some(AppidRule::suffix("bad")),
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&s);
    let answer = c
        .share_env(&token(), &env("e1"), &[bad_appid(1)])
        .await
        .unwrap();
    assert!(answer.msg_info_list.is_empty());
    assert_eq!(answer.err_list.len(), 1);
    let ids = c.get_env_ids(&token(), &[appid(9)]).await.unwrap();
    assert!(ids.err_list.is_empty());
    assert_eq!(ids.relation_data.len(), 1);
    assert!(ids.envs_of(appid(9).as_str()).is_empty());
}

#[tokio::test]
async fn bindings_show_in_batchgetenvid_only_once_confirmed_and_unshare_removes_them() {
    let s = sandbox().await;
    let c = client(&s);
    let (a, b) = (appid(1), appid(2));
    c.share_env(&token(), &env("e1"), &[a.clone(), b.clone()])
        .await
        .unwrap();
    let ids = c
        .get_env_ids(&token(), &[a.clone(), b.clone()])
        .await
        .unwrap();
    assert!(
        ids.envs_of(a.as_str()).is_empty() && ids.envs_of(b.as_str()).is_empty(),
        "pending bindings are not listed"
    );
    assert!(s.bindings().iter().all(|b| !b.confirmed));

    assert!(s.confirm("e1", a.as_str()));
    assert!(
        !s.confirm("e1", appid(3).as_str()),
        "no binding, nothing to confirm"
    );
    let ids = c
        .get_env_ids(&token(), &[a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(ids.envs_of(a.as_str()), ["e1"]);
    assert!(ids.envs_of(b.as_str()).is_empty());

    assert_eq!(s.confirm_all(), 1);
    let ids = c
        .get_env_ids(&token(), std::slice::from_ref(&b))
        .await
        .unwrap();
    assert_eq!(ids.envs_of(b.as_str()), ["e1"]);

    let undone = c
        .unshare_env(&token(), &env("e1"), std::slice::from_ref(&a))
        .await
        .unwrap();
    assert!(undone.err_list.is_empty());
    let ids = c
        .get_env_ids(&token(), &[a.clone(), b.clone()])
        .await
        .unwrap();
    assert!(ids.envs_of(a.as_str()).is_empty());
    assert_eq!(ids.envs_of(b.as_str()), ["e1"]);
    assert_eq!(s.calls(Endpoint::GetEnvIds), 4);
    assert_eq!(s.calls(Endpoint::UnshareEnv), 1);
}

#[tokio::test]
async fn the_share_log_records_env_appids_and_time_of_each_call() {
    let s = sandbox().await;
    let c = client(&s);
    let before = std::time::SystemTime::now();
    c.share_env(&token(), &env("e1"), &[appid(1), appid(2)])
        .await
        .unwrap();
    c.share_env(&token(), &env("e2"), &[appid(1)])
        .await
        .unwrap();
    let log = s.share_log();
    assert_eq!(log.len(), 2);
    assert_eq!((log[0].env.as_str(), log[0].appids.len()), ("e1", 2));
    assert_eq!(
        (log[1].env.as_str(), log[1].appids.as_slice()),
        ("e2", [appid(1).to_string()].as_slice())
    );
    assert!(log[0].at >= before);
    assert_eq!(s.share_calls_for(appid(1).as_str()), 2);
}

// ---- transport failures ----

#[tokio::test]
async fn an_http_5xx_is_transient_and_may_have_been_applied() {
    let s = sandbox().await;
    let c = client(&s);
    let e = share_error(&s, &c, Fault::HttpStatus(503)).await;
    assert!(
        matches!(e, WechatError::HttpStatus { status: 503, .. }),
        "{e:?}"
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(e.outcome_unknown());
    let e = share_error(&s, &c, Fault::HttpStatus(404)).await;
    assert!(
        matches!(e, WechatError::HttpStatus { status: 404, .. }),
        "{e:?}"
    );
    assert!(!e.outcome_unknown(), "a 4xx was refused at the door");
}

#[tokio::test]
async fn a_hang_longer_than_the_client_timeout_is_a_timeout_with_unknown_outcome() {
    let s = sandbox().await;
    let c = WechatClient::new(s.url(), Duration::from_millis(300)).unwrap();
    let started = Instant::now();
    let e = share_error(&s, &c, Fault::Hang).await;
    assert!(matches!(e, WechatError::Timeout { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "gave up after {:?}",
        started.elapsed()
    );
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(e.outcome_unknown());
    // The sandbox did process it: exactly the case where a retry duplicates a share.
    assert_eq!(s.share_calls_for(appid(1).as_str()), 1);
}

#[tokio::test]
async fn malformed_json_is_an_unparsable_body() {
    let s = sandbox().await;
    let c = client(&s);
    let e = share_error(&s, &c, Fault::MalformedJson).await;
    assert!(matches!(e, WechatError::Decode { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn an_oversized_body_is_rejected_without_reading_it_all() {
    // The sandbox streams an endless body without Content-Length: a client that buffered it
    // would run into its 30 s timeout instead of returning TooLarge.
    let s = sandbox().await;
    let c = WechatClient::new(s.url(), Duration::from_secs(30)).unwrap();
    let started = Instant::now();
    let e = share_error(&s, &c, Fault::OversizedBody).await;
    assert!(
        matches!(e, WechatError::TooLarge { limit, .. } if limit == MAX_RESPONSE_BYTES),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(e.class(), ErrorClass::Transient);
}

#[tokio::test]
async fn a_connection_reset_mid_response_is_a_body_error_with_unknown_outcome() {
    let s = sandbox().await;
    let c = client(&s);
    let e = share_error(&s, &c, Fault::Reset).await;
    assert!(matches!(e, WechatError::Body { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(e.outcome_unknown());
}

#[tokio::test]
async fn a_refused_connection_is_a_connect_error_that_never_reached_wechat() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = WechatClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
    let e = c
        .share_env(&token(), &env("e1"), &[appid(1)])
        .await
        .unwrap_err();
    assert!(matches!(e, WechatError::Connect { .. }), "{e:?}");
    assert_eq!(e.class(), ErrorClass::Transient);
    assert!(!e.outcome_unknown());
}

#[tokio::test]
async fn the_access_token_never_appears_in_any_error() {
    let s = sandbox().await;
    let c = WechatClient::new(s.url(), Duration::from_millis(300)).unwrap();
    let mut errors = Vec::new();
    for fault in [
        Fault::Hang,
        Fault::HttpStatus(502),
        Fault::Reset,
        Fault::MalformedJson,
        Fault::OversizedBody,
    ] {
        errors.push(share_error(&s, &c, fault).await);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed =
        WechatClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
    errors.push(
        closed
            .share_env(&token(), &env("e1"), &[appid(1)])
            .await
            .unwrap_err(),
    );
    errors.push(closed.get_env_ids(&token(), &[appid(1)]).await.unwrap_err());

    let kinds: Vec<&str> = errors.iter().map(variant).collect();
    assert_eq!(
        kinds,
        [
            "Timeout",
            "HttpStatus",
            "Body",
            "Decode",
            "TooLarge",
            "Connect",
            "Connect"
        ]
    );
    for e in &errors {
        let mut texts = vec![e.to_string(), format!("{e:?}"), format!("{e:#?}")];
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            texts.push(cause.to_string());
            texts.push(format!("{cause:?}"));
            source = cause.source();
        }
        for text in texts {
            assert!(!text.contains(TOKEN), "token leaked in {text}");
            assert!(!text.contains("access_token="), "URL leaked in {text}");
        }
    }
}

fn variant(e: &WechatError) -> &'static str {
    match e {
        WechatError::Api { .. } => "Api",
        WechatError::HttpStatus { .. } => "HttpStatus",
        WechatError::Timeout { .. } => "Timeout",
        WechatError::Connect { .. } => "Connect",
        WechatError::Send { .. } => "Send",
        WechatError::Body { .. } => "Body",
        WechatError::Decode { .. } => "Decode",
        WechatError::TooLarge { .. } => "TooLarge",
    }
}

// ---- sandbox scripting ----

#[tokio::test]
async fn scripted_faults_are_consumed_one_call_at_a_time() {
    let s = sandbox().await;
    let c = client(&s);
    s.script(
        Endpoint::ShareEnv,
        [Some(Fault::BUSY), None, Some(Fault::HttpStatus(500))],
    );
    let (t, e1, a) = (token(), env("e1"), [appid(1)]);
    let share = || c.share_env(&t, &e1, &a);
    assert_eq!(share().await.unwrap_err().errcode(), Some(-1));
    assert!(share().await.is_ok());
    assert!(matches!(
        share().await.unwrap_err(),
        WechatError::HttpStatus { status: 500, .. }
    ));
    assert!(share().await.is_ok(), "the script is used up");
    assert_eq!(s.calls(Endpoint::ShareEnv), 4);
}

#[tokio::test]
async fn random_faults_follow_their_probability_and_can_be_changed_mid_run() {
    let s = sandbox_with(SandboxConfig {
        random_faults: vec![(Fault::BUSY, 1.0)],
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&s);
    for _ in 0..5 {
        let e = c
            .share_env(&token(), &env("e1"), &[appid(1)])
            .await
            .unwrap_err();
        assert_eq!(e.errcode(), Some(-1));
    }
    // Random faults hit the componenttcb endpoints only, never the quota endpoint.
    assert!(
        c.quota(&token(), "/componenttcb/batchshareenv")
            .await
            .is_ok()
    );
    s.configure(|cfg| cfg.random_faults = vec![(Fault::BUSY, 0.0)]);
    for _ in 0..5 {
        c.share_env(&token(), &env("e1"), &[appid(1)])
            .await
            .unwrap();
    }
}

// ---- tokens ----

fn component_secret() -> SecretString {
    SecretString::from(SandboxConfig::COMPONENT_SECRET)
}

fn ticket() -> SecretString {
    SecretString::from(SandboxConfig::VERIFY_TICKET)
}

async fn fetch_token(c: &WechatClient) -> Result<SecretString, WechatError> {
    Ok(c.component_token(
        SandboxConfig::COMPONENT_APPID,
        &component_secret(),
        &ticket(),
    )
    .await?
    .token)
}

#[tokio::test]
async fn a_new_component_token_invalidates_the_previous_one() {
    let s = sandbox().await;
    let c = client(&s);
    let fetched = c
        .component_token(
            SandboxConfig::COMPONENT_APPID,
            &component_secret(),
            &ticket(),
        )
        .await
        .unwrap();
    assert_eq!(fetched.expires_in, Duration::from_secs(7200));
    assert!(
        !format!("{fetched:?}").contains("sandbox-token"),
        "Debug redacts the token"
    );
    let first = fetched.token;
    c.share_env(&first, &env("e1"), &[appid(1)]).await.unwrap();

    let second = fetch_token(&c).await.unwrap();
    let e = c
        .share_env(&first, &env("e1"), &[appid(1)])
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(40014));
    assert_eq!(e.class(), ErrorClass::Token);
    c.share_env(&second, &env("e1"), &[appid(1)]).await.unwrap();
    assert_eq!(s.token_fetches(), 2);
    assert_eq!(s.calls(Endpoint::ComponentToken), 2);
}

#[tokio::test]
async fn an_issued_token_expires_after_its_call_budget() {
    let s = sandbox_with(SandboxConfig {
        token_max_calls: Some(2),
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&s);
    let t = fetch_token(&c).await.unwrap();
    c.share_env(&t, &env("e1"), &[appid(1)]).await.unwrap();
    c.get_env_ids(&t, &[appid(1)]).await.unwrap();
    let e = c.share_env(&t, &env("e1"), &[appid(1)]).await.unwrap_err();
    assert_eq!(e.errcode(), Some(42001));
    assert_eq!(e.class(), ErrorClass::Token);
    let fresh = fetch_token(&c).await.unwrap();
    c.share_env(&fresh, &env("e1"), &[appid(1)]).await.unwrap();
}

#[tokio::test]
async fn an_issued_token_expires_after_its_lifetime() {
    let s = sandbox_with(SandboxConfig {
        token_ttl: Duration::from_millis(200),
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&s);
    let t = fetch_token(&c).await.unwrap();
    c.share_env(&t, &env("e1"), &[appid(1)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    let e = c.share_env(&t, &env("e1"), &[appid(1)]).await.unwrap_err();
    assert_eq!(e.errcode(), Some(42001));
}

#[tokio::test]
async fn expire_tokens_expires_issued_tokens_but_not_static_ones() {
    let s = sandbox().await;
    let c = client(&s);
    let issued = fetch_token(&c).await.unwrap();
    s.expire_tokens();
    assert_eq!(
        c.share_env(&issued, &env("e1"), &[appid(1)])
            .await
            .unwrap_err()
            .errcode(),
        Some(42001)
    );
    c.share_env(&token(), &env("e1"), &[appid(1)])
        .await
        .unwrap();
    let unknown = SecretString::from("never-issued");
    assert_eq!(
        c.share_env(&unknown, &env("e1"), &[appid(1)])
            .await
            .unwrap_err()
            .errcode(),
        Some(40001)
    );
}

#[tokio::test]
async fn the_token_fetch_checks_ticket_secret_and_appid() {
    let s = sandbox().await;
    let c = client(&s);
    let appid = SandboxConfig::COMPONENT_APPID;
    let wrong = SecretString::from("wrong");
    let empty = SecretString::from("");

    let e = c
        .component_token(appid, &component_secret(), &wrong)
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(61005));
    assert!(
        e.is_token_config_error(),
        "an expired ticket needs an operator, not a retry loop"
    );
    let e = c
        .component_token(appid, &wrong, &ticket())
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(40125));
    assert!(e.is_token_config_error());
    assert!(!e.to_string().contains("wrong"), "the secret is not echoed");
    let e = c
        .component_token(appid, &empty, &ticket())
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(41004));
    assert!(e.is_token_config_error());
    let e = c
        .component_token("wx0000000000000001", &component_secret(), &ticket())
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(40013));

    // WeChat pushes a new ticket: the old one stops working, the new one works.
    s.configure(|cfg| cfg.verify_ticket = "ticket-2".into());
    assert_eq!(fetch_token(&c).await.unwrap_err().errcode(), Some(61005));
    c.component_token(appid, &component_secret(), &SecretString::from("ticket-2"))
        .await
        .unwrap();
    assert_eq!(s.token_fetches(), 1);
    assert_eq!(s.calls(Endpoint::ComponentToken), 6);
}

#[tokio::test]
async fn an_ip_whitelist_refusal_is_a_token_config_error() {
    let s = sandbox().await;
    let c = client(&s);
    s.script(Endpoint::ComponentToken, [Some(Fault::Errcode(61004))]);
    let e = fetch_token(&c).await.unwrap_err();
    assert!(e.is_token_config_error(), "{e}");
    assert!(fetch_token(&c).await.is_ok());
}

// ---- quota ----

#[tokio::test]
async fn calls_fail_with_45009_once_the_daily_quota_is_spent_until_it_resets() {
    let s = sandbox_with(SandboxConfig {
        daily_quota: Some(2),
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&s);
    c.share_env(&token(), &env("e1"), &[appid(1)])
        .await
        .unwrap();
    c.get_env_ids(&token(), &[appid(1)]).await.unwrap();
    let e = c
        .share_env(&token(), &env("e1"), &[appid(2)])
        .await
        .unwrap_err();
    assert_eq!(e.errcode(), Some(45009));
    assert_eq!(e.class(), ErrorClass::Quota);
    let quota = c
        .quota(&token(), "/componenttcb/batchshareenv")
        .await
        .unwrap()
        .quota;
    assert_eq!((quota.daily_limit, quota.used, quota.remain), (2, 2, 0));
    assert_eq!(
        s.share_calls_for(appid(2).as_str()),
        0,
        "a refused call is not processed"
    );

    s.reset_quota();
    c.share_env(&token(), &env("e1"), &[appid(2)])
        .await
        .unwrap();
    s.configure(|cfg| cfg.daily_quota = None);
    for _ in 0..3 {
        c.share_env(&token(), &env("e1"), &[appid(3)])
            .await
            .unwrap();
    }
}

// ---- throughput ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_answers_thousands_of_concurrent_calls() {
    let s = Arc::new(sandbox().await);
    let c = client(&s);
    let calls: u64 = 4000;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32u64 {
        let c = c.clone();
        tasks.spawn(async move {
            for i in 0..calls / 32 {
                c.share_env(&token(), &env("bench"), &[appid(worker * 1_000_000 + i)])
                    .await
                    .unwrap();
            }
        });
    }
    tasks.join_all().await;
    let rate = calls as f64 / started.elapsed().as_secs_f64();
    eprintln!(
        "sandbox: {calls} share calls in {:?} ({rate:.0}/s)",
        started.elapsed()
    );
    assert_eq!(s.calls(Endpoint::ShareEnv), calls);
    assert_eq!(s.bindings().len() as u64, calls);
    assert!(rate > 500.0, "only {rate:.0} calls/s");
}

// ---- sandbox lifecycle, latency, confirmation link ----

#[tokio::test]
async fn fixed_latency_delays_every_answer() {
    let s = sandbox_with(SandboxConfig {
        latency: Latency::Fixed(Duration::from_millis(150)),
        ..SandboxConfig::default()
    })
    .await;
    let c = client(&s);
    let started = Instant::now();
    c.share_env(&token(), &env("e1"), &[appid(1)])
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    s.configure(|cfg| cfg.latency = Latency::None);
    let started = Instant::now();
    c.share_env(&token(), &env("e1"), &[appid(1)])
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn opening_the_confirmation_url_confirms_the_binding() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let s = sandbox().await;
    let c = client(&s);
    let answer = c
        .share_env(&token(), &env("e1"), &[appid(5)])
        .await
        .unwrap();
    let url = answer.confirm_url(appid(5).as_str()).unwrap().to_owned();
    let path = url
        .strip_prefix(s.url())
        .expect("the link points at the sandbox");
    let mut conn = tokio::net::TcpStream::connect(s.addr()).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let ids = c.get_env_ids(&token(), &[appid(5)]).await.unwrap();
    assert_eq!(ids.envs_of(appid(5).as_str()), ["e1"]);
}

#[tokio::test]
async fn a_shut_down_sandbox_refuses_connections_even_with_a_request_hanging() {
    let s = sandbox().await;
    let c = client(&s);
    let url = s.url().to_owned();
    s.script(Endpoint::ShareEnv, [Some(Fault::Hang)]);
    let hung = tokio::spawn({
        let c = c.clone();
        async move { c.share_env(&token(), &env("e1"), &[appid(1)]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    s.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?}",
        started.elapsed()
    );
    assert!(
        hung.await.unwrap().is_err(),
        "the hung request ends with an error"
    );
    let after = WechatClient::new(&url, Duration::from_secs(1)).unwrap();
    let e = after
        .share_env(&token(), &env("e1"), &[appid(1)])
        .await
        .unwrap_err();
    assert!(matches!(e, WechatError::Connect { .. }), "{e:?}");
}
