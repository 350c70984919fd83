//! hooklake configurations for tests, built with typed calls and written out by the toml
//! crate: every value is quoted as TOML wants it, whatever a secret or a path holds, and
//! a test changes one key by calling a method rather than editing configuration text.

use toml::{Table, Value};

use crate::lake::TestLake;

/// A hooklake configuration under construction; [`TestConfig::to_toml`] writes it.
///
/// Sections and keys appear only when set, so hooklake's defaults apply to the rest.
#[derive(Debug, Clone, Default)]
pub struct TestConfig {
    root: Table,
}

impl TestConfig {
    /// A configuration whose `kafka.brokers` is `brokers`.
    pub fn new(brokers: &str) -> Self {
        Self::default().kafka("brokers", brokers)
    }

    /// `kafka.<key> = value`.
    pub fn kafka(self, key: &str, value: impl Into<Value>) -> Self {
        self.set(&["kafka", key], value)
    }

    /// `kafka.topic_partitions`: partitions of the topics hooklake creates.
    pub fn topic_partitions(self, partitions: u32) -> Self {
        self.kafka("topic_partitions", partitions)
    }

    /// `kafka.create_topics`: whether hooklake creates missing topics.
    pub fn create_topics(self, create: bool) -> Self {
        self.kafka("create_topics", create)
    }

    /// `kafka.properties."<key>"`: a librdkafka property (the key keeps its dots).
    pub fn kafka_property(self, key: &str, value: &str) -> Self {
        self.set(&["kafka", "properties", key], value)
    }

    /// `ingest.<key> = value`.
    pub fn ingest(self, key: &str, value: impl Into<Value>) -> Self {
        self.set(&["ingest", key], value)
    }

    /// `ingest.max_body_bytes`.
    pub fn max_body_bytes(self, bytes: usize) -> Self {
        self.ingest("max_body_bytes", i64::try_from(bytes).expect("fits TOML's i64"))
    }

    /// `ingest.listen` and `ingest.admin_listen` on 127.0.0.1 (for the binary, which binds
    /// its own listeners).
    pub fn ingest_ports(self, port: u16, admin_port: u16) -> Self {
        self.ingest("listen", format!("127.0.0.1:{port}")).ingest("admin_listen", format!("127.0.0.1:{admin_port}"))
    }

    /// `sink.<key> = value`.
    pub fn sink(self, key: &str, value: impl Into<Value>) -> Self {
        self.set(&["sink", key], value)
    }

    /// `sink.lag_trigger` with only the thresholds given: `lag_trigger = {}` turns the
    /// trigger off, where leaving it out keeps hooklake's default thresholds.
    pub fn lag_trigger(self, messages: Option<u64>, age: Option<&str>) -> Self {
        let mut trigger = Table::new();
        if let Some(messages) = messages {
            trigger.insert("messages".into(), Value::Integer(i64::try_from(messages).expect("fits TOML's i64")));
        }
        if let Some(age) = age {
            trigger.insert("age".into(), age.into());
        }
        self.sink("lag_trigger", trigger)
    }

    /// The `[catalog]` of `lake` (an SQL catalog).
    pub fn catalog(self, lake: &TestLake) -> Self {
        let catalog = table([
            ("name", lake.name.as_str().into()),
            ("type", "sql".into()),
            ("uri", lake.uri.as_str().into()),
            ("warehouse", lake.warehouse.as_str().into()),
        ]);
        self.set(&["catalog"], catalog)
    }

    /// `[schema_registry]` at `url`, no credentials.
    pub fn schema_registry(self, url: &str) -> Self {
        self.set(&["schema_registry", "url"], url)
    }

    /// `[sources.<name>]`, replacing any source of that name.
    pub fn source(self, name: &str, source: Source) -> Self {
        self.set(&["sources", name], source.0)
    }

    /// Source `name`, already added, changed by `change`.
    pub fn with_source(mut self, name: &str, change: impl FnOnce(Source) -> Source) -> Self {
        let sources = self.root.get_mut("sources").and_then(Value::as_table_mut);
        let Some(Value::Table(old)) = sources.and_then(|s| s.remove(name)) else {
            panic!("no source {name:?} to change")
        };
        self.source(name, change(Source(old)))
    }

    /// The escape hatch: `value` at `path` (one segment per table level, so a segment may
    /// hold dots), creating the tables on the way.
    pub fn set(mut self, path: &[&str], value: impl Into<Value>) -> Self {
        let (last, tables) = path.split_last().expect("a key");
        let mut at = &mut self.root;
        for segment in tables {
            at = at
                .entry(*segment)
                .or_insert_with(|| Value::Table(Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{segment} is not a table in {path:?}"));
        }
        at.insert((*last).into(), value.into());
        self
    }

    /// Removes the key at `path` (see [`TestConfig::set`]), so hooklake's default applies.
    pub fn unset(mut self, path: &[&str]) -> Self {
        let (last, tables) = path.split_last().expect("a key");
        let mut at = Some(&mut self.root);
        for segment in tables {
            at = at.and_then(|t| t.get_mut(*segment)).and_then(Value::as_table_mut);
        }
        assert!(at.and_then(|t| t.remove(*last)).is_some(), "{path:?} was not set");
        self
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.root).expect("a table of TOML values serializes")
    }
}

/// One `[sources.<name>]` section.
#[derive(Debug, Clone)]
pub struct Source(Table);

impl Source {
    /// A source writing to `topic`, verified by `auth`.
    pub fn new(topic: &str, auth: Auth) -> Self {
        Self(table([("topic", topic.into()), ("auth", auth.0.into())]))
    }

