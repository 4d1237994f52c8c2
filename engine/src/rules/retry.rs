//! Webhook delivery retries: a deterministic exponential backoff and the dead-letter deadline.
//!
//! No jitter: the schedule is a pure function of the attempt number, so tests and restarts
//! see the same times. (Deliveries to one receiver are already spread by their different first
//! failure times.)

use std::time::Duration;

use crate::time::Timestamp;

/// When to try a failed delivery again, and when to give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait after the first failed attempt (default 1 s); doubled after each further failure.
    pub initial: Duration,
    /// Longest wait between two attempts (default 5 min).
    pub max_delay: Duration,
    /// Time after the first failure when the delivery is dead-lettered (default 24 h).
    pub dead_letter_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            dead_letter_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts: `initial · 2^(failures − 1)`, capped at
    /// `max_delay` (1 s, 2 s, 4 s … 256 s, 300 s, 300 s … by default). Zero for 0 failures.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.initial
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_delay)
    }

    /// After `failures` failed attempts (the first at `first_failure`), how long from `now` to
    /// wait before the next one, or `None` when the delivery should be dead-lettered.
    ///
    /// The wait is [`RetryPolicy::delay`], shortened so the last attempt happens exactly at the
    /// deadline `first_failure + dead_letter_after`; once `now` reaches the deadline the answer
    /// is `None`. So a receiver down for anything less than `dead_letter_after` loses nothing.
    pub fn next_attempt(
        &self,
        failures: u32,
        first_failure: Timestamp,
        now: Timestamp,
    ) -> Option<Duration> {
        let budget_ms = i64::try_from(self.dead_letter_after.as_millis()).unwrap_or(i64::MAX);
        let deadline = first_failure.saturating_add_ms(budget_ms);
        if now >= deadline {
            return None;
        }
        let left = Duration::from_millis(deadline.millis().saturating_sub(now.millis()) as u64);
        Some(self.delay(failures.max(1)).min(left))
    }
}

/// What an HTTP response means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// 2xx: done.
    Delivered,
    /// 408, 425, 429 or 5xx: try again later.
    Retry,
    /// Other statuses (3xx are not followed; most 4xx will not succeed by repetition): record
    /// the failure and dead-letter now.
    Permanent,
}

/// Classifies an HTTP status code. Transport errors (refused, timeout) are [`DeliveryOutcome::Retry`]
/// and have no status; the server maps them itself.
pub fn classify_status(status: u16) -> DeliveryOutcome {
    match status {
        200..=299 => DeliveryOutcome::Delivered,
        408 | 425 | 429 | 500..=599 => DeliveryOutcome::Retry,
        _ => DeliveryOutcome::Permanent,
    }
}
