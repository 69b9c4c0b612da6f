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
use crate::artifact::ArtifactRecord;
use crate::blob::{BlobService, Codec};
use crate::hash::Digest;
use crate::profile::ProfileDoc;
use crate::scratch::{fsync_dir, syncfs};
use crate::store::Store;
use crate::store::StoreError;
use crate::tree::{Node, TreeWalker};
use crate::IoContext;

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
    let serial = next_serial(&manifest_path);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut manifest = Manifest::new(serial, now);

    let profiles = selected_profiles(store, options)?;
    let records = selected_artifacts(store, options, &profiles)?;
    let walk = reachable(store, &records, &profiles)?;
    manifest.chunked = put_contents(store, &writer, &walk)?;
    let chunked_files = manifest.chunked.len() as u64;
    put_artifact_documents(&writer, &records, &mut manifest)?;
    let mut report_profiles = BTreeMap::new();
    for profile in &profiles {
        let (published, prefetch_entries) = put_profile(store, &writer, profile)?;
        manifest.profiles.insert(profile.name.clone(), published);
        report_profiles.insert(profile.name.clone(), prefetch_entries);
    }

    let objects = writer.seen.lock().unwrap().len() as u64;
    crate::crashpoint::hit("publish.staged");
    let (written, written_bytes) = writer.commit()?;
    crate::crashpoint::hit("publish.objects-durable");
    write_manifest(dest, &manifest_path, &manifest.sign(key))?;
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

/// The serial after that of the manifest at `manifest_path` (1 for a first publish).
fn next_serial(manifest_path: &Path) -> u64 {
    match fs::read(manifest_path) {
        Ok(bytes) => Manifest::peek_serial(&bytes).unwrap_or(0) + 1,
        Err(_) => 1,
    }
}

/// A profile to publish: its name, current document digest and document.
struct SelectedProfile {
    name: String,
    document: Digest,
    doc: ProfileDoc,
}

/// The current generation of each profile `options` names (every profile by default).
fn selected_profiles(store: &Store, options: &PublishOptions) -> Result<Vec<SelectedProfile>, RemoteError> {
    let names = match &options.profiles {
        Some(names) => names.clone(),
        None => store.profiles().names()?,
    };
    let mut profiles = Vec::with_capacity(names.len());
    for name in names {
        let generation = store.profiles().require(&name)?;
        let doc = store.profiles().doc(&generation.document)?;
        profiles.push(SelectedProfile {
            name,
            document: generation.document,
            doc,
        });
    }
    Ok(profiles)
}

/// The artifacts to publish: every artifact, or with named profiles only those they use.
fn selected_artifacts(
    store: &Store,
    options: &PublishOptions,
    profiles: &[SelectedProfile],
) -> Result<Vec<ArtifactRecord>, RemoteError> {
    let wanted: Option<HashSet<_>> = options.profiles.as_ref().map(|_| {
        profiles
            .iter()
            .flat_map(|p| p.doc.artifacts.iter().map(|a| a.id.clone()))
            .collect()
    });
    Ok(store
        .artifacts()?
        .into_iter()
        .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.id)))
        .collect())
}

/// Every tree and file reachable from the artifacts and from the profiles' roots.
fn reachable<'a>(
    store: &'a Store,
    records: &[ArtifactRecord],
    profiles: &[SelectedProfile],
) -> Result<Walk<'a>, RemoteError> {
    let mut walk = Walk::new(store.blobs().as_ref());
    for record in records {
        walk.tree(&record.root)?;
    }
    // Profile roots whose artifacts were not listed (cannot happen for a consistent store, but
    // a profile must never reference a tree that is not published).
    for profile in profiles {
        for artifact in &profile.doc.artifacts {
            walk.tree(&artifact.root)?;
            // The tree a profile shows when rules apply (what the view reads).
            walk.tree(&artifact.shown_root())?;
        }
    }
    Ok(walk)
}

/// Stages file contents (small ones as objects, large ones as chunks plus a table) and trees;
/// returns the chunk table of each chunked file.
fn put_contents(
    store: &Store,
    writer: &Writer,
    walk: &Walk<'_>,
) -> Result<BTreeMap<Digest, Digest>, RemoteError> {
    let chunked = writer.put_files(store, walk)?;
    walk.trees()
        .par_iter()
        .try_for_each(|digest| writer.put_local(store, digest, Phase::Data))?;
    Ok(chunked.into_iter().collect())
}

