//! hdist-fs: profiles and artifacts as read-only FUSE directories.
//!
//! The filesystem reads only through `hdist_store`'s [`BlobService`] and [`Catalog`] traits, so
//! the same code serves a local store and a remote one. What a mount shows:
//!
//! ```text
//! hdist mount PROFILE DIR          hdist mount --all DIR
//! DIR/                             DIR/
//! ├── bin/   (union of the         ├── artifacts/<name>/<hash>/…   every artifact
//! ├── lib/    profile's artifacts, └── profiles/<name>/…           every profile's union
//! └── …       first listed wins)
//! ```
//!
//! [`BlobService`]: hdist_store::blob::BlobService
//! [`Catalog`]: hdist_store::catalog::Catalog

mod fuse;
mod mounts;
pub mod view;

pub use fuse::HdistFs;
pub use mounts::{ensure_store_view, list_mounts, mount_at, store_view_dir, unmount, MountEntry, MountInfo};
pub use view::{View, ViewRoot};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fuser::{BackgroundSession, Config, Errno, INodeNo, MountOption, Notifier, Session, SessionACL};
use hdist_store::{IoContext, IoError, StoreError};

/// Errors of the filesystem layer.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The store failed (missing or corrupt object, unreadable metadata).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The thing to mount does not exist.
    #[error("no {0} in the store; `hdist profile list` and `hdist ls` list what exists")]
    UnknownRoot(String),
    /// An inode number the view never handed out.
    #[error("no inode {0}")]
    NoSuchInode(u64),
    /// A directory operation on a non-directory.
    #[error("inode {0} is not a directory")]
    NotADirectory(u64),
    /// The mount point is unusable.
    #[error("cannot mount on {path}: {reason}")]
    BadMountpoint { path: PathBuf, reason: String },
    /// `hdist umount` of something that is not an hdist mount.
    #[error("cannot unmount {path}: {reason}; `hdist mounts` lists the hdist mounts")]
    NotAnHdistMount { path: PathBuf, reason: String },
    /// A started store-wide view did not answer in time.
    #[error(
        "the store-wide view at {path} did not answer within {waited:?} of starting its daemon; \
         see the mount logs in the store's logs/ directory"
    )]
    ViewNotUp {
        path: PathBuf,
        waited: std::time::Duration,
    },
    /// The kernel refused the mount or unmount.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// The single place where errors become errnos.
pub(crate) fn errno(error: &FsError) -> Errno {
    match error {
        FsError::NoSuchInode(_) | FsError::UnknownRoot(_) => Errno::ENOENT,
        FsError::NotADirectory(_) => Errno::ENOTDIR,
        FsError::Store(e) => {
            log::error!("store error: {e}");
            Errno::EIO
        }
        FsError::BadMountpoint { .. }
        | FsError::NotAnHdistMount { .. }
        | FsError::ViewNotUp { .. }
        | FsError::Io(_) => Errno::EIO,
    }
}

/// How to mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    /// Let other users (and root) see the mount; non-root needs `user_allow_other` in
    /// /etc/fuse.conf.
    pub allow_other: bool,
    /// Worker threads serving requests.
    pub threads: usize,
    /// Shown as the mount's source in /proc/mounts; always starts with `hdist:`.
    pub fsname: String,
    /// The store directory (or remote URLs) served, for the mount registry (`hdist mounts`).
    pub store: String,
}

/// A live mount; unmounted by [`Mounted::unmount`] or when the kernel drops it.
#[derive(Debug)]
pub struct Mounted {
    session: BackgroundSession,
    mountpoint: PathBuf,
}

/// Checks that `mountpoint` is an existing, empty directory.
pub fn check_mountpoint(mountpoint: &Path) -> Result<(), FsError> {
    let bad = |reason: &str| FsError::BadMountpoint {
        path: mountpoint.to_path_buf(),
        reason: reason.to_string(),
    };
    if let Some(reason) = mounts::already_mounted(mountpoint) {
        return Err(bad(&reason));
    }
    let meta = std::fs::metadata(mountpoint).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => bad("it does not exist; create an empty directory first"),
        _ => bad(&e.to_string()),
    })?;
    if !meta.is_dir() {
        return Err(bad("it is not a directory"));
    }
    let mut entries = std::fs::read_dir(mountpoint).map_err(|e| bad(&e.to_string()))?;
    if entries.next().is_some() {
        return Err(bad("it is not empty; mount on an empty directory"));
    }
    Ok(())
}

/// Mounts `view` on `mountpoint` and returns once the kernel has completed the handshake,
/// so the mount answers when this returns.
pub fn mount(view: View, mountpoint: &Path, options: &MountOptions) -> Result<Mounted, FsError> {
    check_mountpoint(mountpoint)?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let view = Arc::new(view);
    let fs = HdistFs::new(view.clone(), uid, gid);
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName(options.fsname.clone()),
        MountOption::Subtype("hdist".to_string()),
        MountOption::DefaultPermissions,
        MountOption::NoAtime,
        MountOption::NoDev,
        MountOption::NoSuid,
    ];
    if options.allow_other {
        config.acl = SessionACL::All;
    }
    config.n_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    let session = Session::new(fs, mountpoint, &config).io_context("mount on", mountpoint)?;
    spawn_profile_follower(Arc::downgrade(&view), session.notifier());
    drop(view);
    let session = session.spawn().io_context("start serving", mountpoint)?;
    mounts::register(mountpoint, &options.fsname, &options.store);
    Ok(Mounted {
        session,
        mountpoint: mountpoint.to_path_buf(),
    })
}

/// How often a mount checks whether its profiles switched generation when its catalog
/// cannot notify it (local stores wake it at once through inotify).
const FOLLOW_INTERVAL: Duration = Duration::from_millis(300);

/// Follows generation switches: when a profile's current document changes, the view moves
/// to it and the kernel is told to forget the old entries, so new lookups and opens see the
/// new generation within [`FOLLOW_INTERVAL`] plus a lookup. Files already open keep their
/// inodes and read the old content intact. Ends when the filesystem is dropped.
fn spawn_profile_follower(view: Weak<View>, notifier: Notifier) {
    let spawned = std::thread::Builder::new()
        .name("hdist-follow".to_string())
        .spawn(move || loop {
            let Some(catalog) = view.upgrade().map(|v| v.catalog().clone()) else {
                return;
            };
            catalog.wait_for_change(FOLLOW_INTERVAL);
            drop(catalog);
            let Some(view) = view.upgrade() else { return };
            for invalidation in view.refresh_profiles() {
                let parent = INodeNo(invalidation.parent);
                for name in &invalidation.names {
                    use std::os::unix::ffi::OsStrExt;
                    let _ = notifier.inval_entry(parent, std::ffi::OsStr::from_bytes(name));
                }
                // Drops the cached directory listing (FOPEN_CACHE_DIR) and attributes.
                let _ = notifier.inval_inode(parent, 0, 0);
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot follow profile generations: {e}");
    }
}

impl Mounted {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Blocks until the filesystem is unmounted (by `hdist umount`, `umount` or
    /// `fusermount3 -u`).
    pub fn wait(self) -> Result<(), FsError> {
        let path = self.mountpoint.clone();
        let result = self.session.join();
        mounts::unregister(&path);
        Ok(result.io_context("serve", path)?)
    }

    /// Unmounts and waits for the workers to stop.
    pub fn unmount(self) -> Result<(), FsError> {
        let path = self.mountpoint.clone();
        mounts::unregister(&path);
        Ok(self.session.umount_and_join().io_context("unmount", path)?)
    }
}
