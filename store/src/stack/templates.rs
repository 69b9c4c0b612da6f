//! Build templates: a package names one instead of writing job nodes.
//!
//! | template         | does                                                                 | parameters                        |
//! | ---------------- | -------------------------------------------------------------------- | --------------------------------- |
//! | `configure-make` | `./configure --prefix=${ARTIFACT} FLAGS…`, `make -j${HDIST_CPU_COUNT}`, `make install` | `configure_flags`, `make_flags` |
//! | `make-install`   | `make -j${HDIST_CPU_COUNT} FLAGS…`, `make install FLAGS…` (pass `PREFIX=${ARTIFACT}` in `make_flags`) | `make_flags` |
//!
//! Both start with `PATH=/usr/bin:/bin` and `hit build-unpack-sources`. For each build
//! dependency (reference `REF`) they put `${REF_DIR}/bin` on `PATH`,
//! `${REF_DIR}/lib/pkgconfig` on `PKG_CONFIG_PATH`, `-I${REF_DIR}/include` in `CPPFLAGS` and
//! `-L${REF_DIR}/lib -Wl,-rpath,${REF_DIR}/lib` in `LDFLAGS`, so configure scripts find the
//! dependency and the result finds it at run time (at its final path in the store-wide view).
//!
//! The nodes are exactly what `tests/fixtures/specs/*.json` spell out by hand, so a
//! dependency-free `configure-make` package has the same artifact id as the equivalent hand-written spec and
//! the two share the build cache. Changing a template changes the ids of every package that
//! uses it; that is intended (the build changed).

use serde_json::{json, Value};

/// Names of the templates, for error messages.
pub const TEMPLATES: [&str; 2] = ["configure-make", "make-install"];

/// The template parameters a package may set (all lists of argv words; `$VAR` is substituted
/// by the job language, `\$` is a literal dollar).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// Extra `./configure` arguments.
    pub configure_flags: Option<Vec<String>>,
    /// Extra `make` arguments.
    pub make_flags: Option<Vec<String>>,
}

/// Why a template cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No template of that name.
    #[error("unknown template {0:?}; known: {known}", known = TEMPLATES.join(", "))]
    Unknown(String),
    /// The template does not take this parameter.
    #[error("template {template} takes no parameter {param} (it takes: {takes})")]
    UnusedParam {
        template: String,
        param: &'static str,
        takes: String,
    },
}

/// The parameters `template` takes, or `None` for an unknown template.
pub fn parameters(template: &str) -> Option<&'static [&'static str]> {
    match template {
        "configure-make" => Some(&["configure_flags", "make_flags"]),
        "make-install" => Some(&["make_flags"]),
        _ => None,
    }
}

/// Job nodes of `template` for a package whose build dependencies have the references `refs`
/// (in import order).
///
/// # Errors
/// [`TemplateError::Unknown`], or [`TemplateError::UnusedParam`] for a parameter set that
/// the template would ignore (silently ignoring it would hide a typo'd build).
pub fn expand(template: &str, params: &Params, refs: &[String]) -> Result<Vec<Value>, TemplateError> {
    let takes = parameters(template).ok_or_else(|| TemplateError::Unknown(template.to_string()))?;
    let given = [
        ("configure_flags", params.configure_flags.is_some()),
        ("make_flags", params.make_flags.is_some()),
    ];
    for (param, set) in given {
        if set && !takes.contains(&param) {
            return Err(TemplateError::UnusedParam {
                template: template.to_string(),
                param,
                takes: takes.join(", "),
            });
        }
    }
    let make_flags = params.make_flags.clone().unwrap_or_default();
    let mut nodes = vec![json!({"set": "PATH", "value": "/usr/bin:/bin"})];
    nodes.extend(dependency_nodes(refs));
    nodes.push(json!({"hit": ["build-unpack-sources"]}));
    match template {
        "configure-make" => {
            let mut configure = vec!["./configure".to_string(), "--prefix=${ARTIFACT}".to_string()];
            configure.extend(params.configure_flags.clone().unwrap_or_default());
            nodes.push(json!({ "cmd": configure }));
            nodes.push(json!({ "cmd": make(&["-j${HDIST_CPU_COUNT}"], &make_flags) }));
            nodes.push(json!({ "cmd": ["make", "install"] }));
        }
        "make-install" => {
            nodes.push(json!({ "cmd": make(&["-j${HDIST_CPU_COUNT}"], &make_flags) }));
            nodes.push(json!({ "cmd": make(&["install"], &make_flags) }));
        }
        _ => unreachable!("parameters() knows every template expand() handles"),
    }
    Ok(nodes)
}

fn make(first: &[&str], flags: &[String]) -> Vec<String> {
    let mut argv = vec!["make".to_string()];
    argv.extend(first.iter().map(|s| s.to_string()));
    argv.extend(flags.iter().cloned());
    argv
}

/// Environment nodes that make the imported dependency `REF` visible to a configure/make
/// build.
fn dependency_nodes(refs: &[String]) -> Vec<Value> {
    let mut nodes = Vec::new();
    for r in refs {
        let dir = format!("${{{r}_DIR}}");
        nodes.push(json!({"prepend_path": "PATH", "value": format!("{dir}/bin")}));
        nodes.push(json!({"prepend_path": "PKG_CONFIG_PATH", "value": format!("{dir}/lib/pkgconfig")}));
        nodes.push(json!({"prepend_flag": "CPPFLAGS", "value": format!("-I{dir}/include")}));
        nodes.push(json!({"prepend_flag": "LDFLAGS", "value": format!("-L{dir}/lib -Wl,-rpath,{dir}/lib")}));
    }
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::job;

    #[test]
    fn templates_expand_to_valid_jobs() {
        for template in TEMPLATES {
            let nodes = expand(template, &Params::default(), &["ZLIB".to_string()]).unwrap();
            job::validate(&nodes).unwrap();
        }
    }

    #[test]
    fn configure_make_without_deps_is_the_hand_written_spec() {
        let params = Params {
            configure_flags: Some(vec!["--disable-nls".to_string()]),
            make_flags: None,
        };
        let nodes = expand("configure-make", &params, &[]).unwrap();
        assert_eq!(
            Value::Array(nodes),
            json!([
                {"set": "PATH", "value": "/usr/bin:/bin"},
                {"hit": ["build-unpack-sources"]},
                {"cmd": ["./configure", "--prefix=${ARTIFACT}", "--disable-nls"]},
                {"cmd": ["make", "-j${HDIST_CPU_COUNT}"]},
                {"cmd": ["make", "install"]}
            ])
        );
    }

    #[test]
    fn unknown_templates_and_unused_parameters_are_errors() {
        assert!(matches!(
            expand("cmake", &Params::default(), &[]),
            Err(TemplateError::Unknown(_))
        ));
        let params = Params {
            configure_flags: Some(Vec::new()),
            make_flags: None,
        };
        let err = expand("make-install", &params, &[]).unwrap_err();
        assert!(err.to_string().contains("configure_flags"), "{err}");
    }
}
