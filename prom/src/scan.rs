//! A cheap scan of PromQL text **before** it reaches the parser: one pass over the bytes, no
//! recursion, no allocation beyond a stack of at most [`Limits::max_nesting`] open brackets.
//!
//! The PromQL parser ([`promql_parser`]) builds its tree with an LR automaton, but its type
//! checks, its error paths and dropping the tree recurse once per level, so a query of a few
//! kilobytes — thousands of nested parentheses or `sum(`, a long chain of unary minus or of
//! `1+1+1…` — would overflow a thread's stack and abort the process. The scan refuses such
//! text first, with [`Error::TooLarge`] naming the limit:
//!
//! - the text's length ([`Limits::max_query_bytes`]);
//! - how many `(`, `[` and `{` are open at once ([`Limits::max_nesting`]);
//! - how many operators it has, unary and binary ([`Limits::max_operators`]): `+ - * / % ^`,
//!   comparisons, `and or unless atan2`; a sign in a number's exponent (`1e-3`) is not one.
//!
//! - how many regular-expression matchers it has ([`Limits::max_regex_matchers`]), each
//!   pattern compiled here with the size limit evaluation uses ([`Matcher::new`]) before the
//!   parser compiles it without one: a pattern of a few bytes such as `.{65000}` took the
//!   parser 200 ms, and a 64 KiB query holds thousands of them.
//!
//! The contents of string literals and `#` comments are skipped, and label matchers inside
//! `{…}` are not operators. The scan also reports what it can say precisely about unbalanced
//! brackets, and refuses durations written as numbers of seconds that are not finite or too
//! large (`x[1e400]`, `offset Inf`), which the parser would otherwise panic on.

use crate::error::{Error, Result};
use crate::limits::Limits;
use crate::matcher::{MatchOp, Matcher};

/// Largest duration, in seconds, accepted when written as a plain number (`x[300]`,
/// `offset 1e3`): far beyond any retention, and well inside what the parser can represent.
pub const MAX_NUMBER_DURATION_SECS: f64 = 1e15;

