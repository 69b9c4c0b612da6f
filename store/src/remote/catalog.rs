//! [`RemoteCatalog`]: profiles and artifacts of a published store, from its signed manifest.
//!
//! The catalog always answers from the newest manifest whose signature verified with the
//! node's trusted key and whose serial is not lower than the one before. A background thread
//! re-fetches `manifest.json` every poll interval (a conditional GET: `If-None-Match` with the
//! last ETag, so an unchanged manifest costs one tiny `304`); any failure (server down,
//! tampered or foreign-key manifest, rollback) is logged and the current manifest is kept.
//! Callers therefore never wait on the network in [`Catalog::profile`], and a newly published
//! manifest shows up within the poll interval as a new generation (its number is the
//! manifest's serial).
//!
//! The accepted manifest is saved in the cache (`manifests/<mirror-set id>.json`), re-verified
//! when loaded, so a node that restarts while the server is down still mounts what it had.
//!
//! The first time a profile document is served, its tree pack (every directory of the
//! profile in one object) is fetched into the cache, and its prefetch list is handed to
//! [`CachedBlobService::prefetch`].

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use super::cached::CachedBlobService;
use super::chunks::decode_pack;
use super::http::{Fetched, HttpBlobService};
use super::manifest::{Manifest, PublicKey, PublishedProfile};
use super::RemoteError;
use crate::artifact::ArtifactId;
use crate::blob::BlobService;
use crate::catalog::Catalog;
use crate::hash::Digest;
use crate::profile::{load_doc, Generation, ProfileDoc};
use crate::store::StoreError;

const MANIFEST: &str = "manifest.json";

#[derive(Debug)]
struct State {
    manifest: Arc<Manifest>,
    etag: Option<String>,
}

/// The catalog of a published store.
#[derive(Debug)]
pub struct RemoteCatalog {
    http: Arc<HttpBlobService>,
    blobs: Arc<CachedBlobService>,
    key: PublicKey,
    saved: PathBuf,
    state: RwLock<State>,
    docs: Mutex<HashMap<Digest, ProfileDoc>>,
    warmed: Mutex<HashSet<Digest>>,
}

impl RemoteCatalog {
    /// Loads the manifest (from the mirrors, else the saved copy) and starts polling for new
    /// ones every `poll` (`None`: never).
    pub fn open(
        http: Arc<HttpBlobService>,
        blobs: Arc<CachedBlobService>,
        key: PublicKey,
        poll: Option<Duration>,
    ) -> Result<Arc<RemoteCatalog>, RemoteError> {
        let id = Digest::of(http.mirrors().join("\n").as_bytes()).short();
        let saved = blobs.root().join("manifests").join(format!("{id}.json"));
        let from_disk = std::fs::read(&saved).ok().and_then(|bytes| {
            match Manifest::verify(&bytes, &key, &saved.display().to_string()) {
                Ok(m) => Some(m),
                Err(e) => {
                    log::error!("ignoring the saved manifest: {e}");
                    None
                }
            }
        });
        let fetched = fetch(&http, &key, None);
        let (manifest, etag) = match (fetched, from_disk) {
            (Ok(Some((bytes, manifest, etag))), saved_manifest) => {
                if saved_manifest
                    .as_ref()
                    .is_some_and(|s| s.serial > manifest.serial)
                {
                    let saved_manifest = saved_manifest.expect("checked");
                    log::error!(
                        "the server's manifest (serial {}) is older than the one accepted before ({}); refusing it",
                        manifest.serial,
                        saved_manifest.serial
                    );
                    (saved_manifest, None)
                } else {
                    save(&blobs, &saved, &bytes);
                    (manifest, etag)
                }
            }
            (Ok(None), Some(m)) => (m, None),
            (Err(e), Some(m)) => {
                log::warn!("{e}; using the manifest saved at {}", saved.display());
                (m, None)
            }
            (Ok(None), None) => {
                return Err(RemoteError::Unreachable {
                    what: MANIFEST.into(),
                    tried: http.mirrors().join(", "),
                    reason: "not found (is this a directory written by `hdist publish`?)".into(),
                })
            }
            (Err(e), None) => return Err(e),
        };
        blobs.set_chunk_tables(manifest.chunked.iter().map(|(f, t)| (*f, *t)).collect());
        let catalog = Arc::new(RemoteCatalog {
            http,
            blobs,
            key,
            saved,
            state: RwLock::new(State {
                manifest: Arc::new(manifest),
                etag,
            }),
            docs: Mutex::new(HashMap::new()),
            warmed: Mutex::new(HashSet::new()),
        });
        if let Some(poll) = poll {
            let weak: Weak<RemoteCatalog> = Arc::downgrade(&catalog);
            let spawned = std::thread::Builder::new()
                .name("hdist-manifest".into())
                .spawn(move || loop {
                    std::thread::sleep(poll);
                    match weak.upgrade() {
                        Some(catalog) => catalog.refresh(),
                        None => break,
                    }
                });
            if let Err(e) = spawned {
                log::warn!("cannot start polling for new manifests: {e}");
            }
        }
        Ok(catalog)
    }

