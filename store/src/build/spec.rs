//! Build specs: Hashdist's `build.json`, canonicalised and hashed into artifact ids.
//!
//! ```text
//! {"name": "zlib", "version": "1_2_13",
//!  "sources": [{"key": "tar.bz2:…", "target": "."}],
//!  "files":   [{"target": "$ARTIFACT/etc/x.conf", "text": ["…"], "executable": false}],
//!  "build":   {"import": [{"ref": "ZLIB", "id": "zlib/…"}], "commands": [ …job nodes… ]}}
//! ```
//!
//! Canonical form: every import has a `ref` (null when absent; an empty ref is an error) and
//! `build.import` exists. The artifact id is `name/` + `hash_document("build-spec",
//! prune_nohash(canonical))`, exactly as Hashdist computed it, so `nohash_*` keys (comments,
//! parallelism hints) never change an id.

use serde_json::{Map, Value};

use super::{job, BuildError};
use crate::artifact::{check_name, ArtifactId};
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

fn safe_token(origin: &str, field: &str, value: &Value) -> Result<String, BuildError> {
    let text = value
        .as_str()
        .ok_or_else(|| bad(origin, field, "must be a string"))?;
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
    {
        Ok(text.to_string())
    } else {
        Err(bad(
            origin,
            field,
            format!("{text:?} must match [a-zA-Z0-9-_+]+ as a whole"),
        ))
    }
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
    let name = safe_token(
        origin,
        "name",
        object.get("name").ok_or_else(|| bad(origin, "name", "missing"))?,
    )?;
    check_name(&name).map_err(|e| bad(origin, "name", e.to_string()))?;
    let version = match object.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(safe_token(origin, "version", v)?),
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
            .map_err(|e: crate::artifact::IdError| bad(origin, &field, e.to_string()))?;
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
        assert!(err(r#"{"name":"a b"}"#).contains("name"));
        assert!(err(r#"{"name":"a","version":"1.2"}"#).contains("version"));
        assert!(err(r#"{"name":"a","x":1.5}"#).contains("$.x"));
        assert!(err(
            r#"{"name":"a","build":{"import":[{"ref":"","id":"b/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}}"#
        )
        .contains("build.import[0].ref"));
        assert!(err(r#"{"name":"a","build":{"import":[{"id":"nope"}]}}"#).contains("build.import[0].id"));
        assert!(err(r#"{"name":"a","build":{"commands":[{"frobnicate":1}]}}"#).contains("frobnicate"));
    }
}
