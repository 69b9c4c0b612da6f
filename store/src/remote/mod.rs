//! Remote stores: a store published as static files, and the backends that read it back.
//!
//! `hdist publish --to DIR` writes a layout that any HTTP server (nginx, a caching proxy, an
//! S3-compatible bucket) serves as plain, immutable files:
//!
//! ```text
//! DIR/
//! ├── manifest.json          the only mutable file: signed (ed25519) body naming every
//! │                          profile document, artifact, chunk table, tree pack and prefetch
//! │                          list by digest; replaced last, by rename (the commit point)
//! ├── objects/
//! │   └── ab/ab12….zst       every object (file contents, trees, profile and artifact
//! │                          documents, chunk tables, tree packs, prefetch lists, chunks of
//! │                          large files): one zstd frame of the raw bytes, named by the
//! │                          SHA-256 of the raw bytes; never rewritten once there
//! ├── artifacts/<name>/<hash>.json
//! │                          one signed entry per artifact, for lookups by id without
//! │                          the manifest (binary caches, `hdist copy`; see [`copy`])
//! └── .tmp/                  objects being written by a running publish (not served)
//! ```
//!
//! Files larger than [`CHUNK_THRESHOLD`] are published only as chunks of [`CHUNK_SIZE`] bytes,
//! each an object of its own, listed by a chunk table object (see [`chunks`]); the signed
//! manifest maps the file's digest to its table's digest. A partial read of a large file then
//! fetches only the chunks it touches.
//!
//! A node reads the layout through [`HttpBlobService`] (fetch, decompress, verify against the
//! digest, mirrors with fail-over; a read of an uncached object fails within `timeout` ×
//! mirrors with bounded memory whatever the server does, see [`http`]) under [`CachedBlobService`] (decompressed verified copies on
//! local disk, LRU-bounded, shared by the mounts of a node), with [`RemoteCatalog`] answering
//! which profiles exist from the newest manifest whose signature verifies. Nothing fetched is
//! trusted before its digest (objects) or signature (the manifest) has been checked.

pub mod cached;
pub mod catalog;
pub mod chunks;
pub mod copy;
pub mod http;
pub mod manifest;
pub mod publish;
pub mod trace;

pub use cached::{CacheOptions, CachedBlobService};
pub use catalog::RemoteCatalog;
pub use copy::{copy_from, copy_to, CacheSource, CopyReport};
pub use http::{HttpBlobService, HttpOptions, HttpStats};
pub use manifest::{Manifest, PublicKey, PublishedProfile, SecretKey};
pub use publish::{publish, PublishOptions, PublishReport};
pub use trace::{read_trace, write_trace, RecordingBlobService};

use std::path::Path;

use crate::blob::BlobError;
use crate::hash::Digest;
use crate::store::StoreError;
use crate::{IoContext, IoError};

/// Files larger than this are published as chunks.
pub const CHUNK_THRESHOLD: u64 = 4 << 20;
/// Size of every chunk but the last of a chunked file.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// Errors of the remote layer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The local store failed while publishing.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The blob layer failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    /// A key file or key text is unusable.
    #[error("bad key {what}: {reason}")]
    BadKey { what: String, reason: String },
    /// The manifest's signature does not verify with the trusted key.
    #[error("manifest from {url} is not signed by the trusted key {key}; refusing it")]
    BadSignature { url: String, key: String },
    /// The manifest does not parse or is older than one already accepted.
    #[error("manifest from {url} is unusable: {reason}")]
    BadManifest { url: String, reason: String },
    /// No mirror answered.
    #[error("no mirror could serve {what} (tried {tried}): {reason}")]
    Unreachable {
        what: String,
        tried: String,
        reason: String,
    },
    /// A published directory has no entry for an artifact (`artifacts/<name>/<hash>.json`).
    #[error("artifact {id} is not in {location} (no {path}); copy or publish it there first")]
    NotPublished {
        id: crate::artifact::ArtifactId,
        location: String,
        path: String,
    },
    /// A published object does not match its digest or does not decode.
    #[error("object {digest} from {url} is corrupt: {reason}; refusing it")]
    CorruptObject {
        digest: Digest,
        url: String,
        reason: String,
    },
    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Remote failures reach the FUSE layer as blob errors (and so as `EIO` there).
impl From<RemoteError> for BlobError {
    fn from(e: RemoteError) -> BlobError {
        match e {
            RemoteError::Blob(e) => e,
            other => BlobError::Remote(Box::new(other)),
        }
    }
}

/// Object path of `digest` inside a published directory (relative, `/`-separated).
pub fn object_path(digest: &Digest) -> String {
    format!("objects/{}", crate::blob::fanout::relative(digest, ".zst"))
}

/// Writes `path` durably: a temporary file beside it (so the rename stays on one file system
/// wherever `path` is), fsync, rename, fsync of the directory.
pub(crate) fn write_beside(path: &Path, bytes: &[u8]) -> Result<(), RemoteError> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    crate::modes::create_dir_all(dir, crate::modes::SHARED_DIR).io_context("create directory", dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir).io_context("create a temporary file in", dir)?;
    std::io::Write::write_all(&mut tmp, bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .io_context("write", tmp.path())?;
    tmp.persist(path)
        .map_err(|e| IoError::new("rename into place", path, e.error))?;
    Ok(crate::scratch::fsync_dir(dir).io_context("sync", dir)?)
}
