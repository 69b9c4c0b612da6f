//! The job language: Hashdist's `commands` mini-language (`hashdist/core/run_job.py`).
//!
//! A job is a list of nodes, each a JSON object with exactly one of these keys:
//!
//! ```text
//! {"cmd": ["make", "-j$HDIST_CPU_COUNT"]}        run a process (no shell, no globbing)
//! {"hit": ["build-unpack-sources"]}              run an in-process helper (a HitRunner)
//! {"set": "VAR", "value": "…"}                   set a variable ("nohash_value" works too)
//! {"prepend_path": "VAR", "value": "/x/bin"}     ':'-separated lists; also append_path
//! {"prepend_flag": "VAR", "value": "-O2"}        ' '-separated lists; also append_flag
//! {"chdir": "src"}                               change directory, relative to the current one
//! {"commands": [ … ]}                            a nested scope
//! {}                                             nothing (accepted, as Hashdist does)
//! ```
//!
//! `cmd` and `hit` nodes may also carry `inputs` (`[{"text": [lines]} | {"json": doc} |
//! {"string": "…"}]`, dumped to temporary files whose paths are `$in0`, `$in1`, … for that node
//! only), and one of `to_var` (capture stdout, strip surrounding whitespace, store it in a
//! variable of the current scope) or `append_to_file` (append stdout to a file, relative to the
//! current directory). Otherwise stdout and stderr go, line by line, to the job log.
//!
//! Environment and directory are a stack: a `commands` node works on copies, so nothing it
//! sets leaks out. The environment a process sees is exactly the job's variables plus `PWD`
//! (the current directory) and its node's `$inN`; nothing of the caller's environment leaks in,
//! and a bare program name is looked up in the job's own `PATH` (unset means nothing is found).
//!
//! Substitution (in argv elements, `value`/`nohash_value`, `chdir` and `append_to_file`; never
//! in `inputs` or in variable names) follows Hashdist's `substitute()` exactly: `$NAME` and
//! `${NAME}` with `NAME` = `[A-Za-z_][A-Za-z0-9_]*`; a missing variable is an error; `$$` is
//! an error; `\$` is a literal `$`; four backslashes become two, and no other escape exists.
//!
//! [`validate`] checks the whole structure (and the substitution syntax, which does not depend
//! on the environment) without running anything; [`run_job`] does the same before it runs the
//! first node, so a malformed job never runs half-way.
//!
//! This file holds the errors and the entry points; `parse` turns JSON into typed nodes,
//! `template` does the substitution, `exec` runs the nodes.

mod exec;
mod parse;
mod template;
#[cfg(test)]
mod test_support;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use serde_json::Value;

pub(crate) use exec::normalize;
use exec::{path_string, Executor, LogSink};
use parse::parse_list;
use template::Template;

/// The error type of a [`HitRunner`]: whatever the helper failed with.
pub type HitError = Box<dyn std::error::Error + Send + Sync>;

/// The job's variables.
type Env = BTreeMap<String, String>;

