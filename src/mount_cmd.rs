//! `hdist mount`, `hdist umount`, `hdist mounts`.
//!
//! `mount` daemonises by re-running its own command line in a new process group with
//! [`DAEMON_ENV`] set, which makes it serve in the foreground; the child prints `ready` on its
//! stdout once the kernel handshake is done, so the parent returns only when the mount
//! answers. The child's log goes to `<store>/logs/`. A new mount flag is declared once, in
//! [`MountArgs`]: the daemon sees the same command line.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use hdist_fs::{MountOptions, View, ViewRoot};
use hdist_store::blob::BlobService;
use hdist_store::catalog::{Catalog, LocalCatalog};
use hdist_store::remote::{
    CacheOptions, CachedBlobService, HttpBlobService, HttpOptions, PublicKey, RecordingBlobService,
    RemoteCatalog,
};
use hdist_store::suggest::DidYouMean;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::Globals;

/// Set (to `1`) for the daemon `mount` starts: it serves in the foreground, reports `ready` on
/// stdout once mounted, and then leaves the caller's working directory.
const DAEMON_ENV: &str = "HDIST_MOUNT_DAEMON";

#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// PROFILE or ARTIFACT_ID, then DIR (with --all: only DIR).
    #[arg(required = true, num_args = 1..=2, value_name = "PROFILE|ARTIFACT DIR")]
    positional: Vec<OsString>,
    /// Show the whole store: DIR/artifacts/<name>/<hash>/ and DIR/profiles/<name>/.
    #[arg(long)]
    all: bool,
    /// Serve in this process instead of daemonising.
    #[arg(long)]
    foreground: bool,
    /// Let other users see the mount (non-root needs user_allow_other in /etc/fuse.conf).
    #[arg(long)]
    allow_other: bool,
    /// Mount from a published store at this URL instead of the local store (repeat for
    /// mirrors, tried in order with fail-over).
    #[arg(long, value_name = "URL")]
    remote: Vec<String>,
    /// The publisher's public key (`ed25519:…` from `hdist key show`, or a file holding it);
    /// required with --remote.
    #[arg(long, value_name = "PUBKEY")]
    key: Option<String>,
    /// Local cache of fetched objects, shareable by the mounts of a node (default:
    /// $XDG_CACHE_HOME/hdist/remote or ~/.cache/hdist/remote).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Bound on the cache (K, M, G, T suffixes), least recently used evicted first.
    #[arg(long, value_name = "SIZE", default_value = "4G")]
    cache_size: String,
    /// Seconds between checks for a newly published manifest (0: never).
    #[arg(long, value_name = "SECS", default_value_t = 2)]
    poll: u64,
    /// Seconds one request may take at one mirror, in total: connection, headers, the whole
    /// body and retries (a read of an uncached file fails within this × mirrors).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    timeout: u64,
    /// Record the files opened through this mount and write them to FILE at unmount (a
    /// trace, as `hdist trace record` writes).
    #[arg(long, value_name = "FILE")]
    record_trace: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UmountArgs {
    /// Mount point.
    dir: PathBuf,
}

pub fn mount(globals: &Globals, args: &MountArgs) -> Result<ExitCode> {
    let daemon_args;
    let args = if is_daemon() {
        daemon_args = as_daemon(args)?;
        &daemon_args
    } else {
        args
    };
    let (target, dir) = match (args.all, args.positional.as_slice()) {
        (true, [dir]) => (None, PathBuf::from(dir)),
        (false, [target, dir]) => (Some(target.to_string_lossy().into_owned()), PathBuf::from(dir)),
        (true, _) => bail!("with --all give only the mount point: hdist mount --all DIR"),
        (false, _) => bail!("give what to mount and where: hdist mount PROFILE|ARTIFACT DIR"),
    };
    if !args.remote.is_empty() {
        return mount_remote(globals, args, target, dir);
    }
    let store = Arc::new(globals.open_store()?);
    let catalog = LocalCatalog::new(store.clone());
    let root = match &target {
        None => ViewRoot::All,
        Some(name) => match catalog.profile(name)? {
            Some(_) => ViewRoot::Profile(name.clone()),
            None => match store.find_artifact(name) {
                Ok(record) => ViewRoot::Artifact(record.id),
                Err(hdist_store::StoreError::UnknownArtifact { .. }) => {
                    let profiles = store.profiles().names()?;
                    let artifacts = store.artifacts()?;
                    let suggestion = DidYouMean::closest(
                        name,
                        profiles
                            .iter()
                            .map(String::as_str)
                            .chain(artifacts.iter().map(|r| r.id.name())),
                    );
                    bail!(
                        "no profile or artifact {name:?} in the store at {}{suggestion} (`hdist profile list` and `hdist ls` list them)",
                        store.root().display()
                    )
                }
                Err(e) => return Err(e.into()),
            },
        },
    };
    hdist_fs::check_mountpoint(&dir)?;
    if !args.foreground {
        return daemonise(globals, &store.root().join("logs"), &dir);
    }
    let blobs: Arc<dyn BlobService> = store.blobs().clone();
    let origin = store.root().display().to_string();
    serve(args, blobs, Arc::new(catalog), &root, &dir, &origin)
}

