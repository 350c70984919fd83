//! An rdkafka producer whose delivery reports are served on the Tokio runtime.
//!
//! rdkafka's `FutureProducer` keeps a thread of its own that waits on librdkafka's reply
//! queue and hands each delivery report to the waiting request through a channel. Every
//! acknowledged batch then wakes two threads in turn: that polling thread (woken by
//! librdkafka's broker thread), then a runtime thread (woken by the polling thread).
//!
//! Here librdkafka writes one byte to a pipe when its reply queue becomes non-empty (its
//! "io event"), and a task on the runtime, waiting for that pipe to be readable, serves
//! the queue: the broker thread wakes the runtime directly, and the requests' tasks are
//! woken on the thread that served their reports. BENCHMARKS.md ("Sending at once to an
//! idle partition; delivery reports on the runtime") has the measurements.
//!
//! librdkafka writes the byte once per period in which nobody polled the queue (each poll
//! re-arms it), so the task reads the pipe empty first, then polls until the queue is
//! empty, and only then waits again: a report enqueued after the last poll writes a new
//! byte, one enqueued before it is seen by the length check.

#![allow(unsafe_code)] // see the workspace lints in Cargo.toml

use std::{
    marker::PhantomData,
    os::fd::{AsRawFd, OwnedFd, RawFd},
    sync::{Arc, Mutex, Weak},
    time::Duration,
};

use futures::channel::oneshot;
use rdkafka::{
    ClientConfig, ClientContext, Statistics, bindings as rdsys,
    client::Client,
    error::{KafkaError, KafkaResult},
    message::{DeliveryResult, Message},
    producer::{BaseProducer, BaseRecord, Producer, ProducerContext},
};
use tokio::net::unix::pipe;

use super::{Delivered, OutgoingRecord, kafka::record_headers};

/// What a delivery report says of one record.
pub type Report = Result<Delivered, KafkaError>;

/// Resolves with the record's delivery report; `Canceled` if the producer was destroyed
/// without reporting it.
pub type DeliveryFuture = oneshot::Receiver<Report>;

/// Reports served before the task lets other tasks of its runtime thread run.
const REPORTS_PER_TURN: usize = 64;

/// The producer's context: it routes each delivery report to its request and keeps
/// librdkafka's last statistics report for `/metrics`.
#[derive(Debug)]
pub struct ReportsContext {
    last_stats: Mutex<Option<Arc<Statistics>>>,
    /// The pipe's write end, which librdkafka writes its wake-ups to. It lives in the
    /// context, which rdkafka drops only after `rd_kafka_destroy`: librdkafka never
    /// writes to a closed descriptor, and its closing tells the task the producer is gone.
    _wakeups: OwnedFd,
}

impl ReportsContext {
    pub fn last_stats(&self) -> Option<Arc<Statistics>> {
        self.last_stats.lock().expect("not poisoned").clone()
    }
}

impl ClientContext for ReportsContext {
    /// Runs where the reply queue is served; the default would log the whole report.
    fn stats(&self, statistics: Statistics) {
        *self.last_stats.lock().expect("not poisoned") = Some(Arc::new(statistics));
    }
}

impl ProducerContext for ReportsContext {
    type DeliveryOpaque = Box<oneshot::Sender<Report>>;

    fn delivery(&self, result: &DeliveryResult<'_>, to: Self::DeliveryOpaque) {
        let report = match result {
            Ok(m) => Ok(Delivered { partition: m.partition(), offset: m.offset() }),
            Err((e, _)) => Err(e.clone()),
        };
        // The request may have stopped waiting: nobody to tell.
        let _ = to.send(report);
    }
}

/// The producer and the task serving its delivery reports. Dropping it destroys the
/// producer (rdkafka purges what is queued, waiting up to 500 ms) and ends the task.
pub struct RuntimeProducer {
    producer: Arc<BaseProducer<ReportsContext>>,
}

impl std::fmt::Debug for RuntimeProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeProducer").finish_non_exhaustive()
    }
}

