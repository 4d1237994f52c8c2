//! Windows folded in memory, for reports straight from files with no server.
//!
//! [`MemoryFold`] folds engine batches exactly as the server's ingest does ([`plan_batch`] then
//! [`fold_planned`] against the reference profile's bins), joins inline labels the way the
//! server joins arriving ones, and merges the deltas per (series, window) in a map.
//! [`MemoryReader`] serves that map through [`SeriesReader`], so DriftQL's operators, the drift
//! summary and `explain` run on it unchanged.

use std::collections::BTreeMap;
use std::sync::Arc;

use driftdb_engine::ingest::{
    FoldOutput, InferenceBatch, LabelRow, PendingPrediction, RowPlan, SegmentRegistry, TimeBounds,
    fold_planned, join_delta, plan_batch,
};
use driftdb_engine::model::{ModelDef, Task};
use driftdb_engine::reference::ReferenceProfile;
use driftdb_engine::series::{FeatureRef, SeriesKey};
use driftdb_engine::sketch::{NumericState, PerformanceState, ScoreState, SeriesState};
use driftdb_engine::time::{Resolution, Timestamp};
use driftdb_storage::read::{
    ScanIter, SeriesPrefix, SeriesReader, SeriesWindow, Window, WindowIter,
};

/// Windows by series, then start.
type WindowMap = BTreeMap<SeriesKey, BTreeMap<i64, SeriesState>>;

/// Counts of one [`MemoryFold::add`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldCounts {
    /// Rows folded.
    pub accepted: u64,
    /// Rows rejected.
    pub rejected: u64,
    /// Inline labels joined to their row.
    pub labels_joined: u64,
    /// Inline labels that could not join (a binary label not 0/1, no score).
    pub labels_rejected: u64,
}

/// The row pass of a [`MemoryFold`] ([`plan_batch`]: which rows are accepted and which
/// windows and segments each one updates), apart from the fold so that it can run on another
/// thread, a batch ahead of the column folds ([`MemoryFold::add_planned`]).
#[derive(Debug)]
pub struct MemoryPlanner {
    def: ModelDef,
    resolution: Resolution,
    segments: SegmentRegistry,
}

impl MemoryPlanner {
    /// The row pass of `batch`; `labels` as for [`MemoryFold::add`]. Every event time is
    /// accepted (a file is history, not live traffic).
    pub fn plan(&mut self, batch: &InferenceBatch, labels: &[Option<f64>]) -> RowPlan {
        let bounds = TimeBounds {
            oldest: Timestamp(i64::MIN),
            newest: Timestamp(i64::MAX),
        };
        let mut plan = plan_batch(
            &self.def,
            self.resolution,
            batch,
            &mut self.segments,
            bounds,
            &|_, _| false,
        );
        if labels.iter().all(Option::is_none) {
            // Nothing will join: no pending record is worth building.
            plan.without_pending();
        }
        plan
    }
}

/// The column folds of a [`MemoryFold`] ([`fold_planned`] against the reference profile's
/// bins), apart from its windows so that a batch can be folded while the previous one's deltas
/// are merged ([`MemoryFold::absorb`]).
#[derive(Debug, Clone)]
pub struct MemoryFolder {
    def: ModelDef,
    references: BTreeMap<String, Arc<ReferenceProfile>>,
    threads: usize,
}

/// A batch folded by [`MemoryFolder::fold`], for [`MemoryFold::absorb`].
#[derive(Debug)]
pub struct Folded {
    out: FoldOutput,
    /// The accepted rows (the pending records follow them, one each).
    accepted: Vec<usize>,
}

impl MemoryFolder {
    /// Folds the columns of `batch` as `plan` (its row pass) says, on the fold's threads.
    pub fn fold(&self, batch: &InferenceBatch, plan: RowPlan) -> Folded {
        let accepted = plan.accepted_rows().to_vec();
        let out = fold_planned(&self.def, batch, plan, &self.references, self.threads);
        Folded { out, accepted }
    }
}

