//! The `hooklake` binary: parses arguments, loads the configuration, sets up logging,
//! binds listeners and calls the crates' `run` functions. Nothing else lives here.

mod telemetry;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hooklake_schemas::config::Config;
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "hooklake", version, about = "Webhooks to Apache Iceberg tables, through Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve POST /webhook/{source}: authenticate, validate, and answer 200 once Kafka has the record.
    Ingest {
        /// The configuration file (see hooklake.example.toml).
        #[arg(long, short, env = "HOOKLAKE_CONFIG")]
        config: PathBuf,
    },
    /// Load Kafka topics into Iceberg tables: a service with schedule and lag triggers and an
    /// admin port, or with --once a single run to the current end of the topics.
    Sink {
        #[arg(long, short, env = "HOOKLAKE_CONFIG")]
        config: PathBuf,
        /// One run up to the high watermarks taken at its start, then exit (0 on success).
        #[arg(long)]
        once: bool,
    },
    /// Load and validate a configuration file, print a summary, and exit (non-zero when invalid).
    CheckConfig {
        #[arg(long, short, env = "HOOKLAKE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init();
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hooklake: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ingest { config } => ingest(load(&config)?).await,
        Command::Sink { config, once: true } => sink_once(load(&config)?).await,
        Command::Sink { config, once: false } => sink(load(&config)?).await,
        Command::CheckConfig { config } => check_config(&config),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Arc<Config>> {
    let config = Config::load(path, &Config::process_env()).with_context(|| format!("{}", path.display()))?;
    hooklake_ingest::validate(&config).with_context(|| format!("{}", path.display()))?;
    hooklake_sink::validate(&config).with_context(|| format!("{}", path.display()))?;
    Ok(Arc::new(config))
}

async fn ingest(config: Arc<Config>) -> anyhow::Result<()> {
    let listeners = hooklake_ingest::Listeners {
        http: bind(config.ingest.listen, "ingest.listen").await?,
        admin: bind(config.ingest.admin_listen, "ingest.admin_listen").await?,
    };
    hooklake_ingest::run(config, listeners, telemetry::shutdown_signal()).await?;
    Ok(())
}

async fn sink(config: Arc<Config>) -> anyhow::Result<()> {
    let admin = bind(config.sink.admin_listen, "sink.admin_listen").await?;
    hooklake_sink::serve(&config, admin, telemetry::shutdown_signal()).await?;
    Ok(())
}

async fn sink_once(config: Arc<Config>) -> anyhow::Result<()> {
    let report = hooklake_sink::once(&config, &hooklake_sink::Quiet).await.context("the sink run failed")?;
    println!(
        "run {}: {} records → {} rows in {} files ({} bytes), {} duplicates dropped, {} to the DLQ, in {:.1}s",
        report.run_id,
        report.records,
        report.rows,
        report.files,
        report.bytes,
        report.duplicates,
        report.dead_letters,
        report.duration_seconds
    );
    for t in &report.tables {
        println!("  {}: {} rows, {} files, {} bytes, {} duplicates", t.table, t.rows, t.files, t.bytes, t.duplicates);
    }
    Ok(())
}

async fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("{key}: cannot listen on {addr}"))
}

fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let config = load(path)?;
    println!("{}: valid", path.display());
    println!("  kafka: {}", config.kafka.brokers);
    println!("  catalog: {} ({:?})", config.catalog.name, config.catalog.kind);
    for (name, source) in &config.sources {
        println!(
            "  source {name}: POST /webhook/{name} → topic {} → table {} (auth {})",
            source.topic_for(name),
            source.table_for(name),
            source.auth.scheme()
        );
    }
    Ok(())
}
