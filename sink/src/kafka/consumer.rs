//! The sink's Kafka consumers.
//!
//! [`GroupConsumer`] holds the partitions: as a member of the consumer group (replicas
//! share the partitions) or owning every partition (`--once`, `hooklake dev`). It never
//! reads records: its partitions stay paused, and one task polls it so that the group
//! membership is served (heartbeats, rebalances) also while no run is active. Which
//! offsets to read comes from the tables, never from the group (its offsets only mirror
//! the tables', for lag tools).
//!
//! [`RunReader`] reads one run attempt's records: a fresh client assigned to the planned
//! partitions at the tables' offsets. Because nothing outlives the attempt, no record
//! fetched for an earlier attempt (a failed run, a re-plan after a conflict or a
//! rebalance) can reach a later one; each partition's records arrive in offset order
//! from exactly the start the run planned.

use std::{collections::HashMap, sync::Arc, time::Duration};

use rdkafka::{
    ClientConfig, ClientContext, Message, Offset, TopicPartitionList,
    consumer::{
        BaseConsumer, CommitMode, Consumer, ConsumerContext, DefaultConsumerContext, Rebalance, StreamConsumer,
    },
    message::OwnedMessage,
};
use tokio::sync::watch;

use super::{TopicPartition, client_config_over};
use crate::SinkError;

/// The partitions this instance owns, and a counter that changes with every rebalance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub generation: u64,
    pub partitions: Vec<TopicPartition>,
}

#[derive(Debug)]
pub struct GroupContext {
    assignment: watch::Sender<Assignment>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.assignment.send_modify(|a| {
                a.generation += 1;
                a.partitions.clear();
            });
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            // The group consumer never reads: runs read with a `RunReader` of their own.
            if let Err(e) = consumer.pause(tpl) {
                tracing::warn!(error = %e, "cannot pause newly assigned partitions");
            }
            let partitions = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            self.assignment.send_modify(|a| {
                a.generation += 1;
                a.partitions = partitions;
            });
            tracing::info!(partitions = tpl.count(), "partitions assigned");
        }
    }
}

/// A record as the run sees it.
pub type Incoming = OwnedMessage;

pub struct GroupConsumer {
    consumer: Arc<StreamConsumer<GroupContext>>,
    assignment: watch::Receiver<Assignment>,
    /// Polls the group consumer (membership, rebalance callbacks).
    pump: tokio::task::JoinHandle<()>,
    /// A group member's assignment comes later, with a rebalance; `assign_all`'s is final.
    in_group: bool,
    /// The configuration of each attempt's [`RunReader`].
    reader_config: ClientConfig,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer").field("assignment", &*self.assignment.borrow()).finish_non_exhaustive()
    }
}

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

