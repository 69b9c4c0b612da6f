//! The local store: the directory that holds objects, artifact documents and the index.
//!
//! ```text
//! <store>/
//! ├── objects/ab/ab12…[.zst]          content-addressed blobs and trees (the truth)
//! ├── artifacts/<name>/<hash>.json    artifact documents, written last (commit points)
//! ├── profiles/<name>/…               profile generations (see `profile`)
//! ├── cache/blobs/                    decompressed verified copies for open/mmap/passthrough
//! ├── tmp/                            per-process scratch (swept when its process is gone)
//! ├── gc.lock                         shared by writers, exclusive for GC
//! ├── init.lock                       serialises creation and index migration
//! └── index.sqlite                    derived index (WAL); `hdist store reindex` rebuilds it
//! ```
//!
//! Modes are the store's own, whatever the umask (see [`crate::modes`]): directories 0755,
//! `tmp/` and the scratch directories in it 0700, objects (0444 once linked), documents,
//! profile data and the index 0644 (SQLite's default), lock files 0600, so no other user can
//! write to the store or `flock` one of its locks to stall writers and GC. A stricter umask
//! narrows these further.
//!
//! Concurrency of creation: any number of processes may open a store that does not exist yet.
//! [`Store::open`] creates the directory, then takes `init.lock` exclusively while it creates
//! the subdirectories and opens the index, so exactly one process creates the SQLite file,
//! switches it to WAL and applies the migrations while the others wait (on the `flock`, not on
//! SQLite, whose journal-mode switch can report "database is locked" without waiting). Once
//! open, index writers wait for each other through SQLite's busy timeout (bounded; see
//! [`crate::index`]).
//!
//! Ingest order: objects (scratch → syncfs → rename → syncfs), then the artifact document
//! (temp → fsync → rename → fsync dir), then the index row. A crash before the document leaves
//! only unreferenced objects; after it, a listing that lacks the row until the next add of the
//! same tree or a reindex. No reader ever sees an artifact whose objects are not all durable.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::artifact::{check_version, ArtifactId, ArtifactRecord, IdError};
use crate::blob::{BlobError, BlobService, LocalBlobService};
use crate::hash::{hash_document, Digest, HashError};
use crate::index::{Index, IndexError, IndexTotals};
use crate::modes;
use crate::scratch::Scratch;
use crate::suggest::DidYouMean;
use crate::tree::{self, IngestedObject, Node, ObjectKind, Tree, TreeError};

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Id(#[from] IdError),
    /// No artifact matches what the user typed.
    #[error("no artifact {query:?} in the store at {store}{suggestion} (`hdist ls` lists them)")]
    UnknownArtifact {
        query: String,
        store: PathBuf,
        suggestion: DidYouMean,
    },
    /// An abbreviated id matches several artifacts.
    #[error("{query:?} matches several artifacts ({candidates}); give more of the id")]
    AmbiguousArtifact { query: String, candidates: String },
    /// A path inside an artifact does not exist.
    #[error("{id} has no {path:?}; `hdist ls {id}` lists its content")]
    NoSuchPath { id: ArtifactId, path: String },
    /// `cat` of something that is not a file.
    #[error("{id}:{path} is a {kind}, not a file")]
    NotAFile {
        id: ArtifactId,
        path: String,
        kind: &'static str,
    },
    /// Export would overwrite something.
    #[error("{path} exists and is not an empty directory; choose a new path")]
    DestinationExists { path: PathBuf },
    /// An artifact document does not parse.
    #[error("artifact document {path} is malformed: {source}; run `hdist store verify`")]
    BadDocument {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// No profile of that name (or generation).
    #[error("no profile {name:?} in store {store}{suggestion} (`hdist profile list` lists them)")]
    UnknownProfile {
        name: String,
        store: PathBuf,
        suggestion: DidYouMean,
    },
    /// A profile file does not parse.
    #[error("profile data {path} is malformed: {reason}")]
    BadProfile { path: PathBuf, reason: String },
    /// A lower layer failed during garbage collection.
    #[error("garbage collection: {0}")]
    Gc(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| StoreError::Io { action, path, source }
    }
}

/// The outcome of [`Store::add_tree`].
#[derive(Debug, Clone)]
pub struct AddOutcome {
    /// The artifact's record.
    pub record: ArtifactRecord,
    /// Objects this add stored that were not there before.
    pub new_objects: u64,
    /// Stored bytes of those objects.
    pub new_stored_bytes: u64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Objects re-hashed.
    pub checked: u64,
    /// Objects whose bytes are wrong (with the reason).
    pub corrupt: Vec<(Digest, String)>,
    /// Objects referenced by an artifact or the index but absent.
    pub missing: Vec<(Digest, String)>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.corrupt.is_empty() && self.missing.is_empty()
    }
}

