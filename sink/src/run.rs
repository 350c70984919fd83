//! One sink run: plan from the tables' offsets and the high watermarks taken at the start,
//! read up to them with a reader of this attempt's own, write, commit one snapshot per
//! table, then mirror the offsets into the consumer group. A conflict on a partition this
//! run read, or a rebalance, starts the run over from the tables; files of an attempt
//! that cannot commit are deleted.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, Instant},
};

use rdkafka::{Message, consumer::CommitMode};

use crate::{
    SinkError,
    decode::Decoder,
    failpoint,
    kafka::{Assignment, DeadLetters, GroupConsumer, RunReader, TopicPartition},
    lake::{Lake, Tables},
    loader::{Loader, Outcome, Prepared, discard},
    metrics::SinkMetrics,
    settings::Settings,
};

/// Attempts per run before a persistent conflict fails it.
const MAX_ATTEMPTS: usize = 5;
/// No record for this long while records are due: the run fails.
const STALL: Duration = Duration::from_secs(120);
/// How long a run waits for the consumer group's first assignment.
const ASSIGNMENT_WAIT: Duration = Duration::from_secs(30);
/// Commits of one table on top of other writers' snapshots before the run re-plans.
const MAX_REBASES: usize = 20;

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

impl RunReport {
    /// Counts what one table's commit took in.
    fn add(&mut self, p: &Prepared) {
        self.records += p.records;
        self.dead_letters += p.dead_letters;
        self.rows += p.stats.rows;
        self.files += p.stats.files;
        self.bytes += p.stats.bytes;
        self.duplicates += p.duplicates;
        self.tables.push(TableReport {
            table: p.table_label.clone(),
            rows: p.stats.rows,
            files: p.stats.files,
            bytes: p.stats.bytes,
            duplicates: p.duplicates,
        });
    }
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
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}

/// A partition's part of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    start: i64,
    target: i64,
}

/// What an attempt reads: each table as planned, and the spans of the partitions with
/// records to load.
#[derive(Debug)]
struct Plan {
    tables: Tables,
    spans: HashMap<TopicPartition, Span>,
    /// Partitions whose next records expired from Kafka: `(partition, low watermark,
    /// records lost to retention)`. The commit moves their offsets to the low watermark.
    expired: Vec<(TopicPartition, i64, u64)>,
}

async fn attempt_run(
    ctx: &RunContext,
    run_id: &str,
    progress: &dyn Progress,
    report: &mut RunReport,
) -> Result<(), SinkError> {
    let assignment = ctx.consumer.wait_for_assignment(ASSIGNMENT_WAIT).await?;
    if assignment.partitions.is_empty() {
        tracing::info!(run_id, "no partitions assigned to this instance: nothing to do");
        return Ok(());
    }
    let plan = plan(ctx, &assignment).await?;
    if plan.spans.is_empty() && plan.expired.is_empty() {
        tracing::info!(run_id, "no new records: nothing to commit");
        return Ok(());
    }
    progress.planned(plan.spans.values().map(|s| (s.target - s.start) as u64).sum());
    failpoint::hit(failpoint::BEFORE_FILES).await;

    let mut loader = Loader::new(&ctx.lake, &ctx.settings, &ctx.decoder, run_id, plan.tables);
    for (tp, low, lost) in &plan.expired {
        loader.expired(tp, *low, *lost);
    }
    let dlq_failed = match load(ctx, &assignment, &plan.spans, &mut loader, progress).await {
        Ok(failed) => failed,
        Err(e) => {
            loader.abandon().await;
            return Err(e);
        }
    };
    let prepared = loader.finish().await?;
    failpoint::hit(failpoint::AFTER_FILES).await;
    if ctx.consumer.assignment().generation != assignment.generation {
        discard(&prepared).await;
        return Err(SinkError::Rebalanced);
    }
    // A table whose dead letters did not reach their DLQ keeps its offsets (its records
    // are read again next run); the other tables commit.
    let (blocked, ready): (Vec<Prepared>, Vec<Prepared>) =
        prepared.into_iter().partition(|p| p.commit.offsets.keys().any(|(topic, _)| dlq_failed.contains_key(topic)));
    discard(&blocked).await;
    commit(ctx, ready, report).await?;
    if dlq_failed.is_empty() {
        Ok(())
    } else {
        Err(SinkError::DeadLetters(dlq_failed.into_values().collect::<Vec<_>>().join("; ")))
    }
}

