//! Downloads over HTTP(S): retries with exponential backoff, stall timeouts, resumption with
//! `Range` requests, and the SHA-256 of the bytes computed while they are written.
//!
//! Bounds: the body streams to disk in 256 KiB pieces (memory does not grow with it). A
//! download may be large and long, so there is no total deadline; instead every attempt must
//! keep a throughput floor of [`MIN_BYTES_PER_WINDOW`] per [`HttpOptions::timeout`] (through
//! [`crate::http_limits`], shared with the remote store): a server that dribbles (one byte
//! every 20 ms passes any per-read timeout) fails the attempt after about one `timeout`, then
//! the retries apply. An attempt that stalls or falls below the floor thus ends within about
//! two `timeout`s (one window, plus at most one read blocked for `timeout`).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

use super::{FetchEvent, SourceError};
use crate::hash::{Digest, DigestWriter};
use crate::http_limits::{BodyError, BodyLimits, BoundedBody, MinRate};

/// How hard a download tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// Attempts after the first one fails for a reason that may pass (network errors, 5xx,
    /// 408, 429, truncated bodies). Each attempt resumes where the last one stopped when the
    /// server honours `Range`.
    pub retries: u32,
    /// Longest wait for a connection, for the response headers, and between two reads of the
    /// body; also the window of the throughput floor ([`MIN_BYTES_PER_WINDOW`] per
    /// `timeout`), so a stalled or dribbling server is given up on, not a merely slow one.
    pub timeout: Duration,
    /// Delay before the first retry; doubled for each further one (capped at 30 s).
    pub backoff: Duration,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            retries: 4,
            timeout: Duration::from_secs(60),
            backoff: Duration::from_millis(500),
        }
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The throughput floor of a body: at least this many bytes per [`HttpOptions::timeout`]
/// (about 1 KiB/s with the default 60 s).
pub const MIN_BYTES_PER_WINDOW: u64 = 64 << 10;

/// A client configured for `options`. One per fetch: it owns a runtime thread.
pub(crate) fn client(options: &HttpOptions, url: &str) -> Result<Client, SourceError> {
    Client::builder()
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .user_agent(concat!("hdist/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| SourceError::Network {
            url: url.to_string(),
            source: Box::new(e),
        })
}

/// What a download produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Downloaded {
    /// SHA-256 of the body.
    pub digest: Digest,
    /// Its length.
    pub size: u64,
}

/// The state carried from one attempt to the next.
struct Partial<'a> {
    file: &'a mut File,
    path: &'a Path,
    hasher: DigestWriter,
    received: u64,
    /// The whole body's length, once a response said it.
    total: Option<u64>,
    /// An `ETag` (strong) or `Last-Modified` to send as `If-Range`, so a resumed download
    /// never splices two versions of a file together.
    validator: Option<String>,
}

impl Partial<'_> {
    fn restart(&mut self) -> Result<(), SourceError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(SourceError::io("truncate", self.path))?;
        self.hasher = DigestWriter::new();
        self.received = 0;
        self.total = None;
        self.validator = None;
        Ok(())
    }
}

/// Why an attempt failed, and whether trying again may help.
struct Failure {
    error: SourceError,
    retry: bool,
}

impl Failure {
    fn retry(error: SourceError) -> Failure {
        Failure { error, retry: true }
    }

    fn fatal(error: SourceError) -> Failure {
        Failure { error, retry: false }
    }
}

