//! `hooklake broker`'s SQLite storage read back record for record. vendor/tansu-storage
//! patches it to keep each connection's prepared statements (one insert per record and
//! one per record header) instead of preparing them again for every record; a statement
//! reused with a stale binding would put a key, value or header on the wrong record.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use hooklake_tests::{broker::Broker, kafka, python};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

const TOPICS: [&str; 2] = ["storage-a", "storage-b"];
const PARTITIONS: i32 = 3;
const PRODUCERS: usize = 4;
const RECORDS_PER_PRODUCER: usize = 120;

/// One record as sent and as read back.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Record `n` of producer `p` in phase `phase`, for topic `TOPICS[.0]` and partition `.1`:
/// keys, values and headers that differ from one record to the next in presence and
/// length, so a binding left over from the record before shows. Each carries its id in
/// its key or its value, or both.
fn record(phase: usize, p: usize, n: usize) -> (usize, i32, Record) {
    let id = format!("{phase}-{p}-{n}");
    let topic = (p + n) % TOPICS.len();
    let partition = ((n / 2 + p) % PARTITIONS as usize) as i32;
    let key = (!n.is_multiple_of(3)).then(|| format!("key-{id}").into_bytes());
    let value = (n % 7 != 5 || key.is_none())
        .then(|| format!("{{\"id\":\"{id}\",\"pad\":\"{}\"}}", "x".repeat(n * 13 % 900)).into_bytes());
    let headers =
        (0..n % 4).map(|h| (format!("h{h}-{id}"), (h != 1).then(|| format!("v{h}-{id}").into_bytes()))).collect();
    (topic, partition, Record { key, value, headers })
}

fn producer(brokers: &str, idempotent: bool) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", idempotent.to_string())
        .set("linger.ms", "2")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer")
}

/// Sends every producer's records of `phase` at once (half the producers idempotent),
/// waits for every ack, and returns what each (topic, partition) must hold, in each
/// producer's order.
async fn produce_phase(
    brokers: &str,
    topics: &[String],
    phase: usize,
) -> BTreeMap<(String, i32), Vec<(usize, Record)>> {
    let sends = (0..PRODUCERS).map(|p| {
        let producer = producer(brokers, p % 2 == 0);
        let topics = topics.to_vec();
        tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut in_flight = Vec::new();
            for n in 0..RECORDS_PER_PRODUCER {
                let (t, partition, r) = record(phase, p, n);
                let headers = r
                    .headers
                    .iter()
                    .fold(OwnedHeaders::new(), |hs, (k, v)| hs.insert(Header { key: k, value: v.as_deref() }));
                let mut fr = FutureRecord::<[u8], [u8]>::to(&topics[t]).partition(partition).headers(headers);
                if let Some(k) = &r.key {
                    fr = fr.key(k.as_slice());
                }
                if let Some(v) = &r.value {
                    fr = fr.payload(v.as_slice());
                }
                // send_result queues the record now; the acks are awaited below, all in flight.
                let delivery = producer.send_result(fr).unwrap_or_else(|(e, _)| panic!("producer {p}: {e}"));
                in_flight.push((topics[t].clone(), partition, r.clone(), delivery));
            }
            for (topic, partition, r, delivery) in in_flight {
                let delivery =
                    delivery.await.expect("the producer is alive").unwrap_or_else(|(e, _)| panic!("producer {p}: {e}"));
                assert_eq!(delivery.partition, partition);
                acked.push((topic, partition, p, r));
            }
            acked
        })
    });
    let mut expected: BTreeMap<(String, i32), Vec<(usize, Record)>> = BTreeMap::new();
    for sent in futures::future::join_all(sends).await {
        for (topic, partition, p, r) in sent.expect("producer task") {
            expected.entry((topic, partition)).or_default().push((p, r));
        }
    }
    expected
}

