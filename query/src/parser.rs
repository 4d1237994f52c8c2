//! DriftQL parser (query/DRIFTQL.md): query text → [`Statement`].
//!
//! A hand-written recursive-descent parser with one token of lookahead (two for the optional
//! `EXPLAIN` prefix, which is also a call name). It never recurses beyond a fixed depth and
//! every loop consumes a token, so any input ends in a tree or a [`ParseError`].
//!
//! Errors name what would have been accepted at the failing token: each test of the current
//! token records its alternative, and consuming a token clears the record. So a clause written
//! out of order reports every clause that could still follow: `psi(fraud.amount) step 15m over
//! 24h` fails with `line 1, column 28: expected "by", "where", "having", "top", "bottom" or end
//! of query, found "over"`.
//!
//! This module also prints a [`Statement`] back as canonical DriftQL (its `Display`), such that
//! parsing the printed text gives the same tree up to positions.

use std::fmt;

use driftdb_engine::time::DurationMs;

use crate::ast::{
    Baseline, Call, CmpOp, Cond, EqOp, FeatureSel, Having, HavingField, ModelRef, Pos, Query,
    RangeSpec, Spanned, Statement, Target, TimeExpr, Top,
};
use crate::lexer::{Lexer, Special, Token, TokenKind, describe_found, is_identifier};

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 64 * 1024;

/// A syntax error: where, what would have been accepted there, and what was found instead.
///
/// Displays as `line 1, column 14: expected ")" or ",", found "over"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{pos}: expected {expected}, found {found}")]
pub struct ParseError {
    /// Where the offending token (or the end of input) starts.
    pub pos: Pos,
    /// What would have been accepted, e.g. `")" or ","` or `a duration such as 15m, 1h or 7d`.
    pub expected: String,
    /// What was there, ready to print: a quoted token text (`"over"`), `string "eu"`, or
    /// `end of input`.
    pub found: String,
}

/// Parses one DriftQL statement: an optional `EXPLAIN` followed by a query (query/DRIFTQL.md).
pub fn parse(text: &str) -> Result<Statement, ParseError> {
    if text.len() > MAX_QUERY_BYTES {
        return Err(ParseError {
            pos: Pos {
                line: 1,
                column: 1,
                offset: 0,
            },
            expected: format!("a query of at most {MAX_QUERY_BYTES} bytes"),
            found: format!("{} bytes", text.len()),
        });
    }
    Parser::new(text)?.statement()
}

/// Text for a punctuation token in error messages.
fn punct_text(kind: &TokenKind) -> &'static str {
    match kind {
        TokenKind::LParen => "\"(\"",
        TokenKind::RParen => "\")\"",
        TokenKind::Comma => "\",\"",
        TokenKind::Dot => "\".\"",
        TokenKind::At => "\"@\"",
        TokenKind::Star => "\"*\"",
        TokenKind::Eq => "\"=\"",
        TokenKind::Ne => "\"!=\"",
        TokenKind::Gt => "\">\"",
        TokenKind::Lt => "\"<\"",
        TokenKind::Ge => "\">=\"",
        TokenKind::Le => "\"<=\"",
        TokenKind::Minus => "\"-\"",
        _ => "a token",
    }
}

