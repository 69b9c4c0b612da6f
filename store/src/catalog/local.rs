//! The catalog of a local store (artifact documents, index, profile generations).

use std::sync::Arc;

use super::Catalog;
use crate::artifact::ArtifactId;
use crate::hash::Digest;
use crate::profile::{Generation, ProfileDoc};
use crate::store::{Store, StoreError};

/// [`Catalog`] over a local [`Store`].
#[derive(Debug, Clone)]
pub struct LocalCatalog {
    store: Arc<Store>,
}

impl LocalCatalog {
    /// Wraps a store.
    pub fn new(store: Arc<Store>) -> Self {
        LocalCatalog { store }
    }
}

impl Catalog for LocalCatalog {
    fn profile(&self, name: &str) -> Result<Option<(Generation, ProfileDoc)>, StoreError> {
        match self.store.current_generation(name)? {
            Some(generation) => {
                let doc = self.store.profile_doc(&generation.document)?;
                Ok(Some((generation, doc)))
            }
            None => Ok(None),
        }
    }

    fn current_document(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        Ok(self.store.current_generation(name)?.map(|g| g.document))
    }

    fn profile_names(&self) -> Result<Vec<String>, StoreError> {
        self.store.profile_names()
    }

    fn artifacts(&self) -> Result<Vec<(ArtifactId, Digest)>, StoreError> {
        Ok(self
            .store
            .artifacts()?
            .into_iter()
            .map(|r| (r.id, r.root))
            .collect())
    }

    fn artifact_root(&self, id: &ArtifactId) -> Result<Option<Digest>, StoreError> {
        match self.store.find_artifact(&id.to_string()) {
            Ok(record) => Ok(Some(record.root)),
            Err(StoreError::UnknownArtifact { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
