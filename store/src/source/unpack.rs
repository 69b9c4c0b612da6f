//! Unpacking a cached source into a directory, verified and confined.
//!
//! ```text
//! <parent of DIR>/
//! ├── .hdist-unpack-XXXXXX/     staging (same file system as DIR, so moves are renames)
//! │   └── root/                 the archive, extracted in its own coordinates
//! │       └── hello-2.10/       a single top-level directory: its content is what moves
//! └── DIR/                      receives the entries only after everything succeeded
//! ```
//!
//! Extraction never follows a link: every parent directory of a member is checked to be a real
//! directory created by this extraction, files are created with `O_EXCL`, and hard links must
//! point at a regular file extracted earlier. Anything that would land outside the staging
//! root is refused with [`SourceError::Security`] naming the member.
//!
//! An archive may not expand without bound (a few megabytes of gzip can hold terabytes of
//! zeros). The bytes written are counted as they are written, never trusted from headers,
//! and extraction stops at the first byte past
//! `min(MAX_UNPACKED_BYTES, max(UNPACKED_BYTES_FLOOR, MAX_EXPANSION_RATIO × archive size))`
//! with [`SourceError::TooLarge`]; the staging directory is then removed, so the destination
//! never sees any of it. Real sources stay far below: compilers and kernels expand about 10×.
//! [`UNPACK_LIMIT_VAR`] replaces the rule by a fixed number of bytes, for a genuine outlier.
//! For a tar archive the count covers the whole decompressed stream (headers, long names and
//! the data of members that write none, such as a directory claiming content), plus the zeros
//! of sparse holes, so no part of the stream is read for free.
//!
//! Other limits keep time and memory bounded whatever the archive claims:
//! - at most [`MAX_UNPACKED_ENTRIES`] members (files, directories and links alike; an archive
//!   of a million empty files costs little to make and much to write), else
//!   [`SourceError::TooManyEntries`]; [`UNPACK_ENTRIES_VAR`] sets another number;
//! - at most [`MAX_MEMBER_HEADER_BYTES`] of headers for one tar member (the tar parser holds
//!   GNU long names and pax records in memory), else [`SourceError::MemberHeaderTooLarge`];
//! - member paths of at most [`MAX_MEMBER_PATH_BYTES`] bytes, each component at most 255 (what
//!   Linux can open), without NUL bytes, else [`SourceError::Security`]; a path that is still
//!   too long once below the staging directory is [`SourceError::BadMember`].
//!
//! Device nodes, FIFOs and sockets are refused, in tar and zip archives alike (a zip entry
//! made on Unix carries the file type in its mode): a source tree has no use for them.
//! Symlinks are created with their target as stored, wherever it points (`../..` and absolute
//! targets included: a source tree may link anywhere); they are never followed here, and a
//! member whose path goes through one is refused.

use std::cell::{Cell, RefCell};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::record::{source_record, SourceContent};
use super::{files, ArchiveFormat, SourceError, SourceKey};
use crate::blob::BlobService;
use crate::tree;
use crate::Store;
use crate::{IoContext, IoError};

/// No archive unpacks to more bytes than this, whatever its size.
pub const MAX_UNPACKED_BYTES: u64 = 16 << 30;
/// An archive may expand to this many times its own size…
pub const MAX_EXPANSION_RATIO: u64 = 100;
/// …but any archive may expand to this much (small archives of text compress well).
pub const UNPACKED_BYTES_FLOOR: u64 = 256 << 20;
/// The environment variable that, set to a number of bytes, replaces the rule above.
pub const UNPACK_LIMIT_VAR: &str = "HDIST_MAX_UNPACKED_BYTES";
/// No archive may hold more members than this: several times the largest source trees
/// (a Linux kernel has about 90 000 files, an LLVM monorepo about 150 000).
pub const MAX_UNPACKED_ENTRIES: u64 = 1_000_000;
/// The environment variable that, set to a number, replaces [`MAX_UNPACKED_ENTRIES`].
pub const UNPACK_ENTRIES_VAR: &str = "HDIST_MAX_UNPACKED_ENTRIES";
/// The most bytes of headers (its own, GNU long name and link, pax records) one tar member may
/// have. Real ones need a few kilobytes at most: a path cannot be longer than 4 KiB.
pub const MAX_MEMBER_HEADER_BYTES: u64 = 1 << 20;
/// The longest member path accepted: Linux's `PATH_MAX` less its terminating NUL.
pub const MAX_MEMBER_PATH_BYTES: usize = 4095;
/// The longest component of a member path accepted (Linux's `NAME_MAX`).
const MAX_NAME_BYTES: usize = 255;

/// What one archive may cost, with the rules that set each limit (for the error messages).
#[derive(Debug, Clone)]
pub(crate) struct UnpackLimits {
    /// Bytes written (for tar: bytes of the decompressed stream, plus sparse holes).
    pub(crate) bytes: u64,
    pub(crate) bytes_rule: String,
    /// Members.
    pub(crate) entries: u64,
    pub(crate) entries_rule: String,
}

/// The limits for an archive of `archive_bytes`: the default rules, or the numbers set by
/// [`UNPACK_LIMIT_VAR`] and [`UNPACK_ENTRIES_VAR`].
pub(crate) fn unpack_limits(key: &SourceKey, archive_bytes: u64) -> Result<UnpackLimits, SourceError> {
    let (bytes, bytes_rule) = match env_limit(key, UNPACK_LIMIT_VAR)? {
        Some(limit) => limit,
        None => (
            default_unpack_limit(archive_bytes),
            format!(
                "the limit for a {archive_bytes}-byte archive: {MAX_EXPANSION_RATIO} times its size, \
                 at least {UNPACKED_BYTES_FLOOR} and at most {MAX_UNPACKED_BYTES} bytes"
            ),
        ),
    };
    let (entries, entries_rule) = env_limit(key, UNPACK_ENTRIES_VAR)?
        .unwrap_or((MAX_UNPACKED_ENTRIES, "the limit for any archive".to_string()));
    Ok(UnpackLimits {
        bytes,
        bytes_rule,
        entries,
        entries_rule,
    })
}

