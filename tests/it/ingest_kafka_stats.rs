//! librdkafka's statistics on ingest's admin `/metrics`: the producer's queue and its
//! limits, round trips to the suite's broker, requests and records waiting, and batch
//! sizes, exported as schemas/metrics.v1.json lists them.

use std::{collections::BTreeMap, time::Duration};

use hooklake_schemas::metrics::Coverage;
use hooklake_tests::{broker::TestBroker, eventually, http, ingest::TestIngest, metrics};

use crate::common::{Secrets, config, topic_prefix};

/// The samples of `name` with `label`'s value, when there are any.
fn by_label(text: &str, name: &str, label: &str) -> Option<BTreeMap<String, f64>> {
    let samples = metrics::samples(text, name);
    (!samples.is_empty()).then(|| samples.into_iter().filter_map(|(l, v)| Some((l.get(label)?.clone(), v))).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn librdkafka_statistics_are_gauges_on_the_admin_port() {
    let broker = TestBroker::get();
    let prefix = topic_prefix();
    let topic = format!("{prefix}.open");
    let config =
        config(&broker.bootstrap(), &prefix, &Secrets::fresh()).kafka_property("statistics.interval.ms", "200");
    let ingest = TestIngest::start(&config.to_toml()).await;
    let client = http::client();

    // A webhook per poll, so that each statistics interval has a request and a batch.
    let text = eventually(Duration::from_secs(60), "librdkafka gauges with a round trip and a batch", || async {
        let r = client
            .post(ingest.url("open"))
            .header("content-type", "application/json")
            .body("{\"stats\":true}")
            .send()
            .await
            .ok()?;
        assert_eq!(r.status().as_u16(), 200, "{:?}", r.text().await);
        let text = ingest.metrics().await;
        let rtt = by_label(&text, "hooklake_ingest_kafka_broker_rtt_avg_seconds", "broker")?;
        let batches = by_label(&text, "hooklake_ingest_kafka_batch_avg_messages", "topic")?;
        (rtt.values().any(|v| *v > 0.0) && batches.get(&topic).is_some_and(|n| *n >= 1.0)).then_some(text)
    })
    .await;

    metrics::assert_contract("ingest", &text, Coverage::All);
    let gauge = |name: &str| metrics::value(&text, name, &[]).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    assert_eq!(
        gauge("hooklake_ingest_kafka_queue_max_messages"),
        f64::from(ingest.config.ingest.producer_queue_messages)
    );
    assert!(gauge("hooklake_ingest_kafka_queue_max_bytes") >= 1_048_576.0, "{text}");
    let queued = gauge("hooklake_ingest_kafka_queue_messages");
    assert!((0.0..=gauge("hooklake_ingest_kafka_queue_max_messages")).contains(&queued), "{text}");
    assert!(gauge("hooklake_ingest_kafka_queue_bytes") >= 0.0, "{text}");

    // One broker (the suite's tansu), labelled by its node id, with a round trip a local
    // broker can have, and request counts that are counts.
    let rtt = by_label(&text, "hooklake_ingest_kafka_broker_rtt_avg_seconds", "broker").unwrap();
    let p99 = by_label(&text, "hooklake_ingest_kafka_broker_rtt_p99_seconds", "broker").unwrap();
    let outbuf = by_label(&text, "hooklake_ingest_kafka_broker_outbuf_requests", "broker").unwrap();
    let waitresp = by_label(&text, "hooklake_ingest_kafka_broker_waitresp_requests", "broker").unwrap();
    assert_eq!(rtt.len(), 1, "one broker: {text}");
    let (id, avg) = rtt.iter().next().unwrap();
    assert!(id.parse::<u32>().is_ok(), "broker label {id:?} is a node id");
    assert!(*avg > 0.0 && *avg < 5.0, "rtt {avg} s");
    assert!(p99[id] > 0.0 && p99[id] < 5.0, "rtt p99 {} s", p99[id]);
    assert!(outbuf[id] >= 0.0 && waitresp[id] >= 0.0, "{text}");
    // How long records waited for a request: set once records went out, and shorter than
    // the 8-s message timeout they would otherwise have hit.
    for name in
        ["hooklake_ingest_kafka_broker_queue_wait_avg_seconds", "hooklake_ingest_kafka_broker_queue_wait_p99_seconds"]
    {
        let wait = by_label(&text, name, "broker").unwrap();
        assert!(wait[id] >= 0.0 && wait[id] < 8.0, "{name} {} s", wait[id]);
    }

    // Batches of the source's topic: each at least one envelope (~100 bytes here).
    let bytes = by_label(&text, "hooklake_ingest_kafka_batch_avg_bytes", "topic").unwrap();
    assert!(bytes[&topic] >= 50.0, "batch bytes {} for {topic}", bytes[&topic]);
    ingest.stop().await;
}
