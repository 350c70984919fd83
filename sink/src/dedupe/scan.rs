//! The message ids a table already holds, read from its data files by time range.

use arrow_array::{Array, cast::AsArray, types::TimestampMicrosecondType};
use futures::TryStreamExt;
use hooklake_schemas::table::columns;
use iceberg::{expr::Reference, spec::Datum, table::Table};

use super::{fingerprint::fingerprint, seen::SeenIds};
use crate::SinkError;

/// Adds to `set` the fingerprints of the ids in `table` with `webhook_received_at` in
/// `[since_micros, until_micros)` (no upper bound when `None`). Only the two columns are
/// read, and only from files whose day partition can hold such rows.
pub async fn add_message_ids(
    table: &Table,
    since_micros: i64,
    until_micros: Option<i64>,
    set: &mut SeenIds,
) -> Result<(), SinkError> {
    if table.metadata().current_snapshot().is_none() {
        return Ok(());
    }
    let received = || Reference::new(columns::WEBHOOK_RECEIVED_AT);
    let mut filter = received().greater_than_or_equal_to(Datum::timestamptz_micros(since_micros));
    if let Some(until) = until_micros {
        filter = filter.and(received().less_than(Datum::timestamptz_micros(until)));
    }
    let until = until_micros.unwrap_or(i64::MAX);
    let scan = table
        .scan()
        .select([columns::MESSAGE_ID, columns::WEBHOOK_RECEIVED_AT])
        .with_filter(filter)
        .build()
        .map_err(SinkError::catalog("plan the dedupe scan"))?;
    let mut batches = scan.to_arrow().await.map_err(SinkError::catalog("dedupe scan"))?;
    while let Some(batch) = batches.try_next().await.map_err(SinkError::catalog("dedupe scan"))? {
        let (Some(ids), Some(times)) =
            (batch.column_by_name(columns::MESSAGE_ID), batch.column_by_name(columns::WEBHOOK_RECEIVED_AT))
        else {
            return Err(SinkError::TableSchema { what: "the dedupe scan lacks its columns".into(), source: None });
        };
        let ids = ids.as_string::<i32>();
        let times = times.as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            if !times.is_null(i) && (since_micros..until).contains(&times.value(i)) {
                set.insert(fingerprint(ids.value(i))).await?;
            }
        }
    }
    Ok(())
}