/// The number `var` is set to, with its rule; `None` if it is unset.
fn env_limit(key: &SourceKey, var: &'static str) -> Result<Option<(u64, String)>, SourceError> {
    let Some(value) = std::env::var_os(var) else {
        return Ok(None);
    };
    let value = value.to_string_lossy().into_owned();
    match value.trim().parse::<u64>() {
        Ok(limit) => Ok(Some((limit, format!("set by {var}")))),
        Err(_) => Err(SourceError::BadUnpackLimit {
            key: *key,
            var,
            value,
        }),
    }
}

fn default_unpack_limit(archive_bytes: u64) -> u64 {
    let by_ratio = archive_bytes.saturating_mul(MAX_EXPANSION_RATIO);
    by_ratio.clamp(UNPACKED_BYTES_FLOOR, MAX_UNPACKED_BYTES)
}

/// See [`super::unpack_source`].
pub(crate) fn unpack(store: &Store, key: &SourceKey, dest: &Path) -> Result<(), SourceError> {
    let dest_exists = check_destination(dest)?;
    let record = source_record(store, key)?.ok_or(SourceError::NotFound { key: *key })?;
    let blobs = store.blobs().as_ref();
    let staging = staging_dir(dest)?;
    let root = staging.path().join("root");
    let content = match (key, record.content) {
        (SourceKey::Archive { format, digest }, SourceContent::Blob(blob)) => {
            if blob.short() != *digest {
                return Err(SourceError::ContentMismatch {
                    key: *key,
                    reason: format!("its document names blob {blob}"),
                });
            }
            // `open` hands out the content only after hashing it against the blob digest,
            // so a corrupt object fails here, before anything is extracted.
            let file = blobs.open(&blob)?;
            let archive_bytes = file
                .metadata()
                .io_context("stat the archive of", key.to_string())?
                .len();
            let limits = unpack_limits(key, archive_bytes)?;
            extract_archive(*format, file, key, &root, limits)?;
            single_top_dir(&root)?
        }
        (SourceKey::Files { digest }, SourceContent::Tree(tree_digest)) => {
            match files::tree_pack_digest(blobs, &tree_digest)? {
                Ok(actual) if actual == *digest => {}
                Ok(actual) => {
                    return Err(SourceError::ContentMismatch {
                        key: *key,
                        reason: format!("its files hash to files:{actual}"),
                    })
                }
                Err(reason) => return Err(SourceError::ContentMismatch { key: *key, reason }),
            }
            // Their mtimes were normalised to 0 at fetch (the key covers content only).
            tree::export_tree(blobs, &tree_digest, &root, tree::ExportTimes::WriteTime)?;
            root
        }
        (SourceKey::Git { .. }, SourceContent::Tree(tree_digest)) => {
            tree::export_tree(blobs, &tree_digest, &root, tree::ExportTimes::WriteTime)?;
            root
        }
        (_, content) => {
            return Err(SourceError::ContentMismatch {
                key: *key,
                reason: format!(
                    "its document names a {}",
                    match content {
                        SourceContent::Blob(_) => "blob",
                        SourceContent::Tree(_) => "tree",
                    }
                ),
            })
        }
    };
    place(&content, dest, dest_exists)
}

/// Refuses a destination that is anything but absent or an empty directory; returns whether
/// it exists.
pub(crate) fn check_destination(dest: &Path) -> Result<bool, SourceError> {
    let not_empty = || SourceError::DestinationExists {
        path: dest.to_path_buf(),
    };
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(IoError::new("stat", dest, e).into()),
        Ok(_) => match fs::read_dir(dest).map(|mut entries| entries.next().is_none()) {
            Ok(true) => Ok(true),
            _ => Err(not_empty()),
        },
    }
}

/// A private directory beside `dest` (whose missing parents are created, as Hashdist did),
/// removed when dropped.
pub(crate) fn staging_dir(dest: &Path) -> Result<tempfile::TempDir, SourceError> {
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).io_context("create directory", &parent)?;
    Ok(tempfile::Builder::new()
        .prefix(".hdist-unpack-")
        .tempdir_in(&parent)
        .io_context("create a staging directory in", &parent)?)
}

/// Extracts an archive into `root` (which must not exist), within `limits`.
pub(crate) fn extract_archive(
    format: ArchiveFormat,
    file: File,
    key: &SourceKey,
    root: &Path,
    limits: UnpackLimits,
) -> Result<(), SourceError> {
    fs::create_dir(root).io_context("create directory", root)?;
    fs::set_permissions(root, Permissions::from_mode(0o755)).io_context("chmod", root)?;
    let mut x = Extractor {
        key: *key,
        root: root.to_path_buf(),
        dirs: Vec::new(),
        budget: Rc::new(Budget::new(*key, limits)),
        verified: RefCell::new(Vec::new()),
    };
    let reader = BufReader::with_capacity(1 << 20, file);
    match format {
        ArchiveFormat::TarGz => extract_tar(flate2::read::MultiGzDecoder::new(reader), &mut x)?,
        ArchiveFormat::TarBz2 => extract_tar(bzip2::read::MultiBzDecoder::new(reader), &mut x)?,
        ArchiveFormat::TarXz => extract_tar(xz2::read::XzDecoder::new_multi_decoder(reader), &mut x)?,
        ArchiveFormat::Zip => extract_zip(reader, &mut x)?,
    }
    x.finish()
}

/// What an archive has cost so far, against its limits. Shared by the extractor (which
/// charges the content it writes) and the [`MeteredReader`] under the tar parser (which
/// charges everything else the parser reads).
struct Budget {
    key: SourceKey,
    limits: UnpackLimits,
    bytes: Cell<u64>,
    entries: Cell<u64>,
    phase: Cell<Phase>,
    /// The limit a read under the tar parser hit: the parser hands back only an `io::Error`.
    tripped: RefCell<Option<SourceError>>,
}

/// What the tar parser is reading.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// The headers of the next member, with the bytes read for them so far.
    Headers(u64),
    /// A member's content, charged by the extractor as it writes it.
    Content,
    /// Content nobody writes (a directory's, the rest of a refused member's), read to get past it.
    Skipped,
}

impl Budget {
    fn new(key: SourceKey, limits: UnpackLimits) -> Budget {
        Budget {
            key,
            limits,
            bytes: Cell::new(0),
            entries: Cell::new(0),
            phase: Cell::new(Phase::Content),
            tripped: RefCell::new(None),
        }
    }