/// A local hdist store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    scratch: Arc<Scratch>,
    blobs: Arc<LocalBlobService>,
    index: Index,
}

impl Store {
    /// Opens the store at `root`, initialising it on first use.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        modes::create_dir_all(root, modes::SHARED_DIR)
            .map_err(StoreError::io("create store directory", root))?;
        let tmp = root.join("tmp");
        let scratch =
            Arc::new(Scratch::create(&tmp).map_err(StoreError::io("create scratch space in", &tmp))?);
        // Held until the index is open: see "Concurrency of creation" in the module docs.
        let init_path = root.join("init.lock");
        let init_lock = modes::open_lock(&init_path).map_err(StoreError::io("open", &init_path))?;
        init_lock.lock().map_err(StoreError::io("lock", &init_path))?;
        for sub in ["artifacts", "profiles"] {
            let dir = root.join(sub);
            modes::create_dir_all(&dir, modes::SHARED_DIR)
                .map_err(StoreError::io("create directory", &dir))?;
        }
        let blobs = Arc::new(LocalBlobService::open(root, scratch.clone())?);
        let index = Index::open(&root.join("index.sqlite"))?;
        drop(init_lock);
        Ok(Store {
            root: root.to_path_buf(),
            scratch,
            blobs,
            index,
        })
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blob backend.
    pub fn blobs(&self) -> &Arc<LocalBlobService> {
        &self.blobs
    }

    /// This process's scratch space.
    pub fn scratch(&self) -> &Arc<Scratch> {
        &self.scratch
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    fn gc_lock(&self, exclusive: bool) -> Result<fs::File, StoreError> {
        let path = self.root.join("gc.lock");
        let file = modes::open_lock(&path).map_err(StoreError::io("open", &path))?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(StoreError::io("lock", &path))?;
        Ok(file)
    }

    /// Held (shared) by every writer from its first object to its commit point; GC holds it
    /// exclusively, so it never sweeps an object a writer found present and is about to
    /// reference. Released when the returned file is dropped.
    pub fn writer_lock(&self) -> Result<fs::File, StoreError> {
        self.gc_lock(false)
    }

    pub(crate) fn exclusive_lock(&self) -> Result<fs::File, StoreError> {
        self.gc_lock(true)
    }

    /// Removes an artifact's document and index row (its objects go with the next sweep).
    pub(crate) fn remove_artifact(&self, id: &ArtifactId) -> Result<(), StoreError> {
        let path = self.document_path(id);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove", path)(e)),
        }
        self.index.remove_artifact(id)?;
        Ok(())
    }

    fn document_path(&self, id: &ArtifactId) -> PathBuf {
        self.root
            .join("artifacts")
            .join(id.name())
            .join(format!("{}.json", id.hash()))
    }

