//! The read contract `query` builds on ([`SeriesReader`]) and its RocksDB implementation.
//!
//! Reads are the first half of docs/DATA_MODEL.md, scale-out 5's split: "fetch sketches for series × range". They
//! return per-window states; merging over a range and computing statistics is the caller's.
//!
//! **Contract, for every implementation:**
//! - A range `[from, to)` selects windows by their **start**: `from <= start < to`.
//! - [`SeriesReader::windows`] yields one series' windows in ascending start order, each start
//!   at most once. [`SeriesReader::scan`] yields windows ordered by series (the byte order of
//!   `layout`'s keys, equal to `SeriesKey`'s `Ord`) and then by start.
//! - Windows past retention (end at or before `now - retention`) are never yielded, whether or
//!   not compaction has removed them yet.
//! - A stored value that fails its checksum or does not decode is skipped and counted
//!   ([`WindowIter::corrupt`], [`crate::Store::corrupt_values`]), never yielded as data.
//! - Each iterator reads one consistent point-in-time view, taken when it is created: writes
//!   (and downsampling moves) that land later are not seen. Separate calls see separate views;
//!   [`SeriesReader::windows_resolved`] must read both resolutions from one view, or a window
//!   moved by a concurrent downsampling run could be counted twice or not at all.
//! - Items are owned; no buffer is reused between items.
//! - A resolution that was never written simply yields nothing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use driftdb_engine::series::{FeatureRef, SeriesKey};
use driftdb_engine::sketch::SeriesState;
use driftdb_engine::time::{Resolution, Timestamp};
use rocksdb::{DB, DBRawIteratorWithThreadMode, ReadOptions, SnapshotWithThreadMode};

use crate::error::{Error, Result};
use crate::layout::{
    decode_series, feature_prefix, model_prefix, prefix_successor, series_prefix, series_skip_key,
    split_window_key, version_prefix, window_cf, window_key_from_prefix,
};
use crate::merge::{Counters, first_live_start, is_expired};
use crate::store::Store;

/// One stored window of one series.
#[derive(Debug, Clone)]
pub struct Window {
    /// Window start (aligned to `resolution`).
    pub start: Timestamp,
    /// The window's width.
    pub resolution: Resolution,
    /// The merged state of everything written to the window.
    pub state: SeriesState,
}

/// A window together with its series, as multi-series scans yield it. Windows of the same
/// series share one `Arc`.
#[derive(Debug, Clone)]
pub struct SeriesWindow {
    /// The series.
    pub series: Arc<SeriesKey>,
    /// The window.
    pub window: Window,
}

/// Which series a multi-series scan covers: a key-prefix of the model-first layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeriesPrefix {
    /// Every series of a model.
    Model(String),
    /// Every series of one model version.
    Version {
        /// Model id.
        model: String,
        /// Model version.
        version: String,
    },
    /// Every segment of one feature of a model version.
    Feature {
        /// Model id.
        model: String,
        /// Model version.
        version: String,
        /// The feature.
        feature: FeatureRef,
    },
    /// Every segment of the features from `first` to `last` (both included, in key order,
    /// which is [`FeatureRef`]'s order) of one model version: one scan instead of one per
    /// feature when a query reads many features.
    Features {
        /// Model id.
        model: String,
        /// Model version.
        version: String,
        /// First feature of the range.
        first: FeatureRef,
        /// Last feature of the range.
        last: FeatureRef,
    },
    /// Exactly one series.
    Series(SeriesKey),
}

impl SeriesPrefix {
    /// The encoded key prefix.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SeriesPrefix::Model(m) => model_prefix(m),
            SeriesPrefix::Version { model, version } => version_prefix(model, version),
            SeriesPrefix::Feature {
                model,
                version,
                feature,
            } => feature_prefix(model, version, feature),
            SeriesPrefix::Features { model, version, .. } => version_prefix(model, version),
            SeriesPrefix::Series(s) => series_prefix(s),
        }
    }

    /// The key range `[lower, upper)` the scan covers (`upper` `None`: to the end).
    pub fn bounds(&self) -> (Vec<u8>, Option<Vec<u8>>) {
        match self {
            SeriesPrefix::Features {
                model,
                version,
                first,
                last,
            } => (
                feature_prefix(model, version, first),
                prefix_successor(&feature_prefix(model, version, last)),
            ),
            other => {
                let p = other.encode();
                let upper = prefix_successor(&p);
                (p, upper)
            }
        }
    }

    /// Whether `series` lies under this prefix.
    pub fn matches(&self, series: &SeriesKey) -> bool {
        match self {
            SeriesPrefix::Model(m) => &series.model == m,
            SeriesPrefix::Version { model, version } => {
                &series.model == model && &series.version == version
            }
            SeriesPrefix::Feature {
                model,
                version,
                feature,
            } => &series.model == model && &series.version == version && &series.feature == feature,
            SeriesPrefix::Features {
                model,
                version,
                first,
                last,
            } => {
                &series.model == model
                    && &series.version == version
                    && (first..=last).contains(&&series.feature)
            }
            SeriesPrefix::Series(s) => s == series,
        }
    }
}

