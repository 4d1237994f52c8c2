//! What a report holds: plain data, serialisable (`driftdb report --format json` writes it
//! as is, schema `driftdb.report.v1`), built by [`crate::build`] and drawn by
//! [`crate::render`]. Times are Unix milliseconds (UTC); masses are shares in `[0, 1]`.

use serde::{Deserialize, Serialize};

/// The JSON schema name of [`Report`].
pub const SCHEMA: &str = "driftdb.report.v1";

/// One report: a model version over a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Model id.
    pub model: String,
    /// Model version reported on.
    pub version: String,
    /// The model's task (`binary`, `multiclass`, `regression`, `ranking`).
    pub task: String,
    /// Range start (inclusive).
    pub from_ms: i64,
    /// Range end (exclusive).
    pub to_ms: i64,
    /// Width of one heatmap / performance column.
    pub step_ms: i64,
    /// Segment key the segment table splits by, when asked.
    pub by: Option<String>,
    /// Where the data came from: a server address, or the two files.
    pub source: String,
    /// When the report was built.
    pub generated_at_ms: i64,
    /// The header's verdict.
    pub verdict: Verdict,
    /// Every input feature against the reference, the largest effect (PSI) first.
    pub features: Vec<FeatureDrift>,
    /// The prediction score against the reference (`psi`, `ks`, `mean_shift`, `mean`).
    pub prediction_shift: Vec<NamedValue>,
    /// Reference vs current distribution per input feature, in [`Report::features`] order,
    /// then `$score`.
    pub distributions: Vec<Distribution>,
    /// PSI per feature and step window; `None` when the range is a single window.
    pub heatmap: Option<Heatmap>,
    /// Labelled performance over the range against the reference's, and per window.
    pub performance: Option<Performance>,
    /// The reliability diagram of the range's labelled scores (binary models with labels).
    pub calibration: Option<Calibration>,
    /// `explain(model)` over the range: what drifted or broke, where, ranked.
    pub explain: Table,
    /// Drift per value of [`Report::by`]: `psi(model.*) by <key>` over the range.
    pub segments: Option<Table>,
    /// Things the reader should know (no reference, no labels, skipped series).
    pub warnings: Vec<String>,
}

/// How many features drifted, and by which test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Input features judged.
    pub features: usize,
    /// Of them, drifted.
    pub drifted: usize,
    /// The test, in words (chi-square over the reference's 10 quantile bins or categories …).
    pub test: String,
    /// Significance level of the FDR-adjusted p-values.
    pub alpha: f64,
    /// Smallest effect (PSI + |Δ missing share|) a drifted feature must also reach.
    pub min_effect: f64,
    /// Whether the report's verdict is drift (at least one drifted feature).
    pub drift: bool,
}

/// One feature's drift over the whole range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDrift {
    /// Feature name.
    pub feature: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    /// PSI against the reference (10 quantile bins or categories).
    pub psi: Option<f64>,
    /// The test statistic (chi-square, or KS D without bins).
    pub statistic: Option<f64>,
    /// Benjamini–Hochberg adjusted p-value over the model's features.
    pub p_adj: Option<f64>,
    /// Change of the missing share against the reference.
    pub missing_change: Option<f64>,
    /// Current non-null values.
    pub n: u64,
    /// Reference non-null values.
    pub baseline_n: u64,
    /// The verdict: `p_adj < alpha` and effect ≥ `min_effect`.
    pub drifted: bool,
}

/// A name and a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedValue {
    /// The metric.
    pub name: String,
    /// Its value.
    pub value: Option<f64>,
}

/// Reference vs current distribution of one series over the range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    /// Feature name (`$score` for the prediction score).
    pub feature: String,
    /// The shapes.
    pub shape: Shape,
}

/// A distribution's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shape {
    /// Numeric: masses over the reference's quantile bins, and both CDFs.
    Numeric {
        /// The reference's 10-quantile bin edges (inner edges; bin 0 is `(-inf, edges[0])`,
        /// the last `[edges[last], +inf)`).
        edges: Vec<f64>,
        /// Reference mass per bin (`edges.len() + 1` bins).
        reference: Vec<f64>,
        /// Current mass per bin.
        current: Vec<f64>,
        /// Reference CDF points `(x, F(x))`, ascending.
        reference_cdf: Vec<(f64, f64)>,
        /// Current CDF points.
        current_cdf: Vec<(f64, f64)>,
        /// Current non-null values.
        n: u64,
        /// Reference non-null values.
        baseline_n: u64,
    },
    /// Categorical: the top categories of either side, then the rest.
    Categorical {
        /// Top categories (by the larger of the two masses), with their masses.
        categories: Vec<CategoryMass>,
        /// Mass of every other category (`__other__`).
        other_reference: f64,
        /// Current mass of every other category.
        other_current: f64,
        /// Current mass of categories the reference never saw.
        unseen_current: f64,
        /// Current non-null values.
        n: u64,
        /// Reference non-null values.
        baseline_n: u64,
    },
}

/// One category's masses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryMass {
    /// The category.
    pub name: String,
    /// Reference mass.
    pub reference: f64,
    /// Current mass.
    pub current: f64,
}

/// A feature × window matrix of one drift metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heatmap {
    /// The metric (`psi`).
    pub metric: String,
    /// Window starts, ascending; each column is `step_ms` wide.
    pub windows: Vec<i64>,
    /// Feature names (rows), in [`Report::features`] order.
    pub features: Vec<String>,
    /// `values[feature][window]`; `None` where the window holds no data.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Labelled performance, and for binary models the AUC estimated from the scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Over the range: metric, value, reference, change, labelled rows.
    pub summary: Table,
    /// The metric drawn over time (`auc`, `rmse` or `ndcg@10`).
    pub metric: String,
    /// Window starts of the series.
    pub windows: Vec<i64>,
    /// The metric per window; `None` where no labels joined.
    pub values: Vec<Option<f64>>,
    /// The reference's value of the metric.
    pub reference: Option<f64>,
    /// Binary models: `estimated_auc` per window, the AUC expected from the window's scores
    /// through the reference's calibration, with or without labels (docs/STATISTICS.md §20);
    /// empty for other tasks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub estimated: Vec<Option<f64>>,
}

/// A reliability diagram: 10 equal-width score bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The bins that hold labelled rows.
    pub bins: Vec<CalibrationPoint>,
    /// Expected calibration error of the range.
    pub ece: Option<f64>,
}

/// One reliability bin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationPoint {
    /// Lower edge of the bin (`0.0`, `0.1`, …).
    pub lower: f64,
    /// Mean predicted score in the bin.
    pub predicted: f64,
    /// Observed positive rate.
    pub observed: f64,
    /// Labelled rows.
    pub n: u64,
}

/// A small result table (DriftQL's columns and cells as JSON values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows of cells: numbers, strings or null.
    pub rows: Vec<Vec<serde_json::Value>>,
}
