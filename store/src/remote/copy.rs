//! `hdist copy`: artifact closures moved between stores through a published directory, the
//! hand-off of builds made elsewhere (a Slurm job on a node-local store) and the lookup a
//! binary cache needs.
//!
//! # Layout
//!
//! The published-store layout of [`crate::remote`] (objects written by publish's own writer,
//! so chunked files, compression and the durability order are publish's), plus one small
//! signed entry per artifact at a path derived from its id:
//!
//! ```text
//! DIR/
//! ├── manifest.json              written by `hdist publish` only (copy never touches it)
//! ├── artifacts/<name>/<hash>.json
//! │                              a signed manifest (same envelope, key and verification as
//! │                              manifest.json) whose body lists this one artifact (root tree,
//! │                              artifact document) and the chunk tables of its large files
//! └── objects/ab/ab12….zst       trees, file contents, chunks, the artifact document (with
//!                                its build spec and build-log digest), the build log
//! ```
//!
//! # Lookup without an index download
//!
//! A reader that wants artifact `name/hash` fetches exactly `artifacts/name/hash.json` (a few
//! hundred bytes; a 404 is a miss), verifies its signature with the key it trusts, then reads
//! the artifact document and the artifact's imports' entries the same way. A cache holding
//! 100k artifacts therefore costs one small request per artifact looked up, never a download
//! of a 100k-entry index; the entries are static files, so any HTTP server, proxy or shared
//! file system serves them. The id is the hash of the build spec, so an entry never needs to
//! change: replaying an older signed entry for the same id can only name a build of the same
//! spec signed by the same trusted key (there is no serial to roll back).
//!
//! # Writing: concurrent, and each entry a commit point
//!
//! `copy --to` stages objects in a directory of its own under `.tmp/` (publish's writer made
//! private), makes them durable (`syncfs`), renames them into `objects/`, syncs again, and
//! only then writes the entries, imports before their importers (temp → fsync → rename →
//! fsync of the directory). A reader that finds an entry finds every object it names, and
//! several nodes may copy into one shared directory at once: objects are immutable and named
//! by content, entries are separate files. `hdist publish` writes an entry for every artifact
//! it publishes, so a published store is a cache too.
//!
//! # Reading: nothing trusted before it is verified
//!
//! `copy --from DIR|URL` verifies each entry's signature with the given key, checks that the
//! artifact document it names is that artifact (id and root), and checks every object against
//! its digest (through [`HttpBlobService`] for URLs, the same check here for directories); a
//! chunked file is checked as a whole after its verified chunks are joined. Objects are staged
//! in one ingest batch and made durable together, and each artifact is registered only after,
//! imports first: an import fails whole or leaves registered only complete artifacts.
//! Artifacts already committed locally (and what they import) are not fetched.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::chunks::ChunkTable;
use super::http::{Fetched, HttpBlobService, HttpOptions};
use super::manifest::{Manifest, PublicKey, PublishedArtifact, SecretKey};
use super::publish::{Phase, Walk, Writer};
use super::{object_path, RemoteError};
use crate::artifact::{ArtifactId, ArtifactRecord};
use crate::blob::{BlobError, BlobService};
use crate::hash::Digest;
use crate::store::Store;
use crate::tree::{IngestedObject, Node, ObjectKind, Tree};
use crate::IoError;

/// Largest object a directory source may decompress to (the HTTP source has its own bound,
/// [`HttpOptions::max_body`]); published objects are at most a few MiB.
const MAX_OBJECT: usize = 64 << 20;

/// Path of the signed entry of `id` inside a published directory (relative, `/`-separated).
pub fn entry_path(id: &ArtifactId) -> String {
    format!("artifacts/{}/{}.json", id.name(), id.hash())
}

/// What a copy did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopyReport {
    /// Artifacts copied (the closure, imports first), without those already present.
    pub artifacts: Vec<ArtifactId>,
    /// Artifacts of the closure that were already there (`--from`: committed locally).
    pub present: Vec<ArtifactId>,
    /// Objects this copy wrote (the rest were there).
    pub written: u64,
    /// Bytes this copy wrote (`--to`: compressed, under `objects/`; `--from`: as stored).
    pub written_bytes: u64,
}

