//! [`CachedBlobService`]: the one layer that keeps verified, decompressed copies of objects on
//! local disk, bounded in size, in front of any upstream [`BlobService`]. Two places use it,
//! each with its [`CacheLayout`]:
//!
//! - **A node's cache of a remote store** (`hdist mount --remote --cache DIR`), which keeps
//!   everything it fetched (trees and documents too):
//!
//! ```text
//! <cache>/
//! ├── objects/ab/ab12…     decompressed content (files, trees, documents, chunks), written
//! │                        only after it matched its digest; mtime = last use (LRU)
//! ├── manifests/<id>.json  the last manifest whose signature verified, per mirror set, so a
//! │                        node restarted while the server is down still mounts
//! └── tmp/<random>-<n>     downloads being assembled (renamed into objects/ when verified)
//! ```
//!
//! - **A local store's copies** (what [`crate::store::Store::blobs`] reads through): a copy
//!   under `<store>/cache/blobs/ab/ab12…` of each compressed object that was opened (for
//!   `pread`, mmap and FUSE passthrough), assembled in the process's scratch space and given
//!   the store's modes. An object stored raw needs no copy: its own file is served in place
//!   ([`BlobService::open_in_place`]), and `has`, `size` and `read` go straight to the objects
//!   ([`BlobService::is_local`]).
//!
//! Both bound the bytes of their copies and, past the bound, remove the oldest by mtime down to
//! 90 % of it ([`fanout::evict_oldest`]). A node's cache refreshes a copy's mtime when it is
//! used (at most once a minute), so the least recently used go first. A store's copies are not
//! touched, so the oldest made go first: a touch changes the copy's ctime and so its stamp,
//! which makes every other process holding the copy re-hash all of it at its next check (a
//! mount checks after each READ), and a store is read by many processes at once (mounts,
//! `hdist cat`, exports); besides, a store's copy evicted early is made again from the local
//! object at decompression speed, where a node's costs a download.
//!
//! Several processes (even of different users, given permissions) may share one cache: every
//! file reaches the copies directory by an atomic rename of identical bytes, so concurrent fills
//! of the same object are harmless, and eviction only unlinks (open descriptors stay valid). A
//! node's cache takes its modes from the umask, so users who share it make it group-writable by
//! theirs. A copy is re-hashed the first time a process uses it and whenever its stamp (inode,
//! size, mtime, ctime) changed since (see [`crate::blob::copies`]), so a torn write from a
//! crash or a tampered copy is dropped and made again, never served; the process's own LRU
//! touches take a new stamp. [`CachedBlobService::verify_copies`] (`hdist store verify`) and
//! [`CachedBlobService::verify_cache`] (`hdist store verify --cache DIR`, no mount needed)
//! re-hash every copy.
//!
//! Large files published as chunks are never fetched whole by [`BlobService::read_at`]: only
//! the chunks a read touches are fetched (and cached as objects of their own).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use super::chunks::ChunkTable;
use crate::blob::copies::{check_copies, drop_copy, Checked, TrustedCopies};
use crate::blob::{fanout, BlobError, BlobService, CopiesReport, VerifiedCopy};
use crate::hash::{Digest, DigestWriter};
use crate::modes;
use crate::scratch::Scratch;
use crate::{IoContext, IoError};

/// A use refreshes a node cache's copy's mtime only if it is older than this (one syscall per
/// object per minute, not per open).
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Parallel fetches for prefetching and for assembling chunked files.
const FETCH_THREADS: usize = 16;
/// Default bound of a store's decompressed copies.
pub const STORE_COPIES_LIMIT: u64 = 8 << 30;

/// How the cache behaves.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// Bound on the bytes of the copies; beyond it the oldest are evicted.
    pub limit: u64,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions { limit: 4 << 30 }
    }
}

