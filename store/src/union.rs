//! Union of trees: how a profile's artifacts combine into one directory.
//!
//! Rule: the first tree (in profile order) that has a name decides what it is. If that is a
//! directory, it is merged with the directories of the same name in later trees; a later file
//! or symlink of that name is shadowed. If it is a file or symlink, everything later of that
//! name is shadowed. The same rule applies at every depth, so the view is deterministic.
//!
//! The mtime of a name is that of the entry that decided what it is: for a merged directory,
//! the directory of the first tree that has it (later trees' directories only add names).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::blob::BlobService;
use crate::hash::Digest;
use crate::tree::{Mtime, Node, Tree, TreeError};

/// What a name in a merged directory is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum UnionNode {
    /// A directory merged from these trees, in priority order.
    Directory(Arc<[Digest]>),
    /// A regular file.
    File {
        digest: Digest,
        size: u64,
        executable: bool,
    },
    /// A symlink with its target bytes.
    Symlink(Arc<[u8]>),
}

/// A merged directory listing: (name, node, mtime), sorted by name bytes.
pub type MergedListing = Vec<(Box<[u8]>, UnionNode, Mtime)>;

/// Merges the directories `trees` (priority order) into one sorted listing.
pub fn merge(blobs: &dyn BlobService, trees: &[Digest]) -> Result<MergedListing, TreeError> {
    if let [single] = trees {
        // The common case (one artifact has this directory) needs no map.
        let tree = Tree::load(blobs, single)?;
        return Ok(tree
            .entries()
            .iter()
            .map(|e| (e.name.clone().into_boxed_slice(), to_union(&e.node), e.mtime))
            .collect());
    }
    let mut merged: BTreeMap<Box<[u8]>, (UnionNode, Vec<Digest>, Mtime)> = BTreeMap::new();
    for digest in trees {
        let tree = Tree::load(blobs, digest)?;
        for entry in tree.entries() {
            match merged.get_mut(entry.name.as_slice()) {
                None => {
                    let dirs = match &entry.node {
                        Node::Directory { digest } => vec![*digest],
                        _ => Vec::new(),
                    };
                    merged.insert(
                        entry.name.clone().into_boxed_slice(),
                        (to_union(&entry.node), dirs, entry.mtime),
                    );
                }
                Some((UnionNode::Directory(_), dirs, _)) => {
                    if let Node::Directory { digest } = &entry.node {
                        dirs.push(*digest);
                    }
                }
                Some(_) => {}
            }
        }
    }
    Ok(merged
        .into_iter()
        .map(|(name, (node, dirs, mtime))| match node {
            UnionNode::Directory(_) => (name, UnionNode::Directory(dirs.into()), mtime),
            other => (name, other, mtime),
        })
        .collect())
}

fn to_union(node: &Node) -> UnionNode {
    match node {
        Node::Directory { digest } => UnionNode::Directory(Arc::from(vec![*digest])),
        Node::File {
            digest,
            size,
            executable,
        } => UnionNode::File {
            digest: *digest,
            size: *size,
            executable: *executable,
        },
        Node::Symlink { target } => UnionNode::Symlink(Arc::from(target.as_slice())),
    }
}

/// A path that more than one tree provides as a non-directory (or where kinds clash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    /// Path from the union root, `/`-separated.
    pub path: String,
    /// Indexes (into the tree list) of every tree that has this path; the first wins.
    pub providers: Vec<usize>,
}

/// Every conflicting path of a union of `roots`.
pub fn conflicts(blobs: &dyn BlobService, roots: &[Digest]) -> Result<Vec<Conflict>, TreeError> {
    let mut out = Vec::new();
    let tagged: Vec<(usize, Digest)> = roots.iter().copied().enumerate().collect();
    walk_conflicts(blobs, &tagged, String::new(), &mut out)?;
    Ok(out)
}

fn walk_conflicts(
    blobs: &dyn BlobService,
    trees: &[(usize, Digest)],
    prefix: String,
    out: &mut Vec<Conflict>,
) -> Result<(), TreeError> {
    if trees.len() < 2 {
        return Ok(());
    }
    let mut by_name: BTreeMap<Vec<u8>, Vec<(usize, Node)>> = BTreeMap::new();
    for (index, digest) in trees {
        for entry in Tree::load(blobs, digest)?.entries() {
            by_name
                .entry(entry.name.clone())
                .or_default()
                .push((*index, entry.node.clone()));
        }
    }
    for (name, providers) in by_name {
        if providers.len() < 2 {
            continue;
        }
        let path = format!("{prefix}{}", String::from_utf8_lossy(&name));
        let dirs: Vec<(usize, Digest)> = providers
            .iter()
            .filter_map(|(i, node)| match node {
                Node::Directory { digest } => Some((*i, *digest)),
                _ => None,
            })
            .collect();
        if dirs.len() == providers.len() {
            walk_conflicts(blobs, &dirs, format!("{path}/"), out)?;
        } else {
            out.push(Conflict {
                path,
                providers: providers.iter().map(|(i, _)| *i).collect(),
            });
        }
    }
    Ok(())
}
