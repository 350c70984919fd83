//! Duplicate deliveries: 128-bit fingerprints of message ids, and the ids a table already
//! holds within the dedupe window.
//!
//! A fingerprint is two independent 64-bit SipHashes; two different ids share one with
//! probability about n²/2¹²⁹ (nil in practice even at billions of ids), so a dropped row is
//! a real duplicate. [`SeenIds`] keeps them in bounded memory.

use std::{
    collections::HashSet,
    hash::{BuildHasherDefault, Hash, Hasher},
};

use arrow_array::{Array, cast::AsArray, types::TimestampMicrosecondType};
use futures::TryStreamExt;
use hooklake_schemas::table::columns;
use iceberg::{expr::Reference, spec::Datum, table::Table};

use super::seen::SeenIds;
use crate::SinkError;

/// The fingerprint of a message id.
pub fn fingerprint(message_id: &str) -> u128 {
    let half = |salt: u8| {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        message_id.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0x5a)) << 64) | u128::from(half(0xa5))
}

/// Fingerprints are already uniformly random: the set uses them as their own hash.
#[derive(Debug, Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A set of message-id fingerprints in memory.
pub type Fingerprints = HashSet<u128, BuildHasherDefault<IdentityHasher>>;

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
            return Err(SinkError::Catalog("the dedupe scan lacks its columns".into()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        assert_eq!(fingerprint("msg_1"), fingerprint("msg_1"));
        assert_ne!(fingerprint("msg_1"), fingerprint("msg_2"));
        let mut set = Fingerprints::default();
        for i in 0..100_000 {
            assert!(set.insert(fingerprint(&format!("id-{i}"))));
        }
        assert!(!set.insert(fingerprint("id-77")));
    }
}
