//! Per-process scratch space inside the store, and the durable-write primitives built on it.
//!
//! ```text
//! <store>/tmp/
//! ├── 4f1c…e2.lock    exclusive flock held for as long as the owning process lives
//! └── 4f1c…e2/        that process's temp files (objects being written, builds, exports)
//!     └── 0/ … 7/     one subdirectory per worker thread: file creation takes the directory's
//!                     lock, so parallel writers in one directory would wait for each other
//! ```
//!
//! A process killed with `-9` leaves its directory behind, but the kernel drops its lock; the
//! next [`Scratch::create`] on the same store takes the lock of every such orphan and deletes
//! it. Nothing outside `tmp/` is ever half-written: files reach their final name by `rename`
//! only after their bytes are durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::modes;

/// Subdirectories of a scratch directory (see the module docs).
const LANES: u64 = 8;

/// A process's private temp directory in the store, removed when dropped.
#[derive(Debug)]
pub struct Scratch {
    dir: PathBuf,
    lock_path: PathBuf,
    // Holding the file keeps the flock that marks this directory as alive.
    _lock: File,
    counter: AtomicU64,
}

impl Scratch {
    /// Creates a fresh scratch directory under `tmp_root` and sweeps orphans of dead processes.
    pub fn create(tmp_root: &Path) -> io::Result<Scratch> {
        modes::create_dir_all(tmp_root, modes::PRIVATE_DIR)?;
        sweep_orphans(tmp_root);
        let token = random_token();
        let lock_path = tmp_root.join(format!("{token}.lock"));
        // Locked under a name the sweep ignores, then renamed: a sweep running at the same
        // moment never sees this lock file unlocked.
        let pending = tmp_root.join(format!("{token}.locking"));
        let lock = modes::create_new_lock(&pending)?;
        lock.try_lock().map_err(io::Error::other)?;
        fs::rename(&pending, &lock_path)?;
        let dir = tmp_root.join(&token);
        modes::create_dir(&dir, modes::PRIVATE_DIR)?;
        for lane in 0..LANES {
            modes::create_dir(&dir.join(lane.to_string()), modes::PRIVATE_DIR)?;
        }
        Ok(Scratch {
            dir,
            lock_path,
            _lock: lock,
            counter: AtomicU64::new(0),
        })
    }

    /// The directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A new path inside the scratch directory that nothing else uses (the file is not
    /// created). Paths for different threads land in different subdirectories.
    pub fn fresh_path(&self, hint: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let lane = match rayon::current_thread_index() {
            Some(index) => index as u64 % LANES,
            None => {
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                std::hash::Hash::hash(&std::thread::current().id(), &mut hasher);
                std::hash::Hasher::finish(&hasher) % LANES
            }
        };
        self.dir.join(lane.to_string()).join(format!("{n}-{hint}"))
    }

    /// Writes `bytes` to `dest` durably: temp file, fsync, rename, fsync of the parent.
    pub fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let tmp = self.fresh_path("atomic");
        let mut file = modes::create_file(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        if let Some(parent) = dest.parent() {
            modes::create_dir_all(parent, modes::SHARED_DIR)?;
        }
        crate::crashpoint::hit("atomic.synced");
        fs::rename(&tmp, dest)?;
        fsync_dir(dest.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(&self.lock_path);
    }
}

/// Removes scratch directories whose owner died (their lock is free).
fn sweep_orphans(tmp_root: &Path) {
    let Ok(entries) = fs::read_dir(tmp_root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "lock") {
            continue;
        }
        let Ok(lock) = OpenOptions::new().write(true).open(&path) else {
            continue;
        };
        if lock.try_lock().is_ok() {
            let dir = path.with_extension("");
            let _ = fs::remove_dir_all(&dir);
            // Removing the lock file last: a crash in between leaves a lock without a
            // directory, which the next sweep removes.
            let _ = fs::remove_file(&path);
            log::debug!("removed scratch space of a dead process: {}", dir.display());
        }
    }
}

pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 12];
    // getrandom(2) never fails for 12 bytes once the pool is initialised; fall back to the
    // pid and time, which is unique enough for a temp directory name.
    // SAFETY: the buffer is valid for its length.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if got != bytes.len() as isize {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{}-{nanos}", std::process::id());
    }
    hex::encode(bytes)
}

/// fsyncs a directory so that renames into it are durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Flushes every dirty page of the file system holding `path` (one call instead of an fsync
/// per file when many files were written).
pub fn syncfs(path: &Path) -> io::Result<()> {
    let dir = File::open(path)?;
    // SAFETY: the descriptor is open for the duration of the call.
    let rc = unsafe { libc::syncfs(dir.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
