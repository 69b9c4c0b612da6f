//! Canonical JSON and Hashdist's `hash_document`.
//!
//! [`canonical_json`] produces exactly what Python's
//! `json.dumps(doc, sort_keys=True, separators=(',', ':'), ensure_ascii=True)` produces, because
//! Hashdist hashes that text and our ids must match its ids. It is hand-written rather than
//! built on `serde_json::to_string` because serde_json neither escapes non-ASCII nor sorts keys
//! independently of its `preserve_order` feature.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use super::{Digest, HashError, ShortDigest};

/// Object keys starting with this prefix are dropped by [`prune_nohash`]: Hashdist's marker for
/// spec fields that must not influence a build's hash.
pub const NOHASH_PREFIX: &str = "nohash_";

/// One step of the location of a value inside a document, kept so errors can name it.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Renders a path as `$.a[0].b`; keys that are not identifiers are written `["..."]` so the
/// path stays unambiguous.
fn render_path(path: &[Seg<'_>]) -> String {
    let mut out = String::from("$");
    for seg in path {
        match seg {
            Seg::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
            Seg::Key(k) if is_identifier(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Key(k) => {
                out.push('[');
                write_str(&mut out, k);
                out.push(']');
            }
        }
    }
    out
}

fn is_identifier(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Writes `s` as a JSON string literal with Python's `ensure_ascii=True` escaping.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            // Python escapes everything outside ' '..='~', which includes DEL (0x7f).
            ' '..='~' => out.push(c),
            _ => {
                // Astral characters become UTF-16 surrogate pairs, as in Python.
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

fn write_number(out: &mut String, n: &Number, path: &[Seg<'_>]) -> Result<(), HashError> {
    if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else {
        return Err(HashError::FloatNotAllowed {
            path: render_path(path),
        });
    }
    Ok(())
}

/// Object entries in key order (UTF-8 byte order equals Python's code point order). Sorted
/// explicitly so the result does not depend on serde_json's `preserve_order` feature.
fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    entries
}

fn write_value<'a>(out: &mut String, v: &'a Value, path: &mut Vec<Seg<'a>>) -> Result<(), HashError> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n, path)?,
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                path.push(Seg::Index(i));
                write_value(out, item, path)?;
                path.pop();
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, value)) in sorted_entries(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, key);
                out.push(':');
                path.push(Seg::Key(key));
                write_value(out, value, path)?;
                path.pop();
            }
            out.push('}');
        }
    }
    Ok(())
}

/// `v` as Python's `json.dumps(v, sort_keys=True, separators=(',', ':'), ensure_ascii=True)`.
///
/// The output is pure ASCII: keys sorted by code point, no whitespace, `\"` `\\` `\b` `\f`
/// `\n` `\r` `\t` short escapes, every other control character, DEL and non-ASCII character as
/// lowercase `\uXXXX` (astral characters as a UTF-16 surrogate pair). Integers (any `i64` or
/// `u64`) are written in decimal.
///
/// # Errors
/// [`HashError::FloatNotAllowed`] naming the path (e.g. `$.a[0].b`) of the first float met in
/// key order, since float text differs between Python and Rust.
pub fn canonical_json(v: &Value) -> Result<String, HashError> {
    let mut out = String::new();
    write_value(&mut out, v, &mut Vec::new())?;
    Ok(out)
}

/// Hashdist's `hash_document`: `format_digest(sha256(doctype + "|" + canonical_json(doc)))`.
///
/// `doc` is hashed as given; apply [`prune_nohash`] first where Hashdist does.
///
/// # Errors
/// As [`canonical_json`].
pub fn hash_document(doctype: &str, doc: &Value) -> Result<ShortDigest, HashError> {
    let json = canonical_json(doc)?;
    let mut text = String::with_capacity(doctype.len() + 1 + json.len());
    text.push_str(doctype);
    text.push('|');
    text.push_str(&json);
    Ok(Digest::of(text.as_bytes()).short())
}

/// A copy of `doc` without any object key starting with [`NOHASH_PREFIX`] (`nohash_`), at any
/// depth, including inside lists.
pub fn prune_nohash(doc: &Value) -> Value {
    match doc {
        Value::Array(items) => Value::Array(items.iter().map(prune_nohash).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with(NOHASH_PREFIX))
                .map(|(k, v)| (k.clone(), prune_nohash(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn hashdist_vector() {
        let doc = json!({
            "a": [[{"nohash_foo": [1, 2, 3]}, 1, true, false, null, 2, "asdf"]],
            "nohash_foo": true
        });
        assert_eq!(
            hash_document("test", &doc).unwrap().to_string(),
            "geecc25mccuaba37cwsquibd2iisgo6f"
        );
    }

    #[test]
    fn sorted_compact() {
        let doc = json!({"b": [1, -2, u64::MAX], "a": {"d": null, "c": true}, "\u{e9}": false});
        assert_eq!(
            canonical_json(&doc).unwrap(),
            r#"{"a":{"c":true,"d":null},"b":[1,-2,18446744073709551615],"\u00e9":false}"#
        );
    }

    #[test]
    fn string_escapes_match_python() {
        let s = |v: &str| canonical_json(&json!(v)).unwrap();
        assert_eq!(s("é"), r#""\u00e9""#);
        assert_eq!(s("😀"), r#""\ud83d\ude00""#);
        assert_eq!(s("\u{7f}"), r#""\u007f""#);
        assert_eq!(s("a\nb"), r#""a\nb""#);
        assert_eq!(s("\""), r#""\"""#);
        assert_eq!(s("\\/"), r#""\\/""#);
        assert_eq!(s("\u{1}\u{8}\u{c}\r\t\u{1f}"), r#""\u0001\b\f\r\t\u001f""#);
        assert_eq!(s("\u{ffff}"), r#""\uffff""#);
    }

    #[test]
    fn float_rejected_with_path() {
        let err = canonical_json(&json!({"a": [{"b": 1.5}]})).unwrap_err();
        assert!(
            matches!(&err, HashError::FloatNotAllowed { path } if path == "$.a[0].b"),
            "{err:?}"
        );
        let err = canonical_json(&json!({"x y": [0, 2.0]})).unwrap_err();
        assert!(
            matches!(&err, HashError::FloatNotAllowed { path } if path == r#"$["x y"][1]"#),
            "{err:?}"
        );
        let err = hash_document("t", &json!(0.1)).unwrap_err();
        assert!(matches!(&err, HashError::FloatNotAllowed { path } if path == "$"));
    }

    #[test]
    fn prune_at_depth_inside_lists() {
        let doc = json!({
            "a": [[{"nohash_foo": [1, 2, 3], "keep": {"nohash_x": 1, "y": 2}}, 1]],
            "nohash_foo": true,
            "nohash": 1
        });
        assert_eq!(
            prune_nohash(&doc),
            json!({"a": [[{"keep": {"y": 2}}, 1]], "nohash": 1})
        );
        assert_eq!(prune_nohash(&json!("nohash_x")), json!("nohash_x"));
    }

    /// Float-free JSON values, including arbitrary Unicode strings and keys.
    fn value_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::btree_map(any::<String>(), inner, 0..8)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn canonical_is_ascii_and_roundtrips(v in value_strategy()) {
            let text = canonical_json(&v).unwrap();
            prop_assert!(text.is_ascii());
            let back: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(back, v);
        }
    }
}