/// Where a cache keeps its copies and how it writes them (see the module docs).
#[derive(Debug)]
pub enum CacheLayout {
    /// A node's cache of a remote store in this directory: copies in `objects/`, assembled in
    /// `tmp/` under random names (what a killed process leaves there is swept after an hour),
    /// modes from the umask, copies touched on use (LRU).
    Node(PathBuf),
    /// The decompressed copies of the store at `root`, in `cache/blobs/`: assembled in
    /// `scratch` (the process's scratch space in that store), the store's modes, not touched
    /// on use (the oldest made are evicted first).
    Store {
        /// The store directory.
        root: PathBuf,
        /// This process's scratch space in the store.
        scratch: Arc<Scratch>,
    },
}

impl CacheLayout {
    fn root(&self) -> &Path {
        match self {
            CacheLayout::Node(root) | CacheLayout::Store { root, .. } => root,
        }
    }

    fn copies_dir(&self) -> PathBuf {
        match self {
            CacheLayout::Node(root) => root.join("objects"),
            CacheLayout::Store { root, .. } => root.join("cache").join("blobs"),
        }
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self {
            CacheLayout::Node(_) => fs::create_dir_all(dir),
            CacheLayout::Store { .. } => modes::create_dir_all(dir, modes::SHARED_DIR),
        }
    }

    fn create_file(&self, path: &Path) -> io::Result<File> {
        match self {
            CacheLayout::Node(_) => File::create(path),
            CacheLayout::Store { .. } => modes::create_file(path),
        }
    }

    /// Whether a use refreshes a copy's mtime (see the module docs for why only a node's).
    fn touches_on_use(&self) -> bool {
        matches!(self, CacheLayout::Node(_))
    }

    /// Creates the directories; sweeps a node's leftover downloads. Returns the copies
    /// directory.
    fn prepare(&self) -> Result<PathBuf, BlobError> {
        let copies = self.copies_dir();
        let mut dirs = vec![copies.clone()];
        if let CacheLayout::Node(root) = self {
            dirs.extend([root.join("tmp"), root.join("manifests")]);
        }
        for dir in &dirs {
            self.create_dir_all(dir).io_context("create directory", dir)?;
        }
        if let CacheLayout::Node(root) = self {
            sweep_tmp(&root.join("tmp"));
        }
        Ok(copies)
    }
}

/// One object being fetched by some thread; others wait for it instead of fetching it again.
#[derive(Debug, Default)]
struct InFlight {
    done: Mutex<Option<Result<(), String>>>,
    cond: Condvar,
}

/// Verified, decompressed copies on local disk in front of `upstream`.
#[derive(Debug)]
pub struct CachedBlobService {
    upstream: Arc<dyn BlobService>,
    // `upstream.is_local()`: `has`, `size` and `read` go straight to it.
    reads_through: bool,
    layout: CacheLayout,
    copies: PathBuf,
    options: CacheOptions,
    bytes: OnceLock<AtomicU64>,
    trusted: TrustedCopies,
    chunk_tables: RwLock<HashMap<Digest, Digest>>,
    inflight: Mutex<HashMap<Digest, Arc<InFlight>>>,
    counter: AtomicU64,
    fetched: AtomicUsize,
}

impl CachedBlobService {
    /// A node's cache in `root` (created if needed) in front of `upstream`
    /// ([`CacheLayout::Node`]).
    pub fn open(
        upstream: Arc<dyn BlobService>,
        root: &Path,
        options: CacheOptions,
    ) -> Result<CachedBlobService, BlobError> {
        CachedBlobService::with_layout(upstream, CacheLayout::Node(root.to_path_buf()), options)
    }

    /// A cache laid out as `layout` (its directories created if needed) in front of `upstream`.
    pub fn with_layout(
        upstream: Arc<dyn BlobService>,
        layout: CacheLayout,
        options: CacheOptions,
    ) -> Result<CachedBlobService, BlobError> {
        let copies = layout.prepare()?;
        Ok(CachedBlobService {
            reads_through: upstream.is_local(),
            upstream,
            layout,
            copies,
            options,
            bytes: OnceLock::new(),
            trusted: TrustedCopies::default(),
            chunk_tables: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            fetched: AtomicUsize::new(0),
        })
    }

    /// The directory the cache was opened in: a node's cache directory, or the store.
    pub fn root(&self) -> &Path {
        self.layout.root()
    }

