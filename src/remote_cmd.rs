//! `hdist publish`, `hdist key`, `hdist trace record`.
//!
//! ```text
//! <store>/
//! ├── keys/publish.ed25519     the signing key (`hdist key generate`; override with --key-file)
//! └── traces/<profile>.trace   recorded workloads (`hdist trace record`), shipped by publish
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use hdist_fs::{MountOptions, View, ViewRoot};
use hdist_store::blob::BlobService;
use hdist_store::catalog::LocalCatalog;
use hdist_store::remote::{self, PublishOptions, RecordingBlobService, SecretKey};

use crate::Globals;

/// Arguments of `hdist publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Output directory (served as plain files by any HTTP server).
    #[arg(long)]
    to: PathBuf,
    /// Publish only this profile and the artifacts it uses (repeat for several; default:
    /// every profile and artifact).
    #[arg(long = "profile", value_name = "NAME")]
    profiles: Vec<String>,
    /// Signing key (default: <store>/keys/publish.ed25519).
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// `hdist key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a signing key pair (never replaces an existing key); prints the public key.
    Generate {
        /// Where to write the secret key (default: <store>/keys/publish.ed25519).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
    /// Print the public key (give it to nodes: `hdist mount --remote URL --key KEY …`).
    Show {
        /// The secret key file (default: <store>/keys/publish.ed25519).
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
}

/// `hdist trace record [--at DIR] [--out FILE] PROFILE -- CMD…`.
// Until main.rs dispatches `Command::Trace` to `trace`, this is only type-checked.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// The profile the workload runs from.
    profile: String,
    /// Mount the profile here while recording (default: a fresh temp dir).
    #[arg(long, value_name = "DIR")]
    at: Option<PathBuf>,
    /// Where to write the trace (default: <store>/traces/PROFILE.trace, which publish ships).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// The workload. It finds the profile's mount path in $HDIST_PROFILE and its name in
    /// $HDIST_PROFILE_NAME.
    #[arg(last = true, required = true)]
    command: Vec<OsString>,
}

fn key_path(globals: &Globals, flag: Option<&Path>) -> Result<PathBuf> {
    match flag {
        Some(path) => Ok(path.to_path_buf()),
        None => Ok(globals.open_store()?.root().join("keys").join("publish.ed25519")),
    }
}

pub fn publish(globals: &Globals, args: &PublishArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let key_file = key_path(globals, args.key_file.as_deref())?;
    let key = SecretKey::load(&key_file)?;
    let options = PublishOptions {
        profiles: (!args.profiles.is_empty()).then(|| args.profiles.clone()),
    };
    let report = remote::publish(&store, &args.to, &key, &options)
        .with_context(|| format!("cannot publish to {}", args.to.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !globals.quiet {
        println!(
            "published serial {} to {}: {} objects ({} new, {} bytes written), {} chunked files",
            report.serial,
            args.to.display(),
            report.objects,
            report.written,
            report.written_bytes,
            report.chunked_files
        );
        for (name, prefetch) in &report.profiles {
            println!("  profile {name}: {prefetch} files in its prefetch list");
        }
        println!("public key: {}", key.public());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn key(globals: &Globals, command: &KeyCommand) -> Result<ExitCode> {
    match command {
        KeyCommand::Generate { key_file } => {
            let path = key_path(globals, key_file.as_deref())?;
            if path.exists() {
                bail!(
                    "{} exists; `hdist key show` prints its public key (remove the file to start over)",
                    path.display()
                );
            }
            let key = SecretKey::generate();
            key.save(&path)?;
            eprintln!("secret key written to {}", path.display());
            println!("{}", key.public());
        }
        KeyCommand::Show { key_file } => {
            let path = key_path(globals, key_file.as_deref())?;
            println!("{}", SecretKey::load(&path)?.public());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Mounts the profile in this process with a recording blob service, runs the workload with
/// `$HDIST_PROFILE` pointing at the mount (and `$HDIST_PROFILE_NAME` naming it), unmounts, and saves the files it touched.
pub fn trace(globals: &Globals, args: &TraceArgs) -> Result<ExitCode> {
    let store = Arc::new(globals.open_store()?);
    let catalog = LocalCatalog::new(store.clone());
    let recording = Arc::new(RecordingBlobService::new(store.blobs().clone()));
    let blobs: Arc<dyn BlobService> = recording.clone();
    let view = View::new(blobs, Arc::new(catalog), &ViewRoot::Profile(args.profile.clone()))?;
    let (dir, temporary) = match &args.at {
        Some(dir) => (dir.clone(), false),
        None => {
            let dir = std::env::temp_dir().join(format!("hdist-trace-{}", std::process::id()));
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            (dir, true)
        }
    };
    let options = MountOptions {
        allow_other: false,
        threads: 4,
        fsname: format!("hdist:{}", args.profile),
        store: store.root().display().to_string(),
    };
    let mounted = hdist_fs::mount(view, &dir, &options)?;
    let status = Command::new(&args.command[0])
        .args(&args.command[1..])
        .env("HDIST_PROFILE", &dir)
        .env("HDIST_PROFILE_NAME", &args.profile)
        .status();
    let unmounted = mounted.unmount();
    if temporary {
        let _ = std::fs::remove_dir(&dir);
    }
    let status = status.with_context(|| format!("cannot run {:?}", args.command[0]))?;
    unmounted?;
    let touched = recording.touched();
    let out = match &args.out {
        Some(out) => out.clone(),
        None => store
            .root()
            .join("traces")
            .join(format!("{}.trace", args.profile)),
    };
    remote::write_trace(&out, &touched)?;
    if !globals.quiet {
        eprintln!(
            "recorded {} files into {} ({status})",
            touched.len(),
            out.display()
        );
    }
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
