//! The source cache: upstream archives, file sets and git commits, stored under Hashdist's
//! source keys and unpacked on demand, verified and confined.
//!
//! ```text
//! <store>/
//! ├── objects/…                          an archive is one blob of its raw bytes (its digest
//! │                                      is the SHA-256 the key is made of); a files: or git:
//! │                                      source is a tree, deduplicated with everything else
//! └── sources/
//!     ├── tar.gz/<32 base32>.json        one document per key (see `record`): the commit
//!     ├── files/<32 base32>.json         point of a fetch and the only truth about what is
//!     └── git/<40 hex>.json              cached; there is no index table for sources
//! ```
//!
//! - [`fetch`] gets a source from an `http(s)://` URL (retries, resumption, mirrors), a
//!   `file:` URL or path (an archive, a single file or a directory) or a git repository, and
//!   returns its [`SourceKey`]. With the expected key given, a cached source costs no network
//!   I/O, and content under another key stores nothing ([`SourceError::KeyMismatch`]).
//! - [`unpack_source`] writes a source into a directory: the content is verified before
//!   anything is extracted, an archive's single top-level directory is stripped, members that
//!   would land outside the directory are refused ([`SourceError::Security`]), and the
//!   directory receives entries only once everything succeeded.
//! - Unpacking is bounded: the bytes written for one archive (counted as they are written,
//!   never taken from headers) may not exceed `min(`[`MAX_UNPACKED_BYTES`]`, max(`
//!   [`UNPACKED_BYTES_FLOOR`]`, `[`MAX_EXPANSION_RATIO`]` × the archive's size))`, else
//!   [`SourceError::TooLarge`]; [`UNPACK_LIMIT_VAR`] in the environment replaces that rule by
//!   a fixed number of bytes. An archive may hold at most [`MAX_UNPACKED_ENTRIES`] members
//!   ([`SourceError::TooManyEntries`]; [`UNPACK_ENTRIES_VAR`] sets another number), and one tar
//!   member at most [`MAX_MEMBER_HEADER_BYTES`] of headers
//!   ([`SourceError::MemberHeaderTooLarge`]). Device nodes, FIFOs and sockets in an archive
//!   (tar or zip) are refused ([`SourceError::BadMember`]): a source tree holds only files,
//!   directories and links.

mod fetch;
mod files;
mod http;
mod key;
mod record;
mod unpack;

pub use crate::http::HttpOptions;
pub use fetch::{mirrors_from_env, FetchEvent, FetchRequest, Origin};
pub use key::{ArchiveFormat, GitCommit, SourceKey, SourceType};
pub use record::{list_sources, source_record, KeepPolicy, SourceContent, SourceRecord};
pub use unpack::{
    MAX_EXPANSION_RATIO, MAX_MEMBER_HEADER_BYTES, MAX_MEMBER_PATH_BYTES, MAX_UNPACKED_BYTES,
    MAX_UNPACKED_ENTRIES, UNPACKED_BYTES_FLOOR, UNPACK_ENTRIES_VAR, UNPACK_LIMIT_VAR,
};

use std::io;
use std::path::{Path, PathBuf};

use crate::blob::BlobError;
use crate::hash::HashError;
use crate::http::HttpError;
use crate::index::IndexError;
use crate::tree::TreeError;
use crate::IoError;
use crate::Store;

