//! Parsing: JSON → typed nodes. Everything a run could reject without an environment is
//! rejected here, so `validate` and `run_job` agree by construction.

use serde_json::Value;

use super::template::Template;
use super::JobError;

/// Node types; exactly one per node.
const NODE_KINDS: [&str; 9] = [
    "cmd",
    "hit",
    "commands",
    "set",
    "prepend_path",
    "append_path",
    "prepend_flag",
    "append_flag",
    "chdir",
];
/// Keys allowed beside `cmd` / `hit`.
const RUN_MODIFIERS: [&str; 3] = ["inputs", "to_var", "append_to_file"];
/// Keys allowed beside `set` and the path/flag nodes.
const ENV_MODIFIERS: [&str; 2] = ["value", "nohash_value"];
/// Keys of an `inputs` entry.
const INPUT_KINDS: [&str; 3] = ["text", "json", "string"];

/// A parsed node and where it sits.
pub(super) struct Node<'v> {
    /// E.g. `commands[2].commands[0]`.
    pub(super) path: String,
    /// E.g. `2_0`: names the node's `inputs` files, as Hashdist does.
    pub(super) stem: String,
    pub(super) kind: NodeKind<'v>,
}

pub(super) enum NodeKind<'v> {
    Empty,
    Scope(Vec<Node<'v>>),
    Run(Run<'v>),
    Env {
        var: &'v str,
        op: EnvOp,
        value: Template,
    },
    Chdir(Template),
}

#[derive(Clone, Copy)]
pub(super) enum EnvOp {
    Set,
    Prepend(&'static str),
    Append(&'static str),
}

pub(super) struct Run<'v> {
    pub(super) hit: bool,
    pub(super) argv: Vec<Template>,
    pub(super) inputs: Vec<Input<'v>>,
    pub(super) output: Output<'v>,
}

pub(super) enum Input<'v> {
    Text(Vec<&'v str>),
    Json(&'v Value),
    Verbatim(&'v str),
}

pub(super) enum Output<'v> {
    Log,
    ToVar(&'v str),
    AppendToFile(Template),
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Array(a) if a.is_empty() => "an empty list".to_string(),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

fn bad_field(
    path: &str,
    field: impl Into<String>,
    expected: &'static str,
    found: Option<&Value>,
) -> JobError {
    JobError::BadField {
        path: path.to_string(),
        field: field.into(),
        expected,
        found: found.map_or_else(|| "nothing".to_string(), describe),
    }
}

type Object = serde_json::Map<String, Value>;

fn string_field<'v>(obj: &'v Object, key: &str, path: &str) -> Result<&'v str, JobError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s),
        other => Err(bad_field(path, key, "a string", other)),
    }
}

fn template_field(obj: &Object, key: &str, path: &str) -> Result<Template, JobError> {
    Template::parse(string_field(obj, key, path)?, format!("{path}.{key}"))
}

/// A variable name the job may set: anything a process environment can hold as a name.
/// (Names that are not `[A-Za-z_][A-Za-z0-9_]*` cannot be substituted but may still matter to
/// the programs run, so they are allowed, as in Hashdist.)
fn var_field<'v>(obj: &'v Object, key: &str, path: &str) -> Result<&'v str, JobError> {
    const EXPECTED: &str = "a variable name (a non-empty string without '=' or NUL)";
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() && !s.contains(['=', '\0']) => Ok(s),
        other => Err(bad_field(path, key, EXPECTED, other)),
    }
}

pub(super) fn parse_list<'v>(
    items: &'v [Value],
    list_path: &str,
    stem_prefix: &str,
) -> Result<Vec<Node<'v>>, JobError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let stem = if stem_prefix.is_empty() {
                i.to_string()
            } else {
                format!("{stem_prefix}_{i}")
            };
            parse_node(item, format!("{list_path}[{i}]"), stem)
        })
        .collect()
}

