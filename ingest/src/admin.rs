//! The admin port: `/livez` (the process works), `/readyz` (it can serve: broker
//! reachable, not draining) and `/metrics`. A missing topic fails only its own source
//! (`hooklake_ingest_source_ready`), not the readiness of the whole instance.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, extract::State, response::IntoResponse, routing::get};
use http::{StatusCode, header};

use crate::{publisher::Publisher, server::AppState};

#[derive(Debug)]
struct Admin<P> {
    app: Arc<AppState<P>>,
    draining: Arc<AtomicBool>,
}

pub fn admin_router<P: Publisher>(app: Arc<AppState<P>>, draining: Arc<AtomicBool>) -> Router {
    Router::new()
        .route("/livez", get(livez::<P>))
        .route("/readyz", get(readyz::<P>))
        .route("/metrics", get(metrics::<P>))
        .with_state(Arc::new(Admin { app, draining }))
}

async fn livez<P: Publisher>(State(a): State<Arc<Admin<P>>>) -> impl IntoResponse {
    if a.app.publisher.is_alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "the Kafka producer hit a fatal error\n")
    }
}

async fn readyz<P: Publisher>(State(a): State<Arc<Admin<P>>>) -> impl IntoResponse {
    if a.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n".to_owned());
    }
    match a.app.publisher.check_ready().await {
        Ok(()) => {
            let missing: Vec<&str> = a
                .app
                .sources
                .iter()
                .filter(|(_, r)| !a.app.publisher.topic_ready(&r.source.topic))
                .map(|(name, _)| name.as_str())
                .collect();
            if missing.is_empty() {
                (StatusCode::OK, "ready\n".to_owned())
            } else {
                (StatusCode::OK, format!("ready; sources whose topic is missing: {missing:?}\n"))
            }
        }
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

async fn metrics<P: Publisher>(State(a): State<Arc<Admin<P>>>) -> impl IntoResponse {
    let m = &a.app.metrics;
    m.queue_messages.set(a.app.publisher.queue_len() as i64);
    m.in_flight_requests.set(a.app.in_flight.in_use() as i64);
    m.in_flight_body_bytes.set(a.app.in_flight_bytes.in_use() as i64);
    if let Some(statistics) = a.app.publisher.kafka_statistics() {
        m.kafka.observe(&statistics);
    }
    for (name, route) in &a.app.sources {
        let ready = a.app.publisher.topic_ready(&route.source.topic);
        m.source_ready.with_label_values(&[name]).set(i64::from(ready));
    }
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], m.render())
}
