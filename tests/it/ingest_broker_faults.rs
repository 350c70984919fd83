//! The broker goes away: ingest answers 503 + Retry-After within the deadline (never
//! hangs) and `/readyz` says so; the broker comes back: 200 again, no restart of ingest.

use std::time::{Duration, Instant};

use hooklake_tests::{broker::Broker, eventually, http, ingest::TestIngest, kafka, python, unique};
use rdkafka::producer::{FutureRecord, Producer};

use crate::common::{Secrets, config, topic_prefix};

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_means_503_within_the_deadline_and_recovery_without_restart() {
    let mut broker = Broker::start();
    let s = Secrets::fresh();
    let prefix = topic_prefix();
    let ingest = TestIngest::start(&config(&broker.bootstrap(), &prefix, &s).to_toml()).await;
    let send = |body: String| {
        http::client()
            .post(ingest.url("open"))
            .header("content-type", "application/json")
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
    };
    eventually(Duration::from_secs(30), "ingest ready", || async { (ingest.readyz().await == 200).then_some(()) })
        .await;
    assert_eq!(send(r#"{"n":0}"#.into()).await.unwrap().status(), 200);

    broker.kill();
    for n in 1..=3 {
        let started = Instant::now();
        let resp = send(format!("{{\"n\":{n}}}")).await.expect("an answer, not a hang");
        let took = started.elapsed();
        assert_eq!(resp.status(), 503, "broker down");
        assert_eq!(resp.headers()["retry-after"], "3");
        assert!(took < Duration::from_secs(4), "answered after {took:?}, the deadline is 4 s");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unavailable");
    }
    eventually(Duration::from_secs(15), "/readyz to turn 503", || async {
        (ingest.readyz().await == 503).then_some(())
    })
    .await;
    assert!(ingest.rejected("open", "unavailable").await >= 3.0);

    broker.restart();
    eventually(Duration::from_secs(60), "/readyz to turn 200 again", || async {
        (ingest.readyz().await == 200).then_some(())
    })
    .await;
    eventually(Duration::from_secs(60), "a 200 after the broker returned", || async {
        let resp = send(r#"{"n":"after"}"#.into()).await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
    // Whatever was acknowledged is on the topic: the first record and the one after recovery
    // (a 503 may still have been written late; it is never reported as accepted).
    let records = python::consume(&broker.bootstrap(), &format!("{prefix}.open"), 2, None).await;
    let payloads: Vec<&str> = records.iter().map(|r| r["envelope"]["payload"].as_str().unwrap()).collect();
    assert!(payloads.contains(&r#"{"n":0}"#) && payloads.contains(&r#"{"n":"after"}"#), "{payloads:?}");
    assert!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")) >= 2);
    ingest.stop().await;
}

/// `hooklake broker --advertise` puts a proxy in the clients' path: the broker's metadata
/// names the proxy, so a producer that bootstraps on the broker itself then talks to it
/// through tests/py/delay_proxy.py, and each acknowledgement comes the proxy's delay late.
/// The latency-injection measurements (BENCHMARKS.md) rely on both.
#[tokio::test(flavor = "multi_thread")]
async fn clients_of_a_broker_advertising_a_delay_proxy_go_through_it() {
    const DELAY: Duration = Duration::from_millis(200);
    let (broker, _proxy) = Broker::start_delayed("sqlite", DELAY).await;
    let topic = unique("advertised");
    kafka::create_topic(&broker.bootstrap(), &topic, 1).await;
    let producer = kafka::producer(&broker.bootstrap());
    let metadata = producer.client().fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let ports: Vec<i32> = metadata.brokers().iter().map(|b| b.port()).collect();
    let proxy_port = broker.advertised_port().expect("a proxy");
    assert_eq!(ports, [i32::from(proxy_port)], "the broker advertises the proxy");
    let send = |payload: &'static str| {
        producer.send(FutureRecord::to(&topic).key("k").payload(payload), Duration::from_secs(10))
    };
    send("first").await.expect("produced through the proxy");
    let started = Instant::now();
    send("second").await.expect("produced through the proxy");
    let took = started.elapsed();
    eprintln!("an acknowledgement through a {DELAY:?} proxy took {took:?}");
    assert!(took >= DELAY, "acknowledged in {took:?}, before the proxy's delay");
    assert_eq!(kafka::record_count(&broker.bootstrap(), &topic), 2);
}
