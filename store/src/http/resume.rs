//! Downloads that resume: a body streamed into a [`ResumeSink`] in 256 KiB pieces (memory does
//! not grow with it), each attempt after a broken one asking with `Range` for the rest, and
//! `If-Range` so that a resumed download never splices two versions of a file together.
//!
//! Every attempt must keep the throughput floor [`MIN_BYTES_PER_WINDOW`] per
//! [`HttpOptions::timeout`] (there is no total deadline: a download may be large and long): a
//! server that dribbles (one byte every 20 ms passes any per-read timeout) fails the attempt
//! after about one `timeout`, then the retries apply. An attempt that stalls or falls below
//! the floor thus ends within about two `timeout`s (one window, plus at most one read blocked
//! for `timeout`).

use std::io::{self, Read};

use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;

use super::{
    is_transient, retry, BodyError, BodyLimits, BoundedBody, Failure, HttpError, HttpOptions, MinRate,
};
use crate::error_chain;

/// The throughput floor of a download: at least this many bytes per [`HttpOptions::timeout`]
/// (about 1 KiB/s with the default 60 s).
pub const MIN_BYTES_PER_WINDOW: u64 = 64 << 10;

/// Where a resumable download goes.
pub trait ResumeSink {
    /// Appends the next bytes of the body.
    fn write(&mut self, bytes: &[u8]) -> Result<(), HttpError>;
    /// Forgets everything written: the server sends the body from its start again.
    fn restart(&mut self) -> Result<(), HttpError>;
}

/// How a download progresses.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// An attempt starts or resumes: `done` bytes are already there, `total` is the body's
    /// length if known.
    Started { total: Option<u64>, done: u64 },
    /// `done` bytes are written.
    Received { done: u64 },
}

/// The state carried from one attempt to the next.
struct Partial<'a> {
    sink: &'a mut dyn ResumeSink,
    received: u64,
    /// The whole body's length, once a response said it.
    total: Option<u64>,
    /// An `ETag` (strong) or `Last-Modified` to send as `If-Range`.
    validator: Option<String>,
}

impl Partial<'_> {
    fn restart(&mut self) -> Result<(), Failure<HttpError>> {
        self.sink.restart().map_err(Failure::Fatal)?;
        self.received = 0;
        self.total = None;
        self.validator = None;
        Ok(())
    }
}

/// Downloads `url` into `sink`, retrying and resuming as `options` allow; returns the length
/// of the body.
///
/// # Errors
/// [`HttpError::Status`] for a status that is not success (after retries for 5xx, 408, 429),
/// [`HttpError::Truncated`] if the body kept ending early, [`HttpError::Network`] and
/// [`HttpError::Body`] for connection, stall and timeout failures, and the sink's errors. The
/// sink may hold partial content afterwards.
pub fn download(
    client: &Client,
    url: &str,
    sink: &mut dyn ResumeSink,
    options: &HttpOptions,
    progress: &dyn Fn(Progress),
) -> Result<u64, HttpError> {
    let mut partial = Partial {
        sink,
        received: 0,
        total: None,
        validator: None,
    };
    retry(
        options,
        None,
        || attempt_once(client, url, &mut partial, options, progress),
        |error, next, delay| {
            log::warn!(
                "{}; retrying in {:.1} s (attempt {next} of {})",
                error_chain(error),
                delay.as_secs_f64(),
                options.retries + 1
            );
        },
    )?;
    Ok(partial.received)
}

fn attempt_once(
    client: &Client,
    url: &str,
    partial: &mut Partial<'_>,
    options: &HttpOptions,
    progress: &dyn Fn(Progress),
) -> Result<(), Failure<HttpError>> {
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
    let response = request.send().map_err(|source| {
        Failure::Retry(HttpError::Network {
            url: url.to_string(),
            source,
        })
    })?;
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
                    partial.restart()?;
                    return Err(Failure::Retry(HttpError::Status {
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
                partial.restart()?;
            }
            partial.total = response.content_length();
            partial.validator = validator(response.headers());
        }
        StatusCode::RANGE_NOT_SATISFIABLE if resuming => {
            partial.restart()?;
            return Err(Failure::Retry(HttpError::status(url, status)));
        }
        _ if is_transient(status) => return Err(Failure::Retry(HttpError::status(url, status))),
        _ => return Err(Failure::Fatal(HttpError::status(url, status))),
    }
    progress(Progress::Started {
        total: partial.total,
        done: partial.received,
    });
    let limits = BodyLimits {
        min_rate: Some(MinRate {
            bytes: MIN_BYTES_PER_WINDOW,
            window: options.timeout,
        }),
        max_bytes: options.max_body,
        ..BodyLimits::default()
    };
    copy_body(url, &mut BoundedBody::new(response, limits), partial, progress)
}

fn copy_body(
    url: &str,
    body: &mut BoundedBody<Response>,
    partial: &mut Partial<'_>,
    progress: &dyn Fn(Progress),
) -> Result<(), Failure<HttpError>> {
    let mut buf = vec![0u8; 256 << 10];
    let read_error = loop {
        match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                partial.sink.write(&buf[..n]).map_err(Failure::Fatal)?;
                partial.received += n as u64;
                progress(Progress::Received {
                    done: partial.received,
                });
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
    let broken = |source| {
        Failure::Retry(HttpError::Body {
            url: url.to_string(),
            source,
        })
    };
    match (partial.total, read_error) {
        (_, Some(e)) if ours => Err(broken(e)),
        (Some(total), _) if partial.received < total => Err(Failure::Retry(HttpError::Truncated {
            url: url.to_string(),
            expected: total,
            received: partial.received,
        })),
        (Some(total), None) if partial.received > total => {
            // More than announced: the length or the body is wrong; neither can be trusted.
            partial.restart()?;
            Err(Failure::Retry(HttpError::Status {
                url: url.to_string(),
                status: 200,
                reason: format!("the body is longer than the announced {total} bytes"),
            }))
        }
        (_, Some(e)) => Err(broken(e)),
        (_, None) => Ok(()),
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
