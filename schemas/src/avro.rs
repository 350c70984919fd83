//! Avro binary encoding of the v1 envelope, and the schema's Parsing Canonical Form and
//! CRC-64-AVRO fingerprint.
//!
//! Why not apache-avro's generic reader/writer: its 0.22 release writes logical types into
//! the canonical form (so its fingerprint differs from the one Java and fastavro compute,
//! and single-object headers would not match theirs), and its reader decodes a truncated
//! union string as `null` instead of failing. The envelope is a fixed record of strings,
//! one long, two `["null","string"]` unions and one `map<string>`, so a strict codec is
//! short; tests check it against fastavro and apache-avro.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use crate::{EnvelopeRef, SchemaError, WebhookEnvelope};

/// Writes the v1 datum of `e` to `out`.
pub(crate) fn encode_datum(e: &EnvelopeRef<'_>, out: &mut Vec<u8>) {
    write_str(out, e.message_id);
    write_str(out, e.source);
    write_long(out, e.received_at_micros);
    write_str(out, e.payload);
    write_optional(out, e.event_type);
    if !e.headers.is_empty() {
        write_long(out, e.headers.len() as i64);
        for &(k, v) in e.headers {
            write_str(out, k);
            write_str(out, v);
        }
    }
    write_long(out, 0);
    write_optional(out, e.verified_by);
}

/// Reads one v1 datum that must fill `bytes` exactly.
pub(crate) fn decode_datum(bytes: &[u8]) -> Result<WebhookEnvelope, SchemaError> {
    let mut r = Reader { bytes, pos: 0 };
    let e = WebhookEnvelope {
        message_id: r.string("message_id")?,
        source: r.string("source")?,
        received_at_micros: r.long("received_at")?,
        payload: r.string("payload")?,
        event_type: r.optional("event_type")?,
        headers: r.string_map("headers")?,
        verified_by: r.optional("verified_by")?,
    };
    if r.pos != bytes.len() {
        return Err(SchemaError::Framing(format!("{} trailing bytes after the record", bytes.len() - r.pos)));
    }
    Ok(e)
}

fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    write_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn write_optional(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => write_long(out, 0),
        Some(s) => {
            write_long(out, 1);
            write_str(out, s);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn eof(&self, field: &str) -> SchemaError {
        SchemaError::Framing(format!("record ends inside `{field}` at byte {}", self.pos))
    }

    fn long(&mut self, field: &str) -> Result<i64, SchemaError> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.pos).ok_or_else(|| self.eof(field))?;
            self.pos += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(SchemaError::Framing(format!("`{field}`: varint longer than 10 bytes")))
    }

    fn string(&mut self, field: &str) -> Result<String, SchemaError> {
        let len = self.long(field)?;
        let len =
            usize::try_from(len).map_err(|_| SchemaError::Framing(format!("`{field}`: negative length {len}")))?;
        let end = self.pos.checked_add(len).filter(|&end| end <= self.bytes.len()).ok_or_else(|| self.eof(field))?;
        let s = std::str::from_utf8(&self.bytes[self.pos..end])
            .map_err(|e| SchemaError::Shape(format!("`{field}` is not UTF-8: {e}")))?;
        self.pos = end;
        Ok(s.to_owned())
    }

    fn optional(&mut self, field: &str) -> Result<Option<String>, SchemaError> {
        match self.long(field)? {
            0 => Ok(None),
            1 => self.string(field).map(Some),
            i => Err(SchemaError::Shape(format!("`{field}`: union branch {i} does not exist"))),
        }
    }

    fn string_map(&mut self, field: &str) -> Result<BTreeMap<String, String>, SchemaError> {
        let mut map = BTreeMap::new();
        loop {
            let mut count = self.long(field)?;
            if count == 0 {
                return Ok(map);
            }
            if count < 0 {
                // A negative count is followed by the block's size in bytes (Avro spec).
                count = count.checked_neg().ok_or_else(|| SchemaError::Shape(format!("`{field}`: bad block")))?;
                self.long(field)?;
            }
            for _ in 0..count {
                let k = self.string(field)?;
                let v = self.string(field)?;
                map.insert(k, v);
            }
        }
    }
}

/// The Parsing Canonical Form of an Avro schema (Avro specification, "Parsing Canonical
/// Form for Schemas"): full names, only the attributes that matter for parsing, in a
/// fixed order, primitives as bare strings, no whitespace.
pub fn parsing_canonical_form(schema: &Json) -> Result<String, SchemaError> {
    pcf(schema, None)
}

