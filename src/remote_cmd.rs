//! `hdist publish`, `hdist key` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::Globals;

/// Arguments of `hdist publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Output directory (served as plain files by any HTTP server).
    #[arg(long)]
    to: std::path::PathBuf,
}

/// `hdist key …`.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a signing key pair.
    Generate,
    /// Print the public key.
    Show,
}

pub fn publish(_globals: &Globals, _args: &PublishArgs) -> Result<ExitCode> {
    bail!("hdist publish is not implemented yet")
}

pub fn key(_globals: &Globals, _command: &KeyCommand) -> Result<ExitCode> {
    bail!("hdist key is not implemented yet")
}
