//! Fuzzing the unpacker: tar (gzip, bzip2, xz) and zip archives built from generated members,
//! hostile ones among them, then mangled at the tar level or in the compressed bytes; and
//! plain random bytes in each format.
//!
//! Each case runs the real unpack path without a store: a staging directory beside the
//! destination, extraction within limits, the single top directory stripped, the move into
//! place. The properties, for every input:
//! - no panic; the result is success or a [`SourceError`] that says what the archive did
//!   (never an I/O error from following it somewhere it should not go);
//! - nothing outside the destination changes: the temporary directory holds the archive, the
//!   victim directory (whose file keeps its content, mode and link count) and the
//!   destination's parent, which holds the destination on success and nothing on failure;
//! - the destination holds only directories, regular files and symlinks, within the limits;
//! - at most [`HEAP_BOUND`] of heap per case, whatever the headers claim.

use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;
use tar::EntryType as T;

use super::tests::{key, test_limits};
use super::*;
use crate::fuzzing::{config, mutated, mutations, peak_heap, Mutation};

/// The byte limit of every case: low, so bombs hit it in milliseconds.
const BYTE_LIMIT: u64 = 1 << 20;
/// The member limit of every case.
const ENTRY_LIMIT: u64 = 64;
/// The most heap one case may take: the extractor's buffers (1.25 MiB) and the parsers'
/// state, below what the long names below (up to 3 MiB, each copied a few times) would take
/// if the tar parser read them whole.
const HEAP_BOUND: u64 = 8 << 20;
/// Stands for the absolute path of the victim directory in generated names and targets.
const VICTIM: &[u8] = b"@VICTIM";

/// One generated archive member.
#[derive(Debug, Clone)]
struct Member {
    name: Vec<u8>,
    kind: Kind,
    mode: u32,
    mtime: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    /// A file of this many zeros: tiny compressed, large unpacked.
    Zeros(u32),
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    /// Tar: a header that claims `claimed` bytes of content before the real content.
    HugeSize {
        claimed: u64,
        content: Vec<u8>,
    },
    /// Tar: a GNU long name of this many bytes (what the tar parser reads into memory).
    LongName(u32),
    /// Tar: a pax record of this many bytes.
    PaxRecord(u32),
    /// Tar: a sparse file with a hole of `hole` bytes before `content`.
    Sparse {
        hole: u64,
        content: Vec<u8>,
    },
    /// This many empty files (an archive bomb by member count).
    Many(u16),
}

fn component() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            b"pkg".to_vec(),
            b"a".to_vec(),
            b"b".to_vec(),
            b"file".to_vec(),
        ]),
        2 => proptest::sample::select(vec![
            b"..".to_vec(),
            b".".to_vec(),
            b"".to_vec(),
            VICTIM.to_vec(),
            b"victim".to_vec(),
            "\u{e9}t\u{e9}".as_bytes().to_vec(),
            b"\xff\xfe".to_vec(),
            vec![b'n'; 255],
            vec![b'n'; 256],
        ]),
        1 => proptest::collection::vec(any::<u8>(), 1..8),
    ]
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        30 => (any::<bool>(), proptest::collection::vec(component(), 1..5)).prop_map(|(absolute, parts)| {
            let mut name = if absolute { b"/".to_vec() } else { Vec::new() };
            name.extend(parts.join(&b'/'));
            name
        }),
        // Deep paths: past what a path may hold, or just within it (rare: the kernel walks
        // every component of every path, so they cost quadratic time).
        1 => (1000..2100usize).prop_map(|depth| b"d/".repeat(depth)),
    ]
}

