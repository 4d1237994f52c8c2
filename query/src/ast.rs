//! The syntax tree of one DriftQL statement (query/DRIFTQL.md), as the parser returns it.
//!
//! Names are resolved against the catalog by the planner, not here: the tree only says what
//! was written, with the position of each part so the planner's errors can point at it too.

use driftdb_engine::time::{DurationMs, Timestamp};

/// A position in the query text: 1-based line and column (in characters), plus the byte
/// offset for slicing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, counted in characters.
    pub column: u32,
    /// Byte offset into the query text.
    pub offset: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// A value with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it starts.
    pub pos: Pos,
}

/// One statement: a query, optionally prefixed by `EXPLAIN` (print the plan, run nothing).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// `EXPLAIN <query>`.
    pub explain: bool,
    /// The query.
    pub query: Query,
}

/// `call [range] [step] [by] [where] [having] [top]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The metric call.
    pub call: Call,
    /// `over D` or `from T to T`; `None` means the planner's default (the last hour).
    pub range: Option<Spanned<RangeSpec>>,
    /// `step D`.
    pub step: Option<Spanned<DurationMs>>,
    /// `by k1, k2`: segment keys, in the order written.
    pub by: Vec<Spanned<String>>,
    /// `where c1 and c2`.
    pub filters: Vec<Cond>,
    /// `having value|p <op> NUMBER`.
    pub having: Option<Having>,
    /// `top N` / `bottom N`.
    pub top: Option<Top>,
}

/// The call at the head of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `METRIC(target [, vs baseline])`. The metric name is kept as written (lower-cased);
    /// the planner decides whether it exists.
    Metric {
        /// Metric name, lower-cased.
        name: Spanned<String>,
        /// What it is computed on.
        target: Target,
        /// `vs ...`; `None` means the reference profile.
        baseline: Option<Spanned<Baseline>>,
    },
    /// `quantile(q, target)`, `q` in [0, 1].
    Quantile {
        /// The quantile level as written.
        q: Spanned<f64>,
        /// What it is computed on.
        target: Target,
    },
    /// `ndcg(K, model)`.
    Ndcg {
        /// Cut-off K as written.
        k: Spanned<u64>,
        /// What it is computed on (a model; a feature part is a planner error).
        target: Target,
    },
    /// `explain(model)`.
    Explain {
        /// The model (optionally `@version`).
        model: ModelRef,
    },
    /// `uplift(METRIC, challenger, champion)`.
    Uplift {
        /// Metric name, lower-cased.
        metric: Spanned<String>,
        /// The challenger model version.
        challenger: ModelRef,
        /// The champion model version.
        champion: ModelRef,
    },
}

/// `IDENT ["@" version]`; model ids and versions may also be written as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    /// Model id.
    pub id: String,
    /// `@version`, when written.
    pub version: Option<String>,
    /// Where the model name starts.
    pub pos: Pos,
}

/// `model ["." feature]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The model.
    pub model: ModelRef,
    /// The feature part; `None` when only the model was written.
    pub feature: Option<Spanned<FeatureSel>>,
}

/// The feature part of a target.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureSel {
    /// `*`: every input feature of the model.
    All,
    /// A feature name (IDENT or STRING). A string may hold `*` wildcards (`"txn_*"`).
    Name(String),
    /// `$score`.
    Score,
    /// `$label`.
    Label,
    /// `$latency`.
    Latency,
    /// `$items`: the item ids a ranking model served in its top 10.
    Items,
    /// `$cost`: the per-event cost the service reported.
    Cost,
}

/// What the current data is compared against.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// `reference`: the model version's reference profile (the default).
    Reference,
    /// `previous`: the bucket (or range) of equal length just before.
    Previous,
    /// `offset D`: the same bucket (or range) shifted `D` into the past.
    Offset(DurationMs),
    /// `range(T, T)`: everything stored in that range.
    Range(TimeExpr, TimeExpr),
    /// `version V`: the same bucket (or range) of another version of the model.
    Version(String),
}

/// An instant: RFC 3339 or `now[-D]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeExpr {
    /// An absolute instant.
    At(Timestamp),
    /// `now`, minus a duration when written `now-D`.
    Now {
        /// What to subtract from now (zero for plain `now`).
        minus: Option<DurationMs>,
    },
}

/// `over D` or `from T to T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// The last `D` up to now.
    Over(DurationMs),
    /// An explicit range `[from, to)`.
    FromTo(TimeExpr, TimeExpr),
}

/// `=` or `!=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EqOp {
    /// `=`.
    Eq,
    /// `!=`.
    Ne,
}

/// `IDENT (= | !=) STRING`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cond {
    /// Segment key.
    pub key: Spanned<String>,
    /// Comparison.
    pub op: EqOp,
    /// Segment value.
    pub value: String,
}

/// Which column `having` tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HavingField {
    /// The metric value.
    Value,
    /// The p-value.
    P,
}

/// An ordering comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `>`.
    Gt,
    /// `<`.
    Lt,
    /// `>=`.
    Ge,
    /// `<=`.
    Le,
}

impl CmpOp {
    /// Whether `a <op> b`.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            CmpOp::Gt => a > b,
            CmpOp::Lt => a < b,
            CmpOp::Ge => a >= b,
            CmpOp::Le => a <= b,
        }
    }

    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Lt => "<",
            CmpOp::Ge => ">=",
            CmpOp::Le => "<=",
        }
    }
}

/// `having value|p <op> NUMBER`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Having {
    /// Tested column.
    pub field: HavingField,
    /// Comparison.
    pub op: CmpOp,
    /// Threshold (may be negative).
    pub threshold: f64,
    /// Where `having` starts.
    pub pos: Pos,
}

/// `top N` or `bottom N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Top {
    /// `bottom` (smallest values first) instead of `top`.
    pub bottom: bool,
    /// How many rows to keep.
    pub n: u64,
    /// Where `top`/`bottom` starts.
    pub pos: Pos,
}
