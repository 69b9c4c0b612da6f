//! Bringing a store in line with a stack: fetch sources, build what is missing (in
//! parallel, each package as soon as its build dependencies are done), compose the profile
//! document, and record it as the next generation unless nothing changed.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Condvar, Mutex};

use super::{Stack, StackError};
use crate::artifact::ArtifactId;
use crate::build::{self, BuildError, BuildOptions, BuildOutcome};
use crate::profile::{Generation, ProfileArtifact, ProfileDoc};
use crate::source::{self, FetchRequest, HttpOptions, SourceError};
use crate::store::Store;

/// Indices of the packages whose artifact is not registered yet, in build order.
pub fn needs_build(store: &Store, stack: &Stack) -> Result<Vec<usize>, StackError> {
    let mut out = Vec::new();
    for i in stack.build_order() {
        if store
            .index()
            .artifact(&stack.packages[i].spec.id)
            .map_err(crate::store::StoreError::from)?
            .is_none()
        {
            out.push(i);
        }
    }
    Ok(out)
}

/// What fetching one source did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The key was cached; nothing was read.
    Cached,
    /// The content was fetched and had the expected key.
    Fetched,
}

/// Called per source by [`fetch_sources`]: package index, source index, what happened.
pub type FetchReport<'a> = dyn FnMut(usize, usize, Result<FetchOutcome, &SourceError>) + 'a;

