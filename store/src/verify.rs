//! `hdist store verify`: check the store against what is on disk, trusting nothing.
//!
//! Verification runs [`CHECKS`] in order over one [`Verification`]. The first re-hashes every
//! object file; the others walk the commit points on disk (see [`crate::commit`]), never the
//! index alone: every artifact document, every profile generation and the profile document it
//! names, every source document. For each they follow every tree and blob referenced and
//! report what is missing or corrupt as a [`Problem`] naming the artifact (or generation, or
//! source) and the path inside it that breaks. The last compares the index with the disk: rows
//! that run ahead of the disk (a row without its document or object) are problems; a disk
//! ahead of the index (a crash after a commit point) is a note, since the index may lag.
//!
//! The index is read before the disk is walked, and verification holds `gc.lock` shared (GC
//! and repair hold it exclusively): writers only add, and rows are written after what they
//! describe, so a concurrent writer cannot make a row look orphaned.
//!
//! With `repair`, verification holds `gc.lock` exclusively and then undoes what cannot be
//! completed, in the protocol's removal order: artifacts with missing or corrupt objects (index
//! row, then document), damaged artifact documents, source documents whose content is broken
//! (`hdist fetch` gets it again), corrupt object files (so the next writer stores them again),
//! and finally a reindex. Profile generations are the user's history and are never removed:
//! a broken one stays a problem until its artifacts are added again or the profile is switched.
//!
//! Then the decompressed and linkfarm copies (caches of verified objects, see
//! [`crate::blob::copies`]) are re-hashed; a bad copy is always dropped and re-made from its
//! object, and still fails verification, since something wrote to the store's files.
//!
//! Adding a check: write a `fn(&mut Verification<'_>) -> Result<(), StoreError>` that pushes
//! [`Problem`]s (with a [`Fix`] where one exists) and append it to [`CHECKS`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;

use crate::artifact::ArtifactId;
use crate::blob::CopiesReport;
use crate::hash::Digest;
use crate::source::SourceKey;
use crate::store::{Store, StoreError};
use crate::tree::{Node, Tree};
use crate::IoContext;

/// One step of verification.
#[derive(Debug)]
pub struct Check {
    /// What it checks, for messages.
    pub name: &'static str,
    /// Runs it, adding to the verification's report.
    pub run: fn(&mut Verification<'_>) -> Result<(), StoreError>,
}

/// The checks `hdist store verify` runs, in order (objects first: the others use its result).
pub const CHECKS: &[Check] = &[
    Check {
        name: "objects",
        run: check_objects,
    },
    Check {
        name: "artifact documents",
        run: check_artifacts,
    },
    Check {
        name: "profile generations",
        run: check_profiles,
    },
    Check {
        name: "source documents",
        run: check_sources,
    },
    Check {
        name: "index",
        run: check_index,
    },
    Check {
        name: "decompressed copies",
        run: check_copies,
    },
];

/// What kind of problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    /// An object's bytes do not hash to its name, or do not decode.
    Corrupt,
    /// A referenced object is absent.
    Missing,
    /// A document that does not parse or names the wrong thing.
    Damaged,
    /// The index lists something the disk does not have.
    Index,
}

impl ProblemKind {
    fn word(self) -> &'static str {
        match self {
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::Missing => "missing",
            ProblemKind::Damaged => "damaged",
            ProblemKind::Index => "index",
        }
    }
}

/// What `--repair` does about a problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fix {
    /// Remove the artifact (index row, then document); the next add or build redoes it.
    RemoveArtifact(ArtifactId),
    /// Remove a damaged document file.
    RemoveDocument(PathBuf),
    /// Remove a source document; `hdist fetch` gets the source again.
    RemoveSource(SourceKey),
    /// Remove a corrupt object file; the next writer of that content stores it again.
    RemoveObject(PathBuf),
    /// Rebuild the index from the disk.
    Reindex,
}

/// One thing that is wrong.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The object concerned, if one is.
    pub digest: Option<Digest>,
    /// What it breaks: `artifact NAME/HASH`, `profile NAME generation N`, `source KEY`,
    /// `document PATH`, `object file PATH`.
    pub subject: String,
    /// The path inside the artifact, profile or source tree (`.` for its root).
    pub path: Option<String>,
    /// Why.
    pub detail: String,
    /// What `--repair` does about it (`None`: needs the user).
    pub fix: Option<Fix>,
}

