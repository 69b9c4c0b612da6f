//! Materialising a tree as a plain directory.

use std::ffi::CString;
use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Mtime, Node, Tree, TreeError};
use crate::blob::BlobService;
use crate::hash::Digest;
use crate::IoContext;

/// Which modification times an export gives what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportTimes {
    /// The mtimes recorded in the tree (the root directory gets [`Mtime::UNRECORDED`]).
    #[default]
    Recorded,
    /// Whatever writing them gives (now): for trees whose recorded mtimes were normalised away
    /// (git and `files:` sources), where 0 would only upset tools such as `zipfile`.
    WriteTime,
}

/// Writes the tree `root` into `dest`, which must not exist yet: directories 0755, files 0644
/// or 0755, symlinks with their stored targets, each with its mtime as `times` says. The
/// caller makes this atomic by exporting to a temporary sibling and renaming.
pub fn export_tree(
    blobs: &dyn BlobService,
    root: &Digest,
    dest: &Path,
    times: ExportTimes,
) -> Result<(), TreeError> {
    export_tree_with_progress(blobs, root, dest, times, &|_| {})
}

/// [`export_tree`], calling `progress` with the number of file bytes written as they are.
pub fn export_tree_with_progress(
    blobs: &dyn BlobService,
    root: &Digest,
    dest: &Path,
    times: ExportTimes,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), TreeError> {
    let mut written = Written::default();
    create_dirs(blobs, root, dest, Mtime::UNRECORDED, &mut written)?;
    let recorded = times == ExportTimes::Recorded;
    written
        .files
        .par_iter()
        .try_for_each(|(digest, path, executable, mtime)| {
            write_file(blobs, digest, path, *executable, progress)?;
            if recorded {
                set_mtime(path, *mtime).io_context("set the mtime of", path)?;
            }
            Ok::<_, TreeError>(())
        })?;
    if recorded {
        // Directories after everything in them was created, which changed their mtimes.
        for (path, mtime) in written.symlinks.iter().chain(&written.dirs) {
            set_mtime(path, *mtime).io_context("set the mtime of", path)?;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Written {
    files: Vec<(Digest, PathBuf, bool, Mtime)>,
    symlinks: Vec<(PathBuf, Mtime)>,
    dirs: Vec<(PathBuf, Mtime)>,
}

/// A writer that reports the bytes passing through it.
struct Reporting<'a, W> {
    inner: W,
    progress: &'a (dyn Fn(u64) + Sync),
}

impl<W: Write> Write for Reporting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        (self.progress)(n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn create_dirs(
    blobs: &dyn BlobService,
    digest: &Digest,
    dir: &Path,
    mtime: Mtime,
    written: &mut Written,
) -> Result<(), TreeError> {
    fs::create_dir(dir).io_context("create directory", dir)?;
    fs::set_permissions(dir, Permissions::from_mode(0o755)).io_context("chmod", dir)?;
    written.dirs.push((dir.to_path_buf(), mtime));
    let tree = Tree::load(blobs, digest)?;
    for entry in tree.entries() {
        let path = dir.join(std::ffi::OsStr::from_bytes(&entry.name));
        match &entry.node {
            Node::Directory { digest } => create_dirs(blobs, digest, &path, entry.mtime, written)?,
            Node::File {
                digest, executable, ..
            } => written.files.push((*digest, path, *executable, entry.mtime)),
            Node::Symlink { target } => {
                symlink(std::ffi::OsStr::from_bytes(target), &path).io_context("create symlink", &path)?;
                written.symlinks.push((path, entry.mtime));
            }
        }
    }
    Ok(())
}

fn write_file(
    blobs: &dyn BlobService,
    digest: &Digest,
    path: &Path,
    executable: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), TreeError> {
    let mut source = blobs.open(digest)?;
    let out = File::create(path).io_context("create", path)?;
    let mut out = Reporting { inner: out, progress };
    std::io::copy(&mut source, &mut out).io_context("write", path)?;
    let out = out.inner;
    let mode = if executable { 0o755 } else { 0o644 };
    out.set_permissions(Permissions::from_mode(mode))
        .io_context("chmod", path)?;
    Ok(())
}

/// Sets the access and modification times of `path` to `mtime`, never following a symlink
/// (a symlink gets its own time, its target is left alone).
pub fn set_mtime(path: &Path, mtime: Mtime) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let time = libc::timespec {
        tv_sec: mtime.seconds() as libc::time_t,
        tv_nsec: mtime.nanos() as libc::c_long,
    };
    let times = [time, time];
    // SAFETY: `path` is NUL-terminated and `times` holds two timespecs, both live for the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            path.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