/// Inference rows of one model folded into windows in memory.
#[derive(Debug)]
pub struct MemoryFold {
    def: ModelDef,
    resolution: Resolution,
    folder: MemoryFolder,
    planner: MemoryPlanner,
    windows: WindowMap,
    counts: FoldCounts,
}

impl MemoryFold {
    /// A fold for `def`, binning against `reference` (its version's profile) when given.
    pub fn new(
        def: ModelDef,
        reference: Option<ReferenceProfile>,
    ) -> driftdb_engine::Result<MemoryFold> {
        let resolution = def.validate()?;
        let references = reference
            .map(|r| (r.version.clone(), Arc::new(r)))
            .into_iter()
            .collect();
        let planner = MemoryPlanner {
            def: def.clone(),
            resolution,
            segments: SegmentRegistry::new(def.segment_cap as usize),
        };
        let folder = MemoryFolder {
            def: def.clone(),
            references,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        Ok(MemoryFold {
            def,
            resolution,
            folder,
            planner,
            windows: BTreeMap::new(),
            counts: FoldCounts::default(),
        })
    }

    /// Folds one batch; `labels[i]` is row i's inline label (empty when the file has none).
    /// Every event time is accepted (a file is history, not live traffic). Returns the batch's
    /// rejected rows: (row index in the batch, reason).
    pub fn add(
        &mut self,
        batch: &InferenceBatch,
        labels: &[Option<f64>],
    ) -> driftdb_engine::Result<Vec<(usize, String)>> {
        let plan = self.planner.plan(batch, labels);
        self.add_planned(batch, labels, plan)
    }

    /// A planner for this fold's model, to run the row pass on another thread and hand its
    /// plans to [`MemoryFold::add_planned`]. It keeps its own segment registry (which segment
    /// values are admitted under the model's cap), so a fold is fed either through
    /// [`MemoryFold::add`] or through one planner, not both.
    pub fn planner(&self) -> MemoryPlanner {
        MemoryPlanner {
            def: self.def.clone(),
            resolution: self.resolution,
            segments: SegmentRegistry::new(self.def.segment_cap as usize),
        }
    }

    /// [`MemoryFold::add`] of a batch whose row pass was made by [`MemoryPlanner::plan`] (of
    /// this batch and these labels).
    pub fn add_planned(
        &mut self,
        batch: &InferenceBatch,
        labels: &[Option<f64>],
        plan: RowPlan,
    ) -> driftdb_engine::Result<Vec<(usize, String)>> {
        let folded = self.folder.fold(batch, plan);
        self.absorb(folded, labels)
    }

    /// The column folds of this fold, to run on another thread and hand their output to
    /// [`MemoryFold::absorb`].
    pub fn folder(&self) -> MemoryFolder {
        self.folder.clone()
    }

    /// Merges a folded batch into the windows and joins its inline labels (`labels` as for
    /// [`MemoryFold::add`], of the batch that was folded); returns the batch's rejected rows as
    /// [`MemoryFold::add`] does.
    pub fn absorb(
        &mut self,
        folded: Folded,
        labels: &[Option<f64>],
    ) -> driftdb_engine::Result<Vec<(usize, String)>> {
        let Folded { out, accepted } = folded;
        for (key, start, state) in out.deltas {
            merge_into(&mut self.windows, key, start.0, &state)?;
        }
        self.counts.accepted += out.accepted as u64;
        self.counts.rejected += out.rejected.len() as u64;
        let rejected = out
            .rejected
            .into_iter()
            .map(|r| (r.row, r.reason))
            .collect();
        if !labels.is_empty() && out.pending.len() == accepted.len() {
            self.join_inline(&out.pending, &accepted, labels)?;
        }
        Ok(rejected)
    }

    /// Joins each accepted row's inline label to its pending record, as the server joins a
    /// label that arrives for it. The batch's joins are gathered per (version, window, segment
    /// list) and merged into the windows once per group: `$score`'s performance and `$label`'s
    /// values for every segment of the list.
    fn join_inline(
        &mut self,
        pending: &[(String, PendingPrediction)],
        accepted: &[usize],
        labels: &[Option<f64>],
    ) -> driftdb_engine::Result<()> {
        struct Joined<'a> {
            pending: &'a PendingPrediction,
            performance: PerformanceState,
            labels: Vec<f64>,
        }
        // Keyed by the segment list's address: a batch's rows with the same segments share it.
        let mut groups: Vec<Joined<'_>> = Vec::new();
        let mut index: driftdb_engine::FastMap<(usize, i64, &str), usize> =
            driftdb_engine::FastMap::default();
        for ((_, p), row) in pending.iter().zip(accepted) {
            let Some(Some(y)) = labels.get(*row) else {
                continue;
            };
            let label = LabelRow {
                label: Some(*y),
                ..Default::default()
            };
            let Ok(perf) = join_delta(self.def.task, p, &label) else {
                self.counts.labels_rejected += 1;
                continue;
            };
            let key = (p.segments.as_ptr() as usize, p.window.0, p.version.as_str());
            let at = *index.entry(key).or_insert_with(|| {
                groups.push(Joined {
                    pending: p,
                    performance: PerformanceState::default(),
                    labels: Vec::new(),
                });
                groups.len() - 1
            });
            let g = &mut groups[at];
            g.performance.merge(&perf);
            g.labels.push(*y);
            self.counts.labels_joined += 1;
        }
        for mut g in groups {
            let p = g.pending;
            let score = SeriesState::Score(ScoreState {
                performance: g.performance,
                ..Default::default()
            });
            let label_state = (self.def.task != Task::Ranking).then(|| {
                g.labels.sort_unstable_by(f64::total_cmp);
                SeriesState::Numeric(NumericState::from_sorted(&g.labels, 0, 0, None))
            });
            for seg in p.segments.iter() {
                let key = |feature| SeriesKey {
                    model: self.def.id.clone(),
                    version: p.version.clone(),
                    feature,
                    segment: seg.clone(),
                };
                merge_into(
                    &mut self.windows,
                    key(FeatureRef::Score),
                    p.window.0,
                    &score,
                )?;
                if let Some(l) = &label_state {
                    merge_into(&mut self.windows, key(FeatureRef::Label), p.window.0, l)?;
                }
            }
        }
        Ok(())
    }

