//! Finding and removing hdist mounts (including dead ones whose daemon was killed), and the
//! on-demand store-wide view (`<store>/view`, mounted like autofs mounts /cvmfs: the first
//! command that needs it mounts it, and it stays up for later commands).
//!
//! /proc/self/mountinfo says what is mounted where; it cannot say which store a mount serves
//! or which process serves it. Each mount therefore registers itself in a small per-user
//! registry (one file per mount point under /run/hdist/mounts for root, else
//! `$XDG_RUNTIME_DIR/hdist/mounts` or `$TMPDIR/hdist-<uid>/mounts`), removed when the mount
//! ends. Entries count only while mountinfo shows the same mount, so a stale file never
//! invents a mount.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hdist_store::{Digest, IoContext, IoError};

use crate::FsError;

/// One hdist mount from /proc/self/mountinfo, with what its daemon registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount point.
    pub mountpoint: PathBuf,
    /// What is mounted (`hdist:<profile or artifact or all>`).
    pub source: String,
    /// The store directory (or the remote URLs) the mount serves, if registered.
    pub store: Option<String>,
    /// The process serving the mount, if registered.
    pub pid: Option<u32>,
}

impl MountEntry {
    /// What the mount shows, in words: `profile sci`, `artifact zlib/…`, `the whole store`.
    pub fn what(&self) -> String {
        match self.source.strip_prefix("hdist:") {
            Some("all") => "the whole store".to_string(),
            Some(what) if what.parse::<hdist_store::ArtifactId>().is_ok() => format!("artifact {what}"),
            Some(what) => format!("profile {what}"),
            None => self.source.clone(),
        }
    }

    /// Whether the serving process still runs (false when unknown).
    pub fn daemon_alive(&self) -> bool {
        self.pid
            .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists())
    }

    /// `hdist profile sci of store /s, daemon PID 12` (or `… not running`).
    pub fn describe(&self) -> String {
        let store = self.store.as_deref().unwrap_or("unknown");
        let daemon = match (self.pid, self.daemon_alive()) {
            (Some(pid), true) => format!("daemon PID {pid}"),
            (Some(pid), false) => format!("daemon PID {pid} is gone: a dead mount"),
            (None, _) => "daemon unknown".to_string(),
        };
        format!("hdist {} of store {store}, {daemon}", self.what())
    }
}

/// One line of /proc/self/mountinfo: any mount, hdist's or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Mount point.
    pub mountpoint: PathBuf,
    /// Filesystem type (`fuse.hdist`, `tmpfs`, …).
    pub fstype: String,
    /// Mount source as the kernel reports it.
    pub source: String,
}

impl MountInfo {
    fn is_hdist(&self) -> bool {
        self.fstype.starts_with("fuse") && self.source.starts_with("hdist:")
    }
}

