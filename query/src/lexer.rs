//! DriftQL lexer (query/DRIFTQL.md): turns query text into tokens, one at a time.
//!
//! The lexer is pulled by the parser, so the first error in reading order is the one reported,
//! whether it is a bad token or a misplaced good one. Keywords are not tokens of their own:
//! they are identifiers that the parser compares case-insensitively, which keeps every keyword
//! usable as a model, feature or segment-key name where the grammar expects a name.
//!
//! Tokens:
//! - identifier `[A-Za-z_][A-Za-z0-9_]*`;
//! - `$score`, `$label`, `$latency`, `$items`, `$cost` (case-insensitive);
//! - string in double quotes, with `\"` and `\\` as the only escapes;
//! - number: `10`, `0.99`, `1e-3`;
//! - duration: digits immediately followed by a unit (`15m`, `250ms`), see [`DurationMs::parse`];
//! - time: RFC 3339 (`2026-03-01T00:00:00Z`, `2026-03-01T01:00:00.5+01:00`);
//! - punctuation `( ) , . @ * = != > < >= <= -`.

use driftdb_engine::time::{DurationMs, Timestamp};

use crate::ast::Pos;
use crate::parser::ParseError;

/// The `$` names a target may select instead of an input feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// `$score`: the prediction score.
    Score,
    /// `$label`: the ground-truth label.
    Label,
    /// `$latency`: the inference latency.
    Latency,
    /// `$items`: the item ids a ranking model served in its top 10.
    Items,
    /// `$cost`: the per-event cost the service reported.
    Cost,
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenKind {
    /// An identifier or keyword; its text is the token's `text`.
    Ident,
    /// `$score`, `$label`, `$latency`, `$items` or `$cost`.
    Special(Special),
    /// A double-quoted string, with its escapes resolved.
    Str(String),
    /// A number.
    Number(f64),
    /// A duration such as `15m`.
    Duration(DurationMs),
    /// An RFC 3339 instant.
    Time(Timestamp),
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `.`.
    Dot,
    /// `@`.
    At,
    /// `*`.
    Star,
    /// `=`.
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
    /// `-`.
    Minus,
    /// The end of the input (returned again on every later call).
    Eof,
}

/// One token: what it is, its text as written and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Token<'a> {
    /// What the token is.
    pub kind: TokenKind,
    /// The token's text exactly as written (quotes included for strings; empty at the end).
    pub text: &'a str,
    /// Where the token starts.
    pub pos: Pos,
}

/// Longest token text quoted in an error message, in characters.
const MAX_QUOTED_CHARS: usize = 40;

/// How an error message names what it found: `end of input`, `string "eu"`, or the token's
/// text in double quotes (shortened when long).
pub fn describe_found(kind: &TokenKind, text: &str) -> String {
    match kind {
        TokenKind::Eof => "end of input".to_owned(),
        TokenKind::Str(s) => format!("string {}", quote(s)),
        _ => quote(text),
    }
}

/// `text` in double quotes with control characters, quotes and backslashes escaped, cut to
/// [`MAX_QUOTED_CHARS`] characters.
pub(crate) fn quote(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_QUOTED_CHARS).collect();
    if shown.len() < text.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// Whether `c` may start an identifier.
fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

/// Whether `c` may continue an identifier.
fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `c` may appear inside an RFC 3339 time once one has started.
fn is_time_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-')
}

/// Whether `text` is written as an identifier (so it can be printed back without quotes).
pub fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

/// Names the units [`DurationMs::parse`] accepts, for error messages.
const DURATION_HINT: &str = "a duration such as 15m, 1h or 7d (units ms, s, m, h, d, w)";

/// The earliest and latest instants a time may denote: those [`Timestamp::to_rfc3339`] prints
/// with a four-digit year, so every parsed time can be written back.
const MIN_TIME_MS: i64 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
const MAX_TIME_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// The error for a string that starts at `start` and never ends.
fn unterminated(start: Pos) -> ParseError {
    ParseError {
        pos: start,
        expected: "a closing quote (\") for the string that starts here".to_owned(),
        found: "end of input".to_owned(),
    }
}

/// A pull lexer over one query text.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    src: &'a str,
    /// Byte offset of the next character.
    offset: usize,
    /// 1-based line of the next character.
    line: u32,
    /// 1-based column (in characters) of the next character.
    column: u32,
}

