//! Stack files: `hdist up`, `hdist status`, `hdist fetch --stack` on real software and on small
//! file-writing stacks; bad stack files fail with a position and change nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{
    corpus, fixture_stack, fuse_available, run_ok, specs_dir, stderr, view_guard, wait_for, write_file,
    MountGuard, TestStore,
};

/// `scripts/stacks/`: the user-facing example stacks.
fn example_stacks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/stacks")
}

/// Generation files of a profile (`1`, `2`, …), sorted.
fn generations(t: &TestStore, profile: &str) -> Vec<String> {
    let dir = t.store().join("profiles").join(profile);
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "current")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn status_json(t: &TestStore, stack: &Path) -> serde_json::Value {
    serde_json::from_str(&t.ok(["status".as_ref(), stack.as_os_str(), "--json".as_ref()])).unwrap()
}

/// The shipped example stack, with its corpus-relative source paths made absolute.
fn hello_zlib_stack(t: &TestStore, debsrc: &Path) -> PathBuf {
    let text = fs::read_to_string(example_stacks_dir().join("hello-zlib.toml")).unwrap();
    let text = text.replace("../../.cache/corpus/debsrc", &debsrc.display().to_string());
    write_file(t, "hello-zlib.toml", &text)
}

#[test]
fn real_stack_up_mount_run_then_removing_a_package_uninstalls_it() {
    if !fuse_available() {
        return;
    }
    let Some(debsrc) = corpus("debsrc") else {
        return;
    };
    let t = TestStore::new();
    let _view = view_guard(&t);
    let stack = hello_zlib_stack(&t, &debsrc);

    // Prefetch: every source is fetched and checked (zlib's tarball serves two packages).
    let fetched = t.ok(["fetch".as_ref(), "--stack".as_ref(), stack.as_os_str()]);
    assert_eq!(fetched.lines().count(), 3, "{fetched}");
    assert!(
        fetched.contains("tar.gz:ghqgme32sythn2e7nhi3mu4c32k2p335 fetched hello"),
        "{fetched}"
    );
    assert!(fetched.contains("cached minigzip"), "{fetched}");

    let status = status_json(&t, &stack);
    assert_eq!(status["profile_state"], "absent");
    for package in status["packages"].as_array().unwrap() {
        assert_eq!(package["state"], "needs-build", "{package}");
    }

    let start = Instant::now();
    let out = t.ok(["-q".as_ref(), "up".as_ref(), stack.as_os_str(), "-j2".as_ref()]);
    eprintln!(
        "hdist up (hello, zlib, minigzip from source): {:?}: {out}",
        start.elapsed()
    );
    assert!(out.starts_with("tools: generation 1 (3 built"), "{out}");

    // The templates reproduce the hand-written specs: same ids, one cache.
    let status = status_json(&t, &stack);
    assert_eq!(status["profile_state"], "current");
    for (package, spec) in status["packages"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["hello", "zlib", "minigzip"])
    {
        assert_eq!(package["state"], "ok");
        let id = t.ok([
            "id".as_ref(),
            specs_dir().join(format!("{spec}.json")).as_os_str(),
        ]);
        assert_eq!(package["id"], id.trim());
    }
    let text = t.ok(["status".as_ref(), stack.as_os_str()]);
    assert!(
        text.contains("minigzip  ok") && text.contains("matches the stack"),
        "{text}"
    );

    // Nothing changed: no build, no new generation.
    let out = t.ok(["up".as_ref(), stack.as_os_str()]);
    assert!(out.contains("generation 1 is up to date"), "{out}");
    assert_eq!(generations(&t, "tools"), ["1"]);

    let mnt = t.path("sw");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard::new(&mnt);
    t.ok(["mount".as_ref(), "tools".as_ref(), mnt.as_os_str()]);
    let path = format!("{}:/usr/bin:/bin", mnt.join("bin").display());
    assert_eq!(
        run_ok(Command::new("hello").env("PATH", &path)).trim(),
        "Hello, world!"
    );
    let data = t.path("data.txt");
    fs::write(&data, "hdist ".repeat(10_000)).unwrap();
    run_ok(Command::new("minigzip").arg(&data).env("PATH", &path));
    let gz = t.path("data.txt.gz");
    assert!(fs::metadata(&gz).unwrap().len() < 2_000);
    run_ok(Command::new("minigzip").arg("-d").arg(&gz).env("PATH", &path));
    assert_eq!(fs::read_to_string(&data).unwrap(), "hdist ".repeat(10_000));

    // Remove minigzip from the stack: the next generation lacks it, and the mounted view
    // follows the profile's current generation without a remount.
    let text = fs::read_to_string(&stack).unwrap();
    let cut = text
        .find("[[package]]\nname = \"minigzip\"")
        .expect("minigzip section");
    fs::write(&stack, &text[..cut]).unwrap();
    let out = t.ok(["up".as_ref(), stack.as_os_str()]);
    assert!(
        out.contains("generation 2 (0 built, 2 cached; -minigzip"),
        "{out}"
    );
    assert_eq!(generations(&t, "tools"), ["1", "2"]);
    assert!(
        wait_for(Duration::from_secs(3), || !mnt.join("bin/minigzip").exists()),
        "bin/minigzip is still visible in the mount 3 s after `hdist up` removed it"
    );
    assert_eq!(
        run_ok(Command::new("hello").env("PATH", &path)).trim(),
        "Hello, world!"
    );
    t.ok(["-q", "store", "verify"]);
}

