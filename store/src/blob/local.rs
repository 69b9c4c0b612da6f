//! The local blob backend: one file per object under fan-out directories.
//!
//! ```text
//! <store>/
//! ├── objects/
//! │   └── ab/
//! │       ├── ab12…ef        raw content (compression saved less than 3 %)
//! │       └── ab34…01.zst    one zstd frame of the content, content size in the frame header
//! ├── cache/blobs/
//! │   └── ab/ab34…01         decompressed, verified copy of a .zst object (size-bounded,
//! │                          oldest first evicted); what `open` hands out for mmap/passthrough
//! └── linkfarm/
//!     └── ab/ab34…01@<mtime> copy that `profile export --link` links to (GC removes it)
//! ```
//!
//! An object reaches `objects/` by `rename` only after its bytes are durable, so a crash leaves
//! either the whole object or nothing (plus scratch files that the next process sweeps).
//!
//! `open` hands out a raw object itself, or the decompressed copy of a compressed one. Each is
//! hashed the first time a process opens it and re-hashed when its stamp changed since (see
//! [`super::copies`]): a bad copy is re-made from its object, a bad raw object is an error.
//! [`LocalBlobService::verify_copies`] re-hashes every copy (`hdist store verify`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::copies::{check_copies, drop_copy, Checked, CopiesReport, TrustedCopies, VerifiedCopy};
use super::{fanout, BlobError, BlobService, Codec};
use crate::hash::{Digest, DigestWriter};
use crate::modes;
use crate::scratch::{syncfs, Scratch};
use crate::{IoContext, IoError};

/// Files up to this size are hashed and compressed in memory in one go.
const IN_MEMORY_LIMIT: u64 = 64 << 20;
/// zstd level: level 3 compresses CPython's stdlib ~3.5x at several hundred MB/s per core.
const ZSTD_LEVEL: i32 = 3;
/// Between the digest and the variant in a linkfarm copy's name.
const LINKFARM_VARIANT_SEPARATOR: char = '@';
/// Default bound of the decompressed cache.
pub const DEFAULT_CACHE_LIMIT: u64 = 8 << 30;

/// Where an object is and how it is stored.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// The object's digest.
    pub digest: Digest,
    /// Its file under `objects/`.
    pub path: PathBuf,
    /// How the bytes are encoded.
    pub codec: Codec,
    /// Bytes the file occupies (compressed size for zstd objects).
    pub stored_size: u64,
}

/// What adding content did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutOutcome {
    /// The digest of the raw content.
    pub digest: Digest,
    /// Raw size.
    pub size: u64,
    /// Stored size.
    pub stored_size: u64,
    /// True if this call stored it; false if it was present already.
    pub new: bool,
}

/// Content-addressed objects in a local directory.
#[derive(Debug)]
pub struct LocalBlobService {
    objects: PathBuf,
    cache: PathBuf,
    linkfarm: PathBuf,
    cache_limit: u64,
    cache_bytes: OnceLock<AtomicU64>,
    scratch: Arc<Scratch>,
    // Raw objects and cached copies are served as files: each is hashed once per process,
    // then trusted while its stamp is unchanged (see `super::copies`).
    trusted: TrustedCopies,
}

impl LocalBlobService {
    /// Opens (and creates if needed) the object and cache directories below `root`.
    pub fn open(root: &Path, scratch: Arc<Scratch>) -> Result<Self, BlobError> {
        let objects = root.join("objects");
        let cache = root.join("cache").join("blobs");
        for dir in [&objects, &cache] {
            modes::create_dir_all(dir, modes::SHARED_DIR).io_context("create directory", dir)?;
        }
        // All 256 fan-out directories exist from the start, so adding an object never has to
        // create one (a mkdir per object was a third of an ingest's system time).
        if !objects.join("ff").is_dir() {
            fanout::create_all(&objects).io_context("create directory", &objects)?;
        }
        Ok(LocalBlobService {
            objects,
            cache,
            linkfarm: root.join("linkfarm"),
            cache_limit: DEFAULT_CACHE_LIMIT,
            cache_bytes: OnceLock::new(),
            scratch,
            trusted: TrustedCopies::default(),
        })
    }

