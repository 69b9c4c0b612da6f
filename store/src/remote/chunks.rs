//! Chunk tables and tree packs: the two small binary object formats of a published store.
//!
//! ```text
//! chunk table = "HDC1" file_size:u64le chunk_size:u64le count:u32le chunk_digest{count}
//! tree pack   = "HDP1" count:u32le (digest:32 len:u32le bytes){count}
//! ```
//!
//! Both are objects like any other (named by the SHA-256 of these bytes). A chunk table is
//! trusted because the signed manifest names it; every chunk and every packed tree is then
//! checked against its own digest.

use crate::hash::Digest;

const TABLE_MAGIC: &[u8; 4] = b"HDC1";
const PACK_MAGIC: &[u8; 4] = b"HDP1";

/// How a large file is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkTable {
    /// Size of the whole file.
    pub file_size: u64,
    /// Size of every chunk but the last.
    pub chunk_size: u64,
    /// Chunk digests in file order.
    pub chunks: Vec<Digest>,
}

impl ChunkTable {
    /// The encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + 32 * self.chunks.len());
        out.extend_from_slice(TABLE_MAGIC);
        out.extend_from_slice(&self.file_size.to_le_bytes());
        out.extend_from_slice(&self.chunk_size.to_le_bytes());
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for chunk in &self.chunks {
            out.extend_from_slice(chunk.as_bytes());
        }
        out
    }

    /// Parses an encoding; `None` if it is not one (or is inconsistent).
    pub fn decode(bytes: &[u8]) -> Option<ChunkTable> {
        let rest = bytes.strip_prefix(TABLE_MAGIC)?;
        let file_size = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
        let chunk_size = u64::from_le_bytes(rest.get(8..16)?.try_into().ok()?);
        let count = u32::from_le_bytes(rest.get(16..20)?.try_into().ok()?) as usize;
        let digests = rest.get(20..)?;
        if chunk_size == 0 || digests.len() != count.checked_mul(32)? {
            return None;
        }
        if file_size.div_ceil(chunk_size) != count as u64 {
            return None;
        }
        // Every chunk's end must be a u64 (`range` adds the chunk size to its start).
        (count as u64).checked_mul(chunk_size)?;
        let chunks = digests
            .chunks_exact(32)
            .map(|d| Digest::from_bytes(d.try_into().expect("32-byte chunks")))
            .collect();
        Some(ChunkTable {
            file_size,
            chunk_size,
            chunks,
        })
    }

    /// The byte range of chunk `index` in the file.
    pub fn range(&self, index: usize) -> (u64, u64) {
        let start = index as u64 * self.chunk_size;
        (start, (start + self.chunk_size).min(self.file_size))
    }
}

/// Encodes a tree pack from (digest, raw tree bytes) pairs.
pub fn encode_pack(trees: &[(Digest, Vec<u8>)]) -> Vec<u8> {
    let total: usize = trees.iter().map(|(_, b)| b.len() + 36).sum();
    let mut out = Vec::with_capacity(8 + total);
    out.extend_from_slice(PACK_MAGIC);
    out.extend_from_slice(&(trees.len() as u32).to_le_bytes());
    for (digest, bytes) in trees {
        out.extend_from_slice(digest.as_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// Splits a tree pack, keeping only entries whose bytes hash to their digest. `None` if the
/// pack is malformed.
pub fn decode_pack(bytes: &[u8]) -> Option<Vec<(Digest, &[u8])>> {
    let mut rest = bytes.strip_prefix(PACK_MAGIC)?;
    let count = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    rest = &rest[4..];
    let mut out = Vec::with_capacity(count.min(bytes.len() / 36));
    for _ in 0..count {
        let digest = Digest::from_bytes(rest.get(..32)?.try_into().ok()?);
        let len = u32::from_le_bytes(rest.get(32..36)?.try_into().ok()?) as usize;
        let body = rest.get(36..36 + len)?;
        rest = &rest[36 + len..];
        if Digest::of(body) == digest {
            out.push((digest, body));
        } else {
            log::error!("tree pack entry {digest} does not match its digest; skipped");
        }
    }
    rest.is_empty().then_some(out)
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzzing found: a table whose last chunk would end past `u64::MAX` decoded, and `range`
    /// then overflowed (a panic in a debug build, a wrong range in release).
    #[test]
    fn tables_whose_chunks_end_past_u64_are_refused() {
        let table = ChunkTable {
            file_size: u64::MAX,
            chunk_size: (1 << 63) + 1,
            chunks: vec![Digest::of(b"0"), Digest::of(b"1")],
        };
        assert_eq!(ChunkTable::decode(&table.encode()), None);
        let fits = ChunkTable {
            file_size: u64::MAX - 1,
            chunk_size: (1 << 63) - 1,
            chunks: vec![Digest::of(b"0"), Digest::of(b"1")],
        };
        let decoded = ChunkTable::decode(&fits.encode()).unwrap();
        assert_eq!(decoded.range(1), ((1 << 63) - 1, u64::MAX - 1));
    }

    #[test]
    fn tables_and_packs_round_trip() {
        let table = ChunkTable {
            file_size: 5,
            chunk_size: 2,
            chunks: vec![Digest::of(b"ab"), Digest::of(b"cd"), Digest::of(b"e")],
        };
        assert_eq!(ChunkTable::decode(&table.encode()), Some(table.clone()));
        assert_eq!(table.range(2), (4, 5));
        assert!(ChunkTable::decode(&table.encode()[..30]).is_none());
        let pack = encode_pack(&[
            (Digest::of(b"x"), b"x".to_vec()),
            (Digest::of(b"y"), b"z".to_vec()),
        ]);
        let entries = decode_pack(&pack).unwrap();
        assert_eq!(entries, vec![(Digest::of(b"x"), &b"x"[..])]);
    }
}
