//! Ingest benchmark: prints figures, asserts nothing about time.
//!
//! One load generator posts unique, Standard-Webhooks-signed 1 KiB JSON webhooks at
//! rising concurrency (closed loop; each worker on a keep-alive connection of its own) to
//! three targets sharing one tansu broker, which take turns in short slices at each level:
//!   * `hooklake ingest` (release binary, a separate process; 200 only after the ack),
//!   * a plain axum server answering 200 at once (a separate process: the HTTP ceiling),
//!   * a bare rdkafka producer with ingest's exact producer settings, sending the same
//!     records (envelope, key, and headers when ingest sends them) and awaiting each ack
//!     (the Kafka ceiling),
//!   * with `BENCH_SVIX_BRIDGE=<binary>`, svix-bridge, the open-source Svix webhook → Kafka
//!     bridge: the peer, verifying the same signatures and producing to a topic of its own
//!     on the same broker (BENCHMARKS.md says how it was built).
//!
//! The same executable serves two targets for tests/benches/wrk_peer.sh: `--serve-plain`
//! (the plain axum server) and `--serve-floor` (ingest's envelope and publisher behind
//! plain axum, with no checks: the floor under ingest's cost).
//!
//! Ingest runs with `ingest.worker_threads = 1` (`BENCH_INGEST_WORKERS`), as it shares the
//! 2 cores with the generator and the broker. Below each level's lines, the mean latency,
//! and for ingest the means of its own request and produce histograms: where the time goes.
//!
//! Then open-loop rounds at half of ingest's best rate give the latency under moderate
//! load (measured from the scheduled send time, so queueing is not hidden); each round
//! sends to ingest, then from the bare producer at the same rate (the broker's own share
//! of that latency), then to the peer if there is one. The target p99 is that of all rounds together. Ingest's resident
//! memory is sampled throughout; a thread notes the load generator's hiccups (times it
//! could not get a CPU), and /proc/stat the CPU time the hypervisor gave to other guests.
//!
//! The whole run happens twice, on a fresh broker each time: with tansu's memory storage
//! (the broker far from its limit, so the figures are ingest's; the issue allows it for
//! this benchmark) and with its SQLite storage (durable; its single writer is then the
//! bottleneck). `BENCH_BROKER_DELAY_MS` puts tests/py/delay_proxy.py between the broker
//! and its clients, delaying every answer (acknowledgements included), as a cluster whose
//! acks=all crosses zones would; with `BENCH_PROXY_COUNT=1` the proxy also reports, for
//! each target, how many Produce requests its connections had in flight and for how long.
//! BENCHMARKS.md explains the knobs (`BENCH_*`) and the figures.
//!
//!   cargo bench -p hooklake-tests --bench ingest [-- --quick]

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::response::IntoResponse;
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use hmac::Mac;
use hooklake_ingest::publisher::{OutgoingRecord, future_record};
use hooklake_schemas::{
    EnvelopeRef, WebhookEnvelope,
    config::{Config, Env},
    kafka::CONTENT_TYPE_SINGLE_OBJECT,
};
use hooklake_tests::{
    broker::{Broker, ProduceCounts},
    free_port, tools,
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rdkafka::producer::FutureProducer;
use tokio::sync::Semaphore;

const SECRET: &[u8] = b"hooklake-benchmark-signing-secret";
const PAYLOAD_BYTES: usize = 1024;
const TOPIC: &str = "bench.nectar";
/// The peer's topic, on the same broker, with as many partitions as `TOPIC`.
const PEER_TOPIC: &str = "bench.peer";
/// The configured source that every webhook goes to (its topic is `TOPIC`).
const SOURCE: &str = "nectar";
/// The HTTP client's connections to a target, and the open loop's bound on requests in
/// flight (the closed loop's highest level).
const CONNECTIONS: usize = 256;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve-plain") {
        let port: u16 = args[i + 1].parse().expect("port");
        return serve_plain(port);
    }
    if let Some(i) = args.iter().position(|a| a == "--serve-floor") {
        let port: u16 = args[i + 1].parse().expect("port");
        return serve_floor(port, &args[i + 2], &args[i + 3], &args[i + 4]);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // tansu's memory storage first: the broker is then far from its limit, so the figures
    // are ingest's. Then SQLite, a durable broker whose single writer is the bottleneck.
    let hiccups = Hiccups::start();
    let storages = std::env::var("BENCH_STORAGE").unwrap_or_else(|_| "memory sqlite".into());
    for storage in storages.split_whitespace() {
        assert!(matches!(storage, "memory" | "sqlite"), "BENCH_STORAGE: memory and/or sqlite, not {storage}");
        runtime.block_on(run(quick, storage, &hiccups));
    }
}

/// The HTTP ceiling: read the body, answer 200 with a small JSON body, nothing else.
fn serve_plain(port: u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/webhook/{source}",
            axum::routing::post(|_body: Bytes| async { axum::Json(serde_json::json!({"message_id": "x"})) }),
        );
        // ingest's backlog, so that a burst of connections costs both the same.
        let listener = hooklake_ingest::connections::listen(([127, 0, 0, 1], port).into()).expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