fn parse_node(value: &Value, path: String, stem: String) -> Result<Node<'_>, JobError> {
    let Some(obj) = value.as_object() else {
        return Err(JobError::NotAnObject {
            path,
            found: describe(value),
        });
    };
    let mut kind: Option<&str> = None;
    for key in obj.keys() {
        if NODE_KINDS.contains(&key.as_str()) {
            if let Some(first) = kind {
                return Err(JobError::ConflictingKeys {
                    path,
                    first: first.to_string(),
                    second: key.clone(),
                });
            }
            kind = Some(key);
        }
    }
    let Some(kind) = kind else {
        return match obj.keys().next() {
            None => Ok(Node {
                path,
                stem,
                kind: NodeKind::Empty,
            }),
            Some(key) => Err(JobError::UnknownNode {
                path,
                key: key.clone(),
                expected: format!("a node type: one of {}", NODE_KINDS.join(", ")),
            }),
        };
    };
    let modifiers: &[&str] = match kind {
        "cmd" | "hit" => &RUN_MODIFIERS,
        "commands" | "chdir" => &[],
        _ => &ENV_MODIFIERS,
    };
    if let Some(key) = obj
        .keys()
        .find(|k| k.as_str() != kind && !modifiers.contains(&k.as_str()))
    {
        let expected = if modifiers.is_empty() {
            format!("no other key beside {kind:?}")
        } else {
            format!("only {} beside {kind:?}", modifiers.join(", "))
        };
        return Err(JobError::UnknownNode {
            path,
            key: key.clone(),
            expected,
        });
    }
    let kind = match kind {
        "commands" => match obj.get("commands") {
            Some(Value::Array(items)) => {
                NodeKind::Scope(parse_list(items, &format!("{path}.commands"), &stem)?)
            }
            other => return Err(bad_field(&path, "commands", "a list of nodes", other)),
        },
        "chdir" => NodeKind::Chdir(template_field(obj, "chdir", &path)?),
        "cmd" | "hit" => NodeKind::Run(parse_run(obj, kind, &path)?),
        _ => {
            let op = match kind {
                "prepend_path" => EnvOp::Prepend(":"),
                "append_path" => EnvOp::Append(":"),
                "prepend_flag" => EnvOp::Prepend(" "),
                "append_flag" => EnvOp::Append(" "),
                _ => EnvOp::Set,
            };
            let var = var_field(obj, kind, &path)?;
            let value_key = match (obj.contains_key("value"), obj.contains_key("nohash_value")) {
                (true, true) => {
                    return Err(JobError::ConflictingKeys {
                        path,
                        first: "value".to_string(),
                        second: "nohash_value".to_string(),
                    })
                }
                (false, true) => "nohash_value",
                _ => "value",
            };
            let value = match obj.get(value_key) {
                Some(Value::String(s)) => Template::parse(s, format!("{path}.{value_key}"))?,
                other => {
                    return Err(bad_field(
                        &path,
                        value_key,
                        "a string (in \"value\", or \"nohash_value\" to keep it out of the hash)",
                        other,
                    ))
                }
            };
            NodeKind::Env { var, op, value }
        }
    };
    Ok(Node { path, stem, kind })
}

fn parse_run<'v>(obj: &'v Object, kind: &str, path: &str) -> Result<Run<'v>, JobError> {
    const ARGV: &str = "a non-empty list of strings";
    let items = match obj.get(kind) {
        Some(Value::Array(items)) if !items.is_empty() => items,
        other => return Err(bad_field(path, kind, ARGV, other)),
    };
    let argv = items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => Template::parse(s, format!("{path}.{kind}[{i}]")),
            other => Err(bad_field(path, format!("{kind}[{i}]"), "a string", Some(other))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inputs = match obj.get("inputs") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_input(item, path, i))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(bad_field(path, "inputs", "a list of inputs", Some(other))),
    };
    let output = match (obj.contains_key("to_var"), obj.contains_key("append_to_file")) {
        (true, true) => {
            return Err(JobError::ConflictingKeys {
                path: path.to_string(),
                first: "to_var".to_string(),
                second: "append_to_file".to_string(),
            })
        }
        (true, false) => Output::ToVar(var_field(obj, "to_var", path)?),
        (false, true) => Output::AppendToFile(template_field(obj, "append_to_file", path)?),
        (false, false) => Output::Log,
    };
    Ok(Run {
        hit: kind == "hit",
        argv,
        inputs,
        output,
    })
}

