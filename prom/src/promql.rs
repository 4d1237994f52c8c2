//! PromQL: text parsed by the [`promql_parser`] crate (GreptimeDB's port of Prometheus'
//! grammar), then lowered into the evaluator's own [`Expr`] — the subset driftdb evaluates.
//!
//! Every PromQL expression parses; what is outside the subset is refused with an
//! [`Error::Unsupported`] naming the construct (`unsupported PromQL: function rate()`, `…
//! subquery`, `… offset modifier`, …), never silently evaluated differently. The subset:
//!
//! - number literals, and `+ - * / == != > < >= <=` between numbers (comparisons with
//!   `bool`), folded into one number while lowering;
//! - instant selectors `name{l="v", l!="v", l=~"re", l!~"re"}` and range selectors
//!   `sel[5m]`; a range selector only inside the `*_over_time` functions, or as the whole of
//!   an instant query;
//! - `avg_over_time`, `min_over_time`, `max_over_time`, `sum_over_time`, `count_over_time`,
//!   `last_over_time` of a range selector;
//! - `sum`, `avg`, `min`, `max`, `count`, `topk(k, …)`, `bottomk(k, …)` with `by (…)` or
//!   `without (…)`;
//! - parentheses, unary minus, and `+ - * / == != > < >= <=` (with `bool`) between a vector
//!   and a number, either side.
//!
//! Because numbers fold and two vectors never meet, every vector expression of the subset is
//! a chain: one source (a selector, or a `*_over_time` of a range selector) followed by
//! operations applied in order ([`Pipeline`]). The lowered form has no recursion to evaluate
//! or to drop.
//!
//! **Hardening.** Before the parser runs, [`crate::scan::check`] bounds the text's length,
//! nesting and operator count (the parser's own type checks and drop recurse once per level
//! of the tree); lowering walks the parser's tree with an explicit stack, counts its depth
//! against [`Limits::max_depth`] and takes it apart node by node, so nothing here recurses.

use std::time::Duration;

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr as PExpr, LabelModifier, MatrixSelector,
    VectorMatchCardinality, VectorSelector,
};

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::matcher::{MatchOp, Matcher, check_selective};

/// An aggregation operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggOp {
    /// `sum`.
    Sum,
    /// `avg`.
    Avg,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `count`.
    Count,
    /// `topk(k, ...)`.
    Topk,
    /// `bottomk(k, ...)`.
    Bottomk,
}

impl AggOp {
    /// The PromQL name.
    pub fn name(self) -> &'static str {
        match self {
            AggOp::Sum => "sum",
            AggOp::Avg => "avg",
            AggOp::Min => "min",
            AggOp::Max => "max",
            AggOp::Count => "count",
            AggOp::Topk => "topk",
            AggOp::Bottomk => "bottomk",
        }
    }
}

/// A `*_over_time` function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverTime {
    /// `avg_over_time`.
    Avg,
    /// `min_over_time`.
    Min,
    /// `max_over_time`.
    Max,
    /// `sum_over_time`.
    Sum,
    /// `count_over_time`.
    Count,
    /// `last_over_time`.
    Last,
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `>`.
    Gt,
    /// `<`.
    Lt,
    /// `>=`.
    Ge,
    /// `<=`.
    Le,
}

impl BinOp {
    /// Whether this is a comparison (filters vectors unless `bool`).
    pub fn is_comparison(self) -> bool {
        !matches!(self, BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div)
    }

    /// Applies an arithmetic operator, or a comparison as 1 (true) / 0 (false).
    pub fn apply(self, a: f64, b: f64) -> f64 {
        let t = |c: bool| if c { 1.0 } else { 0.0 };
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            BinOp::Eq => t(a == b),
            BinOp::Ne => t(a != b),
            BinOp::Gt => t(a > b),
            BinOp::Lt => t(a < b),
            BinOp::Ge => t(a >= b),
            BinOp::Le => t(a <= b),
        }
    }
}

/// A series selector: its matchers (the metric name as a `__name__` equality, first).
#[derive(Debug, Clone)]
pub struct Selector {
    /// All matchers, the name first when given.
    pub matchers: Vec<Matcher>,
}

