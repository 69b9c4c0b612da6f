//! Workload traces: which objects a workload touched, in first-touch order.
//!
//! [`RecordingBlobService`] wraps the blob service of a mount and notes every file that is
//! opened or read; `hdist trace record` saves the list, and `hdist publish` ships it as the
//! profile's prefetch list.
//!
//! ```text
//! <store>/traces/<profile>.trace = "hdist-trace-1\n" (hex digest "\n")*
//! ```

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::RemoteError;
use crate::blob::{BlobError, BlobService, VerifiedCopy};
use crate::hash::Digest;
use crate::IoError;

const HEADER: &str = "hdist-trace-1";

#[derive(Debug, Default)]
struct Seen {
    order: Vec<Digest>,
    set: HashSet<Digest>,
}

/// A blob service that records the files opened through it.
#[derive(Debug)]
pub struct RecordingBlobService {
    inner: Arc<dyn BlobService>,
    seen: Mutex<Seen>,
}

impl RecordingBlobService {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn BlobService>) -> RecordingBlobService {
        RecordingBlobService {
            inner,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn note(&self, digest: &Digest) {
        let mut seen = self.seen.lock().unwrap();
        if seen.set.insert(*digest) {
            seen.order.push(*digest);
        }
    }

    /// Files touched so far, in first-touch order.
    pub fn touched(&self) -> Vec<Digest> {
        self.seen.lock().unwrap().order.clone()
    }
}

impl BlobService for RecordingBlobService {
    fn has(&self, digest: &Digest) -> Result<bool, BlobError> {
        self.inner.has(digest)
    }

    fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        self.inner.size(digest)
    }

    // Trees and documents come through `read`; they travel in the tree pack, so they are not
    // recorded.
    fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        self.inner.read(digest)
    }

    fn open(&self, digest: &Digest) -> Result<File, BlobError> {
        self.note(digest);
        self.inner.open(digest)
    }

    fn open_copy(&self, digest: &Digest) -> Result<VerifiedCopy, BlobError> {
        self.note(digest);
        self.inner.open_copy(digest)
    }

    fn prefers_ranged_reads(&self, digest: &Digest) -> bool {
        self.inner.prefers_ranged_reads(digest)
    }

    fn read_at(&self, digest: &Digest, offset: u64, buf: &mut [u8]) -> Result<usize, BlobError> {
        self.note(digest);
        self.inner.read_at(digest, offset, buf)
    }
}

/// Writes a trace file durably (see [`super::write_beside`]).
pub fn write_trace(path: &Path, digests: &[Digest]) -> Result<(), RemoteError> {
    let mut text = format!("{HEADER}\n");
    for digest in digests {
        text.push_str(&digest.to_hex());
        text.push('\n');
    }
    super::write_beside(path, text.as_bytes())
}

/// Reads a trace file; `None` if there is none.
pub fn read_trace(path: &Path) -> Result<Option<Vec<Digest>>, RemoteError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new("read", path, e).into()),
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(IoError::new(
            "read",
            path,
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a trace file (no {HEADER} header)"),
            ),
        )
        .into());
    }
    let mut out = Vec::new();
    for line in lines {
        let digest = Digest::from_hex(line.trim()).map_err(|e| {
            IoError::new(
                "read",
                path,
                io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        out.push(digest);
    }
    Ok(Some(out))
}
