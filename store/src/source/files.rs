//! `files:` keys of directories and single files on disk, and the check that a stored tree
//! holds exactly the files that were hashed.
//!
//! The pack stream covers names and contents only. Executable bits and empty directories are
//! kept in the stored tree but are not part of the key, as in Hashdist; symlinks cannot be
//! expressed at all, so a directory holding one is refused rather than given a key that does
//! not describe it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::SourceError;
use crate::blob::BlobService;
use crate::hash::{Digest, DigestWriter, FilesPackHasher, ShortDigest};
use crate::tree::{Node, Tree};
use crate::IoContext;

/// One file of a pack, as it was hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PackedFile {
    /// Relative name, `/`-separated.
    pub name: Vec<u8>,
    /// Where it was read from.
    pub path: PathBuf,
    /// Its length.
    pub size: u64,
    /// SHA-256 of its content (what the blob store names it by).
    pub digest: Digest,
}

/// A hashed set of files.
#[derive(Debug, Clone)]
pub(crate) struct Pack {
    /// The key's digest.
    pub digest: ShortDigest,
    /// The files in pack order (by name bytes).
    pub files: Vec<PackedFile>,
}

impl Pack {
    /// Sum of the file sizes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Hashes every regular file under `root` (names relative to it).
///
/// # Errors
/// [`SourceError::Unsupported`] for a symlink or special file; I/O and hashing errors.
pub(crate) fn pack_directory(root: &Path) -> Result<Pack, SourceError> {
    let mut found = Vec::new();
    walk(root, &[], &mut found)?;
    found.sort_by(|a: &(Vec<u8>, PathBuf), b| a.0.cmp(&b.0));
    pack(found)
}

/// Hashes one file as a pack holding it under `name` (Hashdist uses the base name).
pub(crate) fn pack_file(path: &Path, name: &[u8]) -> Result<Pack, SourceError> {
    pack(vec![(name.to_vec(), path.to_path_buf())])
}

fn walk(dir: &Path, prefix: &[u8], out: &mut Vec<(Vec<u8>, PathBuf)>) -> Result<(), SourceError> {
    let entries = fs::read_dir(dir).io_context("read directory", dir)?;
    for entry in entries {
        let entry = entry.io_context("read directory", dir)?;
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).io_context("stat", &path)?;
        let mut name = prefix.to_vec();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(entry.file_name().as_bytes());
        let file_type = meta.file_type();
        if file_type.is_dir() {
            walk(&path, &name, out)?;
        } else if file_type.is_file() {
            out.push((name, path));
        } else {
            let reason = if file_type.is_symlink() {
                "is a symlink; a files: source holds only regular files and directories \
                 (Hashdist's pack format cannot express links): replace it by a copy, or \
                 pack the directory as a tar archive"
            } else {
                "is a special file; a files: source holds only regular files and directories"
            };
            return Err(SourceError::Unsupported { path, reason });
        }
    }
    Ok(())
}

fn pack(found: Vec<(Vec<u8>, PathBuf)>) -> Result<Pack, SourceError> {
    let mut hasher = FilesPackHasher::new();
    let mut files = Vec::with_capacity(found.len());
    for (name, path) in found {
        let file = File::open(&path).io_context("open", &path)?;
        // The length hashed is the length of the open file, and the hasher refuses content
        // of any other length, so a file that changes meanwhile is an error, not a wrong key.
        let size = file.metadata().io_context("stat", &path)?.len();
        let mut tee = Tee {
            inner: file,
            hasher: DigestWriter::new(),
        };
        hasher.add(&name, size, &mut tee)?;
        files.push(PackedFile {
            name,
            path,
            size,
            digest: tee.hasher.finish(),
        });
    }
    Ok(Pack {
        digest: hasher.finish(),
        files,
    })
}

