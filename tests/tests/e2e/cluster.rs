//! Tests: envshare on Redis Cluster. A private 3-node cluster from the harness
//! ([`TestCluster`]), the sandbox over real HTTP, the worker service in-process in component
//! token mode with a rate limit (so the queue's, the token cache's and the limiter's scripts all
//! run on the cluster), and a consumer-group reader following the events stream.

use std::collections::HashMap;
use std::time::Duration;

use envshare::config::Settings;
use envshare::events::EventKind;
use envshare::redis_url::{self, RedisTarget};
use envshare::sandbox::{Fault, Sandbox, SandboxConfig};
use envshare::store::{EnqueueOptions, NewJob, Queue, QueueSettings};
use envshare::store::{EventReader, StartFrom, read_all};
use envshare::wechat::Endpoint;
use envshare::worker::{Application, WorkerOptions};
use envshare::{AppId, BatchId, EnvId};
use envshare_tests::{TestCluster, appid, unique_queue};
use secrecy::SecretString;
use tokio::sync::oneshot;

const SECRET: &str = "secret-cluster-7a8b9c";
const TICKET: &str = "ticket-cluster-1d2e3f";
const ENV: &str = "prod-cluster";
const APPIDS: u64 = 200;
const CHUNK: usize = 10;

#[test]
fn cluster_urls_name_every_seed_node() {
    let target = redis_url::parse_target("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7001", false)
        .expect("a cluster URL parses");
    assert_eq!(
        target,
        RedisTarget::Cluster(vec![
            "redis://:pw@10.0.0.1:7000".into(),
            "redis://:pw@10.0.0.2:7001".into()
        ])
    );
    // The settings accept the scheme too (ENVSHARE_REDIS_URL is validated at start).
    let url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001";
    let settings =
        Settings::from_sources([("ENVSHARE_REDIS_URL".to_owned(), url.to_owned())], None)
            .expect("ENVSHARE_REDIS_URL accepts redis+cluster://");
    assert_eq!(settings.redis_url, url);
    let flagged = Settings::from_sources(
        [
            (
                "ENVSHARE_REDIS_URL".to_owned(),
                "redis://127.0.0.1:7000".to_owned(),
            ),
            ("ENVSHARE_REDIS_CLUSTER".to_owned(), "1".to_owned()),
        ],
        None,
    )
    .expect("the cluster flag parses");
    assert!(flagged.redis_cluster);
    // A node list without cluster mode is refused when connecting, without quoting the URL.
    let err = redis_url::parse_target("redis://:secretpw@a:1,b:2", false).unwrap_err();
    assert!(err.to_string().contains("cluster"), "{err}");
    assert!(!err.to_string().contains("secretpw"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_200_appids_completes_on_a_three_node_cluster_with_one_final_event_each() {
    envshare::telemetry::init_for_tests();
    let cluster = tokio::task::spawn_blocking(TestCluster::start)
        .await
        .expect("cluster start thread");
    let sandbox = Sandbox::start(SandboxConfig {
        component_secret: SECRET.into(),
        verify_ticket: TICKET.into(),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox starts");
    // Two transient errors first, so the retry path (scheduled → promoted) runs too.
    sandbox.script(Endpoint::ShareEnv, [Some(Fault::BUSY), Some(Fault::BUSY)]);
    let name = unique_queue("cluster-e2e");

    // The producer side connects through the redis+cluster:// scheme, with every node listed.
    let queue = Queue::connect(&cluster.url(), &name, QueueSettings::default())
        .await
        .expect("queue connects to the cluster");
    assert!(queue.connection().is_cluster());
    assert!(queue.client().is_none());
    envshare::token::store_ticket(&queue, &TICKET.into())
        .await
        .expect("ticket stored");
    let mut reader = EventReader::connect(
        &cluster.url(),
        queue.keys(),
        "cluster-test",
        "c1",
        StartFrom::Beginning,
    )
    .await
    .expect("event reader connects to the cluster");

    // The worker gets one plain node URL and the cluster flag (ENVSHARE_REDIS_CLUSTER=1): it
    // discovers the other nodes from that one.
    let mut settings = Settings::defaults();
    settings.redis_url = cluster.node_url(1);
    settings.redis_cluster = true;
    settings.queue = name.clone();
    settings.wechat_base_url = sandbox.url().to_owned();
    settings.component_appid = Some(AppId::parse(SandboxConfig::COMPONENT_APPID).unwrap());
    settings.component_appsecret = Some(SecretString::from(SECRET));
    settings.concurrency = 8;
    settings.rate_limit = 2000.0;
    settings.backoff_base = Duration::from_millis(20);
    settings.backoff_max = Duration::from_millis(100);
    settings.shutdown_timeout = Duration::from_secs(5);
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    let app = Application::build_with(settings, WorkerOptions::default())
        .await
        .expect("worker builds against the cluster");
    let http = app.http_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let batch = BatchId::generate();
    let all: Vec<AppId> = (1..=APPIDS).map(appid).collect();
    let jobs: Vec<NewJob> = all
        .chunks(CHUNK)
        .map(|chunk| NewJob {
            op: envshare::store::JobOp::Share,
            env: EnvId::parse(ENV).unwrap(),
            appids: chunk.to_vec(),
            batch: batch.clone(),
            run_at_ms: None,
        })
        .collect();
    let report = queue
        .enqueue(
            jobs,
            EnqueueOptions {
                force: false,
                seal: true,
            },
        )
        .await
        .expect("enqueue on the cluster");
    assert_eq!(report.job_ids.len(), APPIDS as usize / CHUNK);

    // Follow the stream as a consumer group would (XREADGROUP … BLOCK on its own cluster
    // connection) until batch.completed arrives.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !seen
        .iter()
        .any(|k| matches!(k, EventKind::BatchCompleted { .. }))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no batch.completed within 15 s; {} events so far",
            seen.len()
        );
        let events = reader
            .read(100, Duration::from_millis(500))
            .await
            .expect("XREADGROUP on the cluster");
        let ids: Vec<String> = events.iter().map(|e| e.entry_id.clone()).collect();
        reader.ack(&ids).await.expect("XACK on the cluster");
        seen.extend(events.into_iter().map(|e| e.event.kind));
    }

    // /readyz answers from the cluster (PING, INFO memory, token) while the worker runs.
    let ready = reqwest::get(format!("http://{http}/readyz"))
        .await
        .expect("readyz answers");
    let ready_status = ready.status();
    let ready_body = ready.text().await.unwrap_or_default();
    let _ = stop.send(());
    worker
        .await
        .expect("worker task")
        .expect("worker stops cleanly");
    assert!(ready_status.is_success(), "/readyz: {ready_body}");

    // Every appid has exactly one final event, all accepted, and the batch completed once.
    let stream = read_all(&mut queue.connection(), queue.keys())
        .await
        .expect("XRANGE on the cluster");
    let kinds: Vec<EventKind> = stream.into_iter().map(|e| e.event.kind).collect();
    assert_eq!(kinds, seen, "the reader saw exactly the stream");
    let mut finals: HashMap<AppId, u32> = HashMap::new();
    for kind in &kinds {
        match kind {
            EventKind::ShareAccepted { appid, .. } => {
                *finals.entry(appid.clone()).or_default() += 1
            }
            EventKind::ShareFailed { appid, errmsg, .. } => {
                panic!("{appid} failed on the cluster: {errmsg}")
            }
            _ => {}
        }
    }
    assert_eq!(
        finals.len(),
        APPIDS as usize,
        "every appid has a final event"
    );
    assert!(
        finals.values().all(|&n| n == 1),
        "duplicate final events: {:?}",
        finals.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let completed: Vec<_> = kinds
        .iter()
        .filter_map(|k| match k {
            EventKind::BatchCompleted {
                batch_id,
                total,
                accepted,
                failed,
                ..
            } => Some((batch_id.clone(), *total, *accepted, *failed)),
            _ => None,
        })
        .collect();
    assert_eq!(completed, vec![(batch, APPIDS, APPIDS, 0)]);

    let stats = queue.stats().await.expect("stats pipeline on the cluster");
    assert_eq!(
        (stats.ready, stats.scheduled, stats.running, stats.dead),
        (0, 0, 0, 0)
    );
    assert_eq!(sandbox.calls(Endpoint::ShareEnv), APPIDS / CHUNK as u64 + 2);
    assert_eq!(sandbox.calls(Endpoint::ComponentToken), 1);
}
