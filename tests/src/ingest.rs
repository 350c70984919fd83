//! hooklake ingest in the test process, through the same `run` as `hooklake ingest`,
//! on 127.0.0.1:0.

use std::sync::Arc;

use hooklake_ingest::{Listeners, ServeError};
use hooklake_schemas::config::{Config, Env};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::logs;

#[derive(Debug)]
pub struct TestIngest {
    /// `127.0.0.1:<port>` of the webhook listener.
    pub addr: String,
    /// `http://127.0.0.1:<port>` of the admin listener.
    pub admin: String,
    pub config: Arc<Config>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestIngest {
    /// Starts ingest with `toml` (its listen addresses are ignored).
    pub async fn start(toml: &str) -> Self {
        logs::init();
        let config = Arc::new(Config::from_toml(toml, &Env::new()).expect("test config is valid"));
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = http.local_addr().expect("addr").to_string();
        let admin_url = format!("http://{}", admin.local_addr().expect("addr"));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(hooklake_ingest::run(config.clone(), Listeners { http, admin }, async move {
            let _ = stopped.await;
        }));
        Self { addr, admin: admin_url, config, stop: Some(stop), task: Some(task) }
    }

    pub fn url(&self, source: &str) -> String {
        format!("http://{}/webhook/{source}", self.addr)
    }

    pub async fn metrics(&self) -> String {
        crate::http::get_text(&format!("{}/metrics", self.admin)).await
    }

    /// The value of `hooklake_ingest_rejected_total{source, reason}`.
    pub async fn rejected(&self, source: &str, reason: &str) -> f64 {
        let text = self.metrics().await;
        crate::metrics::value(&text, "hooklake_ingest_rejected_total", &[("source", source), ("reason", reason)])
            .unwrap_or(0.0)
    }

    pub async fn readyz(&self) -> u16 {
        match crate::http::client().get(format!("{}/readyz", self.admin)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Graceful shutdown, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("ingest task").expect("ingest stopped cleanly");
        }
    }
}

impl Drop for TestIngest {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
