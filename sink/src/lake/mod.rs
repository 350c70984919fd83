//! The Iceberg side of the sink: the catalog connection, tables with the contract schema
//! (created on first use), the Kafka offsets stored in them, and one guarded commit per
//! table per run.
//!
//! The catalog is iceberg-rust's own `Catalog` trait: the SQL catalog (SQLite or
//! PostgreSQL) or the REST catalog in production, iceberg's `MemoryCatalog` in unit tests.

mod pinned;
mod writer;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use hooklake_schemas::{
    config::{CatalogType, Config, TableRef},
    table::{
        PARTITION_FIELD, SUMMARY_OFFSETS, SUMMARY_RUN_ID, TABLE_SCHEMA_V1_JSON, columns, offset_property,
        parse_offset_property,
    },
};
use iceberg::{
    Catalog, CatalogBuilder, ErrorKind, NamespaceIdent, TableCreation, TableIdent,
    spec::{DataFile, Schema, Transform, UnboundPartitionSpec},
    table::Table,
    transaction::{ApplyTransactionAction, Transaction},
};
use iceberg_catalog_rest::RestCatalogBuilder;
use iceberg_catalog_sql::SqlCatalogBuilder;
use iceberg_storage_opendal::OpenDalResolvingStorageFactory;

pub use self::{
    pinned::PinnedCatalog,
    writer::{ROW_GROUP_BYTES, ROW_GROUP_ROWS, Row, TableWriter, WriteStats, ZSTD_LEVEL},
};
use crate::{
    SinkError,
    kafka::TopicPartition,
    settings::{Route, Settings},
};

/// Table properties set on tables hooklake creates.
fn table_properties() -> HashMap<String, String> {
    HashMap::from([
        // A conflicting commit must surface to the sink, which re-reads its offsets and
        // re-plans; iceberg-rust would otherwise reload and re-apply it (see `PinnedCatalog`).
        ("commit.retry.num-retries".to_owned(), "0".to_owned()),
        ("write.format.default".to_owned(), "parquet".to_owned()),
        ("write.parquet.compression-codec".to_owned(), "zstd".to_owned()),
        ("hooklake.schema".to_owned(), "webhook_table.v1".to_owned()),
    ])
}

#[derive(Clone)]
pub struct Lake {
    catalog: Arc<dyn Catalog>,
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake").finish_non_exhaustive()
    }
}

/// A table as the sink saw it when planning, with the offsets stored in it.
#[derive(Debug, Clone)]
pub struct LakeTable {
    pub table: Table,
    pub offsets: HashMap<TopicPartition, i64>,
}

impl LakeTable {
    fn new(table: Table) -> Self {
        let offsets = table
            .metadata()
            .properties()
            .iter()
            .filter_map(|(k, v)| {
                let (topic, partition) = parse_offset_property(k)?;
                Some(((topic.to_owned(), partition), v.parse().ok()?))
            })
            .collect();
        Self { table, offsets }
    }

    /// The next offset to load for a partition; `None` when nothing was ever loaded from it.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.offsets.get(&(topic.to_owned(), partition)).copied()
    }
}

/// Every configured table as it is now (`None`: not created yet), by table label: what a
/// run plans from and what the lag gauges are measured against. The one place that reads
/// the tables' next offsets.
#[derive(Debug, Default)]
pub struct Tables(HashMap<String, Option<LakeTable>>);

impl Tables {
    /// The next offset to load from `partition` of `route`'s topic; `None` when its table
    /// does not exist or never loaded from that partition.
    pub fn next_offset(&self, route: &Route, partition: i32) -> Option<i64> {
        self.0.get(&route.table_label)?.as_ref()?.next_offset(&route.topic, partition)
    }

    /// The table `route` feeds, as loaded.
    pub fn get(&self, route: &Route) -> Option<&LakeTable> {
        self.0.get(&route.table_label)?.as_ref()
    }
}

/// What one run commits to one table.
#[derive(Debug)]
pub struct TableCommit {
    pub files: Vec<DataFile>,
    /// Next offset of every partition this run consumed for the table.
    pub offsets: BTreeMap<TopicPartition, i64>,
    pub run_id: String,
}

impl TableCommit {
    /// Whether this commit, planned from `planned`, may go on top of `now`, a newer state
    /// of the table: when the writers since the plan left this commit's partitions (their
    /// stored offsets) and the table's layout alone, nothing it loads was loaded by them.
    pub fn can_rebase(&self, planned: &LakeTable, now: &LakeTable) -> bool {
        let (was, is) = (planned.table.metadata(), now.table.metadata());
        was.current_schema_id() == is.current_schema_id()
            && was.default_partition_spec_id() == is.default_partition_spec_id()
            && self.offsets.keys().all(|tp| planned.offsets.get(tp) == now.offsets.get(tp))
    }
}

