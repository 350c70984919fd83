//! Content checks: the Content-Type must be JSON and the body must be JSON (serde_json's
//! nesting limit of 128 applies). While parsing, the event type is picked up.

use std::{borrow::Cow, fmt};

use http::{HeaderMap, header};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// Whether the request says its body is JSON: `application/json` or any `+json` type,
/// parameters (charset) allowed.
pub fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    match essence.split_once('/') {
        Some((kind, sub)) if kind.eq_ignore_ascii_case("application") => {
            sub.eq_ignore_ascii_case("json") || ends_with_ignore_ascii_case(sub, "+json")
        }
        _ => false,
    }
}

fn ends_with_ignore_ascii_case(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len() && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Checks that `body` is one JSON value and returns its event type: the value at
/// `pointer` when configured, else the first top-level `event_type`, `eventType` or
/// `type` that is a string.
pub fn inspect_json(body: &str, pointer: Option<&str>) -> Result<Option<String>, String> {
    let describe = |e: serde_json::Error| format!("the body is not valid JSON: {e}");
    match pointer {
        Some(pointer) => {
            let value: serde_json::Value = serde_json::from_str(body).map_err(describe)?;
            Ok(value.pointer(pointer).and_then(|v| match v {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }))
        }
        None => {
            let mut de = serde_json::Deserializer::from_str(body);
            let walked = Walked::deserialize(&mut de).map_err(describe)?;
            de.end().map_err(describe)?;
            Ok(walked.event_type.map(Cow::into_owned))
        }
    }
}

/// A JSON value walked without being built. Every nested value goes through
/// `deserialize_any`, so serde_json's nesting limit applies (its `IgnoredAny` skips without
/// it). Strings are kept (borrowed when unescaped) so that a parent object can pick its
/// event type.
struct Walked<'de> {
    text: Option<Cow<'de, str>>,
    event_type: Option<Cow<'de, str>>,
}

const EVENT_TYPE_KEYS: [&str; 3] = ["event_type", "eventType", "type"];

impl<'de> Deserialize<'de> for Walked<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(WalkVisitor)
    }
}

/// An object key, read without copying it: which of [`EVENT_TYPE_KEYS`] it is, if any.
struct EventTypeKey(Option<usize>);

impl<'de> Deserialize<'de> for EventTypeKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(EventTypeKeyVisitor)
    }
}

struct EventTypeKeyVisitor;

impl Visitor<'_> for EventTypeKeyVisitor {
    type Value = EventTypeKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(EventTypeKey(EVENT_TYPE_KEYS.iter().position(|k| *k == key)))
    }
}

struct WalkVisitor;

impl WalkVisitor {
    const fn scalar<'de>() -> Walked<'de> {
        Walked { text: None, event_type: None }
    }
}

impl<'de> Visitor<'de> for WalkVisitor {
    type Value = Walked<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // Candidates by priority: event_type, eventType, type.
        let mut found: [Option<Cow<'de, str>>; 3] = Default::default();
        while let Some(EventTypeKey(key)) = map.next_key()? {
            let value: Walked<'de> = map.next_value()?;
            if let Some(i) = key {
                found[i] = value.text.or(found[i].take());
            }
        }
        Ok(Walked { text: None, event_type: found.into_iter().flatten().next() })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Walked<'de>>()?.is_some() {}
        Ok(Self::scalar())
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Walked { text: Some(Cow::Borrowed(s)), event_type: None })
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Walked { text: Some(Cow::Owned(s.to_owned())), event_type: None })
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Self::scalar())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Self::scalar())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Self::scalar())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Self::scalar())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Self::scalar())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_by_priority() {
        assert_eq!(inspect_json(r#"{"type":"b","event_type":"a"}"#, None).unwrap(), Some("a".into()));
        assert_eq!(inspect_json(r#"{"eventType":"c","type":"d"}"#, None).unwrap(), Some("c".into()));
        assert_eq!(inspect_json(r#"{"type":{"x":1},"data":{"type":"deep"}}"#, None).unwrap(), None);
        assert_eq!(inspect_json(r#"{"type":"esc\u00e9"}"#, None).unwrap(), Some("escé".into()));
        assert_eq!(inspect_json(r#"{"typ\u0065":"escaped key"}"#, None).unwrap(), Some("escaped key".into()));
        assert_eq!(inspect_json(r#"[1,2,{"type":"x"}]"#, None).unwrap(), None);
        assert_eq!(inspect_json(r#""just a string""#, None).unwrap(), None);
        assert_eq!(inspect_json(r#"{"data":{"type":"deep"}}"#, Some("/data/type")).unwrap(), Some("deep".into()));
        assert_eq!(inspect_json(r#"{"data":{"kind":7}}"#, Some("/data/kind")).unwrap(), Some("7".into()));
    }

    #[test]
    fn malformed_json_is_refused() {
        for bad in ["", "{", r#"{"a":1}{"b":2}"#, r#"{"a":01}"#, "nul"] {
            assert!(inspect_json(bad, None).is_err(), "{bad:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(inspect_json(&deep, None).is_err(), "nesting over serde_json's limit");
        let deep_objects = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(inspect_json(&deep_objects, None).is_err(), "nesting over serde_json's limit");
        let fine = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(inspect_json(&fine, None).is_ok());
        assert!(inspect_json(" {\"a\":[1,2,3]} \n", None).is_ok());
    }

    #[test]
    fn json_content_types() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, v.parse().unwrap());
            m
        };
        assert!(is_json_content_type(&h("application/json")));
        assert!(is_json_content_type(&h("Application/JSON; charset=utf-8")));
        assert!(is_json_content_type(&h("application/cloudevents+json")));
        assert!(is_json_content_type(&h(" APPLICATION/Vnd.Api+JSON ;charset=utf-8")));
        assert!(!is_json_content_type(&h("application/jsonx")));
        assert!(!is_json_content_type(&h("text/json")));
        assert!(!is_json_content_type(&h("text/plain")));
        assert!(!is_json_content_type(&h("application/x-www-form-urlencoded")));
        assert!(!is_json_content_type(&HeaderMap::new()));
    }
}
