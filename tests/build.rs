//! Builds of real software (Debian's upstream tarballs) and of small failing specs.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{
    corpus, fuse_available, is_mounted, run_ok, specs_dir, stderr, view_guard, wait_for, write_file,
    MountGuard, TestStore,
};

#[test]
fn id_matches_hashdist_and_malformed_specs_name_the_field() {
    let t = TestStore::new();
    let spec = write_file(&t, "foo.json", r#"{"name":"fooname","build":{"commands":[]}}"#);
    assert_eq!(
        t.ok(["id".as_ref(), spec.as_os_str()]).trim(),
        "fooname/cwfxs3bhjvlxoczwlxlexklpeoewybcn"
    );
    let cases = [
        ("{not json", "not valid JSON"),
        (r#"{"build":{"commands":[]}}"#, "field name"),
        (r#"{"name":"bad/name"}"#, "field name"),
        (r#"{"name":"x","version":1.5}"#, "version"),
        (r#"{"name":"x","build":{"commands":[{"run":["true"]}]}}"#, "run"),
        (
            r#"{"name":"x","build":{"import":[{"ref":"","id":"y/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}}"#,
            "build.import[0].ref",
        ),
    ];
    for (json, expected) in cases {
        let spec = write_file(&t, "bad.json", json);
        let out = t.fails(["build".as_ref(), spec.as_os_str()]);
        let err = stderr(&out);
        assert!(
            err.contains("bad.json") && err.contains(expected),
            "{json}: {err}"
        );
    }
    // An import the store does not have.
    let spec = write_file(
        &t,
        "imp.json",
        r#"{"name":"x","build":{"import":[{"ref":"Y","id":"y/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}],"commands":[]}}"#,
    );
    let _view = view_guard(&t);
    let out = t.fails(["build".as_ref(), spec.as_os_str()]);
    assert!(
        stderr(&out).contains("y/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failing_build_registers_nothing_and_reports_the_command() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let _view = view_guard(&t);
    let spec = write_file(
        &t,
        "fail.json",
        r#"{"name":"failing","build":{"commands":[
            {"set":"PATH","value":"/usr/bin:/bin"},
            {"cmd":["sh","-c","echo step one; echo about to fail >&2; exit 3"]}]}}"#,
    );
    let out = t.fails(["build".as_ref(), spec.as_os_str()]);
    let err = stderr(&out);
    assert!(err.contains("exit") && err.contains('3'), "status missing: {err}");
    assert!(err.contains("sh"), "command missing: {err}");
    assert!(err.contains("about to fail"), "log tail missing: {err}");
    assert!(err.contains("build.log"), "log path missing: {err}");
    assert_eq!(t.ok(["ls"]).trim(), "", "nothing may be registered");
    t.ok(["-q", "store", "verify"]);
    // The environment is cleared: a variable of ours does not reach the job.
    let spec = write_file(
        &t,
        "env.json",
        r#"{"name":"envcheck","build":{"commands":[
            {"set":"PATH","value":"/usr/bin:/bin"},
            {"cmd":["sh","-c","test -z \"\\$HDIST_LEAK\" && mkdir -p $ARTIFACT && env | sort > $ARTIFACT/env"]}]}}"#,
    );
    let id = run_ok(
        t.cmd(["build".as_ref(), spec.as_os_str()])
            .env("HDIST_LEAK", "yes"),
    );
    let env = t.ok(["cat", id.trim(), "env"]);
    let names: Vec<&str> = env.lines().map(|l| l.split('=').next().unwrap()).collect();
    for expected in [
        "ARTIFACT",
        "BUILD",
        "HDIST_CPU_COUNT",
        "HDIST_IMPORT",
        "HDIST_IMPORT_PATHS",
        "PATH",
    ] {
        assert!(names.contains(&expected), "{expected} missing from {names:?}");
    }
    assert!(!env.contains("HDIST_LEAK"));
    assert!(!names.contains(&"HOME"), "the caller's HOME leaked: {names:?}");
}

/// Fetches the Debian tarballs (plain paths; HTTP fetching is covered by the source tests).
fn fetch_debsrc(t: &TestStore) -> Option<()> {
    let debsrc = corpus("debsrc")?;
    for name in ["hello_2.10.orig.tar.gz", "zlib_1.2.13.dfsg.orig.tar.bz2"] {
        t.ok(["-q".as_ref(), "fetch".as_ref(), debsrc.join(name).as_os_str()]);
    }
    Some(())
}

/// Fetches the Debian tarballs and builds hello, zlib and minigzip (which imports zlib) into
/// `t` (whose view the caller guards); returns the three ids, one per line. `None`: the
/// corpus is not fetched (skip).
pub(crate) fn build_hello_zlib_minigzip(t: &TestStore) -> Option<String> {
    fetch_debsrc(t)?;
    let specs = specs_dir();
    Some(t.ok([
        "-q".as_ref(),
        "build".as_ref(),
        "-j2".as_ref(),
        specs.join("hello.json").as_os_str(),
        specs.join("zlib.json").as_os_str(),
        specs.join("minigzip.json").as_os_str(),
    ]))
}

#[test]
fn hello_zlib_and_a_zlib_linked_program_build_and_run_from_a_profile() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let _view = view_guard(&t);
    let specs = specs_dir();
    let start = Instant::now();
    let Some(out) = build_hello_zlib_minigzip(&t) else {
        return;
    };
    eprintln!("built the stack in {:?}", start.elapsed());
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 3, "{out}");
    for (id, spec) in ids.iter().zip(["hello.json", "zlib.json", "minigzip.json"]) {
        assert_eq!(t.ok(["id".as_ref(), specs.join(spec).as_os_str()]).trim(), *id);
    }
    // Everything cached: fast, and nothing rebuilt.
    let start = Instant::now();
    let again = t.ok([
        "-q".as_ref(),
        "build".as_ref(),
        specs.join("hello.json").as_os_str(),
        specs.join("zlib.json").as_os_str(),
        specs.join("minigzip.json").as_os_str(),
    ]);
    assert_eq!(again, out);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cached build took {:?}",
        start.elapsed()
    );

    // resolve gives the final path, where the artifact is visible.
    let zlib_dir = PathBuf::from(t.ok(["resolve", ids[1]]).trim());
    assert!(zlib_dir.join("include/zlib.h").exists());
    assert!(t.ok(["build-log", ids[0]]).contains("make"));

    t.ok(["profile", "create", "stack", ids[0], ids[2], ids[1]]);
    let mnt = t.path("sw");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard::new(&mnt);
    t.ok(["mount".as_ref(), "stack".as_ref(), mnt.as_os_str()]);
    let path = format!("{}:/usr/bin:/bin", mnt.join("bin").display());
    let hello = run_ok(Command::new("hello").env("PATH", &path));
    assert_eq!(hello.trim(), "Hello, world!");
    // minigzip was linked by rpath against zlib at its final path in the store-wide view.
    let ldd = run_ok(Command::new("ldd").arg(mnt.join("bin/minigzip")));
    assert!(ldd.contains(&zlib_dir.join("lib").display().to_string()), "{ldd}");
    let data = t.path("data.txt");
    fs::write(&data, "hdist ".repeat(10_000)).unwrap();
    run_ok(Command::new("minigzip").arg(&data).env("PATH", &path));
    let gz = t.path("data.txt.gz");
    assert!(fs::metadata(&gz).unwrap().len() < 2_000);
    run_ok(Command::new("minigzip").arg("-d").arg(&gz).env("PATH", &path));
    assert_eq!(fs::read_to_string(&data).unwrap(), "hdist ".repeat(10_000));
    t.ok(["-q", "store", "verify"]);
}

