//! What the readers produce: models as the readers see them, a converted chunk of a file (its
//! gRPC batches per model, the file lines of their rows, the rows the file itself rejected), and
//! the columnar batch helpers shared by every format: start a batch for a model, drop rejected
//! rows, split a batch so no message exceeds the gRPC limit.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use driftdb_engine::model::{FeatureKind, ModelDef};
use driftdb_proto::v1 as pb;

use super::values::TsUnit;

/// A model definition with its name lookups, as the readers use it.
#[derive(Debug)]
pub struct ModelInfo {
    /// The definition.
    pub def: ModelDef,
    /// Feature names in the batch's column order (the definition's order).
    pub features: Vec<(String, FeatureKind)>,
    /// Feature name → column.
    pub feature_index: HashMap<String, usize>,
    /// Segment key → column.
    pub segment_index: HashMap<String, usize>,
}

impl ModelInfo {
    /// The lookups of `def`.
    pub fn new(def: ModelDef) -> ModelInfo {
        let features: Vec<(String, FeatureKind)> =
            def.features.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let feature_index = features
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let segment_index = def
            .segments
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        ModelInfo {
            def,
            features,
            feature_index,
            segment_index,
        }
    }

    /// The feature names for an error message (at most 10, then how many more).
    pub fn feature_list(&self) -> String {
        let mut s: Vec<&str> = self
            .features
            .iter()
            .take(10)
            .map(|(k, _)| k.as_str())
            .collect();
        if self.features.len() > 10 {
            s.push("…");
        }
        s.join(", ")
    }
}

/// Where the readers find model definitions (the server, through the CLI's client; a fixed set
/// in tests). An error is the reason a row naming that model is rejected.
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// The model `id`.
    fn model(&self, id: &str) -> Result<Arc<ModelInfo>, String>;
}

/// A fixed set of models.
#[derive(Debug, Default)]
pub struct FixedCatalog(pub HashMap<String, Arc<ModelInfo>>);

impl FixedCatalog {
    /// A catalog of `defs`.
    pub fn of(defs: impl IntoIterator<Item = ModelDef>) -> FixedCatalog {
        FixedCatalog(
            defs.into_iter()
                .map(|d| (d.id.clone(), Arc::new(ModelInfo::new(d))))
                .collect(),
        )
    }
}

impl Catalog for FixedCatalog {
    fn model(&self, id: &str) -> Result<Arc<ModelInfo>, String> {
        self.0
            .get(id)
            .cloned()
            .ok_or_else(|| format!("unknown model {}", super::values::clip(id)))
    }
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Inference events.
    Inferences,
    /// Reference rows (inference rows with an inline `label`).
    Reference,
    /// Labels and outcomes.
    Labels,
}

/// Largest encoded gRPC message the readers produce: half the server's and client's 64 MiB
/// limit, so a batch never comes near it.
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// How the readers turn rows into batches.
#[derive(Debug)]
pub struct Ctx {
    /// What the file holds.
    pub kind: Kind,
    /// The unit of numeric timestamps.
    pub ts_unit: TsUnit,
    /// The model of rows without `model_id`.
    pub default_model: Option<String>,
    /// Why there is no default model, for rows without `model_id`.
    pub no_default_reason: String,
    /// Rows of any other model are rejected (reference uploads).
    pub only_model: Option<String>,
    /// Model definitions.
    pub catalog: Arc<dyn Catalog>,
    /// Rows per batch.
    pub batch_rows: usize,
    /// Largest encoded batch.
    pub max_bytes: usize,
    /// Columns (or top-level JSON keys) that are no field, segment or feature of their model.
    pub unknown_columns: Mutex<BTreeSet<String>>,
}

impl Ctx {
    /// A context with defaults: no default model, 10,000 rows per batch.
    pub fn new(kind: Kind, catalog: Arc<dyn Catalog>) -> Ctx {
        Ctx {
            kind,
            ts_unit: TsUnit::Auto,
            default_model: None,
            no_default_reason: "no model_id (pass --model)".into(),
            only_model: None,
            catalog,
            batch_rows: 10_000,
            max_bytes: MAX_MESSAGE_BYTES,
            unknown_columns: Mutex::new(BTreeSet::new()),
        }
    }

    /// Notes a column that is no field, segment or feature (reported once, as a warning).
    pub fn unknown_column(&self, name: &str) {
        if let Ok(mut u) = self.unknown_columns.lock()
            && u.len() < 100
            && !u.contains(name)
        {
            u.insert(name.to_string());
        }
    }

