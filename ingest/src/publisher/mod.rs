//! Putting records on Kafka behind a small trait: [`KafkaPublisher`] is the real one;
//! `MemoryPublisher` (feature `test-util`) lets HTTP tests inject broker outcomes.

mod generations;
mod kafka;
#[cfg(any(test, feature = "test-util"))]
mod memory;
mod runtime_producer;
mod topics;

use std::{future::Future, sync::Arc, time::Duration};

use rdkafka::Statistics;

use hooklake_schemas::{
    EnvelopeRef,
    kafka::{HEADER_CONTENT_TYPE, HEADER_MESSAGE_ID, HEADER_SOURCE},
};
pub use kafka::{KafkaPublisher, future_record, max_record_bytes, producer_config};
#[cfg(any(test, feature = "test-util"))]
pub use memory::MemoryPublisher;
pub use topics::{ensure_topics, ensure_topics_with};

/// One record to produce.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    pub topic: Arc<str>,
    /// The envelope's `message_id`: all deliveries of one webhook land in one partition.
    pub key: String,
    pub value: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl OutgoingRecord {
    /// The record of one envelope, as docs/design.md ("Kafka record") fixes it: keyed by
    /// `message_id`, `value` the encoded envelope. With `headers` (`ingest.record_headers`)
    /// it also carries the `hooklake-source`, `hooklake-message-id` and `content-type`
    /// headers, `content_type` naming the value's framing.
    pub fn for_envelope(
        topic: Arc<str>,
        envelope: &EnvelopeRef<'_>,
        value: Vec<u8>,
        headers: bool,
        content_type: &str,
    ) -> Self {
        let headers = if headers {
            vec![
                (HEADER_SOURCE, envelope.source.to_owned()),
                (HEADER_MESSAGE_ID, envelope.message_id.to_owned()),
                (HEADER_CONTENT_TYPE, content_type.to_owned()),
            ]
        } else {
            Vec::new()
        };
        Self { topic, key: envelope.message_id.to_owned(), value, headers }
    }
}

/// Where the broker stored an acknowledged record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Every produce outcome that is not an acknowledgement, classified for the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The broker may take it later: queue full, broker down, timeout, leader moving (503).
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
    /// The broker will never take this record: it is too large (413).
    #[error("the record is too large for Kafka: {0}")]
    TooLarge(String),
    /// The producer is broken and the process must restart (503; `/livez` fails).
    #[error("the Kafka producer failed: {0}")]
    Fatal(String),
    /// The record's topic does not exist (503 for its source only; nothing was sent).
    #[error("topic {0} does not exist")]
    TopicMissing(String),
}

pub trait Publisher: Send + Sync + 'static {
    /// Produces `record` and resolves once the broker acknowledged it (acks=all), or with
    /// an error no later than `timeout`.
    fn publish(
        &self,
        record: OutgoingRecord,
        timeout: Duration,
    ) -> impl Future<Output = Result<Delivered, PublishError>> + Send;

    /// Records waiting for an acknowledgement.
    fn queue_len(&self) -> usize;

    /// Whether the broker can be reached. Also refreshes what [`Publisher::topic_ready`] says.
    fn check_ready(&self) -> impl Future<Output = Result<(), String>> + Send;

    /// False when the broker's last metadata answer lacked `topic` (its source cannot
    /// take webhooks); true when it held it or nothing is known yet.
    fn topic_ready(&self, _topic: &str) -> bool {
        true
    }

    /// librdkafka's last statistics report of the current producer, if one arrived.
    fn kafka_statistics(&self) -> Option<Arc<Statistics>> {
        None
    }

    /// False once the producer hit a fatal error.
    fn is_alive(&self) -> bool;

    /// Waits until queued records are acknowledged or `timeout` passes (on shutdown).
    fn flush(&self, timeout: Duration) -> impl Future<Output = ()> + Send;
}
