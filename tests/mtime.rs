//! Modification times are part of the tree: kept by `store add`, `export`, `profile export`
//! and the FUSE mount, so caches validated against mtimes (Python's `.pyc`) stay valid.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::mount::mountpoint;
use crate::util::mount;
use crate::util::{fuse_available, run_ok, TestStore};

/// Sets the mtime of `path` without following a symlink.
fn set_mtime(path: &Path, seconds: i64, nanos: u32) {
    let mtime = hdist_store::tree::Mtime::new(seconds, nanos).unwrap();
    hdist_store::tree::set_mtime(path, mtime)
        .unwrap_or_else(|e| panic!("set the mtime of {}: {e}", path.display()));
}

/// (seconds, nanoseconds) of every entry below `root` (not `root` itself), from `lstat`.
fn mtimes(root: &Path) -> BTreeMap<PathBuf, (i64, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(
                path.strip_prefix(root).unwrap().to_path_buf(),
                (meta.mtime(), meta.mtime_nsec() as u32),
            );
        }
    }
    out
}

const PAST: (i64, u32) = (1_600_000_000, 123_456_789);
const BEFORE_EPOCH: (i64, u32) = (-31_536_000, 5);
const FUTURE: (i64, u32) = (4_102_444_800, 999_999_999);

/// A tree whose files, directories and symlinks carry chosen mtimes (before the epoch, to
/// the nanosecond, far ahead). `same` and `same-again` have one content and one mtime;
/// `other-time` has that content with another mtime.
fn timed_tree(root: &Path) {
    fs::create_dir_all(root.join("lib/empty")).unwrap();
    fs::create_dir_all(root.join("share")).unwrap();
    fs::write(root.join("lib/same"), b"shared content\n").unwrap();
    fs::write(root.join("lib/same-again"), b"shared content\n").unwrap();
    fs::write(root.join("lib/other-time"), b"shared content\n").unwrap();
    fs::write(root.join("share/old"), b"old\n").unwrap();
    std::os::unix::fs::symlink("../lib/same", root.join("share/link")).unwrap();
    set_mtime(&root.join("lib/same"), PAST.0, PAST.1);
    set_mtime(&root.join("lib/same-again"), PAST.0, PAST.1);
    set_mtime(&root.join("lib/other-time"), FUTURE.0, FUTURE.1);
    set_mtime(&root.join("share/old"), BEFORE_EPOCH.0, BEFORE_EPOCH.1);
    set_mtime(&root.join("share/link"), 1_234_567_890, 42);
    // Directories last: creating their entries moved their mtimes.
    set_mtime(&root.join("lib/empty"), 1_000_000_000, 1);
    set_mtime(&root.join("lib"), 1_500_000_000, 999_999_999);
    set_mtime(&root.join("share"), BEFORE_EPOCH.0 - 1, 0);
}

fn add_with(t: &TestStore, dir: &Path, name: &str, extra: &[&str]) -> String {
    let mut args: Vec<&std::ffi::OsStr> =
        vec!["-q".as_ref(), "store".as_ref(), "add".as_ref(), dir.as_os_str()];
    args.extend(
        ["--name", name]
            .into_iter()
            .chain(extra.iter().copied())
            .map(std::ffi::OsStr::new),
    );
    t.ok(args).trim().to_string()
}

fn export(t: &TestStore, id: &str, dest: &Path) {
    t.ok(["export".as_ref(), id.as_ref(), dest.as_os_str()]);
}

#[test]
fn store_add_and_export_keep_every_mtime() {
    let t = TestStore::new();
    let src = t.path("src");
    timed_tree(&src);
    let id = t.add(&src, "timed");
    let out = t.path("out");
    export(&t, &id, &out);
    let expected = mtimes(&src);
    assert_eq!(expected.len(), 8, "{expected:?}");
    assert_eq!(mtimes(&out), expected);
    assert_eq!(expected[Path::new("share/old")], BEFORE_EPOCH);
    assert_eq!(expected[Path::new("lib/other-time")], FUTURE);
    // One content, one blob, whatever the mtimes.
    let objects_before = t.stats()["objects"].as_u64().unwrap();
    let retimed = t.path("retimed");
    timed_tree(&retimed);
    set_mtime(&retimed.join("lib/same"), 7, 7);
    let retimed_id = t.add(&retimed, "timed");
    assert_ne!(retimed_id, id, "the mtime is part of the tree, so of the id");
    let new_objects = t.stats()["objects"].as_u64().unwrap() - objects_before;
    assert_eq!(
        new_objects, 2,
        "only the trees above the changed entry are new, no blob"
    );
}

