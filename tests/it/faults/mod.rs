//! The pipeline under faults, black box (issue 16): clients post webhooks to the real
//! `hooklake ingest` while `hooklake sink` services load them on their schedule, and a
//! fault is injected — runs failing half-way, a competing writer, a second replica, sink
//! services killed, the broker killed, ingest stopped. Once traffic stopped and the sink
//! caught up, every webhook answered 200 must be in the table exactly once and the rows'
//! Kafka positions must cover each partition up to its high watermark once
//! (`hooklake_tests::audit`).

mod rig;
mod soak;

use std::time::{Duration, Instant};

use hooklake_tests::{
    eventually,
    faults::{TableDirs, freeze, lock_catalog},
    sink::{self, SinkService},
    traffic::Load,
};

use self::rig::{Rig, assigned, rows_written, runs};

/// How long each scenario posts.
const TRAFFIC: Duration = Duration::from_secs(20);
/// About 150-200 webhooks a second in all, the rate at which the losses showed.
const LOAD: Load = Load { clients: 4, pause: Duration::from_millis(10) };
/// Enough accepted webhooks to know traffic flows (and the table exists).
const FLOWING: u64 = 100;
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn faults_scheduled_runs_under_steady_traffic_lose_nothing() {
    let started = Instant::now();
    let rig = Rig::start(false).await;
    let sink = rig.sink().await;
    let traffic = rig.traffic("steady", LOAD);
    tokio::time::sleep(TRAFFIC).await;
    let report = traffic.stop().await;
    let loads_during_traffic = runs(&sink, "success").await;
    rig.conclude(&report, &[&sink], "steady traffic", started).await;
    assert!(loads_during_traffic >= 5.0, "only {loads_during_traffic} runs succeeded while traffic flowed");
}

