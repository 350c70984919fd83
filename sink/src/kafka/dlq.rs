//! The dead-letter topic `<topic>.dlq`: records that cannot be decoded go there with the
//! reason in a header, and the run goes on. The run commits its offsets only after every
//! dead letter is acknowledged, so none is lost.

use std::time::Duration;

use hooklake_schemas::kafka::{HEADER_ERROR, HEADER_ORIGIN, dlq_topic};
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
        Ok(Self { producer: c.create().map_err(SinkError::kafka("create the DLQ producer"))?, pending: Vec::new() })
    }

    /// Sends `record` to its topic's DLQ with `error`; acknowledged by [`DeadLetters::flush`].
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
        let delivery = self.producer.send_result(out).map_err(|(e, _)| SinkError::Kafka(format!("DLQ send: {e}")))?;
        self.pending.push((record.topic().to_owned(), delivery));
        Ok(())
    }

    /// Waits for every dead letter sent so far; returns how many went to each source topic's DLQ.
    pub async fn flush(&mut self) -> Result<Vec<String>, SinkError> {
        let mut topics = Vec::with_capacity(self.pending.len());
        for (topic, delivery) in self.pending.drain(..) {
            match tokio::time::timeout(Duration::from_secs(60), delivery).await {
                Ok(Ok(Ok(_))) => topics.push(topic),
                Ok(Ok(Err((e, _)))) => return Err(SinkError::Kafka(format!("DLQ delivery: {e}"))),
                Ok(Err(_)) | Err(_) => return Err(SinkError::Kafka("DLQ delivery was not confirmed".into())),
            }
        }
        Ok(topics)
    }
}
