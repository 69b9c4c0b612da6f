//! Build templates: a package names one instead of writing job nodes.
//!
//! A template is only a short way to write job nodes: it expands, when the stack is parsed,
//! into the `build.commands` of the package's build spec, so the artifact id derives from the
//! expanded nodes like that of any hand-written spec. Every template starts with the same
//! prologue, then adds its own nodes (`REF` is the import reference of each build dependency,
//! in `build_deps` order; `FLAGS…` is the template's list parameter, appended word by word):
//!
//! ```text
//! {"set": "PATH", "value": "/usr/bin:/bin"}
//! per build dependency REF:
//!   {"prepend_path": "PATH",            "value": "${REF_DIR}/bin"}
//!   {"prepend_path": "PKG_CONFIG_PATH", "value": "${REF_DIR}/lib/pkgconfig"}
//!   {"prepend_flag": "CPPFLAGS",        "value": "-I${REF_DIR}/include"}
//!   {"prepend_flag": "LDFLAGS",         "value": "-L${REF_DIR}/lib -Wl,-rpath,${REF_DIR}/lib"}
//! the template's environment nodes (below)
//! {"hit": ["build-unpack-sources"]}
//! the template's commands (below)
//! ```
//!
//! | template         | environment nodes | commands | parameters |
//! | ---------------- | ----------------- | -------- | ---------- |
//! | `configure-make` | none | `./configure --prefix=${ARTIFACT} FLAGS…`; `make -j${HDIST_CPU_COUNT} MAKE_FLAGS…`; `make install` | `configure_flags`, `make_flags` |
//! | `make-install`   | none | `make -j${HDIST_CPU_COUNT} FLAGS…`; `make install FLAGS…` (pass `PREFIX=${ARTIFACT}` in `make_flags`) | `make_flags` |
//! | `cmake`          | per dependency `{"prepend_path": "CMAKE_PREFIX_PATH", "value": "${REF_DIR}"}` | `cmake -S . -B _build -G GEN -DCMAKE_INSTALL_PREFIX=${ARTIFACT} -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_RPATH=${ARTIFACT}/lib;${REF_DIR}/lib;… FLAGS…`; `cmake --build _build --parallel ${HDIST_CPU_COUNT}`; `cmake --install _build` | `cmake_flags` |
//! | `meson`          | `{"append_flag": "LDFLAGS", "value": "-Wl,-rpath,${ARTIFACT}/lib"}` | `meson setup _build --prefix=${ARTIFACT} --libdir=lib --buildtype=release --wrap-mode=nodownload FLAGS…`; `ninja -C _build -j${HDIST_CPU_COUNT}`; `ninja -C _build install` | `meson_flags` |
//! | `python`         | `PIP_CONFIG_FILE=/dev/null`, `PYTHONNOUSERSITE=1` (`set` nodes) | `${PY_DIR}/bin/python3 -m pip install PIP_ARGS FLAGS… .` | `python`, `pip_flags` |
//! | `wheel`          | as `python` | `sh -c 'exec "$0" "$@" ./*.whl' ${PY_DIR}/bin/python3 -m pip install PIP_ARGS FLAGS…` | `python`, `pip_flags` |
//!
//! - **cmake**: `GEN` is `Ninja` when a build dependency is named `ninja` (a package or a host
//!   tool that provides `bin/ninja`), else `Unix Makefiles` (make from `PATH`). The generator
//!   is chosen from the stack, never by probing the host, so the id says which one built it.
//!   `CMAKE_INSTALL_LIBDIR=lib` keeps libraries where the rpaths and profiles look for them
//!   (GNUInstallDirs would pick `lib64` on some hosts); the install rpath lists the package's
//!   own `lib` and each dependency's, in import order.
//! - **meson**: `--wrap-mode=nodownload` because a build never reaches the network; the
//!   rpath to the package's own `lib` is added through `LDFLAGS`, which Meson keeps at install
//!   (it only strips the build-directory rpaths it added itself).
//! - **python** and **wheel** install with the stack's own Python: the build dependency named
//!   by the `python` parameter (default `python`), imported as `PY` above (its reference),
//!   which must provide `bin/python3` with pip (and, for sdists, the build backend: with
//!   `--no-build-isolation` nothing is downloaded). `PIP_ARGS` is `--no-deps
//!   --no-build-isolation --no-index --ignore-installed --no-cache-dir
//!   --disable-pip-version-check --no-warn-script-location --prefix=${ARTIFACT}`:
//!   dependencies are other packages of the stack, nothing is fetched, and a copy of the
//!   package already installed in that Python is neither reused nor uninstalled. The host's
//!   pip configuration and user site are ignored (`PIP_CONFIG_FILE`, `PYTHONNOUSERSITE`).
//!   `python` installs the source directory (an unpacked sdist or a source tree); `wheel`
//!   installs the `.whl` files of its sources. A wheel is a zip, but pip installs only a whole
//!   `.whl` file, so the source must be kept whole: a `files:` key (what `hdist fetch` gives
//!   for a local `.whl`; `hdist fetch --type files URL` for a download). A `zip:` key would
//!   unpack it, and is refused when the stack is parsed.
//!   Modules land in `lib/pythonX.Y/site-packages` of the artifact (the Python's own
//!   `posix_prefix` layout: a CPython built by the stack, or a virtual environment over a
//!   host Python; Debian's `/usr/bin/python3` itself would use `local/lib/…/dist-packages`).
//!   The profile sets `PYTHONPATH` to those directories (see `run::profile_doc`).
//!
//! The `configure-make` nodes are exactly what `tests/fixtures/specs/*.json` spell out by hand, so a
//! dependency-free `configure-make` package has the same artifact id as the equivalent
//! hand-written spec and the two share the build cache. Changing a template changes the ids
//! of every package that uses it; that is intended (the build changed).

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::source::{SourceKey, SourceType};

