//! The contract every [`BlobService`] backend meets, as one suite run over each of them
//! (memory, local, HTTP, cached over HTTP).
//!
//! A backend under test holds every object of [`BlobSamples::stored`] and nothing else of
//! interest; [`run`] then checks, for present, absent, empty and large objects, what the
//! trait's docs promise: exact sizes and bytes from every read method, `NotFound` (seen through
//! [`BlobError::is_not_found`]) for an absent object, reads at any offset, concurrent readers,
//! and (for backends that can hold bad bytes) that corrupt content is refused, never served.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use crate::blob::{BlobError, BlobService};
use crate::hash::Digest;

/// One object of the samples.
#[derive(Debug, Clone)]
pub struct Sample {
    /// What it stands for (in failure messages).
    pub name: &'static str,
    /// Its raw content.
    pub bytes: Vec<u8>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

impl Sample {
    fn new(name: &'static str, bytes: Vec<u8>) -> Sample {
        let digest = Digest::of(&bytes);
        Sample { name, bytes, digest }
    }
}

/// The objects the suite reads; the same on every run.
#[derive(Debug, Clone)]
pub struct BlobSamples {
    /// Objects read by every check: empty, small, large compressible, large incompressible.
    pub present: Vec<Sample>,
    /// An object the corruption check damages in the backend; no other check reads it.
    pub victim: Sample,
    /// A digest no backend holds.
    pub absent: Digest,
}

/// Size of the large incompressible sample: over 3 chunks of a published store (1 MiB), so
/// a chunked backend serves it from several chunks, and not a multiple of them.
const LARGE: usize = (3 << 20) + 12345;

impl Default for BlobSamples {
    fn default() -> BlobSamples {
        BlobSamples::new()
    }
}

impl BlobSamples {
    /// The samples.
    pub fn new() -> BlobSamples {
        let compressible: Vec<u8> = (0..80_000)
            .flat_map(|n| format!("line {n} of a compressible sample\n").into_bytes())
            .collect();
        BlobSamples {
            present: vec![
                Sample::new("empty", Vec::new()),
                Sample::new("small", b"hello, contract\n".to_vec()),
                Sample::new("large compressible", compressible),
                Sample::new("large incompressible", pseudo_random(1, LARGE)),
            ],
            victim: Sample::new("victim", pseudo_random(2, 4096)),
            absent: Digest::of(b"no backend holds this"),
        }
    }

    /// Every object a backend under test must hold before [`run`].
    pub fn stored(&self) -> impl Iterator<Item = &Sample> {
        self.present.iter().chain(std::iter::once(&self.victim))
    }

