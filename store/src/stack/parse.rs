//! Reading a stack file: TOML with positions, validated and turned into build specs.
//!
//! Everything is checked here, before the store is touched: TOML syntax, unknown keys, names,
//! duplicate packages, unknown dependencies, build-dependency cycles, source keys and the
//! generated build specs. Each error carries the position of the offending value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use toml::Spanned;

use super::templates::{self, Params};
use super::{Package, Stack, StackError, StackSource};
use crate::artifact::check_name;
use crate::build::{self, job, BuildError};
use crate::profile::{LinkRule, RuleAction};
use crate::source::{Origin, SourceKey};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    #[serde(default)]
    stack: Option<RawHeader>,
    #[serde(default)]
    package: Vec<RawPackage>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    #[serde(default)]
    profile: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: Spanned<String>,
    #[serde(default)]
    version: Option<Spanned<String>>,
    #[serde(default)]
    template: Option<Spanned<String>>,
    #[serde(default)]
    build: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    #[serde(default)]
    files: Option<Spanned<Vec<toml::Value>>>,
    #[serde(default)]
    sources: Vec<Spanned<RawSource>>,
    #[serde(default)]
    build_deps: Vec<Spanned<String>>,
    #[serde(default)]
    run_deps: Vec<Spanned<String>>,
    #[serde(default)]
    configure_flags: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    make_flags: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    rules: Vec<Spanned<RawRule>>,
    #[serde(default = "yes")]
    in_profile: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    url: Spanned<String>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    action: RuleAction,
    select: String,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    target: Option<String>,
}

/// Reads and parses the stack file at `path` (relative source paths resolve against its
/// directory).
///
/// # Errors
/// [`StackError::Read`], or [`StackError::Invalid`] with the position of the problem.
pub fn read(path: &Path) -> Result<Stack, StackError> {
    let text = std::fs::read_to_string(path).map_err(|source| StackError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&path.display().to_string(), &text, base)
}

