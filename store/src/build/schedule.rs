//! The one build scheduler: runs the jobs of a DAG on a bounded pool of threads, each job as
//! soon as every job it depends on has succeeded.
//!
//! A job's dependencies are given as indices of other jobs. The pool keeps, per job, the count
//! of dependencies not yet done and a FIFO queue of the jobs whose count reached zero, so a
//! schedule costs O(jobs + edges) however wide or deep the graph is. Dependents of a failed job
//! never start; [`OnFailure`] says whether unrelated jobs still do. Each job ends with a typed
//! [`JobOutcome`]. A cycle is found (in linear time) before anything runs.
//!
//! `hdist build` (over the imports among the specs given, see [`import_graph`]) and `hdist up`
//! (over the build dependencies of a stack's packages) both schedule through [`run`].

use std::collections::{BTreeMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Condvar, Mutex};

use super::{BuildError, BuildSpec};
use crate::artifact::ArtifactId;

/// What the schedule does after a job fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Start no new job; the running ones finish (what `hdist build` and `hdist up` do).
    Stop,
    /// Keep starting every job that does not depend on a failed one.
    KeepGoing,
}

/// What became of one job of a [`run`].
#[derive(Debug)]
pub enum JobOutcome<T, E> {
    /// It ran and succeeded.
    Succeeded(T),
    /// It ran and failed.
    Failed(E),
    /// It did not run: a job it depends on (directly or through others) failed.
    DependencyFailed,
    /// It did not run: a failure stopped the schedule ([`OnFailure::Stop`]) first.
    Cancelled,
}