/// Read access to window sketches; what `query` depends on (see the module docs for the
/// contract every implementation keeps).
pub trait SeriesReader {
    /// Windows of one series at `resolution` with start in `[from, to)`, ascending by start.
    fn windows(
        &self,
        series: &SeriesKey,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<WindowIter<'_>>;

    /// Windows of every series under `prefix` at `resolution` with start in `[from, to)`,
    /// ordered by series, then start. Series without windows in the range cost one seek each;
    /// windows outside the range are skipped by seeking, not read.
    fn scan(
        &self,
        prefix: &SeriesPrefix,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<ScanIter<'_>>;

    /// Every series of `model` (of one `version`, when given) that holds at least one window
    /// within retention at any resolution, in `SeriesKey` order, without duplicates.
    fn series(&self, model: &str, version: Option<&str>) -> Result<Vec<SeriesKey>>;

    /// The versions of `model` that hold windows at any resolution, sorted, without
    /// duplicates. Unlike [`SeriesReader::series`] this costs a few seeks per version, not one
    /// per series; a version whose windows all passed retention may still be listed until
    /// compaction removes them.
    fn versions(&self, model: &str) -> Result<Vec<String>> {
        let mut v: Vec<String> = self
            .series(model, None)?
            .into_iter()
            .map(|s| s.version)
            .collect();
        v.dedup();
        Ok(v)
    }

    /// Windows of `resolution` ending at or before the returned instant have been merged into
    /// the next coarser resolution; `None` when nothing was downsampled.
    fn downsampled_before(&self, resolution: Resolution) -> Option<Timestamp>;

    /// Daily ([`Resolution::D1`]) windows starting at or after the returned instant are
    /// complete rollups of their day's finer windows (they hold the same data again, so a
    /// reader uses either a day's rollup or its finer windows, never both); `None` when the
    /// reader keeps no rollups.
    fn daily_rollups_from(&self) -> Option<Timestamp> {
        None
    }

    /// Daily windows ending at or before the returned instant hold all of their finer
    /// windows; later days are still being filled behind the write path (see
    /// [`crate::Store::roll_up`]), so a reader reads their finer windows. Meaningful only
    /// with [`SeriesReader::daily_rollups_from`]; the default says no day is complete.
    fn daily_rollups_until(&self) -> Timestamp {
        Timestamp(i64::MIN)
    }

    /// Like [`SeriesReader::windows`], falling back to the coarser resolution where the range
    /// was downsampled: returns the coarser windows with start in
    /// `[coarser.window_start(from), min(to, downsampled_before))` and the `resolution`
    /// windows with start in `[from, to)`, sorted by (start, resolution).
    ///
    /// Every datum is in exactly one window, so merging all returned states never double
    /// counts; but a coarse window at the start of the range may begin before `from` (the time
    /// resolution downsampling gives up). The default implementation reads the two resolutions
    /// with two calls, which is right for readers whose data does not move; [`Store`] reads
    /// both from one snapshot.
    fn windows_resolved(
        &self,
        series: &SeriesKey,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Window>> {
        let mut out = Vec::new();
        if let (Some(coarse), Some(boundary)) =
            (resolution.coarser(), self.downsampled_before(resolution))
        {
            let c_from = coarse.window_start(from);
            let c_to = to.min(boundary);
            if c_from < c_to {
                for w in self.windows(series, coarse, c_from, c_to)? {
                    out.push(w?);
                }
            }
        }
        for w in self.windows(series, resolution, from, to)? {
            out.push(w?);
        }
        out.sort_by_key(|w| (w.start, w.resolution));
        Ok(out)
    }
}

type RawIter<'a> = DBRawIteratorWithThreadMode<'a, DB>;

enum WindowSource<'a> {
    Db {
        it: RawIter<'a>,
        /// Whether the iterator already points at the next candidate (right after a seek).
        positioned: bool,
        counters: &'a Counters,
    },
    Owned(std::vec::IntoIter<Window>),
}

/// Windows of one series in start order; yields `Err` only for I/O or key-layout failures.
pub struct WindowIter<'a> {
    source: WindowSource<'a>,
    resolution: Resolution,
    corrupt: u64,
    done: bool,
}

impl std::fmt::Debug for WindowIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowIter")
            .field("resolution", &self.resolution)
            .field("corrupt", &self.corrupt)
            .finish_non_exhaustive()
    }
}

