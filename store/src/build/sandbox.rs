//! Making a build see its output at the artifact's final path.
//!
//! Software bakes its install prefix into binaries (rpaths, shebangs, `*-config` scripts), so
//! `$ARTIFACT` must be the path where the artifact will be visible after the build: inside the
//! store-wide view, `<view>/artifacts/<name>/<hash>`. That path is on a read-only FUSE mount
//! and does not exist yet, so the build thread gets a private mount namespace:
//!
//! ```text
//! <view>/                       ← in the build's namespace only: a tmpfs laid over the view
//! └── artifacts/
//!     ├── <import>/<hash>/      ← bind mount of the real view's directory (read-only FUSE)
//!     └── <name>/<hash>/        ← bind mount of the staging directory (writable)
//! ```
//!
//! The namespace belongs to the calling thread (Linux namespaces are per task), and processes
//! the job starts inherit it. Nothing propagates back to the host: the thread first makes every
//! mount private. This needs CAP_SYS_ADMIN; without it (or if any step fails) the build falls
//! back to `$ARTIFACT` = the staging directory, which works for software that does not record
//! its prefix, and imports are still read from the real view.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

/// What to lay out: the view path, the staging directory and each import's directory.
#[derive(Debug)]
pub struct Layout<'a> {
    /// Mount point of the store-wide view.
    pub view: &'a Path,
    /// A scratch directory for the tmpfs.
    pub scaffold: &'a Path,
    /// `artifacts/<name>/<hash>` relative path of the artifact being built.
    pub artifact: &'a Path,
    /// Staging directory that receives the install.
    pub staging: &'a Path,
    /// `artifacts/<name>/<hash>` relative paths of imports.
    pub imports: &'a [PathBuf],
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn mount(source: Option<&Path>, target: &Path, fstype: Option<&str>, flags: libc::c_ulong) -> io::Result<()> {
    let source = source.map(c_path).transpose()?;
    let target = c_path(target)?;
    let fstype = fstype.map(|f| CString::new(f).expect("static fs type"));
    // SAFETY: all pointers are valid NUL-terminated strings or null for the call's duration.
    let rc = unsafe {
        libc::mount(
            source.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Moves the calling thread into a private mount namespace laid out as the module docs show.
/// On error the thread may be left in a new namespace without the layout; callers run the
/// sandbox on a thread of its own and fall back to plain paths.
pub fn enter(layout: &Layout<'_>) -> io::Result<()> {
    // SAFETY: unshare affects only the calling thread's namespaces.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    mount(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE)?;
    std::fs::create_dir_all(layout.scaffold)?;
    mount(Some(Path::new("tmpfs")), layout.scaffold, Some("tmpfs"), 0)?;
    for import in layout.imports {
        let inside = layout.scaffold.join(import);
        std::fs::create_dir_all(&inside)?;
        mount(Some(&layout.view.join(import)), &inside, None, libc::MS_BIND)?;
    }
    let own = layout.scaffold.join(layout.artifact);
    std::fs::create_dir_all(&own)?;
    mount(Some(layout.staging), &own, None, libc::MS_BIND)?;
    mount(
        Some(layout.scaffold),
        layout.view,
        None,
        libc::MS_BIND | libc::MS_REC,
    )
}
