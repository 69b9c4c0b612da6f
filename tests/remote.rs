//! Cluster sharing: `hdist publish` served by a real nginx on 127.0.0.1, and remote mounts of
//! it with their own caches (signatures, tampering, offline behaviour, chunked reads).

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{
    corpus, fuse_available, hdist_bin, is_mounted, run_ok, sample_tree, snapshot, wait_for, MountGuard,
    TestStore,
};

/// A private nginx serving one directory on 127.0.0.1; stopped (by its PID) on drop.
struct Nginx {
    dir: PathBuf,
    port: u16,
    root: PathBuf,
}

fn nginx_available() -> bool {
    if Path::new("/usr/sbin/nginx").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "nginx is missing under CI: scripts/test.sh installs nginx-light"
    );
    eprintln!("skipping: nginx is not installed (apt-get install nginx-light)");
    false
}

impl Nginx {
    fn start(work: &Path, root: &Path) -> Nginx {
        let dir = work.join("nginx");
        fs::create_dir_all(dir.join("tmp")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let nginx = Nginx {
            dir,
            port,
            root: root.to_path_buf(),
        };
        nginx.run();
        nginx
    }

    fn run(&self) {
        let d = self.dir.display();
        let conf = format!(
            "daemon on;\nworker_processes 2;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/tmp;\n\
             proxy_temp_path {d}/tmp;\n fastcgi_temp_path {d}/tmp;\n uwsgi_temp_path {d}/tmp;\n\
             scgi_temp_path {d}/tmp;\n sendfile on;\n keepalive_requests 100000;\n\
             default_type application/octet-stream;\n\
             server {{\n  listen 127.0.0.1:{port};\n  root {root};\n\
             location = /manifest.json {{ add_header Cache-Control no-cache; }}\n\
             location /.tmp/ {{ return 404; }}\n }}\n}}\n",
            port = self.port,
            root = self.root.display()
        );
        fs::write(self.dir.join("nginx.conf"), conf).unwrap();
        let status = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(self.dir.join("nginx.conf"))
            .arg("-e")
            .arg(self.dir.join("error.log"))
            .status()
            .unwrap();
        assert!(status.success(), "nginx did not start");
        assert!(
            wait_for(Duration::from_secs(5), || std::net::TcpStream::connect((
                "127.0.0.1",
                self.port
            ))
            .is_ok()),
            "nginx does not answer"
        );
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn stop(&self) {
        let Ok(pid) = fs::read_to_string(self.dir.join("nginx.pid")) else {
            return;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            return;
        };
        // SAFETY: plain signal to the master process we started (by its PID).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        wait_for(Duration::from_secs(5), || unsafe { libc::kill(pid, 0) } != 0);
        let _ = fs::remove_file(self.dir.join("nginx.pid"));
    }

    /// Requests logged so far whose path contains `needle`.
    fn requests(&self, needle: &str) -> usize {
        fs::read_to_string(self.dir.join("access.log"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A store with an artifact of `src` as profile `p`, a key, and a published directory.
pub(crate) fn published(src: &Path) -> (TestStore, PathBuf, String) {
    let t = TestStore::new();
    let id = t.add(src, "sample");
    t.ok(["profile", "create", "p", &id]);
    let key = t.ok(["key", "generate"]).trim().to_string();
    let out = t.path("pub");
    t.ok(["publish".as_ref(), "--to".as_ref(), out.as_os_str()]);
    (t, out, key)
}

pub(crate) fn remote_mount(
    t: &TestStore,
    url: &str,
    key: &str,
    cache: &Path,
    what: &str,
    dir: &Path,
) -> MountGuard {
    fs::create_dir_all(dir).unwrap();
    let guard = MountGuard::new(dir);
    run_ok(
        Command::new(hdist_bin())
            .args([
                "mount",
                "--remote",
                url,
                "--key",
                key,
                "--timeout",
                "2",
                "--poll",
                "1",
            ])
            .arg("--cache")
            .arg(cache)
            .arg(what)
            .arg(dir)
            .env("HOME", t.dir.path()),
    );
    assert!(is_mounted(dir));
    guard
}

fn errno_of(result: std::io::Result<impl Sized>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

/// Tree, file and chunk objects: every object file under objects/.
fn object_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for fanout in fs::read_dir(dir.join("objects")).unwrap().flatten() {
        for entry in fs::read_dir(fanout.path()).unwrap().flatten() {
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn keys_publish_incrementally_and_sign() {
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let (t, out, key) = published(&src);
    assert!(key.starts_with("ed25519:"), "{key}");
    assert_eq!(t.ok(["key", "show"]).trim(), key);
    let again = t.fails(["key", "generate"]);
    assert!(crate::util::stderr(&again).contains("exists"));
    // Second publish: nothing new, higher serial.
    let report: serde_json::Value = serde_json::from_str(&t.ok([
        "publish".as_ref(),
        "--to".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert_eq!(report["written"], 0);
    assert_eq!(report["serial"], 2);
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["key"], key.as_str());
    assert!(manifest["signature"].as_str().unwrap().len() > 80);
    // Every published object is a zstd frame of content that hashes to its name.
    for path in object_files(&out) {
        let raw = zstd_decode(&fs::read(&path).unwrap());
        let name = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches(".zst");
        assert_eq!(hdist_store::Digest::of(&raw).to_hex(), name);
    }
}

fn zstd_decode(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("zstd")
        .args(["-d", "-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("zstd");
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &data));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out.stdout
}

#[test]
fn remote_mount_serves_verified_content_and_refuses_tampering() {
    if !fuse_available() || !nginx_available() {
        return;
    }
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    // A large file (published in chunks) of incompressible bytes.
    let big: Vec<u8> = (0..9u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    fs::write(src.join("lib/big.bin"), &big).unwrap();
    let (t, out, key) = published(&src);
    let server = Nginx::start(t.dir.path(), &out);

    // A node: same tree as the source.
    let mnt = t.path("node1");
    let cache = t.path("cache1");
    let guard = remote_mount(&t, &server.url(), &key, &cache, "p", &mnt);
    let before = server.requests("/objects/");
    // A partial read of the large file fetches only the chunks it touches (+ read-ahead).
    let file = fs::File::open(mnt.join("lib/big.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    file.read_exact_at(&mut buf, 5 << 20).unwrap();
    assert_eq!(&buf[..], &big[5 << 20..(5 << 20) + 4096]);
    drop(file);
    let chunk_requests = server.requests("/objects/") - before;
    assert!(chunk_requests <= 4, "a 4 KiB read made {chunk_requests} requests");
    assert_eq!(snapshot(&src), snapshot(&mnt));
    drop(guard);

    // Tampered object on the server: refused (EIO), never served; other files still work.
    let readme_digest = hdist_store::Digest::of(b"hello\n").to_hex();
    let object = out
        .join("objects")
        .join(&readme_digest[..2])
        .join(format!("{readme_digest}.zst"));
    let forged = Command::new("zstd")
        .args(["-q", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            std::io::Write::write_all(c.stdin.as_mut().unwrap(), b"evil!\n")?;
            drop(c.stdin.take());
            c.wait_with_output()
        })
        .unwrap()
        .stdout;
    fs::write(&object, forged).unwrap();
    let mnt2 = t.path("node2");
    let guard2 = remote_mount(&t, &server.url(), &key, &t.path("cache2"), "p", &mnt2);
    assert_eq!(errno_of(fs::read(mnt2.join("share/doc/README"))), Some(libc::EIO));
    assert_eq!(
        fs::read(mnt2.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    drop(guard2);
    let log = fs::read_dir(t.path("cache2").join("logs"))
        .unwrap()
        .flatten()
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect::<String>();
    assert!(
        log.contains("refusing object"),
        "no log line for the tampered object: {log}"
    );

    // A manifest signed by another key: the mount is refused.
    let other = TestStore::new();
    let other_key = other.ok(["key", "generate"]).trim().to_string();
    assert_ne!(other_key, key);
    fs::copy(other.store().join("keys/publish.ed25519"), t.path("other.key")).unwrap();
    t.ok([
        "publish".as_ref(),
        "--to".as_ref(),
        out.as_os_str(),
        "--key-file".as_ref(),
        t.path("other.key").as_os_str(),
    ]);
    let mnt3 = t.path("node3");
    fs::create_dir_all(&mnt3).unwrap();
    let _guard3 = MountGuard::new(&mnt3);
    let refused = Command::new(hdist_bin())
        .args([
            "mount",
            "--remote",
            &server.url(),
            "--key",
            &key,
            "--timeout",
            "2",
        ])
        .arg("--cache")
        .arg(t.path("cache3"))
        .arg("p")
        .arg(&mnt3)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not signed by the trusted key"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    assert!(!is_mounted(&mnt3));
}

#[test]
fn offline_cached_files_work_uncached_fail_fast_and_new_manifests_arrive() {
    if !fuse_available() || !nginx_available() {
        return;
    }
    let t = TestStore::new();
    let src = t.path("src");
    sample_tree(&src);
    let (t, out, key) = published(&src);
    let server = Nginx::start(t.dir.path(), &out);
    let mnt = t.path("all");
    let _guard = remote_mount(&t, &server.url(), &key, &t.path("cache"), "--all", &mnt);
    let profile = mnt.join("profiles/p");
    assert_eq!(
        fs::read(profile.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );

    server.stop();
    // Cached: still served. Uncached: EIO within the bound, no hang.
    assert_eq!(
        fs::read(profile.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho tool\n"
    );
    let started = Instant::now();
    assert_eq!(
        errno_of(fs::read(profile.join("share/doc/README"))),
        Some(libc::EIO)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );

    // Recovery once the server is back (after the mirror's penalty expires).
    server.run();
    assert!(
        wait_for(Duration::from_secs(15), || fs::read(
            profile.join("share/doc/README")
        )
        .is_ok()),
        "no recovery after the server came back"
    );

    // A newly published profile reaches the mount through the polled manifest.
    let id = t.ok(["-q", "ls", "--json"]);
    let id: serde_json::Value = serde_json::from_str(&id).unwrap();
    let id = id[0]["id"].as_str().unwrap().to_string();
    t.ok(["profile", "create", "q", &id]);
    t.ok(["publish".as_ref(), "--to".as_ref(), out.as_os_str()]);
    assert!(
        wait_for(Duration::from_secs(10), || mnt
            .join("profiles/q/bin/tool")
            .exists()),
        "the new manifest did not reach the mount"
    );
}

#[test]
fn python_runs_from_a_remote_mount_with_a_prefetch_list() {
    if !fuse_available() || !nginx_available() {
        return;
    }
    let Some(cpython) = corpus("cpython/usr") else {
        return;
    };
    let t = TestStore::new();
    let id = t.add(&cpython, "cpython");
    t.ok(["profile", "create", "py", &id]);
    let key = t.ok(["key", "generate"]).trim().to_string();
    // Record a workload through a local mount (what `hdist trace record` does).
    let local = t.path("local");
    fs::create_dir_all(&local).unwrap();
    let trace = t.store().join("traces/py.trace");
    fs::create_dir_all(trace.parent().unwrap()).unwrap();
    {
        let _guard = MountGuard::new(&local);
        t.ok([
            "mount".as_ref(),
            "--record-trace".as_ref(),
            trace.as_os_str(),
            "py".as_ref(),
            local.as_os_str(),
        ]);
        run_ok(Command::new(local.join("bin/python3")).args(["-c", "import json, decimal, email"]));
        t.ok(["umount".as_ref(), local.as_os_str()]);
        assert!(
            wait_for(Duration::from_secs(10), || trace.exists()),
            "no trace written"
        );
    }
    let out = t.path("pub");
    let report: serde_json::Value = serde_json::from_str(&t.ok([
        "publish".as_ref(),
        "--to".as_ref(),
        out.as_os_str(),
        "--json".as_ref(),
    ]))
    .unwrap();
    assert!(report["profiles"]["py"].as_u64().unwrap() > 10, "{report}");
    let server = Nginx::start(t.dir.path(), &out);
    let mnt = t.path("node");
    let _guard = remote_mount(&t, &server.url(), &key, &t.path("cache"), "py", &mnt);
    let out = run_ok(Command::new(mnt.join("bin/python3")).args([
        "-c",
        "import json, decimal, email, sys; print(sys.prefix, json.dumps([1]))",
    ]));
    assert!(out.contains("[1]"), "{out}");
}

/// The whole cluster simulation (scripts/cluster-demo.sh): nginx on 127.0.0.1, three nodes in
/// their own mount namespaces with their own caches, all running python from the same remote
/// profile; then the faults: server stopped mid-run (cached files work, uncached fail fast,
/// recovery), a corrupted object and a manifest signed by another key (both refused).
#[test]
fn cluster_demo_three_nodes_and_faults() {
    if !crate::util::fuse_available() {
        return;
    }
    let Some(corpus) = crate::util::corpus("cpython") else {
        return;
    };
    let cache = corpus
        .parent()
        .and_then(|c| c.parent())
        .expect("corpus lives in <cache>/corpus");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-demo.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("3")
        .env("HDIST", crate::util::hdist_bin())
        .env("HDIST_CACHE", cache)
        .output()
        .expect("run cluster-demo.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "cluster demo failed:\n{text}");
    for expected in [
        "node 1: python 3.11.2 ok",
        "node 2: python 3.11.2 ok",
        "node 3: python 3.11.2 ok",
        "recovered after the server came back",
        "corrupt object refused",
        "foreign manifest refused",
        "cluster demo: all checks passed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}
