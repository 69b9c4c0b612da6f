//! Shared pieces of the fuzz tests: property tests (proptest, with shrinking) that feed each
//! parser of untrusted input valid documents mangled at random, and plain random bytes.
//!
//! Each parser has its tests in a `fuzz` module beside it (`source::unpack::fuzz`,
//! `build::spec::fuzz`, `stack::parse::fuzz`, `remote::manifest::fuzz`, `remote::chunks::fuzz`,
//! `tree::fuzz`), so `cargo test -p hdist-store fuzz` runs them all. The properties: no panic,
//! every failure a typed error, nothing written outside the destination, bounded memory.
//!
//! Each test's default number of cases keeps the whole set within about a minute in CI;
//! `PROPTEST_CASES=N` sets the cases of every one of them for a long run (`scripts/fuzz.sh`).
//! Failures are not persisted to files: a case found is kept as a named regression test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;
use proptest::sample::Index;

/// The proptest configuration of a fuzz test: `default_cases`, or `PROPTEST_CASES`.
pub(crate) fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One change to a byte string; positions are fractions of its length, so they shrink well
/// and stay meaningful whatever the length.
#[derive(Debug, Clone)]
pub(crate) enum Mutation {
    /// Cut the bytes at a position.
    Truncate(Index),
    /// XOR one byte with a non-zero mask.
    Flip(Index, u8),
    /// Replace bytes from a position on.
    Overwrite(Index, Vec<u8>),
    /// Insert bytes at a position.
    Insert(Index, Vec<u8>),
    /// Remove up to `n` bytes at a position.
    Remove(Index, usize),
    /// Repeat the `n` bytes from a position right after themselves.
    Duplicate(Index, usize),
}

/// Bytes that mean something to the parsers here: separators, quotes, digits, high bits.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..16),
        proptest::sample::select(vec![
            b"/".to_vec(),
            b"..".to_vec(),
            b"\0".to_vec(),
            b"\"".to_vec(),
            b"\\".to_vec(),
            b"[".to_vec(),
            b"]".to_vec(),
            b"{".to_vec(),
            b"}".to_vec(),
            b",".to_vec(),
            b"=".to_vec(),
            b"\n".to_vec(),
            b"$".to_vec(),
            b"\xff\xff\xff\xff".to_vec(),
            b"\x7f\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            b"99999999999999999999".to_vec(),
            b"-1".to_vec(),
        ]),
    ]
}

/// One random [`Mutation`].
pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), 1..=255u8).prop_map(|(at, mask)| Mutation::Flip(at, mask)),
        (any::<Index>(), interesting_bytes()).prop_map(|(at, bytes)| Mutation::Overwrite(at, bytes)),
        (any::<Index>(), interesting_bytes()).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<Index>(), 1..64usize).prop_map(|(at, n)| Mutation::Remove(at, n)),
        (any::<Index>(), 1..600usize).prop_map(|(at, n)| Mutation::Duplicate(at, n)),
    ]
}

/// Up to `max` random mutations (none at all in some cases: the valid input itself).
pub(crate) fn mutations(max: usize) -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 0..=max)
}