/// Every record of one partition from offset 0, with its offset.
fn read_partition(brokers: &str, topic: &str, partition: i32, count: usize) -> Vec<(i64, Record)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hooklake-tests-storage")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).expect("offset");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < count && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((
                m.offset(),
                Record {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m.headers().map_or_else(Vec::new, |hs| {
                        hs.iter().map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec))).collect()
                    }),
                },
            )),
            Some(Err(e)) => panic!("{topic}/{partition}: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_producers_records_read_back_exactly_across_a_broker_restart() {
    let mut broker = Broker::start();
    let brokers = broker.bootstrap();
    let topics: Vec<String> = TOPICS.iter().map(|t| (*t).to_owned()).collect();
    for topic in &topics {
        kafka::create_topic(&brokers, topic, PARTITIONS).await;
    }

    // Phase 1 on the broker's first connections; phase 2 after a SIGKILL and restart, on
    // new connections whose statements are prepared anew.
    let mut expected = produce_phase(&brokers, &topics, 1).await;
    broker.restart();
    for (tp, records) in produce_phase(&brokers, &topics, 2).await {
        expected.entry(tp).or_default().extend(records);
    }

    let mut total = 0;
    for ((topic, partition), sent) in &expected {
        let read = read_partition(&brokers, topic, *partition, sent.len());
        assert_eq!(read.len(), sent.len(), "{topic}/{partition}: records read back");
        assert_eq!(
            read.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
            (0..sent.len() as i64).collect::<Vec<_>>(),
            "{topic}/{partition}: offsets without gaps"
        );
        // Producers interleave on a partition; each one's records keep its order.
        for p in 0..PRODUCERS {
            let sent_by_p: Vec<&Record> = sent.iter().filter(|(q, _)| *q == p).map(|(_, r)| r).collect();
            let read_of_p: Vec<&Record> = read.iter().map(|(_, r)| r).filter(|r| sent_by_p.contains(r)).collect();
            assert_eq!(read_of_p, sent_by_p, "{topic}/{partition}: producer {p}'s records in its order");
        }
        let distinct: BTreeSet<&Record> = read.iter().map(|(_, r)| r).collect();
        assert_eq!(distinct.len(), read.len(), "{topic}/{partition}: a record read twice");
        total += read.len();
    }
    assert_eq!(total, 2 * PRODUCERS * RECORDS_PER_PRODUCER);
    assert_eq!(
        kafka::record_count(&brokers, TOPICS[0]) + kafka::record_count(&brokers, TOPICS[1]),
        total as i64,
        "the high watermarks count the records read"
    );
}

/// tansu 0.6 answers some requests with a panic in its one storage task (DeleteRecords is
/// `todo!()`). Such a request must fail alone: before vendor/tansu-storage's second
/// change the task ended there, and the broker, still running, failed every request after.
#[tokio::test(flavor = "multi_thread")]
async fn a_storage_request_tansu_does_not_implement_fails_alone() {
    use rdkafka::admin::{AdminClient, AdminOptions};

    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let topic = "storage-unimplemented";
    kafka::create_topic(&brokers, topic, 1).await;
    kafka::produce_raw(&brokers, topic, "before", "{}").await;

    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("admin");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(topic, 0, Offset::Offset(1)).expect("offset");
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(5)));
    let deleted = admin.delete_records(&offsets, &options).await;
    let failed = match &deleted {
        Err(_) => true,
        Ok(list) => list.elements().iter().any(|e| e.error().is_err()),
    };
    assert!(failed, "DeleteRecords is not implemented by tansu 0.6, yet it answered {deleted:?}");

    // The same broker still writes and reads: new records, and the one from before.
    kafka::produce_raw(&brokers, topic, "after", "{}").await;
    let read = read_partition(&brokers, topic, 0, 2);
    let keys: Vec<_> = read.iter().map(|(_, r)| r.key.clone()).collect();
    assert_eq!(keys, vec![Some(b"before".to_vec()), Some(b"after".to_vec())]);
    assert!(
        std::fs::read_to_string(broker.log_path()).expect("the broker's log").contains("the storage request panicked"),
        "the broker logs the request it could not serve"
    );
}