/// Errors of the job layer.
///
/// `path` always names the node as it sits in the job, e.g. `commands[2].commands[0]`, so the
/// message is enough to find the culprit in the spec. Errors of [`substitute`] called on its own
/// have an empty path.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A node or an `inputs` entry is not a JSON object.
    #[error("{path}: expected an object, found {found}")]
    NotAnObject {
        /// Where it sits.
        path: String,
        /// What was found instead.
        found: String,
    },
    /// A node has a key that is not a node type, or not allowed beside the node's type.
    #[error("{path}: unexpected key {key:?}; expected {expected}")]
    UnknownNode {
        /// The node.
        path: String,
        /// The offending key.
        key: String,
        /// What would have been accepted there.
        expected: String,
    },
    /// A node has two keys that exclude each other (two node types, `to_var` and
    /// `append_to_file`, `value` and `nohash_value`, two kinds of input).
    #[error("{path}: {first:?} and {second:?} cannot be combined in one node")]
    ConflictingKeys {
        /// The node.
        path: String,
        /// One key.
        first: String,
        /// The other key.
        second: String,
    },
    /// A field is missing or has the wrong type.
    #[error("{path}.{field}: expected {expected}, found {found}")]
    BadField {
        /// The node.
        path: String,
        /// The field within the node, e.g. `value` or `cmd[1]`.
        field: String,
        /// What it should be.
        expected: &'static str,
        /// What it is (`nothing` when missing).
        found: String,
    },
    /// `$NAME` refers to a variable the job environment does not have.
    #[error("{}variable ${name} is not set in the job environment", at(.path))]
    MissingVariable {
        /// The field being substituted, e.g. `commands[0].cmd[1]`.
        path: String,
        /// The variable.
        name: String,
    },
    /// `$$` appears in a substituted string (Hashdist rejects it; `\$` is the escape).
    #[error("{}\"$$\" is not allowed (in {text:?}); write \\$ for a literal $", at(.path))]
    DollarDollar {
        /// The field being substituted.
        path: String,
        /// The string.
        text: String,
    },
    /// A `$` that starts neither `$NAME` nor `${NAME}`.
    #[error(
        "{}invalid placeholder {near:?} in {text:?}: \"$\" must start $NAME or ${{NAME}}; write \\$ for a literal $",
        at(.path)
    )]
    BadPlaceholder {
        /// The field being substituted.
        path: String,
        /// The string.
        text: String,
        /// The text from the offending `$` on (shortened).
        near: String,
    },
    /// A bare program name is not an executable file in any directory of the job's `PATH`.
    #[error("{path}: command {argv0:?} not found: {}", search_description(.search_path))]
    CommandNotFound {
        /// The node.
        path: String,
        /// The program name as written (after substitution).
        argv0: String,
        /// The job's `PATH`, `None` when the job has none.
        search_path: Option<String>,
    },
    /// The process could not be started.
    #[error("{path}: cannot start {argv0:?} in {}: {source}", .cwd.display())]
    Spawn {
        /// The node.
        path: String,
        /// The program as written (after substitution).
        argv0: String,
        /// The directory it was started in.
        cwd: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The process exited unsuccessfully (or was killed by a signal).
    #[error("{path}: command {argv:?} failed ({status})")]
    CommandFailed {
        /// The node.
        path: String,
        /// The full command line (after substitution).
        argv: Vec<String>,
        /// How it ended.
        status: ExitStatus,
    },
    /// A `hit` helper failed.
    #[error("{path}: hit {args:?} failed: {source}")]
    Hit {
        /// The node.
        path: String,
        /// The helper's arguments (after substitution).
        args: Vec<String>,
        /// What the helper reported.
        #[source]
        source: HitError,
    },
    /// Any other I/O failure (inputs, log, output files, pipes).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the node where there is one.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// `"path: "` for messages, or nothing for errors of a bare [`substitute`].
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn search_description(search_path: &Option<String>) -> String {
    match search_path {
        None => "PATH is not set in the job environment (the caller's PATH is not used)".to_string(),
        Some(p) => format!("no executable file of that name in the job's PATH {p:?}"),
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> JobError {
    let context = context.into();
    move |source| JobError::Io { context, source }
}

/// Runs `hit` nodes: helpers that run inside this process rather than as a program.
///
/// The build store implements this (`build-unpack-sources`, `build-write-files`,
/// `create-links`, …).
pub trait HitRunner {
    /// Runs the helper named by `args[0]` with the remaining arguments.
    ///
    /// `args` are substituted already and never empty. `env` is the node's environment (the
    /// job's variables, `PWD` and the node's `$inN`); `cwd` is the job's current directory,
    /// which is not the process's: resolve relative paths against it. Whatever the helper
    /// considers its standard output goes to `stdout`, which is the job log, the `to_var`
    /// capture or the `append_to_file` file as the node says.
    fn run_hit(
        &self,
        args: &[String],
        env: &BTreeMap<String, String>,
        cwd: &Path,
        stdout: &mut dyn Write,
    ) -> Result<(), HitError>;
}

/// Everything a job runs with.
///
/// [`run_job`] adds `PWD` to `env` and makes `cwd` absolute before the first node; when it
/// returns (successfully or not), `env` and `cwd` hold the state of the job's top-level scope
/// as the last node run left it (changes inside nested `commands` never show here).
pub struct JobContext<'a> {
    /// The job's whole initial environment (the build store puts `ARTIFACT`, `BUILD`,
    /// `<REF>_DIR`, … here). Nothing else reaches the processes.
    pub env: BTreeMap<String, String>,
    /// The starting directory; relative paths are taken against the process's directory.
    pub cwd: PathBuf,
    /// The job log: receives processes' stdout (unless redirected) and stderr line by line,
    /// plus one `[hdist] …` line per command run. Flushed after every write so it can be
    /// followed while the job runs.
    pub log: &'a mut dyn Write,
    /// Runs the `hit` nodes.
    pub hits: &'a dyn HitRunner,
    /// Also echo everything written to the log to this process's stderr.
    pub verbose: bool,
}

impl fmt::Debug for JobContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("env", &self.env)
            .field("cwd", &self.cwd)
            .field("verbose", &self.verbose)
            .finish_non_exhaustive()
    }
}

/// Checks the structure of a job without running anything.
///
/// Rejects non-object nodes, unknown or conflicting keys, fields of the wrong type (a `set`
/// without `value`, a non-string argv element, an `inputs` entry that is none of text / json /
/// string, …), invalid variable names, and substitution syntax that can never succeed (`$$`,
/// a `$` not followed by a name). The error names the node, e.g. `commands[2].commands[0]`.
/// Missing variables are not detected: they depend on the environment at run time.
pub fn validate(commands: &[Value]) -> Result<(), JobError> {
    parse_list(commands, "commands", "").map(|_| ())
}

/// Substitutes `$NAME` / `${NAME}` in `text` from `env` with Hashdist's rules (see the module
/// docs): a variable not in `env`, `$$`, or a `$` that starts no name is an error; `\$` is a
/// literal `$`.
pub fn substitute(text: &str, env: &BTreeMap<String, String>) -> Result<String, JobError> {
    Template::parse(text, String::new())?.expand(env)
}

/// Runs a job: validates it all (see [`validate`]), then runs its nodes in order, stopping at
/// the first failure.
///
/// Processes run with a cleared environment holding only the job's variables, with stdin
/// empty, in the job's current directory. See [`JobContext`] for what `ctx` holds afterwards.
pub fn run_job(commands: &[Value], ctx: &mut JobContext<'_>) -> Result<(), JobError> {
    let nodes = parse_list(commands, "commands", "")?;
    let JobContext {
        env,
        cwd,
        log,
        hits,
        verbose,
    } = ctx;
    let start = std::path::absolute(&*cwd).map_err(io_error(format!(
        "making the job directory {} absolute",
        cwd.display()
    )))?;
    *cwd = normalize(&start);
    env.insert("PWD".to_string(), path_string(cwd));
    let mut executor = Executor {
        log: LogSink {
            out: &mut **log,
            verbose: *verbose,
        },
        hits: *hits,
        inputs_dir: None,
    };
    let result = executor.run_list(&nodes, env, cwd);
    // Report a failing flush only if the job itself went fine: the job's error says more.
    let flushed = executor.log.flush().map_err(io_error("writing the job log"));
    result.and(flushed)
}
