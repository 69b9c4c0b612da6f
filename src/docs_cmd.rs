//! `hdist completions SHELL` and `hdist man`: shell completion scripts (clap_complete) and
//! manual pages (clap_mangen), both generated from the command-line definition itself, so
//! they never fall behind it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// Arguments of `hdist completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for; e.g. `hdist completions bash > /etc/bash_completion.d/hdist`,
    /// `hdist completions zsh > ~/.zfunc/_hdist`, `hdist completions fish >
    /// ~/.config/fish/completions/hdist.fish`.
    #[arg(value_enum)]
    shell: Shell,
}

/// Arguments of `hdist man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write hdist.1 and a page per subcommand (hdist-up.1, hdist-store-verify.1, …) into DIR
    /// (created if needed) instead of printing hdist.1.
    #[arg(short = 'o', long = "out-dir", value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// The program's name in scripts and pages, whatever the binary was invoked as.
const NAME: &str = "hdist";

pub fn completions(args: &CompletionsArgs) -> Result<ExitCode> {
    let mut command = crate::Cli::command();
    // Into memory first: clap_complete panics when its writer fails (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, NAME, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|_| out.flush())
        .context("write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs) -> Result<ExitCode> {
    // `help` is no page of its own: every page documents --help.
    let mut command = crate::Cli::command().disable_help_subcommand(true);
    // Gives subcommands their display names (`hdist-store-verify`), which name their pages.
    command.build();
    let Some(dir) = &args.out_dir else {
        let mut out = std::io::stdout().lock();
        page(command).render(&mut out).context("write the manual page")?;
        out.flush().context("write the manual page")?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("create directory {}", dir.display()))?;
    let mut todo = vec![command];
    let mut written = 0;
    while let Some(command) = todo.pop() {
        todo.extend(command.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        let man = page(command);
        let mut text = Vec::new();
        man.render(&mut text).context("render a manual page")?;
        write_replacing(&dir.join(man.get_filename()), &text)?;
        written += 1;
    }
    eprintln!("wrote {written} manual pages to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// The page of `command`, titled in capitals as man pages are (`.TH HDIST-UP 1`).
fn page(command: clap::Command) -> clap_mangen::Man {
    let title = command
        .get_display_name()
        .unwrap_or_else(|| command.get_name())
        .to_uppercase();
    clap_mangen::Man::new(command).title(title)
}

/// Writes `bytes` to `path` through a synced temporary file renamed over it, so a reader
/// (`man`) never sees half a page.
fn write_replacing(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Readable by everyone, as installed manual pages are (a temporary file is private).
    let mut tmp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(hdist_store::modes::SHARED_FILE))
        .tempfile_in(dir)
        .with_context(|| format!("create a temporary file in {}", dir.display()))?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("write {}", tmp.path().display()))?;
    tmp.persist(path)
        .with_context(|| format!("rename into place: {}", path.display()))?;
    hdist_store::scratch::fsync_dir(dir).with_context(|| format!("sync {}", dir.display()))
}
