//! Concurrency stress: many processes creating one new store at once, with a mix of first
//! commands; then, on one store, concurrent `store add` of overlapping real trees, builds,
//! profile creation and switching, and GC, in loops, while a FUSE mount of a profile is read
//! in a loop. Every command must succeed and none may print "database is locked"; afterwards
//! the store verifies and every artifact exports exactly as its source.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::util::{fuse_available, mount, sample_tree, snapshot, stderr, view_guard, TestStore};

/// Processes that open the new store at once, per round.
const CREATORS: usize = 8;
/// Rounds of concurrent creation, each on a new store (the race of first use hit about one
/// process in twenty before creation was serialised).
const CREATION_ROUNDS: usize = 10;
/// How long the mixed writers run on one store (each finishes the command it started).
const MIXED_PHASE: Duration = Duration::from_secs(15);
/// `store add` loops, one per overlapping tree.
const ADDERS: usize = 3;

/// What every command of the stress test must avoid printing.
const LOCKED: &str = "database is locked";

/// Outputs of the commands the workers ran that failed or complained of a locked index.
#[derive(Default)]
struct Failures(Mutex<Vec<String>>);

impl Failures {
    /// Runs `cmd`, recording it as failed unless it exits 0 without a locked-index message.
    /// Returns its output.
    fn run(&self, what: &str, cmd: &mut Command) -> Output {
        let out = cmd.stdin(Stdio::null()).output().expect("run hdist");
        self.check(what, &out);
        out
    }