    /// Ingests `dir` as an artifact named `name`, recording mtimes as `mtimes` says; see the
    /// module docs for the id.
    pub fn add_tree(
        &self,
        dir: &Path,
        name: &str,
        version: Option<&str>,
        mtimes: tree::MtimePolicy,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<AddOutcome, StoreError> {
        crate::artifact::check_name(name)?;
        if let Some(version) = version {
            check_version(version)?;
        }
        let _writer = self.writer_lock()?;
        let batch = self.blobs.batch();
        let ingested = tree::ingest_tree(&batch, dir, mtimes, progress)?;
        let stored = batch.commit()?;
        let hash = hash_document(
            "tree-artifact",
            &json!({"name": name, "version": version, "tree": ingested.root.to_hex()}),
        )?;
        let id = ArtifactId::new(name, hash)?;
        let record = match self.read_document(&id)? {
            Some(existing) => existing,
            None => {
                let record = ArtifactRecord {
                    id: id.clone(),
                    version: version.map(str::to_string),
                    root: ingested.root,
                    spec: None,
                    created: now(),
                    files: ingested.files,
                    bytes: ingested.bytes,
                    build_log: None,
                };
                self.write_document(&record)?;
                record
            }
        };
        crate::crashpoint::hit("add.document");
        self.index.record(&ingested.objects, Some(&record))?;
        crate::crashpoint::hit("add.indexed");
        Ok(AddOutcome {
            record,
            new_objects: stored.len() as u64,
            new_stored_bytes: stored.iter().map(|o| o.stored_size).sum(),
        })
    }

    /// Registers an artifact whose objects are already durable (used by builds).
    pub fn register(&self, record: &ArtifactRecord, objects: &[IngestedObject]) -> Result<(), StoreError> {
        if self.read_document(&record.id)?.is_none() {
            self.write_document(record)?;
        }
        crate::crashpoint::hit("build.document");
        self.index.record(objects, Some(record))?;
        crate::crashpoint::hit("build.indexed");
        Ok(())
    }

    fn write_document(&self, record: &ArtifactRecord) -> Result<(), StoreError> {
        let path = self.document_path(&record.id);
        let mut bytes = serde_json::to_vec_pretty(record).expect("records serialise");
        bytes.push(b'\n');
        self.scratch
            .write_atomic(&path, &bytes)
            .map_err(StoreError::io("write artifact document", &path))
    }

    fn pin_path(&self, id: &ArtifactId) -> PathBuf {
        self.root.join("pins").join(id.name()).join(id.hash().to_string())
    }

    /// Pins an artifact: GC keeps it (and what it imported) even if no profile uses it.
    pub fn pin(&self, id: &ArtifactId) -> Result<(), StoreError> {
        let path = self.pin_path(id);
        self.scratch
            .write_atomic(&path, format!("{id}\n").as_bytes())
            .map_err(StoreError::io("write pin", &path))
    }

    /// Removes a pin (absent pins are fine).
    pub fn unpin(&self, id: &ArtifactId) -> Result<(), StoreError> {
        let path = self.pin_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove pin", path)(e)),
        }
    }