/// Names of the templates, for error messages.
pub const TEMPLATES: [&str; 6] = [
    "configure-make",
    "make-install",
    "cmake",
    "meson",
    "python",
    "wheel",
];

/// Every template parameter (a package key).
pub const PARAMETERS: [&str; 6] = [
    "configure_flags",
    "make_flags",
    "cmake_flags",
    "meson_flags",
    "pip_flags",
    "python",
];

/// The build dependency the `python` and `wheel` templates install with, unless the
/// `python` parameter names another.
pub const DEFAULT_PYTHON: &str = "python";

/// The build dependency whose presence makes the `cmake` template generate for Ninja.
pub const NINJA: &str = "ninja";

/// The templates that install Python packages (the profile gets `PYTHONPATH` for them).
pub const PYTHON_TEMPLATES: [&str; 2] = ["python", "wheel"];

/// A list parameter: argv words (`$VAR` is substituted by the job language, `\$` is a
/// literal dollar). Its own type so that a wrong type in a stack file says what is expected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags(pub Vec<String>);

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Flags, D::Error> {
        struct FlagsVisitor;
        impl<'de> Visitor<'de> for FlagsVisitor {
            type Value = Flags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings, one argument each (e.g. [\"-DFOO=ON\"])")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Flags, A::Error> {
                let mut words = Vec::new();
                while let Some(word) = seq.next_element::<Word>()? {
                    words.push(word.0);
                }
                Ok(Flags(words))
            }
        }
        deserializer.deserialize_seq(FlagsVisitor)
    }
}

/// One element of [`Flags`], with a message that names what a list element must be.
struct Word(String);

impl<'de> Deserialize<'de> for Word {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Word, D::Error> {
        struct WordVisitor;
        impl Visitor<'_> for WordVisitor {
            type Value = Word;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string (each element of the list is one argument)")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Word, E> {
                Ok(Word(s.to_string()))
            }
        }
        deserializer.deserialize_str(WordVisitor)
    }
}

