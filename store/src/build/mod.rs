//! The build store: run a Hashdist build spec once, keep its output as an artifact.
//!
//! ```text
//! <store>/
//! ├── builds/<name>-<hash>-<pid>-<n>/ one directory per build attempt
//! │   ├── build/                      $BUILD: build.json, unpacked sources, the job's cwd
//! │   ├── artifact/                   staging: what the job installs into $ARTIFACT
//! │   ├── scaffold/                   tmpfs mount point of the sandbox (see `sandbox`)
//! │   └── build.log                   everything the job printed
//! └── locks/<name>-<hash>.lock        flock held while that id is being built
//! ```
//!
//! A build is skipped when its id is already registered. Otherwise it takes the id's lock
//! (so concurrent builds of one spec run once; the waiter then reuses the result), runs the job
//! with a cleared environment, ingests the staging directory and registers the artifact with
//! its spec and log in one step (the artifact document is the commit point). A failed build
//! registers nothing; its directory is kept for inspection (`--keep-build error`, the default).
//!
//! A `sources[].target` must stay below `$BUILD`, a `files[].target` (after substitution)
//! below `$BUILD` or `$ARTIFACT`, judged lexically once `..` is resolved; otherwise
//! the build fails naming the spec, field and value, before anything is written.

pub mod job;
pub mod sandbox;
pub mod schedule;
pub mod spec;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

pub use spec::BuildSpec;

use crate::artifact::{ArtifactId, ArtifactRecord};
use crate::blob::BlobService;
use crate::source::{unpack_source, SourceKey};
use crate::store::{Store, StoreError};
use crate::tree;
use crate::{IoContext, IoError};

/// Errors of the build layer.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec is not JSON.
    #[error("{origin}: not valid JSON: {source}")]
    BadJson {
        origin: String,
        #[source]
        source: serde_json::Error,
    },
    /// A field of the spec is wrong.
    #[error("{origin}: field {field}: {reason}")]
    BadSpec {
        origin: String,
        field: String,
        reason: String,
    },
    /// An import names an artifact the store does not have.
    #[error(
        "{origin}: build.import: {id} is not in the store; build it first (or list its spec before this one)"
    )]
    UnknownImport { origin: String, id: ArtifactId },
    /// The job failed.
    #[error("build of {id} failed: {source}\n--- last lines of {log} ---\n{tail}")]
    Failed {
        id: ArtifactId,
        log: PathBuf,
        tail: String,
        // Boxed: a job error is large, and every build result carries the type.
        #[source]
        source: Box<JobFailure>,
    },
    /// Specs given together import each other in a cycle.
    #[error("the specs import each other in a cycle: {0}")]
    Cycle(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Why a build's job did not complete: the cause within [`BuildError::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum JobFailure {
    /// The build log could not be created.
    #[error(transparent)]
    Log(#[from] IoError),
    /// The job itself failed (a command, a `hit` helper, a malformed node, …).
    #[error(transparent)]
    Job(#[from] job::JobError),
    /// The thread running the job panicked.
    #[error("the build thread panicked")]
    Panicked,
}

/// A `sources[].target` or `files[].target` resolves (after substitution, lexically) outside
/// the directories a build may write; checked before anything is written. A `hit` failure,
/// reported within [`BuildError::Failed`].
#[derive(Debug, thiserror::Error)]
#[error(
    "{origin}: {field} {value:?} resolves to {resolved}, outside {allowed}; change the spec so \
     that the target stays below it"
)]
struct TargetOutside {
    origin: String,
    field: String,
    value: String,
    resolved: PathBuf,
    allowed: String,
}

/// When to keep a build directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepBuild {
    /// Always remove it.
    Never,
    /// Keep it when the build fails (default).
    #[default]
    Error,
    /// Always keep it.
    Always,
}

/// How to build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Mount point of the store-wide view (mounted by the caller).
    pub view: PathBuf,
    /// Whether to keep build directories.
    pub keep: KeepBuild,
    /// Stream the build log to stderr as well.
    pub verbose: bool,
}

/// What `build` did.
#[derive(Debug, Clone)]
pub enum BuildOutcome {
    /// The id was registered already; nothing ran.
    Cached(ArtifactRecord),
    /// This call built and registered it.
    Built { record: ArtifactRecord, sandboxed: bool },
}

impl BuildOutcome {
    /// The artifact either way.
    pub fn record(&self) -> &ArtifactRecord {
        match self {
            BuildOutcome::Cached(r) | BuildOutcome::Built { record: r, .. } => r,
        }
    }
}