/// The floor under ingest (tests/benches/wrk_peer.sh, `BENCH_FLOOR`): what a bridge with
/// ingest's delivery guarantees cannot avoid doing, and nothing else. It reads the body
/// behind plain axum, wraps it in the envelope ingest writes (keyed by the request's
/// `webhook-id`) and answers 200 only once ingest's own publisher (`KafkaPublisher`, the
/// idempotent producer with ingest's settings from the config file) has the broker's ack,
/// 503 when it has not within the response deadline. No signature is checked, no JSON
/// read, no limit kept: the rate it reaches is the most ingest could reach on the same
/// machine and broker if all of its own checks cost nothing.
///
/// With `producer` = `peer`, the same but produced as svix-bridge produces: librdkafka's
/// defaults (acks=all, not idempotent, `linger.ms` 5) and no key (the sticky
/// partitioner). That gives up what ingest keeps (no duplicate on a retried send, one
/// partition per `message_id`), so it only measures what those guarantees cost here.
fn serve_floor(port: u16, config_path: &str, source: &str, producer: &str) {
    use hooklake_ingest::publisher::{KafkaPublisher, Publisher};
    let config = Arc::new(
        Config::from_toml(&std::fs::read_to_string(config_path).expect("config file"), &Env::new()).expect("config"),
    );
    let topic: Arc<str> =
        config.sources.get(source).expect("the floor's source is configured").topic_for(source).into();
    let deadline = config.ingest.response_deadline.get();
    // One runtime thread per CPU of the affinity mask, as ingest's default.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async move {
        enum Producing {
            Ingest(KafkaPublisher),
            Peer(FutureProducer),
        }
        let producing = Arc::new(match producer {
            "ingest" => {
                let publisher = KafkaPublisher::new(config.clone()).expect("publisher");
                publisher.check_ready().await.expect("the broker");
                Producing::Ingest(publisher)
            }
            "peer" => Producing::Peer(
                rdkafka::ClientConfig::new()
                    .set("bootstrap.servers", &config.kafka.brokers)
                    .create()
                    .expect("producer"),
            ),
            other => panic!("--serve-floor: producer `ingest` or `peer`, not {other}"),
        });
        let answer = move |headers: http::HeaderMap, body: Bytes| {
            let (producing, topic) = (producing.clone(), topic.clone());
            async move {
                let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
                let Ok(payload) = std::str::from_utf8(&body) else {
                    return http::StatusCode::BAD_REQUEST.into_response();
                };
                let envelope = EnvelopeRef {
                    message_id: id,
                    source: SOURCE,
                    received_at_micros: chrono::Utc::now().timestamp_micros(),
                    payload,
                    event_type: None,
                    headers: &[("content-type", "application/json")],
                    verified_by: Some("standard_webhooks"),
                };
                let value = envelope.to_single_object();
                let acked = match &*producing {
                    Producing::Ingest(publisher) => {
                        let record =
                            OutgoingRecord::for_envelope(topic, &envelope, value, false, CONTENT_TYPE_SINGLE_OBJECT);
                        publisher.publish(record, deadline).await.is_ok()
                    }
                    Producing::Peer(producer) => {
                        match producer.send_result(rdkafka::producer::FutureRecord::<(), _>::to(&topic).payload(&value))
                        {
                            Ok(delivery) => matches!(delivery.await, Ok(Ok(_))),
                            Err(_) => false,
                        }
                    }
                };
                if acked {
                    axum::Json(serde_json::json!({ "message_id": id })).into_response()
                } else {
                    http::StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            }
        };
        let app = axum::Router::new().route("/webhook/{source}", axum::routing::post(answer));
        let listener = hooklake_ingest::connections::listen(([127, 0, 0, 1], port).into()).expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

/// One request of the load: a unique id and a 1 KiB JSON body, signed.
struct Webhook {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

impl Webhook {
    /// The request headers, signature included (both HTTP clients send these).
    fn headers(&self) -> [(&'static str, &str); 4] {
        [
            ("content-type", "application/json"),
            ("webhook-id", &self.id),
            ("webhook-timestamp", &self.timestamp),
            ("webhook-signature", &self.signature),
        ]
    }
}

fn webhook(run: &str, seq: u64) -> Webhook {
    let id = format!("bench-{run}-{seq}");
    let head = format!(r#"{{"type":"meter.read","id":"{id}","seq":{seq},"kWh":1.25,"pad":""#);
    let body = format!("{head}{}\"}}", "x".repeat(PAYLOAD_BYTES - head.len() - 2));
    debug_assert_eq!(body.len(), PAYLOAD_BYTES);
    let timestamp = hooklake_tests::unix_now().to_string();
    let mut mac = hmac::SimpleHmac::<sha2::Sha256>::new_from_slice(SECRET).expect("key");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body.as_bytes());
    let signature = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    Webhook { id, timestamp, signature, body }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Ingest,
    PlainAxum,
    BareProducer,
    /// svix-bridge, when `BENCH_SVIX_BRIDGE` names its binary.
    SvixBridge,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Self::Ingest => "hooklake ingest",
            Self::PlainAxum => "plain axum",
            Self::BareProducer => "bare producer",
            Self::SvixBridge => "svix-bridge",
        }
    }

    /// The status of a webhook taken: svix-bridge answers 204 No Content, like ingest only
    /// after the broker's ack.
    fn success(self) -> u16 {
        if matches!(self, Self::SvixBridge) { 204 } else { 200 }
    }
}

/// One HTTP/1.1 keep-alive connection, owned by one closed-loop worker: no pool to look
/// up and no lock shared between workers, as in wrk. (The open loop, whose requests come
/// and go, uses reqwest's pool.)
type Connection = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Connection> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
    tokio::spawn(connection);
    Some(sender)
}

/// What a target needs to take one webhook.
struct Load {
    http: reqwest::Client,
    ingest_addr: SocketAddr,
    plain_addr: SocketAddr,
    peer_addr: Option<SocketAddr>,
    /// `/webhook/{SOURCE}`, the path of every webhook request (the peer's too).
    path: String,
    producer: FutureProducer,
    /// `ingest.record_headers`: the bare producer sends the records ingest sends.
    record_headers: bool,
    run: String,
    seq: AtomicU64,
}

impl Load {
    /// The address of an HTTP target (None for the bare producer).
    fn addr(&self, target: Target) -> Option<SocketAddr> {
        match target {
            Target::Ingest => Some(self.ingest_addr),
            Target::PlainAxum => Some(self.plain_addr),
            Target::SvixBridge => Some(self.peer_addr.expect("BENCH_SVIX_BRIDGE is set")),
            Target::BareProducer => None,
        }
    }

    async fn send(&self, target: Target) -> bool {
        let w = webhook(&self.run, self.seq.fetch_add(1, Ordering::Relaxed));
        match self.addr(target) {
            Some(addr) => {
                let url = format!("http://{addr}{}", self.path);
                let request = w.headers().into_iter().fold(self.http.post(url), |r, (k, v)| r.header(k, v));
                let resp = request.body(w.body).send().await;
                match resp {
                    Ok(r) if r.status() == target.success() => r.bytes().await.is_ok(),
                    _ => false,
                }
            }
            None => {
                let envelope = WebhookEnvelope {
                    message_id: w.id.clone(),
                    source: SOURCE.into(),
                    received_at_micros: chrono::Utc::now().timestamp_micros(),
                    payload: w.body,
                    event_type: Some("meter.read".into()),
                    headers: [("content-type".to_string(), "application/json".to_string())].into(),
                    verified_by: Some("standard_webhooks".into()),
                };
                // The record ingest produces, with headers when ingest sends them (tansu
                // stores each header as a row of its own).
                let value = envelope.to_single_object();
                let out = envelope.with_borrowed(|e| {
                    OutgoingRecord::for_envelope(
                        TOPIC.into(),
                        e,
                        value,
                        self.record_headers,
                        CONTENT_TYPE_SINGLE_OBJECT,
                    )
                });
                match self.producer.send_result(future_record(&out)) {
                    Ok(delivery) => matches!(delivery.await, Ok(Ok(_))),
                    Err(_) => false,
                }
            }
        }
    }

    /// [`Load::send`] for the closed loop: HTTP targets get the request on the worker's own
    /// connection (opened, or opened again, as needed).
    async fn send_on(&self, target: Target, conn: &mut Option<Connection>) -> bool {
        let Some(addr) = self.addr(target) else { return self.send(target).await };
        if conn.as_ref().is_none_or(Connection::is_closed) {
            *conn = connect(addr).await;
        }
        let Some(sender) = conn.as_mut() else { return false };
        let w = webhook(&self.run, self.seq.fetch_add(1, Ordering::Relaxed));
        let request = w
            .headers()
            .into_iter()
            .fold(http::Request::post(&self.path).header(http::header::HOST, "127.0.0.1"), |r, (k, v)| r.header(k, v))
            .body(Full::new(Bytes::from(w.body)))
            .expect("a valid request");
        if sender.ready().await.is_err() {
            *conn = None;
            return false;
        }
        match sender.send_request(request).await {
            Ok(response) => {
                let ok = response.status() == target.success();
                response.into_body().collect().await.is_ok() && ok
            }
            Err(_) => {
                *conn = None;
                false
            }
        }
    }
}

struct Figures {
    rps: f64,
    mean_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// The `p` quantile (0 to 1) of sorted latencies, in milliseconds.
fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1000.0
}

fn figures(mut latencies: Vec<Duration>, errors: u64, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let total: Duration = latencies.iter().sum();
    Figures {
        rps: latencies.len() as f64 / elapsed.as_secs_f64(),
        mean_ms: total.as_secs_f64() * 1000.0 / latencies.len().max(1) as f64,
        p50_ms: percentile_ms(&latencies, 0.50),
        p99_ms: percentile_ms(&latencies, 0.99),
        errors,
    }
}

/// The p99 of several open-loop rounds taken together; a failed request counts as slower
/// than any answer.
fn pooled_p99_ms(mut latencies: Vec<Duration>, errors: u64) -> f64 {
    latencies.extend(std::iter::repeat_n(Duration::MAX, errors as usize));
    latencies.sort_unstable();
    percentile_ms(&latencies, 0.99)
}

/// What one target's slices of a closed-loop level add up to.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: u64,
    elapsed: Duration,
    /// CPU seconds of the load generator, the target's server process and the broker.
    cpu: [f64; 3],
    /// The guest's CPU seconds in all (the three above, other processes, softirqs).
    machine: MachineCpu,
    /// With `BENCH_PROXY_COUNT`, what the delay proxy counted during the target's slices.
    produce: ProduceCounts,
}