pub fn table_ident(t: &TableRef) -> Result<TableIdent, SinkError> {
    let namespace = NamespaceIdent::from_vec(t.namespace()).map_err(SinkError::catalog("namespace"))?;
    Ok(TableIdent::new(namespace, t.name.clone()))
}

impl Lake {
    /// Connects to the configured catalog.
    pub async fn connect(config: &Config, settings: &Settings) -> Result<Self, SinkError> {
        let mut props: HashMap<String, String> =
            config.catalog.properties.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        props.insert("uri".into(), settings.catalog_uri.clone());
        props.insert("warehouse".into(), settings.warehouse.clone());
        let storage = Arc::new(OpenDalResolvingStorageFactory::new());
        let name = config.catalog.name.clone();
        let catalog: Arc<dyn Catalog> = match config.catalog.kind {
            CatalogType::Sql => {
                let style = if settings.catalog_uri.starts_with("sqlite:") { "QMark" } else { "DollarNumeric" };
                props.insert("sql_bind_style".into(), style.into());
                if let Some(path) = settings.catalog_uri.strip_prefix("sqlite://") {
                    let path = std::path::Path::new(path.split('?').next().unwrap_or_default());
                    if let Some(dir) = path.parent() {
                        std::fs::create_dir_all(dir)
                            .map_err(SinkError::storage(format!("create {}", dir.display())))?;
                    }
                }
                Arc::new(
                    SqlCatalogBuilder::default()
                        .with_storage_factory(storage)
                        .load(name, props)
                        .await
                        .map_err(SinkError::catalog("connect to the SQL catalog"))?,
                )
            }
            CatalogType::Rest => Arc::new(
                RestCatalogBuilder::default()
                    .with_storage_factory(storage)
                    .load(name, props)
                    .await
                    .map_err(SinkError::catalog("connect to the REST catalog"))?,
            ),
        };
        Ok(Self { catalog })
    }

    /// A lake over any iceberg catalog (tests use iceberg's `MemoryCatalog`).
    pub fn with_catalog(catalog: Arc<dyn Catalog>) -> Self {
        Self { catalog }
    }

    /// The catalog itself (`hooklake query` reads the tables through it).
    pub fn catalog(&self) -> Arc<dyn Catalog> {
        self.catalog.clone()
    }

    /// Whether the catalog answers `within` (for `/readyz`). Unbounded, a catalog that
    /// cannot be reached would hold the probe for the SQL pool's 30 s.
    pub async fn check(&self, within: Duration) -> Result<(), SinkError> {
        match tokio::time::timeout(within, self.catalog.list_namespaces(None)).await {
            Ok(listed) => listed.map(drop).map_err(SinkError::catalog("list namespaces")),
            Err(_) => Err(SinkError::catalog("list namespaces")(iceberg::Error::new(
                ErrorKind::Unexpected,
                format!("no answer within {within:?}"),
            ))),
        }
    }

    /// The table as it is now; `None` when it does not exist yet.
    pub async fn load(&self, t: &TableRef) -> Result<Option<LakeTable>, SinkError> {
        let ident = table_ident(t)?;
        match self.catalog.load_table(&ident).await {
            Ok(table) => Ok(Some(LakeTable::new(table))),
            Err(e) if e.kind() == ErrorKind::TableNotFound || e.kind() == ErrorKind::NamespaceNotFound => Ok(None),
            Err(e) => Err(SinkError::catalog("load table")(e)),
        }
    }

    /// Every table of `routes`, as it is now.
    pub async fn load_all(&self, routes: &[Route]) -> Result<Tables, SinkError> {
        let mut tables = HashMap::new();
        for r in routes {
            if !tables.contains_key(&r.table_label) {
                tables.insert(r.table_label.clone(), self.load(&r.table).await?);
            }
        }
        Ok(Tables(tables))
    }

    /// Loads the table, creating its namespace and the table itself when missing.
    pub async fn ensure(&self, t: &TableRef) -> Result<LakeTable, SinkError> {
        if let Some(existing) = self.load(t).await? {
            return Ok(existing);
        }
        let ident = table_ident(t)?;
        self.ensure_namespaces(t).await?;
        let creation = TableCreation::builder()
            .name(t.name.clone())
            .schema(table_schema()?)
            .partition_spec(partition_spec()?)
            .properties(table_properties())
            .build();
        match self.catalog.create_table(ident.namespace(), creation).await {
            Ok(table) => {
                tracing::info!(table = %t, "created table");
                Ok(LakeTable::new(table))
            }
            // Another sink created it meanwhile. The SQL catalog reports that race as a
            // unique-constraint error rather than TableAlreadyExists: whatever the error,
            // a table that exists now is the answer.
            Err(e) => match self.load(t).await? {
                Some(existing) => {
                    tracing::info!(table = %t, "another sink created the table first");
                    Ok(existing)
                }
                None => Err(SinkError::catalog("create table")(e)),
            },
        }
    }