    /// Counts `n` more bytes; checked before they are written, so the limit holds for what
    /// reaches the disk, whatever the headers announced.
    fn charge(&self, n: u64) -> Result<(), SourceError> {
        let bytes = self.bytes.get().saturating_add(n);
        self.bytes.set(bytes);
        if bytes > self.limits.bytes {
            return Err(SourceError::TooLarge {
                key: self.key,
                limit: self.limits.bytes,
                rule: self.limits.bytes_rule.clone(),
            });
        }
        Ok(())
    }

    /// Counts one more member.
    fn count_entry(&self) -> Result<(), SourceError> {
        let entries = self.entries.get() + 1;
        self.entries.set(entries);
        self.check_entries(entries)
    }

    fn check_entries(&self, entries: u64) -> Result<(), SourceError> {
        if entries > self.limits.entries {
            return Err(SourceError::TooManyEntries {
                key: self.key,
                limit: self.limits.entries,
                rule: self.limits.entries_rule.clone(),
            });
        }
        Ok(())
    }

    /// Charges `n` bytes the tar parser read in the current phase.
    fn charge_read(&self, n: u64) -> Result<(), SourceError> {
        match self.phase.get() {
            Phase::Content => Ok(()),
            Phase::Skipped => self.charge(n),
            Phase::Headers(read) => {
                let read = read.saturating_add(n);
                self.phase.set(Phase::Headers(read));
                if read > MAX_MEMBER_HEADER_BYTES {
                    return Err(SourceError::MemberHeaderTooLarge {
                        key: self.key,
                        limit: MAX_MEMBER_HEADER_BYTES,
                    });
                }
                self.charge(n)
            }
        }
    }

    /// The error for a failed read under the tar parser: the limit it hit, if it hit one.
    fn read_error(&self, e: io::Error) -> SourceError {
        self.tripped
            .borrow_mut()
            .take()
            .unwrap_or_else(|| SourceError::ArchiveRead {
                key: self.key,
                source: e.into(),
            })
    }
}

/// The decompressed stream under the tar parser, charging its budget as it is read.
struct MeteredReader<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for MeteredReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.budget.charge_read(n as u64) {
            let message = e.to_string();
            *self.budget.tripped.borrow_mut() = Some(e);
            return Err(io::Error::other(message));
        }
        Ok(n)
    }
}

/// If `root` holds exactly one entry and it is a directory, that directory (Hashdist strips
/// the single top-level directory of an archive); otherwise `root`.
pub(crate) fn single_top_dir(root: &Path) -> Result<PathBuf, SourceError> {
    let mut entries = fs::read_dir(root).io_context("read directory", root)?;
    let first = match entries.next() {
        Some(entry) => entry.io_context("read directory", root)?,
        None => return Ok(root.to_path_buf()),
    };
    if entries.next().is_some() {
        return Ok(root.to_path_buf());
    }
    let path = first.path();
    let meta = fs::symlink_metadata(&path).io_context("stat", &path)?;
    Ok(if meta.is_dir() { path } else { root.to_path_buf() })
}

/// Moves the finished `content` to `dest`: a rename if `dest` does not exist, else a rename of
/// each entry into it (undone if one fails, so `dest` is left empty).
pub(crate) fn place(content: &Path, dest: &Path, dest_exists: bool) -> Result<(), SourceError> {
    if !dest_exists {
        return Ok(fs::rename(content, dest).io_context("rename into place", dest)?);
    }
    let entries: Vec<_> = fs::read_dir(content)
        .and_then(|entries| entries.collect::<Result<Vec<_>, _>>())
        .io_context("read directory", content)?;
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(entries.len());
    for entry in entries {
        let from = entry.path();
        let to = dest.join(entry.file_name());
        if let Err(e) = fs::rename(&from, &to) {
            for (from, to) in moved.iter().rev() {
                let _ = fs::rename(to, from);
            }
            return Err(IoError::new("move into", dest, e).into());
        }
        moved.push((from, to));
    }
    Ok(())
}

fn extract_tar(reader: impl Read, x: &mut Extractor) -> Result<(), SourceError> {
    let budget = Rc::clone(&x.budget);
    let mut archive = tar::Archive::new(MeteredReader {
        inner: reader,
        budget: Rc::clone(&budget),
    });
    let mut entries = archive.entries().map_err(|e| budget.read_error(e))?;
    loop {
        budget.phase.set(Phase::Headers(0));
        let next = entries.next();
        budget.phase.set(Phase::Content);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|e| budget.read_error(e))?;
        budget.count_entry()?;
        extract_tar_member(&mut entry, x)?;
        // Whatever the member did not consume is read here, charged, rather than skipped
        // unseen by the parser.
        budget.phase.set(Phase::Skipped);
        io::copy(&mut entry, &mut io::sink()).map_err(|e| budget.read_error(e))?;
    }
    Ok(())
}

fn extract_tar_member(entry: &mut tar::Entry<'_, impl Read>, x: &mut Extractor) -> Result<(), SourceError> {
    let raw = entry.path_bytes().into_owned();
    let member = display(&raw);
    let header = entry.header();
    let mode = header.mode().ok();
    // Far-future times (base-256 fields hold up to 2^63 seconds) are dropped, not added.
    let mtime = header
        .mtime()
        .ok()
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
    let kind = header.entry_type();
    let comps = components(&member, &raw)?;
    use tar::EntryType as T;
    match kind {
        T::Directory => x.dir(&member, &comps, mode, mtime)?,
        // Old (v7) archives mark directories only by a trailing slash.
        T::Regular if raw.ends_with(b"/") => x.dir(&member, &comps, mode, mtime)?,
        T::Regular | T::Continuous | T::GNUSparse => x.file(&member, &comps, mode, mtime, entry)?,
        T::Symlink => {
            let target = link_target(entry, x.key, &member)?;
            x.symlink(&member, &comps, &target)?
        }
        T::Link => {
            let target = link_target(entry, x.key, &member)?;
            x.hardlink(&member, &comps, &target)?
        }
        // Metadata for the whole archive (e.g. the commit id `git archive` writes).
        T::XGlobalHeader => {}
        T::Char => return Err(x.special_file(&member, "character device")),
        T::Block => return Err(x.special_file(&member, "block device")),
        T::Fifo => return Err(x.special_file(&member, "FIFO")),
        other => log::warn!(
            "{}: skipping member {member:?}: a {other:?} entry has no place in a source tree",
            x.key
        ),
    }
    Ok(())
}