impl WindowIter<'_> {
    /// An iterator over windows already in memory, for test doubles of [`SeriesReader`].
    /// The caller keeps the contract (order, range).
    pub fn from_windows(resolution: Resolution, windows: Vec<Window>) -> WindowIter<'static> {
        WindowIter {
            source: WindowSource::Owned(windows.into_iter()),
            resolution,
            corrupt: 0,
            done: false,
        }
    }

    /// Values skipped so far because they failed their checksum or did not decode.
    pub fn corrupt(&self) -> u64 {
        self.corrupt
    }
}

impl Iterator for WindowIter<'_> {
    type Item = Result<Window>;

    fn next(&mut self) -> Option<Result<Window>> {
        if self.done {
            return None;
        }
        let (it, positioned, counters) = match &mut self.source {
            WindowSource::Owned(v) => return v.next().map(Ok),
            WindowSource::Db {
                it,
                positioned,
                counters,
            } => (it, positioned, *counters),
        };
        loop {
            if !*positioned {
                it.next();
            }
            *positioned = false;
            let Some((key, value)) = it.item() else {
                self.done = true;
                return it.status().err().map(|e| Err(Error::rocks("iterate")(e)));
            };
            if value.is_empty() {
                continue;
            }
            let Some((_, _, start)) = split_window_key(key) else {
                return Some(Err(Error::MalformedKey {
                    family: window_cf(self.resolution),
                    offset: 0,
                    detail: "window key too short",
                }));
            };
            match SeriesState::decode(value) {
                Ok(state) => {
                    return Some(Ok(Window {
                        start,
                        resolution: self.resolution,
                        state,
                    }));
                }
                Err(_) => {
                    self.corrupt += 1;
                    counters.corrupt_values.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

enum ScanSource<'a> {
    Db {
        it: RawIter<'a>,
        positioned: bool,
        counters: &'a Counters,
        lower: Timestamp,
        to: Timestamp,
        current: Option<(Vec<u8>, Arc<SeriesKey>)>,
    },
    Owned(std::vec::IntoIter<SeriesWindow>),
}

/// Windows of many series, ordered by series then start; see [`SeriesReader::scan`].
pub struct ScanIter<'a> {
    source: ScanSource<'a>,
    resolution: Resolution,
    corrupt: u64,
    done: bool,
    /// Whether numeric and score states keep their KLL sketch ([`ScanIter::without_sketches`]).
    sketches: bool,
}

impl std::fmt::Debug for ScanIter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanIter")
            .field("resolution", &self.resolution)
            .field("corrupt", &self.corrupt)
            .finish_non_exhaustive()
    }
}

impl ScanIter<'_> {
    /// An iterator over windows already in memory, for test doubles of [`SeriesReader`].
    pub fn from_windows(resolution: Resolution, windows: Vec<SeriesWindow>) -> ScanIter<'static> {
        ScanIter {
            source: ScanSource::Owned(windows.into_iter()),
            resolution,
            corrupt: 0,
            done: false,
            sketches: true,
        }
    }

    /// Values skipped so far because they failed their checksum or did not decode.
    pub fn corrupt(&self) -> u64 {
        self.corrupt
    }

    /// The same scan for a reader that merges without KLL sketches: every value is still
    /// checked whole, but numeric and score states come back with their sketch dropped
    /// ([`SeriesState::decode_without_sketch`]) rather than carrying a copy of its image.
    pub fn without_sketches(mut self) -> Self {
        self.sketches = false;
        self
    }
}