    /// Every pinned artifact id.
    pub fn pins(&self) -> Result<Vec<ArtifactId>, StoreError> {
        let mut out = Vec::new();
        let dir = self.root.join("pins");
        for name in fs::read_dir(&dir).into_iter().flatten().flatten() {
            for hash in fs::read_dir(name.path()).into_iter().flatten().flatten() {
                let id = format!(
                    "{}/{}",
                    name.file_name().to_string_lossy(),
                    hash.file_name().to_string_lossy()
                );
                if let Ok(id) = id.parse() {
                    out.push(id);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// The artifact's on-disk document (which, unlike the index row, carries the build log).
    pub fn artifact_document(&self, id: &ArtifactId) -> Result<Option<ArtifactRecord>, StoreError> {
        self.read_document(id)
    }

    fn read_document(&self, id: &ArtifactId) -> Result<Option<ArtifactRecord>, StoreError> {
        let path = self.document_path(id);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::BadDocument { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("read", path)(e)),
        }
    }

    /// Finds an artifact by full id, unique id prefix, or bare name (if only one version).
    pub fn find_artifact(&self, query: &str) -> Result<ArtifactRecord, StoreError> {
        if let Ok(id) = query.parse::<ArtifactId>() {
            if let Some(record) = self.index.artifact(&id)? {
                return Ok(record);
            }
            // Not indexed (e.g. a crash before the index row): the document is the truth.
            if let Some(record) = self.read_document(&id)? {
                return Ok(record);
            }
        }
        let prefix = if query.contains('/') {
            query.to_string()
        } else {
            format!("{query}/")
        };
        let matches = self.index.artifacts_with_prefix(&prefix)?;
        match matches.len() {
            0 => Err(StoreError::UnknownArtifact {
                query: query.to_string(),
                store: self.root.clone(),
                suggestion: self.similar_artifact_names(query)?,
            }),
            1 => Ok(matches.into_iter().next().expect("one match")),
            _ => Err(StoreError::AmbiguousArtifact {
                query: query.to_string(),
                candidates: matches
                    .iter()
                    .take(5)
                    .map(|r| r.id.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Artifact names close to the name part of `query` (what [`StoreError::UnknownArtifact`]
    /// suggests).
    pub fn similar_artifact_names(&self, query: &str) -> Result<DidYouMean, StoreError> {
        let name = query.split('/').next().unwrap_or(query);
        let records = self.artifacts()?;
        let mut names: Vec<&str> = records.iter().map(|r| r.id.name()).collect();
        names.dedup();
        Ok(DidYouMean::closest(name, names))
    }

    /// All artifacts, sorted by id.
    pub fn artifacts(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        Ok(self.index.artifacts_with_prefix("")?)
    }

    /// The node at `path` inside an artifact.
    pub fn node_at(&self, record: &ArtifactRecord, path: &str) -> Result<Node, StoreError> {
        tree::resolve_path(self.blobs.as_ref(), &record.root, path.as_bytes())?.ok_or_else(|| {
            StoreError::NoSuchPath {
                id: record.id.clone(),
                path: path.to_string(),
            }
        })
    }

    /// Lists the directory at `path` (or the single entry, if it is not a directory).
    pub fn list(&self, record: &ArtifactRecord, path: &str) -> Result<Vec<tree::Entry>, StoreError> {
        match self.node_at(record, path)? {
            Node::Directory { digest } => Ok(Tree::load(self.blobs.as_ref(), &digest)?.entries().to_vec()),
            node => {
                // The entry (with its mtime) is in the parent's tree.
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
                let listed = match tree::resolve_path(self.blobs.as_ref(), &record.root, parent.as_bytes())? {
                    Some(Node::Directory { digest }) => Tree::load(self.blobs.as_ref(), &digest)?
                        .get(name.as_bytes())
                        .cloned(),
                    _ => None,
                };
                Ok(vec![listed.unwrap_or(tree::Entry {
                    name: name.as_bytes().to_vec(),
                    node,
                    mtime: tree::Mtime::UNRECORDED,
                })])
            }
        }
    }

    /// Writes the file at `path` of an artifact to `out`.
    pub fn cat(&self, record: &ArtifactRecord, path: &str, out: &mut dyn Write) -> Result<(), StoreError> {
        let not_a_file = |kind| StoreError::NotAFile {
            id: record.id.clone(),
            path: path.to_string(),
            kind,
        };
        match self.node_at(record, path)? {
            Node::File { digest, .. } => {
                let mut file = self.blobs.open(&digest)?;
                io::copy(&mut file, out).map_err(StoreError::io("write", "standard output"))?;
                Ok(())
            }
            Node::Directory { .. } => Err(not_a_file("directory")),
            Node::Symlink { .. } => Err(not_a_file("symlink")),
        }
    }

    /// Materialises an artifact at `dest` (which must not exist, or be an empty directory).
    /// The copy appears whole or not at all: it is built beside `dest` and renamed.
    pub fn export(&self, record: &ArtifactRecord, dest: &Path) -> Result<(), StoreError> {
        self.export_with_progress(record, dest, &|_| {})
    }

    /// [`Store::export`], calling `progress` with the file bytes written as they are (out of
    /// `record.bytes`).
    pub fn export_with_progress(
        &self,
        record: &ArtifactRecord,
        dest: &Path,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<(), StoreError> {
        match fs::read_dir(dest) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(StoreError::DestinationExists {
                        path: dest.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => {
                return Err(StoreError::DestinationExists {
                    path: dest.to_path_buf(),
                })
            }
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let staging = tempfile::Builder::new()
            .prefix(".hdist-export-")
            .tempdir_in(&parent)
            .map_err(StoreError::io("create a temporary directory in", &parent))?;
        let inner = staging.path().join("tree");
        tree::export_tree_with_progress(
            self.blobs.as_ref(),
            &record.root,
            &inner,
            tree::ExportTimes::Recorded,
            progress,
        )?;
        if dest.exists() {
            fs::remove_dir(dest).map_err(StoreError::io("replace empty directory", dest))?;
        }
        fs::rename(&inner, dest).map_err(StoreError::io("rename into place", dest))?;
        Ok(())
    }

    /// Re-hashes every object and checks that every artifact's trees and files are present.
    /// `progress` is called with the stored bytes of each object checked.
    pub fn verify(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<VerifyReport, StoreError> {
        use rayon::prelude::*;
        let objects = self.blobs.list()?;
        let results: Vec<_> = objects
            .par_iter()
            .map(|object| {
                let result = self.blobs.verify(object);
                progress(object.stored_size);
                (object.digest, result)
            })
            .collect();
        let mut report = VerifyReport {
            checked: objects.len() as u64,
            ..Default::default()
        };
        let mut present = std::collections::HashSet::new();
        for (digest, result) in results {
            match result {
                Ok(_) => {
                    present.insert(digest);
                }
                Err(e) => report.corrupt.push((digest, e.to_string())),
            }
        }
        let corrupt: std::collections::HashSet<_> = report.corrupt.iter().map(|(d, _)| *d).collect();
        for digest in self.index.object_digests()? {
            if !present.contains(&digest) && !corrupt.contains(&digest) {
                report.missing.push((digest, "listed in the index".to_string()));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for record in self.artifacts()? {
            self.check_tree(
                &record.root,
                &record.id.to_string(),
                &present,
                &corrupt,
                &mut seen,
                &mut report,
            );
        }
        report.missing.sort();
        report.missing.dedup_by(|a, b| a.0 == b.0);
        Ok(report)
    }

    fn check_tree(
        &self,
        digest: &Digest,
        owner: &str,
        present: &std::collections::HashSet<Digest>,
        corrupt: &std::collections::HashSet<Digest>,
        seen: &mut std::collections::HashSet<Digest>,
        report: &mut VerifyReport,
    ) {
        if !seen.insert(*digest) || corrupt.contains(digest) {
            return;
        }
        if !present.contains(digest) {
            report.missing.push((*digest, format!("tree of {owner}")));
            return;
        }
        let tree = match Tree::load(self.blobs.as_ref(), digest) {
            Ok(tree) => tree,
            Err(e) => {
                report.corrupt.push((*digest, e.to_string()));
                return;
            }
        };
        for entry in tree.entries() {
            match &entry.node {
                Node::Directory { digest } => self.check_tree(digest, owner, present, corrupt, seen, report),
                Node::File { digest, .. } => {
                    if !present.contains(digest) && !corrupt.contains(digest) {
                        report.missing.push((
                            *digest,
                            format!("file {:?} of {owner}", String::from_utf8_lossy(&entry.name)),
                        ));
                    }
                }
                Node::Symlink { .. } => {}
            }
        }
    }

    /// Totals from the index.
    pub fn totals(&self) -> Result<IndexTotals, StoreError> {
        Ok(self.index.totals()?)
    }

    /// Rebuilds the index from `objects/` and `artifacts/`. Returns (objects, artifacts).
    pub fn reindex(&self) -> Result<(u64, u64), StoreError> {
        let stored = self.blobs.list()?;
        let mut objects = Vec::with_capacity(stored.len());
        for object in &stored {
            let size = self.blobs.raw_size(object)?;
            objects.push(IngestedObject {
                outcome: crate::blob::PutOutcome {
                    digest: object.digest,
                    size,
                    stored_size: object.stored_size,
                    new: false,
                },
                kind: ObjectKind::Blob,
            });
        }
        let mut records = Vec::new();
        let artifacts_dir = self.root.join("artifacts");
        for name_dir in fs::read_dir(&artifacts_dir).map_err(StoreError::io("list", &artifacts_dir))? {
            let name_dir = name_dir.map_err(StoreError::io("list", &artifacts_dir))?.path();
            let Ok(docs) = fs::read_dir(&name_dir) else {
                continue;
            };
            for doc in docs.flatten() {
                let path = doc.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let bytes = fs::read(&path).map_err(StoreError::io("read", &path))?;
                let record: ArtifactRecord = serde_json::from_slice(&bytes)
                    .map_err(|source| StoreError::BadDocument { path, source })?;
                records.push(record);
            }
        }
        let mut trees = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<Digest> = records.iter().map(|r| r.root).collect();
        while let Some(digest) = stack.pop() {
            if !seen.insert(digest) {
                continue;
            }
            trees.push(digest);
            if let Ok(tree) = Tree::load(self.blobs.as_ref(), &digest) {
                for entry in tree.entries() {
                    if let Node::Directory { digest } = entry.node {
                        stack.push(digest);
                    }
                }
            }
        }
        self.index.rebuild(&objects, &trees, &records)?;
        Ok((objects.len() as u64, records.len() as u64))
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
