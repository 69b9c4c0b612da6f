//! The store through the CLI: round trips, dedup, crashes, corruption, bad input.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hdist_store::tree::MtimePolicy;
use proptest::prelude::*;

use crate::util::{run_ok, sample_tree, snapshot, stderr, TestStore};

fn object_count(t: &TestStore) -> u64 {
    t.stats()["objects"].as_u64().unwrap()
}

/// Files under the store's objects/ directory.
fn object_files(t: &TestStore) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fanout in fs::read_dir(t.store().join("objects")).unwrap() {
        for entry in fs::read_dir(fanout.unwrap().path()).unwrap() {
            out.push(entry.unwrap().path());
        }
    }
    out.sort();
    out
}

#[test]
fn add_ls_cat_export_round_trip() {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let id = t.add(&src, "sample");
    assert!(
        id.starts_with("sample/") && id.len() == "sample/".len() + 32,
        "{id}"
    );

    let listing = t.ok(["ls", &id, "lib"]);
    assert!(listing.contains("libx.so.1 -> libx.so"), "{listing}");
    assert!(listing.contains("100000 libx.so"), "{listing}");
    assert_eq!(t.ok(["cat", &id, "share/doc/README"]), "hello\n");
    let json: serde_json::Value = serde_json::from_str(&t.ok(["ls", &id, "bin", "--json"])).unwrap();
    assert_eq!(json[0]["name"], "tool");
    assert_eq!(json[0]["executable"], true);

    let out = t.path("out");
    t.ok(["export".as_ref(), id.as_ref(), out.as_os_str()]);
    assert_eq!(snapshot(&src), snapshot(&out));
    assert!(fs::read_dir(out.join("lib/empty")).unwrap().next().is_none());

    // Exporting onto something non-empty is refused and leaves it alone.
    let err = t.fails(["export".as_ref(), id.as_ref(), src.as_os_str()]);
    assert!(
        stderr(&err).contains("not an empty directory"),
        "{}",
        stderr(&err)
    );

    // Adding again is idempotent: same id, no new objects.
    let before = object_count(&t);
    assert_eq!(t.add(&src, "sample"), id);
    assert_eq!(object_count(&t), before);
    // Abbreviated ids and bare names resolve.
    assert_eq!(t.ok(["cat", "sample", "share/doc/README"]), "hello\n");
    assert_eq!(t.ok(["cat", &id[..12], "share/doc/README"]), "hello\n");
    t.ok(["-q", "store", "verify"]);
}

#[test]
fn identical_subtrees_and_files_are_stored_once() {
    let t = TestStore::new();
    let a = t.path("a");
    sample_tree(&a.join("one"));
    sample_tree(&a.join("two"));
    // Mtimes are part of a tree: the copy is identical once it has the same ones.
    copy_mtimes(&a.join("one"), &a.join("two"));
    t.add(&a, "twice");
    let stats = t.stats();
    let single = TestStore::new();
    let b = single.path("b");
    sample_tree(&b.join("one"));
    single.add(&b, "once");
    // The second copy adds exactly one object: the root tree listing both names.
    assert_eq!(stats["objects"].as_u64().unwrap(), object_count(&single));
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 1.9, "{stats}");
}

/// Gives every entry below `to` the mtime of the same path below `from`.
fn copy_mtimes(from: &Path, to: &Path) {
    use std::os::unix::fs::MetadataExt;
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let twin = to.join(entry.file_name());
        if meta.is_dir() {
            copy_mtimes(&entry.path(), &twin);
        }
        let mtime = hdist_store::tree::Mtime::new(meta.mtime(), meta.mtime_nsec() as u32).unwrap();
        hdist_store::tree::set_mtime(&twin, mtime).unwrap();
    }
}

#[test]
fn reindex_rebuilds_the_index_from_objects() {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let id = t.add(&src, "sample");
    let before = t.stats();
    fs::remove_file(t.store().join("index.sqlite")).unwrap();
    let _ = fs::remove_file(t.store().join("index.sqlite-wal"));
    let _ = fs::remove_file(t.store().join("index.sqlite-shm"));
    assert_eq!(t.stats()["objects"], 0);
    t.ok(["-q", "store", "reindex"]);
    let after = t.stats();
    for key in [
        "objects",
        "trees",
        "logical_bytes",
        "stored_bytes",
        "artifacts",
        "artifact_bytes",
    ] {
        assert_eq!(before[key], after[key], "{key}");
    }
    assert_eq!(t.ok(["cat", &id, "bin/tool"]), "#!/bin/sh\necho tool\n");
}