/// Parses stack file text. `file` names it in errors; relative source paths resolve against
/// `base`.
///
/// # Errors
/// [`StackError::Invalid`] with the position of the first problem found.
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Stack, StackError> {
    let cx = Cx::new(file, text);
    let raw: RawStack = toml::from_str(text).map_err(|e| {
        // toml's own message repeats the position and quotes the line; keep only the message.
        cx.err(e.span().unwrap_or(0..0), e.message().trim_end().to_string())
    })?;

    let (profile, env) = match raw.stack {
        None => (None, BTreeMap::new()),
        Some(header) => {
            let profile = match header.profile {
                None => None,
                Some(p) => {
                    check_name(p.get_ref()).map_err(|e| cx.err(p.span(), format!("profile name: {e}")))?;
                    Some(p.into_inner())
                }
            };
            let mut env = BTreeMap::new();
            for (name, value) in header.env {
                if !is_variable(name.get_ref()) {
                    return Err(cx.err(
                        name.span(),
                        format!(
                            "stack.env: {:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                            name.get_ref()
                        ),
                    ));
                }
                env.insert(name.into_inner(), value);
            }
            (profile, env)
        }
    };

    // Names first: dependencies may point forward in the file.
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for (i, package) in raw.package.iter().enumerate() {
        let name = &package.name;
        check_name(name.get_ref()).map_err(|e| cx.err(name.span(), format!("package name: {e}")))?;
        if let Some(&first) = index.get(name.get_ref()) {
            let (line, column) = cx.position(raw.package[first].name.span().start);
            return Err(cx.err(
                name.span(),
                format!(
                    "package {} is defined twice (first at {line}:{column})",
                    name.get_ref()
                ),
            ));
        }
        index.insert(name.get_ref().clone(), i);
    }
    let resolve = |package: &RawPackage, list: &[Spanned<String>], what: &str| {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for dep in list {
            let &d = index.get(dep.get_ref()).ok_or_else(|| {
                cx.err(
                    dep.span(),
                    format!(
                        "package {}: {what}: unknown package {:?} (no [[package]] has that name)",
                        package.name.get_ref(),
                        dep.get_ref()
                    ),
                )
            })?;
            if !seen.insert(d) {
                return Err(cx.err(
                    dep.span(),
                    format!(
                        "package {}: {what}: {:?} is listed twice",
                        package.name.get_ref(),
                        dep.get_ref()
                    ),
                ));
            }
            out.push(d);
        }
        Ok::<_, StackError>(out)
    };
    let mut build_deps = Vec::new();
    let mut run_deps = Vec::new();
    for package in &raw.package {
        build_deps.push(resolve(package, &package.build_deps, "build_deps")?);
        run_deps.push(resolve(package, &package.run_deps, "run_deps")?);
    }
    let order = build_order(&cx, &raw.package, &build_deps)?;

    // Specs in build order, so every import's id is known when it is needed.
    let mut specs: Vec<Option<build::BuildSpec>> = vec![None; raw.package.len()];
    let mut sources: Vec<Vec<StackSource>> = vec![Vec::new(); raw.package.len()];
    for &i in &order {
        let package = &raw.package[i];
        let imports: Vec<(String, &build::BuildSpec)> = build_deps[i]
            .iter()
            .map(|&d| {
                let spec = specs[d].as_ref().expect("build order puts dependencies first");
                (reference(&spec.name), spec)
            })
            .collect();
        // The first earlier import with each reference, so a clash names the first one.
        let mut first_with: HashMap<&str, usize> = HashMap::with_capacity(imports.len());
        for (k, (r, _)) in imports.iter().enumerate() {
            if let Some(&first) = first_with.get(r.as_str()) {
                let other = &imports[first];
                return Err(cx.err(
                    package.build_deps[k].span(),
                    format!(
                        "package {}: build dependencies {} and {} both give the variables {r}_DIR/{r}_ID; rename one",
                        package.name.get_ref(),
                        other.1.name,
                        package.build_deps[k].get_ref()
                    ),
                ));
            }
            first_with.insert(r, k);
        }
        sources[i] = package_sources(&cx, package, base)?;
        let document = spec_document(&cx, package, &sources[i], &imports)?;
        let origin = {
            let (line, column) = cx.position(package.name.span().start);
            format!("{file}:{line}:{column}: package {}", package.name.get_ref())
        };
        let spec = build::spec::from_value(&origin, document).map_err(|e| spec_error(&cx, package, e))?;
        specs[i] = Some(spec);
    }

    let mut packages = Vec::with_capacity(raw.package.len());
    for (i, package) in raw.package.into_iter().enumerate() {
        let rules = package
            .rules
            .into_iter()
            .map(|r| {
                let r = r.into_inner();
                LinkRule {
                    action: r.action,
                    select: r.select,
                    prefix: r.prefix,
                    target: r.target,
                }
            })
            .collect();
        let (line, _) = cx.position(package.name.span().start);
        packages.push(Package {
            name: package.name.into_inner(),
            spec: specs[i].take().expect("every package has a spec"),
            sources: std::mem::take(&mut sources[i]),
            build_deps: std::mem::take(&mut build_deps[i]),
            run_deps: std::mem::take(&mut run_deps[i]),
            in_profile: package.in_profile,
            rules,
            line,
        });
    }
    Ok(Stack {
        file: file.to_string(),
        profile,
        env,
        packages,
    })
}

/// The file being parsed, for positions.
struct Cx<'a> {
    file: &'a str,
    text: &'a str,
    /// Byte offset of the start of each line: positions are asked for every package, and
    /// counting lines from the top each time made parsing quadratic.
    line_starts: Vec<usize>,
}

