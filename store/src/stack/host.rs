//! Host tools: a stack package `kind = "host"` stands for a program found on the host's `PATH`
//! (a compiler, `make`, `python3`), so that what the host provides is part of the ids of what
//! is built with it.
//!
//! Probing a tool (at parse time, before anything is built) finds it on the search path,
//! follows symlinks to the file that actually runs, hashes that file (SHA-256) and runs it with
//! `--version` (argv[0] is the tool's name, as a build will call it; stdin is empty; at most
//! [`VERSION_TIMEOUT`]). The package's build spec holds all three (see [`HostTool::spec_field`])
//! and its job only links `bin/TOOL` to the resolved path, so a build that imports it gets the
//! tool in `${REF_DIR}/bin`, and upgrading the host tool changes its id and the id of
//! everything built with it. Libraries the tool loads are not hashed.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::hash::{hash_file, Digest};

/// How long `TOOL --version` may take: a tool that ignores the flag and waits must not hang
/// the parse of a stack.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Where host tools are looked for.
#[derive(Debug, Clone, Default)]
pub struct HostSearch {
    /// A `PATH`-style list of directories; `None` finds nothing.
    pub path: Option<OsString>,
}

impl HostSearch {
    /// The process's own `PATH`.
    pub fn from_env() -> HostSearch {
        HostSearch {
            path: std::env::var_os("PATH"),
        }
    }