    /// The large incompressible sample (what a backend that chunks large files chunks).
    pub fn large(&self) -> &Sample {
        self.present
            .iter()
            .find(|s| s.bytes.len() == LARGE)
            .expect("the samples hold the large one")
    }
}

/// Deterministic bytes that do not compress (xorshift64).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Runs the whole suite against `blobs`, which holds [`BlobSamples::stored`]; `backend` names
/// it in failures. `corrupt_victim`, for backends that can hold bytes other than what they
/// hashed, replaces the stored content of [`BlobSamples::victim`] with other bytes; the suite
/// then checks that every read of it fails. Panics listing every check that failed.
pub fn run(backend: &str, blobs: &dyn BlobService, samples: &BlobSamples, corrupt_victim: Option<&dyn Fn()>) {
    type Check = fn(&dyn BlobService, &BlobSamples);
    let checks: [(&'static str, Check); 15] = [
        ("has_present", has_present),
        ("has_absent", has_absent),
        ("size_present", size_present),
        ("size_absent", size_absent),
        ("read_present", read_present),
        ("read_absent", read_absent),
        ("open_present", open_present),
        ("open_absent", open_absent),
        ("open_copy_present", open_copy_present),
        ("open_copy_absent", open_copy_absent),
        ("copy_to_present", copy_to_present),
        ("copy_to_absent", copy_to_absent),
        ("read_at_present", read_at_present),
        ("read_at_absent", read_at_absent),
        ("concurrent_reads", concurrent_reads),
    ];
    let mut boxed: Vec<super::NamedCheck<'_>> = checks
        .into_iter()
        .map(|(name, check)| (name, Box::new(move || check(blobs, samples)) as Box<dyn FnOnce()>))
        .collect();
    if let Some(corrupt) = corrupt_victim {
        boxed.push((
            "corrupt_refused",
            Box::new(move || corrupt_refused(blobs, samples, corrupt)),
        ));
    }
    super::run_checks("BlobService", backend, boxed);
}

/// `has` of every stored object is `Ok(true)`.
pub fn has_present(blobs: &dyn BlobService, samples: &BlobSamples) {
    for sample in &samples.present {
        assert!(
            blobs.has(&sample.digest).expect("has"),
            "has({}) is false",
            sample.name
        );
    }
}

/// `has` of an absent object is `Ok(false)`, not an error.
pub fn has_absent(blobs: &dyn BlobService, samples: &BlobSamples) {
    assert!(!blobs.has(&samples.absent).expect("has of an absent object"));
}

/// `size` is the exact raw length.
pub fn size_present(blobs: &dyn BlobService, samples: &BlobSamples) {
    for sample in &samples.present {
        let size = blobs.size(&sample.digest).expect("size");
        assert_eq!(size, sample.bytes.len() as u64, "size of {}", sample.name);
    }
}

/// Asserts that `result` is the error of an absent object.
fn assert_not_found<T: std::fmt::Debug>(what: &str, result: Result<T, BlobError>) {
    match result {
        Err(e) if e.is_not_found() => {}
        Err(e) => panic!("{what} of an absent object: {e}, not NotFound"),
        Ok(value) => panic!("{what} of an absent object succeeded: {value:?}"),
    }
}

/// `size` of an absent object is NotFound.
pub fn size_absent(blobs: &dyn BlobService, samples: &BlobSamples) {
    assert_not_found("size", blobs.size(&samples.absent));
}

/// `read` returns exactly the content.
pub fn read_present(blobs: &dyn BlobService, samples: &BlobSamples) {
    for sample in &samples.present {
        let bytes = blobs.read(&sample.digest).expect("read");
        assert_same(&bytes, &sample.bytes, &format!("read of {}", sample.name));
    }
}

/// `read` of an absent object is NotFound.
pub fn read_absent(blobs: &dyn BlobService, samples: &BlobSamples) {
    assert_not_found("read", blobs.read(&samples.absent).map(|b| b.len()));
}

/// `open` gives a file at offset 0 holding exactly the content, seekable.
pub fn open_present(blobs: &dyn BlobService, samples: &BlobSamples) {
    for sample in &samples.present {
        let mut file = blobs.open(&sample.digest).expect("open");
        let len = file.metadata().expect("fstat").len();
        assert_eq!(
            len,
            sample.bytes.len() as u64,
            "length of the opened {}",
            sample.name
        );
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).expect("read the opened file");
        assert_same(&bytes, &sample.bytes, &format!("opened {}", sample.name));
        let middle = sample.bytes.len() / 2;
        file.seek(SeekFrom::Start(middle as u64)).expect("seek");
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).expect("read after seeking");
        assert_same(
            &tail,
            &sample.bytes[middle..],
            &format!("{} after a seek", sample.name),
        );
    }
}

/// `open` of an absent object is NotFound.
pub fn open_absent(blobs: &dyn BlobService, samples: &BlobSamples) {
    assert_not_found("open", blobs.open(&samples.absent));
}

/// `open_copy` gives the content, names its digest, and is intact.
pub fn open_copy_present(blobs: &dyn BlobService, samples: &BlobSamples) {
    for sample in &samples.present {
        let copy = blobs.open_copy(&sample.digest).expect("open_copy");
        assert_eq!(
            copy.digest(),
            &sample.digest,
            "digest of the copy of {}",
            sample.name
        );
        assert!(
            copy.is_intact(),
            "the fresh copy of {} is not intact",
            sample.name
        );
        let mut bytes = vec![0u8; sample.bytes.len() + 1];
        let n = read_fully_at(copy.file(), &mut bytes, 0);
        assert_same(&bytes[..n], &sample.bytes, &format!("copy of {}", sample.name));
    }
}

/// `open_copy` of an absent object is NotFound.
pub fn open_copy_absent(blobs: &dyn BlobService, samples: &BlobSamples) {
    assert_not_found("open_copy", blobs.open_copy(&samples.absent).map(|c| *c.digest()));
}

/// `copy_to` empties the file first, writes exactly the content and returns its length.
pub fn copy_to_present(blobs: &dyn BlobService, samples: &BlobSamples) {
    for sample in &samples.present {
        let mut out = tempfile::tempfile().expect("temp file");
        out.write_all(&[0xAB; 10_000]).expect("fill the temp file");
        let len = blobs.copy_to(&sample.digest, &mut out).expect("copy_to");
        assert_eq!(
            len,
            sample.bytes.len() as u64,
            "length copy_to returned for {}",
            sample.name
        );
        let mut bytes = Vec::new();
        out.rewind().expect("rewind");
        out.read_to_end(&mut bytes).expect("read back");
        assert_same(&bytes, &sample.bytes, &format!("copy_to of {}", sample.name));
    }
}

