//! `hooklake sink`: the long-running service. A worker executes queued runs one at a time;
//! the schedule, the lag trigger and `POST /runs` queue them. Lag gauges are refreshed
//! every `lag_refresh`, also between runs.

use std::{future::Future, sync::Arc, time::Duration};

use hooklake_schemas::config::Config;
use tokio::{net::TcpListener, sync::watch};

use crate::{
    SinkError,
    admin::{self, Admin},
    queue::Trigger,
    run,
    sink::{Membership, Sink},
};

/// Serves until `shutdown`: the admin port, the triggers and the run worker. A run in
/// progress when shutdown comes is finished first.
pub async fn serve(
    config: &Config,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SinkError> {
    serve_as(config, Membership::Group, admin_listener, shutdown).await
}

/// [`serve`] with a chosen membership: `hooklake dev`, the only sink of its broker, takes
/// every partition ([`Membership::All`]) so that after a crash its restart does not wait
/// for the dead member's group session to time out.
///
/// The admin port is served at once. A catalog, broker or registry that cannot be reached
/// at start-up is waited for ([`start`]), with `/readyz` saying why; any other start-up
/// error ends the service.
pub async fn serve_as(
    config: &Config,
    membership: Membership,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), SinkError> {
    let (stop_tx, stop) = watch::channel(false);
    let admin = Admin::new();
    let admin_task = tokio::spawn(admin::serve(admin.clone(), admin_listener, stop.clone()));
    let mut shutdown = std::pin::pin!(shutdown);
    let started = tokio::select! {
        started = start(config, membership, &admin) => Some(started),
        () = &mut shutdown => None,
    };
    let sink = match started {
        Some(Ok(sink)) => sink,
        // Shut down while waiting, or an error waiting cannot cure: only the port to close.
        early => {
            let _ = stop_tx.send(true);
            let _ = admin_task.await;
            if early.is_none() {
                tracing::info!("shut down before the sink started");
            }
            return early.map_or(Ok(()), |r| r.map(drop));
        }
    };
    admin.set_started(sink.clone());
    let worker = tokio::spawn(worker(sink.clone(), stop.clone()));
    let schedule = tokio::spawn(schedule_trigger(sink.clone(), stop.clone()));
    let lag = tokio::spawn(lag_trigger(sink.clone(), stop.clone()));
    tracing::info!(tables = sink.ctx.settings.routes.len(), schedule = ?sink.ctx.settings.schedule, "sink is serving");
    shutdown.await;
    tracing::info!("shutting down: finishing the current run");
    let _ = stop_tx.send(true);
    let _ = tokio::join!(worker, schedule, lag);
    let _ = admin_task.await;
    drop(admin); // it holds the sink too
    if let Ok(sink) = Arc::try_unwrap(sink) {
        sink.ctx.consumer.close().await;
    }
    tracing::info!("sink stopped");
    Ok(())
}

/// The first wait after a failed start-up attempt; it doubles up to [`START_RETRY_MAX`].
const START_RETRY_FIRST: Duration = Duration::from_millis(500);
const START_RETRY_MAX: Duration = Duration::from_secs(30);

/// [`Sink::start`] until it succeeds or fails for a reason waiting cannot cure. Each
/// failure is logged and shown by `/readyz` until the next attempt.
async fn start(config: &Config, membership: Membership, admin: &Admin) -> Result<Arc<Sink>, SinkError> {
    let mut wait = START_RETRY_FIRST;
    loop {
        match Sink::start(config, membership).await {
            Ok(sink) => return Ok(sink),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, retry_in = ?wait, "the sink cannot start yet");
                admin.set_start_error(&e.to_string());
            }
            Err(e) => return Err(e),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(START_RETRY_MAX);
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn worker(sink: Arc<Sink>, mut stop: watch::Receiver<bool>) {
    loop {
        let status = tokio::select! {
            s = sink.runs.next() => s,
            _ = stopped(&mut stop) => return,
        };
        tracing::info!(run_id = %status.id, trigger = status.trigger.label(), "run started");
        let result = sink.execute(status.trigger, &status.id, &run::Quiet).await;
        match &result {
            Ok(r) => {
                tracing::info!(run_id = %status.id, rows = r.rows, files = r.files, seconds = r.duration_seconds, "run finished")
            }
            Err(e) => tracing::error!(run_id = %status.id, error = %e, "run failed"),
        }
        // Gauges first, so whoever sees the run finished sees the lag it left.
        if let Err(e) = sink.refresh_lag().await {
            tracing::warn!(error = %e, "lag refresh after the run failed");
        }
        sink.runs.finish(&status.id, result.map_err(|e| e.to_string()));
    }
}

async fn schedule_trigger(sink: Arc<Sink>, mut stop: watch::Receiver<bool>) {
    loop {
        let Some(next) = sink.ctx.settings.schedule.next_after(chrono::Utc::now()) else { return };
        let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(&mut stop) => return,
        }
        let status = sink.runs.request(Trigger::Schedule);
        tracing::debug!(run_id = %status.id, "scheduled run requested");
    }
}

async fn lag_trigger(sink: Arc<Sink>, mut stop: watch::Receiver<bool>) {
    let s = &sink.ctx.settings;
    let mut tick = tokio::time::interval(s.lag_refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped(&mut stop) => return,
        }
        let (messages, age) = match sink.refresh_lag().await {
            Ok(lag) => lag,
            Err(e) => {
                tracing::warn!(error = %e, "lag refresh failed");
                continue;
            }
        };
        let over_count = s.lag_messages.is_some_and(|n| messages as u64 >= n && messages > 0);
        let over_age = s.lag_age.is_some_and(|a| age >= a && messages > 0);
        if (over_count || over_age) && !sink.runs.busy() {
            let status = sink.runs.request(Trigger::Lag);
            tracing::info!(run_id = %status.id, messages, age_seconds = age.as_secs(), "lag over the threshold: run requested");
        }
    }
}
