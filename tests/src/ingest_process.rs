//! `hooklake ingest` as a process, the way production runs it, on two ports fixed when it
//! is first started: it can be stopped with SIGTERM and started again on the same address
//! while clients keep posting to it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use tokio::process::{Child, Command};

use crate::{free_port, tools};

#[derive(Debug)]
pub struct IngestProcess {
    pub port: u16,
    pub admin_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl IngestProcess {
    /// Starts `hooklake ingest --config <config>` (listen addresses moved to free ports
    /// through `HOOKLAKE__INGEST__…` overrides), logging to `log`; returns once `/livez`
    /// answers.
    pub async fn start(config: &Path, log: &Path) -> Self {
        let mut p = Self {
            port: free_port(),
            admin_port: free_port(),
            config: config.to_owned(),
            log: log.to_owned(),
            child: None,
        };
        p.restart().await;
        p
    }

    /// `http://127.0.0.1:<port>/webhook/<source>`.
    pub fn url(&self, source: &str) -> String {
        format!("http://127.0.0.1:{}/webhook/{source}", self.port)
    }

    pub fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// Starts the process again (after [`Self::terminate`]) on the same ports.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "ingest is still running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(tools::hooklake_bin())
            .args(["ingest", "--config"])
            .arg(&self.config)
            .env("HOOKLAKE__INGEST__LISTEN", format!("\"127.0.0.1:{}\"", self.port))
            .env("HOOKLAKE__INGEST__ADMIN_LISTEN", format!("\"127.0.0.1:{}\"", self.admin_port))
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("hooklake ingest runs");
        self.child = Some(child);
        let livez = format!("{}/livez", self.admin());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut last = String::from("no answer");
        while tokio::time::Instant::now() < deadline {
            match crate::http::client().get(&livez).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => last = format!("{}: {}", r.status(), r.text().await.unwrap_or_default().trim()),
                Err(e) => last = format!("no answer: {e}"),
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            assert!(exited.is_none(), "ingest exited at start-up ({exited:?}); its log ends:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // What a failure needs to be understood: the last answer and what ingest logged.
        panic!("ingest's /livez not ok after 60 s (last: {last}); its log ends:\n{}", self.log_tail());
    }

    /// SIGTERM and the wait for the exit (ingest drains the requests in flight first);
    /// whether it exited with 0.
    pub async fn terminate(&mut self) -> bool {
        if self.child.is_none() {
            return true;
        }
        self.signal_term();
        self.wait_exit(Duration::from_secs(60)).await.is_some_and(|status| status.success())
    }

    /// SIGTERM, without waiting for the exit.
    pub fn signal_term(&self) {
        self.signal("-TERM");
    }

    /// Sends the process a signal (`kill <signal>`: `-TERM`, `-STOP`, `-CONT`).
    pub fn signal(&self, signal: &str) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill").args([signal, &pid.to_string()]).status();
        }
    }

    /// Waits up to `limit` for the process to exit: its status, or `None` when it was still
    /// running (it is then killed).
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        match tokio::time::timeout(limit, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = child.kill().await;
                None
            }
        }
    }

    /// Waits until `/readyz` answers 200 (the broker reachable, the source topics there).
    pub async fn wait_ready(&self) {
        let readyz = format!("{}/readyz", self.admin());
        crate::eventually(Duration::from_secs(30), "ingest ready", || async {
            let r = crate::http::client().get(&readyz).send().await.ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 100 lines of [`Self::log`].
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(100)..].join("\n")
    }
}