/// Applies `mutations` in order.
pub(crate) fn apply(bytes: &mut Vec<u8>, mutations: &[Mutation]) {
    for mutation in mutations {
        // A position in 0..=len: the end is a place to insert at too.
        let at = |index: &Index, len: usize| index.index(len + 1);
        match mutation {
            Mutation::Truncate(i) => {
                let at = at(i, bytes.len());
                bytes.truncate(at);
            }
            Mutation::Flip(i, mask) => {
                if !bytes.is_empty() {
                    let at = i.index(bytes.len());
                    bytes[at] ^= mask;
                }
            }
            Mutation::Overwrite(i, new) => {
                let at = at(i, bytes.len());
                let end = (at + new.len()).min(bytes.len());
                bytes.splice(at..end, new.iter().copied());
            }
            Mutation::Insert(i, new) => {
                let at = at(i, bytes.len());
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Remove(i, n) => {
                let at = at(i, bytes.len());
                let end = (at + n).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Duplicate(i, n) => {
                let at = at(i, bytes.len());
                let end = (at + n).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
}

/// `bytes` with `mutations` applied.
pub(crate) fn mutated(bytes: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    apply(&mut out, mutations);
    out
}

/// A JSON value for documents that mean something: keys and strings from `words` (plus
/// hostile ones), numbers at the edges, nesting a few levels deep.
pub(crate) fn json_value(words: &'static [&'static str]) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let word = prop_oneof![
        4 => proptest::sample::select(words).prop_map(str::to_string),
        1 => proptest::sample::select(vec![
            "", "$", "${", "${X", "$$", "\\$", "../..", "/", "a b", "\u{0}", "\u{e9}", "$ARTIFACT/../..",
        ])
        .prop_map(str::to_string),
        1 => ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        proptest::sample::select(vec![0i64, 1, -1, i64::MIN, i64::MAX]).prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1.5f64)),
        word.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((word.clone(), inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// How to change a JSON document: replace the `n`-th node (pre-order, modulo their count)
/// with a value, or remove it from its parent.
#[derive(Debug, Clone)]
pub(crate) enum JsonEdit {
    Replace(Index, serde_json::Value),
    Remove(Index),
}

/// Random [`JsonEdit`]s with values from [`json_value`].
pub(crate) fn json_edits(words: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<JsonEdit>> {
    proptest::collection::vec(
        prop_oneof![
            3 => (any::<Index>(), json_value(words)).prop_map(|(at, value)| JsonEdit::Replace(at, value)),
            1 => any::<Index>().prop_map(JsonEdit::Remove),
        ],
        0..=max,
    )
}

/// Applies `edits` to `doc` in order.
pub(crate) fn apply_json_edits(doc: &mut serde_json::Value, edits: &[JsonEdit]) {
    use serde_json::Value;
    /// The JSON pointers of `value` and every node below it, in pre-order.
    fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
        out.push(at.clone());
        let escape = |key: &str| key.replace('~', "~0").replace('/', "~1");
        match value {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    pointers(item, format!("{at}/{i}"), out);
                }
            }
            Value::Object(fields) => {
                for (key, item) in fields {
                    pointers(item, format!("{at}/{}", escape(key)), out);
                }
            }
            _ => {}
        }
    }
    for change in edits {
        let mut all = Vec::new();
        pointers(doc, String::new(), &mut all);
        match change {
            JsonEdit::Replace(at, value) => {
                if let Some(node) = doc.pointer_mut(at.get(all.as_slice()).as_str()) {
                    *node = value.clone();
                }
            }
            JsonEdit::Remove(at) => {
                let pointer = at.get(all.as_slice()).clone();
                let Some((parent, last)) = pointer.rsplit_once('/') else {
                    continue;
                };
                let key = last.replace("~1", "/").replace("~0", "~");
                match doc.pointer_mut(parent) {
                    Some(Value::Object(fields)) => {
                        fields.remove(&key);
                    }
                    Some(Value::Array(items)) => {
                        if let Ok(i) = key.parse::<usize>() {
                            items.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The store crate's unit tests count the heap bytes each thread holds, so a fuzz test can
/// bound what one parse allocates ([`peak_heap`]). Frees on another thread than the
/// allocation make a thread's count drift; the counts are for bounds, not accounting.
#[global_allocator]
static COUNTING: CountingAllocator = CountingAllocator;

struct CountingAllocator;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    /// The highest `LIVE` since the last [`peak_heap`] began.
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: during thread teardown the counters may be gone; nothing to count then.
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`; `ptr` came from `System` through this allocator.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        new
    }
}

/// Runs `f` and returns its result with the most heap bytes this thread held during it,
/// above what it held before (allocations by Rust code; C libraries' `malloc` is not seen).
pub(crate) fn peak_heap<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(base));
    let result = f();
    let peak = PEAK.with(Cell::get);
    (result, peak.saturating_sub(base).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_heap_sees_an_allocation() {
        let ((), peak) = peak_heap(|| {
            let v = vec![1u8; 3 << 20];
            assert_eq!(v.len(), 3 << 20);
        });
        assert!(peak >= 3 << 20, "{peak}");
        let ((), small) = peak_heap(|| {});
        assert!(small < 1 << 10, "{small}");
    }
}
