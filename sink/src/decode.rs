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
            Some(sr) => Some(ConfluentCodec::new(sr).map_err(SinkError::Registry)?),
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
                    Err(e @ SchemaError::Registry(_)) => return Err(SinkError::Registry(e)),
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

#[cfg(test)]
mod tests {
    use hooklake_schemas::config::Env;

    use super::*;

    #[tokio::test]
    async fn an_unreachable_registry_fails_the_run_as_a_registry_error_not_as_kafka() {
        // Nothing listens on port 1: every schema lookup fails to connect.
        let toml = "[schema_registry]\nurl = \"http://127.0.0.1:1\"\ntimeout = \"2s\"\n\
                    [sources.s]\nauth = { type = \"none\" }\n";
        let decoder = Decoder::new(&Config::from_toml(toml, &Env::new()).unwrap()).unwrap();
        // Confluent framing: magic byte 0, schema id 7, then the Avro body.
        let record = [0u8, 0, 0, 0, 7, 2, b'x'];
        let err = decoder.decode(Some(&record)).await.unwrap_err();
        assert!(matches!(err, SinkError::Registry(SchemaError::Registry(_))), "{err:?}");
        assert!(err.to_string().starts_with("schema registry: "), "{err}");
    }

    #[tokio::test]
    async fn a_record_that_is_no_envelope_is_a_dead_letter_not_an_error() {
        let toml = "[sources.s]\nauth = { type = \"none\" }\n";
        let decoder = Decoder::new(&Config::from_toml(toml, &Env::new()).unwrap()).unwrap();
        let reason = decoder.decode(Some(b"plain text")).await.unwrap().unwrap_err();
        assert!(reason.contains("not a hooklake envelope"), "{reason}");
    }
}
