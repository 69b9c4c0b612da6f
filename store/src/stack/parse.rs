//! Reading a stack file: TOML with positions, validated and turned into build specs.
//!
//! Everything is checked here, before the store is touched: TOML syntax, unknown keys, names,
//! duplicate packages, package repositories and `extends` chains (see `repo`), unknown
//! dependencies, build-dependency cycles, source keys, host tools and the generated build
//! specs. Each error carries the file and position of the offending value, in whichever file
//! (stack file or package file) it was written.
//!
//! [`parse_with`] runs these steps in order: [`read_header`], [`index_names`],
//! `repo::Resolver::definition` per package, [`dependencies`], [`build_order`],
//! [`make_specs`], [`assemble`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use toml::Spanned;

use super::host::{self, HostSearch, HostTool};
use super::templates::{self, Flags, Params};
use super::{Package, Stack, StackError, StackSource};
use crate::artifact::check_name;
use crate::build::{self, job, BuildError, BuildSpec};
use crate::profile::{LinkRule, RuleAction};
use crate::source::{Origin, SourceKey};
use crate::IoContext;

mod repo;

use repo::{Definition, Layer, Repos, Resolver};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStack {
    #[serde(default)]
    stack: Option<RawHeader>,
    #[serde(default)]
    package: Vec<Spanned<RawPackage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    #[serde(default)]
    profile: Option<Spanned<String>>,
    #[serde(default)]
    env: BTreeMap<Spanned<String>, String>,
    #[serde(default)]
    repos: Vec<Spanned<String>>,
}

/// The keys of a stack `[[package]]` entry, which are also the top-level keys of a package
/// file. Every key is optional here: which are required is decided once the layers of a
/// package are merged (see `repo`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    name: Option<Spanned<String>>,
    extends: Option<Spanned<String>>,
    kind: Option<Spanned<Kind>>,
    tool: Option<Spanned<String>>,
    version: Option<Spanned<String>>,
    template: Option<Spanned<String>>,
    build: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    files: Option<Spanned<Vec<toml::Value>>>,
    sources: Option<Spanned<Vec<Spanned<RawSource>>>>,
    build_deps: Option<Spanned<Vec<Spanned<String>>>>,
    run_deps: Option<Spanned<Vec<Spanned<String>>>>,
    // Template parameters (see `templates`); `Pkg::template_params` and `Pkg::param_loc`
    // list them.
    configure_flags: Option<Spanned<Flags>>,
    make_flags: Option<Spanned<Flags>>,
    cmake_flags: Option<Spanned<Flags>>,
    meson_flags: Option<Spanned<Flags>>,
    pip_flags: Option<Spanned<Flags>>,
    python: Option<Spanned<String>>,
    rules: Option<Spanned<Vec<Spanned<RawRule>>>>,
    in_profile: Option<Spanned<bool>>,
}

/// What a package is: built from its spec (the default), or a tool taken from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Build,
    Host,
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

/// Reads and parses the stack file at `path` (relative source and repo paths resolve against
/// its directory); host tools are looked up on the process's `PATH`.
///
/// # Errors
/// [`StackError::Read`], or [`StackError::Invalid`] / [`StackError::HostTool`] with the
/// position of the problem.
pub fn read(path: &Path) -> Result<Stack, StackError> {
    read_with(path, &HostSearch::from_env())
}

