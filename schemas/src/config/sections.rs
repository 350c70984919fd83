//! The typed sections of the configuration and their validation.

use std::{collections::BTreeMap, fmt, net::SocketAddr};

use serde::Deserialize;

use super::{ByteSize, ConfigError, HumanDuration, Secret};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Kafka cluster both services talk to.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Confluent-compatible Schema Registry. Without it, records use Avro single-object encoding.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// The Iceberg catalog the sink writes to.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// The HTTP ingest service.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The Kafka → Iceberg sink service.
    #[serde(default)]
    pub sink: SinkConfig,
    /// One entry per webhook sender: `[sources.<name>]`, posted to `/webhook/<name>`.
    pub sources: BTreeMap<String, SourceConfig>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Passed through to librdkafka (SASL, TLS, linger.ms, ...). Values may be secrets:
    /// they are never printed.
    pub properties: BTreeMap<String, String>,
    /// Create missing source topics (and `<topic>.dlq`) at start-up.
    pub create_topics: bool,
    /// Partitions of topics hooklake creates.
    pub topic_partitions: i32,
    /// Replication factor of topics hooklake creates.
    pub topic_replication_factor: i32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "localhost:9092".into(),
            properties: BTreeMap::new(),
            create_topics: true,
            topic_partitions: 3,
            topic_replication_factor: 1,
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .field("create_topics", &self.create_topics)
            .field("topic_partitions", &self.topic_partitions)
            .field("topic_replication_factor", &self.topic_replication_factor)
            .finish()
    }
}

/// librdkafka's property for how often it reports statistics.
const STATISTICS_INTERVAL: &str = "statistics.interval.ms";

/// The largest `ingest.max_in_flight_bytes`: far above any machine's memory.
const MAX_IN_FLIGHT_BYTES: u64 = 1 << 40;

impl KafkaConfig {
    /// `message` with every quoted value of a pass-through property replaced by `***`.
    /// librdkafka quotes the value it refuses (`Invalid value "..." for configuration
    /// property "..."`), and property values may be secrets.
    pub fn redact(&self, message: &str) -> String {
        self.properties
            .values()
            .filter(|v| !v.is_empty())
            .fold(message.to_owned(), |m, v| m.replace(&format!("\"{v}\""), "\"***\""))
    }

    /// A client configuration or creation error without the values of the properties
    /// (see [`Self::redact`]): rdkafka's `ClientConfig` error carries the refused value
    /// itself, which is replaced by `***`. Other errors quote no configuration.
    pub fn redact_error(&self, e: rdkafka::error::KafkaError) -> rdkafka::error::KafkaError {
        use rdkafka::error::KafkaError;
        match e {
            KafkaError::ClientConfig(res, description, key, _value) => {
                KafkaError::ClientConfig(res, self.redact(&description), key, "***".into())
            }
            KafkaError::ClientCreation(m) => KafkaError::ClientCreation(self.redact(&m)),
            other => other,
        }
    }

    /// `bootstrap.servers` followed by the pass-through properties, for an rdkafka
    /// `ClientConfig`. `statistics.interval.ms` is left out: statistics are for ingest's
    /// producer gauges (see [`Self::statistics_interval_ms`]), and any other client would
    /// only log the reports.
    pub fn client_properties(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once(("bootstrap.servers", self.brokers.as_str())).chain(
            self.properties.iter().filter(|(k, _)| *k != STATISTICS_INTERVAL).map(|(k, v)| (k.as_str(), v.as_str())),
        )
    }