fn link_target() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::sample::select(vec![
            b"..".to_vec(),
            b"../..".to_vec(),
            b"../victim".to_vec(),
            b"../victim/file".to_vec(),
            VICTIM.to_vec(),
            [VICTIM, b"/file"].concat(),
            b"/etc/passwd".to_vec(),
            b".".to_vec(),
            b"".to_vec(),
            b"a\0b".to_vec(),
        ]),
        name(),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => Just(Kind::Dir),
        10 => proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Kind::File),
        2 => (0..3u32 << 19).prop_map(Kind::Zeros),
        4 => link_target().prop_map(Kind::Symlink),
        3 => link_target().prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
        1 => Just(Kind::CharDevice),
        1 => Just(Kind::BlockDevice),
        1 => Just(Kind::Socket),
        1 => (
            proptest::sample::select(vec![1u64 << 33, 1 << 40, 1 << 60, u64::MAX >> 1, u64::MAX]),
            proptest::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(claimed, content)| Kind::HugeSize { claimed, content }),
        1 => (0..3u32 << 20).prop_map(Kind::LongName),
        1 => (0..3u32 << 20).prop_map(Kind::PaxRecord),
        1 => (
            proptest::sample::select(vec![0u64, 512, 1 << 20, 1 << 40, 1 << 62]),
            proptest::collection::vec(any::<u8>(), 0..600),
        )
            .prop_map(|(hole, content)| Kind::Sparse { hole, content }),
        1 => (0..100u16).prop_map(Kind::Many),
    ]
}

fn member() -> impl Strategy<Value = Member> {
    (
        name(),
        kind(),
        prop_oneof![Just(0o644u32), Just(0o755), Just(0), Just(0o7777), any::<u32>()],
        proptest::sample::select(vec![0u64, 1_000_000_000, 1 << 33, u64::MAX >> 1, u64::MAX]),
    )
        .prop_map(|(name, kind, mode, mtime)| Member {
            name,
            kind,
            mode,
            mtime,
        })
}

fn members() -> impl Strategy<Value = Vec<Member>> {
    proptest::collection::vec(member(), 0..12)
}

