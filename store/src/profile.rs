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
//!
//! [`Profiles`] (`store.profiles()`) creates, switches, lists, loads and exports them.
//!
//! Mtimes: rules build new trees whose entries keep the mtimes of the entries they came from;
//! a directory gets the mtime of the artifact directory placed at its path, or, when a rule
//! creates it (a `target` no artifact directory maps to), the newest mtime of its entries.
//! `profile export` sets them; with `--link hardlink` or `symlink` the linked linkfarm copy
//! is one per content and mtime, so it shows the entry's mtime too.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifact::{check_name, ArtifactId};
use crate::blob::{BlobService, IngestBatch};
use crate::hash::{hash_document, Digest, ShortDigest};
use crate::store::{Store, StoreError};
use crate::suggest::DidYouMean;
use crate::tree::{set_mtime, Entry, Mtime, Node, Tree};
use crate::{IoContext, IoError};

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
    /// The tree the profile shows for this artifact when rules apply: new tree objects over
    /// the same blobs (computed by [`Profiles::create_doc`]; never a copy of file content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<Digest>,
}

impl ProfileArtifact {
    /// The tree to present: the rules' result, or the artifact's own root.
    pub fn shown_root(&self) -> Digest {
        self.view.unwrap_or(self.root)
    }
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

/// The named profiles of a store (`store.profiles()`): creating generations, switching
/// between them, listing, loading documents and exporting.
#[derive(Debug, Clone, Copy)]
pub struct Profiles<'a> {
    store: &'a Store,
}

impl<'a> Profiles<'a> {
    /// The profiles of `store`.
    pub fn new(store: &'a Store) -> Profiles<'a> {
        Profiles { store }
    }

    fn profile_dir(&self, name: &str) -> PathBuf {
        self.store.root().join("profiles").join(name)
    }

    /// Records `artifacts` (ids or unique abbreviations) as the next generation of `name` and
    /// makes it current.
    pub fn create(&self, name: &str, artifacts: &[String]) -> Result<Generation, StoreError> {
        check_name(name)?;
        // Held from resolving the artifacts to the switch, so GC cannot remove them between.
        let _writer = self.store.writer_lock()?;
        let mut entries = Vec::with_capacity(artifacts.len());
        for query in artifacts {
            let record = self.store.find_artifact(query)?;
            entries.push(ProfileArtifact {
                id: record.id,
                root: record.root,
                rules: Vec::new(),
                view: None,
            });
        }
        let doc = ProfileDoc {
            artifacts: entries,
            env: Default::default(),
        };
        self.create_doc(name, &doc)
    }

    /// Records `doc` as the next generation of `name` and makes it current. Artifacts must
    /// exist in the store.
    pub fn create_doc(&self, name: &str, doc: &ProfileDoc) -> Result<Generation, StoreError> {
        check_name(name)?;
        let _writer = self.store.writer_lock()?;
        let batch = self.store.objects().batch();
        let mut doc = doc.clone();
        for artifact in &mut doc.artifacts {
            if !artifact.rules.is_empty() && artifact.view.is_none() {
                artifact.view = Some(apply_rules(
                    self.store.blobs().as_ref(),
                    &batch,
                    &artifact.root,
                    &artifact.rules,
                )?);
            }
        }
        let outcome = batch.put_bytes(&doc.to_bytes())?;
        let document_digest = outcome.digest;
        let stored = batch.commit()?;
        // Everything in the batch but the document is a tree made by rules.
        let indexed: Vec<crate::tree::IngestedObject> = stored
            .into_iter()
            .map(|outcome| crate::tree::IngestedObject {
                outcome,
                kind: if outcome.digest == document_digest {
                    crate::tree::ObjectKind::Blob
                } else {
                    crate::tree::ObjectKind::Tree
                },
            })
            .collect();
        self.store.index().record(&indexed, None)?;
        let dir = self.profile_dir(name);
        crate::modes::create_dir_all(&dir, crate::modes::SHARED_DIR).io_context("create directory", &dir)?;
        let mut number = self.generations(name)?.last().map(|g| g.number).unwrap_or(0) + 1;
        // O_EXCL on the generation file: two concurrent creators get distinct numbers.
        loop {
            let path = dir.join(number.to_string());
            let tmp = self.store.scratch().fresh_path("generation");
            crate::modes::write_file(&tmp, format!("{}\n", outcome.digest).as_bytes())
                .io_context("write", &tmp)?;
            fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .io_context("sync", &tmp)?;
            match fs::hard_link(&tmp, &path) {
                Ok(()) => {
                    let _ = fs::remove_file(&tmp);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let _ = fs::remove_file(&tmp);
                    number += 1;
                }
                Err(e) => return Err(IoError::new("create", &path, e).into()),
            }
        }
        crate::crashpoint::hit("profile.generation");
        self.switch(name, number)?;
        Ok(Generation {
            name: name.to_string(),
            number,
            document: outcome.digest,
        })
    }

    /// Makes generation `number` of `name` current (atomic rename).
    pub fn switch(&self, name: &str, number: u64) -> Result<(), StoreError> {
        // GC must not remove the generation between the check and the switch.
        let _writer = self.store.writer_lock()?;
        let dir = self.profile_dir(name);
        let path = dir.join(number.to_string());
        if !path.exists() {
            return Err(StoreError::UnknownProfile {
                name: format!("{name} generation {number}"),
                store: self.store.root().to_path_buf(),
                suggestion: DidYouMean::default(),
            });
        }
        let current = dir.join("current");
        self.store
            .scratch()
            .write_atomic(&current, format!("{number}\n").as_bytes())
            .io_context("write", &current)?;
        crate::crashpoint::hit("profile.switched");
        Ok(())
    }

    /// All generations of `name`, oldest first (empty if there is no such profile).
    pub fn generations(&self, name: &str) -> Result<Vec<Generation>, StoreError> {
        let dir = self.profile_dir(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(IoError::new("list", &dir, e).into()),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let Some(number) = entry.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) else {
                continue;
            };
            // GC may remove an old generation while we list.
            if let Some(generation) = self.read_generation(name, number)? {
                out.push(generation);
            }
        }
        out.sort_by_key(|g| g.number);
        Ok(out)
    }