/// `mount --remote`: the same view over HTTP, a local cache and the signed manifest.
fn mount_remote(
    globals: &Globals,
    args: &MountArgs,
    target: Option<String>,
    dir: PathBuf,
) -> Result<ExitCode> {
    let key_arg = args
        .key
        .as_deref()
        .context("--remote needs --key PUBKEY (the publisher's `hdist key show`)")?;
    let key = PublicKey::from_arg(key_arg)?;
    let cache_dir = match &args.cache {
        Some(dir) => dir.clone(),
        None => default_cache_dir()?,
    };
    let limit = parse_size(&args.cache_size)?;
    hdist_fs::check_mountpoint(&dir)?;
    if !args.foreground {
        std::fs::create_dir_all(&cache_dir)
            .with_context(|| format!("cannot create the cache {}", cache_dir.display()))?;
        let cache_dir = std::fs::canonicalize(&cache_dir)?;
        return daemonise(globals, &cache_dir.join("logs"), &dir);
    }
    let http = Arc::new(HttpBlobService::new(
        &args.remote,
        HttpOptions {
            timeout: Duration::from_secs(args.timeout.max(1)),
            ..HttpOptions::default()
        },
    )?);
    let upstream: Arc<dyn BlobService> = http.clone();
    let cached = Arc::new(CachedBlobService::open(
        upstream,
        &cache_dir,
        CacheOptions { limit },
    )?);
    let poll = (args.poll > 0).then(|| Duration::from_secs(args.poll));
    let catalog = RemoteCatalog::open(http.clone(), cached.clone(), key, poll)?;
    let root = match &target {
        None => ViewRoot::All,
        Some(name) => match catalog.profile(name)? {
            Some(_) => ViewRoot::Profile(name.clone()),
            None => match name.parse::<hdist_store::ArtifactId>() {
                Ok(id) if catalog.artifact_root(&id)?.is_some() => ViewRoot::Artifact(id),
                _ => bail!(
                    "no profile or artifact {name:?} is published at {}",
                    args.remote.join(", ")
                ),
            },
        },
    };
    let blobs: Arc<dyn BlobService> = cached.clone();
    let result = serve(args, blobs, catalog, &root, &dir, &args.remote.join(" "));
    log::info!(
        "remote: {} requests, {} bytes received, {} failures; {} objects fetched into {}",
        http.stats().requests.load(Ordering::Relaxed),
        http.stats().bytes.load(Ordering::Relaxed),
        http.stats().failures.load(Ordering::Relaxed),
        cached.fetched(),
        cache_dir.display()
    );
    result
}

/// Whether this process is the daemon a `mount` started.
fn is_daemon() -> bool {
    std::env::var_os(DAEMON_ENV).is_some_and(|v| v == "1")
}

/// The daemon's view of its command line: in the foreground, with the paths it keeps using
/// resolved, since it leaves the working directory once mounted (the parent checked that the
/// mount point exists and created the cache).
fn as_daemon(args: &MountArgs) -> Result<MountArgs> {
    let mut args = args.clone();
    args.foreground = true;
    if let Some(dir) = args.positional.last_mut() {
        let resolved = std::fs::canonicalize(&*dir)
            .with_context(|| format!("cannot resolve {}", PathBuf::from(&*dir).display()))?;
        *dir = resolved.into_os_string();
    }
    if !args.remote.is_empty() {
        let cache = match &args.cache {
            Some(dir) => dir.clone(),
            None => default_cache_dir()?,
        };
        args.cache = Some(
            std::fs::canonicalize(&cache)
                .with_context(|| format!("cannot resolve the cache {}", cache.display()))?,
        );
    }
    if let Some(trace) = &args.record_trace {
        args.record_trace = Some(std::path::absolute(trace).unwrap_or_else(|_| trace.clone()));
    }
    Ok(args)
}

fn default_cache_dir() -> Result<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .map(|dir| dir.join("hdist").join("remote"))
        .context("no --cache given and neither $XDG_CACHE_HOME nor $HOME is set")
}

/// `4G`, `512M`, `100000` (bytes).
fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let (number, shift) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => bail!("size {text:?}: unknown suffix {c:?}; use K, M, G or T"),
            };
            (&text[..i], shift)
        }
        _ => (text, 0),
    };
    let n: u64 = number
        .trim()
        .parse()
        .with_context(|| format!("size {text:?} is not a number with an optional K/M/G/T suffix"))?;
    n.checked_shl(shift)
        .filter(|v| v >> shift == n)
        .with_context(|| format!("size {text:?} is too large"))
}

