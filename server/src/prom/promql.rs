//! A small PromQL parser: the subset Grafana panels use on driftdb's series, so driftdb can be a
//! Prometheus data source itself (README.md). Anything outside the subset is refused with an
//! error naming what is unsupported, never silently evaluated differently.
//!
//! ```text
//! expr      := cmp
//! cmp       := add [ ("=="|"!="|">"|"<"|">="|"<=") ["bool"] add ]     (left-assoc, chained)
//! add       := mul { ("+"|"-") mul }
//! mul       := unary { ("*"|"/") unary }
//! unary     := ["-"|"+"] unary | primary
//! primary   := NUMBER | "(" expr ")" | selector ["[" DURATION "]"]
//!            | AGG [grouping] "(" [NUMBER ","] expr ")" [grouping]       sum avg min max count topk bottomk
//!            | FUNC "(" selector "[" DURATION "]" ")"                    avg_/min_/max_/sum_/count_/last_over_time
//! grouping  := ("by"|"without") "(" [label {"," label} [","]] ")"
//! selector  := NAME ["{" matchers "}"] | "{" matchers "}"
//! matchers  := [ label ("="|"!="|"=~"|"!~") STRING {"," ...} [","] ]
//! ```
//!
//! Numbers are decimal or hex literals, `Inf` and `NaN`; strings are `"..."`, `'...'` (Go
//! escapes) or `` `raw` ``; durations are Prometheus' (`90s`, `5m`, `1h30m`, `1d`, `1w`, `1y`).

use super::matcher::{MatchOp, Matcher, check_selective};
use crate::error::{Error, Result};

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

/// A series selector: its matchers (the metric name as a `__name__` equality).
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

/// A parsed expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// A number literal.
    Number(f64),
    /// An instant-vector selector.
    Vector(Selector),
    /// A range-vector selector `sel[range]` (range in ms).
    Range(Selector, i64),
    /// An aggregation.
    Aggregate {
        /// The operator.
        op: AggOp,
        /// `k` of topk/bottomk.
        param: Option<Box<Expr>>,
        /// Grouping.
        grouping: Grouping,
        /// The aggregated expression.
        expr: Box<Expr>,
    },
    /// `*_over_time(sel[range])`.
    OverTime {
        /// Which function.
        func: OverTime,
        /// The selector.
        selector: Selector,
        /// Range in ms.
        range_ms: i64,
    },
    /// `lhs op rhs`.
    Binary {
        /// The operator.
        op: BinOp,
        /// `bool` modifier of a comparison.
        return_bool: bool,
        /// Left side.
        lhs: Box<Expr>,
        /// Right side.
        rhs: Box<Expr>,
    },
    /// Unary minus.
    Neg(Box<Expr>),
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

impl Expr {
    /// The expression's value type.
    pub fn kind(&self) -> Kind {
        match self {
            Expr::Number(_) => Kind::Scalar,
            Expr::Range(..) => Kind::Matrix,
            Expr::Vector(_) | Expr::Aggregate { .. } | Expr::OverTime { .. } => Kind::Vector,
            Expr::Binary { lhs, rhs, .. } => {
                if lhs.kind() == Kind::Scalar && rhs.kind() == Kind::Scalar {
                    Kind::Scalar
                } else {
                    Kind::Vector
                }
            }
            Expr::Neg(e) => e.kind(),
        }
    }

    /// Every selector in the expression with the range it looks back over (ms; `None` for an
    /// instant selector, which looks back the 5-minute lookback).
    pub fn selectors(&self) -> Vec<(&Selector, Option<i64>)> {
        let mut out = Vec::new();
        self.walk(&mut out);
        out
    }

    fn walk<'a>(&'a self, out: &mut Vec<(&'a Selector, Option<i64>)>) {
        match self {
            Expr::Number(_) => {}
            Expr::Vector(s) => out.push((s, None)),
            Expr::Range(s, r) => out.push((s, Some(*r))),
            Expr::OverTime {
                selector, range_ms, ..
            } => out.push((selector, Some(*range_ms))),
            Expr::Aggregate { param, expr, .. } => {
                if let Some(p) = param {
                    p.walk(out);
                }
                expr.walk(out);
            }
            Expr::Binary { lhs, rhs, .. } => {
                lhs.walk(out);
                rhs.walk(out);
            }
            Expr::Neg(e) => e.walk(out),
        }
    }
}

