//! Garbage collection: mark from roots, sweep the rest.
//!
//! Roots: every profile's current generation and the newest `keep_generations` others, the
//! profiles and artifacts of live mounts, pinned artifacts (`hdist store pin`), and sources
//! fetched with the `keep` policy. From
//! them the mark follows profile documents (and the trees their rules produced), artifacts
//! (root trees, build logs, and, transitively, the artifacts they imported, since builds link
//! against imports at their final paths), trees and blobs. Everything unmarked goes: objects,
//! artifact documents and index rows, old generations, transient sources, cached and
//! linkfarm copies, and build directories left by failed or killed builds.
//!
//! Safety: GC holds `<store>/gc.lock` exclusively for mark and sweep; every writer (ingest,
//! build, fetch, profile creation) holds it shared from its first object to its commit point,
//! so no object is swept between being found present (dedup) and being referenced. Mounts
//! only read; what a live mount shows is a root.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use crate::artifact::{ArtifactId, ArtifactRecord};
use crate::blob::LocalBlobService;
use crate::hash::Digest;
use crate::profile::ProfileDoc;
use crate::store::{Store, StoreError};
use crate::tree::{Node, Tree};

/// What to collect.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report only; delete nothing.
    pub dry_run: bool,
    /// Besides the current one, keep this many newest generations per profile (`None`: all).
    pub keep_generations: Option<usize>,
    /// Profiles shown by live mounts (their current generations are roots anyway).
    pub live_profiles: Vec<String>,
    /// Artifacts shown by live mounts.
    pub live_artifacts: Vec<ArtifactId>,
}

/// What was (or, with `dry_run`, would be) freed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    /// Objects removed.
    pub objects: u64,
    /// Bytes their files took.
    pub bytes: u64,
    /// Artifacts removed.
    pub artifacts: Vec<String>,
    /// Profile generations removed (`name/N`).
    pub generations: Vec<String>,
    /// Transient sources removed.
    pub sources: Vec<String>,
    /// Cached, linkfarm and build-directory bytes removed.
    pub other_bytes: u64,
    /// Objects kept.
    pub kept_objects: u64,
}

struct Marker<'a> {
    store: &'a Store,
    marked: HashSet<Digest>,
}

impl Marker<'_> {
    fn tree(&mut self, digest: &Digest) -> Result<(), StoreError> {
        if !self.marked.insert(*digest) {
            return Ok(());
        }
        let tree = Tree::load(self.store.blobs().as_ref(), digest)?;
        for entry in tree.entries() {
            match &entry.node {
                Node::Directory { digest } => self.tree(digest)?,
                Node::File { digest, .. } => {
                    self.marked.insert(*digest);
                }
                Node::Symlink { .. } => {}
            }
        }
        Ok(())
    }
}

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