    /// Sets the bound of the decompressed cache in bytes.
    pub fn with_cache_limit(mut self, limit: u64) -> Self {
        self.cache_limit = limit;
        self
    }

    /// The `objects/` directory.
    pub fn objects_dir(&self) -> &Path {
        &self.objects
    }

    fn object_path(&self, digest: &Digest, codec: Codec) -> PathBuf {
        let suffix = match codec {
            Codec::Raw => "",
            Codec::Zstd => ".zst",
        };
        fanout::path_with_suffix(&self.objects, digest, suffix)
    }

    /// Finds an object on disk.
    pub fn locate(&self, digest: &Digest) -> Result<Option<StoredObject>, BlobError> {
        for codec in [Codec::Zstd, Codec::Raw] {
            let path = self.object_path(digest, codec);
            match fs::metadata(&path) {
                Ok(meta) => {
                    return Ok(Some(StoredObject {
                        digest: *digest,
                        path,
                        codec,
                        stored_size: meta.len(),
                    }))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(IoError::new("stat", path, e).into()),
            }
        }
        Ok(None)
    }

    fn require(&self, digest: &Digest) -> Result<StoredObject, BlobError> {
        self.locate(digest)?.ok_or_else(|| BlobError::NotFound {
            digest: *digest,
            location: self.objects.clone(),
        })
    }

    /// Every object file under `objects/` (names that are not object names are skipped).
    pub fn list(&self) -> Result<Vec<StoredObject>, BlobError> {
        let mut out = Vec::new();
        let fanouts = fs::read_dir(&self.objects).io_context("list", &self.objects)?;
        for fanout in fanouts {
            let fanout = fanout.io_context("list", &self.objects)?.path();
            let Ok(entries) = fs::read_dir(&fanout) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let (hex, codec) = match name.strip_suffix(".zst") {
                    Some(hex) => (hex, Codec::Zstd),
                    None => (name, Codec::Raw),
                };
                let Ok(digest) = Digest::from_hex(hex) else {
                    continue;
                };
                let stored_size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                out.push(StoredObject {
                    digest,
                    path: entry.path(),
                    codec,
                    stored_size,
                });
            }
        }
        Ok(out)
    }

    /// Re-hashes one stored object.
    pub fn verify(&self, object: &StoredObject) -> Result<u64, BlobError> {
        let file = File::open(&object.path).io_context("open", &object.path)?;
        let mut hasher = DigestWriter::new();
        let size = decode_into(object, file, &mut hasher)?;
        check(object, hasher.finish())?;
        Ok(size)
    }

