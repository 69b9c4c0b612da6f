//! Build templates on real software: one small package per template (`cmake`, `meson`,
//! `python`, `wheel`; `configure-make` is covered by tests/stack.rs), built by `hdist up`
//! from the pinned corpus (scripts/fetch-corpus.sh templ), then run or imported from the
//! profile. Bad template parameters fail with a position and build nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::util::{corpus, fuse_available, run_ok, stderr, view_guard, write_file, TestStore};

/// The template stack over the corpus directory `templ`, written as a stack file that takes
/// every package from a package repository (`pkgs/`, one file per package), so the repository
/// and `extends` mechanics run on real packages too: `six` and `tabulate` extend a shared
/// `pip-package` base (template `python`, built with the stack's Python), and `tabulate`
/// overrides its template with `wheel`.
///
/// `ninja` is a host tool (`kind = "host"`: the host's ninja, hashed into the id), so the
/// cmake template sees a build dependency named ninja and generates for Ninja. `python` is a
/// virtual environment over the host's /usr/bin/python3 (with its pip and setuptools), which
/// gives pip the standard `lib/pythonX.Y/site-packages` layout that a Python built by the
/// stack has (the host's own Debian layout is `local/lib/…/dist-packages`). cmake and meson
/// come from the templates' PATH (/usr/bin). Returns the stack file's path.
fn write_template_stack(t: &TestStore, templ: &Path) -> PathBuf {
    let dir = templ.display();
    fs::create_dir_all(t.path("pkgs")).unwrap();
    let packages = [
        ("ninja", "kind = \"host\"\n".to_string()),
        (
            "python",
            r#"in_profile = false
build = [
  { cmd = ["/usr/bin/python3", "-m", "venv", "--system-site-packages", "--without-pip", "${ARTIFACT}"] },
]
"#
            .to_string(),
        ),
        (
            "cjson",
            format!(
                r#"version = "1.7.15"
template = "cmake"
build_deps = ["ninja"]
cmake_flags = ["-DENABLE_CJSON_TEST=OFF", "-DENABLE_CJSON_UTILS=ON"]
sources = [{{ url = "{dir}/cjson_1.7.15.orig.tar.gz", key = "{CJSON}" }}]
"#
            ),
        ),
        (
            "pkgconf",
            format!(
                r#"version = "1.8.1"
template = "meson"
meson_flags = ["-Dtests=false"]
sources = [{{ url = "{dir}/pkgconf_1.8.1.orig.tar.xz", key = "{PKGCONF}" }}]
"#
            ),
        ),
        (
            "pip-package",
            "template = \"python\"\nbuild_deps = [\"python\"]\n".to_string(),
        ),
        (
            "six",
            format!(
                r#"extends = "pip-package"
version = "1.16.0"
sources = [{{ url = "{dir}/six-1.16.0.tar.gz", key = "{SIX}" }}]
"#
            ),
        ),
        (
            "tabulate",
            format!(
                r#"extends = "pip-package"
version = "0.9.0"
template = "wheel"
run_deps = ["python"]
sources = [{{ url = "{dir}/tabulate-0.9.0-py3-none-any.whl", key = "{TABULATE}" }}]
"#
            ),
        ),
    ];
    for (name, text) in &packages {
        write_file(t, &format!("pkgs/{name}.toml"), text);
    }
    let listed: String = ["ninja", "python", "cjson", "pkgconf", "six", "tabulate"]
        .iter()
        .map(|name| format!("[[package]]\nname = \"{name}\"\n\n"))
        .collect();
    write_file(
        t,
        "templ.toml",
        &format!("[stack]\nprofile = \"templ\"\nrepos = [\"pkgs\"]\n\n{listed}"),
    )
}

const CJSON: &str = "tar.gz:kmep2s6zbtxxvidakwcrjxtkdjfaqgmx";
const PKGCONF: &str = "tar.xz:mrbwdlncsqv6avsv2rcs5maypelepqy3";
const SIX: &str = "tar.gz:dzq4g5dxufrgiwhdn55r3avklsnqst5e";
const TABULATE: &str = "files:jyiamsp2fmseuo3gxe2jx2fsio7x2hr7";

const CJSON_DEMO: &str = r#"
#include <stdio.h>
#include <cJSON.h>
#include <cJSON_Utils.h>
int main(void) {
    cJSON *doc = cJSON_Parse("{\"a\": [1, 2, 3]}");
    cJSON *one = cJSONUtils_GetPointer(doc, "/a/1");
    printf("%d\n", one->valueint);
    cJSON_Delete(doc);
    return 0;
}
"#;

