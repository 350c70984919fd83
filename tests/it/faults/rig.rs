//! What the fault scenarios and the soak share: sink_common's pipeline with 3-partition
//! topics and the sink scheduled every second, `hooklake ingest` as a real process, sink
//! services logging to files, traffic against ingest, and the closing audit.

use std::time::{Duration, Instant};

use hooklake_tests::{
    audit::{Audit, audit, settle},
    broker::{Broker, TestBroker},
    free_port,
    ingest_process::IngestProcess,
    lake::TestLake,
    metrics,
    sink::{self, SinkService},
    tools,
    traffic::{Load, Target, Traffic, TrafficReport},
};

use crate::sink_common::Pipeline;

/// Partitions of the source topic: more than one, so offsets can go wrong per partition.
pub const PARTITIONS: u32 = 3;
pub const SCHEDULE: &str = "every 1s";
/// How long the sink gets to load the rest once traffic stopped and faults ended.
pub const SETTLE: Duration = Duration::from_secs(180);
/// `ingest.max_connections` of the rig's ingest: low enough for [`Rig::flood`] to fill.
pub const MAX_CONNECTIONS: usize = 64;

#[derive(Debug)]
pub struct Rig {
    pub p: Pipeline,
    pub ingest: IngestProcess,
    sinks: std::sync::atomic::AtomicUsize,
    /// A PostgreSQL catalog's relay (tests/py/delay_proxy.py): its port, and the relay
    /// while it runs.
    catalog_relay: Option<(u16, Option<tokio::process::Child>)>,
}

impl Rig {
    /// The pipeline on the suite's broker, or with `own_broker` on one the test may kill,
    /// with a SQLite catalog.
    pub async fn start(own_broker: bool) -> Self {
        Self::start_with(own_broker, TestLake::sqlite(), None).await
    }

    /// [`Rig::start`] with a PostgreSQL catalog, as in production, which the sinks reach
    /// through a relay the test can stop ([`Rig::cut_catalog`]) or have break a commit
    /// at its `COMMIT` ([`Rig::lose_next_commit_answer`], [`Rig::break_next_commit`]).
    pub async fn start_on_postgres(own_broker: bool) -> Self {
        let port = free_port();
        let relay = tools::delay_proxy(port, 5432, Duration::ZERO, None).await;
        Self::start_with(own_broker, TestLake::postgres().through(port), Some((port, Some(relay)))).await
    }

    async fn start_with(
        own_broker: bool,
        lake: TestLake,
        catalog_relay: Option<(u16, Option<tokio::process::Child>)>,
    ) -> Self {
        let broker = if own_broker { TestBroker::Own(Broker::start()) } else { TestBroker::get() };
        let p = Pipeline::start_partitioned(broker, lake, SCHEDULE, None, PARTITIONS).await;
        let at_cap =
            p.test_config.clone().ingest("max_connections", MAX_CONNECTIONS as i64).ingest("at_cap_timeout", "1s");
        let ingest_config = sink::write_config(&p.lake.path(), &at_cap.to_toml());
        let ingest = IngestProcess::start(&ingest_config, &p.lake.path().join("ingest.log")).await;
        Self { p, ingest, sinks: Default::default(), catalog_relay }
    }

    /// Stops the catalog's relay: connections through it break, new ones are refused.
    pub async fn cut_catalog(&mut self) {
        let (_, relay) = self.catalog_relay.as_mut().expect("a rig on PostgreSQL");
        if let Some(mut relay) = relay.take() {
            relay.kill().await.expect("the catalog relay stops");
        }
    }

    /// Starts the catalog's relay again.
    pub async fn restore_catalog(&mut self) {
        let (port, relay) = self.catalog_relay.as_mut().expect("a rig on PostgreSQL");
        if relay.is_none() {
            *relay = Some(tools::delay_proxy(*port, 5432, Duration::ZERO, None).await);
        }
    }

    /// The next table commit's `COMMIT` reaches PostgreSQL, which commits, but its answer
    /// is lost and its connection cut.
    pub fn lose_next_commit_answer(&self) {
        tools::signal_proxy(self.running_relay(), "-USR2");
    }

    /// The next table commit's connection is cut before its `COMMIT` reaches PostgreSQL,
    /// which rolls it back.
    pub fn break_next_commit(&self) {
        tools::signal_proxy(self.running_relay(), "-HUP");
    }

    fn running_relay(&self) -> &tokio::process::Child {
        self.catalog_relay.as_ref().and_then(|(_, r)| r.as_ref()).expect("the catalog relay running")
    }