/// [`read`], looking host tools up in `host`.
///
/// # Errors
/// As [`read`].
pub fn read_with(path: &Path, host: &HostSearch) -> Result<Stack, StackError> {
    let text = std::fs::read_to_string(path).io_context("read stack file", path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_with(&path.display().to_string(), &text, base, host)
}

/// Parses stack file text. `file` names it in errors; relative source and repo paths resolve
/// against `base`; host tools are looked up on the process's `PATH`.
///
/// # Errors
/// [`StackError::Invalid`] with the position of the first problem found (or
/// [`StackError::Read`] for a package file that cannot be read, [`StackError::HostTool`] for
/// a host tool that cannot be used).
pub fn parse(file: &str, text: &str, base: &Path) -> Result<Stack, StackError> {
    parse_with(file, text, base, &HostSearch::from_env())
}

/// [`parse`], looking host tools up in `host`.
///
/// # Errors
/// As [`parse`].
pub fn parse_with(file: &str, text: &str, base: &Path, host: &HostSearch) -> Result<Stack, StackError> {
    let mut texts = Texts::default();
    let stack_file = texts.add(file.to_string(), base.to_path_buf(), text.to_string());
    let raw: RawStack = texts.parse_toml(stack_file)?;
    let header = read_header(&texts, stack_file, raw.stack)?;
    let names = index_names(&texts, stack_file, &raw.package)?;
    let repos = Repos::open(&texts, stack_file, base, header.repos)?;

    let mut resolver = Resolver::new(&mut texts, &repos);
    let mut definitions = Vec::with_capacity(raw.package.len());
    for entry in raw.package {
        definitions.push(resolver.definition(stack_file, entry.into_inner())?);
    }
    let layers = resolver.into_layers();
    let packages: Vec<Pkg<'_>> = definitions
        .into_iter()
        .map(|definition| Pkg::new(&layers, definition))
        .collect();

    let (build_deps, run_deps) = dependencies(&texts, &packages, &names, &repos)?;
    let order = build_order(&texts, &packages, &build_deps)?;
    let (specs, sources, hosts) = make_specs(&texts, &packages, &build_deps, &order, host)?;
    let packages = assemble(&texts, packages, specs, sources, hosts, build_deps, run_deps);
    Ok(Stack {
        file: file.to_string(),
        profile: header.profile,
        env: header.env,
        packages,
    })
}

/// Which of the parsed texts a value was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(usize);

/// Where a value was written.
#[derive(Debug, Clone)]
struct Loc {
    file: FileId,
    span: Range<usize>,
}

/// One parsed text (the stack file or a package file).
struct Text {
    /// How it is named in messages.
    name: String,
    /// Its directory: relative paths written in it resolve against this.
    dir: PathBuf,
    text: String,
    /// Byte offset of the start of each line: positions are asked for every package, and
    /// counting lines from the top each time made parsing quadratic.
    line_starts: Vec<usize>,
}

/// Every text parsed so far, for positions in errors.
#[derive(Default)]
struct Texts {
    files: Vec<Text>,
}

impl Texts {
    fn add(&mut self, name: String, dir: PathBuf, text: String) -> FileId {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        self.files.push(Text {
            name,
            dir,
            text,
            line_starts,
        });
        FileId(self.files.len() - 1)
    }

    fn name(&self, file: FileId) -> &str {
        &self.files[file.0].name
    }

    fn dir(&self, file: FileId) -> &Path {
        &self.files[file.0].dir
    }

    /// Deserializes a whole text; a TOML or shape error gets its position.
    fn parse_toml<T: serde::de::DeserializeOwned>(&self, file: FileId) -> Result<T, StackError> {
        toml::from_str(&self.files[file.0].text).map_err(|e| {
            // toml's own message repeats the position and quotes the line; keep the message.
            self.err(file, e.span().unwrap_or(0..0), e.message().trim_end().to_string())
        })
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn position(&self, file: FileId, offset: usize) -> (usize, usize) {
        let Text {
            text, line_starts, ..
        } = &self.files[file.0];
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        // Lines starting at or before the offset; the first always does.
        let line = line_starts.partition_point(|&start| start <= offset);
        let column = text[line_starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }

    /// `FILE:LINE:COLUMN`, for messages that point at a second place.
    fn at(&self, loc: &Loc) -> String {
        let (line, column) = self.position(loc.file, loc.span.start);
        format!("{}:{line}:{column}", self.name(loc.file))
    }

    fn err(&self, file: FileId, span: Range<usize>, message: String) -> StackError {
        let (line, column) = self.position(file, span.start);
        StackError::Invalid {
            file: self.name(file).to_string(),
            line,
            column,
            message,
        }
    }

    fn err_at(&self, loc: &Loc, message: String) -> StackError {
        self.err(loc.file, loc.span.clone(), message)
    }
}

/// A key's value and the file it was written in.
struct Given<'a, T> {
    file: FileId,
    value: &'a Spanned<T>,
}

impl<T> Given<'_, T> {
    fn loc(&self) -> Loc {
        Loc {
            file: self.file,
            span: self.value.span(),
        }
    }

    fn get(&self) -> &T {
        self.value.get_ref()
    }
}

/// A package of the stack: its definition and its layers, most specific first.
struct Pkg<'a> {
    definition: Definition,
    layers: Vec<&'a Layer>,
}

