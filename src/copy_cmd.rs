//! `hdist copy ARTIFACT... --to DIR` and `hdist copy --from DIR|URL --key KEY ARTIFACT...`:
//! artifact closures between stores through a published directory (layout and trust in
//! `hdist_store::remote::copy`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hdist_store::artifact::ArtifactId;
use hdist_store::remote::{self, CacheSource, CopyReport, HttpOptions, PublicKey, SecretKey};

use crate::Globals;

/// Arguments of `hdist copy`.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Artifacts (ids, unique id prefixes or names with `--to`; full ids with `--from`). Their
    /// imports are copied too.
    #[arg(required = true, value_name = "ARTIFACT")]
    artifacts: Vec<String>,
    /// Write the closure into this published directory (one signed entry per artifact).
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with = "from",
        required_unless_present = "from"
    )]
    to: Option<PathBuf>,
    /// Import the closure from this published directory or its HTTP(S) URL.
    #[arg(long, value_name = "DIR|URL")]
    from: Option<String>,
    /// With --from: the public key the entries must be signed with (`ed25519:…` from
    /// `hdist key show`, or a file holding it).
    #[arg(long, value_name = "KEY", required_unless_present = "to")]
    key: Option<String>,
    /// With --to: the signing key (default: <store>/keys/publish.ed25519).
    #[arg(long, value_name = "FILE", conflicts_with = "from")]
    key_file: Option<PathBuf>,
    /// With an URL: seconds a request may take at the server (retries included).
    #[arg(long, value_name = "SECS", default_value_t = HttpOptions::default().timeout.as_secs())]
    timeout: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn copy(globals: &Globals, args: &CopyArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let report = if let Some(dest) = &args.to {
        let key_file = args
            .key_file
            .clone()
            .unwrap_or_else(|| store.root().join("keys").join("publish.ed25519"));
        let key = SecretKey::load(&key_file)?;
        let ids = args
            .artifacts
            .iter()
            .map(|query| Ok(store.find_artifact(query)?.id))
            .collect::<Result<Vec<ArtifactId>>>()?;
        remote::copy_to(&store, &ids, dest, &key)
            .with_context(|| format!("cannot copy to {}", dest.display()))?
    } else {
        let from = args.from.as_deref().expect("clap: --to or --from");
        let key = PublicKey::from_arg(args.key.as_deref().expect("clap: --from needs --key"))?;
        let ids = args
            .artifacts
            .iter()
            .map(|text| {
                text.parse()
                    .with_context(|| format!("--from needs full artifact ids (NAME/HASH), got {text:?}"))
            })
            .collect::<Result<Vec<ArtifactId>>>()?;
        let options = HttpOptions {
            timeout: Duration::from_secs(args.timeout),
            ..HttpOptions::default()
        };
        let source = CacheSource::open(from, options)?;
        remote::copy_from(&store, &source, &key, &ids).with_context(|| format!("cannot copy from {from}"))?
    };
    print_report(globals, args, &report)?;
    Ok(ExitCode::SUCCESS)
}

fn print_report(globals: &Globals, args: &CopyArgs, report: &CopyReport) -> Result<()> {
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else if !globals.quiet {
        println!(
            "copied {} artifacts ({} already there): {} objects written, {} bytes",
            report.artifacts.len(),
            report.present.len(),
            report.written,
            report.written_bytes
        );
        for id in &report.artifacts {
            println!("  {id}");
        }
    }
    Ok(())
}
