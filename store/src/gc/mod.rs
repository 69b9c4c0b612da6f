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
//!
//! The steps, one submodule each: [`roots`] (what is kept by policy), [`mark`] (what the roots
//! reach), [`sweep`] (what is left, and removing it).

mod mark;
mod roots;
mod sweep;

use crate::artifact::ArtifactId;
use crate::source::SourceError;
use crate::store::{Store, StoreError};

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

/// Why garbage collection stopped (before removing anything, except for [`GcError::Store`]
/// and [`GcError::Source`] during the sweep, which leave only unreferenced objects behind).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A tree GC must keep is missing or unreadable, so it cannot know what lies below.
    #[error("cannot collect garbage: {owner} is kept but incomplete at {path:?} (run `hdist store verify` for every problem, then add the artifact again, which gives the same id, or run `hdist store verify --repair`)")]
    IncompleteRoot {
        /// The artifact, generation or source that keeps the tree.
        owner: String,
        /// Where below its root the tree is unreadable (`.` for the root itself).
        path: String,
        /// Why it could not be read.
        #[source]
        source: Box<StoreError>,
    },
    /// Listing or removing cached sources failed.
    #[error("garbage collection: {0}")]
    Source(#[from] SourceError),
    /// The store (lock, documents, index, objects) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Removing a generation or object file failed.
    #[error(transparent)]
    Io(#[from] crate::IoError),
}

/// Collects garbage in `store`; see the module docs.
pub fn collect(store: &Store, options: &GcOptions) -> Result<GcReport, GcError> {
    let _exclusive = store.exclusive_lock()?;
    let artifacts = roots::ArtifactDocuments::read(store)?;
    let roots = roots::Roots::find(store, options)?;
    let marked = mark::mark(store, &roots, &artifacts)?;
    let sweep = sweep::Sweep::plan(store, &artifacts, &marked, roots)?;
    if options.dry_run {
        return Ok(sweep.report);
    }
    crate::crashpoint::hit("gc.marked");
    sweep.run(store)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::tree::MtimePolicy;

    #[test]
    fn pinned_and_profiled_artifacts_stay_the_rest_goes_and_dry_run_removes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let add = |name: &str, content: &str| {
            let src = dir.path().join(name);
            fs::create_dir_all(&src).unwrap();
            fs::write(src.join("file"), content).unwrap();
            store
                .add_tree(&src, name, None, MtimePolicy::Zero, &|_| {})
                .unwrap()
                .record
                .id
        };
        let pinned = add("pinned", "kept by its pin");
        let member = add("member", "kept by the profile");
        let garbage = add("garbage", "kept by nothing");
        store.pin(&pinned).unwrap();
        store.profiles().create("p", &[member.to_string()]).unwrap();
        let documents = |store: &Store| -> Vec<ArtifactId> {
            store
                .artifact_documents()
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect()
        };

        let dry = collect(
            &store,
            &GcOptions {
                dry_run: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(dry.artifacts, vec![garbage.to_string()]);
        assert!(dry.objects > 0, "{dry:?}");
        assert_eq!(documents(&store).len(), 3, "the dry run removed something");

        let report = collect(&store, &GcOptions::default()).unwrap();
        assert_eq!(report.artifacts, dry.artifacts);
        assert_eq!((report.objects, report.bytes), (dry.objects, dry.bytes));
        let left = documents(&store);
        assert!(left.contains(&pinned) && left.contains(&member), "{left:?}");
        assert!(!left.contains(&garbage), "{left:?}");

        let again = collect(&store, &GcOptions::default()).unwrap();
        assert_eq!((again.objects, again.artifacts.len()), (0, 0), "{again:?}");
        assert_eq!(again.kept_objects, report.kept_objects);
    }
}
