//! `hdist hash`, `hdist store …`, `hdist ls`, `cat`, `export`.

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hdist_store::hash::{hash_document, hash_file};
use hdist_store::tree::{Entry, MtimePolicy, Node};
use serde_json::json;

use crate::progress::{bytes_bar, tree_bytes};
use crate::Globals;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["doctype", "file"])))]
pub struct HashArgs {
    /// Hash the JSON document JSON (a path, or - for stdin) as hash_document(DOCTYPE, doc).
    #[arg(long, value_name = "DOCTYPE", requires = "json")]
    doctype: Option<String>,
    /// The JSON document for --doctype.
    #[arg(value_name = "JSON")]
    json: Option<PathBuf>,
    /// Print the SHA-256 (hex) of a file.
    #[arg(long, value_name = "PATH", conflicts_with = "json")]
    file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Ingest a directory as an artifact; prints its id.
    Add {
        /// The directory to ingest.
        dir: PathBuf,
        /// Artifact name ([a-zA-Z0-9-_+]+).
        #[arg(long)]
        name: String,
        /// Optional version.
        #[arg(long)]
        version: Option<String>,
        /// Print a JSON object instead of the id.
        #[arg(long)]
        json: bool,
        /// Modification times to record: `keep` each file's (what `.pyc` validation and
        /// `make` compare), or `zero` for all, so the id depends on the content alone.
        #[arg(long, value_enum, default_value = "keep")]
        mtime: MtimeArg,
    },
    /// Re-hash every object and check every artifact document, profile generation and source
    /// document on disk, the index against them, and every decompressed copy (bad copies are
    /// re-made); exit 1 on any problem.
    Verify {
        /// Print the report as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Remove what cannot be completed (broken artifacts and source documents, damaged
        /// documents, corrupt object files), reindex, and say what was removed.
        #[arg(long)]
        repair: bool,
        /// Check a remote node's cache (the `--cache` of `hdist mount --remote`) instead of
        /// the store: re-hash every cached copy and drop the bad ones.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
    },
    /// Object counts, sizes, dedup and compression ratios.
    Stats {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the index from the objects and artifact documents (a damaged index file is
    /// moved aside first).
    Reindex,
    /// Keep an artifact through GC even if no profile uses it.
    Pin { id: String },
    /// Remove a pin.
    Unpin { id: String },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MtimeArg {
    Keep,
    Zero,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Artifact id (full, abbreviated, or a name with one artifact); none lists artifacts.
    id: Option<String>,
    /// Path inside the artifact.
    path: Option<String>,
    /// Print JSON (artifact records, or directory entries) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// Artifact id.
    id: String,
    /// Path of a file inside the artifact.
    path: String,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Artifact id.
    id: String,
    /// Destination: must not exist, or be an empty directory.
    dir: PathBuf,
}

pub fn hash(args: &HashArgs) -> Result<ExitCode> {
    if let Some(path) = &args.file {
        let (digest, _) = hash_file(path).with_context(|| format!("cannot read {}", path.display()))?;
        println!("{digest}");
        return Ok(ExitCode::SUCCESS);
    }
    let doctype = args
        .doctype
        .as_deref()
        .context("--doctype is required with a JSON document")?;
    let source = args.json.as_ref().context("give a JSON file, or - for stdin")?;
    let text = if source.as_os_str() == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(source).with_context(|| format!("cannot read {}", source.display()))?
    };
    let doc: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", source.display()))?;
    let digest = hash_document(doctype, &doc).with_context(|| format!("cannot hash {}", source.display()))?;
    println!("{digest}");
    Ok(ExitCode::SUCCESS)
}

pub fn store(globals: &Globals, command: StoreCommand) -> Result<ExitCode> {
    if let StoreCommand::Reindex = command {
        return reindex(globals);
    }
    if let StoreCommand::Verify {
        json,
        cache: Some(cache),
        ..
    } = &command
    {
        return verify_cache(globals, cache, *json);
    }
    let store = globals.open_store()?;
    match command {
        StoreCommand::Add {
            dir,
            name,
            version,
            json,
            mtime,
        } => {
            let mtimes = match mtime {
                MtimeArg::Keep => MtimePolicy::Keep,
                MtimeArg::Zero => MtimePolicy::Zero,
            };
            let bar = bytes_bar(
                if globals.quiet { 0 } else { tree_bytes(&dir) },
                "ingest",
                globals.quiet,
            );
            let outcome = store
                .add_tree(&dir, &name, version.as_deref(), mtimes, &|bytes| bar.inc(bytes))
                .with_context(|| {
                    format!(
                        "cannot add {} to the store at {}",
                        dir.display(),
                        store.root().display()
                    )
                })?;
            bar.finish_and_clear();
            if json {
                println!(
                    "{}",
                    json!({
                        "id": outcome.record.id,
                        "root": outcome.record.root,
                        "files": outcome.record.files,
                        "bytes": outcome.record.bytes,
                        "new_objects": outcome.new_objects,
                        "new_stored_bytes": outcome.new_stored_bytes,
                    })
                );
            } else {
                println!("{}", outcome.record.id);
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Verify {
            json,
            repair,
            cache: _,
        } => {
            let total = store.totals()?.stored_bytes;
            let bar = bytes_bar(total, "verify", globals.quiet);
            let report = hdist_store::verify::verify_store(&store, repair, &|bytes| bar.inc(bytes))?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for problem in &report.problems {
                    println!("{problem}");
                }
                for line in &report.repaired {
                    println!("{line}");
                }
                print_bad_copies(&report.copies);
                if !globals.quiet {
                    for note in &report.notes {
                        eprintln!("note: {note}");
                    }
                    let left = if report.is_clean() {
                        String::new()
                    } else if report.repaired.is_empty() {
                        "; `hdist store verify --repair` removes what cannot be completed".to_string()
                    } else {
                        "; what is left needs you (add the artifacts again, or switch the profile)"
                            .to_string()
                    };
                    eprintln!(
                        "checked {} objects: {} problems{}; {} copies: {} bad{left}",
                        report.checked,
                        report.problems.len(),
                        if report.repaired.is_empty() {
                            ""
                        } else {
                            ", repaired"
                        },
                        report.copies.checked,
                        report.copies.bad.len(),
                    );
                }
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        StoreCommand::Stats { json } => {
            let t = store.totals()?;
            let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
            let dedup = ratio(t.artifact_bytes, t.blob_bytes);
            let compression = ratio(t.logical_bytes, t.stored_bytes);
            if json {
                let mut value = serde_json::to_value(&t)?;
                value["dedup_ratio"] = json!(dedup);
                value["compression_ratio"] = json!(compression);
                value["store"] = json!(store.root());
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("store:             {}", store.root().display());
                println!("artifacts:         {}", t.artifacts);
                println!("objects:           {} ({} trees)", t.objects, t.trees);
                println!("artifact bytes:    {}", t.artifact_bytes);
                println!("logical bytes:     {}", t.logical_bytes);
                println!("stored bytes:      {}", t.stored_bytes);
                println!("dedup ratio:       {dedup:.2}");
                println!("compression ratio: {compression:.2}");
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Pin { id } => {
            let record = store.find_artifact(&id)?;
            store.pin(&record.id)?;
            println!("pinned {}", record.id);
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Unpin { id } => {
            let record = store.find_artifact(&id)?;
            store.unpin(&record.id)?;
            println!("unpinned {}", record.id);
            Ok(ExitCode::SUCCESS)
        }
        StoreCommand::Reindex => reindex(globals),
    }
}

/// `hdist store reindex`: opens the store even when its index is damaged (moving it aside).
fn reindex(globals: &Globals) -> Result<ExitCode> {
    let dir = crate::config::store_dir(globals.store.as_deref())?;
    let (store, moved) = hdist_store::Store::open_for_reindex(&dir)?;
    let mut report = store.reindex()?;
    // Damage found while opening, or while rebuilding.
    if let Some(moved) = moved.or(report.moved_index.take()) {
        eprintln!(
            "the index was damaged; moved it aside to {} (with its -wal and -shm) and rebuilt it",
            moved.display()
        );
    }
    for skipped in &report.skipped {
        eprintln!("skipped: {skipped}");
    }
    if !globals.quiet {
        eprintln!(
            "reindexed {} objects and {} artifacts",
            report.objects, report.artifacts
        );
    }
    Ok(if report.skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub fn ls(globals: &Globals, args: &LsArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let Some(query) = &args.id else {
        let records = store.artifacts()?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&records)?);
        } else {
            for r in records {
                println!(
                    "{}\t{}\t{} files\t{} bytes",
                    r.id,
                    r.version.as_deref().unwrap_or("-"),
                    r.files,
                    r.bytes
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let record = store.find_artifact(query)?;
    let entries = store.list(&record, args.path.as_deref().unwrap_or(""))?;
    if args.json {
        let list: Vec<_> = entries.iter().map(entry_json).collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = io::stdout().lock();
    for entry in &entries {
        let (mode, size) = match &entry.node {
            Node::Directory { .. } => ("drwxr-xr-x", String::from("-")),
            Node::File {
                size,
                executable: true,
                ..
            } => ("-rwxr-xr-x", size.to_string()),
            Node::File { size, .. } => ("-rw-r--r--", size.to_string()),
            Node::Symlink { .. } => ("lrwxrwxrwx", String::from("-")),
        };
        write!(out, "{mode} {size:>12} ")?;
        out.write_all(&entry.name)?;
        if let Node::Symlink { target } = &entry.node {
            out.write_all(b" -> ")?;
            out.write_all(target)?;
        }
        out.write_all(b"\n")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn entry_json(entry: &Entry) -> serde_json::Value {
    let name = String::from_utf8_lossy(&entry.name);
    match &entry.node {
        Node::Directory { digest } => json!({"name": name, "type": "directory", "digest": digest}),
        Node::File {
            digest,
            size,
            executable,
        } => {
            json!({"name": name, "type": "file", "size": size, "executable": executable, "digest": digest})
        }
        Node::Symlink { target } => {
            json!({"name": name, "type": "symlink", "target": String::from_utf8_lossy(target)})
        }
    }
}

/// `hdist store verify --cache DIR`: a remote node's cache, without a store.
fn verify_cache(globals: &Globals, cache: &std::path::Path, json: bool) -> Result<ExitCode> {
    if !cache.join("objects").is_dir() {
        anyhow::bail!(
            "{} is not a remote cache (it has no objects/ directory); give the --cache DIR that \
             `hdist mount --remote` uses",
            cache.display()
        );
    }
    let report = hdist_store::remote::CachedBlobService::verify_cache(cache, true)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_bad_copies(&report);
        if !globals.quiet {
            eprintln!(
                "checked {} cached copies in {}: {} bad",
                report.checked,
                cache.display(),
                report.bad.len()
            );
        }
    }
    Ok(if report.bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_bad_copies(report: &hdist_store::blob::CopiesReport) {
    for bad in &report.bad {
        println!(
            "bad copy {} of {}: {}; {}",
            bad.path.display(),
            bad.digest,
            bad.problem,
            bad.action
        );
    }
}

pub fn cat(globals: &Globals, args: &CatArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let record = store.find_artifact(&args.id)?;
    let mut out = io::stdout().lock();
    store.cat(&record, &args.path, &mut out)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn export(globals: &Globals, args: &ExportArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let record = store.find_artifact(&args.id)?;
    let bar = bytes_bar(record.bytes, "export", globals.quiet);
    store
        .export_with_progress(&record, &args.dir, &|bytes| bar.inc(bytes))
        .with_context(|| format!("cannot export {} to {}", record.id, args.dir.display()))?;
    bar.finish_and_clear();
    if !globals.quiet {
        eprintln!("exported {} to {}", record.id, args.dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be freed; delete nothing.
    #[arg(long)]
    dry_run: bool,
    /// Besides each profile's current generation, keep only the N newest.
    #[arg(long, value_name = "N")]
    keep_generations: Option<usize>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn gc(globals: &Globals, args: &GcArgs) -> Result<ExitCode> {
    let store = globals.open_store()?;
    let mut options = hdist_store::gc::GcOptions {
        dry_run: args.dry_run,
        keep_generations: args.keep_generations,
        ..Default::default()
    };
    // What live mounts show stays.
    for mount in hdist_fs::list_mounts().unwrap_or_default() {
        let Some(what) = mount.source.strip_prefix("hdist:") else {
            continue;
        };
        match what.parse::<hdist_store::ArtifactId>() {
            Ok(id) => options.live_artifacts.push(id),
            Err(_) => options.live_profiles.push(what.to_string()),
        }
    }
    let start = std::time::Instant::now();
    let report = hdist_store::gc::collect(&store, &options)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if args.dry_run { "would free" } else { "freed" };
        for id in &report.artifacts {
            println!("artifact {id}");
        }
        for g in &report.generations {
            println!("generation {g}");
        }
        for s in &report.sources {
            println!("source {s}");
        }
        println!(
            "{verb} {} objects ({} bytes) and {} bytes of copies and build directories; kept {} objects ({:.2?})",
            report.objects,
            report.bytes,
            report.other_bytes,
            report.kept_objects,
            start.elapsed()
        );
    }
    Ok(ExitCode::SUCCESS)
}