impl<T, E> JobOutcome<T, E> {
    /// The job's error, if it ran and failed.
    pub fn into_failure(self) -> Option<E> {
        match self {
            JobOutcome::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// The jobs depend on each other in a cycle, so none of them can start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("jobs {jobs:?} depend on each other in a cycle")]
pub struct Cycle {
    /// Every job that can never become ready: those on a cycle and those depending on one,
    /// in index order.
    pub jobs: Vec<usize>,
}

/// For each job, the jobs that depend on it (one entry per dependency edge).
fn dependents(deps: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); deps.len()];
    for (job, job_deps) in deps.iter().enumerate() {
        for &dep in job_deps {
            assert!(
                dep < deps.len(),
                "job {job} depends on job {dep}, which does not exist"
            );
            out[dep].push(job);
        }
    }
    out
}

/// Checks that the jobs can all run: Kahn's algorithm without running anything.
///
/// # Errors
/// [`Cycle`] naming every job that would never become ready.
///
/// # Panics
/// If a dependency index is out of range (a caller bug, not bad input).
pub fn check(deps: &[Vec<usize>]) -> Result<(), Cycle> {
    let dependents = dependents(deps);
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut ready: Vec<usize> = (0..deps.len()).filter(|&j| waiting[j] == 0).collect();
    let mut ordered = 0;
    while let Some(job) = ready.pop() {
        ordered += 1;
        for &dependent in &dependents[job] {
            waiting[dependent] -= 1;
            if waiting[dependent] == 0 {
                ready.push(dependent);
            }
        }
    }
    if ordered == deps.len() {
        return Ok(());
    }
    Err(Cycle {
        jobs: (0..deps.len()).filter(|&j| waiting[j] > 0).collect(),
    })
}

/// The scheduler's shared state, behind one mutex.
struct State<T, E> {
    /// Per job: dependencies not yet succeeded.
    waiting: Vec<usize>,
    /// Jobs whose dependencies have all succeeded, not started yet.
    ready: VecDeque<usize>,
    /// Jobs started and not finished.
    running: usize,
    /// A failure under [`OnFailure::Stop`] (or a panic): start nothing more.
    stopped: bool,
    /// A job's panic, re-raised once every worker has stopped.
    panic: Option<Box<dyn std::any::Any + Send>>,
    outcomes: Vec<Option<JobOutcome<T, E>>>,
}

impl<T, E> State<T, E> {
    /// Records that `job` finished and releases or condemns its dependents.
    fn finish(&mut self, job: usize, result: Result<T, E>, dependents: &[Vec<usize>], on_failure: OnFailure) {
        self.running -= 1;
        match result {
            Ok(value) => {
                self.outcomes[job] = Some(JobOutcome::Succeeded(value));
                for &dependent in &dependents[job] {
                    self.waiting[dependent] -= 1;
                    if self.waiting[dependent] == 0 {
                        self.ready.push_back(dependent);
                    }
                }
            }
            Err(error) => {
                self.outcomes[job] = Some(JobOutcome::Failed(error));
                self.stopped |= on_failure == OnFailure::Stop;
                // Every job reachable through dependents is waiting on this one (it cannot have
                // started), and each is marked once: linear over the whole schedule.
                let mut todo = dependents[job].clone();
                while let Some(dependent) = todo.pop() {
                    if self.outcomes[dependent].is_none() {
                        self.outcomes[dependent] = Some(JobOutcome::DependencyFailed);
                        todo.extend(&dependents[dependent]);
                    }
                }
            }
        }
    }
}

/// Runs `job(i)` for every job `i` of the DAG `deps` (`deps[i]` = the jobs `i` depends on) on
/// up to `workers` threads at once, each job once all its dependencies have succeeded, and
/// returns every job's outcome, indexed like `deps`.
///
/// Ready jobs start in the order they became ready (initially in index order). If a job
/// panics, nothing more starts and the panic is raised again once the running jobs finish.
///
/// # Errors
/// [`Cycle`] if some jobs can never become ready; nothing has run then.
///
/// # Panics
/// If a dependency index is out of range, or a job panicked.
pub fn run<T, E, F>(
    deps: &[Vec<usize>],
    workers: usize,
    on_failure: OnFailure,
    job: F,
) -> Result<Vec<JobOutcome<T, E>>, Cycle>
where
    T: Send,
    E: Send,
    F: Fn(usize) -> Result<T, E> + Sync,
{
    check(deps)?;
    let dependents = dependents(deps);
    let waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let state = Mutex::new(State {
        ready: (0..deps.len()).filter(|&j| waiting[j] == 0).collect(),
        waiting,
        running: 0,
        stopped: false,
        panic: None,
        outcomes: (0..deps.len()).map(|_| None).collect(),
    });
    let changed = Condvar::new();
    let worker = || loop {
        let next = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if st.stopped {
                    break None;
                }
                if let Some(next) = st.ready.pop_front() {
                    st.running += 1;
                    break Some(next);
                }
                if st.running == 0 {
                    // Nothing ready and nothing that could make anything ready: done (the
                    // graph was checked for cycles, so every job has an outcome or a failed
                    // dependency).
                    break None;
                }
                st = changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let Some(next) = next else {
            changed.notify_all();
            return;
        };
        let result = panic::catch_unwind(AssertUnwindSafe(|| job(next)));
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(result) => st.finish(next, result, &dependents, on_failure),
            Err(payload) => {
                st.running -= 1;
                st.stopped = true;
                st.panic.get_or_insert(payload);
            }
        }
        drop(st);
        changed.notify_all();
    };
    std::thread::scope(|s| {
        for _ in 0..workers.clamp(1, deps.len().max(1)) {
            s.spawn(worker);
        }
    });
    let state = state.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(payload) = state.panic {
        panic::resume_unwind(payload);
    }
    Ok(state
        .outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(JobOutcome::Cancelled))
        .collect())
}

