//! [`CachedBlobService`]: a node-local, size-bounded cache of verified objects in front of a
//! remote backend. Nothing in it is specific to HTTP: the upstream is any [`BlobService`], and
//! the blob contract suite runs it over memory and local upstreams too.
//!
//! ```text
//! <cache>/
//! ├── objects/ab/ab12…     decompressed content (files, trees, documents, chunks), written
//! │                        only after it matched its digest; mtime = last use (LRU)
//! ├── manifests/<id>.json  the last manifest whose signature verified, per mirror set, so a
//! │                        node restarted while the server is down still mounts
//! └── tmp/<pid>-<n>        downloads being assembled (renamed into objects/ when verified)
//! ```
//!
//! Several mounts (even of different users, given permissions) may share one cache directory:
//! every file reaches `objects/` by an atomic rename of identical bytes, so concurrent fills of
//! the same object are harmless, and eviction only unlinks (open descriptors stay valid). A
//! cached copy is re-hashed the first time a process uses it and whenever its stamp (inode,
//! size, mtime, ctime) changed since (see [`crate::blob::copies`]), so a torn write from a
//! crash or a tampered cache is dropped and fetched again, never served; the process's own
//! LRU touches take a new stamp. [`CachedBlobService::verify_cache`] re-hashes every copy
//! (`hdist store verify --cache DIR`).
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
use crate::{IoContext, IoError};

/// A use refreshes a cached file's mtime only if it is older than this (one syscall per
/// object per minute, not per open).
const TOUCH_EVERY: Duration = Duration::from_secs(60);
/// Parallel fetches for prefetching and for assembling chunked files.
const FETCH_THREADS: usize = 16;

/// How the cache behaves.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    /// Bound on the bytes under `objects/`; the least recently used are evicted beyond it.
    pub limit: u64,
}

impl Default for CacheOptions {
    fn default() -> CacheOptions {
        CacheOptions { limit: 4 << 30 }
    }
}

/// One object being fetched by some thread; others wait for it instead of fetching it again.
#[derive(Debug, Default)]
struct InFlight {
    done: Mutex<Option<Result<(), String>>>,
    cond: Condvar,
}

/// Verified objects cached on local disk in front of `upstream`.
#[derive(Debug)]
pub struct CachedBlobService {
    upstream: Arc<dyn BlobService>,
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
    options: CacheOptions,
    bytes: OnceLock<AtomicU64>,
    trusted: TrustedCopies,
    chunk_tables: RwLock<HashMap<Digest, Digest>>,
    inflight: Mutex<HashMap<Digest, Arc<InFlight>>>,
    counter: AtomicU64,
    fetched: AtomicUsize,
}

impl CachedBlobService {
    /// A cache in `root` (created if needed) in front of `upstream`.
    pub fn open(
        upstream: Arc<dyn BlobService>,
        root: &Path,
        options: CacheOptions,
    ) -> Result<CachedBlobService, BlobError> {
        let objects = root.join("objects");
        let tmp = root.join("tmp");
        for dir in [&objects, &tmp, &root.join("manifests")] {
            fs::create_dir_all(dir).io_context("create directory", dir)?;
        }
        sweep_tmp(&tmp);
        Ok(CachedBlobService {
            upstream,
            root: root.to_path_buf(),
            objects,
            tmp,
            options,
            bytes: OnceLock::new(),
            trusted: TrustedCopies::default(),
            chunk_tables: RwLock::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            counter: AtomicU64::new(0),
            fetched: AtomicUsize::new(0),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
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
        fanout::path(&self.objects, digest)
    }

    /// Whether the object is in the cache (not verified).
    pub fn is_cached(&self, digest: &Digest) -> bool {
        self.path(digest).exists()
    }

    /// The cached copy, hashed the first time this process uses it and then trusted while its
    /// stamp is unchanged (see [`crate::blob::copies`]); a copy that fails is removed.
    fn cached(&self, digest: &Digest) -> Option<VerifiedCopy> {
        let path = self.path(digest);
        match self.trusted.open(digest, &path) {
            Ok(Checked::Good(copy)) => {
                if touch(copy.file()) {
                    self.trusted.restamp(&copy);
                }
                Some(copy)
            }
            Ok(Checked::Missing) => None,
            Ok(Checked::Bad { actual }) => {
                log::error!(
                    "cached copy {} is corrupt (hashes to {actual}); removing it and fetching again",
                    path.display()
                );
                let _ = fs::remove_file(&path);
                None
            }
            Err(e) => {
                log::error!(
                    "cached copy {} cannot be read ({e}); removing it and fetching again",
                    path.display()
                );
                self.trusted.forget(digest);
                let _ = fs::remove_file(&path);
                None
            }
        }
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
            .get_or_init(|| AtomicU64::new(fanout::total_len(&self.objects)))
    }

    fn fresh_tmp(&self) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        // Random, not just pid + counter: mounts in other pid namespaces share the cache.
        self.tmp.join(format!("{}-{n}", crate::scratch::random_token()))
    }

    /// Moves a verified temp file into place and accounts for it.
    fn install(&self, digest: &Digest, tmp: &Path, len: u64) -> Result<VerifiedCopy, BlobError> {
        let dest = self.path(digest);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).io_context("create directory", parent)?;
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
        fs::write(&tmp, bytes).io_context("write", &tmp)?;
        self.install(digest, &tmp, bytes.len() as u64).map(drop)
    }

    /// The object as a cached file, fetching it (once, however many threads ask) if needed.
    fn ensure(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        loop {
            if let Some(file) = self.cached(digest) {
                return Ok(file);
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
                    return Err(
                        IoError::new("fetch", digest.to_hex(), io::Error::other(reason.clone())).into(),
                    );
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

    /// Fetches an object into the cache.
    fn fill(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        if let Some(table) = self.table_of(digest)? {
            return self.assemble(digest, &table);
        }
        // Streamed from upstream straight into the temp file: memory stays bounded whatever
        // the object's (or a hostile body's) size.
        let tmp = self.fresh_tmp();
        let mut out = File::create(&tmp).io_context("create", &tmp)?;
        let len = match self.upstream.copy_to(digest, &mut out) {
            Ok(len) => len,
            Err(e) => {
                drop(out);
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        drop(out);
        self.fetched.fetch_add(1, Ordering::Relaxed);
        self.install(digest, &tmp, len)
    }

    /// Builds a chunked file from its chunks (fetched in parallel), checking the whole.
    fn assemble(&self, digest: &Digest, table: &ChunkTable) -> Result<VerifiedCopy, BlobError> {
        self.fetch_all(&table.chunks)?;
        let tmp = self.fresh_tmp();
        let mut out = File::create(&tmp).io_context("create", &tmp)?;
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
        drop(out);
        self.install(digest, &tmp, total)
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
        let left = fanout::evict_oldest(&self.objects, self.options.limit);
        self.counter().store(left, Ordering::Relaxed);
    }
}

impl BlobService for CachedBlobService {
    fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        if self.is_cached(digest) || self.chunk_tables.read().unwrap().contains_key(digest) {
            return Ok(true);
        }
        self.upstream.has(digest)
    }

    fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
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