/// Why an archive does not decode: its reader failed, or the zip layer refused it.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveFault {
    /// Reading or decompressing the archive stream failed.
    #[error(transparent)]
    Read(#[from] io::Error),
    /// The zip directory or a zip member is malformed.
    #[error(transparent)]
    Zip(#[from] zip::result::ZipError),
}

/// Errors of the source cache.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Text that should be a source key is not one.
    #[error("{input:?} is not a source key: {reason}")]
    BadKey { input: String, reason: String },
    /// An unknown `--type`.
    #[error("unknown source type {input:?}; expected tar.gz, tar.bz2, tar.xz, zip, files or git")]
    BadType { input: String },
    /// Neither `--type`, the key nor the URL's suffix tells the archive type.
    #[error(
        "cannot tell the archive type of {url}: its name does not end in .tar.gz, .tgz, \
         .tar.bz2, .tbz2, .tb2, .tar.xz, .txz or .zip; pass --type (tar.gz, tar.bz2, tar.xz, \
         zip or files)"
    )]
    UnknownType { url: String },
    /// The requested type contradicts the key or the origin.
    #[error("{reason}")]
    TypeConflict { reason: String },
    /// A location that cannot be fetched from.
    #[error("cannot fetch from {location:?}: {reason}")]
    BadLocation { location: String, reason: String },
    /// A tag that cannot be recorded.
    #[error("invalid tag {tag:?}: {reason}")]
    BadTag { tag: String, reason: String },
    /// The content has another key than the one expected; nothing was stored.
    #[error(
        "{url} has key {actual}, not the expected {expected}; nothing was stored (check the \
         URL, or the key if the upstream file was legitimately replaced)"
    )]
    KeyMismatch {
        expected: SourceKey,
        actual: SourceKey,
        url: String,
    },
    /// A download failed (error status, network, stall, truncated body; after the retries).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The git program failed.
    #[error("git {action} of {url} failed: {message}")]
    Git {
        url: String,
        action: &'static str,
        message: String,
    },
    /// An archive member would land outside the destination.
    #[error(
        "refusing to unpack member {member:?}: {reason}; the source may be malicious, nothing was unpacked"
    )]
    Security { member: String, reason: String },
    /// An archive member cannot be unpacked (not a security issue, but still fatal).
    #[error("cannot unpack {key}: member {member:?} {reason}")]
    BadMember {
        key: SourceKey,
        member: String,
        reason: String,
    },
    /// The archive expands to more than it may (see [`MAX_UNPACKED_BYTES`]); nothing was
    /// unpacked.
    #[error(
        "refusing to unpack {key}: it expands to more than {limit} bytes ({rule}); it may be a \
         decompression bomb, nothing was unpacked (if the source is genuine, set \
         {UNPACK_LIMIT_VAR}=BYTES to allow more)"
    )]
    TooLarge {
        key: SourceKey,
        limit: u64,
        rule: String,
    },
    /// An archive with more members than its limit (see [`MAX_UNPACKED_ENTRIES`]).
    #[error(
        "refusing to unpack {key}: it has more than {limit} members ({rule}); it may be an \
         archive bomb, nothing was unpacked (if the source is genuine, set \
         {UNPACK_ENTRIES_VAR}=N to allow more)"
    )]
    TooManyEntries {
        key: SourceKey,
        limit: u64,
        rule: String,
    },
    /// A tar member whose headers (long names, pax records) exceed [`MAX_MEMBER_HEADER_BYTES`].
    #[error(
        "refusing to unpack {key}: one member has more than {limit} bytes of headers (long \
         names, link names, pax records); the archive is malformed or hostile, nothing was \
         unpacked"
    )]
    MemberHeaderTooLarge { key: SourceKey, limit: u64 },
    /// An unpack limit in the environment ([`UNPACK_LIMIT_VAR`], [`UNPACK_ENTRIES_VAR`]) is
    /// not a number.
    #[error("cannot unpack {key}: {var}={value:?} is not a number; unset it or give a plain integer")]
    BadUnpackLimit {
        key: SourceKey,
        var: &'static str,
        value: String,
    },
    /// The archive does not decode (it was verified, so it was broken when fetched).
    #[error("cannot read the archive of {key}")]
    ArchiveRead {
        key: SourceKey,
        #[source]
        source: ArchiveFault,
    },
    /// The key is not in the cache.
    #[error("source {key} is not in the cache; fetch it first (hdist fetch URL {key})")]
    NotFound { key: SourceKey },
    /// The stored content does not belong to the key.
    #[error("the cached content of {key} does not match its key ({reason}); fetch it again")]
    ContentMismatch { key: SourceKey, reason: String },
    /// A source document does not parse.
    #[error("source document {path} is malformed: {reason}; fetch the source again")]
    BadRecord { path: PathBuf, reason: String },
    /// Unpacking would overwrite something.
    #[error("{path} exists and is not an empty directory; choose a new path")]
    DestinationExists { path: PathBuf },
    /// A local input changed while it was being fetched.
    #[error("{path} changed while it was being fetched; try again")]
    Changed { path: PathBuf },
    /// Something on disk that a source cannot hold.
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: &'static str },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Tree(#[from] TreeError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The store itself failed (e.g. taking its GC lock).
    #[error(transparent)]
    Store(Box<crate::store::StoreError>),
    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Gets the source `request` describes into the cache and returns its key.
///
/// With `request.expected` set and cached (document present, object present), returns at once
/// without any network I/O, only recording the location and tags. Otherwise the content is
/// fetched, its key computed before anything is stored, and compared with the expected key.
///
/// # Errors
/// [`SourceError::KeyMismatch`] (nothing stored), [`SourceError::UnknownType`],
/// [`SourceError::Http`] (after the retries `request.http` allows), [`SourceError::Git`], and store errors.
pub fn fetch(store: &Store, request: &FetchRequest<'_>) -> Result<SourceKey, SourceError> {
    // Shared GC lock: a source found present (and not downloaded again) must not be swept
    // before its document names it.
    let _writer = store.writer_lock().map_err(|e| SourceError::Store(Box::new(e)))?;
    fetch::fetch(store, request)
}

/// Forgets a source (GC): removes its document; its content goes with the next sweep.
pub fn remove_source(store: &Store, key: &SourceKey) -> Result<(), SourceError> {
    let path = record::record_path(store, key);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("remove", path, e).into()),
    }
}

/// Whether `key` is cached: its document exists and names an object that is present (the
/// object's content is verified when it is unpacked, not here).
pub fn has_source(store: &Store, key: &SourceKey) -> bool {
    matches!(fetch::present_record(store, key), Ok(Some(_)))
}

/// Unpacks the cached source `key` into `dest`, which must not exist or be an empty directory.
///
/// Archives lose a single top-level directory (Hashdist's behaviour); `files:` and `git:`
/// sources are written as stored. The content is verified against the key first; extraction
/// happens in a staging directory beside `dest`, and `dest` receives entries only after all
/// of them were written, so on any error `dest` is left as it was (absent or empty).
///
/// # Errors
/// [`SourceError::NotFound`], [`SourceError::DestinationExists`], [`SourceError::Security`]
/// naming the offending member, [`SourceError::Blob`] for corrupt objects,
/// [`SourceError::ContentMismatch`], [`SourceError::ArchiveRead`], [`SourceError::TooLarge`]
/// for an archive that expands past its limit, [`SourceError::TooManyEntries`] and
/// [`SourceError::MemberHeaderTooLarge`] for the other limits, I/O errors.
pub fn unpack_source(store: &Store, key: &SourceKey, dest: &Path) -> Result<(), SourceError> {
    unpack::unpack(store, key, dest)
}
