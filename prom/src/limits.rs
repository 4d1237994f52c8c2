//! What one query may cost, and the budget that stops it.
//!
//! [`Limits`] are static bounds checked **before** work is done: the query text's length,
//! nesting and operator count (checked by [`crate::scan`] before the PromQL parser runs, so a
//! hostile query cannot overflow a thread's stack), the lowered expression's depth, the number
//! of instants of a range query, and, as soon as a selector's candidate series are known and
//! before anything is read or allocated, series × instants, samples and windows. Passing one
//! is [`Error::TooLarge`] (kind `InvalidArgument`): the message names the limit and how to
//! narrow the query, and retrying the same query cannot help.
//!
//! A [`Budget`] carries a deadline and a cancellation flag into every loop that reads or
//! computes, checked periodically; running out is [`Error::Timeout`] (kind `DeadlineExceeded`)
//! or [`Error::Cancelled`] (kind `Cancelled`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Static bounds on one query or selection. `Limits::default()` holds the documented
/// defaults (`prom/PROMETHEUS_API.md`, "Limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of PromQL text.
    pub max_query_bytes: usize,
    /// Most brackets, parentheses and braces open at once in the text.
    pub max_nesting: usize,
    /// Most operators (unary and binary, `and`/`or`/`unless`/`atan2` included) in the text.
    pub max_operators: usize,
    /// Most regular-expression matchers (`=~`, `!~`) in the text: each is compiled before
    /// parsing, by the parser and again for evaluation, and a pattern near the compiled-size
    /// limit takes milliseconds to compile.
    pub max_regex_matchers: usize,
    /// Most levels of the parsed expression tree (a backstop behind the scan's limits).
    pub max_depth: usize,
    /// Most instants a range query evaluates (Prometheus' own limit is 11,000).
    pub max_points: usize,
    /// Most values (series × instants) one selector may hold for the evaluator.
    pub max_cells: usize,
    /// Most samples one selection may return.
    pub max_samples: usize,
    /// Most series one selection may return, or one series listing may list.
    pub max_series: usize,
    /// Most stored windows one selection may read and merge, estimated from the catalog
    /// (series × windows in the range) before anything is read.
    pub max_windows: u64,
    /// Most samples the `*_over_time` functions of one selector may visit (each instant
    /// visits the samples of its range).
    pub max_range_samples: u64,
    /// Windows evaluated per pass over a feature (bounds the merged states held at once).
    pub windows_per_pass: usize,
    /// How long one query may run ([`Budget::new`] takes it).
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_query_bytes: 64 * 1024,
            max_nesting: 64,
            max_operators: 256,
            max_regex_matchers: 16,
            max_depth: 512,
            max_points: 11_000,
            max_cells: 5_000_000,
            max_samples: 20_000_000,
            max_series: 100_000,
            max_windows: 5_000_000,
            max_range_samples: 200_000_000,
            windows_per_pass: 2880,
            timeout: Duration::from_secs(60),
        }
    }
}

/// A deadline and a cancellation flag, shared by everything one query does. Cloning shares
/// the flag.
#[derive(Debug, Clone)]
pub struct Budget {
    timeout: Duration,
    deadline: Option<Instant>,
    cancelled: Arc<AtomicBool>,
}

impl Budget {
    /// A budget that runs out `timeout` from now.
    pub fn new(timeout: Duration) -> Budget {
        Budget {
            timeout,
            deadline: Instant::now().checked_add(timeout),
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A budget without a deadline (tests, tools); it can still be cancelled.
    pub fn unlimited() -> Budget {
        Budget {
            timeout: Duration::MAX,
            deadline: None,
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// This budget, cancelled when `flag` is set (e.g. by the HTTP layer when the client
    /// disconnects, or by shutdown).
    pub fn with_cancel_flag(mut self, flag: Arc<AtomicBool>) -> Budget {
        self.cancelled = flag;
        self
    }

    /// The cancellation flag; setting it stops the query at its next check.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.cancelled)
    }

    /// Cancels the query.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }

    /// Whether the budget is spent (cancelled or past its deadline).
    pub fn exhausted(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// When the budget runs out, if it has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// `Ok` while the query may go on; [`Error::Cancelled`] or [`Error::Timeout`] otherwise.
    pub fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Error::Timeout(self.timeout));
        }
        Ok(())
    }
}

/// Calls [`Budget::check`] every `every` ticks: for loops whose body is too cheap to read the
/// clock each time.
#[derive(Debug)]
pub(crate) struct Ticker<'a> {
    budget: &'a Budget,
    every: u32,
    n: u32,
}

impl<'a> Ticker<'a> {
    pub(crate) fn new(budget: &'a Budget, every: u32) -> Ticker<'a> {
        Ticker {
            budget,
            every: every.max(1),
            n: 0,
        }
    }

    pub(crate) fn tick(&mut self) -> Result<()> {
        self.n += 1;
        if self.n >= self.every {
            self.n = 0;
            self.budget.check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_time_out_and_cancel() {
        let b = Budget::new(Duration::ZERO);
        assert!(matches!(b.check(), Err(Error::Timeout(_))));
        let b = Budget::unlimited();
        assert!(b.check().is_ok() && !b.exhausted());
        let shared = b.clone();
        shared.cancel();
        assert!(matches!(b.check(), Err(Error::Cancelled)));
        assert!(b.exhausted());
        let flag = Arc::new(AtomicBool::new(false));
        let b = Budget::new(Duration::from_secs(3600)).with_cancel_flag(Arc::clone(&flag));
        assert!(b.check().is_ok());
        flag.store(true, Ordering::Relaxed);
        assert!(matches!(b.check(), Err(Error::Cancelled)));
        let b = Budget::unlimited();
        let mut t = Ticker::new(&b, 3);
        b.cancel();
        assert!(t.tick().is_ok() && t.tick().is_ok());
        assert!(t.tick().is_err());
    }
}
