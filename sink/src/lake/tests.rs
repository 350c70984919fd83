//! The lake layer on iceberg's in-memory catalog: table creation per the contract, one
//! snapshot per commit with the offsets, and a stale writer refused instead of re-applied.

use std::{collections::BTreeMap, sync::Arc};

use hooklake_schemas::{
    WebhookEnvelope,
    config::TableRef,
    table::{SUMMARY_OFFSETS, SUMMARY_RUN_ID, offset_property},
};
use iceberg::{
    CatalogBuilder,
    memory::{MEMORY_CATALOG_WAREHOUSE, MemoryCatalogBuilder},
};
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

use super::*;
use crate::dedupe::{SeenIds, add_message_ids, fingerprint};

/// A lake on iceberg's in-memory catalog, its warehouse in a temporary directory.
pub(crate) async fn lake() -> (Lake, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let catalog = MemoryCatalogBuilder::default()
        .with_storage_factory(Arc::new(OpenDalResolvingStorageFactory::new()))
        .load(
            "test",
            HashMap::from([(MEMORY_CATALOG_WAREHOUSE.to_owned(), format!("file://{}", dir.path().display()))]),
        )
        .await
        .unwrap();
    (Lake::with_catalog(Arc::new(catalog)), dir)
}

fn table() -> TableRef {
    TableRef { layer: "raw".into(), folder: Some("shop".into()), name: "orders".into() }
}

fn envelope(id: &str, received: i64) -> WebhookEnvelope {
    WebhookEnvelope {
        message_id: id.into(),
        source: "orders".into(),
        received_at_micros: received,
        payload: format!("{{\"id\":\"{id}\"}}"),
        event_type: Some("order.created".into()),
        headers: [("user-agent".to_string(), "t".to_string())].into(),
        verified_by: Some("api_key".into()),
    }
}

async fn write(t: &LakeTable, ids: &[&str], received: i64) -> (Vec<DataFile>, WriteStats) {
    let mut w = TableWriter::new(&t.table, "run-test", 8 << 20, received).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let e = envelope(id, received);
        w.push(Row { envelope: &e, partition: 0, offset: i as i64 }).await.unwrap();
    }
    w.close().await.unwrap()
}

const DAY_MICROS: i64 = 86_400_000_000;
const NOV_24_2026: i64 = 1_795_478_400_000_000;

#[tokio::test]
async fn tables_follow_the_contract() {
    let (lake, _dir) = lake().await;
    assert!(lake.load(&table()).await.unwrap().is_none());
    let t = lake.ensure(&table()).await.unwrap();
    let m = t.table.metadata();
    let names: Vec<_> = m.current_schema().as_struct().fields().iter().map(|f| f.name.clone()).collect();
    assert_eq!(names[..3], ["message_id", "payload", "webhook_received_at"]);
    let spec = m.default_partition_spec();
    assert_eq!(spec.fields()[0].name, "webhook_received_at_day");
    assert_eq!(spec.fields()[0].transform, Transform::Day);
    assert_eq!(m.properties()["commit.retry.num-retries"], "0");
    assert_eq!(t.table.identifier().namespace().as_ref(), &vec!["raw".to_string(), "shop".to_string()]);
    assert_eq!(
        lake.ensure(&table()).await.unwrap().table.metadata().uuid(),
        m.uuid(),
        "ensure loads an existing table"
    );
}