    /// Generation `number` of `name`, if it exists.
    fn read_generation(&self, name: &str, number: u64) -> Result<Option<Generation>, StoreError> {
        let path = self.profile_dir(name).join(number.to_string());
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IoError::new("read", &path, e).into()),
        };
        let document = Digest::from_hex(text.trim()).map_err(|_| StoreError::BadProfile {
            path,
            reason: "not a digest".to_string(),
        })?;
        Ok(Some(Generation {
            name: name.to_string(),
            number,
            document,
        }))
    }

    /// The current generation of `name`, if the profile exists.
    pub fn current(&self, name: &str) -> Result<Option<Generation>, StoreError> {
        let path = self.profile_dir(name).join("current");
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(IoError::new("read", &path, e).into()),
        };
        let number: u64 = text.trim().parse().map_err(|_| StoreError::BadProfile {
            path: path.clone(),
            reason: "not a generation number".to_string(),
        })?;
        // Only the current generation's file: mounts call this on every change notification.
        self.read_generation(name, number)
    }

    /// The current generation of `name`, or [`StoreError::UnknownProfile`] suggesting the
    /// closest existing names: where commands resolve a profile name the user typed.
    pub fn require(&self, name: &str) -> Result<Generation, StoreError> {
        match self.current(name)? {
            Some(generation) => Ok(generation),
            None => Err(self.unknown(name)?),
        }
    }

    /// The error for a profile `name` that does not exist, with the closest existing names.
    pub fn unknown(&self, name: &str) -> Result<StoreError, StoreError> {
        let names = self.names()?;
        Ok(StoreError::UnknownProfile {
            name: name.to_string(),
            store: self.store.root().to_path_buf(),
            suggestion: DidYouMean::closest(name, names.iter().map(String::as_str)),
        })
    }

    /// Names of all profiles that have a current generation.
    pub fn names(&self) -> Result<Vec<String>, StoreError> {
        let dir = self.store.root().join("profiles");
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).io_context("list", &dir)?.flatten() {
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
    pub fn doc(&self, document: &Digest) -> Result<ProfileDoc, StoreError> {
        load_doc(self.store.blobs().as_ref(), document)
    }
}

/// Where rules put an artifact's paths (relocated), while they are applied.
#[derive(Default)]
struct Placed {
    /// Files, symlinks and empty directories, with their mtimes.
    entries: std::collections::BTreeMap<Vec<u8>, (Node, Mtime)>,
    /// The mtime of each artifact directory, at its relocated path.
    dirs: std::collections::BTreeMap<Vec<u8>, Mtime>,
}

