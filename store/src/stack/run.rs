//! Bringing a store in line with a stack: fetch sources, build what is missing (in
//! parallel through `build::schedule`, each package as soon as its build dependencies are
//! done), compose the profile document, and record it as the next generation unless nothing
//! changed.

use std::collections::HashMap;

use super::{templates, Stack, StackError};
use crate::artifact::ArtifactId;
use crate::build::schedule::{self, JobOutcome, OnFailure};
use crate::build::{self, BuildError, BuildOptions, BuildOutcome};
use crate::hash::Digest;
use crate::profile::{Generation, ProfileArtifact, ProfileDoc};
use crate::source::{self, FetchRequest, HttpOptions, SourceError};
use crate::store::Store;
use crate::tree::{self, Node, Tree};

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
            request.http = HttpOptions::for_downloads();
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
/// [`StackError::Build`] for the first package (in the order of `which`) that failed.
pub fn build_packages(
    store: &Store,
    stack: &Stack,
    which: &[usize],
    options: &BuildOptions,
    jobs: usize,
    report: &(dyn Fn(BuildEvent<'_>) + Sync),
) -> Result<Vec<(usize, BuildOutcome)>, StackError> {
    // Jobs are positions in `which`; dependencies already registered are not jobs.
    let position: HashMap<usize, usize> = which.iter().enumerate().map(|(k, &i)| (i, k)).collect();
    let deps: Vec<Vec<usize>> = which
        .iter()
        .map(|&i| {
            stack.packages[i]
                .build_deps
                .iter()
                .filter_map(|d| position.get(d).copied())
                .collect()
        })
        .collect();
    let build_one = |k: usize| {
        let package = &stack.packages[which[k]];
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
        result
    };
    let outcomes = schedule::run(&deps, jobs, OnFailure::Stop, build_one).map_err(|cycle| {
        // Cycles are refused when the stack is parsed; kept typed all the same.
        let names: Vec<&str> = cycle
            .jobs
            .iter()
            .map(|&k| stack.packages[which[k]].name.as_str())
            .collect();
        StackError::Build {
            package: names[0].to_string(),
            source: Box::new(BuildError::Cycle(names.join(", "))),
        }
    })?;
    let mut built = Vec::with_capacity(outcomes.len());
    for (k, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            JobOutcome::Succeeded(outcome) => built.push((which[k], outcome)),
            JobOutcome::Failed(source) => {
                return Err(StackError::Build {
                    package: stack.packages[which[k]].name.clone(),
                    source: Box::new(source),
                })
            }
            JobOutcome::DependencyFailed | JobOutcome::Cancelled => {}
        }
    }
    Ok(built)
}

/// The profile document the stack describes: its profile members (see
/// [`Stack::profile_members`]) with their rules, and the stack's environment.
///
/// Python packages (members built by the `python` or `wheel` template) add `PYTHONPATH`:
/// `$PROFILE/lib/pythonX.Y/site-packages` for every such directory in their artifacts, in
/// member order, unless `[stack.env]` sets `PYTHONPATH` itself. `X.Y` is read from the built
/// artifact, so it is whatever the installing Python chose, with no parameter to keep in step
/// (the path is the artifact's own: a rule that moves `lib/` would need `[stack.env]`).
///
/// # Errors
/// [`StackError::NotBuilt`] if a member's artifact is not registered.
pub fn profile_doc(store: &Store, stack: &Stack) -> Result<ProfileDoc, StackError> {
    let mut artifacts = Vec::new();
    let mut python_path: Vec<String> = Vec::new();
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
        if package
            .template
            .as_deref()
            .is_some_and(|t| templates::PYTHON_TEMPLATES.contains(&t))
        {
            for dir in site_packages(store, &record.root)? {
                if !python_path.contains(&dir) {
                    python_path.push(dir);
                }
            }
        }
        artifacts.push(ProfileArtifact {
            id: record.id,
            root: record.root,
            rules: package.rules.clone(),
            // Derived from root and rules by `Profiles::create_doc`.
            view: None,
        });
    }
    let mut env = stack.env.clone();
    if !python_path.is_empty() {
        env.entry(PYTHONPATH.to_string()).or_insert_with(|| {
            let dirs: Vec<String> = python_path.iter().map(|d| format!("$PROFILE/{d}")).collect();
            dirs.join(":")
        });
    }
    Ok(ProfileDoc { artifacts, env })
}

/// The profile variable Python packages set.
const PYTHONPATH: &str = "PYTHONPATH";

/// The `lib/pythonX.Y/site-packages` directories of the artifact tree `root`, sorted.
fn site_packages(store: &Store, root: &Digest) -> Result<Vec<String>, StackError> {
    let blobs = store.blobs();
    let Some(Node::Directory { digest: lib }) =
        tree::resolve_path(blobs.as_ref(), root, b"lib").map_err(crate::store::StoreError::from)?
    else {
        return Ok(Vec::new());
    };
    let mut dirs = Vec::new();
    for entry in Tree::load(blobs.as_ref(), &lib)
        .map_err(crate::store::StoreError::from)?
        .entries()
    {
        let (Node::Directory { digest }, Ok(name)) = (&entry.node, std::str::from_utf8(&entry.name)) else {
            continue;
        };
        if !name.starts_with("python") {
            continue;
        }
        let has_site = Tree::load(blobs.as_ref(), digest)
            .map_err(crate::store::StoreError::from)?
            .get(b"site-packages")
            .is_some_and(|e| matches!(e.node, Node::Directory { .. }));
        if has_site {
            dirs.push(format!("lib/{name}/site-packages"));
        }
    }
    Ok(dirs)
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
    let previous = match store.profiles().current(name)? {
        Some(current) => {
            let current_doc = store.profiles().doc(&current.document)?;
            if same_profile(&current_doc, doc) {
                return Ok(Applied::Unchanged(current));
            }
            Some(current_doc)
        }
        None => None,
    };
    let generation = store.profiles().create_doc(name, doc)?;
    Ok(Applied::Created { generation, previous })
}

/// Whether two profile documents describe the same profile, ignoring the rule views
/// `Profiles::create_doc` derives from root and rules alone (so a stored document equals the
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
