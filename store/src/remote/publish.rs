//! `hdist publish`: the store as a static, immutable directory (layout in the module docs of
//! [`crate::remote`]).
//!
//! Incremental: an object already under `objects/` is never read or written again, and a
//! chunked file whose chunk table is there is not even decompressed. Atomic: new objects are
//! written under `.tmp/`, made durable with one `syncfs`, renamed into place (chunks and file
//! contents before the tables and packs that name them), synced again, and only then is
//! `manifest.json` replaced (temp → fsync → rename → fsync of the directory). A reader sees the
//! old manifest with all of its objects, or the new one with all of its objects.
//!
//! ```text
//! <store>/traces/<profile>.trace    recorded by `hdist trace record`; shipped as the profile's
//!                                   prefetch list (only digests that are files of the profile)
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::chunks::{encode_pack, ChunkTable};
use super::manifest::{Manifest, PublishedArtifact, PublishedProfile, SecretKey};
use super::{object_path, RemoteError, CHUNK_SIZE, CHUNK_THRESHOLD};
use crate::blob::{BlobService, Codec};
use crate::hash::Digest;
use crate::scratch::{fsync_dir, syncfs};
use crate::store::Store;
use crate::tree::{Node, Tree};

/// zstd level for objects that are compressed at publish time (raw local objects, chunks,
/// documents): a higher level than ingest, since it is paid once and saves every node.
const ZSTD_LEVEL: i32 = 6;

/// What to publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// Only these profiles (and the artifacts they use); `None`: every profile and artifact.
    pub profiles: Option<Vec<String>>,
}

/// What a publish did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PublishReport {
    /// Serial of the new manifest.
    pub serial: u64,
    /// Objects the published directory references.
    pub objects: u64,
    /// Objects this run wrote (the rest were there).
    pub written: u64,
    /// Bytes this run wrote under `objects/`.
    pub written_bytes: u64,
    /// Files published as chunks.
    pub chunked_files: u64,
    /// Profiles published, with the number of prefetch entries each ships.
    pub profiles: BTreeMap<String, usize>,
}

/// Publishes `store` into `dest`, signing the manifest with `key`.
pub fn publish(
    store: &Store,
    dest: &Path,
    key: &SecretKey,
    options: &PublishOptions,
) -> Result<PublishReport, RemoteError> {
    // Shared GC lock while the store is read: GC waits, so nothing publish walks is swept
    // under it (publish writes only to `dest`, so it is a reader to the store).
    let _no_gc = store.writer_lock()?;
    let writer = Writer::new(dest)?;
    let manifest_path = dest.join("manifest.json");
    let serial = match fs::read(&manifest_path) {
        Ok(bytes) => Manifest::peek_serial(&bytes).unwrap_or(0) + 1,
        Err(_) => 1,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut manifest = Manifest::new(serial, now);

    // Which profiles and artifacts.
    let names = match &options.profiles {
        Some(names) => names.clone(),
        None => store.profile_names()?,
    };
    let mut docs = Vec::new();
    for name in &names {
        let generation = store.require_profile(name)?;
        let doc = store.profile_doc(&generation.document)?;
        docs.push((name.clone(), generation.document, doc));
    }
    let wanted: Option<HashSet<_>> = options.profiles.as_ref().map(|_| {
        docs.iter()
            .flat_map(|(_, _, doc)| doc.artifacts.iter().map(|a| a.id.clone()))
            .collect()
    });
    let records: Vec<_> = store
        .artifacts()?
        .into_iter()
        .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.id)))
        .collect();

    // Every tree and file reachable from the artifacts.
    let blobs = store.blobs();
    let mut walk = Walk::default();
    for record in &records {
        walk.tree(blobs.as_ref(), &record.root)?;
    }
    // Profile roots whose artifacts were not listed (cannot happen for a consistent store, but
    // a profile must never reference a tree that is not published).
    for (_, _, doc) in &docs {
        for artifact in &doc.artifacts {
            walk.tree(blobs.as_ref(), &artifact.root)?;
            // The tree a profile shows when rules apply (what the view reads).
            walk.tree(blobs.as_ref(), &artifact.shown_root())?;
        }
    }

    // File contents: small ones as objects, large ones as chunks plus a table.
    let chunked = writer.put_files(store, &walk)?;
    let chunked_files = chunked.len() as u64;
    manifest.chunked = chunked.into_iter().collect();
    walk.trees
        .par_iter()
        .try_for_each(|digest| writer.put_local(store, digest, Phase::Data))?;

    // Artifact documents.
    for record in &records {
        let bytes = serde_json::to_vec(record).expect("records serialise");
        let document = writer.put_bytes(&bytes, Phase::Data)?;
        manifest.artifacts.insert(
            record.id.clone(),
            PublishedArtifact {
                root: record.root,
                document,
            },
        );
    }

    // Profiles: document, tree pack, prefetch list.
    let mut report_profiles = BTreeMap::new();
    for (name, document, doc) in &docs {
        writer.put_local(store, document, Phase::Data)?;
        let mut own = Walk::default();
        for artifact in &doc.artifacts {
            own.tree(blobs.as_ref(), &artifact.shown_root())?;
        }
        let mut packed = Vec::with_capacity(own.trees.len());
        let mut order: Vec<_> = own.trees.iter().copied().collect();
        order.sort();
        for digest in order {
            packed.push((digest, blobs.read(&digest)?));
        }
        let trees = writer.put_bytes(&encode_pack(&packed), Phase::Index)?;
        let trace_path = store.root().join("traces").join(format!("{name}.trace"));
        let prefetch = match super::trace::read_trace(&trace_path)? {
            Some(list) => {
                let in_profile: Vec<Digest> = list
                    .into_iter()
                    .filter(|d| own.files.contains_key(d) || own.trees.contains(d))
                    .collect();
                report_profiles.insert(name.clone(), in_profile.len());
                let text: String = in_profile.iter().map(|d| format!("{d}\n")).collect();
                Some(writer.put_bytes(text.as_bytes(), Phase::Index)?)
            }
            None => {
                report_profiles.insert(name.clone(), 0);
                None
            }
        };
        manifest.profiles.insert(
            name.clone(),
            PublishedProfile {
                document: *document,
                trees: Some(trees),
                prefetch,
            },
        );
    }

    let objects = writer.seen.lock().unwrap().len() as u64;
    crate::crashpoint::hit("publish.staged");
    let (written, written_bytes) = writer.commit()?;
    crate::crashpoint::hit("publish.objects-durable");
    // The commit point.
    let tmp = dest.join(".tmp").join(format!("manifest-{}", std::process::id()));
    let bytes = manifest.sign(key);
    let result = File::create(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&tmp, &manifest_path))
        .inspect(|_| crate::crashpoint::hit("publish.manifest"))
        .and_then(|_| fsync_dir(dest));
    result.map_err(RemoteError::io("write", &manifest_path))?;
    super::copy::write_entries(store, dest, &manifest, key)?;
    Ok(PublishReport {
        serial,
        objects,
        written,
        written_bytes,
        chunked_files,
        profiles: report_profiles,
    })
}

