//! Hostile input through the CLI: archive bombs (by size and by member count), device nodes
//! in archives, build specs whose targets climb out of the build directory.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::util::{fuse_available, run_ok, stderr, view_guard, write_file, TestStore};

/// `tar -czf ARCHIVE -C DIR .` with the system's tar (which also packs FIFOs).
fn tar_czf(dir: &Path, archive: &Path) {
    run_ok(
        Command::new("tar")
            .arg("-czf")
            .arg(archive)
            .arg("-C")
            .arg(dir)
            .arg("."),
    );
}

/// Fetches `archive` and unpacks it into `<scratch>/NAME/dest`; returns the failure's stderr
/// after checking that neither the destination nor a staging directory is left behind.
fn unpack_fails(t: &TestStore, archive: &Path, name: &str, env: &[(&str, &str)]) -> String {
    let key = t.ok(["fetch".as_ref(), archive.as_os_str()]);
    let parent = t.path(name);
    fs::create_dir(&parent).unwrap();
    let dest = parent.join("dest");
    let mut cmd = t.cmd(["unpack".as_ref(), key.trim().as_ref(), dest.as_os_str()]);
    for (var, value) in env {
        cmd.env(var, value);
    }
    let out = cmd.output().unwrap();
    let message = stderr(&out);
    assert!(!out.status.success(), "{name}: unpacking succeeded: {message}");
    assert!(!dest.exists(), "{name}: the destination was created");
    let left: Vec<_> = fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{name}: left behind {left:?}");
    assert!(
        message.contains(key.trim()),
        "{name}: the archive is not named: {message}"
    );
    message
}

#[test]
fn archive_bombs_stop_at_the_limit() {
    let t = TestStore::new();
    // 300 MiB of zeros gzip to about 300 KB: past the default limit for an archive that small
    // (the 256 MiB floor), which is what a real bomb hits.
    let content = t.path("bomb");
    fs::create_dir(&content).unwrap();
    fs::File::create(content.join("zeros"))
        .unwrap()
        .set_len(300 << 20)
        .unwrap();
    let archive = t.path("bomb.tar.gz");
    tar_czf(&content, &archive);
    assert!(fs::metadata(&archive).unwrap().len() < 1 << 20);
    let message = unpack_fails(&t, &archive, "default", &[]);
    assert!(
        message.contains("expands to more than 268435456 bytes")
            && message.contains("HDIST_MAX_UNPACKED_BYTES"),
        "{message}"
    );
    // The environment sets the limit outright, e.g. lower.
    let message = unpack_fails(
        &t,
        &archive,
        "lowered",
        &[("HDIST_MAX_UNPACKED_BYTES", "1048576")],
    );
    assert!(message.contains("more than 1048576 bytes"), "{message}");
    let message = unpack_fails(&t, &archive, "nonsense", &[("HDIST_MAX_UNPACKED_BYTES", "lots")]);
    assert!(message.contains("HDIST_MAX_UNPACKED_BYTES=\"lots\""), "{message}");
}

#[test]
fn member_count_bombs_stop_at_the_limit() {
    let t = TestStore::new();
    let content = t.path("many");
    fs::create_dir(&content).unwrap();
    for i in 0..30 {
        fs::write(content.join(format!("f{i}")), b"").unwrap();
    }
    let archive = t.path("many.tar.gz");
    tar_czf(&content, &archive);
    let message = unpack_fails(&t, &archive, "lowered", &[("HDIST_MAX_UNPACKED_ENTRIES", "10")]);
    assert!(
        message.contains("it has more than 10 members (set by HDIST_MAX_UNPACKED_ENTRIES)")
            && message.contains("nothing was unpacked"),
        "{message}"
    );
    let message = unpack_fails(
        &t,
        &archive,
        "nonsense",
        &[("HDIST_MAX_UNPACKED_ENTRIES", "many")],
    );
    assert!(
        message.contains("HDIST_MAX_UNPACKED_ENTRIES=\"many\""),
        "{message}"
    );
    // Within the default limit it unpacks.
    let key = t.ok(["fetch".as_ref(), archive.as_os_str()]);
    let dest = t.path("dest");
    t.ok(["unpack".as_ref(), key.trim().as_ref(), dest.as_os_str()]);
    assert_eq!(fs::read_dir(&dest).unwrap().count(), 30);
}

#[test]
fn archives_with_fifos_are_refused() {
    let t = TestStore::new();
    let content = t.path("pkg");
    fs::create_dir(&content).unwrap();
    fs::write(content.join("README"), b"hello").unwrap();
    run_ok(Command::new("mkfifo").arg(content.join("pipe")));
    let archive = t.path("fifo.tar.gz");
    tar_czf(&content, &archive);
    let message = unpack_fails(&t, &archive, "fifo", &[]);
    assert!(
        message.contains("\"./pipe\" is a FIFO, which has no place in a source tree"),
        "{message}"
    );
}

#[test]
fn build_targets_outside_the_build_directory_are_refused() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let _view = view_guard(&t);
    // A files: source to unpack.
    let tree = t.path("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("f"), b"source").unwrap();
    let key = t.ok(["fetch".as_ref(), tree.as_os_str()]);
    let key = key.trim();
    // $BUILD is <store>/builds/<dir>/build: four levels up is the test's scratch directory.
    // $ARTIFACT is <store>/view/artifacts/<name>/<hash> (four up: the store) or, without a
    // sandbox, <store>/builds/<dir>/artifact.
    let absolute = t.path("escaped-absolute");
    let cases = [
        (
            "files-artifact",
            r#""files": [{"target": "$ARTIFACT/ok", "text": ["fine"]},
                         {"target": "$ARTIFACT/../../../../escaped-artifact", "text": ["x"]}]"#
                .to_string(),
            "build-write-files",
            "files[1].target \"$ARTIFACT/../../../../escaped-artifact\"",
            t.store().join("escaped-artifact"),
        ),
        (
            "files-relative",
            r#""files": [{"target": "../../../../escaped-relative", "text": ["x"]}]"#.to_string(),
            "build-write-files",
            "files[0].target \"../../../../escaped-relative\"",
            t.path("escaped-relative"),
        ),
        (
            "files-absolute",
            format!(
                r#""files": [{{"target": "{}", "text": ["x"]}}]"#,
                absolute.display()
            ),
            "build-write-files",
            "files[0].target",
            absolute.clone(),
        ),
        (
            "sources",
            format!(r#""sources": [{{"key": "{key}", "target": "../../../../escaped-source"}}]"#),
            "build-unpack-sources",
            "sources[0].target \"../../../../escaped-source\"",
            t.path("escaped-source"),
        ),
    ];
    for (name, field, hit, expected, escaped) in cases {
        let spec = write_file(
            &t,
            &format!("{name}.json"),
            &format!(r#"{{"name": "{name}", {field}, "build": {{"commands": [{{"hit": ["{hit}"]}}]}}}}"#),
        );
        let out = t.fails(["build".as_ref(), spec.as_os_str()]);
        let message = stderr(&out);
        assert!(
            message.contains(&format!("{name}.json"))
                && message.contains(expected)
                && message.contains("outside"),
            "{name}: {message}"
        );
        let file_name = escaped.file_name().unwrap();
        for place in [
            &escaped,
            &t.path("x").with_file_name(file_name),
            &t.store().join(file_name),
        ] {
            assert!(!place.exists(), "{name}: {} was written", place.display());
        }
    }
    assert_eq!(t.ok(["ls"]).trim(), "", "nothing may be registered");
}
