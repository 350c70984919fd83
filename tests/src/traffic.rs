//! Webhook traffic for the fault tests and the soak: concurrent clients POST keyed
//! webhooks (API key, a unique `x-request-id` each) to `hooklake ingest` over HTTP until
//! told to stop, recording every message id answered 200 and what the other answers were.
//! A client never retries: each id is posted once, so an id in the table that was not
//! answered 200 can only be a request that failed late (a 503 written anyway).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

/// Where and how to post.
#[derive(Debug, Clone)]
pub struct Target {
    /// The webhook URL (`http://…/webhook/<source>`).
    pub url: String,
    /// The header carrying the API key, and the key.
    pub api_key: (String, String),
    /// Message ids are `<tag>-c<client>-<n>`.
    pub tag: String,
}

impl Target {
    pub fn new(url: &str, api_key_header: &str, api_key: &str, tag: &str) -> Self {
        Self { url: url.to_owned(), api_key: (api_key_header.to_owned(), api_key.to_owned()), tag: tag.to_owned() }
    }
}

/// How hard to post.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub clients: usize,
    /// Each client waits this long between two requests (closed loop otherwise).
    pub pause: Duration,
}

/// What the clients saw, all together.
#[derive(Debug, Default, Clone)]
pub struct TrafficReport {
    /// Ids answered 200.
    pub accepted: BTreeSet<String>,
    /// Ids posted but not answered 200 (another status, a connection error, a timeout).
    pub refused: BTreeSet<String>,
    /// Answers by kind: `200`, `503`, `connection error`, `timeout`, …
    pub answers: BTreeMap<String, u64>,
}

impl TrafficReport {
    pub fn sent(&self) -> usize {
        self.accepted.len() + self.refused.len()
    }

    fn merge(&mut self, other: TrafficReport) {
        self.accepted.extend(other.accepted);
        self.refused.extend(other.refused);
        for (k, v) in other.answers {
            *self.answers.entry(k).or_default() += v;
        }
    }
}

/// Clients posting in the background.
#[derive(Debug)]
pub struct Traffic {
    stop: watch::Sender<bool>,
    clients: Vec<JoinHandle<TrafficReport>>,
    accepted: Arc<AtomicU64>,
}

/// A request that got no answer within this is counted as a timeout (ingest's response
/// deadline is a few seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// After a failed request a client waits this long, so a stopped ingest is not hammered.
const BACKOFF: Duration = Duration::from_millis(100);

impl Traffic {
    /// Starts `load.clients` clients posting to `target` until [`Traffic::stop`].
    pub fn start(target: &Target, load: Load) -> Self {
        let (stop, stopped) = watch::channel(false);
        let accepted = Arc::new(AtomicU64::new(0));
        let clients = (0..load.clients)
            .map(|n| tokio::spawn(client(target.clone(), n, load.pause, stopped.clone(), accepted.clone())))
            .collect();
        Self { stop, clients, accepted }
    }

    /// Ids answered 200 so far.
    pub fn accepted_so_far(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` more ids were answered 200 than now (traffic really flows).
    pub async fn wait_accepted(&self, n: u64, timeout: Duration) {
        let goal = self.accepted_so_far() + n;
        crate::eventually(timeout, &format!("{n} more webhooks answered 200"), || async {
            (self.accepted_so_far() >= goal).then_some(())
        })
        .await;
    }

    /// Stops the clients (each finishes its request in flight) and sums up what they saw.
    pub async fn stop(self) -> TrafficReport {
        let _ = self.stop.send(true);
        let mut report = TrafficReport::default();
        for c in self.clients {
            report.merge(c.await.expect("traffic client"));
        }
        report
    }
}

async fn client(
    target: Target,
    n: usize,
    pause: Duration,
    mut stopped: watch::Receiver<bool>,
    accepted: Arc<AtomicU64>,
) -> TrafficReport {
    let http = crate::http::client();
    let mut report = TrafficReport::default();
    for seq in 0u64.. {
        if *stopped.borrow() {
            break;
        }
        let id = format!("{}-c{n}-{seq:07}", target.tag);
        let answer = post(&http, &target, &id).await;
        *report.answers.entry(answer.clone()).or_default() += 1;
        let wait = if answer == "200" {
            accepted.fetch_add(1, Ordering::Relaxed);
            report.accepted.insert(id);
            pause
        } else {
            report.refused.insert(id);
            pause.max(BACKOFF)
        };
        if !wait.is_zero() {
            // Stop promptly even in the middle of a pause.
            let _ = tokio::time::timeout(wait, stopped.wait_for(|s| *s)).await;
        }
    }
    report
}

/// One POST; the answer's kind (`200`, `503`, `connection error`, `timeout`, `error`).
async fn post(http: &reqwest::Client, target: &Target, id: &str) -> String {
    let body = format!("{{\"event_type\":\"fault.test\",\"id\":\"{id}\"}}");
    let result = http
        .post(&target.url)
        .header("content-type", "application/json")
        .header(&target.api_key.0, &target.api_key.1)
        .header("x-request-id", id)
        .body(body)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await;
    match result {
        Ok(r) => r.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(e) if e.is_connect() => "connection error".into(),
        Err(_) => "error".into(),
    }
}
