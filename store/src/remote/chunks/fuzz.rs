//! Fuzzing the two binary object formats of a published store, chunk tables and tree packs:
//! encodings of generated ones, mangled, and random bytes. Properties: no panic; what decodes
//! re-encodes to the same bytes; every chunk range of a table that decodes lies within the
//! file and in order; a pack keeps exactly the entries whose bytes match their digests.

use proptest::prelude::*;

use super::*;
use crate::fuzzing::{config, mutated, mutations};

fn table() -> impl Strategy<Value = ChunkTable> {
    (
        prop_oneof![
            0..1u64 << 24,
            Just(u64::MAX),
            Just(u64::MAX - 1),
            Just(1u64 << 63)
        ],
        prop_oneof![1..1u64 << 20, Just(u64::MAX), Just((1u64 << 63) + 1)],
    )
        .prop_filter_map(
            "a chunk count that fits a small test",
            |(file_size, chunk_size)| {
                let count = file_size.div_ceil(chunk_size);
                // Tables whose last chunk would end past u64::MAX are refused: see the unit tests.
                (count <= 64 && count.checked_mul(chunk_size).is_some()).then(|| ChunkTable {
                    file_size,
                    chunk_size,
                    chunks: (0..count).map(|i| Digest::of(&i.to_le_bytes())).collect(),
                })
            },
        )
}

fn check_table(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(table) = ChunkTable::decode(bytes) {
        prop_assert_eq!(table.encode(), bytes);
        let mut previous_end = 0;
        for index in 0..table.chunks.len() {
            let (start, end) = table.range(index);
            prop_assert!(
                start == previous_end && start < end && end <= table.file_size,
                "chunk {index}: {start}..{end}"
            );
            previous_end = end;
        }
        prop_assert_eq!(previous_end, table.file_size);
    }
    Ok(())
}

fn check_pack(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Some(entries) = decode_pack(bytes) {
        for (digest, body) in &entries {
            prop_assert_eq!(Digest::of(body), *digest);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn fuzz_chunk_tables(table in table(), changes in mutations(3)) {
        let bytes = table.encode();
        if changes.is_empty() {
            prop_assert_eq!(ChunkTable::decode(&bytes), Some(table));
        }
        check_table(&mutated(&bytes, &changes))?;
    }

    #[test]
    fn fuzz_tree_packs(trees in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 0..5), changes in mutations(3)) {
        let trees: Vec<(Digest, Vec<u8>)> = trees.into_iter().map(|t| (Digest::of(&t), t)).collect();
        let bytes = encode_pack(&trees);
        if changes.is_empty() {
            let decoded: Option<Vec<(Digest, Vec<u8>)>> =
                decode_pack(&bytes).map(|d| d.into_iter().map(|(digest, body)| (digest, body.to_vec())).collect());
            prop_assert_eq!(decoded, Some(trees));
        }
        check_pack(&mutated(&bytes, &changes))?;
    }

    #[test]
    fn fuzz_random_remote_objects(
        magic in proptest::sample::select(vec![&b""[..], b"HDC1", b"HDP1"]),
        rest in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let bytes = [magic, &rest].concat();
        check_table(&bytes)?;
        check_pack(&bytes)?;
    }
}
