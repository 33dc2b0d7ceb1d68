//! Tests: Sentinel failover. A primary, a replica and three `redis-sentinel` processes; the
//! worker and a producer find the master through `ENVSHARE_REDIS_SENTINELS`; the primary is
//! killed with SIGKILL while batches are being enqueued and jobs run. The test then counts what
//! was lost or duplicated and how long the system took to carry on, once without and once with
//! `ENVSHARE_REDIS_WAIT_REPLICAS=1`, and prints the figures (docs/reliability.md quotes them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use envshare::events::EventKind;
use envshare::sandbox::{Latency, SandboxConfig};
use envshare::store::{EnqueueOptions, NewJob, Queue, QueueSettings, read_all};
use envshare::worker::WorkerOptions;
use envshare::{AppId, BatchId, EnvId};
use envshare_tests::{ChildProcess, TestStack, free_port, unique_queue};

const MASTER: &str = "mymaster";
const TOKEN: &str = "static-token-sentinel-77aa";
/// Jobs per enqueue call (one batch each), one appid per job.
const JOBS_PER_BATCH: u64 = 20;
/// Enqueue calls in all; the primary dies after `KILL_AFTER` of them.
const BATCHES: u64 = 40;
const KILL_AFTER: u64 = 12;
/// Batches enqueued and run before the failover phase, to measure WAIT's cost.
const WARM: u64 = 20;
const WAIT: Duration = Duration::from_secs(40);

/// A primary, a replica and three Sentinels on free ports, in a temporary directory.
struct Group {
    _dir: tempfile::TempDir,
    primary: ChildProcess,
    primary_args: Vec<String>,
    _replica: ChildProcess,
    _sentinels: Vec<ChildProcess>,
    sentinel_ports: Vec<u16>,
}

fn redis_args(dir: &Path, port: u16) -> Vec<String> {
    let d = dir.join(port.to_string());
    std::fs::create_dir_all(&d).unwrap();
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &d.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn spawn(bin: &str, args: &[String]) -> ChildProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ChildProcess::spawn(Path::new(bin), &args, &[])
}

async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    cmd.query_async(&mut conn).await.ok()
}

