//! `POST /webhook/{source}`: verify → validate → envelope → produce → answer, each a
//! named step, the whole request bounded by `response_deadline`.

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{
    BoxError, Router,
    body::{Body, HttpBody},
    extract::{Path, Request, State},
    response::{IntoResponse, Response},
    routing::post,
};
use bytes::Bytes;
use futures::FutureExt;
use hooklake_schemas::{
    ConfluentCodec, EnvelopeRef,
    config::{Config, ConfigError},
    kafka::{CONTENT_TYPE_CONFLUENT, CONTENT_TYPE_SINGLE_OBJECT},
};
use http::{HeaderMap, Method};
use hyper::service::Service;
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;

use crate::{
    body::{self, BodyError, ContentEncoding},
    connections::ListenerPhase,
    error::{InFlightLimit, IngestError},
    in_flight::{Budget, Taken},
    metrics::{IngestMetrics, SourceMetrics, UNKNOWN_SOURCE_LABEL},
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

/// A configured source and its metric series.
#[derive(Debug)]
pub struct Route {
    pub source: Source,
    pub metrics: SourceMetrics,
}

/// Everything a request needs, shared by all requests.
#[derive(Debug)]
pub struct AppState<P> {
    pub sources: HashMap<String, Arc<Route>>,
    pub publisher: Arc<P>,
    pub framing: Framing,
    pub metrics: IngestMetrics,
    pub max_body_bytes: usize,
    pub response_deadline: Duration,
    pub retry_after: Duration,
    /// `ingest.max_in_flight` slots; a request without one gets 503 `overloaded`.
    pub in_flight: Budget,
    /// `ingest.max_in_flight_bytes`: each request holds room for the body bytes that have
    /// arrived, and for a compressed body's inflated form while it is inflated; one that
    /// finds none, or announces a body larger than the room left ([`body::announced`]),
    /// gets 503 `overloaded`.
    pub in_flight_bytes: Budget,
    /// `ingest.record_headers`: records carry hooklake's three headers.
    pub record_headers: bool,
    /// The webhook listener's phase, which it sets: at its cap, a body still arriving
    /// `ingest.at_cap_timeout` after its head gets 408 `body_timeout`.
    pub phase: ListenerPhase,
}

impl<P: Publisher> AppState<P> {
    pub fn new(config: &Config, publisher: Arc<P>) -> Result<Self, ConfigError> {
        let metrics = IngestMetrics::new(config.sources.keys().map(String::as_str));
        let sources = config
            .sources
            .iter()
            .map(|(name, s)| {
                let route = Route { source: Source::from_config(name, s)?, metrics: metrics.for_source(name) };
                Ok((name.clone(), Arc::new(route)))
            })
            .collect::<Result<HashMap<_, _>, ConfigError>>()?;
        let framing = match &config.schema_registry {
            Some(sr) => Framing::Confluent(
                ConfluentCodec::new(sr).map_err(|e| ConfigError::invalid("schema_registry", e.to_string()))?,
            ),
            None => Framing::SingleObject,
        };
        metrics.queue_capacity.set(i64::from(config.ingest.producer_queue_messages));
        metrics.max_connections.set(i64::from(config.ingest.max_connections));
        Ok(Self {
            sources,
            publisher,
            framing,
            metrics,
            max_body_bytes: config.ingest.max_body_bytes.get() as usize,
            response_deadline: config.ingest.response_deadline.get(),
            retry_after: config.ingest.retry_after.get(),
            in_flight: Budget::new(config.ingest.max_in_flight() as usize),
            in_flight_bytes: Budget::new(config.ingest.max_in_flight_bytes.get() as usize),
            record_headers: config.ingest.record_headers,
            phase: ListenerPhase::new(config.ingest.at_cap_timeout.get()),
        })
    }
}

impl<P> AppState<P> {
    fn unavailable(&self, reason: impl Into<String>) -> IngestError {
        IngestError::Unavailable { reason: reason.into(), retry_after: self.retry_after }
    }

    fn overloaded(&self, limit: InFlightLimit) -> IngestError {
        IngestError::Overloaded { limit, retry_after: self.retry_after }
    }
}

/// The webhook listener's service. `POST /webhook/{name}` for a configured name, the
/// common request, goes straight to its source's handler. axum's router, which would match
/// the path, add its request extensions and box the handler's future (9 of a request's 40
/// allocations and a tenth of its instructions, BENCHMARKS.md "Past axum's router"), gets
/// the rest: its `/webhook/{source}` answers unknown names and names written
/// percent-encoded, and it gives axum's 404 and 405 answers.
pub struct Webhooks<P> {
    state: Arc<AppState<P>>,
    router: TowerToHyperService<Router>,
}

impl<P> std::fmt::Debug for Webhooks<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").field("sources", &self.state.sources.keys()).finish_non_exhaustive()
    }
}