    /// The source's `topic`.
    pub fn topic(self, topic: &str) -> Self {
        self.key("topic", topic)
    }

    /// The source's `auth`, replacing the one it had.
    pub fn auth(self, auth: Auth) -> Self {
        self.key("auth", auth.0)
    }

    /// `table = { layer, folder, name }`.
    pub fn table(self, layer: &str, folder: &str, name: &str) -> Self {
        self.key("table", table([("layer", layer.into()), ("folder", folder.into()), ("name", name.into())]))
    }

    /// The header whose value becomes `message_id`.
    pub fn id_header(self, header: &str) -> Self {
        self.key("id_header", header)
    }

    /// Any other key of the source.
    pub fn key(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }
}

/// A source's `auth` table: `type` and the scheme's keys, secrets as written.
#[derive(Debug, Clone)]
pub struct Auth(Table);

impl Auth {
    fn scheme(kind: &str) -> Self {
        Self(table([("type", kind.into())]))
    }

    pub fn none() -> Self {
        Self::scheme("none")
    }

    /// Keys sent in `header`.
    pub fn api_key(header: &str, keys: &[&str]) -> Self {
        Self::scheme("api_key").key("header", header).key("keys", strings(keys))
    }

    /// Standard Webhooks `whsec_` secrets (or `whpk_` public keys).
    pub fn standard_webhooks(secrets: &[&str]) -> Self {
        Self::scheme("standard_webhooks").key("secrets", strings(secrets))
    }

    pub fn github(secrets: &[&str]) -> Self {
        Self::scheme("github").key("secrets", strings(secrets))
    }

    pub fn stripe(secrets: &[&str]) -> Self {
        Self::scheme("stripe").key("secrets", strings(secrets))
    }

    /// A generic HMAC of the body in `header`; algorithm, encoding and prefix are set
    /// with [`Auth::key`] or left to hooklake's defaults.
    pub fn hmac(header: &str, secrets: &[&str]) -> Self {
        Self::scheme("hmac").key("header", header).key("secrets", strings(secrets))
    }

    /// `tolerance` of a timestamped scheme (e.g. `"5m"`).
    pub fn tolerance(self, tolerance: &str) -> Self {
        self.key("tolerance", tolerance)
    }

    /// Any other key of the scheme.
    pub fn key(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.into(), value.into());
        self
    }
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Table {
    entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn strings(values: &[&str]) -> Value {
    Value::Array(values.iter().map(|v| Value::from(*v)).collect())
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::config::{AuthConfig, Config, Env, IngestConfig};

    use super::*;

    #[test]
    fn the_toml_parses_as_the_configuration_it_was_built_as() {
        let lake = TestLake::sqlite();
        // Characters a hand-written string would have to escape.
        let key = "k\"e\\y\n'";
        let text = TestConfig::new("127.0.0.1:9092")
            .topic_partitions(3)
            .create_topics(false)
            .kafka_property("message.timeout.ms", "2000")
            .max_body_bytes(4096)
            .ingest("response_deadline", "4s")
            .ingest_ports(7001, 7002)
            .sink("group_id", "g")
            .lag_trigger(Some(5), None)
            .catalog(&lake)
            .schema_registry("http://127.0.0.1:8081")
            .source("keys", Source::new("t.keys", Auth::api_key("x-api-key", &[key, "second"])))
            .source("std", Source::new("t.std", Auth::standard_webhooks(&["whsec_AAAA"]).tolerance("5m")))
            .source("open", Source::new("t.open", Auth::none()).table("raw", "f", "open_events"))
            .with_source("open", |s| s.id_header("x-request-id"))
            .ingest("retry_after", "3s")
            .unset(&["ingest", "retry_after"])
            .to_toml();
        let config = Config::from_toml(&text, &Env::new()).unwrap_or_else(|e| panic!("{e}\n{text}"));

        assert_eq!(config.kafka.brokers, "127.0.0.1:9092");
        assert_eq!((config.kafka.topic_partitions, config.kafka.create_topics), (3, false));
        assert_eq!(config.kafka.properties["message.timeout.ms"], "2000");
        assert_eq!(config.ingest.max_body_bytes.0, 4096);
        assert_eq!(config.ingest.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(config.ingest.retry_after, IngestConfig::default().retry_after, "unset leaves the default");
        assert_eq!((config.sink.lag_trigger.messages, config.sink.lag_trigger.age), (Some(5), None));
        assert_eq!((config.catalog.uri.as_str(), config.catalog.warehouse.as_str()), (&*lake.uri, &*lake.warehouse));
        assert_eq!(config.schema_registry.expect("registry").url, "http://127.0.0.1:8081");
        let AuthConfig::ApiKey { keys, .. } = &config.sources["keys"].auth else { panic!("api_key") };
        assert_eq!(keys.iter().map(|k| k.expose()).collect::<Vec<_>>(), [key, "second"]);
        let open = &config.sources["open"];
        assert_eq!((open.topic.as_deref(), open.id_header.as_deref()), (Some("t.open"), Some("x-request-id")));
        assert_eq!(open.table_for("open").to_string(), "raw.f.open_events");
        assert_eq!(config.sources["std"].auth.scheme(), "standard_webhooks");
    }

    #[test]
    fn an_empty_lag_trigger_turns_the_trigger_off() {
        let text = TestConfig::new("b:1").lag_trigger(None, None).source("s", Source::new("t", Auth::none())).to_toml();
        let config = Config::from_toml(&text, &Env::new()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!((config.sink.lag_trigger.messages, config.sink.lag_trigger.age), (None, None));
    }
}