    /// Raw size of a stored object (from the zstd frame header for compressed ones).
    pub fn raw_size(&self, object: &StoredObject) -> Result<u64, BlobError> {
        match object.codec {
            Codec::Raw => Ok(object.stored_size),
            Codec::Zstd => {
                let mut header = [0u8; 18];
                let mut file = File::open(&object.path).io_context("open", &object.path)?;
                let n = read_up_to(&mut file, &mut header).io_context("read", &object.path)?;
                match zstd::zstd_safe::get_frame_content_size(&header[..n]) {
                    Ok(Some(size)) => Ok(size),
                    _ => Err(BlobError::Undecodable {
                        digest: object.digest,
                        path: object.path.clone(),
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            "zstd frame header without content size",
                        ),
                    }),
                }
            }
        }
    }

    /// A path holding exactly the verified raw content for profile exports to link to:
    /// `<store>/linkfarm/ab/<hex>@<variant>`, never evicted (GC removes copies no profile
    /// needs). Links to a copy share its inode, so its metadata: the caller names by `variant`
    /// what must differ between copies of one content (the mtime). A copy, never the object
    /// itself, so a file modified through a link cannot corrupt the store; an existing copy is
    /// re-hashed before it is re-used, so it cannot spread to new exports either.
    pub fn linkfarm_copy(&self, digest: &Digest, variant: &str) -> Result<PathBuf, BlobError> {
        let object = self.require(digest)?;
        let suffix = format!("{LINKFARM_VARIANT_SEPARATOR}{variant}");
        let dest = fanout::path_with_suffix(&self.linkfarm, digest, &suffix);
        let expected = self.raw_size(&object)?;
        if fs::metadata(&dest).map(|m| m.len()).ok() == Some(expected) {
            // Links to it let users write to it: a copy is re-used only once it hashed right.
            match File::open(&dest).and_then(|file| super::copies::hash_file(&file)) {
                Ok(actual) if actual == *digest => return Ok(dest),
                Ok(actual) => log::warn!(
                    "linkfarm copy {} of object {digest} is damaged (it hashes to {actual}); \
                     making it again (files already linked to it keep the damaged bytes)",
                    dest.display()
                ),
                Err(e) => log::warn!(
                    "cannot read the linkfarm copy {} of object {digest}: {e}; making it again",
                    dest.display()
                ),
            }
        }
        self.make_linkfarm_copy(&object, &dest)?;
        Ok(dest)
    }

    fn make_linkfarm_copy(&self, object: &StoredObject, dest: &Path) -> Result<(), BlobError> {
        self.materialize(object, dest)?;
        use std::os::unix::fs::PermissionsExt;
        Ok(fs::set_permissions(dest, fs::Permissions::from_mode(0o444)).io_context("chmod", dest)?)
    }

    /// Re-hashes every decompressed copy (`cache/blobs/`) and linkfarm copy. With `repair`, a
    /// bad copy is made again from its object (verified on the way) or, if the object is bad
    /// or gone too, dropped; without, it is only reported. Copies are caches: re-making one
    /// loses nothing.
    pub fn verify_copies(&self, repair: bool) -> Result<CopiesReport, BlobError> {
        let remake = |path: &Path, digest: &Digest, linkfarm: bool| -> String {
            self.trusted.forget(digest);
            if !repair {
                return "left in place (repair re-makes it)".to_string();
            }
            let made = self.require(digest).and_then(|object| {
                if linkfarm {
                    self.make_linkfarm_copy(&object, path)
                } else {
                    self.materialize(&object, path).map(drop)
                }
            });
            match made {
                Ok(()) if linkfarm => "re-made from its verified object; files hard-linked to it by \
                     `hdist profile export --link hardlink` keep the damaged bytes: export again"
                    .to_string(),
                Ok(()) => "re-made from its verified object".to_string(),
                Err(e) => drop_copy(path, &format!("it cannot be re-made: {e}")),
            }
        };
        let mut report = check_copies(
            &self.cache,
            |name| Digest::from_hex(name).ok(),
            |path, digest| remake(path, digest, false),
        );
        report.merge(check_copies(
            &self.linkfarm,
            Self::linkfarm_digest,
            |path, digest| remake(path, digest, true),
        ));
        Ok(report)
    }

    /// The digest a linkfarm copy named `name` holds (see [`Self::linkfarm_copy`]; copies
    /// made before variants were named are just `<hex>`).
    pub fn linkfarm_digest(name: &str) -> Option<Digest> {
        let hex = name.split(LINKFARM_VARIANT_SEPARATOR).next()?;
        Digest::from_hex(hex).ok()
    }

    /// The linkfarm directory.
    pub fn linkfarm_dir(&self) -> &Path {
        &self.linkfarm
    }

    /// The decompressed cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    /// Starts a batch of additions; see [`IngestBatch`].
    pub fn batch(&self) -> IngestBatch<'_> {
        IngestBatch {
            blobs: self,
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn cache_path(&self, digest: &Digest) -> PathBuf {
        fanout::path(&self.cache, digest)
    }

    fn cache_counter(&self) -> &AtomicU64 {
        self.cache_bytes
            .get_or_init(|| AtomicU64::new(fanout::total_len(&self.cache)))
    }

    /// Decompresses `object` into the cache, verifying it on the way, and opens the copy.
    fn fill_cache(&self, object: &StoredObject) -> Result<File, BlobError> {
        let dest = self.cache_path(&object.digest);
        let size = self.materialize(object, &dest)?;
        // Opened before eviction runs: even if the new copy is evicted at once, this handle
        // keeps reading it.
        let copy = File::open(&dest).io_context("open", &dest)?;
        let total = self.cache_counter().fetch_add(size, Ordering::Relaxed) + size;
        if total > self.cache_limit {
            self.evict_cache();
        }
        Ok(copy)
    }

    /// Writes the verified raw content of `object` to `dest` (scratch file, then rename).
    fn materialize(&self, object: &StoredObject, dest: &Path) -> Result<u64, BlobError> {
        let tmp = self.scratch.fresh_path("cache");
        let source = File::open(&object.path).io_context("open", &object.path)?;
        let mut out = modes::create_file(&tmp).io_context("create", &tmp)?;
        let mut tee = HashingWriter {
            inner: &mut out,
            hasher: DigestWriter::new(),
        };
        let decoded = decode_into(object, source, &mut tee);
        let actual = tee.hasher.finish();
        let cleanup = |e| {
            let _ = fs::remove_file(&tmp);
            e
        };
        let size = decoded.map_err(cleanup)?;
        check(object, actual).map_err(cleanup)?;
        if let Some(parent) = dest.parent() {
            modes::create_dir_all(parent, modes::SHARED_DIR).io_context("create directory", parent)?;
        }
        fs::rename(&tmp, dest).io_context("rename into place", dest)?;
        Ok(size)
    }

    fn evict_cache(&self) {
        self.cache_counter().store(
            fanout::evict_oldest(&self.cache, self.cache_limit),
            Ordering::Relaxed,
        );
    }
}

