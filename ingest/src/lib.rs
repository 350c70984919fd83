//! hooklake ingest: a stateless HTTP service that authenticates webhooks and answers 200
//! only once Kafka acknowledged the record (docs/design.md, "Ingest HTTP contract").
//!
//! [`run`] is what `hooklake ingest` calls; tests call it (or [`serve`] with another
//! [`Publisher`]) on `127.0.0.1:0`.

pub mod admin;
pub mod auth;
pub mod body;
pub mod connections;
pub mod error;
pub mod in_flight;
pub mod metrics;
pub mod publisher;
pub mod server;
pub mod source;
pub mod validate;

#[cfg(test)]
mod body_proptests;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hooklake_schemas::config::{Config, ConfigError};
use tokio::{net::TcpListener, sync::watch};

pub use crate::error::IngestError;
use crate::{
    connections::ConnectionLimits,
    publisher::{KafkaPublisher, Publisher, producer_config},
    server::AppState,
};

/// How often the broker's metadata is read, so that sources whose topic went missing (or
/// came back) are known without waiting for a `/readyz` probe.
const READINESS_REFRESH: Duration = Duration::from_secs(5);

/// On shutdown, the producer gets this long to deliver what is still queued. By then
/// every request has been answered, so only records of requests that gave up remain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// The admin port's limits: few scrapers and probes, each request quick.
const ADMIN_LIMITS: ConnectionLimits = ConnectionLimits {
    header_read_timeout: Duration::from_secs(10),
    max_connections: 64,
    drain: Duration::from_secs(1),
};

/// The admin port's `at_cap_timeout` ([`connections::ListenerPhase`]).
const ADMIN_AT_CAP_TIMEOUT: Duration = Duration::from_secs(2);

/// The two sockets ingest serves on.
#[derive(Debug)]
pub struct Listeners {
    /// `POST /webhook/{source}`.
    pub http: TcpListener,
    /// `/livez`, `/readyz`, `/metrics`.
    pub admin: TcpListener,
}

/// A service that could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
}

/// Checks everything ingest would refuse at start-up, without connecting anywhere.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    for (name, source) in &config.sources {
        source::Source::from_config(name, source)?;
    }
    producer_config(config)?;
    Ok(())
}

/// Runs ingest with the rdkafka publisher until `shutdown` resolves, then drains.
pub async fn run(
    config: Arc<Config>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let publisher = Arc::new(KafkaPublisher::new(config.clone())?);
    // In the background, so that both ports serve at once even while the broker is down
    // or slow to create topics: `/livez` answers, webhooks get their 503 within the
    // deadline, `/readyz` says 503 until the broker is reachable.
    let refresher = tokio::spawn(prepare_then_refresh(publisher.clone()));
    let served = serve(&config, publisher, listeners, shutdown).await;
    refresher.abort();
    served
}

/// Creates the missing topics (`kafka.create_topics`), then reads the broker's metadata
/// every [`READINESS_REFRESH`]. A broker that was down at start-up gets its topics at the
/// first refresh that reaches it ([`KafkaPublisher`]'s readiness probe creates missing
/// source topics and their dead-letter topics).
async fn prepare_then_refresh(publisher: Arc<KafkaPublisher>) {
    if let Err(e) = publisher.ensure_topics().await {
        tracing::warn!(error = %e, "could not make sure the source topics exist");
    }
    refresh_readiness(publisher).await
}

/// Reads the broker's metadata every [`READINESS_REFRESH`] (the first time at once).
async fn refresh_readiness<P: Publisher>(publisher: Arc<P>) {
    let mut every = tokio::time::interval(READINESS_REFRESH);
    loop {
        every.tick().await;
        if let Err(e) = publisher.check_ready().await {
            tracing::debug!(error = %e, "broker not reachable");
        }
    }
}

/// Serves with any [`Publisher`]. On `shutdown`: `/readyz` turns 503, the listener stops
/// accepting, in-flight requests finish (each within the response deadline; connections
/// still open after it are closed), then the producer is flushed. Ingest thus stops within
/// about `response_deadline` + 3 s of the signal.
pub async fn serve<P: Publisher>(
    config: &Config,
    publisher: Arc<P>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let state = Arc::new(AppState::new(config, publisher.clone())?);
    let draining = Arc::new(AtomicBool::new(false));
    let (admin_stop, mut admin_stopped) = watch::channel(false);

    let admin_router = admin::admin_router(state.clone(), draining.clone());
    let admin = tokio::spawn(connections::serve(
        listeners.admin,
        connections::router_service(admin_router),
        ADMIN_LIMITS,
        // Admin connections are not exported.
        connections::ConnectionMetrics::unexported(),
        connections::ListenerPhase::new(ADMIN_AT_CAP_TIMEOUT),
        async move {
            let _ = admin_stopped.wait_for(|stop| *stop).await;
        },
    ));

    let i = &config.ingest;
    tracing::info!(
        listen = %listeners.http.local_addr()?,
        sources = state.sources.len(),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        max_connections = i.max_connections,
        max_in_flight = i.max_in_flight(),
        max_in_flight_bytes = i.max_in_flight_bytes.get(),
        "ingest is serving"
    );
    let limits = ConnectionLimits {
        header_read_timeout: i.header_read_timeout.get(),
        max_connections: i.max_connections as usize,
        drain: i.response_deadline.get(),
    };
    let webhooks = server::Webhooks::new(state.clone());
    let service = move |request, in_progress| webhooks.answer(request, in_progress);
    let metrics = state.metrics.connections.clone();
    connections::serve(listeners.http, service, limits, metrics, state.phase.clone(), async move {
        shutdown.await;
        draining.store(true, Ordering::SeqCst);
        tracing::info!("shutting down: finishing in-flight requests");
    })
    .await;

    publisher.flush(FLUSH_TIMEOUT).await;
    let _ = admin_stop.send(true);
    let _ = admin.await;
    tracing::info!("ingest stopped");
    Ok(())
}
