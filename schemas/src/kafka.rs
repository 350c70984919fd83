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
