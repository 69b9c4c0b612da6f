//! Fuzzing build specs: the specs kept in `tests/fixtures/specs`, edited as JSON (nodes
//! replaced by values built from the spec vocabulary, or removed) and then mangled as text; and random
//! text. Properties: no panic; a failure is [`BuildError::BadJson`] or
//! [`BuildError::BadSpec`]; a spec that parses is canonical (its document parses again to the
//! same spec and id); substitution never panics.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::build::job;
use crate::fuzzing::{apply_json_edits, config, json_edits, mutated, mutations};

const SEEDS: &[&str] = &[
    include_str!("../../../../tests/fixtures/specs/hello.json"),
    include_str!("../../../../tests/fixtures/specs/zlib.json"),
    include_str!("../../../../tests/fixtures/specs/minigzip.json"),
    r#"{"name": "x", "build": {"commands": []}}"#,
];

/// Keys and values a spec and its job language use.
const WORDS: &[&str] = &[
    "name",
    "version",
    "sources",
    "key",
    "target",
    "files",
    "text",
    "executable",
    "build",
    "import",
    "ref",
    "id",
    "commands",
    "cmd",
    "hit",
    "set",
    "value",
    "prepend_path",
    "append_path",
    "prepend_flag",
    "append_flag",
    "chdir",
    "inputs",
    "to_var",
    "append_to_file",
    "json",
    "string",
    "nohash_note",
    "ZLIB",
    "zlib/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "PATH",
    "$ARTIFACT",
    "${BUILD}/x",
    "build-unpack-sources",
    "build-write-files",
    "tar.gz:abc",
    ".",
    "1_0",
];

fn check(text: &str) -> Result<(), TestCaseError> {
    match parse("spec.json", text) {
        Ok(spec) => {
            let again = from_value("again", spec.document.clone());
            prop_assert!(again.is_ok(), "the canonical document does not parse: {again:?}");
            let again = again.unwrap();
            prop_assert_eq!(&again.id, &spec.id);
            prop_assert_eq!(&again.document, &spec.document);
            let text = serde_json::to_string(&spec.document).unwrap();
            prop_assert_eq!(parse("again", &text).map(|s| s.id).ok(), Some(spec.id));
        }
        Err(BuildError::BadJson { .. } | BuildError::BadSpec { .. }) => {}
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn fuzz_edited_specs(
        seed in proptest::sample::select(SEEDS),
        edits in json_edits(WORDS, 4),
        changes in mutations(2),
    ) {
        let mut doc: serde_json::Value = serde_json::from_str(seed).unwrap();
        apply_json_edits(&mut doc, &edits);
        check(&serde_json::to_string(&doc).unwrap())?;
        let text = String::from_utf8_lossy(&mutated(serde_json::to_string_pretty(&doc).unwrap().as_bytes(), &changes)).into_owned();
        check(&text)?;
    }

    #[test]
    fn fuzz_random_spec_text(text in ".{0,200}", nested in 0..300usize) {
        check(&text)?;
        // Nesting past what the JSON parser accepts.
        let deep = format!(r#"{{"name":"x","build":{{"commands":[{}]}}}}"#, r#"{"commands":["#.repeat(nested) + &"]}".repeat(nested));
        check(&deep)?;
    }

    #[test]
    fn fuzz_substitution(text in r#"[$\\{}A-Za-z_0-9 ]{0,40}"#, value in ".{0,10}") {
        let env: BTreeMap<String, String> = [("A".to_string(), value), ("B_1".to_string(), "$A".to_string())].into();
        // Ok or an error that says why: never a panic.
        let _ = job::substitute(&text, &env);
    }
}
