//! The admin port: `/livez` (the process works), `/readyz` (it can serve: broker
//! reachable, topics exist, not draining) and `/metrics`.

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
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")),
    }
}

async fn metrics<P: Publisher>(State(a): State<Arc<Admin<P>>>) -> impl IntoResponse {
    let m = &a.app.metrics;
    m.queue_messages.set(a.app.publisher.queue_len() as i64);
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], m.render())
}
