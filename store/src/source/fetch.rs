//! Getting a source into the cache: downloads, local archives, files and directories, git.
//!
//! Every path ends the same way: the key is computed from the bytes *before* anything is
//! stored, compared with the expected key (a mismatch stores nothing), then the objects are
//! committed, then the source document is written (the commit point), then the index row.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::files::{self, Pack};
use super::http::{self, Downloaded};
use super::key::{ArchiveFormat, GitCommit, SourceKey, SourceType};
use super::record::{now, source_record, write_record, KeepPolicy, SourceContent, SourceRecord};
use super::SourceError;
use crate::blob::{BlobService, PutOutcome};
use crate::hash::hash_file;
use crate::http::HttpOptions;
use crate::tree::{self, Entry, IngestedObject, Node, ObjectKind, Tree};
use crate::IoContext;
use crate::Store;

/// Where a source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An `http://` or `https://` URL.
    Url(String),
    /// A local archive, file or directory (from a path or a `file:` URL).
    Path(PathBuf),
    /// A git repository (anything `git fetch` accepts) and a revision in it.
    Git { url: String, rev: String },
}

impl Origin {
    /// Reads what a user typed: an `http(s)://` URL, a `file:` URL (`file:///abs`,
    /// `file://localhost/abs`, `file:/abs`, or Hashdist's `file:relative`), or a plain path.
    ///
    /// # Errors
    /// [`SourceError::BadLocation`] for other URL schemes and `file:` URLs naming another host.
    pub fn parse(location: &str) -> Result<Origin, SourceError> {
        let bad = |reason: &str| SourceError::BadLocation {
            location: location.to_string(),
            reason: reason.to_string(),
        };
        let lower = location.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return Ok(Origin::Url(location.to_string()));
        }
        if lower.starts_with("file:") {
            let rest = &location["file:".len()..];
            let path = match rest.strip_prefix("//") {
                Some(after) => {
                    let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
                    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
                        return Err(bad("a file: URL must name a local path (file:///path)"));
                    }
                    if path.is_empty() {
                        return Err(bad("the file: URL has no path"));
                    }
                    percent_decode(path)
                }
                None => PathBuf::from(rest),
            };
            return Ok(Origin::Path(path));
        }
        if has_scheme(location) {
            return Err(bad(
                "unsupported URL scheme; use http(s)://, file: or a path (and --git for a git repository)",
            ));
        }
        Ok(Origin::Path(PathBuf::from(location)))
    }
}

fn has_scheme(location: &str) -> bool {
    match location.split_once("://") {
        Some((scheme, _)) => {
            let mut chars = scheme.chars();
            chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        }
        None => false,
    }
}

fn percent_decode(text: &str) -> PathBuf {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

/// What a fetch reports while it runs (for a progress bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEvent<'a> {
    /// A download from `url` starts or resumes: `done` bytes are already there, `total` is the
    /// length when the server announced it.
    Download {
        url: &'a str,
        total: Option<u64>,
        done: u64,
    },
    /// `done` bytes of the current download are on disk.
    Progress { done: u64 },
}

/// Everything [`super::fetch`] needs to know.
pub struct FetchRequest<'a> {
    /// Where to get the source.
    pub origin: Origin,
    /// The key the content must have; a mismatch fails with [`SourceError::KeyMismatch`] and
    /// stores nothing. A key that is already cached makes the fetch touch no network at all.
    pub expected: Option<SourceKey>,
    /// The source type when neither the key nor the URL's suffix tells it.
    pub source_type: Option<SourceType>,
    /// Base URLs (http or https) tried first, as `<mirror>/packs/<type>/<digest>`, when the
    /// expected key of an archive is known.
    pub mirrors: Vec<String>,
    /// Free labels recorded with the source.
    pub tags: Vec<String>,
    /// What a garbage collector may do with the source.
    pub keep: KeepPolicy,
    /// Retries and timeouts of downloads.
    pub http: HttpOptions,
    /// Called as a download progresses.
    pub progress: Option<&'a (dyn Fn(FetchEvent<'_>) + Sync)>,
}