/// "Produce 812/s; requests in flight on a busy connection: mean 3.1, at 1/2/3/4/5/6+:
/// 10/20/…%": whether the target's producer sits at a limit of requests in flight.
fn describe_produce(counts: &ProduceCounts, elapsed: Duration) -> String {
    let busy = counts.seconds.values().sum::<f64>().max(1e-9);
    let mean = counts.seconds.iter().map(|(n, s)| *n as f64 * s).sum::<f64>() / busy;
    let share = |n: u64| counts.seconds.get(&n).copied().unwrap_or(0.0) * 100.0 / busy;
    let over = counts.seconds.range(6..).map(|(_, s)| s).sum::<f64>() * 100.0 / busy;
    let by_n: Vec<String> = (1..=5).map(|n| format!("{:.0}", share(n))).chain([format!("{over:.0}")]).collect();
    format!(
        "Produce {:.0}/s; requests in flight on a busy connection: mean {mean:.2}, at 1/2/3/4/5/6+: {} % of the time",
        counts.requests as f64 / elapsed.as_secs_f64().max(1e-9),
        by_n.join("/")
    )
}

/// Sums and counts of two of ingest's histograms: the whole request in its handler, and
/// produce (send to the broker's ack) within it. Their means, next to the mean the load
/// generator saw, tell where a request's time goes.
#[derive(Clone, Copy)]
struct IngestTimes {
    request: (f64, f64),
    produce: (f64, f64),
}

impl IngestTimes {
    /// The histograms' sums and counts in the `/metrics` text of ingest's admin port.
    fn scrape(metrics: &str) -> Self {
        let read = |name: &str, labels: &[(&str, &str)]| {
            let series = |suffix: &str| {
                hooklake_tests::metrics::value(metrics, &format!("{name}{suffix}"), labels)
                    .unwrap_or_else(|| panic!("{name}{suffix} {labels:?} is not in ingest's /metrics"))
            };
            (series("_sum"), series("_count"))
        };
        Self {
            request: read(hooklake_ingest::metrics::REQUEST_DURATION_SECONDS, &[("source", SOURCE)]),
            produce: read(hooklake_ingest::metrics::PRODUCE_DURATION_SECONDS, &[]),
        }
    }

    fn since(self, earlier: Self) -> Self {
        let d = |a: (f64, f64), b: (f64, f64)| (a.0 - b.0, a.1 - b.1);
        Self { request: d(self.request, earlier.request), produce: d(self.produce, earlier.produce) }
    }

    /// The mean request and produce times, in milliseconds.
    fn means_ms(self) -> (f64, f64) {
        let mean = |(sum, count): (f64, f64)| sum * 1e3 / count.max(1.0);
        (mean(self.request), mean(self.produce))
    }
}

/// `concurrency` workers, each sending the next request when its last one is answered;
/// the answered requests' latencies and the errors are added to `tally`.
async fn closed_loop(load: &Arc<Load>, target: Target, concurrency: usize, duration: Duration, tally: &mut Tally) {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (load, stop) = (load.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut lat, mut errors, mut conn) = (Vec::new(), 0u64, None);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    if load.send_on(target, &mut conn).await {
                        lat.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    tally.elapsed += started.elapsed();
    for w in workers {
        let (lat, e) = w.await.expect("worker");
        tally.latencies.extend(lat);
        tally.errors += e;
    }
}

/// One answered open-loop request.
#[derive(Clone, Copy)]
struct Sample {
    /// When it was due, from the start of the run.
    offset: Duration,
    /// From when it was due to its answer.
    latency: Duration,
    /// From when it was due until the generator's pacing task let it go (the generator's
    /// runtime was busy, or off the CPU).
    timer_late: Duration,
    /// From when it was due until it had one of the `CONNECTIONS` permits: `timer_late`
    /// plus the wait for a free connection, which a slow target causes (every permit held
    /// by an unanswered request), not the generator.
    permit_late: Duration,
    /// From when it was due until its task started on the generator's runtime and sent
    /// it: `permit_late` plus the wait for a worker of that runtime (a busy generator).
    late_start: Duration,
}

/// Requests at a fixed rate whatever the answers; latency counts from the scheduled time.
/// Also returns every answered request, so the tail can be located in time, and what the
/// kernel's TCP counters moved by during the run.
async fn open_loop(
    load: &Arc<Load>,
    target: Target,
    rate: f64,
    duration: Duration,
) -> (Figures, Vec<Sample>, TcpCounters) {
    let tcp_before = TcpCounters::now();
    let interval = Duration::from_secs_f64(1.0 / rate);
    // No more requests in flight than the client keeps connections: beyond that, reqwest
    // would open (and later close) extra connections, and that churn costs the generator
    // enough CPU to fall behind for good once it has fallen behind once.
    let in_flight = Arc::new(Semaphore::new(CONNECTIONS));
    let started = tokio::time::Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    // The schedule is kept by this task, on the runtime that sends the requests. A
    // thread of its own with a current-thread runtime, tried before the catch-up below,
    // fell steadily behind the rate (BENCHMARKS.md, "The open loop's stalls").
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let offset = interval.mul_f64(i as f64);
        let scheduled = started + offset;
        // Only a request not yet due waits for the timer: a timer already due still
        // costs a turn of the runtime, and one turn per request kept a pacer that had
        // fallen behind from ever catching up.
        if scheduled > tokio::time::Instant::now() {
            tokio::time::sleep_until(scheduled).await;
        }
        let timer_late = scheduled.elapsed();
        let (load, permit) = (load.clone(), in_flight.clone().acquire_owned().await.expect("semaphore"));
        let permit_late = scheduled.elapsed();
        tasks.push(tokio::spawn(async move {
            let late_start = scheduled.elapsed();
            let ok = load.send(target).await;
            drop(permit);
            ok.then(|| Sample { offset, latency: scheduled.elapsed(), timer_late, permit_late, late_start })
        }));
    }
    let (mut samples, mut errors) = (Vec::new(), 0);
    for t in tasks {
        match t.await.expect("task") {
            Some(s) => samples.push(s),
            None => errors += 1,
        }
    }
    let mut f = figures(samples.iter().map(|s| s.latency).collect(), errors, started.elapsed());
    f.rps = total as f64 / duration.as_secs_f64();
    (f, samples, TcpCounters::now().since(tcp_before))
}