/// Hashes what passes through.
struct Tee<R> {
    inner: R,
    hasher: DigestWriter,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The files of a stored tree as (name, digest, size) in pack order, or why the tree cannot
/// be a pack (it holds a symlink).
type TreeListing = Result<Vec<(Vec<u8>, Digest, u64)>, String>;

/// Lists the files of the stored tree `root` (see [`TreeListing`]).
pub(crate) fn tree_files(blobs: &dyn BlobService, root: &Digest) -> Result<TreeListing, SourceError> {
    let mut out = Vec::new();
    let mut stack = vec![(Vec::new(), *root)];
    while let Some((prefix, digest)) = stack.pop() {
        let tree = Tree::load(blobs, &digest)?;
        for entry in tree.entries() {
            let mut name = prefix.clone();
            if !name.is_empty() {
                name.push(b'/');
            }
            name.extend_from_slice(&entry.name);
            match &entry.node {
                Node::Directory { digest } => stack.push((name, *digest)),
                Node::File { digest, size, .. } => out.push((name, *digest, *size)),
                Node::Symlink { .. } => {
                    return Ok(Err(format!(
                        "it holds the symlink {:?}",
                        String::from_utf8_lossy(&name)
                    )))
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Ok(out))
}

/// Whether the stored tree holds exactly the files of `pack`.
pub(crate) fn tree_matches(blobs: &dyn BlobService, root: &Digest, pack: &Pack) -> Result<bool, SourceError> {
    let stored = match tree_files(blobs, root)? {
        Ok(stored) => stored,
        Err(_) => return Ok(false),
    };
    Ok(stored.len() == pack.files.len()
        && stored
            .iter()
            .zip(&pack.files)
            .all(|((name, digest, size), file)| {
                *name == file.name && *digest == file.digest && *size == file.size
            }))
}

/// The `files:` digest of the stored tree `root`, computed from the stored blobs.
pub(crate) fn tree_pack_digest(
    blobs: &dyn BlobService,
    root: &Digest,
) -> Result<Result<ShortDigest, String>, SourceError> {
    let files = match tree_files(blobs, root)? {
        Ok(files) => files,
        Err(reason) => return Ok(Err(reason)),
    };
    let mut hasher = FilesPackHasher::new();
    for (name, digest, size) in files {
        let file = blobs.open(&digest)?;
        hasher.add(&name, size, file)?;
    }
    Ok(Ok(hasher.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashdist_vector_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::create_dir(dir.path().join("empty")).unwrap();
        for (name, content) in [
            ("foo", "contains foo"),
            ("bar", "contains bar"),
            ("a/b", "in a subdir"),
            ("a/c", "also in subdir"),
        ] {
            fs::write(dir.path().join(name), content).unwrap();
        }
        let pack = pack_directory(dir.path()).unwrap();
        assert_eq!(pack.digest.to_string(), "ruwkpei2ot2fp77myn2n2n4ttefuabab");
        let names: Vec<_> = pack.files.iter().map(|f| f.name.clone()).collect();
        assert_eq!(names, [&b"a/b"[..], b"a/c", b"bar", b"foo"]);
        assert_eq!(pack.files[2].digest, Digest::of(b"contains bar"));
        assert_eq!(pack.bytes(), 12 + 12 + 11 + 14);

        std::os::unix::fs::symlink("foo", dir.path().join("link")).unwrap();
        assert!(matches!(
            pack_directory(dir.path()),
            Err(SourceError::Unsupported { .. })
        ));
    }

    #[test]
    fn name_order_is_by_bytes_of_the_whole_path() {
        // "a.txt" sorts before "a/b" ('.' < '/'), although a directory walk meets "a" first.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        fs::write(dir.path().join("a/b"), "1").unwrap();
        fs::write(dir.path().join("a.txt"), "2").unwrap();
        let pack = pack_directory(dir.path()).unwrap();
        let expected = crate::hash::files_pack_digest(&[
            (b"a/b".to_vec(), b"1".to_vec()),
            (b"a.txt".to_vec(), b"2".to_vec()),
        ])
        .unwrap();
        assert_eq!(pack.digest, expected);
    }
}