impl<'a> Pkg<'a> {
    fn new(arena: &'a [Layer], definition: Definition) -> Pkg<'a> {
        let layers = definition.layers.iter().map(|&i| &arena[i]).collect();
        Pkg { definition, layers }
    }

    fn name(&self) -> &str {
        &self.definition.name
    }

    /// Where its name is written in the stack file.
    fn name_loc(&self) -> Loc {
        self.definition.name_at.clone()
    }

    /// The value of a key: from the most specific layer that gives it (the merge rule).
    fn key<T>(&self, get: impl Fn(&'a RawPackage) -> Option<&'a Spanned<T>>) -> Option<Given<'a, T>> {
        self.layers.iter().find_map(|layer| {
            get(&layer.raw).map(|value| Given {
                file: layer.file,
                value,
            })
        })
    }

    fn kind(&self) -> Kind {
        self.key(|p| p.kind.as_ref()).map_or(Kind::Build, |k| *k.get())
    }

    /// The template parameters as merged from its layers.
    fn template_params(&self) -> Params {
        let flags = |f: Option<Given<'_, Flags>>| f.map(|f| f.get().0.clone());
        Params {
            configure_flags: flags(self.key(|p| p.configure_flags.as_ref())),
            make_flags: flags(self.key(|p| p.make_flags.as_ref())),
            cmake_flags: flags(self.key(|p| p.cmake_flags.as_ref())),
            meson_flags: flags(self.key(|p| p.meson_flags.as_ref())),
            pip_flags: flags(self.key(|p| p.pip_flags.as_ref())),
            python: self.key(|p| p.python.as_ref()).map(|p| p.get().clone()),
        }
    }

    /// Where the template parameter `param` is set, if it is.
    fn param_loc(&self, param: &str) -> Option<Loc> {
        let flags = match param {
            "configure_flags" => self.key(|p| p.configure_flags.as_ref()),
            "make_flags" => self.key(|p| p.make_flags.as_ref()),
            "cmake_flags" => self.key(|p| p.cmake_flags.as_ref()),
            "meson_flags" => self.key(|p| p.meson_flags.as_ref()),
            "pip_flags" => self.key(|p| p.pip_flags.as_ref()),
            "python" => return self.key(|p| p.python.as_ref()).map(|g| g.loc()),
            _ => return None,
        };
        flags.map(|g| g.loc())
    }
}

/// `[stack]`: profile, environment and repos.
struct Header {
    profile: Option<String>,
    env: BTreeMap<String, String>,
    repos: Vec<Spanned<String>>,
}

/// Validates `[stack]`.
fn read_header(texts: &Texts, file: FileId, header: Option<RawHeader>) -> Result<Header, StackError> {
    let Some(header) = header else {
        return Ok(Header {
            profile: None,
            env: BTreeMap::new(),
            repos: Vec::new(),
        });
    };
    let profile = match header.profile {
        None => None,
        Some(p) => {
            check_name(p.get_ref()).map_err(|e| texts.err(file, p.span(), format!("profile name: {e}")))?;
            Some(p.into_inner())
        }
    };
    let mut env = BTreeMap::new();
    for (name, value) in header.env {
        if !is_variable(name.get_ref()) {
            return Err(texts.err(
                file,
                name.span(),
                format!(
                    "stack.env: {:?} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                    name.get_ref()
                ),
            ));
        }
        env.insert(name.into_inner(), value);
    }
    Ok(Header {
        profile,
        env,
        repos: header.repos,
    })
}

/// Checks each entry's name and that no two entries share one; the index of each name.
/// Names come first: dependencies may point forward in the file.
fn index_names(
    texts: &Texts,
    file: FileId,
    entries: &[Spanned<RawPackage>],
) -> Result<HashMap<String, usize>, StackError> {
    let mut index: HashMap<String, usize> = HashMap::with_capacity(entries.len());
    let mut first_at: Vec<Range<usize>> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let name = entry
            .get_ref()
            .name
            .as_ref()
            .ok_or_else(|| texts.err(file, entry.span(), "a [[package]] needs a name".to_string()))?;
        check_name(name.get_ref()).map_err(|e| texts.err(file, name.span(), format!("package name: {e}")))?;
        if let Some(&first) = index.get(name.get_ref()) {
            let (line, column) = texts.position(file, first_at[first].start);
            return Err(texts.err(
                file,
                name.span(),
                format!(
                    "package {} is defined twice (first at {line}:{column})",
                    name.get_ref()
                ),
            ));
        }
        index.insert(name.get_ref().clone(), i);
        first_at.push(name.span());
    }
    Ok(index)
}

/// A dependency: the package's index and where it is named.
type Deps = Vec<Vec<(usize, Loc)>>;

