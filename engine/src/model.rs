//! Model definitions (docs/DATA_MODEL.md and §5's model JSON).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::time::{DurationMs, Resolution};

/// What a model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Binary classification with a probability score.
    Binary,
    /// Multiclass classification.
    Multiclass,
    /// Regression.
    Regression,
    /// Ranking: a list of items with scores.
    Ranking,
}

/// How a feature's values are summarised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureKind {
    /// Numbers.
    Numeric,
    /// Strings and booleans, compared as strings.
    Categorical,
}

fn default_grace() -> String {
    "5m".into()
}
fn default_delay() -> String {
    "30d".into()
}
fn default_cap() -> u32 {
    64
}
fn default_sampling() -> f64 {
    1.0
}

/// A model definition as uploaded (`driftdb model create --file MODEL.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelDef {
    /// Model id.
    pub id: String,
    /// Task type.
    pub task: Task,
    /// Window width: `15m` or `1h`.
    pub window: String,
    /// How long after a window's end late events still count before it closes (default `5m`).
    #[serde(default = "default_grace")]
    pub grace: String,
    /// How long a prediction waits for its label (default `30d`).
    #[serde(default = "default_delay")]
    pub max_label_delay: String,
    /// Segment keys.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Distinct values kept per segment key; the rest fold into `__other__` (default 64).
    #[serde(default = "default_cap")]
    pub segment_cap: u32,
    /// Feature schema.
    pub features: BTreeMap<String, FeatureKind>,
    /// Share of events kept by server-side sampling, in (0, 1] (default 1).
    #[serde(default = "default_sampling")]
    pub sampling: f64,
    /// Owning team, for access control.
    #[serde(default)]
    pub team: Option<String>,
}

/// Longest accepted identifier (model, version, feature, segment key or value), in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Longest accepted categorical value, in bytes: categories are kept verbatim in frequent-item
/// sketches and reference profiles, so one huge value would cost memory and disk many times.
pub const MAX_CATEGORY_LEN: usize = 1024;

/// `s` as an error message may quote it: at most 64 characters, the rest summarised, so an
/// error never echoes megabytes of input back.
pub fn clip(s: &str) -> String {
    const KEEP: usize = 64;
    match s.char_indices().nth(KEEP) {
        None => s.to_string(),
        Some((at, _)) => format!("{}… ({} bytes)", &s[..at], s.len()),
    }
}

/// Checks a model, version, feature or segment name.
pub fn validate_name(what: &'static str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            what,
            format!("{name:?} must be 1..={MAX_NAME_LEN} bytes"),
        ));
    }
    if name.starts_with('$') || name.starts_with("__") || name.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(
            what,
            format!("{name:?} must not start with '$' or '__' or contain control characters"),
        ));
    }
    Ok(())
}

impl ModelDef {
    /// Validates every field and returns the window resolution.
    pub fn validate(&self) -> Result<Resolution> {
        validate_name("model id", &self.id)?;
        if let Some(team) = &self.team {
            validate_name("team", team)?;
        }
        let width = DurationMs::parse(&self.window)?;
        let res = match Resolution::from_width_ms(width.millis()) {
            Some(r @ (Resolution::M15 | Resolution::H1)) => r,
            _ => {
                return Err(Error::invalid(
                    "window",
                    format!("{:?} must be 15m or 1h", self.window),
                ));
            }
        };
        DurationMs::parse(&self.grace)?;
        DurationMs::parse(&self.max_label_delay)?;
        for s in &self.segments {
            validate_name("segment key", s)?;
        }
        if self.segment_cap == 0 || self.segment_cap > 10_000 {
            return Err(Error::invalid(
                "segment_cap",
                format!("{} must be in 1..=10000", self.segment_cap),
            ));
        }
        if self.features.is_empty() {
            return Err(Error::invalid(
                "features",
                "a model needs at least one feature",
            ));
        }
        for f in self.features.keys() {
            validate_name("feature", f)?;
        }
        if !(self.sampling > 0.0 && self.sampling <= 1.0) {
            return Err(Error::invalid(
                "sampling",
                format!("{} must be in (0, 1]", self.sampling),
            ));
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_model_parses_and_validates() {
        let text = r#"{"id":"fraud","task":"binary","window":"15m","grace":"5m","max_label_delay":"30d",
            "segments":["channel","country"],"segment_cap":64,
            "features":{"amount":"numeric","browser":"categorical"},"sampling":1.0}"#;
        let m: ModelDef = serde_json::from_str(text).unwrap();
        assert_eq!(m.validate().unwrap(), Resolution::M15);
        let mut bad = m.clone();
        bad.window = "10m".into();
        assert!(bad.validate().is_err());
        let mut bad = m;
        bad.features.insert("$score".into(), FeatureKind::Numeric);
        assert!(bad.validate().is_err());
    }
}
