//! Every rejection of the HTTP contract: the status of docs/design.md, a reason metric, and no
//! Kafka record; rotated secrets both accepted; the connection usable after a 413.

use std::io::Write;

use hooklake_tests::{
    broker::TestBroker,
    http::{self, RawConn},
    ingest::TestIngest,
    kafka, logs, python, unix_now,
};
use serde_json::json;

use crate::common::{MAX_BODY, Secrets, config, std_auth, topic_prefix};

type Headers = Vec<(&'static str, String)>;
/// (what, headers, body, expected status, expected error code)
type Case = (&'static str, Headers, Vec<u8>, u16, &'static str);
/// (what, source, headers, body, expected status, expected error code)
type SourceCase = (&'static str, &'static str, Headers, Vec<u8>, u16, &'static str);

const BODY: &str = r#"{"type":"meter.read","kWh":3}"#;

/// The answer to one request, as status and `error` code.
async fn post(ingest: &TestIngest, source: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, String) {
    let mut req = http::client().post(ingest.url(source)).body(body);
    if !headers.iter().any(|(k, _)| *k == "content-type") {
        req = req.header("content-type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap();
    let code = body.get("error").and_then(|e| e.as_str()).unwrap_or("ok").to_owned();
    (status, code)
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_webhooks_rejections_and_rotation() {
    let broker = TestBroker::get();
    let s = Secrets::fresh();
    let prefix = topic_prefix();
    let ingest = TestIngest::start(&config(&broker.bootstrap(), &prefix, &s).to_toml()).await;
    let now = unix_now();
    let other = "whsec_d3JvbmctYnV0LXdlbGwtZm9ybWVk";
    let sign = |secret: &str, id: &str, ts: u64| json!({"lib": "standardwebhooks", "secret": secret, "msg_id": id, "timestamp": ts, "payload": BODY});
    let signed = python::sign(&json!([
        sign(&s.whsec_new, "m-new", now),
        sign(&s.whsec_old, "m-old", now),
        sign(other, "m-wrong", now),
        sign(&s.whsec_new, "m-past", now - 301),
    ]))
    .await;
    // Timestamps have 1 s granularity and the request reaches ingest a moment after
    // signing, so the future case is signed last with +302: still at least tolerance+1 s
    // ahead when checked. (The exact ±300 / ±301 edges are pinned by the unit tests.)
    let future = python::sign(&json!([sign(&s.whsec_new, "m-future", unix_now() + 302)])).await;
    let signed = [signed, future].concat();
    let h = |i: usize| -> Headers {
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .into_iter()
            .map(|k| (k, signed[i][k].as_str().unwrap().to_owned()))
            .collect()
    };
    let with = |i: usize, key: &str, value: &str| -> Headers {
        h(i).into_iter().map(|(k, v)| if k == key { (k, value.to_owned()) } else { (k, v) }).collect()
    };
    let good_sig = h(0)[2].1.clone();
    let mut changed = BODY.as_bytes().to_vec();
    changed[10] ^= 0x01;

    let cases: Vec<Case> = vec![
        ("new secret", h(0), BODY.into(), 200, "ok"),
        ("old secret while still configured", h(1), BODY.into(), 200, "ok"),
        ("wrong secret", h(2), BODY.into(), 403, "invalid_credentials"),
        ("empty signature", with(0, "webhook-signature", "v1,"), BODY.into(), 403, "invalid_credentials"),
        (
            "truncated signature",
            with(0, "webhook-signature", &good_sig[..good_sig.len() - 6]),
            BODY.into(),
            403,
            "invalid_credentials",
        ),
        ("body changed by one byte", h(0), changed, 403, "invalid_credentials"),
        ("timestamp tolerance+1 s in the past", h(3), BODY.into(), 403, "invalid_credentials"),
        ("timestamp tolerance+1 s in the future", h(4), BODY.into(), 403, "invalid_credentials"),
        (
            "no webhook-id",
            h(0).into_iter().filter(|(k, _)| *k != "webhook-id").collect(),
            BODY.into(),
            401,
            "missing_credentials",
        ),
        (
            "no webhook-timestamp",
            h(0).into_iter().filter(|(k, _)| *k != "webhook-timestamp").collect(),
            BODY.into(),
            401,
            "missing_credentials",
        ),
        (
            "no webhook-signature",
            h(0).into_iter().filter(|(k, _)| *k != "webhook-signature").collect(),
            BODY.into(),
            401,
            "missing_credentials",
        ),
        (
            "wrong content type",
            [h(0), vec![("content-type", "text/plain".into())]].concat(),
            BODY.into(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (what, headers, body, status, code) in &cases {
        assert_eq!(post(&ingest, "std", headers, body.clone()).await, (*status, code.to_string()), "{what}");
    }

    let count = |code: &str| cases.iter().filter(|c| c.4 == code).count() as f64;
    assert_eq!(ingest.rejected("std", "invalid_credentials").await, count("invalid_credentials"));
    assert_eq!(ingest.rejected("std", "missing_credentials").await, count("missing_credentials"));
    assert_eq!(ingest.rejected("std", "unsupported_media_type").await, 1.0);
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.std")), 2, "only the two accepted requests");

    // A secret removed from the configuration no longer verifies.
    let rotated =
        config(&broker.bootstrap(), &prefix, &s).with_source("std", |src| src.auth(std_auth(&[&s.whsec_new])));
    let ingest2 = TestIngest::start(&rotated.to_toml()).await;
    assert_eq!(
        post(&ingest2, "std", &h(1), BODY.into()).await,
        (403, "invalid_credentials".into()),
        "old secret after rotation"
    );
    assert_eq!(post(&ingest2, "std", &h(0), BODY.into()).await.0, 200);
    logs::assert_absent(&s.all_forms().iter().map(String::as_str).collect::<Vec<_>>());
    ingest2.stop().await;
    ingest.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_sources_types_json_and_sizes() {
    let broker = TestBroker::get();
    let s = Secrets::fresh();
    let prefix = topic_prefix();
    let ingest = TestIngest::start(&config(&broker.bootstrap(), &prefix, &s).to_toml()).await;
    let key = |k: &str| vec![("x-api-key", k.to_owned())];
    let good = key(&s.api_key);
    let over_cap = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BODY + 1 - 10));
    assert_eq!(over_cap.len(), MAX_BODY + 1);
    let at_cap = format!("{{\"pad\":\"{}\"}}", "x".repeat(MAX_BODY - 10));

    let cases: Vec<SourceCase> = vec![
        ("valid key", "keys", good.clone(), BODY.into(), 200, "ok"),
        ("second configured key", "keys", key(&format!("second-key-{prefix}")), BODY.into(), 200, "ok"),
        ("body exactly at the cap", "keys", good.clone(), at_cap.into(), 200, "ok"),
        ("wrong key", "keys", key("not-the-key"), BODY.into(), 403, "invalid_credentials"),
        ("missing key", "keys", vec![], BODY.into(), 401, "missing_credentials"),
        ("unknown source", "nope", good.clone(), BODY.into(), 404, "unknown_source"),
        (
            "no content type",
            "keys",
            [good.clone(), vec![("content-type", "".into())]].concat(),
            BODY.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "form content type",
            "keys",
            [good.clone(), vec![("content-type", "application/x-www-form-urlencoded".into())]].concat(),
            BODY.into(),
            415,
            "unsupported_media_type",
        ),
        (
            "unsupported encoding",
            "keys",
            [good.clone(), vec![("content-encoding", "br".into())]].concat(),
            BODY.into(),
            415,
            "unsupported_media_type",
        ),
        ("malformed JSON", "keys", good.clone(), b"{\"type\": ".to_vec(), 400, "malformed_json"),
        ("not UTF-8", "keys", good.clone(), b"{\"a\":\"\xff\xfe\"}".to_vec(), 400, "malformed_json"),
        ("two JSON values", "keys", good.clone(), b"{} {}".to_vec(), 400, "malformed_json"),
        (
            "nested deeper than serde_json's limit",
            "keys",
            good.clone(),
            format!("{}{}", "[".repeat(300), "]".repeat(300)).into(),
            400,
            "malformed_json",
        ),
        ("body of cap+1 bytes", "keys", good.clone(), over_cap.clone().into(), 413, "body_too_large"),
        (
            "gzip bomb",
            "keys",
            [good.clone(), vec![("content-encoding", "gzip".into())]].concat(),
            gzip_bomb(),
            413,
            "body_too_large",
        ),
    ];
    for (what, source, headers, body, status, code) in &cases {
        assert_eq!(post(&ingest, source, headers, body.clone()).await, (*status, code.to_string()), "{what}");
    }
    for code in
        ["invalid_credentials", "missing_credentials", "unsupported_media_type", "malformed_json", "body_too_large"]
    {
        let expected = cases.iter().filter(|c| c.1 == "keys" && c.5 == code).count() as f64;
        assert_eq!(ingest.rejected("keys", code).await, expected, "{code}");
    }
    assert_eq!(ingest.rejected("_unknown", "unknown_source").await, 1.0);
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.keys")), 3, "only the accepted requests");

    // The connection stays usable after a 413 for a body of cap+1 bytes.
    let mut conn = RawConn::connect(&ingest.addr).await;
    let headers = [("content-type", "application/json"), ("x-api-key", s.api_key.as_str())];
    conn.post("/webhook/keys", &headers, over_cap.as_bytes()).await;
    let first = conn.read_response().await.expect("a 413 answer");
    assert_eq!(first.status, 413);
    assert_eq!(first.json()["error"], "body_too_large");
    assert_ne!(first.header("connection"), Some("close"));
    conn.post("/webhook/keys", &headers, BODY.as_bytes()).await;
    assert_eq!(conn.read_response().await.expect("the same connection answers again").status, 200);

    // A chunked body over the cap (no Content-Length to trust) is refused while streaming.
    let mut conn = RawConn::connect(&ingest.addr).await;
    let head = format!(
        "POST /webhook/keys HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nx-api-key: {}\r\ntransfer-encoding: chunked\r\n\r\n",
        s.api_key
    );
    conn.write(head.as_bytes()).await;
    conn.write(b"1\r\n[\r\n").await;
    for _ in 0..(MAX_BODY / 1000 + 1) {
        conn.write(format!("3e8\r\n{}\r\n", "1".repeat(1000)).as_bytes()).await;
    }
    conn.write(b"1\r\n]\r\n0\r\n\r\n").await;
    let resp = conn.read_response().await.expect("an answer");
    assert_eq!((resp.status, resp.json()["error"].clone()), (413, json!("body_too_large")));
    conn.post("/webhook/keys", &headers, BODY.as_bytes()).await;
    assert_eq!(conn.read_response().await.expect("still usable").status, 200);

    // A Content-Length over the cap is refused before the body is read.
    let mut conn = RawConn::connect(&ingest.addr).await;
    conn.write(format!("POST /webhook/keys HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\nx-api-key: {}\r\ncontent-length: 99999999\r\nexpect: 100-continue\r\n\r\n", s.api_key).as_bytes()).await;
    assert_eq!(conn.read_response().await.expect("an answer").status, 413);

    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.keys")), 5);
    logs::assert_absent(&s.all_forms().iter().map(String::as_str).collect::<Vec<_>>());
    ingest.stop().await;
}

/// 2 MiB of JSON whitespace that gzips to about 2 KiB: the compressed body fits the 4 KiB
/// cap, the decompressed one is 500 times over it.
fn gzip_bomb() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b"[").unwrap();
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..2 {
        e.write_all(&chunk).unwrap();
    }
    e.write_all(b"]").unwrap();
    let bomb = e.finish().unwrap();
    assert!(bomb.len() < MAX_BODY, "the bomb itself ({} bytes) fits the cap", bomb.len());
    bomb
}