/// The template parameters a package may set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    /// Extra `./configure` arguments.
    pub configure_flags: Option<Vec<String>>,
    /// Extra `make` arguments.
    pub make_flags: Option<Vec<String>>,
    /// Extra `cmake` configure arguments.
    pub cmake_flags: Option<Vec<String>>,
    /// Extra `meson setup` arguments.
    pub meson_flags: Option<Vec<String>>,
    /// Extra `pip install` arguments.
    pub pip_flags: Option<Vec<String>>,
    /// The build dependency that provides `bin/python3` (default [`DEFAULT_PYTHON`]).
    pub python: Option<String>,
}

impl Params {
    /// Names of the parameters that are set, in [`PARAMETERS`] order.
    fn given(&self) -> Vec<&'static str> {
        let set = [
            self.configure_flags.is_some(),
            self.make_flags.is_some(),
            self.cmake_flags.is_some(),
            self.meson_flags.is_some(),
            self.pip_flags.is_some(),
            self.python.is_some(),
        ];
        PARAMETERS
            .into_iter()
            .zip(set)
            .filter_map(|(name, set)| set.then_some(name))
            .collect()
    }
}

/// A build dependency as a template sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep<'a> {
    /// The package name.
    pub name: &'a str,
    /// Its import reference (`$REF_DIR`, `$REF_ID` in the job).
    pub reference: &'a str,
}

/// Why a template cannot be expanded. Variants that concern one parameter name it, so the
/// stack parser can point at it.
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
    /// The Python a `python`/`wheel` package installs with is not among its build
    /// dependencies.
    #[error(
        "template {template} installs with the Python of a build dependency, and {python:?} is \
         not one (build_deps: {deps}); add it to build_deps, or set python = \"NAME\" to the \
         build dependency that provides bin/python3"
    )]
    NoPython {
        template: String,
        python: String,
        deps: String,
    },
    /// A `wheel` package has no source kept as a whole file.
    #[error(
        "template wheel installs .whl files, and no source of this package is kept whole; give \
         the wheel with a files: key (`hdist fetch FILE.whl` for a local file, `hdist fetch \
         --type files URL` for a download); a zip: key would unpack it"
    )]
    NoWheel,
}

impl TemplateError {
    /// The parameter the error is about, if one (`python` for [`TemplateError::NoPython`],
    /// which may come from the default rather than a parameter).
    pub fn param(&self) -> Option<&'static str> {
        match self {
            TemplateError::UnusedParam { param, .. } => Some(param),
            TemplateError::NoPython { .. } => Some("python"),
            TemplateError::Unknown(_) | TemplateError::NoWheel => None,
        }
    }
}

/// The parameters `template` takes, or `None` for an unknown template.
pub fn parameters(template: &str) -> Option<&'static [&'static str]> {
    match template {
        "configure-make" => Some(&["configure_flags", "make_flags"]),
        "make-install" => Some(&["make_flags"]),
        "cmake" => Some(&["cmake_flags"]),
        "meson" => Some(&["meson_flags"]),
        "python" | "wheel" => Some(&["python", "pip_flags"]),
        _ => None,
    }
}

