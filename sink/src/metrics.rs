//! Sink metrics. The names are a contract (docs/design.md, "Metrics"; dashboards and
//! alerts use them), so they are constants here and a test pins them.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

pub const LAG_MESSAGES: &str = "hooklake_sink_lag_messages";
pub const LAG_SECONDS: &str = "hooklake_sink_lag_seconds";
pub const RUNS_TOTAL: &str = "hooklake_sink_runs_total";
pub const RUN_DURATION_SECONDS: &str = "hooklake_sink_run_duration_seconds";
pub const ROWS_WRITTEN_TOTAL: &str = "hooklake_sink_rows_written_total";
pub const FILES_WRITTEN_TOTAL: &str = "hooklake_sink_files_written_total";
pub const BYTES_WRITTEN_TOTAL: &str = "hooklake_sink_bytes_written_total";
pub const DUPLICATES_DROPPED_TOTAL: &str = "hooklake_sink_duplicates_dropped_total";
pub const DLQ_RECORDS_TOTAL: &str = "hooklake_sink_dlq_records_total";
pub const LAST_SUCCESS_TIMESTAMP_SECONDS: &str = "hooklake_sink_last_success_timestamp_seconds";
pub const OFFSETS_AHEAD_PARTITIONS: &str = "hooklake_sink_offsets_ahead_partitions";
pub const OFFSET_GAPS_TOTAL: &str = "hooklake_sink_offset_gaps_total";
pub const RECORDS_EXPIRED_TOTAL: &str = "hooklake_sink_records_expired_total";
pub const COMMIT_CONFLICTS_TOTAL: &str = "hooklake_sink_commit_conflicts_total";
pub const ASSIGNED_PARTITIONS: &str = "hooklake_sink_assigned_partitions";

#[derive(Clone, Debug)]
pub struct SinkMetrics {
    registry: Registry,
    pub lag_messages: IntGaugeVec,
    pub lag_seconds: IntGaugeVec,
    pub runs: IntCounterVec,
    pub run_duration: Histogram,
    pub rows: IntCounterVec,
    pub files: IntCounterVec,
    pub bytes: IntCounterVec,
    pub duplicates: IntCounterVec,
    pub dlq: IntCounterVec,
    pub last_success: IntGaugeVec,
    pub offsets_ahead: IntGaugeVec,
    pub offset_gaps: IntCounterVec,
    pub expired: IntCounterVec,
    pub conflicts: IntCounterVec,
    pub assigned: IntGaugeVec,
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl SinkMetrics {
    /// Registers every metric; per-table and per-topic series start at zero.
    pub fn new<'a>(tables: impl IntoIterator<Item = &'a str>, topics: impl IntoIterator<Item = &'a str>) -> Self {
        let buckets = vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];
        let m = Self {
            registry: Registry::new(),
            lag_messages: gauge(LAG_MESSAGES, "Records on Kafka not yet in the table", &["topic", "partition"]),
            lag_seconds: gauge(LAG_SECONDS, "Age of the oldest record not yet in the table", &["topic"]),
            runs: counter(RUNS_TOTAL, "Sink runs by trigger and outcome", &["trigger", "outcome"]),
            run_duration: Histogram::with_opts(
                HistogramOpts::new(RUN_DURATION_SECONDS, "Duration of sink runs").buckets(buckets),
            )
            .expect("valid metric"),
            rows: counter(ROWS_WRITTEN_TOTAL, "Rows committed to the table", &["table"]),
            files: counter(FILES_WRITTEN_TOTAL, "Data files committed to the table", &["table"]),
            bytes: counter(BYTES_WRITTEN_TOTAL, "Bytes of data files committed to the table", &["table"]),
            duplicates: counter(DUPLICATES_DROPPED_TOTAL, "Records dropped as duplicate deliveries", &["table"]),
            dlq: counter(DLQ_RECORDS_TOTAL, "Records sent to the dead-letter topic", &["topic"]),
            last_success: gauge(LAST_SUCCESS_TIMESTAMP_SECONDS, "Unix time of the last successful run", &["table"]),
            offsets_ahead: gauge(
                OFFSETS_AHEAD_PARTITIONS,
                "Partitions whose table offset is past the topic's end (runs fail until repaired)",
                &["topic"],
            ),
            offset_gaps: counter(
                OFFSET_GAPS_TOTAL,
                "Offsets skipped because the broker returned no record",
                &["topic"],
            ),
            expired: counter(
                RECORDS_EXPIRED_TOTAL,
                "Records that left Kafka (retention) before they were loaded",
                &["topic"],
            ),
            conflicts: counter(
                COMMIT_CONFLICTS_TOTAL,
                "Table commits refused because another writer committed first, by what the run did next",
                &["table", "outcome"],
            ),
            assigned: gauge(
                ASSIGNED_PARTITIONS,
                "Partitions of the topic this instance holds (its share of the consumer group)",
                &["topic"],
            ),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.lag_messages.clone()),
            Box::new(m.lag_seconds.clone()),
            Box::new(m.runs.clone()),
            Box::new(m.run_duration.clone()),
            Box::new(m.rows.clone()),
            Box::new(m.files.clone()),
            Box::new(m.bytes.clone()),
            Box::new(m.duplicates.clone()),
            Box::new(m.dlq.clone()),
            Box::new(m.last_success.clone()),
            Box::new(m.offsets_ahead.clone()),
            Box::new(m.offset_gaps.clone()),
            Box::new(m.expired.clone()),
            Box::new(m.conflicts.clone()),
            Box::new(m.assigned.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("names are unique");
        }
        for table in tables {
            for c in [&m.rows, &m.files, &m.bytes, &m.duplicates] {
                c.with_label_values(&[table]);
            }
            for outcome in ["rebased", "replanned"] {
                m.conflicts.with_label_values(&[table, outcome]);
            }
        }
        for topic in topics {
            for c in [&m.dlq, &m.offset_gaps, &m.expired] {
                c.with_label_values(&[topic]);
            }
            m.lag_seconds.with_label_values(&[topic]);
            m.offsets_ahead.with_label_values(&[topic]);
            m.assigned.with_label_values(&[topic]);
        }
        for trigger in ["manual", "schedule", "lag"] {
            for outcome in ["success", "failure"] {
                m.runs.with_label_values(&[trigger, outcome]);
            }
        }
        m
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::metrics::{Coverage, MetricsContract};

