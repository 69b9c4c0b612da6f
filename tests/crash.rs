//! Crash-point tests: every writer (`store add` of a real tree, a build, `profile create`,
//! `gc`, `publish`) is killed with SIGKILL at each commit step it passes (the named points of
//! `hdist_store::crashpoint`, at their first, middle and last hit) and after a range of
//! delays. After each kill: `store verify`, the writer's own check of the crashed state (for
//! `store add`, a `gc` first: an artifact is then whole or gone), the writer run again,
//! `store verify` again, and the exports compared byte for byte with those of a copy of the
//! same store where the writer never crashed.
//!
//! Every run starts from a copy of one prepared store, so kills are independent. Each test
//! prints how many kill points it covered and how long they took.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hdist_store::crashpoint::{CRASH_AT_VAR, CRASH_TRACE_VAR};

use crate::util::{
    corpus, fuse_available, is_mounted, run_ok, sample_tree, snapshot, stderr, view_guard, MountGuard,
    TestStore,
};

/// A tree as `util::snapshot` describes it: path -> kind, size, content digest, exec bit.
type Snapshot = BTreeMap<Vec<u8>, String>;

/// What a store shows after a writer ran: named snapshots, compared between stores.
type Exports = BTreeMap<String, Snapshot>;

/// How a run of a writer is stopped.
#[derive(Debug, Clone)]
enum Kill {
    /// SIGKILL from inside, at the N-th hit (from 1) of a named crash point.
    At(String, u64),
    /// SIGKILL from the test after a delay (the writer may have finished by then).
    After(Duration),
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kill::At(point, n) => write!(f, "{point}:{n}"),
            Kill::After(delay) => write!(f, "after {delay:?}"),
        }
    }
}

/// One writer and the store it starts from.
struct Writer<'a> {
    /// For messages.
    what: &'static str,
    /// The prepared state (store and anything beside it), copied for every run.
    template: &'a TestStore,
    /// The writer's arguments, given the copy it runs in.
    args: &'a dyn Fn(&TestStore) -> Vec<OsString>,
    /// Crash points the writer must pass (so a lost hook fails the test).
    expected_points: &'a [&'a str],
    /// Kills by delay, spread evenly over the writer's uncrashed run time.
    delay_kills: u32,
    /// Checks the crashed copy before the writer runs again (after `store verify` passed).
    after_crash: &'a dyn Fn(&TestStore),
    /// What the store shows once the writer completed.
    exports: &'a dyn Fn(&TestStore) -> Exports,
}

/// A copy of `template` (its whole directory) in a new temporary directory.
fn copy_of(template: &TestStore) -> TestStore {
    let copy = TestStore::new();
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(template.dir.path().join("."))
            .arg(copy.dir.path()),
    );
    copy
}

/// Runs the writer to completion, logging the crash points it passes; returns each point with
/// its number of hits, and the run's duration.
fn traced_run(writer: &Writer, t: &TestStore) -> (BTreeMap<String, u64>, Duration) {
    let trace = t.path("crash-trace");
    let start = Instant::now();
    run_ok(t.cmd((writer.args)(t)).env(CRASH_TRACE_VAR, &trace));
    let elapsed = start.elapsed();
    let mut hits = BTreeMap::new();
    for line in fs::read_to_string(&trace).unwrap_or_default().lines() {
        *hits.entry(line.to_string()).or_insert(0) += 1;
    }
    fs::remove_file(&trace).ok();
    (hits, elapsed)
}

/// The kills a writer gets: each point it passes at its first, middle and last hit, and
/// `delays` delays spread over `duration`.
fn kills_for(hits: &BTreeMap<String, u64>, duration: Duration, delays: u32) -> Vec<Kill> {
    let mut kills = Vec::new();
    for (point, &count) in hits {
        let mut nths = vec![1, count.div_ceil(2), count];
        nths.dedup();
        kills.extend(nths.into_iter().map(|n| Kill::At(point.clone(), n)));
    }
    for k in 1..=delays {
        kills.push(Kill::After(duration * k / (delays + 1)));
    }
    kills
}