/// Where in time the requests slower than `over` were (a broker or process stall puts
/// them in a few windows, steady queueing spreads them over the run), and how many of
/// them were sent late by more than half of `over`: held by the generator's pacing task
/// (busy or off the CPU), waiting for one of its `CONNECTIONS` connections (all held by
/// unanswered requests: the target was slow), or waiting for a worker of the generator's
/// runtime (the generator was busy).
fn tail_shape(samples: &[Sample], over: Duration) -> String {
    const WINDOW_MS: u128 = 250;
    let slow: Vec<_> = samples.iter().filter(|s| s.latency > over).collect();
    if slow.is_empty() {
        return format!("none over {} ms", over.as_millis());
    }
    let mut windows = std::collections::BTreeMap::<u128, (usize, Duration)>::new();
    for s in &slow {
        let w = windows.entry(s.offset.as_millis() / WINDOW_MS).or_default();
        w.0 += 1;
        w.1 = w.1.max(s.latency);
    }
    let mut worst: Vec<_> = windows.iter().collect();
    worst.sort_by_key(|w| std::cmp::Reverse(w.1.0));
    let top: Vec<String> = worst
        .iter()
        .take(4)
        .map(|(w, (n, max))| {
            format!("{n} at {:.2} s (max {:.0} ms)", (**w * WINDOW_MS) as f64 / 1000.0, max.as_secs_f64() * 1e3)
        })
        .collect();
    let half = over / 2;
    let timer_late = slow.iter().filter(|s| s.timer_late > half).count();
    let waited = slow.iter().filter(|s| s.timer_late <= half && s.permit_late > half).count();
    let queued = slow.iter().filter(|s| s.permit_late <= half && s.late_start > half).count();
    format!(
        "{} of {} over {} ms (sent late: {timer_late} by the generator's pacer, {waited} waiting for a connection, \
         {queued} waiting for the generator's runtime), \
         in {} of {} windows of {WINDOW_MS} ms; most: {}",
        slow.len(),
        samples.len(),
        over.as_millis(),
        windows.len(),
        samples.last().map_or(0, |s| s.offset.as_millis() / WINDOW_MS + 1),
        top.join(", ")
    )
}

/// How many requests ingest's own request-duration histogram counts over 25 ms, in the
/// `/metrics` text of its admin port.
fn ingest_requests_over_25ms(metrics: &str) -> f64 {
    let name = hooklake_ingest::metrics::REQUEST_DURATION_SECONDS;
    let series = |suffix: &str, labels: &[(&str, &str)]| {
        hooklake_tests::metrics::value(metrics, &format!("{name}{suffix}"), labels)
            .unwrap_or_else(|| panic!("{name}{suffix} {labels:?} is not in ingest's /metrics"))
    };
    series("_count", &[("source", SOURCE)]) - series("_bucket", &[("source", SOURCE), ("le", "0.025")])
}

/// A thread that sleeps 1 ms at a time and notes every wake-up that came more than
/// `THRESHOLD` late (a "hiccup", as jHiccup calls it): time in which a thread of the load
/// generator could not get a CPU, whatever its tasks were doing. It runs outside the
/// generator's Tokio runtime, so a busy runtime does not show here; a process held off the
/// CPU by the guest's scheduler, or a paused virtual CPU, does.
struct Hiccups {
    started: Instant,
    seen: Arc<std::sync::Mutex<Vec<(Duration, Duration)>>>,
}

impl Hiccups {
    const THRESHOLD: Duration = Duration::from_millis(5);

    fn start() -> Self {
        let (started, seen) = (Instant::now(), Arc::new(std::sync::Mutex::new(Vec::new())));
        let log = seen.clone();
        std::thread::spawn(move || {
            loop {
                let before = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                let late = before.elapsed().saturating_sub(Duration::from_millis(1));
                if late > Self::THRESHOLD {
                    log.lock().expect("hiccups").push((before - started, late));
                }
            }
        });
        Self { started, seen }
    }

    /// The hiccups that began between `from` and `to`: (when, from `from`; how long).
    fn between(&self, from: Instant, to: Instant) -> Vec<(Duration, Duration)> {
        let (a, b) = (from - self.started, to - self.started);
        self.seen
            .lock()
            .expect("hiccups")
            .iter()
            .filter(|(at, _)| *at >= a && *at < b)
            .map(|&(at, d)| (at - a, d))
            .collect()
    }
}

/// The whole guest's CPU times so far, summed over the cores, in seconds (/proc/stat).
#[derive(Clone, Copy, Default)]
struct MachineCpu {
    /// Time the cores ran anything: every process, the kernel, interrupts and softirqs
    /// (where loopback TCP is processed).
    busy: f64,
    /// Time the hypervisor gave to other guests.
    steal: f64,
}

impl MachineCpu {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // The first line: "cpu user nice system idle iowait irq softirq steal ...", in ticks.
        let ticks: Vec<f64> = stat
            .lines()
            .next()
            .map(|l| l.split_whitespace().skip(1).map(|v| v.parse().unwrap_or(0.0)).collect())
            .unwrap_or_default();
        let t = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / TICKS_PER_SECOND;
        Self { busy: t(0) + t(1) + t(2) + t(5) + t(6), steal: t(7) }
    }

    fn since(self, earlier: Self) -> Self {
        Self { busy: self.busy - earlier.busy, steal: self.steal - earlier.steal }
    }
}

