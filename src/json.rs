//! A validating JSON scanner for record payloads: it checks the whole text against the JSON
//! grammar (RFC 8259) and hands out the raw text of values, without building any value.
//!
//! Pure, no allocation. The record encoder ([`crate::record`]) reads the payload's top level and
//! its `tags` and `fields` members with it and copies every value's own spelling into the line,
//! so a value is never converted twice. It replaced serde_json's deserializer on this path:
//! decode + encode of a typical 294-byte record went from 524–590 ns to 446–483 ns, of which
//! this scanner takes 164–171 (docs/BENCHMARKS.md).
//!
//! It accepts what serde_json accepts (a property test in `tests/record_props.rs` and the fuzz
//! target compare the two on generated and mutated documents): the same grammar, control characters refused inside
//! strings, escapes checked for syntax only (a lone surrogate in a raw value passes, as in
//! serde_json; decoding a string is where it is caught). One difference: nesting deeper than
//! 127 levels is refused everywhere. That is serde_json's limit when it builds values, but it
//! skips raw values without one; a log record nested that deep is a mistake, and the limit
//! keeps this recursive scanner's stack small. Error messages use serde_json's wording, with
//! the line and column.
//!
//! The text is a `&str`: the caller has checked UTF-8 once for the whole payload, so only the
//! ASCII bytes of the grammar are looked at here and every slice handed out is on a character
//! boundary.

use std::fmt;

/// How deep arrays and objects may nest: serde_json's limit when it builds values.
const MAX_DEPTH: u32 = 127;

/// A scan stopped at an error; [`Scanner::error`] says which and where. (The scanner keeps
/// the details so every result is at most two words: returned in registers, not through
/// memory, which measurably slowed a scan with a 32-byte error in every result.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

/// Why the text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    what: &'static str,
    line: usize,
    column: usize,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {} column {}",
            self.what, self.line, self.column
        )
    }
}

impl std::error::Error for Error {}

/// A string token: its raw text with the quotes, and whether it has a backslash escape (when
/// it has none, the text between the quotes is the string itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Str<'a> {
    pub raw: &'a str,
    pub escaped: bool,
}

impl<'a> Str<'a> {
    /// The text between the quotes, escapes not decoded.
    pub fn inner(&self) -> &'a str {
        &self.raw[1..self.raw.len() - 1]
    }
}

/// An object being read with [`Scanner::next_key`].
#[derive(Debug)]
pub struct Object {
    first: bool,
}

/// Reads one JSON text front to back.
pub struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
    /// What stopped the scan, and at which byte.
    failure: Option<(&'static str, usize)>,
}

