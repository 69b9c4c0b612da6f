//! Remote mounts against a faulty server: the in-process fault server (`http_server.rs`)
//! serves a published store to a real FUSE mount, then dribbles, truncates, misstates
//! lengths, answers 500, sends endless bodies or stops answering. For each fault: an uncached
//! read gets EIO within the documented bound (`--timeout` × mirrors, see README), the failed
//! mirror is then skipped for the penalty (later reads fail at once, without a request),
//! cached files stay readable, and the mount's memory stays bounded.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::http_server::HttpServer;
use crate::util::{
    fuse_available, hdist_bin, is_mounted, proc_status_kib, run_ok, wait_for, MountGuard, TestStore,
};

/// `--timeout` of every mount here.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The documented bound on a failing uncached read with one mirror: `--timeout` × mirrors,
/// plus scheduling slack (the machine runs several builds at once).
const FIRST_FAILURE: Duration = Duration::from_millis(TIMEOUT.as_millis() as u64 + 2000);
/// A read while the only mirror is marked down: no network at all.
const FAST_FAILURE: Duration = Duration::from_millis(1000);
/// The mirror penalty (`MIRROR_PENALTY` in store/src/http/mod.rs).
const PENALTY: Duration = Duration::from_secs(5);
/// How long a test waits for a read before it calls it hung (the reader may stay blocked in
/// the kernel until the server is dropped).
const HANG: Duration = Duration::from_secs(20);
/// Files in the published profile; file 0 is read (cached) before any fault.
const FILES: usize = 8;
/// Size of each file (incompressible, so the object is about as large).
const FILE_SIZE: usize = 30_000;

/// A published store served by the fault server and mounted over HTTP. Fields drop in order:
/// the server stops first (ending every dribble or hang), then the mount goes, then the files.
struct Node {
    server: HttpServer,
    mnt: PathBuf,
    _guard: MountGuard,
    _store: TestStore,
}