/// Runs the writer in `t` and stops it as `kill` says. Panics if a crash point was never
/// reached (the writer then exits by itself).
fn run_killed(writer: &Writer, t: &TestStore, kill: &Kill) {
    let mut cmd = t.cmd((writer.args)(t));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    match kill {
        Kill::At(point, n) => {
            let out = cmd.env(CRASH_AT_VAR, format!("{point}:{n}")).output().unwrap();
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGKILL),
                "{} was not killed at {kill} ({:?}): {}",
                writer.what,
                out.status,
                stderr(&out)
            );
        }
        Kill::After(delay) => {
            let mut child = cmd.spawn().unwrap();
            std::thread::sleep(*delay);
            // The child we started, by its PID (std sends SIGKILL); it may have exited already.
            let _ = child.kill();
            child.wait().unwrap();
        }
    }
}

/// `hdist store verify`, with its report in the panic message.
fn verify(t: &TestStore, when: &str) {
    let out = t.cmd(["store", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "store verify {when} failed ({:?}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// Kills the writer at every point it passes and after a range of delays; after each kill
/// the store must verify, pass `after_crash`, take the writer again and show exactly what
/// an uncrashed run shows. Returns the number of kills.
fn crash_everywhere(writer: &Writer) -> usize {
    let reference = copy_of(writer.template);
    let reference_view = view_guard(&reference);
    let (hits, duration) = traced_run(writer, &reference);
    for point in writer.expected_points {
        assert!(
            hits.contains_key(*point),
            "{} never passed crash point {point}; it passed {hits:?}",
            writer.what
        );
    }
    let expected = (writer.exports)(&reference);
    drop(reference_view);
    drop(reference);
    let kills = kills_for(&hits, duration, writer.delay_kills);
    let start = Instant::now();
    let mut failures = Vec::new();
    for kill in &kills {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let t = copy_of(writer.template);
            let _view = view_guard(&t);
            run_killed(writer, &t, kill);
            verify(&t, "after the kill");
            (writer.after_crash)(&t);
            run_ok(&mut t.cmd((writer.args)(&t)));
            verify(&t, "after the writer ran again");
            let shown = (writer.exports)(&t);
            if let Some(difference) = first_difference(&expected, &shown) {
                panic!("exports differ from an uncrashed run: {difference}");
            }
        }));
        if let Err(panic) = outcome {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("killed at {kill}: {message}"));
        }
    }
    eprintln!(
        "{}: {} kills ({} at crash points, {} by delay over {duration:?}) in {:?}",
        writer.what,
        kills.len(),
        kills.len() - writer.delay_kills as usize,
        writer.delay_kills,
        start.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{}: {} of {} kills left a store that did not recover:\n{}",
        writer.what,
        failures.len(),
        kills.len(),
        failures.join("\n")
    );
    kills.len()
}

/// The first path at which two sets of exports differ, described.
fn first_difference(expected: &Exports, shown: &Exports) -> Option<String> {
    for (name, want) in expected {
        let Some(got) = shown.get(name) else {
            return Some(format!("{name} is missing"));
        };
        for (path, description) in want {
            match got.get(path) {
                Some(d) if d == description => {}
                other => {
                    return Some(format!(
                        "{name}: {:?} is {other:?}, expected {description}",
                        String::from_utf8_lossy(path)
                    ))
                }
            }
        }
        if let Some(extra) = got.keys().find(|p| !want.contains_key(*p)) {
            return Some(format!("{name}: unexpected {:?}", String::from_utf8_lossy(extra)));
        }
    }
    shown
        .keys()
        .find(|name| !expected.contains_key(*name))
        .map(|name| format!("unexpected {name}"))
}

/// `hdist export ID` into a fresh directory, as a snapshot.
fn export(t: &TestStore, id: &str) -> Snapshot {
    let dest = tempfile::tempdir_in(t.dir.path()).unwrap().keep().join("out");
    t.ok(["-q".as_ref(), "export".as_ref(), id.as_ref(), dest.as_os_str()]);
    let shown = snapshot(&dest);
    fs::remove_dir_all(dest.parent().unwrap()).unwrap();
    shown
}

/// `hdist profile export NAME` into a fresh directory, as a snapshot.
fn export_profile(t: &TestStore, name: &str) -> Snapshot {
    let dest = tempfile::tempdir_in(t.dir.path()).unwrap().keep().join("out");
    t.ok([
        "profile".as_ref(),
        "export".as_ref(),
        name.as_ref(),
        dest.as_os_str(),
    ]);
    let shown = snapshot(&dest);
    fs::remove_dir_all(dest.parent().unwrap()).unwrap();
    shown
}

/// The artifact ids `hdist ls` lists, as a snapshot (one entry per id).
fn listed(t: &TestStore) -> Snapshot {
    t.ok(["ls"])
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(|id| (id.as_bytes().to_vec(), "listed".to_string()))
        .collect()
}