/// Reads the spans into `loader` and sends its dead letters. Returns the source topics
/// whose dead letters could not be delivered, with the reason.
async fn load(
    ctx: &RunContext,
    assignment: &Assignment,
    spans: &HashMap<TopicPartition, Span>,
    loader: &mut Loader<'_>,
    progress: &dyn Progress,
) -> Result<BTreeMap<String, String>, SinkError> {
    if !spans.is_empty() {
        let starts: Vec<(TopicPartition, i64)> = spans.iter().map(|(tp, s)| (tp.clone(), s.start)).collect();
        let reader = ctx.consumer.reader(&starts).await?;
        consume(ctx, &reader, assignment, spans, loader, progress).await?;
    }
    // Before any commit, so that a committed offset never skips an unsent dead letter. An
    // attempt that ends in a re-plan reads its records again and sends its dead letters
    // again: the DLQ is at-least-once (hooklake-origin names the source record).
    let (delivered, failed) = ctx.dead_letters.lock().await.flush().await;
    for topic in &delivered {
        ctx.metrics.dlq.with_label_values(&[topic]).inc();
    }
    Ok(failed)
}

/// Each assigned partition's start (the table's next offset) and target (the high
/// watermark now); partitions with nothing new are left out. A table whose offsets are
/// past the end of their partition (the topic was deleted and recreated, or the table
/// copied from elsewhere) fails the run: loading from there would skip records.
async fn plan(ctx: &RunContext, assignment: &Assignment) -> Result<Plan, SinkError> {
    let mut plan =
        Plan { tables: ctx.lake.load_all(&ctx.settings.routes).await?, spans: HashMap::new(), expired: Vec::new() };
    // Every configured topic's gauge is set, also those a rebalance took away from this
    // instance, so that a repaired table (or a moved partition) clears it.
    let mut ahead: HashMap<&str, i64> = ctx.settings.routes.iter().map(|r| (r.topic.as_str(), 0)).collect();
    let mut errors = Vec::new();
    for tp in &assignment.partitions {
        let Some(route) = ctx.settings.route(&tp.0) else { continue };
        let stored = plan.tables.next_offset(route, tp.1);
        let (low, high) = ctx.consumer.watermarks(&tp.0, tp.1).await?;
        let part = plan_partition(stored, low, high);
        if part.ahead {
            *ahead.entry(&tp.0).or_default() += 1;
            let s = stored.unwrap_or_default();
            errors.push(format!(
                "{}/{}: table {} is at offset {s}, the topic ends at {high}",
                tp.0, tp.1, route.table_label
            ));
            continue;
        }
        if part.expired > 0 {
            tracing::error!(topic = %tp.0, partition = tp.1, stored, low, "records expired from Kafka before they were loaded");
            plan.expired.push((tp.clone(), low, part.expired));
        }
        if let Some(span) = part.span {
            plan.spans.insert(tp.clone(), span);
        }
    }
    for (topic, partitions) in ahead {
        ctx.metrics.offsets_ahead.with_label_values(&[topic]).set(partitions);
    }
    if !errors.is_empty() {
        return Err(SinkError::OffsetsAhead(errors.join("; ")));
    }
    Ok(plan)
}

/// What the plan does with one partition.
#[derive(Debug, PartialEq, Eq)]
struct PartitionPlan {
    /// The table's offset is past the topic's end: the run must fail.
    ahead: bool,
    /// Records between the table's offset and the low watermark, gone from Kafka.
    expired: u64,
    /// What to read, if anything.
    span: Option<Span>,
}

/// The plan of a partition whose table offset is `stored` (`None`: never loaded) and
/// whose watermarks are `low` and `high`.
fn plan_partition(stored: Option<i64>, low: i64, high: i64) -> PartitionPlan {
    if stored.is_some_and(|s| s > high) {
        return PartitionPlan { ahead: true, expired: 0, span: None };
    }
    let expired = stored.map_or(0, |s| (low - s).max(0) as u64);
    let start = stored.unwrap_or(low).max(low);
    let span = (start < high).then_some(Span { start, target: high });
    PartitionPlan { ahead: false, expired, span }
}

