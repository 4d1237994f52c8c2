//! Label matchers, the one filter language shared by remote read (`LabelMatcher` messages) and
//! the PromQL selectors of the query API (`name{l="v", l!="v", l=~"re", l!~"re"}`).
//!
//! Semantics follow Prometheus' label matching:
//! - a label a series does not have matches as the empty string, so `{region=""}` selects the
//!   series without a `region` label and `{region!=""}` those with one;
//! - `=~` and `!~` take RE2 patterns that must match the **whole** value: the pattern is
//!   compiled as `^(?:pat)$`, so `=~"eu"` does not match `"europe"`. Rust's `regex` crate
//!   implements the RE2 syntax (no backreferences or lookaround, as in RE2).

use regex::Regex;

use crate::error::{Error, Result};

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`: equal.
    Eq,
    /// `!=`: not equal.
    Neq,
    /// `=~`: the whole value matches the pattern.
    Re,
    /// `!~`: the whole value does not match the pattern.
    Nre,
}

impl MatchOp {
    /// The PromQL spelling.
    pub fn symbol(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Neq => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// Most bytes of a regular expression a matcher accepts; patterns are compiled per request.
const MAX_PATTERN_LEN: usize = 4096;
/// Compiled-program size limit for one pattern (bytes), so a hostile pattern cannot make the
/// server build a huge automaton.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One compiled label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name (`__name__` for the metric name).
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or pattern as given.
    pub value: String,
    /// The anchored pattern, for `=~` and `!~`.
    re: Option<Regex>,
}

impl Matcher {
    /// Compiles a matcher; an invalid pattern is an invalid-argument error naming it.
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Matcher> {
        let name = name.into();
        let value = value.into();
        let re = match op {
            MatchOp::Eq | MatchOp::Neq => None,
            MatchOp::Re | MatchOp::Nre => {
                if value.len() > MAX_PATTERN_LEN {
                    return Err(Error::Invalid(format!(
                        "the pattern for label {name} is longer than {MAX_PATTERN_LEN} bytes"
                    )));
                }
                let anchored = format!("^(?:{value})$");
                let re = regex::RegexBuilder::new(&anchored)
                    .size_limit(REGEX_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        Error::Invalid(format!(
                            "invalid regular expression {value:?} for label {name}: {}",
                            first_line(&e.to_string())
                        ))
                    })?;
                Some(re)
            }
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// `name = value`.
    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Eq,
            value: value.into(),
            re: None,
        }
    }

    /// Whether a label value (`""` for a missing label) satisfies the matcher.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Eq, _) => v == self.value,
            (MatchOp::Neq, _) => v != self.value,
            (MatchOp::Re, Some(re)) => re.is_match(v),
            (MatchOp::Nre, Some(re)) => !re.is_match(v),
            // `new` always compiles a pattern for these two.
            (MatchOp::Re | MatchOp::Nre, None) => false,
        }
    }

    /// Whether the empty string (a missing label) satisfies the matcher.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    /// Whether a series with these labels (sorted or not) passes the matcher.
    pub fn matches_labels(&self, labels: &[(String, String)]) -> bool {
        let v = labels
            .iter()
            .find(|(n, _)| *n == self.name)
            .map_or("", |(_, v)| v.as_str());
        self.matches(v)
    }

    /// The value this matcher pins the label to, if it is an equality on a non-empty value.
    pub fn pinned(&self) -> Option<&str> {
        (self.op == MatchOp::Eq && !self.value.is_empty()).then_some(self.value.as_str())
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.symbol(), self.value)
    }
}

fn first_line(s: &str) -> &str {
    s.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or(s)
}

/// Whether every matcher passes on `labels`.
pub fn all_match(matchers: &[Matcher], labels: &[(String, String)]) -> bool {
    matchers.iter().all(|m| m.matches_labels(labels))
}

/// Refuses selectors that would select every series of the database: Prometheus requires at
/// least one matcher that does not match the empty string, and so do we.
pub fn check_selective(matchers: &[Matcher]) -> Result<()> {
    if matchers.iter().any(|m| !m.matches_empty()) {
        return Ok(());
    }
    Err(Error::Invalid(
        "a selector needs at least one matcher that does not match the empty string, such as a metric name or model=\"...\"".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn equality_and_inequality() {
        let m = Matcher::new(MatchOp::Eq, "model", "fraud").unwrap();
        assert!(m.matches("fraud"));
        assert!(!m.matches("fraud2"));
        assert!(!m.matches(""));
        let m = Matcher::new(MatchOp::Neq, "model", "fraud").unwrap();
        assert!(!m.matches("fraud"));
        assert!(m.matches("ctr"));
        assert!(m.matches(""));
        assert_eq!(m.pinned(), None);
        assert_eq!(Matcher::eq("model", "x").pinned(), Some("x"));
        assert_eq!(Matcher::eq("region", "").pinned(), None);
    }

    #[test]
    fn regexes_match_the_whole_value() {
        let m = Matcher::new(MatchOp::Re, "region", "eu").unwrap();
        assert!(m.matches("eu"));
        assert!(!m.matches("europe"), "unanchored match leaked");
        assert!(!m.matches("neu"));
        // An alternation is anchored as a whole, not only its first and last branch.
        let m = Matcher::new(MatchOp::Re, "region", "eu|us").unwrap();
        assert!(m.matches("eu") && m.matches("us"));
        assert!(!m.matches("eux") && !m.matches("xus") && !m.matches("eu|us"));
        let m = Matcher::new(MatchOp::Re, "feature", "txn_.*").unwrap();
        assert!(m.matches("txn_amount") && m.matches("txn_"));
        assert!(!m.matches("a_txn_amount"));
        let m = Matcher::new(MatchOp::Nre, "feature", "\\$.+").unwrap();
        assert!(!m.matches("$score"));
        assert!(m.matches("amount"));
        assert!(m.matches(""));
        // RE2 character classes and flags.
        let m = Matcher::new(MatchOp::Re, "v", "(?i)V[[:digit:]]+").unwrap();
        assert!(m.matches("v12") && m.matches("V3"));
        assert!(!m.matches("v"));
    }

    #[test]
    fn missing_labels_match_as_empty() {
        let ls = labels(&[("__name__", "driftdb_psi"), ("model", "fraud")]);
        let m = Matcher::new(MatchOp::Eq, "region", "").unwrap();
        assert!(m.matches_labels(&ls));
        let m = Matcher::new(MatchOp::Neq, "region", "").unwrap();
        assert!(!m.matches_labels(&ls));
        let m = Matcher::new(MatchOp::Re, "region", ".*").unwrap();
        assert!(m.matches_labels(&ls));
        let m = Matcher::new(MatchOp::Re, "region", ".+").unwrap();
        assert!(!m.matches_labels(&ls));
        let m = Matcher::new(MatchOp::Nre, "region", "eu").unwrap();
        assert!(m.matches_labels(&ls));
        let with = labels(&[("model", "fraud"), ("region", "eu")]);
        assert!(!m.matches_labels(&with));
        assert!(all_match(
            &[
                Matcher::eq("model", "fraud"),
                Matcher::new(MatchOp::Re, "region", "e.").unwrap()
            ],
            &with
        ));
    }

    #[test]
    fn bad_patterns_are_invalid_arguments() {
        let e = Matcher::new(MatchOp::Re, "model", "(").unwrap_err();
        assert_eq!(e.kind(), driftdb_engine::ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("model"), "{e}");
        assert!(Matcher::new(MatchOp::Re, "model", "a(?=b)").is_err());
        assert!(Matcher::new(MatchOp::Re, "model", "x".repeat(5000)).is_err());
    }

    #[test]
    fn selectors_must_select_something() {
        assert!(check_selective(&[Matcher::new(MatchOp::Re, "model", ".*").unwrap()]).is_err());
        assert!(check_selective(&[]).is_err());
        assert!(check_selective(&[Matcher::eq("__name__", "driftdb_psi")]).is_ok());
        assert!(check_selective(&[Matcher::new(MatchOp::Re, "model", ".+").unwrap()]).is_ok());
    }
}
