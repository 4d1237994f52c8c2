//! DriftQL at the server's edge (README.md; query/DRIFTQL.md): running queries off the async runtime, reading
//! the time arguments of the gRPC and HTTP APIs, and composing DriftQL text from HTTP
//! parameters without letting a parameter change the shape of the query.
//!
//! Queries read RocksDB synchronously, so every one runs on tokio's blocking pool against a
//! [`Context`] built from the node's parts: the store as the sketch reader, the registry *as the
//! caller may see it* as the catalog ([`VisibleCatalog`]: another team's models do not exist
//! for the planner), and the node's clock as `now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use driftdb_engine::time::{Clock, DurationMs, Timestamp};
use driftdb_query::{Budget, Context};
use driftdb_storage::Store;

use crate::auth::{Principal, VisibleCatalog};
use crate::error::{Error, Result};
use crate::registry::Registry;

/// How reads are bounded: queries running at once and the time each may take.
#[derive(Debug, Clone)]
pub struct QueryGate {
    /// One permit per query running; a query waits at most [`QUERY_SLOT_WAIT`] for one.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// The number of slots (for messages).
    pub limit: usize,
    /// How long one query may run before it stops with DEADLINE_EXCEEDED.
    pub timeout: Duration,
}

impl QueryGate {
    /// A gate of `limit` slots and `timeout` per query.
    pub fn new(limit: usize, timeout: Duration) -> QueryGate {
        QueryGate {
            slots: Arc::new(tokio::sync::Semaphore::new(limit.max(1))),
            limit: limit.max(1),
            timeout,
        }
    }
}

/// How long a query waits for a free slot before it is refused (RESOURCE_EXHAUSTED: a retry
/// after the running queries finish can succeed).
pub const QUERY_SLOT_WAIT: Duration = Duration::from_secs(2);

/// Sets the flag when dropped: the future of a request whose client went away is dropped by
/// the server, and the query it was waiting for stops at its next budget check.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `f` on the blocking pool with a query context over `store` and `registry` as
/// `principal` sees them, "now" read from `clock` when the work starts. The query holds one of
/// `gate`'s slots and runs under its time budget (`driftdb_query::budget`); when the caller
/// stops waiting (its future is dropped) the query is cancelled.
pub async fn with_context<T, F>(
    store: &Arc<Store>,
    registry: &Arc<Registry>,
    clock: &Arc<dyn Clock>,
    gate: &QueryGate,
    principal: &Principal,
    f: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&Context<'_>) -> Result<T> + Send + 'static,
{
    let permit = match tokio::time::timeout(
        QUERY_SLOT_WAIT,
        Arc::clone(&gate.slots).acquire_owned(),
    )
    .await
    {
        Ok(Ok(p)) => p,
        _ => {
            return Err(Error::Overloaded(format!(
                "every query slot is busy (limit {}); retry in a few seconds",
                gate.limit
            )));
        }
    };
    let (store, registry, clock) = (Arc::clone(store), Arc::clone(registry), Arc::clone(clock));
    let principal = principal.clone();
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel = CancelOnDrop(Arc::clone(&cancelled));
    let budget = Budget::with_timeout(gate.timeout).cancelled_by(cancelled);
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let catalog = VisibleCatalog {
            registry: &registry,
            principal: &principal,
        };
        let ctx = Context {
            reader: &*store,
            catalog: &catalog,
            now: clock.now(),
        };
        budget.run(|| f(&ctx))
    })
    .await
    .map_err(|e| Error::Internal(format!("query task failed: {e}")))?
}

/// Clears the placeholder position (`line 0, column 0`) from errors of calls that had no query
/// text to point into, such as the drift summary or a model looked up for an HTTP parameter,
/// so their message does not start with a meaningless `at line 0, column 0: `.
pub fn without_placeholder_pos(e: driftdb_query::Error) -> driftdb_query::Error {
    use driftdb_query::Error as Q;
    let placeholder = |p: &Option<driftdb_query::ast::Pos>| p.is_some_and(|p| p.line == 0);
    match e {
        Q::NotFound {
            pos,
            what,
            name,
            hint,
        } if placeholder(&pos) => Q::NotFound {
            pos: None,
            what,
            name,
            hint,
        },
        Q::Plan { pos, message } if placeholder(&pos) => Q::Plan { pos: None, message },
        other => other,
    }
}

/// A time argument of the APIs: an RFC 3339 instant, or `now` minus an optional duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeArg {
    /// A fixed instant.
    At(Timestamp),
    /// `now`, or `now-D` with `D` in milliseconds.
    Now {
        /// How far before now, in milliseconds (0 for plain `now`).
        minus_ms: i64,
    },
}

