//! The broker goes away: ingest answers 503 + Retry-After within the deadline (never
//! hangs) and `/readyz` says so; the broker comes back: 200 again, no restart of ingest.

use std::time::{Duration, Instant};

use hooklake_tests::{
    broker::Broker,
    eventually, http,
    ingest::TestIngest,
    kafka, python,
    traffic::{Load, Target, Traffic},
    unique,
};
use rdkafka::producer::{FutureRecord, Producer};

use crate::common::{Secrets, config, topic_prefix};

#[tokio::test(flavor = "multi_thread")]
async fn broker_down_means_503_within_the_deadline_and_recovery_without_restart() {
    let mut broker = Broker::start();
    let s = Secrets::fresh();
    let prefix = topic_prefix();
    let ingest = TestIngest::start(&config(&broker.bootstrap(), &prefix, &s).to_toml()).await;
    eventually(Duration::from_secs(30), "ingest ready", || async { (ingest.readyz().await == 200).then_some(()) })
        .await;
    assert_eq!(post_open(&ingest, r#"{"n":0}"#).await.unwrap().status(), 200);

    broker.kill();
    for n in 1..=3 {
        let resp = post_open_refused(&ingest, &format!("{{\"n\":{n}}}"), Duration::from_secs(4)).await;
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unavailable");
    }
    eventually(Duration::from_secs(15), "/readyz to turn 503", || async {
        (ingest.readyz().await == 503).then_some(())
    })
    .await;
    assert!(ingest.rejected("open", "unavailable").await >= 3.0);

    broker.restart();
    ready_and_accepting(&ingest, r#"{"n":"after"}"#).await;
    // Whatever was acknowledged is on the topic: the first record and the one after recovery
    // (a 503 may still have been written late; it is never reported as accepted).
    let records = python::consume(&broker.bootstrap(), &format!("{prefix}.open"), 2, None).await;
    let payloads: Vec<&str> = records.iter().map(|r| r["envelope"]["payload"].as_str().unwrap()).collect();
    assert!(payloads.contains(&r#"{"n":0}"#) && payloads.contains(&r#"{"n":"after"}"#), "{payloads:?}");
    assert!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")) >= 2);
    ingest.stop().await;
}

/// The broker is down when ingest starts, and the source topics do not exist yet. Both
/// ports serve at once: `/livez` 200, `/readyz` 503, a webhook 503 within the deadline
/// (ingest does not first wait for the broker to create topics). Once the broker is up,
/// ingest creates the source topics and their dead-letter topics and answers 200, without
/// a restart.
#[tokio::test(flavor = "multi_thread")]
async fn started_while_the_broker_is_down_it_serves_at_once_and_creates_the_topics_later() {
    let mut broker = Broker::start();
    broker.kill();
    let s = Secrets::fresh();
    let prefix = topic_prefix();
    let ingest = TestIngest::start(&config(&broker.bootstrap(), &prefix, &s).to_toml()).await;

    let started = Instant::now();
    let livez = http::client().get(format!("{}/livez", ingest.admin)).timeout(Duration::from_secs(30)).send().await;
    let took = started.elapsed();
    assert_eq!(livez.expect("/livez answers").status(), 200);
    assert!(took < Duration::from_secs(2), "/livez answered after {took:?}, with the broker down");
    assert_eq!(ingest.readyz().await, 503, "not ready without a broker");

    post_open_refused(&ingest, r#"{"n":"down"}"#, Duration::from_secs(5)).await;

    broker.restart();
    ready_and_accepting(&ingest, r#"{"n":"up"}"#).await;
    let bootstrap = broker.bootstrap();
    for topic in [format!("{prefix}.open"), format!("{prefix}.open.dlq"), format!("{prefix}.keys.dlq")] {
        let partitions = kafka::try_high_watermarks(&bootstrap, &topic).unwrap_or_else(|e| panic!("{topic}: {e}"));
        assert_eq!(partitions.len(), 2, "{topic} created with kafka.topic_partitions");
    }
    // The record answered 503 may still have been written once the broker was back (it is
    // never reported as accepted); the one answered 200 is there.
    let topic = format!("{prefix}.open");
    let count = kafka::record_count(&bootstrap, &topic);
    let records = python::consume(&bootstrap, &topic, count as usize, None).await;
    let payloads: Vec<&str> = records.iter().map(|r| r["envelope"]["payload"].as_str().unwrap()).collect();
    assert!(payloads.contains(&r#"{"n":"up"}"#), "{payloads:?}");
    ingest.stop().await;
}

/// POSTs `body` to `open` while the broker is down: the answer is 503 with `Retry-After: 3`,
/// within `within` (the deadline is 4 s).
async fn post_open_refused(ingest: &TestIngest, body: &str, within: Duration) -> reqwest::Response {
    let started = Instant::now();
    let resp = post_open(ingest, body).await.expect("an answer, not a hang");
    let took = started.elapsed();
    assert_eq!(resp.status(), 503, "broker down");
    assert_eq!(resp.headers()["retry-after"], "3");
    assert!(took < within, "answered after {took:?}, the deadline is 4 s");
    resp
}

/// Once the broker is back, within 60 s each: `/readyz` turns 200, then `body` posted to
/// `open` is answered 200 (without a restart of ingest).
async fn ready_and_accepting(ingest: &TestIngest, body: &str) {
    eventually(Duration::from_secs(60), "/readyz to turn 200", || async {
        (ingest.readyz().await == 200).then_some(())
    })
    .await;
    eventually(Duration::from_secs(60), &format!("a 200 for {body} once the broker is up"), || async {
        let resp = post_open(ingest, body).await.ok()?;
        (resp.status() == 200).then_some(())
    })
    .await;
}

/// POSTs the JSON `body` to ingest's `open` source (no auth), waiting up to 30 s.
async fn post_open(ingest: &TestIngest, body: &str) -> reqwest::Result<reqwest::Response> {
    http::client()
        .post(ingest.url("open"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .timeout(Duration::from_secs(30))
        .send()
        .await
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

/// Behind a broker that answers late (acks=all across zones), ingest's idempotent producer
/// keeps several batches of one partition in flight, up to the broker's de-duplication
/// window of 5, not one: librdkafka 2.12.1 counted that window in messages, so a batch of
/// 5 records held the partition until its answer came back (vendor/README.md). The proxy
/// reads the Kafka frames and reports the most Produce requests it saw in flight on one
/// connection. Every webhook answered 200 is on the topic exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_slow_broker_batches_of_one_partition_are_pipelined_and_none_is_lost() {
    const WEBHOOKS: usize = 40;
    // 40 webhooks at once are 8 batches of the one partition. The deadline leaves room for
    // 8 round trips one after the other, so that a producer that does not pipeline fails
    // the count below, not the answers.
    let slow_link = SlowLink::start(Duration::from_millis(500), 1).await;
    slow_link.send_at_once(WEBHOOKS).await;
    let in_flight = slow_link.broker.proxy_stats().expect("the proxy counts Produce requests").max_produce_in_flight;
    eprintln!("at most {in_flight} Produce requests in flight on one connection");
    assert!(
        (2..=5).contains(&in_flight),
        "at most {in_flight} Produce requests in flight on the producer's connection: between 2 and \
         the broker's de-duplication window of 5 expected"
    );
    slow_link.each_sent_is_on_the_topic_once(WEBHOOKS).await;
}

/// The partitions of one broker do not share one window: librdkafka sends a partition's
/// batch per Produce request, and with idempotence allowed 5 requests in flight per
/// *connection*, so 3 partitions led by one broker had 5 between them. Each partition now
/// has its own window of 5, and the connection allows 5 for each (vendor/README.md, third
/// change). 90 webhooks at once on 3 partitions, in batches of at most 5 records, keep
/// more than 5 requests in flight on the producer's one connection, never more than 15,
/// and every webhook is on the topic once.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_slow_broker_each_partition_has_its_own_window_on_the_shared_connection() {
    const WEBHOOKS: usize = 90;
    let slow_link = SlowLink::start(Duration::from_millis(500), 3).await;
    slow_link.send_at_once(WEBHOOKS).await;
    let in_flight = slow_link.broker.proxy_stats().expect("the proxy counts Produce requests").max_produce_in_flight;
    eprintln!("at most {in_flight} Produce requests in flight on one connection, 3 partitions");
    assert!(
        (6..=15).contains(&in_flight),
        "at most {in_flight} Produce requests in flight on the producer's connection to the leader of 3 \
         partitions: more than one partition's window of 5 expected, and at most 5 for each"
    );
    slow_link.each_sent_is_on_the_topic_once(WEBHOOKS).await;
}

/// `linger.while.in.flight` (on by default; vendor/README.md, fourth change): a partition
/// with no batch in flight sends a webhook at once, so `linger.ms` delays only records
/// that arrive while an earlier batch awaits its answer. With `linger.ms` at 2 s and acks
/// 300 ms late, webhooks to an idle partition, one alone and then 10 at once, are
/// answered sooner than 2 s; with the property off, each waits out the linger.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_to_an_idle_partition_do_not_wait_for_linger_ms() {
    const LINGER: Duration = Duration::from_secs(2);
    let (broker, _proxy) = Broker::start_delayed("sqlite", Duration::from_millis(300)).await;
    for (while_in_flight, held) in [(true, false), (false, true)] {
        let (secrets, prefix) = (Secrets::fresh(), topic_prefix());
        let config = config(&broker.bootstrap(), &prefix, &secrets)
            .topic_partitions(1)
            .ingest("response_deadline", "30s")
            .kafka_property("linger.ms", &LINGER.as_millis().to_string())
            .kafka_property("linger.while.in.flight", &while_in_flight.to_string());
        let ingest = TestIngest::start(&config.to_toml()).await;
        eventually(Duration::from_secs(60), "ingest ready", || async { (ingest.readyz().await == 200).then_some(()) })
            .await;
        let client = http::client();
        let send = |n: usize| {
            let request = client
                .post(ingest.url("open"))
                .header("content-type", "application/json")
                .body(format!("{{\"n\":{n}}}"))
                .timeout(Duration::from_secs(60))
                .send();
            async move {
                let started = Instant::now();
                let answer = request.await.expect("an answer");
                assert_eq!(answer.status(), 200);
                started.elapsed()
            }
        };
        let alone = send(0).await;
        let together = futures::future::join_all((1..=10).map(send)).await;
        let slowest = together.iter().copied().max().unwrap();
        eprintln!("linger.while.in.flight={while_in_flight}: one webhook in {alone:?}, 10 at once in {slowest:?}");
        assert_eq!(alone >= LINGER, held, "one webhook answered in {alone:?} (linger.ms {LINGER:?})");
        assert_eq!(slowest >= LINGER, held, "10 webhooks at once answered in at most {slowest:?}");
        assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")), 11);
        ingest.stop().await;
    }
}

/// The idempotent producer has several batches of each of 3 partitions in flight behind a
/// slow link, on one connection, and loses their answers twice: the link is cut (the
/// broker has written the batches; the answers the proxy still held are dropped), then
/// the broker is killed (SIGKILL) and restarted on its data 2 s later. librdkafka resends every unanswered
/// batch, in order, with the same sequence numbers, and the broker's de-duplication window
/// (5 batches) must drop the ones it already has. 20 senders keep sending throughout:
/// every webhook answered 200 is on the topic exactly once, and nothing is on it twice.
#[tokio::test(flavor = "multi_thread")]
async fn pipelined_batches_whose_answers_are_lost_are_on_the_topic_once_each() {
    const CLIENTS: usize = 20;
    let SlowLink { mut broker, proxy, ingest, prefix, secrets } = SlowLink::start(Duration::from_millis(300), 3).await;
    let target = Target::new(&ingest.url("keys"), "x-api-key", &secrets.api_key, "pipelined");
    let traffic = Traffic::start(&target, Load { clients: CLIENTS, pause: Duration::ZERO });

    eventually(Duration::from_secs(30), "several Produce requests in flight", || async {
        (broker.proxy_stats()?.max_produce_in_flight >= 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    Broker::cut_proxy_connections(&proxy);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| broker.kill());
    tokio::time::sleep(Duration::from_secs(2)).await;
    tokio::task::block_in_place(|| broker.restart());
    eventually(Duration::from_secs(60), "ingest ready again", || async {
        (ingest.readyz().await == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let report = traffic.stop().await;
    let counted = broker.proxy_stats().expect("the proxy counts Produce requests");
    eprintln!("answers {:?}; {counted:?}", report.answers);
    assert!(report.accepted.len() > CLIENTS * 4, "too few webhooks accepted to test anything: {:?}", report.answers);
    assert!(counted.produce_cut_off >= 2, "several Produce requests should have lost their answers: {counted:?}");

    let topic = format!("{prefix}.keys");
    let on_topic = kafka::record_count(&broker.bootstrap(), &topic);
    let records = python::consume(&broker.bootstrap(), &topic, usize::try_from(on_topic).unwrap(), None).await;
    let mut copies = std::collections::HashMap::<String, usize>::new();
    for record in &records {
        *copies.entry(record["envelope"]["message_id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    let twice: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "on the topic more than once: {twice:?}");
    let missing: Vec<_> = report.accepted.iter().filter(|id| !copies.contains_key(*id)).collect();
    assert!(missing.is_empty(), "answered 200 and not on the topic: {missing:?}");
    ingest.stop().await;
}

/// A broker behind the delay proxy (answers `delay` late, Produce requests counted), and
/// ingest in front of it, ready, with every source on a topic of `partitions` partitions
/// (all led by the one broker) and batches of at most 5 records, so that a few webhooks at
/// once make several batches of each partition. The response deadline (30 s) outlasts
/// many round trips.
struct SlowLink {
    broker: Broker,
    proxy: tokio::process::Child,
    ingest: TestIngest,
    prefix: String,
    secrets: Secrets,
}

impl SlowLink {
    async fn start(delay: Duration, partitions: u32) -> Self {
        let (broker, proxy) = Broker::start_delayed_counting("sqlite", delay).await;
        let (secrets, prefix) = (Secrets::fresh(), topic_prefix());
        // `keys` takes the message id from the request, as `Traffic` sends it.
        let config = config(&broker.bootstrap(), &prefix, &secrets)
            .with_source("keys", |s| s.id_header("x-request-id"))
            .topic_partitions(partitions)
            .ingest("response_deadline", "30s")
            .kafka_property("batch.num.messages", "5");
        let ingest = TestIngest::start(&config.to_toml()).await;
        eventually(Duration::from_secs(60), "ingest ready", || async { (ingest.readyz().await == 200).then_some(()) })
            .await;
        Self { broker, proxy, ingest, prefix, secrets }
    }

    /// Sends `webhooks` webhooks to the `open` source at once (`{"n":0}`, `{"n":1}`, …);
    /// each must be answered 200.
    async fn send_at_once(&self, webhooks: usize) {
        let client = http::client();
        let answers = futures::future::join_all((0..webhooks).map(|n| {
            client
                .post(self.ingest.url("open"))
                .header("content-type", "application/json")
                .body(format!("{{\"n\":{n}}}"))
                .timeout(Duration::from_secs(60))
                .send()
        }))
        .await;
        for answer in answers {
            let answer = answer.expect("an answer");
            assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
        }
    }

    /// Each of the `webhooks` sent by [`SlowLink::send_at_once`] is on the `open` topic
    /// exactly once; then stops ingest.
    async fn each_sent_is_on_the_topic_once(self, webhooks: usize) {
        let (bootstrap, topic) = (self.broker.bootstrap(), format!("{}.open", self.prefix));
        assert_eq!(kafka::record_count(&bootstrap, &topic), webhooks as i64, "each webhook once");
        let records = python::consume(&bootstrap, &topic, webhooks, None).await;
        let mut payloads: Vec<&str> = records.iter().map(|r| r["envelope"]["payload"].as_str().unwrap()).collect();
        payloads.sort_unstable();
        let mut sent: Vec<String> = (0..webhooks).map(|n| format!("{{\"n\":{n}}}")).collect();
        sent.sort_unstable();
        assert_eq!(payloads, sent);
        self.ingest.stop().await;
    }
}
