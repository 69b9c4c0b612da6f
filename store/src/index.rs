//! The SQLite index: a derived, rebuildable view of what the object files and artifact
//! documents say, kept for fast listing, statistics and (later) GC.
//!
//! The index is never the only copy of anything: `hdist store reindex` rebuilds it from
//! `objects/` and `artifacts/` (the commit protocol and what may lag is in [`crate::commit`]).
//! A file that SQLite finds is not a database, or finds corrupt, is [`IndexError::Damaged`],
//! whose message tells the user to reindex; [`Index::open_or_move_aside`] and
//! [`Index::move_aside`] put such a file aside (as `index.sqlite.damaged-<unix time>`, with its
//! `-wal` and `-shm`) so the rebuild starts from an empty file. It runs in WAL mode so readers never block the writer, and every
//! multi-row change is one transaction. Several processes may use it at once; SQLite's locking
//! plus a bounded busy timeout ([`BUSY_TIMEOUT`]) serialises their writes. Creating the file,
//! the switch to WAL and migrations are not safe against concurrent openers on their own (the
//! journal-mode switch can fail with "database is locked" without waiting): [`Index::open`]
//! relies on its caller to serialise them, which [`crate::store::Store::open`] does.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::artifact::{ArtifactId, ArtifactRecord};
use crate::hash::Digest;
use crate::tree::{IngestedObject, ObjectKind};

/// How long a statement waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Schema migrations; the index's `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: objects, artifacts, references between artifacts (runtime deps, for GC).
    "CREATE TABLE objects (
         digest BLOB PRIMARY KEY,
         size INTEGER NOT NULL,
         stored_size INTEGER NOT NULL,
         kind INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE artifacts (
         id TEXT PRIMARY KEY,
         name TEXT NOT NULL,
         version TEXT,
         root BLOB NOT NULL,
         spec TEXT,
         created INTEGER NOT NULL,
         files INTEGER NOT NULL,
         bytes INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX artifacts_by_name ON artifacts(name);
     CREATE TABLE refs (
         holder TEXT NOT NULL,
         target TEXT NOT NULL,
         kind TEXT NOT NULL,
         PRIMARY KEY (holder, target, kind)
     ) WITHOUT ROWID;",
];

const SQL_INSERT_OBJECT: &str =
    "INSERT OR IGNORE INTO objects (digest, size, stored_size, kind) VALUES (?1, ?2, ?3, ?4)";
const SQL_MARK_TREE: &str = "UPDATE objects SET kind = 1 WHERE digest = ?1";
const SQL_INSERT_ARTIFACT: &str = "INSERT OR REPLACE INTO artifacts
     (id, name, version, root, spec, created, files, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const SQL_ARTIFACT_COLUMNS: &str = "SELECT id, version, root, spec, created, files, bytes FROM artifacts";
const SQL_OBJECT_TOTALS: &str =
    "SELECT kind, COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(stored_size), 0) FROM objects GROUP BY kind";
const SQL_ARTIFACT_TOTALS: &str = "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM artifacts";
const SQL_ALL_OBJECTS: &str = "SELECT digest FROM objects";
const SQL_DELETE_OBJECT: &str = "DELETE FROM objects WHERE digest = ?1";
const SQL_DELETE_ARTIFACT: &str = "DELETE FROM artifacts WHERE id = ?1";

/// Errors of the index layer.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// SQLite failed.
    #[error("index {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The file is not a SQLite database, or SQLite found it corrupt.
    #[error(
        "index {path} is damaged (run `hdist store reindex` to rebuild it from the objects and documents)"
    )]
    Damaged {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A damaged index could not be moved aside.
    #[error("cannot move the damaged index {path} aside to {to}: {source}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A row does not hold what the schema promises.
    #[error("index {path}: bad row: {reason}; run `hdist store reindex`")]
    BadRow { path: PathBuf, reason: String },
    /// The index was written by a newer hdist.
    #[error("index {path} has schema version {found}, newer than this hdist knows ({known}); upgrade hdist")]
    TooNew { path: PathBuf, found: i64, known: i64 },
}