/// `bytes` with the placeholder for the victim directory replaced by its absolute path.
fn resolve(bytes: &[u8], victim: &Path) -> Vec<u8> {
    let victim = victim.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(at) = rest.windows(VICTIM.len()).position(|w| w == VICTIM) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(victim);
        rest = &rest[at + VICTIM.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Appends a header (checksummed) and `content`, padded to a whole block.
fn push_entry(out: &mut Vec<u8>, mut header: tar::Header, content: &[u8]) {
    header.set_cksum();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(content);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A GNU header of `kind` named `name` (a GNU long-name entry first if it needs one).
fn header(out: &mut Vec<u8>, name: &[u8], kind: T, size: u64, member: &Member) -> tar::Header {
    if name.len() > 100 {
        let mut long = tar::Header::new_gnu();
        long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long.set_entry_type(T::GNULongName);
        long.set_size(name.len() as u64 + 1);
        push_entry(out, long, &[name, b"\0"].concat());
    }
    let mut header = tar::Header::new_gnu();
    let short = &name[..name.len().min(100)];
    header.as_old_mut().name[..short.len()].copy_from_slice(short);
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(member.mode);
    header.set_mtime(member.mtime);
    header
}

/// A tar stream (GNU format, written by hand: the tar crate's builder refuses the hostile
/// names this needs) of `members`.
fn tar_stream(members: &[Member], victim: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for member in members {
        let name = resolve(&member.name, victim);
        match &member.kind {
            Kind::Dir => {
                let header = header(&mut out, &name, T::Directory, 0, member);
                push_entry(&mut out, header, b"");
            }
            Kind::File(content) => {
                let header = header(&mut out, &name, T::Regular, content.len() as u64, member);
                push_entry(&mut out, header, content);
            }
            Kind::Zeros(n) => {
                let header = header(&mut out, &name, T::Regular, u64::from(*n), member);
                push_entry(&mut out, header, &vec![0; *n as usize]);
            }
            Kind::Symlink(target) | Kind::Hardlink(target) => {
                let target = resolve(target, victim);
                let kind = if matches!(member.kind, Kind::Symlink(_)) {
                    T::Symlink
                } else {
                    T::Link
                };
                if target.len() > 100 {
                    let mut long = tar::Header::new_gnu();
                    long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                    long.set_entry_type(T::GNULongLink);
                    long.set_size(target.len() as u64 + 1);
                    push_entry(&mut out, long, &[&target[..], b"\0"].concat());
                }
                let mut header = header(&mut out, &name, kind, 0, member);
                let short = &target[..target.len().min(100)];
                header.as_old_mut().linkname[..short.len()].copy_from_slice(short);
                push_entry(&mut out, header, b"");
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice | Kind::Socket => {
                let kind = match member.kind {
                    Kind::Fifo => T::Fifo,
                    Kind::CharDevice => T::Char,
                    Kind::BlockDevice => T::Block,
                    // Tar has no socket type; an unknown type byte stands in.
                    _ => T::new(b'Z'),
                };
                let header = header(&mut out, &name, kind, 0, member);
                push_entry(&mut out, header, b"");
            }
            Kind::HugeSize { claimed, content } => {
                let mut header = header(&mut out, &name, T::Regular, 0, member);
                header.set_size(*claimed);
                header.set_cksum();
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(content);
            }
            Kind::LongName(n) => {
                let mut long = tar::Header::new_gnu();
                long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                long.set_entry_type(T::GNULongName);
                long.set_size(u64::from(*n));
                push_entry(&mut out, long, &vec![b'a'; *n as usize]);
                let header = header(&mut out, &name, T::Regular, 1, member);
                push_entry(&mut out, header, b"x");
            }
            Kind::PaxRecord(n) => {
                let mut pax = tar::Header::new_ustar();
                pax.as_old_mut().name[..7].copy_from_slice(b"paxhead");
                pax.set_entry_type(T::XHeader);
                pax.set_size(u64::from(*n));
                let record = format!("{n} comment=");
                let mut content = record.into_bytes();
                content.resize(*n as usize, b'c');
                push_entry(&mut out, pax, &content);
                let header = header(&mut out, &name, T::Regular, 1, member);
                push_entry(&mut out, header, b"y");
            }
            Kind::Sparse { hole, content } => {
                let mut header = header(&mut out, &name, T::GNUSparse, content.len() as u64, member);
                let gnu = header.as_gnu_mut().expect("a GNU header");
                gnu.sparse[0].set_offset(*hole);
                gnu.sparse[0].set_length(content.len() as u64);
                gnu.set_real_size(hole.saturating_add(content.len() as u64));
                push_entry(&mut out, header, content);
            }
            Kind::Many(n) => {
                for i in 0..*n {
                    let mut many = name.clone();
                    many.extend_from_slice(format!("-{i}").as_bytes());
                    let header = header(&mut out, &many, T::Regular, 0, member);
                    push_entry(&mut out, header, b"");
                }
            }
        }
    }
    out.extend_from_slice(&[0; 1024]);
    out
}

fn compress(format: ArchiveFormat, tar: &[u8]) -> Vec<u8> {
    match format {
        ArchiveFormat::TarGz => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(tar).unwrap();
            gz.finish().unwrap()
        }
        ArchiveFormat::TarBz2 => {
            let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
            bz.write_all(tar).unwrap();
            bz.finish().unwrap()
        }
        ArchiveFormat::TarXz => {
            let mut xz = xz2::write::XzEncoder::new(Vec::new(), 0);
            xz.write_all(tar).unwrap();
            xz.finish().unwrap()
        }
        ArchiveFormat::Zip => unreachable!("zip archives are not compressed tar streams"),
    }
}

/// A zip archive of `members` (those zip can express: no hard links or tar-only headers).
fn zip_archive(members: &[Member], victim: &Path) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    // Entries whose Unix type is patched in afterwards (the writer sets only permissions).
    let mut types = Vec::new();
    for (i, member) in members.iter().enumerate() {
        let name = String::from_utf8_lossy(&resolve(&member.name, victim)).into_owned();
        let options = SimpleFileOptions::default()
            .unix_permissions(member.mode & 0o777)
            .compression_method(if i % 2 == 0 {
                zip::CompressionMethod::Deflated
            } else {
                zip::CompressionMethod::Stored
            });
        // A writer error (a duplicate name, say) leaves that member out.
        let _ = match &member.kind {
            Kind::Dir => zip.add_directory(name, options),
            Kind::File(content) | Kind::HugeSize { content, .. } | Kind::Sparse { content, .. } => zip
                .start_file(name, options)
                .map(|()| zip.write_all(content).unwrap()),
            Kind::Zeros(n) => zip
                .start_file(name, options)
                .map(|()| zip.write_all(&vec![0; *n as usize]).unwrap()),
            Kind::Symlink(target) | Kind::Hardlink(target) => {
                let target = String::from_utf8_lossy(&resolve(target, victim)).into_owned();
                zip.add_symlink(name, target, options)
            }
            Kind::Fifo | Kind::CharDevice | Kind::BlockDevice | Kind::Socket => {
                let kind = match member.kind {
                    Kind::Fifo => S_IFIFO,
                    Kind::CharDevice => S_IFCHR,
                    Kind::BlockDevice => S_IFBLK,
                    _ => S_IFSOCK,
                };
                types.push((name.clone().into_bytes(), kind | (member.mode & 0o777)));
                zip.start_file(name, options)
            }
            Kind::LongName(n) | Kind::PaxRecord(n) => {
                zip.start_file("n/".repeat(*n as usize / 2 % 3000), options)
            }
            Kind::Many(n) => {
                for i in 0..*n {
                    let _ = zip.start_file(format!("{name}-{i}"), options);
                }
                Ok(())
            }
        };
    }
    let mut bytes = zip.finish().unwrap().into_inner();
    for (name, mode) in types {
        set_zip_unix_mode(&mut bytes, &name, mode);
    }
    bytes
}

/// Sets the Unix mode (type and permissions) that the central directory records for `name`.
fn set_zip_unix_mode(zip: &mut [u8], name: &[u8], mode: u32) {
    let mut at = 0;
    while let Some(found) = zip[at..].windows(4).position(|w| w == b"PK\x01\x02") {
        let header = at + found;
        let Some(fixed) = zip.get(header..header + 46) else {
            return;
        };
        let name_len = usize::from(u16::from_le_bytes([fixed[28], fixed[29]]));
        if zip.get(header + 46..header + 46 + name_len) == Some(name) {
            // "Version made by": high byte 3 is Unix, whose mode is the high half of the
            // external attributes.
            zip[header + 5] = 3;
            zip[header + 38..header + 42].copy_from_slice(&(mode << 16).to_le_bytes());
        }
        at = header + 4;
    }
}

/// Where one case runs: `<temp>/archive`, `<temp>/victim/file` and `<temp>/out/dest`.
struct Scene {
    dir: tempfile::TempDir,
}

const VICTIM_CONTENT: &[u8] = b"safe";

impl Scene {
    fn new() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("victim")).unwrap();
        let file = dir.path().join("victim/file");
        fs::write(&file, VICTIM_CONTENT).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).unwrap();
        fs::create_dir(dir.path().join("out")).unwrap();
        Scene { dir }
    }

    fn victim(&self) -> PathBuf {
        self.dir.path().join("victim")
    }

    fn dest(&self) -> PathBuf {
        self.dir.path().join("out/dest")
    }

    /// The unpack path of [`unpack`], without the store: staging beside `dest`, extraction
    /// within the limits, the top directory stripped, the move into place.
    fn unpack(&self, bytes: &[u8], format: ArchiveFormat, limits: UnpackLimits) -> Result<(), SourceError> {
        let archive = self.dir.path().join("archive");
        fs::write(&archive, bytes).unwrap();
        let dest = self.dest();
        let dest_exists = check_destination(&dest)?;
        let staging = staging_dir(&dest)?;
        let root = staging.path().join("root");
        extract_archive(format, File::open(&archive).unwrap(), &key(), &root, limits)?;
        let content = single_top_dir(&root)?;
        place(&content, &dest, dest_exists)
    }

    /// Runs one case and checks every property; `Err` describes the first that failed.
    fn check(&self, bytes: &[u8], format: ArchiveFormat) -> Result<(), TestCaseError> {
        let limits = test_limits(BYTE_LIMIT, ENTRY_LIMIT);
        let (result, heap) = peak_heap(|| self.unpack(bytes, format, limits));
        prop_assert!(heap <= HEAP_BOUND, "{heap} bytes of heap for one archive");
        if let Err(e) = &result {
            prop_assert!(
                matches!(
                    e,
                    SourceError::Security { .. }
                        | SourceError::BadMember { .. }
                        | SourceError::ArchiveRead { .. }
                        | SourceError::TooLarge { .. }
                        | SourceError::TooManyEntries { .. }
                        | SourceError::MemberHeaderTooLarge { .. }
                ),
                "not an archive error: {e:?}"
            );
        }
        let names = |dir: &Path| -> Vec<String> {
            let mut names: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        prop_assert_eq!(names(self.dir.path()), ["archive", "out", "victim"]);
        prop_assert_eq!(names(&self.victim()), ["file"]);
        let file = self.victim().join("file");
        let meta = fs::symlink_metadata(&file).unwrap();
        prop_assert_eq!(fs::read(&file).unwrap(), VICTIM_CONTENT);
        prop_assert_eq!(meta.mode() & 0o7777, 0o640);
        prop_assert_eq!(meta.nlink(), 1, "a hard link to the victim was made");
        let out = names(&self.dir.path().join("out"));
        match result {
            Ok(()) => {
                prop_assert_eq!(out, ["dest"]);
                let (bytes, _entries) = walk(&self.dest())?;
                prop_assert!(bytes <= BYTE_LIMIT, "{bytes} bytes unpacked");
            }
            Err(_) => prop_assert!(out.is_empty(), "left behind: {out:?}"),
        }
        Ok(())
    }
}

