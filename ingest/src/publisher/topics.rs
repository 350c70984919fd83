//! Creating hooklake's topics when they are missing (`kafka.create_topics`), through the
//! one implementation ingest and the sink share (`hooklake_schemas::kafka::ensure_topics`).

use hooklake_schemas::{config::KafkaConfig, kafka};

/// Creates each of `topics` that does not exist yet; existing ones are left alone.
pub async fn ensure_topics(config: &KafkaConfig, topics: &[String]) -> Result<(), String> {
    ensure_topics_with(config, topics, &[]).await
}

/// [`ensure_topics`], creating topics with the topic-level `settings` (e.g. `max.message.bytes`).
pub async fn ensure_topics_with(
    config: &KafkaConfig,
    topics: &[String],
    settings: &[(&str, &str)],
) -> Result<(), String> {
    let created = kafka::ensure_topics(config, topics, settings).await.map_err(|e| e.to_string())?;
    for topic in created {
        tracing::info!(%topic, "created topic");
    }
    Ok(())
}
