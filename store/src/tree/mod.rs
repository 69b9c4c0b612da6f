//! Trees: canonical, hashed directory listings (Merkle directories).
//!
//! A tree is an object in the blob store like any file; its digest is the SHA-256 of this
//! encoding, so identical subtrees anywhere in the store are one object.
//!
//! ```text
//! tree     = "HDT1" count:u32le entry*          entries sorted by name bytes, names unique
//! entry    = kind:u8 name_len:u32le name payload
//! kind     = 'd' | 'f' | 'x' | 'l'              directory, file, executable file, symlink
//! payload  = 'd': tree digest (32 bytes)
//!          | 'f','x': size:u64le blob digest (32 bytes)
//!          | 'l': target_len:u32le target bytes (as stored, never resolved)
//! ```
//!
//! Names are raw bytes (any byte but `/` and NUL; not `.` or `..`), so non-UTF-8 names
//! round-trip. Permissions beyond the executable bit, owners and times are not recorded: two
//! trees with the same content hash the same wherever and whenever they were made.

mod export;
mod ingest;

pub use export::{export_tree, export_tree_with_progress};
pub use ingest::{ingest_tree, IngestedObject, IngestedTree, ObjectKind};

use std::io;
use std::path::PathBuf;

use crate::blob::{BlobError, BlobService};
use crate::hash::Digest;

const MAGIC: &[u8; 4] = b"HDT1";

/// What a directory entry is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    /// A subdirectory, by tree digest.
    Directory { digest: Digest },
    /// A regular file, by blob digest.
    File {
        digest: Digest,
        size: u64,
        executable: bool,
    },
    /// A symbolic link with its target bytes.
    Symlink { target: Vec<u8> },
}

/// One named entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Raw name bytes.
    pub name: Vec<u8>,
    /// What the name points to.
    pub node: Node,
}

/// A directory listing in canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    entries: Vec<Entry>,
}

/// Errors of the tree layer (encoding, ingest, export).
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A stored tree object does not parse.
    #[error("tree object {digest} is malformed: {reason}; run `hdist store verify`")]
    Malformed { digest: Digest, reason: String },
    /// A name cannot be stored (contains `/` or NUL, is empty, `.` or `..`) or repeats.
    #[error("invalid entry name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    /// Sockets, devices and FIFOs have no place in an artifact.
    #[error(
        "{path}: is a {kind}; only files, directories and symlinks can be stored — remove it or exclude it"
    )]
    SpecialFile { path: PathBuf, kind: &'static str },
    /// The input of an ingest is not a directory.
    #[error("{path}: not a directory{hint}")]
    NotADirectory { path: PathBuf, hint: &'static str },
    /// A file system operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The blob layer failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
}

impl TreeError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| TreeError::Io { action, path, source }
    }
}

fn check_name(name: &[u8]) -> Result<(), TreeError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == b"." || name == b".." {
        "reserved"
    } else if name.contains(&b'/') {
        "contains '/'"
    } else if name.contains(&0) {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(TreeError::InvalidName {
        name: String::from_utf8_lossy(name).into_owned(),
        reason,
    })
}

