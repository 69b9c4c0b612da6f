//! Trust on local disk: what a live mount does when a file it already served changes on disk
//! underneath it (its raw object, its decompressed copy under `cache/blobs/`, a remote node's
//! cached copy), and what `hdist store verify` does with damaged copies.
//!
//! Each test reads a file through a real mount, flips one byte of the file behind it in place,
//! drops the mounted file's pages from the kernel's page cache (so the next read reaches the
//! daemon, as it would under memory pressure), and reads it again from a new process: it must
//! get the right bytes or EIO, never the flipped bytes, and the daemon must log it.

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::http_server::HttpServer;
use crate::remote::{published, remote_mount};
use crate::util::{fuse_available, is_mounted, MountGuard, TestStore};

/// Content zstd compresses well: stored as `.zst`, served from a decompressed copy.
fn compressible() -> Vec<u8> {
    (0..200_000u32)
        .flat_map(|i| format!("line {i} of a text file\n").into_bytes())
        .take(300_000)
        .collect()
}

/// Content zstd cannot compress: stored raw, served from the object file itself.
fn incompressible() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn fanout_path(dir: &Path, digest: &hdist_store::Digest, suffix: &str) -> PathBuf {
    let hex = digest.to_hex();
    dir.join(&hex[..2]).join(format!("{hex}{suffix}"))
}

/// Inverts one byte of `path` in place (same inode, as a stray writer or tamperer would).
fn flip_byte(path: &Path, offset: u64) {
    let file = fs::File::options().read(true).write(true).open(path).unwrap();
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, offset).unwrap();
    file.write_all_at(&[!byte[0]], offset).unwrap();
}

/// Drops the mounted file's pages from the kernel's page cache, so that the next read is
/// served by the daemon (memory pressure does the same at any time).
fn drop_page_cache(path: &Path) {
    let file = fs::File::open(path).unwrap();
    // SAFETY: a valid descriptor; advice only.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0, "posix_fadvise on {}", path.display());
}

/// What a new process reads from `path`: `Ok(bytes)`, or `Err(stderr)` if `cat` failed.
fn cat(path: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("cat").arg(path).output().unwrap();
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Asserts that a new process reads exactly `content` from `path`.
fn assert_reads(path: &Path, content: &[u8], when: &str) {
    let got = cat(path);
    assert!(
        got.as_deref() == Ok(content),
        "{when}: a new process read {}",
        match &got {
            Ok(bytes) if bytes.len() == content.len() => "wrong bytes".to_string(),
            Ok(bytes) => format!("{} bytes", bytes.len()),
            Err(e) => format!("an error ({e})"),
        }
    );
}

/// Every daemon log under `logs`.
fn daemon_logs(logs: &Path) -> String {
    fs::read_dir(logs)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts that some warning or error line of `log` names `digest`.
fn assert_logged(log: &str, digest: &hdist_store::Digest) {
    let hex = digest.to_hex();
    assert!(
        log.lines()
            .any(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains(&hex)),
        "no warning naming {hex} in the daemon log:\n{log}"
    );
}

/// A store holding `content` as `data/file`, and its artifact id.
fn store_with(content: &[u8]) -> (TestStore, String) {
    let t = TestStore::new();
    let src = t.path("src");
    fs::create_dir_all(src.join("data")).unwrap();
    fs::write(src.join("data/file"), content).unwrap();
    let id = t.add(&src, "copies");
    (t, id)
}

/// `hdist profile export p DIR --link hardlink`.
fn export_hardlinked(t: &TestStore, dir: &Path) {
    t.ok([
        "profile".as_ref(),
        "export".as_ref(),
        "p".as_ref(),
        dir.as_os_str(),
        "--link".as_ref(),
        "hardlink".as_ref(),
    ]);
}

/// The linkfarm copy of `digest` (there is one: a single mtime was exported).
fn linkfarm_copy(t: &TestStore, digest: &hdist_store::Digest) -> PathBuf {
    let hex = digest.to_hex();
    fs::read_dir(t.store().join("linkfarm").join(&hex[..2]))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&hex))
        .expect("a linkfarm copy")
}

/// Mounts `id` with the given `HDIST_FUSE_OPEN` mode (None: the default).
fn mount_mode(t: &TestStore, id: &str, dir: &Path, mode: Option<&str>) -> MountGuard {
    fs::create_dir_all(dir).unwrap();
    let guard = MountGuard::new(dir);
    let mut cmd = t.cmd(["mount".as_ref(), id.as_ref(), dir.as_os_str()]);
    match mode {
        Some(mode) => cmd.env("HDIST_FUSE_OPEN", mode),
        None => cmd.env_remove("HDIST_FUSE_OPEN"),
    };
    crate::util::run_ok(&mut cmd);
    assert!(is_mounted(dir));
    guard
}

#[test]
fn changed_copy_under_a_live_mount_is_remade_for_new_opens() {
    if !fuse_available() {
        return;
    }
    for mode in [None, Some("passthrough"), Some("open")] {
        let content = compressible();
        let digest = hdist_store::Digest::of(&content);
        let (t, id) = store_with(&content);
        let mnt = t.path("mnt");
        let guard = mount_mode(&t, &id, &mnt, mode);
        let file = mnt.join("data/file");
        assert_eq!(cat(&file).unwrap(), content, "mode {mode:?}: first read");
        let copy = fanout_path(&t.store().join("cache/blobs"), &digest, "");
        assert!(
            copy.exists(),
            "mode {mode:?}: no decompressed copy at {}",
            copy.display()
        );

        flip_byte(&copy, 1000);
        drop_page_cache(&file);
        assert_reads(&file, &content, &format!("mode {mode:?}: after the copy changed"));
        // The copy itself was re-made from the verified object.
        assert_eq!(
            fs::read(&copy).unwrap(),
            content,
            "mode {mode:?}: copy not re-made"
        );
        drop(guard);
        assert_logged(&daemon_logs(&t.store().join("logs")), &digest);
    }
}