impl<'a> FetchRequest<'a> {
    /// A request for `origin` with defaults: no expected key, no mirrors, kept, default
    /// retries.
    pub fn new(origin: Origin) -> FetchRequest<'a> {
        FetchRequest {
            origin,
            expected: None,
            source_type: None,
            mirrors: Vec::new(),
            tags: Vec::new(),
            keep: KeepPolicy::Keep,
            http: HttpOptions::for_downloads(),
            progress: None,
        }
    }

    /// A request for what a user typed (see [`Origin::parse`]).
    pub fn location(location: &str) -> Result<FetchRequest<'a>, SourceError> {
        Ok(FetchRequest::new(Origin::parse(location)?))
    }

    /// A request for revision `rev` (branch, tag or commit) of the git repository `url`.
    pub fn git(url: &str, rev: &str) -> FetchRequest<'a> {
        FetchRequest::new(Origin::Git {
            url: url.to_string(),
            rev: rev.to_string(),
        })
    }
}

impl fmt::Debug for FetchRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchRequest")
            .field("origin", &self.origin)
            .field("expected", &self.expected)
            .field("source_type", &self.source_type)
            .field("mirrors", &self.mirrors)
            .field("tags", &self.tags)
            .field("keep", &self.keep)
            .field("http", &self.http)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Base URLs from `$HDIST_MIRRORS`, separated by whitespace or commas (neither appears
/// unescaped in a URL).
pub fn mirrors_from_env() -> Vec<String> {
    std::env::var("HDIST_MIRRORS")
        .unwrap_or_default()
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .collect()
}

/// See [`super::fetch`].
pub(crate) fn fetch(store: &Store, request: &FetchRequest<'_>) -> Result<SourceKey, SourceError> {
    for tag in &request.tags {
        check_tag(tag)?;
    }
    for mirror in &request.mirrors {
        let lower = mirror.to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(SourceError::BadLocation {
                location: mirror.clone(),
                reason: "a mirror must be an http:// or https:// base URL".to_string(),
            });
        }
    }
    check_types(request)?;
    let location = recorded_location(&request.origin);

    // A key known up front that is cached: no network at all, only the document learns the
    // location and tags.
    let mut known = request.expected;
    if let Origin::Git { url, rev } = &request.origin {
        if let Ok(commit) = rev.parse::<GitCommit>() {
            let actual = SourceKey::Git { commit };
            check_expected(request, actual, url)?;
            known = Some(actual);
        }
    }
    if let Some(key) = known {
        if let Some(record) = present_record(store, &key)? {
            log::info!("{key} is cached; nothing to download");
            update_record(store, record, &location, request)?;
            return Ok(key);
        }
    }
    match &request.origin {
        Origin::Url(url) => fetch_url(store, request, url, &location),
        Origin::Path(path) => fetch_path(store, request, path, &location),
        Origin::Git { url, rev } => fetch_git(store, request, url, rev, &location),
    }
}

/// The record of `key` if its object is present.
pub(crate) fn present_record(store: &Store, key: &SourceKey) -> Result<Option<SourceRecord>, SourceError> {
    match source_record(store, key)? {
        Some(record) if store.blobs().has(&record.content.digest())? => Ok(Some(record)),
        _ => Ok(None),
    }
}

fn check_tag(tag: &str) -> Result<(), SourceError> {
    let bad = |reason: &str| SourceError::BadTag {
        tag: tag.to_string(),
        reason: reason.to_string(),
    };
    if tag.is_empty()
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '=' | '.'))
    {
        return Err(bad("use letters, digits and - _ + = ."));
    }
    if tag == "keep" || tag == "transient" {
        return Err(bad("it names a keep policy; set the policy instead of a label"));
    }
    Ok(())
}