    /// The first executable regular file called `tool` in the search path. Empty entries
    /// (which would mean the working directory) are skipped.
    fn find(&self, tool: &str) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        std::env::split_paths(path)
            .filter(|dir| !dir.as_os_str().is_empty())
            .map(|dir| dir.join(tool))
            .find(|candidate| {
                fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    fn shown(&self) -> String {
        self.path.as_ref().map_or_else(
            || "(PATH is not set)".to_string(),
            |p| p.to_string_lossy().into_owned(),
        )
    }
}

/// A host tool as probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTool {
    /// The name it is called by (the `bin/` entry of its artifact).
    pub tool: String,
    /// The file that runs, symlinks followed.
    pub path: PathBuf,
    /// The first non-empty line `TOOL --version` printed (stdout, then stderr), trimmed; empty
    /// when it printed nothing.
    pub version: String,
    /// SHA-256 of the file.
    pub sha256: Digest,
}

/// Why a host tool cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// `tool` is neither a bare command name nor an absolute path.
    #[error("tool {0:?} must be a command name (looked up on PATH) or an absolute path")]
    BadTool(String),
    /// Not found on the search path.
    #[error("{tool} is not on PATH (searched {searched}); install it or fix PATH")]
    NotFound { tool: String, searched: String },
    /// The path cannot be resolved or read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The resolved path cannot be written into a job (not UTF-8, or holding the job
    /// language's `$`).
    #[error("{0}: a host tool's path must be UTF-8 without `$`")]
    UnusablePath(PathBuf),
    /// `TOOL --version` could not be run.
    #[error("cannot run {path} --version")]
    Run {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `TOOL --version` did not finish in time (it was killed).
    #[error("{path} --version did not finish within {seconds} s", seconds = VERSION_TIMEOUT.as_secs())]
    Timeout { path: PathBuf },
}

/// Finds `tool` (a command name searched in `search`, or an absolute path), hashes it and
/// asks its version.
///
/// # Errors
/// See [`HostError`].
pub fn probe(tool: &str, search: &HostSearch) -> Result<HostTool, HostError> {
    let found = if tool.starts_with('/') {
        PathBuf::from(tool)
    } else if tool.is_empty() || tool.contains('/') {
        return Err(HostError::BadTool(tool.to_string()));
    } else {
        search.find(tool).ok_or_else(|| HostError::NotFound {
            tool: tool.to_string(),
            searched: search.shown(),
        })?
    };
    let read_error = |source| HostError::Read {
        path: found.clone(),
        source,
    };
    let path = fs::canonicalize(&found).map_err(read_error)?;
    if path.to_str().is_none_or(|p| p.contains('$')) {
        return Err(HostError::UnusablePath(path));
    }
    let (sha256, _) = hash_file(&path).map_err(read_error)?;
    let name = Path::new(tool)
        .file_name()
        .map_or_else(|| tool.to_string(), |n| n.to_string_lossy().into_owned());
    let version = version_line(&path, &name)?;
    Ok(HostTool {
        tool: name,
        path,
        version,
        sha256,
    })
}

/// Runs `path --version` with argv[0] `name`; the first non-empty line of its output.
fn version_line(path: &Path, name: &str) -> Result<String, HostError> {
    let run_error = |source| HostError::Run {
        path: path.to_path_buf(),
        source,
    };
    // Output goes to an anonymous file, not a pipe: nothing to drain while waiting, and a
    // chatty tool cannot block on a full pipe.
    let mut stdout = tempfile::tempfile().map_err(run_error)?;
    let mut stderr = tempfile::tempfile().map_err(run_error)?;
    let mut child = Command::new(path)
        .arg0(name)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().map_err(run_error)?)
        .stderr(stderr.try_clone().map_err(run_error)?)
        .spawn()
        .map_err(run_error)?;
    let deadline = Instant::now() + VERSION_TIMEOUT;
    loop {
        if child.try_wait().map_err(run_error)?.is_some() {
            break;
        }
        if Instant::now() >= deadline {
            // Our own child, by its handle; reaped so no zombie is left.
            let _ = child.kill();
            let _ = child.wait();
            return Err(HostError::Timeout {
                path: path.to_path_buf(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for file in [&mut stdout, &mut stderr] {
        let mut text = Vec::new();
        file.rewind().map_err(run_error)?;
        // A version line is short; a tool printing megabytes is not read whole.
        file.take(64 * 1024).read_to_end(&mut text).map_err(run_error)?;
        let text = String::from_utf8_lossy(&text);
        if let Some(line) = text.lines().map(str::trim).find(|l| !l.is_empty()) {
            return Ok(line.to_string());
        }
    }
    Ok(String::new())
}

impl HostTool {
    /// The spec field recording what was probed (`"host_tool"` in the build spec): any change
    /// of path, version line or content changes the id.
    pub fn spec_field(&self) -> Value {
        json!({
            "tool": self.tool,
            "path": self.path.to_str().expect("probe checked it is UTF-8"),
            "version": self.version,
            "sha256": self.sha256.to_hex(),
        })
    }

    /// Job nodes that make `${ARTIFACT}/bin/TOOL` a symlink to the resolved path.
    pub fn commands(&self) -> Vec<Value> {
        let target = self.path.to_str().expect("probe checked it is UTF-8");
        vec![
            json!({"set": "PATH", "value": "/usr/bin:/bin"}),
            json!({"cmd": ["mkdir", "-p", "${ARTIFACT}/bin"]}),
            json!({"cmd": ["ln", "-s", target, format!("${{ARTIFACT}}/bin/{}", self.tool)]}),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(dir: &Path, name: &str, script: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, script).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn probes_path_version_and_digest_and_refuses_what_it_cannot_use() {
        let dir = tempfile::tempdir().unwrap();
        let script = "#!/bin/sh\necho\necho \"fake-cc 1.2.3\"\necho second line\n";
        let real = tool(dir.path(), "fake-cc-1", script);
        std::os::unix::fs::symlink(&real, dir.path().join("fake-cc")).unwrap();
        // Not executable: skipped.
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("fake-cc"), "x").unwrap();
        let mut path = OsString::from(other.path());
        path.push(":");
        path.push(dir.path());
        let search = HostSearch { path: Some(path) };
        let probed = probe("fake-cc", &search).unwrap();
        assert_eq!(probed.tool, "fake-cc");
        assert_eq!(probed.path, fs::canonicalize(&real).unwrap());
        // The first non-empty line.
        assert_eq!(probed.version, "fake-cc 1.2.3");
        assert_eq!(probed.sha256, Digest::of(script.as_bytes()));

        match probe("no-such-tool", &search).unwrap_err() {
            HostError::NotFound { tool, searched } => {
                assert_eq!(tool, "no-such-tool");
                assert!(searched.contains(&dir.path().display().to_string()));
            }
            other => panic!("{other}"),
        }
        assert!(matches!(probe("bin/cc", &search), Err(HostError::BadTool(_))));
        assert!(matches!(
            probe("x", &HostSearch::default()),
            Err(HostError::NotFound { .. })
        ));
        let absolute = probe(real.to_str().unwrap(), &HostSearch::default()).unwrap();
        assert_eq!(absolute.tool, "fake-cc-1");
    }
}
