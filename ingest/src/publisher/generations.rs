//! The producer generations of [`super::KafkaPublisher`], and when one is replaced.
//!
//! After a delivery timeout (a `MessageTimedOut` delivery report) the idempotent producer
//! is replaced by a fresh one (a new producer id) and the old one's queue is purged.
//! librdkafka would otherwise bump the idempotent epoch locally (KIP-360); Kafka and
//! Redpanda accept that, but some Kafka-API brokers do not (tansu 0.6 panics in its
//! storage task and stops taking writes). A new producer works with every broker and
//! costs one InitProducerId after an outage.
//!
//! Only a real delivery timeout replaces the producer. A request that stops waiting for
//! its acknowledgement (its deadline came first, say after a slow body) leaves its record
//! to the producer: [`Followed`] keeps watching the delivery, so a delivery timeout seen
//! by nobody still replaces the producer. Records of other requests that the purge takes
//! with it are sent again on the new producer (see `KafkaPublisher::publish`): they were
//! not at fault, and a possible second copy is deduplicated by `message_id` downstream.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use futures::channel::oneshot::Canceled;
use hooklake_schemas::config::{Config, ConfigError};
use rdkafka::{
    Statistics,
    error::{KafkaError, RDKafkaErrorCode},
    producer::{Producer, PurgeConfig},
};

use super::{
    kafka::producer_config,
    runtime_producer::{DeliveryFuture, Report, RuntimeProducer},
};

/// One producer instance; replaced after delivery timeouts.
pub struct Generation {
    pub id: u64,
    pub producer: RuntimeProducer,
}

impl Generation {
    /// The producer's last statistics report.
    pub fn stats(&self) -> Option<Arc<Statistics>> {
        self.producer.producer().context().last_stats()
    }
}

/// The current producer, shared with the tasks that follow abandoned deliveries.
pub struct Producers {
    current: RwLock<Arc<Generation>>,
    generations: AtomicU64,
    config: Arc<Config>,
}

fn create_generation(id: u64, config: &Config) -> Result<Generation, ConfigError> {
    let producer = RuntimeProducer::create(&producer_config(config)?).map_err(|e| {
        let e = config.kafka.redact_error(e);
        ConfigError::invalid("kafka.properties", format!("librdkafka refused the producer: {e}"))
    })?;
    Ok(Generation { id, producer })
}

impl Producers {
    pub fn new(config: Arc<Config>) -> Result<Self, ConfigError> {
        Ok(Self {
            current: RwLock::new(Arc::new(create_generation(0, &config)?)),
            generations: AtomicU64::new(1),
            config,
        })
    }

    pub fn current(&self) -> Arc<Generation> {
        self.current.read().expect("not poisoned").clone()
    }

    /// Whether `generation` was replaced since it was taken.
    pub fn replaced(&self, generation: &Generation) -> bool {
        self.current().id != generation.id
    }

    /// Replaces generation `failed` by a fresh producer, unless another request already did.
    pub fn replace_after_timeout(&self, failed: &Generation) {
        let mut current = self.current.write().expect("not poisoned");
        if current.id != failed.id {
            return;
        }
        let id = self.generations.fetch_add(1, Ordering::SeqCst);
        let generation = match create_generation(id, &self.config) {
            Ok(g) => g,
            Err(e) => return tracing::error!(error = %e, "cannot create a new Kafka producer"),
        };
        let old = std::mem::replace(&mut *current, Arc::new(generation));
        drop(current);
        tracing::warn!(generation = id, "replaced the Kafka producer after a delivery timeout");
        // Nothing the old producer still holds may reach the broker under a bumped epoch;
        // the requests waiting for those records send them again on the new producer.
        old.producer.producer().purge(PurgeConfig::default().queue().inflight());
        tokio::task::spawn_blocking(move || drop(old));
    }
}

/// A delivery report saying the record timed out in librdkafka.
pub fn is_delivery_timeout(e: &KafkaError) -> bool {
    e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut)
}

/// A delivery report saying the record was purged (by a replacement), not refused.
pub fn is_purged(e: &KafkaError) -> bool {
    matches!(e.rdkafka_error_code(), Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight))
}

/// A delivery of `generation`'s producer. Dropped before its report arrived (the request
/// gave up), it is followed to its end by a task of its own, so that a delivery timeout
/// still replaces the producer.
pub struct Followed {
    delivery: Option<DeliveryFuture>,
    generation: Arc<Generation>,
    producers: Arc<Producers>,
}

impl Followed {
    pub fn new(delivery: DeliveryFuture, generation: Arc<Generation>, producers: Arc<Producers>) -> Self {
        Self { delivery: Some(delivery), generation, producers }
    }
}

impl Future for Followed {
    type Output = Result<Report, Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let delivery = self.delivery.as_mut().expect("polled after completion");
        let report = ready!(Pin::new(delivery).poll(cx));
        self.delivery = None;
        Poll::Ready(report)
    }
}

impl Drop for Followed {
    fn drop(&mut self) {
        let Some(delivery) = self.delivery.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (generation, producers) = (self.generation.clone(), self.producers.clone());
        runtime.spawn(async move {
            if let Ok(Err(e)) = delivery.await
                && is_delivery_timeout(&e)
            {
                producers.replace_after_timeout(&generation);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Polls the current generation's statistics until `accept` takes them (10 s at most).
    async fn statistics_of_current(producers: &Producers, accept: impl Fn(&str) -> bool) -> String {
        for _ in 0..500 {
            if let Some(s) = producers.current().stats()
                && accept(&s.name)
            {
                return s.name.clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no statistics report from the current producer within 10 s");
    }

    /// Each generation reports its own statistics: after a replacement, what is read is the
    /// new producer's (librdkafka names each handle), never the purged one's.
    #[tokio::test(flavor = "multi_thread")]
    async fn statistics_follow_the_current_generation() {
        let extra = "[kafka]\nbrokers = \"127.0.0.1:9\"\n[kafka.properties]\n\"statistics.interval.ms\" = \"50\"\n";
        let producers = Producers::new(Arc::new(super::super::kafka::tests::config(extra))).unwrap();
        let first = statistics_of_current(&producers, |_| true).await;
        producers.replace_after_timeout(&producers.current());
        assert_eq!(producers.current().id, 1);
        let second = statistics_of_current(&producers, |name| name != first).await;
        assert!(second.starts_with("rdkafka#producer-"), "{second}");
    }
}
