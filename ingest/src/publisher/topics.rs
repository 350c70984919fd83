//! Creating hooklake's topics when they are missing (`kafka.create_topics`).

use std::time::Duration;

use hooklake_schemas::config::KafkaConfig;
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    types::RDKafkaErrorCode,
};

/// Creates each of `topics` that does not exist yet; existing ones are left alone.
pub async fn ensure_topics(kafka: &KafkaConfig, topics: &[String]) -> Result<(), String> {
    ensure_topics_with(kafka, topics, &[]).await
}

/// [`ensure_topics`], creating topics with the topic-level `settings` (e.g. `max.message.bytes`).
pub async fn ensure_topics_with(
    kafka: &KafkaConfig,
    topics: &[String],
    settings: &[(&str, &str)],
) -> Result<(), String> {
    // Statistics are for the producer's gauges: this client's would only be logged.
    let properties = kafka.client_properties().filter(|(k, _)| *k != "statistics.interval.ms");
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::from_iter(properties.map(|(k, v)| (k.to_owned(), v.to_owned())))
            .create()
            .map_err(|e| e.to_string())?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            let topic =
                NewTopic::new(t, kafka.topic_partitions, TopicReplication::Fixed(kafka.topic_replication_factor));
            settings.iter().fold(topic, |topic, (k, v)| topic.set(k, v))
        })
        .collect();
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(5)))
        .request_timeout(Some(Duration::from_secs(5)));
    let results = admin.create_topics(&new, &options).await.map_err(|e| format!("cannot create topics: {e}"))?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("cannot create topic {topic}: {code}")),
        }
    }
    Ok(())
}
