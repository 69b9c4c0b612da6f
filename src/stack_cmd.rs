//! `hdist up`, `hdist status` (being written).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use crate::Globals;

/// Arguments of `hdist up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Stack file (TOML).
    stack: PathBuf,
}

/// Arguments of `hdist status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Stack file (TOML).
    stack: PathBuf,
}

pub fn up(_globals: &Globals, _args: &UpArgs) -> Result<ExitCode> {
    bail!("hdist up is not implemented yet")
}

pub fn status(_globals: &Globals, _args: &StatusArgs) -> Result<ExitCode> {
    bail!("hdist status is not implemented yet")
}