impl std::ops::AddAssign for MachineCpu {
    fn add_assign(&mut self, other: Self) {
        self.busy += other.busy;
        self.steal += other.steal;
    }
}

/// The load generator's threads at a higher scheduling priority while it lives, then
/// back at the process's own (`BENCH_GENERATOR_NICE`, default -10; empty leaves them).
///
/// In the open loop the generator (a Rust HTTP client, 5-8 times wrk's CPU per request)
/// shares the 2 cores with the target and the broker, and at its own priority most slow
/// requests of a bad round were sent late by its pacer (`tail_shape`), then all at once:
/// its tail, not the target's. The hiccup thread, which sleeps, did not see it. Clients
/// are elsewhere in production, so here they go first (BENCHMARKS.md, "The open loop's
/// stalls").
struct GeneratorPriority {
    reset_to: Option<i32>,
}

impl GeneratorPriority {
    fn raise() -> (Self, String) {
        let nice = match std::env::var("BENCH_GENERATOR_NICE") {
            Ok(v) if v.is_empty() => return (Self { reset_to: None }, "at the process's priority".into()),
            Ok(v) => v.parse::<i32>().expect("BENCH_GENERATOR_NICE: a nice value"),
            Err(_) => -10,
        };
        // The nice value is field 19 of proc(5).
        let own = stat_fields(&read("/proc/self/stat")).get(16).and_then(|v| v.parse().ok()).unwrap_or(0);
        match renice_threads(nice) {
            Ok(()) => (Self { reset_to: Some(own) }, format!("at nice {nice}")),
            Err(e) => (Self { reset_to: None }, format!("at the process's priority ({e})")),
        }
    }
}

impl Drop for GeneratorPriority {
    fn drop(&mut self) {
        if let Some(nice) = self.reset_to
            && let Err(e) = renice_threads(nice)
        {
            eprintln!("cannot give the load generator its priority back: {e}");
        }
    }
}

/// Sets the nice value of every thread of this process (Linux keeps one per thread;
/// threads started later inherit their creator's).
fn renice_threads(nice: i32) -> Result<(), String> {
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .map_err(|e| e.to_string())?
        .filter_map(|t| Some(t.ok()?.file_name().to_string_lossy().into_owned()))
        .collect();
    let out = std::process::Command::new("renice")
        .args(["-n", &nice.to_string(), "-p"])
        .args(&threads)
        .output()
        .map_err(|e| format!("renice: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("renice failed").to_owned())
    }
}

/// The kernel's TCP counters that a stall on loopback would show: segments sent again,
/// SYNs sent again, listen queues that overflowed, retransmission timeouts. Whole-machine
/// counts (/proc/net/snmp and /proc/net/netstat), read before and after each open loop.
#[derive(Clone, Copy, Default, PartialEq)]
struct TcpCounters {
    retransmitted: u64,
    syn_retransmitted: u64,
    listen_overflows: u64,
    timeouts: u64,
}

impl TcpCounters {
    fn now() -> Self {
        let (snmp, netstat) = (read("/proc/net/snmp"), read("/proc/net/netstat"));
        Self {
            retransmitted: counter(&snmp, "Tcp:", "RetransSegs"),
            syn_retransmitted: counter(&netstat, "TcpExt:", "TCPSynRetrans"),
            listen_overflows: counter(&netstat, "TcpExt:", "ListenOverflows"),
            timeouts: counter(&netstat, "TcpExt:", "TCPTimeouts"),
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            retransmitted: self.retransmitted - earlier.retransmitted,
            syn_retransmitted: self.syn_retransmitted - earlier.syn_retransmitted,
            listen_overflows: self.listen_overflows - earlier.listen_overflows,
            timeouts: self.timeouts - earlier.timeouts,
        }
    }
}

impl std::fmt::Display for TcpCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} segments sent again ({} SYNs), {} timeouts, {} listen overflows",
            self.retransmitted, self.syn_retransmitted, self.timeouts, self.listen_overflows
        )
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The counter `name` of the group `prefix` in /proc/net/snmp or /proc/net/netstat text,
/// where each group is two lines with the same prefix: the names, then the values.
fn counter(text: &str, prefix: &str, name: &str) -> u64 {
    let mut rows = text.lines().filter(|l| l.starts_with(prefix));
    let (Some(names), Some(values)) = (rows.next(), rows.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// The fields of a /proc/<pid>/stat text after the command name (which may contain
/// spaces): field 3 of proc(5) is the first.
fn stat_fields(stat: &str) -> Vec<&str> {
    stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect()
}

/// The unit of /proc's CPU times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) used so far by `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = read(&format!("/proc/{pid}/stat"));
    let fields = stat_fields(&stat);
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND // utime, stime
}

/// Resident memory of `pid` in MiB: (current, high-water mark).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn config_toml(brokers: &str, port: u16, admin: u16) -> String {
    // Unset: hooklake's default `linger.ms` (1), for ingest and the bare producer alike.
    let linger = std::env::var("BENCH_LINGER_MS").map_or(String::new(), |v| format!("\"linger.ms\" = \"{v}\""));
    // One runtime thread by default: ingest shares the 2 cores with the load generator and
    // the broker, and one thread hands fewer requests and buffers between threads
    // (BENCHMARKS.md has the A/B). An empty value leaves hooklake's default, one per CPU.
    let workers = match std::env::var("BENCH_INGEST_WORKERS").as_deref() {
        Ok("") => String::new(),
        Ok(n) => format!("worker_threads = {n}"),
        Err(_) => "worker_threads = 1".into(),
    };
    // Unset: hooklake's default (no headers).
    let headers = std::env::var("BENCH_RECORD_HEADERS").map_or(String::new(), |v| format!("record_headers = {v}"));
    // Unset: hooklake's default (`max_connections`; only `max_in_flight_bytes` bounds the bodies).
    let in_flight =
        std::env::var("BENCH_INGEST_MAX_IN_FLIGHT").map_or(String::new(), |v| format!("max_in_flight = {v}"));
    format!(
        r#"
[kafka]
brokers = "{brokers}"
[ingest]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"
{workers}
{headers}
{in_flight}
[kafka.properties]
{linger}
[sources.{SOURCE}]
topic = "{TOPIC}"
auth = {{ type = "standard_webhooks", secrets = ["whsec_{secret}"] }}
"#,
        secret = STANDARD.encode(SECRET),
    )
}

