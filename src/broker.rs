//! tansu's broker crate as a library: a Kafka-API broker with SQLite storage in a
//! directory of its own, inside the hooklake process. `hooklake dev` runs one beside ingest
//! and the sink; `hooklake broker` runs one alone (the test suite's broker, or a laptop's).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tansu_broker::{broker::Broker as Tansu, coordinator::group::administrator::Controller};
use tansu_storage::StorageContainer;
use tokio::task::JoinHandle;
use url::Url;

/// The data directory of `hooklake dev`'s broker (and `hooklake broker`'s default), under
/// the current directory.
pub const DATA_DIR: &str = ".hooklake";
/// The file of the SQLite storage, in the broker's data directory.
const DATABASE: &str = "tansu.db";
/// tansu keys what it stores by cluster id: a data directory made by an earlier
/// `hooklake dev` holds its topics and records under this one, so it must not change.
const CLUSTER_ID: &str = "hooklake-dev";

/// Where the broker keeps records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Storage {
    /// SQLite in the data directory: durable, and what everything but benchmarks uses.
    #[default]
    Sqlite,
    /// tansu's in-memory store: nothing survives a restart, and its ListOffsets answers
    /// are wrong, so the sink must never read from it. For producer benchmarks only.
    Memory,
}

#[derive(Debug)]
pub struct Broker {
    addr: SocketAddr,
    data: PathBuf,
    task: JoinHandle<()>,
}

impl Broker {
    /// Starts tansu listening on `listen` (`host:port`, an address of this machine), its data
    /// in `data_dir` (created when missing; a broker started again on the same directory has
    /// its topics and records), and waits until it accepts connections. tansu resolves its
    /// storage against the current directory, so `data_dir` is relative to it. With
    /// [`Storage::Memory`] the directory stays empty. Its metadata tells clients to connect
    /// to `advertise` (`host:port`) when given, else to `listen`: for a proxy in front of it.
    pub async fn start(
        listen: &str,
        advertise: Option<&str>,
        data_dir: &Path,
        storage: Storage,
    ) -> anyhow::Result<Self> {
        if data_dir.is_absolute() {
            bail!("the broker's data directory is relative to the current one, not {}", data_dir.display());
        }
        let addr = tokio::net::lookup_host(listen)
            .await
            .with_context(|| format!("{listen:?} is not host:port"))?
            .next()
            .with_context(|| format!("{listen:?} resolves to no address"))?;
        if !addr.ip().is_loopback() && !addr.ip().is_unspecified() {
            bail!("the embedded broker listens on a local address, not {listen}");
        }
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let listener = Url::parse(&format!("tcp://{addr}"))?;
        let advertised = match advertise {
            Some(a) => Url::parse(&format!("tcp://{a}")).with_context(|| format!("{a:?} is not host:port"))?,
            None => listener.clone(),
        };
        let storage = match storage {
            Storage::Sqlite => Url::parse(&format!("sqlite://{}", data_dir.join(DATABASE).display()))
                .with_context(|| format!("{} cannot be a storage URL", data_dir.display()))?,
            Storage::Memory => Url::parse("memory://tansu/")?,
        };
        let mut broker = Tansu::<Controller<StorageContainer>, StorageContainer>::builder()
            .node_id(tansu_broker::NODE_ID)
            .cluster_id(CLUSTER_ID)
            .incarnation_id(uuid::Uuid::now_v7())
            .advertised_listener(advertised)
            .storage(storage)
            .listener(listener)
            .silent(true)
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("cannot start the embedded broker: {e:?}"))?;
        let task = tokio::spawn(async move {
            if let Err(e) = broker.serve(tokio::time::Instant::now()).await {
                tracing::error!(error = ?e, "the embedded broker stopped");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if task.is_finished() || Instant::now() > deadline {
                bail!("the embedded broker did not start listening on {addr} (is the port taken?)");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { addr, data: data_dir.to_owned(), task })
    }

    pub fn describe(&self) -> String {
        format!("tansu (embedded) on {}, data in {}/", self.addr, self.data.display())
    }

    /// Stops at once. Every produce the broker acknowledged is in its SQLite file.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Serves until `shutdown` resolves or the broker fails.
    pub async fn serve_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            () = shutdown => {
                self.stop();
                Ok(())
            }
            r = &mut self.task => {
                r.context("the embedded broker panicked")?;
                bail!("the embedded broker stopped (see the log above)")
            }
        }
    }
}
