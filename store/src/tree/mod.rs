//! Trees: canonical, hashed directory listings (Merkle directories).
//!
//! A tree is an object in the blob store like any file; its digest is the SHA-256 of this
//! encoding, so identical subtrees anywhere in the store are one object.
//!
//! ```text
//! tree     = "HDT2" count:u32le entry*          entries sorted by name bytes, names unique
//! entry    = kind:u8 name_len:u32le name mtime payload
//! kind     = 'd' | 'f' | 'x' | 'l'              directory, file, executable file, symlink
//! mtime    = seconds:i64le nanos:u32le          since the Unix epoch; nanos < 1e9
//! payload  = 'd': tree digest (32 bytes)
//!          | 'f','x': size:u64le blob digest (32 bytes)
//!          | 'l': target_len:u32le target bytes (as stored, never resolved)
//! ```
//!
//! Names are raw bytes (any byte but `/` and NUL; not `.` or `..`), so non-UTF-8 names
//! round-trip. Every entry (file, directory and symlink alike) carries its modification time,
//! because tools validate caches against it: Python accepts a `.pyc` only if the mtime
//! recorded in it equals its source's. Ingest records the `lstat` mtime (or 0 everywhere with
//! [`MtimePolicy::Zero`], for ids independent of when files were written); export sets it back,
//! directories after their content, symlinks without following them. A tree's own root has no
//! entry, so its mtime is not recorded: it shows [`Mtime::UNRECORDED`]. Permissions beyond the
//! executable bit and owners are not recorded.
//!
//! Mtimes are in the tree, not in the blob: identical content is still one blob wherever and
//! whenever it was made; only the tree objects naming it differ.
//!
//! Trees written before mtimes were recorded (magic `"HDT1"`: the same entries without the
//! `mtime` field) still decode; their entries get [`Mtime::UNRECORDED`], the mtime 1 every file
//! showed then, so an old store mounts and exports exactly as before. New trees are always
//! written as `"HDT2"`.

mod export;
mod ingest;
mod walk;

pub use export::{export_tree, export_tree_with_progress, set_mtime, ExportTimes};
pub use ingest::{ingest_tree, IngestedObject, IngestedTree, MtimePolicy, ObjectKind};
pub use walk::{TreeWalker, Visit};

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::blob::{BlobError, BlobService};
use crate::hash::Digest;
use crate::IoError;

/// The encoding written: entries with mtimes.
const MAGIC: &[u8; 4] = b"HDT2";
/// The encoding before mtimes were recorded; still read.
const MAGIC_WITHOUT_MTIMES: &[u8; 4] = b"HDT1";
const NANOS_PER_SECOND: u32 = 1_000_000_000;

/// A modification time: whole seconds since the Unix epoch (negative before 1970) plus
/// nanoseconds, as `struct timespec` holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mtime {
    seconds: i64,
    nanos: u32,
}

impl Mtime {
    /// The epoch itself (what [`MtimePolicy::Zero`] records).
    pub const ZERO: Mtime = Mtime { seconds: 0, nanos: 0 };
    /// What an entry of a tree written before mtimes were recorded, and the root of a tree,
    /// show: one second after the epoch, the fixed mtime of every file before (as in the Nix
    /// store).
    pub const UNRECORDED: Mtime = Mtime { seconds: 1, nanos: 0 };

    /// The time `seconds` + `nanos`; `None` if `nanos` is not below one second.
    pub fn new(seconds: i64, nanos: u32) -> Option<Mtime> {
        (nanos < NANOS_PER_SECOND).then_some(Mtime { seconds, nanos })
    }

    /// Whole seconds since the epoch (the `tv_sec` of a timespec).
    pub fn seconds(self) -> i64 {
        self.seconds
    }

    /// Nanoseconds within the second, below 1e9 (the `tv_nsec` of a timespec).
    pub fn nanos(self) -> u32 {
        self.nanos
    }

