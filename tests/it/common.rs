//! What the ingest tests share: a configuration with one source per auth scheme, and
//! secrets made fresh for each test (so a leak into the logs can be traced to its test).

use base64::{Engine, engine::general_purpose::STANDARD};
use hooklake_tests::{
    config::{Auth, Source, TestConfig},
    unique,
};

pub const MAX_BODY: usize = 4096;

#[derive(Debug, Clone)]
pub struct Secrets {
    pub api_key: String,
    /// The Standard Webhooks secret being rotated out, and the new one.
    pub whsec_old: String,
    pub whsec_new: String,
    pub github: String,
    pub stripe: String,
    pub hmac: String,
}

impl Secrets {
    pub fn fresh() -> Self {
        let random = |label: &str| format!("{label}{}", uuid::Uuid::new_v4().simple());
        Self {
            api_key: random("key-"),
            whsec_old: format!("whsec_{}", STANDARD.encode(random("old-").as_bytes())),
            whsec_new: format!("whsec_{}", STANDARD.encode(random("new-").as_bytes())),
            github: random("gh-"),
            stripe: format!("whsec_{}", random("")),
            hmac: random("hm-"),
        }
    }

    /// Every secret as it could appear in a log: the configured text and decoded key bytes.
    pub fn all_forms(&self) -> Vec<String> {
        let decoded = |w: &str| String::from_utf8(STANDARD.decode(w.trim_start_matches("whsec_")).unwrap()).unwrap();
        vec![
            self.api_key.clone(),
            self.whsec_old.clone(),
            self.whsec_new.clone(),
            decoded(&self.whsec_old),
            decoded(&self.whsec_new),
            self.github.clone(),
            self.stripe.clone(),
            self.hmac.clone(),
        ]
    }
}

/// A test's topics all start with this prefix.
pub fn topic_prefix() -> String {
    unique("it")
}

/// A configuration with one source per auth scheme: `keys` (api_key), `std`
/// (standard_webhooks, two secrets), `gh` (github), `stripe`, `hmac`, `open` (none).
pub fn config(brokers: &str, prefix: &str, s: &Secrets) -> TestConfig {
    let second_key = format!("second-key-{prefix}");
    let hmac = Auth::hmac("x-signature", &[&s.hmac])
        .key("algorithm", "sha256")
        .key("encoding", "hex")
        .key("prefix", "sha256=");
    TestConfig::new(brokers)
        .topic_partitions(2)
        .max_body_bytes(MAX_BODY)
        .ingest("response_deadline", "4s")
        .ingest("retry_after", "3s")
        .source("keys", Source::new(&format!("{prefix}.keys"), Auth::api_key("x-api-key", &[&s.api_key, &second_key])))
        .source("std", Source::new(&format!("{prefix}.std"), std_auth(&[&s.whsec_old, &s.whsec_new])))
        .source("gh", Source::new(&format!("{prefix}.gh"), Auth::github(&[&s.github])))
        .source("stripe", Source::new(&format!("{prefix}.stripe"), Auth::stripe(&[&s.stripe])))
        .source("hmac", Source::new(&format!("{prefix}.hmac"), hmac))
        .source("open", Source::new(&format!("{prefix}.open"), Auth::none()))
}

/// The `std` source's auth with `secrets`.
pub fn std_auth(secrets: &[&str]) -> Auth {
    Auth::standard_webhooks(secrets).tolerance("5m")
}
