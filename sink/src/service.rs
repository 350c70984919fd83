//! `hooklake sink`: the long-running service. A worker executes queued runs one at a time;
//! the schedule, the lag trigger and `POST /runs` queue them. Lag gauges are refreshed
//! every `lag_refresh`, also between runs.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use hooklake_schemas::config::Config;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    SinkError, admin,
    decode::Decoder,
    kafka::{DeadLetters, GroupConsumer, LagProbe, PartitionLag, ensure_dlq_topics},
    lake::{Lake, LakeTable, TopicPartition},
    metrics::SinkMetrics,
    run::{self, Progress, RunContext, RunReport},
    runs::{Runs, Trigger},
    settings::Settings,
};

/// The sink's shared state.
#[derive(Debug)]
pub struct Sink {
    pub ctx: RunContext,
    pub runs: Runs,
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
        let base = std::env::current_dir().map_err(|e| SinkError::Io(e.to_string()))?;
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
        Ok(Arc::new(Self { ctx, runs: Runs::default(), probe: Arc::new(tokio::sync::Mutex::new(probe)) }))
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
        let mut next: HashMap<TopicPartition, Option<i64>> = HashMap::new();
        let mut tables: HashMap<&str, Option<LakeTable>> = HashMap::new();
        for r in &self.ctx.settings.routes {
            if !tables.contains_key(r.table_label.as_str()) {
                tables.insert(&r.table_label, self.ctx.lake.load(&r.table).await?);
            }
            let topic = r.topic.clone();
            let partitions = self.with_probe(move |p| p.partitions(&topic)).await?;
            for p in partitions {
                let stored = tables[r.table_label.as_str()].as_ref().and_then(|t| t.next_offset(&r.topic, p));
                next.insert((r.topic.clone(), p), stored);
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

    /// Runs `f` with the (blocking) lag probe on a blocking thread.
    async fn with_probe<T: Send + 'static>(
        &self,
        f: impl FnOnce(&LagProbe) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let probe = self.probe.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&probe)).await.map_err(|e| SinkError::Kafka(e.to_string()))?
    }
}

/// Serves until `shutdown`: the admin port, the triggers and the run worker. A run in
/// progress when shutdown comes is finished first.
pub async fn serve(
    config: &Config,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SinkError> {
    serve_as(config, Membership::Group, admin_listener, shutdown).await
}

/// [`serve`] with a chosen membership: `hooklake dev`, the only sink of its broker, takes
/// every partition ([`Membership::All`]) so that after a crash its restart does not wait
/// for the dead member's group session to time out.
pub async fn serve_as(
    config: &Config,
    membership: Membership,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SinkError> {
    let sink = Sink::start(config, membership).await?;
    let (stop_tx, stop) = watch::channel(false);
    let admin = tokio::spawn(admin::serve(sink.clone(), admin_listener, stop.clone()));
    let worker = tokio::spawn(worker(sink.clone(), stop.clone()));
    let schedule = tokio::spawn(schedule_trigger(sink.clone(), stop.clone()));
    let lag = tokio::spawn(lag_trigger(sink.clone(), stop.clone()));
    tracing::info!(tables = sink.ctx.settings.routes.len(), schedule = ?sink.ctx.settings.schedule, "sink is serving");
    shutdown.await;
    tracing::info!("shutting down: finishing the current run");
    let _ = stop_tx.send(true);
    let _ = tokio::join!(worker, schedule, lag);
    let _ = admin.await;
    if let Ok(sink) = Arc::try_unwrap(sink) {
        sink.ctx.consumer.close().await;
    }
    tracing::info!("sink stopped");
    Ok(())
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn worker(sink: Arc<Sink>, mut stop: watch::Receiver<bool>) {
    loop {
        let status = tokio::select! {
            s = sink.runs.next() => s,
            _ = stopped(&mut stop) => return,
        };
        tracing::info!(run_id = %status.id, trigger = status.trigger.label(), "run started");
        let result = sink.execute(status.trigger, &status.id, &run::Quiet).await;
        match &result {
            Ok(r) => {
                tracing::info!(run_id = %status.id, rows = r.rows, files = r.files, seconds = r.duration_seconds, "run finished")
            }
            Err(e) => tracing::error!(run_id = %status.id, error = %e, "run failed"),
        }
        // Gauges first, so whoever sees the run finished sees the lag it left.
        if let Err(e) = sink.refresh_lag().await {
            tracing::warn!(error = %e, "lag refresh after the run failed");
        }
        sink.runs.finish(&status.id, result.map_err(|e| e.to_string()));
    }
}

async fn schedule_trigger(sink: Arc<Sink>, mut stop: watch::Receiver<bool>) {
    loop {
        let Some(next) = sink.ctx.settings.schedule.next_after(chrono::Utc::now()) else { return };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
        let status = sink.runs.request(Trigger::Schedule);
        tracing::debug!(run_id = %status.id, "scheduled run requested");
    }
}

async fn lag_trigger(sink: Arc<Sink>, mut stop: watch::Receiver<bool>) {
    let s = &sink.ctx.settings;
    let mut tick = tokio::time::interval(s.lag_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let (messages, age) = match sink.refresh_lag().await {
            Ok(lag) => lag,
            Err(e) => {
                tracing::warn!(error = %e, "lag refresh failed");
                continue;
            }
        };
        let over_count = s.lag_messages.is_some_and(|n| messages as u64 >= n && messages > 0);
        let over_age = s.lag_age.is_some_and(|a| age >= a && messages > 0);
        if (over_count || over_age) && !sink.runs.busy() {
            let status = sink.runs.request(Trigger::Lag);
            tracing::info!(run_id = %status.id, messages, age_seconds = age.as_secs(), "lag over the threshold: run requested");
        }
    }
}
