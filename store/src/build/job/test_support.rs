//! What the job tests share: a recording [`HitRunner`] and a way to run a job in a directory.

use std::cell::RefCell;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{run_job, Env, HitError, HitRunner, JobContext, JobError};

/// One recorded hit call: its args, its cwd and the `$in0` it saw.
pub(super) type HitCall = (Vec<String>, PathBuf, Option<String>);

/// A `HitRunner` that records its calls, prints `hit-out <args>` and fails on `fail`.
#[derive(Default)]
pub(super) struct RecordingHits {
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

pub(super) struct Outcome {
    pub(super) result: Result<(), JobError>,
    pub(super) log: String,
    pub(super) env: Env,
    pub(super) cwd: PathBuf,
    pub(super) hits: Vec<HitCall>,
}

pub(super) fn run_in(dir: &Path, env: &[(&str, &str)], commands: Value) -> Outcome {
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

pub(super) const SYSTEM_PATH: &str = "/usr/bin:/bin";

pub(super) fn env_of(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