impl<P> Clone for Webhooks<P> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone(), router: self.router.clone() }
    }
}

impl<P: Publisher> Webhooks<P> {
    pub fn new(state: Arc<AppState<P>>) -> Self {
        let router = Router::new().route("/webhook/{source}", post(handle_named::<P>)).with_state(state.clone());
        Self { state, router: TowerToHyperService::new(router) }
    }

    /// The answer to `request`; `held` is dropped once it is made (the listener's
    /// [`crate::connections::InProgress`]).
    pub fn answer<B, H>(
        &self,
        request: http::Request<B>,
        held: H,
    ) -> impl Future<Output = Result<Response, Infallible>> + use<B, H, P>
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
        H: Send + 'static,
    {
        let source = match *request.method() {
            Method::POST => {
                request.uri().path().strip_prefix("/webhook/").and_then(|name| self.state.sources.get(name))
            }
            _ => None,
        };
        // Ok: the source's own handler; Err: the router's answer.
        let target = match source {
            Some(route) => Ok((self.state.clone(), route.clone(), request.map(Body::new))),
            None => Err(self.router.call(request)),
        };
        async move {
            let _held = held;
            match target {
                Ok((state, route, request)) => Ok(handle(&state, &route, request).await),
                Err(routed) => routed.await,
            }
        }
    }
}

/// `/webhook/{source}`: a configured source written percent-encoded, or an unknown one.
async fn handle_named<P: Publisher>(
    State(state): State<Arc<AppState<P>>>,
    Path(source_name): Path<String>,
    request: Request,
) -> Response {
    match state.sources.get(&source_name) {
        Some(route) => handle(&state, route, request).await,
        None => {
            let e = IngestError::UnknownSource(truncate(&source_name, 64));
            rejected(&state, UNKNOWN_SOURCE_LABEL, e, Instant::now())
        }
    }
}

async fn handle<P: Publisher>(state: &AppState<P>, route: &Route, request: Request) -> Response {
    let started = Instant::now();
    // Bodies are read only by requests holding a slot, and each byte only with room for
    // it: this bounds the memory bodies take, however many clients send at once. Room is
    // taken as the bytes arrive, not for what a request announces, so clients that announce
    // large bodies and send them slowly hold only what they sent, not the room of others.
    let Some(_slot) = state.in_flight.try_take(1) else {
        return rejected(state, &route.source.name, state.overloaded(InFlightLimit::Requests), started);
    };
    if body::announced(request.headers(), state.max_body_bytes) > state.in_flight_bytes.available() {
        return rejected(state, &route.source.name, state.overloaded(InFlightLimit::BodyBytes), started);
    }
    let mut room = state.in_flight_bytes.share();
    let deadline = started + state.response_deadline.saturating_sub(DEADLINE_MARGIN);
    let outcome = tokio::time::timeout_at(deadline, accept(state, route, request, started, deadline, &mut room))
        .await
        .unwrap_or_else(|_| Err(state.unavailable("no answer within the response deadline")));
    match outcome {
        Ok(message_id) => {
            tracing::debug!(source = &*route.source.name, %message_id, "accepted");
            route.metrics.accepted.inc();
            route.metrics.request_duration.observe(started.elapsed().as_secs_f64());
            accepted_response(&message_id)
        }
        Err(e) => rejected(state, &route.source.name, e, started),
    }
}

/// The answer to a request that was not accepted, logged and counted under `label`.
fn rejected<P>(state: &AppState<P>, label: &str, e: IngestError, started: Instant) -> Response {
    if e.status().is_server_error() {
        tracing::warn!(source = label, error = %e, "webhook not accepted");
    } else {
        tracing::debug!(source = label, code = e.code(), error = %e, "webhook rejected");
    }
    let m = &state.metrics;
    m.rejected.with_label_values(&[label, e.code()]).inc();
    let response = e.into_response();
    m.requests.with_label_values(&[label, response.status().as_str()]).inc();
    m.request_duration.with_label_values(&[label]).observe(started.elapsed().as_secs_f64());
    response
}

