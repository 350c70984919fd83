//! Hostile credentials against the real `hooklake ingest` process: signature headers of
//! thousands of entries are refused at once (403 within the request head limit, 431 from
//! hyper for 50,000) while `/livez` keeps answering, `webhook-id` is a `message_id` only
//! where it is signed, and `hooklake check-config` prints no secret.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::Mac;
use hooklake_tests::{broker::TestBroker, eventually, http, ingest_process::IngestProcess, metrics, tools, unix_now};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::{Secrets, config, topic_prefix};

/// Entries in the largest hostile signature header: over ingest's 64 KiB request head.
const HUGE_ENTRIES: usize = 50_000;
/// Bytes of the other hostile signature headers: as many entries as fit in the request
/// head, so that they reach the verifier.
const HEADER_BUDGET: usize = 48 << 10;
/// The hostile requests' body: big enough that hashing it once per entry takes seconds.
const BODY_BYTES: usize = 60 << 10;

/// `hooklake ingest` as its own process (killed when dropped), with the hostile clients'
/// ways of posting to it.
struct HostileIngest {
    process: IngestProcess,
    _dir: tempfile::TempDir,
}

impl HostileIngest {
    /// Starts the binary on the common configuration with a body limit for `BODY_BYTES`
    /// and one worker thread (a request that hogs it would stall every other).
    async fn start(broker: &TestBroker, secrets: &Secrets) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let text = config(&broker.bootstrap(), &topic_prefix(), secrets)
            .max_body_bytes(2 * BODY_BYTES)
            .ingest("worker_threads", 1)
            .to_toml();
        let path = dir.path().join("hooklake.toml");
        std::fs::write(&path, text).unwrap();
        let process = IngestProcess::start(&path, &dir.path().join("ingest.log")).await;
        process.wait_ready().await;
        Self { process, _dir: dir }
    }

    fn url(&self, source: &str) -> String {
        self.process.url(source)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("{}/{path}", self.process.admin())
    }

    /// `POST /webhook/{source}`: status, `error` code, `detail` (or `message_id`), time taken.
    async fn post(&self, source: &str, headers: &[(&str, String)], body: String) -> (u16, String, String, Duration) {
        let mut req = http::client().post(self.url(source)).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let started = Instant::now();
        let resp = req.send().await.expect("an answer");
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.expect("a JSON answer");
        let took = started.elapsed();
        let text = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let detail = if status == 200 { text("message_id") } else { text("detail") };
        (status, text("error"), detail, took)
    }

    /// Like [`Self::post`], on a raw connection: ingest may answer before it read the body
    /// (it refuses these from the headers alone) and close, and a client still writing
    /// would see a reset instead of the answer. The body is written aside, errors ignored.
    async fn post_raw(
        &self,
        source: &str,
        headers: &[(&str, String)],
        body: String,
    ) -> (u16, String, String, Duration) {
        let mut request = format!(
            "POST /webhook/{source} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        let started = Instant::now();
        let (mut read, mut write) = TcpStream::connect(("127.0.0.1", self.process.port)).await.unwrap().into_split();
        let writer = tokio::spawn(async move {
            let _ = write.write_all(request.as_bytes()).await;
            write
        });
        // `connection: close`: the answer ends when ingest closes.
        let mut answer = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n @ 1..) = read.read(&mut buf).await {
            answer.extend_from_slice(&buf[..n]);
        }
        let took = started.elapsed();
        writer.abort();
        let text = String::from_utf8_lossy(&answer);
        let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let json = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        // hyper's own answers (431) have no body.
        let body: serde_json::Value =
            if json.is_empty() { serde_json::Value::Null } else { serde_json::from_str(json).expect("JSON") };
        let field = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        (status, field("error"), field("detail"), took)
    }

    async fn rejected(&self, source: &str, reason: &str) -> f64 {
        let text = http::get_text(&self.admin_url("metrics")).await;
        metrics::value(&text, "hooklake_ingest_rejected_total", &[("source", source), ("reason", reason)])
            .unwrap_or(0.0)
    }
}

