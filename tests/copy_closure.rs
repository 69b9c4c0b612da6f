//! `hdist copy`: artifact closures through a published directory into another store, with
//! every object and entry verified on the way in.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{fuse_available, run_ok, sample_tree, snapshot, specs_dir, stderr, view_guard, TestStore};

/// Exports `id` from both stores and asserts the trees are identical.
fn assert_same_export(from: &TestStore, to: &TestStore, id: &str, label: &str) {
    let a = from.path(&format!("export-{label}"));
    let b = to.path(&format!("export-{label}"));
    from.ok(["-q".as_ref(), "export".as_ref(), id.as_ref(), a.as_os_str()]);
    to.ok(["-q".as_ref(), "export".as_ref(), id.as_ref(), b.as_os_str()]);
    assert_eq!(snapshot(&a), snapshot(&b), "{id} differs after the copy");
}

/// `hdist copy --from CACHE --key KEY [EXTRA...] IDS...` in `store`.
fn copy_from(store: &TestStore, cache: &Path, key: &str, extra: &[&str], ids: &[&str]) -> Command {
    let mut cmd = store.cmd([
        "copy".as_ref(),
        "--from".as_ref(),
        cache.as_os_str(),
        "--key".as_ref(),
        key.as_ref(),
    ]);
    cmd.args(extra).args(ids);
    cmd
}

/// Runs `cmd`, expecting failure; returns its stderr.
fn refused(mut cmd: Command) -> String {
    let out = cmd.output().expect("run hdist");
    assert!(
        !out.status.success(),
        "expected failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr(&out)
}

/// The published object file of a raw content digest.
fn object_file(dir: &Path, digest: &hdist_store::Digest) -> PathBuf {
    dir.join(hdist_store::remote::object_path(digest))
}

/// Replaces a published object by a valid zstd frame of other bytes (a forged object).
fn forge(object: &Path) {
    let out = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("printf 'forged bytes' | zstd -q -c > \"$1\"")
            .arg("sh")
            .arg(object),
    );
    assert!(out.is_empty());
}

/// A tree with a chunked (large) file, copied into an empty store: identical export, nothing
/// fetched again on a second copy; a forged object and a foreign key are refused.
#[test]
fn copy_moves_an_artifact_and_refuses_forged_objects_and_foreign_keys() {
    let t = TestStore::new();
    let tree = t.path("tree");
    sample_tree(&tree);
    // Larger than CHUNK_THRESHOLD: published as chunks plus a table.
    let big: Vec<u8> = (0..6u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    fs::write(tree.join("lib/big.bin"), &big).unwrap();
    let id = t.add(&tree, "sample");
    let public = t.ok(["key", "generate"]).trim().to_string();
    let cache = t.path("cache");
    t.ok([
        "-q".as_ref(),
        "copy".as_ref(),
        id.as_ref(),
        "--to".as_ref(),
        cache.as_os_str(),
    ]);
    let (name, hash) = id.split_once('/').unwrap();
    assert!(cache
        .join("artifacts")
        .join(name)
        .join(format!("{hash}.json"))
        .exists());

    let u = TestStore::new();
    let out = run_ok(&mut copy_from(&u, &cache, &public, &[], &[&id]));
    assert!(out.contains(&id), "{out}");
    assert_same_export(&t, &u, &id, "sample");
    u.ok(["-q", "store", "verify"]);
    // Over HTTP: the lookup reads the artifact's own entry, never a store-wide index.
    let server = crate::http_server::HttpServer::start(&cache);
    let h = TestStore::new();
    run_ok(&mut h.cmd(["copy", "--from", &server.url("/"), "--key", &public, &id]));
    assert_same_export(&t, &h, &id, "sample-http");
    let paths: Vec<String> = server.log().into_iter().map(|l| l.path).collect();
    assert_eq!(paths[0], format!("/artifacts/{name}/{hash}.json"), "{paths:?}");
    assert!(paths.iter().all(|p| !p.contains("manifest")), "{paths:?}");
    // `hdist publish` writes the same entries: a published store is a cache.
    let published = t.path("published");
    t.ok([
        "-q".as_ref(),
        "publish".as_ref(),
        "--to".as_ref(),
        published.as_os_str(),
    ]);
    let p = TestStore::new();
    run_ok(&mut copy_from(&p, &published, &public, &[], &[&id]));
    assert_same_export(&t, &p, &id, "sample-published");
    let again = run_ok(&mut copy_from(&u, &cache, &public, &["--json"], &[&id]));
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["written"], 0, "{again}");
    assert_eq!(again["present"][0], id.as_str());

    // A key the entries are not signed with.
    let other = TestStore::new();
    let foreign = other.ok(["key", "generate"]).trim().to_string();
    let message = refused(copy_from(&other, &cache, &foreign, &[], &[&id]));
    assert!(message.contains("not signed by the trusted key"), "{message}");

    // A forged file object (right name, other content) and a forged chunk.
    for (label, digest) in [
        ("small file", hdist_store::Digest::of(b"hello\n")),
        ("chunk", hdist_store::Digest::of(&big[..1 << 20])),
    ] {
        let object = object_file(&cache, &digest);
        let original = fs::read(&object).unwrap_or_else(|e| panic!("{label} {}: {e}", object.display()));
        forge(&object);
        let w = TestStore::new();
        let message = refused(copy_from(&w, &cache, &public, &[], &[&id]));
        assert!(
            message.contains(&digest.to_string()) && message.contains("corrupt"),
            "{label}: {message}"
        );
        // Nothing registered: the artifact is not there.
        let listed = w.ok(["ls"]);
        assert!(!listed.contains(name), "{label}: {listed}");
        fs::write(&object, original).unwrap();
    }
}

