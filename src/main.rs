//! hdist: reproducible, cached, instantly usable software stacks.
//!
//! The command line only parses, dispatches and prints; the work lives in `hdist-store` and
//! `hdist-fs`.

mod build_cmd;
mod config;
mod copy_cmd;
mod docs_cmd;
mod info_cmd;
mod mount_cmd;
mod profile_cmd;
mod progress;
mod remote_cmd;
mod source_cmd;
mod stack_cmd;
mod store_cmd;
mod use_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Reproducible, cached, instantly usable scientific software stacks.
#[derive(Debug, Parser)]
#[command(name = "hdist", version, about)]
pub struct Cli {
    /// Store directory (default: $HDIST_STORE, then `store` in ~/.config/hdist/config.toml,
    /// then ~/.hdist).
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<PathBuf>,
    /// No progress bars or chatter.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Hash a JSON document the Hashdist way, or a file with SHA-256.
    Hash(store_cmd::HashArgs),
    /// Manage the store itself.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// List artifacts, or the content of a directory inside one.
    Ls(store_cmd::LsArgs),
    /// Print a file of an artifact.
    Cat(store_cmd::CatArgs),
    /// Materialise an artifact as a plain directory.
    Export(store_cmd::ExportArgs),
    /// Create and inspect profiles.
    #[command(subcommand)]
    Profile(profile_cmd::ProfileCommand),
    /// Mount a profile or artifact (or the whole store with --all) read-only.
    Mount(mount_cmd::MountArgs),
    /// Unmount an hdist mount (also one whose daemon died).
    Umount(mount_cmd::UmountArgs),
    /// Download (or copy) a source into the source cache; prints its key.
    Fetch(source_cmd::FetchArgs),
    /// Unpack a cached source into a directory (verified, safely).
    Unpack(source_cmd::UnpackArgs),
    /// Print the artifact id a build spec would produce.
    Id(build_cmd::IdArgs),
    /// Build specs (cached builds do nothing).
    Build(build_cmd::BuildArgs),
    /// Print the path where an artifact is visible (mounts the store-wide view if needed).
    Resolve(build_cmd::ResolveArgs),
    /// Print the build log of an artifact.
    BuildLog(build_cmd::ResolveArgs),
    /// Publish the store as static files for HTTP servers (signed manifest).
    Publish(remote_cmd::PublishArgs),
    /// Copy artifacts and their imports to a published directory, or import them from one.
    Copy(copy_cmd::CopyArgs),
    /// Manage the publishing key.
    #[command(subcommand)]
    Key(remote_cmd::KeyCommand),
    /// Build what a stack file needs and switch its profile to the result.
    Up(stack_cmd::UpArgs),
    /// Show which packages of a stack file are built, and why the others need building.
    Status(stack_cmd::StatusArgs),
    /// Show one package of a stack file: version, id, sources, dependencies, build state.
    Info(info_cmd::InfoArgs),
    /// Print the shell exports (PATH, MANPATH, …) for a mounted profile.
    Env(use_cmd::EnvArgs),
    /// Run a shell (or a command after --) with a profile mounted and on PATH.
    Shell(use_cmd::ShellArgs),
    /// Print an Lmod (Lua) modulefile for a mounted profile.
    Module(use_cmd::ModuleArgs),
    /// Record which files a workload touches (shipped by `hdist publish` as a prefetch list).
    #[command(subcommand)]
    Trace(TraceCommand),
    /// Delete what no profile, kept generation, kept source or live mount needs.
    Gc(store_cmd::GcArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs_cmd::CompletionsArgs),
    /// Print the manual page, or write one per command into a directory (-o DIR).
    Man(docs_cmd::ManArgs),
    /// List active hdist mounts.
    Mounts {
        /// Print JSON (mountpoint, source, store, pid per mount) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TraceCommand {
    /// Run a command against a mounted profile and record the files it opens.
    Record(remote_cmd::TraceArgs),
}

/// Global options every command sees.
#[derive(Debug)]
pub struct Globals {
    store: Option<PathBuf>,
    quiet: bool,
    verbose: u8,
    /// The command line as parsed (after the `mount.fuse.hdist` translation), which the mount
    /// daemon runs again.
    argv: Vec<std::ffi::OsString>,
}

impl Globals {
    /// Opens (initialising if needed) the selected store.
    pub fn open_store(&self) -> anyhow::Result<hdist_store::Store> {
        let dir = config::store_dir(self.store.as_deref())?;
        Ok(hdist_store::Store::open(&dir)?)
    }
}

/// mount(8) runs `/sbin/mount.fuse.hdist WHAT WHERE -o OPTIONS` for fstab entries and systemd
/// mount units of type `fuse.hdist` (install with `ln -s $(command -v hdist)
/// /sbin/mount.fuse.hdist`). Translate that into `hdist [--store S] mount [--allow-other] WHAT
/// WHERE`; options hdist does not know (rw, dev, _netdev, …) are the kernel's and ignored.
fn mount_helper_args() -> Option<Vec<std::ffi::OsString>> {
    let mut args = std::env::args_os();
    let argv0 = PathBuf::from(args.next()?);
    if argv0.file_name()? != "mount.fuse.hdist" {
        return None;
    }
    let mut positional = Vec::new();
    let mut options = String::new();
    while let Some(arg) = args.next() {
        if arg == "-o" {
            options = args.next()?.to_string_lossy().into_owned();
        } else {
            positional.push(arg);
        }
    }
    let mut out: Vec<std::ffi::OsString> = vec!["hdist".into()];
    let mut mount_flags: Vec<std::ffi::OsString> = Vec::new();
    for option in options.split(',') {
        if let Some(store) = option.strip_prefix("store=") {
            out.push("--store".into());
            out.push(store.into());
        } else if option == "allow_other" {
            mount_flags.push("--allow-other".into());
        }
    }
    out.push("mount".into());
    out.extend(mount_flags);
    out.extend(positional.into_iter().take(2));
    Some(out)
}

fn main() -> ExitCode {
    let argv = mount_helper_args().unwrap_or_else(|| std::env::args_os().collect());
    let cli = Cli::parse_from(&argv);
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    // fuser warns about its own second unmount attempt after `hdist umount`; keep it quiet
    // unless debugging.
    let filter = if cli.verbose >= 2 {
        level.to_string()
    } else {
        format!("{level},fuser=error")
    };
    env_logger::Builder::from_env(env_logger::Env::default().filter_or("HDIST_LOG", filter))
        .format_timestamp(None)
        .init();
    let globals = Globals {
        store: cli.store,
        quiet: cli.quiet,
        verbose: cli.verbose,
        argv,
    };
    let result = match cli.command {
        Command::Hash(args) => store_cmd::hash(&args),
        Command::Store(cmd) => store_cmd::store(&globals, cmd),
        Command::Ls(args) => store_cmd::ls(&globals, &args),
        Command::Cat(args) => store_cmd::cat(&globals, &args),
        Command::Export(args) => store_cmd::export(&globals, &args),
        Command::Profile(cmd) => profile_cmd::run(&globals, cmd),
        Command::Mount(args) => mount_cmd::mount(&globals, &args),
        Command::Umount(args) => mount_cmd::umount(&args),
        Command::Mounts { json } => mount_cmd::mounts(json),
        Command::Id(args) => build_cmd::id(&args),
        Command::Build(args) => build_cmd::build(&globals, &args),
        Command::Resolve(args) => build_cmd::resolve(&globals, &args),
        Command::BuildLog(args) => build_cmd::build_log(&globals, &args),
        Command::Publish(args) => remote_cmd::publish(&globals, &args),
        Command::Copy(args) => copy_cmd::copy(&globals, &args),
        Command::Key(cmd) => remote_cmd::key(&globals, &cmd),
        Command::Up(args) => stack_cmd::up(&globals, &args),
        Command::Status(args) => stack_cmd::status(&globals, &args),
        Command::Info(args) => info_cmd::info(&globals, &args),
        Command::Completions(args) => docs_cmd::completions(&args),
        Command::Man(args) => docs_cmd::man(&args),
        Command::Env(args) => use_cmd::env(&globals, &args),
        Command::Shell(args) => use_cmd::shell(&globals, &args),
        Command::Module(args) => use_cmd::module(&globals, &args),
        Command::Trace(TraceCommand::Record(args)) => remote_cmd::trace(&globals, &args),
        Command::Gc(args) => store_cmd::gc(&globals, &args),
        Command::Fetch(args) => source_cmd::fetch(&globals, &args),
        Command::Unpack(args) => source_cmd::unpack(&globals, &args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // Not `{err:#}`: a layer that shows its source inline (a failed build's reason, an
            // I/O error) would print it twice.
            eprintln!("hdist: error: {}", hdist_store::error_chain(err.as_ref()));
            ExitCode::FAILURE
        }
    }
}