/// Mounts `root` in this process and serves until unmounted.
fn serve(
    args: &MountArgs,
    blobs: Arc<dyn BlobService>,
    catalog: Arc<dyn Catalog>,
    root: &ViewRoot,
    dir: &Path,
    origin: &str,
) -> Result<ExitCode> {
    let fsname = match root {
        ViewRoot::All => "hdist:all".to_string(),
        ViewRoot::Profile(name) => format!("hdist:{name}"),
        ViewRoot::Artifact(id) => format!("hdist:{id}"),
    };
    let recording = args
        .record_trace
        .as_ref()
        .map(|_| Arc::new(RecordingBlobService::new(blobs.clone())));
    let blobs: Arc<dyn BlobService> = match &recording {
        Some(r) => r.clone(),
        None => blobs,
    };
    let view = View::new(blobs, catalog, root)?;
    let options = MountOptions {
        allow_other: args.allow_other,
        threads: 2 * std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2),
        fsname,
        store: origin.to_string(),
    };
    // Block the termination signals before the workers start so that only the signal thread
    // receives them; it unmounts, which ends the session cleanly.
    let signals = block_termination_signals();
    let mounted = hdist_fs::mount(view, dir, &options)?;
    spawn_signal_thread(signals, dir.to_path_buf());
    if is_daemon() {
        // Not to keep the caller's working directory (and its file system) busy.
        std::env::set_current_dir("/").context("cannot change to /")?;
        println!("ready");
        redirect_stdout_to_null();
    }
    log::info!("serving {} on {}", options.fsname, dir.display());
    mounted.wait()?;
    if let (Some(recording), Some(out)) = (recording, &args.record_trace) {
        hdist_store::remote::write_trace(out, &recording.touched())?;
        log::info!(
            "trace of {} files written to {}",
            recording.touched().len(),
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Starts the daemon (see the module docs) with its log in `logs`, and returns once it has
/// mounted `dir` (or failed, with its log as the error).
fn daemonise(globals: &Globals, logs: &Path, dir: &Path) -> Result<ExitCode> {
    // Inside the store (or the remote cache): its modes, not the umask's.
    hdist_store::modes::create_dir_all(logs, hdist_store::modes::SHARED_DIR)
        .with_context(|| format!("cannot create {}", logs.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let log_path = logs.join(format!(
        "mount-{}.log",
        hdist_store::hash::Digest::of(dir.as_os_str().as_encoded_bytes()).short()
    ));
    let log = hdist_store::modes::create_file(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the hdist executable")?;
    // The same command line (so every flag reaches the daemon without being listed here), in
    // the same working directory (so relative paths mean the same).
    let mut command = Command::new(exe);
    command.args(globals.argv.iter().skip(1)).env(DAEMON_ENV, "1");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the mount daemon")?;
    let stdout = child.stdout.take().context("no pipe to the mount daemon")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).ok();
    if line.trim() == "ready" {
        return Ok(ExitCode::SUCCESS);
    }
    let status = child.wait().ok();
    let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
    bail!(
        "the mount daemon failed ({}):\n{}",
        status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown status".into()),
        log_text.trim_end()
    )
}

fn block_termination_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialise it, and
    // pthread_sigmask only changes this thread's mask (inherited by threads spawned later).
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn spawn_signal_thread(set: libc::sigset_t, dir: PathBuf) {
    std::thread::spawn(move || {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is an initialised signal set; sigwait writes the signal number.
        let rc = unsafe { libc::sigwait(&set, &mut signal) };
        if rc == 0 {
            log::info!("signal {signal}: unmounting {}", dir.display());
            if let Err(e) = hdist_fs::unmount(&dir) {
                log::error!("{e}");
            }
        }
    });
}

fn redirect_stdout_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are valid; dup2 replaces fd 1 atomically.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
}

pub fn umount(args: &UmountArgs) -> Result<ExitCode> {
    hdist_fs::unmount(&args.dir)?;
    Ok(ExitCode::SUCCESS)
}

pub fn mounts(json: bool) -> Result<ExitCode> {
    let mounts = hdist_fs::list_mounts().context("cannot read /proc/self/mountinfo")?;
    if json {
        let rows: Vec<_> = mounts
            .iter()
            .map(|m| {
                serde_json::json!({
                    "mountpoint": m.mountpoint,
                    "source": m.source,
                    "store": m.store,
                    "pid": m.pid,
                    "daemon_alive": m.daemon_alive(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        // Mounts of every store are listed: the store column tells them apart.
        for m in mounts {
            let daemon = match (m.pid, m.daemon_alive()) {
                (Some(pid), true) => format!("pid {pid}"),
                (Some(pid), false) => format!("pid {pid} (dead: hdist umount it)"),
                (None, _) => "pid ?".to_string(),
            };
            println!(
                "{}\t{}\tstore {}\t{daemon}",
                m.mountpoint.display(),
                m.source,
                m.store.as_deref().unwrap_or("?")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
