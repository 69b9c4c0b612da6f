//! Build specs: Hashdist's `build.json`, canonicalised and hashed into artifact ids.
//!
//! ```text
//! {"name": "zlib", "version": "1.2.13",
//!  "sources": [{"key": "tar.bz2:…", "target": "."}],
//!  "files":   [{"target": "$ARTIFACT/etc/x.conf", "text": ["…"], "executable": false}],
//!  "build":   {"import": [{"ref": "ZLIB", "id": "zlib/…"}], "commands": [ …job nodes… ]}}
//! ```
//!
//! `name` and `version` follow Hashdist's rule (only the first character is constrained, so
//! `1.2.8` and `1.26.4+local` pass) narrowed to what is safe as a path component; see
//! [`crate::artifact::check_version`]. A missing version stays out of the hashed document,
//! as in Hashdist.
//!
//! Canonical form: every import has a `ref` (null when absent; an empty ref is an error) and
//! `build.import` exists. The artifact id is `name/` + `hash_document("build-spec",
//! prune_nohash(canonical))`, exactly as Hashdist computed it, so `nohash_*` keys (comments,
//! parallelism hints) never change an id.

use serde_json::{Map, Value};

use super::{job, BuildError};
use crate::artifact::{check_name, check_version, ArtifactId, IdError};
use crate::hash::{hash_document, prune_nohash};

/// One source to unpack into the build directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecSource {
    /// Source key, e.g. `tar.gz:<hash>`.
    pub key: String,
    /// Directory relative to `$BUILD` (default `.`); the build refuses one that climbs out.
    pub target: String,
}

/// One artifact a build depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecImport {
    /// Environment prefix (`ZLIB` gives `$ZLIB_DIR`, `$ZLIB_ID`), if any.
    pub reference: Option<String>,
    /// The artifact.
    pub id: ArtifactId,
}

/// A parsed, canonical build spec.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildSpec {
    /// The canonical document (what is hashed and written as build.json).
    pub document: Value,
    /// Package name.
    pub name: String,
    /// Optional version.
    pub version: Option<String>,
    /// Sources to unpack.
    pub sources: Vec<SpecSource>,
    /// Files to write (`build-write-files`).
    pub files: Vec<Value>,
    /// Imported artifacts.
    pub imports: Vec<SpecImport>,
    /// Job commands.
    pub commands: Vec<Value>,
    /// The artifact id this spec builds.
    pub id: ArtifactId,
}

fn bad(origin: &str, field: &str, reason: impl Into<String>) -> BuildError {
    BuildError::BadSpec {
        origin: origin.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// A string field checked by `check` (the artifact layer's name or version rule).
fn token(
    origin: &str,
    field: &str,
    value: &Value,
    check: fn(&str) -> Result<(), IdError>,
) -> Result<String, BuildError> {
    let text = value
        .as_str()
        .ok_or_else(|| bad(origin, field, "must be a string"))?;
    check(text).map_err(|e| bad(origin, field, e.to_string()))?;
    Ok(text.to_string())
}

/// Canonicalises a spec document (see the module docs).
pub fn canonicalize(origin: &str, mut doc: Value) -> Result<Value, BuildError> {
    let object = doc
        .as_object_mut()
        .ok_or_else(|| bad(origin, "$", "a build spec must be a JSON object"))?;
    let build = object
        .entry("build")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or_else(|| bad(origin, "build", "must be an object"))?;
    let imports = build
        .entry("import")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| bad(origin, "build.import", "must be a list"))?;
    for (i, import) in imports.iter_mut().enumerate() {
        let field = format!("build.import[{i}]");
        let import = import.as_object_mut().ok_or_else(|| {
            bad(
                origin,
                &field,
                "must be an object with \"id\" and optional \"ref\"",
            )
        })?;
        match import.entry("ref").or_insert(Value::Null) {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {
                return Err(bad(
                    origin,
                    &format!("{field}.ref"),
                    "empty ref: use null or leave it out",
                ))
            }
            Value::String(_) => {}
            _ => return Err(bad(origin, &format!("{field}.ref"), "must be a string or null")),
        }
    }
    Ok(doc)
}

/// Parses, validates and canonicalises a spec from JSON text. `origin` names it in errors.
pub fn parse(origin: &str, text: &str) -> Result<BuildSpec, BuildError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| BuildError::BadJson {
        origin: origin.to_string(),
        source: e,
    })?;
    from_value(origin, doc)
}