    /// Lines of every sink's log that contain each of `parts`.
    pub fn sink_log_lines(&self, parts: &[&str]) -> usize {
        self.sink_logs().iter().map(|log| log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).count()).sum()
    }

    /// The logs of the sinks started so far ([`Rig::sink`], [`Rig::sink_starting`]).
    fn sink_logs(&self) -> Vec<String> {
        (0..self.sinks.load(std::sync::atomic::Ordering::Relaxed))
            .filter_map(|n| std::fs::read_to_string(self.sink_log(n)).ok())
            .collect()
    }

    fn sink_log(&self, n: usize) -> std::path::PathBuf {
        self.p.lake.path().join(format!("sink-{n}.log"))
    }

    /// Where the next sink started logs.
    fn next_sink_log(&self) -> std::path::PathBuf {
        self.sink_log(self.sinks.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }

    /// Sets `kafka.properties."<key>"` in the configuration of the sinks started after it.
    pub fn kafka_property(&mut self, key: &str, value: &str) {
        self.p.test_config = self.p.test_config.clone().kafka_property(key, value);
        self.p.config = sink::write_config(&self.p.lake.path(), &self.p.test_config.to_toml());
    }

    /// Clients posting keyed webhooks with ids `<tag>-c<client>-<n>` to the ingest process.
    pub fn traffic(&self, tag: &str, load: Load) -> Traffic {
        Traffic::start(&Target::new(&self.ingest.url("keys"), "x-api-key", &self.p.api_key, tag), load)
    }

    /// Opens `n` connections to ingest that stall, as a hostile client would: every other
    /// one sends half a request head, the rest a whole head for the `keys` source with its
    /// key and a body of which only the first bytes come. They hold their slots (the ones
    /// beyond `ingest.max_connections` wait) until ingest closes them or they are dropped.
    pub async fn flood(&self, n: usize) -> Vec<tokio::net::TcpStream> {
        use tokio::io::AsyncWriteExt;
        let body_head = format!(
            "POST /webhook/keys HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nx-api-key: {}\r\n\
             x-request-id: flood\r\ncontent-length: 1000\r\n\r\n{{\"a\":",
            self.p.api_key
        );
        let mut streams = Vec::with_capacity(n);
        for i in 0..n {
            let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.ingest.port)).await else { continue };
            let first: &[u8] =
                if i % 2 == 0 { b"POST /webhook/keys HTTP/1.1\r\nhost: t\r\ncontent-ty" } else { body_head.as_bytes() };
            let _ = s.write_all(first).await;
            streams.push(s);
        }
        streams
    }

    /// Starts one more `hooklake sink` service (a replica in the same consumer group).
    pub async fn sink(&self) -> SinkService {
        SinkService::start_logged(&self.p.config, free_port(), Some(&self.next_sink_log())).await
    }

    /// [`Rig::sink`], returning as soon as the process answers `/livez`: it may still be
    /// waiting for its catalog.
    pub async fn sink_starting(&self) -> SinkService {
        SinkService::start_waiting(&self.p.config, free_port(), Some(&self.next_sink_log())).await
    }

    /// The broker of this test's own (see [`Rig::start`]).
    pub fn broker(&mut self) -> &mut Broker {
        match &mut self.p.broker {
            TestBroker::Own(b) => b,
            TestBroker::Shared(_) => panic!("this rig runs on the suite's broker"),
        }
    }

    pub fn warehouse(&self) -> std::path::PathBuf {
        self.p.lake.path().join("warehouse")
    }

    pub fn catalog_db(&self) -> std::path::PathBuf {
        self.p.lake.path().join("catalog.db")
    }

    /// Waits for `sinks` to catch up (see [`settle`]) and audits the table against `traffic`.
    pub async fn audit(&self, traffic: &TrafficReport, sinks: &[&SinkService]) -> Audit {
        let admins: Vec<String> = sinks.iter().map(|s| s.admin.clone()).collect();
        let topic = self.p.keys_topic();
        let (table, high) =
            settle(&self.p.lake, &self.p.keys_table(), &self.p.broker.bootstrap(), &topic, &admins, SETTLE).await;
        audit(traffic, &table, &self.p.broker.bootstrap(), &topic, &high)
    }

    /// The end of a scenario: waits for `sinks` to catch up, audits the table against
    /// `traffic`, prints the figures under `scenario`, and fails unless the audit is clean.
    pub async fn conclude(&self, traffic: &TrafficReport, sinks: &[&SinkService], scenario: &str, started: Instant) {
        let audit = self.audit(traffic, sinks).await;
        eprintln!("{scenario}: {audit}; answers {:?}; {:.0}s", traffic.answers, started.elapsed().as_secs_f64());
        self.assert_clean(&audit, traffic, scenario);
    }

    /// Fails with the audit, the answers the clients got and the sinks' warnings and
    /// errors unless the audit is clean.
    pub fn assert_clean(&self, audit: &Audit, traffic: &TrafficReport, scenario: &str) {
        if audit.is_clean() {
            return;
        }
        let logs: Vec<String> = self
            .sink_logs()
            .into_iter()
            .flat_map(|log| {
                log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).map(str::to_owned).collect::<Vec<_>>()
            })
            .collect();
        let tail = &logs[logs.len().saturating_sub(40)..];
        panic!(
            "{scenario}: {audit}\nanswers: {:?}\nsink warnings and errors (last 40):\n{}",
            traffic.answers,
            tail.join("\n")
        );
    }
}

/// `hooklake_sink_runs_total` of one `outcome`, over every trigger.
pub async fn runs(sink: &SinkService, outcome: &str) -> f64 {
    let text = sink.metrics().await;
    ["schedule", "manual", "lag"]
        .iter()
        .filter_map(|t| metrics::value(&text, "hooklake_sink_runs_total", &[("trigger", t), ("outcome", outcome)]))
        .sum()
}

/// `hooklake_sink_rows_written_total` of `table`.
pub async fn rows_written(sink: &SinkService, table: &str) -> f64 {
    metrics::value(&sink.metrics().await, "hooklake_sink_rows_written_total", &[("table", table)]).unwrap_or(0.0)
}

/// How many partitions a sink service holds now, over all its topics, as its
/// `hooklake_sink_assigned_partitions` gauges say.
pub async fn assigned(sink: &SinkService) -> u32 {
    let text = sink.metrics().await;
    metrics::samples(&text, "hooklake_sink_assigned_partitions").iter().map(|(_, v)| *v as u32).sum()
}