    /// The model of a row naming `id` (or none): its definition, or why the row is rejected.
    pub fn model_of(&self, id: Option<&str>) -> Result<Arc<ModelInfo>, String> {
        let id = match id.filter(|s| !s.is_empty()) {
            Some(id) => id,
            None => match &self.default_model {
                Some(d) => d.as_str(),
                None => return Err(self.no_default_reason.clone()),
            },
        };
        if let Some(only) = &self.only_model
            && only != id
        {
            return Err(format!(
                "row is for model {}, the upload is for {}",
                super::values::clip(id),
                super::values::clip(only)
            ));
        }
        self.catalog.model(id)
    }
}

/// One message to send.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per batch of thousands of rows; boxing would buy nothing"
)]
pub enum Payload {
    /// Inference or reference rows.
    Rows(pb::InferenceBatch),
    /// Labels.
    Labels(pb::LabelBatch),
}

impl Payload {
    /// Rows or labels in the message.
    pub fn len(&self) -> usize {
        match self {
            Payload::Rows(b) => b.request_ids.len(),
            Payload::Labels(b) => b.labels.len(),
        }
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A batch for one model, with the file line (or row) of each of its rows.
#[derive(Debug)]
pub struct Outgoing {
    /// The model.
    pub model: String,
    /// The message.
    pub payload: Payload,
    /// The file line of each row, in order.
    pub lines: Vec<u64>,
}

/// One converted chunk of a file.
#[derive(Debug, Default)]
pub struct Converted {
    /// Order of the chunk in the file: (group, index in the group).
    pub key: (u64, u64),
    /// Whether it is its group's last chunk.
    pub last: bool,
    /// Records read (rows sent and rows rejected in the file).
    pub rows: u64,
    /// The batches to send.
    pub batches: Vec<Outgoing>,
    /// Rows rejected in the file: how many.
    pub rejected: u64,
    /// The first of them (at most [`KEEP_ERRORS`]): line and reason.
    pub errors: Vec<(u64, String)>,
}

/// Rejected rows kept with their reason per chunk.
pub const KEEP_ERRORS: usize = 100;

impl Converted {
    /// Counts a rejected row.
    pub fn reject(&mut self, line: u64, reason: String) {
        self.rows += 1;
        self.rejected += 1;
        if self.errors.len() < KEEP_ERRORS {
            self.errors.push((line, reason));
        }
    }
}

/// An empty inference batch for `m`, with its feature and segment columns.
pub fn new_batch(m: &ModelInfo, rows: usize) -> pb::InferenceBatch {
    pb::InferenceBatch {
        model_id: m.def.id.clone(),
        request_ids: Vec::with_capacity(rows),
        ts_ms: Vec::with_capacity(rows),
        model_versions: Vec::with_capacity(rows),
        segments: m
            .def
            .segments
            .iter()
            .map(|k| pb::SegmentColumn {
                key: k.clone(),
                values: Vec::with_capacity(rows),
            })
            .collect(),
        features: m
            .features
            .iter()
            .map(|(k, kind)| pb::FeatureColumn {
                name: k.clone(),
                numbers: if *kind == FeatureKind::Numeric {
                    Vec::with_capacity(rows)
                } else {
                    Vec::new()
                },
                categories: if *kind == FeatureKind::Categorical {
                    Vec::with_capacity(rows)
                } else {
                    Vec::new()
                },
                missing: Vec::new(),
                ..Default::default()
            })
            .collect(),
        scores: Vec::with_capacity(rows),
        latency_ms: Vec::with_capacity(rows),
        ..Default::default()
    }
}

/// Appends row `r`'s attributions, `(feature index, value)`: a feature's column is created at
/// its first attribution, with the rows before it missing, and every column gets one value per
/// row from then on (missing where the row has none). [`finish`] drops columns no row uses.
pub fn push_attributions(
    b: &mut pb::InferenceBatch,
    r: u32,
    attrs: &[(usize, f64)],
    m: &ModelInfo,
) {
    if attrs.is_empty() && b.attributions.is_empty() {
        return;
    }
    for (i, _) in attrs {
        let name = &m.features[*i].0;
        if !b.attributions.iter().any(|c| c.name == *name) {
            b.attributions.push(pb::FeatureColumn {
                name: name.clone(),
                numbers: vec![0.0; r as usize],
                missing: (0..r).collect(),
                ..Default::default()
            });
        }
    }
    for col in &mut b.attributions {
        match attrs.iter().find(|(i, _)| m.features[*i].0 == col.name) {
            Some((_, x)) => col.numbers.push(*x),
            None => {
                col.numbers.push(0.0);
                col.missing.push(r);
            }
        }
    }
}

/// Appends row `row`'s model version. While every row so far has the same version the column
/// holds it once (as a finished batch does), saving a string per row; the first different
/// version expands it to one entry per row.
#[inline]
pub fn push_version(versions: &mut Vec<String>, row: usize, v: &str) {
    if row == 0 {
        versions.clear();
        versions.push(v.to_string());
        return;
    }
    if versions.len() == 1 && versions[0] == v {
        return;
    }
    if versions.len() == 1 && row > 1 {
        let first = versions[0].clone();
        versions.resize(row, first);
    }
    versions.push(v.to_string());
}

/// Keeps the rows whose `keep` is true; every per-row column and missing list follows.
pub fn retain_rows(b: &mut pb::InferenceBatch, keep: &[bool]) {
    let n = b.request_ids.len();
    debug_assert_eq!(keep.len(), n);
    // New index of each kept row.
    let mut new_index = Vec::with_capacity(n);
    let mut k = 0u32;
    for &kp in keep {
        new_index.push(k);
        if kp {
            k += 1;
        }
    }
    fn filter<T>(v: &mut Vec<T>, keep: &[bool]) {
        if v.len() == keep.len() {
            let mut it = keep.iter();
            v.retain(|_| it.next().copied().unwrap_or(false));
        }
    }
    let remap = |m: &mut Vec<u32>| {
        m.retain(|&r| keep.get(r as usize).copied().unwrap_or(false));
        for r in m.iter_mut() {
            *r = new_index[*r as usize];
        }
    };
    filter(&mut b.request_ids, keep);
    filter(&mut b.ts_ms, keep);
    filter(&mut b.model_versions, keep);
    for s in &mut b.segments {
        filter(&mut s.values, keep);
    }
    for f in &mut b.features {
        filter(&mut f.numbers, keep);
        filter(&mut f.categories, keep);
        filter(&mut f.codes, keep);
        remap(&mut f.missing);
    }
    filter(&mut b.scores, keep);
    remap(&mut b.score_missing);
    filter(&mut b.latency_ms, keep);
    filter(&mut b.cost, keep);
    for a in &mut b.attributions {
        filter(&mut a.numbers, keep);
        remap(&mut a.missing);
    }
    filter(&mut b.items, keep);
    filter(&mut b.labels, keep);
    remap(&mut b.label_missing);
}

/// Collapses a single model version to one entry and drops optional columns no row uses.
pub fn finish(b: &mut pb::InferenceBatch) {
    if !b.model_versions.is_empty() && b.model_versions.windows(2).all(|w| w[0] == w[1]) {
        b.model_versions.truncate(1);
    }
    if b.items.iter().all(|l| l.items.is_empty()) {
        b.items.clear();
    }
    if b.latency_ms.iter().all(|l| l.is_nan()) {
        b.latency_ms.clear();
    }
    if b.cost.iter().all(|c| c.is_nan()) {
        b.cost.clear();
    }
    b.attributions.retain(|a| a.missing.len() < a.numbers.len());
}

/// Splits off the rows from `at` on into a new batch (`b` keeps the rows before `at`).
fn split_off(b: &mut pb::InferenceBatch, at: usize) -> pb::InferenceBatch {
    fn tail<T>(v: &mut Vec<T>, at: usize) -> Vec<T> {
        if v.len() > at {
            v.split_off(at)
        } else {
            Vec::new()
        }
    }
    fn tail_missing(m: &mut Vec<u32>, at: usize) -> Vec<u32> {
        let cut = m.partition_point(|&r| (r as usize) < at);
        m.split_off(cut)
            .into_iter()
            .map(|r| r - at as u32)
            .collect()
    }
    let n = b.request_ids.len();
    pb::InferenceBatch {
        model_id: b.model_id.clone(),
        producer_id: String::new(),
        sequence: 0,
        request_ids: tail(&mut b.request_ids, at),
        ts_ms: tail(&mut b.ts_ms, at),
        model_versions: if b.model_versions.len() == n {
            tail(&mut b.model_versions, at)
        } else {
            b.model_versions.clone()
        },
        segments: b
            .segments
            .iter_mut()
            .map(|s| pb::SegmentColumn {
                key: s.key.clone(),
                values: tail(&mut s.values, at),
            })
            .collect(),
        features: b
            .features
            .iter_mut()
            .map(|f| pb::FeatureColumn {
                name: f.name.clone(),
                numbers: tail(&mut f.numbers, at),
                categories: tail(&mut f.categories, at),
                missing: tail_missing(&mut f.missing, at),
                // Both parts keep the whole dictionary; the codes split with the rows.
                dictionary: f.dictionary.clone(),
                codes: tail(&mut f.codes, at),
            })
            .collect(),
        scores: tail(&mut b.scores, at),
        score_missing: tail_missing(&mut b.score_missing, at),
        latency_ms: tail(&mut b.latency_ms, at),
        items: tail(&mut b.items, at),
        labels: tail(&mut b.labels, at),
        label_missing: tail_missing(&mut b.label_missing, at),
        cost: tail(&mut b.cost, at),
        attributions: b
            .attributions
            .iter_mut()
            .map(|a| pb::FeatureColumn {
                name: a.name.clone(),
                numbers: tail(&mut a.numbers, at),
                missing: tail_missing(&mut a.missing, at),
                ..Default::default()
            })
            .collect(),
    }
}

/// Splits a finished batch (and its lines) so that no part has more than `max_rows` rows or
/// encodes to more than `max_bytes`; parts are in row order and each is [`finish`]ed.
pub fn split_batch(
    mut b: pb::InferenceBatch,
    mut lines: Vec<u64>,
    max_rows: usize,
    max_bytes: usize,
) -> Vec<(pb::InferenceBatch, Vec<u64>)> {
    let n = b.request_ids.len();
    if n == 0 {
        return Vec::new();
    }
    let bytes = prost::Message::encoded_len(&b);
    let by_bytes = bytes.div_ceil(max_bytes.max(1));
    let by_rows = n.div_ceil(max_rows.max(1));
    let parts = by_bytes.max(by_rows).clamp(1, n);
    if parts == 1 {
        finish(&mut b);
        return vec![(b, lines)];
    }
    let per = n.div_ceil(parts);
    let mut out = Vec::with_capacity(parts);
    let mut starts: Vec<usize> = (0..n).step_by(per).collect();
    starts.reverse();
    for at in starts {
        if at == 0 {
            break;
        }
        let mut part = split_off(&mut b, at);
        let part_lines = lines.split_off(at);
        finish(&mut part);
        out.push((part, part_lines));
    }
    finish(&mut b);
    out.push((b, lines));
    out.reverse();
    // A part can still be too large when rows differ much in size: halve it again.
    let mut checked = Vec::with_capacity(out.len());
    for (p, l) in out {
        if p.request_ids.len() > 1 && prost::Message::encoded_len(&p) > max_bytes {
            let half = p.request_ids.len().div_ceil(2);
            checked.extend(split_batch(p, l, half, max_bytes));
        } else {
            checked.push((p, l));
        }
    }
    checked
}

/// Splits a label batch by rows and bytes, as [`split_batch`] does.
pub fn split_labels(
    b: pb::LabelBatch,
    lines: Vec<u64>,
    max_rows: usize,
    max_bytes: usize,
) -> Vec<(pb::LabelBatch, Vec<u64>)> {
    let n = b.labels.len();
    if n == 0 {
        return Vec::new();
    }
    let bytes = prost::Message::encoded_len(&b);
    let parts = bytes
        .div_ceil(max_bytes.max(1))
        .max(n.div_ceil(max_rows.max(1)))
        .clamp(1, n);
    if parts == 1 {
        return vec![(b, lines)];
    }
    let per = n.div_ceil(parts);
    let model_id = b.model_id.clone();
    let mut out = Vec::with_capacity(parts);
    let mut labels = b.labels.into_iter();
    let mut lines = lines.into_iter();
    loop {
        let part: Vec<pb::Label> = labels.by_ref().take(per).collect();
        if part.is_empty() {
            break;
        }
        let l: Vec<u64> = lines.by_ref().take(part.len()).collect();
        out.push((
            pb::LabelBatch {
                model_id: model_id.clone(),
                labels: part,
                ..Default::default()
            },
            l,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn model() -> ModelInfo {
        let mut features = BTreeMap::new();
        features.insert("a".to_string(), FeatureKind::Numeric);
        features.insert("c".to_string(), FeatureKind::Categorical);
        ModelInfo::new(ModelDef {
            id: "m".into(),
            task: driftdb_engine::model::Task::Binary,
            window: "15m".into(),
            grace: "5m".into(),
            max_label_delay: "30d".into(),
            segments: vec!["s".into()],
            segment_cap: 64,
            features,
            sampling: 1.0,
            team: None,
        })
    }

    fn batch(n: usize) -> (pb::InferenceBatch, Vec<u64>) {
        let m = model();
        let mut b = new_batch(&m, n);
        for i in 0..n {
            b.request_ids.push(format!("r{i}"));
            b.ts_ms.push(i as i64);
            b.model_versions.push("v1".into());
            b.segments[0].values.push(format!("s{}", i % 3));
            b.features[0].numbers.push(i as f64);
            if i % 4 == 0 {
                b.features[0].missing.push(i as u32);
            }
            b.features[1].categories.push(format!("c{i}"));
            if i % 5 == 0 {
                b.features[1].missing.push(i as u32);
            }
            b.scores.push(0.5);
            if i % 2 == 0 {
                b.score_missing.push(i as u32);
            }
            b.latency_ms.push(f64::NAN);
        }
        (b, (1..=n as u64).collect())
    }

    /// The same batch with its categorical column dictionary-encoded (as columnar files send
    /// it): every third value repeats, so codes are shared.
    fn coded(n: usize) -> (pb::InferenceBatch, Vec<u64>) {
        let (mut b, lines) = batch(n);
        let f = &mut b.features[1];
        let values = std::mem::take(&mut f.categories);
        for (i, v) in values.iter().enumerate() {
            let v = if i % 3 == 0 { "same" } else { v.as_str() };
            let code = match f.dictionary.iter().position(|d| d == v) {
                Some(c) => c,
                None => {
                    f.dictionary.push(v.to_string());
                    f.dictionary.len() - 1
                }
            };
            f.codes.push(code as u32);
        }
        (b, lines)
    }

    /// Row `i`'s category, from either encoding.
    fn category(f: &pb::FeatureColumn, i: usize) -> String {
        if f.categories.is_empty() {
            f.dictionary[f.codes[i] as usize].clone()
        } else {
            f.categories[i].clone()
        }
    }

    /// Each row's values as one tuple, so parts can be compared with the whole.
    fn rows(b: &pb::InferenceBatch) -> Vec<(String, f64, bool, String, bool, bool)> {
        (0..b.request_ids.len())
            .map(|i| {
                let r = i as u32;
                (
                    b.request_ids[i].clone(),
                    b.features[0].numbers[i],
                    b.features[0].missing.contains(&r),
                    category(&b.features[1], i),
                    b.features[1].missing.contains(&r),
                    b.score_missing.contains(&r),
                )
            })
            .collect()
    }

    #[test]
    fn split_keeps_every_row_and_its_missing_marks() {
        let (b, lines) = batch(103);
        let whole = rows(&b);
        let parts = split_batch(b, lines, 10, usize::MAX);
        assert_eq!(parts.len(), 11);
        let mut got = Vec::new();
        let mut got_lines = Vec::new();
        for (p, l) in &parts {
            assert!(p.request_ids.len() <= 10);
            assert_eq!(p.model_versions, vec!["v1".to_string()]);
            assert!(p.latency_ms.is_empty());
            assert_eq!(l.len(), p.request_ids.len());
            got.extend(rows(p));
            got_lines.extend(l.iter().copied());
        }
        assert_eq!(got, whole);
        assert_eq!(got_lines, (1..=103).collect::<Vec<u64>>());
    }

    #[test]
    fn split_by_bytes() {
        let (b, lines) = batch(1000);
        let size = prost::Message::encoded_len(&b);
        let parts = split_batch(b, lines, usize::MAX, size / 4);
        assert!(parts.len() >= 4, "{}", parts.len());
        for (p, _) in &parts {
            assert!(prost::Message::encoded_len(p) <= size / 4);
        }
        assert_eq!(
            parts
                .iter()
                .map(|(p, _)| p.request_ids.len())
                .sum::<usize>(),
            1000
        );
    }

    #[test]
    fn retain_remaps_missing_rows() {
        for (mut b, _) in [batch(10), coded(10)] {
            let whole = rows(&b);
            let keep: Vec<bool> = (0..10).map(|i| i % 3 != 1).collect();
            retain_rows(&mut b, &keep);
            let want: Vec<_> = whole
                .into_iter()
                .enumerate()
                .filter(|(i, _)| i % 3 != 1)
                .map(|(_, r)| r)
                .collect();
            assert_eq!(rows(&b), want);
            assert_eq!(
                b.features[1]
                    .codes
                    .len()
                    .max(b.features[1].categories.len()),
                7
            );
        }
    }

    #[test]
    fn split_keeps_dictionary_codes_with_their_rows() {
        let (b, lines) = coded(103);
        let whole = rows(&b);
        let parts = split_batch(b, lines, 10, usize::MAX);
        let got: Vec<_> = parts.iter().flat_map(|(p, _)| rows(p)).collect();
        assert_eq!(got, whole);
    }
}
