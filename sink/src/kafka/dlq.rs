//! The dead-letter topic `<topic>.dlq`: records that cannot be decoded go there with the
//! reason in a header, and the run goes on. A table's offsets are committed only after its
//! dead letters are acknowledged, so none is lost: a table whose dead letters were not
//! delivered keeps its offsets (its records are read again), the other tables commit.

use std::{collections::BTreeMap, time::Duration};

use hooklake_schemas::kafka::{
    HEADER_ERROR, HEADER_ORIGIN, TopicError, dlq_topic, ensure_topics, max_dead_letter_bytes,
};
use rdkafka::{
    Message,
    message::{Header, Headers, OwnedHeaders},
    producer::{DeliveryFuture, FutureProducer, FutureRecord},
};

use super::{Incoming, client_config};
use crate::SinkError;

pub struct DeadLetters {
    producer: FutureProducer,
    pending: Vec<(String, DeliveryFuture)>,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").field("pending", &self.pending.len()).finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub fn new(config: &hooklake_schemas::config::Config) -> Result<Self, SinkError> {
        let mut c = client_config(config);
        c.set("enable.idempotence", "true").set("acks", "all").set("message.timeout.ms", "30000");
        // A dead letter copies a record of up to ingest's largest (1 MiB bodies by default).
        if !config.kafka.properties.contains_key("message.max.bytes") {
            c.set("message.max.bytes", max_dead_letter_bytes(config.ingest.max_body_bytes.get()).to_string());
        }
        let producer =
            c.create().map_err(|e| SinkError::kafka("create the DLQ producer")(config.kafka.redact_error(e)))?;
        Ok(Self { producer, pending: Vec::new() })
    }

    /// Sends `record` to its topic's DLQ with `error`; [`DeadLetters::flush`] waits for the
    /// broker's acknowledgement.
    pub fn send(&mut self, record: &Incoming, error: &str) -> Result<(), SinkError> {
        let topic = dlq_topic(record.topic());
        let origin = format!("{}/{}/{}", record.topic(), record.partition(), record.offset());
        let mut headers = OwnedHeaders::new();
        if let Some(h) = record.headers() {
            for header in h.iter() {
                headers = headers.insert(Header { key: header.key, value: header.value });
            }
        }
        headers = headers
            .insert(Header { key: HEADER_ERROR, value: Some(error.as_bytes()) })
            .insert(Header { key: HEADER_ORIGIN, value: Some(origin.as_bytes()) });
        let mut out = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = record.key() {
            out = out.key(key);
        }
        if let Some(value) = record.payload() {
            out = out.payload(value);
        }
        let delivery = self.producer.send_result(out).map_err(|(e, _)| SinkError::kafka("DLQ send")(e))?;
        self.pending.push((record.topic().to_owned(), delivery));
        Ok(())
    }

    /// Waits for every dead letter sent so far. Returns the source topic of each one
    /// delivered, and the source topics whose DLQ failed (with the first error): only
    /// their tables' commits must wait.
    pub async fn flush(&mut self) -> (Vec<String>, BTreeMap<String, String>) {
        let mut delivered = Vec::with_capacity(self.pending.len());
        let mut failed = BTreeMap::new();
        for (topic, delivery) in self.pending.drain(..) {
            let error = match tokio::time::timeout(Duration::from_secs(60), delivery).await {
                Ok(Ok(Ok(_))) => {
                    delivered.push(topic);
                    continue;
                }
                Ok(Ok(Err((e, _)))) => format!("DLQ delivery to {}: {e}", dlq_topic(&topic)),
                Ok(Err(_)) | Err(_) => format!("DLQ delivery to {} was not confirmed", dlq_topic(&topic)),
            };
            failed.entry(topic).or_insert(error);
        }
        (delivered, failed)
    }
}

/// Creates the `<topic>.dlq` of each source topic that lacks one (`kafka.create_topics`):
/// the sink does not count on ingest having created them.
pub async fn ensure_dlq_topics(config: &hooklake_schemas::config::Config, topics: &[String]) -> Result<(), SinkError> {
    let dlqs: Vec<String> = topics.iter().map(|t| dlq_topic(t)).collect();
    let max_message = max_dead_letter_bytes(config.ingest.max_body_bytes.get()).to_string();
    let created =
        ensure_topics(&config.kafka, &dlqs, &[("max.message.bytes", &max_message)]).await.map_err(|e| match e {
            TopicError::Client(source) => SinkError::Kafka { what: "create DLQ topics", source },
            TopicError::Refused { topic, code } => SinkError::TopicCreation { topic, code },
        })?;
    for topic in created {
        tracing::info!(%topic, "created dead-letter topic");
    }
    Ok(())
}
