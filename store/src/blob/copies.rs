//! Verified files on local disk, and how far they are trusted once verified.
//!
//! Backends hand out plain files so that readers can `pread`, mmap them or hand them to the
//! kernel as FUSE passthrough backing files: a raw object under `objects/`, a decompressed copy
//! under `cache/blobs/` or `linkfarm/`, a remote node's cached copy. Hashing such a file on
//! every open would cost more than the read, so the trust model is:
//!
//! - **Verified once per process, then trusted by its stamp.** The first time a process uses
//!   a file it hashes all of it; if the hash is right it records the file's *stamp* (device,
//!   inode, link count, size, mtime and ctime, all from one `fstat`). Later uses compare the
//!   stamp only. A file whose stamp changed is hashed again: still right, the new stamp is
//!   recorded (an info line); wrong, it is not served, a warning names it, and the backend
//!   re-makes it (a copy, from its verified object or the remote server) or fails with an
//!   error (a raw object: the mount answers EIO).
//! - **A mount re-checks on every request that reaches it.** The FUSE layer holds a
//!   [`VerifiedCopy`] per open inode and calls [`VerifiedCopy::is_intact`] (one `fstat`)
//!   after each READ it serves and before it re-uses the copy for an OPEN, so a copy written
//!   to after it was verified is caught before its bytes leave the daemon. Pages the kernel
//!   already caches for the mounted file were read before the change and stay right.
//! - **What the stamp cannot see.** Any write through the file system changes the ctime
//!   (no user can set it back), so tampering and stray writers are caught. Media corruption
//!   below the file system (bit rot) changes no stamp: `hdist store verify` (and
//!   `verify --cache DIR` for a remote node's cache) re-hashes every copy, drops the bad
//!   ones and re-makes them. Two limits remain, both without wrong bytes being logged: on
//!   kernels before 6.13 (no fine-grained timestamps) a write in the same clock tick (a few
//!   ms) as the verification keeps the stamp; and with FUSE passthrough, a process that
//!   already has the file open reads the backing file directly, so it may see a change made
//!   while it keeps the file open (new opens are checked).

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::hash::{Digest, DigestWriter};

