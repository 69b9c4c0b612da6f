//! [`HttpBlobService`]: objects of a published store fetched over HTTP(S).
//!
//! Requests go through the store's one HTTP client ([`crate::http`]): one `reqwest` client per
//! service, its keep-alive connections pooled and shared by every thread (the FUSE workers and
//! the prefetchers run requests in parallel), proxies from the environment, the retry loop and
//! the mirror list with its penalty.
//!
//! Bounds (what a read of an uncached file costs when the server misbehaves):
//! - **Time.** Each mirror gets one [`HttpOptions::timeout`](crate::http::HttpOptions::timeout) per request, in total: connecting,
//!   headers, body and retries all fit in it (a [`Deadline`], not a per-byte timeout, so a
//!   server that dribbles one byte at a time is given up on at the deadline too). A read thus
//!   fails within about `timeout × mirrors` (the README's `--timeout` × mirrors).
//! - **Fail fast.** A mirror that fails (no connection, timeout, 5xx, truncated or too slow
//!   body) is marked down for [`MIRROR_PENALTY`]; requests skip it meanwhile, and when every
//!   mirror is down a request fails at once, without touching the network, until a penalty
//!   expires. A mirror that answers with bytes that do not verify is not marked down (it is
//!   reachable; the object is refused and the next mirror asked); the refused object itself
//!   then fails at once for [`MIRROR_PENALTY`] (a `stat` and an `open` of one file do not
//!   fetch it twice).
//! - **Memory.** Bodies are streamed: decompressed and hashed piece by piece straight into the
//!   caller's file ([`BlobService::copy_to`], what the node's cache uses), never held whole; a
//!   body may not exceed [`HttpOptions::max_body`](crate::http::HttpOptions::max_body)
//!   (compressed or decompressed), so an endless
//!   or bomb body stops there. Manifests are read into memory, at most [`MAX_MANIFEST`].
//!
//! Every object is checked against its digest before it is returned; a mismatch is logged and
//! refused.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use reqwest::blocking::{Client, Response};
use reqwest::header;
use reqwest::StatusCode;

use super::{object_path, RemoteError};
use crate::blob::{BlobError, BlobService};
use crate::hash::{Digest, DigestWriter};
use crate::http::{retry, BodyError, BodyLimits, BoundedBody, Deadline, Failure, HttpError, Mirrors, Turn};
pub use crate::http::{HttpOptions, MIRROR_PENALTY};
use crate::{IoContext, IoError};

/// Largest `manifest.json` accepted (it is held in memory).
pub const MAX_MANIFEST: u64 = 64 << 20;

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
    mirrors: Mirrors,
    client: Client,
    options: HttpOptions,
    /// Objects refused lately (their bytes did not verify), with when and why.
    refused: Mutex<HashMap<Digest, (Instant, String)>>,
    stats: HttpStats,
}

/// A successful exchange with one mirror.
enum Reply<T> {
    Body {
        value: T,
        url: String,
        etag: Option<String>,
    },
    NotModified,
}

/// What is done with a good response's body (given its URL): a manifest is kept in memory, an
/// object decoded into a file.
type Consumer<'a, T> = dyn FnMut(&str, &mut BoundedBody<Response>) -> Result<T, Refusal> + 'a;

/// How consuming a body failed.
enum Refusal {
    /// The connection or a limit (deadline, size): the mirror failed.
    Transport(io::Error),
    /// The bytes do not verify: this mirror's copy is bad; another may be good.
    Content(BlobError),
    /// Writing locally failed: no mirror can help.
    Local(BlobError),
}

/// How an attempt that may not be retried ended (the others fail with an [`HttpError`]:
/// network, 5xx, deadline).
enum Answer<T> {
    Done(Reply<T>),
    NotFound,
    Refused(BlobError),
    Local(BlobError),
}

/// Where a fetched object goes; emptied before each attempt (a failed one may have written
/// part of a body).
trait Sink: Write {
    fn reset(&mut self) -> io::Result<()>;
}

impl Sink for Vec<u8> {
    fn reset(&mut self) -> io::Result<()> {
        self.clear();
        Ok(())
    }
}

impl Sink for File {
    fn reset(&mut self) -> io::Result<()> {
        self.set_len(0)?;
        self.rewind()
    }
}