impl<'a> Scanner<'a> {
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            depth: 0,
            failure: None,
        }
    }

    /// The first byte of the next value, after whitespace, without taking it.
    #[inline]
    pub fn peek_value(&mut self) -> Result<u8, Failed> {
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            Some(&b) => Ok(b),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// Takes a whole value and returns its raw text (from its first byte to its last).
    pub fn value(&mut self) -> Result<&'a str, Failed> {
        let first = self.peek_value()?;
        let start = self.pos;
        match first {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                let mut object = self.object()?;
                while self.next_key(&mut object)?.is_some() {
                    self.value()?;
                }
            }
            b'[' => self.array()?,
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return Err(self.error("expected value")),
        }
        Ok(&self.text[start..self.pos])
    }

    /// Takes the `{` of an object; read its members with [`Scanner::next_key`] and
    /// [`Scanner::value`] until `next_key` returns `None`.
    #[inline]
    pub fn object(&mut self) -> Result<Object, Failed> {
        self.skip_whitespace();
        if self.bytes.get(self.pos) != Some(&b'{') {
            return Err(self.error("expected `{`"));
        }
        self.enter()?;
        self.pos += 1;
        Ok(Object { first: true })
    }

    /// The next member's key (its `:` taken too), or `None` after the object's `}`.
    #[inline(always)]
    pub fn next_key(&mut self, object: &mut Object) -> Result<Option<Str<'a>>, Failed> {
        self.skip_whitespace();
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.error("EOF while parsing an object"));
        };
        if b == b'}' {
            self.pos += 1;
            self.depth -= 1;
            return Ok(None);
        }
        if !object.first {
            if b != b',' {
                return Err(self.error("expected `,` or `}`"));
            }
            self.pos += 1;
            self.skip_whitespace();
        }
        object.first = false;
        match self.bytes.get(self.pos) {
            Some(b'"') => {}
            Some(_) => return Err(self.error("key must be a string")),
            None => return Err(self.error("EOF while parsing an object")),
        }
        let key = self.string()?;
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            Some(b':') => self.pos += 1,
            Some(_) => return Err(self.error("expected `:`")),
            None => return Err(self.error("EOF while parsing an object")),
        }
        Ok(Some(key))
    }

    /// Only whitespace may follow the value that was read.
    pub fn finish(&mut self) -> Result<(), Failed> {
        self.skip_whitespace();
        if self.pos < self.bytes.len() {
            return Err(self.error("trailing characters"));
        }
        Ok(())
    }

    fn enter(&mut self) -> Result<(), Failed> {
        if self.depth == MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.depth += 1;
        Ok(())
    }

    fn array(&mut self) -> Result<(), Failed> {
        self.enter()?;
        self.pos += 1;
        self.skip_whitespace();
        match self.bytes.get(self.pos) {
            Some(b']') => {
                self.pos += 1;
                self.depth -= 1;
                return Ok(());
            }
            None => return Err(self.error("EOF while parsing a list")),
            Some(_) => {}
        }
        loop {
            self.value()?;
            self.skip_whitespace();
            match self.bytes.get(self.pos) {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                Some(_) => return Err(self.error("expected `,` or `]`")),
                None => return Err(self.error("EOF while parsing a list")),
            }
        }
    }

    #[inline]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), Failed> {
        for &expected in word {
            match self.bytes.get(self.pos) {
                Some(&b) if b == expected => self.pos += 1,
                Some(_) => return Err(self.error("expected ident")),
                None => return Err(self.error("EOF while parsing a value")),
            }
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    #[inline]
    fn number(&mut self) -> Result<(), Failed> {
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => {
                self.pos += 1;
                if self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if matches!(self.bytes.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.bytes.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    #[inline]
    fn some_digits(&mut self) -> Result<(), Failed> {
        match self.bytes.get(self.pos) {
            Some(b) if b.is_ascii_digit() => {
                self.digits();
                Ok(())
            }
            _ => Err(self.error("invalid number")),
        }
    }

    #[inline]
    fn digits(&mut self) {
        self.pos = digits_end(self.bytes, self.pos);
    }

    /// Takes a string token starting at its opening quote.
    #[inline(always)]
    fn string(&mut self) -> Result<Str<'a>, Failed> {
        let start = self.pos;
        self.pos += 1;
        let mut escaped = false;
        loop {
            self.pos = plain_string_end(self.bytes, self.pos);
            let Some(&b) = self.bytes.get(self.pos) else {
                return Err(self.error("EOF while parsing a string"));
            };
            self.pos += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.escape()?;
                }
                // serde_json reports it on the byte before.
                _ => {
                    return Err(self.error_at(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                        self.pos - 2,
                    ))
                }
            }
        }
        Ok(Str {
            raw: &self.text[start..self.pos],
            escaped,
        })
    }

    /// Checks the escape after a backslash (syntax only, as serde_json does for raw values).
    #[cold]
    fn escape(&mut self) -> Result<(), Failed> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return Err(self.error("EOF while parsing a string"));
        };
        self.pos += 1;
        match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Ok(()),
            b'u' => {
                let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
                    self.pos = self.bytes.len();
                    return Err(self.error("EOF while parsing a string"));
                };
                if !digits.iter().all(u8::is_ascii_hexdigit) {
                    // Reported on the fourth digit, as serde_json reads all four first.
                    self.pos += 3;
                    return Err(self.error("invalid escape"));
                }
                self.pos += 4;
                Ok(())
            }
            _ => Err(self.error_at("invalid escape", self.pos - 1)),
        }
    }

    #[inline]
    fn skip_whitespace(&mut self) {
        self.pos = whitespace_end(self.bytes, self.pos);
    }

    /// An error at the current position, counted as serde_json does: lines from 1, and the
    /// column of the byte in its line from 1 (0 at the very start).
    #[cold]
    fn error(&mut self, what: &'static str) -> Failed {
        let pos = self.pos;
        self.error_at(what, pos)
    }

    #[cold]
    fn error_at(&mut self, what: &'static str, pos: usize) -> Failed {
        self.failure = Some((what, pos));
        Failed
    }

    /// What stopped the scan after a [`Failed`].
    pub fn failure(&self) -> Error {
        let (what, pos) = self.failure.unwrap_or(("scan failed", self.pos));
        // serde_json's position: just past the offending byte, lines and columns counted
        // over the bytes up to there (so a bad newline is column 0 of the next line).
        let upto = &self.bytes[..(pos + 1).min(self.bytes.len())];
        let line_start = upto.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        Error {
            what,
            line: 1 + upto.iter().filter(|&&b| b == b'\n').count(),
            column: upto.len() - line_start,
        }
    }
}