/// What `fstat` says of a file, compared to decide whether it may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyStamp {
    dev: u64,
    ino: u64,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl CopyStamp {
    /// The stamp of a file's metadata.
    pub fn of(meta: &Metadata) -> CopyStamp {
        CopyStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            nlink: meta.nlink(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The stamp of an open file (one `fstat`).
    pub fn of_file(file: &File) -> io::Result<CopyStamp> {
        file.metadata().map(|meta| CopyStamp::of(&meta))
    }
}

/// SHA-256 of a whole file, read with `pread` (the file's offset is left as it was).
pub fn hash_file(file: &File) -> io::Result<Digest> {
    let mut hasher = DigestWriter::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        match file.read_at(&mut buf, offset) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(n) => {
                hasher.update(&buf[..n]);
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// An open file whose content hashed to `digest` when its stamp was taken.
#[derive(Debug)]
pub struct VerifiedCopy {
    file: File,
    digest: Digest,
    path: PathBuf,
    stamp: Mutex<CopyStamp>,
}

impl VerifiedCopy {
    /// Wraps a file the caller has just verified (or produced from verified bytes), taking its
    /// stamp now.
    pub fn new(file: File, digest: Digest, path: PathBuf) -> io::Result<VerifiedCopy> {
        let stamp = CopyStamp::of_file(&file)?;
        Ok(VerifiedCopy::with_stamp(file, digest, path, stamp))
    }

    fn with_stamp(file: File, digest: Digest, path: PathBuf, stamp: CopyStamp) -> VerifiedCopy {
        VerifiedCopy {
            file,
            digest,
            path,
            stamp: Mutex::new(stamp),
        }
    }

    /// The open file (positioned at offset 0 when handed out; read it with `pread`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The file, for callers that read it once and need no re-check.
    pub fn into_file(self) -> File {
        self.file
    }

    /// The digest its content was verified against.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Whether the file still holds the verified content. One `fstat` while its stamp is
    /// unchanged; a changed stamp means a full re-hash: intact, the new stamp is kept (info
    /// line); not intact, a warning names the file and `false` is returned, and the caller
    /// must not serve it.
    pub fn is_intact(&self) -> bool {
        let now = match CopyStamp::of_file(&self.file) {
            Ok(now) => now,
            Err(e) => {
                log::warn!(
                    "cannot stat {} (object {}): {e}; not serving it",
                    self.path.display(),
                    self.digest
                );
                return false;
            }
        };
        let mut stamp = self.stamp.lock().unwrap();
        if *stamp == now {
            return true;
        }
        match hash_file(&self.file) {
            Ok(actual) if actual == self.digest => {
                log::info!(
                    "{} (object {}) changed on disk since it was verified; its content is intact",
                    self.path.display(),
                    self.digest
                );
                // The stamp taken before hashing: a write during the hash changes it again.
                *stamp = now;
                true
            }
            Ok(actual) => {
                log::warn!(
                    "{} (object {}) changed on disk since it was verified and now hashes to \
                     {actual}; not serving it",
                    self.path.display(),
                    self.digest
                );
                false
            }
            Err(e) => {
                log::warn!(
                    "{} (object {}) changed on disk and cannot be read again: {e}; not serving it",
                    self.path.display(),
                    self.digest
                );
                false
            }
        }
    }
}

/// What [`TrustedCopies::open`] found at a path.
#[derive(Debug)]
pub(crate) enum Checked {
    /// The file holds the content (by its recorded stamp, or hashed just now).
    Good(VerifiedCopy),
    /// No file there.
    Missing,
    /// The file's content hashes to `actual`.
    Bad { actual: Digest },
}

/// The stamps of the files this process verified, by digest: the per-process memory that
/// lets a backend trust a file it hashed before without hashing it again.
#[derive(Debug, Default)]
pub(crate) struct TrustedCopies {
    stamps: Mutex<HashMap<Digest, CopyStamp>>,
}

impl TrustedCopies {
    /// Opens the file at `path` said to hold `digest`: trusted without reading if its stamp is
    /// the one recorded when this process last verified it, hashed otherwise.
    pub(crate) fn open(&self, digest: &Digest, path: &Path) -> io::Result<Checked> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checked::Missing),
            Err(e) => return Err(e),
        };
        let stamp = CopyStamp::of_file(&file)?;
        let known = self.stamps.lock().unwrap().get(digest).copied();
        if known == Some(stamp) {
            return Ok(Checked::Good(VerifiedCopy::with_stamp(
                file,
                *digest,
                path.to_path_buf(),
                stamp,
            )));
        }
        let actual = hash_file(&file)?;
        if actual != *digest {
            self.forget(digest);
            return Ok(Checked::Bad { actual });
        }
        if known.is_some() {
            log::info!(
                "{} (object {digest}) changed on disk since it was verified; its content is intact",
                path.display()
            );
        }
        self.stamps.lock().unwrap().insert(*digest, stamp);
        Ok(Checked::Good(VerifiedCopy::with_stamp(
            file,
            *digest,
            path.to_path_buf(),
            stamp,
        )))
    }

    /// Records a file the caller just produced from verified bytes and opened.
    pub(crate) fn trust(&self, digest: &Digest, path: &Path, file: File) -> io::Result<VerifiedCopy> {
        let copy = VerifiedCopy::new(file, *digest, path.to_path_buf())?;
        self.stamps
            .lock()
            .unwrap()
            .insert(*digest, *copy.stamp.lock().unwrap());
        Ok(copy)
    }

    /// Takes a new stamp after this process changed the file's metadata itself (an LRU
    /// touch), so the change is not mistaken for tampering.
    pub(crate) fn restamp(&self, copy: &VerifiedCopy) {
        if let Ok(now) = CopyStamp::of_file(&copy.file) {
            *copy.stamp.lock().unwrap() = now;
            self.stamps.lock().unwrap().insert(copy.digest, now);
        }
    }

    /// Forgets a file (removed, or found bad).
    pub(crate) fn forget(&self, digest: &Digest) {
        self.stamps.lock().unwrap().remove(digest);
    }
}

/// One copy `verify` found damaged, and what it did about it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BadCopy {
    /// The copy's file.
    pub path: PathBuf,
    /// The object it should hold.
    pub digest: Digest,
    /// What is wrong with it.
    pub problem: String,
    /// What was done: re-made, dropped, or left in place.
    pub action: String,
}

/// What checking a directory of copies found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CopiesReport {
    /// Copies re-hashed.
    pub checked: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The damaged ones.
    pub bad: Vec<BadCopy>,
}

impl CopiesReport {
    /// Adds another directory's findings.
    pub fn merge(&mut self, other: CopiesReport) {
        self.checked += other.checked;
        self.bytes += other.bytes;
        self.bad.extend(other.bad);
    }
}