impl RuntimeProducer {
    /// Creates the producer and spawns its report task on the current Tokio runtime.
    pub fn create(config: &ClientConfig) -> KafkaResult<Self> {
        let pipe_error = |e: std::io::Error| KafkaError::ClientCreation(format!("cannot create a wake-up pipe: {e}"));
        let (writer, reader) = pipe::pipe().map_err(pipe_error)?;
        let writer = writer.into_nonblocking_fd().map_err(pipe_error)?;
        let fd = writer.as_raw_fd();
        let context = ReportsContext { last_stats: Mutex::new(None), _wakeups: writer };
        let producer: BaseProducer<ReportsContext> = config.create_with_context(context)?;
        ReplyQueue::of(producer.client()).wake_up_through(fd);
        let producer = Arc::new(producer);
        tokio::spawn(serve_reports(Arc::downgrade(&producer), reader));
        Ok(Self { producer })
    }

    /// Queues `record`; the future resolves with its delivery report.
    pub fn send(&self, record: &OutgoingRecord) -> Result<DeliveryFuture, KafkaError> {
        let (to, report) = oneshot::channel();
        let base = BaseRecord::with_opaque_to(&record.topic, Box::new(to)).key(&record.key).payload(&record.value);
        let base = match record_headers(record) {
            Some(headers) => base.headers(headers),
            None => base,
        };
        self.producer.send(base).map(|()| report).map_err(|(e, _)| e)
    }

    pub fn producer(&self) -> &Arc<BaseProducer<ReportsContext>> {
        &self.producer
    }
}

/// Serves the reply queue whenever librdkafka signals it, until the producer is gone.
async fn serve_reports(producer: Weak<BaseProducer<ReportsContext>>, wakeups: pipe::Receiver) {
    let mut bytes = [0u8; 64];
    loop {
        // Empty the pipe, then the queue: a report enqueued after the last poll writes a
        // new byte, so the wait below cannot miss it.
        loop {
            match wakeups.try_read(&mut bytes) {
                Ok(0) => return, // the write end closed: the producer was destroyed
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the producer's wake-up pipe");
                    return;
                }
            }
        }
        // The producer is held only during a turn, so that its last owner, not this
        // task, destroys it (which blocks for up to 500 ms).
        loop {
            let Some(held) = producer.upgrade() else { return };
            let more = serve_turn(&held);
            drop(held);
            if !more {
                break;
            }
            tokio::task::yield_now().await;
        }
        if wakeups.readable().await.is_err() {
            return;
        }
    }
}

/// Serves the reply queue until it is empty or [`REPORTS_PER_TURN`] events were served;
/// true when events remain.
fn serve_turn(producer: &BaseProducer<ReportsContext>) -> bool {
    let queue = ReplyQueue::of(producer.client());
    for _ in 0..REPORTS_PER_TURN {
        if queue.is_empty() {
            return false;
        }
        producer.poll(Duration::ZERO);
    }
    !queue.is_empty()
}

/// A handle of a client's reply queue (librdkafka's "main queue"), which rdkafka's
/// `poll` serves. It cannot outlive the client.
struct ReplyQueue<'a> {
    queue: *mut rdsys::rd_kafka_queue_t,
    _client: PhantomData<&'a Client<ReportsContext>>,
}

impl<'a> ReplyQueue<'a> {
    fn of(client: &'a Client<ReportsContext>) -> Self {
        // SAFETY: the client's handle is live while `client` is borrowed, and so for 'a;
        // the queue handle is a new reference, released in `drop`.
        let queue = unsafe { rdsys::rd_kafka_queue_get_main(client.native_ptr()) };
        Self { queue, _client: PhantomData }
    }

    fn is_empty(&self) -> bool {
        // SAFETY: `self.queue` is live (see `of`).
        unsafe { rdsys::rd_kafka_queue_length(self.queue) == 0 }
    }

    /// Has librdkafka write a byte to `fd` whenever the queue becomes non-empty after it
    /// was last polled. `fd` must stay open as long as the client lives.
    fn wake_up_through(&self, fd: RawFd) {
        // SAFETY: `self.queue` is live; librdkafka copies the one-byte payload.
        unsafe { rdsys::rd_kafka_queue_io_event_enable(self.queue, fd, b"r".as_ptr().cast(), 1) }
    }
}

