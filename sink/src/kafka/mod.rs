//! The Kafka side of the sink: the group consumer, the dead-letter producer and the lag probe.

mod consumer;
mod dlq;
mod lag;

use hooklake_schemas::config::Config;
use rdkafka::ClientConfig;

pub use self::{
    consumer::{Assignment, GroupConsumer, Incoming, RunReader},
    dlq::{DeadLetters, ensure_dlq_topics},
    lag::{LagProbe, PartitionLag},
};

/// `(topic, partition)`.
pub type TopicPartition = (String, i32);

/// A client configuration with `[kafka]` and its pass-through properties.
pub fn client_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in sink_properties(config) {
        c.set(k, v);
    }
    c
}

/// `[kafka]`'s client properties as the sink uses them: `statistics.interval.ms` is for
/// ingest's producer gauges, and the sink's clients would only log the reports.
pub fn sink_properties(config: &Config) -> impl Iterator<Item = (&str, &str)> {
    config.kafka.client_properties().filter(|(k, _)| *k != "statistics.interval.ms")
}