fn parse_input<'v>(value: &'v Value, node_path: &str, index: usize) -> Result<Input<'v>, JobError> {
    let path = format!("{node_path}.inputs[{index}]");
    let Some(obj) = value.as_object() else {
        return Err(JobError::NotAnObject {
            path,
            found: describe(value),
        });
    };
    if let Some(key) = obj.keys().find(|k| !INPUT_KINDS.contains(&k.as_str())) {
        return Err(JobError::UnknownNode {
            path,
            key: key.clone(),
            expected: "exactly one of text, json, string".to_string(),
        });
    }
    let mut keys = obj.keys();
    let (Some(kind), None) = (keys.next(), keys.next()) else {
        let mut keys = obj.keys();
        return match (keys.next(), keys.next()) {
            (Some(first), Some(second)) => Err(JobError::ConflictingKeys {
                path,
                first: first.clone(),
                second: second.clone(),
            }),
            _ => Err(bad_field(
                node_path,
                format!("inputs[{index}]"),
                "{\"text\": [lines]}, {\"json\": document} or {\"string\": text}",
                Some(value),
            )),
        };
    };
    match (kind.as_str(), &obj[kind.as_str()]) {
        ("json", doc) => Ok(Input::Json(doc)),
        ("string", Value::String(s)) => Ok(Input::Verbatim(s)),
        ("string", other) => Err(bad_field(&path, "string", "a string", Some(other))),
        (_, Value::Array(lines)) => lines
            .iter()
            .enumerate()
            .map(|(j, line)| match line {
                Value::String(s) => Ok(s.as_str()),
                other => Err(bad_field(&path, format!("text[{j}]"), "a string", Some(other))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Input::Text),
        (_, other) => Err(bad_field(&path, "text", "a list of strings (lines)", Some(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn validate_names_the_offending_node() {
        let check = |job: Value| validate(job.as_array().unwrap()).unwrap_err();
        match check(json!([{"set": "A", "value": "1"}, {"frob": 1}])) {
            JobError::UnknownNode { path, key, .. } => {
                assert_eq!(path, "commands[1]");
                assert_eq!(key, "frob");
            }
            other => panic!("{other:?}"),
        }
        match check(json!([{"commands": [{"chdir": "x"}, {"commands": [{}, {"set": "X"}]}]}])) {
            JobError::BadField {
                path, field, found, ..
            } => {
                assert_eq!(path, "commands[0].commands[1].commands[1]");
                assert_eq!(field, "value");
                assert_eq!(found, "nothing");
            }
            other => panic!("{other:?}"),
        }
        let err = check(json!([{"cmd": ["/bin/echo", 3]}]));
        assert!(
            matches!(&err, JobError::BadField { path, field, .. } if path == "commands[0]" && field == "cmd[1]")
        );
        assert_eq!(
            err.to_string(),
            "commands[0].cmd[1]: expected a string, found a number (3)"
        );

        assert!(matches!(
            check(json!([{"cmd": ["a"], "set": "X"}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(check(json!([{"cmd": []}])), JobError::BadField { field, .. } if field == "cmd"));
        assert!(
            matches!(check(json!([{"cmd": "echo hi"}])), JobError::BadField { field, .. } if field == "cmd")
        );
        assert!(
            matches!(check(json!([{"set": "X", "value": "1", "to_var": "Y"}])), JobError::UnknownNode { key, .. } if key == "to_var")
        );
        assert!(
            matches!(check(json!([{"set": "X", "value": 1}])), JobError::BadField { field, .. } if field == "value")
        );
        assert!(
            matches!(check(json!([{"set": "A=B", "value": "1"}])), JobError::BadField { field, .. } if field == "set")
        );
        assert!(matches!(
            check(json!([{"set": "X", "value": "1", "nohash_value": "2"}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "to_var": "X", "append_to_file": "f"}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(
            check(json!([{"commands": [], "to_var": "X"}])),
            JobError::UnknownNode { .. }
        ));
        assert!(matches!(check(json!([{"chdir": 1}])), JobError::BadField { .. }));
        assert!(
            matches!(check(json!(["echo"])), JobError::NotAnObject { path, .. } if path == "commands[0]")
        );
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{"text": "not a list"}]}])),
            JobError::BadField { path, field, .. } if path == "commands[0].inputs[0]" && field == "text"
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{"text": [], "string": ""}]}])),
            JobError::ConflictingKeys { .. }
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{"file": "x"}]}])),
            JobError::UnknownNode { path, .. } if path == "commands[0].inputs[0]"
        ));
        assert!(matches!(
            check(json!([{"cmd": ["a"], "inputs": [{}]}])),
            JobError::BadField { .. }
        ));
        // Substitution syntax does not depend on the environment, so it is checked up front.
        assert!(matches!(
            check(json!([{"cmd": ["echo", "$$"]}])),
            JobError::DollarDollar { path, .. } if path == "commands[0].cmd[1]"
        ));
        assert!(matches!(
            check(json!([{"chdir": "${x"}])),
            JobError::BadPlaceholder { .. }
        ));

        validate(
            json!([
                {},
                {"hit": ["build-unpack-sources"]},
                {"set": "X", "nohash_value": "$Y"},
                {"commands": [{"cmd": ["make"], "inputs": [{"json": {"a": 1}}], "to_var": "V"}]},
            ])
            .as_array()
            .unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn malformed_job_runs_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([
                {"cmd": ["/bin/sh", "-c", "echo ran > marker"]},
                {"cmd": ["/bin/true"], "bogus": 1},
            ]),
        );
        assert!(matches!(out.result, Err(JobError::UnknownNode { key, .. }) if key == "bogus"));
        assert!(!dir.path().join("marker").exists());
        assert!(out.log.is_empty());
    }
}
