//! GC roots: what is kept by policy before any reference is followed, and the artifact
//! documents (the commit points) that decide which artifacts exist at all.

use std::collections::HashMap;

use super::{GcError, GcOptions};
use crate::artifact::{ArtifactId, ArtifactRecord};
use crate::profile::{Generation, ProfileDoc};
use crate::source::{KeepPolicy, SourceRecord};
use crate::store::Store;

/// The artifacts on disk, and the index rows that lag behind them.
pub(super) struct ArtifactDocuments {
    /// Every artifact document, by id.
    pub records: HashMap<ArtifactId, ArtifactRecord>,
    /// Index rows of artifacts without a document (a crash after the document went).
    pub stale_rows: Vec<ArtifactId>,
}

impl ArtifactDocuments {
    /// Reads the commit points, not the index: a document whose row a crash lost is an
    /// artifact, a row without a document is not.
    pub fn read(store: &Store) -> Result<Self, GcError> {
        let records: HashMap<ArtifactId, ArtifactRecord> = store
            .artifact_documents()?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let stale_rows = store
            .index()
            .artifacts_with_prefix("")
            .map_err(crate::store::StoreError::from)?
            .into_iter()
            .map(|r| r.id)
            .filter(|id| !records.contains_key(id))
            .collect();
        Ok(Self { records, stale_rows })
    }
}

/// A profile generation GC keeps, with its document.
pub(super) struct KeptGeneration {
    /// The generation.
    pub generation: Generation,
    /// Its document, read (a kept generation whose document is unreadable stops GC).
    pub doc: ProfileDoc,
}

/// Names a generation in errors.
pub(super) fn generation_owner(generation: &Generation) -> String {
    format!("profile {} generation {}", generation.name, generation.number)
}

/// What GC keeps by policy, and what policy lets go.
pub(super) struct Roots {
    /// Artifacts kept directly: live mounts', pinned, and members of kept generations.
    pub artifacts: Vec<ArtifactId>,
    /// Every profile's current generation and the newest `keep_generations` others.
    pub generations: Vec<KeptGeneration>,
    /// Sources fetched with a keeping policy.
    pub sources: Vec<SourceRecord>,
    /// Generations beyond `keep_generations`.
    pub doomed_generations: Vec<Generation>,
    /// Transient sources.
    pub doomed_sources: Vec<SourceRecord>,
}

impl Roots {
    /// Finds the roots in `store` under `options`.
    pub fn find(store: &Store, options: &GcOptions) -> Result<Self, GcError> {
        let mut artifacts: Vec<ArtifactId> = options.live_artifacts.clone();
        artifacts.extend(store.pins()?);
        let (generations, doomed_generations) = generations(store, options.keep_generations)?;
        for kept in &generations {
            artifacts.extend(kept.doc.artifacts.iter().map(|a| a.id.clone()));
        }
        let (sources, doomed_sources) = crate::source::list_sources(store)?
            .into_iter()
            .partition(|s| s.keep != KeepPolicy::Transient);
        Ok(Self {
            artifacts,
            generations,
            sources,
            doomed_generations,
            doomed_sources,
        })
    }
}

/// Splits every profile's generations into kept (with their documents) and doomed.
fn generations(
    store: &Store,
    keep_generations: Option<usize>,
) -> Result<(Vec<KeptGeneration>, Vec<Generation>), GcError> {
    let mut kept = Vec::new();
    let mut doomed = Vec::new();
    for name in store.profiles().names()? {
        let current = store.profiles().current(&name)?.map(|g| g.number);
        let mut generations = store.profiles().generations(&name)?;
        generations.reverse(); // newest first
        let mut kept_others = 0;
        for generation in generations {
            let keep = Some(generation.number) == current
                || keep_generations.is_none_or(|n| {
                    kept_others += 1;
                    kept_others <= n
                });
            if !keep {
                doomed.push(generation);
                continue;
            }
            let doc =
                store
                    .profiles()
                    .doc(&generation.document)
                    .map_err(|source| GcError::IncompleteRoot {
                        owner: generation_owner(&generation),
                        path: "(profile document)".to_string(),
                        source: Box::new(source),
                    })?;
            kept.push(KeptGeneration { generation, doc });
        }
    }
    Ok((kept, doomed))
}