/// The tree a profile shows for the artifact `root` under `rules` (see [`LinkRule`]): new tree
/// objects (in `batch`) over the artifact's own blobs. A rule matching a directory applies to
/// everything below it.
pub fn apply_rules(
    blobs: &dyn BlobService,
    batch: &IngestBatch<'_>,
    root: &Digest,
    rules: &[LinkRule],
) -> Result<Digest, StoreError> {
    let mut placed = Placed::default();
    place(blobs, root, b"", Mtime::UNRECORDED, rules, None, &mut placed)?;
    Ok(build_tree(batch, &placed, b"")?.0)
}

fn rule_for<'r>(rules: &'r [LinkRule], path: &[u8]) -> Option<&'r LinkRule> {
    rules
        .iter()
        .find(|r| crate::glob::matches(r.select.as_bytes(), path))
}

fn relocate(rule: Option<&LinkRule>, path: &[u8]) -> Vec<u8> {
    let Some(rule) = rule else { return path.to_vec() };
    let trimmed = |s: &str| s.trim_matches('/').as_bytes().to_vec();
    let mut rest = path;
    if let Some(prefix) = rule.prefix.as_deref().map(trimmed).filter(|p| !p.is_empty()) {
        if let Some(stripped) = path.strip_prefix(prefix.as_slice()) {
            rest = stripped.strip_prefix(b"/").unwrap_or(stripped);
        }
    }
    match rule.target.as_deref().map(trimmed).filter(|t| !t.is_empty()) {
        Some(mut target) if !rest.is_empty() => {
            target.push(b'/');
            target.extend_from_slice(rest);
            target
        }
        Some(target) => target,
        None => rest.to_vec(),
    }
}

/// Walks the tree `digest` (a directory with mtime `mtime`) at `path`; `inherited` is the rule
/// that matched an ancestor.
fn place(
    blobs: &dyn BlobService,
    digest: &Digest,
    path: &[u8],
    mtime: Mtime,
    rules: &[LinkRule],
    inherited: Option<&LinkRule>,
    placed: &mut Placed,
) -> Result<(), StoreError> {
    let tree = Tree::load(blobs, digest)?;
    if !path.is_empty() {
        let at = relocate(inherited, path);
        if tree.entries().is_empty() {
            placed
                .entries
                .entry(at)
                .or_insert((Node::Directory { digest: *digest }, mtime));
        } else if !at.is_empty() {
            placed.dirs.entry(at).or_insert(mtime);
        }
    }
    for entry in tree.entries() {
        let mut child = path.to_vec();
        if !child.is_empty() {
            child.push(b'/');
        }
        child.extend_from_slice(&entry.name);
        let rule = inherited.or_else(|| rule_for(rules, &child));
        if rule.is_some_and(|r| r.action == RuleAction::Exclude) {
            continue;
        }
        match &entry.node {
            Node::Directory { digest } => place(blobs, digest, &child, entry.mtime, rules, rule, placed)?,
            node => {
                let at = relocate(rule, &child);
                if !at.is_empty() {
                    placed
                        .entries
                        .entry(at)
                        .or_insert_with(|| (node.clone(), entry.mtime));
                }
            }
        }
    }
    Ok(())
}

/// Builds tree objects for every placed path under `dir` (bottom-up); returns the tree and the
/// newest mtime of its entries (`None` if it has none).
fn build_tree(
    batch: &IngestBatch<'_>,
    placed: &Placed,
    dir: &[u8],
) -> Result<(Digest, Option<Mtime>), StoreError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut subdirs: Vec<Vec<u8>> = Vec::new();
    let prefix: Vec<u8> = if dir.is_empty() {
        Vec::new()
    } else {
        [dir, b"/"].concat()
    };
    for (path, (node, mtime)) in placed.entries.range(prefix.clone()..) {
        let Some(rest) = path.strip_prefix(prefix.as_slice()) else {
            break;
        };
        match rest.iter().position(|b| *b == b'/') {
            Some(slash) => {
                let name = rest[..slash].to_vec();
                if subdirs.last() != Some(&name) {
                    subdirs.push(name);
                }
            }
            None => entries.push(Entry {
                name: rest.to_vec(),
                node: node.clone(),
                mtime: *mtime,
            }),
        }
    }
    for name in subdirs {
        if entries.iter().any(|e| e.name == name) {
            continue; // a file placed where a directory is also placed: the file came first
        }
        let child = if dir.is_empty() {
            name.clone()
        } else {
            [dir, b"/", &name].concat()
        };
        let (digest, newest) = build_tree(batch, placed, &child)?;
        let mtime = placed
            .dirs
            .get(&child)
            .copied()
            .or(newest)
            .unwrap_or(Mtime::UNRECORDED);
        entries.push(Entry {
            name,
            node: Node::Directory { digest },
            mtime,
        });
    }
    let newest = entries.iter().map(|e| e.mtime).max();
    let tree = Tree::new(entries)?;
    Ok((batch.put_bytes(&tree.encode())?.digest, newest))
}

