//! Limits on HTTP responses, shared by the remote store ([`crate::remote::http`]) and source
//! downloads ([`crate::source`]): a server that dribbles, never ends, or goes silent mid-body
//! costs a bounded time and a bounded amount of memory.
//!
//! `reqwest`'s blocking timeout bounds each wait for the next piece of a body, not the body: a
//! server sending one byte every 20 ms never trips a 5 s timeout. [`BoundedBody`] wraps a body
//! and enforces what the caller states in [`BodyLimits`]:
//!
//! - a [`Deadline`] for the whole response, headers and body together (the remote store: one
//!   `--timeout` per mirror). Give the request the same deadline with
//!   [`Deadline::remaining`] as its `reqwest` timeout: reqwest then ends a read blocked on a
//!   silent socket at the deadline too, not one timeout later;
//! - a throughput floor, [`MinRate`]: at least `bytes` in every `window` (source downloads,
//!   which may be large and long, so that a total deadline would not fit them);
//! - a cap on the bytes (an endless body stops there).
//!
//! The body is read in pieces into the caller's buffer; nothing here holds a body in memory,
//! so memory is bounded by what the caller keeps.

use std::io::{self, Read};
use std::time::{Duration, Instant};

/// A point in time by which a whole request must be done.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    /// The deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline {
            at: Instant::now() + budget,
            budget,
        }
    }

    /// Time left, or `None` once it has passed.
    pub fn remaining(&self) -> Option<Duration> {
        self.at
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
    }

    /// The whole budget this deadline was set with.
    pub fn budget(&self) -> Duration {
        self.budget
    }
}

/// A throughput floor: fewer than `bytes` in any `window` fails the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinRate {
    /// Bytes required per window.
    pub bytes: u64,
    /// Length of the window.
    pub window: Duration,
}

/// What a body may cost.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyLimits {
    /// The body must be complete by then.
    pub deadline: Option<Deadline>,
    /// The body must keep at least this pace.
    pub min_rate: Option<MinRate>,
    /// At most this many bytes are accepted.
    pub max_bytes: Option<u64>,
}

/// Why a body was given up on.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The response's deadline passed.
    #[error("the response did not complete within {budget:?} ({received} bytes received)")]
    DeadlinePassed { budget: Duration, received: u64 },
    /// The body kept a slower pace than the floor.
    #[error(
        "the body is too slow: {received} bytes in {window:?}, at least {required} are needed \
         (a stalled or dribbling server)"
    )]
    TooSlow {
        received: u64,
        required: u64,
        window: Duration,
    },
    /// The body is longer than accepted.
    #[error("the body is longer than the {limit} bytes accepted")]
    TooLarge { limit: u64 },
    /// Reading the body from the connection failed.
    #[error("reading the body: {source}")]
    Transport {
        #[source]
        source: io::Error,
    },
}

impl BodyError {
    fn into_io(self) -> io::Error {
        let kind = match &self {
            BodyError::DeadlinePassed { .. } | BodyError::TooSlow { .. } => io::ErrorKind::TimedOut,
            BodyError::TooLarge { .. } => io::ErrorKind::InvalidData,
            BodyError::Transport { source } => source.kind(),
        };
        io::Error::new(kind, self)
    }
}

/// A response body read under [`BodyLimits`]. Every failure (its own limits or the
/// connection's) is an `io::Error` wrapping a [`BodyError`], and is remembered:
/// [`BoundedBody::failed`] tells a consumer that decodes the body whether its error came from
/// the network (the server's fault) or from the bytes themselves.
#[derive(Debug)]
pub struct BoundedBody<R> {
    inner: R,
    limits: BodyLimits,
    received: u64,
    window_start: Instant,
    window_bytes: u64,
    failed: bool,
}

impl<R: Read> BoundedBody<R> {
    /// Wraps `inner`; the pace window starts now.
    pub fn new(inner: R, limits: BodyLimits) -> BoundedBody<R> {
        BoundedBody {
            inner,
            limits,
            received: 0,
            window_start: Instant::now(),
            window_bytes: 0,
            failed: false,
        }
    }

    /// Body bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The deadline of the whole response, if any (for consumers that do long work between
    /// reads, such as decompressing a bomb: they check it too).
    pub fn deadline(&self) -> Option<Deadline> {
        self.limits.deadline
    }

    /// Whether a read failed because of the connection or a limit.
    pub fn failed(&self) -> bool {
        self.failed
    }

