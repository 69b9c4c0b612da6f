//! Using a profile: `hdist env`, `hdist shell`, `hdist module`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdist_store::profile::ProfileDoc;
use hdist_store::Store;

use crate::Globals;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ShellKind {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Profile name.
    profile: String,
    /// Syntax of the exports.
    #[arg(long, value_enum, default_value = "bash")]
    shell: ShellKind,
    /// Mount point to use (default: where the profile is mounted).
    #[arg(long)]
    at: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Profile name.
    profile: String,
    /// Command to run instead of an interactive shell. It (or the shell) finds the profile's
    /// mount path in $HDIST_PROFILE and its name in $HDIST_PROFILE_NAME.
    #[arg(last = true)]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ModuleArgs {
    /// Profile name.
    profile: String,
    /// Mount point to use (default: where the profile is mounted).
    #[arg(long)]
    at: Option<PathBuf>,
    /// Write the modulefile here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Where profile `name` of `store` is mounted, if it is. A mount whose store is unknown
/// (registered by an older hdist) counts.
fn mounted_at(store: &Store, name: &str) -> Result<Option<PathBuf>> {
    let source = format!("hdist:{name}");
    let root = store.root().display().to_string();
    Ok(hdist_fs::list_mounts()?
        .into_iter()
        .find(|m| m.source == source && m.store.as_ref().is_none_or(|s| *s == root))
        .map(|m| m.mountpoint))
}

fn mount_point(store: &Store, name: &str, at: &Option<PathBuf>) -> Result<PathBuf> {
    match at {
        Some(dir) => Ok(dir.clone()),
        None => mounted_at(store, name)?.with_context(|| {
            format!("profile {name} is not mounted; run `hdist mount {name} DIR` first, pass --at DIR, or use `hdist shell {name}`")
        }),
    }
}

/// The store and the current document of profile `name` (an error suggesting the closest
/// names when there is no such profile).
fn open_profile(globals: &Globals, name: &str) -> Result<(Store, ProfileDoc)> {
    let store = globals.open_store()?;
    let (_, doc) = crate::profile_cmd::load(&store, name)?;
    Ok((store, doc))
}

/// The variables a profile mounted at `root` contributes: (name, value, prepend-to-existing).
fn variables(doc: &ProfileDoc, root: &Path) -> Vec<(String, String, bool)> {
    let r = root.display();
    let mut vars = vec![
        ("PATH".to_string(), format!("{r}/bin"), true),
        ("MANPATH".to_string(), format!("{r}/share/man"), true),
        (
            "PKG_CONFIG_PATH".to_string(),
            format!("{r}/lib/pkgconfig:{r}/share/pkgconfig"),
            true,
        ),
    ];
    for (key, value) in &doc.env {
        vars.push((key.clone(), value.replace("$PROFILE", &r.to_string()), false));
    }
    vars
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

pub fn env(globals: &Globals, args: &EnvArgs) -> Result<ExitCode> {
    let (store, doc) = open_profile(globals, &args.profile)?;
    let root = mount_point(&store, &args.profile, &args.at)?;
    for (name, value, prepend) in variables(&doc, &root) {
        match (args.shell, prepend) {
            (ShellKind::Fish, true) => {
                let parts: Vec<String> = value.split(':').map(quote).collect();
                println!("set -gx --prepend {name} {}", parts.join(" "));
            }
            (ShellKind::Fish, false) => println!("set -gx {name} {}", quote(&value)),
            (_, true) => println!("export {name}={}\"${{{name}:+:${name}}}\"", quote(&value)),
            (_, false) => println!("export {name}={}", quote(&value)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn shell(globals: &Globals, args: &ShellArgs) -> Result<ExitCode> {
    let (store, doc) = open_profile(globals, &args.profile)?;
    let (root, temp) = match mounted_at(&store, &args.profile)? {
        Some(root) => (root, None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix(&format!("hdist-{}-", args.profile))
                .tempdir()
                .context("cannot create a temporary mount point")?;
            let exe = std::env::current_exe()?;
            let output = Command::new(&exe)
                .arg("--store")
                .arg(store.root())
                .args(["-q", "mount", &args.profile])
                .arg(temp.path())
                .output()
                .context("cannot start `hdist mount`")?;
            if !output.status.success() {
                // One error, not the child's line and then ours.
                let why = String::from_utf8_lossy(&output.stderr);
                let why = why.trim().trim_start_matches("hdist: error: ");
                bail!("cannot mount profile {}: {why}", args.profile);
            }
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    // The private mount is removed below whatever the command did.
    let result = {
        let mut command = match args.command.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest);
                c
            }
            None => Command::new(std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into())),
        };
        for (name, value, prepend) in variables(&doc, &root) {
            let value = match (prepend, std::env::var(&name)) {
                (true, Ok(old)) if !old.is_empty() => format!("{value}:{old}"),
                _ => value,
            };
            command.env(name, value);
        }
        command.env("HDIST_PROFILE", &root);
        command.env("HDIST_PROFILE_NAME", &args.profile);
        command.status().context("cannot start the command")
    };
    if let Some(temp) = temp {
        hdist_fs::unmount(temp.path())?;
        drop(temp);
    }
    let status = result?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

pub fn module(globals: &Globals, args: &ModuleArgs) -> Result<ExitCode> {
    let (store, doc) = open_profile(globals, &args.profile)?;
    let root = mount_point(&store, &args.profile, &args.at)?;
    let mut text = format!(
        "-- Lmod modulefile for the hdist profile {name}, mounted at {root}\n\
         help([[hdist profile {name}: software from {root}]])\n\
         whatis(\"Name: {name}\")\n\
         local root = \"{root}\"\n",
        name = args.profile,
        root = root.display()
    );
    let r = root.display().to_string();
    for (name, value, prepend) in variables(&doc, &root) {
        for part in value.split(':') {
            let expr = match part.strip_prefix(&r) {
                Some(rest) => format!("pathJoin(root, \"{}\")", rest.trim_start_matches('/')),
                None => format!("\"{part}\""),
            };
            if prepend {
                text.push_str(&format!("prepend_path(\"{name}\", {expr})\n"));
            } else {
                text.push_str(&format!("setenv(\"{name}\", {expr})\n"));
                break;
            }
        }
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}
