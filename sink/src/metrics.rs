//! Sink metrics. The names are a contract (DESIGN.md; dashboards and alerts use them).

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
        ];
        for c in collectors {
            m.registry.register(c).expect("names are unique");
        }
        for table in tables {
            for c in [&m.rows, &m.files, &m.bytes, &m.duplicates] {
                c.with_label_values(&[table]);
            }
        }
        for topic in topics {
            m.dlq.with_label_values(&[topic]);
            m.lag_seconds.with_label_values(&[topic]);
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
    use super::*;

    #[test]
    fn metric_names_match_the_design() {
        let m = SinkMetrics::new(["raw.shop.orders"], ["hooklake.orders"]);
        m.lag_messages.with_label_values(&["hooklake.orders", "0"]).set(3);
        m.run_duration.observe(1.0);
        m.last_success.with_label_values(&["raw.shop.orders"]).set(1);
        let text = m.render();
        for line in [
            "hooklake_sink_lag_messages{partition=\"0\",topic=\"hooklake.orders\"} 3",
            "hooklake_sink_lag_seconds{topic=\"hooklake.orders\"} 0",
            "hooklake_sink_runs_total{outcome=\"failure\",trigger=\"schedule\"} 0",
            "hooklake_sink_run_duration_seconds_bucket",
            "hooklake_sink_rows_written_total{table=\"raw.shop.orders\"} 0",
            "hooklake_sink_files_written_total{table=\"raw.shop.orders\"} 0",
            "hooklake_sink_bytes_written_total{table=\"raw.shop.orders\"} 0",
            "hooklake_sink_duplicates_dropped_total{table=\"raw.shop.orders\"} 0",
            "hooklake_sink_dlq_records_total{topic=\"hooklake.orders\"} 0",
            "hooklake_sink_last_success_timestamp_seconds{table=\"raw.shop.orders\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