// The loops over bytes are free functions of an index rather than methods moving `self.pos`:
// with the position in a local the compiler keeps it in a register instead of storing it
// back on every byte.

/// The index of the first byte at or after `i` that needs attention inside a string: `"`,
/// `\` or a control character. Eight bytes at a time while none of them is special, since a
/// log message is most of a record's bytes.
#[inline]
fn plain_string_end(bytes: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Whether any byte of `word` is zero / below 0x20 (exact as a yes-or-no answer).
    let has_zero = |word: u64| word.wrapping_sub(ONES) & !word & HIGHS != 0;
    let has_below_space = |word: u64| word.wrapping_sub(ONES * 0x20) & !word & HIGHS != 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if has_zero(word ^ (ONES * u64::from(b'"')))
            || has_zero(word ^ (ONES * u64::from(b'\\')))
            || has_below_space(word)
        {
            break;
        }
        i += 8;
    }
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` that is not an ASCII digit.
#[inline]
fn digits_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
#[inline]
fn whitespace_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\n' | b'\t' | b'\r') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The raw text `Scanner::value` returns for a whole document, or its error.
    fn scan(text: &str) -> Result<&str, String> {
        let mut scanner = Scanner::new(text);
        let raw = scanner
            .value()
            .and_then(|raw| scanner.finish().map(|()| raw));
        raw.map_err(|Failed| scanner.failure().to_string())
    }

    fn serde_accepts(text: &str) -> bool {
        serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
    }

    #[test]
    fn values_are_returned_as_their_raw_text() {
        for (text, raw) in [
            (
                "  {\"a\" : [1, 2.5e-3, true, null, \"x\\ny\"]}\n",
                "{\"a\" : [1, 2.5e-3, true, null, \"x\\ny\"]}",
            ),
            ("-0", "-0"),
            ("\"\\ud800\"", "\"\\ud800\""),
            ("[]", "[]"),
            ("{}", "{}"),
            ("\"温度🚀\"", "\"温度🚀\""),
        ] {
            assert_eq!(scan(text), Ok(raw), "{text}");
        }
    }

    #[test]
    fn errors_use_serde_json_wording_and_position() {
        for text in [
            "",
            "nul",
            "not json",
            "{",
            "{\"a\"",
            "{\"a\":",
            "{\"a\":1",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "{\"a\" 1}",
            "{1:2}",
            "01",
            "-",
            "1.",
            "1e",
            "1e+",
            ".5",
            "+1",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12g4\"",
            "\"a\u{1}b\"",
            "{} x",
            "[",
            "[1",
            "\"\\",
            "tru",
            "NaN",
            "{\"a\":1}}",
            "\n\n  [1,\n 2,,]",
        ] {
            let ours = scan(text).expect_err(text);
            let theirs = serde_json::from_str::<serde::de::IgnoredAny>(text)
                .expect_err(text)
                .to_string();
            assert_eq!(ours, theirs, "for {text:?}");
        }
    }

    #[test]
    fn nesting_is_limited_as_in_serde_json() {
        // serde_json's own limit when it builds values; it skips raw values without one.
        for depth in [1, 126, 127] {
            let text = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            assert!(scan(&text).is_ok() && serde_accepts(&text), "depth {depth}");
            let text = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            assert!(scan(&text).is_ok() && serde_accepts(&text), "depth {depth}");
        }
        let text = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(
            scan(&text).unwrap_err(),
            "recursion limit exceeded at line 1 column 128"
        );
        assert!(
            scan(&"[".repeat(100_000)).is_err(),
            "deep nesting must not overflow the stack"
        );
    }

    #[test]
    fn long_strings_are_checked_byte_for_byte() {
        // Every special byte at every position relative to the 8-byte steps.
        for len in 0..24 {
            for at in 0..len {
                for special in [b'"', b'\\', 0x01, 0x1f, b'\n'] {
                    let mut body = vec![b'a'; len];
                    body[at] = special;
                    let text = format!("\"{}\"", String::from_utf8(body).unwrap());
                    assert_eq!(scan(&text).is_ok(), serde_accepts(&text), "{text:?}");
                }
            }
        }
    }
}
