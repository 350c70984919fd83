//! The message ids a run has seen (the table's within the dedupe window, then the run's
//! own), in memory that does not grow with the backlog.
//!
//! The newest ids sit in a hash set of at most `spill_at` fingerprints. When it fills, its
//! fingerprints are sorted and written to an unlinked temporary file: a *run*. In memory a
//! run keeps only a split-block Bloom filter (10 bits, ~1.25 B per id) and a sparse index
//! (the first fingerprint of every 4 KiB block, 1/16 B per id). A lookup probes each run's
//! filter (one cache line); only on a "maybe" (about 1 in 100) does it read one block of
//! that run's file. Runs are merged size-tiered (a run at most twice the size of the one
//! after it absorbs that one), so there are O(log n) of them and each id is rewritten
//! O(log n) times.
//!
//! At the default 2¹⁹ ids in the hash set, 5 million ids take ~16 MiB in the set, ~6 MiB of
//! filters and 80 MB of temporary files (page cache, not the process's memory) instead of
//! the ~80–240 MiB of one hash set of 16-byte fingerprints.

use std::{fs::File, io::Write, os::unix::fs::FileExt, sync::Arc};

use super::fingerprint::Fingerprints;
use crate::SinkError;

/// Fingerprints held in the hash set before they are written out as a run.
pub const SPILL_AT: usize = 1 << 19;

/// Fingerprints per block of a run file: one index entry and one read per block.
const BLOCK: usize = 256;
const FP_BYTES: usize = 16;

/// Message-id fingerprints seen so far.
#[derive(Debug)]
pub struct SeenIds {
    recent: Fingerprints,
    spill_at: usize,
    /// Oldest (largest) first.
    runs: Vec<Run>,
}

impl Default for SeenIds {
    fn default() -> Self {
        Self::with_spill_at(SPILL_AT)
    }
}

impl SeenIds {
    /// A set that writes its fingerprints out every `spill_at` (at least 1) new ones.
    pub fn with_spill_at(spill_at: usize) -> Self {
        let spill_at = spill_at.max(1);
        Self { recent: Fingerprints::default(), spill_at, runs: Vec::new() }
    }