/// Parses one PromQL expression of the supported subset.
pub fn parse(text: &str) -> Result<Expr> {
    let mut p = Parser {
        src: text,
        toks: lex(text)?,
        i: 0,
    };
    if p.toks.len() == 1 {
        return Err(Error::Invalid("empty query".into()));
    }
    let e = p.expr()?;
    if !p.at(&Tok::Eof) {
        return Err(p.unexpected("the end of the query or an operator"));
    }
    check(&e, true)?;
    Ok(e)
}

/// Parses a series selector alone (the `match[]` parameter of the series and label APIs).
pub fn parse_selector(text: &str) -> Result<Vec<Matcher>> {
    match parse(text)? {
        Expr::Vector(s) => Ok(s.matchers),
        _ => Err(Error::Invalid(format!(
            "match[] must be a series selector such as driftdb_psi{{model=\"fraud\"}}, got {text:?}"
        ))),
    }
}

/// Type checks the tree: ranges only inside `*_over_time` (or alone), no vector-vector
/// operations, `k` a number, comparisons of two scalars only with `bool`.
fn check(e: &Expr, top: bool) -> Result<()> {
    match e {
        Expr::Number(_) | Expr::Vector(_) | Expr::OverTime { .. } => Ok(()),
        Expr::Range(..) if top => Ok(()),
        Expr::Range(..) => Err(Error::Invalid(
            "a range vector (sel[5m]) is only supported inside avg_over_time, min_over_time, max_over_time, sum_over_time, count_over_time or last_over_time".into(),
        )),
        Expr::Aggregate { param, expr, op, .. } => {
            if let Some(p) = param
                && p.kind() != Kind::Scalar
            {
                return Err(Error::Invalid(format!(
                    "the first argument of {} must be a number",
                    agg_name(*op)
                )));
            }
            if expr.kind() != Kind::Vector {
                return Err(Error::Invalid(format!(
                    "{} aggregates an instant vector, not a {}",
                    agg_name(*op),
                    kind_name(expr.kind())
                )));
            }
            check(expr, false)
        }
        Expr::Binary {
            lhs,
            rhs,
            op,
            return_bool,
        } => {
            check(lhs, false)?;
            check(rhs, false)?;
            match (lhs.kind(), rhs.kind()) {
                (Kind::Vector, Kind::Vector) => Err(Error::Invalid(
                    "unsupported: binary operations between two vectors (only vector-to-number and number-to-number operations are supported)".into(),
                )),
                (Kind::Scalar, Kind::Scalar) if op.is_comparison() && !return_bool => {
                    Err(Error::Invalid(
                        "comparisons between numbers must use the bool modifier".into(),
                    ))
                }
                _ => Ok(()),
            }
        }
        Expr::Neg(inner) => check(inner, false),
    }
}

fn agg_name(op: AggOp) -> &'static str {
    match op {
        AggOp::Sum => "sum",
        AggOp::Avg => "avg",
        AggOp::Min => "min",
        AggOp::Max => "max",
        AggOp::Count => "count",
        AggOp::Topk => "topk",
        AggOp::Bottomk => "bottomk",
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Scalar => "scalar",
        Kind::Vector => "instant vector",
        Kind::Matrix => "range vector",
    }
}

/// Functions and operators Prometheus has that we refuse by name, for a helpful message.
const SUPPORTED_FUNCTIONS: &str = "avg_over_time, min_over_time, max_over_time, sum_over_time, count_over_time, last_over_time and the aggregations sum, avg, min, max, count, topk, bottomk";

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(f64),
    Str(String),
    Duration(i64),
    LParen,
    RParen,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    Comma,
    Assign,
    Op(&'static str),
    Eof,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Ident(s) => format!("identifier {s:?}"),
        Tok::Number(n) => format!("number {n}"),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Duration(_) => "duration".into(),
        Tok::LParen => "\"(\"".into(),
        Tok::RParen => "\")\"".into(),
        Tok::LBrace => "\"{\"".into(),
        Tok::RBrace => "\"}\"".into(),
        Tok::LBracket => "\"[\"".into(),
        Tok::RBracket => "\"]\"".into(),
        Tok::Comma => "\",\"".into(),
        Tok::Assign => "\"=\"".into(),
        Tok::Op(o) => format!("\"{o}\""),
        Tok::Eof => "the end of the query".into(),
    }
}

