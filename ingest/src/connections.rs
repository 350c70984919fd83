//! Serving a listener connection by connection with hyper's HTTP/1.1 server, the way axum
//! recommends when `axum::serve` lacks a knob: a request head must arrive within
//! `header_read_timeout` (hyper also closes kept-alive connections idle that long), at
//! most `max_connections` are open, and shutdown stops accepting, lets the requests in
//! flight finish, and closes whatever is still open at a deadline.
//!
//! HTTP/1.1 only: hyper-util's HTTP/1-or-2 detection reads the first bytes with no timer,
//! so a client that sends a few bytes and stalls would hold its connection forever.
//!
//! The connections hyper ends itself, before a request reaches the service (a head that
//! took too long, a head over [`MAX_REQUEST_HEAD_BYTES`] answered 431, a request that is not
//! HTTP answered 400), are counted by reason in [`ConnectionMetrics::closed`].

use std::{
    convert::Infallible,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, response::Response};
use hyper::{
    Request,
    body::Incoming,
    server::conn::http1,
    service::{Service, service_fn},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::{TowerToHyperService, TowerToHyperServiceFuture},
};
use prometheus::{IntCounterVec, IntGauge};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
};

pub use hooklake_schemas::kafka::MAX_REQUEST_HEAD_BYTES;

/// How long to wait before accepting again after `accept` failed (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connections the kernel completes and queues for a listener before the process accepts
/// them (`listen(2)`'s backlog; Linux caps it at `net.core.somaxconn`, 4096 by default).
/// Tokio's `TcpListener::bind` asks for 128. When a burst of connections finds that queue
/// full, the kernel drops their SYNs and each client waits for its retransmission: 1 s,
/// then 3 s, 7 s. Measured with 256 connections opened at once (BENCHMARKS.md, "A
/// listen backlog of 128"): ingest's p99 was 1,039–1,052 ms in the runs with drops, 53–55
/// ms with 4096.
pub const LISTEN_BACKLOG: u32 = 4096;

/// A listener on `addr` with a backlog of [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as
/// `TcpListener::bind` sets it).
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// After shutdown began, connections still open this long are closed.
    pub drain: Duration,
}

/// What a listener reports.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    /// Open connections.
    pub open: IntGauge,
    /// Connections hyper ended with an error, by reason ([`CLOSE_REASONS`]).
    pub closed: IntCounterVec,
}

impl ConnectionMetrics {
    /// Metrics no registry exports (the admin listener's, and tests').
    pub fn unexported() -> Self {
        Self {
            open: IntGauge::new("open_connections", "open connections").expect("valid metric"),
            closed: IntCounterVec::new(prometheus::Opts::new("connections_closed", "closed connections"), &["reason"])
                .expect("valid metric"),
        }
    }
}

/// The `reason` label values of [`ConnectionMetrics::closed`], as [`close_reason`] picks them.
pub const CLOSE_REASONS: &[&str] =
    &["head_timeout", "idle_timeout", "head_too_large", "malformed_request", "incomplete_request", "io"];

/// Why hyper ended a connection with `error`. A header read timeout on a connection that
/// never had a request is a client that connected and did not send a whole head in time
/// (`head_timeout`, the slow-head attack); after a request it is most often a kept-alive
/// connection left idle (`idle_timeout`).
fn close_reason(error: &hyper::Error, had_a_request: bool) -> &'static str {
    if error.is_timeout() {
        if had_a_request { "idle_timeout" } else { "head_timeout" }
    } else if error.is_parse_too_large() {
        "head_too_large"
    } else if error.is_parse() {
        "malformed_request"
    } else if error.is_incomplete_message() {
        "incomplete_request"
    } else {
        "io"
    }
}

/// A listener's service: what answers each request of each connection.
pub trait HttpService: Fn(Request<Incoming>) -> Self::Answer + Clone + Send + Sync + 'static {
    type Answer: Future<Output = Result<Response, Infallible>> + Send + 'static;
}

impl<F, A> HttpService for F
where
    F: Fn(Request<Incoming>) -> A + Clone + Send + Sync + 'static,
    A: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    type Answer = A;
}

/// An axum router as a listener's service.
pub fn router_service(
    router: Router,
) -> impl Fn(Request<Incoming>) -> TowerToHyperServiceFuture<Router, Request<Incoming>> + Clone + Send + Sync + 'static
{
    let service = TowerToHyperService::new(router);
    move |request| service.call(request)
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    service: impl HttpService,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES)
        // Without it, hyper reads the socket again as soon as a request's body is in, to
        // notice a client that hangs up while its request is handled. That read needs room
        // in the connection's read buffer, whose bytes the request's head and body still
        // share, so it allocated a new 8 KiB buffer for every request. With it, a client
        // that closes its sending side (or goes away) still has its request finished and
        // answered, and the next read comes after the answer, into the same buffer.
        .half_close(true);
    tokio::pin!(shutdown);
    loop {
        // At the cap, new connections wait in the kernel's backlog until one closes.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        while connections.try_join_next().is_some() {}
        let held = (slot, OpenGuard::new(metrics.open.clone()));
        let closed = metrics.closed.clone();
        connections.spawn(serve_connection(&builder, stream, service.clone(), stopping.clone(), held, closed));
    }
    drop(listener);
    let _ = stop.send(true);
    drain(connections, limits.drain).await;
}