/// How an aggregation groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Grouping {
    /// One group for everything.
    #[default]
    All,
    /// `by (labels)`.
    By(Vec<String>),
    /// `without (labels)`.
    Without(Vec<String>),
}

/// Where a vector expression's series come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An instant selector.
    Selector(Selector),
    /// `*_over_time(sel[range])`.
    OverTime {
        /// Which function.
        func: OverTime,
        /// The selector.
        selector: Selector,
        /// Range in ms.
        range_ms: i64,
    },
}

/// One operation on an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Unary minus.
    Neg,
    /// `vector op number` or, with `scalar_left`, `number op vector`.
    Scalar {
        /// The operator.
        op: BinOp,
        /// The number.
        scalar: f64,
        /// Whether the number is the left operand.
        scalar_left: bool,
        /// `bool` modifier of a comparison.
        return_bool: bool,
    },
    /// An aggregation.
    Aggregate {
        /// The operator.
        op: AggOp,
        /// `k` of topk/bottomk.
        k: Option<f64>,
        /// Grouping.
        grouping: Grouping,
    },
}

/// An instant-vector expression: a source, then operations applied in order.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Where the series come from.
    pub source: Source,
    /// What is done to them, first to last.
    pub ops: Vec<Op>,
}

/// A lowered expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A number (arithmetic between numbers is folded).
    Number(f64),
    /// A bare range selector `sel[range]` (range in ms): only the whole of an instant query.
    Range(Selector, i64),
    /// An instant vector.
    Vector(Pipeline),
}

/// The value type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A number.
    Scalar,
    /// An instant vector.
    Vector,
    /// A range vector.
    Matrix,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Scalar => "scalar",
            Kind::Vector => "instant vector",
            Kind::Matrix => "range vector",
        }
    }
}

impl Expr {
    /// The expression's value type.
    pub fn kind(&self) -> Kind {
        match self {
            Expr::Number(_) => Kind::Scalar,
            Expr::Range(..) => Kind::Matrix,
            Expr::Vector(_) => Kind::Vector,
        }
    }

    /// Every selector in the expression with the range it looks back over (ms; `None` for an
    /// instant selector, which looks back the 5-minute lookback).
    pub fn selectors(&self) -> Vec<(&Selector, Option<i64>)> {
        match self {
            Expr::Number(_) => Vec::new(),
            Expr::Range(s, r) => vec![(s, Some(*r))],
            Expr::Vector(p) => match &p.source {
                Source::Selector(s) => vec![(s, None)],
                Source::OverTime {
                    selector, range_ms, ..
                } => vec![(selector, Some(*range_ms))],
            },
        }
    }
}

/// The `*_over_time` functions and aggregations evaluated, for error messages.
const SUPPORTED_FUNCTIONS: &str =
    "avg_over_time, min_over_time, max_over_time, sum_over_time, count_over_time, last_over_time";
const SUPPORTED_AGGREGATIONS: &str = "sum, avg, min, max, count, topk, bottomk";

/// Longest range accepted (ms), so instant arithmetic never overflows.
const MAX_RANGE_MS: i64 = i64::MAX / 4;

/// Parses one PromQL expression and lowers it to the supported subset.
pub fn parse(text: &str, limits: &Limits) -> Result<Expr> {
    if text.trim().is_empty() {
        return Err(Error::Invalid("empty query".into()));
    }
    crate::scan::check(text, limits)?;
    // The scan refuses the inputs known to make the parser panic; a panic it missed is still
    // a parse error, not a dead worker.
    let text = crate::scan::raw_strings_quoted(text);
    let parsed = std::panic::catch_unwind(|| promql_parser::parser::parse(&text))
        .map_err(|_| Error::Invalid("parse error: the PromQL parser failed on this query".into()))?
        .map_err(|e| Error::Invalid(format!("parse error: {e}")))?;
    lower(parsed, limits)
}

