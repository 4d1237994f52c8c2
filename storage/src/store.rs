//! [`Store`]: the RocksDB database, its column families and the durable write path.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use driftdb_engine::codec::{open, seal};
use driftdb_engine::time::{Clock, Resolution, Timestamp};
use rocksdb::{
    BlockBasedOptions, BottommostLevelCompaction, Cache, ColumnFamily, ColumnFamilyDescriptor,
    CompactOptions, DB, DBCompressionType, Options, WriteBatch, WriteOptions,
};

use crate::config::StoreConfig;
use crate::error::{Error, Result};
use crate::layout::{
    ALL_CFS, CF_META, CF_PENDING, CF_WIN_1D, CF_WIN_1H, CF_WIN_15M, downsample_watermark_key,
    rollup_marker_key, window_cf, window_key_from_prefix,
};
use crate::merge::{Counters, RetentionFilterFactory, is_expired, window_merge_operator};
use crate::rollup::{NONE_ROLLED, RollCursor};
use crate::write::{Family, FamilyOp, WriteSet};

/// Value kind of storage's own watermark records in `meta` (payload: big-endian i64 ms).
pub const KIND_WATERMARK: u8 = 0xF0;

/// Name of the window merge operator, recorded in RocksDB's OPTIONS file.
const MERGE_OPERATOR_NAME: &str = "driftdb.window_merge.v1";

/// No downsampling done yet.
const NO_WATERMARK: i64 = i64::MIN;

/// driftdb's embedded database: window sketches per resolution and the other families of
/// `layout`, one directory, one WAL.
///
/// `Store` is `Sync`; share it with an `Arc`. Writes from many threads proceed concurrently;
/// downsampling briefly excludes writers while it moves each chunk of windows.
#[derive(Debug)]
pub struct Store {
    pub(crate) db: DB,
    pub(crate) config: StoreConfig,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Arc<Counters>,
    /// Writers hold it shared; downsampling holds it exclusively while it moves a chunk, so a
    /// delta can never land in a 15m window between the read and the delete of its move.
    move_lock: RwLock<()>,
    /// 15m windows ending at or before this instant (ms) are, or are being, downsampled;
    /// deltas for them are folded into their hourly window instead. `i64::MIN` when none.
    pub(crate) downsampled_before: AtomicI64,
    /// One maintenance run (downsampling, rolling up) at a time.
    pub(crate) maintenance: Mutex<()>,
    /// Which finer windows are merged into their day already (`rollup.rs`). Writers read it
    /// under the shared writer lock; a rollup run changes it under the exclusive one.
    pub(crate) roll: RwLock<RollCursor>,
    /// Daily windows starting at or after this instant (ms) are complete rollups of their
    /// finer windows; `None` when rollups are off.
    pub(crate) rollups_from: Option<i64>,
    /// Each model's expiry clock for its pending label-join records (crate::pending).
    pub(crate) pending_clocks: Arc<crate::pending::Clocks>,
}

fn table_options(config: &StoreConfig, cache: &Cache, bloom: bool) -> BlockBasedOptions {
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(cache);
    t.set_block_size(config.block_size_bytes);
    t.set_cache_index_and_filter_blocks(true);
    t.set_pin_l0_filter_and_index_blocks_in_cache(true);
    t.set_format_version(6);
    if bloom {
        t.set_bloom_filter(10.0, false);
    }
    t
}

