//! `hdist up` and `hdist status`: bring a profile in line with a stack file (see
//! `hdist_store::stack` for the format), or show how far it is from it, with the reason each
//! unbuilt package needs building (`hdist_store::stack::why`).
//!
//! `up` parses the whole stack before it opens the store, so a bad stack file changes
//! nothing. When every package is built and the profile already holds what the stack
//! describes, it reads a few small files and writes none: no mount, no generation.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use hdist_store::artifact::{check_name, ArtifactId};
use hdist_store::build::{BuildOptions, BuildOutcome, KeepBuild};
use hdist_store::profile::ProfileDoc;
use hdist_store::source::mirrors_from_env;
use hdist_store::stack::why::{self, RebuildReason};
use hdist_store::stack::{self, Applied, BuildEvent, FetchOutcome, Stack};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::Globals;

/// Arguments of `hdist up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Stack file (TOML).
    stack: PathBuf,
    /// Profile to update (default: `profile` in the stack's [stack] table).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Build up to N packages at once (default: the number of CPUs, at most 4).
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Keep build directories of failed builds (default), always, or never.
    #[arg(long, value_enum, default_value = "error")]
    keep_build: crate::build_cmd::Keep,
}

/// Arguments of `hdist status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Stack file (TOML).
    stack: PathBuf,
    /// Profile to compare with (default: `profile` in the stack's [stack] table).
    #[arg(long, value_name = "NAME")]
    profile: Option<String>,
    /// Print JSON (each package's state, the profile's state) instead of text.
    #[arg(long)]
    json: bool,
}

/// The profile name: --profile, else the stack's own.
fn profile_name(stack: &Stack, given: Option<&str>) -> Result<String> {
    let name = match given.or(stack.profile.as_deref()) {
        Some(name) => name.to_string(),
        None => anyhow::bail!(
            "{}: no profile name: set `profile = \"NAME\"` in its [stack] table or pass --profile NAME",
            stack.file
        ),
    };
    check_name(&name).with_context(|| format!("invalid profile name {name:?}"))?;
    Ok(name)
}

/// The state `status` and `info` show: `ok`, or `needs-build` when there is a reason to build.
pub(crate) fn build_state(reason: Option<&RebuildReason>) -> &'static str {
    match reason {
        Some(_) => "needs-build",
        None => "ok",
    }
}

/// Adds `reason` (the sentence, or null), `previous` (the artifact compared with, or null)
/// and `changes` (structured, see `stack::why::SpecChange`) to a package's JSON object.
pub(crate) fn add_reason_json(row: &mut serde_json::Value, reason: Option<&RebuildReason>) {
    let previous = match reason {
        Some(RebuildReason::Changed { previous, .. }) => Some(previous.to_string()),
        _ => None,
    };
    let changes = match reason {
        Some(RebuildReason::Changed { changes, .. }) => serde_json::json!(changes),
        _ => serde_json::json!([]),
    };
    row["reason"] = serde_json::json!(reason.map(|r| r.to_string()));
    row["previous"] = serde_json::json!(previous);
    row["changes"] = changes;
}

/// `name/` and the first 12 characters of the hash: enough to tell builds apart.
fn short_id(id: &ArtifactId) -> String {
    let hash = id.hash().to_string();
    format!("{}/{}", id.name(), &hash[..hash.len().min(12)])
}

/// How `up` shows its builds on stderr: on a terminal a live view with a line per package
/// (waiting, building, done, cached, failed) and its time; otherwise a line per event.
struct BuildProgress {
    live: Option<LiveView>,
    started: Mutex<HashMap<String, Instant>>,
    quiet: bool,
}

/// The terminal view: one line per package to build.
struct LiveView {
    /// Owns the drawing of the lines; kept alive as long as they are.
    _multi: MultiProgress,
    lines: HashMap<String, ProgressBar>,
    /// A running build: spinner and elapsed time.
    building: ProgressStyle,
    /// Waiting or finished: the message says it all.
    settled: ProgressStyle,
}