#[tokio::test]
async fn a_commit_is_one_snapshot_holding_the_offsets() {
    let (lake, _dir) = lake().await;
    let t = lake.ensure(&table()).await.unwrap();
    let (files, stats) = write(&t, &["a", "b", "c"], NOV_24_2026 + 5).await;
    assert_eq!(stats.rows, 3);
    assert_eq!(stats.files, 1);
    let offsets = BTreeMap::from([(("hooklake.orders".to_string(), 0), 3), (("hooklake.orders".to_string(), 1), 7)]);
    let committed = lake.commit(&t, &TableCommit { files, offsets, run_id: "r1".into() }).await.unwrap();
    let snap = committed.metadata().current_snapshot().unwrap();
    let summary = &snap.summary().additional_properties;
    assert_eq!(summary[SUMMARY_RUN_ID], "r1");
    assert_eq!(summary[SUMMARY_OFFSETS], r#"{"hooklake.orders":{"0":3,"1":7}}"#);
    assert_eq!(committed.metadata().properties()[&offset_property("hooklake.orders", 1)], "7");
    let reloaded = lake.load(&table()).await.unwrap().unwrap();
    assert_eq!(reloaded.next_offset("hooklake.orders", 0), Some(3));
    assert_eq!(reloaded.next_offset("hooklake.orders", 2), None);
    let mut ids = SeenIds::default();
    add_message_ids(&reloaded.table, NOV_24_2026, None, &mut ids).await.unwrap();
    assert!(ids.contains(fingerprint("b")).await.unwrap() && ids.len() == 3);
    let mut none = SeenIds::default();
    add_message_ids(&reloaded.table, NOV_24_2026 + DAY_MICROS, None, &mut none).await.unwrap();
    assert!(none.is_empty(), "rows older than the window are not duplicates");
    let mut before = SeenIds::default();
    add_message_ids(&reloaded.table, 0, Some(NOV_24_2026), &mut before).await.unwrap();
    assert!(before.is_empty(), "the upper bound is exclusive of later rows");
}

/// Two writers plan from the same table; the second must not land on top of the first.
#[tokio::test]
async fn a_stale_writer_is_refused_not_reapplied() {
    let (lake, _dir) = lake().await;
    let planned = lake.ensure(&table()).await.unwrap();
    let (files_a, _) = write(&planned, &["a"], NOV_24_2026).await;
    let (files_b, _) = write(&planned, &["a"], NOV_24_2026).await;
    let offsets = BTreeMap::from([(("t".to_string(), 0), 1)]);
    lake.commit(&planned, &TableCommit { files: files_a, offsets: offsets.clone(), run_id: "a".into() }).await.unwrap();
    let err = lake.commit(&planned, &TableCommit { files: files_b, offsets, run_id: "b".into() }).await.unwrap_err();
    assert!(matches!(err, SinkError::Conflict(_)), "{err}");
    let now = lake.load(&table()).await.unwrap().unwrap();
    assert_eq!(now.table.metadata().snapshots().count(), 1, "only the first writer's snapshot");
    // Planned from the current state, the same commit goes through.
    let (files_c, _) = write(&now, &["c"], NOV_24_2026).await;
    let offsets = BTreeMap::from([(("t".to_string(), 0), 2)]);
    lake.commit(&now, &TableCommit { files: files_c, offsets, run_id: "c".into() }).await.unwrap();
}

/// Replicas share a table with different partitions: a commit refused because another
/// writer got there first may go on top of it only when that writer left its partitions
/// alone; then both writers' rows and offsets are in the table.
#[tokio::test]
async fn a_commit_rebases_onto_a_writer_of_other_partitions_only() {
    let (lake, _dir) = lake().await;
    let planned = lake.ensure(&table()).await.unwrap();
    let commit = |files, partition, next, run: &str| TableCommit {
        files,
        offsets: BTreeMap::from([(("t".to_string(), partition), next)]),
        run_id: run.into(),
    };
    let p0 = commit(write(&planned, &["a"], NOV_24_2026).await.0, 0, 1, "p0");
    let p1 = commit(write(&planned, &["b"], NOV_24_2026).await.0, 1, 1, "p1");
    let p0_again = commit(write(&planned, &["a"], NOV_24_2026).await.0, 0, 1, "p0-again");
    lake.commit(&planned, &p0).await.unwrap();

    let now = lake.reload(&planned).await.unwrap();
    assert!(matches!(lake.commit(&planned, &p1).await, Err(SinkError::Conflict(_))));
    assert!(p1.can_rebase(&planned, &now), "partition 1 was left alone");
    assert!(!p0_again.can_rebase(&planned, &now), "partition 0 moved: the run must re-plan");
    lake.commit(&now, &p1).await.unwrap();

    let after = lake.reload(&now).await.unwrap();
    assert_eq!((after.next_offset("t", 0), after.next_offset("t", 1)), (Some(1), Some(1)));
    let mut ids = SeenIds::default();
    add_message_ids(&after.table, 0, None, &mut ids).await.unwrap();
    assert_eq!(ids.len(), 2, "both writers' rows");
}

#[tokio::test]
async fn rows_of_different_days_go_to_their_day_partitions() {
    let (lake, _dir) = lake().await;
    let t = lake.ensure(&table()).await.unwrap();
    let mut w = TableWriter::new(&t.table, "run-days", 8 << 20, NOV_24_2026).unwrap();
    for (i, day) in [0, 1, 0, 2].iter().enumerate() {
        let e = envelope(&format!("m{i}"), NOV_24_2026 + day * DAY_MICROS + 1);
        w.push(Row { envelope: &e, partition: 0, offset: i as i64 }).await.unwrap();
    }
    let (files, stats) = w.close().await.unwrap();
    assert_eq!((stats.rows, stats.files), (4, 3), "one file per day");
    let mut days: Vec<String> = files.iter().map(|f| format!("{:?}", f.partition())).collect();
    days.sort();
    days.dedup();
    assert_eq!(days.len(), 3);
}
