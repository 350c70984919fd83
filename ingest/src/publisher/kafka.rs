//! The rdkafka publisher: an idempotent producer with acks=all, a bounded queue and a
//! delivery timeout below the response deadline, so every send ends in time. The producer
//! is replaced after a delivery timeout ([`super::generations`]). Records for a topic the
//! broker does not have are refused at once, so that one missing topic fails only its
//! own source.

use std::{
    collections::BTreeSet,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hooklake_schemas::config::{Config, ConfigError};
use rdkafka::{
    ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureRecord, Producer},
};

use super::{
    Delivered, OutgoingRecord, PublishError, Publisher, ensure_topics_with,
    generations::{Followed, Producers, is_delivery_timeout, is_purged},
};

/// How long a readiness answer is reused, so that probes do not hammer the broker.
const READY_CACHE: Duration = Duration::from_secs(1);
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// Properties hooklake sets because the HTTP contract depends on them; a configured
/// value that breaks them is a start-up error.
const PINNED: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];

/// How often librdkafka reports its statistics (queue, round trips, batches) for
/// `/metrics`, unless `[kafka.properties]` sets `statistics.interval.ms` (0 turns them off).
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// The producer configuration: `[kafka]` and `[kafka.properties]`, then what the contract
/// requires. `message.timeout.ms` defaults to 80% of the response deadline and must stay
/// below it, so a delivery report always arrives before the answer is due.
pub fn producer_config(config: &Config) -> Result<ClientConfig, ConfigError> {
    let deadline_ms = config.ingest.response_deadline.get().as_millis() as u64;
    let mut c = ClientConfig::new();
    // The vendored librdkafka's fourth change (vendor/README.md): linger.ms only while the
    // partition has a batch in flight, so a webhook to an idle partition is sent at once.
    // Its fifth keeps `1 + smallest round trip ÷ linger.ms` batches in flight (at most 5),
    // so 1 ms fills the window of 5 once acks take 4 ms; 5 ms left it at 2 with acks 5 ms
    // late (BENCHMARKS.md, "A linger of 1 ms").
    c.set("linger.ms", "1");
    c.set("linger.while.in.flight", "true");
    c.set("reconnect.backoff.max.ms", "1000");
    c.set("message.timeout.ms", (deadline_ms * 8 / 10).to_string());
    c.set("statistics.interval.ms", config.kafka.statistics_interval_ms().unwrap_or(STATISTICS_INTERVAL_MS));
    for (k, v) in config.kafka.client_properties() {
        c.set(k, v);
    }
    for (k, v) in PINNED {
        if let Some(set) = config.kafka.properties.get(*k)
            && !(set == v || (*k == "acks" && set == "-1"))
        {
            return Err(ConfigError::invalid(
                format!("kafka.properties.\"{k}\""),
                format!("must be {v}: ingest answers 200 only for records the broker cannot lose"),
            ));
        }
        c.set(*k, *v);
    }
    let timeout_key = ["message.timeout.ms", "delivery.timeout.ms"]
        .into_iter()
        .find(|k| config.kafka.properties.contains_key(*k))
        .unwrap_or("message.timeout.ms");
    let message_timeout: u64 = c
        .get(timeout_key)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ConfigError::invalid(format!("kafka.properties.\"{timeout_key}\""), "not a number"))?;
    if message_timeout + 500 > deadline_ms {
        return Err(ConfigError::invalid(
            format!("kafka.properties.\"{timeout_key}\""),
            "must be at least 500 ms below ingest.response_deadline",
        ));
    }
    if !config.kafka.properties.contains_key("request.timeout.ms") {
        c.set("request.timeout.ms", message_timeout.min(5000).to_string());
    }
    c.set("queue.buffering.max.messages", config.ingest.producer_queue_messages.to_string());
    if !config.kafka.properties.contains_key("message.max.bytes") {
        c.set("message.max.bytes", max_record_bytes(config).to_string());
    }
    Ok(c)
}

/// The largest record a request within `ingest.max_body_bytes` can make (see
/// [`hooklake_schemas::kafka::max_record_bytes`]).
pub fn max_record_bytes(config: &Config) -> u64 {
    hooklake_schemas::kafka::max_record_bytes(config.ingest.max_body_bytes.get())
}

/// The record as rdkafka sends it: topic, key, value and headers (none when it has none).
pub fn future_record(record: &OutgoingRecord) -> FutureRecord<'_, String, Vec<u8>> {
    let future = FutureRecord::to(&record.topic).key(&record.key).payload(&record.value);
    match record_headers(record) {
        Some(headers) => future.headers(headers),
        None => future,
    }
}

