//! The FUSE adapter: a thin `fuser::Filesystem` over [`View`].
//!
//! Private helpers return `Result<_, Errno>`; trait methods only reply. Everything is
//! read-only: the mount is `MS_RDONLY`, so the kernel answers write-type operations with
//! `EROFS` without asking (see the note closing the `Filesystem` impl). Content is
//! immutable, so entries and attributes get long TTLs and file pages stay cached across opens.
//!
//! How opens and reads reach this process:
//! - **Zero-message open** (default where the kernel offers `FUSE_NO_OPEN_SUPPORT`, Linux
//!   4.19+): the first `open` answers `ENOSYS`, and from then on the kernel sends no
//!   OPEN, RELEASE or (after one ENOSYS) FLUSH at all, and keeps each inode's page cache
//!   across opens (`FOPEN_KEEP_CACHE` is the no-open default). Opening a file costs no round
//!   trip; warm reads are served by the kernel; only page-cache misses come here as READs by
//!   inode, served from the verified local copy. Those pages are then dropped from the copy's
//!   own page cache (`POSIX_FADV_DONTNEED`), so content is cached once, not twice.
//! - **Passthrough** (`HDIST_FUSE_OPEN=passthrough`, or a kernel without no-open support):
//!   opens register the verified local copy as a backing file (kernel 6.9+, CAP_SYS_ADMIN),
//!   so reads never come here, but every open and close is a round trip.
//! - Otherwise opens answer `FOPEN_KEEP_CACHE` and reads come here on page-cache misses.
//!
//! The local file behind an open inode is held as a [`VerifiedCopy`]. Every READ served here
//! checks it afterwards, and every OPEN that would re-use it checks it first
//! ([`VerifiedCopy::is_intact`]: one `fstat`, a re-hash only if the stamp changed). A copy
//! that changed on disk is logged and dropped, and the object is opened again, so the blob
//! service re-makes the copy (or refuses a damaged raw object: EIO); the bytes of a changed
//! copy never leave. Pages the kernel caches were read before the change. Under passthrough,
//! a process that keeps a file open reads the copy directly; new opens are checked. The trust
//! model is in `hdist_store::blob::copies`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use fuser::{
    AccessFlags, BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyStatfs,
    ReplyXattr, Request,
};

use hdist_store::blob::VerifiedCopy;

use crate::errno;
use crate::view::{Kind, View};

/// Immutable content: the kernel may cache entries and attributes for a day.
const TTL_IMMUTABLE: Duration = Duration::from_secs(86_400);
/// Store-wide listings change as artifacts are added.
const TTL_VOLATILE: Duration = Duration::from_secs(1);
const DIGEST_XATTR: &str = "user.hdist.digest";
/// How many recently opened files stay open after their last handle is released.
const RECENT_OPEN_FILES: usize = 256;

#[derive(Debug)]
struct OpenBlob {
    /// The verified content, or `None` for a large remote file read piecewise by digest
    /// (`BlobService::read_at`), so that opening it does not fetch all of it.
    copy: Option<VerifiedCopy>,
    digest: hdist_store::hash::Digest,
    // Kept alive while any handle uses it: dropping it tells the kernel to close the backing.
    backing: Option<BackingId>,
}

impl OpenBlob {
    /// Whether the local file behind it still holds the verified content (one `fstat`; a
    /// re-hash if its stamp changed).
    fn is_intact(&self) -> bool {
        self.copy.as_ref().is_none_or(VerifiedCopy::is_intact)
    }
}

/// One row of a directory listing as the kernel sees it.
struct DirRow {
    ino: u64,
    attr: FileAttr,
    kind: Kind,
    name: Vec<u8>,
}

#[derive(Debug, Default)]
struct OpenTable {
    by_fh: HashMap<u64, Arc<OpenBlob>>,
    // One backing file per inode: a second backing id for the same inode fails with EIO.
    by_ino: HashMap<u64, Weak<OpenBlob>>,
}

/// The filesystem handed to fuser.
#[derive(Debug)]
pub struct HdistFs {
    view: Arc<View>,
    uid: u32,
    gid: u32,
    passthrough: AtomicBool,
    no_opendir: AtomicBool,
    /// Opens answer ENOSYS so the kernel stops sending them (see the module docs).
    no_open: AtomicBool,
    open: Mutex<OpenTable>,
    // The most recently opened files stay open (with their passthrough backing ids), so
    // reopening one costs no open(2), hashing check or backing registration.
    recent: Mutex<std::collections::VecDeque<Arc<OpenBlob>>>,
    next_fh: AtomicU64,
}