/// A built closure (minigzip imports zlib; hello) copied into an empty store: the imports
/// come along, exports and build logs are identical, and the copies run.
#[test]
fn copy_carries_a_built_closure_with_build_logs() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let _view = view_guard(&t);
    let Some(out) = crate::build::build_hello_zlib_minigzip(&t) else {
        return;
    };
    let ids: Vec<&str> = out.lines().collect();
    let specs = specs_dir();
    let (hello, zlib, minigzip) = (ids[0], ids[1], ids[2]);
    let public = t.ok(["key", "generate"]).trim().to_string();
    let cache = t.path("cache");
    // Only hello and minigzip named: zlib comes as minigzip's import.
    t.ok([
        "-q".as_ref(),
        "copy".as_ref(),
        hello.as_ref(),
        minigzip.as_ref(),
        "--to".as_ref(),
        cache.as_os_str(),
    ]);

    let u = TestStore::new();
    let _u_view = view_guard(&u);
    let report = run_ok(&mut copy_from(
        &u,
        &cache,
        &public,
        &["--json"],
        &[hello, minigzip],
    ));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let copied: Vec<&str> = report["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(copied, [hello, zlib, minigzip], "imports before importers");
    for (id, label) in [(hello, "hello"), (zlib, "zlib"), (minigzip, "minigzip")] {
        assert_same_export(&t, &u, id, label);
        assert_eq!(
            u.ok(["build-log", id]),
            t.ok(["build-log", id]),
            "{label}'s build log"
        );
    }
    u.ok(["-q", "store", "verify"]);
    // The copy is a usable artifact: a rebuild is a cache hit, and minigzip runs against the
    // copied zlib at its final path in the copy's view.
    let rebuilt = u.ok([
        "-q".as_ref(),
        "build".as_ref(),
        specs.join("minigzip.json").as_os_str(),
    ]);
    assert_eq!(rebuilt.trim(), minigzip);
    let binary = PathBuf::from(u.ok(["resolve", minigzip]).trim()).join("bin/minigzip");
    let data = u.path("data.txt");
    fs::write(&data, "hdist ".repeat(1000)).unwrap();
    run_ok(Command::new(&binary).arg(&data));
    assert!(u.path("data.txt.gz").exists());
}
