//! Source keys, spelled exactly as Hashdist spells them.
//!
//! ```text
//! tar.gz:<32 base32>    tar.bz2:<32 base32>    tar.xz:<32 base32>    zip:<32 base32>
//!                       format_digest(sha256 of the raw archive bytes)
//! files:<32 base32>     format_digest(sha256 of the HDSTPCK1 pack stream of the files)
//! git:<40 hex>          the commit id
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::SourceError;
use crate::hash::ShortDigest;

/// The compression and container of an archive source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ArchiveFormat {
    /// gzip-compressed tar.
    TarGz,
    /// bzip2-compressed tar.
    TarBz2,
    /// xz-compressed tar.
    TarXz,
    /// zip.
    Zip,
}

impl ArchiveFormat {
    /// Every format, in key-name order.
    pub const ALL: [ArchiveFormat; 4] = [
        ArchiveFormat::TarBz2,
        ArchiveFormat::TarGz,
        ArchiveFormat::TarXz,
        ArchiveFormat::Zip,
    ];

    /// The key prefix (and `--type` value): `tar.gz`, `tar.bz2`, `tar.xz` or `zip`.
    pub fn name(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::TarBz2 => "tar.bz2",
            ArchiveFormat::TarXz => "tar.xz",
            ArchiveFormat::Zip => "zip",
        }
    }

    /// File-name suffixes that mean this format (Hashdist's list, plus `.tar.xz`/`.txz`).
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            ArchiveFormat::TarGz => &[".tar.gz", ".tgz"],
            ArchiveFormat::TarBz2 => &[".tar.bz2", ".tbz2", ".tb2"],
            ArchiveFormat::TarXz => &[".tar.xz", ".txz"],
            ArchiveFormat::Zip => &[".zip"],
        }
    }

    /// The format a URL or file name announces by its suffix (case-insensitive; a URL's query
    /// and fragment are ignored), if any.
    pub fn from_location(location: &str) -> Option<ArchiveFormat> {
        let path = location.split(['?', '#']).next().unwrap_or(location);
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        ArchiveFormat::ALL.into_iter().find(|format| {
            format
                .suffixes()
                .iter()
                .any(|s| name.ends_with(s) && name.len() > s.len())
        })
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of source a key names: the part before the colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceType {
    /// An archive, stored as one blob of its raw bytes.
    Archive(ArchiveFormat),
    /// A set of files (a directory or one file), stored as a tree.
    Files,
    /// A git commit's checkout, stored as a tree.
    Git,
}

impl SourceType {
    /// The key prefix: `tar.gz`, …, `files` or `git`.
    pub fn name(self) -> &'static str {
        match self {
            SourceType::Archive(format) => format.name(),
            SourceType::Files => "files",
            SourceType::Git => "git",
        }
    }
}

impl fmt::Display for SourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SourceType {
    type Err = SourceError;

    /// Accepts the key prefixes and the short suffix spellings (`tgz`, `tbz2`, `tb2`, `txz`).
    fn from_str(s: &str) -> Result<SourceType, SourceError> {
        Ok(match s {
            "tar.gz" | "tgz" => SourceType::Archive(ArchiveFormat::TarGz),
            "tar.bz2" | "tbz2" | "tb2" => SourceType::Archive(ArchiveFormat::TarBz2),
            "tar.xz" | "txz" => SourceType::Archive(ArchiveFormat::TarXz),
            "zip" => SourceType::Archive(ArchiveFormat::Zip),
            "files" => SourceType::Files,
            "git" => SourceType::Git,
            _ => return Err(SourceError::BadType { input: s.to_string() }),
        })
    }
}

/// A git commit id: 20 bytes, written as 40 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GitCommit([u8; 20]);

impl GitCommit {
    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for GitCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GitCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitCommit({self})")
    }
}

impl FromStr for GitCommit {
    type Err = String;

    /// Exactly 40 lowercase hex digits: one spelling per commit, as git prints it.
    fn from_str(s: &str) -> Result<GitCommit, String> {
        if s.len() != 40 {
            return Err(format!(
                "expected 40 hex digits, got {} characters",
                s.chars().count()
            ));
        }
        if let Some(c) = s.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(format!("invalid character {c:?} (lowercase hex expected)"));
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| e.to_string())?;
        Ok(GitCommit(bytes))
    }
}

/// The name of a source in the cache: `<type>:<id>` (see the module docs).
///
/// Displays and parses as the Hashdist text form; (de)serializes as that string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKey {
    /// An archive, named by the short digest of its bytes.
    Archive {
        format: ArchiveFormat,
        digest: ShortDigest,
    },
    /// A set of files, named by the short digest of their pack stream.
    Files { digest: ShortDigest },
    /// A git commit.
    Git { commit: GitCommit },
}

