//! `hooklake sink` as a process: `--once` runs (optionally stopped at a failpoint and
//! killed) and the service.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::tools;

/// Writes `toml` as the configuration file of a test and returns its path.
pub fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join(format!("hooklake-{}.toml", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, toml).expect("write config");
    path
}

/// `hooklake sink <args> --config <config>` with `env`, killed when dropped.
fn sink_command(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(tools::hooklake_bin());
    cmd.arg("sink").args(args).arg("--config").arg(config).env("RUST_LOG", "info,librdkafka=warn").kill_on_drop(true);
    cmd.envs(env.iter().copied());
    cmd
}

/// Runs `hooklake sink --once` to completion (within `timeout`).
pub async fn once(config: &Path, env: &[(&str, &str)], timeout: Duration) -> tools::Output {
    tools::run_to_end(&mut sink_command(config, &["--once"], env), timeout).await
}

/// Starts `hooklake sink --once` with `HOOKLAKE_FAILPOINT=<failpoint>`, waits until it
/// reports reaching it, and kills it with SIGKILL there.
pub async fn once_killed_at(config: &Path, failpoint: &str, env: &[(&str, &str)]) {
    let mut child: Child = sink_command(config, &["--once"], env)
        .env("HOOKLAKE_FAILPOINT", failpoint)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("hooklake runs");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let marker = format!("failpoint {failpoint} reached");
    let mut seen = Vec::new();
    let reached = tokio::time::timeout(Duration::from_secs(180), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(&marker) {
                return true;
            }
            seen.push(line);
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(reached, "the sink never reached {failpoint} (built without --features failpoints?):\n{}", seen.join("\n"));
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
}

/// `hooklake sink --config F` as a service, with its admin port.
#[derive(Debug)]
pub struct SinkService {
    /// `http://127.0.0.1:<port>` of `sink.admin_listen`.
    pub admin: String,
    child: Child,
    log: Option<PathBuf>,
}

impl SinkService {
    /// Starts the service; `admin_port` must be the port of `sink.admin_listen` in `config`.
    /// Returns once it has started (connected to its catalog): its run API answers.
    pub async fn start(config: &Path, admin_port: u16) -> Self {
        Self::start_logged(config, admin_port, None).await
    }

    /// [`Self::start`] on another admin port than the configuration's (a second replica of
    /// one configuration), logging to `log` when given (else to the test's stderr).
    pub async fn start_logged(config: &Path, admin_port: u16, log: Option<&Path>) -> Self {
        let sink = Self::start_waiting(config, admin_port, log).await;
        // The admin port answers from the start; everything but /livez and /readyz answers
        // 503 `starting` until the sink has connected.
        let metrics = format!("{}/metrics", sink.admin);
        crate::eventually(Duration::from_secs(60), "the sink to start (/metrics 200)", || async {
            let r = crate::http::client().get(&metrics).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        sink
    }

    /// Spawns the service and returns once `/livez` answers, whether or not the sink could
    /// reach its dependencies yet.
    pub async fn start_waiting(config: &Path, admin_port: u16, log: Option<&Path>) -> Self {
        let listen = format!("\"127.0.0.1:{admin_port}\"");
        let mut cmd = sink_command(config, &[], &[("HOOKLAKE__SINK__ADMIN_LISTEN", &listen)]);
        cmd.stdout(Stdio::null());
        if let Some(log) = log {
            let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
            cmd.stderr(Stdio::from(file));
        }
        let child = cmd.spawn().expect("hooklake runs");
        let admin = format!("http://127.0.0.1:{admin_port}");
        let livez = format!("{admin}/livez");
        crate::eventually(Duration::from_secs(60), "the sink's /livez", || async {
            let r = crate::http::client().get(&livez).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        Self { admin, child, log: log.map(Path::to_owned) }
    }

    /// What the service logged so far (empty when it logs to the test's stderr).
    pub fn log(&self) -> String {
        self.log.as_deref().and_then(|l| std::fs::read_to_string(l).ok()).unwrap_or_default()
    }

    /// SIGKILL: the run in progress, if any, is cut wherever it was.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    pub async fn metrics(&self) -> String {
        crate::http::get_text(&format!("{}/metrics", self.admin)).await
    }

    /// `POST /runs`: the queued run's status.
    pub async fn request_run(&self) -> serde_json::Value {
        let r = crate::http::client().post(format!("{}/runs", self.admin)).send().await.expect("POST /runs");
        assert_eq!(r.status().as_u16(), 202, "POST /runs");
        r.json().await.expect("run status JSON")
    }

    /// `GET /runs/{id}` until the run has finished; its final status.
    pub async fn wait_run(&self, id: &str, timeout: Duration) -> serde_json::Value {
        let url = format!("{}/runs/{id}", self.admin);
        crate::eventually(timeout, &format!("run {id} to finish"), || async {
            let status: serde_json::Value = crate::http::client().get(&url).send().await.ok()?.json().await.ok()?;
            matches!(status["state"].as_str(), Some("succeeded" | "failed")).then_some(status)
        })
        .await
    }

    /// SIGTERM, then waits for the exit; true when it exited with 0.
    pub async fn stop(mut self) -> bool {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        }
        match tokio::time::timeout(Duration::from_secs(60), self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => false,
        }
    }
}
