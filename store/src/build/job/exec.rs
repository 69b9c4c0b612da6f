//! Running parsed nodes: processes with the job's own environment and `PATH`, `hit` helpers,
//! `inputs` files, and output to the job log, a variable or a file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::parse::{EnvOp, Input, Node, NodeKind, Output, Run};
use super::{io_error, Env, HitRunner, JobError};

/// Output of a process that never ends a line is flushed to the log in pieces of this size,
/// so a binary blob on stdout cannot grow memory without bound.
const MAX_LOG_LINE: usize = 64 * 1024;

/// How long to wait for output before checking again whether the process has exited. Only
/// matters when something the process started in the background keeps its pipes open.
const POLL_INTERVAL_MS: libc::c_int = 200;

/// The job log, optionally echoed to stderr.
pub(super) struct LogSink<'x> {
    pub(super) out: &'x mut dyn Write,
    pub(super) verbose: bool,
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

pub(super) struct Executor<'x> {
    pub(super) log: LogSink<'x>,
    pub(super) hits: &'x dyn HitRunner,
    /// Holds the `inputs` files; created on first use, removed when the job ends.
    pub(super) inputs_dir: Option<tempfile::TempDir>,
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
pub(super) fn path_string(path: &Path) -> String {
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
    pub(super) fn run_list(
        &mut self,
        nodes: &[Node<'_>],
        env: &mut Env,
        cwd: &mut PathBuf,
    ) -> Result<(), JobError> {
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
    use super::super::test_support::*;
    use super::super::*;
    use super::*;
    use serde_json::json;

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
