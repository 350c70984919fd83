//! hooklake ingest: a stateless HTTP service that authenticates webhooks and answers 200
//! only once Kafka acknowledged the record (DESIGN.md, "Ingest HTTP contract").
//!
//! [`run`] is what `hooklake ingest` calls; tests call it (or [`serve`] with another
//! [`Publisher`]) on `127.0.0.1:0`.

pub mod admin;
pub mod auth;
pub mod body;
pub mod error;
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
};

use hooklake_schemas::config::{Config, ConfigError};
use tokio::{net::TcpListener, sync::watch};

pub use crate::error::IngestError;
use crate::{
    publisher::{KafkaPublisher, Publisher, producer_config},
    server::AppState,
};

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
    if let Err(e) = publisher.ensure_topics().await {
        // Not fatal: the broker may come up later; /readyz keeps trying.
        tracing::warn!(error = %e, "could not make sure the source topics exist");
    }
    serve(&config, publisher, listeners, shutdown).await
}

/// Serves with any [`Publisher`]. On `shutdown`: `/readyz` turns 503, the listener stops
/// accepting, in-flight requests finish (each within the response deadline), then the
/// producer is flushed.
pub async fn serve<P: Publisher>(
    config: &Config,
    publisher: Arc<P>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let state = Arc::new(AppState::new(config, publisher.clone())?);
    let draining = Arc::new(AtomicBool::new(false));
    let (admin_stop, mut admin_stopped) = watch::channel(false);

    let admin = axum::serve(listeners.admin, admin::admin_router(state.clone(), draining.clone()))
        .with_graceful_shutdown(async move {
            let _ = admin_stopped.wait_for(|stop| *stop).await;
        });
    let admin = tokio::spawn(admin.into_future());

    tracing::info!(
        listen = %listeners.http.local_addr()?,
        sources = state.sources.len(),
        worker_threads = tokio::runtime::Handle::current().metrics().num_workers(),
        "ingest is serving"
    );
    let http = axum::serve(listeners.http, server::webhook_router(state.clone())).with_graceful_shutdown(async move {
        shutdown.await;
        draining.store(true, Ordering::SeqCst);
        tracing::info!("shutting down: finishing in-flight requests");
    });
    let served = http.await;

    publisher.flush(state.response_deadline).await;
    let _ = admin_stop.send(true);
    let _ = admin.await;
    tracing::info!("ingest stopped");
    Ok(served?)
}