/// Undoes the octal escapes of /proc/self/mountinfo (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount of this mount namespace.
fn mountinfo() -> io::Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.lines() {
        // Fields: id parent dev root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split(' ').nth(4).map(unescape) else {
            continue;
        };
        let mut right = right.split(' ');
        out.push(MountInfo {
            mountpoint: PathBuf::from(mountpoint),
            fstype: right.next().unwrap_or("").to_string(),
            source: right.next().map(unescape).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Every mount whose source starts with `hdist:`, with its registered store and daemon.
pub fn list_mounts() -> io::Result<Vec<MountEntry>> {
    Ok(mountinfo()?
        .into_iter()
        .filter(MountInfo::is_hdist)
        .map(|m| {
            let registered = read_registration(&m.mountpoint).filter(|r| r.source == m.source);
            MountEntry {
                store: registered.as_ref().map(|r| r.store.clone()),
                pid: registered.map(|r| r.pid),
                mountpoint: m.mountpoint,
                source: m.source,
            }
        })
        .collect())
}

/// The topmost mount on `path` (hdist's or not), if `path` is a mount point.
pub fn mount_at(path: &Path) -> io::Result<Option<MountInfo>> {
    let path = resolve(path);
    Ok(mountinfo()?.into_iter().rfind(|m| m.mountpoint == path))
}

/// `path` made absolute with symlinks resolved, as mountinfo shows it. A dead FUSE mount
/// cannot be resolved itself (ENOTCONN), so then only its parent is.
pub(crate) fn resolve(path: &Path) -> PathBuf {
    if let Ok(path) = std::fs::canonicalize(path) {
        return path;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|p| p.join(name))
            .unwrap_or(absolute),
        _ => absolute,
    }
}

/// Why `path` cannot be mounted on because something is mounted there already, if it is.
pub(crate) fn already_mounted(path: &Path) -> Option<String> {
    let info = mount_at(path).ok()??;
    if !info.is_hdist() {
        return Some(format!(
            "it is already mounted (a {} mount of {}, per /proc/self/mountinfo); choose another directory",
            info.fstype, info.source
        ));
    }
    let entry = list_mounts()
        .ok()?
        .into_iter()
        .rfind(|m| m.mountpoint == info.mountpoint)?;
    Some(format!(
        "it is already mounted ({}); `hdist umount {}` first or choose another directory",
        entry.describe(),
        path.display()
    ))
}

/// The store-wide view's mount point for the store at `store_root`.
pub fn store_view_dir(store_root: &Path) -> PathBuf {
    store_root.join("view")
}

/// How long a started view daemon has to make the view answer.
const VIEW_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes sure the store-wide view of the store at `store_root` is mounted and answering;
/// returns its mount point (canonical). A live mount is reused and a dead one (its daemon
/// gone) unmounted first. Otherwise `start` is called with the mount point to start the
/// daemon that serves `hdist mount --all` (a process of the caller's program, which this
/// library cannot start itself); then this waits until the view answers.
pub fn ensure_store_view<E: From<FsError>>(
    store_root: &Path,
    start: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<PathBuf, E> {
    let dir = store_view_dir(store_root);
    std::fs::create_dir_all(&dir)
        .io_context("create directory", &dir)
        .map_err(FsError::from)?;
    let canonical = std::fs::canonicalize(&dir)
        .io_context("resolve", &dir)
        .map_err(FsError::from)?;
    let mounted = list_mounts()
        .io_context("list the mounts (/proc/self/mountinfo) to find", &dir)
        .map_err(FsError::from)?
        .into_iter()
        .any(|m| m.mountpoint == canonical);
    if mounted {
        if view_answers(&canonical) {
            return Ok(canonical);
        }
        // The daemon died: clear the dead mount and mount again.
        unmount(&canonical)?;
    }
    start(&canonical)?;
    wait_for_view(&canonical)?;
    Ok(canonical)
}

/// Whether the store-wide view at `mountpoint` answers (its `artifacts` directory is there).
fn view_answers(mountpoint: &Path) -> bool {
    std::fs::metadata(mountpoint.join("artifacts")).is_ok()
}

/// Waits up to [`VIEW_START_TIMEOUT`] for the view at `mountpoint` to answer.
fn wait_for_view(mountpoint: &Path) -> Result<(), FsError> {
    let deadline = Instant::now() + VIEW_START_TIMEOUT;
    while !view_answers(mountpoint) {
        if Instant::now() >= deadline {
            return Err(FsError::ViewNotUp {
                path: mountpoint.to_path_buf(),
                waited: VIEW_START_TIMEOUT,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What the registry holds for one mount.
#[derive(Debug)]
struct Registration {
    source: String,
    store: String,
    pid: u32,
}

fn registry_dir() -> PathBuf {
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    // Root's mounts also come from mount(8) and systemd units, without a session's
    // environment: one fixed place.
    if uid == 0 && Path::new("/run").is_dir() {
        return PathBuf::from("/run/hdist/mounts");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("hdist").join("mounts"),
        None => std::env::temp_dir().join(format!("hdist-{uid}")).join("mounts"),
    }
}

fn registry_file(mountpoint: &Path) -> PathBuf {
    let digest = Digest::of(mountpoint.as_os_str().as_encoded_bytes());
    registry_dir().join(digest.to_string())
}

/// Records that this process serves `source` from `store` on `mountpoint` (resolved).
/// Best effort: a mount without an entry works, `hdist mounts` just cannot name its store.
pub(crate) fn register(mountpoint: &Path, source: &str, store: &str) {
    let mountpoint = resolve(mountpoint);
    let file = registry_file(&mountpoint);
    let text = format!(
        "pid {}\nsource {source}\nstore {store}\nmountpoint {}\n",
        std::process::id(),
        mountpoint.display()
    );
    let written = (|| -> io::Result<()> {
        let dir = registry_dir();
        std::fs::create_dir_all(&dir)?;
        // Another user's directory in a shared /tmp must not be trusted.
        use std::os::unix::fs::MetadataExt;
        // SAFETY: getuid cannot fail.
        if std::fs::metadata(&dir)?.uid() != unsafe { libc::getuid() } {
            return Err(io::Error::other("owned by another user"));
        }
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &file)
    })();
    if let Err(e) = written {
        log::warn!("cannot register the mount in {}: {e}", registry_dir().display());
    }
}

/// Forgets the registration of `mountpoint` (resolved).
pub(crate) fn unregister(mountpoint: &Path) {
    let _ = std::fs::remove_file(registry_file(&resolve(mountpoint)));
}

fn read_registration(mountpoint: &Path) -> Option<Registration> {
    let text = std::fs::read_to_string(registry_file(mountpoint)).ok()?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(str::to_string)
    };
    Some(Registration {
        source: field("source")?,
        store: field("store")?,
        pid: field("pid")?.parse().ok()?,
    })
}

/// Unmounts `path`, including a dead mount whose daemon was killed. As root this is
/// umount(2) (lazily if busy); otherwise fusermount3.
pub fn unmount(path: &Path) -> Result<(), FsError> {
    let err = |source| FsError::from(IoError::new("unmount", path.to_path_buf(), source));
    let not_ours = |reason: String| FsError::NotAnHdistMount {
        path: path.to_path_buf(),
        reason,
    };
    match mount_at(path).map_err(err)? {
        None => return Err(not_ours("it is not mounted".to_string())),
        Some(info) if !info.is_hdist() => {
            return Err(not_ours(format!(
                "it is a {} mount of {} (per /proc/self/mountinfo), not an hdist mount; use umount(8) for it",
                info.fstype, info.source
            )))
        }
        Some(_) => {}
    }
    let result = unmount_hdist(path);
    if result.is_ok() {
        // A killed daemon could not unregister itself.
        unregister(path);
    }
    result
}

fn unmount_hdist(path: &Path) -> Result<(), FsError> {
    let err = |source| FsError::from(IoError::new("unmount", path.to_path_buf(), source));
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| err(io::Error::from(io::ErrorKind::InvalidInput)))?;
        // SAFETY: c_path is a valid NUL-terminated string for the duration of the call.
        if unsafe { libc::umount2(c_path.as_ptr(), 0) } == 0 {
            return Ok(());
        }
        let first = io::Error::last_os_error();
        if first.raw_os_error() == Some(libc::EINVAL) {
            return Err(FsError::NotAnHdistMount {
                path: path.to_path_buf(),
                reason: "it is not mounted".to_string(),
            });
        }
        // SAFETY: as above.
        if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        return Err(err(first));
    }
    for args in [&["-u"][..], &["-u", "-z"][..]] {
        let status = Command::new("fusermount3")
            .args(args)
            .arg(path)
            .status()
            .map_err(err)?;
        if status.success() {
            return Ok(());
        }
    }
    Err(err(io::Error::other("fusermount3 -u failed")))
}
