//! The test harness: real services on free 127.0.0.1 ports, a real broker (tansu on
//! SQLite), and independent readers (Python libraries in the project's venv). Nothing
//! here is compiled into hooklake itself.

pub mod audit;
pub mod broker;
pub mod config;
pub mod dev;
pub mod faults;
pub mod http;
pub mod ingest;
pub mod ingest_process;
pub mod kafka;
pub mod lake;
pub mod logs;
pub mod metrics;
pub mod python;
pub mod sink;
pub mod tools;
pub mod traffic;

use std::time::Duration;

/// A name no other test uses (topics, tables, ids).
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_secs()
}
