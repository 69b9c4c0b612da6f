//! `hdist id`, `hdist build`, `hdist resolve`, `hdist build-log`, and starting the daemon of
//! the on-demand store-wide view (see `hdist_fs::ensure_store_view`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdist_store::build::schedule::{self, JobOutcome, OnFailure};
use hdist_store::build::{self, BuildOptions, BuildOutcome, BuildSpec, KeepBuild};
use hdist_store::Store;

use crate::Globals;

#[derive(Debug, Args)]
pub struct IdArgs {
    /// Build spec (build.json), or - for stdin.
    spec: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Keep {
    Never,
    Error,
    Always,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build specs (or - for one on stdin); built in dependency order.
    #[arg(required = true)]
    specs: Vec<PathBuf>,
    /// Build up to N specs at once.
    #[arg(short = 'j', long, default_value_t = 1)]
    jobs: usize,
    /// When to keep the build directory.
    #[arg(long, value_enum, default_value = "error")]
    keep_build: Keep,
}

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// Artifact id (full or abbreviated).
    id: String,
}

fn read_spec(path: &Path) -> Result<BuildSpec> {
    let (origin, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("cannot read standard input")?;
        ("<stdin>".to_string(), text)
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        (path.display().to_string(), text)
    };
    Ok(build::spec::parse(&origin, &text)?)
}

pub fn id(args: &IdArgs) -> Result<ExitCode> {
    println!("{}", read_spec(&args.spec)?.id);
    Ok(ExitCode::SUCCESS)
}

/// Mounts the store-wide view unless it is up (remounting a dead one); returns its mount
/// point. hdist-fs decides and waits; the CLI only starts its own daemon.
pub fn ensure_view(globals: &Globals, store: &Store) -> Result<PathBuf> {
    hdist_fs::ensure_store_view(store.root(), |mountpoint| {
        start_view_daemon(globals, store, mountpoint)
    })
}

/// Runs `hdist mount --all MOUNTPOINT` for `store`; returns once the daemon it starts serves.
fn start_view_daemon(globals: &Globals, store: &Store, mountpoint: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("cannot find the hdist executable")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--store")
        .arg(store.root())
        .args(["-q", "mount", "--all"])
        .arg(mountpoint);
    if globals.quiet {
        command.arg("-q");
    }
    let status = command.status().context("cannot start the store-wide view")?;
    if !status.success() {
        bail!("could not mount the store-wide view at {}", mountpoint.display());
    }
    Ok(())
}

pub fn build(globals: &Globals, args: &BuildArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let specs: Vec<(String, BuildSpec)> = args
        .specs
        .iter()
        .map(|p| Ok((p.display().to_string(), read_spec(p)?)))
        .collect::<Result<_>>()?;
    // Everything cached: print the ids and touch nothing else (no mount, no work).
    let mut all_cached = true;
    for (_, spec) in &specs {
        if store.index().artifact(&spec.id)?.is_none() {
            all_cached = false;
        }
    }
    if all_cached {
        for (_, spec) in &specs {
            println!("{}", spec.id);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let view = ensure_view(globals, &store)?;
    let options = BuildOptions {
        view,
        keep: match args.keep_build {
            Keep::Never => KeepBuild::Never,
            Keep::Error => KeepBuild::Error,
            Keep::Always => KeepBuild::Always,
        },
        verbose: globals.verbose > 0,
    };
    let only_specs: Vec<BuildSpec> = specs.iter().map(|(_, s)| s.clone()).collect();
    let deps = schedule::import_graph(&only_specs)?;
    let build_one = |i: usize| {
        let (origin, spec) = &specs[i];
        let outcome = build::build(&store, spec, origin, &options)?;
        if let BuildOutcome::Built { record, sandboxed } = &outcome {
            if !globals.quiet {
                let how = if *sandboxed {
                    "at its final path"
                } else {
                    "unsandboxed"
                };
                eprintln!("built {} ({how})", record.id);
            }
        }
        Ok::<_, build::BuildError>(outcome)
    };
    let outcomes = schedule::run(&deps, args.jobs, OnFailure::Stop, build_one)?;
    // The first failure in the order the specs were given; the others only wait for it.
    if let Some(error) = outcomes.into_iter().find_map(JobOutcome::into_failure) {
        return Err(error.into());
    }
    for (_, spec) in &specs {
        println!("{}", spec.id);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resolve(globals: &Globals, args: &ResolveArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let record = store.find_artifact(&args.id)?;
    let view = ensure_view(globals, &store)?;
    println!("{}", build::view_path(&view, &record.id).display());
    Ok(ExitCode::SUCCESS)
}

pub fn build_log(globals: &Globals, args: &ResolveArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let record = store.find_artifact(&args.id)?;
    match build::build_log(&store, &record)? {
        Some(log) => {
            std::io::Write::write_all(&mut std::io::stdout(), &log)?;
            Ok(ExitCode::SUCCESS)
        }
        None => bail!(
            "{} was not built by hdist (it was added with `store add`); it has no build log",
            record.id
        ),
    }
}
