//! A catalog view in which one table stays as the sink saw it when it planned.
//!
//! iceberg-rust's `Transaction::commit` reloads the table before computing the commit's
//! requirements, so a writer that planned from a stale table would have its append land
//! on top of another writer's, and its offsets would go backwards: rows loaded twice.
//! Through this view the reload returns the planned table, so the fast append requires
//! the snapshot the plan was made from (`RefSnapshotIdMatch`); the real catalog checks
//! that requirement against the stored metadata and refuses the commit when another
//! writer got there first. Every other call goes to the real catalog.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use iceberg::{Catalog, Namespace, NamespaceIdent, Result, TableCommit, TableCreation, TableIdent, table::Table};

#[derive(Debug)]
pub struct PinnedCatalog {
    inner: Arc<dyn Catalog>,
    planned: Table,
}

impl PinnedCatalog {
    pub fn new(inner: Arc<dyn Catalog>, planned: Table) -> Self {
        Self { inner, planned }
    }
}

#[async_trait]
impl Catalog for PinnedCatalog {
    async fn load_table(&self, table: &TableIdent) -> Result<Table> {
        if table == self.planned.identifier() {
            return Ok(self.planned.clone());
        }
        self.inner.load_table(table).await
    }

    async fn update_table(&self, commit: TableCommit) -> Result<Table> {
        self.inner.update_table(commit).await
    }

    async fn list_namespaces(&self, parent: Option<&NamespaceIdent>) -> Result<Vec<NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }

    async fn create_namespace(&self, ns: &NamespaceIdent, props: HashMap<String, String>) -> Result<Namespace> {
        self.inner.create_namespace(ns, props).await
    }

    async fn get_namespace(&self, ns: &NamespaceIdent) -> Result<Namespace> {
        self.inner.get_namespace(ns).await
    }

    async fn namespace_exists(&self, ns: &NamespaceIdent) -> Result<bool> {
        self.inner.namespace_exists(ns).await
    }

    async fn update_namespace(&self, ns: &NamespaceIdent, props: HashMap<String, String>) -> Result<()> {
        self.inner.update_namespace(ns, props).await
    }

    async fn drop_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        self.inner.drop_namespace(ns).await
    }

    async fn list_tables(&self, ns: &NamespaceIdent) -> Result<Vec<TableIdent>> {
        self.inner.list_tables(ns).await
    }

    async fn create_table(&self, ns: &NamespaceIdent, creation: TableCreation) -> Result<Table> {
        self.inner.create_table(ns, creation).await
    }

    async fn drop_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.drop_table(table).await
    }

    async fn purge_table(&self, table: &TableIdent) -> Result<()> {
        self.inner.purge_table(table).await
    }

    async fn table_exists(&self, table: &TableIdent) -> Result<bool> {
        self.inner.table_exists(table).await
    }

    async fn rename_table(&self, src: &TableIdent, dest: &TableIdent) -> Result<()> {
        self.inner.rename_table(src, dest).await
    }

    async fn register_table(&self, table: &TableIdent, metadata_location: String) -> Result<Table> {
        self.inner.register_table(table, metadata_location).await
    }
}