fn check_types(request: &FetchRequest<'_>) -> Result<(), SourceError> {
    let conflict = |reason: String| Err(SourceError::TypeConflict { reason });
    let key_type = request.expected.map(|k| k.source_type());
    if let (Some(given), Some(key_type)) = (request.source_type, key_type) {
        if given != key_type {
            return conflict(format!("the type {given} contradicts the key's type {key_type}"));
        }
    }
    let wanted = request.source_type.or(key_type);
    match (&request.origin, wanted) {
        (Origin::Git { .. }, Some(t)) if t != SourceType::Git => {
            conflict(format!("a git repository gives a git: key, not {t}"))
        }
        (Origin::Url(_) | Origin::Path(_), Some(SourceType::Git)) => {
            conflict("git: sources are fetched with a repository and a revision (--git URL REV)".to_string())
        }
        _ => Ok(()),
    }
}

fn check_expected(request: &FetchRequest<'_>, actual: SourceKey, url: &str) -> Result<(), SourceError> {
    match request.expected {
        Some(expected) if expected != actual => Err(SourceError::KeyMismatch {
            expected,
            actual,
            url: url.to_string(),
        }),
        _ => Ok(()),
    }
}

/// What goes into the document's `urls`: the URL as given, local paths as absolute `file:`
/// locations so they mean the same from anywhere.
fn recorded_location(origin: &Origin) -> String {
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match origin {
        Origin::Url(url) => url.clone(),
        Origin::Path(path) => format!("file:{}", absolute(path).display()),
        Origin::Git { url, .. } => {
            if !has_scheme(url) && Path::new(url).exists() {
                absolute(Path::new(url)).display().to_string()
            } else {
                url.clone()
            }
        }
    }
}

/// A scratch file or directory removed when dropped (also on error paths).
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = match fs::symlink_metadata(&self.0) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&self.0),
            Ok(_) => fs::remove_file(&self.0),
            Err(_) => Ok(()),
        };
    }
}