/// GNU hello's source tree, unpacked from the Debian tarball of the corpus into `dir`.
pub(crate) fn hello_tree(dir: &Path) -> Option<PathBuf> {
    let tarball = corpus("debsrc")?.join("hello_2.10.orig.tar.gz");
    fs::create_dir_all(dir).unwrap();
    run_ok(Command::new("tar").arg("-xzf").arg(&tarball).arg("-C").arg(dir));
    Some(dir.join("hello-2.10"))
}

/// The artifact `id` after a crash and a GC: either whole (it exports as `source`) or gone
/// (unlisted, its document removed, and `export` says there is no such artifact).
fn whole_or_gone(t: &TestStore, id: &str, source: &Snapshot) {
    let document = {
        let (name, hash) = id.split_once('/').unwrap();
        t.store()
            .join("artifacts")
            .join(name)
            .join(format!("{hash}.json"))
    };
    let dest = t.path("whole-or-gone");
    let out = t
        .cmd(["-q".as_ref(), "export".as_ref(), id.as_ref(), dest.as_os_str()])
        .output()
        .unwrap();
    if out.status.success() {
        assert!(
            snapshot(&dest) == *source,
            "{id} exports, but not as the tree that was added"
        );
        fs::remove_dir_all(&dest).unwrap();
    } else {
        assert!(
            !document.exists() && stderr(&out).contains("no artifact"),
            "{id} is neither whole nor gone: its document {} is {}, and export fails: {}",
            document.display(),
            if document.exists() { "there" } else { "gone" },
            stderr(&out)
        );
        assert!(
            !listed(t).contains_key(id.as_bytes()),
            "{id} is listed but cannot be exported"
        );
    }
}

/// A store with a small artifact in profile `base` (so GC has something to keep), and GNU
/// hello's source tree beside it; returns the store, the tree, and the small artifact's id.
fn store_with_base(inputs: &TestStore) -> Option<(TestStore, PathBuf, String)> {
    let hello = hello_tree(&inputs.path("hello"))?;
    let sample = inputs.path("sample");
    sample_tree(&sample);
    let template = TestStore::new();
    let base = template.add(&sample, "sample");
    template.ok(["profile", "create", "base", &base]);
    Some((template, hello, base))
}

