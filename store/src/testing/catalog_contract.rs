//! The contract every [`Catalog`] backend meets, as one suite run over each of them (memory,
//! local, remote).
//!
//! The backend under test is set up by its test with some artifacts and profiles, described
//! to the suite by a [`CatalogExpected`]; [`run`] then checks every answer against it, and last
//! asks the test to switch a profile to a new generation and checks that the catalog follows.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::artifact::ArtifactId;
use crate::catalog::Catalog;
use crate::hash::{Digest, ShortDigest};
use crate::profile::{ProfileArtifact, ProfileDoc};
use crate::store::{Store, StoreError};
use crate::IoContext;

/// What the catalog under test holds.
#[derive(Debug, Clone)]
pub struct CatalogExpected {
    /// Every artifact with its root tree (any order).
    pub artifacts: Vec<(ArtifactId, Digest)>,
    /// Every profile's name and current document (any order; at least one).
    pub profiles: Vec<(String, ProfileDoc)>,
}

/// Makes a new generation of one of the expected profiles current in the backend (for a
/// polling backend: and lets it notice); returns the profile's name and new document.
pub type Switch<'a> = &'a dyn Fn() -> (String, ProfileDoc);

/// A profile document showing `artifacts` in this order, without rules.
pub fn profile_doc(artifacts: &[&(ArtifactId, Digest)]) -> ProfileDoc {
    ProfileDoc {
        artifacts: artifacts
            .iter()
            .map(|(id, root)| ProfileArtifact {
                id: id.clone(),
                root: *root,
                rules: Vec::new(),
                view: None,
            })
            .collect(),
        env: Default::default(),
    }
}

/// Fills a local store for the suite: artifacts `beta` and `alpha` (small trees written below
/// `scratch`), profile `main` showing beta and `other` showing alpha then beta. Returns what
/// the suite then expects of a catalog over the store (or over its published copy).
pub fn fill_local_store(store: &Store, scratch: &Path) -> Result<CatalogExpected, StoreError> {
    let mut artifacts = Vec::new();
    for name in ["beta", "alpha"] {
        let tree = scratch.join(name);
        let write = std::fs::create_dir_all(tree.join("bin"))
            .and_then(|()| std::fs::write(tree.join("bin").join(name), format!("#!/bin/sh\necho {name}\n")));
        write.io_context("write", &tree)?;
        let added = store.add_tree(&tree, name, None, crate::tree::MtimePolicy::Zero, &|_| {})?;
        artifacts.push((added.record.id, added.record.root));
    }
    let main = profile_doc(&[&artifacts[0]]);
    let other = profile_doc(&[&artifacts[1], &artifacts[0]]);
    store.profiles().create_doc("main", &main)?;
    store.profiles().create_doc("other", &other)?;
    Ok(CatalogExpected {
        artifacts,
        profiles: vec![("main".into(), main), ("other".into(), other)],
    })
}

/// The switch the suite asks of a store filled by [`fill_local_store`]: profile `main` now
/// shows alpha. Returns the profile's name and new document.
pub fn switch_local_store(
    store: &Store,
    expected: &CatalogExpected,
) -> Result<(String, ProfileDoc), StoreError> {
    let alpha = expected
        .artifacts
        .iter()
        .find(|(id, _)| id.name() == "alpha")
        .expect("filled by fill_local_store");
    let doc = profile_doc(&[alpha]);
    store.profiles().create_doc("main", &doc)?;
    Ok(("main".to_string(), doc))
}

/// The digest a profile document is named by.
fn document_digest(doc: &ProfileDoc) -> Digest {
    Digest::of(&doc.to_bytes())
}