/// Counts for `hdist store stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IndexTotals {
    /// Distinct objects (blobs and trees).
    pub objects: u64,
    /// Tree objects among them.
    pub trees: u64,
    /// Raw bytes of all objects.
    pub logical_bytes: u64,
    /// Bytes the objects occupy on disk.
    pub stored_bytes: u64,
    /// Artifacts.
    pub artifacts: u64,
    /// Sum of the file bytes of every artifact, as if nothing were shared.
    pub artifact_bytes: u64,
    /// Raw bytes of distinct file contents.
    pub blob_bytes: u64,
}

/// The SQLite index of one store.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Index {
    /// Opens the index at `path`, creating it and applying migrations as needed. Concurrent
    /// first opens must be serialised by the caller (see the module docs).
    pub fn open(path: &Path) -> Result<Index, IndexError> {
        Ok(Index {
            path: path.to_path_buf(),
            conn: Mutex::new(open_connection(path)?),
        })
    }

    /// [`Index::open`], but a damaged file is first moved aside (see the module docs); returns
    /// where it went. Only for `reindex`, which refills the new file.
    pub fn open_or_move_aside(path: &Path) -> Result<(Index, Option<PathBuf>), IndexError> {
        match Index::open(path) {
            Err(IndexError::Damaged { .. }) => {
                let moved = move_files_aside(path)?;
                Ok((Index::open(path)?, Some(moved)))
            }
            other => other.map(|index| (index, None)),
        }
    }

    /// Moves this index's damaged file aside and continues with a new, empty one; returns
    /// where the old one went. For damage found after opening (e.g. a corrupt page).
    pub fn move_aside(&self) -> Result<PathBuf, IndexError> {
        let mut conn = self.conn.lock().unwrap();
        // Close the damaged file before renaming it (an in-memory stand-in meanwhile).
        *conn = Connection::open_in_memory().map_err(self.err())?;
        let moved = move_files_aside(&self.path)?;
        *conn = open_connection(&self.path)?;
        Ok(moved)
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> IndexError + '_ {
        move |source| classify(&self.path, source)
    }
}

/// Opens the SQLite file at `path`: WAL, bounded busy timeout, migrations applied.
fn open_connection(path: &Path) -> Result<Connection, IndexError> {
    let err = |source| classify(path, source);
    let mut conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(err)?;
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(err)?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(err)?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(IndexError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    if version < known {
        // IMMEDIATE takes the write lock first, so two processes cannot both migrate.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let current: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(err)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
    }
    Ok(conn)
}

/// [`IndexError::Damaged`] for the errors that mean the file itself is bad, else
/// [`IndexError::Sqlite`].
fn classify(path: &Path, source: rusqlite::Error) -> IndexError {
    let damaged = matches!(
        source.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    );
    let path = path.to_path_buf();
    if damaged {
        IndexError::Damaged { path, source }
    } else {
        IndexError::Sqlite { path, source }
    }
}

/// Renames `path` and its `-wal` and `-shm` to `<path>.damaged-<unix time>[-wal|-shm]`;
/// returns the new name of `path`.
fn move_files_aside(path: &Path) -> Result<PathBuf, IndexError> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut attempt = 0;
    let base = loop {
        let suffix = if attempt == 0 {
            String::new()
        } else {
            format!(".{attempt}")
        };
        let candidate = path.with_file_name(format!("{name}.damaged-{seconds}{suffix}"));
        if !candidate.exists() {
            break candidate;
        }
        attempt += 1;
    };
    for companion in ["", "-wal", "-shm"] {
        let from = path.with_file_name(format!("{name}{companion}"));
        let to = PathBuf::from(format!("{}{companion}", base.display()));
        match std::fs::rename(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !companion.is_empty() => {}
            Err(source) => {
                return Err(IndexError::MoveAside {
                    path: from,
                    to,
                    source,
                })
            }
        }
    }
    Ok(base)
}