impl HdistFs {
    /// Wraps a view; files will be owned by `uid`/`gid`.
    pub fn new(view: Arc<View>, uid: u32, gid: u32) -> Self {
        HdistFs {
            view,
            uid,
            gid,
            passthrough: AtomicBool::new(false),
            no_opendir: AtomicBool::new(false),
            no_open: AtomicBool::new(false),
            open: Mutex::new(OpenTable::default()),
            recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT_OPEN_FILES)),
            next_fh: AtomicU64::new(1),
        }
    }

    fn attr(&self, ino: u64, kind: &Kind) -> FileAttr {
        // The mtime the tree records (what `.pyc` validation compares); nothing here changes,
        // so access and change times are the same.
        let time = self.view.mtime(ino).to_system_time();
        let (file_type, perm, size, nlink) = match kind {
            Kind::File { size, executable, .. } => (
                FileType::RegularFile,
                if *executable { 0o555 } else { 0o444 },
                *size,
                1,
            ),
            Kind::Symlink(target) => (FileType::Symlink, 0o777, target.len() as u64, 1),
            _ => (FileType::Directory, 0o555, 4096, 2),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: file_type,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 65536,
            flags: 0,
        }
    }

    fn ttl(kind: &Kind) -> &'static Duration {
        if kind.is_volatile() {
            &TTL_VOLATILE
        } else {
            &TTL_IMMUTABLE
        }
    }

    fn kind(&self, ino: INodeNo) -> Result<Kind, Errno> {
        self.view.kind(ino.0).ok_or(Errno::ENOENT)
    }

    fn do_lookup(&self, parent: INodeNo, name: &OsStr) -> Result<(FileAttr, Kind), Errno> {
        let (ino, kind) = self
            .view
            .lookup(parent.0, name.as_bytes())
            .map_err(|e| errno(&e))?
            .ok_or(Errno::ENOENT)?;
        Ok((self.attr(ino, &kind), kind))
    }

    /// The shared open state of a file inode, opening the verified object on first use.
    /// With `reply`, a passthrough backing file is registered for it when enabled.
    /// An OPEN (with `reply`) re-uses an open blob only if its copy is unchanged; a READ
    /// checks after reading instead (see `do_read`).
    fn open_blob(&self, ino: u64, reply: Option<&ReplyOpen>) -> Result<Arc<OpenBlob>, Errno> {
        let held = self.open.lock().unwrap().by_ino.get(&ino).and_then(Weak::upgrade);
        if let Some(blob) = held {
            if reply.is_none() || blob.is_intact() {
                return Ok(blob);
            }
            self.forget_changed(ino, &blob);
        }
        let Kind::File { digest, .. } = self.view.kind(ino).ok_or(Errno::ENOENT)? else {
            return Err(Errno::EISDIR);
        };
        if self.view.blobs().prefers_ranged_reads(&digest) {
            let fresh = Arc::new(OpenBlob {
                copy: None,
                digest,
                backing: None,
            });
            // Not shared through by_ino: once the whole object is local, the next open gets
            // the file (and passthrough).
            return Ok(fresh);
        }
        let copy = self.view.blobs().open_copy(&digest).map_err(|e| {
            log::error!("cannot open {} (object {digest}): {e}", self.view.seen_at(ino));
            Errno::EIO
        })?;
        let backing = match reply.filter(|_| self.passthrough.load(Ordering::Relaxed)) {
            Some(reply) => match reply.open_backing(copy.file()) {
                Ok(id) => Some(id),
                Err(e) => {
                    // Needs CAP_SYS_ADMIN; without it every open would fail the same way.
                    log::info!("passthrough unavailable ({e}); serving reads from the cache");
                    self.passthrough.store(false, Ordering::Relaxed);
                    None
                }
            },
            None => None,
        };
        let fresh = Arc::new(OpenBlob {
            copy: Some(copy),
            digest,
            backing,
        });
        let mut table = self.open.lock().unwrap();
        if let Some(existing) = table.by_ino.get(&ino).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        table.by_ino.insert(ino, Arc::downgrade(&fresh));
        drop(table);
        let mut recent = self.recent.lock().unwrap();
        if recent.len() == RECENT_OPEN_FILES {
            recent.pop_back();
        }
        recent.push_front(fresh.clone());
        Ok(fresh)
    }

    /// Drops a blob whose copy changed on disk from the tables, so that the next use opens
    /// the object afresh (the blob service re-makes or refuses the copy).
    fn forget_changed(&self, ino: u64, stale: &Arc<OpenBlob>) {
        log::warn!(
            "the local copy of {} (object {}) changed on disk while mounted; opening it again",
            self.view.seen_at(ino),
            stale.digest
        );
        let mut table = self.open.lock().unwrap();
        if table
            .by_ino
            .get(&ino)
            .and_then(Weak::upgrade)
            .is_some_and(|held| Arc::ptr_eq(&held, stale))
        {
            table.by_ino.remove(&ino);
        }
        drop(table);
        self.recent
            .lock()
            .unwrap()
            .retain(|held| !Arc::ptr_eq(held, stale));
    }

    fn do_read(&self, ino: INodeNo, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        // Handle 0 is the kernel's own for files it opened without asking (zero-message open).
        let mut blob = if fh.0 == 0 {
            self.open_blob(ino.0, None)?
        } else {
            self.open
                .lock()
                .unwrap()
                .by_fh
                .get(&fh.0)
                .cloned()
                .ok_or(Errno::EBADF)?
        };
        // Checked after reading, so that a change made before or during the read is seen
        // before the bytes leave; a fresh copy is read once more at most.
        for _ in 0..2 {
            let data = self.read_blob(&blob, offset, size)?;
            if blob.is_intact() {
                return Ok(data);
            }
            self.forget_changed(ino.0, &blob);
            blob = self.open_blob(ino.0, None)?;
            if fh.0 != 0 {
                self.open.lock().unwrap().by_fh.insert(fh.0, blob.clone());
            }
        }
        log::error!(
            "the local copy of {} (object {}) keeps changing on disk; refusing the read",
            self.view.seen_at(ino.0),
            blob.digest
        );
        Err(Errno::EIO)
    }

    fn read_blob(&self, blob: &OpenBlob, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; size as usize];
        let Some(copy) = &blob.copy else {
            let n = self
                .view
                .blobs()
                .read_at(&blob.digest, offset, &mut buf)
                .map_err(|e| {
                    log::error!("cannot read object {} at {offset}: {e}", blob.digest);
                    Errno::EIO
                })?;
            buf.truncate(n);
            return Ok(buf);
        };
        let file = copy.file();
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        buf.truncate(filled);
        if blob.backing.is_none() {
            // The kernel now caches these pages for the mount's inode; keeping the local
            // copy's pages too would hold the same content in memory twice.
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor; advice only, errors are harmless.
            unsafe {
                libc::posix_fadvise(
                    file.as_raw_fd(),
                    offset as libc::off_t,
                    filled as libc::off_t,
                    libc::POSIX_FADV_DONTNEED,
                )
            };
        }
        Ok(buf)
    }

    fn digest_xattr(&self, ino: INodeNo, name: &OsStr) -> Result<Vec<u8>, Errno> {
        match self.kind(ino)? {
            Kind::File { digest, .. } if name == DIGEST_XATTR => Ok(digest.to_hex().into_bytes()),
            _ => Err(Errno::NO_XATTR),
        }
    }

    fn entries(&self, ino: INodeNo) -> Result<Vec<DirRow>, Errno> {
        let listing = self.view.listing(ino.0).map_err(|e| errno(&e))?;
        let own = self.kind(ino)?;
        let attr = self.attr(ino.0, &own);
        let mut out = Vec::with_capacity(listing.len() + 2);
        for dot in [&b"."[..], &b".."[..]] {
            out.push(DirRow {
                ino: ino.0,
                attr,
                kind: own.clone(),
                name: dot.to_vec(),
            });
        }
        for (name, child, kind) in listing.iter() {
            out.push(DirRow {
                ino: *child,
                attr: self.attr(*child, kind),
                kind: kind.clone(),
                name: name.to_vec(),
            });
        }
        Ok(out)
    }
}