    /// The directory holding the copies (fan-out layout, see [`fanout`]).
    pub fn copies_dir(&self) -> &Path {
        &self.copies
    }

    /// Objects this process fetched from upstream.
    pub fn fetched(&self) -> usize {
        self.fetched.load(Ordering::Relaxed)
    }

    /// Replaces the map of chunked files (file digest → chunk table digest); called with each
    /// newly verified manifest.
    pub fn set_chunk_tables(&self, tables: HashMap<Digest, Digest>) {
        *self.chunk_tables.write().unwrap() = tables;
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        fanout::path(&self.copies, digest)
    }

    /// Whether the object has a copy here (not verified).
    pub fn is_cached(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }

    /// The copy, hashed the first time this process uses it and then trusted while its stamp
    /// is unchanged (see [`crate::blob::copies`]); a copy that fails is removed.
    fn cached(&self, digest: &Digest) -> Option<VerifiedCopy> {
        let path = self.path(digest);
        let problem = match self.trusted.open(digest, &path) {
            Ok(Checked::Good(copy)) => {
                if self.layout.touches_on_use() && touch(copy.file()) {
                    self.trusted.restamp(&copy);
                }
                return Some(copy);
            }
            Ok(Checked::Missing) => return None,
            Ok(Checked::Bad { actual }) => format!("is damaged (it hashes to {actual})"),
            Err(e) => {
                self.trusted.forget(digest);
                format!("cannot be read ({e})")
            }
        };
        log::warn!(
            "copy {} of object {digest} {problem}; removing it and making it again",
            path.display()
        );
        let _ = fs::remove_file(&path);
        None
    }

    /// Re-hashes every copy. With `repair`, a bad copy is made again from upstream (verified
    /// on the way) or, if that fails, dropped; without, it is only reported. Copies are
    /// caches: re-making one loses nothing.
    pub fn verify_copies(&self, repair: bool) -> CopiesReport {
        check_copies(
            &self.copies,
            |name| Digest::from_hex(name).ok(),
            |path, digest| {
                self.trusted.forget(digest);
                if !repair {
                    return "left in place (repair re-makes it)".to_string();
                }
                let remade = self.produce(digest).and_then(|(tmp, _)| {
                    fs::rename(&tmp, path).map_err(|e| {
                        let _ = fs::remove_file(&tmp);
                        BlobError::from(IoError::new("rename into place", path, e))
                    })
                });
                match remade {
                    Ok(()) => "re-made from its verified object".to_string(),
                    Err(e) => drop_copy(path, &format!("it cannot be re-made: {e}")),
                }
            },
        )
    }

