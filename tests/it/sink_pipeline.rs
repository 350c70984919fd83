//! The whole pipeline: webhooks POSTed to `hooklake ingest` → tansu → `hooklake sink
//! --once` → Iceberg tables, read back with pyiceberg over the same SQL catalog (SQLite
//! and PostgreSQL). Crashes at each commit step, racing sinks and duplicate deliveries
//! must neither lose nor duplicate a row.

use std::{collections::BTreeMap, time::Duration};

use hooklake_sink::failpoint;
use hooklake_tests::{eventually, lake::TestLake, python, sink, unix_now};
use serde_json::{Value, json};

use crate::sink_common::{Pipeline, reported, sorted};

/// Payloads whose bytes must survive: unicode, odd spacing, escapes, a top-level array.
const ODD_PAYLOADS: [&str; 4] = [
    "{\"event_type\":\"meter.read\",\"kWh\":1.50,\"note\":\"ünïcødé ✓\"}",
    "{ \"event_type\" : \"account.updated\",\n  \"data\": {\"id\": 7, \"tags\": [\"a\", \"b\"]} }\n",
    "{\"event_type\":\"x\",\"quote\":\"\\\"q\\\" \\\\ \\u00e9\"}",
    "[1, 2.5e3, true, null, \"x\"]",
];

/// Sum of the next offsets in a `{"<topic>": {"<partition>": next}}` summary.
fn summary_total(summary: &Value, topic: &str) -> i64 {
    let offsets: Value = serde_json::from_str(summary["hooklake.offsets"].as_str().expect("hooklake.offsets")).unwrap();
    offsets[topic].as_object().expect("topic in hooklake.offsets").values().map(|v| v.as_i64().unwrap()).sum()
}

/// Sum of the `hooklake.offset.<topic>.<partition>` table properties of `topic`.
fn property_total(table: &hooklake_tests::lake::TableContents, topic: &str) -> i64 {
    (0..2)
        .filter_map(|part| table.property(&format!("hooklake.offset.{topic}.{part}")))
        .map(|v| v.parse::<i64>().unwrap())
        .sum()
}

