//! A configured source, ready to serve: its topic, verifier, and how its envelopes get
//! their `message_id`, event type and headers.

use std::{collections::BTreeMap, sync::Arc};

use hooklake_schemas::config::{AuthConfig, ConfigError, SourceConfig};
use http::{HeaderMap, HeaderName};

use crate::auth::Verifier;

#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub topic: Arc<str>,
    pub verifier: Verifier,
    /// Headers whose value becomes `message_id`, in order of preference.
    id_headers: Vec<HeaderName>,
    pub event_type_pointer: Option<String>,
    forward_headers: Vec<HeaderName>,
}

/// Longest delivery id taken from a header; longer ones get a UUIDv7 instead.
const MAX_ID_LEN: usize = 255;

impl Source {
    pub fn from_config(name: &str, config: &SourceConfig) -> Result<Self, ConfigError> {
        let key = |k: &str| format!("sources.{name}.{k}");
        let header = |k: &str, h: &str| {
            HeaderName::try_from(h.to_ascii_lowercase())
                .map_err(|_| ConfigError::invalid(key(k), format!("`{h}` is not a valid header name")))
        };
        let mut id_headers: Vec<HeaderName> =
            vec![HeaderName::from_static("webhook-id"), HeaderName::from_static("svix-id")];
        match (&config.id_header, &config.auth) {
            (Some(h), _) => id_headers.push(header("id_header", h)?),
            (None, AuthConfig::Github { .. }) => id_headers.push(HeaderName::from_static("x-github-delivery")),
            (None, _) => {}
        }
        let forward_headers =
            config.forwarded_headers().iter().map(|h| header("forward_headers", h)).collect::<Result<_, _>>()?;
        Ok(Self {
            name: name.into(),
            topic: config.topic_for(name).into(),
            verifier: Verifier::from_config(&key("auth"), &config.auth)?,
            id_headers,
            event_type_pointer: config.event_type_pointer.clone(),
            forward_headers,
        })
    }

    /// The sender's delivery id when it gives a usable one, else a new UUIDv7.
    pub fn message_id(&self, headers: &HeaderMap) -> String {
        self.id_headers
            .iter()
            .filter_map(|h| headers.get(h)?.to_str().ok())
            .map(str::trim)
            .find(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
    }

    /// The allow-listed request headers, lower-case names.
    pub fn forwarded(&self, headers: &HeaderMap) -> BTreeMap<String, String> {
        self.forward_headers
            .iter()
            .filter_map(|h| Some((h.as_str().to_owned(), headers.get(h)?.to_str().ok()?.to_owned())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::config::{Config, Env};
    use http::HeaderValue;

    use super::*;

    fn source(extra: &str, auth: &str) -> Source {
        let text = format!("[sources.s]\nauth = {auth}\n{extra}");
        let c = Config::from_toml(&text, &Env::new()).unwrap();
        Source::from_config("s", &c.sources["s"]).unwrap()
    }

    #[test]
    fn message_ids_prefer_the_senders_delivery_id() {
        let s = source("id_header = \"X-Request-Id\"", "{ type = \"none\" }");
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req-7"));
        assert_eq!(s.message_id(&h), "req-7");
        h.insert("svix-id", HeaderValue::from_static("msg_svix"));
        assert_eq!(s.message_id(&h), "msg_svix");
        h.insert("webhook-id", HeaderValue::from_static("msg_std"));
        assert_eq!(s.message_id(&h), "msg_std");
        let generated = s.message_id(&HeaderMap::new());
        assert_eq!(uuid::Uuid::parse_str(&generated).unwrap().get_version_num(), 7);
        let mut long = HeaderMap::new();
        long.insert("webhook-id", HeaderValue::from_str(&"x".repeat(300)).unwrap());
        assert_ne!(s.message_id(&long).len(), 300);
    }

    #[test]
    fn github_sources_use_the_delivery_header() {
        let s = source("", "{ type = \"github\", secrets = [\"x\"] }");
        let mut h = HeaderMap::new();
        h.insert("x-github-delivery", HeaderValue::from_static("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert_eq!(s.message_id(&h), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    }

    #[test]
    fn only_allow_listed_headers_are_forwarded() {
        let s = source("", "{ type = \"api_key\", keys = [\"k\"] }");
        let mut h = HeaderMap::new();
        h.insert("user-agent", HeaderValue::from_static("curl/8"));
        h.insert("x-api-key", HeaderValue::from_static("k"));
        h.insert("cookie", HeaderValue::from_static("c=1"));
        assert_eq!(s.forwarded(&h), BTreeMap::from([("user-agent".to_string(), "curl/8".to_string())]));
    }
}
