//! Test support: the contract suites every backend of [`crate::blob::BlobService`] and
//! [`crate::catalog::Catalog`] is run through, and what they need to set a backend up.
//!
//! hdist itself never calls this. It is an ordinary module (no cargo feature) so that tests
//! outside this crate run the very same suite: the HTTP and cached-over-HTTP backends are
//! checked by the integration tests (`tests/contract.rs`), which own the in-process HTTP test
//! server; the local and memory backends by this crate's unit tests.
//!
//! A suite runs every check of a backend even when one fails, then fails naming each check
//! that did, so one run shows everything a broken backend gets wrong.

pub mod blob_contract;
pub mod catalog_contract;

use std::io;
use std::path::Path;

use crate::hash::Digest;
use crate::remote::chunks::ChunkTable;
use crate::remote::object_path;

/// One check of a suite, by name, ready to run against its backend.
type NamedCheck<'a> = (&'static str, Box<dyn FnOnce() + 'a>);

/// Runs `checks` in order, catching the panic of each failing one; panics at
/// the end listing every failure of `backend`.
fn run_checks(suite: &str, backend: &str, checks: Vec<NamedCheck<'_>>) {
    let mut failures = Vec::new();
    for (name, check) in checks {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".to_string());
            failures.push(format!("  {name}: {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "the {backend} backend breaks the {suite} contract in {} check(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Writes `raw` as the published object named `digest` under `dir` (one zstd frame at
/// [`object_path`], as `hdist publish` lays it out). Naming content by another digest is how
/// a test plants a corrupt object.
pub fn publish_object(dir: &Path, digest: &Digest, raw: &[u8]) -> io::Result<()> {
    let path = dir.join(object_path(digest));
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, zstd::bulk::compress(raw, 3)?)
}

/// Publishes `raw` under `dir` as `hdist publish` does a large file: only its chunks of
/// `chunk_size` bytes and a chunk table. Returns the table's digest (what a manifest maps the
/// file's digest to; see [`crate::remote::chunks`]).
pub fn publish_chunked(dir: &Path, raw: &[u8], chunk_size: usize) -> io::Result<Digest> {
    let mut chunks = Vec::new();
    for chunk in raw.chunks(chunk_size) {
        let digest = Digest::of(chunk);
        publish_object(dir, &digest, chunk)?;
        chunks.push(digest);
    }
    let table = ChunkTable {
        file_size: raw.len() as u64,
        chunk_size: chunk_size as u64,
        chunks,
    }
    .encode();
    let digest = Digest::of(&table);
    publish_object(dir, &digest, &table)?;
    Ok(digest)
}
