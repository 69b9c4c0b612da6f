//! Finding and removing hdist mounts (including dead ones whose daemon was killed).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::FsError;

/// One hdist mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Mount point.
    pub mountpoint: PathBuf,
    /// What is mounted (`hdist:<profile or artifact or all>`).
    pub source: String,
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

/// Every mount whose source starts with `hdist:`.
pub fn list_mounts() -> io::Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut out = Vec::new();
    for line in text.lines() {
        // Fields: id parent dev root mountpoint options [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = left.split(' ').nth(4).map(unescape);
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or("");
        let source = right.next().map(unescape).unwrap_or_default();
        if fstype.starts_with("fuse") && source.starts_with("hdist:") {
            if let Some(mountpoint) = mountpoint {
                out.push(MountEntry {
                    mountpoint: PathBuf::from(mountpoint),
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// Unmounts `path`, including a dead mount whose daemon was killed. As root this is
/// umount(2) (lazily if busy); otherwise fusermount3.
pub fn unmount(path: &Path) -> Result<(), FsError> {
    let err = |source| FsError::Io {
        action: "unmount",
        path: path.to_path_buf(),
        source,
    };
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
            return Err(FsError::BadMountpoint {
                path: path.to_path_buf(),
                reason: "it is not a mount point".to_string(),
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
