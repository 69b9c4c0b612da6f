//! SHA-256 digests ([`Digest`]), Hashdist's base32 short form ([`ShortDigest`]) and the
//! streaming helpers that compute them.

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use super::HashError;

/// A SHA-256 digest: the name of every blob and tree in the store.
///
/// Displays, parses and (de)serializes as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps 32 bytes that already are a SHA-256 (e.g. read back from an index).
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the 64-character hex form (either case is accepted, as hex carries no case
    /// information; [`Digest::to_hex`] always emits lowercase).
    ///
    /// # Errors
    /// [`HashError::BadHex`] if `s` is not exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Digest, HashError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| HashError::BadHex {
            input: s.to_string(),
            reason: match e {
                // hex's own message for this case talks about "invalid string length", which
                // does not tell the user what length was expected.
                hex::FromHexError::InvalidStringLength | hex::FromHexError::OddLength => {
                    format!("expected 64 hex digits, got {} characters", s.chars().count())
                }
                other => other.to_string(),
            },
        })?;
        Ok(Digest(bytes))
    }

    /// Hashdist's short form of this digest: its first 20 bytes (see [`format_digest`]).
    pub fn short(&self) -> ShortDigest {
        let mut bytes = [0u8; 20];
        bytes.copy_from_slice(&self.0[..20]);
        ShortDigest(bytes)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    /// `Digest(abcd1234…)`: enough to tell digests apart in logs without 64-character noise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({}…)", hex::encode(&self.0[..4]))
    }
}

impl FromStr for Digest {
    type Err = HashError;

    fn from_str(s: &str) -> Result<Digest, HashError> {
        Digest::from_hex(s)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(deserializer)?;
        Digest::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Hashdist's short digest: the first 20 bytes (160 bits) of a SHA-256.
///
/// Displays, parses and (de)serializes as exactly 32 lowercase RFC 4648 base32 characters
/// (`a`–`z`, `2`–`7`, no padding), the form Hashdist's `format_digest` produces and artifact
/// ids and source keys contain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortDigest([u8; 20]);

impl ShortDigest {
    /// The number of characters in the text form.
    pub const LEN: usize = 32;

    /// The short digest of the SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> ShortDigest {
        Digest::of(bytes).short()
    }

    /// Wraps 20 bytes that already are a truncated SHA-256.
    pub fn from_bytes(bytes: [u8; 20]) -> ShortDigest {
        ShortDigest(bytes)
    }

    /// The raw 20 bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl From<Digest> for ShortDigest {
    fn from(d: Digest) -> ShortDigest {
        d.short()
    }
}

impl fmt::Display for ShortDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = data_encoding::BASE32_NOPAD.encode(&self.0);
        // The base32 alphabet is ASCII, so lowercasing in place cannot change lengths.
        text.make_ascii_lowercase();
        f.write_str(&text)
    }
}

impl fmt::Debug for ShortDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortDigest({self})")
    }
}

impl FromStr for ShortDigest {
    type Err = HashError;

    /// Accepts exactly 32 lowercase base32 characters. Uppercase is refused so that every
    /// short digest has exactly one spelling (ids are compared and stored as text elsewhere).
    fn from_str(s: &str) -> Result<ShortDigest, HashError> {
        let bad = |reason: String| HashError::BadBase32 {
            input: s.to_string(),
            reason,
        };
        if s.len() != ShortDigest::LEN {
            return Err(bad(format!(
                "expected {} characters, got {}",
                ShortDigest::LEN,
                s.chars().count()
            )));
        }
        if let Some(c) = s.chars().find(|c| !matches!(c, 'a'..='z' | '2'..='7')) {
            return Err(bad(format!("invalid character {c:?}")));
        }
        let upper = s.to_ascii_uppercase();
        let mut bytes = [0u8; 20];
        // 32 base32 characters carry exactly 160 bits, so there are no trailing bits that
        // could make two spellings decode to the same bytes.
        data_encoding::BASE32_NOPAD
            .decode_mut(upper.as_bytes(), &mut bytes)
            .map_err(|e| bad(e.error.to_string()))?;
        Ok(ShortDigest(bytes))
    }
}

impl Serialize for ShortDigest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ShortDigest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ShortDigest, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashdist's `format_digest`: the short base32 text of a SHA-256 (see [`ShortDigest`]).
pub fn format_digest(d: &Digest) -> String {
    d.short().to_string()
}

/// An incremental SHA-256 computation; also an [`io::Write`] sink so it can sit behind `io::copy`
/// or a tee while content is written elsewhere.
#[derive(Clone, Default)]
pub struct DigestWriter(Sha256);

impl DigestWriter {
    /// A hasher that has seen no bytes yet.
    pub fn new() -> DigestWriter {
        DigestWriter(Sha256::new())
    }