/// Reads every planned partition from its start to its target into `loader`.
async fn consume(
    ctx: &RunContext,
    reader: &RunReader,
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
        let Some(m) = reader.next(Duration::from_secs(1)).await else {
            close_finished_by_position(reader, spans, &mut open, loader);
            if last_progress.elapsed() > STALL {
                return Err(SinkError::Stalled(format!("no record for {}s; waiting for {open:?}", STALL.as_secs())));
            }
            continue;
        };
        let tp = (m.topic().to_owned(), m.partition());
        let (Some(span), Some(expected)) = (spans.get(&tp), next.get_mut(&tp)) else { continue };
        // The reader starts at the span's start, so nothing comes before `expected`;
        // records at or past the target belong to the next run.
        if m.offset() < *expected || m.offset() >= span.target {
            continue;
        }
        if m.offset() > *expected {
            // Offsets the broker did not return: compaction or transaction markers, never
            // records of ingest's (its producer is not transactional). Counted, so an
            // alert shows it.
            let missing = m.offset() - *expected;
            tracing::warn!(topic = %tp.0, partition = tp.1, from = *expected, to = m.offset(), "offset gap in the topic");
            ctx.metrics.offset_gaps.with_label_values(&[&tp.0]).inc_by(missing as u64);
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
    reader: &RunReader,
    spans: &HashMap<TopicPartition, Span>,
    open: &mut HashSet<TopicPartition>,
    loader: &mut Loader<'_>,
) {
    let positions = reader.positions();
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
/// tables committed counts each record once. When a table cannot commit, the files of the
/// tables not committed are deleted (a commit that failed for another reason than a
/// conflict may have landed: its files stay, for the orphan clean-up to judge).
async fn commit(ctx: &RunContext, prepared: Vec<Prepared>, report: &mut RunReport) -> Result<(), SinkError> {
    let mut group_offsets = Vec::new();
    let mut pending = prepared.into_iter();
    while let Some(mut p) = pending.next() {
        if let Err(e) = commit_table(ctx, &mut p).await {
            let rest: Vec<Prepared> = pending.collect();
            discard(&rest).await;
            if matches!(e, SinkError::Conflict(_)) {
                discard(std::slice::from_ref(&p)).await;
            }
            return Err(e);
        }
        p.count_committed(&ctx.metrics);
        tracing::info!(
            table = %p.table_label, rows = p.stats.rows, files = p.stats.files, bytes = p.stats.bytes,
            duplicates = p.duplicates, "committed"
        );
        report.add(&p);
        group_offsets.extend(p.commit.offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
    }
    failpoint::hit(failpoint::AFTER_TABLE_COMMIT).await;
    if let Err(e) = ctx.consumer.commit_offsets(&group_offsets, CommitMode::Sync) {
        // Only lag tools read the group's offsets; the tables hold the real ones.
        tracing::warn!(error = %e, "could not mirror offsets into the consumer group");
    }
    Ok(())
}

/// Commits one table. When another writer committed first without touching the
/// partitions this run read (a replica with other partitions of the same table), the
/// same files and offsets are committed on top of its snapshot: nothing this run read
/// was loaded by the other. Otherwise the conflict goes up and the run re-plans.
async fn commit_table(ctx: &RunContext, p: &mut Prepared) -> Result<(), SinkError> {
    let mut rebases = 0;
    loop {
        match ctx.lake.commit(&p.planned, &p.commit).await {
            Ok(_) => return Ok(()),
            Err(SinkError::Conflict(table)) => {
                let now = ctx.lake.reload(&p.planned).await?;
                let rebase = rebases < MAX_REBASES && p.commit.can_rebase(&p.planned, &now);
                ctx.metrics
                    .conflicts
                    .with_label_values(&[p.table_label.as_str(), if rebase { "rebased" } else { "replanned" }])
                    .inc();
                if !rebase {
                    return Err(SinkError::Conflict(table));
                }
                rebases += 1;
                tracing::info!(table = %p.table_label, rebases, "another writer committed first, to other partitions: committing on top");
                p.planned = now;
                // Replicas that collided will likely collide again at once: spread them.
                tokio::time::sleep(Duration::from_millis(rand_millis(10, 100))).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A pseudo-random duration in `[lo, hi)` ms (jitter needs no quality).
fn rand_millis(lo: u64, hi: u64) -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    lo + u64::from(nanos) % (hi - lo).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: i64, target: i64) -> Option<Span> {
        Some(Span { start, target })
    }

    #[test]
    fn a_partition_is_read_from_the_tables_offset_to_the_high_watermark() {
        let plan = |stored, low, high| plan_partition(stored, low, high);
        assert_eq!(plan(None, 0, 5), PartitionPlan { ahead: false, expired: 0, span: span(0, 5) });
        assert_eq!(plan(Some(3), 0, 5), PartitionPlan { ahead: false, expired: 0, span: span(3, 5) });
        assert_eq!(plan(Some(5), 0, 5), PartitionPlan { ahead: false, expired: 0, span: None }, "nothing new");
        assert_eq!(
            plan(None, 4, 4),
            PartitionPlan { ahead: false, expired: 0, span: None },
            "never loaded, all expired"
        );
    }

    #[test]
    fn records_gone_before_they_were_loaded_are_counted_and_skipped() {
        assert_eq!(plan_partition(Some(2), 7, 9), PartitionPlan { ahead: false, expired: 5, span: span(7, 9) });
        // Nothing left to read: still reported, so the commit moves the offset past them.
        assert_eq!(plan_partition(Some(2), 9, 9), PartitionPlan { ahead: false, expired: 7, span: None });
    }

    #[test]
    fn a_table_past_the_topics_end_is_ahead() {
        assert_eq!(plan_partition(Some(6), 0, 5), PartitionPlan { ahead: true, expired: 0, span: None });
        assert_eq!(
            plan_partition(Some(6), 0, 0),
            PartitionPlan { ahead: true, expired: 0, span: None },
            "recreated, empty"
        );
    }
}
