//! Ingest metrics. The names are a contract (docs/design.md, "Metrics"; dashboards and
//! alerts use them), so they are constants here and a test pins them. Labels are the
//! configured source name (`_unknown` for anything else, never the raw URL), the status
//! code and the rejection reason.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder, exponential_buckets,
};

pub const REQUESTS_TOTAL: &str = "hooklake_ingest_requests_total";
pub const REQUEST_DURATION_SECONDS: &str = "hooklake_ingest_request_duration_seconds";
pub const BODY_BYTES: &str = "hooklake_ingest_body_bytes";
pub const REJECTED_TOTAL: &str = "hooklake_ingest_rejected_total";
pub const PRODUCE_DURATION_SECONDS: &str = "hooklake_ingest_produce_duration_seconds";
pub const PRODUCER_QUEUE_MESSAGES: &str = "hooklake_ingest_producer_queue_messages";
/// The bound of the queue above, so alerts can compute a fill ratio.
pub const PRODUCER_QUEUE_CAPACITY: &str = "hooklake_ingest_producer_queue_capacity";
/// Open webhook connections (bounded by `ingest.max_connections`).
pub const OPEN_CONNECTIONS: &str = "hooklake_ingest_open_connections";
/// 1 while a source can take webhooks (the broker's last metadata answer held its topic), else 0.
pub const SOURCE_READY: &str = "hooklake_ingest_source_ready";

/// The `source` label of requests for sources that do not exist.
pub const UNKNOWN_SOURCE_LABEL: &str = "_unknown";

/// Every rejection reason (the `error` codes of the HTTP contract, docs/design.md).
pub const REJECTION_REASONS: &[&str] = &[
    "malformed_json",
    "missing_credentials",
    "invalid_credentials",
    "unknown_source",
    "body_too_large",
    "unsupported_media_type",
    "body_timeout",
    "unavailable",
    "overloaded",
    "topic_missing",
];

#[derive(Clone, Debug)]
pub struct IngestMetrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub body_bytes: HistogramVec,
    pub rejected: IntCounterVec,
    pub produce_duration: Histogram,
    pub queue_messages: IntGauge,
    pub queue_capacity: IntGauge,
    pub open_connections: IntGauge,
    pub source_ready: IntGaugeVec,
}

/// One source's handles on the series of [`IngestMetrics`] (see [`IngestMetrics::for_source`]).
#[derive(Clone, Debug)]
pub struct SourceMetrics {
    /// `requests_total{status="200"}`.
    pub accepted: IntCounter,
    pub request_duration: Histogram,
    pub body_bytes: Histogram,
}

impl IngestMetrics {
    /// Registers every metric; series for each configured source start at zero so that
    /// dashboards and `absent()`-style alerts see them before the first request.
    pub fn new<'a>(sources: impl IntoIterator<Item = &'a str>) -> Self {
        let registry = Registry::new();
        let latency = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0];
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(REQUESTS_TOTAL, "Webhook requests answered, by source and HTTP status"),
                &["source", "status"],
            )
            .expect("valid metric"),
            request_duration: HistogramVec::new(
                HistogramOpts::new(REQUEST_DURATION_SECONDS, "Time from request to answer").buckets(latency.clone()),
                &["source"],
            )
            .expect("valid metric"),
            body_bytes: HistogramVec::new(
                HistogramOpts::new(BODY_BYTES, "Accepted body sizes after decompression")
                    .buckets(exponential_buckets(256.0, 4.0, 8).expect("valid buckets")),
                &["source"],
            )
            .expect("valid metric"),
            rejected: IntCounterVec::new(
                Opts::new(REJECTED_TOTAL, "Requests not put on Kafka, by reason"),
                &["source", "reason"],
            )
            .expect("valid metric"),
            produce_duration: Histogram::with_opts(
                HistogramOpts::new(PRODUCE_DURATION_SECONDS, "Time from produce to the broker's acknowledgement")
                    .buckets(latency),
            )
            .expect("valid metric"),
            queue_messages: IntGauge::new(PRODUCER_QUEUE_MESSAGES, "Records waiting for the broker's acknowledgement")
                .expect("valid metric"),
            queue_capacity: IntGauge::new(PRODUCER_QUEUE_CAPACITY, "Most records that may wait for acknowledgement")
                .expect("valid metric"),
            open_connections: IntGauge::new(OPEN_CONNECTIONS, "Open webhook connections").expect("valid metric"),
            source_ready: IntGaugeVec::new(
                Opts::new(SOURCE_READY, "1 while the source's topic exists on the broker, else 0"),
                &["source"],
            )
            .expect("valid metric"),
            registry,
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.request_duration.clone()),
            Box::new(m.body_bytes.clone()),
            Box::new(m.rejected.clone()),
            Box::new(m.produce_duration.clone()),
            Box::new(m.queue_messages.clone()),
            Box::new(m.queue_capacity.clone()),
            Box::new(m.open_connections.clone()),
            Box::new(m.source_ready.clone()),
        ] {
            m.registry.register(c).expect("names are unique");
        }
        for source in sources {
            m.requests.with_label_values(&[source, "200"]);
            m.source_ready.with_label_values(&[source]).set(1);
            for reason in REJECTION_REASONS.iter().filter(|r| **r != "unknown_source") {
                m.rejected.with_label_values(&[source, reason]);
            }
        }
        m.rejected.with_label_values(&[UNKNOWN_SOURCE_LABEL, "unknown_source"]);
        m
    }

    /// The series every accepted request of `source` touches, resolved once: looking a
    /// series up by its labels hashes them and takes a lock, on every request.
    pub fn for_source(&self, source: &str) -> SourceMetrics {
        SourceMetrics {
            accepted: self.requests.with_label_values(&[source, "200"]),
            request_duration: self.request_duration.with_label_values(&[source]),
            body_bytes: self.body_bytes.with_label_values(&[source]),
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names docs/design.md lists ("Metrics"); dashboards and alerts depend on them.
    #[test]
    fn metric_names_match_the_design() {
        let m = IngestMetrics::new(["orders"]);
        m.request_duration.with_label_values(&["orders"]).observe(0.01);
        m.body_bytes.with_label_values(&["orders"]).observe(10.0);
        m.produce_duration.observe(0.01);
        let text = m.render();
        for name in [
            "hooklake_ingest_requests_total{source=\"orders\",status=\"200\"} 0",
            "hooklake_ingest_request_duration_seconds_bucket{source=\"orders\"",
            "hooklake_ingest_body_bytes_bucket{source=\"orders\"",
            "hooklake_ingest_rejected_total{reason=\"invalid_credentials\",source=\"orders\"} 0",
            "hooklake_ingest_produce_duration_seconds_bucket",
            "hooklake_ingest_producer_queue_messages 0",
            "hooklake_ingest_producer_queue_capacity 0",
            "hooklake_ingest_open_connections 0",
            "hooklake_ingest_source_ready{source=\"orders\"} 1",
            "hooklake_ingest_rejected_total{reason=\"body_timeout\",source=\"orders\"} 0",
            "hooklake_ingest_rejected_total{reason=\"overloaded\",source=\"orders\"} 0",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