/// Path of an artifact inside the store-wide view.
pub fn view_path(view: &Path, id: &ArtifactId) -> PathBuf {
    view.join(relative_view_path(id))
}

fn relative_view_path(id: &ArtifactId) -> PathBuf {
    Path::new("artifacts").join(id.name()).join(id.hash().to_string())
}

/// Whether the process may set up a mount namespace (CAP_SYS_ADMIN, approximated by root).
fn can_sandbox() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Builds `spec` unless its artifact exists. Imports must be registered already.
pub fn build(
    store: &Store,
    spec: &BuildSpec,
    origin: &str,
    options: &BuildOptions,
) -> Result<BuildOutcome, BuildError> {
    if let Some(record) = registered(store, &spec.id)? {
        return Ok(BuildOutcome::Cached(record));
    }
    let _id_lock = lock_id(store, &spec.id)?;
    // Shared GC lock until the artifact is registered: GC cannot sweep the imports, the
    // sources found present or the objects this build commits before they are referenced.
    let _writer = store.writer_lock()?;
    // Whoever held the lock may have built it meanwhile.
    if let Some(record) = registered(store, &spec.id)? {
        return Ok(BuildOutcome::Cached(record));
    }
    let import_dirs = registered_imports(store, spec, origin)?;
    let dirs = BuildDirs::create(store, spec)?;
    let sandboxed = match run_on_build_thread(store, spec, origin, options, &dirs, &import_dirs) {
        Ok(sandboxed) => sandboxed,
        Err(source) => return Err(dirs.failure(spec, options.keep, source)),
    };
    let record = register_output(store, spec, &dirs)?;
    if options.keep != KeepBuild::Always {
        dirs.remove();
    }
    Ok(BuildOutcome::Built { record, sandboxed })
}

/// Takes the lock of `id` (`locks/<name>-<hash>.lock`), held while the returned file lives:
/// concurrent builds of one spec run once.
fn lock_id(store: &Store, id: &ArtifactId) -> Result<File, BuildError> {
    let locks = store.root().join("locks");
    crate::modes::create_dir_all(&locks, crate::modes::PRIVATE_DIR).io_context("create directory", &locks)?;
    let lock_path = locks.join(format!("{}-{}.lock", id.name(), id.hash()));
    let lock = crate::modes::open_lock(&lock_path).io_context("open", &lock_path)?;
    lock.lock().io_context("lock", &lock_path)?;
    Ok(lock)
}

/// The view-relative directories of the spec's imports, or [`BuildError::UnknownImport`] for
/// the first one the store does not have.
fn registered_imports(store: &Store, spec: &BuildSpec, origin: &str) -> Result<Vec<PathBuf>, BuildError> {
    let mut import_dirs = Vec::with_capacity(spec.imports.len());
    for import in &spec.imports {
        if registered(store, &import.id)?.is_none() {
            return Err(BuildError::UnknownImport {
                origin: origin.to_string(),
                id: import.id.clone(),
            });
        }
        import_dirs.push(relative_view_path(&import.id));
    }
    Ok(import_dirs)
}

/// The directories of one build attempt (see the module docs).
struct BuildDirs {
    /// `builds/<name>-<hash>-<pid>-<n>`: removed as a whole.
    base: PathBuf,
    /// `$BUILD`.
    build: PathBuf,
    /// What the job installs into.
    staging: PathBuf,
    /// Mount point of the sandbox's tmpfs.
    scaffold: PathBuf,
    /// `build.log`.
    log: PathBuf,
}

impl BuildDirs {
    /// Creates a fresh attempt directory with `build/build.json` and an empty staging
    /// directory.
    fn create(store: &Store, spec: &BuildSpec) -> Result<BuildDirs, BuildError> {
        let token = store.scratch().fresh_path("b");
        let token = token
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("b")
            .to_string();
        let base = store.root().join("builds").join(format!(
            "{}-{}-{}-{token}",
            spec.id.name(),
            spec.id.hash(),
            std::process::id()
        ));
        let dirs = BuildDirs {
            build: base.join("build"),
            staging: base.join("artifact"),
            scaffold: base.join("scaffold"),
            log: base.join("build.log"),
            base,
        };
        for dir in [&dirs.build, &dirs.staging] {
            fs::create_dir_all(dir).io_context("create directory", dir)?;
        }
        let spec_text = serde_json::to_vec_pretty(&spec.document).expect("specs serialise");
        fs::write(dirs.build.join("build.json"), &spec_text)
            .io_context("write", dirs.build.join("build.json"))?;
        Ok(dirs)
    }

