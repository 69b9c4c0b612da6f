//! GC from the commit points, a verify that trusts nothing, and damaged indexes and documents
//! (issue 11: "What must exist" 1 and 2, and the index damage of trial 5).

use std::fs;
use std::path::{Path, PathBuf};

use crate::util::{sample_tree, snapshot, stderr, TestStore};

/// The digest of `lib/libx.so` in [`sample_tree`].
fn libx_digest() -> String {
    hdist_store::Digest::of(&[7u8; 100_000]).to_hex()
}

/// A sample tree with one file unique to `tag`, so artifacts of different tags share most
/// objects but not all.
fn tagged_tree(t: &TestStore, tag: &str) -> PathBuf {
    let src = t.path(&format!("src-{tag}"));
    sample_tree(&src);
    fs::write(src.join("share/doc/tag"), format!("only {tag} has this\n")).unwrap();
    src
}

/// A new store holding [`sample_tree`] as the artifact `sample`: (store, tree, id).
fn sample_store() -> (TestStore, PathBuf, String) {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let id = t.add(&src, "sample");
    (t, src, id)
}

/// Asserts that `hdist store verify` finds nothing wrong.
fn assert_verify_clean(t: &TestStore, when: &str) {
    let (code, out, err) = verify(t, &[]);
    assert_eq!(code, Some(0), "verify {when}:\n{out}{err}");
}

fn document_path(t: &TestStore, id: &str) -> PathBuf {
    let (name, hash) = id.split_once('/').unwrap();
    t.store()
        .join("artifacts")
        .join(name)
        .join(format!("{hash}.json"))
}

/// What `store add` leaves when it is killed after its commit point (the document) but before
/// the index row: the row is dropped through the index's own API.
fn drop_index_row(t: &TestStore, id: &str) {
    let index = hdist_store::index::Index::open(&t.store().join("index.sqlite")).unwrap();
    index.remove_artifact(&id.parse().unwrap()).unwrap();
    assert!(index.artifact(&id.parse().unwrap()).unwrap().is_none());
}

fn object_file(t: &TestStore, hex: &str) -> PathBuf {
    let dir = t.store().join("objects").join(&hex[..2]);
    fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(hex))
        .unwrap_or_else(|| panic!("no object file for {hex}"))
}

fn count_objects(t: &TestStore) -> usize {
    fs::read_dir(t.store().join("objects"))
        .unwrap()
        .map(|fanout| fs::read_dir(fanout.unwrap().path()).unwrap().count())
        .sum()
}

fn verify(t: &TestStore, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["store", "verify"];
    all.extend_from_slice(args);
    let out = t.cmd(&all).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr(&out),
    )
}

fn export_matches(t: &TestStore, id: &str, src: &Path, dest: &str) {
    let dest = t.path(dest);
    t.ok(["export".as_ref(), id.as_ref(), dest.as_os_str()]);
    assert_eq!(snapshot(src), snapshot(&dest), "export of {id}");
}

#[test]
fn gc_after_a_kill_between_document_and_index_row_keeps_or_removes_the_artifact_whole() {
    let t = TestStore::new();
    let in_profile = tagged_tree(&t, "profile");
    let unreferenced = tagged_tree(&t, "unreferenced");
    let pinned = tagged_tree(&t, "pinned");
    let kept_id = t.add(&in_profile, "kept");
    t.ok(["profile", "create", "p", &kept_id]);
    let unreferenced_id = t.add(&unreferenced, "unreferenced");
    let pinned_id = t.add(&pinned, "pinned");
    t.ok(["store", "pin", &pinned_id]);
    drop_index_row(&t, &unreferenced_id);
    drop_index_row(&t, &pinned_id);

    t.ok(["gc"]);

    // Nothing references `unreferenced`: it goes whole, document first.
    assert!(
        !document_path(&t, &unreferenced_id).exists() || {
            // …or it is kept whole, and then it must export.
            export_matches(&t, &unreferenced_id, &unreferenced, "out-unreferenced");
            true
        }
    );
    // A pin is an on-disk root: kept whole, exports byte for byte.
    export_matches(&t, &pinned_id, &pinned, "out-pinned");
    export_matches(&t, &kept_id, &in_profile, "out-kept");
    assert_verify_clean(&t, "after gc");
    // The object only the unreferenced artifact had is gone with its document.
    let tag = hdist_store::Digest::of(b"only unreferenced has this\n").to_hex();
    let dir = t.store().join("objects").join(&tag[..2]);
    let left = fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(&tag))
        })
        .unwrap_or(false);
    assert_eq!(left, document_path(&t, &unreferenced_id).exists());
}