/// `200 {"message_id": ...}`, written without building a JSON value first.
fn accepted_response(message_id: &str) -> Response {
    let mut body = Vec::with_capacity(message_id.len() + 20);
    body.extend_from_slice(b"{\"message_id\":");
    serde_json::to_writer(&mut body, message_id).expect("a string serialises");
    body.push(b'}');
    ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The steps of one request, whose head arrived at `started`; returns the `message_id` once
/// Kafka acknowledged. `room` is the request's share of `ingest.max_in_flight_bytes`.
async fn accept<P: Publisher>(
    state: &AppState<P>,
    route: &Route,
    request: Request,
    started: Instant,
    deadline: Instant,
    room: &mut Taken<'_>,
) -> Result<String, IngestError> {
    let source = &route.source;
    let received = SystemTime::now();
    let (parts, body) = request.into_parts();
    let checked = source.verifier.check(&parts.headers, received)?;
    let encoding = check_content_headers(&parts.headers)?;
    // Most bodies are in when the head is. Only a body still awaited races the listener's
    // phase, boxed so that the common path's future stays as small as it was (hyper copies
    // it once per request).
    let raw = {
        let mut read = std::pin::pin!(body::read_limited(&parts.headers, body, state.max_body_bytes, deadline, room));
        match (&mut read).now_or_never() {
            Some(raw) => raw,
            None => tokio::select! {
                biased;
                raw = &mut read => raw,
                () = Box::pin(state.phase.at_cap_since(started)) => {
                    return Err(IngestError::BodyTimeout { at_cap: Some(state.phase.at_cap_timeout()) });
                }
            },
        }
    }
    .map_err(|e| body_error(e, state))?;
    // Inflating takes no longer than the CPU needs, so room for its largest output is
    // held only that long.
    if encoding != ContentEncoding::Identity && !room.try_grow(state.max_body_bytes) {
        return Err(body_error(BodyError::NoRoom, state));
    }
    let decoded =
        body::decode_off_worker(encoding, raw, state.max_body_bytes).await.map_err(|e| body_error(e, state))?;
    // From here on the request holds its decoded body (and copies of it): the rest of its
    // room goes back.
    room.shrink_to(decoded.len());
    route.metrics.body_bytes.observe(decoded.len() as f64);
    let verified = checked.verify(decoded)?;
    let payload = std::str::from_utf8(verified.body())
        .map_err(|e| IngestError::MalformedJson(format!("the body is not UTF-8: {e}")))?;
    let event_type = inspect_json(payload, source.event_type_pointer.as_deref()).map_err(IngestError::MalformedJson)?;
    let message_id = source.message_id(&parts.headers);
    let headers = source.forwarded(&parts.headers);
    // The envelope borrows the body: the payload is copied once, by the encoder.
    let envelope = EnvelopeRef {
        message_id: &message_id,
        source: &source.name,
        received_at_micros: received.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64),
        payload,
        event_type: event_type.as_deref(),
        headers: &headers,
        verified_by: Some(verified.scheme()),
    };
    let record = encode(state, source, &envelope).await?;
    // The record holds its own copy of the payload: the body (decompressed, it is an
    // allocation of its own) and the header map go before the wait for the broker's ack.
    drop((verified, parts));
    produce(state, record, deadline).await?;
    Ok(message_id)
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
        BodyError::TimedOut => IngestError::BodyTimeout { at_cap: None },
        BodyError::NoRoom => state.overloaded(InFlightLimit::BodyBytes),
    }
}

async fn encode<P>(
    state: &AppState<P>,
    source: &Source,
    envelope: &EnvelopeRef<'_>,
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
    Ok(OutgoingRecord::for_envelope(source.topic.clone(), envelope, value, state.record_headers, content_type))
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
        Err(PublishError::TopicMissing(topic)) => {
            Err(IngestError::TopicMissing { topic, retry_after: state.retry_after })
        }
        Err(e @ (PublishError::Unavailable(_) | PublishError::Fatal(_))) => Err(state.unavailable(e.to_string())),
    }
}

