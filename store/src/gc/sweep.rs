//! GC sweep: what the mark did not reach, and removing it in commit-protocol order (metadata
//! first, so nothing ever points at a missing object; then the objects; then copies).

use std::fs;
use std::path::Path;

use super::mark::Marked;
use super::roots::{ArtifactDocuments, Roots};
use super::{GcError, GcReport};
use crate::artifact::ArtifactId;
use crate::blob::{LocalBlobService, StoredObject};
use crate::profile::Generation;
use crate::source::SourceRecord;
use crate::store::{Store, StoreError};
use crate::IoContext;

/// Everything unmarked, found but not yet removed.
pub(super) struct Sweep {
    /// What removing it frees.
    pub report: GcReport,
    objects: Vec<StoredObject>,
    artifacts: Vec<ArtifactId>,
    stale_rows: Vec<ArtifactId>,
    generations: Vec<Generation>,
    sources: Vec<SourceRecord>,
    copies: Vec<fs::DirEntry>,
    builds: Vec<fs::DirEntry>,
}

impl Sweep {
    /// Lists what `marked` leaves unreached and what it frees.
    pub fn plan(
        store: &Store,
        documents: &ArtifactDocuments,
        marked: &Marked,
        roots: Roots,
    ) -> Result<Self, GcError> {
        let mut report = GcReport::default();
        let mut objects = Vec::new();
        for object in store.objects().list().map_err(StoreError::from)? {
            if marked.objects.contains(&object.digest) {
                report.kept_objects += 1;
                continue;
            }
            report.objects += 1;
            report.bytes += object.stored_size;
            objects.push(object);
        }
        let artifacts: Vec<ArtifactId> = documents
            .records
            .keys()
            .filter(|id| !marked.artifacts.contains(*id))
            .cloned()
            .collect();
        report.artifacts = artifacts.iter().map(|id| id.to_string()).collect();
        report.artifacts.sort();
        report.generations = roots
            .doomed_generations
            .iter()
            .map(|g| format!("{}/{}", g.name, g.number))
            .collect();
        report.sources = roots.doomed_sources.iter().map(|s| s.key.to_string()).collect();
        let copies: Vec<_> = [store.blobs().copies_dir(), store.objects().linkfarm_dir()]
            .iter()
            .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().flatten())
            .flat_map(|fanout| fs::read_dir(fanout.path()).into_iter().flatten().flatten())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(LocalBlobService::linkfarm_digest)
                    .is_some_and(|d| !marked.objects.contains(&d))
            })
            .collect();
        // Builds hold the GC lock shared until they finish, so while GC holds it exclusively
        // every build directory is left over (a failure kept for inspection, or a crash).
        let builds: Vec<_> = fs::read_dir(store.root().join("builds"))
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        report.other_bytes = copies
            .iter()
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
            + builds.iter().map(|e| dir_bytes(&e.path())).sum::<u64>();
        Ok(Self {
            report,
            objects,
            artifacts,
            stale_rows: documents.stale_rows.clone(),
            generations: roots.doomed_generations,
            sources: roots.doomed_sources,
            copies,
            builds,
        })
    }

    /// Removes it all; returns what was freed.
    pub fn run(self, store: &Store) -> Result<GcReport, GcError> {
        // Metadata first (nothing may point at a missing object), then the objects.
        for g in &self.generations {
            let path = store
                .root()
                .join("profiles")
                .join(&g.name)
                .join(g.number.to_string());
            fs::remove_file(&path).io_context("remove", &path)?;
        }
        for id in &self.artifacts {
            store.remove_artifact(id)?;
        }
        for id in &self.stale_rows {
            store.index().remove_artifact(id).map_err(StoreError::from)?;
        }
        for source in &self.sources {
            crate::source::remove_source(store, &source.key)?;
        }
        store
            .index()
            .remove_objects(&self.objects.iter().map(|o| o.digest).collect::<Vec<_>>())
            .map_err(StoreError::from)?;
        crate::crashpoint::hit("gc.metadata-removed");
        for object in &self.objects {
            fs::remove_file(&object.path).io_context("remove", &object.path)?;
            crate::crashpoint::hit("gc.object-removed");
        }
        for copy in &self.copies {
            let _ = fs::remove_file(copy.path());
        }
        for build in &self.builds {
            let _ = fs::remove_dir_all(build.path());
        }
        Ok(self.report)
    }
}

/// Bytes of the files below `path` (what removing it frees), ignoring what cannot be read.
fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(_) => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => {}
            }
        }
    }
    total
}