#[test]
fn mtime_zero_gives_ids_independent_of_when_files_were_written() {
    let t = TestStore::new();
    let src = t.path("src");
    timed_tree(&src);
    let zero = add_with(&t, &src, "timed", &["--mtime", "zero"]);
    assert_eq!(add_with(&t, &src, "timed", &["--mtime=zero"]), zero);
    let retimed = t.path("retimed");
    timed_tree(&retimed);
    for path in ["lib/same", "share/link", "lib/empty", "lib"] {
        set_mtime(&retimed.join(path), 99, 99);
    }
    assert_eq!(add_with(&t, &retimed, "timed", &["--mtime", "zero"]), zero);
    let kept = add_with(&t, &src, "timed", &["--mtime", "keep"]);
    assert_ne!(kept, zero);
    assert_eq!(kept, t.add(&src, "timed"), "keep is the default");
    let out = t.path("out");
    export(&t, &zero, &out);
    let exported = mtimes(&out);
    assert_eq!(exported.len(), 8);
    assert!(exported.values().all(|m| *m == (0, 0)), "{exported:?}");
    let bad = t.fails([
        "store".as_ref(),
        "add".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        "x".as_ref(),
        "--mtime".as_ref(),
        "now".as_ref(),
    ]);
    assert!(
        crate::util::stderr(&bad).contains("--mtime"),
        "{}",
        crate::util::stderr(&bad)
    );
}

#[test]
fn mounted_and_exported_profiles_show_the_recorded_mtimes() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let src = t.path("src");
    timed_tree(&src);
    let id = t.add(&src, "timed");
    t.ok(["profile", "create", "p", &id]);
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "p", &mnt);
    assert_eq!(mtimes(&mnt), mtimes(&src));
    // `stat` (not only our own lstat walk) shows seconds and nanoseconds.
    let shown = run_ok(
        Command::new("stat")
            .args(["-c", "%Y.%y"])
            .arg(mnt.join("lib/other-time")),
    );
    assert!(shown.starts_with("4102444800."), "{shown}");
    assert!(shown.contains(".999999999"), "{shown}");
    // One content and one mtime share an inode; the same content with another mtime does not.
    let ino = |p: &str| fs::metadata(mnt.join(p)).unwrap().ino();
    assert_eq!(ino("lib/same"), ino("lib/same-again"));
    assert_ne!(ino("lib/same"), ino("lib/other-time"));
    // A symlink shows its own mtime; following it gives the target's.
    assert_eq!(fs::metadata(mnt.join("share/link")).unwrap().mtime(), PAST.0);

    for mode in ["copy", "symlink", "hardlink"] {
        let out = t.path(&format!("export-{mode}"));
        t.ok([
            "profile".as_ref(),
            "export".as_ref(),
            "p".as_ref(),
            out.as_os_str(),
            "--link".as_ref(),
            mode.as_ref(),
        ]);
        assert_eq!(mtimes(&out), mtimes(&src), "--link {mode}");
    }
    // Links share their target's inode: one linkfarm copy per content and mtime.
    let followed = |p: &str| {
        let meta = fs::metadata(t.path("export-symlink").join(p)).unwrap();
        (meta.mtime(), meta.mtime_nsec() as u32)
    };
    assert_eq!(followed("lib/same"), PAST);
    assert_eq!(followed("lib/other-time"), FUTURE);

    // Rules build new trees over the same blobs; the entries keep their mtimes.
    let store = hdist_store::Store::open(&t.store()).unwrap();
    let record = store.find_artifact(&id).unwrap();
    let doc = hdist_store::profile::ProfileDoc {
        artifacts: vec![hdist_store::profile::ProfileArtifact {
            id: record.id.clone(),
            root: record.root,
            rules: vec![hdist_store::profile::LinkRule {
                action: hdist_store::profile::RuleAction::Link,
                select: "share/**".into(),
                prefix: Some("share".into()),
                target: Some("moved/here".into()),
            }],
            view: None,
        }],
        env: Default::default(),
    };
    store.profiles().create_doc("r", &doc).unwrap();
    drop(store);
    let ruled = mountpoint(&t, "ruled");
    let _ruled_guard = mount(&t, "r", &ruled);
    let shown = mtimes(&ruled);
    assert_eq!(shown[Path::new("moved/here/old")], BEFORE_EPOCH);
    assert_eq!(shown[Path::new("moved/here/link")], (1_234_567_890, 42));
    assert_eq!(shown[Path::new("lib/other-time")], FUTURE);
    assert_eq!(shown[Path::new("lib")], (1_500_000_000, 999_999_999));
    // `share` itself is placed at moved/here; `moved` exists only through the rule: it gets
    // the newest mtime of what it holds.
    assert_eq!(shown[Path::new("moved/here")], (BEFORE_EPOCH.0 - 1, 0));
    assert_eq!(shown[Path::new("moved")], (BEFORE_EPOCH.0 - 1, 0));

    // GC removes the linkfarm copies no profile needs any more.
    let linkfarm_copies = || {
        fs::read_dir(t.store().join("linkfarm"))
            .unwrap()
            .flat_map(|fanout| fs::read_dir(fanout.unwrap().path()).unwrap())
            .count()
    };
    assert_eq!(linkfarm_copies(), 3, "one per (content, mtime) pair");
    let empty = t.path("empty");
    fs::create_dir_all(&empty).unwrap();
    let other = t.add(&empty, "empty");
    t.ok(["profile", "create", "p", &other]);
    t.ok(["profile", "create", "r", &other]);
    t.ok(["-q", "gc", "--keep-generations", "0"]);
    assert_eq!(linkfarm_copies(), 0);
}

