//! Everything a sink run can fail with.
//!
//! Each variant names the dependency that failed (Kafka, the schema registry, the
//! catalog, storage) and keeps the error it came from as its `source()`, so a registry
//! outage reads as one and a caller can tell the cases apart by variant, not by text.
//! The message also includes the source's text: a run's status (`GET /runs/{id}`) and the
//! log line of a failed run are one string an operator reads.

use hooklake_schemas::{SchemaError, config::ConfigError};
use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};

/// An error from below that is only carried, not inspected.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Kafka cluster: metadata, watermarks, reading, the consumer group, the DLQ.
    #[error("kafka: {what}: {source}")]
    Kafka {
        what: &'static str,
        #[source]
        source: KafkaError,
    },
    /// The broker refused to create a topic the sink needs.
    #[error("kafka: cannot create topic {topic}: {code}")]
    TopicCreation { topic: String, code: RDKafkaErrorCode },
    /// The schema registry could not be asked about a record's schema id. The run fails
    /// and the next one retries, rather than dead-lettering every record of an outage.
    #[error(transparent)]
    Registry(SchemaError),
    /// The Iceberg catalog: loading, creating and committing tables, scanning them.
    /// (Boxed: an iceberg error is large, and every `Result` of the sink carries this enum.)
    #[error("catalog: {what}: {source}")]
    Catalog {
        what: &'static str,
        #[source]
        source: Box<iceberg::Error>,
    },
    /// Files: the warehouse (Parquet data files), the SQLite catalog's directory, the
    /// dedupe spill files.
    #[error("storage: {what}: {source}")]
    Storage {
        what: String,
        #[source]
        source: BoxError,
    },
    /// A task the sink waited for panicked or was cancelled.
    #[error("task: {what}: {source}")]
    Join {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The table schema is not the contract's (a table altered outside hooklake, or a bug).
    #[error("table schema: {what}")]
    TableSchema {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Dead letters of these source topics did not reach their DLQ; their tables keep
    /// their offsets, the other tables committed.
    #[error("dead letters not delivered: {0}")]
    DeadLetters(String),
    /// Another writer committed to the table since this run planned: re-read and re-plan.
    #[error("commit conflict on {0}: another writer committed first")]
    Conflict(String),
    /// The consumer group moved partitions during the run: re-plan with the new assignment.
    #[error("the partition assignment changed during the run")]
    Rebalanced,
    /// The consumer group gave this instance no assignment at all (it never completed a
    /// join), so the run cannot know whether records wait for it.
    #[error(
        "no partition assignment from consumer group {group} after {seconds}s: the group coordinator is unreachable or the join failed"
    )]
    Unassigned { group: String, seconds: u64 },
    #[error("the run made no progress: {0}")]
    Stalled(String),
    /// A table's offsets are past the end of their partition: the topic was recreated or
    /// the table copied. Loading from the topic's start could duplicate or skip records,
    /// so the run refuses until an operator repairs the offsets.
    #[error("table offsets ahead of the topic (recreated topic or copied table?): {0}")]
    OffsetsAhead(String),
}

impl SinkError {
    /// Maps an iceberg catalog error, saying what was being done.
    pub fn catalog(what: &'static str) -> impl Fn(iceberg::Error) -> SinkError {
        move |source| SinkError::Catalog { what, source: Box::new(source) }
    }

    /// Maps a Kafka client error, saying what was being done.
    pub fn kafka(what: &'static str) -> impl Fn(KafkaError) -> SinkError {
        move |source| SinkError::Kafka { what, source }
    }

    /// Maps a file error (warehouse or local), saying what was being done.
    pub fn storage<E: Into<BoxError>>(what: impl Into<String>) -> impl FnOnce(E) -> SinkError {
        move |source| SinkError::Storage { what: what.into(), source: source.into() }
    }

    /// Maps the failure of a task the sink waited for.
    pub fn join(what: &'static str) -> impl Fn(tokio::task::JoinError) -> SinkError {
        move |source| SinkError::Join { what, source }
    }

    /// The contract schema does not hold: `what`, caused by `source`.
    pub fn table_schema<E: Into<BoxError>>(what: &'static str) -> impl FnOnce(E) -> SinkError {
        move |source| SinkError::TableSchema { what: what.to_owned(), source: Some(source.into()) }
    }

    /// Errors of a dependency that may come back (the broker, the catalog, the schema
    /// registry): the service waits for it at start-up instead of exiting.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Kafka { .. } | Self::Registry(_) | Self::Catalog { .. })
    }

    /// Errors after which the run starts over from the table's offsets.
    pub fn is_replan(&self) -> bool {
        matches!(self, Self::Conflict(_) | Self::Rebalanced)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn the_source_error_is_kept_and_named() {
        let e =
            SinkError::kafka("fetch watermarks")(KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure));
        assert!(e.to_string().starts_with("kafka: fetch watermarks: "), "{e}");
        assert!(e.source().is_some_and(|s| s.is::<KafkaError>()));

        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let e = SinkError::storage("write a dedupe spill file")(io);
        assert_eq!(e.to_string(), "storage: write a dedupe spill file: no space left");
        assert!(e.source().is_some_and(|s| s.is::<std::io::Error>()));

        let e = SinkError::Registry(SchemaError::Registry("connection refused".into()));
        assert_eq!(e.to_string(), "schema registry: connection refused");
    }

    #[test]
    fn only_a_dependency_out_of_reach_is_waited_for_at_start_up() {
        let unreachable = iceberg::Error::new(iceberg::ErrorKind::Unexpected, "connection refused");
        assert!(SinkError::catalog("connect to the SQL catalog")(unreachable).is_unavailable());
        assert!(
            SinkError::kafka("topic metadata")(KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown))
                .is_unavailable()
        );
        assert!(SinkError::Registry(SchemaError::Registry("connection refused".into())).is_unavailable());
        let config = SinkError::Config(ConfigError::invalid("sink", "schedule: not a duration"));
        assert!(!config.is_unavailable(), "a configuration does not mend by waiting");
        let dir = SinkError::storage("create /lake")(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert!(!dir.is_unavailable());
    }
}
