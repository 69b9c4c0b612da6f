//! [`MemoryBlobService`]: objects held in a map in memory, for tests of the layers above the
//! blob seam (trees, unions, views, catalogs) that need no disk layout.
//!
//! Content enters only through [`MemoryBlobService::insert`], which names it by its own hash,
//! so the map cannot hold bytes that do not match their digest: reads need no verification.
//! [`BlobService::open`] hands out an anonymous temp file holding the content, as the remote
//! backend does.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::{BlobError, BlobService};
use crate::hash::Digest;
use crate::IoContext;

/// What a missing object's error names as the store's location.
const LOCATION: &str = "<memory>";

/// Content-addressed objects in memory; see the module doc.
#[derive(Debug, Default)]
pub struct MemoryBlobService {
    objects: RwLock<HashMap<Digest, Arc<[u8]>>>,
}

impl MemoryBlobService {
    /// An empty service.
    pub fn new() -> MemoryBlobService {
        MemoryBlobService::default()
    }

    /// Adds `bytes` (a no-op if present) and returns their digest.
    pub fn insert(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        self.objects
            .write()
            .unwrap()
            .entry(digest)
            .or_insert_with(|| Arc::from(bytes));
        digest
    }

    /// Removes an object; whether it was present.
    pub fn remove(&self, digest: &Digest) -> bool {
        self.objects.write().unwrap().remove(digest).is_some()
    }

    /// How many objects are held.
    pub fn len(&self) -> usize {
        self.objects.read().unwrap().len()
    }

    /// Whether no object is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, digest: &Digest) -> Result<Arc<[u8]>, BlobError> {
        self.objects
            .read()
            .unwrap()
            .get(digest)
            .cloned()
            .ok_or_else(|| BlobError::NotFound {
                digest: *digest,
                location: PathBuf::from(LOCATION),
            })
    }
}

impl BlobService for MemoryBlobService {
    fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        Ok(self.objects.read().unwrap().contains_key(digest))
    }

    fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        Ok(self.get(digest)?.len() as u64)
    }

    fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        Ok(self.get(digest)?.to_vec())
    }

    fn open(&self, digest: &Digest) -> Result<File, BlobError> {
        let bytes = self.get(digest)?;
        let tmp_dir = std::env::temp_dir();
        let mut file = tempfile::tempfile_in(&tmp_dir).io_context("create temp file in", &tmp_dir)?;
        replace_content(&mut file, digest, &bytes)?;
        file.rewind()
            .map_err(BlobError::object_io("rewind the copy of", digest))?;
        Ok(file)
    }

    fn copy_to(&self, digest: &Digest, out: &mut File) -> Result<u64, BlobError> {
        let bytes = self.get(digest)?;
        replace_content(out, digest, &bytes)
    }

    fn read_at(&self, digest: &Digest, offset: u64, buf: &mut [u8]) -> Result<usize, BlobError> {
        let bytes = self.get(digest)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
        let n = buf.len().min(bytes.len() - start);
        buf[..n].copy_from_slice(&bytes[start..start + n]);
        Ok(n)
    }
}

/// Replaces the content of `out` with `bytes`; returns their length.
fn replace_content(out: &mut File, digest: &Digest, bytes: &[u8]) -> Result<u64, BlobError> {
    out.set_len(0)
        .map_err(BlobError::object_io("truncate the output for", digest))?;
    out.rewind()
        .map_err(BlobError::object_io("rewind the output for", digest))?;
    out.write_all(bytes)
        .map_err(BlobError::object_io("write", digest))?;
    Ok(bytes.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::MemoryBlobService;
    use crate::blob::{BlobError, BlobService};

    #[test]
    fn a_failed_copy_names_the_object_not_a_made_up_path() {
        let blobs = MemoryBlobService::new();
        let digest = blobs.insert(b"content");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, b"").unwrap();
        // Opened read-only: emptying and writing it fail.
        let mut out = std::fs::File::open(&path).unwrap();
        let error = blobs.copy_to(&digest, &mut out).unwrap_err();
        assert!(
            matches!(&error, BlobError::ObjectIo { digest: d, .. } if *d == digest),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains(&digest.to_string()) && !text.contains("<memory>"),
            "{text}"
        );
    }
}