fn pcf(schema: &Json, namespace: Option<&str>) -> Result<String, SchemaError> {
    let bad = |m: &str| SchemaError::Shape(format!("schema: {m}"));
    match schema {
        Json::String(name) => Ok(Json::String(full_name(name, namespace)).to_string()),
        Json::Array(branches) => {
            let parts: Result<Vec<_>, _> = branches.iter().map(|b| pcf(b, namespace)).collect();
            Ok(format!("[{}]", parts?.join(",")))
        }
        Json::Object(obj) => {
            let ty = obj.get("type").ok_or_else(|| bad("a type without `type`"))?;
            let Json::String(ty) = ty else { return pcf(ty, namespace) };
            let quoted = |s: &str| Json::String(s.to_owned()).to_string();
            match ty.as_str() {
                "record" | "error" | "enum" | "fixed" => {
                    let name =
                        obj.get("name").and_then(Json::as_str).ok_or_else(|| bad("a named type without `name`"))?;
                    let ns = obj.get("namespace").and_then(Json::as_str).or(namespace);
                    let full = full_name(name, ns);
                    let inner_ns = full.rsplit_once('.').map(|(ns, _)| ns.to_owned());
                    let mut out = format!("{{\"name\":{},\"type\":{}", quoted(&full), quoted(ty));
                    if ty == "enum" {
                        out += &format!(",\"symbols\":{}", obj.get("symbols").cloned().unwrap_or_default());
                    } else if ty == "fixed" {
                        out += &format!(",\"size\":{}", obj.get("size").cloned().unwrap_or_default());
                    } else {
                        let fields = obj
                            .get("fields")
                            .and_then(Json::as_array)
                            .ok_or_else(|| bad("a record without `fields`"))?;
                        let mut parts = Vec::with_capacity(fields.len());
                        for f in fields {
                            let fname =
                                f.get("name").and_then(Json::as_str).ok_or_else(|| bad("a field without `name`"))?;
                            let fty = f.get("type").ok_or_else(|| bad("a field without `type`"))?;
                            parts.push(format!(
                                "{{\"name\":{},\"type\":{}}}",
                                quoted(fname),
                                pcf(fty, inner_ns.as_deref())?
                            ));
                        }
                        out += &format!(",\"fields\":[{}]", parts.join(","));
                    }
                    Ok(out + "}")
                }
                "array" => Ok(format!("{{\"type\":\"array\",\"items\":{}}}", pcf(&obj["items"], namespace)?)),
                "map" => Ok(format!("{{\"type\":\"map\",\"values\":{}}}", pcf(&obj["values"], namespace)?)),
                primitive => Ok(quoted(&full_name(primitive, namespace))),
            }
        }
        _ => Err(bad("not a schema")),
    }
}

const PRIMITIVES: &[&str] = &["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        _ if PRIMITIVES.contains(&name) || name.contains('.') => name.to_owned(),
        Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

/// The CRC-64-AVRO (Rabin) fingerprint of `data`, as the 8 little-endian bytes single-object
/// headers carry.
pub fn rabin_fingerprint(data: &[u8]) -> [u8; 8] {
    const EMPTY: u64 = 0xC15D_213A_A4D7_A795;
    let table: [u64; 256] = std::array::from_fn(|i| {
        let mut fp = i as u64;
        for _ in 0..8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
        }
        fp
    });
    let fp = data.iter().fold(EMPTY, |fp, &b| (fp >> 8) ^ table[((fp ^ u64::from(b)) & 0xff) as usize]);
    fp.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_follow_the_zigzag_encoding() {
        for (v, bytes) in [(0i64, vec![0u8]), (-1, vec![1]), (1, vec![2]), (-64, vec![0x7f]), (64, vec![0x80, 1])] {
            let mut out = vec![];
            write_long(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            assert_eq!(Reader { bytes: &out, pos: 0 }.long("x").unwrap(), v);
        }
        for v in [i64::MIN, i64::MAX, 1_795_500_000_123_456] {
            let mut out = vec![];
            write_long(&mut out, v);
            assert_eq!(Reader { bytes: &out, pos: 0 }.long("x").unwrap(), v);
        }
    }

    #[test]
    fn canonical_form_follows_the_specification_examples() {
        let s: Json = serde_json::from_str(
            r#"{"type":"record","name":"R","namespace":"a.b","doc":"x","fields":[
            {"name":"f","type":{"type":"long","logicalType":"timestamp-micros"},"default":1},
            {"name":"g","type":{"type":"enum","name":"E","symbols":["A","B"]}},
            {"name":"h","type":["null",{"type":"array","items":"E"}]}]}"#,
        )
        .unwrap();
        assert_eq!(
            parsing_canonical_form(&s).unwrap(),
            r#"{"name":"a.b.R","type":"record","fields":[{"name":"f","type":"long"},{"name":"g","type":{"name":"a.b.E","type":"enum","symbols":["A","B"]}},{"name":"h","type":["null",{"type":"array","items":"a.b.E"}]}]}"#
        );
    }

    #[test]
    fn rabin_of_the_empty_input_is_the_seed() {
        // The Avro specification's reference implementation starts from EMPTY.
        assert_eq!(u64::from_le_bytes(rabin_fingerprint(b"")), 0xC15D_213A_A4D7_A795);
        // "int" → 0x7275d51a3f395c8f (fastavro and the Java implementation agree).
        assert_eq!(u64::from_le_bytes(rabin_fingerprint(b"\"int\"")), 0x7275_d51a_3f39_5c8f);
    }
}