#[test]
fn six_package_stack_builds_in_parallel_and_an_unchanged_up_is_a_fast_no_op() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let _view = view_guard(&t);
    let stack = write_file(
        &t,
        "six.toml",
        &fs::read_to_string(fixture_stack("six.toml")).unwrap(),
    );
    let out = t.ok(["-q".as_ref(), "up".as_ref(), stack.as_os_str(), "-j3".as_ref()]);
    assert!(out.starts_with("six: generation 1 (6 built, 0 cached"), "{out}");

    // The no-change benchmark: parse, hash six specs, six index lookups, one profile read.
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let out = t.ok(["up".as_ref(), stack.as_os_str()]);
        times.push(start.elapsed());
        assert!(out.contains("generation 1 is up to date"), "{out}");
    }
    times.sort();
    eprintln!(
        "hdist up, 6 packages, nothing changed: median {:?} (of {times:?})",
        times[2]
    );
    assert_eq!(generations(&t, "six"), ["1"]);

    let mnt = t.path("sw");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard::new(&mnt);
    t.ok(["mount".as_ref(), "six".as_ref(), mnt.as_os_str()]);
    assert_eq!(
        run_ok(&mut Command::new(mnt.join("bin/six-tool"))).trim(),
        "six-tool"
    );
    // Run dependencies are in, the build-only tool is not.
    for present in [
        "lib/liba.txt",
        "lib/libb.txt",
        "lib/libbase.txt",
        "share/man/man1/six-tool.1",
    ] {
        assert!(mnt.join(present).exists(), "{present} missing from the profile");
    }
    assert!(
        !mnt.join("bin/six-gen").exists(),
        "the build-only package is in the profile"
    );
    // six-tool's rule excludes its share/doc.
    assert!(
        !mnt.join("share/doc/six-tool/README").exists(),
        "the exclude rule of six-tool was not applied"
    );

    // Changing the base package rebuilds what is built against it, and nothing else.
    let text = fs::read_to_string(&stack)
        .unwrap()
        .replace("text = [\"base\"]", "text = [\"base 2\"]");
    fs::write(&stack, text).unwrap();
    let status = status_json(&t, &stack);
    let needs: Vec<&str> = status["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "needs-build")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(needs, ["six-base", "six-liba", "six-libb", "six-tool"]);
    assert_eq!(status["profile_state"], "outdated");
    let out = t.ok(["-q".as_ref(), "up".as_ref(), stack.as_os_str()]);
    assert!(
        out.contains("generation 2 (4 built, 2 cached; ~six-base ~six-liba ~six-libb ~six-tool"),
        "{out}"
    );
    assert!(wait_for(Duration::from_secs(3), || {
        fs::read_to_string(mnt.join("share/six/base.txt")).ok().as_deref() == Some("base 2\n")
    }));

    // --profile writes another profile from the same stack.
    let out = t.ok([
        "up".as_ref(),
        stack.as_os_str(),
        "--profile".as_ref(),
        "other".as_ref(),
    ]);
    assert!(out.starts_with("other: generation 1 (0 built, 6 cached"), "{out}");
}

