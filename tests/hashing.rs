//! `hdist hash` against known vectors from Hashdist and SHA-256.

use crate::util::{stderr, TestStore};

#[test]
fn hash_document_vector() {
    let t = TestStore::new();
    let doc = t.path("doc.json");
    std::fs::write(
        &doc,
        r#"{"a":[[{"nohash_foo":[1,2,3]},1,true,false,null,2,"asdf"]],"nohash_foo":true}"#,
    )
    .unwrap();
    let out = t.ok([
        "hash".as_ref(),
        "--doctype".as_ref(),
        "test".as_ref(),
        doc.as_os_str(),
    ]);
    assert_eq!(out.trim(), "geecc25mccuaba37cwsquibd2iisgo6f");
}

#[test]
fn hash_document_from_stdin() {
    let t = TestStore::new();
    let mut child = t
        .cmd(["hash", "--doctype", "build-spec", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"name":"fooname","build":{"commands":[],"import":[]}}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    // Hashdist's build-spec vector {"name":"fooname","build":{"commands":[]}}, in the
    // canonical form its build store hashes (every build gets an import list).
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "cwfxs3bhjvlxoczwlxlexklpeoewybcn"
    );
}

#[test]
fn hash_file_sha256_vector() {
    let t = TestStore::new();
    let file = t.path("abc");
    std::fs::write(&file, b"abc").unwrap();
    let out = t.ok(["hash".as_ref(), "--file".as_ref(), file.as_os_str()]);
    assert_eq!(
        out.trim(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
}

#[test]
fn hash_rejects_floats_and_bad_json() {
    let t = TestStore::new();
    let doc = t.path("f.json");
    std::fs::write(&doc, r#"{"a":{"b":[1.5]}}"#).unwrap();
    let out = t.fails([
        "hash".as_ref(),
        "--doctype".as_ref(),
        "t".as_ref(),
        doc.as_os_str(),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("$.a.b[0]"),
        "error should name the float's path: {err}"
    );
    std::fs::write(&doc, "{not json").unwrap();
    let out = t.fails([
        "hash".as_ref(),
        "--doctype".as_ref(),
        "t".as_ref(),
        doc.as_os_str(),
    ]);
    assert!(stderr(&out).contains("not valid JSON"), "{}", stderr(&out));
    let out = t.fails(["hash", "--doctype", "t", "/nonexistent/doc.json"]);
    assert!(stderr(&out).contains("/nonexistent/doc.json"));
}
