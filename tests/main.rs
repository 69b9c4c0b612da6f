//! The one integration-test binary: real processes, real stores, real FUSE mounts.

mod util;

mod build;
mod cli;
mod contract;
mod copies;
mod copy_closure;
mod crash;
mod gc_verify;
mod hashing;
mod hostile;
mod http_server;

mod mount;
mod mtime;
mod profile;
mod reliability;
mod remote;
mod remote_faults;
mod slurm;
mod source;
mod stack;
mod store;
mod stress;
mod templates;
