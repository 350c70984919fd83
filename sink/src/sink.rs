//! One sink instance: its connections (catalog, consumer group, DLQ producer, registry),
//! its run queue, and the two things it does with them: execute a run, and measure the
//! lag of every partition against the tables.

use std::{collections::HashMap, sync::Arc, time::Duration};

use hooklake_schemas::config::Config;

use crate::{
    SinkError,
    decode::Decoder,
    kafka::{DeadLetters, GroupConsumer, LagProbe, PartitionLag, TopicPartition, ensure_dlq_topics},
    lake::Lake,
    metrics::SinkMetrics,
    queue::{RunQueue, Trigger},
    run::{self, Progress, RunContext, RunReport},
    settings::Settings,
};

/// The sink's shared state.
#[derive(Debug)]
pub struct Sink {
    pub ctx: RunContext,
    pub runs: RunQueue,
    /// One measurement at a time: the periodic refresh and the one after a run share it.
    probe: Arc<tokio::sync::Mutex<LagProbe>>,
}

/// How a sink instance gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Join the consumer group; replicas share the partitions (the service).
    Group,
    /// Every partition of the source topics, without joining the group (`--once`).
    All,
}

impl Sink {
    /// Connects to the catalog and the broker: as a member of the consumer group
    /// ([`Membership::Group`], the service) or owning every partition ([`Membership::All`],
    /// `--once`).
    pub async fn start(config: &Config, membership: Membership) -> Result<Arc<Self>, SinkError> {
        let base = std::env::current_dir().map_err(SinkError::storage("the current directory"))?;
        let settings = Settings::from_config(config, &base)?;
        let lake = Lake::connect(config, &settings).await?;
        if config.kafka.create_topics
            && let Err(e) = ensure_dlq_topics(config, &settings.topics()).await
        {
            // Not fatal: only a run with a dead letter needs its DLQ, and only its table waits.
            tracing::warn!(error = %e, "could not create the dead-letter topics");
        }
        let consumer = match membership {
            Membership::Group => GroupConsumer::subscribe(config, &settings.group_id, &settings.topics())?,
            Membership::All => GroupConsumer::assign_all(config, &settings.group_id, &settings.topics()).await?,
        };
        let metrics = SinkMetrics::new(
            settings.routes.iter().map(|r| r.table_label.as_str()),
            settings.routes.iter().map(|r| r.topic.as_str()),
        );
        let probe = LagProbe::new(config, &settings.group_id);
        let ctx = RunContext {
            lake,
            consumer,
            dead_letters: tokio::sync::Mutex::new(DeadLetters::new(config)?),
            decoder: Decoder::new(config)?,
            metrics,
            settings,
        };
        Ok(Arc::new(Self { ctx, runs: RunQueue::default(), probe: Arc::new(tokio::sync::Mutex::new(probe)) }))
    }

    /// Executes one run now (for `--once` and the worker), recording metrics.
    pub async fn execute(
        &self,
        trigger: Trigger,
        run_id: &str,
        progress: &dyn Progress,
    ) -> Result<RunReport, SinkError> {
        let started = std::time::Instant::now();
        let result = run::run(&self.ctx, run_id, progress).await;
        let m = &self.ctx.metrics;
        m.run_duration.observe(started.elapsed().as_secs_f64());
        let outcome = if result.is_ok() { "success" } else { "failure" };
        m.runs.with_label_values(&[trigger.label(), outcome]).inc();
        if result.is_ok() {
            let now = chrono::Utc::now().timestamp();
            for r in &self.ctx.settings.routes {
                m.last_success.with_label_values(&[&r.table_label]).set(now);
            }
        }
        result
    }

    /// Measures the lag of every partition of every source topic against the tables and
    /// updates the gauges. Returns total unloaded records and the oldest one's age.
    pub async fn refresh_lag(&self) -> Result<(i64, Duration), SinkError> {
        let tables = self.ctx.lake.load_all(&self.ctx.settings.routes).await?;
        let mut next: HashMap<TopicPartition, Option<i64>> = HashMap::new();
        for r in &self.ctx.settings.routes {
            let topic = r.topic.clone();
            for p in self.with_probe(move |probe| probe.partitions(&topic)).await? {
                next.insert((r.topic.clone(), p), tables.next_offset(r, p));
            }
        }
        let lags = self.with_probe(move |p| p.measure(&next)).await?;
        Ok(self.publish_lag(&lags))
    }

    fn publish_lag(&self, lags: &HashMap<TopicPartition, PartitionLag>) -> (i64, Duration) {
        let m = &self.ctx.metrics;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut oldest_by_topic: HashMap<&str, i64> = HashMap::new();
        let mut total = 0;
        for ((topic, partition), lag) in lags {
            m.lag_messages.with_label_values(&[topic, &partition.to_string()]).set(lag.messages);
            total += lag.messages;
            let age_ms = lag.oldest_ms.map_or(0, |ts| (now_ms - ts).max(0));
            let e = oldest_by_topic.entry(topic).or_default();
            *e = (*e).max(age_ms);
        }
        let mut oldest = 0;
        for (topic, age_ms) in oldest_by_topic {
            m.lag_seconds.with_label_values(&[topic]).set(age_ms / 1000);
            oldest = oldest.max(age_ms);
        }
        (total, Duration::from_millis(oldest as u64))
    }

    /// Sets `hooklake_sink_assigned_partitions` from the group consumer's assignment as it
    /// is now. Called at each scrape, so the gauge follows every rebalance: a partition
    /// that no replica holds shows in the sum over replicas, not only later in the lag.
    pub fn publish_assignment(&self) {
        let assignment = self.ctx.consumer.assignment();
        for r in &self.ctx.settings.routes {
            let held = assignment.partitions.iter().filter(|(topic, _)| *topic == r.topic).count();
            self.ctx.metrics.assigned.with_label_values(&[&r.topic]).set(held as i64);
        }
    }

    /// Runs `f` with the (blocking) lag probe on a blocking thread.
    async fn with_probe<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LagProbe) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let probe = self.probe.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&probe)).await.map_err(SinkError::join("lag probe"))?
    }
}
