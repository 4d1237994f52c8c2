//! Silences: "do not deliver alerts matching these matchers between these two instants".
//!
//! A silence is a set of matchers on an alert's labels (model, rule, feature, segment, version,
//! severity), a start, an end, who made it and why. While it is active, an alert it matches is
//! still recorded (history and `WatchAlerts` show it, marked silenced) but no action is called.
//! Each matcher is a glob (`*` any run, `?` one character); every given matcher must match.
//!
//! # Silence JSON
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `matchers` | object | `model` (required; `*` for every model, operators only), optional `rule`, `feature`, `segment` (`all` or `key=value`), `version`, `severity` |
//! | `starts_at` | RFC 3339 | optional; default: now |
//! | `ends_at` | RFC 3339 | when it stops; or give `duration` instead |
//! | `duration` | duration | e.g. `2h`, from `starts_at` |
//! | `created_by` | string | who (1–128 characters) |
//! | `comment` | string | why (1–1024 bytes), e.g. "retraining until 14:00" |
//!
//! ```json
//! {"matchers": {"model": "fraud", "rule": "psi-*"}, "duration": "2h",
//!  "created_by": "alice", "comment": "catalog refresh"}
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::def::RuleError;
use super::glob::glob_match;
use super::payload::Alert;
use crate::time::{DurationMs, Timestamp};

/// Longest a silence may last: one year.
pub const MAX_SILENCE_MS: i64 = 366 * 86_400_000;
/// Longest matcher value, `created_by` and id.
pub const MAX_SILENCE_FIELD_LEN: usize = 128;
/// Longest comment.
pub const MAX_SILENCE_COMMENT_LEN: usize = 1024;

/// The labels a silence may match, in the order they are shown.
pub const SILENCE_MATCHERS: [&str; 6] =
    ["model", "rule", "feature", "segment", "version", "severity"];

/// A silence as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    /// The server-assigned id (`s-<n>`); empty before it is stored.
    #[serde(default)]
    pub id: String,
    /// Label → glob. Always has `model`.
    pub matchers: BTreeMap<String, String>,
    /// First instant it applies (ms).
    pub starts_at_ms: i64,
    /// First instant it no longer applies (ms).
    pub ends_at_ms: i64,
    /// Who made it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

/// Where a silence is in its life at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SilenceState {
    /// Starts later.
    Pending,
    /// Applies now.
    Active,
    /// Over.
    Expired,
}

impl SilenceState {
    /// `pending`, `active` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Pending => "pending",
            SilenceState::Active => "active",
            SilenceState::Expired => "expired",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSilence {
    matchers: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: Option<String>,
    #[serde(default)]
    ends_at: Option<String>,
    #[serde(default)]
    duration: Option<String>,
    created_by: String,
    comment: String,
}

fn err(field: &str, reason: impl Into<String>) -> RuleError {
    RuleError {
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn instant(field: &str, s: &str) -> Result<Timestamp, RuleError> {
    Timestamp::parse_rfc3339(s).map_err(|_| {
        err(
            field,
            format!("`{s}` is not an RFC 3339 time such as 2026-03-01T12:00:00Z"),
        )
    })
}

impl Silence {
    /// Parses a silence from its JSON text (module docs); `now` fills in a missing start. The
    /// error names the field at fault.
    pub fn from_json(text: &str, now: Timestamp) -> Result<Silence, RuleError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| err("silence", format!("is not valid JSON: {e}")))?;
        if !v.is_object() {
            return Err(err("silence", "must be a JSON object"));
        }
        let raw = RawSilence::deserialize(&v).map_err(|e| err("silence", e.to_string()))?;
        let starts = match &raw.starts_at {
            Some(s) => instant("starts_at", s)?,
            None => now,
        };
        let ends = match (&raw.ends_at, &raw.duration) {
            (Some(_), Some(_)) => {
                return Err(err("duration", "give either ends_at or duration, not both"));
            }
            (None, None) => return Err(err("ends_at", "required (or give a duration)")),
            (Some(e), None) => instant("ends_at", e)?,
            (None, Some(d)) => {
                let d = DurationMs::parse(d).map_err(|_| {
                    err(
                        "duration",
                        format!("`{d}` is not a duration; expected e.g. 30m, 2h, 1d"),
                    )
                })?;
                starts.saturating_add_ms(d.millis())
            }
        };
        let s = Silence {
            id: String::new(),
            matchers: raw.matchers,
            starts_at_ms: starts.millis(),
            ends_at_ms: ends.millis(),
            created_by: raw.created_by,
            comment: raw.comment,
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), RuleError> {
        for (k, v) in &self.matchers {
            let at = format!("matchers.{k}");
            if !SILENCE_MATCHERS.contains(&k.as_str()) {
                return Err(err(
                    &at,
                    format!(
                        "unknown label; expected one of {}",
                        SILENCE_MATCHERS.join(", ")
                    ),
                ));
            }
            if v.is_empty() || v.len() > MAX_SILENCE_FIELD_LEN || v.chars().any(char::is_control) {
                return Err(err(
                    &at,
                    format!(
                        "must be 1..={MAX_SILENCE_FIELD_LEN} characters without control characters"
                    ),
                ));
            }
        }
        if !self.matchers.contains_key("model") {
            return Err(err(
                "matchers.model",
                "required (a model id, a glob, or * for every model)",
            ));
        }
        if self.ends_at_ms <= self.starts_at_ms {
            return Err(err("ends_at", "must be after starts_at"));
        }
        if self.ends_at_ms - self.starts_at_ms > MAX_SILENCE_MS {
            return Err(err("ends_at", "a silence lasts at most 366 days"));
        }
        let who = self.created_by.trim();
        if who.is_empty()
            || self.created_by.len() > MAX_SILENCE_FIELD_LEN
            || self.created_by.chars().any(char::is_control)
        {
            return Err(err(
                "created_by",
                format!(
                    "must be 1..={MAX_SILENCE_FIELD_LEN} characters without control characters"
                ),
            ));
        }
        if self.comment.trim().is_empty()
            || self.comment.len() > MAX_SILENCE_COMMENT_LEN
            || self.comment.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(err(
                "comment",
                format!(
                    "must be 1..={MAX_SILENCE_COMMENT_LEN} bytes without control characters \
                     other than newlines"
                ),
            ));
        }
        Ok(())
    }

    /// Whether the model matcher is a pattern (names more than one model, or could).
    pub fn model_is_pattern(&self) -> bool {
        self.matchers
            .get("model")
            .is_some_and(|m| m.contains(['*', '?']))
    }

    /// Where the silence is at `at`.
    pub fn state(&self, at: Timestamp) -> SilenceState {
        if at.millis() < self.starts_at_ms {
            SilenceState::Pending
        } else if at.millis() < self.ends_at_ms {
            SilenceState::Active
        } else {
            SilenceState::Expired
        }
    }

    /// Whether every matcher matches `alert` (whatever the time).
    pub fn matches(&self, alert: &Alert) -> bool {
        self.matchers.iter().all(|(k, pattern)| {
            let value = match k.as_str() {
                "model" => alert.model.as_str(),
                "rule" => alert.rule_id.as_str(),
                "feature" => alert.feature.as_deref().unwrap_or(""),
                "segment" => alert.segment.as_str(),
                "version" => alert.version.as_str(),
                "severity" => alert.severity.as_str(),
                _ => return false,
            };
            glob_match(pattern, value)
        })
    }

    /// Whether the silence is active at `at` and matches `alert`.
    pub fn silences(&self, alert: &Alert, at: Timestamp) -> bool {
        self.state(at) == SilenceState::Active && self.matches(alert)
    }
}
