//! Where the store is: `--store`, else `$HDIST_STORE`, else `store` in
//! `~/.config/hdist/config.toml` (or `$XDG_CONFIG_HOME/hdist/config.toml`), else `~/.hdist`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, Default, serde::Deserialize)]
struct ConfigFile {
    store: Option<String>,
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn expand_tilde(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), home()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ => PathBuf::from(path),
    }
}

/// The user's config file path.
pub fn config_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".config")))
        .map(|dir| dir.join("hdist").join("config.toml"))
}

/// Resolves the store directory, as an absolute path (mount daemons and builds run from
/// another working directory).
pub fn store_dir(flag: Option<&Path>) -> Result<PathBuf> {
    let dir = configured_store_dir(flag)?;
    std::path::absolute(&dir).with_context(|| format!("cannot resolve the store path {}", dir.display()))
}

fn configured_store_dir(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = std::env::var_os("HDIST_STORE").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(path) = config_path() {
        if let Ok(text) = std::fs::read_to_string(&path) {
            let config: ConfigFile = toml::from_str(&text)
                .with_context(|| format!("{} is not valid TOML; fix or remove it", path.display()))?;
            if let Some(store) = config.store {
                return Ok(expand_tilde(&store));
            }
        }
    }
    home()
        .map(|h| h.join(".hdist"))
        .context("no store given and $HOME is unset: pass --store DIR or set HDIST_STORE")
}
