//! Source documents: the JSON file that says a source is in the cache.
//!
//! ```text
//! <store>/sources/tar.gz/<32 base32>.json
//! {
//!   "key": "tar.gz:<32 base32>",
//!   "blob": "<64 hex>",            or "tree": "<64 hex>" for files: and git: sources
//!   "size": 725946,                archive bytes, or the sum of the file sizes of a tree
//!   "urls": ["https://…"],         every location a successful fetch named for this key
//!   "tags": ["gnu"],               free labels
//!   "keep": "keep",                or "transient": what a garbage collector may drop
//!   "fetched": 1732400000          first fetch, Unix seconds
//! }
//! ```
//!
//! The document is written last, after its objects are durable, so its existence is the commit
//! point of a fetch.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{SourceError, SourceKey};
use crate::hash::Digest;
use crate::Store;
use crate::{IoContext, IoError};

/// Whether a garbage collector may remove a source that nothing else references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeepPolicy {
    /// Keep until the user removes it (the default for explicit fetches).
    #[default]
    Keep,
    /// May be dropped once no build needs it (e.g. fetched on the side during a build).
    Transient,
}

impl KeepPolicy {
    /// The policy of a source fetched under both policies: keeping wins, because someone
    /// asked for it to be kept.
    pub fn merge(self, other: KeepPolicy) -> KeepPolicy {
        if self == KeepPolicy::Keep || other == KeepPolicy::Keep {
            KeepPolicy::Keep
        } else {
            KeepPolicy::Transient
        }
    }
}

/// Where a source's content is in the object store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceContent {
    /// An archive's raw bytes as one blob.
    Blob(Digest),
    /// A tree (for `files:` and `git:` sources).
    Tree(Digest),
}

impl SourceContent {
    /// The object's digest.
    pub fn digest(&self) -> Digest {
        match self {
            SourceContent::Blob(d) | SourceContent::Tree(d) => *d,
        }
    }
}

/// The document recorded for each cached source (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The source's key.
    pub key: SourceKey,
    /// Its content.
    #[serde(flatten)]
    pub content: SourceContent,
    /// Archive size, or the sum of file sizes of a tree.
    pub size: u64,
    /// Locations successful fetches named, oldest first, each once.
    pub urls: Vec<String>,
    /// Free labels, sorted, each once.
    #[serde(default)]
    pub tags: Vec<String>,
    /// What a garbage collector may do with it.
    #[serde(default)]
    pub keep: KeepPolicy,
    /// Time of the first fetch (Unix seconds).
    pub fetched: i64,
}

impl SourceRecord {
    /// Folds a later fetch of the same key into this record; returns whether it changed.
    pub(crate) fn merge(&mut self, url: Option<&str>, tags: &[String], keep: KeepPolicy) -> bool {
        let before = self.clone();
        if let Some(url) = url {
            if !self.urls.iter().any(|u| u == url) {
                self.urls.push(url.to_string());
            }
        }
        self.tags.extend(tags.iter().cloned());
        self.tags.sort();
        self.tags.dedup();
        self.keep = self.keep.merge(keep);
        *self != before
    }
}

/// Where the document of `key` lives.
pub(crate) fn record_path(store: &Store, key: &SourceKey) -> PathBuf {
    store
        .root()
        .join("sources")
        .join(key.source_type().name())
        .join(format!("{}.json", key.id()))
}

/// The document of `key`, if the key was ever fetched.
pub fn source_record(store: &Store, key: &SourceKey) -> Result<Option<SourceRecord>, SourceError> {
    let path = record_path(store, key);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new("read", &path, e).into()),
    };
    let record: SourceRecord = serde_json::from_slice(&bytes).map_err(|e| SourceError::BadRecord {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if record.key != *key {
        return Err(SourceError::BadRecord {
            path,
            reason: format!("it describes {}", record.key),
        });
    }
    Ok(Some(record))
}

/// Writes a document durably (temp file, fsync, rename, fsync of the directory).
pub(crate) fn write_record(store: &Store, record: &SourceRecord) -> Result<(), SourceError> {
    let path = record_path(store, &record.key);
    let mut bytes = serde_json::to_vec_pretty(record).expect("source records serialise");
    bytes.push(b'\n');
    Ok(store
        .scratch()
        .write_atomic(&path, &bytes)
        .io_context("write source document", &path)?)
}

/// Every source document in the store, sorted by key. Unreadable documents are errors (a
/// garbage collector must not mistake them for absent).
pub fn list_sources(store: &Store) -> Result<Vec<SourceRecord>, SourceError> {
    let root = store.root().join("sources");
    let mut out = Vec::new();
    let types = match fs::read_dir(&root) {
        Ok(types) => types,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(IoError::new("list", &root, e).into()),
    };
    for type_dir in types {
        let type_dir = type_dir.io_context("list", &root)?.path();
        let Some(type_name) = type_dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let docs = fs::read_dir(&type_dir).io_context("list", &type_dir)?;
        for doc in docs {
            let path = doc.io_context("list", &type_dir)?.path();
            let Some(id) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                // Not a document (e.g. a stray file): nothing to list.
                continue;
            };
            let key: SourceKey =
                format!("{type_name}:{id}")
                    .parse()
                    .map_err(|e: SourceError| SourceError::BadRecord {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
            if let Some(record) = source_record(store, &key)? {
                out.push(record);
            }
        }
    }
    out.sort_by_key(|record| record.key);
    Ok(out)
}

/// Now, in Unix seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> SourceRecord {
        SourceRecord {
            key: format!("tar.gz:{}", Digest::of(b"x").short()).parse().unwrap(),
            content: SourceContent::Blob(Digest::of(b"x")),
            size: 1,
            urls: vec!["http://a/x.tar.gz".into()],
            tags: vec![],
            keep: KeepPolicy::Transient,
            fetched: 5,
        }
    }

    #[test]
    fn document_shape() {
        let json = serde_json::to_value(record()).unwrap();
        assert_eq!(json["blob"], Digest::of(b"x").to_hex());
        assert_eq!(json["keep"], "transient");
        assert!(json.get("tree").is_none());
        let back: SourceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record());
        let mut tree = record();
        tree.content = SourceContent::Tree(Digest::of(b"t"));
        let json = serde_json::to_value(&tree).unwrap();
        assert_eq!(json["tree"], Digest::of(b"t").to_hex());
        assert_eq!(serde_json::from_value::<SourceRecord>(json).unwrap(), tree);
    }

    #[test]
    fn merge_keeps_urls_once_and_keep_wins() {
        let mut r = record();
        assert!(!r.merge(Some("http://a/x.tar.gz"), &[], KeepPolicy::Transient));
        assert!(r.merge(
            Some("http://b/x.tar.gz"),
            &["b".into(), "a".into()],
            KeepPolicy::Transient
        ));
        assert_eq!(r.urls.len(), 2);
        assert_eq!(r.tags, ["a", "b"]);
        assert_eq!(r.keep, KeepPolicy::Transient);
        assert!(r.merge(None, &[], KeepPolicy::Keep));
        assert_eq!(r.keep, KeepPolicy::Keep);
        assert!(!r.merge(None, &[], KeepPolicy::Transient));
        assert_eq!(r.keep, KeepPolicy::Keep);
    }
}
