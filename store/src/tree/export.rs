//! Materialising a tree as a plain directory.

use std::fs::{self, File, Permissions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Node, Tree, TreeError};
use crate::blob::BlobService;
use crate::hash::Digest;

/// Writes the tree `root` into `dest`, which must not exist yet: directories 0755, files 0644
/// or 0755, symlinks with their stored targets. The caller makes this atomic by exporting to a
/// temporary sibling and renaming.
pub fn export_tree(blobs: &dyn BlobService, root: &Digest, dest: &Path) -> Result<(), TreeError> {
    export_tree_with_progress(blobs, root, dest, &|_| {})
}

/// [`export_tree`], calling `progress` with the number of file bytes written as they are.
pub fn export_tree_with_progress(
    blobs: &dyn BlobService,
    root: &Digest,
    dest: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<(), TreeError> {
    let mut files = Vec::new();
    create_dirs(blobs, root, dest, &mut files)?;
    files
        .par_iter()
        .try_for_each(|(digest, path, executable)| write_file(blobs, digest, path, *executable, progress))?;
    // Directory permissions last: a read-only directory could not have been filled.
    Ok(())
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
    files: &mut Vec<(Digest, PathBuf, bool)>,
) -> Result<(), TreeError> {
    fs::create_dir(dir).map_err(TreeError::io("create directory", dir))?;
    fs::set_permissions(dir, Permissions::from_mode(0o755)).map_err(TreeError::io("chmod", dir))?;
    let tree = Tree::load(blobs, digest)?;
    for entry in tree.entries() {
        let path = dir.join(std::ffi::OsStr::from_bytes(&entry.name));
        match &entry.node {
            Node::Directory { digest } => create_dirs(blobs, digest, &path, files)?,
            Node::File {
                digest, executable, ..
            } => files.push((*digest, path, *executable)),
            Node::Symlink { target } => symlink(std::ffi::OsStr::from_bytes(target), &path)
                .map_err(TreeError::io("create symlink", &path))?,
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
    let out = File::create(path).map_err(TreeError::io("create", path))?;
    let mut out = Reporting { inner: out, progress };
    std::io::copy(&mut source, &mut out).map_err(TreeError::io("write", path))?;
    let out = out.inner;
    let mode = if executable { 0o755 } else { 0o644 };
    out.set_permissions(Permissions::from_mode(mode))
        .map_err(TreeError::io("chmod", path))?;
    Ok(())
}