    /// Re-hashes every copy in the cache at `root` (no mount needed: `hdist store verify
    /// --cache`). With `repair`, bad copies are dropped (a mount fetches them again when they
    /// are next read); without, they are only reported.
    pub fn verify_cache(root: &Path, repair: bool) -> Result<CopiesReport, BlobError> {
        let objects = root.join("objects");
        if !objects.is_dir() {
            return Err(IoError::new(
                "open the remote cache",
                objects,
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "no objects/ directory: not a cache made by `hdist mount --remote --cache`",
                ),
            )
            .into());
        }
        Ok(check_copies(
            &objects,
            |name| Digest::from_hex(name).ok(),
            |path, _| {
                if repair {
                    drop_copy(path, "a mount fetches it again when it is next read")
                } else {
                    "left in place (repair drops it)".to_string()
                }
            },
        ))
    }

    fn counter(&self) -> &AtomicU64 {
        self.bytes
            .get_or_init(|| AtomicU64::new(fanout::total_len(&self.copies)))
    }

    /// A new path on the copies' file system to assemble a copy at (not created).
    fn fresh_tmp(&self) -> PathBuf {
        match &self.layout {
            CacheLayout::Node(root) => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                // Random, not just pid + counter: mounts in other pid namespaces share the cache.
                let name = format!("{}-{n}", crate::scratch::random_token());
                root.join("tmp").join(name)
            }
            CacheLayout::Store { scratch, .. } => scratch.fresh_path("cache"),
        }
    }

    /// Moves a verified temp file into place and accounts for it.
    fn install(&self, digest: &Digest, tmp: &Path, len: u64) -> Result<VerifiedCopy, BlobError> {
        let dest = self.path(digest);
        if let Some(parent) = dest.parent() {
            self.layout
                .create_dir_all(parent)
                .io_context("create directory", parent)?;
        }
        fs::rename(tmp, &dest).io_context("rename into cache", &dest)?;
        // Opened before eviction runs: even if the new copy is evicted at once, this handle
        // keeps reading it.
        let file = File::open(&dest).io_context("open", &dest)?;
        let copy = self
            .trusted
            .trust(digest, &dest, file)
            .io_context("stat", &dest)?;
        let total = self.counter().fetch_add(len, Ordering::Relaxed) + len;
        if total > self.options.limit {
            self.evict();
        }
        Ok(copy)
    }

    /// Adds content that was verified elsewhere (a tree pack's entries). Checks the digest
    /// again: this is the last gate before the cache.
    pub fn insert(&self, digest: &Digest, bytes: &[u8]) -> Result<(), BlobError> {
        if self.is_cached(digest) {
            return Ok(());
        }
        let actual = Digest::of(bytes);
        if actual != *digest {
            return Err(BlobError::Corrupt {
                digest: *digest,
                path: PathBuf::from("inserted content"),
                actual,
            });
        }
        let tmp = self.fresh_tmp();
        self.layout
            .create_file(&tmp)
            .and_then(|mut file| file.write_all(bytes))
            .io_context("write", &tmp)?;
        self.install(digest, &tmp, bytes.len() as u64).map(drop)
    }

    /// The object as a verified file: its copy, the upstream's own file if it serves one in
    /// place, or a new copy (made once, however many threads ask).
    fn ensure(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        loop {
            if let Some(copy) = self.cached(digest) {
                return Ok(copy);
            }
            if let Some(in_place) = self.upstream.open_in_place(digest)? {
                return Ok(in_place);
            }
            let (flight, leader) = {
                let mut map = self.inflight.lock().unwrap();
                match map.get(digest) {
                    Some(f) => (f.clone(), false),
                    None => {
                        let f = Arc::new(InFlight::default());
                        map.insert(*digest, f.clone());
                        (f, true)
                    }
                }
            };
            if !leader {
                let mut done = flight.done.lock().unwrap();
                while done.is_none() {
                    done = flight.cond.wait(done).unwrap();
                }
                if let Some(Err(reason)) = done.as_ref() {
                    return Err(BlobError::object_io("make a local copy of", digest)(
                        io::Error::other(reason.clone()),
                    ));
                }
                continue;
            }
            let result = self.fill(digest);
            *flight.done.lock().unwrap() = Some(result.as_ref().map(drop).map_err(|e| e.to_string()));
            flight.cond.notify_all();
            self.inflight.lock().unwrap().remove(digest);
            return result;
        }
    }

    fn table_of(&self, digest: &Digest) -> Result<Option<ChunkTable>, BlobError> {
        let Some(table) = self.chunk_tables.read().unwrap().get(digest).copied() else {
            return Ok(None);
        };
        let bytes = self.read(&table)?;
        ChunkTable::decode(&bytes)
            .map(Some)
            .ok_or_else(|| BlobError::Undecodable {
                digest: table,
                path: PathBuf::from("chunk table"),
                source: io::Error::new(io::ErrorKind::InvalidData, "not a chunk table"),
            })
    }

    /// Makes the object's copy.
    fn fill(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        let (tmp, len) = self.produce(digest)?;
        self.install(digest, &tmp, len)
    }

    /// A verified temp file holding the object (assembled from its chunks, or streamed from
    /// upstream) and its length, for [`Self::install`] to move into place.
    fn produce(&self, digest: &Digest) -> Result<(PathBuf, u64), BlobError> {
        if let Some(table) = self.table_of(digest)? {
            return self.assemble(digest, &table);
        }
        // Streamed from upstream straight into the temp file: memory stays bounded whatever
        // the object's (or a hostile body's) size.
        let tmp = self.fresh_tmp();
        let mut out = self.layout.create_file(&tmp).io_context("create", &tmp)?;
        let copied = self.upstream.copy_to(digest, &mut out);
        drop(out);
        match copied {
            Ok(len) => {
                self.fetched.fetch_add(1, Ordering::Relaxed);
                Ok((tmp, len))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Builds a chunked file from its chunks (fetched in parallel), checking the whole.
    fn assemble(&self, digest: &Digest, table: &ChunkTable) -> Result<(PathBuf, u64), BlobError> {
        self.fetch_all(&table.chunks)?;
        let tmp = self.fresh_tmp();
        let mut out = self.layout.create_file(&tmp).io_context("create", &tmp)?;
        let mut hasher = DigestWriter::new();
        let mut total = 0u64;
        for chunk in &table.chunks {
            let mut file = self.ensure(chunk)?.into_file();
            let mut data = Vec::new();
            file.read_to_end(&mut data).io_context("read", self.path(chunk))?;
            hasher.update(&data);
            out.write_all(&data).io_context("write", &tmp)?;
            total += data.len() as u64;
        }
        let actual = hasher.finish();
        if actual != *digest {
            let _ = fs::remove_file(&tmp);
            log::error!("chunks of {digest} assemble to {actual}; refusing them");
            return Err(BlobError::Corrupt {
                digest: *digest,
                path: PathBuf::from("assembled chunks"),
                actual,
            });
        }
        Ok((tmp, total))
    }

    /// Fetches every object of `digests` that is not cached, `FETCH_THREADS` at a time.
    /// Returns the first error (after all workers stop).
    pub fn fetch_all(&self, digests: &[Digest]) -> Result<(), BlobError> {
        let missing: Vec<&Digest> = digests.iter().filter(|d| !self.is_cached(d)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let first_error: Mutex<Option<BlobError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..FETCH_THREADS.min(missing.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(digest) = missing.get(i) else { break };
                    if let Err(e) = self.ensure(digest) {
                        first_error.lock().unwrap().get_or_insert(e);
                    }
                });
            }
        });
        match first_error.into_inner().unwrap() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Starts fetching `digests` in the background (a workload's recorded files); errors are
    /// only logged: a prefetch is a hint.
    pub fn prefetch(self: &Arc<Self>, digests: Vec<Digest>) {
        let this = self.clone();
        let spawned = std::thread::Builder::new()
            .name("hdist-prefetch".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                let count = digests.len();
                match this.fetch_all(&digests) {
                    Ok(()) => log::info!("prefetched {count} objects in {:?}", started.elapsed()),
                    Err(e) => log::warn!("prefetch incomplete: {e}"),
                }
            });
        if let Err(e) = spawned {
            log::warn!("cannot start prefetching: {e}");
        }
    }

    /// Removes the least recently used copies until the cache is at 90 % of its bound.
    fn evict(&self) {
        let left = fanout::evict_oldest(&self.copies, self.options.limit);
        self.counter().store(left, Ordering::Relaxed);
    }
}

