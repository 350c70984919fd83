//! The run queue of one sink instance: one run at a time; a request while a run is queued
//! joins that run instead of queueing another. Recent runs stay visible for `GET /runs/{id}`.

use std::{collections::VecDeque, sync::Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Notify;

use crate::run::RunReport;

/// What started a run (the `trigger` label of `hooklake_sink_runs_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Manual,
    Schedule,
    Lag,
}

impl Trigger {
    pub fn label(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Schedule => "schedule",
            Self::Lag => "lag",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Queued,
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunStatus {
    pub id: String,
    pub trigger: Trigger,
    pub state: RunState,
    pub queued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    pub report: Option<RunReport>,
    pub error: Option<String>,
}

/// How many finished runs are remembered.
const HISTORY: usize = 100;

#[derive(Debug, Default)]
pub struct RunQueue {
    statuses: Mutex<VecDeque<RunStatus>>,
    wake: Notify,
}

impl RunQueue {
    /// Queues a run, or returns the one already queued.
    pub fn request(&self, trigger: Trigger) -> RunStatus {
        let mut statuses = self.statuses.lock().expect("not poisoned");
        if let Some(queued) = statuses.iter().find(|s| s.state == RunState::Queued) {
            return queued.clone();
        }
        let status = RunStatus {
            id: uuid::Uuid::now_v7().to_string(),
            trigger,
            state: RunState::Queued,
            queued_at: Utc::now(),
            started_at: None,
            finished_at: None,
            report: None,
            error: None,
        };
        statuses.push_back(status.clone());
        while statuses.len() > HISTORY {
            statuses.pop_front();
        }
        drop(statuses);
        self.wake.notify_one();
        status
    }

    pub fn get(&self, id: &str) -> Option<RunStatus> {
        self.statuses.lock().expect("not poisoned").iter().find(|s| s.id == id).cloned()
    }

    /// Whether a run is queued or running (triggers then do not ask for another).
    pub fn busy(&self) -> bool {
        self.statuses
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|s| matches!(s.state, RunState::Queued | RunState::Running))
    }

    /// Waits for a queued run and marks it running.
    pub async fn next(&self) -> RunStatus {
        loop {
            let notified = self.wake.notified();
            if let Some(s) = self.start_queued() {
                return s;
            }
            notified.await;
        }
    }

    fn start_queued(&self) -> Option<RunStatus> {
        let mut statuses = self.statuses.lock().expect("not poisoned");
        let s = statuses.iter_mut().find(|s| s.state == RunState::Queued)?;
        s.state = RunState::Running;
        s.started_at = Some(Utc::now());
        Some(s.clone())
    }

    pub fn finish(&self, id: &str, result: Result<RunReport, String>) {
        let mut statuses = self.statuses.lock().expect("not poisoned");
        if let Some(s) = statuses.iter_mut().find(|s| s.id == id) {
            s.finished_at = Some(Utc::now());
            match result {
                Ok(report) => {
                    s.state = RunState::Succeeded;
                    s.report = Some(report);
                }
                Err(e) => {
                    s.state = RunState::Failed;
                    s.error = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_coalesce_while_queued_and_runs_go_one_at_a_time() {
        let runs = RunQueue::default();
        let a = runs.request(Trigger::Manual);
        let b = runs.request(Trigger::Schedule);
        assert_eq!(a.id, b.id, "a second request joins the queued run");
        let running = runs.next().await;
        assert_eq!(running.id, a.id);
        assert_eq!(runs.get(&a.id).unwrap().state, RunState::Running);
        let c = runs.request(Trigger::Lag);
        assert_ne!(c.id, a.id, "a new run queues behind the running one");
        runs.finish(&a.id, Err("boom".into()));
        assert_eq!(runs.get(&a.id).unwrap().state, RunState::Failed);
        assert_eq!(runs.next().await.id, c.id);
        runs.finish(&c.id, Ok(RunReport::default()));
        assert!(!runs.busy());
    }
}