/// Loads a profile document through any blob service.
pub fn load_doc(blobs: &dyn BlobService, document: &Digest) -> Result<ProfileDoc, StoreError> {
    let bytes = blobs.read(document)?;
    serde_json::from_slice(&bytes).map_err(|e| StoreError::BadProfile {
        path: PathBuf::from(format!("object {document}")),
        reason: e.to_string(),
    })
}

/// How `hdist profile export` materialises files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Symlinks to verified copies in `<store>/linkfarm/` (Hashdist's create-links way).
    Symlink,
    /// Hard links to those copies (the export must be on the store's file system).
    Hardlink,
    /// Independent copies.
    Copy,
}

impl Profiles<'_> {
    /// Materialises the union view of `doc` (rules applied) at `dest` as a plain directory,
    /// for hosts without FUSE. Built beside `dest` and swapped in with one atomic rename
    /// (RENAME_EXCHANGE when `dest` exists), so readers see the old or the new export whole.
    pub fn export(&self, doc: &ProfileDoc, dest: &Path, mode: LinkMode) -> Result<(), StoreError> {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).io_context("create directory", &parent)?;
        let staging = tempfile::Builder::new()
            .prefix(".hdist-profile-")
            .tempdir_in(&parent)
            .io_context("create a temporary directory in", &parent)?;
        let tree = staging.path().join("tree");
        let roots: Vec<Digest> = doc.artifacts.iter().map(|a| a.shown_root()).collect();
        self.export_union(&roots, &tree, mode)?;
        set_mtime(&tree, Mtime::UNRECORDED).io_context("set the mtime of", &tree)?;
        if dest.exists() {
            exchange(&tree, dest).io_context("replace", dest)?;
            // `tree` now holds the previous export, removed with the staging directory.
        } else {
            fs::rename(&tree, dest).io_context("rename into place", dest)?;
        }
        Ok(())
    }

    fn export_union(&self, trees: &[Digest], dir: &Path, mode: LinkMode) -> Result<(), StoreError> {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir(dir).io_context("create directory", dir)?;
        let listing = crate::union::merge(self.store.blobs().as_ref(), trees)?;
        for (name, node, mtime) in listing {
            let path = dir.join(std::ffi::OsStr::from_bytes(&name));
            let set_own_mtime = || set_mtime(&path, mtime).io_context("set the mtime of", &path);
            match node {
                crate::union::UnionNode::Directory(children) => {
                    self.export_union(&children, &path, mode)?;
                    set_own_mtime()?;
                }
                crate::union::UnionNode::Symlink(target) => {
                    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)
                        .io_context("create symlink", &path)?;
                    set_own_mtime()?;
                }
                crate::union::UnionNode::File {
                    digest, executable, ..
                } => {
                    let wanted_mode = if executable { 0o555 } else { 0o444 };
                    // Links share the copy's inode, so each mtime needs a copy of its own.
                    let variant = format!("{}.{:09}", mtime.seconds(), mtime.nanos());
                    let source = self.store.objects().linkfarm_copy(&digest, &variant)?;
                    set_mtime(&source, mtime).io_context("set the mtime of", &source)?;
                    if executable {
                        // The shared copy carries the executable bit if any user of it needs it.
                        fs::set_permissions(&source, fs::Permissions::from_mode(0o555))
                            .io_context("chmod", &source)?;
                    }
                    match mode {
                        LinkMode::Symlink => {
                            std::os::unix::fs::symlink(&source, &path).io_context("create symlink", &path)?;
                            set_own_mtime()?;
                        }
                        LinkMode::Hardlink => fs::hard_link(&source, &path)
                            .io_context("hard-link (use --link copy across file systems)", &path)?,
                        LinkMode::Copy => {
                            fs::copy(&source, &path).io_context("copy", &path)?;
                            fs::set_permissions(&path, fs::Permissions::from_mode(wanted_mode))
                                .io_context("chmod", &path)?;
                            set_own_mtime()?;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Atomically swaps two paths (renameat2 with RENAME_EXCHANGE).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths for the duration of the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