/// Job nodes of `template` for a package whose build dependencies are `deps` (in import
/// order) and whose sources have the keys `sources`.
///
/// # Errors
/// [`TemplateError::Unknown`]; [`TemplateError::UnusedParam`] for a parameter set that the
/// template would ignore (silently ignoring it would hide a typo'd build);
/// [`TemplateError::NoPython`] and [`TemplateError::NoWheel`] for `python`/`wheel` packages
/// that lack what they install with or from.
pub fn expand(
    template: &str,
    params: &Params,
    deps: &[Dep<'_>],
    sources: &[SourceKey],
) -> Result<Vec<Value>, TemplateError> {
    let takes = parameters(template).ok_or_else(|| TemplateError::Unknown(template.to_string()))?;
    if let Some(param) = params.given().into_iter().find(|p| !takes.contains(p)) {
        return Err(TemplateError::UnusedParam {
            template: template.to_string(),
            param,
            takes: takes.join(", "),
        });
    }
    let flags = |list: &Option<Vec<String>>| list.clone().unwrap_or_default();
    let mut nodes = vec![json!({"set": "PATH", "value": "/usr/bin:/bin"})];
    nodes.extend(dependency_nodes(deps));
    let commands: Vec<Value> = match template {
        "configure-make" => {
            let mut configure = words(&["./configure", "--prefix=${ARTIFACT}"]);
            configure.extend(flags(&params.configure_flags));
            vec![
                json!({ "cmd": configure }),
                json!({ "cmd": with(&["make", "-j${HDIST_CPU_COUNT}"], &flags(&params.make_flags)) }),
                json!({ "cmd": ["make", "install"] }),
            ]
        }
        "make-install" => {
            let make_flags = flags(&params.make_flags);
            vec![
                json!({ "cmd": with(&["make", "-j${HDIST_CPU_COUNT}"], &make_flags) }),
                json!({ "cmd": with(&["make", "install"], &make_flags) }),
            ]
        }
        "cmake" => {
            for dep in deps {
                nodes.push(json!({"prepend_path": "CMAKE_PREFIX_PATH", "value": format!("${{{}_DIR}}", dep.reference)}));
            }
            let generator = if deps.iter().any(|d| d.name == NINJA) {
                "Ninja"
            } else {
                "Unix Makefiles"
            };
            let rpath: Vec<String> = std::iter::once("${ARTIFACT}/lib".to_string())
                .chain(deps.iter().map(|d| format!("${{{}_DIR}}/lib", d.reference)))
                .collect();
            let mut configure = words(&[
                "cmake",
                "-S",
                ".",
                "-B",
                "_build",
                "-G",
                generator,
                "-DCMAKE_INSTALL_PREFIX=${ARTIFACT}",
                "-DCMAKE_INSTALL_LIBDIR=lib",
                "-DCMAKE_BUILD_TYPE=Release",
            ]);
            configure.push(format!("-DCMAKE_INSTALL_RPATH={}", rpath.join(";")));
            configure.extend(flags(&params.cmake_flags));
            vec![
                json!({ "cmd": configure }),
                json!({ "cmd": ["cmake", "--build", "_build", "--parallel", "${HDIST_CPU_COUNT}"] }),
                json!({ "cmd": ["cmake", "--install", "_build"] }),
            ]
        }
        "meson" => {
            nodes.push(json!({"append_flag": "LDFLAGS", "value": "-Wl,-rpath,${ARTIFACT}/lib"}));
            let setup = with(
                &[
                    "meson",
                    "setup",
                    "_build",
                    "--prefix=${ARTIFACT}",
                    "--libdir=lib",
                    "--buildtype=release",
                    "--wrap-mode=nodownload",
                ],
                &flags(&params.meson_flags),
            );
            vec![
                json!({ "cmd": setup }),
                json!({ "cmd": ["ninja", "-C", "_build", "-j${HDIST_CPU_COUNT}"] }),
                json!({ "cmd": ["ninja", "-C", "_build", "install"] }),
            ]
        }
        "python" | "wheel" => {
            let python = params.python.as_deref().unwrap_or(DEFAULT_PYTHON);
            let dep = deps
                .iter()
                .find(|d| d.name == python)
                .ok_or_else(|| TemplateError::NoPython {
                    template: template.to_string(),
                    python: python.to_string(),
                    deps: if deps.is_empty() {
                        "none".to_string()
                    } else {
                        deps.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
                    },
                })?;
            if template == "wheel" && !sources.iter().any(|k| k.source_type() == SourceType::Files) {
                return Err(TemplateError::NoWheel);
            }
            nodes.push(json!({"set": "PIP_CONFIG_FILE", "value": "/dev/null"}));
            nodes.push(json!({"set": "PYTHONNOUSERSITE", "value": "1"}));
            let interpreter = format!("${{{}_DIR}}/bin/python3", dep.reference);
            let pip = with(
                &[
                    "-m",
                    "pip",
                    "install",
                    "--no-deps",
                    "--no-build-isolation",
                    "--no-index",
                    "--ignore-installed",
                    "--no-cache-dir",
                    "--disable-pip-version-check",
                    "--no-warn-script-location",
                    "--prefix=${ARTIFACT}",
                ],
                &flags(&params.pip_flags),
            );
            let argv = if template == "python" {
                let mut argv = vec![interpreter];
                argv.extend(pip);
                argv.push(".".to_string());
                argv
            } else {
                // The job language does not glob and the wheel's file name is only in its
                // source; the shell finds it. `\$` keeps `$0`/`$@` for the shell.
                let mut argv = words(&["sh", "-c", r#"exec "\$0" "\$@" ./*.whl"#]);
                argv.push(interpreter);
                argv.extend(pip);
                argv
            };
            vec![json!({ "cmd": argv })]
        }
        _ => unreachable!("parameters() knows every template expand() handles"),
    };
    nodes.push(json!({"hit": ["build-unpack-sources"]}));
    nodes.extend(commands);
    Ok(nodes)
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `first` followed by `flags`.
fn with(first: &[&str], flags: &[String]) -> Vec<String> {
    let mut argv = words(first);
    argv.extend(flags.iter().cloned());
    argv
}

/// Environment nodes that make the imported dependency `REF` visible to a configure/make
/// build.
fn dependency_nodes(deps: &[Dep<'_>]) -> Vec<Value> {
    let mut nodes = Vec::new();
    for dep in deps {
        let dir = format!("${{{}_DIR}}", dep.reference);
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

    const WHEEL_KEY: &str = "files:oh7lpfd6hqao6es7qo3zutsstppdcfy6";
    const SDIST_KEY: &str = "tar.gz:oh7lpfd6hqao6es7qo3zutsstppdcfy6";

    fn dep<'a>(name: &'a str, reference: &'a str) -> Dep<'a> {
        Dep { name, reference }
    }

    /// The commands after the prologue and the template's environment nodes.
    fn commands(nodes: &[Value]) -> Vec<Value> {
        let hit = nodes
            .iter()
            .position(|n| n == &json!({"hit": ["build-unpack-sources"]}))
            .expect("every template unpacks its sources");
        nodes[hit + 1..].to_vec()
    }

    #[test]
    fn templates_expand_to_valid_jobs() {
        let deps = [dep("zlib", "ZLIB"), dep("python", "PYTHON")];
        let sources = [WHEEL_KEY.parse().unwrap()];
        for template in TEMPLATES {
            let nodes = expand(template, &Params::default(), &deps, &sources).unwrap();
            job::validate(&nodes).unwrap();
        }
    }

    #[test]
    fn configure_make_without_deps_is_the_hand_written_spec() {
        let params = Params {
            configure_flags: Some(vec!["--disable-nls".to_string()]),
            ..Params::default()
        };
        let nodes = expand("configure-make", &params, &[], &[]).unwrap();
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
    fn cmake_finds_deps_sets_rpaths_and_uses_ninja_only_when_it_is_a_build_dep() {
        let params = Params {
            cmake_flags: Some(vec!["-DENABLE_X=OFF".to_string()]),
            ..Params::default()
        };
        let nodes = expand("cmake", &params, &[dep("zlib", "ZLIB")], &[]).unwrap();
        assert!(nodes.contains(&json!({"prepend_path": "CMAKE_PREFIX_PATH", "value": "${ZLIB_DIR}"})));
        assert_eq!(
            Value::Array(commands(&nodes)),
            json!([
                {"cmd": ["cmake", "-S", ".", "-B", "_build", "-G", "Unix Makefiles",
                         "-DCMAKE_INSTALL_PREFIX=${ARTIFACT}", "-DCMAKE_INSTALL_LIBDIR=lib",
                         "-DCMAKE_BUILD_TYPE=Release",
                         "-DCMAKE_INSTALL_RPATH=${ARTIFACT}/lib;${ZLIB_DIR}/lib", "-DENABLE_X=OFF"]},
                {"cmd": ["cmake", "--build", "_build", "--parallel", "${HDIST_CPU_COUNT}"]},
                {"cmd": ["cmake", "--install", "_build"]}
            ])
        );
        let deps = [dep("zlib", "ZLIB"), dep("ninja", "NINJA")];
        let nodes = expand("cmake", &Params::default(), &deps, &[]).unwrap();
        let configure = &commands(&nodes)[0]["cmd"];
        assert_eq!(configure[6], "Ninja", "{configure}");
        assert_eq!(
            configure[10],
            "-DCMAKE_INSTALL_RPATH=${ARTIFACT}/lib;${ZLIB_DIR}/lib;${NINJA_DIR}/lib"
        );
        // ninja's bin is on PATH, where cmake looks for the generator's tool.
        assert!(nodes.contains(&json!({"prepend_path": "PATH", "value": "${NINJA_DIR}/bin"})));
    }

    #[test]
    fn meson_sets_up_builds_and_installs_with_ninja() {
        let params = Params {
            meson_flags: Some(vec!["-Ddefault_library=shared".to_string()]),
            ..Params::default()
        };
        let nodes = expand("meson", &params, &[], &[]).unwrap();
        assert!(nodes.contains(&json!({"append_flag": "LDFLAGS", "value": "-Wl,-rpath,${ARTIFACT}/lib"})));
        assert_eq!(
            Value::Array(commands(&nodes)),
            json!([
                {"cmd": ["meson", "setup", "_build", "--prefix=${ARTIFACT}", "--libdir=lib",
                         "--buildtype=release", "--wrap-mode=nodownload", "-Ddefault_library=shared"]},
                {"cmd": ["ninja", "-C", "_build", "-j${HDIST_CPU_COUNT}"]},
                {"cmd": ["ninja", "-C", "_build", "install"]}
            ])
        );
    }

    #[test]
    fn python_and_wheel_install_with_the_named_build_dependency() {
        // Spelled out as one line: the golden form of the pip command line.
        let pip: Vec<Value> = "-m pip install --no-deps --no-build-isolation --no-index \
                               --ignore-installed --no-cache-dir --disable-pip-version-check \
                               --no-warn-script-location --prefix=${ARTIFACT}"
            .split_whitespace()
            .map(|w| json!(w))
            .collect();
        let deps = [dep("zlib", "ZLIB"), dep("python", "PYTHON")];
        let nodes = expand("python", &Params::default(), &deps, &[SDIST_KEY.parse().unwrap()]).unwrap();
        let mut argv = vec![json!("${PYTHON_DIR}/bin/python3")];
        argv.extend(pip.iter().cloned());
        argv.push(json!("."));
        assert_eq!(commands(&nodes), vec![json!({ "cmd": argv })]);
        assert!(nodes.contains(&json!({"set": "PIP_CONFIG_FILE", "value": "/dev/null"})));

        // `python = "NAME"` picks another dependency; pip_flags come before the wheel files.
        let deps = [dep("cpython-3.11", "CPYTHON_3_11")];
        let params = Params {
            python: Some("cpython-3.11".to_string()),
            pip_flags: Some(vec!["--no-compile".to_string()]),
            ..Params::default()
        };
        let nodes = expand("wheel", &params, &deps, &[WHEEL_KEY.parse().unwrap()]).unwrap();
        let mut argv = vec![
            json!("sh"),
            json!("-c"),
            json!(r#"exec "\$0" "\$@" ./*.whl"#),
            json!("${CPYTHON_3_11_DIR}/bin/python3"),
        ];
        argv.extend(pip.iter().cloned());
        argv.push(json!("--no-compile"));
        assert_eq!(commands(&nodes), vec![json!({ "cmd": argv })]);
    }

    #[test]
    fn python_without_its_python_and_wheel_without_a_whole_file_are_errors() {
        let err = expand("python", &Params::default(), &[dep("zlib", "ZLIB")], &[]).unwrap_err();
        assert!(
            matches!(&err, TemplateError::NoPython { python, .. } if python == "python"),
            "{err}"
        );
        assert_eq!(err.param(), Some("python"));
        assert!(err.to_string().contains("build_deps: zlib"), "{err}");
        let params = Params {
            python: Some("py3".to_string()),
            ..Params::default()
        };
        let err = expand("wheel", &params, &[dep("python", "PYTHON")], &[]).unwrap_err();
        assert!(err.to_string().contains("\"py3\" is not one"), "{err}");
        let zip = "zip:oh7lpfd6hqao6es7qo3zutsstppdcfy6".parse().unwrap();
        let err = expand("wheel", &Params::default(), &[dep("python", "PYTHON")], &[zip]).unwrap_err();
        assert_eq!(err, TemplateError::NoWheel);
    }

    /// Stack-file errors about templates: the message and `line:column`.
    fn stack_error(package_keys: &str) -> (String, usize, usize) {
        let text =
            format!("[[package]]\nname = \"py\"\nbuild = []\n\n[[package]]\nname = \"x\"\n{package_keys}");
        match crate::stack::parse("s.toml", &text, std::path::Path::new("/")) {
            Err(crate::stack::StackError::Invalid {
                line,
                column,
                message,
                ..
            }) => (message, line, column),
            other => panic!("{package_keys}: expected a position, got {other:?}"),
        }
    }

    #[test]
    fn wrong_parameter_types_and_missing_inputs_name_their_position() {
        // (package x's keys from line 7, line:column of the error, words of its message)
        let cases = [
            // Wrong types: the value.
            (
                "template = \"cmake\"\ncmake_flags = \"-DX=1\"\n",
                (8, 15),
                "invalid type: string \"-DX=1\", expected a list of strings",
            ),
            (
                "template = \"meson\"\nmeson_flags = [\"-Da=b\", 7]\n",
                (8, 25),
                "expected a string (each element",
            ),
            (
                "template = \"python\"\npython = [\"py\"]\n",
                (8, 10),
                "expected a string",
            ),
            // A parameter another template takes: the parameter.
            (
                "template = \"cmake\"\nmeson_flags = []\n",
                (8, 15),
                "package x: template cmake takes no parameter meson_flags",
            ),
            // The default Python missing: the template; a named one: the parameter.
            (
                "template = \"python\"\n",
                (7, 12),
                "\"python\" is not one (build_deps: none)",
            ),
            (
                "template = \"wheel\"\nbuild_deps = [\"py\"]\npython = \"python3\"\n",
                (9, 10),
                "\"python3\" is not one (build_deps: py)",
            ),
            // A wheel that would be unpacked: the source.
            (
                "template = \"wheel\"\nbuild_deps = [\"py\"]\npython = \"py\"\n\
                 sources = [{ url = \"x.whl\", key = \"zip:oh7lpfd6hqao6es7qo3zutsstppdcfy6\" }]\n",
                (10, 12),
                "files: key",
            ),
            // Parameters without a template.
            (
                "build = []\npip_flags = []\n",
                (8, 13),
                "template parameters need a template",
            ),
        ];
        for (keys, position, words) in cases {
            let (message, line, column) = stack_error(keys);
            assert_eq!((line, column), position, "{keys}: {message}");
            assert!(message.contains(words), "{keys}: {message}");
        }
    }

    #[test]
    fn unknown_templates_and_unused_parameters_are_errors() {
        assert!(matches!(
            expand("scons", &Params::default(), &[], &[]),
            Err(TemplateError::Unknown(_))
        ));
        let params = Params {
            configure_flags: Some(Vec::new()),
            ..Params::default()
        };
        let err = expand("make-install", &params, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("configure_flags"), "{err}");
        assert_eq!(err.param(), Some("configure_flags"));
        let params = Params {
            cmake_flags: Some(Vec::new()),
            ..Params::default()
        };
        let err = expand("meson", &params, &[], &[]).unwrap_err();
        assert!(err.to_string().contains("takes: meson_flags"), "{err}");
    }
}
