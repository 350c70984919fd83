//! The group consumer. Partitions are shared between sink replicas through the consumer
//! group; which offsets to read comes from the tables, never from the group (its offsets
//! only mirror the tables', for lag tools). Assigned partitions stay paused between runs;
//! a run seeks them to the tables' offsets and resumes them.
//!
//! One task owns `recv()` and forwards records into a channel, so the group membership is
//! served (heartbeats, rebalances) also while no run is active.

use std::{collections::HashMap, sync::Arc, time::Duration};

use rdkafka::{
    ClientContext, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer},
    message::OwnedMessage,
    util::Timeout,
};
use tokio::sync::{mpsc, watch};

use super::client_config;
use crate::{SinkError, lake::TopicPartition};

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
            // Nothing is read until a run seeks to the tables' offsets.
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
    records: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
    reader: tokio::task::JoinHandle<()>,
    /// A group member's assignment comes later, with a rebalance; `assign_all`'s is final.
    in_group: bool,
}

impl std::fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConsumer").field("assignment", &*self.assignment.borrow()).finish_non_exhaustive()
    }
}

const FORWARD_BUFFER: usize = 4096;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

impl GroupConsumer {
    /// Joins `group_id` for `topics`: the service's way, so replicas share the partitions.
    pub fn subscribe(
        config: &hooklake_schemas::config::Config,
        group_id: &str,
        topics: &[String],
    ) -> Result<Self, SinkError> {
        let (consumer, assignment) = Self::create(config, group_id)?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs).map_err(SinkError::kafka("subscribe"))?;
        Ok(Self::start_reader(consumer, assignment, true))
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
        let (consumer, assignment) = Self::create(config, group_id)?;
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
            // Nothing is read until the run seeks to the tables' offsets.
            c.pause(&tpl).map_err(SinkError::kafka("pause"))?;
            Ok(tpl)
        })
        .await
        .map_err(|e| SinkError::Kafka(e.to_string()))??;
        let partitions = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
        consumer.context().assignment.send_replace(Assignment { generation: 1, partitions });
        tracing::info!(partitions = tpl.count(), "took every partition of the source topics");
        let consumer = Arc::into_inner(consumer).expect("the metadata task has finished");
        Ok(Self::start_reader(consumer, assignment, false))
    }

    fn create(
        config: &hooklake_schemas::config::Config,
        group_id: &str,
    ) -> Result<(StreamConsumer<GroupContext>, watch::Receiver<Assignment>), SinkError> {
        let (tx, assignment) = watch::channel(Assignment::default());
        let mut c = client_config(config);
        c.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            // tansu's SQLite fetch slows down as a partition grows: ask for a lot per fetch.
            .set("fetch.max.bytes", "104857600")
            .set("max.partition.fetch.bytes", "52428800")
            .set("queued.max.messages.kbytes", "262144");
        for (k, v) in &config.kafka.properties {
            c.set(k, v);
        }
        let consumer: StreamConsumer<GroupContext> =
            c.create_with_context(GroupContext { assignment: tx }).map_err(SinkError::kafka("create the consumer"))?;
        Ok((consumer, assignment))
    }

    fn start_reader(
        consumer: StreamConsumer<GroupContext>,
        assignment: watch::Receiver<Assignment>,
        in_group: bool,
    ) -> Self {
        let consumer = Arc::new(consumer);
        let (records_tx, records_rx) = mpsc::channel(FORWARD_BUFFER);
        let reader = tokio::spawn(forward(consumer.clone(), records_tx));
        Self { consumer, assignment, records: tokio::sync::Mutex::new(records_rx), reader, in_group }
    }

    pub fn assignment(&self) -> Assignment {
        self.assignment.borrow().clone()
    }

    /// Waits up to `timeout` for a non-empty assignment (joining a group takes a moment;
    /// outside a group the assignment is already final).
    pub async fn wait_for_assignment(&self, timeout: Duration) -> Assignment {
        if !self.in_group {
            return self.assignment();
        }
        let mut rx = self.assignment.clone();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|a| !a.partitions.is_empty())).await;
        self.assignment()
    }

    /// Moves each partition to its offset and starts reading them.
    pub async fn seek_and_resume(&self, starts: &[(TopicPartition, i64)]) -> Result<(), SinkError> {
        let consumer = self.consumer.clone();
        let starts = starts.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), offset) in &starts {
                // A partition is seekable once its fetcher started, shortly after assignment.
                let mut tries = 0;
                loop {
                    match consumer.seek(
                        topic,
                        *partition,
                        Offset::Offset(*offset),
                        Timeout::After(Duration::from_secs(5)),
                    ) {
                        Ok(()) => break,
                        Err(e) if tries < 50 => {
                            tries += 1;
                            tracing::debug!(%topic, partition, error = %e, "seek not possible yet");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                        Err(e) => return Err(SinkError::Kafka(format!("seek {topic}/{partition} to {offset}: {e}"))),
                    }
                }
                tpl.add_partition(topic, *partition);
            }
            consumer.resume(&tpl).map_err(SinkError::kafka("resume"))
        })
        .await
        .map_err(|e| SinkError::Kafka(e.to_string()))?
    }

    /// Stops reading every assigned partition (between runs).
    pub fn pause_all(&self) {
        if let Ok(tpl) = self.consumer.assignment()
            && let Err(e) = self.consumer.pause(&tpl)
        {
            tracing::warn!(error = %e, "cannot pause partitions");
        }
    }

    /// The next record, or `None` after `idle` without one.
    pub async fn next(&self, idle: Duration) -> Option<Incoming> {
        let mut records = self.records.lock().await;
        tokio::time::timeout(idle, records.recv()).await.ok().flatten()
    }

    /// The current read positions (next offsets) of `partitions`.
    pub fn positions(&self) -> HashMap<TopicPartition, i64> {
        let Ok(tpl) = self.consumer.position() else { return HashMap::new() };
        tpl.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect()
    }

    /// Low and high watermarks of a partition.
    pub async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), SinkError> {
        let consumer = self.consumer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)))
            .await
            .map_err(|e| SinkError::Kafka(e.to_string()))?
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

    /// Whether the broker answers metadata requests.
    pub async fn check(&self) -> Result<(), SinkError> {
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, Duration::from_secs(3)))
            .await
            .map_err(|e| SinkError::Kafka(e.to_string()))?
            .map(drop)
            .map_err(SinkError::kafka("broker metadata"))
    }

    /// Leaves the group (a `--once` run ends this way, so the next one joins at once).
    pub async fn close(self) {
        self.reader.abort();
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || consumer.unsubscribe()).await;
    }
}

async fn forward(consumer: Arc<StreamConsumer<GroupContext>>, tx: mpsc::Sender<Incoming>) {
    loop {
        match consumer.recv().await {
            Ok(m) => {
                if tx.send(m.detach()).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
