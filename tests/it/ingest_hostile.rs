//! Slow and hostile clients against a real ingest and broker: a stalled body is the
//! client's 408, one request at its deadline does not fail the others, stalled request
//! heads are closed, in-flight requests and body bytes are capped (slow senders hold only
//! the bytes they sent), clients stalling on every connection make room at the cap, bodies up to the default 1 MiB cap reach Kafka, one missing
//! topic fails only its own source, and SIGTERM ends the process in time even with a
//! client holding a half-sent request.

use std::{
    io::Write,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hooklake_tests::{
    broker::TestBroker,
    config::{Auth, Source, TestConfig},
    eventually,
    http::{self, RawConn},
    ingest::TestIngest,
    ingest_process::IngestProcess,
    kafka, metrics, python, unique,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::{Secrets, config, topic_prefix};

const JSON: (&str, &str) = ("content-type", "application/json");

/// The suite's configuration with fresh secrets.
fn suite_config(broker: &str, prefix: &str) -> TestConfig {
    config(broker, prefix, &Secrets::fresh())
}

/// A request head for `/webhook/open` announcing a body of `len` bytes.
fn head(len: usize) -> String {
    format!("POST /webhook/open HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {len}\r\n\r\n")
}

async fn ready(ingest: &TestIngest) {
    eventually(Duration::from_secs(30), "ingest ready", || async { (ingest.readyz().await == 200).then_some(()) })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_is_the_clients_408_within_the_deadline() {
    let broker = TestBroker::get();
    let ingest = TestIngest::start(&suite_config(&broker.bootstrap(), &topic_prefix()).to_toml()).await;
    ready(&ingest).await;
    let body = br#"{"type":"stalled","padding":"........"}"#;
    let mut conn = RawConn::connect(&ingest.addr).await;
    let started = Instant::now();
    conn.write(head(body.len()).as_bytes()).await;
    conn.write(&body[..10]).await;
    let resp = conn.read_response().await.expect("an answer");
    let took = started.elapsed();
    assert_eq!(resp.status, 408, "{}", String::from_utf8_lossy(&resp.body));
    assert_eq!(resp.json()["error"], "body_timeout");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(resp.header("retry-after").is_none());
    // response_deadline is 4 s; the answer leaves 250 ms before it.
    assert!(took > Duration::from_millis(3500) && took < Duration::from_secs(4), "answered after {took:?}");
    assert_eq!(ingest.rejected("open", "body_timeout").await, 1.0);
    assert_eq!(ingest.rejected("open", "unavailable").await, 0.0);
    ingest.stop().await;
}

/// Sends `body` in two parts, the last byte `at` after the head; returns the status.
async fn slow_post(addr: String, body: Vec<u8>, at: Duration) -> u16 {
    let mut conn = RawConn::connect(&addr).await;
    let started = tokio::time::Instant::now();
    conn.write(head(body.len()).as_bytes()).await;
    conn.write(&body[..body.len() - 1]).await;
    tokio::time::sleep_until(started + at).await;
    conn.write(&body[body.len() - 1..]).await;
    conn.read_response().await.map_or(0, |r| r.status)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_at_its_deadline_does_not_fail_the_others() {
    let broker = TestBroker::get();
    let prefix = topic_prefix();
    let ingest = TestIngest::start(&suite_config(&broker.bootstrap(), &prefix).to_toml()).await;
    ready(&ingest).await;
    let (sent, accepted) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let until = Instant::now() + Duration::from_secs(6);
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (url, sent, accepted) = (ingest.url("open"), sent.clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            let client = http::client();
            let mut n = 0;
            while Instant::now() < until {
                n += 1;
                let body = format!(r#"{{"type":"steady","worker":{worker},"n":{n}}}"#);
                sent.fetch_add(1, Ordering::SeqCst);
                let resp = client.post(&url).header(JSON.0, JSON.1).body(body).send().await.unwrap();
                if resp.status() == 200 {
                    accepted.fetch_add(1, Ordering::SeqCst);
                } else {
                    let status = resp.status();
                    eprintln!("steady request {worker}/{n}: {status} {}", resp.text().await.unwrap_or_default());
                }
            }
        }));
    }
    // Bodies completed around the 3.75 s request deadline, 2 ms apart: some leave their
    // produce next to no time (less than linger.ms), which then times out in ingest, not
    // in librdkafka; later ones get 408.
    let slow: Vec<_> = (0..20)
        .map(|i| {
            let body = format!(r#"{{"type":"slow","i":{i}}}"#).into_bytes();
            tokio::spawn(slow_post(ingest.addr.clone(), body, Duration::from_millis(3_730 + 2 * i)))
        })
        .collect();
    let mut slow_statuses = Vec::new();
    for s in slow {
        slow_statuses.push(s.await.unwrap());
    }
    for s in senders {
        s.await.unwrap();
    }
    let (sent, accepted) = (sent.load(Ordering::SeqCst), accepted.load(Ordering::SeqCst));
    eprintln!("steady requests: {accepted} of {sent} answered 200; slow requests: {slow_statuses:?}");
    assert!(sent > 20, "only {sent} steady requests were sent");
    assert_eq!(accepted, sent, "steady requests failed while slow ones reached their deadline");
    assert!(slow_statuses.iter().all(|s| [200, 408, 503].contains(s)), "{slow_statuses:?}");
    ingest.stop().await;
}

/// Reads from `stream` until the server closes it; the time that took from `since`.
async fn closed_after(mut stream: TcpStream, since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_to_end).await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_heads_and_idle_connections_are_closed_after_the_header_read_timeout() {
    const STALLED: usize = 300;
    let broker = TestBroker::get();
    let ingest = TestIngest::start(
        &suite_config(&broker.bootstrap(), &topic_prefix()).ingest("header_read_timeout", "2s").to_toml(),
    )
    .await;
    ready(&ingest).await;
    let opened = Instant::now();
    let mut stalled = Vec::new();
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(&ingest.addr).await.unwrap();
        s.write_all(b"POST /webhook/open HTTP/1.1\r\nhost: t\r\ncontent-ty").await.unwrap();
        stalled.push(s);
    }
    let connected = opened.elapsed();
    // A well-behaved client is served meanwhile.
    let resp = http::client().post(ingest.url("open")).header(JSON.0, JSON.1).body(r#"{"a":1}"#).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // An idle kept-alive connection is closed too.
    let mut idle = RawConn::connect(&ingest.addr).await;
    idle.post("/webhook/open", &[JSON], br#"{"a":2}"#).await;
    assert_eq!(idle.read_response().await.unwrap().status, 200);
    let idle_since = Instant::now();

    let closes: Vec<_> = stalled.into_iter().map(|s| closed_after(s, opened, Duration::from_secs(10))).collect();
    let closes = futures::future::join_all(closes).await;
    let open = closes.iter().filter(|c| c.is_none()).count();
    assert_eq!(open, 0, "{open} of {STALLED} stalled connections still open after 10 s");
    let last = closes.iter().flatten().max().unwrap();
    eprintln!("{STALLED} stalled connections opened in {connected:?}, the last closed {last:?} after the first opened");
    assert!(*last < connected + Duration::from_secs(4), "the last stalled connection closed after {last:?}");
    let idle_closed = tokio::time::timeout(Duration::from_secs(6), idle.read_response()).await;
    assert!(matches!(idle_closed, Ok(None)), "the idle connection is closed");
    let idle_for = idle_since.elapsed();
    eprintln!("an idle kept-alive connection was closed after {idle_for:?}");
    assert!(idle_for >= Duration::from_millis(1500), "{idle_for:?}");
    eventually(Duration::from_secs(5), "no open connections", || async {
        let text = ingest.metrics().await;
        (metrics::value(&text, "hooklake_ingest_open_connections", &[]) == Some(0.0)).then_some(())
    })
    .await;
    // Each close is counted: the stalled heads as such, the idle connections apart.
    let text = ingest.metrics().await;
    let closed = |reason| metrics::value(&text, "hooklake_ingest_connections_closed_total", &[("reason", reason)]);
    assert_eq!(closed("head_timeout"), Some(STALLED as f64));
    assert!(closed("idle_timeout") >= Some(1.0), "{:?}", closed("idle_timeout"));
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_beyond_max_in_flight_get_503_overloaded() {
    let broker = TestBroker::get();
    let ingest =
        TestIngest::start(&suite_config(&broker.bootstrap(), &topic_prefix()).ingest("max_in_flight", 2).to_toml())
            .await;
    ready(&ingest).await;
    let body = br#"{"type":"held"}"#;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = RawConn::connect(&ingest.addr).await;
        c.write(head(body.len()).as_bytes()).await;
        c.write(&body[..4]).await;
        held.push(c);
    }
    let resp = eventually(Duration::from_secs(3), "a request turned away", || async {
        let resp = http::client().post(ingest.url("open")).header(JSON.0, JSON.1).body(&body[..]).send().await.ok()?;
        (resp.status() == 503).then_some(resp)
    })
    .await;
    assert_eq!(resp.headers()["retry-after"], "3");
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["error"], "overloaded");
    assert!(ingest.rejected("open", "overloaded").await >= 1.0);
    for mut c in held {
        c.write(&body[4..]).await;
        assert_eq!(c.read_response().await.unwrap().status, 200);
    }
    let resp = http::client().post(ingest.url("open")).header(JSON.0, JSON.1).body(&body[..]).send().await.unwrap();
    assert_eq!(resp.status(), 200, "permits are given back");
    ingest.stop().await;
}

/// `hooklake_ingest_in_flight_requests` and `hooklake_ingest_in_flight_body_bytes`.
async fn in_flight(ingest: &TestIngest) -> (i64, i64) {
    let text = ingest.metrics().await;
    let gauge = |name| metrics::value(&text, name, &[]).unwrap_or(-1.0) as i64;
    (gauge("hooklake_ingest_in_flight_requests"), gauge("hooklake_ingest_in_flight_body_bytes"))
}

/// `ingest.max_in_flight_bytes` counts the body bytes that arrived, not requests: many
/// small requests are in flight at once, while a body that announces more than the room
/// left gets 503 `overloaded` before it is read, and a chunked body whose next bytes do not
/// fit gets it while it is read. Every request answered 200 is on the topic, once.
#[tokio::test(flavor = "multi_thread")]
async fn bodies_beyond_max_in_flight_bytes_get_503_overloaded_small_ones_fit() {
    const BUDGET: usize = 8192; // twice the suite's 4 KiB cap
    const SMALL: usize = 50;
    let (broker, prefix) = (TestBroker::get(), topic_prefix());
    let config = suite_config(&broker.bootstrap(), &prefix).ingest("max_in_flight_bytes", BUDGET as i64);
    let ingest = TestIngest::start(&config.to_toml()).await;
    ready(&ingest).await;
    let small = |n: usize| format!("{{\"n\":\"{n:0>90}\"}}").into_bytes();
    assert_eq!(small(0).len(), 98);

    // 50 small bodies, held with 90 of their 98 bytes sent: 50 requests, 4,500 bytes.
    let mut held = Vec::new();
    for n in 0..SMALL {
        let body = small(n);
        let mut c = RawConn::connect(&ingest.addr).await;
        c.write(head(body.len()).as_bytes()).await;
        c.write(&body[..90]).await;
        held.push((c, body));
    }
    eventually(Duration::from_secs(5), "50 requests in flight", || async {
        (in_flight(&ingest).await == (SMALL as i64, (SMALL * 90) as i64)).then_some(())
    })
    .await;
    // A full-size body does not fit in the 3,692 bytes left; it is turned away unread.
    let big = body_of(4096);
    let mut c = RawConn::connect(&ingest.addr).await;
    c.write(head(big.len()).as_bytes()).await;
    let resp = c.read_response().await.expect("an answer before the body is sent");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.json()["error"], "overloaded");
    assert_eq!(resp.json()["detail"], "too many body bytes in flight; retry later");
    assert_eq!(resp.header("retry-after"), Some("3"));
    assert_eq!(resp.header("connection"), Some("close"));
    // A small one still fits and goes through.
    let resp = http::client().post(ingest.url("open")).header(JSON.0, JSON.1).body(small(SMALL)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    for (mut c, body) in held.drain(..) {
        c.write(&body[90..]).await;
        assert_eq!(c.read_response().await.unwrap().status, 200);
    }
    eventually(Duration::from_secs(5), "everything given back", || async {
        (in_flight(&ingest).await == (0, 0)).then_some(())
    })
    .await;

    // Chunked bodies announce no length: they hold what they sent, here 4,095 bytes each.
    let full = body_of(4096);
    let mut chunked = Vec::new();
    for _ in 0..2 {
        let mut c = RawConn::connect(&ingest.addr).await;
        let mut first = b"POST /webhook/open HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nfff\r\n".to_vec();
        first.extend_from_slice(&full[..4095]);
        first.extend_from_slice(b"\r\n");
        c.write(&first).await;
        chunked.push(c);
    }
    eventually(Duration::from_secs(5), "two chunked bodies hold 8,190 bytes", || async {
        (in_flight(&ingest).await == (2, 8190)).then_some(())
    })
    .await;
    // 2 bytes are left: a small body is turned away unread, a third chunked one once its
    // first chunk arrives.
    let resp =
        http::client().post(ingest.url("open")).header(JSON.0, JSON.1).body(small(SMALL + 1)).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    let mut third = RawConn::connect(&ingest.addr).await;
    third.write(b"POST /webhook/open HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{\"n\":\r\n").await;
    let resp = third.read_response().await.expect("an answer once the chunk arrived");
    assert_eq!((resp.status, resp.json()["error"].as_str()), (503, Some("overloaded")));
    assert_eq!(resp.header("connection"), Some("close"));
    for mut c in chunked {
        c.write(b"1\r\n}\r\n0\r\n\r\n").await;
        assert_eq!(c.read_response().await.unwrap().status, 200);
    }
    assert_eq!(ingest.rejected("open", "overloaded").await, 3.0);
    let resp =
        http::client().post(ingest.url("open")).header(JSON.0, JSON.1).body(small(SMALL + 2)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "room is given back");
    // 50 held + 1 small + 2 chunked + 1 after: each answered 200 once on the topic.
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")), (SMALL + 4) as i64);
    ingest.stop().await;
}

/// Clients that announce bodies, compressed, of the whole cap or of unknown length
/// (chunked), with well-formed but wrong Standard Webhooks signatures, then send a few bytes
/// and stall: each holds the 4 bytes it sent, not what it announced, so webhooks signed
/// with the standardwebhooks library meanwhile are all answered 200 and on the topic, and
/// each slow client gets its 408 at the deadline. (Until 2026-12-07 room was reserved for
/// what a request announced, twice the cap for a compressed one: two such clients filled
/// this budget, and 128 the default 256 MiB (with the default 1 MiB cap), turning every
/// other request away with 503 `overloaded` for as long as they stalled.)
#[tokio::test(flavor = "multi_thread")]
async fn slow_senders_hold_only_the_bytes_they_sent() {
    const BUDGET: usize = 16384; // four times the suite's 4 KiB cap
    const SLOW: usize = 8;
    const SIGNED: usize = 20;
    let (broker, prefix, secrets) = (TestBroker::get(), topic_prefix(), Secrets::fresh());
    let config = config(&broker.bootstrap(), &prefix, &secrets).ingest("max_in_flight_bytes", BUDGET as i64);
    let ingest = TestIngest::start(&config.to_toml()).await;
    ready(&ingest).await;
    let now = hooklake_tests::unix_now();
    let forged = format!("v1,{}", STANDARD.encode([0u8; 32]));
    let mut slow = Vec::new();
    for n in 0..SLOW {
        let (framing, first): (&str, &[u8]) = if n % 2 == 0 {
            ("content-length: 4096", b"\x1f\x8b\x08\x00")
        } else {
            ("transfer-encoding: chunked", b"4\r\n\x1f\x8b\x08\x00\r\n")
        };
        let head = format!(
            "POST /webhook/std HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n\
             {framing}\r\nwebhook-id: slow-{n}\r\nwebhook-timestamp: {now}\r\nwebhook-signature: {forged}\r\n\r\n"
        );
        let mut c = RawConn::connect(&ingest.addr).await;
        c.write(head.as_bytes()).await;
        c.write(first).await;
        slow.push(c);
    }
    eventually(Duration::from_secs(5), "the slow senders in flight, holding 4 bytes each", || async {
        (in_flight(&ingest).await == (SLOW as i64, (SLOW * 4) as i64)).then_some(())
    })
    .await;

    let client = http::client();
    let signed = standard_webhooks(&secrets.whsec_new, "signed", SIGNED, now).await;
    let sends = signed.into_iter().map(|webhook| post_signed(&client, ingest.url("std"), webhook));
    let statuses = futures::future::join_all(sends).await;
    assert_eq!(statuses, vec!["200"; SIGNED], "signed webhooks while the slow senders stall");

    for mut c in slow {
        let resp = c.read_response().await.expect("the slow sender's answer");
        assert_eq!((resp.status, resp.json()["error"].as_str()), (408, Some("body_timeout")));
    }
    eventually(Duration::from_secs(5), "everything given back", || async {
        (in_flight(&ingest).await == (0, 0)).then_some(())
    })
    .await;
    assert_eq!(ingest.rejected("std", "overloaded").await, 0.0);
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.std")), SIGNED as i64);
    ingest.stop().await;
}

/// Clients that take every one of `max_connections` and stall: heads stalled half-way,
/// kept-alive connections left idle, and bodies announced with a well-formed but wrong
/// signature and sent a few bytes at a time. With `header_read_timeout` 30 s and the
/// response deadline 10 s they would keep every other client out for 10 s or more (as they
/// did until 2026-12-07); at the cap ingest holds the next connection and closes the stalled
/// and idle ones, and answers the slow bodies 408, after `at_cap_timeout` (1 s), so webhooks
/// signed by the standardwebhooks library, sent by clients that give up after 6 s, are all
/// answered 200 and on the topic once.
#[tokio::test(flavor = "multi_thread")]
async fn stalling_clients_at_the_cap_make_room_for_webhooks() {
    const CAP: usize = 8;
    const SIGNED: usize = 20;
    let (broker, prefix, secrets) = (TestBroker::get(), topic_prefix(), Secrets::fresh());
    let config = config(&broker.bootstrap(), &prefix, &secrets)
        .ingest("max_connections", CAP as i64)
        .ingest("header_read_timeout", "30s")
        .ingest("at_cap_timeout", "1s");
    let ingest = TestIngest::start(&config.to_toml()).await;
    ready(&ingest).await;
    let now = hooklake_tests::unix_now();
    let forged = format!("v1,{}", STANDARD.encode([0u8; 32]));
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(&ingest.addr).await.unwrap();
        s.write_all(b"POST /webhook/open HTTP/1.1\r\nhost: t\r\ncontent-ty").await.unwrap();
        stalled.push(s);
    }
    let mut idle = Vec::new();
    for n in 0..2 {
        let mut c = RawConn::connect(&ingest.addr).await;
        c.post("/webhook/open", &[JSON], format!(r#"{{"idle":{n}}}"#).as_bytes()).await;
        assert_eq!(c.read_response().await.unwrap().status, 200);
        idle.push(c);
    }
    let mut slow = Vec::new();
    for n in 0..3 {
        let head = format!(
            "POST /webhook/std HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 4000\r\n\
             webhook-id: slow-{n}\r\nwebhook-timestamp: {now}\r\nwebhook-signature: {forged}\r\n\r\n"
        );
        let mut c = RawConn::connect(&ingest.addr).await;
        c.write(head.as_bytes()).await;
        c.write(br#"{"type":"#).await;
        slow.push(c);
    }
    eventually(Duration::from_secs(5), "every connection taken, the slow bodies in flight", || async {
        let text = ingest.metrics().await;
        let open = metrics::value(&text, "hooklake_ingest_open_connections", &[]);
        (open == Some(CAP as f64) && in_flight(&ingest).await.0 == 3).then_some(())
    })
    .await;
    let cap = metrics::value(&ingest.metrics().await, "hooklake_ingest_max_connections", &[]);
    assert_eq!(cap, Some(CAP as f64), "the cap an alert divides by");

    let signed = standard_webhooks(&secrets.whsec_new, "cap", SIGNED, now).await;
    let impatient = reqwest::Client::builder().timeout(Duration::from_secs(6)).build().unwrap();
    let sent = Instant::now();
    let sends = signed.into_iter().map(|webhook| post_signed(&impatient, ingest.url("std"), webhook));
    let statuses = futures::future::join_all(sends).await;
    let took = sent.elapsed();
    eprintln!("{SIGNED} signed webhooks past {CAP} stalling clients answered in {took:?}");
    assert_eq!(statuses, vec!["200"; SIGNED], "signed webhooks while stalling clients held every connection");

    for mut c in slow {
        let resp = c.read_response().await.expect("the slow sender's answer");
        assert_eq!((resp.status, resp.json()["error"].as_str()), (408, Some("body_timeout")));
        let detail = resp.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("while every connection was taken"), "{detail}");
        assert_eq!(resp.header("connection"), Some("close"));
    }
    for s in stalled {
        assert!(closed_after(s, sent, Duration::from_secs(5)).await.is_some(), "a stalled head still open");
    }
    for mut c in idle {
        assert!(c.read_response().await.is_none(), "an idle connection got an answer");
    }
    let text = ingest.metrics().await;
    let closed = |reason| metrics::value(&text, "hooklake_ingest_connections_closed_total", &[("reason", reason)]);
    assert!(closed("at_cap") >= Some(5.0), "{:?}", closed("at_cap"));
    assert_eq!(closed("head_timeout"), Some(0.0));
    assert_eq!(ingest.rejected("std", "body_timeout").await, 3.0);
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.std")), SIGNED as i64);
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")), 2);
    ingest.stop().await;
}

/// `n` webhooks `{"type":"signed","n":<i>}` with ids `<prefix>-<i>`, signed by the
/// standardwebhooks library with `secret` at `now`: each body with its headers.
async fn standard_webhooks(
    secret: &str,
    prefix: &str,
    n: usize,
    now: u64,
) -> Vec<(String, serde_json::Map<String, serde_json::Value>)> {
    let payloads: Vec<String> = (0..n).map(|i| format!(r#"{{"type":"signed","n":{i}}}"#)).collect();
    let requests = payloads
        .iter()
        .enumerate()
        .map(|(i, payload)| {
            serde_json::json!({"lib": "standardwebhooks", "secret": secret, "msg_id": format!("{prefix}-{i}"),
                "timestamp": now, "payload": payload})
        })
        .collect();
    let signed = python::sign(&serde_json::Value::Array(requests)).await;
    payloads.into_iter().zip(signed).collect()
}

/// POSTs a webhook of [`standard_webhooks`] to `url`; its status, or the client's error.
async fn post_signed(
    client: &reqwest::Client,
    url: String,
    (payload, headers): (String, serde_json::Map<String, serde_json::Value>),
) -> String {
    let mut request = client.post(url).header(JSON.0, JSON.1).body(payload);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_str().unwrap());
    }
    match request.send().await {
        Ok(resp) => resp.status().as_u16().to_string(),
        Err(e) => format!("{e:?}"),
    }
}

/// A JSON body of exactly `len` bytes.
fn body_of(len: usize) -> Vec<u8> {
    let frame = br#"{"type":"big","pad":""}"#.len();
    let mut b = br#"{"type":"big","pad":""#.to_vec();
    b.resize(len - 2, b'x');
    b.extend_from_slice(br#""}"#);
    assert_eq!(b.len(), len);
    assert!(len > frame);
    b
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_up_to_the_default_cap_reach_kafka_gzip_too() {
    let broker = TestBroker::get();
    let prefix = topic_prefix();
    // The suite's 4 KiB cap removed: the default, 1 MiB.
    let text = suite_config(&broker.bootstrap(), &prefix).unset(&["ingest", "max_body_bytes"]).to_toml();
    let ingest = TestIngest::start(&text).await;
    ready(&ingest).await;
    let post = |body: Vec<u8>, gzip: bool| {
        let mut req = http::client().post(ingest.url("open")).header(JSON.0, JSON.1);
        if gzip {
            req = req.header("content-encoding", "gzip");
        }
        req.body(body).timeout(Duration::from_secs(30)).send()
    };
    for len in [1_000_000, 1 << 20] {
        let resp = post(body_of(len), false).await.unwrap();
        assert_eq!(resp.status(), 200, "{len} bytes: {}", resp.text().await.unwrap());
    }
    let resp = post(body_of((1 << 20) + 1), false).await.unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["error"], "body_too_large");
    // A large compressed body is inflated off the async workers and round-trips.
    let inflated = body_of(1_040_000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&inflated).unwrap();
    let resp = post(gz.finish().unwrap(), true).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let records = python::consume(&broker.bootstrap(), &format!("{prefix}.open"), 3, None).await;
    let mut lens: Vec<usize> = records.iter().map(|r| r["envelope"]["payload"].as_str().unwrap().len()).collect();
    lens.sort_unstable();
    assert_eq!(lens, [1_000_000, 1_040_000, 1 << 20]);
    let gzipped = records.iter().find(|r| r["envelope"]["payload"].as_str().unwrap().len() == 1_040_000).unwrap();
    assert_eq!(gzipped["envelope"]["payload"].as_str().unwrap().as_bytes(), &inflated[..]);
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")), 3);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_fails_only_its_own_source() {
    let broker = TestBroker::get();
    let (here, gone) = (unique("it.here"), unique("it.gone"));
    let text = TestConfig::new(&broker.bootstrap())
        .create_topics(false)
        .topic_partitions(1)
        .ingest("response_deadline", "4s")
        .ingest("retry_after", "3s")
        .source("here", Source::new(&here, Auth::none()))
        .source("gone", Source::new(&gone, Auth::none()))
        .to_toml();
    let config = hooklake_schemas::config::Config::from_toml(&text, &Default::default()).unwrap();
    hooklake_ingest::publisher::ensure_topics(&config.kafka, std::slice::from_ref(&here)).await.unwrap();
    let ingest = TestIngest::start(&text).await;
    eventually(Duration::from_secs(30), "/readyz 200 with one topic missing", || async {
        (ingest.readyz().await == 200).then_some(())
    })
    .await;
    let post =
        |source: &str| http::client().post(ingest.url(source)).header(JSON.0, JSON.1).body(r#"{"type":"x"}"#).send();
    let source_ready =
        |text: &str, source: &str| metrics::value(text, "hooklake_ingest_source_ready", &[("source", source)]);
    eventually(Duration::from_secs(15), "the missing topic seen", || async {
        let text = ingest.metrics().await;
        (source_ready(&text, "gone") == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(source_ready(&ingest.metrics().await, "here"), Some(1.0));
    assert_eq!(post("here").await.unwrap().status(), 200);
    let started = Instant::now();
    let resp = post("gone").await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1), "answered at once, not at the deadline");
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
    let answer: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(answer["error"], "topic_missing", "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains(&gone), "{answer}");
    assert_eq!(post("here").await.unwrap().status(), 200, "the other source is not affected");
    assert_eq!(ingest.rejected("gone", "topic_missing").await, 1.0);

    // The topic appears: its source serves again, without a restart.
    hooklake_ingest::publisher::ensure_topics(&config.kafka, std::slice::from_ref(&gone)).await.unwrap();
    eventually(Duration::from_secs(30), "the source whose topic came back accepts", || async {
        (post("gone").await.ok()?.status() == 200).then_some(())
    })
    .await;
    assert_eq!(source_ready(&ingest.metrics().await, "gone"), Some(1.0));
    assert_eq!(kafka::record_count(&broker.bootstrap(), &here), 2);
    assert_eq!(kafka::record_count(&broker.bootstrap(), &gone), 1);
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_process_in_time_despite_half_sent_requests() {
    let broker = TestBroker::get();
    let prefix = topic_prefix();
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hooklake.toml");
    std::fs::write(&config_path, suite_config(&broker.bootstrap(), &prefix).to_toml()).unwrap();
    let mut ingest = IngestProcess::start(&config_path, &dir.path().join("ingest.log")).await;
    ingest.wait_ready().await;
    let addr = format!("127.0.0.1:{}", ingest.port);
    // A client that stalls in its request head, and one that stalls in its body.
    let mut stalled_head = TcpStream::connect(&addr).await.unwrap();
    stalled_head.write_all(b"POST /webhook/open HTTP/1.1\r\nhost: t\r\n").await.unwrap();
    let mut stalled_body = RawConn::connect(&addr).await;
    stalled_body.write(head(100).as_bytes()).await;
    stalled_body.write(b"{\"type\":").await;
    // A request in flight at SIGTERM: its body completes after the signal.
    let body = br#"{"type":"in-flight"}"#;
    let mut in_flight = RawConn::connect(&addr).await;
    in_flight.write(head(body.len()).as_bytes()).await;
    in_flight.write(&body[..5]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    ingest.signal_term();
    tokio::time::sleep(Duration::from_millis(300)).await;
    in_flight.write(&body[5..]).await;
    let resp = in_flight.read_response().await.expect("the in-flight request is answered");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let stalled = stalled_body.read_response().await.map(|r| r.status);
    assert!(matches!(stalled, Some(408) | None), "the stalled body: {stalled:?}");

    let limit = Duration::from_secs(4 + 5);
    let exited = ingest.wait_exit(limit.saturating_sub(signalled.elapsed())).await;
    let took = signalled.elapsed();
    let status = exited.unwrap_or_else(|| panic!("ingest still running {took:?} after SIGTERM"));
    eprintln!("ingest exited {took:?} after SIGTERM with {status}");
    assert!(status.success(), "ingest exited with {status}");
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")), 1);
    let mut rest = Vec::new();
    let _ = stalled_head.read_to_end(&mut rest).await;
}