impl<'a> Lexer<'a> {
    /// A lexer at the start of `src`.
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src,
            offset: 0,
            line: 1,
            column: 1,
        }
    }

    /// The position of the next character.
    pub fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.column,
            offset: self.offset,
        }
    }

    fn rest(&self) -> &'a str {
        self.src.get(self.offset..).unwrap_or("")
    }

    fn peek_char(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_char_at(&self, n: usize) -> Option<char> {
        self.rest().chars().nth(n)
    }

    /// Consumes one character, keeping line and column up to date.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.offset += c.len_utf8();
        if c == '\n' {
            self.line = self.line.saturating_add(1);
            self.column = 1;
        } else {
            self.column = self.column.saturating_add(1);
        }
        Some(c)
    }

    /// Consumes characters while `pred` holds.
    fn bump_while(&mut self, pred: impl Fn(char) -> bool) {
        while self.peek_char().is_some_and(&pred) {
            self.bump();
        }
    }

    /// The source text from `start` up to the next character.
    fn text_from(&self, start: Pos) -> &'a str {
        self.src.get(start.offset..self.offset).unwrap_or("")
    }

    /// All tokens up to and including [`TokenKind::Eof`].
    pub fn tokenize(mut self) -> Result<Vec<Token<'a>>, ParseError> {
        let mut out = Vec::new();
        loop {
            let token = self.next_token()?;
            let done = token.kind == TokenKind::Eof;
            out.push(token);
            if done {
                return Ok(out);
            }
        }
    }

    /// The next token, skipping whitespace. At the end of input it returns
    /// [`TokenKind::Eof`], again on every call.
    pub fn next_token(&mut self) -> Result<Token<'a>, ParseError> {
        self.bump_while(char::is_whitespace);
        let start = self.pos();
        let Some(c) = self.bump() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                text: "",
                pos: start,
            });
        };
        let kind = match c {
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            '.' => TokenKind::Dot,
            '@' => TokenKind::At,
            '*' => TokenKind::Star,
            '=' => TokenKind::Eq,
            '-' => TokenKind::Minus,
            '!' if self.peek_char() == Some('=') => {
                self.bump();
                TokenKind::Ne
            }
            '>' if self.peek_char() == Some('=') => {
                self.bump();
                TokenKind::Ge
            }
            '<' if self.peek_char() == Some('=') => {
                self.bump();
                TokenKind::Le
            }
            '>' => TokenKind::Gt,
            '<' => TokenKind::Lt,
            '"' => self.string(start)?,
            '$' => self.special(start)?,
            c if is_ident_start(c) => {
                self.bump_while(is_ident_char);
                TokenKind::Ident
            }
            c if c.is_ascii_digit() => self.number_like(start)?,
            _ => {
                let expected = if c == '!' {
                    "\"!=\""
                } else {
                    "a DriftQL token"
                };
                return Err(self.error_at(start, expected));
            }
        };
        Ok(Token {
            kind,
            text: self.text_from(start),
            pos: start,
        })
    }

    /// An error at `start` about the text consumed since.
    fn error_at(&self, start: Pos, expected: &str) -> ParseError {
        ParseError {
            pos: start,
            expected: expected.to_owned(),
            found: quote(self.text_from(start)),
        }
    }

    /// The rest of a string whose opening quote has been consumed.
    fn string(&mut self, start: Pos) -> Result<TokenKind, ParseError> {
        let mut value = String::new();
        loop {
            let escape_pos = self.pos();
            match self.bump() {
                None => return Err(unterminated(start)),
                Some('"') => return Ok(TokenKind::Str(value)),
                Some('\\') => match self.bump() {
                    Some(c @ ('"' | '\\')) => value.push(c),
                    Some(_) => {
                        return Err(self
                            .error_at(escape_pos, "\\\" or \\\\ (the only escapes in a string)"));
                    }
                    None => return Err(unterminated(start)),
                },
                Some(c) => value.push(c),
            }
        }
    }

    /// The rest of `$name`, whose `$` has been consumed.
    fn special(&mut self, start: Pos) -> Result<TokenKind, ParseError> {
        self.bump_while(is_ident_char);
        let name = self.text_from(start).get(1..).unwrap_or("");
        let special = if name.eq_ignore_ascii_case("score") {
            Special::Score
        } else if name.eq_ignore_ascii_case("label") {
            Special::Label
        } else if name.eq_ignore_ascii_case("latency") {
            Special::Latency
        } else if name.eq_ignore_ascii_case("items") {
            Special::Items
        } else if name.eq_ignore_ascii_case("cost") {
            Special::Cost
        } else {
            return Err(self.error_at(start, "$score, $label, $latency, $items or $cost"));
        };
        Ok(TokenKind::Special(special))
    }

    /// A number, duration or time whose first digit has been consumed.
    fn number_like(&mut self, start: Pos) -> Result<TokenKind, ParseError> {
        self.bump_while(|c| c.is_ascii_digit());
        let int_digits = self.offset - start.offset;

        // A time: four digits, '-', digit.
        if int_digits == 4
            && self.peek_char() == Some('-')
            && self.peek_char_at(1).is_some_and(|c| c.is_ascii_digit())
        {
            self.bump_while(is_time_char);
            return self.time(start);
        }

        let mut plain_integer = true;
        if self.peek_char() == Some('.') && self.peek_char_at(1).is_some_and(|c| c.is_ascii_digit())
        {
            plain_integer = false;
            self.bump();
            self.bump_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek_char(), Some('e' | 'E')) {
            let exponent_digit_at = match self.peek_char_at(1) {
                Some('+' | '-') => 2,
                _ => 1,
            };
            if self
                .peek_char_at(exponent_digit_at)
                .is_some_and(|c| c.is_ascii_digit())
            {
                plain_integer = false;
                for _ in 0..exponent_digit_at {
                    self.bump();
                }
                self.bump_while(|c| c.is_ascii_digit());
            }
        }

        if self.peek_char().is_some_and(is_ident_char) {
            // Letters glued to the number: a duration if it was a plain integer.
            self.bump_while(is_ident_char);
            if !plain_integer {
                return Err(self.error_at(start, "a number or a duration"));
            }
            return self.duration(start);
        }

        let text = self.text_from(start);
        match text.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(TokenKind::Number(v)),
            _ => Err(self.error_at(start, "a finite number")),
        }
    }

    /// Validates the duration text consumed since `start`.
    fn duration(&self, start: Pos) -> Result<TokenKind, ParseError> {
        let text = self.text_from(start);
        match DurationMs::parse(text) {
            Ok(d) => Ok(TokenKind::Duration(d)),
            Err(_) => {
                let digits_end = text
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(text.len());
                let (digits, unit) = text.split_at(digits_end);
                let is_unit = |u: &str| matches!(u, "ms" | "s" | "m" | "h" | "d" | "w");
                let expected = if is_unit(&unit.to_ascii_lowercase()) && !is_unit(unit) {
                    // Units are case-sensitive: `M` could as well mean months as minutes.
                    "a duration with a lower-case unit (ms, s, m, h, d, w)"
                } else if !is_unit(unit) {
                    DURATION_HINT
                } else if digits.bytes().all(|b| b == b'0') {
                    "a duration greater than zero"
                } else {
                    "a duration of at most 292 million years"
                };
                Err(self.error_at(start, expected))
            }
        }
    }

    /// Validates the time text consumed since `start`.
    fn time(&self, start: Pos) -> Result<TokenKind, ParseError> {
        match Timestamp::parse_rfc3339(self.text_from(start)) {
            Ok(t) if (MIN_TIME_MS..=MAX_TIME_MS).contains(&t.millis()) => Ok(TokenKind::Time(t)),
            _ => Err(self.error_at(start, "an RFC 3339 time such as 2026-03-01T00:00:00Z")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<TokenKind> {
        Lexer::new(src)
            .tokenize()
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn punctuation_and_comparisons() {
        use TokenKind::*;
        assert_eq!(
            kinds("( ) , . @ * = != > < >= <= -"),
            vec![
                LParen, RParen, Comma, Dot, At, Star, Eq, Ne, Gt, Lt, Ge, Le, Minus, Eof
            ]
        );
    }

    #[test]
    fn numbers_durations_times() {
        assert_eq!(
            kinds("0.99 10 1e-3 2E2"),
            vec![
                TokenKind::Number(0.99),
                TokenKind::Number(10.0),
                TokenKind::Number(0.001),
                TokenKind::Number(200.0),
                TokenKind::Eof
            ]
        );
        assert_eq!(
            kinds("250ms")[0],
            TokenKind::Duration(DurationMs::new(250).unwrap())
        );
        assert_eq!(
            kinds("2026-03-01T01:00:00+01:00")[0],
            TokenKind::Time(Timestamp(1_772_323_200_000))
        );
        // `1.` followed by a name is a number then a dot (a version then a feature).
        assert_eq!(kinds("1.x")[..2], [TokenKind::Number(1.0), TokenKind::Dot]);
    }

    #[test]
    fn positions_count_characters_and_lines() {
        let toks = Lexer::new("\"é\"(\n  x").tokenize().unwrap();
        assert_eq!((toks[1].pos.line, toks[1].pos.column), (1, 4));
        assert_eq!(
            (toks[2].pos.line, toks[2].pos.column, toks[2].pos.offset),
            (2, 3, 8)
        );
    }

    #[test]
    fn identifiers() {
        assert!(is_identifier("_a1"));
        assert!(!is_identifier("1a"));
        assert!(!is_identifier(""));
        assert!(!is_identifier("a-b"));
    }
}
