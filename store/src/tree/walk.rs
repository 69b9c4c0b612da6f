//! One walker over the trees below some roots, for every job that visits each tree object
//! once: publish (what to upload), GC mark (what to keep), reindex (which objects are trees)
//! and the completeness check of a stored artifact.
//!
//! A walker remembers the trees it visited across roots, so roots that share subtrees cost
//! one visit each. Trees are visited parents first, children in entry order (the order a
//! recursive walk would take), so the first problem reported is the first a reader meets.

use std::collections::HashSet;

use super::{Node, Tree, TreeError};
use crate::blob::BlobService;
use crate::hash::Digest;

/// A tree a walk reached.
#[derive(Debug)]
pub struct Visit<'t> {
    /// The tree object.
    pub digest: Digest,
    /// Its path below the root of this walk, `/`-separated (empty for the root).
    pub path: &'t [u8],
    /// The decoded tree, or why it could not be loaded (the walk does not descend then).
    pub tree: Result<&'t Tree, TreeError>,
}

impl Visit<'_> {
    /// The path for messages: `.` for the root.
    pub fn display_path(&self) -> String {
        if self.path.is_empty() {
            ".".to_string()
        } else {
            String::from_utf8_lossy(self.path).into_owned()
        }
    }
}

/// Walks the trees below roots through a blob service, each tree once.
pub struct TreeWalker<'a> {
    blobs: &'a dyn BlobService,
    visited: HashSet<Digest>,
}

impl std::fmt::Debug for TreeWalker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeWalker")
            .field("visited", &self.visited.len())
            .finish_non_exhaustive()
    }
}

impl<'a> TreeWalker<'a> {
    /// A walker that has visited nothing yet.
    pub fn new(blobs: &'a dyn BlobService) -> TreeWalker<'a> {
        TreeWalker {
            blobs,
            visited: HashSet::new(),
        }
    }

    /// The trees visited so far (loadable or not).
    pub fn visited(&self) -> &HashSet<Digest> {
        &self.visited
    }

    /// Calls `visit` for `root` and every tree below it that this walker has not visited
    /// yet; stops at the first error `visit` returns.
    pub fn walk<E>(
        &mut self,
        root: &Digest,
        mut visit: impl FnMut(Visit<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut pending: Vec<(Digest, Vec<u8>)> = vec![(*root, Vec::new())];
        while let Some((digest, path)) = pending.pop() {
            if !self.visited.insert(digest) {
                continue;
            }
            let tree = match Tree::load(self.blobs, &digest) {
                Ok(tree) => tree,
                Err(e) => {
                    visit(Visit {
                        digest,
                        path: &path,
                        tree: Err(e),
                    })?;
                    continue;
                }
            };
            visit(Visit {
                digest,
                path: &path,
                tree: Ok(&tree),
            })?;
            // Reversed onto the stack, so children come off in entry order.
            for entry in tree.entries().iter().rev() {
                if let Node::Directory { digest } = &entry.node {
                    let mut child = path.clone();
                    if !child.is_empty() {
                        child.push(b'/');
                    }
                    child.extend_from_slice(&entry.name);
                    pending.push((*digest, child));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::MemoryBlobService;
    use crate::tree::{Entry, Mtime};

    fn put_tree(blobs: &MemoryBlobService, entries: Vec<Entry>) -> Digest {
        blobs.insert(&Tree::new(entries).unwrap().encode())
    }

    fn dir(name: &str, digest: Digest) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            node: Node::Directory { digest },
            mtime: Mtime::UNRECORDED,
        }
    }

    #[test]
    fn visits_each_tree_once_parents_first_in_entry_order_with_paths() {
        let blobs = MemoryBlobService::new();
        let leaf = put_tree(&blobs, Vec::new());
        let a = put_tree(&blobs, vec![dir("x", leaf)]);
        let root = put_tree(&blobs, vec![dir("a", a), dir("b", leaf)]);
        let mut walker = TreeWalker::new(&blobs);
        let mut seen = Vec::new();
        walker
            .walk(&root, |v| {
                assert!(v.tree.is_ok());
                seen.push(v.display_path());
                Ok::<_, ()>(())
            })
            .unwrap();
        // `b` is the same tree as `a/x`: visited once.
        assert_eq!(seen, [".", "a", "a/x"]);
        assert_eq!(walker.visited().len(), 3);
        // A second root sharing every tree visits nothing.
        walker.walk(&a, |_| Err(())).unwrap();
    }

    #[test]
    fn a_missing_tree_is_visited_with_its_error_and_its_path() {
        let blobs = MemoryBlobService::new();
        let missing = Digest::of(b"not stored");
        let root = put_tree(&blobs, vec![dir("gone", missing)]);
        let mut failed = Vec::new();
        TreeWalker::new(&blobs)
            .walk(&root, |v| {
                if v.tree.is_err() {
                    failed.push((v.digest, v.display_path()));
                }
                Ok::<_, ()>(())
            })
            .unwrap();
        assert_eq!(failed, [(missing, "gone".to_string())]);
    }
}