#[test]
fn changed_raw_object_under_a_live_mount_gives_eio_not_wrong_bytes() {
    if !fuse_available() {
        return;
    }
    let content = incompressible();
    let digest = hdist_store::Digest::of(&content);
    let (t, id) = store_with(&content);
    let object = fanout_path(&t.store().join("objects"), &digest, "");
    assert!(object.exists(), "expected a raw object at {}", object.display());
    let mnt = t.path("mnt");
    let guard = mount_mode(&t, &id, &mnt, None);
    let file = mnt.join("data/file");
    assert_eq!(cat(&file).unwrap(), content);

    flip_byte(&object, 5000);
    drop_page_cache(&file);
    match cat(&file) {
        Ok(bytes) => assert!(bytes == content, "a new process read wrong bytes with exit 0"),
        Err(e) => assert!(e.contains("Input/output error"), "unexpected failure: {e}"),
    }
    drop(guard);
    assert_logged(&daemon_logs(&t.store().join("logs")), &digest);
}

#[test]
fn verify_checks_decompressed_and_linkfarm_copies_and_remakes_bad_ones() {
    let content = compressible();
    let digest = hdist_store::Digest::of(&content);
    let (t, id) = store_with(&content);
    // `hdist cat` reads through the decompressed copy, `profile export --link hardlink`
    // through a linkfarm copy.
    assert_eq!(t.ok(["cat", &id, "data/file"]).into_bytes(), content);
    t.ok(["profile", "create", "p", &id]);
    export_hardlinked(&t, &t.path("export"));
    let copy = fanout_path(&t.store().join("cache/blobs"), &digest, "");
    assert!(copy.exists(), "no decompressed copy at {}", copy.display());
    let linkfarm = linkfarm_copy(&t, &digest);
    assert_eq!(t.ok(["store", "verify"]).trim(), "", "clean store");

    flip_byte(&copy, 10);
    flip_byte(&linkfarm, 20);
    let out = t.fails(["store", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for path in [&copy, &linkfarm] {
        assert!(
            stdout.contains(&*path.to_string_lossy()),
            "verify does not report {}:\n{stdout}{}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Re-made from the verified object; a second run finds nothing.
    assert_eq!(fs::read(&copy).unwrap(), content);
    assert_eq!(fs::read(&linkfarm).unwrap(), content);
    assert_eq!(t.ok(["store", "verify"]).trim(), "");

    // A linkfarm copy written to through a link is not re-used by the next export.
    flip_byte(&linkfarm_copy(&t, &digest), 30);
    let export2 = t.path("export2");
    export_hardlinked(&t, &export2);
    assert!(
        fs::read(export2.join("data/file")).unwrap() == content,
        "a new export linked to a damaged linkfarm copy"
    );
}

#[test]
fn changed_remote_cache_copy_is_fetched_again_and_verify_cache_drops_bad_ones() {
    if !fuse_available() {
        return;
    }
    let t0 = TestStore::new();
    let src = t0.path("src");
    fs::create_dir_all(src.join("data")).unwrap();
    let content = compressible();
    let other = incompressible();
    let digest = hdist_store::Digest::of(&content);
    let other_digest = hdist_store::Digest::of(&other);
    fs::write(src.join("data/file"), &content).unwrap();
    fs::write(src.join("data/other"), &other).unwrap();
    let (t, out, key) = published(&src);
    let server = HttpServer::start(&out);
    let cache = t.path("cache");
    let mnt = t.path("node");
    let guard = remote_mount(&t, &server.base(), &key, &cache, "p", &mnt);
    let file = mnt.join("data/file");
    assert_eq!(cat(&file).unwrap(), content);
    assert_eq!(cat(&mnt.join("data/other")).unwrap(), other);
    let cached = fanout_path(&cache.join("objects"), &digest, "");
    assert!(cached.exists(), "no cached copy at {}", cached.display());

    flip_byte(&cached, 1000);
    drop_page_cache(&file);
    assert_reads(&file, &content, "after the cached copy changed");
    drop(guard);
    assert_logged(&daemon_logs(&cache.join("logs")), &digest);

    // Offline check of the node's cache: the damaged copy is reported and dropped.
    let cached_other = fanout_path(&cache.join("objects"), &other_digest, "");
    flip_byte(&cached_other, 7);
    let verify = |expect_ok: bool| {
        let out = Command::new(crate::util::hdist_bin())
            .args(["store", "verify", "--cache"])
            .arg(&cache)
            .env("HOME", t.dir.path())
            .output()
            .unwrap();
        assert_eq!(
            out.status.success(),
            expect_ok,
            "verify --cache: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = verify(false);
    assert!(
        report.contains(&*cached_other.to_string_lossy()),
        "verify --cache does not report {}:\n{report}",
        cached_other.display()
    );
    assert!(!cached_other.exists(), "the bad copy is still in the cache");
    assert!(cached.exists(), "a good copy was dropped");
    verify(true);

    // A directory that is no cache: a clear error, not an empty report.
    let out = t.fails([
        "store".as_ref(),
        "verify".as_ref(),
        "--cache".as_ref(),
        t.path("src").as_os_str(),
    ]);
    assert!(
        crate::util::stderr(&out).contains("is not a remote cache"),
        "{}",
        crate::util::stderr(&out)
    );
}