    /// The error of a failed job, with the tail of its log; removes the attempt unless it is
    /// to be kept.
    fn failure(self, spec: &BuildSpec, keep: KeepBuild, source: JobFailure) -> BuildError {
        let tail = tail_lines(&self.log, 20);
        if keep == KeepBuild::Never {
            self.remove();
        }
        BuildError::Failed {
            id: spec.id.clone(),
            log: self.log,
            tail,
            source: Box::new(source),
        }
    }

    /// Removes the attempt directory (best effort: a leftover is only disk space).
    fn remove(&self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// Runs the job on a thread of its own (the sandbox's mount namespace belongs to that thread);
/// returns whether it ran sandboxed.
fn run_on_build_thread(
    store: &Store,
    spec: &BuildSpec,
    origin: &str,
    options: &BuildOptions,
    dirs: &BuildDirs,
    import_dirs: &[PathBuf],
) -> Result<bool, JobFailure> {
    let layout = sandbox::Layout {
        view: &options.view,
        scaffold: &dirs.scaffold,
        artifact: &relative_view_path(&spec.id),
        staging: &dirs.staging,
        imports: import_dirs,
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let sandboxed = enter_sandbox(&layout);
            let artifact_path = if sandboxed {
                view_path(&options.view, &spec.id)
            } else {
                dirs.staging.clone()
            };
            let env = environment(spec, &dirs.build, &artifact_path, &options.view);
            let hits = BuildHits {
                store,
                spec,
                origin,
                build_dir: &dirs.build,
                artifact: &artifact_path,
            };
            run(&hits, &dirs.build, &dirs.log, env, options.verbose).map(|()| sandboxed)
        })
        .join()
        .unwrap_or(Err(JobFailure::Panicked))
    })
}

/// Moves the calling thread into the build sandbox when it can (root, and the view is up);
/// false (with a warning if it was tried) when the job must write to the staging directory.
fn enter_sandbox(layout: &sandbox::Layout<'_>) -> bool {
    if !can_sandbox() || !layout.view.join("artifacts").is_dir() {
        return false;
    }
    match sandbox::enter(layout) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("no build sandbox ({e}); $ARTIFACT is the staging directory");
            false
        }
    }
}

/// Ingests the staging directory and the build log and registers the artifact (the commit
/// point of a build).
fn register_output(store: &Store, spec: &BuildSpec, dirs: &BuildDirs) -> Result<ArtifactRecord, BuildError> {
    let batch = store.objects().batch();
    let ingested = tree::ingest_tree(&batch, &dirs.staging, tree::MtimePolicy::Keep, &|_| {})
        .map_err(StoreError::from)?;
    let log_bytes = fs::read(&dirs.log).io_context("read", &dirs.log)?;
    let log_outcome = batch.put_bytes(&log_bytes).map_err(StoreError::from)?;
    batch.commit().map_err(StoreError::from)?;
    let record = ArtifactRecord {
        id: spec.id.clone(),
        version: spec.version.clone(),
        root: ingested.root,
        spec: Some(spec.document.clone()),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
        files: ingested.files,
        bytes: ingested.bytes,
        build_log: Some(log_outcome.digest),
    };
    let mut objects = ingested.objects;
    objects.push(tree::IngestedObject {
        outcome: log_outcome,
        kind: tree::ObjectKind::Blob,
    });
    store.register(&record, &objects)?;
    Ok(record)
}

fn registered(store: &Store, id: &ArtifactId) -> Result<Option<ArtifactRecord>, BuildError> {
    Ok(store.committed_artifact(id)?)
}

/// The job's whole environment: nothing from the caller leaks in.
fn environment(spec: &BuildSpec, build_dir: &Path, artifact: &Path, view: &Path) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let display = |p: &Path| p.to_string_lossy().into_owned();
    env.insert("BUILD".to_string(), display(build_dir));
    env.insert("ARTIFACT".to_string(), display(artifact));
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    env.insert("HDIST_CPU_COUNT".to_string(), cpus.to_string());
    let mut ids = Vec::new();
    let mut paths = Vec::new();
    for import in &spec.imports {
        let dir = display(&view_path(view, &import.id));
        if let Some(reference) = &import.reference {
            env.insert(format!("{reference}_DIR"), dir.clone());
            env.insert(format!("{reference}_ID"), import.id.to_string());
        }
        ids.push(import.id.to_string());
        paths.push(dir);
    }
    env.insert("HDIST_IMPORT".to_string(), ids.join(" "));
    env.insert("HDIST_IMPORT_PATHS".to_string(), paths.join(":"));
    env
}

