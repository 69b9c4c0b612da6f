//! `hdist fetch`, `hdist unpack` (being written).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Args;

use crate::Globals;

/// Arguments of `hdist fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// URL, file: URL or path.
    url: String,
}

/// Arguments of `hdist unpack`.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// Source key.
    key: String,
}

pub fn fetch(_globals: &Globals, _args: &FetchArgs) -> Result<ExitCode> {
    bail!("hdist fetch is not implemented yet")
}

pub fn unpack(_globals: &Globals, _args: &UnpackArgs) -> Result<ExitCode> {
    bail!("hdist unpack is not implemented yet")
}
