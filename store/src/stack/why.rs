//! Why a package needs a rebuild: which input of its build spec changed since the last build.
//!
//! A package needs building when no artifact has its id. The id is a hash of the build spec,
//! so the answer to "why" is the difference between the spec the stack computes now and the
//! spec of the most recent artifact of the same name (every built artifact keeps its spec in
//! its document and in the index, see [`crate::artifact::ArtifactRecord::spec`]). The
//! difference is told in the terms a stack author changes:
//!
//! - `version 1.2.13 -> 1.3`
//! - a source key added, removed or replaced
//! - a dependency whose id changed, with *its* reason, recursively:
//!   `zlib changed (version 1.2.13 -> 1.3)`; the dependency's old spec is that of the exact
//!   artifact the previous build imported, so the chain of reasons is exact
//! - an environment node (`set`, `prepend_path`, …) whose value changed: `PATH /a -> /b`
//! - build commands (template parameters expand into them): the first differing command
//! - a host tool (`kind = "host"`) whose path, `--version` line or content changed:
//!   `cc changed (host tool cc: version cc 12.2 -> cc 13.1)` for what is built with it
//! - written files (`files`), and any other field, by name.
//!
//! `nohash_*` keys are ignored, as they are by the id. A package with no earlier artifact of
//! its name was "never built".

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use super::{Stack, StackError};
use crate::artifact::ArtifactId;
use crate::hash::prune_nohash;
use crate::store::{Store, StoreError};

/// Job nodes that set an environment variable (see `build::job`); a change to one is an
/// environment change rather than a command change.
const ENVIRONMENT_NODES: [&str; 5] = [
    "set",
    "prepend_path",
    "append_path",
    "prepend_flag",
    "append_flag",
];

/// The spec field of a host tool's probe (`stack::HostTool::spec_field`).
const HOST_TOOL: &str = "host_tool";

/// At most this many differing commands are spelled out in a message (the JSON has them all).
const COMMANDS_SHOWN: usize = 2;

/// Why a package is not built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RebuildReason {
    /// No artifact of the package's name with a build spec is in the store.
    NeverBuilt,
    /// The spec differs from the one `previous` (the most recent artifact of the name) was
    /// built from.
    Changed {
        /// The artifact compared with.
        previous: ArtifactId,
        /// What differs; empty only if the stored spec cannot be compared field by field.
        changes: Vec<SpecChange>,
    },
}

/// One difference between an old and a new build spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SpecChange {
    /// `version` changed (`None`: absent).
    Version {
        old: Option<String>,
        new: Option<String>,
    },
    /// A source key was replaced (both set), added (`old` unset) or removed (`new` unset).
    Source {
        old: Option<String>,
        new: Option<String>,
    },
    /// An imported dependency changed id, was added (`old` unset) or removed (`new` unset).
    Dependency {
        /// The dependency's artifact name.
        name: String,
        old: Option<ArtifactId>,
        new: Option<ArtifactId>,
        /// Why the dependency's id changed (empty if added, removed, or its old spec is gone).
        changes: Vec<SpecChange>,
    },
    /// An environment node of the build commands changed value (`None`: node absent).
    Environment {
        variable: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// Build commands differ: the old ones that are gone and the new ones in their place
    /// (rendered as command lines).
    Commands { old: Vec<String>, new: Vec<String> },
    /// A host tool (`kind = "host"`, see `stack::host`) was probed differently: `field` is
    /// `path`, `version` (its `--version` line) or `sha256` (its content).
    HostTool {
        tool: String,
        field: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// A file the build writes (`files`, by target) was changed, added or removed.
    File { target: String },
    /// Any other field differs (named by its path, e.g. `build.extra`).
    Other { field: String },
}

impl fmt::Display for RebuildReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildReason::NeverBuilt => f.write_str("never built"),
            RebuildReason::Changed { previous, changes } if changes.is_empty() => {
                write!(f, "build spec differs from {previous}'s")
            }
            RebuildReason::Changed { changes, .. } => write_list(f, changes),
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, changes: &[SpecChange]) -> fmt::Result {
    for (i, change) in changes.iter().enumerate() {
        if i > 0 {
            f.write_str("; ")?;
        }
        write!(f, "{change}")?;
    }
    Ok(())
}

