//! The logical view a mount presents, independent of FUSE: inodes, attributes and listings.
//!
//! Inodes are numbered as they are first met and never reused for the life of the mount.
//! Files and symlinks are keyed by what `stat` shows of them: content, executable bit and
//! mtime (identical files with the same mtime anywhere share one inode, so they share the page
//! cache; the same content with another mtime is another inode, so each shows its own mtime).
//! Directories are keyed by their position (parent inode + name), since the kernel does not
//! allow one directory inode at two places.
//!
//! Every entry shows the mtime its tree records; a directory merged from several artifacts
//! shows that of the first artifact's directory (see `hdist_store::union`). What no tree entry
//! describes (mount roots, artifact roots, the store-wide `artifacts/` and `profiles/` listings)
//! shows [`Mtime::UNRECORDED`].
//!
//! Directory listings are computed on first use by merging the artifact trees (see
//! `hdist_store::union`) and kept; nothing is done per file at mount time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use hdist_store::artifact::ArtifactId;
use hdist_store::blob::BlobService;
use hdist_store::catalog::Catalog;
use hdist_store::hash::Digest;
use hdist_store::tree::Mtime;
use hdist_store::union::{self, UnionNode};

use crate::FsError;

/// What the root of a mount shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewRoot {
    /// The union of a named profile's current generation.
    Profile(String),
    /// One artifact.
    Artifact(ArtifactId),
    /// `artifacts/<name>/<hash>/` and `profiles/<name>/` for the whole store.
    All,
}

/// What an inode is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A directory merged from trees.
    Union(Arc<[Digest]>),
    /// A regular file.
    File {
        digest: Digest,
        size: u64,
        executable: bool,
    },
    /// A symlink.
    Symlink(Arc<[u8]>),
    /// Root of a store-wide view.
    AllRoot,
    /// `artifacts/`.
    ArtifactsDir,
    /// `artifacts/<name>/`.
    ArtifactNameDir(Arc<str>),
    /// `profiles/`.
    ProfilesDir,
    /// A profile's root: the union of its current generation, followed across switches.
    ProfileDir(Arc<str>),
}

impl Kind {
    /// Whether this is a directory of any sort.
    pub fn is_dir(&self) -> bool {
        !matches!(self, Kind::File { .. } | Kind::Symlink(_))
    }

    /// Whether its content can change while mounted (store-wide listings).
    pub fn is_volatile(&self) -> bool {
        matches!(
            self,
            Kind::AllRoot | Kind::ArtifactsDir | Kind::ArtifactNameDir(_) | Kind::ProfilesDir
        )
    }

