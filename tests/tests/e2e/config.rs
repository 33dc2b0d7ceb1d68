//! Tests of the Redis test harness itself, and of loading settings from a file.

use std::collections::HashSet;
use std::time::Duration;

use envshare_tests::{TestRedis, free_port, unique_queue, wait_until};
use redis::AsyncCommands;

fn key(queue: &envshare::QueueName, name: &str) -> String {
    // Harness tests write plain keys under their own queue name, never a real queue key.
    format!("envshare-test:{{{queue}}}:{name}")
}

#[tokio::test]
async fn the_shared_redis_answers_and_keeps_what_is_written() {
    let redis = TestRedis::shared();
    let mut conn = redis.conn().await;
    let k = key(&unique_queue("harness"), "k");
    let _: () = conn.set_ex(&k, "v", 60).await.unwrap();
    let got: String = conn.get(&k).await.unwrap();
    assert_eq!(got, "v");
    assert!(redis.url().ends_with(&format!(":{}", redis.port())));
}

#[test]
fn the_shared_redis_outlives_the_runtime_that_first_used_it() {
    let k = key(&unique_queue("runtimes"), "k");
    for round in 0..3 {
        // A fresh runtime each round, as every #[tokio::test] has.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let n: i64 = rt.block_on(async {
            let mut conn = TestRedis::shared().conn().await;
            let n: i64 = conn.incr(&k, 1).await.unwrap();
            let _: () = conn.expire(&k, 60).await.unwrap();
            n
        });
        assert_eq!(n, round + 1);
    }
}

#[tokio::test]
async fn a_private_redis_keeps_acknowledged_writes_across_a_kill_and_restart() {
    let redis = TestRedis::private();
    let port = redis.port();
    let mut conn = redis.conn().await;
    for i in 0..100 {
        let _: () = conn.rpush("list", i).await.unwrap();
    }

    redis.kill();
    assert!(!redis.is_up(), "a killed server must not answer");
    assert!(
        conn.get::<_, Option<String>>("list").await.is_err(),
        "a command to a killed server must fail"
    );

    redis.restart();
    assert_eq!(redis.port(), port, "restart must keep the port");
    let mut conn = redis.conn().await;
    let len: usize = conn.llen("list").await.unwrap();
    assert_eq!(len, 100, "AOF must bring back every acknowledged write");
}

#[tokio::test]
async fn a_stopped_private_redis_comes_back_on_restart_with_its_data() {
    let redis = TestRedis::private();
    let mut conn = redis.conn().await;
    let _: () = conn.set("k", "before stop").await.unwrap();

    redis.stop();
    assert!(!redis.is_up());

    redis.restart();
    let mut conn = redis.conn().await;
    let got: String = conn.get("k").await.unwrap();
    assert_eq!(got, "before stop");
}

#[tokio::test]
async fn a_connection_manager_reconnects_after_a_restart() {
    let redis = TestRedis::private();
    let mut conn = redis.connection_manager().await;
    let _: () = conn.set("k", 1).await.unwrap();
    redis.kill();
    redis.restart();
    let reconnected = wait_until(Duration::from_secs(5), || {
        let mut conn = conn.clone();
        async move { conn.get::<_, i64>("k").await.is_ok_and(|v| v == 1) }
    })
    .await;
    assert!(reconnected, "ConnectionManager never reconnected");
}

#[test]
fn dropping_a_private_redis_kills_it_and_removes_its_directory() {
    let redis = TestRedis::private();
    let port = redis.port();
    let dir = redis.data_dir();
    assert!(redis.is_up());
    drop(redis);

    let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(
        !listening,
        "redis-server still listens on {port} after drop"
    );
    if let Some(dir) = dir {
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}

#[test]
fn private_redis_servers_get_different_ports() {
    let a = TestRedis::private();
    let b = TestRedis::private();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.port(), TestRedis::shared().port());
}

#[test]
fn unique_queue_names_differ_and_keep_their_prefix() {
    let names: Vec<_> = (0..1000).map(|_| unique_queue("same-prefix")).collect();
    let distinct: HashSet<_> = names.iter().map(|q| q.to_string()).collect();
    assert_eq!(distinct.len(), names.len());
    assert!(names.iter().all(|q| q.as_ref().starts_with("same-prefix-")));
}

#[test]
fn unique_queue_cuts_a_long_prefix_to_a_valid_name() {
    let q = unique_queue(&"p".repeat(200));
    assert!(
        q.as_ref().len() <= 64,
        "{q} is longer than a queue name may be"
    );
}

#[test]
#[should_panic(expected = "unique_queue")]
fn unique_queue_rejects_a_prefix_a_queue_name_cannot_hold() {
    let _ = unique_queue("has:colon");
}

#[test]
fn free_port_returns_a_port_that_can_be_bound() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port should be free");
}

#[tokio::test]
async fn wait_until_returns_true_once_the_condition_holds() {
    let start = std::time::Instant::now();
    let ok = wait_until(Duration::from_secs(5), || async move {
        start.elapsed() > Duration::from_millis(100)
    })
    .await;
    assert!(ok);
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn wait_until_gives_up_after_its_timeout() {
    let start = std::time::Instant::now();
    let ok = wait_until(Duration::from_millis(200), || async { false }).await;
    assert!(!ok);
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2));
}

#[test]
fn settings_load_reads_a_toml_file_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("envshare.toml");
    std::fs::write(&path, "chunk_size = 7\nquota_reset = \"06:15\"\n").unwrap();
    let s = envshare::config::Settings::load(Some(&path)).unwrap();
    if std::env::var_os("ENVSHARE_CHUNK_SIZE").is_none() {
        assert_eq!(s.chunk_size, 7);
    }
    if std::env::var_os("ENVSHARE_QUOTA_RESET").is_none() {
        assert_eq!(s.quota_reset.to_string(), "06:15");
    }
}

#[test]
fn settings_errors_name_the_file_they_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("typo.toml");
    std::fs::write(&path, "chunk_sise = 7\n").unwrap();
    let msg = envshare::config::Settings::load(Some(&path))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("typo.toml"), "{msg}");
    assert!(msg.contains("did you mean `chunk_size`?"), "{msg}");

    let missing = dir.path().join("missing.toml");
    let msg = envshare::config::Settings::load(Some(&missing))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("cannot read config file") && msg.contains("missing.toml"),
        "{msg}"
    );
}
