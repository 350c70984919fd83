//! Serving a listener connection by connection with hyper's HTTP/1.1 server, the way axum
//! recommends when `axum::serve` lacks a knob: a request head must arrive within
//! `header_read_timeout` (hyper also closes kept-alive connections idle that long), at
//! most `max_connections` are open, and shutdown stops accepting, lets the requests in
//! flight finish, and closes whatever is still open at a deadline.
//!
//! At the cap, a connection that arrives is accepted and held until a slot frees, and
//! while one is held the listener is [`Phase::AtCap`]: connections with no request in
//! progress that start none within `at_cap_timeout` are closed to make room (stalled
//! heads, kept-alive connections left idle), so that clients which connect and stall
//! cannot keep the others out for a whole `header_read_timeout`. The webhook handler
//! reads the same phase to cut bodies that are slow to arrive ([`ListenerPhase`]).
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
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{Router, response::Response};
use futures::future::BoxFuture;
use hyper::{
    Request,
    body::Incoming,
    server::conn::http1,
    service::{Service, service_fn},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus::{IntCounterVec, IntGauge};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
    time::Instant,
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

/// What a listener tells its connections and the requests they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting: every connection that arrived has a slot.
    Serving,
    /// All `max_connections` slots are taken and another connection is waiting for one.
    AtCap,
    /// Shutdown began: no more connections are accepted.
    Stopping,
}

/// A listener's [`Phase`], shared by the accept loop that sets it, the connections and the
/// requests that read it, with how long what owes the listener bytes may take while it is
/// at its cap (`ingest.at_cap_timeout`): a connection its next request, a request its body.
/// Changes are rare (a flood that fills the cap and ends, a shutdown), so each wakes every
/// reader; a request that never waits for its body never subscribes.
#[derive(Debug, Clone)]
pub struct ListenerPhase {
    phase: Arc<watch::Sender<Phase>>,
    at_cap_timeout: Duration,
}

impl ListenerPhase {
    pub fn new(at_cap_timeout: Duration) -> Self {
        Self { phase: Arc::new(watch::Sender::new(Phase::Serving)), at_cap_timeout }
    }

    pub fn at_cap_timeout(&self) -> Duration {
        self.at_cap_timeout
    }

    /// Only the accept loop sets the phase, so reading it first keeps the common case to a
    /// read.
    fn set(&self, phase: Phase) {
        if *self.phase.borrow() != phase {
            self.phase.send_replace(phase);
        }
    }

    fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Resolves once the listener is at its cap `at_cap_timeout` or more after `since`;
    /// never while it is not.
    pub async fn at_cap_since(&self, since: Instant) {
        let at = since + self.at_cap_timeout;
        let mut phase = self.subscribe();
        loop {
            if phase.wait_for(|p| *p == Phase::AtCap).await.is_err() {
                return std::future::pending().await;
            }
            tokio::time::sleep_until(at).await;
            if *phase.borrow_and_update() == Phase::AtCap {
                return;
            }
        }
    }
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
    &["head_timeout", "idle_timeout", "at_cap", "head_too_large", "malformed_request", "incomplete_request", "io"];

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

/// A listener's service: what answers each request of each connection. It holds the
/// [`InProgress`] it is given until the answer is made (or given up): that is how the
/// listener knows which connections have a request in progress. (Wrapping each answer in a
/// future of the listener's own that holds it would copy the answer's future once more per
/// request, about 430 instructions for ingest's 4 KiB handler: BENCHMARKS.md, "At the
/// connection cap".)
pub trait HttpService: Fn(Request<Incoming>, InProgress) -> Self::Answer + Clone + Send + Sync + 'static {
    type Answer: Future<Output = Result<Response, Infallible>> + Send + 'static;
}

impl<F, A> HttpService for F
where
    F: Fn(Request<Incoming>, InProgress) -> A + Clone + Send + Sync + 'static,
    A: Future<Output = Result<Response, Infallible>> + Send + 'static,
{
    type Answer = A;
}

/// An axum router as a listener's service (boxed: for the admin listener, whose requests
/// are few).
pub fn router_service(
    router: Router,
) -> impl Fn(Request<Incoming>, InProgress) -> BoxFuture<'static, Result<Response, Infallible>> + Clone + Send + Sync + 'static
{
    let service = TowerToHyperService::new(router);
    move |request, in_progress| {
        let answer = service.call(request);
        Box::pin(async move {
            let answered = answer.await;
            drop(in_progress);
            answered
        })
    }
}