    fn check(&mut self) -> Result<(), BodyError> {
        if let Some(deadline) = self.limits.deadline {
            if deadline.remaining().is_none() {
                return Err(BodyError::DeadlinePassed {
                    budget: deadline.budget(),
                    received: self.received,
                });
            }
        }
        if let Some(floor) = self.limits.min_rate {
            if self.window_start.elapsed() >= floor.window {
                if self.window_bytes < floor.bytes {
                    return Err(BodyError::TooSlow {
                        received: self.window_bytes,
                        required: floor.bytes,
                        window: floor.window,
                    });
                }
                self.window_start = Instant::now();
                self.window_bytes = 0;
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: BodyError) -> io::Error {
        self.failed = true;
        error.into_io()
    }
}

impl<R: Read> Read for BoundedBody<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Err(e) = self.check() {
            return Err(self.fail(e));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            // reqwest reports its own (total) timeout as a read error: say which bound it was.
            Err(_) if self.limits.deadline.is_some_and(|d| d.remaining().is_none()) => {
                let deadline = self.limits.deadline.expect("checked");
                return Err(self.fail(BodyError::DeadlinePassed {
                    budget: deadline.budget(),
                    received: self.received,
                }));
            }
            Err(source) => return Err(self.fail(BodyError::Transport { source })),
        };
        self.received += n as u64;
        self.window_bytes += n as u64;
        if let Some(limit) = self.limits.max_bytes {
            if self.received > limit {
                return Err(self.fail(BodyError::TooLarge { limit }));
            }
        }
        // A piece that arrived after the deadline or too late for the pace still fails.
        if n > 0 {
            if let Err(e) = self.check() {
                return Err(self.fail(e));
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields `piece` bytes per read, sleeping `pause` before each, `total` bytes in all.
    struct Dribble {
        left: usize,
        piece: usize,
        pause: Duration,
    }

    impl Read for Dribble {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(self.pause);
            let n = self.piece.min(self.left).min(buf.len());
            buf[..n].fill(b'x');
            self.left -= n;
            Ok(n)
        }
    }

    fn error_of(result: io::Result<u64>) -> BodyError {
        let error = result.expect_err("the body should fail");
        *error
            .into_inner()
            .expect("a BodyError inside")
            .downcast::<BodyError>()
            .expect("a BodyError")
    }

    #[test]
    fn a_dribble_fails_at_the_deadline_not_per_byte() {
        let dribble = Dribble {
            left: 1 << 20,
            piece: 1,
            pause: Duration::from_millis(5),
        };
        let started = Instant::now();
        let limits = BodyLimits {
            deadline: Some(Deadline::after(Duration::from_millis(200))),
            ..BodyLimits::default()
        };
        let mut body = BoundedBody::new(dribble, limits);
        let error = error_of(io::copy(&mut body, &mut io::sink()));
        assert!(matches!(error, BodyError::DeadlinePassed { .. }), "{error}");
        assert!(body.failed());
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_dribble_fails_the_rate_floor() {
        let dribble = Dribble {
            left: 1 << 20,
            piece: 10,
            pause: Duration::from_millis(5),
        };
        let limits = BodyLimits {
            min_rate: Some(MinRate {
                bytes: 10_000,
                window: Duration::from_millis(100),
            }),
            ..BodyLimits::default()
        };
        let error = error_of(io::copy(&mut BoundedBody::new(dribble, limits), &mut io::sink()));
        assert!(matches!(error, BodyError::TooSlow { .. }), "{error}");
    }

    #[test]
    fn an_endless_body_stops_at_the_cap_and_a_fast_one_passes() {
        let endless = io::repeat(b'x');
        let limits = BodyLimits {
            max_bytes: Some(1 << 20),
            ..BodyLimits::default()
        };
        let error = error_of(io::copy(&mut BoundedBody::new(endless, limits), &mut io::sink()));
        assert!(
            matches!(error, BodyError::TooLarge { limit: 1_048_576 }),
            "{error}"
        );

        let fast = Dribble {
            left: 100_000,
            piece: 10_000,
            pause: Duration::ZERO,
        };
        let limits = BodyLimits {
            deadline: Some(Deadline::after(Duration::from_secs(5))),
            min_rate: Some(MinRate {
                bytes: 1,
                window: Duration::from_secs(1),
            }),
            max_bytes: Some(100_000),
        };
        let mut body = BoundedBody::new(fast, limits);
        assert_eq!(io::copy(&mut body, &mut io::sink()).unwrap(), 100_000);
        assert!(!body.failed());
    }
}