/// vendor/tansu-storage's third change. Another process holds the database's write lock
/// for a moment (a `sqlite3` shell, a backup), so the broker fails the produce requests
/// that arrive meanwhile. librdkafka's idempotent producer then bumps its own epoch and
/// starts its sequences at 0 again (KIP-360); tansu refused every batch of the new epoch,
/// so the producer (and ingest with it) failed every record until it was made again.
/// After the lock every record must be acknowledged, and every acknowledged record read
/// back once, in order.
#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_producer_goes_on_after_the_broker_failed_its_batches() {
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let topic = "storage-epoch-bump";
    kafka::create_topic(&brokers, topic, 1).await;
    let producer = producer(&brokers, true);
    let send = |n: usize| {
        let key = format!("bump-{n}");
        producer
            .send_result(FutureRecord::to(topic).key(key.as_bytes()).payload("{}"))
            .unwrap_or_else(|(e, _)| panic!("record {n}: {e}"))
    };

    let mut acked = Vec::new();
    send(0).await.expect("the producer is alive").expect("the first record");
    acked.push(0);

    // The lock, held for 1.5 s by Python's sqlite3 (the broker's storage waits for no lock).
    let database = broker.database_path();
    let mut lock = std::process::Command::new(hooklake_tests::tools::python())
        .args(["-c", LOCK_FOR_A_MOMENT])
        .arg(&database)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    let mut said = [0; 7];
    std::io::Read::read_exact(lock.stdout.as_mut().expect("stdout"), &mut said).expect("the lock is taken");
    assert_eq!(&said, b"locked\n");
    // One record at a time while the lock lasts: each failed batch makes the producer bump
    // its epoch, and the next record goes with the bumped epoch into the lock again.
    let (mut n, mut failed) = (1, 0);
    while lock.try_wait().expect("python").is_none() && n < 100 {
        match send(n).await.expect("the producer is alive") {
            Ok(_) => acked.push(n),
            Err(_) => failed += 1,
        }
        n += 1;
    }
    assert!(lock.wait().expect("python").success(), "the lock's process failed");
    assert!(failed >= 2, "{failed} produce requests failed while the database was locked: the test shows little");

    // After the lock: every record acknowledged, within the producer's 20 s timeout.
    for n in n..n + 10 {
        send(n).await.expect("the producer is alive").unwrap_or_else(|(e, _)| {
            let log = std::fs::read_to_string(broker.log_path()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().filter(|l| l.contains("producer_")).take(8).collect();
            panic!("record {n} after the lock: {e}; the broker's last lines about producers: {tail:#?}")
        });
        acked.push(n);
    }

    let read = read_partition(&brokers, topic, 0, acked.len());
    let keys: Vec<String> =
        read.iter().map(|(_, r)| String::from_utf8(r.key.clone().expect("a key")).expect("utf-8")).collect();
    let expected: Vec<String> = acked.iter().map(|n| format!("bump-{n}")).collect();
    assert_eq!(keys, expected, "every acknowledged record, once, in order");
    assert_eq!(
        read.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
        (0..acked.len() as i64).collect::<Vec<_>>(),
        "offsets without gaps"
    );

    // Each failed batch bumped the epoch again (a bumped batch that meets the lock fails
    // too), so the broker took epochs more than one ahead of the last it had recorded.
    let epoch = python::run_code(
        "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('select max(epoch) from producer_epoch').fetchone()[0])",
        &[database.as_os_str()],
        Duration::from_secs(60),
    )
    .await;
    let epoch: i64 = epoch.trim().parse().expect("the producer's last epoch");
    assert!(
        epoch >= 2,
        "the producer's epoch went up by {epoch} only: the test no longer shows a bump of more than one"
    );
}

/// Takes the write lock of the SQLite database `sys.argv[1]`, says so, holds it 1.5 s.
const LOCK_FOR_A_MOMENT: &str = "import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('begin immediate')
sys.stdout.write('locked\\n'); sys.stdout.flush()
time.sleep(1.5)
c.execute('rollback')";