fn link_target(
    entry: &tar::Entry<'_, impl Read>,
    key: SourceKey,
    member: &str,
) -> Result<Vec<u8>, SourceError> {
    match entry.link_name_bytes() {
        Some(target) if !target.is_empty() => Ok(target.into_owned()),
        _ => Err(SourceError::BadMember {
            key,
            member: member.to_string(),
            reason: "is a link without a target".to_string(),
        }),
    }
}

fn extract_zip<R: Read + io::Seek>(reader: R, x: &mut Extractor) -> Result<(), SourceError> {
    let key = x.key;
    let zip_error = |e: zip::result::ZipError| SourceError::ArchiveRead {
        key,
        source: e.into(),
    };
    let mut zip = zip::ZipArchive::new(reader).map_err(zip_error)?;
    // The central directory lists every member: refused before any is written.
    x.budget.check_entries(zip.len() as u64)?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(zip_error)?;
        let raw = entry.name_raw().to_vec();
        let member = display(&raw);
        let comps = components(&member, &raw)?;
        let unix_mode = entry.unix_mode();
        let mtime = entry
            .last_modified()
            .and_then(|t| dos_time_to_system(t.year(), t.month(), t.day(), t.hour(), t.minute(), t.second()));
        match unix_mode.map(|m| m & S_IFMT) {
            _ if entry.is_dir() => x.dir(&member, &comps, unix_mode, mtime)?,
            Some(S_IFDIR) => x.dir(&member, &comps, unix_mode, mtime)?,
            Some(S_IFLNK) => {
                let mut target = Vec::new();
                (&mut entry)
                    .take(MAX_MEMBER_PATH_BYTES as u64 + 1)
                    .read_to_end(&mut target)
                    .map_err(|e| SourceError::ArchiveRead {
                        key,
                        source: e.into(),
                    })?;
                x.budget.charge(target.len() as u64)?;
                if target.is_empty() {
                    return Err(x.bad(&member, "is a link without a target".to_string()));
                }
                x.symlink(&member, &comps, &target)?;
            }
            Some(S_IFCHR) => return Err(x.special_file(&member, "character device")),
            Some(S_IFBLK) => return Err(x.special_file(&member, "block device")),
            Some(S_IFIFO) => return Err(x.special_file(&member, "FIFO")),
            Some(S_IFSOCK) => return Err(x.special_file(&member, "socket")),
            // Regular files, and entries from systems that record no Unix type.
            _ => x.file(&member, &comps, unix_mode, mtime, &mut entry)?,
        }
    }
    Ok(())
}

// File types in a Unix mode (`st_mode & S_IFMT`), as zip entries made on Unix record them.
const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFIFO: u32 = 0o010_000;

/// Zip stores local time without a zone; it is taken as UTC (builds only compare times).
fn dos_time_to_system(year: u16, month: u8, day: u8, hour: u8, minute: u8, second: u8) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
    let (y, m, d) = (i64::from(year), i64::from(month), i64::from(day));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

