//! The backend contract suites of `hdist_store::testing` run over the remote backends, which
//! need the in-process HTTP server: `HttpBlobService`, `CachedBlobService` over it (large
//! objects published as chunks) and `RemoteCatalog`. Memory and local backends run the same
//! suites in hdist-store's unit tests.

use std::collections::HashMap;
use std::sync::Arc;

use hdist_store::blob::BlobService;
use hdist_store::remote::{
    publish, CacheOptions, CachedBlobService, HttpBlobService, HttpOptions, PublishOptions, RemoteCatalog,
    SecretKey, CHUNK_SIZE,
};
use hdist_store::testing::blob_contract::{self, BlobSamples};
use hdist_store::testing::catalog_contract::{self, fill_local_store, switch_local_store};
use hdist_store::testing::{publish_chunked, publish_object};
use hdist_store::Store;

use crate::http_server::HttpServer;

/// Content that is not the victim's, published under the victim's name.
fn tampered(samples: &BlobSamples) -> Vec<u8> {
    samples.victim.bytes.iter().map(|b| !b).collect()
}

#[test]
fn http_backend_meets_the_blob_contract() {
    let samples = BlobSamples::new();
    let dir = tempfile::tempdir().unwrap();
    for sample in samples.stored() {
        publish_object(dir.path(), &sample.digest, &sample.bytes).unwrap();
    }
    let server = HttpServer::start(dir.path());
    let http = HttpBlobService::new(&[server.base()], HttpOptions::default()).unwrap();
    let corrupt_victim = || publish_object(dir.path(), &samples.victim.digest, &tampered(&samples)).unwrap();
    blob_contract::run("http", &http, &samples, Some(&corrupt_victim));
}

#[test]
fn cached_over_http_backend_meets_the_blob_contract() {
    let samples = BlobSamples::new();
    let dir = tempfile::tempdir().unwrap();
    let large = samples.large();
    // The large object exists upstream only as chunks, as `hdist publish` leaves large files.
    let table = publish_chunked(dir.path(), &large.bytes, CHUNK_SIZE as usize).unwrap();
    for sample in samples.stored().filter(|s| s.digest != large.digest) {
        publish_object(dir.path(), &sample.digest, &sample.bytes).unwrap();
    }
    let server = HttpServer::start(dir.path());
    let http = HttpBlobService::new(&[server.base()], HttpOptions::default()).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cached = CachedBlobService::open(Arc::new(http), cache.path(), CacheOptions::default()).unwrap();
    cached.set_chunk_tables(HashMap::from([(large.digest, table)]));
    let corrupt_victim = || publish_object(dir.path(), &samples.victim.digest, &tampered(&samples)).unwrap();
    blob_contract::run("cached over http", &cached, &samples, Some(&corrupt_victim));
    assert!(
        !cached.is_cached(&samples.victim.digest),
        "the corrupt victim reached the cache"
    );
}

#[test]
fn remote_catalog_meets_the_catalog_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let expected = fill_local_store(&store, dir.path()).unwrap();
    let key = SecretKey::generate();
    let published = dir.path().join("published");
    publish(&store, &published, &key, &PublishOptions::default()).unwrap();

    let server = HttpServer::start(&published);
    let http = Arc::new(HttpBlobService::new(&[server.base()], HttpOptions::default()).unwrap());
    let upstream: Arc<dyn BlobService> = http.clone();
    let cache = dir.path().join("cache");
    let blobs = Arc::new(CachedBlobService::open(upstream, &cache, CacheOptions::default()).unwrap());
    let catalog = RemoteCatalog::open(http, blobs, key.public(), None).unwrap();
    let switch = || {
        let switched = switch_local_store(&store, &expected).unwrap();
        publish(&store, &published, &key, &PublishOptions::default()).unwrap();
        catalog.refresh();
        switched
    };
    catalog_contract::run("remote", catalog.as_ref(), &expected, &switch);
}
