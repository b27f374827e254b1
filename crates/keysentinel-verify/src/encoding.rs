//! Small encoding helpers for what exchanges sign. Written here because each scheme hashes a
//! precise byte string (ccxt's `rawencode`, `encodeURIComponent`, a JSON body in its own key
//! order) and a general URL library would normalise exactly what must not be touched.

/// Percent-decodes `s` (`+` is left alone: Upbit's unescaped query keeps it). Returns None on a
/// malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).and_then(|c| (*c as char).to_digit(16))?;
            let lo = b.get(i + 2).and_then(|c| (*c as char).to_digit(16))?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The value of the last `name=` parameter in a query or form string, still encoded.
pub fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    // From the back, stopping at the first match: this runs on every verify.
    query.rsplit('&').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// Splits a trailing `signature=` parameter off a query or form string: returns the signed part
/// and the signature (encoded). The signature must be the last parameter, as exchanges require.
pub fn split_signature(s: &str) -> Option<(&str, &str)> {
    if let Some(sig) = s.strip_prefix("signature=") {
        return (!sig.contains('&')).then_some(("", sig));
    }
    // The signature is the last parameter: what follows the last `&` (a byte search; a
    // substring search costs more than the rest of the parsing on every verify).
    let at = s.rfind('&')?;
    let sig = s[at + 1..].strip_prefix("signature=")?;
    Some((&s[..at], sig))
}

/// `encodeURIComponent` with ccxt's safe set `~()*!.'` (Bithumb's query hash input).
pub fn encode_uri_component(s: &str, out: &mut String) {
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'(' | b')' | b'*' | b'!' | b'\'') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from_digit(u32::from(b >> 4), 16).map_or('0', |c| c.to_ascii_uppercase()));
            out.push(char::from_digit(u32::from(b & 15), 16).map_or('0', |c| c.to_ascii_uppercase()));
        }
    }
}

/// A JSON object's top-level members in document order (serde_json's map would sort them, and
/// the order is part of what Upbit and Bithumb hash).
pub fn json_members(body: &[u8]) -> Option<Vec<(String, serde_json::Value)>> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Ordered;
    impl<'de> Visitor<'de> for Ordered {
        type Value = Vec<(String, serde_json::Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let members = de.deserialize_map(Ordered).ok()?;
    de.end().ok()?;
    Some(members)
}

/// A JSON scalar as ccxt stringifies it for signing.
pub fn scalar_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(b) => b.to_string(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Upbit's hash input for a JSON body: unescaped `k=v&...`, arrays as `k[]=v` repeated.
pub fn upbit_body_query(members: &[(String, serde_json::Value)]) -> String {
    let mut out = String::new();
    for (k, v) in members {
        let items: Vec<&serde_json::Value> = match v {
            serde_json::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        let key = if v.is_array() { format!("{k}[]") } else { k.clone() };
        for item in items {
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&key);
            out.push('=');
            out.push_str(&scalar_text(item));
        }
    }
    out
}

/// Bithumb's hash input for a JSON body: ccxt's `urlencode_with_array_brackets`.
pub fn bithumb_body_query(members: &[(String, serde_json::Value)]) -> String {
    let mut out = String::new();
    for (k, v) in members {
        let items: Vec<&serde_json::Value> = match v {
            serde_json::Value::Array(a) => a.iter().collect(),
            other => vec![other],
        };
        for item in items {
            if !out.is_empty() {
                out.push('&');
            }
            encode_uri_component(k, &mut out);
            if v.is_array() {
                out.push_str("[]");
            }
            out.push('=');
            encode_uri_component(&scalar_text(item), &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The byte-search versions answer exactly as the plain definitions do.
        #[test]
        fn param_and_split_signature_match_their_definitions(
            q in "([a-z]{0,3}(=[a-z0-9&=]{0,4})?&?){0,6}(signature=[a-f0-9&]{0,4})?",
            name in "[a-z]{1,3}",
        ) {
            let param_def = q.split('&').filter_map(|kv| kv.split_once('=')).filter(|(k, _)| *k == name).map(|(_, v)| v).next_back();
            prop_assert_eq!(param(&q, &name), param_def);
            let split_def = match q.strip_prefix("signature=") {
                Some(sig) => (!sig.contains('&')).then_some(("", sig)),
                None => q.rfind("&signature=").and_then(|at| {
                    let sig = &q[at + "&signature=".len()..];
                    (!sig.contains('&')).then_some((&q[..at], sig))
                }),
            };
            prop_assert_eq!(split_signature(&q), split_def);
        }
    }

    #[test]
    fn signature_is_split_only_when_last() {
        assert_eq!(split_signature("a=1&timestamp=2&signature=abc"), Some(("a=1&timestamp=2", "abc")));
        assert_eq!(split_signature("signature=abc"), Some(("", "abc")));
        assert_eq!(split_signature("signature=abc&a=1"), None);
        assert_eq!(split_signature("a=1&signature=abc&b=2"), None);
        assert_eq!(split_signature("a=1"), None);
    }

    #[test]
    fn json_members_keep_document_order() {
        let m = json_members(br#"{"z":"1","a":[2,"x y"],"m":true}"#).unwrap();
        assert_eq!(upbit_body_query(&m), "z=1&a[]=2&a[]=x y&m=true");
        assert_eq!(bithumb_body_query(&m), "z=1&a[]=2&a[]=x%20y&m=true");
        assert!(json_members(b"[1]").is_none());
        assert!(json_members(br#"{"a":1} trailing"#).is_none());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%3D1%26b").as_deref(), Some(&b"a=1&b"[..]));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    proptest! {
        #[test]
        fn helpers_never_panic(s in ".{0,80}", b in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = percent_decode(&s);
            let _ = split_signature(&s);
            let _ = param(&s, "timestamp");
            let _ = json_members(&b);
            let mut out = String::new();
            encode_uri_component(&s, &mut out);
            prop_assert!(out.is_ascii());
        }
    }
}
