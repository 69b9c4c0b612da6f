//! Turning a directory on disk into tree and blob objects.
//!
//! Three phases: a sequential metadata walk (cheap), the file contents hashed and compressed on
//! every core (the expensive part), then trees built bottom-up. Hardlinks are read once.
//! Each entry's mtime is its `lstat` mtime (a symlink's own, not its target's), unless the
//! caller asks for [`MtimePolicy::Zero`].

use std::collections::HashMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Entry, Mtime, Node, Tree, TreeError};
use crate::blob::{IngestBatch, PutOutcome};
use crate::hash::Digest;
use crate::{IoContext, IoError};

/// Whether an object holds file content or a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// File content.
    Blob,
    /// A tree encoding.
    Tree,
}

impl ObjectKind {
    /// The number stored in the index.
    pub fn code(self) -> i64 {
        match self {
            ObjectKind::Blob => 0,
            ObjectKind::Tree => 1,
        }
    }
}

/// Which modification times an ingest records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtimePolicy {
    /// Each entry's own mtime, to the nanosecond (what `.pyc` validation and `make` need).
    #[default]
    Keep,
    /// 0 for every entry: the tree (and an artifact id derived from it) depends on the content
    /// alone, not on when the files were written.
    Zero,
}

/// One object an ingest referenced (new or already present).
#[derive(Debug, Clone, Copy)]
pub struct IngestedObject {
    /// What adding it did.
    pub outcome: PutOutcome,
    /// What it holds.
    pub kind: ObjectKind,
}

/// The result of [`ingest_tree`].
#[derive(Debug, Clone)]
pub struct IngestedTree {
    /// Digest of the root tree.
    pub root: Digest,
    /// Every object referenced, each once.
    pub objects: Vec<IngestedObject>,
    /// Regular files in the tree (hardlinks counted per name).
    pub files: u64,
    /// Sum of the sizes of those files.
    pub bytes: u64,
}

enum Walked {
    File { key: (u64, u64), executable: bool },
    Symlink(Vec<u8>),
    Dir(usize),
}

struct WalkedDir {
    entries: Vec<(Vec<u8>, Walked, Mtime)>,
}

struct Walk {
    mtimes: MtimePolicy,
    dirs: Vec<WalkedDir>,
    // (dev, ino) -> (path, size), one per distinct file.
    files: HashMap<(u64, u64), (PathBuf, u64)>,
    file_count: u64,
    bytes: u64,
}

/// Ingests the directory `root` into `batch`, recording mtimes as `mtimes` says. `progress` is
/// called with the size of each file once it is stored. Nothing is visible in the store until
/// the batch is committed.
pub fn ingest_tree(
    batch: &IngestBatch<'_>,
    root: &Path,
    mtimes: MtimePolicy,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<IngestedTree, TreeError> {
    let meta = fs::metadata(root).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TreeError::NotADirectory {
            path: root.to_path_buf(),
            hint: " (it does not exist; check the path)",
        },
        _ => IoError::new("stat", root, e).into(),
    })?;
    if !meta.is_dir() {
        return Err(TreeError::NotADirectory {
            path: root.to_path_buf(),
            hint: "",
        });
    }
    let mut walk = Walk {
        mtimes,
        dirs: Vec::new(),
        files: HashMap::new(),
        file_count: 0,
        bytes: 0,
    };
    walk_dir(&mut walk, root)?;

    let files: Vec<_> = walk.files.iter().collect();
    let stored: Vec<((u64, u64), PutOutcome)> = files
        .par_iter()
        .map(|(key, (path, size))| {
            let outcome = batch.put_file(path)?;
            progress(*size);
            Ok((**key, outcome))
        })
        .collect::<Result<_, TreeError>>()?;
    let by_key: HashMap<(u64, u64), PutOutcome> = stored.into_iter().collect();

    let mut objects: HashMap<Digest, IngestedObject> = HashMap::new();
    for outcome in by_key.values() {
        objects.entry(outcome.digest).or_insert(IngestedObject {
            outcome: *outcome,
            kind: ObjectKind::Blob,
        });
    }
    // Pre-order numbering puts every directory before its children, so walking the list
    // backwards meets children first.
    let mut tree_digests: Vec<Option<Digest>> = vec![None; walk.dirs.len()];
    for index in (0..walk.dirs.len()).rev() {
        let dir = &walk.dirs[index];
        let mut entries = Vec::with_capacity(dir.entries.len());
        for (name, walked, mtime) in &dir.entries {
            let node = match walked {
                Walked::File { key, executable } => {
                    let outcome = &by_key[key];
                    Node::File {
                        digest: outcome.digest,
                        size: outcome.size,
                        executable: *executable,
                    }
                }
                Walked::Symlink(target) => Node::Symlink {
                    target: target.clone(),
                },
                Walked::Dir(child) => Node::Directory {
                    digest: tree_digests[*child].expect("children are built first"),
                },
            };
            entries.push(Entry {
                name: name.clone(),
                node,
                mtime: *mtime,
            });
        }
        let tree = Tree::new(entries)?;
        let outcome = batch.put_bytes(&tree.encode())?;
        objects.entry(outcome.digest).or_insert(IngestedObject {
            outcome,
            kind: ObjectKind::Tree,
        });
        tree_digests[index] = Some(outcome.digest);
    }
    Ok(IngestedTree {
        root: tree_digests[0].expect("the root was walked"),
        objects: objects.into_values().collect(),
        files: walk.file_count,
        bytes: walk.bytes,
    })
}

fn walk_dir(walk: &mut Walk, dir: &Path) -> Result<usize, TreeError> {
    let index = walk.dirs.len();
    walk.dirs.push(WalkedDir { entries: Vec::new() });
    let mut children: Vec<_> = fs::read_dir(dir)
        .io_context("read directory", dir)?
        .collect::<Result<_, _>>()
        .io_context("read directory", dir)?;
    children.sort_by_key(|c| c.file_name());
    let mut entries = Vec::with_capacity(children.len());
    for child in children {
        let path = child.path();
        let name = child.file_name().as_bytes().to_vec();
        let meta = fs::symlink_metadata(&path).io_context("stat", &path)?;
        let file_type = meta.file_type();
        let mtime = match walk.mtimes {
            // The kernel normalises timespecs; the clamp only keeps a broken FUSE server from
            // producing an unencodable tree.
            MtimePolicy::Keep => Mtime::new(meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32)
                .unwrap_or(Mtime::ZERO),
            MtimePolicy::Zero => Mtime::ZERO,
        };
        let walked = if file_type.is_dir() {
            Walked::Dir(walk_dir(walk, &path)?)
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path).io_context("read link", &path)?;
            Walked::Symlink(target.as_os_str().as_bytes().to_vec())
        } else if file_type.is_file() {
            let key = (meta.dev(), meta.ino());
            walk.file_count += 1;
            walk.bytes += meta.len();
            walk.files.entry(key).or_insert((path, meta.len()));
            Walked::File {
                key,
                executable: meta.mode() & 0o111 != 0,
            }
        } else {
            let kind = if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "FIFO"
            } else if file_type.is_block_device() {
                "block device"
            } else {
                "character device"
            };
            return Err(TreeError::SpecialFile { path, kind });
        };
        entries.push((name, walked, mtime));
    }
    walk.dirs[index].entries = entries;
    Ok(index)
}
