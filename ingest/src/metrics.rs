//! Ingest metrics. The names are a contract (docs/design.md, "Metrics"; dashboards and
//! alerts use them), so they are constants here and a test pins them. Labels are the
//! configured source name (`_unknown` for anything else, never the raw URL), the status
//! code and the rejection reason.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder, exponential_buckets,
};
use rdkafka::Statistics;

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
/// The bound of the gauge above, so alerts can compute a fill ratio.
pub const MAX_CONNECTIONS: &str = "hooklake_ingest_max_connections";
/// Requests being handled (bounded by `ingest.max_in_flight`).
pub const IN_FLIGHT_REQUESTS: &str = "hooklake_ingest_in_flight_requests";
/// Body bytes those requests hold (bounded by `ingest.max_in_flight_bytes`).
pub const IN_FLIGHT_BODY_BYTES: &str = "hooklake_ingest_in_flight_body_bytes";
/// Connections hyper ended before a request reached the router, by reason
/// ([`crate::connections::CLOSE_REASONS`]).
pub const CONNECTIONS_CLOSED_TOTAL: &str = "hooklake_ingest_connections_closed_total";
/// 1 while a source can take webhooks (the broker's last metadata answer held its topic), else 0.
pub const SOURCE_READY: &str = "hooklake_ingest_source_ready";

/// librdkafka's statistics of the current producer (`statistics.interval.ms`), set at
/// each scrape from its last report ([`KafkaMetrics::observe`]).
pub const KAFKA_QUEUE_MESSAGES: &str = "hooklake_ingest_kafka_queue_messages";
pub const KAFKA_QUEUE_BYTES: &str = "hooklake_ingest_kafka_queue_bytes";
pub const KAFKA_QUEUE_MAX_MESSAGES: &str = "hooklake_ingest_kafka_queue_max_messages";
pub const KAFKA_QUEUE_MAX_BYTES: &str = "hooklake_ingest_kafka_queue_max_bytes";
pub const KAFKA_BROKER_RTT_AVG_SECONDS: &str = "hooklake_ingest_kafka_broker_rtt_avg_seconds";
pub const KAFKA_BROKER_RTT_P99_SECONDS: &str = "hooklake_ingest_kafka_broker_rtt_p99_seconds";
pub const KAFKA_BROKER_QUEUE_WAIT_AVG_SECONDS: &str = "hooklake_ingest_kafka_broker_queue_wait_avg_seconds";
pub const KAFKA_BROKER_QUEUE_WAIT_P99_SECONDS: &str = "hooklake_ingest_kafka_broker_queue_wait_p99_seconds";
pub const KAFKA_BROKER_OUTBUF_REQUESTS: &str = "hooklake_ingest_kafka_broker_outbuf_requests";
pub const KAFKA_BROKER_WAITRESP_REQUESTS: &str = "hooklake_ingest_kafka_broker_waitresp_requests";
pub const KAFKA_BROKER_PRODUCE_REQUESTS_TOTAL: &str = "hooklake_ingest_kafka_broker_produce_requests_total";
pub const KAFKA_BATCH_AVG_BYTES: &str = "hooklake_ingest_kafka_batch_avg_bytes";
pub const KAFKA_BATCH_AVG_MESSAGES: &str = "hooklake_ingest_kafka_batch_avg_messages";

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
    /// `ingest.max_connections`.
    pub max_connections: IntGauge,
    /// Read from the in-flight limits when `/metrics` is scraped.
    pub in_flight_requests: IntGauge,
    pub in_flight_body_bytes: IntGauge,
    /// The webhook listener's: open connections, and those hyper ended.
    pub connections: crate::connections::ConnectionMetrics,
    pub source_ready: IntGaugeVec,
    pub kafka: KafkaMetrics,
}