    fn check(&self, what: &str, out: &Output) {
        let err = stderr(out);
        if !out.status.success() || err.contains(LOCKED) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{what} ({:?}): {err}", out.status));
        }
    }

    fn assert_none(&self, phase: &str) {
        let failures = self.0.lock().unwrap();
        assert!(
            failures.is_empty(),
            "{phase}: {} commands failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
}

/// GNU hello's source tree (from the corpus) with one file of its own: `variant` trees share
/// every other file.
fn hello_variant(inputs: &TestStore, variant: usize) -> Option<PathBuf> {
    let root = crate::crash::hello_tree(&inputs.path(&format!("tree{variant}")))?;
    fs::write(root.join("VARIANT"), format!("variant {variant}\n")).unwrap();
    Some(root)
}

#[test]
fn many_processes_creating_one_store_and_mixed_writers_with_a_reading_mount() {
    if !fuse_available() {
        return;
    }
    let inputs = TestStore::new();
    let Some(trees) = (0..ADDERS)
        .map(|k| hello_variant(&inputs, k))
        .collect::<Option<Vec<PathBuf>>>()
    else {
        return;
    };
    let failures = Failures::default();
    let start = Instant::now();

    // Phase 1: the first use of a store, by eight processes at once, each with another
    // command (writers of a small tree, readers, GC).
    let small = inputs.path("small");
    sample_tree(&small);
    for round in 0..CREATION_ROUNDS {
        let t = TestStore::new();
        let children: Vec<_> = (0..CREATORS)
            .map(|i| {
                let name = format!("n{i}");
                let args: Vec<&std::ffi::OsStr> = match i % 4 {
                    0 | 1 => vec![
                        "-q".as_ref(),
                        "store".as_ref(),
                        "add".as_ref(),
                        small.as_os_str(),
                        "--name".as_ref(),
                        name.as_ref(),
                    ],
                    2 => vec!["ls".as_ref()],
                    _ => vec!["-q".as_ref(), "gc".as_ref()],
                };
                let child = t
                    .cmd(args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn hdist");
                (format!("round {round}: creator {i}"), child)
            })
            .collect();
        for (what, child) in children {
            failures.check(&what, &child.wait_with_output().unwrap());
        }
        failures.assert_none("concurrent creation");
        failures.run(
            &format!("round {round}: verify"),
            &mut t.cmd(["-q", "store", "verify"]),
        );
        // The concurrent GCs may have removed an added artifact (nothing refers to it); what
        // is listed exports exactly as its tree.
        for id in t.ok(["ls"]).lines().filter_map(|l| l.split_whitespace().next()) {
            let i: usize = id
                .split('/')
                .next()
                .unwrap()
                .trim_start_matches('n')
                .parse()
                .unwrap();
            let dest = t.path(&format!("export-{i}"));
            t.ok(["-q".as_ref(), "export".as_ref(), id.as_ref(), dest.as_os_str()]);
            let tree = &trees[i % ADDERS];
            assert!(
                snapshot(&dest) == snapshot(tree),
                "round {round}: {id} exports differently"
            );
        }
    }
    failures.assert_none("concurrent creation");
    let creation = start.elapsed();

    // Phase 2: one store, every kind of writer at once, and a mount read throughout.
    let t = TestStore::new();
    let _view = view_guard(&t);
    let base = t.add(&trees[0], "base");
    t.ok(["profile", "create", "m", &base]);
    t.ok(["profile", "create", "s", &base]);
    let mnt = t.path("mnt");
    let _mount = mount(&t, "m", &mnt);
    let expected_view = snapshot(&trees[0]);
    let deadline = Instant::now() + MIXED_PHASE;
    let counts: BTreeMap<&str, AtomicU64> = ["add", "build", "profile", "gc", "mount read"]
        .into_iter()
        .map(|k| (k, AtomicU64::new(0)))
        .collect();
    let spec_dir = t.path("specs");
    fs::create_dir_all(&spec_dir).unwrap();
    std::thread::scope(|s| {
        for (k, tree) in trees.iter().enumerate() {
            let (t, failures, counts) = (&t, &failures, &counts);
            s.spawn(move || {
                let mut i = 0;
                while Instant::now() < deadline {
                    // Versions repeat: some adds meet a document GC is about to remove.
                    let version = format!("v{}", i % 3);
                    failures.run(
                        &format!("add t{k} {version}"),
                        &mut t.cmd([
                            "-q".as_ref(),
                            "store".as_ref(),
                            "add".as_ref(),
                            tree.as_os_str(),
                            "--name".as_ref(),
                            format!("t{k}").as_ref(),
                            "--version".as_ref(),
                            version.as_ref(),
                        ]),
                    );
                    counts["add"].fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        s.spawn(|| {
            let mut i = 0;
            while Instant::now() < deadline {
                let spec = spec_dir.join(format!("stress{i}.json"));
                fs::write(
                    &spec,
                    format!(
                        r#"{{"name": "stress", "version": "{i}", "build": {{"commands": [
                            {{"set": "PATH", "value": "/usr/bin:/bin"}},
                            {{"cmd": ["sh", "-c", "mkdir -p $ARTIFACT/share && echo {i} > $ARTIFACT/share/n"]}}]}}}}"#
                    ),
                )
                .unwrap();
                failures.run(
                    &format!("build {}", spec.display()),
                    &mut t.cmd(["-q".as_ref(), "build".as_ref(), spec.as_os_str()]),
                );
                counts["build"].fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        });
        s.spawn(|| {
            while Instant::now() < deadline {
                // GC keeps every generation here, so switching back to 1 always works.
                failures.run("profile create s", &mut t.cmd(["profile", "create", "s", &base]));
                failures.run("profile rollback s", &mut t.cmd(["profile", "rollback", "s"]));
                failures.run("profile switch s 1", &mut t.cmd(["profile", "switch", "s", "1"]));
                failures.run("ls", &mut t.cmd(["ls"]));
                counts["profile"].fetch_add(1, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            while Instant::now() < deadline {
                failures.run("gc", &mut t.cmd(["-q", "gc"]));
                counts["gc"].fetch_add(1, Ordering::Relaxed);
            }
        });
        s.spawn(|| {
            while Instant::now() < deadline {
                if snapshot(&mnt) != expected_view {
                    failures
                        .0
                        .lock()
                        .unwrap()
                        .push("the mount of profile m showed other content".to_string());
                }
                counts["mount read"].fetch_add(1, Ordering::Relaxed);
            }
        });
    });
    failures.assert_none("mixed writers");
    let mixed = start.elapsed() - creation;
    let counts: BTreeMap<_, _> = counts
        .iter()
        .map(|(k, v)| (*k, v.load(Ordering::Relaxed)))
        .collect();
    assert!(
        counts.values().all(|&n| n > 0),
        "some worker never ran: {counts:?}"
    );

    // Afterwards: the store verifies and every artifact is exactly its source.
    failures.run("verify after the mixed phase", &mut t.cmd(["store", "verify"]));
    failures.assert_none("verify");
    let listing = t.ok(["ls"]);
    for id in listing.lines().filter_map(|l| l.split_whitespace().next()) {
        let dest = t.path(&format!("final-{}", id.replace('/', "-")));
        t.ok(["-q".as_ref(), "export".as_ref(), id.as_ref(), dest.as_os_str()]);
        let name = id.split('/').next().unwrap();
        let shown = snapshot(&dest);
        match name {
            "base" => assert!(shown == snapshot(&trees[0]), "{id} differs from its tree"),
            "stress" => {
                let record = t.ok(["cat", id, "share/n"]);
                assert!(
                    record.trim().parse::<u64>().is_ok(),
                    "{id}: share/n is {record:?}"
                );
            }
            _ => {
                let k: usize = name.trim_start_matches('t').parse().unwrap();
                assert!(shown == snapshot(&trees[k]), "{id} differs from its tree");
            }
        }
    }
    // And every tree, added once more, exports identically.
    for (k, tree) in trees.iter().enumerate() {
        let id = t.add(tree, &format!("again{k}"));
        let dest = t.path(&format!("again-{k}"));
        t.ok(["-q".as_ref(), "export".as_ref(), id.as_ref(), dest.as_os_str()]);
        assert!(snapshot(&dest) == snapshot(tree), "{id} differs from its tree");
    }
    eprintln!(
        "stress: {CREATION_ROUNDS} rounds of {CREATORS} creators in {creation:?}; mixed phase \
         {counts:?} in {mixed:?}; {} artifacts at the end; total {:?}",
        listing.lines().count(),
        start.elapsed()
    );
}