/// Size of the pieces a body is decompressed in.
const PIECE: usize = 64 << 10;

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
        // Each request also carries its remaining deadline as its own timeout (see
        // `attempt`); the client-wide one is only the fallback.
        let client = crate::http::client(&options, &mirrors.join(", "))?;
        Ok(HttpBlobService {
            mirrors: Mirrors::new(mirrors),
            client,
            options,
            refused: Mutex::new(HashMap::new()),
            stats: HttpStats::default(),
        })
    }

    /// The mirrors, in configured order.
    pub fn mirrors(&self) -> &[String] {
        self.mirrors.urls()
    }

    /// Request counters.
    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// GETs `path` (relative to the mirror root, at most [`MAX_MANIFEST`] bytes) from the
    /// first mirror that has it. With `etag`, a `304` answer is [`Fetched::NotModified`].
    /// `Ok(None)`: every mirror that answered said 404.
    pub fn get(&self, path: &str, etag: Option<&str>) -> Result<Option<Fetched>, RemoteError> {
        let mut read_all = |_: &str, body: &mut BoundedBody<Response>| {
            let mut bytes = Vec::new();
            body.read_to_end(&mut bytes).map_err(Refusal::Transport)?;
            Ok(bytes)
        };
        Ok(self
            .request(path, etag, MAX_MANIFEST, &mut read_all)?
            .map(|reply| match reply {
                Reply::Body { value, url, etag } => Fetched::Body {
                    bytes: value,
                    url,
                    etag,
                },
                Reply::NotModified => Fetched::NotModified,
            }))
    }

    /// Asks the mirrors in turn (the one that answered last first, the ones marked down
    /// skipped) and hands the first good body to `consume`.
    fn request<T>(
        &self,
        path: &str,
        etag: Option<&str>,
        max_bytes: u64,
        consume: &mut Consumer<'_, T>,
    ) -> Result<Option<Reply<T>>, RemoteError> {
        let mut errors = Vec::new();
        let mut refused = None;
        for turn in self.mirrors.turns() {
            let (i, base) = match turn {
                Turn::Ask(i, base) => (i, base),
                Turn::Down(base, left, reason) => {
                    errors.push(format!(
                        "{base}: marked down for {:.1} s more after: {reason}",
                        left.as_secs_f64()
                    ));
                    continue;
                }
            };
            let url = format!("{base}/{path}");
            let deadline = Deadline::after(self.options.timeout);
            let mut attempts = 0;
            let answer = retry(
                &self.options,
                Some(deadline),
                || {
                    self.attempt(&url, etag, deadline, max_bytes, consume)
                        .map_err(|e| {
                            self.stats.failures.fetch_add(1, Ordering::Relaxed);
                            attempts += 1;
                            log::debug!("{url}: {} (attempt {attempts})", e.without_url());
                            Failure::Retry(e)
                        })
                },
                |_, _, _| {},
            );
            match answer {
                Ok(Answer::Done(reply)) => {
                    self.mirrors.answered(i);
                    return Ok(Some(reply));
                }
                Ok(Answer::NotFound) => {}
                Ok(Answer::Local(e)) => return Err(RemoteError::Blob(e)),
                Ok(Answer::Refused(e)) => {
                    errors.push(format!("{url}: {e}"));
                    refused.get_or_insert(e);
                }
                Err(failed) => {
                    // Flattened only here: the text is all a mark and the final error keep.
                    let reason = failed.without_url();
                    errors.push(format!("{url}: {reason}"));
                    self.mirrors.mark_down(i, reason);
                }
            }
        }
        if let Some(e) = refused {
            return Err(RemoteError::Blob(e));
        }
        // Only a 404 from every mirror means "absent"; a mirror that could not answer (or was
        // skipped) might have had it.
        if errors.is_empty() {
            return Ok(None);
        }
        Err(RemoteError::Unreachable {
            what: path.to_string(),
            tried: self.mirrors.urls().join(", "),
            reason: errors.join("; "),
        })
    }

    fn attempt<T>(
        &self,
        url: &str,
        etag: Option<&str>,
        deadline: Deadline,
        max_bytes: u64,
        consume: &mut Consumer<'_, T>,
    ) -> Result<Answer<T>, HttpError> {
        let Some(left) = deadline.remaining() else {
            let passed = BodyError::DeadlinePassed {
                budget: deadline.budget(),
                received: 0,
            };
            return Err(HttpError::Body {
                url: url.to_string(),
                source: io::Error::new(io::ErrorKind::TimedOut, passed),
            });
        };
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // The remaining time as reqwest's total timeout: it then also ends a body read that
        // blocks past the deadline.
        let mut request = self.client.get(url).timeout(left);
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request.send().map_err(|source| HttpError::Network {
            url: url.to_string(),
            source,
        })?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED {
            return Ok(Answer::Done(Reply::NotModified));
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::FORBIDDEN {
            // S3 answers 403 for missing keys of a bucket without list permission.
            return Ok(Answer::NotFound);
        }
        if !status.is_success() {
            return Err(HttpError::status(url, status));
        }
        let new_etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let limits = BodyLimits {
            deadline: Some(deadline),
            max_bytes: Some(max_bytes),
            min_rate: None,
        };
        let mut body = BoundedBody::new(response, limits);
        let consumed = consume(url, &mut body);
        self.stats.bytes.fetch_add(body.received(), Ordering::Relaxed);
        match consumed {
            Ok(value) => Ok(Answer::Done(Reply::Body {
                value,
                url: url.to_string(),
                etag: new_etag,
            })),
            Err(Refusal::Transport(source)) => Err(HttpError::Body {
                url: url.to_string(),
                source,
            }),
            Err(Refusal::Content(e)) => Ok(Answer::Refused(e)),
            Err(Refusal::Local(e)) => Ok(Answer::Local(e)),
        }
    }

    /// Fetches one object, decompressing and hashing it piece by piece into `out`, and
    /// checks it against `digest`. Returns its raw length. On error `out` holds partial or
    /// unverified bytes.
    fn fetch_into(&self, digest: &Digest, out: &mut dyn Sink) -> Result<u64, BlobError> {
        let path = object_path(digest);
        if let Some((at, reason)) = self.refused.lock().unwrap().get(digest) {
            if at.elapsed() < MIRROR_PENALTY {
                let refusal = format!(
                    "refused {:.1} s ago ({reason}); not fetched again for {MIRROR_PENALTY:?}",
                    at.elapsed().as_secs_f64()
                );
                return Err(IoError::new("fetch", &path, io::Error::other(refusal)).into());
            }
        }
        let max = self.options.max_body.unwrap_or(u64::MAX);
        let mut decode = |url: &str, body: &mut BoundedBody<Response>| {
            out.reset()
                .map_err(|e| Refusal::Local(BlobError::object_io("truncate the output for", digest)(e)))?;
            let mut hasher = DigestWriter::new();
            let decoded = decode_piecewise(body, max, &mut hasher, &mut *out);
            match decoded {
                Ok(len) => {
                    let actual = hasher.finish();
                    if actual != *digest {
                        log::error!("refusing object {digest} from {url}: its content hashes to {actual}");
                        return Err(Refusal::Content(BlobError::Corrupt {
                            digest: *digest,
                            path: PathBuf::from(url),
                            actual,
                        }));
                    }
                    Ok(len)
                }
                Err(Decode::Write(e)) => Err(Refusal::Local(BlobError::object_io("write", digest)(e))),
                Err(Decode::Deadline(e)) => Err(Refusal::Transport(e)),
                Err(Decode::Read(e)) if body.failed() => Err(Refusal::Transport(e)),
                Err(Decode::Read(source)) => {
                    log::error!("refusing object {digest} from {url}: it does not decompress ({source})");
                    Err(Refusal::Content(BlobError::Undecodable {
                        digest: *digest,
                        path: PathBuf::from(url),
                        source,
                    }))
                }
            }
        };
        // Compressed bodies are at most a little larger than their content.
        match self.request(&path, None, max.saturating_add(1024), &mut decode) {
            Ok(Some(Reply::Body { value, .. })) => Ok(value),
            Ok(_) => Err(BlobError::NotFound {
                digest: *digest,
                location: PathBuf::from(self.mirrors.urls().join(" ")),
            }),
            Err(RemoteError::Blob(e)) => {
                if matches!(e, BlobError::Corrupt { .. } | BlobError::Undecodable { .. }) {
                    let mut refused = self.refused.lock().unwrap();
                    refused.retain(|_, (at, _)| at.elapsed() < MIRROR_PENALTY);
                    refused.insert(*digest, (Instant::now(), e.to_string()));
                }
                Err(e)
            }
            // Any other remote failure (transport, status) keeps its own type as the source.
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches, decompresses and verifies one object into memory.
    pub fn fetch_object(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let mut raw = Vec::new();
        self.fetch_into(digest, &mut raw)?;
        Ok(raw)
    }
}

/// Why decoding a body stopped.
enum Decode {
    /// Reading or decompressing the body.
    Read(io::Error),
    /// Writing the output.
    Write(io::Error),
    /// The deadline passed while decompressing (a body that expands enormously is read
    /// rarely, so the body's own check would come late).
    Deadline(io::Error),
}

/// Decompresses `body` in pieces into `hasher` and `out`; at most `max` bytes of output.
fn decode_piecewise(
    body: &mut BoundedBody<Response>,
    max: u64,
    hasher: &mut DigestWriter,
    out: &mut dyn Write,
) -> Result<u64, Decode> {
    let deadline = body.deadline();
    let mut decoder = zstd::stream::read::Decoder::new(body).map_err(Decode::Read)?;
    let mut piece = vec![0u8; PIECE];
    let mut total = 0u64;
    loop {
        if let Some(deadline) = deadline.filter(|d| d.remaining().is_none()) {
            let passed = BodyError::DeadlinePassed {
                budget: deadline.budget(),
                received: total,
            };
            return Err(Decode::Deadline(io::Error::new(io::ErrorKind::TimedOut, passed)));
        }
        let n = match decoder.read(&mut piece) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Decode::Read(e)),
        };
        total += n as u64;
        if total > max {
            return Err(Decode::Read(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("it decompresses to more than {max} bytes"),
            )));
        }
        hasher.update(&piece[..n]);
        out.write_all(&piece[..n]).map_err(Decode::Write)?;
    }
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

    fn open(&self, digest: &Digest) -> Result<File, BlobError> {
        let tmp_dir = std::env::temp_dir();
        let mut file = tempfile::tempfile_in(&tmp_dir).io_context("create temp file in", &tmp_dir)?;
        self.fetch_into(digest, &mut file)?;
        file.rewind()
            .map_err(BlobError::object_io("rewind the fetched copy of", digest))?;
        Ok(file)
    }

    fn copy_to(&self, digest: &Digest, out: &mut File) -> Result<u64, BlobError> {
        self.fetch_into(digest, out)
    }
}
