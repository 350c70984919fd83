//! Captures what hooklake logs while the suite runs, so tests can assert that no secret
//! ever reaches a log line.

use std::{
    io::Write,
    sync::{Arc, Mutex, OnceLock},
};

use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

static CAPTURE: OnceLock<Capture> = OnceLock::new();

/// Installs the capturing subscriber (once per test process): every level of hooklake's
/// own crates and of librdkafka. (hyper is left out: the test clients use it too.)
pub fn init() {
    CAPTURE.get_or_init(|| {
        let capture = Capture::default();
        let filter = EnvFilter::new("hooklake_ingest=trace,hooklake_schemas=trace,hooklake_sink=trace,librdkafka=debug,rdkafka=debug,axum=trace");
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(capture.clone()).with_ansi(false).try_init();
        capture
    });
}

/// Everything captured so far.
pub fn captured() -> String {
    CAPTURE.get().map(|c| String::from_utf8_lossy(&c.0.lock().expect("not poisoned")).into_owned()).unwrap_or_default()
}

/// Fails when any of `secrets` appears in the captured logs.
pub fn assert_absent(secrets: &[&str]) {
    let logs = captured();
    for s in secrets {
        assert!(!logs.contains(s), "a secret ({}…) appears in the logs", &s[..s.len().min(4)]);
    }
}
