//! A scanner for the one JSON shape on the hot paths: a flat object of plain scalars, as JWT
//! claims and event records are. Written by hand because a general parser (serde_json) costs
//! several times the scan itself for these ~200-byte objects, and its borrowed strings cannot
//! outlive the decoded buffer without copies.
//!
//! It is a fast path only: it accepts a strict subset of JSON — strings without escapes,
//! numbers, `true`, `false`, `null` — and answers `None` for anything else (escapes, nested values,
//! , malformed input), so the caller falls back to serde_json, which stays the
//! authority. A property test checks that whenever this scanner answers, serde_json reads the
//! same members.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar<'a> {
    Str(&'a str),
    /// An integer that fits in an `i64`.
    Int(i64),
    /// Any other JSON number (a fraction, an exponent, a large integer), as its text; valid
    /// JSON number syntax, so `str::parse::<f64>` reads it.
    Num(&'a str),
    Bool(bool),
    Null,
}

/// Calls `member` for each member in order; `None` when the input is outside the subset or
/// `member` returns false.
///
/// The input is a `&str`, already valid UTF-8, so strings are sliced out of it without being
/// validated again.
pub fn scan<'a>(text: &'a str, mut member: impl FnMut(&'a str, Scalar<'a>) -> bool) -> Option<()> {
    let input = text.as_bytes();
    let mut s = Scanner { text, input, pos: 0 };
    s.skip_ws();
    s.expect(b'{')?;
    s.skip_ws();
    if s.peek() == Some(b'}') {
        s.pos += 1;
    } else {
        loop {
            s.skip_ws();
            let key = s.string()?;
            s.skip_ws();
            s.expect(b':')?;
            s.skip_ws();
            let value = s.scalar()?;
            if !member(key, value) {
                return None;
            }
            s.skip_ws();
            match s.next()? {
                b',' => continue,
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.pos == input.len()).then_some(())
}

struct Scanner<'a> {
    text: &'a str,
    input: &'a [u8],
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn expect(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A string without escapes or control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        // A plain loop: these strings are short (ids, codes, addresses), where a vectorised
        // search costs more to set up than it saves.
        let len = self.input.get(start..)?.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        if self.input.get(start + len) != Some(&b'"') {
            return None;
        }
        self.pos = start + len + 1;
        // A quote never occurs inside a multi-byte character, so both ends are boundaries.
        self.text.get(start..start + len)
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Scalar::Str),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Scalar::Bool(true)),
            b'f' => self.literal(b"false", Scalar::Bool(false)),
            b'n' => self.literal(b"null", Scalar::Null),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], value: Scalar<'a>) -> Option<Scalar<'a>> {
        let end = self.pos + word.len();
        (self.input.get(self.pos..end)? == word).then(|| {
            self.pos = end;
            value
        })
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`: an `Int` when it is an integer within
    /// `i64`, otherwise its text.
    fn number(&mut self) -> Option<Scalar<'a>> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return None;
        }
        if first == b'0' && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return None;
        }
        let mut value = Some(i64::from(first - b'0'));
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            self.pos += 1;
            value = value.and_then(|v| v.checked_mul(10)?.checked_add(i64::from(b - b'0')));
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits()?;
            integer = false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits()?;
            integer = false;
        }
        match value {
            Some(v) if integer => Some(Scalar::Int(if negative { -v } else { v })),
            _ => self.text.get(start..self.pos).map(Scalar::Num),
        }
    }

    /// One or more digits.
    fn digits(&mut self) -> Option<()> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.pos += 1;
        }
        (self.pos > start).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(input: &str) -> Option<Vec<(String, Scalar<'_>)>> {
        let mut out = Vec::new();
        scan(input, |k, v| {
            out.push((k.to_owned(), v));
            true
        })?;
        Some(out)
    }

    #[test]
    fn reads_the_subset_and_declines_the_rest() {
        let m = members(r#" {"a":"x", "n": -12 ,"t":true,"f":false,"z":null} "#).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[1], ("n".into(), Scalar::Int(-12)));
        assert_eq!(members("{}").unwrap().len(), 0);
        let n = members(r#"{"f":1.5,"e":-2E+3,"big":99999999999999999999}"#).unwrap();
        assert_eq!(n[0].1, Scalar::Num("1.5"));
        assert_eq!(n[1].1, Scalar::Num("-2E+3"));
        assert_eq!(n[2].1, Scalar::Num("99999999999999999999"));
        // Raw UTF-8 is plain JSON.
        assert_eq!(members("{\"ua\":\"한국\u{e9}\"}").unwrap()[0].1, Scalar::Str("한국\u{e9}"));
        for declined in [
            r#"{"a":"\u0041"}"#,
            r#"{"a":01}"#,
            r#"{"a":{}}"#,
            r#"{"a":[1]}"#,
            r#"{"a":1,}"#,
            r#"{"a":1} x"#,
            r#"{"a":1.}"#,
            r#"{"a":1e}"#,
            r#"{"a":.5}"#,
            r#"{"a":-}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a" 1}"#,
            "",
            "[]",
            r#"{"a":tru}"#,
        ] {
            assert_eq!(members(declined), None, "{declined}");
        }
    }

    /// JSON-ish text from a small alphabet, so that both valid and broken objects are common.
    fn jsonish() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("{".to_owned()),
            Just("}".to_owned()),
            Just(",".to_owned()),
            Just(":".to_owned()),
            Just(" ".to_owned()),
            Just("\"k\"".to_owned()),
            Just("\"nonce\"".to_owned()),
            Just("\"a\\\"b\"".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("[1]".to_owned()),
            Just("-0".to_owned()),
            Just("1.5".to_owned()),
            Just("\"é한\"".to_owned()),
            Just("-2.5e-3".to_owned()),
            Just("1e".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,6}".prop_map(|s| format!("\"{}\"", s.replace(['"', '\\'], ""))),
        ];
        prop::collection::vec(token, 0..14).prop_map(|t| t.concat())
    }

    proptest! {
        #[test]
        fn whenever_it_answers_serde_json_agrees(input in jsonish()) {
            if let Some(ours) = members(&input) {
                let theirs: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&input)
                    .map_err(|e| TestCaseError::fail(format!("serde_json refused what we accepted: {e}")))?;
                // serde_json keeps the last of duplicate keys; compare in that light.
                let mut last = std::collections::HashMap::new();
                for (k, v) in &ours {
                    last.insert(k.clone(), *v);
                }
                prop_assert_eq!(last.len(), theirs.len());
                for (k, v) in &last {
                    let expected = match v {
                        Scalar::Str(s) => serde_json::Value::from(*s),
                        Scalar::Int(n) => serde_json::Value::from(*n),
                        Scalar::Num(t) => serde_json::Value::from(t.parse::<f64>().map_err(|e| TestCaseError::fail(e.to_string()))?),
                        Scalar::Bool(b) => serde_json::Value::from(*b),
                        Scalar::Null => serde_json::Value::Null,
                    };
                    prop_assert_eq!(theirs.get(k), Some(&expected));
                }
            }
        }

        #[test]
        fn valid_flat_objects_are_read(pairs in prop::collection::vec(("[a-z_]{1,8}", prop_oneof![
            "[ -!#-\\[\\]-~]{0,12}".prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ]), 0..6)) {
            let object: serde_json::Map<String, serde_json::Value> = pairs.into_iter().collect();
            let text = serde_json::to_string(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ours = members(&text);
            prop_assert!(ours.is_some(), "declined {}", text);
            prop_assert_eq!(ours.map(|m| m.len()), Some(object.len()));
        }
    }
}