/// `copy_to` of an absent object is NotFound.
pub fn copy_to_absent(blobs: &dyn BlobService, samples: &BlobSamples) {
    let mut out = tempfile::tempfile().expect("temp file");
    assert_not_found("copy_to", blobs.copy_to(&samples.absent, &mut out));
}

/// `read_at` fills the buffer but at the end, reads 0 at or past the end, and works across
/// chunk boundaries.
pub fn read_at_present(blobs: &dyn BlobService, samples: &BlobSamples) {
    const CHUNK: usize = 1 << 20;
    for sample in &samples.present {
        let len = sample.bytes.len();
        let mut offsets = vec![0, 1, len / 2, len.saturating_sub(1), len, len + 10];
        if len > 2 * CHUNK {
            offsets.extend([CHUNK - 5, 2 * CHUNK - 1]);
        }
        for offset in offsets {
            for want in [0, 1, 10, 65_536 + 3, CHUNK + 7, len] {
                let mut buf = vec![0u8; want];
                let n = blobs
                    .read_at(&sample.digest, offset as u64, &mut buf)
                    .unwrap_or_else(|e| panic!("read_at({}, {offset}, {want}): {e}", sample.name));
                let start = offset.min(len);
                let expected = &sample.bytes[start..(start + want).min(len)];
                assert_same(
                    &buf[..n],
                    expected,
                    &format!("read_at({}, offset {offset}, {want} bytes)", sample.name),
                );
            }
        }
    }
}

/// `read_at` of an absent object is NotFound.
pub fn read_at_absent(blobs: &dyn BlobService, samples: &BlobSamples) {
    let mut buf = [0u8; 16];
    assert_not_found("read_at", blobs.read_at(&samples.absent, 0, &mut buf));
}

/// Threads reading the same objects at once each get the exact content.
pub fn concurrent_reads(blobs: &dyn BlobService, samples: &BlobSamples) {
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    for sample in &samples.present {
                        let bytes = blobs.read(&sample.digest).expect("read");
                        assert_same(
                            &bytes,
                            &sample.bytes,
                            &format!("concurrent read of {}", sample.name),
                        );
                    }
                })
            })
            .collect();
        for reader in readers {
            if let Err(panic) = reader.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}

/// Once the victim's stored bytes are damaged, no read method hands out any bytes of it: the
/// first read says it is corrupt, and every later one fails (a backend may then refuse it
/// without asking again), never as "absent".
pub fn corrupt_refused(blobs: &dyn BlobService, samples: &BlobSamples, corrupt_victim: &dyn Fn()) {
    let victim = &samples.victim.digest;
    corrupt_victim();
    match blobs.read(victim) {
        Err(BlobError::Corrupt { digest, .. } | BlobError::Undecodable { digest, .. }) => {
            assert_eq!(&digest, victim, "the corruption error names another object")
        }
        Err(e) => panic!("read of a corrupt object: {e}, not Corrupt"),
        Ok(bytes) => panic!("read of a corrupt object handed out {} bytes", bytes.len()),
    }
    let refused = |what: &str, result: Result<(), BlobError>| match result {
        Err(e) => assert!(
            !e.is_not_found(),
            "{what} of a corrupt object says it is absent: {e}"
        ),
        Ok(()) => panic!("{what} of a corrupt object succeeded"),
    };
    refused("open", blobs.open(victim).map(drop));
    refused("open_copy", blobs.open_copy(victim).map(drop));
    let mut out = tempfile::tempfile().expect("temp file");
    refused("copy_to", blobs.copy_to(victim, &mut out).map(drop));
    let mut buf = [0u8; 64];
    refused("read_at", blobs.read_at(victim, 0, &mut buf).map(drop));
}

/// Reads from `offset` until `buf` is full or the file ends; how many bytes were read.
fn read_fully_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file
            .read_at(&mut buf[filled..], offset + filled as u64)
            .expect("pread")
        {
            0 => break,
            n => filled += n,
        }
    }
    filled
}

/// Asserts equal bytes, describing a mismatch by lengths and first difference rather than by
/// dumping megabytes.
fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first = actual.iter().zip(expected).position(|(a, b)| a != b);
    panic!(
        "{what}: got {} bytes, expected {}; first difference at {}",
        actual.len(),
        expected.len(),
        first.map_or("the end of the shorter".to_string(), |i| format!("byte {i}")),
    );
}