#[test]
fn corrupted_object_is_named_and_never_served() {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let id = t.add(&src, "sample");
    let digest = hdist_store::Digest::of(&[7u8; 100_000]).to_hex();
    let object = object_files(&t)
        .into_iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&digest))
        .expect("object of lib/libx.so");
    let mut bytes = fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&object, &bytes).unwrap();

    let out = t.fails(["cat", &id, "lib/libx.so"]);
    assert!(
        out.stdout.is_empty(),
        "no bytes of a corrupt object may be printed"
    );
    assert!(stderr(&out).contains(&digest), "{}", stderr(&out));

    let out = t.cmd(["store", "verify"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains(&format!("corrupt {digest}")), "{report}");
    // Other files still read.
    assert_eq!(t.ok(["cat", &id, "share/doc/README"]), "hello\n");
}

#[test]
fn bad_input_is_refused_and_the_store_is_unchanged() {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    t.add(&src, "sample");
    let before = object_files(&t);

    let out = t.fails(["store", "add", "/nonexistent/dir", "--name", "x"]);
    assert!(stderr(&out).contains("/nonexistent/dir"), "{}", stderr(&out));

    let with_fifo = t.path("fifo-tree");
    sample_tree(&with_fifo);
    let fifo = with_fifo.join("share/pipe");
    run_ok(Command::new("mkfifo").arg(&fifo));
    let out = t.fails([
        "store".as_ref(),
        "add".as_ref(),
        with_fifo.as_os_str(),
        "--name".as_ref(),
        "x".as_ref(),
    ]);
    let err = stderr(&out);
    assert!(err.contains("FIFO") && err.contains("share/pipe"), "{err}");

    let out = t.fails([
        "store".as_ref(),
        "add".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        "bad/name".as_ref(),
    ]);
    assert!(stderr(&out).contains("invalid name"), "{}", stderr(&out));

    let out = t.fails(["cat", "nosuch", "x"]);
    assert!(stderr(&out).contains("no artifact"), "{}", stderr(&out));

    assert_eq!(
        object_files(&t),
        before,
        "failed adds must not leave objects behind"
    );
    assert_eq!(fs::read_dir(t.store().join("tmp")).unwrap().count(), 0);
}

#[test]
fn unreadable_file_is_named() {
    // Root reads everything, so the ingest runs as an unprivileged user.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root to switch user");
        return;
    }
    let t = TestStore::new();
    fs::set_permissions(t.dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let src = t.path("src");
    sample_tree(&src);
    let secret = src.join("share/secret");
    fs::write(&secret, b"x").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    run_ok(
        Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(&src)
            .arg("--quiet"),
    );
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(crate::util::hdist_bin())
        .arg("--store")
        .arg(t.path("nobody-store"))
        .args(["store", "add"])
        .arg(&src)
        .args(["--name", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("share/secret") && err.contains("ermission denied"),
        "{err}"
    );
}

/// A tree big enough that an ingest takes a while: many small and a few larger files of
/// pseudo-random, partly compressible content.
fn make_bulky_tree(root: &Path, files: usize) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..files {
        let dir = root.join(format!("d{}/e{}", i % 17, i % 5));
        fs::create_dir_all(&dir).unwrap();
        let len = 2_000 + (i * 7919) % 60_000;
        let mut data = Vec::with_capacity(len);
        while data.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Half random bytes, half text: compresses, but not to nothing.
            data.extend_from_slice(&state.to_le_bytes());
            data.extend_from_slice(b"some text ");
        }
        fs::write(dir.join(format!("f{i}.dat")), &data).unwrap();
    }
}