/// The import graph of specs given together: for each spec, the indices of the given specs it
/// imports (imports of artifacts not among them must be registered already).
///
/// # Errors
/// [`BuildError::Cycle`] naming the specs that import each other in a cycle (and those
/// importing them).
pub fn import_graph(specs: &[BuildSpec]) -> Result<Vec<Vec<usize>>, BuildError> {
    let index: BTreeMap<&ArtifactId, usize> = specs.iter().enumerate().map(|(i, s)| (&s.id, i)).collect();
    let deps: Vec<Vec<usize>> = specs
        .iter()
        .map(|s| {
            s.imports
                .iter()
                .filter_map(|imp| index.get(&imp.id).copied())
                .collect()
        })
        .collect();
    check(&deps).map_err(|cycle| {
        let stuck: Vec<String> = cycle.jobs.iter().map(|&i| specs[i].id.to_string()).collect();
        BuildError::Cycle(stuck.join(", "))
    })?;
    Ok(deps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Runs `deps` recording the order jobs start in; jobs listed in `failing` fail.
    fn run_recording(
        deps: &[Vec<usize>],
        workers: usize,
        on_failure: OnFailure,
        failing: &[usize],
    ) -> (Vec<JobOutcome<usize, String>>, Vec<usize>) {
        let started = Mutex::new(Vec::new());
        let outcomes = run(deps, workers, on_failure, |i| {
            started.lock().unwrap().push(i);
            if failing.contains(&i) {
                Err(format!("job {i} failed"))
            } else {
                Ok(i)
            }
        })
        .expect("no cycle");
        (outcomes, started.into_inner().unwrap())
    }

    #[test]
    fn every_job_starts_after_its_dependencies() {
        // 0 ← 1 ← 3, 0 ← 2 ← 3, 4 alone, 5 ← 4 and 3.
        let deps = vec![vec![], vec![0], vec![0], vec![1, 2], vec![], vec![4, 3]];
        for workers in [1, 2, 8] {
            let (outcomes, started) = run_recording(&deps, workers, OnFailure::Stop, &[]);
            assert_eq!(started.len(), deps.len(), "each job runs exactly once");
            let position = |j: usize| started.iter().position(|&s| s == j).unwrap();
            for (job, job_deps) in deps.iter().enumerate() {
                for &dep in job_deps {
                    assert!(position(dep) < position(job), "{dep} before {job}: {started:?}");
                }
            }
            for (i, outcome) in outcomes.iter().enumerate() {
                assert!(
                    matches!(outcome, JobOutcome::Succeeded(v) if *v == i),
                    "{outcome:?}"
                );
            }
        }
    }

    #[test]
    fn one_worker_runs_ready_jobs_in_index_order_first() {
        let deps = vec![vec![2], vec![], vec![], vec![1]];
        let (_, started) = run_recording(&deps, 1, OnFailure::Stop, &[]);
        assert_eq!(started, vec![1, 2, 3, 0]);
    }

    #[test]
    fn never_more_jobs_at_once_than_workers_and_the_bound_is_reached() {
        let deps: Vec<Vec<usize>> = vec![Vec::new(); 12];
        for workers in [1, 3] {
            let (now, peak) = (AtomicUsize::new(0), AtomicUsize::new(0));
            run(&deps, workers, OnFailure::Stop, |_| {
                let running = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(running, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), ()>(())
            })
            .unwrap();
            assert_eq!(peak.load(Ordering::SeqCst), workers);
        }
    }

    #[test]
    fn dependents_of_a_failure_never_start_and_stop_cancels_the_rest() {
        // 1 fails; 2 depends on 1, 3 on 2; 4 is unrelated but only ready after 0.
        let deps = vec![vec![], vec![0], vec![1], vec![2], vec![0]];
        let (outcomes, started) = run_recording(&deps, 1, OnFailure::Stop, &[1]);
        assert_eq!(started, vec![0, 1]);
        assert!(matches!(outcomes[0], JobOutcome::Succeeded(0)));
        assert!(matches!(&outcomes[1], JobOutcome::Failed(e) if e == "job 1 failed"));
        assert!(matches!(outcomes[2], JobOutcome::DependencyFailed));
        assert!(matches!(outcomes[3], JobOutcome::DependencyFailed));
        assert!(matches!(outcomes[4], JobOutcome::Cancelled));
    }

    #[test]
    fn keep_going_runs_everything_not_depending_on_a_failure() {
        let deps = vec![vec![], vec![0], vec![1], vec![2], vec![0]];
        let (outcomes, started) = run_recording(&deps, 2, OnFailure::KeepGoing, &[1]);
        assert!(!started.contains(&2) && !started.contains(&3), "{started:?}");
        assert!(matches!(outcomes[4], JobOutcome::Succeeded(4)));
        assert!(matches!(outcomes[3], JobOutcome::DependencyFailed));
    }

    #[test]
    fn a_cycle_is_refused_before_anything_runs() {
        // 1 ↔ 2, and 3 depends on the cycle; 0 is fine.
        let deps = vec![vec![], vec![2], vec![1], vec![1, 0]];
        let ran = AtomicUsize::new(0);
        let result = run(&deps, 2, OnFailure::Stop, |_| {
            ran.fetch_add(1, Ordering::SeqCst);
            Ok::<(), ()>(())
        });
        assert_eq!(result.unwrap_err(), Cycle { jobs: vec![1, 2, 3] });
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_panicking_job_stops_the_schedule_and_panics_the_caller() {
        let deps = vec![vec![], vec![0], vec![]];
        let started = Mutex::new(Vec::new());
        let result = panic::catch_unwind(AssertUnwindSafe(|| {
            run(&deps, 1, OnFailure::Stop, |i| {
                started.lock().unwrap().push(i);
                if i == 0 {
                    panic!("job 0 panics");
                }
                Ok::<(), ()>(())
            })
        }));
        assert!(result.is_err(), "the panic reaches the caller");
        assert_eq!(started.into_inner().unwrap(), vec![0]);
    }

    #[test]
    fn an_empty_graph_runs_nothing() {
        let outcomes = run(&[], 4, OnFailure::Stop, |_| Ok::<(), ()>(())).unwrap();
        assert!(outcomes.is_empty());
    }

    /// 20 000 jobs in layers of 100, each depending on every 10th job of the layer before,
    /// plus a chain through the first job of every layer: wide and deep at once.
    #[test]
    fn twenty_thousand_jobs_schedule_in_well_under_a_second() {
        let (layers, width) = (200, 100);
        let deps: Vec<Vec<usize>> = (0..layers * width)
            .map(|j| {
                let (layer, slot) = (j / width, j % width);
                if layer == 0 {
                    return Vec::new();
                }
                let before = (layer - 1) * width;
                let mut d: Vec<usize> = (0..width).step_by(10).map(|s| before + s).collect();
                if slot != 0 {
                    d.push(layer * width);
                }
                d
            })
            .collect();
        let start = Instant::now();
        let outcomes = run(&deps, 4, OnFailure::Stop, Ok::<usize, ()>).unwrap();
        let took = start.elapsed();
        assert_eq!(outcomes.len(), layers * width);
        assert!(outcomes.iter().all(|o| matches!(o, JobOutcome::Succeeded(_))));
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }

    /// 10 000 jobs wait for job 0, which runs until the 9 999 independent jobs after them are
    /// done: picking a job must not scan the waiting ones (the pending-list scan this
    /// replaced took 77 s on this graph).
    #[test]
    fn jobs_waiting_behind_a_running_one_do_not_slow_the_others() {
        let (waiting, free) = (10_000, 9_999);
        let deps: Vec<Vec<usize>> = (0..=waiting + free)
            .map(|j| {
                if (1..=waiting).contains(&j) {
                    vec![0]
                } else {
                    Vec::new()
                }
            })
            .collect();
        let free_done = AtomicUsize::new(0);
        let start = Instant::now();
        let outcomes = run(&deps, 4, OnFailure::Stop, |j| {
            if j == 0 {
                // Bounded, so a broken scheduler fails the time check instead of hanging.
                while free_done.load(Ordering::SeqCst) < free && start.elapsed() < Duration::from_secs(10) {
                    std::thread::yield_now();
                }
            } else if j > waiting {
                free_done.fetch_add(1, Ordering::SeqCst);
            }
            Ok::<(), ()>(())
        })
        .unwrap();
        let took = start.elapsed();
        assert!(outcomes.iter().all(|o| matches!(o, JobOutcome::Succeeded(()))));
        assert!(took < Duration::from_millis(500), "took {took:?}");
    }
}