impl GroupConsumer {
    /// Joins `group_id` for `topics`: the service's way, so replicas share the partitions.
    pub fn subscribe(
        config: &hooklake_schemas::config::Config,
        group_id: &str,
        topics: &[String],
    ) -> Result<Self, SinkError> {
        let (consumer, assignment, reader_config) = Self::create(config, group_id)?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs).map_err(SinkError::kafka("subscribe"))?;
        Ok(Self::start(consumer, assignment, reader_config, true))
    }

    /// Takes every partition of `topics` without joining the group: the `--once` way. A
    /// one-off run must cover the whole backlog at once, not wait for a group rebalance
    /// (a killed predecessor keeps its partitions until its session times out). Racing
    /// writers are still safe: the table commit is the arbiter, not the group. Topics that
    /// do not exist yet are skipped (nothing to load).
    pub async fn assign_all(
        config: &hooklake_schemas::config::Config,
        group_id: &str,
        topics: &[String],
    ) -> Result<Self, SinkError> {
        let (consumer, assignment, reader_config) = Self::create(config, group_id)?;
        let consumer = Arc::new(consumer);
        let (c, topics) = (consumer.clone(), topics.to_vec());
        let tpl = tokio::task::spawn_blocking(move || -> Result<TopicPartitionList, SinkError> {
            let mut tpl = TopicPartitionList::new();
            for topic in &topics {
                let md = c.fetch_metadata(Some(topic), METADATA_TIMEOUT).map_err(SinkError::kafka("topic metadata"))?;
                match md.topics().first() {
                    Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                        for p in t.partitions() {
                            tpl.add_partition(topic, p.id());
                        }
                    }
                    _ => tracing::warn!(%topic, "topic does not exist (yet): nothing to load from it"),
                }
            }
            c.assign(&tpl).map_err(SinkError::kafka("assign"))?;
            c.pause(&tpl).map_err(SinkError::kafka("pause"))?;
            Ok(tpl)
        })
        .await
        .map_err(SinkError::join("kafka client task"))??;
        let partitions = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        consumer.context().assignment.send_replace(Assignment { generation: 1, partitions });
        tracing::info!(partitions = tpl.count(), "took every partition of the source topics");
        let consumer = Arc::into_inner(consumer).expect("the metadata task has finished");
        Ok(Self::start(consumer, assignment, reader_config, false))
    }

    /// The consumer settings of the group consumer and of the run readers.
    fn consumer_config(config: &hooklake_schemas::config::Config, group_id: &str) -> ClientConfig {
        let defaults = [
            ("group.id", group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            // tansu's SQLite fetch slows down as a partition grows: ask for a lot per fetch.
            ("fetch.max.bytes", "104857600"),
            ("max.partition.fetch.bytes", "52428800"),
            ("queued.max.messages.kbytes", "262144"),
        ];
        client_config_over(config, &defaults)
    }

    /// The group consumer, its assignment, and the configuration it was made with (the run
    /// readers are made with the same).
    fn create(
        config: &hooklake_schemas::config::Config,
        group_id: &str,
    ) -> Result<(StreamConsumer<GroupContext>, watch::Receiver<Assignment>, ClientConfig), SinkError> {
        let (tx, assignment) = watch::channel(Assignment::default());
        let client_config = Self::consumer_config(config, group_id);
        let consumer: StreamConsumer<GroupContext> = client_config
            .create_with_context(GroupContext { assignment: tx })
            .map_err(|e| SinkError::kafka("create the consumer")(config.kafka.redact_error(e)))?;
        Ok((consumer, assignment, client_config))
    }

    fn start(
        consumer: StreamConsumer<GroupContext>,
        assignment: watch::Receiver<Assignment>,
        reader_config: ClientConfig,
        in_group: bool,
    ) -> Self {
        let consumer = Arc::new(consumer);
        let pump = tokio::spawn(pump(consumer.clone()));
        Self { consumer, assignment, pump, in_group, reader_config }
    }

    pub fn assignment(&self) -> Assignment {
        self.assignment.borrow().clone()
    }

    /// Waits up to `timeout` for a non-empty assignment (joining a group takes a moment;
    /// outside a group the assignment is already final). An empty assignment is an answer
    /// (more replicas than partitions); no assignment at all, because the group never
    /// completed a join, is [`SinkError::Unassigned`]: the run cannot tell whether records
    /// wait for it, so it must not report success.
    pub async fn wait_for_assignment(&self, timeout: Duration) -> Result<Assignment, SinkError> {
        if !self.in_group {
            return Ok(self.assignment());
        }
        let mut rx = self.assignment.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|a| !a.partitions.is_empty())).await;
        let assignment = self.assignment();
        if assignment.generation == 0 {
            let group = self.reader_config.get("group.id").unwrap_or_default().to_owned();
            return Err(SinkError::Unassigned { group, seconds: timeout.as_secs() });
        }
        Ok(assignment)
    }

    /// A reader of `starts`' partitions, each from its offset.
    pub async fn reader(&self, starts: &[(TopicPartition, i64)]) -> Result<RunReader, SinkError> {
        RunReader::open(&self.reader_config, starts).await
    }

    /// Low and high watermarks of a partition.
    pub async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), SinkError> {
        let consumer = self.consumer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)))
            .await
            .map_err(SinkError::join("kafka client task"))?
            .map_err(SinkError::kafka("fetch watermarks"))
    }

    /// Mirrors the tables' offsets into the consumer group (for lag tools).
    pub fn commit_offsets(&self, offsets: &[(TopicPartition, i64)], mode: CommitMode) -> Result<(), SinkError> {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in offsets {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)).map_err(SinkError::kafka("offsets"))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.commit(&tpl, mode).map_err(SinkError::kafka("commit group offsets"))
    }

    /// Whether the broker answers a metadata request `within`.
    pub async fn check(&self, within: Duration) -> Result<(), SinkError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, within))
            .await
            .map_err(SinkError::join("kafka client task"))?
            .map(drop)
            .map_err(SinkError::kafka("broker metadata"))
    }

    /// Stops serving the group consumer and unsubscribes: a service replica leaves the
    /// group at once, so its partitions move to the others without waiting for its session
    /// to time out. `--once` and `hooklake dev`, which never joined, end the same way.
    pub async fn close(self) {
        self.pump.abort();
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || consumer.unsubscribe()).await;
    }
}