impl BlobService for LocalBlobService {
    fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(self.locate(digest)?.is_some())
    }

    fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        let object = self.require(digest)?;
        self.raw_size(&object)
    }

    fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let object = self.require(digest)?;
        if object.stored_size > SMALL_OBJECT {
            let file = File::open(&object.path).io_context("open", &object.path)?;
            let mut tee = HashingWriter {
                inner: Vec::new(),
                hasher: DigestWriter::new(),
            };
            decode_into(&object, file, &mut tee)?;
            check(&object, tee.hasher.finish())?;
            return Ok(tee.inner);
        }
        // Trees and documents: a mount's first walk reads one per directory, so this path
        // is kept to one read(2), and one decompression context per thread, reused.
        let stored = fs::read(&object.path).io_context("read", &object.path)?;
        let raw = match object.codec {
            Codec::Raw => stored,
            Codec::Zstd => decompress_small(&object, &stored)?,
        };
        check(&object, Digest::of(&raw))?;
        Ok(raw)
    }

    fn open(&self, digest: &Digest) -> Result<File, BlobError> {
        self.open_copy(digest).map(VerifiedCopy::into_file)
    }

    fn open_copy(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        let object = self.require(digest)?;
        match object.codec {
            // The object itself is handed out: a bad one is an error, there is nothing to
            // re-make it from.
            Codec::Raw => match self
                .trusted
                .open(digest, &object.path)
                .io_context("read", &object.path)?
            {
                Checked::Good(copy) => Ok(copy),
                Checked::Missing => Err(BlobError::NotFound {
                    digest: *digest,
                    location: self.objects.clone(),
                }),
                Checked::Bad { actual } => Err(corrupt(&object, actual)),
            },
            Codec::Zstd => {
                // Copies are written without fsync and may have been written to since: a bad
                // one is re-made from the object, which is verified on the way.
                let cached = self.cache_path(digest);
                match self.trusted.open(digest, &cached) {
                    Ok(Checked::Good(copy)) => return Ok(copy),
                    Ok(Checked::Missing) => {}
                    Ok(Checked::Bad { actual }) => log::warn!(
                        "decompressed copy {} of object {digest} is damaged (it hashes to \
                         {actual}); making it again from the object",
                        cached.display()
                    ),
                    Err(e) => log::warn!(
                        "cannot read the decompressed copy {} of object {digest}: {e}; making \
                         it again from the object",
                        cached.display()
                    ),
                }
                let file = self.fill_cache(&object)?;
                Ok(self
                    .trusted
                    .trust(digest, &cached, file)
                    .io_context("stat", &cached)?)
            }
        }
    }
}

/// A set of additions made durable together by [`IngestBatch::commit`].
///
/// `put_*` write each new object to a scratch file without syncing; `commit` syncs the file
/// system once, renames every object into place and syncs again. Until `commit` returns, no
/// object of the batch is visible under `objects/`. Safe to use from many threads at once.
#[derive(Debug)]
pub struct IngestBatch<'a> {
    blobs: &'a LocalBlobService,
    pending: Mutex<HashMap<Digest, (PathBuf, PathBuf, PutOutcome)>>,
}