/// `a`, `a or b`, `a, b or c`.
fn one_of(items: &[String]) -> String {
    match items {
        [] => "something else".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

const DURATION_EXPECTED: &str = "a duration such as 15m, 1h or 7d";
const TIME_EXPECTED: &str = "a time such as 2026-03-01T00:00:00Z, now or now-1h";

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// The token under examination.
    current: Token<'a>,
    /// What has been tested against `current` so far, for the error message.
    expected: Vec<String>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Result<Self, ParseError> {
        let mut lexer = Lexer::new(text);
        let current = lexer.next_token()?;
        Ok(Parser {
            lexer,
            current,
            expected: Vec::new(),
        })
    }

    /// Consumes the current token and returns it.
    fn advance(&mut self) -> Result<Token<'a>, ParseError> {
        let next = self.lexer.next_token()?;
        self.expected.clear();
        Ok(std::mem::replace(&mut self.current, next))
    }

    /// Records an alternative accepted at the current token.
    fn note(&mut self, what: impl Into<String>) {
        let what = what.into();
        if !self.expected.contains(&what) {
            self.expected.push(what);
        }
    }

    /// An error at the current token listing every recorded alternative.
    fn error(&self) -> ParseError {
        self.error_expecting(one_of(&self.expected))
    }

    /// An error at the current token with the given expectation.
    fn error_expecting(&self, expected: impl Into<String>) -> ParseError {
        ParseError {
            pos: self.current.pos,
            expected: expected.into(),
            found: describe_found(&self.current.kind, self.current.text),
        }
    }

    /// Records `what` and fails at the current token.
    fn fail<T>(&mut self, what: impl Into<String>) -> Result<T, ParseError> {
        self.note(what);
        Err(self.error())
    }

    fn is_word(&self, word: &str) -> bool {
        self.current.kind == TokenKind::Ident && self.current.text.eq_ignore_ascii_case(word)
    }

    /// Whether the current token is the keyword `kw`; records it if not.
    fn at_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_word(kw);
        if !yes {
            self.note(format!("\"{kw}\""));
        }
        yes
    }

    /// Consumes the keyword `kw` if it is next, returning its position.
    fn eat_kw(&mut self, kw: &str) -> Result<Option<Pos>, ParseError> {
        if self.at_kw(kw) {
            Ok(Some(self.advance()?.pos))
        } else {
            Ok(None)
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<Pos, ParseError> {
        match self.eat_kw(kw)? {
            Some(pos) => Ok(pos),
            None => Err(self.error()),
        }
    }

    /// Whether the current token is the punctuation `kind`; records it if not.
    fn at(&mut self, kind: &TokenKind) -> bool {
        let yes = self.current.kind == *kind;
        if !yes {
            self.note(punct_text(kind));
        }
        yes
    }

    fn eat(&mut self, kind: &TokenKind) -> Result<bool, ParseError> {
        if self.at(kind) {
            self.advance()?;
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, kind: &TokenKind) -> Result<(), ParseError> {
        if self.eat(kind)? {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    // --- grammar --------------------------------------------------------------------------

    fn statement(&mut self) -> Result<Statement, ParseError> {
        let explain = self.explain_prefix()?;
        let query = self.query()?;
        if self.current.kind != TokenKind::Eof {
            return self.fail("end of query");
        }
        Ok(Statement { explain, query })
    }

    /// `EXPLAIN` before a query, told apart from the call `explain(` by the next token.
    fn explain_prefix(&mut self) -> Result<bool, ParseError> {
        if !self.is_word("explain") {
            return Ok(false);
        }
        let mut ahead = self.lexer.clone();
        if matches!(
            ahead.next_token(),
            Ok(Token {
                kind: TokenKind::LParen,
                ..
            })
        ) {
            return Ok(false);
        }
        self.advance()?;
        Ok(true)
    }

    /// `call [range] [step] [by] [where] [having] [top]`.
    fn query(&mut self) -> Result<Query, ParseError> {
        let call = self.call()?;

        let range = if let Some(pos) = self.eat_kw("over")? {
            Some(Spanned {
                value: RangeSpec::Over(self.duration()?),
                pos,
            })
        } else if let Some(pos) = self.eat_kw("from")? {
            let from = self.time()?;
            self.expect_kw("to")?;
            let to = self.time()?;
            Some(Spanned {
                value: RangeSpec::FromTo(from, to),
                pos,
            })
        } else {
            None
        };

        let step = match self.eat_kw("step")? {
            Some(pos) => Some(Spanned {
                value: self.duration()?,
                pos,
            }),
            None => None,
        };

        let mut by = Vec::new();
        if self.eat_kw("by")?.is_some() {
            loop {
                by.push(self.segment_key()?);
                if !self.eat(&TokenKind::Comma)? {
                    break;
                }
            }
        }

        let mut filters = Vec::new();
        if self.eat_kw("where")?.is_some() {
            loop {
                filters.push(self.cond()?);
                if self.eat_kw("and")?.is_none() {
                    break;
                }
            }
        }

        let having = match self.eat_kw("having")? {
            Some(pos) => Some(self.having(pos)?),
            None => None,
        };

        let top = if let Some(pos) = self.eat_kw("top")? {
            Some(Top {
                bottom: false,
                n: self.positive_int("a row count (an integer >= 1)")?.value,
                pos,
            })
        } else if let Some(pos) = self.eat_kw("bottom")? {
            Some(Top {
                bottom: true,
                n: self.positive_int("a row count (an integer >= 1)")?.value,
                pos,
            })
        } else {
            None
        };

        Ok(Query {
            call,
            range,
            step,
            by,
            filters,
            having,
            top,
        })
    }

    /// `NAME "(" ... ")"`, with the forms of `quantile`, `ndcg`, `explain` and `uplift`.
    fn call(&mut self) -> Result<Call, ParseError> {
        let name = self.metric_name()?;
        self.expect(&TokenKind::LParen)?;
        let call = match name.value.as_str() {
            "quantile" => {
                let q = self.quantile_level()?;
                self.expect(&TokenKind::Comma)?;
                Call::Quantile {
                    q,
                    target: self.target()?,
                }
            }
            "ndcg" => {
                let k = self.positive_int("a cut-off K (an integer >= 1)")?;
                self.expect(&TokenKind::Comma)?;
                Call::Ndcg {
                    k,
                    target: self.target()?,
                }
            }
            "explain" => Call::Explain {
                model: self.model()?,
            },
            "uplift" => {
                let metric = self.metric_name()?;
                self.expect(&TokenKind::Comma)?;
                let challenger = self.model()?;
                self.expect(&TokenKind::Comma)?;
                let champion = self.model()?;
                Call::Uplift {
                    metric,
                    challenger,
                    champion,
                }
            }
            _ => {
                let target = self.target()?;
                let baseline = if self.at(&TokenKind::RParen) {
                    None
                } else {
                    self.expect(&TokenKind::Comma)?;
                    self.expect_kw("vs")?;
                    Some(self.baseline()?)
                };
                Call::Metric {
                    name,
                    target,
                    baseline,
                }
            }
        };
        self.expect(&TokenKind::RParen)?;
        Ok(call)
    }

    /// A metric name (any identifier), lower-cased.
    fn metric_name(&mut self) -> Result<Spanned<String>, ParseError> {
        if self.current.kind != TokenKind::Ident {
            return self.fail("a metric name");
        }
        let token = self.advance()?;
        Ok(Spanned {
            value: token.text.to_ascii_lowercase(),
            pos: token.pos,
        })
    }

    /// A number in [0, 1].
    fn quantile_level(&mut self) -> Result<Spanned<f64>, ParseError> {
        match self.current.kind {
            TokenKind::Number(q) if (0.0..=1.0).contains(&q) => {
                let pos = self.advance()?.pos;
                Ok(Spanned { value: q, pos })
            }
            _ => self.fail("a quantile level between 0 and 1"),
        }
    }

    /// An integer written in plain digits, at least 1.
    fn positive_int(&mut self, what: &str) -> Result<Spanned<u64>, ParseError> {
        let value = match self.current.kind {
            TokenKind::Number(_) if self.current.text.bytes().all(|b| b.is_ascii_digit()) => {
                self.current.text.parse::<u64>().ok().filter(|n| *n >= 1)
            }
            _ => None,
        };
        match value {
            Some(value) => {
                let pos = self.advance()?.pos;
                Ok(Spanned { value, pos })
            }
            None => self.fail(what),
        }
    }

    /// `(IDENT | STRING) ["@" version]`.
    fn model(&mut self) -> Result<ModelRef, ParseError> {
        let pos = self.current.pos;
        let id = match &self.current.kind {
            TokenKind::Ident => self.current.text.to_owned(),
            TokenKind::Str(s) if !s.is_empty() => s.clone(),
            _ => return self.fail("a model name"),
        };
        self.advance()?;
        let version = if self.eat(&TokenKind::At)? {
            Some(self.version()?)
        } else {
            None
        };
        Ok(ModelRef { id, version, pos })
    }

    /// A model version: an identifier (`v8`), a string (`"1.2"`) or a number as written
    /// (`1.2`, `3`).
    fn version(&mut self) -> Result<String, ParseError> {
        let version = match &self.current.kind {
            TokenKind::Ident | TokenKind::Number(_) => self.current.text.to_owned(),
            TokenKind::Str(s) if !s.is_empty() => s.clone(),
            _ => return self.fail("a version such as v8 or \"1.2\""),
        };
        self.advance()?;
        Ok(version)
    }

    /// `model ["." feature]`.
    fn target(&mut self) -> Result<Target, ParseError> {
        let model = self.model()?;
        let feature = if self.eat(&TokenKind::Dot)? {
            let pos = self.current.pos;
            let value = match &self.current.kind {
                TokenKind::Ident => FeatureSel::Name(self.current.text.to_owned()),
                TokenKind::Str(s) if !s.is_empty() => FeatureSel::Name(s.clone()),
                TokenKind::Star => FeatureSel::All,
                TokenKind::Special(Special::Score) => FeatureSel::Score,
                TokenKind::Special(Special::Label) => FeatureSel::Label,
                TokenKind::Special(Special::Latency) => FeatureSel::Latency,
                TokenKind::Special(Special::Items) => FeatureSel::Items,
                TokenKind::Special(Special::Cost) => FeatureSel::Cost,
                _ => {
                    for what in [
                        "a feature name",
                        "\"*\"",
                        "$score",
                        "$label",
                        "$latency",
                        "$items",
                        "$cost",
                    ] {
                        self.note(what);
                    }
                    return Err(self.error());
                }
            };
            self.advance()?;
            Some(Spanned { value, pos })
        } else {
            None
        };
        Ok(Target { model, feature })
    }

    /// `reference | previous | offset D | range(T, T) | version V`.
    fn baseline(&mut self) -> Result<Spanned<Baseline>, ParseError> {
        let pos = self.current.pos;
        let value = if self.eat_kw("reference")?.is_some() {
            Baseline::Reference
        } else if self.eat_kw("previous")?.is_some() {
            Baseline::Previous
        } else if self.eat_kw("offset")?.is_some() {
            Baseline::Offset(self.duration()?)
        } else if self.eat_kw("range")?.is_some() {
            self.expect(&TokenKind::LParen)?;
            let from = self.time()?;
            self.expect(&TokenKind::Comma)?;
            let to = self.time()?;
            self.expect(&TokenKind::RParen)?;
            Baseline::Range(from, to)
        } else if self.eat_kw("version")?.is_some() {
            Baseline::Version(self.version()?)
        } else {
            return Err(self.error());
        };
        Ok(Spanned { value, pos })
    }

    fn duration(&mut self) -> Result<DurationMs, ParseError> {
        match self.current.kind {
            TokenKind::Duration(d) => {
                self.advance()?;
                Ok(d)
            }
            _ => self.fail(DURATION_EXPECTED),
        }
    }

    /// An RFC 3339 time, `now` or `now-D`.
    fn time(&mut self) -> Result<TimeExpr, ParseError> {
        match self.current.kind {
            TokenKind::Time(t) => {
                self.advance()?;
                Ok(TimeExpr::At(t))
            }
            TokenKind::Ident if self.is_word("now") => {
                self.advance()?;
                let minus = if self.eat(&TokenKind::Minus)? {
                    Some(self.duration()?)
                } else {
                    None
                };
                Ok(TimeExpr::Now { minus })
            }
            _ => self.fail(TIME_EXPECTED),
        }
    }

    /// A segment key: an identifier, or a quoted string for keys that are not identifiers
    /// (`by "région"`).
    fn segment_key(&mut self) -> Result<Spanned<String>, ParseError> {
        if let TokenKind::Str(s) = &self.current.kind {
            let value = s.clone();
            let pos = self.current.pos;
            self.advance()?;
            return Ok(Spanned { value, pos });
        }
        if self.current.kind != TokenKind::Ident {
            return self.fail("a segment key");
        }
        let token = self.advance()?;
        Ok(Spanned {
            value: token.text.to_owned(),
            pos: token.pos,
        })
    }

    /// `KEY (= | !=) STRING`.
    fn cond(&mut self) -> Result<Cond, ParseError> {
        let key = self.segment_key()?;
        let op = if self.eat(&TokenKind::Eq)? {
            EqOp::Eq
        } else if self.eat(&TokenKind::Ne)? {
            EqOp::Ne
        } else {
            return Err(self.error());
        };
        let value = match &self.current.kind {
            TokenKind::Str(s) => s.clone(),
            _ => return self.fail("a quoted string such as \"eu\""),
        };
        self.advance()?;
        Ok(Cond { key, op, value })
    }

    /// The rest of `having (value | p) (> | < | >= | <=) [-]NUMBER`.
    fn having(&mut self, pos: Pos) -> Result<Having, ParseError> {
        let field = if self.eat_kw("value")?.is_some() {
            HavingField::Value
        } else if self.eat_kw("p")?.is_some() {
            HavingField::P
        } else {
            return Err(self.error());
        };
        let mut op = None;
        for (kind, cmp) in [
            (TokenKind::Gt, CmpOp::Gt),
            (TokenKind::Lt, CmpOp::Lt),
            (TokenKind::Ge, CmpOp::Ge),
            (TokenKind::Le, CmpOp::Le),
        ] {
            if self.eat(&kind)? {
                op = Some(cmp);
                break;
            }
        }
        let Some(op) = op else {
            return Err(self.error());
        };
        let negative = self.current.kind == TokenKind::Minus;
        if negative {
            self.advance()?;
        }
        let threshold = match self.current.kind {
            TokenKind::Number(v) => {
                self.advance()?;
                if negative { -v } else { v }
            }
            _ => return self.fail("a number"),
        };
        Ok(Having {
            field,
            op,
            threshold,
            pos,
        })
    }
}

// --- printing ------------------------------------------------------------------------------

/// Writes `s` as an identifier when it is one, else as a double-quoted string.
fn write_name(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    if is_identifier(s) {
        f.write_str(s)
    } else {
        write_string(f, s)
    }
}

/// Writes `s` as a DriftQL string literal.
fn write_string(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        if matches!(c, '"' | '\\') {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

fn write_model(f: &mut fmt::Formatter<'_>, m: &ModelRef) -> fmt::Result {
    write_name(f, &m.id)?;
    if let Some(v) = &m.version {
        f.write_str("@")?;
        write_name(f, v)?;
    }
    Ok(())
}

fn write_target(f: &mut fmt::Formatter<'_>, t: &Target) -> fmt::Result {
    write_model(f, &t.model)?;
    if let Some(feature) = &t.feature {
        f.write_str(".")?;
        match &feature.value {
            FeatureSel::All => f.write_str("*")?,
            FeatureSel::Name(n) => write_name(f, n)?,
            FeatureSel::Score => f.write_str("$score")?,
            FeatureSel::Label => f.write_str("$label")?,
            FeatureSel::Latency => f.write_str("$latency")?,
            FeatureSel::Items => f.write_str("$items")?,
            FeatureSel::Cost => f.write_str("$cost")?,
        }
    }
    Ok(())
}

fn write_time(f: &mut fmt::Formatter<'_>, t: &TimeExpr) -> fmt::Result {
    match t {
        TimeExpr::At(ts) => f.write_str(&ts.to_rfc3339()),
        TimeExpr::Now { minus: None } => f.write_str("now"),
        TimeExpr::Now { minus: Some(d) } => write!(f, "now-{d}"),
    }
}

fn write_call(f: &mut fmt::Formatter<'_>, call: &Call) -> fmt::Result {
    match call {
        Call::Metric {
            name,
            target,
            baseline,
        } => {
            write!(f, "{}(", name.value)?;
            write_target(f, target)?;
            if let Some(b) = baseline {
                f.write_str(", vs ")?;
                match &b.value {
                    Baseline::Reference => f.write_str("reference")?,
                    Baseline::Previous => f.write_str("previous")?,
                    Baseline::Offset(d) => write!(f, "offset {d}")?,
                    Baseline::Range(from, to) => {
                        f.write_str("range(")?;
                        write_time(f, from)?;
                        f.write_str(", ")?;
                        write_time(f, to)?;
                        f.write_str(")")?;
                    }
                    Baseline::Version(v) => {
                        f.write_str("version ")?;
                        write_name(f, v)?;
                    }
                }
            }
        }
        Call::Quantile { q, target } => {
            write!(f, "quantile({}, ", q.value)?;
            write_target(f, target)?;
        }
        Call::Ndcg { k, target } => {
            write!(f, "ndcg({}, ", k.value)?;
            write_target(f, target)?;
        }
        Call::Explain { model } => {
            f.write_str("explain(")?;
            write_model(f, model)?;
        }
        Call::Uplift {
            metric,
            challenger,
            champion,
        } => {
            write!(f, "uplift({}, ", metric.value)?;
            write_model(f, challenger)?;
            f.write_str(", ")?;
            write_model(f, champion)?;
        }
    }
    f.write_str(")")
}

/// Canonical DriftQL: keywords in lower case (`EXPLAIN` in upper case), single spaces, names
/// quoted only when they are not identifiers, times in UTC with milliseconds.
impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.explain {
            f.write_str("EXPLAIN ")?;
        }
        let q = &self.query;
        write_call(f, &q.call)?;
        if let Some(range) = &q.range {
            match &range.value {
                RangeSpec::Over(d) => write!(f, " over {d}")?,
                RangeSpec::FromTo(from, to) => {
                    f.write_str(" from ")?;
                    write_time(f, from)?;
                    f.write_str(" to ")?;
                    write_time(f, to)?;
                }
            }
        }
        if let Some(step) = &q.step {
            write!(f, " step {}", step.value)?;
        }
        for (i, key) in q.by.iter().enumerate() {
            f.write_str(if i == 0 { " by " } else { ", " })?;
            write_name(f, &key.value)?;
        }
        for (i, cond) in q.filters.iter().enumerate() {
            f.write_str(if i == 0 { " where " } else { " and " })?;
            write_name(f, &cond.key.value)?;
            f.write_str(match cond.op {
                EqOp::Eq => " = ",
                EqOp::Ne => " != ",
            })?;
            write_string(f, &cond.value)?;
        }
        if let Some(h) = &q.having {
            let field = match h.field {
                HavingField::Value => "value",
                HavingField::P => "p",
            };
            write!(f, " having {field} {} {}", h.op.symbol(), h.threshold)?;
        }
        if let Some(top) = &q.top {
            let word = if top.bottom { "bottom" } else { "top" };
            write!(f, " {word} {}", top.n)?;
        }
        Ok(())
    }
}