    use super::*;

    /// Every metric, once touched, is exported as metrics.v1.json says (name, type, help,
    /// labels, listed values), and nothing else is; per-table and per-topic series start at 0.
    #[test]
    fn exported_metrics_match_the_contract_file() {
        let m = SinkMetrics::new(["raw.shop.orders"], ["hooklake.orders"]);
        m.lag_messages.with_label_values(&["hooklake.orders", "0"]).set(3);
        m.run_duration.observe(1.0);
        m.last_success.with_label_values(&["raw.shop.orders"]).set(1);
        let text = m.render();
        let problems = MetricsContract::v1().check("sink", &text, Coverage::All);
        assert!(problems.is_empty(), "{problems:#?}\n{text}");
        for line in [
            "hooklake_sink_lag_messages{partition=\"0\",topic=\"hooklake.orders\"} 3",
            "hooklake_sink_lag_seconds{topic=\"hooklake.orders\"} 0",
            "hooklake_sink_runs_total{outcome=\"failure\",trigger=\"schedule\"} 0",
            "hooklake_sink_rows_written_total{table=\"raw.shop.orders\"} 0",
            "hooklake_sink_dlq_records_total{topic=\"hooklake.orders\"} 0",
            "hooklake_sink_last_success_timestamp_seconds{table=\"raw.shop.orders\"} 1",
            "hooklake_sink_offsets_ahead_partitions{topic=\"hooklake.orders\"} 0",
            "hooklake_sink_records_expired_total{topic=\"hooklake.orders\"} 0",
            "hooklake_sink_commit_conflicts_total{outcome=\"rebased\",table=\"raw.shop.orders\"} 0",
            "hooklake_sink_commit_conflicts_total{outcome=\"replanned\",table=\"raw.shop.orders\"} 0",
            "hooklake_sink_assigned_partitions{topic=\"hooklake.orders\"} 0",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