/// `-` for an absent value, the value otherwise.
fn or_none(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("(none)")
}

impl fmt::Display for SpecChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecChange::Version { old, new } => write!(f, "version {} -> {}", or_none(old), or_none(new)),
            SpecChange::Source {
                old: Some(old),
                new: Some(new),
            } => write!(f, "source {old} -> {new}"),
            SpecChange::Source { old: None, new } => write!(f, "new source {}", or_none(new)),
            SpecChange::Source { old, new: None } => write!(f, "source {} removed", or_none(old)),
            SpecChange::Dependency { name, old: None, .. } => write!(f, "new dependency {name}"),
            SpecChange::Dependency { name, new: None, .. } => write!(f, "dependency {name} removed"),
            SpecChange::Dependency {
                name,
                old: Some(old),
                new: Some(new),
                changes,
            } => {
                write!(f, "{name} changed (")?;
                if changes.is_empty() {
                    // Its old spec is gone (collected): the ids are all there is to show.
                    write!(f, "{} -> {}", old.hash(), new.hash())?;
                } else {
                    write_list(f, changes)?;
                }
                f.write_str(")")
            }
            SpecChange::Environment { variable, old, new } => {
                write!(f, "environment {variable}: {} -> {}", or_none(old), or_none(new))
            }
            SpecChange::Commands { old, new } => {
                let shown = |list: &[String]| {
                    let mut text: Vec<String> = list
                        .iter()
                        .take(COMMANDS_SHOWN)
                        .map(|c| format!("`{c}`"))
                        .collect();
                    if list.len() > COMMANDS_SHOWN {
                        text.push(format!("{} more", list.len() - COMMANDS_SHOWN));
                    }
                    if text.is_empty() {
                        "(nothing)".to_string()
                    } else {
                        text.join(", ")
                    }
                };
                write!(f, "build commands {} -> {}", shown(old), shown(new))
            }
            SpecChange::HostTool {
                tool,
                field,
                old,
                new,
            } => {
                write!(
                    f,
                    "host tool {tool}: {field} {} -> {}",
                    or_none(old),
                    or_none(new)
                )
            }
            SpecChange::File { target } => write!(f, "file {target} changed"),
            SpecChange::Other { field } => write!(f, "{field} changed"),
        }
    }
}

/// Why package `index` of `stack` needs building, or `None` when its artifact is registered.
///
/// # Errors
/// [`StackError::Store`] if the index cannot be read.
pub fn rebuild_reason(
    store: &Store,
    stack: &Stack,
    index: usize,
) -> Result<Option<RebuildReason>, StackError> {
    let package = &stack.packages[index];
    let index_err = |e| StackError::Store(StoreError::from(e));
    if store
        .index()
        .artifact(&package.spec.id)
        .map_err(index_err)?
        .is_some()
    {
        return Ok(None);
    }
    let records = store
        .index()
        .artifacts_with_prefix(&format!("{}/", package.name))
        .map_err(index_err)?;
    // The most recent build; the id breaks ties so the answer does not depend on row order.
    let previous = records
        .into_iter()
        .filter(|r| r.spec.is_some())
        .max_by(|a, b| (a.created, a.id.to_string()).cmp(&(b.created, b.id.to_string())));
    let Some(previous) = previous else {
        return Ok(Some(RebuildReason::NeverBuilt));
    };
    let mut lookup_error = None;
    let mut old_spec = |id: &ArtifactId| match store.index().artifact(id) {
        Ok(record) => record.and_then(|r| r.spec),
        Err(e) => {
            lookup_error.get_or_insert(e);
            None
        }
    };
    let new_spec = |id: &ArtifactId| {
        stack
            .packages
            .iter()
            .find(|p| &p.spec.id == id)
            .map(|p| p.spec.document.clone())
    };
    let old = previous.spec.as_ref().expect("filtered on spec");
    let changes = SpecDiff::new(&mut old_spec, &new_spec).diff(old, &package.spec.document);
    if let Some(e) = lookup_error {
        return Err(index_err(e));
    }
    Ok(Some(RebuildReason::Changed {
        previous: previous.id,
        changes,
    }))
}

