//! Sink benchmark: prints figures, asserts nothing about time.
//!
//! 1. End to end. A backlog of 1 KiB webhook envelopes on a tansu broker (SQLite
//!    storage); `hooklake sink --once` (the library call behind it, in this release-built
//!    process) loads it into an Iceberg table on a SQLite catalog. Baseline, on the same
//!    topic in the same run: an rdkafka consumer reading every record and dropping it,
//!    with the same fetch sizes. Measured raw → sink → raw; the baseline is the better
//!    raw pass (the broker's own read rate, honestly the ceiling).
//! 2. The engine alone. Envelopes made in memory go through the sink's `Loader` (decode →
//!    route → dedupe → Arrow → Parquet with zstd) and one Iceberg commit; baseline:
//!    arrow-rs writing the same rows straight to one Parquet file with the same writer
//!    settings. Each measurement runs in a child process of its own, so its peak RSS
//!    (VmHWM) is its own.
//!
//!   cargo bench -p hooklake-tests --bench sink [-- --quick] [-- --engine-only | --e2e-only]
//!   env: BENCH_BACKLOG (default 200000), BENCH_ENGINE_SIZES (default "1000000 5000000")

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use arrow_array::{
    Array, ArrayRef, RecordBatch,
    builder::{Int32Builder, Int64Builder, MapBuilder, StringBuilder, TimestampMicrosecondBuilder},
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use hooklake_schemas::{
    WebhookEnvelope,
    config::{Config, Env},
};
use hooklake_sink::{
    decode::Decoder,
    lake::{self, Lake},
    loader::Loader,
    settings::Settings,
};
use hooklake_tests::broker::Broker;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::properties::WriterProperties,
};
use rdkafka::{
    ClientConfig, Message, TopicPartitionList,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};