#[test]
fn concurrent_builds_of_one_spec_and_kill_9_mid_build() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let _view = view_guard(&t);
    let spec = write_file(
        &t,
        "slow.json",
        r#"{"name":"slow","build":{"commands":[
            {"set":"PATH","value":"/usr/bin:/bin"},
            {"cmd":["sh","-c","mkdir -p $ARTIFACT/share && for i in 1 2 3 4 5; do echo \\$i >> $ARTIFACT/share/n; sleep 0.2; done"]}]}}"#,
    );
    // kill -9 in the middle: nothing registered; the next run builds cleanly.
    t.ok(["store", "stats"]);
    let mut child = t
        .cmd(["-q".as_ref(), "build".as_ref(), spec.as_os_str()])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(t.ok(["ls"]).trim(), "");
    // Two builds at once: both succeed with the same id, one artifact exists.
    let run = || {
        t.cmd(["-q".as_ref(), "build".as_ref(), spec.as_os_str()])
            .output()
            .unwrap()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(run);
        let b = s.spawn(run);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.status.success() && b.status.success(),
        "{} {}",
        stderr(&a),
        stderr(&b)
    );
    assert_eq!(a.stdout, b.stdout);
    let id = String::from_utf8(a.stdout).unwrap();
    assert_eq!(t.ok(["ls"]).lines().count(), 1);
    assert_eq!(t.ok(["cat", id.trim(), "share/n"]), "1\n2\n3\n4\n5\n");
    t.ok(["-q", "store", "verify"]);
    let view = t.store().join("view");
    assert!(wait_for(Duration::from_secs(2), || is_mounted(&view)));
}