impl BuildProgress {
    fn new(packages: &[&str], quiet: bool) -> BuildProgress {
        let live = crate::progress::live(quiet).then(|| {
            let multi = MultiProgress::new();
            let width = packages.iter().map(|p| p.len()).max().unwrap_or(0);
            let style = |tail: &str| {
                ProgressStyle::with_template(&format!("{{spinner}} {{prefix:<{width}}}  {{msg}}{tail}"))
                    .expect("static template")
            };
            let settled = style("");
            let lines = packages
                .iter()
                .map(|&name| {
                    let line = multi.add(ProgressBar::new_spinner());
                    line.set_style(settled.clone());
                    line.set_prefix(name.to_string());
                    line.set_message("waiting");
                    (name.to_string(), line)
                })
                .collect();
            LiveView {
                _multi: multi,
                lines,
                building: style(" {elapsed}"),
                settled,
            }
        });
        BuildProgress {
            live,
            started: Mutex::new(HashMap::new()),
            quiet,
        }
    }

    /// Time since `package` started building.
    fn elapsed(&self, package: &str) -> Duration {
        let started = self.started.lock().unwrap_or_else(|e| e.into_inner());
        started.get(package).map(Instant::elapsed).unwrap_or_default()
    }

    /// Shows one event: as the package's line of the live view, else as `package: state`.
    fn event(&self, event: BuildEvent<'_>) {
        if self.quiet {
            return;
        }
        let (package, state, done) = match event {
            BuildEvent::Started { package, id } => {
                let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
                started.insert(package.to_string(), Instant::now());
                (package, format!("building {}", short_id(id)), false)
            }
            BuildEvent::Finished { package, outcome } => {
                let took = self.elapsed(package);
                let state = match outcome {
                    BuildOutcome::Built { sandboxed: true, .. } => format!("done in {took:.1?}"),
                    BuildOutcome::Built { .. } => format!("done in {took:.1?} (unsandboxed)"),
                    BuildOutcome::Cached(_) => {
                        format!("cached after {took:.1?}: built meanwhile by another process")
                    }
                };
                (package, state, true)
            }
            BuildEvent::Failed { package, .. } => (
                package,
                format!("failed after {:.1?}", self.elapsed(package)),
                true,
            ),
        };
        let Some(live) = &self.live else {
            eprintln!("{package}: {state}");
            return;
        };
        let Some(line) = live.lines.get(package) else {
            return;
        };
        if done {
            // The settled style again: the final message carries the time.
            line.set_style(live.settled.clone());
            line.finish_with_message(state);
        } else {
            line.set_style(live.building.clone());
            line.reset_elapsed();
            line.set_message(state);
            line.enable_steady_tick(Duration::from_millis(120));
        }
    }

    /// Ends the live view; packages that never started (after a failure) say so.
    fn finish(&self) {
        if let Some(live) = &self.live {
            for line in live.lines.values().filter(|l| !l.is_finished()) {
                line.finish_with_message("not started");
            }
            // The view leaves the cursor at the end of its last line.
            eprintln!();
        }
    }
}

