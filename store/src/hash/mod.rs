//! Hashing: SHA-256 digests and the Hashdist-compatible ids derived from them.
//!
//! Everything the store names is named by a hash computed here, so this layer is the one place
//! that has to agree byte for byte with the original Hashdist (Python) tool:
//!
//! - [`Digest`] is a raw SHA-256, used to address blobs and trees. [`DigestWriter`],
//!   [`hash_reader`] and [`hash_file`] compute it over streams.
//! - [`ShortDigest`] is Hashdist's `format_digest`: the first 160 bits of a SHA-256 as 32
//!   lowercase base32 characters. Artifact ids and source keys are made of it.
//! - [`serialize_document`] / [`hash_serialized`] / [`DocumentHasher`] reproduce Hashdist's
//!   binary `DocumentSerializer` (`hashdist/core/hasher.py`).
//! - [`canonical_json`] / [`hash_document`] reproduce
//!   `json.dumps(doc, sort_keys=True, separators=(',', ':'), ensure_ascii=True)` and the
//!   `doctype|json` document hash; [`prune_nohash`] drops the `nohash_*` keys a spec may carry.
//! - [`files_pack_digest`] / [`FilesPackHasher`] reproduce the `HDSTPCK1` pack stream behind
//!   `files:` source keys.
//!
//! Each known-answer vector from the original tool is pinned by a test next to the code.

mod canonical;
mod digest;
mod pack;
mod serializer;

pub use canonical::{canonical_json, hash_document, prune_nohash, NOHASH_PREFIX};
pub use digest::{format_digest, hash_file, hash_reader, Digest, DigestWriter, ShortDigest};
pub use pack::{files_pack_digest, FilesPackHasher, PACK_MAGIC};
pub use serializer::{hash_serialized, serialize_document, DocumentHasher};

use std::io;

/// Errors of the hashing layer.
///
/// Every variant names the offending input (a JSON path, the rejected text, a pack entry) so a
/// caller can surface it to the user without adding context of its own.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// A document to be hashed as canonical JSON contains a floating-point number.
    ///
    /// Floats are refused because their text form is not stable across JSON implementations
    /// (Python's `repr` versus Rust's shortest round-trip), so a hash over them would not be
    /// reproducible. `path` is a JSONPath-like location such as `$.a[0].b`.
    #[error(
        "floating-point number at {path} cannot be hashed as canonical JSON; use an integer or a string"
    )]
    FloatNotAllowed {
        /// Where the float sits, e.g. `$.a[0].b`.
        path: String,
    },
    /// A mapping key is not a string.
    ///
    /// `serde_json::Value` cannot hold such a key; this is for documents converted from other
    /// formats (TOML, YAML) whose keys may be numbers or booleans, which JSON cannot represent.
    #[error("key at {path} is not a string; document keys must be strings")]
    NonStringKey {
        /// Where the key sits, e.g. `$.a`.
        path: String,
    },
    /// Text that should be a hex SHA-256 digest is not one.
    #[error("{input:?} is not a hex SHA-256 digest: {reason}")]
    BadHex {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Text that should be a 32-character lowercase base32 short digest is not one.
    #[error("{input:?} is not a short digest (32 lowercase base32 characters): {reason}")]
    BadBase32 {
        /// The rejected text.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A pack entry's name or contents is longer than the pack format's `u32` length field.
    #[error(
        "pack entry {name:?}: {what} is {len} bytes, more than the pack format's limit of {} bytes",
        u32::MAX
    )]
    PackEntryTooLarge {
        /// The entry's name (lossily decoded for display).
        name: String,
        /// `"name"` or `"contents"`.
        what: &'static str,
        /// The offending length.
        len: u64,
    },
    /// Pack entries were not given in strictly increasing name order (or a name repeats).
    #[error("pack entry {name:?} does not sort after the previous entry {previous:?}; entries must be sorted by name bytes and unique")]
    PackEntryOrder {
        /// The previous entry's name (lossily decoded for display).
        previous: String,
        /// The out-of-order entry's name (lossily decoded for display).
        name: String,
    },
    /// A pack entry's reader ended before yielding the declared number of bytes.
    #[error("pack entry {name:?}: declared {declared} bytes but the content ended after {actual}")]
    PackContentShort {
        /// The entry's name (lossily decoded for display).
        name: String,
        /// The length that was declared (and already hashed into the stream).
        declared: u64,
        /// How many bytes the reader actually yielded.
        actual: u64,
    },
    /// A pack entry's reader yielded more than the declared number of bytes.
    #[error("pack entry {name:?}: declared {declared} bytes but the content is longer")]
    PackContentLong {
        /// The entry's name (lossily decoded for display).
        name: String,
        /// The length that was declared (and already hashed into the stream).
        declared: u64,
    },
    /// Reading input to hash failed.
    #[error("I/O error while hashing {context}")]
    Io {
        /// What was being read.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}
