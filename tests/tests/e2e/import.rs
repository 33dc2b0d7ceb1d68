//! The library's import flow ([`envshare::import::run`]) on a real queue, fed bytes in memory as
//! an HTTP request body would feed it.

use std::sync::Arc;

use envshare::BatchId;
use envshare::import::{self, NoProgress, Options, RunError, Source};
use envshare::store::{Queue, QueueSettings};
use envshare_tests::{TestRedis, unique_queue};

async fn queue(prefix: &str) -> Queue {
    Queue::connect(
        TestRedis::shared().url(),
        &unique_queue(prefix),
        QueueSettings::default(),
    )
    .await
    .expect("connect")
}

fn body(appids: std::ops::Range<u64>) -> Vec<u8> {
    let mut out = String::new();
    for i in appids {
        out.push_str(&format!(
            "{{\"env\":\"env-{}\",\"appid\":\"wx{i:016x}\"}}\n",
            i % 2
        ));
    }
    out.into_bytes()
}

async fn import(q: &Queue, bytes: Vec<u8>, batch: &str) -> Result<import::Summary, RunError> {
    let options = Options::new(BatchId::parse(batch).unwrap(), 4);
    import::run(
        Some(q),
        Source::bytes("<body>", bytes),
        &options,
        None,
        Arc::new(NoProgress),
    )
    .await
}

#[tokio::test]
async fn bytes_in_memory_are_imported_into_a_sealed_batch_and_queued_pairs_are_skipped() {
    let q = queue("import-bytes").await;
    let s = import(&q, body(0..10), "b-bytes").await.unwrap();
    assert_eq!((s.format.as_str(), s.input.as_str()), ("jsonl", "<body>"));
    assert!(s.enqueued && !s.dry_run);
    assert_eq!((s.rows, s.unique_pairs, s.envs), (10, 10, 2));
    assert_eq!((s.planned_jobs, s.jobs, s.appids), (4, 4, 10));
    let batch = q
        .batch(&BatchId::parse("b-bytes").unwrap())
        .await
        .unwrap()
        .expect("the batch exists");
    assert_eq!((batch.jobs, batch.appids, batch.sealed), (4, 10, true));

    // The same pairs again, plus new ones: the queued ones are skipped (dedupe window).
    let s = import(&q, body(5..15), "b-bytes-2").await.unwrap();
    assert_eq!(s.skipped_already_queued, 5);
    assert_eq!(s.appids, 5);
}

#[tokio::test]
async fn bytes_with_an_invalid_row_enqueue_nothing() {
    let q = queue("import-invalid").await;
    let mut bytes = body(0..3);
    bytes.extend_from_slice(b"{\"env\":\"env-0\",\"appid\":\"wxBAD\"}\n");
    let err = import(&q, bytes, "b-invalid").await.unwrap_err();
    let RunError::Invalid(s) = err else {
        panic!("{err}")
    };
    assert_eq!((s.invalid_rows, s.errors[0].line), (1, 4));
    assert!(!s.enqueued);
    assert_eq!(q.stats().await.unwrap().jobs, 0);
}
