//! Stack files: a TOML description of a software stack, turned into build specs and a profile.
//!
//! ```toml
//! [stack]
//! profile = "tools"              # profile name (the command line's --profile overrides it)
//!
//! [stack.env]                    # profile environment; $PROFILE stands for the mount point
//! MANPATH = "$PROFILE/share/man"
//!
//! [[package]]
//! name = "zlib"
//! version = "1_2_13"             # [A-Za-z0-9_+-]: part of the build spec, hence of the id
//! template = "configure-make"    # see `templates`; or `build = [ job nodes ]`
//! sources = [{ url = "zlib_1.2.13.dfsg.orig.tar.bz2", key = "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6" }]
//! configure_flags = []           # template parameters (configure_flags, make_flags)
//!
//! [[package]]
//! name = "minigzip"
//! sources = [{ url = "zlib_1.2.13.dfsg.orig.tar.bz2", key = "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6" }]
//! build_deps = ["zlib"]          # imported with ref ZLIB: $ZLIB_DIR, $ZLIB_ID in the job
//! run_deps = ["zlib"]            # pulled into the profile (recursively)
//! build = [
//!   { set = "PATH", value = "/usr/bin:/bin" },
//!   { hit = ["build-unpack-sources"] },
//!   { cmd = ["mkdir", "-p", "${ARTIFACT}/bin"] },
//!   { cmd = ["cc", "-O2", "-o", "${ARTIFACT}/bin/minigzip", "test/minigzip.c", "-I${ZLIB_DIR}/include",
//!            "-L${ZLIB_DIR}/lib", "-Wl,-rpath,${ZLIB_DIR}/lib", "-lz"] },
//! ]
//! rules = [{ action = "exclude", select = "share/**" }]   # profile rules (profile::LinkRule)
//! ```
//!
//! Package keys: `name` (required), `version`, exactly one of `template` and `build` (job
//! nodes, see `build::job`), `sources` (each `url` + `key`, optional `target`), `files`
//! (for `hit build-write-files`), `build_deps`, `run_deps`, template parameters, `rules`, and
//! `in_profile` (default true). Unknown keys are errors, so a typo never goes unnoticed.
//!
//! - **Ids chain.** Each package becomes a build spec (`build::spec::from_value`); a build
//!   dependency becomes an import of the dependency's computed artifact id with the reference
//!   `NAME` upper-cased and every other character than `[A-Z0-9]` turned into `_`. Changing
//!   zlib therefore changes the id of everything built against it.
//! - **Sources.** A `url` is anything `hdist fetch` takes. A plain relative path is resolved
//!   against the stack file's directory (so a stack and its tarballs can travel together);
//!   `file:relative` keeps Hashdist's meaning (relative to the working directory). The key is
//!   required: it is what makes the build reproducible, and `hdist fetch URL` prints it.
//! - **The profile** holds every package (in file order: the first listed wins on conflicts)
//!   except those marked `in_profile = false`, plus the run dependencies of what it holds,
//!   recursively. Build-only dependencies are *not* pulled in: as in Hashdist, the profile is
//!   what you list, and a build tool you only build with stays out unless you list it.
//! - **Cycles.** A cycle of build dependencies is an error (nothing could be built first). Run
//!   dependencies may form cycles: they only decide what the profile holds.
//!
//! Every error in a stack file is reported as `FILE:LINE:COLUMN: message`, before anything
//! touches the store.

mod parse;
mod run;
pub mod templates;

use std::collections::BTreeMap;

use crate::build::{BuildError, BuildSpec};
use crate::profile::LinkRule;
use crate::source::{Origin, SourceError, SourceKey};
use crate::store::StoreError;

pub use parse::{parse, read};
pub use run::{
    apply_profile, build_packages, fetch_sources, needs_build, profile_doc, same_profile, Applied,
    BuildEvent, FetchOutcome,
};

/// Errors of the stack layer.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// The stack file cannot be read.
    #[error(transparent)]
    Read(#[from] crate::IoError),
    /// The stack file is wrong at `line:column` (1-based; the column counts characters).
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A source could not be fetched, or its content has another key.
    #[error("package {package}: cannot fetch {location}")]
    Fetch {
        package: String,
        location: String,
        // Boxed: source and build errors are large, and every parse result carries the type.
        #[source]
        source: Box<SourceError>,
    },
    /// A package failed to build.
    #[error("package {package}")]
    Build {
        package: String,
        #[source]
        source: Box<BuildError>,
    },
    /// A profile package is not built (build it first).
    #[error("package {package} ({id}) is not built; run hdist up")]
    NotBuilt { package: String, id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A parsed, validated stack file.
#[derive(Debug, Clone)]
pub struct Stack {
    /// How the file is named in messages.
    pub file: String,
    /// `[stack] profile`, if given.
    pub profile: Option<String>,
    /// `[stack.env]`: the profile's environment.
    pub env: BTreeMap<String, String>,
    /// Packages in file order.
    pub packages: Vec<Package>,
}

/// One package of a stack.
#[derive(Debug, Clone)]
pub struct Package {
    /// Its name (also the artifact name).
    pub name: String,
    /// Its build spec; `spec.id` is the artifact it stands for.
    pub spec: BuildSpec,
    /// Where its sources come from.
    pub sources: Vec<StackSource>,
    /// Indices (into `Stack::packages`) of the packages it imports when building.
    pub build_deps: Vec<usize>,
    /// Indices of the packages the profile must hold with it.
    pub run_deps: Vec<usize>,
    /// Whether the profile lists it for its own sake.
    pub in_profile: bool,
    /// Profile rules for its artifact.
    pub rules: Vec<LinkRule>,
    /// 1-based line of its `name`, for messages.
    pub line: usize,
}

/// One source of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackSource {
    /// The location as resolved (relative paths made relative to the stack file).
    pub location: String,
    /// What to fetch from.
    pub origin: Origin,
    /// The key the content must have.
    pub key: SourceKey,
}

impl Stack {
    /// Package indices in build order (each after its build dependencies; file order
    /// otherwise).
    pub fn build_order(&self) -> Vec<usize> {
        // Iterative post-order depth-first search: a long enough chain of packages would
        // overflow the call stack of a recursive one.
        let mut seen = vec![false; self.packages.len()];
        let mut out = Vec::with_capacity(self.packages.len());
        for root in 0..self.packages.len() {
            if std::mem::replace(&mut seen[root], true) {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            while let Some((node, next)) = path.last_mut() {
                match self.packages[*node].build_deps.get(*next) {
                    Some(&dep) => {
                        *next += 1;
                        if !std::mem::replace(&mut seen[dep], true) {
                            path.push((dep, 0));
                        }
                    }
                    None => {
                        out.push(*node);
                        path.pop();
                    }
                }
            }
        }
        out
    }

    /// Indices of the packages the profile holds, in file order: every `in_profile` package
    /// and, recursively, their run dependencies.
    pub fn profile_members(&self) -> Vec<usize> {
        let mut wanted = vec![false; self.packages.len()];
        let mut todo: Vec<usize> = (0..self.packages.len())
            .filter(|&i| self.packages[i].in_profile)
            .collect();
        while let Some(i) = todo.pop() {
            if !std::mem::replace(&mut wanted[i], true) {
                todo.extend(&self.packages[i].run_deps);
            }
        }
        (0..self.packages.len()).filter(|&i| wanted[i]).collect()
    }

    /// The package called `name`.
    pub fn package(&self, name: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.name == name)
    }
}