/// Column family options for the name `cf`.
fn cf_options(
    cf: &str,
    config: &StoreConfig,
    cache: &Cache,
    clock: &Arc<dyn Clock>,
    counters: &Arc<Counters>,
    pending_clocks: &Arc<crate::pending::Clocks>,
) -> Options {
    let mut o = Options::default();
    o.set_write_buffer_size(config.write_buffer_bytes);
    // window_bits -14 is zstd's default; strategy 0; no dictionary. Sweeping zstd levels 3-19
    // and 16-64 KiB blocks moved bytes per window by under 7 % (FORMAT.md, "Size").
    let zstd_bottommost = |o: &mut Options| {
        o.set_bottommost_compression_type(DBCompressionType::Zstd);
        o.set_bottommost_compression_options(-14, config.zstd_level, 0, 0, true);
    };
    let is_window = [CF_WIN_15M, CF_WIN_1H, CF_WIN_1D].contains(&cf);
    if is_window {
        // Range scans only: no bloom filter.
        o.set_block_based_table_factory(&table_options(config, cache, false));
        o.set_merge_operator_associative(
            MERGE_OPERATOR_NAME,
            window_merge_operator(Arc::clone(counters)),
        );
        // A bounded stack of operands per key in the memtable (StoreConfig docs).
        o.set_max_successive_merges(config.max_successive_merges);
        o.set_compaction_filter_factory(RetentionFilterFactory {
            clock: Arc::clone(clock),
            retention_ms: config.retention_ms,
            counters: Arc::clone(counters),
        });
        o.set_periodic_compaction_seconds(config.periodic_compaction_secs);
        // Open windows take a merge operand from every batch, so each flushed L0 file holds
        // nearly every open window again and each L0 compaction re-merges and recompresses
        // all of them. Compacting after 8 files instead of RocksDB's 4 halves that work: ingest
        // +8 % at the same memory (BENCHMARKS.md); a read of an open window may merge
        // up to 8 L0 values instead of 4.
        o.set_level_zero_file_num_compaction_trigger(8);
        // Every window family is written on the hot path (15m and the daily rollups by each
        // ingest batch, 1h by hourly models and downsampling): cheap lz4 while windows churn
        // through the upper levels, zstd once they settle in the bottommost level, which is
        // where the bytes on disk are (FORMAT.md, "Size"). zstd at every level cost ingest
        // about 8 % of its CPU in flushes of the daily family.
        o.set_compression_type(DBCompressionType::Lz4);
        // L0 files of a window family live until the next L0 compaction merges them away, so
        // flushes write them uncompressed: lz4 in flushes was ≈ 4 % of ingest's CPU.
        let mut levels = [DBCompressionType::Lz4; 7];
        levels[0] = DBCompressionType::None;
        o.set_compression_per_level(&levels);
        zstd_bottommost(&mut o);
    } else {
        // Point lookups (dedup ids, pending joins): bloom filters pay off.
        o.set_block_based_table_factory(&table_options(config, cache, true));
        // Most ingest lookups are for request ids never seen (the dedup and join checks of
        // every new prediction): a whole-key bloom filter over the memtable (2 % of its size)
        // answers those without a skiplist search.
        o.set_memtable_prefix_bloom_ratio(0.02);
        o.set_memtable_whole_key_filtering(true);
        o.set_compression_type(DBCompressionType::Lz4);
        zstd_bottommost(&mut o);
        if cf == CF_PENDING {
            // Records past their deadline go at compaction (crate::pending); every file is
            // rewritten at least this often, so expired records do not linger in cold levels.
            o.set_compaction_filter_factory(crate::pending::PendingFilterFactory {
                clocks: Arc::clone(pending_clocks),
                counters: Arc::clone(counters),
            });
            o.set_periodic_compaction_seconds(config.periodic_compaction_secs);
        }
    }
    o
}

