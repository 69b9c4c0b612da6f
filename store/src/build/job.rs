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

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use serde_json::Value;

/// The error type of a [`HitRunner`]: whatever the helper failed with.
pub type HitError = Box<dyn std::error::Error + Send + Sync>;

/// The job's variables.
type Env = BTreeMap<String, String>;

/// Node types; exactly one per node.
const NODE_KINDS: [&str; 9] = [
    "cmd",
    "hit",
    "commands",
    "set",
    "prepend_path",
    "append_path",
    "prepend_flag",
    "append_flag",
    "chdir",
];
/// Keys allowed beside `cmd` / `hit`.
const RUN_MODIFIERS: [&str; 3] = ["inputs", "to_var", "append_to_file"];
/// Keys allowed beside `set` and the path/flag nodes.
const ENV_MODIFIERS: [&str; 2] = ["value", "nohash_value"];
/// Keys of an `inputs` entry.
const INPUT_KINDS: [&str; 3] = ["text", "json", "string"];

/// Output of a process that never ends a line is flushed to the log in pieces of this size,
/// so a binary blob on stdout cannot grow memory without bound.
const MAX_LOG_LINE: usize = 64 * 1024;

/// How long to wait for output before checking again whether the process has exited. Only
/// matters when something the process started in the background keeps its pipes open.
const POLL_INTERVAL_MS: libc::c_int = 200;

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

// ---------------------------------------------------------------------------------------------
// Parsing: JSON → typed nodes. Everything a run could reject without an environment is
// rejected here, so `validate` and `run_job` agree by construction.

/// A parsed node and where it sits.
struct Node<'v> {
    /// E.g. `commands[2].commands[0]`.
    path: String,
    /// E.g. `2_0`: names the node's `inputs` files, as Hashdist does.
    stem: String,
    kind: NodeKind<'v>,
}

enum NodeKind<'v> {
    Empty,
    Scope(Vec<Node<'v>>),
    Run(Run<'v>),
    Env {
        var: &'v str,
        op: EnvOp,
        value: Template,
    },
    Chdir(Template),
}

#[derive(Clone, Copy)]
enum EnvOp {
    Set,
    Prepend(&'static str),
    Append(&'static str),
}

struct Run<'v> {
    hit: bool,
    argv: Vec<Template>,
    inputs: Vec<Input<'v>>,
    output: Output<'v>,
}

enum Input<'v> {
    Text(Vec<&'v str>),
    Json(&'v Value),
    Verbatim(&'v str),
}

enum Output<'v> {
    Log,
    ToVar(&'v str),
    AppendToFile(Template),
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(a) if a.is_empty() => "an empty list".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn bad_field(
    path: &str,
    field: impl Into<String>,
    expected: &'static str,
    found: Option<&Value>,
) -> JobError {
    JobError::BadField {
        path: path.to_string(),
        field: field.into(),
        expected,
        found: found.map_or_else(|| "nothing".to_string(), describe),
    }
}

type Object = serde_json::Map<String, Value>;

fn string_field<'v>(obj: &'v Object, key: &str, path: &str) -> Result<&'v str, JobError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        other => Err(bad_field(path, key, "a string", other)),
    }
}

fn template_field(obj: &Object, key: &str, path: &str) -> Result<Template, JobError> {
    Template::parse(string_field(obj, key, path)?, format!("{path}.{key}"))
}

/// A variable name the job may set: anything a process environment can hold as a name.
/// (Names that are not `[A-Za-z_][A-Za-z0-9_]*` cannot be substituted but may still matter to
/// the programs run, so they are allowed, as in Hashdist.)
fn var_field<'v>(obj: &'v Object, key: &str, path: &str) -> Result<&'v str, JobError> {
    const EXPECTED: &str = "a variable name (a non-empty string without '=' or NUL)";
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() && !s.contains(['=', '\0']) => Ok(s),
        other => Err(bad_field(path, key, EXPECTED, other)),
    }
}

fn parse_list<'v>(items: &'v [Value], list_path: &str, stem_prefix: &str) -> Result<Vec<Node<'v>>, JobError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let stem = if stem_prefix.is_empty() {
                i.to_string()
            } else {
                format!("{stem_prefix}_{i}")
            };
            parse_node(item, format!("{list_path}[{i}]"), stem)
        })
        .collect()
}

fn parse_node(value: &Value, path: String, stem: String) -> Result<Node<'_>, JobError> {
    let Some(obj) = value.as_object() else {
        return Err(JobError::NotAnObject {
            path,
            found: describe(value),
        });
    };
    let mut kind: Option<&str> = None;
    for key in obj.keys() {
        if NODE_KINDS.contains(&key.as_str()) {
            if let Some(first) = kind {
                return Err(JobError::ConflictingKeys {
                    path,
                    first: first.to_string(),
                    second: key.clone(),
                });
            }
            kind = Some(key);
        }
    }
    let Some(kind) = kind else {
        return match obj.keys().next() {
            None => Ok(Node {
                path,
                stem,
                kind: NodeKind::Empty,
            }),
            Some(key) => Err(JobError::UnknownNode {
                path,
                key: key.clone(),
                expected: format!("a node type: one of {}", NODE_KINDS.join(", ")),
            }),
        };
    };
    let modifiers: &[&str] = match kind {
        "cmd" | "hit" => &RUN_MODIFIERS,
        "commands" | "chdir" => &[],
        _ => &ENV_MODIFIERS,
    };
    if let Some(key) = obj
        .keys()
        .find(|k| k.as_str() != kind && !modifiers.contains(&k.as_str()))
    {
        let expected = if modifiers.is_empty() {
            format!("no other key beside {kind:?}")
        } else {
            format!("only {} beside {kind:?}", modifiers.join(", "))
        };
        return Err(JobError::UnknownNode {
            path,
            key: key.clone(),
            expected,
        });
    }
    let kind = match kind {
        "commands" => match obj.get("commands") {
            Some(Value::Array(items)) => {
                NodeKind::Scope(parse_list(items, &format!("{path}.commands"), &stem)?)
            }
            other => return Err(bad_field(&path, "commands", "a list of nodes", other)),
        },
        "chdir" => NodeKind::Chdir(template_field(obj, "chdir", &path)?),
        "cmd" | "hit" => NodeKind::Run(parse_run(obj, kind, &path)?),
        _ => {
            let op = match kind {
                "prepend_path" => EnvOp::Prepend(":"),
                "append_path" => EnvOp::Append(":"),
                "prepend_flag" => EnvOp::Prepend(" "),
                "append_flag" => EnvOp::Append(" "),
                _ => EnvOp::Set,
            };
            let var = var_field(obj, kind, &path)?;
            let value_key = match (obj.contains_key("value"), obj.contains_key("nohash_value")) {
                (true, true) => {
                    return Err(JobError::ConflictingKeys {
                        path,
                        first: "value".to_string(),
                        second: "nohash_value".to_string(),
                    })
                }
                (false, true) => "nohash_value",
                _ => "value",
            };
            let value = match obj.get(value_key) {
                Some(Value::String(s)) => Template::parse(s, format!("{path}.{value_key}"))?,
                other => {
                    return Err(bad_field(
                        &path,
                        value_key,
                        "a string (in \"value\", or \"nohash_value\" to keep it out of the hash)",
                        other,
                    ))
                }
            };
            NodeKind::Env { var, op, value }
        }
    };
    Ok(Node { path, stem, kind })
}

