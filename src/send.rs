//! `hooklake send`: posts webhooks to a source, signed the way that source's sender would
//! sign them (API key, Standard Webhooks, GitHub, Stripe, generic HMAC), and prints how
//! many got which answer. For trying a source by hand and for load.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use hooklake_ingest::auth::Signer;
use hooklake_schemas::config::{Config, SourceConfig};
use tokio::{sync::Semaphore, task::JoinSet, time::Instant};

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The source to post to (a [sources.<name>] section of the configuration).
    pub source: String,
    /// The JSON body (default: a small `hooklake.test` event numbered per request).
    #[arg(long, conflicts_with = "file")]
    pub data: Option<String>,
    /// Read the body from this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// How many webhooks to send; each has its own message id.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Requests per second (default: as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The ingest base URL (default: from ingest.listen).
    #[arg(long)]
    pub url: Option<String>,
}

/// Answers by status (or by transport error), with one example body each.
#[derive(Debug, Default)]
pub struct Outcome {
    pub by_status: BTreeMap<String, (u64, String)>,
    pub ok: u64,
    pub failed: u64,
}

pub async fn send(config: &Config, args: &SendArgs) -> anyhow::Result<Outcome> {
    let Some(source) = config.sources.get(&args.source) else {
        let known: Vec<&str> = config.sources.keys().map(String::as_str).collect();
        bail!("unknown source {:?}; the configuration has: {}", args.source, known.join(", "));
    };
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        bail!("--rate must be a positive number of requests per second");
    }
    let signer = Arc::new(signer(&args.source, source).context("the source's auth")?);
    // A source the signer cannot sign for (only whpk_ public keys) fails here, not per request.
    signer
        .sign("msg_check", b"{}", std::time::SystemTime::now())
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.source))?;
    let body = match (&args.data, &args.file) {
        (Some(data), _) => Some(data.clone().into_bytes()),
        (None, Some(path)) => Some(std::fs::read(path).with_context(|| format!("{}", path.display()))?),
        (None, None) => None,
    };
    let url = format!("{}/webhook/{}", base_url(config, args.url.as_deref()), args.source);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let id_header = source.id_header.clone();

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let mut outcome = Outcome::default();
    for n in 0..args.count {
        if let Some(rate) = args.rate {
            tokio::time::sleep_until(started + Duration::from_secs_f64(n as f64 / rate)).await;
        }
        let permit = gate.clone().acquire_owned().await?;
        let body = body.clone().unwrap_or_else(|| sample_event(n));
        let (client, url, signer, id_header) = (client.clone(), url.clone(), signer.clone(), id_header.clone());
        tasks.spawn(async move {
            let result = post(&client, &url, &signer, id_header.as_deref(), body).await;
            drop(permit);
            result
        });
        while let Some(done) = tasks.try_join_next() {
            outcome.record(done?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        outcome.record(done?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!("POST {url}: {} sent in {elapsed:.2}s ({:.0}/s)", args.count, args.count as f64 / elapsed.max(1e-9));
    for (status, (n, example)) in &outcome.by_status {
        if example.is_empty() {
            println!("  {status}: {n}");
        } else {
            println!("  {status}: {n}  e.g. {example}");
        }
    }
    Ok(outcome)
}

impl Outcome {
    fn record(&mut self, result: Result<(u16, String), String>) {
        let (key, example) = match result {
            Ok((status, _)) if (200..300).contains(&status) => {
                self.ok += 1;
                (status.to_string(), String::new())
            }
            Ok((status, body)) => {
                self.failed += 1;
                (status.to_string(), body)
            }
            Err(e) => {
                self.failed += 1;
                ("error".to_owned(), e)
            }
        };
        let entry = self.by_status.entry(key).or_insert((0, example));
        entry.0 += 1;
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    signer: &Signer,
    id_header: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, String), String> {
    let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let mut headers = signer.sign(&message_id, &body, std::time::SystemTime::now())?;
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    if let Some(name) = id_header {
        let name = http::HeaderName::try_from(name).map_err(|e| e.to_string())?;
        headers.insert(name, http::HeaderValue::try_from(&message_id).map_err(|e| e.to_string())?);
    }
    let response = client.post(url).headers(headers).body(body).send().await.map_err(|e| error_chain(&e))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    Ok((status, text.trim().chars().take(200).collect()))
}

/// `http://<ingest.listen>` with an unspecified address (0.0.0.0) replaced by loopback.
pub fn base_url(config: &Config, url: Option<&str>) -> String {
    if let Some(url) = url {
        return url.trim_end_matches('/').to_owned();
    }
    format!("http://{}", loopback(config.ingest.listen))
}

/// `addr`, with an unspecified IP (0.0.0.0, a listen address) replaced by loopback.
pub fn loopback(mut addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    addr
}

/// The body sent when none is given: numbered, so that a `--count` batch can be told apart.
pub fn sample_event(n: u64) -> Vec<u8> {
    serde_json::json!({
        "event_type": "hooklake.test",
        "n": n,
        "sent_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    })
    .to_string()
    .into_bytes()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The signer of source `name`, its errors named after the configuration key.
fn signer(name: &str, source: &SourceConfig) -> Result<Signer, hooklake_schemas::config::ConfigError> {
    Signer::from_config(&format!("sources.{name}.auth"), &source.auth)
}

/// A `curl` command line that posts `body` to `source` signed now (the `hooklake dev` banner).
pub fn curl_line(config: &Config, name: &str, source: &SourceConfig, body: &str) -> Result<String, String> {
    let signer = signer(name, source).map_err(|e| e.to_string())?;
    let message_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let headers = signer.sign(&message_id, body.as_bytes(), std::time::SystemTime::now())?;
    let mut line = format!("curl -i {}/webhook/{name} -H 'content-type: application/json'", base_url(config, None));
    for (k, v) in &headers {
        line.push_str(&format!(" -H '{k}: {}'", v.to_str().unwrap_or_default()));
    }
    line.push_str(&format!(" -d '{body}'"));
    Ok(line)
}