/// vendor/tansu-storage's fourth change. Produce looks a partition's watermark up twice
/// per batch, fetch once per request and ListOffsets once per partition; without an
/// index on the watermark's partition SQLite read the watermark row of every partition
/// of every topic for each lookup (about 30 µs with 600 partitions, BENCHMARKS.md).
/// Here SQLite plans every statement that the SQLite storage runs and that reads or
/// updates the watermark, on the broker's own database: none may scan it. The database
/// is first made as an older broker left it, without the index, which the broker must
/// add when it starts.
#[tokio::test(flavor = "multi_thread")]
async fn every_watermark_lookup_searches_an_index_also_in_an_older_database() {
    let mut broker = Broker::start();
    let brokers = broker.bootstrap();
    for topic in TOPICS {
        kafka::create_topic(&brokers, topic, PARTITIONS).await;
    }
    broker.kill();
    let database = broker.database_path();
    let indexes = "import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute('drop index if exists watermark_topition')
print(c.execute(\"select count(*) from sqlite_master where type = 'index' and tbl_name = 'watermark'\").fetchone()[0])";
    assert_eq!(
        python::run_code(indexes, &[database.as_os_str()], Duration::from_secs(60)).await.trim(),
        "0",
        "the older database has no index on watermark"
    );
    broker.restart();

    // The broker still takes and counts records on every partition.
    let producer = producer(&brokers, true);
    for topic in TOPICS {
        for partition in 0..PARTITIONS {
            producer
                .send(FutureRecord::to(topic).partition(partition).key("k").payload("{}"), Duration::from_secs(20))
                .await
                .unwrap_or_else(|(e, _)| panic!("{topic}/{partition}: {e}"));
        }
        assert_eq!(kafka::record_count(&brokers, topic), i64::from(PARTITIONS), "{topic}: the high watermarks");
    }

    // The statements the SQLite storage runs: each `"….sql"` key in lite.rs, a file of
    // src/sql/ or, for `lite/…`, of src/lite/ (its DDL keys name no such file).
    let storage = hooklake_tests::tools::repo_root().join("vendor/tansu-storage/src");
    let lite = std::fs::read_to_string(storage.join("lite.rs")).expect("lite.rs");
    let statements: BTreeSet<std::path::PathBuf> = lite
        .match_indices(".sql\"")
        .filter_map(|(end, _)| lite[..end].rfind('"').map(|start| &lite[start + 1..end + 4]))
        .filter(|key| !key.contains(char::is_whitespace))
        .map(|key| if key.starts_with("lite/") { storage.join(key) } else { storage.join("sql").join(key) })
        .filter(|path| path.is_file())
        .collect();
    let mut args: Vec<&std::ffi::OsStr> = vec![database.as_os_str()];
    args.extend(statements.iter().map(|p| p.as_os_str()));
    let plans = python::run_code(PLAN_WATERMARK_STATEMENTS, &args, Duration::from_secs(60)).await;
    let planned: BTreeMap<&str, Vec<&str>> = plans
        .lines()
        .filter_map(|line| line.split_once(" | "))
        .map(|(name, plan)| (name, plan.split(" ; ").collect()))
        .collect();
    for name in ["watermark_select_topition.sql", "watermark_update_topition.sql", "list_latest_offset_uncommitted.sql"]
    {
        assert!(planned.contains_key(name), "{name} was not planned: {plans}");
    }
    let scanning: Vec<&&str> = planned
        .iter()
        .filter(|(_, plan)| {
            plan.iter().any(|step| {
                let mut words = step.split_whitespace();
                words.next() == Some("SCAN") && matches!(words.next(), Some("w" | "watermark"))
            })
        })
        .map(|(name, _)| name)
        .collect();
    assert!(scanning.is_empty(), "these read every partition's watermark: {scanning:?}\n{plans}");
}

/// For each SQL file `sys.argv[2:]` that names the `watermark` table: its name, ` | `, and
/// SQLite's plan for it on the database `sys.argv[1]`, the steps joined by ` ; `. tansu's
/// `$n` parameters become SQLite's `?n`, each bound to 0.
const PLAN_WATERMARK_STATEMENTS: &str = "import pathlib, re, sqlite3, sys
db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)
for path in map(pathlib.Path, sys.argv[2:]):
    sql = re.sub(r'--[^\\n]*', '', path.read_text())
    if not re.search(r'\\bwatermark\\b', sql):
        continue
    sql = re.sub(r'\\$(\\d+)', r'?\\1', sql)
    n = max(map(int, re.findall(r'\\?(\\d+)', sql)), default=0)
    plan = [row[3] for row in db.execute('explain query plan ' + sql, [0] * n)]
    print(path.name, '|', ' ; '.join(plan))";
