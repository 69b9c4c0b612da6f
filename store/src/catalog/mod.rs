//! The catalog: which artifacts and profiles exist, and their root trees.
//!
//! Together with [`crate::blob::BlobService`] this is everything the FUSE view reads, so a
//! view over a local store and one over a published remote store differ only in the two
//! backends they are given. [`MemoryCatalog`] serves tests; every backend is held to the
//! same contract by one suite ([`crate::testing::catalog_contract`]).

mod local;
mod memory;
#[cfg(test)]
mod tests;

pub use local::LocalCatalog;
pub use memory::MemoryCatalog;

use crate::artifact::ArtifactId;
use crate::hash::Digest;
use crate::profile::{Generation, ProfileDoc};
use crate::store::StoreError;

/// Read access to artifact and profile metadata.
pub trait Catalog: Send + Sync + std::fmt::Debug {
    /// The current generation of profile `name` and its document, or `None` if there is no
    /// such profile. Called again whenever a view re-checks for a generation switch, so it
    /// must be cheap when nothing changed.
    fn profile(&self, name: &str) -> Result<Option<(Generation, ProfileDoc)>, StoreError>;

    /// The document digest of profile `name`'s current generation (`None`: no such profile).
    /// Views poll this to follow generation switches, so backends should make it cheaper
    /// than [`Catalog::profile`] where they can.
    fn current_document(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        Ok(self.profile(name)?.map(|(generation, _)| generation.document))
    }

    /// Blocks until a profile may have changed, or `timeout` passed (spurious returns are
    /// fine). Views call this between [`Catalog::current_document`] checks; the default
    /// simply sleeps, backends that can be notified return as soon as something changed.
    fn wait_for_change(&self, timeout: std::time::Duration) {
        std::thread::sleep(timeout);
    }

    /// Names of all profiles, sorted.
    fn profile_names(&self) -> Result<Vec<String>, StoreError>;

    /// Every artifact with its root tree, sorted by id.
    fn artifacts(&self) -> Result<Vec<(ArtifactId, Digest)>, StoreError>;

    /// The root tree of one artifact, or `None` if unknown.
    fn artifact_root(&self, id: &ArtifactId) -> Result<Option<Digest>, StoreError>;
}