fn content(i: usize) -> Vec<u8> {
    (0..FILE_SIZE as u32)
        .map(|n| ((n ^ (i as u32 * 7919)).wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect()
}

/// A store holding files `data/f0.bin` … as profile `p`, published and signed.
fn published() -> (TestStore, PathBuf, String) {
    let t = TestStore::new();
    let src = t.path("src");
    fs::create_dir_all(src.join("data")).unwrap();
    for i in 0..FILES {
        fs::write(src.join(format!("data/f{i}.bin")), content(i)).unwrap();
    }
    let id = t.add(&src, "faulty");
    t.ok(["profile", "create", "p", &id]);
    let key = t.ok(["key", "generate"]).trim().to_string();
    let out = t.path("pub");
    t.ok(["publish".as_ref(), "--to".as_ref(), out.as_os_str()]);
    (t, out, key)
}

/// `hdist mount --remote SERVER --key KEY --timeout … --cache … EXTRA… p MNT`, profile `p` of
/// the store published by `t` on `t`'s `mnt`.
fn mount_command(t: &TestStore, server: &HttpServer, key: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(hdist_bin());
    command
        .args(["mount", "--remote", &server.base(), "--key", key])
        .arg("--timeout")
        .arg(TIMEOUT.as_secs().to_string())
        .arg("--cache")
        .arg(t.path("cache"))
        .args(extra)
        .arg("p")
        .arg(t.path("mnt"))
        .env("HOME", t.dir.path());
    command
}

/// Publishes, serves and mounts (polling off: every request the server sees is a read's);
/// reads file 0 so that it is cached.
fn node() -> Option<Node> {
    if !fuse_available() {
        return None;
    }
    let (t, out, key) = published();
    let server = HttpServer::start(&out);
    let mnt = t.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let guard = MountGuard::new(&mnt);
    run_ok(&mut mount_command(&t, &server, &key, &["--poll", "0"]));
    assert!(is_mounted(&mnt));
    let node = Node {
        server,
        mnt,
        _guard: guard,
        _store: t,
    };
    assert_eq!(fs::read(node.file(0)).unwrap(), content(0));
    Some(node)
}

impl Node {
    fn file(&self, i: usize) -> PathBuf {
        self.mnt.join(format!("data/f{i}.bin"))
    }

    /// Reads file `i` on a thread and waits for it (at most [`HANG`]): the errno or the
    /// bytes, and how long the read took.
    fn timed_read(&self, i: usize) -> (Result<Vec<u8>, Option<i32>>, Duration) {
        let path = self.file(i);
        let (tx, rx) = mpsc::channel();
        let started = Instant::now();
        // Detached on purpose: a read stuck in the kernel ends when the server is dropped.
        std::thread::spawn(move || {
            let _ = tx.send(fs::read(&path).map_err(|e| e.raw_os_error()));
        });
        match rx.recv_timeout(HANG) {
            Ok(result) => (result, started.elapsed()),
            Err(_) => panic!("read of file {i} still blocked after {HANG:?}"),
        }
    }

    /// Reading file `i` gets EIO in less than `bound`; returns how long it took.
    fn assert_eio_within(&self, i: usize, bound: Duration, fault: &str) -> Duration {
        let (result, took) = self.timed_read(i);
        eprintln!("{fault}: file {i}: {:?} after {took:?}", result.as_ref().err());
        assert_eq!(
            result.err(),
            Some(Some(libc::EIO)),
            "{fault}: file {i} did not give EIO"
        );
        assert!(
            took < bound,
            "{fault}: EIO for file {i} took {took:?}, the bound is {bound:?}"
        );
        took
    }

    /// An uncached read gets EIO within [`FIRST_FAILURE`].
    fn assert_eio_within_bound(&self, i: usize, fault: &str) -> Duration {
        self.assert_eio_within(i, FIRST_FAILURE, fault)
    }

    /// Right after a failure the mirror is down: another uncached read fails at once and
    /// the server sees no request.
    fn assert_fails_fast_without_requests(&self, i: usize, fault: &str) {
        let before = self.server.requests();
        self.assert_eio_within(i, FAST_FAILURE, &format!("{fault} (mirror marked down)"));
        let during = self.server.requests() - before;
        assert_eq!(
            during, 0,
            "{fault}: the server got {during} request(s) while the mirror was marked down"
        );
    }

    /// The whole check for a fault that fails the mirror: file 1 gets EIO within the bound,
    /// file 2 at once without a request, file 0 (cached) still reads.
    fn assert_mirror_fault(&self, fault: &str) {
        self.assert_eio_within_bound(1, fault);
        self.assert_fails_fast_without_requests(2, fault);
        self.assert_cached_readable(fault);
    }

    /// File 0 (cached before the fault) still reads, quickly.
    fn assert_cached_readable(&self, fault: &str) {
        let (result, took) = self.timed_read(0);
        assert_eq!(
            result.ok(),
            Some(content(0)),
            "{fault}: the cached file is not readable"
        );
        assert!(took < FAST_FAILURE, "{fault}: the cached read took {took:?}");
    }

    /// The hdist daemon serving this mount (the pid its mount registered).
    fn daemon_pid(&self) -> u32 {
        let mnt = fs::canonicalize(&self.mnt).unwrap();
        hdist_fs::list_mounts()
            .unwrap()
            .into_iter()
            .find(|m| m.mountpoint == mnt)
            .and_then(|m| m.pid)
            .unwrap_or_else(|| panic!("no daemon serves {}", self.mnt.display()))
    }
}

/// Peak memory of the mount daemon allowed after endless bodies (it starts near 16 MiB).
const PEAK_LIMIT_KIB: u64 = 128 << 10;

impl Node {
    /// The daemon's peak resident memory (`VmHWM`) stayed under [`PEAK_LIMIT_KIB`].
    fn assert_peak_memory_bounded(&self, fault: &str) {
        let peak = proc_status_kib(self.daemon_pid(), "VmHWM");
        assert!(peak > 0, "{fault}: no VmHWM for the daemon");
        eprintln!("{fault}: daemon VmHWM {peak} KiB");
        assert!(
            peak < PEAK_LIMIT_KIB,
            "{fault}: the daemon peaked at {peak} KiB (limit {PEAK_LIMIT_KIB} KiB)"
        );
    }
}

#[test]
fn dribbled_body_gives_eio_within_the_deadline() {
    let Some(node) = node() else { return };
    // One byte every 20 ms: each read of the socket succeeds, only the total is too slow.
    node.server.dribble_next(1000, 1, Duration::from_millis(20));
    node.assert_mirror_fault("dribbled body");
}

#[test]
fn stopped_server_first_read_bounded_later_reads_fail_at_once_then_recover() {
    let Some(node) = node() else { return };
    node.server.pause();
    node.assert_eio_within_bound(1, "stopped server");
    let failed_at = Instant::now();
    node.assert_eio_within(2, FAST_FAILURE, "stopped server, later read");
    node.assert_cached_readable("stopped server");
    // Back, but the mirror is still marked down: reads keep failing at once until the
    // penalty expires, then they work again.
    node.server.resume();
    if failed_at.elapsed() < PENALTY - Duration::from_millis(500) {
        node.assert_eio_within(3, FAST_FAILURE, "server back, during the penalty");
    }
    assert!(
        wait_for(PENALTY * 2, || fs::read(node.file(3))
            .is_ok_and(|b| b == content(3))),
        "no recovery within {:?} of the server's return",
        PENALTY * 2
    );
    assert!(
        failed_at.elapsed() >= PENALTY - Duration::from_millis(500),
        "recovered after {:?}, before the penalty expired",
        failed_at.elapsed()
    );
}

#[test]
fn truncated_body_gives_eio_and_marks_the_mirror_down() {
    let Some(node) = node() else { return };
    node.server.truncate_next(1000);
    node.assert_mirror_fault("truncated body");
}

#[test]
fn server_errors_give_eio_and_mark_the_mirror_down() {
    let Some(node) = node() else { return };
    node.server.fail_next(1000);
    node.assert_mirror_fault("HTTP 500");
}

#[test]
fn wrong_content_length_gives_eio_within_the_deadline() {
    let Some(node) = node() else { return };
    // Announced too short: the body is cut at the announced length and refused as corrupt
    // (the server answered, so the mirror stays up and a later read asks again).
    node.server.misstate_length_next(1000, -100);
    node.assert_eio_within_bound(1, "Content-Length too short");
    node.assert_eio_within_bound(2, "Content-Length too short");
    node.assert_cached_readable("Content-Length too short");
    // Announced too long, the connection then silent: the deadline ends it.
    node.server.clear_faults();
    node.server.misstate_length_next(1000, 1000);
    node.assert_eio_within_bound(3, "Content-Length too long");
    node.assert_fails_fast_without_requests(4, "Content-Length too long");
    node.assert_cached_readable("Content-Length too long");
}

#[test]
fn endless_body_keeps_memory_bounded() {
    let Some(node) = node() else { return };
    node.server.endless_next(1000);
    for i in 1..=4 {
        node.assert_eio_within_bound(i, "endless body");
    }
    node.assert_peak_memory_bounded("endless body, four reads");
    node.assert_cached_readable("endless body");
}

#[test]
fn endless_decompression_bomb_keeps_memory_and_time_bounded() {
    let Some(node) = node() else { return };
    node.server.bomb_next(1000);
    node.assert_eio_within_bound(1, "endless zstd frame");
    node.assert_peak_memory_bounded("endless zstd frame");
    node.assert_cached_readable("endless zstd frame");
}

#[test]
fn dribbled_manifest_fails_the_mount_within_the_deadline() {
    if !fuse_available() {
        return;
    }
    let (t, out, key) = published();
    let server = HttpServer::start(&out);
    server.dribble_next(1000, 1, Duration::from_millis(20));
    let mnt = t.path("mnt");
    fs::create_dir_all(&mnt).unwrap();
    let _guard = MountGuard::new(&mnt);
    let started = Instant::now();
    let mut child = mount_command(&t, &server, &key, &["--foreground"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(HANG, || child.try_wait().unwrap().is_some());
    if !exited {
        // SAFETY: a plain signal to the child this test started, by its PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        panic!("mount with a dribbled manifest still waiting after {HANG:?}");
    }
    let took = started.elapsed();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "mounted from a dribbled manifest: {stderr}"
    );
    assert!(stderr.contains("manifest.json"), "{stderr}");
    assert!(
        took < FIRST_FAILURE + Duration::from_secs(1),
        "the mount gave up after {took:?}, the bound is {FIRST_FAILURE:?}"
    );
    assert!(!is_mounted(&mnt));
}