#[test]
fn concurrent_ingest_of_the_same_tree() {
    let t = TestStore::new();
    let src = t.path("src");
    make_bulky_tree(&src, 1500);
    t.ok(["store", "stats"]); // initialise the store before the race
    let spawn = || {
        t.cmd([
            "-q".as_ref(),
            "store".as_ref(),
            "add".as_ref(),
            src.as_os_str(),
            "--name".as_ref(),
            "bulk".as_ref(),
        ])
        .output()
        .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        let b = s.spawn(spawn);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    assert_eq!(a.stdout, b.stdout, "both processes must report the same id");
    let files = object_files(&t);
    // Every object file is distinct content: 1500 blobs + trees, no duplicates under a
    // second name.
    let single = TestStore::new();
    single.add(&src, "bulk");
    assert_eq!(files.len(), object_files(&single).len());
    t.ok(["-q", "store", "verify"]);
    assert_eq!(t.ok(["ls"]).lines().count(), 1);
}

#[test]
fn kill_9_during_ingest_leaves_a_consistent_store() {
    let t = TestStore::new();
    let src = t.path("src");
    make_bulky_tree(&src, 1200);
    t.ok(["store", "stats"]);
    // Deterministic pseudo-random kill times spread over the ingest.
    let mut state: u32 = 12345;
    let mut completed_before_kill = 0;
    for round in 0..24 {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let delay = Duration::from_millis(u64::from(state >> 16) % 900);
        let mut child = t
            .cmd([
                "-q".as_ref(),
                "store".as_ref(),
                "add".as_ref(),
                src.as_os_str(),
                "--name".as_ref(),
                format!("bulk{round}").as_ref(),
            ])
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            completed_before_kill += 1;
        } else {
            child.kill().unwrap();
        }
        child.wait().unwrap();
    }
    eprintln!("{completed_before_kill} of 24 ingests finished before their kill");
    // verify re-hashes every object and checks every listed artifact is complete.
    let out = t.cmd(["store", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "verify after crashes: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    // Every listed artifact exports completely and correctly.
    for line in t.ok(["ls"]).lines() {
        let id = line.split('\t').next().unwrap();
        let dest = t.path(&format!("export-{}", id.replace('/', "-")));
        t.ok(["export".as_ref(), id.as_ref(), dest.as_os_str()]);
        assert_eq!(snapshot(&src), snapshot(&dest));
        fs::remove_dir_all(&dest).unwrap();
    }
    // The dead processes' scratch files are gone once another process opened the store.
    t.ok(["store", "stats"]);
    let leftovers: Vec<_> = fs::read_dir(t.store().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "scratch left behind: {leftovers:?}");
    // And the store still works: a full ingest succeeds.
    t.add(&src, "after");
}

// Generated trees: odd-byte names, deep nesting, empty files and dirs, symlinks, exec bits.
#[derive(Debug, Clone)]
enum GenNode {
    File(Vec<u8>, bool),
    Link(Vec<u8>),
    Dir(Vec<(Vec<u8>, GenNode)>),
}

fn gen_name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0),
        1..12,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn gen_node() -> impl Strategy<Value = GenNode> {
    let leaf = prop_oneof![
        (proptest::collection::vec(any::<u8>(), 0..300), any::<bool>())
            .prop_map(|(d, x)| GenNode::File(d, x)),
        proptest::collection::vec(any::<u8>().prop_filter("no NUL", |b| *b != 0), 1..40)
            .prop_map(GenNode::Link),
        Just(GenNode::Dir(Vec::new())),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        proptest::collection::vec((gen_name(), inner), 0..6).prop_map(|mut entries| {
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            entries.dedup_by(|a, b| a.0 == b.0);
            GenNode::Dir(entries)
        })
    })
}

fn write_gen(path: &Path, node: &GenNode) {
    match node {
        GenNode::File(data, exec) => {
            fs::write(path, data).unwrap();
            let mode = if *exec { 0o755 } else { 0o644 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        GenNode::Link(target) => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).unwrap()
        }
        GenNode::Dir(entries) => {
            fs::create_dir(path).unwrap();
            for (name, child) in entries {
                write_gen(&path.join(std::ffi::OsStr::from_bytes(name)), child);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn generated_trees_round_trip(entries in proptest::collection::vec((gen_name(), gen_node()), 0..8)) {
        let mut entries = entries;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|a, b| a.0 == b.0);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        write_gen(&src, &GenNode::Dir(entries));
        let store = hdist_store::Store::open(&dir.path().join("store")).unwrap();
        let added = store.add_tree(&src, "gen", None, MtimePolicy::Keep, &|_| {}).unwrap();
        let again = store.add_tree(&src, "gen", None, MtimePolicy::Keep, &|_| {}).unwrap();
        prop_assert_eq!(&added.record.id, &again.record.id);
        prop_assert_eq!(again.new_objects, 0);
        let out = dir.path().join("out");
        store.export(&added.record, &out).unwrap();
        prop_assert_eq!(snapshot(&src), snapshot(&out));
    }
}
