//! Rows → Arrow batches → Parquet data files of one table, partitioned by
//! `day(webhook_received_at)`, zstd-compressed, rolling over at `target_file_size`.
//!
//! Memory stays bounded whatever the backlog: rows are buffered per day only up to
//! [`BATCH_ROWS`] / [`BATCH_BYTES`], and Parquet row groups are capped at
//! [`ROW_GROUP_ROWS`], after which they go to storage.

use std::{collections::BTreeMap, sync::Arc};

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{Int32Builder, Int64Builder, MapBuilder, MapFieldNames, StringBuilder, TimestampMicrosecondBuilder},
};
use arrow_schema::{DataType, FieldRef, SchemaRef as ArrowSchemaRef};
use hooklake_schemas::WebhookEnvelope;
use iceberg::{
    arrow::schema_to_arrow_schema,
    spec::{DataFile, DataFileFormat, Literal, PartitionKey, PartitionSpec, SchemaRef, Struct},
    table::Table,
    writer::{
        base_writer::data_file_writer::DataFileWriterBuilder,
        file_writer::{
            ParquetWriterBuilder,
            location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator},
            rolling_writer::RollingFileWriterBuilder,
        },
        partitioning::{PartitioningWriter, fanout_writer::FanoutWriter},
    },
};
use parquet::{
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};

use crate::SinkError;

/// Rows buffered per day before they are handed to Parquet.
pub const BATCH_ROWS: usize = 8192;
/// Bytes of payload buffered per day before they are handed to Parquet.
pub const BATCH_BYTES: usize = 8 << 20;
/// Rows per Parquet row group. Every open day partition holds its row group in memory
/// until it is complete, about twice over while it is flushed, so this bounds the
/// writer's memory: 16,384 webhooks of ~1 KiB are ~8 MiB compressed. Measured on the
/// engine benchmark (1M rows, three days): 65,536 rows peaked at 380 MiB RSS, 16,384 at
/// 191 MiB, for files 0.2% larger (BENCHMARKS.md).
pub const ROW_GROUP_ROWS: usize = 16_384;
/// Bytes per Parquet row group, whichever limit comes first.
pub const ROW_GROUP_BYTES: usize = 64 << 20;
/// zstd level of the data files (zstd's own default; Iceberg's too).
pub const ZSTD_LEVEL: i32 = 3;

const MICROS_PER_DAY: i64 = 86_400_000_000;

type FileBuilder = DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// One row: an envelope and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub envelope: &'a WebhookEnvelope,
    pub partition: i32,
    pub offset: i64,
}

/// What a writer produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
}

pub struct TableWriter {
    arrow_schema: ArrowSchemaRef,
    iceberg_schema: SchemaRef,
    spec: PartitionSpec,
    map_fields: (FieldRef, FieldRef),
    fanout: FanoutWriter<FileBuilder>,
    buffers: BTreeMap<i32, RowBuffer>,
    loaded_at: i64,
    rows: u64,
}

impl std::fmt::Debug for TableWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableWriter").field("rows", &self.rows).finish_non_exhaustive()
    }
}