/// Compares build specs, following changed dependencies through two lookups: the spec an old
/// artifact was built from, and the spec a new id stands for.
pub struct SpecDiff<'a> {
    old_spec: &'a mut dyn FnMut(&ArtifactId) -> Option<Value>,
    new_spec: &'a dyn Fn(&ArtifactId) -> Option<Value>,
    /// Dependency pairs already compared: a dependency shared by many packages (a diamond)
    /// is compared once.
    seen: HashMap<(ArtifactId, ArtifactId), Vec<SpecChange>>,
}

impl fmt::Debug for SpecDiff<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpecDiff")
            .field("seen", &self.seen.len())
            .finish()
    }
}

impl<'a> SpecDiff<'a> {
    /// A comparer; `old_spec(id)` gives the spec artifact `id` was built from (if known),
    /// `new_spec(id)` the spec of the package that now has id `id` (if any).
    pub fn new(
        old_spec: &'a mut dyn FnMut(&ArtifactId) -> Option<Value>,
        new_spec: &'a dyn Fn(&ArtifactId) -> Option<Value>,
    ) -> SpecDiff<'a> {
        SpecDiff {
            old_spec,
            new_spec,
            seen: HashMap::new(),
        }
    }

    /// The differences from spec document `old` to spec document `new`, in the order
    /// version, sources, dependencies, environment and commands, files, other fields.
    pub fn diff(&mut self, old: &Value, new: &Value) -> Vec<SpecChange> {
        let (old, new) = (prune_nohash(old), prune_nohash(new));
        let empty = Map::new();
        let old = old.as_object().unwrap_or(&empty);
        let new = new.as_object().unwrap_or(&empty);
        let mut changes = Vec::new();
        let text =
            |doc: &Map<String, Value>, key: &str| doc.get(key).and_then(Value::as_str).map(str::to_string);
        if old.get("version") != new.get("version") {
            changes.push(SpecChange::Version {
                old: text(old, "version"),
                new: text(new, "version"),
            });
        }
        diff_sources(old.get("sources"), new.get("sources"), &mut changes);
        let old_build = old.get("build").and_then(Value::as_object).unwrap_or(&empty);
        let new_build = new.get("build").and_then(Value::as_object).unwrap_or(&empty);
        self.diff_imports(old_build.get("import"), new_build.get("import"), &mut changes);
        diff_commands(
            as_list(old_build.get("commands")),
            as_list(new_build.get("commands")),
            &mut changes,
        );
        diff_files(old.get("files"), new.get("files"), &mut changes);
        diff_host_tool(old.get(HOST_TOOL), new.get(HOST_TOOL), &mut changes);
        for (prefix, old_map, new_map, known) in [
            (
                "",
                old,
                new,
                &["name", "version", "sources", "build", "files", HOST_TOOL][..],
            ),
            ("build.", old_build, new_build, &["import", "commands"][..]),
        ] {
            let mut keys: Vec<&String> = old_map.keys().chain(new_map.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                if !known.contains(&key.as_str()) && old_map.get(key) != new_map.get(key) {
                    changes.push(SpecChange::Other {
                        field: format!("{prefix}{key}"),
                    });
                }
            }
        }
        changes
    }

    /// Imports are matched by artifact name (a reference may be absent in hand-written specs).
    fn diff_imports(&mut self, old: Option<&Value>, new: Option<&Value>, changes: &mut Vec<SpecChange>) {
        let ids = |list: Option<&Value>| -> Vec<ArtifactId> {
            as_list(list)
                .iter()
                .filter_map(|i| i.get("id")?.as_str()?.parse().ok())
                .collect()
        };
        let (old, new) = (ids(old), ids(new));
        for new_id in &new {
            match old.iter().find(|o| o.name() == new_id.name()) {
                Some(old_id) if old_id == new_id => {}
                Some(old_id) => {
                    let why = self.dependency(old_id, new_id);
                    changes.push(SpecChange::Dependency {
                        name: new_id.name().to_string(),
                        old: Some(old_id.clone()),
                        new: Some(new_id.clone()),
                        changes: why,
                    });
                }
                None => changes.push(SpecChange::Dependency {
                    name: new_id.name().to_string(),
                    old: None,
                    new: Some(new_id.clone()),
                    changes: Vec::new(),
                }),
            }
        }
        for old_id in old.iter().filter(|o| !new.iter().any(|n| n.name() == o.name())) {
            changes.push(SpecChange::Dependency {
                name: old_id.name().to_string(),
                old: Some(old_id.clone()),
                new: None,
                changes: Vec::new(),
            });
        }
    }

    fn dependency(&mut self, old: &ArtifactId, new: &ArtifactId) -> Vec<SpecChange> {
        let key = (old.clone(), new.clone());
        if let Some(known) = self.seen.get(&key) {
            return known.clone();
        }
        let changes = match ((self.old_spec)(old), (self.new_spec)(new)) {
            (Some(old_doc), Some(new_doc)) => self.diff(&old_doc, &new_doc),
            _ => Vec::new(),
        };
        self.seen.insert(key, changes.clone());
        changes
    }
}

