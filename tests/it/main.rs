//! hooklake's integration suite: one binary, real services against a real broker (tansu on
//! SQLite), output checked by readers we did not write. Run through `scripts/test.sh`,
//! which installs the tools, or plain `cargo test -p hooklake-tests` once they exist.

mod broker_storage;
mod common;
mod confluent;
mod faults;
mod ingest_broker_faults;
mod ingest_hostile;
mod ingest_hostile_auth;
mod ingest_kafka_stats;
mod ingest_process;
mod ingest_records;
mod ingest_rejections;
mod quickstart;
mod sink_common;
mod sink_pipeline;
mod sink_service;
