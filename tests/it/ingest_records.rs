//! Accepted webhooks: signed by the senders' own libraries, answered 200 with their
//! message_id, and on Kafka as envelopes that confluent-kafka + fastavro decode to exactly
//! what was sent.

use std::{collections::BTreeMap, io::Write};

use hmac::Mac;
use hooklake_tests::{broker::TestBroker, http, ingest::TestIngest, logs, python, unix_now};
use serde_json::{Value, json};

use crate::common::{Secrets, config, topic_prefix};

/// A request as sent, and what its record must hold.
struct Sent {
    source: &'static str,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
    payload: &'static str,
    event_type: Option<&'static str>,
    scheme: &'static str,
    message_id: Option<String>,
}

const PAYLOADS: [&str; 6] = [
    "{\"type\":\"meter.read\",\"kWh\":1.50,\"note\":\"ünïcødé ✓\"}",
    "{ \"eventType\" : \"account.updated\",\n  \"data\": {\"id\": 7, \"tags\": [\"a\", \"b\"]} }\n",
    "{\"type\":\"payment_intent.succeeded\",\"object\":\"event\",\"amount\":1999}",
    "{\"action\":\"opened\",\"number\":42,\"pull_request\":{\"title\":\"Fix \\\"quotes\\\"\"}}",
    "{\"event_type\":\"order.created\",\"order_id\":\"o-1\",\"total\":\"12.50\"}",
    "[1, 2.5e3, true, null, \"x\"]",
];

#[tokio::test(flavor = "multi_thread")]
async fn library_signed_webhooks_land_on_kafka_byte_for_byte() {
    let broker = TestBroker::get();
    let secrets = Secrets::fresh();
    let prefix = topic_prefix();
    let ingest = TestIngest::start(&config(&broker.bootstrap(), &prefix, &secrets).to_toml()).await;
    let now = unix_now();
    let svix_id = format!("msg_svix_{prefix}");
    let std_id = format!("msg_std_{prefix}");
    let gh_delivery = format!("gh-{prefix}");
    let signed = python::sign(&json!([
        {"lib": "svix", "secret": secrets.whsec_new, "msg_id": svix_id, "timestamp": now, "payload": PAYLOADS[0]},
        {"lib": "standardwebhooks", "secret": secrets.whsec_old, "msg_id": std_id, "timestamp": now, "payload": PAYLOADS[1]},
        {"lib": "stripe", "secret": secrets.stripe, "msg_id": "", "timestamp": now, "payload": PAYLOADS[2]},
        {"lib": "github", "secret": secrets.github, "msg_id": gh_delivery, "timestamp": now, "payload": PAYLOADS[3]},
    ]))
    .await;
    let as_map = |m: &serde_json::Map<String, Value>| {
        m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect::<BTreeMap<_, _>>()
    };
    let mut gh_headers = as_map(&signed[3]);
    gh_headers.insert("x-github-event".into(), "pull_request".into());
    let mut hmac_sig = hmac::SimpleHmac::<sha2::Sha256>::new_from_slice(secrets.hmac.as_bytes()).unwrap();
    hmac_sig.update(PAYLOADS[5].as_bytes());
    let sent = vec![
        Sent {
            source: "std",
            headers: as_map(&signed[0]),
            body: PAYLOADS[0].into(),
            payload: PAYLOADS[0],
            event_type: Some("meter.read"),
            scheme: "standard_webhooks",
            message_id: Some(svix_id),
        },
        Sent {
            source: "std",
            headers: as_map(&signed[1]),
            body: gzip(PAYLOADS[1]),
            payload: PAYLOADS[1],
            event_type: Some("account.updated"),
            scheme: "standard_webhooks",
            message_id: Some(std_id),
        },
        Sent {
            source: "stripe",
            headers: as_map(&signed[2]),
            body: PAYLOADS[2].into(),
            payload: PAYLOADS[2],
            event_type: Some("payment_intent.succeeded"),
            scheme: "stripe",
            message_id: None,
        },
        Sent {
            source: "gh",
            headers: gh_headers,
            body: PAYLOADS[3].into(),
            payload: PAYLOADS[3],
            event_type: None,
            scheme: "github",
            message_id: Some(gh_delivery),
        },
        Sent {
            source: "keys",
            headers: [("x-api-key".to_string(), secrets.api_key.clone())].into(),
            body: PAYLOADS[4].into(),
            payload: PAYLOADS[4],
            event_type: Some("order.created"),
            scheme: "api_key",
            message_id: None,
        },
        Sent {
            source: "hmac",
            headers: [("x-signature".to_string(), format!("sha256={}", hex::encode(hmac_sig.finalize().into_bytes())))]
                .into(),
            body: PAYLOADS[5].into(),
            payload: PAYLOADS[5],
            event_type: None,
            scheme: "hmac",
            message_id: None,
        },
    ];

    let before = micros_now();
    let mut ids = Vec::new();
    for s in &sent {
        let mut req = http::client()
            .post(ingest.url(s.source))
            .header("content-type", "application/json; charset=utf-8")
            .header("user-agent", "hooklake-it/1.0")
            .body(s.body.clone());
        for (k, v) in &s.headers {
            req = req.header(k, v);
        }
        if s.payload == PAYLOADS[1] {
            req = req.header("content-encoding", "gzip");
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{}: {}", s.source, resp.text().await.unwrap());
        let id = resp.json::<Value>().await.unwrap()["message_id"].as_str().unwrap().to_owned();
        match &s.message_id {
            Some(expected) => assert_eq!(&id, expected),
            None => assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 7, "generated ids are UUIDv7"),
        }
        ids.push(id);
    }
    let after = micros_now();

    for (s, id) in sent.iter().zip(&ids) {
        let topic = format!("{prefix}.{}", s.source);
        let expected_count = sent.iter().filter(|o| o.source == s.source).count();
        let records = python::consume(&broker.bootstrap(), &topic, expected_count, None).await;
        let r =
            records.iter().find(|r| r["key"] == json!(id)).unwrap_or_else(|| panic!("no record keyed {id} in {topic}"));
        let e = &r["envelope"];
        assert_eq!(r["framing"], "single-object");
        assert_eq!(e["message_id"], json!(id));
        assert_eq!(e["source"], s.source);
        assert_eq!(e["payload"].as_str().unwrap().as_bytes(), s.payload.as_bytes(), "payload byte for byte");
        assert_eq!(e["event_type"], json!(s.event_type));
        assert_eq!(e["verified_by"], s.scheme);
        let received = e["received_at"].as_i64().unwrap();
        assert!((before..=after).contains(&received), "received_at {received} not within the request");
        let headers = e["headers"].as_object().unwrap();
        assert_eq!(headers["user-agent"], "hooklake-it/1.0");
        assert_eq!(headers["content-type"], "application/json; charset=utf-8");
        for secret_header in [
            "x-api-key",
            "x-signature",
            "svix-signature",
            "webhook-signature",
            "stripe-signature",
            "x-hub-signature-256",
        ] {
            assert!(!headers.contains_key(secret_header), "{secret_header} must never be forwarded");
        }
        if s.source == "gh" {
            assert_eq!(headers["x-github-event"], "pull_request");
        }
        // `ingest.record_headers` is off by default: the envelope carries these facts
        // (confluent.rs checks the headers when it is on).
        assert_eq!(r["headers"], json!({}), "no record headers by default");
    }
    logs::assert_absent(&secrets.all_forms().iter().map(String::as_str).collect::<Vec<_>>());
    ingest.stop().await;
}

fn gzip(s: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn micros_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}