#[test]
fn verify_walks_the_documents_and_names_the_artifact_and_path_that_break() {
    let (t, src, id) = sample_store();
    // Not in the index (a kill after the commit point), and one of its objects gone.
    drop_index_row(&t, &id);
    fs::remove_file(object_file(&t, &libx_digest())).unwrap();

    let (code, out, err) = verify(&t, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains(&libx_digest()))
        .unwrap_or_else(|| panic!("the missing object is not reported:\n{out}"));
    assert!(line.starts_with("missing "), "{line}");
    assert!(line.contains(&id), "the artifact is not named: {line}");
    assert!(
        line.contains("lib/libx.so"),
        "the path inside it is not named: {line}"
    );

    // --repair removes what cannot be completed, and says so.
    let (code, out, err) = verify(&t, &["--repair"]);
    assert!(
        format!("{out}{err}").contains(&format!("removed artifact {id}")),
        "{out}{err}"
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(!document_path(&t, &id).exists());
    assert_verify_clean(&t, "after repair");
    // The next writer of the same tree completes it: same id, whole again.
    assert_eq!(t.add(&src, "sample"), id);
    export_matches(&t, &id, &src, "out");
}

#[test]
fn a_garbage_artifact_document_fails_verify_and_gc_and_repair_removes_it() {
    let t = TestStore::new();
    let good_src = tagged_tree(&t, "good");
    let bad_src = tagged_tree(&t, "bad");
    let good = t.add(&good_src, "good");
    t.ok(["profile", "create", "p", &good]);
    let bad = t.add(&bad_src, "bad");
    let bad_doc = document_path(&t, &bad);
    fs::write(&bad_doc, b"\x00garbage, not an artifact document\xff").unwrap();

    let (code, out, err) = verify(&t, &[]);
    assert_eq!(code, Some(1), "a garbage document passed verify:\n{out}{err}");
    assert!(out.contains(&bad_doc.display().to_string()), "{out}");

    let out = t.fails(["gc"]);
    let text = stderr(&out);
    assert!(text.contains(&bad_doc.display().to_string()), "{text}");
    assert!(text.contains("verify --repair"), "{text}");
    // GC stopped before deleting anything.
    export_matches(&t, &good, &good_src, "out-good-1");

    // reindex indexes the rest and names the damaged file.
    let out = t.cmd(["store", "reindex"]).output().unwrap();
    let text = stderr(&out);
    assert!(text.contains(&bad_doc.display().to_string()), "{text}");
    assert!(text.contains("verify --repair"), "{text}");

    let (code, out, err) = verify(&t, &["--repair"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        format!("{out}{err}").contains(&format!("removed damaged document {}", bad_doc.display())),
        "{out}{err}"
    );
    assert!(!bad_doc.exists());
    t.ok(["gc"]);
    assert_verify_clean(&t, "at the end");
    export_matches(&t, &good, &good_src, "out-good-2");
}

#[test]
fn a_damaged_index_is_named_and_reindex_moves_it_aside() {
    let (t, _, id) = sample_store();
    let index = t.store().join("index.sqlite");
    fs::write(&index, b"garbage over the index ".repeat(400)).unwrap();

    let out = t.fails(["ls"]);
    let text = stderr(&out);
    assert!(text.contains("hdist store reindex"), "{text}");
    assert!(text.contains(&index.display().to_string()), "{text}");

    let out = t.cmd(["store", "reindex"]).output().unwrap();
    let text = stderr(&out);
    assert!(out.status.success(), "reindex of a damaged index failed: {text}");
    let moved: Vec<_> = fs::read_dir(t.store())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("index.sqlite.damaged-"))
        .collect();
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert!(
        text.contains(&moved[0]),
        "reindex does not say where it moved it: {text}"
    );
    assert!(t.ok(["ls"]).contains(&id));
    assert_eq!(t.ok(["cat", &id, "share/doc/README"]), "hello\n");
    assert_verify_clean(&t, "at the end");
}

#[test]
fn index_rows_without_documents_fail_verify_and_repair_reindexes() {
    let (t, _, id) = sample_store();
    fs::remove_file(document_path(&t, &id)).unwrap();

    let (code, out, err) = verify(&t, &[]);
    assert_eq!(
        code,
        Some(1),
        "an index row without its document passed:\n{out}{err}"
    );
    assert!(out.contains(&id), "{out}");

    let (code, out, err) = verify(&t, &["--repair"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(format!("{out}{err}").contains("reindexed"), "{out}{err}");
    assert!(!t.ok(["ls"]).contains(&id));
    assert_verify_clean(&t, "at the end");
}

#[test]
fn verify_names_the_profile_generation_whose_document_is_gone() {
    let (t, _, id) = sample_store();
    t.ok(["profile", "create", "p", &id]);
    let generation = fs::read_to_string(t.store().join("profiles/p/1")).unwrap();
    fs::remove_file(object_file(&t, generation.trim())).unwrap();

    let (code, out, err) = verify(&t, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(generation.trim()) && l.contains("profile p generation 1")),
        "{out}"
    );
}

#[test]
fn gc_stops_at_a_kept_artifact_whose_tree_is_gone_naming_it_and_the_path() {
    let (t, _, id) = sample_store();
    t.ok(["store", "pin", &id]);
    // The tree of share/doc: a directory holding README, empty and copy.
    let listing: serde_json::Value = serde_json::from_str(&t.ok(["ls", &id, "share", "--json"])).unwrap();
    let doc_tree = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "doc")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(object_file(&t, &doc_tree)).unwrap();
    let objects_before = count_objects(&t);

    let out = t.fails(["gc"]);
    let text = stderr(&out);
    assert!(text.contains(&id), "the kept artifact is not named: {text}");
    assert!(text.contains("share/doc"), "the path is not named: {text}");
    assert!(document_path(&t, &id).exists());
    assert_eq!(
        count_objects(&t),
        objects_before,
        "gc deleted objects before it stopped"
    );

    let (code, out, _) = verify(&t, &[]);
    assert_eq!(code, Some(1));
    assert!(
        out.lines().any(|l| l.starts_with(&format!("missing {doc_tree}"))
            && l.contains(&id)
            && l.contains("share/doc")),
        "{out}"
    );
}

#[test]
fn verify_names_a_source_whose_content_is_broken_and_repair_removes_it() {
    let t = TestStore::new();
    let dir = t.path("files");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("configure"), "#!/bin/sh\necho configured\n").unwrap();
    fs::write(dir.join("data"), "source data\n").unwrap();
    let key = t
        .ok(["-q".as_ref(), "fetch".as_ref(), dir.as_os_str()])
        .trim()
        .to_string();
    let data = hdist_store::Digest::of(b"source data\n").to_hex();
    fs::remove_file(object_file(&t, &data)).unwrap();

    let (code, out, err) = verify(&t, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&data) && l.contains(&format!("source {key}")) && l.contains("path data")),
        "{out}"
    );
    let (code, out, err) = verify(&t, &["--repair"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("removed source {key}")), "{out}");
    assert_verify_clean(&t, "after repair");
    // Fetching again completes it.
    assert_eq!(
        t.ok(["-q".as_ref(), "fetch".as_ref(), dir.as_os_str()]).trim(),
        key
    );
    assert_verify_clean(&t, "after a new fetch");
}