/// The record's headers as rdkafka sends them; `None` when it has none.
pub fn record_headers(record: &OutgoingRecord) -> Option<OwnedHeaders> {
    if record.headers.is_empty() {
        return None;
    }
    Some(record.headers.iter().fold(OwnedHeaders::new_with_capacity(record.headers.len()), |h, (k, v)| {
        h.insert(Header { key: k, value: Some(v.as_bytes()) })
    }))
}

pub struct KafkaPublisher {
    producers: Arc<Producers>,
    topics: Vec<String>,
    /// Source topics the broker's last metadata answer lacked.
    missing: RwLock<BTreeSet<String>>,
    config: Arc<Config>,
    fatal: AtomicBool,
    /// The last readiness answer; the lock also keeps probes (and topic creation) one at a time.
    ready: tokio::sync::Mutex<Option<(Instant, Result<(), String>)>>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher").field("topics", &self.topics).finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    pub fn new(config: Arc<Config>) -> Result<Self, ConfigError> {
        let producers = Arc::new(Producers::new(config.clone())?);
        let topics = config.sources.iter().map(|(name, s)| s.topic_for(name)).collect();
        Ok(Self {
            producers,
            topics,
            missing: RwLock::new(BTreeSet::new()),
            config,
            fatal: AtomicBool::new(false),
            ready: tokio::sync::Mutex::new(None),
        })
    }

    /// Creates missing source topics, and the `<topic>.dlq` the sink dead-letters into,
    /// when `kafka.create_topics` is on, with a `max.message.bytes` that fits the largest
    /// record ingest can make.
    pub async fn ensure_topics(&self) -> Result<(), String> {
        if !self.config.kafka.create_topics {
            return Ok(());
        }
        let all: Vec<String> = self
            .topics
            .iter()
            .cloned()
            .chain(self.topics.iter().map(|t| hooklake_schemas::kafka::dlq_topic(t)))
            .collect();
        // The sink's dead letters copy a record and add two headers: one size fits both.
        let max_message =
            hooklake_schemas::kafka::max_dead_letter_bytes(self.config.ingest.max_body_bytes.get()).to_string();
        ensure_topics_with(&self.config.kafka, &all, &[("max.message.bytes", &max_message)]).await
    }

    fn classify(&self, e: KafkaError) -> PublishError {
        let code = e.rdkafka_error_code();
        match code {
            Some(RDKafkaErrorCode::MessageSizeTooLarge) => PublishError::TooLarge(e.to_string()),
            Some(RDKafkaErrorCode::Fatal) => {
                self.fatal.store(true, Ordering::SeqCst);
                PublishError::Fatal(e.to_string())
            }
            Some(RDKafkaErrorCode::QueueFull) => PublishError::Unavailable("the producer queue is full".into()),
            Some(RDKafkaErrorCode::MessageTimedOut) => {
                PublishError::Unavailable("the broker did not acknowledge in time".into())
            }
            _ => PublishError::Unavailable(e.to_string()),
        }
    }

    /// Asks the broker for metadata and records which source topics it lacks, creating
    /// them first when `kafka.create_topics` is on. Fails only when the broker cannot be
    /// reached: a missing topic fails its own source, not the instance.
    async fn probe(&self) -> Result<(), String> {
        let mut missing = self.fetch_missing_topics().await?;
        if !missing.is_empty() && self.config.kafka.create_topics {
            match self.ensure_topics().await {
                Ok(()) => missing = self.fetch_missing_topics().await?,
                Err(e) => tracing::warn!(error = %e, "could not create the missing topics"),
            }
        }
        if !missing.is_empty() {
            tracing::warn!(?missing, "source topics do not exist; their sources answer 503 topic_missing");
        }
        *self.missing.write().expect("not poisoned") = missing;
        Ok(())
    }

    async fn fetch_missing_topics(&self) -> Result<BTreeSet<String>, String> {
        let producer = self.producers.current().producer.producer().clone();
        let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, METADATA_TIMEOUT))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("broker metadata unreachable: {e}"))?;
        Ok(self
            .topics
            .iter()
            .filter(|t| !metadata.topics().iter().any(|m| m.name() == t.as_str() && m.error().is_none()))
            .cloned()
            .collect())
    }
}