/// Parses a series selector alone (the `match[]` parameter of the series and label APIs).
pub fn parse_selector(text: &str, limits: &Limits) -> Result<Vec<Matcher>> {
    match parse(text, limits)? {
        Expr::Vector(Pipeline {
            source: Source::Selector(s),
            ops,
        }) if ops.is_empty() => Ok(s.matchers),
        _ => Err(Error::Invalid(format!(
            "match[] must be a series selector such as driftdb_psi{{model=\"fraud\"}}, got {text:?}"
        ))),
    }
}

/// A Prometheus duration (`1h30m`, `90s`, `250ms`, `2d`, `1w`, `1y`, units in that order) in
/// milliseconds, read by promql-parser's duration parser; `None` for anything else, a plain
/// number included (callers read numbers of seconds themselves).
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    // promql-parser reads a plain number as seconds and panics on negative, infinite or huge
    // ones: numbers never reach it.
    if s.is_empty() || s.parse::<f64>().is_ok() || !s.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let d = promql_parser::util::parse_duration(s).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// What is left to do while lowering: visit a node of the parser's tree, or combine the
/// lowered operands a visited node left on the output stack.
enum Task {
    Visit(PExpr, usize),
    Neg,
    Binary {
        op: BinOp,
        return_bool: bool,
    },
    Aggregate {
        op: AggOp,
        grouping: Grouping,
        has_param: bool,
    },
}

/// Lowers promql-parser's tree into [`Expr`], refusing what the subset lacks. Iterative: the
/// tree is taken apart one node at a time (so dropping it never recurses either), and its depth
/// is checked against [`Limits::max_depth`].
pub fn lower(root: PExpr, limits: &Limits) -> Result<Expr> {
    let mut tasks = vec![Task::Visit(root, 1)];
    let mut out: Vec<Expr> = Vec::new();
    while let Some(task) = tasks.pop() {
        match task {
            Task::Visit(e, depth) => {
                if depth > limits.max_depth {
                    return Err(Error::TooLarge(format!(
                        "the query's expression is more than {} levels deep; the limit is {} (simplify the expression)",
                        limits.max_depth, limits.max_depth
                    )));
                }
                let d = depth + 1;
                match e {
                    PExpr::NumberLiteral(n) => out.push(Expr::Number(n.val)),
                    PExpr::Paren(p) => tasks.push(Task::Visit(*p.expr, d)),
                    PExpr::Unary(u) => {
                        tasks.push(Task::Neg);
                        tasks.push(Task::Visit(*u.expr, d));
                    }
                    PExpr::Binary(b) => {
                        let BinaryExpr {
                            op,
                            lhs,
                            rhs,
                            modifier,
                        } = b;
                        let op = bin_op(&op.to_string())?;
                        let mut return_bool = false;
                        if let Some(m) = modifier {
                            if matches!(
                                m.card,
                                VectorMatchCardinality::ManyToOne(_)
                                    | VectorMatchCardinality::OneToMany(_)
                            ) {
                                return Err(Error::Unsupported(
                                    "vector matching (group_left/group_right)".into(),
                                ));
                            }
                            if m.matching.is_some() {
                                return Err(Error::Unsupported(
                                    "vector matching (on/ignoring)".into(),
                                ));
                            }
                            if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
                                return Err(Error::Unsupported("vector matching (fill)".into()));
                            }
                            return_bool = m.return_bool;
                        }
                        tasks.push(Task::Binary { op, return_bool });
                        tasks.push(Task::Visit(*rhs, d));
                        tasks.push(Task::Visit(*lhs, d));
                    }
                    PExpr::Aggregate(a) => {
                        let AggregateExpr {
                            op,
                            expr,
                            param,
                            modifier,
                        } = a;
                        let op = agg_op(&op.to_string())?;
                        let grouping = match modifier {
                            None => Grouping::All,
                            Some(LabelModifier::Include(l)) => Grouping::By(l.labels),
                            Some(LabelModifier::Exclude(l)) => Grouping::Without(l.labels),
                        };
                        tasks.push(Task::Aggregate {
                            op,
                            grouping,
                            has_param: param.is_some(),
                        });
                        tasks.push(Task::Visit(*expr, d));
                        if let Some(p) = param {
                            tasks.push(Task::Visit(*p, d));
                        }
                    }
                    PExpr::Call(c) => out.push(over_time(c, d, limits)?),
                    PExpr::VectorSelector(vs) => out.push(Expr::Vector(Pipeline {
                        source: Source::Selector(selector(vs)?),
                        ops: Vec::new(),
                    })),
                    PExpr::MatrixSelector(ms) => {
                        let (s, r) = range_selector(ms)?;
                        out.push(Expr::Range(s, r));
                    }
                    PExpr::Subquery(_) => {
                        return Err(Error::Unsupported(
                            "subquery (expr[range:step]); use a range selector inside a *_over_time function".into(),
                        ));
                    }
                    PExpr::StringLiteral(_) => {
                        return Err(Error::Unsupported("string literal".into()));
                    }
                    PExpr::Extension(_) => {
                        return Err(Error::Unsupported("extension expression".into()));
                    }
                }
            }
            Task::Neg => {
                let v = pop(&mut out)?;
                out.push(match v {
                    Expr::Number(n) => Expr::Number(-n),
                    Expr::Vector(mut p) => {
                        p.ops.push(Op::Neg);
                        Expr::Vector(p)
                    }
                    Expr::Range(..) => {
                        return Err(Error::Invalid("unary minus of a range vector".into()));
                    }
                });
            }
            Task::Binary { op, return_bool } => {
                let rhs = pop(&mut out)?;
                let lhs = pop(&mut out)?;
                out.push(binary(op, return_bool, lhs, rhs)?);
            }
            Task::Aggregate {
                op,
                grouping,
                has_param,
            } => {
                let expr = pop(&mut out)?;
                let k = if has_param {
                    match pop(&mut out)? {
                        Expr::Number(k) => Some(k),
                        other => {
                            return Err(Error::Invalid(format!(
                                "the first argument of {} must be a number, not a {}",
                                op.name(),
                                other.kind().name()
                            )));
                        }
                    }
                } else {
                    None
                };
                match expr {
                    Expr::Vector(mut p) => {
                        p.ops.push(Op::Aggregate { op, k, grouping });
                        out.push(Expr::Vector(p));
                    }
                    other => {
                        return Err(Error::Invalid(format!(
                            "{} aggregates an instant vector, not a {}",
                            op.name(),
                            other.kind().name()
                        )));
                    }
                }
            }
        }
    }
    match (out.pop(), out.is_empty()) {
        (Some(e), true) => Ok(e),
        _ => Err(Error::Invalid(
            "parse error: the expression did not lower to one value".into(),
        )),
    }
}

