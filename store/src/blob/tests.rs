//! The blob contract suite ([`crate::testing::blob_contract`]) run over the backends this
//! crate can set up alone: memory, local, the caching layer ([`CachedBlobService`]) over each
//! of them, and a store's blobs as readers get them (local objects behind the layer in the
//! store's layout). HTTP and cached-over-HTTP run it from the integration tests, which own the
//! test server.

use std::sync::Arc;

use super::{BlobService, Codec, LocalBlobService, MemoryBlobService};
use crate::remote::{CacheOptions, CachedBlobService};
use crate::store::Store;
use crate::testing::blob_contract::{self, BlobSamples};

#[test]
fn memory_backend_meets_the_blob_contract() {
    let samples = BlobSamples::new();
    let blobs = MemoryBlobService::new();
    for sample in samples.stored() {
        assert_eq!(blobs.insert(&sample.bytes), sample.digest);
    }
    // Memory holds only what it hashed itself: there is nothing to corrupt.
    blob_contract::run("memory", &blobs, &samples, None);
}

/// A new store (in the returned directory) whose local backend holds every sample.
fn store_with(samples: &BlobSamples) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let batch = store.objects().batch();
    for sample in samples.stored() {
        assert_eq!(batch.put_bytes(&sample.bytes).unwrap().digest, sample.digest);
    }
    batch.commit().unwrap();
    (dir, store)
}

/// Replaces the victim's object file in `blobs` with other bytes of the same length.
fn corrupt_local_victim(blobs: &LocalBlobService, samples: &BlobSamples) {
    let object = blobs
        .locate(&samples.victim.digest)
        .unwrap()
        .expect("victim stored");
    assert_eq!(object.codec, Codec::Raw, "random bytes are stored raw");
    let flipped: Vec<u8> = samples.victim.bytes.iter().map(|b| !b).collect();
    std::fs::write(&object.path, flipped).unwrap();
}

#[test]
fn local_backend_meets_the_blob_contract() {
    let samples = BlobSamples::new();
    let (_dir, store) = store_with(&samples);
    let blobs: &Arc<LocalBlobService> = store.objects();
    let corrupt_victim = || corrupt_local_victim(blobs, &samples);
    blob_contract::run("local", blobs.as_ref(), &samples, Some(&corrupt_victim));
}

#[test]
fn cache_over_memory_meets_the_blob_contract() {
    let samples = BlobSamples::new();
    let upstream = Arc::new(MemoryBlobService::new());
    for sample in samples.stored() {
        assert_eq!(upstream.insert(&sample.bytes), sample.digest);
    }
    let cache = tempfile::tempdir().unwrap();
    let cached = CachedBlobService::open(upstream, cache.path(), CacheOptions::default()).unwrap();
    blob_contract::run("cache over memory", &cached, &samples, None);
}

#[test]
fn cache_over_local_meets_the_blob_contract() {
    let samples = BlobSamples::new();
    let (_dir, store) = store_with(&samples);
    let cache = tempfile::tempdir().unwrap();
    let upstream: Arc<dyn BlobService> = store.objects().clone();
    let cached = CachedBlobService::open(upstream, cache.path(), CacheOptions::default()).unwrap();
    let corrupt_victim = || corrupt_local_victim(store.objects(), &samples);
    blob_contract::run("cache over local", &cached, &samples, Some(&corrupt_victim));
    assert!(
        !cached.is_cached(&samples.victim.digest),
        "the corrupt victim reached the cache"
    );
}

#[test]
fn store_blobs_meet_the_blob_contract() {
    let samples = BlobSamples::new();
    let (dir, store) = store_with(&samples);
    let corrupt_victim = || corrupt_local_victim(store.objects(), &samples);
    blob_contract::run(
        "store blobs",
        store.blobs().as_ref(),
        &samples,
        Some(&corrupt_victim),
    );
    // Copies only of what is compressed, in the store's own place for them; a raw object is
    // served in place.
    let copies = dir.path().join("cache").join("blobs");
    assert_eq!(store.blobs().copies_dir(), copies);
    for sample in samples.stored() {
        let object = store.objects().locate(&sample.digest).unwrap().unwrap();
        let copy = super::fanout::path(&copies, &sample.digest);
        assert_eq!(
            copy.exists(),
            object.codec == Codec::Zstd,
            "{}: stored {:?}, copy at {}",
            sample.name,
            object.codec,
            copy.display()
        );
    }
}