/// The gauges of librdkafka's statistics. Brokers are labelled by node id (bounded by the
/// cluster's size; the bootstrap and internal handles are left out), batches by topic.
#[derive(Clone, Debug)]
pub struct KafkaMetrics {
    pub queue_messages: IntGauge,
    pub queue_bytes: IntGauge,
    pub queue_max_messages: IntGauge,
    pub queue_max_bytes: IntGauge,
    pub broker_rtt_avg: GaugeVec,
    pub broker_rtt_p99: GaugeVec,
    pub broker_queue_wait_avg: GaugeVec,
    pub broker_queue_wait_p99: GaugeVec,
    pub broker_outbuf: IntGaugeVec,
    pub broker_waitresp: IntGaugeVec,
    /// Counts librdkafka's `req.Produce`, which starts again at 0 with a new producer.
    pub broker_produce_requests: IntCounterVec,
    pub batch_avg_bytes: IntGaugeVec,
    pub batch_avg_messages: IntGaugeVec,
    shown: Arc<Mutex<Shown>>,
}

/// The brokers of the last report, each with its `req.Produce` in it, and its topics:
/// their series go when they leave the report.
#[derive(Debug, Default)]
struct Shown {
    brokers: BTreeMap<String, i64>,
    topics: BTreeSet<String>,
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
            max_connections: IntGauge::new(MAX_CONNECTIONS, "Most open webhook connections (ingest.max_connections)")
                .expect("valid metric"),
            in_flight_requests: IntGauge::new(
                IN_FLIGHT_REQUESTS,
                "Requests being handled (at most ingest.max_in_flight)",
            )
            .expect("valid metric"),
            in_flight_body_bytes: IntGauge::new(
                IN_FLIGHT_BODY_BYTES,
                "Body bytes reserved by the requests being handled (at most ingest.max_in_flight_bytes)",
            )
            .expect("valid metric"),
            connections: crate::connections::ConnectionMetrics {
                open: IntGauge::new(OPEN_CONNECTIONS, "Open webhook connections").expect("valid metric"),
                closed: IntCounterVec::new(
                    Opts::new(
                        CONNECTIONS_CLOSED_TOTAL,
                        "Connections ended before a request reached the router, by reason",
                    ),
                    &["reason"],
                )
                .expect("valid metric"),
            },
            source_ready: IntGaugeVec::new(
                Opts::new(SOURCE_READY, "1 while the source's topic exists on the broker, else 0"),
                &["source"],
            )
            .expect("valid metric"),
            kafka: KafkaMetrics::new(),
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
            Box::new(m.max_connections.clone()),
            Box::new(m.in_flight_requests.clone()),
            Box::new(m.in_flight_body_bytes.clone()),
            Box::new(m.connections.open.clone()),
            Box::new(m.connections.closed.clone()),
            Box::new(m.source_ready.clone()),
        ]
        .into_iter()
        .chain(m.kafka.collectors())
        {
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
        for reason in crate::connections::CLOSE_REASONS {
            m.connections.closed.with_label_values(&[reason]);
        }
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

impl KafkaMetrics {
    fn new() -> Self {
        let int = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let per = |name: &str, help: &str, label: &str| {
            IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid metric")
        };
        let seconds = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["broker"]).expect("valid metric");
        Self {
            queue_messages: int(
                KAFKA_QUEUE_MESSAGES,
                "Messages in the producer's queues, sent or not, awaiting acknowledgement (librdkafka msg_cnt)",
            ),
            queue_bytes: int(KAFKA_QUEUE_BYTES, "Bytes of the messages in the producer's queues (librdkafka msg_size)"),
            queue_max_messages: int(
                KAFKA_QUEUE_MAX_MESSAGES,
                "Most messages the producer's queues may hold (librdkafka msg_max)",
            ),
            queue_max_bytes: int(
                KAFKA_QUEUE_MAX_BYTES,
                "Most bytes the producer's queues may hold (librdkafka msg_size_max)",
            ),
            broker_rtt_avg: seconds(
                KAFKA_BROKER_RTT_AVG_SECONDS,
                "Mean request round-trip time to the broker in the last statistics interval that had requests (librdkafka rtt.avg)",
            ),
            broker_rtt_p99: seconds(
                KAFKA_BROKER_RTT_P99_SECONDS,
                "99th percentile request round-trip time to the broker in the last statistics interval that had requests (librdkafka rtt.p99)",
            ),
            broker_queue_wait_avg: seconds(
                KAFKA_BROKER_QUEUE_WAIT_AVG_SECONDS,
                "Mean time records waited in the producer before going into a request to the broker, in the last statistics interval that had records (librdkafka int_latency.avg)",
            ),
            broker_queue_wait_p99: seconds(
                KAFKA_BROKER_QUEUE_WAIT_P99_SECONDS,
                "99th percentile time records waited in the producer before going into a request to the broker, in the last statistics interval that had records (librdkafka int_latency.p99)",
            ),
            broker_outbuf: per(
                KAFKA_BROKER_OUTBUF_REQUESTS,
                "Requests waiting to be sent to the broker (librdkafka outbuf_cnt)",
                "broker",
            ),
            broker_waitresp: per(
                KAFKA_BROKER_WAITRESP_REQUESTS,
                "Requests sent to the broker and waiting for its response (librdkafka waitresp_cnt)",
                "broker",
            ),
            broker_produce_requests: IntCounterVec::new(
                Opts::new(
                    KAFKA_BROKER_PRODUCE_REQUESTS_TOTAL,
                    "Produce requests sent to the broker (librdkafka req.Produce)",
                ),
                &["broker"],
            )
            .expect("valid metric"),
            batch_avg_bytes: per(
                KAFKA_BATCH_AVG_BYTES,
                "Mean size of the batches produced to the topic in the last statistics interval that had batches (librdkafka batchsize.avg)",
                "topic",
            ),
            batch_avg_messages: per(
                KAFKA_BATCH_AVG_MESSAGES,
                "Mean number of messages per batch produced to the topic in the last statistics interval that had batches (librdkafka batchcnt.avg)",
                "topic",
            ),
            shown: Arc::default(),
        }
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.queue_messages.clone()),
            Box::new(self.queue_bytes.clone()),
            Box::new(self.queue_max_messages.clone()),
            Box::new(self.queue_max_bytes.clone()),
            Box::new(self.broker_rtt_avg.clone()),
            Box::new(self.broker_rtt_p99.clone()),
            Box::new(self.broker_queue_wait_avg.clone()),
            Box::new(self.broker_queue_wait_p99.clone()),
            Box::new(self.broker_outbuf.clone()),
            Box::new(self.broker_waitresp.clone()),
            Box::new(self.broker_produce_requests.clone()),
            Box::new(self.batch_avg_bytes.clone()),
            Box::new(self.batch_avg_messages.clone()),
        ]
    }

    /// Sets the gauges from a statistics report. Windowed values (round trips, waits, batches)
    /// keep their last value through intervals without requests or batches: librdkafka
    /// reports those as 0, which would read as an instant broker.
    pub fn observe(&self, stats: &Statistics) {
        let as_i64 = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.queue_messages.set(as_i64(stats.msg_cnt));
        self.queue_bytes.set(as_i64(stats.msg_size));
        self.queue_max_messages.set(as_i64(stats.msg_max));
        self.queue_max_bytes.set(as_i64(stats.msg_size_max));
        let mut shown = self.shown.lock().expect("not poisoned");
        let mut brokers = BTreeMap::new();
        for b in stats.brokers.values().filter(|b| b.nodeid >= 0) {
            let id = b.nodeid.to_string();
            let label = [id.as_str()];
            self.broker_outbuf.with_label_values(&label).set(b.outbuf_cnt);
            self.broker_waitresp.with_label_values(&label).set(b.waitresp_cnt);
            // librdkafka's count is the producer's since it started: add what it grew by,
            // or all of it once a new producer has started again below the last report.
            let sent = b.req.get("Produce").copied().unwrap_or(0);
            let before = shown.brokers.get(&id).copied().unwrap_or(0);
            let grown = if sent >= before { sent - before } else { sent };
            self.broker_produce_requests.with_label_values(&label).inc_by(grown.max(0) as u64);
            for (window, avg, p99) in [
                (&b.rtt, &self.broker_rtt_avg, &self.broker_rtt_p99),
                (&b.int_latency, &self.broker_queue_wait_avg, &self.broker_queue_wait_p99),
            ] {
                // librdkafka's windows are in µs; an interval without samples keeps the last.
                if let Some(w) = window.as_ref().filter(|w| w.cnt > 0) {
                    avg.with_label_values(&label).set(w.avg as f64 / 1e6);
                    p99.with_label_values(&label).set(w.p99 as f64 / 1e6);
                }
            }
            brokers.insert(id, sent);
        }
        let mut topics = BTreeSet::new();
        for t in stats.topics.values() {
            if t.batchcnt.cnt > 0 {
                self.batch_avg_bytes.with_label_values(&[&t.topic]).set(t.batchsize.avg);
                self.batch_avg_messages.with_label_values(&[&t.topic]).set(t.batchcnt.avg);
            }
            topics.insert(t.topic.clone());
        }
        for gone in shown.brokers.keys().filter(|id| !brokers.contains_key(*id)) {
            let _ = self.broker_outbuf.remove_label_values(&[gone]);
            let _ = self.broker_waitresp.remove_label_values(&[gone]);
            let _ = self.broker_produce_requests.remove_label_values(&[gone]);
            for seconds in
                [&self.broker_rtt_avg, &self.broker_rtt_p99, &self.broker_queue_wait_avg, &self.broker_queue_wait_p99]
            {
                let _ = seconds.remove_label_values(&[gone]);
            }
        }
        for gone in shown.topics.difference(&topics) {
            let _ = self.batch_avg_bytes.remove_label_values(&[gone]);
            let _ = self.batch_avg_messages.remove_label_values(&[gone]);
        }
        *shown = Shown { brokers, topics };
    }
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::metrics::{Coverage, MetricsContract};
    use rdkafka::statistics::{Broker, Topic, Window};

    use super::*;

    /// A report with one learned broker (node 1), the bootstrap handle and one topic.
    fn statistics(rtt_cnt: i64) -> Statistics {
        let window = |avg, p99, cnt| Window { avg, p99, cnt, ..Window::default() };
        let broker = |nodeid, name: &str| Broker {
            name: name.into(),
            nodeid,
            outbuf_cnt: 2,
            waitresp_cnt: 5,
            req: [("Produce".to_owned(), 40), ("Metadata".to_owned(), 3)].into_iter().collect(),
            rtt: Some(window(1500, 4000, rtt_cnt)),
            int_latency: Some(window(800, 2500, rtt_cnt)),
            ..Broker::default()
        };
        Statistics {
            msg_cnt: 7,
            msg_size: 700,
            msg_max: 100_000,
            msg_size_max: 1 << 30,
            brokers: [("b:9092/1", 1), ("b:9092/bootstrap", -1)]
                .into_iter()
                .map(|(name, id)| (name.to_owned(), broker(id, name)))
                .collect(),
            topics: [(
                "t".to_owned(),
                Topic {
                    topic: "t".into(),
                    batchsize: window(2048, 0, 3),
                    batchcnt: window(4, 0, 3),
                    ..Topic::default()
                },
            )]
            .into_iter()
            .collect(),
            ..Statistics::default()
        }
    }

    /// Every metric, once touched, is exported as metrics.v1.json says (name, type, help,
    /// labels, listed values), and nothing else is.
    #[test]
    fn exported_metrics_match_the_contract_file() {
        let m = IngestMetrics::new(["orders"]);
        m.request_duration.with_label_values(&["orders"]).observe(0.01);
        m.body_bytes.with_label_values(&["orders"]).observe(10.0);
        m.produce_duration.observe(0.01);
        m.kafka.observe(&statistics(4));
        let text = m.render();
        let problems = MetricsContract::v1().check("ingest", &text, Coverage::All);
        assert!(problems.is_empty(), "{problems:#?}\n{text}");
        for name in [
            "hooklake_ingest_requests_total{source=\"orders\",status=\"200\"} 0",
            "hooklake_ingest_rejected_total{reason=\"invalid_credentials\",source=\"orders\"} 0",
            "hooklake_ingest_rejected_total{reason=\"body_timeout\",source=\"orders\"} 0",
            "hooklake_ingest_rejected_total{reason=\"overloaded\",source=\"orders\"} 0",
            "hooklake_ingest_rejected_total{reason=\"unknown_source\",source=\"_unknown\"} 0",
            "hooklake_ingest_source_ready{source=\"orders\"} 1",
        ] {
            assert!(text.contains(name), "series not set up at start: {name} in\n{text}");
        }
    }

    #[test]
    fn librdkafka_statistics_become_gauges() {
        let m = IngestMetrics::new(["orders"]);
        m.kafka.observe(&statistics(4));
        let text = m.render();
        for line in [
            "hooklake_ingest_kafka_queue_messages 7",
            "hooklake_ingest_kafka_queue_bytes 700",
            "hooklake_ingest_kafka_queue_max_messages 100000",
            "hooklake_ingest_kafka_queue_max_bytes 1073741824",
            "hooklake_ingest_kafka_broker_rtt_avg_seconds{broker=\"1\"} 0.0015",
            "hooklake_ingest_kafka_broker_rtt_p99_seconds{broker=\"1\"} 0.004",
            "hooklake_ingest_kafka_broker_queue_wait_avg_seconds{broker=\"1\"} 0.0008",
            "hooklake_ingest_kafka_broker_queue_wait_p99_seconds{broker=\"1\"} 0.0025",
            "hooklake_ingest_kafka_broker_outbuf_requests{broker=\"1\"} 2",
            "hooklake_ingest_kafka_broker_waitresp_requests{broker=\"1\"} 5",
            "hooklake_ingest_kafka_broker_produce_requests_total{broker=\"1\"} 40",
            "hooklake_ingest_kafka_batch_avg_bytes{topic=\"t\"} 2048",
            "hooklake_ingest_kafka_batch_avg_messages{topic=\"t\"} 4",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
        }
        assert!(!text.contains("broker=\"-1\""), "the bootstrap handle is not a broker:\n{text}");

        // An interval without requests keeps the last round trip; a broker that left the
        // report loses its series.
        let mut idle = statistics(0);
        let broker = idle.brokers.get_mut("b:9092/1").unwrap();
        broker.rtt.as_mut().unwrap().avg = 0;
        broker.int_latency.as_mut().unwrap().avg = 0;
        broker.req.insert("Produce".to_owned(), 55);
        m.kafka.observe(&idle);
        let text = m.render();
        assert!(text.contains("hooklake_ingest_kafka_broker_rtt_avg_seconds{broker=\"1\"} 0.0015"), "{text}");
        // The producer's count grew by 15; then a new producer starts again at 6.
        assert!(text.contains("hooklake_ingest_kafka_broker_produce_requests_total{broker=\"1\"} 55"), "{text}");
        let mut restarted = statistics(4);
        restarted.brokers.get_mut("b:9092/1").unwrap().req.insert("Produce".to_owned(), 6);
        m.kafka.observe(&restarted);
        assert!(m.render().contains("hooklake_ingest_kafka_broker_produce_requests_total{broker=\"1\"} 61"));
        assert!(text.contains("hooklake_ingest_kafka_broker_queue_wait_avg_seconds{broker=\"1\"} 0.0008"), "{text}");
        let mut gone = statistics(4);
        gone.brokers.clear();
        gone.topics.clear();
        m.kafka.observe(&gone);
        let text = m.render();
        assert!(!text.contains("broker=") && !text.contains("topic="), "{text}");
    }
}
