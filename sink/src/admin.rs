//! The sink's admin port: `/livez`, `/readyz` (broker and catalog reachable), `/metrics`,
//! `POST /runs` (queue a manual run; its id comes back) and `GET /runs/{id}`.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{StatusCode, header};
use tokio::{net::TcpListener, sync::watch};

use crate::{queue::Trigger, sink::Sink};

pub fn router(sink: Arc<Sink>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/runs", post(request_run))
        .route("/runs/{id}", get(run_status))
        .with_state(sink)
}

pub async fn serve(sink: Arc<Sink>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let server = axum::serve(listener, router(sink)).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "admin server failed");
    }
}

async fn readyz(State(sink): State<Arc<Sink>>) -> Response {
    let broker = sink.ctx.consumer.check().await;
    let catalog = sink.ctx.lake.check().await;
    match (broker, catalog) {
        (Ok(()), Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        (b, c) => {
            let reasons: Vec<String> = [b.err(), c.err()].into_iter().flatten().map(|e| e.to_string()).collect();
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", reasons.join("; "))).into_response()
        }
    }
}

async fn metrics(State(sink): State<Arc<Sink>>) -> Response {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], sink.ctx.metrics.render()).into_response()
}

async fn request_run(State(sink): State<Arc<Sink>>) -> Response {
    let status = sink.runs.request(Trigger::Manual);
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "run_id": status.id, "state": status.state }))).into_response()
}

async fn run_status(State(sink): State<Arc<Sink>>, Path(id): Path<String>) -> Response {
    match sink.runs.get(&id) {
        Some(status) => Json(status).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "unknown_run", "detail": "no such run" })))
            .into_response(),
    }
}
