//! Profiles: named, ordered lists of artifacts presented as one prefix directory.
//!
//! A profile document is a JSON object stored as a blob (so it is content-addressed and
//! published like everything else). A profile *name* points at a sequence of generations:
//!
//! ```text
//! <store>/profiles/<name>/
//! ├── 1          hex digest of the document of generation 1 (created with O_EXCL)
//! ├── 2          …
//! └── current    the generation number in use, replaced atomically by rename
//! ```
//!
//! Where several artifacts hold the same path, the one listed first wins.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::artifact::{check_name, ArtifactId};
use crate::blob::BlobService;
use crate::hash::{hash_document, Digest, ShortDigest};
use crate::store::{Store, StoreError};

/// What a profile rule does with the paths it selects (Hashdist's links DSL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Include the paths (re-rooted by `prefix`/`target`).
    Link,
    /// Like `link`; in a FUSE view there is no difference, `profile export --link copy` copies.
    Copy,
    /// Hide the paths.
    Exclude,
}

/// One rule: paths of the artifact matching `select` (an ant glob relative to the artifact
/// root: `*` within a component, `**` across directories) get `action`; for link/copy the
/// path with `prefix` removed is placed under `target`. The first matching rule decides;
/// paths no rule matches are included unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRule {
    /// What to do.
    pub action: RuleAction,
    /// Ant glob over paths relative to the artifact root.
    pub select: String,
    /// Leading directories to strip (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Directory (relative to the profile root) to place the paths under (default: root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One artifact of a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileArtifact {
    /// The artifact.
    pub id: ArtifactId,
    /// Its root tree (so the view needs no further lookup).
    pub root: Digest,
    /// Rules applied to this artifact in the profile view (none: everything as-is).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<LinkRule>,
}

/// The content of one profile generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileDoc {
    /// Artifacts in priority order.
    pub artifacts: Vec<ProfileArtifact>,
    /// Profile environment variables (`PYTHONPATH`, `MANPATH`, …); `$PROFILE` in a value
    /// stands for the profile's mount point.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub env: std::collections::BTreeMap<String, String>,
}

impl ProfileDoc {
    /// Canonical bytes (what is stored and digested).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("profile documents serialise")
    }

    /// The Hashdist-style short id of this document.
    pub fn short_id(&self) -> Result<ShortDigest, StoreError> {
        let value = serde_json::to_value(self).expect("profile documents serialise");
        Ok(hash_document("profile", &value)?)
    }
}

/// A generation of a named profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Generation {
    /// Profile name.
    pub name: String,
    /// Generation number, from 1.
    pub number: u64,
    /// Digest of the document blob.
    pub document: Digest,
}

impl Store {
    fn profile_dir(&self, name: &str) -> PathBuf {
        self.root().join("profiles").join(name)
    }

    /// Records `artifacts` (ids or unique abbreviations) as the next generation of `name` and
    /// makes it current.
    pub fn create_profile(&self, name: &str, artifacts: &[String]) -> Result<Generation, StoreError> {
        check_name(name)?;
        let mut entries = Vec::with_capacity(artifacts.len());
        for query in artifacts {
            let record = self.find_artifact(query)?;
            entries.push(ProfileArtifact {
                id: record.id,
                root: record.root,
                rules: Vec::new(),
            });
        }
        let doc = ProfileDoc {
            artifacts: entries,
            env: Default::default(),
        };
        self.create_profile_doc(name, &doc)
    }

    /// Records `doc` as the next generation of `name` and makes it current. Artifacts must
    /// exist in the store.
    pub fn create_profile_doc(&self, name: &str, doc: &ProfileDoc) -> Result<Generation, StoreError> {
        check_name(name)?;
        let batch = self.blobs().batch();
        let outcome = batch.put_bytes(&doc.to_bytes())?;
        batch.commit()?;
        let dir = self.profile_dir(name);
        fs::create_dir_all(&dir).map_err(StoreError::io("create directory", &dir))?;
        let mut number = self.generations(name)?.last().map(|g| g.number).unwrap_or(0) + 1;
        // O_EXCL on the generation file: two concurrent creators get distinct numbers.
        loop {
            let path = dir.join(number.to_string());
            let tmp = self.scratch().fresh_path("generation");
            fs::write(&tmp, format!("{}\n", outcome.digest)).map_err(StoreError::io("write", &tmp))?;
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(StoreError::io("sync", &tmp))?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let _ = fs::remove_file(&tmp);
                    number += 1;
                }
                Err(e) => return Err(StoreError::io("create", &path)(e)),
            }
        }
        self.switch_profile(name, number)?;
        Ok(Generation {
            name: name.to_string(),
            number,
            document: outcome.digest,
        })
    }

    /// Makes generation `number` of `name` current (atomic rename).
    pub fn switch_profile(&self, name: &str, number: u64) -> Result<(), StoreError> {
        let dir = self.profile_dir(name);
        let path = dir.join(number.to_string());
        if !path.exists() {
            return Err(StoreError::UnknownProfile {
                name: format!("{name} generation {number}"),
            });
        }
        let current = dir.join("current");
        self.scratch()
            .write_atomic(&current, format!("{number}\n").as_bytes())
            .map_err(StoreError::io("write", &current))
    }

    /// All generations of `name`, oldest first (empty if there is no such profile).
    pub fn generations(&self, name: &str) -> Result<Vec<Generation>, StoreError> {
        let dir = self.profile_dir(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::io("list", &dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(number) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            let text = fs::read_to_string(entry.path()).map_err(StoreError::io("read", entry.path()))?;
            let document = Digest::from_hex(text.trim()).map_err(|_| StoreError::BadProfile {
                path: entry.path(),
                reason: "not a digest".to_string(),
            })?;
            out.push(Generation {
                name: name.to_string(),
                number,
                document,
            });
        }
        out.sort_by_key(|g| g.number);
        Ok(out)
    }

    /// The current generation of `name`, if the profile exists.
    pub fn current_generation(&self, name: &str) -> Result<Option<Generation>, StoreError> {
        let path = self.profile_dir(name).join("current");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", &path)(e)),
        };
        let number: u64 = text.trim().parse().map_err(|_| StoreError::BadProfile {
            path: path.clone(),
            reason: "not a generation number".to_string(),
        })?;
        Ok(self.generations(name)?.into_iter().find(|g| g.number == number))
    }

    /// Names of all profiles that have a current generation.
    pub fn profile_names(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.root().join("profiles");
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir)
            .map_err(StoreError::io("list", &dir))?
            .flatten()
        {
            if entry.path().join("current").exists() {
                if let Some(name) = entry.file_name().to_str() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Loads a profile document.
    pub fn profile_doc(&self, document: &Digest) -> Result<ProfileDoc, StoreError> {
        load_doc(self.blobs().as_ref(), document)
    }
}

/// Loads a profile document through any blob service.
pub fn load_doc(blobs: &dyn BlobService, document: &Digest) -> Result<ProfileDoc, StoreError> {
    let bytes = blobs.read(document)?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::BadProfile {
        path: PathBuf::from(format!("object {document}")),
        reason: e.to_string(),
    })
}
