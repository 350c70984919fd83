//! What the ingest tests share: a configuration with one source per auth scheme, and
//! secrets made fresh for each test (so a leak into the logs can be traced to its test).

use base64::{Engine, engine::general_purpose::STANDARD};
use hooklake_tests::unique;

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
pub fn config(brokers: &str, prefix: &str, s: &Secrets, extra: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
topic_partitions = 2

[ingest]
max_body_bytes = {MAX_BODY}
response_deadline = "4s"
retry_after = "3s"

[sources.keys]
topic = "{prefix}.keys"
auth = {{ type = "api_key", header = "x-api-key", keys = ["{api_key}", "second-key-{prefix}"] }}

[sources.std]
topic = "{prefix}.std"
auth = {{ type = "standard_webhooks", secrets = ["{old}", "{new}"], tolerance = "5m" }}

[sources.gh]
topic = "{prefix}.gh"
auth = {{ type = "github", secrets = ["{github}"] }}

[sources.stripe]
topic = "{prefix}.stripe"
auth = {{ type = "stripe", secrets = ["{stripe}"] }}

[sources.hmac]
topic = "{prefix}.hmac"
auth = {{ type = "hmac", header = "x-signature", algorithm = "sha256", encoding = "hex", prefix = "sha256=", secrets = ["{hmac}"] }}

[sources.open]
topic = "{prefix}.open"
auth = {{ type = "none" }}
{extra}
"#,
        api_key = s.api_key,
        old = s.whsec_old,
        new = s.whsec_new,
        github = s.github,
        stripe = s.stripe,
        hmac = s.hmac,
    )
}
