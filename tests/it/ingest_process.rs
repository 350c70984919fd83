//! The real `hooklake ingest` process: logging at trace level never shows a secret,
//! SIGTERM finishes the request in flight before the process exits 0, and
//! `ingest.worker_threads` sizes its runtime. And the binary's allocator is jemalloc.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use hooklake_tests::{
    broker::TestBroker,
    eventually, free_port,
    http::{self, RawConn},
    ingest_process::IngestProcess,
    kafka, python, tools, unix_now,
};
use serde_json::json;

use crate::common::{Secrets, config, topic_prefix};

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_logs_no_secrets_and_drains_on_sigterm() {
    let broker = TestBroker::get();
    let s = Secrets::fresh();
    let prefix = topic_prefix();
    let (port, admin) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("hooklake.toml");
    // Secrets come from the environment through ${...}, as in production.
    let in_file = Secrets { api_key: "${IT_API_KEY}".into(), stripe: "${IT_STRIPE}".into(), ..s.clone() };
    let text =
        config(&broker.bootstrap(), &prefix, &in_file).ingest_ports(port, admin).ingest("worker_threads", 3).to_toml();
    std::fs::write(&config_path, text).unwrap();
    let log_path = dir.path().join("ingest.log");
    let mut child = Command::new(tools::hooklake_bin())
        .args(["ingest", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "trace")
        .env("IT_API_KEY", &s.api_key)
        .env("IT_STRIPE", &s.stripe)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let admin_url = format!("http://127.0.0.1:{admin}/readyz");
    eventually(Duration::from_secs(30), "ingest ready", || async {
        let r = http::client().get(&admin_url).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;

    // Traffic through every scheme: accepted and rejected.
    let now = unix_now();
    let body = r#"{"type":"x"}"#;
    let signed = python::sign(&json!([
        {"lib": "svix", "secret": s.whsec_old, "msg_id": "p1", "timestamp": now, "payload": body},
        {"lib": "stripe", "secret": s.stripe, "msg_id": "", "timestamp": now, "payload": body},
        {"lib": "github", "secret": s.github, "msg_id": "p3", "timestamp": now, "payload": body},
    ]))
    .await;
    let url = |src: &str| format!("http://127.0.0.1:{port}/webhook/{src}");
    let post = |src: &str, headers: Vec<(String, String)>, body: &str| {
        let mut req = http::client().post(url(src)).header("content-type", "application/json").body(body.to_owned());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        req.send()
    };
    let pairs =
        |i: usize| signed[i].iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect::<Vec<_>>();
    for (src, headers, expect) in [
        ("std", pairs(0), 200),
        ("stripe", pairs(1), 200),
        ("gh", pairs(2), 200),
        ("keys", vec![("x-api-key".into(), s.api_key.clone())], 200),
        ("keys", vec![("x-api-key".into(), format!("{}x", s.api_key))], 403),
        ("std", pairs(0), 200),
        ("gh", pairs(2), 200),
        ("stripe", vec![("stripe-signature".into(), "t=1,v1=00".into())], 403),
        ("hmac", vec![("x-signature".into(), "sha256=00".into())], 403),
    ] {
        assert_eq!(post(src, headers, body).await.unwrap().status(), expect, "{src}");
    }

    // A request in flight when SIGTERM arrives is still answered, and lands on Kafka.
    let mut conn = RawConn::connect(&format!("127.0.0.1:{port}")).await;
    let drain_body = r#"{"type":"in-flight"}"#;
    conn.write(
        format!(
            "POST /webhook/open HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            drain_body.len()
        )
        .as_bytes(),
    )
    .await;
    conn.write(&drain_body.as_bytes()[..5]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    conn.write(&drain_body.as_bytes()[5..]).await;
    let resp = conn.read_response().await.expect("the in-flight request is answered");
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let status = tokio::task::spawn_blocking(move || child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "ingest exited with {status}");
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")), 1);

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("ingest is serving") && logs.contains("webhook rejected"), "trace logs were written");
    let serving = logs.lines().find(|l| l.contains("ingest is serving")).unwrap();
    assert!(serving.contains("worker_threads=3"), "ingest.worker_threads sizes the runtime: {serving}");
    for secret in s.all_forms() {
        assert!(!logs.contains(&secret), "a secret ({}…) appears in the trace logs", &secret[..6]);
    }
}

/// A burst of connections while ingest cannot accept them (the process stopped, as when it
/// is starved of CPU): the kernel completes them and queues them for ingest, up to the
/// listen backlog. hooklake asks for 4096; with tokio's default of 128 the kernel drops
/// the SYNs beyond it, and each of those clients waits 1 s, then 3 s, to try again. When
/// ingest runs again, every queued connection is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_connections_waits_in_the_listen_backlog_not_in_syn_retries() {
    const CONNECTIONS: usize = 400;
    let (broker, prefix) = (TestBroker::get(), topic_prefix());
    // 400 requests at once: the default `max_in_flight` (`max_connections`, 1024) and
    // `max_in_flight_bytes` take them all.
    let config = config(&broker.bootstrap(), &prefix, &Secrets::fresh());
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("burst.toml");
    std::fs::write(&config_path, config.to_toml()).unwrap();
    let ingest = IngestProcess::start(&config_path, &dir.path().join("ingest.log")).await;
    ingest.wait_ready().await;

    let addr = format!("127.0.0.1:{}", ingest.port);
    ingest.signal("-STOP");
    let connecting = (0..CONNECTIONS).map(|_| tokio::time::timeout(Duration::from_secs(2), RawConn::connect(&addr)));
    let connected: Vec<RawConn> = futures::future::join_all(connecting).await.into_iter().flatten().collect();
    ingest.signal("-CONT");
    assert_eq!(
        connected.len(),
        CONNECTIONS,
        "connections completed within 2 s while ingest was stopped: the rest waited for a SYN retry"
    );

    let answers = futures::future::join_all(connected.into_iter().enumerate().map(|(n, mut conn)| async move {
        let body = format!("{{\"n\":{n}}}");
        conn.post("/webhook/open", &[("content-type", "application/json")], body.as_bytes()).await;
        conn.read_response().await.map(|r| r.status)
    }))
    .await;
    assert!(answers.iter().all(|a| *a == Some(200)), "{answers:?}");
    assert_eq!(kafka::record_count(&broker.bootstrap(), &format!("{prefix}.open")), CONNECTIONS as i64);
}

/// The default build (the one the suite runs) allocates through jemalloc, as the image's
/// build does (`--features jemalloc`). tikv-jemallocator's jemalloc reads its options from
/// `_RJEM_MALLOC_CONF`; `stats_print` makes it print its statistics when the process
/// exits, which only a process whose allocations went through it does.
#[test]
fn the_default_build_allocates_through_jemalloc() {
    let out = Command::new(tools::hooklake_bin())
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true")
        .output()
        .expect("hooklake runs");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("___ Begin jemalloc statistics ___"),
        "no jemalloc statistics at exit: the allocator is not jemalloc (is the `jemalloc` feature a default?)\n{stderr}"
    );
}
