//! Every way a webhook request can fail, and the one place that turns a failure into
//! an HTTP answer (`{"error": code, "detail": text}`), grouped by status as in
//! docs/design.md ("Answers").

use std::time::Duration;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no source named `{0}`")]
    UnknownSource(String),
    #[error("{0}")]
    MissingCredentials(AuthError),
    #[error("{0}")]
    InvalidCredentials(AuthError),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge {
        limit: usize,
        /// The rest of the body was not read: the connection cannot be reused.
        close_connection: bool,
    },
    #[error("{0}")]
    MalformedJson(String),
    /// The client sent the request head but not its whole body in time: its fault, not
    /// ours, so 408 rather than 503. The rest of the body was not read. In time is within
    /// the response deadline, or within `at_cap` (`ingest.at_cap_timeout`) while every
    /// connection is taken and others wait.
    #[error("{}", body_timeout_detail(*at_cap))]
    BodyTimeout { at_cap: Option<Duration> },
    /// Kafka (or the schema registry) cannot take the record in time: retry later.
    #[error("{reason}")]
    Unavailable { reason: String, retry_after: Duration },
    /// The requests being handled already hold `ingest.max_in_flight` slots, or too much
    /// of `ingest.max_in_flight_bytes` to leave this one's body room.
    #[error("{limit}; retry later")]
    Overloaded { limit: InFlightLimit, retry_after: Duration },
    /// The source's topic does not exist on the broker; other sources are not affected.
    #[error("the topic of this source does not exist on the broker: {topic}")]
    TopicMissing { topic: String, retry_after: Duration },
    /// The broker refuses the record as too large even though the body was within the limit.
    #[error("{0}")]
    RecordTooLarge(String),
}

fn body_timeout_detail(at_cap: Option<Duration>) -> String {
    match at_cap {
        None => "the body did not arrive within the response deadline".into(),
        Some(limit) => format!(
            "the body did not arrive within {} ms of the request head while every connection was taken",
            limit.as_millis()
        ),
    }
}

/// Which in-flight limit turned a request away (503 `overloaded`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InFlightLimit {
    /// `ingest.max_in_flight`.
    Requests,
    /// `ingest.max_in_flight_bytes`.
    BodyBytes,
}

impl std::fmt::Display for InFlightLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Requests => "too many requests in flight",
            Self::BodyBytes => "too many body bytes in flight",
        })
    }
}

impl From<AuthError> for IngestError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing(_) => Self::MissingCredentials(e),
            AuthError::Invalid(_) => Self::InvalidCredentials(e),
        }
    }
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::MissingCredentials(_) => StatusCode::UNAUTHORIZED,
            Self::InvalidCredentials(_) => StatusCode::FORBIDDEN,
            Self::UnknownSource(_) => StatusCode::NOT_FOUND,
            Self::BodyTooLarge { .. } | Self::RecordTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable { .. } | Self::Overloaded { .. } | Self::TopicMissing { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// The `error` code of the body and the `reason` label of the rejection metric.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::MissingCredentials(_) => "missing_credentials",
            Self::InvalidCredentials(_) => "invalid_credentials",
            Self::UnknownSource(_) => "unknown_source",
            Self::BodyTooLarge { .. } | Self::RecordTooLarge(_) => "body_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Unavailable { .. } => "unavailable",
            Self::Overloaded { .. } => "overloaded",
            Self::TopicMissing { .. } => "topic_missing",
        }
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code(), "detail": self.to_string() });
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            Self::Unavailable { retry_after, .. } | Self::TopicMissing { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            Self::Overloaded { retry_after, .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
                // The body was not read: the connection cannot carry another request.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::BodyTooLarge { close_connection: true, .. } | Self::BodyTimeout { .. } => {
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}