async fn end_to_end(lake: TestLake) {
    let p = Pipeline::start(lake).await;
    let before = unix_now();

    // `keys`: api_key, message_id from x-request-id.
    let mut sent: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..12 {
        let id = format!("k-{i:02}");
        let body = match ODD_PAYLOADS.get(i) {
            Some(odd) => (*odd).to_owned(),
            None => format!("{{\"event_type\":\"order.created\",\"order_id\":\"o-{i}\",\"total\":\"{i}.50\"}}"),
        };
        p.post_key(&id, &body).await;
        sent.insert(id, body);
    }
    // `std`: signed by the svix library.
    let svix: Vec<(String, String)> =
        (0..3).map(|i| (format!("msg_{}_{i}", p.prefix), format!("{{\"type\":\"invoice.paid\",\"n\":{i}}}"))).collect();
    let requests: Vec<Value> = svix
        .iter()
        .map(|(id, body)| json!({"lib": "svix", "secret": p.whsec, "msg_id": id, "timestamp": unix_now(), "payload": body}))
        .collect();
    let signed = python::sign(&Value::Array(requests)).await;
    for ((id, body), headers) in svix.iter().zip(&signed) {
        let mut req = hooklake_tests::http::client()
            .post(p.ingest.url("std"))
            .header("content-type", "application/json")
            .body(body.clone());
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
        let r = req.send().await.expect("POST");
        assert_eq!(r.status().as_u16(), 200, "svix-signed {id}");
    }
    let after = unix_now() + 1;

    let stdout = p.once().await;
    let run_id = stdout.strip_prefix("run ").and_then(|s| s.split(':').next()).expect("run id").to_owned();
    assert_eq!(reported(&stdout, "records"), 15, "{stdout}");
    assert_eq!(reported(&stdout, "duplicates dropped"), 0, "{stdout}");

    let keys = p.lake.read(&p.keys_table()).await;
    assert_eq!(keys.message_ids(), sent.keys().cloned().collect::<Vec<_>>());
    for row in keys.rows() {
        let id = row["message_id"].as_str().unwrap();
        assert_eq!(row["payload"].as_str().unwrap(), sent[id], "payload of {id}, byte for byte");
        assert_eq!(row["source"], "keys");
        let expected_type = match sent[id].as_str() {
            b if b.starts_with('[') => Value::Null,
            b => serde_json::from_str::<Value>(b).unwrap()["event_type"].clone(),
        };
        assert_eq!(row["event_type"], expected_type, "event_type of {id}");
        let received = row["webhook_received_at"].as_i64().unwrap() / 1_000_000;
        assert!((before as i64..=after as i64).contains(&received), "webhook_received_at of {id}: {received}");
        assert!(row["loaded_at"].as_i64().unwrap() >= row["webhook_received_at"].as_i64().unwrap());
        assert_eq!(row["headers"]["content-type"], "application/json", "forwarded headers of {id}");
        assert!(row["headers"].get("x-api-key").is_none(), "the API key is never stored");
        assert!(matches!(row["kafka_partition"].as_i64(), Some(0 | 1)));
        assert!(row["kafka_offset"].as_i64().unwrap() >= 0);
    }
    // Every Kafka position appears once.
    let mut positions: Vec<(i64, i64)> = keys
        .rows()
        .iter()
        .map(|r| (r["kafka_partition"].as_i64().unwrap(), r["kafka_offset"].as_i64().unwrap()))
        .collect();
    positions.sort();
    positions.dedup();
    assert_eq!(positions.len(), 12);

    // One append snapshot with the offsets and the run id; offsets also in the properties.
    let snapshots = keys.snapshots();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    assert_eq!(snapshots[0]["operation"], "append");
    assert_eq!(snapshots[0]["summary"]["hooklake.run-id"], run_id.as_str());
    assert_eq!(summary_total(&snapshots[0]["summary"], &p.keys_topic()), 12);
    assert_eq!(property_total(&keys, &p.keys_topic()), 12, "hooklake.offset.<topic>.<partition> properties");
    assert_eq!(keys.0["partition_spec"], json!(["day(webhook_received_at)"]));

    let std = p.lake.read(&p.std_table()).await;
    assert_eq!(std.message_ids(), sorted(svix.iter().map(|(id, _)| id.clone()).collect()));
    for row in std.rows() {
        let id = row["message_id"].as_str().unwrap();
        let body = &svix.iter().find(|(i, _)| i == id).unwrap().1;
        assert_eq!(row["payload"].as_str().unwrap(), body);
        assert_eq!(row["source"], "std");
        assert_eq!(row["event_type"], "invoice.paid");
    }
    assert!(std.rows().iter().all(|r| r["headers"].get("svix-signature").is_none()), "signatures are never stored");

    // Nothing new: the run commits nothing.
    let stdout = p.once().await;
    assert_eq!(reported(&stdout, "records"), 0, "{stdout}");
    assert_eq!(p.lake.read(&p.keys_table()).await.snapshots().len(), 1);
    assert_eq!(p.lake.read(&p.std_table()).await.snapshots().len(), 1);

    // New data: one more snapshot, rows appended once.
    let more = p.post_keys("late", 3).await;
    p.once().await;
    let keys = p.lake.read(&p.keys_table()).await;
    assert_eq!(keys.snapshots().len(), 2);
    assert_eq!(keys.message_ids(), sorted(sent.keys().cloned().chain(more).collect()));
    // The new snapshot's summary covers the partitions of its own commit; the properties
    // cover every partition.
    assert_eq!(property_total(&keys, &p.keys_topic()), 15);
    let offsets: Value =
        serde_json::from_str(keys.snapshots()[1]["summary"]["hooklake.offsets"].as_str().unwrap()).unwrap();
    for (partition, next) in offsets[p.keys_topic()].as_object().expect("the topic in the summary") {
        let property = keys.property(&format!("hooklake.offset.{}.{partition}", p.keys_topic()));
        assert_eq!(property, Some(next.as_i64().unwrap().to_string().as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_catalog_end_to_end() {
    end_to_end(TestLake::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_catalog_end_to_end() {
    end_to_end(TestLake::postgres()).await;
}

/// Killed with SIGKILL at `point` during its first run, the sink's next run loads
/// every record exactly once.
async fn crash_at(point: &str, rows_after_crash: Option<usize>) {
    let p = Pipeline::start(TestLake::sqlite()).await;
    let first = p.post_keys("before", 10).await;
    sink::once_killed_at(&p.config, point, &[]).await;
    if let Some(n) = rows_after_crash {
        assert_eq!(p.lake.read(&p.keys_table()).await.rows().len(), n, "the table after the crash");
    }
    let second = p.post_keys("after", 5).await;
    p.once().await;
    let table = p.lake.read(&p.keys_table()).await;
    assert_eq!(table.message_ids(), sorted(first.into_iter().chain(second).collect()));
    // And a run after that finds nothing to do.
    assert_eq!(reported(&p.once().await, "records"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_before_files_loses_and_duplicates_nothing() {
    crash_at(failpoint::BEFORE_FILES, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_files_before_the_table_commit_loses_and_duplicates_nothing() {
    crash_at(failpoint::AFTER_FILES, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_the_table_commit_before_the_group_commit_loses_and_duplicates_nothing() {
    crash_at(failpoint::AFTER_TABLE_COMMIT, Some(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_racing_sinks_load_every_row_once() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    let ids = p.post_keys("race", 200).await;
    // Different consumer groups: both read everything, both try to commit it.
    let rival = p.test_config.clone().sink("group_id", format!("{}-rival", p.prefix));
    let other = sink::write_config(&p.lake.path(), &rival.to_toml());
    let (a, b) = tokio::join!(
        sink::once(&p.config, &[], Duration::from_secs(300)),
        sink::once(&other, &[], Duration::from_secs(300))
    );
    assert!(a.success, "first sink: {}\n{}", a.stdout, a.stderr);
    assert!(b.success, "second sink: {}\n{}", b.stdout, b.stderr);
    let table = p.lake.read(&p.keys_table()).await;
    assert_eq!(table.message_ids(), sorted(ids), "no loss, no duplicate");
    let loaded = reported(&a.stdout, "rows in") + reported(&b.stdout, "rows in");
    assert_eq!(loaded, 200, "the two runs together loaded each row once:\n{}\n{}", a.stdout, b.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_deliveries_become_one_row_within_and_across_runs() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    p.post_key("dup-a", "{\"n\":1}").await;
    p.post_key("dup-a", "{\"n\":1}").await;
    p.post_key("dup-b", "{\"n\":2}").await;
    let stdout = p.once().await;
    assert_eq!(reported(&stdout, "duplicates dropped"), 1, "{stdout}");
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), ["dup-a", "dup-b"]);

    p.post_key("dup-a", "{\"n\":1}").await;
    p.post_key("dup-c", "{\"n\":3}").await;
    let stdout = p.once().await;
    assert_eq!(reported(&stdout, "duplicates dropped"), 1, "{stdout}");
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), ["dup-a", "dup-b", "dup-c"]);
}

#[tokio::test]
async fn sink_once_on_a_terminal_shows_a_progress_bar_and_a_summary() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    p.post_keys("bar", 300).await;
    // `script` gives the run a pseudo-terminal and copies what it drew to stdout.
    let command =
        format!("{} sink --once --config {}", hooklake_tests::tools::hooklake_bin().display(), p.config.display());
    let out = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("script (util-linux) runs");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("loading") && screen.contains("/300 records"), "no progress bar drawn:\n{screen}");
    assert!(screen.contains("300 records → 300 rows"), "no summary:\n{screen}");
    assert_eq!(p.lake.read(&p.keys_table()).await.rows().len(), 300);

    // Without a terminal (CI, Kubernetes logs) the same run draws nothing.
    p.post_keys("nobar", 5).await;
    let out = sink::once(&p.config, &[], Duration::from_secs(120)).await;
    assert!(out.success && out.stdout.contains("5 records → 5 rows"), "{}\n{}", out.stdout, out.stderr);
    assert!(!out.stderr.contains("/5 records"), "a bar was drawn without a terminal:\n{}", out.stderr);
}

/// The dedupe window is anchored on when ingest received a record, not on when the sink
/// loads it: a sender's retry that waited in Kafka through a sink outage longer than the
/// window still meets its first delivery in the table.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_loaded_after_an_outage_longer_than_the_dedupe_window_is_still_a_duplicate() {
    let p = Pipeline::start(TestLake::sqlite()).await;
    const WINDOW_SECS: u64 = 4;
    let windowed = p.test_config.clone().sink("dedupe_window", format!("{WINDOW_SECS}s"));
    std::fs::write(&p.config, windowed.to_toml()).unwrap();

    p.post_key("retried-1", "{\"try\":1}").await;
    let stdout = p.once().await;
    assert_eq!(reported(&stdout, "rows in"), 1, "{stdout}");
    p.post_key("retried-1", "{\"try\":2}").await;
    let retried_at = unix_now();
    // The sink is "down" until the retry is older than the window.
    eventually(Duration::from_secs(WINDOW_SECS + 5), "the retry to age past the window", || async {
        (unix_now() > retried_at + WINDOW_SECS + 1).then_some(())
    })
    .await;
    let stdout = p.once().await;
    assert_eq!(reported(&stdout, "duplicates dropped"), 1, "{stdout}");
    assert_eq!(p.lake.read(&p.keys_table()).await.message_ids(), vec!["retried-1".to_owned()]);
}