fn display(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// The components of a member path, or a security error if it is absolute or climbs out.
fn components(member: &str, raw: &[u8]) -> Result<Vec<Vec<u8>>, SourceError> {
    let refuse = |reason: &str| SourceError::Security {
        member: shortened(member),
        reason: reason.to_string(),
    };
    if raw.len() > MAX_MEMBER_PATH_BYTES {
        return Err(refuse(&format!(
            "its path is {} bytes long, more than the {MAX_MEMBER_PATH_BYTES} a path may have",
            raw.len()
        )));
    }
    // Zip names may hold one; no file name can.
    if raw.contains(&0) {
        return Err(refuse("it has a NUL byte in its name"));
    }
    if raw.starts_with(b"/") {
        return Err(refuse("it is an absolute path"));
    }
    let mut out = Vec::new();
    for component in raw.split(|b| *b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(refuse("it has a '..' component")),
            c if c.len() > MAX_NAME_BYTES => {
                return Err(refuse(&format!(
                    "it has a component of {} bytes, more than the {MAX_NAME_BYTES} a file name may have",
                    c.len()
                )))
            }
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

/// `member`, cut to a length an error message can show.
fn shortened(member: &str) -> String {
    const SHOWN: usize = 200;
    match member.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &member[..end]),
        None => member.to_string(),
    }
}

fn join(comps: &[Vec<u8>]) -> String {
    display(&comps.join(&b'/'))
}

/// Writes members below a private root, never through a link.
struct Extractor {
    key: SourceKey,
    root: PathBuf,
    /// Directories with their archive mode and time, applied at the end (a read-only
    /// directory could not be filled, and filling one changes its time).
    dirs: Vec<(PathBuf, Option<u32>, Option<SystemTime>)>,
    budget: Rc<Budget>,
    /// The components of the last directory `walk_dirs` found to be real directories all the
    /// way down. They stay so: no member replaces or removes a directory. Members that share
    /// its leading components skip checking them again, so a path thousands of directories
    /// deep (each check a kernel walk of the whole path) is checked once, not per member.
    verified: RefCell<Vec<Vec<u8>>>,
}

impl Extractor {
    fn bad(&self, member: &str, reason: String) -> SourceError {
        SourceError::BadMember {
            key: self.key,
            member: shortened(member),
            reason,
        }
    }

    /// The error for an I/O failure on `path` while writing `member`: a path too long for the
    /// file system is the archive's doing and named as such; anything else is the machine's.
    fn io<'a>(
        &self,
        member: &'a str,
        action: &'static str,
        path: &Path,
    ) -> impl FnOnce(io::Error) -> SourceError + 'a {
        let key = self.key;
        let path = path.to_path_buf();
        move |source| {
            if source.raw_os_error() == Some(libc::ENAMETOOLONG) {
                SourceError::BadMember {
                    key,
                    member: shortened(member),
                    reason: format!("has a path too long to create here ({source})"),
                }
            } else {
                IoError::new(action, path, source).into()
            }
        }
    }

    /// The refusal of a device node, FIFO or socket: creating one needs privileges or gives
    /// builds a way to reach the host, and no honest source ships one.
    fn special_file(&self, member: &str, kind: &str) -> SourceError {
        self.bad(
            member,
            format!("is a {kind}, which has no place in a source tree; remove it from the archive"),
        )
    }

    /// The directory `comps` below the root, each component checked to be a real directory
    /// (created if missing and `create`).
    fn walk_dirs(&self, member: &str, comps: &[Vec<u8>], create: bool) -> Result<PathBuf, SourceError> {
        let known = {
            let verified = self.verified.borrow();
            verified.iter().zip(comps).take_while(|(a, b)| a == b).count()
        };
        let mut path = self.root.clone();
        for component in &comps[..known] {
            path.push(OsStr::from_bytes(component));
        }
        for (i, component) in comps.iter().enumerate().skip(known) {
            path.push(OsStr::from_bytes(component));
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(SourceError::Security {
                        member: member.to_string(),
                        reason: format!("its path goes through the symlink {:?}", join(&comps[..=i])),
                    })
                }
                Ok(_) => {
                    return Err(self.bad(
                        member,
                        format!(
                            "has a path through {:?}, which is not a directory",
                            join(&comps[..=i])
                        ),
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&path).map_err(self.io(member, "create directory", &path))?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(self.bad(
                        member,
                        format!("refers to {:?}, which is not in the archive", join(comps)),
                    ))
                }
                Err(e) => return Err(self.io(member, "stat", &path)(e)),
            }
        }
        *self.verified.borrow_mut() = comps.to_vec();
        Ok(path)
    }

    /// The path for a new non-directory member, with its parents created and any earlier
    /// member of the same name removed (a later member replaces an earlier one, as with tar).
    fn slot(&self, member: &str, comps: &[Vec<u8>]) -> Result<PathBuf, SourceError> {
        let Some((last, parents)) = comps.split_last() else {
            return Err(self.bad(member, "has an empty name".to_string()));
        };
        let path = self
            .walk_dirs(member, parents, true)?
            .join(OsStr::from_bytes(last));
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
            Err(e) => Err(self.io(member, "stat", &path)(e)),
            Ok(meta) if meta.is_dir() => Err(self.bad(member, "would replace a directory".to_string())),
            Ok(_) => {
                fs::remove_file(&path).map_err(self.io(member, "replace", &path))?;
                Ok(path)
            }
        }
    }

    fn dir(
        &mut self,
        member: &str,
        comps: &[Vec<u8>],
        mode: Option<u32>,
        mtime: Option<SystemTime>,
    ) -> Result<(), SourceError> {
        let path = self.walk_dirs(member, comps, true)?;
        self.dirs.push((path, mode, mtime));
        Ok(())
    }

    fn file(
        &mut self,
        member: &str,
        comps: &[Vec<u8>],
        mode: Option<u32>,
        mtime: Option<SystemTime>,
        content: &mut dyn Read,
    ) -> Result<(), SourceError> {
        let path = self.slot(member, comps)?;
        // O_EXCL: never opens an existing file, nor follows a symlink someone left there.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(self.io(member, "create", &path))?;
        // Copied by hand to tell a broken archive (a read error) from a full disk.
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match content.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(SourceError::ArchiveRead {
                        key: self.key,
                        source: e.into(),
                    })
                }
            };
            self.budget.charge(n as u64)?;
            out.write_all(&buf[..n])
                .map_err(self.io(member, "write", &path))?;
        }
        // Group and other never get write access; the owner always may read and write (builds
        // patch sources).
        let mode = (mode.unwrap_or(0o644) & 0o755) | 0o600;
        out.set_permissions(Permissions::from_mode(mode))
            .map_err(self.io(member, "chmod", &path))?;
        // Archive times matter: make decides from them whether generated files (configure)
        // are up to date.
        if let Some(mtime) = mtime {
            out.set_modified(mtime)
                .map_err(self.io(member, "set the time of", &path))?;
        }
        Ok(())
    }

    fn symlink(&mut self, member: &str, comps: &[Vec<u8>], target: &[u8]) -> Result<(), SourceError> {
        // The target is stored as-is and never followed here; members below it are refused
        // by `walk_dirs`.
        if target.contains(&0) {
            return Err(self.bad(member, "is a symlink whose target has a NUL byte".to_string()));
        }
        let path = self.slot(member, comps)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).map_err(self.io(
            member,
            "create symlink",
            &path,
        ))
    }

    fn hardlink(&mut self, member: &str, comps: &[Vec<u8>], target: &[u8]) -> Result<(), SourceError> {
        let target_display = display(target);
        let target_comps = components(member, target).map_err(|_| SourceError::Security {
            member: member.to_string(),
            reason: format!("it is a hard link to {target_display:?}, outside the destination"),
        })?;
        let Some((last, parents)) = target_comps.split_last() else {
            return Err(self.bad(member, "is a hard link without a target".to_string()));
        };
        let target_path = self
            .walk_dirs(member, parents, false)?
            .join(OsStr::from_bytes(last));
        match fs::symlink_metadata(&target_path) {
            Ok(meta) if meta.is_file() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(SourceError::Security {
                    member: member.to_string(),
                    reason: format!("it is a hard link to the symlink {target_display:?}"),
                })
            }
            _ => {
                return Err(self.bad(
                    member,
                    format!("is a hard link to {target_display:?}, which is not a file extracted before it"),
                ))
            }
        }
        if target_comps == comps {
            return Ok(());
        }
        let path = self.slot(member, comps)?;
        fs::hard_link(&target_path, &path).map_err(self.io(member, "create hard link", &path))
    }

    /// Applies directory modes and times, deepest first.
    fn finish(self) -> Result<(), SourceError> {
        for (path, mode, mtime) in self.dirs.iter().rev() {
            let mode = (mode.unwrap_or(0o755) & 0o755) | 0o700;
            fs::set_permissions(path, Permissions::from_mode(mode)).io_context("chmod", path)?;
            if let Some(mtime) = mtime {
                File::open(path)
                    .and_then(|dir| dir.set_modified(*mtime))
                    .io_context("set the time of", path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::Digest;

    pub(super) fn key() -> SourceKey {
        SourceKey::Archive {
            format: ArchiveFormat::TarGz,
            digest: Digest::of(b"test").short(),
        }
    }

    /// A tar header whose name and link name are written raw (the tar crate's setters refuse
    /// `..` and absolute paths, which is what these tests need).
    fn raw_header(name: &[u8], kind: tar::EntryType, size: u64, link: &[u8]) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(if kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_mtime(1_000_000_000);
        header.set_cksum();
        header
    }

    /// A tar member to write: name, kind, content, link target.
    type Member<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

    fn tar_gz(members: &[Member<'_>]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, content, link) in members {
            let short = if name.len() > 100 {
                // A GNU long name first, as GNU tar writes it.
                let mut long = raw_header(b"././@LongLink", T::GNULongName, name.len() as u64 + 1, b"");
                long.set_cksum();
                builder.append(&long, &[*name, b"\0"].concat()[..]).unwrap();
                &name[..100]
            } else {
                name
            };
            let header = raw_header(short, *kind, content.len() as u64, link);
            builder.append(&header, *content).unwrap();
        }
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        gz.finish().unwrap()
    }

    fn extract(bytes: &[u8], format: ArchiveFormat) -> (tempfile::TempDir, Result<PathBuf, SourceError>) {
        extract_with_limit(bytes, format, default_unpack_limit(bytes.len() as u64))
    }

    fn extract_with_limit(
        bytes: &[u8],
        format: ArchiveFormat,
        limit: u64,
    ) -> (tempfile::TempDir, Result<PathBuf, SourceError>) {
        extract_with_limits(bytes, format, test_limits(limit, MAX_UNPACKED_ENTRIES))
    }

    /// Limits of `bytes` and `entries`, with rules naming the test.
    pub(super) fn test_limits(bytes: u64, entries: u64) -> UnpackLimits {
        UnpackLimits {
            bytes,
            bytes_rule: "the test's limit".to_string(),
            entries,
            entries_rule: "the test's entry limit".to_string(),
        }
    }

    /// Extracts `bytes` into `<temp>/root` (the archive is `<temp>/archive`); returns the
    /// temporary directory and the content directory (the single top directory stripped).
    pub(super) fn extract_with_limits(
        bytes: &[u8],
        format: ArchiveFormat,
        limits: UnpackLimits,
    ) -> (tempfile::TempDir, Result<PathBuf, SourceError>) {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("archive");
        fs::write(&archive, bytes).unwrap();
        let root = dir.path().join("root");
        let result = extract_archive(format, File::open(&archive).unwrap(), &key(), &root, limits)
            .and_then(|()| single_top_dir(&root));
        (dir, result)
    }

    /// Sum of the sizes of the regular files below `dir`.
    fn bytes_under(dir: &Path) -> u64 {
        let mut total = 0;
        for entry in fs::read_dir(dir).unwrap() {
            let meta = fs::symlink_metadata(entry.as_ref().unwrap().path()).unwrap();
            total += if meta.is_dir() {
                bytes_under(&entry.unwrap().path())
            } else {
                meta.len()
            };
        }
        total
    }

    #[test]
    fn expansion_stops_at_the_limit() {
        const MIB: usize = 1 << 20;
        let zeros = vec![0u8; 8 * MIB];
        let bytes = tar_gz(&[
            (b"bomb/small", T::Regular, b"fine", b""),
            (b"bomb/zeros", T::Regular, &zeros, b""),
        ]);
        assert!(bytes.len() < 64 << 10, "{} bytes", bytes.len());
        let (dir, result) = extract_with_limit(&bytes, ArchiveFormat::TarGz, MIB as u64);
        match result {
            Err(SourceError::TooLarge { limit, ref rule, .. }) => {
                assert_eq!(limit, MIB as u64);
                assert_eq!(rule, "the test's limit");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        let message = result.unwrap_err().to_string();
        assert!(message.contains(&key().to_string()), "{message}");
        assert!(message.contains(UNPACK_LIMIT_VAR), "{message}");
        // Stopped while streaming, not after writing everything.
        let written = bytes_under(&dir.path().join("root"));
        assert!(written <= MIB as u64, "{written} bytes written");
        // The same archive within its limit unpacks whole.
        let (_dir, result) = extract_with_limit(&bytes, ArchiveFormat::TarGz, 9 * MIB as u64);
        assert_eq!(
            fs::metadata(result.unwrap().join("zeros")).unwrap().len(),
            8 * MIB as u64
        );
    }

    #[test]
    fn default_limit_rule() {
        assert_eq!(default_unpack_limit(0), UNPACKED_BYTES_FLOOR);
        // The 2 MB gzip that held a 2 GiB file.
        assert_eq!(default_unpack_limit(2_000_000), UNPACKED_BYTES_FLOOR);
        assert_eq!(default_unpack_limit(100 << 20), 100 * (100 << 20));
        assert_eq!(default_unpack_limit(1 << 30), MAX_UNPACKED_BYTES);
        assert_eq!(default_unpack_limit(u64::MAX), MAX_UNPACKED_BYTES);
    }

    #[test]
    fn refuses_devices_and_fifos() {
        for kind in [T::Char, T::Block, T::Fifo] {
            let bytes = tar_gz(&[(b"pkg/ok", T::Regular, b"1", b""), (b"pkg/dev", kind, b"", b"")]);
            let (_dir, result) = extract(&bytes, ArchiveFormat::TarGz);
            match result {
                Err(SourceError::BadMember { member, reason, .. }) => {
                    assert_eq!(member, "pkg/dev");
                    assert!(reason.contains("has no place in a source tree"), "{reason}");
                }
                other => panic!("{kind:?}: expected BadMember, got {other:?}"),
            }
        }
    }

    use tar::EntryType as T;

    #[test]
    fn extracts_and_strips_single_top_dir() {
        let bytes = tar_gz(&[
            (b"pkg-1.0/", T::Directory, b"", b""),
            (b"pkg-1.0/configure", T::Regular, b"#!/bin/sh\n", b""),
            (b"pkg-1.0/src/main.c", T::Regular, b"int main;", b""),
            (b"pkg-1.0/link", T::Symlink, b"", b"configure"),
            (b"pkg-1.0/hard", T::Link, b"", b"pkg-1.0/configure"),
        ]);
        let (_dir, result) = extract(&bytes, ArchiveFormat::TarGz);
        let top = result.unwrap();
        assert!(top.ends_with("root/pkg-1.0"), "{}", top.display());
        assert_eq!(fs::read(top.join("src/main.c")).unwrap(), b"int main;");
        assert_eq!(fs::read_link(top.join("link")).unwrap(), Path::new("configure"));
        assert_eq!(fs::read(top.join("hard")).unwrap(), b"#!/bin/sh\n");
        let mtime = fs::metadata(top.join("configure")).unwrap().modified().unwrap();
        assert_eq!(mtime, UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    }

    #[test]
    fn several_top_entries_are_not_stripped() {
        let bytes = tar_gz(&[(b"./a/x", T::Regular, b"1", b""), (b"./b", T::Regular, b"2", b"")]);
        let (_dir, result) = extract(&bytes, ArchiveFormat::TarGz);
        let top = result.unwrap();
        assert!(top.ends_with("root"));
        assert_eq!(fs::read(top.join("a/x")).unwrap(), b"1");
        // A single top-level *file* is not a directory to strip either.
        let bytes = tar_gz(&[(b"README", T::Regular, b"r", b"")]);
        let (_dir, result) = extract(&bytes, ArchiveFormat::TarGz);
        assert!(result.unwrap().ends_with("root"));
    }

    fn refused(members: &[Member<'_>], member: &str) {
        let (dir, result) = extract(&tar_gz(members), ArchiveFormat::TarGz);
        match result {
            Err(SourceError::Security { member: m, .. }) => assert_eq!(m, member),
            other => panic!("expected a security error for {member}, got {other:?}"),
        }
        // Nothing escaped next to the staging root.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn refuses_escaping_members() {
        refused(&[(b"../evil", T::Regular, b"x", b"")], "../evil");
        refused(&[(b"a/../../evil", T::Regular, b"x", b"")], "a/../../evil");
        refused(&[(b"/abs/evil", T::Regular, b"x", b"")], "/abs/evil");
        refused(
            &[
                (b"link", T::Symlink, b"", b".."),
                (b"link/evil", T::Regular, b"x", b""),
            ],
            "link/evil",
        );
        refused(
            &[
                (b"d/link", T::Symlink, b"", b"/tmp"),
                (b"d/link/x/evil", T::Directory, b"", b""),
            ],
            "d/link/x/evil",
        );
        refused(&[(b"hl", T::Link, b"", b"../outside")], "hl");
        refused(&[(b"hl", T::Link, b"", b"/etc/passwd")], "hl");
        refused(
            &[
                (b"s", T::Symlink, b"", b"/etc/passwd"),
                (b"hl", T::Link, b"", b"s"),
            ],
            "hl",
        );
    }

    #[test]
    fn a_file_replacing_a_symlink_does_not_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"safe").unwrap();
        let target = victim.as_os_str().as_bytes().to_vec();
        let bytes = tar_gz(&[
            (b"x", T::Symlink, b"", &target),
            (b"x", T::Regular, b"overwritten?", b""),
        ]);
        let (_d, result) = extract(&bytes, ArchiveFormat::TarGz);
        let root = result.unwrap();
        assert_eq!(fs::read(root.join("x")).unwrap(), b"overwritten?");
        assert_eq!(fs::read(&victim).unwrap(), b"safe");
    }

    #[test]
    fn corrupt_archives_are_read_errors() {
        let mut bytes = tar_gz(&[(b"a", T::Regular, &[7u8; 4096], b"")]);
        let n = bytes.len();
        bytes.truncate(n - 20);
        let (_d, result) = extract(&bytes, ArchiveFormat::TarGz);
        assert!(
            matches!(result, Err(SourceError::ArchiveRead { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn zip_archives() {
        use zip::write::SimpleFileOptions;
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default().unix_permissions(0o755);
        zip.add_directory("top/", options).unwrap();
        zip.start_file("top/run.sh", options).unwrap();
        zip.write_all(b"#!/bin/sh\n").unwrap();
        zip.add_symlink("top/alias", "run.sh", options).unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let (_d, result) = extract(&bytes, ArchiveFormat::Zip);
        let top = result.unwrap();
        assert!(top.ends_with("root/top"));
        assert_eq!(fs::read(top.join("run.sh")).unwrap(), b"#!/bin/sh\n");
        let mode = fs::metadata(top.join("run.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(fs::read_link(top.join("alias")).unwrap(), Path::new("run.sh"));

        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        zip.start_file("../evil", SimpleFileOptions::default()).unwrap();
        zip.write_all(b"x").unwrap();
        let bytes = zip.finish().unwrap().into_inner();
        let (_d, result) = extract(&bytes, ArchiveFormat::Zip);
        assert!(
            matches!(&result, Err(SourceError::Security { member, .. }) if member == "../evil"),
            "{result:?}"
        );
    }

    /// A zip archive of `top/file` and `top/special`, whose Unix mode is `mode`.
    fn zip_with_mode(mode: u32) -> Vec<u8> {
        use zip::write::SimpleFileOptions;
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        let options = SimpleFileOptions::default().unix_permissions(0o644);
        zip.start_file("top/file", options).unwrap();
        zip.write_all(b"x").unwrap();
        zip.start_file("top/special", options).unwrap();
        let mut bytes = zip.finish().unwrap().into_inner();
        // The writer records permissions only: the type goes into the central directory's
        // external attributes by hand ("version made by" 3 = Unix).
        let at = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
        bytes[at + 5] = 3;
        bytes[at + 38..at + 42].copy_from_slice(&(mode << 16).to_le_bytes());
        bytes
    }

    /// Fuzzing found: a zip entry with the Unix type of a FIFO or device was unpacked as an
    /// empty regular file, where tar refuses the same member.
    #[test]
    fn zip_special_files_are_refused() {
        for (mode, kind) in [
            (S_IFIFO | 0o644, "FIFO"),
            (S_IFCHR | 0o644, "character device"),
            (S_IFBLK | 0o644, "block device"),
            (S_IFSOCK | 0o644, "socket"),
        ] {
            let (_dir, result) = extract(&zip_with_mode(mode), ArchiveFormat::Zip);
            match result {
                Err(SourceError::BadMember { member, reason, .. }) => {
                    assert_eq!(member, "top/special");
                    assert!(
                        reason.contains(&format!("is a {kind}, which has no place")),
                        "{reason}"
                    );
                }
                other => panic!("{kind}: expected BadMember, got {other:?}"),
            }
        }
        // A directory by its mode alone is a directory; a plain file stays one.
        let (_dir, result) = extract(&zip_with_mode(S_IFDIR | 0o755), ArchiveFormat::Zip);
        assert!(result.unwrap().join("special").is_dir());
        let (_dir, result) = extract(&zip_with_mode(0o100_644), ArchiveFormat::Zip);
        assert_eq!(fs::read(result.unwrap().join("special")).unwrap(), b"");
    }

    #[test]
    fn member_count_stops_at_the_limit() {
        let names: Vec<Vec<u8>> = (0..11).map(|i| format!("pkg/f{i}").into_bytes()).collect();
        let members: Vec<_> = names
            .iter()
            .map(|n| (n.as_slice(), T::Regular, &b""[..], &b""[..]))
            .collect();
        let bytes = tar_gz(&members);
        let (_dir, result) = extract_with_limits(&bytes, ArchiveFormat::TarGz, test_limits(1 << 20, 10));
        let message = match result {
            Err(e @ SourceError::TooManyEntries { limit: 10, .. }) => e.to_string(),
            other => panic!("expected TooManyEntries, got {other:?}"),
        };
        assert!(message.contains(UNPACK_ENTRIES_VAR), "{message}");
        assert!(message.contains("more than 10 members"), "{message}");
        let (_dir, result) = extract_with_limits(&bytes, ArchiveFormat::TarGz, test_limits(1 << 20, 11));
        assert_eq!(fs::read_dir(result.unwrap()).unwrap().count(), 11);

        // Zip lists its members up front: refused before the first is written.
        use zip::write::SimpleFileOptions;
        let mut zip = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for i in 0..11 {
            zip.start_file(format!("pkg/f{i}"), SimpleFileOptions::default())
                .unwrap();
        }
        let bytes = zip.finish().unwrap().into_inner();
        let (dir, result) = extract_with_limits(&bytes, ArchiveFormat::Zip, test_limits(1 << 20, 10));
        assert!(
            matches!(result, Err(SourceError::TooManyEntries { .. })),
            "{result:?}"
        );
        assert_eq!(fs::read_dir(dir.path().join("root")).unwrap().count(), 0);
    }

    /// Fuzzing found: a GNU long name is read into memory whole by the tar parser, so a
    /// kilobyte of gzip claiming a 64 MiB name took 64 MiB of memory (and a large archive's
    /// could take all of it).
    #[test]
    fn long_name_bombs_stop_at_the_header_limit() {
        let mut long = tar::Header::new_gnu();
        long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long.set_entry_type(T::GNULongName);
        let name = vec![b'a'; 64 << 20];
        long.set_size(name.len() as u64);
        long.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&long, name.as_slice()).unwrap();
        builder
            .append(&raw_header(b"x", T::Regular, 1, b""), &b"x"[..])
            .unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&builder.into_inner().unwrap()).unwrap();
        let bytes = gz.finish().unwrap();
        let ((_dir, result), heap) =
            crate::fuzzing::peak_heap(|| extract_with_limit(&bytes, ArchiveFormat::TarGz, 1 << 30));
        assert!(heap < 8 << 20, "{heap} bytes of heap");
        assert!(
            matches!(
                result,
                Err(SourceError::MemberHeaderTooLarge {
                    limit: MAX_MEMBER_HEADER_BYTES,
                    ..
                })
            ),
            "{result:?}"
        );
    }

    /// Data that writes nothing (a directory claiming content) is read past, and counted.
    #[test]
    fn data_of_members_that_write_nothing_counts() {
        const MIB: usize = 1 << 20;
        let zeros = vec![0u8; 4 * MIB];
        let bytes = tar_gz(&[
            (b"pkg/", T::Directory, &zeros, b""),
            (b"pkg/f", T::Regular, b"1", b""),
        ]);
        let (_dir, result) = extract_with_limit(&bytes, ArchiveFormat::TarGz, MIB as u64);
        assert!(matches!(result, Err(SourceError::TooLarge { .. })), "{result:?}");
        let (_dir, result) = extract_with_limit(&bytes, ArchiveFormat::TarGz, 5 * MIB as u64);
        assert_eq!(fs::read(result.unwrap().join("f")).unwrap(), b"1");
    }

    /// Fuzzing found: a time past what `SystemTime` holds (base-256 header fields reach 2^63
    /// seconds) panicked on `UNIX_EPOCH + Duration`.
    #[test]
    fn far_future_times_do_not_panic() {
        let mut header = raw_header(b"pkg/f", T::Regular, 1, b"");
        header.set_mtime(u64::MAX);
        header.set_cksum();
        let mut builder = tar::Builder::new(Vec::new());
        builder.append(&header, &b"1"[..]).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&builder.into_inner().unwrap()).unwrap();
        let (_dir, result) = extract(&gz.finish().unwrap(), ArchiveFormat::TarGz);
        assert_eq!(fs::read(result.unwrap().join("f")).unwrap(), b"1");
    }

    /// Fuzzing found: a name component longer than a file name may be (255 bytes) failed as an
    /// I/O error ("File name too long") on a staging path, not as the archive's fault.
    #[test]
    fn overlong_names_are_refused_by_name() {
        let long = [b"pkg/".as_slice(), &[b'n'; 256]].concat();
        refused(
            &[(&long, T::Regular, b"x", b"")],
            &format!("pkg/{}…", "n".repeat(196)),
        );
        let deep = b"d/".repeat(2048);
        refused(
            &[(&deep, T::Directory, b"", b"")],
            &format!("{}…", "d/".repeat(100)),
        );
        // Within the limits but too deep below the staging directory: the member is named.
        let deep = b"d/".repeat(2040);
        let (_dir, result) = extract(&tar_gz(&[(&deep, T::Directory, b"", b"")]), ArchiveFormat::TarGz);
        match result {
            Err(SourceError::BadMember { reason, .. }) => assert!(reason.contains("too long"), "{reason}"),
            other => panic!("expected BadMember, got {other:?}"),
        }
    }

    #[test]
    fn dos_times() {
        assert_eq!(
            dos_time_to_system(1980, 1, 1, 0, 0, 0),
            Some(UNIX_EPOCH + Duration::from_secs(315_532_800))
        );
        assert_eq!(
            dos_time_to_system(2024, 2, 29, 12, 30, 10),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_209_810))
        );
        assert_eq!(dos_time_to_system(2024, 13, 1, 0, 0, 0), None);
    }

    #[test]
    fn place_into_existing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        fs::create_dir_all(content.join("sub")).unwrap();
        fs::write(content.join("f"), b"1").unwrap();
        let dest = dir.path().join("dest");
        fs::create_dir(&dest).unwrap();
        assert!(check_destination(&dest).unwrap());
        place(&content, &dest, true).unwrap();
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"1");
        assert!(dest.join("sub").is_dir());
        assert!(matches!(
            check_destination(&dest),
            Err(SourceError::DestinationExists { .. })
        ));
        assert!(!check_destination(&dir.path().join("new")).unwrap());
    }
}