impl Group {
    async fn start() -> Group {
        let dir = tempfile::tempdir().unwrap();
        let (p0, p1) = (free_port(), free_port());
        let primary_args = redis_args(dir.path(), p0);
        let primary = spawn("redis-server", &primary_args);
        let mut replica_args = redis_args(dir.path(), p1);
        replica_args.extend(["--replicaof".into(), "127.0.0.1".into(), p0.to_string()]);
        let replica = spawn("redis-server", &replica_args);
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER} 127.0.0.1 {p0} 2\n\
                     sentinel down-after-milliseconds {MASTER} 1000\n\
                     sentinel failover-timeout {MASTER} 10000\n\
                     sentinel parallel-syncs {MASTER} 1\n",
                    dir.path().display()
                ),
            )
            .unwrap();
            sentinels.push(spawn(
                "redis-sentinel",
                &[conf.to_string_lossy().into_owned()],
            ));
            sentinel_ports.push(port);
        }
        let group = Group {
            _dir: dir,
            primary,
            primary_args,
            _replica: replica,
            _sentinels: sentinels,
            sentinel_ports,
        };
        // Ready when the replica is in sync and every Sentinel knows the replica and the two
        // other Sentinels (they find each other through the master's hello channel).
        let deadline = Instant::now() + WAIT;
        loop {
            let link: Option<String> = query(p1, redis::cmd("INFO").arg("replication")).await;
            let synced = link.is_some_and(|i| i.contains("master_link_status:up"));
            let mut known = synced;
            for &port in &group.sentinel_ports {
                let replicas: Option<Vec<redis::Value>> =
                    query(port, redis::cmd("SENTINEL").arg("replicas").arg(MASTER)).await;
                let others: Option<Vec<redis::Value>> =
                    query(port, redis::cmd("SENTINEL").arg("sentinels").arg(MASTER)).await;
                known &=
                    replicas.is_some_and(|r| r.len() == 1) && others.is_some_and(|o| o.len() == 2);
            }
            if known {
                return group;
            }
            assert!(Instant::now() < deadline, "the Sentinel group never formed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn restart_old_primary(&mut self) {
        self.primary = spawn("redis-server", &self.primary_args);
    }

    fn sentinels(&self) -> Vec<String> {
        self.sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What one failover run measured (printed with `Debug`, which is how the fields are read).
#[derive(Debug)]
#[allow(dead_code)]
struct Report {
    wait_replicas: u32,
    /// Enqueue calls that returned Ok (acknowledged), and their jobs' appids.
    acknowledged_batches: u64,
    /// Acknowledged appids with no final event and no job left in the queue.
    acknowledged_lost: usize,
    /// Appids WeChat (the sandbox) accepted but that have no `share.accepted` event.
    events_lost: usize,
    /// `share.accepted` entries beyond one per appid (all with the same event id).
    events_duplicated: usize,
    /// From SIGKILL to the first acknowledged enqueue after it.
    enqueue_resumed_ms: u64,
    /// From SIGKILL to the first job completed on the new master.
    work_resumed_ms: u64,
    /// Mean enqueue call (20 jobs) in the steady phase.
    enqueue_mean_ms: f64,
    /// Jobs enqueued and run per second in the steady phase (5 ms API latency, concurrency 8).
    jobs_per_s_before: f64,
    /// WAITs that fell short (producer side).
    wait_shortfalls: u64,
}

async fn failover_run(wait_replicas: u32) -> Report {
    let mut group = Group::start().await;
    let sentinels = group.sentinels();
    let config = SandboxConfig {
        static_tokens: vec![TOKEN.into()],
        latency: Latency::Fixed(Duration::from_millis(5)),
        ..SandboxConfig::default()
    };
    let stack = TestStack::start("sentinel", config, |s| {
        s.redis_url = "redis://ignored:6379/0".into();
        s.redis_sentinels = sentinels.clone();
        s.redis_sentinel_master = MASTER.into();
        s.redis_wait_replicas = wait_replicas;
        s.concurrency = 8;
        s.lease = Duration::from_millis(3_000);
        s.max_attempts = 20;
    })
    .await;
    let url = stack.settings.redis_connect_url();
    let queue_name = unique_queue("failover");
    let mut settings = stack.settings.clone();
    settings.queue = queue_name.clone();
    let producer = Queue::connect(
        &url,
        &queue_name,
        QueueSettings {
            wait_replicas,
            ..QueueSettings::from(&settings)
        },
    )
    .await
    .expect("the producer finds the master through the Sentinels");
    let worker = stack
        .worker_with(settings.clone(), WorkerOptions::default())
        .await;

    let env = EnvId::parse("prod-sentinel").unwrap();
    let new_batch = |from: u64| {
        let batch = BatchId::generate();
        let appids: Vec<AppId> = (0..JOBS_PER_BATCH)
            .map(|i| envshare_tests::appid(from + i + 1))
            .collect();
        let jobs: Vec<NewJob> = appids
            .iter()
            .map(|a| NewJob {
                op: envshare::store::JobOp::Share,
                env: env.clone(),
                appids: vec![a.clone()],
                batch: batch.clone(),
                run_at_ms: None,
            })
            .collect();
        (appids, jobs)
    };
    let options = EnqueueOptions {
        force: true,
        seal: true,
    };

    // Steady state first, to measure what WAIT costs: WARM batches enqueued one after another
    // (mean call time), and the time until the worker has run them all (jobs per second).
    let mut latencies = Vec::new();
    let warm_start = Instant::now();
    for b in 0..WARM {
        let (_, jobs) = new_batch(1_000_000 + b * 1000);
        let t = Instant::now();
        producer
            .enqueue(jobs, options)
            .await
            .expect("enqueue before the failover");
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let warm_jobs = (WARM * JOBS_PER_BATCH) as usize;
    let drained = envshare_tests::wait_until(WAIT, || async {
        stack.sandbox.share_log().len() >= warm_jobs
    })
    .await;
    assert!(drained, "the worker never ran the first jobs");
    let jobs_before = warm_jobs as f64 / warm_start.elapsed().as_secs_f64();

    // The failover: BATCHES enqueue calls one after another; the primary dies after KILL_AFTER,
    // while the worker is running the jobs of the batches before.
    let mut acknowledged: BTreeSet<AppId> = BTreeSet::new();
    let mut acknowledged_batches = 0;
    let mut killed_at = None;
    let mut enqueue_resumed_ms = 0;
    for b in 0..BATCHES {
        if b == KILL_AFTER {
            // SIGKILL, as a crashed host would: nothing is flushed or handed over.
            group.primary.kill9();
            killed_at = Some((Instant::now(), now_ms()));
        }
        let (appids, jobs) = new_batch(b * 1000);
        let result = producer.enqueue(jobs, options).await;
        if result.is_ok() {
            acknowledged_batches += 1;
            acknowledged.extend(appids);
            match killed_at {
                None => {}
                Some((k, _)) if enqueue_resumed_ms == 0 => {
                    enqueue_resumed_ms = k.elapsed().as_millis() as u64;
                    // The failed host comes back; the Sentinels make it a replica of the new
                    // master, so WAIT has a replica again.
                    group.restart_old_primary();
                }
                Some(_) => {}
            }
        }
    }
    let (_, killed_ms) = killed_at.expect("the primary was killed");

    // Drain: every acknowledged job ends, or the queue stops changing.
    let reader = Queue::connect(&url, &queue_name, QueueSettings::default())
        .await
        .expect("the new master");
    let deadline = Instant::now() + WAIT;
    loop {
        let s = reader.stats().await;
        if let Ok(s) = &s
            && s.ready + s.scheduled + s.running == 0
        {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.stop().await;
    let stats = reader.stats().await.expect("stats from the new master");

    let mut conn = reader.connection();
    let events = read_all(&mut conn, reader.keys()).await.expect("events");
    let mut accepted: BTreeMap<AppId, Vec<String>> = BTreeMap::new();
    let mut first_after_kill: Option<u64> = None;
    for e in &events {
        if let EventKind::ShareAccepted { appid, .. } | EventKind::ShareFailed { appid, .. } =
            &e.event.kind
        {
            accepted
                .entry(appid.clone())
                .or_default()
                .push(e.event.id.clone());
            let ms: u64 = e
                .entry_id
                .split('-')
                .next()
                .and_then(|m| m.parse().ok())
                .unwrap_or(0);
            if ms > killed_ms {
                first_after_kill = Some(first_after_kill.map_or(ms, |f| f.min(ms)));
            }
        }
    }
    for ids in accepted.values() {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "a re-emitted event keeps its id, so consumers dedupe it: {ids:?}"
        );
    }
    let called: BTreeSet<String> = stack
        .sandbox
        .share_log()
        .into_iter()
        .flat_map(|c| c.appids)
        .collect();
    let events_lost = called
        .iter()
        .filter(|a| !accepted.keys().any(|k| k.as_str() == a.as_str()))
        .count();
    let acknowledged_lost = acknowledged
        .iter()
        .filter(|a| !accepted.contains_key(*a))
        .count();
    let report = Report {
        wait_replicas,
        acknowledged_batches,
        acknowledged_lost,
        events_lost,
        events_duplicated: accepted.values().map(|v| v.len() - 1).sum(),
        enqueue_resumed_ms,
        work_resumed_ms: first_after_kill.map_or(0, |f| f - killed_ms),
        enqueue_mean_ms: latencies.iter().sum::<f64>() / latencies.len().max(1) as f64,
        jobs_per_s_before: jobs_before,
        wait_shortfalls: producer.wait_shortfalls(),
    };
    eprintln!("sentinel failover: {report:?}");
    println!("sentinel failover: {report:?}");

    // The system carried on: the producer's later batches were acknowledged, and every job
    // ended (nothing stuck in ready, scheduled or running on the new master).
    assert!(
        acknowledged_batches > KILL_AFTER,
        "no batch acknowledged after the failover: {report:?}"
    );
    assert_eq!(
        (stats.ready, stats.scheduled, stats.running),
        (0, 0, 0),
        "{report:?}"
    );
    assert!(first_after_kill.is_some(), "no job ran after the failover");
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_during_enqueue_and_work_fails_over_and_wait_keeps_acknowledged_jobs() {
    // One after the other, so the two runs' timings do not disturb each other.
    let without = failover_run(0).await;
    let with = failover_run(1).await;
    // With WAIT 1, an acknowledged enqueue is on the replica before it is acknowledged, so the
    // failover loses none of them (unless a WAIT fell short, which the producer counts).
    assert!(
        with.acknowledged_lost == 0 || with.wait_shortfalls > 0,
        "WAIT 1 lost acknowledged jobs: {with:?}"
    );
    eprintln!("without WAIT: {without:?}\nwith WAIT 1: {with:?}");
}
