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
    client_config_over(config, &[])
}

/// [`client_config`] on top of `defaults`, which the pass-through properties may override.
pub fn client_config_over(config: &Config, defaults: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in defaults.iter().copied().chain(config.kafka.client_properties()) {
        c.set(k, v);
    }
    c
}
