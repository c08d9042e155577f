//! Races between separate OS processes sharing one bucket: 4 processes increment one counter with
//! read-increment-conditional-write; the total must be exact (no lost update).

use std::time::Duration;

use s3db_core::Key;
use s3db_core::testing::TestStore;
use s3db_core::testing::conformance::read_counter;
use s3db_tests::Workers;

const PROCESSES: usize = 4;

async fn race(t: TestStore, rounds: usize, timeout: Duration) {
    let key = "counters/processes";
    let conn = t.conn.to_string_with_secrets();
    let rounds_arg = rounds.to_string();
    let mut workers = Workers::new();
    for i in 0..PROCESSES {
        workers.spawn(
            &format!("worker-{i}"),
            env!("CARGO_BIN_EXE_race_worker"),
            &["counter", &conn, key, &rounds_arg],
        );
    }
    let statuses = tokio::task::spawn_blocking(move || workers.wait_all(timeout))
        .await
        .unwrap_or_else(|e| panic!("waiting for workers: {e}"));
    for (name, status) in statuses {
        assert!(status.success(), "{name} failed: {status}");
    }
    let key = Key::parse(key).unwrap_or_else(|e| panic!("{e}"));
    let total = read_counter(&t.store, &key)
        .await
        .unwrap_or_else(|e| panic!("reading the counter: {e}"));
    assert_eq!(
        total,
        (PROCESSES * rounds) as u64,
        "every increment of every process counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_counter_race_between_processes() {
    let t = TestStore::file("process_race");
    let rounds = t.race_rounds;
    race(t, rounds, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_counter_race_between_processes() {
    let Some(t) = TestStore::s3("process_race") else {
        return;
    };
    let rounds = t.race_rounds;
    race(t, rounds, Duration::from_secs(300)).await;
}