/// Gets every source of the packages `which` into the cache, checking each against its key.
/// `report(package, source, outcome)` is called per source; `mirrors` are tried first for
/// archives (see [`FetchRequest::mirrors`]).
///
/// # Errors
/// [`StackError::Fetch`] for the first source that fails (a key mismatch stores nothing).
pub fn fetch_sources(
    store: &Store,
    stack: &Stack,
    which: &[usize],
    mirrors: &[String],
    report: &mut FetchReport<'_>,
) -> Result<(), StackError> {
    let mut first_error = None;
    for &i in which {
        let package = &stack.packages[i];
        for (s, src) in package.sources.iter().enumerate() {
            if source::has_source(store, &src.key) {
                report(i, s, Ok(FetchOutcome::Cached));
                continue;
            }
            let mut request = FetchRequest::new(src.origin.clone());
            request.expected = Some(src.key);
            request.mirrors = mirrors.to_vec();
            request.http = HttpOptions::default();
            match source::fetch(store, &request) {
                Ok(_) => report(i, s, Ok(FetchOutcome::Fetched)),
                Err(e) => {
                    report(i, s, Err(&e));
                    // Keep going: one run reports every bad source, not just the first.
                    first_error.get_or_insert(StackError::Fetch {
                        package: package.name.clone(),
                        location: src.location.clone(),
                        source: Box::new(e),
                    });
                }
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Progress of [`build_packages`].
#[derive(Debug)]
pub enum BuildEvent<'a> {
    /// A package's build starts.
    Started { package: &'a str, id: &'a ArtifactId },
    /// A package's build finished.
    Finished {
        package: &'a str,
        outcome: &'a BuildOutcome,
    },
    /// A package's build failed (the error also comes back from [`build_packages`]).
    Failed { package: &'a str, error: &'a BuildError },
}

/// Builds the packages `which` with up to `jobs` builds at once, each as soon as its build
/// dependencies among `which` are done (the others must be registered already, which
/// [`needs_build`] guarantees). After a failure no new build starts; running ones finish.
///
/// # Errors
/// [`StackError::Build`] for the first package that failed.
pub fn build_packages(
    store: &Store,
    stack: &Stack,
    which: &[usize],
    options: &BuildOptions,
    jobs: usize,
    report: &(dyn Fn(BuildEvent<'_>) + Sync),
) -> Result<Vec<(usize, BuildOutcome)>, StackError> {
    struct State {
        pending: Vec<usize>,
        done: HashSet<usize>,
        running: usize,
        failed: Option<StackError>,
        outcomes: Vec<(usize, BuildOutcome)>,
    }
    let wanted: BTreeSet<usize> = which.iter().copied().collect();
    let state = Mutex::new(State {
        pending: which.to_vec(),
        done: HashSet::new(),
        running: 0,
        failed: None,
        outcomes: Vec::new(),
    });
    let changed = Condvar::new();
    let ready = |i: usize, done: &HashSet<usize>| {
        stack.packages[i]
            .build_deps
            .iter()
            .all(|d| !wanted.contains(d) || done.contains(d))
    };
    let worker = || loop {
        let next = {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if st.failed.is_some() || st.pending.is_empty() {
                    return;
                }
                if let Some(pos) = st.pending.iter().position(|&i| ready(i, &st.done)) {
                    st.running += 1;
                    break st.pending.remove(pos);
                }
                // Nothing is ready: wait for a running build to finish. (Cycles were refused
                // when the stack was parsed, so something is running.)
                st = changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let package = &stack.packages[next];
        report(BuildEvent::Started {
            package: &package.name,
            id: &package.spec.id,
        });
        let origin = format!("{}:{}: package {}", stack.file, package.line, package.name);
        let result = build::build(store, &package.spec, &origin, options);
        match &result {
            Ok(outcome) => report(BuildEvent::Finished {
                package: &package.name,
                outcome,
            }),
            Err(error) => report(BuildEvent::Failed {
                package: &package.name,
                error,
            }),
        }
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.running -= 1;
        match result {
            Ok(outcome) => {
                st.done.insert(next);
                st.outcomes.push((next, outcome));
            }
            Err(source) => {
                st.failed.get_or_insert(StackError::Build {
                    package: package.name.clone(),
                    source: Box::new(source),
                });
            }
        }
        changed.notify_all();
    };
    std::thread::scope(|s| {
        for _ in 0..jobs.clamp(1, which.len().max(1)) {
            s.spawn(worker);
        }
    });
    let state = state.into_inner().unwrap_or_else(|e| e.into_inner());
    match state.failed {
        Some(e) => Err(e),
        None => Ok(state.outcomes),
    }
}

/// The profile document the stack describes: its profile members (see
/// [`Stack::profile_members`]) with their rules, and the stack's environment.
///
/// # Errors
/// [`StackError::NotBuilt`] if a member's artifact is not registered.
pub fn profile_doc(store: &Store, stack: &Stack) -> Result<ProfileDoc, StackError> {
    let mut artifacts = Vec::new();
    for i in stack.profile_members() {
        let package = &stack.packages[i];
        let record = store
            .index()
            .artifact(&package.spec.id)
            .map_err(crate::store::StoreError::from)?
            .ok_or_else(|| StackError::NotBuilt {
                package: package.name.clone(),
                id: package.spec.id.to_string(),
            })?;
        artifacts.push(ProfileArtifact {
            id: record.id,
            root: record.root,
            rules: package.rules.clone(),
            // Derived from root and rules by `create_profile_doc`.
            view: None,
        });
    }
    Ok(ProfileDoc {
        artifacts,
        env: stack.env.clone(),
    })
}

/// What [`apply_profile`] did.
#[derive(Debug, Clone)]
pub enum Applied {
    /// The current generation already has this document; nothing was written.
    Unchanged(Generation),
    /// A new generation was created and made current.
    Created {
        generation: Generation,
        /// The document of the generation that was current before, if any.
        previous: Option<ProfileDoc>,
    },
}

/// Makes `doc` the current generation of profile `name`, creating a generation only when the
/// current one differs (so re-applying an unchanged stack writes nothing).
pub fn apply_profile(store: &Store, name: &str, doc: &ProfileDoc) -> Result<Applied, StackError> {
    let previous = match store.current_generation(name)? {
        Some(current) => {
            let current_doc = store.profile_doc(&current.document)?;
            if same_profile(&current_doc, doc) {
                return Ok(Applied::Unchanged(current));
            }
            Some(current_doc)
        }
        None => None,
    };
    let generation = store.create_profile_doc(name, doc)?;
    Ok(Applied::Created { generation, previous })
}

/// Whether two profile documents describe the same profile, ignoring the rule views
/// `create_profile_doc` derives from root and rules alone (so a stored document equals the
/// one it was created from).
pub fn same_profile(a: &ProfileDoc, b: &ProfileDoc) -> bool {
    let strip = |doc: &ProfileDoc| {
        let mut doc = doc.clone();
        for artifact in &mut doc.artifacts {
            artifact.view = None;
        }
        doc
    };
    strip(a) == strip(b)
}