    /// `statistics.interval.ms` when `[kafka.properties]` sets it.
    pub fn statistics_interval_ms(&self) -> Option<&str> {
        self.properties.get(STATISTICS_INTERVAL).map(String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL, e.g. `http://schema-registry:8081`.
    pub url: String,
    /// Basic-auth user name, if the registry needs one.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Timeout of one registry request.
    #[serde(default = "default_registry_timeout")]
    pub timeout: HumanDuration,
}

fn default_registry_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogType {
    /// Iceberg SQL catalog (SQLite or PostgreSQL, by `uri`).
    Sql,
    /// Iceberg REST catalog (Polaris, Lakekeeper, Nessie, Glue, ...).
    Rest,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// The catalog name other engines use to find the tables.
    pub name: String,
    /// `sql` or `rest`.
    #[serde(rename = "type")]
    pub kind: CatalogType,
    /// `sqlite://path/catalog.db`, `postgres://user@host/db`, or the REST endpoint.
    pub uri: String,
    /// Where data files go: `file://lake/warehouse` or `s3://bucket/prefix`.
    pub warehouse: String,
    /// Extra catalog and storage properties (`s3.endpoint`, `s3.access-key-id`, REST
    /// `credential`, ...). Values may be secrets: they are never printed.
    pub properties: BTreeMap<String, String>,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            name: "hooklake".into(),
            kind: CatalogType::Sql,
            uri: "sqlite://lake/catalog.db".into(),
            warehouse: "file://lake/warehouse".into(),
            properties: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for CatalogConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CatalogConfig")
            .field("name", &self.name)
            .field("type", &self.kind)
            .field("uri", &redact_url_password(&self.uri))
            .field("warehouse", &self.warehouse)
            .field("properties", &self.properties.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `postgres://user:pw@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Address of the webhook listener.
    pub listen: SocketAddr,
    /// Address of `/livez`, `/readyz`, `/metrics`.
    pub admin_listen: SocketAddr,
    /// Largest accepted body, before and after decompression.
    pub max_body_bytes: ByteSize,
    /// Every request is answered within this time (senders time out at ~15 s).
    pub response_deadline: HumanDuration,
    /// The `Retry-After` sent with 503 answers.
    pub retry_after: HumanDuration,
    /// Most records waiting in the producer for the broker's acknowledgement; beyond it
    /// requests get 503 at once.
    pub producer_queue_messages: u32,
    /// Threads of `hooklake ingest`'s Tokio runtime; unset: one per CPU. On a machine whose
    /// cores ingest shares with a broker or other services, fewer threads hand fewer
    /// requests between threads (BENCHMARKS.md measures 1 against 2 on 2 cores).
    pub worker_threads: Option<u16>,
    /// A connection must send a complete request head within this time, and a kept-alive
    /// connection is closed when no next request starts within it (hyper runs one timer
    /// for both). Stalled and idle connections free their slot this way.
    pub header_read_timeout: HumanDuration,
    /// Most open webhook connections; at the cap ingest stops accepting until one closes
    /// (new ones wait in the kernel's backlog).
    pub max_connections: u32,
    /// While all `max_connections` are open and another connection waits, a connection
    /// that starts no request within this time is closed to make room (one stalled in its
    /// head, or kept alive and idle), and a request whose body has not fully arrived this
    /// long after its head gets 408 `body_timeout`. At least 100ms, at most
    /// `header_read_timeout`, which it replaces at the cap.
    pub at_cap_timeout: HumanDuration,
    /// Most requests handled at once; beyond it requests get 503 `overloaded` at once.
    /// Unset: `max_connections` (an HTTP/1.1 connection carries one request at a time, so
    /// then only `max_in_flight_bytes` turns requests away). Read it with
    /// [`IngestConfig::max_in_flight`].
    pub max_in_flight: Option<u32>,
    /// Most body bytes held by the requests in flight: each holds room for its body's bytes
    /// as they arrive, and `max_body_bytes` more for a compressed body's inflated form while
    /// it is inflated; a Content-Length larger than the room left, or bytes that find none,
    /// get 503 `overloaded`. It bounds the memory bodies can take (docs/design.md, "Limits")
    /// while many small webhooks are in flight at once.
    pub max_in_flight_bytes: ByteSize,
    /// Whether records carry the `hooklake-source`, `hooklake-message-id` and
    /// `content-type` headers. The envelope holds the same facts (its framing shows in its
    /// first bytes), so they are off by default: a broker that stores each header as a row
    /// of its own, as tansu does, takes about 2.7 times as long per record with them
    /// (BENCHMARKS.md, "What the durable broker charges per record").
    pub record_headers: bool,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: ([0, 0, 0, 0], 8080).into(),
            admin_listen: ([0, 0, 0, 0], 9090).into(),
            max_body_bytes: ByteSize(1 << 20),
            response_deadline: HumanDuration::from_secs(10),
            retry_after: HumanDuration::from_secs(5),
            producer_queue_messages: 100_000,
            worker_threads: None,
            header_read_timeout: HumanDuration::from_secs(10),
            max_connections: 1024,
            at_cap_timeout: HumanDuration::from_secs(2),
            max_in_flight: None,
            max_in_flight_bytes: ByteSize(256 << 20),
            record_headers: false,
        }
    }
}

impl IngestConfig {
    /// `max_in_flight`, or `max_connections` when it is unset.
    pub fn max_in_flight(&self) -> u32 {
        self.max_in_flight.unwrap_or(self.max_connections)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// Kafka consumer group (its offsets only mirror the ones stored in the tables).
    pub group_id: String,
    /// Address of `/livez`, `/readyz`, `/metrics`, `POST /runs`, `GET /runs/{id}`.
    pub admin_listen: SocketAddr,
    /// `every 15m`, `hourly`, `daily`, a cron expression, or `off`.
    pub schedule: String,
    /// Start a run when the queue is this long or this old.
    pub lag_trigger: LagTrigger,
    /// Data files roll over at this size.
    pub target_file_size: ByteSize,
    /// A `message_id` already in the table within this window is dropped as a duplicate.
    pub dedupe_window: HumanDuration,
    /// How often the lag gauges are refreshed, also between runs.
    pub lag_refresh: HumanDuration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            group_id: "hooklake-sink".into(),
            admin_listen: ([0, 0, 0, 0], 9091).into(),
            schedule: "every 15m".into(),
            lag_trigger: LagTrigger::default(),
            target_file_size: ByteSize(128 << 20),
            dedupe_window: HumanDuration::from_secs(24 * 3600),
            lag_refresh: HumanDuration::from_secs(15),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LagTrigger {
    /// Unloaded records summed over all source topics; unset disables.
    #[serde(default)]
    pub messages: Option<u64>,
    /// Age of the oldest unloaded record; unset disables.
    #[serde(default)]
    pub age: Option<HumanDuration>,
}

impl Default for LagTrigger {
    fn default() -> Self {
        Self { messages: Some(100_000), age: Some(HumanDuration::from_secs(600)) }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Kafka topic; default `hooklake.<source>`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Destination table; default `{ layer = "raw", folder = "webhooks", name = "<source>" }`.
    #[serde(default)]
    pub table: Option<TableRef>,
    /// How requests are authenticated.
    pub auth: AuthConfig,
    /// A header whose value becomes `message_id` (after the signed `webhook-id`/`svix-id`
    /// of `standard_webhooks` sources; other schemes use only this header).
    #[serde(default)]
    pub id_header: Option<String>,
    /// JSON pointer (`/data/type`) to the event type; default: top-level `event_type`,
    /// `eventType` or `type`.
    #[serde(default)]
    pub event_type_pointer: Option<String>,
    /// Request headers copied into the envelope (lower case). Authentication headers
    /// are never copied.
    #[serde(default)]
    pub forward_headers: Option<Vec<String>>,
}

/// Where a source's rows land: namespace `[layer, folder]` (or `[layer]`), table `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableRef {
    pub layer: String,
    #[serde(default)]
    pub folder: Option<String>,
    pub name: String,
}

impl TableRef {
    /// The namespace levels: `[layer]` or `[layer, folder]`.
    pub fn namespace(&self) -> Vec<String> {
        std::iter::once(self.layer.clone()).chain(self.folder.clone()).collect()
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.folder {
            Some(folder) => write!(f, "{}.{}.{}", self.layer, folder, self.name),
            None => write!(f, "{}.{}", self.layer, self.name),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// A shared key in a header; several keys for rotation.
    ApiKey {
        #[serde(default = "default_api_key_header")]
        header: String,
        keys: Vec<Secret>,
    },
    /// Standard Webhooks / Svix: `whsec_` HMAC secrets and `whpk_` ed25519 public keys.
    StandardWebhooks {
        secrets: Vec<Secret>,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// GitHub: `X-Hub-Signature-256`.
    Github { secrets: Vec<Secret> },
    /// Stripe: `Stripe-Signature: t=...,v1=...`.
    Stripe {
        secrets: Vec<Secret>,
        #[serde(default = "default_tolerance")]
        tolerance: HumanDuration,
    },
    /// A generic HMAC of the body in one header.
    Hmac {
        header: String,
        #[serde(default)]
        algorithm: HmacAlgorithm,
        #[serde(default)]
        encoding: SignatureEncoding,
        /// Text before the signature, e.g. `sha256=`.
        #[serde(default)]
        prefix: Option<String>,
        secrets: Vec<Secret>,
    },
    /// No authentication. Must be written explicitly. A struct variant, so that keys
    /// written next to it are refused like everywhere else (serde lets a unit variant of
    /// an internally tagged enum ignore them).
    None {},
}

impl AuthConfig {
    /// The scheme's name, as stored in `verified_by`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Self::ApiKey { .. } => "api_key",
            Self::StandardWebhooks { .. } => "standard_webhooks",
            Self::Github { .. } => "github",
            Self::Stripe { .. } => "stripe",
            Self::Hmac { .. } => "hmac",
            Self::None {} => "none",
        }
    }

    /// Headers that carry credentials: never forwarded into the envelope.
    pub fn credential_headers(&self) -> Vec<String> {
        match self {
            Self::ApiKey { header, .. } | Self::Hmac { header, .. } => vec![header.to_ascii_lowercase()],
            Self::StandardWebhooks { .. } => ["webhook-signature", "svix-signature"].map(String::from).to_vec(),
            Self::Github { .. } => vec!["x-hub-signature-256".into(), "x-hub-signature".into()],
            Self::Stripe { .. } => vec!["stripe-signature".into()],
            Self::None {} => vec![],
        }
    }
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

fn default_tolerance() -> HumanDuration {
    HumanDuration::from_secs(300)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// Headers forwarded when a source does not list its own.
pub const DEFAULT_FORWARD_HEADERS: &[&str] = &["content-type", "user-agent", "x-github-event", "x-github-delivery"];

impl SourceConfig {
    /// The Kafka topic of source `name`.
    pub fn topic_for(&self, name: &str) -> String {
        self.topic.clone().unwrap_or_else(|| format!("hooklake.{name}"))
    }

    /// The table of source `name`.
    pub fn table_for(&self, name: &str) -> TableRef {
        self.table.clone().unwrap_or_else(|| TableRef {
            layer: "raw".into(),
            folder: Some("webhooks".into()),
            name: name.replace('-', "_"),
        })
    }

    /// Lower-case names of the headers to copy into the envelope.
    pub fn forwarded_headers(&self) -> Vec<String> {
        match &self.forward_headers {
            Some(list) => list.iter().map(|h| h.to_ascii_lowercase()).collect(),
            None => DEFAULT_FORWARD_HEADERS.iter().map(|h| h.to_string()).collect(),
        }
    }
}

impl Config {
    /// Checks what types alone cannot: names, ranges and cross-field rules.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.sources.is_empty() {
            return Err(ConfigError::invalid("sources", "at least one [sources.<name>] is needed"));
        }
        self.validate_ingest()?;
        let mut topics = BTreeMap::new();
        for (name, source) in &self.sources {
            validate_source(name, source)?;
            if let Some(other) = topics.insert(source.topic_for(name), name) {
                return Err(ConfigError::invalid(
                    format!("sources.{name}.topic"),
                    format!("topic is already used by source `{other}`"),
                ));
            }
        }
        if self.kafka.brokers.trim().is_empty() {
            return Err(ConfigError::invalid("kafka.brokers", "must not be empty"));
        }
        if self.sink.group_id.trim().is_empty() {
            return Err(ConfigError::invalid("sink.group_id", "must not be empty"));
        }
        Ok(())
    }

    fn validate_ingest(&self) -> Result<(), ConfigError> {
        let i = &self.ingest;
        if i.max_body_bytes.get() == 0 || i.max_body_bytes.get() > 64 << 20 {
            return Err(ConfigError::invalid("ingest.max_body_bytes", "must be between 1 byte and 64 MiB"));
        }
        if i.response_deadline.get() < std::time::Duration::from_secs(2) {
            return Err(ConfigError::invalid("ingest.response_deadline", "must be at least 2s"));
        }
        if i.retry_after.get() < std::time::Duration::from_secs(1) {
            return Err(ConfigError::invalid("ingest.retry_after", "must be at least 1s"));
        }
        if i.producer_queue_messages == 0 {
            return Err(ConfigError::invalid("ingest.producer_queue_messages", "must be at least 1"));
        }
        if i.worker_threads == Some(0) {
            return Err(ConfigError::invalid(
                "ingest.worker_threads",
                "must be at least 1 (leave it out for one per CPU)",
            ));
        }
        if i.header_read_timeout.get() < std::time::Duration::from_secs(1) {
            return Err(ConfigError::invalid("ingest.header_read_timeout", "must be at least 1s"));
        }
        if i.max_connections == 0 {
            return Err(ConfigError::invalid("ingest.max_connections", "must be at least 1"));
        }
        if i.at_cap_timeout.get() < std::time::Duration::from_millis(100) || i.at_cap_timeout > i.header_read_timeout {
            return Err(ConfigError::invalid(
                "ingest.at_cap_timeout",
                "must be at least 100ms and at most ingest.header_read_timeout",
            ));
        }
        if i.max_in_flight == Some(0) || i.max_in_flight() > i.max_connections {
            return Err(ConfigError::invalid(
                "ingest.max_in_flight",
                "must be at least 1 and at most ingest.max_connections",
            ));
        }
        let budget = i.max_in_flight_bytes.get();
        if budget < i.max_body_bytes.get() || budget > MAX_IN_FLIGHT_BYTES {
            return Err(ConfigError::invalid(
                "ingest.max_in_flight_bytes",
                "must be at least ingest.max_body_bytes and at most 1 TiB",
            ));
        }
        Ok(())
    }
}

fn validate_source(name: &str, source: &SourceConfig) -> Result<(), ConfigError> {
    let key = |k: &str| format!("sources.{name}.{k}");
    if !is_name(name, 64, |c| c == '_' || c == '-') {
        return Err(ConfigError::invalid(
            format!("sources.{name}"),
            "a source name is 1-64 letters, digits, `_` or `-`",
        ));
    }
    let topic = source.topic_for(name);
    if !is_name(&topic, 240, |c| matches!(c, '_' | '-' | '.')) {
        return Err(ConfigError::invalid(key("topic"), "a Kafka topic is 1-240 letters, digits, `.`, `_` or `-`"));
    }
    let table = source.table_for(name);
    let idents = [
        ("table.layer", Some(&table.layer)),
        ("table.folder", table.folder.as_ref()),
        ("table.name", Some(&table.name)),
    ];
    for (k, ident) in idents {
        if let Some(ident) = ident
            && !is_name(ident, 128, |c| c == '_')
        {
            return Err(ConfigError::invalid(key(k), "an identifier is 1-128 letters, digits or `_`"));
        }
    }
    let credential_headers = source.auth.credential_headers();
    for h in source.forwarded_headers() {
        if credential_headers.contains(&h) {
            return Err(ConfigError::invalid(
                key("forward_headers"),
                format!("`{h}` carries credentials and is never forwarded"),
            ));
        }
    }
    if let Some(p) = &source.event_type_pointer
        && !p.starts_with('/')
    {
        return Err(ConfigError::invalid(
            key("event_type_pointer"),
            "a JSON pointer starts with `/`, e.g. `/data/type`",
        ));
    }
    validate_auth(&key("auth"), &source.auth)
}

fn validate_auth(key: &str, auth: &AuthConfig) -> Result<(), ConfigError> {
    let (list, list_key) = match auth {
        AuthConfig::ApiKey { keys, .. } => (keys, "keys"),
        AuthConfig::StandardWebhooks { secrets, .. }
        | AuthConfig::Github { secrets }
        | AuthConfig::Stripe { secrets, .. }
        | AuthConfig::Hmac { secrets, .. } => (secrets, "secrets"),
        AuthConfig::None {} => return Ok(()),
    };
    if list.is_empty() {
        return Err(ConfigError::invalid(format!("{key}.{list_key}"), "at least one is needed"));
    }
    match auth {
        AuthConfig::ApiKey { header, .. } | AuthConfig::Hmac { header, .. }
            if !is_name(header, 128, |c| c == '-' || c == '_') =>
        {
            Err(ConfigError::invalid(format!("{key}.header"), "not a valid HTTP header name"))
        }
        _ => Ok(()),
    }
}

fn is_name(s: &str, max: usize, extra: impl Fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_alphanumeric() || extra(c))
}