/// Trees and files reachable from some roots.
#[derive(Debug, Default)]
pub(super) struct Walk {
    pub(super) trees: HashSet<Digest>,
    pub(super) files: std::collections::HashMap<Digest, u64>,
}

impl Walk {
    pub(super) fn tree(&mut self, blobs: &dyn BlobService, root: &Digest) -> Result<(), RemoteError> {
        let mut stack = vec![*root];
        while let Some(digest) = stack.pop() {
            if !self.trees.insert(digest) {
                continue;
            }
            let tree = Tree::load(blobs, &digest).map_err(crate::store::StoreError::from)?;
            for entry in tree.entries() {
                match &entry.node {
                    Node::Directory { digest } => stack.push(*digest),
                    Node::File { digest, size, .. } => {
                        self.files.insert(*digest, *size);
                    }
                    Node::Symlink { .. } => {}
                }
            }
        }
        Ok(())
    }
}

/// Renames happen in phases so that nothing is visible before what it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    Data,
    Index,
}

#[derive(Debug)]
pub(super) struct Writer {
    objects: PathBuf,
    tmp: PathBuf,
    seen: Mutex<HashSet<Digest>>,
    pending: Mutex<Vec<(Phase, PathBuf, PathBuf, u64)>>,
    counter: AtomicU64,
}

impl Writer {
    pub(super) fn new(dest: &Path) -> Result<Writer, RemoteError> {
        let writer = Writer::staging_in(dest, dest.join(".tmp"))?;
        // Leftovers of an interrupted publish are garbage: nothing refers to them.
        if let Ok(entries) = fs::read_dir(&writer.tmp) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(writer)
    }