fn reply_xattr(value: Result<Vec<u8>, Errno>, size: u32, reply: ReplyXattr) {
    match value {
        Err(e) => reply.error(e),
        Ok(value) if size == 0 => reply.size(value.len() as u32),
        Ok(value) if (size as usize) < value.len() => reply.error(Errno::ERANGE),
        Ok(value) => reply.data(&value),
    }
}

impl Filesystem for HdistFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let offered = config.capabilities();
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_MAX_PAGES;
        let _ = config.add_capabilities(wanted & offered);
        // Zero-message opendir: the kernel stops sending OPENDIR/RELEASEDIR (two round
        // trips per directory a walk enters) once opendir answers ENOSYS.
        if offered.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            && config
                .add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT)
                .is_ok()
        {
            self.no_opendir.store(true, Ordering::Relaxed);
        }
        let open_mode = std::env::var("HDIST_FUSE_OPEN").unwrap_or_default();
        if open_mode != "passthrough"
            && open_mode != "open"
            && offered.contains(InitFlags::FUSE_NO_OPEN_SUPPORT)
            && config.add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT).is_ok()
        {
            self.no_open.store(true, Ordering::Relaxed);
        }
        // Passthrough needs the kernel's offer and CAP_SYS_ADMIN (checked at first open).
        if open_mode != "open"
            && !self.no_open.load(Ordering::Relaxed)
            && offered.contains(InitFlags::FUSE_PASSTHROUGH)
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.passthrough.store(true, Ordering::Relaxed);
        }
        log::info!(
            "open mode: {}",
            if self.no_open.load(Ordering::Relaxed) {
                "zero-message open"
            } else if self.passthrough.load(Ordering::Relaxed) {
                "passthrough (if permitted at the first open)"
            } else {
                "plain open"
            }
        );
        if let Err(max) = config.set_max_readahead(1 << 20) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.do_lookup(parent, name) {
            Ok((attr, kind)) => reply.entry(Self::ttl(&kind), &attr, Generation(0)),
            // A directory merged from immutable trees never gains a name (a generation switch
            // gives a profile's directories new inodes), so the kernel may remember the
            // miss: node id 0 is a cached negative entry. Programs probe for many absent
            // files (Python for pyvenv.cfg, __init__ variants, …).
            Err(e) if e == Errno::ENOENT && matches!(self.view.kind(parent.0), Some(Kind::Union(_))) => {
                let mut absent = self.attr(0, &Kind::Union(Arc::from(Vec::new())));
                absent.ino = INodeNo(0);
                reply.entry(&TTL_IMMUTABLE, &absent, Generation(0))
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.kind(ino) {
            Ok(kind) => reply.attr(Self::ttl(&kind), &self.attr(ino.0, &kind)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.kind(ino) {
            Ok(Kind::Symlink(target)) => reply.data(&target),
            Ok(_) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        if self.no_open.load(Ordering::Relaxed) && matches!(self.kind(ino), Ok(Kind::File { .. })) {
            // From now on the kernel opens files without asking; reads come by inode.
            return reply.error(Errno::ENOSYS);
        }
        match self.open_blob(ino.0, Some(&reply)) {
            Ok(blob) => {
                let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
                self.open.lock().unwrap().by_fh.insert(fh, blob.clone());
                match &blob.backing {
                    // The kernel fails passthrough opens that also ask for FOPEN_KEEP_CACHE
                    // (EIO); the backing file's own page cache serves them anyway.
                    Some(id) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), id),
                    None => reply.opened(FileHandle(fh), FopenFlags::FOPEN_KEEP_CACHE),
                }
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.do_read(ino, fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open.lock().unwrap().by_fh.remove(&fh.0);
        reply.ok();
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written; ENOSYS makes the kernel stop sending FLUSH on every close.
        reply.error(Errno::ENOSYS);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // Files here are never terminals or devices: `isatty` (Python asks for every file it
        // opens) gets its answer without further work.
        reply.error(Errno::ENOTTY);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.kind(ino) {
            Ok(kind) if kind.is_dir() && self.no_opendir.load(Ordering::Relaxed) => {
                reply.error(Errno::ENOSYS)
            }
            Ok(kind) if kind.is_dir() => {
                let flags = if kind.is_volatile() {
                    FopenFlags::empty()
                } else {
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE
                };
                reply.opened(FileHandle(0), flags)
            }
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        match self.entries(ino) {
            Ok(entries) => {
                for (i, row) in entries.into_iter().enumerate().skip(offset as usize) {
                    let name = OsStr::from_bytes(&row.name);
                    if reply.add(INodeNo(row.ino), (i + 1) as u64, row.attr.kind, name) {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self.entries(ino) {
            Ok(entries) => {
                for (i, row) in entries.into_iter().enumerate().skip(offset as usize) {
                    let full = reply.add(
                        INodeNo(row.ino),
                        (i + 1) as u64,
                        OsStr::from_bytes(&row.name),
                        Self::ttl(&row.kind),
                        &row.attr,
                        Generation(0),
                    );
                    if full {
                        break;
                    }
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(self.digest_xattr(ino, name), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let names = match self.kind(ino) {
            Ok(Kind::File { .. }) => Ok(format!("{DIGEST_XATTR}\0").into_bytes()),
            Ok(_) => Ok(Vec::new()),
            Err(e) => Err(e),
        };
        reply_xattr(names, size, reply);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.kind(ino) {
            Ok(_) if mask.contains(AccessFlags::W_OK) => reply.error(Errno::EROFS),
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    // No write-type handlers (setattr, mknod, mkdir, unlink, rmdir, symlink, rename, link,
    // write, create, setxattr, removexattr, fallocate, copy_file_range): the mount is
    // read-only (`MS_RDONLY`), so the kernel answers them with EROFS itself and never sends
    // them here (`mount::every_write_fails_with_erofs_and_the_store_is_unchanged` checks the
    // errnos; write, fallocate and copy_file_range need a writable descriptor, which open
    // refuses). Were one ever sent, fuser's default answers ENOSYS: the write fails all the same.
}