fn as_list(value: Option<&Value>) -> &[Value] {
    value.and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// Sources by key: keys only in the old spec paired, in order, with keys only in the new one.
fn diff_sources(old: Option<&Value>, new: Option<&Value>, changes: &mut Vec<SpecChange>) {
    let keys = |list: Option<&Value>| -> Vec<String> {
        as_list(list)
            .iter()
            .map(|s| {
                s.get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let (old_keys, new_keys) = (keys(old), keys(new));
    let gone: Vec<&String> = old_keys.iter().filter(|k| !new_keys.contains(k)).collect();
    let added: Vec<&String> = new_keys.iter().filter(|k| !old_keys.contains(k)).collect();
    for i in 0..gone.len().max(added.len()) {
        changes.push(SpecChange::Source {
            old: gone.get(i).map(|k| k.to_string()),
            new: added.get(i).map(|k| k.to_string()),
        });
    }
    // Same keys in another order, or another target: still another build.
    if gone.is_empty() && added.is_empty() && old != new {
        changes.push(SpecChange::Other {
            field: "sources".to_string(),
        });
    }
}

/// The variable an environment node sets, and its value.
fn environment_node(node: &Value) -> Option<(String, String)> {
    let object = node.as_object()?;
    let kind = ENVIRONMENT_NODES.iter().find(|k| object.contains_key(**k))?;
    let variable = object.get(*kind)?.as_str()?;
    let value = object.get("value").and_then(Value::as_str).unwrap_or_default();
    let shown = match *kind {
        "set" => value.to_string(),
        "prepend_path" => format!("{value}:${variable}"),
        "append_path" => format!("${variable}:{value}"),
        "prepend_flag" => format!("{value} ${variable}"),
        _ => format!("${variable} {value}"),
    };
    Some((variable.to_string(), shown))
}

/// A job node as a command line a reader recognises.
fn render_node(node: &Value) -> String {
    if let Some((variable, value)) = environment_node(node) {
        return format!("{variable}={value}");
    }
    let words = |key: &str| {
        node.get(key).and_then(Value::as_array).map(|argv| {
            argv.iter()
                .map(|w| w.as_str().map_or_else(|| w.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    if let Some(line) = words("cmd") {
        return line;
    }
    if let Some(line) = words("hit") {
        return format!("hit {line}");
    }
    if let Some(dir) = node.get("chdir").and_then(Value::as_str) {
        return format!("cd {dir}");
    }
    node.to_string()
}

/// Commands: the common head and tail are skipped; in what is left, nested scopes are
/// compared inside, environment nodes of the same variable pair up as environment changes,
/// and the rest is reported as replaced commands.
fn diff_commands(old: &[Value], new: &[Value], changes: &mut Vec<SpecChange>) {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old = &old[head..old.len() - tail];
    let new = &new[head..new.len() - tail];
    if old.is_empty() && new.is_empty() {
        return;
    }
    // A nested scope changed on both sides at the same place: say what changed inside.
    if let ([a], [b]) = (old, new) {
        if let (Some(a), Some(b)) = (a.get("commands"), b.get("commands")) {
            return diff_commands(as_list(Some(a)), as_list(Some(b)), changes);
        }
    }
    let old_env: Vec<(String, String)> = old.iter().filter_map(environment_node).collect();
    let new_env: Vec<(String, String)> = new.iter().filter_map(environment_node).collect();
    let mut variables: Vec<&String> = old_env.iter().chain(&new_env).map(|(v, _)| v).collect();
    variables.sort();
    variables.dedup();
    for variable in variables {
        let values = |env: &[(String, String)]| -> Vec<String> {
            env.iter()
                .filter(|(v, _)| v == variable)
                .map(|(_, value)| value.clone())
                .collect()
        };
        let (was, is) = (values(&old_env), values(&new_env));
        if was != is {
            changes.push(SpecChange::Environment {
                variable: variable.clone(),
                old: (!was.is_empty()).then(|| was.join(", ")),
                new: (!is.is_empty()).then(|| is.join(", ")),
            });
        }
    }
    let commands = |nodes: &[Value]| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| environment_node(n).is_none())
            .map(render_node)
            .collect()
    };
    let (old, new) = (commands(old), commands(new));
    if old != new {
        changes.push(SpecChange::Commands { old, new });
    }
}

/// A host tool's probe: each of path, version line and content digest that differs.
fn diff_host_tool(old: Option<&Value>, new: Option<&Value>, changes: &mut Vec<SpecChange>) {
    if old == new {
        return;
    }
    let text = |probe: Option<&Value>, key: &str| probe?.get(key)?.as_str().map(str::to_string);
    let tool = text(new, "tool")
        .or_else(|| text(old, "tool"))
        .unwrap_or_default();
    for field in ["path", "version", "sha256"] {
        let (was, is) = (text(old, field), text(new, field));
        if was != is {
            changes.push(SpecChange::HostTool {
                tool: tool.clone(),
                field: field.to_string(),
                old: was,
                new: is,
            });
        }
    }
}

/// Files by target: a target whose entry differs, or that exists on one side only.
fn diff_files(old: Option<&Value>, new: Option<&Value>, changes: &mut Vec<SpecChange>) {
    let by_target = |list: Option<&Value>| -> Vec<(String, Value)> {
        as_list(list)
            .iter()
            .map(|f| {
                let target = f.get("target").and_then(Value::as_str).unwrap_or_default();
                (target.to_string(), f.clone())
            })
            .collect()
    };
    let (old, new) = (by_target(old), by_target(new));
    let mut targets: Vec<&String> = old.iter().chain(&new).map(|(t, _)| t).collect();
    targets.sort();
    targets.dedup();
    for target in targets {
        let find = |list: &[(String, Value)]| list.iter().find(|(t, _)| t == target).map(|(_, f)| f.clone());
        if find(&old) != find(&new) {
            changes.push(SpecChange::File {
                target: target.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::artifact::ArtifactRecord;

    const KEY_A: &str = "tar.gz:ghqgme32sythn2e7nhi3mu4c32k2p335";
    const KEY_B: &str = "tar.bz2:oh7lpfd6hqao6es7qo3zutsstppdcfy6";

    /// base <- lib <- app (build dependencies), base a template package with a source.
    fn chain(base_version: &str, flags: &str, path: &str) -> String {
        format!(
            r#"
[[package]]
name = "base"
version = "{base_version}"
template = "configure-make"
configure_flags = [{flags}]
sources = [{{ url = "base.tar.gz", key = "{KEY_A}" }}]

[[package]]
name = "lib"
version = "1"
build_deps = ["base"]
files = [{{ target = "$ARTIFACT/lib/x", text = ["x"] }}]
build = [{{ set = "PATH", value = "{path}" }}, {{ hit = ["build-write-files"] }}]

[[package]]
name = "app"
version = "1"
build_deps = ["lib"]
build = [{{ cmd = ["true"] }}]
"#
        )
    }

    fn stack(text: &str) -> Stack {
        super::super::parse("s.toml", text, Path::new("/base")).unwrap()
    }

    /// The changes of package `name` from stack `old` to stack `new`, dependencies looked up
    /// in the two stacks.
    fn changes(old: &Stack, new: &Stack, name: &str) -> Vec<SpecChange> {
        let specs = |stack: &Stack, id: &ArtifactId| {
            stack
                .packages
                .iter()
                .find(|p| &p.spec.id == id)
                .map(|p| p.spec.document.clone())
        };
        let mut old_spec = |id: &ArtifactId| specs(old, id);
        let new_spec = |id: &ArtifactId| specs(new, id);
        let mut diff = SpecDiff::new(&mut old_spec, &new_spec);
        diff.diff(
            &old.package(name).unwrap().spec.document,
            &new.package(name).unwrap().spec.document,
        )
    }

    fn text(changes: &[SpecChange]) -> String {
        RebuildReason::Changed {
            previous: "x/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".parse().unwrap(),
            changes: changes.to_vec(),
        }
        .to_string()
    }

    #[test]
    fn a_changed_dependency_is_named_with_its_own_reason_recursively() {
        let old = stack(&chain("1", "", "/bin"));
        let new = stack(&chain("2", "", "/bin"));
        assert_eq!(text(&changes(&old, &new, "base")), "version 1 -> 2");
        assert_eq!(text(&changes(&old, &new, "lib")), "base changed (version 1 -> 2)");
        let app = changes(&old, &new, "app");
        assert_eq!(text(&app), "lib changed (base changed (version 1 -> 2))");
        let SpecChange::Dependency {
            name,
            old: Some(was),
            new: Some(is),
            ..
        } = &app[0]
        else {
            panic!("{app:?}")
        };
        assert_eq!(name, "lib");
        assert_eq!(was, &old.package("lib").unwrap().spec.id);
        assert_eq!(is, &new.package("lib").unwrap().spec.id);
    }

    #[test]
    fn template_parameters_environment_sources_and_files_are_named() {
        let old = stack(&chain("1", "", "/bin"));
        let flags = stack(&chain("1", "\"--disable-nls\"", "/bin"));
        assert_eq!(
            text(&changes(&old, &flags, "base")),
            "build commands `./configure --prefix=${ARTIFACT}` -> `./configure --prefix=${ARTIFACT} --disable-nls`"
        );
        let path = stack(&chain("1", "", "/usr/bin:/bin"));
        assert_eq!(
            changes(&old, &path, "lib"),
            [SpecChange::Environment {
                variable: "PATH".to_string(),
                old: Some("/bin".to_string()),
                new: Some("/usr/bin:/bin".to_string()),
            }]
        );
        let source = stack(&chain("1", "", "/bin").replace(KEY_A, KEY_B));
        assert_eq!(
            text(&changes(&old, &source, "base")),
            format!("source {KEY_A} -> {KEY_B}")
        );
        let file = stack(&chain("1", "", "/bin").replace("text = [\"x\"]", "text = [\"y\"]"));
        assert_eq!(text(&changes(&old, &file, "lib")), "file $ARTIFACT/lib/x changed");
        // Nothing changed: nothing to say.
        assert_eq!(changes(&old, &stack(&chain("1", "", "/bin")), "app"), []);
    }

    #[test]
    fn added_and_removed_dependencies_and_unknown_fields() {
        let old = json!({"name": "a", "build": {"import": [{"ref": "X", "id": "x/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}], "commands": []}});
        let new = json!({"name": "a", "nohash_comment": "ignored", "extra": 1,
                         "build": {"import": [{"ref": "Y", "id": "y/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"}], "commands": []}});
        let mut nothing = |_: &ArtifactId| None;
        let none = |_: &ArtifactId| None;
        let changes = SpecDiff::new(&mut nothing, &none).diff(&old, &new);
        assert_eq!(
            text(&changes),
            "new dependency y; dependency x removed; extra changed"
        );
        // A nohash_ key alone changes nothing (it does not change the id either).
        let with_comment = json!({"name": "a", "nohash_x": 1, "build": {"import": [], "commands": []}});
        let plain = json!({"name": "a", "build": {"import": [], "commands": []}});
        assert_eq!(SpecDiff::new(&mut nothing, &none).diff(&plain, &with_comment), []);
    }

    #[test]
    fn an_upgraded_host_tool_is_named_in_its_dependents_reason() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("fakecc");
        let install = |version: &str| {
            std::fs::write(&tool, format!("#!/bin/sh\necho \"fakecc {version}\"\n")).unwrap();
            std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let text = "[[package]]\nname = \"cc\"\nkind = \"host\"\ntool = \"fakecc\"\n\n\
                    [[package]]\nname = \"app\"\nbuild_deps = [\"cc\"]\nbuild = [{ cmd = [\"fakecc\"] }]\n";
        let search = super::super::HostSearch {
            path: Some(dir.path().as_os_str().to_owned()),
        };
        let parse = || super::super::parse_with("s.toml", text, dir.path(), &search).unwrap();
        install("12.2");
        let old = parse();
        install("13.1");
        let new = parse();
        let app = changes(&old, &new, "app");
        let SpecChange::Dependency { changes: why, .. } = &app[0] else {
            panic!("{app:?}")
        };
        assert_eq!(
            why[0].to_string(),
            "host tool fakecc: version fakecc 12.2 -> fakecc 13.1"
        );
        assert!(
            matches!(&why[1], SpecChange::HostTool { field, .. } if field == "sha256"),
            "{why:?}"
        );
        assert_eq!(why.len(), 2, "path unchanged, nothing else: {why:?}");
    }

    /// Registers `spec` as built (an empty tree), `created` seconds after the epoch.
    fn register(store: &Store, spec: &crate::build::BuildSpec, created: i64) {
        let empty = tempfile::tempdir().unwrap();
        let tree = store
            .add_tree(
                empty.path(),
                "empty",
                None,
                crate::tree::MtimePolicy::Zero,
                &|_| {},
            )
            .unwrap();
        let record = ArtifactRecord {
            id: spec.id.clone(),
            version: spec.version.clone(),
            root: tree.record.root,
            spec: Some(spec.document.clone()),
            created,
            files: 0,
            bytes: 0,
            build_log: None,
        };
        store.register(&record, &[]).unwrap();
    }

    #[test]
    fn the_reason_compares_with_the_most_recent_build_of_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let v1 = stack(&chain("1", "", "/bin"));
        let v2 = stack(&chain("2", "", "/bin"));
        let v3 = stack(&chain("3", "", "/bin"));
        let base = 0;
        assert_eq!(
            rebuild_reason(&store, &v1, base).unwrap(),
            Some(RebuildReason::NeverBuilt)
        );
        register(&store, &v1.packages[base].spec, 100);
        assert_eq!(rebuild_reason(&store, &v1, base).unwrap(), None);
        let reason = rebuild_reason(&store, &v2, base).unwrap().unwrap();
        assert_eq!(reason.to_string(), "version 1 -> 2");
        // A later build of version 3 is what version 2 is compared with now.
        register(&store, &v3.packages[base].spec, 200);
        let reason = rebuild_reason(&store, &v2, base).unwrap().unwrap();
        assert_eq!(reason.to_string(), "version 3 -> 2");
        let RebuildReason::Changed { previous, .. } = reason else {
            panic!("{reason:?}")
        };
        assert_eq!(previous, v3.packages[base].spec.id);
        // lib was built against base 1: the reason follows the import to that exact build.
        register(&store, &v1.packages[1].spec, 150);
        let reason = rebuild_reason(&store, &v3, 1).unwrap().unwrap();
        assert_eq!(reason.to_string(), "base changed (version 1 -> 3)");
    }
}
