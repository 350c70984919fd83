//! Everything a sink run can fail with.

use hooklake_schemas::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("catalog: {0}")]
    Catalog(String),
    /// Another writer committed to the table since this run planned: re-read and re-plan.
    #[error("commit conflict on {0}: another writer committed first")]
    Conflict(String),
    /// The consumer group moved partitions during the run: re-plan with the new assignment.
    #[error("the partition assignment changed during the run")]
    Rebalanced,
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("{0}")]
    Io(String),
    #[error("the run made no progress: {0}")]
    Stalled(String),
    /// A table's offsets are past the end of their partition: the topic was recreated or
    /// the table copied. Loading from the topic's start could duplicate or skip records,
    /// so the run refuses until an operator repairs the offsets.
    #[error("table offsets ahead of the topic (recreated topic or copied table?): {0}")]
    OffsetsAhead(String),
}

impl SinkError {
    /// Maps an iceberg error, saying what was being done.
    pub fn catalog(what: &'static str) -> impl Fn(iceberg::Error) -> SinkError {
        move |e| SinkError::Catalog(format!("{what}: {e}"))
    }

    pub fn kafka(what: &'static str) -> impl Fn(rdkafka::error::KafkaError) -> SinkError {
        move |e| SinkError::Kafka(format!("{what}: {e}"))
    }

    /// Errors after which the run starts over from the table's offsets.
    pub fn is_replan(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::Rebalanced)
    }
}