/// svix-bridge's configuration: one receiver at `/webhook/{SOURCE}` that verifies the same
/// Standard Webhooks signatures (its `svix` verification) and produces to `PEER_TOPIC`
/// with its own producer settings (librdkafka's defaults, acks=all, not idempotent).
fn peer_yaml(brokers: &str, port: u16) -> String {
    format!(
        r#"http_listen_address: "127.0.0.1:{port}"
log_level: "info"
receivers:
  - name: "bench"
    input:
      type: "webhook"
      path_id: "{SOURCE}"
      verification:
        type: "svix"
        endpoint_secret: "whsec_{secret}"
    output:
      type: "kafka"
      kafka_bootstrap_brokers: "{brokers}"
      kafka_topic: "{PEER_TOPIC}"
      kafka_security_protocol: "plaintext"
"#,
        secret = STANDARD.encode(SECRET),
    )
}

/// The broker, behind tests/py/delay_proxy.py when `BENCH_BROKER_DELAY_MS` is set: every
/// answer then reaches the clients that many milliseconds late.
async fn start_broker(storage: &str) -> (Broker, Option<tokio::process::Child>) {
    match std::env::var("BENCH_BROKER_DELAY_MS").ok().filter(|d| d != "0" && !d.is_empty()) {
        Some(ms) => {
            let delay = Duration::from_millis(ms.parse().expect("BENCH_BROKER_DELAY_MS: milliseconds"));
            let (broker, proxy) = if proxy_counts() {
                Broker::start_delayed_counting(storage, delay).await
            } else {
                Broker::start_delayed(storage, delay).await
            };
            (broker, Some(proxy))
        }
        None => (Broker::start_with_storage(storage), None),
    }
}

/// `BENCH_PROXY_COUNT=1`: the delay proxy also reads the Kafka frames and counts Produce
/// requests in flight (it costs the proxy some CPU, so it is off by default).
fn proxy_counts() -> bool {
    std::env::var("BENCH_PROXY_COUNT").is_ok_and(|v| v == "1")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
}

async fn wait_http(url: &str) {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    for _ in 0..300 {
        if client.get(url).send().await.is_ok_and(|r| r.status() != 503) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} did not come up");
}