/// Checks `text` against the limits before parsing. `Ok` does not mean the text parses.
pub fn check(text: &str, limits: &Limits) -> Result<()> {
    if text.len() > limits.max_query_bytes {
        return Err(Error::TooLarge(format!(
            "the query is {} bytes long; the limit is {} bytes (shorten it, e.g. with a regular expression matcher instead of many alternatives)",
            text.len(),
            limits.max_query_bytes
        )));
    }
    let b = text.as_bytes();
    let mut open: Vec<(u8, usize)> = Vec::new();
    let mut operators = 0usize;
    // After `offset` (and an optional sign) the next token is a duration.
    let mut offset = Offset::No;
    // Inside braces: the last label name, and whether a regex operator follows it.
    let mut label: &str = "";
    let mut regex_next = false;
    let mut regexes = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        let in_braces = open.last().is_some_and(|(o, _)| *o == b'{');
        match c {
            b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' && b[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i = string_end(b, i);
                if in_braces && regex_next {
                    check_regex(label, &text[start..i], start)?;
                } else if in_braces {
                    // A quoted label name.
                    label = text[start..i].trim_matches(|c| c == '"' || c == '\'' || c == '`');
                }
            }
            b'=' | b'!' if in_braces && b.get(i + 1) == Some(&b'~') => {
                regexes += 1;
                if regexes > limits.max_regex_matchers {
                    return Err(Error::TooLarge(format!(
                        "the query has more than {} regular-expression matchers (=~, !~); the limit is {} (merge alternatives into one pattern)",
                        limits.max_regex_matchers, limits.max_regex_matchers
                    )));
                }
                i += 2;
                regex_next = true;
                continue;
            }
            b'(' | b'[' | b'{' => {
                open.push((c, i));
                if open.len() > limits.max_nesting {
                    return Err(Error::TooLarge(format!(
                        "the query nests brackets, parentheses and braces more than {} deep (at char {}); the limit is {} (simplify the expression)",
                        limits.max_nesting,
                        i + 1,
                        limits.max_nesting
                    )));
                }
                i += 1;
            }
            b')' | b']' | b'}' => {
                let want = match c {
                    b')' => b'(',
                    b']' => b'[',
                    _ => b'{',
                };
                match open.pop() {
                    None => {
                        return Err(Error::Invalid(format!(
                            "parse error at char {}: unexpected {:?}",
                            i + 1,
                            char::from(c)
                        )));
                    }
                    Some((o, at)) if o != want => {
                        return Err(Error::Invalid(format!(
                            "parse error at char {}: unexpected {:?}, the {:?} at char {} is not closed",
                            i + 1,
                            char::from(c),
                            char::from(o),
                            at + 1
                        )));
                    }
                    Some(_) => {}
                }
                i += 1;
            }
            b'0'..=b'9' | b'.' if c != b'.' || b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let (end, is_number) = number_token(b, i);
                i = end;
                if is_number && (in_brackets(&open) || offset != Offset::No) {
                    check_number_duration(&text[start..end], start)?;
                }
            }
            // Inside `[…]` the parser's lexer reads only durations and `:`.
            _ if in_brackets(&open) => i += 1,
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &text[start..i];
                if in_braces {
                    label = word;
                } else {
                    if ["and", "or", "unless", "atan2"]
                        .iter()
                        .any(|w| word.eq_ignore_ascii_case(w))
                    {
                        operators += 1;
                    }
                    if offset != Offset::No
                        && ["inf", "nan"].iter().any(|w| word.eq_ignore_ascii_case(w))
                    {
                        check_number_duration(word, start)?;
                    }
                    if word.eq_ignore_ascii_case("offset") {
                        offset = Offset::Keyword;
                        continue;
                    }
                }
            }
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' if !in_braces => {
                operators += 1;
                i += 1;
                if (c == b'<' || c == b'>') && b.get(i) == Some(&b'=') {
                    i += 1;
                }
                if (c == b'+' || c == b'-') && offset == Offset::Keyword {
                    offset = Offset::Sign;
                    check_operators(operators, limits)?;
                    continue;
                }
            }
            b'=' | b'!' if !in_braces && b.get(i + 1) == Some(&b'=') => {
                operators += 1;
                i += 2;
            }
            _ => {
                // Anything else is one byte to the scan (UTF-8 continuation bytes included):
                // the parser judges it.
                i += 1;
            }
        }
        check_operators(operators, limits)?;
        offset = Offset::No;
        regex_next = false;
    }
    if let Some((o, at)) = open.last() {
        return Err(Error::Invalid(format!(
            "parse error at char {}: unclosed {:?}",
            at + 1,
            char::from(*o)
        )));
    }
    Ok(())
}

fn in_brackets(open: &[(u8, usize)]) -> bool {
    open.last().is_some_and(|(o, _)| *o == b'[')
}

/// The end (one past the closing quote) of the string literal starting at `i`: `"…"` and
/// `'…'` with backslash escapes, `` `…` `` raw (no escapes, as in Prometheus). An unterminated
/// string ends at the end of the text.
fn string_end(b: &[u8], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() && b[j] != quote {
        j += if b[j] == b'\\' && quote != b'`' { 2 } else { 1 };
    }
    (j + 1).min(b.len())
}

