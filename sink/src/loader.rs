//! The sink engine, independent of Kafka: records in (decode → route → dedupe → Arrow →
//! Parquet), one prepared commit per table out. A run feeds it from the consumer; the
//! benchmark feeds it from memory.

use std::collections::{BTreeMap, HashMap};

use iceberg::spec::DataFile;

use hooklake_schemas::config::{ConfigError, TableRef};

use crate::{
    SinkError,
    decode::Decoder,
    dedupe::TableIds,
    kafka::TopicPartition,
    lake::{Lake, LakeTable, Row, TableCommit, TableWriter, Tables, WriteStats},
    metrics::SinkMetrics,
    settings::Settings,
};

/// What happened to one record.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Loaded,
    /// Same message_id as a row of this run or of the table within the dedupe window.
    Duplicate,
    /// Cannot be decoded: the caller sends it to the DLQ with this reason.
    Dead(String),
}

/// Everything loaded into one table, ready to commit.
#[derive(Debug)]
pub struct Prepared {
    pub table_label: String,
    pub planned: LakeTable,
    pub commit: TableCommit,
    pub stats: WriteStats,
    /// Records read for this table, and of those, sent to the DLQ and dropped as duplicates.
    pub records: u64,
    pub dead_letters: u64,
    pub duplicates: u64,
    /// Records that expired from Kafka before they were loaded, by topic.
    pub expired: BTreeMap<String, u64>,
}

impl Prepared {
    /// Counts what this commit, once made, took in: rows, files, bytes, duplicates, and
    /// records that expired from Kafka unloaded.
    pub fn count_committed(&self, m: &SinkMetrics) {
        let label = [self.table_label.as_str()];
        m.rows.with_label_values(&label).inc_by(self.stats.rows);
        m.files.with_label_values(&label).inc_by(self.stats.files);
        m.bytes.with_label_values(&label).inc_by(self.stats.bytes);
        m.duplicates.with_label_values(&label).inc_by(self.duplicates);
        for (topic, lost) in &self.expired {
            m.expired.with_label_values(&[topic]).inc_by(*lost);
        }
    }
}

/// Deletes the data files of commits that will not be made.
pub async fn discard(prepared: &[Prepared]) {
    for p in prepared {
        discard_files(&p.planned, &p.commit.files).await;
    }
}

async fn discard_files(table: &LakeTable, files: &[DataFile]) {
    if !files.is_empty() {
        tracing::info!(table = %table.table.identifier(), files = files.len(), "deleting the files of an uncommitted attempt");
        Lake::delete_files(&table.table, files.iter().map(DataFile::file_path)).await;
    }
}

struct TableLoad {
    table: TableRef,
    planned: Option<LakeTable>,
    writer: Option<TableWriter>,
    /// Message ids of the table within the dedupe window of the run's records, and of
    /// this run.
    seen: TableIds,
    offsets: BTreeMap<TopicPartition, i64>,
    records: u64,
    dead_letters: u64,
    duplicates: u64,
    expired: BTreeMap<String, u64>,
}

pub struct Loader<'a> {
    lake: &'a Lake,
    settings: &'a Settings,
    decoder: &'a Decoder,
    run_id: String,
    loaded_at_micros: i64,
    tables: HashMap<String, TableLoad>,
}

impl std::fmt::Debug for Loader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader").field("run_id", &self.run_id).finish_non_exhaustive()
    }
}

impl<'a> Loader<'a> {
    /// `planned` holds each table as the run planned from it (`None`: not created yet).
    pub fn new(lake: &'a Lake, settings: &'a Settings, decoder: &'a Decoder, run_id: &str, planned: Tables) -> Self {
        let tables = settings
            .routes
            .iter()
            .map(|r| {
                let load = TableLoad {
                    table: r.table.clone(),
                    planned: planned.get(r).cloned(),
                    writer: None,
                    seen: TableIds::default(),
                    offsets: BTreeMap::new(),
                    records: 0,
                    dead_letters: 0,
                    duplicates: 0,
                    expired: BTreeMap::new(),
                };
                (r.table_label.clone(), load)
            })
            .collect();
        let loaded_at_micros = chrono::Utc::now().timestamp_micros();
        Self { lake, settings, decoder, run_id: run_id.to_owned(), loaded_at_micros, tables }
    }

    /// Takes the record at `offset` of `tp`; its partition's next offset becomes `offset + 1`.
    pub async fn push(&mut self, tp: &TopicPartition, offset: i64, value: Option<&[u8]>) -> Result<Outcome, SinkError> {
        let route = self
            .settings
            .route(&tp.0)
            .ok_or_else(|| ConfigError::invalid("sink", format!("no source reads topic {}", tp.0)))?;
        let load = self.tables.get_mut(&route.table_label).expect("every route has a table");
        load.offsets.insert(tp.clone(), offset + 1);
        load.records += 1;
        let envelope = match self.decoder.decode(value).await? {
            Ok(e) => e,
            Err(reason) => {
                load.dead_letters += 1;
                return Ok(Outcome::Dead(reason));
            }
        };
        if load.planned.is_none() {
            load.planned = Some(ensure_unchanged(self.lake, &load.table).await?);
        }
        let planned = load.planned.as_ref().expect("ensured above");
        let window = self.settings.dedupe_window.as_micros() as i64;
        if !load.seen.insert_new(&planned.table, &envelope.message_id, envelope.received_at_micros, window).await? {
            load.duplicates += 1;
            return Ok(Outcome::Duplicate);
        }
        if load.writer.is_none() {
            load.writer = Some(TableWriter::new(
                &planned.table,
                &self.run_id,
                self.settings.target_file_size,
                self.loaded_at_micros,
            )?);
        }
        let writer = load.writer.as_mut().expect("created above");
        writer.push(Row { envelope: &envelope, partition: tp.1, offset }).await?;
        Ok(Outcome::Loaded)
    }

