//! Hashdist's pack stream, whose hash is the key of a `files:` source.
//!
//! The stream is the 8 bytes `HDSTPCK1`, then for each file in order of name bytes: the name
//! length and the contents length as little-endian `u32`, the name, the contents. The key is
//! `files:` + `format_digest(sha256(stream))`. Only the hash is needed, so the stream is never
//! built: entries are fed straight into SHA-256.

use std::io::{self, Read};

use sha2::{Digest as _, Sha256};

use super::{Digest, HashError, ShortDigest};

/// The magic bytes that open every pack stream.
pub const PACK_MAGIC: &[u8; 8] = b"HDSTPCK1";

/// Size of the copy buffer for entry contents.
const READ_BUF: usize = 1 << 20;

fn display_name(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

fn length_u32(name: &[u8], what: &'static str, len: u64) -> Result<u32, HashError> {
    u32::try_from(len).map_err(|_| HashError::PackEntryTooLarge {
        name: display_name(name),
        what,
        len,
    })
}

/// Hashes a pack stream entry by entry, for contents too large to hold in memory.
///
/// Entries must be added in strictly increasing order of name bytes (the order Hashdist sorts
/// them in); [`FilesPackHasher::add`] refuses anything else rather than silently producing a
/// key that the original tool would not. If `add` fails part-way through an entry, the hasher
/// has absorbed a partial entry and must be discarded.
#[derive(Clone)]
pub struct FilesPackHasher {
    sha: Sha256,
    last: Option<Vec<u8>>,
}

impl FilesPackHasher {
    /// A hasher that has absorbed the pack header and no entries.
    pub fn new() -> FilesPackHasher {
        let mut sha = Sha256::new();
        sha.update(PACK_MAGIC);
        FilesPackHasher { sha, last: None }
    }

    /// Adds the entry `name` whose contents are the `len` bytes `reader` yields.
    ///
    /// # Errors
    /// - [`HashError::PackEntryOrder`] if `name` does not sort strictly after the previous name;
    /// - [`HashError::PackEntryTooLarge`] if the name or `len` exceeds `u32::MAX`;
    /// - [`HashError::Io`] if reading fails;
    /// - [`HashError::PackContentShort`] / [`HashError::PackContentLong`] if `reader` does not
    ///   yield exactly `len` bytes (the length was hashed before the contents, so a mismatch
    ///   would yield a wrong key).
    ///
    /// The first two are detected before anything is hashed; after the others the hasher must
    /// be discarded.
    pub fn add(&mut self, name: &[u8], len: u64, mut reader: impl Read) -> Result<(), HashError> {
        if let Some(previous) = &self.last {
            if previous.as_slice() >= name {
                return Err(HashError::PackEntryOrder {
                    previous: display_name(previous),
                    name: display_name(name),
                });
            }
        }
        let name_len = length_u32(name, "name", name.len() as u64)?;
        let content_len = length_u32(name, "contents", len)?;
        self.sha.update(name_len.to_le_bytes());
        self.sha.update(content_len.to_le_bytes());
        self.sha.update(name);
        self.last = Some(name.to_vec());

        let io_err = |source: io::Error| HashError::Io {
            context: format!("pack entry {:?}", display_name(name)),
            source,
        };
        // Copy at most `len` bytes so a reader that is too long never gets hashed past the
        // declared length; the trailing probe below then reports it.
        let mut buf = vec![0u8; READ_BUF.min(usize::try_from(len).unwrap_or(READ_BUF))];
        let mut remaining = len;
        while remaining > 0 {
            let want = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
            match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(HashError::PackContentShort {
                        name: display_name(name),
                        declared: len,
                        actual: len - remaining,
                    })
                }
                Ok(n) => {
                    self.sha.update(&buf[..n]);
                    remaining -= n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
        let mut probe = [0u8; 1];
        loop {
            match reader.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(HashError::PackContentLong {
                        name: display_name(name),
                        declared: len,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    /// The full SHA-256 of the pack stream.
    pub fn finish_digest(self) -> Digest {
        Digest::from_bytes(self.sha.finalize().into())
    }

    /// The pack's short digest: the part after `files:` in a source key.
    pub fn finish(self) -> ShortDigest {
        self.finish_digest().short()
    }
}

impl Default for FilesPackHasher {
    fn default() -> FilesPackHasher {
        FilesPackHasher::new()
    }
}

impl std::fmt::Debug for FilesPackHasher {
    // The SHA-256 state means nothing to a reader; the last name shows progress.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilesPackHasher")
            .field("last", &self.last.as_deref().map(display_name))
            .finish_non_exhaustive()
    }
}

/// The short digest of the pack of `entries` (`(name, contents)` pairs, in any order): the
/// part after `files:` in a `files:` source key.
///
/// # Errors
/// [`HashError::PackEntryOrder`] if two entries have the same name (a directory cannot hold
/// both, so the input is malformed); [`HashError::PackEntryTooLarge`] if a name or contents
/// exceeds `u32::MAX` bytes.
pub fn files_pack_digest(entries: &[(Vec<u8>, Vec<u8>)]) -> Result<ShortDigest, HashError> {
    let mut sorted: Vec<&(Vec<u8>, Vec<u8>)> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = FilesPackHasher::new();
    for (name, contents) in sorted {
        hasher.add(name, contents.len() as u64, contents.as_slice())?;
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_entries() -> Vec<(Vec<u8>, Vec<u8>)> {
        [
            ("foo", "contains foo"),
            ("bar", "contains bar"),
            ("a/b", "in a subdir"),
            ("a/c", "also in subdir"),
        ]
        .iter()
        .map(|(n, c)| (n.as_bytes().to_vec(), c.as_bytes().to_vec()))
        .collect()
    }

    #[test]
    fn hashdist_vector() {
        let key = files_pack_digest(&vector_entries()).unwrap();
        assert_eq!(key.to_string(), "ruwkpei2ot2fp77myn2n2n4ttefuabab");
        assert_eq!(format!("files:{key}"), "files:ruwkpei2ot2fp77myn2n2n4ttefuabab");
    }

    #[test]
    fn stream_layout() {
        let mut stream = PACK_MAGIC.to_vec();
        stream.extend(1u32.to_le_bytes());
        stream.extend(2u32.to_le_bytes());
        stream.extend(b"xyz");
        let got = files_pack_digest(&[(b"x".to_vec(), b"yz".to_vec())]).unwrap();
        assert_eq!(got, ShortDigest::of(&stream));
        assert_eq!(files_pack_digest(&[]).unwrap(), ShortDigest::of(PACK_MAGIC));
    }

    #[test]
    fn streaming_matches_in_memory() {
        let mut entries = vector_entries();
        entries.sort();
        let mut h = FilesPackHasher::new();
        for (name, contents) in &entries {
            h.add(name, contents.len() as u64, contents.as_slice()).unwrap();
        }
        assert_eq!(h.finish(), files_pack_digest(&entries).unwrap());
    }

    #[test]
    fn rejects_misordered_and_duplicates() {
        let mut h = FilesPackHasher::new();
        h.add(b"b", 0, io::empty()).unwrap();
        assert!(matches!(
            h.add(b"a", 0, io::empty()),
            Err(HashError::PackEntryOrder { .. })
        ));
        assert!(matches!(
            h.add(b"b", 0, io::empty()),
            Err(HashError::PackEntryOrder { .. })
        ));
        let dup = [(b"a".to_vec(), vec![]), (b"a".to_vec(), vec![1])];
        assert!(matches!(
            files_pack_digest(&dup),
            Err(HashError::PackEntryOrder { .. })
        ));
    }

    #[test]
    fn rejects_length_mismatch_and_oversize() {
        let mut h = FilesPackHasher::new();
        assert!(matches!(
            h.add(b"a", 5, &b"abc"[..]),
            Err(HashError::PackContentShort {
                declared: 5,
                actual: 3,
                ..
            })
        ));
        let mut h = FilesPackHasher::new();
        assert!(matches!(
            h.add(b"a", 2, &b"abc"[..]),
            Err(HashError::PackContentLong { declared: 2, .. })
        ));
        let mut h = FilesPackHasher::new();
        assert!(matches!(
            h.add(b"a", u64::from(u32::MAX) + 1, io::empty()),
            Err(HashError::PackEntryTooLarge { what: "contents", .. })
        ));
    }
}
