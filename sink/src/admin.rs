//! The sink's admin port: `/livez`, `/readyz` (broker and catalog reachable), `/metrics`,
//! `POST /runs` (queue a run; its id comes back) and `GET /runs/{id}`.
//!
//! The port is served from the process's start. Until the sink has connected to its
//! catalog and broker ([`Admin::set_started`]), `/livez` answers 200 and everything else 503
//! with the reason the last attempt failed: a restart would not bring a catalog back, and
//! a scrape that fails is what `HooklakeTargetDown` alerts on.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{StatusCode, header};
use tokio::{net::TcpListener, sync::watch};

use crate::{queue::Trigger, sink::Sink};

/// What the admin port serves: a sink once started, and meanwhile why it is not.
#[derive(Debug)]
pub struct Admin {
    sink: OnceLock<Arc<Sink>>,
    /// The last start-up attempt's error, once one has failed.
    start_error: Mutex<Option<String>>,
}

/// How long `/readyz` waits for the broker's and the catalog's answers.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// Seconds a client is asked to wait before retrying while the sink starts.
const STARTING_RETRY_AFTER: &str = "5";

impl Admin {
    /// An admin port for a sink that is still connecting.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { sink: OnceLock::new(), start_error: Mutex::new(None) })
    }

    /// Records why the last start-up attempt failed (served by `/readyz`).
    pub fn set_start_error(&self, error: &str) {
        *self.start_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_owned());
    }

    /// The sink is up: every route serves it from now on.
    pub fn set_started(&self, sink: Arc<Sink>) {
        let _ = self.sink.set(sink);
    }

    /// `starting`, with the last attempt's error when there is one.
    fn starting_reason(&self) -> String {
        match &*self.start_error.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => format!("starting: {why}"),
            None => "starting".to_owned(),
        }
    }

    /// The 503 every route but `/livez` and `/readyz` answers while the sink starts.
    fn starting_answer(&self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, STARTING_RETRY_AFTER)],
            Json(serde_json::json!({ "error": "starting", "detail": self.starting_reason() })),
        )
            .into_response()
    }
}

pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/runs", post(request_run))
        .route("/runs/{id}", get(run_status))
        .with_state(admin)
}

pub async fn serve(admin: Arc<Admin>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let server = axum::serve(listener, router(admin)).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    if let Err(e) = server.await {
        tracing::error!(error = %e, "admin server failed");
    }
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let Some(sink) = admin.sink.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", admin.starting_reason())).into_response();
    };
    // Side by side, each bounded, so the probe answers within its own timeout.
    let (broker, catalog) = tokio::join!(sink.ctx.consumer.check(CHECK_TIMEOUT), sink.ctx.lake.check(CHECK_TIMEOUT));
    match (broker, catalog) {
        (Ok(()), Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        (b, c) => {
            let reasons: Vec<String> = [b.err(), c.err()].into_iter().flatten().map(|e| e.to_string()).collect();
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", reasons.join("; "))).into_response()
        }
    }
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    let Some(sink) = admin.sink.get() else { return admin.starting_answer() };
    sink.publish_assignment();
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], sink.ctx.metrics.render()).into_response()
}

async fn request_run(State(admin): State<Arc<Admin>>) -> Response {
    let Some(sink) = admin.sink.get() else { return admin.starting_answer() };
    let status = sink.runs.request(Trigger::Manual);
    (StatusCode::ACCEPTED, Json(serde_json::json!({ "run_id": status.id, "state": status.state }))).into_response()
}

async fn run_status(State(admin): State<Arc<Admin>>, Path(id): Path<String>) -> Response {
    let Some(sink) = admin.sink.get() else { return admin.starting_answer() };
    match sink.runs.get(&id) {
        Some(status) => Json(status).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({ "error": "unknown_run", "detail": "no such run" })))
            .into_response(),
    }
}
