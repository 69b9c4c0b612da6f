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
        #[arg(long)]
        json: bool,
    },
    /// Show the artifacts of a profile's current generation.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Paths provided by more than one artifact (the first listed wins).
    Conflicts {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(globals: &Globals, command: ProfileCommand) -> Result<ExitCode> {
    let store = globals.open_store()?;
    match command {
        ProfileCommand::Create { name, ids } => {
            let generation = store
                .create_profile(&name, &ids)
                .with_context(|| format!("cannot create profile {name:?}"))?;
            println!("{name} generation {}", generation.number);
        }
        ProfileCommand::List { json } => {
            let mut rows = Vec::new();
            for name in store.profile_names()? {
                if let Some(generation) = store.current_generation(&name)? {
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

fn load(
    store: &hdist_store::Store,
    name: &str,
) -> Result<(hdist_store::profile::Generation, hdist_store::profile::ProfileDoc)> {
    let generation =
        store
            .current_generation(name)?
            .ok_or_else(|| hdist_store::StoreError::UnknownProfile {
                name: name.to_string(),
            })?;
    let doc = store.profile_doc(&generation.document)?;
    Ok((generation, doc))
}