impl IngestBatch<'_> {
    /// Adds `data` as an object.
    pub fn put_bytes(&self, data: &[u8]) -> Result<PutOutcome, BlobError> {
        let digest = Digest::of(data);
        if let Some(existing) = self.existing(&digest, data.len() as u64)? {
            return Ok(existing);
        }
        let compressed =
            zstd::bulk::compress(data, ZSTD_LEVEL).io_context("compress", self.blobs.objects.clone())?;
        let (codec, bytes) = if pays(compressed.len() as u64, data.len() as u64) {
            (Codec::Zstd, &compressed[..])
        } else {
            (Codec::Raw, data)
        };
        let tmp = self.blobs.scratch.fresh_path("obj");
        modes::write_file(&tmp, bytes).io_context("write", &tmp)?;
        Ok(self.stage(digest, data.len() as u64, codec, tmp, bytes.len() as u64))
    }

    /// Adds the content of the file at `path`.
    pub fn put_file(&self, path: &Path) -> Result<PutOutcome, BlobError> {
        let mut file = File::open(path).io_context("open", path)?;
        let len = file.metadata().io_context("stat", path)?.len();
        if len <= IN_MEMORY_LIMIT {
            let mut data = Vec::with_capacity(len as usize);
            file.read_to_end(&mut data).io_context("read", path)?;
            return self.put_bytes(&data);
        }
        self.put_large(path, file)
    }

    /// Large files stream: hash and compress in one pass (both cores on the compression), so
    /// the stored bytes are exactly the hashed bytes even if the file changes meanwhile.
    fn put_large(&self, path: &Path, file: File) -> Result<PutOutcome, BlobError> {
        let tmp = self.blobs.scratch.fresh_path("obj");
        let out = modes::create_file(&tmp).io_context("create", &tmp)?;
        let result = (|| {
            let mut encoder = zstd::stream::Encoder::new(out, ZSTD_LEVEL)?;
            encoder.include_contentsize(true)?;
            let len = file.metadata()?.len();
            encoder.set_pledged_src_size(Some(len))?;
            let _ = encoder.multithread(2);
            let mut tee = HashingWriter {
                inner: encoder,
                hasher: DigestWriter::new(),
            };
            let copied = io::copy(&mut file.take(len), &mut tee)?;
            let digest = tee.hasher.finish();
            let out = tee.inner.finish()?;
            let stored = out.metadata()?.len();
            Ok::<_, io::Error>((digest, copied, stored))
        })();
        let (digest, size, stored) = result.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            IoError::new("compress", path, e)
        })?;
        if let Some(existing) = self.existing(&digest, size)? {
            let _ = fs::remove_file(&tmp);
            return Ok(existing);
        }
        if pays(stored, size) {
            return Ok(self.stage(digest, size, Codec::Zstd, tmp, stored));
        }
        // Compression did not pay: store the raw bytes, re-checking that they are the same.
        let _ = fs::remove_file(&tmp);
        let mut source = File::open(path).io_context("open", path)?;
        let mut out = modes::create_file(&tmp).io_context("create", &tmp)?;
        let mut tee = HashingWriter {
            inner: &mut out,
            hasher: DigestWriter::new(),
        };
        io::copy(&mut (&mut source).take(size), &mut tee).io_context("copy", path)?;
        if tee.hasher.finish() != digest {
            let _ = fs::remove_file(&tmp);
            return Err(IoError::new(
                "read",
                path,
                io::Error::other("the file changed while it was being added"),
            )
            .into());
        }
        Ok(self.stage(digest, size, Codec::Raw, tmp, size))
    }

    fn existing(&self, digest: &Digest, size: u64) -> Result<Option<PutOutcome>, BlobError> {
        if let Some((_, _, outcome)) = self.pending.lock().unwrap().get(digest) {
            return Ok(Some(PutOutcome {
                new: false,
                ..*outcome
            }));
        }
        Ok(self.blobs.locate(digest)?.map(|object| PutOutcome {
            digest: *digest,
            size,
            stored_size: object.stored_size,
            new: false,
        }))
    }

    fn stage(&self, digest: Digest, size: u64, codec: Codec, tmp: PathBuf, stored: u64) -> PutOutcome {
        let outcome = PutOutcome {
            digest,
            size,
            stored_size: stored,
            new: true,
        };
        let dest = self.blobs.object_path(&digest, codec);
        let mut pending = self.pending.lock().unwrap();
        if let Some((_, _, first)) = pending.get(&digest) {
            // Another thread staged the same content first.
            let _ = fs::remove_file(&tmp);
            return PutOutcome { new: false, ..*first };
        }
        pending.insert(digest, (tmp, dest, outcome));
        outcome
    }

    /// Makes every staged object durable and visible. Returns the objects this batch stored.
    pub fn commit(self) -> Result<Vec<PutOutcome>, BlobError> {
        let pending = self.pending.into_inner().unwrap();
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let scratch_dir = self.blobs.scratch.dir();
        crate::crashpoint::hit("objects.staged");
        syncfs(scratch_dir).io_context("sync", scratch_dir)?;
        let mut stored = Vec::with_capacity(pending.len());
        for (_, (tmp, dest, outcome)) in pending {
            // Another process may have stored the same object meanwhile; renaming over it
            // replaces identical bytes, so no check is needed.
            fs::rename(&tmp, &dest).io_context("rename into place", &dest)?;
            crate::crashpoint::hit("objects.renamed");
            stored.push(outcome);
        }
        syncfs(&self.blobs.objects).io_context("sync", &self.blobs.objects)?;
        crate::crashpoint::hit("objects.durable");
        Ok(stored)
    }
}

