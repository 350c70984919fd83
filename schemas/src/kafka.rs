//! Names shared by everything that reads or writes hooklake's Kafka records.

/// Record header: the source name.
pub const HEADER_SOURCE: &str = "hooklake-source";
/// Record header: the envelope's `message_id` (also the record key).
pub const HEADER_MESSAGE_ID: &str = "hooklake-message-id";
/// Record header: how the value is encoded (see [`CONTENT_TYPE_SINGLE_OBJECT`]).
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// DLQ record header: why the record could not be loaded.
pub const HEADER_ERROR: &str = "hooklake-error";
/// DLQ record header: `<topic>/<partition>/<offset>` of the original record.
pub const HEADER_ORIGIN: &str = "hooklake-origin";

/// `content-type` of a value in Avro single-object encoding.
pub const CONTENT_TYPE_SINGLE_OBJECT: &str = "application/vnd.hooklake.webhook-envelope.v1+avro; framing=single-object";
/// `content-type` of a value in the Confluent wire format.
pub const CONTENT_TYPE_CONFLUENT: &str = "application/vnd.hooklake.webhook-envelope.v1+avro; framing=confluent";

/// The dead-letter topic of a source topic.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Largest request head (request line and headers) ingest reads; hyper answers 431 beyond
/// it. It also bounds what a request can add to its Kafka record besides the body.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 << 10;

/// The largest record a request within `max_body_bytes` can make: the payload, an event
/// type taken from it (at most as long again), the forwarded headers, message id and Kafka
/// headers (all from the request head), and the Avro and Kafka framing (well under the
/// fixed slack). librdkafka's default `message.max.bytes` (1,000,000) would refuse bodies
/// near the default cap of 1 MiB. The sink's dead letters copy such a record and add two
/// short headers: [`max_dead_letter_bytes`].
pub fn max_record_bytes(max_body_bytes: u64) -> u64 {
    const FRAMING_SLACK: u64 = 16 << 10;
    2 * max_body_bytes + MAX_REQUEST_HEAD_BYTES as u64 + FRAMING_SLACK
}

/// The largest dead letter: a record of [`max_record_bytes`] with the error and origin
/// headers (error messages are short; 8 KiB leaves room).
pub fn max_dead_letter_bytes(max_body_bytes: u64) -> u64 {
    max_record_bytes(max_body_bytes) + (8 << 10)
}
