//! A configured source, ready to serve: its topic, verifier, and how its envelopes get
//! their `message_id`, event type and headers.

use std::sync::Arc;

use hooklake_schemas::config::{AuthConfig, ConfigError, SourceConfig};
use http::{HeaderMap, HeaderName};

use crate::auth::Verifier;

#[derive(Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub topic: Arc<str>,
    pub verifier: Verifier,
    /// The configured `id_header` (`x-github-delivery` for GitHub by default).
    id_header: Option<HeaderName>,
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
        let id_header = match (&config.id_header, &config.auth) {
            (Some(h), _) => Some(header("id_header", h)?),
            (None, AuthConfig::Github { .. }) => Some(HeaderName::from_static("x-github-delivery")),
            (None, _) => None,
        };
        let mut forward_headers =
            config.forwarded_headers().iter().map(|h| header("forward_headers", h)).collect::<Result<Vec<_>, _>>()?;
        // In the order the envelope's headers take (`EnvelopeRef::headers`).
        forward_headers.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        forward_headers.dedup();
        Ok(Self {
            name: name.into(),
            topic: config.topic_for(name).into(),
            verifier: Verifier::from_config(&key("auth"), &config.auth)?,
            id_header,
            event_type_pointer: config.event_type_pointer.clone(),
            forward_headers,
        })
    }

    /// The sender's delivery id when it gives a usable one, else a new UUIDv7. An id the
    /// scheme signs (`webhook-id`, else `svix-id`: the one the verifier read) comes first,
    /// then the configured `id_header`. Unsigned `webhook-id`s are not used: anyone could
    /// set one to collide with another delivery's id, which the sink deduplicates on.
    pub fn message_id(&self, headers: &HeaderMap) -> String {
        let signed = self.verifier.signed_id_headers().iter().find_map(|h| headers.get(*h));
        let configured = self.id_header.as_ref().and_then(|h| headers.get(h));
        signed
            .into_iter()
            .chain(configured)
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .find(|id| !id.is_empty() && id.len() <= MAX_ID_LEN)
            .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
    }

    /// The allow-listed request headers the request has, lower-case names, sorted by name
    /// (as `EnvelopeRef::headers` takes them).
    pub fn forwarded<'a>(&'a self, headers: &'a HeaderMap) -> Vec<(&'a str, &'a str)> {
        self.forward_headers.iter().filter_map(|h| Some((h.as_str(), headers.get(h)?.to_str().ok()?))).collect()
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

    fn with(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_str(v).unwrap())).collect()
    }

    fn is_uuid_v7(id: &str) -> bool {
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.get_version_num() == 7)
    }

    #[test]
    fn unsigned_sources_take_only_their_id_header() {
        let s = source("id_header = \"X-Request-Id\"", "{ type = \"none\" }");
        assert_eq!(s.message_id(&with(&[("x-request-id", "req-7")])), "req-7");
        // Anyone can send webhook-id/svix-id to a source that does not verify them.
        let forged = with(&[("x-request-id", "req-7"), ("webhook-id", "msg_other"), ("svix-id", "msg_svix")]);
        assert_eq!(s.message_id(&forged), "req-7");
        assert!(is_uuid_v7(&s.message_id(&with(&[("webhook-id", "msg_other")]))));
        assert!(is_uuid_v7(&s.message_id(&HeaderMap::new())));
        let keys = source("", "{ type = \"api_key\", keys = [\"k\"] }");
        assert!(is_uuid_v7(&keys.message_id(&with(&[("svix-id", "msg_svix")]))));
        let stripe = source("", "{ type = \"stripe\", secrets = [\"whsec_x\"] }");
        assert!(is_uuid_v7(&stripe.message_id(&with(&[("webhook-id", "msg_std")]))));
    }

    #[test]
    fn standard_webhooks_sources_take_the_signed_id_first() {
        let s = source("id_header = \"X-Request-Id\"", "{ type = \"standard_webhooks\", secrets = [\"whsec_AAAA\"] }");
        assert_eq!(s.message_id(&with(&[("x-request-id", "req-7"), ("svix-id", "msg_svix")])), "msg_svix");
        let both = with(&[("x-request-id", "req-7"), ("svix-id", "msg_svix"), ("webhook-id", "msg_std")]);
        assert_eq!(s.message_id(&both), "msg_std", "the verifier reads webhook-id first");
        assert_eq!(s.message_id(&with(&[("x-request-id", "req-7")])), "req-7");
        let long = "x".repeat(300);
        assert_eq!(
            s.message_id(&with(&[("webhook-id", long.as_str()), ("svix-id", "msg_svix")])).len(),
            36,
            "not svix-id"
        );
        assert!(is_uuid_v7(&s.message_id(&with(&[("webhook-id", long.as_str())]))));
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
        assert_eq!(s.forwarded(&h), [("user-agent", "curl/8")]);
    }

    /// However they are listed, forwarded headers come sorted by name and once each.
    #[test]
    fn forwarded_headers_are_sorted_by_name_once_each() {
        let s = source("forward_headers = [\"x-b\", \"X-A\", \"x-b\"]", "{ type = \"none\" }");
        let h = with(&[("x-b", "2"), ("x-a", "1")]);
        assert_eq!(s.forwarded(&h), [("x-a", "1"), ("x-b", "2")]);
    }
}
