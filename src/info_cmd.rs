//! `hdist info PACKAGE --stack FILE`: what a stack says about one package (version, artifact
//! id, sources, dependencies, which file defines it: the stack or a repo's package file,
//! what it extends and which repo files it shadows) and what the store has of it (built, or
//! why it needs building: `hdist_store::stack::why`).
//!
//! The stack is parsed before the store is opened, so a bad stack file or an unknown package
//! fails without creating a store.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use hdist_store::stack::{self, why, Package, Stack};
use hdist_store::suggest::DidYouMean;
use serde_json::{json, Value};

use crate::stack_cmd::{add_reason_json, build_state};
use crate::Globals;

/// Arguments of `hdist info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Package name, as the stack file lists it.
    package: String,
    /// Stack file (TOML) that defines the package.
    #[arg(long, value_name = "FILE")]
    stack: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Where the package is defined: the stack file with the line of its entry, or the repo
/// package file it was taken from (`stack::Package::defined_in`).
fn defined_in(stack: &Stack, package: &Package) -> String {
    let file = package.defined_in.display().to_string();
    if file == stack.file {
        format!("{file}:{}", package.line)
    } else {
        file
    }
}

/// Paths as text.
fn paths(list: &[PathBuf]) -> Vec<String> {
    list.iter().map(|p| p.display().to_string()).collect()
}

/// `name id` of each dependency.
fn dependencies(stack: &Stack, indices: &[usize]) -> Vec<(String, String)> {
    indices
        .iter()
        .map(|&d| {
            let dep = &stack.packages[d];
            (dep.name.clone(), dep.spec.id.to_string())
        })
        .collect()
}

pub fn info(globals: &Globals, args: &InfoArgs) -> Result<ExitCode> {
    let stack = stack::read(&args.stack)?;
    let Some(index) = stack.packages.iter().position(|p| p.name == args.package) else {
        let suggestion = DidYouMean::closest(&args.package, stack.packages.iter().map(|p| p.name.as_str()));
        anyhow::bail!(
            "{}: no package {:?}{suggestion} (hdist status {} lists them all)",
            stack.file,
            args.package,
            args.stack.display()
        );
    };
    let package = &stack.packages[index];
    let store = globals.open_store()?;
    let reason = why::rebuild_reason(&store, &stack, index)?;
    let defined = defined_in(&stack, package);
    let extends = paths(&package.extends);
    let shadows = paths(&package.shadowed);
    let build_deps = dependencies(&stack, &package.build_deps);
    let run_deps = dependencies(&stack, &package.run_deps);
    let in_profile = stack.profile_members().contains(&index);
    if args.json {
        let deps = |list: &[(String, String)]| -> Value {
            list.iter()
                .map(|(name, id)| json!({"name": name, "id": id}))
                .collect()
        };
        let mut out = json!({
            "name": package.name,
            "version": package.spec.version,
            "id": package.spec.id.to_string(),
            "defined_in": defined,
            "extends": extends,
            "shadows": shadows,
            "sources": package
                .sources
                .iter()
                .map(|s| json!({"location": s.location, "key": s.key.to_string()}))
                .collect::<Value>(),
            "build_deps": deps(&build_deps),
            "run_deps": deps(&run_deps),
            "in_profile": in_profile,
            "host_tool": package.host.as_ref().map(|tool| tool.spec_field()),
            "state": build_state(reason.as_ref()),
        });
        add_reason_json(&mut out, reason.as_ref());
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let version = package.spec.version.as_deref().unwrap_or("(no version)");
    println!("{} {version}", package.name);
    println!("  id          {}", package.spec.id);
    match shadows.as_slice() {
        [] => println!("  defined in  {defined}"),
        _ => println!(
            "  defined in  {defined} (shadows {}: the first repo wins)",
            shadows.join(", ")
        ),
    }
    if !extends.is_empty() {
        println!("  extends     {}", extends.join(", "));
    }
    let sources: Vec<String> = package
        .sources
        .iter()
        .map(|s| format!("{} {}", s.location, s.key))
        .collect();
    print_list("sources", &sources);
    let deps = |list: &[(String, String)]| -> Vec<String> { list.iter().map(|(_, id)| id.clone()).collect() };
    print_list("build deps", &deps(&build_deps));
    print_list("run deps", &deps(&run_deps));
    let profile = if in_profile { "yes" } else { "no (build only)" };
    println!("  in profile  {profile}");
    if let Some(tool) = &package.host {
        println!("  host tool   {} ({})", tool.path.display(), tool.version);
    }
    match &reason {
        None => println!("  state       built"),
        Some(reason) => println!("  state       needs-build: {reason}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `  label       first` and further items aligned below it; `(none)` for an empty list.
fn print_list(label: &str, items: &[String]) {
    if items.is_empty() {
        println!("  {label:10}  (none)");
    }
    for (i, item) in items.iter().enumerate() {
        let label = if i == 0 { label } else { "" };
        println!("  {label:10}  {item}");
    }
}