/// Validates and canonicalises a spec document.
pub fn from_value(origin: &str, doc: Value) -> Result<BuildSpec, BuildError> {
    let document = canonicalize(origin, doc)?;
    let object = document
        .as_object()
        .expect("canonicalize checked it is an object");
    let name = token(
        origin,
        "name",
        object.get("name").ok_or_else(|| bad(origin, "name", "missing"))?,
        check_name,
    )?;
    let version = match object.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(token(origin, "version", v, check_version)?),
    };
    let mut sources = Vec::new();
    if let Some(list) = object.get("sources") {
        let list = list
            .as_array()
            .ok_or_else(|| bad(origin, "sources", "must be a list"))?;
        for (i, source) in list.iter().enumerate() {
            let field = format!("sources[{i}]");
            let key = source
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(origin, &format!("{field}.key"), "missing or not a string"))?;
            let target = match source.get("target") {
                None | Some(Value::Null) => ".".to_string(),
                Some(Value::String(t)) => t.clone(),
                Some(_) => return Err(bad(origin, &format!("{field}.target"), "must be a string")),
            };
            sources.push(SpecSource {
                key: key.to_string(),
                target,
            });
        }
    }
    let files = match object.get("files") {
        None => Vec::new(),
        Some(Value::Array(files)) => files.clone(),
        Some(_) => return Err(bad(origin, "files", "must be a list")),
    };
    let build = &object["build"];
    let mut imports = Vec::new();
    for (i, import) in build["import"].as_array().expect("canonical").iter().enumerate() {
        let field = format!("build.import[{i}].id");
        let id = import
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(origin, &field, "missing or not a string"))?;
        let id: ArtifactId = id
            .parse()
            .map_err(|e: IdError| bad(origin, &field, e.to_string()))?;
        let reference = import["ref"].as_str().map(str::to_string);
        if let Some(r) = &reference {
            if !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || r.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(bad(
                    origin,
                    &format!("build.import[{i}].ref"),
                    "must be a valid variable name",
                ));
            }
        }
        imports.push(SpecImport { reference, id });
    }
    let commands = match build.get("commands") {
        None => Vec::new(),
        Some(Value::Array(c)) => c.clone(),
        Some(_) => return Err(bad(origin, "build.commands", "must be a list")),
    };
    job::validate(&commands).map_err(|e| bad(origin, "build.commands", e.to_string()))?;
    let hash =
        hash_document("build-spec", &prune_nohash(&document)).map_err(|e| bad(origin, "$", e.to_string()))?;
    let id = ArtifactId::new(&name, hash).map_err(|e| bad(origin, "name", e.to_string()))?;
    Ok(BuildSpec {
        document,
        name,
        version,
        sources,
        files,
        imports,
        commands,
        id,
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashdist_build_spec_vector() {
        let spec = parse("t", r#"{"name":"fooname","build":{"commands":[]}}"#).unwrap();
        assert_eq!(spec.id.to_string(), "fooname/cwfxs3bhjvlxoczwlxlexklpeoewybcn");
    }

    /// Ids Hashdist 0.3 (`hashdist.core.build_store.BuildSpec(doc).artifact_id`, run under
    /// Python 2.7 on these exact documents) gives for specs with real-world versions and
    /// names: dotted, release-candidate and local versions, a dotted name, an import chain,
    /// and the shipped hello, zlib and minigzip specs (copied here, so moving the files does
    /// not move the vectors).
    #[test]
    fn real_versions_get_the_ids_hashdist_computes() {
        let vectors = [
            (
                r#"{"name": "zlib", "version": "1.2.8", "build": {"commands": []}}"#,
                "zlib/tx4jc7qz77grvp3ogtv73pfid7mnsax5",
            ),
            (
                r#"{"name": "numpy", "version": "1.26.4+local", "build": {"commands": [{"cmd": ["true"]}]}}"#,
                "numpy/u6jhemf2bbhuvyllj7dmza4kkpdjvgvl",
            ),
            (
                r#"{"name": "py.test-runner", "version": "2.0rc1", "build": {"commands": []}}"#,
                "py.test-runner/wvm4m4xuyipltfptyzlrblesothbib67",
            ),
            (
                r#"{"name": "cpython", "version": "3.11.9", "nohash_note": "not hashed",
                    "sources": [{"key": "tar.xz:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "target": "src"}],
                    "build": {"import": [{"ref": "ZLIB", "id": "zlib/tx4jc7qz77grvp3ogtv73pfid7mnsax5"},
                                         {"id": "numpy/u6jhemf2bbhuvyllj7dmza4kkpdjvgvl"}],
                              "commands": [{"cmd": ["./configure", "--prefix=${ARTIFACT}"]}]}}"#,
                "cpython/7xxmo3n5epuswk7secyzyhdrbvastzdr",
            ),
            (
                r#"{
  "name": "hello",
  "version": "2.10",
  "nohash_description": "GNU hello 2.10, the upstream tarball Debian ships (hello_2.10.orig.tar.gz)",
  "sources": [{"key": "tar.gz:ghqgme32sythn2e7nhi3mu4c32k2p335", "target": "."}],
  "build": {
    "commands": [
      {"set": "PATH", "value": "/usr/bin:/bin"},
      {"hit": ["build-unpack-sources"]},
      {"cmd": ["./configure", "--prefix=${ARTIFACT}", "--disable-nls"]},
      {"cmd": ["make", "-j${HDIST_CPU_COUNT}"]},
      {"cmd": ["make", "install"]}
    ]
  }
}"#,
                "hello/k6gghhl2qpoyiociof6qxwld37ao2237",
            ),
            (
                r#"{
  "name": "zlib",
  "version": "1.2.13",
  "nohash_description": "zlib 1.2.13, the upstream tarball Debian ships (zlib_1.2.13.dfsg.orig.tar.bz2)",
  "sources": [{"key": "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6", "target": "."}],
  "build": {
    "commands": [
      {"set": "PATH", "value": "/usr/bin:/bin"},
      {"hit": ["build-unpack-sources"]},
      {"cmd": ["./configure", "--prefix=${ARTIFACT}"]},
      {"cmd": ["make", "-j${HDIST_CPU_COUNT}"]},
      {"cmd": ["make", "install"]}
    ]
  }
}"#,
                "zlib/egzo34zhizvcnosk3yn42nfetavlzok4",
            ),
            (
                r#"{
  "name": "minigzip",
  "version": "1.2.13",
  "nohash_description": "zlib's own minigzip program, linked by rpath against the zlib artifact at its final path",
  "sources": [{"key": "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6", "target": "."}],
  "build": {
    "import": [{"ref": "ZLIB", "id": "zlib/egzo34zhizvcnosk3yn42nfetavlzok4"}],
    "commands": [
      {"set": "PATH", "value": "/usr/bin:/bin"},
      {"hit": ["build-unpack-sources"]},
      {"cmd": ["mkdir", "-p", "${ARTIFACT}/bin"]},
      {"cmd": ["cc", "-O2", "-o", "${ARTIFACT}/bin/minigzip", "test/minigzip.c",
               "-I${ZLIB_DIR}/include", "-L${ZLIB_DIR}/lib", "-Wl,-rpath,${ZLIB_DIR}/lib", "-lz"]}
    ]
  }
}"#,
                "minigzip/ypdyhtn7uprzlitwmic46bkswcnjejs3",
            ),
        ];
        for (text, id) in vectors {
            assert_eq!(parse("t", text).unwrap().id.to_string(), id, "{text}");
        }
    }

    /// What Hashdist refuses (empty, a first character outside `[a-zA-Z0-9-_+]`) and what is
    /// unsafe in a path component is refused with a message naming the field and the reason.
    #[test]
    fn unsafe_names_and_versions_are_refused_with_the_reason() {
        let err = |field: &str, value: &str| {
            let mut doc = serde_json::json!({"name": "x", "version": "1", "build": {}});
            doc[field] = Value::String(value.to_string());
            from_value("spec.json", doc).unwrap_err().to_string()
        };
        for field in ["name", "version"] {
            let m = err(field, "");
            assert!(
                m.contains(&format!("field {field}")) && m.contains("empty"),
                "{m}"
            );
            for start in [".", "..", ".1", " 1"] {
                let m = err(field, start);
                assert!(m.contains("must start with a letter, a digit"), "{m}");
            }
            let m = err(field, "-1");
            assert!(m.contains("leading `-` would be read as an option"), "{m}");
            for (value, shown) in [
                ("1/2", "'/'"),
                ("1\0x", "'\\0'"),
                ("1\n", "'\\n'"),
                ("1\u{7f}", "'\\u{7f}'"),
            ] {
                let m = err(field, value);
                assert!(
                    m.contains(shown) && m.contains("path component"),
                    "{value:?}: {m}"
                );
            }
        }
        // Hashdist's rule constrains only the first character.
        for ok in ["1.2 beta", "2.0rc1", "1.26.4+local", "+x", "_x", "a:b"] {
            let doc = serde_json::json!({"name": "x", "version": ok, "build": {}});
            assert_eq!(from_value("t", doc).unwrap().version.as_deref(), Some(ok));
        }
    }

    #[test]
    fn nohash_keys_do_not_change_the_id() {
        let a = parse("t", r#"{"name":"x","build":{"commands":[]}}"#).unwrap();
        let b = parse(
            "t",
            r#"{"name":"x","nohash_comment":"hi","build":{"commands":[]}}"#,
        )
        .unwrap();
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn malformed_specs_name_the_field() {
        let err = |text: &str| parse("spec.json", text).unwrap_err().to_string();
        assert!(err("{").contains("spec.json"));
        assert!(err(r#"{"build":{}}"#).contains("name"));
        assert!(err(r#"{"name":"a/b"}"#).contains("name"));
        assert!(err(r#"{"name":"a","version":".2"}"#).contains("version"));
        assert!(err(r#"{"name":"a","x":1.5}"#).contains("$.x"));
        assert!(err(
            r#"{"name":"a","build":{"import":[{"ref":"","id":"b/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}}"#
        )
        .contains("build.import[0].ref"));
        assert!(err(r#"{"name":"a","build":{"import":[{"id":"nope"}]}}"#).contains("build.import[0].id"));
        assert!(err(r#"{"name":"a","build":{"commands":[{"frobnicate":1}]}}"#).contains("frobnicate"));
    }
}