/// Polls `/livez` until `stop` is set; the status and latency of every answer. A poll
/// that gets no answer at all is recorded as status 0.
fn poll_livez(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<(u16, Duration)>> {
    tokio::spawn(async move {
        let client = http::client();
        let mut answers = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let started = Instant::now();
            // The timeout only keeps a hung process from hanging the test.
            let status = match client.get(&url).timeout(Duration::from_secs(30)).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            answers.push((status, started.elapsed()));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        answers
    })
}

/// (what, source, headers, expected `detail`) of one hostile request.
type Case = (&'static str, &'static str, Vec<(&'static str, String)>, &'static str);

const WEBHOOK: [&str; 3] = ["webhook-id", "webhook-timestamp", "webhook-signature"];
const SVIX: [&str; 3] = ["svix-id", "svix-timestamp", "svix-signature"];

fn hostile_body() -> String {
    let head = r#"{"type":"hostile","pad":""#;
    format!("{head}{}\"}}", "x".repeat(BODY_BYTES - head.len() - 2))
}

fn percentile(mut latencies: Vec<Duration>, p: f64) -> Duration {
    latencies.sort();
    latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn signature_headers_of_50000_entries_are_refused_at_once_while_livez_answers() {
    let broker = TestBroker::get();
    let s = Secrets::fresh();
    let ingest = HostileIngest::start(&broker, &s).await;
    let now = unix_now().to_string();
    // As many entries as fit in the budget.
    let repeat = |entry: &str, sep: &str| vec![entry; HEADER_BUDGET / (entry.len() + 1)].join(sep);
    let std_headers = |[id, timestamp, signature]: [&'static str; 3], value: String| {
        vec![(id, "msg_hostile".to_owned()), (timestamp, now.clone()), (signature, value)]
    };
    // Each entry decodes (to 1 byte), so a verifier without a bound hashes the body for it.
    let too_many = "the signature header has more than 32 entries";
    let cases: Vec<Case> = vec![
        ("v1 list", "std", std_headers(WEBHOOK, repeat("v1,AA", " ")), too_many),
        ("v1a list", "std", std_headers(WEBHOOK, repeat("v1a,AA", " ")), too_many),
        ("svix v1 list", "std", std_headers(SVIX, repeat("v1,AA", " ")), too_many),
        (
            "stripe v1= list",
            "stripe",
            vec![("stripe-signature", format!("t={now},{}", repeat("v1=00", ",")))],
            too_many,
        ),
        (
            "github list",
            "gh",
            vec![("x-hub-signature-256", repeat("sha256=00", ","))],
            "signature has the wrong length",
        ),
        ("hmac list", "hmac", vec![("x-signature", repeat("sha256=00", ","))], "signature has the wrong length"),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let livez = poll_livez(ingest.admin_url("livez"), stop.clone());
    // 50,000 entries do not fit in a request head: hyper refuses them before ingest sees them.
    let huge = std_headers(WEBHOOK, vec!["v1,AA"; HUGE_ENTRIES].join(" "));
    let (status, _, _, took) = ingest.post_raw("std", &huge, hostile_body()).await;
    println!("{HUGE_ENTRIES} entries: {status} in {:.2} ms", took.as_secs_f64() * 1e3);
    assert_eq!(status, 431, "a request head over 64 KiB");
    let metrics_url = ingest.admin_url("metrics");
    eventually(Duration::from_secs(5), "the 431 counted", || async {
        let text = http::get_text(&metrics_url).await;
        let closed = metrics::value(&text, "hooklake_ingest_connections_closed_total", &[("reason", "head_too_large")]);
        (closed == Some(1.0)).then_some(())
    })
    .await;
    let mut expected = std::collections::BTreeMap::<&str, f64>::new();
    for (what, source, headers, detail) in &cases {
        let before = *expected.entry(*source).or_insert(ingest.rejected(source, "invalid_credentials").await);
        let (status, code, got, took) = ingest.post_raw(source, headers, hostile_body()).await;
        println!("{what}: {status} {code} `{got}` in {:.2} ms", took.as_secs_f64() * 1e3);
        assert_eq!((status, code.as_str(), got.as_str()), (403, "invalid_credentials", *detail), "{what}");
        expected.insert(*source, before + 1.0);
    }
    stop.store(true, Ordering::SeqCst);
    let answers = livez.await.unwrap();

    let latencies: Vec<Duration> = answers.iter().map(|(_, d)| *d).collect();
    println!(
        "/livez during the hostile requests: {} answers, p50 {:.2} ms, max {:.2} ms",
        answers.len(),
        percentile(latencies.clone(), 0.5).as_secs_f64() * 1e3,
        percentile(latencies, 1.0).as_secs_f64() * 1e3
    );
    assert!(!answers.is_empty(), "/livez was polled");
    assert!(answers.iter().all(|(status, _)| *status == 200), "/livez kept answering 200: {answers:?}");
    for (source, count) in expected {
        assert_eq!(ingest.rejected(source, "invalid_credentials").await, count, "reason metric of {source}");
    }
    // Still serving: a valid request after the hostile ones is accepted.
    let body = r#"{"type":"after"}"#;
    let (status, ..) = ingest.post("keys", &[("x-api-key", s.api_key.clone())], body.into()).await;
    assert_eq!(status, 200);
}

/// `v1,<base64 HMAC>` of Standard Webhooks for `id.ts.body`, keyed with a `whsec_` secret.
fn standard_signature(whsec: &str, id: &str, ts: &str, body: &str) -> String {
    let key = STANDARD.decode(whsec.trim_start_matches("whsec_")).unwrap();
    let mut mac = hmac::SimpleHmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{body}").as_bytes());
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_ids_become_message_ids_only_where_they_are_signed() {
    let broker = TestBroker::get();
    let s = Secrets::fresh();
    let ingest = HostileIngest::start(&broker, &s).await;
    let body = r#"{"type":"ids"}"#;
    let forged = format!("forged-{}", uuid::Uuid::new_v4().simple());

    // api_key and none do not sign webhook-id or svix-id: they are not message ids.
    for (source, mut headers) in [("keys", vec![("x-api-key", s.api_key.clone())]), ("open", vec![])] {
        headers.push(("webhook-id", forged.clone()));
        headers.push(("svix-id", forged.clone()));
        let (status, _, message_id, _) = ingest.post(source, &headers, body.into()).await;
        assert_eq!(status, 200, "{source}");
        assert_ne!(message_id, forged, "{source}: an unsigned webhook-id became the message id");
        let uuid = uuid::Uuid::parse_str(&message_id).expect("a generated id");
        assert_eq!(uuid.get_version_num(), 7, "{source}");
    }

    // standard_webhooks signs it.
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let ts = unix_now().to_string();
    let headers = [
        ("webhook-id", id.clone()),
        ("webhook-timestamp", ts.clone()),
        ("webhook-signature", standard_signature(&s.whsec_new, &id, &ts, body)),
    ];
    let (status, _, message_id, _) = ingest.post("std", &headers, body.into()).await;
    assert_eq!((status, message_id.as_str()), (200, id.as_str()));
}

/// Runs `hooklake check-config --config <path>` with `env`.
async fn check_config(path: &Path, env: &[(&str, &str)]) -> tools::Output {
    let mut cmd = tokio::process::Command::new(tools::hooklake_bin());
    cmd.args(["check-config", "--config"]).arg(path).env_remove("HOOKLAKE_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    tools::run_to_end(&mut cmd, Duration::from_secs(30)).await
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_errors_name_file_and_place_but_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("s3cr3t-value-{}", uuid::Uuid::new_v4().simple());
    let source = "[sources.orders]\nauth = { type = \"github\", secrets = [\"gh\"] }\n";

    // A TOML syntax error on the line that holds an inline secret: toml quotes that line.
    let unterminated = write(dir.path(), "unterminated.toml", &format!("{source}secret = \"{secret}\n"));
    // A `${VAR}` whose value lands in a typed field: the type error quotes the value.
    let typed = write(dir.path(), "typed.toml", &format!("[kafka]\ntopic_partitions = \"${{IT_SECRET}}\"\n{source}"));
    let inline = write(
        dir.path(),
        "inline.toml",
        &format!("[sources.orders]\nauth = {{ type = \"api_key\", keys = [\"{secret}\" }}\n"),
    );
    let cases = [
        (&unterminated, "line 3, column", "invalid TOML"),
        (&typed, "kafka.topic_partitions", "invalid type"),
        (&inline, "line 2, column", "invalid TOML"),
    ];
    for (path, place, kind) in cases {
        let out = check_config(path, &[("IT_SECRET", &secret)]).await;
        let printed = format!("{}{}", out.stdout, out.stderr);
        println!("{}: {}", path.display(), out.stderr.trim());
        assert!(!out.success, "{}: invalid", path.display());
        assert!(!printed.contains(&secret) && !printed.contains("s3cr3t"), "the secret was printed: {printed}");
        let file = path.display().to_string();
        assert!(out.stderr.contains(&file) && out.stderr.contains(place) && out.stderr.contains(kind), "{printed}");
    }

    // Without the mistake the file is valid: the failures above are about the mistake.
    let valid = write(dir.path(), "valid.toml", &format!("[kafka]\ntopic_partitions = 3\n{source}"));
    let out = check_config(&valid, &[]).await;
    assert!(out.success && out.stdout.contains("valid"), "{}{}", out.stdout, out.stderr);
}