/// The table's folders (data and metadata) and the catalog are made unavailable in turn
/// for 1.5-2 s at a time; the runs that hit one fail, the next ones load everything.
#[tokio::test(flavor = "multi_thread")]
async fn faults_runs_failing_half_way_under_traffic_lose_nothing() {
    let started = Instant::now();
    let rig = Rig::start(false).await;
    let sink = rig.sink().await;
    let traffic = rig.traffic("failing", LOAD);
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    let warehouse = rig.warehouse();
    eventually(Duration::from_secs(30), "the table's folders", || async { TableDirs::find(&warehouse) }).await;
    // At least TRAFFIC, and on until a run failed (a slow machine has fewer runs to hit).
    let (until, at_most) = (Instant::now() + TRAFFIC, Instant::now() + 3 * TRAFFIC);
    for turn in 0.. {
        let failed = runs(&sink, "failure").await;
        if Instant::now() >= at_most || (Instant::now() >= until && failed > 0.0) {
            break;
        }
        if turn % 2 == 0 {
            let dirs = TableDirs::find(&warehouse).expect("the table exists");
            let _frozen = freeze(&[dirs.data, vec![dirs.metadata]].concat());
            tokio::time::sleep(Duration::from_secs(2)).await;
        } else {
            lock_catalog(&rig.catalog_db(), Duration::from_millis(1500)).await;
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let report = traffic.stop().await;
    let failed = runs(&sink, "failure").await;
    rig.conclude(&report, &[&sink], &format!("runs failing half-way ({failed} failed runs)"), started).await;
    assert!(failed > 0.0, "no run failed: the faults did not hit");
}

/// `hooklake sink --once` runs back to back while the service runs every second: both
/// commit to the same table, so commits conflict and runs start over from the table.
#[tokio::test(flavor = "multi_thread")]
async fn faults_commit_conflicts_with_a_second_writer_lose_nothing() {
    let started = Instant::now();
    let rig = Rig::start(false).await;
    let sink = rig.sink().await;
    let traffic = rig.traffic("conflict", LOAD);
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    let until = Instant::now() + TRAFFIC;
    let (mut once_runs, mut once_conflicts) = (0, 0);
    while Instant::now() < until {
        let out = sink::once(&rig.p.config, &[], Duration::from_secs(120)).await;
        once_runs += 1;
        once_conflicts += out.stderr.matches("commit conflict").count();
    }
    let report = traffic.stop().await;
    rig.conclude(&report, &[&sink], "commit conflicts", started).await;
    let service_conflicts = sink.log().matches("commit conflict").count();
    eprintln!(
        "commit conflicts: {once_runs} --once runs; conflicts: {once_conflicts} --once, {service_conflicts} service"
    );
    assert!(once_conflicts + service_conflicts > 0, "no commit conflicted: the writers did not race");
}

/// A second replica joins the consumer group under traffic, shares the partitions, and
/// leaves again: two rebalances, each in the middle of runs.
#[tokio::test(flavor = "multi_thread")]
async fn faults_a_replica_joining_and_leaving_loses_nothing() {
    let started = Instant::now();
    let rig = Rig::start(false).await;
    let first = rig.sink().await;
    let traffic = rig.traffic("replicas", LOAD);
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    let second = rig.sink().await;
    let table = rig.p.keys_table();
    loads_rows(&second, &table, "the second replica to load rows", Duration::from_secs(60)).await;
    tokio::time::sleep(TRAFFIC / 2).await;
    assert!(second.stop().await, "the second replica stops cleanly on SIGTERM");
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    tokio::time::sleep(TRAFFIC / 4).await;
    let report = traffic.stop().await;
    rig.conclude(&report, &[&first], "a replica joining and leaving", started).await;
}

/// Sink processes are killed (SIGKILL) at each of the worst moments of a run while webhooks
/// keep arriving: after planning, after writing their files but before the commit, and
/// after the commit but before the consumer group's offsets are mirrored. Then a sink
/// service (as a restarted pod would) loads what is left.
///
/// The killed processes are `sink --once` runs, which own every partition without joining
/// the consumer group, so each kill lands at its failpoint whatever the group does;
/// `faults_sink_services_killed_hand_their_partitions_over` kills group members.
#[tokio::test(flavor = "multi_thread")]
async fn faults_sinks_killed_mid_run_under_traffic_lose_nothing() {
    use hooklake_sink::failpoint::{AFTER_FILES, AFTER_TABLE_COMMIT, BEFORE_FILES};
    let started = Instant::now();
    let rig = Rig::start(false).await;
    let traffic = rig.traffic("killed", LOAD);
    for failpoint in [BEFORE_FILES, AFTER_FILES, AFTER_TABLE_COMMIT, AFTER_FILES, AFTER_TABLE_COMMIT] {
        traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
        sink::once_killed_at(&rig.p.config, failpoint, &[]).await;
    }
    let survivor = rig.sink().await;
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    let report = traffic.stop().await;
    rig.conclude(&report, &[&survivor], "sinks killed mid-run (5 kills)", started).await;
}

/// Sink services are killed (SIGKILL) under traffic as a pod dies, without leaving the
/// consumer group: the newer of two replicas, whose partitions the older one must take
/// over; then that one, alone, with its successor started 5 s later, while the broker
/// still counts the killed one as the group's leader. Each time, once the killed member's
/// session (10 s here) has expired, the member left owns every partition and loads the
/// rest. On tansu 0.6.0 as published, the survivor kept its old share and the killed
/// member's partitions were read by nobody, and the successor formed the group with an
/// empty assignment (vendor/README.md, `tansu-broker`).
#[tokio::test(flavor = "multi_thread")]
async fn faults_sink_services_killed_hand_their_partitions_over() {
    let started = Instant::now();
    let mut rig = Rig::start(false).await;
    // Heartbeats far more often than the session expires, as with the defaults (3 s and
    // 45 s), so that a member does not lose its session for one heartbeat answered with
    // "rebalance in progress".
    rig.kafka_property("session.timeout.ms", "10000");
    rig.kafka_property("heartbeat.interval.ms", "1000");
    let first = rig.sink().await;
    let traffic = rig.traffic("handover", LOAD);
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    owns_all(&first, "the first replica").await;
    let table = rig.p.keys_table();
    let second = rig.sink().await;
    loads_rows(&second, &table, "the second replica to load rows", Duration::from_secs(60)).await;
    // The two gauges add up to every partition, each replica holding a share: what an
    // operator's sum over replicas (the HooklakeSinkPartitionsUnassigned alert) sees.
    eventually(Duration::from_secs(60), "the two replicas to share every partition", || async {
        let (a, b) = (assigned(&first).await, assigned(&second).await);
        (a > 0 && b > 0 && a + b == EVERY_PARTITION).then_some(())
    })
    .await;
    second.kill().await;
    owns_all(&first, "the replica left after the second was killed").await;
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    first.kill().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let successor = rig.sink().await;
    owns_all(&successor, "the successor of the last replica killed").await;
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    let report = traffic.stop().await;
    rig.conclude(&report, &[&successor], "sink services killed (2 kills)", started).await;
}

/// Waits up to `timeout` until `sink` has written rows to `table` (`what` names the wait).
async fn loads_rows(sink: &SinkService, table: &str, what: &str, timeout: Duration) {
    eventually(timeout, what, || async { (rows_written(sink, table).await > 0.0).then_some(()) }).await;
}

/// Every partition of the pipeline's two source topics.
const EVERY_PARTITION: u32 = 2 * rig::PARTITIONS;

/// Waits until `sink` holds every partition of the pipeline's topics (its
/// `hooklake_sink_assigned_partitions` gauges).
async fn owns_all(sink: &SinkService, who: &str) {
    eventually(Duration::from_secs(60), &format!("{who} to own every partition ({EVERY_PARTITION})"), || async {
        (assigned(sink).await == EVERY_PARTITION).then_some(())
    })
    .await;
}

/// The broker is killed (SIGKILL) for 8 s under traffic and restarted on its data:
/// ingest answers 503 meanwhile; everything it answered 200 is loaded.
#[tokio::test(flavor = "multi_thread")]
async fn faults_the_broker_killed_under_traffic_loses_nothing() {
    let started = Instant::now();
    let mut rig = Rig::start(true).await;
    let sink = rig.sink().await;
    let traffic = rig.traffic("broker", LOAD);
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    tokio::time::sleep(TRAFFIC / 4).await;
    tokio::task::block_in_place(|| rig.broker().kill());
    tokio::time::sleep(Duration::from_secs(8)).await;
    tokio::task::block_in_place(|| rig.broker().restart());
    traffic.wait_accepted(FLOWING, Duration::from_secs(90)).await;
    tokio::time::sleep(TRAFFIC / 4).await;
    let report = traffic.stop().await;
    rig.conclude(&report, &[&sink], "broker killed", started).await;
    assert!(!report.refused.is_empty(), "no request was refused while the broker was down: {:?}", report.answers);
}

/// `hooklake ingest` gets SIGTERM twice under traffic and is started again: clients see
/// refused connections or errors, never a 200 for a webhook that is then missing.
#[tokio::test(flavor = "multi_thread")]
async fn faults_ingest_stopped_under_traffic_loses_nothing() {
    let started = Instant::now();
    let mut rig = Rig::start(false).await;
    let sink = rig.sink().await;
    let traffic = rig.traffic("ingest", LOAD);
    for _ in 0..2 {
        traffic.wait_accepted(FLOWING * 5, FLOW_TIMEOUT).await;
        assert!(rig.ingest.terminate().await, "ingest exits 0 on SIGTERM:\n{}", rig.ingest.log());
        tokio::time::sleep(Duration::from_secs(1)).await;
        rig.ingest.restart().await;
    }
    traffic.wait_accepted(FLOWING * 5, FLOW_TIMEOUT).await;
    let report = traffic.stop().await;
    rig.conclude(&report, &[&sink], "ingest stopped", started).await;
    assert!(!report.refused.is_empty(), "no request failed while ingest was down: {:?}", report.answers);
}

/// The production catalog, PostgreSQL, failing under traffic while sink replicas load:
/// three table commits are cut off at their `COMMIT`, twice after PostgreSQL committed
/// and once before (each run cannot know the outcome, and fails), then the catalog is cut
/// off twice for 3 s (connections break mid-run, new ones are refused until it is back),
/// and a third replica starts during the second outage and joins once it can reach the
/// catalog. Every webhook answered 200 is in the table once.
#[tokio::test(flavor = "multi_thread")]
async fn faults_a_postgres_catalog_cutting_commits_and_going_away_loses_nothing() {
    let started = Instant::now();
    let mut rig = Rig::start_on_postgres(false).await;
    let first = rig.sink().await;
    let traffic = rig.traffic("catalog", LOAD);
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    let second = rig.sink().await;
    for (n, lose_answer) in [true, false, true].into_iter().enumerate() {
        if lose_answer {
            rig.lose_next_commit_answer();
        } else {
            rig.break_next_commit();
        }
        eventually(Duration::from_secs(60), "a run failing in the commit cut off", || async {
            (rig.sink_log_lines(&["run failed", "catalog: commit"]) > n).then_some(())
        })
        .await;
    }
    let mut third = None;
    for outage in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        rig.cut_catalog().await;
        if outage == 1 {
            third = Some(rig.sink_starting().await);
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        rig.restore_catalog().await;
    }
    let third = third.expect("a replica started during the outage");
    let table = rig.p.keys_table();
    // (Until it has started, its /metrics answers 503 and holds no such series.)
    loads_rows(&third, &table, "the replica started during the outage to load rows", Duration::from_secs(90)).await;
    assert!(second.stop().await, "the second replica stops cleanly on SIGTERM");
    traffic.wait_accepted(FLOWING, FLOW_TIMEOUT).await;
    let report = traffic.stop().await;
    let failed = runs(&first, "failure").await + runs(&third, "failure").await;
    rig.conclude(&report, &[&first, &third], &format!("a PostgreSQL catalog failing ({failed} failed runs)"), started)
        .await;
}
