//! Store configuration.

use crate::error::{Error, Result};

/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;

/// How the store is opened and tuned. Every field documents its unit.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// How long windows are kept, in milliseconds (default 90 days). A window whose end is at or
    /// before `now - retention_ms` is invisible to reads at once and physically removed by
    /// compaction (storage/FORMAT.md).
    pub retention_ms: i64,
    /// Age after which 15-minute windows are merged into hourly ones by
    /// [`crate::Store::downsample`], in milliseconds (default 30 days). Must be below
    /// `retention_ms`.
    pub downsample_after_ms: i64,
    /// Whether every acknowledged write fsyncs the WAL (default `true`). With `false` an
    /// acknowledged write survives a process crash (`kill -9`) but not a power loss.
    pub sync_writes: bool,
    /// Shared block cache for all column families, in bytes (default 256 MiB).
    pub block_cache_bytes: usize,
    /// Memtable size per column family, in bytes (default 64 MiB).
    pub write_buffer_bytes: usize,
    /// Uncompressed data block size, in bytes (default 32 KiB). Larger blocks compress sketch
    /// bytes better at a small cost in point-read latency.
    pub block_size_bytes: usize,
    /// zstd level for the zstd-compressed levels (default 6).
    pub zstd_level: i32,
    /// Most merge operands a window key may stack up in the memtable before a write folds
    /// them (default 16; 0 never folds). Every ingest batch adds an operand to each window it
    /// touches, and until a flush every read of an open window merged all of them again:
    /// hundreds per window at production rates. Past this many, RocksDB reads the key on the
    /// write path (memtable and cached blocks only, no disk I/O) and stores the merged value,
    /// so a read merges at most this many operands on top of it. See `FORMAT.md`, "Merge
    /// operands".
    pub max_successive_merges: usize,
    /// Background flush + compaction threads (default 4).
    pub background_jobs: i32,
    /// Every SST file is recompacted at least this often, in seconds (default 1 day), so the
    /// retention filter reaches cold files; see `FORMAT.md` on retention.
    pub periodic_compaction_secs: u64,
    /// Create the directory and column families when missing (default `true`).
    pub create_if_missing: bool,
    /// Keep a daily rollup of every series (default `true`): each 15-minute or hourly delta is
    /// also merged into its UTC day's window, in the same atomic batch, so a query over whole
    /// days reads one window per day instead of 96. Costs one more merge operand per delta
    /// and about 1/96 more window bytes. See `FORMAT.md`, "Daily rollups".
    pub daily_rollups: bool,
    /// How long after a 15-minute or hourly window ends it is rolled into its day's window by
    /// [`crate::Store::roll_up`] (default 1 hour; the server runs it every minute). Deltas for a
    /// window not rolled yet are written once, to that window only; later ones (late data) go
    /// to both, in the same batch. `0` rolls up on write: every delta is written twice, the
    /// way stores before this option worked, and `roll_up` has nothing to do. See `FORMAT.md`,
    /// "Daily rollups".
    pub rollup_after_ms: i64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            retention_ms: 90 * DAY_MS,
            downsample_after_ms: 30 * DAY_MS,
            sync_writes: true,
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 64 << 20,
            block_size_bytes: 32 << 10,
            zstd_level: 6,
            max_successive_merges: 16,
            background_jobs: 4,
            periodic_compaction_secs: 86_400,
            create_if_missing: true,
            daily_rollups: true,
            rollup_after_ms: 3_600_000,
        }
    }
}

impl StoreConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &'static str, detail: String| Err(Error::InvalidConfig { field, detail });
        if self.retention_ms <= 0 {
            return bad(
                "retention_ms",
                format!("{} must be positive", self.retention_ms),
            );
        }
        if self.downsample_after_ms <= 0 || self.downsample_after_ms >= self.retention_ms {
            return bad(
                "downsample_after_ms",
                format!(
                    "{} must be positive and below retention ({})",
                    self.downsample_after_ms, self.retention_ms
                ),
            );
        }
        if self.rollup_after_ms < 0 || self.rollup_after_ms >= self.retention_ms {
            return bad(
                "rollup_after_ms",
                format!(
                    "{} must be 0 (roll up on write) or positive and below retention ({})",
                    self.rollup_after_ms, self.retention_ms
                ),
            );
        }
        if self.block_size_bytes < 1024 {
            return bad(
                "block_size_bytes",
                format!("{} must be at least 1024", self.block_size_bytes),
            );
        }
        if !(1..=22).contains(&self.zstd_level) {
            return bad(
                "zstd_level",
                format!("{} must be in 1..=22", self.zstd_level),
            );
        }
        if self.background_jobs < 1 {
            return bad(
                "background_jobs",
                format!("{} must be at least 1", self.background_jobs),
            );
        }
        if self.write_buffer_bytes < 64 << 10 {
            return bad(
                "write_buffer_bytes",
                format!("{} must be at least 64 KiB", self.write_buffer_bytes),
            );
        }
        Ok(())
    }
}
