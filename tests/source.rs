//! The source cache through the CLI: `hdist fetch` over real HTTP on 127.0.0.1 (with faults),
//! from paths and git, and `hdist unpack` of real and malicious archives.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hdist_store::hash::files_pack_digest;
use hdist_store::Digest;

use crate::http_server::HttpServer;
use crate::util::{run_ok, snapshot, stderr, TestStore};

/// `hdist --store … ARGS` with no proxy or mirror settings inherited from the environment
/// (the servers are on 127.0.0.1 and must be reached directly).
fn hdist<I, S>(t: &TestStore, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = t.cmd(args);
    for var in [
        "HDIST_MIRRORS",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn ok<I, S>(t: &TestStore, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    run_ok(&mut hdist(t, args)).trim().to_string()
}

fn fails<I, S>(t: &TestStore, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out = hdist(t, args).output().expect("run hdist");
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

/// Every file below `dir` (relative paths), or nothing if it does not exist.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out
}

/// What a failed fetch must leave unchanged: documents and objects.
fn stored_state(t: &TestStore) -> (BTreeSet<PathBuf>, BTreeSet<PathBuf>) {
    (
        files_under(&t.store().join("sources")),
        files_under(&t.store().join("objects")),
    )
}

/// Anything left in the store's scratch space once no hdist process runs.
fn tmp_leftovers(t: &TestStore) -> BTreeSet<PathBuf> {
    files_under(&t.store().join("tmp"))
}

fn record(t: &TestStore, key: &str) -> serde_json::Value {
    let (kind, id) = key.split_once(':').unwrap();
    let path = t.store().join("sources").join(kind).join(format!("{id}.json"));
    serde_json::from_slice(&fs::read(&path).unwrap()).unwrap()
}

fn is_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

/// A tar member for [`tar_gz`]: name, type flag, content, link target.
type Member<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

/// A ustar archive written header by header (names are taken as-is, `..` and absolute
/// ones included), gzipped with the gzip program.
fn tar_gz(members: &[Member<'_>]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (name, kind, content, link) in members {
        let mut h = [0u8; 512];
        assert!(name.len() <= 100 && link.len() <= 100);
        h[..name.len()].copy_from_slice(name);
        let mode = if *kind == b'5' { 0o755 } else { 0o644 };
        let octal = |field: &mut [u8], value: u64| {
            let text = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        octal(&mut h[100..108], mode);
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], content.len() as u64);
        octal(&mut h[136..148], 1_500_000_000);
        h[148..156].copy_from_slice(b"        ");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        tar.extend_from_slice(&h);
        tar.extend_from_slice(content);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.resize(tar.len() + 1024, 0);
    let mut gzip = Command::new("gzip")
        .args(["-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    gzip.stdin.take().unwrap().write_all(&tar).unwrap();
    let out = gzip.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

/// A small well-formed source tarball: `pkg-1.0/{configure,src/main.c}`.
fn sample_tarball(tag: &str) -> Vec<u8> {
    let configure = format!("#!/bin/sh\necho {tag}\n");
    tar_gz(&[
        (b"pkg-1.0/", b'5', b"", b""),
        (b"pkg-1.0/configure", b'0', configure.as_bytes(), b""),
        (
            b"pkg-1.0/src/main.c",
            b'0',
            b"int main(void) { return 0; }\n",
            b"",
        ),
    ])
}

fn archive_key(kind: &str, bytes: &[u8]) -> String {
    format!("{kind}:{}", Digest::of(bytes).short())
}

/// A served directory holding `pkg.tar.gz` (the sample tarball); returns (dir, bytes).
fn served_sample(t: &TestStore, tag: &str) -> (PathBuf, Vec<u8>) {
    let www = t.path("www");
    fs::create_dir_all(&www).unwrap();
    let bytes = sample_tarball(tag);
    fs::write(www.join("pkg.tar.gz"), &bytes).unwrap();
    (www, bytes)
}

#[test]
fn files_key_of_a_directory_matches_hashdist() {
    let t = TestStore::new();
    let dir = t.path("files");
    fs::create_dir_all(dir.join("a")).unwrap();
    for (name, content) in [
        ("foo", "contains foo"),
        ("bar", "contains bar"),
        ("a/b", "in a subdir"),
        ("a/c", "also in subdir"),
    ] {
        fs::write(dir.join(name), content).unwrap();
    }
    let key = ok(&t, ["-q".as_ref(), "fetch".as_ref(), dir.as_os_str()]);
    assert_eq!(key, "files:ruwkpei2ot2fp77myn2n2n4ttefuabab");
    // The same directory as a file: URL, with the key given: same key, no second copy.
    let url = format!("file://{}", dir.display());
    assert_eq!(ok(&t, ["fetch", &url, &key]), key);
    let doc = record(&t, &key);
    assert!(doc["tree"].is_string(), "{doc}");
    assert_eq!(doc["urls"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["size"], 12 + 12 + 11 + 14);

    // Unpacking writes the files as they were (no top directory to strip).
    let out = t.path("out");
    ok(&t, ["unpack".as_ref(), key.as_ref(), out.as_os_str()]);
    assert_eq!(snapshot(&dir), snapshot(&out));

    // A single file is a pack of one entry named by its base name.
    let single = dir.join("foo");
    let key = ok(&t, ["fetch".as_ref(), single.as_os_str()]);
    let expected = files_pack_digest(&[(b"foo".to_vec(), b"contains foo".to_vec())]).unwrap();
    assert_eq!(key, format!("files:{expected}"));
    let out = t.path("single");
    ok(&t, ["unpack".as_ref(), key.as_ref(), out.as_os_str()]);
    assert_eq!(fs::read(out.join("foo")).unwrap(), b"contains foo");

    // Symlinks cannot be expressed in a pack: refused, not silently dropped.
    std::os::unix::fs::symlink("foo", dir.join("link")).unwrap();
    let err = fails(&t, ["fetch".as_ref(), dir.as_os_str()]);
    assert!(stderr(&err).contains("is a symlink"), "{}", stderr(&err));
}

#[test]
fn debian_tarballs_over_http() {
    let Some(corpus) = crate::util::corpus("debsrc") else {
        return;
    };
    let manifest = fs::read_to_string(corpus.join("MANIFEST")).unwrap();
    let server = HttpServer::start(&corpus);
    let t = TestStore::new();
    let mut seen = 0;
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (name, sha) = (fields[0], fields[1]);
        let kind = ["tar.gz", "tar.bz2", "tar.xz"]
            .into_iter()
            .find(|k| name.ends_with(&format!(".{k}")))
            .unwrap_or_else(|| panic!("unexpected corpus file {name}"));
        let bytes = fs::read(corpus.join(name)).unwrap();
        let digest = Digest::of(&bytes);
        assert_eq!(digest.to_hex(), sha, "{name} does not match its MANIFEST line");
        let expected = format!("{kind}:{}", digest.short());

        let url = server.url(name);
        let key = ok(&t, ["-q", "fetch", &url]);
        assert_eq!(key, expected, "{name}");
        let doc = record(&t, &key);
        assert_eq!(doc["blob"], digest.to_hex());
        assert_eq!(doc["size"], bytes.len() as u64);
        assert_eq!(doc["urls"][0], url);
        assert_eq!(doc["keep"], "keep");

        let dest = t.path(&format!("unpacked-{name}"));
        ok(&t, ["unpack".as_ref(), key.as_ref(), dest.as_os_str()]);
        // The single top directory (hello-2.10/, …) is stripped.
        let configure = dest.join("configure");
        assert!(configure.is_file(), "{name}: no configure in {}", dest.display());
        assert!(fs::metadata(&configure).unwrap().permissions().mode() & 0o100 != 0);
        if name.starts_with("hello") {
            assert!(dest.join("src/hello.c").is_file());
        }

        // Fetching again with the key is answered from the cache: no request at all.
        let before = server.requests();
        assert_eq!(ok(&t, ["fetch", &url, &key]), key);
        assert_eq!(
            server.requests(),
            before,
            "{name}: re-fetch of a cached key went to the network"
        );
        seen += 1;
    }
    assert!(seen >= 3, "MANIFEST lists {seen} tarballs");
    assert!(tmp_leftovers(&t).is_empty(), "{:?}", tmp_leftovers(&t));
    run_ok(&mut hdist(&t, ["-q", "store", "verify"]));
}

#[test]
fn wrong_key_exits_2_and_stores_nothing() {
    let t = TestStore::new();
    let (www, bytes) = served_sample(&t, "wrong");
    fs::write(www.join("other.tar.gz"), sample_tarball("other")).unwrap();
    let server = HttpServer::start(&www);
    // Something else first, so the store exists and has content to compare.
    ok(&t, ["fetch", &server.url("other.tar.gz")]);
    let before = stored_state(&t);
    let wrong = archive_key("tar.gz", b"something else");
    for url in [
        server.url("pkg.tar.gz"),
        www.join("pkg.tar.gz").display().to_string(),
    ] {
        let out = hdist(&t, ["fetch", &url, &wrong]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let message = stderr(&out);
        assert!(message.starts_with("hdist: error: "), "{message}");
        assert!(message.contains(&archive_key("tar.gz", &bytes)), "{message}");
        assert!(message.contains(&wrong), "{message}");
        assert_eq!(stored_state(&t), before, "{url}: something was stored");
        assert!(tmp_leftovers(&t).is_empty(), "{:?}", tmp_leftovers(&t));
    }
    // A directory with a wrong files: key too.
    let dir = t.path("dir");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("f"), b"x").unwrap();
    let wrong = format!("files:{}", Digest::of(b"nope").short());
    let out = hdist(&t, ["fetch".as_ref(), dir.as_os_str(), wrong.as_ref()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stored_state(&t), before);
}

#[test]
fn cached_key_needs_no_network_and_new_urls_are_recorded() {
    let t = TestStore::new();
    let (www, bytes) = served_sample(&t, "cached");
    fs::copy(www.join("pkg.tar.gz"), www.join("copy.tgz")).unwrap();
    let server = HttpServer::start(&www);
    let key = ok(&t, ["fetch", &server.url("pkg.tar.gz")]);
    assert_eq!(key, archive_key("tar.gz", &bytes));
    assert_eq!(server.requests(), 1);

    // Known key: the server is not even contacted, whatever the URL and mirrors.
    let mirror = HttpServer::start(&www);
    ok(&t, ["fetch", &server.url("pkg.tar.gz"), &key]);
    ok(
        &t,
        [
            "fetch",
            "--mirror",
            &mirror.base(),
            &server.url("elsewhere.tar.gz"),
            &key,
        ],
    );
    assert_eq!(server.requests(), 1);
    assert_eq!(mirror.requests(), 0);

    // The same content downloaded from another URL is stored once, with both URLs.
    let objects = files_under(&t.store().join("objects"));
    assert_eq!(ok(&t, ["fetch", &server.url("copy.tgz")]), key);
    assert_eq!(files_under(&t.store().join("objects")), objects);
    let urls = record(&t, &key)["urls"].clone();
    assert!(
        urls.as_array().unwrap().contains(&server.url("copy.tgz").into())
            && urls
                .as_array()
                .unwrap()
                .contains(&server.url("pkg.tar.gz").into()),
        "{urls}"
    );

    // Redirects are followed; the URL asked for is the one recorded.
    let redirected = server.url("redirect/pkg.tar.gz");
    assert_eq!(ok(&t, ["fetch", &redirected]), key);
    assert!(record(&t, &key)["urls"]
        .as_array()
        .unwrap()
        .contains(&redirected.into()));
}

#[test]
fn mirrors_are_tried_first() {
    let t = TestStore::new();
    let (www, bytes) = served_sample(&t, "mirrored");
    let key = archive_key("tar.gz", &bytes);
    let digest = key.split_once(':').unwrap().1.to_string();
    let mirror_dir = t.path("mirror");
    fs::create_dir_all(mirror_dir.join("packs/tar.gz")).unwrap();
    fs::write(mirror_dir.join("packs/tar.gz").join(&digest), &bytes).unwrap();
    let origin = HttpServer::start(&www);
    let mirror = HttpServer::start(&mirror_dir);
    let empty = HttpServer::start(&t.path("www-none"));

    // --mirror: the origin is never asked. A mirror without the file is skipped.
    let url = origin.url("pkg.tar.gz");
    let out = ok(
        &t,
        [
            "fetch",
            "--mirror",
            &empty.base(),
            "--mirror",
            &mirror.base(),
            &url,
            &key,
        ],
    );
    assert_eq!(out, key);
    assert_eq!(origin.requests(), 0);
    assert_eq!(empty.requests(), 1);
    assert_eq!(mirror.log()[0].path, format!("/packs/tar.gz/{digest}"));

    // $HDIST_MIRRORS (comma or whitespace separated), in a fresh store.
    let t2 = TestStore::new();
    let list = format!("{}, {}/", empty.base(), mirror.base());
    let got = run_ok(hdist(&t2, ["fetch", &url, &key]).env("HDIST_MIRRORS", &list));
    assert_eq!(got.trim(), key);
    assert_eq!(origin.requests(), 0);
    assert_eq!(mirror.requests(), 2);

    // A mirror serving other bytes under the name is not trusted: the origin is used.
    fs::write(mirror_dir.join("packs/tar.gz").join(&digest), b"tampered").unwrap();
    let t3 = TestStore::new();
    assert_eq!(ok(&t3, ["fetch", "--mirror", &mirror.base(), &url, &key]), key);
    assert_eq!(origin.requests(), 1);
}

#[test]
fn failing_server_is_retried() {
    let t = TestStore::new();
    let (www, bytes) = served_sample(&t, "retried");
    let server = HttpServer::start(&www);
    let url = server.url("pkg.tar.gz");

    // Twice 500, then success.
    server.fail_next(2);
    assert_eq!(ok(&t, ["fetch", &url]), archive_key("tar.gz", &bytes));
    assert_eq!(server.requests(), 3);

    // Always 500: retried as often as allowed, then a clear error; nothing stored.
    let t = TestStore::new();
    ok(&t, ["store", "stats"]);
    let before = stored_state(&t);
    server.fail_next(100);
    let out = fails(&t, ["fetch", "--retries", "2", &url]);
    assert_eq!(server.requests(), 3 + 3);
    assert!(stderr(&out).contains("HTTP 500"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stored_state(&t), before);
    assert!(tmp_leftovers(&t).is_empty(), "{:?}", tmp_leftovers(&t));

    // 404 is final: no retries.
    server.fail_next(0);
    let out = fails(&t, ["fetch", &server.url("missing.tar.gz")]);
    assert!(stderr(&out).contains("HTTP 404"), "{}", stderr(&out));
    assert_eq!(server.requests(), 7);
}

#[test]
fn truncated_downloads_resume_or_fail_cleanly() {
    let t = TestStore::new();
    let www = t.path("www");
    fs::create_dir_all(&www).unwrap();
    // Incompressible, so the halves are real halves of a big body.
    let mut bytes = Vec::with_capacity(1 << 20);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    while bytes.len() < 1 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    fs::write(www.join("big.zip"), &bytes).unwrap();
    let server = HttpServer::start(&www);
    let url = server.url("big.zip");

    // Cut once: the second request asks for the rest only.
    server.truncate_next(1);
    assert_eq!(ok(&t, ["fetch", &url]), archive_key("zip", &bytes));
    let log = server.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert_eq!(log[0].range, None);
    assert_eq!(
        log[1].range.as_deref(),
        Some(&*format!("bytes={}-", bytes.len() / 2))
    );

    // Cut every time: a clear error after the retries, nothing stored, no temp file.
    let t = TestStore::new();
    ok(&t, ["store", "stats"]);
    let before = stored_state(&t);
    server.truncate_next(100);
    let out = fails(&t, ["fetch", "--retries", "2", &url]);
    assert!(
        stderr(&out).contains("the download ended after"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.requests(), 2 + 3);
    assert_eq!(stored_state(&t), before);
    assert!(tmp_leftovers(&t).is_empty(), "{:?}", tmp_leftovers(&t));
}

#[test]
fn hanging_or_stalling_server_times_out_and_is_retried() {
    let t = TestStore::new();
    let (www, bytes) = served_sample(&t, "hang");
    let server = HttpServer::start(&www);
    server.hang_next(1);
    let start = Instant::now();
    let key = ok(&t, ["fetch", "--timeout", "1", &server.url("pkg.tar.gz")]);
    assert_eq!(key, archive_key("tar.gz", &bytes));
    assert_eq!(server.requests(), 2);
    assert!(start.elapsed() < Duration::from_secs(30));

    // A body that stops flowing half-way: the read times out and the rest is asked for.
    let t = TestStore::new();
    server.stall_next(1);
    let key = ok(&t, ["fetch", "--timeout", "1", &server.url("pkg.tar.gz")]);
    assert_eq!(key, archive_key("tar.gz", &bytes));
    let log = server.log();
    assert_eq!(log.len(), 4, "{log:?}");
    assert_eq!(
        log[3].range.as_deref(),
        Some(&*format!("bytes={}-", bytes.len() / 2))
    );
}

/// A body dribbled one byte every 100 ms passes every per-read timeout; the throughput floor
/// (`MIN_BYTES_PER_WINDOW` per `--timeout`) gives up on it after one window and the retry
/// resumes where it stopped.
#[test]
fn dribbling_server_fails_the_throughput_floor_and_is_resumed() {
    let t = TestStore::new();
    let (www, bytes) = served_sample(&t, "dribble");
    let server = HttpServer::start(&www);
    server.dribble_next(1, 1, Duration::from_millis(100));
    let start = Instant::now();
    let mut child = hdist(&t, ["fetch", "--timeout", "1", &server.url("pkg.tar.gz")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let bound = Duration::from_secs(10);
    if !crate::util::wait_for(Duration::from_secs(30), || child.try_wait().unwrap().is_some()) {
        // SAFETY: a plain signal to the child this test started, by its PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        panic!("fetch from a dribbling server still running after 30 s");
    }
    let took = start.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        archive_key("tar.gz", &bytes)
    );
    assert!(took < bound, "took {took:?} (bound {bound:?})");
    assert!(stderr(&out).contains("too slow"), "{}", stderr(&out));
    let log = server.log();
    assert_eq!(log.len(), 2, "{log:?}");
    assert!(log[1].range.is_some(), "the retry did not resume: {log:?}");
}

#[test]
fn type_comes_from_flag_key_or_suffix() {
    let t = TestStore::new();
    let (www, bytes) = served_sample(&t, "typed");
    fs::copy(www.join("pkg.tar.gz"), www.join("download")).unwrap();
    let server = HttpServer::start(&www);
    let url = server.url("download");
    let out = fails(&t, ["fetch", &url]);
    assert!(stderr(&out).contains("--type"), "{}", stderr(&out));
    assert_eq!(server.requests(), 0);
    let key = archive_key("tar.gz", &bytes);
    assert_eq!(ok(&t, ["fetch", "--type", "tar.gz", &url]), key);
    // The key's type is enough; a contradicting --type is refused.
    let t2 = TestStore::new();
    assert_eq!(ok(&t2, ["fetch", &url, &key]), key);
    let out = fails(&t2, ["fetch", "--type", "zip", &url, &key]);
    assert!(stderr(&out).contains("contradicts"), "{}", stderr(&out));
    // --type files makes a single-file source named after the URL.
    let key = ok(&t, ["fetch", "--type", "files", &url]);
    let expected = files_pack_digest(&[(b"download".to_vec(), bytes.clone())]).unwrap();
    assert_eq!(key, format!("files:{expected}"));
    let out = t.path("single");
    ok(&t, ["unpack".as_ref(), key.as_ref(), out.as_os_str()]);
    assert_eq!(fs::read(out.join("download")).unwrap(), bytes);
    // Garbage keys and types are refused before anything happens.
    assert!(stderr(&fails(&t, ["fetch", &url, "tar.gz:nope"])).contains("not a source key"));
    assert!(stderr(&fails(&t, ["fetch", "--type", "rar", &url])).contains("unknown source type"));
}

#[test]
fn tags_record_keep_policies() {
    let t = TestStore::new();
    let (www, _) = served_sample(&t, "tags");
    let path = www.join("pkg.tar.gz");
    let key = ok(
        &t,
        [
            "fetch".as_ref(),
            "--tag".as_ref(),
            "transient".as_ref(),
            "--tag".as_ref(),
            "upstream".as_ref(),
            path.as_os_str(),
        ],
    );
    let doc = record(&t, &key);
    assert_eq!(doc["keep"], "transient");
    assert_eq!(doc["tags"], serde_json::json!(["upstream"]));
    assert!(doc["fetched"].as_i64().unwrap() > 1_600_000_000);
    // A plain fetch wants it kept: keeping wins over transient.
    ok(&t, ["fetch".as_ref(), path.as_os_str(), key.as_ref()]);
    assert_eq!(record(&t, &key)["keep"], "keep");
    assert_eq!(record(&t, &key)["tags"], serde_json::json!(["upstream"]));
    let out = fails(
        &t,
        [
            "fetch".as_ref(),
            "--tag".as_ref(),
            "keep".as_ref(),
            "--tag".as_ref(),
            "transient".as_ref(),
            path.as_os_str(),
        ],
    );
    assert!(stderr(&out).contains("contradict"), "{}", stderr(&out));
    assert!(stderr(&fails(
        &t,
        [
            "fetch".as_ref(),
            "--tag".as_ref(),
            "a b".as_ref(),
            path.as_os_str()
        ]
    ))
    .contains("invalid tag"));
}

#[test]
fn unpack_refuses_malicious_archives() {
    let t = TestStore::new();
    let outside = t.path("outside");
    fs::create_dir(&outside).unwrap();
    let absolute = outside.join("abs-evil");
    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "dotdot",
            tar_gz(&[(b"pkg/ok", b'0', b"fine", b""), (b"../evil", b'0', b"evil", b"")]),
            "../evil".into(),
        ),
        (
            "absolute",
            tar_gz(&[(absolute.as_os_str().as_bytes(), b'0', b"evil", b"")]),
            absolute.display().to_string(),
        ),
        (
            "symlink",
            tar_gz(&[
                (b"link", b'2', b"", outside.as_os_str().as_bytes()),
                (b"link/evil", b'0', b"evil", b""),
            ]),
            "link/evil".into(),
        ),
        (
            "hardlink",
            tar_gz(&[(b"hl", b'1', b"", b"../outside/victim")]),
            "hl".into(),
        ),
    ];
    fs::write(outside.join("victim"), b"victim").unwrap();
    let outside_before = snapshot(&outside);
    for (name, bytes, member) in cases {
        let archive = t.path(&format!("{name}.tar.gz"));
        fs::write(&archive, &bytes).unwrap();
        // Fetching stores the bytes (they are what upstream published); unpacking refuses.
        let key = ok(&t, ["fetch".as_ref(), archive.as_os_str()]);
        let parent = t.path(&format!("unpack-{name}"));
        let dest = parent.join("dest");
        fs::create_dir_all(&dest).unwrap();
        let out = fails(&t, ["unpack".as_ref(), key.as_ref(), dest.as_os_str()]);
        let message = stderr(&out);
        assert!(
            message.contains(&format!("refusing to unpack member {member:?}")),
            "{name}: {message}"
        );
        assert!(is_empty_dir(&dest), "{name}: {:?}", files_under(&dest));
        // Nothing beside the destination either (the staging directory is gone, and
        // `../evil` did not land next to it).
        let beside: Vec<_> = fs::read_dir(&parent)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(beside, ["dest"], "{name}");
        assert!(!t.path("evil").exists());
        assert_eq!(snapshot(&outside), outside_before, "{name}: wrote outside");
        // A destination that does not exist stays absent.
        let fresh = parent.join("fresh");
        fails(&t, ["unpack".as_ref(), key.as_ref(), fresh.as_os_str()]);
        assert!(!fresh.exists(), "{name}");
    }
}

#[test]
fn corrupted_source_leaves_the_destination_empty() {
    let t = TestStore::new();
    let (www, _) = served_sample(&t, "corrupt");
    let key = ok(&t, ["fetch".as_ref(), www.join("pkg.tar.gz").as_os_str()]);
    let good = t.path("good");
    ok(&t, ["unpack".as_ref(), key.as_ref(), good.as_os_str()]);
    assert!(good.join("configure").is_file() && good.join("src/main.c").is_file());

    let blob = record(&t, &key)["blob"].as_str().unwrap().to_string();
    let fanout = t.store().join("objects").join(&blob[..2]);
    let object = [fanout.join(&blob), fanout.join(format!("{blob}.zst"))]
        .into_iter()
        .find(|p| p.exists())
        .expect("the archive's object");
    let mut data = fs::read(&object).unwrap();
    let middle = data.len() / 2;
    data[middle] ^= 0x40;
    fs::set_permissions(&object, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(&object, &data).unwrap();

    let dest = t.path("dest");
    fs::create_dir(&dest).unwrap();
    let out = fails(&t, ["unpack".as_ref(), key.as_ref(), dest.as_os_str()]);
    assert!(stderr(&out).contains("corrupt"), "{}", stderr(&out));
    assert!(is_empty_dir(&dest));
    let absent = t.path("absent");
    fails(&t, ["unpack".as_ref(), key.as_ref(), absent.as_os_str()]);
    assert!(!absent.exists());
    // Nothing but the destinations was left in the test directory.
    let leftovers: Vec<_> = fs::read_dir(t.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".hdist-unpack"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn unpack_refuses_non_empty_destinations_and_unknown_keys() {
    let t = TestStore::new();
    let (www, _) = served_sample(&t, "dest");
    let key = ok(&t, ["fetch".as_ref(), www.join("pkg.tar.gz").as_os_str()]);
    let out = fails(&t, ["unpack".as_ref(), key.as_ref(), www.as_os_str()]);
    assert!(
        stderr(&out).contains("not an empty directory"),
        "{}",
        stderr(&out)
    );
    let unknown = archive_key("tar.gz", b"never fetched");
    let out = fails(&t, ["unpack".as_ref(), unknown.as_ref(), t.path("x").as_os_str()]);
    assert!(stderr(&out).contains("not in the cache"), "{}", stderr(&out));
    assert!(!t.path("x").exists());
    // Missing parents of the destination are created.
    let deep = t.path("deep/er/dest");
    ok(&t, ["unpack".as_ref(), key.as_ref(), deep.as_os_str()]);
    assert!(deep.join("configure").is_file());
}

fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.org")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.org"),
    )
    .trim()
    .to_string()
}

#[test]
fn git_commits_are_stored_as_trees() {
    let t = TestStore::new();
    let work = t.path("work");
    fs::create_dir_all(work.join("src/sub")).unwrap();
    fs::write(work.join("src/README"), b"readme\n").unwrap();
    fs::write(work.join("src/sub/run.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(work.join("src/sub/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("sub/run.sh", work.join("src/run")).unwrap();
    git(&work, &["init", "-q", "--bare", "repo.git"]);
    let git_dir = work.join("repo.git");
    let gd = format!("--git-dir={}", git_dir.display());
    let wt = format!("--work-tree={}", work.join("src").display());
    git(&work, &[&gd, &wt, "add", "-A"]);
    git(&work, &[&gd, &wt, "commit", "-q", "-m", "one"]);
    git(&work, &[&gd, "branch", "-M", "release"]);
    let commit = git(&work, &[&gd, "rev-parse", "HEAD"]);
    let repo = git_dir.display().to_string();

    let key = ok(&t, ["fetch", "--git", &repo, "release"]);
    assert_eq!(key, format!("git:{commit}"));
    let out = t.path("checkout");
    ok(&t, ["unpack".as_ref(), key.as_ref(), out.as_os_str()]);
    assert_eq!(snapshot(&work.join("src")), snapshot(&out));
    assert!(!out.join(".git").exists());
    assert!(record(&t, &key)["tree"].is_string());

    // By (abbreviated) commit, and with the key: the same source.
    assert_eq!(ok(&t, ["fetch", "--git", &repo, &commit[..10]]), key);
    assert_eq!(ok(&t, ["fetch", "--git", &repo, &commit, &key]), key);
    // A cached full commit id needs no repository at all.
    assert_eq!(ok(&t, ["fetch", "--git", "/nonexistent/repo", &commit]), key);

    let wrong = format!("git:{}", "0".repeat(40));
    let out = hdist(&t, ["fetch", "--git", &repo, "release", &wrong])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = fails(&t, ["fetch", "--git", &repo, "no-such-branch"]);
    assert!(stderr(&out).contains("no-such-branch"), "{}", stderr(&out));
    assert!(tmp_leftovers(&t).is_empty(), "{:?}", tmp_leftovers(&t));
}
