//! Blobs: immutable byte strings addressed by the SHA-256 of their raw content.
//!
//! [`BlobService`] is the read seam every consumer goes through (the tree walker, `hdist cat`,
//! the FUSE layer), so none of them can tell a local store from a remote one. Writing is not
//! part of the seam: only the local backend ([`LocalBlobService`]) accepts new content, through
//! an [`IngestBatch`] that makes a whole ingest durable with two `syncfs` calls instead of one
//! `fsync` per object.
//!
//! [`MemoryBlobService`] holds objects in memory for tests of the layers above; every backend
//! is held to the same contract by one suite ([`crate::testing::blob_contract`]).
//!
//! Every read is verified: a backend never hands out bytes whose hash it has not checked against
//! the digest that was asked for. A corrupt object is an error naming it, never wrong bytes.
//! Files handed out for reading in place are hashed once per process and then trusted by their
//! stamp, re-hashed when it changes; see [`copies`] for that trust model.

pub mod copies;
pub mod fanout;
mod local;
mod memory;
#[cfg(test)]
mod tests;

pub use copies::{BadCopy, CopiesReport, VerifiedCopy};
pub use local::{IngestBatch, LocalBlobService, PutOutcome, StoredObject};
pub use memory::MemoryBlobService;

use std::fs::File;
use std::io;
use std::path::PathBuf;

use crate::hash::Digest;
use crate::IoError;

/// How an object's bytes sit on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// The raw content as-is (compression did not pay).
    Raw,
    /// One zstd frame holding the raw content, with the content size in its header.
    Zstd,
}

/// Errors of the blob layer.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The object is not in this store.
    #[error("object {digest} is not in the store at {location}")]
    NotFound { digest: Digest, location: PathBuf },
    /// The stored bytes do not hash to the object's name.
    #[error(
        "object {digest} is corrupt ({path}): its content hashes to {actual}; \
         run `hdist store verify`, then add the content again"
    )]
    Corrupt {
        digest: Digest,
        path: PathBuf,
        actual: Digest,
    },
    /// The stored bytes could not be decompressed.
    #[error("object {digest} is corrupt ({path}): it does not decompress; run `hdist store verify`")]
    Undecodable {
        digest: Digest,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A remote store (behind a mount) failed other than by lacking or corrupting the object.
    #[error("fetch from the remote store: {0}")]
    Remote(#[source] Box<crate::remote::RemoteError>),
    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
    /// An I/O operation on an object's content failed where there is no path to name: an
    /// open handle from [`BlobService::open`] or the caller's output file.
    #[error("{action} object {digest}: {source}")]
    ObjectIo {
        action: &'static str,
        digest: Digest,
        #[source]
        source: io::Error,
    },
}

impl BlobError {
    /// The [`BlobError::ObjectIo`] of `action` on `digest`'s content, for `map_err`.
    pub(crate) fn object_io(action: &'static str, digest: &Digest) -> impl FnOnce(io::Error) -> Self {
        let digest = *digest;
        move |source| BlobError::ObjectIo {
            action,
            digest,
            source,
        }
    }

    /// Whether this error means "absent" rather than "broken".
    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::NotFound { .. })
    }
}

/// Read access to content-addressed objects.
///
/// Implementations are shared between threads (the FUSE session is multithreaded) and must be
/// cheap to call concurrently for different digests.
pub trait BlobService: Send + Sync + std::fmt::Debug {
    /// Whether the object is present. Does not verify its content; absence is `Ok(false)`.
    fn has(&self, digest: &Digest) -> Result<bool, BlobError>;

    /// The raw (uncompressed) size of the object in bytes, or [`BlobError::NotFound`].
    fn size(&self, digest: &Digest) -> Result<u64, BlobError>;

    /// The whole raw content, verified against `digest`. Meant for small objects (trees,
    /// documents); large files go through [`BlobService::open`].
    fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError>;

    /// A read-only file holding exactly the verified raw content, positioned at offset 0.
    ///
    /// The file is seekable, can be mmapped and can serve as a FUSE passthrough backing file.
    /// Callers must not write to it. The content was verified when the file was produced; a
    /// backend may hand out the same underlying file to many callers.
    fn open(&self, digest: &Digest) -> Result<File, BlobError>;

    /// [`BlobService::open`] for readers that keep the file: the file with the stamp it had
    /// when its content was verified, so that [`VerifiedCopy::is_intact`] can tell later
    /// whether it changed on disk since. Backends that hand out files other programs could
    /// write to (local objects and copies) take the stamp at verification; the default takes
    /// it now.
    fn open_copy(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        let file = self.open(digest)?;
        let name = PathBuf::from(digest.to_hex());
        VerifiedCopy::new(file, *digest, name).map_err(BlobError::object_io("stat", digest))
    }

    /// The backend's own file of the object, verified, when it keeps the raw content as a file
    /// it can hand out as is (a local object stored uncompressed): then nothing needs copying.
    /// `Ok(None)` when a reader needs a copy made first (compressed, remote or in-memory
    /// content), which [`crate::remote::CachedBlobService`] in front of it makes. An absent
    /// object may be `Ok(None)` too (the copy then fails `NotFound`). The default: `Ok(None)`.
    fn open_in_place(&self, _digest: &Digest) -> Result<Option<VerifiedCopy>, BlobError> {
        Ok(None)
    }

    /// Whether the objects are on this machine, so that reading one again costs no more than
    /// reading a copy of it: a [`crate::remote::CachedBlobService`] in front of such a backend
    /// keeps only the files `open` hands out and sends `has`, `size` and `read` straight to it.
    /// The default (`false`) has the cache keep everything it reads, which is right for any
    /// backend and only wasteful for a local one.
    fn is_local(&self) -> bool {
        false
    }

    /// Writes the verified raw content into `out` (emptied first) and returns its length.
    /// A remote backend streams it there without holding the object in memory. On error `out`
    /// may hold partial or unverified bytes: the caller discards it.
    fn copy_to(&self, digest: &Digest, out: &mut File) -> Result<u64, BlobError> {
        let mut file = self.open(digest)?;
        out.set_len(0)
            .map_err(BlobError::object_io("truncate the output for", digest))?;
        io::Seek::rewind(out).map_err(BlobError::object_io("rewind the output for", digest))?;
        io::copy(&mut file, out).map_err(BlobError::object_io("copy", digest))
    }

    /// Whether a reader of this object should use [`BlobService::read_at`] instead of
    /// [`BlobService::open`], because `open` would first fetch the whole object (a large file of
    /// a remote store that is not local yet). Cheap; no I/O beyond a `stat`.
    fn prefers_ranged_reads(&self, _digest: &Digest) -> bool {
        false
    }

    /// Up to `buf.len()` verified bytes of the raw content at `offset` (fewer only at the end;
    /// 0 past it). A backend that fetches content in pieces fetches only the pieces the range
    /// touches, each verified on its own; the default goes through [`BlobService::open`].
    fn read_at(&self, digest: &Digest, offset: u64, buf: &mut [u8]) -> Result<usize, BlobError> {
        use std::os::unix::fs::FileExt;
        let file = self.open(digest)?;
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(BlobError::object_io("read", digest)(e)),
            }
        }
        Ok(filled)
    }
}