/// Serves the group consumer. Its partitions are paused, so a record only arrives if one
/// was fetched in the moment between an assignment and its pause; runs never read here.
async fn pump(consumer: Arc<StreamConsumer<GroupContext>>) {
    loop {
        match consumer.recv().await {
            Ok(m) => tracing::debug!(topic = m.topic(), partition = m.partition(), "group consumer record ignored"),
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One attempt's records: the planned partitions from their start offsets.
pub struct RunReader {
    /// `None` once closed; dropped on a blocking thread (closing a client waits for its
    /// threads).
    consumer: Option<StreamConsumer<DefaultConsumerContext>>,
}

impl std::fmt::Debug for RunReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunReader").finish_non_exhaustive()
    }
}

impl RunReader {
    async fn open(config: &ClientConfig, starts: &[(TopicPartition, i64)]) -> Result<Self, SinkError> {
        let consumer: StreamConsumer = config.create().map_err(SinkError::kafka("create the run reader"))?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in starts {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .map_err(SinkError::kafka("reader offsets"))?;
        }
        consumer.assign(&tpl).map_err(SinkError::kafka("assign the run reader"))?;
        Ok(Self { consumer: Some(consumer) })
    }

    fn consumer(&self) -> &StreamConsumer {
        self.consumer.as_ref().expect("open until dropped")
    }

    /// The next record, or `None` after `idle` without one. A consumer error (a broker
    /// going away) is logged and retried by librdkafka: the run's stall timeout bounds it.
    pub async fn next(&self, idle: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + idle;
        loop {
            match tokio::time::timeout_at(deadline, self.consumer().recv()).await {
                Err(_) => return None,
                Ok(Ok(m)) => return Some(m.detach()),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "run reader error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// The read positions (next offsets) of the reader's partitions.
    pub fn positions(&self) -> HashMap<TopicPartition, i64> {
        let Ok(tpl) = self.consumer().position() else { return HashMap::new() };
        tpl.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }
}

impl Drop for RunReader {
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn_blocking(move || drop(consumer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config whose broker does not exist: nothing listens on port 1.
    fn unreachable() -> hooklake_schemas::config::Config {
        let toml = "[kafka]\nbrokers = \"127.0.0.1:1\"\n[sources.s]\nauth = { type = \"none\" }\n";
        hooklake_schemas::config::Config::from_toml(toml, &Default::default()).unwrap()
    }

    #[tokio::test]
    async fn a_member_that_never_joins_its_group_fails_the_run_instead_of_reporting_nothing_to_do() {
        let consumer = GroupConsumer::subscribe(&unreachable(), "never-joins", &["t".to_owned()]).unwrap();
        let err = consumer.wait_for_assignment(Duration::from_millis(300)).await.unwrap_err();
        assert!(matches!(&err, SinkError::Unassigned { group, .. } if group == "never-joins"), "{err}");
    }

    #[tokio::test]
    async fn an_empty_assignment_after_a_join_is_an_answer() {
        let consumer = GroupConsumer::subscribe(&unreachable(), "joined", &["t".to_owned()]).unwrap();
        // What a rebalance that gave this member nothing leaves behind.
        consumer.consumer.context().assignment.send_replace(Assignment { generation: 2, partitions: Vec::new() });
        let assignment = consumer.wait_for_assignment(Duration::from_millis(300)).await.unwrap();
        assert_eq!(assignment, Assignment { generation: 2, partitions: Vec::new() });
    }
}
