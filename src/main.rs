//! The `hooklake` binary: parses arguments, sets up logging, loads the configuration and
//! runs both services' start-up checks on it (whichever command runs), builds the Tokio
//! runtime (`ingest`'s sized by `ingest.worker_threads`), binds the listeners and calls the
//! crates' entry points (`hooklake_ingest::run`, `hooklake_sink::serve` and `once`). The
//! commands that are tools rather than services live in their own modules: `dev`, `send`,
//! `query`, `broker`, and `progress` (the bar of `sink --once` and of dev's last run).

#[cfg(feature = "embedded-broker")]
mod broker;
mod dev;
mod progress;
mod query;
mod send;
mod telemetry;

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hooklake_schemas::config::Config;
use tokio::net::TcpListener;

/// With the `jemalloc` feature (a default, and in the image's build), Rust allocations go to
/// jemalloc rather than glibc's malloc. Measured in BENCHMARKS.md, "jemalloc as hooklake's
/// allocator".
#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "hooklake", version, about = "Webhooks to Apache Iceberg tables, through Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--config` of the commands that fall back to the example configuration.
#[derive(Debug, clap::Args)]
struct ExampleConfig {
    /// Default: ./hooklake.example.toml, else the copy built into hooklake.
    #[arg(long, short, env = "HOOKLAKE_CONFIG")]
    config: Option<PathBuf>,
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
    /// The whole pipeline in one process: an embedded broker (data in .hooklake/), ingest on
    /// ingest.listen, and the sink every 30 s into the catalog and warehouse of the
    /// configuration (lake/ in the example). Ctrl-C loads what is left and stops.
    Dev {
        #[command(flatten)]
        config: ExampleConfig,
        /// When the sink loads (every <duration> | hourly | daily | a cron expression | off).
        #[arg(long, default_value = "every 30s")]
        schedule: String,
    },
    /// Post webhooks to a source, signed the way its sender would sign them; prints the
    /// answers by status and exits non-zero when any was not a 2xx.
    Send {
        #[command(flatten)]
        config: ExampleConfig,
        #[command(flatten)]
        args: send::SendArgs,
    },
    /// Run SQL over the Iceberg tables (named layer.folder.table), with JSON functions such as
    /// json_get_str(payload, 'type').
    Query {
        #[command(flatten)]
        config: ExampleConfig,
        /// One or more statements separated by `;`; the last one's result is printed.
        sql: String,
        #[arg(long, value_enum, default_value_t)]
        format: query::Format,
    },
    /// A Kafka-API broker alone (tansu, SQLite storage in --data): for a laptop, or the test
    /// suite. Runs until SIGTERM or Ctrl-C; its data survives a restart.
    #[cfg(feature = "embedded-broker")]
    Broker {
        /// host:port to listen on (a local address); clients use it as bootstrap server.
        #[arg(long, default_value = "127.0.0.1:9092")]
        listen: String,
        /// The directory of its SQLite database (created when missing).
        #[arg(long, default_value = broker::DATA_DIR)]
        data: PathBuf,
        /// `memory` keeps records in memory only, with wrong ListOffsets answers: for
        /// producer benchmarks, never for the sink.
        #[arg(long, value_enum, default_value_t)]
        storage: broker::Storage,
        /// host:port the broker tells clients to connect to (its metadata answers), when
        /// it is not --listen: e.g. a proxy in front of it that delays acknowledgements.
        #[arg(long)]
        advertise: Option<String>,
    },
    /// Load and validate a configuration file, print a summary, and exit (non-zero when invalid).
    CheckConfig {
        #[arg(long, short, env = "HOOKLAKE_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init(match cli.command {
        // The broker's and the libraries' chatter would bury the banner.
        Command::Dev { .. } => "warn,hooklake=info,hooklake_ingest=info,hooklake_sink=info",
        // Their output is the answer; only problems are logged.
        Command::Send { .. } | Command::Query { .. } => "warn",
        #[cfg(feature = "embedded-broker")]
        Command::Broker { .. } => "warn,hooklake=info",
        _ => "info,librdkafka=warn",
    });
    let outcome = match cli.command {
        // ingest sizes its runtime by its configuration (`ingest.worker_threads`).
        Command::Ingest { config } => {
            load(&config).and_then(|config| runtime(config.ingest.worker_threads)?.block_on(ingest(config)))
        }
        command => runtime(None).and_then(|runtime| runtime.block_on(dispatch(command))),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hooklake: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A multi-threaded Tokio runtime: `workers` threads, or one per CPU.
fn runtime(workers: Option<u16>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n.into());
    }
    builder.enable_all().build().context("cannot start a Tokio runtime")
}

