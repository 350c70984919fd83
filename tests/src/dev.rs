//! `hooklake dev`, `send` and `query` as a user runs them: in a project directory of their
//! own (here a temporary one holding a copy of hooklake.example.toml), with the ports moved
//! to free ones through `HOOKLAKE__…` environment overrides.

use std::{
    path::Path,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{free_port, tools};

/// A user's directory for `hooklake dev` (`.hooklake/` and `lake/` end up in it).
#[derive(Debug)]
pub struct DevDir {
    pub dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    /// `http://127.0.0.1:<port>` of ingest and of the sink's admin port.
    pub ingest: String,
    pub sink_admin: String,
}

impl DevDir {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::copy(tools::repo_root().join("hooklake.example.toml"), dir.path().join("hooklake.example.toml"))
            .expect("copy the example configuration");
        let [broker, ingest, ingest_admin, sink_admin] = [(); 4].map(|()| free_port());
        let env = vec![
            ("HOOKLAKE__KAFKA__BROKERS".into(), format!("127.0.0.1:{broker}")),
            ("HOOKLAKE__INGEST__LISTEN".into(), format!("127.0.0.1:{ingest}")),
            ("HOOKLAKE__INGEST__ADMIN_LISTEN".into(), format!("127.0.0.1:{ingest_admin}")),
            ("HOOKLAKE__SINK__ADMIN_LISTEN".into(), format!("127.0.0.1:{sink_admin}")),
            ("RUST_LOG".into(), "warn,hooklake=info,hooklake_sink=info,hooklake_ingest=info".into()),
        ];
        Self {
            dir,
            env,
            ingest: format!("http://127.0.0.1:{ingest}"),
            sink_admin: format!("http://127.0.0.1:{sink_admin}"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `hooklake <args>` in this directory with its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(tools::hooklake_bin());
        cmd.args(args).current_dir(self.path()).kill_on_drop(true);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs `hooklake <args>` to completion.
    pub async fn run(&self, args: &[&str]) -> tools::Output {
        tools::run_to_end(&mut self.command(args), Duration::from_secs(120)).await
    }

    /// Runs `hooklake query --format json <sql>` and returns the rows.
    pub async fn query_json(&self, sql: &str) -> Vec<serde_json::Value> {
        let out = self.run(&["query", "--format", "json", sql]).await;
        assert!(out.success, "hooklake query {sql:?} failed: {}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("query output is not JSON ({e}): {}", out.stdout))
    }

    /// Starts `hooklake dev <args>` and waits for its banner.
    pub async fn start(&self, args: &[&str]) -> DevProcess {
        let mut child = self
            .command(&[&["dev"], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hooklake dev starts");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().expect("stdout"), stdout.clone());
        collect(child.stderr.take().expect("stderr"), stderr.clone());
        let process = DevProcess { child, stdout, stderr, sink_admin: self.sink_admin.clone() };
        let banner = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                if process.stdout().contains("hooklake dev is running") {
                    return true;
                }
                if process.stderr().contains("hooklake: ") {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(matches!(banner, Ok(true)), "hooklake dev did not start:\n{}\n{}", process.stdout(), process.stderr());
        process
    }
}

impl Default for DevDir {
    fn default() -> Self {
        Self::new()
    }
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<String>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut text = into.lock().expect("not poisoned");
            text.push_str(&line);
            text.push('\n');
        }
    });
}

/// A running `hooklake dev`.
#[derive(Debug)]
pub struct DevProcess {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    sink_admin: String,
}

impl DevProcess {
    pub fn stdout(&self) -> String {
        self.stdout.lock().expect("not poisoned").clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("not poisoned").clone()
    }

    /// Asks the sink for a run now (`POST /runs`) and waits for it; its final status.
    pub async fn run_now(&self) -> serde_json::Value {
        let r = crate::http::client().post(format!("{}/runs", self.sink_admin)).send().await.expect("POST /runs");
        assert_eq!(r.status().as_u16(), 202, "POST /runs");
        let status: serde_json::Value = r.json().await.expect("run status JSON");
        let url = format!("{}/runs/{}", self.sink_admin, status["run_id"].as_str().expect("run_id"));
        crate::eventually(Duration::from_secs(120), "the requested run to finish", || async {
            let status: serde_json::Value = crate::http::client().get(&url).send().await.ok()?.json().await.ok()?;
            matches!(status["state"].as_str(), Some("succeeded" | "failed")).then_some(status)
        })
        .await
    }

    /// SIGKILL: no last run, nothing flushed beyond what the broker acknowledged.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("SIGKILL");
        let _ = self.child.wait().await;
    }

    /// Ctrl-C (SIGINT) and the wait for the exit; whether it exited with 0.
    pub async fn interrupt(mut self) -> (bool, String) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status();
        }
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("hooklake dev stops within 2 minutes after Ctrl-C")
            .expect("wait");
        tokio::time::sleep(Duration::from_millis(200)).await;
        (status.success(), format!("{}\n{}", self.stdout(), self.stderr()))
    }
}