/// Bytes of regular files and entries below `dir`; fails on anything but a directory,
/// regular file or symlink. (Iterative: archives nest directories thousands deep.)
fn walk(dir: &Path) -> Result<(u64, u64), TestCaseError> {
    let (mut bytes, mut entries) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            entries += 1;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                bytes += meta.len();
            } else {
                prop_assert!(kind.is_symlink(), "{} is {kind:?}", path.display());
            }
        }
    }
    Ok((bytes, entries))
}

/// Where the mutations of a tar case apply: to the tar stream (then compressed) or to the
/// compressed bytes.
#[derive(Debug, Clone, Copy)]
enum Layer {
    Tar,
    Compressed,
}

fn tar_case(
    format: ArchiveFormat,
    members: &[Member],
    layer: Layer,
    changes: &[Mutation],
) -> Result<(), TestCaseError> {
    let scene = Scene::new();
    let tar = tar_stream(members, &scene.victim());
    let bytes = match layer {
        Layer::Tar => compress(format, &mutated(&tar, changes)),
        Layer::Compressed => mutated(&compress(format, &tar), changes),
    };
    scene.check(&bytes, format)
}

fn layer() -> impl Strategy<Value = Layer> {
    prop_oneof![3 => Just(Layer::Tar), 1 => Just(Layer::Compressed)]
}