impl TimeArg {
    /// Reads `s`: empty (or only spaces) gives `None`; otherwise RFC 3339 (`2026-03-01T00:00:00Z`),
    /// `now` or `now-DURATION` (`now-1h`, `now - 7d`). `what` names the argument in errors.
    pub fn parse(what: &str, s: &str) -> Result<Option<TimeArg>> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        let bad = || {
            Error::Invalid(format!(
                "{what}: {s:?} is not a time; use RFC 3339 (2026-03-01T00:00:00Z), now or now-DURATION (now-1h)"
            ))
        };
        let lower = s.to_ascii_lowercase();
        if let Some(rest) = lower.strip_prefix("now") {
            let rest = rest.trim_start();
            if rest.is_empty() {
                return Ok(Some(TimeArg::Now { minus_ms: 0 }));
            }
            let d = rest.strip_prefix('-').ok_or_else(bad)?.trim_start();
            let d = DurationMs::parse(d).map_err(|_| bad())?;
            return Ok(Some(TimeArg::Now {
                minus_ms: d.millis(),
            }));
        }
        Timestamp::parse_rfc3339(s)
            .map(|t| Some(TimeArg::At(t)))
            .map_err(|_| bad())
    }

    /// The instant this stands for when "now" is `now`.
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            TimeArg::At(t) => t,
            TimeArg::Now { minus_ms } => now.saturating_add_ms(-minus_ms),
        }
    }

    /// The same kind of time, `ms` earlier.
    pub fn earlier(self, ms: i64) -> TimeArg {
        match self {
            TimeArg::At(t) => TimeArg::At(t.saturating_add_ms(-ms)),
            TimeArg::Now { minus_ms } => TimeArg::Now {
                minus_ms: minus_ms.saturating_add(ms),
            },
        }
    }

    /// As a DriftQL TIME: canonical RFC 3339, `now` or `now-D`.
    pub fn to_driftql(self) -> String {
        match self {
            TimeArg::At(t) => t.to_rfc3339(),
            TimeArg::Now { minus_ms } => match DurationMs::new(minus_ms) {
                Ok(d) => format!("now-{d}"),
                Err(_) => "now".to_string(),
            },
        }
    }
}

pub use driftdb_query::text::{is_identifier, model_ref, name};

/// The range clause for optional bounds: `over DEFAULT` without either; otherwise
/// `from A to B`, where a missing `to` is `now` and a missing `from` is `default_ms` before `to`.
pub fn range_clause(from: Option<TimeArg>, to: Option<TimeArg>, default: DurationMs) -> String {
    match (from, to) {
        (None, None) => format!("over {default}"),
        (from, to) => {
            let to = to.unwrap_or(TimeArg::Now { minus_ms: 0 });
            let from = from.unwrap_or_else(|| to.earlier(default.millis()));
            format!("from {} to {}", from.to_driftql(), to.to_driftql())
        }
    }
}

/// A `step` argument (`15m`, `1h`, `1d`; empty for none) in milliseconds.
pub fn step_arg(s: &str) -> Result<Option<i64>> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    driftdb_engine::time::DurationMs::parse(s)
        .map(|d| Some(d.millis()))
        .map_err(|e| Error::Invalid(format!("step: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_unless_identifiers() {
        assert_eq!(name("fraud"), "fraud");
        assert_eq!(name("_m2"), "_m2");
        assert_eq!(name("fraud-eu"), "\"fraud-eu\"");
        assert_eq!(name("2fast"), "\"2fast\"");
        assert_eq!(name("a\") over 1h \"\\"), "\"a\\\") over 1h \\\"\\\\\"");
        assert_eq!(model_ref("m", Some("1.2")), "m@\"1.2\"");
        // What we build parses back to the same names.
        let q = format!("psi({}.*) over 1h", model_ref("we\"ird\\id", Some("v 1")));
        let stmt = driftdb_query::parse(&q).unwrap();
        assert!(stmt.to_string().contains("we\\\"ird\\\\id"), "{stmt}");
    }

    #[test]
    fn time_arguments() {
        let now = Timestamp(10_000_000);
        assert_eq!(TimeArg::parse("from", " ").unwrap(), None);
        assert_eq!(
            TimeArg::parse("from", "now").unwrap(),
            Some(TimeArg::Now { minus_ms: 0 })
        );
        let t = TimeArg::parse("from", "now - 1h").unwrap().unwrap();
        assert_eq!(t.resolve(now), Timestamp(10_000_000 - 3_600_000));
        assert_eq!(t.to_driftql(), "now-1h");
        let t = TimeArg::parse("to", "2026-03-01T00:00:00Z")
            .unwrap()
            .unwrap();
        assert_eq!(t.to_driftql(), "2026-03-01T00:00:00.000Z");
        assert_eq!(
            t.earlier(3_600_000).to_driftql(),
            "2026-02-28T23:00:00.000Z"
        );
        for bad in [
            "yesterday",
            "now+1h",
            "now-",
            "now-1x",
            "2026-03-01",
            "now-1h; drop",
        ] {
            let e = TimeArg::parse("from", bad).unwrap_err().to_string();
            assert!(e.starts_with("from: "), "{e}");
        }
    }

    #[test]
    fn range_defaults() {
        let day = DurationMs::parse("24h").unwrap();
        assert_eq!(range_clause(None, None, day), "over 1d");
        assert_eq!(
            range_clause(
                Some(TimeArg::Now {
                    minus_ms: 7_200_000
                }),
                None,
                day
            ),
            "from now-2h to now"
        );
        assert_eq!(
            range_clause(
                None,
                Some(TimeArg::Now {
                    minus_ms: 3_600_000
                }),
                day
            ),
            "from now-25h to now-1h"
        );
    }
}