fn parse_run<'v>(obj: &'v Object, kind: &str, path: &str) -> Result<Run<'v>, JobError> {
    const ARGV: &str = "a non-empty list of strings";
    let items = match obj.get(kind) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        other => return Err(bad_field(path, kind, ARGV, other)),
    };
    let argv = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Template::parse(s, format!("{path}.{kind}[{i}]")),
            other => Err(bad_field(path, format!("{kind}[{i}]"), "a string", Some(other))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = match obj.get("inputs") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_input(item, path, i))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(bad_field(path, "inputs", "a list of inputs", Some(other))),
    };
    let output = match (obj.contains_key("to_var"), obj.contains_key("append_to_file")) {
        (true, true) => {
            return Err(JobError::ConflictingKeys {
                path: path.to_string(),
                first: "to_var".to_string(),
                second: "append_to_file".to_string(),
            })
        }
        (true, false) => Output::ToVar(var_field(obj, "to_var", path)?),
        (false, true) => Output::AppendToFile(template_field(obj, "append_to_file", path)?),
        (false, false) => Output::Log,
    };
    Ok(Run {
        hit: kind == "hit",
        argv,
        inputs,
        output,
    })
}

fn parse_input<'v>(value: &'v Value, node_path: &str, index: usize) -> Result<Input<'v>, JobError> {
    let path = format!("{node_path}.inputs[{index}]");
    let Some(obj) = value.as_object() else {
        return Err(JobError::NotAnObject {
            path,
            found: describe(value),
        });
    };
    if let Some(key) = obj.keys().find(|k| !INPUT_KINDS.contains(&k.as_str())) {
        return Err(JobError::UnknownNode {
            path,
            key: key.clone(),
            expected: "exactly one of text, json, string".to_string(),
        });
    }
    let mut keys = obj.keys();
    let (Some(kind), None) = (keys.next(), keys.next()) else {
        let mut keys = obj.keys();
        return match (keys.next(), keys.next()) {
            (Some(first), Some(second)) => Err(JobError::ConflictingKeys {
                path,
                first: first.clone(),
                second: second.clone(),
            }),
            _ => Err(bad_field(
                node_path,
                format!("inputs[{index}]"),
                "{\"text\": [lines]}, {\"json\": document} or {\"string\": text}",
                Some(value),
            )),
        };
    };
    match (kind.as_str(), &obj[kind.as_str()]) {
        ("json", doc) => Ok(Input::Json(doc)),
        ("string", Value::String(s)) => Ok(Input::Verbatim(s)),
        ("string", other) => Err(bad_field(&path, "string", "a string", Some(other))),
        (_, Value::Array(lines)) => lines
            .iter()
            .enumerate()
            .map(|(j, line)| match line {
                Value::String(s) => Ok(s.as_str()),
                other => Err(bad_field(&path, format!("text[{j}]"), "a string", Some(other))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Input::Text),
        (_, other) => Err(bad_field(&path, "text", "a list of strings (lines)", Some(other))),
    }
}

// ---------------------------------------------------------------------------------------------
// Substitution.

/// A substituted string, parsed once. `path` names the field it came from, for errors.
#[derive(Debug)]
struct Template {
    path: String,
    pieces: Vec<Piece>,
}

#[derive(Debug)]
enum Piece {
    Literal(String),
    Var(String),
}

/// Length of the variable name at the start of `s` (0 if none): `[A-Za-z_][A-Za-z0-9_]*`.
fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {
            1 + bytes[1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count()
        }
        _ => 0,
    }
}

impl Template {
    /// Parses `text` the way Hashdist's `substitute()` does: reject `$$`, replace four
    /// backslashes by two, turn `\$` into the `$$` escape of Python's `string.Template`, then
    /// read `$$`, `$NAME` and `${NAME}`. The steps are reproduced literally (rather than as a
    /// tidier escape grammar) so that every spec expands to the same text as under Hashdist.
    fn parse(text: &str, path: String) -> Result<Template, JobError> {
        if text.contains("$$") {
            return Err(JobError::DollarDollar {
                path,
                text: text.to_string(),
            });
        }
        let prepared = text.replace(r"\\\\", r"\\").replace(r"\$", "$$");
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = prepared.as_str();
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
                continue;
            }
            let (name, tail) = match name_len(after) {
                0 => {
                    let braced = after.strip_prefix('{').and_then(|inner| {
                        let n = name_len(inner);
                        let tail = inner[n..].strip_prefix('}')?;
                        (n > 0).then(|| (&inner[..n], tail))
                    });
                    match braced {
                        Some(found) => found,
                        None => {
                            return Err(JobError::BadPlaceholder {
                                path,
                                text: text.to_string(),
                                near: rest[dollar..].chars().take(12).collect(),
                            })
                        }
                    }
                }
                n => (&after[..n], &after[n..]),
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Var(name.to_string()));
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { path, pieces })
    }

    fn expand(&self, env: &Env) -> Result<String, JobError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Var(name) => match env.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(JobError::MissingVariable {
                            path: self.path.clone(),
                            name: name.clone(),
                        })
                    }
                },
            }
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Running.

