//! Hashdist's binary document serializer (`hashdist/core/hasher.py`, `DocumentSerializer`).
//!
//! The encoding is a length-prefixed, unambiguous byte stream over JSON-like values:
//!
//! | value            | bytes                                            |
//! |------------------|--------------------------------------------------|
//! | string           | `B<len>:` + UTF-8 bytes (`len` in bytes)          |
//! | integer          | `I<len>:` + decimal text                         |
//! | boolean          | `I4:True` / `I5:False` (Python's `bool` is an `int`) |
//! | float            | `F` + 8-byte little-endian IEEE 754 double       |
//! | list             | `L<n>:` + items                                  |
//! | object           | `D<n>:` + key, value pairs sorted by key         |
//! | null             | `N`                                              |
//!
//! Unlike canonical JSON, floats are allowed: their bit pattern is encoded, not their text.

use serde_json::{Map, Number, Value};
use sha2::{Digest as _, Sha256};

use super::{Digest, HashError, ShortDigest};

/// Where serialized bytes go: a buffer, or straight into a hash so large documents are never
/// materialized twice.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Writes `tag`, `len` in decimal and `:`, e.g. `B12:`.
fn put_header(out: &mut impl Sink, tag: u8, len: usize) {
    out.put(&[tag]);
    out.put(len.to_string().as_bytes());
    out.put(b":");
}

fn put_str(out: &mut impl Sink, s: &str) {
    put_header(out, b'B', s.len());
    out.put(s.as_bytes());
}

fn put_int_text(out: &mut impl Sink, text: &str) {
    put_header(out, b'I', text.len());
    out.put(text.as_bytes());
}

fn put_number(out: &mut impl Sink, n: &Number) {
    if let Some(i) = n.as_i64() {
        put_int_text(out, &i.to_string());
    } else if let Some(u) = n.as_u64() {
        put_int_text(out, &u.to_string());
    } else if let Some(f) = n.as_f64() {
        out.put(b"F");
        out.put(&f.to_le_bytes());
    }
    // Without serde_json's `arbitrary_precision` feature every Number is one of the three
    // above, so there is no fourth case to encode.
}

/// Object entries in key order. Sorting by UTF-8 bytes equals Python's code point order.
/// Done explicitly rather than trusting `Map` iteration order, which becomes insertion order if
/// any crate in the build enables serde_json's `preserve_order`.
fn sorted_entries(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    entries
}

fn put_value(out: &mut impl Sink, v: &Value) {
    match v {
        Value::Null => out.put(b"N"),
        Value::Bool(true) => out.put(b"I4:True"),
        Value::Bool(false) => out.put(b"I5:False"),
        Value::Number(n) => put_number(out, n),
        Value::String(s) => put_str(out, s),
        Value::Array(items) => {
            put_header(out, b'L', items.len());
            for item in items {
                put_value(out, item);
            }
        }
        Value::Object(map) => {
            put_header(out, b'D', map.len());
            for (key, value) in sorted_entries(map) {
                put_str(out, key);
                put_value(out, value);
            }
        }
    }
}

/// Serializes `v` with Hashdist's binary `DocumentSerializer` encoding (see the module docs).
///
/// # Errors
/// None today: every `serde_json::Value` is encodable (floats included, and `Value` cannot hold
/// NaN or infinities). The `Result` keeps the signature uniform with the other document
/// hashers so callers need not change if a rejected input is ever added.
pub fn serialize_document(v: &Value) -> Result<Vec<u8>, HashError> {
    let mut out = Vec::new();
    put_value(&mut out, v);
    Ok(out)
}

/// Hashdist's hash of a serialized document: `format_digest(sha256(serialize_document(v)))`.
///
/// # Errors
/// As [`serialize_document`].
pub fn hash_serialized(v: &Value) -> Result<ShortDigest, HashError> {
    let mut h = DocumentHasher::new();
    h.update(v);
    Ok(h.finish())
}

/// Streams one or more documents through the binary serializer into SHA-256 without building
/// the serialized bytes in memory.
///
/// Feeding documents `a` then `b` hashes the concatenation of their serializations, like
/// calling Hashdist's `DocumentSerializer.update` twice on one hasher.
#[derive(Clone, Default)]
pub struct DocumentHasher(Sha256);

impl DocumentHasher {
    /// A hasher that has seen no documents yet.
    pub fn new() -> DocumentHasher {
        DocumentHasher(Sha256::new())
    }

    /// Appends the serialization of `v` to the hashed stream.
    pub fn update(&mut self, v: &Value) {
        put_value(&mut self.0, v);
    }

    /// The full SHA-256 of everything fed so far.
    pub fn finish_digest(self) -> Digest {
        Digest::from_bytes(self.0.finalize().into())
    }

    /// The Hashdist short digest of everything fed so far.
    pub fn finish(self) -> ShortDigest {
        self.finish_digest().short()
    }
}

impl std::fmt::Debug for DocumentHasher {
    // The internal SHA-256 state means nothing to a reader.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DocumentHasher { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hashdist_vector() {
        let doc = json!({"a": 3, "b": {"c": [1, 2]}});
        let bytes = serialize_document(&doc).unwrap();
        assert_eq!(bytes, b"D2:B1:aI1:3B1:bD1:B1:cL2:I1:1I1:2");
        assert_eq!(
            hash_serialized(&doc).unwrap().to_string(),
            "kwefguggpl4kiafe5v6rxs23xdptpmgv"
        );
    }

    #[test]
    fn scalars() {
        let ser = |v: Value| serialize_document(&v).unwrap();
        assert_eq!(ser(json!(null)), b"N");
        assert_eq!(ser(json!(true)), b"I4:True");
        assert_eq!(ser(json!(false)), b"I5:False");
        assert_eq!(ser(json!(-12)), b"I3:-12");
        assert_eq!(ser(json!(u64::MAX)), b"I20:18446744073709551615");
        // Length is in bytes, not characters: "é" is two bytes.
        assert_eq!(ser(json!("é")), "B2:é".as_bytes());
        let mut float = b"F".to_vec();
        float.extend_from_slice(&1.5f64.to_le_bytes());
        assert_eq!(ser(json!(1.5)), float);
        assert_eq!(ser(json!([])), b"L0:");
        assert_eq!(ser(json!({})), b"D0:");
    }

    #[test]
    fn keys_sorted_by_code_point() {
        let doc = json!({"b": 1, "a": 2, "\u{e9}": 3, "Z": 4});
        assert_eq!(
            serialize_document(&doc).unwrap(),
            "D4:B1:ZI1:4B1:aI1:2B1:bI1:1B2:\u{e9}I1:3".as_bytes()
        );
    }

    #[test]
    fn streaming_hasher_concatenates() {
        let (a, b) = (json!({"x": [1, "y"]}), json!(null));
        let mut h = DocumentHasher::new();
        h.update(&a);
        h.update(&b);
        let mut bytes = serialize_document(&a).unwrap();
        bytes.extend(serialize_document(&b).unwrap());
        assert_eq!(h.finish(), ShortDigest::of(&bytes));
    }
}