fn perr(pos: usize, msg: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("parse error at char {}: {msg}", pos + 1))
}

/// Splits the text into tokens with their byte offsets; the last token is `Eof`.
fn lex(src: &str) -> Result<Vec<(Tok, usize)>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Inside `[...]` a token like `5m` is a duration.
    let mut in_brackets = false;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        let tok = match c {
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'{' => Tok::LBrace,
            b'}' => Tok::RBrace,
            b'[' => {
                in_brackets = true;
                Tok::LBracket
            }
            b']' => {
                in_brackets = false;
                Tok::RBracket
            }
            b',' => Tok::Comma,
            b'"' | b'\'' | b'`' => {
                let (s, end) = lex_string(src, i)?;
                i = end;
                out.push((Tok::Str(s), start));
                continue;
            }
            _ if ["==", "!=", "=~", "!~", ">=", "<="].contains(&two) => {
                i += 2;
                let op = match two {
                    "==" => "==",
                    "!=" => "!=",
                    "=~" => "=~",
                    "!~" => "!~",
                    ">=" => ">=",
                    _ => "<=",
                };
                out.push((Tok::Op(op), start));
                continue;
            }
            b'=' => Tok::Assign,
            b'>' => Tok::Op(">"),
            b'<' => Tok::Op("<"),
            b'+' => Tok::Op("+"),
            b'-' => Tok::Op("-"),
            b'*' => Tok::Op("*"),
            b'/' => Tok::Op("/"),
            b'%' => Tok::Op("%"),
            b'^' => Tok::Op("^"),
            b'@' => Tok::Op("@"),
            b':' => Tok::Op(":"),
            _ if in_brackets && c.is_ascii_digit() => {
                while i < b.len() && b[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                let text = &src[start..i];
                let ms = parse_duration(text).ok_or_else(|| {
                    perr(
                        start,
                        format!("{text:?} is not a duration such as 5m or 1h"),
                    )
                })?;
                out.push((Tok::Duration(ms), start));
                continue;
            }
            _ if c.is_ascii_digit()
                || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
            {
                let (n, end) = lex_number(src, i)?;
                i = end;
                out.push((Tok::Number(n), start));
                continue;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &src[start..i];
                let tok = match word.to_ascii_lowercase().as_str() {
                    "inf" => Tok::Number(f64::INFINITY),
                    "nan" => Tok::Number(f64::NAN),
                    _ => Tok::Ident(word.to_string()),
                };
                out.push((tok, start));
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(perr(i, format!("unexpected character {ch:?}")));
            }
        };
        i += 1;
        out.push((tok, start));
    }
    out.push((Tok::Eof, src.len()));
    Ok(out)
}

fn lex_number(src: &str, start: usize) -> Result<(f64, usize)> {
    let b = src.as_bytes();
    let mut i = start;
    if src[i..].starts_with("0x") || src[i..].starts_with("0X") {
        i += 2;
        while i < b.len() && b[i].is_ascii_hexdigit() {
            i += 1;
        }
        let v = u64::from_str_radix(&src[start + 2..i], 16)
            .map_err(|_| perr(start, "bad hexadecimal number"))?;
        return Ok((v as f64, i));
    }
    while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
        i += 1;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        if j < b.len() && b[j].is_ascii_digit() {
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            i = j;
        }
    }
    if i < b.len() && (b[i].is_ascii_alphabetic() || b[i] == b'_') {
        return Err(perr(
            start,
            "durations such as 5m are only allowed inside [ ] (offset and @ are not supported)",
        ));
    }
    let text = &src[start..i];
    let v: f64 = text
        .parse()
        .map_err(|_| perr(start, format!("bad number {text:?}")))?;
    Ok((v, i))
}

