//! `POST /webhook/{source}`: verify → validate → envelope → produce → answer, each a
//! named step, the whole request bounded by `response_deadline`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json, Router,
    extract::{Path, Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use hooklake_schemas::{
    ConfluentCodec, WebhookEnvelope,
    config::{Config, ConfigError},
    kafka::{CONTENT_TYPE_CONFLUENT, CONTENT_TYPE_SINGLE_OBJECT},
};
use http::{HeaderMap, StatusCode};
use tokio::time::Instant;

use crate::{
    auth::Verified,
    body::{self, BodyError, ContentEncoding},
    error::IngestError,
    metrics::{IngestMetrics, UNKNOWN_SOURCE_LABEL},
    publisher::{OutgoingRecord, PublishError, Publisher},
    source::Source,
    validate::{inspect_json, is_json_content_type},
};

/// Answers are sent this long before the deadline, to leave room for writing them.
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);

/// How envelopes are framed on Kafka.
#[derive(Debug)]
pub enum Framing {
    SingleObject,
    Confluent(ConfluentCodec),
}

/// Everything a request needs, shared by all requests.
#[derive(Debug)]
pub struct AppState<P> {
    pub sources: HashMap<String, Source>,
    pub publisher: Arc<P>,
    pub framing: Framing,
    pub metrics: IngestMetrics,
    pub max_body_bytes: usize,
    pub response_deadline: Duration,
    pub retry_after: Duration,
}

impl<P: Publisher> AppState<P> {
    pub fn new(config: &Config, publisher: Arc<P>) -> Result<Self, ConfigError> {
        let sources = config
            .sources
            .iter()
            .map(|(name, s)| Ok((name.clone(), Source::from_config(name, s)?)))
            .collect::<Result<HashMap<_, _>, ConfigError>>()?;
        let framing = match &config.schema_registry {
            Some(sr) => Framing::Confluent(
                ConfluentCodec::new(sr).map_err(|e| ConfigError::invalid("schema_registry", e.to_string()))?,
            ),
            None => Framing::SingleObject,
        };
        let metrics = IngestMetrics::new(config.sources.keys().map(String::as_str));
        metrics.queue_capacity.set(i64::from(config.ingest.producer_queue_messages));
        Ok(Self {
            sources,
            publisher,
            framing,
            metrics,
            max_body_bytes: config.ingest.max_body_bytes.get() as usize,
            response_deadline: config.ingest.response_deadline.get(),
            retry_after: config.ingest.retry_after.get(),
        })
    }

    fn unavailable(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Unavailable { reason: reason.into(), retry_after: self.retry_after }
    }
}

pub fn webhook_router<P: Publisher>(state: Arc<AppState<P>>) -> Router {
    Router::new().route("/webhook/{source}", post(handle::<P>)).with_state(state)
}

async fn handle<P: Publisher>(
    State(state): State<Arc<AppState<P>>>,
    Path(source_name): Path<String>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let deadline = started + state.response_deadline.saturating_sub(DEADLINE_MARGIN);
    let source = state.sources.get(&source_name);
    let label = source.map_or(UNKNOWN_SOURCE_LABEL, |s| &s.name);
    let outcome = match source {
        None => Err(IngestError::UnknownSource(truncate(&source_name, 64))),
        Some(source) => tokio::time::timeout_at(deadline, accept(&state, source, request, deadline))
            .await
            .unwrap_or_else(|_| Err(state.unavailable("no answer within the response deadline"))),
    };
    let response = match outcome {
        Ok(message_id) => {
            tracing::debug!(source = label, %message_id, "accepted");
            (StatusCode::OK, Json(serde_json::json!({ "message_id": message_id }))).into_response()
        }
        Err(e) => {
            if e.status().is_server_error() {
                tracing::warn!(source = label, error = %e, "webhook not accepted");
            } else {
                tracing::debug!(source = label, code = e.code(), error = %e, "webhook rejected");
            }
            state.metrics.rejected.with_label_values(&[label, e.code()]).inc();
            e.into_response()
        }
    };
    let m = &state.metrics;
    m.requests.with_label_values(&[label, response.status().as_str()]).inc();
    m.request_duration.with_label_values(&[label]).observe(started.elapsed().as_secs_f64());
    response
}

