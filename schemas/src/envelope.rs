//! The `WebhookEnvelope` record and its Avro single-object encoding
//! (`C3 01` + 8-byte little-endian CRC-64-AVRO fingerprint + Avro binary datum).

use std::{collections::BTreeMap, sync::LazyLock};

use crate::{
    SchemaError,
    avro::{decode_datum, encode_datum, parsing_canonical_form, rabin_fingerprint},
};

/// The schema text, exactly as shipped in `webhook_envelope.v1.avsc`.
pub const ENVELOPE_SCHEMA_V1: &str = include_str!("../webhook_envelope.v1.avsc");

/// The first two bytes of every single-object encoded record.
pub const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const SINGLE_OBJECT_HEADER_LEN: usize = 10;

static CANONICAL_FORM: LazyLock<String> = LazyLock::new(|| {
    let json = serde_json::from_str(ENVELOPE_SCHEMA_V1).expect("the shipped envelope schema is JSON");
    parsing_canonical_form(&json).expect("the shipped envelope schema is an Avro schema")
});

static HEADER: LazyLock<[u8; SINGLE_OBJECT_HEADER_LEN]> = LazyLock::new(|| {
    let mut h = [0; SINGLE_OBJECT_HEADER_LEN];
    h[..2].copy_from_slice(&SINGLE_OBJECT_MAGIC);
    h[2..].copy_from_slice(&envelope_fingerprint());
    h
});

/// The v1 schema's Parsing Canonical Form.
pub fn envelope_canonical_form() -> &'static str {
    &CANONICAL_FORM
}

/// The CRC-64-AVRO fingerprint of the v1 canonical form, little-endian, as single-object
/// headers carry it.
pub fn envelope_fingerprint() -> [u8; 8] {
    rabin_fingerprint(CANONICAL_FORM.as_bytes())
}

/// One accepted webhook, as put on Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEnvelope {
    /// The sender's delivery id (the signed `webhook-id`/`svix-id`, the configured header) or a UUIDv7.
    pub message_id: String,
    /// The configured source name.
    pub source: String,
    /// When ingest received the request, in microseconds since the Unix epoch (UTC).
    pub received_at_micros: i64,
    /// The JSON body, byte for byte as the sender wrote it (after Content-Encoding).
    pub payload: String,
    /// The event type found in the body, if any.
    pub event_type: Option<String>,
    /// Allow-listed request headers (lower-case names), never credentials.
    pub headers: BTreeMap<String, String>,
    /// The authentication scheme that accepted the request.
    pub verified_by: Option<String>,
}

/// An envelope with borrowed fields: what ingest encodes, straight from the request
/// (the payload is not copied out of the body it arrived in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeRef<'a> {
    pub message_id: &'a str,
    pub source: &'a str,
    pub received_at_micros: i64,
    pub payload: &'a str,
    pub event_type: Option<&'a str>,
    /// The forwarded headers as (name, value) pairs, sorted by name with no name twice:
    /// the order of [`WebhookEnvelope::headers`], so that both encode the same bytes.
    pub headers: &'a [(&'a str, &'a str)],
    pub verified_by: Option<&'a str>,
}

impl EnvelopeRef<'_> {
    /// Avro single-object encoding under the v1 schema.
    pub fn to_single_object(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SINGLE_OBJECT_HEADER_LEN + 64 + self.payload.len());
        out.extend_from_slice(&*HEADER);
        self.encode_datum(&mut out);
        out
    }

    /// Appends the bare Avro datum (no framing) to `out`.
    pub fn encode_datum(&self, out: &mut Vec<u8>) {
        encode_datum(self, out);
    }
}

