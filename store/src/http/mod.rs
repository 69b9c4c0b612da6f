//! The one HTTP client of the store, used by source downloads ([`crate::source`]) and the
//! remote store ([`crate::remote::http`]).
//!
//! - [`client`] builds the `reqwest` blocking client: rustls, the user agent, the connect and
//!   per-read timeouts of [`HttpOptions`], pooled keep-alive connections; `HTTP_PROXY`,
//!   `HTTPS_PROXY` and `NO_PROXY` are honoured (reqwest reads them).
//! - [`retry`] runs attempts with exponential backoff, within a [`Deadline`] when there is one.
//! - [`Mirrors`] is a list of base URLs tried in turn, a failed one marked down for
//!   [`MIRROR_PENALTY`].
//! - [`resume`] downloads a body into a [`resume::ResumeSink`], resuming with `Range` and
//!   `If-Range` after a broken attempt.
//! - [`limits`] bounds what a body costs in time and bytes ([`BoundedBody`]).
//!
//! The callers choose the bounds: a source download has a throughput floor and no total
//! deadline (it may be large and long); a request of the remote store has one total deadline
//! per mirror and a byte cap.

pub mod limits;
pub mod resume;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::StatusCode;

pub use limits::{BodyError, BodyLimits, BoundedBody, Deadline, MinRate};

/// How hard requests try. [`HttpOptions::default`] holds the remote store's settings (short,
/// one total deadline per mirror); [`HttpOptions::for_downloads`] those of source downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpOptions {
    /// Longest wait for a connection, for the response headers, and between two reads of a
    /// body. The remote store also gives each request this much in total at one mirror
    /// (retries included); source downloads use it as the window of their throughput floor.
    pub timeout: Duration,
    /// Attempts after the first one fails for a reason that may pass (network errors, 5xx,
    /// 408, 429, truncated or too slow bodies).
    pub retries: u32,
    /// Delay before the first retry; doubled for each further one (capped at [`MAX_BACKOFF`]).
    pub backoff: Duration,
    /// Largest body accepted, if bounded (the remote store: an object, compressed or
    /// decompressed; the largest published ones are files of up to 4 MiB, larger files
    /// arriving as 1 MiB chunks, and a profile's tree pack). Also what a decompression bomb
    /// may cost on disk.
    pub max_body: Option<u64>,
}

impl Default for HttpOptions {
    fn default() -> HttpOptions {
        HttpOptions {
            timeout: Duration::from_secs(5),
            retries: 2,
            backoff: Duration::from_millis(100),
            max_body: Some(64 << 20),
        }
    }
}

impl HttpOptions {
    /// The settings of source downloads: patient (a download may be large and long), no byte
    /// cap.
    pub fn for_downloads() -> HttpOptions {
        HttpOptions {
            timeout: Duration::from_secs(60),
            retries: 4,
            backoff: Duration::from_millis(500),
            max_body: None,
        }
    }
}

