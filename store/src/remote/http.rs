//! [`HttpBlobService`]: objects of a published store fetched over HTTP(S).
//!
//! One `reqwest` client per service: keep-alive connections are pooled and shared by every
//! thread (the FUSE workers and the prefetchers run requests in parallel). `HTTP_PROXY`,
//! `HTTPS_PROXY` and `NO_PROXY` are honoured (reqwest reads them). Several mirror URLs may be
//! given: requests go to the mirror that answered last; a mirror that fails is skipped for
//! [`MIRROR_PENALTY`] so that an outage costs one timeout, not one per request; when every
//! mirror is down each is still tried once, without retries, so a read fails within a bounded
//! time (about `timeout × mirrors`) instead of hanging.
//!
//! Every object is decompressed (with a size cap against decompression bombs) and checked
//! against its digest before it is returned; a mismatch is logged and refused.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header;
use reqwest::StatusCode;

use super::{object_path, RemoteError};
use crate::blob::{BlobError, BlobService};
use crate::hash::Digest;

/// How long a failed mirror is skipped in favour of the others.
pub const MIRROR_PENALTY: Duration = Duration::from_secs(5);

/// How hard requests try.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Connect timeout, and total time limit of one request.
    pub timeout: Duration,
    /// Further attempts per mirror for failures that may pass (network errors, 5xx, 429).
    pub retries: u32,
    /// First retry delay, doubled each time.
    pub backoff: Duration,
    /// Largest raw object accepted (whole objects are held in memory; large files arrive as
    /// 1 MiB chunks).
    pub max_object: u64,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            timeout: Duration::from_secs(5),
            retries: 2,
            backoff: Duration::from_millis(100),
            max_object: 512 << 20,
        }
    }
}

/// Request counters (for logs and benchmarks).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests sent (including retries).
    pub requests: AtomicU64,
    /// Body bytes received.
    pub bytes: AtomicU64,
    /// Requests that failed.
    pub failures: AtomicU64,
}

/// The answer to a conditional GET.
#[derive(Debug)]
pub enum Fetched {
    /// The body, with the URL it came from and its ETag.
    Body {
        bytes: Vec<u8>,
        url: String,
        etag: Option<String>,
    },
    /// `304 Not Modified`.
    NotModified,
}

/// Objects of a published store, over HTTP.
#[derive(Debug)]
pub struct HttpBlobService {
    mirrors: Vec<String>,
    client: Client,
    options: HttpOptions,
    preferred: AtomicUsize,
    down_until: Mutex<Vec<Option<Instant>>>,
    stats: HttpStats,
}

enum Attempt {
    Done(Fetched),
    NotFound,
    /// Worth retrying (network, 5xx).
    Transient(String),
}

