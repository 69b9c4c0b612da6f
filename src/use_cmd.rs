//! Using a profile: `hdist env`, `hdist shell`, `hdist module`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

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
    /// Command to run instead of an interactive shell.
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

/// Where profile `name` is mounted, if it is.
fn mounted_at(name: &str) -> Result<Option<PathBuf>> {
    let source = format!("hdist:{name}");
    Ok(hdist_fs::list_mounts()?
        .into_iter()
        .find(|m| m.source == source)
        .map(|m| m.mountpoint))
}

fn mount_point(name: &str, at: &Option<PathBuf>) -> Result<PathBuf> {
    match at {
        Some(dir) => Ok(dir.clone()),
        None => mounted_at(name)?.with_context(|| {
            format!("profile {name} is not mounted; `hdist mount {name} DIR` first, pass --at DIR, or use `hdist shell {name}`")
        }),
    }
}

/// The variables a profile mounted at `root` contributes: (name, value, prepend-to-existing).
fn variables(globals: &Globals, name: &str, root: &Path) -> Result<Vec<(String, String, bool)>> {
    let store = globals.open_store()?;
    let (_, doc) = crate::profile_cmd::load(&store, name)?;
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
    Ok(vars)
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

pub fn env(globals: &Globals, args: &EnvArgs) -> Result<ExitCode> {
    let root = mount_point(&args.profile, &args.at)?;
    for (name, value, prepend) in variables(globals, &args.profile, &root)? {
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
    let (root, temp) = match mounted_at(&args.profile)? {
        Some(root) => (root, None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix(&format!("hdist-{}-", args.profile))
                .tempdir()
                .context("cannot create a temporary mount point")?;
            let exe = std::env::current_exe()?;
            let mut mount = Command::new(&exe);
            mount
                .arg("--store")
                .arg(crate::config::store_dir(globals.store.as_deref())?);
            let status = mount
                .args(["-q", "mount", &args.profile])
                .arg(temp.path())
                .status()?;
            if !status.success() {
                bail!("cannot mount profile {}", args.profile);
            }
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let result = (|| -> Result<std::process::ExitStatus> {
        let mut command = match args.command.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest);
                c
            }
            None => Command::new(std::env::var_os("SHELL").unwrap_or_else(|| "/bin/sh".into())),
        };
        for (name, value, prepend) in variables(globals, &args.profile, &root)? {
            let value = match (prepend, std::env::var(&name)) {
                (true, Ok(old)) if !old.is_empty() => format!("{value}:{old}"),
                _ => value,
            };
            command.env(name, value);
        }
        command.env("HDIST_PROFILE", &args.profile);
        command.status().context("cannot start the command")
    })();
    if let Some(temp) = temp {
        hdist_fs::unmount(temp.path())?;
        drop(temp);
    }
    let status = result?;
    Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
}

pub fn module(globals: &Globals, args: &ModuleArgs) -> Result<ExitCode> {
    let root = mount_point(&args.profile, &args.at)?;
    let mut text = format!(
        "-- Lmod modulefile for the hdist profile {name}, mounted at {root}\n\
         help([[hdist profile {name}: software from {root}]])\n\
         whatis(\"Name: {name}\")\n\
         local root = \"{root}\"\n",
        name = args.profile,
        root = root.display()
    );
    let r = root.display().to_string();
    for (name, value, prepend) in variables(globals, &args.profile, &root)? {
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