    /// The manifest in use.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.state.read().unwrap().manifest.clone()
    }

    /// Fetches the manifest now and switches to it if it verifies and is not older.
    pub fn refresh(&self) {
        let etag = self.state.read().unwrap().etag.clone();
        match fetch(&self.http, &self.key, etag.as_deref()) {
            Ok(None) => {}
            Ok(Some((bytes, manifest, etag))) => {
                let current = self.manifest();
                if manifest.serial < current.serial {
                    log::error!(
                        "refusing manifest serial {}: older than the accepted serial {} (rollback?)",
                        manifest.serial,
                        current.serial
                    );
                    return;
                }
                if *current == manifest {
                    self.state.write().unwrap().etag = etag;
                    return;
                }
                log::info!("new manifest: serial {}", manifest.serial);
                save(&self.blobs, &self.saved, &bytes);
                self.blobs
                    .set_chunk_tables(manifest.chunked.iter().map(|(f, t)| (*f, *t)).collect());
                *self.state.write().unwrap() = State {
                    manifest: Arc::new(manifest),
                    etag,
                };
            }
            Err(e @ (RemoteError::BadSignature { .. } | RemoteError::BadManifest { .. })) => {
                log::error!("{e}")
            }
            Err(e) => log::warn!("cannot check for a new manifest: {e}"),
        }
    }

    /// Fetches the profile's tree pack into the cache (once per document) and starts the
    /// prefetch of its recorded files. Both are hints: failures are logged.
    fn warm(&self, entry: &PublishedProfile) {
        if !self.warmed.lock().unwrap().insert(entry.document) {
            return;
        }
        if let Some(pack) = entry.trees {
            match self.blobs.read(&pack) {
                Ok(bytes) => match decode_pack(&bytes) {
                    Some(trees) => {
                        for (digest, body) in trees {
                            if let Err(e) = self.blobs.insert(&digest, body) {
                                log::warn!("tree pack {pack}: {e}");
                            }
                        }
                    }
                    None => log::error!("tree pack {pack} is malformed; ignoring it"),
                },
                Err(e) => log::warn!("cannot fetch tree pack {pack}: {e}"),
            }
        }
        if let Some(list) = entry.prefetch {
            match self.blobs.read(&list) {
                Ok(bytes) => {
                    let digests: Vec<Digest> = String::from_utf8_lossy(&bytes)
                        .lines()
                        .filter_map(|l| Digest::from_hex(l.trim()).ok())
                        .collect();
                    log::info!("prefetching {} recorded files", digests.len());
                    self.blobs.prefetch(digests);
                }
                Err(e) => log::warn!("cannot fetch prefetch list {list}: {e}"),
            }
        }
    }
}

/// GETs and verifies the manifest. `Ok(None)`: not modified (with `etag`) or absent.
#[allow(clippy::type_complexity)]
fn fetch(
    http: &HttpBlobService,
    key: &PublicKey,
    etag: Option<&str>,
) -> Result<Option<(Vec<u8>, Manifest, Option<String>)>, RemoteError> {
    match http.get(MANIFEST, etag)? {
        Some(Fetched::Body { bytes, url, etag }) => {
            let manifest = Manifest::verify(&bytes, key, &url).inspect_err(|e| log::error!("{e}"))?;
            Ok(Some((bytes, manifest, etag)))
        }
        Some(Fetched::NotModified) | None => Ok(None),
    }
}

fn save(blobs: &CachedBlobService, path: &std::path::Path, bytes: &[u8]) {
    let tmp = blobs.root().join("tmp").join(format!(
        "manifest-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        log::warn!("cannot save the manifest to {}: {e}", path.display());
    }
}

impl Catalog for RemoteCatalog {
    fn profile(&self, name: &str) -> Result<Option<(Generation, ProfileDoc)>, StoreError> {
        let manifest = self.manifest();
        let Some(entry) = manifest.profiles.get(name) else {
            return Ok(None);
        };
        let cached = self.docs.lock().unwrap().get(&entry.document).cloned();
        let doc = match cached {
            Some(doc) => doc,
            None => {
                let doc = load_doc(self.blobs.as_ref(), &entry.document)?;
                self.docs.lock().unwrap().insert(entry.document, doc.clone());
                doc
            }
        };
        self.warm(entry);
        Ok(Some((
            Generation {
                name: name.to_string(),
                number: manifest.serial,
                document: entry.document,
            },
            doc,
        )))
    }

    fn profile_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.manifest().profiles.keys().cloned().collect())
    }

    fn artifacts(&self) -> Result<Vec<(ArtifactId, Digest)>, StoreError> {
        Ok(self
            .manifest()
            .artifacts
            .iter()
            .map(|(id, a)| (id.clone(), a.root))
            .collect())
    }

    fn artifact_root(&self, id: &ArtifactId) -> Result<Option<Digest>, StoreError> {
        Ok(self.manifest().artifacts.get(id).map(|a| a.root))
    }
}