    /// Feeds `bytes` into the hash.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The SHA-256 of everything fed so far.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

impl fmt::Debug for DigestWriter {
    // The internal SHA-256 state is meaningless to a reader and would leak partial state.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestWriter { .. }")
    }
}

impl Write for DigestWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Size of the read buffer used by [`hash_reader`]: large enough that syscall overhead is
/// negligible next to hashing, small enough to stay cheap per call.
const READ_BUF: usize = 1 << 20;

/// Hashes everything `r` yields until EOF; returns the digest and the number of bytes read.
///
/// # Errors
/// Any read error other than `Interrupted` (which is retried).
pub fn hash_reader(mut r: impl Read) -> io::Result<(Digest, u64)> {
    let mut hasher = DigestWriter::new();
    let mut buf = vec![0u8; READ_BUF];
    let mut total = 0u64;
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((hasher.finish(), total))
}

/// Hashes the contents of the file at `path`; returns the digest and the file's length.
///
/// # Errors
/// Opening or reading the file failed.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    hash_reader(File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn sha256_known_vectors() {
        assert_eq!(Digest::of(b"").to_hex(), EMPTY);
        assert_eq!(Digest::of(b"abc").to_hex(), ABC);
        assert_eq!(Digest::of(b"abc").to_string(), ABC);
    }

    #[test]
    fn digest_writer_matches_one_shot() {
        let mut w = DigestWriter::new();
        w.update(b"a");
        w.write_all(b"bc").unwrap();
        assert_eq!(w.finish(), Digest::of(b"abc"));
    }

    #[test]
    fn hash_reader_counts_bytes() {
        let data = vec![7u8; READ_BUF * 2 + 3];
        let (d, n) = hash_reader(&data[..]).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(d, Digest::of(&data));
    }

    #[test]
    fn hash_file_reads_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(hash_file(&path).unwrap(), (Digest::of(b"abc"), 3));
        assert!(hash_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn digest_hex_roundtrip_and_errors() {
        let d = Digest::of(b"abc");
        assert_eq!(Digest::from_hex(&d.to_hex()).unwrap(), d);
        assert_eq!(ABC.parse::<Digest>().unwrap(), d);
        assert_eq!(Digest::from_hex(&ABC.to_uppercase()).unwrap(), d);
        assert!(matches!(Digest::from_hex("abc"), Err(HashError::BadHex { .. })));
        assert!(matches!(
            Digest::from_hex(&ABC[1..]),
            Err(HashError::BadHex { .. })
        ));
        let bad = format!("{}g", &ABC[1..]);
        assert!(matches!(Digest::from_hex(&bad), Err(HashError::BadHex { .. })));
        assert_eq!(Digest::from_bytes(*d.as_bytes()), d);
    }

    #[test]
    fn digest_debug_is_short() {
        assert_eq!(format!("{:?}", Digest::of(b"abc")), "Digest(ba7816bf…)");
    }

    #[test]
    fn digest_serde_is_hex_string() {
        let d = Digest::of(b"abc");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{ABC}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"zz\"").is_err());
        assert!(serde_json::from_str::<Digest>("3").is_err());
    }

    #[test]
    fn base32_known_vector() {
        // RFC 4648 base32 of the first 20 bytes of SHA-256(""), e3b0c442…f4c8996f,
        // lowercased; checked against Python's base64.b32encode.
        let d = Digest::of(b"");
        assert_eq!(format_digest(&d), "4oymiquy7qobjgx36tejs35zeqt24qpe");
        assert_eq!(d.short().to_string().len(), ShortDigest::LEN);
        assert_eq!(ShortDigest::of(b""), d.short());
        assert_eq!(ShortDigest::from(d), d.short());
        assert_eq!(&d.as_bytes()[..20], d.short().as_bytes());
    }

    #[test]
    fn short_digest_parse_roundtrip_and_errors() {
        let s = Digest::of(b"abc").short();
        let text = s.to_string();
        assert_eq!(text.parse::<ShortDigest>().unwrap(), s);
        assert_eq!(ShortDigest::from_bytes(*s.as_bytes()), s);
        assert_eq!(format!("{s:?}"), format!("ShortDigest({text})"));
        for bad in [
            "",
            &text[1..],
            &format!("{text}a"),
            &text.to_uppercase(),
            &format!("{}1", &text[1..]),
            &format!("{}é", &text[2..]),
        ] {
            assert!(
                matches!(bad.parse::<ShortDigest>(), Err(HashError::BadBase32 { .. })),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn short_digest_serde_is_string() {
        let s = Digest::of(b"").short();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"4oymiquy7qobjgx36tejs35zeqt24qpe\"");
        assert_eq!(serde_json::from_str::<ShortDigest>(&json).unwrap(), s);
        assert!(serde_json::from_str::<ShortDigest>("\"4OYMIQUY7QOBJGX36TEJS35ZEQT24QPE\"").is_err());
    }
}
