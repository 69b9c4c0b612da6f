//! Substitution: `$NAME` / `${NAME}` in a string, parsed once into a [`Template`] with
//! Hashdist's escaping rules (see the parent module's docs), expanded against the job's
//! variables when its node runs.

use super::{Env, JobError};

/// A substituted string, parsed once. `path` names the field it came from, for errors.
#[derive(Debug)]
pub(super) struct Template {
    path: String,
    pieces: Vec<Piece>,
}

#[derive(Debug)]
enum Piece {
    Literal(String),
    Var(String),
}

/// Length of the variable name at the start of `s` (0 if none): `[A-Za-z_][A-Za-z0-9_]*`.
fn name_len(s: &str) -> usize {
    let bytes = s.as_bytes();
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {
            1 + bytes[1..]
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count()
        }
        _ => 0,
    }
}

impl Template {
    /// Parses `text` the way Hashdist's `substitute()` does: reject `$$`, replace four
    /// backslashes by two, turn `\$` into the `$$` escape of Python's `string.Template`, then
    /// read `$$`, `$NAME` and `${NAME}`. The steps are reproduced literally (rather than as a
    /// tidier escape grammar) so that every spec expands to the same text as under Hashdist.
    pub(super) fn parse(text: &str, path: String) -> Result<Template, JobError> {
        if text.contains("$$") {
            return Err(JobError::DollarDollar {
                path,
                text: text.to_string(),
            });
        }
        let prepared = text.replace(r"\\\\", r"\\").replace(r"\$", "$$");
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = prepared.as_str();
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                literal.push('$');
                rest = tail;
                continue;
            }
            let (name, tail) = match name_len(after) {
                0 => {
                    let braced = after.strip_prefix('{').and_then(|inner| {
                        let n = name_len(inner);
                        let tail = inner[n..].strip_prefix('}')?;
                        (n > 0).then(|| (&inner[..n], tail))
                    });
                    match braced {
                        Some(found) => found,
                        None => {
                            return Err(JobError::BadPlaceholder {
                                path,
                                text: text.to_string(),
                                near: rest[dollar..].chars().take(12).collect(),
                            })
                        }
                    }
                }
                n => (&after[..n], &after[n..]),
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Var(name.to_string()));
            rest = tail;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { path, pieces })
    }

    pub(super) fn expand(&self, env: &Env) -> Result<String, JobError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Var(name) => match env.get(name) {
                    Some(value) => out.push_str(value),
                    None => {
                        return Err(JobError::MissingVariable {
                            path: self.path.clone(),
                            name: name.clone(),
                        })
                    }
                },
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn substitution_forms() {
        let env = env_of(&[("A", "a"), ("B", "b")]);
        // The cases of Hashdist's own test_substitute, plus the four-backslash rule.
        for (input, want) in [
            ("$A$B", "ab"),
            ("${A}x", "ax"),
            (r"\${A}x", "${A}x"),
            (r"\\${A}x", r"\${A}x"),
            (r"\", r"\"),
            (r"\\", r"\\"),
            (r"${A}\$\${x}", "a$${x}"),
            (r"\\\\", r"\\"),
            (r"\\\\$A", r"\$A"),
            ("$A_1-$B.c", "-b.c"),
            ("no dollars", "no dollars"),
            ("", ""),
        ] {
            let env = if input.contains("$A_1") {
                env_of(&[("A_1", ""), ("B", "b")])
            } else {
                env.clone()
            };
            assert_eq!(substitute(input, &env).unwrap(), want, "substituting {input:?}");
        }
    }

    #[test]
    fn substitution_errors() {
        let env = env_of(&[("A", "a")]);
        match substitute("$Ax", &env) {
            Err(JobError::MissingVariable { name, path }) => {
                assert_eq!(name, "Ax");
                assert_eq!(path, "");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(substitute("${NOPE}", &env), Err(JobError::MissingVariable { name, .. }) if name == "NOPE")
        );
        assert!(matches!(
            substitute("a$$b", &env),
            Err(JobError::DollarDollar { .. })
        ));
        assert!(matches!(
            substitute(r"\$$A", &env),
            Err(JobError::DollarDollar { .. })
        ));
        for bad in ["$1", "cost: $", "${A", "${}", "${ A}", "$-x"] {
            assert!(
                matches!(substitute(bad, &env), Err(JobError::BadPlaceholder { .. })),
                "{bad:?} should be rejected"
            );
        }
        let message = substitute("$Ax", &env).unwrap_err().to_string();
        assert_eq!(message, "variable $Ax is not set in the job environment");
    }

    #[test]
    fn missing_variable_in_a_job_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(
            dir.path(),
            &[],
            json!([{"commands": [{"set": "X", "value": "1"}, {"cmd": ["/bin/echo", "$X", "$NOPE"]}]}]),
        );
        let err = out.result.unwrap_err();
        assert!(
            matches!(&err, JobError::MissingVariable { path, name } if path == "commands[0].commands[1].cmd[2]" && name == "NOPE"),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "commands[0].commands[1].cmd[2]: variable $NOPE is not set in the job environment"
        );
    }
}
