//! Iceberg catalogs for tests — SQLite in a temporary directory, or a fresh database on
//! the local PostgreSQL server — and pyiceberg reading what the sink wrote.

use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;

use crate::{python, unique};

/// Where a test's tables live.
#[derive(Debug)]
pub struct TestLake {
    pub name: String,
    /// The catalog URI hooklake uses.
    pub uri: String,
    /// The same catalog as an SQLAlchemy URI, for pyiceberg.
    pub sqlalchemy_uri: String,
    pub warehouse: String,
    pub dir: tempfile::TempDir,
    postgres_db: Option<String>,
}

/// The local PostgreSQL server (trust auth on 127.0.0.1, see the machine notes).
pub const POSTGRES: &str = "postgres@127.0.0.1:5432";

impl TestLake {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("catalog.db");
        Self {
            name: "hooklake".into(),
            uri: format!("sqlite://{}", db.display()),
            sqlalchemy_uri: format!("sqlite:///{}", db.display()),
            warehouse: format!("file://{}", dir.path().join("warehouse").display()),
            dir,
            postgres_db: None,
        }
    }

    /// A fresh database on the local PostgreSQL server, dropped afterwards.
    pub fn postgres() -> Self {
        let db = unique("hooklake_it");
        psql("postgres", &format!("CREATE DATABASE \"{db}\""));
        let dir = tempfile::tempdir().expect("temp dir");
        Self {
            name: "hooklake".into(),
            uri: format!("postgres://{POSTGRES}/{db}"),
            sqlalchemy_uri: format!("postgresql+psycopg2://{POSTGRES}/{db}"),
            warehouse: format!("file://{}", dir.path().join("warehouse").display()),
            dir,
            postgres_db: Some(db),
        }
    }

    /// This PostgreSQL catalog's URI through a relay on 127.0.0.1:`port`
    /// (tests/py/delay_proxy.py), without TLS so that the relay can read what passes.
    pub fn uri_through(&self, port: u16) -> String {
        let db = self.postgres_db.as_deref().expect("a PostgreSQL catalog");
        format!("postgres://postgres@127.0.0.1:{port}/{db}?sslmode=disable")
    }

    /// This catalog as its clients reach it through a relay ([`TestLake::uri_through`]).
    /// What the tests read themselves (pyiceberg, psql) still goes straight to the server.
    pub fn through(mut self, port: u16) -> Self {
        self.uri = self.uri_through(port);
        self
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Where a PostgreSQL catalog says `table` (`<namespace>.<name>`) keeps its metadata
    /// now, read from iceberg-catalog-sql's own `iceberg_tables`.
    pub fn metadata_location(&self, table: &str) -> String {
        let db = self.postgres_db.as_deref().expect("a PostgreSQL catalog");
        let (namespace, name) = table.rsplit_once('.').expect("<namespace>.<name>");
        let sql = format!(
            "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = '{}' AND table_namespace = '{namespace}' \
             AND table_name = '{name}'",
            self.name
        );
        psql(db, &sql)
    }

    /// The table read with pyiceberg (tests/py/read_table.py).
    pub async fn read(&self, table: &str) -> TableContents {
        let args =
            ["--catalog", &self.name, "--uri", &self.sqlalchemy_uri, "--warehouse", &self.warehouse, "--table", table];
        let out = python::run("read_table.py", &args, "", Duration::from_secs(120)).await;
        TableContents(serde_json::from_str(&out).expect("read_table.py prints JSON"))
    }
}

impl Drop for TestLake {
    fn drop(&mut self) {
        if let Some(db) = &self.postgres_db {
            let _ = std::panic::catch_unwind(|| {
                psql("postgres", &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
            });
        }
    }
}

/// Runs `sql` in the local PostgreSQL server's database `db`; its rows, unaligned.
fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql])
        .output()
        .expect("psql (PostgreSQL client) runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What pyiceberg read.
#[derive(Debug)]
pub struct TableContents(pub Value);

impl TableContents {
    pub fn rows(&self) -> &Vec<Value> {
        self.0["rows"].as_array().expect("rows")
    }

    /// message_id of every row, sorted (duplicates kept, so a double load shows).
    pub fn message_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.rows().iter().map(|r| r["message_id"].as_str().unwrap().to_owned()).collect();
        ids.sort();
        ids
    }

    pub fn snapshots(&self) -> &Vec<Value> {
        self.0["snapshots"].as_array().expect("snapshots")
    }

    pub fn property(&self, key: &str) -> Option<&str> {
        self.0["properties"][key].as_str()
    }
}