    /// As a [`SystemTime`] (before the epoch for negative seconds).
    pub fn to_system_time(self) -> SystemTime {
        let seconds = Duration::from_secs(self.seconds.unsigned_abs());
        let since_epoch = if self.seconds >= 0 {
            UNIX_EPOCH.checked_add(seconds)
        } else {
            UNIX_EPOCH.checked_sub(seconds)
        };
        // Far beyond what SystemTime holds on this platform: the nearest representable end.
        since_epoch
            .and_then(|t| t.checked_add(Duration::from_nanos(self.nanos.into())))
            .unwrap_or(if self.seconds >= 0 {
                UNIX_EPOCH + Duration::from_secs(i64::MAX as u64)
            } else {
                UNIX_EPOCH
            })
    }
}

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
    /// Its modification time (of the directory itself, for a directory).
    pub mtime: Mtime,
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
    #[error(transparent)]
    Io(#[from] IoError),
    /// The blob layer failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
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
            out.extend_from_slice(&entry.mtime.seconds.to_le_bytes());
            out.extend_from_slice(&entry.mtime.nanos.to_le_bytes());
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

    /// Parses an encoding (`"HDT2"`, or the older `"HDT1"` without mtimes); `digest` only
    /// names the object in errors. Rejects anything that is not canonical (unsorted, duplicate
    /// or invalid names, nanoseconds of 1e9 or more, trailing bytes).
    pub fn decode(digest: &Digest, bytes: &[u8]) -> Result<Tree, TreeError> {
        let malformed = |reason: &str| TreeError::Malformed {
            digest: *digest,
            reason: reason.to_string(),
        };
        let mut cursor = Cursor { bytes, pos: 0 };
        let with_mtimes = match cursor.take(4).ok_or_else(|| malformed("truncated magic"))? {
            magic if magic == MAGIC => true,
            magic if magic == MAGIC_WITHOUT_MTIMES => false,
            _ => return Err(malformed("not a tree (bad magic)")),
        };
        let count = cursor.u32().ok_or_else(|| malformed("truncated count"))? as usize;
        let mut entries = Vec::with_capacity(count.min(bytes.len() / 6));
        for _ in 0..count {
            let kind = cursor.take(1).ok_or_else(|| malformed("truncated entry"))?[0];
            let name_len = cursor.u32().ok_or_else(|| malformed("truncated name"))? as usize;
            let name = cursor
                .take(name_len)
                .ok_or_else(|| malformed("truncated name"))?
                .to_vec();
            let mtime = if with_mtimes {
                let seconds = cursor.i64().ok_or_else(|| malformed("truncated mtime"))?;
                let nanos = cursor.u32().ok_or_else(|| malformed("truncated mtime"))?;
                Mtime::new(seconds, nanos).ok_or_else(|| malformed("mtime nanoseconds not below 1e9"))?
            } else {
                Mtime::UNRECORDED
            };
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
            entries.push(Entry { name, node, mtime });
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
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
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
mod fuzz;

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
            mtime: Mtime::new(1_700_000_000, 123_456_789).unwrap(),
        }
    }

    fn timed(mut entry: Entry, seconds: i64, nanos: u32) -> Entry {
        entry.mtime = Mtime::new(seconds, nanos).unwrap();
        entry
    }

    /// The bytes a tree of the old encoding holds for `entries` (kind, name, payload).
    fn hdt1(entries: &[(u8, &[u8], Vec<u8>)]) -> Vec<u8> {
        let mut out = b"HDT1".to_vec();
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (kind, name, payload) in entries {
            out.push(*kind);
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(payload);
        }
        out
    }

    #[test]
    fn mtimes_round_trip_at_the_extremes() {
        let dir = Digest::of(b"some tree");
        let tree = Tree::new(vec![
            timed(file(b"negative", 1, false), -1_234_567_890, 999_999_999),
            timed(file(b"epoch", 2, true), 0, 0),
            timed(file(b"far", 3, false), i64::MAX / 2, 999_999_999),
            timed(file(b"max", 3, false), i64::MAX, 999_999_999),
            timed(file(b"min", 3, false), i64::MIN, 0),
            timed(
                Entry {
                    name: b"dir".to_vec(),
                    node: Node::Directory { digest: dir },
                    mtime: Mtime::ZERO,
                },
                -1,
                1,
            ),
            timed(
                Entry {
                    name: b"link".to_vec(),
                    node: Node::Symlink {
                        target: b"far".to_vec(),
                    },
                    mtime: Mtime::ZERO,
                },
                86_400,
                500,
            ),
        ])
        .unwrap();
        let bytes = tree.encode();
        assert_eq!(&bytes[..4], b"HDT2");
        let decoded = Tree::decode(&tree.digest(), &bytes).unwrap();
        assert_eq!(decoded, tree);
        let far = decoded.get(b"far").unwrap().mtime;
        assert_eq!((far.seconds(), far.nanos()), (i64::MAX / 2, 999_999_999));
        let negative = decoded.get(b"negative").unwrap().mtime;
        assert_eq!(
            (negative.seconds(), negative.nanos()),
            (-1_234_567_890, 999_999_999)
        );
        assert_eq!(decoded.get(b"dir").unwrap().mtime, Mtime::new(-1, 1).unwrap());
        assert_eq!(
            decoded.get(b"link").unwrap().mtime,
            Mtime::new(86_400, 500).unwrap()
        );
    }

    #[test]
    fn the_mtime_is_part_of_the_digest() {
        let a = Tree::new(vec![timed(file(b"f", 1, false), 10, 0)]).unwrap();
        let b = Tree::new(vec![timed(file(b"f", 1, false), 10, 1)]).unwrap();
        assert_ne!(a.digest(), b.digest());
    }

    #[test]
    fn nanoseconds_of_a_second_or_more_are_malformed() {
        assert!(Mtime::new(0, 1_000_000_000).is_none());
        assert!(Mtime::new(0, 999_999_999).is_some());
        let tree = Tree::new(vec![timed(file(b"f", 1, false), 5, 0)]).unwrap();
        let mut bytes = tree.encode();
        // magic, count, kind, name length, name, then seconds and the nanoseconds.
        let nanos_at = 4 + 4 + 1 + 4 + 1 + 8;
        bytes[nanos_at..nanos_at + 4].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        match Tree::decode(&tree.digest(), &bytes) {
            Err(TreeError::Malformed { reason, .. }) => assert!(reason.contains("nanoseconds"), "{reason}"),
            other => panic!("expected a malformed tree, got {other:?}"),
        }
        // A truncated mtime is malformed too.
        assert!(Tree::decode(&tree.digest(), &tree.encode()[..nanos_at + 2]).is_err());
    }

    #[test]
    fn trees_of_the_old_encoding_still_decode() {
        let blob = Digest::of(b"x");
        let sub = Digest::of(b"sub");
        let mut file_payload = 1u64.to_le_bytes().to_vec();
        file_payload.extend_from_slice(blob.as_bytes());
        let mut link_payload = 3u32.to_le_bytes().to_vec();
        link_payload.extend_from_slice(b"../");
        let bytes = hdt1(&[
            (b'd', b"d", sub.as_bytes().to_vec()),
            (b'f', b"f", file_payload.clone()),
            (b'l', b"l", link_payload),
            (b'x', b"x", file_payload),
        ]);
        let digest = Digest::of(&bytes);
        let tree = Tree::decode(&digest, &bytes).unwrap();
        let names: Vec<&[u8]> = tree.entries().iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(names, [&b"d"[..], b"f", b"l", b"x"]);
        assert!(tree.entries().iter().all(|e| e.mtime == Mtime::UNRECORDED));
        assert_eq!(tree.get(b"d").unwrap().node, Node::Directory { digest: sub });
        assert_eq!(
            tree.get(b"x").unwrap().node,
            Node::File {
                digest: blob,
                size: 1,
                executable: true
            }
        );
        assert_eq!(
            tree.get(b"l").unwrap().node,
            Node::Symlink {
                target: b"../".to_vec()
            }
        );
        // Re-encoding writes the current encoding (a different object).
        assert_eq!(&tree.encode()[..4], b"HDT2");
        assert!(Tree::decode(&digest, &hdt1(&[(b'f', b"f", vec![0; 3])])).is_err());
        let mut unknown = bytes.clone();
        unknown[..4].copy_from_slice(b"HDT9");
        assert!(Tree::decode(&digest, &unknown).is_err());
    }

    #[test]
    fn mtimes_convert_to_system_times_on_both_sides_of_the_epoch() {
        let before = Mtime::new(-2, 250_000_000).unwrap().to_system_time();
        assert_eq!(
            UNIX_EPOCH.duration_since(before).unwrap(),
            Duration::from_millis(1_750)
        );
        let after = Mtime::new(3, 5).unwrap().to_system_time();
        assert_eq!(after.duration_since(UNIX_EPOCH).unwrap(), Duration::new(3, 5));
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
                mtime: Mtime::new(-5, 0).unwrap(),
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
        let second = first + 1 + 12 + 8 + 32 + 1 + 4;
        swapped.swap(first, second);
        assert!(Tree::decode(&tree.digest(), &swapped).is_err());
    }
}
