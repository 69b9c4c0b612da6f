//! The fan-out layout shared by every directory of content-addressed files.
//!
//! ```text
//! <dir>/ab/ab12…ef<suffix>
//! ```
//!
//! The first two hex digits of the digest name a sub-directory, so no directory grows past a
//! few thousand entries. Local objects (`objects/`, suffix `.zst` when compressed), their
//! decompressed copies (`cache/blobs/`), linkfarm copies (suffix `@<variant>`), a remote node's
//! cache and a published directory all use it; this module is the one place that spells it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::hash::Digest;
use crate::modes;

/// The fan-out sub-directory of `dir` that holds `digest`'s files: `<dir>/ab`.
pub fn dir_of(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(&digest.to_hex()[..2])
}

/// The file of `digest` below `dir`: `<dir>/ab/<hex>`.
pub fn path(dir: &Path, digest: &Digest) -> PathBuf {
    path_with_suffix(dir, digest, "")
}

/// The file of `digest` below `dir` with `suffix` after its name: `<dir>/ab/<hex><suffix>`.
pub fn path_with_suffix(dir: &Path, digest: &Digest, suffix: &str) -> PathBuf {
    let hex = digest.to_hex();
    dir.join(&hex[..2]).join(format!("{hex}{suffix}"))
}

/// The same path relative to the fan-out root, `/`-separated (for URLs): `ab/<hex><suffix>`.
pub fn relative(digest: &Digest, suffix: &str) -> String {
    let hex = digest.to_hex();
    format!("{}/{hex}{suffix}", &hex[..2])
}

/// Creates all 256 fan-out directories of `dir` (shared-directory mode), so that adding a file
/// never has to create one. Directories that exist already are left as they are.
pub fn create_all(dir: &Path) -> io::Result<()> {
    for byte in 0..=255u8 {
        match modes::create_dir(&dir.join(format!("{byte:02x}")), modes::SHARED_DIR) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every file one level below the fan-out directories of `dir`: (path, length, mtime).
pub fn walk(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    let Ok(fanouts) = fs::read_dir(dir) else {
        return out;
    };
    for fanout in fanouts.flatten() {
        let Ok(entries) = fs::read_dir(fanout.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(meta) = entry.metadata() {
                let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((entry.path(), meta.len(), mtime));
            }
        }
    }
    out
}

/// The total length of the files below the fan-out directories of `dir`.
pub fn total_len(dir: &Path) -> u64 {
    walk(dir).iter().map(|(_, len, _)| len).sum()
}

/// Removes the oldest files (by mtime) below the fan-out directories of `dir` until their
/// total is at 90 % of `limit`; returns the total left. Open handles keep working: an unlinked
/// file stays readable through its descriptors.
pub fn evict_oldest(dir: &Path, limit: u64) -> u64 {
    let mut files = walk(dir);
    files.sort_by_key(|(_, _, mtime)| *mtime);
    let target = limit / 10 * 9;
    let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
    for (path, len, _) in files {
        if total <= target {
            break;
        }
        if fs::remove_file(&path).is_ok() {
            total -= len;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_put_the_first_two_hex_digits_above_the_name() {
        let digest = Digest::of(b"fan-out");
        let hex = digest.to_hex();
        let dir = Path::new("/store/objects");
        assert_eq!(dir_of(dir, &digest), dir.join(&hex[..2]));
        assert_eq!(path(dir, &digest), dir.join(&hex[..2]).join(&hex));
        assert_eq!(
            path_with_suffix(dir, &digest, ".zst"),
            dir.join(&hex[..2]).join(format!("{hex}.zst"))
        );
        assert_eq!(relative(&digest, ".zst"), format!("{}/{hex}.zst", &hex[..2]));
    }

    #[test]
    fn eviction_removes_the_oldest_files_down_to_nine_tenths_of_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let mut files = Vec::new();
        for age in 0..4u64 {
            let digest = Digest::of(&age.to_le_bytes());
            let file = path(dir.path(), &digest);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(&file, [0u8; 100]).unwrap();
            let mtime = now - std::time::Duration::from_secs(age * 60);
            fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
            files.push(file);
        }
        assert_eq!(total_len(dir.path()), 400);
        // Bound 300: evict down to 270, so the two oldest go.
        assert_eq!(evict_oldest(dir.path(), 300), 200);
        let left: Vec<bool> = files.iter().map(|f| f.exists()).collect();
        assert_eq!(left, [true, true, false, false]);
    }
}