fn pop(out: &mut Vec<Expr>) -> Result<Expr> {
    out.pop()
        .ok_or_else(|| Error::Invalid("parse error: an operator is missing an operand".into()))
}

fn binary(op: BinOp, return_bool: bool, lhs: Expr, rhs: Expr) -> Result<Expr> {
    Ok(match (lhs, rhs) {
        (Expr::Number(a), Expr::Number(b)) => {
            if op.is_comparison() && !return_bool {
                return Err(Error::Invalid(
                    "comparisons between numbers must use the bool modifier".into(),
                ));
            }
            Expr::Number(op.apply(a, b))
        }
        (Expr::Vector(mut p), Expr::Number(scalar)) => {
            p.ops.push(Op::Scalar {
                op,
                scalar,
                scalar_left: false,
                return_bool,
            });
            Expr::Vector(p)
        }
        (Expr::Number(scalar), Expr::Vector(mut p)) => {
            p.ops.push(Op::Scalar {
                op,
                scalar,
                scalar_left: true,
                return_bool,
            });
            Expr::Vector(p)
        }
        (Expr::Vector(_), Expr::Vector(_)) => {
            return Err(Error::Unsupported(
                "binary operation between two vectors (only vector-to-number and number-to-number operations are supported)".into(),
            ));
        }
        _ => {
            return Err(Error::Invalid(
                "binary operations take numbers and instant vectors, not range vectors".into(),
            ));
        }
    })
}

fn bin_op(symbol: &str) -> Result<BinOp> {
    Ok(match symbol {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        ">" => BinOp::Gt,
        "<" => BinOp::Lt,
        ">=" => BinOp::Ge,
        "<=" => BinOp::Le,
        "and" | "or" | "unless" => {
            return Err(Error::Unsupported(format!(
                "set operator {symbol} (vector matching)"
            )));
        }
        other => return Err(Error::Unsupported(format!("operator {other}"))),
    })
}

