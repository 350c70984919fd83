//! The property every fault scenario (and the soak) ends with, once traffic stopped and
//! the sink caught up: every id answered 200 is in the table exactly once, no row comes
//! from nowhere, the table's stored offsets are the topic's high watermarks, and the rows'
//! Kafka positions cover every partition from 0 to its high watermark exactly once.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    time::Duration,
};

use crate::{
    kafka,
    lake::{TableContents, TestLake},
    metrics,
    traffic::TrafficReport,
};

/// What the table holds against what the clients were told.
#[derive(Debug, Default)]
pub struct Audit {
    pub sent: usize,
    pub accepted: usize,
    pub rows: usize,
    /// Answered 200, not in the table.
    pub lost: Vec<String>,
    /// Rows beyond the first of each message id.
    pub duplicated: usize,
    pub duplicated_ids: Vec<String>,
    /// In the table, never posted.
    pub unknown: Vec<String>,
    /// Posted, answered otherwise than 200 (a 503, a cut connection), loaded anyway: allowed.
    pub loaded_though_refused: usize,
    /// Stored offsets that are not the high watermarks; Kafka positions missing, repeated
    /// or past the high watermark.
    pub offsets: Vec<String>,
    /// Kafka positions without a row whose record is a second copy of an id the table has
    /// at another position: dropped as a duplicate, as designed. A producer replaced after
    /// a delivery timeout resends records it cannot know the broker took.
    pub copies_dropped: usize,
}

/// Compares `table` with what `traffic` was answered and with the topic's `high` watermarks
/// (on `brokers`, where the records of positions without a row are looked up).
pub fn audit(
    traffic: &TrafficReport,
    table: &TableContents,
    brokers: &str,
    topic: &str,
    high: &BTreeMap<i32, i64>,
) -> Audit {
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for row in table.rows() {
        *per_id.entry(row["message_id"].as_str().expect("message_id")).or_default() += 1;
    }
    let in_table: BTreeSet<&str> = per_id.keys().copied().collect();
    let (offsets, copies_dropped) = offset_problems(table, &in_table, brokers, topic, high);
    Audit {
        sent: traffic.sent(),
        accepted: traffic.accepted.len(),
        rows: table.rows().len(),
        lost: traffic.accepted.iter().filter(|id| !in_table.contains(id.as_str())).cloned().collect(),
        duplicated: per_id.values().map(|n| n - 1).sum(),
        duplicated_ids: per_id.iter().filter(|(_, n)| **n > 1).map(|(id, _)| (*id).to_owned()).collect(),
        unknown: in_table
            .iter()
            .filter(|id| !traffic.accepted.contains(**id) && !traffic.refused.contains(**id))
            .map(|id| (*id).to_owned())
            .collect(),
        loaded_though_refused: in_table.iter().filter(|id| traffic.refused.contains(**id)).count(),
        offsets,
        copies_dropped,
    }
}

/// The offset problems, and how many positions without a row hold a second copy of an id
/// the table has (allowed).
fn offset_problems(
    table: &TableContents,
    in_table: &BTreeSet<&str>,
    brokers: &str,
    topic: &str,
    high: &BTreeMap<i32, i64>,
) -> (Vec<String>, usize) {
    let mut problems = Vec::new();
    let mut copies = 0;
    let mut seen: BTreeMap<i32, BTreeMap<i64, usize>> = BTreeMap::new();
    for row in table.rows() {
        let partition = row["kafka_partition"].as_i64().expect("kafka_partition") as i32;
        let offset = row["kafka_offset"].as_i64().expect("kafka_offset");
        *seen.entry(partition).or_default().entry(offset).or_default() += 1;
    }
    for (&partition, &hw) in high {
        let stored = table.property(&format!("hooklake.offset.{topic}.{partition}"));
        let stored_ok = stored.map_or(hw == 0, |s| s == hw.to_string());
        if !stored_ok {
            problems.push(format!("partition {partition}: stored offset {stored:?}, high watermark {hw}"));
        }
        let offsets = seen.remove(&partition).unwrap_or_default();
        let repeated: Vec<i64> = offsets.iter().filter(|(_, n)| **n > 1).map(|(o, _)| *o).collect();
        if !repeated.is_empty() {
            problems.push(format!("partition {partition}: offsets on several rows: {}", ranges(&repeated)));
        }
        let beyond: Vec<i64> = offsets.keys().copied().filter(|o| *o >= hw || *o < 0).collect();
        if !beyond.is_empty() {
            problems.push(format!("partition {partition}: offsets outside 0..{hw}: {}", ranges(&beyond)));
        }
        let mut missing: Vec<i64> = (0..hw).filter(|o| !offsets.contains_key(o)).collect();
        if !missing.is_empty() {
            let keys = kafka::keys_at(brokers, topic, partition, &missing);
            let before = missing.len();
            missing.retain(|o| !keys.get(o).is_some_and(|id| in_table.contains(id.as_str())));
            copies += before - missing.len();
        }
        if !missing.is_empty() {
            problems.push(format!(
                "partition {partition}: {} offsets of 0..{hw} have no row: {}",
                missing.len(),
                ranges(&missing)
            ));
        }
    }
    for partition in seen.keys() {
        problems.push(format!("rows from partition {partition}, which the topic does not have"));
    }
    (problems, copies)
}