impl HttpBlobService {
    /// A service over `mirrors` (base URLs of published directories, tried in order).
    pub fn new(mirrors: &[String], options: HttpOptions) -> Result<HttpBlobService, RemoteError> {
        if mirrors.is_empty() {
            return Err(RemoteError::Unreachable {
                what: "the store".into(),
                tried: "no mirror".into(),
                reason: "give at least one URL".into(),
            });
        }
        let client = Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("hdist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RemoteError::Unreachable {
                what: "an HTTP client".into(),
                tried: mirrors.join(", "),
                reason: e.to_string(),
            })?;
        Ok(HttpBlobService {
            mirrors: mirrors
                .iter()
                .map(|m| m.trim_end_matches('/').to_string())
                .collect(),
            client,
            options,
            preferred: AtomicUsize::new(0),
            down_until: Mutex::new(vec![None; mirrors.len()]),
            stats: HttpStats::default(),
        })
    }

    /// The mirrors, in configured order.
    pub fn mirrors(&self) -> &[String] {
        &self.mirrors
    }

    /// Request counters.
    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// GETs `path` (relative to the mirror root) from the first mirror that has it. With
    /// `etag`, a `304` answer is [`Fetched::NotModified`]. `Ok(None)`: every mirror that
    /// answered said 404.
    pub fn get(&self, path: &str, etag: Option<&str>) -> Result<Option<Fetched>, RemoteError> {
        let now = Instant::now();
        let start = self.preferred.load(Ordering::Relaxed);
        let n = self.mirrors.len();
        let order: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        let down: Vec<bool> = {
            let down = self.down_until.lock().unwrap();
            order.iter().map(|&i| down[i].is_some_and(|t| t > now)).collect()
        };
        let all_down = down.iter().all(|d| *d);
        let mut errors = Vec::new();
        for (pos, &i) in order.iter().enumerate() {
            if down[pos] && !all_down {
                continue;
            }
            // When every mirror is known to be down, one quick attempt each: bounded failure.
            let attempts = if all_down { 1 } else { self.options.retries + 1 };
            let url = format!("{}/{path}", self.mirrors[i]);
            let mut delay = self.options.backoff;
            let mut failed = false;
            for attempt in 0..attempts {
                if attempt > 0 {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                match self.attempt(&url, etag) {
                    Attempt::Done(fetched) => {
                        self.preferred.store(i, Ordering::Relaxed);
                        self.down_until.lock().unwrap()[i] = None;
                        return Ok(Some(fetched));
                    }
                    Attempt::NotFound => break,
                    Attempt::Transient(reason) => {
                        self.stats.failures.fetch_add(1, Ordering::Relaxed);
                        log::debug!("{url}: {reason} (attempt {})", attempt + 1);
                        if attempt + 1 == attempts {
                            errors.push(format!("{url}: {reason}"));
                            failed = true;
                        }
                    }
                }
            }
            if failed {
                log::warn!(
                    "mirror {} failed; skipping it for {MIRROR_PENALTY:?}",
                    self.mirrors[i]
                );
                self.down_until.lock().unwrap()[i] = Some(Instant::now() + MIRROR_PENALTY);
            }
        }
        // Only a 404 from every mirror that was asked means "absent"; a mirror that could not
        // answer might have had it.
        if errors.is_empty() {
            return Ok(None);
        }
        Err(RemoteError::Unreachable {
            what: path.to_string(),
            tried: self.mirrors.join(", "),
            reason: errors.join("; "),
        })
    }

    fn attempt(&self, url: &str, etag: Option<&str>) -> Attempt {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut request = self.client.get(url);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = match request.send() {
            Ok(r) => r,
            Err(e) => return Attempt::Transient(error_chain(&e)),
        };
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Attempt::Done(Fetched::NotModified);
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN {
            // S3 answers 403 for missing keys of a bucket without list permission.
            return Attempt::NotFound;
        }
        if !status.is_success() {
            return Attempt::Transient(format!("HTTP {status}"));
        }
        let new_etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut bytes = Vec::new();
        let limit = self.options.max_object + 1024;
        match response.take(limit).read_to_end(&mut bytes) {
            Ok(_) => {}
            Err(e) => return Attempt::Transient(format!("reading the body: {e}")),
        }
        self.stats.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Attempt::Done(Fetched::Body {
            bytes,
            url: url.to_string(),
            etag: new_etag,
        })
    }

    /// Fetches, decompresses and verifies one object.
    pub fn fetch_object(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let path = object_path(digest);
        let fetched = self.get(&path, None).map_err(|e| BlobError::Io {
            action: "fetch",
            path: PathBuf::from(&path),
            source: io::Error::other(e),
        })?;
        let (bytes, url) = match fetched {
            Some(Fetched::Body { bytes, url, .. }) => (bytes, url),
            _ => {
                return Err(BlobError::NotFound {
                    digest: *digest,
                    location: PathBuf::from(self.mirrors.join(" ")),
                })
            }
        };
        let mut raw = Vec::new();
        let decoded = zstd::stream::Decoder::new(&bytes[..])
            .and_then(|d| d.take(self.options.max_object + 1).read_to_end(&mut raw));
        if let Err(source) = decoded {
            log::error!("refusing object {digest} from {url}: it does not decompress ({source})");
            return Err(BlobError::Undecodable {
                digest: *digest,
                path: PathBuf::from(url),
                source,
            });
        }
        let actual = Digest::of(&raw);
        if actual != *digest {
            log::error!("refusing object {digest} from {url}: its content hashes to {actual}");
            return Err(BlobError::Corrupt {
                digest: *digest,
                path: PathBuf::from(url),
                actual,
            });
        }
        Ok(raw)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl BlobService for HttpBlobService {
    fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        match self.fetch_object(digest) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        Ok(self.fetch_object(digest)?.len() as u64)
    }

    fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        self.fetch_object(digest)
    }

    fn open(&self, digest: &Digest) -> Result<std::fs::File, BlobError> {
        let raw = self.fetch_object(digest)?;
        let mut file = tempfile::tempfile().map_err(BlobError::io("create temp file", "$TMPDIR"))?;
        io::Write::write_all(&mut file, &raw).map_err(BlobError::io("write temp file", "$TMPDIR"))?;
        io::Seek::seek(&mut file, io::SeekFrom::Start(0)).map_err(BlobError::io("seek", "$TMPDIR"))?;
        Ok(file)
    }
}
