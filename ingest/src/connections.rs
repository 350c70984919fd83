//! Serving a listener connection by connection with hyper's HTTP/1.1 server, the way axum
//! recommends when `axum::serve` lacks a knob: a request head must arrive within
//! `header_read_timeout` (hyper also closes kept-alive connections idle that long), at
//! most `max_connections` are open, and shutdown stops accepting, lets the requests in
//! flight finish, and closes whatever is still open at a deadline.
//!
//! HTTP/1.1 only: hyper-util's HTTP/1-or-2 detection reads the first bytes with no timer,
//! so a client that sends a few bytes and stalls would hold its connection forever.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::Router;
use hyper::{
    server::conn::http1,
    service::{Service, service_fn},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus::IntGauge;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore, watch},
    task::JoinSet,
};

/// Largest request head (request line and headers). hyper answers 431 beyond it. It also
/// bounds what a request can add to its Kafka record besides the body.
pub const MAX_REQUEST_HEAD_BYTES: usize = 64 << 10;

/// How long to wait before accepting again after `accept` failed (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// After shutdown began, connections still open this long are closed.
    pub drain: Duration,
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains (see the module docs).
/// `open` counts the open connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    open: IntGauge,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
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
        let held = (slot, OpenGuard::new(open.clone()));
        connections.spawn(serve_connection(&builder, stream, router.clone(), stopping.clone(), held));
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
    router: Router,
    mut stopping: watch::Receiver<bool>,
    held: Held,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let started = Arc::new(AtomicBool::new(false));
    let service = {
        let (router, started) = (TowerToHyperService::new(router), started.clone());
        service_fn(move |request| {
            started.store(true, Ordering::Relaxed);
            router.call(request)
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
            tracing::debug!(error = %e, "connection ended with an error");
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