fn lex_string(src: &str, start: usize) -> Result<(String, usize)> {
    let quote = src.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = src[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        let at = start + 1 + off;
        if c == quote {
            return Ok((out, at + 1));
        }
        if quote == '`' {
            out.push(c);
            continue;
        }
        if c == '\n' {
            return Err(perr(at, "unterminated string"));
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((_, e)) = chars.next() else {
            return Err(perr(at, "unterminated string"));
        };
        match e {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' | '"' | '\'' => out.push(e),
            'x' | 'u' | 'U' => {
                let n = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = (0..n)
                    .filter_map(|_| chars.next().map(|(_, h)| h))
                    .collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == n)
                    .and_then(char::from_u32)
                    .ok_or_else(|| perr(at, format!("bad escape \\{e}{hex}")))?;
                out.push(ch);
            }
            other => return Err(perr(at, format!("unknown escape sequence \\{other}"))),
        }
    }
    Err(perr(start, "unterminated string"))
}

/// A Prometheus duration (`1h30m`, `90s`, `250ms`, `2d`, `1w`, `1y`) in milliseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut total: i64 = 0;
    if b.is_empty() {
        return None;
    }
    while i < b.len() {
        let n0 = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let n: i64 = s.get(n0..i)?.parse().ok()?;
        let u0 = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = match s.get(u0..i)? {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
    }
    Some(total)
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.i).map_or(&Tok::Eof, |(t, _)| t)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.i).map_or(self.src.len(), |(_, p)| *p)
    }

    fn at(&self, t: &Tok) -> bool {
        self.peek() == t
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.at(t) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok, what: &str) -> Result<()> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(self.unexpected(what))
        }
    }

    fn unexpected(&self, wanted: &str) -> Error {
        let t = self.peek();
        if let Tok::Op(o @ ("%" | "^" | "@" | ":")) = t {
            let what = match *o {
                "%" | "^" => format!("the {o} operator"),
                "@" => "the @ modifier".into(),
                _ => "subqueries".into(),
            };
            return perr(self.pos(), format!("unsupported: {what}"));
        }
        perr(
            self.pos(),
            format!("unexpected {}, expected {wanted}", describe(t)),
        )
    }

    fn expr(&mut self) -> Result<Expr> {
        let mut lhs = self.add()?;
        loop {
            let op = match self.peek() {
                Tok::Op("==") => BinOp::Eq,
                Tok::Op("!=") => BinOp::Ne,
                Tok::Op(">") => BinOp::Gt,
                Tok::Op("<") => BinOp::Lt,
                Tok::Op(">=") => BinOp::Ge,
                Tok::Op("<=") => BinOp::Le,
                Tok::Ident(w) if is_set_operator(w) => {
                    return Err(perr(
                        self.pos(),
                        format!("unsupported: the {w} operator (vector matching)"),
                    ));
                }
                _ => return Ok(lhs),
            };
            self.bump();
            let return_bool = matches!(self.peek(), Tok::Ident(w) if w == "bool");
            if return_bool {
                self.bump();
            }
            self.no_vector_matching()?;
            let rhs = self.add()?;
            lhs = Expr::Binary {
                op,
                return_bool,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    fn no_vector_matching(&self) -> Result<()> {
        if let Tok::Ident(w) = self.peek()
            && matches!(w.as_str(), "on" | "ignoring" | "group_left" | "group_right")
            && self.toks.get(self.i + 1).map(|(t, _)| t) == Some(&Tok::LParen)
        {
            return Err(perr(
                self.pos(),
                format!("unsupported: {w}(...) vector matching"),
            ));
        }
        Ok(())
    }

    fn add(&mut self) -> Result<Expr> {
        let mut lhs = self.mul()?;
        loop {
            let op = match self.peek() {
                Tok::Op("+") => BinOp::Add,
                Tok::Op("-") => BinOp::Sub,
                _ => return Ok(lhs),
            };
            self.bump();
            self.no_vector_matching()?;
            let rhs = self.mul()?;
            lhs = Expr::Binary {
                op,
                return_bool: false,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    fn mul(&mut self) -> Result<Expr> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek() {
                Tok::Op("*") => BinOp::Mul,
                Tok::Op("/") => BinOp::Div,
                Tok::Op("%" | "^") => return Err(self.unexpected("")),
                _ => return Ok(lhs),
            };
            self.bump();
            self.no_vector_matching()?;
            let rhs = self.unary()?;
            lhs = Expr::Binary {
                op,
                return_bool: false,
                lhs: Box::new(lhs),
                rhs: Box::new(rhs),
            };
        }
    }

    fn unary(&mut self) -> Result<Expr> {
        match self.peek() {
            Tok::Op("-") => {
                self.bump();
                Ok(match self.unary()? {
                    Expr::Number(n) => Expr::Number(-n),
                    e => Expr::Neg(Box::new(e)),
                })
            }
            Tok::Op("+") => {
                self.bump();
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Expr> {
        let pos = self.pos();
        let e = match self.bump() {
            Tok::Number(n) => Expr::Number(n),
            Tok::LParen => {
                let e = self.expr()?;
                self.expect(&Tok::RParen, "\")\"")?;
                e
            }
            Tok::LBrace => {
                self.i -= 1;
                Expr::Vector(self.selector(None, pos)?)
            }
            Tok::Ident(word) => self.after_ident(word, pos)?,
            Tok::Str(_) => {
                return Err(perr(
                    pos,
                    "unsupported: string literals outside label matchers",
                ));
            }
            _ => {
                self.i -= 1;
                return Err(self.unexpected("a number, a selector, an aggregation or \"(\""));
            }
        };
        self.postfix(e)
    }

    /// A `[range]` after a selector; `offset`, `@` and subqueries are refused by name.
    fn postfix(&mut self, e: Expr) -> Result<Expr> {
        let e = if self.at(&Tok::LBracket) {
            let pos = self.pos();
            self.bump();
            let range = match self.bump() {
                Tok::Duration(ms) if ms > 0 => ms,
                _ => {
                    return Err(perr(pos, "expected a duration such as [5m] or [1h]"));
                }
            };
            if self.at(&Tok::Op(":")) {
                return Err(perr(self.pos(), "unsupported: subqueries"));
            }
            self.expect(&Tok::RBracket, "\"]\"")?;
            match e {
                Expr::Vector(s) => Expr::Range(s, range),
                _ => {
                    return Err(perr(
                        pos,
                        "unsupported: subqueries (a range after an expression that is not a selector)",
                    ));
                }
            }
        } else {
            e
        };
        match self.peek() {
            Tok::Ident(w) if w == "offset" => {
                Err(perr(self.pos(), "unsupported: the offset modifier"))
            }
            Tok::Op("@") => Err(perr(self.pos(), "unsupported: the @ modifier")),
            _ => Ok(e),
        }
    }

    fn after_ident(&mut self, word: String, pos: usize) -> Result<Expr> {
        let agg = match word.as_str() {
            "sum" => Some(AggOp::Sum),
            "avg" => Some(AggOp::Avg),
            "min" => Some(AggOp::Min),
            "max" => Some(AggOp::Max),
            "count" => Some(AggOp::Count),
            "topk" => Some(AggOp::Topk),
            "bottomk" => Some(AggOp::Bottomk),
            _ => None,
        };
        let next_is_call = matches!(self.peek(), Tok::LParen);
        let next_is_grouping = matches!(self.peek(), Tok::Ident(w) if w == "by" || w == "without");
        if let Some(op) = agg
            && (next_is_call || next_is_grouping)
        {
            return self.aggregation(op);
        }
        if next_is_call {
            let func = match word.as_str() {
                "avg_over_time" => OverTime::Avg,
                "min_over_time" => OverTime::Min,
                "max_over_time" => OverTime::Max,
                "sum_over_time" => OverTime::Sum,
                "count_over_time" => OverTime::Count,
                "last_over_time" => OverTime::Last,
                other => {
                    let what = if ["stddev", "stdvar", "quantile", "count_values", "group"]
                        .contains(&other)
                    {
                        "aggregation"
                    } else {
                        "function"
                    };
                    return Err(perr(
                        pos,
                        format!("unsupported {what} {other:?}; supported: {SUPPORTED_FUNCTIONS}"),
                    ));
                }
            };
            self.bump();
            let arg_pos = self.pos();
            let arg = self.expr()?;
            self.expect(&Tok::RParen, "\")\" (the function takes one argument)")?;
            return match arg {
                Expr::Range(selector, range_ms) => Ok(Expr::OverTime {
                    func,
                    selector,
                    range_ms,
                }),
                _ => Err(perr(
                    arg_pos,
                    format!("{word} takes a range selector such as driftdb_psi{{model=\"m\"}}[1h]"),
                )),
            };
        }
        if is_set_operator(&word) || word == "bool" || word == "by" || word == "without" {
            return Err(perr(pos, format!("unexpected keyword {word:?}")));
        }
        Ok(Expr::Vector(self.selector(Some(word), pos)?))
    }

    fn grouping(&mut self) -> Result<Option<Grouping>> {
        let without = match self.peek() {
            Tok::Ident(w) if w == "by" => false,
            Tok::Ident(w) if w == "without" => true,
            _ => return Ok(None),
        };
        self.bump();
        self.expect(&Tok::LParen, "\"(\" after by/without")?;
        let mut labels = Vec::new();
        while !self.eat(&Tok::RParen) {
            match self.bump() {
                Tok::Ident(l) => labels.push(l),
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected("a label name"));
                }
            }
            if !self.eat(&Tok::Comma) {
                self.expect(&Tok::RParen, "\",\" or \")\"")?;
                break;
            }
        }
        Ok(Some(if without {
            Grouping::Without(labels)
        } else {
            Grouping::By(labels)
        }))
    }

    fn aggregation(&mut self, op: AggOp) -> Result<Expr> {
        let before = self.grouping()?;
        self.expect(&Tok::LParen, "\"(\"")?;
        let param = if matches!(op, AggOp::Topk | AggOp::Bottomk) {
            let p = self.expr()?;
            self.expect(&Tok::Comma, "\",\" after the k of topk/bottomk")?;
            Some(Box::new(p))
        } else {
            None
        };
        let expr = self.expr()?;
        self.expect(&Tok::RParen, "\")\"")?;
        let after = self.grouping()?;
        let grouping = match (before, after) {
            (Some(_), Some(_)) => {
                return Err(perr(self.pos(), "by/without given twice"));
            }
            (g, None) | (None, g) => g.unwrap_or_default(),
        };
        Ok(Expr::Aggregate {
            op,
            param,
            grouping,
            expr: Box::new(expr),
        })
    }

    fn selector(&mut self, name: Option<String>, pos: usize) -> Result<Selector> {
        let mut matchers = Vec::new();
        if let Some(n) = &name {
            matchers.push(Matcher::eq("__name__", n.clone()));
        }
        if self.eat(&Tok::LBrace) {
            while !self.eat(&Tok::RBrace) {
                let label = match self.bump() {
                    Tok::Ident(l) => l,
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected("a label name"));
                    }
                };
                let op = match self.bump() {
                    Tok::Assign => MatchOp::Eq,
                    Tok::Op("!=") => MatchOp::Neq,
                    Tok::Op("=~") => MatchOp::Re,
                    Tok::Op("!~") => MatchOp::Nre,
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected("=, !=, =~ or !~"));
                    }
                };
                let value = match self.bump() {
                    Tok::Str(s) => s,
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected("a quoted label value"));
                    }
                };
                if label == "__name__" && name.is_some() {
                    return Err(perr(pos, "the metric name is given twice"));
                }
                matchers.push(Matcher::new(op, label, value)?);
                if !self.eat(&Tok::Comma) {
                    self.expect(&Tok::RBrace, "\",\" or \"}\"")?;
                    break;
                }
            }
        }
        check_selective(&matchers).map_err(|e| perr(pos, e))?;
        Ok(Selector { matchers })
    }
}

fn is_set_operator(w: &str) -> bool {
    matches!(w, "and" | "or" | "unless")
}

#[cfg(test)]
mod tests;
