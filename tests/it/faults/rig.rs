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
    sink::SinkService,
    traffic::{Load, Target, Traffic, TrafficReport},
};

use crate::sink_common::Pipeline;

/// Partitions of the source topic: more than one, so offsets can go wrong per partition.
pub const PARTITIONS: u32 = 3;
pub const SCHEDULE: &str = "every 1s";
/// How long the sink gets to load the rest once traffic stopped and faults ended.
pub const SETTLE: Duration = Duration::from_secs(180);

#[derive(Debug)]
pub struct Rig {
    pub p: Pipeline,
    pub ingest: IngestProcess,
    sinks: std::sync::atomic::AtomicUsize,
}

impl Rig {
    /// The pipeline on the suite's broker, or with `own_broker` on one the test may kill.
    pub async fn start(own_broker: bool) -> Self {
        let broker = if own_broker { TestBroker::Own(Broker::start()) } else { TestBroker::get() };
        let p = Pipeline::start_partitioned(broker, TestLake::sqlite(), SCHEDULE, None, PARTITIONS).await;
        let ingest = IngestProcess::start(&p.config, &p.lake.path().join("ingest.log")).await;
        Self { p, ingest, sinks: Default::default() }
    }

    /// Clients posting keyed webhooks with ids `<tag>-c<client>-<n>` to the ingest process.
    pub fn traffic(&self, tag: &str, load: Load) -> Traffic {
        Traffic::start(&Target::new(&self.ingest.url("keys"), "x-api-key", &self.p.api_key, tag), load)
    }

    /// Starts one more `hooklake sink` service (a replica in the same consumer group).
    pub async fn sink(&self) -> SinkService {
        let n = self.sinks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = self.p.lake.path().join(format!("sink-{n}.log"));
        SinkService::start_logged(&self.p.config, free_port(), Some(&log)).await
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
        let logs: Vec<String> = (0..self.sinks.load(std::sync::atomic::Ordering::Relaxed))
            .filter_map(|n| std::fs::read_to_string(self.p.lake.path().join(format!("sink-{n}.log"))).ok())
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
