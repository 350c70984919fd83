//! tansu, a Kafka-API broker, on SQLite storage in a temporary directory, run by
//! `hooklake broker` (tansu 0.6's broker crate inside hooklake, the same one `hooklake dev`
//! runs). The SQLite file is durable, so a broker can be stopped (even killed) and restarted
//! on the same port with its data.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{free_port, tools};

/// Produce requests seen by tests/py/delay_proxy.py ([`Broker::proxy_stats`]).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProxyStats {
    /// The most Produce requests one client connection had in flight (sent, answer not yet
    /// handed back).
    pub max_produce_in_flight: u64,
    /// Produce requests whose connection closed before their answer came back.
    pub produce_cut_off: u64,
    /// Produce requests sent, over all connections.
    pub produce_requests: u64,
    /// How long connections had n ≥ 1 Produce requests in flight, by n, summed over
    /// connections (the proxy writes it at least every half second).
    pub produce_in_flight_seconds: std::collections::BTreeMap<u64, f64>,
}

/// Produce requests through the delay proxy over a stretch of time, and the seconds
/// connections spent with n ≥ 1 of them in flight, by n ([`ProxyStats::since`]).
#[derive(Debug, Clone, Default)]
pub struct ProduceCounts {
    pub requests: u64,
    pub seconds: std::collections::BTreeMap<u64, f64>,
}

impl ProduceCounts {
    /// Adds `other`'s requests and seconds to these.
    pub fn add(&mut self, other: ProduceCounts) {
        self.requests += other.requests;
        for (n, s) in other.seconds {
            *self.seconds.entry(n).or_default() += s;
        }
    }
}

impl ProxyStats {
    /// What the proxy counted between `earlier` and these stats.
    pub fn since(&self, earlier: &ProxyStats) -> ProduceCounts {
        let seconds = self
            .produce_in_flight_seconds
            .iter()
            .map(|(n, s)| (*n, s - earlier.produce_in_flight_seconds.get(n).copied().unwrap_or(0.0)))
            .filter(|(_, s)| *s > 0.0)
            .collect();
        ProduceCounts { requests: self.produce_requests - earlier.produce_requests, seconds }
    }
}

#[derive(Debug)]
pub struct Broker {
    pub port: u16,
    dir: tempfile::TempDir,
    /// `hooklake broker --storage`: `sqlite` (durable), or `memory` for producer benchmarks.
    storage: String,
    /// `hooklake broker --advertise`: the port of a proxy in front of it, if any.
    advertise: Option<u16>,
    child: Option<Child>,
}

impl Broker {
    /// Starts a broker of its own on a free port with a fresh SQLite file.
    pub fn start() -> Self {
        Self::start_with_storage("sqlite")
    }

    /// Starts a broker on a free port with `storage` (`sqlite` or `memory`; tansu's memory
    /// storage answers ListOffsets wrongly, so only producer benchmarks may use it).
    pub fn start_with_storage(storage: &str) -> Self {
        Self::start_as(storage, None)
    }

    /// Starts a broker with `storage` behind tests/py/delay_proxy.py: its metadata sends
    /// clients to the proxy (`hooklake broker --advertise`), which hands them everything
    /// the broker answers `delay` late. Returns once the proxy listens; dropping the
    /// returned child stops the proxy.
    pub async fn start_delayed(storage: &str, delay: Duration) -> (Self, tokio::process::Child) {
        Self::start_behind_proxy(storage, delay, false).await
    }

    /// [`Broker::start_delayed`], with a proxy that also reads the Kafka frames and counts
    /// Produce requests: how many, how many at most and for how long in flight on one
    /// connection, and how many lost their answers ([`Broker::proxy_stats`]). The parsing
    /// costs the proxy CPU, so the ingest benchmark counts only with `BENCH_PROXY_COUNT=1`.
    pub async fn start_delayed_counting(storage: &str, delay: Duration) -> (Self, tokio::process::Child) {
        Self::start_behind_proxy(storage, delay, true).await
    }

    async fn start_behind_proxy(storage: &str, delay: Duration, count: bool) -> (Self, tokio::process::Child) {
        let proxy_port = free_port();
        let broker = Self::start_as(storage, Some(proxy_port));
        let stats = count.then(|| broker.proxy_stats_path());
        let proxy = tools::delay_proxy(proxy_port, broker.port, delay, stats.as_deref()).await;
        (broker, proxy)
    }

    /// Cuts every connection through the delay proxy at once (SIGUSR1), dropping the
    /// answers it still holds: the broker has written those requests, and the clients must
    /// resend them without knowing.
    pub fn cut_proxy_connections(proxy: &tokio::process::Child) {
        tools::signal_proxy(proxy, "-USR1");
    }

    fn proxy_stats_path(&self) -> PathBuf {
        self.dir.path().join("proxy-stats.json")
    }

    /// What the proxy counted of the Produce requests through it, when it counts them
    /// ([`Broker::start_delayed_counting`]).
    pub fn proxy_stats(&self) -> Option<ProxyStats> {
        let text = std::fs::read_to_string(self.proxy_stats_path()).ok()?;
        Some(serde_json::from_str(&text).expect("the proxy's stats"))
    }

    fn start_as(storage: &str, advertise: Option<u16>) -> Self {
        let mut b = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("temp dir"),
            storage: storage.to_owned(),
            advertise,
            child: None,
        };
        b.restart();
        b
    }

    /// `sqlite` or `memory`.
    pub fn storage(&self) -> &str {
        &self.storage
    }

    /// The broker's process id (for resource measurements).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The port of the proxy the broker sends clients to (`--advertise`), if any.
    pub fn advertised_port(&self) -> Option<u16> {
        self.advertise
    }

    /// `host:port` for Kafka clients.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("tansu.log")
    }

    /// `hooklake broker --data`.
    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The SQLite storage's database file in the data directory (src/broker.rs `DATABASE`).
    pub fn database_path(&self) -> PathBuf {
        self.data_dir().join("tansu.db")
    }

    /// Kills the broker (SIGKILL: no clean shutdown) and waits until the port is closed.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < deadline, "broker port {} still open after kill", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts (again) on the same port and storage, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.log_path()).expect("log file");
        let hooklake = tools::hooklake_bin();
        let mut command = Command::new(&hooklake);
        command.args(["broker", "--listen", &self.bootstrap(), "--storage", &self.storage]);
        if let Some(port) = self.advertise {
            command.args(["--advertise", &format!("127.0.0.1:{port}")]);
        }
        let child = command
            .arg("--data")
            .arg(self.data_dir())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} broker: {e}", hooklake.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the broker did not listen on {}: see {}",
                self.port,
                self.log_path().display()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The suite's shared broker when the test script started one (`HOOKLAKE_TEST_BROKERS`),
/// else a broker of this test's own. Tests that stop their broker always take their own.
#[derive(Debug)]
pub enum TestBroker {
    Shared(String),
    Own(Broker),
}

impl TestBroker {
    pub fn get() -> Self {
        match std::env::var("HOOKLAKE_TEST_BROKERS") {
            Ok(b) if !b.is_empty() => Self::Shared(b),
            _ => Self::Own(Broker::start()),
        }
    }

    pub fn bootstrap(&self) -> String {
        match self {
            Self::Shared(b) => b.clone(),
            Self::Own(b) => b.bootstrap(),
        }
    }
}