impl TableWriter {
    /// A writer for `table`; file names are `<file_prefix>-<writer uuid>-<n>.parquet`
    /// (unique even when a run retries, so no attempt can overwrite another's file), and
    /// every row's `loaded_at` is `loaded_at_micros`.
    pub fn new(
        table: &Table,
        file_prefix: &str,
        target_file_size: u64,
        loaded_at_micros: i64,
    ) -> Result<Self, SinkError> {
        let metadata = table.metadata();
        let iceberg_schema = metadata.current_schema().clone();
        let arrow_schema =
            Arc::new(schema_to_arrow_schema(&iceberg_schema).map_err(SinkError::table_schema("arrow schema"))?);
        let map_fields = map_entry_fields(&arrow_schema)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).expect("valid level")))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .build();
        let parquet = ParquetWriterBuilder::new(props, iceberg_schema.clone());
        let location = DefaultLocationGenerator::new(metadata).map_err(SinkError::catalog("data location"))?;
        let unique = uuid::Uuid::now_v7().simple().to_string();
        let names = DefaultFileNameGenerator::new(format!("{file_prefix}-{unique}"), None, DataFileFormat::Parquet);
        let rolling =
            RollingFileWriterBuilder::new(parquet, target_file_size as usize, table.file_io().clone(), location, names);
        Ok(Self {
            arrow_schema,
            iceberg_schema,
            spec: metadata.default_partition_spec().as_ref().clone(),
            map_fields,
            fanout: FanoutWriter::new(DataFileWriterBuilder::new(rolling)),
            buffers: BTreeMap::new(),
            loaded_at: loaded_at_micros,
            rows: 0,
        })
    }

    /// Adds a row; full day buffers go to Parquet.
    pub async fn push(&mut self, row: Row<'_>) -> Result<(), SinkError> {
        let day = row.envelope.received_at_micros.div_euclid(MICROS_PER_DAY) as i32;
        let buffer = self.buffers.entry(day).or_insert_with(|| RowBuffer::new(&self.map_fields));
        buffer.append(row, self.loaded_at);
        self.rows += 1;
        if buffer.rows >= BATCH_ROWS || buffer.bytes >= BATCH_BYTES {
            self.flush_day(day).await?;
        }
        Ok(())
    }

    async fn flush_day(&mut self, day: i32) -> Result<(), SinkError> {
        let Some(mut buffer) = self.buffers.remove(&day) else { return Ok(()) };
        if buffer.rows == 0 {
            return Ok(());
        }
        let batch = buffer.finish(&self.arrow_schema)?;
        let key = PartitionKey::new(
            self.spec.clone(),
            self.iceberg_schema.clone(),
            Struct::from_iter([Some(Literal::int(day))]),
        );
        self.fanout.write(key, batch).await.map_err(SinkError::storage("write Parquet"))
    }

    /// Rows pushed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes everything and closes the files.
    pub async fn close(mut self) -> Result<(Vec<DataFile>, WriteStats), SinkError> {
        let days: Vec<i32> = self.buffers.keys().copied().collect();
        for day in days {
            self.flush_day(day).await?;
        }
        let files = self.fanout.close().await.map_err(SinkError::storage("close Parquet files"))?;
        let stats = WriteStats {
            rows: self.rows,
            files: files.len() as u64,
            bytes: files.iter().map(|f| f.file_size_in_bytes()).sum(),
        };
        Ok((files, stats))
    }
}

/// The key and value fields of the `headers` map as the table's Arrow schema has them
/// (with their Iceberg field ids), so built arrays match the schema exactly.
fn map_entry_fields(schema: &ArrowSchemaRef) -> Result<(FieldRef, FieldRef), SinkError> {
    let field = schema
        .field_with_name(hooklake_schemas::table::columns::HEADERS)
        .map_err(SinkError::table_schema("arrow schema of the table"))?;
    if let DataType::Map(entries, _) = field.data_type()
        && let DataType::Struct(kv) = entries.data_type()
        && kv.len() == 2
    {
        return Ok((kv[0].clone(), kv[1].clone()));
    }
    Err(SinkError::TableSchema { what: "headers is not a map".into(), source: None })
}

/// Column builders for one day of rows.
struct RowBuffer {
    message_id: StringBuilder,
    payload: StringBuilder,
    received_at: TimestampMicrosecondBuilder,
    source: StringBuilder,
    event_type: StringBuilder,
    headers: MapBuilder<StringBuilder, StringBuilder>,
    partition: Int32Builder,
    offset: Int64Builder,
    loaded_at: TimestampMicrosecondBuilder,
    rows: usize,
    bytes: usize,
}

const UTC: &str = "+00:00";

impl RowBuffer {
    fn new((key, value): &(FieldRef, FieldRef)) -> Self {
        let names = MapFieldNames { entry: "key_value".into(), key: key.name().clone(), value: value.name().clone() };
        Self {
            message_id: StringBuilder::new(),
            payload: StringBuilder::new(),
            received_at: TimestampMicrosecondBuilder::new().with_timezone(UTC),
            source: StringBuilder::new(),
            event_type: StringBuilder::new(),
            headers: MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
                .with_keys_field(key.clone())
                .with_values_field(value.clone()),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            loaded_at: TimestampMicrosecondBuilder::new().with_timezone(UTC),
            rows: 0,
            bytes: 0,
        }
    }

    fn append(&mut self, row: Row<'_>, loaded_at: i64) {
        let e = row.envelope;
        self.message_id.append_value(&e.message_id);
        self.payload.append_value(&e.payload);
        self.received_at.append_value(e.received_at_micros);
        self.source.append_value(&e.source);
        self.event_type.append_option(e.event_type.as_deref());
        for (k, v) in &e.headers {
            self.headers.keys().append_value(k);
            self.headers.values().append_value(v);
        }
        self.headers.append(true).expect("keys and values are appended in pairs");
        self.partition.append_value(row.partition);
        self.offset.append_value(row.offset);
        self.loaded_at.append_value(loaded_at);
        self.rows += 1;
        self.bytes += e.payload.len() + e.message_id.len() + 64;
    }

    fn finish(&mut self, schema: &ArrowSchemaRef) -> Result<RecordBatch, SinkError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.message_id.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.received_at.finish()),
            Arc::new(self.source.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.headers.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.loaded_at.finish()),
        ];
        RecordBatch::try_new(schema.clone(), columns).map_err(SinkError::table_schema("arrow batch"))
    }
}
