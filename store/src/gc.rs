//! Garbage collection: mark from the commit points on disk, sweep the rest.
//!
//! GC follows the commit protocol in [`crate::commit`] and trusts only the disk: the set of
//! artifacts is the artifact documents under `artifacts/`, never the index (which may lag; its
//! rows for artifacts without documents are dropped). Roots: every profile's current generation
//! and the newest `keep_generations` others, the profiles and artifacts of live mounts, pinned
//! artifacts (`hdist store pin`), and sources fetched with the `keep` policy. From them the mark
//! follows profile documents (and the trees their rules produced, and each member's root as the
//! profile recorded it, so a member without a document still keeps its objects), artifact
//! documents (root trees, build logs, and, transitively, the artifacts they imported, since
//! builds link against imports at their final paths), trees and blobs. Everything unmarked
//! goes: artifacts (index row, then document), old generations, transient sources, then
//! objects (rows, then files), cached and linkfarm copies, and build directories left by failed
//! or killed builds. A document is always removed before its objects, so a crash half-way
//! leaves only unreferenced objects, which the next GC sweeps.
//!
//! GC refuses to guess: a damaged artifact document stops it before anything is removed,
//! naming the file (`hdist store verify --repair` removes it), and so does a tree it must keep
//! but cannot read (it cannot know what lies below), naming the artifact or generation and the
//! path. A kept artifact missing only file contents is kept as it is; `verify` reports it.
//!
//! Safety: GC holds `<store>/gc.lock` exclusively for mark and sweep; every writer (ingest,
//! build, fetch, profile creation) holds it shared from its first object to its commit point,
//! so no object is swept between being found present (dedup) and being referenced, and no
//! running build's directory is swept. Mounts only read; what a live mount shows is a root.

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
    /// Marks the tree `digest` and everything below it, kept for `owner` (named if a tree
    /// cannot be read).
    fn tree(&mut self, digest: &Digest, owner: &dyn Fn() -> String) -> Result<(), StoreError> {
        self.walk(digest, owner, &mut Vec::new())
    }

    fn walk(
        &mut self,
        digest: &Digest,
        owner: &dyn Fn() -> String,
        path: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        if !self.marked.insert(*digest) {
            return Ok(());
        }
        let tree =
            Tree::load(self.store.blobs().as_ref(), digest).map_err(|source| StoreError::IncompleteRoot {
                owner: owner(),
                path: if path.is_empty() {
                    ".".to_string()
                } else {
                    String::from_utf8_lossy(path).into_owned()
                },
                source: Box::new(source.into()),
            })?;
        for entry in tree.entries() {
            match &entry.node {
                Node::Directory { digest } => {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(&entry.name);
                    self.walk(digest, owner, path)?;
                    path.truncate(len);
                }
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
        // The commit points, not the index: a document whose row a crash lost is an artifact.
        let records: HashMap<ArtifactId, ArtifactRecord> = self
            .artifact_documents()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let stale_rows: Vec<ArtifactId> = self
            .index()
            .artifacts_with_prefix("")?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| !records.contains_key(id))
            .collect();

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
                let owner = || format!("profile {} generation {}", generation.name, generation.number);
                let doc: ProfileDoc =
                    self.profile_doc(&generation.document)
                        .map_err(|source| StoreError::IncompleteRoot {
                            owner: owner(),
                            path: "(profile document)".to_string(),
                            source: Box::new(source),
                        })?;
                for artifact in &doc.artifacts {
                    keep_artifacts.push(artifact.id.clone());
                    // Marked from the profile document itself: a member may lack its artifact
                    // document (damage) and must still keep the objects the profile shows.
                    let member = || format!("{} (artifact {})", owner(), artifact.id);
                    marker.tree(&artifact.root, &member)?;
                    if let Some(view) = artifact.view {
                        marker.tree(&view, &member)?;
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
            // No document: a pin or mount of an artifact that is gone (a profile member was
            // marked from the profile document above).
            let Some(record) = records.get(&id) else {
                continue;
            };
            marker.tree(&record.root, &|| format!("artifact {id}"))?;
            if let Some(log) = record.build_log {
                marker.marked.insert(log);
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
                crate::source::SourceContent::Tree(d) => {
                    marker.tree(&d, &|| format!("source {}", source.key))?
                }
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
        for id in &stale_rows {
            self.index().remove_artifact(id)?;
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