/// The longest delay between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a failed mirror is skipped (and, when every mirror is down, how long requests
/// fail at once without trying).
pub const MIRROR_PENALTY: Duration = Duration::from_secs(5);

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The client could not be set up (TLS backend, proxy settings).
    #[error("cannot set up an HTTP client for {url}")]
    Client {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server could not be reached, or the request failed or timed out.
    #[error("cannot download {url}")]
    Network {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The body broke off, stalled, or broke a limit of [`BodyLimits`] (the `io::Error` wraps
    /// a [`BodyError`]).
    #[error("cannot download {url}")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The server answered with an error status, or with a response that cannot be used.
    #[error("{url}: HTTP {status} ({reason})")]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    /// The body kept ending before its announced length.
    #[error("{url}: the download ended after {received} of {expected} bytes")]
    Truncated {
        url: String,
        expected: u64,
        received: u64,
    },
    /// Writing what was received failed locally; no retry helps.
    #[error(transparent)]
    Local(#[from] crate::IoError),
}

impl HttpError {
    /// An error status as [`HttpError::Status`], with its canonical reason.
    pub fn status(url: &str, status: StatusCode) -> HttpError {
        HttpError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            reason: status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_string(),
        }
    }

    /// What failed, without the URL: for messages that name it already (a mirror's failure).
    pub fn without_url(&self) -> String {
        match self {
            HttpError::Network { source, .. } => crate::error_chain(source),
            HttpError::Body { source, .. } => crate::error_chain(source),
            HttpError::Status { status, reason, .. } => format!("HTTP {status} {reason}"),
            other => crate::error_chain(other),
        }
    }
}

/// Whether an error status may pass if asked again.
pub fn is_transient(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// The client for `options`: every request of one user shares it (keep-alive connections are
/// pooled across threads). `url` names what it is for, in the error.
pub fn client(options: &HttpOptions, url: &str) -> Result<Client, HttpError> {
    Client::builder()
        .use_rustls_tls()
        .timeout(options.timeout)
        .connect_timeout(options.timeout)
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .user_agent(concat!("hdist/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|source| HttpError::Client {
            url: url.to_string(),
            source,
        })
}

/// How an attempt failed: whether another one may help.
#[derive(Debug)]
pub enum Failure<E> {
    /// The failure may pass (network, 5xx, a stalled body): try again.
    Retry(E),
    /// Trying again cannot help.
    Fatal(E),
}

/// Runs `attempt` until it succeeds, fails fatally, or `options.retries` further attempts
/// failed, sleeping the backoff between attempts. With a `deadline`, an attempt is retried
/// only while the backoff and another try fit before it. `before_retry` sees each failure
/// that is retried, with the number of the next attempt (from 2) and the delay.
pub fn retry<T, E>(
    options: &HttpOptions,
    deadline: Option<Deadline>,
    mut attempt: impl FnMut() -> Result<T, Failure<E>>,
    mut before_retry: impl FnMut(&E, u32, Duration),
) -> Result<T, E> {
    let mut delay = options.backoff;
    let mut retried = 0;
    loop {
        let error = match attempt() {
            Ok(value) => return Ok(value),
            Err(Failure::Fatal(error)) => return Err(error),
            Err(Failure::Retry(error)) => error,
        };
        let fits = deadline.is_none_or(|d| d.remaining().is_some_and(|left| left > delay));
        if retried >= options.retries || !fits {
            return Err(error);
        }
        retried += 1;
        before_retry(&error, retried + 1, delay);
        std::thread::sleep(delay);
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

/// Why a mirror is skipped.
#[derive(Debug, Clone)]
struct Down {
    until: Instant,
    reason: String,
}

/// Base URLs serving the same files, asked in turn: the one that answered last first, the ones
/// marked down (for [`MIRROR_PENALTY`] after a failure) skipped.
#[derive(Debug)]
pub struct Mirrors {
    urls: Vec<String>,
    preferred: AtomicUsize,
    down: Mutex<Vec<Option<Down>>>,
}

/// A mirror's turn in [`Mirrors::turns`].
#[derive(Debug)]
pub enum Turn<'a> {
    /// Ask this mirror (its index and base URL).
    Ask(usize, &'a str),
    /// Skip it: it is marked down (for how long, and why).
    Down(&'a str, Duration, String),
}

impl Mirrors {
    /// The mirrors `urls` (a trailing `/` is dropped), in configured order.
    pub fn new(urls: &[String]) -> Mirrors {
        Mirrors {
            urls: urls.iter().map(|m| m.trim_end_matches('/').to_string()).collect(),
            preferred: AtomicUsize::new(0),
            down: Mutex::new(vec![None; urls.len()]),
        }
    }

    /// The base URLs, in configured order.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The order of one request: from the preferred mirror on, each either to ask or down.
    pub fn turns(&self) -> Vec<Turn<'_>> {
        let start = self.preferred.load(Ordering::Relaxed);
        let n = self.urls.len();
        let now = Instant::now();
        let down = self.down.lock().unwrap();
        (0..n)
            .map(|k| (start + k) % n)
            .map(|i| match down[i].as_ref().filter(|d| d.until > now) {
                Some(d) => Turn::Down(
                    &self.urls[i],
                    d.until.saturating_duration_since(now),
                    d.reason.clone(),
                ),
                None => Turn::Ask(i, &self.urls[i]),
            })
            .collect()
    }

    /// Mirror `i` answered: it is asked first from now on.
    pub fn answered(&self, i: usize) {
        self.preferred.store(i, Ordering::Relaxed);
        self.down.lock().unwrap()[i] = None;
    }

    /// Mirror `i` failed: skip it for [`MIRROR_PENALTY`].
    pub fn mark_down(&self, i: usize, reason: String) {
        log::warn!(
            "mirror {} failed ({reason}); skipping it for {MIRROR_PENALTY:?}",
            self.urls[i]
        );
        self.down.lock().unwrap()[i] = Some(Down {
            until: Instant::now() + MIRROR_PENALTY,
            reason,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_stops_after_the_retries_and_at_a_fatal_error() {
        let options = HttpOptions {
            backoff: Duration::from_millis(1),
            ..HttpOptions::default()
        };
        let mut calls = 0;
        let mut retried = Vec::new();
        let result: Result<(), u32> = retry(
            &options,
            None,
            || {
                calls += 1;
                Err(Failure::Retry(calls))
            },
            |e, next, _| retried.push((*e, next)),
        );
        assert_eq!(result, Err(3));
        assert_eq!(retried, [(1, 2), (2, 3)]);

        let mut calls = 0;
        let result: Result<(), &str> = retry(
            &options,
            None,
            || {
                calls += 1;
                Err(Failure::Fatal("no"))
            },
            |_, _, _| {},
        );
        assert_eq!((result, calls), (Err("no"), 1));
    }

    #[test]
    fn retry_does_not_sleep_past_the_deadline() {
        let options = HttpOptions {
            backoff: Duration::from_secs(10),
            ..HttpOptions::default()
        };
        let started = Instant::now();
        let result: Result<(), ()> = retry(
            &options,
            Some(Deadline::after(Duration::from_secs(1))),
            || Err(Failure::Retry(())),
            |_, _, _| {},
        );
        assert_eq!(result, Err(()));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_mirror_marked_down_is_skipped_and_the_one_that_answered_goes_first() {
        let mirrors = Mirrors::new(&["http://a/".to_string(), "http://b".to_string()]);
        assert_eq!(mirrors.urls(), ["http://a", "http://b"]);
        mirrors.mark_down(0, "refused".to_string());
        let turns = mirrors.turns();
        assert!(matches!(turns[0], Turn::Down("http://a", _, ref why) if why == "refused"));
        assert!(matches!(turns[1], Turn::Ask(1, "http://b")));
        mirrors.answered(1);
        assert!(matches!(mirrors.turns()[0], Turn::Ask(1, "http://b")));
        mirrors.answered(0);
        assert!(matches!(mirrors.turns()[..], [Turn::Ask(0, _), Turn::Ask(1, _)]));
    }
}