impl Iterator for ScanIter<'_> {
    type Item = Result<SeriesWindow>;

    fn next(&mut self) -> Option<Result<SeriesWindow>> {
        if self.done {
            return None;
        }
        let res = self.resolution;
        let (it, positioned, counters, lower, to, current) = match &mut self.source {
            ScanSource::Owned(v) => {
                let sketches = self.sketches;
                return v.next().map(|mut w| {
                    if !sketches {
                        w.window.state.forget_sketch();
                    }
                    Ok(w)
                });
            }
            ScanSource::Db {
                it,
                positioned,
                counters,
                lower,
                to,
                current,
            } => (it, positioned, *counters, *lower, *to, current),
        };
        loop {
            if !*positioned {
                it.next();
            }
            *positioned = false;
            let Some((key, value)) = it.item() else {
                self.done = true;
                return it.status().err().map(|e| Err(Error::rocks("iterate")(e)));
            };
            let Some((part, _, start)) = split_window_key(key) else {
                return Some(Err(Error::MalformedKey {
                    family: window_cf(res),
                    offset: 0,
                    detail: "window key too short",
                }));
            };
            let series = match current {
                Some((p, s)) if p.as_slice() == part => Arc::clone(s),
                _ => match decode_series(part) {
                    Ok(s) => {
                        let s = Arc::new(s);
                        *current = Some((part.to_vec(), Arc::clone(&s)));
                        s
                    }
                    Err(e) => {
                        // Skip the undecodable series and report it once.
                        let skip = series_skip_key(part);
                        it.seek(skip);
                        *positioned = true;
                        return Some(Err(e));
                    }
                },
            };
            if start < lower {
                let k = window_key_from_prefix(part, res, lower);
                it.seek(k);
                *positioned = true;
                continue;
            }
            if start >= to {
                let k = series_skip_key(part);
                it.seek(k);
                *positioned = true;
                continue;
            }
            if value.is_empty() {
                continue;
            }
            let decoded = if self.sketches {
                SeriesState::decode(value)
            } else {
                SeriesState::decode_without_sketch(value)
            };
            match decoded {
                Ok(state) => {
                    return Some(Ok(SeriesWindow {
                        series,
                        window: Window {
                            start,
                            resolution: res,
                            state,
                        },
                    }));
                }
                Err(_) => {
                    self.corrupt += 1;
                    counters.corrupt_values.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

type Snapshot<'a> = SnapshotWithThreadMode<'a, DB>;

impl Store {
    fn raw_iter<'s>(
        &'s self,
        snapshot: Option<&'s Snapshot<'s>>,
        res: Resolution,
        lower: Vec<u8>,
        upper: Option<Vec<u8>>,
    ) -> Result<RawIter<'s>> {
        let cf = self.cf(window_cf(res))?;
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(lower.clone());
        if let Some(u) = upper {
            ro.set_iterate_upper_bound(u);
        }
        let mut it = match snapshot {
            Some(snap) => snap.raw_iterator_cf_opt(cf, ro),
            None => self.db.raw_iterator_cf_opt(cf, ro),
        };
        it.seek(lower);
        Ok(it)
    }

    fn windows_in<'s>(
        &'s self,
        snapshot: Option<&'s Snapshot<'s>>,
        series: &SeriesKey,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<WindowIter<'s>> {
        let from = self.live_from(resolution, from);
        if from >= to {
            return Ok(WindowIter::from_windows(resolution, Vec::new()));
        }
        let prefix = series_prefix(series);
        let lower = window_key_from_prefix(&prefix, resolution, from);
        let upper = window_key_from_prefix(&prefix, resolution, to);
        let it = self.raw_iter(snapshot, resolution, lower, Some(upper))?;
        Ok(WindowIter {
            source: WindowSource::Db {
                it,
                positioned: true,
                counters: &self.counters,
            },
            resolution,
            corrupt: 0,
            done: false,
        })
    }

    /// The first start a read may return at `res`: `from`, raised past retention.
    fn live_from(&self, res: Resolution, from: Timestamp) -> Timestamp {
        from.max(first_live_start(res, self.retention_cutoff()))
    }
}

impl SeriesReader for Store {
    fn windows(
        &self,
        series: &SeriesKey,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<WindowIter<'_>> {
        self.windows_in(None, series, resolution, from, to)
    }

    fn scan(
        &self,
        prefix: &SeriesPrefix,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<ScanIter<'_>> {
        let lower = self.live_from(resolution, from);
        if lower >= to {
            return Ok(ScanIter::from_windows(resolution, Vec::new()));
        }
        let (p, upper) = prefix.bounds();
        let it = self.raw_iter(None, resolution, p, upper)?;
        Ok(ScanIter {
            source: ScanSource::Db {
                it,
                positioned: true,
                counters: &self.counters,
                lower,
                to,
                current: None,
            },
            resolution,
            corrupt: 0,
            done: false,
            sketches: true,
        })
    }

    fn series(&self, model: &str, version: Option<&str>) -> Result<Vec<SeriesKey>> {
        let prefix = match version {
            Some(v) => version_prefix(model, v),
            None => model_prefix(model),
        };
        let cutoff = self.retention_cutoff();
        let mut found = std::collections::BTreeSet::new();
        for res in Resolution::ALL {
            let live = first_live_start(res, cutoff);
            let mut it = self.raw_iter(None, res, prefix.clone(), prefix_successor(&prefix))?;
            while let Some(key) = it.key() {
                let Some((part, _, start)) = split_window_key(key) else {
                    it.next();
                    continue;
                };
                let part = part.to_vec();
                if is_expired(res, start, cutoff) {
                    // Jump to the series' first live window, if it has one.
                    it.seek(window_key_from_prefix(&part, res, live));
                    match it.key().and_then(split_window_key) {
                        Some((p, _, _)) if p == part.as_slice() => {}
                        _ => continue,
                    }
                }
                found.insert(decode_series(&part)?);
                it.seek(series_skip_key(&part));
            }
            it.status().map_err(Error::rocks("iterate"))?;
        }
        Ok(found.into_iter().collect())
    }

    fn versions(&self, model: &str) -> Result<Vec<String>> {
        let prefix = model_prefix(model);
        let mut found = std::collections::BTreeSet::new();
        for res in Resolution::ALL {
            let mut it = self.raw_iter(None, res, prefix.clone(), prefix_successor(&prefix))?;
            while let Some(key) = it.key() {
                let Some((part, _, _)) = split_window_key(key) else {
                    it.next();
                    continue;
                };
                let version = decode_series(part)?.version;
                // Jump past every key of this version.
                let next = prefix_successor(&version_prefix(model, &version));
                found.insert(version);
                match next {
                    Some(k) => it.seek(k),
                    None => break,
                }
            }
            it.status().map_err(Error::rocks("iterate"))?;
        }
        Ok(found.into_iter().collect())
    }

    fn windows_resolved(
        &self,
        series: &SeriesKey,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Window>> {
        // One snapshot for both resolutions: a chunk moved by a concurrent downsampling run is
        // either still in the fine windows or already in the coarse ones, never both or neither.
        // The boundary is read after the snapshot: it is published before any move or redirected
        // write below it, so it covers every coarse window the snapshot can hold for this range.
        let snapshot = self.db.snapshot();
        let boundary = self.downsampled_before(resolution);
        let mut out = Vec::new();
        if let (Some(coarse), Some(boundary)) = (resolution.coarser(), boundary) {
            let c_from = coarse.window_start(from);
            let c_to = to.min(boundary);
            if c_from < c_to {
                for w in self.windows_in(Some(&snapshot), series, coarse, c_from, c_to)? {
                    out.push(w?);
                }
            }
        }
        for w in self.windows_in(Some(&snapshot), series, resolution, from, to)? {
            out.push(w?);
        }
        out.sort_by_key(|w| (w.start, w.resolution));
        Ok(out)
    }

    fn daily_rollups_from(&self) -> Option<Timestamp> {
        Store::daily_rollups_from(self)
    }

    fn daily_rollups_until(&self) -> Timestamp {
        Store::daily_rollups_until(self).unwrap_or(Timestamp(i64::MIN))
    }

    fn downsampled_before(&self, resolution: Resolution) -> Option<Timestamp> {
        match resolution {
            Resolution::M15 => {
                let w = self.downsampled_before.load(Ordering::SeqCst);
                (w != i64::MIN).then_some(Timestamp(w))
            }
            Resolution::H1 | Resolution::D1 => None,
        }
    }
}