/// Runs the job, logging to `log_path`.
fn run(
    hits: &BuildHits<'_>,
    build_dir: &Path,
    log_path: &Path,
    env: BTreeMap<String, String>,
    verbose: bool,
) -> Result<(), JobFailure> {
    let log = File::create(log_path).io_context("create build log", log_path)?;
    let mut log = io::BufWriter::new(log);
    let mut ctx = job::JobContext {
        env,
        cwd: build_dir.to_path_buf(),
        log: &mut log,
        hits,
        verbose,
    };
    let result = job::run_job(&hits.spec.commands, &mut ctx).map_err(JobFailure::from);
    let _ = log.flush();
    result
}

fn tail_lines(path: &Path, count: usize) -> String {
    let Ok(file) = File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = io::BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// The in-process helpers (`hit` nodes) a build job can call.
struct BuildHits<'a> {
    store: &'a Store,
    spec: &'a BuildSpec,
    /// Where the spec came from, for errors.
    origin: &'a str,
    /// `$BUILD` and `$ARTIFACT` as the job started (the job may `set` them to anything).
    build_dir: &'a Path,
    artifact: &'a Path,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HitFailure(String);

impl job::HitRunner for BuildHits<'_> {
    fn run_hit(
        &self,
        args: &[String],
        env: &BTreeMap<String, String>,
        cwd: &Path,
        _stdout: &mut dyn Write,
    ) -> Result<(), job::HitError> {
        match args.first().map(String::as_str) {
            Some("build-unpack-sources") => self.unpack_sources(cwd),
            Some("build-write-files") => self.write_files(env, cwd),
            Some("create-links") => create_links(args.get(1).map(Path::new), env, cwd),
            other => Err(Box::new(HitFailure(format!(
                "unknown hit command {other:?}; known: build-unpack-sources, build-write-files, create-links"
            )))),
        }
    }
}

impl BuildHits<'_> {
    /// `substituted` (the spec's `value` with its variables replaced) resolved against `cwd`,
    /// or an error unless it lies below one of `allowed` (judged lexically: a link the job
    /// made is its own business).
    fn confined(
        &self,
        field: String,
        value: &str,
        substituted: &str,
        cwd: &Path,
        allowed: &[(&str, &Path)],
    ) -> Result<PathBuf, TargetOutside> {
        // The job's cwd is absolute; the store root (hence `$BUILD`) may not be.
        let absolute =
            |path: &Path| job::normalize(&std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()));
        let resolved = absolute(&cwd.join(substituted));
        if allowed.iter().any(|(_, dir)| resolved.starts_with(absolute(dir))) {
            return Ok(resolved);
        }
        let allowed = allowed
            .iter()
            .map(|(name, dir)| format!("{name} ({})", dir.display()))
            .collect::<Vec<_>>()
            .join(" or ");
        Err(TargetOutside {
            origin: self.origin.to_string(),
            field,
            value: value.to_string(),
            resolved,
            allowed,
        })
    }

    fn unpack_sources(&self, cwd: &Path) -> Result<(), job::HitError> {
        // Every target is checked before the first source is unpacked.
        let mut dests = Vec::with_capacity(self.spec.sources.len());
        for (i, source) in self.spec.sources.iter().enumerate() {
            let field = format!("sources[{i}].target");
            let target = &source.target;
            dests.push(self.confined(field, target, target, cwd, &[("$BUILD", self.build_dir)])?);
        }
        for (source, dest) in self.spec.sources.iter().zip(dests) {
            let key: SourceKey = source
                .key
                .parse()
                .map_err(|e| HitFailure(format!("source key {:?}: {e}", source.key)))?;
            let empty = fs::read_dir(&dest)
                .map(|mut d| d.next().is_none())
                .unwrap_or(true);
            if empty {
                unpack_source(self.store, &key, &dest)?;
                continue;
            }
            // The target holds build.json already: unpack beside it, then move the entries in.
            let tmp = cwd.join(format!(".unpack-{}", key.to_string().replace(':', "-")));
            unpack_source(self.store, &key, &tmp)?;
            for entry in fs::read_dir(&tmp)? {
                let entry = entry?;
                let to = dest.join(entry.file_name());
                if to.exists() {
                    return Err(Box::new(HitFailure(format!(
                        "source {} would overwrite {}",
                        source.key,
                        to.display()
                    ))));
                }
                fs::rename(entry.path(), to)?;
            }
            fs::remove_dir(&tmp)?;
        }
        Ok(())
    }

    fn write_files(&self, env: &BTreeMap<String, String>, cwd: &Path) -> Result<(), job::HitError> {
        use std::os::unix::fs::PermissionsExt;
        // Every target is checked before the first file is written.
        let mut targets = Vec::with_capacity(self.spec.files.len());
        for (i, file) in self.spec.files.iter().enumerate() {
            let target = file
                .get("target")
                .and_then(|t| t.as_str())
                .ok_or_else(|| HitFailure(format!("files[{i}].target: missing or not a string")))?;
            let substituted = job::substitute(target, env)?;
            let allowed = [("$BUILD", self.build_dir), ("$ARTIFACT", self.artifact)];
            let field = format!("files[{i}].target");
            targets.push(self.confined(field, target, &substituted, cwd, &allowed)?);
        }
        for ((i, file), target) in self.spec.files.iter().enumerate().zip(targets) {
            let contents =
                match (file.get("text"), file.get("object")) {
                    (Some(serde_json::Value::Array(lines)), _) => {
                        let mut text = String::new();
                        for line in lines {
                            text.push_str(line.as_str().ok_or_else(|| {
                                HitFailure(format!("files[{i}].text: lines must be strings"))
                            })?);
                            text.push('\n');
                        }
                        text.into_bytes()
                    }
                    (_, Some(object)) => serde_json::to_vec_pretty(object)?,
                    _ => {
                        return Err(Box::new(HitFailure(format!(
                            "files[{i}]: needs \"text\" (a list of lines) or \"object\""
                        ))))
                    }
                };
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(&target, contents)?;
            if file.get("executable").and_then(|e| e.as_bool()) == Some(true) {
                fs::set_permissions(&target, fs::Permissions::from_mode(0o755))?;
            }
        }
        Ok(())
    }
}

