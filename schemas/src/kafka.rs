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

/// A topic hooklake needed could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    /// The admin client could not be made or the request failed.
    #[error("cannot create topics: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The broker answered the request with an error for this topic.
    #[error("cannot create topic {topic}: {code}")]
    Refused { topic: String, code: rdkafka::types::RDKafkaErrorCode },
}

/// Creates each of `topics` that does not exist yet, with `kafka.topic_partitions`,
/// `kafka.topic_replication_factor` and the topic-level `settings` (e.g.
/// `max.message.bytes`); existing topics are left alone. Returns the topics it created.
/// Ingest creates the source topics and their DLQs, the sink the DLQs
/// (`kafka.create_topics`): neither counts on the other having run first.
pub async fn ensure_topics(
    kafka: &crate::config::KafkaConfig,
    topics: &[String],
    settings: &[(&str, &str)],
) -> Result<Vec<String>, TopicError> {
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
        types::RDKafkaErrorCode,
    };
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::from_iter(kafka.client_properties().map(|(k, v)| (k.to_owned(), v.to_owned())))
            .create()
            .map_err(|e| kafka.redact_error(e))?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let topic =
                NewTopic::new(t, kafka.topic_partitions, TopicReplication::Fixed(kafka.topic_replication_factor));
            settings.iter().fold(topic, |topic, (k, v)| topic.set(k, v))
        })
        .collect();
    let timeout = Some(std::time::Duration::from_secs(5));
    let options = AdminOptions::new().operation_timeout(timeout).request_timeout(timeout);
    let mut created = Vec::new();
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(TopicError::Refused { topic, code }),
        }
    }
    Ok(created)
}