/// Re-hashes every file one level below the fan-out directories of `dir` whose name
/// `digest_of` maps to a digest (other names are not copies and are skipped). For each bad one
/// `on_bad(path, digest)` is called (with `repair`) and returns what it did.
pub(crate) fn check_copies(
    dir: &Path,
    digest_of: impl Fn(&str) -> Option<Digest> + Sync,
    on_bad: impl Fn(&Path, &Digest) -> String + Sync,
) -> CopiesReport {
    use rayon::prelude::*;
    let files = super::fanout::walk(dir);
    let results: Vec<(u64, Option<BadCopy>)> = files
        .par_iter()
        .filter_map(|(path, len, _)| {
            let digest = digest_of(path.file_name()?.to_str()?)?;
            let problem = match File::open(path).and_then(|file| hash_file(&file)) {
                Ok(actual) if actual == digest => return Some((*len, None)),
                Ok(actual) => format!("its content hashes to {actual}"),
                // Evicted or swept since the listing: nothing to check.
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                Err(e) => format!("cannot be read: {e}"),
            };
            let action = on_bad(path, &digest);
            log::warn!(
                "copy {} of object {digest} is damaged ({problem}); {action}",
                path.display()
            );
            Some((
                *len,
                Some(BadCopy {
                    path: path.clone(),
                    digest,
                    problem,
                    action,
                }),
            ))
        })
        .collect();
    let mut report = CopiesReport::default();
    for (len, bad) in results {
        report.checked += 1;
        report.bytes += len;
        report.bad.extend(bad);
    }
    report.bad.sort_by(|a, b| a.path.cmp(&b.path));
    report
}

/// Removes a bad copy; the action text for the report.
pub(crate) fn drop_copy(path: &Path, then: &str) -> String {
    match fs::remove_file(path) {
        Ok(()) => format!("dropped; {then}"),
        Err(e) if e.kind() == io::ErrorKind::NotFound => format!("already gone; {then}"),
        Err(e) => format!("could not be dropped ({e}); remove it by hand"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_copy(dir: &Path, bytes: &[u8]) -> (PathBuf, Digest) {
        let digest = Digest::of(bytes);
        fs::create_dir_all(crate::blob::fanout::dir_of(dir, &digest)).unwrap();
        let path = crate::blob::fanout::path(dir, &digest);
        fs::write(&path, bytes).unwrap();
        (path, digest)
    }

    fn flip(path: &Path) {
        let file = File::options().read(true).write(true).open(path).unwrap();
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, 0).unwrap();
        file.write_all_at(&[!byte[0]], 0).unwrap();
    }

    fn open_good(trusted: &TrustedCopies, digest: &Digest, path: &Path) -> VerifiedCopy {
        match trusted.open(digest, path).unwrap() {
            Checked::Good(copy) => copy,
            other => panic!("a good copy was refused: {other:?}"),
        }
    }

    #[test]
    fn a_write_after_verification_is_seen_by_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let (path, digest) = write_copy(dir.path(), b"verified content");
        let trusted = TrustedCopies::default();
        let copy = open_good(&trusted, &digest, &path);
        assert!(copy.is_intact());
        flip(&path);
        assert!(!copy.is_intact(), "an in-place write went unnoticed");
        assert!(matches!(
            trusted.open(&digest, &path).unwrap(),
            Checked::Bad { .. }
        ));
    }

    #[test]
    fn a_metadata_change_with_intact_content_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (path, digest) = write_copy(dir.path(), b"verified content");
        let trusted = TrustedCopies::default();
        let copy = open_good(&trusted, &digest, &path);
        let file = File::options().write(true).open(&path).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert!(copy.is_intact());
        open_good(&trusted, &digest, &path);
    }

    #[test]
    fn check_copies_reports_only_the_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _) = write_copy(dir.path(), b"good");
        let (bad, bad_digest) = write_copy(dir.path(), b"bad");
        fs::write(
            crate::blob::fanout::dir_of(dir.path(), &bad_digest).join("not-a-copy"),
            b"x",
        )
        .unwrap();
        flip(&bad);
        let report = check_copies(
            dir.path(),
            |name| Digest::from_hex(name).ok(),
            |path, _| drop_copy(path, "gone"),
        );
        assert_eq!(report.checked, 2);
        assert_eq!(report.bad.len(), 1);
        assert_eq!(report.bad[0].path, bad);
        assert!(!bad.exists());
    }
}
