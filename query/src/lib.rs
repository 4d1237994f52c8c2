//! DriftQL (query/DRIFTQL.md): lexer, parser, planner, operators and result tables.
//!
//! A query flows `parser::parse` → [`plan::plan`] (names resolved against a [`Catalog`],
//! errors pointing at the query text) → operators in [`exec`], [`explain`] and [`uplift`]
//! that read window sketches through `driftdb_storage::SeriesReader`, merge them per bucket and
//! compute statistics with `driftdb_engine::stats` → a [`Table`].
//!
//! ```text
//! psi(fraud.amount) over 24h step 15m
//! ks(fraud.*) over 1h top 5
//! explain(fraud) over 1h
//! ```
#![warn(missing_docs)]

pub mod ast;
pub mod budget;
pub mod catalog;
pub mod error;
pub mod exec;
pub mod explain;
pub mod importance;
pub mod lexer;
pub mod metrics;
pub mod parser;
pub mod plan;
pub mod summary;
pub mod table;
pub mod text;
pub mod uplift;

pub use budget::Budget;
pub use catalog::{Catalog, MemoryCatalog};
pub use error::{Error, Result};
pub use exec::ExecStats;
pub use parser::{ParseError, parse};
pub use plan::{Context, Plan, TimeRange};
pub use summary::{DriftSummary, drift_summary};
pub use table::{Cell, Table};

/// A query's answer.
#[derive(Debug, Clone, Default)]
pub struct QueryOutput {
    /// The result.
    pub table: Table,
    /// Things the reader should know (no reference, skipped series, corrupt windows...).
    pub warnings: Vec<String>,
    /// What the query read.
    pub stats: ExecStats,
}

/// Parses, plans and runs one DriftQL statement. `EXPLAIN <query>` returns the plan as a
/// one-column table (`plan`) without reading any sketch.
pub fn run(ctx: &Context<'_>, text: &str) -> Result<QueryOutput> {
    let stmt = parse(text)?;
    let plan = plan::plan(ctx, &stmt)?;
    if stmt.explain {
        let mut table = Table::new(["plan"]);
        for line in plan.describe() {
            table.rows.push(vec![Cell::Text(line)]);
        }
        return Ok(QueryOutput {
            table,
            ..Default::default()
        });
    }
    run_plan(ctx, &plan)
}

/// Runs a planned query.
pub fn run_plan(ctx: &Context<'_>, plan: &Plan) -> Result<QueryOutput> {
    let mut stats = ExecStats::default();
    let mut warnings = Vec::new();
    let table = match plan {
        Plan::Select(p) => {
            if p.scope.reference.is_none()
                && p.baseline == plan::BaselinePlan::Reference
                && p.metric.def.family == metrics::Family::Drift
            {
                warnings.push(format!(
                    "{}@{} has no reference profile: drift against the reference is null (load one with `driftdb reference load`, or use vs previous / offset / range)",
                    p.scope.def.id, p.scope.version
                ));
            }
            if let plan::BaselinePlan::Version(v) = &p.baseline
                && p.metric.def.family == metrics::Family::Drift
                && matches!(
                    p.metric.def.name,
                    "psi" | "js" | "hellinger" | "psi50" | "js50" | "hellinger50"
                )
            {
                warnings.push(format!(
                        "versions bin numeric features on their own reference edges: binned metrics of numeric features against version {v} are null; ks and wasserstein compare them"
                    ));
            }
            let rows = if importance::is_importance(p.metric.def) {
                importance::rows(ctx.reader, p, &mut stats, &mut warnings)?
            } else {
                exec::select_rows(ctx.reader, p, &mut stats)?
            };
            if rows.is_empty() {
                warnings.push(format!("no data for this selection in {}", p.range));
            }
            exec::project(p, rows)
        }
        Plan::Explain(p) => explain::run(ctx, p, &mut stats, &mut warnings)?,
        Plan::Uplift(p) => uplift::run(ctx, p, &mut stats, &mut warnings)?,
    };
    if stats.not_applicable > 0 {
        warnings.push(format!(
            "{} series skipped: the metric does not apply to their kind",
            stats.not_applicable
        ));
    }
    if stats.corrupt_skipped > 0 {
        warnings.push(format!(
            "{} stored windows failed their checksum and were left out",
            stats.corrupt_skipped
        ));
    }
    if stats.merge_errors > 0 {
        warnings.push(format!(
            "{} windows could not be merged with their neighbours and were left out",
            stats.merge_errors
        ));
    }
    Ok(QueryOutput {
        table,
        warnings,
        stats,
    })
}