/// Runs every command but `ingest`, which `main` runs on a runtime of its configured size.
async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Ingest { .. } => unreachable!("main runs ingest on a runtime of its own size"),
        Command::Sink { config, once: true } => sink_once(load(&config)?).await,
        Command::Sink { config, once: false } => sink(load(&config)?).await,
        Command::CheckConfig { config } => check_config(&config),
        Command::Dev { config, schedule } => {
            let (mut config, label) = load_or_example(config.config.as_deref())?;
            Arc::make_mut(&mut config).sink.schedule = schedule;
            hooklake_sink::validate(&config).context("--schedule")?;
            dev::dev(config, &label).await
        }
        Command::Send { config, args } => {
            let (config, _) = load_or_example(config.config.as_deref())?;
            let outcome = send::send(&config, &args).await?;
            if outcome.failed > 0 {
                anyhow::bail!("{} of {} requests were not accepted", outcome.failed, args.count);
            }
            Ok(())
        }
        #[cfg(feature = "embedded-broker")]
        Command::Broker { listen, data, storage, advertise } => {
            std::fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
            // tansu resolves its storage against the current directory.
            std::env::set_current_dir(&data).with_context(|| format!("cannot enter {}", data.display()))?;
            let broker =
                broker::Broker::start(&listen, advertise.as_deref(), std::path::Path::new(""), storage).await?;
            tracing::info!(%listen, ?advertise, data = %data.display(), ?storage, "broker ready");
            broker.serve_until(telemetry::shutdown_signal()).await
        }
        Command::Query { config, sql, format } => {
            let (config, _) = load_or_example(config.config.as_deref())?;
            print!("{}", query::query(&config, &sql, format).await?);
            Ok(())
        }
    }
}

/// The example configuration, for `dev`, `send` and `query` without --config.
const EXAMPLE_CONFIG: &str = include_str!("../hooklake.example.toml");
const EXAMPLE_FILE: &str = "hooklake.example.toml";

/// `path`, else ./hooklake.example.toml, else the example built into the binary; with a
/// label saying which.
fn load_or_example(path: Option<&std::path::Path>) -> anyhow::Result<(Arc<Config>, String)> {
    if let Some(path) = path {
        return Ok((load(path)?, path.display().to_string()));
    }
    if std::path::Path::new(EXAMPLE_FILE).exists() {
        return Ok((load(std::path::Path::new(EXAMPLE_FILE))?, EXAMPLE_FILE.to_owned()));
    }
    let label = format!("the built-in {EXAMPLE_FILE}");
    let config = Config::from_toml(EXAMPLE_CONFIG, &Config::process_env()).context(label.clone())?;
    Ok((validated(config).context(label.clone())?, label))
}

fn load(path: &std::path::Path) -> anyhow::Result<Arc<Config>> {
    let config = Config::load(path, &Config::process_env()).with_context(|| format!("{}", path.display()))?;
    validated(config).with_context(|| format!("{}", path.display()))
}

/// Both services' start-up checks.
fn validated(config: Config) -> anyhow::Result<Arc<Config>> {
    hooklake_ingest::validate(&config)?;
    hooklake_sink::validate(&config)?;
    Ok(Arc::new(config))
}

async fn ingest(config: Arc<Config>) -> anyhow::Result<()> {
    let listeners = ingest_listeners(&config).await?;
    hooklake_ingest::run(config, listeners, telemetry::shutdown_signal()).await?;
    Ok(())
}

/// Binds `ingest.listen` and `ingest.admin_listen`.
async fn ingest_listeners(config: &Config) -> anyhow::Result<hooklake_ingest::Listeners> {
    Ok(hooklake_ingest::Listeners {
        http: bind(config.ingest.listen, "ingest.listen")?,
        admin: bind(config.ingest.admin_listen, "ingest.admin_listen")?,
    })
}

async fn sink(config: Arc<Config>) -> anyhow::Result<()> {
    let admin = bind(config.sink.admin_listen, "sink.admin_listen")?;
    hooklake_sink::serve(&config, admin, telemetry::shutdown_signal()).await?;
    Ok(())
}

async fn sink_once(config: Arc<Config>) -> anyhow::Result<()> {
    let bar = progress::Bar::on_terminal();
    let result = hooklake_sink::once(&config, &bar).await;
    bar.finish();
    print_report(&result.context("the sink run failed")?);
    Ok(())
}

/// The summary of a run: rows, files and duration, then per table.
fn print_report(report: &hooklake_sink::RunReport) {
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
}

fn bind(addr: std::net::SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    hooklake_ingest::connections::listen(addr).with_context(|| format!("{key}: cannot listen on {addr}"))
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
