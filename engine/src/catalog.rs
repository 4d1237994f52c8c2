//! The one metric catalog: every metric driftdb computes, with its family, the series it
//! applies to, the tasks it needs, whether it has a p-value, which direction is better and one
//! line of help. DriftQL's planner, the rule validator and the Prometheus series mapping all
//! read this table, so a name means the same everywhere and a rule accepts every metric DriftQL
//! has (or [`MetricDef::rule`] says why not). Definitions: `docs/STATISTICS.md`.

use crate::model::Task;

/// A metric's family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Two-sample: the current data against a baseline (PSI, KS …); no reference value of its
    /// own exists.
    Drift,
    /// One-sample description of the current data (mean, quantile …); the reference profile has
    /// the same summary.
    Summary,
    /// Labelled performance of the prediction score (AUC, RMSE …); computable on the
    /// reference too.
    Performance,
}

/// Which series a metric can be computed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Applies {
    /// Numeric series (numeric features, `$score`'s distribution, `$latency`, numeric `$label`).
    Numeric,
    /// Categorical series.
    Categorical,
    /// Both.
    Any,
    /// `$score` only: labelled performance, for models of [`MetricDef::tasks`].
    Score,
    /// `$cost` only: the per-event cost.
    Cost,
}

/// The parameter a metric takes in its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Param {
    /// None.
    None,
    /// `quantile(q, …)`: a level in [0, 1].
    Level,
    /// `ndcg(K, …)`: a cut-off K in 1..=20 (10 when omitted in rules).
    CutOff,
}

/// A metric driftdb knows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// Its DriftQL name.
    pub name: &'static str,
    /// Its family.
    pub family: Family,
    /// Which series it applies to.
    pub applies: Applies,
    /// The model tasks it is defined for.
    pub tasks: &'static [Task],
    /// Its parameter.
    pub param: Param,
    /// Whether it yields a p-value.
    pub has_p: bool,
    /// Whether a larger value is better (performance), worse (drift, error metrics) or neither.
    pub higher_is_better: Option<bool>,
    /// One line of help.
    pub help: &'static str,
    /// `None` when alert rules accept it; otherwise why they do not.
    pub not_in_rules: Option<&'static str>,
}

impl MetricDef {
    /// Whether the metric is defined for models of `task`.
    pub fn fits_task(&self, task: Task) -> bool {
        self.tasks.contains(&task)
    }

    /// Whether the reference profile has a value of this metric (summaries and performance),
    /// which relative and delta rule thresholds need.
    pub fn has_reference_value(&self) -> bool {
        self.family != Family::Drift
    }
}

/// Every task.
pub const EVERY_TASK: &[Task] = &[
    Task::Binary,
    Task::Multiclass,
    Task::Regression,
    Task::Ranking,
];
const CLASSIFICATION: &[Task] = &[Task::Binary, Task::Multiclass];
const BINARY: &[Task] = &[Task::Binary];
const REGRESSION: &[Task] = &[Task::Regression];
const RANKING: &[Task] = &[Task::Ranking];

#[allow(
    clippy::too_many_arguments,
    reason = "one row of the table, every column named"
)]
const fn def(
    name: &'static str,
    family: Family,
    applies: Applies,
    tasks: &'static [Task],
    has_p: bool,
    higher_is_better: Option<bool>,
    help: &'static str,
    param: Param,
) -> MetricDef {
    MetricDef {
        name,
        family,
        applies,
        tasks,
        param,
        has_p,
        higher_is_better,
        help,
        not_in_rules: None,
    }
}

const fn drift(name: &'static str, applies: Applies, has_p: bool, help: &'static str) -> MetricDef {
    def(
        name,
        Family::Drift,
        applies,
        EVERY_TASK,
        has_p,
        Some(false),
        help,
        Param::None,
    )
}

const fn summary(name: &'static str, applies: Applies, help: &'static str) -> MetricDef {
    def(
        name,
        Family::Summary,
        applies,
        EVERY_TASK,
        false,
        None,
        help,
        Param::None,
    )
}

const fn perf(
    name: &'static str,
    tasks: &'static [Task],
    higher_is_better: Option<bool>,
    help: &'static str,
) -> MetricDef {
    def(
        name,
        Family::Performance,
        Applies::Score,
        tasks,
        false,
        higher_is_better,
        help,
        Param::None,
    )
}

use Applies::{Any, Categorical, Numeric};

