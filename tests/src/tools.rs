//! Where the external tools are. The test script (`scripts/test.sh`) installs them and
//! exports these variables; the defaults are where it installs them.

use std::path::PathBuf;

fn cache_dir() -> PathBuf {
    std::env::var_os("HOOKLAKE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/hooklake"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is in the repo").to_path_buf()
}

/// The Python of the venv holding svix, standardwebhooks, stripe, confluent-kafka, fastavro, pyiceberg.
pub fn python() -> PathBuf {
    std::env::var_os("HOOKLAKE_PYTHON").map(PathBuf::from).unwrap_or_else(|| cache_dir().join("venv/bin/python"))
}

/// The `hooklake` binary of the same build as this test (`target/<profile>/hooklake`).
pub fn hooklake_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOOKLAKE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/it-<hash> → target/<profile>/hooklake
    let bin = exe.parent().and_then(|d| d.parent()).expect("target dir").join("hooklake");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin hooklake` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A script in tests/py.
pub fn py_script(name: &str) -> PathBuf {
    repo_root().join("tests/py").join(name)
}

/// tests/py/delay_proxy.py: a TCP relay from 127.0.0.1:`listen` to 127.0.0.1:`upstream`
/// that hands each answer back `delay` late (zero: a plain relay), counting the Kafka
/// Produce requests through it into `stats` when given. Killed when dropped; returns once
/// it listens.
pub async fn delay_proxy(
    listen: u16,
    upstream: u16,
    delay: std::time::Duration,
    stats: Option<&std::path::Path>,
) -> tokio::process::Child {
    let mut proxy = tokio::process::Command::new(python());
    proxy.arg(py_script("delay_proxy.py")).args([
        listen.to_string(),
        upstream.to_string(),
        delay.as_millis().to_string(),
    ]);
    proxy.args(stats);
    let proxy = proxy.kill_on_drop(true).spawn().expect("tests/py/delay_proxy.py");
    crate::eventually(std::time::Duration::from_secs(10), "the delay proxy listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", listen)).await.ok().map(drop)
    })
    .await;
    proxy
}

/// Sends the delay proxy `proxy` a signal (`kill <signal>`): `-USR1` cuts every connection
/// through it, `-USR2` makes it lose the answer to the next Iceberg catalog commit
/// (tests/py/delay_proxy.py).
pub fn signal_proxy(proxy: &tokio::process::Child, signal: &str) {
    let pid = proxy.id().expect("the delay proxy is running");
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().expect("kill");
    assert!(status.success(), "kill {signal} {pid}: {status}");
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` to completion, failing the test after `timeout`.
pub async fn run_to_end(cmd: &mut tokio::process::Command, timeout: std::time::Duration) -> Output {
    let out = tokio::time::timeout(timeout, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{cmd:?} took longer than {timeout:?}"))
        .expect("the command runs");
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