/// Runs the whole suite against `catalog`, which holds what `expected` says; `backend` names it
/// in failures. Panics listing every check that failed.
pub fn run(backend: &str, catalog: &dyn Catalog, expected: &CatalogExpected, switch: Switch<'_>) {
    type Check = fn(&dyn Catalog, &CatalogExpected);
    let checks: [(&'static str, Check); 7] = [
        ("profile_present", profile_present),
        ("profile_absent", profile_absent),
        (
            "current_document_matches_profile",
            current_document_matches_profile,
        ),
        ("profile_names_sorted", profile_names_sorted),
        ("artifacts_sorted", artifacts_sorted),
        ("artifact_root", artifact_root),
        ("wait_for_change_is_bounded", wait_for_change_is_bounded),
    ];
    let mut boxed: Vec<super::NamedCheck<'_>> = checks
        .into_iter()
        .map(|(name, check)| {
            (
                name,
                Box::new(move || check(catalog, expected)) as Box<dyn FnOnce()>,
            )
        })
        .collect();
    boxed.push((
        "switch_is_followed",
        Box::new(move || switch_is_followed(catalog, switch)),
    ));
    super::run_checks("Catalog", backend, boxed);
}

/// `profile` of each profile is its current generation: its name, a number from 1, the
/// document and that document's digest.
pub fn profile_present(catalog: &dyn Catalog, expected: &CatalogExpected) {
    for (name, doc) in &expected.profiles {
        let (generation, found) = catalog
            .profile(name)
            .expect("profile")
            .unwrap_or_else(|| panic!("profile {name:?} is missing"));
        assert_eq!(&generation.name, name, "name of the generation of {name:?}");
        assert!(generation.number >= 1, "generation number {}", generation.number);
        assert_eq!(&found, doc, "document of profile {name:?}");
        assert_eq!(
            generation.document,
            document_digest(doc),
            "document digest of {name:?}"
        );
    }
}

/// An unknown profile is `None` from `profile` and `current_document`, not an error.
pub fn profile_absent(catalog: &dyn Catalog, _: &CatalogExpected) {
    let name = "no-such-profile";
    assert!(catalog
        .profile(name)
        .expect("profile of an unknown name")
        .is_none());
    assert!(catalog
        .current_document(name)
        .expect("current_document")
        .is_none());
}

/// `current_document` is the document of `profile`'s generation.
pub fn current_document_matches_profile(catalog: &dyn Catalog, expected: &CatalogExpected) {
    for (name, doc) in &expected.profiles {
        let current = catalog.current_document(name).expect("current_document");
        assert_eq!(
            current,
            Some(document_digest(doc)),
            "current document of {name:?}"
        );
    }
}

/// `profile_names` lists every profile, sorted.
pub fn profile_names_sorted(catalog: &dyn Catalog, expected: &CatalogExpected) {
    let mut names: Vec<String> = expected.profiles.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(catalog.profile_names().expect("profile_names"), names);
}

/// `artifacts` lists every artifact with its root, sorted by id.
pub fn artifacts_sorted(catalog: &dyn Catalog, expected: &CatalogExpected) {
    let mut artifacts = expected.artifacts.clone();
    artifacts.sort();
    assert_eq!(catalog.artifacts().expect("artifacts"), artifacts);
}

/// `artifact_root` gives each artifact's root, and `None` for an unknown id.
pub fn artifact_root(catalog: &dyn Catalog, expected: &CatalogExpected) {
    for (id, root) in &expected.artifacts {
        assert_eq!(
            catalog.artifact_root(id).expect("artifact_root"),
            Some(*root),
            "root of {id}"
        );
    }
    let unknown = ArtifactId::new("unknown", ShortDigest::of(b"no such artifact")).expect("valid id");
    assert_eq!(
        catalog
            .artifact_root(&unknown)
            .expect("artifact_root of an unknown id"),
        None
    );
}

/// `wait_for_change` returns about when its timeout passes if nothing changes.
pub fn wait_for_change_is_bounded(catalog: &dyn Catalog, _: &CatalogExpected) {
    let started = Instant::now();
    catalog.wait_for_change(Duration::from_millis(50));
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "wait_for_change(50 ms) took {waited:?}"
    );
}

/// After a switch, `current_document` and `profile` show the new generation, numbered higher.
pub fn switch_is_followed(catalog: &dyn Catalog, switch: Switch<'_>) {
    let before: Vec<(String, u64)> = catalog
        .profile_names()
        .expect("profile_names")
        .into_iter()
        .map(|name| {
            let number = catalog
                .profile(&name)
                .expect("profile")
                .map_or(0, |(g, _)| g.number);
            (name, number)
        })
        .collect();
    let (name, doc) = switch();
    let old_number = before
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, number)| *number)
        .unwrap_or_else(|| panic!("the switch changed {name:?}, which was not a profile"));
    assert_eq!(
        catalog.current_document(&name).expect("current_document"),
        Some(document_digest(&doc)),
        "current document of {name:?} after the switch"
    );
    let (generation, found) = catalog
        .profile(&name)
        .expect("profile")
        .expect("the profile is there");
    assert_eq!(found, doc, "document of {name:?} after the switch");
    assert!(
        generation.number > old_number,
        "generation number {} after the switch, {old_number} before",
        generation.number
    );
}