/// Stages each artifact's document and lists it in the manifest.
fn put_artifact_documents(
    writer: &Writer,
    records: &[ArtifactRecord],
    manifest: &mut Manifest,
) -> Result<(), RemoteError> {
    for record in records {
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
    Ok(())
}

/// Stages a profile's document, the pack of the trees it shows and its prefetch list; returns
/// its manifest entry and the number of prefetch entries.
fn put_profile(
    store: &Store,
    writer: &Writer,
    profile: &SelectedProfile,
) -> Result<(PublishedProfile, usize), RemoteError> {
    let blobs = store.blobs();
    writer.put_local(store, &profile.document, Phase::Data)?;
    let mut own = Walk::new(blobs.as_ref());
    for artifact in &profile.doc.artifacts {
        own.tree(&artifact.shown_root())?;
    }
    let mut packed = Vec::with_capacity(own.trees().len());
    let mut order: Vec<_> = own.trees().iter().copied().collect();
    order.sort();
    for digest in order {
        packed.push((digest, blobs.read(&digest)?));
    }
    let trees = writer.put_bytes(&encode_pack(&packed), Phase::Index)?;
    let (prefetch, prefetch_entries) = put_prefetch_list(store, writer, &profile.name, &own)?;
    let published = PublishedProfile {
        document: profile.document,
        trees: Some(trees),
        prefetch,
    };
    Ok((published, prefetch_entries))
}

/// Stages the recorded trace of profile `name`, keeping only digests of `own` (the profile's
/// trees and files); returns its digest (none without a trace) and its length.
fn put_prefetch_list(
    store: &Store,
    writer: &Writer,
    name: &str,
    own: &Walk<'_>,
) -> Result<(Option<Digest>, usize), RemoteError> {
    let trace_path = store.root().join("traces").join(format!("{name}.trace"));
    let Some(list) = super::trace::read_trace(&trace_path)? else {
        return Ok((None, 0));
    };
    let in_profile: Vec<Digest> = list
        .into_iter()
        .filter(|d| own.files.contains_key(d) || own.trees().contains(d))
        .collect();
    let text: String = in_profile.iter().map(|d| format!("{d}\n")).collect();
    let digest = writer.put_bytes(text.as_bytes(), Phase::Index)?;
    Ok((Some(digest), in_profile.len()))
}

/// The commit point: replaces `manifest_path` with the signed manifest `bytes` (temp in
/// `dest/.tmp`, fsync, rename, fsync of `dest`).
fn write_manifest(dest: &Path, manifest_path: &Path, bytes: &[u8]) -> Result<(), RemoteError> {
    let tmp = dest.join(".tmp").join(format!("manifest-{}", std::process::id()));
    File::create(&tmp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes).and_then(|_| f.sync_all()))
        .and_then(|_| fs::rename(&tmp, manifest_path))
        .inspect(|_| crate::crashpoint::hit("publish.manifest"))
        .and_then(|_| fsync_dir(dest))
        .io_context("write", manifest_path)?;
    Ok(())
}

/// Trees and files reachable from some roots.
#[derive(Debug)]
pub(super) struct Walk<'a> {
    walker: TreeWalker<'a>,
    pub(super) files: std::collections::HashMap<Digest, u64>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(blobs: &'a dyn BlobService) -> Walk<'a> {
        Walk {
            walker: TreeWalker::new(blobs),
            files: std::collections::HashMap::new(),
        }
    }

    pub(super) fn tree(&mut self, root: &Digest) -> Result<(), RemoteError> {
        let files = &mut self.files;
        self.walker.walk(root, |visit| {
            let tree = visit.tree.map_err(StoreError::from)?;
            for entry in tree.entries() {
                if let Node::File { digest, size, .. } = &entry.node {
                    files.insert(*digest, *size);
                }
            }
            Ok(())
        })
    }

    pub(super) fn trees(&self) -> &HashSet<Digest> {
        self.walker.visited()
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
            fs::create_dir_all(dir).io_context("create directory", dir)?;
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
        fs::write(&tmp, bytes).io_context("write", &tmp)?;
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
            let compressed =
                zstd::bulk::compress(raw, ZSTD_LEVEL).io_context("compress", self.tmp.clone())?;
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
        let blobs = store.objects();
        let object = blobs
            .locate(digest)?
            .ok_or_else(|| crate::blob::BlobError::NotFound {
                digest: *digest,
                location: blobs.objects_dir().to_path_buf(),
            })?;
        match object.codec {
            Codec::Zstd => {
                blobs.verify(&object)?;
                let bytes = fs::read(&object.path).io_context("read", &object.path)?;
                self.stage(digest, &bytes, phase)
            }
            Codec::Raw => {
                let raw = blobs.read(digest)?;
                let compressed =
                    zstd::bulk::compress(&raw, ZSTD_LEVEL).io_context("compress", &object.path)?;
                self.stage(digest, &compressed, phase)
            }
        }
    }

    /// Publishes the files `walk` found, in parallel: small ones as objects, large ones as
    /// chunks plus a table. Returns (file digest, chunk table digest) of the chunked ones.
    pub(super) fn put_files(
        &self,
        store: &Store,
        walk: &Walk<'_>,
    ) -> Result<Vec<(Digest, Digest)>, RemoteError> {
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
    fn put_chunked(&self, store: &Store, digest: &Digest) -> Result<Digest, RemoteError> {
        let mut file = store.blobs().open(digest)?;
        let size = file.metadata().io_context("stat", "object")?.len();
        let mut chunks = Vec::with_capacity(size.div_ceil(CHUNK_SIZE) as usize);
        let mut buf = vec![0u8; CHUNK_SIZE as usize];
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                match file.read(&mut buf[filled..]).io_context("read", "object")? {
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
        syncfs(&self.tmp).io_context("sync", &self.tmp)?;
        pending.sort_by_key(|(phase, ..)| *phase);
        let mut bytes = 0;
        for (_, tmp, dest, len) in &pending {
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent).io_context("create directory", parent)?;
            }
            fs::rename(tmp, dest).io_context("rename into place", dest)?;
            crate::crashpoint::hit("publish.object-renamed");
            bytes += len;
        }
        syncfs(&self.objects).io_context("sync", &self.objects)?;
        Ok((pending.len() as u64, bytes))
    }
}