/// The artifacts `ids` and everything they import, transitively, imports before importers,
/// each with its on-disk document (which carries the build log).
pub fn closure(store: &Store, ids: &[ArtifactId]) -> Result<Vec<ArtifactRecord>, RemoteError> {
    let mut visited = HashSet::new();
    let mut order = Vec::new();
    // Depth-first, post-order, without recursion: (id, imports already pushed?).
    let mut stack: Vec<(ArtifactId, Option<ArtifactRecord>)> =
        ids.iter().rev().map(|id| (id.clone(), None)).collect();
    while let Some((id, record)) = stack.pop() {
        match record {
            Some(record) => order.push(record),
            None => {
                if !visited.insert(id.clone()) {
                    continue;
                }
                let indexed = store.find_artifact(&id.to_string())?;
                let record = store.artifact_document(&id)?.unwrap_or(indexed);
                let imports = record.imports();
                stack.push((id, Some(record)));
                stack.extend(imports.into_iter().rev().map(|i| (i, None)));
            }
        }
    }
    Ok(order)
}

/// Copies the closure of `ids` from `store` into the published directory `dest`, signing one
/// entry per artifact with `key` (layout and order in the module docs).
pub fn copy_to(
    store: &Store,
    ids: &[ArtifactId],
    dest: &Path,
    key: &SecretKey,
) -> Result<CopyReport, RemoteError> {
    // Shared GC lock while the store is read (as publish).
    let _no_gc = store.writer_lock()?;
    let records = closure(store, ids)?;
    let writer = Writer::new_private(dest)?;
    let blobs = store.blobs();
    let mut entries = Vec::with_capacity(records.len());
    for record in &records {
        let mut walk = Walk::new(blobs.as_ref());
        walk.tree(&record.root)?;
        let chunked = writer.put_files(store, &walk)?;
        walk.trees()
            .par_iter()
            .try_for_each(|digest| writer.put_local(store, digest, Phase::Data))?;
        if let Some(log) = &record.build_log {
            writer.put_local(store, log, Phase::Data)?;
        }
        let document = writer.put_bytes(
            &serde_json::to_vec(record).expect("records serialise"),
            Phase::Data,
        )?;
        let mut entry = Manifest::new(1, unix_now());
        entry.artifacts.insert(
            record.id.clone(),
            PublishedArtifact {
                root: record.root,
                document,
            },
        );
        entry.chunked = chunked.into_iter().collect();
        entries.push((record.id.clone(), entry));
    }
    let staging = writer.staging_dir().to_path_buf();
    let (written, written_bytes) = writer.commit()?;
    // Empty once committed; a crashed copy leaves it behind, unreferenced.
    let _ = fs::remove_dir(&staging);
    for (id, entry) in &entries {
        super::write_beside(&dest.join(entry_path(id)), &entry.sign(key))?;
    }
    Ok(CopyReport {
        artifacts: records.into_iter().map(|r| r.id).collect(),
        present: Vec::new(),
        written,
        written_bytes,
    })
}

