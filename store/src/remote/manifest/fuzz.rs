//! Fuzzing the published manifest: generated manifests, signed, then mangled (the signed
//! document as bytes; or the body, edited as JSON and mangled as text, then signed again, as
//! a faulty publisher holding the key would); random bytes; random key text. Properties: no
//! panic; a valid signature round-trips the manifest exactly; anything else is refused with
//! [`RemoteError::BadManifest`] or [`RemoteError::BadSignature`] (and a bad key with
//! [`RemoteError::BadKey`]).

use proptest::prelude::*;

use super::*;
use crate::fuzzing::{apply_json_edits, config, json_edits, mutated, mutations};

const WORDS: &[&str] = &[
    "format",
    "hdist-manifest-1",
    "serial",
    "published",
    "profiles",
    "artifacts",
    "chunked",
    "document",
    "trees",
    "prefetch",
    "root",
    "zlib/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

fn digest() -> impl Strategy<Value = Digest> {
    any::<[u8; 32]>().prop_map(Digest::from_bytes)
}

fn manifest() -> impl Strategy<Value = Manifest> {
    let profile = (
        digest(),
        proptest::option::of(digest()),
        proptest::option::of(digest()),
    )
        .prop_map(|(document, trees, prefetch)| PublishedProfile {
            document,
            trees,
            prefetch,
        });
    let artifact = (digest(), digest()).prop_map(|(root, document)| PublishedArtifact { root, document });
    let id = proptest::sample::select(vec![
        "zlib/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "hello/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "x/cccccccccccccccccccccccccccccccc",
    ])
    .prop_map(|id| id.parse::<ArtifactId>().unwrap());
    (
        any::<u64>(),
        any::<i64>(),
        proptest::collection::btree_map("[a-z]{1,6}", profile, 0..3),
        proptest::collection::btree_map(id, artifact, 0..3),
        proptest::collection::btree_map(digest(), digest(), 0..2),
    )
        .prop_map(|(serial, published, profiles, artifacts, chunked)| Manifest {
            format: BODY_FORMAT.to_string(),
            serial,
            published,
            profiles,
            artifacts,
            chunked,
        })
}

/// `body` signed with `key`, as `Manifest::sign` writes it.
fn signed(body: String, key: &SecretKey) -> Vec<u8> {
    let signature = key.0.sign(body.as_bytes());
    serde_json::to_vec_pretty(&SignedManifest {
        format: SIGNED_FORMAT.to_string(),
        key: key.public().to_string(),
        body,
        signature: BASE64.encode(&signature.to_bytes()),
    })
    .unwrap()
}

fn check(bytes: &[u8], key: &PublicKey, original: Option<&Manifest>) -> Result<(), TestCaseError> {
    let _ = Manifest::peek_serial(bytes);
    match Manifest::verify(bytes, key, "fuzz") {
        // Only the signed body counts, so whatever verifies is the original (when known).
        Ok(manifest) => {
            if let Some(original) = original {
                prop_assert_eq!(&manifest, original);
            }
            prop_assert_eq!(manifest.format.as_str(), BODY_FORMAT);
        }
        Err(RemoteError::BadManifest { .. } | RemoteError::BadSignature { .. }) => {}
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn fuzz_signed_manifests(manifest in manifest(), changes in mutations(3)) {
        let key = SecretKey::generate();
        let bytes = manifest.sign(&key);
        if changes.is_empty() {
            prop_assert_eq!(Manifest::verify(&bytes, &key.public(), "fuzz").ok(), Some(manifest.clone()));
        }
        check(&mutated(&bytes, &changes), &key.public(), Some(&manifest))?;
    }

    #[test]
    fn fuzz_manifest_bodies(manifest in manifest(), edits in json_edits(WORDS, 3), changes in mutations(2)) {
        let key = SecretKey::generate();
        let mut body = serde_json::to_value(&manifest).unwrap();
        apply_json_edits(&mut body, &edits);
        let body = serde_json::to_string(&body).unwrap();
        check(&signed(body.clone(), &key), &key.public(), None)?;
        let body = String::from_utf8_lossy(&mutated(body.as_bytes(), &changes)).into_owned();
        check(&signed(body, &key), &key.public(), None)?;
    }

    #[test]
    fn fuzz_random_manifest_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400), text in ".{0,60}") {
        let key = SecretKey::generate();
        check(&bytes, &key.public(), None)?;
        // Key text as a user or a config file gives it.
        match format!("ed25519:{text}").parse::<PublicKey>() {
            Ok(_) | Err(RemoteError::BadKey { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
        let _ = text.parse::<PublicKey>();
    }
}