impl Problem {
    /// A document or file that cannot be read as what it should be.
    fn damaged(
        subject: String,
        digest: Option<Digest>,
        error: &dyn std::error::Error,
        fix: Option<Fix>,
    ) -> Problem {
        Problem {
            kind: ProblemKind::Damaged,
            digest,
            subject,
            path: None,
            detail: crate::error_chain(error),
            fix,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind.word())?;
        if let Some(digest) = &self.digest {
            write!(f, " {digest}")?;
        }
        write!(f, ": {}", self.subject)?;
        if let Some(path) = &self.path {
            write!(f, ", path {path}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// What verification found (and, with repair, did).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Object files re-hashed.
    pub checked: u64,
    /// Everything found wrong, in the order found.
    pub problems: Vec<Problem>,
    /// Things that are allowed but worth knowing (an index lagging behind the disk).
    pub notes: Vec<String>,
    /// What repair did, one line per action.
    pub repaired: Vec<String>,
    /// The decompressed and linkfarm copies, re-hashed; bad ones were re-made.
    pub copies: CopiesReport,
}

impl VerifyReport {
    /// Whether nothing is wrong, or everything wrong was repaired.
    /// A bad copy counts, even once re-made: something wrote to the store's files.
    pub fn is_clean(&self) -> bool {
        let problems_settled = self.problems.is_empty()
            || (!self.repaired.is_empty() && self.problems.iter().all(|p| p.fix.is_some()));
        problems_settled && self.copies.bad.is_empty()
    }
}

/// A problem found below a tree, relative to it (shared subtrees are checked once).
#[derive(Debug, Clone)]
struct Issue {
    kind: ProblemKind,
    digest: Digest,
    path: Vec<Vec<u8>>,
    detail: String,
}

/// The state the checks share.
pub struct Verification<'a> {
    /// The store.
    pub store: &'a Store,
    /// Called with the stored bytes of each object re-hashed.
    pub progress: &'a (dyn Fn(u64) + Sync),
    /// The report being filled.
    pub report: VerifyReport,
    /// Objects whose files hash right.
    pub present: HashSet<Digest>,
    /// Objects whose files are wrong, with why.
    pub corrupt: HashMap<Digest, String>,
    /// Artifact ids the index listed, read before the disk was walked.
    pub indexed_artifacts: Vec<ArtifactId>,
    /// Object digests the index listed, read before the disk was walked.
    pub indexed_objects: Vec<Digest>,
    /// Artifact ids whose documents were read.
    pub documented_artifacts: HashSet<ArtifactId>,
    trees: HashMap<Digest, Rc<Vec<Issue>>>,
}

impl fmt::Debug for Verification<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verification")
            .field("store", &self.store.root())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// Verifies `store` (see the module docs); with `repair`, also repairs what it can.
/// `progress` is called with the stored bytes of each object re-hashed.
pub fn verify_store(
    store: &Store,
    repair: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifyReport, StoreError> {
    let _lock = if repair {
        store.exclusive_lock()?
    } else {
        store.writer_lock()?
    };
    let mut verification = Verification {
        store,
        progress,
        report: VerifyReport::default(),
        present: HashSet::new(),
        corrupt: HashMap::new(),
        indexed_artifacts: store
            .index()
            .artifacts_with_prefix("")?
            .into_iter()
            .map(|r| r.id)
            .collect(),
        indexed_objects: store.index().object_digests()?,
        documented_artifacts: HashSet::new(),
        trees: HashMap::new(),
    };
    for check in CHECKS {
        log::debug!("verify: {}", check.name);
        (check.run)(&mut verification)?;
    }
    if repair && !verification.report.problems.is_empty() {
        apply_fixes(store, &mut verification.report)?;
    }
    Ok(verification.report)
}

impl Verification<'_> {
    /// Records a problem.
    pub fn problem(&mut self, problem: Problem) {
        self.report.problems.push(problem);
    }

    fn object_issue(&self, digest: &Digest) -> Option<(ProblemKind, String)> {
        if let Some(why) = self.corrupt.get(digest) {
            Some((ProblemKind::Corrupt, why.clone()))
        } else if !self.present.contains(digest) {
            Some((ProblemKind::Missing, "not in objects/".to_string()))
        } else {
            None
        }
    }

    /// Problems below the tree `digest`, relative to it.
    fn tree_issues(&mut self, digest: &Digest) -> Rc<Vec<Issue>> {
        if let Some(known) = self.trees.get(digest) {
            return known.clone();
        }
        let mut issues = Vec::new();
        if let Some((kind, detail)) = self.object_issue(digest) {
            issues.push(Issue {
                kind,
                digest: *digest,
                path: Vec::new(),
                detail: format!("tree {detail}"),
            });
        } else {
            match Tree::load(self.store.blobs().as_ref(), digest) {
                Err(e) => issues.push(Issue {
                    kind: ProblemKind::Corrupt,
                    digest: *digest,
                    path: Vec::new(),
                    detail: crate::error_chain(&e),
                }),
                Ok(tree) => {
                    for entry in tree.entries() {
                        let below: Vec<Issue> = match &entry.node {
                            Node::Directory { digest } => self.tree_issues(digest).as_ref().clone(),
                            Node::File { digest, .. } => self
                                .object_issue(digest)
                                .map(|(kind, detail)| Issue {
                                    kind,
                                    digest: *digest,
                                    path: Vec::new(),
                                    detail: format!("file {detail}"),
                                })
                                .into_iter()
                                .collect(),
                            Node::Symlink { .. } => Vec::new(),
                        };
                        for mut issue in below {
                            issue.path.insert(0, entry.name.clone());
                            issues.push(issue);
                        }
                    }
                }
            }
        }
        let issues = Rc::new(issues);
        self.trees.insert(*digest, issues.clone());
        issues
    }

    /// Reports every problem below `root` as breaking `subject`; returns whether there was one.
    fn check_tree(&mut self, root: &Digest, subject: &str, fix: Option<Fix>) -> bool {
        let issues = self.tree_issues(root);
        for issue in issues.iter() {
            let path = if issue.path.is_empty() {
                ".".to_string()
            } else {
                issue
                    .path
                    .iter()
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            };
            self.problem(Problem {
                kind: issue.kind,
                digest: Some(issue.digest),
                subject: subject.to_string(),
                path: Some(path),
                detail: issue.detail.clone(),
                fix: fix.clone(),
            });
        }
        !issues.is_empty()
    }

    /// Reports a single referenced blob; returns whether it is broken.
    fn check_blob(&mut self, digest: &Digest, subject: &str, what: &str, fix: Option<Fix>) -> bool {
        let Some((kind, detail)) = self.object_issue(digest) else {
            return false;
        };
        self.problem(Problem {
            kind,
            digest: Some(*digest),
            subject: subject.to_string(),
            path: None,
            detail: format!("{what} {detail}"),
            fix,
        });
        true
    }
}

fn check_objects(v: &mut Verification<'_>) -> Result<(), StoreError> {
    use rayon::prelude::*;
    let blobs = v.store.objects().clone();
    let objects = blobs.list()?;
    let progress = v.progress;
    let results: Vec<_> = objects
        .par_iter()
        .map(|object| {
            let result = blobs.verify(object);
            progress(object.stored_size);
            result
        })
        .collect();
    v.report.checked = objects.len() as u64;
    for (object, result) in objects.iter().zip(results) {
        match result {
            Ok(_) => {
                v.present.insert(object.digest);
            }
            Err(e) => {
                v.corrupt.insert(object.digest, crate::error_chain(&e));
                v.problem(Problem {
                    kind: ProblemKind::Corrupt,
                    digest: Some(object.digest),
                    subject: format!("object file {}", object.path.display()),
                    path: None,
                    detail: crate::error_chain(&e),
                    fix: Some(Fix::RemoveObject(object.path.clone())),
                });
            }
        }
    }
    Ok(())
}

fn check_artifacts(v: &mut Verification<'_>) -> Result<(), StoreError> {
    for scanned in v.store.scan_artifact_documents()? {
        let record = match scanned.record {
            Ok(record) => record,
            Err(e) => {
                v.problem(Problem::damaged(
                    format!("document {}", scanned.path.display()),
                    None,
                    &e,
                    Some(Fix::RemoveDocument(scanned.path)),
                ));
                continue;
            }
        };
        let subject = format!("artifact {}", record.id);
        let fix = Some(Fix::RemoveArtifact(record.id.clone()));
        v.check_tree(&record.root, &subject, fix.clone());
        if let Some(log) = record.build_log {
            v.check_blob(&log, &subject, "build log", fix);
        }
        v.documented_artifacts.insert(record.id);
    }
    Ok(())
}

fn check_profiles(v: &mut Verification<'_>) -> Result<(), StoreError> {
    let dir = v.store.root().join("profiles");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .io_context("list", &dir)?
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    names.sort();
    for name in names {
        if let Err(e) = v.store.profiles().current(&name) {
            v.problem(Problem::damaged(format!("profile {name}"), None, &e, None));
        }
        let generations = match v.store.profiles().generations(&name) {
            Ok(generations) => generations,
            Err(e) => {
                v.problem(Problem::damaged(format!("profile {name}"), None, &e, None));
                continue;
            }
        };
        for generation in generations {
            let subject = format!("profile {name} generation {}", generation.number);
            if v.check_blob(&generation.document, &subject, "profile document", None) {
                continue;
            }
            let doc = match v.store.profiles().doc(&generation.document) {
                Ok(doc) => doc,
                Err(e) => {
                    v.problem(Problem::damaged(subject, Some(generation.document), &e, None));
                    continue;
                }
            };
            for artifact in &doc.artifacts {
                let subject = format!("{subject} (artifact {})", artifact.id);
                v.check_tree(&artifact.root, &subject, None);
                if let Some(view) = artifact.view {
                    v.check_tree(&view, &format!("{subject} view"), None);
                }
            }
        }
    }
    Ok(())
}

fn check_sources(v: &mut Verification<'_>) -> Result<(), StoreError> {
    let sources = match crate::source::list_sources(v.store) {
        Ok(sources) => sources,
        Err(e) => {
            v.problem(Problem::damaged("source documents".to_string(), None, &e, None));
            return Ok(());
        }
    };
    for source in sources {
        let subject = format!("source {}", source.key);
        let fix = Some(Fix::RemoveSource(source.key));
        match source.content {
            crate::source::SourceContent::Blob(digest) => {
                v.check_blob(&digest, &subject, "archive", fix);
            }
            crate::source::SourceContent::Tree(digest) => {
                v.check_tree(&digest, &subject, fix);
            }
        }
    }
    Ok(())
}

fn check_index(v: &mut Verification<'_>) -> Result<(), StoreError> {
    let indexed: HashSet<ArtifactId> = v.indexed_artifacts.iter().cloned().collect();
    for id in &v.indexed_artifacts.clone() {
        if !v.documented_artifacts.contains(id) {
            let path = v.store.document_path(id);
            v.problem(Problem {
                kind: ProblemKind::Index,
                digest: None,
                subject: format!("artifact {id}"),
                path: None,
                detail: format!("the index lists it, but its document {} is gone", path.display()),
                fix: Some(Fix::Reindex),
            });
        }
    }
    let indexed_objects: HashSet<Digest> = v.indexed_objects.iter().copied().collect();
    for digest in &v.indexed_objects.clone() {
        if !v.present.contains(digest) && !v.corrupt.contains_key(digest) {
            v.problem(Problem {
                kind: ProblemKind::Index,
                digest: Some(*digest),
                subject: "the index".to_string(),
                path: None,
                detail: "lists this object, but objects/ has no file for it".to_string(),
                fix: Some(Fix::Reindex),
            });
        }
    }
    let unindexed_documents = v
        .documented_artifacts
        .iter()
        .filter(|id| !indexed.contains(*id))
        .count();
    let unindexed_objects = v
        .present
        .iter()
        .chain(v.corrupt.keys())
        .filter(|d| !indexed_objects.contains(*d))
        .count();
    if unindexed_documents + unindexed_objects > 0 {
        v.report.notes.push(format!(
            "the index lags behind the disk ({unindexed_documents} artifact documents and \
             {unindexed_objects} objects without rows, as a crash after a commit point leaves); \
             `hdist store reindex` catches it up"
        ));
    }
    Ok(())
}

/// Applies the fixes of every problem, in the protocol's removal order (see the module docs).
/// Copies are caches: a bad one is always re-made (from its object, verified again).
fn check_copies(v: &mut Verification<'_>) -> Result<(), StoreError> {
    v.report.copies = v.store.verify_copies(true);
    Ok(())
}

fn apply_fixes(store: &Store, report: &mut VerifyReport) -> Result<(), StoreError> {
    // The first problem behind each fix says why.
    let mut reasons: BTreeMap<Fix, String> = BTreeMap::new();
    for problem in &report.problems {
        if let Some(fix) = &problem.fix {
            reasons.entry(fix.clone()).or_insert_with(|| {
                let digest = problem.digest.map(|d| format!(" {d}")).unwrap_or_default();
                let path = problem
                    .path
                    .as_ref()
                    .map(|p| format!(" at {p}"))
                    .unwrap_or_default();
                format!("{}{digest}{path}", problem.kind.word())
            });
        }
    }
    for (fix, reason) in &reasons {
        let line = match fix {
            Fix::RemoveArtifact(id) => {
                store.remove_artifact(id)?;
                format!("removed artifact {id}, which cannot be completed ({reason}); adding or building it again restores it")
            }
            Fix::RemoveDocument(path) => {
                crate::store::remove_if_present(path)?;
                format!("removed damaged document {}", path.display())
            }
            Fix::RemoveSource(key) => {
                crate::source::remove_source(store, key).map_err(StoreError::Repair)?;
                format!(
                    "removed source {key}, whose content is broken ({reason}); `hdist fetch` gets it again"
                )
            }
            Fix::RemoveObject(path) => {
                crate::store::remove_if_present(path)?;
                format!("removed corrupt object file {}", path.display())
            }
            Fix::Reindex => continue,
        };
        report.repaired.push(line);
    }
    // Last: the index follows what is now on disk.
    let reindexed = store.reindex_locked()?;
    report.repaired.push(format!(
        "reindexed {} objects and {} artifacts",
        reindexed.objects, reindexed.artifacts
    ));
    Ok(())
}
