//! GC mark: every object the roots reach, following profile documents, artifact documents
//! (with their imports), source records and trees.

use std::collections::HashSet;

use super::roots::{generation_owner, ArtifactDocuments, Roots};
use super::GcError;
use crate::artifact::ArtifactId;
use crate::hash::Digest;
use crate::source::SourceContent;
use crate::store::Store;
use crate::tree::{Node, TreeWalker};

/// What the mark reached.
pub(super) struct Marked {
    /// Objects to keep.
    pub objects: HashSet<Digest>,
    /// Artifacts to keep (documents may be missing for some: a pin of an artifact that is gone).
    pub artifacts: HashSet<ArtifactId>,
}

/// Marks everything `roots` reach; `artifacts` are the documents on disk.
pub(super) fn mark(store: &Store, roots: &Roots, artifacts: &ArtifactDocuments) -> Result<Marked, GcError> {
    let mut marker = Marker {
        walker: TreeWalker::new(store.blobs().as_ref()),
        marked: HashSet::new(),
    };
    for kept in &roots.generations {
        marker.marked.insert(kept.generation.document);
        let owner = || generation_owner(&kept.generation);
        for artifact in &kept.doc.artifacts {
            // Marked from the profile document itself: a member may lack its artifact
            // document (damage) and must still keep the objects the profile shows.
            let member = || format!("{} (artifact {})", owner(), artifact.id);
            marker.tree(&artifact.root, &member)?;
            if let Some(view) = artifact.view {
                marker.tree(&view, &member)?;
            }
        }
    }
    let kept_artifacts = marker.artifacts(roots.artifacts.clone(), artifacts)?;
    for source in &roots.sources {
        match source.content {
            SourceContent::Blob(d) => {
                marker.marked.insert(d);
            }
            SourceContent::Tree(d) => marker.tree(&d, &|| format!("source {}", source.key))?,
        }
    }
    let mut objects = marker.marked;
    objects.extend(marker.walker.visited());
    Ok(Marked {
        objects,
        artifacts: kept_artifacts,
    })
}

struct Marker<'a> {
    /// Every tree below the roots marked so far.
    walker: TreeWalker<'a>,
    /// Everything else marked: files, documents, logs, source blobs.
    marked: HashSet<Digest>,
}

impl Marker<'_> {
    /// Marks the artifacts in `pending` and, transitively, those they imported; returns the
    /// artifacts kept.
    fn artifacts(
        &mut self,
        mut pending: Vec<ArtifactId>,
        artifacts: &ArtifactDocuments,
    ) -> Result<HashSet<ArtifactId>, GcError> {
        let mut kept: HashSet<ArtifactId> = HashSet::new();
        while let Some(id) = pending.pop() {
            if !kept.insert(id.clone()) {
                continue;
            }
            // No document: a pin or mount of an artifact that is gone (a profile member was
            // marked from the profile document).
            let Some(record) = artifacts.records.get(&id) else {
                continue;
            };
            self.tree(&record.root, &|| format!("artifact {id}"))?;
            if let Some(log) = record.build_log {
                self.marked.insert(log);
            }
            pending.extend(record.imports());
        }
        Ok(kept)
    }

    /// Marks the tree `digest` and everything below it, kept for `owner` (named if a tree
    /// cannot be read).
    fn tree(&mut self, digest: &Digest, owner: &dyn Fn() -> String) -> Result<(), GcError> {
        let marked = &mut self.marked;
        self.walker.walk(digest, |visit| {
            let path = visit.display_path();
            let tree = visit.tree.map_err(|source| GcError::IncompleteRoot {
                owner: owner(),
                path,
                source: Box::new(source.into()),
            })?;
            for entry in tree.entries() {
                if let Node::File { digest, .. } = &entry.node {
                    marked.insert(*digest);
                }
            }
            Ok(())
        })
    }
}