/// The interpreter to compile and import with (one, so the `.pyc` tag matches).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

fn strace_available() -> bool {
    if Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "strace is missing under CI (scripts/test.sh installs it)"
    );
    eprintln!("skipping the strace check: strace is not installed");
    false
}

#[test]
fn python_uses_the_bytecode_compiled_before_ingest() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let src = t.path("src");
    let pkg = src.join("lib/mypkg");
    fs::create_dir_all(&pkg).unwrap();
    fs::write(pkg.join("__init__.py"), "from .a import VALUE\n").unwrap();
    fs::write(pkg.join("a.py"), "from .b import BASE\nVALUE = BASE * 6\n").unwrap();
    fs::write(pkg.join("b.py"), "BASE = 7\n").unwrap();
    for name in ["__init__.py", "a.py", "b.py"] {
        set_mtime(&pkg.join(name), PAST.0, PAST.1);
    }
    // The default (timestamp) invalidation mode: the .pyc records the source's mtime and size.
    run_ok(Command::new(python()).args(["-m", "compileall", "-q"]).arg(&pkg));
    let compiled = fs::read_dir(pkg.join("__pycache__")).unwrap().count();
    assert_eq!(compiled, 3);
    let id = t.add(&src, "mypkg");
    t.ok(["profile", "create", "py", &id]);
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "py", &mnt);

    // Counts what the import system compiles from source (only done for a stale .pyc).
    let script = "import sys, importlib._bootstrap_external as ext\n\
        compiled = []\n\
        original = ext.SourceFileLoader.source_to_code\n\
        def spy(self, data, path, *rest, **kw):\n    compiled.append(path)\n    return original(self, data, path, *rest, **kw)\n\
        ext.SourceFileLoader.source_to_code = spy\n\
        sys.path.insert(0, sys.argv[1])\n\
        import mypkg\n\
        print(mypkg.VALUE, mypkg.__spec__.cached)\n\
        print('compiled from source:', compiled)\n";
    let lib = mnt.join("lib");
    let python_cmd = |cmd: &mut Command| {
        cmd.args(["-c", script])
            .arg(&lib)
            .env_remove("PYTHONDONTWRITEBYTECODE")
            .env_remove("PYTHONPYCACHEPREFIX")
            .env_remove("SOURCE_DATE_EPOCH");
    };
    let mut plain = Command::new(python());
    python_cmd(&mut plain);
    let out = run_ok(&mut plain);
    assert!(out.starts_with("42 "), "{out}");
    assert!(
        out.contains("compiled from source: []"),
        "Python recompiled from source: {out}"
    );

    if !strace_available() {
        return;
    }
    let log = t.path("openat.log");
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-e", "trace=openat", "-o"])
        .arg(&log)
        .arg(python());
    python_cmd(&mut traced);
    run_ok(&mut traced);
    let trace = fs::read_to_string(&log).unwrap();
    let pkg_in_mount = lib.join("mypkg");
    let opened = |path: &Path| {
        let quoted = format!("\"{}\"", path.display());
        trace.lines().any(|l| l.contains(&quoted) && !l.contains("= -1"))
    };
    for name in ["__init__", "a", "b"] {
        let source = pkg_in_mount.join(format!("{name}.py"));
        assert!(
            !opened(&source),
            "{} was read (stale .pyc):\n{trace}",
            source.display()
        );
    }
    let caches: Vec<PathBuf> = fs::read_dir(pkg_in_mount.join("__pycache__"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(caches.len(), 3);
    for cache in caches {
        assert!(opened(&cache), "{} was not used:\n{trace}", cache.display());
    }
}

/// Tree objects written before mtimes were recorded (`HDT1`), as an old store holds them.
fn old_format_tree(entries: &[(u8, &[u8], Vec<u8>)]) -> Vec<u8> {
    let mut out = b"HDT1".to_vec();
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (kind, name, payload) in entries {
        out.push(*kind);
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(payload);
    }
    out
}

#[test]
fn a_store_written_before_mtimes_still_verifies_exports_and_mounts() {
    use hdist_store::tree::{IngestedObject, ObjectKind};
    let t = TestStore::new();
    let store = hdist_store::Store::open(&t.store()).unwrap();
    let batch = store.objects().batch();
    let content = b"#!/bin/sh\necho old\n";
    let blob = batch.put_bytes(content).unwrap();
    let mut file_payload = (content.len() as u64).to_le_bytes().to_vec();
    file_payload.extend_from_slice(blob.digest.as_bytes());
    let bin = batch
        .put_bytes(&old_format_tree(&[(b'x', b"tool", file_payload)]))
        .unwrap();
    let mut link_payload = 8u32.to_le_bytes().to_vec();
    link_payload.extend_from_slice(b"bin/tool");
    let root = batch
        .put_bytes(&old_format_tree(&[
            (b'd', b"bin", bin.digest.as_bytes().to_vec()),
            (b'l', b"tool", link_payload),
        ]))
        .unwrap();
    batch.commit().unwrap();
    let object = |outcome, kind| IngestedObject { outcome, kind };
    let hash = blob.digest.short();
    let record = hdist_store::artifact::ArtifactRecord {
        id: hdist_store::artifact::ArtifactId::new("old", hash).unwrap(),
        version: None,
        root: root.digest,
        spec: None,
        created: 0,
        files: 1,
        bytes: content.len() as u64,
        build_log: None,
    };
    store
        .register(
            &record,
            &[
                object(blob, ObjectKind::Blob),
                object(bin, ObjectKind::Tree),
                object(root, ObjectKind::Tree),
            ],
        )
        .unwrap();
    drop(store);
    let id = record.id.to_string();

    t.ok(["store", "verify"]);
    let out = t.path("out");
    export(&t, &id, &out);
    assert_eq!(fs::read(out.join("bin/tool")).unwrap(), content);
    // Old trees show the mtime every file showed before: 1.
    let exported = mtimes(&out);
    assert_eq!(exported.len(), 3);
    assert!(exported.values().all(|m| *m == (1, 0)), "{exported:?}");

    if !fuse_available() {
        return;
    }
    t.ok(["profile", "create", "p", &id]);
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "p", &mnt);
    assert_eq!(mtimes(&mnt), exported);
    assert_eq!(run_ok(&mut Command::new(mnt.join("tool"))), "old\n");
}