    /// What was folded so far.
    pub fn counts(&self) -> &FoldCounts {
        &self.counts
    }

    /// The model's window resolution.
    pub fn resolution(&self) -> Resolution {
        self.resolution
    }

    /// The earliest window start and the latest window end folded; `None` when nothing was.
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        for w in self.windows.values() {
            if let (Some((a, _)), Some((b, _))) = (w.first_key_value(), w.last_key_value()) {
                lo = lo.min(*a);
                hi = hi.max(*b);
            }
        }
        (lo <= hi).then(|| {
            (
                Timestamp(lo),
                Timestamp(hi.saturating_add(self.resolution.width_ms())),
            )
        })
    }

    /// The folded windows as a reader.
    pub fn into_reader(self) -> MemoryReader {
        MemoryReader {
            resolution: self.resolution,
            windows: self.windows,
        }
    }
}

fn merge_into(
    windows: &mut WindowMap,
    key: SeriesKey,
    start: i64,
    state: &SeriesState,
) -> driftdb_engine::Result<()> {
    let series = windows.entry(key).or_default();
    match series.get_mut(&start) {
        Some(s) => s.merge(state),
        None => {
            series.insert(start, state.clone());
            Ok(())
        }
    }
}

/// Windows of one resolution held in memory, read through [`SeriesReader`].
#[derive(Debug)]
pub struct MemoryReader {
    resolution: Resolution,
    windows: WindowMap,
}

impl MemoryReader {
    /// Windows in a map: series → window start → state, all at `resolution`.
    pub fn new(
        resolution: Resolution,
        windows: BTreeMap<SeriesKey, BTreeMap<i64, SeriesState>>,
    ) -> MemoryReader {
        MemoryReader {
            resolution,
            windows,
        }
    }

