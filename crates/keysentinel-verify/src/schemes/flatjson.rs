//! A scanner for the one JSON shape on the hot path: a flat object of plain scalars, as JWT
//! claims are. Written by hand because a general parser (serde_json) costs several times the
//! scan itself for these ~200-byte objects and its borrowed strings cannot outlive the decoded
//! buffer without copies.
//!
//! It is a fast path only: it accepts a strict subset of JSON — ASCII strings without escapes,
//! integers that fit in an `i64`, `true`, `false`, `null` — and answers `None` for anything else
//! (escapes, non-ASCII, fractions, exponents, nested values, malformed input), so the caller
//! falls back to serde_json, which stays the authority. A property test checks that whenever
//! this scanner answers, serde_json reads the same members.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    Int(i64),
    Bool(bool),
    Null,
}

/// Calls `member` for each member in order; `None` when the input is outside the subset or
/// `member` returns false.
pub(crate) fn scan<'a>(input: &'a [u8], mut member: impl FnMut(&'a str, Scalar<'a>) -> bool) -> Option<()> {
    let mut s = Scanner { input, pos: 0 };
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

    /// A string of printable ASCII without escapes.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => return None,
                0x20..=0x7e => {}
                _ => return None,
            }
        }
        // Only printable ASCII was admitted, so this cannot fail.
        std::str::from_utf8(self.input.get(start..self.pos - 1)?).ok()
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        match self.peek()? {
            b'"' => self.string().map(Scalar::Str),
            b'-' | b'0'..=b'9' => self.integer().map(Scalar::Int),
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

    /// `-?(0|[1-9][0-9]*)`, not followed by a fraction or an exponent, within `i64`.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return None;
        }
        let mut value = i64::from(first - b'0');
        if first == b'0' && self.peek().is_some_and(|b| b.is_ascii_digit()) {
            return None;
        }
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            self.pos += 1;
            value = value.checked_mul(10)?.checked_add(i64::from(b - b'0'))?;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        Some(if negative { -value } else { value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(input: &[u8]) -> Option<Vec<(String, Scalar<'_>)>> {
        let mut out = Vec::new();
        scan(input, |k, v| {
            out.push((k.to_owned(), v));
            true
        })?;
        Some(out)
    }

    #[test]
    fn reads_the_subset_and_declines_the_rest() {
        let m = members(br#" {"a":"x", "n": -12 ,"t":true,"f":false,"z":null} "#).unwrap();
        assert_eq!(m.len(), 5);
        assert_eq!(m[1], ("n".into(), Scalar::Int(-12)));
        assert_eq!(members(b"{}").unwrap().len(), 0);
        for declined in [
            &br#"{"a":"\u0041"}"#[..],
            br#"{"a":1.5}"#,
            br#"{"a":1e3}"#,
            br#"{"a":01}"#,
            br#"{"a":{}}"#,
            br#"{"a":[1]}"#,
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a":99999999999999999999}"#,
            "{\"a\":\"\u{e9}\"}".as_bytes(),
            br#"{"a" 1}"#,
            b"",
            b"[]",
            br#"{"a":tru}"#,
        ] {
            assert_eq!(members(declined), None, "{}", String::from_utf8_lossy(declined));
        }
    }

    /// JSON-ish text from a small alphabet, so that both valid and broken objects are common.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
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
            any::<i64>().prop_map(|n| n.to_string()),
            "[ -~]{0,6}".prop_map(|s| format!("\"{}\"", s.replace(['"', '\\'], ""))),
        ];
        prop::collection::vec(token, 0..14).prop_map(|t| t.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn whenever_it_answers_serde_json_agrees(input in jsonish()) {
            if let Some(ours) = members(&input) {
                let theirs: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&input)
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
            any::<bool>().prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
        ]), 0..6)) {
            let object: serde_json::Map<String, serde_json::Value> = pairs.into_iter().collect();
            let text = serde_json::to_vec(&object).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let ours = members(&text);
            prop_assert!(ours.is_some(), "declined {}", String::from_utf8_lossy(&text));
            prop_assert_eq!(ours.map(|m| m.len()), Some(object.len()));
        }
    }
}
