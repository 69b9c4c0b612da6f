//! The local store: the directory that holds objects, artifact documents and the index.
//!
//! ```text
//! <store>/
//! ├── objects/ab/ab12…[.zst]          content-addressed blobs and trees (the truth)
//! ├── artifacts/<name>/<hash>.json    artifact documents, written last (commit points)
//! ├── profiles/<name>/…               profile generations (see `profile`)
//! ├── cache/blobs/                    decompressed verified copies for open/mmap/passthrough
//! │                                   (size-bounded; see `remote::cached`)
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
//! Ingest order and what a crash leaves: see [`crate::commit`], the commit protocol every
//! writer, GC, `verify` and `reindex` follow. In short: objects, then the artifact document
//! (the commit point), then the index row, which may lag; no reader ever sees an artifact whose
//! objects are not all durable.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::artifact::{check_version, ArtifactId, ArtifactRecord, IdError};
use crate::blob::{BlobError, BlobService, CopiesReport, LocalBlobService};
use crate::hash::{hash_document, Digest, HashError};
use crate::index::{Index, IndexError, IndexTotals};
use crate::modes;
use crate::profile::Profiles;
use crate::remote::cached::{CacheLayout, CacheOptions, CachedBlobService, STORE_COPIES_LIMIT};
use crate::scratch::Scratch;
use crate::suggest::DidYouMean;
use crate::tree::{self, IngestedObject, Node, ObjectKind, Tree, TreeError};
use crate::{IoContext, IoError};

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
    #[error("artifact document {path} is damaged (`hdist store verify --repair` removes it)")]
    BadDocument {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// An artifact document parses but describes another id than its path says.
    #[error("artifact document {path} describes {found}, not the artifact its path names; `hdist store verify --repair` removes it")]
    MisplacedDocument { path: PathBuf, found: String },
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
    /// A lower layer failed during `verify --repair`.
    #[error("repair: {0}")]
    Repair(#[source] crate::source::SourceError),
    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
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

/// What [`Store::reindex`] did.
#[derive(Debug, Clone, Default)]
pub struct ReindexReport {
    /// Objects indexed.
    pub objects: u64,
    /// Artifacts indexed.
    pub artifacts: u64,
    /// Documents that could not be read, skipped (each error names the file and what to do).
    pub skipped: Vec<String>,
    /// Where a damaged index file was moved before the rebuild.
    pub moved_index: Option<PathBuf>,
}

/// An artifact document found on disk, read or not.
#[derive(Debug)]
pub struct ScannedDocument {
    /// Its file, `artifacts/<name>/<hash>.json`.
    pub path: PathBuf,
    /// Its record, or why it is damaged.
    pub record: Result<ArtifactRecord, StoreError>,
}

/// A local hdist store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    scratch: Arc<Scratch>,
    objects: Arc<LocalBlobService>,
    blobs: Arc<CachedBlobService>,
    index: Index,
}

impl Store {
    /// Opens the store at `root`, initialising it on first use.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Ok(Store::open_with(root, false)?.0)
    }

    /// [`Store::open`] for `reindex`: a damaged index file is moved aside first (see
    /// [`crate::index`]); returns where it went.
    pub fn open_for_reindex(root: &Path) -> Result<(Store, Option<PathBuf>), StoreError> {
        Store::open_with(root, true)
    }

    fn open_with(root: &Path, move_damaged_index: bool) -> Result<(Store, Option<PathBuf>), StoreError> {
        modes::create_dir_all(root, modes::SHARED_DIR).io_context("create store directory", root)?;
        let tmp = root.join("tmp");
        let scratch = Arc::new(Scratch::create(&tmp).io_context("create scratch space in", &tmp)?);
        // Held until the index is open: see "Concurrency of creation" in the module docs.
        let init_path = root.join("init.lock");
        let init_lock = modes::open_lock(&init_path).io_context("open", &init_path)?;
        init_lock.lock().io_context("lock", &init_path)?;
        for sub in ["artifacts", "profiles"] {
            let dir = root.join(sub);
            modes::create_dir_all(&dir, modes::SHARED_DIR).io_context("create directory", &dir)?;
        }
        let objects = Arc::new(LocalBlobService::open(root, scratch.clone())?);
        let copies = CacheLayout::Store {
            root: root.to_path_buf(),
            scratch: scratch.clone(),
        };
        let limit = CacheOptions {
            limit: STORE_COPIES_LIMIT,
        };
        let blobs = Arc::new(CachedBlobService::with_layout(objects.clone(), copies, limit)?);
        let index_path = root.join("index.sqlite");
        let (index, moved) = if move_damaged_index {
            Index::open_or_move_aside(&index_path)?
        } else {
            (Index::open(&index_path)?, None)
        };
        drop(init_lock);
        Ok((
            Store {
                root: root.to_path_buf(),
                scratch,
                objects,
                blobs,
                index,
            },
            moved,
        ))
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The blobs, as every reader reads them: the store's objects behind the layer that keeps
    /// their decompressed copies for `open` (`cache/blobs/`; raw objects are served in place).
    pub fn blobs(&self) -> &Arc<CachedBlobService> {
        &self.blobs
    }

    /// The object backend, for what only it does: adding objects, listing, locating and
    /// verifying them, linkfarm copies. Readers use [`Store::blobs`].
    pub fn objects(&self) -> &Arc<LocalBlobService> {
        &self.objects
    }

    /// Re-hashes every decompressed copy and linkfarm copy (`hdist store verify`); with
    /// `repair`, a bad one is made again from its object (verified on the way) or dropped.
    pub fn verify_copies(&self, repair: bool) -> CopiesReport {
        let mut report = self.blobs.verify_copies(repair);
        report.merge(self.objects.verify_linkfarm(repair));
        report
    }

    /// This process's scratch space.
    pub fn scratch(&self) -> &Arc<Scratch> {
        &self.scratch
    }

    /// The index.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The named profiles (see [`crate::profile`]).
    pub fn profiles(&self) -> Profiles<'_> {
        Profiles::new(self)
    }

    fn gc_lock(&self, exclusive: bool) -> Result<fs::File, StoreError> {
        let path = self.root.join("gc.lock");
        let file = modes::open_lock(&path).io_context("open", &path)?;
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.io_context("lock", &path)?;
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

    /// Removes an artifact's index row, then its document (the index never runs ahead of the
    /// disk; see [`crate::commit`]). Its objects go with the next sweep.
    pub(crate) fn remove_artifact(&self, id: &ArtifactId) -> Result<(), StoreError> {
        self.index.remove_artifact(id)?;
        remove_if_present(&self.document_path(id))
    }

    /// Every artifact document on disk, read or not, sorted by path: the commit points, which
    /// GC, `verify` and `reindex` trust instead of the index.
    pub fn scan_artifact_documents(&self) -> Result<Vec<ScannedDocument>, StoreError> {
        let artifacts_dir = self.root.join("artifacts");
        let mut out = Vec::new();
        for name_dir in fs::read_dir(&artifacts_dir).io_context("list", &artifacts_dir)? {
            let name_dir = name_dir.io_context("list", &artifacts_dir)?.path();
            if !name_dir.is_dir() {
                continue;
            }
            for doc in fs::read_dir(&name_dir).io_context("list", &name_dir)? {
                let path = doc.io_context("list", &name_dir)?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let record = read_document_file(&path);
                out.push(ScannedDocument { path, record });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Every artifact document on disk, sorted by id; the first damaged one is an error that
    /// names it and what to do.
    pub fn artifact_documents(&self) -> Result<Vec<ArtifactRecord>, StoreError> {
        let mut records = self
            .scan_artifact_documents()?
            .into_iter()
            .map(|scanned| scanned.record)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// The artifact document file of `id`.
    pub fn document_path(&self, id: &ArtifactId) -> PathBuf {
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
        let batch = self.objects.batch();
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

    /// Registers an artifact whose objects are already durable (used by builds). A document
    /// already there is kept when it is complete (the first writer wins) and replaced when it
    /// names objects that are gone (a half-written artifact).
    pub fn register(&self, record: &ArtifactRecord, objects: &[IngestedObject]) -> Result<(), StoreError> {
        let complete = match self.read_document(&record.id)? {
            Some(existing) => self.has_whole_tree(&existing.root)?,
            None => false,
        };
        if !complete {
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
        Ok(self
            .scratch
            .write_atomic(&path, &bytes)
            .io_context("write artifact document", &path)?)
    }

    fn pin_path(&self, id: &ArtifactId) -> PathBuf {
        self.root.join("pins").join(id.name()).join(id.hash().to_string())
    }

    /// Pins an artifact: GC keeps it (and what it imported) even if no profile uses it.
    pub fn pin(&self, id: &ArtifactId) -> Result<(), StoreError> {
        let path = self.pin_path(id);
        Ok(self
            .scratch
            .write_atomic(&path, format!("{id}\n").as_bytes())
            .io_context("write pin", &path)?)
    }

    /// Removes a pin (absent pins are fine).
    pub fn unpin(&self, id: &ArtifactId) -> Result<(), StoreError> {
        let path = self.pin_path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(IoError::new("remove pin", path, e).into()),
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

    /// The artifact if it is committed: its index row, or else its document when every object
    /// the document names is present — then the missing row is written, completing a writer
    /// killed between its commit point and its row (see [`crate::commit`]). `None` when the
    /// artifact is absent or half-written, so the caller writes it again.
    pub fn committed_artifact(&self, id: &ArtifactId) -> Result<Option<ArtifactRecord>, StoreError> {
        if let Some(record) = self.index.artifact(id)? {
            return Ok(Some(record));
        }
        let Some(record) = self.read_document(id)? else {
            return Ok(None);
        };
        if !self.has_whole_tree(&record.root)? {
            log::warn!("artifact {id}: its document names objects that are gone; writing it again");
            return Ok(None);
        }
        log::info!("artifact {id}: completing its index row (a writer stopped after its commit point)");
        self.index.record(&[], Some(&record))?;
        Ok(Some(record))
    }

    /// Whether the tree `root` and every tree and file below it are in `objects/`.
    fn has_whole_tree(&self, root: &Digest) -> Result<bool, StoreError> {
        /// Why the walk stopped early.
        enum Stop {
            Missing,
            Failed(StoreError),
        }
        let mut files = std::collections::HashSet::new();
        let walked = tree::TreeWalker::new(self.blobs.as_ref()).walk(root, |visit| {
            let tree = match visit.tree {
                Ok(tree) => tree,
                Err(TreeError::Blob(e)) if e.is_not_found() => return Err(Stop::Missing),
                Err(e) => return Err(Stop::Failed(e.into())),
            };
            for entry in tree.entries() {
                if let Node::File { digest, .. } = &entry.node {
                    if files.insert(*digest) && !self.blobs.has(digest).map_err(|e| Stop::Failed(e.into()))? {
                        return Err(Stop::Missing);
                    }
                }
            }
            Ok(())
        });
        match walked {
            Ok(()) => Ok(true),
            Err(Stop::Missing) => Ok(false),
            Err(Stop::Failed(e)) => Err(e),
        }
    }

    /// The artifact's on-disk document (which, unlike the index row, carries the build log).
    pub fn artifact_document(&self, id: &ArtifactId) -> Result<Option<ArtifactRecord>, StoreError> {
        self.read_document(id)
    }

    fn read_document(&self, id: &ArtifactId) -> Result<Option<ArtifactRecord>, StoreError> {
        let path = self.document_path(id);
        match read_document_file(&path) {
            Ok(record) => Ok(Some(record)),
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
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
                io::copy(&mut file, out).io_context("write", "standard output")?;
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
            .io_context("create a temporary directory in", &parent)?;
        let inner = staging.path().join("tree");
        tree::export_tree_with_progress(
            self.blobs.as_ref(),
            &record.root,
            &inner,
            tree::ExportTimes::Recorded,
            progress,
        )?;
        if dest.exists() {
            fs::remove_dir(dest).io_context("replace empty directory", dest)?;
        }
        fs::rename(&inner, dest).io_context("rename into place", dest)?;
        Ok(())
    }

    /// Totals from the index.
    pub fn totals(&self) -> Result<IndexTotals, StoreError> {
        Ok(self.index.totals()?)
    }

    /// Rebuilds the index from `objects/` and the artifact documents (the disk is the truth;
    /// see [`crate::commit`]). Damaged documents are skipped and named in the report; an index
    /// file found damaged on the way is moved aside and the rebuild starts again on a new one.
    /// Holds `gc.lock` exclusively, so no writer's row is lost between listing and rebuilding.
    pub fn reindex(&self) -> Result<ReindexReport, StoreError> {
        let _exclusive = self.exclusive_lock()?;
        self.reindex_locked()
    }

    /// [`Store::reindex`] for a caller that holds `gc.lock` exclusively already.
    pub(crate) fn reindex_locked(&self) -> Result<ReindexReport, StoreError> {
        let stored = self.objects.list()?;
        let mut objects = Vec::with_capacity(stored.len());
        for object in &stored {
            let size = self.objects.raw_size(object)?;
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
        let mut report = ReindexReport::default();
        let mut records = Vec::new();
        for scanned in self.scan_artifact_documents()? {
            match scanned.record {
                Ok(record) => records.push(record),
                Err(e) => report.skipped.push(crate::error_chain(&e)),
            }
        }
        // Every tree object the documents reach (an unreadable one is a tree all the same).
        let mut walker = tree::TreeWalker::new(self.blobs.as_ref());
        for record in &records {
            let Ok(()) = walker.walk(&record.root, |_| Ok::<_, std::convert::Infallible>(()));
        }
        let trees: Vec<Digest> = walker.visited().iter().copied().collect();
        match self.index.rebuild(&objects, &trees, &records) {
            Err(IndexError::Damaged { .. }) => {
                report.moved_index = Some(self.index.move_aside()?);
                self.index.rebuild(&objects, &trees, &records)?;
            }
            other => other?,
        }
        report.objects = objects.len() as u64;
        report.artifacts = records.len() as u64;
        Ok(report)
    }
}

/// Reads and checks one artifact document: it must parse and describe the id its path names.
fn read_document_file(path: &Path) -> Result<ArtifactRecord, StoreError> {
    let bytes = fs::read(path).io_context("read", path)?;
    let record: ArtifactRecord =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::BadDocument {
            path: path.to_path_buf(),
            source,
        })?;
    let named = path
        .parent()
        .and_then(|dir| dir.file_name())
        .zip(path.file_stem())
        .map(|(name, hash)| format!("{}/{}", name.to_string_lossy(), hash.to_string_lossy()));
    if named.as_deref() != Some(record.id.to_string().as_str()) {
        return Err(StoreError::MisplacedDocument {
            path: path.to_path_buf(),
            found: record.id.to_string(),
        });
    }
    Ok(record)
}

/// Removes a file; one that is already gone is fine.
pub(crate) fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("remove", path, e).into()),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