/// The steps of one request; returns the `message_id` once Kafka acknowledged.
async fn accept<P: Publisher>(
    state: &AppState<P>,
    source: &Source,
    request: Request,
    deadline: Instant,
) -> Result<String, IngestError> {
    let received = SystemTime::now();
    let (parts, body) = request.into_parts();
    source.verifier.check_headers(&parts.headers, received)?;
    let encoding = check_content_headers(&parts.headers)?;
    let raw = body::read_limited(&parts.headers, body, state.max_body_bytes).await.map_err(|e| body_error(e, state))?;
    let decoded = body::decode(encoding, raw, state.max_body_bytes).map_err(|e| body_error(e, state))?;
    state.metrics.body_bytes.with_label_values(&[&source.name]).observe(decoded.len() as f64);
    let verified = source.verifier.verify(&parts.headers, decoded, received)?;
    let envelope = build_envelope(source, &parts.headers, &verified, received)?;
    let record = encode(state, source, &envelope).await?;
    produce(state, record, deadline).await?;
    Ok(envelope.message_id)
}

fn check_content_headers(headers: &HeaderMap) -> Result<ContentEncoding, IngestError> {
    if !is_json_content_type(headers) {
        return Err(IngestError::UnsupportedMediaType(
            "Content-Type must be application/json (or another +json type)".into(),
        ));
    }
    ContentEncoding::from_headers(headers).map_err(IngestError::UnsupportedMediaType)
}

fn body_error<P>(e: BodyError, state: &AppState<P>) -> IngestError {
    match e {
        BodyError::TooLarge { drained } => {
            IngestError::BodyTooLarge { limit: state.max_body_bytes, close_connection: !drained }
        }
        BodyError::Corrupt(detail) => IngestError::MalformedJson(detail),
        BodyError::Read(detail) => IngestError::MalformedJson(format!("the body could not be read: {detail}")),
    }
}

fn build_envelope(
    source: &Source,
    headers: &HeaderMap,
    verified: &Verified<bytes::Bytes>,
    received: SystemTime,
) -> Result<WebhookEnvelope, IngestError> {
    let payload = std::str::from_utf8(verified.body())
        .map_err(|e| IngestError::MalformedJson(format!("the body is not UTF-8: {e}")))?;
    let event_type = inspect_json(payload, source.event_type_pointer.as_deref()).map_err(IngestError::MalformedJson)?;
    Ok(WebhookEnvelope {
        message_id: source.message_id(headers),
        source: source.name.to_string(),
        received_at_micros: received.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64),
        payload: payload.to_owned(),
        event_type,
        headers: source.forwarded(headers),
        verified_by: Some(verified.scheme().to_owned()),
    })
}

async fn encode<P>(
    state: &AppState<P>,
    source: &Source,
    envelope: &WebhookEnvelope,
) -> Result<OutgoingRecord, IngestError> {
    let (value, content_type) = match &state.framing {
        Framing::SingleObject => (envelope.to_single_object(), CONTENT_TYPE_SINGLE_OBJECT),
        Framing::Confluent(codec) => {
            let value = codec
                .encode(envelope, &source.topic)
                .await
                .map_err(|e| IngestError::Unavailable { reason: e.to_string(), retry_after: state.retry_after })?;
            (value, CONTENT_TYPE_CONFLUENT)
        }
    };
    Ok(OutgoingRecord::for_envelope(source.topic.clone(), envelope, value, content_type))
}

async fn produce<P: Publisher>(
    state: &AppState<P>,
    record: OutgoingRecord,
    deadline: Instant,
) -> Result<(), IngestError> {
    let started = Instant::now();
    let result = state.publisher.publish(record, deadline.saturating_duration_since(started)).await;
    state.metrics.produce_duration.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(_) => Ok(()),
        Err(PublishError::TooLarge(detail)) => Err(IngestError::RecordTooLarge(detail)),
        Err(e @ (PublishError::Unavailable(_) | PublishError::Fatal(_))) => Err(state.unavailable(e.to_string())),
    }
}

/// Echoes of user input in error bodies are kept short.
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
