//! The one integration-test binary: real processes, real stores, real FUSE mounts.

mod util;

mod hashing;
mod mount;
mod source;
mod store;
