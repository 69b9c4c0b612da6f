//! The blob contract suite ([`crate::testing::blob_contract`]) run over the backends this
//! crate can set up alone: memory and local. HTTP and cached-over-HTTP run it from the
//! integration tests, which own the test server.

use std::sync::Arc;

use super::{Codec, MemoryBlobService};
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

#[test]
fn local_backend_meets_the_blob_contract() {
    let samples = BlobSamples::new();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let blobs: &Arc<super::LocalBlobService> = store.blobs();
    let batch = blobs.batch();
    for sample in samples.stored() {
        assert_eq!(batch.put_bytes(&sample.bytes).unwrap().digest, sample.digest);
    }
    batch.commit().unwrap();
    let corrupt_victim = || {
        let object = blobs
            .locate(&samples.victim.digest)
            .unwrap()
            .expect("victim stored");
        assert_eq!(object.codec, Codec::Raw, "random bytes are stored raw");
        let flipped: Vec<u8> = samples.victim.bytes.iter().map(|b| !b).collect();
        std::fs::write(&object.path, flipped).unwrap();
    };
    blob_contract::run("local", blobs.as_ref(), &samples, Some(&corrupt_victim));
}
