//! Fuzzing stack files: the stacks kept in `scripts/stacks` and `tests/fixtures/stacks`,
//! edited as documents (nodes replaced by values built from the stack vocabulary, or removed), edited line by line, and
//! mangled as text; and random text. Properties: no panic; a failure is
//! [`StackError::Invalid`] with a position inside the text; every package of a stack that
//! parses has a canonical spec (its document parses again to the same id), and the build
//! order and profile members are computed without panicking.

use std::path::Path;

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::fuzzing::{apply_json_edits, config, json_edits, mutated, mutations};

const SEEDS: &[&str] = &[
    include_str!("../../../../scripts/stacks/hello-zlib.toml"),
    include_str!("../../../../tests/fixtures/stacks/six.toml"),
];

/// Keys and values a stack file uses.
const WORDS: &[&str] = &[
    "stack",
    "profile",
    "env",
    "package",
    "name",
    "version",
    "template",
    "configure-make",
    "make-install",
    "build",
    "files",
    "sources",
    "url",
    "key",
    "target",
    "build_deps",
    "run_deps",
    "configure_flags",
    "make_flags",
    "rules",
    "action",
    "select",
    "prefix",
    "in_profile",
    "repos",
    "extends",
    "kind",
    "host",
    "tool",
    "link",
    "copy",
    "exclude",
    "hello",
    "zlib",
    "six-base",
    "six-liba",
    "cmd",
    "hit",
    "set",
    "value",
    "text",
    "tar.gz:ghqgme32sythn2e7nhi3mu4c32k2p335",
    "../x.tar.gz",
    "**/*.txt",
    "$ARTIFACT/../..",
];

/// Lines a stack file might hold, hostile ones included.
const LINES: &[&str] = &[
    "[[package]]",
    "[stack]",
    "[stack.env]",
    "name = \"hello\"",
    "name = \"zlib\"",
    "build_deps = [\"hello\"]",
    "build_deps = [\"zlib\", \"zlib\"]",
    "run_deps = [\"nope\"]",
    "template = \"configure-make\"",
    "template = \"no-such\"",
    "repos = [\"pkgs\"]",
    "extends = \"zlib\"",
    "kind = \"host\"",
    "tool = \"sh\"",
    "sources = [{ url = \"/dev/null\", key = \"tar.gz:aaaa\" }]",
    "rules = [{ action = \"link\", select = \"**\" }]",
    "build = [{ cmd = [\"$$\"] }]",
    "files = [{ target = \"$ARTIFACT/../../x\", text = [\"x\"] }]",
    "X = \"\\u0000\"",
    "a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]",
    "\u{e9} = 1",
    "",
];

#[derive(Debug, Clone)]
enum LineEdit {
    Delete(Index),
    Duplicate(Index),
    Swap(Index, Index),
    Insert(Index, &'static str),
}

fn line_edits() -> impl Strategy<Value = Vec<LineEdit>> {
    proptest::collection::vec(
        prop_oneof![
            any::<Index>().prop_map(LineEdit::Delete),
            any::<Index>().prop_map(LineEdit::Duplicate),
            (any::<Index>(), any::<Index>()).prop_map(|(a, b)| LineEdit::Swap(a, b)),
            (any::<Index>(), proptest::sample::select(LINES))
                .prop_map(|(at, line)| LineEdit::Insert(at, line)),
        ],
        0..5,
    )
}

fn edit_lines(text: &str, edits: &[LineEdit]) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    for edit in edits {
        if lines.is_empty() {
            break;
        }
        match edit {
            LineEdit::Delete(at) => {
                lines.remove(at.index(lines.len()));
            }
            LineEdit::Duplicate(at) => {
                let i = at.index(lines.len());
                lines.insert(i, lines[i]);
            }
            LineEdit::Swap(a, b) => {
                let (a, b) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(a, b);
            }
            LineEdit::Insert(at, line) => lines.insert(at.index(lines.len() + 1), line),
        }
    }
    lines.join("\n")
}

/// A JSON value as TOML (TOML has no null: nulls are left out).
fn to_toml(value: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match value {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(items) => toml::Value::Array(items.iter().filter_map(to_toml).collect()),
        J::Object(fields) => toml::Value::Table(
            fields
                .iter()
                .filter_map(|(k, v)| to_toml(v).map(|v| (k.clone(), v)))
                .collect(),
        ),
    })
}

fn check(text: &str) -> Result<(), TestCaseError> {
    // No host tool search path: a fuzzed stack must never run programs of the host.
    match parse_with(
        "stack.toml",
        text,
        Path::new("/nonexistent/base"),
        &HostSearch::default(),
    ) {
        Ok(stack) => {
            for package in &stack.packages {
                let again = build::spec::from_value("again", package.spec.document.clone());
                prop_assert_eq!(again.map(|s| s.id).ok(), Some(package.spec.id.clone()));
            }
            let order = stack.build_order();
            prop_assert_eq!(order.len(), stack.packages.len());
            let _ = stack.profile_members();
        }
        Err(StackError::Invalid { line, column, .. }) => {
            let lines = text.split('\n').count();
            prop_assert!((1..=lines).contains(&line), "line {line} of {lines}");
            prop_assert!(column >= 1);
        }
        Err(other) => prop_assert!(false, "unexpected error {other:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(600))]

    #[test]
    fn fuzz_edited_stacks(
        seed in proptest::sample::select(SEEDS),
        edits in json_edits(WORDS, 3),
        lines in line_edits(),
        changes in mutations(2),
    ) {
        let doc: toml::Value = toml::from_str(seed).unwrap();
        let mut json = serde_json::to_value(&doc).unwrap();
        apply_json_edits(&mut json, &edits);
        if let Some(text) = to_toml(&json).and_then(|v| toml::to_string(&v).ok()) {
            check(&text)?;
        }
        let text = edit_lines(seed, &lines);
        check(&text)?;
        check(&String::from_utf8_lossy(&mutated(text.as_bytes(), &changes)))?;
    }

    #[test]
    fn fuzz_random_stack_text(text in "(\\[|\\]|\\{|\\}|=|\"|,|\n|[a-z_]{1,8}| |[0-9]{1,3}|\\.){0,60}") {
        check(&text)?;
    }
}
