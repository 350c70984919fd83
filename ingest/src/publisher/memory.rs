//! An in-memory [`Publisher`] for tests of the HTTP layer: it stores records, or answers
//! with an injected error.

use std::{sync::Mutex, time::Duration};

use super::{Delivered, OutgoingRecord, PublishError, Publisher};

#[derive(Debug, Default)]
pub struct MemoryPublisher {
    records: Mutex<Vec<OutgoingRecord>>,
    fail_with: Mutex<Option<PublishError>>,
}

impl MemoryPublisher {
    /// Every later publish fails with `error` (or succeeds again with `None`).
    pub fn fail_with(&self, error: Option<PublishError>) {
        *self.fail_with.lock().expect("not poisoned") = error;
    }

    pub fn records(&self) -> Vec<OutgoingRecord> {
        self.records.lock().expect("not poisoned").clone()
    }
}

impl Publisher for MemoryPublisher {
    async fn publish(&self, record: OutgoingRecord, _timeout: Duration) -> Result<Delivered, PublishError> {
        if let Some(e) = self.fail_with.lock().expect("not poisoned").clone() {
            return Err(e);
        }
        let mut records = self.records.lock().expect("not poisoned");
        records.push(record);
        Ok(Delivered { partition: 0, offset: records.len() as i64 - 1 })
    }

    fn queue_len(&self) -> usize {
        0
    }

    async fn check_ready(&self) -> Result<(), String> {
        Ok(())
    }

    fn is_alive(&self) -> bool {
        true
    }

    async fn flush(&self, _timeout: Duration) {}
}