fn pays(compressed: u64, raw: u64) -> bool {
    compressed < raw - raw / 32
}

/// Stored objects up to this size are read whole and decompressed in one call.
const SMALL_OBJECT: u64 = 1 << 20;
/// The most a small object may claim to expand to (its frame header is not trusted further).
const SMALL_OBJECT_RAW_MAX: u64 = 64 << 20;

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses a small object's single zstd frame, sized by its header.
fn decompress_small(object: &StoredObject, frame: &[u8]) -> Result<Vec<u8>, BlobError> {
    let undecodable = |source: io::Error| BlobError::Undecodable {
        digest: object.digest,
        path: object.path.clone(),
        source,
    };
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= SMALL_OBJECT_RAW_MAX => size as usize,
        _ => {
            return Err(undecodable(io::Error::new(
                io::ErrorKind::InvalidData,
                "zstd frame header without a plausible content size",
            )))
        }
    };
    DECOMPRESSOR.with(|cell| {
        let mut cell = cell.borrow_mut();
        let decompressor = match cell.as_mut() {
            Some(decompressor) => decompressor,
            None => cell.insert(zstd::bulk::Decompressor::new().map_err(undecodable)?),
        };
        let mut raw = Vec::with_capacity(size);
        decompressor
            .decompress_to_buffer(frame, &mut raw)
            .map_err(undecodable)?;
        Ok(raw)
    })
}

/// Decodes a stored object into `out`, returning the raw size.
fn decode_into(object: &StoredObject, file: File, out: &mut impl Write) -> Result<u64, BlobError> {
    let reader = io::BufReader::with_capacity(1 << 20, file);
    match object.codec {
        Codec::Raw => {
            let mut reader = reader;
            Ok(io::copy(&mut reader, out).io_context("read", &object.path)?)
        }
        Codec::Zstd => {
            let mut decoder =
                zstd::stream::Decoder::with_buffer(reader).map_err(|source| BlobError::Undecodable {
                    digest: object.digest,
                    path: object.path.clone(),
                    source,
                })?;
            io::copy(&mut decoder, out).map_err(|source| BlobError::Undecodable {
                digest: object.digest,
                path: object.path.clone(),
                source,
            })
        }
    }
}

fn check(object: &StoredObject, actual: Digest) -> Result<(), BlobError> {
    if actual == object.digest {
        Ok(())
    } else {
        Err(corrupt(object, actual))
    }
}

/// The error for an object whose bytes hash to `actual`, logged (a mount's log is where a
/// reader who got EIO looks).
fn corrupt(object: &StoredObject, actual: Digest) -> BlobError {
    log::error!("object {} at {} is corrupt", object.digest, object.path.display());
    BlobError::Corrupt {
        digest: object.digest,
        path: object.path.clone(),
        actual,
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Passes bytes through to `inner` while hashing them.
struct HashingWriter<W> {
    inner: W,
    hasher: DigestWriter,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