#[test]
fn cmake_meson_python_and_wheel_packages_build_and_run_from_the_profile() {
    if !fuse_available() {
        return;
    }
    let Some(templ) = corpus("templ") else {
        return;
    };
    let t = TestStore::new();
    let _view = view_guard(&t);
    let stack = write_template_stack(&t, &templ);

    let start = Instant::now();
    let out = t.ok(["-q".as_ref(), "up".as_ref(), stack.as_os_str(), "-j2".as_ref()]);
    eprintln!(
        "hdist up (cjson, pkgconf, six, tabulate): {:?}: {out}",
        start.elapsed()
    );
    assert!(out.starts_with("templ: generation 1 (6 built"), "{out}");

    // Everything below runs in the profile, as a user would: `hdist shell templ -- …`.
    let shell = |args: &[&str]| {
        let mut command = t.cmd(["shell", "templ", "--"]);
        command.args(args).env("PATH", "/usr/bin:/bin");
        run_ok(&mut command)
    };

    // meson: bin/pkgconf finds its .pc file through the profile's PKG_CONFIG_PATH, and its
    // own libpkgconf.so.3 through the rpath the template adds to its own lib (not the host's
    // libpkgconf3, which Debian's pkg-config installs).
    let out = shell(&[
        "sh",
        "-c",
        "pkgconf --modversion libpkgconf && ldd $HDIST_PROFILE/bin/pkgconf",
    ]);
    assert!(out.starts_with("1.8.1\n"), "{out}");
    let lib = out
        .lines()
        .find(|l| l.contains("libpkgconf.so.3"))
        .unwrap_or_else(|| panic!("bin/pkgconf does not link libpkgconf:\n{out}"));
    assert!(lib.contains("/artifacts/pkgconf/"), "{lib}");

    // cmake: a program compiled against the profile's cJSON and cJSON_Utils runs; the
    // installed libcjson_utils finds libcjson through the install rpath to its own lib.
    let demo = write_file(&t, "demo.c", CJSON_DEMO);
    let exe = t.path("demo");
    let script = format!(
        "cc -o {exe} {demo} -I$HDIST_PROFILE/include/cjson -L$HDIST_PROFILE/lib \
         -Wl,-rpath,$HDIST_PROFILE/lib -lcjson_utils -lcjson && {exe} && \
         readelf -d $HDIST_PROFILE/lib/libcjson_utils.so",
        exe = exe.display(),
        demo = demo.display()
    );
    let out = shell(&["sh", "-c", &script]);
    assert!(out.starts_with("2\n"), "{out}");
    let runpath = out
        .lines()
        .find(|l| l.contains("RUNPATH") || l.contains("RPATH"))
        .unwrap_or_else(|| panic!("libcjson_utils.so has no rpath:\n{out}"));
    assert!(runpath.contains("/artifacts/cjson/"), "{runpath}");

    // python and wheel: the host's python3 imports both packages from the profile (the
    // profile's PYTHONPATH; the host's own six must not win), and the wheel's console script
    // runs with the stack's Python.
    let out = shell(&[
        "/usr/bin/python3",
        "-c",
        "import os, six, tabulate; p = os.environ['HDIST_PROFILE']; \
         print(six.__file__.startswith(p), tabulate.__file__.startswith(p), os.environ['PYTHONPATH'])",
    ]);
    let version = run_ok(
        Command::new("/usr/bin/python3").args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
    );
    let site = format!("/lib/python{}/site-packages", version.trim());
    assert!(
        out.starts_with("True True /") && out.trim_end().ends_with(&site),
        "{out}"
    );
    let table = shell(&["sh", "-c", "printf 'a 1\\nb 22\\n' | tabulate"]);
    assert!(table.contains("-  --") && table.contains("b  22"), "{table}");

    // Nothing changed: no build.
    let out = t.ok(["up".as_ref(), stack.as_os_str()]);
    assert!(out.contains("generation 1 is up to date"), "{out}");
}

#[test]
fn bad_template_parameters_fail_with_a_position_and_build_nothing() {
    let t = TestStore::new();
    let header = "[stack]\nprofile = \"p\"\n\n";
    let cases = [
        (
            "template = \"cmake\"\ncmake_flags = \"-DX=1\"\n",
            "7:15:",
            "a list of strings",
        ),
        (
            "template = \"meson\"\nmeson_flags = [\"-Da=b\", 7]\n",
            "7:25:",
            "a string",
        ),
        ("template = \"python\"\npython = [\"py\"]\n", "7:10:", "a string"),
        (
            "template = \"cmake\"\nmeson_flags = []\n",
            "7:15:",
            "takes no parameter meson_flags",
        ),
        ("template = \"wheel\"\n", "6:12:", "add it to build_deps"),
        ("template = \"scons\"\n", "6:12:", "unknown template \"scons\""),
    ];
    for (keys, position, words) in cases {
        let text = format!("{header}[[package]]\nname = \"x\"\n{keys}");
        let bad = write_file(&t, "bad.toml", &text);
        let out = t.fails(["up".as_ref(), bad.as_os_str()]);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("bad.toml:{position}")) && err.contains(words),
            "on\n{text}\nexpected {position} {words:?}, got: {err}"
        );
    }
    // Nothing was built or switched: the store holds no artifact and no profile.
    assert_eq!(t.ok(["ls"]), "");
    assert!(!t.store().join("profiles/p").exists());
}
