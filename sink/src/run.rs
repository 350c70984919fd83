//! One sink run: plan from the tables' offsets and the high watermarks taken at the start,
//! consume up to them, write, commit one snapshot per table, then mirror the offsets into
//! the consumer group. A conflict or a rebalance starts the run over from the tables.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use rdkafka::{Message, consumer::CommitMode};

use crate::{
    SinkError,
    decode::Decoder,
    failpoint,
    kafka::{Assignment, DeadLetters, GroupConsumer},
    lake::{Lake, LakeTable, TopicPartition},
    loader::{Loader, Outcome, Prepared},
    metrics::SinkMetrics,
    settings::Settings,
};

/// Attempts per run before a persistent conflict fails it.
const MAX_ATTEMPTS: usize = 5;
/// No record for this long while records are due: the run fails.
const STALL: Duration = Duration::from_secs(120);

/// Everything a run uses, owned by the service (or by `--once`).
#[derive(Debug)]
pub struct RunContext {
    pub settings: Settings,
    pub lake: Lake,
    pub consumer: GroupConsumer,
    pub dead_letters: tokio::sync::Mutex<DeadLetters>,
    pub decoder: Decoder,
    pub metrics: SinkMetrics,
}

/// Progress of a run: records handled so far of the backlog planned.
pub trait Progress: Send + Sync {
    fn planned(&self, _records: u64) {}
    fn advanced(&self, _records: u64) {}
}

/// No progress display.
#[derive(Debug)]
pub struct Quiet;
impl Progress for Quiet {}

/// What one table got from a run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TableReport {
    pub table: String,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub duplicates: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunReport {
    pub run_id: String,
    pub records: u64,
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub dead_letters: u64,
    pub attempts: usize,
    pub tables: Vec<TableReport>,
    pub duration_seconds: f64,
}