impl<'a> Cx<'a> {
    fn new(file: &'a str, text: &'a str) -> Cx<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Cx {
            file,
            text,
            line_starts,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        // Lines starting at or before the offset; the first always does.
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let column = self.text[self.line_starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }

    fn err(&self, span: Range<usize>, message: String) -> StackError {
        let (line, column) = self.position(span.start);
        StackError::Invalid {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }
}

fn is_variable(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The import reference of a dependency: `NAME` upper-cased, other characters than
/// `[A-Z0-9]` as `_`, and a leading `_` if it would start with a digit.
pub(crate) fn reference(name: &str) -> String {
    let mut r: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    if r.starts_with(|c: char| c.is_ascii_digit()) {
        r.insert(0, '_');
    }
    r
}

/// Package indices, each after its build dependencies; a cycle is an error naming it.
fn build_order(cx: &Cx<'_>, packages: &[RawPackage], deps: &[Vec<usize>]) -> Result<Vec<usize>, StackError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    // Iterative depth-first search: the path on the stack names the cycle when one closes.
    let mut mark = vec![Mark::New; packages.len()];
    let mut order = Vec::with_capacity(packages.len());
    for root in 0..packages.len() {
        if mark[root] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::Active;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            if let Some(&dep) = deps[node].get(*next) {
                let edge = *next;
                *next += 1;
                match mark[dep] {
                    Mark::Done => {}
                    Mark::New => {
                        mark[dep] = Mark::Active;
                        path.push((dep, 0));
                    }
                    Mark::Active => {
                        let start = path
                            .iter()
                            .position(|&(n, _)| n == dep)
                            .expect("active is on the path");
                        let mut names: Vec<&str> = path[start..]
                            .iter()
                            .map(|&(n, _)| packages[n].name.get_ref().as_str())
                            .collect();
                        names.push(packages[dep].name.get_ref());
                        return Err(cx.err(
                            packages[node].build_deps[edge].span(),
                            format!("build dependency cycle: {}", names.join(" -> ")),
                        ));
                    }
                }
            } else {
                mark[node] = Mark::Done;
                order.push(node);
                path.pop();
            }
        }
    }
    Ok(order)
}

fn package_sources(cx: &Cx<'_>, package: &RawPackage, base: &Path) -> Result<Vec<StackSource>, StackError> {
    let name = package.name.get_ref();
    let mut out = Vec::new();
    for source in &package.sources {
        let url = &source.get_ref().url;
        let key = source.get_ref().key.as_ref().ok_or_else(|| {
            cx.err(
                source.span(),
                format!(
                    "package {name}: source {:?} has no key; `hdist fetch {}` prints it",
                    url.get_ref(),
                    url.get_ref()
                ),
            )
        })?;
        let parsed: SourceKey = key
            .get_ref()
            .parse()
            .map_err(|e| cx.err(key.span(), format!("package {name}: source key: {e}")))?;
        let origin = Origin::parse(url.get_ref())
            .map_err(|e| cx.err(url.span(), format!("package {name}: source url: {e}")))?;
        let origin = match origin {
            // A plain relative path travels with the stack file; `file:relative` keeps its
            // Hashdist meaning (relative to the working directory).
            Origin::Path(p)
                if p.is_relative() && !url.get_ref().to_ascii_lowercase().starts_with("file:") =>
            {
                Origin::Path(base.join(p))
            }
            other => other,
        };
        let location = match &origin {
            Origin::Path(p) => p.display().to_string(),
            _ => url.get_ref().clone(),
        };
        out.push(StackSource {
            location,
            origin,
            key: parsed,
        });
    }
    Ok(out)
}

/// The build spec document of a package (before canonicalisation).
fn spec_document(
    cx: &Cx<'_>,
    package: &RawPackage,
    sources: &[StackSource],
    imports: &[(String, &build::BuildSpec)],
) -> Result<Value, StackError> {
    let name = package.name.get_ref();
    let commands = match (&package.template, &package.build) {
        (Some(t), Some(b)) => {
            return Err(cx.err(
                b.span(),
                format!(
                    "package {name}: give either template (line {}) or build, not both",
                    cx.position(t.span().start).0
                ),
            ))
        }
        (None, None) => {
            return Err(cx.err(
                package.name.span(),
                format!(
                    "package {name}: needs a template ({}) or build = [job nodes]",
                    templates::TEMPLATES.join(", ")
                ),
            ))
        }
        (Some(template), None) => {
            let params = Params {
                configure_flags: package.configure_flags.as_ref().map(|f| f.get_ref().clone()),
                make_flags: package.make_flags.as_ref().map(|f| f.get_ref().clone()),
            };
            let refs: Vec<String> = imports.iter().map(|(r, _)| r.clone()).collect();
            templates::expand(template.get_ref(), &params, &refs).map_err(|e| {
                let span = match &e {
                    templates::TemplateError::UnusedParam { param, .. } => match *param {
                        "configure_flags" => package.configure_flags.as_ref().map(Spanned::span),
                        _ => package.make_flags.as_ref().map(Spanned::span),
                    }
                    .unwrap_or(template.span()),
                    templates::TemplateError::Unknown(_) => template.span(),
                };
                cx.err(span, format!("package {name}: {e}"))
            })?
        }
        (None, Some(nodes)) => {
            if let Some(flags) = package.configure_flags.as_ref().or(package.make_flags.as_ref()) {
                return Err(cx.err(
                    flags.span(),
                    format!(
                        "package {name}: template parameters need a template; with build = [...], \
                         write the flags into the commands"
                    ),
                ));
            }
            let mut out = Vec::new();
            for (i, node) in nodes.get_ref().iter().enumerate() {
                let value = to_json(node.get_ref())
                    .map_err(|reason| cx.err(node.span(), format!("package {name}: build[{i}]: {reason}")))?;
                // Validate node by node so the error points at the node, not the list.
                job::validate(std::slice::from_ref(&value)).map_err(|e| {
                    let text = e.to_string();
                    let text = text
                        .strip_prefix("commands[0]")
                        .map_or(text.clone(), |rest| format!("build[{i}]{rest}"));
                    cx.err(node.span(), format!("package {name}: {text}"))
                })?;
                out.push(value);
            }
            out
        }
    };
    let mut doc = Map::new();
    doc.insert("name".to_string(), json!(name));
    if let Some(version) = &package.version {
        doc.insert("version".to_string(), json!(version.get_ref()));
    }
    if !sources.is_empty() {
        let list: Vec<Value> = sources
            .iter()
            .zip(&package.sources)
            .map(|(s, raw)| {
                json!({"key": s.key.to_string(), "target": raw.get_ref().target.clone().unwrap_or_else(|| ".".to_string())})
            })
            .collect();
        doc.insert("sources".to_string(), Value::Array(list));
    }
    if let Some(files) = &package.files {
        let list = files
            .get_ref()
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| cx.err(files.span(), format!("package {name}: files: {reason}")))?;
        doc.insert("files".to_string(), Value::Array(list));
    }
    let import: Vec<Value> = imports
        .iter()
        .map(|(r, spec)| json!({"ref": r, "id": spec.id.to_string()}))
        .collect();
    doc.insert(
        "build".to_string(),
        json!({"import": import, "commands": commands}),
    );
    Ok(Value::Object(doc))
}

/// Maps a build-layer rejection of a generated spec to the position of the field it names.
fn spec_error(cx: &Cx<'_>, package: &RawPackage, error: BuildError) -> StackError {
    let name = package.name.get_ref();
    match error {
        BuildError::BadSpec { field, reason, .. } => {
            let span = if field == "version" {
                package.version.as_ref().map(Spanned::span)
            } else if field.starts_with("build") {
                package
                    .build
                    .as_ref()
                    .map(Spanned::span)
                    .or(package.template.as_ref().map(Spanned::span))
            } else if field.starts_with("sources") {
                package.sources.first().map(Spanned::span)
            } else if field.starts_with("files") {
                package.files.as_ref().map(Spanned::span)
            } else {
                None
            }
            .unwrap_or(package.name.span());
            cx.err(span, format!("package {name}: {field}: {reason}"))
        }
        other => cx.err(package.name.span(), format!("package {name}: {other}")),
    }
}

/// TOML to JSON for job nodes and files (which are JSON in a build spec).
fn to_json(value: &toml::Value) -> Result<Value, String> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => json!(i),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Float(_) => return Err("floats are not allowed in a build spec".to_string()),
        toml::Value::Datetime(_) => return Err("dates are not allowed in a build spec".to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| Ok((k.clone(), to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
    })
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6";

    fn parse_ok(text: &str) -> Stack {
        parse("s.toml", text, Path::new("/base")).unwrap()
    }

    /// The error message and its `line:column`.
    fn parse_err(text: &str) -> (String, usize, usize) {
        match parse("s.toml", text, Path::new("/base")).unwrap_err() {
            StackError::Invalid {
                file,
                line,
                column,
                message,
            } => {
                assert_eq!(file, "s.toml");
                (message, line, column)
            }
            other => panic!("not an Invalid error: {other}"),
        }
    }

    #[test]
    fn ids_chain_through_build_deps_and_match_hand_written_specs() {
        let text = format!(
            r#"
[stack]
profile = "tools"
[stack.env]
MANPATH = "$PROFILE/share/man"

[[package]]
name = "minigzip"
version = "1_2_13"
sources = [{{ url = "zlib.tar.bz2", key = "{KEY}" }}]
build_deps = ["zlib"]
run_deps = ["zlib"]
build = [
  {{ set = "PATH", value = "/usr/bin:/bin" }},
  {{ hit = ["build-unpack-sources"] }},
  {{ cmd = ["mkdir", "-p", "${{ARTIFACT}}/bin"] }},
  {{ cmd = ["cc", "-O2", "-o", "${{ARTIFACT}}/bin/minigzip", "test/minigzip.c",
           "-I${{ZLIB_DIR}}/include", "-L${{ZLIB_DIR}}/lib", "-Wl,-rpath,${{ZLIB_DIR}}/lib", "-lz"] }},
]

[[package]]
name = "zlib"
version = "1_2_13"
template = "configure-make"
sources = [{{ url = "http://example.org/zlib.tar.bz2", key = "{KEY}" }}]
in_profile = false
"#
        );
        let stack = parse_ok(&text);
        assert_eq!(stack.profile.as_deref(), Some("tools"));
        assert_eq!(stack.env["MANPATH"], "$PROFILE/share/man");
        let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/specs");
        for name in ["zlib", "minigzip"] {
            let hand = std::fs::read_to_string(specs.join(format!("{name}.json"))).unwrap();
            let hand = build::spec::parse(name, &hand).unwrap();
            assert_eq!(stack.package(name).unwrap().spec.id, hand.id, "{name}");
        }
        assert_eq!(stack.build_order(), vec![1, 0]);
        // zlib is out of the profile by itself but pulled in as minigzip's run dependency.
        assert_eq!(stack.profile_members(), vec![0, 1]);
        let minigzip = stack.package("minigzip").unwrap();
        assert_eq!(
            minigzip.sources[0].origin,
            Origin::Path("/base/zlib.tar.bz2".into())
        );
        assert_eq!(minigzip.line, 8);
        // Changing zlib changes minigzip's id.
        let changed = parse_ok(&text.replace("in_profile = false", "configure_flags = [\"--static\"]"));
        assert_ne!(changed.package("minigzip").unwrap().spec.id, minigzip.spec.id);
    }

    /// 20k packages in a chain (each also depends on the one at half its index, so some
    /// are imported thousands of times). Parsing was quadratic: a minute in a debug build.
    #[test]
    fn large_stacks_parse_in_linear_time() {
        const PACKAGES: usize = 20_000;
        let mut text = String::new();
        for i in 0..PACKAGES {
            text.push_str(&format!("[[package]]\nname = \"p{i}\"\nbuild = []\n"));
            match i {
                0 => {}
                1 | 2 => text.push_str(&format!("build_deps = [\"p{}\"]\n", i - 1)),
                _ => text.push_str(&format!("build_deps = [\"p{}\", \"p{}\"]\n", i - 1, i / 2)),
            }
        }
        let start = std::time::Instant::now();
        let stack = parse_ok(&text);
        let elapsed = start.elapsed();
        eprintln!("parsed {PACKAGES} packages in {elapsed:?}");
        assert_eq!(stack.packages.len(), PACKAGES);
        assert_eq!(stack.packages[PACKAGES - 1].line, 4 * (PACKAGES - 1) + 1);
        let order = stack.build_order();
        assert_eq!(order, (0..PACKAGES).collect::<Vec<_>>());
        // Generous for a debug build on a loaded machine; linear parsing takes about a second.
        assert!(elapsed < std::time::Duration::from_secs(10), "{elapsed:?}");
    }

    #[test]
    fn bad_stack_files_name_the_position() {
        let pkg = |name: &str, extra: &str| format!("[[package]]\nname = \"{name}\"\nbuild = []\n{extra}\n");
        // Duplicate package: points at the second name, mentions the first.
        let (m, l, c) = parse_err(&format!("{}{}", pkg("a", ""), pkg("a", "")));
        assert_eq!((l, c), (6, 8), "{m}");
        assert!(m.contains("defined twice") && m.contains("2:8"), "{m}");
        // Unknown dependency.
        let (m, l, c) = parse_err(&pkg("a", "build_deps = [\"nope\"]"));
        assert_eq!((l, c), (4, 15), "{m}");
        assert!(m.contains("\"nope\""), "{m}");
        // Cycle, named.
        let text = format!(
            "{}{}{}",
            pkg("a", "build_deps = [\"b\"]"),
            pkg("b", "build_deps = [\"c\"]"),
            pkg("c", "build_deps = [\"a\"]")
        );
        let (m, l, _) = parse_err(&text);
        assert!(m.contains("cycle: a -> b -> c -> a"), "{m}");
        assert_eq!(l, 12, "{m}");
        let (m, _, _) = parse_err(&pkg("a", "build_deps = [\"a\"]"));
        assert!(m.contains("a -> a"), "{m}");
        // Run-dependency cycles are fine.
        parse_ok(&format!(
            "{}{}",
            pkg("a", "run_deps = [\"b\"]"),
            pkg("b", "run_deps = [\"a\"]")
        ));
        // Missing key.
        let (m, l, c) = parse_err(&pkg("a", "sources = [{ url = \"x.tar.gz\" }]"));
        assert_eq!((l, c), (4, 12), "{m}");
        assert!(m.contains("no key"), "{m}");
        // Bad key.
        let (m, l, _) = parse_err(&pkg("a", "sources = [{ url = \"x.tar.gz\", key = \"md5:x\" }]"));
        assert!(m.contains("source key") && l == 4, "{m}");
        // Bad TOML.
        let (m, l, c) = parse_err("[[package]]\nname = \"a\"\nbuild = [\n");
        assert!(l >= 3 && c >= 1, "{m} {l}:{c}");
        let (_, l, c) = parse_err("[[package]]\nname = = \"a\"\n");
        assert_eq!((l, c), (2, 8));
        // Invalid name, unknown key, missing name.
        let (m, l, c) = parse_err(&pkg("a b", ""));
        assert_eq!((l, c), (2, 8), "{m}");
        let (m, l, _) = parse_err(&pkg("a", "buidl_deps = []"));
        assert!(m.contains("buidl_deps") && l == 4, "{m}");
        let (m, _, _) = parse_err("[[package]]\nbuild = []\n");
        assert!(m.contains("name"), "{m}");
        // Neither template nor build; both.
        let (m, l, _) = parse_err("[[package]]\nname = \"a\"\n");
        assert!(m.contains("template") && l == 2, "{m}");
        let (m, l, _) = parse_err(&pkg("a", "template = \"configure-make\""));
        assert!(m.contains("not both") && l == 3, "{m}");
        // Unknown template, parameter without template, bad job node, bad version.
        let (m, l, _) = parse_err("[[package]]\nname = \"a\"\ntemplate = \"cmake\"\n");
        assert!(m.contains("unknown template") && l == 3, "{m}");
        let (m, l, _) = parse_err(&pkg("a", "configure_flags = []"));
        assert!(m.contains("template") && l == 4, "{m}");
        let (m, l, c) =
            parse_err("[[package]]\nname = \"a\"\nbuild = [\n  {cmd = [\"true\"]},\n  {run = [\"x\"]},\n]\n");
        assert_eq!((l, c), (5, 3), "{m}");
        assert!(m.contains("build[1]") && m.contains("run"), "{m}");
        let (m, l, _) = parse_err(&pkg("a", "version = \"1.2\""));
        assert!(m.contains("version") && l == 4, "{m}");
        // Bad rule action, bad profile name, bad env name.
        let (m, l, _) = parse_err(&pkg("a", "rules = [{ action = \"hide\", select = \"x\" }]"));
        assert!(m.contains("hide") && l == 4, "{m}");
        let (_, l, c) = parse_err("[stack]\nprofile = \"a/b\"\n");
        assert_eq!((l, c), (2, 11));
        let (_, l, _) = parse_err("[stack.env]\n\"A-B\" = \"x\"\n");
        assert_eq!(l, 2);
    }

    #[test]
    fn references_are_valid_variable_names() {
        assert_eq!(reference("zlib"), "ZLIB");
        assert_eq!(reference("py-numpy"), "PY_NUMPY");
        assert_eq!(reference("gtk+"), "GTK_");
        assert_eq!(reference("7zip"), "_7ZIP");
        let (m, _, _) = parse_err(
            "[[package]]\nname = \"a-b\"\nbuild = []\n[[package]]\nname = \"a_b\"\nbuild = []\n\
             [[package]]\nname = \"c\"\nbuild = []\nbuild_deps = [\"a-b\", \"a_b\"]\n",
        );
        assert!(m.contains("A_B_DIR"), "{m}");
    }
}