    async fn ensure_namespaces(&self, t: &TableRef) -> Result<(), SinkError> {
        let levels = t.namespace();
        for depth in 1..=levels.len() {
            let ns = NamespaceIdent::from_vec(levels[..depth].to_vec()).map_err(SinkError::catalog("namespace"))?;
            if self.catalog.namespace_exists(&ns).await.map_err(SinkError::catalog("namespace"))? {
                continue;
            }
            if let Err(e) = self.catalog.create_namespace(&ns, HashMap::new()).await {
                // Created by another sink meanwhile (reported either way, see `ensure`)?
                let exists = self.catalog.namespace_exists(&ns).await.map_err(SinkError::catalog("namespace"))?;
                if !exists {
                    return Err(SinkError::catalog("create namespace")(e));
                }
            }
        }
        Ok(())
    }

    /// Appends `commit` as one snapshot whose summary holds the offsets and run id, and
    /// sets the offset properties in the same transaction. The commit only succeeds if
    /// the table is still exactly as `planned` saw it; otherwise [`SinkError::Conflict`].
    pub async fn commit(&self, planned: &LakeTable, commit: &TableCommit) -> Result<Table, SinkError> {
        let mut per_topic: BTreeMap<&str, BTreeMap<String, i64>> = BTreeMap::new();
        for ((topic, partition), next) in &commit.offsets {
            per_topic.entry(topic).or_default().insert(partition.to_string(), *next);
        }
        let summary = HashMap::from([
            (SUMMARY_OFFSETS.to_owned(), serde_json::to_string(&per_topic).expect("offsets serialize")),
            (SUMMARY_RUN_ID.to_owned(), commit.run_id.clone()),
        ]);
        let tx = Transaction::new(&planned.table);
        let mut props = tx.update_table_properties();
        for ((topic, partition), next) in &commit.offsets {
            props = props.set(offset_property(topic, *partition), next.to_string());
        }
        let tx = props.apply(tx).map_err(SinkError::catalog("stage properties"))?;
        // File names are unique per writer (see `TableWriter::new`), so the duplicate check,
        // which reads every manifest of the table, is not needed.
        let append = tx
            .fast_append()
            .with_check_duplicate(false)
            .add_data_files(commit.files.clone())
            .set_snapshot_properties(summary);
        let tx = append.apply(tx).map_err(SinkError::catalog("stage append"))?;
        let pinned = PinnedCatalog::new(self.catalog.clone(), planned.table.clone());
        match tx.commit(&pinned).await {
            Ok(table) => Ok(table),
            Err(e) if e.kind() == ErrorKind::CatalogCommitConflicts => {
                Err(SinkError::Conflict(planned.table.identifier().to_string()))
            }
            Err(e) => Err(SinkError::catalog("commit")(e)),
        }
    }

    /// The table as it is now (after a conflict).
    pub async fn reload(&self, planned: &LakeTable) -> Result<LakeTable, SinkError> {
        let table =
            self.catalog.load_table(planned.table.identifier()).await.map_err(SinkError::catalog("reload table"))?;
        Ok(LakeTable::new(table))
    }

    /// Deletes data files no commit refers to (an attempt that cannot commit). Best
    /// effort: a file that stays is an orphan, for the table maintenance to remove.
    pub async fn delete_files(table: &Table, paths: impl IntoIterator<Item = &str>) {
        for path in paths {
            if let Err(e) = table.file_io().delete(path).await {
                tracing::warn!(%path, error = %e, "could not delete an uncommitted data file: it stays as an orphan");
            }
        }
    }
}

/// The contract schema (schemas/webhook_table.v1.json).
pub fn table_schema() -> Result<Schema, SinkError> {
    serde_json::from_str(TABLE_SCHEMA_V1_JSON).map_err(SinkError::table_schema("parse webhook_table.v1.json"))
}

/// `day(webhook_received_at)`.
pub fn partition_spec() -> Result<UnboundPartitionSpec, SinkError> {
    let schema = table_schema()?;
    let source_id = schema
        .field_by_name(columns::WEBHOOK_RECEIVED_AT)
        .ok_or_else(|| SinkError::TableSchema { what: "no webhook_received_at column".into(), source: None })?
        .id;
    UnboundPartitionSpec::builder()
        .add_partition_field(source_id, PARTITION_FIELD, Transform::Day)
        .map(|b| b.build())
        .map_err(SinkError::catalog("partition spec"))
}

#[cfg(test)]
pub(crate) mod tests;
