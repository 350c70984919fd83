//! Small Kafka look-ups for assertions (record counts, high watermarks), with rdkafka.

use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
};

/// The high watermark (next offset) of every partition of `topic`.
pub fn high_watermarks(brokers: &str, topic: &str) -> BTreeMap<i32, i64> {
    try_high_watermarks(brokers, topic).unwrap_or_else(|e| panic!("{e}"))
}

/// [`high_watermarks`], or why the broker did not tell (a broker that is restarting or
/// slow under a fault: callers that wait for the pipeline to settle ask again).
pub fn try_high_watermarks(brokers: &str, topic: &str) -> Result<BTreeMap<i32, i64>, String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hooklake-tests-watermarks")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| format!("metadata: {e}"))?;
    let t = &md.topics()[0];
    assert!(t.error().is_none(), "topic {topic}: {:?}", t.error());
    t.partitions()
        .iter()
        .map(|p| {
            let (_, high) = consumer
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .map_err(|e| format!("watermarks of {topic}/{}: {e}", p.id()))?;
            Ok((p.id(), high))
        })
        .collect()
}

/// The number of records in `topic` (sum of high watermarks; hooklake topics are never compacted).
pub fn record_count(brokers: &str, topic: &str) -> i64 {
    high_watermarks(brokers, topic).values().sum()
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

/// A producer of the tests' own records (librdkafka's defaults, 10 s delivery timeout).
pub fn producer(brokers: &str) -> rdkafka::producer::FutureProducer {
    ClientConfig::new().set("bootstrap.servers", brokers).set("message.timeout.ms", "10000").create().expect("producer")
}

/// Produces one record that no hooklake ingest wrote (`payload` as is) and waits for its ack.
pub async fn produce_raw(brokers: &str, topic: &str, key: &str, payload: &str) {
    use rdkafka::producer::FutureRecord;
    producer(brokers)
        .send(FutureRecord::to(topic).key(key).payload(payload), Duration::from_secs(10))
        .await
        .expect("raw record acknowledged");
}

/// The keys (hooklake's records are keyed by `message_id`) of the records at `offsets` of
/// one partition; an offset without a record is left out.
pub fn keys_at(brokers: &str, topic: &str, partition: i32, offsets: &[i64]) -> BTreeMap<i64, String> {
    use rdkafka::{Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "hooklake-tests-keys")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut keys = BTreeMap::new();
    for &offset in offsets {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset)).expect("offset");
        consumer.assign(&tpl).expect("assign");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.offset() == offset => {
                    if let Some(key) = m.key() {
                        keys.insert(offset, String::from_utf8_lossy(key).into_owned());
                    }
                    break;
                }
                Some(Ok(m)) if m.offset() > offset => break,
                _ => {}
            }
        }
    }
    keys
}
