//! The signed manifest and the publishing key.
//!
//! ```text
//! manifest.json = {
//!   "format":    "hdist-signed-manifest-1",
//!   "key":       "ed25519:<base64 public key>",   informative; the node's --key decides
//!   "body":      "<Manifest as a JSON string>",   the exact bytes that were signed
//!   "signature": "<base64 ed25519 signature of body>"
//! }
//! ```
//!
//! The body is carried as a string so the signed bytes are exactly what is verified; no JSON
//! canonicalisation is involved. A node parses the body only after the signature verifies.
//!
//! ```text
//! <store>/keys/
//! └── publish.ed25519       hex of the 32-byte secret seed, mode 0600 (`hdist key generate`)
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use data_encoding::BASE64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::RemoteError;
use crate::artifact::ArtifactId;
use crate::hash::Digest;
use crate::IoContext;

const SIGNED_FORMAT: &str = "hdist-signed-manifest-1";
const BODY_FORMAT: &str = "hdist-manifest-1";
const KEY_PREFIX: &str = "ed25519:";

/// One published profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedProfile {
    /// The profile document (a blob).
    pub document: Digest,
    /// Every tree reachable from the profile, packed into one object (see `publish`), so a
    /// node gets the profile's directory metadata in one request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trees: Option<Digest>,
    /// Files a recorded workload touched (hex digests, one per line), fetched in parallel at
    /// first access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<Digest>,
}

/// One published artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedArtifact {
    /// Root tree.
    pub root: Digest,
    /// The artifact document (JSON of the store's record), a blob.
    pub document: Digest,
}

/// What a node trusts once the signature verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `hdist-manifest-1`.
    pub format: String,
    /// Increases with every publish into the same directory; a node refuses a manifest with a
    /// lower serial than one it has accepted (no rollback to an old signed manifest).
    pub serial: u64,
    /// Unix time of the publish.
    pub published: i64,
    /// Profile name → its current generation.
    pub profiles: BTreeMap<String, PublishedProfile>,
    /// Artifact id → root and document.
    pub artifacts: BTreeMap<ArtifactId, PublishedArtifact>,
    /// Digest of a chunked file → digest of its chunk table.
    #[serde(default)]
    pub chunked: BTreeMap<Digest, Digest>,
}

impl Manifest {
    /// An empty manifest with the given serial.
    pub fn new(serial: u64, published: i64) -> Manifest {
        Manifest {
            format: BODY_FORMAT.to_string(),
            serial,
            published,
            profiles: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            chunked: BTreeMap::new(),
        }
    }

    /// Signs the manifest: the bytes of `manifest.json`.
    pub fn sign(&self, key: &SecretKey) -> Vec<u8> {
        let body = serde_json::to_string(self).expect("manifests serialise");
        let signature = key.0.sign(body.as_bytes());
        let outer = SignedManifest {
            format: SIGNED_FORMAT.to_string(),
            key: key.public().to_string(),
            body,
            signature: BASE64.encode(&signature.to_bytes()),
        };
        let mut bytes = serde_json::to_vec_pretty(&outer).expect("manifests serialise");
        bytes.push(b'\n');
        bytes
    }

    /// Verifies `bytes` (a `manifest.json`) with `key` and parses the body. `url` only names
    /// the source in errors.
    pub fn verify(bytes: &[u8], key: &PublicKey, url: &str) -> Result<Manifest, RemoteError> {
        let bad = |reason: String| RemoteError::BadManifest {
            url: url.to_string(),
            reason,
        };
        let outer: SignedManifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a signed manifest: {e}")))?;
        if outer.format != SIGNED_FORMAT {
            return Err(bad(format!("unknown format {:?}", outer.format)));
        }
        let refused = || RemoteError::BadSignature {
            url: url.to_string(),
            key: key.to_string(),
        };
        let signature = BASE64
            .decode(outer.signature.as_bytes())
            .ok()
            .and_then(|raw| <[u8; 64]>::try_from(raw.as_slice()).ok())
            .map(|raw| Signature::from_bytes(&raw))
            .ok_or_else(refused)?;
        // verify_strict: no malleable or small-order-key signatures.
        key.0
            .verify_strict(outer.body.as_bytes(), &signature)
            .map_err(|_| refused())?;
        let manifest: Manifest =
            serde_json::from_str(&outer.body).map_err(|e| bad(format!("body does not parse: {e}")))?;
        if manifest.format != BODY_FORMAT {
            return Err(bad(format!("unknown body format {:?}", manifest.format)));
        }
        Ok(manifest)
    }