impl Store {
    /// Opens (or creates) the store at `path`.
    ///
    /// `clock` is the source of "now" for retention (reads and the compaction filter) and
    /// downsampling.
    pub fn open(
        path: impl AsRef<Path>,
        config: StoreConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Store> {
        config.validate()?;
        let counters = Arc::new(Counters::default());
        let pending_clocks = Arc::new(crate::pending::Clocks::default());
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let mut db_opts = Options::default();
        db_opts.create_if_missing(config.create_if_missing);
        db_opts.create_missing_column_families(config.create_if_missing);
        db_opts.set_max_background_jobs(config.background_jobs);
        db_opts.set_bytes_per_sync(1 << 20);
        let descriptors = ALL_CFS.iter().map(|name| {
            ColumnFamilyDescriptor::new(
                *name,
                cf_options(name, &config, &cache, &clock, &counters, &pending_clocks),
            )
        });
        let db =
            DB::open_cf_descriptors(&db_opts, path, descriptors).map_err(Error::rocks("open"))?;
        let store = Store {
            db,
            config,
            clock,
            counters,
            move_lock: RwLock::new(()),
            downsampled_before: AtomicI64::new(NO_WATERMARK),
            maintenance: Mutex::new(()),
            roll: RwLock::new(RollCursor::at(NONE_ROLLED)),
            rollups_from: None,
            pending_clocks,
        };
        for name in ALL_CFS {
            store.cf(name)?;
        }
        store.load_pending_clocks()?;
        if let Some(w) = store.read_watermark(Resolution::M15)? {
            store.downsampled_before.store(w.millis(), Ordering::SeqCst);
        }
        let mut store = store;
        let (from, created) = store.init_rollups()?;
        store.rollups_from = from;
        store.init_roll_cursor(from.unwrap_or(NONE_ROLLED), created)?;
        Ok(store)
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The store's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Windows ending at or before this instant are past retention now.
    pub fn retention_cutoff(&self) -> Timestamp {
        self.clock
            .now()
            .saturating_add_ms(-self.config.retention_ms)
    }

    /// Merge operands skipped because they failed to decode, since open. Counted every time a
    /// merge (a read, a compaction) meets one, so one bad operand may count more than once.
    pub fn corrupt_operands(&self) -> u64 {
        self.counters.corrupt_operands.load(Ordering::Relaxed)
    }

    /// Stored window values that reads or downsampling skipped as corrupt, since open.
    pub fn corrupt_values(&self) -> u64 {
        self.counters.corrupt_values.load(Ordering::Relaxed)
    }

    /// Window values the retention compaction filter removed, since open.
    pub fn expired_removed(&self) -> u64 {
        self.counters.expired_removed.load(Ordering::Relaxed)
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or(Error::MissingColumnFamily { name })
    }

    pub(crate) fn write_options(&self) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.config.sync_writes);
        wo
    }

