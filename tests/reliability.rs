//! Reliability of the store under concurrent first use and hostile local users.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{ensure_test_user, run_ok, sample_tree, stderr, wait_for, TestStore};

#[test]
fn concurrent_first_use_of_a_new_store_succeeds() {
    const PROCESSES: usize = 8;
    // The race hit a few rounds in a hundred before creation was serialised.
    const ROUNDS: usize = 50;
    let t = TestStore::new();
    // Enough files that the adds overlap with each other's index creation.
    let src = t.path("src");
    fs::create_dir_all(src.join("lib")).unwrap();
    for i in 0..40 {
        fs::write(src.join("lib").join(format!("f{i}")), format!("{i}\n")).unwrap();
    }
    for round in 0..ROUNDS {
        let store = t.path(&format!("store-{round}"));
        let children: Vec<_> = (0..PROCESSES)
            .map(|i| {
                Command::new(crate::util::hdist_bin())
                    .arg("--store")
                    .arg(&store)
                    .args(["-q", "store", "add"])
                    .arg(&src)
                    .args(["--name", &format!("n{i}")])
                    .env_remove("HDIST_STORE")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn hdist")
            })
            .collect();
        let failures: Vec<String> = children
            .into_iter()
            .map(|child| child.wait_with_output().expect("wait for hdist"))
            .filter(|out| !out.status.success())
            .map(|out| stderr(&out))
            .collect();
        assert!(
            failures.is_empty(),
            "round {round}: {} of {PROCESSES} adds failed on a new store:\n{}",
            failures.len(),
            failures.join("\n")
        );
        let listing = run_ok(
            Command::new(crate::util::hdist_bin())
                .arg("--store")
                .arg(&store)
                .arg("ls"),
        );
        for i in 0..PROCESSES {
            assert!(listing.contains(&format!("n{i}/")), "n{i} not listed:\n{listing}");
        }
        run_ok(
            Command::new(crate::util::hdist_bin())
                .arg("--store")
                .arg(&store)
                .args(["-q", "store", "verify"]),
        );
    }
}

/// Every path under `root` (itself included) with its mode bits.
fn modes_under(root: &Path) -> Vec<(std::path::PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        out.push((path.clone(), meta.mode() & 0o7777, meta.is_dir()));
        if meta.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    out
}

#[test]
fn store_modes_ignore_the_umask_and_lock_files_are_private() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root to create the test user");
        return;
    }
    let user = ensure_test_user();
    let t = TestStore::new();
    // The temp dir is 0700; the other user must be able to reach the store to try its files.
    fs::set_permissions(t.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let src = t.path("src");
    sample_tree(&src);
    let store = t.store();
    let under_umask_000 = |args: &str| {
        let script = format!("umask 000; exec \"$0\" --store \"$1\" {args}");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg(crate::util::hdist_bin())
            .arg(&store)
            .env_remove("HDIST_STORE");
        cmd
    };
    run_ok(&mut under_umask_000(&format!(
        "-q store add {} --name open",
        src.display()
    )));
    run_ok(&mut under_umask_000("-q gc"));
    run_ok(&mut under_umask_000(&format!(
        "-q store add {} --name again",
        src.display()
    )));

    let modes = modes_under(&store);
    let writable: Vec<_> = modes.iter().filter(|(_, mode, _)| mode & 0o002 != 0).collect();
    assert!(
        writable.is_empty(),
        "world-writable under umask 000: {writable:?}"
    );
    let locks: Vec<_> = modes
        .iter()
        .filter(|(path, _, is_dir)| !is_dir && path.extension().is_some_and(|e| e == "lock"))
        .collect();
    assert!(
        locks.iter().any(|(path, _, _)| path.ends_with("gc.lock")),
        "no gc.lock among {modes:?}"
    );
    let open_locks: Vec<_> = locks.iter().filter(|(_, mode, _)| *mode != 0o600).collect();
    assert!(open_locks.is_empty(), "lock files not 0600: {open_locks:?}");

    let gc_lock = store.join("gc.lock");
    let as_user = |program: &str| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", user, "--regid", user, "--init-groups", "--", program]);
        cmd
    };
    let out = as_user("sh")
        .arg("-c")
        .arg("exec 9<\"$0\"")
        .arg(&gc_lock)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{user} could open {}", gc_lock.display());
    assert!(
        stderr(&out).contains("ermission denied"),
        "expected permission denied: {}",
        stderr(&out)
    );

    // The other user tries to hold the GC lock; root's add must not wait for it.
    let mut holder = as_user("flock")
        .arg(&gc_lock)
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Time to either take the lock or fail to open it.
    wait_for(Duration::from_millis(500), || {
        holder.try_wait().unwrap().is_some()
    });
    let started = Instant::now();
    let mut add = under_umask_000(&format!("-q store add {} --name later", src.display()));
    let mut add = add.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let finished = wait_for(Duration::from_secs(10), || add.try_wait().unwrap().is_some());
    if !finished {
        let _ = add.kill();
    }
    let _ = holder.kill();
    let _ = holder.wait();
    let status = add.wait().unwrap();
    assert!(
        finished,
        "store add blocked for {:?} by {user}'s lock",
        started.elapsed()
    );
    assert!(status.success(), "store add failed: {status}");
}
