//! The local blob backend: one file per object under fan-out directories.
//!
//! ```text
//! <store>/
//! ├── objects/
//! │   └── ab/
//! │       ├── ab12…ef        raw content (compression saved less than 3 %)
//! │       └── ab34…01.zst    one zstd frame of the content, content size in the frame header
//! └── linkfarm/
//!     └── ab/ab34…01@<mtime> copy that `profile export --link` links to (GC removes it)
//! ```
//!
//! An object reaches `objects/` by `rename` only after its bytes are durable, so a crash leaves
//! either the whole object or nothing (plus scratch files that the next process sweeps).
//!
//! This backend keeps objects only. The decompressed copies that readers `open` (for mmap and
//! FUSE passthrough, in `<store>/cache/blobs/`, size-bounded) belong to the caching layer in
//! front of it ([`crate::remote::CachedBlobService`], what [`crate::store::Store::blobs`]
//! reads through), which copies a compressed object out through [`BlobService::copy_to`]. A raw
//! object needs no copy: [`BlobService::open_in_place`] hands out its own file, hashed the first
//! time a process opens it and re-hashed when its stamp changed since (see [`super::copies`]);
//! a bad raw object is an error, there is nothing to re-make it from. Opened without the layer,
//! a compressed object is decompressed into an unnamed file in scratch space, gone once closed.
//! [`LocalBlobService::verify_linkfarm`] re-hashes every linkfarm copy (`hdist store verify`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

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
    linkfarm: PathBuf,
    scratch: Arc<Scratch>,
    // Raw objects are served in place: each is hashed once per process, then trusted while its
    // stamp is unchanged (see `super::copies`).
    trusted: TrustedCopies,
}

impl LocalBlobService {
    /// Opens (and creates if needed) the object directory below `root`.
    pub fn open(root: &Path, scratch: Arc<Scratch>) -> Result<Self, BlobError> {
        let objects = root.join("objects");
        modes::create_dir_all(&objects, modes::SHARED_DIR).io_context("create directory", &objects)?;
        // All 256 fan-out directories exist from the start, so adding an object never has to
        // create one (a mkdir per object was a third of an ingest's system time).
        if !objects.join("ff").is_dir() {
            fanout::create_all(&objects).io_context("create directory", &objects)?;
        }
        Ok(LocalBlobService {
            objects,
            linkfarm: root.join("linkfarm"),
            scratch,
            trusted: TrustedCopies::default(),
        })
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

    /// Re-hashes every linkfarm copy. With `repair`, a bad copy is made again from its object
    /// (verified on the way) or, if the object is bad or gone too, dropped; without, it is
    /// only reported.
    pub fn verify_linkfarm(&self, repair: bool) -> CopiesReport {
        check_copies(&self.linkfarm, Self::linkfarm_digest, |path, digest| {
            if !repair {
                return "left in place (repair re-makes it)".to_string();
            }
            match self
                .require(digest)
                .and_then(|object| self.make_linkfarm_copy(&object, path))
            {
                Ok(()) => "re-made from its verified object; files hard-linked to it by \
                     `hdist profile export --link hardlink` keep the damaged bytes: export again"
                    .to_string(),
                Err(e) => drop_copy(path, &format!("it cannot be re-made: {e}")),
            }
        })
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

    /// Starts a batch of additions; see [`IngestBatch`].
    pub fn batch(&self) -> IngestBatch<'_> {
        IngestBatch {
            blobs: self,
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Writes the verified raw content of `object` to `dest` (scratch file, then rename).
    fn materialize(&self, object: &StoredObject, dest: &Path) -> Result<u64, BlobError> {
        let tmp = self.scratch.fresh_path("linkfarm");
        let mut out = modes::create_file(&tmp).io_context("create", &tmp)?;
        let size = decode_verified(object, &mut out).inspect_err(|_| {
            let _ = fs::remove_file(&tmp);
        })?;
        if let Some(parent) = dest.parent() {
            modes::create_dir_all(parent, modes::SHARED_DIR).io_context("create directory", parent)?;
        }
        fs::rename(&tmp, dest).io_context("rename into place", dest)?;
        Ok(size)
    }

    /// The raw object's own file, verified (see [`super::copies`]); `None` for a compressed one.
    fn open_raw(&self, object: &StoredObject) -> Result<Option<VerifiedCopy>, BlobError> {
        if object.codec != Codec::Raw {
            return Ok(None);
        }
        let checked = self
            .trusted
            .open(&object.digest, &object.path)
            .io_context("read", &object.path)?;
        match checked {
            Checked::Good(copy) => Ok(Some(copy)),
            Checked::Missing => Err(BlobError::NotFound {
                digest: object.digest,
                location: self.objects.clone(),
            }),
            Checked::Bad { actual } => Err(corrupt(object, actual)),
        }
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
        if let Some(in_place) = self.open_raw(&object)? {
            return Ok(in_place);
        }
        // No caching layer in front (readers of the store go through one): an unnamed file in
        // scratch space, gone once closed.
        let scratch = self.scratch.dir();
        let mut file = tempfile::tempfile_in(scratch).io_context("create a file in", scratch)?;
        decode_verified(&object, &mut file)?;
        file.rewind().io_context("seek", scratch)?;
        Ok(VerifiedCopy::new(file, *digest, object.path.clone()).io_context("stat", &object.path)?)
    }

    fn open_in_place(&self, digest: &Digest) -> Result<Option<VerifiedCopy>, BlobError> {
        self.open_raw(&self.require(digest)?)
    }

    fn is_local(&self) -> bool {
        true
    }

    fn copy_to(&self, digest: &Digest, out: &mut File) -> Result<u64, BlobError> {
        decode_verified(&self.require(digest)?, out)
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

/// Decodes a stored object into `out` (emptied first), hashing it on the way; the raw size,
/// or an error if it does not hash to its digest (`out` then holds bytes to discard).
fn decode_verified(object: &StoredObject, out: &mut File) -> Result<u64, BlobError> {
    out.set_len(0).io_context("truncate", &object.path)?;
    out.rewind().io_context("seek", &object.path)?;
    let source = File::open(&object.path).io_context("open", &object.path)?;
    let mut tee = HashingWriter {
        inner: out,
        hasher: DigestWriter::new(),
    };
    let size = decode_into(object, source, &mut tee)?;
    check(object, tee.hasher.finish())?;
    Ok(size)
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