/// Command-line words as arguments.
fn words(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

/// `profile export` of each named profile.
fn profiles_shown(t: &TestStore, names: &[&str]) -> Exports {
    names
        .iter()
        .map(|name| (name.to_string(), export_profile(t, name)))
        .collect()
}

/// [`store_with_base`], with GNU hello's tree added as well; returns its id too.
fn store_with_hello(inputs: &TestStore) -> Option<(TestStore, PathBuf, String, String)> {
    let (template, hello, base) = store_with_base(inputs)?;
    let hello_id = template.ok(add_args(&hello)).trim().to_string();
    Some((template, hello, base, hello_id))
}

fn add_args(hello: &Path) -> Vec<OsString> {
    ["-q", "store", "add"]
        .into_iter()
        .map(OsString::from)
        .chain([hello.as_os_str().to_owned()])
        .chain(["--name", "hello", "--version", "2.10"].map(OsString::from))
        .collect()
}

#[test]
fn store_add_killed_at_every_commit_step_recovers_even_through_gc() {
    let inputs = TestStore::new();
    let Some((template, hello, base)) = store_with_base(&inputs) else {
        return;
    };
    let source = snapshot(&hello);
    // The id the add gives (adding is deterministic), from a throwaway copy.
    let hello_id = copy_of(&template).ok(add_args(&hello)).trim().to_string();
    let args = |_: &TestStore| add_args(&hello);
    let after_crash = |t: &TestStore| {
        // The sequence of the issue: a crash at the commit point, then GC.
        t.ok(["-q", "gc"]);
        verify(t, "after gc");
        whole_or_gone(t, &hello_id, &source);
    };
    let exports = |t: &TestStore| {
        Exports::from([
            ("ls".to_string(), listed(t)),
            ("hello".to_string(), export(t, &hello_id)),
            ("sample".to_string(), export(t, &base)),
        ])
    };
    crash_everywhere(&Writer {
        what: "store add",
        template: &template,
        args: &args,
        expected_points: &[
            "objects.staged",
            "objects.renamed",
            "objects.durable",
            "atomic.synced",
            "add.document",
            "add.indexed",
        ],
        delay_kills: 5,
        after_crash: &after_crash,
        exports: &exports,
    });
}

#[test]
fn gc_after_store_add_killed_at_its_commit_point_leaves_the_artifact_whole_or_gone() {
    let inputs = TestStore::new();
    let Some((t, hello, _)) = store_with_base(&inputs) else {
        return;
    };
    // Killed after the artifact document (the commit point), before the index row.
    let out = t
        .cmd(add_args(&hello))
        .env(CRASH_AT_VAR, "add.document")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{}", stderr(&out));
    let documents: Vec<_> = fs::read_dir(t.store().join("artifacts/hello"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(documents.len(), 1, "{documents:?}");
    let id = format!("hello/{}", documents[0].trim_end_matches(".json"));
    t.ok(["-q", "gc"]);
    verify(&t, "after gc");
    whole_or_gone(&t, &id, &snapshot(&hello));
    // And the add, run again, completes it.
    assert_eq!(t.ok(add_args(&hello)).trim(), id);
    verify(&t, "after the add ran again");
    assert!(export(&t, &id) == snapshot(&hello));
}

/// A build that copies GNU hello's unpacked sources (a real tree of a few hundred files) into
/// its artifact.
const COPY_BUILD: &str = r#"{"name": "hellocopy", "sources": [{"key": "tar.gz:ghqgme32sythn2e7nhi3mu4c32k2p335", "target": "."}],
  "build": {"commands": [
    {"set": "PATH", "value": "/usr/bin:/bin"},
    {"hit": ["build-unpack-sources"]},
    {"cmd": ["sh", "-c", "mkdir -p $ARTIFACT/src && cp -R . $ARTIFACT/src/"]}]}}"#;

#[test]
fn build_killed_at_every_commit_step_recovers() {
    if !fuse_available() {
        return;
    }
    let Some(debsrc) = corpus("debsrc") else {
        return;
    };
    let template = TestStore::new();
    template.ok([
        "-q".as_ref(),
        "fetch".as_ref(),
        debsrc.join("hello_2.10.orig.tar.gz").as_os_str(),
    ]);
    let spec = template.path("hellocopy.json");
    fs::write(&spec, COPY_BUILD).unwrap();
    let id = template.ok(["id".as_ref(), spec.as_os_str()]).trim().to_string();
    let args = |t: &TestStore| {
        vec![
            OsString::from("-q"),
            OsString::from("build"),
            t.path("hellocopy.json").into_os_string(),
        ]
    };
    let exports = |t: &TestStore| {
        Exports::from([
            ("ls".to_string(), listed(t)),
            ("hellocopy".to_string(), export(t, &id)),
        ])
    };
    crash_everywhere(&Writer {
        what: "build",
        template: &template,
        args: &args,
        expected_points: &[
            "objects.staged",
            "objects.renamed",
            "objects.durable",
            "atomic.synced",
            "build.document",
            "build.indexed",
        ],
        delay_kills: 2,
        after_crash: &|_| {},
        exports: &exports,
    });
}

#[test]
fn profile_create_killed_at_every_commit_step_recovers() {
    let inputs = TestStore::new();
    let Some((template, _, base, hello_id)) = store_with_hello(&inputs) else {
        return;
    };
    template.ok(["profile", "create", "p", &base]);
    let before = export_profile(&template, "p");
    let args = |_: &TestStore| words(&["profile", "create", "p", &hello_id, &base]);
    let exports = |t: &TestStore| profiles_shown(t, &["p", "base"]);
    let after = {
        let t = copy_of(&template);
        t.ok(args(&t));
        export_profile(&t, "p")
    };
    crash_everywhere(&Writer {
        what: "profile create",
        template: &template,
        args: &args,
        expected_points: &[
            "objects.durable",
            "profile.generation",
            "atomic.synced",
            "profile.switched",
        ],
        delay_kills: 3,
        after_crash: &|t| {
            let shown = export_profile(t, "p");
            assert!(
                shown == before || shown == after,
                "profile p shows neither its old generation nor its new one"
            );
        },
        exports: &exports,
    });
}

#[test]
fn gc_killed_at_every_step_recovers() {
    let inputs = TestStore::new();
    let Some((template, hello, base, hello_id)) = store_with_hello(&inputs) else {
        return;
    };
    // hello only in an old generation of p: GC with --keep-generations 0 removes that
    // generation, the artifact and its objects.
    template.ok(["profile", "create", "p", &hello_id]);
    template.ok(["profile", "create", "p", &base]);
    let source = snapshot(&hello);
    let args = |_: &TestStore| words(&["-q", "gc", "--keep-generations", "0"]);
    let exports = |t: &TestStore| {
        let mut shown = profiles_shown(t, &["p", "base"]);
        shown.insert("ls".to_string(), listed(t));
        shown
    };
    crash_everywhere(&Writer {
        what: "gc",
        template: &template,
        args: &args,
        expected_points: &["gc.marked", "gc.metadata-removed", "gc.object-removed"],
        delay_kills: 3,
        after_crash: &|t| whole_or_gone(t, &hello_id, &source),
        exports: &exports,
    });
}

/// The signed manifest of a published directory, verified with the store's key.
fn published_manifest(t: &TestStore, dir: &Path) -> hdist_store::remote::Manifest {
    let key: hdist_store::remote::PublicKey = t.ok(["key", "show"]).trim().parse().unwrap();
    let bytes = fs::read(dir.join("manifest.json")).unwrap();
    hdist_store::remote::Manifest::verify(&bytes, &key, "the published directory").unwrap()
}

/// What a node sees: profile `name` through a remote mount of the published directory,
/// served over HTTP, with a new cache; as a snapshot.
fn remote_view(t: &TestStore, published: &Path, name: &str) -> Snapshot {
    let server = crate::http_server::HttpServer::start(published);
    let key = t.ok(["key", "show"]).trim().to_string();
    let dir = tempfile::tempdir_in(t.dir.path()).unwrap();
    let mnt = dir.path().join("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard::new(&mnt);
    run_ok(
        Command::new(crate::util::hdist_bin())
            .args([
                "mount",
                "--remote",
                &server.base(),
                "--key",
                &key,
                "--timeout",
                "2",
            ])
            .arg("--cache")
            .arg(dir.path().join("cache"))
            .arg(name)
            .arg(&mnt)
            .env("HOME", dir.path()),
    );
    assert!(is_mounted(&mnt), "the remote mount of {name} is not up");
    snapshot(&mnt)
}

#[test]
fn publish_killed_at_every_step_recovers() {
    if !fuse_available() {
        return;
    }
    let inputs = TestStore::new();
    let Some((template, hello, base)) = store_with_base(&inputs) else {
        return;
    };
    // Published once with `base`; then `p` (hello and the base artifact) is new.
    template.ok(["-q", "key", "generate"]);
    let published = template.path("pub");
    template.ok([
        "-q".as_ref(),
        "publish".as_ref(),
        "--to".as_ref(),
        published.as_os_str(),
    ]);
    let hello_id = template.ok(add_args(&hello)).trim().to_string();
    template.ok(["profile", "create", "p", &hello_id, &base]);
    let args = |t: &TestStore| {
        vec![
            OsString::from("-q"),
            OsString::from("publish"),
            OsString::from("--to"),
            t.path("pub").into_os_string(),
        ]
    };
    let exports = |t: &TestStore| {
        let manifest = published_manifest(t, &t.path("pub"));
        let names = |entries: Vec<String>| -> Snapshot {
            entries
                .into_iter()
                .map(|e| (e.into_bytes(), "named".to_string()))
                .collect()
        };
        Exports::from([
            // Every published object, byte for byte (they never change once written).
            ("objects".to_string(), snapshot(&t.path("pub/objects"))),
            (
                "manifest profiles".to_string(),
                names(
                    manifest
                        .profiles
                        .iter()
                        .map(|(n, p)| format!("{n} {p:?}"))
                        .collect(),
                ),
            ),
            (
                "manifest artifacts".to_string(),
                names(
                    manifest
                        .artifacts
                        .iter()
                        .map(|(n, a)| format!("{n} {a:?}"))
                        .collect(),
                ),
            ),
        ])
    };
    crash_everywhere(&Writer {
        what: "publish",
        template: &template,
        args: &args,
        expected_points: &[
            "publish.staged",
            "publish.object-renamed",
            "publish.objects-durable",
            "publish.manifest",
        ],
        delay_kills: 3,
        after_crash: &|t| {
            // A node sees the old manifest or the new one, with all of its objects.
            let published = t.path("pub");
            let manifest = published_manifest(t, &published);
            assert!(
                matches!(manifest.serial, 1 | 2),
                "serial {} after one interrupted publish",
                manifest.serial
            );
            for name in manifest.profiles.keys() {
                assert!(
                    remote_view(t, &published, name) == export_profile(t, name),
                    "profile {name} as a node sees it differs from the store's"
                );
            }
        },
        exports: &exports,
    });
}