/// The job log, optionally echoed to stderr.
struct LogSink<'x> {
    out: &'x mut dyn Write,
    verbose: bool,
}

impl Write for LogSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        if self.verbose {
            // The echo is a convenience; a closed stderr must not fail the build.
            let _ = io::stderr().write_all(&buf[..n]);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where a command's stdout goes.
enum Dest<'d> {
    Log,
    Capture(&'d mut Vec<u8>),
    File(&'d mut File, &'d Path),
}

struct Executor<'x> {
    log: LogSink<'x>,
    hits: &'x dyn HitRunner,
    /// Holds the `inputs` files; created on first use, removed when the job ends.
    inputs_dir: Option<tempfile::TempDir>,
}

/// Hashdist stores `to_var` output after Python 2's `str.strip()`: ASCII whitespace only.
fn strip_python(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
}

/// `os.path.abspath` without the `getcwd`: drops `.` and resolves `..` lexically, like
/// Hashdist's `chdir` (so `..` after a symlink goes back where the job came from).
pub(crate) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Paths become variables (`PWD`, `$inN`); the environment is text, so a non-UTF-8 path is
/// shown lossily rather than refused.
fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the program to execute the way `execvp` in the job's own environment would: a name
/// with a `/` is a path (relative to the job's directory), a bare name is looked up in the
/// job's `PATH` (an empty entry meaning the current directory). Hashdist relied on Popen
/// doing this with the job's environment; Rust's `Command` would search the caller's `PATH`
/// when the job has none, so the search is done here.
fn find_program(argv0: &str, env: &Env, cwd: &Path, path: &str) -> Result<PathBuf, JobError> {
    if argv0.contains('/') {
        return Ok(cwd.join(argv0));
    }
    let not_found = |search_path| JobError::CommandNotFound {
        path: path.to_string(),
        argv0: argv0.to_string(),
        search_path,
    };
    let Some(search) = env.get("PATH") else {
        return Err(not_found(None));
    };
    if !argv0.is_empty() {
        for dir in search.split(':') {
            let candidate = cwd.join(dir).join(argv0);
            if is_executable_file(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(not_found(Some(search.clone())))
}

impl Executor<'_> {
    fn run_list(&mut self, nodes: &[Node<'_>], env: &mut Env, cwd: &mut PathBuf) -> Result<(), JobError> {
        for node in nodes {
            self.run_node(node, env, cwd)?;
        }
        Ok(())
    }

    fn run_node(&mut self, node: &Node<'_>, env: &mut Env, cwd: &mut PathBuf) -> Result<(), JobError> {
        match &node.kind {
            NodeKind::Empty => Ok(()),
            NodeKind::Scope(children) => {
                let mut env = env.clone();
                let mut cwd = cwd.clone();
                self.run_list(children, &mut env, &mut cwd)
            }
            NodeKind::Env { var, op, value } => {
                let value = value.expand(env)?;
                let new = match (op, env.get(*var)) {
                    // An unset or empty list is replaced, so no stray separator appears.
                    (EnvOp::Prepend(sep), Some(old)) if !old.is_empty() => format!("{value}{sep}{old}"),
                    (EnvOp::Append(sep), Some(old)) if !old.is_empty() => format!("{old}{sep}{value}"),
                    _ => value,
                };
                log::debug!("{}: {var}={new}", node.path);
                env.insert(var.to_string(), new);
                Ok(())
            }
            NodeKind::Chdir(dir) => {
                let dir = dir.expand(env)?;
                *cwd = normalize(&cwd.join(dir));
                env.insert("PWD".to_string(), path_string(cwd));
                Ok(())
            }
            NodeKind::Run(run) => self.run_command(node, run, env, cwd),
        }
    }

    fn run_command(
        &mut self,
        node: &Node<'_>,
        run: &Run<'_>,
        env: &mut Env,
        cwd: &Path,
    ) -> Result<(), JobError> {
        // `$inN` exist only for this node (and what it starts); `to_var` writes to `env`.
        let mut node_env = env.clone();
        for (i, input) in run.inputs.iter().enumerate() {
            let file = self.write_input(node, i, input)?;
            node_env.insert(format!("in{i}"), file);
        }
        let argv = run
            .argv
            .iter()
            .map(|t| t.expand(&node_env))
            .collect::<Result<Vec<_>, _>>()?;
        match &run.output {
            Output::Log => self.execute(node, run.hit, &argv, &node_env, cwd, Dest::Log),
            Output::ToVar(var) => {
                let mut captured = Vec::new();
                self.execute(node, run.hit, &argv, &node_env, cwd, Dest::Capture(&mut captured))?;
                let text = String::from_utf8(captured).map_err(|e| JobError::Io {
                    context: format!("{}: the output captured into ${var} is not UTF-8", node.path),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                })?;
                env.insert(var.to_string(), strip_python(&text).to_string());
                Ok(())
            }
            Output::AppendToFile(target) => {
                let target = cwd.join(target.expand(&node_env)?);
                let mut file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&target)
                    .map_err(io_error(format!(
                        "{}: opening {} to append to",
                        node.path,
                        target.display()
                    )))?;
                self.execute(
                    node,
                    run.hit,
                    &argv,
                    &node_env,
                    cwd,
                    Dest::File(&mut file, &target),
                )
            }
        }
    }

    /// Dumps one `inputs` entry to a file named like Hashdist's (`<position>_in<N>[.json]`)
    /// and returns its path.
    fn write_input(&mut self, node: &Node<'_>, index: usize, input: &Input<'_>) -> Result<String, JobError> {
        let context = || format!("{}: writing inputs[{index}]", node.path);
        let dir = match &self.inputs_dir {
            Some(dir) => dir.path().to_path_buf(),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("hdist-job-")
                    .tempdir()
                    .map_err(io_error(context()))?;
                let path = dir.path().to_path_buf();
                self.inputs_dir = Some(dir);
                path
            }
        };
        let name = format!("{}_in{index}", node.stem);
        let (file, contents) = match input {
            // Lines are joined, not terminated, exactly as Hashdist writes them.
            Input::Text(lines) => (dir.join(name), lines.join("\n").into_bytes()),
            Input::Verbatim(text) => (dir.join(name), text.as_bytes().to_vec()),
            Input::Json(doc) => {
                let mut out = Vec::new();
                let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
                let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
                serde::Serialize::serialize(doc, &mut serializer).map_err(|e| JobError::Io {
                    context: context(),
                    source: e.into(),
                })?;
                (dir.join(format!("{name}.json")), out)
            }
        };
        fs::write(&file, contents).map_err(io_error(format!("{} ({})", context(), file.display())))?;
        Ok(path_string(&file))
    }

    fn log_line(&mut self, line: &str) -> Result<(), JobError> {
        writeln!(self.log, "{line}")
            .and_then(|()| self.log.flush())
            .map_err(io_error("writing the job log"))
    }

    fn execute(
        &mut self,
        node: &Node<'_>,
        hit: bool,
        argv: &[String],
        env: &Env,
        cwd: &Path,
        dest: Dest<'_>,
    ) -> Result<(), JobError> {
        log::debug!("{}: environment {env:?}", node.path);
        if hit {
            self.log_line(&format!("[hdist] {}: hit {argv:?}", node.path))?;
            let stdout: &mut dyn Write = match dest {
                Dest::Log => &mut self.log,
                Dest::Capture(buf) => buf,
                Dest::File(file, _) => file,
            };
            let result = self.hits.run_hit(argv, env, cwd, stdout);
            self.log.flush().map_err(io_error("writing the job log"))?;
            return result.map_err(|source| JobError::Hit {
                path: node.path.clone(),
                args: argv.to_vec(),
                source,
            });
        }

        // Parsing guarantees a non-empty argv.
        let argv0 = argv.first().map(String::as_str).unwrap_or_default();
        let program = find_program(argv0, env, cwd, &node.path)?;
        if !cwd.is_dir() {
            // Otherwise the spawn error would blame the program for the missing directory.
            return Err(JobError::Io {
                context: format!(
                    "{}: the working directory {} is not a directory",
                    node.path,
                    cwd.display()
                ),
                source: io::Error::from(io::ErrorKind::NotFound),
            });
        }
        self.log_line(&format!(
            "[hdist] {}: running {argv:?} in {}",
            node.path,
            cwd.display()
        ))?;
        let mut command = Command::new(&program);
        command
            .arg0(argv0)
            .args(&argv[1..])
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // A build killed with -9 must not leave its commands running: the kernel signals the
        // child when the thread that started it dies.
        // SAFETY: prctl is async-signal-safe and touches only the child.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            });
        }
        let mut child = command.spawn().map_err(|source| JobError::Spawn {
            path: node.path.clone(),
            argv0: argv0.to_string(),
            cwd: cwd.to_path_buf(),
            source,
        })?;
        if let Err(e) = self.pump(&mut child, dest, &node.path) {
            // Nothing reads its output any more; don't leave it running or unreaped.
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let status = child
            .wait()
            .map_err(io_error(format!("{}: waiting for {argv0:?}", node.path)))?;
        if status.success() {
            Ok(())
        } else {
            Err(JobError::CommandFailed {
                path: node.path.clone(),
                argv: argv.to_vec(),
                status,
            })
        }
    }

    /// Forwards the child's stdout and stderr until both close, or until the child has exited
    /// and nothing more is buffered: a background process it left behind may hold the pipes
    /// open indefinitely, and the job must not wait for it (Hashdist stops at exit too).
    ///
    /// One thread multiplexes both pipes with poll(2), so the log sees lines in the order
    /// they arrive and no writer has to be shared across threads.
    fn pump(&mut self, child: &mut Child, mut dest: Dest<'_>, path: &str) -> Result<(), JobError> {
        struct Pipe {
            file: File,
            is_stdout: bool,
            pending: Vec<u8>,
            open: bool,
        }
        let mut pipes = Vec::new();
        if let Some(out) = child.stdout.take() {
            pipes.push(Pipe {
                file: File::from(OwnedFd::from(out)),
                is_stdout: true,
                pending: Vec::new(),
                open: true,
            });
        }
        if let Some(err) = child.stderr.take() {
            pipes.push(Pipe {
                file: File::from(OwnedFd::from(err)),
                is_stdout: false,
                pending: Vec::new(),
                open: true,
            });
        }
        let pipe_error = |e| JobError::Io {
            context: format!("{path}: reading the command's output"),
            source: e,
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let open: Vec<usize> = (0..pipes.len()).filter(|&i| pipes[i].open).collect();
            if open.is_empty() {
                break;
            }
            // Checked before polling: whatever the child wrote before exiting is then in the
            // pipes already, and a zero-timeout poll drains it.
            let exited = child.try_wait().map_err(pipe_error)?.is_some();
            let mut fds: Vec<libc::pollfd> = open
                .iter()
                .map(|&i| libc::pollfd {
                    fd: pipes[i].file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect();
            let timeout = if exited { 0 } else { POLL_INTERVAL_MS };
            // SAFETY: `fds` is a valid array of `fds.len()` pollfd structs for the call.
            let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(pipe_error(e));
            }
            if ready == 0 {
                if exited {
                    break;
                }
                continue;
            }
            for (fd, &i) in fds.iter().zip(&open) {
                if fd.revents == 0 {
                    continue;
                }
                let pipe = &mut pipes[i];
                if fd.revents & libc::POLLNVAL != 0 {
                    pipe.open = false;
                    continue;
                }
                // poll said readable (or hung up), so this read does not block.
                let n = match pipe.file.read(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(pipe_error(e)),
                };
                if n == 0 {
                    pipe.open = false;
                    continue;
                }
                let data = &buf[..n];
                if pipe.is_stdout {
                    match &mut dest {
                        Dest::Capture(out) => {
                            out.extend_from_slice(data);
                            continue;
                        }
                        Dest::File(file, target) => {
                            file.write_all(data).map_err(io_error(format!(
                                "{path}: appending output to {}",
                                target.display()
                            )))?;
                            continue;
                        }
                        Dest::Log => {}
                    }
                }
                pipe.pending.extend_from_slice(data);
                let cut = match pipe.pending.iter().rposition(|&b| b == b'\n') {
                    Some(last_newline) => last_newline + 1,
                    None if pipe.pending.len() >= MAX_LOG_LINE => pipe.pending.len(),
                    None => continue,
                };
                let rest = pipe.pending.split_off(cut);
                let lines = std::mem::replace(&mut pipe.pending, rest);
                self.log
                    .write_all(&lines)
                    .and_then(|()| self.log.flush())
                    .map_err(io_error("writing the job log"))?;
            }
        }
        for pipe in &mut pipes {
            if !pipe.pending.is_empty() {
                pipe.pending.push(b'\n');
                self.log
                    .write_all(&pipe.pending)
                    .map_err(io_error("writing the job log"))?;
            }
        }
        self.log.flush().map_err(io_error("writing the job log"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::RefCell;

    /// One recorded hit call: its args, its cwd and the `$in0` it saw.
    type HitCall = (Vec<String>, PathBuf, Option<String>);

    /// A `HitRunner` that records its calls, prints `hit-out <args>` and fails on `fail`.
    #[derive(Default)]
    struct RecordingHits {
        calls: RefCell<Vec<HitCall>>,
    }

    impl HitRunner for RecordingHits {
        fn run_hit(
            &self,
            args: &[String],
            env: &Env,
            cwd: &Path,
            stdout: &mut dyn Write,
        ) -> Result<(), HitError> {
            self.calls
                .borrow_mut()
                .push((args.to_vec(), cwd.to_path_buf(), env.get("in0").cloned()));
            if args[0] == "fail" {
                return Err("the helper says no".into());
            }
            writeln!(stdout, "hit-out {}", args.join(" "))?;
            Ok(())
        }
    }

    struct Outcome {
        result: Result<(), JobError>,
        log: String,
        env: Env,
        cwd: PathBuf,
        hits: Vec<HitCall>,
    }

    fn run_in(dir: &Path, env: &[(&str, &str)], commands: Value) -> Outcome {
        let commands = commands.as_array().expect("test jobs are lists").clone();
        let hits = RecordingHits::default();
        let mut log = Vec::new();
        let mut ctx = JobContext {
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            cwd: dir.to_path_buf(),
            log: &mut log,
            hits: &hits,
            verbose: false,
        };
        let result = run_job(&commands, &mut ctx);
        let (env, cwd) = (ctx.env, ctx.cwd);
        Outcome {
            result,
            log: String::from_utf8(log).unwrap(),
            env,
            cwd,
            hits: hits.calls.into_inner(),
        }
    }

    const SYSTEM_PATH: &str = "/usr/bin:/bin";

    fn env_of(pairs: &[(&str, &str)]) -> Env {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn set_prepend_append() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[("EMPTY", "")],
            json!([
                {"set": "FOO", "value": "foo"},
                {"set": "FOO", "value": "bar"},
                {"set": "BAR", "nohash_value": "${FOO}x"},
                {"append_flag": "CFLAGS", "value": "-O3"},
                {"prepend_flag": "CFLAGS", "value": "-O2"},
                {"prepend_flag": "CFLAGS", "value": "-O1"},
                {"append_path": "P", "value": "/bar/bin"},
                {"prepend_path": "P", "value": "/foo/bin"},
                {"append_path": "P", "value": "/baz/bin"},
                {"prepend_path": "EMPTY", "value": "/only"},
                {"cmd": ["/bin/sh", "-c", "echo \"[$CFLAGS] [$P] [$BAR]\""], "to_var": "SEEN"},
            ]),
        );
        out.result.unwrap();
        assert_eq!(out.env["FOO"], "bar");
        assert_eq!(out.env["BAR"], "barx");
        assert_eq!(out.env["CFLAGS"], "-O1 -O2 -O3");
        assert_eq!(out.env["P"], "/foo/bin:/bar/bin:/baz/bin");
        assert_eq!(out.env["EMPTY"], "/only");
        assert_eq!(
            out.env["SEEN"],
            "[-O1 -O2 -O3] [/foo/bin:/bar/bin:/baz/bin] [barx]"
        );
    }

    #[test]
    fn nested_scopes_do_not_leak() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        let out = run_in(
            dir.path(),
            &[("KEEP", "1")],
            json!([
                {"chdir": "a"},
                {"set": "OUTER", "value": "o"},
                {"commands": [
                    {"chdir": "b"},
                    {"set": "INNER", "value": "i"},
                    {"set": "KEEP", "value": "changed"},
                    {"commands": [
                        {"chdir": "c"},
                        {"commands": [
                            {"chdir": ".."},
                            {"cmd": ["/bin/sh", "-c", "pwd; echo \"$INNER$OUTER$KEEP\""], "append_to_file": "out"},
                        ]},
                    ]},
                    {"cmd": ["/bin/sh", "-c", "pwd"], "to_var": "INNER_PWD"},
                ]},
                {"cmd": ["/bin/sh", "-c", "pwd"], "to_var": "OUTER_PWD"},
            ]),
        );
        out.result.unwrap();
        let a = dir.path().join("a");
        let written = fs::read_to_string(a.join("b/out")).unwrap();
        assert_eq!(written, format!("{}\nio{}\n", a.join("b").display(), "changed"));
        // Only the top-level scope's changes survive.
        assert_eq!(out.env["OUTER"], "o");
        assert_eq!(out.env["KEEP"], "1");
        assert!(!out.env.contains_key("INNER"));
        assert!(!out.env.contains_key("INNER_PWD"));
        assert_eq!(out.env["OUTER_PWD"], path_string(&a));
        assert_eq!(out.env["PWD"], path_string(&a));
        assert_eq!(out.cwd, a);
    }

    #[test]
    fn substitution_forms() {
        let env = env_of(&[("A", "a"), ("B", "b")]);
        // The cases of Hashdist's own test_substitute, plus the four-backslash rule.
        for (input, want) in [
            ("$A$B", "ab"),
            ("${A}x", "ax"),
            (r"\${A}x", "${A}x"),
            (r"\\${A}x", r"\${A}x"),
            (r"\", r"\"),
            (r"\\", r"\\"),
            (r"${A}\$\${x}", "a$${x}"),
            (r"\\\\", r"\\"),
            (r"\\\\$A", r"\$A"),
            ("$A_1-$B.c", "-b.c"),
            ("no dollars", "no dollars"),
            ("", ""),
        ] {
            let env = if input.contains("$A_1") {
                env_of(&[("A_1", ""), ("B", "b")])
            } else {
                env.clone()
            };
            assert_eq!(substitute(input, &env).unwrap(), want, "substituting {input:?}");
        }
    }

    #[test]
    fn substitution_errors() {
        let env = env_of(&[("A", "a")]);
        match substitute("$Ax", &env) {
            Err(JobError::MissingVariable { name, path }) => {
                assert_eq!(name, "Ax");
                assert_eq!(path, "");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(substitute("${NOPE}", &env), Err(JobError::MissingVariable { name, .. }) if name == "NOPE")
        );
        assert!(matches!(
            substitute("a$$b", &env),
            Err(JobError::DollarDollar { .. })
        ));
        assert!(matches!(
            substitute(r"\$$A", &env),
            Err(JobError::DollarDollar { .. })
        ));
        for bad in ["$1", "cost: $", "${A", "${}", "${ A}", "$-x"] {
            assert!(
                matches!(substitute(bad, &env), Err(JobError::BadPlaceholder { .. })),
                "{bad:?} should be rejected"
            );
        }
        let message = substitute("$Ax", &env).unwrap_err().to_string();
        assert_eq!(message, "variable $Ax is not set in the job environment");
    }

    #[test]
    fn missing_variable_in_a_job_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([{"commands": [{"set": "X", "value": "1"}, {"cmd": ["/bin/echo", "$X", "$NOPE"]}]}]),
        );
        let err = out.result.unwrap_err();
        assert!(
            matches!(&err, JobError::MissingVariable { path, name } if path == "commands[0].commands[1].cmd[2]" && name == "NOPE"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "commands[0].commands[1].cmd[2]: variable $NOPE is not set in the job environment"
        );
    }

    #[test]
    fn to_var_captures_stripped_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([
                {"cmd": ["/bin/printf", "  a  b   \n\n\n "], "to_var": "HI"},
                {"cmd": ["/bin/echo", "[$HI]"], "to_var": "AGAIN"},
                {"cmd": ["/bin/sh", "-c", "echo to-stderr >&2; echo to-stdout"], "to_var": "OUT"},
            ]),
        );
        out.result.unwrap();
        assert_eq!(out.env["HI"], "a  b");
        assert_eq!(out.env["AGAIN"], "[a  b]");
        assert_eq!(out.env["OUT"], "to-stdout");
        // stderr still goes to the log; captured stdout does not.
        assert!(out.log.contains("to-stderr\n"), "{}", out.log);
        assert!(!out.log.contains("to-stdout\n"), "{}", out.log);
    }

    #[test]
    fn append_to_file_appends_relative_to_cwd() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(dir.path().join("sub/log.txt"), "before\n").unwrap();
        let out = run_in(
            dir.path(),
            &[("NAME", "log.txt")],
            json!([
                {"chdir": "sub"},
                {"cmd": ["/bin/echo", "hi"], "append_to_file": "$NAME"},
                {"cmd": ["/bin/echo", "again"], "append_to_file": "${NAME}"},
            ]),
        );
        out.result.unwrap();
        assert_eq!(
            fs::read_to_string(dir.path().join("sub/log.txt")).unwrap(),
            "before\nhi\nagain\n"
        );
        assert!(!out.log.contains("again\n"), "{}", out.log);
    }

    #[test]
    fn inputs_become_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([
                {"cmd": ["/bin/cat", "$in0"], "append_to_file": "text",
                 "inputs": [{"text": ["line one", "line $two"]}]},
                {"cmd": ["/bin/cat", "$in1"], "append_to_file": "json",
                 "inputs": [{"string": "unused"}, {"json": {"foo": [1, "x"], "bar": null}}]},
                {"cmd": ["/bin/cat", "${in0}"], "append_to_file": "string",
                 "inputs": [{"string": "verbatim\n$X"}]},
                {"cmd": ["/bin/echo", "$in1"], "to_var": "JSON_PATH",
                 "inputs": [{"string": ""}, {"json": 1}]},
                {"cmd": ["/bin/sh", "-c", "echo \"$in0\""], "to_var": "FROM_ENV",
                 "inputs": [{"string": ""}]},
            ]),
        );
        out.result.unwrap();
        let read = |name: &str| fs::read_to_string(dir.path().join(name)).unwrap();
        // Inputs are written as given: joined lines without a final newline, no substitution.
        assert_eq!(read("text"), "line one\nline $two");
        let doc: Value = serde_json::from_str(&read("json")).unwrap();
        assert_eq!(doc, json!({"foo": [1, "x"], "bar": null}));
        assert!(
            read("json").contains("\n    \""),
            "indented by four: {}",
            read("json")
        );
        assert_eq!(read("string"), "verbatim\n$X");
        assert!(
            out.env["JSON_PATH"].ends_with("3_in1.json"),
            "{}",
            out.env["JSON_PATH"]
        );
        // $inN is in the process's environment too, but not in the job's afterwards.
        assert!(out.env["FROM_ENV"].ends_with("4_in0"), "{}", out.env["FROM_ENV"]);
        assert!(!out.env.contains_key("in0"));

        let out = run_in(
            dir.path(),
            &[],
            json!([
                {"cmd": ["/bin/true"], "inputs": [{"string": "x"}]},
                {"cmd": ["/bin/echo", "$in0"]},
            ]),
        );
        assert!(matches!(out.result, Err(JobError::MissingVariable { name, .. }) if name == "in0"));
    }

    #[test]
    fn path_lookup_uses_the_jobs_path() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        let script = bin.join("myscript");
        fs::write(&script, "#!/bin/sh\necho \"from-script $0 $1\"\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        // Not executable, so skipped by the search.
        fs::write(bin.join("notexec"), "#!/bin/sh\n").unwrap();

        let bin_str = path_string(&bin);
        let out = run_in(
            dir.path(),
            &[("PATH", "/nonexistent")],
            json!([
                {"prepend_path": "PATH", "value": bin_str},
                {"cmd": ["myscript", "arg"], "to_var": "OUT"},
            ]),
        );
        out.result.unwrap();
        // The kernel hands a script's interpreter the path it found, as with execvp.
        assert_eq!(out.env["OUT"], format!("from-script {} arg", script.display()));

        // A path with a slash is relative to the job's directory.
        let out = run_in(
            dir.path(),
            &[],
            json!([{"chdir": "bin"}, {"cmd": ["./myscript"], "to_var": "OUT"}]),
        );
        out.result.unwrap();
        assert_eq!(
            out.env["OUT"],
            format!("from-script {}", bin.join("./myscript").display())
        );

        // Without PATH in the job, the caller's PATH is not consulted.
        let out = run_in(dir.path(), &[], json!([{"cmd": ["echo", "x"]}]));
        let err = out.result.unwrap_err();
        assert!(
            matches!(&err, JobError::CommandNotFound { argv0, search_path: None, path } if argv0 == "echo" && path == "commands[0]"),
            "{err:?}"
        );
        assert!(err.to_string().contains("PATH is not set"), "{err}");

        let out = run_in(
            dir.path(),
            &[("PATH", &bin_str)],
            json!([{"cmd": ["echo", "x"]}, {"cmd": ["notexec"]}]),
        );
        assert!(matches!(
            out.result,
            Err(JobError::CommandNotFound {
                search_path: Some(_),
                ..
            })
        ));
        let out = run_in(dir.path(), &[("PATH", &bin_str)], json!([{"cmd": ["notexec"]}]));
        assert!(matches!(out.result, Err(JobError::CommandNotFound { argv0, .. }) if argv0 == "notexec"));

        let out = run_in(dir.path(), &[], json!([{"cmd": ["./missing"]}]));
        assert!(matches!(out.result, Err(JobError::Spawn { argv0, .. }) if argv0 == "./missing"));
    }

    #[test]
    fn failing_command_reports_argv_and_status() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[("PATH", SYSTEM_PATH)],
            json!([
                {"cmd": ["true"]},
                {"cmd": ["sh", "-c", "echo partial; exit 3"]},
                {"cmd": ["/bin/sh", "-c", "echo not reached"], "append_to_file": "marker"},
            ]),
        );
        let err = out.result.unwrap_err();
        match &err {
            JobError::CommandFailed { path, argv, status } => {
                assert_eq!(path, "commands[1]");
                assert_eq!(argv, &["sh", "-c", "echo partial; exit 3"]);
                assert_eq!(status.code(), Some(3));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "commands[1]: command [\"sh\", \"-c\", \"echo partial; exit 3\"] failed (exit status: 3)"
        );
        assert!(out.log.contains("partial\n"));
        assert!(!dir.path().join("marker").exists());

        let out = run_in(dir.path(), &[("PATH", SYSTEM_PATH)], json!([{"cmd": ["false"]}]));
        assert!(
            matches!(out.result, Err(JobError::CommandFailed { status, .. }) if status.code() == Some(1))
        );
    }

    #[test]
    fn environment_is_only_the_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[("PATH", SYSTEM_PATH), ("ARTIFACT", "/art")],
            json!([
                {"set": "FOO", "value": "foo"},
                {"cmd": ["env"], "to_var": "ENV"},
            ]),
        );
        out.result.unwrap();
        let mut lines: Vec<&str> = out.env["ENV"].lines().collect();
        lines.sort_unstable();
        let pwd = format!("PWD={}", path_string(dir.path()));
        let mut want = vec!["ARTIFACT=/art", "FOO=foo", pwd.as_str(), "PATH=/usr/bin:/bin"];
        want.sort_unstable();
        assert_eq!(lines, want);
    }

    #[test]
    fn output_is_logged_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([
                {"cmd": ["/bin/sh", "-c", "echo one; echo two >&2; printf 'no newline'"]},
                {"cmd": ["/bin/echo", "after"]},
            ]),
        );
        out.result.unwrap();
        assert!(
            out.log.contains("[hdist] commands[0]: running [\"/bin/sh\""),
            "{}",
            out.log
        );
        assert!(out.log.contains("one\n"));
        assert!(out.log.contains("two\n"));
        assert!(out.log.contains("no newline\n[hdist] commands[1]"), "{}", out.log);
        assert!(out.log.ends_with("after\n"), "{}", out.log);
    }

    #[test]
    fn background_process_holding_the_pipes_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let out = run_in(
            dir.path(),
            &[],
            json!([{"cmd": ["/bin/sh", "-c", "/bin/sleep 3 & echo done"]}]),
        );
        out.result.unwrap();
        assert!(out.log.contains("done\n"));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn hit_nodes_reach_the_runner() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        let out = run_in(
            dir.path(),
            &[("WHO", "world")],
            json!([
                {"chdir": "src"},
                {"hit": ["greet", "$WHO"], "to_var": "GREETING"},
                {"hit": ["logged", "$in0"], "inputs": [{"text": ["x"]}]},
                {"hit": ["filed"], "append_to_file": "hit.txt"},
                {"hit": ["fail", "now"]},
                {"hit": ["not", "reached"]},
            ]),
        );
        let err = out.result.unwrap_err();
        assert!(
            matches!(&err, JobError::Hit { path, args, .. } if path == "commands[4]" && args == &["fail", "now"]),
            "{err:?}"
        );
        assert!(err.to_string().contains("the helper says no"), "{err}");
        assert_eq!(out.env["GREETING"], "hit-out greet world");
        let src = dir.path().join("src");
        let calls: Vec<Vec<String>> = out.hits.iter().map(|c| c.0.clone()).collect();
        assert_eq!(calls.len(), 4);
        assert_eq!(calls[0], ["greet", "world"]);
        assert!(out.hits.iter().all(|c| c.1 == src));
        let in0 = out.hits[1].2.clone().unwrap();
        assert_eq!(calls[1], ["logged", in0.as_str()]);
        assert!(
            out.log.contains(&format!("hit-out logged {in0}\n")),
            "{}",
            out.log
        );
        assert_eq!(
            fs::read_to_string(src.join("hit.txt")).unwrap(),
            "hit-out filed\n"
        );
    }

    #[test]
    fn validate_names_the_offending_node() {
        let check = |job: Value| validate(job.as_array().unwrap()).unwrap_err();
        match check(json!([{"set": "A", "value": "1"}, {"frob": 1}])) {
            JobError::UnknownNode { path, key, .. } => {
                assert_eq!(path, "commands[1]");
                assert_eq!(key, "frob");
            }
            other => panic!("{other:?}"),
        }
        match check(json!([{"commands": [{"chdir": "x"}, {"commands": [{}, {"set": "X"}]}]}])) {
            JobError::BadField {
                path, field, found, ..
            } => {
                assert_eq!(path, "commands[0].commands[1].commands[1]");
                assert_eq!(field, "value");
                assert_eq!(found, "nothing");
            }
            other => panic!("{other:?}"),
        }
        let err = check(json!([{"cmd": ["/bin/echo", 3]}]));
        assert!(
            matches!(&err, JobError::BadField { path, field, .. } if path == "commands[0]" && field == "cmd[1]")
        );
        assert_eq!(
            err.to_string(),
            "commands[0].cmd[1]: expected a string, found a number (3)"
        );

        assert!(matches!(
            check(json!([{"cmd": ["a"], "set": "X"}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(check(json!([{"cmd": []}])), JobError::BadField { field, .. } if field == "cmd"));
        assert!(
            matches!(check(json!([{"cmd": "echo hi"}])), JobError::BadField { field, .. } if field == "cmd")
        );
        assert!(
            matches!(check(json!([{"set": "X", "value": "1", "to_var": "Y"}])), JobError::UnknownNode { key, .. } if key == "to_var")
        );
        assert!(
            matches!(check(json!([{"set": "X", "value": 1}])), JobError::BadField { field, .. } if field == "value")
        );
        assert!(
            matches!(check(json!([{"set": "A=B", "value": "1"}])), JobError::BadField { field, .. } if field == "set")
        );
        assert!(matches!(
            check(json!([{"set": "X", "value": "1", "nohash_value": "2"}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "to_var": "X", "append_to_file": "f"}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(
            check(json!([{"commands": [], "to_var": "X"}])),
            JobError::UnknownNode { .. }
        ));
        assert!(matches!(check(json!([{"chdir": 1}])), JobError::BadField { .. }));
        assert!(
            matches!(check(json!(["echo"])), JobError::NotAnObject { path, .. } if path == "commands[0]")
        );
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{"text": "not a list"}]}])),
            JobError::BadField { path, field, .. } if path == "commands[0].inputs[0]" && field == "text"
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{"text": [], "string": ""}]}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{"file": "x"}]}])),
            JobError::UnknownNode { path, .. } if path == "commands[0].inputs[0]"
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{}]}])),
            JobError::BadField { .. }
        ));
        // Substitution syntax does not depend on the environment, so it is checked up front.
        assert!(matches!(
            check(json!([{"cmd": ["echo", "$$"]}])),
            JobError::DollarDollar { path, .. } if path == "commands[0].cmd[1]"
        ));
        assert!(matches!(
            check(json!([{"chdir": "${x"}])),
            JobError::BadPlaceholder { .. }
        ));

        validate(
            json!([
                {},
                {"hit": ["build-unpack-sources"]},
                {"set": "X", "nohash_value": "$Y"},
                {"commands": [{"cmd": ["make"], "inputs": [{"json": {"a": 1}}], "to_var": "V"}]},
            ])
            .as_array()
            .unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn malformed_job_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([
                {"cmd": ["/bin/sh", "-c", "echo ran > marker"]},
                {"cmd": ["/bin/true"], "bogus": 1},
            ]),
        );
        assert!(matches!(out.result, Err(JobError::UnknownNode { key, .. }) if key == "bogus"));
        assert!(!dir.path().join("marker").exists());
        assert!(out.log.is_empty());
    }

    #[test]
    fn missing_working_directory_is_reported_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([{"chdir": "nope"}, {"cmd": ["/bin/true"]}]),
        );
        let err = out.result.unwrap_err();
        assert!(err.to_string().contains("working directory"), "{err}");
    }
}
