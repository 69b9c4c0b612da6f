//! Crash points: named steps of the writers' commit protocols where the test suite kills the
//! process with SIGKILL, to prove that a crash at any step leaves a store that verifies and
//! that the next run of the writer completes (`tests/crash.rs`).
//!
//! Test-only in purpose, but compiled in always: the suite kills the real `hdist` binary.
//! With neither variable below set, [`hit`] costs one initialised `OnceLock` read.
//!
//! - `HDIST_CRASH_AT=POINT` or `POINT:N`: the process raises SIGKILL at the first (or the
//!   N-th, counting from 1) time it reaches `POINT`. Nothing after the point runs: no
//!   destructor, no buffered output, no unlock other than the kernel's.
//! - `HDIST_CRASH_TRACE=FILE`: every point reached is appended to `FILE`, one name a line,
//!   so a test can list the points a writer passes (and how often) before killing it there.
//!
//! The points, in the order each writer reaches them (see each writer's module docs for its
//! commit protocol):
//!
//! - Every object batch (`store add`, builds, profile rules and documents):
//!   `objects.staged` (new objects written to scratch, none visible), `objects.renamed` (after
//!   each rename into `objects/`; hit once per new object), `objects.durable` (all synced).
//! - Every atomic file replacement (artifact documents, `current`, pins): `atomic.synced` (the
//!   temp copy is synced; the rename has not happened).
//! - `store add`: `add.document` (objects and document durable: the commit point; no index row
//!   yet), `add.indexed` (everything).
//! - Build registration: `build.document` (objects, log and document; no index row yet),
//!   `build.indexed`.
//! - `profile create` (and `up`): `profile.generation` (document and generation `N` durable;
//!   `current` still names the previous one), `profile.switched` (also `profile switch`).
//! - `gc`: `gc.marked` (nothing removed yet), `gc.metadata-removed` (documents, rows and
//!   generations gone, every object still there), `gc.object-removed` (after each object).
//! - `publish`: `publish.staged` (new objects under `.tmp/` only), `publish.object-renamed`
//!   (after each rename into `objects/`), `publish.objects-durable` (every object synced, the
//!   old manifest in place), `publish.manifest` (the new manifest renamed into place).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Names the point (and optionally `:N`, the hit) at which the process kills itself.
pub const CRASH_AT_VAR: &str = "HDIST_CRASH_AT";
/// Names a file to which every point reached is appended.
pub const CRASH_TRACE_VAR: &str = "HDIST_CRASH_TRACE";

/// What the environment asked for, read once per process.
#[derive(Debug, Default)]
struct Plan {
    /// The point to die at and the hit (from 1) that kills.
    crash_at: Option<(String, u64)>,
    /// Hits of `crash_at`'s point so far.
    hits: AtomicU64,
    /// Where to log every point reached.
    trace: Option<Mutex<std::fs::File>>,
}

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| {
        let crash_at = std::env::var(CRASH_AT_VAR).ok().map(|spec| parse_target(&spec));
        let trace = std::env::var_os(CRASH_TRACE_VAR).and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
                .map(Mutex::new)
        });
        Plan {
            crash_at,
            hits: AtomicU64::new(0),
            trace,
        }
    })
}

/// `POINT` or `POINT:N` as (point, hit from 1); a missing or unreadable `N` is the first hit.
fn parse_target(spec: &str) -> (String, u64) {
    match spec
        .rsplit_once(':')
        .and_then(|(p, n)| Some((p, n.parse::<u64>().ok()?)))
    {
        Some((point, n)) => (point.to_string(), n.max(1)),
        None => (spec.to_string(), 1),
    }
}

/// Marks that the running writer reached `point` (one of the names in the module docs); kills
/// the process there if `HDIST_CRASH_AT` asks for it.
pub fn hit(point: &'static str) {
    let plan = plan();
    if let Some(trace) = &plan.trace {
        // One write per line, under the lock: threads hitting points at once do not interleave.
        let _ = writeln!(trace.lock().unwrap(), "{point}");
    }
    let Some((target, nth)) = &plan.crash_at else {
        return;
    };
    if target == point && plan.hits.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
        // SAFETY: getpid and kill have no memory-safety preconditions; SIGKILL ends the process
        // here, which is the point.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // SIGKILL to oneself is delivered before kill returns; never continue past the point.
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_a_point_and_a_hit() {
        assert_eq!(parse_target("add.document"), ("add.document".to_string(), 1));
        assert_eq!(
            parse_target("objects.renamed:17"),
            ("objects.renamed".to_string(), 17)
        );
        assert_eq!(parse_target("gc.marked:0"), ("gc.marked".to_string(), 1));
        assert_eq!(parse_target("gc.marked:x"), ("gc.marked:x".to_string(), 1));
    }

    #[test]
    fn points_pass_when_no_crash_is_asked_for() {
        // The unit tests run without HDIST_CRASH_AT: hitting any point returns.
        hit("add.document");
        hit("gc.object-removed");
    }
}