#[test]
fn bad_stack_files_fail_with_a_position_and_change_nothing() {
    let t = TestStore::new();
    let _view = view_guard(&t);
    let good = "[stack]\nprofile = \"p\"\n\n\
                [[package]]\nname = \"a\"\nfiles = [{ target = \"$ARTIFACT/a\", text = [\"a\"] }]\n\
                build = [{ hit = [\"build-write-files\"] }]\n";
    let stack = write_file(&t, "stack.toml", good);
    // A bad file fails before the store is even created.
    let out = t.fails([
        "up".as_ref(),
        write_file(&t, "bad.toml", "[[package]]\nname = = 1\n").as_os_str(),
    ]);
    assert!(stderr(&out).contains("bad.toml:2:8:"), "{}", stderr(&out));
    assert!(!t.store().exists(), "a bad stack file created the store");

    t.ok(["-q".as_ref(), "up".as_ref(), stack.as_os_str()]);
    let artifacts = t.ok(["ls"]);
    assert_eq!(generations(&t, "p"), ["1"]);

    let pkg = |name: &str, extra: &str| format!("[[package]]\nname = \"{name}\"\nbuild = []\n{extra}\n");
    let header = "[stack]\nprofile = \"p\"\n";
    let cases = [
        // (stack text, expected "line:col:", expected words)
        (
            format!(
                "{header}{}{}",
                pkg("x", "build_deps = [\"y\"]"),
                pkg("y", "build_deps = [\"x\"]")
            ),
            "10:15:",
            "build dependency cycle: x -> y -> x",
        ),
        (
            format!("{header}{}", pkg("x", "build_deps = [\"nope\"]")),
            "6:15:",
            "unknown package \"nope\"",
        ),
        (
            format!(
                "{header}{}",
                pkg("x", "sources = [{ url = \"/nowhere.tar.gz\" }]")
            ),
            "6:12:",
            "has no key",
        ),
        (format!("{header}[[package]\nname = \"x\"\n"), "3:10:", ""),
        (
            format!("{header}{}{}", pkg("x", ""), pkg("x", "")),
            "8:8:",
            "defined twice (first at 4:8)",
        ),
        (format!("{header}{}", pkg("x y", "")), "4:8:", "package name"),
        (
            format!("{header}{}", pkg("x", "version = \"1.0\"")),
            "6:11:",
            "version",
        ),
        (
            format!("{header}{}", pkg("x", "colour = \"red\"")),
            "6:1:",
            "colour",
        ),
    ];
    for (text, position, words) in cases {
        let bad = write_file(&t, "bad.toml", &text);
        for command in ["up", "status"] {
            let out = t.fails([command.as_ref(), bad.as_os_str()]);
            let err = stderr(&out);
            assert!(
                err.contains(&format!("bad.toml:{position}")) && err.contains(words),
                "{command} on\n{text}\nexpected {position} {words:?}, got: {err}"
            );
        }
        let out = t.fails(["fetch".as_ref(), "--stack".as_ref(), bad.as_os_str()]);
        assert!(
            stderr(&out).contains(&format!("bad.toml:{position}")),
            "{}",
            stderr(&out)
        );
        assert_eq!(
            generations(&t, "p"),
            ["1"],
            "a bad stack file created a generation"
        );
        assert_eq!(t.ok(["ls"]), artifacts, "a bad stack file registered something");
    }

    // A source whose content has another key: exit 2, nothing stored, no generation.
    let payload = t.path("payload");
    fs::create_dir_all(payload.join("top")).unwrap();
    fs::write(payload.join("top/file"), "x").unwrap();
    let tarball = t.path("payload.tar.gz");
    run_ok(
        Command::new("tar")
            .arg("czf")
            .arg(&tarball)
            .arg("-C")
            .arg(&payload)
            .arg("top"),
    );
    let wrong = format!(
        "{header}{}",
        pkg(
            "x",
            &format!(
                "sources = [{{ url = \"{}\", key = \"tar.gz:{}\" }}]",
                tarball.display(),
                "a".repeat(32)
            )
        )
    );
    let bad = write_file(&t, "bad.toml", &wrong);
    let out = t
        .cmd(["fetch".as_ref(), "--stack".as_ref(), bad.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not the expected"), "{}", stderr(&out));
    let out = t.fails(["up".as_ref(), bad.as_os_str()]);
    assert!(
        stderr(&out).contains("package x: cannot fetch"),
        "{}",
        stderr(&out)
    );
    assert_eq!(generations(&t, "p"), ["1"]);
    assert_eq!(t.ok(["ls"]), artifacts);
}