impl BlobService for CachedBlobService {
    fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        if self.reads_through {
            return self.upstream.has(digest);
        }
        if self.is_cached(digest) || self.chunk_tables.read().unwrap().contains_key(digest) {
            return Ok(true);
        }
        self.upstream.has(digest)
    }

    fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        if self.reads_through {
            return self.upstream.size(digest);
        }
        if let Some(table) = self.table_of(digest)? {
            return Ok(table.file_size);
        }
        let copy = self.ensure(digest)?;
        Ok(copy
            .file()
            .metadata()
            .map(|m| m.len())
            .io_context("stat", self.path(digest))?)
    }

    fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        if self.reads_through {
            return self.upstream.read(digest);
        }
        let mut file = self.ensure(digest)?.into_file();
        let mut out = Vec::new();
        file.read_to_end(&mut out).io_context("read", self.path(digest))?;
        Ok(out)
    }

    fn open(&self, digest: &Digest) -> Result<File, BlobError> {
        self.ensure(digest).map(VerifiedCopy::into_file)
    }

    fn open_copy(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        self.ensure(digest)
    }

    fn prefers_ranged_reads(&self, digest: &Digest) -> bool {
        self.chunk_tables.read().unwrap().contains_key(digest) && !self.is_cached(digest)
    }

    fn read_at(&self, digest: &Digest, offset: u64, buf: &mut [u8]) -> Result<usize, BlobError> {
        if let Some(copy) = self.cached(digest) {
            return Ok(copy
                .file()
                .read_at(buf, offset)
                .io_context("read", self.path(digest))?);
        }
        let Some(table) = self.table_of(digest)? else {
            let copy = self.ensure(digest)?;
            return Ok(copy
                .file()
                .read_at(buf, offset)
                .io_context("read", self.path(digest))?);
        };
        if offset >= table.file_size || buf.is_empty() {
            return Ok(0);
        }
        let end = (offset + buf.len() as u64).min(table.file_size);
        let first = (offset / table.chunk_size) as usize;
        let last = ((end - 1) / table.chunk_size) as usize;
        // The chunks of one read in parallel, plus the next one (sequential readers).
        let upto = (last + 1).min(table.chunks.len() - 1);
        self.fetch_all(&table.chunks[first..=upto])?;
        let mut filled = 0usize;
        for index in first..=last {
            let (start, stop) = table.range(index);
            let from = offset.max(start);
            let to = end.min(stop);
            let chunk = self.ensure(&table.chunks[index])?;
            let want = (to - from) as usize;
            let mut got = 0;
            while got < want {
                let n = chunk
                    .file()
                    .read_at(&mut buf[filled + got..filled + want], from - start + got as u64)
                    .io_context("read", self.path(&table.chunks[index]))?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            filled += got;
            if got < want {
                break;
            }
        }
        Ok(filled)
    }
}