async fn run(quick: bool, storage: &str, hiccups: &Hiccups) {
    let duration = Duration::from_secs(env_or("BENCH_SECONDS", if quick { 2 } else { 8 }));
    let default_levels = if quick { "16 128" } else { "1 16 64 128 256" };
    let levels: Vec<usize> = std::env::var("BENCH_LEVELS")
        .unwrap_or_else(|_| default_levels.into())
        .split_whitespace()
        .map(|l| l.parse().expect("BENCH_LEVELS: concurrency levels, space-separated"))
        .collect();
    let (broker, _proxy) = start_broker(storage).await;
    let (port, admin, plain_port, peer_port) = (free_port(), free_port(), free_port(), free_port());
    let toml = config_toml(&broker.bootstrap(), port, admin);
    let config = Config::from_toml(&toml, &Env::new()).expect("config");
    hooklake_ingest::publisher::ensure_topics(&config.kafka, &[TOPIC.to_owned(), PEER_TOPIC.to_owned()])
        .await
        .expect("topics");

    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("bench.toml"), &toml).expect("config file");
    let mut ingest = std::process::Command::new(tools::hooklake_bin())
        .args(["ingest", "--config"])
        .arg(dir.path().join("bench.toml"))
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("hooklake ingest");
    let mut plain = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--serve-plain", &plain_port.to_string()])
        .spawn()
        .expect("plain server");
    let mut peer = std::env::var_os("BENCH_SVIX_BRIDGE").map(|bin| {
        std::fs::write(dir.path().join("svix-bridge.yaml"), peer_yaml(&broker.bootstrap(), peer_port))
            .expect("peer config");
        std::process::Command::new(&bin)
            .arg("--cfg-file")
            .arg(dir.path().join("svix-bridge.yaml"))
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap_or_else(|e| panic!("BENCH_SVIX_BRIDGE={}: {e}", bin.to_string_lossy()))
    });
    wait_http(&format!("http://127.0.0.1:{admin}/readyz")).await;
    wait_http(&format!("http://127.0.0.1:{plain_port}/")).await;
    if peer.is_some() {
        wait_http(&format!("http://127.0.0.1:{peer_port}/")).await;
    }

    let producer: FutureProducer =
        hooklake_ingest::publisher::producer_config(&config).expect("producer config").create().expect("producer");
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let load = Arc::new(Load {
        http: reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CONNECTIONS).build().expect("client"),
        ingest_addr: local(port),
        plain_addr: local(plain_port),
        peer_addr: peer.as_ref().map(|_| local(peer_port)),
        path: format!("/webhook/{SOURCE}"),
        producer,
        record_headers: config.ingest.record_headers,
        run: uuid::Uuid::now_v7().simple().to_string()[20..].to_owned(),
        seq: AtomicU64::new(0),
    });

    let ingest_pid = ingest.id();
    let peer_pid = peer.as_ref().map(std::process::Child::id);
    // Peak resident memory of ingest and of the peer, in KiB.
    let peak_rss = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let sampler = {
        let peak = peak_rss.clone();
        tokio::spawn(async move {
            loop {
                for (pid, peak) in [Some(ingest_pid), peer_pid].into_iter().zip(peak.iter()) {
                    if let Some(pid) = pid {
                        peak.fetch_max((rss_mib(pid).0 * 1024.0) as u64, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (idle_rss, _) = rss_mib(ingest_pid);

    // The targets in the order they take turns, and the process serving each (the bare
    // producer runs inside the generator).
    let mut targets = vec![(Target::PlainAxum, Some(plain.id())), (Target::BareProducer, None)];
    targets.push((Target::Ingest, Some(ingest_pid)));
    if let Some(pid) = peer_pid {
        targets.push((Target::SvixBridge, Some(pid)));
    }
    // Warm up connections, topic metadata and the producers.
    for &(target, _) in &targets {
        closed_loop(&load, target, 8, Duration::from_millis(500), &mut Tally::default()).await;
    }

    let delay = std::env::var("BENCH_BROKER_DELAY_MS").unwrap_or_default();
    println!();
    println!(
        "hooklake ingest benchmark: {PAYLOAD_BYTES} B signed JSON webhooks, tansu 0.6.0 ({} storage, `hooklake broker`){}",
        broker.storage(),
        if delay.is_empty() || delay == "0" { String::new() } else { format!(", answers delayed {delay} ms") }
    );
    println!(
        "ingest's records: keyed by message_id, {}",
        if config.ingest.record_headers { "with hooklake's 3 headers" } else { "no headers (the default)" }
    );
    let slices = env_or("BENCH_SLICES", if quick { 1 } else { 4 }) as u32;
    println!(
        "{} s per target and level, closed loop (each worker sends when answered), in {slices} slices taking turns",
        duration.as_secs()
    );
    println!();
    println!("CPU µs/req: CPU time each process spent per answered request (2 cores shared by all)");
    println!("cpu other: the rest of the guest's busy time (other processes, kernel); /proc/stat samples it");
    println!("  at each tick, so it is only meaningful near saturation (it goes negative at low rates);");
    println!("cpu total: all of the guest's busy time per answered request");
    println!("steal ms: CPU time the hypervisor gave to other guests during the level (both cores)");
    println!(
        "{:<16} {:>5} {:>9} {:>8} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "target",
        "conc",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cpu gen",
        "cpu server",
        "cpu broker",
        "cpu other",
        "cpu total",
        "steal ms"
    );
    let metrics_url = format!("http://127.0.0.1:{admin}/metrics");
    let scrape = || async { load.http.get(&metrics_url).send().await.expect("metrics").text().await.expect("metrics") };
    let broker_pid = broker.pid().expect("broker runs");
    let self_pid = std::process::id();
    let index = |t: Target| targets.iter().position(|&(x, _)| x == t);
    let (ingest_i, peer_i) = (index(Target::Ingest).expect("ingest"), index(Target::SvixBridge));
    let mut best = vec![0.0f64; targets.len()];
    // ingest ÷ the peer at each level.
    let mut peer_ratios = Vec::new();
    for &c in &levels {
        // The targets take turns in short slices, so a change in the machine's speed
        // during the level (other guests, the broker's growing memory) falls on all
        // alike instead of on whichever ran at the time.
        let mut tallies: Vec<Tally> = targets.iter().map(|_| Tally::default()).collect();
        // Only ingest's slices send to ingest, so its histograms' change over the level
        // is theirs.
        let ingest_before = IngestTimes::scrape(&scrape().await);
        for _ in 0..slices {
            for (&(target, server_pid), tally) in targets.iter().zip(&mut tallies) {
                let pids = [Some(self_pid), server_pid, Some(broker_pid)];
                let cpu = || pids.map(|p| p.map_or(0.0, cpu_seconds));
                let (before, machine_before) = (cpu(), MachineCpu::now());
                let proxy_before = broker.proxy_stats();
                closed_loop(&load, target, c, duration / slices, tally).await;
                let (after, machine) = (cpu(), MachineCpu::now().since(machine_before));
                for k in 0..3 {
                    tally.cpu[k] += after[k] - before[k];
                }
                tally.machine += machine;
                if let Some(earlier) = proxy_before {
                    // Every request of the slice has been answered; the proxy writes its
                    // counts every half second.
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    tally.produce.add(broker.proxy_stats().expect("the proxy's counts").since(&earlier));
                }
            }
        }
        let in_ingest = IngestTimes::scrape(&scrape().await).since(ingest_before);
        let mut rates = vec![0.0; targets.len()];
        for (i, (&(target, _), mut tally)) in targets.iter().zip(tallies).enumerate() {
            let answered = tally.latencies.len() as f64;
            let per_req = |k: usize| tally.cpu[k] * 1e6 / answered.max(1.0);
            let all = tally.machine.busy * 1e6 / answered.max(1.0);
            let (produce, elapsed) = (std::mem::take(&mut tally.produce), tally.elapsed);
            let f = figures(tally.latencies, tally.errors, tally.elapsed);
            best[i] = best[i].max(f.rps);
            rates[i] = f.rps;
            println!(
                "{:<16} {:>5} {:>9.0} {:>8.2} {:>8.2} {:>7} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>9.0}",
                target.name(),
                c,
                f.rps,
                f.p50_ms,
                f.p99_ms,
                f.errors,
                per_req(0),
                per_req(1),
                per_req(2),
                all - per_req(0) - per_req(1) - per_req(2),
                all,
                tally.machine.steal * 1e3
            );
            // Where the time goes: the mean the generator saw, and ingest's own account.
            match target {
                Target::Ingest => {
                    let (handler, produce) = in_ingest.means_ms();
                    println!(
                        "{:<16} {:>5} mean {:.2} ms: {handler:.2} in ingest's handler, of which {produce:.2} in produce (send to ack)",
                        "", "", f.mean_ms
                    );
                }
                Target::BareProducer => println!("{:<16} {:>5} mean {:.2} ms (send to ack)", "", "", f.mean_ms),
                Target::PlainAxum | Target::SvixBridge => {}
            }
            if proxy_counts() && target != Target::PlainAxum {
                println!("{:<16} {:>5} {}", "", "", describe_produce(&produce, elapsed));
            }
        }
        if let Some(p) = peer_i {
            let ratio = rates[ingest_i] / rates[p].max(1.0);
            println!("{:<16} {:>5} ingest ÷ svix-bridge = {ratio:.2}", "", "");
            peer_ratios.push((c, ratio));
        }
    }
    let rate_of = |t: Target| index(t).map_or(0.0, |i| best[i]);
    let (plain_best, producer_best, ingest_best) =
        (rate_of(Target::PlainAxum), rate_of(Target::BareProducer), rate_of(Target::Ingest));
    let ceiling = plain_best.min(producer_best);
    let half = std::env::var("BENCH_OPEN_RATE")
        .ok()
        .map_or(ingest_best / 2.0, |r| r.parse().expect("BENCH_OPEN_RATE: requests per second"));
    let rounds = env_or("BENCH_OPEN_ROUNDS", if quick { 1 } else { 3 });
    println!();
    if let Some(p) = peer_i {
        let by_level: Vec<_> = peer_ratios.iter().map(|(c, r)| format!("{r:.2} at {c}")).collect();
        println!(
            "ingest ÷ svix-bridge at their best = {:.2} ({ingest_best:.0} ÷ {:.0} req/s); by level: {}",
            ingest_best / best[p].max(1.0),
            best[p],
            by_level.join(", ")
        );
    }
    println!(
        "best sustained: ingest {ingest_best:.0} req/s, plain axum {plain_best:.0}, bare producer {producer_best:.0}"
    );
    println!("ingest ÷ min(plain axum, bare producer) = {:.2}   (target ≥ 0.70)", ingest_best / ceiling);
    println!();
    let (priority, generator) = GeneratorPriority::raise();
    println!(
        "open loop at {half:.0} req/s (half of ingest's best), {rounds} rounds: ingest, then the bare producer{} at the same rate; the load generator {generator}",
        if peer_i.is_some() { " and svix-bridge" } else { "" }
    );
    println!(
        "  slow: requests over 25 ms; in ingest: of those, ingest's own request duration (its histogram) over 25 ms"
    );
    println!(
        "  hiccup: the longest time a thread of the load generator waited for a CPU; steal: CPU time taken by the hypervisor"
    );
    println!(
        "{:>7} {:>10} {:>10} {:>7} {:>7} {:>10} {:>9} {:>9} {:>10} {:>10} {:>7} {:>10}{}",
        "round",
        "ingest p50",
        "p99 ms",
        "slow",
        "in ingest",
        "broker µs",
        "hiccup ms",
        "steal ms",
        "bare p50",
        "p99 ms",
        "slow",
        "broker µs",
        if peer_i.is_some() { format!(" {:>10} {:>10} {:>7}", "peer p50", "p99 ms", "slow") } else { String::new() }
    );
    let over = Duration::from_millis(25);
    let slow = |samples: &[Sample]| samples.iter().filter(|s| s.latency > over).count();
    let (mut ingest_p99s, mut bare_p99s, mut peer_p99s) = (Vec::new(), Vec::new(), Vec::new());
    let mut worst = None::<(f64, Vec<_>, Vec<_>)>;
    let mut peer_worst = None::<(f64, Vec<Sample>)>;
    // Every round's latencies and errors, for the p99 of the whole half-load time.
    let (mut ingest_all, mut bare_all, mut peer_all) = ((Vec::new(), 0u64), (Vec::new(), 0u64), (Vec::new(), 0u64));
    for round in 1..=rounds {
        let (metrics_before, broker_before) = (scrape().await, cpu_seconds(broker_pid));
        let (round_started, machine_before) = (Instant::now(), MachineCpu::now());
        let (open, samples, tcp_ingest) = open_loop(&load, Target::Ingest, half, duration).await;
        let round_hiccups = hiccups.between(round_started, Instant::now());
        let steal = MachineCpu::now().since(machine_before).steal;
        let (metrics_after, broker_between) = (scrape().await, cpu_seconds(broker_pid));
        // The same rate straight into the broker: how much of ingest's tail is the broker's.
        let (bare, bare_samples, tcp_bare) = open_loop(&load, Target::BareProducer, half, duration).await;
        let broker_after = cpu_seconds(broker_pid);
        let mut tcp_peer = TcpCounters::default();
        let per_record = |cpu: f64, n: usize| cpu * 1e6 / n.max(1) as f64;
        let peer_columns = if peer_i.is_some() {
            let (f, samples, tcp) = open_loop(&load, Target::SvixBridge, half, duration).await;
            tcp_peer = tcp;
            peer_p99s.push(f.p99_ms);
            peer_all.0.extend(samples.iter().map(|s| s.latency));
            peer_all.1 += f.errors;
            let columns = format!(" {:>10.2} {:>10.2} {:>7}", f.p50_ms, f.p99_ms, slow(&samples) + f.errors as usize);
            if peer_worst.as_ref().is_none_or(|(p99, _)| f.p99_ms > *p99) {
                peer_worst = Some((f.p99_ms, samples));
            }
            columns
        } else {
            String::new()
        };
        println!(
            "{:>7} {:>10.2} {:>10.2} {:>7} {:>9.0} {:>10.0} {:>9.1} {:>9.0} {:>10.2} {:>10.2} {:>7} {:>10.0}{peer_columns}",
            round,
            open.p50_ms,
            open.p99_ms,
            slow(&samples) + open.errors as usize,
            ingest_requests_over_25ms(&metrics_after) - ingest_requests_over_25ms(&metrics_before),
            per_record(broker_between - broker_before, samples.len()),
            round_hiccups.iter().map(|h| h.1).max().unwrap_or_default().as_secs_f64() * 1e3,
            steal * 1e3,
            bare.p50_ms,
            bare.p99_ms,
            slow(&bare_samples) + bare.errors as usize,
            per_record(broker_after - broker_between, bare_samples.len()),
        );
        let quiet = TcpCounters::default();
        if [tcp_ingest, tcp_bare, tcp_peer].iter().any(|t| *t != quiet) {
            println!("        TCP during ingest's turn: {tcp_ingest}; the bare producer's: {tcp_bare}");
            if peer_i.is_some() {
                println!("        TCP during svix-bridge's turn: {tcp_peer}");
            }
        }
        if open.errors + bare.errors > 0 {
            println!("        errors: ingest {}, bare producer {}", open.errors, bare.errors);
        }
        ingest_p99s.push(open.p99_ms);
        bare_p99s.push(bare.p99_ms);
        ingest_all.0.extend(samples.iter().map(|s| s.latency));
        ingest_all.1 += open.errors;
        bare_all.0.extend(bare_samples.iter().map(|s| s.latency));
        bare_all.1 += bare.errors;
        if worst.as_ref().is_none_or(|(p99, _, _)| open.p99_ms > *p99) {
            worst = Some((open.p99_ms, samples, round_hiccups));
        }
    }
    drop(priority);
    let list = |v: &[f64]| v.iter().map(|p| format!("{p:.2}")).collect::<Vec<_>>().join(", ");
    println!(
        "half-load p99 over all {} s: ingest {:.2} ms, bare producer {:.2} ms{}   (target ingest p99 ≤ 25 ms)",
        rounds * duration.as_secs(),
        pooled_p99_ms(ingest_all.0, ingest_all.1),
        pooled_p99_ms(bare_all.0, bare_all.1),
        if peer_i.is_some() {
            format!(", svix-bridge {:.2} ms", pooled_p99_ms(peer_all.0, peer_all.1))
        } else {
            String::new()
        }
    );
    println!("  by round, ingest: {} ms; bare producer: {} ms", list(&ingest_p99s), list(&bare_p99s));
    if peer_i.is_some() {
        println!("  by round, svix-bridge: {} ms", list(&peer_p99s));
    }
    if let Some((p99, samples, round_hiccups)) = worst {
        println!("  ingest's worst round (p99 {p99:.2} ms), slow requests in time: {}", tail_shape(&samples, over));
        let listed: Vec<_> = round_hiccups
            .iter()
            .map(|(at, d)| format!("{:.0} ms at {:.2} s", d.as_secs_f64() * 1e3, at.as_secs_f64()))
            .collect();
        println!(
            "  its hiccups (over {} ms): {}",
            Hiccups::THRESHOLD.as_millis(),
            if listed.is_empty() { "none".into() } else { listed.join(", ") }
        );
    }
    if let Some((p99, samples)) = peer_worst {
        println!(
            "  svix-bridge's worst round (p99 {p99:.2} ms), slow requests in time: {}",
            tail_shape(&samples, over)
        );
    }
    sampler.abort();
    let (_, hwm) = rss_mib(ingest_pid);
    let [ingest_peak, peer_peak] = [0, 1].map(|i| peak_rss[i].load(Ordering::Relaxed) as f64 / 1024.0);
    println!(
        "ingest memory: idle {idle_rss:.1} MiB, peak under load {ingest_peak:.1} MiB, VmHWM {hwm:.1} MiB   (target < 64 MiB)"
    );
    if peer_pid.is_some() {
        println!("svix-bridge memory: peak under load {peer_peak:.1} MiB");
    }
    if let Some(pid) = broker.pid() {
        println!("(broker pid {pid}: {:.0} MiB RSS at the end)", rss_mib(pid).0);
    }

    for child in [Some(&mut ingest), Some(&mut plain), peer.as_mut()].into_iter().flatten() {
        let _ = child.kill();
        let _ = child.wait();
    }
}