/// Serves `service` on `listener` until `shutdown` resolves, then drains (see the module
/// docs). `phase` is set here and read by the connections and by whoever else holds it.
pub async fn serve(
    listener: TcpListener,
    service: impl HttpService,
    limits: ConnectionLimits,
    metrics: ConnectionMetrics,
    phase: ListenerPhase,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &phase) => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // At the cap the connection is held, unserved, until a slot frees; the ones after
        // it wait in the kernel's backlog.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                phase.set(Phase::AtCap);
                tokio::select! {
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                }
            }
        };
        while connections.try_join_next().is_some() {}
        let held = (slot, OpenGuard::new(metrics.open.clone()));
        connections.spawn(serve_connection(&builder, stream, service.clone(), &phase, held, metrics.closed.clone()));
    }
    drop(listener);
    phase.set(Phase::Stopping);
    drain(connections, limits.drain).await;
}

/// The next connection. The listener is back to [`Phase::Serving`] as soon as no
/// connection is waiting to be accepted.
async fn accept(listener: &TcpListener, phase: &ListenerPhase) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    std::future::poll_fn(|cx| {
        let polled = listener.poll_accept(cx);
        if polled.is_pending() {
            phase.set(Phase::Serving);
        }
        polled
    })
    .await
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

/// Serves one connection, counting it in `closed` under [`CLOSE_REASONS`] when it was
/// closed by hyper's error or by the listener at its cap.
///
/// On [`Phase::Stopping`], a connection that never got a whole request head closes at
/// once (hyper's graceful shutdown would wait for its head); the others finish the
/// request they are handling, if any, and close. On [`Phase::AtCap`], a connection that
/// starts no request for `at_cap_timeout` is closed (`at_cap`): one stalled in its head,
/// or kept alive and idle. One with a request in progress stays: its body is bounded by the
/// handler, its wait for the broker by the response deadline.
fn serve_connection(
    builder: &http1::Builder,
    stream: TcpStream,
    service: impl HttpService,
    phase: &ListenerPhase,
    held: Held,
    closed: IntCounterVec,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let requests = Arc::new(Requests::default());
    let service = {
        let requests = requests.clone();
        service_fn(move |request| service(request, requests.start()))
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let (mut phase, at_cap_timeout) = (phase.subscribe(), phase.at_cap_timeout);
    async move {
        let _held = held;
        tokio::pin!(conn);
        let served = tokio::select! {
            served = conn.as_mut() => served,
            end = until_ended(&mut phase, &requests, at_cap_timeout) => match end {
                Ended::AtCap => {
                    closed.with_label_values(&["at_cap"]).inc();
                    return;
                }
                Ended::Stopping if requests.none_yet() => return,
                Ended::Stopping => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            },
        };
        if let Err(e) = served {
            let reason = close_reason(&e, !requests.none_yet());
            closed.with_label_values(&[reason]).inc();
            tracing::debug!(error = %e, reason, "connection ended with an error");
        }
    }
}

/// Why a connection is ended by the listener rather than by hyper.
enum Ended {
    AtCap,
    Stopping,
}

/// Resolves when the listener stops, or when it has been at its cap for `at_cap_timeout`
/// during which the connection had no request in progress and started none.
async fn until_ended(phase: &mut watch::Receiver<Phase>, requests: &Requests, at_cap_timeout: Duration) -> Ended {
    loop {
        let Ok(now) = phase.wait_for(|p| *p != Phase::Serving).await.map(|p| *p) else {
            return Ended::Stopping;
        };
        if now == Phase::Stopping {
            return Ended::Stopping;
        }
        let before = requests.count();
        tokio::select! {
            () = tokio::time::sleep(at_cap_timeout) => {}
            stopping = phase.wait_for(|p| *p == Phase::Stopping) => {
                drop(stopping);
                return Ended::Stopping;
            }
        }
        let after = requests.count();
        if after == before && Requests::idle(after) && *phase.borrow_and_update() == Phase::AtCap {
            return Ended::AtCap;
        }
    }
}

/// A connection's requests, counted twice: once when a request head has arrived and its
/// answer is being made, and again when that answer is done (or given up). An even count
/// is a connection with no request in progress, and an unchanged one over some time is one
/// that started none meanwhile.
#[derive(Debug, Default)]
struct Requests(AtomicU64);

impl Requests {
    /// A request began; it is in progress until the guard is dropped.
    fn start(self: &Arc<Self>) -> InProgress {
        self.0.fetch_add(1, Ordering::Relaxed);
        InProgress(self.clone())
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn none_yet(&self) -> bool {
        self.count() == 0
    }

    fn idle(count: u64) -> bool {
        count.is_multiple_of(2)
    }
}

/// A request in progress on its connection ([`Requests::start`]), until dropped.
#[derive(Debug)]
pub struct InProgress(Arc<Requests>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.0.fetch_add(1, Ordering::Relaxed);
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
        let (addr, stop, server, _) =
            start_with(max_connections, Duration::from_secs(30), Duration::from_secs(30)).await;
        (addr, stop, server)
    }

    async fn start_with(
        max_connections: usize,
        header_read_timeout: Duration,
        at_cap_timeout: Duration,
    ) -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>, ConnectionMetrics) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let limits = ConnectionLimits { header_read_timeout, max_connections, drain: Duration::from_secs(30) };
        let slow = |millis| {
            get(move || async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                "hi"
            })
        };
        let router =
            Router::new().route("/", get(|| async { "hi" })).route("/slow", slow(300)).route("/slower", slow(1000));
        let (stop, mut stopped) = watch::channel(false);
        let metrics = ConnectionMetrics::unexported();
        let phase = ListenerPhase::new(at_cap_timeout);
        let server =
            tokio::spawn(serve(listener, router_service(router), limits, metrics.clone(), phase, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
        (addr, stop, server, metrics)
    }

    /// Every connection hyper ends by itself is counted under its reason: a stalled head,
    /// a kept-alive connection left idle, a head over the limit (431), a request that is
    /// not HTTP (400) and one cut off in its head.
    #[tokio::test]
    async fn connections_hyper_ends_are_counted_by_reason() {
        let (addr, _stop, _server, metrics) = start_with(16, Duration::from_millis(500), Duration::from_secs(30)).await;
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

    /// At the cap, a connection with a request in progress keeps its slot, however long
    /// the listener stays at the cap; once idle for `at_cap_timeout` it makes room.
    #[tokio::test]
    async fn at_max_connections_the_next_one_waits_for_a_busy_one() {
        let (addr, _stop, _server, metrics) = start_with(1, Duration::from_secs(30), Duration::from_millis(100)).await;
        let mut first = TcpStream::connect(&addr).await.unwrap();
        first.write_all(b"GET /slower HTTP/1.1\r\nhost: t\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut second = TcpStream::connect(&addr).await.unwrap();
        second.write_all(GET).await.unwrap();
        assert_eq!(answer(&mut second, Duration::from_millis(300)).await, None, "served beyond the cap");
        assert_eq!(answer(&mut first, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
        assert_eq!(answer(&mut second, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
        assert_eq!(metrics.closed.with_label_values(&["at_cap"]).get(), 1);
    }

    /// At the cap with a connection waiting, connections that start no request within
    /// `at_cap_timeout` (one stalled in its head, one kept alive and idle) are closed long
    /// before `header_read_timeout`, and the waiting one is served. Below the cap nothing is
    /// closed early.
    #[tokio::test]
    async fn at_the_cap_connections_without_a_request_make_room() {
        let (addr, _stop, _server, metrics) = start_with(2, Duration::from_secs(30), Duration::from_millis(300)).await;
        let mut idle = TcpStream::connect(&addr).await.unwrap();
        idle.write_all(GET).await.unwrap();
        assert_eq!(answer(&mut idle, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
        let mut stalled = TcpStream::connect(&addr).await.unwrap();
        stalled.write_all(b"GET / HTTP/1.1\r\nho").await.unwrap();
        // Both stay open below the cap.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(metrics.open.get(), 2);
        assert_eq!(metrics.closed.with_label_values(&["at_cap"]).get(), 0);

        let waiting = std::time::Instant::now();
        let mut third = TcpStream::connect(&addr).await.unwrap();
        third.write_all(GET).await.unwrap();
        assert_eq!(answer(&mut third, Duration::from_secs(5)).await.as_deref(), Some("HTTP/1.1 200"));
        let served_after = waiting.elapsed();
        assert!(served_after < Duration::from_secs(5), "{served_after:?}");
        for (name, stream) in [("idle", idle), ("stalled", stalled)] {
            let mut rest = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(2), { stream }.read_to_end(&mut rest)).await;
            assert!(matches!(closed, Ok(Ok(_)) | Ok(Err(_))), "{name}: {closed:?}");
        }
        assert_eq!(metrics.closed.with_label_values(&["at_cap"]).get(), 2);
        assert_eq!(metrics.closed.with_label_values(&["head_timeout"]).get(), 0);
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