    /// How many distinct fingerprints were inserted.
    pub fn len(&self) -> u64 {
        self.recent.len() as u64 + self.runs.iter().map(|r| r.data.len).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `fp` was inserted before. The hash set and the runs' filters answer in
    /// memory; only when a filter says "maybe" (about 1 lookup in 100 per run) is a block
    /// of that run's file read, on the blocking pool, not on an async worker.
    pub async fn contains(&self, fp: u128) -> Result<bool, SinkError> {
        if self.recent.contains(&fp) {
            return Ok(true);
        }
        let reads: Vec<(Arc<RunFile>, usize)> =
            self.runs.iter().filter_map(|run| run.candidate_block(fp).map(|block| (run.data.clone(), block))).collect();
        if reads.is_empty() {
            return Ok(false);
        }
        tokio::task::spawn_blocking(move || -> Result<bool, SinkError> {
            for (file, block) in reads {
                if file.read_block(block)?.binary_search(&fp).is_ok() {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .await
        .map_err(SinkError::join("dedupe spill read"))?
    }

    /// Inserts `fp`; `false` when it was there already (a duplicate).
    pub async fn insert(&mut self, fp: u128) -> Result<bool, SinkError> {
        if self.contains(fp).await? {
            return Ok(false);
        }
        self.recent.insert(fp);
        if self.recent.len() >= self.spill_at {
            self.spill().await?;
        }
        Ok(true)
    }

    /// Writes the hash set out as a run and merges runs of similar size. The file work
    /// runs on the blocking pool.
    async fn spill(&mut self) -> Result<(), SinkError> {
        let mut sorted: Vec<u128> = self.recent.drain().collect();
        let mut runs = std::mem::take(&mut self.runs);
        self.runs = tokio::task::spawn_blocking(move || -> Result<Vec<Run>, SinkError> {
            sorted.sort_unstable();
            runs.push(Run::write(sorted.len() as u64, sorted.into_iter())?);
            while runs.len() >= 2 && runs[runs.len() - 2].data.len <= 2 * runs[runs.len() - 1].data.len {
                let newer = runs.pop().expect("two runs");
                let older = runs.pop().expect("two runs");
                runs.push(Run::merge(older, newer)?);
            }
            Ok(runs)
        })
        .await
        .map_err(SinkError::join("dedupe spill task"))??;
        Ok(())
    }
}

/// Sorted fingerprints in a temporary file, with their filter and sparse index in memory.
#[derive(Debug)]
struct Run {
    /// Shared with the blocking tasks that read its blocks.
    data: Arc<RunFile>,
    filter: BlockBloom,
    /// The first fingerprint of each block.
    index: Vec<u128>,
}

/// The file of a run: `len` ascending little-endian fingerprints.
#[derive(Debug)]
struct RunFile {
    file: File,
    len: u64,
}

impl Run {
    /// Writes ascending fingerprints, about `len` of them (it sizes the filter).
    fn write(len: u64, sorted: impl Iterator<Item = u128>) -> Result<Self, SinkError> {
        let file = tempfile::tempfile().map_err(io("create a dedupe spill file in the temp dir"))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 16, &file);
        let mut filter = BlockBloom::for_items(len);
        let mut index = Vec::with_capacity(len.div_ceil(BLOCK as u64) as usize);
        let mut written = 0u64;
        for fp in sorted {
            if written.is_multiple_of(BLOCK as u64) {
                index.push(fp);
            }
            filter.insert(fp);
            out.write_all(&fp.to_le_bytes()).map_err(io("write a dedupe spill file"))?;
            written += 1;
        }
        out.flush().map_err(io("write a dedupe spill file"))?;
        drop(out);
        Ok(Self { data: Arc::new(RunFile { file, len: written }), filter, index })
    }

    /// One run holding both runs' fingerprints (disjoint: only new ones are inserted). The
    /// old filters and indexes are freed first, so a merge needs memory for one filter.
    fn merge(a: Run, b: Run) -> Result<Self, SinkError> {
        let (a, b) = (a.data, b.data);
        let mut a_iter = a.iter().peekable();
        let mut b_iter = b.iter().peekable();
        // An error sorts first, so it ends the merge at once.
        let key = |r: &Result<u128, SinkError>| r.as_ref().ok().copied();
        let merged = std::iter::from_fn(|| match (a_iter.peek().map(key), b_iter.peek().map(key)) {
            (Some(x), Some(y)) if x <= y => a_iter.next(),
            (_, Some(_)) => b_iter.next(),
            (Some(_), None) => a_iter.next(),
            (None, None) => None,
        });
        let mut failed = None;
        let run = Run::write(a.len + b.len, merged.map_while(|r| r.map_err(|e| failed = Some(e)).ok()))?;
        match failed {
            Some(e) => Err(e),
            None => Ok(run),
        }
    }

    /// The block of this run's file that would hold `fp`, unless the filter or the index
    /// already rule it out.
    fn candidate_block(&self, fp: u128) -> Option<usize> {
        if !self.filter.may_contain(fp) {
            return None;
        }
        // The last block whose first fingerprint is <= fp.
        match self.index.partition_point(|&first| first <= fp) {
            0 => None,
            n => Some(n - 1),
        }
    }
}

impl RunFile {
    /// The fingerprints in order, read in blocks.
    fn iter(&self) -> impl Iterator<Item = Result<u128, SinkError>> + '_ {
        let blocks = self.len.div_ceil(BLOCK as u64) as usize;
        (0..blocks).flat_map(move |block| match self.read_block(block) {
            Ok(fps) => fps.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    }

    fn read_block(&self, block: usize) -> Result<Vec<u128>, SinkError> {
        let start = (block * BLOCK) as u64;
        let count = (self.len - start).min(BLOCK as u64) as usize;
        let mut bytes = vec![0u8; count * FP_BYTES];
        self.file.read_exact_at(&mut bytes, start * FP_BYTES as u64).map_err(io("read a dedupe spill file"))?;
        Ok(bytes.chunks_exact(FP_BYTES).map(|c| u128::from_le_bytes(c.try_into().expect("16-byte chunk"))).collect())
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> SinkError {
    move |e| SinkError::storage(what)(e)
}

/// A split-block Bloom filter (the layout of Parquet's): 256-bit blocks, one bit set in each
/// of a block's eight 32-bit words, so a lookup touches one cache line. At 10 bits per
/// item the false-positive rate is about 1%.
#[derive(Debug)]
struct BlockBloom {
    blocks: Vec<[u32; 8]>,
}

impl BlockBloom {
    const SALT: [u32; 8] =
        [0x47b6137b, 0x44974d91, 0x8824ad5b, 0xa2b7289d, 0x705495c7, 0x2df1424b, 0x9efc4947, 0x5c6bfb31];
    const BITS_PER_ITEM: u64 = 10;

    fn for_items(items: u64) -> Self {
        let blocks = (items * Self::BITS_PER_ITEM).div_ceil(256).max(1);
        Self { blocks: vec![[0; 8]; blocks as usize] }
    }

    /// The block from the fingerprint's high half, the bits from its low half: fingerprints
    /// are uniformly random already.
    fn locate(&self, fp: u128) -> (usize, [u32; 8]) {
        let block = (((fp >> 64) as u64 as u128 * self.blocks.len() as u128) >> 64) as usize;
        let key = fp as u32;
        let mask = Self::SALT.map(|salt| 1u32 << (key.wrapping_mul(salt) >> 27));
        (block, mask)
    }

    fn insert(&mut self, fp: u128) {
        let (block, mask) = self.locate(fp);
        for (word, bit) in self.blocks[block].iter_mut().zip(mask) {
            *word |= bit;
        }
    }

    fn may_contain(&self, fp: u128) -> bool {
        let (block, mask) = self.locate(fp);
        self.blocks[block].iter().zip(mask).all(|(word, bit)| word & bit != 0)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::dedupe::fingerprint;

    /// Against a plain hash set: every id inserted once is new, every repeat (from any run,
    /// before or after merges) is a duplicate, and ids never inserted are not found.
    #[tokio::test]
    async fn spilled_and_merged_runs_answer_like_a_hash_set() {
        let mut seen = SeenIds::with_spill_at(1_000);
        let mut reference = HashSet::new();
        // 23,456 distinct ids in 1,000-id spills: many runs, several merges, a partial block.
        for i in 0..23_456u32 {
            let fp = fingerprint(&format!("msg_{i}"));
            assert!(seen.insert(fp).await.unwrap(), "msg_{i} is new");
            reference.insert(fp);
            // Every 7th id is delivered again right away, every 5th again from an older run.
            if i % 7 == 0 {
                assert!(!seen.insert(fp).await.unwrap(), "msg_{i} repeated at once");
            }
            if i % 5 == 0 && i >= 5_000 {
                let old = fingerprint(&format!("msg_{}", i - 5_000));
                assert!(!seen.insert(old).await.unwrap(), "msg_{} repeated 5,000 ids later", i - 5_000);
            }
        }
        assert_eq!(seen.len(), 23_456);
        assert!(seen.runs.len() >= 2 && seen.runs.len() <= 8, "size-tiered: {} runs", seen.runs.len());
        for i in 0..23_456u32 {
            assert!(seen.contains(fingerprint(&format!("msg_{i}"))).await.unwrap(), "msg_{i} is found");
        }
        for i in 0..20_000u32 {
            assert!(!seen.contains(fingerprint(&format!("other_{i}"))).await.unwrap(), "other_{i} was never inserted");
        }
        // The smallest and largest fingerprints are found (the first and last blocks).
        let (min, max) = (reference.iter().min().copied().unwrap(), reference.iter().max().copied().unwrap());
        assert!(seen.contains(min).await.unwrap() && seen.contains(max).await.unwrap());
        assert!(!seen.contains(0).await.unwrap() && !seen.contains(u128::MAX).await.unwrap());
    }

    #[test]
    fn the_filter_has_no_false_negatives_and_few_false_positives() {
        let mut filter = BlockBloom::for_items(100_000);
        for i in 0..100_000 {
            filter.insert(fingerprint(&format!("in_{i}")));
        }
        assert!((0..100_000).all(|i| filter.may_contain(fingerprint(&format!("in_{i}")))));
        let false_positives = (0..100_000).filter(|i| filter.may_contain(fingerprint(&format!("out_{i}")))).count();
        assert!(false_positives < 3_000, "{false_positives} false positives in 100,000 (expected ~1%)");
    }
}