/// Writes the entry of every artifact `manifest` lists into the published directory `dest`
/// (whose objects are durable already): what `hdist publish` adds so that a published store
/// serves as a cache. Each entry carries the chunk tables of its artifact's own files.
pub(super) fn write_entries(
    store: &Store,
    dest: &Path,
    manifest: &Manifest,
    key: &SecretKey,
) -> Result<(), RemoteError> {
    for (id, published) in &manifest.artifacts {
        let blobs = store.blobs();
        let mut walk = Walk::new(blobs.as_ref());
        walk.tree(&published.root)?;
        let mut entry = Manifest::new(1, manifest.published);
        entry.artifacts.insert(id.clone(), published.clone());
        entry.chunked = manifest
            .chunked
            .iter()
            .filter(|(file, _)| walk.files.contains_key(file))
            .map(|(file, table)| (*file, *table))
            .collect();
        super::write_beside(&dest.join(entry_path(id)), &entry.sign(key))?;
    }
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where published artifacts are read from: a directory (a shared file system) or the base
/// URL of one served over HTTP(S).
#[derive(Debug)]
pub enum CacheSource {
    /// A published directory on a file system.
    Dir(PathBuf),
    /// A published directory behind an HTTP server (mirrors, retries, bounds of [`crate::http`]).
    Http(HttpBlobService),
}

impl CacheSource {
    /// `http://` and `https://` locations are fetched over HTTP; anything else is a directory.
    pub fn open(location: &str, options: HttpOptions) -> Result<CacheSource, RemoteError> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(CacheSource::Http(HttpBlobService::new(
                &[location.to_string()],
                options,
            )?))
        } else {
            Ok(CacheSource::Dir(PathBuf::from(location)))
        }
    }

    /// The location, for messages.
    pub fn location(&self) -> String {
        match self {
            CacheSource::Dir(dir) => dir.display().to_string(),
            CacheSource::Http(http) => http.mirrors().join(", "),
        }
    }

    /// A small file of the layout (an entry); `None` if it is not there.
    fn get(&self, relative: &str) -> Result<Option<Vec<u8>>, RemoteError> {
        match self {
            CacheSource::Dir(dir) => {
                let path = dir.join(relative);
                match fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(IoError::new("read", path, e).into()),
                }
            }
            CacheSource::Http(http) => Ok(match http.get(relative, None)? {
                Some(Fetched::Body { bytes, .. }) => Some(bytes),
                Some(Fetched::NotModified) | None => None,
            }),
        }
    }

    /// One object's raw bytes, verified against `digest`.
    fn object(&self, digest: &Digest) -> Result<Vec<u8>, RemoteError> {
        match self {
            CacheSource::Dir(dir) => {
                let path = dir.join(object_path(digest));
                let compressed = fs::read(&path).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        RemoteError::Blob(BlobError::NotFound {
                            digest: *digest,
                            location: dir.join("objects"),
                        })
                    } else {
                        IoError::new("read", &path, e).into()
                    }
                })?;
                let corrupt = |reason: String| RemoteError::CorruptObject {
                    digest: *digest,
                    url: path.display().to_string(),
                    reason,
                };
                let raw = zstd::bulk::decompress(&compressed, MAX_OBJECT)
                    .map_err(|e| corrupt(format!("not a zstd frame of at most {MAX_OBJECT} bytes: {e}")))?;
                let actual = Digest::of(&raw);
                if actual != *digest {
                    return Err(corrupt(format!("its content hashes to {actual}")));
                }
                Ok(raw)
            }
            CacheSource::Http(http) => Ok(http.fetch_object(digest)?),
        }
    }

    /// A file's content: one object, or the verified chunks its table lists, joined and
    /// checked as a whole.
    fn file(&self, digest: &Digest, table: Option<&Digest>) -> Result<Vec<u8>, RemoteError> {
        let Some(table) = table else {
            return self.object(digest);
        };
        let corrupt = |reason: &str| RemoteError::CorruptObject {
            digest: *digest,
            url: self.location(),
            reason: reason.to_string(),
        };
        let table = ChunkTable::decode(&self.object(table)?)
            .ok_or_else(|| corrupt("its chunk table does not decode"))?;
        let mut content = Vec::with_capacity(table.file_size as usize);
        for chunk in &table.chunks {
            content.extend_from_slice(&self.object(chunk)?);
        }
        if Digest::of(&content) != *digest {
            return Err(corrupt("its chunks do not join into it"));
        }
        Ok(content)
    }

    /// The verified entry of `id`: its root, artifact document and chunk tables; `None` if
    /// the source does not have it.
    pub fn lookup(&self, id: &ArtifactId, key: &PublicKey) -> Result<Option<Entry>, RemoteError> {
        let path = entry_path(id);
        let Some(bytes) = self.get(&path)? else {
            return Ok(None);
        };
        let url = format!("{}/{path}", self.location());
        let manifest = Manifest::verify(&bytes, key, &url)?;
        let published = manifest
            .artifacts
            .get(id)
            .cloned()
            .ok_or_else(|| RemoteError::BadManifest {
                url: url.clone(),
                reason: format!("it does not list {id}"),
            })?;
        let document = self.object(&published.document)?;
        let record: ArtifactRecord =
            serde_json::from_slice(&document).map_err(|e| RemoteError::BadManifest {
                url: url.clone(),
                reason: format!("its artifact document does not parse: {e}"),
            })?;
        if record.id != *id || record.root != published.root {
            return Err(RemoteError::BadManifest {
                url,
                reason: format!(
                    "its artifact document describes {} with root {}, not {id} with root {}",
                    record.id, record.root, published.root
                ),
            });
        }
        Ok(Some(Entry {
            record,
            chunked: manifest.chunked,
        }))
    }
}

