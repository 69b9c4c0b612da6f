//! Small helpers shared by the integration tests.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The hdist binary under test.
pub fn hdist_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hdist"))
}

/// A fresh store in a temp directory, with a scratch area beside it.
pub struct TestStore {
    pub dir: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A path in the scratch area beside the store.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `hdist --store STORE ARGS…`, with a clean environment for the store location.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(hdist_bin());
        cmd.arg("--store").arg(self.store()).args(args);
        cmd.env_remove("HDIST_STORE");
        cmd
    }

    /// Runs and expects success; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_ok(&mut self.cmd(args))
    }

    /// Runs and expects failure; returns the output.
    pub fn fails<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let out = self.cmd(args).output().expect("run hdist");
        assert!(
            !out.status.success(),
            "expected failure, got success: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        out
    }

    /// Adds `dir` as an artifact and returns its id.
    pub fn add(&self, dir: &Path, name: &str) -> String {
        self.ok([
            "-q".as_ref(),
            "store".as_ref(),
            "add".as_ref(),
            dir.as_os_str(),
            "--name".as_ref(),
            name.as_ref(),
        ])
        .trim()
        .to_string()
    }

    /// `hdist store stats --json`.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(["store", "stats", "--json"])).expect("stats json")
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "command failed ({:?}): {:?}\nstdout: {}\nstderr: {}",
        out.status,
        cmd,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What a tree looks like, for comparisons: path -> description (kind, content digest or
/// target, exec bit). Owners and times are not compared.
pub fn snapshot(root: &Path) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<Vec<u8>, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir).expect("read_dir").map(|e| e.unwrap()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().as_os_str().as_bytes().to_vec();
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        if ft.is_dir() {
            out.insert(rel, "dir".into());
            walk(root, &path, out);
        } else if ft.is_symlink() {
            let target = fs::read_link(&path).unwrap();
            out.insert(rel, format!("link {:?}", target.as_os_str().as_bytes()));
        } else {
            let data = fs::read(&path).unwrap();
            let exec = meta.permissions().mode() & 0o111 != 0;
            out.insert(
                rel,
                format!(
                    "file {} {} exec={exec}",
                    data.len(),
                    hdist_store::Digest::of(&data)
                ),
            );
        }
    }
}

/// Where scripts/fetch-corpus.sh put real software (None if not fetched).
pub fn corpus(part: &str) -> Option<PathBuf> {
    let base = std::env::var_os("HDIST_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/corpus"));
    let path = base.join(part);
    if path.exists() {
        Some(path)
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "corpus part {part} missing under CI: scripts/test.sh runs scripts/fetch-corpus.sh"
        );
        eprintln!("skipping: corpus {part} not fetched (run scripts/fetch-corpus.sh)");
        None
    }
}

/// Whether FUSE tests can run. They may skip only where /dev/fuse is absent and CI is unset.
pub fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "/dev/fuse is missing under CI");
    eprintln!("skipping: /dev/fuse is absent");
    false
}

/// Unmounts on drop (even when the test panics).
pub struct MountGuard {
    pub dir: PathBuf,
}

impl MountGuard {
    pub fn new(dir: &Path) -> MountGuard {
        MountGuard {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if is_mounted(&self.dir) {
            // Quietly: for a mount that is not hdist's (a test's tmpfs) it refuses, and
            // umount(8) below removes it.
            let _ = Command::new(hdist_bin())
                .arg("umount")
                .arg(&self.dir)
                .stderr(std::process::Stdio::null())
                .status();
            if is_mounted(&self.dir) {
                let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
            }
        }
    }
}

/// Mounts `what` on `dir` (created if needed) with the daemonising CLI; returns the guard.
pub fn mount(t: &TestStore, what: &str, dir: &Path) -> MountGuard {
    fs::create_dir_all(dir).unwrap();
    let guard = MountGuard::new(dir);
    t.ok(["mount".as_ref(), what.as_ref(), dir.as_os_str()]);
    assert!(is_mounted(dir), "mount returned before the mount was up");
    guard
}

/// Whether `dir` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(dir) = fs::canonicalize(dir).or_else(|_| Ok::<_, ()>(dir.to_path_buf())) else {
        return false;
    };
    let text = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let wanted = dir.to_string_lossy().replace(' ', "\\040");
    text.lines().any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
}

/// The unprivileged local user the tests run things as (created on first use; needs root).
pub fn ensure_test_user() -> &'static str {
    let user = "hdisttest";
    if Command::new("id").arg(user).output().unwrap().status.code() != Some(0) {
        run_ok(Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", user]));
    }
    user
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, …); 0 if the process or field is gone.
pub fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `cond` holds or the timeout passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Writes a small synthetic tree with every kind of entry the store supports.
pub fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::create_dir_all(root.join("lib/empty")).unwrap();
    fs::create_dir_all(root.join("share/doc")).unwrap();
    fs::write(root.join("bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(root.join("lib/libx.so"), vec![7u8; 100_000]).unwrap();
    fs::write(root.join("share/doc/README"), b"hello\n").unwrap();
    fs::write(root.join("share/doc/empty"), b"").unwrap();
    fs::write(root.join("share/doc/copy"), b"hello\n").unwrap();
    // Same content and mtime: one inode on a mount.
    let written = fs::metadata(root.join("share/doc/README"))
        .unwrap()
        .modified()
        .unwrap();
    let copy = fs::File::options()
        .write(true)
        .open(root.join("share/doc/copy"))
        .unwrap();
    copy.set_modified(written).unwrap();
    std::os::unix::fs::symlink("libx.so", root.join("lib/libx.so.1")).unwrap();
    std::os::unix::fs::symlink("../nowhere/\u{e9}", root.join("share/dangling")).unwrap();
    let odd = std::ffi::OsStr::from_bytes(b"odd-\xff\xfe name");
    fs::write(root.join("share").join(odd), b"non-utf8 name").unwrap();
}

/// `tests/fixtures/specs/` of the repository: build specs of real software (GNU hello, zlib,
/// minigzip) that tests and benchmarks build.
pub fn specs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs")
}

/// A path under `tests/fixtures/` of the repository, e.g. `fixture("stacks/six.toml")`.
pub fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative)
}

/// Unmounts the store-wide view (`<store>/view`) that build commands mount on demand.
pub fn view_guard(t: &TestStore) -> MountGuard {
    MountGuard::new(&t.store().join("view"))
}

/// Writes `text` to a file in the test's scratch area and returns its path.
pub fn write_file(t: &TestStore, name: &str, text: &str) -> PathBuf {
    let path = t.path(name);
    fs::write(&path, text).unwrap();
    path
}