    /// Reads the serial of an existing `manifest.json` without verifying it (the publisher
    /// only needs it to pick the next serial).
    pub fn peek_serial(bytes: &[u8]) -> Option<u64> {
        let outer: SignedManifest = serde_json::from_slice(bytes).ok()?;
        let body: Manifest = serde_json::from_str(&outer.body).ok()?;
        Some(body.serial)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct SignedManifest {
    format: String,
    key: String,
    body: String,
    signature: String,
}

/// An ed25519 public key, written `ed25519:<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Display for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{KEY_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }
}

impl std::str::FromStr for PublicKey {
    type Err = RemoteError;

    fn from_str(text: &str) -> Result<PublicKey, RemoteError> {
        let bad = |reason: &str| RemoteError::BadKey {
            what: format!("{text:?}"),
            reason: format!("{reason}; expected ed25519:<base64> as printed by `hdist key show`"),
        };
        let encoded = text
            .trim()
            .strip_prefix(KEY_PREFIX)
            .ok_or_else(|| bad("no ed25519: prefix"))?;
        let raw = BASE64.decode(encoded.as_bytes()).map_err(|_| bad("not base64"))?;
        let raw: [u8; 32] = raw.as_slice().try_into().map_err(|_| bad("not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad("not a valid ed25519 point"))?;
        if key.is_weak() {
            return Err(bad("a weak (small-order) key"));
        }
        Ok(PublicKey(key))
    }
}

impl PublicKey {
    /// A key given as text or as the path of a file holding the text.
    pub fn from_arg(arg: &str) -> Result<PublicKey, RemoteError> {
        if arg.trim().starts_with(KEY_PREFIX) {
            return arg.parse();
        }
        let text = fs::read_to_string(arg).io_context("read key file", arg)?;
        text.parse()
    }
}

/// The publishing (signing) key.
#[derive(Debug)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A fresh random key (from the OS's random source).
    pub fn generate() -> SecretKey {
        SecretKey(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Loads a key file written by [`SecretKey::save`].
    pub fn load(path: &Path) -> Result<SecretKey, RemoteError> {
        let text = fs::read_to_string(path).map_err(|e| RemoteError::BadKey {
            what: path.display().to_string(),
            reason: format!("{e}; create one with `hdist key generate`"),
        })?;
        let bad = |reason: &str| RemoteError::BadKey {
            what: path.display().to_string(),
            reason: reason.to_string(),
        };
        let raw = hex::decode(text.trim()).map_err(|_| bad("not hex"))?;
        let seed: [u8; 32] = raw.as_slice().try_into().map_err(|_| bad("not 32 bytes"))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Writes the key to a new file (mode 0600, never over an existing key): temp, fsync,
    /// hard link into place.
    pub fn save(&self, path: &Path) -> Result<(), RemoteError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).io_context("create directory", dir)?;
        let tmp = dir.join(format!(".key-{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .io_context("create", &tmp)?;
        let write = file
            .write_all(format!("{}\n", hex::encode(self.0.to_bytes())).as_bytes())
            .and_then(|_| file.sync_all());
        // A link, not a rename: an existing key must never be replaced by accident.
        let linked = write.and_then(|_| fs::hard_link(&tmp, path));
        let _ = fs::remove_file(&tmp);
        linked.io_context("write key", path)?;
        Ok(crate::scratch::fsync_dir(dir).io_context("sync", dir)?)
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_is_refused() {
        let key = SecretKey::generate();
        let other = SecretKey::generate();
        let mut manifest = Manifest::new(3, 0);
        manifest.profiles.insert(
            "p".into(),
            PublishedProfile {
                document: Digest::of(b"doc"),
                trees: None,
                prefetch: None,
            },
        );
        let bytes = manifest.sign(&key);
        let public: PublicKey = key.public().to_string().parse().unwrap();
        assert_eq!(Manifest::verify(&bytes, &public, "t").unwrap(), manifest);
        assert_eq!(Manifest::peek_serial(&bytes), Some(3));
        assert!(matches!(
            Manifest::verify(&bytes, &other.public(), "t"),
            Err(RemoteError::BadSignature { .. })
        ));
        let tampered = String::from_utf8(bytes)
            .unwrap()
            .replace("\\\"serial\\\":3", "\\\"serial\\\":4");
        assert!(Manifest::verify(tampered.as_bytes(), &public, "t").is_err());
        assert!("ed25519:AAAA".parse::<PublicKey>().is_err());
    }
}