/// Echoes of user input in error bodies are kept short.
fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use hooklake_schemas::config::Env;

    use super::*;
    use crate::publisher::MemoryPublisher;

    /// Waits (up to 5 s) until `f` holds.
    async fn until(what: &str, f: impl Fn() -> bool) {
        let gave_up = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < gave_up, "{what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A compressed body holds room for the bytes that arrived, not for what it announces,
    /// then for its inflated form while it is inflated; once inflated, the request keeps
    /// only the inflated size while it waits for the broker; answered, it gives everything
    /// back.
    #[tokio::test]
    async fn a_compressed_body_keeps_only_its_inflated_size_once_decoded() {
        let text = "[ingest]\nmax_body_bytes = 4096\nmax_in_flight_bytes = 16384\n\
                    [sources.open]\nauth = { type = \"none\" }\n";
        let config = Config::from_toml(text, &Env::new()).unwrap();
        let publisher = Arc::new(MemoryPublisher::default());
        publisher.hold(true);
        let state = Arc::new(AppState::new(&config, publisher.clone()).unwrap());
        let json = format!(r#"{{"type":"zipped","pad":"{}"}}"#, "x".repeat(900));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 100, "{}", gz.len());

        let (send, chunks) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        let request = http::Request::post("/webhook/open")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::CONTENT_ENCODING, "gzip")
            .header(http::header::CONTENT_LENGTH, gz.len())
            .body(Body::from_stream(chunks))
            .unwrap();
        let call = tokio::spawn(Webhooks::new(state.clone()).answer(request, ()));
        send.unbounded_send(Ok(Bytes::copy_from_slice(&gz[..10]))).unwrap();
        until("the bytes that arrived held while the body is read", || state.in_flight_bytes.in_use() == 10).await;
        assert_eq!(state.in_flight.in_use(), 1);
        send.unbounded_send(Ok(Bytes::copy_from_slice(&gz[10..]))).unwrap();
        drop(send);
        until("only the inflated size kept", || state.in_flight_bytes.in_use() == json.len()).await;
        publisher.hold(false);
        let response = call.await.unwrap().unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!((state.in_flight.in_use(), state.in_flight_bytes.in_use()), (0, 0));
        assert_eq!(&publisher.records()[0].key, &response_id(response).await);
    }

    /// A configured source's requests go straight to its handler, and the router's
    /// `/webhook/{source}` gives the same answers: a name written percent-encoded still
    /// finds its source, an unknown one is answered 404 `unknown_source`, and axum's 405
    /// and 404 are unchanged.
    #[tokio::test]
    async fn sources_are_routed_by_name_and_by_the_parameterised_route_alike() {
        let text = "[sources.open]\nauth = { type = \"none\" }\n";
        let config = Config::from_toml(text, &Env::new()).unwrap();
        let publisher = Arc::new(MemoryPublisher::default());
        let webhooks = Webhooks::new(Arc::new(AppState::new(&config, publisher.clone()).unwrap()));
        let call = |method: &str, path: &str| {
            let request = http::Request::builder()
                .method(method)
                .uri(path)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"type":"t"}"#))
                .unwrap();
            webhooks.answer(request, ())
        };
        for path in ["/webhook/open", "/webhook/open?from=test", "/webhook/%6Fpen"] {
            let response = call("POST", path).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::OK, "{path}");
        }
        assert_eq!(publisher.records().len(), 3);
        let unknown = call("POST", "/webhook/closed").await.unwrap();
        assert_eq!(unknown.status(), http::StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(unknown.into_body(), 1024).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("unknown_source"), "{body:?}");
        for path in ["/webhook/open", "/webhook/closed"] {
            let response = call("GET", path).await.unwrap();
            assert_eq!(response.status(), http::StatusCode::METHOD_NOT_ALLOWED, "{path}");
            assert_eq!(response.headers()[http::header::ALLOW], "POST", "{path}");
        }
        for path in ["/hooks/open", "/webhook/open/", "/webhook/"] {
            assert_eq!(call("POST", path).await.unwrap().status(), http::StatusCode::NOT_FOUND, "{path}");
        }
        assert_eq!(publisher.records().len(), 3);
    }

    /// A request whose client hangs up before the broker acknowledged is finished all the
    /// same: it keeps its slot until the ack, then its record is published.
    #[tokio::test]
    async fn a_request_whose_client_went_away_keeps_its_slot_until_the_ack_and_is_published() {
        use tokio::io::AsyncWriteExt;

        use crate::connections::{ConnectionLimits, ConnectionMetrics, serve};

        let config = Config::from_toml("[sources.open]\nauth = { type = \"none\" }\n", &Env::new()).unwrap();
        let publisher = Arc::new(MemoryPublisher::default());
        publisher.hold(true);
        let state = Arc::new(AppState::new(&config, publisher.clone()).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 8,
            drain: Duration::ZERO,
        };
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let webhooks = Webhooks::new(state.clone());
        tokio::spawn(serve(
            listener,
            move |request, in_progress| webhooks.answer(request, in_progress),
            limits,
            ConnectionMetrics::unexported(),
            state.phase.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let body = r#"{"type":"t"}"#;
        let request = format!(
            "POST /webhook/open HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        until("the request waits for the ack", || state.in_flight.in_use() == 1).await;
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(state.in_flight.in_use(), 1, "the request gave up its slot before the ack");
        publisher.hold(false);
        until("the request finished", || state.in_flight.in_use() == 0).await;
        assert_eq!(publisher.records().len(), 1);
    }

    async fn response_id(response: Response) -> String {
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        serde_json::from_slice::<serde_json::Value>(&body).unwrap()["message_id"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn accepted_answers_are_json_carrying_the_message_id() {
        let id = r#"msg "quoted" \ and é"#;
        let response = accepted_response(id);
        assert_eq!(response.status(), http::StatusCode::OK);
        assert_eq!(response.headers()[http::header::CONTENT_TYPE], "application/json");
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed, serde_json::json!({ "message_id": id }));
    }
}
