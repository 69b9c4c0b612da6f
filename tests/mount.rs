//! Real FUSE mounts of profiles and artifacts.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{
    corpus, ensure_test_user, fuse_available, hdist_bin, is_mounted, mount, run_ok, sample_tree, snapshot,
    stderr, wait_for, MountGuard, TestStore,
};

/// A store with the sample tree as artifact `sample` and a profile `p` of it.
fn sample_store() -> (TestStore, PathBuf, String) {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let id = t.add(&src, "sample");
    t.ok(["profile", "create", "p", &id]);
    (t, src, id)
}

pub(crate) fn mountpoint(t: &TestStore, name: &str) -> PathBuf {
    let dir = t.path(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts a foreground daemon we own (so the test knows its pid) and waits for the mount.
fn mount_foreground(t: &TestStore, what: &str, dir: &Path) -> (MountGuard, Child) {
    let guard = MountGuard::new(dir);
    let child = t
        .cmd([
            "mount".as_ref(),
            what.as_ref(),
            dir.as_os_str(),
            "--foreground".as_ref(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || is_mounted(dir)),
        "foreground mount did not come up"
    );
    (guard, child)
}

fn errno_of(result: std::io::Result<impl Sized>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

#[test]
fn mounted_profile_matches_the_source_tree() {
    if !fuse_available() {
        return;
    }
    let (t, src, _) = sample_store();
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "p", &mnt);
    assert_eq!(snapshot(&src), snapshot(&mnt));
    let meta = fs::metadata(mnt.join("lib/libx.so")).unwrap();
    assert_eq!(meta.len(), 100_000);
    assert_eq!(meta.mode() & 0o222, 0, "no write bits");
    assert_eq!(meta.uid(), unsafe { libc::getuid() });
    assert_eq!(fs::metadata(mnt.join("bin/tool")).unwrap().mode() & 0o777, 0o555);
    // Identical content shares one inode (and so the page cache); stable across lookups.
    let a = fs::metadata(mnt.join("share/doc/README")).unwrap().ino();
    let b = fs::metadata(mnt.join("share/doc/copy")).unwrap().ino();
    assert_eq!(a, b);
    assert_eq!(fs::metadata(mnt.join("share/doc/README")).unwrap().ino(), a);
    // The mtime the file had when it was added.
    let added = fs::metadata(src.join("lib/libx.so")).unwrap();
    assert_eq!(
        (meta.mtime(), meta.mtime_nsec()),
        (added.mtime(), added.mtime_nsec())
    );
    // The digest xattr.
    let digest = xattr(&mnt.join("lib/libx.so"), "user.hdist.digest").unwrap();
    assert_eq!(
        digest,
        hdist_store::Digest::of(&[7u8; 100_000]).to_hex().into_bytes()
    );
    assert!(xattr(&mnt.join("lib/libx.so"), "user.other").is_err());
    // statfs answers.
    run_ok(Command::new("stat").arg("-f").arg(&mnt));
    // mmap works (shared libraries are mmapped).
    assert_eq!(mmap_sum(&mnt.join("lib/libx.so"), 1000), 7000);
    // Unknown paths: ENOENT.
    assert_eq!(errno_of(fs::metadata(mnt.join("nope"))), Some(libc::ENOENT));
    let listed = t.ok(["mounts"]);
    assert!(listed.contains("hdist:p"), "{listed}");
}

fn xattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::getxattr(
            c_path.as_ptr(),
            c_name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

#[test]
fn every_write_fails_with_erofs_and_the_store_is_unchanged() {
    if !fuse_available() {
        return;
    }
    let (t, _, _) = sample_store();
    let before = t.stats();
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "p", &mnt);
    let file = mnt.join("share/doc/README");
    let erofs = Some(libc::EROFS);
    assert_eq!(errno_of(fs::File::create(mnt.join("new"))), erofs, "create");
    assert_eq!(
        errno_of(fs::OpenOptions::new().write(true).open(&file)),
        erofs,
        "open for write"
    );
    assert_eq!(
        errno_of(fs::OpenOptions::new().append(true).open(&file)),
        erofs,
        "append"
    );
    let c_file = std::ffi::CString::new(file.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path string.
    assert_eq!(unsafe { libc::truncate(c_file.as_ptr(), 0) }, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs, "truncate");
    assert_eq!(errno_of(fs::remove_file(&file)), erofs, "unlink");
    assert_eq!(errno_of(fs::create_dir(mnt.join("d"))), erofs, "mkdir");
    assert_eq!(errno_of(fs::remove_dir(mnt.join("lib/empty"))), erofs, "rmdir");
    assert_eq!(
        errno_of(fs::set_permissions(&file, fs::Permissions::from_mode(0o777))),
        erofs,
        "chmod"
    );
    assert_eq!(errno_of(fs::rename(&file, mnt.join("share/x"))), erofs, "rename");
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", mnt.join("l"))),
        erofs,
        "symlink"
    );
    assert_eq!(errno_of(fs::hard_link(&file, mnt.join("h"))), erofs, "link");
    let name = std::ffi::CString::new("user.x").unwrap();
    // SAFETY: valid strings and a 1-byte value.
    let rc = unsafe { libc::setxattr(c_file.as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs, "setxattr");
    // SAFETY: valid strings.
    assert_eq!(unsafe { libc::removexattr(c_file.as_ptr(), name.as_ptr()) }, -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        erofs,
        "removexattr"
    );
    let c_fifo = std::ffi::CString::new(mnt.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: valid path string.
    assert_eq!(
        unsafe { libc::mknod(c_fifo.as_ptr(), libc::S_IFIFO | 0o644, 0) },
        -1
    );
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs, "mknod");
    // SAFETY: valid path string; a null `times` sets both to now.
    assert_eq!(unsafe { libc::utimes(c_file.as_ptr(), std::ptr::null()) }, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs, "utimes");
    assert_eq!(fs::read(&file).unwrap(), b"hello\n");
    let after = t.stats();
    assert_eq!(before["objects"], after["objects"]);
    assert_eq!(before["stored_bytes"], after["stored_bytes"]);
}

#[test]
fn union_first_artifact_wins_and_conflicts_are_listed() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let a = t.path("a");
    let b = t.path("b");
    fs::create_dir_all(a.join("bin")).unwrap();
    fs::create_dir_all(b.join("bin")).unwrap();
    fs::create_dir_all(b.join("share/b-only")).unwrap();
    fs::write(a.join("bin/tool"), b"from a").unwrap();
    fs::write(b.join("bin/tool"), b"from b").unwrap();
    fs::write(b.join("bin/other"), b"only b").unwrap();
    fs::write(b.join("share/b-only/f"), b"f").unwrap();
    let ida = t.add(&a, "a");
    let idb = t.add(&b, "b");
    t.ok(["profile", "create", "ab", &ida, &idb]);
    let conflicts = t.ok(["profile", "conflicts", "ab"]);
    assert_eq!(conflicts.trim(), format!("bin/tool\t{ida} > {idb}"));
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "ab", &mnt);
    assert_eq!(fs::read(mnt.join("bin/tool")).unwrap(), b"from a");
    assert_eq!(fs::read(mnt.join("bin/other")).unwrap(), b"only b");
    assert_eq!(fs::read(mnt.join("share/b-only/f")).unwrap(), b"f");
    let mut names: Vec<_> = fs::read_dir(mnt.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["other", "tool"]);

    // The store-wide view.
    let all = mountpoint(&t, "all");
    let _all_guard = mount(&t, "--all", &all);
    let (name, hash) = ida.split_once('/').unwrap();
    assert_eq!(
        fs::read(all.join("artifacts").join(name).join(hash).join("bin/tool")).unwrap(),
        b"from a"
    );
    assert_eq!(fs::read(all.join("profiles/ab/bin/other")).unwrap(), b"only b");
    // Artifacts added after mounting appear (store-wide listings are not cached for long).
    let c = t.path("c");
    fs::create_dir_all(&c).unwrap();
    fs::write(c.join("late"), b"late").unwrap();
    let idc = t.add(&c, "c");
    let late = all.join("artifacts").join(&idc).join("late");
    assert!(
        wait_for(Duration::from_secs(3), || fs::read(&late).is_ok()),
        "new artifact not visible"
    );
}

/// RSS of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
    crate::util::proc_status_kib(pid, "VmRSS")
}

fn all_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn sixteen_parallel_readers_for_thirty_seconds() {
    if !fuse_available() {
        return;
    }
    let t = TestStore::new();
    let (src, name) = match corpus("cpython") {
        Some(dir) => (dir, "cpython"),
        None => {
            let src = t.path("src");
            sample_tree(&src);
            (src, "sample")
        }
    };
    let id = t.add(&src, name);
    let mnt = mountpoint(&t, "mnt");
    let (_guard, mut daemon) = mount_foreground(&t, &id, &mnt);
    let expected: Vec<(PathBuf, hdist_store::Digest)> = all_files(&src)
        .into_iter()
        .map(|p| {
            let digest = hdist_store::Digest::of(&fs::read(&p).unwrap());
            (p.strip_prefix(&src).unwrap().to_path_buf(), digest)
        })
        .collect();
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let peak_rss = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    std::thread::scope(|s| {
        for worker in 0..16 {
            let (expected, stop, reads, mnt) = (&expected, &stop, &reads, &mnt);
            s.spawn(move || {
                let mut i = worker * 37;
                while !stop.load(Ordering::Relaxed) {
                    let (rel, digest) = &expected[i % expected.len()];
                    let mut data = Vec::new();
                    fs::File::open(mnt.join(rel))
                        .unwrap()
                        .read_to_end(&mut data)
                        .unwrap();
                    assert_eq!(&hdist_store::Digest::of(&data), digest, "{}", rel.display());
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(500));
            peak_rss.fetch_max(rss_kib(daemon.id()), Ordering::Relaxed);
        }
        stop.store(true, Ordering::Relaxed);
    });
    let peak = peak_rss.load(Ordering::Relaxed);
    eprintln!(
        "{} verified reads, daemon peak RSS {peak} KiB",
        reads.load(Ordering::Relaxed)
    );
    assert!(reads.load(Ordering::Relaxed) > 1000);
    assert!(peak < 64 * 1024, "daemon RSS {peak} KiB");
    assert!(daemon.try_wait().unwrap().is_none(), "daemon died");
}

#[test]
fn corrupt_object_reads_eio_and_others_still_read() {
    if !fuse_available() {
        return;
    }
    let (t, _, _) = sample_store();
    let digest = hdist_store::Digest::of(&[7u8; 100_000]).to_hex();
    let fanout = t.store().join("objects").join(&digest[..2]);
    let object = fs::read_dir(&fanout)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&digest))
        .unwrap();
    let mut bytes = fs::read(&object).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&object, &bytes).unwrap();
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "p", &mnt);
    assert_eq!(errno_of(fs::read(mnt.join("lib/libx.so"))), Some(libc::EIO));
    assert_eq!(fs::read(mnt.join("share/doc/README")).unwrap(), b"hello\n");
    assert_eq!(fs::read(mnt.join("bin/tool")).unwrap(), b"#!/bin/sh\necho tool\n");
    let logs: String = fs::read_dir(t.store().join("logs"))
        .unwrap()
        .map(|e| fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(
        logs.contains(&digest) && logs.contains("libx.so"),
        "log must name object and path: {logs}"
    );
}