fn agg_op(name: &str) -> Result<AggOp> {
    Ok(match name {
        "sum" => AggOp::Sum,
        "avg" => AggOp::Avg,
        "min" => AggOp::Min,
        "max" => AggOp::Max,
        "count" => AggOp::Count,
        "topk" => AggOp::Topk,
        "bottomk" => AggOp::Bottomk,
        other => {
            return Err(Error::Unsupported(format!(
                "aggregation {other}() (supported: {SUPPORTED_AGGREGATIONS})"
            )));
        }
    })
}

fn over_time(c: Call, depth: usize, limits: &Limits) -> Result<Expr> {
    let name = c.func.name;
    let func = match name {
        "avg_over_time" => OverTime::Avg,
        "min_over_time" => OverTime::Min,
        "max_over_time" => OverTime::Max,
        "sum_over_time" => OverTime::Sum,
        "count_over_time" => OverTime::Count,
        "last_over_time" => OverTime::Last,
        other => {
            return Err(Error::Unsupported(format!(
                "function {other}() (supported: {SUPPORTED_FUNCTIONS} and the aggregations {SUPPORTED_AGGREGATIONS})"
            )));
        }
    };
    let takes = || {
        Error::Invalid(format!(
            "{name} takes a range selector such as driftdb_psi{{model=\"m\"}}[1h]"
        ))
    };
    let mut args = c.args.args.into_iter();
    let (Some(first), None) = (args.next(), args.next()) else {
        return Err(takes());
    };
    let mut arg = *first;
    let mut depth = depth;
    loop {
        if depth > limits.max_depth {
            return Err(Error::TooLarge(format!(
                "the query's expression is more than {} levels deep; the limit is {} (simplify the expression)",
                limits.max_depth, limits.max_depth
            )));
        }
        match arg {
            PExpr::Paren(p) => {
                arg = *p.expr;
                depth += 1;
            }
            PExpr::MatrixSelector(ms) => {
                let (selector, range_ms) = range_selector(ms)?;
                return Ok(Expr::Vector(Pipeline {
                    source: Source::OverTime {
                        func,
                        selector,
                        range_ms,
                    },
                    ops: Vec::new(),
                }));
            }
            PExpr::Subquery(_) => {
                return Err(Error::Unsupported(format!(
                    "subquery (expr[range:step]) in {name}; give it a range selector such as driftdb_psi[1h]"
                )));
            }
            _ => return Err(takes()),
        }
    }
}

fn selector(vs: VectorSelector) -> Result<Selector> {
    if vs.offset.is_some() {
        return Err(Error::Unsupported("offset modifier".into()));
    }
    if vs.at.is_some() {
        return Err(Error::Unsupported("@ modifier".into()));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(Error::Unsupported(
            "\"or\" between label matchers in a selector".into(),
        ));
    }
    let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
    if let Some(n) = vs.name {
        matchers.push(Matcher::eq("__name__", n));
    }
    for m in vs.matchers.matchers {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Eq,
            PMatchOp::NotEqual => MatchOp::Neq,
            PMatchOp::Re(_) => MatchOp::Re,
            PMatchOp::NotRe(_) => MatchOp::Nre,
        };
        matchers.push(Matcher::new(op, m.name, m.value)?);
    }
    check_selective(&matchers)?;
    Ok(Selector { matchers })
}

fn range_selector(ms: MatrixSelector) -> Result<(Selector, i64)> {
    let range = range_ms(ms.range)?;
    Ok((selector(ms.vs)?, range))
}

fn range_ms(d: Duration) -> Result<i64> {
    match i64::try_from(d.as_millis()) {
        Ok(ms) if ms > 0 && ms <= MAX_RANGE_MS => Ok(ms),
        Ok(0) => Err(Error::Invalid(
            "parse error: a range must be at least 1ms, such as [5m] or [1h]".into(),
        )),
        _ => Err(Error::Invalid("parse error: the range is too long".into())),
    }
}

#[cfg(test)]
mod tests;
