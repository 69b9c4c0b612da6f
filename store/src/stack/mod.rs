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
//! version = "1.2.13"             # part of the build spec, hence of the id (rule: artifact::check_version)
//! template = "configure-make"    # see `templates`; or `build = [ job nodes ]`
//! sources = [{ url = "zlib_1.2.13.dfsg.orig.tar.bz2", key = "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6" }]
//! configure_flags = []           # template parameters (see `templates`)
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
//! (for `hit build-write-files`), `build_deps`, `run_deps`, template parameters, `rules`,
//! `in_profile` (default true), `extends`, `kind` and `tool`. Unknown keys are errors, so a
//! typo never goes unnoticed. Names and versions follow Hashdist's rule narrowed to what is
//! safe in a path (`artifact::check_version`): `1.2.13`, `2.0rc1`, `1.26.4+local` are fine.
//!
//! ## Package repositories
//!
//! ```toml
//! [stack]
//! repos = ["site-pkgs", "../pkgs"]   # relative to this file; searched in order
//!
//! [[package]]
//! name = "zlib"                      # pkgs/zlib.toml, unless site-pkgs/zlib.toml exists
//!
//! [[package]]
//! name = "hello"
//! configure_flags = ["--disable-nls"]  # overrides the key of pkgs/hello.toml
//!
//! [[package]]
//! name = "zlib-static"
//! extends = "zlib"                   # builds on pkgs/zlib.toml under another name
//! configure_flags = ["--static"]
//! ```
//!
//! A repo is a directory of package files `NAME.toml`, each holding the keys of a
//! `[[package]]` entry at top level, without `name` (the file name is the name), plus an
//! optional `extends = "OTHER"`: another package, looked up through the same repos (single
//! inheritance). The stack still lists every package it wants; a `[[package]]` entry builds
//! on `NAME.toml` of the first repo that has it (or on its own `extends`). Merge rule:
//!
//! - A package's layers, most specific first: the stack entry, the file it builds on, the file
//!   that one `extends`, and so on (the whole chain is resolved first; a chain coming back to
//!   a file already in it is an error naming the chain).
//! - Each key is taken whole from the most specific layer that has it: lists and tables are
//!   replaced, never appended or merged (`build_deps = []` in a stack entry removes them).
//! - Relative source paths resolve against the directory of the file that wrote them.
//! - Two repos holding `NAME.toml`: the first wins; the others are recorded in
//!   [`Package::shadowed`] (and [`Package::defined_in`] says which file was used).
//! - An entry naming a package that is in no repo, and that has no `build`, `template`,
//!   `files` or `kind` of its own, is an error ("package X is in none of the repos: A, B").
//!
//! Errors in a package file carry that file's name and position.
//!
//! ## Host tools
//!
//! `kind = "host"` (optional `tool = "gcc"`, default the package name; or an absolute path)
//! stands for a program on the host's `PATH`, probed when the stack is read (see `host`): its
//! build spec holds the resolved path, `--version` line and SHA-256, and its artifact links
//! `bin/TOOL` to it. List it in `build_deps` like any package (templates put `${REF_DIR}/bin`
//! on `PATH`); a new host compiler then changes the ids of everything built with it. A host
//! package takes no `template`, `build`, `files`, `sources`, `build_deps` or template
//! parameters, and stays out of the profile unless `in_profile = true`. A tool not on `PATH`
//! is an error at its `tool` (or `kind`) key, before anything is built.
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
//!   Packages built by the `python` or `wheel` template add their `lib/pythonX.Y/site-packages`
//!   to the profile's `PYTHONPATH` (unless `[stack.env]` sets it; see `run::profile_doc`).
//! - **Cycles.** A cycle of build dependencies is an error (nothing could be built first). Run
//!   dependencies may form cycles: they only decide what the profile holds.
//!
//! Every error in a stack file is reported as `FILE:LINE:COLUMN: message`, before anything
//! touches the store.

pub mod host;
mod parse;
mod run;
pub mod templates;
pub mod why;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::build::{BuildError, BuildSpec};
use crate::profile::LinkRule;
use crate::source::{Origin, SourceError, SourceKey};
use crate::store::StoreError;

pub use host::{HostSearch, HostTool};
pub use parse::{parse, parse_with, read, read_with};
pub use run::{
    apply_profile, build_packages, fetch_sources, needs_build, profile_doc, same_profile, Applied,
    BuildEvent, FetchOutcome,
};

/// Errors of the stack layer.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// A stack or package file cannot be read.
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
    /// The host tool a `kind = "host"` package stands for cannot be used (not on `PATH`,
    /// unreadable, or its `--version` hangs); `line:column` is its `tool` (or `kind`) key.
    #[error("{file}:{line}:{column}: package {package}: host tool")]
    HostTool {
        file: String,
        line: usize,
        column: usize,
        package: String,
        #[source]
        source: host::HostError,
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
    /// The template it is built with, if any (Python templates add `PYTHONPATH` to the
    /// profile).
    pub template: Option<String>,
    /// Whether the profile lists it for its own sake.
    pub in_profile: bool,
    /// Profile rules for its artifact.
    pub rules: Vec<LinkRule>,
    /// 1-based line of its `name` in the stack file, for messages.
    pub line: usize,
    /// The file holding its definition: the repo file (`NAME.toml`) it was taken from, or
    /// the stack file when the stack entry defines it.
    pub defined_in: PathBuf,
    /// Package files it inherits from through `extends`, nearest first.
    pub extends: Vec<PathBuf>,
    /// Package files of later repos hidden by the ones used (the first repo wins).
    pub shadowed: Vec<PathBuf>,
    /// For a `kind = "host"` package, the tool as probed.
    pub host: Option<HostTool>,
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
