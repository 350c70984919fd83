//! hooklake sink: consumes the source topics on a trigger and appends the webhooks to
//! Apache Iceberg tables, exactly once, with the Kafka offsets stored in the tables
//! (docs/design.md: "Table contract", "Sink runs and triggers", "Exactly once").
//!
//! [`serve`] is `hooklake sink`; [`once`] is `hooklake sink --once`.

pub mod admin;
pub mod decode;
pub mod dedupe;
mod error;
pub mod failpoint;
pub mod kafka;
pub mod lake;
pub mod loader;
pub mod metrics;
pub mod queue;
pub mod run;
pub mod schedule;
pub mod service;
pub mod settings;
mod sink;

pub use error::{BoxError, SinkError};
use hooklake_schemas::config::{Config, ConfigError};
pub use run::{Progress, Quiet, RunReport};
pub use service::{serve, serve_as};
pub use sink::{Membership, Sink};

/// Checks everything the sink would refuse at start-up, without connecting anywhere.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let base = std::env::current_dir().map_err(|e| ConfigError::invalid("sink", e.to_string()))?;
    settings::Settings::from_config(config, &base).map(drop)
}

/// One run to the high watermarks taken at its start, then leave the consumer group.
pub async fn once(config: &Config, progress: &dyn Progress) -> Result<RunReport, SinkError> {
    let sink = Sink::start(config, Membership::All).await?;
    let run_id = uuid::Uuid::now_v7().to_string();
    let result = sink.execute(queue::Trigger::Manual, &run_id, progress).await;
    if let Ok(sink) = std::sync::Arc::try_unwrap(sink) {
        sink.ctx.consumer.close().await;
    }
    result
}
