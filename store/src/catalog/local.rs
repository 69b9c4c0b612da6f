//! The catalog of a local store (artifact documents, index, profile generations).

use std::sync::Arc;

use super::Catalog;
use crate::artifact::ArtifactId;
use crate::hash::Digest;
use crate::profile::{Generation, ProfileDoc};
use crate::store::{Store, StoreError};

/// [`Catalog`] over a local [`Store`].
#[derive(Debug, Clone)]
pub struct LocalCatalog {
    store: Arc<Store>,
    watch: Arc<Option<Watch>>,
}

/// An inotify instance watching every profile directory: switching a generation renames a
/// new `current` into place, which wakes [`Catalog::wait_for_change`] at once.
#[derive(Debug)]
struct Watch {
    fd: std::os::fd::OwnedFd,
    watched: std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
}

impl Watch {
    fn new() -> Option<Watch> {
        use std::os::fd::FromRawFd;
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return None;
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        Some(Watch {
            fd,
            watched: Default::default(),
        })
    }

    fn add(&self, dir: &std::path::Path) {
        use std::os::fd::AsRawFd;
        let mut watched = self.watched.lock().unwrap();
        if watched.contains(dir) {
            return;
        }
        let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
            return;
        };
        let mask = libc::IN_MOVED_TO | libc::IN_CREATE | libc::IN_CLOSE_WRITE;
        // SAFETY: valid descriptor and NUL-terminated path.
        if unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), mask) } >= 0 {
            watched.insert(dir.to_path_buf());
        }
    }

    fn wait(&self, timeout: std::time::Duration) {
        use std::os::fd::AsRawFd;
        let mut poll = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut poll, 1, millis) };
        let mut buf = [0u8; 4096];
        // Drain the events; which file changed does not matter, the caller re-checks.
        // SAFETY: the buffer is valid for its length; the descriptor is non-blocking.
        while unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
}

impl LocalCatalog {
    /// Wraps a store.
    pub fn new(store: Arc<Store>) -> Self {
        let watch = Watch::new();
        if let Some(watch) = &watch {
            watch.add(&store.root().join("profiles"));
        }
        LocalCatalog {
            store,
            watch: Arc::new(watch),
        }
    }
}

impl Catalog for LocalCatalog {
    fn profile(&self, name: &str) -> Result<Option<(Generation, ProfileDoc)>, StoreError> {
        match self.store.profiles().current(name)? {
            Some(generation) => {
                let doc = self.store.profiles().doc(&generation.document)?;
                Ok(Some((generation, doc)))
            }
            None => Ok(None),
        }
    }

    fn current_document(&self, name: &str) -> Result<Option<Digest>, StoreError> {
        if let Some(watch) = self.watch.as_ref() {
            watch.add(&self.store.root().join("profiles").join(name));
        }
        Ok(self.store.profiles().current(name)?.map(|g| g.document))
    }

    fn wait_for_change(&self, timeout: std::time::Duration) {
        match self.watch.as_ref() {
            Some(watch) => watch.wait(timeout),
            None => std::thread::sleep(timeout),
        }
    }

    fn profile_names(&self) -> Result<Vec<String>, StoreError> {
        self.store.profiles().names()
    }

    fn artifacts(&self) -> Result<Vec<(ArtifactId, Digest)>, StoreError> {
        Ok(self
            .store
            .artifacts()?
            .into_iter()
            .map(|r| (r.id, r.root))
            .collect())
    }

    fn artifact_root(&self, id: &ArtifactId) -> Result<Option<Digest>, StoreError> {
        match self.store.find_artifact(&id.to_string()) {
            Ok(record) => Ok(Some(record.root)),
            Err(StoreError::UnknownArtifact { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