    /// A writer staging in a directory of its own under `.tmp/` and sweeping nothing, so that
    /// several writers (copies from several build nodes) can fill `dest` at once. The caller
    /// removes [`Writer::staging_dir`] after [`Writer::commit`].
    pub(super) fn new_private(dest: &Path) -> Result<Writer, RemoteError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = dest
            .join(".tmp")
            .join(format!("writer-{}-{nanos}", std::process::id()));
        Writer::staging_in(dest, tmp)
    }

    fn staging_in(dest: &Path, tmp: PathBuf) -> Result<Writer, RemoteError> {
        let objects = dest.join("objects");
        for dir in [&objects, &tmp] {
            fs::create_dir_all(dir).map_err(RemoteError::io("create directory", dir))?;
        }
        Ok(Writer {
            objects,
            tmp,
            seen: Mutex::new(HashSet::new()),
            pending: Mutex::new(Vec::new()),
            counter: AtomicU64::new(0),
        })
    }

    /// Where this writer stages objects before [`Writer::commit`].
    pub(super) fn staging_dir(&self) -> &Path {
        &self.tmp
    }

    fn final_path(&self, digest: &Digest) -> PathBuf {
        self.objects
            .parent()
            .unwrap_or(Path::new("."))
            .join(object_path(digest))
    }

    /// True if the object needs writing (first time seen and not published before).
    fn claim(&self, digest: &Digest) -> bool {
        self.seen.lock().unwrap().insert(*digest) && !self.final_path(digest).exists()
    }

    fn stage(&self, digest: &Digest, bytes: &[u8], phase: Phase) -> Result<(), RemoteError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp.join(format!("{n}-{}", digest.to_hex()));
        fs::write(&tmp, bytes).map_err(RemoteError::io("write", &tmp))?;
        self.pending
            .lock()
            .unwrap()
            .push((phase, tmp, self.final_path(digest), bytes.len() as u64));
        Ok(())
    }

    /// Publishes raw bytes as an object; returns their digest.
    pub(super) fn put_bytes(&self, raw: &[u8], phase: Phase) -> Result<Digest, RemoteError> {
        let digest = Digest::of(raw);
        if self.claim(&digest) {
            let compressed = zstd::bulk::compress(raw, ZSTD_LEVEL)
                .map_err(RemoteError::io("compress", self.tmp.clone()))?;
            self.stage(&digest, &compressed, phase)?;
        }
        Ok(digest)
    }

    /// Publishes a local object: zstd objects are copied as they are (already one frame with
    /// the content size), raw ones are compressed. Local objects are verified first, so a
    /// corrupt store never publishes wrong bytes.
    pub(super) fn put_local(&self, store: &Store, digest: &Digest, phase: Phase) -> Result<(), RemoteError> {
        if !self.claim(digest) {
            return Ok(());
        }
        let blobs = store.blobs();
        let object = blobs
            .locate(digest)?
            .ok_or_else(|| crate::blob::BlobError::NotFound {
                digest: *digest,
                location: blobs.objects_dir().to_path_buf(),
            })?;
        match object.codec {
            Codec::Zstd => {
                blobs.verify(&object)?;
                let bytes = fs::read(&object.path).map_err(RemoteError::io("read", &object.path))?;
                self.stage(digest, &bytes, phase)
            }
            Codec::Raw => {
                let raw = blobs.read(digest)?;
                let compressed = zstd::bulk::compress(&raw, ZSTD_LEVEL)
                    .map_err(RemoteError::io("compress", &object.path))?;
                self.stage(digest, &compressed, phase)
            }
        }
    }

    /// Publishes the files `walk` found, in parallel: small ones as objects, large ones as
    /// chunks plus a table. Returns (file digest, chunk table digest) of the chunked ones.
    pub(super) fn put_files(&self, store: &Store, walk: &Walk) -> Result<Vec<(Digest, Digest)>, RemoteError> {
        let files: Vec<(Digest, u64)> = walk.files.iter().map(|(d, s)| (*d, *s)).collect();
        Ok(files
            .par_iter()
            .map(
                |(digest, size)| -> Result<Option<(Digest, Digest)>, RemoteError> {
                    if *size > CHUNK_THRESHOLD {
                        Ok(Some((*digest, self.put_chunked(store, digest)?)))
                    } else {
                        self.put_local(store, digest, Phase::Data)?;
                        Ok(None)
                    }
                },
            )
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect())
    }

    /// Publishes a large file as chunks and a table; returns the table's digest.
    pub(super) fn put_chunked(&self, store: &Store, digest: &Digest) -> Result<Digest, RemoteError> {
        let mut file = store.blobs().open(digest)?;
        let size = file.metadata().map_err(RemoteError::io("stat", "object"))?.len();
        let mut chunks = Vec::with_capacity(size.div_ceil(CHUNK_SIZE) as usize);
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                match file
                    .read(&mut buf[filled..])
                    .map_err(RemoteError::io("read", "object"))?
                {
                    0 => break,
                    n => filled += n,
                }
            }
            if filled == 0 {
                break;
            }
            chunks.push(self.put_bytes(&buf[..filled], Phase::Data)?);
        }
        let table = ChunkTable {
            file_size: size,
            chunk_size: CHUNK_SIZE,
            chunks,
        };
        self.put_bytes(&table.encode(), Phase::Index)
    }

    /// Makes every staged object durable and visible; returns (objects, bytes) written.
    pub(super) fn commit(self) -> Result<(u64, u64), RemoteError> {
        let mut pending = self.pending.into_inner().unwrap();
        if pending.is_empty() {
            return Ok((0, 0));
        }
        syncfs(&self.tmp).map_err(RemoteError::io("sync", &self.tmp))?;
        pending.sort_by_key(|(phase, ..)| *phase);
        let mut bytes = 0;
        for (_, tmp, dest, len) in &pending {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).map_err(RemoteError::io("create directory", parent))?;
            }
            fs::rename(tmp, dest).map_err(RemoteError::io("rename into place", dest))?;
            crate::crashpoint::hit("publish.object-renamed");
            bytes += len;
        }
        syncfs(&self.objects).map_err(RemoteError::io("sync", &self.objects))?;
        Ok((pending.len() as u64, bytes))
    }
}