fn fetch_url(
    store: &Store,
    request: &FetchRequest<'_>,
    url: &str,
    location: &str,
) -> Result<SourceKey, SourceError> {
    let source_type = request
        .source_type
        .or(request.expected.map(|k| k.source_type()))
        .or_else(|| ArchiveFormat::from_location(url).map(SourceType::Archive))
        .ok_or_else(|| SourceError::UnknownType { url: url.to_string() })?;
    let mut candidates = Vec::new();
    if let Some(SourceKey::Archive { format, digest }) = request.expected {
        for mirror in &request.mirrors {
            let base = mirror.trim_end_matches('/');
            candidates.push((format!("{base}/packs/{format}/{digest}"), true));
        }
    }
    candidates.push((url.to_string(), false));
    let client = http::client(&request.http, url)?;
    let mut last_error = None;
    for (candidate, mirror) in candidates {
        let download = Temp(store.scratch().fresh_path("download"));
        let result = http::download(&client, &candidate, &download.0, &request.http, request.progress)
            .and_then(|fetched| {
                let (key, pack) = match source_type {
                    SourceType::Archive(format) => (
                        SourceKey::Archive {
                            format,
                            digest: fetched.digest.short(),
                        },
                        None,
                    ),
                    SourceType::Files => {
                        let name = url_file_name(url)?;
                        let pack = files::pack_file(&download.0, &name)?;
                        (SourceKey::Files { digest: pack.digest }, Some(pack))
                    }
                    SourceType::Git => {
                        return Err(SourceError::TypeConflict {
                            reason: "git: sources are fetched with --git URL REV".to_string(),
                        })
                    }
                };
                check_expected(request, key, &candidate)?;
                Ok((key, fetched, pack))
            });
        let (key, fetched, pack) = match result {
            Ok(found) => found,
            Err(e) if mirror => {
                log::warn!(
                    "mirror {candidate}: {}; trying the next location",
                    crate::error_chain(&e)
                );
                last_error = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(record) = present_record(store, &key)? {
            update_record(store, record, location, request)?;
            return Ok(key);
        }
        return match pack {
            None => store_archive(store, request, key, &download.0, fetched, location),
            Some(pack) => store_single_file(store, request, key, &pack, false, location),
        };
    }
    Err(last_error.unwrap_or_else(|| SourceError::BadLocation {
        location: url.to_string(),
        reason: "nothing to fetch from".to_string(),
    }))
}

/// The last path segment of a URL, the name a downloaded single file gets.
fn url_file_name(url: &str) -> Result<Vec<u8>, SourceError> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.splitn(4, '/').nth(3).unwrap_or("");
    match after_host.rsplit('/').next() {
        Some(name) if !name.is_empty() && name != "." && name != ".." => Ok(name.as_bytes().to_vec()),
        _ => Err(SourceError::BadLocation {
            location: url.to_string(),
            reason: "the URL names no file, so a files: source has no name for it".to_string(),
        }),
    }
}

fn fetch_path(
    store: &Store,
    request: &FetchRequest<'_>,
    path: &Path,
    location: &str,
) -> Result<SourceKey, SourceError> {
    let meta = fs::metadata(path).io_context("open", path)?;
    let wanted = request.source_type.or(request.expected.map(|k| k.source_type()));
    if meta.is_dir() {
        if let Some(t) = wanted.filter(|t| *t != SourceType::Files) {
            return Err(SourceError::TypeConflict {
                reason: format!(
                    "{} is a directory, which gives a files: key, not {t}",
                    path.display()
                ),
            });
        }
        let pack = files::pack_directory(path)?;
        let key = SourceKey::Files { digest: pack.digest };
        check_expected(request, key, location)?;
        if let Some(record) = present_record(store, &key)? {
            update_record(store, record, location, request)?;
            return Ok(key);
        }
        let batch = store.objects().batch();
        // The key covers content only, so mtimes are normalised: one key, one tree.
        let ingested = tree::ingest_tree(&batch, path, tree::MtimePolicy::Zero, &|_| {})?;
        batch.commit()?;
        if !files::tree_matches(store.blobs().as_ref(), &ingested.root, &pack)? {
            return Err(SourceError::Changed {
                path: path.to_path_buf(),
            });
        }
        commit_record(
            store,
            request,
            key,
            SourceContent::Tree(ingested.root),
            pack.bytes(),
            location,
            &ingested.objects,
        )?;
        return Ok(key);
    }
    let name = path.to_string_lossy();
    let source_type = wanted
        .or_else(|| ArchiveFormat::from_location(&name).map(SourceType::Archive))
        .unwrap_or(SourceType::Files);
    match source_type {
        SourceType::Archive(format) => {
            let (digest, size) = hash_file(path).io_context("read", path)?;
            let key = SourceKey::Archive {
                format,
                digest: digest.short(),
            };
            check_expected(request, key, location)?;
            if let Some(record) = present_record(store, &key)? {
                update_record(store, record, location, request)?;
                return Ok(key);
            }
            store_archive(store, request, key, path, Downloaded { digest, size }, location)
        }
        SourceType::Files => {
            let Some(name) = path.file_name() else {
                return Err(SourceError::BadLocation {
                    location: path.display().to_string(),
                    reason: "the path names no file".to_string(),
                });
            };
            let pack = files::pack_file(path, name.as_bytes())?;
            let key = SourceKey::Files { digest: pack.digest };
            check_expected(request, key, location)?;
            if let Some(record) = present_record(store, &key)? {
                update_record(store, record, location, request)?;
                return Ok(key);
            }
            let executable = meta.permissions().mode() & 0o111 != 0;
            store_single_file(store, request, key, &pack, executable, location)
        }
        SourceType::Git => Err(SourceError::TypeConflict {
            reason: "git: sources are fetched with --git URL REV".to_string(),
        }),
    }
}

/// Stores the archive at `path` as one blob, checking it still has the digest it was keyed by.
fn store_archive(
    store: &Store,
    request: &FetchRequest<'_>,
    key: SourceKey,
    path: &Path,
    hashed: Downloaded,
    location: &str,
) -> Result<SourceKey, SourceError> {
    let batch = store.objects().batch();
    let outcome = batch.put_file(path)?;
    // Committed even on a mismatch: the object is valid content under its own digest, and an
    // uncommitted batch would leave its scratch file behind.
    batch.commit()?;
    if outcome.digest != hashed.digest {
        return Err(SourceError::Changed {
            path: path.to_path_buf(),
        });
    }
    let objects = [object(outcome, ObjectKind::Blob)];
    commit_record(
        store,
        request,
        key,
        SourceContent::Blob(outcome.digest),
        hashed.size,
        location,
        &objects,
    )?;
    Ok(key)
}

/// Stores a single file as a tree holding it under its pack name.
fn store_single_file(
    store: &Store,
    request: &FetchRequest<'_>,
    key: SourceKey,
    pack: &Pack,
    executable: bool,
    location: &str,
) -> Result<SourceKey, SourceError> {
    let [file] = pack.files.as_slice() else {
        return Err(SourceError::BadLocation {
            location: location.to_string(),
            reason: "expected exactly one file".to_string(),
        });
    };
    let batch = store.objects().batch();
    let blob = batch.put_file(&file.path)?;
    let tree = Tree::new(vec![Entry {
        name: file.name.clone(),
        node: Node::File {
            digest: blob.digest,
            size: blob.size,
            executable,
        },
        mtime: tree::Mtime::ZERO,
    }])?;
    let root = batch.put_bytes(&tree.encode())?;
    batch.commit()?;
    if blob.digest != file.digest || blob.size != file.size {
        return Err(SourceError::Changed {
            path: file.path.clone(),
        });
    }
    let objects = [object(blob, ObjectKind::Blob), object(root, ObjectKind::Tree)];
    commit_record(
        store,
        request,
        key,
        SourceContent::Tree(root.digest),
        file.size,
        location,
        &objects,
    )?;
    Ok(key)
}

fn object(outcome: PutOutcome, kind: ObjectKind) -> IngestedObject {
    IngestedObject { outcome, kind }
}

/// Writes the document of a freshly stored source (merging into an existing one whose object
/// went missing), then indexes its objects.
fn commit_record(
    store: &Store,
    request: &FetchRequest<'_>,
    key: SourceKey,
    content: SourceContent,
    size: u64,
    location: &str,
    objects: &[IngestedObject],
) -> Result<(), SourceError> {
    let record = match source_record(store, &key)? {
        Some(mut existing) => {
            if !store.blobs().has(&existing.content.digest())? {
                existing.content = content;
                existing.size = size;
            }
            existing.merge(Some(location), &request.tags, request.keep);
            existing
        }
        None => {
            let mut record = SourceRecord {
                key,
                content,
                size,
                urls: Vec::new(),
                tags: Vec::new(),
                keep: request.keep,
                fetched: now(),
            };
            record.merge(Some(location), &request.tags, request.keep);
            record
        }
    };
    write_record(store, &record)?;
    store.index().record(objects, None)?;
    log::info!("stored {key} ({size} bytes)");
    Ok(())
}

/// Records another fetch of a cached source.
fn update_record(
    store: &Store,
    mut record: SourceRecord,
    location: &str,
    request: &FetchRequest<'_>,
) -> Result<(), SourceError> {
    if record.merge(Some(location), &request.tags, request.keep) {
        write_record(store, &record)?;
    }
    Ok(())
}

fn fetch_git(
    store: &Store,
    request: &FetchRequest<'_>,
    url: &str,
    rev: &str,
    location: &str,
) -> Result<SourceKey, SourceError> {
    check_git_arguments(url, rev)?;
    // Absolute: the checkout commands run inside the work tree, and the store path may be
    // relative.
    let scratch = store.scratch().fresh_path("git");
    let work = Temp(std::path::absolute(&scratch).io_context("resolve", &scratch)?);
    fs::create_dir_all(&work.0).io_context("create directory", &work.0)?;
    let git_dir = work.0.join("repo.git");
    let gd = git_dir.as_os_str();
    let os = OsStr::new;
    git(
        url,
        "init",
        &[os("init"), os("--quiet"), os("--bare"), gd],
        None,
        false,
    )?;
    let commit = fetch_commit(url, rev, gd)?;
    let key = SourceKey::Git { commit };
    check_expected(request, key, url)?;
    if let Some(record) = present_record(store, &key)? {
        update_record(store, record, location, request)?;
        return Ok(key);
    }
    let checkout = work.0.join("tree");
    check_out(url, gd, &commit, &checkout)?;
    let batch = store.objects().batch();
    // Git records no mtimes; the checkout's are the time of this fetch.
    let ingested = tree::ingest_tree(&batch, &checkout, tree::MtimePolicy::Zero, &|_| {})?;
    batch.commit()?;
    commit_record(
        store,
        request,
        key,
        SourceContent::Tree(ingested.root),
        ingested.bytes,
        location,
        &ingested.objects,
    )?;
    Ok(key)
}

/// Refuses a repository or revision git would read as an option (or nothing at all).
fn check_git_arguments(url: &str, rev: &str) -> Result<(), SourceError> {
    // Leading dashes would be read as options by git.
    for (what, value) in [("repository", url), ("revision", rev)] {
        if value.is_empty() || value.starts_with('-') {
            return Err(SourceError::BadLocation {
                location: value.to_string(),
                reason: format!("not a git {what}"),
            });
        }
    }
    Ok(())
}

/// Fetches `rev` of `url` into the bare repository `gd` and returns its commit.
fn fetch_commit(url: &str, rev: &str, gd: &OsStr) -> Result<GitCommit, SourceError> {
    let os = OsStr::new;
    // A shallow fetch of just the revision is enough and cheapest; servers that refuse it (an
    // abbreviated commit id, old servers) get a full fetch of branches and tags.
    let shallow = git(
        url,
        "fetch",
        &[
            os("--git-dir"),
            gd,
            os("fetch"),
            os("--quiet"),
            os("--no-tags"),
            os("--depth"),
            os("1"),
            os("--"),
            os(url),
            os(rev),
        ],
        None,
        false,
    );
    let commit_text = match shallow {
        Ok(_) => git(
            url,
            "rev-parse",
            &[
                os("--git-dir"),
                gd,
                os("rev-parse"),
                os("--verify"),
                os("--quiet"),
                os("FETCH_HEAD^{commit}"),
            ],
            None,
            false,
        )?,
        Err(e) => {
            log::info!(
                "{}; fetching all branches and tags instead",
                crate::error_chain(&e)
            );
            git(
                url,
                "fetch",
                &[
                    os("--git-dir"),
                    gd,
                    os("fetch"),
                    os("--quiet"),
                    os("--no-tags"),
                    os("--"),
                    os(url),
                    os("+refs/heads/*:refs/heads/*"),
                    os("+refs/tags/*:refs/tags/*"),
                ],
                None,
                false,
            )?;
            let spec = format!("{rev}^{{commit}}");
            git(
                url,
                "rev-parse",
                &[
                    os("--git-dir"),
                    gd,
                    os("rev-parse"),
                    os("--verify"),
                    os("--quiet"),
                    os("--end-of-options"),
                    os(&spec),
                ],
                None,
                false,
            )
            .map_err(|_| SourceError::Git {
                url: url.to_string(),
                action: "rev-parse",
                message: format!("the repository has no commit {rev:?}"),
            })?
        }
    };
    let commit: GitCommit = commit_text.trim().parse().map_err(|e| SourceError::Git {
        url: url.to_string(),
        action: "rev-parse",
        message: format!("unexpected commit id {:?}: {e}", commit_text.trim()),
    })?;
    Ok(commit)
}

/// Checks `commit` of the bare repository `gd` out into the new directory `checkout`.
fn check_out(url: &str, gd: &OsStr, commit: &GitCommit, checkout: &Path) -> Result<(), SourceError> {
    let os = OsStr::new;
    // The checkout goes to its own directory, so the stored tree never contains `.git`. User
    // and system configuration are ignored there (no autocrlf, no LFS smudge filters): the
    // content depends on the commit alone.
    fs::create_dir(checkout).io_context("create directory", checkout)?;
    let wt = checkout.as_os_str();
    let commit_hex = commit.to_string();
    git(
        url,
        "read-tree",
        &[
            os("--git-dir"),
            gd,
            os("--work-tree"),
            wt,
            os("read-tree"),
            os(&commit_hex),
        ],
        Some(checkout),
        true,
    )?;
    git(
        url,
        "checkout-index",
        &[
            os("--git-dir"),
            gd,
            os("--work-tree"),
            wt,
            os("checkout-index"),
            os("--all"),
            os("--force"),
        ],
        Some(checkout),
        true,
    )?;
    Ok(())
}

/// Runs git; returns its standard output.
fn git(
    url: &str,
    action: &'static str,
    args: &[&OsStr],
    cwd: Option<&Path>,
    isolated: bool,
) -> Result<String, SourceError> {
    let mut cmd = Command::new("git");
    cmd.args(args)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    // Variables that would point git at another repository, index or object store.
    for var in [
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_COMMON_DIR",
    ] {
        cmd.env_remove(var);
    }
    if isolated {
        cmd.env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ATTR_NOSYSTEM", "1");
    }
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    let output = cmd.output().map_err(|e| SourceError::Git {
        url: url.to_string(),
        action,
        message: format!("cannot run git ({e}); install git"),
    })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = message[message.len().saturating_sub(3)..].join("; ");
        return Err(SourceError::Git {
            url: url.to_string(),
            action,
            message: if tail.is_empty() {
                format!("git exited with {}", output.status)
            } else {
                tail
            },
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        assert_eq!(
            Origin::parse("https://x.org/a.tar.gz").unwrap(),
            Origin::Url("https://x.org/a.tar.gz".into())
        );
        assert_eq!(
            Origin::parse("file:///tmp/a%20b").unwrap(),
            Origin::Path("/tmp/a b".into())
        );
        assert_eq!(
            Origin::parse("file://localhost/tmp/x").unwrap(),
            Origin::Path("/tmp/x".into())
        );
        assert_eq!(
            Origin::parse("file:/tmp/x").unwrap(),
            Origin::Path("/tmp/x".into())
        );
        assert_eq!(Origin::parse("file:rel/x").unwrap(), Origin::Path("rel/x".into()));
        assert_eq!(
            Origin::parse("some/dir").unwrap(),
            Origin::Path("some/dir".into())
        );
        assert!(matches!(
            Origin::parse("ftp://x.org/a.tar.gz"),
            Err(SourceError::BadLocation { .. })
        ));
        assert!(matches!(
            Origin::parse("file://other/x"),
            Err(SourceError::BadLocation { .. })
        ));
        assert_eq!(percent_decode("/a%2"), PathBuf::from("/a%2"));
        assert_eq!(percent_decode("%41%zz"), PathBuf::from("A%zz"));
    }

    #[test]
    fn url_names_and_tags() {
        assert_eq!(url_file_name("http://h/a/b.txt?x=1").unwrap(), b"b.txt");
        assert!(url_file_name("http://h/").is_err());
        assert!(url_file_name("http://h").is_err());
        assert!(check_tag("gnu-2.10").is_ok());
        assert!(check_tag("a b").is_err());
        assert!(check_tag("transient").is_err());
    }
}