/// A verified entry of a published directory.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The artifact document (id and root checked against the signed entry).
    pub record: ArtifactRecord,
    /// Chunked file digest → chunk table digest, for this artifact's large files.
    pub chunked: BTreeMap<Digest, Digest>,
}

/// Imports the closure of `ids` from `source` into `store`, trusting only entries signed by
/// `key` (verification and order in the module docs).
pub fn copy_from(
    store: &Store,
    source: &CacheSource,
    key: &PublicKey,
    ids: &[ArtifactId],
) -> Result<CopyReport, RemoteError> {
    let _writer = store.writer_lock()?;
    let mut report = CopyReport::default();
    // The closure from the entries, imports first (depth-first post-order, as `closure`).
    let mut visited = HashSet::new();
    let mut order: Vec<Entry> = Vec::new();
    let mut stack: Vec<(ArtifactId, Option<Entry>)> = ids.iter().rev().map(|id| (id.clone(), None)).collect();
    while let Some((id, entry)) = stack.pop() {
        if let Some(entry) = entry {
            order.push(entry);
            continue;
        }
        if !visited.insert(id.clone()) {
            continue;
        }
        if store.committed_artifact(&id)?.is_some() {
            report.present.push(id);
            continue;
        }
        let entry = source
            .lookup(&id, key)?
            .ok_or_else(|| RemoteError::NotPublished {
                id: id.clone(),
                location: source.location(),
                path: entry_path(&id),
            })?;
        let imports = entry.record.imports();
        stack.push((id, Some(entry)));
        stack.extend(imports.into_iter().rev().map(|i| (i, None)));
    }

    let blobs = store.blobs();
    let objects = store.objects();
    let batch = objects.batch();
    let mut ingested: Vec<Vec<IngestedObject>> = Vec::with_capacity(order.len());
    for entry in &order {
        let mut objects = Vec::new();
        // Trees first (they name the files); a tree already here is read locally.
        let mut files = BTreeSet::new();
        let mut pending = vec![entry.record.root];
        let mut seen = HashSet::new();
        while let Some(digest) = pending.pop() {
            if !seen.insert(digest) {
                continue;
            }
            let bytes = if blobs.has(&digest)? {
                blobs.read(&digest)?
            } else {
                let bytes = source.object(&digest)?;
                objects.push(IngestedObject {
                    outcome: batch.put_bytes(&bytes)?,
                    kind: ObjectKind::Tree,
                });
                bytes
            };
            let tree = Tree::decode(&digest, &bytes).map_err(crate::store::StoreError::from)?;
            for child in tree.entries() {
                match &child.node {
                    Node::Directory { digest } => pending.push(*digest),
                    Node::File { digest, .. } => {
                        files.insert(*digest);
                    }
                    Node::Symlink { .. } => {}
                }
            }
        }
        let mut wanted: Vec<Digest> = files.into_iter().collect();
        wanted.extend(entry.record.build_log);
        let fetched = wanted
            .par_iter()
            .map(|digest| -> Result<Option<IngestedObject>, RemoteError> {
                if blobs.has(digest)? {
                    return Ok(None);
                }
                let content = source.file(digest, entry.chunked.get(digest))?;
                Ok(Some(IngestedObject {
                    outcome: batch.put_bytes(&content)?,
                    kind: ObjectKind::Blob,
                }))
            })
            .collect::<Result<Vec<_>, _>>()?;
        objects.extend(fetched.into_iter().flatten());
        ingested.push(objects);
    }
    let stored = batch.commit()?;
    report.written = stored.len() as u64;
    report.written_bytes = stored.iter().map(|o| o.stored_size).sum();
    for (entry, objects) in order.iter().zip(&ingested) {
        store.register(&entry.record, objects)?;
        report.artifacts.push(entry.record.id.clone());
    }
    Ok(report)
}