    fn from_union(node: UnionNode) -> Kind {
        match node {
            UnionNode::Directory(trees) => Kind::Union(trees),
            UnionNode::File {
                digest,
                size,
                executable,
            } => Kind::File {
                digest,
                size,
                executable,
            },
            UnionNode::Symlink(target) => Kind::Symlink(target),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Content(Kind, Mtime),
    // Parent inode, name, and the parent profile's epoch (0 elsewhere): after a generation
    // switch a profile's entries get new inodes, while open files keep their old ones.
    Position(u64, Box<[u8]>, u64),
}

/// The generation a view currently shows for one profile.
#[derive(Debug, Clone)]
struct ProfileState {
    document: Option<Digest>,
    trees: Arc<[Digest]>,
    epoch: u64,
    inodes: Vec<u64>,
}

/// Kernel cache entries to drop after a profile switched generation.
#[derive(Debug, Clone)]
pub struct Invalidation {
    /// The profile directory's inode.
    pub parent: u64,
    /// Names it listed before the switch.
    pub names: Vec<Box<[u8]>>,
}

/// A directory listing: (name, inode, kind), sorted by name.
pub type Listing = Arc<[(Box<[u8]>, u64, Kind)]>;

#[derive(Debug, Default)]
struct Table {
    by_key: HashMap<Key, u64>,
    kinds: Vec<Kind>,
    // Indexed like `kinds`.
    mtimes: Vec<Mtime>,
    // First path each file inode was met at, for error messages.
    where_seen: HashMap<u64, Box<[u8]>>,
}

/// The view of one mount.
#[derive(Debug)]
pub struct View {
    blobs: Arc<dyn BlobService>,
    catalog: Arc<dyn Catalog>,
    table: RwLock<Table>,
    listings: Mutex<HashMap<u64, Listing>>,
    profiles: Mutex<HashMap<Arc<str>, ProfileState>>,
}

/// Inode number of the root.
pub const ROOT: u64 = 1;

impl View {
    /// Builds the view; resolves the root (one catalog lookup) and nothing else.
    pub fn new(
        blobs: Arc<dyn BlobService>,
        catalog: Arc<dyn Catalog>,
        root: &ViewRoot,
    ) -> Result<View, FsError> {
        let root_kind = match root {
            ViewRoot::All => Kind::AllRoot,
            ViewRoot::Profile(name) => {
                if catalog.current_document(name)?.is_none() {
                    return Err(FsError::UnknownRoot(format!("profile {name:?}")));
                }
                Kind::ProfileDir(name.as_str().into())
            }
            ViewRoot::Artifact(id) => {
                let root = catalog
                    .artifact_root(id)?
                    .ok_or_else(|| FsError::UnknownRoot(format!("artifact {id}")))?;
                Kind::Union(Arc::from(vec![root]))
            }
        };
        let table = Table {
            kinds: vec![root_kind],
            mtimes: vec![Mtime::UNRECORDED],
            ..Default::default()
        };
        Ok(View {
            blobs,
            catalog,
            table: RwLock::new(table),
            listings: Mutex::new(HashMap::new()),
            profiles: Mutex::new(HashMap::new()),
        })
    }

    fn load_profile(&self, name: &str) -> Result<(Option<Digest>, Arc<[Digest]>), FsError> {
        // Asking for the current document first also lets the catalog start watching the
        // profile, so the very first switch is noticed at once.
        self.catalog.current_document(name)?;
        Ok(match self.catalog.profile(name)? {
            Some((generation, doc)) => (
                Some(generation.document),
                doc.artifacts.iter().map(|a| a.shown_root()).collect(),
            ),
            None => (None, Arc::from(Vec::new())),
        })
    }

    /// The trees and epoch a profile directory shows now (loaded on first use).
    fn profile_state(&self, name: &Arc<str>, ino: u64) -> Result<(Arc<[Digest]>, u64), FsError> {
        if let Some(state) = self.profiles.lock().unwrap().get_mut(name) {
            if !state.inodes.contains(&ino) {
                state.inodes.push(ino);
            }
            return Ok((state.trees.clone(), state.epoch));
        }
        let (document, trees) = self.load_profile(name)?;
        let mut profiles = self.profiles.lock().unwrap();
        let state = profiles.entry(name.clone()).or_insert(ProfileState {
            document,
            trees,
            epoch: 1,
            inodes: Vec::new(),
        });
        if !state.inodes.contains(&ino) {
            state.inodes.push(ino);
        }
        Ok((state.trees.clone(), state.epoch))
    }

    /// Re-reads the current generation of every profile shown; for each that switched,
    /// drops its cached listings and returns what the kernel must forget. Cheap when nothing
    /// changed (one `current_document` call per profile).
    pub fn refresh_profiles(&self) -> Vec<Invalidation> {
        let names: Vec<Arc<str>> = self.profiles.lock().unwrap().keys().cloned().collect();
        let mut out = Vec::new();
        for name in names {
            let current = match self.catalog.current_document(&name) {
                Ok(current) => current,
                Err(e) => {
                    log::warn!("cannot check profile {name}: {e}");
                    continue;
                }
            };
            let known = self.profiles.lock().unwrap().get(&name).map(|s| s.document);
            if known == Some(current) {
                continue;
            }
            let (document, trees) = match self.load_profile(&name) {
                Ok(loaded) => loaded,
                Err(e) => {
                    log::warn!("cannot load the new generation of profile {name}: {e}");
                    continue;
                }
            };
            let inodes = {
                let mut profiles = self.profiles.lock().unwrap();
                let Some(state) = profiles.get_mut(&name) else {
                    continue;
                };
                state.document = document;
                state.trees = trees;
                state.epoch += 1;
                state.inodes.clone()
            };
            log::info!("profile {name} switched to {document:?}");
            let mut listings = self.listings.lock().unwrap();
            for ino in inodes {
                let names = listings
                    .remove(&ino)
                    .map(|l| l.iter().map(|(n, _, _)| n.clone()).collect())
                    .unwrap_or_default();
                out.push(Invalidation { parent: ino, names });
            }
        }
        out
    }

    /// The catalog (for change notifications).
    pub fn catalog(&self) -> &Arc<dyn Catalog> {
        &self.catalog
    }

    /// The blob service (for opening files).
    pub fn blobs(&self) -> &Arc<dyn BlobService> {
        &self.blobs
    }

    /// The kind of inode `ino`, if it exists.
    pub fn kind(&self, ino: u64) -> Option<Kind> {
        let table = self.table.read().unwrap();
        table.kinds.get(ino.checked_sub(1)? as usize).cloned()
    }

    /// The mtime inode `ino` shows ([`Mtime::UNRECORDED`] for an unknown inode).
    pub fn mtime(&self, ino: u64) -> Mtime {
        let table = self.table.read().unwrap();
        ino.checked_sub(1)
            .and_then(|index| table.mtimes.get(index as usize))
            .copied()
            .unwrap_or(Mtime::UNRECORDED)
    }

    /// Where a file inode was first seen (for logs).
    pub fn seen_at(&self, ino: u64) -> String {
        let table = self.table.read().unwrap();
        table
            .where_seen
            .get(&ino)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_else(|| format!("inode {ino}"))
    }

    fn intern(&self, parent: u64, epoch: u64, name: &[u8], kind: Kind, mtime: Mtime) -> u64 {
        let key = if kind.is_dir() {
            Key::Position(parent, name.into(), epoch)
        } else {
            Key::Content(kind.clone(), mtime)
        };
        if let Some(ino) = self.table.read().unwrap().by_key.get(&key) {
            return *ino;
        }
        let mut table = self.table.write().unwrap();
        if let Some(ino) = table.by_key.get(&key) {
            return *ino;
        }
        table.kinds.push(kind);
        table.mtimes.push(mtime);
        let ino = table.kinds.len() as u64;
        table.by_key.insert(key, ino);
        if matches!(table.kinds[ino as usize - 1], Kind::File { .. }) {
            table.where_seen.insert(ino, name.into());
        }
        ino
    }

    /// The listing of directory `ino` (computed once, except for volatile directories).
    pub fn listing(&self, ino: u64) -> Result<Listing, FsError> {
        if let Some(listing) = self.listings.lock().unwrap().get(&ino) {
            return Ok(listing.clone());
        }
        let kind = self.kind(ino).ok_or(FsError::NoSuchInode(ino))?;
        let mut epoch = 0;
        let unrecorded = |(name, kind)| (name, kind, Mtime::UNRECORDED);
        let entries: Vec<(Box<[u8]>, Kind, Mtime)> = match &kind {
            Kind::Union(trees) => union::merge(self.blobs.as_ref(), trees)
                .map_err(|e| FsError::Store(e.into()))?
                .into_iter()
                .map(|(name, node, mtime)| (name, Kind::from_union(node), mtime))
                .collect(),
            Kind::AllRoot => vec![
                (b"artifacts"[..].into(), Kind::ArtifactsDir),
                (b"profiles"[..].into(), Kind::ProfilesDir),
            ]
            .into_iter()
            .map(unrecorded)
            .collect(),
            Kind::ArtifactsDir => {
                let mut names: Vec<String> = self
                    .catalog
                    .artifacts()?
                    .into_iter()
                    .map(|(id, _)| id.name().to_string())
                    .collect();
                names.sort();
                names.dedup();
                names
                    .into_iter()
                    .map(|n| (n.as_bytes().into(), Kind::ArtifactNameDir(n.into())))
                    .map(unrecorded)
                    .collect()
            }
            Kind::ArtifactNameDir(name) => self
                .catalog
                .artifacts()?
                .into_iter()
                .filter(|(id, _)| id.name() == &**name)
                .map(|(id, root)| {
                    (
                        id.hash().to_string().into_bytes().into(),
                        Kind::Union(Arc::from(vec![root])),
                    )
                })
                .map(unrecorded)
                .collect(),
            Kind::ProfilesDir => self
                .catalog
                .profile_names()?
                .into_iter()
                .map(|n| (n.as_bytes().into(), Kind::ProfileDir(n.into())))
                .map(unrecorded)
                .collect(),
            Kind::ProfileDir(name) => {
                let (trees, profile_epoch) = self.profile_state(name, ino)?;
                epoch = profile_epoch;
                union::merge(self.blobs.as_ref(), &trees)
                    .map_err(|e| FsError::Store(e.into()))?
                    .into_iter()
                    .map(|(name, node, mtime)| (name, Kind::from_union(node), mtime))
                    .collect()
            }
            Kind::File { .. } | Kind::Symlink(_) => return Err(FsError::NotADirectory(ino)),
        };
        let listing: Listing = entries
            .into_iter()
            .map(|(name, kind, mtime)| {
                let child = self.intern(ino, epoch, &name, kind.clone(), mtime);
                (name, child, kind)
            })
            .collect();
        if !kind.is_volatile() {
            let mut listings = self.listings.lock().unwrap();
            // A switch may have happened while this listing was computed: caching it would
            // pin the old generation until the next switch.
            let stale = match &kind {
                Kind::ProfileDir(name) => {
                    self.profiles.lock().unwrap().get(name).map(|s| s.epoch) != Some(epoch)
                }
                _ => false,
            };
            if !stale {
                listings.insert(ino, listing.clone());
            }
        }
        Ok(listing)
    }

    /// Looks up `name` in directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Option<(u64, Kind)>, FsError> {
        let listing = self.listing(parent)?;
        Ok(listing
            .binary_search_by(|(n, _, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| (listing[i].1, listing[i].2.clone())))
    }
}

/// The view over the memory backends: lookups, unions and generation switches, without FUSE.
#[cfg(test)]
mod tests {
    use super::*;
    use hdist_store::blob::MemoryBlobService;
    use hdist_store::catalog::MemoryCatalog;
    use hdist_store::hash::ShortDigest;
    use hdist_store::profile::{ProfileArtifact, ProfileDoc};
    use hdist_store::tree::{Entry, Node, Tree};

    /// What a test tree holds at one name.
    enum Item<'a> {
        File(&'a [u8], bool),
        Link(&'a [u8]),
        Dir(Vec<(&'a str, Item<'a>)>),
    }

    fn mtime(seconds: i64) -> Mtime {
        Mtime::new(seconds, 0).unwrap()
    }

    /// Stores the tree of `entries` (every entry with mtime `seconds`); returns its digest.
    fn tree(blobs: &MemoryBlobService, seconds: i64, entries: Vec<(&str, Item<'_>)>) -> Digest {
        let entries = entries
            .into_iter()
            .map(|(name, item)| Entry {
                name: name.as_bytes().to_vec(),
                node: match item {
                    Item::File(bytes, executable) => Node::File {
                        digest: blobs.insert(bytes),
                        size: bytes.len() as u64,
                        executable,
                    },
                    Item::Link(target) => Node::Symlink {
                        target: target.to_vec(),
                    },
                    Item::Dir(children) => Node::Directory {
                        digest: tree(blobs, seconds, children),
                    },
                },
                mtime: mtime(seconds),
            })
            .collect();
        blobs.insert(&Tree::new(entries).unwrap().encode())
    }

    fn artifact(catalog: &MemoryCatalog, name: &str, root: Digest) -> ProfileArtifact {
        let id = ArtifactId::new(name, ShortDigest::of(name.as_bytes())).unwrap();
        catalog.add_artifact(id.clone(), root);
        ProfileArtifact {
            id,
            root,
            rules: Vec::new(),
            view: None,
        }
    }

    fn doc(artifacts: &[&ProfileArtifact]) -> ProfileDoc {
        ProfileDoc {
            artifacts: artifacts.iter().map(|a| (*a).clone()).collect(),
            env: Default::default(),
        }
    }

    /// Two artifacts: `a` has bin/a, share/x = "from a", clash/ (a directory); `b` has bin/b,
    /// share/x = "from b", clash (a file), lib -> bin.
    struct Fixture {
        blobs: Arc<MemoryBlobService>,
        catalog: Arc<MemoryCatalog>,
        a: ProfileArtifact,
        b: ProfileArtifact,
    }

    fn fixture() -> Fixture {
        let blobs = Arc::new(MemoryBlobService::new());
        let catalog = Arc::new(MemoryCatalog::new());
        let root_a = tree(
            &blobs,
            100,
            vec![
                (
                    "bin",
                    Item::Dir(vec![("a", Item::File(b"#!/bin/sh\necho a\n", true))]),
                ),
                ("clash", Item::Dir(vec![("inside", Item::File(b"in a", false))])),
                ("share", Item::Dir(vec![("x", Item::File(b"from a", false))])),
            ],
        );
        let root_b = tree(
            &blobs,
            200,
            vec![
                (
                    "bin",
                    Item::Dir(vec![("b", Item::File(b"#!/bin/sh\necho b\n", true))]),
                ),
                ("clash", Item::File(b"a file in b", false)),
                ("lib", Item::Link(b"bin")),
                ("share", Item::Dir(vec![("x", Item::File(b"from b", false))])),
            ],
        );
        let a = artifact(&catalog, "a", root_a);
        let b = artifact(&catalog, "b", root_b);
        Fixture { blobs, catalog, a, b }
    }

    fn view(fixture: &Fixture, root: ViewRoot) -> View {
        View::new(fixture.blobs.clone(), fixture.catalog.clone(), &root).unwrap()
    }

    /// The inode at `path` (`/`-separated) below the root; panics if absent.
    fn walk(view: &View, path: &str) -> (u64, Kind) {
        let mut at = (ROOT, view.kind(ROOT).unwrap());
        for name in path.split('/') {
            at = view
                .lookup(at.0, name.as_bytes())
                .unwrap()
                .unwrap_or_else(|| panic!("{path}: no {name}"));
        }
        at
    }

    fn names(view: &View, ino: u64) -> Vec<String> {
        let listing = view.listing(ino).unwrap();
        listing
            .iter()
            .map(|(name, _, _)| String::from_utf8_lossy(name).into_owned())
            .collect()
    }

    fn file_bytes(view: &View, kind: &Kind) -> Vec<u8> {
        match kind {
            Kind::File { digest, .. } => view.blobs().read(digest).unwrap(),
            other => panic!("not a file: {other:?}"),
        }
    }

    #[test]
    fn artifact_view_looks_up_files_links_and_mtimes() {
        let fixture = fixture();
        let view = view(&fixture, ViewRoot::Artifact(fixture.b.id.clone()));
        assert_eq!(names(&view, ROOT), ["bin", "clash", "lib", "share"]);
        let (ino, kind) = walk(&view, "bin/b");
        assert_eq!(
            kind,
            Kind::File {
                digest: Digest::of(b"#!/bin/sh\necho b\n"),
                size: 17,
                executable: true
            }
        );
        assert_eq!(view.mtime(ino), mtime(200));
        assert_eq!(view.seen_at(ino), "b");
        assert_eq!(walk(&view, "lib").1, Kind::Symlink(Arc::from(&b"bin"[..])));
        assert_eq!(view.mtime(ROOT), Mtime::UNRECORDED);
        assert_eq!(view.lookup(ROOT, b"missing").unwrap(), None);
        assert!(matches!(view.listing(ino), Err(FsError::NotADirectory(i)) if i == ino));
        assert!(matches!(view.listing(9999), Err(FsError::NoSuchInode(9999))));
        // Looking up again hands out the same inode.
        assert_eq!(walk(&view, "bin/b").0, ino);
    }

    #[test]
    fn unknown_roots_are_refused() {
        let fixture = fixture();
        let blobs: Arc<dyn BlobService> = fixture.blobs.clone();
        let catalog: Arc<dyn Catalog> = fixture.catalog.clone();
        let missing = ViewRoot::Profile("missing".into());
        assert!(matches!(
            View::new(blobs.clone(), catalog.clone(), &missing),
            Err(FsError::UnknownRoot(_))
        ));
        let id = ArtifactId::new("missing", ShortDigest::of(b"missing")).unwrap();
        assert!(matches!(
            View::new(blobs, catalog, &ViewRoot::Artifact(id)),
            Err(FsError::UnknownRoot(_))
        ));
    }

    #[test]
    fn profile_view_is_the_union_first_artifact_first() {
        let fixture = fixture();
        fixture
            .catalog
            .set_profile("main", doc(&[&fixture.a, &fixture.b]));
        let view = view(&fixture, ViewRoot::Profile("main".into()));
        assert_eq!(names(&view, ROOT), ["bin", "clash", "lib", "share"]);
        // Directories of both merge; the first artifact's mtime shows.
        let (bin, _) = walk(&view, "bin");
        assert_eq!(names(&view, bin), ["a", "b"]);
        assert_eq!(view.mtime(bin), mtime(100));
        // A name both have as files: the first artifact's.
        assert_eq!(file_bytes(&view, &walk(&view, "share/x").1), b"from a");
        // A directory in the first shadows a file in the second.
        let (clash, kind) = walk(&view, "clash");
        assert!(
            matches!(kind, Kind::Union(ref trees) if trees.len() == 1),
            "{kind:?}"
        );
        assert_eq!(names(&view, clash), ["inside"]);
    }

    #[test]
    fn identical_files_share_an_inode_and_other_mtimes_do_not() {
        let fixture = fixture();
        let same = tree(
            &fixture.blobs,
            100,
            vec![
                ("one", Item::File(b"same", false)),
                ("two", Item::File(b"same", false)),
            ],
        );
        let later = tree(&fixture.blobs, 300, vec![("three", Item::File(b"same", false))]);
        let a = artifact(&fixture.catalog, "same", same);
        let b = artifact(&fixture.catalog, "later", later);
        fixture.catalog.set_profile("main", doc(&[&a, &b]));
        let view = view(&fixture, ViewRoot::Profile("main".into()));
        assert_eq!(walk(&view, "one").0, walk(&view, "two").0);
        assert_ne!(walk(&view, "one").0, walk(&view, "three").0);
        assert_eq!(view.mtime(walk(&view, "three").0), mtime(300));
    }

    #[test]
    fn generation_switch_is_seen_after_refresh_only() {
        let fixture = fixture();
        fixture.catalog.set_profile("main", doc(&[&fixture.a]));
        let view = view(&fixture, ViewRoot::Profile("main".into()));
        let (old_x, old_kind) = walk(&view, "share/x");
        assert_eq!(names(&view, ROOT), ["bin", "clash", "share"]);
        assert!(view.refresh_profiles().is_empty(), "nothing switched yet");

        fixture.catalog.set_profile("main", doc(&[&fixture.b]));
        // Until refreshed, the listing kept is the old generation's.
        assert_eq!(names(&view, ROOT), ["bin", "clash", "share"]);
        let invalidations = view.refresh_profiles();
        assert_eq!(invalidations.len(), 1, "{invalidations:?}");
        assert_eq!(invalidations[0].parent, ROOT);
        let forgotten: Vec<&[u8]> = invalidations[0].names.iter().map(|n| &n[..]).collect();
        assert_eq!(forgotten, [&b"bin"[..], b"clash", b"share"]);

        assert_eq!(names(&view, ROOT), ["bin", "clash", "lib", "share"]);
        let (new_x, new_kind) = walk(&view, "share/x");
        assert_eq!(file_bytes(&view, &new_kind), b"from b");
        assert_ne!(new_x, old_x);
        // An inode handed out before the switch (an open file) still resolves.
        assert_eq!(view.kind(old_x), Some(old_kind));
        assert!(view.refresh_profiles().is_empty(), "no second switch");
    }

    #[test]
    fn store_wide_view_lists_artifacts_and_profiles() {
        let fixture = fixture();
        fixture.catalog.set_profile("main", doc(&[&fixture.a]));
        let view = view(&fixture, ViewRoot::All);
        assert_eq!(names(&view, ROOT), ["artifacts", "profiles"]);
        assert_eq!(names(&view, walk(&view, "artifacts").0), ["a", "b"]);
        let hash = fixture.b.id.hash().to_string();
        assert_eq!(
            names(&view, walk(&view, "artifacts/b").0),
            std::slice::from_ref(&hash)
        );
        let (_, bin_b) = walk(&view, &format!("artifacts/b/{hash}/bin/b"));
        assert_eq!(file_bytes(&view, &bin_b), b"#!/bin/sh\necho b\n");
        assert_eq!(names(&view, walk(&view, "profiles").0), ["main"]);
        assert_eq!(
            file_bytes(&view, &walk(&view, "profiles/main/share/x").1),
            b"from a"
        );
        // Store-wide listings are re-read: a new profile shows at once.
        fixture.catalog.set_profile("second", doc(&[&fixture.b]));
        assert_eq!(names(&view, walk(&view, "profiles").0), ["main", "second"]);
    }
}
