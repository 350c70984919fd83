//! Record values → envelopes, in either encoding ingest writes.

use hooklake_schemas::{ConfluentCodec, Framing, WebhookEnvelope, config::Config};

use crate::SinkError;

#[derive(Debug)]
pub struct Decoder {
    registry: Option<ConfluentCodec>,
}

impl Decoder {
    pub fn new(config: &Config) -> Result<Self, SinkError> {
        let registry = match &config.schema_registry {
            Some(sr) => Some(ConfluentCodec::new(sr).map_err(|e| SinkError::Kafka(format!("schema registry: {e}")))?),
            None => None,
        };
        Ok(Self { registry })
    }

    /// The envelope in `value`, or why it cannot be loaded (it then goes to the DLQ).
    pub async fn decode(&self, value: Option<&[u8]>) -> Result<WebhookEnvelope, String> {
        let value = value.ok_or("the record has no value")?;
        let envelope = match Framing::detect(value) {
            Some(Framing::SingleObject) => WebhookEnvelope::from_single_object(value).map_err(|e| e.to_string())?,
            Some(Framing::Confluent) => match &self.registry {
                Some(codec) => codec.decode(value).await.map_err(|e| e.to_string())?,
                None => return Err("a Confluent-framed record, but no [schema_registry] is configured".into()),
            },
            None => return Err("not a hooklake envelope (neither single-object nor Confluent framing)".into()),
        };
        if envelope.message_id.is_empty() {
            return Err("the envelope has an empty message_id".into());
        }
        Ok(envelope)
    }
}