/// Refreshes the mtime (LRU age) of a copy last touched over a minute ago; whether it did.
fn touch(file: &File) -> bool {
    let now = SystemTime::now();
    let stale = file
        .metadata()
        .and_then(|m| m.modified())
        .map(|m| now.duration_since(m).unwrap_or_default() > TOUCH_EVERY)
        .unwrap_or(false);
    // Best effort: another user's file in a shared cache cannot be touched; it then ages.
    stale && file.set_modified(now).is_ok()
}

/// Removes temp files older than an hour (left by killed processes; a live download is
/// seconds old).
fn sweep_tmp(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// A store holding one compressible object, and that object's digest.
    fn store_with_compressed() -> (tempfile::TempDir, Store, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..20_000)
            .flat_map(|n| format!("line {n}\n").into_bytes())
            .collect();
        let batch = store.objects().batch();
        let digest = batch.put_bytes(&bytes).unwrap().digest;
        batch.commit().unwrap();
        (dir, store, digest)
    }

    /// Opens the object's copy through `cache` after ageing it by two hours; its mtime after.
    fn mtime_after_use(cache: &CachedBlobService, digest: &Digest) -> SystemTime {
        cache.open(digest).unwrap();
        let copy = cache.path(digest);
        let aged = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&copy)
            .unwrap()
            .set_modified(aged)
            .unwrap();
        cache.open(digest).unwrap();
        fs::metadata(&copy).unwrap().modified().unwrap()
    }

    #[test]
    fn a_nodes_copies_are_touched_on_use_and_a_stores_are_not() {
        let (_dir, store, digest) = store_with_compressed();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        assert!(
            mtime_after_use(store.blobs(), &digest) < hour_ago,
            "a store's copy was touched on use"
        );
        let node = tempfile::tempdir().unwrap();
        let upstream: Arc<dyn BlobService> = store.objects().clone();
        let cache = CachedBlobService::open(upstream, node.path(), CacheOptions::default()).unwrap();
        assert!(
            mtime_after_use(&cache, &digest) > hour_ago,
            "a node's copy was not touched on use"
        );
    }
}