impl SourceKey {
    /// The type (the part before the colon).
    pub fn source_type(&self) -> SourceType {
        match self {
            SourceKey::Archive { format, .. } => SourceType::Archive(*format),
            SourceKey::Files { .. } => SourceType::Files,
            SourceKey::Git { .. } => SourceType::Git,
        }
    }

    /// The id (the part after the colon).
    pub fn id(&self) -> String {
        match self {
            SourceKey::Archive { digest, .. } | SourceKey::Files { digest } => digest.to_string(),
            SourceKey::Git { commit } => commit.to_string(),
        }
    }
}

impl fmt::Display for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source_type(), self.id())
    }
}

impl fmt::Debug for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceKey({self})")
    }
}

impl FromStr for SourceKey {
    type Err = SourceError;

    /// Parses `<type>:<id>`. Only the canonical prefixes are accepted (`tar.gz`, not `tgz`),
    /// so every source has exactly one key.
    fn from_str(s: &str) -> Result<SourceKey, SourceError> {
        let bad = |reason: String| SourceError::BadKey {
            input: s.to_string(),
            reason,
        };
        let (prefix, id) = s
            .split_once(':')
            .ok_or_else(|| bad("expected <type>:<id>, e.g. tar.gz:<32 base32 characters>".into()))?;
        let source_type: SourceType = prefix.parse().map_err(|_| {
            bad(format!(
                "unknown type {prefix:?}; expected tar.gz, tar.bz2, tar.xz, zip, files or git"
            ))
        })?;
        if source_type.name() != prefix {
            return Err(bad(format!("write the type as {:?}", source_type.name())));
        }
        let short = |id: &str| id.parse::<ShortDigest>().map_err(|e| bad(e.to_string()));
        Ok(match source_type {
            SourceType::Archive(format) => SourceKey::Archive {
                format,
                digest: short(id)?,
            },
            SourceType::Files => SourceKey::Files { digest: short(id)? },
            SourceType::Git => SourceKey::Git {
                commit: id.parse().map_err(|e| bad(format!("not a git commit id: {e}")))?,
            },
        })
    }
}

impl Serialize for SourceKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SourceKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SourceKey, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Digest;

    #[test]
    fn keys_round_trip() {
        let digest = Digest::of(b"").short();
        for text in [
            format!("tar.gz:{digest}"),
            format!("tar.bz2:{digest}"),
            format!("tar.xz:{digest}"),
            format!("zip:{digest}"),
            format!("files:{digest}"),
            "git:35dc14b0a59cf16be8ebdac04f7269ac455d5e43".to_string(),
        ] {
            let key: SourceKey = text.parse().unwrap();
            assert_eq!(key.to_string(), text);
            let json = serde_json::to_string(&key).unwrap();
            assert_eq!(serde_json::from_str::<SourceKey>(&json).unwrap(), key);
        }
        let key: SourceKey = format!("tar.gz:{digest}").parse().unwrap();
        assert_eq!(key.source_type(), SourceType::Archive(ArchiveFormat::TarGz));
        assert_eq!(key.id(), digest.to_string());
    }

    #[test]
    fn bad_keys_are_refused() {
        let digest = Digest::of(b"").short().to_string();
        for bad in [
            String::new(),
            digest.clone(),
            format!("tgz:{digest}"),
            format!("rar:{digest}"),
            format!("tar.gz:{}", &digest[1..]),
            format!("tar.gz:{}", digest.to_uppercase()),
            format!("files:{digest}x"),
            "git:35dc14b0a59cf16be8ebdac04f7269ac455d5e4".to_string(),
            "git:35DC14B0A59CF16BE8EBDAC04F7269AC455D5E43".to_string(),
            "git:master".to_string(),
        ] {
            assert!(
                matches!(bad.parse::<SourceKey>(), Err(SourceError::BadKey { .. })),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn formats_from_locations() {
        use ArchiveFormat::*;
        for (location, want) in [
            ("https://x.org/a/hello-2.10.tar.gz", Some(TarGz)),
            ("hello.TGZ", Some(TarGz)),
            ("http://x/z.tar.bz2?download=1", Some(TarBz2)),
            ("z.tbz2", Some(TarBz2)),
            ("z.tb2#frag", Some(TarBz2)),
            ("/p/gzip-1.12.tar.xz", Some(TarXz)),
            ("w.zip", Some(Zip)),
            ("https://x.org/dir.tar.gz/file", None),
            ("https://x.org/archive", None),
            (".tar.gz", None),
        ] {
            assert_eq!(ArchiveFormat::from_location(location), want, "{location}");
        }
        assert_eq!("tbz2".parse::<SourceType>().unwrap(), SourceType::Archive(TarBz2));
        assert!("rar".parse::<SourceType>().is_err());
    }
}
