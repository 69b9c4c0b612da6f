//! Fuzzing tree objects: encodings of generated trees (`HDT2`, and the older `HDT1`),
//! mangled, and random bytes. Properties: no panic; a failure is [`TreeError::Malformed`];
//! what decodes is canonical (an `HDT2` object re-encodes to the same bytes, an `HDT1` one to
//! the same entries); memory stays proportional to the input whatever its counts claim.

use proptest::prelude::*;

use super::*;
use crate::fuzzing::{config, mutated, mutations, peak_heap};

fn name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::sample::select(vec![
            b"a".to_vec(),
            b"b".to_vec(),
            b"bin".to_vec(),
            b"\xff".to_vec()
        ]),
        proptest::collection::vec(any::<u8>(), 1..12),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let digest = any::<[u8; 32]>().prop_map(Digest::from_bytes);
    prop_oneof![
        digest.clone().prop_map(|digest| Node::Directory { digest }),
        (digest, any::<u64>(), any::<bool>()).prop_map(|(digest, size, executable)| Node::File {
            digest,
            size,
            executable
        }),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|target| Node::Symlink { target }),
    ]
}

fn tree() -> impl Strategy<Value = Tree> {
    proptest::collection::btree_map(name(), (node(), any::<i64>(), 0..NANOS_PER_SECOND), 0..8)
        .prop_filter_map("valid names", |entries| {
            let entries = entries
                .into_iter()
                .map(|(name, (node, seconds, nanos))| Entry {
                    name,
                    node,
                    mtime: Mtime::new(seconds, nanos).expect("nanos below 1e9"),
                })
                .collect();
            Tree::new(entries).ok()
        })
}

/// `tree` in the old encoding (no mtimes).
fn hdt1(tree: &Tree) -> Vec<u8> {
    let mut out = MAGIC_WITHOUT_MTIMES.to_vec();
    out.extend_from_slice(&(tree.entries.len() as u32).to_le_bytes());
    for entry in &tree.entries {
        let (kind, payload) = match &entry.node {
            Node::Directory { digest } => (b'd', digest.as_bytes().to_vec()),
            Node::File {
                digest,
                size,
                executable,
            } => (
                if *executable { b'x' } else { b'f' },
                [&size.to_le_bytes()[..], digest.as_bytes()].concat(),
            ),
            Node::Symlink { target } => (b'l', [&(target.len() as u32).to_le_bytes()[..], target].concat()),
        };
        out.push(kind);
        out.extend_from_slice(&(entry.name.len() as u32).to_le_bytes());
        out.extend_from_slice(&entry.name);
        out.extend_from_slice(&payload);
    }
    out
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    let digest = Digest::of(bytes);
    let (result, heap) = peak_heap(|| Tree::decode(&digest, bytes));
    // Entries hold their names and targets, plus a fixed size each (at least 45 input bytes).
    prop_assert!(
        heap <= 32 * bytes.len() as u64 + 4096,
        "{heap} bytes of heap for {} bytes",
        bytes.len()
    );
    match result {
        Ok(tree) if bytes.starts_with(MAGIC) => prop_assert_eq!(tree.encode(), bytes),
        Ok(tree) => {
            let again = Tree::decode(&digest, &tree.encode());
            prop_assert_eq!(again.ok(), Some(tree));
        }
        Err(TreeError::Malformed { .. }) => {}
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn fuzz_tree_objects(tree in tree(), old in any::<bool>(), changes in mutations(3)) {
        let bytes = if old { hdt1(&tree) } else { tree.encode() };
        if changes.is_empty() {
            let decoded = Tree::decode(&Digest::of(&bytes), &bytes);
            prop_assert!(decoded.is_ok(), "{decoded:?}");
        }
        check(&mutated(&bytes, &changes))?;
    }

    #[test]
    fn fuzz_random_tree_bytes(
        magic in proptest::sample::select(vec![&b""[..], b"HDT1", b"HDT2"]),
        rest in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        check(&[magic, &rest].concat())?;
    }
}
