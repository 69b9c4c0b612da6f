//! Stack files: `hdist up`, `hdist status`, `hdist fetch --stack` on real software and on small
//! file-writing stacks; bad stack files fail with a position and change nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{
    corpus, fixture, fuse_available, run_ok, specs_dir, stderr, view_guard, wait_for, write_file, MountGuard,
    TestStore,
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

/// A fresh store (with the guard of its view) and the example stack, or `None` (the test
/// skips) without FUSE or the corpus.
fn hello_zlib_store() -> Option<(TestStore, MountGuard, PathBuf)> {
    if !fuse_available() {
        return None;
    }
    let debsrc = corpus("debsrc")?;
    let t = TestStore::new();
    let view = view_guard(&t);
    let stack = hello_zlib_stack(&t, &debsrc);
    Some((t, view, stack))
}

#[test]
fn real_stack_up_mount_run_then_removing_a_package_uninstalls_it() {
    let Some((t, _view, stack)) = hello_zlib_store() else {
        return;
    };

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
        &fs::read_to_string(fixture("stacks/six.toml")).unwrap(),
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
        (format!("{header}{}", pkg("x/y", "")), "4:8:", "package name"),
        (
            format!("{header}{}", pkg("x", "version = \"-1.0\"")),
            "6:11:",
            "invalid version \"-1.0\": it must start with a letter, a digit, `_` or `+` (a leading `-` would be read as an option)",
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

/// `hdist info PACKAGE --stack FILE [--json]`.
fn info(t: &TestStore, stack: &Path, package: &str, json: bool) -> String {
    let mut args = vec![
        "info".as_ref(),
        package.as_ref(),
        "--stack".as_ref(),
        stack.as_os_str(),
    ];
    if json {
        args.push("--json".as_ref());
    }
    t.ok(args)
}

/// The `status --json` row of `package`.
fn status_row(t: &TestStore, stack: &Path, package: &str) -> serde_json::Value {
    let status = status_json(t, stack);
    let row = status["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == package);
    row.unwrap_or_else(|| panic!("{package} not in {status}")).clone()
}

/// The line of `package` in `hdist status` text.
fn status_line(t: &TestStore, stack: &Path, package: &str) -> String {
    let text = t.ok(["status".as_ref(), stack.as_os_str()]);
    let line = text.lines().find(|l| l.starts_with(&format!("{package} ")));
    line.unwrap_or_else(|| panic!("{package} not in {text}"))
        .to_string()
}

#[test]
fn info_shows_a_package_and_status_says_why_it_needs_a_rebuild() {
    let Some((t, _view, stack)) = hello_zlib_store() else {
        return;
    };
    let debsrc = corpus("debsrc").expect("checked by hello_zlib_store");
    // zlib and minigzip of the example stack (hello left out: it only costs build time).
    let text = fs::read_to_string(&stack).unwrap();
    let hello = text.find("[[package]]\nname = \"hello\"").expect("hello section");
    let zlib = text.find("[[package]]\nname = \"zlib\"").expect("zlib section");
    let text = format!("{}{}", &text[..hello], &text[zlib..]);
    fs::write(&stack, &text).unwrap();

    let row = status_row(&t, &stack, "zlib");
    assert_eq!(
        (&row["state"], &row["reason"]),
        (&"needs-build".into(), &"never built".into())
    );
    let out = info(&t, &stack, "minigzip", false);
    assert!(out.contains("  state       needs-build: never built"), "{out}");

    t.ok(["-q".as_ref(), "up".as_ref(), stack.as_os_str()]);
    let zlib: serde_json::Value = serde_json::from_str(&info(&t, &stack, "zlib", true)).unwrap();
    let zlib_id = status_row(&t, &stack, "zlib")["id"].clone();
    let version = zlib["version"].as_str().unwrap().to_string();
    assert_eq!(zlib["name"], "zlib");
    assert_eq!(zlib["id"], zlib_id);
    assert_eq!(zlib["state"], "ok", "the word `status --json` uses");
    assert_eq!(zlib["reason"], serde_json::Value::Null);
    assert_eq!(
        zlib["sources"][0]["key"],
        "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6"
    );
    assert_eq!(
        zlib["sources"][0]["location"],
        debsrc.join("zlib_1.2.13.dfsg.orig.tar.bz2").display().to_string()
    );
    assert_eq!(zlib["build_deps"], serde_json::json!([]));
    let zlib_line = text.lines().position(|l| l == "name = \"zlib\"").unwrap() + 1;
    assert_eq!(zlib["defined_in"], format!("{}:{zlib_line}", stack.display()));
    let minigzip = info(&t, &stack, "minigzip", false);
    for line in [
        format!("minigzip {version}"),
        format!("  build deps  {}", zlib_id.as_str().unwrap()),
        format!("  run deps    {}", zlib_id.as_str().unwrap()),
        "  in profile  yes".to_string(),
        "  state       built".to_string(),
    ] {
        assert!(
            minigzip.lines().any(|l| l == line),
            "no line {line:?} in\n{minigzip}"
        );
    }

    // A new zlib version: zlib says what changed, minigzip names zlib and its reason.
    let edited = text.replace(
        &format!("name = \"zlib\"\nversion = \"{version}\""),
        "name = \"zlib\"\nversion = \"9_9\"",
    );
    assert_ne!(edited, text);
    fs::write(&stack, &edited).unwrap();
    let why_version = format!("version {version} -> 9_9");
    assert!(status_line(&t, &stack, "zlib").ends_with(&format!("why: {why_version}")));
    let row = status_row(&t, &stack, "minigzip");
    assert_eq!(row["reason"], format!("zlib changed ({why_version})"));
    assert_eq!(row["changes"][0]["kind"], "dependency");
    assert_eq!(row["changes"][0]["old"], zlib_id);
    assert_eq!(row["changes"][0]["changes"][0]["new"], "9_9");
    let minigzip = info(&t, &stack, "minigzip", false);
    assert!(
        minigzip.contains(&format!(
            "  state       needs-build: zlib changed ({why_version})"
        )),
        "{minigzip}"
    );

    // A template parameter: the configure command that changed.
    let edited = text.replace(
        "template = \"configure-make\"\nsources",
        "template = \"configure-make\"\nconfigure_flags = [\"--static\"]\nsources",
    );
    assert_ne!(edited, text);
    fs::write(&stack, &edited).unwrap();
    let why_flags =
        "build commands `./configure --prefix=${ARTIFACT}` -> `./configure --prefix=${ARTIFACT} --static`";
    assert_eq!(status_row(&t, &stack, "zlib")["reason"], why_flags);
    assert!(status_line(&t, &stack, "minigzip").ends_with(&format!("why: zlib changed ({why_flags})")));

    // Bad input: a misspelled package gets a guess, an unknown one names the file; both fail.
    let out = t.fails([
        "info".as_ref(),
        "zlbi".as_ref(),
        "--stack".as_ref(),
        stack.as_os_str(),
    ]);
    assert!(
        stderr(&out).contains("no package \"zlbi\"; did you mean \"zlib\"?"),
        "{}",
        stderr(&out)
    );
    let out = t.fails([
        "info".as_ref(),
        "nosuch".as_ref(),
        "--stack".as_ref(),
        stack.as_os_str(),
    ]);
    let err = stderr(&out);
    assert!(
        err.contains("hello-zlib.toml: no package \"nosuch\"") && !err.contains("did you mean"),
        "{err}"
    );
}

#[test]
fn stack_from_two_repos_builds_the_first_repos_package_and_bad_repos_change_nothing() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let _view = view_guard(&t);
    let stack = fixture("repos").join("stack.toml");
    let out = t.ok(["-q".as_ref(), "up".as_ref(), stack.as_os_str()]);
    assert!(out.starts_with("greetings: generation 1 (2 built"), "{out}");
    let mnt = t.path("sw");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard::new(&mnt);
    t.ok(["mount".as_ref(), "greetings".as_ref(), mnt.as_os_str()]);
    // site/greeting.toml shadows pkgs/greeting.toml; shout is built against it.
    for file in ["share/greeting.txt", "share/shout.txt"] {
        assert_eq!(
            fs::read_to_string(mnt.join(file)).unwrap(),
            "hello from the site\n",
            "{file}"
        );
    }
    let artifacts = t.ok(["ls"]);

    // Each bad stack: file:line:col of the cause (the package file when it is the cause),
    // nothing built, no generation.
    let repos = fixture("repos");
    let header = format!(
        "[stack]\nprofile = \"greetings\"\nrepos = [\"{}\", \"{}\"]\n",
        repos.join("cycle").display(),
        repos.join("pkgs").display()
    );
    let cases = [
        (
            format!("{header}[[package]]\nname = \"cyc-a\"\n"),
            format!(
                "{}:2:11: package cyc-a: extends cycle: cyc-a (",
                repos.join("cycle/cyc-b.toml").display()
            ),
        ),
        (
            format!(
                "{header}[[package]]\nname = \"greeting\"\n[[package]]\nname = \"gone\"\nversion = \"1\"\n"
            ),
            "bad.toml:7:8: package gone is in none of the repos: ".to_string(),
        ),
        (
            format!("{header}[[package]]\nname = \"greeting\"\nversion = \"/1\"\n"),
            "bad.toml:6:11: package greeting: version: invalid version \"/1\": it must start with"
                .to_string(),
        ),
        (
            format!("{header}[[package]]\nname = \"no-such-host-tool\"\nkind = \"host\"\n"),
            "bad.toml:6:8: package no-such-host-tool: host tool: no-such-host-tool is not on PATH"
                .to_string(),
        ),
    ];
    for (text, expected) in cases {
        let bad = write_file(&t, "bad.toml", &text);
        let out = t.fails(["up".as_ref(), bad.as_os_str()]);
        assert!(
            stderr(&out).contains(&expected),
            "expected {expected:?}, got {}",
            stderr(&out)
        );
        assert_eq!(generations(&t, "greetings"), ["1"]);
        assert_eq!(t.ok(["ls"]), artifacts, "a bad stack registered something");
    }
}

/// A fresh store (with the guard of its view) and an empty `tools` directory beside it to put
/// on `PATH`, or `None` (the test skips) without FUSE.
fn store_with_tools_dir() -> Option<(TestStore, MountGuard, PathBuf)> {
    if !fuse_available() {
        return None;
    }
    let t = TestStore::new();
    let view = view_guard(&t);
    let tools = t.path("tools");
    fs::create_dir_all(&tools).unwrap();
    Some((t, view, tools))
}

/// Writes `DIR/fakecc`, a host "compiler" whose `--version` (any call) prints `fakecc VERSION`.
fn install_fakecc(dir: &Path, version: &str) {
    use std::os::unix::fs::PermissionsExt;
    let tool = dir.join("fakecc");
    fs::write(&tool, format!("#!/bin/sh\necho \"fakecc {version}\"\n")).unwrap();
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A fake host compiler on PATH: builds import it like a package; a new version of it changes
/// its id and its dependents' ids (so `up` rebuilds them); gone from PATH, `up` fails at its
/// position and switches nothing.
#[test]
fn host_tool_on_path_is_imported_and_upgrading_it_rebuilds_its_dependents() {
    let Some((t, _view, tools)) = store_with_tools_dir() else {
        return;
    };
    let write_tool = |version: &str| install_fakecc(&tools, version);
    let stack = write_file(
        &t,
        "stack.toml",
        "[stack]\nprofile = \"hosted\"\n\n\
         [[package]]\nname = \"fakecc\"\nkind = \"host\"\n\n\
         [[package]]\nname = \"app\"\nversion = \"1.0\"\nbuild_deps = [\"fakecc\"]\nbuild = [\n\
           { set = \"PATH\", value = \"${FAKECC_DIR}/bin:/usr/bin:/bin\" },\n\
           { cmd = [\"mkdir\", \"-p\", \"${ARTIFACT}/share\"] },\n\
           { cmd = [\"sh\", \"-c\", \"fakecc > ${ARTIFACT}/share/app.txt\"] },\n]\n",
    );
    let host_path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap());
    let up = |path: &str| {
        t.cmd(["-q".as_ref(), "up".as_ref(), stack.as_os_str()])
            .env("PATH", path)
            .output()
            .unwrap()
    };
    write_tool("1.0");
    let out = up(&host_path);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("hosted: generation 1 (2 built"), "{stdout}");
    let mnt = t.path("sw");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard::new(&mnt);
    t.ok(["mount".as_ref(), "hosted".as_ref(), mnt.as_os_str()]);
    assert_eq!(
        fs::read_to_string(mnt.join("share/app.txt")).unwrap(),
        "fakecc 1.0\n"
    );
    assert!(!mnt.join("bin/fakecc").exists(), "a host tool is in the profile");
    let out = up(&host_path);
    assert!(String::from_utf8_lossy(&out.stdout).contains("generation 1 is up to date"));

    write_tool("2.0");
    let out = up(&host_path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("hosted: generation 2 (2 built, 0 cached"),
        "{stdout} {}",
        stderr(&out)
    );
    assert!(wait_for(Duration::from_secs(3), || {
        fs::read_to_string(mnt.join("share/app.txt")).ok().as_deref() == Some("fakecc 2.0\n")
    }));

    let out = up("/usr/bin:/bin");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "stack.toml:6:8: package fakecc: host tool: fakecc is not on PATH (searched /usr/bin:/bin)"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(generations(&t, "hosted"), ["1", "2"]);
}

#[test]
fn info_names_the_repo_file_that_defines_a_package_and_what_it_shadows() {
    let t = TestStore::new();
    let repos = fixture("repos");
    let stack = repos.join("stack.toml");
    let greeting = info(&t, &stack, "greeting", false);
    let site = repos.join("site/greeting.toml");
    let pkgs = repos.join("pkgs/greeting.toml");
    for line in [
        "greeting 2.0rc1+site".to_string(),
        format!(
            "  defined in  {} (shadows {}: the first repo wins)",
            site.display(),
            pkgs.display()
        ),
        format!(
            "  extends     {}",
            repos.join("pkgs/greeting-base.toml").display()
        ),
        "  state       needs-build: never built".to_string(),
    ] {
        assert!(
            greeting.lines().any(|l| l == line),
            "no line {line:?} in\n{greeting}"
        );
    }
    let shout: serde_json::Value = serde_json::from_str(&info(&t, &stack, "shout", true)).unwrap();
    assert_eq!(
        shout["defined_in"],
        repos.join("pkgs/shout.toml").display().to_string()
    );
    assert_eq!(shout["shadows"], serde_json::json!([]));
    assert_eq!(shout["version"], "1.26.5", "the stack's override");
    assert_eq!(shout["build_deps"][0]["name"], "greeting");
}

/// Issue 13's "upgrading the host compiler … and `hdist status` says why": the reason names
/// the host tool and what of it changed, for the tool and for what is built with it.
#[test]
fn status_and_info_say_a_host_tool_upgrade_is_why_its_dependents_need_a_rebuild() {
    let Some((t, _view, tools)) = store_with_tools_dir() else {
        return;
    };
    let tool = tools.join("fakecc");
    let install = |version: &str| install_fakecc(&tools, version);
    let stack = write_file(
        &t,
        "stack.toml",
        "[stack]\nprofile = \"hosted\"\n\n\
         [[package]]\nname = \"fakecc\"\nkind = \"host\"\n\n\
         [[package]]\nname = \"app\"\nbuild_deps = [\"fakecc\"]\nbuild = [{ cmd = [\"${FAKECC_DIR}/bin/fakecc\"] }]\n",
    );
    let path = format!("{}:/usr/bin:/bin", tools.display());
    let hdist = |args: &[&std::ffi::OsStr]| run_ok(t.cmd(args).env("PATH", &path));
    install("1.0");
    hdist(&["-q".as_ref(), "up".as_ref(), stack.as_os_str()]);
    install("2.0");
    let status: serde_json::Value =
        serde_json::from_str(&hdist(&["status".as_ref(), stack.as_os_str(), "--json".as_ref()])).unwrap();
    let reason = |name: &str| {
        let rows = status["packages"].as_array().unwrap();
        let row = rows.iter().find(|p| p["name"] == name).unwrap();
        row["reason"].as_str().unwrap().to_string()
    };
    let version = "host tool fakecc: version fakecc 1.0 -> fakecc 2.0; host tool fakecc: sha256 ";
    assert!(reason("fakecc").starts_with(version), "{}", reason("fakecc"));
    assert!(
        reason("app").starts_with(&format!("fakecc changed ({version}")),
        "{}",
        reason("app")
    );
    let info = hdist(&[
        "info".as_ref(),
        "fakecc".as_ref(),
        "--stack".as_ref(),
        stack.as_os_str(),
    ]);
    let probed = format!("  host tool   {} (fakecc 2.0)", tool.display());
    assert!(info.lines().any(|l| l == probed), "no {probed:?} in\n{info}");
}