impl Index {
    /// Records objects and, if given, an artifact, in one transaction.
    pub fn record(
        &self,
        objects: &[IngestedObject],
        artifact: Option<&ArtifactRecord>,
    ) -> Result<(), IndexError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(self.err())?;
        {
            insert_objects(&tx, objects).map_err(self.err())?;
            if let Some(artifact) = artifact {
                insert_artifact(&tx, artifact).map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    /// The artifact with exactly this id.
    pub fn artifact(&self, id: &ArtifactId) -> Result<Option<ArtifactRecord>, IndexError> {
        let conn = self.conn.lock().unwrap();
        let sql = format!("{SQL_ARTIFACT_COLUMNS} WHERE id = ?1");
        let row = conn
            .query_row(&sql, params![id.to_string()], row_to_raw)
            .optional()
            .map_err(self.err())?;
        row.map(|raw| self.parse_artifact(raw)).transpose()
    }

    /// Artifacts whose id starts with `prefix` (for abbreviated ids), or all with `""`.
    pub fn artifacts_with_prefix(&self, prefix: &str) -> Result<Vec<ArtifactRecord>, IndexError> {
        let conn = self.conn.lock().unwrap();
        // substr comparison instead of LIKE: ids may contain '_', a LIKE wildcard.
        let sql = format!("{SQL_ARTIFACT_COLUMNS} WHERE substr(id, 1, length(?1)) = ?1 ORDER BY id");
        let mut stmt = conn.prepare_cached(&sql).map_err(self.err())?;
        let raws = stmt
            .query_map(params![prefix], row_to_raw)
            .map_err(self.err())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.err())?;
        raws.into_iter().map(|raw| self.parse_artifact(raw)).collect()
    }

    /// Totals for statistics.
    pub fn totals(&self) -> Result<IndexTotals, IndexError> {
        let conn = self.conn.lock().unwrap();
        let mut totals = IndexTotals::default();
        let mut stmt = conn.prepare_cached(SQL_OBJECT_TOTALS).map_err(self.err())?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, i64>(3)?,
                ))
            })
            .map_err(self.err())?;
        for row in rows {
            let (kind, count, size, stored) = row.map_err(self.err())?;
            totals.objects += count as u64;
            totals.logical_bytes += size as u64;
            totals.stored_bytes += stored as u64;
            if kind == ObjectKind::Tree.code() {
                totals.trees += count as u64;
            } else {
                totals.blob_bytes += size as u64;
            }
        }
        let (artifacts, bytes): (i64, i64) = conn
            .query_row(SQL_ARTIFACT_TOTALS, [], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(self.err())?;
        totals.artifacts = artifacts as u64;
        totals.artifact_bytes = bytes as u64;
        Ok(totals)
    }

    /// Digests of every indexed object.
    pub fn object_digests(&self) -> Result<Vec<Digest>, IndexError> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare_cached(SQL_ALL_OBJECTS).map_err(self.err())?;
        let rows = stmt
            .query_map([], |row| row.get::<_, Vec<u8>>(0))
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let bytes = row.map_err(self.err())?;
            out.push(self.digest_from_row(&bytes)?);
        }
        Ok(out)
    }

    /// Forgets objects (GC), in one transaction.
    pub fn remove_objects(&self, digests: &[Digest]) -> Result<(), IndexError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(self.err())?;
        {
            let mut delete = tx.prepare_cached(SQL_DELETE_OBJECT).map_err(self.err())?;
            for digest in digests {
                delete
                    .execute(params![&digest.as_bytes()[..]])
                    .map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    /// Forgets an artifact (GC).
    pub fn remove_artifact(&self, id: &ArtifactId) -> Result<(), IndexError> {
        let conn = self.conn.lock().unwrap();
        conn.execute(SQL_DELETE_ARTIFACT, params![id.to_string()])
            .map_err(self.err())?;
        Ok(())
    }

    /// Replaces the whole content in one transaction (for reindex).
    pub fn rebuild(
        &self,
        objects: &[IngestedObject],
        trees: &[Digest],
        artifacts: &[ArtifactRecord],
    ) -> Result<(), IndexError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction().map_err(self.err())?;
        tx.execute_batch("DELETE FROM objects; DELETE FROM artifacts;")
            .map_err(self.err())?;
        {
            insert_objects(&tx, objects).map_err(self.err())?;
            let mut mark = tx.prepare_cached(SQL_MARK_TREE).map_err(self.err())?;
            for tree in trees {
                mark.execute(params![&tree.as_bytes()[..]]).map_err(self.err())?;
            }
            for artifact in artifacts {
                insert_artifact(&tx, artifact).map_err(self.err())?;
            }
        }
        tx.commit().map_err(self.err())
    }

    fn digest_from_row(&self, bytes: &[u8]) -> Result<Digest, IndexError> {
        let array: [u8; 32] = bytes.try_into().map_err(|_| IndexError::BadRow {
            path: self.path.clone(),
            reason: format!("digest of {} bytes", bytes.len()),
        })?;
        Ok(Digest::from_bytes(array))
    }

    fn parse_artifact(&self, raw: RawArtifact) -> Result<ArtifactRecord, IndexError> {
        let bad = |reason: String| IndexError::BadRow {
            path: self.path.clone(),
            reason,
        };
        let id: ArtifactId = raw
            .id
            .parse()
            .map_err(|e| bad(format!("artifact id {:?}: {e}", raw.id)))?;
        let spec = raw
            .spec
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| bad(format!("spec of {id}: {e}")))?;
        Ok(ArtifactRecord {
            id,
            version: raw.version,
            root: self.digest_from_row(&raw.root)?,
            spec,
            created: raw.created,
            files: raw.files as u64,
            bytes: raw.bytes as u64,
            build_log: None,
        })
    }
}

