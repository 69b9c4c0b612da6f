//! The permission bits the store gives what it creates, independent of the caller's umask.
//!
//! A store made under `umask 000` must not be writable by other users, and its lock files must
//! not be openable by them (anyone who can open a lock can `flock` it and stall every writer
//! and GC). Modes are passed at creation (`mkdir(2)`/`open(2)`), so a stricter umask narrows
//! them further but a looser one never widens them. Lock files are also narrowed when an
//! older hdist left them open to others.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Directories others may read: the store, `objects/`, `artifacts/`, `profiles/`, caches.
pub const SHARED_DIR: u32 = 0o755;
/// Directories only the owner uses: `tmp/` scratch space and lock directories.
pub const PRIVATE_DIR: u32 = 0o700;
/// Files others may read: objects, artifact documents, profile data.
pub const SHARED_FILE: u32 = 0o644;
/// Lock files: only the owner may open them.
pub const LOCK_FILE: u32 = 0o600;

/// `mkdir -p` with `mode` for every directory it creates (existing ones are left alone).
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(path)
}

/// `mkdir` with `mode`; fails if `path` exists.
pub fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().mode(mode).create(path)
}

/// Creates (or truncates) a file for writing, [`SHARED_FILE`] if new.
pub fn create_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(SHARED_FILE)
        .open(path)
}

/// `fs::write` through [`create_file`].
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    io::Write::write_all(&mut create_file(path)?, bytes)
}

/// Opens (creating if needed) a lock file that only the owner can open. A lock file an older
/// hdist created readable by others is narrowed to [`LOCK_FILE`].
pub fn open_lock(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(LOCK_FILE)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.mode() & 0o077 != 0 {
        // Only the owner may chmod; whoever else could open it keeps working meanwhile.
        if let Err(e) = file.set_permissions(fs::Permissions::from_mode(LOCK_FILE)) {
            log::warn!("cannot make {} private: {e}", path.display());
        }
    }
    Ok(file)
}

/// Creates a new lock file (`O_EXCL`) that only the owner can open.
pub fn create_new_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(LOCK_FILE)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_are_private_even_when_an_older_version_left_them_open() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.lock");
        open_lock(&fresh).unwrap();
        assert_eq!(fs::metadata(&fresh).unwrap().mode() & 0o777, LOCK_FILE);
        let old = dir.path().join("old.lock");
        fs::write(&old, b"").unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
        open_lock(&old).unwrap();
        assert_eq!(fs::metadata(&old).unwrap().mode() & 0o777, LOCK_FILE);
    }
}