    fn range(
        &self,
        states: &BTreeMap<i64, SeriesState>,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<Window> {
        if resolution != self.resolution || from >= to {
            return Vec::new();
        }
        states
            .range(from.0..to.0)
            .map(|(s, st)| Window {
                start: Timestamp(*s),
                resolution,
                state: st.clone(),
            })
            .collect()
    }
}

impl SeriesReader for MemoryReader {
    fn windows(
        &self,
        series: &SeriesKey,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> driftdb_storage::Result<WindowIter<'_>> {
        let ws = self
            .windows
            .get(series)
            .map(|m| self.range(m, resolution, from, to))
            .unwrap_or_default();
        Ok(WindowIter::from_windows(resolution, ws))
    }

    fn scan(
        &self,
        prefix: &SeriesPrefix,
        resolution: Resolution,
        from: Timestamp,
        to: Timestamp,
    ) -> driftdb_storage::Result<ScanIter<'_>> {
        let mut out = Vec::new();
        for (key, m) in &self.windows {
            if !prefix.matches(key) {
                continue;
            }
            let key = Arc::new(key.clone());
            for window in self.range(m, resolution, from, to) {
                out.push(SeriesWindow {
                    series: Arc::clone(&key),
                    window,
                });
            }
        }
        Ok(ScanIter::from_windows(resolution, out))
    }

    fn series(
        &self,
        model: &str,
        version: Option<&str>,
    ) -> driftdb_storage::Result<Vec<SeriesKey>> {
        Ok(self
            .windows
            .keys()
            .filter(|k| k.model == model && version.is_none_or(|v| k.version == v))
            .cloned()
            .collect())
    }

    fn downsampled_before(&self, _: Resolution) -> Option<Timestamp> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use driftdb_engine::ingest::{Column, InferenceRow};
    use driftdb_engine::model::FeatureKind;

    fn def() -> ModelDef {
        ModelDef {
            id: "m".into(),
            task: Task::Binary,
            window: "15m".into(),
            grace: "1m".into(),
            max_label_delay: "1d".into(),
            segments: vec!["region".into()],
            segment_cap: 8,
            features: [("x".to_string(), FeatureKind::Numeric)]
                .into_iter()
                .collect(),
            sampling: 1.0,
            team: None,
        }
    }

    fn batch(ids: std::ops::Range<usize>, ts: i64) -> InferenceBatch {
        let n = ids.len();
        InferenceBatch {
            model_id: "m".into(),
            feature_names: vec!["x".into()],
            segment_keys: vec!["region".into()],
            rows: ids
                .map(|i| InferenceRow {
                    request_id: format!("r{i}"),
                    ts: Timestamp(ts + i as i64),
                    version: "v1".into(),
                    segments: vec![Some(if i % 2 == 0 { "eu" } else { "us" }.into())],
                    score: Some((i % 10) as f64 / 10.0),
                    ..Default::default()
                })
                .collect(),
            columns: vec![Column::Numbers((0..n).map(|i| Some(i as f64)).collect())],
            attributions: Vec::new(),
        }
    }