pub fn up(globals: &Globals, args: &UpArgs) -> Result<ExitCode> {
    let started = Instant::now();
    let stack = stack::read(&args.stack)?;
    let profile = profile_name(&stack, args.profile.as_deref())?;
    let store = globals.open_store()?;
    // Shared GC lock from the first build to the new generation: a GC in between would see
    // freshly built artifacts that no profile references yet.
    let _writer = store.writer_lock()?;
    let missing = stack::needs_build(&store, &stack)?;
    let mut built = 0;
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|&i| stack.packages[i].name.as_str()).collect();
        if !globals.quiet {
            eprintln!("to build: {}", names.join(" "));
        }
        let quiet = globals.quiet;
        stack::fetch_sources(
            &store,
            &stack,
            &missing,
            &mirrors_from_env(),
            &mut |i, s, outcome| {
                let location = &stack.packages[i].sources[s].location;
                // The first failure comes back as the error; `hdist fetch --stack` lists all.
                if let (Ok(FetchOutcome::Fetched), false) = (outcome, quiet) {
                    eprintln!("fetched {location}");
                }
            },
        )?;
        let view = crate::build_cmd::ensure_view(globals, &store)?;
        let options = BuildOptions {
            view,
            keep: match args.keep_build {
                crate::build_cmd::Keep::Never => KeepBuild::Never,
                crate::build_cmd::Keep::Error => KeepBuild::Error,
                crate::build_cmd::Keep::Always => KeepBuild::Always,
            },
            verbose: globals.verbose > 0,
        };
        let jobs = args.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4)
        });
        let progress = BuildProgress::new(&names, quiet);
        let report = |event: BuildEvent<'_>| progress.event(event);
        let outcome = stack::build_packages(&store, &stack, &missing, &options, jobs, &report);
        progress.finish();
        built = outcome?.len();
    }
    let doc = stack::profile_doc(&store, &stack)?;
    let cached = stack.packages.len() - built;
    match stack::apply_profile(&store, &profile, &doc)? {
        Applied::Unchanged(generation) => println!(
            "{profile}: generation {} is up to date ({} packages, {:.0?})",
            generation.number,
            stack.packages.len(),
            started.elapsed()
        ),
        Applied::Created { generation, previous } => println!(
            "{profile}: generation {} ({built} built, {cached} cached{}; {:.0?})",
            generation.number,
            describe_change(previous.as_ref(), &doc),
            started.elapsed()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `; +a -b ~c` for artifacts added, removed and changed (by name) between two documents.
fn describe_change(previous: Option<&ProfileDoc>, doc: &ProfileDoc) -> String {
    let names = |d: &ProfileDoc| -> BTreeMap<String, ArtifactId> {
        d.artifacts
            .iter()
            .map(|a| (a.id.name().to_string(), a.id.clone()))
            .collect()
    };
    let old = previous.map(names).unwrap_or_default();
    let new = names(doc);
    let mut parts = Vec::new();
    for (name, id) in &new {
        match old.get(name) {
            None => parts.push(format!("+{name}")),
            Some(o) if o != id => parts.push(format!("~{name}")),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|n| !new.contains_key(*n)) {
        parts.push(format!("-{name}"));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(" "))
    }
}

pub fn status(globals: &Globals, args: &StatusArgs) -> Result<ExitCode> {
    let stack = stack::read(&args.stack)?;
    let profile = profile_name(&stack, args.profile.as_deref())?;
    let store = globals.open_store()?;
    let missing = stack::needs_build(&store, &stack)?;
    let members = stack.profile_members();
    // The profile matches when everything is built and the current generation holds the
    // document `up` would write.
    let current = store.profiles().current(&profile)?;
    let profile_state = match (&current, missing.is_empty()) {
        (None, _) => "absent".to_string(),
        (Some(_), false) => "outdated".to_string(),
        (Some(generation), true) => {
            let want = stack::profile_doc(&store, &stack)?;
            let have = store.profiles().doc(&generation.document)?;
            if stack::same_profile(&have, &want) {
                "current".to_string()
            } else {
                "outdated".to_string()
            }
        }
    };
    let mut rows: Vec<(usize, Option<RebuildReason>)> = Vec::with_capacity(stack.packages.len());
    for i in 0..stack.packages.len() {
        let reason = match missing.contains(&i) {
            true => why::rebuild_reason(&store, &stack, i)?,
            false => None,
        };
        rows.push((i, reason));
    }
    if args.json {
        let packages: Vec<serde_json::Value> = rows
            .iter()
            .map(|(i, reason)| {
                let p = &stack.packages[*i];
                let mut row = serde_json::json!({
                    "name": p.name,
                    "version": p.spec.version,
                    "id": p.spec.id.to_string(),
                    "state": build_state(reason.as_ref()),
                    "in_profile": members.contains(i),
                });
                add_reason_json(&mut row, reason.as_ref());
                row
            })
            .collect();
        let out = serde_json::json!({
            "profile": profile,
            "generation": current.as_ref().map(|g| g.number),
            "profile_state": profile_state,
            "packages": packages,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = stack.packages.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (i, reason) in rows {
        let p = &stack.packages[i];
        let note = if members.contains(&i) {
            ""
        } else {
            "  (build only)"
        };
        let why = reason.as_ref().map(|r| format!("  why: {r}")).unwrap_or_default();
        println!(
            "{:width$}  {:11}  {}{note}{why}",
            p.name,
            build_state(reason.as_ref()),
            short_id(&p.spec.id)
        );
    }
    let generation = current
        .map(|g| format!(" generation {}", g.number))
        .unwrap_or_default();
    let hint = match profile_state.as_str() {
        "current" => "matches the stack",
        "absent" => "does not exist yet; run hdist up",
        _ => "differs from the stack; run hdist up",
    };
    println!("profile {profile}{generation}: {hint}");
    Ok(ExitCode::SUCCESS)
}
