//! The commit protocol of the local store: what every writer writes, in which order, and which
//! write makes its work exist (its *commit point*). This module holds no code; GC
//! ([`crate::gc`]), `verify` ([`crate::verify`]) and `reindex` ([`crate::store::Store::reindex`])
//! are built on what it states.
//!
//! ```text
//! <store>/
//! ├── objects/ab/ab12…[.zst]           blobs and trees: immutable, named by content (the truth)
//! ├── artifacts/<name>/<hash>.json     artifact documents            ← commit point of add/build
//! ├── profiles/<name>/<N>              generation N → digest of a profile document (a blob)
//! │                                                                  ← commit point of a generation
//! ├── profiles/<name>/current          the generation in use         ← commit point of a switch
//! ├── sources/<type>/<id>.json         source documents              ← commit point of a fetch
//! ├── pins/<name>/<hash>               pinned artifacts (a GC root)
//! ├── builds/…                         running or failed builds (scratch of a build)
//! ├── tmp/                             per-process scratch
//! ├── gc.lock                          shared by every writer, exclusive for GC and repair
//! └── index.sqlite                     derived from all of the above; may lag behind them
//! ```
//!
//! # The rules
//!
//! 1. **Objects before what names them.** Every writer stores its objects first: each into
//!    scratch, then one `syncfs`, a `rename` into `objects/`, and another `syncfs`. Only then
//!    does it write the file that names them, by temp file → fsync → rename → fsync of the
//!    directory. That file is the commit point: before it the work does not exist (its objects
//!    are unreferenced and the next GC sweeps them); after it the work exists whole.
//! 2. **The index is derived.** It is written after the commit point and may lag behind the
//!    disk (a crash between the two leaves a document without a row, or objects without rows);
//!    it never runs ahead: every row names a document or object that exists, because rows are
//!    written after what they describe and removed before it. `hdist store reindex` rebuilds
//!    it from the disk; `verify` reports lag as a note and rows that run ahead as problems.
//! 3. **Writers hold `gc.lock` shared** from their first object (which may be an object they
//!    found present and will reference) to their commit point. GC holds it exclusively, so it
//!    never sees a writer half-way.
//! 4. **GC and repair remove in the reverse order**: index rows, then the commit point, then the
//!    objects. A crash in between leaves unreferenced objects (swept by the next GC), never a
//!    document whose objects are gone.
//!
//! # Writer by writer
//!
//! | writer | writes, in order | commit point |
//! | --- | --- | --- |
//! | `store add` | objects (blobs, then trees); document; index rows | `artifacts/<name>/<hash>.json` |
//! | build registration | build directory under `builds/` (scratch); objects of the output tree and the log blob; document with spec and log; index rows | the document |
//! | profile generation | tree objects made by rules and the profile document blob; their index rows; `profiles/<name>/<N>` (hard link, `O_EXCL`-like); `current` (rename) | `<N>` for the generation, `current` for the switch |
//! | source fetch | archive blob or tree objects; `sources/<type>/<id>.json`; index rows of the objects | the source document |
//! | `publish` | (shared lock, as a reader: GC waits) into the published directory: objects under `.tmp/` → `syncfs` → rename → `syncfs`; `manifest.json` (temp → fsync → rename → fsync) | `manifest.json` |
//! | GC | (exclusive lock) index rows of doomed artifacts, their documents, doomed generations and transient source documents; object rows, object files; cached copies and stale build directories | each removal of a document |
//! | `verify --repair` | (exclusive lock) corrupt object files; damaged and incomplete artifact documents and source documents; then a reindex | each removal |
//!
//! # Half-written work
//!
//! - *Objects without a document* (a crash before the commit point): unreferenced, swept whole
//!   by the next GC; or completed by the next writer of the same content, which finds them
//!   present and writes the document.
//! - *A document without all its objects* cannot arise from a crash (rule 1); it can from damage
//!   on disk. `store add` of the same tree completes it (it stores every object that is not
//!   present, and keeps the existing document). GC sweeps it whole if nothing keeps it; if
//!   something keeps it and a tree is missing, GC stops, naming the artifact and the path,
//!   rather than guess what lies below. `verify` names each broken artifact and path;
//!   `verify --repair` removes the document (and a corrupt object file, so the next writer
//!   stores it again), so the next build or add redoes it.
//! - *A document whose index row is missing* (a crash between the commit point and the row):
//!   `store add` of the same tree writes the row; a build of the same spec finds the document,
//!   checks that every object it names is present and writes the row
//!   ([`crate::store::Store::committed_artifact`]), or, if objects are gone, builds again and
//!   replaces the document.
//! - *A damaged document* (not JSON, or describing another id than its path): GC and reindex
//!   name it and stop or skip it; `verify --repair` removes it.
//! - *A damaged index*: every command names it and says to run `hdist store reindex`, which
//!   moves it aside as `index.sqlite.damaged-<time>` and rebuilds from the disk.
//!
//! # GC roots
//!
//! Read from the disk, never from the index: each profile's current generation and the kept
//! older ones (`profiles/`), the profile documents they name and the artifacts listed there
//! (marked from the roots recorded in the profile document, so a member without a document
//! still keeps its objects), pins (`pins/`), what live mounts show (from the mount table),
//! sources with the `keep` policy (`sources/`), and, through the artifact documents, build logs
//! and the artifacts each build imported. Running builds hold `gc.lock` shared, so GC waits for
//! them; a build directory that remains while GC holds the lock is stale and is swept.