#[test]
fn killed_daemon_leaves_a_dead_mount_that_umount_cleans() {
    if !fuse_available() {
        return;
    }
    let (t, _, _) = sample_store();
    let mnt = mountpoint(&t, "mnt");
    let (_guard, mut daemon) = mount_foreground(&t, "p", &mnt);
    assert_eq!(fs::read(mnt.join("share/doc/README")).unwrap(), b"hello\n");
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    assert!(is_mounted(&mnt));
    assert_eq!(errno_of(fs::metadata(mnt.join("bin"))), Some(libc::ENOTCONN));
    t.ok(["umount".as_ref(), mnt.as_os_str()]);
    assert!(!is_mounted(&mnt));
    // The directory is usable again.
    let _again = mount(&t, "p", &mnt);
    assert_eq!(fs::read(mnt.join("share/doc/README")).unwrap(), b"hello\n");
}

#[test]
fn sigterm_unmounts_cleanly() {
    if !fuse_available() {
        return;
    }
    let (t, _, _) = sample_store();
    let mnt = mountpoint(&t, "mnt");
    let (_guard, mut daemon) = mount_foreground(&t, "p", &mnt);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn bad_mount_requests_mount_nothing() {
    if !fuse_available() {
        return;
    }
    let (t, _, _) = sample_store();
    let missing = t.path("missing");
    let out = t.fails(["mount".as_ref(), "p".as_ref(), missing.as_os_str()]);
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    let full = mountpoint(&t, "full");
    fs::write(full.join("x"), b"x").unwrap();
    let out = t.fails(["mount".as_ref(), "p".as_ref(), full.as_os_str()]);
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    let empty = mountpoint(&t, "empty");
    let out = t.fails(["mount".as_ref(), "nosuchprofile".as_ref(), empty.as_os_str()]);
    assert!(stderr(&out).contains("nosuchprofile"), "{}", stderr(&out));
    assert!(!is_mounted(&missing) && !is_mounted(&full) && !is_mounted(&empty));
    let out = t.fails(["umount".as_ref(), empty.as_os_str()]);
    assert!(stderr(&out).contains("it is not mounted"), "{}", stderr(&out));
}

#[test]
fn python_runs_from_a_mounted_profile() {
    if !fuse_available() {
        return;
    }
    let Some(cpython) = corpus("cpython") else { return };
    let t = TestStore::new();
    let id = t.add(&cpython, "cpython");
    t.ok(["profile", "create", "py", &id]);
    let mnt = mountpoint(&t, "mnt");
    let _guard = mount(&t, "py", &mnt);
    let path = format!("{}:/usr/bin:/bin", mnt.join("usr/bin").display());
    let out = run_ok(
        Command::new("python3")
            .env_clear()
            .env("PATH", path)
            .env("PYTHONHOME", mnt.join("usr"))
            .args([
                "-c",
                "import json, sqlite3, ssl, decimal, asyncio, email, sys; print(sys.prefix, json.__file__)",
            ]),
    );
    assert!(
        out.contains(&format!(
            "{}/lib/python3.11/json/__init__.py",
            mnt.join("usr").display()
        )),
        "{out}"
    );
}

/// A non-root user mounts through fusermount3 and reads its own store.
#[test]
fn non_root_user_mounts_through_fusermount3() {
    if !fuse_available() {
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root to create the test user");
        return;
    }
    let user = ensure_test_user();
    // Debian's default is 0666; these machines ship /dev/fuse as 0600.
    fs::set_permissions("/dev/fuse", fs::Permissions::from_mode(0o666)).unwrap();
    let base = tempfile::Builder::new()
        .prefix("hdist-nonroot-")
        .tempdir_in("/tmp")
        .unwrap();
    fs::set_permissions(base.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let src = base.path().join("src");
    sample_tree(&src);
    run_ok(Command::new("chown").args(["-R", user]).arg(base.path()));
    let store = base.path().join("store");
    let mnt = base.path().join("mnt");
    let as_user = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid", user, "--regid", user, "--init-groups", "--"])
            .arg(hdist_bin())
            .arg("--store")
            .arg(&store)
            .args(args)
            .env("HOME", base.path());
        cmd
    };
    let id = run_ok(&mut as_user(&[
        "-q".as_ref(),
        "store".as_ref(),
        "add".as_ref(),
        src.as_os_str(),
        "--name".as_ref(),
        "mine".as_ref(),
    ]));
    run_ok(&mut as_user(&[
        "profile".as_ref(),
        "create".as_ref(),
        "mine".as_ref(),
        id.trim().as_ref(),
    ]));
    run_ok(
        Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "mkdir"])
            .arg(&mnt),
    );
    let _guard = MountGuard::new(&mnt);
    run_ok(&mut as_user(&[
        "mount".as_ref(),
        "mine".as_ref(),
        mnt.as_os_str(),
    ]));
    assert!(is_mounted(&mnt));
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = mountinfo
        .lines()
        .find(|l| l.contains(mnt.to_str().unwrap()))
        .unwrap();
    let uid = Command::new("id").args(["-u", user]).output().unwrap();
    let uid = String::from_utf8_lossy(&uid.stdout).trim().to_string();
    assert!(
        line.contains(&format!("user_id={uid}")),
        "not mounted by the user: {line}"
    );
    // The user reads through its own mount (root is kept out without allow_other).
    let out = run_ok(
        Command::new("setpriv")
            .args(["--reuid", user, "--regid", user, "--init-groups", "cat"])
            .arg(mnt.join("share/doc/README")),
    );
    assert_eq!(out, "hello\n");
    run_ok(&mut as_user(&["umount".as_ref(), mnt.as_os_str()]));
    assert!(!is_mounted(&mnt));
}

/// The sum of the first `len` bytes of `path`, read through a shared read-only mapping (as the
/// dynamic loader maps libraries).
fn mmap_sum(path: &Path, len: usize) -> u64 {
    use std::os::fd::AsRawFd;
    let file = fs::File::open(path).unwrap();
    // SAFETY: a fresh read-only mapping of an open file, unmapped before returning; the bytes
    // are only read within its length.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED, "mmap {}", path.display());
        let sum = std::slice::from_raw_parts(map as *const u8, len)
            .iter()
            .map(|b| u64::from(*b))
            .sum();
        libc::munmap(map, len);
        sum
    }
}