    #[test]
    fn batches_fold_into_windows_read_back_by_range_and_prefix() {
        let mut fold = MemoryFold::new(def(), None).unwrap();
        // Two batches into window 0, one into window 2 (15-minute windows).
        assert!(fold.add(&batch(0..10, 0), &[]).unwrap().is_empty());
        assert!(fold.add(&batch(10..20, 1_000), &[]).unwrap().is_empty());
        let labels: Vec<Option<f64>> = (0..10).map(|i| Some(f64::from(i % 2 == 0))).collect();
        assert!(
            fold.add(&batch(20..30, 1_800_000), &labels)
                .unwrap()
                .is_empty()
        );
        assert_eq!(fold.counts().accepted, 30);
        assert_eq!(fold.counts().labels_joined, 10);
        // A binary label that is neither 0 nor 1 does not join; a row without one is not
        // joined either.
        let mut other = MemoryFold::new(def(), None).unwrap();
        let odd: Vec<Option<f64>> = vec![Some(0.5), None, Some(1.0)];
        assert!(other.add(&batch(0..3, 0), &odd).unwrap().is_empty());
        assert_eq!(
            (other.counts().labels_joined, other.counts().labels_rejected),
            (1, 1)
        );
        assert_eq!(fold.span(), Some((Timestamp(0), Timestamp(2_700_000))));
        let r = fold.into_reader();
        let key = |feature, segment| SeriesKey {
            model: "m".into(),
            version: "v1".into(),
            feature,
            segment,
        };
        let x_all = key(
            FeatureRef::Named("x".into()),
            driftdb_engine::series::Segment::All,
        );
        let ws: Vec<Window> = r
            .windows(&x_all, Resolution::M15, Timestamp(0), Timestamp(i64::MAX))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(ws.len(), 2);
        assert_eq!(
            (ws[0].start, ws[1].start),
            (Timestamp(0), Timestamp(1_800_000))
        );
        match &ws[0].state {
            SeriesState::Numeric(n) => assert_eq!(n.count(), 20),
            other => panic!("{other:?}"),
        }
        // The range is [from, to) on window starts; another resolution holds nothing.
        let n = |from, to, res| {
            r.windows(&x_all, res, Timestamp(from), Timestamp(to))
                .unwrap()
                .count()
        };
        assert_eq!(n(1, 1_800_000, Resolution::M15), 0);
        assert_eq!(n(0, 1_800_001, Resolution::M15), 2);
        assert_eq!(n(0, i64::MAX, Resolution::H1), 0);
        // Labels joined into the score series of the window and of each row's segment.
        let score = r
            .windows(
                &key(FeatureRef::Score, driftdb_engine::series::Segment::All),
                Resolution::M15,
                Timestamp(1_800_000),
                Timestamp(i64::MAX),
            )
            .unwrap()
            .map(Result::unwrap)
            .next()
            .unwrap();
        match score.state {
            SeriesState::Score(s) => {
                assert_eq!(s.predictions, 10);
                assert_eq!(s.performance.n_labeled(), 10);
            }
            other => panic!("{other:?}"),
        }
        // And into each row's segment: the even rows (eu) carry label 1, the odd ones (us) 0.
        for (region, sum) in [("eu", 5.0), ("us", 0.0)] {
            let seg = driftdb_engine::series::Segment::Value {
                key: "region".into(),
                value: region.into(),
            };
            let one = |feature| {
                let w: Vec<Window> = r
                    .windows(
                        &key(feature, seg.clone()),
                        Resolution::M15,
                        Timestamp(1_800_000),
                        Timestamp(i64::MAX),
                    )
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(w.len(), 1, "{region}");
                w.into_iter().next().unwrap().state
            };
            match (one(FeatureRef::Score), one(FeatureRef::Label)) {
                (SeriesState::Score(s), SeriesState::Numeric(l)) => {
                    assert_eq!(s.performance.n_labeled(), 5, "{region}");
                    assert_eq!((l.count(), l.sum()), (5, sum), "{region}");
                }
                other => panic!("{other:?}"),
            }
        }
        // A scan yields only the prefix's series, grouped by series, ascending by start.
        let scanned: Vec<SeriesWindow> = r
            .scan(
                &SeriesPrefix::Feature {
                    model: "m".into(),
                    version: "v1".into(),
                    feature: FeatureRef::Named("x".into()),
                },
                Resolution::M15,
                Timestamp(0),
                Timestamp(i64::MAX),
            )
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            scanned
                .iter()
                .all(|w| w.series.feature == FeatureRef::Named("x".into()))
        );
        assert_eq!(scanned.len(), 2 + 2 + 2, "all, eu and us: two windows each");
        assert!(
            scanned
                .windows(2)
                .all(|p| (&*p[0].series, p[0].window.start) < (&*p[1].series, p[1].window.start))
        );
        assert_eq!(
            r.series("m", Some("v1")).unwrap().len(),
            r.series("m", None).unwrap().len()
        );
        assert!(r.series("other", None).unwrap().is_empty());
    }
}