/// Downloads `url` into the new file `dest`, retrying as `options` allow.
///
/// # Errors
/// [`SourceError::Http`] for a status that is not success (after retries for 5xx, 408, 429),
/// [`SourceError::Truncated`] if the body kept ending early, [`SourceError::Network`] for
/// connection and timeout failures, [`SourceError::Io`] if `dest` cannot be written. `dest`
/// may hold partial content afterwards; the caller removes it.
pub(crate) fn download(
    client: &Client,
    url: &str,
    dest: &Path,
    options: &HttpOptions,
    progress: Option<&(dyn Fn(FetchEvent<'_>) + Sync)>,
) -> Result<Downloaded, SourceError> {
    let mut file = File::create(dest).map_err(SourceError::io("create", dest))?;
    let mut partial = Partial {
        file: &mut file,
        path: dest,
        hasher: DigestWriter::new(),
        received: 0,
        total: None,
        validator: None,
    };
    let mut delay = options.backoff;
    let mut attempt = 0;
    loop {
        match attempt_once(client, url, &mut partial, options.timeout, progress) {
            Ok(()) => break,
            Err(failure) if failure.retry && attempt < options.retries => {
                attempt += 1;
                log::warn!(
                    "{}; retrying in {:.1} s (attempt {} of {})",
                    super::chain(&failure.error),
                    delay.as_secs_f64(),
                    attempt + 1,
                    options.retries + 1
                );
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_BACKOFF);
            }
            Err(failure) => return Err(failure.error),
        }
    }
    let Partial { hasher, received, .. } = partial;
    file.flush().map_err(SourceError::io("write", dest))?;
    Ok(Downloaded {
        digest: hasher.finish(),
        size: received,
    })
}

fn attempt_once(
    client: &Client,
    url: &str,
    partial: &mut Partial<'_>,
    timeout: Duration,
    progress: Option<&(dyn Fn(FetchEvent<'_>) + Sync)>,
) -> Result<(), Failure> {
    let network = |e: reqwest::Error| {
        Failure::retry(SourceError::Network {
            url: url.to_string(),
            source: Box::new(e),
        })
    };
    // Servers must not compress the body on the fly: the key is the hash of the bytes as
    // published.
    let mut request = client.get(url).header(header::ACCEPT_ENCODING, "identity");
    let resuming = partial.received > 0;
    if resuming {
        request = request.header(header::RANGE, format!("bytes={}-", partial.received));
        if let Some(validator) = &partial.validator {
            request = request.header(header::IF_RANGE, validator.as_str());
        }
    }
    let response = request.send().map_err(network)?;
    let status = response.status();
    match status {
        StatusCode::PARTIAL_CONTENT if resuming => {
            match content_range(response.headers()) {
                Some((start, total)) if start == partial.received => {
                    if total.is_some() {
                        partial.total = total;
                    }
                }
                _ => {
                    // A range we did not ask for: start over rather than guess.
                    partial.restart().map_err(Failure::fatal)?;
                    return Err(Failure::retry(SourceError::Http {
                        url: url.to_string(),
                        status: status.as_u16(),
                        reason: "the server answered with an unexpected range".to_string(),
                    }));
                }
            }
            log::info!("{url}: resuming at byte {}", partial.received);
        }
        StatusCode::OK => {
            if resuming {
                log::info!("{url}: the server sent the whole file again; starting over");
                partial.restart().map_err(Failure::fatal)?;
            }
            partial.total = response.content_length();
            partial.validator = validator(response.headers());
        }
        StatusCode::RANGE_NOT_SATISFIABLE if resuming => {
            partial.restart().map_err(Failure::fatal)?;
            return Err(Failure::retry(http_error(url, status)));
        }
        _ => {
            let transient = status.is_server_error()
                || status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS;
            return Err(Failure {
                error: http_error(url, status),
                retry: transient,
            });
        }
    }
    if let Some(report) = progress {
        report(FetchEvent::Download {
            url,
            total: partial.total,
            done: partial.received,
        });
    }
    let floor = MinRate {
        bytes: MIN_BYTES_PER_WINDOW,
        window: timeout,
    };
    let limits = BodyLimits {
        min_rate: Some(floor),
        ..BodyLimits::default()
    };
    copy_body(url, &mut BoundedBody::new(response, limits), partial, progress)
}

fn copy_body(
    url: &str,
    body: &mut BoundedBody<Response>,
    partial: &mut Partial<'_>,
    progress: Option<&(dyn Fn(FetchEvent<'_>) + Sync)>,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; 256 << 10];
    let read_error = loop {
        match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                partial
                    .file
                    .write_all(&buf[..n])
                    .map_err(|e| Failure::fatal(SourceError::io("write", partial.path)(e)))?;
                partial.hasher.update(&buf[..n]);
                partial.received += n as u64;
                if let Some(report) = progress {
                    report(FetchEvent::Progress {
                        done: partial.received,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e),
        }
    };
    // A limit of ours (too slow) names itself; a short body otherwise says what it lacked.
    let ours = read_error
        .as_ref()
        .and_then(|e| e.get_ref())
        .and_then(|inner| inner.downcast_ref::<BodyError>())
        .is_some_and(|e| !matches!(e, BodyError::Transport { .. }));
    match (partial.total, read_error) {
        (_, Some(e)) if ours => Err(Failure::retry(SourceError::Network {
            url: url.to_string(),
            source: Box::new(e),
        })),
        (Some(total), _) if partial.received < total => Err(Failure::retry(SourceError::Truncated {
            url: url.to_string(),
            expected: total,
            received: partial.received,
        })),
        (Some(total), None) if partial.received > total => {
            // More than announced: the length or the body is wrong; neither can be trusted.
            partial.restart().map_err(Failure::fatal)?;
            Err(Failure::retry(SourceError::Http {
                url: url.to_string(),
                status: 200,
                reason: format!("the body is longer than the announced {total} bytes"),
            }))
        }
        (_, Some(e)) => Err(Failure::retry(SourceError::Network {
            url: url.to_string(),
            source: Box::new(e),
        })),
        (_, None) => Ok(()),
    }
}

fn http_error(url: &str, status: StatusCode) -> SourceError {
    SourceError::Http {
        url: url.to_string(),
        status: status.as_u16(),
        reason: status
            .canonical_reason()
            .unwrap_or("unexpected status")
            .to_string(),
    }
}

/// `Content-Range: bytes START-END/TOTAL` → (START, TOTAL if known).
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = total.trim().parse().ok();
    Some((start, total))
}

/// A strong `ETag`, else `Last-Modified`: what `If-Range` may carry (weak tags may not).
fn validator(headers: &HeaderMap) -> Option<String> {
    if let Some(etag) = headers.get(header::ETAG).and_then(|v| v.to_str().ok()) {
        if !etag.starts_with("W/") {
            return Some(etag.to_string());
        }
    }
    headers
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn parses_content_range() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/200"),
        );
        assert_eq!(content_range(&headers), Some((100, Some(200))));
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("bytes 5-9/*"));
        assert_eq!(content_range(&headers), Some((5, None)));
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_static("items 5-9/10"));
        assert_eq!(content_range(&headers), None);
    }

    #[test]
    fn weak_etags_are_not_validators() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, HeaderValue::from_static("W/\"x\""));
        assert_eq!(validator(&headers), None);
        headers.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Sat, 23 Nov 2024"),
        );
        assert_eq!(validator(&headers).as_deref(), Some("Sat, 23 Nov 2024"));
        headers.insert(header::ETAG, HeaderValue::from_static("\"x\""));
        assert_eq!(validator(&headers).as_deref(), Some("\"x\""));
    }
}
