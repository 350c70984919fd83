//! Record values → envelopes, in either encoding ingest writes.

use hooklake_schemas::{ConfluentCodec, Framing, SchemaError, WebhookEnvelope, config::Config};

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

    /// The envelope in `value`; `Ok(Err(reason))` when the record cannot be loaded (it
    /// then goes to the DLQ). A schema registry that cannot be asked is `Err`: the run
    /// fails and is retried, rather than dead-lettering every record during an outage.
    pub async fn decode(&self, value: Option<&[u8]>) -> Result<Result<WebhookEnvelope, String>, SinkError> {
        let Some(value) = value else { return Ok(Err("the record has no value".into())) };
        let envelope = match Framing::detect(value) {
            Some(Framing::SingleObject) => WebhookEnvelope::from_single_object(value).map_err(|e| e.to_string()),
            Some(Framing::Confluent) => match &self.registry {
                Some(codec) => match codec.decode(value).await {
                    Err(SchemaError::Registry(e)) => return Err(SinkError::Kafka(format!("schema registry: {e}"))),
                    other => other.map_err(|e| e.to_string()),
                },
                None => Err("a Confluent-framed record, but no [schema_registry] is configured".into()),
            },
            None => Err("not a hooklake envelope (neither single-object nor Confluent framing)".into()),
        };
        Ok(envelope.and_then(|e| {
            if e.message_id.is_empty() { Err("the envelope has an empty message_id".to_owned()) } else { Ok(e) }
        }))
    }
}