/// Waits up to `limit` for the connections to finish their requests, then closes the rest.
async fn drain(mut connections: JoinSet<()>, limit: Duration) {
    let finished = tokio::time::timeout(limit, async { while connections.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        tracing::warn!(open = connections.len(), "closing connections still open at the shutdown deadline");
        connections.shutdown().await;
    }
}

/// What a connection holds until it closes: its slot under the cap, and its count.
type Held = (OwnedSemaphorePermit, OpenGuard);

/// Serves one connection. On `stopping`, a connection that never got a whole request head
/// closes at once (hyper's graceful shutdown would wait for its head); the others finish
/// the request they are handling, if any, and close.
fn serve_connection(
    builder: &http1::Builder,
    stream: TcpStream,
    service: impl HttpService,
    mut stopping: watch::Receiver<bool>,
    held: Held,
    closed: IntCounterVec,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let started = started.clone();
        service_fn(move |request| {
            started.store(true, Ordering::Relaxed);
            service(request)
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    async move {
        let _held = held;
        tokio::pin!(conn);
        let served = tokio::select! {
            served = conn.as_mut() => served,
            () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                if !started.load(Ordering::Relaxed) {
                    return;
                }
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = served {
            let reason = close_reason(&e, started.load(Ordering::Relaxed));
            closed.with_label_values(&[reason]).inc();
            tracing::debug!(error = %e, reason, "connection ended with an error");
        }
    }
}

/// Counts a connection in the open-connections gauge while it lives.
struct OpenGuard(IntGauge);

impl OpenGuard {
    fn new(gauge: IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const GET: &[u8] = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n";

    async fn start(max_connections: usize) -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let (addr, stop, server, _) = start_with(max_connections, Duration::from_secs(30)).await;
        (addr, stop, server)
    }

    async fn start_with(
        max_connections: usize,
        header_read_timeout: Duration,
    ) -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>, ConnectionMetrics) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let limits = ConnectionLimits { header_read_timeout, max_connections, drain: Duration::from_secs(30) };
        let router = Router::new().route("/", get(|| async { "hi" })).route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "hi"
            }),
        );
        let (stop, mut stopped) = watch::channel(false);
        let metrics = ConnectionMetrics::unexported();
        let server = tokio::spawn(serve(listener, router_service(router), limits, metrics.clone(), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
        (addr, stop, server, metrics)
    }

    /// Every connection hyper ends by itself is counted under its reason: a stalled head,
    /// a kept-alive connection left idle, a head over the limit (431), a request that is
    /// not HTTP (400) and one cut off in its head.
    #[tokio::test]
    async fn connections_hyper_ends_are_counted_by_reason() {
        let (addr, _stop, _server, metrics) = start_with(16, Duration::from_millis(500)).await;
        let connect = || TcpStream::connect(&addr);
        let mut stalled = connect().await.unwrap();
        stalled.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
        let mut idle = connect().await.unwrap();
        idle.write_all(GET).await.unwrap();
        assert_eq!(answer(&mut idle, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
        let mut large = connect().await.unwrap();
        let big = format!("GET / HTTP/1.1\r\nx-big: {}\r\n\r\n", "a".repeat(4 * MAX_REQUEST_HEAD_BYTES));
        large.write_all(big.as_bytes()).await.unwrap();
        assert_eq!(answer(&mut large, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 431"));
        let mut garbage = connect().await.unwrap();
        garbage.write_all(b"\x16\x03\x01 not http\r\n\r\n").await.unwrap();
        assert_eq!(answer(&mut garbage, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 400"));
        let mut cut = connect().await.unwrap();
        cut.write_all(b"GET / HTTP/1.1\r\nhost").await.unwrap();
        cut.shutdown().await.unwrap();
        let count = |reason: &str| metrics.closed.with_label_values(&[reason]).get();
        let want = [
            ("head_timeout", 1),
            ("idle_timeout", 1),
            ("head_too_large", 1),
            ("malformed_request", 1),
            ("incomplete_request", 1),
        ];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while want.iter().any(|(r, n)| count(r) < *n) {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                CLOSE_REASONS.iter().map(|r| (r, count(r))).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (reason, n) in want {
            assert_eq!(count(reason), n, "{reason}");
        }
        assert_eq!(count("io"), 0);
    }

    /// The first bytes of the answer on `stream`, or None when it stays silent for `wait`.
    async fn answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
        let mut buf = [0u8; 12];
        match tokio::time::timeout(wait, stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(String::from_utf8_lossy(&buf).into_owned()),
            _ => None,
        }
    }

    /// A client may close its sending side once its request is out (a half-close) and
    /// still gets its answer, even when the handler takes a while.
    #[tokio::test]
    async fn a_client_that_half_closes_after_its_request_still_gets_its_answer() {
        let (addr, _stop, _server) = start(4).await;
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
        stream.shutdown().await.unwrap();
        assert_eq!(answer(&mut stream, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn at_max_connections_the_next_one_waits_for_a_slot() {
        let (addr, _stop, _server) = start(1).await;
        let mut first = TcpStream::connect(&addr).await.unwrap();
        first.write_all(GET).await.unwrap();
        assert_eq!(answer(&mut first, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
        let mut second = TcpStream::connect(&addr).await.unwrap();
        second.write_all(GET).await.unwrap();
        assert_eq!(answer(&mut second, Duration::from_millis(500)).await, None, "served beyond the cap");
        drop(first);
        assert_eq!(answer(&mut second, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
    }

    #[tokio::test]
    async fn shutdown_closes_connections_without_a_request_head_at_once() {
        let (addr, stop, server) = start(8).await;
        let mut half = TcpStream::connect(&addr).await.unwrap();
        half.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
        let mut idle = TcpStream::connect(&addr).await.unwrap();
        idle.write_all(GET).await.unwrap();
        assert_eq!(answer(&mut idle, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = std::time::Instant::now();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server).await.expect("stopped in time").unwrap();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(2), half.read_to_end(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?} {rest:?}");
    }
}
