//! Artifacts: named, immutable trees, identified as `name/<32 base32 chars>`.
//!
//! An artifact's document (`artifacts/<name>/<hash>.json`) is written last, atomically; it is
//! the commit point of an ingest or a build. Ids are derived, never random:
//!
//! - `hdist store add DIR --name N [--version V]`: the hash is
//!   `hash_document("tree-artifact", {"name": N, "version": V or null, "tree": <hex root digest>})`,
//!   so adding the same tree under the same name and version gives the same id.
//! - `hdist build SPEC`: the hash is Hashdist's `hash_document("build-spec", prune_nohash(spec))`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::hash::{Digest, ShortDigest};

/// The identity of an artifact: `name/hash`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArtifactId {
    name: String,
    hash: ShortDigest,
}

/// Why a name, version or id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// A name or version is empty.
    #[error("invalid {what}: it is empty")]
    Empty { what: &'static str },
    /// A name or version does not start with a character Hashdist accepts there.
    #[error(
        "invalid {what} {value:?}: it must start with a letter, a digit, `_` or `+`{why}",
        why = if value.starts_with('-') { " (a leading `-` would be read as an option)" } else { "" }
    )]
    BadStart { what: &'static str, value: String },
    /// A name or version holds a character that is unsafe in a path component.
    #[error(
        "invalid {what} {value:?}: {character:?} is not allowed (a {what} is used as a path \
         component: no `/`, NUL or control characters)"
    )]
    Unsafe {
        what: &'static str,
        value: String,
        character: char,
    },
    /// An id is not `name/hash`.
    #[error("invalid artifact id {0:?}: expected NAME/HASH with a 32-character base32 hash")]
    BadId(String),
}

/// Checks a package (or profile) name; see [`check_version`] for the rule, which is the same.
pub fn check_name(name: &str) -> Result<(), IdError> {
    check_token("name", name)
}

/// Checks a version: Hashdist's rule, `re.match(r'[a-zA-Z0-9-_+]+', s)` without `$` (only the
/// first character is constrained, so `1.2.8`, `2.0rc1` and `1.26.4+local` pass), narrowed to
/// what is safe as a path component. Refused: the empty string; a first character other than
/// a letter, digit, `_` or `+` (Hashdist's set minus `-`, which would read as an option; this
/// also refuses `.` and `..`); and `/`, NUL or any control character anywhere.
pub fn check_version(version: &str) -> Result<(), IdError> {
    check_token("version", version)
}

fn check_token(what: &'static str, value: &str) -> Result<(), IdError> {
    let first = value.chars().next().ok_or(IdError::Empty { what })?;
    if !(first.is_ascii_alphanumeric() || matches!(first, '_' | '+')) {
        return Err(IdError::BadStart {
            what,
            value: value.to_string(),
        });
    }
    match value.chars().find(|&c| c == '/' || c.is_control()) {
        Some(character) => Err(IdError::Unsafe {
            what,
            value: value.to_string(),
            character,
        }),
        None => Ok(()),
    }
}

impl ArtifactId {
    /// Builds an id; the name must pass [`check_name`].
    pub fn new(name: &str, hash: ShortDigest) -> Result<Self, IdError> {
        check_name(name)?;
        Ok(ArtifactId {
            name: name.to_string(),
            hash,
        })
    }

    /// The package name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hash part.
    pub fn hash(&self) -> &ShortDigest {
        &self.hash
    }
}

impl fmt::Display for ArtifactId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.hash)
    }
}

impl FromStr for ArtifactId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let (name, hash) = s.split_once('/').ok_or_else(|| IdError::BadId(s.to_string()))?;
        let hash: ShortDigest = hash.parse().map_err(|_| IdError::BadId(s.to_string()))?;
        ArtifactId::new(name, hash)
    }
}

impl Serialize for ArtifactId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ArtifactId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What the store knows about an artifact; also its on-disk document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactRecord {
    /// `name/hash`.
    pub id: ArtifactId,
    /// Optional version.
    pub version: Option<String>,
    /// Root tree.
    pub root: Digest,
    /// The build spec it was built from, if any.
    pub spec: Option<serde_json::Value>,
    /// Unix time it was registered.
    pub created: i64,
    /// Number of regular files.
    pub files: u64,
    /// Sum of file sizes.
    pub bytes: u64,
    /// The build log blob, for artifacts hdist built (kept in the document only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_log: Option<Digest>,
}

impl ArtifactRecord {
    /// The artifacts its build imported (`spec.build.import[].id`): what it needs at run time
    /// too, since builds link against imports at their final paths. GC keeps them, and a copy
    /// of the artifact carries them.
    pub fn imports(&self) -> Vec<ArtifactId> {
        self.spec
            .as_ref()
            .and_then(|s| s.pointer("/build/import"))
            .and_then(|i| i.as_array())
            .into_iter()
            .flatten()
            .filter_map(|import| import.get("id")?.as_str()?.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_and_validate() {
        let id: ArtifactId = "zlib/kwefguggpl4kiafe5v6rxs23xdptpmgv".parse().unwrap();
        assert_eq!(id.name(), "zlib");
        assert_eq!(id.to_string(), "zlib/kwefguggpl4kiafe5v6rxs23xdptpmgv");
        assert!("zlib".parse::<ArtifactId>().is_err());
        assert!("zl\nib/kwefguggpl4kiafe5v6rxs23xdptpmgv"
            .parse::<ArtifactId>()
            .is_err());
        assert!("zlib/KWEF".parse::<ArtifactId>().is_err());
        assert!(check_version("1.26.4").is_ok());
        assert!(check_name("py.numpy").is_ok());
        assert!(check_version("").is_err());
        assert!(check_name("..").is_err());
    }
}