/// The text with every raw string (`` `…` ``) written as the equivalent double-quoted string.
///
/// promql-parser's lexer reads backslash escapes inside raw strings too, so a regular
/// expression such as `` `\d+` `` was "an unknown escape sequence" to it; in PromQL a raw
/// string has no escapes. Rewritten, it reaches the parser as `"\\d+"`, which means the same
/// text. Comments and the other strings are copied as they are.
pub fn raw_strings_quoted(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('`') {
        return std::borrow::Cow::Borrowed(text);
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                let mut j = i;
                while j < b.len() && b[j] != b'\n' && b[j] != b'\r' {
                    j += 1;
                }
                out.push_str(&text[i..j]);
                i = j;
            }
            b'"' | b'\'' => {
                let j = string_end(b, i);
                out.push_str(&text[i..j]);
                i = j;
            }
            b'`' => {
                let j = string_end(b, i);
                if j <= i + 1 || b[j - 1] != b'`' {
                    // Unterminated: the parser reports it.
                    out.push_str(&text[i..]);
                    break;
                }
                out.push('"');
                for ch in text[i + 1..j - 1].chars() {
                    match ch {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                i = j;
            }
            _ => {
                // Copy up to the next byte that may start a string or a comment.
                let j = b[i + 1..]
                    .iter()
                    .position(|c| matches!(c, b'#' | b'"' | b'\'' | b'`'))
                    .map_or(b.len(), |p| i + 1 + p);
                out.push_str(&text[i..j]);
                i = j;
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offset {
    No,
    Keyword,
    Sign,
}

fn check_operators(n: usize, limits: &Limits) -> Result<()> {
    if n > limits.max_operators {
        return Err(Error::TooLarge(format!(
            "the query has more than {} operators; the limit is {} (simplify the expression)",
            limits.max_operators, limits.max_operators
        )));
    }
    Ok(())
}

/// Compiles a regular expression matcher's pattern (the string literal `literal`) as
/// evaluation will, refusing it before the parser compiles it without a size limit.
fn check_regex(label: &str, literal: &str, at: usize) -> Result<()> {
    // A string the parser cannot read is its error to report. Its lexer refuses an escape it
    // does not know before it unquotes a string, and `unquote_string` relies on that (it
    // panics on a backslash before a multi-byte character), so the same check comes first.
    let b = literal.as_bytes();
    let quote = b.first().copied().unwrap_or(b'"');
    if quote != b'`' {
        let mut i = 1;
        while i + 1 < b.len() {
            if b[i] == b'\\' {
                if !(b[i + 1] == quote || b"abfnrtv\\01234567xuU".contains(&b[i + 1])) {
                    return Ok(());
                }
                i += 1;
            }
            i += 1;
        }
    }
    let Ok(pattern) = promql_parser::util::unquote_string(literal) else {
        return Ok(());
    };
    Matcher::new(MatchOp::Re, label, pattern)
        .map(|_| ())
        .map_err(|e| Error::Invalid(format!("parse error at char {}: {e}", at + 1)))
}

/// The end of the number or duration token starting at `i`, and whether it is a plain number
/// (as the parser's lexer decides: a number not followed by a letter or a dot).
fn number_token(b: &[u8], mut i: usize) -> (usize, bool) {
    let hex = b.get(i) == Some(&b'0') && matches!(b.get(i + 1), Some(b'x' | b'X'));
    if hex {
        i += 2;
    }
    let digit = |c: u8| {
        if hex {
            c.is_ascii_hexdigit()
        } else {
            c.is_ascii_digit()
        }
    };
    while i < b.len() && digit(b[i]) {
        i += 1;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while i < b.len() && digit(b[i]) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    let is_number = !b
        .get(i)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_' || *c == b'.');
    if !is_number {
        // A duration such as `1h30m`, or a bad token the parser reports.
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
    }
    (i, is_number)
}

/// A duration written as a plain number of seconds must be finite and not too large.
fn check_number_duration(token: &str, at: usize) -> Result<()> {
    match promql_parser::util::parse_str_radix(token) {
        Ok(v) if !(0.0..=MAX_NUMBER_DURATION_SECS).contains(&v) || v.is_nan() => {
            Err(Error::Invalid(format!(
                "parse error at char {}: invalid duration {token:?}: a duration written as a number of seconds must be finite and at most {MAX_NUMBER_DURATION_SECS:e}",
                at + 1
            )))
        }
        // Valid, or not a number at all: the parser reports the latter.
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
