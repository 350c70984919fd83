//! Queue lag: how many records of each partition are not in the table yet, and how old
//! the oldest of them is. Measured with a consumer outside the group that never commits.

use std::{collections::HashMap, time::Duration};

use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

use super::{TopicPartition, client_config};
use crate::SinkError;

/// The lag of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub messages: i64,
    /// Unix milliseconds of the oldest unloaded record, when there is one.
    pub oldest_ms: Option<i64>,
}

/// Its Kafka client is created on first use, so `--once`, which never measures lag, has
/// none.
pub struct LagProbe {
    config: rdkafka::ClientConfig,
    consumer: std::sync::OnceLock<BaseConsumer>,
}

impl std::fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LagProbe")
    }
}

impl LagProbe {
    pub fn new(config: &hooklake_schemas::config::Config, group_id: &str) -> Self {
        let mut c = client_config(config);
        c.set("group.id", format!("{group_id}-lag-probe")).set("enable.auto.commit", "false");
        Self { config: c, consumer: std::sync::OnceLock::new() }
    }

    fn consumer(&self) -> Result<&BaseConsumer, SinkError> {
        if let Some(c) = self.consumer.get() {
            return Ok(c);
        }
        let created = self.config.create().map_err(SinkError::kafka("create the lag probe"))?;
        Ok(self.consumer.get_or_init(|| created))
    }

    /// Partitions of `topic` (empty when the topic does not exist yet).
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>, SinkError> {
        let md = self
            .consumer()?
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .map_err(SinkError::kafka("metadata"))?;
        Ok(md
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect())
    }

    /// The lag of each partition given the next offsets stored in the tables (absent:
    /// nothing loaded yet, so the lag starts at the low watermark). Blocking: call from
    /// a blocking thread.
    pub fn measure(
        &self,
        next: &HashMap<TopicPartition, Option<i64>>,
    ) -> Result<HashMap<TopicPartition, PartitionLag>, SinkError> {
        let consumer = self.consumer()?;
        let mut lags = HashMap::new();
        let mut peek = TopicPartitionList::new();
        for ((topic, partition), stored) in next {
            let (low, high) = consumer
                .fetch_watermarks(topic, *partition, Duration::from_secs(5))
                .map_err(SinkError::kafka("watermarks"))?;
            let from = stored.unwrap_or(low).max(low);
            let messages = (high - from).max(0);
            lags.insert((topic.clone(), *partition), PartitionLag { messages, oldest_ms: None });
            if messages > 0 {
                peek.add_partition_offset(topic, *partition, Offset::Offset(from))
                    .map_err(SinkError::kafka("assign"))?;
            }
        }
        if peek.count() > 0 {
            self.oldest_timestamps(&peek, &mut lags)?;
        }
        Ok(lags)
    }

    /// Reads the first unloaded record of each partition in `peek` for its timestamp.
    fn oldest_timestamps(
        &self,
        peek: &TopicPartitionList,
        lags: &mut HashMap<TopicPartition, PartitionLag>,
    ) -> Result<(), SinkError> {
        let consumer = self.consumer()?;
        consumer.assign(peek).map_err(SinkError::kafka("assign"))?;
        let mut missing = peek.count();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while missing > 0 && std::time::Instant::now() < deadline {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else { continue };
            let key = (m.topic().to_owned(), m.partition());
            if let Some(lag) = lags.get_mut(&key)
                && lag.oldest_ms.is_none()
            {
                lag.oldest_ms = m.timestamp().to_millis();
                missing -= 1;
                // This partition is answered; stop fetching it.
                let mut one = TopicPartitionList::new();
                one.add_partition(m.topic(), m.partition());
                let _ = consumer.pause(&one);
            }
        }
        // librdkafka keeps a partition's pause flag across assignments: clear it, or the
        // next measurement would never see a record of this partition.
        let _ = consumer.resume(peek);
        let _ = consumer.unassign();
        if missing > 0 {
            tracing::debug!(missing, "no timestamp for some lagging partitions within 5 s");
        }
        Ok(())
    }
}
