//! The Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro datum.
//! The v1 schema is registered under the TopicNameStrategy subject `<topic>-value`
//! (schema_registry_converter talks to the registry); ids are cached, so only the first
//! record of a topic, or of a new schema id, talks to the registry.

use std::{collections::HashMap, fmt, sync::Mutex};

use schema_registry_converter::{
    async_impl::schema_registry::{SrSettings, get_schema_by_id, get_schema_by_subject},
    error::SRCError,
    schema_registry_common::{RawError, SchemaType, SubjectNameStrategy, SuppliedSchema},
};

use crate::{
    ENVELOPE_SCHEMA_V1, EnvelopeRef, SchemaError, WebhookEnvelope, avro::parsing_canonical_form,
    config::SchemaRegistryConfig, envelope::envelope_canonical_form,
};

/// The Schema Registry API's error code for "Schema not found" (HTTP 404).
const SCHEMA_NOT_FOUND: u32 = 40403;

/// Whether the registry answered, definitively, that it does not know the schema.
fn is_schema_not_found(e: &SRCError) -> bool {
    use std::error::Error as _;
    e.source().and_then(|s| s.downcast_ref::<RawError>()).is_some_and(|raw| raw.error_code == SCHEMA_NOT_FOUND)
}

/// The first byte of a Confluent-framed record.
pub const CONFLUENT_MAGIC: u8 = 0;
const HEADER_LEN: usize = 5;

/// A Schema Registry client that knows the v1 envelope: it registers it per topic and
/// recognises its ids.
pub struct ConfluentCodec {
    settings: SrSettings,
    ids_by_topic: Mutex<HashMap<String, u32>>,
    /// id → whether that registered schema is v1 (ids are immutable, so both answers are cached).
    known_ids: Mutex<HashMap<u32, bool>>,
}

impl fmt::Debug for ConfluentCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfluentCodec").finish_non_exhaustive()
    }
}

impl ConfluentCodec {
    pub fn new(config: &SchemaRegistryConfig) -> Result<Self, SchemaError> {
        let mut builder = SrSettings::new_builder(config.url.trim_end_matches('/').to_owned());
        builder.set_timeout(config.timeout.get());
        if let Some(user) = &config.username {
            builder.set_basic_authorization(user, config.password.as_ref().map(|p| p.expose()));
        }
        let settings = builder.build().map_err(|e| SchemaError::Registry(e.to_string()))?;
        Ok(Self { settings, ids_by_topic: Mutex::default(), known_ids: Mutex::default() })
    }

    /// The registry id of v1 under subject `<topic>-value`, registering it if needed.
    pub async fn schema_id(&self, topic: &str) -> Result<u32, SchemaError> {
        if let Some(id) = self.ids_by_topic.lock().expect("not poisoned").get(topic) {
            return Ok(*id);
        }
        let schema = SuppliedSchema::new(
            Some("io.hooklake.WebhookEnvelope".into()),
            SchemaType::Avro,
            ENVELOPE_SCHEMA_V1.to_owned(),
        );
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(topic.to_owned(), false, schema);
        let registered =
            get_schema_by_subject(&self.settings, &strategy).await.map_err(|e| SchemaError::Registry(e.to_string()))?;
        self.ids_by_topic.lock().expect("not poisoned").insert(topic.to_owned(), registered.id);
        self.known_ids.lock().expect("not poisoned").insert(registered.id, true);
        Ok(registered.id)
    }

    /// Encodes `envelope` for `topic`.
    pub async fn encode(&self, envelope: &EnvelopeRef<'_>, topic: &str) -> Result<Vec<u8>, SchemaError> {
        let id = self.schema_id(topic).await?;
        let mut out = Vec::with_capacity(HEADER_LEN + 64 + envelope.payload.len());
        out.push(CONFLUENT_MAGIC);
        out.extend_from_slice(&id.to_be_bytes());
        envelope.encode_datum(&mut out);
        Ok(out)
    }

    /// Decodes a Confluent-framed envelope whose schema id is the v1 envelope's.
    pub async fn decode(&self, bytes: &[u8]) -> Result<WebhookEnvelope, SchemaError> {
        let Some((header, datum)) = bytes.split_at_checked(HEADER_LEN).filter(|(h, _)| h[0] == CONFLUENT_MAGIC) else {
            return Err(SchemaError::Framing("not a Confluent-framed record".into()));
        };
        let id = u32::from_be_bytes(header[1..].try_into().expect("4 bytes"));
        if !self.is_v1(id).await? {
            return Err(SchemaError::UnknownSchemaId(id));
        }
        WebhookEnvelope::decode_datum(datum)
    }

    async fn is_v1(&self, id: u32) -> Result<bool, SchemaError> {
        if let Some(known) = self.known_ids.lock().expect("not poisoned").get(&id) {
            return Ok(*known);
        }
        let registered = match get_schema_by_id(id, &self.settings).await {
            Ok(registered) => registered,
            // The registry answered that it has no such id (a record framed against another
            // registry, or garbage): the record can never be read here. Not cached, in case
            // the id is registered later.
            Err(e) if is_schema_not_found(&e) => return Ok(false),
            // Unreachable, 5xx, refused credentials: the registry could not say.
            Err(e) => return Err(SchemaError::Registry(e.to_string())),
        };
        let json: serde_json::Value = serde_json::from_str(&registered.schema)
            .map_err(|e| SchemaError::Registry(format!("schema {id} is not JSON: {e}")))?;
        let is_v1 = parsing_canonical_form(&json)? == envelope_canonical_form();
        self.known_ids.lock().expect("not poisoned").insert(id, is_v1);
        Ok(is_v1)
    }
}