struct RawArtifact {
    id: String,
    version: Option<String>,
    root: Vec<u8>,
    spec: Option<String>,
    created: i64,
    files: i64,
    bytes: i64,
}

fn row_to_raw(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawArtifact> {
    Ok(RawArtifact {
        id: row.get(0)?,
        version: row.get(1)?,
        root: row.get(2)?,
        spec: row.get(3)?,
        created: row.get(4)?,
        files: row.get(5)?,
        bytes: row.get(6)?,
    })
}

fn insert_objects(tx: &rusqlite::Transaction<'_>, objects: &[IngestedObject]) -> rusqlite::Result<()> {
    let mut insert = tx.prepare_cached(SQL_INSERT_OBJECT)?;
    for object in objects {
        let o = &object.outcome;
        insert.execute(params![
            &o.digest.as_bytes()[..],
            o.size as i64,
            o.stored_size as i64,
            object.kind.code()
        ])?;
    }
    Ok(())
}

fn insert_artifact(tx: &rusqlite::Transaction<'_>, artifact: &ArtifactRecord) -> rusqlite::Result<()> {
    let spec = artifact.spec.as_ref().map(|s| s.to_string());
    tx.prepare_cached(SQL_INSERT_ARTIFACT)?.execute(params![
        artifact.id.to_string(),
        artifact.id.name(),
        artifact.version,
        &artifact.root.as_bytes()[..],
        spec,
        artifact.created,
        artifact.files as i64,
        artifact.bytes as i64
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_file_is_named_damaged_and_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let garbage = b"not a database ".repeat(300);
        std::fs::write(&path, &garbage).unwrap();
        let err = Index::open(&path).unwrap_err();
        assert!(matches!(err, IndexError::Damaged { .. }), "{err:?}");
        assert!(err.to_string().contains("hdist store reindex"), "{err}");

        let (index, moved) = Index::open_or_move_aside(&path).unwrap();
        let moved = moved.expect("moved aside");
        assert_eq!(std::fs::read(&moved).unwrap(), garbage);
        assert!(index.artifacts_with_prefix("").unwrap().is_empty());
        // A healthy index is left where it is.
        drop(index);
        let (_, moved) = Index::open_or_move_aside(&path).unwrap();
        assert!(moved.is_none());
    }
}
