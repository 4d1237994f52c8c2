//! The time budget of one query: a deadline and a cancellation flag, checked by the operators
//! as they read windows, so a query that turned out too expensive (or whose client went away)
//! stops reading instead of running to its end.
//!
//! The budget travels with the thread that runs the query, not through every operator's
//! signature: [`Budget::run`] installs it for the duration of a closure (the server wraps
//! each query in it), [`check`] reads it, and [`crate::exec::par_chunks`] hands it to the
//! threads it spawns. A thread with no budget installed is never stopped (tests, benches, the
//! rule evaluator, which bounds itself by window). Checking is a relaxed atomic load and, every
//! [`CHECK_EVERY`] windows, one clock read.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Windows read between two clock reads of [`check_every`].
pub const CHECK_EVERY: u64 = 256;

/// A query's deadline and cancellation flag.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    deadline: Option<(Instant, Duration)>,
    cancelled: Option<Arc<AtomicBool>>,
}

thread_local! {
    static CURRENT: RefCell<Option<Budget>> = const { RefCell::new(None) };
}

impl Budget {
    /// A budget that ends `timeout` from now.
    pub fn with_timeout(timeout: Duration) -> Budget {
        Budget {
            deadline: Some((Instant::now() + timeout, timeout)),
            cancelled: None,
        }
    }

    /// The same budget, also ended when `flag` turns true (the client went away).
    pub fn cancelled_by(mut self, flag: Arc<AtomicBool>) -> Budget {
        self.cancelled = Some(flag);
        self
    }

    /// Runs `f` with this budget installed on the current thread (the previous one is put back
    /// afterwards, also when `f` panics).
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Restore(Option<Budget>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let prev = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = prev);
            }
        }
        let prev = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(prev);
        f()
    }

    /// `Ok` while the budget lasts.
    pub fn check(&self) -> Result<()> {
        if self
            .cancelled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(Error::Cancelled);
        }
        if let Some((deadline, timeout)) = self.deadline
            && Instant::now() >= deadline
        {
            return Err(Error::DeadlineExceeded(format!(
                "the query ran longer than its {}s budget; narrow the range, the step or the \
                 selector",
                timeout.as_secs_f64()
            )));
        }
        Ok(())
    }
}

/// The budget installed on this thread, if any.
pub fn current() -> Option<Budget> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Runs `f` under `budget` when there is one (how spawned threads inherit their parent's).
pub fn run_under<T>(budget: Option<&Budget>, f: impl FnOnce() -> T) -> T {
    match budget {
        Some(b) => b.run(f),
        None => f(),
    }
}

/// Checks the installed budget, if any.
pub fn check() -> Result<()> {
    CURRENT.with(|c| match c.borrow().as_ref() {
        Some(b) => b.check(),
        None => Ok(()),
    })
}

/// Checks the installed budget every [`CHECK_EVERY`] calls of a loop (`n` counts them).
pub fn check_every(n: u64) -> Result<()> {
    if n.is_multiple_of(CHECK_EVERY) {
        check()
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_stops_only_the_thread_it_is_installed_on() {
        assert!(check().is_ok(), "no budget: never stops");
        let b = Budget::with_timeout(Duration::ZERO);
        let inside = b.run(check);
        assert!(
            matches!(inside, Err(Error::DeadlineExceeded(_))),
            "{inside:?}"
        );
        assert!(check().is_ok(), "the previous (no) budget is back");
        let spawned = b.run(|| {
            let mine = current();
            std::thread::spawn(move || run_under(mine.as_ref(), check))
                .join()
                .unwrap()
        });
        assert!(
            spawned.is_err(),
            "a spawned thread inherits it when handed over"
        );
    }

    #[test]
    fn cancellation_and_a_generous_deadline() {
        let flag = Arc::new(AtomicBool::new(false));
        let b = Budget::with_timeout(Duration::from_secs(3600)).cancelled_by(Arc::clone(&flag));
        assert!(b.check().is_ok());
        flag.store(true, Ordering::Relaxed);
        assert!(matches!(b.check(), Err(Error::Cancelled)));
        assert!(check_every(1).is_ok(), "between checks nothing is read");
    }
}
