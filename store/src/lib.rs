//! hdist-store: the content-addressed store behind hdist.
//!
//! Layers, bottom up: [`hash`] (SHA-256 digests and Hashdist-compatible ids), [`blob`]
//! (verified content-addressed objects), [`tree`] (Merkle directories), [`index`] (the SQLite
//! view), [`artifact`] and [`store`] (the local store that ties them together).
pub mod artifact;
pub mod blob;
pub mod build;
pub mod catalog;
pub mod commit;
pub mod crashpoint;
pub mod gc;
pub mod glob;
pub mod hash;
pub mod http_limits;
pub mod index;
pub mod modes;
pub mod profile;
pub mod remote;
pub mod scratch;
pub mod source;
pub mod stack;
pub mod store;
pub mod suggest;
pub mod testing;
pub mod tree;
pub mod union;
pub mod verify;

pub use artifact::{ArtifactId, ArtifactRecord};
pub use hash::Digest;
pub use store::{Store, StoreError};
