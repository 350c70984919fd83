//! hooklake's contracts, shared by ingest and sink: the Avro webhook envelope and its two
//! encodings, the Iceberg table schema, Kafka header names, the metrics contract, and the
//! configuration.
//! Nothing here talks to Kafka or serves HTTP.

mod avro;
pub mod config;
mod confluent;
mod envelope;
pub mod kafka;
pub mod metrics;
pub mod table;

pub use avro::{parsing_canonical_form, rabin_fingerprint};
pub use confluent::{CONFLUENT_MAGIC, ConfluentCodec};
pub use envelope::{
    ENVELOPE_SCHEMA_V1, EnvelopeRef, SINGLE_OBJECT_MAGIC, WebhookEnvelope, envelope_canonical_form,
    envelope_fingerprint,
};

/// How a record's value is framed, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    SingleObject,
    Confluent,
}

impl Framing {
    pub fn detect(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0xC3, 0x01, ..] => Some(Self::SingleObject),
            [CONFLUENT_MAGIC, _, _, _, _, ..] => Some(Self::Confluent),
            _ => None,
        }
    }
}

/// An envelope that cannot be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("framing: {0}")]
    Framing(String),
    #[error("unknown schema fingerprint {0} (not webhook_envelope.v1)")]
    UnknownFingerprint(String),
    #[error("record shape: {0}")]
    Shape(String),
    #[error("schema id {0} is not webhook_envelope.v1 in the registry (or the registry has no such id)")]
    UnknownSchemaId(u32),
    #[error("schema registry: {0}")]
    Registry(String),
}