impl WebhookEnvelope {
    /// Calls `f` with the same envelope, its fields borrowed.
    pub fn with_borrowed<R>(&self, f: impl FnOnce(&EnvelopeRef<'_>) -> R) -> R {
        // The map iterates in name order, the order `EnvelopeRef::headers` asks for.
        let headers: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        f(&EnvelopeRef {
            message_id: &self.message_id,
            source: &self.source,
            received_at_micros: self.received_at_micros,
            payload: &self.payload,
            event_type: self.event_type.as_deref(),
            headers: &headers,
            verified_by: self.verified_by.as_deref(),
        })
    }

    /// Avro single-object encoding under the v1 schema.
    pub fn to_single_object(&self) -> Vec<u8> {
        self.with_borrowed(|e| e.to_single_object())
    }

    /// Appends the bare Avro datum (no framing) to `out`.
    pub fn encode_datum(&self, out: &mut Vec<u8>) {
        self.with_borrowed(|e| e.encode_datum(out));
    }

    /// Reads a bare Avro datum written with the v1 schema; it must fill `bytes` exactly.
    pub fn decode_datum(bytes: &[u8]) -> Result<Self, SchemaError> {
        decode_datum(bytes)
    }

    /// Decodes an Avro single-object encoded envelope; the fingerprint must be v1's.
    pub fn from_single_object(bytes: &[u8]) -> Result<Self, SchemaError> {
        let Some((header, datum)) = bytes.split_at_checked(SINGLE_OBJECT_HEADER_LEN) else {
            return Err(SchemaError::Framing(format!("{} bytes is too short for a single-object record", bytes.len())));
        };
        if header[..2] != SINGLE_OBJECT_MAGIC {
            return Err(SchemaError::Framing("missing the single-object marker C3 01".into()));
        }
        if header != *HEADER {
            return Err(SchemaError::UnknownFingerprint(hex_string(&header[2..])));
        }
        decode_datum(datum)
    }
}

pub(crate) fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// apache-avro (an implementation we did not write) reads what we write.
    #[test]
    fn apache_avro_reads_our_datum() {
        use apache_avro::{Schema, types::Value};
        let schema = Schema::parse_str(ENVELOPE_SCHEMA_V1).unwrap();
        let e = sample();
        let mut datum = vec![];
        e.encode_datum(&mut datum);
        #[allow(deprecated)]
        let v = apache_avro::from_avro_datum(&schema, &mut &datum[..], None).unwrap();
        let Value::Record(fields) = v else { panic!("not a record") };
        assert_eq!(fields[0].1, Value::String(e.message_id.clone()));
        assert_eq!(fields[2].1, Value::TimestampMicros(e.received_at_micros));
        assert_eq!(fields[3].1, Value::String(e.payload.clone()));
        assert_eq!(fields[4].1, Value::Union(1, Box::new(Value::String("meter.read".into()))));
        assert_eq!(fields[6].1, Value::Union(1, Box::new(Value::String("standard_webhooks".into()))));
    }

    pub(crate) fn sample() -> WebhookEnvelope {
        WebhookEnvelope {
            message_id: "msg_2Lq3".into(),
            source: "nectar".into(),
            received_at_micros: 1_795_500_000_123_456,
            payload: r#"{"type":"meter.read","kWh":1.5,"note":"ünïcødé"}"#.into(),
            event_type: Some("meter.read".into()),
            headers: [("user-agent".to_string(), "Svix-Webhooks/1.0".to_string())].into(),
            verified_by: Some("standard_webhooks".into()),
        }
    }

    #[test]
    fn single_object_round_trip() {
        let e = sample();
        let bytes = e.to_single_object();
        assert_eq!(bytes[..2], SINGLE_OBJECT_MAGIC);
        assert_eq!(WebhookEnvelope::from_single_object(&bytes).unwrap(), e);
        let none = WebhookEnvelope { event_type: None, verified_by: None, headers: BTreeMap::new(), ..e };
        assert_eq!(WebhookEnvelope::from_single_object(&none.to_single_object()).unwrap(), none);
    }

    /// The fingerprint is part of every record on Kafka: changing the schema text in a way
    /// that changes its canonical form must be a deliberate new version (v2), never an edit.
    #[test]
    fn schema_fingerprint_is_pinned() {
        // fastavro.schema.fingerprint(parsing_canonical_form, "CRC-64-AVRO") gives the same.
        assert_eq!(hex_string(&envelope_fingerprint()), "6d622ea3a2fbe640");
        assert_eq!(
            envelope_canonical_form(),
            r#"{"name":"io.hooklake.WebhookEnvelope","type":"record","fields":[{"name":"message_id","type":"string"},{"name":"source","type":"string"},{"name":"received_at","type":"long"},{"name":"payload","type":"string"},{"name":"event_type","type":["null","string"]},{"name":"headers","type":{"type":"map","values":"string"}},{"name":"verified_by","type":["null","string"]}]}"#
        );
    }

    #[test]
    fn corrupt_records_are_errors_not_panics() {
        let bytes = sample().to_single_object();
        assert!(matches!(WebhookEnvelope::from_single_object(&bytes[..5]), Err(SchemaError::Framing(_))));
        let mut other = bytes.clone();
        other[4] ^= 0xff;
        assert!(matches!(WebhookEnvelope::from_single_object(&other), Err(SchemaError::UnknownFingerprint(_))));
        for cut in 11..bytes.len() {
            assert!(WebhookEnvelope::from_single_object(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(matches!(WebhookEnvelope::from_single_object(&trailing), Err(SchemaError::Framing(_))));
        assert!(WebhookEnvelope::from_single_object(b"{\"json\": true}").is_err());
    }
}
