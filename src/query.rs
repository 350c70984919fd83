//! `hooklake query "SQL"`: SQL over the Iceberg tables with DataFusion, as `layer.folder.table`,
//! with JSON functions (`json_get_str(payload, 'type')`, ...) for the raw payloads.
//!
//! Each table is read at its current snapshot. Several statements may be given, separated by
//! `;` (`CREATE VIEW ...; SELECT ...`); the result of the last one is printed.

use std::{collections::BTreeMap, sync::Arc};

use anyhow::{Context, bail};
use datafusion::{
    arrow::{array::RecordBatch, csv, json, util::pretty::pretty_format_batches},
    catalog::{CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider},
    prelude::SessionContext,
    sql::parser::DFParser,
};
use hooklake_schemas::config::Config;
use hooklake_sink::{lake::Lake, settings::Settings};
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use iceberg_datafusion::IcebergStaticTableProvider;

#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
pub enum Format {
    /// An aligned text table.
    #[default]
    Table,
    Csv,
    /// A JSON array of objects.
    Json,
}

/// Runs `sql` and returns the output text in `format`.
pub async fn query(config: &Config, sql: &str, format: Format) -> anyhow::Result<String> {
    let settings = Settings::from_config(config, &std::env::current_dir()?)?;
    let lake = Lake::connect(config, &settings).await.context("cannot open the catalog")?;
    let catalog = lake.catalog();
    let ctx = SessionContext::new();
    let mut state_registry = ctx.state();
    datafusion_functions_json::register_all(&mut state_registry)?;
    let ctx = SessionContext::new_with_state(state_registry);
    let tables = register_tables(&ctx, catalog.as_ref(), config).await?;

    let statements = DFParser::parse_sql(sql).map_err(|e| anyhow::anyhow!("bad SQL: {e}"))?;
    if statements.is_empty() {
        bail!("no SQL statement given");
    }
    let mut batches = Vec::new();
    for statement in statements {
        let plan = ctx.state().statement_to_plan(statement).await.map_err(|e| explain(e, &tables))?;
        let frame = ctx.execute_logical_plan(plan).await.map_err(|e| explain(e, &tables))?;
        let schema = Arc::new(frame.schema().as_arrow().clone());
        batches = frame.collect().await.map_err(|e| explain(e, &tables))?;
        if batches.is_empty() {
            // Still print the column names of an empty result.
            batches.push(RecordBatch::new_empty(schema));
        }
    }
    render(&batches, format)
}

/// Registers every table of the catalog (and of the configured sources) under its
/// `layer.folder.table` name; returns the names.
async fn register_tables(ctx: &SessionContext, catalog: &dyn Catalog, config: &Config) -> anyhow::Result<Vec<String>> {
    let mut idents: BTreeMap<String, TableIdent> = BTreeMap::new();
    for ident in list_tables(catalog).await? {
        idents.insert(
            ident.namespace().as_ref().iter().chain([&ident.name]).cloned().collect::<Vec<_>>().join("."),
            ident,
        );
    }
    for (name, source) in &config.sources {
        let table = source.table_for(name);
        let ident = TableIdent::new(NamespaceIdent::from_vec(table.namespace())?, table.name.clone());
        if !idents.contains_key(&table.to_string()) && catalog.table_exists(&ident).await.unwrap_or(false) {
            idents.insert(table.to_string(), ident);
        }
    }
    for ident in idents.values() {
        let table = catalog.load_table(ident).await.with_context(|| format!("cannot load table {ident}"))?;
        let provider = Arc::new(IcebergStaticTableProvider::try_new_from_table(table).await?);
        let levels = ident.namespace().as_ref();
        // `layer.folder.table` is DataFusion's catalog.schema.table; a table without a
        // folder, `layer.table`, lives in the default catalog's schema `layer`.
        let (catalog_name, schema_name) = match levels.as_slice() {
            [layer, folder] => (layer.clone(), folder.clone()),
            [layer] => ("datafusion".to_owned(), layer.clone()),
            _ => continue,
        };
        let df_catalog = match ctx.catalog(&catalog_name) {
            Some(c) => c,
            None => {
                let c: Arc<dyn CatalogProvider> = Arc::new(MemoryCatalogProvider::new());
                ctx.register_catalog(&catalog_name, c.clone());
                c
            }
        };
        let schema = match df_catalog.schema(&schema_name) {
            Some(s) => s,
            None => {
                let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                df_catalog.register_schema(&schema_name, s.clone())?;
                s
            }
        };
        schema.register_table(ident.name.clone(), provider)?;
    }
    Ok(idents.into_keys().collect())
}

/// Tables in namespaces `[layer]` and `[layer, folder]`.
async fn list_tables(catalog: &dyn Catalog) -> anyhow::Result<Vec<TableIdent>> {
    let mut tables = Vec::new();
    for layer in catalog.list_namespaces(None).await.context("cannot list the catalog's namespaces")? {
        tables.extend(catalog.list_tables(&layer).await.unwrap_or_default());
        for folder in catalog.list_namespaces(Some(&layer)).await.unwrap_or_default() {
            tables.extend(catalog.list_tables(&folder).await.unwrap_or_default());
        }
    }
    Ok(tables)
}

/// DataFusion's error, with the tables there are when it could not find one.
fn explain(e: datafusion::error::DataFusionError, tables: &[String]) -> anyhow::Error {
    let text = e.to_string();
    if text.contains("not found") && text.contains("table") {
        let known = if tables.is_empty() { "none yet: no run has loaded data".to_owned() } else { tables.join(", ") };
        anyhow::anyhow!("{text}\n  tables: {known}")
    } else {
        anyhow::anyhow!(text)
    }
}

fn render(batches: &[RecordBatch], format: Format) -> anyhow::Result<String> {
    match format {
        Format::Table => Ok(format!("{}\n", pretty_format_batches(batches)?)),
        Format::Csv => {
            let mut out = Vec::new();
            let mut writer = csv::WriterBuilder::new().with_header(true).build(&mut out);
            for b in batches {
                writer.write(b)?;
            }
            drop(writer);
            Ok(String::from_utf8(out)?)
        }
        Format::Json => {
            let mut writer = json::ArrayWriter::new(Vec::new());
            for b in batches {
                writer.write(b)?;
            }
            writer.finish()?;
            let mut text = String::from_utf8(writer.into_inner())?;
            if text.is_empty() {
                text.push_str("[]");
            }
            text.push('\n');
            Ok(text)
        }
    }
}