/// Bytes that start like an archive of `format` (or not at all) and go on at random.
fn random_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::sample::select(vec![
            b"".to_vec(),
            b"\x1f\x8b\x08\x00".to_vec(),
            b"BZh9".to_vec(),
            b"\xfd7zXZ\x00".to_vec(),
            b"PK\x03\x04".to_vec(),
            b"PK\x05\x06".to_vec(),
        ]),
        proptest::collection::vec(any::<u8>(), 0..4096),
    )
        .prop_map(|(magic, rest)| [magic, rest].concat())
}

proptest! {
    #![proptest_config(config(100))]

    #[test]
    fn fuzz_tar_gz(members in members(), layer in layer(), changes in mutations(4)) {
        tar_case(ArchiveFormat::TarGz, &members, layer, &changes)?;
    }
}

proptest! {
    #![proptest_config(config(60))]

    #[test]
    fn fuzz_tar_bz2(members in members(), layer in layer(), changes in mutations(4)) {
        tar_case(ArchiveFormat::TarBz2, &members, layer, &changes)?;
    }

    #[test]
    fn fuzz_tar_xz(members in members(), layer in layer(), changes in mutations(4)) {
        tar_case(ArchiveFormat::TarXz, &members, layer, &changes)?;
    }
}

proptest! {
    #![proptest_config(config(100))]

    #[test]
    fn fuzz_zip(members in members(), changes in mutations(4)) {
        let scene = Scene::new();
        let bytes = mutated(&zip_archive(&members, &scene.victim()), &changes);
        scene.check(&bytes, ArchiveFormat::Zip)?;
    }
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn fuzz_random_bytes(bytes in random_bytes()) {
        for format in [ArchiveFormat::TarGz, ArchiveFormat::TarBz2, ArchiveFormat::TarXz, ArchiveFormat::Zip] {
            Scene::new().check(&bytes, format)?;
        }
        // The same bytes as a tar stream, validly compressed: they reach the tar parser.
        Scene::new().check(&compress(ArchiveFormat::TarGz, &bytes), ArchiveFormat::TarGz)?;
    }
}