/// Runs until everything below the high watermarks (taken at the start of the
/// successful attempt) is in the tables.
pub async fn run(ctx: &RunContext, run_id: &str, progress: &dyn Progress) -> Result<RunReport, SinkError> {
    let started = Instant::now();
    let mut report = RunReport { run_id: run_id.to_owned(), ..Default::default() };
    for attempt in 1..=MAX_ATTEMPTS {
        report.attempts = attempt;
        match attempt_run(ctx, run_id, progress, &mut report).await {
            Ok(()) => {
                report.duration_seconds = started.elapsed().as_secs_f64();
                return Ok(report);
            }
            Err(e) if e.is_replan() && attempt < MAX_ATTEMPTS => {
                tracing::warn!(run_id, attempt, error = %e, "re-reading the tables' offsets and planning again");
                ctx.consumer.pause_all();
            }
            Err(e) => {
                ctx.consumer.pause_all();
                return Err(e);
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// A partition's part of the plan.
#[derive(Debug, Clone)]
struct Span {
    start: i64,
    target: i64,
}

async fn attempt_run(
    ctx: &RunContext,
    run_id: &str,
    progress: &dyn Progress,
    report: &mut RunReport,
) -> Result<(), SinkError> {
    let assignment = ctx.consumer.wait_for_assignment(Duration::from_secs(30)).await;
    if assignment.partitions.is_empty() {
        tracing::info!(run_id, "no partitions assigned to this instance: nothing to do");
        return Ok(());
    }
    let (planned, spans) = plan(ctx, &assignment).await?;
    if spans.is_empty() {
        tracing::info!(run_id, "no new records: nothing to commit");
        return Ok(());
    }
    progress.planned(spans.values().map(|s| (s.target - s.start) as u64).sum());
    failpoint::hit(failpoint::BEFORE_FILES).await;

    let mut loader = Loader::new(&ctx.lake, &ctx.settings, &ctx.decoder, run_id, planned);
    let starts: Vec<(TopicPartition, i64)> = spans.iter().map(|(tp, s)| (tp.clone(), s.start)).collect();
    ctx.consumer.seek_and_resume(&starts).await?;
    consume(ctx, &assignment, &spans, &mut loader, progress).await?;
    ctx.consumer.pause_all();

    // Before any commit, so that a committed offset never skips an unsent dead letter. An
    // attempt that ends in a re-plan reads its records again and sends its dead letters
    // again: the DLQ is at-least-once (hooklake-origin names the source record).
    let dead = ctx.dead_letters.lock().await.flush().await?;
    for topic in &dead {
        ctx.metrics.dlq.with_label_values(&[topic]).inc();
    }
    let prepared = loader.finish().await?;
    failpoint::hit(failpoint::AFTER_FILES).await;
    if ctx.consumer.assignment().generation != assignment.generation {
        return Err(SinkError::Rebalanced);
    }
    commit(ctx, prepared, report).await
}

/// Each assigned partition's start (the table's next offset) and target (the high
/// watermark now); partitions with nothing new are left out.
async fn plan(
    ctx: &RunContext,
    assignment: &Assignment,
) -> Result<(HashMap<String, Option<LakeTable>>, HashMap<TopicPartition, Span>), SinkError> {
    let mut tables: HashMap<String, Option<LakeTable>> = HashMap::new();
    let mut spans = HashMap::new();
    for tp in &assignment.partitions {
        let Some(route) = ctx.settings.route(&tp.0) else { continue };
        if !tables.contains_key(&route.table_label) {
            tables.insert(route.table_label.clone(), ctx.lake.load(&route.table).await?);
        }
        let stored = tables[&route.table_label].as_ref().and_then(|t| t.next_offset(&tp.0, tp.1));
        let (low, high) = ctx.consumer.watermarks(&tp.0, tp.1).await?;
        if let Some(s) = stored
            && s < low
        {
            tracing::error!(topic = %tp.0, partition = tp.1, stored = s, low, "records expired from Kafka before they were loaded");
        }
        let start = stored.unwrap_or(low).max(low);
        if start < high {
            spans.insert(tp.clone(), Span { start, target: high });
        }
    }
    Ok((tables, spans))
}

/// Reads every planned partition from its start to its target into `loader`.
async fn consume(
    ctx: &RunContext,
    assignment: &Assignment,
    spans: &HashMap<TopicPartition, Span>,
    loader: &mut Loader<'_>,
    progress: &dyn Progress,
) -> Result<(), SinkError> {
    let mut next: HashMap<TopicPartition, i64> = spans.iter().map(|(tp, s)| (tp.clone(), s.start)).collect();
    let mut open: HashSet<TopicPartition> = spans.keys().cloned().collect();
    let mut last_progress = Instant::now();
    while !open.is_empty() {
        if ctx.consumer.assignment().generation != assignment.generation {
            return Err(SinkError::Rebalanced);
        }
        let Some(m) = ctx.consumer.next(Duration::from_secs(1)).await else {
            close_finished_by_position(ctx, spans, &mut open, loader);
            if last_progress.elapsed() > STALL {
                return Err(SinkError::Stalled(format!("no record for {}s; waiting for {open:?}", STALL.as_secs())));
            }
            continue;
        };
        let tp = (m.topic().to_owned(), m.partition());
        let (Some(span), Some(expected)) = (spans.get(&tp), next.get_mut(&tp)) else { continue };
        // Records before the expected offset were prefetched before a seek; records at or
        // past the target belong to the next run.
        if m.offset() < *expected || m.offset() >= span.target {
            continue;
        }
        *expected = m.offset() + 1;
        last_progress = Instant::now();
        match loader.push(&tp, m.offset(), m.payload()).await? {
            Outcome::Dead(reason) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, offset = m.offset(), %reason, "record sent to the DLQ");
                ctx.dead_letters.lock().await.send(&m, &reason)?;
            }
            Outcome::Loaded | Outcome::Duplicate => {}
        }
        progress.advanced(1);
        if *expected >= span.target {
            open.remove(&tp);
        }
    }
    Ok(())
}

/// Partitions whose read position passed the target without a record at the end
/// (offset gaps such as transaction markers) are done.
fn close_finished_by_position(
    ctx: &RunContext,
    spans: &HashMap<TopicPartition, Span>,
    open: &mut HashSet<TopicPartition>,
    loader: &mut Loader<'_>,
) {
    let positions = ctx.consumer.positions();
    open.retain(|tp| match (positions.get(tp), spans.get(tp)) {
        (Some(pos), Some(span)) if *pos >= span.target => {
            loader.advance(tp, span.target);
            false
        }
        _ => true,
    });
}

/// Commits each table, then mirrors the offsets into the consumer group. The report counts
/// what each table's commit took in, so an attempt that ends in a re-plan after some
/// tables committed counts each record once.
async fn commit(ctx: &RunContext, prepared: Vec<Prepared>, report: &mut RunReport) -> Result<(), SinkError> {
    let mut group_offsets = Vec::new();
    for p in prepared {
        let offsets: Vec<(TopicPartition, i64)> = p.commit.offsets.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        ctx.lake.commit(&p.planned, p.commit).await?;
        let m = &ctx.metrics;
        let label = [p.table_label.as_str()];
        m.rows.with_label_values(&label).inc_by(p.stats.rows);
        m.files.with_label_values(&label).inc_by(p.stats.files);
        m.bytes.with_label_values(&label).inc_by(p.stats.bytes);
        m.duplicates.with_label_values(&label).inc_by(p.duplicates);
        tracing::info!(
            table = %p.table_label, rows = p.stats.rows, files = p.stats.files, bytes = p.stats.bytes,
            duplicates = p.duplicates, "committed"
        );
        report.records += p.records;
        report.dead_letters += p.dead_letters;
        report.rows += p.stats.rows;
        report.files += p.stats.files;
        report.bytes += p.stats.bytes;
        report.duplicates += p.duplicates;
        report.tables.push(TableReport {
            table: p.table_label.clone(),
            rows: p.stats.rows,
            files: p.stats.files,
            bytes: p.stats.bytes,
            duplicates: p.duplicates,
        });
        group_offsets.extend(offsets);
    }
    failpoint::hit(failpoint::AFTER_TABLE_COMMIT).await;
    if let Err(e) = ctx.consumer.commit_offsets(&group_offsets, CommitMode::Sync) {
        // Only lag tools read the group's offsets; the tables hold the real ones.
        tracing::warn!(error = %e, "could not mirror offsets into the consumer group");
    }
    Ok(())
}