impl Drop for ReplyQueue<'_> {
    fn drop(&mut self) {
        // SAFETY: `self.queue` came from `rd_kafka_queue_get_main` and is released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue) }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use futures::future::join_all;
    use rdkafka::mocking::MockCluster;

    use super::*;

    fn record(i: usize) -> OutgoingRecord {
        OutgoingRecord { topic: "t".into(), key: format!("m{i}"), value: vec![b'x'; 100], headers: Vec::new() }
    }

    fn idempotent(brokers: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers).set("enable.idempotence", "true").set("linger.ms", "5");
        c
    }

    /// Tasks alive on this runtime, once the count has settled at `expected` (5 s at most).
    async fn alive_tasks_settle_at(expected: usize) -> usize {
        let metrics = tokio::runtime::Handle::current().metrics();
        for _ in 0..500 {
            if metrics.num_alive_tasks() == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        metrics.num_alive_tasks()
    }

    /// Far more reports than one turn of the task serves, from records sent all at once
    /// through librdkafka's own mock broker (3 partitions, acks 20 ms late): each future
    /// gets its own record's report, and each (partition, offset) is given once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_record_gets_its_own_report() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 3, 1).unwrap();
        cluster.broker_round_trip_time(1, Duration::from_millis(20)).unwrap();
        let producer = RuntimeProducer::create(&idempotent(&cluster.bootstrap_servers())).unwrap();
        let sent: Vec<_> = (0..5_000).map(|i| producer.send(&record(i)).unwrap()).collect();
        let reports = tokio::time::timeout(Duration::from_secs(30), join_all(sent)).await.expect("all reported");
        let places: HashSet<_> = reports.into_iter().map(|r| r.expect("reported").expect("acknowledged")).collect();
        assert_eq!(places.len(), 5_000);
        assert_eq!(places.iter().map(|d| d.partition).collect::<HashSet<_>>().len(), 3);
        tokio::task::spawn_blocking(move || drop(producer)).await.unwrap();
    }

    /// Produce requests the broker is answering at once, as librdkafka's statistics
    /// sample them every 50 ms (`broker_samples`), with `linger.while.in.flight`.
    async fn requests_in_flight(mut config: ClientConfig, warm_rtt: Duration, rtt: Duration) -> Vec<i64> {
        config.set("linger.while.in.flight", "true");
        broker_samples(config, warm_rtt, rtt, 10_000).await.iter().map(|b| b.waitresp_cnt).collect()
    }

    /// librdkafka's statistics of the mock broker, one sample every 50 ms, while records go
    /// to one partition at about `per_second` for 1.3 s; `rtt` is the mock broker's round
    /// trip, `warm_rtt` the one it has for the first record and the first 0.5 s of sending.
    /// The producer is `config`, its `bootstrap.servers` replaced.
    async fn broker_samples(
        mut config: ClientConfig,
        warm_rtt: Duration,
        rtt: Duration,
        per_second: usize,
    ) -> Vec<rdkafka::statistics::Broker> {
        // One measurement at a time: the tests run in parallel, and two of these side by
        // side on 2 cores compete for them; a sender slowed below its rate fills fewer
        // batches than the window needs (a CI run saw 2-3 in flight instead of 4-5).
        static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _alone = ONE_AT_A_TIME.lock().await;
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("t", 1, 1).unwrap();
        cluster.broker_round_trip_time(1, warm_rtt).unwrap();
        config.set("bootstrap.servers", cluster.bootstrap_servers()).set("statistics.interval.ms", "50");
        let producer = RuntimeProducer::create(&config).unwrap();
        // Connected, with a producer id, and a first round trip at `warm_rtt` noted.
        producer.send(&record(usize::MAX)).unwrap().await.expect("reported").expect("acknowledged");
        let (mut sent, mut samples, mut last_ts) = (Vec::new(), Vec::new(), None);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for ms in 0..2_000 {
            if ms == 500 {
                cluster.broker_round_trip_time(1, rtt).unwrap();
            }
            tick.tick().await;
            while sent.len() < per_second * (ms + 1) / 1000 {
                sent.push(producer.send(&record(sent.len())).unwrap());
            }
            if let Some(stats) = producer.producer().context().last_stats()
                && ms >= 700
                && last_ts != Some(stats.ts)
            {
                last_ts = Some(stats.ts);
                samples.extend(stats.brokers.values().filter(|b| b.nodeid == 1).cloned());
            }
        }
        for report in tokio::time::timeout(Duration::from_secs(30), join_all(sent)).await.expect("all reported") {
            report.expect("reported").expect("acknowledged");
        }
        tokio::task::spawn_blocking(move || drop(producer)).await.unwrap();
        samples
    }

    /// With `linger.while.in.flight` (the vendored librdkafka's fifth change), a partition
    /// keeps as many batches in flight as cover the broker's smallest round trip, one per
    /// `linger.ms` (5 ms): a broker that answered in 1 ms and now takes 40 ms is queueing,
    /// and gets one batch at a time (the window of 5 would send eight times as many
    /// requests); a broker that always takes 40 ms is far away, and gets the window of 5.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_in_flight_cover_the_smallest_round_trip_not_the_brokers_queue() {
        let (near, far_away) = (Duration::from_millis(1), Duration::from_millis(40));
        let queueing = requests_in_flight(idempotent(""), near, far_away).await;
        assert!(queueing.len() >= 10, "{queueing:?}");
        // At most one sample may catch another request (a metadata refresh) beside it.
        assert!(queueing.iter().filter(|&&n| n > 1).count() <= 1, "one batch in flight at a time: {queueing:?}");
        let far = requests_in_flight(idempotent(""), far_away, far_away).await;
        assert!(far.len() >= 10, "{far:?}");
        assert!(far.iter().filter(|&&n| n >= 4).count() * 2 >= far.len(), "the window of 5 is used: {far:?}");
    }

    /// Ingest's own producer settings (`linger.ms` 1) behind a broker whose acks take 5 ms,
    /// as acks=all across zones can: the window of 5 is used, where `linger.ms` 5 keeps at
    /// most `1 + 5 ÷ 5` = 2 batches in flight (one, on this mock broker) and served a
    /// quarter fewer webhooks (BENCHMARKS.md, "A linger of 1 ms").
    ///
    /// How full the window gets depends on the sender keeping its pace of one batch per
    /// millisecond, which other tests running beside this one on 2 cores can slow: a CI run
    /// saw 4-5 in flight in only 5 of 26 samples (2.5 on average). So the window counts as
    /// used when it was full in some samples and held, on average, half as many batches
    /// again as `linger.ms` 5 keeps (contention only lowers the count, so `linger.ms` 5
    /// cannot pass for the default).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_ingests_defaults_acks_5_ms_late_fill_the_window_of_5() {
        let defaults = super::super::kafka::producer_config(&super::super::kafka::tests::config("")).unwrap();
        let rtt = Duration::from_millis(5);
        let ours = requests_in_flight(defaults, rtt, rtt).await;
        assert!(ours.len() >= 10, "{ours:?}");
        assert!(ours.iter().filter(|&&n| n >= 4).count() >= 2, "the window of 5 fills: {ours:?}");
        let lingering = requests_in_flight(idempotent(""), rtt, rtt).await;
        assert!(lingering.len() >= 10, "{lingering:?}");
        let full = lingering.iter().filter(|&&n| n >= 4).count();
        assert!(full * 2 < lingering.len(), "linger.ms 5 keeps at most 2 in flight: {lingering:?}");
        let mean = |samples: &[i64]| samples.iter().sum::<i64>() as f64 / samples.len() as f64;
        assert!(
            mean(&ours) >= 1.5 * mean(&lingering).max(1.0),
            "the window of 5 is used: {ours:?} against linger.ms 5's {lingering:?}"
        );
    }

    /// Ingest's own producer settings (`linger.ms` 1) behind a broker whose acks take
    /// 40 ms, as acks=all across regions can, at 10,000 records/s to one partition: one
    /// batch per `linger.ms` would need a window of 41, `max.in.flight` caps it at 5, and
    /// (the vendored librdkafka's sixth change) a partition whose full window held back
    /// records then lingers 40 ÷ 5 = 8 ms, so its batches go out evenly over the round
    /// trip and a record waits in the producer about that long at most. With librdkafka's
    /// own linger (`linger.while.in.flight` off) the window fills within 5 ms, then the
    /// first answer releases what queued for most of a round trip. Measured (the median of
    /// the p99s of `queue_wait_p99_ms`): 8.3–10 ms; 27–35 ms with the property off; 29–36
    /// ms with it on before the sixth change. A sender starved of CPU fills the window
    /// less often, so records bunch less without the spread (15–19 ms with 8 busy loops
    /// beside the test on 2 cores, against 9–10 with it): the test asks for half as long
    /// again, not for a fixed 20 ms.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn behind_a_far_broker_the_window_s_batches_spread_over_the_round_trip() {
        let defaults = super::super::kafka::producer_config(&super::super::kafka::tests::config("")).unwrap();
        let ours = queue_wait_p99_ms(defaults.clone(), 10_000).await;
        assert!(ours <= 14.0, "records wait about 40 ÷ 5 = 8 ms for their batch, not {ours} ms");
        let mut librdkafkas = defaults;
        librdkafkas.set("linger.while.in.flight", "false");
        let bunched = queue_wait_p99_ms(librdkafkas, 10_000).await;
        assert!(
            bunched >= 1.5 * ours,
            "without the spread, records wait for the next answer: {bunched} ms against {ours} ms"
        );
    }

    /// The same broker (acks 40 ms late) and settings, with a record every 20 ms: about 2
    /// batches in flight, the window never full, so records are not held for the spread
    /// (8 ms) but sent after `linger.ms` (1).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn behind_a_far_broker_a_window_that_is_not_full_is_not_spread() {
        let defaults = super::super::kafka::producer_config(&super::super::kafka::tests::config("")).unwrap();
        let ours = queue_wait_p99_ms(defaults, 50).await;
        assert!(ours <= 3.0, "records wait linger.ms (1 ms), not {ours} ms");
    }

    /// How long records waited in the producer for their request (librdkafka's
    /// `int_latency`) behind a broker answering in 40 ms, at `per_second` records to one
    /// partition: the p99 of each 50-ms sample that had records, their median, in ms.
    async fn queue_wait_p99_ms(config: ClientConfig, per_second: usize) -> f64 {
        let far_away = Duration::from_millis(40);
        let samples = broker_samples(config, far_away, far_away, per_second).await;
        let mut p99: Vec<f64> = samples
            .iter()
            .filter_map(|b| b.int_latency.as_ref().filter(|w| w.cnt > 0))
            .map(|w| w.p99 as f64 / 1000.0)
            .collect();
        assert!(p99.len() >= 10, "{p99:?}");
        p99.sort_by(f64::total_cmp);
        p99[p99.len() / 2]
    }

    /// A producer dropped with records it could not deliver (its broker is down) reports
    /// them as purged, and its report task ends: nothing waits forever, nothing leaks.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_producer_reports_what_it_held_and_its_task_ends() {
        let before = alive_tasks_settle_at(0).await;
        let producer = RuntimeProducer::create(&idempotent("127.0.0.1:9")).unwrap();
        assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), before + 1);
        let sent: Vec<_> = (0..10).map(|i| producer.send(&record(i)).unwrap()).collect();
        tokio::task::spawn_blocking(move || drop(producer)).await.unwrap();
        for report in tokio::time::timeout(Duration::from_secs(5), join_all(sent)).await.expect("reported") {
            let e = report.expect("reported, not dropped").expect_err("not delivered");
            assert!(crate::publisher::generations::is_purged(&e), "{e}");
        }
        assert_eq!(alive_tasks_settle_at(before).await, before, "the report task ended");
    }
}
