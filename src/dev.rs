//! `hooklake dev`: the whole pipeline in one process on a laptop — a Kafka-API broker
//! (tansu, embedded, SQLite storage under `.hooklake/`), ingest, and the sink on a short
//! schedule with the SQLite Iceberg catalog under `lake/`. Ctrl-C loads what is left, then
//! stops.

use std::sync::Arc;

use anyhow::{Context, bail};
use hooklake_schemas::config::{Config, redact_url_password};
use tokio::sync::watch;

use crate::{progress::Bar, send};

pub async fn dev(config: Arc<Config>, config_label: &str) -> anyhow::Result<()> {
    let broker = start_broker(&config).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let listeners = crate::ingest_listeners(&config).await?;
    let sink_admin = crate::bind(config.sink.admin_listen, "sink.admin_listen")?;
    let mut ingest = tokio::spawn(hooklake_ingest::run(config.clone(), listeners, stopped(stop_rx.clone())));
    let sink_config = config.clone();
    let sink_stop = stopped(stop_rx);
    // The only sink of this broker: it takes every partition instead of joining the group,
    // so a restart after a crash need not wait for the dead member's session to expire.
    let mut sink = tokio::spawn(async move {
        hooklake_sink::serve_as(&sink_config, hooklake_sink::Membership::All, sink_admin, sink_stop).await
    });

    wait_ready(&config).await;
    print!("{}", banner(&config, config_label, &broker.describe()));

    let early = tokio::select! {
        () = crate::telemetry::shutdown_signal() => None,
        r = &mut ingest => Some(format!("ingest stopped: {}", outcome(r))),
        r = &mut sink => Some(format!("the sink stopped: {}", outcome(r))),
    };
    let _ = stop_tx.send(true);
    if let Some(why) = early {
        broker.stop();
        bail!(why);
    }
    if !ingest.is_finished() {
        ingest.await?.context("ingest")?;
    }
    if !sink.is_finished() {
        sink.await?.context("sink")?;
    }

    println!("loading what is left before stopping...");
    let bar = Bar::on_terminal();
    let result = hooklake_sink::once(&config, &bar).await;
    bar.finish();
    broker.stop();
    let report = result.context("the last run failed; the events stay in the broker for the next start")?;
    crate::print_report(&report);
    Ok(())
}

fn outcome<E: std::fmt::Display>(r: Result<Result<(), E>, tokio::task::JoinError>) -> String {
    match r {
        Ok(Ok(())) => "without an error".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Waits (up to 30 s in all) until ingest's `/readyz` answers 200 (the broker is reachable
/// and the topics exist), then the sink's (it has started and reaches the broker and the
/// catalog), so that the banner's commands work once it is printed.
async fn wait_ready(config: &Config) {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    for (name, admin) in [("ingest", config.ingest.admin_listen), ("the sink", config.sink.admin_listen)] {
        let url = format!("http://{}/readyz", send::loopback(admin));
        loop {
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!("{name} is not ready after 30 s; see {url}");
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// What `hooklake dev` prints once it is ready: URLs, a `curl` and a `hooklake send` line
/// per source, and where the tables are. The catalog's password (a PostgreSQL URI holds
/// one) is shown as `***`; the dev API key in the curl lines is the example's, on purpose.
fn banner(config: &Config, config_label: &str, broker: &str) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let ingest = send::base_url(config, None);
    line(String::new());
    line(format!("hooklake dev is running (configuration: {config_label}). Ctrl-C loads what is left and stops."));
    line(String::new());
    line(format!("  broker   {broker}"));
    line(format!(
        "  ingest   POST {ingest}/webhook/<source>   (metrics: http://{}/metrics)",
        config.ingest.admin_listen
    ));
    line(format!(
        "  sink     {}, and on Ctrl-C   (POST http://{}/runs starts a run now)",
        config.sink.schedule, config.sink.admin_listen
    ));
    line(format!(
        "  tables   catalog {}, files under {}",
        redact_url_password(&config.catalog.uri),
        redact_url_password(&config.catalog.warehouse)
    ));
    line(String::new());
    for (name, source) in &config.sources {
        let table = source.table_for(name);
        line(format!("  source {name} ({}) → table {table}", source.auth.scheme()));
        let body = format!(r#"{{"event_type":"{name}.created","id":"{name}-1"}}"#);
        match send::curl_line(config, name, source, &body) {
            Ok(curl) => line(format!("    {curl}")),
            Err(e) => line(format!("    (no curl line: {e})")),
        }
        line(format!("    hooklake send {name} --count 10"));
    }
    if config.sources.values().any(|s| matches!(s.auth.scheme(), "standard_webhooks" | "stripe")) {
        line(String::new());
        line(
            "  (signed curl lines carry a timestamp: they are valid for the source's tolerance; `hooklake send` signs afresh)"
                .into(),
        );
    }
    if let Some((name, source)) = config.sources.iter().next() {
        line(String::new());
        line(format!(
            "  then:    hooklake query \"SELECT event_type, count(*) FROM {} GROUP BY event_type\"",
            source.table_for(name)
        ));
    }
    line(String::new());
    out
}

/// The broker `hooklake dev` talks to: embedded tansu, or with the `embedded-broker`
/// feature off, the cluster of `kafka.brokers`.
#[cfg(feature = "embedded-broker")]
async fn start_broker(config: &Config) -> anyhow::Result<crate::broker::Broker> {
    let first = config.kafka.brokers.split(',').next().unwrap_or_default().trim();
    crate::broker::Broker::start(
        first,
        None,
        std::path::Path::new(crate::broker::DATA_DIR),
        crate::broker::Storage::Sqlite,
    )
    .await
    .with_context(|| format!("kafka.brokers: hooklake dev runs its own broker on {first:?}"))
}

#[cfg(not(feature = "embedded-broker"))]
async fn start_broker(config: &Config) -> anyhow::Result<External> {
    Ok(External(config.kafka.brokers.clone()))
}

#[cfg(not(feature = "embedded-broker"))]
struct External(String);

#[cfg(not(feature = "embedded-broker"))]
impl External {
    fn describe(&self) -> String {
        format!("{} (kafka.brokers; this build has no embedded broker)", self.0)
    }
    fn stop(&self) {}
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::config::Env;

    use super::*;

    #[test]
    fn the_banner_hides_the_catalog_password() {
        let text = r#"
[catalog]
uri = "postgres://hook:${PGPASSWORD}@db.internal:5432/lake"
[sources.orders]
auth = { type = "api_key", keys = ["dev-orders-key"] }
"#;
        let env: Env = [("PGPASSWORD".to_owned(), "pg-s3cr3t-pw".to_owned())].into();
        let config = Config::from_toml(text, &env).unwrap();
        let banner = banner(&config, "test.toml", "127.0.0.1:9092");
        assert!(!banner.contains("pg-s3cr3t-pw"), "{banner}");
        assert!(banner.contains("catalog postgres://hook:***@db.internal:5432/lake"), "{banner}");
        assert!(banner.contains("hooklake send orders --count 10"), "{banner}");
    }
}
