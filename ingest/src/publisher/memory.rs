//! An in-memory [`Publisher`] for tests of the HTTP layer: it stores records, answers
//! with an injected error, or holds every publish as a broker that has not acknowledged yet.

use std::{sync::Mutex, time::Duration};

use super::{Delivered, OutgoingRecord, PublishError, Publisher};

#[derive(Debug)]
pub struct MemoryPublisher {
    records: Mutex<Vec<OutgoingRecord>>,
    fail_with: Mutex<Option<PublishError>>,
    /// While true, publishes wait.
    held: tokio::sync::watch::Sender<bool>,
}

impl Default for MemoryPublisher {
    fn default() -> Self {
        Self { records: Mutex::default(), fail_with: Mutex::default(), held: tokio::sync::watch::Sender::new(false) }
    }
}

impl MemoryPublisher {
    /// While `held`, every publish waits, as for a broker's acknowledgement; released, the
    /// waiting ones go on.
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }

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
        let _ = self.held.subscribe().wait_for(|held| !*held).await;
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
