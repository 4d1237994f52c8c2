//! A small JSON scanner over one line of text, for the JSONL readers: strings are borrowed from
//! the line unless they hold escapes, numbers are handed out as their text (parsed by the caller
//! as an integer or a float), and nested values the caller does not read are skipped without
//! being built. Nesting is limited so a hostile line cannot exhaust the stack.

use std::borrow::Cow;

/// Deepest nesting of arrays and objects a line may have.
pub const MAX_DEPTH: usize = 64;

/// A scalar value, or the extent of an array or object left unparsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number as written; `int` when it has no fraction or exponent.
    Num {
        /// The number's text.
        text: &'a str,
        /// Whether it is an integer literal.
        int: bool,
    },
    /// A string, unescaped.
    Str(Cow<'a, str>),
    /// An object: its text, braces included.
    Obj(&'a str),
    /// An array: its text, brackets included.
    Arr(&'a str),
}

impl Val<'_> {
    /// What the value is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Null => "null",
            Val::Bool(_) => "a boolean",
            Val::Num { .. } => "a number",
            Val::Str(_) => "a string",
            Val::Obj(_) => "an object",
            Val::Arr(_) => "an array",
        }
    }
}

/// A cursor over one line.
#[derive(Debug)]
pub struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `s`.
    pub fn new(s: &'a str) -> Parser<'a> {
        Parser {
            s,
            b: s.as_bytes(),
            i: 0,
        }
    }

    fn err(&self, what: &str) -> String {
        format!("invalid JSON at column {}: {what}", self.i + 1)
    }

    /// Skips whitespace.
    #[inline]
    pub fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\r' | b'\n') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// Whether only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.ws();
        self.i >= self.b.len()
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Consumes `c` (after whitespace) or fails.
    #[inline]
    pub fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    /// Starts an object: consumes `{`.
    pub fn begin_object(&mut self) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(b'{') {
            self.i += 1;
            Ok(())
        } else {
            Err("line is not a JSON object".into())
        }
    }

    /// The next key of an object being read (`None` at its closing brace); `first` is true for
    /// the first call after [`Parser::begin_object`]. Consumes the `:` after the key.
    #[inline]
    pub fn next_key(&mut self, first: bool) -> Result<Option<Cow<'a, str>>, String> {
        self.ws();
        match self.peek() {
            Some(b'}') => {
                self.i += 1;
                return Ok(None);
            }
            Some(b',') if !first => {
                self.i += 1;
                self.ws();
            }
            _ if first => {}
            _ => return Err(self.err("expected ',' or '}'")),
        }
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a key"));
        }
        let k = self.string()?;
        self.expect(b':')?;
        Ok(Some(k))
    }

    /// A string starting at the cursor's `"`.
    #[inline]
    pub fn string(&mut self) -> Result<Cow<'a, str>, String> {
        self.i += 1; // the opening quote
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'"' => {
                    let s = &self.s[start..self.i];
                    self.i += 1;
                    return Ok(Cow::Borrowed(s));
                }
                b'\\' => return self.string_escaped(start).map(Cow::Owned),
                0..=0x1f => return Err(self.err("control character in a string")),
                _ => self.i += 1,
            }
        }
        Err(self.err("unterminated string"))
    }

    fn string_escaped(&mut self, start: usize) -> Result<String, String> {
        let mut out = String::with_capacity(self.i - start + 16);
        out.push_str(&self.s[start..self.i]);
        loop {
            let run = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.s[run..self.i]);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&hi) {
                                if self.b.get(self.i) != Some(&b'\\')
                                    || self.b.get(self.i + 1) != Some(&b'u')
                                {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("unpaired surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(c).ok_or_else(|| self.err("bad \\u escape"))?);
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in a string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or_else(|| self.err("bad \\u escape"))?;
        let v = u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.err("bad \\u escape"));
        }
        self.i += 4;
        Ok(v)
    }

    #[inline]
    fn number(&mut self) -> Result<Val<'a>, String> {
        let start = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == int_start || (b[int_start] == b'0' && i - int_start > 1) {
            self.i = i;
            return Err(self.err("bad number"));
        }
        let mut int = true;
        if b.get(i) == Some(&b'.') {
            int = false;
            i += 1;
            let f = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                self.i = i;
                return Err(self.err("bad number"));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            int = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let e = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == e {
                self.i = i;
                return Err(self.err("bad number"));
            }
        }
        self.i = i;
        Ok(Val::Num {
            text: &self.s[start..i],
            int,
        })
    }

    fn literal(&mut self, lit: &[u8], v: Val<'a>) -> Result<Val<'a>, String> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(v)
        } else {
            Err(self.err("unexpected token"))
        }
    }

    /// The next value: scalars parsed, arrays and objects skipped and returned as text.
    #[inline]
    pub fn value(&mut self) -> Result<Val<'a>, String> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Val::Str(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'n') => self.literal(b"null", Val::Null),
            Some(b't') => self.literal(b"true", Val::Bool(true)),
            Some(b'f') => self.literal(b"false", Val::Bool(false)),
            Some(b'{') => {
                let start = self.i;
                self.skip_container()?;
                Ok(Val::Obj(&self.s[start..self.i]))
            }
            Some(b'[') => {
                let start = self.i;
                self.skip_container()?;
                Ok(Val::Arr(&self.s[start..self.i]))
            }
            Some(_) => Err(self.err("unexpected character")),
            None => Err(self.err("unexpected end of line")),
        }
    }

    /// Whether the next value is an object (after whitespace).
    pub fn at_object(&mut self) -> bool {
        self.ws();
        self.peek() == Some(b'{')
    }

    /// Skips an array or object at the cursor, checking its syntax, iteratively.
    fn skip_container(&mut self) -> Result<(), String> {
        // The stack of open containers: true for an object.
        let mut stack: Vec<bool> = Vec::new();
        loop {
            self.ws();
            // At the start of a value.
            match self.peek() {
                Some(b'{') | Some(b'[') => {
                    let obj = self.peek() == Some(b'{');
                    self.i += 1;
                    if stack.len() >= MAX_DEPTH {
                        return Err(self.err("nested too deeply"));
                    }
                    stack.push(obj);
                    self.ws();
                    let close = if obj { b'}' } else { b']' };
                    if self.peek() == Some(close) {
                        self.i += 1;
                        stack.pop();
                    } else {
                        if obj {
                            self.key_of_skipped()?;
                        }
                        continue;
                    }
                }
                _ => {
                    let v = self.value()?;
                    debug_assert!(!matches!(v, Val::Obj(_) | Val::Arr(_)));
                }
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&obj) = stack.last() else {
                    return Ok(());
                };
                self.ws();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        if obj {
                            self.ws();
                            self.key_of_skipped()?;
                        }
                        break;
                    }
                    Some(b'}') if obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    Some(b']') if !obj => {
                        self.i += 1;
                        stack.pop();
                    }
                    _ => return Err(self.err("expected ',' or a closing bracket")),
                }
            }
        }
    }

    fn key_of_skipped(&mut self) -> Result<(), String> {
        self.ws();
        if self.peek() != Some(b'"') {
            return Err(self.err("expected a key"));
        }
        self.string()?;
        self.expect(b':')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a whole line into a serde_json value through the scanner, for comparison.
    fn to_value(s: &str) -> Result<serde_json::Value, String> {
        let mut p = Parser::new(s);
        let v = p.value()?;
        if !p.at_end() {
            return Err("trailing characters".into());
        }
        Ok(match v {
            Val::Null => serde_json::Value::Null,
            Val::Bool(b) => serde_json::Value::Bool(b),
            Val::Num { text, .. } => {
                serde_json::from_str(text).map_err(|e| format!("number {text}: {e}"))?
            }
            Val::Str(s) => serde_json::Value::String(s.into_owned()),
            Val::Obj(t) | Val::Arr(t) => serde_json::from_str(t).map_err(|e| e.to_string())?,
        })
    }

    #[test]
    fn agrees_with_serde_json() {
        let cases = [
            r#"{"a":1,"b":[1,2,{"c":null}],"d":"x\"y\\u00e9\ud83d\ude00","e":-0.5e-3}"#,
            r#"  "plain"  "#,
            r#""esc \n \t \/ \b \f \r""#,
            "-12",
            "0",
            "1.25E+3",
            "true",
            "null",
            "[]",
            "{}",
            r#"[[[]],{}, {"k":[{"x":{}}]}]"#,
            r#"{"a" : 1 , "b" : { } }"#,
        ];
        for c in cases {
            let want: serde_json::Value = serde_json::from_str(c).unwrap();
            assert_eq!(to_value(c).unwrap(), want, "{c}");
        }
        for bad in [
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            "[1,]",
            "01",
            "1.",
            "-",
            "tru",
            r#""abc"#,
            r#""\x""#,
            r#""\ud800""#,
            "{\"a\":\"\u{1}\"}",
            "[1 2]",
            "{1:2}",
        ] {
            assert!(to_value(bad).is_err(), "{bad} should be refused");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(to_value(&deep).unwrap_err().contains("nested too deeply"));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(to_value(&ok).is_ok());
    }

    #[test]
    fn keys_borrow_unless_escaped() {
        let mut p = Parser::new(r#"{"plain":1,"esc\u0041":2}"#);
        p.begin_object().unwrap();
        let k = p.next_key(true).unwrap().unwrap();
        assert!(matches!(k, Cow::Borrowed("plain")));
        assert_eq!(
            p.value().unwrap(),
            Val::Num {
                text: "1",
                int: true
            }
        );
        let k = p.next_key(false).unwrap().unwrap();
        assert_eq!(k, "escA");
        p.value().unwrap();
        assert!(p.next_key(false).unwrap().is_none());
    }
}