    /// Records that a partition's next offset is `next` without a record (offset gaps).
    pub fn advance(&mut self, tp: &TopicPartition, next: i64) {
        if let Some(route) = self.settings.route(&tp.0)
            && let Some(load) = self.tables.get_mut(&route.table_label)
        {
            let entry = load.offsets.entry(tp.clone()).or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// Records that `tp`'s records before `low` expired from Kafka unloaded (`lost` of
    /// them): the commit moves the partition's offset to `low`.
    pub fn expired(&mut self, tp: &TopicPartition, low: i64, lost: u64) {
        self.advance(tp, low);
        if let Some(route) = self.settings.route(&tp.0)
            && let Some(load) = self.tables.get_mut(&route.table_label)
        {
            *load.expired.entry(tp.0.clone()).or_default() += lost;
        }
    }

    /// Gives up the attempt: closes the files written so far and deletes them.
    pub async fn abandon(self) {
        for (_, load) in self.tables {
            if let (Some(writer), Some(planned)) = (load.writer, load.planned) {
                match writer.close().await {
                    Ok((files, _)) => discard_files(&planned, &files).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not close the files of a failed attempt: they stay as orphans")
                    }
                }
            }
        }
    }

    /// Closes every table's files. Tables whose offsets moved get a commit even without
    /// rows (all duplicates or dead letters), so those records are not read again.
    pub async fn finish(self) -> Result<Vec<Prepared>, SinkError> {
        let mut out = Vec::new();
        for (label, load) in self.tables {
            if load.offsets.is_empty() {
                continue;
            }
            let planned = match load.planned {
                Some(p) => p,
                None => ensure_unchanged(self.lake, &load.table).await?,
            };
            let (files, stats) = match load.writer {
                Some(w) => w.close().await?,
                None => (Vec::new(), WriteStats::default()),
            };
            out.push(Prepared {
                table_label: label,
                planned,
                commit: TableCommit { files, offsets: load.offsets, run_id: self.run_id.clone() },
                stats,
                records: load.records,
                dead_letters: load.dead_letters,
                duplicates: load.duplicates,
                expired: load.expired,
            });
        }
        Ok(out)
    }
}

/// Creates a table the plan found missing. If it exists by now with commits (another sink
/// created and loaded it meanwhile), the plan is stale: re-plan rather than load twice.
async fn ensure_unchanged(lake: &Lake, table: &TableRef) -> Result<LakeTable, SinkError> {
    let t = lake.ensure(table).await?;
    if t.table.metadata().current_snapshot().is_some() {
        return Err(SinkError::Conflict(table.to_string()));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use hooklake_schemas::config::{Config, Env};

    use super::*;

    /// Records that left Kafka before they were loaded (retention): the commit moves the
    /// partition's offset to the low watermark, so they are not looked for again, and it
    /// carries their number for `hooklake_sink_records_expired_total`.
    #[tokio::test]
    async fn expired_records_move_the_offset_and_are_counted_in_the_commit() {
        let (lake, _warehouse) = crate::lake::tests::lake().await;
        let toml = "[sources.s]\ntopic = \"t\"\nauth = { type = \"none\" }\n";
        let config = Config::from_toml(toml, &Env::new()).unwrap();
        let settings = Settings::from_config(&config, std::path::Path::new("/")).unwrap();
        let decoder = Decoder::new(&config).unwrap();
        let tables = lake.load_all(&settings.routes).await.unwrap();
        let mut loader = Loader::new(&lake, &settings, &decoder, "run-1", tables);
        let tp = ("t".to_owned(), 0);
        loader.expired(&tp, 7, 5);
        let prepared = loader.finish().await.unwrap();
        assert_eq!(prepared.len(), 1, "the table gets a commit without rows");
        let p = &prepared[0];
        assert_eq!(p.commit.offsets.get(&tp), Some(&7));
        assert_eq!(p.expired.get("t"), Some(&5));
        assert_eq!(p.stats.rows, 0);
        lake.commit(&p.planned, &p.commit).await.unwrap();
        let table = lake.load(&settings.routes[0].table).await.unwrap().unwrap();
        assert_eq!(table.next_offset("t", 0), Some(7), "the next run starts at the low watermark");
        let metrics = SinkMetrics::new([p.table_label.as_str()], ["t"]);
        p.count_committed(&metrics);
        assert_eq!(metrics.expired.with_label_values(&["t"]).get(), 5);
        assert_eq!(metrics.rows.with_label_values(&[p.table_label.as_str()]).get(), 0);
    }
}