const PAYLOAD_BYTES: usize = 1024;
const TOPIC: &str = "bench.sink";
const PARTITIONS: i32 = 3;
/// Fetch sizes for both the baseline consumer and the sink (tansu's SQLite fetch is slow
/// per request: fewer, larger fetches).
const FETCH: [(&str, &str); 3] =
    [("fetch.max.bytes", "52428800"), ("max.partition.fetch.bytes", "16777216"), ("fetch.wait.max.ms", "100")];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--engine-child") {
        let mode = args[i + 1].clone();
        let rows: u64 = args[i + 2].parse().expect("rows");
        return engine_child(&mode, rows);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let engine_only = args.iter().any(|a| a == "--engine-only");
    let e2e_only = args.iter().any(|a| a == "--e2e-only");
    println!("sink benchmark on {} cores", std::thread::available_parallelism().map_or(0, |n| n.get()));
    if !engine_only {
        let backlog = if quick { 20_000 } else { env_u64("BENCH_BACKLOG", 200_000) };
        runtime().block_on(end_to_end(backlog));
    }
    if !e2e_only {
        let sizes: Vec<u64> = if quick {
            vec![100_000, 300_000]
        } else {
            std::env::var("BENCH_ENGINE_SIZES")
                .unwrap_or_else(|_| "1000000 5000000".into())
                .split_whitespace()
                .map(|s| s.parse().expect("BENCH_ENGINE_SIZES: numbers"))
                .collect()
        };
        engine(&sizes);
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// The n-th webhook: a unique id and a 1 KiB JSON body whose padding is pseudo-random hex
/// (compresses like real payloads, not like a run of one letter), spread over three days.
fn envelope(run: &str, n: u64) -> WebhookEnvelope {
    let id = format!("bench-{run}-{n}");
    let head = format!(r#"{{"type":"meter.read","id":"{id}","seq":{n},"kWh":1.25,"pad":""#);
    let mut body = String::with_capacity(PAYLOAD_BYTES);
    body.push_str(&head);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while body.len() < PAYLOAD_BYTES - 2 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        body.push(char::from(b"0123456789abcdef"[(x & 15) as usize]));
    }
    body.push_str("\"}");
    const DAY: i64 = 86_400_000_000;
    WebhookEnvelope {
        message_id: id,
        source: "bench".into(),
        received_at_micros: 1_790_000_000_000_000 + (n as i64 % 3) * DAY + n as i64,
        payload: body,
        event_type: Some("meter.read".into()),
        headers: [("content-type".to_string(), "application/json".to_string())].into(),
        verified_by: Some("standard_webhooks".into()),
    }
}

fn config(dir: &Path, brokers: &str) -> Config {
    let toml = format!(
        r#"
[kafka]
brokers = "{brokers}"
[kafka.properties]
"fetch.max.bytes" = "{}"
"max.partition.fetch.bytes" = "{}"
"fetch.wait.max.ms" = "{}"
[catalog]
type = "sql"
uri = "sqlite://{dir}/catalog.db"
warehouse = "file://{dir}/warehouse"
[sink]
group_id = "bench-sink"
[sources.bench]
topic = "{TOPIC}"
table = {{ layer = "raw", folder = "bench", name = "events" }}
auth = {{ type = "none" }}
"#,
        FETCH[0].1,
        FETCH[1].1,
        FETCH[2].1,
        dir = dir.display()
    );
    Config::from_toml(&toml, &Env::new()).expect("benchmark config")
}

// --- 1. end to end ----------------------------------------------------------------------

async fn end_to_end(backlog: u64) {
    println!("\n== end to end: {backlog} webhooks of {PAYLOAD_BYTES} B on tansu (SQLite), {PARTITIONS} partitions");
    let broker = Broker::start();
    let brokers = broker.bootstrap();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("admin");
    admin
        .create_topics(&[NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create topic");

    // The backlog, with ingest's producer settings (idempotent, acks=all).
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "120000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    let run = uuid::Uuid::now_v7().simple().to_string()[20..].to_owned();
    let started = Instant::now();
    let mut pending = Vec::with_capacity(10_000);
    for n in 0..backlog {
        let value = envelope(&run, n).to_single_object();
        let key = n.to_string();
        loop {
            match producer.send_result(FutureRecord::to(TOPIC).key(&key).payload(&value)) {
                Ok(delivery) => {
                    pending.push(delivery);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        if pending.len() == 10_000 {
            for d in pending.drain(..) {
                d.await.expect("delivered").expect("acked");
            }
        }
    }
    for d in pending.drain(..) {
        d.await.expect("delivered").expect("acked");
    }
    let produce = started.elapsed();
    println!("backlog produced in {:.1}s ({:.0} msg/s)", produce.as_secs_f64(), backlog as f64 / produce.as_secs_f64());

    let raw1 = raw_consume(&brokers, backlog);
    println!("raw rdkafka consumer (pass 1): {:.1}s, {:.0} records/s", raw1, backlog as f64 / raw1);

    let dir = tempfile::tempdir().expect("temp dir");
    let config = config(dir.path(), &brokers);
    let started = Instant::now();
    let report = hooklake_sink::once(&config, &hooklake_sink::Quiet).await.expect("sink run");
    let sink = started.elapsed().as_secs_f64();
    assert_eq!(report.rows, backlog, "the sink loaded every record");
    println!(
        "hooklake sink --once: {sink:.1}s, {:.0} rows/s ({} files, {:.1} MiB of Parquet)",
        backlog as f64 / sink,
        report.files,
        report.bytes as f64 / (1 << 20) as f64
    );

    let raw2 = raw_consume(&brokers, backlog);
    println!("raw rdkafka consumer (pass 2): {:.1}s, {:.0} records/s", raw2, backlog as f64 / raw2);
    let raw = raw1.min(raw2);
    println!("sink ÷ raw consume = {:.2}   (target ≥ 0.7)", raw / sink);
}

/// Reads every record of the topic from offset 0 and drops it; seconds taken.
fn raw_consume(brokers: &str, expected: u64) -> f64 {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", format!("bench-raw-{}", uuid::Uuid::now_v7().simple()))
        .set("enable.auto.commit", "false");
    for (k, v) in FETCH {
        c.set(k, v);
    }
    let consumer: BaseConsumer = c.create().expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(TOPIC, p, rdkafka::Offset::Beginning).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let (mut count, mut bytes) = (0u64, 0usize);
    while count < expected {
        match consumer.poll(Duration::from_secs(30)) {
            Some(Ok(m)) => {
                bytes += m.payload().map_or(0, <[u8]>::len);
                count += 1;
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!("no record for 30 s after {count}"),
        }
    }
    std::hint::black_box(bytes);
    started.elapsed().as_secs_f64()
}

// --- 2. the engine alone ----------------------------------------------------------------

#[derive(serde::Deserialize)]
struct ChildFigures {
    seconds: f64,
    rows: u64,
    bytes: u64,
    files: u64,
    hwm_mib: f64,
}

fn engine(sizes: &[u64]) {
    println!("\n== the engine alone (in memory → Parquet, zstd; one Iceberg commit)");
    let exe = std::env::current_exe().expect("own path");
    let child = |mode: &str, rows: u64| -> ChildFigures {
        let out = std::process::Command::new(&exe)
            .args(["--engine-child", mode, &rows.to_string()])
            .output()
            .expect("run the child");
        assert!(out.status.success(), "{mode} {rows}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("child figures")
    };
    for &rows in sizes {
        let raw = child("raw-parquet", rows);
        let sink = child("engine", rows);
        assert_eq!(sink.rows, rows);
        println!(
            "{rows:>9} rows: raw arrow-rs Parquet {:.1}s ({:.0} rows/s, {:.0} MiB, peak RSS {:.0} MiB) | \
             sink engine {:.1}s ({:.0} rows/s, {} files, {:.0} MiB, peak RSS {:.0} MiB) | ratio {:.2} (target ≥ 0.5)",
            raw.seconds,
            rows as f64 / raw.seconds,
            raw.bytes as f64 / (1 << 20) as f64,
            raw.hwm_mib,
            sink.seconds,
            rows as f64 / sink.seconds,
            sink.files,
            sink.bytes as f64 / (1 << 20) as f64,
            sink.hwm_mib,
            raw.seconds / sink.seconds,
        );
    }
    println!("(peak RSS target: < 512 MiB and flat across sizes)");
}

fn engine_child(mode: &str, rows: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let started = Instant::now();
    let (rows_out, bytes, files) = match mode {
        "raw-parquet" => raw_parquet(dir.path(), rows),
        "engine" => runtime().block_on(sink_engine(dir.path(), rows)),
        other => panic!("unknown mode {other}"),
    };
    let seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let hwm_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    println!(
        "{}",
        serde_json::json!({"seconds": seconds, "rows": rows_out, "bytes": bytes, "files": files, "hwm_mib": hwm_kib / 1024.0})
    );
}

async fn sink_engine(dir: &Path, rows: u64) -> (u64, u64, u64) {
    let config = config(dir, "127.0.0.1:9");
    let settings = Settings::from_config(&config, dir).expect("settings");
    let decoder = Decoder::new(&config).expect("decoder");
    let lake = Lake::connect(&config, &settings).await.expect("catalog");
    let run = uuid::Uuid::now_v7().to_string();
    let mut loader = Loader::new(&lake, &settings, &decoder, &run, lake::Tables::default());
    let tp = (TOPIC.to_owned(), 0);
    let mut value = Vec::with_capacity(2048);
    for n in 0..rows {
        value.clear();
        value.extend_from_slice(&envelope(&run, n).to_single_object());
        loader.push(&tp, n as i64, Some(&value)).await.expect("push");
    }
    let (mut written, mut bytes, mut files) = (0, 0, 0);
    for prepared in loader.finish().await.expect("finish") {
        written += prepared.stats.rows;
        bytes += prepared.stats.bytes;
        files += prepared.stats.files;
        lake.commit(&prepared.planned, &prepared.commit).await.expect("commit");
    }
    (written, bytes, files)
}

/// arrow-rs alone: the same rows (same generator, same columns) into one Parquet file,
/// with the sink's writer settings (zstd level, row group limits), 8,192-row batches.
fn raw_parquet(dir: &Path, rows: u64) -> (u64, u64, u64) {
    let utc = Some(Arc::from("+00:00"));
    let map_field = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    let schema = Arc::new(Schema::new(vec![
        Field::new("message_id", DataType::Utf8, false),
        Field::new("payload", DataType::Utf8, false),
        Field::new("webhook_received_at", DataType::Timestamp(TimeUnit::Microsecond, utc.clone()), false),
        Field::new("source", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, true),
        Field::new("headers", map_field_type(map_field), true),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("loaded_at", DataType::Timestamp(TimeUnit::Microsecond, utc.clone()), false),
    ]));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(lake::ZSTD_LEVEL).expect("level")))
        .set_max_row_group_row_count(Some(lake::ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(lake::ROW_GROUP_BYTES))
        .build();
    let path = dir.join("raw.parquet");
    let file = std::fs::File::create(&path).expect("create");
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).expect("writer");
    let run = "raw";
    let loaded_at = chrono::Utc::now().timestamp_micros();
    let mut n = 0;
    while n < rows {
        let batch_rows = (rows - n).min(8192);
        let mut ids = StringBuilder::new();
        let mut payloads = StringBuilder::new();
        let mut received = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
        let mut sources = StringBuilder::new();
        let mut types = StringBuilder::new();
        let mut headers = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        let mut partitions = Int32Builder::new();
        let mut offsets = Int64Builder::new();
        let mut loaded = TimestampMicrosecondBuilder::new().with_timezone("+00:00");
        for i in n..n + batch_rows {
            let e = envelope(run, i);
            ids.append_value(&e.message_id);
            payloads.append_value(&e.payload);
            received.append_value(e.received_at_micros);
            sources.append_value(&e.source);
            types.append_option(e.event_type.as_deref());
            for (k, v) in &e.headers {
                headers.keys().append_value(k);
                headers.values().append_value(v);
            }
            headers.append(true).expect("map entry");
            partitions.append_value(0);
            offsets.append_value(i as i64);
            loaded.append_value(loaded_at);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(ids.finish()),
            Arc::new(payloads.finish()),
            Arc::new(received.finish()),
            Arc::new(sources.finish()),
            Arc::new(types.finish()),
            Arc::new(headers.finish()),
            Arc::new(partitions.finish()),
            Arc::new(offsets.finish()),
            Arc::new(loaded.finish()),
        ];
        writer.write(&RecordBatch::try_new(schema.clone(), columns).expect("batch")).expect("write");
        n += batch_rows;
    }
    writer.close().expect("close");
    (rows, std::fs::metadata(&path).expect("size").len(), 1)
}

fn map_field_type(mut b: MapBuilder<StringBuilder, StringBuilder>) -> DataType {
    b.finish().data_type().clone()
}
