//! Small Kafka look-ups for assertions (record counts, high watermarks), with rdkafka.

use std::{collections::BTreeMap, time::Duration};

use rdkafka::{
    ClientConfig,
    consumer::{BaseConsumer, Consumer},
};

/// The high watermark (next offset) of every partition of `topic`.
pub fn high_watermarks(brokers: &str, topic: &str) -> BTreeMap<i32, i64> {
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
        .map(|p| (p.id(), consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).expect("watermarks").1))
        .collect()
}

/// The number of records in `topic` (sum of high watermarks; hooklake topics are never compacted).
pub fn record_count(brokers: &str, topic: &str) -> i64 {
    high_watermarks(brokers, topic).values().sum()
}

/// Deletes `topic` and creates it again, empty, with `partitions` partitions.
pub async fn recreate_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::{
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
    };
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for r in admin.delete_topics(&[topic], &options).await.expect("delete topics") {
        r.unwrap_or_else(|(t, e)| panic!("delete {t}: {e}"));
    }
    crate::eventually(Duration::from_secs(30), "the topic to be created again", || async {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let created = admin.create_topics(&[new], &options).await.ok()?;
        created.into_iter().all(|r| r.is_ok()).then_some(())
    })
    .await;
    crate::eventually(Duration::from_secs(30), "the recreated topic to be empty", || async {
        (record_count(brokers, topic) == 0).then_some(())
    })
    .await;
}
