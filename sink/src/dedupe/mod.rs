//! Duplicate deliveries: a record whose `message_id` is already in its table within the
//! dedupe window, or earlier in the same run, is dropped.
//!
//! The window is anchored on each record's `webhook_received_at`, not on the run's time:
//! after a sink outage longer than the window, a sender's retry still meets its first try.
//! [`TableIds`] loads the table's ids lazily, from the earliest time a record of the run
//! needs, and extends downwards when an older record arrives.
//!
//! Modules, each using only the ones above it: `fingerprint` (128-bit fingerprints of ids),
//! `seen` (a set of fingerprints in bounded memory), `scan` (the ids a table holds in a
//! time range).

mod fingerprint;
mod scan;
mod seen;

use iceberg::table::Table;

pub use self::{
    fingerprint::{Fingerprints, IdentityHasher, fingerprint},
    scan::add_message_ids,
    seen::{SPILL_AT, SeenIds},
};
use crate::SinkError;

/// When a record needs the table's ids from before what is loaded, this much more is
/// loaded at once, so records a little out of order do not each cost a scan.
const EXTEND_MICROS: i64 = 10 * 60 * 1_000_000;

/// The message ids of one table from `since` on (the table's, then the run's own).
#[derive(Debug, Default)]
pub struct TableIds {
    ids: SeenIds,
    /// The earliest `webhook_received_at` loaded from the table; `None` before the first
    /// record asked.
    since_micros: Option<i64>,
}

impl TableIds {
    /// Whether `message_id`, received at `received_micros`, is new: not in `table` within
    /// `window_micros` before it, nor seen earlier in this run. A new id is remembered.
    pub async fn insert_new(
        &mut self,
        table: &Table,
        message_id: &str,
        received_micros: i64,
        window_micros: i64,
    ) -> Result<bool, SinkError> {
        let since = received_micros - window_micros;
        if self.since_micros.is_none_or(|loaded| since < loaded) {
            let from = since - EXTEND_MICROS;
            // The part already loaded is not scanned again.
            add_message_ids(table, from, self.since_micros, &mut self.ids).await?;
            self.since_micros = Some(from);
        }
        self.ids.insert(fingerprint(message_id)).await
    }
}
