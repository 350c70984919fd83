//! Small Kafka look-ups for assertions (record counts), with rdkafka.

use std::time::Duration;

use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
};

/// The number of records in `topic` (sum of high watermarks; hooklake topics are never compacted).
pub fn record_count(brokers: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hooklake-tests-watermarks")
        .create()
        .expect("consumer");
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let t = &md.topics()[0];
    assert!(t.error().is_none(), "topic {topic}: {:?}", t.error());
    t.partitions()
        .iter()
        .map(|p| consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks").1)
        .sum()
}

/// An admin client of `brokers`.
fn admin(brokers: &str) -> rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client")
}

fn admin_options() -> rdkafka::admin::AdminOptions {
    rdkafka::admin::AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

/// Deletes `topic`.
pub async fn delete_topic(brokers: &str, topic: &str) {
    for r in admin(brokers).delete_topics(&[topic], &admin_options()).await.expect("delete topics") {
        r.unwrap_or_else(|(t, e)| panic!("delete {t}: {e}"));
    }
}

/// Creates `topic`, empty, with `partitions` partitions (retried while the broker still
/// holds a deleted topic of that name).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{NewTopic, TopicReplication};
    let admin = admin(brokers);
    crate::eventually(Duration::from_secs(30), "the topic to be created", || async {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let created = admin.create_topics(&[new], &admin_options()).await.ok()?;
        created.into_iter().all(|r| r.is_ok()).then_some(())
    })
    .await;
    crate::eventually(Duration::from_secs(30), "the new topic to be empty", || async {
        (record_count(brokers, topic) == 0).then_some(())
    })
    .await;
}

/// Deletes `topic` and creates it again, empty, with `partitions` partitions.
pub async fn recreate_topic(brokers: &str, topic: &str, partitions: i32) {
    delete_topic(brokers, topic).await;
    create_topic(brokers, topic, partitions).await;
}

/// Produces one record that no hooklake ingest wrote (`payload` as is) and waits for its ack.
pub async fn produce_raw(brokers: &str, topic: &str, key: &str, payload: &str) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    producer
        .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
        .await
        .expect("raw record acknowledged");
}
