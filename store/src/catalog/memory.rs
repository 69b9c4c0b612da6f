//! [`MemoryCatalog`]: artifacts and profile generations held in memory, for tests of views
//! and anything else that reads a [`Catalog`].
//!
//! A test adds artifacts and sets profiles; each [`MemoryCatalog::set_profile`] is the next
//! generation of that profile, made current at once, and wakes every
//! [`Catalog::wait_for_change`]. Document digests are those of [`ProfileDoc::to_bytes`], as in
//! a local store; the documents themselves are held here, not in a blob service.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use super::Catalog;
use crate::artifact::ArtifactId;
use crate::hash::Digest;
use crate::profile::{Generation, ProfileDoc};
use crate::store::StoreError;

/// A catalog in memory; see the module doc.
#[derive(Debug, Default)]
pub struct MemoryCatalog {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    artifacts: BTreeMap<ArtifactId, Digest>,
    profiles: BTreeMap<String, (Generation, ProfileDoc)>,
    /// Bumped by every change to a profile, so waiters can tell a change from a spurious wake.
    changes: u64,
}

impl MemoryCatalog {
    /// An empty catalog.
    pub fn new() -> MemoryCatalog {
        MemoryCatalog::default()
    }

    /// Adds (or re-roots) an artifact.
    pub fn add_artifact(&self, id: ArtifactId, root: Digest) {
        self.state.lock().unwrap().artifacts.insert(id, root);
    }

    /// Makes `doc` the next generation of profile `name` (generation 1 for a new profile) and
    /// returns it.
    pub fn set_profile(&self, name: &str, doc: ProfileDoc) -> Generation {
        let mut state = self.state.lock().unwrap();
        let number = state.profiles.get(name).map_or(0, |(g, _)| g.number) + 1;
        let generation = Generation {
            name: name.to_string(),
            number,
            document: Digest::of(&doc.to_bytes()),
        };
        state.profiles.insert(name.to_string(), (generation.clone(), doc));
        state.changes += 1;
        self.changed.notify_all();
        generation
    }

    /// Removes profile `name`; whether it existed.
    pub fn remove_profile(&self, name: &str) -> bool {
        let mut state = self.state.lock().unwrap();
        let existed = state.profiles.remove(name).is_some();
        state.changes += 1;
        self.changed.notify_all();
        existed
    }
}

impl Catalog for MemoryCatalog {
    fn profile(&self, name: &str) -> Result<Option<(Generation, ProfileDoc)>, StoreError> {
        Ok(self.state.lock().unwrap().profiles.get(name).cloned())
    }

    fn wait_for_change(&self, timeout: Duration) {
        let state = self.state.lock().unwrap();
        let seen = state.changes;
        let _woken = self
            .changed
            .wait_timeout_while(state, timeout, |state| state.changes == seen)
            .unwrap();
    }

    fn profile_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.state.lock().unwrap().profiles.keys().cloned().collect())
    }

    fn artifacts(&self) -> Result<Vec<(ArtifactId, Digest)>, StoreError> {
        let state = self.state.lock().unwrap();
        Ok(state
            .artifacts
            .iter()
            .map(|(id, root)| (id.clone(), *root))
            .collect())
    }

    fn artifact_root(&self, id: &ArtifactId) -> Result<Option<Digest>, StoreError> {
        Ok(self.state.lock().unwrap().artifacts.get(id).copied())
    }
}