impl Publisher for KafkaPublisher {
    /// Sends on the current producer. A record purged because another record's delivery
    /// timed out and the producer was replaced is sent again on the new producer, within
    /// the same timeout.
    async fn publish(&self, record: OutgoingRecord, timeout: Duration) -> Result<Delivered, PublishError> {
        if !self.topic_ready(&record.topic) {
            return Err(PublishError::TopicMissing(record.topic.to_string()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let generation = self.producers.current();
            let delivery = generation.producer.send(&record).map_err(|e| self.classify(e))?;
            let followed = Followed::new(delivery, generation.clone(), self.producers.clone());
            let report = tokio::time::timeout_at(deadline, followed)
                .await
                .map_err(|_| PublishError::Unavailable("no acknowledgement within the deadline".into()))?;
            match report {
                Ok(Ok(delivered)) => return Ok(delivered),
                Ok(Err(e)) if is_purged(&e) && self.producers.replaced(&generation) => continue,
                Ok(Err(e)) => {
                    if is_delivery_timeout(&e) {
                        self.producers.replace_after_timeout(&generation);
                    }
                    return Err(self.classify(e));
                }
                Err(_canceled) => return Err(PublishError::Unavailable("the producer is shutting down".into())),
            }
        }
    }

    fn queue_len(&self) -> usize {
        self.producers.current().producer.producer().in_flight_count().max(0) as usize
    }

    async fn check_ready(&self) -> Result<(), String> {
        let mut cached = self.ready.lock().await;
        if let Some((at, result)) = cached.as_ref()
            && at.elapsed() < READY_CACHE
        {
            return result.clone();
        }
        let result = self.probe().await;
        *cached = Some((Instant::now(), result.clone()));
        result
    }

    fn kafka_statistics(&self) -> Option<Arc<rdkafka::Statistics>> {
        self.producers.current().stats()
    }

    fn topic_ready(&self, topic: &str) -> bool {
        !self.missing.read().expect("not poisoned").contains(topic)
    }

    fn is_alive(&self) -> bool {
        !self.fatal.load(Ordering::SeqCst)
    }

    async fn flush(&self, timeout: Duration) {
        let producer = self.producers.current().producer.producer().clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "records were still unacknowledged when the flush timed out");
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use hooklake_schemas::config::Env;

    use super::*;

    /// A configuration with one source and `extra` (TOML) after it; the publisher's other
    /// tests build theirs with it too.
    pub(in crate::publisher) fn config(extra: &str) -> Config {
        let text = format!("[sources.a]\nauth = {{ type = \"none\" }}\n{extra}");
        Config::from_toml(&text, &Env::new()).unwrap()
    }

    #[test]
    fn the_contract_settings_are_pinned() {
        let c = producer_config(&config("")).unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!((c.get("linger.ms"), c.get("linger.while.in.flight")), (Some("1"), Some("true")));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("8000"));
        assert_eq!(c.get("request.timeout.ms"), Some("5000"));
        assert_eq!(c.get("queue.buffering.max.messages"), Some("100000"));
        assert_eq!(c.get("statistics.interval.ms"), Some("5000"));
        assert_eq!(c.get("bootstrap.servers"), Some("localhost:9092"));
        // 1 MiB bodies fit (librdkafka's default of 1,000,000 would refuse them).
        let max: u64 = c.get("message.max.bytes").unwrap().parse().unwrap();
        assert!(max >= 2 * (1 << 20) + hooklake_schemas::kafka::MAX_REQUEST_HEAD_BYTES as u64, "{max}");
        let own = producer_config(&config("[kafka.properties]\n\"message.max.bytes\" = \"5000000\"")).unwrap();
        assert_eq!(own.get("message.max.bytes"), Some("5000000"));
    }

    #[test]
    fn overrides_that_break_the_contract_are_refused() {
        let err = producer_config(&config("[kafka.properties]\nacks = \"1\"")).unwrap_err().to_string();
        assert!(err.starts_with("kafka.properties.\"acks\": must be all"), "{err}");
        let err = producer_config(&config("[kafka.properties]\n\"message.timeout.ms\" = \"30000\"")).unwrap_err();
        assert!(err.to_string().contains("below ingest.response_deadline"), "{err}");
        let ok = producer_config(&config("[kafka.properties]\n\"linger.ms\" = \"20\"\nacks = \"-1\"")).unwrap();
        assert_eq!(ok.get("linger.ms"), Some("20"));
        let quiet = producer_config(&config("[kafka.properties]\n\"statistics.interval.ms\" = \"0\"")).unwrap();
        assert_eq!(quiet.get("statistics.interval.ms"), Some("0"));
    }
}