impl Tree {
    /// Builds a tree from entries in any order; rejects invalid and duplicate names.
    pub fn new(mut entries: Vec<Entry>) -> Result<Tree, TreeError> {
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        for pair in entries.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(TreeError::InvalidName {
                    name: String::from_utf8_lossy(&pair[0].name).into_owned(),
                    reason: "appears twice",
                });
            }
        }
        for entry in &entries {
            check_name(&entry.name)?;
        }
        Ok(Tree { entries })
    }

    /// Entries sorted by name bytes.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry called `name`, by binary search.
    pub fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// The canonical encoding (what the digest is taken of).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.entries.len() * 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for entry in &self.entries {
            let kind = match &entry.node {
                Node::Directory { .. } => b'd',
                Node::File {
                    executable: false, ..
                } => b'f',
                Node::File { executable: true, .. } => b'x',
                Node::Symlink { .. } => b'l',
            };
            out.push(kind);
            out.extend_from_slice(&(entry.name.len() as u32).to_le_bytes());
            out.extend_from_slice(&entry.name);
            match &entry.node {
                Node::Directory { digest } => out.extend_from_slice(digest.as_bytes()),
                Node::File { digest, size, .. } => {
                    out.extend_from_slice(&size.to_le_bytes());
                    out.extend_from_slice(digest.as_bytes());
                }
                Node::Symlink { target } => {
                    out.extend_from_slice(&(target.len() as u32).to_le_bytes());
                    out.extend_from_slice(target);
                }
            }
        }
        out
    }

    /// The digest of the canonical encoding.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.encode())
    }

    /// Parses an encoding; `digest` only names the object in errors. Rejects anything that is
    /// not canonical (unsorted, duplicate or invalid names, trailing bytes).
    pub fn decode(digest: &Digest, bytes: &[u8]) -> Result<Tree, TreeError> {
        let malformed = |reason: &str| TreeError::Malformed {
            digest: *digest,
            reason: reason.to_string(),
        };
        let mut cursor = Cursor { bytes, pos: 0 };
        if cursor.take(4).ok_or_else(|| malformed("truncated magic"))? != MAGIC {
            return Err(malformed("not a tree (bad magic)"));
        }
        let count = cursor.u32().ok_or_else(|| malformed("truncated count"))? as usize;
        let mut entries = Vec::with_capacity(count.min(bytes.len() / 6));
        for _ in 0..count {
            let kind = cursor.take(1).ok_or_else(|| malformed("truncated entry"))?[0];
            let name_len = cursor.u32().ok_or_else(|| malformed("truncated name"))? as usize;
            let name = cursor
                .take(name_len)
                .ok_or_else(|| malformed("truncated name"))?
                .to_vec();
            let node = match kind {
                b'd' => Node::Directory {
                    digest: cursor.digest().ok_or_else(|| malformed("truncated digest"))?,
                },
                b'f' | b'x' => {
                    let size = cursor.u64().ok_or_else(|| malformed("truncated size"))?;
                    let digest = cursor.digest().ok_or_else(|| malformed("truncated digest"))?;
                    Node::File {
                        digest,
                        size,
                        executable: kind == b'x',
                    }
                }
                b'l' => {
                    let len = cursor.u32().ok_or_else(|| malformed("truncated target"))? as usize;
                    let target = cursor
                        .take(len)
                        .ok_or_else(|| malformed("truncated target"))?
                        .to_vec();
                    Node::Symlink { target }
                }
                _ => return Err(malformed("unknown entry kind")),
            };
            if let Some(last) = entries.last() {
                let last: &Entry = last;
                if last.name >= name {
                    return Err(malformed("entries not strictly sorted"));
                }
            }
            check_name(&name).map_err(|_| malformed("invalid entry name"))?;
            entries.push(Entry { name, node });
        }
        if cursor.pos != bytes.len() {
            return Err(malformed("trailing bytes"));
        }
        Ok(Tree { entries })
    }

    /// Reads and parses the tree object `digest`.
    pub fn load(blobs: &dyn BlobService, digest: &Digest) -> Result<Tree, TreeError> {
        let bytes = blobs.read(digest)?;
        Tree::decode(digest, &bytes)
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let slice = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(slice)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn digest(&mut self) -> Option<Digest> {
        Some(Digest::from_bytes(self.take(32)?.try_into().ok()?))
    }
}

/// Follows `path` (components separated by `/`) from the tree `root`. Returns the node found;
/// the empty path is the root directory itself. Symlinks are not followed.
pub fn resolve_path(blobs: &dyn BlobService, root: &Digest, path: &[u8]) -> Result<Option<Node>, TreeError> {
    let mut node = Node::Directory { digest: *root };
    for component in path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".") {
        let Node::Directory { digest } = &node else {
            return Ok(None);
        };
        let tree = Tree::load(blobs, digest)?;
        match tree.get(component) {
            Some(entry) => node = entry.node.clone(),
            None => return Ok(None),
        }
    }
    Ok(Some(node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &[u8], byte: u8, executable: bool) -> Entry {
        Entry {
            name: name.to_vec(),
            node: Node::File {
                digest: Digest::of(&[byte]),
                size: 1,
                executable,
            },
        }
    }

    #[test]
    fn encoding_is_canonical_and_round_trips() {
        let a = Tree::new(vec![
            file(b"b", 1, false),
            file(b"a\xff", 2, true),
            Entry {
                name: b"link".to_vec(),
                node: Node::Symlink {
                    target: b"../x\xfe".to_vec(),
                },
            },
        ])
        .unwrap();
        let b = Tree::new(a.entries().iter().rev().cloned().collect()).unwrap();
        assert_eq!(a.encode(), b.encode());
        let digest = a.digest();
        assert_eq!(Tree::decode(&digest, &a.encode()).unwrap(), a);
        assert_eq!(a.get(b"a\xff").unwrap().name, b"a\xff");
        assert!(a.get(b"zz").is_none());
    }

    #[test]
    fn rejects_bad_names_and_noncanonical_bytes() {
        assert!(Tree::new(vec![file(b"a/b", 1, false)]).is_err());
        assert!(Tree::new(vec![file(b"..", 1, false)]).is_err());
        assert!(Tree::new(vec![file(b"x", 1, false), file(b"x", 2, false)]).is_err());
        let tree = Tree::new(vec![file(b"a", 1, false), file(b"b", 2, false)]).unwrap();
        let mut bytes = tree.encode();
        bytes.push(0);
        assert!(Tree::decode(&tree.digest(), &bytes).is_err());
        // Swap the two names so that the order is wrong.
        let mut swapped = tree.encode();
        let first = 4 + 4 + 1 + 4;
        let second = first + 1 + 8 + 32 + 1 + 4;
        swapped.swap(first, second);
        assert!(Tree::decode(&tree.digest(), &swapped).is_err());
    }
}