/// `[1, 2, 3, 7]` → `1-3, 7` (at most 20 ranges).
fn ranges(sorted: &[i64]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        out.push(if i == j { sorted[i].to_string() } else { format!("{}-{}", sorted[i], sorted[j]) });
        i = j + 1;
    }
    let more = out.len().saturating_sub(20);
    out.truncate(20);
    if more > 0 {
        out.push(format!("… {more} more ranges"));
    }
    out.join(", ")
}

impl Audit {
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.duplicated == 0 && self.unknown.is_empty() && self.offsets.is_empty()
    }

    /// Fails the test with the whole audit unless it is clean.
    pub fn assert_clean(&self, scenario: &str) {
        assert!(self.is_clean(), "{scenario}: {self}");
    }
}

impl fmt::Display for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = |ids: &[String]| ids.iter().take(10).cloned().collect::<Vec<_>>().join(", ");
        write!(
            f,
            "sent {}, answered 200 {}, rows {}, lost {}, duplicated {}, unknown {}, loaded though not answered 200 {}, \
             second copies dropped as duplicates {}",
            self.sent,
            self.accepted,
            self.rows,
            self.lost.len(),
            self.duplicated,
            self.unknown.len(),
            self.loaded_though_refused,
            self.copies_dropped
        )?;
        if !self.lost.is_empty() {
            write!(f, "\n  lost (first 10): {}", first(&self.lost))?;
        }
        if !self.duplicated_ids.is_empty() {
            write!(f, "\n  duplicated (first 10): {}", first(&self.duplicated_ids))?;
        }
        if !self.unknown.is_empty() {
            write!(f, "\n  unknown (first 10): {}", first(&self.unknown))?;
        }
        for p in &self.offsets {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

/// Waits (up to `timeout`) until the sinks at `sink_admins` report no lag and the table,
/// read with pyiceberg, stores the topic's high watermarks; returns the last read and the
/// watermarks. Returns what it has at the deadline rather than failing, so that the audit
/// can say what is wrong.
pub async fn settle(
    lake: &TestLake,
    table: &str,
    brokers: &str,
    topic: &str,
    sink_admins: &[String],
    timeout: Duration,
) -> (TableContents, BTreeMap<i32, i64>) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let out_of_time = tokio::time::Instant::now() >= deadline;
        let high = match kafka::try_high_watermarks(brokers, topic) {
            Ok(high) => high,
            Err(e) if !out_of_time => {
                eprintln!("settle: the broker did not answer ({e}); asking again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => panic!("the broker did not answer until the settle deadline: {e}"),
        };
        if out_of_time || caught_up(sink_admins, topic, &high).await {
            let contents = lake.read(table).await;
            let stored_all = high.iter().all(|(p, hw)| {
                contents.property(&format!("hooklake.offset.{topic}.{p}")) == Some(hw.to_string().as_str())
            });
            if stored_all || out_of_time {
                return (contents, high);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether any of the sinks reports zero lag on every partition of `topic`.
async fn caught_up(sink_admins: &[String], topic: &str, high: &BTreeMap<i32, i64>) -> bool {
    for admin in sink_admins {
        let Ok(r) = crate::http::client().get(format!("{admin}/metrics")).send().await else { continue };
        let Ok(text) = r.text().await else { continue };
        let lags: Option<Vec<f64>> = high
            .keys()
            .map(|p| {
                metrics::value(&text, "hooklake_sink_lag_messages", &[("topic", topic), ("partition", &p.to_string())])
            })
            .collect();
        if lags.is_some_and(|l| l.iter().all(|v| *v <= 0.0)) {
            return true;
        }
    }
    false
}