impl Store {
    /// Collects garbage; see the module docs.
    pub fn gc(&self, options: &GcOptions) -> Result<GcReport, StoreError> {
        let _exclusive = self.exclusive_lock()?;
        let mut report = GcReport::default();
        let mut marker = Marker {
            store: self,
            marked: HashSet::new(),
        };
        let records: HashMap<ArtifactId, ArtifactRecord> =
            self.artifacts()?.into_iter().map(|r| (r.id.clone(), r)).collect();

        // Roots: live mounts' artifacts, pins, profile generations.
        let mut keep_artifacts: Vec<ArtifactId> = options.live_artifacts.clone();
        keep_artifacts.extend(self.pins()?);
        let mut doomed_generations = Vec::new();
        for name in self.profile_names()? {
            let current = self.current_generation(&name)?.map(|g| g.number);
            let mut generations = self.generations(&name)?;
            generations.reverse(); // newest first
            let mut kept_others = 0;
            for generation in generations {
                let keep = Some(generation.number) == current
                    || options.keep_generations.is_none_or(|n| {
                        kept_others += 1;
                        kept_others <= n
                    });
                if !keep {
                    doomed_generations.push(generation);
                    continue;
                }
                marker.marked.insert(generation.document);
                let doc: ProfileDoc = self.profile_doc(&generation.document)?;
                for artifact in &doc.artifacts {
                    keep_artifacts.push(artifact.id.clone());
                    // Marked from the document itself: a member may lack an index row (a crash
                    // between its document and its row) and must still keep its objects.
                    marker.tree(&artifact.root)?;
                    if let Some(view) = artifact.view {
                        marker.tree(&view)?;
                    }
                }
            }
        }
        // Artifacts, with their imports.
        let mut kept: HashSet<ArtifactId> = HashSet::new();
        while let Some(id) = keep_artifacts.pop() {
            if !kept.insert(id.clone()) {
                continue;
            }
            let record = match records.get(&id) {
                Some(record) => record.clone(),
                None => match self.artifact_document(&id)? {
                    Some(record) => record,
                    None => continue,
                },
            };
            marker.tree(&record.root)?;
            if let Some(document) = self.artifact_document(&id)? {
                if let Some(log) = document.build_log {
                    marker.marked.insert(log);
                }
            }
            let imports = record
                .spec
                .as_ref()
                .and_then(|s| s.pointer("/build/import"))
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default();
            for import in imports {
                if let Some(id) = import
                    .get("id")
                    .and_then(|i| i.as_str())
                    .and_then(|i| i.parse().ok())
                {
                    keep_artifacts.push(id);
                }
            }
        }
        // Sources kept by policy.
        let mut doomed_sources = Vec::new();
        for source in crate::source::list_sources(self).map_err(|e| StoreError::Gc(Box::new(e)))? {
            if source.keep == crate::source::KeepPolicy::Transient {
                doomed_sources.push(source);
                continue;
            }
            match source.content {
                crate::source::SourceContent::Blob(d) => {
                    marker.marked.insert(d);
                }
                crate::source::SourceContent::Tree(d) => marker.tree(&d)?,
            }
        }

        // Sweep.
        let marked = marker.marked;
        let mut removed_objects = Vec::new();
        for object in self.blobs().list()? {
            if marked.contains(&object.digest) {
                report.kept_objects += 1;
                continue;
            }
            report.objects += 1;
            report.bytes += object.stored_size;
            removed_objects.push(object);
        }
        for id in records.keys().filter(|id| !kept.contains(*id)) {
            report.artifacts.push(id.to_string());
        }
        report.artifacts.sort();
        for g in &doomed_generations {
            report.generations.push(format!("{}/{}", g.name, g.number));
        }
        for s in &doomed_sources {
            report.sources.push(s.key.to_string());
        }
        let copies: Vec<_> = [self.blobs().cache_dir(), self.blobs().linkfarm_dir()]
            .iter()
            .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().flatten())
            .flat_map(|fanout| fs::read_dir(fanout.path()).into_iter().flatten().flatten())
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .and_then(LocalBlobService::linkfarm_digest)
                    .is_some_and(|d| !marked.contains(&d))
            })
            .collect();
        // Builds hold the GC lock shared until they finish, so while GC holds it exclusively
        // every build directory is left over (a failure kept for inspection, or a crash).
        let stale_builds: Vec<_> = fs::read_dir(self.root().join("builds"))
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        report.other_bytes = copies
            .iter()
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum::<u64>()
            + stale_builds.iter().map(|e| dir_bytes(&e.path())).sum::<u64>();
        if options.dry_run {
            return Ok(report);
        }
        crate::crashpoint::hit("gc.marked");
        // Metadata first (nothing may point at a missing object), then the objects.
        for g in &doomed_generations {
            let path = self
                .root()
                .join("profiles")
                .join(&g.name)
                .join(g.number.to_string());
            fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
        }
        for id in records.keys().filter(|id| !kept.contains(*id)) {
            self.remove_artifact(id)?;
        }
        for source in &doomed_sources {
            crate::source::remove_source(self, &source.key).map_err(|e| StoreError::Gc(Box::new(e)))?;
        }
        self.index()
            .remove_objects(&removed_objects.iter().map(|o| o.digest).collect::<Vec<_>>())?;
        crate::crashpoint::hit("gc.metadata-removed");
        for object in &removed_objects {
            fs::remove_file(&object.path).map_err(StoreError::io("remove", &object.path))?;
            crate::crashpoint::hit("gc.object-removed");
        }
        for copy in copies {
            let _ = fs::remove_file(copy.path());
        }
        for build in stale_builds {
            let _ = fs::remove_dir_all(build.path());
        }
        Ok(report)
    }
}
