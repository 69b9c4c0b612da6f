//! The catalog contract suite ([`crate::testing::catalog_contract`]) run over the backends
//! this crate can set up alone: memory and local. The remote catalog runs it from the
//! integration tests, which own the test server.

use std::sync::Arc;

use super::{LocalCatalog, MemoryCatalog};
use crate::artifact::ArtifactId;
use crate::hash::{Digest, ShortDigest};
use crate::store::Store;
use crate::testing::catalog_contract::{
    self, fill_local_store, profile_doc, switch_local_store, CatalogExpected,
};

#[test]
fn memory_catalog_meets_the_catalog_contract() {
    let catalog = MemoryCatalog::new();
    let artifacts: Vec<(ArtifactId, Digest)> = ["beta", "alpha"]
        .iter()
        .map(|name| {
            let id = ArtifactId::new(name, ShortDigest::of(name.as_bytes())).unwrap();
            (id, Digest::of(format!("tree of {name}").as_bytes()))
        })
        .collect();
    for (id, root) in &artifacts {
        catalog.add_artifact(id.clone(), *root);
    }
    let main = profile_doc(&[&artifacts[0]]);
    let other = profile_doc(&[&artifacts[1], &artifacts[0]]);
    catalog.set_profile("main", main.clone());
    catalog.set_profile("other", other.clone());
    let expected = CatalogExpected {
        artifacts: artifacts.clone(),
        profiles: vec![("other".into(), other), ("main".into(), main)],
    };
    let switch = || {
        let doc = profile_doc(&[&artifacts[1]]);
        catalog.set_profile("main", doc.clone());
        ("main".to_string(), doc)
    };
    catalog_contract::run("memory", &catalog, &expected, &switch);
}

#[test]
fn local_catalog_meets_the_catalog_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store")).unwrap());
    let expected = fill_local_store(&store, dir.path()).unwrap();
    let catalog = LocalCatalog::new(store.clone());
    let switch = || switch_local_store(&store, &expected).unwrap();
    catalog_contract::run("local", &catalog, &expected, &switch);
}
