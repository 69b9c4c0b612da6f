//! `hdist mount`, `hdist umount`, `hdist mounts`.
//!
//! `mount` daemonises by re-running itself with `--foreground` in a new process group; the
//! child prints `ready` on its stdout once the kernel handshake is done, so the parent returns
//! only when the mount answers. The child's log goes to `<store>/logs/`.

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

use crate::Globals;

#[derive(Debug, Args)]
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
    /// Internal: print `ready` on stdout once mounted (used by the daemonising parent).
    #[arg(long, hide = true)]
    notify_ready: bool,
}

#[derive(Debug, Args)]
pub struct UmountArgs {
    /// Mount point.
    dir: PathBuf,
}

pub fn mount(globals: &Globals, args: &MountArgs) -> Result<ExitCode> {
    let (target, dir) = match (args.all, args.positional.as_slice()) {
        (true, [dir]) => (None, PathBuf::from(dir)),
        (false, [target, dir]) => (Some(target.to_string_lossy().into_owned()), PathBuf::from(dir)),
        (true, _) => bail!("with --all give only the mount point: hdist mount --all DIR"),
        (false, _) => bail!("give what to mount and where: hdist mount PROFILE|ARTIFACT DIR"),
    };
    let store = Arc::new(globals.open_store()?);
    let catalog = LocalCatalog::new(store.clone());
    let root = match &target {
        None => ViewRoot::All,
        Some(name) => match catalog.profile(name)? {
            Some(_) => ViewRoot::Profile(name.clone()),
            None => match store.find_artifact(name) {
                Ok(record) => ViewRoot::Artifact(record.id),
                Err(hdist_store::StoreError::UnknownArtifact { .. }) => bail!(
                    "no profile or artifact {name:?} in the store at {}; `hdist profile list` and `hdist ls` list them",
                    store.root().display()
                ),
                Err(e) => return Err(e.into()),
            },
        },
    };
    hdist_fs::check_mountpoint(&dir)?;
    if !args.foreground {
        return daemonise(globals, store.root(), args, &dir);
    }
    let fsname = match &root {
        ViewRoot::All => "hdist:all".to_string(),
        ViewRoot::Profile(name) => format!("hdist:{name}"),
        ViewRoot::Artifact(id) => format!("hdist:{id}"),
    };
    let blobs: Arc<dyn BlobService> = store.blobs().clone();
    let view = View::new(blobs, Arc::new(catalog), &root)?;
    let options = MountOptions {
        allow_other: args.allow_other,
        threads: 2 * std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2),
        fsname,
    };
    // Block the termination signals before the workers start so that only the signal thread
    // receives them; it unmounts, which ends the session cleanly.
    let signals = block_termination_signals();
    let mounted = hdist_fs::mount(view, &dir, &options)?;
    spawn_signal_thread(signals, dir.clone());
    if args.notify_ready {
        println!("ready");
        redirect_stdout_to_null();
    }
    log::info!("serving {} on {}", options.fsname, dir.display());
    mounted.wait()?;
    Ok(ExitCode::SUCCESS)
}

fn daemonise(globals: &Globals, store: &Path, args: &MountArgs, dir: &Path) -> Result<ExitCode> {
    let logs = store.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let log_path = logs.join(format!(
        "mount-{}.log",
        hdist_store::hash::Digest::of(dir.as_os_str().as_encoded_bytes()).short()
    ));
    let log =
        std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the hdist executable")?;
    let mut command = Command::new(exe);
    command
        .arg("--store")
        .arg(store)
        .arg("mount")
        .arg("--foreground")
        .arg("--notify-ready");
    if args.all {
        command.arg("--all");
    }
    if args.allow_other {
        command.arg("--allow-other");
    }
    if globals.quiet {
        command.arg("-q");
    }
    for (i, arg) in args.positional.iter().enumerate() {
        // The last positional is the mount point: pass it resolved, the child's cwd may differ.
        if i + 1 == args.positional.len() {
            command.arg(&dir);
        } else {
            command.arg(arg);
        }
    }
    let mut child = command
        .current_dir("/")
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
            .map(|m| serde_json::json!({"mountpoint": m.mountpoint, "source": m.source}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for m in mounts {
            println!("{}\t{}", m.mountpoint.display(), m.source);
        }
    }
    Ok(ExitCode::SUCCESS)
}