    pub(crate) fn lock_writers_shared(&self) -> RwLockReadGuard<'_, ()> {
        // The lock guards no data, so a poisoned lock is still usable.
        self.move_lock.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn lock_writers_exclusive(&self) -> RwLockWriteGuard<'_, ()> {
        self.move_lock.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `set` as one atomic RocksDB batch with the WAL on (fsynced when
    /// [`StoreConfig::sync_writes`]). When this returns `Ok`, the whole set survives `kill -9`.
    ///
    /// Fails without writing anything when a delta targets a window already past retention.
    /// Deltas for 15-minute windows that were already downsampled are folded into their hourly
    /// window, so late data is never stranded below the downsampling watermark.
    pub fn write(&self, set: &WriteSet) -> Result<()> {
        if set.is_empty() {
            return Ok(());
        }
        let cutoff = self.retention_cutoff();
        if let Some(d) = set
            .deltas
            .iter()
            .find(|d| is_expired(d.resolution, d.start, cutoff))
        {
            return Err(Error::OutOfRetention {
                window_start: d.start.millis(),
                cutoff: cutoff.millis(),
            });
        }
        let cf_15m = self.cf(CF_WIN_15M)?;
        let cf_1h = self.cf(CF_WIN_1H)?;
        let cf_1d = self.cf(CF_WIN_1D)?;
        // Sized up front: a batch of ingest deltas is megabytes, and growing RocksDB's buffer by
        // doubling copied it several times into freshly faulted pages.
        let mut batch = WriteBatch::with_capacity_bytes(set.batch_bytes());
        let _shared = self.lock_writers_shared();
        let boundary = self.downsampled_before.load(Ordering::SeqCst);
        let roll = self.roll.read().unwrap_or_else(|e| e.into_inner());
        // Merges go into the batch in key order per family: RocksDB's memtable skip list
        // keeps the splice of the previous insert, so ordered inserts search only the few
        // levels where their neighbours changed instead of descending from the top.
        let mut merges: Vec<(Resolution, Vec<u8>, &[u8])> = Vec::with_capacity(set.deltas.len());
        for d in &set.deltas {
            let (res, start) = match d.resolution {
                Resolution::M15
                    if d.start.millis().saturating_add(Resolution::M15.width_ms()) <= boundary =>
                {
                    (Resolution::H1, Resolution::H1.window_start(d.start))
                }
                r => (r, d.start),
            };
            let key = window_key_from_prefix(&d.series_prefix, res, start);
            let to_day = self.rollups_from.is_some()
                && res != Resolution::D1
                && roll.is_rolled(res, &key, start);
            merges.push((res, key, &d.value));
            if to_day {
                let day = Resolution::D1.window_start(start);
                merges.push((
                    Resolution::D1,
                    window_key_from_prefix(&d.series_prefix, Resolution::D1, day),
                    &d.value,
                ));
            }
        }
        merges.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (res, key, value) in merges {
            let cf = match res {
                Resolution::M15 => cf_15m,
                Resolution::H1 => cf_1h,
                Resolution::D1 => cf_1d,
            };
            batch.merge_cf(cf, key, value);
        }
        for op in &set.ops {
            match op {
                FamilyOp::Put { family, key, value } => {
                    batch.put_cf(self.cf(family.cf_name())?, key, value)
                }
                FamilyOp::Delete { family, key } => {
                    batch.delete_cf(self.cf(family.cf_name())?, key)
                }
            }
        }
        let written = self
            .db
            .write_opt(batch, &self.write_options())
            .map_err(Error::rocks("write"));
        drop(roll);
        written
    }

    /// Flushes every memtable to SST files.
    pub fn flush(&self) -> Result<()> {
        for name in ALL_CFS {
            self.db
                .flush_cf(self.cf(name)?)
                .map_err(Error::rocks("flush"))?;
        }
        Ok(())
    }

    /// RocksDB's last sequence number: it moves with every write, so two equal readings mean
    /// nothing was written in between.
    pub fn latest_sequence(&self) -> u64 {
        self.db.latest_sequence_number()
    }

    /// Writes a consistent copy of the whole store to `dir` (which must not exist): RocksDB's
    /// checkpoint, with every memtable flushed first so the copy needs no WAL replay. SST files
    /// are hard links when `dir` is on the same file system (they are immutable), copies
    /// otherwise. Writes that land while it runs are either wholly in the copy or wholly out.
    pub fn checkpoint(&self, dir: &Path) -> Result<()> {
        let cp =
            rocksdb::checkpoint::Checkpoint::new(&self.db).map_err(Error::rocks("checkpoint"))?;
        cp.create_checkpoint(dir)
            .map_err(Error::rocks("checkpoint"))
    }

    /// Flushes every memtable and waits until RocksDB's background compactions are done:
    /// the steady state benchmarks measure after a bulk load.
    pub fn settle(&self) -> Result<()> {
        self.flush()?;
        let mut o = rocksdb::WaitForCompactOptions::default();
        o.set_flush(true);
        self.db
            .wait_for_compact(&o)
            .map_err(Error::rocks("wait for compaction"))
    }

    /// Compacts every window family down to its last level, forcing a rewrite of the
    /// bottommost level so the retention filter sees every window, including windows that were
    /// only merge operands before this call (see `FORMAT.md`, "Retention"). Blocks until done.
    pub fn compact_windows(&self) -> Result<()> {
        let mut opts = CompactOptions::default();
        opts.set_bottommost_level_compaction(BottommostLevelCompaction::Force);
        opts.set_exclusive_manual_compaction(false);
        for res in Resolution::ALL {
            let cf = self.cf(window_cf(res))?;
            self.db
                .compact_range_cf_opt(cf, None::<&[u8]>, None::<&[u8]>, &opts);
        }
        Ok(())
    }

    /// Bytes of live SST files in the window family of `res` (RocksDB's
    /// `rocksdb.total-sst-files-size`).
    pub fn window_sst_bytes(&self, res: Resolution) -> Result<u64> {
        let cf = self.cf(window_cf(res))?;
        Ok(self
            .db
            .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
            .map_err(Error::rocks("property"))?
            .unwrap_or(0))
    }

    /// The underlying RocksDB handle, for tools and tests (raw iteration, properties,
    /// checkpoints). Writing through it bypasses retention checks, sealing and downsampling
    /// redirection; never write window families except through [`Store::write`].
    pub fn raw_db(&self) -> &DB {
        &self.db
    }

    /// Reads or starts the daily-rollup marker. A store that never had finer windows rolls up
    /// from the beginning; a store that has them but no marker (rollups just switched on)
    /// rolls up completely from the next UTC day. Switching rollups off removes the marker.
    /// Returns the marker and whether this open wrote it.
    fn init_rollups(&self) -> Result<(Option<i64>, bool)> {
        let cf = self.cf(CF_META)?;
        let stored = self.read_instant(&rollup_marker_key(), "rollup marker")?;
        if !self.config.daily_rollups {
            if stored.is_some() {
                self.db
                    .delete_cf(cf, rollup_marker_key())
                    .map_err(Error::rocks("write"))?;
            }
            return Ok((None, false));
        }
        if let Some(t) = stored {
            return Ok((Some(t.millis()), false));
        }
        let mut has_windows = false;
        for name in [CF_WIN_15M, CF_WIN_1H] {
            let mut it = self.db.raw_iterator_cf(self.cf(name)?);
            it.seek_to_first();
            has_windows |= it.valid();
        }
        let from = if has_windows {
            let day = Resolution::D1.width_ms();
            Resolution::D1.window_start(self.clock.now()).millis() + day
        } else {
            i64::MIN
        };
        self.db
            .put_cf_opt(
                cf,
                rollup_marker_key(),
                seal(KIND_WATERMARK, &from.to_be_bytes()),
                &self.write_options(),
            )
            .map_err(Error::rocks("write"))?;
        Ok((Some(from), true))
    }

    /// Daily windows starting at or after the returned instant are complete rollups of the
    /// finer windows of their day; `None` when the store keeps no rollups.
    pub fn daily_rollups_from(&self) -> Option<Timestamp> {
        self.rollups_from.map(Timestamp)
    }

    pub(crate) fn read_watermark(&self, source: Resolution) -> Result<Option<Timestamp>> {
        self.read_instant(&downsample_watermark_key(source), "downsample watermark")
    }

    /// An instant stored in `meta` under `key` (sealed, big-endian i64 ms).
    fn read_instant(&self, key: &[u8], what: &'static str) -> Result<Option<Timestamp>> {
        let cf = self.cf(CF_META)?;
        let Some(v) = self
            .db
            .get_pinned_cf(cf, key)
            .map_err(Error::rocks("get"))?
        else {
            return Ok(None);
        };
        let bad = |source| Error::CorruptValue {
            family: CF_META,
            source,
        };
        let (kind, payload) = open(&v).map_err(bad)?;
        let arr: [u8; 8] = payload
            .try_into()
            .ok()
            .filter(|_| kind == KIND_WATERMARK)
            .ok_or_else(|| {
                bad(driftdb_engine::Error::Malformed {
                    what,
                    detail: format!("kind {kind}, {} bytes", payload.len()),
                })
            })?;
        Ok(Some(Timestamp(i64::from_be_bytes(arr))))
    }

    pub(crate) fn watermark_put(
        batch: &mut WriteBatch,
        cf: &ColumnFamily,
        source: Resolution,
        w: Timestamp,
    ) {
        batch.put_cf(
            cf,
            downsample_watermark_key(source),
            seal(KIND_WATERMARK, &w.millis().to_be_bytes()),
        );
    }

    pub(crate) fn family_cf(&self, family: Family) -> Result<&ColumnFamily> {
        self.cf(family.cf_name())
    }
}
