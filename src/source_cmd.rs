//! `hdist fetch`, `hdist unpack`: the source cache.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use hdist_store::source::{
    self, mirrors_from_env, FetchEvent, FetchRequest, HttpOptions, KeepPolicy, SourceError, SourceKey,
    SourceType,
};
use hdist_store::stack::{self, FetchOutcome};
use indicatif::ProgressBar;

use crate::progress::bytes_bar;
use crate::Globals;

/// Exit status of a fetch whose content has another key than the one given.
const KEY_MISMATCH: u8 = 2;

/// Arguments of `hdist fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// An http(s) URL, a file: URL or a path (an archive, a single file or a directory); with
    /// --git, a repository.
    #[arg(required_unless_present = "stack")]
    url: Option<String>,
    /// Fetch every source of a stack file instead (each checked against its key; exit status
    /// 2 if any has another key).
    #[arg(long, value_name = "STACK.toml", conflicts_with_all = ["url", "git", "source_type", "tags"])]
    stack: Option<PathBuf>,
    /// The expected key (exit status 2 and nothing stored if the content differs); with
    /// --git, the revision (branch, tag or commit).
    #[arg(value_name = "KEY|REV")]
    second: Option<String>,
    /// With --git: the expected key.
    #[arg(value_name = "KEY")]
    third: Option<String>,
    /// Fetch a commit of a git repository: `hdist fetch --git URL REV [KEY]`.
    #[arg(long)]
    git: bool,
    /// Source type when the URL does not end in a known suffix: tar.gz, tar.bz2, tar.xz, zip
    /// or files.
    #[arg(long = "type", value_name = "TYPE")]
    source_type: Option<String>,
    /// Base URL tried first as <URL>/packs/<type>/<digest> when KEY is given (repeatable;
    /// added to $HDIST_MIRRORS, whitespace- or comma-separated).
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// A label to record with the source (repeatable). `transient` marks a source that a
    /// garbage collector may drop; `keep` (the default) one it must keep.
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// How many times to retry a failed download (with exponential backoff).
    #[arg(long, value_name = "N", default_value_t = HttpOptions::for_downloads().retries)]
    retries: u32,
    /// Seconds to wait for a connection, a response, or the next bytes of a download; a
    /// download must also bring 64 KiB per this many seconds (a dribbling server fails).
    #[arg(long, value_name = "SECS", default_value_t = HttpOptions::for_downloads().timeout.as_secs())]
    timeout: u64,
}

/// Arguments of `hdist unpack`.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// Source key, e.g. tar.gz:<32 characters>.
    key: String,
    /// Destination: must not exist, or be an empty directory.
    dir: PathBuf,
}

pub fn fetch(globals: &Globals, args: &FetchArgs) -> Result<ExitCode> {
    if let Some(stack) = &args.stack {
        return fetch_stack(globals, args, stack);
    }
    let url = args
        .url
        .as_deref()
        .context("give a URL (or --stack STACK.toml)")?;
    let (origin_request, key_text) = if args.git {
        let rev = args
            .second
            .as_deref()
            .context("--git needs a revision: hdist fetch --git URL REV [KEY]")?;
        (FetchRequest::git(url, rev), args.third.as_deref())
    } else {
        if args.third.is_some() {
            bail!("too many arguments: hdist fetch URL [KEY] (or --git URL REV [KEY])");
        }
        (FetchRequest::location(url)?, args.second.as_deref())
    };
    let mut request = origin_request;
    if let Some(text) = key_text {
        request.expected = Some(text.parse::<SourceKey>()?);
    }
    if let Some(text) = &args.source_type {
        request.source_type = Some(text.parse::<SourceType>()?);
    }
    request.mirrors = args.mirrors.clone();
    request.mirrors.extend(mirrors_from_env());
    let mut policies = Vec::new();
    for tag in &args.tags {
        match tag.as_str() {
            "keep" => policies.push(KeepPolicy::Keep),
            "transient" => policies.push(KeepPolicy::Transient),
            _ => request.tags.push(tag.clone()),
        }
    }
    policies.dedup();
    request.keep = match policies.as_slice() {
        [] => KeepPolicy::Keep,
        [one] => *one,
        _ => bail!("--tag keep and --tag transient contradict each other; give one"),
    };
    request.http = HttpOptions {
        retries: args.retries,
        timeout: Duration::from_secs(args.timeout.max(1)),
        ..HttpOptions::for_downloads()
    };

    let bar: Mutex<Option<ProgressBar>> = Mutex::new(None);
    let quiet = globals.quiet;
    let report = |event: FetchEvent<'_>| {
        let mut bar = bar.lock().unwrap();
        match event {
            FetchEvent::Download { url, total, done } => {
                if let Some(old) = bar.take() {
                    old.finish_and_clear();
                }
                let name = url.rsplit('/').next().unwrap_or(url);
                let new = bytes_bar(total.unwrap_or(0), name, quiet);
                new.set_position(done);
                *bar = Some(new);
            }
            FetchEvent::Progress { done } => {
                if let Some(bar) = bar.as_ref() {
                    bar.set_position(done);
                }
            }
        }
    };
    request.progress = Some(&report);

    let store = globals.open_store()?;
    let result = source::fetch(&store, &request);
    if let Some(bar) = bar.lock().unwrap().take() {
        bar.finish_and_clear();
    }
    match result {
        Ok(key) => {
            println!("{key}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err @ SourceError::KeyMismatch { .. }) => {
            eprintln!("hdist: error: {err}");
            Ok(ExitCode::from(KEY_MISMATCH))
        }
        Err(err) => Err(err.into()),
    }
}

/// `hdist fetch --stack`: every source of every package, checked against its key. Prints one
/// line per source (`KEY cached|fetched PACKAGE LOCATION`); a mismatching key is reported and
/// the others are still fetched, then the exit status is 2.
fn fetch_stack(globals: &Globals, args: &FetchArgs, path: &std::path::Path) -> Result<ExitCode> {
    let stack = stack::read(path)?;
    let store = globals.open_store()?;
    let mut mirrors = args.mirrors.clone();
    mirrors.extend(mirrors_from_env());
    let all: Vec<usize> = (0..stack.packages.len()).collect();
    let mut mismatch = false;
    let result = stack::fetch_sources(&store, &stack, &all, &mirrors, &mut |i, s, outcome| {
        let package = &stack.packages[i];
        let source = &package.sources[s];
        match outcome {
            Ok(how) => {
                let how = match how {
                    FetchOutcome::Cached => "cached",
                    FetchOutcome::Fetched => "fetched",
                };
                println!("{} {how} {} {}", source.key, package.name, source.location);
            }
            Err(e) => {
                mismatch |= matches!(e, SourceError::KeyMismatch { .. });
                eprintln!("hdist: error: package {}: {e}", package.name);
            }
        }
    });
    // Every failure was printed as it happened.
    Ok(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if mismatch => ExitCode::from(KEY_MISMATCH),
        Err(_) => ExitCode::FAILURE,
    })
}

pub fn unpack(globals: &Globals, args: &UnpackArgs) -> Result<ExitCode> {
    let key: SourceKey = args.key.parse()?;
    let store = globals.open_store()?;
    source::unpack_source(&store, &key, &args.dir)?;
    Ok(ExitCode::SUCCESS)
}
