//! With `[schema_registry]`, records use the Confluent wire format under subject
//! `<topic>-value`: confluent-kafka's own AvroDeserializer reads them, and so does
//! hooklake's decoder (what the sink uses).

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use hooklake_schemas::{ConfluentCodec, SchemaError, config::SchemaRegistryConfig};
use hooklake_tests::{broker::TestBroker, eventually, free_port, http, ingest::TestIngest, python, tools};
use rdkafka::{
    ClientConfig, Message, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};

use crate::common::{Secrets, config, topic_prefix};

/// tests/py/registry.py on a free port (see its docstring for why it stands in).
struct Registry {
    url: String,
    child: Child,
}

impl Registry {
    async fn start() -> Self {
        let port = free_port();
        let child = Command::new(tools::python())
            .arg(tools::py_script("registry.py"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        eventually(Duration::from_secs(20), "the registry", || async {
            http::client().get(format!("{url}/subjects")).send().await.ok().map(drop)
        })
        .await;
        Self { url, child }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_registry_framing_is_read_by_confluent_kafka_and_by_hooklake() {
    let broker = TestBroker::get();
    let registry = Registry::start().await;
    let prefix = topic_prefix();
    let config = config(&broker.bootstrap(), &prefix, &Secrets::fresh())
        .with_source("open", |s| s.id_header("x-request-id"))
        .ingest("record_headers", true)
        .schema_registry(&registry.url);
    let ingest = TestIngest::start(&config.to_toml()).await;
    let bodies = [r#"{"type":"a","n":1}"#, r#"{"type":"b","n":2}"#, r#"{"n":3}"#];
    for (i, body) in bodies.iter().enumerate() {
        let resp = http::client()
            .post(ingest.url("open"))
            .header("content-type", "application/json")
            .header("x-request-id", format!("cf-{i}"))
            .body(*body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let topic = format!("{prefix}.open");
    let subjects: Vec<String> =
        http::client().get(format!("{}/subjects", registry.url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(subjects, vec![format!("{topic}-value")], "TopicNameStrategy subject");

    let records = python::consume(&broker.bootstrap(), &topic, 3, Some(&registry.url)).await;
    for r in &records {
        assert_eq!(r["framing"], "confluent");
        let i: usize = r["key"].as_str().unwrap()[3..].parse().unwrap();
        assert_eq!(r["envelope"]["payload"], bodies[i]);
        assert_eq!(r["envelope"]["message_id"], format!("cf-{i}"));
        // `ingest.record_headers = true`: the three headers of docs/design.md.
        assert_eq!(r["headers"]["hooklake-source"], "open");
        assert_eq!(r["headers"]["hooklake-message-id"], format!("cf-{i}"));
        assert_eq!(
            r["headers"]["content-type"],
            "application/vnd.hooklake.webhook-envelope.v1+avro; framing=confluent"
        );
    }

    // hooklake's own decoder reads the same bytes.
    let codec = ConfluentCodec::new(&SchemaRegistryConfig {
        url: registry.url.clone(),
        username: None,
        password: None,
        timeout: "5s".parse().unwrap(),
    })
    .unwrap();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "it-confluent")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..2 {
        tpl.add_partition_offset(&topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut decoded = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while decoded.len() < 3 && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            decoded.push(codec.decode(m.payload().unwrap()).await.unwrap());
        }
    }
    decoded.sort_by(|a, b| a.message_id.cmp(&b.message_id));
    assert_eq!(decoded.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>(), bodies);

    // An id the registry answers it does not have is the record's fault (it goes to the
    // DLQ), not an outage that should fail every run.
    let unknown = [0u8, 0, 0, 0x27, 0x0f, 2, b'x'];
    let err = codec.decode(&unknown).await.unwrap_err();
    assert!(matches!(err, SchemaError::UnknownSchemaId(9999)), "{err:?}");
    // With the registry gone, the same lookup is an outage.
    drop(registry);
    let err = codec.decode(&unknown).await.unwrap_err();
    assert!(matches!(err, SchemaError::Registry(_)), "{err:?}");
    ingest.stop().await;
}
