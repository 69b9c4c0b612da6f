//! Ant-style globs over `/`-separated paths: `*` matches within one component (any bytes but
//! `/`), `?` one byte, and a whole component `**` matches any number of directories. Used by
//! `create-links` and profile rules.

use std::io;
use std::path::PathBuf;

/// Whether one path component matches one pattern component (`*` and `?` wildcards).
fn component_matches(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            component_matches(&pattern[1..], name)
                || (!name.is_empty() && component_matches(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => component_matches(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => component_matches(&pattern[1..], &name[1..]),
        _ => false,
    }
}

fn split(path: &[u8]) -> Vec<&[u8]> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty()).collect()
}

fn components_match(pattern: &[&[u8]], path: &[&[u8]]) -> bool {
    match pattern.first() {
        None => path.is_empty(),
        Some(&b"**") => (0..=path.len()).any(|skip| components_match(&pattern[1..], &path[skip..])),
        Some(first) => {
            !path.is_empty()
                && component_matches(first, path[0])
                && components_match(&pattern[1..], &path[1..])
        }
    }
}

/// Whether `path` matches `pattern` (both `/`-separated; leading `/` ignored on both).
pub fn matches(pattern: &[u8], path: &[u8]) -> bool {
    components_match(&split(pattern), &split(path))
}

/// Every existing path matching the absolute `pattern`, sorted. Symlinks are not followed
/// while walking.
pub fn expand(pattern: &str) -> io::Result<Vec<PathBuf>> {
    use std::os::unix::ffi::OsStrExt;
    let parts = split(pattern.as_bytes());
    // Walk from the longest literal prefix.
    let literal = parts
        .iter()
        .take_while(|c| !c.iter().any(|b| matches!(b, b'*' | b'?')))
        .count();
    let mut root = PathBuf::from("/");
    for part in &parts[..literal] {
        root.push(std::ffi::OsStr::from_bytes(part));
    }
    let mut out = Vec::new();
    if literal == parts.len() {
        if root.symlink_metadata().is_ok() {
            out.push(root);
        }
        return Ok(out);
    }
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if matches(pattern.as_bytes(), path.as_os_str().as_bytes()) {
                out.push(path.clone());
            }
            if entry.file_type()?.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn ant_globs() {
        assert!(matches(b"lib/*.so*", b"lib/libz.so.1"));
        assert!(!matches(b"lib/*.so*", b"lib/sub/libz.so"));
        assert!(matches(b"lib/**/*.py", b"lib/a/b/c.py"));
        assert!(matches(b"lib/**/*.py", b"lib/c.py"));
        assert!(matches(b"**", b"anything/at/all"));
        assert!(matches(b"bin/?ython3", b"bin/python3"));
        assert!(!matches(b"bin/python", b"bin/python3"));
        assert!(matches(b"/abs/x", b"abs/x"));
    }
}
