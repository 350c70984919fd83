//! The rdkafka publisher: an idempotent producer with acks=all, a bounded queue and a
//! delivery timeout below the response deadline, so every send ends in time.
//!
//! After a delivery timeout the producer is replaced by a fresh one (a new producer id)
//! and the old one's queue is purged. librdkafka would otherwise bump the idempotent
//! epoch locally (KIP-360); Kafka and Redpanda accept that, but some Kafka-API brokers
//! do not (tansu 0.6 panics in its storage task and stops taking writes). A new producer
//! works with every broker and costs one InitProducerId after an outage. The requests
//! whose records were purged were answered 503 already or get 503 now.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hooklake_schemas::config::{Config, ConfigError};
use rdkafka::{
    ClientConfig,
    error::{KafkaError, RDKafkaErrorCode},
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer, PurgeConfig},
};

use super::{Delivered, OutgoingRecord, PublishError, Publisher, ensure_topics};

/// How long a readiness answer is reused, so that probes do not hammer the broker.
const READY_CACHE: Duration = Duration::from_secs(1);
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// Properties hooklake sets because the HTTP contract depends on them; a configured
/// value that breaks them is a start-up error.
const PINNED: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];

/// The producer configuration: `[kafka]` and `[kafka.properties]`, then what the contract
/// requires. `message.timeout.ms` defaults to 80% of the response deadline and must stay
/// below it, so a delivery report always arrives before the answer is due.
pub fn producer_config(config: &Config) -> Result<ClientConfig, ConfigError> {
    let deadline_ms = config.ingest.response_deadline.get().as_millis() as u64;
    let mut c = ClientConfig::new();
    c.set("linger.ms", "5");
    c.set("reconnect.backoff.max.ms", "1000");
    c.set("message.timeout.ms", (deadline_ms * 8 / 10).to_string());
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
    Ok(c)
}

/// The record as rdkafka sends it: topic, key, value and headers.
pub fn future_record(record: &OutgoingRecord) -> FutureRecord<'_, String, Vec<u8>> {
    let headers = record.headers.iter().fold(OwnedHeaders::new_with_capacity(record.headers.len()), |h, (k, v)| {
        h.insert(Header { key: k, value: Some(v.as_bytes()) })
    });
    FutureRecord::to(&record.topic).key(&record.key).payload(&record.value).headers(headers)
}

/// One producer instance; replaced after delivery timeouts (see the module docs).
struct Generation {
    id: u64,
    producer: FutureProducer,
}

fn create_producer(config: &Config) -> Result<FutureProducer, ConfigError> {
    producer_config(config)?
        .create()
        .map_err(|e| ConfigError::invalid("kafka.properties", format!("librdkafka refused the producer: {e}")))
}

pub struct KafkaPublisher {
    current: RwLock<Arc<Generation>>,
    generations: AtomicU64,
    topics: Vec<String>,
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
        let producer = create_producer(&config)?;
        let topics = config.sources.iter().map(|(name, s)| s.topic_for(name)).collect();
        Ok(Self {
            current: RwLock::new(Arc::new(Generation { id: 0, producer })),
            generations: AtomicU64::new(1),
            topics,
            config,
            fatal: AtomicBool::new(false),
            ready: tokio::sync::Mutex::new(None),
        })
    }

    /// Creates missing source topics, and the `<topic>.dlq` the sink dead-letters into,
    /// when `kafka.create_topics` is on.
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
        ensure_topics(&self.config.kafka, &all).await
    }

    fn current(&self) -> Arc<Generation> {
        self.current.read().expect("not poisoned").clone()
    }

    /// Replaces generation `failed` by a fresh producer, unless another request already did.
    fn replace_after_timeout(&self, failed: &Generation) {
        let mut current = self.current.write().expect("not poisoned");
        if current.id != failed.id {
            return;
        }
        let producer = match create_producer(&self.config) {
            Ok(p) => p,
            Err(e) => return tracing::error!(error = %e, "cannot create a new Kafka producer"),
        };
        let id = self.generations.fetch_add(1, Ordering::SeqCst);
        let old = std::mem::replace(&mut *current, Arc::new(Generation { id, producer }));
        tracing::warn!(generation = id, "replaced the Kafka producer after a delivery timeout");
        // Nothing the old producer still holds may reach the broker under a bumped epoch.
        old.producer.purge(PurgeConfig::default().queue().inflight());
        tokio::task::spawn_blocking(move || drop(old));
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

    async fn probe(&self) -> Result<(), String> {
        let producer = self.current().producer.clone();
        let metadata = tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, METADATA_TIMEOUT))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("broker metadata unreachable: {e}"))?;
        let missing: Vec<&String> = self
            .topics
            .iter()
            .filter(|t| !metadata.topics().iter().any(|m| m.name() == t.as_str() && m.error().is_none()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.config.kafka.create_topics {
            return self.ensure_topics().await;
        }
        Err(format!("topics do not exist: {missing:?}"))
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(&self, record: OutgoingRecord, timeout: Duration) -> Result<Delivered, PublishError> {
        let generation = self.current();
        let delivery = generation.producer.send_result(future_record(&record)).map_err(|(e, _)| self.classify(e))?;
        let (outcome, timed_out) = match tokio::time::timeout(timeout, delivery).await {
            Err(_) => (Err(PublishError::Unavailable("no acknowledgement within the deadline".into())), true),
            Ok(Err(_canceled)) => (Err(PublishError::Unavailable("the producer is shutting down".into())), false),
            Ok(Ok(Err((e, _)))) => {
                let timed_out = e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
                (Err(self.classify(e)), timed_out)
            }
            Ok(Ok(Ok(d))) => (Ok(Delivered { partition: d.partition, offset: d.offset }), false),
        };
        if timed_out {
            self.replace_after_timeout(&generation);
        }
        outcome
    }

    fn queue_len(&self) -> usize {
        self.current().producer.in_flight_count().max(0) as usize
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

    fn is_alive(&self) -> bool {
        !self.fatal.load(Ordering::SeqCst)
    }

    async fn flush(&self, timeout: Duration) {
        let producer = self.current().producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if let Ok(Err(e)) = flushed {
            tracing::warn!(error = %e, "records were still unacknowledged when the flush timed out");
        }
    }
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::config::Env;

    use super::*;

    fn config(extra: &str) -> Config {
        let text = format!("[sources.a]\nauth = {{ type = \"none\" }}\n{extra}");
        Config::from_toml(&text, &Env::new()).unwrap()
    }

    #[test]
    fn the_contract_settings_are_pinned() {
        let c = producer_config(&config("")).unwrap();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("message.timeout.ms"), Some("8000"));
        assert_eq!(c.get("request.timeout.ms"), Some("5000"));
        assert_eq!(c.get("queue.buffering.max.messages"), Some("100000"));
        assert_eq!(c.get("bootstrap.servers"), Some("localhost:9092"));
    }

    #[test]
    fn overrides_that_break_the_contract_are_refused() {
        let err = producer_config(&config("[kafka.properties]\nacks = \"1\"")).unwrap_err().to_string();
        assert!(err.starts_with("kafka.properties.\"acks\": must be all"), "{err}");
        let err = producer_config(&config("[kafka.properties]\n\"message.timeout.ms\" = \"30000\"")).unwrap_err();
        assert!(err.to_string().contains("below ingest.response_deadline"), "{err}");
        let ok = producer_config(&config("[kafka.properties]\n\"linger.ms\" = \"20\"\nacks = \"-1\"")).unwrap();
        assert_eq!(ok.get("linger.ms"), Some("20"));
    }
}