/// Build and run dependencies of every package, as indices.
/// A dependency outside the stack that a repo has is not pulled in (the stack lists what it
/// builds), but the message says where it is.
fn dependencies(
    texts: &Texts,
    packages: &[Pkg<'_>],
    index: &HashMap<String, usize>,
    repos: &Repos,
) -> Result<(Deps, Deps), StackError> {
    let resolve = |package: &Pkg<'_>, list: Option<Given<'_, Vec<Spanned<String>>>>, what: &str| {
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        let Some(list) = list else {
            return Ok(out);
        };
        for dep in list.get() {
            let loc = Loc {
                file: list.file,
                span: dep.span(),
            };
            let Some(&d) = index.get(dep.get_ref()) else {
                let hint = match repos.file_of(dep.get_ref())? {
                    Some(file) => format!(
                        "; {} defines it: add [[package]] name = {:?} to the stack",
                        file.display(),
                        dep.get_ref()
                    ),
                    None => String::new(),
                };
                return Err(texts.err_at(
                    &loc,
                    format!(
                        "package {}: {what}: unknown package {:?} (no [[package]] has that name{hint})",
                        package.name(),
                        dep.get_ref()
                    ),
                ));
            };
            if !seen.insert(d) {
                return Err(texts.err_at(
                    &loc,
                    format!(
                        "package {}: {what}: {:?} is listed twice",
                        package.name(),
                        dep.get_ref()
                    ),
                ));
            }
            out.push((d, loc));
        }
        Ok::<_, StackError>(out)
    };
    let mut build_deps = Vec::with_capacity(packages.len());
    let mut run_deps = Vec::with_capacity(packages.len());
    for package in packages {
        build_deps.push(resolve(
            package,
            package.key(|p| p.build_deps.as_ref()),
            "build_deps",
        )?);
        run_deps.push(resolve(
            package,
            package.key(|p| p.run_deps.as_ref()),
            "run_deps",
        )?);
    }
    Ok((build_deps, run_deps))
}

/// Package indices, each after its build dependencies; a cycle is an error naming it.
fn build_order(texts: &Texts, packages: &[Pkg<'_>], deps: &Deps) -> Result<Vec<usize>, StackError> {
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
            if let Some((dep, loc)) = deps[node].get(*next) {
                let dep = *dep;
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
                        let mut names: Vec<&str> =
                            path[start..].iter().map(|&(n, _)| packages[n].name()).collect();
                        names.push(packages[dep].name());
                        return Err(
                            texts.err_at(loc, format!("build dependency cycle: {}", names.join(" -> ")))
                        );
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

/// Build specs, sources and probed host tools of every package (by index), made in build
/// order so every import's id is known when it is needed.
#[allow(clippy::type_complexity)]
fn make_specs(
    texts: &Texts,
    packages: &[Pkg<'_>],
    build_deps: &Deps,
    order: &[usize],
    host: &HostSearch,
) -> Result<(Vec<BuildSpec>, Vec<Vec<StackSource>>, Vec<Option<HostTool>>), StackError> {
    let mut specs: Vec<Option<BuildSpec>> = vec![None; packages.len()];
    let mut sources: Vec<Vec<StackSource>> = vec![Vec::new(); packages.len()];
    let mut hosts: Vec<Option<HostTool>> = vec![None; packages.len()];
    for &i in order {
        let package = &packages[i];
        let imports: Vec<(String, &BuildSpec)> = build_deps[i]
            .iter()
            .map(|(d, _)| {
                let spec = specs[*d].as_ref().expect("build order puts dependencies first");
                (reference(&spec.name), spec)
            })
            .collect();
        check_references(texts, package, &imports, &build_deps[i])?;
        let document = match package.kind() {
            Kind::Host => {
                let tool = probe_host_tool(texts, package, host)?;
                let document = host_document(package, &tool);
                hosts[i] = Some(tool);
                document
            }
            Kind::Build => {
                if let Some(tool) = package.key(|p| p.tool.as_ref()) {
                    return Err(texts.err_at(
                        &tool.loc(),
                        format!("package {}: tool is only for kind = \"host\"", package.name()),
                    ));
                }
                sources[i] = package_sources(texts, package)?;
                spec_document(texts, package, &sources[i], &imports)?
            }
        };
        let origin = format!("{}: package {}", texts.at(&package.name_loc()), package.name());
        let spec = build::spec::from_value(&origin, document).map_err(|e| spec_error(texts, package, e))?;
        specs[i] = Some(spec);
    }
    let specs = specs
        .into_iter()
        .map(|s| s.expect("every package has a spec"))
        .collect();
    Ok((specs, sources, hosts))
}

/// Two build dependencies whose references collide would overwrite each other's variables.
fn check_references(
    texts: &Texts,
    package: &Pkg<'_>,
    imports: &[(String, &BuildSpec)],
    deps: &[(usize, Loc)],
) -> Result<(), StackError> {
    // The first earlier import with each reference, so a clash names the first one.
    let mut first_with: HashMap<&str, usize> = HashMap::with_capacity(imports.len());
    for (k, (r, spec)) in imports.iter().enumerate() {
        if let Some(&first) = first_with.get(r.as_str()) {
            return Err(texts.err_at(
                &deps[k].1,
                format!(
                    "package {}: build dependencies {} and {} both give the variables {r}_DIR/{r}_ID; rename one",
                    package.name(),
                    imports[first].1.name,
                    spec.name
                ),
            ));
        }
        first_with.insert(r, k);
    }
    Ok(())
}

/// Assembles the [`Package`]s, in file order.
fn assemble(
    texts: &Texts,
    packages: Vec<Pkg<'_>>,
    specs: Vec<BuildSpec>,
    sources: Vec<Vec<StackSource>>,
    hosts: Vec<Option<HostTool>>,
    build_deps: Deps,
    run_deps: Deps,
) -> Vec<Package> {
    let indices = |deps: Vec<(usize, Loc)>| deps.into_iter().map(|(d, _)| d).collect();
    packages
        .into_iter()
        .zip(specs)
        .zip(sources)
        .zip(hosts)
        .zip(build_deps.into_iter().zip(run_deps))
        .map(|((((package, spec), sources), host), (build_deps, run_deps))| {
            let rules = package
                .key(|p| p.rules.as_ref())
                .map(|rules| {
                    rules
                        .get()
                        .iter()
                        .map(|r| {
                            let r = r.get_ref();
                            LinkRule {
                                action: r.action,
                                select: r.select.clone(),
                                prefix: r.prefix.clone(),
                                target: r.target.clone(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            // A host tool is there to build with; the profile holds it only when asked to.
            let template = package.key(|p| p.template.as_ref()).map(|t| t.get().clone());
            let in_profile = package
                .key(|p| p.in_profile.as_ref())
                .map_or(host.is_none(), |given| *given.get());
            let (line, _) = texts.position(
                package.definition.name_at.file,
                package.definition.name_at.span.start,
            );
            let Definition {
                name,
                defined_in,
                extends,
                shadowed,
                ..
            } = package.definition;
            Package {
                name,
                spec,
                sources,
                build_deps: indices(build_deps),
                run_deps: indices(run_deps),
                template,
                in_profile,
                rules,
                line,
                defined_in,
                extends,
                shadowed,
                host,
            }
        })
        .collect()
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

/// The keys a host package cannot have: it is not built from anything.
fn host_refusals(package: &Pkg<'_>) -> Vec<(&'static str, Option<Loc>)> {
    let mut keys = vec![
        ("template", package.key(|p| p.template.as_ref()).map(|g| g.loc())),
        ("build", package.key(|p| p.build.as_ref()).map(|g| g.loc())),
        ("files", package.key(|p| p.files.as_ref()).map(|g| g.loc())),
        ("sources", package.key(|p| p.sources.as_ref()).map(|g| g.loc())),
        (
            "build_deps",
            package.key(|p| p.build_deps.as_ref()).map(|g| g.loc()),
        ),
    ];
    keys.extend(
        templates::PARAMETERS
            .iter()
            .map(|&param| (param, package.param_loc(param))),
    );
    keys
}

/// Probes the tool a `kind = "host"` package stands for.
fn probe_host_tool(texts: &Texts, package: &Pkg<'_>, host: &HostSearch) -> Result<HostTool, StackError> {
    let name = package.name();
    for (key, loc) in host_refusals(package) {
        if let Some(loc) = loc {
            return Err(texts.err_at(
                &loc,
                format!("package {name}: a host package (kind = \"host\") takes no {key}: it is the tool found on PATH"),
            ));
        }
    }
    let tool = package.key(|p| p.tool.as_ref());
    let loc = match &tool {
        Some(tool) => tool.loc(),
        None => package
            .key(|p| p.kind.as_ref())
            .expect("a host package has a kind")
            .loc(),
    };
    let tool_name = tool.as_ref().map_or(name, |t| t.get().as_str());
    host::probe(tool_name, host).map_err(|source| {
        let (line, column) = texts.position(loc.file, loc.span.start);
        StackError::HostTool {
            file: texts.name(loc.file).to_string(),
            line,
            column,
            package: name.to_string(),
            source,
        }
    })
}

/// The build spec document of a host package: no sources, the probe in `host_tool`, a job
/// that links `bin/TOOL` to it.
fn host_document(package: &Pkg<'_>, tool: &HostTool) -> Value {
    let mut doc = Map::new();
    doc.insert("name".to_string(), json!(package.name()));
    if let Some(version) = package.key(|p| p.version.as_ref()) {
        doc.insert("version".to_string(), json!(version.get()));
    }
    doc.insert("host_tool".to_string(), tool.spec_field());
    doc.insert(
        "build".to_string(),
        json!({"import": [], "commands": tool.commands()}),
    );
    Value::Object(doc)
}

/// A package's sources; a plain relative path resolves against the directory of the file
/// that lists it.
fn package_sources(texts: &Texts, package: &Pkg<'_>) -> Result<Vec<StackSource>, StackError> {
    let name = package.name();
    let mut out = Vec::new();
    let Some(list) = package.key(|p| p.sources.as_ref()) else {
        return Ok(out);
    };
    let file = list.file;
    for source in list.get() {
        let url = &source.get_ref().url;
        let key = source.get_ref().key.as_ref().ok_or_else(|| {
            texts.err(
                file,
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
            .map_err(|e| texts.err(file, key.span(), format!("package {name}: source key: {e}")))?;
        let origin = Origin::parse(url.get_ref())
            .map_err(|e| texts.err(file, url.span(), format!("package {name}: source url: {e}")))?;
        let origin = match origin {
            // A plain relative path travels with the file that names it; `file:relative`
            // keeps its Hashdist meaning (relative to the working directory).
            Origin::Path(p)
                if p.is_relative() && !url.get_ref().to_ascii_lowercase().starts_with("file:") =>
            {
                Origin::Path(texts.dir(file).join(p))
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

/// The job nodes of a package: its template expanded, or its `build` nodes validated.
fn commands(
    texts: &Texts,
    package: &Pkg<'_>,
    sources: &[StackSource],
    imports: &[(String, &BuildSpec)],
) -> Result<Vec<Value>, StackError> {
    let name = package.name();
    match (
        package.key(|p| p.template.as_ref()),
        package.key(|p| p.build.as_ref()),
    ) {
        (Some(t), Some(b)) => Err(texts.err_at(
            &b.loc(),
            format!(
                "package {name}: give either template ({}) or build, not both",
                texts.at(&t.loc())
            ),
        )),
        (None, None) => Err(texts.err_at(
            &package.name_loc(),
            format!(
                "package {name}: needs a template ({}) or build = [job nodes]",
                templates::TEMPLATES.join(", ")
            ),
        )),
        (Some(template), None) => {
            let deps: Vec<templates::Dep<'_>> = imports
                .iter()
                .map(|(r, spec)| templates::Dep {
                    name: &spec.name,
                    reference: r,
                })
                .collect();
            let keys: Vec<SourceKey> = sources.iter().map(|s| s.key).collect();
            templates::expand(template.get(), &package.template_params(), &deps, &keys).map_err(|e| {
                let loc = match &e {
                    templates::TemplateError::NoWheel => {
                        package.key(|p| p.sources.as_ref()).and_then(|list| {
                            list.get().first().map(|first| Loc {
                                file: list.file,
                                span: first.span(),
                            })
                        })
                    }
                    _ => e.param().and_then(|p| package.param_loc(p)),
                };
                texts.err_at(&loc.unwrap_or(template.loc()), format!("package {name}: {e}"))
            })
        }
        (None, Some(nodes)) => {
            if let Some(loc) = templates::PARAMETERS.iter().find_map(|p| package.param_loc(p)) {
                return Err(texts.err_at(
                    &loc,
                    format!(
                        "package {name}: template parameters need a template; with build = [...], \
                         write the flags into the commands"
                    ),
                ));
            }
            let mut out = Vec::new();
            for (i, node) in nodes.get().iter().enumerate() {
                let value = to_json(node.get_ref()).map_err(|reason| {
                    texts.err(
                        nodes.file,
                        node.span(),
                        format!("package {name}: build[{i}]: {reason}"),
                    )
                })?;
                // Validate node by node so the error points at the node, not the list.
                job::validate(std::slice::from_ref(&value)).map_err(|e| {
                    let text = e.to_string();
                    let text = text
                        .strip_prefix("commands[0]")
                        .map_or(text.clone(), |rest| format!("build[{i}]{rest}"));
                    texts.err(nodes.file, node.span(), format!("package {name}: {text}"))
                })?;
                out.push(value);
            }
            Ok(out)
        }
    }
}

/// The build spec document of a package (before canonicalisation).
fn spec_document(
    texts: &Texts,
    package: &Pkg<'_>,
    sources: &[StackSource],
    imports: &[(String, &BuildSpec)],
) -> Result<Value, StackError> {
    let name = package.name();
    let commands = commands(texts, package, sources, imports)?;
    let mut doc = Map::new();
    doc.insert("name".to_string(), json!(name));
    if let Some(version) = package.key(|p| p.version.as_ref()) {
        doc.insert("version".to_string(), json!(version.get()));
    }
    if let Some(raw) = package.key(|p| p.sources.as_ref()) {
        let list: Vec<Value> = sources
            .iter()
            .zip(raw.get())
            .map(|(s, raw)| {
                json!({"key": s.key.to_string(), "target": raw.get_ref().target.clone().unwrap_or_else(|| ".".to_string())})
            })
            .collect();
        if !list.is_empty() {
            doc.insert("sources".to_string(), Value::Array(list));
        }
    }
    if let Some(files) = package.key(|p| p.files.as_ref()) {
        let list = files
            .get()
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| texts.err_at(&files.loc(), format!("package {name}: files: {reason}")))?;
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
fn spec_error(texts: &Texts, package: &Pkg<'_>, error: BuildError) -> StackError {
    let name = package.name();
    match error {
        BuildError::BadSpec { field, reason, .. } => {
            let loc = if field == "version" {
                package.key(|p| p.version.as_ref()).map(|g| g.loc())
            } else if field.starts_with("build") {
                package
                    .key(|p| p.build.as_ref())
                    .map(|g| g.loc())
                    .or(package.key(|p| p.template.as_ref()).map(|g| g.loc()))
            } else if field.starts_with("sources") {
                package.key(|p| p.sources.as_ref()).map(|g| g.loc())
            } else if field.starts_with("files") {
                package.key(|p| p.files.as_ref()).map(|g| g.loc())
            } else {
                None
            }
            .unwrap_or(package.name_loc());
            texts.err_at(&loc, format!("package {name}: {field}: {reason}"))
        }
        other => texts.err_at(&package.name_loc(), format!("package {name}: {other}")),
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
version = "1.2.13"
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
version = "1.2.13"
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
        let (m, l, c) = parse_err(&pkg("a/b", ""));
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
        let (m, l, _) = parse_err("[[package]]\nname = \"a\"\ntemplate = \"scons\"\n");
        assert!(m.contains("unknown template") && l == 3, "{m}");
        let (m, l, _) = parse_err(&pkg("a", "configure_flags = []"));
        assert!(m.contains("template") && l == 4, "{m}");
        let (m, l, c) =
            parse_err("[[package]]\nname = \"a\"\nbuild = [\n  {cmd = [\"true\"]},\n  {run = [\"x\"]},\n]\n");
        assert_eq!((l, c), (5, 3), "{m}");
        assert!(m.contains("build[1]") && m.contains("run"), "{m}");
        let (m, l, c) = parse_err(&pkg("a", "version = \"../x\""));
        assert_eq!((l, c), (4, 11), "{m}");
        assert!(m.contains("invalid version \"../x\": it must start with"), "{m}");
        // Bad rule action, bad profile name, bad env name.
        let (m, l, _) = parse_err(&pkg("a", "rules = [{ action = \"hide\", select = \"x\" }]"));
        assert!(m.contains("hide") && l == 4, "{m}");
        let (_, l, c) = parse_err("[stack]\nprofile = \"a/b\"\n");
        assert_eq!((l, c), (2, 11));
        let (_, l, _) = parse_err("[stack.env]\n\"A-B\" = \"x\"\n");
        assert_eq!(l, 2);
    }

    /// `tests/fixtures/repos` of the repository.
    fn fixture_repos() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/repos")
    }

    fn parse_in(dir: &Path, text: &str) -> Result<Stack, StackError> {
        parse_with(
            &dir.join("s.toml").display().to_string(),
            text,
            dir,
            &HostSearch::default(),
        )
    }

    /// The error's file, `line:column` and message.
    fn invalid(error: StackError) -> (String, usize, usize, String) {
        match error {
            StackError::Invalid {
                file,
                line,
                column,
                message,
            } => (file, line, column, message),
            other => panic!("not an Invalid error: {other}"),
        }
    }

    #[test]
    fn repo_packages_merge_key_by_key_and_give_the_ids_of_the_written_out_stack() {
        let repos = fixture_repos();
        let stack = read_with(&repos.join("stack.toml"), &HostSearch::default()).unwrap();
        // The same packages written out in one file, keys taken as the merge rule says:
        // site/greeting.toml over pkgs/greeting-base.toml; the stack entry over pkgs/shout.toml.
        let written_out = r#"
[[package]]
name = "greeting"
version = "2.0rc1+site"
files = [{ target = "$ARTIFACT/share/greeting.txt", text = ["hello from the site"] }]
build = [{ hit = ["build-write-files"] }]
rules = [{ action = "exclude", select = "share/doc/**" }]

[[package]]
name = "shout"
version = "1.26.5"
build_deps = ["greeting"]
run_deps = ["greeting"]
build = [
  { set = "PATH", value = "/usr/bin:/bin" },
  { cmd = ["mkdir", "-p", "${ARTIFACT}/share"] },
  { cmd = ["cp", "${GREETING_DIR}/share/greeting.txt", "${ARTIFACT}/share/shout.txt"] },
]
"#;
        let expected = parse_in(&repos, written_out).unwrap();
        for (got, want) in stack.packages.iter().zip(&expected.packages) {
            assert_eq!(got.spec.document, want.spec.document, "{}", got.name);
            assert_eq!(got.spec.id, want.spec.id);
            assert_eq!(got.rules, want.rules);
            assert_eq!(got.run_deps, want.run_deps);
        }
        let greeting = stack.package("greeting").unwrap();
        assert_eq!(greeting.defined_in, repos.join("site/greeting.toml"));
        assert_eq!(greeting.extends, [repos.join("pkgs/greeting-base.toml")]);
        assert_eq!(greeting.shadowed, [repos.join("pkgs/greeting.toml")]);
        assert_eq!(greeting.line, 7);
        let shout = stack.package("shout").unwrap();
        assert_eq!(shout.defined_in, repos.join("pkgs/shout.toml"));
        assert!(shout.sources.is_empty() && shout.shadowed.is_empty());

        // With pkgs only: pkgs/greeting.toml (extends greeting-base), and shout's source,
        // relative in pkgs/shout.toml, resolves against pkgs/.
        let stack = parse_in(
            &repos,
            "[stack]\nrepos = [\"pkgs\"]\n[[package]]\nname = \"greeting\"\n[[package]]\nname = \"shout\"\n",
        )
        .unwrap();
        let greeting = stack.package("greeting").unwrap();
        assert_eq!(greeting.spec.version.as_deref(), Some("2.0rc1"));
        assert_eq!(greeting.defined_in, repos.join("pkgs/greeting.toml"));
        let shout = stack.package("shout").unwrap();
        assert_eq!(shout.spec.version.as_deref(), Some("1.26.4+local"));
        assert_eq!(
            shout.sources[0].origin,
            Origin::Path(repos.join("pkgs/shout-src.tar.gz"))
        );

        // A stack entry extending a repo package under another name is defined in the stack.
        let stack = parse_in(
            &repos,
            "[stack]\nrepos = [\"pkgs\"]\n[[package]]\nname = \"hi\"\nextends = \"greeting\"\n",
        )
        .unwrap();
        let hi = stack.package("hi").unwrap();
        assert_eq!(hi.defined_in, repos.join("s.toml"));
        assert_eq!(
            hi.extends,
            [
                repos.join("pkgs/greeting.toml"),
                repos.join("pkgs/greeting-base.toml")
            ]
        );
        assert_eq!(hi.spec.version.as_deref(), Some("2.0rc1"));
    }

    #[test]
    fn bad_repos_and_extends_name_the_file_and_position() {
        let repos = fixture_repos();
        let err = |text: &str| invalid(parse_in(&repos, text).unwrap_err());
        let stack_file = repos.join("s.toml").display().to_string();

        // Missing from every repo: at the entry's name, listing the repos.
        let (file, l, c, m) =
            err("[stack]\nrepos = [\"site\", \"pkgs\"]\n[[package]]\nname = \"nope\"\nversion = \"1\"\n");
        assert_eq!((file.as_str(), l, c), (stack_file.as_str(), 4, 8), "{m}");
        assert_eq!(
            m,
            format!(
                "package nope is in none of the repos: {}, {} and has no build, template or files",
                repos.join("site").display(),
                repos.join("pkgs").display()
            )
        );
        // An extends naming nothing: at the extends.
        let (_, l, c, m) =
            err("[stack]\nrepos = [\"pkgs\"]\n[[package]]\nname = \"x\"\nextends = \"nope\"\n");
        assert_eq!((l, c), (5, 11), "{m}");
        assert!(
            m.contains("extends \"nope\", which is in none of the repos"),
            "{m}"
        );
        // A cycle: in the package file that closes it, naming the chain.
        let (file, l, c, m) = err("[stack]\nrepos = [\"cycle\"]\n[[package]]\nname = \"cyc-a\"\n");
        assert_eq!(file, repos.join("cycle/cyc-b.toml").display().to_string());
        assert_eq!((l, c), (2, 11), "{m}");
        assert_eq!(
            m,
            format!(
                "package cyc-a: extends cycle: cyc-a ({}) -> cyc-b ({}) -> cyc-a",
                repos.join("cycle/cyc-a.toml").display(),
                repos.join("cycle/cyc-b.toml").display()
            )
        );
        // A repo that is not a directory: at the repos entry.
        let (_, l, c, m) = err("[stack]\nrepos = [\"pkgs\", \"nowhere\"]\n");
        assert_eq!((l, c), (2, 18), "{m}");
        assert!(m.contains("\"nowhere\" is not a directory"), "{m}");
        // A dependency the stack does not list, but a repo has: the message says where.
        let (_, l, c, m) = err("[stack]\nrepos = [\"pkgs\"]\n[[package]]\nname = \"shout\"\n");
        assert_eq!((l, c), (3, 15), "{m}");
        assert!(
            m.ends_with(&format!(
                "unknown package \"greeting\" (no [[package]] has that name; {} defines it: add [[package]] name = \"greeting\" to the stack)",
                repos.join("pkgs/greeting.toml").display()
            )),
            "{m}"
        );
        // An extends that is not a name.
        let (_, l, _, m) =
            err("[stack]\nrepos = [\"pkgs\"]\n[[package]]\nname = \"x\"\nextends = \"../pkgs/greeting\"\n");
        assert!(l == 5 && m.contains("extends: invalid name"), "{m}");

        // Errors inside a package file carry its name and position.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("r")).unwrap();
        std::fs::write(
            dir.path().join("r/a.toml"),
            "version = \"1\"\nbuild = []\nbuild_deps = [\"missing\"]\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("r/b.toml"), "name = \"b\"\nbuild = []\n").unwrap();
        std::fs::write(dir.path().join("r/c.toml"), "build = []\ncolour = 1\n").unwrap();
        let err = |text: &str| invalid(parse_in(dir.path(), text).unwrap_err());
        let (file, l, c, m) = err("[stack]\nrepos = [\"r\"]\n[[package]]\nname = \"a\"\n");
        assert_eq!(file, dir.path().join("r/a.toml").display().to_string());
        assert_eq!((l, c), (3, 15), "{m}");
        assert!(m.contains("unknown package \"missing\""), "{m}");
        let (file, l, c, m) = err("[stack]\nrepos = [\"r\"]\n[[package]]\nname = \"b\"\n");
        assert!(
            file.ends_with("r/b.toml") && (l, c) == (1, 8),
            "{file}:{l}:{c}: {m}"
        );
        assert!(m.contains("named by its file name"), "{m}");
        let (file, l, _, m) = err("[stack]\nrepos = [\"r\"]\n[[package]]\nname = \"c\"\n");
        assert!(
            file.ends_with("r/c.toml") && l == 2 && m.contains("colour"),
            "{file}:{l}: {m}"
        );
    }

    #[test]
    fn host_tools_are_probed_into_the_spec_and_their_dependents_ids() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let write_tool = |version: &str| {
            let path = bin.join("fakecc");
            std::fs::write(&path, format!("#!/bin/sh\necho \"fakecc {version}\"\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let text = "[[package]]\nname = \"cc\"\nkind = \"host\"\ntool = \"fakecc\"\n\n\
                    [[package]]\nname = \"app\"\nbuild_deps = [\"cc\"]\nbuild = [{ cmd = [\"fakecc\"] }]\n";
        let search = HostSearch {
            path: Some(bin.clone().into_os_string()),
        };
        let parse = || parse_with("s.toml", text, dir.path(), &search);
        write_tool("1.0");
        let first = parse().unwrap();
        let cc = first.package("cc").unwrap();
        let probed = cc.host.as_ref().unwrap();
        assert_eq!(probed.path, std::fs::canonicalize(bin.join("fakecc")).unwrap());
        assert_eq!(probed.version, "fakecc 1.0");
        assert_eq!(cc.spec.document["host_tool"]["version"], "fakecc 1.0");
        assert_eq!(cc.spec.document["host_tool"]["sha256"], probed.sha256.to_hex());
        assert!(cc.spec.sources.is_empty());
        assert!(!cc.in_profile, "a host tool is not in the profile unless asked");
        let app = first.package("app").unwrap();
        assert_eq!(app.spec.imports[0].id, cc.spec.id);
        assert_eq!(app.spec.imports[0].reference.as_deref(), Some("CC"));
        // The same tool: the same ids.
        assert_eq!(parse().unwrap().package("app").unwrap().spec.id, app.spec.id);
        // An upgraded tool: new ids for it and everything built with it.
        write_tool("1.1");
        let second = parse().unwrap();
        assert_ne!(second.package("cc").unwrap().spec.id, cc.spec.id);
        assert_ne!(second.package("app").unwrap().spec.id, app.spec.id);

        // Not on the search path: at the tool key, nothing else done.
        let missing = parse_with("s.toml", text, dir.path(), &HostSearch::default()).unwrap_err();
        match &missing {
            StackError::HostTool {
                file,
                line,
                column,
                package,
                source,
            } => {
                assert_eq!(
                    (file.as_str(), *line, *column, package.as_str()),
                    ("s.toml", 4, 8, "cc")
                );
                assert!(source.to_string().contains("fakecc is not on PATH"), "{source}");
            }
            other => panic!("{other}"),
        }
        // Without tool: the package name is the tool, and the error points at kind.
        let err = parse_with(
            "s.toml",
            "[[package]]\nname = \"nocc\"\nkind = \"host\"\n",
            dir.path(),
            &search,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("s.toml:3:8: package nocc: host tool"),
            "{err}"
        );
        // Keys a host package cannot have; tool without kind; unknown kind.
        let refused = |text: &str| invalid(parse_with("s.toml", text, dir.path(), &search).unwrap_err());
        let (_, l, _, m) = refused("[[package]]\nname = \"fakecc\"\nkind = \"host\"\nbuild = []\n");
        assert!(l == 4 && m.contains("takes no build"), "{m}");
        let (_, l, _, m) = refused("[[package]]\nname = \"x\"\ntool = \"fakecc\"\nbuild = []\n");
        assert!(l == 3 && m.contains("tool is only for kind = \"host\""), "{m}");
        let (_, l, _, m) = refused("[[package]]\nname = \"x\"\nkind = \"hots\"\n");
        assert!(l == 3 && m.contains("hots"), "{m}");
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
