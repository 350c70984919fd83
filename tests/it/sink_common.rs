//! What the sink tests share: a pipeline of a real broker, `hooklake ingest` (in process),
//! a real Iceberg catalog, and a configuration with two sources landing in two tables.

use std::{path::PathBuf, time::Duration};

use hooklake_tests::{
    broker::TestBroker,
    config::{Auth, Source, TestConfig},
    free_port,
    ingest::TestIngest,
    lake::TestLake,
    sink, unique,
};

/// `keys` (api_key, ids from `x-request-id`) lands in `raw.<folder>.keys`; `std`
/// (Standard Webhooks) in `bronze.<folder>.std_events`.
#[derive(Debug)]
pub struct Pipeline {
    pub broker: TestBroker,
    pub lake: TestLake,
    pub ingest: TestIngest,
    pub prefix: String,
    pub api_key: String,
    pub whsec: String,
    /// What `config` holds, for a test that writes a variant of it.
    pub test_config: TestConfig,
    pub config: PathBuf,
    pub admin_port: u16,
}

impl Pipeline {
    pub async fn start(lake: TestLake) -> Self {
        Self::start_with(lake, "off", None).await
    }

    /// With the sink's `schedule` set, and its lag trigger firing at `lag_messages` (off
    /// when `None`).
    pub async fn start_with(lake: TestLake, schedule: &str, lag_messages: Option<u64>) -> Self {
        Self::start_on(TestBroker::get(), lake, schedule, lag_messages).await
    }

    /// On `broker` (a test that deletes topics or stops the broker needs its own).
    pub async fn start_on(broker: TestBroker, lake: TestLake, schedule: &str, lag_messages: Option<u64>) -> Self {
        Self::start_partitioned(broker, lake, schedule, lag_messages, 2).await
    }

    /// [`Self::start_on`] with topics of `partitions` partitions.
    pub async fn start_partitioned(
        broker: TestBroker,
        lake: TestLake,
        schedule: &str,
        lag_messages: Option<u64>,
        partitions: u32,
    ) -> Self {
        let prefix = unique("sk");
        let api_key = format!("key-{}", uuid::Uuid::new_v4().simple());
        let whsec = format!(
            "whsec_{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, uuid::Uuid::new_v4().as_bytes())
        );
        let admin_port = free_port();
        let test_config = TestConfig::new(&broker.bootstrap())
            .topic_partitions(partitions)
            .catalog(&lake)
            .ingest("response_deadline", "4s")
            .sink("group_id", format!("{prefix}-sink"))
            .sink("admin_listen", format!("127.0.0.1:{admin_port}"))
            .sink("schedule", schedule)
            .lag_trigger(lag_messages, None)
            .sink("lag_refresh", "1s")
            .source(
                "keys",
                Source::new(&format!("{prefix}.keys"), Auth::api_key("x-api-key", &[&api_key]))
                    .table("raw", &prefix, "keys")
                    .id_header("x-request-id"),
            )
            .source(
                "std",
                Source::new(&format!("{prefix}.std"), Auth::standard_webhooks(&[&whsec])).table(
                    "bronze",
                    &prefix,
                    "std_events",
                ),
            );
        let toml = test_config.to_toml();
        let ingest = TestIngest::start(&toml).await;
        let config = sink::write_config(&lake.path(), &toml);
        Self { broker, lake, ingest, prefix, api_key, whsec, test_config, config, admin_port }
    }

    pub fn keys_table(&self) -> String {
        format!("raw.{}.keys", self.prefix)
    }

    pub fn std_table(&self) -> String {
        format!("bronze.{}.std_events", self.prefix)
    }

    pub fn keys_topic(&self) -> String {
        format!("{}.keys", self.prefix)
    }

    /// POSTs `body` to the `keys` source with `x-request-id: id`; asserts 200.
    pub async fn post_key(&self, id: &str, body: &str) {
        let r = hooklake_tests::http::client()
            .post(self.ingest.url("keys"))
            .header("content-type", "application/json")
            .header("x-api-key", &self.api_key)
            .header("x-request-id", id)
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        let status = r.status().as_u16();
        assert_eq!(status, 200, "POST {id}: {}", r.text().await.unwrap_or_default());
    }

    /// `count` webhooks on `keys` with ids `<tag>-<i>`; returns the ids.
    pub async fn post_keys(&self, tag: &str, count: usize) -> Vec<String> {
        let mut ids = Vec::with_capacity(count);
        for i in 0..count {
            let id = format!("{tag}-{i:05}");
            self.post_key(&id, &format!("{{\"event_type\":\"order.created\",\"order_id\":\"{id}\",\"n\":{i}}}")).await;
            ids.push(id);
        }
        ids
    }

    /// One `hooklake sink --once`, asserted successful; its stdout.
    pub async fn once(&self) -> String {
        let out = sink::once(&self.config, &[], Duration::from_secs(300)).await;
        assert!(out.success, "hooklake sink --once failed:\nstdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
        out.stdout
    }
}

/// `ids` sorted, as `TableContents::message_ids` returns them.
pub fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// The number before `label` in the `--once` summary line ("3 duplicates dropped").
pub fn reported(stdout: &str, label: &str) -> u64 {
    let line = stdout.lines().find(|l| l.starts_with("run ")).expect("summary line");
    let at = line.find(label).unwrap_or_else(|| panic!("no {label:?} in {line:?}"));
    line[..at].split_whitespace().last().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line:?}"))
}