/// Every metric, in the order `help` lists them.
pub const METRICS: &[MetricDef] = &[
    drift(
        "psi",
        Any,
        false,
        "population stability index (10 reference-quantile bins; categories)",
    ),
    drift(
        "js",
        Any,
        false,
        "Jensen-Shannon distance, base 2 (10 bins; categories)",
    ),
    drift(
        "hellinger",
        Any,
        false,
        "Hellinger distance (10 bins; categories)",
    ),
    drift(
        "psi50",
        Numeric,
        false,
        "PSI over the 50 reference-quantile bins",
    ),
    drift(
        "js50",
        Numeric,
        false,
        "JS distance over the 50 reference-quantile bins",
    ),
    drift(
        "hellinger50",
        Numeric,
        false,
        "Hellinger distance over the 50 bins",
    ),
    drift(
        "ks",
        Numeric,
        true,
        "Kolmogorov-Smirnov D with a sketch-aware p-value",
    ),
    drift(
        "wasserstein",
        Numeric,
        false,
        "Wasserstein-1 distance in the feature's units",
    ),
    MetricDef {
        higher_is_better: None,
        ..drift(
            "mean_shift",
            Numeric,
            false,
            "mean(current) - mean(baseline)",
        )
    },
    drift(
        "chi2",
        Categorical,
        true,
        "chi-square homogeneity statistic with its p-value",
    ),
    drift(
        "linf",
        Categorical,
        false,
        "largest absolute change of a category's share",
    ),
    drift(
        "unseen_share",
        Categorical,
        false,
        "share of values in categories the baseline lacks",
    ),
    MetricDef {
        higher_is_better: None,
        ..drift(
            "missing_rate_change",
            Any,
            false,
            "missing share(current) - missing share(baseline)",
        )
    },
    summary("count", Any, "non-null values"),
    summary("rows", Any, "rows seen (missing and invalid included)"),
    MetricDef {
        higher_is_better: Some(false),
        ..summary("missing_rate", Any, "share of rows without a usable value")
    },
    MetricDef {
        higher_is_better: Some(false),
        ..summary(
            "invalid_rate",
            Any,
            "share of rows with NaN or infinite values",
        )
    },
    summary("mean", Numeric, "mean"),
    summary("std", Numeric, "standard deviation (sample, n - 1)"),
    summary("min", Numeric, "minimum"),
    summary("max", Numeric, "maximum"),
    MetricDef {
        param: Param::Level,
        ..summary(
            "quantile",
            Numeric,
            "quantile(q, target): the q-quantile from the KLL sketch",
        )
    },
    summary(
        "distinct",
        Categorical,
        "distinct categories (HLL estimate past the cap)",
    ),
    perf(
        "auc",
        CLASSIFICATION,
        Some(true),
        "ROC AUC of labelled predictions",
    ),
    perf(
        "ece",
        CLASSIFICATION,
        Some(false),
        "expected calibration error, 10 bins",
    ),
    perf("logloss", CLASSIFICATION, Some(false), "mean log loss"),
    perf("brier", CLASSIFICATION, Some(false), "Brier score"),
    perf(
        "accuracy",
        CLASSIFICATION,
        Some(true),
        "accuracy at threshold 0.5",
    ),
    perf(
        "precision",
        CLASSIFICATION,
        Some(true),
        "precision at threshold 0.5",
    ),
    perf(
        "recall",
        CLASSIFICATION,
        Some(true),
        "recall at threshold 0.5",
    ),
    perf("f1", CLASSIFICATION, Some(true), "F1 at threshold 0.5"),
    perf(
        "positive_rate",
        CLASSIFICATION,
        None,
        "share of positive labels",
    ),
    perf(
        "label_coverage",
        EVERY_TASK,
        Some(true),
        "share of predictions whose label arrived",
    ),
    perf(
        "estimated_auc",
        BINARY,
        Some(true),
        "ROC AUC estimated without labels: the scores through the reference's calibration",
    ),
    perf(
        "estimated_accuracy",
        BINARY,
        Some(true),
        "accuracy at 0.5 estimated without labels (reference calibration)",
    ),
    perf(
        "estimated_precision",
        BINARY,
        Some(true),
        "precision at 0.5 estimated without labels (reference calibration)",
    ),
    perf(
        "estimated_recall",
        BINARY,
        Some(true),
        "recall at 0.5 estimated without labels (reference calibration)",
    ),
    perf(
        "estimated_f1",
        BINARY,
        Some(true),
        "F1 at 0.5 estimated without labels (reference calibration)",
    ),
    perf("rmse", REGRESSION, Some(false), "root mean squared error"),
    perf("mae", REGRESSION, Some(false), "mean absolute error"),
    perf(
        "mape",
        REGRESSION,
        Some(false),
        "mean absolute percentage error (fraction)",
    ),
    MetricDef {
        param: Param::CutOff,
        ..perf(
            "ndcg",
            RANKING,
            Some(true),
            "ndcg(K, model): mean NDCG@K, K <= 20",
        )
    },
    perf("ctr", RANKING, Some(true), "clicks per impression"),
    perf("cvr", RANKING, Some(true), "purchases per click"),
    perf("rpm", RANKING, Some(true), "revenue per 1000 impressions"),
    summary(
        "score_entropy",
        Numeric,
        "normalised entropy of the distribution over the 50 reference bins",
    ),
    MetricDef {
        higher_is_better: Some(false),
        ..summary(
            "cost_per_1k",
            Applies::Cost,
            "cost per 1,000 events, over the events that report a cost (1000 x mean $cost)",
        )
    },
    MetricDef {
        not_in_rules: Some(
            "importance is a share across the model's features; watch importance_drift in DriftQL or cost_per_1k / drift in rules",
        ),
        ..summary(
            "importance",
            Any,
            "share of a feature's mean |attribution| among the model's features",
        )
    },
    MetricDef {
        higher_is_better: Some(true),
        not_in_rules: Some(
            "importance_drift compares the whole importance vector; query it with DriftQL",
        ),
        ..drift(
            "importance_drift",
            Any,
            false,
            "importance_drift(model): Spearman rank correlation of the importance vector with the reference's, and the features whose share moved most",
        )
    },
];

/// Looks a metric up by its name.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_performance_metrics_name_their_tasks() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a metric is listed twice");
        for m in METRICS {
            assert!(!m.tasks.is_empty(), "{}", m.name);
            assert_eq!(
                m.family == Family::Performance,
                m.applies == Applies::Score,
                "{}: performance metrics and only they apply to $score",
                m.name
            );
            assert!(!m.help.is_empty());
        }
        assert_eq!(
            lookup("auc").map(|m| m.fits_task(Task::Regression)),
            Some(false)
        );
        assert_eq!(lookup("ndcg").map(|m| m.param), Some(Param::CutOff));
        assert!(lookup("nope").is_none());
    }
}
