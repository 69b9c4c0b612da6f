//! `hdist profile create|list|show|conflicts`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use hdist_store::union;

use crate::Globals;

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Record an ordered list of artifacts as the next generation of profile NAME.
    Create {
        /// Profile name.
        name: String,
        /// Artifact ids (full or abbreviated), highest priority first.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// List profiles with their current generation.
    List {
        /// Print JSON (name, generation, document per profile) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the artifacts of a profile's current generation.
    Show {
        /// Profile name.
        name: String,
        /// Print JSON (generation, document, artifacts) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every generation of a profile (the current one marked).
    History {
        /// Profile name.
        name: String,
        /// Print JSON (one object per generation) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make generation N current (mounted views follow within a second).
    Switch { name: String, generation: u64 },
    /// Go back to the generation before the current one.
    Rollback { name: String },
    /// Artifacts added and removed between two generations.
    Diff { name: String, from: u64, to: u64 },
    /// Materialise the profile (rules applied) as a plain directory, for hosts without FUSE.
    Export {
        name: String,
        dir: std::path::PathBuf,
        /// How files are placed.
        #[arg(long, value_enum, default_value = "hardlink")]
        link: LinkArg,
    },
    /// Paths provided by more than one artifact (the first listed wins).
    Conflicts {
        /// Profile name.
        name: String,
        /// Print JSON (path, winner, shadowed per conflict; `[]` for none) instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LinkArg {
    Symlink,
    Hardlink,
    Copy,
}

pub fn run(globals: &Globals, command: ProfileCommand) -> Result<ExitCode> {
    let store = globals.open_store()?;
    match command {
        ProfileCommand::History { name, json } => {
            let generations = store.profiles().generations(&name)?;
            if generations.is_empty() {
                return Err(store.profiles().unknown(&name)?.into());
            }
            let current = store.profiles().current(&name)?.map(|g| g.number);
            if json {
                println!("{}", serde_json::to_string_pretty(&generations)?);
            } else {
                for g in generations {
                    let doc = store.profiles().doc(&g.document)?;
                    let mark = if Some(g.number) == current { "*" } else { " " };
                    let ids: Vec<String> = doc.artifacts.iter().map(|a| a.id.to_string()).collect();
                    println!("{mark} {:>4}  {}", g.number, ids.join(" "));
                }
            }
        }
        ProfileCommand::Switch { name, generation } => {
            store.profiles().switch(&name, generation)?;
            println!("{name} generation {generation}");
        }
        ProfileCommand::Rollback { name } => {
            let current = store.profiles().require(&name)?;
            let previous = store
                .profiles()
                .generations(&name)?
                .into_iter()
                .rfind(|g| g.number < current.number)
                .with_context(|| format!("{name} is at its oldest kept generation ({})", current.number))?;
            store.profiles().switch(&name, previous.number)?;
            println!("{name} generation {}", previous.number);
        }
        ProfileCommand::Diff { name, from, to } => {
            let generations = store.profiles().generations(&name)?;
            let doc = |n: u64| -> Result<hdist_store::profile::ProfileDoc> {
                let g = generations.iter().find(|g| g.number == n).with_context(|| {
                    format!("{name} has no generation {n}; see `hdist profile history {name}`")
                })?;
                Ok(store.profiles().doc(&g.document)?)
            };
            let (a, b) = (doc(from)?, doc(to)?);
            let ids = |d: &hdist_store::profile::ProfileDoc| -> Vec<String> {
                d.artifacts.iter().map(|a| a.id.to_string()).collect()
            };
            let (ia, ib) = (ids(&a), ids(&b));
            for id in &ia {
                if !ib.contains(id) {
                    println!("- {id}");
                }
            }
            for id in &ib {
                if !ia.contains(id) {
                    println!("+ {id}");
                }
            }
            if a.env != b.env {
                println!("~ environment variables changed");
            }
        }
        ProfileCommand::Export { name, dir, link } => {
            let (_, doc) = load(&store, &name)?;
            let mode = match link {
                LinkArg::Symlink => hdist_store::profile::LinkMode::Symlink,
                LinkArg::Hardlink => hdist_store::profile::LinkMode::Hardlink,
                LinkArg::Copy => hdist_store::profile::LinkMode::Copy,
            };
            store
                .profiles()
                .export(&doc, &dir, mode)
                .with_context(|| format!("cannot export profile {name} to {}", dir.display()))?;
            if !globals.quiet {
                eprintln!("exported {name} to {}", dir.display());
            }
        }
        ProfileCommand::Create { name, ids } => {
            let generation = store
                .profiles()
                .create(&name, &ids)
                .with_context(|| format!("cannot create profile {name:?}"))?;
            println!("{name} generation {}", generation.number);
        }
        ProfileCommand::List { json } => {
            let mut rows = Vec::new();
            for name in store.profiles().names()? {
                if let Some(generation) = store.profiles().current(&name)? {
                    rows.push(generation);
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for g in rows {
                    println!("{}\tgeneration {}", g.name, g.number);
                }
            }
        }
        ProfileCommand::Show { name, json } => {
            let (generation, doc) = load(&store, &name)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "name": name,
                        "generation": generation.number,
                        "document": generation.document,
                        "artifacts": doc.artifacts,
                    }))?
                );
            } else {
                println!("{name} generation {} ({})", generation.number, doc.short_id()?);
                for a in &doc.artifacts {
                    println!("  {}", a.id);
                }
            }
        }
        ProfileCommand::Conflicts { name, json } => {
            let (_, doc) = load(&store, &name)?;
            let roots: Vec<_> = doc.artifacts.iter().map(|a| a.root).collect();
            let conflicts = union::conflicts(store.blobs().as_ref(), &roots)?;
            if json {
                let rows: Vec<_> = conflicts
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "path": c.path,
                            "winner": doc.artifacts[c.providers[0]].id,
                            "shadowed": c.providers[1..].iter().map(|i| &doc.artifacts[*i].id).collect::<Vec<_>>(),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if conflicts.is_empty() {
                println!(
                    "no conflicts: {} artifacts in profile {name}",
                    doc.artifacts.len()
                );
            } else {
                for c in &conflicts {
                    let ids: Vec<String> = c
                        .providers
                        .iter()
                        .map(|i| doc.artifacts[*i].id.to_string())
                        .collect();
                    println!("{}\t{}", c.path, ids.join(" > "));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load(
    store: &hdist_store::Store,
    name: &str,
) -> Result<(hdist_store::profile::Generation, hdist_store::profile::ProfileDoc)> {
    let generation = store.profiles().require(name)?;
    let doc = store.profiles().doc(&generation.document)?;
    Ok((generation, doc))
}