/// Hashdist's `create-links RULES.json`: each rule `{"action": "symlink"|"copy",
/// "select": GLOB, "prefix": DIR, "target": DIR}` links or copies every path matching the
/// ant-style glob (`*` within a component, `**` across directories) to `target` + the path
/// with `prefix` removed.
fn create_links(
    rules: Option<&Path>,
    env: &BTreeMap<String, String>,
    cwd: &Path,
) -> Result<(), job::HitError> {
    let rules = rules.ok_or_else(|| HitFailure("create-links needs a rules file argument".into()))?;
    let rules: serde_json::Value = serde_json::from_slice(&fs::read(cwd.join(rules))?)?;
    let rules = rules
        .as_array()
        .ok_or_else(|| HitFailure("create-links: rules must be a list".into()))?;
    for (i, rule) in rules.iter().enumerate() {
        let field = |name: &str| -> Result<String, job::HitError> {
            let raw = rule
                .get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| HitFailure(format!("create-links rule {i}: {name} missing")))?;
            Ok(job::substitute(raw, env)?)
        };
        let action = field("action")?;
        let select = field("select")?;
        let prefix = PathBuf::from(field("prefix")?);
        let target = PathBuf::from(field("target")?);
        // Relative patterns are relative to the job's directory, not the process's.
        let select = cwd.join(select).to_string_lossy().into_owned();
        for path in crate::glob::expand(&select)? {
            let relative = path.strip_prefix(&prefix).map_err(|_| {
                HitFailure(format!(
                    "create-links rule {i}: {} is not under prefix {}",
                    path.display(),
                    prefix.display()
                ))
            })?;
            let dest = target.join(relative);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            match action.as_str() {
                "symlink" => std::os::unix::fs::symlink(&path, &dest)?,
                "copy" => {
                    fs::copy(&path, &dest)?;
                }
                other => {
                    return Err(Box::new(HitFailure(format!(
                        "create-links rule {i}: unknown action {other:?}"
                    ))))
                }
            }
        }
    }
    Ok(())
}

/// The blob of a registered artifact's build log, if it was built by hdist.
pub fn build_log(store: &Store, record: &ArtifactRecord) -> Result<Option<Vec<u8>>, BuildError> {
    let Some(document) = store.artifact_document(&record.id)? else {
        return Ok(None);
    };
    match document.build_log {
        Some(digest) => Ok(Some(store.blobs().read(&digest).map_err(StoreError::from)?)),
        None => Ok(None),
    }
}
